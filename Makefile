# caddysnake: Caddy with embedded CPython.
#   make build            ./caddy linked against $(PYTHON)'s libpython
#   make run              build and serve examples/hello at http://127.0.0.1:9080
#   make test             every test: Go unit, pytest, integration (real ./caddy)
#   make check-memory     the C bridge under AddressSanitizer + the leak tests
#   make fmt              gofmt -w the Go; ruff format and ruff check --fix python/
#   make lint             fails on unformatted Go, go vet, ruff check / format --check python/
#   make fuzz             each go test -fuzz target for FUZZTIME (default 30s)
#   make test-autobahn    the Autobahn WebSocket cases (kosoku) in a loopback-only netns
#   make test-autobahn-processes    the same with processes 2
#   make PYTHON=python3.12 build    link another CPython (3.10+, shared libpython)

PYTHON ?= python3
# An interpreter that does not run (not on PATH, or a pyenv shim for a
# version not selected) is no missing python3-dev: point to pyenv's copy.
ifneq ($(shell $(PYTHON) -c 'print("runs")' 2>/dev/null),runs)
PYENV_HIT := $(lastword $(sort $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/*/bin/$(notdir $(PYTHON)))))
PYTHON_WHERE := $(if $(shell command -v $(PYTHON) 2>/dev/null),does not run from PATH (a pyenv shim for a version not selected?),not found on PATH)
ifneq ($(PYENV_HIT),)
$(error $(PYTHON) $(PYTHON_WHERE); pyenv has it at $(PYENV_HIT): make PYTHON=$(PYENV_HIT) $(or $(MAKECMDGOALS),build))
endif
$(error $(PYTHON) $(PYTHON_WHERE): install it (e.g. apt-get install $(notdir $(PYTHON))-dev, or pyenv install), or give its path: make PYTHON=/path/to/$(notdir $(PYTHON)) $(or $(MAKECMDGOALS),build))
endif
# python3.X-config of the interpreter PYTHON names, found through the
# interpreter itself so pyenv shims and Debian's /usr/bin both work.
PYTHON_CONFIG := $(shell $(PYTHON) -c 'import sys, os; print(os.path.join(sys.base_prefix, "bin", "python%d.%d-config" % sys.version_info[:2]))' 2>/dev/null)
ifeq ($(wildcard $(PYTHON_CONFIG)),)
$(error PYTHON=$(PYTHON) runs, but has no $(notdir $(PYTHON_CONFIG)) (looked for $(PYTHON_CONFIG)): install its development files, e.g. apt-get install $(notdir $(subst -config,-dev,$(PYTHON_CONFIG))))
endif

# "3.12", or "3.13t" for a free-threaded build: names the venv of a
# non-default Python, so each version keeps its own.
PY_TAG := $(shell $(PYTHON) -c 'import sys, sysconfig; print("%d.%d%s" % (*sys.version_info[:2], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))')

export CGO_ENABLED := 1
# -Werror also makes the -Wextra of the bridge's own `#cgo CFLAGS`
# (internal/engine/python.go) fatal; -Wextra itself cannot go here, as it
# would reach Go's runtime/cgo, which does not build with it.
export CGO_CFLAGS := $(shell $(PYTHON_CONFIG) --includes) -O2 -Wall -Werror
# The rpath lets ./caddy find a libpython outside the loader's paths
# (pyenv, scripts/build-python) without LD_LIBRARY_PATH.
PYTHON_LIBDIR := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
export CGO_LDFLAGS := $(shell $(PYTHON_CONFIG) --embed --ldflags) -Wl,-rpath,$(PYTHON_LIBDIR)

VENV := $(if $(filter python3,$(PYTHON)),.venv,.venv-$(PY_TAG))
# Free-threaded builds (tag ending in t) get the requirements that build there.
TEST_REQUIREMENTS := tests/requirements$(if $(filter %t,$(PY_TAG)),-freethreaded).txt
VENV_PY := $(VENV)/bin/python

.PHONY: FORCE build run test test-go test-python test-integration test-autobahn test-autobahn-processes venv check-memory clean fmt lint fuzz

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

test: test-python test-go test-integration test-integration-processes test-autobahn test-autobahn-processes

test-python: venv
	cd python && ../$(VENV_PY) -m pytest -q tests

test-go: venv
	go vet ./...
	go test -race -count=1 . ./internal/...

test-integration: caddy venv
	CADDYSNAKE_BIN=$(CURDIR)/caddy CADDYSNAKE_VENV=$(CURDIR)/$(VENV) go test -count=1 -timeout 20m ./tests/

# The same suite with every python block served by 2 worker processes;
# tests that cannot hold there skip with a reason (skipInProcessMode).
test-integration-processes: caddy venv
	CADDYSNAKE_PROCESSES=2 CADDYSNAKE_BIN=$(CURDIR)/caddy CADDYSNAKE_VENV=$(CURDIR)/$(VENV) go test -count=1 -timeout 20m ./tests/

# The fuzz targets of internal/engine: the C environ and scope builders
# against their pure-Python references. Plain go test runs their seeds
# (internal/engine/testdata/fuzz/); go test -fuzz takes one target a run.
FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzEnvironBuilder FuzzScopeBuilder

fuzz:
	for t in $(FUZZ_TARGETS); do \
		go test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./internal/engine/ || exit 1; \
	done

# Formatting and lint. ruff, pinned in scripts/lint-requirements.txt, gets
# a venv of its own; the C is held to -Wall -Werror by the build itself.
LINT_VENV := build/lint
RUFF := $(LINT_VENV)/bin/ruff

# fmt fixes what the tools can fix and lists the rest (lint fails on it).
fmt: $(LINT_VENV)/.ready
	gofmt -l -w .
	$(RUFF) check --fix --exit-zero python/
	$(RUFF) format python/

lint: $(LINT_VENV)/.ready
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt: not formatted (make fmt):"; echo "$$out"; exit 1; fi
	go vet ./...
	$(RUFF) check python/
	$(RUFF) format --check python/

$(LINT_VENV)/.ready: scripts/lint-requirements.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/python -m pip install -q --disable-pip-version-check -r scripts/lint-requirements.txt
	touch $@

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

# The same cases with the app in two worker processes (processes 2).
test-autobahn-processes: caddy $(AUTOBAHN_VENV)/.ready
	$(NETNS) bash -c 'ip link set lo up && $(AUTOBAHN_VENV)/bin/python tests/autobahn/run.py --caddy ./caddy --extra "processes 2" $(AUTOBAHN_ARGS)'

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
#   make bench-processes       the module with `processes 2` vs uvicorn and granian
#                              with --workers 2, and the hop's cost on one core
#                              (issue 16)
#   make bench BENCH_ARGS="--quick"    2 s smoke run; see python3 bench/run.py --help
# The apps and peers run from their own venv, made with the $(PYTHON) ./caddy is
# linked against (bench/.venv for python3, bench/.venv-3.12 for python3.12 ...).
BENCH_VENV = bench/$(VENV)
BENCH_ARGS ?=

.PHONY: bench bench-interpreters bench-processes bench-deps

bench: caddy bench-deps
	$(PYTHON) bench/run.py --caddy ./caddy --venv $(BENCH_VENV) $(BENCH_ARGS)

bench-interpreters: caddy bench-deps
	$(PYTHON) bench/run.py --suite interpreters --caddy ./caddy --venv $(BENCH_VENV) $(BENCH_ARGS)

bench-processes: caddy bench-deps
	$(PYTHON) bench/run.py --suite processes --caddy ./caddy --venv $(BENCH_VENV) $(BENCH_ARGS)

bench-deps: $(BENCH_VENV)/.ready
	@command -v wrk >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; }

$(BENCH_VENV)/.ready: bench/requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt
	touch $@
