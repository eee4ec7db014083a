/* SPDX-License-Identifier: Apache-2.0 */
/* Writes deltas of generated model pairs (every dtype and shape case, and a realistic pair) at
 * several chunk sizes, and reads every file back through the library: whole, in odd pieces,
 * across and inside chunk boundaries, at random, with and without a cache too small to hold
 * them, and through decoding threads that race the reads. usage: test_roundtrip PATH_TO_SPARSE_GENMODEL */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sparse/sparse.h"
#include "testutil.h"

static uint64_t seed = 42;

static uint64_t rnd(uint64_t n)
{
	seed = seed * 6364136223846793005ull + 1442695040888963407ull;
	return n ? (seed >> 33) % n : 0;
}

/* When set, reads go through it (and its cache) instead. */
static struct sp_pool *pool;

static int same_range(struct sp_delta *d, struct sp_cache *c, size_t fi, const uint8_t *orig,
		      uint64_t size, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len + 1);
	ssize_t n = pool ? sp_pool_read(pool, d, fi, buf, len, off)
			 : sp_delta_read(d, c, fi, buf, len, off);
	size_t want = off >= size ? 0 : (size - off < len ? (size_t)(size - off) : len);
	int ok = n == (ssize_t)want && memcmp(buf, orig + (off < size ? off : size), want) == 0;
	if (!ok)
		fprintf(stderr, "  %s: bytes %llu+%zu differ (read %zd)\n", sp_delta_file(d, fi)->name,
			(unsigned long long)off, len, n);
	free(buf);
	return ok;
}

static void check_file(struct sp_delta *d, struct sp_cache *c, size_t fi, const char *ft_dir,
		       uint32_t chunk)
{
	const struct sp_file_info *f = sp_delta_file(d, fi);
	char path[4096];
	size_t size;
	snprintf(path, sizeof(path), "%s/%s", ft_dir, f->name);
	uint8_t *orig = test_slurp(path, &size);
	CHECK(orig && size == f->size);
	if (!orig)
		return;
	CHECK(same_range(d, c, fi, orig, size, 0, size));
	for (uint64_t off = 0; off < size; off += 7777)
		CHECK(same_range(d, c, fi, orig, size, off, 7777));
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++) {
		uint64_t b = sp_delta_chunk(d, k)->out_off;
		if (b)
			CHECK(same_range(d, c, fi, orig, size, b - 1, 2));
		CHECK(same_range(d, c, fi, orig, size, b, chunk));
		CHECK(same_range(d, c, fi, orig, size, b + 1, 3));
	}
	for (int i = 0; i < 200; i++)
		CHECK(same_range(d, c, fi, orig, size, rnd(size + 10), (size_t)rnd(3 * chunk) + 1));
	CHECK(same_range(d, c, fi, orig, size, size, 10));
	free(orig);
}

/* Every file of the delta equals the fine-tune's, and the delta lists every file. */
static void check_delta(const char *delta, const char *ft_dir, uint32_t chunk, size_t nfiles)
{
	struct sp_err err;
	struct sp_delta *d = sp_delta_open(delta, NULL, 0, &err);
	CHECK(d != NULL);
	if (!d) {
		fprintf(stderr, "  %s\n", err.msg);
		return;
	}
	CHECK(sp_delta_file_count(d) == nfiles);
	struct sp_cache *small = sp_cache_new(3 * (size_t)chunk);
	for (size_t i = 0; i < sp_delta_file_count(d); i++) {
		check_file(d, NULL, i, ft_dir, chunk);
		check_file(d, small, i, ft_dir, chunk);
	}
	/* Decoding threads that race the reads, ahead of them through the whole file. */
	CHECK((pool = sp_pool_new(small, 3)) != NULL);
	for (size_t i = 0; pool && i < sp_delta_file_count(d); i++) {
		sp_pool_prefetch(pool, d, i, 0, sp_delta_file(d, i)->size);
		check_file(d, small, i, ft_dir, chunk);
	}
	sp_pool_free(pool);
	pool = NULL;
	CHECK(sp_delta_check_base(d, &err) == 0);
	CHECK(sp_delta_verify(d, ft_dir, &err) == 0); /* every chunk equals the fine-tune's bytes */
	CHECK(sp_delta_verify(d, NULL, &err) == 0);
	sp_cache_free(small);
	sp_delta_close(d);
}

static size_t count_files(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", dir);
	FILE *p = popen(cmd, "r");
	size_t n = 0;
	if (!p || fscanf(p, "%zu", &n) != 1)
		n = 0;
	if (p)
		pclose(p);
	return n;
}

static void roundtrip(const char *base, const char *ft, const char *name, uint32_t chunk)
{
	char out[4096];
	struct sp_write_opts o = {.chunk_size = chunk, .threads = 2};
	struct sp_write_stats st;
	struct sp_err err;
	snprintf(out, sizeof(out), "%s/%s-%u", test_tmpdir(), name, chunk);
	int rc = sp_write_delta(base, ft, out, &o, &st, &err);
	CHECK(rc == 0);
	if (rc) {
		fprintf(stderr, "  %s\n", err.msg);
		return;
	}
	CHECK(st.delta_bytes > 0 && st.delta_bytes < st.ft_bytes);
	check_delta(out, ft, chunk, count_files(ft));
}

