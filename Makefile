# caddysnake: Caddy with embedded CPython.
#   make build            ./caddy linked against $(PYTHON)'s libpython
#   make run              build and serve examples/hello at http://127.0.0.1:9080
#   make test             every test: Go unit, pytest, integration (real ./caddy)
#   make check-memory     the C bridge under AddressSanitizer + the leak tests
#   make test-autobahn    the Autobahn WebSocket cases (kosoku) in a loopback-only netns
#   make PYTHON=python3.12 build    link another CPython (3.10+, shared libpython)

PYTHON ?= python3
# python3.X-config of the interpreter PYTHON names, found through the
# interpreter itself so pyenv shims and Debian's /usr/bin both work.
PYTHON_CONFIG := $(shell $(PYTHON) -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python%d.%d-config" % sys.version_info[:2]))' 2>/dev/null)
ifeq ($(wildcard $(PYTHON_CONFIG)),)
$(error cannot find python-config for PYTHON=$(PYTHON) (looked for $(PYTHON_CONFIG)); install the Python development files, e.g. apt-get install python3-dev)
endif

# "3.12", or "3.13t" for a free-threaded build: names the venv of a
# non-default Python, so each version keeps its own.
PY_TAG := $(shell $(PYTHON) -c 'import sys, sysconfig; print("%d.%d%s" % (*sys.version_info[:2], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))')

export CGO_ENABLED := 1
export CGO_CFLAGS := $(shell $(PYTHON_CONFIG) --includes) -O2 -Wall -Werror
# The rpath lets ./caddy find a libpython outside the loader's paths
# (pyenv, scripts/build-python) without LD_LIBRARY_PATH.
PYTHON_LIBDIR := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
export CGO_LDFLAGS := $(shell $(PYTHON_CONFIG) --embed --ldflags) -Wl,-rpath,$(PYTHON_LIBDIR)

VENV := $(if $(filter python3,$(PYTHON)),.venv,.venv-$(PY_TAG))
# Free-threaded builds (tag ending in t) get the requirements that build there.
TEST_REQUIREMENTS := tests/requirements$(if $(filter %t,$(PY_TAG)),-freethreaded).txt
VENV_PY := $(VENV)/bin/python

.PHONY: FORCE build run test test-go test-python test-integration test-autobahn venv check-memory clean

build: caddy

# Always handed to go build, whose cache makes it quick when nothing
# changed: the binary must match PYTHON, which is no file make can watch.
caddy: FORCE
	go build -o caddy ./cmd/caddy

FORCE:

run: caddy
	./caddy run --config examples/Caddyfile --adapter caddyfile

# The venv the tests' apps run in: Flask and Django from PyPI, plus pytest.
venv: $(VENV)/.ready
$(VENV)/.ready: $(TEST_REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check -r $(TEST_REQUIREMENTS)
	touch $@

test: test-python test-go test-integration test-autobahn

test-python: venv
	cd python && ../$(VENV_PY) -m pytest -q tests

test-go: venv
	go vet ./...
	go test -race -count=1 .

test-integration: caddy venv
	CADDYSNAKE_BIN=$(CURDIR)/caddy CADDYSNAKE_VENV=$(CURDIR)/$(VENV) go test -count=1 -timeout 20m ./tests/

# The Autobahn TestSuite's 517 fuzzingclient cases (tests/autobahn/run.py)
# against ./caddy serving a raw ASGI echo app, failing on any failed or
# unimplemented case. kosoku is installed first (its own venv, outside the
# namespace); the run is in a network namespace that has only loopback.
# AUTOBAHN_ARGS='-i "6.*"' runs a subset.
AUTOBAHN_VENV := build/autobahn-$(PY_TAG)
AUTOBAHN_ARGS ?=
NETNS := $(shell unshare -n true 2>/dev/null && echo "unshare -n" || echo "unshare -rn")

test-autobahn: caddy $(AUTOBAHN_VENV)/.ready
	$(NETNS) bash -c 'ip link set lo up && $(AUTOBAHN_VENV)/bin/python tests/autobahn/run.py --caddy ./caddy $(AUTOBAHN_ARGS)'

$(AUTOBAHN_VENV)/.ready: tests/autobahn/requirements.txt
	$(PYTHON) -m venv $(AUTOBAHN_VENV)
	$(AUTOBAHN_VENV)/bin/python -m pip install -q --disable-pip-version-check -r tests/autobahn/requirements.txt
	touch $@

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

# ---- Benchmarks (bench/README.md) -------------------------------------------
#   make bench                 ./caddy's python module vs caddy `respond`, granian,
#                              uvicorn, gunicorn and each of those behind caddy
#                              reverse_proxy, pinned and unpinned (issue 5)
#   make bench-interpreters    the module with `interpreters 1` vs `interpreters 2`
#                              (issue 4; needs CPython 3.12+: add PYTHON=python3.12)
#   make bench BENCH_ARGS="--quick"    2 s smoke run; see python3 bench/run.py --help
# The apps and peers run from their own venv, made with the $(PYTHON) ./caddy is
# linked against (bench/.venv for python3, bench/.venv-3.12 for python3.12 ...).
BENCH_VENV = bench/$(VENV)
BENCH_ARGS ?=

.PHONY: bench bench-interpreters bench-deps

bench: caddy bench-deps
	$(PYTHON) bench/run.py --caddy ./caddy --venv $(BENCH_VENV) $(BENCH_ARGS)

bench-interpreters: caddy bench-deps
	$(PYTHON) bench/run.py --suite interpreters --caddy ./caddy --venv $(BENCH_VENV) $(BENCH_ARGS)

bench-deps: $(BENCH_VENV)/.ready
	@command -v wrk >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }

$(BENCH_VENV)/.ready: bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $@
