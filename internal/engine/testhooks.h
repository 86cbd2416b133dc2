// testhooks.h: _caddysnake functions for tests and diagnostics
// (testhooks.c), for the method table (module.c), and an evaluator for Go's
// tests.
#ifndef CADDYSNAKE_TESTHOOKS_H
#define CADDYSNAKE_TESTHOOKS_H

#include "caddysnake.h"

// build_environ(req, handle) -> environ, by the C builder
PyObject *cs_build_environ_py(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
// build_scope(parts) -> (scope, has_body), by the C builder
PyObject *cs_build_scope_py(PyObject *mod, PyObject *arg);
// interpreter_count() -> live interpreters in this process
PyObject *cs_interpreter_count(PyObject *mod, PyObject *unused);

// For Go's tests (codes_test.go, through codes.go's pythonEval): on ci's
// owner thread, str() of the Python expression expr evaluated in a fresh
// namespace, malloc'd; NULL with *err set to a malloc'd message if it
// raised.
char *caddysnake_eval(cs_interp *ci, const char *expr, char **err);

#endif
