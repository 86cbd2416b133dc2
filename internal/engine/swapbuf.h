// swapbuf.h: the double buffer behind a response's frames (wsgi_frames.c) and an
// ASGI request's outbox (asgi_queues.c). A Python thread appends to fill
// while Go sends from taken; a take swaps them, so neither side copies or
// waits for the other. The caller provides the locking.
#ifndef CADDYSNAKE_SWAPBUF_H
#define CADDYSNAKE_SWAPBUF_H

#include <stdlib.h>

typedef struct {
	char *fill, *taken;
	size_t fill_len, fill_cap, taken_len, taken_cap;
} cs_swapbuf;

// Room for n more bytes at the end of fill (growing it by doubling, from
// 4 KiB), or NULL if out of memory. The caller writes them and adds n to
// fill_len.
static inline char *cs_swapbuf_reserve(cs_swapbuf *b, size_t n) {
	size_t need = b->fill_len + n;
	if (need > b->fill_cap) {
		size_t cap = b->fill_cap < 4096 ? 4096 : b->fill_cap;
		while (cap < need) {
			cap *= 2;
		}
		char *grown = realloc(b->fill, cap);
		if (grown == NULL) {
			return NULL;
		}
		b->fill = grown;
		b->fill_cap = cap;
	}
	return b->fill + b->fill_len;
}

// What was appended becomes taken (valid until the next swap); appending
// goes on into the other buffer, emptied.
static inline void cs_swapbuf_swap(cs_swapbuf *b) {
	char *t = b->taken;
	size_t cap = b->taken_cap;
	b->taken = b->fill;
	b->taken_cap = b->fill_cap;
	b->taken_len = b->fill_len;
	b->fill = t;
	b->fill_cap = cap;
	b->fill_len = 0;
}

static inline void cs_swapbuf_free(cs_swapbuf *b) {
	free(b->fill);
	free(b->taken);
	*b = (cs_swapbuf){0};
}

#endif
