// asgi_queues.c: the queues between Go's request goroutines and an ASGI
// app's event loop thread (contracts in asgi_queues.h).
//
// Why no calls into Go from the loop: the loop thread runs Python for the
// app's whole life inside one cgo call, so Go's scheduler has long taken its
// P away. Every call back into Go must then get a P first; with the server
// on one CPU (GOMAXPROCS 1) the only P is busy with network goroutines and
// the loop thread sleeps until one is free. A request used to make five such
// calls (drain, start, body, drain again for the body's completion,
// finish). Here the loop only appends to C memory under a mutex, and wakes
// Go through an eventfd its netpoller watches, once per batch of requests.
//
// Small bodies are copied, so their send() is over at once instead of
// waiting for a completion event: one wake-up of the loop per request
// instead of two. Copying stops at AOUTBOX_LIMIT bytes not yet sent (a slow
// client holds back a streaming app), and bodies over ACOPY_MAX are written
// by Go from Python's own bytes, as before.
#include "asgi_queues.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct cs_areq {
	uintptr_t handle;
	cs_areq *prev_ready, *next_ready; // in the app's ready list
	int ready;
	cs_areq *next_free;
	cs_swapbuf cmds; // appended (fill); Go carries them out (taken)
	size_t pending; // copied body bytes not yet sent
};

struct cs_aapp {
	pthread_mutex_t mu; // guards everything below, and the requests' fields
	int wake_fd, news_fd;
	int closed;
	// The inbox; spare is the array the loop drained last (its events'
	// memory is freed at the next drain).
	cs_event *evs, *spare;
	size_t nevs, capevs, nspare, capspare;
	int wake_signaled; // wake_fd written since the loop last emptied the inbox
	cs_areq *ready_head, *ready_tail;
	int news_signaled; // news_fd written (or held) since Go last emptied the ready list
	int news_held;     // ... held: cs_aapp_flush writes it
	// Outboxes by the slot part of their handle (handles.go): handles are
	// reused per slot, with a new generation, so the table stays as small as
	// the most requests in flight at once.
	cs_areq **by_slot;
	size_t nslots;
	cs_areq *free_list;
	int nfree;
	size_t kept_bytes; // buffer capacity held by free_list
};

_Thread_local cs_aapp *cs_loop_app;

// The slot part of a handle (handles.go: tag<<56 | gen<<24 | slot).
#define SLOT_MASK ((uintptr_t)0xFFFFFF)
// Outboxes kept for reuse; beyond this (a burst is over) they are freed.
#define MAX_FREE_AREQS 1024
// An outbox buffer larger than this is freed when its request ends, and the
// buffers kept in all (both of each outbox) stay under KEEP_TOTAL_MAX bytes:
// a burst of large streamed responses must not pin its peak memory.
#define KEEP_BUF_MAX (128 * 1024)
#define KEEP_TOTAL_MAX (16 * 1024 * 1024)

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

static void wake(int fd) {
	uint64_t one = 1;
	// A full counter (EAGAIN) already means "wake up"; nothing else can fail
	// on an eventfd this process owns.
	ssize_t rc = write(fd, &one, sizeof one);
	(void)rc;
}

cs_aapp *caddysnake_aapp_new(int wake_fd, int news_fd) {
	cs_aapp *a = calloc(1, sizeof *a);
	if (a == NULL) {
		return NULL;
	}
	pthread_mutex_init(&a->mu, NULL);
	a->wake_fd = wake_fd;
	a->news_fd = news_fd;
	return a;
}

void caddysnake_aapp_close(cs_aapp *a) {
	pthread_mutex_lock(&a->mu);
	a->closed = 1;
	pthread_mutex_unlock(&a->mu);
}

static void free_events(cs_event *evs, size_t n) {
	for (size_t i = 0; i < n; i++) {
		free((void *)evs[i].data);
	}
}

static void areq_free(cs_areq *r) {
	cs_swapbuf_free(&r->cmds);
	free(r);
}

