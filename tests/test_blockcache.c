/* SPDX-License-Identifier: Apache-2.0 */
/* The chunk cache on disk: blocks back as they were put, also after a reopen; a damaged file is
 * a miss and is removed; the bound kept by evicting the least recently used first; three
 * processes (two threads each) sharing one folder; the free-space floor (root only); folders
 * that cannot be made or written. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <limits.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blockcache.h"
#include "testutil.h"

#define BLOCK (64 << 10)
#define MAX_FILES 4096

static int damaged_logs;

static void count_log(const char *line)
{
	if (strstr(line, "damaged"))
		damaged_logs++;
	fprintf(stderr, "log: %s\n", line);
}

/* The bytes of block b of object obj: what every put and get of it agrees on. */
static void fill(uint8_t *buf, size_t len, const char *obj, uint64_t b)
{
	unsigned seed = (unsigned)(b * 2654435761u) ^ (unsigned)strlen(obj) ^ (unsigned)obj[0];
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)rand_r(&seed);
}

static int hit(struct sp_blockcache *c, const char *obj, uint64_t b, size_t len)
{
	uint8_t *got = malloc(len), *want = malloc(len);
	int rc = sp_blockcache_get(c, obj, b, got, len);
	fill(want, len, obj, b);
	if (rc == 0)
		CHECK(memcmp(got, want, len) == 0);
	free(got);
	free(want);
	return rc == 0;
}

static void put(struct sp_blockcache *c, const char *obj, uint64_t b, size_t len)
{
	uint8_t *buf = malloc(len);
	fill(buf, len, obj, b);
	sp_blockcache_put(c, obj, b, buf, len);
	free(buf);
}

/* The block files under a cache folder (the usage count is not one). */
static char files[MAX_FILES][512];
static uint64_t sizes[MAX_FILES];
static size_t nfiles;

static int add_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type == FTW_F && strcmp(path + ftw->base, "usage") && nfiles < MAX_FILES) {
		snprintf(files[nfiles], sizeof(files[0]), "%s", path);
		sizes[nfiles++] = (uint64_t)st->st_size;
	}
	return 0;
}

static uint64_t list_files(const char *dir)
{
	uint64_t total = 0;
	nfiles = 0;
	nftw(dir, add_file, 16, FTW_PHYS);
	for (size_t i = 0; i < nfiles; i++)
		total += sizes[i];
	return total;
}

static char *subdir(const char *name)
{
	char *p;
	if (asprintf(&p, "%s/%s", test_tmpdir(), name) < 0)
		exit(1);
	return p;
}

static struct sp_blockcache *open_ok(const char *dir, uint64_t max)
{
	struct sp_err err;
	struct sp_blockcache *c = sp_blockcache_open(dir, max, &err);
	if (!c) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	return c;
}

static void round_trip(void)
{
	char *dir = subdir("rt");
	const char *obj = "http://127.0.0.1/d/delta.sparse\n\"5f3e-1000\"\n123456789";
	struct sp_blockcache *c = open_ok(dir, 0);
	for (uint64_t b = 0; b < 4; b++)
		put(c, obj, b, b == 3 ? 1000 : BLOCK);
	put(c, obj, 7, 0);
	for (uint64_t b = 0; b < 4; b++)
		CHECK(hit(c, obj, b, b == 3 ? 1000 : BLOCK));
	CHECK(hit(c, obj, 7, 0));
	CHECK(!hit(c, obj, 4, BLOCK));
	CHECK(!hit(c, "another object", 0, BLOCK));
	CHECK(sp_blockcache_has(c, obj, 3, 1000) && !sp_blockcache_has(c, obj, 3, BLOCK));
	CHECK(!sp_blockcache_has(c, obj, 4, BLOCK) && !sp_blockcache_has(NULL, obj, 0, 0));
	sp_blockcache_close(c);
	c = open_ok(dir, 0); /* as after an unmount or a reboot */
	CHECK(hit(c, obj, 1, BLOCK));
	sp_blockcache_close(c);
	/* The object string is hashed for names, never written. */
	test_sh("! grep -rqF -e 127.0.0.1 -e 5f3e-1000 '%s' && ! ls -R '%s' | grep -q 5f3e", dir, dir);
	sp_blockcache_close(NULL);
	CHECK(sp_blockcache_get(NULL, obj, 0, NULL, 0) == -1);
	sp_blockcache_put(NULL, obj, 0, NULL, 0);
	free(dir);
}

/* Flips one byte of the only block file, or cuts it short. */
static void damage(const char *dir, int cut)
{
	list_files(dir);
	CHECK(nfiles == 1);
	if (cut)
		CHECK(truncate(files[0], (off_t)sizes[0] - 1) == 0);
	else
		test_sh("printf 'X' | dd of='%s' bs=1 seek=%llu conv=notrunc status=none", files[0],
			(unsigned long long)sizes[0] / 2);
}

