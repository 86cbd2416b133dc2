// asgi_bridge.c: the ASGI bridge: the event loop's run
// (caddysnake_asgi_run) and the _caddysnake functions caddysnake.asgi calls on it.
//
// All of these run on an app's event loop thread and must not block it, so
// they keep the GIL. An HTTP request's commands go into its outbox
// (asgi_queues.c) for its goroutine to carry out; a WebSocket's go to Go
// through the go_asgi_* and go_ws_* callbacks, which only queue work for the
// request's goroutine too. Answers come later as events, drained by
// asgi_drain.
#include "asgi_bridge.h"
#include "args.h"
#include "asgi_queues.h"
#include "scope.h"

#include <sched.h>

#include "_cgo_export.h"

// The interpreter of the ASGI loop running on this thread, or NULL.
static _Thread_local cs_interp *loop_interp;

// Python object for one event (codes.h lists the kinds), in ci.
static PyObject *event_object(cs_interp *ci, const cs_event *ev) {
	// Py_BuildValue's "y#" turns a NULL pointer into None; an empty body
	// chunk, message or close reason must be b"".
	const char *data = ev->data != NULL ? ev->data : "";
	switch (ev->kind) {
	case CS_EV_REQUEST: { // as CS_EV_REQUEST_SCOPE: (5, req, scope, has_body), the scope built here
		int has_body;
		PyObject *scope = cs_build_scope(&ci->scope, ev->data, ev->ends, ev->n, &has_body);
		if (scope != NULL) {
			return Py_BuildValue("(iKNN)", CS_EV_REQUEST_SCOPE, (unsigned long long)ev->req, scope,
			                     PyBool_FromLong(has_body));
		}
		// Malformed: (0, req, parts), for caddysnake.asgi to report and refuse.
		PyErr_Clear();
	}
	// fall through
	case CS_EV_WS_CONNECT: { // (10, req, parts)
		PyObject *parts = PyTuple_New(ev->n);
		if (parts == NULL) {
			return NULL;
		}
		int32_t start = 0;
		for (int i = 0; i < ev->n; i++) {
			PyObject *b = PyBytes_FromStringAndSize(ev->data + start, ev->ends[i] - start);
			if (b == NULL) {
				Py_DECREF(parts);
				return NULL;
			}
			PyTuple_SET_ITEM(parts, i, b);
			start = ev->ends[i];
		}
		return Py_BuildValue("(iKN)", ev->kind, (unsigned long long)ev->req, parts);
	}
	case CS_EV_BODY: // (1, req, data, more_body)
		return Py_BuildValue("(iKy#N)", CS_EV_BODY, (unsigned long long)ev->req, data,
		                     (Py_ssize_t)ev->len, PyBool_FromLong(ev->flag));
	case CS_EV_WS_MESSAGE: // (11, req, data, is_text)
		return Py_BuildValue("(iKy#N)", CS_EV_WS_MESSAGE, (unsigned long long)ev->req, data,
		                     (Py_ssize_t)ev->len, PyBool_FromLong(ev->flag));
	case CS_EV_WS_CLOSE: // closed by the client: (12, req, code, reason)
		return Py_BuildValue("(iKiy#)", CS_EV_WS_CLOSE, (unsigned long long)ev->req, ev->flag, data,
		                     (Py_ssize_t)ev->len);
	case CS_EV_SENT: // completion: (3, req, ok)
		return Py_BuildValue("(iKN)", CS_EV_SENT, (unsigned long long)ev->req, PyBool_FromLong(ev->flag));
	default: // CS_EV_DISCONNECT (2, req), CS_EV_SHUTDOWN (4, 0), CS_EV_ABANDON (6, 0)
		return Py_BuildValue("(iK)", ev->kind, (unsigned long long)ev->req);
	}
}

