/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lossless delta codec: the interface, and the modes but MODE_RANS. The format is specified at
 * the top of lossless_model.h; MODE_RANS is encoded in lossless_encode.c and decoded in
 * lossless_decode.c (portable) and lossless_decode_x86.c (vector).
 */
#include "codec_lossless.h"

#include <stdlib.h>

#include "lossless_decode.h"
#include "lossless_encode.h"

#define DEFAULT_LEVEL 3

struct sp_lossless *sp_lossless_new(void)
{
	struct sp_lossless *s = calloc(1, sizeof *s);
	if (!s || !(s->hist = calloc(KMAX, sizeof *s->hist))) { /* pages stay untouched until used */
		free(s);
		return NULL;
	}
	s->simd = SIMD_AVX512;
	for (unsigned m = 0; m < 256; m++) /* lane j of mask m takes word popcount(m & (2^j - 1)) */
		for (unsigned j = 0, c = 0; j < 8; j++)
			s->perm[m][j] = (uint8_t)(m >> j & 1 ? c++ : 0);
	return s;
}

void sp_lossless_free(struct sp_lossless *s)
{
	if (!s)
		return;
	free(s->hist);
	free(s->sym.p);
	free(s->buf.p);
	ZSTD_freeCCtx(s->cctx);
	ZSTD_freeDCtx(s->dctx);
	free(s);
}


size_t sp_lossless_bound(size_t n)
{
	return n + 2; /* the RAW mode */
}

/* The words d = ord(ft) - ord(base), or with inverse set, out = unord(ord(base) + d) in place. */
static void diff_words(struct dtinfo di, const uint8_t *base, const uint8_t *ft, uint8_t *out,
		       size_t ne, int inverse)
{
	unsigned w = di.width;
	uint64_t mask = word_mask(w);
	for (size_t i = 0; i < ne; i++) {
		uint64_t b = ord(load_word(base + i * w, w), di), x = load_word(ft + i * w, w);
		uint64_t y = inverse ? ord((b + x) & mask, di) : (ord(x, di) - b) & mask;
		store_word(out + i * w, y, w);
	}
}

/* Encodes in MODE_ZSTD; returns the encoded size, or 0 when it does not fit cap. */
static size_t encode_zstd(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			  const uint8_t *ft, size_t n, uint8_t *dst, size_t cap, int level)
{
	size_t zcap = ZSTD_compressBound(n);
	if (!s->cctx && !(s->cctx = ZSTD_createCCtx()))
		return 0;
	if (!sp_scratch_get(&s->buf, n + zcap))
		return 0;
	struct dtinfo di = dtinfo(dt);
	diff_words(di, base, ft, s->buf.p, n / di.width, 0);
	size_t z = ZSTD_compressCCtx(s->cctx, s->buf.p + n, zcap, s->buf.p, n, level);
	if (ZSTD_isError(z) || z + 2 > cap)
		return 0;
	dst[0] = VERSION;
	dst[1] = MODE_ZSTD;
	memcpy(dst + 2, s->buf.p + n, z);
	return z + 2;
}

size_t sp_lossless_encode(struct sp_lossless *s, enum sp_dtype dt, const void *base,
			  const void *ft, size_t n, void *dst, size_t cap, int level)
{
	struct dtinfo di = dtinfo(dt);
	uint8_t *out = dst;
	if (n % di.width || cap < 2)
		return 0;
	level = level <= 0 ? DEFAULT_LEVEL : level > 19 ? 19 : level;
	out[0] = VERSION;
	if (!memcmp(base, ft, n)) {
		out[1] = MODE_SAME;
		return 2;
	}
	/* Candidates go to dst only when smaller than what is there, so try the likely best first. */
	size_t best = n + 2 <= cap ? n + 2 : SIZE_MAX;
	size_t r = sp_lossless_encode_rans(s, dt, base, ft, n / di.width, out,
					   best < cap ? best - 1 : cap, level);
	best = r ? r : best;
	if (!di.ebits || level >= 10) { /* integers may carry structure that only LZ finds */
		r = encode_zstd(s, dt, base, ft, n, out, best < cap ? best - 1 : cap, level);
		best = r ? r : best;
	}
	if (best == n + 2) {
		out[1] = MODE_RAW;
		memcpy(out + 2, ft, n);
	}
	return best == SIZE_MAX ? 0 : best;
}

static int decode_zstd(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
		       const uint8_t *p, size_t len, uint8_t *out, size_t n)
{
	struct dtinfo di = dtinfo(dt);
	if (!s->dctx && !(s->dctx = ZSTD_createDCtx()))
		return -1;
	size_t r = ZSTD_decompressDCtx(s->dctx, out, n, p, len);
	if (ZSTD_isError(r) || r != n)
		return -1;
	diff_words(di, base, out, out, n / di.width, 1);
	return 0;
}

int sp_lossless_decode(struct sp_lossless *s, enum sp_dtype dt, const void *base,
		       const void *src, size_t srclen, void *out, size_t n)
{
	const uint8_t *p = src;
	if (n % dtinfo(dt).width || srclen < 2 || p[0] != VERSION)
		return -1;
	switch (p[1]) {
	case MODE_SAME:
		if (srclen != 2)
			return -1;
		memcpy(out, base, n);
		return 0;
	case MODE_RAW:
		if (srclen != n + 2)
			return -1;
		memcpy(out, p + 2, n);
		return 0;
	case MODE_ZSTD:
		return decode_zstd(s, dt, base, p + 2, srclen - 2, out, n);
	case MODE_RANS:
		return sp_lossless_decode_rans(s, dt, base, p + 2, p + srclen, out, n);
	default:
		return -1;
	}
}

int sp_lossless_set_simd(struct sp_lossless *s, int level)
{
	s->simd = level <= 0 ? SIMD_NONE : level == 1 ? SIMD_AVX2 : SIMD_AVX512;
	return (int)sp_lossless_simd_level(s);
}
