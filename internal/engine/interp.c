// interp.c: sub-interpreters (made and ended on their owner threads) and the
// configuration-time calls every interpreter runs there: loading and
// dropping apps. Contracts in caddysnake.h.
#include "interp.h"
#include "args.h"
#include "bootstrap.h"

#include <stdlib.h>
#include <string.h>

pthread_mutex_t cs_interp_list_mu = PTHREAD_MUTEX_INITIALIZER;
PyInterpreterState *cs_anchor_interp;

pthread_mutex_t cs_live_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t live_ids[256];
static uint64_t next_id __attribute__((unused)) = 1; // unused before 3.12
static size_t nlive;

int cs_id_is_live(uint64_t id) {
	for (size_t i = 0; i < nlive; i++) {
		if (live_ids[i] == id) {
			return 1;
		}
	}
	return 0;
}

char *caddysnake_interp_new(cs_interp **out) {
#if PY_VERSION_HEX >= 0x030C0000
	// Py_NewInterpreterFromConfig wants a current thread state on entry: a
	// temporary one of the main interpreter, dropped once the new one runs.
	PyThreadState *tmp = PyThreadState_New(PyInterpreterState_Main());
	// Lock order: cs_interp_list_mu before any GIL. Creating an interpreter
	// takes the main GIL inside (3.13 loads builtin modules through the
	// main interpreter), so nobody may wait for the mutex holding a GIL.
	pthread_mutex_lock(&cs_interp_list_mu);
	PyEval_RestoreThread(tmp);
	// The isolated configuration of PEP 684: own GIL and allocator, no fork
	// or exec, no daemon threads (they could outlive Py_EndInterpreter), and
	// only extensions that declare sub-interpreter support.
	PyInterpreterConfig config = {
		.use_main_obmalloc = 0,
		.allow_fork = 0,
		.allow_exec = 0,
		.allow_threads = 1,
		.allow_daemon_threads = 0,
		.check_multi_interp_extensions = 1,
		.gil = PyInterpreterConfig_OWN_GIL,
	};
	PyThreadState *sub = NULL;
	PyStatus status = PyStatus_Ok();
	if (cs_anchor_interp == NULL) {
		// See cs_request_enter. Its creation state stays, detached, for good.
		status = Py_NewInterpreterFromConfig(&sub, &config);
		if (!PyStatus_Exception(status)) {
			cs_anchor_interp = PyThreadState_GetInterpreter(sub);
			PyEval_SaveThread();
			PyEval_RestoreThread(tmp);
		}
	}
	if (!PyStatus_Exception(status)) {
		status = Py_NewInterpreterFromConfig(&sub, &config);
	}
	if (PyStatus_Exception(status)) {
		// On failure tmp is current again, with the main GIL.
		PyThreadState_Clear(tmp);
		PyThreadState_DeleteCurrent();
		pthread_mutex_unlock(&cs_interp_list_mu);
		return cs_status_error(status);
	}
	pthread_mutex_unlock(&cs_interp_list_mu);
	// sub is current and holds its own GIL; the main GIL was released.
	cs_interp *ci = calloc(1, sizeof(*ci));
	if (ci == NULL) {
		Py_EndInterpreter(sub);
		PyEval_RestoreThread(tmp);
		PyThreadState_Clear(tmp);
		PyThreadState_DeleteCurrent();
		return strdup("out of memory");
	}
	ci->interp = PyThreadState_GetInterpreter(sub);
	pthread_mutex_init(&ci->states_mu, NULL);
	pthread_mutex_lock(&cs_live_mu);
	ci->id = next_id++;
	if (nlive < sizeof live_ids / sizeof live_ids[0]) {
		live_ids[nlive++] = ci->id;
		ci->keeps_states = 1;
	}
	pthread_mutex_unlock(&cs_live_mu);
	char *err = cs_run_bootstrap(ci);
	ci->ts = PyEval_SaveThread();
	PyEval_RestoreThread(tmp);
	PyThreadState_Clear(tmp);
	PyThreadState_DeleteCurrent();
	if (err != NULL) {
		caddysnake_interp_end(ci);
		return err;
	}
	*out = ci;
	return NULL;
#else
	(void)out;
	return strdup("sub-interpreters with their own GIL need CPython 3.12 or later");
#endif
}

