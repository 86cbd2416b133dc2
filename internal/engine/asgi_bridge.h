// asgi_bridge.h: the ASGI side of the _caddysnake module (asgi_bridge.c),
// for the method table (module.c); Python's side is python/caddysnake/asgi.
// caddysnake_asgi_run, which runs the loop, is in caddysnake.h.
#ifndef CADDYSNAKE_ASGI_BRIDGE_H
#define CADDYSNAKE_ASGI_BRIDGE_H

#include "caddysnake.h"

PyObject *cs_asgi_drain(PyObject *mod, PyObject *arg);
PyObject *cs_asgi_set_flusher(PyObject *mod, PyObject *arg);
PyObject *cs_asgi_flush(PyObject *mod, PyObject *unused);
PyObject *cs_asgi_start(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_early_hint(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_trailers(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_body(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_pathsend(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_receive(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_finish(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_ready(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_asgi_stopped(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_ws_accept(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_ws_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_ws_close(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);
PyObject *cs_ws_receive(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);

#endif