// asgi_drain(app_handle) -> list of event tuples: the events queued for
// the app whose loop runs on this thread.
PyObject *cs_asgi_drain(PyObject *mod, PyObject *arg) {
	(void)mod;
	uintptr_t h;
	if (cs_parse_handle(arg, &h) < 0) {
		return NULL;
	}
	if (cs_loop_app == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "asgi_drain: not on an ASGI event loop thread");
		return NULL;
	}
	const cs_event *evs;
	// Takes a mutex for a moment only, never waits: GIL kept.
	size_t n = cs_aapp_drain(cs_loop_app, &evs);
	PyObject *list = PyList_New((Py_ssize_t)n);
	if (list == NULL) {
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		PyObject *o = event_object(loop_interp, &evs[i]);
		if (o == NULL) {
			// The remaining events are lost; caddysnake.asgi logs the error.
			Py_DECREF(list);
			return NULL;
		}
		PyList_SET_ITEM(list, (Py_ssize_t)i, o);
	}
	return list;
}

// The loop's flusher (asgi_set_flusher): called, with no arguments, when
// news for Go is held back, to have asgi_flush called once the loop is done
// with what it runs now. An owned reference, loop thread only.
static _Thread_local PyObject *loop_flusher;

// Appends a command to the outbox of HTTP request h when it has one on this
// loop: 1 done, 0 a completion event follows, -1 no outbox here (the caller
// calls Go), -2 out of memory (a MemoryError is set).
//
// News for Go is held back while the loop runs (with a flusher): the first
// command of a batch asks for a flush, and the requests that run after it in
// the same pass of the loop join that batch. Go's thread would otherwise
// wake on the first one and preempt the loop once per request. A streamed
// chunk (more_body) is not held: it goes out even if the app then computes
// for a while without yielding.
static int command(uintptr_t h, int kind, int arg, int arg2, const cs_str *pairs, size_t npairs,
                   const char *data, size_t len) {
	if (cs_loop_app == NULL) {
		return -1;
	}
	int held;
	int hold = loop_flusher != NULL && !(kind == CS_CMD_BODY && arg != 0);
	int rc = cs_aapp_command(cs_loop_app, h, kind, arg, arg2, pairs, npairs, data, len, hold, &held);
	if (rc == -2) {
		PyErr_NoMemory();
	}
	if (held) {
		PyObject *r = PyObject_CallNoArgs(loop_flusher);
		if (r == NULL) {
			// Without a scheduled flush Go would never hear of it: tell it now.
			PyErr_WriteUnraisable(loop_flusher);
			cs_aapp_flush(cs_loop_app);
		}
		Py_XDECREF(r);
	}
	return rc;
}

// What a call returns to caddysnake.asgi: True when it is over (nothing of its data
// is read later, no completion event follows), False when a completion event
// follows; both mean the request has an outbox. None: the call went to Go.
static PyObject *command_result(int done) {
	if (done == 1) {
		Py_RETURN_TRUE;
	}
	if (done == 0) {
		Py_RETURN_FALSE;
	}
	Py_RETURN_NONE;
}

// asgi_set_flusher(callable or None): see loop_flusher.
PyObject *cs_asgi_set_flusher(PyObject *mod, PyObject *arg) {
	(void)mod;
	if (arg != Py_None && !PyCallable_Check(arg)) {
		PyErr_SetString(PyExc_TypeError, "asgi_set_flusher(callable or None)");
		return NULL;
	}
	Py_XSETREF(loop_flusher, arg == Py_None ? NULL : Py_NewRef(arg));
	Py_RETURN_NONE;
}

// asgi_flush(): lets Go know of news held back on this loop.
PyObject *cs_asgi_flush(PyObject *mod, PyObject *unused) {
	(void)mod;
	(void)unused;
	if (cs_loop_app != NULL) {
		cs_aapp_flush(cs_loop_app);
	}
	Py_RETURN_NONE;
}

static PyObject *dead_request(PyObject *mod, uintptr_t h) {
	PyErr_Format(cs_state_of(mod)->client_disconnected, "ASGI request %zu is over", (size_t)h);
	return NULL;
}

// Parses (req, headers) from the front of args and calls go with them.
typedef int64_t (*headers_call)(uintptr_t, cs_str *, size_t, int64_t, int64_t);

