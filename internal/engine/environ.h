// environ.h: the WSGI environ built in C (environ.c), from the request
// strings Go lays out (wsgi.go). caddysnake/wsgi/environ.py's build_environ is the
// reference it must match; tests/environ_c_test.go compares the two.
#ifndef CADDYSNAKE_ENVIRON_H
#define CADDYSNAKE_ENVIRON_H

#include "caddysnake.h"

// The request fields before the headers, in wsgi.go's order.
#define ENV_FIELDS 10

// What every environ starts from, per interpreter (owned references).
typedef struct {
	PyObject *template;           // caddysnake.wsgi._TEMPLATE
	PyObject *input_cls;          // caddysnake.wsgi.InputStream
	PyObject *errors_cls;         // caddysnake.wsgi.ErrorStream
	PyObject *keys[ENV_FIELDS];   // "REQUEST_METHOD", ... (interned)
	PyObject *content_type;       // "CONTENT_TYPE"
	PyObject *content_length;     // "CONTENT_LENGTH"
	PyObject *http_cookie;        // "HTTP_COOKIE"
} cs_environ_parts;

// Fills parts from the caddysnake.wsgi module; with the GIL. 0, or -1 with
// a Python exception set.
int cs_environ_parts_init(cs_environ_parts *parts, PyObject *wsgi_module);
void cs_environ_parts_clear(cs_environ_parts *parts);

// The environ of one request: buf holds n latin-1 strings back to back,
// ends[i] the end of string i; handle goes to wsgi.input and wsgi.errors.
// A new reference, or NULL with a Python exception set. With the GIL.
PyObject *cs_build_environ(const cs_environ_parts *parts, uintptr_t handle, const char *buf,
                           const int32_t *ends, int n);

#endif
