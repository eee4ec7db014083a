/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One chunk through sp_chunk_decode, whatever its codec: the raw and zstd paths, base copies,
 * and the delta codec over a base of another float dtype. Input: a chunk record (48 bytes, its
 * fields brought into what the chunk table checks let through), its data (data_len bytes, at
 * most what the input holds), then the base bytes the chunk reads (zero-padded).
 */
#include <stdlib.h>

#include "chunk.h"
#include "codec_patch.h"
#include "dtype.h"
#include "fuzz.h"

#define OUT_MAX (256u << 10)

static struct sp_codecs cs;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	FUZZ_CHECK(sp_codecs_init(&cs) == 0);
	return 0;
}

/* What the chunk table checks refuse (superblock.c's bad_chunk), short of the file layout. */
static int refused(const struct sp_chunk *c)
{
	int lossy = c->codec == SP_CODEC_LOSSY;
	if (c->out_len == 0 || (c->codec == SP_CODEC_RAW && c->data_len != c->out_len))
		return 1;
	if (c->codec != SP_CODEC_BASE && c->codec != SP_CODEC_DELTA && !lossy)
		return c->codec == SP_CODEC_PATCH && c->data_len < SP_PATCH_HEADER;
	return (c->dtype != c->base_dtype || lossy) &&
	       (c->codec == SP_CODEC_BASE || !sp_dtype_is_float(c->dtype) ||
		!sp_dtype_is_float(c->base_dtype));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	struct sp_chunk c;
	uint8_t rec[sizeof(c)];
	memcpy(&c, fuzz_bytes(&in, sizeof(c), rec), sizeof(c));
	c.codec %= SP_CODEC_COUNT;
	c.dtype %= SP_DT_COUNT;
	c.base_dtype %= SP_DT_COUNT;
	c.out_len %= OUT_MAX;
	c.out_len -= c.out_len % (uint32_t)sp_dtype_size(c.dtype);
	c.data_len = (uint32_t)(c.data_len % (in.n + 1));
	uint64_t blen = sp_chunk_base_len(&c);
	if (refused(&c))
		return 0;
	uint8_t *dat = fuzz_take(&in, c.data_len), *out = malloc(c.out_len);
	FUZZ_CHECK(out);
	if (c.codec != SP_CODEC_PATCH || (sp_chunk_patch_window(&c, dat, &blen) == 0 && blen <= OUT_MAX)) {
		uint8_t *base = fuzz_take(&in, blen);
		struct sp_chunk_in ci = {.data = dat, .base = base, .base_len = blen};
		sp_chunk_decode(&cs, &c, &ci, out);
		free(base);
	}
	free(dat);
	free(out);
	return 0;
}
