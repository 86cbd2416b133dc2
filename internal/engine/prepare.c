// prepare.c: calls into caddysnake/prepare.py, the interpreter-side work
// around loading an app (its environment variables, detecting its
// interface). Contract in caddysnake.h.
#include "interp.h"
#include "args.h"

#include <stdlib.h>
#include <string.h>

char *caddysnake_call_prepare(cs_interp *ci, const char *func, const char *arg, char **err) {
	PyEval_RestoreThread(ci->ts);
	char *out = NULL;
	PyObject *mod = PyImport_ImportModule("caddysnake.prepare");
	PyObject *fn = mod != NULL ? PyObject_GetAttrString(mod, func) : NULL;
	PyObject *a = fn != NULL ? PyUnicode_FromString(arg) : NULL;
	PyObject *res = a != NULL ? PyObject_CallOneArg(fn, a) : NULL;
	const char *u = res != NULL ? PyUnicode_AsUTF8(res) : NULL;
	if (u != NULL) {
		out = strdup(u);
	} else {
		*err = cs_take_error(ci);
	}
	Py_XDECREF(res);
	Py_XDECREF(a);
	Py_XDECREF(fn);
	Py_XDECREF(mod);
	ci->ts = PyEval_SaveThread();
	return out;
}
