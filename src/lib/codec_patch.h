/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The patch codec (SP_CODEC_PATCH): a chunk of a file that is not a tensor, compressed by zstd
 * with a window of a base file as its reference prefix, so that what the base already holds
 * costs a match, not its bytes. zstd does the matching; this file only frames it.
 *
 * CHUNK DATA: u64 window_len (little-endian), then one zstd frame. The frame decodes with base
 * bytes [base_off, base_off + window_len) of the chunk's base file referenced as a raw-content
 * prefix (ZSTD_DCtx_refPrefix), to the chunk's out_len bytes.
 */
#ifndef SP_CODEC_PATCH_H
#define SP_CODEC_PATCH_H

#include <stddef.h>
#include <stdint.h>
#include <zstd.h>

/* The reference window a chunk reads, at most this large: a frame's window must hold it, and
 * decoders refuse windows over 128 MiB by default. */
#define SP_PATCH_WINDOW_MAX (64u << 20)
#define SP_PATCH_HEADER 8

/* The zstd window log whose window holds n bytes, between zstd's least and the most its decoders
 * accept by default. */
int sp_window_log(size_t n);
/* Compresses src[0..n) against window[0..wlen) into dst; 0 on error. */
size_t sp_patch_encode(ZSTD_CCtx *cctx, const uint8_t *window, size_t wlen, const uint8_t *src,
		       size_t n, uint8_t *dst, size_t cap, int level);
/* The window length a chunk's data names; -1 when malformed. */
int sp_patch_window(const uint8_t *data, size_t len, uint64_t *wlen);
/* Decodes data against window into out[0..n); -1 when malformed. */
int sp_patch_decode(ZSTD_DCtx *dctx, const uint8_t *data, size_t len, const uint8_t *window,
		    size_t wlen, uint8_t *out, size_t n);

#endif
