/* SPDX-License-Identifier: Apache-2.0 */
/* A byte source: a local file, read with pread (safe from any number of threads). */
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sparse/util.h"

struct source_file {
	struct sp_source base;
	int fd;
	uint64_t size;
};

static int file_pread(struct sp_source *s, void *buf, size_t len, uint64_t off)
{
	return sp_pread_full(((struct source_file *)s)->fd, buf, len, off) ? -errno : 0;
}

static uint64_t file_size(const struct sp_source *s)
{
	return ((const struct source_file *)s)->size;
}

static void file_close(struct sp_source *s)
{
	close(((struct source_file *)s)->fd);
	free(s);
}

static const struct sp_source_ops file_ops = {
	.pread = file_pread,
	.size = file_size,
	.close = file_close,
	.local = 1,
};

struct sp_source *sp_source_file_open(const char *path, struct sp_err *err)
{
	struct source_file *f = calloc(1, sizeof(*f));
	struct stat st;
	if (!f || (f->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(f->fd, &st)) {
		sp_err_set(err, "%s: %s", path, strerror(errno));
		if (f && f->fd >= 0)
			close(f->fd);
		free(f);
		return NULL;
	}
	f->base.ops = &file_ops;
	f->size = (uint64_t)st.st_size;
	return &f->base;
}
