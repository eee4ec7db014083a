/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lossless delta codec. Input: u8 dtype, u16 elements (at most 16 KiB of them), u8 mode,
 * the base's bytes, then the rest. Mode bit 0 clear: the rest is encoded data, decoded against the base (an error or n
 * bytes, never a read or write out of bounds). Set: the rest is a fine-tune chunk, encoded at
 * level 1 + mode / 2 % 3, which must decode to itself.
 */
#include <stdlib.h>

#include "codec_lossless.h"
#include "dtype.h"
#include "fuzz.h"

#define MAX_BYTES (16u << 10) /* larger chunks take longer, not other paths */

static struct sp_lossless *ll;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	ll = sp_lossless_new();
	FUZZ_CHECK(ll);
	return 0;
}

static void roundtrip(enum sp_dtype dt, const uint8_t *base, const uint8_t *ft, size_t n, int level)
{
	size_t cap = sp_lossless_bound(n);
	uint8_t *enc = malloc(cap), *out = malloc(n + !n);
	FUZZ_CHECK(enc && out);
	size_t len = sp_lossless_encode(ll, dt, base, ft, n, enc, cap, level);
	FUZZ_CHECK(len > 0);
	FUZZ_CHECK(sp_lossless_decode(ll, dt, base, enc, len, out, n) == 0);
	FUZZ_CHECK(memcmp(out, ft, n) == 0);
	free(enc);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	enum sp_dtype dt = (enum sp_dtype)(fuzz_u(&in, 1) % SP_DT_COUNT);
	size_t n = (size_t)(fuzz_u(&in, 2) % (MAX_BYTES / sp_dtype_size(dt) + 1)) * sp_dtype_size(dt);
	int mode = (int)fuzz_u(&in, 1);
	uint8_t *base = fuzz_take(&in, n), *out = malloc(n + !n);
	size_t len = mode & 1 ? n : in.n;
	uint8_t *rest = fuzz_take(&in, len);
	FUZZ_CHECK(out);
	if ((mode & 1) && n)
		roundtrip(dt, base, rest, n, 1 + mode / 2 % 3);
	else if (!(mode & 1))
		sp_lossless_decode(ll, dt, base, rest, len, out, n);
	free(base);
	free(rest);
	free(out);
	return 0;
}
