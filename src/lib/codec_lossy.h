/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lossy chunk codec: a chunk of a tensor's elements is the base plus a low-rank part A.B
 * (A's rows for this chunk stored in the chunk, B shared by the tensor's chunks in an auxiliary
 * chunk) plus a group-wise quantized residual, computed in f32 and rounded to the tensor's
 * dtype. Layout in sparse-format(5) and at the top of codec_lossy.c.
 */
#ifndef SP_CODEC_LOSSY_H
#define SP_CODEC_LOSSY_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "sparse/util.h"
#include "sparse/format.h"

#define SP_LOSSY_MAX_RANK 4096


/* A tensor as the encoder sees it: the delta d = ft - base (rows x cols, f32) and the parts
 * chosen to approximate it. */
struct sp_lossy_tensor {
	uint64_t rows, cols;
	const float *d;
	uint32_t rank;       /* 0: no low-rank part */
	int f32_factors;     /* factors stored as f32 (adapters: exact), else f16 */
	const float *a, *b;  /* rows x rank and rank x cols, as the decoder will see them */
	float a_scale, b_scale; /* what the stored f16 factors are multiplied by */
	uint32_t aux;        /* ordinal of the auxiliary chunk holding b */
	int bits;            /* 0: no quantized residual; else 2..8 */
	uint32_t group;      /* elements per quantization group */
	float step;          /* > 0: a group's scale is step times its RMS, codes clamped to the
			      * bits' range (entropy coding pays for the codes used); 0: its
			      * largest value maps to the largest code */
};

/* The buffers a thread's lossy chunks reuse: decoding them fresh for every chunk would cost
 * page faults. zeros stays all zero (the codes are coded against it). */
struct sp_lossy_scratch {
	struct sp_scratch work, codes, zeros, gemm;
};
void sp_lossy_scratch_free(struct sp_lossy_scratch *s);

/* Rounds a factor in place to what its stored form holds (f16 times a scale, or f32);
 * returns the scale. */
float sp_lossy_round_factor(float *x, size_t n, int f32_factors);
/* The stored form of a rounded factor: n values divided by scale, as f16 or f32. Returns the
 * bytes written to out (2n or 4n). */
size_t sp_lossy_factor_bytes(const float *x, size_t n, float scale, int f32_factors, uint8_t *out);

/* Encodes elements [e0, e0 + n) of t into dst (cap bytes); delta_out (n floats) receives the
 * delta the decoder will add. ll codes the quantized residual. Returns the encoded length, 0
 * on error. */
struct sp_lossless;

size_t sp_lossy_encode(ZSTD_CCtx *cctx, struct sp_lossless *ll, const struct sp_lossy_tensor *t,
		       uint64_t e0, size_t n,
		       uint8_t *dst, size_t cap, int level, float *delta_out,
		       struct sp_lossy_scratch *scratch);
size_t sp_lossy_bound(size_t n, uint32_t rank, uint64_t cols);

/* What a LOSSY chunk's out_hash covers: its data, then its base bytes. */
uint64_t sp_lossy_inputs_hash(const uint8_t *data, size_t len, const uint8_t *base, size_t blen);

/* The ordinal of the auxiliary chunk a chunk's data needs, or -1 if none (or malformed). */
long sp_lossy_aux(const uint8_t *data, size_t len);


/* Decodes n output elements of dtype dt from data, the base (elements of base_dt) and the
 * auxiliary chunk's bytes (NULL without a low-rank part). Returns 0, or -1 when malformed. */
int sp_lossy_decode(ZSTD_DCtx *dctx, struct sp_lossless *ll, const uint8_t *data, size_t len,
		    const uint8_t *aux,
		    size_t aux_len, const uint8_t *base, enum sp_dtype base_dt, enum sp_dtype dt,
		    void *out, size_t n, struct sp_lossy_scratch *scratch);

#endif
