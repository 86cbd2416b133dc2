// wsgi_out.h: the buffer a whole WSGI response is copied into (wsgi_out.c),
// for Go to send after Python is done.
#ifndef CADDYSNAKE_WSGI_OUT_H
#define CADDYSNAKE_WSGI_OUT_H

#include "caddysnake.h"

// A reusable C buffer a WSGI response is copied into (see wsgi_lanes.h,
// "whole responses"): strings back to back in buf, ends[i] the end offset
// of string i. The buffers are allocated on first use and grow up to cap
// bytes and ends_cap strings: a request slot waiting in the queue holds
// none.
typedef struct {
	char *buf;
	size_t cap;  // the most buf may grow to
	size_t have; // allocated bytes of buf
	int32_t *ends;
	int ends_cap;
	int n;      // out: how many strings; 0: nothing copied
	int status; // out
	// out: a large bytes body is not copied: body points into body_obj (a
	// bytes object the job holds a reference to; the last string in buf is
	// then empty). Go sends it, then hands the reference back
	// (caddysnake_job_release_body) to be dropped under the GIL.
	PyObject *body_obj;
	const char *body;
	size_t body_len;
} cs_out;

// Allocates one that takes up to cap bytes and ends_cap strings; NULL if
// out of memory. Freed with caddysnake_out_free.
cs_out *caddysnake_out_new(size_t cap, int ends_cap);
void caddysnake_out_free(cs_out *out);

// Room for need bytes and ends_cap strings in out: 0, or -1 if out of
// memory (the caller sends the response another way).
int cs_out_reserve(cs_out *out, size_t need);

#endif
