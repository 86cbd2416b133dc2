// caddysnake.h: the C bridge between Go and the embedded CPython; the
// contract Go includes (with wsgi_lanes.h and asgi_queues.h).
//
// The C units, one concern each (a header per unit holds its contract):
//   startup.c      CPython start-up on the Python main thread
//   bootstrap.c    the bootstrap every interpreter runs once
//   interp.c       sub-interpreters, loading and dropping apps
//   threadstate.c  the thread states requests and event loops run with
//   module.c       the _caddysnake module: method table, exceptions, codes
//   args.c         what its functions share: argument checks, headers, errors
//   wsgi_bridge.c  WSGI: serve() per request, read/write/sendfile
//   wsgi_lanes.c   WSGI: the queue between Go and the app's worker threads
//   wsgi_frames.c, wsgi_kept.c, wsgi_timeouts.c   WSGI: a job's frames,
//                  kept bodies, what request_timeout needs (of a lane)
//   wsgi_out.c     WSGI: the buffer a whole response is copied into
//   asgi_bridge.c  ASGI: the event loop's run and the calls caddysnake.asgi makes
//   asgi_queues.c  ASGI: the inbox and the outboxes between Go and the loop
//   environ.c, scope.c   the WSGI environ and ASGI scope builders
//   testhooks.c    builders and counts exposed for tests
//   mainfirst.c, faultchain.c   CPython 3.12 and faulthandler workarounds
// codes.h holds every number that crosses Go, C and Python.
//
// Threading model (see wsgi_pool.go, interpreters.go): CPython is started once
// per process on a dedicated OS thread, the "Python main thread", which also
// runs every configuration-time call of the main interpreter (importing
// apps, dropping them); each sub-interpreter has an owner thread of its own
// for the same calls. A WSGI request runs on one of its app's worker
// threads (wsgi_lanes.c), with a PyThreadState that thread keeps per
// interpreter (threading.local survives between requests, as on mod_wsgi;
// see threadstate.c). An ASGI app runs on its event loop's own thread.
//
// GIL contract: every function below is called from Go WITHOUT the GIL and
// returns without it. The Python-facing functions of the _caddysnake module
// release the GIL around every call back into Go that may block.
#ifndef CADDYSNAKE_H
#define CADDYSNAKE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

#include "codes.h"

// A string that is not NUL-terminated; the memory belongs to whoever made it
// and must outlive the call it is passed to.
typedef struct {
	const char *data;
	size_t len;
} cs_str;

// One CPython interpreter (interp.h, interp.c): the main interpreter, or a
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
// working_dir (else default_dir) and venv on sys.path, and refuses an app
// surely not of interface ("wsgi", "asgi") (see caddysnake/loader.py).
// Returns a new reference to the app callable with *origin set to the
// folder its module came from (malloc'd, maybe ""), or NULL with *err set
// to a malloc'd message. The caller frees both.
PyObject *caddysnake_load_app(cs_interp *ci, const char *target, const char *working_dir,
                              const char *venv, const char *interface, const char *default_dir,
                              char **origin, char **err);

// On ci's owner thread: calls caddysnake.prepare.<func>(arg) and returns
// its str result, malloc'd; or NULL with *err set to a malloc'd message.
char *caddysnake_call_prepare(cs_interp *ci, const char *func, const char *arg, char **err);

// On ci's owner thread: the GIL state after the app loaded ("" for a build
// with a GIL; "disabled"; "enabled by module X"; "enabled"). Malloc'd.
char *caddysnake_gil_status(cs_interp *ci);

// On ci's owner thread: drops a reference returned by caddysnake_load_app.
void caddysnake_release(cs_interp *ci, PyObject *obj);
// On ci's owner thread: drops n references (wsgi_kept.c's bodies).
void caddysnake_release_many(cs_interp *ci, PyObject **objs, size_t n);

// On an ASGI event loop's OS thread: makes that thread's PyThreadState for
// ci (WSGI workers get theirs in cs_request_enter, threadstate.h). It is bound to
// this OS thread; the caller must keep using the same thread
// (runtime.LockOSThread) until caddysnake_thread_free.
PyThreadState *caddysnake_thread_new(cs_interp *ci);

// On the thread that made ts: clears and deletes it.
void caddysnake_thread_free(PyThreadState *ts);

// ---------------------------------------------------------------- ASGI

// On an ASGI loop OS thread that owns ts (a thread state of ci): runs
// caddysnake.asgi.run_loop for app until its shutdown, with queues (the
// app's, asgi_queues.h) as its inbox and outboxes, waking on wake_fd.
// lifespan is "on", "off" or "auto"; loop is "asyncio", "uvloop" or "auto";
// venv is the app's venv ("" if none), for messages.
// Returns NULL when run_loop returned, else a malloc'd description of its
// failure the caller frees.
struct cs_aapp;
char *caddysnake_asgi_run(cs_interp *ci, PyThreadState *ts, PyObject *app, struct cs_aapp *queues,
                          uintptr_t app_handle, int wake_fd, const char *lifespan, const char *loop,
                          const char *venv, double startup_timeout, double shutdown_timeout,
                          double request_timeout);

#endif
