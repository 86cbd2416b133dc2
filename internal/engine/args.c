// args.c: helpers of the _caddysnake functions (contracts in args.h).
#include "args.h"

#include <stdlib.h>
#include <string.h>

#include "_cgo_export.h"

// Consumes the current exception and returns a malloc'd description of it,
// made by ci's describe_error when it is defined. Needs ci's GIL.
char *cs_take_error(cs_interp *ci) {
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	if (type == NULL) {
		return strdup("unknown Python error");
	}
	PyErr_NormalizeException(&type, &value, &tb);
	if (tb != NULL && value != NULL) {
		PyException_SetTraceback(value, tb);
	}
	char *out = NULL;
	PyObject *s = NULL;
	if (ci->describe_err != NULL && value != NULL) {
		s = PyObject_CallOneArg(ci->describe_err, value);
	}
	if (s == NULL) {
		PyErr_Clear();
		s = PyObject_Str(value != NULL ? value : type);
	}
	if (s != NULL) {
		const char *u = PyUnicode_AsUTF8(s);
		if (u != NULL) {
			out = strdup(u);
		}
	}
	PyErr_Clear();
	Py_XDECREF(s);
	Py_XDECREF(type);
	Py_XDECREF(value);
	Py_XDECREF(tb);
	return out != NULL ? out : strdup("unprintable Python error");
}

// Raises exc with the message Go recorded for handle h.
void cs_raise_go_error(PyObject *exc, uintptr_t h, const char *what) {
	char msg[512];
	size_t n = go_error(h, msg, sizeof(msg) - 1);
	msg[n] = 0;
	PyErr_Format(exc, "%s: %s", what, msg);
}

int cs_parse_handle(PyObject *o, uintptr_t *h) {
	size_t v = PyLong_AsSize_t(o);
	if (v == (size_t)-1 && PyErr_Occurred()) {
		return -1;
	}
	*h = (uintptr_t)v;
	return 0;
}

// Checks a native function's argument count (usage names its signature)
// and parses the handle every one of them takes first.
int cs_call_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage, uintptr_t *h) {
	if (nargs != want) {
		PyErr_SetString(PyExc_TypeError, usage);
		return -1;
	}
	return cs_parse_handle(args[0], h);
}

// The bytes of a latin-1 str without copying: a 1-byte-kind str stores
// exactly its latin-1 encoding. PEP 3333 requires header names and values to
// be such "native strings".
int cs_latin1_view(PyObject *s, cs_str *out) {
	if (!PyUnicode_Check(s)) {
		PyErr_Format(PyExc_TypeError, "response header must be str, not %.100s",
		             Py_TYPE(s)->tp_name);
		return -1;
	}
#if PY_VERSION_HEX < 0x030C0000
	if (PyUnicode_READY(s) < 0) {
		return -1;
	}
#endif
	if (PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
		PyErr_Format(PyExc_ValueError, "response header %R is not latin-1", s);
		return -1;
	}
	out->data = (const char *)PyUnicode_DATA(s);
	out->len = (size_t)PyUnicode_GET_LENGTH(s);
	return 0;
}

// The bytes of an ASGI header name or value (ASGI: byte strings).
int cs_bytes_view(PyObject *b, cs_str *out) {
	if (!PyBytes_Check(b)) {
		PyErr_Format(PyExc_TypeError, "ASGI header names and values must be bytes, not %.100s",
		             Py_TYPE(b)->tp_name);
		return -1;
	}
	out->data = PyBytes_AS_STRING(b);
	out->len = (size_t)PyBytes_GET_SIZE(b);
	return 0;
}

int cs_flatten_headers_as(PyObject *headers, cs_view_fn view, PyObject **keep, cs_str *stack,
                          cs_str **pairs, size_t *n) {
	*keep = NULL;
	*pairs = NULL;
	*n = 0;
	if (headers == Py_None) {
		return 0;
	}
	PyObject *t = PySequence_Tuple(headers);
	if (t == NULL) {
		return -1;
	}
	Py_ssize_t count = PyTuple_GET_SIZE(t);
	cs_str *out = stack;
	if (count > STACK_HEADERS) {
		out = PyMem_Malloc(sizeof(cs_str) * 2 * (size_t)count);
		if (out == NULL) {
			Py_DECREF(t);
			PyErr_NoMemory();
			return -1;
		}
	}
	for (Py_ssize_t i = 0; i < count; i++) {
		PyObject *item = PyTuple_GET_ITEM(t, i);
		if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2) {
			PyErr_SetString(PyExc_TypeError, "response headers must be (name, value) tuples");
			goto fail;
		}
		if (view(PyTuple_GET_ITEM(item, 0), &out[2 * i]) < 0 ||
		    view(PyTuple_GET_ITEM(item, 1), &out[2 * i + 1]) < 0) {
			goto fail;
		}
	}
	*keep = t;
	*pairs = out;
	*n = (size_t)count;
	return 0;
fail:
	if (out != stack) {
		PyMem_Free(out);
	}
	Py_DECREF(t);
	return -1;
}

int cs_flatten_headers(PyObject *headers, PyObject **keep, cs_str *stack, cs_str **pairs, size_t *n) {
	return cs_flatten_headers_as(headers, cs_latin1_view, keep, stack, pairs, n);
}

void cs_free_headers(PyObject *keep, cs_str *stack, cs_str *pairs) {
	if (pairs != NULL && pairs != stack) {
		PyMem_Free(pairs);
	}
	Py_XDECREF(keep);
}