// args[hdr_at] is the header list; kind and a make the outbox command (a is
// its arg), go the call for a request without one.
static PyObject *call_with_headers(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                                   Py_ssize_t want, Py_ssize_t hdr_at, const char *usage, int kind,
                                   headers_call go, int64_t a, int64_t b) {
	uintptr_t h;
	if (cs_call_args(args, nargs, want, usage, &h) < 0) {
		return NULL;
	}
	cs_str stack[2 * STACK_HEADERS], *pairs;
	PyObject *keep;
	size_t npairs;
	if (cs_flatten_headers_as(args[hdr_at], cs_bytes_view, &keep, stack, &pairs, &npairs) < 0) {
		return NULL;
	}
	int done = kind >= 0 ? command(h, kind, (int)a, (int)b, pairs, npairs, NULL, 0) : -1;
	if (done == -1) {
		// Go copies the headers before it returns.
		if (go(h, pairs, npairs, a, b) < 0) {
			cs_free_headers(keep, stack, pairs);
			return dead_request(mod, h);
		}
	}
	cs_free_headers(keep, stack, pairs);
	if (done == -2) {
		return NULL;
	}
	return command_result(done);
}

static int64_t go_start_adapter(uintptr_t h, cs_str *p, size_t n, int64_t status, int64_t trailers) {
	return go_asgi_start(h, (int)status, p, n, (int)trailers);
}

// asgi_start(req, status, headers, trailers)
PyObject *cs_asgi_start(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	if (nargs != 4) {
		PyErr_SetString(PyExc_TypeError, "asgi_start(req, status, headers, trailers)");
		return NULL;
	}
	long status = PyLong_AsLong(args[1]);
	int trailers = PyObject_IsTrue(args[3]);
	if ((status == -1 && PyErr_Occurred()) || trailers < 0) {
		return NULL;
	}
	return call_with_headers(mod, args, 4, 4, 2, "asgi_start(req, status, headers, trailers)", CS_CMD_START,
	                         go_start_adapter, status, trailers);
}

static int64_t go_hint_adapter(uintptr_t h, cs_str *p, size_t n, int64_t a, int64_t b) {
	(void)a;
	(void)b;
	return go_asgi_early_hint(h, p, n);
}

// asgi_early_hint(req, headers)
PyObject *cs_asgi_early_hint(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return call_with_headers(mod, args, nargs, 2, 1, "asgi_early_hint(req, headers)", CS_CMD_EARLY_HINT,
	                         go_hint_adapter, 0, 0);
}

static int64_t go_trailers_adapter(uintptr_t h, cs_str *p, size_t n, int64_t more, int64_t b) {
	(void)b;
	return go_asgi_trailers(h, p, n, (int)more);
}

// asgi_trailers(req, headers, more_trailers)
PyObject *cs_asgi_trailers(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	if (nargs != 3) {
		PyErr_SetString(PyExc_TypeError, "asgi_trailers(req, headers, more_trailers)");
		return NULL;
	}
	int more = PyObject_IsTrue(args[2]);
	if (more < 0) {
		return NULL;
	}
	return call_with_headers(mod, args, 3, 3, 1, "asgi_trailers(req, headers, more_trailers)", CS_CMD_TRAILERS,
	                         go_trailers_adapter, more, 0);
}

// Shared by asgi_body(req, data, more_body) and ws_send(req, data, is_text):
// an outbox command (kind >= 0) copies a small body; otherwise Go writes
// straight from data's buffer later, on the request's goroutine, and caddysnake.asgi
// keeps data alive until the completion event.
static PyObject *send_bytes_call(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                                 const char *usage, int kind, int64_t (*go)(uintptr_t, char *, size_t, int)) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 3, usage, &h) < 0) {
		return NULL;
	}
	if (!PyBytes_CheckExact(args[1])) {
		PyErr_Format(PyExc_TypeError, "%s: data must be bytes, not %.100s", usage,
		             Py_TYPE(args[1])->tp_name);
		return NULL;
	}
	int flag = PyObject_IsTrue(args[2]);
	if (flag < 0) {
		return NULL;
	}
	const char *data = PyBytes_AS_STRING(args[1]);
	size_t len = (size_t)PyBytes_GET_SIZE(args[1]);
	int done = kind >= 0 ? command(h, kind, flag, 0, NULL, 0, data, len) : -1;
	if (done == -2) {
		return NULL;
	}
	if (done == -1 && go(h, (char *)data, len, flag) < 0) {
		return dead_request(mod, h);
	}
	return command_result(done);
}

