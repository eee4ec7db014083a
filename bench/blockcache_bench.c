/* SPDX-License-Identifier: Apache-2.0 */
/*
 * blockcache_bench: what a hit and a put of the chunk cache on disk cost, warm (the files in the
 * page cache), on one thread.
 *
 *   blockcache_bench DIR [BLOCKS [REPS]]
 *
 * In a fresh folder under DIR (removed at the end): BLOCKS blocks of 1 MiB (default 64) are put
 * into a cache large enough for all; then REPS gets (default 1000) cycle over them, and as many
 * plain preads of the same bytes from the same files (the ceiling: a hit adds an open, a
 * header read and a checksum). Then REPS puts into a cache that holds them all, REPS more
 * under a bound of a quarter of them (eviction runs as on a full cache), and, for a ceiling,
 * as many plain writes of whole files. Prints MB/s (10^6 bytes) and microseconds per block.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blockcache.h"
#include "sparse/util.h"

#define LEN (1u << 20)

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what)
{
	fprintf(stderr, "blockcache_bench: %s\n", what);
	exit(1);
}

static void report(const char *what, double secs, unsigned n)
{
	printf("%-34s %8.0f MB/s  %7.1f us/block\n", what, (double)n * LEN / secs / 1e6,
	       secs / n * 1e6);
}

/* The block files, for the preads: every regular file but the usage count. */
static char (*files)[512];
static unsigned nfiles, maxfiles;
static uint64_t hdr; /* the header before a block's bytes */

static int add_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F && st->st_size > LEN && nfiles < maxfiles && ftw->level == 2) {
		snprintf(files[nfiles++], sizeof(files[0]), "%s", path);
		hdr = (uint64_t)st->st_size - LEN;
	}
	return 0;
}

static struct sp_blockcache *open_cache(const char *dir, uint64_t max)
{
	struct sp_err err;
	struct sp_blockcache *c = sp_blockcache_open(dir, max, &err);
	if (!c)
		die(err.msg);
	return c;
}

static void gets(const char *dir, uint8_t *buf, unsigned blocks, unsigned reps)
{
	struct sp_blockcache *c = open_cache(dir, 0);
	for (unsigned b = 0; b < blocks; b++) {
		memset(buf, (int)b, LEN);
		sp_blockcache_put(c, "bench-object", b, buf, LEN);
	}
	double t = now();
	for (unsigned i = 0; i < reps; i++)
		if (sp_blockcache_get(c, "bench-object", i % blocks, buf, LEN) || buf[7] != (uint8_t)(i % blocks))
			die("a get missed or was wrong (is the file system nearly full?)");
	report("get (hit, checksum verified)", now() - t, reps);
	sp_blockcache_close(c);

	files = calloc(blocks, sizeof(*files));
	maxfiles = blocks;
	nftw(dir, add_file, 16, FTW_PHYS);
	if (nfiles != blocks)
		die("cannot find the block files");
	t = now();
	for (unsigned i = 0; i < reps; i++) {
		int fd = open(files[i % blocks], O_RDONLY);
		if (fd < 0 || sp_pread_full(fd, buf, LEN, hdr))
			die("pread");
		close(fd);
	}
	report("open+pread+close of the same files", now() - t, reps);
	free(files);
}

/* reps puts of 1 MiB into a cache of that bound. */
static void put_all(const char *dir, const char *what, uint8_t *buf, unsigned reps, uint64_t max)
{
	struct sp_blockcache *c = open_cache(dir, max);
	double t = now();
	for (unsigned i = 0; i < reps; i++) {
		buf[0] = (uint8_t)i;
		sp_blockcache_put(c, what, i, buf, LEN);
	}
	report(what, now() - t, reps);
	sp_blockcache_close(c);
}

/* The same bytes as files of one's own: each written whole to its name (one of reps / 4, so
 * that a file's old pages are dropped as an eviction would), without the cache's temporary
 * file, rename, count, lock or checksum. */
static void plain_writes(const char *dir, const uint8_t *buf, unsigned reps)
{
	char path[4200];
	double t = now();
	for (unsigned i = 0; i < reps; i++) {
		snprintf(path, sizeof(path), "%s/plain-%u", dir, i % (reps / 4));
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0 || sp_pwrite_full(fd, buf, LEN, 0) || close(fd))
			die("write");
	}
	report("open+write+close of as many files", now() - t, reps);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		die("usage: blockcache_bench DIR [BLOCKS [REPS]]");
	unsigned blocks = argc > 2 ? (unsigned)atoi(argv[2]) : 64;
	unsigned reps = argc > 3 ? (unsigned)atoi(argv[3]) : 1000;
	char dir[4096], cmd[4200];
	snprintf(dir, sizeof(dir), "%s/blockcache-bench.XXXXXX", argv[1]);
	uint8_t *buf = malloc(LEN);
	if (!blocks || reps < 4 || !buf || !mkdtemp(dir))
		die("bad arguments, or cannot make a folder there");
	gets(dir, buf, blocks, reps);
	put_all(dir, "put (bound: all, no eviction)", buf, reps, 0);
	put_all(dir, "put (bound: a quarter, evicting)", buf, reps,
		(uint64_t)reps / 4 * (LEN + 4096));
	plain_writes(dir, buf, reps);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	free(buf);
	return system(cmd) != 0;
}
