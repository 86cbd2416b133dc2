// wsgi_frames.c: a job's response frames, the outbox a worker appends the
// app's writes to and Go takes and sends (contracts in wsgi_lanes.h).
#include "wsgi_lanes_internal.h"

#include <string.h>

int cs_job_drain(cs_job *j) {
	int gone;
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&j->lane->mu);
	cs_lane_flush_held(j->lane);
	pthread_mutex_unlock(&j->lane->mu);
	pthread_mutex_lock(&j->mu);
	while (j->pending > 0 && !j->gone) {
		pthread_cond_wait(&j->drained, &j->mu);
	}
	gone = j->gone;
	pthread_mutex_unlock(&j->mu);
	Py_END_ALLOW_THREADS
	return gone ? -1 : 0;
}

void caddysnake_job_take(cs_job *j, cs_take *t) {
	pthread_mutex_lock(&j->mu);
	// The worker goes on appending to the other buffer.
	cs_swapbuf_swap(&j->frames);
	t->frames = j->frames.taken;
	t->len = j->frames.taken_len;
	t->finished = j->finished;
	t->rc = j->rc;
	pthread_mutex_unlock(&j->mu);
}

void caddysnake_job_sent(cs_job *j, int gone) {
	pthread_mutex_lock(&j->mu);
	j->pending -= j->frames.taken_len;
	j->frames.taken_len = 0;
	if (gone) {
		j->gone = 1;
	}
	pthread_cond_broadcast(&j->drained);
	pthread_mutex_unlock(&j->mu);
}

static int put_bytes(cs_job *j, const void *p, size_t n) {
	char *at = cs_swapbuf_reserve(&j->frames, n);
	if (at == NULL) {
		return -1;
	}
	memcpy(at, p, n);
	j->frames.fill_len += n;
	return 0;
}

int cs_job_write(cs_job *j, int status, const cs_str *pairs, size_t npairs, const char *data, size_t len,
                 int flush) {
	pthread_mutex_lock(&j->mu);
	if (j->gone) {
		pthread_mutex_unlock(&j->mu);
		return CS_WRITE_CLIENT_GONE;
	}
	size_t before = j->frames.fill_len;
	cs_frame f = {status, flush, status ? (int32_t)npairs : 0, (int32_t)len};
	int bad = put_bytes(j, &f, sizeof f);
	for (size_t i = 0; !bad && i < 2 * (size_t)f.nhdrs; i++) {
		int32_t n = (int32_t)pairs[i].len;
		bad = put_bytes(j, &n, sizeof n) || put_bytes(j, pairs[i].data, pairs[i].len);
	}
	if (!bad) {
		bad = put_bytes(j, data, len);
	}
	if (bad) {
		j->frames.fill_len = before;
		pthread_mutex_unlock(&j->mu);
		return CS_WRITE_NO_MEMORY;
	}
	j->pending += j->frames.fill_len - before;
	int wait = j->pending > OUTBOX_LIMIT;
	pthread_mutex_unlock(&j->mu);
	cs_lane_job_notify(j->lane, j);
	int gone = 0;
	if (wait) {
		Py_BEGIN_ALLOW_THREADS
		pthread_mutex_lock(&j->lane->mu);
		cs_lane_flush_held(j->lane); // Go must see this job's frames to drain them
		pthread_mutex_unlock(&j->lane->mu);
		pthread_mutex_lock(&j->mu);
		while (j->pending > OUTBOX_LIMIT && !j->gone) {
			pthread_cond_wait(&j->drained, &j->mu);
		}
		gone = j->gone;
		pthread_mutex_unlock(&j->mu);
		Py_END_ALLOW_THREADS
	}
	return gone ? CS_WRITE_CLIENT_GONE : 0; // else a later write reports it
}
