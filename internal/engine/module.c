// module.c: the _caddysnake module that Python code uses to reach Go: its
// method table (the functions are in wsgi_bridge.c, asgi_bridge.c,
// testhooks.c, mainfirst.c), its exception classes and the wire codes
// (codes.h).
#include "module.h"
#include "args.h"
#include "asgi_bridge.h"
#include "mainfirst.h"
#include "testhooks.h"
#include "wsgi_bridge.h"

#include "_cgo_export.h"

// log(handle, level, message): to Caddy's log, as the app's logger.
static PyObject *cs_log(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	(void)mod;
	uintptr_t h;
	if (cs_call_args(args, nargs, 3, "log(handle, level, message)", &h) < 0) {
		return NULL;
	}
	int level = (int)PyLong_AsLong(args[1]);
	if (level == -1 && PyErr_Occurred()) {
		return NULL;
	}
	Py_ssize_t n;
	// The str in args[2] is held by our caller for the whole call.
	const char *msg = PyUnicode_AsUTF8AndSize(args[2], &n);
	if (msg == NULL) {
		return NULL;
	}
	Py_BEGIN_ALLOW_THREADS
	go_log(h, level, (char *)msg, (size_t)n);
	Py_END_ALLOW_THREADS
	Py_RETURN_NONE;
}

#define FASTCALL(name, fn, doc) \
	{name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL, doc}

static PyMethodDef module_methods[] = {
	{"asgi_drain", (PyCFunction)cs_asgi_drain, METH_O, "asgi_drain(app) -> list of events"},
	{"asgi_set_flusher", (PyCFunction)cs_asgi_set_flusher, METH_O, "asgi_set_flusher(callable or None)"},
	{"asgi_flush", (PyCFunction)cs_asgi_flush, METH_NOARGS, "asgi_flush(): news held for Go goes out"},
	FASTCALL("asgi_start", cs_asgi_start, "asgi_start(req, status, headers, trailers)"),
	FASTCALL("asgi_body", cs_asgi_body, "asgi_body(req, data, more_body)"),
	FASTCALL("asgi_receive", cs_asgi_receive, "asgi_receive(req)"),
	FASTCALL("asgi_pathsend", cs_asgi_pathsend, "asgi_pathsend(req, path)"),
	FASTCALL("asgi_early_hint", cs_asgi_early_hint, "asgi_early_hint(req, headers)"),
	FASTCALL("asgi_trailers", cs_asgi_trailers, "asgi_trailers(req, headers, more_trailers)"),
	FASTCALL("asgi_finish", cs_asgi_finish, "asgi_finish(req, code)"),
	FASTCALL("ws_accept", cs_ws_accept, "ws_accept(req, subprotocol, headers)"),
	FASTCALL("ws_receive", cs_ws_receive, "ws_receive(req)"),
	FASTCALL("ws_send", cs_ws_send, "ws_send(req, data, is_text)"),
	FASTCALL("ws_close", cs_ws_close, "ws_close(req, code, reason)"),
	FASTCALL("asgi_ready", cs_asgi_ready, "asgi_ready(app, ok, message)"),
	FASTCALL("asgi_stopped", cs_asgi_stopped, "asgi_stopped(app, ok, message)"),
	{"read", (PyCFunction)(void (*)(void))cs_read, METH_FASTCALL, "read(handle, size) -> bytes"},
	{"read1", (PyCFunction)(void (*)(void))cs_read1, METH_FASTCALL, "read1(handle, size) -> bytes"},
	{"write", (PyCFunction)(void (*)(void))cs_write, METH_FASTCALL,
	 "write(handle, status, headers, data, flush)"},
	{"sendfile", (PyCFunction)(void (*)(void))cs_sendfile, METH_FASTCALL,
	 "sendfile(handle, status, headers, fd, offset, count) -> int"},
	{"log", (PyCFunction)(void (*)(void))cs_log, METH_FASTCALL, "log(handle, level, message)"},
	FASTCALL("build_environ", cs_build_environ_py, "build_environ(req, handle) -> environ, by the C builder"),
	{"build_scope", (PyCFunction)cs_build_scope_py, METH_O, "build_scope(parts) -> (scope, has_body), by the C builder"},
	{"interpreter_count", cs_interpreter_count, METH_NOARGS,
	 "interpreter_count() -> live interpreters in this process"},
	FASTCALL("init_in_main", cs_init_in_main, "init_in_main(name, origin): see mainfirst.c"),
	{NULL, NULL, 0, NULL},
};

