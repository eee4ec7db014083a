/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Load on a mounted delta, in the manner of erofs-utils' stress: PROCS processes of THREADS
 * threads each do random aligned and unaligned preads, mmap reads, re-opens and page cache drops
 * on the mounted files for SECONDS, and compare every byte they read with the original file.
 * Dropping pages makes the kernel ask the daemon again, so the load reaches it rather than
 * the page cache. A watchdog fails the run if the workers do not finish well after SECONDS
 * (a daemon that deadlocks under a saturated request queue).
 *
 * usage: stress MOUNT_DIR ORIG_DIR [SECONDS [PROCS [THREADS [DAEMON_PID [CACHE_BYTES
 *               [MAX_MIB]]]]]]
 * Prints the operations, the bytes compared and, given DAEMON_PID, the daemon's peak RSS
 * (VmHWM) next to CACHE_BYTES. Exits 1 on any mismatch, error or hang, or when the daemon's
 * peak RSS passed MAX_MIB.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 256
#define MAX_PROCS 64
#define MAX_LEN (1u << 20)
/* How long past SECONDS the workers may take before the run counts as hung. */
#define GRACE 60

enum op { OP_PREAD, OP_UNALIGNED, OP_MMAP, OP_REOPEN, OP_DROP, OP_COUNT };
static const char *op_names[OP_COUNT] = {"pread", "unaligned", "mmap", "reopen", "drop"};

struct file {
	char rel[1024];
	uint64_t size;
};

/* Shared by every process (an anonymous shared mapping). */
struct totals {
	atomic_ullong ops[OP_COUNT];
	atomic_ullong bytes;
	atomic_ullong failures;
};

static struct file files[MAX_FILES];
static int nfiles;
static const char *mount_dir, *orig_dir;
static struct totals *tot;
static double deadline;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int add_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type != FTW_F || !S_ISREG(st->st_mode) || st->st_size == 0 || nfiles == MAX_FILES)
		return 0;
	snprintf(files[nfiles].rel, sizeof(files[nfiles].rel), "%s", path + strlen(orig_dir) + 1);
	files[nfiles++].size = (uint64_t)st->st_size;
	return 0;
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int open_in(const char *dir, const char *rel)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);
		if (n <= 0)
			return -1;
		buf += n, len -= (size_t)n, off += (uint64_t)n;
	}
	return 0;
}

struct worker {
	uint64_t seed;
	int mnt[MAX_FILES], orig[MAX_FILES];
	uint8_t *got, *want;
};

static void failed(const struct file *f, enum op op, uint64_t off, size_t len, const char *why)
{
	fprintf(stderr, "stress: %s: %s of %zu bytes at %llu: %s\n", f->rel, op_names[op], len,
		(unsigned long long)off, why);
	atomic_fetch_add(&tot->failures, 1);
}

