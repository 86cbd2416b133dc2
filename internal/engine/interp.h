// interp.h: what the C units share about an interpreter (contracts for Go
// are in caddysnake.h): its struct, and the locks and ids interp.c keeps.
#ifndef CADDYSNAKE_INTERP_H
#define CADDYSNAKE_INTERP_H

#include "caddysnake.h"
#include "environ.h"
#include "scope.h"

#include <pthread.h>

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

// Held while an interpreter is created or ended, and while
// _caddysnake.interpreter_count() walks the list, which CPython does not
// lock for its public walkers.
extern pthread_mutex_t cs_interp_list_mu;

// The anchor interpreter (see cs_request_enter, threadstate.c), left out of
// counts.
extern PyInterpreterState *cs_anchor_interp;

// Ids of the live sub-interpreters, to tell stale entries of a thread's
// kept states (threadstate.c): cs_id_is_live with cs_live_mu held.
extern pthread_mutex_t cs_live_mu;
int cs_id_is_live(uint64_t id);

#endif
