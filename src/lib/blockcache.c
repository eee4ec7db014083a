/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk cache on disk. The folder holds:
 *   usage            the bytes of all block files (a native 8-byte count) and the flock(2) that
 *                    every change takes: puts, removals and eviction, across processes;
 *   XX/KEYHASH-BLOCK a block: XX (two hex digits) spreads the files over 256 folders, KEYHASH
 *                    is the XXH128 of the object string (never the string itself), BLOCK the
 *                    index; a header (struct hdr) then the bytes;
 *   XX/.tmp.XXXXXX   a block being written, renamed into place once whole, so a reader sees the
 *                    old file, the new one or none, never half of one.
 * Gets take no lock: they open, read and verify, and a file removed or replaced meanwhile stays
 * readable through the descriptor (Linux). Puts write under the lock, so a temporary file seen
 * by an eviction (which also holds it) is a dead writer's. Nothing is fsync'd: a block torn by
 * a crash fails its checksum on the next hit and is fetched again.
 * Recency is a file's mtime: set by its put, and by a hit when older than REFRESH_S.
 */
#include "blockcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "sparse/util.h"

#define FANOUT 256
/* A hit rewrites a file's time at most once a minute: the order of eviction needs no finer. */
#define REFRESH_S 60
/* Keep free at least 5% of the file system, and 1 GiB: a cache must never be what fills a disk
 * (logs, downloads and the models beside it need room; f_bavail already leaves out root's
 * reserve, which protects only root). */
#define FLOOR_SHARE 20
#define FLOOR_MIN (1ull << 30)
/* An eviction goes down to 90% of the bound (and a tenth of it above the floor), so that it
 * runs once per tenth of the bound put, not on every put. */
#define SLACK(max) ((max) / 10)
#define NAME_LEN 49 /* 32 hex digits of the key hash, '-', 16 of the block */
#define TMP_NAME ".tmp."

static const char MAGIC[8] = "SPBLKC1";

/* Native byte order: a cache is one machine's; another's fails the magic and is refetched. */
struct hdr {
	char magic[8];
	uint64_t len, hash, key_lo, key_hi, block;
};

struct sp_blockcache {
	char *dir;
	uint64_t max;
	int usage_fd; /* -1: a read-only cache, which serves what it has */
	pid_t pid;    /* the process that opened usage_fd */
	pthread_mutex_t mu; /* flock excludes other processes, not this one's threads */
};

struct key {
	XXH128_hash_t obj;
	uint64_t block;
	unsigned sub;
	char path[PATH_MAX];
};

/* One block file, as an eviction lists it. */
struct entry {
	char name[NAME_LEN + 1];
	uint8_t sub;
	struct timespec mtime;
	uint64_t size, disk;
};

struct listing {
	struct entry *v;
	size_t n, cap;
	uint64_t total;
};

static void key_of(const struct sp_blockcache *c, const char *object, uint64_t block,
		   struct key *k)
{
	k->obj = XXH3_128bits(object, strlen(object));
	k->block = block;
	k->sub = (unsigned)(XXH3_64bits_withSeed(&block, sizeof(block), k->obj.low64) % FANOUT);
	snprintf(k->path, sizeof(k->path), "%s/%02x/%016llx%016llx-%016llx", c->dir, k->sub,
		 (unsigned long long)k->obj.high64, (unsigned long long)k->obj.low64,
		 (unsigned long long)block);
}

static int open_usage(struct sp_blockcache *c)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/usage", c->dir);
	c->pid = getpid();
	return c->usage_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
}

/* Under the mutex. An flock belongs to an open file, which fork shares: a child (sparsefs going
 * to the background) opens its own, or it and its parent would not exclude each other. */
static int take_flock(struct sp_blockcache *c)
{
	if (c->usage_fd >= 0 && c->pid != getpid()) {
		close(c->usage_fd);
		open_usage(c);
	}
	if (c->usage_fd < 0)
		return -1;
	while (flock(c->usage_fd, LOCK_EX))
		if (errno != EINTR)
			return -1;
	return 0;
}

