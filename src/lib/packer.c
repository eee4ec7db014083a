/* SPDX-License-Identifier: Apache-2.0 */
#include "packer.h"

#include <stdlib.h>
#include <string.h>

/* Closed packs wait in memory until the sink has encoded them: at most this much of them per
 * packer (a plan has two at most: 64 MiB in all, as when it had one). */
#define HELD_MAX (32u << 20)

struct sp_packer {
	struct sp_sink *sink;
	const ZSTD_CDict *history;
	int level;
	uint32_t max;
	const char *label;
	struct sp_err *err;
	uint8_t *open; /* the open pack's bytes (max), or NULL */
	uint32_t len, slot;
	uint8_t **held; /* closed packs queued in the sink */
	size_t nheld;
};

struct sp_packer *sp_packer_new(struct sp_sink *sink, const ZSTD_CDict *history, int level,
				uint32_t max, const char *label, struct sp_err *err)
{
	struct sp_packer *p = calloc(1, sizeof(*p));
	if (!p || !(p->held = calloc(HELD_MAX / max + 1, sizeof(*p->held)))) {
		free(p);
		sp_err_set(err, "%s: out of memory", label);
		return NULL;
	}
	*p = (struct sp_packer){.sink = sink, .history = history, .level = level, .max = max,
				.label = label, .err = err, .held = p->held};
	return p;
}

static void drop_held(struct sp_packer *p)
{
	for (size_t i = 0; i < p->nheld; i++)
		free(p->held[i]);
	p->nheld = 0;
}

void sp_packer_free(struct sp_packer *p)
{
	if (!p)
		return;
	drop_held(p);
	free(p->held);
	free(p->open);
	free(p);
}

static int open_pack(struct sp_packer *p)
{
	if (!(p->open = malloc(p->max)) ||
	    (p->slot = sp_sink_reserve_aux(p->sink)) == UINT32_MAX) {
		sp_err_set(p->err, "%s: out of memory for a pack", p->label);
		return -1;
	}
	p->len = 0;
	return 0;
}

int sp_packer_close(struct sp_packer *p)
{
	if (!p->open)
		return 0;
	struct encode_job j = {
		.c = {.out_len = p->len, .base_file = SP_NO_BASE},
		.ft = p->open,
		.level = p->level,
		.history = p->history,
		.pack = 1,
		.slot = p->slot,
	};
	/* The sink reads the pack when it encodes the queue: hold it until then. */
	if (p->nheld == HELD_MAX / p->max) {
		if (sp_sink_flush(p->sink))
			return -1;
		drop_held(p);
	}
	p->held[p->nheld++] = p->open;
	p->open = NULL;
	return sp_sink_queue(p->sink, &j);
}

int sp_packer_add(struct sp_packer *p, const uint8_t *bytes, uint32_t n)
{
	if (p->open && p->len + n > p->max && sp_packer_close(p))
		return -1;
	if (!p->open && open_pack(p))
		return -1;
	memcpy(p->open + p->len, bytes, n);
	struct encode_job j = {
		.c = {.out_len = n, .base_file = p->slot, .base_off = p->len},
		.ft = p->open + p->len,
		.slice = 1,
	};
	p->len += n;
	return sp_sink_queue(p->sink, &j);
}
