/* SPDX-License-Identifier: Apache-2.0 */
#include "history_pick.h"

#include <stdlib.h>
#include <string.h>

#include "codec_history.h"

struct ranked {
	uint32_t file;
	double score;
};

static int by_score(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->file < y->file ? -1 : x->file > y->file;
}

static int plain(const struct sp_mfile *f)
{
	return f->size && !f->link && !f->is_st;
}

/* The plain base files, scored by likeness to want when they do not all fit. */
static struct ranked *candidates(struct sp_inputs *in, const struct sp_sketch *want, size_t *n,
				 struct sp_err *err)
{
	struct ranked *r = malloc((in->base.nfiles + 1) * sizeof(*r));
	uint64_t total = 0;
	*n = 0;
	if (!r) {
		sp_err_set(err, "%s: out of memory", in->base.dir);
		return NULL;
	}
	for (uint32_t i = 0; i < in->base.nfiles; i++)
		if (plain(&in->base.files[i])) {
			r[(*n)++] = (struct ranked){.file = i};
			total += in->base.files[i].size;
		}
	for (size_t k = 0; total > SP_HISTORY_MAX && k < *n; k++) {
		const struct sp_sketch *s = sp_inputs_sketch(in, r[k].file, err);
		if (!s) {
			free(r);
			return NULL;
		}
		r[k].score = sp_sketch_similarity(want, s);
	}
	if (total > SP_HISTORY_MAX)
		qsort(r, *n, sizeof(*r), by_score);
	return r;
}

/* Takes the candidates in order while they fit (the last one cut to fit), then reverses them
 * when ranked, so that the likest comes last. */
static int choose(struct sp_history_pick *h, const struct ranked *r, size_t n,
		  const struct sp_model *base, struct sp_err *err)
{
	uint64_t room = SP_HISTORY_MAX;
	if (!(h->seg = malloc((n + 1) * sizeof(*h->seg)))) {
		sp_err_set(err, "%s: out of memory", base->dir);
		return -1;
	}
	for (size_t k = 0; k < n && room; k++) {
		uint64_t len = base->files[r[k].file].size < room ? base->files[r[k].file].size : room;
		h->seg[h->nseg++] = (struct sp_history_seg){.file = r[k].file, .off = 0, .len = len};
		room -= len;
		h->len += len;
	}
	for (size_t k = 0; n && r[0].score > 0 && k < h->nseg / 2; k++) {
		struct sp_history_seg t = h->seg[k];
		h->seg[k] = h->seg[h->nseg - 1 - k];
		h->seg[h->nseg - 1 - k] = t;
	}
	return 0;
}

static int join(struct sp_history_pick *h, struct sp_inputs *in, int level, struct sp_err *err)
{
	uint64_t at = 0;
	if (!(h->bytes = malloc(h->len + 1))) {
		sp_err_set(err, "%s: out of memory for the history", in->base.dir);
		return -1;
	}
	for (size_t k = 0; k < h->nseg; k++) {
		if (sp_model_map(&in->base, h->seg[k].file, err))
			return -1;
		memcpy(h->bytes + at, in->base.files[h->seg[k].file].map, h->seg[k].len);
		at += h->seg[k].len;
	}
	if (!(h->dict = sp_history_cdict(h->bytes, h->len, level))) {
		sp_err_set(err, "%s: out of memory for the history", in->base.dir);
		return -1;
	}
	return 0;
}

int sp_history_pick(struct sp_inputs *in, const struct sp_sketch *want, int level,
		    struct sp_history_pick *h, struct sp_err *err)
{
	size_t n;
	memset(h, 0, sizeof(*h));
	struct ranked *r = candidates(in, want, &n, err);
	int rc = !r || choose(h, r, n, &in->base, err) || (h->nseg && join(h, in, level, err));
	free(r);
	if (rc)
		sp_history_pick_free(h);
	return rc ? -1 : 0;
}

void sp_history_pick_free(struct sp_history_pick *h)
{
	ZSTD_freeCDict(h->dict);
	free(h->bytes);
	free(h->seg);
	memset(h, 0, sizeof(*h));
}
