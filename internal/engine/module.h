// module.h: the _caddysnake module (module.c), built into every
// interpreter at start-up (startup.c).
#ifndef CADDYSNAKE_MODULE_H
#define CADDYSNAKE_MODULE_H

#include "caddysnake.h"

// For PyImport_AppendInittab.
PyObject *cs_module_init(void);

#endif