/* Verified against another folder with the same file names (the base), a delta counts the
 * chunks that differ and names the first; against a folder without them it fails. */
static void verify_against(const char *base)
{
	char delta[4096];
	struct sp_err err;
	snprintf(delta, sizeof(delta), "%s/demo-%u", test_tmpdir(), 1u << 20);
	struct sp_delta *d = sp_delta_open(delta, NULL, 0, &err);
	CHECK(d != NULL);
	if (!d)
		return;
	CHECK(sp_delta_verify(d, base, &err) > 0);
	CHECK(strstr(err.msg, "differs from the fine-tune") != NULL);
	CHECK(sp_delta_verify(d, test_tmpdir(), &err) == -1);
	sp_delta_close(d);
}

/* The largest chunk of each file of a delta written with the default chunk sizes. */
static uint32_t largest_chunk(const struct sp_delta *d, size_t fi)
{
	const struct sp_file_info *f = sp_delta_file(d, fi);
	uint32_t max = 0;
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++)
		max = sp_delta_chunk(d, k)->out_len > max ? sp_delta_chunk(d, k)->out_len : max;
	return max;
}

/* By default tensor data coded losslessly is cut at 256 KiB and any other file at 1 MiB: the
 * fine-tune gets a 700 KB file beside its tensors. */
static void default_chunks(const char *base, const char *ft)
{
	char out[4096], big[4200];
	struct sp_write_opts o = {.threads = 2};
	struct sp_err err;
	snprintf(out, sizeof(out), "%s/default-chunks", test_tmpdir());
	snprintf(big, sizeof(big), "%s/notes.txt", ft);
	CHECK(test_sh("yes 'a line of notes' | head -c 700000 > '%s'", big) == 0);
	int rc = sp_write_delta(base, ft, out, &o, NULL, &err);
	unlink(big);
	CHECK(rc == 0);
	struct sp_delta *d = rc ? NULL : sp_delta_open(out, NULL, 0, &err);
	CHECK(d != NULL);
	if (!d) {
		fprintf(stderr, "  %s\n", err.msg);
		return;
	}
	int tensors = 0, notes = 0;
	for (size_t i = 0; i < sp_delta_file_count(d); i++) {
		const char *name = sp_delta_file(d, i)->name;
		if (strstr(name, ".safetensors")) {
			CHECK(largest_chunk(d, i) == SP_CHUNK_TENSOR_DEFAULT);
			tensors++;
		} else if (strcmp(name, "notes.txt") == 0) {
			CHECK(largest_chunk(d, i) == 700000);
			notes++;
		}
	}
	CHECK(tensors > 0 && notes == 1);
	sp_delta_close(d);
	o.chunk_size = 1u << 16;
	o.tensor_chunk_size = 1u << 17; /* above chunk_size */
	CHECK(sp_write_delta(base, ft, out, &o, NULL, &err) != 0);
	CHECK(strstr(err.msg, "power of two") != NULL);
}

/* A failed write leaves nothing that looks like a delta, and says why. */
static void failed_write(const char *base)
{
	char out[4096], missing[4096];
	struct sp_write_opts o = {0};
	struct sp_err err;
	snprintf(out, sizeof(out), "%s/failed", test_tmpdir());
	snprintf(missing, sizeof(missing), "%s/no-such-model", test_tmpdir());
	CHECK(sp_write_delta(base, missing, out, &o, NULL, &err) != 0);
	CHECK(strstr(err.msg, "no-such-model") != NULL);
	CHECK(!sp_is_delta_dir(out));
	o.chunk_size = 5000;
	CHECK(sp_write_delta(base, base, out, &o, NULL, &err) != 0);
	CHECK(strstr(err.msg, "power of two") != NULL);
}

int main(int argc, char **argv)
{
	char base[4096], ft[4096], dbase[4096], dft[4096];
	if (argc != 2)
		return 2;
	snprintf(base, sizeof(base), "%s/edge-base", test_tmpdir());
	snprintf(ft, sizeof(ft), "%s/edge-ft", test_tmpdir());
	snprintf(dbase, sizeof(dbase), "%s/demo-base", test_tmpdir());
	snprintf(dft, sizeof(dft), "%s/demo-ft", test_tmpdir());
	if (test_sh("'%s' edge '%s' '%s'", argv[1], base, ft) ||
	    test_sh("'%s' demo '%s' '%s'", argv[1], dbase, dft))
		return 1;
	static const uint32_t chunks[] = {4096, 65536, 1u << 20};
	for (size_t i = 0; i < 3; i++) {
		roundtrip(base, ft, "edge", chunks[i]);
		roundtrip(dbase, dft, "demo", chunks[i]);
	}
	/* A delta of a model against itself: every tensor comes from the base. */
	roundtrip(dbase, dbase, "self", 1u << 20);
	default_chunks(dbase, dft);
	verify_against(dbase);
	failed_write(base);
	return test_done();
}
