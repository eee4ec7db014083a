/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lossless delta codec for tensor chunks: encodes a fine-tuned chunk against the base chunk it
 * derives from. The encoded format is described at the top of lossless_model.h.
 */
#ifndef SPARSE_CODEC_LOSSLESS_H
#define SPARSE_CODEC_LOSSLESS_H

#include <stddef.h>
#include "sparse/format.h"

/* Per-thread state: entropy tables and scratch buffers. Not thread-safe. */
struct sp_lossless;

/* NULL on ENOMEM. */
struct sp_lossless *sp_lossless_new(void);
void sp_lossless_free(struct sp_lossless *);

/* Maximum encoded size of n input bytes. */
size_t sp_lossless_bound(size_t n);

/*
 * Encodes ft[0..n) against base[0..n), both holding elements of dtype (n a multiple of the
 * element size; SP_DT_BYTES and unknown types are width 1). level 1..19 (zstd-like effort;
 * 0 = default). Returns the encoded length (>0), or 0 on error (including cap too small).
 */
size_t sp_lossless_encode(struct sp_lossless *, enum sp_dtype, const void *base, const void *ft,
			  size_t n, void *dst, size_t cap, int level);

/*
 * Decodes src[0..srclen) into out[0..n) using base[0..n). Returns 0, or -1 when src is
 * malformed; never reads or writes out of bounds, whatever src holds.
 */
int sp_lossless_decode(struct sp_lossless *, enum sp_dtype, const void *base, const void *src,
		       size_t srclen, void *out, size_t n);

/*
 * For the tests and benchmarks: limits the decoder to the scalar reference decoder (level 0),
 * the AVX2 decoder (1) or the AVX-512 one (2), where the CPU has it. Returns the level decoding
 * will use, the highest the CPU has up to the one asked for.
 */
int sp_lossless_set_simd(struct sp_lossless *, int level);

#endif
