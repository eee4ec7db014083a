/* SPDX-License-Identifier: Apache-2.0 */
#include "lossy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "lowrank.h"

int sp_lossy_is_embedding(const char *name)
{
	return strstr(name, "embed") || strstr(name, "wte") || strstr(name, "wpe") ||
	       strstr(name, "lm_head");
}

struct sp_lossy_choice sp_lossy_choose(const struct sp_write_opts *o, const struct sp_tensor *t,
				       const struct sp_tensor *b, uint64_t overlap_rows)
{
	struct sp_lossy_choice none = {0}, c = {1, o->rank, o->mode == SP_MODE_QUANT ? o->bits : 0,
					       o->row_groups && sp_lossy_is_embedding(t->name)};
	uint64_t cols = t->ndim >= 2 && t->shape[0] ? t->nelem / t->shape[0] : 0;
	if (o->mode == SP_MODE_LOSSLESS || !b || !sp_dtype_is_float(t->dtype) ||
	    !sp_dtype_is_float(b->dtype) || t->ndim < 2 || overlap_rows < SP_LOSSY_MIN_DIM ||
	    cols < SP_LOSSY_MIN_DIM)
		return none;
	/* A low rank wrecks embeddings (every row is its own token): quantize or keep them. */
	if (sp_lossy_is_embedding(t->name) && !o->lowrank_embeddings) {
		if (o->mode == SP_MODE_SVD)
			return none;
		c.rank = 0;
	}
	if (c.rank > overlap_rows)
		c.rank = (uint32_t)overlap_rows;
	if (c.rank > cols)
		c.rank = (uint32_t)cols;
	if (c.rank > SP_LOSSY_MAX_RANK)
		c.rank = SP_LOSSY_MAX_RANK;
	/* B (rank x cols, f16) is one auxiliary chunk. */
	if ((uint64_t)c.rank * cols * 2 > SP_CHUNK_MAX)
		c.rank = (uint32_t)(SP_CHUNK_MAX / (cols * 2));
	return c;
}

uint32_t sp_lossy_row_group(uint64_t cols, uint32_t max)
{
	if (cols < SP_LOSSY_ROW_GROUP_MIN)
		return (uint32_t)(SP_LOSSY_ROW_GROUP_MIN / cols * cols);
	if (cols <= max)
		return (uint32_t)cols;
	for (uint64_t k = (cols + max - 1) / max; cols / k >= SP_LOSSY_ROW_GROUP_MIN; k++)
		if (cols % k == 0)
			return (uint32_t)(cols / k);
	return max;
}

/* The rank to keep of the k computed: with energy, the smallest keeping that fraction of the
 * squared norm; with auto, none unless that rank is small (the delta is truly low rank, as a
 * merged LoRA is), for a full-rank delta's bytes are better spent on its residual. */
static size_t kept_rank(const struct sp_lossy_prep *p, const float *s, size_t k, double energy,
			int autorank)
{
	uint64_t m = p->t.rows, n = p->t.cols;
	double total = 0;
	for (uint64_t i = 0; i < m * n; i++)
		total += (double)p->d[i] * p->d[i];
	size_t r = sp_lowrank_energy_rank(s, k, total, energy);
	if (autorank && (r == k || r > (m < n ? m : n) / 8))
		return 0;
	return r;
}

static int factorize(struct sp_lossy_prep *p, uint32_t rank, double energy, int autorank)
{
	uint64_t m = p->t.rows, n = p->t.cols;
	float *s = malloc(rank * sizeof(float));
	p->a = malloc(m * rank * sizeof(float));
	p->b = malloc((size_t)rank * n * sizeof(float));
	long k = s && p->a && p->b ? sp_lowrank(p->d, m, n, rank, p->a, p->b, s) : -1;
	if (k > 0 && energy > 0) {
		size_t r = kept_rank(p, s, (size_t)k, energy, autorank);
		/* a is m x k row-major: keep its first r columns. */
		for (uint64_t i = 0; i < m; i++)
			memmove(p->a + i * r, p->a + i * (uint64_t)k, r * sizeof(float));
		k = (long)r;
	}
	free(s);
	if (k < 0)
		return -1;
	p->t.rank = (uint32_t)k;
	p->t.a_scale = sp_lossy_round_factor(p->a, m * (uint64_t)k, 0);
	p->t.b_scale = sp_lossy_round_factor(p->b, (uint64_t)k * n, 0);
	return 0;
}

static float *copy_floats(const float *v, uint64_t n)
{
	float *c = malloc(n * sizeof(float) + 1);
	return c ? memcpy(c, v, n * sizeof(float)) : NULL;
}

