/* SPDX-License-Identifier: Apache-2.0 */
/* The patch codec and the choice of base file: patches decode against their window only,
 * refuse a wrong window or damaged data, and similar content is found where names differ. */
#include <zstd.h>

#include "codec_patch.h"
#include "similar.h"
#include "testutil.h"

static uint64_t seed = 3;

/* Text-like bytes that zstd alone compresses only so far: the base is where savings come from. */
static uint8_t *text(size_t n)
{
	static const char letters[] = "etaoinshrdlucmfwypvbgkjqxz  \n";
	uint8_t *p = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (uint8_t)letters[(seed >> 33) % (sizeof(letters) - 1)];
	}
	return p;
}

static void codec(void)
{
	size_t n = 200000, cap = SP_PATCH_HEADER + ZSTD_compressBound(n);
	uint8_t *base = text(n), *derived = malloc(n), *dst = malloc(cap), *out = malloc(n);
	memcpy(derived, base + 1000, n - 1000); /* shifted, then edited */
	memcpy(derived + n - 1000, base, 1000);
	for (size_t i = 0; i < n; i += 5000)
		derived[i] ^= 0x20;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	size_t len = sp_patch_encode(cc, base, n, derived, n, dst, cap, 3);
	size_t plain = ZSTD_compress(out, n, derived, n, 3);
	CHECK(len > 0 && len < plain / 4); /* the base is where the bytes are saved */
	CHECK(sp_patch_decode(dc, dst, len, base, n, out, n) == 0 && !memcmp(out, derived, n));
	CHECK(sp_patch_decode(dc, dst, len, base, n - 1, out, n) != 0); /* another window length */
	for (size_t cut = 0; cut < len; cut += len / 17 + 1)
		CHECK(sp_patch_decode(dc, dst, cut, base, n, out, n) != 0);
	for (size_t i = 0; i < len; i += 97) { /* must not crash; a flip may decode or not */
		dst[i] ^= 0x10;
		sp_patch_decode(dc, dst, len, base, n, out, n);
		dst[i] ^= 0x10;
	}
	ZSTD_freeCCtx(cc);
	ZSTD_freeDCtx(dc);
	free(base), free(derived), free(dst), free(out);
}

static void similarity(void)
{
	size_t n = 300000;
	struct sp_sketch a, b, c;
	uint8_t *x = text(n), *y = malloc(n), *z = text(n);
	memcpy(y, x + 7, n - 7); /* the same content, moved and edited */
	memset(y + n - 7, 'x', 7);
	for (size_t i = 0; i < n; i += 20000)
		y[i] = '#';
	sp_sketch(x, n, &a);
	sp_sketch(y, n, &b);
	sp_sketch(z, n, &c);
	CHECK(a.n > 100);
	CHECK(sp_sketch_similarity(&a, &b) > 0.5);
	CHECK(sp_sketch_similarity(&a, &c) < 0.05);
	CHECK(!strcmp(sp_compressed_kind((const uint8_t *)"\x1f\x8b\x08", 3), "gzip"));
	CHECK(sp_compressed_kind((const uint8_t *)"{\"a\": 1}", 8) == NULL);
	free(x), free(y), free(z);
}

int main(void)
{
	codec();
	similarity();
	return test_done();
}
