// mainfirst.h: on CPython 3.12, a C extension's init function runs first
// in the main interpreter, as CPython 3.13 does itself (mainfirst.c says
// why).
#ifndef CADDYSNAKE_MAINFIRST_H
#define CADDYSNAKE_MAINFIRST_H

#include "caddysnake.h"

// Keeps fn, the main interpreter's caddysnake.loader.init_extension_in_main
// (a new reference taken; main GIL held).
void cs_mainfirst_set(PyObject *fn);

// _caddysnake.init_in_main(name, origin), called by a sub-interpreter's
// _imp.create_dynamic hook (the bootstrap in python.go) with its GIL held.
PyObject *cs_init_in_main(PyObject *mod, PyObject *const *args, Py_ssize_t nargs);

#endif
