/* SPDX-License-Identifier: Apache-2.0 */
/* The byte source under the delta reader (source.h), as a local file: exact reads or an error,
 * from many threads at once, and a size pinned at open. */
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>

#include "source.h"
#include "testutil.h"

#define LEN ((1u << 20) + 7)
#define READS 2000

static uint8_t want[LEN];
static struct sp_source *src;

static void *reader(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	uint8_t buf[4096];
	for (int i = 0; i < READS; i++) {
		size_t len = (size_t)rand_r(&seed) % sizeof(buf) + 1;
		uint64_t off = (uint64_t)rand_r(&seed) % (LEN - len + 1);
		CHECK(sp_source_pread(src, buf, len, off) == 0 && !memcmp(buf, want + off, len));
	}
	return NULL;
}

static void concurrent_reads(void)
{
	pthread_t t[8];
	for (uintptr_t i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, reader, (void *)(i + 1));
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
}

/* Exact reads up to the end; a read past it is an error, never a short read. */
static void exact_reads(void)
{
	uint8_t buf[16];
	CHECK(sp_source_size(src) == LEN);
	CHECK(sp_source_pread(src, buf, 16, LEN - 16) == 0 && !memcmp(buf, want + LEN - 16, 16));
	CHECK(sp_source_pread(src, buf, 0, LEN) == 0);
	CHECK(sp_source_pread(src, buf, 16, LEN - 15) == -EIO);
	CHECK(sp_source_pread(src, buf, 1, LEN + 100) == -EIO);
}

/* The file grows after open: the open source keeps its size, a new one sees the new size. */
static void pinned_size(const char *path)
{
	test_sh("printf more >> '%s'", path);
	CHECK(sp_source_size(src) == LEN);
	struct sp_err err;
	struct sp_source *again = sp_source_file_open(path, &err);
	CHECK(again && sp_source_size(again) == LEN + 4);
	sp_source_close(again);
}

int main(void)
{
	char path[4096], missing[4096];
	struct sp_err err;
	for (size_t i = 0; i < LEN; i++)
		want[i] = (uint8_t)(i * 2654435761u >> 13);
	snprintf(path, sizeof(path), "%s/delta.sparse", test_tmpdir());
	FILE *f = fopen(path, "wb");
	CHECK(f && fwrite(want, 1, LEN, f) == LEN && fclose(f) == 0);
	src = sp_source_file_open(path, &err);
	CHECK(src);
	if (!src)
		return test_done();
	exact_reads();
	concurrent_reads();
	pinned_size(path);
	sp_source_close(src);
	snprintf(missing, sizeof(missing), "%s/none", test_tmpdir());
	CHECK(!sp_source_file_open(missing, &err) && strstr(err.msg, missing) &&
	      strstr(err.msg, strerror(ENOENT)));
	return test_done();
}
