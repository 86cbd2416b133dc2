// caddysnake.c: CPython start-up, the _caddysnake module that Python code
// uses to reach Go, and the per-request entry point. Contracts are in
// caddysnake.h; the Go side of every go_* callback is in callbacks.go.
#include "caddysnake.h"
#include "faultchain.h"
#include "asgi_queues.h"
#include "environ.h"
#include "scope.h"
#include "lanes.h"
#include "mainfirst.h"

#include <assert.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

#include "_cgo_export.h"

// One interpreter: the main one, or a sub-interpreter with its own GIL.
// Every PyObject here belongs to that interpreter and is only touched with
// its GIL held; objects never cross interpreters (each has its own allocator).
struct cs_interp {
	PyInterpreterState *interp;
	PyThreadState *ts; // the owner thread's state, detached whenever Go holds control
	int is_main;
	// Functions defined by the bootstrap (python.go); owned references.
	PyObject *serve_wsgi;   // caddysnake.wsgi.serve
	PyObject *load_app;     // caddysnake.loader.load_app
	PyObject *describe_err; // message for an exception (traceback or ConfigError text)
	PyObject *run_asgi;     // caddysnake.asgi.run_loop
	PyObject *gil_status;   // caddysnake.loader.gil_status
	cs_environ_parts env;   // for cs_build_environ
	cs_scope_parts scope;   // for cs_build_scope
	// Sub-interpreters: a unique id (never reused, unlike the address), and
	// the thread states request threads keep for it (see cs_request_enter),
	// freed when it ends.
	uint64_t id;
	int keeps_states; // 0 past live_ids' room: requests then make states each
	pthread_mutex_t states_mu;
	PyThreadState **states;
	size_t nstates, capstates;
};

static cs_interp main_interp;

// The interpreter of the ASGI loop running on this thread, or NULL.
static _Thread_local cs_interp *loop_interp;

// The bootstrap and package sources, kept for the sub-interpreters made
// after start-up (each runs the bootstrap on its own).
static struct {
	char *source;
	char *files;
	size_t files_len;
	char *version;
} boot;

// Held while an interpreter is created or ended, and while
// _caddysnake.interpreter_count() walks the list, which CPython does not
// lock for its public walkers.
static pthread_mutex_t interp_list_mu = PTHREAD_MUTEX_INITIALIZER;

// The anchor interpreter (see cs_request_enter), left out of counts.
static PyInterpreterState *anchor_interp;

// ---------------------------------------------------------------- errors

