/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The history codec (SP_CODEC_HISTORY): a chunk of a file that has no counterpart in the base (a
 * new file, or content moved between files), compressed by zstd with the delta's history as its
 * dictionary. The history is base content the manifest lists once per delta (segments of base
 * files, concatenated); every such chunk shares it, so a small new file finds what any base file
 * holds, and zstd indexes the history once per delta, not once per file.
 *
 * CHUNK DATA: one zstd frame. It decodes with the history as a raw-content dictionary
 * (ZSTD_dct_rawContent) to the chunk's out_len bytes.
 */
#ifndef SP_CODEC_HISTORY_H
#define SP_CODEC_HISTORY_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

/* A history is at most this large: the reader holds it in memory while the delta is open. */
#define SP_HISTORY_MAX (32u << 20)

/* The history as zstd's dictionaries, referencing h (which must outlive them); NULL when out of
 * memory. The compression side is made for one level, which every chunk coded with it uses. */
ZSTD_CDict *sp_history_cdict(const uint8_t *h, size_t n, int level);
ZSTD_DDict *sp_history_ddict(const uint8_t *h, size_t n);

/* Compresses src[0..n) with the history into dst; 0 on error. */
size_t sp_history_encode(ZSTD_CCtx *cctx, const ZSTD_CDict *history, const uint8_t *src, size_t n,
			 uint8_t *dst, size_t cap);
/* Decodes data with the history into out[0..n); -1 when malformed. */
int sp_history_decode(ZSTD_DCtx *dctx, const ZSTD_DDict *history, const uint8_t *data, size_t len,
		      uint8_t *out, size_t n);

#endif
