/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reads a delta by URL through the library as sparsefs does (open, fork, then read on many
 * threads) and compares every byte of every file with the fine-tune's.
 *
 *   remote_read [-c CAFILE] [-b BEARER_FILE] [-C CACHE_DIR] [-j THREADS] [-r READ] [-W] URL
 *               BASE_DIR FT_DIR
 *   remote_read list [-c CAFILE] WHERE        prints what sp_list_deltas says
 *
 * -e ENDPOINT, -g REGION (either form): an S3 store's, as sparsefs -o endpoint=, region=.
 * -C "": no chunk cache on disk. -W: after opening, waits for a line on stdin before reading.
 * Prints the open time, the bytes read and the read time; exit 1 at the first difference or
 * failure.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sparse/remote.h"
#include "sparse/sparse.h"

static struct sp_delta *delta;
static struct sp_cache *cache;
static const char *ft_dir;
static size_t read_len = 1 << 20;
static atomic_size_t next_file;
static atomic_ullong total;
static atomic_int failed;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int same_file(size_t i, char *got, char *want)
{
	const struct sp_file_info *f = sp_delta_file(delta, i);
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", ft_dir, f->name);
	int fd = open(path, O_RDONLY);
	if (fd < 0 || f->link) {
		if (fd >= 0)
			close(fd);
		return f->link ? 0 : (perror(path), -1);
	}
	for (uint64_t off = 0; off < f->size;) {
		ssize_t n = sp_delta_read(delta, cache, i, got, read_len, off);
		int same = n > 0 && pread(fd, want, (size_t)n, (off_t)off) == n &&
			   !memcmp(got, want, (size_t)n);
		if (!same) {
			fprintf(stderr, "%s: %s at %llu\n", f->name, n > 0 ? "differs" : "read fails",
				(unsigned long long)off);
			close(fd);
			return -1;
		}
		off += (uint64_t)n;
		total += (uint64_t)n;
	}
	close(fd);
	return 0;
}

static void *reader(void *arg)
{
	(void)arg;
	char *got = malloc(read_len), *want = malloc(read_len);
	for (size_t i; !failed && (i = next_file++) < sp_delta_file_count(delta);)
		if (!got || !want || same_file(i, got, want))
			failed = 1;
	free(got);
	free(want);
	return NULL;
}

static int read_all(int threads)
{
	pthread_t t[64];
	double t0 = now();
	cache = sp_cache_new(SP_CACHE_DEFAULT);
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, reader, NULL);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double s = now() - t0;
	printf("read %llu bytes in %.3f s (%.0f MB/s)\n", (unsigned long long)total, s,
	       (double)total / s / 1e6);
	sp_cache_free(cache);
	return failed;
}

static int list(struct sp_remote *r, const char *where)
{
	char **names;
	size_t n;
	struct sp_err err;
	int rc = sp_list_deltas(r, where, &names, &n, &err);
	if (rc < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	printf(rc ? "a delta\n" : "%zu deltas\n", n);
	for (size_t i = 0; i < n; i++) {
		printf("%s\n", names[i]);
		free(names[i]);
	}
	free(names);
	return 0;
}

/* args: URL BASE_DIR FT_DIR */
static int open_and_read(struct sp_remote *r, char **args, int threads, int pause_first)
{
	struct sp_err err;
	char line[16];
	ft_dir = args[2];
	double t0 = now();
	if (!(delta = sp_delta_open_at(r, args[0], args[1], 0, &err)))
		return fprintf(stderr, "%s\n", err.msg), 1;
	printf("opened in %.3f s\n", now() - t0);
	fflush(stdout);
	int st = 1;
	if (!pause_first || fgets(line, sizeof(line), stdin)) {
		pid_t pid = fork(); /* as sparsefs going to the background: no thread may be lost */
		if (pid == 0) {
			alarm(240); /* a reader that hangs ends before ctest's timeout, not never */
			_exit(read_all(threads) | fflush(stdout));
		}
		waitpid(pid, &st, 0);
	}
	sp_delta_close(delta);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
	struct sp_remote_opts o = {0};
	struct sp_err err;
	int threads = 8, c, pause_first = 0, listing = argc > 1 && !strcmp(argv[1], "list");
	optind += listing;
	while ((c = getopt(argc, argv, "c:b:C:e:g:j:r:W")) != -1) {
		if (c == 'c')
			o.cafile = optarg;
		else if (c == 'e')
			o.endpoint = optarg;
		else if (c == 'g')
			o.region = optarg;
		else if (c == 'b')
			o.bearer_file = optarg;
		else if (c == 'C')
			o.cache_dir = optarg;
		else if (c == 'j')
			threads = atoi(optarg) < 1 ? 1 : atoi(optarg) > 64 ? 64 : atoi(optarg);
		else if (c == 'W')
			pause_first = 1;
		else if (c == 'r')
			read_len = (size_t)strtoul(optarg, NULL, 0);
		else
			return 2;
	}
	if (argc - optind != (listing ? 1 : 3) || !read_len)
		return fprintf(stderr, "usage: see remote_read.c\n"), 2;
	struct sp_remote *r = sp_remote_new(&o, &err);
	if (!r)
		return fprintf(stderr, "%s\n", err.msg), 1;
	int rc = listing ? list(r, argv[optind]) : open_and_read(r, argv + optind, threads, pause_first);
	sp_remote_free(r);
	return rc;
}
