/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The patch codec. Input: u16 window length, u16 output length, u8 mode, the window, then the
 * rest. Mode bit 0 clear: the rest is a chunk's data, decoded against the window. Set: the rest
 * is encoded against the window and must decode to itself.
 */
#include <stdlib.h>
#include <zstd.h>

#include "codec_patch.h"
#include "fuzz.h"

static ZSTD_CCtx *cctx;
static ZSTD_DCtx *dctx;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	cctx = ZSTD_createCCtx();
	dctx = ZSTD_createDCtx();
	FUZZ_CHECK(cctx && dctx);
	return 0;
}

static void roundtrip(const uint8_t *window, size_t wlen, const uint8_t *src, size_t n)
{
	size_t cap = SP_PATCH_HEADER + ZSTD_compressBound(n);
	uint8_t *enc = malloc(cap), *out = malloc(n + !n);
	FUZZ_CHECK(enc && out);
	size_t len = sp_patch_encode(cctx, window, wlen, src, n, enc, cap, 3);
	FUZZ_CHECK(len > 0);
	FUZZ_CHECK(sp_patch_decode(dctx, enc, len, window, wlen, out, n) == 0);
	FUZZ_CHECK(memcmp(out, src, n) == 0);
	free(enc);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	size_t wlen = (size_t)fuzz_u(&in, 2), n = (size_t)fuzz_u(&in, 2);
	int mode = (int)fuzz_u(&in, 1);
	uint8_t *window = fuzz_take(&in, wlen), *out = malloc(n + !n);
	size_t len = in.n;
	uint8_t *rest = fuzz_take(&in, len);
	FUZZ_CHECK(out);
	if (mode & 1)
		roundtrip(window, wlen, rest, len);
	else
		sp_patch_decode(dctx, rest, len, window, wlen, out, n);
	free(window);
	free(rest);
	free(out);
	return 0;
}
