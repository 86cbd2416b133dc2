// bootstrap.h: what every interpreter runs once, at its start
// (bootstrap.c): the bootstrap source that makes the caddysnake package
// importable and hands back the functions the bridge calls.
#ifndef CADDYSNAKE_BOOTSTRAP_H
#define CADDYSNAKE_BOOTSTRAP_H

#include "interp.h"

// Keeps copies of the bootstrap source, the package files and the version
// (see caddysnake_init) for every interpreter made later. 0, or -1 if out
// of memory.
int cs_bootstrap_keep(const char *bootstrap, const char *files, size_t files_len, const char *version);

// Runs the bootstrap in ci's interpreter (current, GIL held) and keeps the
// functions it defines in ci. NULL, or a malloc'd message.
char *cs_run_bootstrap(cs_interp *ci);
// Drops what cs_run_bootstrap kept; with ci's GIL.
void cs_drop_functions(cs_interp *ci);

// A malloc'd message for a failed CPython start-up or interpreter creation.
char *cs_status_error(PyStatus status);

#endif