/* Reads [off, off+len) of file i from the mount the way op says, into w->got. */
static const char *read_mounted(struct worker *w, int i, enum op op, uint64_t off, size_t len)
{
	if (op == OP_MMAP) {
		uint64_t start = off & ~(uint64_t)4095;
		size_t span = (size_t)(off - start) + len;
		uint8_t *p = mmap(NULL, span, PROT_READ, MAP_SHARED, w->mnt[i], (off_t)start);
		if (p == MAP_FAILED)
			return strerror(errno);
		memcpy(w->got, p + (off - start), len); /* a fault here would be SIGBUS: no EIO */
		munmap(p, span);
		return NULL;
	}
	if (op == OP_REOPEN) {
		close(w->mnt[i]);
		if ((w->mnt[i] = open_in(mount_dir, files[i].rel)) < 0)
			return strerror(errno);
	}
	if (op == OP_DROP)
		posix_fadvise(w->mnt[i], (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
	return pread_full(w->mnt[i], w->got, len, off) ? strerror(errno ? errno : EIO) : NULL;
}

static void one_op(struct worker *w)
{
	int i = (int)(next_rand(&w->seed) % (uint64_t)nfiles);
	const struct file *f = &files[i];
	enum op op = (enum op)(next_rand(&w->seed) % OP_COUNT);
	uint64_t off = next_rand(&w->seed) % f->size;
	size_t len = 1 + (size_t)(next_rand(&w->seed) % MAX_LEN);
	if (op == OP_PREAD) {
		off &= ~(uint64_t)4095;
		len = (size_t)4096 << (next_rand(&w->seed) % 9);
	}
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	const char *why = read_mounted(w, i, op, off, len);
	if (!why && pread_full(w->orig[i], w->want, len, off))
		why = "the original does not read";
	if (!why && memcmp(w->got, w->want, len))
		why = "bytes differ from the original";
	if (why)
		failed(f, op, off, len, why);
	atomic_fetch_add(&tot->ops[op], 1);
	atomic_fetch_add(&tot->bytes, why ? 0 : len);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->got = malloc(MAX_LEN);
	w->want = malloc(MAX_LEN);
	for (int i = 0; i < nfiles; i++) {
		w->mnt[i] = open_in(mount_dir, files[i].rel);
		w->orig[i] = open_in(orig_dir, files[i].rel);
		if (w->mnt[i] < 0 || w->orig[i] < 0) {
			failed(&files[i], OP_REOPEN, 0, 0, "does not open");
			return NULL;
		}
	}
	while (w->got && w->want && now() < deadline)
		one_op(w);
	for (int i = 0; i < nfiles; i++) {
		close(w->mnt[i]);
		close(w->orig[i]);
	}
	free(w->got);
	free(w->want);
	return NULL;
}

static void process_main(int proc, int threads)
{
	pthread_t tid[64];
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	if (!w)
		_exit(1);
	for (int t = 0; t < threads; t++) {
		w[t].seed = 0x9e3779b97f4a7c15ull ^ ((uint64_t)getpid() << 20) ^ ((uint64_t)proc << 8) ^
			    (uint64_t)t ^ (uint64_t)time(NULL);
		pthread_create(&tid[t], NULL, worker_main, &w[t]);
	}
	for (int t = 0; t < threads; t++)
		pthread_join(tid[t], NULL);
	free(w);
	_exit(0);
}

/* Field (VmRSS, VmHWM) of pid's status in MiB, or -1. */
static double status_mib(long pid, const char *field)
{
	char path[64], line[256], want[32];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	snprintf(want, sizeof(want), "%s: %%ld kB", field);
	FILE *f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, want, &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb < 0 ? -1 : kb / 1024.0;
}

/* Waits for the workers; 0 when all ended well, -1 when one failed or they hung. */
static int wait_all(pid_t *pids, int procs, double limit)
{
	int left = procs, rc = 0;
	while (left && now() < limit) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);
		if (p > 0) {
			left--;
			rc |= !WIFEXITED(status) || WEXITSTATUS(status) ? -1 : 0;
		} else {
			usleep(100000);
		}
	}
	if (!left)
		return rc;
	fprintf(stderr, "stress: %d of %d processes still running %d s after the end: the mount "
			"hangs\n", left, procs, GRACE);
	for (int i = 0; i < procs; i++)
		kill(pids[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	return -1;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 9) {
		fprintf(stderr, "usage: stress MOUNT_DIR ORIG_DIR [SECONDS [PROCS [THREADS "
				"[DAEMON_PID [CACHE_BYTES [MAX_MIB]]]]]]\n");
		return 2;
	}
	mount_dir = argv[1];
	orig_dir = argv[2];
	double seconds = argc > 3 ? atof(argv[3]) : 20;
	int procs = argc > 4 ? atoi(argv[4]) : 4, threads = argc > 5 ? atoi(argv[5]) : 4;
	long daemon = argc > 6 ? atol(argv[6]) : 0;
	unsigned long long cache = argc > 7 ? strtoull(argv[7], NULL, 0) : 0;
	double max_mib = argc > 8 ? atof(argv[8]) : 0;
	if (seconds <= 0 || procs < 1 || procs > MAX_PROCS || threads < 1 || threads > 64) {
		fprintf(stderr, "stress: bad SECONDS, PROCS (1-%d) or THREADS (1-64)\n", MAX_PROCS);
		return 2;
	}
	if (nftw(orig_dir, add_file, 16, FTW_PHYS) || nfiles == 0) {
		fprintf(stderr, "stress: %s: no files to read\n", orig_dir);
		return 2;
	}
	tot = mmap(NULL, sizeof(*tot), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (tot == MAP_FAILED)
		return 2;
	double rss0 = daemon > 0 ? status_mib(daemon, "VmRSS") : 0, t0 = now();
	deadline = t0 + seconds;
	pid_t pids[MAX_PROCS];
	for (int p = 0; p < procs; p++)
		if ((pids[p] = fork()) == 0)
			process_main(p, threads);
	int rc = wait_all(pids, procs, deadline + GRACE);
	double took = now() - t0;
	unsigned long long ops = 0;
	printf("stress: %d processes x %d threads, %.1f s, %d files:", procs, threads, took, nfiles);
	for (int i = 0; i < OP_COUNT; i++) {
		ops += tot->ops[i];
		printf(" %s %llu", op_names[i], (unsigned long long)tot->ops[i]);
	}
	printf("\nstress: %llu operations, %llu bytes compared (%.1f MB/s), %llu failures\n", ops,
	       (unsigned long long)tot->bytes, (double)tot->bytes / took / 1e6,
	       (unsigned long long)tot->failures);
	double hwm = daemon > 0 ? status_mib(daemon, "VmHWM") : -1;
	if (daemon > 0)
		printf("stress: daemon %ld peak RSS (VmHWM) %.1f MiB (%.1f MiB before the load); "
		       "cache bound %.1f MiB\n", daemon, hwm, rss0, (double)cache / 1048576.0);
	if (max_mib > 0 && hwm > max_mib) {
		fprintf(stderr, "stress: the daemon's peak RSS, %.1f MiB, passed its bound, %.1f MiB\n",
			hwm, max_mib);
		rc = -1;
	}
	return rc || tot->failures || ops == 0 ? 1 : 0;
}
