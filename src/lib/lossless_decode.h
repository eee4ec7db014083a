/* SPDX-License-Identifier: Apache-2.0 */
/* What the lossless codec's decoders of MODE_RANS share: the portable one in lossless_decode.c
 * and the x86 vector ones in lossless_decode_x86.c. */
#ifndef SPARSE_LOSSLESS_DECODE_H
#define SPARSE_LOSSLESS_DECODE_H

#include <stddef.h>

#include "lossless_model.h"

#define PAD (8 * NSTATES + 16) /* readable zero bytes after each stream in the decoder */

/* Where the decoder stands in the streams of a MODE_RANS chunk. */
struct rans_stream {
	const uint32_t *dtab;         /* the groups' decoder tables, a row of PROB_SCALE each */
	const uint8_t *group;         /* key -> group */
	const uint64_t *gkey;         /* first key of each group */
	unsigned ng;                  /* number of groups */
	const uint8_t *p[NWS], *end[NWS]; /* next word, end of each word stream; PAD bytes follow */
	const uint8_t *raw;           /* raw bits; PAD bytes follow */
	uint64_t pos, raw_bits;       /* next raw bit, length of the raw bits */
	uint32_t st[NSTATES];
};

/* Decodes MODE_RANS data p[0..end) into out[0..n) against base; returns 0 or -1. */
int sp_lossless_decode_rans(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			    const uint8_t *p, const uint8_t *end, uint8_t *out, size_t n);

/* The vector decoder decoding will use: the best the CPU has, up to the one s->simd allows. */
enum simd sp_lossless_simd_level(const struct sp_lossless *s);

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_AVX2 1
/* Vector decoding of the leading elements of 16-bit dtypes (0 of others) in whole blocks of
 * 32; returns how many it decoded, or -1 on malformed input. rs advances past them. */
ptrdiff_t sp_lossless_decode_avx2(const struct sp_lossless *s, enum sp_dtype dt,
				  struct rans_stream *rs, const uint8_t *base, uint8_t *out,
				  size_t ne);
ptrdiff_t sp_lossless_decode_avx512(enum sp_dtype dt, struct rans_stream *rs,
				    const uint8_t *base, uint8_t *out, size_t ne);
int sp_lossless_have_avx2(void);
int sp_lossless_have_avx512(void);
#endif

#endif
