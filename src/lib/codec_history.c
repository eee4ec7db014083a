/* SPDX-License-Identifier: Apache-2.0 */
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_createCDict_advanced: a raw-content dictionary by reference */
#include "codec_history.h"

#include "codec_patch.h"

ZSTD_CDict *sp_history_cdict(const uint8_t *h, size_t n, int level)
{
	ZSTD_compressionParameters cp = ZSTD_getCParams(level, 0, n);
	/* The window covers the whole history and a new file: a match may reach the first byte. */
	cp.windowLog = (unsigned)sp_window_log(n + SP_HISTORY_MAX / 32);
	return ZSTD_createCDict_advanced(h, n, ZSTD_dlm_byRef, ZSTD_dct_rawContent, cp,
					 ZSTD_defaultCMem);
}

ZSTD_DDict *sp_history_ddict(const uint8_t *h, size_t n)
{
	return ZSTD_createDDict_advanced(h, n, ZSTD_dlm_byRef, ZSTD_dct_rawContent, ZSTD_defaultCMem);
}

size_t sp_history_encode(ZSTD_CCtx *cctx, const ZSTD_CDict *history, const uint8_t *src, size_t n,
			 uint8_t *dst, size_t cap)
{
	size_t z = ZSTD_compress_usingCDict(cctx, dst, cap, src, n, history);
	return ZSTD_isError(z) ? 0 : z;
}

int sp_history_decode(ZSTD_DCtx *dctx, const ZSTD_DDict *history, const uint8_t *data, size_t len,
		      uint8_t *out, size_t n)
{
	size_t z = ZSTD_decompress_usingDDict(dctx, out, n, data, len, history);
	return ZSTD_isError(z) || z != n ? -1 : 0;
}
