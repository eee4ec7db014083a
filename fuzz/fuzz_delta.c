/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Range reconstruction: a whole delta opened over the seed base and read at fuzzer-chosen
 * offsets through the cache, each read compared with a slow reference that decodes every chunk
 * it touches whole. When the image's hashes are its own (not fixed up), a delta that opens is a
 * seed delta with its data perhaps damaged: every read must then fail with an error or return
 * exactly what the intact seed delta returns.
 *
 * Input: one byte (bit 0: fuzz_write_delta's fix), 8 bytes seeding the reads, the image.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "delta.h"
#include "fuzz.h"

#define READS 6
#define READ_MAX (256u << 10)
#define CACHE (64u << 10) /* small: reads also evict */

static const char *const seeds[] = {"lossless", "quant"};
static struct sp_delta *intact[sizeof(seeds) / sizeof(seeds[0])];
static char base_dir[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	snprintf(base_dir, sizeof(base_dir), "%s/base", fuzz_model_dir());
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		char dir[4096];
		struct sp_err err;
		snprintf(dir, sizeof(dir), "%s/%s", fuzz_model_dir(), seeds[i]);
		if (!(intact[i] = sp_delta_open(dir, base_dir, 0, &err))) {
			fprintf(stderr, "%s\n", err.msg);
			exit(1);
		}
	}
	return 0;
}

static struct sp_delta *intact_twin(const struct sp_delta *d)
{
	for (size_t i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++)
		if (intact[i]->sb.manifest_hash == d->sb.manifest_hash &&
		    intact[i]->sb.chunk_table_hash == d->sb.chunk_table_hash)
			return intact[i];
	return NULL;
}

/* Every chunk the range touches decoded whole, the part in range copied out. */
static ssize_t slow_read(struct sp_delta *d, size_t fi, uint8_t *buf, size_t len, uint64_t off)
{
	const struct sp_file_info *f = sp_delta_file(d, fi);
	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++) {
		const struct sp_chunk *c = sp_delta_chunk(d, k);
		if (c->out_off + c->out_len <= off || c->out_off >= off + len)
			continue;
		uint8_t *tmp = malloc(c->out_len);
		int rc = tmp ? sp_delta_decode_chunk(d, k, tmp) : -ENOMEM;
		if (rc == 0) {
			uint64_t from = c->out_off > off ? c->out_off : off;
			uint64_t to = c->out_off + c->out_len < off + len ? c->out_off + c->out_len
									  : off + len;
			memcpy(buf + (from - off), tmp + (from - c->out_off), to - from);
		}
		free(tmp);
		if (rc)
			return rc;
	}
	return (ssize_t)len;
}

static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void one_read(struct sp_delta *d, struct sp_delta *twin, struct sp_cache *cache,
		     uint64_t x, uint64_t y)
{
	size_t fi = x % sp_delta_file_count(d);
	const struct sp_file_info *f = sp_delta_file(d, fi);
	if (f->link)
		return;
	uint64_t off = y % (f->size + 64);
	size_t len = (size_t)((x >> 16) % (3ull * d->m.chunk_size + 1));
	len = len > READ_MAX ? READ_MAX : len;
	uint8_t *fast = malloc(len + 1), *slow = malloc(len + 1);
	FUZZ_CHECK(fast && slow);
	ssize_t n = sp_delta_read(d, (x >> 8) & 1 ? cache : NULL, fi, fast, len, off);
	ssize_t m = slow_read(d, fi, slow, len, off);
	FUZZ_CHECK(n == m);
	FUZZ_CHECK(n <= 0 || memcmp(fast, slow, (size_t)n) == 0);
	if (twin && n >= 0) {
		m = sp_delta_read(twin, NULL, fi, slow, len, off);
		FUZZ_CHECK(n == m);
		FUZZ_CHECK(memcmp(fast, slow, (size_t)n) == 0);
	}
	free(fast);
	free(slow);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = {data, size};
	struct sp_err err;
	int fix = (int)fuzz_u(&in, 1) & 1;
	uint64_t seed = fuzz_u(&in, 8);
	if (fuzz_write_delta(in.p, in.n, fix))
		return 0;
	struct sp_delta *d = sp_delta_open(fuzz_tmpdir(), base_dir, 0, &err);
	if (!d)
		return 0;
	struct sp_delta *twin = fix ? NULL : intact_twin(d);
	struct sp_cache *cache = sp_cache_new(CACHE);
	FUZZ_CHECK(cache);
	for (int r = 0; r < READS && sp_delta_file_count(d); r++) {
		uint64_t x = next(&seed);
		one_read(d, twin, cache, x, next(&seed));
	}
	sp_cache_free(cache);
	sp_delta_close(d);
	return 0;
}