static int lock(struct sp_blockcache *c)
{
	pthread_mutex_lock(&c->mu);
	if (take_flock(c) == 0)
		return 0;
	pthread_mutex_unlock(&c->mu);
	return -1;
}

static void unlock(struct sp_blockcache *c)
{
	flock(c->usage_fd, LOCK_UN);
	pthread_mutex_unlock(&c->mu);
}

/* -1 when the count is missing (a new folder) or unreadable: an eviction then counts. */
static int read_usage(struct sp_blockcache *c, uint64_t *usage)
{
	return sp_pread_full(c->usage_fd, usage, sizeof(*usage), 0);
}

/* A count that cannot be written stays as it was: the next eviction counts again. */
static void write_usage(struct sp_blockcache *c, uint64_t usage)
{
	sp_pwrite_full(c->usage_fd, &usage, sizeof(usage), 0);
}

/* The free bytes of the cache's file system, and the floor they must stay above. */
static int space(const struct sp_blockcache *c, uint64_t *avail, uint64_t *floor)
{
	struct statvfs s;
	if (statvfs(c->dir, &s))
		return -1;
	*avail = (uint64_t)s.f_bavail * s.f_frsize;
	*floor = (uint64_t)s.f_blocks * s.f_frsize / FLOOR_SHARE;
	if (*floor < FLOOR_MIN)
		*floor = FLOOR_MIN;
	return 0;
}

/* NULL: the bytes are block k, verified. Else why not: "" for no file, or what is wrong. */
static const char *read_block(int fd, const struct key *k, void *buf, size_t len,
			      struct stat *st)
{
	struct hdr h;
	if (fstat(fd, st) || !S_ISREG(st->st_mode))
		return "";
	if ((uint64_t)st->st_size != sizeof(h) + len)
		return "wrong size";
	if (sp_pread_full(fd, &h, sizeof(h), 0) || sp_pread_full(fd, buf, len, sizeof(h)))
		return "unreadable";
	if (memcmp(h.magic, MAGIC, sizeof(MAGIC)))
		return "not a block file";
	if (h.len != len || h.block != k->block || h.key_lo != k->obj.low64 ||
	    h.key_hi != k->obj.high64)
		return "another block's file";
	if (XXH3_64bits(buf, len) != h.hash)
		return "checksum mismatch";
	return NULL;
}

/* Removes a damaged block, if the name still holds the file that was read (a put may have
 * replaced it since). */
static void drop(struct sp_blockcache *c, const struct key *k, const struct stat *st,
		 const char *why)
{
	struct stat now;
	uint64_t usage;
	int rc = -1;
	if (lock(c) == 0) {
		if (stat(k->path, &now) == 0 && now.st_ino == st->st_ino &&
		    now.st_dev == st->st_dev && (rc = unlink(k->path)) == 0 &&
		    read_usage(c, &usage) == 0)
			write_usage(c, usage > (uint64_t)st->st_size ? usage - (uint64_t)st->st_size : 0);
		unlock(c);
	}
	sp_log("%s: a damaged cached block (%s): %s", k->path, why,
	       rc == 0 ? "removed, to be fetched again" : "left (cannot remove it)");
}

static void refresh(int fd, const struct stat *st)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec - st->st_mtim.tv_sec >= REFRESH_S)
		futimens(fd, NULL); /* failing, the block keeps the age of its put */
}

