// scope.c: builds the ASGI HTTP connection scope (ASGI HTTP spec 2.5,
// "Connection Scope") in C.
//
// Why C: the Python reference, build_scope in caddysnake/asgi/scope.py, makes a
// parts tuple, slices, zips, decodes and builds a dict key by key: a quarter
// of all the Python time of a hello request (bench/README.md).
// Here keys are made once per interpreter and each value is made straight
// from the buffer Go filled. The rules are the reference's, and
// tests/scope_c_test.go checks both agree.
#include "scope.h"

#include <string.h>

// The scope's keys, in the order the reference builds them.
enum {
	K_TYPE,
	K_ASGI,
	K_METHOD,
	K_HTTP_VERSION,
	K_SCHEME,
	K_PATH,
	K_RAW_PATH,
	K_QUERY_STRING,
	K_ROOT_PATH,
	K_HEADERS,
	K_CLIENT,
	K_SERVER,
	K_EXTENSIONS,
};

static const char *const key_names[13] = {
    "type",         "asgi",    "method",  "http_version", "scheme",    "path",       "raw_path",
    "query_string", "root_path", "headers", "client",       "server",    "extensions",
};

int cs_scope_parts_init(cs_scope_parts *parts, PyObject *asgi_module) {
	memset(parts, 0, sizeof *parts);
	parts->asgi = PyObject_GetAttrString(asgi_module, "HTTP_ASGI");
	parts->extensions = PyObject_GetAttrString(asgi_module, "HTTP_EXTENSIONS");
	if (parts->asgi == NULL || parts->extensions == NULL) {
		goto fail;
	}
	if (!PyDict_Check(parts->asgi) || !PyDict_Check(parts->extensions)) {
		PyErr_SetString(PyExc_TypeError, "caddysnake.asgi.HTTP_ASGI and HTTP_EXTENSIONS must be dicts");
		goto fail;
	}
	if ((parts->http = PyUnicode_InternFromString("http")) == NULL) {
		goto fail;
	}
	for (int i = 0; i < 13; i++) {
		if ((parts->keys[i] = PyUnicode_InternFromString(key_names[i])) == NULL) {
			goto fail;
		}
	}
	return 0;
fail:
	cs_scope_parts_clear(parts);
	return -1;
}

void cs_scope_parts_clear(cs_scope_parts *parts) {
	Py_CLEAR(parts->asgi);
	Py_CLEAR(parts->extensions);
	Py_CLEAR(parts->http);
	for (int i = 0; i < 13; i++) {
		Py_CLEAR(parts->keys[i]);
	}
}

// Sets scope[key] = v and drops v; v NULL (an error) passes through.
static int set_new(PyObject *scope, PyObject *key, PyObject *v) {
	if (v == NULL) {
		return -1;
	}
	int rc = PyDict_SetItem(scope, key, v);
	Py_DECREF(v);
	return rc;
}

// The reference's _address: (host, int(port)) with port None when empty,
// or None when host is empty.
static PyObject *address(const char *host, size_t host_len, const char *port, size_t port_len) {
	if (host_len == 0) {
		Py_RETURN_NONE;
	}
	PyObject *p;
	if (port_len == 0) {
		p = Py_NewRef(Py_None);
	} else {
		// int(bytes) semantics (digits from Go in practice): through a
		// NUL-terminated copy, or int() itself for what the copy cannot
		// hold (a long port, a NUL inside).
		char digits[32];
		if (port_len >= sizeof digits || memchr(port, 0, port_len) != NULL) {
			PyObject *b = PyBytes_FromStringAndSize(port, (Py_ssize_t)port_len);
			p = b != NULL ? PyNumber_Long(b) : NULL;
			Py_XDECREF(b);
		} else {
			memcpy(digits, port, port_len);
			digits[port_len] = 0;
			char *end;
			p = PyLong_FromString(digits, &end, 10);
			if (p != NULL && *end != 0) {
				Py_DECREF(p);
				return PyErr_Format(PyExc_ValueError, "invalid port %s", digits);
			}
		}
	}
	if (p == NULL) {
		return NULL;
	}
	PyObject *h = PyUnicode_DecodeLatin1(host, (Py_ssize_t)host_len, NULL);
	if (h == NULL) {
		Py_DECREF(p);
		return NULL;
	}
	PyObject *t = PyTuple_Pack(2, h, p);
	Py_DECREF(h);
	Py_DECREF(p);
	return t;
}

