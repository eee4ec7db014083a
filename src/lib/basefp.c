/* SPDX-License-Identifier: Apache-2.0 */
#include "basefp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "io.h"

static int hash_range(int fd, uint64_t off, uint64_t len, uint64_t *h)
{
	XXH3_state_t *st = XXH3_createState();
	size_t bufsz = 1 << 20;
	uint8_t *buf = malloc(bufsz);
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
	if (fp->size == UINT64_MAX || hash_range(fd, 0, fp->header_len, &fp->header_hash) ||
	    hash_samples(fd, fp->size, &fp->sample_hash) ||
	    hash_range(fd, 0, fp->size, &fp->content_hash)) {
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
	if (hash_range(fd, 0, fp->header_len, &h) || h != fp->header_hash)
		return mismatch(path, "the header", err);
	if (hash_samples(fd, fp->size, &h) || h != fp->sample_hash)
		return mismatch(path, "the content", err);
	return 0;
}

int sp_fp_check_content(int fd, const struct sp_base_fp *fp, const char *path, struct sp_err *err)
{
	uint64_t h;
	if (hash_range(fd, 0, fp->size, &h) || h != fp->content_hash)
		return mismatch(path, "the content hash", err);
	return 0;
}