/* The factors (and the rank kept) that an earlier run computed of this same delta. */
static int reuse(struct sp_lossy_prep *p, const struct sp_lossy_factors *f)
{
	p->a = copy_floats(f->a, p->t.rows * f->rank);
	p->b = copy_floats(f->b, (uint64_t)f->rank * p->t.cols);
	p->t.rank = f->rank;
	p->t.a_scale = f->a_scale;
	p->t.b_scale = f->b_scale;
	return p->a && p->b ? 0 : -1;
}

static int remember(const struct sp_lossy_prep *p, struct sp_lossy_factors *f)
{
	f->a = copy_floats(p->a, p->t.rows * p->t.rank);
	f->b = copy_floats(p->b, (uint64_t)p->t.rank * p->t.cols);
	f->rank = p->t.rank;
	f->a_scale = p->t.a_scale;
	f->b_scale = p->t.b_scale;
	f->done = f->a && f->b;
	return f->done ? 0 : -1;
}

static int get_factors(struct sp_lossy_prep *p, uint32_t rank, const struct sp_write_opts *o,
		       struct sp_lossy_factors *keep)
{
	if (keep && keep->done)
		return reuse(p, keep);
	if (factorize(p, rank, o->energy, o->auto_rank))
		return -1;
	return keep ? remember(p, keep) : 0;
}

void sp_lossy_factors_free(struct sp_lossy_factors *f)
{
	free(f->a);
	free(f->b);
	memset(f, 0, sizeof(*f));
}

int sp_lossy_prepare(const uint8_t *ft, enum sp_dtype dt, const uint8_t *base, enum sp_dtype bdt,
		     uint64_t rows, uint64_t cols, struct sp_lossy_choice c,
		     const struct sp_write_opts *o, struct sp_lossy_factors *keep,
		     struct sp_lossy_prep *p)
{
	uint64_t n = rows * cols;
	memset(p, 0, sizeof(*p));
	p->d = malloc(n * sizeof(float));
	float *bf = malloc(n * sizeof(float));
	if (!p->d || !bf) {
		free(bf);
		return -1;
	}
	sp_dtype_to_f32(dt, ft, p->d, n);
	sp_dtype_to_f32(bdt, base, bf, n);
	int finite = 1;
	for (uint64_t i = 0; i < n; i++) {
		p->d[i] -= bf[i];
		finite &= isfinite(p->d[i]);
	}
	free(bf);
	if (!finite)
		return 1;
	uint32_t group = o->group ? o->group : SP_LOSSY_DEFAULT_GROUP;
	p->t = (struct sp_lossy_tensor){.rows = rows, .cols = cols, .d = p->d, .bits = c.bits,
					.group = c.row_groups ? sp_lossy_row_group(cols, group) : group,
					.step = (float)o->step, .a_scale = 1, .b_scale = 1};
	if (c.rank && get_factors(p, c.rank, o, keep))
		return -1;
	p->t.a = p->a;
	p->t.b = p->b;
	return 0;
}

void sp_lossy_prep_free(struct sp_lossy_prep *p)
{
	free(p->d);
	free(p->a);
	free(p->b);
	memset(p, 0, sizeof(*p));
}

void sp_lossy_measure(const float *d, const float *delta, const uint8_t *ft, enum sp_dtype dt,
		      const uint8_t *base, enum sp_dtype bdt, size_t n, struct sp_lossy_stats *st)
{
	float *w = malloc(3 * n * sizeof(float) + 1), *b = w + n, *out = w + 2 * n;
	if (!w)
		return;
	sp_dtype_to_f32(dt, ft, w, n);
	sp_dtype_to_f32(bdt, base, b, n);
	for (size_t i = 0; i < n; i++)
		out[i] = b[i] + delta[i];
	/* What the reader gets: rounded to the tensor's dtype. */
	sp_dtype_from_f32(dt, out, b, n);
	sp_dtype_to_f32(dt, b, out, n);
	for (size_t i = 0; i < n; i++) {
		double e = (double)d[i] - delta[i], ew = (double)w[i] - out[i];
		st->err_d += e * e;
		st->norm_d += (double)d[i] * d[i];
		st->err_w += ew * ew;
		st->norm_w += (double)w[i] * w[i];
	}
	free(w);
}

void sp_lossy_measure_exact(const uint8_t *ft, enum sp_dtype dt, const uint8_t *base,
			    enum sp_dtype bdt, uint64_t n, struct sp_lossy_stats *st)
{
	float *w = malloc(2 * n * sizeof(float) + 1), *b = w + n;
	if (!w || !sp_dtype_is_float(dt) || (base && !sp_dtype_is_float(bdt))) {
		free(w);
		return;
	}
	sp_dtype_to_f32(dt, ft, w, n);
	if (base)
		sp_dtype_to_f32(bdt, base, b, n);
	for (uint64_t i = 0; i < n; i++) {
		double d = (double)w[i] - (base ? b[i] : 0);
		st->norm_d += d * d;
		st->norm_w += (double)w[i] * w[i];
	}
	free(w);
}
