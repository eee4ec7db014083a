/* SPDX-License-Identifier: Apache-2.0 */
#include "basefp.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "sparse/util.h"

int sp_fp_hash_range(int fd, uint64_t off, uint64_t len, uint64_t *h)
{
	XXH3_state_t *st = XXH3_createState();
	size_t bufsz = len < (1u << 20) ? (size_t)len : 1u << 20;
	uint8_t *buf = malloc(bufsz + 1);
	int rc = st && buf ? 0 : -1;
	if (rc == 0)
		XXH3_64bits_reset(st);
	while (rc == 0 && len) {
		size_t n = len < bufsz ? (size_t)len : bufsz;
		rc = sp_pread_full(fd, buf, n, off);
		if (rc == 0)
			XXH3_64bits_update(st, buf, n);
		off += n;
		len -= n;
	}
	if (rc == 0)
		*h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	free(buf);
	return rc;
}

/* SP_FP_SAMPLES blocks at offsets spread evenly over the file, hashed as one stream. */
static int hash_samples(int fd, uint64_t size, uint64_t *h)
{
	uint8_t buf[SP_FP_SAMPLE_SIZE];
	XXH3_state_t *st = XXH3_createState();
	if (!st)
		return -1;
	XXH3_64bits_reset(st);
	int rc = 0;
	uint64_t blk = size < SP_FP_SAMPLE_SIZE ? size : SP_FP_SAMPLE_SIZE;
	for (int i = 0; rc == 0 && i < SP_FP_SAMPLES; i++) {
		uint64_t off = (size - blk) / (SP_FP_SAMPLES - 1) * (uint64_t)i;
		rc = sp_pread_full(fd, buf, (size_t)blk, off);
		XXH3_64bits_update(st, buf, (size_t)blk);
	}
	*h = XXH3_64bits_digest(st);
	XXH3_freeState(st);
	return rc;
}

static uint64_t fd_size(int fd)
{
	struct stat st;
	return fstat(fd, &st) ? UINT64_MAX : (uint64_t)st.st_size;
}

int sp_fp_compute(int fd, uint64_t header_len, struct sp_base_fp *fp, const char *path,
		  struct sp_err *err)
{
	fp->size = fd_size(fd);
	fp->header_len = header_len < fp->size ? header_len : fp->size;
	if (fp->size == UINT64_MAX || sp_fp_hash_range(fd, 0, fp->header_len, &fp->header_hash) ||
	    hash_samples(fd, fp->size, &fp->sample_hash) ||
	    sp_fp_hash_range(fd, 0, fp->size, &fp->content_hash)) {
		sp_err_set(err, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
		return -1;
	}
	return 0;
}

static int mismatch(const char *path, const char *what, struct sp_err *err)
{
	sp_err_set(err,
		   "%s: %s differs from the base this delta was made against "
		   "(wrong base? -o base=DIR says where the right one is)",
		   path, what);
	return -1;
}

int sp_fp_check_quick(int fd, const struct sp_base_fp *fp, const char *path, struct sp_err *err)
{
	uint64_t h;
	if (fd_size(fd) != fp->size)
		return mismatch(path, "the size", err);
	if (fp->hashless)
		return 0;
	if (fp->whole)
		return sp_fp_hash_range(fd, 0, fp->size, &h) || h != fp->content_hash
			       ? mismatch(path, "the content", err)
			       : 0;
	if (sp_fp_hash_range(fd, 0, fp->header_len, &h) || h != fp->header_hash)
		return mismatch(path, "the header", err);
	if (hash_samples(fd, fp->size, &h) || h != fp->sample_hash)
		return mismatch(path, "the content", err);
	return 0;
}

int sp_fp_check_content(int fd, const struct sp_base_fp *fp, const char *path, struct sp_err *err)
{
	uint64_t h;
	if (sp_fp_hash_range(fd, 0, fp->size, &h) || h != fp->content_hash)
		return mismatch(path, "the content hash", err);
	return 0;
}

/* ---- verdicts of full checks, remembered by the file's identity ---- */

/* Where the verdict on a file of this identity holding this content lives: one small file per
 * (device, inode, expected content) under $XDG_CACHE_HOME/sparse, else ~/.cache/sparse (the
 * home folder of the user when HOME is not set, as under mount(8)). NULL when there is none. */
static char *verdict_path(const struct stat *st, uint64_t hash)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	struct passwd *pw;
	if ((!home || home[0] != '/') && (pw = getpwuid(getuid())))
		home = pw->pw_dir;
	const char *top = xdg && xdg[0] == '/' ? xdg : home && home[0] == '/' ? home : NULL;
	char *p;
	if (!top || asprintf(&p, "%s%s/sparse/base-verified/%016llx-%jx-%jx", top,
			     top == xdg ? "" : "/.cache", (unsigned long long)hash,
			     (uintmax_t)st->st_dev, (uintmax_t)st->st_ino) < 0)
		return NULL;
	return p;
}

/* What a verdict file holds: the whole identity, so that a change in any part of it misses. */
static void verdict_line(char *buf, size_t n, const struct stat *st, uint64_t hash)
{
	snprintf(buf, n,
		 "sparse base verified 1: content_hash %016llx dev %ju ino %ju size %jd "
		 "mtime %jd.%09ld ctime %jd.%09ld\n",
		 (unsigned long long)hash, (uintmax_t)st->st_dev, (uintmax_t)st->st_ino,
		 (intmax_t)st->st_size, (intmax_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec,
		 (intmax_t)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

int sp_fp_verdict_known(const struct stat *st, uint64_t content_hash)
{
	char want[256], got[256];
	char *path = verdict_path(st, content_hash);
	int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	ssize_t n = fd >= 0 ? read(fd, got, sizeof(got)) : -1;
	if (fd >= 0)
		close(fd);
	free(path);
	verdict_line(want, sizeof(want), st, content_hash);
	return n > 0 && (size_t)n == strlen(want) && !memcmp(got, want, (size_t)n);
}

/* Writes line to path under a temporary name, then renames it: a reader sees all of it or
 * nothing. Any failure leaves nothing behind. */
static void write_whole(const char *path, const char *line)
{
	char *dir = strdup(path), *tmp = NULL;
	if (!dir)
		return;
	*strrchr(dir, '/') = 0;
	int fd = sp_mkdir_p(dir) || asprintf(&tmp, "%s.XXXXXX", path) < 0 ? -2 : mkstemp(tmp);
	if (fd >= 0) {
		int bad = sp_pwrite_full(fd, line, strlen(line), 0);
		if (close(fd) || bad || rename(tmp, path))
			unlink(tmp);
	}
	if (fd != -2)
		free(tmp);
	free(dir);
}

void sp_fp_verdict_remember(const struct stat *st, uint64_t content_hash, time_t began)
{
	/* A file's times move in clock ticks: a write in the tick of its last change may leave
	 * them as they were, unseen by a verdict taken then. Every write moves its ctime. */
	if (st->st_ctim.tv_sec + SP_FP_TICK > began)
		return;
	char line[256], *path = verdict_path(st, content_hash);
	verdict_line(line, sizeof(line), st, content_hash);
	if (path)
		write_whole(path, line);
	free(path);
}
