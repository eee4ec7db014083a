/* SPDX-License-Identifier: Apache-2.0 */
#include "codec_patch.h"

#include <string.h>

/* Long-distance matching pays when the window is larger than the regular match finder sees. */
#define LDM_FROM (1u << 20)
/* zstd's smallest window, and the largest its decoders accept by default (128 MiB). */
#define WINDOW_LOG_MIN 10
#define WINDOW_LOG_MAX 27

int sp_window_log(size_t n)
{
	int log = WINDOW_LOG_MIN;
	while (((size_t)1 << log) < n && log < WINDOW_LOG_MAX)
		log++;
	return log;
}

size_t sp_patch_encode(ZSTD_CCtx *cctx, const uint8_t *window, size_t wlen, const uint8_t *src,
		       size_t n, uint8_t *dst, size_t cap, int level)
{
	uint64_t w = wlen;
	if (cap < SP_PATCH_HEADER || wlen > SP_PATCH_WINDOW_MAX)
		return 0;
	memcpy(dst, &w, SP_PATCH_HEADER);
	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, sp_window_log(wlen + n));
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, wlen >= LDM_FROM);
	size_t z = ZSTD_isError(ZSTD_CCtx_refPrefix(cctx, window, wlen))
			   ? (size_t)-1
			   : ZSTD_compress2(cctx, dst + SP_PATCH_HEADER, cap - SP_PATCH_HEADER, src, n);
	ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
	return ZSTD_isError(z) ? 0 : SP_PATCH_HEADER + z;
}

int sp_patch_window(const uint8_t *data, size_t len, uint64_t *wlen)
{
	if (len < SP_PATCH_HEADER)
		return -1;
	memcpy(wlen, data, SP_PATCH_HEADER);
	return *wlen <= SP_PATCH_WINDOW_MAX ? 0 : -1;
}

int sp_patch_decode(ZSTD_DCtx *dctx, const uint8_t *data, size_t len, const uint8_t *window,
		    size_t wlen, uint8_t *out, size_t n)
{
	uint64_t w;
	if (sp_patch_window(data, len, &w) || w != wlen)
		return -1;
	ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
	size_t z = ZSTD_isError(ZSTD_DCtx_refPrefix(dctx, window, wlen))
			   ? (size_t)-1
			   : ZSTD_decompressDCtx(dctx, out, n, data + SP_PATCH_HEADER, len - SP_PATCH_HEADER);
	ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
	return ZSTD_isError(z) || z != n ? -1 : 0;
}
