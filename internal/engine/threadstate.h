// threadstate.h: the thread states requests run Python with
// (threadstate.c); an ASGI loop's are in caddysnake.h.
#ifndef CADDYSNAKE_THREADSTATE_H
#define CADDYSNAKE_THREADSTATE_H

#include "caddysnake.h"

// Attaches the calling thread (a WSGI worker, wsgi_lanes.c) to ci for one
// turn of requests, taking ci's GIL: returns what cs_request_leave takes
// (1: a state this thread keeps, 0: one made for this turn), or -1 if no
// state could be made. cs_request_leave detaches it and releases the GIL.
int cs_request_enter(cs_interp *ci);
void cs_request_leave(cs_interp *ci, int kept);

#endif
