// caddysnake.h: the C bridge between Go and the embedded CPython.
//
// Threading model (see threads.go, interpreters.go): CPython is started once
// per process on a dedicated OS thread, the "Python main thread", which also
// runs every configuration-time call of the main interpreter (importing
// apps, dropping them); each sub-interpreter has an owner thread of its own
// for the same calls. A WSGI request runs on one of its app's worker
// threads (lanes.c), with a PyThreadState that thread keeps per interpreter
// (threading.local survives between requests, as on mod_wsgi; see
// cs_request_enter in caddysnake.c). An ASGI app runs on its event loop's
// own thread.
//
// GIL contract: every function below is called from Go WITHOUT the GIL and
// returns without it. The Python-facing functions of the _caddysnake module
// (caddysnake.c) release the GIL around every call back into Go that may block.
#ifndef CADDYSNAKE_H
#define CADDYSNAKE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

// A string that is not NUL-terminated; the memory belongs to whoever made it
// and must outlive the call it is passed to.
typedef struct {
	const char *data;
	size_t len;
} cs_str;

// A reusable C buffer a WSGI response is copied into (see "WSGI requests"):
// strings back to back in buf, ends[i] the end offset of string i. The
// buffers are allocated on first use and grow up to cap bytes and ends_cap
// strings: a request slot waiting in the queue holds none.
typedef struct {
	char *buf;
	size_t cap;  // the most buf may grow to
	size_t have; // allocated bytes of buf
	int32_t *ends;
	int ends_cap;
	int n;      // out: how many strings; 0: nothing copied
	int status; // out
	// out: a large bytes body is not copied: body points into body_obj (a
	// bytes object the job holds a reference to; the last string in buf is
	// then empty). Go sends it, then hands the reference back
	// (caddysnake_job_release_body) to be dropped under the GIL.
	PyObject *body_obj;
	const char *body;
	size_t body_len;
} cs_out;

// Allocates one that takes up to cap bytes and ends_cap strings; NULL if
// out of memory. Freed with caddysnake_out_free.
cs_out *caddysnake_out_new(size_t cap, int ends_cap);
void caddysnake_out_free(cs_out *out);

// One CPython interpreter (caddysnake.c): the main interpreter, or a
// sub-interpreter with its own GIL (PEP 684, CPython 3.12+). Each has an
// owner OS thread that runs its configuration-time calls (create, load,
// release, end); requests run on other threads with thread states of
// their own (see the threading model above).
typedef struct cs_interp cs_interp;

// Starts CPython on the calling OS thread, which becomes the Python main
// thread and the main interpreter's owner. bootstrap is Python source run
// once per interpreter in a private namespace to make the caddysnake package
// importable; files is a blob of NUL-separated "module name", "source" pairs
// handed to it; version is the version of the package this binary carries.
// All three are copied. Sets *main_out to the main interpreter.
// Returns NULL on success, else a malloc'd message the caller frees.
char *caddysnake_init(const char *bootstrap, const char *files, size_t files_len,
                      const char *version, cs_interp **main_out);

// The version string of the linked CPython (static storage).
const char *caddysnake_python_version(void);

// Whether this build can make sub-interpreters with their own GIL (3.12+),
// and whether it is a free-threaded (--disable-gil) CPython. Compile-time
// facts, callable before CPython starts.
int caddysnake_subinterpreters_supported(void);
// The version of the CPython headers this binary was built with.
const char *caddysnake_linked_version(void);
int caddysnake_free_threaded_build(void);

// On a new OS thread that becomes its owner (and has no thread state):
// creates an isolated sub-interpreter with its own GIL and runs the
// bootstrap in it. Returns NULL and sets *out, or a malloc'd message.
char *caddysnake_interp_new(cs_interp **out);

// On ci's owner thread, after every thread state made for it is freed:
// finalizes and frees a sub-interpreter. No-op for the main interpreter.
// Returns 0 once ended; 1 if threads the app started were still alive
// after a short join: the interpreter is then left as it is (ending it
// would wait for them, holding the lock every interpreter creation needs).
int caddysnake_interp_end(cs_interp *ci);

// On ci's owner thread: imports target ("module:attribute") after putting
// working_dir and venv on sys.path (see caddysnake/loader.py).
// Returns a new reference to the app callable, or NULL with *err set to a
// malloc'd message the caller frees.
PyObject *caddysnake_load_app(cs_interp *ci, const char *target, const char *working_dir,
                              const char *venv, char **err);

// On ci's owner thread: the GIL state after the app loaded ("" for a build
// with a GIL; "disabled"; "enabled by module X"; "enabled"). Malloc'd.
char *caddysnake_gil_status(cs_interp *ci);

// On ci's owner thread: drops a reference returned by caddysnake_load_app.
void caddysnake_release(cs_interp *ci, PyObject *obj);
// On ci's owner thread: drops n references (lanes.c's kept bodies).
void caddysnake_release_many(cs_interp *ci, PyObject **objs, size_t n);

// On an ASGI event loop's OS thread: makes that thread's PyThreadState for
// ci (WSGI workers get theirs in cs_request_enter). It is bound to
// this OS thread; the caller must keep using the same thread
// (runtime.LockOSThread) until caddysnake_thread_free.
PyThreadState *caddysnake_thread_new(cs_interp *ci);

// On the thread that made ts: clears and deletes it.
void caddysnake_thread_free(PyThreadState *ts);

// WSGI requests: see lanes.h. A response the app produced whole (a list
// body, nothing sent before) is copied into the job's cs_out when it fits,
// for Go to send after Python is done: no call back into Go and no GIL
// hand-over. out->n is then the number of strings in it (header name, value
// pairs, then the body) and out->status the status code; else out->n is 0
// and the response went out through go_write.

// ---------------------------------------------------------------- ASGI

// An event Go hands to the ASGI loop (asgi.go lists the kinds), in C memory
// the inbox owns (asgi_queues.c) until the next drain; Python copies what it
// keeps.
typedef struct {
	int kind;
	uintptr_t req;
	const char *data;
	size_t len;
	const int32_t *ends; // for a new request: string end offsets in data
	int n;               // their count
	int flag;            // more_body for a body chunk, ok for a completion
} cs_event;

// On an ASGI loop OS thread that owns ts (a thread state of ci): runs
// caddysnake.asgi.run_loop for app until its shutdown, with queues (the
// app's, asgi_queues.h) as its inbox and outboxes, waking on wake_fd.
// lifespan is "on", "off" or "auto"; loop is "asyncio", "uvloop" or "auto".
// Returns NULL when run_loop returned, else a malloc'd description of its
// failure the caller frees.
struct cs_aapp;
char *caddysnake_asgi_run(cs_interp *ci, PyThreadState *ts, PyObject *app, struct cs_aapp *queues,
                          uintptr_t app_handle, int wake_fd, const char *lifespan, const char *loop,
                          double startup_timeout, double shutdown_timeout, double request_timeout);

#endif
