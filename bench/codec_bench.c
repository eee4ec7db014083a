/* SPDX-License-Identifier: Apache-2.0 */
/*
 * codec_bench: the lossless codec alone, on one thread, with the base in memory.
 *
 *   codec_bench BASE.safetensors FT.safetensors [CHUNK [REPS]]
 *
 * Tensors of FT with a base tensor of the same name, dtype and size are laid end to end (as a
 * large tensor would be), cut into CHUNK-byte chunks (default 1 MiB) and encoded; then every
 * chunk is decoded REPS times (default 10) and the best pass is kept. Prints the encoded size,
 * its fraction of the bytes coded, and encode and decode MB/s of output. Checks every round trip.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec_lossless.h"
#include "load_st.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "codec_bench: %s\n", what);
	exit(1);
}


int main(int argc, char **argv)
{
	struct sp_model bm, fm;
	if (argc < 3)
		die("usage: codec_bench BASE.safetensors FT.safetensors [CHUNK [REPS]]");
	size_t chunk = argc > 3 ? strtoul(argv[3], NULL, 0) : 1u << 20;
	int reps = argc > 4 ? atoi(argv[4]) : 10;
	const struct sp_mfile *bf = bench_load_st(&bm, argv[1], "codec_bench"),
			     *ff = bench_load_st(&fm, argv[2], "codec_bench");
	enum sp_dtype dt = SP_DT_COUNT;
	size_t total = 0;
	uint8_t *b = malloc(ff->size), *f = malloc(ff->size);
	for (size_t i = 0; i < ff->st.ntensors; i++) {
		const struct sp_tensor *t = &ff->st.tensors[i];
		const struct sp_tensor_ref *r = sp_model_find(&bm, t->name);
		if (!r || r->t->dtype != t->dtype || r->t->size != t->size ||
		    (dt != SP_DT_COUNT && dt != t->dtype))
			continue;
		dt = t->dtype;
		memcpy(b + total, bf->map + r->t->off, t->size);
		memcpy(f + total, ff->map + t->off, t->size);
		total += t->size;
	}
	struct sp_lossless *s = sp_lossless_new();
	size_t nchunks = (total + chunk - 1) / chunk, cap = sp_lossless_bound(chunk), enc = 0;
	uint8_t *dst = malloc(nchunks * cap), *out = malloc(chunk);
	size_t *len = calloc(nchunks, sizeof(size_t));
	double t0 = now();
	for (size_t k = 0; k < nchunks; k++) {
		size_t n = total - k * chunk < chunk ? total - k * chunk : chunk;
		len[k] = sp_lossless_encode(s, dt, b + k * chunk, f + k * chunk, n, dst + k * cap, cap, 0);
		if (!len[k])
			die("encode failed");
		enc += len[k];
	}
	double enc_s = now() - t0, best = 1e9;
	for (int r = 0; r < reps; r++) {
		t0 = now();
		for (size_t k = 0; k < nchunks; k++) {
			size_t n = total - k * chunk < chunk ? total - k * chunk : chunk;
			if (sp_lossless_decode(s, dt, b + k * chunk, dst + k * cap, len[k], out, n) ||
			    memcmp(out, f + k * chunk, n))
				die("round trip failed");
		}
		if (now() - t0 < best)
			best = now() - t0;
	}
	printf("%s: %zu bytes of %s in %zu chunks -> %zu (%.4f); encode %.0f MB/s, decode %.0f MB/s\n",
	       argv[2], total, sp_dtype_name(dt), nchunks, enc, (double)enc / (double)total,
	       (double)total / enc_s / 1e6, (double)total / best / 1e6);
	return 0;
}
