// asgi_queues.h: the two queues between Go and an ASGI app's event loop
// (asgi_queues.c). Go posts events (a new request, a body chunk, a
// completion) into the app's inbox and the loop drains them; the loop
// appends commands (start, body, finish...) to each HTTP request's outbox
// and Go takes them. Neither side calls the other: each wakes the other
// through an eventfd, once per batch. See asgi_queues.c for why.
#ifndef CADDYSNAKE_ASGI_QUEUES_H
#define CADDYSNAKE_ASGI_QUEUES_H

#include "caddysnake.h"
#include "swapbuf.h"

typedef struct cs_aapp cs_aapp;
typedef struct cs_areq cs_areq;

// An event Go hands to the ASGI loop (codes.h lists the kinds), in C memory
// the inbox owns until the next drain; Python copies what it keeps.
typedef struct {
	int kind; // CS_EV_*
	uintptr_t req;
	const char *data;
	size_t len;
	const int32_t *ends; // for a new request: string end offsets in data
	int n;               // their count
	int flag;            // more_body for a body chunk, ok for a completion
} cs_event;

// One command in an outbox, followed by 2*nhdrs strings (an int32 length,
// then the bytes) and, unless ext is set, len bytes of data; the next one
// starts at the following multiple of 8. Native byte order.
typedef struct {
	int32_t kind;     // CS_CMD_* (codes.h)
	int32_t arg;      // start: status; body, trailers: more; finish: code
	int32_t arg2;     // start: trailers follow the body
	int32_t nhdrs;    // header pairs
	int32_t notify;   // Go answers with a completion event (CS_EV_SENT) once done
	int32_t reserved;
	int64_t len;      // bytes of data (a body, a path)
	const char *ext; // data left in Python's bytes (a large body), which
	                 // caddysnake.asgi keeps alive until the completion event
} cs_acmd;

// A body up to this size is copied into the outbox, and its send() is over
// at once; a larger one is written by Go straight from Python's bytes.
#define ACOPY_MAX (256 * 1024)
// How far copied bodies may run ahead of the client: past it, send()
// waits for Go to catch up (a completion event).
#define AOUTBOX_LIMIT (256 * 1024)

// An app's queues. Go writes wake_fd (an eventfd the loop watches) when the
// inbox gets events and had none; the loop writes news_fd (an eventfd Go's
// netpoller watches) when requests get commands and none had news.
cs_aapp *caddysnake_aapp_new(int wake_fd, int news_fd);
// The loop is gone: posts are dropped and neither fd is written any more.
void caddysnake_aapp_close(cs_aapp *a);
// After close, once no Go call on a or its requests can still come.
void caddysnake_aapp_free(cs_aapp *a);

// Copies an event (codes.h lists the kinds) into the inbox: for a new
// request, data holds n strings back to back and ends their end offsets.
// 0, or -1 after close or if out of memory (the event is lost).
int caddysnake_aapp_post(cs_aapp *a, int kind, uintptr_t req, const char *data, size_t len,
                         const int32_t *ends, int n, int flag);
// Posts a new request (CS_EV_REQUEST) or WebSocket (CS_EV_WS_CONNECT) with its n scope
// strings; with body_len >= 0 also its whole body, as a body event in the
// same drain: body is a malloc'd block the call takes over (not copied; it
// is freed with the event, or at once if the post fails). 0 or -1, as
// caddysnake_aapp_post.
int caddysnake_aapp_post_request(cs_aapp *a, int kind, uintptr_t req, const char *strs, size_t len,
                                 const int32_t *ends, int n, char *body, int64_t body_len);
// Moves the handles of up to max requests with new commands into out.
int caddysnake_aapp_take_ready(cs_aapp *a, uintptr_t *out, int max);

// An outbox for the HTTP request handle (asgi.go's handle for it), which
// the loop's calls for that handle then fill; NULL if out of memory.
cs_areq *caddysnake_areq_open(cs_aapp *a, uintptr_t handle);
// The request is over: its handle no longer has an outbox here.
void caddysnake_areq_close(cs_aapp *a, cs_areq *r);
// Takes the commands appended since the last take. They stay valid until
// the next take; body bytes Go copied out of them are reported with
// caddysnake_areq_sent.
void caddysnake_areq_take(cs_aapp *a, cs_areq *r, const char **cmds, size_t *len);
void caddysnake_areq_sent(cs_aapp *a, cs_areq *r, size_t n);

// For asgi_bridge.c, on the loop's thread with the GIL held.

// The app whose loop runs on this thread, or NULL.
extern _Thread_local cs_aapp *cs_loop_app;
// Appends a command for request h; for a body (data, len) decides whether
// it is copied. 1: done, no completion event follows (a copied body, or a
// command that has none); 0: a completion event follows (notify); -1: h has
// no outbox here (a WebSocket, an unknown or finished request: the caller
// goes to Go instead); -2: out of memory. With hold, news for Go is held
// back: *held says the caller must see to a cs_aapp_flush later.
int cs_aapp_command(cs_aapp *a, uintptr_t h, int kind, int arg, int arg2, const cs_str *pairs, size_t npairs,
                    const char *data, size_t len, int hold, int *held);
// Lets Go know of news held back by cs_aapp_command.
void cs_aapp_flush(cs_aapp *a);
// Takes every queued event: *evs (n of them) stays valid until the next
// call, which frees it.
size_t cs_aapp_drain(cs_aapp *a, const cs_event **evs);

#endif
