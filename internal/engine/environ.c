// environ.c: builds the WSGI environ (PEP 3333, "environ Variables") in C.
//
// Why C: in a hello-world request the Python reference, build_environ in
// caddysnake/wsgi/environ.py, was the largest single piece of the Python time; here
// the keys are made once per interpreter and each value is decoded straight
// from the buffer Go filled, with no intermediate tuple. The rules are the
// reference's, and tests/environ_c_test.go checks both agree.
#include "environ.h"

#include <string.h>

static const char *const field_keys[ENV_FIELDS] = {
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO",   "QUERY_STRING", "SERVER_PROTOCOL",
    "wsgi.url_scheme", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR",  "REMOTE_PORT",
};

static PyObject *interned(const char *s) { return PyUnicode_InternFromString(s); }

int cs_environ_parts_init(cs_environ_parts *parts, PyObject *wsgi_module) {
	memset(parts, 0, sizeof *parts);
	parts->template = PyObject_GetAttrString(wsgi_module, "_TEMPLATE");
	parts->input_cls = PyObject_GetAttrString(wsgi_module, "InputStream");
	parts->errors_cls = PyObject_GetAttrString(wsgi_module, "ErrorStream");
	if (parts->template == NULL || parts->input_cls == NULL || parts->errors_cls == NULL) {
		goto fail;
	}
	if (!PyDict_Check(parts->template)) {
		PyErr_SetString(PyExc_TypeError, "caddysnake.wsgi._TEMPLATE is not a dict");
		goto fail;
	}
	for (int i = 0; i < ENV_FIELDS; i++) {
		if ((parts->keys[i] = interned(field_keys[i])) == NULL) {
			goto fail;
		}
	}
	if ((parts->content_type = interned("CONTENT_TYPE")) == NULL ||
	    (parts->content_length = interned("CONTENT_LENGTH")) == NULL ||
	    (parts->http_cookie = interned("HTTP_COOKIE")) == NULL) {
		goto fail;
	}
	return 0;
fail:
	cs_environ_parts_clear(parts);
	return -1;
}

void cs_environ_parts_clear(cs_environ_parts *parts) {
	Py_CLEAR(parts->template);
	Py_CLEAR(parts->input_cls);
	Py_CLEAR(parts->errors_cls);
	for (int i = 0; i < ENV_FIELDS; i++) {
		Py_CLEAR(parts->keys[i]);
	}
	Py_CLEAR(parts->content_type);
	Py_CLEAR(parts->content_length);
	Py_CLEAR(parts->http_cookie);
}

// The environ key of header name s: "HTTP_" and the name with ASCII letters
// upper-cased and "-" made "_" (other bytes kept, so the key stays latin-1),
// except Content-Type and Content-Length, which have no prefix. Returns a
// new reference, or NULL with an exception set.
static PyObject *header_key(const cs_environ_parts *parts, const char *s, size_t len) {
	char stack[128];
	char *key = len + 5 <= sizeof stack ? stack : PyMem_Malloc(len + 5);
	if (key == NULL) {
		return PyErr_NoMemory();
	}
	memcpy(key, "HTTP_", 5);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		key[5 + i] = c >= 'a' && c <= 'z' ? (char)(c - 32) : c == '-' ? '_' : c;
	}
	PyObject *out;
	if (len == 12 && memcmp(key + 5, "CONTENT_TYPE", 12) == 0) {
		out = Py_NewRef(parts->content_type);
	} else if (len == 14 && memcmp(key + 5, "CONTENT_LENGTH", 14) == 0) {
		out = Py_NewRef(parts->content_length);
	} else {
		out = PyUnicode_DecodeLatin1(key, (Py_ssize_t)len + 5, NULL);
	}
	if (key != stack) {
		PyMem_Free(key);
	}
	return out;
}

// Adds one header to env; repeated fields combine with ", ", cookies with
// "; " (RFC 9110 5.3, RFC 9113 8.2.3).
static int add_header(const cs_environ_parts *parts, PyObject *env, const char *name,
                      size_t name_len, const char *value, size_t value_len) {
	// "X-Foo_Bar" and "X-Foo-Bar" both mangle to HTTP_X_FOO_BAR, so a
	// client could spoof a header a proxy in front of us set: drop names
	// with "_", as nginx and Apache do.
	if (memchr(name, '_', name_len) != NULL) {
		return 0;
	}
	PyObject *key = header_key(parts, name, name_len);
	if (key == NULL) {
		return -1;
	}
	PyObject *v = PyUnicode_DecodeLatin1(value, (Py_ssize_t)value_len, NULL);
	if (v == NULL) {
		Py_DECREF(key);
		return -1;
	}
	PyObject *old = PyDict_GetItemWithError(env, key); // borrowed
	if (old == NULL && PyErr_Occurred()) {
		goto fail;
	}
	if (old != NULL) {
		int cookie = PyUnicode_Compare(key, parts->http_cookie) == 0;
		PyObject *joined = PyUnicode_FromFormat("%U%s%U", old, cookie ? "; " : ", ", v);
		if (joined == NULL) {
			goto fail;
		}
		Py_SETREF(v, joined);
	}
	int rc = PyDict_SetItem(env, key, v);
	Py_DECREF(key);
	Py_DECREF(v);
	return rc;
fail:
	Py_DECREF(key);
	Py_DECREF(v);
	return -1;
}

static int set_stream(PyObject *env, const char *key, PyObject *cls, PyObject *h) {
	PyObject *stream = PyObject_CallOneArg(cls, h);
	if (stream == NULL) {
		return -1;
	}
	int rc = PyDict_SetItemString(env, key, stream);
	Py_DECREF(stream);
	return rc;
}

PyObject *cs_build_environ(const cs_environ_parts *parts, uintptr_t handle, const char *buf,
                           const int32_t *ends, int n) {
	if (n < ENV_FIELDS || (n - ENV_FIELDS) % 2 != 0) {
		return PyErr_Format(PyExc_ValueError, "malformed request of %d strings", n);
	}
	PyObject *env = PyDict_Copy(parts->template);
	if (env == NULL) {
		return NULL;
	}
	PyObject *h = NULL;
	int32_t start = 0;
	for (int i = 0; i < ENV_FIELDS; i++) {
		int32_t len = ends[i] - start;
		// REMOTE_PORT is unknown when the client IP came from a trusted
		// proxy's header: leave it out rather than send "".
		if (i == ENV_FIELDS - 1 && len == 0) {
			break;
		}
		PyObject *v = PyUnicode_DecodeLatin1(buf + start, len, NULL);
		if (v == NULL || PyDict_SetItem(env, parts->keys[i], v) < 0) {
			Py_XDECREF(v);
			goto fail;
		}
		Py_DECREF(v);
		start = ends[i];
	}
	start = ends[ENV_FIELDS - 1];
	for (int i = ENV_FIELDS; i < n; i += 2) {
		if (add_header(parts, env, buf + start, (size_t)(ends[i] - start), buf + ends[i],
		               (size_t)(ends[i + 1] - ends[i])) < 0) {
			goto fail;
		}
		start = ends[i + 1];
	}
	if ((h = PyLong_FromSize_t(handle)) == NULL ||
	    set_stream(env, "wsgi.input", parts->input_cls, h) < 0 ||
	    set_stream(env, "wsgi.errors", parts->errors_cls, h) < 0) {
		goto fail;
	}
	Py_DECREF(h);
	return env;
fail:
	Py_XDECREF(h);
	Py_DECREF(env);
	return NULL;
}
