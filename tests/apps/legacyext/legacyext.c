/* A C extension the old way: single-phase init, no declaration of
 * sub-interpreter or free-threading support. CPython refuses to load it in
 * an isolated sub-interpreter, and a free-threaded CPython turns the GIL
 * back on to load it. The tests compile it against the linked CPython. */
#include <Python.h>

static struct PyModuleDef legacyext_def = {
	PyModuleDef_HEAD_INIT, "legacyext", "single-phase init extension for tests", -1, NULL,
};

PyMODINIT_FUNC PyInit_legacyext(void) {
	PyObject *m = PyModule_Create(&legacyext_def);
	if (m != NULL && PyModule_AddIntConstant(m, "ANSWER", 42) < 0) {
		Py_CLEAR(m);
	}
	return m;
}