int sp_blockcache_get(struct sp_blockcache *c, const char *object, uint64_t block, void *buf,
		      size_t len)
{
	struct key k;
	struct stat st;
	if (!c)
		return -1;
	key_of(c, object, block, &k);
	int fd = open(k.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	const char *why = read_block(fd, &k, buf, len, &st);
	if (!why)
		refresh(fd, &st);
	else if (*why)
		drop(c, &k, &st, why);
	close(fd);
	return why ? -1 : 0;
}

int sp_blockcache_has(struct sp_blockcache *c, const char *object, uint64_t block, size_t len)
{
	struct key k;
	struct stat st;
	if (!c)
		return 0;
	key_of(c, object, block, &k);
	return lstat(k.path, &st) == 0 && S_ISREG(st.st_mode) &&
	       (uint64_t)st.st_size == sizeof(struct hdr) + len;
}

static int add_entry(struct listing *l, unsigned sub, const char *name, const struct stat *st)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct entry *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	struct entry *e = &l->v[l->n++];
	memcpy(e->name, name, NAME_LEN + 1);
	e->sub = (uint8_t)sub;
	e->mtime = st->st_mtim;
	e->size = (uint64_t)st->st_size;
	e->disk = (uint64_t)st->st_blocks * 512;
	l->total += e->size;
	return 0;
}

/* Lists the blocks of folder XX, removing the temporaries of dead writers. Names of other
 * lengths are not ours: left alone and not counted. */
static int scan_sub(const struct sp_blockcache *c, unsigned sub, struct listing *l)
{
	char path[PATH_MAX];
	struct dirent *de;
	struct stat st;
	int rc = 0;
	snprintf(path, sizeof(path), "%s/%02x", c->dir, sub);
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -1;
	while (rc == 0 && (de = readdir(d))) {
		if (!strncmp(de->d_name, TMP_NAME, strlen(TMP_NAME)))
			unlinkat(dirfd(d), de->d_name, 0);
		else if (strlen(de->d_name) == NAME_LEN &&
			 fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			 S_ISREG(st.st_mode))
			rc = add_entry(l, sub, de->d_name, &st);
	}
	closedir(d);
	return rc;
}

static int older_first(const void *a, const void *b)
{
	const struct timespec *x = &((const struct entry *)a)->mtime;
	const struct timespec *y = &((const struct entry *)b)->mtime;
	if (x->tv_sec != y->tv_sec)
		return x->tv_sec < y->tv_sec ? -1 : 1;
	return (x->tv_nsec > y->tv_nsec) - (x->tv_nsec < y->tv_nsec);
}

/* Removes the least recently used blocks until the rest and `size` more bytes fit under
 * max - SLACK, with SLACK more than the floor free; the count is set to what is left. */
static void evict(struct sp_blockcache *c, const struct listing *l, uint64_t size,
		  uint64_t *usage, uint64_t *avail, uint64_t floor)
{
	uint64_t keep = c->max - SLACK(c->max) > size ? c->max - SLACK(c->max) - size : 0;
	char path[PATH_MAX];
	*usage = l->total;
	for (size_t i = 0; i < l->n && (*usage > keep || *avail < floor + size + SLACK(c->max));
	     i++) {
		snprintf(path, sizeof(path), "%s/%02x/%s", c->dir, l->v[i].sub, l->v[i].name);
		if (unlink(path) == 0) {
			*usage -= l->v[i].size;
			*avail += l->v[i].disk;
		}
	}
	write_usage(c, *usage);
}

/* Under the lock: 0 when size more bytes fit, evicting if needed; *usage is the count. */
static int make_room(struct sp_blockcache *c, uint64_t size, uint64_t *usage)
{
	uint64_t avail, floor;
	struct listing l = {0};
	int rc = -1;
	if (space(c, &avail, &floor))
		return -1;
	if (read_usage(c, usage) == 0) {
		if (*usage + size <= c->max && avail >= floor + size)
			return 0;
		if (avail + *usage < floor + size) /* a disk others filled: no scan on every put */
			return -1;
	}
	for (unsigned sub = 0; sub < FANOUT; sub++)
		if (scan_sub(c, sub, &l))
			goto out;
	if (l.n) /* qsort wants a non-null array even when empty */
		qsort(l.v, l.n, sizeof(*l.v), older_first);
	evict(c, &l, size, usage, &avail, floor);
	rc = *usage + size <= c->max && avail >= floor + size ? 0 : -1;
out:
	free(l.v);
	return rc;
}

