/* SPDX-License-Identifier: Apache-2.0 */
#include "chunk.h"

#include <stdlib.h>
#include <string.h>

#include "codec_history.h"
#include "codec_lossless.h"
#include "codec_patch.h"
#include "dtype.h"

int sp_codecs_init(struct sp_codecs *cs)
{
	memset(cs, 0, sizeof(*cs));
	cs->cctx = ZSTD_createCCtx();
	cs->dctx = ZSTD_createDCtx();
	cs->lossless = sp_lossless_new();
	if (!cs->cctx || !cs->dctx || !cs->lossless) {
		sp_codecs_fini(cs);
		return -1;
	}
	return 0;
}

void sp_codecs_fini(struct sp_codecs *cs)
{
	ZSTD_freeCCtx(cs->cctx);
	ZSTD_freeDCtx(cs->dctx);
	if (cs->lossless)
		sp_lossless_free(cs->lossless);
	free(cs->conv.p);
	free(cs->patch.p);
	sp_lossy_scratch_free(&cs->lossy);
	memset(cs, 0, sizeof(*cs));
}

uint64_t sp_chunk_base_len(const struct sp_chunk *c)
{
	if (c->codec != SP_CODEC_BASE && c->codec != SP_CODEC_DELTA && c->codec != SP_CODEC_LOSSY)
		return 0;
	return (uint64_t)c->out_len / sp_dtype_size(c->dtype) * sp_dtype_size(c->base_dtype);
}

size_t sp_chunk_bound(size_t n)
{
	size_t a = ZSTD_compressBound(n), b = sp_lossless_bound(n);
	return a > b ? a : b;
}

/* The base as elements of the output dtype: converted into cs->conv when the dtypes differ. */
static const uint8_t *base_as_output(struct sp_codecs *cs, const struct sp_chunk *c,
				     const uint8_t *base)
{
	if (c->dtype == c->base_dtype)
		return base;
	uint8_t *conv = sp_scratch_get(&cs->conv, c->out_len);
	if (conv)
		sp_dtype_convert(c->base_dtype, base, c->dtype, conv, c->out_len / sp_dtype_size(c->dtype));
	return conv;
}

/* Tries the delta codec into dst; keeps it when smaller than *best. */
static int try_delta(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *ft,
		     const uint8_t *base, uint8_t *dst, size_t cap, int level)
{
	const uint8_t *b = base_as_output(cs, c, base);
	if (!b)
		return -1;
	size_t n = sp_lossless_encode(cs->lossless, c->dtype, b, ft, c->out_len, dst, cap, level);
	if (n == 0)
		return -1;
	c->codec = SP_CODEC_DELTA;
	c->data_len = (uint32_t)n;
	return 0;
}

int sp_chunk_encode(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *ft,
		    const uint8_t *base, uint8_t *dst, size_t cap, int level)
{
	size_t n = c->out_len;
	if (base && c->dtype == c->base_dtype && memcmp(ft, base, n) == 0) {
		c->codec = SP_CODEC_BASE;
		c->data_len = 0;
		return 0;
	}
	/* The delta goes into the lower part of dst, zstd into the upper: keep the smaller. A
	 * delta of at most half the bytes is kept without trying zstd, which rarely compresses
	 * weights that far on their own and costs up to a fifth of the encoder's time. */
	size_t half = cap / 2;
	int delta = base && try_delta(cs, c, ft, base, dst, half, level) == 0;
	if (delta && c->data_len <= n / 2)
		return 0;
	uint32_t dlen = c->data_len;
	size_t z = ZSTD_compressCCtx(cs->cctx, dst + half, cap - half, ft, n, level);
	if (ZSTD_isError(z))
		return -1;
	if (delta && dlen < z && dlen < n) {
		c->codec = SP_CODEC_DELTA;
		c->data_len = dlen;
		return 0;
	}
	if (z >= n) {
		memcpy(dst, ft, n);
		c->codec = SP_CODEC_RAW;
		c->data_len = (uint32_t)n;
	} else {
		memmove(dst, dst + half, z);
		c->codec = SP_CODEC_ZSTD;
		c->data_len = (uint32_t)z;
	}
	return 0;
}

