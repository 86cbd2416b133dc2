// args.h: what the functions of the _caddysnake module share (args.c):
// the module's exception classes, the handle and argument checks, header
// lists seen as C strings, and Python errors turned into messages.
#ifndef CADDYSNAKE_ARGS_H
#define CADDYSNAKE_ARGS_H

#include "interp.h"

typedef struct {
	PyObject *client_disconnected; // OSError subclass: the client went away
	PyObject *request_body_error;  // OSError subclass: the body could not be read
	PyObject *request_timeout;     // BaseException subclass: raised in a request over request_timeout
} cs_module_state;

static inline cs_module_state *cs_state_of(PyObject *module) {
	return (cs_module_state *)PyModule_GetState(module);
}

// Consumes the current exception and returns a malloc'd description of it,
// made by ci's describe_error when it is defined. Needs ci's GIL.
char *cs_take_error(cs_interp *ci);

// Raises exc with the message Go recorded for handle h.
void cs_raise_go_error(PyObject *exc, uintptr_t h, const char *what);

int cs_parse_handle(PyObject *o, uintptr_t *h);

// Checks a native function's argument count (usage names its signature)
// and parses the handle every one of them takes first.
int cs_call_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage, uintptr_t *h);

// A string's bytes without copying, or -1 with a TypeError/ValueError set.
typedef int (*cs_view_fn)(PyObject *, cs_str *);
// A latin-1 str (WSGI's "native strings": header names and values).
int cs_latin1_view(PyObject *s, cs_str *out);
// A bytes object (ASGI header names and values).
int cs_bytes_view(PyObject *b, cs_str *out);

// Flattens a list of (name, value) tuples into pairs, each seen through
// view. *keep receives a new reference that holds every string alive while
// the GIL is released; *pairs is either stack (if it fits) or PyMem memory
// that cs_free_headers frees. None: no pairs.
#define STACK_HEADERS 32
int cs_flatten_headers_as(PyObject *headers, cs_view_fn view, PyObject **keep, cs_str *stack,
                          cs_str **pairs, size_t *n);
// cs_flatten_headers_as with cs_latin1_view.
int cs_flatten_headers(PyObject *headers, PyObject **keep, cs_str *stack, cs_str **pairs, size_t *n);
void cs_free_headers(PyObject *keep, cs_str *stack, cs_str *pairs);

#endif
