/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lossy codec's decoder. Input: u8 output dtype, u8 base dtype (each one of the four float
 * types), u16 elements, u32 auxiliary length (at most 1 MiB), the base's bytes, the auxiliary
 * chunk's bytes, then the chunk's data. An error or n elements; never out of bounds.
 */
#include <stdlib.h>
#include <zstd.h>

#include "codec_lossless.h"
#include "codec_lossy.h"
#include "dtype.h"
#include "fuzz.h"

static const enum sp_dtype floats[] = {SP_DT_F16, SP_DT_BF16, SP_DT_F32, SP_DT_F64};
static ZSTD_DCtx *dctx;
static struct sp_lossless *ll;
static struct sp_lossy_scratch scratch;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	dctx = ZSTD_createDCtx();
	ll = sp_lossless_new();
	FUZZ_CHECK(dctx && ll);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	enum sp_dtype dt = floats[fuzz_u(&in, 1) % 4], bdt = floats[fuzz_u(&in, 1) % 4];
	size_t n = (size_t)fuzz_u(&in, 2);
	size_t aux_len = (size_t)(fuzz_u(&in, 4) % ((1u << 20) + 1));
	uint8_t *base = fuzz_take(&in, n * sp_dtype_size(bdt)), *aux = fuzz_take(&in, aux_len);
	size_t len = in.n;
	uint8_t *chunk = fuzz_take(&in, len), *out = malloc(n * sp_dtype_size(dt) + !n);
	FUZZ_CHECK(out);
	sp_lossy_decode(dctx, ll, chunk, len, aux_len ? aux : NULL, aux_len, base, bdt, dt, out, n,
			&scratch);
	free(base);
	free(aux);
	free(chunk);
	free(out);
	return 0;
}