static void damaged_is_miss(void)
{
	char *dir = subdir("damaged");
	struct sp_blockcache *c = open_ok(dir, 0);
	for (int cut = 0; cut < 2; cut++) {
		int logs = damaged_logs;
		put(c, "obj", 5, BLOCK);
		damage(dir, cut);
		CHECK(!hit(c, "obj", 5, BLOCK));
		CHECK(damaged_logs == logs + 1);
		CHECK(list_files(dir) == 0);
		put(c, "obj", 5, BLOCK); /* fetched again */
		CHECK(hit(c, "obj", 5, BLOCK));
		sp_blockcache_get(c, "obj", 5, NULL, 0); /* another length: not this block's file */
		CHECK(list_files(dir) == 0);
	}
	sp_blockcache_close(c);
	free(dir);
}

/* Dates the file that the last put made `ago` seconds back: a file's time is coarse (a clock
 * tick), so puts in a row may share one; the test needs their order. */
static char known[MAX_FILES][512];
static size_t nknown;

static void date_new(const char *dir, time_t ago)
{
	struct timespec t[2];
	clock_gettime(CLOCK_REALTIME, &t[0]);
	t[0].tv_sec -= ago;
	t[1] = t[0];
	list_files(dir);
	for (size_t i = 0; i < nfiles; i++) {
		size_t k = 0;
		while (k < nknown && strcmp(known[k], files[i]))
			k++;
		if (k < nknown)
			continue;
		CHECK(utimensat(AT_FDCWD, files[i], t, 0) == 0);
		memcpy(known[nknown++], files[i], sizeof(known[0]));
	}
}

static void eviction(void)
{
	char *dir = subdir("lru");
	struct sp_blockcache *c = open_ok(dir, 0);
	put(c, "size", 0, BLOCK);
	uint64_t slot = list_files(dir); /* a block's file: its bytes and a header */
	sp_blockcache_close(c);
	test_sh("rm -rf '%s'", dir);
	uint64_t max = 8 * slot + slot / 2;
	c = open_ok(dir, max);
	for (uint64_t b = 0; b < 8; b++) {
		put(c, "lru", b, BLOCK);
		date_new(dir, 3600 - (time_t)b); /* put in order, an hour ago */
	}
	CHECK(list_files(dir) == 8 * slot);
	CHECK(hit(c, "lru", 0, BLOCK)); /* now the most recent */
	put(c, "lru", 8, BLOCK);
	CHECK(list_files(dir) <= max);
	CHECK(hit(c, "lru", 0, BLOCK));
	CHECK(!hit(c, "lru", 1, BLOCK));
	CHECK(hit(c, "lru", 8, BLOCK));
	for (uint64_t b = 9; b < 60; b++) {
		put(c, "lru", b, BLOCK);
		CHECK(list_files(dir) <= max);
		CHECK(hit(c, "lru", b, BLOCK));
	}
	put(c, "lru", 99, (size_t)max); /* larger than the whole cache: not cached */
	CHECK(!hit(c, "lru", 99, (size_t)max));
	sp_blockcache_close(c);
	free(dir);
}

struct worker {
	struct sp_blockcache *c;
	char own[32];
	unsigned seed;
	int hits;
};

/* Puts and gets blocks of an object every worker shares and of one of its own. */
static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 300; i++) {
		const char *obj = rand_r(&w->seed) % 2 ? "shared" : w->own;
		uint64_t b = (uint64_t)(rand_r(&w->seed) % 24);
		if (hit(w->c, obj, b, BLOCK))
			w->hits++;
		else
			put(w->c, obj, b, BLOCK);
	}
	return NULL;
}

