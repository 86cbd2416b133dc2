// wsgi_lanes.c: the queue between Go's request goroutines and an app's Python
// worker threads, how many workers run, and their loop (contracts in
// wsgi_lanes.h; a job's frames, kept bodies and timeouts are in
// wsgi_frames.c, wsgi_kept.c and wsgi_timeouts.c).
//
// Python never runs on a goroutine's thread: Go only queues a job, and a
// worker that finishes one takes the next while it holds the GIL, so Python
// and Go each keep their caches warm. Under a GIL one worker runs as long
// as jobs keep starting (more would only queue on the GIL); when none
// started for STALL_NS while jobs wait and every active worker is blocked
// (sleep, I/O, a slow client), an idle one joins in, up to `threads`.
// Without a GIL every waiting job gets a worker at once. News for Go goes
// through an eventfd, one write per batch: a worker never calls into Go.
// The measurements behind this are in bench/README.md ("Measurements behind
// the design").
#include "wsgi_lanes_internal.h"
#include "threadstate.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "_cgo_export.h"

// No job started for this long while jobs wait: the active workers are
// blocked (or on a long job), and another worker joins in.
#define STALL_NS 1000000

// The longest a worker holds back news for Go while jobs wait
// (cs_lane_job_notify).
#define HOLD_NS 1000000

// At most this many workers of a lane park on body waits at once; beyond,
// a body wait counts against `threads` again. Each costs an OS thread.
#define MAX_PARKED 256

static int ready_locked(cs_lane *l, cs_job *j);
static int want_thread(cs_lane *l);

// With mu held: a is running jobs (for the watcher, and active counts).
static void link_active(cs_lane *l, struct active_worker *a) {
	a->linked = 1;
	if (l->active++ == 0 && l->watcher_asleep) {
		pthread_cond_signal(&l->watch); // busy again: start ticking
	}
	a->next = l->actives;
	a->prevp = &l->actives;
	if (l->actives != NULL) {
		l->actives->prevp = &a->next;
	}
	l->actives = a;
}

void cs_lane_unlink_active(cs_lane *l, struct active_worker *a) {
	a->linked = 0;
	l->active--;
	*a->prevp = a->next;
	if (a->next != NULL) {
		a->next->prevp = a->prevp;
	}
}

// Whether thread tid of this process is running or runnable (as opposed to
// sleeping: blocked on I/O, a lock, the GIL), from /proc. Unknown counts as
// runnable, so a failure never adds threads.
static int thread_runnable(pid_t tid) {
	char path[64], buf[256];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return 1;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) {
		return 1;
	}
	buf[n] = 0;
	char *p = strrchr(buf, ')'); // the name may hold anything, even ')'
	return p == NULL || p[1] != ' ' || p[2] == 'R';
}

// With mu held, which it drops meanwhile: whether every active worker is
// blocked. Checks at most 64 of them, which is plenty to see one running.
static int actives_blocked(cs_lane *l) {
	pid_t tids[64];
	int n = 0;
	for (struct active_worker *a = l->actives; a != NULL && n < 64; a = a->next) {
		tids[n++] = a->tid;
	}
	pthread_mutex_unlock(&l->mu);
	int blocked = 1;
	for (int i = 0; i < n && blocked; i++) {
		blocked = !thread_runnable(tids[i]);
	}
	pthread_mutex_lock(&l->mu);
	return blocked;
}

_Thread_local cs_job *cs_current_job;

cs_job *caddysnake_job_new(size_t out_cap, int out_ends_cap) {
	cs_job *j = calloc(1, sizeof *j);
	if (j == NULL) {
		return NULL;
	}
	if ((j->out = caddysnake_out_new(out_cap, out_ends_cap)) == NULL) {
		free(j);
		return NULL;
	}
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->drained, NULL);
	return j;
}

void caddysnake_job_free(cs_job *j) {
	if (j != NULL) {
		pthread_cond_destroy(&j->drained);
		pthread_mutex_destroy(&j->mu);
		caddysnake_out_free(j->out);
		free(j->buf);
		free(j->ends);
		cs_swapbuf_free(&j->frames);
		free(j->body);
		free(j->stack);
		free(j);
	}
}