static int64_t go_body_adapter(uintptr_t h, char *data, size_t n, int more) {
	return go_asgi_body(h, data, n, more);
}

PyObject *cs_asgi_body(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return send_bytes_call(mod, args, nargs, "asgi_body(req, data, more_body)", CS_CMD_BODY, go_body_adapter);
}

// asgi_pathsend(req, path)
PyObject *cs_asgi_pathsend(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 2, "asgi_pathsend(req, path)", &h) < 0) {
		return NULL;
	}
	Py_ssize_t n;
	const char *path = PyUnicode_AsUTF8AndSize(args[1], &n);
	if (path == NULL) {
		return NULL;
	}
	int done = command(h, CS_CMD_PATHSEND, 0, 0, NULL, 0, path, (size_t)n);
	if (done == -2) {
		return NULL;
	}
	if (done == -1 && go_asgi_pathsend(h, (char *)path, (size_t)n) < 0) { // Go copies path
		return dead_request(mod, h);
	}
	return command_result(done);
}

// Calls fn(handle, int) for the (handle, int) signatures below, or appends
// an outbox command of that kind (kind >= 0) with the int as its arg.
static PyObject *handle_int_call(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                                 Py_ssize_t want, const char *usage, int kind,
                                 int64_t (*fn)(uintptr_t, int)) {
	uintptr_t h;
	if (cs_call_args(args, nargs, want, usage, &h) < 0) {
		return NULL;
	}
	int v = 0;
	if (want == 2) {
		v = (int)PyLong_AsLong(args[1]);
		if (v == -1 && PyErr_Occurred()) {
			return NULL;
		}
	}
	int done = kind >= 0 ? command(h, kind, v, 0, NULL, 0, NULL, 0) : -1;
	if (done == -2) {
		return NULL;
	}
	if (done == -1 && fn(h, v) < 0) {
		return dead_request(mod, h);
	}
	return command_result(done);
}

static int64_t go_receive_adapter(uintptr_t h, int v) {
	(void)v;
	return go_asgi_receive(h);
}

// asgi_receive(req): ask for the next body chunk.
PyObject *cs_asgi_receive(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return handle_int_call(mod, args, nargs, 1, "asgi_receive(req)", CS_CMD_RECEIVE, go_receive_adapter);
}

static int64_t go_finish_adapter(uintptr_t h, int code) { return go_asgi_finish(h, code); }

// asgi_finish(req, code)
PyObject *cs_asgi_finish(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return handle_int_call(mod, args, nargs, 2, "asgi_finish(req, code)", CS_CMD_FINISH, go_finish_adapter);
}

// asgi_ready / asgi_stopped (app_handle, ok, message): lifespan outcomes.
static PyObject *app_status_call(PyObject *const *args, Py_ssize_t nargs, const char *usage,
                                 void (*fn)(uintptr_t, int, char *, size_t)) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 3, usage, &h) < 0) {
		return NULL;
	}
	int ok = PyObject_IsTrue(args[1]);
	Py_ssize_t n;
	const char *msg = PyUnicode_AsUTF8AndSize(args[2], &n);
	if (ok < 0 || msg == NULL) {
		return NULL;
	}
	fn(h, ok, (char *)msg, (size_t)n); // Go copies msg
	Py_RETURN_NONE;
}

PyObject *cs_asgi_ready(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	(void)mod;
	return app_status_call(args, nargs, "asgi_ready(app, ok, message)", go_asgi_ready);
}

PyObject *cs_asgi_stopped(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	(void)mod;
	return app_status_call(args, nargs, "asgi_stopped(app, ok, message)", go_asgi_stopped);
}

