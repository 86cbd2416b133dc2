// mainfirst.c: on CPython 3.12, every C extension a sub-interpreter imports
// has its init function run in the main interpreter first.
//
// Why: CPython 3.12 learns that an extension uses single-phase init (global
// state, no sub-interpreter support) only by calling its PyInit function,
// and it calls it in the importing interpreter before refusing the module.
// That PyInit then fills process-wide statics (static types' dicts, module
// globals) with objects from the sub-interpreter's own allocator: `import
// datetime` in two sub-interpreters crashed in PyInit__datetime ("free():
// invalid size" as one freed the other's object), and those objects dangle
// once the interpreter ends. CPython 3.13 fixed this by running every init
// function in the main interpreter first (gh-117953); this does the same
// for 3.12 from outside. The main interpreter imports the module by spec
// (_imp.create_dynamic, caddysnake.loader.init_extension_in_main), which
// caches a single-phase module there; the sub-interpreter's own import then
// finds it in that cache and refuses it without calling PyInit again, so
// libraries fall back to pure Python (_pydatetime, _pydecimal) as designed.
// Multi-phase modules are merely created and dropped in the main one.
#include "mainfirst.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static PyObject *init_fn; // the main interpreter's; touched with its GIL only

// One extension at a time: the init function may release the main GIL
// (imports of its own), and two sub-interpreters must not run one module's
// init at once. Taken with no GIL held, so nobody holding a GIL waits.
static pthread_mutex_t mainfirst_mu = PTHREAD_MUTEX_INITIALIZER;

void cs_mainfirst_set(PyObject *fn) {
	Py_XINCREF(fn);
	init_fn = fn;
}

// Runs init_fn(name, origin) in the main interpreter; returns NULL, or a
// malloc'd message when it failed. Called with no GIL held.
static char *run_in_main(const char *name, const char *origin) {
	pthread_mutex_lock(&mainfirst_mu);
	PyThreadState *ts = PyThreadState_New(PyInterpreterState_Main());
	if (ts == NULL) {
		pthread_mutex_unlock(&mainfirst_mu);
		return strdup("out of memory");
	}
	PyEval_RestoreThread(ts);
	char *err = NULL;
	PyObject *res = init_fn == NULL ? NULL : PyObject_CallFunction(init_fn, "ss", name, origin);
	if (res == NULL) {
		err = strdup("the main interpreter has no caddysnake loader");
		PyErr_Clear();
	} else if (res != Py_None) {
		const char *u = PyUnicode_Check(res) ? PyUnicode_AsUTF8(res) : NULL;
		err = strdup(u != NULL ? u : "unprintable error");
		PyErr_Clear();
	}
	Py_XDECREF(res);
	PyThreadState_Clear(ts);
	PyThreadState_DeleteCurrent(); // releases the main GIL
	pthread_mutex_unlock(&mainfirst_mu);
	return err;
}

PyObject *cs_init_in_main(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
	(void)mod;
	if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
		PyErr_SetString(PyExc_TypeError, "init_in_main(name: str, origin: str)");
		return NULL;
	}
	// Copied out: no object of this interpreter may be touched from the main one.
	const char *n = PyUnicode_AsUTF8(args[0]), *o = PyUnicode_AsUTF8(args[1]);
	if (n == NULL || o == NULL) {
		return NULL;
	}
	char *name = strdup(n), *origin = strdup(o);
	if (name == NULL || origin == NULL) {
		free(name);
		free(origin);
		return PyErr_NoMemory();
	}
	char *err;
	Py_BEGIN_ALLOW_THREADS
	err = run_in_main(name, origin);
	Py_END_ALLOW_THREADS
	PyObject *ret = NULL;
	if (err == NULL) {
		ret = Py_NewRef(Py_None);
	} else {
		PyErr_Format(PyExc_ImportError,
		             "the C extension module %s failed to initialise in the main interpreter, "
		             "which CPython 3.12 sub-interpreters need: %s",
		             name, err);
		free(err);
	}
	free(name);
	free(origin);
	return ret;
}
