/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mmap_load: loads a model folder the way transformers does, to time it through a mount.
 *
 *   mmap_load DIR [THREADS]
 *
 * Every *.safetensors file in DIR is mapped whole; its tensors, in file order, are handed out
 * to THREADS workers (default 8), each of which copies its tensor out of the mapping into
 * memory of its own (the page faults a loader takes). Prints the seconds and the bytes copied.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct job {
	const uint8_t *src;
	uint64_t len;
};

static struct job *jobs;
static size_t njobs, cap;
static size_t next_job; /* taken atomically */
static uint64_t copied;

static _Noreturn void die(const char *what, const char *why)
{
	fprintf(stderr, "mmap_load: %s: %s\n", what, why);
	exit(1);
}

static void add_job(const uint8_t *src, uint64_t len)
{
	if (njobs == cap && !(jobs = realloc(jobs, (cap = cap ? cap * 2 : 256) * sizeof(*jobs))))
		die("jobs", "out of memory");
	jobs[njobs++] = (struct job){src, len};
}

/* Maps path and queues its tensors, in the order of their offsets (the header's order). */
static void map_file(const char *path)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	uint64_t hlen;
	if (fd < 0 || fstat(fd, &st) || pread(fd, &hlen, 8, 0) != 8 ||
	    hlen > (uint64_t)st.st_size - 8)
		die(path, "not a safetensors file");
	const uint8_t *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		die(path, "cannot map");
	cJSON *h = cJSON_ParseWithLength((const char *)m + 8, hlen), *t;
	if (!h)
		die(path, "bad header");
	const uint8_t *data = m + 8 + hlen;
	cJSON_ArrayForEach(t, h) {
		cJSON *offs = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
		if (cJSON_GetArraySize(offs) != 2)
			continue;
		uint64_t a = (uint64_t)cJSON_GetArrayItem(offs, 0)->valuedouble;
		uint64_t b = (uint64_t)cJSON_GetArrayItem(offs, 1)->valuedouble;
		add_job(data + a, b - a);
	}
	cJSON_Delete(h);
}

static int by_addr(const void *a, const void *b)
{
	const struct job *x = a, *y = b;
	return x->src < y->src ? -1 : x->src > y->src;
}

static void *worker(void *arg)
{
	(void)arg;
	uint8_t *buf = NULL;
	uint64_t have = 0, n = 0;
	for (size_t i; (i = __atomic_fetch_add(&next_job, 1, __ATOMIC_RELAXED)) < njobs;) {
		if (jobs[i].len > have && !(buf = realloc(buf, have = jobs[i].len)))
			die("copy", "out of memory");
		memcpy(buf, jobs[i].src, jobs[i].len);
		n += jobs[i].len;
	}
	free(buf);
	__atomic_fetch_add(&copied, n, __ATOMIC_RELAXED);
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads = argc == 3 ? atoi(argv[2]) : 8;
	if (argc < 2 || argc > 3 || nthreads < 1 || nthreads > 256) {
		fprintf(stderr, "usage: mmap_load DIR [THREADS]\n");
		return 2;
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	DIR *d = opendir(argv[1]);
	struct dirent *e;
	char path[4096];
	if (!d)
		die(argv[1], "cannot open");
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors")) {
			snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
			map_file(path);
		}
	}
	closedir(d);
	qsort(jobs, njobs, sizeof(*jobs), by_addr);
	pthread_t th[256];
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, worker, NULL))
			die("threads", "cannot start");
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.6f %llu\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9,
	       (unsigned long long)copied);
	return 0;
}