// ws_accept(req, subprotocol, headers)
PyObject *cs_ws_accept(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 3, "ws_accept(req, subprotocol, headers)", &h) < 0) {
		return NULL;
	}
	Py_ssize_t n;
	const char *sub = PyUnicode_AsUTF8AndSize(args[1], &n);
	if (sub == NULL) {
		return NULL;
	}
	cs_str stack[2 * STACK_HEADERS], *pairs;
	PyObject *keep;
	size_t npairs;
	if (cs_flatten_headers_as(args[2], cs_bytes_view, &keep, stack, &pairs, &npairs) < 0) {
		return NULL;
	}
	int64_t rc = go_ws_accept(h, (char *)sub, (size_t)n, pairs, npairs); // Go copies all
	cs_free_headers(keep, stack, pairs);
	if (rc < 0) {
		return dead_request(mod, h);
	}
	Py_RETURN_NONE;
}

static int64_t go_ws_send_adapter(uintptr_t h, char *data, size_t n, int text) {
	return go_ws_send(h, data, n, text);
}

PyObject *cs_ws_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return send_bytes_call(mod, args, nargs, "ws_send(req, data, is_text)", -1, go_ws_send_adapter);
}

// ws_close(req, code, reason)
PyObject *cs_ws_close(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 3, "ws_close(req, code, reason)", &h) < 0) {
		return NULL;
	}
	int code = (int)PyLong_AsLong(args[1]);
	if (code == -1 && PyErr_Occurred()) {
		return NULL;
	}
	Py_ssize_t n;
	const char *reason = PyUnicode_AsUTF8AndSize(args[2], &n);
	if (reason == NULL) {
		return NULL;
	}
	if (go_ws_close(h, code, (char *)reason, (size_t)n) < 0) { // Go copies reason
		return dead_request(mod, h);
	}
	Py_RETURN_NONE;
}

static int64_t go_ws_receive_adapter(uintptr_t h, int v) {
	(void)v;
	return go_ws_receive(h);
}

// ws_receive(req): one more message credit.
PyObject *cs_ws_receive(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return handle_int_call(mod, args, nargs, 1, "ws_receive(req)", -1, go_ws_receive_adapter);
}

char *caddysnake_asgi_run(cs_interp *ci, PyThreadState *ts, PyObject *app, cs_aapp *queues, uintptr_t app_handle,
                          int wake_fd, const char *lifespan, const char *loop, const char *venv,
                          double startup_timeout, double shutdown_timeout, double request_timeout) {
	// SCHED_BATCH: Go's threads that post events to a sleeping loop are not
	// preempted by it, and go on reading other connections; the loop then
	// takes them as one batch (as wsgi_lanes.c does for WSGI workers). The Go
	// thread dies with the loop (it stays locked), so no Go thread inherits
	// the policy; threads the app starts from the loop (executors) do.
	struct sched_param sp = {0};
	sched_setscheduler(0, SCHED_BATCH, &sp);
	cs_loop_app = queues;
	loop_interp = ci;
	PyEval_RestoreThread(ts);
	char *err = NULL;
	PyObject *res = NULL;
	PyObject *opts = Py_BuildValue("{s:s,s:s,s:s,s:d,s:d,s:d}", "lifespan", lifespan, "loop", loop,
	                               "venv", venv, "startup_timeout", startup_timeout, "shutdown_timeout",
	                               shutdown_timeout, "request_timeout", request_timeout);
	if (opts != NULL) {
		res = PyObject_CallFunction(ci->run_asgi, "OKiO", app, (unsigned long long)app_handle,
		                            wake_fd, opts);
	}
	if (res == NULL) {
		err = cs_take_error(ci);
	}
	Py_XDECREF(res);
	Py_XDECREF(opts);
	Py_CLEAR(loop_flusher); // run_loop clears it; this is in case it could not
	cs_aapp_flush(queues);
	PyEval_SaveThread();
	cs_loop_app = NULL;
	loop_interp = NULL;
	return err;
}
