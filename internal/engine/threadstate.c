// threadstate.c: the PyThreadStates of the threads that run requests: kept
// per thread and interpreter (threading.local survives between requests,
// as on mod_wsgi), and an ASGI loop's own.
#include "threadstate.h"
#include "interp.h"

#include <assert.h>
#include <stdlib.h>

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
// is an mmap'd chunk mapped and unmapped each time (bench/README.md).
static _Thread_local PyThreadState *anchor_ts;

// The states this thread keeps, by interpreter id; an entry of an ended
// interpreter is stale (its state was freed) and is reused.
#define KEPT_STATES 8
static _Thread_local struct {
	uint64_t id;
	PyThreadState *ts;
} kept_states[KEPT_STATES];

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
	if (anchor_ts == NULL && (anchor_ts = PyThreadState_New(cs_anchor_interp)) == NULL) {
		return NULL;
	}
	if (free_slot < 0) {
		pthread_mutex_lock(&cs_live_mu);
		for (int i = 0; i < KEPT_STATES && free_slot < 0; i++) {
			if (!cs_id_is_live(kept_states[i].id)) {
				free_slot = i;
			}
		}
		pthread_mutex_unlock(&cs_live_mu);
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