cs_lane *cs_lane_new(cs_interp *ci, PyObject *app, int done_fd, int threads, cs_serve_fn serve) {
	cs_lane *l = calloc(1, sizeof *l);
	if (l == NULL) {
		return NULL;
	}
	l->ci = ci;
	l->app = app;
	l->serve = serve;
	l->done_fd = done_fd;
	l->limit = threads;
	l->nthreads = threads; // Go starts them
	pthread_mutex_init(&l->mu, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); // the watcher's timed wait
	pthread_cond_init(&l->work, &attr);
	pthread_cond_init(&l->watch, &attr);
	pthread_condattr_destroy(&attr);
	return l;
}

void caddysnake_lane_free(cs_lane *l) {
	if (l->nkept > 0) {
		caddysnake_release_many(l->ci, l->kept, l->nkept);
	}
	free(l->kept);
	pthread_cond_destroy(&l->work);
	pthread_cond_destroy(&l->watch);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

// With mu held: wakes a thread to take the queued jobs, an idle worker if
// there is one, else the watcher (the last idle thread).
void cs_lane_wake_taker(cs_lane *l) {
	if (l->idle > 0) {
		pthread_cond_signal(&l->work);
	} else if (l->has_watcher) {
		pthread_cond_signal(&l->watch);
	}
}

// Makes *p (of *cap bytes) hold at least need, and at least 1 KiB: 0, or -1
// if out of memory (*p unchanged). A job's buffers only grow.
static int grow_bytes(char **p, size_t *cap, size_t need) {
	if (need > *cap || *p == NULL) {
		size_t c = need < 1024 ? 1024 : need;
		char *b = realloc(*p, c);
		if (b == NULL) {
			return -1;
		}
		*p = b;
		*cap = c;
	}
	return 0;
}

// Copies the request into j's own buffers: Go reuses its buffer as soon as
// the submit call returns, and the worker reads the copy later.
static int job_fill(cs_job *j, const char *buf, const int32_t *ends, int n) {
	size_t len = n > 0 ? (size_t)ends[n - 1] : 0;
	if (grow_bytes(&j->buf, &j->buf_cap, len) < 0) {
		return -1;
	}
	if (n > j->ends_cap) {
		int cap = n < 64 ? 64 : n;
		int32_t *e = realloc(j->ends, sizeof *e * (size_t)cap);
		if (e == NULL) {
			return -1;
		}
		j->ends = e;
		j->ends_cap = cap;
	}
	memcpy(j->buf, buf, len);
	memcpy(j->ends, ends, sizeof *ends * (size_t)n);
	j->n = n;
	return 0;
}

char *caddysnake_job_body(cs_job *j, int64_t n) {
	if (n < 0 || grow_bytes(&j->body, &j->body_cap, (size_t)n) < 0) {
		return NULL;
	}
	return j->body;
}

int caddysnake_lane_submit(cs_lane *l, cs_job *j, uintptr_t handle, const char *buf, const int32_t *ends,
                           int n, int64_t body_len) {
	if (job_fill(j, buf, ends, n) < 0) {
		return -1;
	}
	// The body, if any, is in j->body already: Go read it there
	// (caddysnake_job_body), so it is not copied again.
	j->preloaded = body_len >= 0 && (size_t)body_len <= j->body_cap;
	j->body_len = j->preloaded ? (size_t)body_len : 0;
	j->body_off = 0;
	j->lane = l;
	if (j->out->body_obj != NULL) {
		caddysnake_job_release_body(j); // Go always does; never leak one
	}
	j->rc = CS_BRIDGE_ERROR;
	j->out->n = 0;
	// next_ready and ready stay: the job may still be on the ready list
	// from its previous request (Go saw that one finish through an earlier
	// wake-up); the wake-up it yields later is a spurious one.
	j->next = NULL;
	j->frames.fill_len = j->frames.taken_len = j->pending = 0;
	j->finished = j->gone = 0;
	j->interrupted = 0;
	j->queued_ns = now_ns();
	pthread_mutex_lock(&l->mu);
	// Under mu, as caddysnake_job_set_stack writes it: without a GIL a late
	// interrupt of the job's previous request could still be setting it.
	free(j->stack);
	j->stack = NULL;
	if (l->stopping) {
		pthread_mutex_unlock(&l->mu);
		return -1;
	}
	j->handle = handle; // under mu: take_done reads it
	j->state = JOB_QUEUED;
	if (l->tail != NULL) {
		l->tail->next = j;
	} else {
		l->head = j;
	}
	l->tail = j;
	// Someone must take it if no worker is active (without a GIL: if any
	// is idle); else the active ones will, or the watcher sees them stall.
	if (l->active == 0 || !HAS_GIL) {
		cs_lane_wake_taker(l);
	}
	int spawn = want_thread(l);
	pthread_mutex_unlock(&l->mu);
	return spawn;
}

// With mu held: takes j off the ready list if it is there.
void cs_lane_unready_locked(cs_lane *l, cs_job *j) {
	if (j->ready) {
		cs_job *prev = NULL;
		for (cs_job *it = l->ready_head; it != NULL; prev = it, it = it->next_ready) {
			if (it == j) {
				if (prev != NULL) {
					prev->next_ready = j->next_ready;
				} else {
					l->ready_head = j->next_ready;
				}
				if (l->ready_tail == j) {
					l->ready_tail = prev;
				}
				break;
			}
		}
		j->ready = 0;
		j->next_ready = NULL;
	}
}

void caddysnake_lane_forget(cs_lane *l, cs_job *j) {
	pthread_mutex_lock(&l->mu);
	cs_lane_unready_locked(l, j);
	pthread_mutex_unlock(&l->mu);
}

int caddysnake_lane_started(cs_lane *l, cs_job *j) {
	pthread_mutex_lock(&l->mu);
	int started = j->state != JOB_QUEUED;
	pthread_mutex_unlock(&l->mu);
	return started;
}

int caddysnake_lane_cancel(cs_lane *l, cs_job *j) {
	int removed = 0;
	pthread_mutex_lock(&l->mu);
	if (j->state == JOB_QUEUED) {
		cs_job *prev = NULL;
		for (cs_job *it = l->head; it != NULL; prev = it, it = it->next) {
			if (it != j) {
				continue;
			}
			if (prev != NULL) {
				prev->next = j->next;
			} else {
				l->head = j->next;
			}
			if (l->tail == j) {
				l->tail = prev;
			}
			j->next = NULL;
			j->state = JOB_IDLE;
			removed = 1;
			break;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return removed;
}

int caddysnake_lane_take_done(cs_lane *l, uintptr_t *out, int max) {
	int n = 0;
	pthread_mutex_lock(&l->mu);
	while (n < max && l->ready_head != NULL) {
		cs_job *j = l->ready_head;
		l->ready_head = j->next_ready;
		j->next_ready = NULL;
		j->ready = 0;
		out[n++] = j->handle; // read under mu: Go may be resubmitting j
	}
	if (l->ready_head == NULL) {
		l->ready_tail = NULL;
		l->ready_signaled = 0; // the next news writes done_fd again
	}
	pthread_mutex_unlock(&l->mu);
	return n;
}

// With mu held: writes done_fd unless it was written since Go's last take.
// Returns whether the caller must write done_fd (after unlocking).
static int wake_go(cs_lane *l) {
	l->held_since = 0;
	int wake = !l->ready_signaled;
	l->ready_signaled = 1;
	return wake;
}

static void write_done_fd(cs_lane *l) {
	uint64_t one = 1;
	// Cannot fail short of a closed fd, and Go closes it only after every
	// worker returned.
	ssize_t w = write(l->done_fd, &one, sizeof one);
	(void)w;
}

// Puts j on the ready list (once) and wakes Go's dispatcher if it may be
// asleep. While jobs wait, a worker holds the wake-up back (for up to
// HOLD_NS; it flushes when the queue empties, and the watcher after HOLD_NS
// if the worker blocks): on a shared CPU, waking Go preempts the worker, so
// news sent per job cost two context switches per request, while held back
// a whole batch costs two.
void cs_lane_job_notify(cs_lane *l, cs_job *j) {
	pthread_mutex_lock(&l->mu);
	int wake = ready_locked(l, j);
	pthread_mutex_unlock(&l->mu);
	if (wake) {
		write_done_fd(l);
	}
}

// cs_lane_job_notify's work, with mu held; returns whether to write done_fd.
static int ready_locked(cs_lane *l, cs_job *j) {
	if (j->abandoned) {
		return 0; // Go is not listening for it any more
	}
	if (!j->ready) {
		j->ready = 1;
		if (l->ready_tail != NULL) {
			l->ready_tail->next_ready = j;
		} else {
			l->ready_head = j;
		}
		l->ready_tail = j;
	}
	if (l->ready_signaled) {
		return 0;
	}
	// Hold back only while a watcher ticks: it is what flushes news a
	// blocked worker holds.
	int64_t now = HAS_GIL && l->head != NULL && l->has_watcher && !l->watcher_asleep ? now_ns() : 0;
	if (now == 0 || (l->held_since != 0 && now - l->held_since >= HOLD_NS)) {
		return wake_go(l);
	}
	if (l->held_since == 0) {
		l->held_since = now;
	}
	return 0;
}

// Sends news held back by cs_lane_job_notify. With mu held; unlocks and relocks it.
void cs_lane_flush_held(cs_lane *l) {
	if (l->held_since != 0 && wake_go(l)) {
		pthread_mutex_unlock(&l->mu);
		write_done_fd(l);
		pthread_mutex_lock(&l->mu);
	}
}

// The job is over: its frames and rc are final. The worker must not touch
// j afterwards (Go reuses it once it has taken everything). With the GIL.
// Returns 1 if Go wrote the job off: the worker dropped what the job held
// and must leave (it was replaced).
// gil: whether the caller holds it (not on the out-of-memory path, where
// the job never ran: nothing to clear or drop).
static int job_done(cs_lane *l, cs_job *j, int rc, int gil) {
	// On the ready list before Go can see finished: once it does, it may
	// reuse or free j (lock order: the lane's mu, then the job's).
	pthread_mutex_lock(&l->mu);
	if (j->interrupted && gil) {
		// No claim can follow (the state changes below, under mu), so a
		// RequestTimeout still pending is dropped before the next job.
		PyThreadState_SetAsyncExc(j->ident, NULL);
	}
	if (j->abandoned) {
		// Go answered the client and forgot j, but a late interrupt may
		// still look at it (caddysnake_job_claim): its buffers go, the
		// struct stays (a few hundred bytes per thread written off).
		cs_lane_unready_locked(l, j);
		pthread_mutex_unlock(&l->mu);
		if (gil && j->out != NULL) {
			Py_CLEAR(j->out->body_obj);
		}
		caddysnake_out_free(j->out);
		j->out = NULL;
		free(j->buf);
		free(j->ends);
		free(j->body);
		j->buf = j->body = NULL;
		j->ends = NULL;
		cs_swapbuf_free(&j->frames);
		return 1;
	}
	j->state = JOB_DONE;
	int wake = ready_locked(l, j);
	pthread_mutex_lock(&j->mu);
	j->rc = rc;
	j->finished = 1;
	pthread_mutex_unlock(&j->mu);
	pthread_mutex_unlock(&l->mu);
	if (wake) {
		write_done_fd(l);
	}
	return 0;
}

// The next queued job, marked running on worker me; NULL if none. Called
// without mu.
static cs_job *job_take(cs_lane *l, struct active_worker *me) {
	pthread_mutex_lock(&l->mu);
	cs_job *j = l->head;
	if (j != NULL) {
		l->head = j->next;
		if (l->head == NULL) {
			l->tail = NULL;
		}
		j->next = NULL;
		j->state = JOB_RUNNING;
		j->worker = me;
		j->ident = PyThread_get_thread_ident();
		j->abandoned = 0;
		j->started_ns = now_ns();
		l->started++;
	} else {
		cs_lane_flush_held(l); // about to go idle: Go gets what this batch held
	}
	pthread_mutex_unlock(&l->mu);
	return j;
}

static void deadline_in(struct timespec *t, long ns) {
	clock_gettime(CLOCK_MONOTONIC, t);
	t->tv_nsec += ns;
	if (t->tv_nsec >= 1000000000) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000;
	}
}

// The watcher's loop (with mu held): ticks every STALL_NS while workers are
// busy, and sleeps once the lane was quiet for two ticks, so it costs
// nothing when idle and no wake-up per request when busy. Returns 1 when
// this thread should run jobs, 0 when it should leave.
static int watch(cs_lane *l) {
	int quiet = 0;
	for (;;) {
		if (l->head != NULL && l->active == 0 && l->idle == 0) {
			return 1; // nobody else will (submit wakes an idle worker first)
		}
		if (cs_lane_drop_turn(l)) {
			return 1;
		}
		if (l->head == NULL && l->stopping) {
			return 0;
		}
		if (quiet >= 2) {
			l->watcher_asleep = 1;
			pthread_cond_wait(&l->watch, &l->mu);
			l->watcher_asleep = 0;
			quiet = 0;
			continue;
		}
		uint64_t mark = l->started;
		struct timespec until;
		deadline_in(&until, STALL_NS);
		pthread_cond_timedwait(&l->watch, &l->mu, &until);
		if (l->held_since != 0 && now_ns() - l->held_since >= HOLD_NS) {
			cs_lane_flush_held(l); // the worker holding it may be blocked
		}
		quiet = l->active == 0 && l->head == NULL ? quiet + 1 : 0;
		// Jobs wait, none started for a tick, and every active worker
		// sleeps: they are blocked with the GIL released. Join in.
		if (l->head != NULL && l->started == mark && l->active < l->limit && actives_blocked(l) &&
		    l->head != NULL && l->started == mark && l->active < l->limit) {
			return 1;
		}
	}
}

// With mu held: waits until this worker should run jobs (1) or leave (0).
static int await_turn(cs_lane *l) {
	for (;;) {
		if (l->head != NULL && (l->active == 0 || (!HAS_GIL && l->active < l->limit))) {
			return 1;
		}
		if (cs_lane_drop_turn(l)) {
			return 1;
		}
		if (l->head == NULL && l->stopping) {
			// Workers that went back to sleep while others ran must leave too.
			pthread_cond_broadcast(&l->work);
			pthread_cond_broadcast(&l->watch);
			l->nthreads--;
			return 0;
		}
		if (l->nthreads - l->parked > l->limit) {
			// Started for a body wait that is over: more than `threads`
			// are available now, and this one is not needed.
			l->nthreads--;
			return 0;
		}
		if (HAS_GIL && !l->has_watcher) {
			l->has_watcher = 1;
			int run = watch(l);
			l->has_watcher = 0;
			cs_lane_flush_held(l); // nobody ticks now: held news must not wait
			if (l->idle > 0) {
				pthread_cond_signal(&l->work); // a successor watcher (or a leaver)
			}
			if (run) {
				return 1;
			}
			continue;
		}
		l->idle++;
		pthread_cond_wait(&l->work, &l->mu);
		l->idle--;
	}
}

// Runs j with the GIL held.
static int serve_job(cs_lane *l, cs_job *j) {
	cs_current_job = j;
	int rc = l->serve(l->ci, l->app, j->handle, j->buf, j->ends, j->n, j->out);
	cs_current_job = NULL;
	return rc;
}

int caddysnake_lane_work(cs_lane *l) {
	struct active_worker me = {.tid = (pid_t)syscall(SYS_gettid)};
	// SCHED_BATCH: a job submitted to a sleeping worker does not preempt
	// the Go thread that submitted it, which goes on reading and queueing
	// other requests; the worker then runs them as one batch
	// (bench/README.md). The thread goes back to Go's pool
	// afterwards, so a policy changed here is restored (sched.go puts all
	// of Caddy's threads under SCHED_BATCH unless told not to; then there is
	// nothing to change).
	struct sched_param sp = {0};
	int batch = sched_getscheduler(0) == SCHED_OTHER && sched_setscheduler(0, SCHED_BATCH, &sp) == 0;
	pthread_mutex_lock(&l->mu);
	while (!me.lost && await_turn(l)) {
		link_active(l, &me);
		pthread_mutex_unlock(&l->mu);
		int kept = cs_request_enter(l->ci); // waits for the GIL
		cs_job *j;
		if (kept < 0) {
			// No thread state (out of memory): fail one job rather than spin.
			if ((j = job_take(l, &me)) != NULL) {
				const char msg[] = "python: out of memory for a thread state";
				go_log(j->handle, CS_LOG_ERROR, (char *)msg, sizeof msg - 1);
				job_done(l, j, CS_BRIDGE_ERROR, 0);
			}
		} else {
			for (;;) {
				cs_lane_drop_kept(l);
				if ((j = job_take(l, &me)) == NULL) {
					break;
				}
				if (job_done(l, j, serve_job(l, j), 1)) {
					break; // written off: this thread was replaced
				}
			}
			cs_request_leave(l->ci, kept);
		}
		pthread_mutex_lock(&l->mu);
		if (me.lost) {
			break;
		}
		cs_lane_unlink_active(l, &me);
		if (l->kept_bytes >= KEPT_WAKE && l->nkept > 0) {
			// Handed back while this worker was on its way out (no wake-up
			// then: it was active): one more turn drops them.
			l->drop_wanted = 1;
		}
	}
	if (me.lost) {
		l->lost--; // the last touch of l: close may free it from now on
	}
	pthread_mutex_unlock(&l->mu);
	if (batch) {
		sched_setscheduler(0, SCHED_OTHER, &sp);
	}
	return me.lost;
}

// With mu held: 1 (counted as started) if Go must start a worker thread
// because a job waits and no thread may take it: none is idle or watching
// (the others are busy, or parked on body waits) while fewer than
// `threads` are available. Parked threads are thus replaced only when
// work needs them, and retire once there are more than `threads` again.
static int want_thread(cs_lane *l) {
	if (l->head == NULL || l->idle > 0 || l->has_watcher || l->nthreads - l->parked >= l->limit) {
		return 0;
	}
	l->nthreads++;
	return 1;
}

// With mu held: how many worker threads Go must start so that `threads`
// of them are neither parked nor lost (none once stopping with nothing
// queued: the lane is winding down).
int cs_lane_top_up(cs_lane *l) {
	if (l->stopping && l->head == NULL) {
		return 0;
	}
	int n = 0;
	for (; l->nthreads - l->parked < l->limit; n++) {
		l->nthreads++;
	}
	return n;
}

int caddysnake_lane_park(cs_job *j) {
	cs_lane *l = j->lane;
	int spawn = 0;
	pthread_mutex_lock(&l->mu);
	struct active_worker *a = j->worker;
	if (a != NULL && a->linked && l->parked < MAX_PARKED) {
		cs_lane_unlink_active(l, a);
		a->parked = 1;
		l->parked++;
		if (l->head != NULL && (l->active == 0 || !HAS_GIL)) {
			cs_lane_wake_taker(l); // jobs wait, and this worker is not taking them
		}
		spawn = want_thread(l);
	}
	pthread_mutex_unlock(&l->mu);
	return spawn;
}

void caddysnake_lane_unpark(cs_job *j) {
	cs_lane *l = j->lane;
	pthread_mutex_lock(&l->mu);
	struct active_worker *a = j->worker;
	if (a != NULL && a->parked) {
		a->parked = 0;
		l->parked--;
		if (!a->lost) {
			link_active(l, a); // may exceed limit for a moment; extras retire
		}
	}
	pthread_mutex_unlock(&l->mu);
}

void caddysnake_lane_stop(cs_lane *l) {
	pthread_mutex_lock(&l->mu);
	l->stopping = 1;
	pthread_cond_broadcast(&l->work);
	pthread_cond_broadcast(&l->watch);
	pthread_mutex_unlock(&l->mu);
}