// How many non-daemon threads other than this one are still alive in the
// current interpreter after waiting up to `wait` seconds for each (join
// releases the GIL). Errors count as none: ending then goes on as before.
static int threads_left(double wait) {
	int left = 0;
	PyObject *threading = PyImport_ImportModule("threading");
	PyObject *cur = threading != NULL ? PyObject_CallMethod(threading, "current_thread", NULL) : NULL;
	// The "main thread" of a sub-interpreter is whichever thread first
	// imported threading there (often a worker); Py_EndInterpreter does not
	// wait for it either, and joining it would wait for the process's end.
	PyObject *main = cur != NULL ? PyObject_CallMethod(threading, "main_thread", NULL) : NULL;
	PyObject *all = main != NULL ? PyObject_CallMethod(threading, "enumerate", NULL) : NULL;
	if (all != NULL && PyList_Check(all)) {
		for (Py_ssize_t i = 0; i < PyList_GET_SIZE(all); i++) {
			PyObject *t = PyList_GET_ITEM(all, i); // borrowed; the list holds it
			PyObject *daemon = t != cur && t != main ? PyObject_GetAttrString(t, "daemon") : NULL;
			if (daemon == NULL || PyObject_IsTrue(daemon)) {
				Py_XDECREF(daemon);
				PyErr_Clear();
				continue;
			}
			Py_DECREF(daemon);
			PyObject *r = PyObject_CallMethod(t, "join", "d", wait);
			Py_XDECREF(r);
			PyObject *alive = PyObject_CallMethod(t, "is_alive", NULL);
			if (alive != NULL && PyObject_IsTrue(alive)) {
				left++;
			}
			Py_XDECREF(alive);
			PyErr_Clear();
		}
	}
	PyErr_Clear();
	Py_XDECREF(all);
	Py_XDECREF(main);
	Py_XDECREF(cur);
	Py_XDECREF(threading);
	return left;
}

int caddysnake_interp_end(cs_interp *ci) {
	if (ci->is_main) {
		return 0; // the main interpreter lives as long as the process
	}
	// Py_EndInterpreter would join these forever, under cs_interp_list_mu.
	PyEval_RestoreThread(ci->ts);
	int left = threads_left(5.0);
	PyEval_SaveThread();
	if (left > 0) {
		return 1;
	}
	pthread_mutex_lock(&cs_live_mu);
	for (size_t i = 0; i < nlive; i++) {
		if (live_ids[i] == ci->id) {
			live_ids[i] = live_ids[--nlive];
			break;
		}
	}
	pthread_mutex_unlock(&cs_live_mu);
	pthread_mutex_lock(&cs_interp_list_mu); // before the GIL: see caddysnake_interp_new
	PyEval_RestoreThread(ci->ts);
	cs_drop_functions(ci);
	// No request runs any more, and none of these is bound to a thread's
	// PyGILState slot (cs_request_leave), so they can go from here.
	for (size_t i = 0; i < ci->nstates; i++) {
		PyThreadState_Clear(ci->states[i]);
		PyThreadState_Delete(ci->states[i]);
	}
	Py_EndInterpreter(ci->ts); // leaves no current thread state
	pthread_mutex_unlock(&cs_interp_list_mu);
	free(ci->states);
	pthread_mutex_destroy(&ci->states_mu);
	free(ci);
	return 0;
}

PyObject *caddysnake_load_app(cs_interp *ci, const char *target, const char *working_dir,
                              const char *venv, const char *interface, const char *default_dir,
                              char **origin, char **err) {
	PyEval_RestoreThread(ci->ts);
	PyObject *app = NULL;
	// The bootstrap's load_app returns (app, origin folder).
	PyObject *res = PyObject_CallFunction(ci->load_app, "sssOss", target, working_dir, venv,
	                                      ci->is_main ? Py_False : Py_True, interface, default_dir);
	if (res != NULL && PyTuple_Check(res) && PyTuple_GET_SIZE(res) == 2) {
		const char *o = PyUnicode_AsUTF8(PyTuple_GET_ITEM(res, 1));
		if (o != NULL) {
			app = Py_NewRef(PyTuple_GET_ITEM(res, 0));
			*origin = strdup(o);
		}
	} else if (res != NULL) {
		PyErr_SetString(PyExc_TypeError, "the bootstrap's load_app did not return (app, origin)");
	}
	Py_XDECREF(res);
	if (app == NULL) {
		*err = cs_take_error(ci);
	}
	ci->ts = PyEval_SaveThread();
	return app;
}

char *caddysnake_gil_status(cs_interp *ci) {
	PyEval_RestoreThread(ci->ts);
	char *out = NULL;
	PyObject *s = PyObject_CallNoArgs(ci->gil_status);
	const char *u = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
	out = strdup(u != NULL ? u : "unknown");
	PyErr_Clear();
	Py_XDECREF(s);
	ci->ts = PyEval_SaveThread();
	return out;
}

void caddysnake_release(cs_interp *ci, PyObject *obj) {
	PyEval_RestoreThread(ci->ts);
	Py_XDECREF(obj);
	ci->ts = PyEval_SaveThread();
}

void caddysnake_release_many(cs_interp *ci, PyObject **objs, size_t n) {
	PyEval_RestoreThread(ci->ts);
	for (size_t i = 0; i < n; i++) {
		Py_DECREF(objs[i]);
	}
	ci->ts = PyEval_SaveThread();
}