/* Two threads of work on c; its exit status: 0 when every hit was right and some were hits. */
static int child(struct sp_blockcache *c, int id)
{
	struct worker w[2];
	pthread_t t[2];
	damaged_logs = 0;
	for (int i = 0; i < 2; i++) {
		w[i] = (struct worker){.c = c, .seed = (unsigned)(id * 2 + i + 1)};
		snprintf(w[i].own, sizeof(w[i].own), "own-%d-%d", id, i);
		pthread_create(&t[i], NULL, work, &w[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	sp_blockcache_close(c);
	fprintf(stderr, "process %d: %d and %d hits\n", id, w[0].hits, w[1].hits);
	return test_failures || damaged_logs || !w[0].hits || !w[1].hits;
}

/* Three processes on one folder: two share the cache their parent opened and used before it
 * forked (as a mount that goes to the background), one opens its own (another mount). After
 * them, the usage count (a private file: 8 bytes, native order) is the bytes of the blocks. */
static void processes(void)
{
	char *dir = subdir("shared");
	uint64_t max = 40 * (BLOCK + 4096); /* far fewer than the 168 blocks: evictions as they run */
	struct sp_blockcache *c = open_ok(dir, max);
	pid_t pid[3];
	int status;
	uint64_t usage = 0;
	put(c, "shared", 0, BLOCK);
	for (int i = 0; i < 3; i++)
		if ((pid[i] = fork()) == 0)
			_exit(child(i < 2 ? c : open_ok(dir, max), i));
	for (int i = 0; i < 3; i++) {
		CHECK(waitpid(pid[i], &status, 0) == pid[i]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	sp_blockcache_close(c);
	char *path = subdir("shared/usage");
	FILE *f = fopen(path, "rb");
	CHECK(f && fread(&usage, sizeof(usage), 1, f) == 1);
	if (f)
		fclose(f);
	CHECK(usage == list_files(dir));
	CHECK(usage <= max);
	test_sh("! find '%s' -name '.tmp.*' | grep -q .", dir);
	free(path);
	free(dir);
}

/* The descriptor of this process open on path, or -1. */
static int find_fd(const char *path)
{
	char link[64], target[PATH_MAX], want[PATH_MAX];
	if (!realpath(path, want))
		return -1;
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		if (n > 0 && (target[n] = 0, !strcmp(target, want)))
			return fd;
	}
	return -1;
}

/* A forked child does not share its parent's lock (an flock belongs to an open file, which
 * fork shares): while the parent holds it, through the very descriptor the cache opened, the
 * child's put waits. */
static void fork_excludes(void)
{
	char *dir = subdir("fork"), *usage = subdir("fork/usage");
	struct sp_blockcache *c = open_ok(dir, 0);
	int fd = find_fd(usage), status;
	CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		put(c, "fork", 1, BLOCK);
		_exit(0);
	}
	usleep(300 * 1000); /* time enough for a put that did not wait */
	CHECK(list_files(dir) == 0);
	CHECK(flock(fd, LOCK_UN) == 0);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(hit(c, "fork", 1, BLOCK));
	sp_blockcache_close(c);
	free(usage);
	free(dir);
}

/* In a child: a tmpfs of 1100 MiB mounted on a folder in a mount namespace of its own, gone
 * with the child. The floor there is 1 GiB (5% is less): the cache keeps what fits above it,
 * evicting as it goes, and keeps serving what it just put. 77 where it cannot mount. */
static int floor_child(void)
{
	char *mnt = subdir("floor"), *dir = subdir("floor/cache");
	const size_t len = 1 << 20;
	struct statvfs s;
	if (mkdir(mnt, 0700) || unshare(CLONE_NEWNS) ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", mnt, "tmpfs", 0, "size=1100m")) {
		fprintf(stderr, "free-space floor: skipped (%s: cannot mount a tmpfs there: %s)\n",
			mnt, strerror(errno));
		return 77;
	}
	struct sp_blockcache *c = open_ok(dir, 0);
	for (uint64_t b = 0; b < 120; b++) {
		put(c, "floor", b, len);
		CHECK(statvfs(mnt, &s) == 0 && (uint64_t)s.f_bavail * s.f_frsize >= 1ull << 30);
		CHECK(hit(c, "floor", b, len));
	}
	CHECK(!hit(c, "floor", 0, len)); /* evicted: 1100 - 1024 MiB hold fewer than 120 */
	sp_blockcache_close(c);
	return test_failures != 0;
}

static void free_space_floor(void)
{
	int status;
	pid_t pid = fork();
	if (pid == 0)
		_exit(floor_child());
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 77));
}

/* A folder that cannot be made; one whose count cannot be written; one where no file can. */
static void unwritable(void)
{
	struct sp_err err;
	char *file = subdir("plain-file"), *under = subdir("plain-file/cache");
	test_sh("touch '%s'", file);
	CHECK(sp_blockcache_open(under, 0, &err) == NULL);
	CHECK(strstr(err.msg, under) && strstr(err.msg, strerror(ENOTDIR)));

	char *dir = subdir("readonly");
	struct sp_blockcache *c = open_ok(dir, 0);
	put(c, "ro", 1, BLOCK);
	sp_blockcache_close(c);
	test_sh("rm '%s/usage' && mkdir '%s/usage'", dir, dir);
	c = open_ok(dir, 0);
	CHECK(hit(c, "ro", 1, BLOCK)); /* served, */
	put(c, "ro", 2, BLOCK);
	CHECK(!hit(c, "ro", 2, BLOCK)); /* but nothing added */
	sp_blockcache_close(c);

	pid_t pid = fork();
	if (pid == 0) { /* no byte may be written: every put fails */
		struct rlimit none = {0, 0};
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &none);
		char *full = subdir("full");
		c = open_ok(full, 0);
		put(c, "full", 1, BLOCK);
		CHECK(!hit(c, "full", 1, BLOCK));
		sp_blockcache_close(c);
		CHECK(list_files(full) == 0);
		test_sh("! find '%s' -name '.tmp.*' | grep -q .", full);
		_exit(test_failures != 0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(file);
	free(under);
	free(dir);
}

int main(void)
{
	struct statvfs s;
	if (statvfs(test_tmpdir(), &s) == 0 &&
	    (uint64_t)s.f_bavail * s.f_frsize < (uint64_t)s.f_blocks * s.f_frsize / 20 + (2ull << 30)) {
		fprintf(stderr, "skipped: %s is too full: the cache keeps 5%% (and 1 GiB) free\n",
			test_tmpdir());
		return 77;
	}
	sp_set_log(count_log);
	round_trip();
	damaged_is_miss();
	eviction();
	processes();
	fork_excludes();
	free_space_floor();
	unwritable();
	return test_done();
}
