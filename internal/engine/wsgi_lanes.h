// wsgi_lanes.h: how WSGI requests reach Python (wsgi_lanes.c). Each WSGI app
// has a lane: a queue of jobs (requests laid out by wsgi.go) and `threads` Python
// worker threads that take jobs from it. Go's goroutines never run Python
// themselves: wsgi_lanes.c says why.
#ifndef CADDYSNAKE_LANES_H
#define CADDYSNAKE_LANES_H

#include "caddysnake.h"
#include "swapbuf.h"
#include "wsgi_out.h"

// One request slot of a lane. Go owns it (wsgi.go keeps one per request in
// flight and reuses it); C fills rc and out, and links it while queued.
typedef struct cs_job {
	struct cs_job *next;       // in the lane's queue
	struct cs_job *next_ready; // in the lane's ready list
	struct cs_lane *lane;
	uintptr_t handle;          // identifies the request in go_* callbacks
	char *buf;                 // the request strings back to back (C memory)
	int32_t *ends;             // their end offsets
	size_t buf_cap;
	int ends_cap, n;
	int state;                 // JOB_* below; under the lane's mutex
	int ready;                 // on the ready list; under the lane's mutex
	// A small request body Go read before queueing the job (wsgi.go), for
	// wsgi.input to read without a call into Go; preloaded is 0 otherwise.
	// Go reads it straight into body (caddysnake_job_body): no copy.
	char *body;
	size_t body_len, body_cap, body_off;
	int preloaded;
	cs_out *out;               // out: a whole response (see "Whole responses" below)
	// The response as the app writes it (write(), streamed chunks): frames
	// the worker appends and Go takes and sends (caddysnake_job_take), so
	// Python never waits for Go unless Go falls OUTBOX_LIMIT bytes behind.
	pthread_mutex_t mu; // guards the fields below
	pthread_cond_t drained;
	cs_swapbuf frames;  // appended (fill); Go is sending (taken)
	size_t pending;     // bytes appended and not yet sent
	int finished;       // the app is done; rc is final
	int gone;           // Go could not send: the client left
	int rc;             // caddysnake.wsgi.serve's result code, or CS_BRIDGE_ERROR
	// Timeouts (wsgi_timeouts.go), under the lane's mutex: the worker running
	// the job, its Python thread id, whether RequestTimeout was raised in
	// it (and the stack it was stuck in), and whether Go wrote the job off
	// (it answered the client; the worker frees the job when it returns).
	struct active_worker *worker;
	unsigned long ident;
	int interrupted;
	int abandoned;
	char *stack;
	int64_t started_ns; // CLOCK_MONOTONIC, when a worker took it
	int64_t queued_ns;  // CLOCK_MONOTONIC, when Go queued it (queue_wait metric)
} cs_job;

