/* SPDX-License-Identifier: Apache-2.0 */
/* A byte source: a local file, read with pread (safe from any number of threads). */
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

struct source_file {
	struct sp_source base;
	int fd;
	uint64_t size;
	char identity[96]; /* "dev:ino:size:mtime", as fstat saw them at open */
};

static int file_pread(struct sp_source *s, void *buf, size_t len, uint64_t off)
{
	return sp_pread_full(((struct source_file *)s)->fd, buf, len, off) ? -errno : 0;
}

static uint64_t file_size(const struct sp_source *s)
{
	return ((const struct source_file *)s)->size;
}

static const char *file_identity(const struct sp_source *s)
{
	return ((const struct source_file *)s)->identity;
}

static void file_close(struct sp_source *s)
{
	close(((struct source_file *)s)->fd);
	free(s);
}

static const struct sp_source_ops file_ops = {
	.pread = file_pread,
	.size = file_size,
	.identity = file_identity,
	.close = file_close,
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
	snprintf(f->identity, sizeof(f->identity), "%llu:%llu:%llu:%lld.%09ld",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		 (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	return &f->base;
}
