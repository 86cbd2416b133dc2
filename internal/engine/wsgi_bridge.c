// wsgi_bridge.c: the WSGI bridge. A lane's worker (wsgi_lanes.c) calls
// caddysnake.wsgi.serve for each job and takes the response it hands back
// whole; the app's reads and writes come back here through _caddysnake's
// read, read1, write and sendfile. The Go side of every go_* callback is in
// wsgi_callbacks.go.
#include "wsgi_bridge.h"
#include "args.h"
#include "environ.h"
#include "wsgi_lanes.h"

#include <stdlib.h>
#include <string.h>

#include "_cgo_export.h"

// read(handle, size) -> bytes: up to size bytes of the request body; fewer
// only at its end, b"" after it. read1(handle, size): as soon as at least
// one byte came (io's read1), for readline on a slowly arriving body.
static PyObject *read_body(PyObject *mod, PyObject *const *args, Py_ssize_t nargs, int fill) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 2, fill ? "read(handle, size)" : "read1(handle, size)", &h) < 0) {
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
	// request's own worker parks meanwhile (wsgi_lanes.c): a slow uploader must
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
		cs_raise_go_error(cs_state_of(mod)->request_body_error, h, "reading the request body failed");
		return NULL;
	}
	if (got < size && _PyBytes_Resize(&b, (Py_ssize_t)got) < 0) {
		return NULL; // _PyBytes_Resize freed b
	}
	return b;
}

PyObject *cs_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return read_body(mod, args, nargs, 1);
}

PyObject *cs_read1(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	return read_body(mod, args, nargs, 0);
}

// Hands headers (status != 0) and data to Go: appended to the job when the
// calling thread is the request's worker (wsgi_frames.c, no call into Go), else
// (a thread the app started) through go_write. With the GIL; returns 0 or
// CS_WRITE_CLIENT_GONE, CS_WRITE_INVALID, CS_WRITE_NO_MEMORY.
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
	if (rc == CS_WRITE_NO_MEMORY) {
		return PyErr_NoMemory();
	}
	if (rc == CS_WRITE_CLIENT_GONE && cs_current_job != NULL && cs_current_job->handle == h) {
		// Go said so through the job: no message to fetch from Go.
		PyErr_SetString(cs_state_of(mod)->client_disconnected, "client disconnected");
		return NULL;
	}
	if (rc == CS_WRITE_INVALID) {
		cs_raise_go_error(PyExc_ValueError, h, "invalid response");
	} else {
		cs_raise_go_error(cs_state_of(mod)->client_disconnected, h, "client disconnected");
	}
	return NULL;
}

// write(handle, status, headers | None, data, flush): headers (with status)
// go first, once; then data, pushed to the client now if flush.
PyObject *cs_write(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 5, "write(handle, status, headers, data, flush)", &h) < 0) {
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
	if (cs_flatten_headers(args[2], &keep, stack, &pairs, &npairs) < 0) {
		PyBuffer_Release(&view);
		return NULL;
	}
	int64_t rc = send_frame(h, args[2] == Py_None ? 0 : status, pairs, npairs, (char *)view.buf,
	                        (size_t)view.len, flush);
	cs_free_headers(keep, stack, pairs);
	PyBuffer_Release(&view);
	if (rc < 0) {
		return write_error(mod, h, rc);
	}
	Py_RETURN_NONE;
}

// sendfile(handle, status, headers | None, fd, offset, count) -> int: sends
// count bytes (-1: to the end) of regular file fd from offset.
PyObject *cs_sendfile(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	uintptr_t h;
	if (cs_call_args(args, nargs, 6, "sendfile(handle, status, headers, fd, offset, count)", &h) < 0) {
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
	if (cs_flatten_headers(args[2], &keep, stack, &pairs, &npairs) < 0) {
		return NULL;
	}
	cs_job *j = cs_current_job;
	if (j != NULL && j->handle == h && cs_job_drain(j) < 0) {
		// Go writes the file itself: the frames before it must be out first.
		cs_free_headers(keep, stack, pairs);
		return write_error(mod, h, CS_WRITE_CLIENT_GONE);
	}
	int64_t sent;
	Py_BEGIN_ALLOW_THREADS
	sent = go_sendfile(h, args[2] == Py_None ? 0 : status, pairs, npairs, fd, offset, count);
	Py_END_ALLOW_THREADS
	cs_free_headers(keep, stack, pairs);
	if (sent < 0) {
		return write_error(mod, h, sent);
	}
	return PyLong_FromLongLong(sent);
}

// The bytes bodies send_whole hands Go by reference instead of copying.
// The upper bound is the outbox's (OUTBOX_LIMIT): a larger body goes
// through the frames, whose worker waits while the client lags, so slow
// clients pin no more memory than before. Go hands a reference back once
// written, and a worker drops it under the GIL (wsgi_kept.c).
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
	if (cs_flatten_headers(PyTuple_GET_ITEM(res, 2), &keep, stack, &pairs, &npairs) < 0) {
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
	if (need <= out->cap && 2 * npairs + 1 <= (size_t)out->ends_cap && cs_out_reserve(out, need) == 0) {
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
		if (w == CS_WRITE_INVALID) {
			cs_raise_go_error(PyExc_ValueError, handle, "invalid response");
			rc = -1;
		} else if (w == CS_WRITE_NO_MEMORY) {
			PyErr_NoMemory();
			rc = -1;
		} else if (w < 0) {
			rc = CS_CLIENT_GONE;
		}
	}
	cs_free_headers(keep, stack, pairs);
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

// The lanes' cs_serve_fn (wsgi_lanes.h): one request through
// caddysnake.wsgi.serve, on the job's worker with ci's GIL held.
static int cs_wsgi_serve(cs_interp *ci, PyObject *app, uintptr_t handle, const char *buf, const int32_t *ends,
                         int n, cs_out *out) {
	out->n = 0;
	int rc = CS_BRIDGE_ERROR;
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
	rc = CS_BRIDGE_ERROR;
	if (took_request_timeout()) {
		// request_timeout's exception landed in serve()'s own handling (an
		// asynchronous exception fires at any bytecode): the app failed.
		rc = CS_APP_ERROR; // Go answers from what it sent
		goto done;
	}
	{
		// serve() never raises on purpose; this is a bug in the bridge itself.
		char *msg = cs_take_error(ci);
		Py_BEGIN_ALLOW_THREADS
		go_log(handle, CS_LOG_ERROR, msg, strlen(msg));
		Py_END_ALLOW_THREADS
		free(msg);
	}
done:
	Py_XDECREF(res);
	Py_XDECREF(h);
	Py_XDECREF(req);
	return rc;
}

cs_lane *caddysnake_lane_new(cs_interp *ci, PyObject *app, int done_fd, int threads) {
	return cs_lane_new(ci, app, done_fd, threads, cs_wsgi_serve);
}

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
