// wsgi_out.c: the whole-response buffer (contracts in wsgi_out.h).
#include "wsgi_out.h"

#include <stdlib.h>

cs_out *caddysnake_out_new(size_t cap, int ends_cap) {
	cs_out *out = calloc(1, sizeof *out);
	if (out == NULL) {
		return NULL;
	}
	out->cap = cap;
	out->ends_cap = ends_cap;
	return out;
}

int cs_out_reserve(cs_out *out, size_t need) {
	if (out->ends == NULL && (out->ends = malloc(sizeof(int32_t) * (size_t)out->ends_cap)) == NULL) {
		return -1;
	}
	if (out->buf == NULL || need > out->have) {
		size_t have = out->have ? out->have : 1024;
		while (have < need) {
			have *= 2;
		}
		if (have > out->cap) {
			have = out->cap;
		}
		char *b = realloc(out->buf, have);
		if (b == NULL) {
			return -1;
		}
		out->buf = b;
		out->have = have;
	}
	return 0;
}

void caddysnake_out_free(cs_out *out) {
	if (out != NULL) {
		free(out->buf);
		free(out->ends);
		free(out);
	}
}