enum { JOB_IDLE, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

// How far the frames Go has not sent yet may run ahead of the client.
#define OUTBOX_LIMIT (256 * 1024)
_Static_assert(OUTBOX_LIMIT == CS_WHOLE_BYTES_MAX, "wsgi.py hands back bodies up to OUTBOX_LIMIT whole");

// A frame in a job's outbox, followed by 2*nhdrs strings (an int32 length,
// then the bytes) and datalen bytes of body. Native byte order.
typedef struct {
	int32_t status; // 0: no headers in this frame
	int32_t flush;
	int32_t nhdrs;
	int32_t datalen;
} cs_frame;

// What caddysnake_job_take hands Go.
typedef struct {
	const char *frames;
	size_t len;
	int finished;
	int rc;
} cs_take;

// Whole responses: a response the app produced whole (a list body, nothing
// sent before) is copied into the job's cs_out when it fits, for Go to
// send after Python is done: no call back into Go and no GIL hand-over.
// out->n is then the number of strings in it (header name, value pairs,
// then the body) and out->status the status code; else out->n is 0 and the
// response went out as frames.

typedef struct cs_lane cs_lane;

// A job with room for the whole-response copy (caddysnake_out_new's sizes);
// NULL if out of memory.
cs_job *caddysnake_job_new(size_t out_cap, int out_ends_cap);
void caddysnake_job_free(cs_job *j);

// A lane for app in ci, whose jobs run at most threads at a time (on the
// `threads` workers Go starts). done_fd is an eventfd the lane
// writes when it has news for caddysnake_lane_take_done and had none before.
// Defined by the WSGI bridge (wsgi_bridge.c), which hands cs_lane_new the
// function its workers serve each job with.
cs_lane *caddysnake_lane_new(cs_interp *ci, PyObject *app, int done_fd, int threads);

// Serves one job's request with ci's GIL held, on the job's worker
// (wsgi_bridge.c): returns caddysnake.wsgi.serve's result code (codes.h:
// CS_OK...), or CS_BRIDGE_ERROR, logged.
typedef int (*cs_serve_fn)(cs_interp *ci, PyObject *app, uintptr_t handle, const char *buf, const int32_t *ends,
                           int n, cs_out *out);
cs_lane *cs_lane_new(cs_interp *ci, PyObject *app, int done_fd, int threads, cs_serve_fn serve);
// After every worker returned and the done list was taken, on the
// interpreter's owner thread (it drops the body references still kept).
void caddysnake_lane_free(cs_lane *l);

// Room for a request body of n bytes in j (C memory Go reads the body
// straight into, before caddysnake_lane_submit); NULL if out of memory.
char *caddysnake_job_body(cs_job *j, int64_t n);
// Copies n strings (buf, ends as wsgi.go lays them out) into j and queues
// it; body_len >= 0: Go read that much body into caddysnake_job_body's
// buffer. Returns how many worker threads Go must start (0, or 1 when every
// worker waits on a request body: caddysnake_lane_park); -1 if out of
// memory or the lane is stopping (nothing queued).
int caddysnake_lane_submit(cs_lane *l, cs_job *j, uintptr_t handle, const char *buf, const int32_t *ends,
                           int n, int64_t body_len);
// Takes j back out of the queue if no worker took it yet: 1 if so (it will
// never run), 0 if it runs or ran (its completion will come).
int caddysnake_lane_cancel(cs_lane *l, cs_job *j);
// Moves the handles of up to max jobs that have news (frames, or finished)
// into out; returns how many.
int caddysnake_lane_take_done(cs_lane *l, uintptr_t *out, int max);
// Takes an idle j off the ready list, where a stale entry may linger, so
// that it can be freed.
void caddysnake_lane_forget(cs_lane *l, cs_job *j);
// Whether a worker took j (a wake-up before that is a stale one).
int caddysnake_lane_started(cs_lane *l, cs_job *j);

// ---- A job's frames (wsgi_frames.c)

// Go side of a running job: takes the frames appended so far (and whether
// the job finished, with them all); Go sends them, then reports with
// caddysnake_job_sent (gone: the client left).
void caddysnake_job_take(cs_job *j, cs_take *t);
void caddysnake_job_sent(cs_job *j, int gone);

// With the GIL, on the job's worker: appends a frame (status 0: no
// headers) and lets Go know; waits, without the GIL, while Go is more than
// OUTBOX_LIMIT behind. 0, CS_WRITE_CLIENT_GONE or CS_WRITE_NO_MEMORY.
int cs_job_write(cs_job *j, int status, const cs_str *pairs, size_t npairs, const char *data, size_t len,
                 int flush);
// With the GIL, on the job's worker: waits (without the GIL) until Go sent
// every frame, before the worker writes to the client itself (sendfile).
// 0, or -1 if the client left.
int cs_job_drain(cs_job *j);

// ---- Workers (wsgi_lanes.c)

// The job this worker thread runs, or NULL (another thread).
extern _Thread_local cs_job *cs_current_job;

// A worker thread's life (a Go-made thread with no Python thread state):
// runs jobs until caddysnake_lane_stop and an empty queue, or until it is
// not needed any more (threads started for body waits). Returns 1 if Go
// wrote the thread off meanwhile (caddysnake_lane_abandon): its goroutine
// is not counted any more.
int caddysnake_lane_work(cs_lane *l);
// Workers finish the queue, then return.
void caddysnake_lane_stop(cs_lane *l);

// On j's worker thread, without the GIL, around a wait for request body
// bytes (go_read): the thread stops counting against `threads` meanwhile.
// park returns how many worker threads Go must start (1 when jobs wait and
// no other thread may take them; at most MAX_PARKED threads park at once).
int caddysnake_lane_park(cs_job *j);
void caddysnake_lane_unpark(cs_job *j);

// ---- Kept bodies (wsgi_kept.c)

// Go sent j's whole response: the body reference it held (cs_out.body_obj),
// if any, goes to the lane to be dropped by a thread with the GIL.
void caddysnake_job_release_body(cs_job *j);

// ---- Timeouts (wsgi_timeouts.c; caddysnake_job_interrupt in wsgi_bridge.c)

// When j started running request handle (CLOCK_MONOTONIC ns), or 0 if it
// does not run it (queued, over, written off); and the clock now.
int64_t caddysnake_job_running_since(cs_job *j, uintptr_t handle);
int64_t caddysnake_now_ns(void);

// The Python thread id of j's worker if j runs the request handle names,
// else 0.
unsigned long caddysnake_job_ident(cs_job *j, uintptr_t handle);
// Attached to j's interpreter: if j still runs the request handle names,
// marks it interrupted and raises exc in its thread (1), else 0.
int caddysnake_job_claim(cs_job *j, uintptr_t handle, PyObject *exc);
// On ci's owner thread (Go's interpreter.do): if j still runs the request
// handle names, raises caddysnake.RequestTimeout in its thread, keeping the
// Python stack it was in (caddysnake_job_interrupted hands it out).
void caddysnake_job_interrupt(cs_interp *ci, cs_job *j, uintptr_t handle);
// Keeps the stack (malloc'd) j's thread was in when interrupted.
void caddysnake_job_set_stack(cs_job *j, char *stack);
// After j finished: whether it was interrupted, and its stack (the
// caller's to free, NULL if none).
int caddysnake_job_interrupted(cs_job *j, char **stack);
// Go gives up on running job j (wsgi_timeouts.go): returns 1 if so, and from
// then on Go never touches j again (its worker frees it if it ever comes
// back, and is retired); 0 if j finished meanwhile. *spawn: how many
// worker threads Go must start to replace the lost one; *stack as in
// caddysnake_job_interrupted.
int caddysnake_lane_abandon(cs_lane *l, cs_job *j, int *spawn, char **stack);
// Written-off workers that have not come back yet: while any is out, the
// lane (and its interpreter) must not be freed.
int caddysnake_lane_lost(cs_lane *l);

#endif
