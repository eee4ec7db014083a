/* SPDX-License-Identifier: Apache-2.0 */
#include "sparse/util.h"
#include "sparse/sparse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The whole of [off, off+len): a short transfer continues, EINTR retries, and end of file
 * (or a device that takes nothing) is EIO. */
static int full(int fd, uint8_t *p, size_t len, uint64_t off, int out)
{
	while (len) {
		ssize_t n = out ? pwrite(fd, p, len, (off_t)off) : pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0) /* else errno is the failing call's */
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int sp_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	return full(fd, buf, len, off, 0);
}

/* pwrite only reads buf: the cast drops a const that full cannot keep for pread. */
int sp_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	return full(fd, (uint8_t *)(uintptr_t)buf, len, off, 1);
}

int sp_mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	int rc = p ? 0 : -1;
	for (char *s = p ? p + 1 : NULL; rc == 0 && s && *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0755) && errno != EEXIST)
			rc = -1;
		*s = '/';
	}
	if (rc == 0 && mkdir(dir, 0755) && errno != EEXIST)
		rc = -1;
	free(p);
	return rc;
}

int sp_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	int shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' || *end == 'm' ? 20
		  : *end == 'G' || *end == 'g' ? 30 : 0;
	if (end == s || *s == '-' || (shift && end[1]) || (!shift && *end) ||
	    v > UINT64_MAX >> shift)
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}