// Consumes the current exception and returns a malloc'd description of it,
// made by ci's describe_error when it is defined. Needs ci's GIL.
static char *take_error(cs_interp *ci) {
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

// ---------------------------------------------------------------- _caddysnake

typedef struct {
	PyObject *client_disconnected; // OSError subclass: the client went away
	PyObject *request_body_error;  // OSError subclass: the body could not be read
	PyObject *request_timeout;     // BaseException subclass: raised in a request over request_timeout
} module_state;

static module_state *state_of(PyObject *module) {
	return (module_state *)PyModule_GetState(module);
}

// Raises exc with the message Go recorded for handle h.
static void raise_go_error(PyObject *exc, uintptr_t h, const char *what) {
	char msg[512];
	size_t n = go_error(h, msg, sizeof(msg) - 1);
	msg[n] = 0;
	PyErr_Format(exc, "%s: %s", what, msg);
}

static int parse_handle(PyObject *o, uintptr_t *h) {
	size_t v = PyLong_AsSize_t(o);
	if (v == (size_t)-1 && PyErr_Occurred()) {
		return -1;
	}
	*h = (uintptr_t)v;
	return 0;
}

// Checks a native function's argument count (usage names its signature)
// and parses the handle every one of them takes first.
static int call_args(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, const char *usage,
                     uintptr_t *h) {
	if (nargs != want) {
		PyErr_SetString(PyExc_TypeError, usage);
		return -1;
	}
	return parse_handle(args[0], h);
}

// The bytes of a latin-1 str without copying: a 1-byte-kind str stores
// exactly its latin-1 encoding. PEP 3333 requires header names and values to
// be such "native strings".
static int latin1_view(PyObject *s, cs_str *out) {
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

// Flattens a list of (name, value) tuples into pairs. *keep receives a new
// reference that holds every string alive while the GIL is released; *pairs
// is either stack (if it fits) or PyMem memory the caller frees when it is
// not stack.
#define STACK_HEADERS 32
// The bytes of an ASGI header name or value (ASGI: byte strings).
static int bytes_view(PyObject *b, cs_str *out) {
	if (!PyBytes_Check(b)) {
		PyErr_Format(PyExc_TypeError, "ASGI header names and values must be bytes, not %.100s",
		             Py_TYPE(b)->tp_name);
		return -1;
	}
	out->data = PyBytes_AS_STRING(b);
	out->len = (size_t)PyBytes_GET_SIZE(b);
	return 0;
}

typedef int (*view_fn)(PyObject *, cs_str *);

static int flatten_headers_as(PyObject *headers, view_fn view, PyObject **keep, cs_str *stack,
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

static int flatten_headers(PyObject *headers, PyObject **keep, cs_str *stack, cs_str **pairs,
                           size_t *n) {
	return flatten_headers_as(headers, latin1_view, keep, stack, pairs, n);
}

static void free_headers(PyObject *keep, cs_str *stack, cs_str *pairs) {
	if (pairs != NULL && pairs != stack) {
		PyMem_Free(pairs);
	}
	Py_XDECREF(keep);
}

// read(handle, size) -> bytes: up to size bytes of the request body; fewer
// only at its end, b"" after it. read1(handle, size): as soon as at least
// one byte came (io's read1), for readline on a slowly arriving body.
static PyObject *read_body(PyObject *mod, PyObject *const *args, Py_ssize_t nargs, int fill) {
	uintptr_t h;
	if (call_args(args, nargs, 2, fill ? "read(handle, size)" : "read1(handle, size)", &h) < 0) {
		return NULL;
	}
	Py_ssize_t size = PyLong_AsSsize_t(args[1]);
	if (size < 0) {
		if (!PyErr_Occurred()) {
			PyErr_SetString(PyExc_ValueError, "read size must be >= 0");
		}
		return NULL;
	}
	cs_job *j = cs_current_job;
	if (j != NULL && j->handle == h && j->preloaded) {
		// Go read the whole (small) body before the job was queued.
		size_t left = j->body_len - j->body_off;
		size_t n = (size_t)size < left ? (size_t)size : left;
		PyObject *b = PyBytes_FromStringAndSize(j->body + j->body_off, (Py_ssize_t)n);
		if (b != NULL) {
			j->body_off += n;
		}
		return b;
	}
	PyObject *b = PyBytes_FromStringAndSize(NULL, size);
	if (b == NULL) {
		return NULL;
	}
	int64_t got;
	// The body comes from a socket: never wait for it holding the GIL. The
	// request's own worker parks meanwhile (lanes.c): a slow uploader must
	// not hold one of the app's `threads`.
	cs_job *own = j != NULL && j->handle == h ? j : NULL;
	Py_BEGIN_ALLOW_THREADS
	int spawn = own != NULL ? caddysnake_lane_park(own) : 0;
	got = go_read(h, PyBytes_AS_STRING(b), (size_t)size, fill, spawn);
	if (own != NULL) {
		caddysnake_lane_unpark(own);
	}
	Py_END_ALLOW_THREADS
	if (got < 0) {
		Py_DECREF(b);
		raise_go_error(state_of(mod)->request_body_error, h, "reading the request body failed");
		return NULL;
	}
	if (got < size && _PyBytes_Resize(&b, (Py_ssize_t)got) < 0) {
		return NULL; // _PyBytes_Resize freed b
	}
	return b;
}

static PyObject *cs_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return read_body(mod, args, nargs, 1);
}

static PyObject *cs_read1(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return read_body(mod, args, nargs, 0);
}

// Result codes of go_write and go_sendfile.
#define GO_CLIENT_GONE -1
#define GO_INVALID -2
#define GO_NO_MEMORY -3 // cs_job_write

// Hands headers (status != 0) and data to Go: appended to the job when the
// calling thread is the request's worker (lanes.c, no call into Go), else
// (a thread the app started) through go_write. With the GIL; returns 0 or
// GO_CLIENT_GONE, GO_INVALID, GO_NO_MEMORY.
static int64_t send_frame(uintptr_t h, int status, cs_str *pairs, size_t npairs, char *data, size_t len,
                          int flush) {
	cs_job *j = cs_current_job;
	if (j != NULL && j->handle == h) {
		return cs_job_write(j, status, pairs, npairs, data, len, flush);
	}
	int64_t rc;
	// A write can block on a slow client: release the GIL. The caller's
	// buffers hold the data and header strings meanwhile.
	Py_BEGIN_ALLOW_THREADS
	rc = go_write(h, status, pairs, npairs, data, len, flush);
	Py_END_ALLOW_THREADS
	return rc;
}

static PyObject *write_error(PyObject *mod, uintptr_t h, int64_t rc) {
	if (rc == GO_NO_MEMORY) {
		return PyErr_NoMemory();
	}
	if (rc == GO_CLIENT_GONE && cs_current_job != NULL && cs_current_job->handle == h) {
		// Go said so through the job: no message to fetch from Go.
		PyErr_SetString(state_of(mod)->client_disconnected, "client disconnected");
		return NULL;
	}
	if (rc == GO_INVALID) {
		raise_go_error(PyExc_ValueError, h, "invalid response");
	} else {
		raise_go_error(state_of(mod)->client_disconnected, h, "client disconnected");
	}
	return NULL;
}

// write(handle, status, headers | None, data, flush): headers (with status)
// go first, once; then data, pushed to the client now if flush.
static PyObject *cs_write(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (call_args(args, nargs, 5, "write(handle, status, headers, data, flush)", &h) < 0) {
		return NULL;
	}
	int status = (int)PyLong_AsLong(args[1]);
	if (status == -1 && PyErr_Occurred()) {
		return NULL;
	}
	int flush = PyObject_IsTrue(args[4]);
	if (flush < 0) {
		return NULL;
	}
	Py_buffer view;
	if (PyObject_GetBuffer(args[3], &view, PyBUF_SIMPLE) < 0) {
		return NULL;
	}
	cs_str stack[2 * STACK_HEADERS], *pairs;
	PyObject *keep;
	size_t npairs;
	if (flatten_headers(args[2], &keep, stack, &pairs, &npairs) < 0) {
		PyBuffer_Release(&view);
		return NULL;
	}
	int64_t rc = send_frame(h, args[2] == Py_None ? 0 : status, pairs, npairs, (char *)view.buf,
	                        (size_t)view.len, flush);
	free_headers(keep, stack, pairs);
	PyBuffer_Release(&view);
	if (rc < 0) {
		return write_error(mod, h, rc);
	}
	Py_RETURN_NONE;
}

// sendfile(handle, status, headers | None, fd, offset, count) -> int: sends
// count bytes (-1: to the end) of regular file fd from offset.
static PyObject *cs_sendfile(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (call_args(args, nargs, 6, "sendfile(handle, status, headers, fd, offset, count)", &h) < 0) {
		return NULL;
	}
	int status = (int)PyLong_AsLong(args[1]);
	int fd = (int)PyLong_AsLong(args[3]);
	long long offset = PyLong_AsLongLong(args[4]);
	long long count = PyLong_AsLongLong(args[5]);
	if (PyErr_Occurred()) {
		return NULL;
	}
	cs_str stack[2 * STACK_HEADERS], *pairs;
	PyObject *keep;
	size_t npairs;
	if (flatten_headers(args[2], &keep, stack, &pairs, &npairs) < 0) {
		return NULL;
	}
	cs_job *j = cs_current_job;
	if (j != NULL && j->handle == h && cs_job_drain(j) < 0) {
		// Go writes the file itself: the frames before it must be out first.
		free_headers(keep, stack, pairs);
		return write_error(mod, h, GO_CLIENT_GONE);
	}
	int64_t sent;
	Py_BEGIN_ALLOW_THREADS
	sent = go_sendfile(h, args[2] == Py_None ? 0 : status, pairs, npairs, fd, offset, count);
	Py_END_ALLOW_THREADS
	free_headers(keep, stack, pairs);
	if (sent < 0) {
		return write_error(mod, h, sent);
	}
	return PyLong_FromLongLong(sent);
}

// log(handle, level, message): to Caddy's log, as the app's logger.
static PyObject *cs_log(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (call_args(args, nargs, 3, "log(handle, level, message)", &h) < 0) {
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

// ---------------------------------------------------------------- ASGI calls
//
// All of these run on an app's event loop thread and must not block it, so
// they keep the GIL. An HTTP request's commands go into its outbox
// (asgi_queues.c) for its goroutine to carry out; a WebSocket's go to Go
// through the go_asgi_* and go_ws_* callbacks, which only queue work for the
// request's goroutine too. Answers come later as events, drained by
// asgi_drain.

// Python object for one event (asgi.go documents the kinds), in ci.
static PyObject *event_object(cs_interp *ci, const cs_event *ev) {
	// Py_BuildValue's "y#" turns a NULL pointer into None; an empty body
	// chunk, message or close reason must be b"".
	const char *data = ev->data != NULL ? ev->data : "";
	switch (ev->kind) {
	case 0: { // new HTTP request: (5, req, scope, has_body), the scope built here
		int has_body;
		PyObject *scope = cs_build_scope(&ci->scope, ev->data, ev->ends, ev->n, &has_body);
		if (scope != NULL) {
			return Py_BuildValue("(iKNN)", 5, (unsigned long long)ev->req, scope, PyBool_FromLong(has_body));
		}
		// Malformed: (0, req, parts), for asgi.py to report and refuse.
		PyErr_Clear();
	}
	// fall through
	case 10: { // new WebSocket connection: (10, req, parts)
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
	case 1: // body chunk: (1, req, data, more_body)
		return Py_BuildValue("(iKy#N)", 1, (unsigned long long)ev->req, data,
		                     (Py_ssize_t)ev->len, PyBool_FromLong(ev->flag));
	case 11: // WebSocket message: (11, req, data, is_text)
		return Py_BuildValue("(iKy#N)", 11, (unsigned long long)ev->req, data,
		                     (Py_ssize_t)ev->len, PyBool_FromLong(ev->flag));
	case 12: // WebSocket closed by the client: (12, req, code, reason)
		return Py_BuildValue("(iKiy#)", 12, (unsigned long long)ev->req, ev->flag, data,
		                     (Py_ssize_t)ev->len);
	case 3: // completion: (3, req, ok)
		return Py_BuildValue("(iKN)", 3, (unsigned long long)ev->req, PyBool_FromLong(ev->flag));
	default: // disconnect (2, req), shutdown (4, 0), abandon (6, 0)
		return Py_BuildValue("(iK)", ev->kind, (unsigned long long)ev->req);
	}
}

// asgi_drain(app_handle) -> list of event tuples: the events queued for
// the app whose loop runs on this thread.
static PyObject *cs_asgi_drain(PyObject *mod, PyObject *arg) {
	uintptr_t h;
	if (parse_handle(arg, &h) < 0) {
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
			// The remaining events are lost; asgi.py logs the error.
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
	int hold = loop_flusher != NULL && !(kind == ACMD_BODY && arg != 0);
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

// What a call returns to asgi.py: True when it is over (nothing of its data
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
static PyObject *cs_asgi_set_flusher(PyObject *mod, PyObject *arg) {
	if (arg != Py_None && !PyCallable_Check(arg)) {
		PyErr_SetString(PyExc_TypeError, "asgi_set_flusher(callable or None)");
		return NULL;
	}
	Py_XSETREF(loop_flusher, arg == Py_None ? NULL : Py_NewRef(arg));
	Py_RETURN_NONE;
}

// asgi_flush(): lets Go know of news held back on this loop.
static PyObject *cs_asgi_flush(PyObject *mod, PyObject *unused) {
	if (cs_loop_app != NULL) {
		cs_aapp_flush(cs_loop_app);
	}
	Py_RETURN_NONE;
}

static PyObject *dead_request(PyObject *mod, uintptr_t h) {
	PyErr_Format(state_of(mod)->client_disconnected, "ASGI request %zu is over", (size_t)h);
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
	if (call_args(args, nargs, want, usage, &h) < 0) {
		return NULL;
	}
	cs_str stack[2 * STACK_HEADERS], *pairs;
	PyObject *keep;
	size_t npairs;
	if (flatten_headers_as(args[hdr_at], bytes_view, &keep, stack, &pairs, &npairs) < 0) {
		return NULL;
	}
	int done = kind >= 0 ? command(h, kind, (int)a, (int)b, pairs, npairs, NULL, 0) : -1;
	if (done == -1) {
		// Go copies the headers before it returns.
		if (go(h, pairs, npairs, a, b) < 0) {
			free_headers(keep, stack, pairs);
			return dead_request(mod, h);
		}
	}
	free_headers(keep, stack, pairs);
	if (done == -2) {
		return NULL;
	}
	return command_result(done);
}

static int64_t go_start_adapter(uintptr_t h, cs_str *p, size_t n, int64_t status, int64_t trailers) {
	return go_asgi_start(h, (int)status, p, n, (int)trailers);
}

// asgi_start(req, status, headers, trailers)
static PyObject *cs_asgi_start(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	if (nargs != 4) {
		PyErr_SetString(PyExc_TypeError, "asgi_start(req, status, headers, trailers)");
		return NULL;
	}
	long status = PyLong_AsLong(args[1]);
	int trailers = PyObject_IsTrue(args[3]);
	if ((status == -1 && PyErr_Occurred()) || trailers < 0) {
		return NULL;
	}
	return call_with_headers(mod, args, 4, 4, 2, "asgi_start(req, status, headers, trailers)", ACMD_START,
	                         go_start_adapter, status, trailers);
}

static int64_t go_hint_adapter(uintptr_t h, cs_str *p, size_t n, int64_t a, int64_t b) {
	return go_asgi_early_hint(h, p, n);
}

// asgi_early_hint(req, headers)
static PyObject *cs_asgi_early_hint(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return call_with_headers(mod, args, nargs, 2, 1, "asgi_early_hint(req, headers)", ACMD_EARLY_HINT,
	                         go_hint_adapter, 0, 0);
}

static int64_t go_trailers_adapter(uintptr_t h, cs_str *p, size_t n, int64_t more, int64_t b) {
	return go_asgi_trailers(h, p, n, (int)more);
}

// asgi_trailers(req, headers, more_trailers)
static PyObject *cs_asgi_trailers(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	if (nargs != 3) {
		PyErr_SetString(PyExc_TypeError, "asgi_trailers(req, headers, more_trailers)");
		return NULL;
	}
	int more = PyObject_IsTrue(args[2]);
	if (more < 0) {
		return NULL;
	}
	return call_with_headers(mod, args, 3, 3, 1, "asgi_trailers(req, headers, more_trailers)", ACMD_TRAILERS,
	                         go_trailers_adapter, more, 0);
}

// Shared by asgi_body(req, data, more_body) and ws_send(req, data, is_text):
// an outbox command (kind >= 0) copies a small body; otherwise Go writes
// straight from data's buffer later, on the request's goroutine, and asgi.py
// keeps data alive until the completion event.
static PyObject *send_bytes_call(PyObject *mod, PyObject *const *args, Py_ssize_t nargs,
                                 const char *usage, int kind, int64_t (*go)(uintptr_t, char *, size_t, int)) {
	uintptr_t h;
	if (call_args(args, nargs, 3, usage, &h) < 0) {
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

static PyObject *cs_asgi_body(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return send_bytes_call(mod, args, nargs, "asgi_body(req, data, more_body)", ACMD_BODY, go_body_adapter);
}

// asgi_pathsend(req, path)
static PyObject *cs_asgi_pathsend(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (call_args(args, nargs, 2, "asgi_pathsend(req, path)", &h) < 0) {
		return NULL;
	}
	Py_ssize_t n;
	const char *path = PyUnicode_AsUTF8AndSize(args[1], &n);
	if (path == NULL) {
		return NULL;
	}
	int done = command(h, ACMD_PATHSEND, 0, 0, NULL, 0, path, (size_t)n);
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
	if (call_args(args, nargs, want, usage, &h) < 0) {
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

static int64_t go_receive_adapter(uintptr_t h, int v) { return go_asgi_receive(h); }

// asgi_receive(req): ask for the next body chunk.
static PyObject *cs_asgi_receive(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return handle_int_call(mod, args, nargs, 1, "asgi_receive(req)", ACMD_RECEIVE, go_receive_adapter);
}

static int64_t go_finish_adapter(uintptr_t h, int code) { return go_asgi_finish(h, code); }

// asgi_finish(req, code)
static PyObject *cs_asgi_finish(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return handle_int_call(mod, args, nargs, 2, "asgi_finish(req, code)", ACMD_FINISH, go_finish_adapter);
}

// asgi_ready / asgi_stopped (app_handle, ok, message): lifespan outcomes.
static PyObject *app_status_call(PyObject *const *args, Py_ssize_t nargs, const char *usage,
                                 void (*fn)(uintptr_t, int, char *, size_t)) {
	uintptr_t h;
	if (call_args(args, nargs, 3, usage, &h) < 0) {
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

static PyObject *cs_asgi_ready(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return app_status_call(args, nargs, "asgi_ready(app, ok, message)", go_asgi_ready);
}

static PyObject *cs_asgi_stopped(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return app_status_call(args, nargs, "asgi_stopped(app, ok, message)", go_asgi_stopped);
}

// ws_accept(req, subprotocol, headers)
static PyObject *cs_ws_accept(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (call_args(args, nargs, 3, "ws_accept(req, subprotocol, headers)", &h) < 0) {
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
	if (flatten_headers_as(args[2], bytes_view, &keep, stack, &pairs, &npairs) < 0) {
		return NULL;
	}
	int64_t rc = go_ws_accept(h, (char *)sub, (size_t)n, pairs, npairs); // Go copies all
	free_headers(keep, stack, pairs);
	if (rc < 0) {
		return dead_request(mod, h);
	}
	Py_RETURN_NONE;
}

static int64_t go_ws_send_adapter(uintptr_t h, char *data, size_t n, int text) {
	return go_ws_send(h, data, n, text);
}

static PyObject *cs_ws_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return send_bytes_call(mod, args, nargs, "ws_send(req, data, is_text)", -1, go_ws_send_adapter);
}

// ws_close(req, code, reason)
static PyObject *cs_ws_close(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (call_args(args, nargs, 3, "ws_close(req, code, reason)", &h) < 0) {
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

static int64_t go_ws_receive_adapter(uintptr_t h, int v) { return go_ws_receive(h); }

// ws_receive(req): one more message credit.
static PyObject *cs_ws_receive(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return handle_int_call(mod, args, nargs, 1, "ws_receive(req)", -1, go_ws_receive_adapter);
}

// Lays the items of tuple t out back to back as Go lays a request out
// (buf, and ends[i] the end of item i), each seen through view: for the
// test entry points below. 0, or -1 with an exception set; the caller
// PyMem_Frees *buf and *ends either way.
static int flatten_tuple(PyObject *t, view_fn view, char **buf, int32_t **ends) {
	Py_ssize_t n = PyTuple_GET_SIZE(t);
	size_t total = 0;
	*buf = NULL;
	*ends = NULL;
	for (Py_ssize_t i = 0; i < n; i++) {
		cs_str v;
		if (view(PyTuple_GET_ITEM(t, i), &v) < 0) {
			return -1;
		}
		total += v.len;
	}
	*buf = PyMem_Malloc(total + 1);
	*ends = PyMem_Malloc(sizeof(int32_t) * (size_t)(n + 1));
	if (*buf == NULL || *ends == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	size_t at = 0;
	for (Py_ssize_t i = 0; i < n; i++) {
		cs_str v;
		view(PyTuple_GET_ITEM(t, i), &v); // checked above
		memcpy(*buf + at, v.data, v.len);
		at += v.len;
		(*ends)[i] = (int32_t)at;
	}
	return 0;
}

// build_environ(req, handle) -> environ: the C builder run on a request
// tuple in the form caddysnake.wsgi.build_environ takes, so that tests can
// compare it with that reference inside a real interpreter.
static PyObject *cs_build_environ_py(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	if (nargs != 2 || !PyTuple_Check(args[0])) {
		PyErr_SetString(PyExc_TypeError, "build_environ(req: tuple of str, handle: int)");
		return NULL;
	}
	size_t h = PyLong_AsSize_t(args[1]);
	if (h == (size_t)-1 && PyErr_Occurred()) {
		return NULL;
	}
	PyObject *env = NULL, *wsgi_module = NULL;
	char *buf;
	int32_t *ends;
	if (flatten_tuple(args[0], latin1_view, &buf, &ends) == 0) {
		cs_environ_parts parts;
		wsgi_module = PyImport_ImportModule("caddysnake.wsgi");
		if (wsgi_module != NULL && cs_environ_parts_init(&parts, wsgi_module) == 0) {
			env = cs_build_environ(&parts, (uintptr_t)h, buf, ends, (int)PyTuple_GET_SIZE(args[0]));
			cs_environ_parts_clear(&parts);
		}
	}
	Py_XDECREF(wsgi_module);
	PyMem_Free(buf);
	PyMem_Free(ends);
	return env;
}

// build_scope(parts) -> (scope, has_body): the C builder run on a parts
// tuple of bytes in the form caddysnake.asgi.build_scope takes (the scope
// has no "state"), so that tests can compare it with that reference inside
// a real interpreter.
static PyObject *cs_build_scope_py(PyObject *mod, PyObject *arg) {
	if (!PyTuple_Check(arg)) {
		PyErr_SetString(PyExc_TypeError, "build_scope(parts: tuple of bytes)");
		return NULL;
	}
	PyObject *out = NULL, *asgi_module = NULL;
	char *buf;
	int32_t *ends;
	if (flatten_tuple(arg, bytes_view, &buf, &ends) == 0) {
		cs_scope_parts parts;
		asgi_module = PyImport_ImportModule("caddysnake.asgi");
		if (asgi_module != NULL && cs_scope_parts_init(&parts, asgi_module) == 0) {
			int has_body;
			PyObject *scope = cs_build_scope(&parts, buf, ends, (int)PyTuple_GET_SIZE(arg), &has_body);
			if (scope != NULL) {
				out = Py_BuildValue("(NN)", scope, PyBool_FromLong(has_body));
			}
			cs_scope_parts_clear(&parts);
		}
	}
	Py_XDECREF(asgi_module);
	PyMem_Free(buf);
	PyMem_Free(ends);
	return out;
}

// The number of live interpreters in the process (main included), for
// tests and diagnostics: sub-interpreters must not outlive their app.
static PyObject *cs_interpreter_count(PyObject *mod, PyObject *unused) {
	long n = 0;
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&interp_list_mu);
	for (PyInterpreterState *i = PyInterpreterState_Head(); i != NULL; i = PyInterpreterState_Next(i)) {
		n += i != anchor_interp; // the anchor is an implementation detail
	}
	pthread_mutex_unlock(&interp_list_mu);
	Py_END_ALLOW_THREADS
	return PyLong_FromLong(n);
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

static int module_exec(PyObject *m) {
	module_state *st = state_of(m);
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
	module_state *st = state_of(m);
	Py_VISIT(st->client_disconnected);
	Py_VISIT(st->request_body_error);
	Py_VISIT(st->request_timeout);
	return 0;
}

static int module_clear(PyObject *m) {
	module_state *st = state_of(m);
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
	.m_size = sizeof(module_state),
	.m_methods = module_methods,
	.m_slots = module_slots,
	.m_traverse = module_traverse,
	.m_clear = module_clear,
	.m_free = module_free,
};

static PyObject *PyInit__caddysnake(void) { return PyModuleDef_Init(&module_def); }

// ---------------------------------------------------------------- start-up

static char *status_error(PyStatus status) {
	char buf[512];
	snprintf(buf, sizeof(buf), "starting CPython failed: %s%s%s",
	         status.func ? status.func : "", status.func ? ": " : "",
	         status.err_msg ? status.err_msg : "unknown error");
	return strdup(buf);
}

// Builds {module name: source} from the NUL-separated blob.
static PyObject *files_dict(const char *files, size_t len) {
	PyObject *d = PyDict_New();
	if (d == NULL) {
		return NULL;
	}
	const char *p = files, *end = files + len;
	while (p < end) {
		const char *name = p;
		p += strlen(p) + 1;
		if (p >= end) {
			break;
		}
		const char *src = p;
		p += strlen(p) + 1;
		PyObject *s = PyUnicode_FromString(src);
		if (s == NULL || PyDict_SetItemString(d, name, s) < 0) {
			Py_XDECREF(s);
			Py_DECREF(d);
			return NULL;
		}
		Py_DECREF(s);
	}
	return d;
}

static PyObject *take_global(PyObject *ns, const char *name) {
	PyObject *o = PyDict_GetItemString(ns, name); // borrowed
	if (o == NULL) {
		PyErr_Format(PyExc_RuntimeError, "bootstrap did not define %s", name);
		return NULL;
	}
	Py_INCREF(o);
	return o;
}

// Runs the bootstrap in ci's interpreter (current, GIL held) and keeps the
// functions it defines.
static char *run_bootstrap(cs_interp *ci) {
	PyObject *ns = NULL, *code = NULL, *res = NULL, *fd = NULL, *ver = NULL;
	char *err = NULL;
	ns = PyDict_New();
	fd = files_dict(boot.files, boot.files_len);
	ver = PyUnicode_FromString(boot.version);
	if (ns == NULL || fd == NULL || ver == NULL ||
	    PyDict_SetItemString(ns, "__builtins__", PyEval_GetBuiltins()) < 0 ||
	    PyDict_SetItemString(ns, "EMBEDDED_FILES", fd) < 0 ||
	    PyDict_SetItemString(ns, "BINARY_VERSION", ver) < 0 ||
	    PyDict_SetItemString(ns, "ISOLATED", ci->is_main ? Py_False : Py_True) < 0) {
		goto fail;
	}
	code = Py_CompileString(boot.source, "<caddysnake bootstrap>", Py_file_input);
	if (code == NULL) {
		goto fail;
	}
	res = PyEval_EvalCode(code, ns, ns);
	if (res == NULL) {
		goto fail;
	}
	if ((ci->describe_err = take_global(ns, "describe_error")) == NULL ||
	    (ci->serve_wsgi = take_global(ns, "serve_wsgi")) == NULL ||
	    (ci->load_app = take_global(ns, "load_app")) == NULL ||
	    (ci->run_asgi = take_global(ns, "run_asgi_loop")) == NULL ||
	    (ci->gil_status = take_global(ns, "gil_status")) == NULL) {
		goto fail;
	}
	if (ci->is_main) {
		PyObject *fn = PyDict_GetItemString(ns, "init_extension_in_main"); // borrowed
		if (fn == NULL) {
			PyErr_SetString(PyExc_RuntimeError, "bootstrap did not define init_extension_in_main");
			goto fail;
		}
		cs_mainfirst_set(fn);
	}
	PyObject *wsgi_module = PyDict_GetItemString(ns, "wsgi"); // borrowed
	if (wsgi_module == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "bootstrap did not import wsgi");
		goto fail;
	}
	PyObject *asgi_module = PyDict_GetItemString(ns, "asgi"); // borrowed
	if (asgi_module == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "bootstrap did not import asgi");
		goto fail;
	}
	if (cs_environ_parts_init(&ci->env, wsgi_module) < 0 || cs_scope_parts_init(&ci->scope, asgi_module) < 0) {
		goto fail;
	}
	goto done;
fail:
	err = take_error(ci);
done:
	Py_XDECREF(res);
	Py_XDECREF(code);
	Py_XDECREF(ver);
	Py_XDECREF(fd);
	Py_XDECREF(ns);
	return err;
}

static void drop_functions(cs_interp *ci) {
	Py_CLEAR(ci->serve_wsgi);
	Py_CLEAR(ci->load_app);
	Py_CLEAR(ci->describe_err);
	Py_CLEAR(ci->run_asgi);
	Py_CLEAR(ci->gil_status);
	cs_environ_parts_clear(&ci->env);
	cs_scope_parts_clear(&ci->scope);
}

// glibc hands the free memory at the top of a heap back to the kernel once
// it passes 128 KiB (M_TRIM_THRESHOLD). A server that allocates and frees a
// request body or a response of 64 KiB per request then has every one of
// them fault fresh, zeroed pages in again: measured on the 64 KiB ASGI echo
// benchmark, 6-7k req/s with the default against 9.5-11k with 8 MiB. So the
// threshold becomes 8 MiB per heap, and the mmap threshold (which setting
// the other one freezes at 128 KiB) 1 MiB, unless the operator chose either
// through glibc's environment variables.
static void tune_malloc(void) {
#ifdef __GLIBC__
	if (getenv("MALLOC_TRIM_THRESHOLD_") == NULL && getenv("MALLOC_MMAP_THRESHOLD_") == NULL) {
		mallopt(M_TRIM_THRESHOLD, 8 << 20);
		mallopt(M_MMAP_THRESHOLD, 1 << 20);
	}
#endif
}

// Turns on CPython's faulthandler (main GIL held): on a fatal signal
// (SIGSEGV, SIGFPE, SIGABRT, SIGBUS, SIGILL) it writes "Fatal Python error"
// and the stack of every Python thread of the crashing thread's interpreter
// to fd 2, where Caddy logs by default, then restores the handler it
// replaced and re-raises the signal. The handler it replaces is Go's: the Go
// runtime installs its own at process start, long before Python starts, so
// Go's dump (goroutines, registers) still follows and the process still
// dies with it. Called explicitly: PyConfig.faulthandler did it on 3.11 but
// left it off on 3.12.1 and 3.13.0 (seen: faulthandler.is_enabled() False).
// CADDYSNAKE_FAULTHANDLER=0 leaves it off (PYTHONFAULTHANDLER then works as
// usual). A failure only loses the report, so it is not an error.
static void enable_faulthandler(void) {
	const char *v = getenv("CADDYSNAKE_FAULTHANDLER");
	if (v != NULL && (strcmp(v, "0") == 0 || strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0)) {
		return;
	}
	PyObject *fh = PyImport_ImportModule("faulthandler");
	cs_faultchain_save_go();
	PyObject *res = fh != NULL ? PyObject_CallMethod(fh, "enable", "ii", 2, 1) : NULL; // (file=2, all_threads=True)
	if (res == NULL) {
		PyErr_Clear();
	}
	// Go keeps the faults of Go code (recoverable panics): faultchain.c.
	cs_faultchain_install();
	Py_XDECREF(res);
	Py_XDECREF(fh);
}

char *caddysnake_init(const char *bootstrap, const char *files, size_t files_len,
                      const char *version, cs_interp **main_out) {
	tune_malloc();
	boot.source = strdup(bootstrap);
	boot.files = malloc(files_len);
	boot.version = strdup(version);
	if (boot.source == NULL || boot.files == NULL || boot.version == NULL) {
		return strdup("out of memory");
	}
	memcpy(boot.files, files, files_len);
	boot.files_len = files_len;
	if (PyImport_AppendInittab("_caddysnake", PyInit__caddysnake) < 0) {
		return strdup("cannot register the _caddysnake module");
	}
	PyConfig config;
	PyConfig_InitPythonConfig(&config);
	// Caddy owns the process signals (SIGINT/SIGTERM mean a graceful stop).
	config.install_signal_handlers = 0;
	config.parse_argv = 0;
	PyStatus status = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(status)) {
		return status_error(status);
	}
	main_interp.interp = PyInterpreterState_Main();
	main_interp.is_main = 1;
	enable_faulthandler();
	char *err = run_bootstrap(&main_interp);
	// Detach: from now on every thread takes the GIL only when it runs Python.
	main_interp.ts = PyEval_SaveThread();
	*main_out = &main_interp;
	return err;
}

const char *caddysnake_python_version(void) { return Py_GetVersion(); }

const char *caddysnake_linked_version(void) { return PY_VERSION; }

int caddysnake_subinterpreters_supported(void) { return PY_VERSION_HEX >= 0x030C0000; }

int caddysnake_free_threaded_build(void) {
#ifdef Py_GIL_DISABLED
	return 1;
#else
	return 0;
#endif
}

// ---------------------------------------------------------------- request thread states

// This OS thread's thread state in the main interpreter, made by its first
// request and kept for the thread's life: Go reuses its threads, so the
// states stay bounded by the threads that ever ran Python, and
// threading.local and PyGILState_Ensure see one state per thread as on any
// threaded server. CPython never finalizes, so none is ever freed. A thread
// exits only when a goroutine locked to it ends (request goroutines never
// lock; interpreter owners and event loops do, and may land on a thread that
// once served requests): its states are then left behind, a few KiB at most
// once per such goroutine, that is per reload.
static _Thread_local PyThreadState *main_request_ts;

// Sub-interpreters end on reload, and Py_EndInterpreter wants every other
// thread state of the interpreter gone first: their owner deletes the ones
// request threads keep (cs_interp.states). Deleting a thread state from
// another thread is safe only if no thread's PyGILState slot still points to
// it: activating a state binds the thread's slot to it, and the next
// binding writes through the old pointer (CPython's bind_gilstate_tstate).
// So a request thread ends every sub-interpreter request by activating its
// state of the "anchor", an empty own-GIL interpreter that never runs code
// and never ends: that moves the slot off the sub-interpreter's state, for
// the price of a lock held for an instant (one anchor for all request
// threads: under heavy load on many sub-interpreters it could become
// contended; several anchors picked by thread would spread it). A fresh
// thread state per request would avoid this, but costs more: its frame stack
// is an mmap'd chunk mapped and unmapped each time (hello world served at
// half the speed).
static _Thread_local PyThreadState *anchor_ts;

// The states this thread keeps, by interpreter id; an entry of an ended
// interpreter is stale (its state was freed) and is reused.
#define KEPT_STATES 8
static _Thread_local struct {
	uint64_t id;
	PyThreadState *ts;
} kept_states[KEPT_STATES];

// Ids of the live sub-interpreters, to tell stale entries of kept_states.
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t live_ids[256];
static uint64_t next_id __attribute__((unused)) = 1; // unused before 3.12
static size_t nlive;

static int id_is_live(uint64_t id) {
	for (size_t i = 0; i < nlive; i++) {
		if (live_ids[i] == id) {
			return 1;
		}
	}
	return 0;
}

// This thread's kept state for sub-interpreter ci, made on first use, or
// NULL when this thread keeps states for too many live interpreters.
static PyThreadState *kept_state(cs_interp *ci) {
	int free_slot = -1;
	for (int i = 0; i < KEPT_STATES; i++) {
		if (kept_states[i].id == ci->id) {
			return kept_states[i].ts;
		}
		if (kept_states[i].id == 0) {
			free_slot = free_slot < 0 ? i : free_slot;
		}
	}
	if (anchor_ts == NULL && (anchor_ts = PyThreadState_New(anchor_interp)) == NULL) {
		return NULL;
	}
	if (free_slot < 0) {
		pthread_mutex_lock(&live_mu);
		for (int i = 0; i < KEPT_STATES && free_slot < 0; i++) {
			if (!id_is_live(kept_states[i].id)) {
				free_slot = i;
			}
		}
		pthread_mutex_unlock(&live_mu);
		if (free_slot < 0) {
			return NULL;
		}
	}
	pthread_mutex_lock(&ci->states_mu);
	if (ci->nstates == ci->capstates) {
		size_t cap = ci->capstates ? 2 * ci->capstates : 16;
		PyThreadState **grown = realloc(ci->states, cap * sizeof *grown);
		if (grown == NULL) {
			pthread_mutex_unlock(&ci->states_mu);
			return NULL;
		}
		ci->states = grown;
		ci->capstates = cap;
	}
	PyThreadState *ts = PyThreadState_New(ci->interp); // needs no GIL
	if (ts != NULL) {
		ci->states[ci->nstates++] = ts;
		kept_states[free_slot].id = ci->id;
		kept_states[free_slot].ts = ts;
	}
	pthread_mutex_unlock(&ci->states_mu);
	return ts;
}

// Attaches the calling (Go) thread to ci for one request; returns 1 if it
// used a kept state, 0 for a state made for this request, -1 on failure.
int cs_request_enter(cs_interp *ci) {
	PyThreadState *ts;
	int kept = 1;
	if (ci->is_main) {
		if (main_request_ts == NULL) {
			main_request_ts = PyThreadState_New(ci->interp);
		}
		ts = main_request_ts;
	} else if (!ci->keeps_states || (ts = kept_state(ci)) == NULL) {
		kept = 0;
		ts = PyThreadState_New(ci->interp);
	}
	if (ts == NULL) {
		return -1;
	}
	PyEval_RestoreThread(ts);
	return kept;
}

void cs_request_leave(cs_interp *ci, int kept) {
	if (ci->is_main) {
		PyEval_SaveThread();
	} else if (kept) {
		PyEval_SaveThread();
		PyEval_RestoreThread(anchor_ts); // rebinds this thread's PyGILState slot
		// The invariant the owner's deletion relies on (a cheap TLS read).
		assert(PyGILState_GetThisThreadState() == anchor_ts);
		PyEval_SaveThread();
	} else {
		PyThreadState_Clear(PyThreadState_Get());
		PyThreadState_DeleteCurrent(); // unbinds it
	}
}

// ---------------------------------------------------------------- interpreters

char *caddysnake_interp_new(cs_interp **out) {
#if PY_VERSION_HEX >= 0x030C0000
	// Py_NewInterpreterFromConfig wants a current thread state on entry: a
	// temporary one of the main interpreter, dropped once the new one runs.
	PyThreadState *tmp = PyThreadState_New(PyInterpreterState_Main());
	// Lock order: interp_list_mu before any GIL. Creating an interpreter
	// takes the main GIL inside (3.13 loads builtin modules through the
	// main interpreter), so nobody may wait for the mutex holding a GIL.
	pthread_mutex_lock(&interp_list_mu);
	PyEval_RestoreThread(tmp);
	// The isolated configuration of PEP 684: own GIL and allocator, no fork
	// or exec, no daemon threads (they could outlive Py_EndInterpreter), and
	// only extensions that declare sub-interpreter support.
	PyInterpreterConfig config = {
		.use_main_obmalloc = 0,
		.allow_fork = 0,
		.allow_exec = 0,
		.allow_threads = 1,
		.allow_daemon_threads = 0,
		.check_multi_interp_extensions = 1,
		.gil = PyInterpreterConfig_OWN_GIL,
	};
	PyThreadState *sub = NULL;
	PyStatus status = PyStatus_Ok();
	if (anchor_interp == NULL) {
		// See cs_request_enter. Its creation state stays, detached, for good.
		status = Py_NewInterpreterFromConfig(&sub, &config);
		if (!PyStatus_Exception(status)) {
			anchor_interp = PyThreadState_GetInterpreter(sub);
			PyEval_SaveThread();
			PyEval_RestoreThread(tmp);
		}
	}
	if (!PyStatus_Exception(status)) {
		status = Py_NewInterpreterFromConfig(&sub, &config);
	}
	if (PyStatus_Exception(status)) {
		// On failure tmp is current again, with the main GIL.
		PyThreadState_Clear(tmp);
		PyThreadState_DeleteCurrent();
		pthread_mutex_unlock(&interp_list_mu);
		return status_error(status);
	}
	pthread_mutex_unlock(&interp_list_mu);
	// sub is current and holds its own GIL; the main GIL was released.
	cs_interp *ci = calloc(1, sizeof(*ci));
	if (ci == NULL) {
		Py_EndInterpreter(sub);
		PyEval_RestoreThread(tmp);
		PyThreadState_Clear(tmp);
		PyThreadState_DeleteCurrent();
		return strdup("out of memory");
	}
	ci->interp = PyThreadState_GetInterpreter(sub);
	pthread_mutex_init(&ci->states_mu, NULL);
	pthread_mutex_lock(&live_mu);
	ci->id = next_id++;
	if (nlive < sizeof live_ids / sizeof live_ids[0]) {
		live_ids[nlive++] = ci->id;
		ci->keeps_states = 1;
	}
	pthread_mutex_unlock(&live_mu);
	char *err = run_bootstrap(ci);
	ci->ts = PyEval_SaveThread();
	PyEval_RestoreThread(tmp);
	PyThreadState_Clear(tmp);
	PyThreadState_DeleteCurrent();
	if (err != NULL) {
		caddysnake_interp_end(ci);
		return err;
	}
	*out = ci;
	return NULL;
#else
	(void)out;
	return strdup("sub-interpreters with their own GIL need CPython 3.12 or later");
#endif
}

// How many non-daemon threads other than this one are still alive in the
// current interpreter after waiting up to `wait` seconds for each (join
// releases the GIL). Errors count as none: ending then goes on as before.
static int threads_left(double wait) {
	int left = 0;
	PyObject *threading = PyImport_ImportModule("threading");
	PyObject *cur = threading != NULL ? PyObject_CallMethod(threading, "current_thread", NULL) : NULL;
	// The "main thread" of a sub-interpreter is whichever thread first
	// imported threading there (often a worker); Py_EndInterpreter does not
	// wait for it either, and joining it would wait for the process's end.
	PyObject *main = cur != NULL ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
	PyObject *all = main != NULL ? PyObject_CallMethod(threading, "enumerate", NULL) : NULL;
	if (all != NULL && PyList_Check(all)) {
		for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++) {
			PyObject *t = PyList_GET_ITEM(all, i); // borrowed; the list holds it
			PyObject *daemon = t != cur && t != main ? PyObject_GetAttrString(t, "daemon") : NULL;
			if (daemon == NULL || PyObject_IsTrue(daemon)) {
				Py_XDECREF(daemon);
				PyErr_Clear();
				continue;
			}
			Py_DECREF(daemon);
			PyObject *r = PyObject_CallMethod(t, "join", "d", wait);
			Py_XDECREF(r);
			PyObject *alive = PyObject_CallMethod(t, "is_alive", NULL);
			if (alive != NULL && PyObject_IsTrue(alive)) {
				left++;
			}
			Py_XDECREF(alive);
			PyErr_Clear();
		}
	}
	PyErr_Clear();
	Py_XDECREF(all);
	Py_XDECREF(main);
	Py_XDECREF(cur);
	Py_XDECREF(threading);
	return left;
}

int caddysnake_interp_end(cs_interp *ci) {
	if (ci->is_main) {
		return 0; // the main interpreter lives as long as the process
	}
	// Py_EndInterpreter would join these forever, under interp_list_mu.
	PyEval_RestoreThread(ci->ts);
	int left = threads_left(5.0);
	PyEval_SaveThread();
	if (left > 0) {
		return 1;
	}
	pthread_mutex_lock(&live_mu);
	for (size_t i = 0; i < nlive; i++) {
		if (live_ids[i] == ci->id) {
			live_ids[i] = live_ids[--nlive];
			break;
		}
	}
	pthread_mutex_unlock(&live_mu);
	pthread_mutex_lock(&interp_list_mu); // before the GIL: see caddysnake_interp_new
	PyEval_RestoreThread(ci->ts);
	drop_functions(ci);
	// No request runs any more, and none of these is bound to a thread's
	// PyGILState slot (cs_request_leave), so they can go from here.
	for (size_t i = 0; i < ci->nstates; i++) {
		PyThreadState_Clear(ci->states[i]);
		PyThreadState_Delete(ci->states[i]);
	}
	Py_EndInterpreter(ci->ts); // leaves no current thread state
	pthread_mutex_unlock(&interp_list_mu);
	free(ci->states);
	pthread_mutex_destroy(&ci->states_mu);
	free(ci);
	return 0;
}

// ---------------------------------------------------------------- apps

PyObject *caddysnake_load_app(cs_interp *ci, const char *target, const char *working_dir,
                              const char *venv, char **err) {
	PyEval_RestoreThread(ci->ts);
	PyObject *app = PyObject_CallFunction(ci->load_app, "sssO", target, working_dir, venv,
	                                      ci->is_main ? Py_False : Py_True);
	if (app == NULL) {
		*err = take_error(ci);
	}
	ci->ts = PyEval_SaveThread();
	return app;
}

char *caddysnake_gil_status(cs_interp *ci) {
	PyEval_RestoreThread(ci->ts);
	char *out = NULL;
	PyObject *s = PyObject_CallNoArgs(ci->gil_status);
	const char *u = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
	out = strdup(u != NULL ? u : "unknown");
	PyErr_Clear();
	Py_XDECREF(s);
	ci->ts = PyEval_SaveThread();
	return out;
}

void caddysnake_release(cs_interp *ci, PyObject *obj) {
	PyEval_RestoreThread(ci->ts);
	Py_XDECREF(obj);
	ci->ts = PyEval_SaveThread();
}

void caddysnake_release_many(cs_interp *ci, PyObject **objs, size_t n) {
	PyEval_RestoreThread(ci->ts);
	for (size_t i = 0; i < n; i++) {
		Py_DECREF(objs[i]);
	}
	ci->ts = PyEval_SaveThread();
}

// The Python stack of thread ident (caddysnake.wsgi._thread_stack), as a
// malloc'd string; with the GIL.
static char *thread_stack(unsigned long ident) {
	char *out = NULL;
	PyObject *mod = PyImport_ImportModule("caddysnake.wsgi");
	PyObject *s = mod != NULL ? PyObject_CallMethod(mod, "_thread_stack", "k", ident) : NULL;
	const char *u = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
	out = strdup(u != NULL ? u : "(the stack could not be read)");
	PyErr_Clear();
	Py_XDECREF(s);
	Py_XDECREF(mod);
	return out;
}

void caddysnake_job_interrupt(cs_interp *ci, cs_job *j, uintptr_t handle) {
	PyEval_RestoreThread(ci->ts);
	// With a GIL, the worker cannot move on while this runs: the stack is
	// where it is stuck, and the job it is raised in is the one claimed.
	unsigned long ident = caddysnake_job_ident(j, handle);
	if (ident != 0) {
		char *stack = thread_stack(ident);
		PyObject *mod = PyImport_ImportModule("_caddysnake");
		PyObject *exc = mod != NULL ? PyObject_GetAttrString(mod, "RequestTimeout") : NULL;
		PyErr_Clear();
		if (exc != NULL && caddysnake_job_claim(j, handle, exc)) {
			caddysnake_job_set_stack(j, stack);
		} else {
			free(stack);
		}
		Py_XDECREF(exc);
		Py_XDECREF(mod);
	}
	ci->ts = PyEval_SaveThread();
}

void cs_clear_async_exc(unsigned long ident) { PyThreadState_SetAsyncExc(ident, NULL); }

// ---------------------------------------------------------------- threads

PyThreadState *caddysnake_thread_new(cs_interp *ci) {
	// Needs no GIL (PyThreadState_New docs). It also becomes this thread's
	// PyGILState state, so C extensions that call PyGILState_Ensure on this
	// thread reuse it instead of making another.
	return PyThreadState_New(ci->interp);
}

void caddysnake_thread_free(PyThreadState *ts) {
	PyEval_RestoreThread(ts);
	PyThreadState_Clear(ts);
	PyThreadState_DeleteCurrent();
}

// ---------------------------------------------------------------- requests

cs_out *caddysnake_out_new(size_t cap, int ends_cap) {
	cs_out *out = calloc(1, sizeof *out);
	if (out == NULL) {
		return NULL;
	}
	out->cap = cap;
	out->ends_cap = ends_cap;
	return out;
}

// Room for need bytes and ends_cap strings in out: 0, or -1 if out of
// memory (the caller sends the response another way).
static int out_reserve(cs_out *out, size_t need) {
	if (out->ends == NULL && (out->ends = malloc(sizeof(int32_t) * (size_t)out->ends_cap)) == NULL) {
		return -1;
	}
	if (out->buf == NULL || need > out->have) {
		size_t have = out->have ? out->have : 1024;
		while (have < need) {
			have *= 2;
		}
		if (have > out->cap) {
			have = out->cap;
		}
		char *b = realloc(out->buf, have);
		if (b == NULL) {
			return -1;
		}
		out->buf = b;
		out->have = have;
	}
	return 0;
}

void caddysnake_out_free(cs_out *out) {
	if (out != NULL) {
		free(out->buf);
		free(out->ends);
		free(out);
	}
}

// The bytes bodies send_whole hands Go by reference instead of copying.
// The upper bound is the outbox's (OUTBOX_LIMIT): a larger body goes
// through the frames, whose worker waits while the client lags, so slow
// clients pin no more memory than before. Go hands a reference back once
// written, and a worker drops it under the GIL (lanes.c, drop_kept).
#define KEEP_BODY_MIN (16 * 1024)
#define KEEP_BODY_MAX OUTBOX_LIMIT

// Sends the (OK, status, headers, body) that caddysnake.wsgi.serve handed
// back: copied into out if it fits, else as a frame (send_frame). Returns serve's
// result code, or -1 with a Python exception set.
static int send_whole(uintptr_t handle, PyObject *res, cs_out *out) {
	if (PyTuple_GET_SIZE(res) != 4) {
		PyErr_SetString(PyExc_TypeError, "serve returned a tuple that is not (code, status, headers, body)");
		return -1;
	}
	int status = (int)PyLong_AsLong(PyTuple_GET_ITEM(res, 1));
	if (status == -1 && PyErr_Occurred()) {
		return -1;
	}
	Py_buffer view;
	if (PyObject_GetBuffer(PyTuple_GET_ITEM(res, 3), &view, PyBUF_SIMPLE) < 0) {
		return -1;
	}
	cs_str stack[2 * STACK_HEADERS], *pairs;
	PyObject *keep;
	size_t npairs;
	if (flatten_headers(PyTuple_GET_ITEM(res, 2), &keep, stack, &pairs, &npairs) < 0) {
		PyBuffer_Release(&view);
		return -1;
	}
	PyObject *body = PyTuple_GET_ITEM(res, 3);
	// A large bytes body stays where it is: Go sends it from the object,
	// which cannot change (exact bytes) and lives on while the job holds a
	// reference. Smaller ones cost less to copy than to hand back.
	int keep_body = PyBytes_CheckExact(body) && view.len >= KEEP_BODY_MIN && view.len <= KEEP_BODY_MAX;
	size_t need = keep_body ? 0 : (size_t)view.len;
	for (size_t i = 0; i < 2 * npairs; i++) {
		need += pairs[i].len;
	}
	int rc = 0;
	if (need <= out->cap && 2 * npairs + 1 <= (size_t)out->ends_cap && out_reserve(out, need) == 0) {
		size_t at = 0;
		int k = 0;
		for (size_t i = 0; i < 2 * npairs; i++) {
			memcpy(out->buf + at, pairs[i].data, pairs[i].len);
			at += pairs[i].len;
			out->ends[k++] = (int32_t)at;
		}
		if (keep_body) {
			Py_INCREF(body);
			out->body_obj = body;
			out->body = PyBytes_AS_STRING(body);
			out->body_len = (size_t)view.len;
		} else {
			memcpy(out->buf + at, view.buf, (size_t)view.len);
			at += (size_t)view.len;
		}
		out->ends[k++] = (int32_t)at;
		out->n = k;
		out->status = status;
	} else {
		int64_t w = send_frame(handle, status, pairs, npairs, (char *)view.buf, (size_t)view.len, 0);
		if (w == GO_INVALID) {
			raise_go_error(PyExc_ValueError, handle, "invalid response");
			rc = -1;
		} else if (w == GO_NO_MEMORY) {
			PyErr_NoMemory();
			rc = -1;
		} else if (w < 0) {
			rc = 3; // the client is gone: wsgi.go's wsgiClientGone
		}
	}
	free_headers(keep, stack, pairs);
	PyBuffer_Release(&view);
	return rc;
}

// With an exception set: if it is caddysnake.RequestTimeout, clears it and
// returns 1; else leaves it set and returns 0. Only on serve()'s failure
// path, so the import costs a request nothing.
static int took_request_timeout(void) {
	PyObject *type, *value, *tb;
	PyErr_Fetch(&type, &value, &tb);
	PyObject *mod = PyImport_ImportModule("_caddysnake");
	PyObject *cls = mod != NULL ? PyObject_GetAttrString(mod, "RequestTimeout") : NULL;
	PyErr_Clear();
	int match = cls != NULL && type != NULL && PyErr_GivenExceptionMatches(type, cls);
	Py_XDECREF(cls);
	Py_XDECREF(mod);
	if (match) {
		Py_XDECREF(type);
		Py_XDECREF(value);
		Py_XDECREF(tb);
		return 1;
	}
	PyErr_Restore(type, value, tb);
	return 0;
}

int cs_wsgi_serve(cs_interp *ci, PyObject *app, uintptr_t handle, const char *buf, const int32_t *ends,
                  int n, cs_out *out) {
	out->n = 0;
	int rc = -1;
	PyObject *h = NULL, *res = NULL;
	PyObject *req = cs_build_environ(&ci->env, handle, buf, ends, n);
	if (req == NULL) {
		goto fail;
	}
	h = PyLong_FromSize_t(handle);
	if (h == NULL) {
		goto fail;
	}
	PyObject *args[3] = {app, req, h};
	res = PyObject_Vectorcall(ci->serve_wsgi, args, 3, NULL);
	if (res == NULL) {
		goto fail;
	}
	if (PyTuple_Check(res)) {
		rc = send_whole(handle, res, out);
	} else {
		rc = (int)PyLong_AsLong(res);
	}
	if (rc == -1 && PyErr_Occurred()) {
		goto fail;
	}
	goto done;
fail:
	rc = -1;
	if (took_request_timeout()) {
		// request_timeout's exception landed in serve()'s own handling (an
		// asynchronous exception fires at any bytecode): the app failed.
		rc = 1; // wsgi.py's APP_ERROR; Go answers from what it sent
		goto done;
	}
	{
		// serve() never raises on purpose; this is a bug in the bridge itself.
		char *msg = take_error(ci);
		Py_BEGIN_ALLOW_THREADS
		go_log(handle, 3, msg, strlen(msg));
		Py_END_ALLOW_THREADS
		free(msg);
	}
done:
	Py_XDECREF(res);
	Py_XDECREF(h);
	Py_XDECREF(req);
	return rc;
}

// ---------------------------------------------------------------- ASGI loop

char *caddysnake_asgi_run(cs_interp *ci, PyThreadState *ts, PyObject *app, cs_aapp *queues, uintptr_t app_handle,
                          int wake_fd, const char *lifespan, const char *loop, double startup_timeout,
                          double shutdown_timeout, double request_timeout) {
	// SCHED_BATCH: Go's threads that post events to a sleeping loop are not
	// preempted by it, and go on reading other connections; the loop then
	// takes them as one batch (as lanes.c does for WSGI workers). The Go
	// thread dies with the loop (it stays locked), so no Go thread inherits
	// the policy; threads the app starts from the loop (executors) do.
	struct sched_param sp = {0};
	sched_setscheduler(0, SCHED_BATCH, &sp);
	cs_loop_app = queues;
	loop_interp = ci;
	PyEval_RestoreThread(ts);
	char *err = NULL;
	PyObject *res = NULL;
	PyObject *opts = Py_BuildValue("{s:s,s:s,s:d,s:d,s:d}", "lifespan", lifespan, "loop", loop,
	                               "startup_timeout", startup_timeout, "shutdown_timeout",
	                               shutdown_timeout, "request_timeout", request_timeout);
	if (opts != NULL) {
		res = PyObject_CallFunction(ci->run_asgi, "OKiO", app, (unsigned long long)app_handle,
		                            wake_fd, opts);
	}
	if (res == NULL) {
		err = take_error(ci);
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
