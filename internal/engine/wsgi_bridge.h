// wsgi_bridge.h: the WSGI side of the _caddysnake module (wsgi_bridge.c),
// for the method table (module.c); Python's side is python/caddysnake/wsgi.
#ifndef CADDYSNAKE_WSGI_BRIDGE_H
#define CADDYSNAKE_WSGI_BRIDGE_H

#include "caddysnake.h"

// read(handle, size), read1(handle, size) -> bytes
PyObject *cs_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_read1(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
// write(handle, status, headers | None, data, flush)
PyObject *cs_write(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
// sendfile(handle, status, headers | None, fd, offset, count) -> int
PyObject *cs_sendfile(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);

#endif
