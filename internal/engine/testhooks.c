// testhooks.c: the C builders run on Python input, so that tests compare
// them with the Python reference builders inside a real interpreter, the
// live interpreter count, and an evaluator for Go's tests. Contracts in
// testhooks.h.
#include "testhooks.h"
#include "args.h"
#include "environ.h"
#include "scope.h"

#include <stdlib.h>
#include <string.h>

// Lays the items of tuple t out back to back as Go lays a request out
// (buf, and ends[i] the end of item i), each seen through view: for the
// test entry points below. 0, or -1 with an exception set; the caller
// PyMem_Frees *buf and *ends either way.
static int flatten_tuple(PyObject *t, cs_view_fn view, char **buf, int32_t **ends) {
	Py_ssize_t n = PyTuple_GET_SIZE(t);
	size_t total = 0;
	*buf = NULL;
	*ends = NULL;
	for (Py_ssize_t i = 0; i < n; i++) {
		cs_str v;
		if (view(PyTuple_GET_ITEM(t, i), &v) < 0) {
			return -1;
		}
		total += v.len;
	}
	*buf = PyMem_Malloc(total + 1);
	*ends = PyMem_Malloc(sizeof(int32_t) * (size_t)(n + 1));
	if (*buf == NULL || *ends == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	size_t at = 0;
	for (Py_ssize_t i = 0; i < n; i++) {
		cs_str v;
		view(PyTuple_GET_ITEM(t, i), &v); // checked above
		memcpy(*buf + at, v.data, v.len);
		at += v.len;
		(*ends)[i] = (int32_t)at;
	}
	return 0;
}

// build_environ(req, handle) -> environ: the C builder run on a request
// tuple in the form caddysnake.wsgi.build_environ takes, so that tests can
// compare it with that reference inside a real interpreter.
PyObject *cs_build_environ_py(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	(void)mod;
	if (nargs != 2 || !PyTuple_Check(args[0])) {
		PyErr_SetString(PyExc_TypeError, "build_environ(req: tuple of str, handle: int)");
		return NULL;
	}
	size_t h = PyLong_AsSize_t(args[1]);
	if (h == (size_t)-1 && PyErr_Occurred()) {
		return NULL;
	}
	PyObject *env = NULL, *wsgi_module = NULL;
	char *buf;
	int32_t *ends;
	if (flatten_tuple(args[0], cs_latin1_view, &buf, &ends) == 0) {
		cs_environ_parts parts;
		wsgi_module = PyImport_ImportModule("caddysnake.wsgi");
		if (wsgi_module != NULL && cs_environ_parts_init(&parts, wsgi_module) == 0) {
			env = cs_build_environ(&parts, (uintptr_t)h, buf, ends, (int)PyTuple_GET_SIZE(args[0]));
			cs_environ_parts_clear(&parts);
		}
	}
	Py_XDECREF(wsgi_module);
	PyMem_Free(buf);
	PyMem_Free(ends);
	return env;
}

// build_scope(parts) -> (scope, has_body): the C builder run on a parts
// tuple of bytes in the form caddysnake.asgi.build_scope takes (the scope
// has no "state"), so that tests can compare it with that reference inside
// a real interpreter.
PyObject *cs_build_scope_py(PyObject *mod, PyObject *arg) {
	(void)mod;
	if (!PyTuple_Check(arg)) {
		PyErr_SetString(PyExc_TypeError, "build_scope(parts: tuple of bytes)");
		return NULL;
	}
	PyObject *out = NULL, *asgi_module = NULL;
	char *buf;
	int32_t *ends;
	if (flatten_tuple(arg, cs_bytes_view, &buf, &ends) == 0) {
		cs_scope_parts parts;
		asgi_module = PyImport_ImportModule("caddysnake.asgi");
		if (asgi_module != NULL && cs_scope_parts_init(&parts, asgi_module) == 0) {
			int has_body;
			PyObject *scope = cs_build_scope(&parts, buf, ends, (int)PyTuple_GET_SIZE(arg), &has_body);
			if (scope != NULL) {
				out = Py_BuildValue("(NN)", scope, PyBool_FromLong(has_body));
			}
			cs_scope_parts_clear(&parts);
		}
	}
	Py_XDECREF(asgi_module);
	PyMem_Free(buf);
	PyMem_Free(ends);
	return out;
}

// The number of live interpreters in the process (main included), for
// tests and diagnostics: sub-interpreters must not outlive their app.
PyObject *cs_interpreter_count(PyObject *mod, PyObject *unused) {
	(void)mod;
	(void)unused;
	long n = 0;
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&cs_interp_list_mu);
	for (PyInterpreterState *i = PyInterpreterState_Head(); i != NULL; i = PyInterpreterState_Next(i)) {
		n += i != cs_anchor_interp; // the anchor is an implementation detail
	}
	pthread_mutex_unlock(&cs_interp_list_mu);
	Py_END_ALLOW_THREADS
	return PyLong_FromLong(n);
}

char *caddysnake_eval(cs_interp *ci, const char *expr, char **err) {
	PyEval_RestoreThread(ci->ts);
	char *out = NULL;
	PyObject *ns = PyDict_New();
	PyObject *res = NULL, *s = NULL;
	if (ns != NULL && PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) == 0) {
		res = PyRun_String(expr, Py_eval_input, ns, ns);
	}
	s = res != NULL ? PyObject_Str(res) : NULL;
	const char *u = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
	if (u != NULL) {
		out = strdup(u);
	} else {
		*err = cs_take_error(ci);
	}
	Py_XDECREF(s);
	Py_XDECREF(res);
	Py_XDECREF(ns);
	ci->ts = PyEval_SaveThread();
	return out;
}