void caddysnake_aapp_free(cs_aapp *a) {
	free_events(a->evs, a->nevs);
	free_events(a->spare, a->nspare);
	free(a->evs);
	free(a->spare);
	for (size_t i = 0; i < a->nslots; i++) {
		if (a->by_slot[i] != NULL) {
			areq_free(a->by_slot[i]);
		}
	}
	free(a->by_slot);
	while (a->free_list != NULL) {
		cs_areq *r = a->free_list;
		a->free_list = r->next_free;
		areq_free(r);
	}
	pthread_mutex_destroy(&a->mu);
	free(a);
}

// ---------------------------------------------------------------- inbox

// Makes ev a copy of an event in one block, the bytes first and the ends
// after them (freed as ev->data): copied before the inbox is locked, so the
// loop never waits for a memcpy. 0, or -1 if out of memory.
static int make_event(cs_event *ev, int kind, uintptr_t req, const char *data, size_t len, const int32_t *ends,
                      int n, int flag) {
	char *block = NULL;
	size_t at = ALIGN8(len);
	if (len > 0 || n > 0) {
		block = malloc(at + (size_t)n * sizeof(int32_t));
		if (block == NULL) {
			return -1;
		}
		if (len > 0) {
			memcpy(block, data, len);
		}
		if (n > 0) {
			memcpy(block + at, ends, (size_t)n * sizeof(int32_t));
		}
	}
	*ev = (cs_event){
	    .kind = kind,
	    .req = req,
	    .data = block,
	    .len = len,
	    .ends = n > 0 ? (const int32_t *)(block + at) : NULL,
	    .n = n,
	    .flag = flag,
	};
	return 0;
}

// Appends k events to the inbox at once (one drain sees them all), waking
// the loop if the inbox was empty; on failure frees them. 0 or -1.
static int append_events(cs_aapp *a, cs_event *evs, size_t k) {
	pthread_mutex_lock(&a->mu);
	if (a->closed) {
		goto fail;
	}
	if (a->nevs + k > a->capevs) {
		size_t cap = a->capevs < 64 ? 64 : 2 * a->capevs;
		cs_event *grown = realloc(a->evs, cap * sizeof *grown);
		if (grown == NULL) {
			goto fail;
		}
		a->evs = grown;
		a->capevs = cap;
	}
	memcpy(a->evs + a->nevs, evs, k * sizeof *evs);
	a->nevs += k;
	if (!a->wake_signaled) {
		a->wake_signaled = 1;
		wake(a->wake_fd);
	}
	pthread_mutex_unlock(&a->mu);
	return 0;
fail:
	pthread_mutex_unlock(&a->mu);
	free_events(evs, k);
	return -1;
}

int caddysnake_aapp_post(cs_aapp *a, int kind, uintptr_t req, const char *data, size_t len,
                         const int32_t *ends, int n, int flag) {
	cs_event ev;
	if (make_event(&ev, kind, req, data, len, ends, n, flag) < 0) {
		return -1;
	}
	return append_events(a, &ev, 1);
}

int caddysnake_aapp_post_request(cs_aapp *a, int kind, uintptr_t req, const char *strs, size_t len,
                                 const int32_t *ends, int n, char *body, int64_t body_len) {
	cs_event evs[2];
	if (make_event(&evs[0], kind, req, strs, len, ends, n, 0) < 0) {
		free(body);
		return -1;
	}
	if (body_len < 0) {
		free(body);
		return append_events(a, evs, 1);
	}
	// The body event: more_body false, with Go's block as its data.
	evs[1] = (cs_event){.kind = CS_EV_BODY, .req = req, .data = body, .len = (size_t)body_len};
	return append_events(a, evs, 2);
}