int sp_chunk_encode_patch(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *src,
			  const uint8_t *window, size_t wlen, const uint8_t *same, uint8_t *dst,
			  size_t cap, int level)
{
	uint32_t base_file = c->base_file;
	uint64_t base_off = c->base_off;
	if (same && memcmp(same, src, c->out_len) == 0) { /* an unchanged file, or its prefix */
		c->codec = SP_CODEC_BASE;
		c->data_len = 0;
		c->base_off = c->out_off;
		c->dtype = c->base_dtype = SP_DT_BYTES;
		return 0;
	}
	c->base_file = SP_NO_BASE;
	c->base_off = 0;
	if (sp_chunk_encode(cs, c, src, NULL, dst, cap, level))
		return -1;
	size_t pcap = SP_PATCH_HEADER + ZSTD_compressBound(c->out_len);
	uint8_t *p = sp_scratch_get(&cs->patch, pcap);
	size_t n = p ? sp_patch_encode(cs->cctx, window, wlen, src, c->out_len, p, pcap, level) : 0;
	if (n && n < c->data_len && n <= cap) {
		memcpy(dst, p, n);
		c->codec = SP_CODEC_PATCH;
		c->data_len = (uint32_t)n;
		c->base_file = base_file;
		c->base_off = base_off;
	}
	return 0;
}

/* Listing the history in the manifest costs some bytes: a saving below them is none. */
#define HISTORY_MARGIN 32

void sp_chunk_try_history(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *src,
			  const ZSTD_CDict *history, uint8_t *dst, size_t cap)
{
	size_t hcap = ZSTD_compressBound(c->out_len);
	uint8_t *p = sp_scratch_get(&cs->patch, hcap);
	size_t n = p ? sp_history_encode(cs->cctx, history, src, c->out_len, p, hcap) : 0;
	if (n && n + HISTORY_MARGIN < c->data_len && n <= cap) {
		memcpy(dst, p, n);
		c->codec = SP_CODEC_HISTORY;
		c->data_len = (uint32_t)n;
		c->base_file = SP_NO_BASE;
		c->base_off = 0;
	}
}

int sp_chunk_encode_history(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *src,
			    const ZSTD_CDict *history, uint8_t *dst, size_t cap, int level)
{
	c->base_file = SP_NO_BASE;
	c->base_off = 0;
	if (sp_chunk_encode(cs, c, src, NULL, dst, cap, level))
		return -1;
	sp_chunk_try_history(cs, c, src, history, dst, cap);
	return 0;
}

int sp_chunk_patch_window(const struct sp_chunk *c, const uint8_t *data, uint64_t *len)
{
	return sp_patch_window(data, c->data_len, len);
}

int sp_chunk_decode(struct sp_codecs *cs, const struct sp_chunk *c, const struct sp_chunk_in *in,
		    uint8_t *out)
{
	const uint8_t *data = in->data, *base = in->base;
	size_t z;
	const uint8_t *b;
	switch (c->codec) {
	case SP_CODEC_RAW:
		if (c->data_len != c->out_len)
			return -1;
		memcpy(out, data, c->out_len);
		return 0;
	case SP_CODEC_ZSTD:
		z = ZSTD_decompressDCtx(cs->dctx, out, c->out_len, data, c->data_len);
		return ZSTD_isError(z) || z != c->out_len ? -1 : 0;
	case SP_CODEC_BASE:
		memcpy(out, base, c->out_len);
		return 0;
	case SP_CODEC_DELTA:
		b = base_as_output(cs, c, base);
		if (!b)
			return -1;
		return sp_lossless_decode(cs->lossless, c->dtype, b, data, c->data_len, out, c->out_len);
	case SP_CODEC_LOSSY:
		return sp_lossy_decode(cs->dctx, cs->lossless, data, c->data_len, in->aux, in->aux_len,
				       base, c->base_dtype, c->dtype, out,
				       c->out_len / sp_dtype_size(c->dtype), &cs->lossy);
	case SP_CODEC_PATCH:
		return sp_patch_decode(cs->dctx, data, c->data_len, base, in->base_len, out, c->out_len);
	case SP_CODEC_HISTORY:
		return in->history ? sp_history_decode(cs->dctx, in->history, data, c->data_len, out,
						       c->out_len)
				   : -1;
	default:
		return -1;
	}
}
