# caddysnake: Caddy with embedded CPython.
#   make build            ./caddy linked against $(PYTHON)'s libpython
#   make run              build and serve examples/hello at http://127.0.0.1:9080
#   make test             every test: Go unit, pytest, integration (real ./caddy)
#   make check-memory     the C bridge under AddressSanitizer + the leak tests
#   make PYTHON=python3.12 build    link another CPython (3.10+, shared libpython)

PYTHON ?= python3
# python3.X-config of the interpreter PYTHON names, found through the
# interpreter itself so pyenv shims and Debian's /usr/bin both work.
PYTHON_CONFIG := $(shell $(PYTHON) -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python%d.%d-config" % sys.version_info[:2]))' 2>/dev/null)
ifeq ($(wildcard $(PYTHON_CONFIG)),)
$(error cannot find python-config for PYTHON=$(PYTHON) (looked for $(PYTHON_CONFIG)); install the Python development files, e.g. apt-get install python3-dev)
endif

export CGO_ENABLED := 1
export CGO_CFLAGS := $(shell $(PYTHON_CONFIG) --includes) -O2 -Wall -Werror
export CGO_LDFLAGS := $(shell $(PYTHON_CONFIG) --embed --ldflags)

VENV := .venv
VENV_PY := $(VENV)/bin/python
GO_SOURCES := $(wildcard *.go *.c *.h cmd/caddy/*.go python/caddysnake/*.py) go.mod go.sum

.PHONY: build run test test-go test-python test-integration venv check-memory clean

build: caddy

caddy: $(GO_SOURCES)
	go build -o caddy ./cmd/caddy

run: caddy
	./caddy run --config examples/Caddyfile --adapter caddyfile

# The venv the tests' apps run in: Flask and Django from PyPI, plus pytest.
venv: $(VENV)/.ready
$(VENV)/.ready: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check -r tests/requirements.txt
	touch $@

test: test-python test-go test-integration

test-python: venv
	cd python && ../$(VENV_PY) -m pytest -q tests

test-go: venv
	go vet ./...
	go test -race -count=1 .

test-integration: caddy venv
	CADDYSNAKE_BIN=$(CURDIR)/caddy CADDYSNAKE_VENV=$(CURDIR)/$(VENV) go test -count=1 -timeout 20m ./tests/

# AddressSanitizer over the C bridge (overflows, use-after-free, double
# free), with CPython using malloc so ASan sees its allocations, running the
# whole integration suite. Leaks are not LeakSanitizer's job here: CPython is
# never finalized and a leaked object stays linked from its GC lists, so LSan
# counts it reachable (a deliberately leaked request tuple went unreported).
# The suite's TestMemoryDoesNotLeakPerRequest catches such leaks instead,
# through sys.getallocatedblocks() and RSS over 50,000 requests.
check-memory: venv
	CGO_CFLAGS="$(CGO_CFLAGS) -fsanitize=address -fno-omit-frame-pointer" \
	CGO_LDFLAGS="$(CGO_LDFLAGS) -fsanitize=address" \
		go build -asan -o caddy-asan ./cmd/caddy
	PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0 \
	CADDYSNAKE_BIN=$(CURDIR)/caddy-asan CADDYSNAKE_VENV=$(CURDIR)/$(VENV) \
		go test -count=1 -timeout 20m ./tests/

clean:
	rm -f caddy caddy-asan