size_t cs_aapp_drain(cs_aapp *a, const cs_event **out) {
	// The events handed out last time are done with.
	free_events(a->spare, a->nspare);
	a->nspare = 0;
	pthread_mutex_lock(&a->mu);
	cs_event *evs = a->evs;
	size_t n = a->nevs, cap = a->capevs;
	a->evs = a->spare;
	a->capevs = a->capspare;
	a->nevs = 0;
	a->wake_signaled = 0;
	pthread_mutex_unlock(&a->mu);
	a->spare = evs;
	a->capspare = cap;
	a->nspare = n;
	*out = evs;
	return n;
}

// ---------------------------------------------------------------- outboxes

cs_areq *caddysnake_areq_open(cs_aapp *a, uintptr_t handle) {
	size_t slot = handle & SLOT_MASK;
	pthread_mutex_lock(&a->mu);
	if (slot >= a->nslots) {
		size_t n = a->nslots < 64 ? 64 : a->nslots;
		while (n <= slot) {
			n *= 2;
		}
		cs_areq **t = realloc(a->by_slot, n * sizeof *t);
		if (t == NULL) {
			pthread_mutex_unlock(&a->mu);
			return NULL;
		}
		memset(t + a->nslots, 0, (n - a->nslots) * sizeof *t);
		a->by_slot = t;
		a->nslots = n;
	}
	cs_areq *r = a->free_list;
	if (r != NULL) {
		a->free_list = r->next_free;
		a->nfree--;
		a->kept_bytes -= r->cmds.fill_cap + r->cmds.taken_cap;
	} else if ((r = calloc(1, sizeof *r)) == NULL) {
		pthread_mutex_unlock(&a->mu);
		return NULL;
	}
	r->handle = handle;
	// A slot is free again only once its previous request closed.
	a->by_slot[slot] = r;
	pthread_mutex_unlock(&a->mu);
	return r;
}

// With mu held.
static void unlink_ready(cs_aapp *a, cs_areq *r) {
	if (!r->ready) {
		return;
	}
	r->ready = 0;
	if (r->prev_ready != NULL) {
		r->prev_ready->next_ready = r->next_ready;
	} else {
		a->ready_head = r->next_ready;
	}
	if (r->next_ready != NULL) {
		r->next_ready->prev_ready = r->prev_ready;
	} else {
		a->ready_tail = r->prev_ready;
	}
	r->prev_ready = r->next_ready = NULL;
}

void caddysnake_areq_close(cs_aapp *a, cs_areq *r) {
	size_t slot = r->handle & SLOT_MASK;
	char *drop[2] = {NULL, NULL};
	pthread_mutex_lock(&a->mu);
	if (slot < a->nslots && a->by_slot[slot] == r) {
		a->by_slot[slot] = NULL;
	}
	unlink_ready(a, r);
	r->handle = 0;
	r->cmds.fill_len = r->cmds.taken_len = r->pending = 0;
	if (a->nfree >= MAX_FREE_AREQS) {
		pthread_mutex_unlock(&a->mu);
		areq_free(r);
		return;
	}
	// Kept, its buffers only when they are small and within the budget.
	size_t held = r->cmds.fill_cap + r->cmds.taken_cap;
	if (r->cmds.fill_cap > KEEP_BUF_MAX || r->cmds.taken_cap > KEEP_BUF_MAX ||
	    a->kept_bytes + held > KEEP_TOTAL_MAX) {
		drop[0] = r->cmds.fill;
		drop[1] = r->cmds.taken;
		r->cmds = (cs_swapbuf){0};
		held = 0;
	}
	a->kept_bytes += held;
	r->next_free = a->free_list;
	a->free_list = r;
	a->nfree++;
	pthread_mutex_unlock(&a->mu);
	free(drop[0]);
	free(drop[1]);
}

void caddysnake_areq_take(cs_aapp *a, cs_areq *r, const char **cmds, size_t *len) {
	pthread_mutex_lock(&a->mu);
	unlink_ready(a, r); // everything is taken now: a pending wake-up would be stale
	cs_swapbuf_swap(&r->cmds);
	*cmds = r->cmds.taken;
	*len = r->cmds.taken_len;
	pthread_mutex_unlock(&a->mu);
}

