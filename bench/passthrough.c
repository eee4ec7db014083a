/* SPDX-License-Identifier: Apache-2.0 */
/*
 * passthrough: the ceiling that FUSE itself allows, for the benchmarks. A read-only mirror of a
 * folder on libfuse's high-level API with its default options: each read is one pread of the
 * file underneath, nothing cached or decoded in between.
 *
 *   passthrough SOURCE_DIR MOUNTPOINT [FUSE options, e.g. -f]
 */
#define FUSE_USE_VERSION 35
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char source[PATH_MAX];

/* SOURCE/path (path begins with '/'). */
static const char *real(const char *path, char *buf)
{
	snprintf(buf, PATH_MAX, "%s%s", source, path);
	return buf;
}

static int pt_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	char buf[PATH_MAX];
	int rc = fi ? fstat((int)fi->fh, st) : lstat(real(path, buf), st);
	return rc ? -errno : 0;
}

static int pt_readdir(const char *path, void *out, fuse_fill_dir_t fill, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	char buf[PATH_MAX];
	struct dirent *e;
	(void)off, (void)fi, (void)flags;
	DIR *d = opendir(real(path, buf));
	if (!d)
		return -errno;
	while ((e = readdir(d)))
		fill(out, e->d_name, NULL, 0, 0);
	closedir(d);
	return 0;
}

static int pt_open(const char *path, struct fuse_file_info *fi)
{
	char buf[PATH_MAX];
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	int fd = open(real(path, buf), O_RDONLY);
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int pt_read(const char *path, char *out, size_t len, off_t off, struct fuse_file_info *fi)
{
	(void)path;
	ssize_t n = pread((int)fi->fh, out, len, off);
	return n < 0 ? -errno : (int)n;
}

static int pt_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static const struct fuse_operations ops = {
	.getattr = pt_getattr,
	.readdir = pt_readdir,
	.open = pt_open,
	.read = pt_read,
	.release = pt_release,
};

int main(int argc, char **argv)
{
	if (argc < 3 || !realpath(argv[1], source)) {
		fprintf(stderr, "usage: passthrough SOURCE_DIR MOUNTPOINT [FUSE options]\n");
		return 2;
	}
	argv[1] = argv[0]; /* fuse_main takes MOUNTPOINT and the options */
	return fuse_main(argc - 1, argv + 1, &ops, NULL);
}
