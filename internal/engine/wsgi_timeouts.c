// wsgi_timeouts.c: what request_timeout needs of a running job (Go's side
// is wsgi_timeouts.go): when it started, its thread, the interrupt raised
// in it, and writing it off.
#include "wsgi_lanes_internal.h"

#include <stdlib.h>

int64_t caddysnake_now_ns(void) { return now_ns(); }

int64_t caddysnake_job_running_since(cs_job *j, uintptr_t handle) {
	cs_lane *l = j->lane;
	int64_t since = 0;
	if (l == NULL) {
		return 0;
	}
	pthread_mutex_lock(&l->mu);
	if (j->state == JOB_RUNNING && j->handle == handle && !j->abandoned) {
		since = j->started_ns;
	}
	pthread_mutex_unlock(&l->mu);
	return since;
}

unsigned long caddysnake_job_ident(cs_job *j, uintptr_t handle) {
	cs_lane *l = j->lane;
	unsigned long ident = 0;
	if (l == NULL) {
		return 0; // never submitted
	}
	pthread_mutex_lock(&l->mu);
	if (j->state == JOB_RUNNING && j->handle == handle && !j->abandoned) {
		ident = j->ident;
	}
	pthread_mutex_unlock(&l->mu);
	return ident;
}

int caddysnake_job_claim(cs_job *j, uintptr_t handle, PyObject *exc) {
	cs_lane *l = j->lane;
	int raised = 0;
	pthread_mutex_lock(&l->mu);
	// Raised under mu, which job_done takes before it clears a pending
	// exception: it lands in this job or is dropped, never in the next one
	// (also without a GIL). Lock order: mu, then CPython's thread list.
	if (j->state == JOB_RUNNING && j->handle == handle && !j->abandoned) {
		j->interrupted = 1;
		raised = PyThreadState_SetAsyncExc(j->ident, exc) == 1;
	}
	pthread_mutex_unlock(&l->mu);
	return raised;
}

void caddysnake_job_set_stack(cs_job *j, char *stack) {
	pthread_mutex_lock(&j->lane->mu);
	free(j->stack);
	j->stack = stack;
	pthread_mutex_unlock(&j->lane->mu);
}

int caddysnake_job_interrupted(cs_job *j, char **stack) {
	*stack = NULL;
	if (j->lane == NULL) {
		return 0;
	}
	pthread_mutex_lock(&j->lane->mu);
	int interrupted = j->interrupted;
	if (interrupted) {
		*stack = j->stack;
		j->stack = NULL;
	}
	pthread_mutex_unlock(&j->lane->mu);
	return interrupted;
}

int caddysnake_lane_abandon(cs_lane *l, cs_job *j, int *spawn, char **stack) {
	*spawn = 0;
	*stack = NULL;
	pthread_mutex_lock(&l->mu);
	pthread_mutex_lock(&j->mu);
	if (j->state != JOB_RUNNING || j->finished) {
		pthread_mutex_unlock(&j->mu);
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	j->abandoned = 1;
	j->gone = 1; // a write waiting for Go to drain the outbox returns
	pthread_cond_broadcast(&j->drained);
	pthread_mutex_unlock(&j->mu);
	cs_lane_unready_locked(l, j);
	struct active_worker *a = j->worker;
	if (a != NULL && !a->lost) {
		a->lost = 1;
		if (a->linked) {
			cs_lane_unlink_active(l, a);
		}
		if (a->parked) {
			a->parked = 0;
			l->parked--;
		}
		l->nthreads--;
		l->lost++;
	}
	*stack = j->stack;
	j->stack = NULL;
	*spawn = cs_lane_top_up(l);
	if (l->head != NULL && (l->active == 0 || !HAS_GIL)) {
		cs_lane_wake_taker(l);
	}
	pthread_mutex_unlock(&l->mu);
	return 1;
}

int caddysnake_lane_lost(cs_lane *l) {
	pthread_mutex_lock(&l->mu);
	int n = l->lost;
	pthread_mutex_unlock(&l->mu);
	return n;
}
