/* SPDX-License-Identifier: Apache-2.0 */
/* Encoding and decoding of one chunk, whatever its codec. */
#ifndef SP_CHUNK_H
#define SP_CHUNK_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

#include "codec_lossy.h"
#include "sparse/format.h"

/* The per-thread state the codecs need. Not thread-safe: one per thread. */
struct sp_codecs {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	struct sp_lossless *lossless;
	struct sp_scratch conv; /* base elements converted to the output dtype */
	struct sp_scratch patch;
	struct sp_lossy_scratch lossy;
};

int sp_codecs_init(struct sp_codecs *cs);
void sp_codecs_fini(struct sp_codecs *cs);

/* Bytes of base a chunk reads: 0 for chunks without a base. */
uint64_t sp_chunk_base_len(const struct sp_chunk *c);

/* Worst-case encoded size of a chunk of n output bytes. */
size_t sp_chunk_bound(size_t n);

/* Encodes ft[0..c->out_len) into dst, choosing the smallest codec: c->dtype, c->base_dtype and
 * c->base_file say what base holds (NULL when the chunk has no base). Sets c->codec and
 * c->data_len. level is the zstd effort. Returns 0 or -1. */
int sp_chunk_encode(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *ft,
		    const uint8_t *base, uint8_t *dst, size_t cap, int level);

/* What decoding a chunk reads: its data, its base bytes (a PATCH chunk's window, whose length
 * its data names), for LOSSY chunks with a low-rank part the auxiliary chunk it names, and for
 * HISTORY chunks the delta's history. */
struct sp_chunk_in {
	const uint8_t *data, *base, *aux;
	size_t base_len, aux_len;
	const ZSTD_DDict *history;
};

/* The bytes of base a PATCH chunk reads: its window. */
int sp_chunk_patch_window(const struct sp_chunk *c, const uint8_t *data, uint64_t *len);

/* Encodes src[0..c->out_len) as zstd or raw (as sp_chunk_encode without a base) or as a patch
 * against window[0..wlen) of base file c->base_file at c->base_off, whichever is smallest; as
 * BASE when same (the base file's bytes at the chunk's own offset, or NULL) equals it. */
int sp_chunk_encode_patch(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *src,
			  const uint8_t *window, size_t wlen, const uint8_t *same, uint8_t *dst,
			  size_t cap, int level);

/* Recodes an encoded chunk of src with the delta's history when that is smaller. */
void sp_chunk_try_history(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *src,
			  const ZSTD_CDict *history, uint8_t *dst, size_t cap);
/* Encodes src[0..c->out_len) as zstd or raw (as sp_chunk_encode without a base) or with the
 * delta's history, whichever is smallest. */
int sp_chunk_encode_history(struct sp_codecs *cs, struct sp_chunk *c, const uint8_t *src,
			    const ZSTD_CDict *history, uint8_t *dst, size_t cap, int level);

/* Decodes a chunk from its inputs into out[0..c->out_len). Returns 0, or -1 when the data is
 * malformed. Does not check out_hash: the caller does. */
int sp_chunk_decode(struct sp_codecs *cs, const struct sp_chunk *c, const struct sp_chunk_in *in,
		    uint8_t *out);

#endif
