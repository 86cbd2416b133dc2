// wsgi_lanes_internal.h: a lane's state, shared by the C units of the
// lanes (wsgi_lanes.c: the queue, the scheduler and the workers' loop;
// wsgi_frames.c: a job's response frames; wsgi_kept.c: kept bodies;
// wsgi_timeouts.c: what timeouts need). Go uses wsgi_lanes.h only.
#ifndef CADDYSNAKE_LANES_INTERNAL_H
#define CADDYSNAKE_LANES_INTERNAL_H

#include "wsgi_lanes.h"

#include <pthread.h>
#include <sys/types.h>
#include <time.h>

struct cs_lane {
	cs_interp *ci;
	PyObject *app; // borrowed: the WSGI app owns it and outlives the lane
	cs_serve_fn serve;
	int done_fd;
	pthread_mutex_t mu; // guards everything below, and jobs' state and ready
	pthread_cond_t work;  // idle workers wait here
	pthread_cond_t watch; // the watcher waits here
	cs_job *head, *tail;             // queued, FIFO
	cs_job *ready_head, *ready_tail; // jobs with news, not yet taken by Go
	int ready_signaled;              // done_fd written since the last empty take
	int64_t held_since;              // news held back since (0: none), see cs_lane_job_notify
	int idle;                        // workers waiting on work
	int active;                      // workers running jobs (or waiting for the GIL to)
	int limit;                       // at most this many active: `threads`
	// Worker threads: nthreads live ones (not written off), of which
	// parked wait for request body bytes and do not count against limit
	// (caddysnake_lane_park); lost: written off and not yet back.
	int nthreads, parked, lost;
	int has_watcher;                 // an idle worker watches for stalls (await_turn)
	int watcher_asleep;              // it waits untimed: nothing to watch
	struct active_worker *actives;   // the active workers, for the watcher
	uint64_t started;                // jobs taken so far: the watcher's progress mark
	int stopping;
	// Response bodies Go sent by reference (cs_out.body_obj) and handed
	// back: dropped by the next worker that holds the GIL (cs_lane_drop_kept), the
	// rest when the lane is freed. nkept is also read without mu.
	PyObject **kept;
	size_t nkept, kept_cap;
	size_t kept_bytes; // their bodies' size
	int drop_wanted;   // an idle worker should drop them (caddysnake_job_release_body)
};

// An active worker, linked into its lane while it runs jobs.
struct active_worker {
	pid_t tid;
	struct active_worker *next, **prevp;
	int linked; // in the actives list (not parked, not lost)
	int parked; // waiting for body bytes (caddysnake_lane_park)
	int lost;   // written off (caddysnake_lane_abandon)
};

#ifdef Py_GIL_DISABLED
#define HAS_GIL 0
#else
#define HAS_GIL 1
#endif

static inline int64_t now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// wsgi_lanes.c, with mu held unless said otherwise.

// Puts j on the ready list (once) and wakes Go's dispatcher if it may be
// asleep, holding the wake-up back while jobs wait. Takes mu itself.
void cs_lane_job_notify(cs_lane *l, cs_job *j);
// Sends news held back by cs_lane_job_notify; unlocks and relocks mu.
void cs_lane_flush_held(cs_lane *l);
// Takes j off the ready list if it is there.
void cs_lane_unready_locked(cs_lane *l, cs_job *j);
// Wakes a thread to take the queued jobs.
void cs_lane_wake_taker(cs_lane *l);
// a stops running jobs (parked or written off).
void cs_lane_unlink_active(cs_lane *l, struct active_worker *a);
// How many worker threads Go must start so that `threads` of them are
// neither parked nor lost.
int cs_lane_top_up(cs_lane *l);

// wsgi_kept.c.

// With mu held: whether a turn is wanted only to drop kept bodies; takes
// it.
int cs_lane_drop_turn(cs_lane *l);
// With the GIL, without mu: drops the body references Go handed back.
void cs_lane_drop_kept(cs_lane *l);
// Bytes of kept bodies past which an idle lane wakes a worker to drop them:
// sends that finish after the last job started would otherwise stay pinned
// until the app's next request.
#define KEPT_WAKE (4 * 1024 * 1024)

#endif
