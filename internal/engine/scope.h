// scope.h: the ASGI HTTP scope built in C (scope.c), from the request
// strings Go lays out (asgi_http.go). caddysnake/asgi/scope.py's build_scope is
// the reference it must match; tests/scope_c_test.go compares the two.
#ifndef CADDYSNAKE_SCOPE_H
#define CADDYSNAKE_SCOPE_H

#include "caddysnake.h"

// The request fields before the headers, in asgi_http.go's order.
#define SCOPE_FIELDS 12

// What every scope is made of, per interpreter (owned references).
typedef struct {
	PyObject *asgi;       // caddysnake.asgi.HTTP_ASGI, copied per scope
	PyObject *extensions; // caddysnake.asgi.HTTP_EXTENSIONS, copied per scope
	PyObject *http;       // "http"
	PyObject *keys[13];   // "type", "asgi", "http_version", ... (interned)
} cs_scope_parts;

// Fills parts from the caddysnake.asgi module; with the GIL. 0, or -1 with
// a Python exception set.
int cs_scope_parts_init(cs_scope_parts *parts, PyObject *asgi_module);
void cs_scope_parts_clear(cs_scope_parts *parts);

// The scope of one request, without "state" (the loop adds the app's):
// buf holds n strings back to back, ends[i] the end of string i. Sets
// *has_body. A new reference, or NULL with a Python exception set. With the
// GIL.
PyObject *cs_build_scope(const cs_scope_parts *parts, const char *buf, const int32_t *ends, int n, int *has_body);

#endif
