// wsgi_kept.c: response bodies Go sent by reference (cs_out.body_obj),
// handed back to the lane and dropped by a worker that holds the GIL.
#include "wsgi_lanes_internal.h"

#include <stdlib.h>
#include <string.h>

// With mu held: whether a turn is wanted only to drop kept bodies
// (caddysnake_job_release_body); takes it. Such a turn runs no job: the
// worker's loop drops them before it finds the queue empty.
int cs_lane_drop_turn(cs_lane *l) {
	if (!l->drop_wanted) {
		return 0;
	}
	l->drop_wanted = 0;
	return 1;
}

// Puts a body reference Go is done with on l's list; with mu held.
static void keep_locked(cs_lane *l, PyObject *obj, size_t len) {
	if (l->nkept == l->kept_cap) {
		size_t cap = l->kept_cap ? 2 * l->kept_cap : 64;
		PyObject **k = realloc(l->kept, sizeof *k * cap);
		if (k == NULL) {
			return; // out of memory: the body leaks rather than crash
		}
		l->kept = k;
		l->kept_cap = cap;
	}
	l->kept[l->nkept] = obj;
	l->kept_bytes += len;
	__atomic_store_n(&l->nkept, l->nkept + 1, __ATOMIC_RELAXED);
}

void caddysnake_job_release_body(cs_job *j) {
	PyObject *obj = j->out->body_obj;
	if (obj == NULL) {
		return;
	}
	size_t len = j->out->body_len;
	j->out->body_obj = NULL;
	j->out->body = NULL;
	cs_lane *l = j->lane;
	pthread_mutex_lock(&l->mu);
	keep_locked(l, obj, len);
	if (l->kept_bytes >= KEPT_WAKE && l->active == 0 && !l->drop_wanted) {
		// Nobody runs jobs, so nobody drops them soon (see await_turn).
		l->drop_wanted = 1;
		pthread_cond_signal(l->idle > 0 ? &l->work : &l->watch);
	}
	pthread_mutex_unlock(&l->mu);
}

// Drops the body references Go handed back; with the GIL held. Up to a
// stack's worth per lock, so the list is never copied.
void cs_lane_drop_kept(cs_lane *l) {
	if (__atomic_load_n(&l->nkept, __ATOMIC_RELAXED) == 0) {
		return; // the common case costs no lock; a late one waits a job
	}
	PyObject *batch[64];
	size_t n;
	do {
		pthread_mutex_lock(&l->mu);
		n = l->nkept < 64 ? l->nkept : 64;
		__atomic_store_n(&l->nkept, l->nkept - n, __ATOMIC_RELAXED);
		memcpy(batch, l->kept + l->nkept, sizeof *batch * n);
		for (size_t i = 0; i < n; i++) {
			l->kept_bytes -= (size_t)PyBytes_GET_SIZE(batch[i]); // immutable: no GIL needed
		}
		pthread_mutex_unlock(&l->mu);
		for (size_t i = 0; i < n; i++) {
			Py_DECREF(batch[i]);
		}
	} while (n == 64);
}