// A fresh copy of the extensions template, its per-extension dicts too: an
// app that changes them must not change the next request's.
static PyObject *extensions(PyObject *tpl) {
	PyObject *out = PyDict_New();
	if (out == NULL) {
		return NULL;
	}
	Py_ssize_t pos = 0;
	PyObject *key, *value;
	while (PyDict_Next(tpl, &pos, &key, &value)) {
		if (set_new(out, key, PyDict_Check(value) ? PyDict_Copy(value) : Py_NewRef(value)) < 0) {
			Py_DECREF(out);
			return NULL;
		}
	}
	return out;
}

PyObject *cs_build_scope(const cs_scope_parts *parts, const char *buf, const int32_t *ends, int n, int *has_body) {
	if (n < SCOPE_FIELDS || (n - SCOPE_FIELDS) % 2 != 0) {
		return PyErr_Format(PyExc_ValueError, "malformed request parts tuple of length %d", n);
	}
	// The fields, in asgi_http.go's layout: http_version, method, scheme,
	// path, raw_path, query_string, root_path, client_host, client_port,
	// server_host, server_port, has_body.
	const char *f[SCOPE_FIELDS];
	Py_ssize_t len[SCOPE_FIELDS];
	int32_t start = 0;
	for (int i = 0; i < SCOPE_FIELDS; i++) {
		f[i] = buf + start;
		len[i] = ends[i] - start;
		start = ends[i];
	}
	PyObject *scope = PyDict_New();
	if (scope == NULL) {
		return NULL;
	}
	PyObject *const *k = parts->keys;
	// Latin-1 for the protocol fields; the spec wants path and root_path
	// decoded from UTF-8, and surrogateescape keeps bytes that are not
	// UTF-8 recoverable instead of failing the request.
	if (PyDict_SetItem(scope, k[K_TYPE], parts->http) < 0 ||
	    set_new(scope, k[K_ASGI], PyDict_Copy(parts->asgi)) < 0 ||
	    set_new(scope, k[K_METHOD], PyUnicode_DecodeLatin1(f[1], len[1], NULL)) < 0 ||
	    set_new(scope, k[K_HTTP_VERSION], PyUnicode_DecodeLatin1(f[0], len[0], NULL)) < 0 ||
	    set_new(scope, k[K_SCHEME], PyUnicode_DecodeLatin1(f[2], len[2], NULL)) < 0 ||
	    set_new(scope, k[K_PATH], PyUnicode_DecodeUTF8(f[3], len[3], "surrogateescape")) < 0 ||
	    set_new(scope, k[K_RAW_PATH], PyBytes_FromStringAndSize(f[4], len[4])) < 0 ||
	    set_new(scope, k[K_QUERY_STRING], PyBytes_FromStringAndSize(f[5], len[5])) < 0 ||
	    set_new(scope, k[K_ROOT_PATH], PyUnicode_DecodeUTF8(f[6], len[6], "surrogateescape")) < 0) {
		goto fail;
	}
	Py_ssize_t nh = (n - SCOPE_FIELDS) / 2;
	PyObject *headers = PyList_New(nh);
	if (set_new(scope, k[K_HEADERS], headers) < 0) {
		goto fail;
	}
	for (Py_ssize_t i = 0; i < nh; i++) {
		int at = SCOPE_FIELDS + 2 * (int)i;
		PyObject *name = PyBytes_FromStringAndSize(buf + ends[at - 1], ends[at] - ends[at - 1]);
		PyObject *value = PyBytes_FromStringAndSize(buf + ends[at], ends[at + 1] - ends[at]);
		PyObject *pair = name != NULL && value != NULL ? PyTuple_Pack(2, name, value) : NULL;
		Py_XDECREF(name);
		Py_XDECREF(value);
		if (pair == NULL) {
			goto fail;
		}
		PyList_SET_ITEM(headers, i, pair); // headers is alive: the scope holds it
	}
	if (set_new(scope, k[K_CLIENT], address(f[7], (size_t)len[7], f[8], (size_t)len[8])) < 0 ||
	    set_new(scope, k[K_SERVER], address(f[9], (size_t)len[9], f[10], (size_t)len[10])) < 0 ||
	    set_new(scope, k[K_EXTENSIONS], extensions(parts->extensions)) < 0) {
		goto fail;
	}
	*has_body = !(len[11] == 1 && f[11][0] == '0');
	return scope;
fail:
	Py_DECREF(scope);
	return NULL;
}