/* Writes block k to a temporary file beside its place; its name in tmp. */
static int write_temp(const struct sp_blockcache *c, const struct key *k, const void *buf,
		      size_t len, char *tmp, size_t tmp_size)
{
	struct hdr h = {.len = len, .hash = XXH3_64bits(buf, len), .key_lo = k->obj.low64,
			.key_hi = k->obj.high64, .block = k->block};
	memcpy(h.magic, MAGIC, sizeof(MAGIC));
	snprintf(tmp, tmp_size, "%s/%02x/" TMP_NAME "XXXXXX", c->dir, k->sub);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		snprintf(tmp, tmp_size, "%s/%02x", c->dir, k->sub);
		mkdir(tmp, 0700);
		snprintf(tmp, tmp_size, "%s/%02x/" TMP_NAME "XXXXXX", c->dir, k->sub);
		fd = mkostemp(tmp, O_CLOEXEC);
	}
	if (fd < 0)
		return -1;
	int rc = sp_pwrite_full(fd, &h, sizeof(h), 0) || sp_pwrite_full(fd, buf, len, sizeof(h));
	if (close(fd) || rc) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Renames tmp into place and counts it (less the file it replaces, if any). */
static void install(struct sp_blockcache *c, const struct key *k, const char *tmp,
		    uint64_t size, uint64_t usage)
{
	struct stat old;
	uint64_t gone = stat(k->path, &old) == 0 ? (uint64_t)old.st_size : 0;
	if (rename(tmp, k->path)) {
		unlink(tmp);
		return;
	}
	write_usage(c, usage + size > gone ? usage + size - gone : 0);
}

void sp_blockcache_put(struct sp_blockcache *c, const char *object, uint64_t block,
		       const void *buf, size_t len)
{
	struct key k;
	char tmp[PATH_MAX];
	uint64_t size = sizeof(struct hdr) + len, usage;
	if (!c || size > c->max)
		return;
	key_of(c, object, block, &k);
	if (lock(c))
		return;
	if (make_room(c, size, &usage) == 0 && write_temp(c, &k, buf, len, tmp, sizeof(tmp)) == 0)
		install(c, &k, tmp, size, usage);
	unlock(c);
}

/* The folder, made if missing; -1 with errno. */
static int make_dir(const char *dir)
{
	struct stat st;
	if (sp_mkdir_p(dir) || stat(dir, &st))
		return -1;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

struct sp_blockcache *sp_blockcache_open(const char *dir, uint64_t max_bytes, struct sp_err *err)
{
	if (strlen(dir) + sizeof("/xx/") + NAME_LEN >= PATH_MAX) {
		sp_err_set(err, "%s: cannot use as the chunk cache folder: %s", dir,
			   strerror(ENAMETOOLONG));
		return NULL;
	}
	if (make_dir(dir)) {
		sp_err_set(err, "%s: cannot make the chunk cache folder: %s", dir, strerror(errno));
		return NULL;
	}
	struct sp_blockcache *c = calloc(1, sizeof(*c));
	if (!c || !(c->dir = strdup(dir))) {
		sp_err_set(err, "%s: out of memory", dir);
		free(c);
		return NULL;
	}
	c->max = max_bytes ? max_bytes : SP_BLOCKCACHE_DEFAULT_MAX;
	pthread_mutex_init(&c->mu, NULL);
	if (open_usage(c) < 0)
		sp_log("%s/usage: cannot write the chunk cache (%s): blocks in it are used, none "
		       "added", dir, strerror(errno));
	return c;
}

void sp_blockcache_close(struct sp_blockcache *c)
{
	if (!c)
		return;
	if (c->usage_fd >= 0)
		close(c->usage_fd);
	pthread_mutex_destroy(&c->mu);
	free(c->dir);
	free(c);
}