// The wire codes (codes.h), exported as _caddysnake.<name without CS_>.
#define CODE(name) {#name, CS_##name}
static const struct {
	const char *name;
	long value;
} codes[] = {
	CODE(EV_REQUEST),
	CODE(EV_BODY),
	CODE(EV_DISCONNECT),
	CODE(EV_SENT),
	CODE(EV_SHUTDOWN),
	CODE(EV_REQUEST_SCOPE),
	CODE(EV_ABANDON),
	CODE(EV_WS_CONNECT),
	CODE(EV_WS_MESSAGE),
	CODE(EV_WS_CLOSE),
	CODE(CMD_START),
	CODE(CMD_BODY),
	CODE(CMD_RECEIVE),
	CODE(CMD_PATHSEND),
	CODE(CMD_EARLY_HINT),
	CODE(CMD_TRAILERS),
	CODE(CMD_FINISH),
	CODE(CMD_WS_ACCEPT),
	CODE(CMD_WS_SEND),
	CODE(CMD_WS_CLOSE),
	CODE(CMD_WS_CREDIT),
	CODE(OK),
	CODE(APP_ERROR),
	CODE(APP_ERROR_AFTER_HEADERS),
	CODE(APP_ERROR_AFTER_START),
	CODE(CLIENT_GONE),
	CODE(STOPPED),
	CODE(TIMED_OUT),
	CODE(BRIDGE_ERROR),
	CODE(WRITE_CLIENT_GONE),
	CODE(WRITE_INVALID),
	CODE(WRITE_NO_MEMORY),
	CODE(WHOLE_MAX),
	CODE(WHOLE_BYTES_MAX),
	CODE(LOG_DEBUG),
	CODE(LOG_INFO),
	CODE(LOG_WARNING),
	CODE(LOG_ERROR),
};

static int module_exec(PyObject *m) {
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		if (PyModule_AddIntConstant(m, codes[i].name, codes[i].value) < 0) {
			return -1;
		}
	}
	cs_module_state *st = cs_state_of(m);
	st->client_disconnected =
	    PyErr_NewExceptionWithDoc("_caddysnake.ClientDisconnected",
	                              "The HTTP client went away before the response was sent.",
	                              PyExc_OSError, NULL);
	if (st->client_disconnected == NULL ||
	    PyModule_AddObjectRef(m, "ClientDisconnected", st->client_disconnected) < 0) {
		return -1;
	}
	st->request_body_error = PyErr_NewExceptionWithDoc(
	    "_caddysnake.RequestBodyError",
	    "The request body was malformed or cut short.", PyExc_OSError, NULL);
	if (st->request_body_error == NULL ||
	    PyModule_AddObjectRef(m, "RequestBodyError", st->request_body_error) < 0) {
		return -1;
	}
	// A BaseException, as mod_wsgi's: `except Exception` in the app must not
	// swallow it and carry on.
	st->request_timeout = PyErr_NewExceptionWithDoc(
	    "_caddysnake.RequestTimeout",
	    "Raised in a WSGI request's thread when it ran longer than request_timeout.", PyExc_BaseException,
	    NULL);
	if (st->request_timeout == NULL || PyModule_AddObjectRef(m, "RequestTimeout", st->request_timeout) < 0) {
		return -1;
	}
	return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg) {
	cs_module_state *st = cs_state_of(m);
	Py_VISIT(st->client_disconnected);
	Py_VISIT(st->request_body_error);
	Py_VISIT(st->request_timeout);
	return 0;
}

static int module_clear(PyObject *m) {
	cs_module_state *st = cs_state_of(m);
	Py_CLEAR(st->client_disconnected);
	Py_CLEAR(st->request_body_error);
	Py_CLEAR(st->request_timeout);
	return 0;
}

static void module_free(void *m) { module_clear((PyObject *)m); }

// Multi-phase init with per-module state, so the module can be loaded in
// sub-interpreters with their own GIL (PEP 489, PEP 684).
static PyModuleDef_Slot module_slots[] = {
	{Py_mod_exec, module_exec},
#if PY_VERSION_HEX >= 0x030C0000
	{Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
	{Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
	{0, NULL},
};

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_caddysnake",
	.m_doc = "The embedding Caddy server's side of caddysnake.",
	.m_size = sizeof(cs_module_state),
	.m_methods = module_methods,
	.m_slots = module_slots,
	.m_traverse = module_traverse,
	.m_clear = module_clear,
	.m_free = module_free,
};

PyObject *cs_module_init(void) { return PyModuleDef_Init(&module_def); }