void caddysnake_areq_sent(cs_aapp *a, cs_areq *r, size_t n) {
	pthread_mutex_lock(&a->mu);
	r->pending = n < r->pending ? r->pending - n : 0;
	pthread_mutex_unlock(&a->mu);
}

void cs_aapp_flush(cs_aapp *a) {
	pthread_mutex_lock(&a->mu);
	if (a->news_held) {
		a->news_held = 0;
		if (!a->closed) {
			wake(a->news_fd);
		}
	}
	pthread_mutex_unlock(&a->mu);
}

int caddysnake_aapp_take_ready(cs_aapp *a, uintptr_t *out, int max) {
	int n = 0;
	pthread_mutex_lock(&a->mu);
	while (n < max && a->ready_head != NULL) {
		cs_areq *r = a->ready_head;
		out[n++] = r->handle;
		unlink_ready(a, r);
	}
	if (a->ready_head == NULL) {
		a->news_signaled = 0;
	}
	pthread_mutex_unlock(&a->mu);
	return n;
}

int cs_aapp_command(cs_aapp *a, uintptr_t h, int kind, int arg, int arg2, const cs_str *pairs, size_t npairs,
                    const char *data, size_t len, int hold, int *held) {
	*held = 0;
	size_t size = sizeof(cs_acmd);
	for (size_t i = 0; i < 2 * npairs; i++) {
		size += sizeof(int32_t) + pairs[i].len;
	}
	int copy = 1, notify = 0;
	switch (kind) {
	case CS_CMD_BODY:
		copy = len <= ACOPY_MAX;
		break;
	case CS_CMD_PATHSEND:
	case CS_CMD_TRAILERS:
		notify = 1; // Go reports when the file or the trailers went out
		break;
	}
	if (copy) {
		size += len;
	}
	size = ALIGN8(size);

	size_t slot = h & SLOT_MASK;
	pthread_mutex_lock(&a->mu);
	cs_areq *r = slot < a->nslots ? a->by_slot[slot] : NULL;
	if (r == NULL || r->handle != h) {
		pthread_mutex_unlock(&a->mu);
		return -1;
	}
	char *p = cs_swapbuf_reserve(&r->cmds, size);
	if (p == NULL) {
		pthread_mutex_unlock(&a->mu);
		return -2;
	}
	if (kind == CS_CMD_BODY) {
		if (copy) {
			r->pending += len;
			notify = r->pending > AOUTBOX_LIMIT;
		} else {
			notify = 1;
		}
	}
	cs_acmd *c = (cs_acmd *)p;
	*c = (cs_acmd){.kind = kind, .arg = arg, .arg2 = arg2, .nhdrs = (int32_t)npairs, .notify = notify,
	               .len = (int64_t)len, .ext = copy ? NULL : data};
	char *q = p + sizeof *c;
	for (size_t i = 0; i < 2 * npairs; i++) {
		int32_t l = (int32_t)pairs[i].len;
		memcpy(q, &l, sizeof l);
		memcpy(q + sizeof l, pairs[i].data, pairs[i].len);
		q += sizeof l + pairs[i].len;
	}
	if (copy && len > 0) {
		memcpy(q, data, len);
	}
	r->cmds.fill_len += size;
	if (!r->ready) {
		r->ready = 1;
		r->prev_ready = a->ready_tail;
		r->next_ready = NULL;
		if (a->ready_tail != NULL) {
			a->ready_tail->next_ready = r;
		} else {
			a->ready_head = r;
		}
		a->ready_tail = r;
		if (!a->news_signaled && !a->closed) {
			a->news_signaled = 1;
			if (hold) {
				a->news_held = *held = 1;
			} else {
				wake(a->news_fd);
			}
		}
	}
	pthread_mutex_unlock(&a->mu);
	return notify ? 0 : 1;
}
