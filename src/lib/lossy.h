/* SPDX-License-Identifier: Apache-2.0 */
/* Lossy coding of one tensor: which tensors qualify, the delta and its factors, and the error
 * statistics of the quality report. The chunk format is codec_lossy.h's. */
#ifndef SP_LOSSY_H
#define SP_LOSSY_H

#include "codec_lossy.h"
#include "safetensors.h"
#include "sparse/sparse.h"

#define SP_LOSSY_DEFAULT_GROUP 128
/* 1-D tensors and matrices thinner than this stay lossless: too small to be worth an error. */
#define SP_LOSSY_MIN_DIM 16

/* How a tensor is coded under the options: lossless, or lossy with a rank (0: no low-rank
 * part) and bits (0: no quantized residual). Lossy with neither keeps just the base. */
struct sp_lossy_choice {
	int lossy;
	uint32_t rank;
	int bits;
	int row_groups; /* its quantization groups tile its rows (sp_lossy_row_group) */
};

int sp_lossy_is_embedding(const char *name);

/* Row groups: rows shorter than this share a group, whole; longer ones are split no finer. */
#define SP_LOSSY_ROW_GROUP_MIN 256

/* The group that tiles rows of cols elements: the row, as many whole rows as fit in
 * SP_LOSSY_ROW_GROUP_MIN elements, or the largest equal part of a row of at most max (and at
 * least SP_LOSSY_ROW_GROUP_MIN) elements; max itself when there is none (the groups then cut
 * across rows). */
uint32_t sp_lossy_row_group(uint64_t cols, uint32_t max);

/* How t (whose first overlap_rows rows have counterparts in base b) is coded under o. */
struct sp_lossy_choice sp_lossy_choose(const struct sp_write_opts *o, const struct sp_tensor *t,
				       const struct sp_tensor *b, uint64_t overlap_rows);

/* A tensor ready to encode: the delta and its factors, owned here. */
struct sp_lossy_prep {
	struct sp_lossy_tensor t;
	float *d, *a, *b;
};

/* A tensor's low-rank factors as sp_lossy_prepare computed them (rounded), kept so that the
 * next run of a size budget, whose dry runs differ only in the step, need not factor again. */
struct sp_lossy_factors {
	int done;
	uint32_t rank;
	float *a, *b;
	float a_scale, b_scale;
};
void sp_lossy_factors_free(struct sp_lossy_factors *f);

/* Computes the delta of rows x cols elements (ft of dtype dt, base of dtype bdt) and, for a
 * choice with a rank, its truncated SVD (with energy > 0, the smallest rank up to c->rank that
 * keeps that fraction of the squared norm). Returns 0, -1 on failure, or 1 when the delta is
 * not finite (NaNs, infinities, overflow): such a tensor is better kept lossless. With keep,
 * the factors come from it once done, and go to it the first time. */
int sp_lossy_prepare(const uint8_t *ft, enum sp_dtype dt, const uint8_t *base, enum sp_dtype bdt,
		     uint64_t rows, uint64_t cols, struct sp_lossy_choice c,
		     const struct sp_write_opts *o, struct sp_lossy_factors *keep,
		     struct sp_lossy_prep *p);
void sp_lossy_prep_free(struct sp_lossy_prep *p);

/* Sums of squares for the quality report: the delta's error and norm, the weight's. */
struct sp_lossy_stats {
	double err_d, norm_d, err_w, norm_w;
};

/* Adds to st what n elements decode to: delta (what the decoder adds to the base), against the
 * fine-tune's ft and the base's base. */
void sp_lossy_measure(const float *d, const float *delta, const uint8_t *ft, enum sp_dtype dt,
		      const uint8_t *base, enum sp_dtype bdt, size_t n, struct sp_lossy_stats *st);

/* The norms of n elements coded losslessly (base NULL: no base), whose errors are zero but
 * count in the totals. Nothing for dtypes that are not floats. */
void sp_lossy_measure_exact(const uint8_t *ft, enum sp_dtype dt, const uint8_t *base,
			    enum sp_dtype bdt, uint64_t n, struct sp_lossy_stats *st);

#endif
