// startup.c: starts CPython on the Python main thread (caddysnake_init) and
// says what was linked. Contracts in caddysnake.h.
#include "caddysnake.h"
#include "bootstrap.h"
#include "faultchain.h"
#include "module.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static cs_interp main_interp;

// glibc hands the free memory at the top of a heap back to the kernel once
// it passes 128 KiB (M_TRIM_THRESHOLD). A server that allocates and frees a
// request body or a response of 64 KiB per request then has every one of
// them fault fresh, zeroed pages in again (bench/README.md, "Measurements
// behind the design"). So the threshold becomes 8 MiB per heap, and the
// mmap threshold (which setting the other one freezes at 128 KiB) 1 MiB,
// unless the operator chose either through glibc's environment variables.
static void tune_malloc(void) {
#ifdef __GLIBC__
	if (getenv("MALLOC_TRIM_THRESHOLD_") == NULL && getenv("MALLOC_MMAP_THRESHOLD_") == NULL) {
		mallopt(M_TRIM_THRESHOLD, 8 << 20);
		mallopt(M_MMAP_THRESHOLD, 1 << 20);
	}
#endif
}

// Turns on CPython's faulthandler (main GIL held): on a fatal signal
// (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) it writes "Fatal Python error"
// and the stack of every Python thread of the crashing thread's interpreter
// to fd 2, where Caddy logs by default, then restores the handler it
// replaced and re-raises the signal. The handler it replaces is Go's: the Go
// runtime installs its own at process start, long before Python starts, so
// Go's dump (goroutines, registers) still follows and the process still
// dies with it. Called explicitly: PyConfig.faulthandler did it on 3.11 but
// left it off on 3.12.1 and 3.13.0 (seen: faulthandler.is_enabled() False).
// CADDYSNAKE_FAULTHANDLER=0 leaves it off (PYTHONFAULTHANDLER then works as
// usual). A failure only loses the report, so it is not an error.
static void enable_faulthandler(void) {
	const char *v = getenv("CADDYSNAKE_FAULTHANDLER");
	if (v != NULL && (strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0)) {
		return;
	}
	PyObject *fh = PyImport_ImportModule("faulthandler");
	cs_faultchain_save_go();
	PyObject *res = fh != NULL ? PyObject_CallMethod(fh, "enable", "ii", 2, 1) : NULL; // (file=2, all_threads=True)
	if (res == NULL) {
		PyErr_Clear();
	}
	// Go keeps the faults of Go code (recoverable panics): faultchain.c.
	cs_faultchain_install();
	Py_XDECREF(res);
	Py_XDECREF(fh);
}

char *caddysnake_init(const char *bootstrap, const char *files, size_t files_len,
                      const char *version, cs_interp **main_out) {
	tune_malloc();
	if (cs_bootstrap_keep(bootstrap, files, files_len, version) < 0) {
		return strdup("out of memory");
	}
	if (PyImport_AppendInittab("_caddysnake", cs_module_init) < 0) {
		return strdup("cannot register the _caddysnake module");
	}
	PyConfig config;
	PyConfig_InitPythonConfig(&config);
	// Caddy owns the process signals (SIGINT/SIGTERM mean a graceful stop).
	config.install_signal_handlers = 0;
	config.parse_argv = 0;
	PyStatus status = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(status)) {
		return cs_status_error(status);
	}
	main_interp.interp = PyInterpreterState_Main();
	main_interp.is_main = 1;
	enable_faulthandler();
	char *err = cs_run_bootstrap(&main_interp);
	// Detach: from now on every thread takes the GIL only when it runs Python.
	main_interp.ts = PyEval_SaveThread();
	*main_out = &main_interp;
	return err;
}

const char *caddysnake_python_version(void) { return Py_GetVersion(); }

const char *caddysnake_linked_version(void) { return PY_VERSION; }

int caddysnake_subinterpreters_supported(void) { return PY_VERSION_HEX >= 0x030C0000; }

int caddysnake_free_threaded_build(void) {
#ifdef Py_GIL_DISABLED
	return 1;
#else
	return 0;
#endif
}
