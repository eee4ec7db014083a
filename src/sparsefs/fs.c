/* SPDX-License-Identifier: Apache-2.0 */
/* Read-only and lazy: lookups and attributes come from the manifests, reads decode only the
 * chunks they overlap. Everything is immutable while mounted, so the kernel may cache names,
 * attributes and pages for as long as it likes. */
#include "fs.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kernel_readahead.h"
#include "sparse/util.h"
#include "xattr.h"

#define TIMEOUT 86400.0

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fill_stat(const struct fs *fs, const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = n->ino;
	/* Read-only: the recorded permissions without their write bits. */
	mode_t perm = n->mode ? (mode_t)(n->mode & 0555) : 0444;
	st->st_mode = n->is_dir ? S_IFDIR | 0555 : n->link ? S_IFLNK | 0777 : S_IFREG | perm;
	st->st_nlink = n->is_dir ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = n->is_dir ? 0 : (off_t)n->size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
	st->st_mtim.tv_sec = n->mtime;
	st->st_mtim.tv_nsec = n->mtime_nsec;
	st->st_atim = st->st_ctim = st->st_mtim;
}

/* Set once in init, before any open: pthread_once passes no argument. */
static struct fs *readahead_fs;

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	readahead_fs = fs;
	/* Nothing changes under us: let the kernel keep pages and skip revalidation. */
	conn->want |= conn->capable & FUSE_CAP_ASYNC_READ;
	conn->want &= ~(unsigned)FUSE_CAP_AUTO_INVAL_DATA;
	conn->max_read = fs->max_read; /* libfuse wants it as the mount option says */
	if (fs->splice && (conn->capable & FUSE_CAP_SPLICE_WRITE))
		conn->want |= FUSE_CAP_SPLICE_WRITE;
	else if (fs->splice)
		sp_log("-o splice: this FUSE session cannot splice: base chunks are copied");
	/* Here, not before the mount: daemonizing forks, and threads do not survive a fork. */
	if (!(fs->pool = sp_pool_new(fs->cache, fs->decoders)))
		sp_log("no decoding threads: every chunk decodes on the thread that reads it");
	else if (fs->splice)
		sp_pool_skip_base(fs->pool);
}

static void op_destroy(void *userdata)
{
	struct fs *fs = userdata;
	sp_pool_free(fs->pool);
	fs->pool = NULL;
	streams_free_all(&fs->open);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct node *n = tree_lookup(&fs->tree, parent, name);
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	struct fuse_entry_param e = {.ino = n->ino, .attr_timeout = TIMEOUT,
				     .entry_timeout = TIMEOUT};
	fill_stat(fs, n, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct fs *fs = fs_of(req);
	struct node *n = tree_node(&fs->tree, ino);
	struct stat st;
	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_stat(fs, n, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = tree_node(&fs_of(req)->tree, ino);
	if (!n)
		fuse_reply_err(req, ENOENT);
	else if (!n->is_dir)
		fuse_reply_err(req, ENOTDIR);
	else {
		fi->keep_cache = 1;
		fi->cache_readdir = 1;
		fuse_reply_open(req, fi);
	}
}

/* Entry k of a directory: ".", "..", then the children; NULL past the end. */
static const char *dirent_at(struct tree *t, struct node *dir, size_t k, struct node **who)
{
	if (k == 0 || k == 1) {
		*who = k == 0 ? dir : tree_node(t, dir->parent ? dir->parent : 1);
		return k == 0 ? "." : "..";
	}
	if (k - 2 >= dir->nkids)
		return NULL;
	*who = tree_node(t, dir->kids[k - 2]);
	return (*who)->name;
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct fs *fs = fs_of(req);
	struct node *dir = tree_node(&fs->tree, ino), *who;
	char *buf = malloc(size);
	size_t used = 0;
	const char *name;
	if (!dir || !dir->is_dir || !buf) {
		free(buf);
		fuse_reply_err(req, !buf ? ENOMEM : ENOTDIR);
		return;
	}
	for (size_t k = (size_t)off; (name = dirent_at(&fs->tree, dir, k, &who)); k++) {
		struct stat st;
		fill_stat(fs, who, &st);
		size_t need = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)k + 1);
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void readahead_once(void)
{
	raise_readahead(readahead_fs->mountpoint, readahead_fs->readahead_kb);
}

/* A file handle carries its read streams, unless nothing is decoded ahead; with prefetch=all
 * decoding starts at once, in file order, which is tensor order. */
static void open_file(struct fs *fs, fuse_req_t req, struct node *n, struct fuse_file_info *fi)
{
	struct streams *s = NULL;
	if (fs->prefetch != PREFETCH_NONE && !(s = streams_new(&fs->open))) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fi->fh = (uintptr_t)s;
	fi->keep_cache = 1;
	/* Before the reply: after it, a release may free s at any time. */
	if (fs->prefetch == PREFETCH_ALL && fs->pool)
		sp_pool_prefetch(fs->pool, n->delta, n->file, 0, streams_start(s, fs->max_window));
	if (fuse_reply_open(req, fi))
		streams_free(&fs->open, s);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct node *n = tree_node(&fs_of(req)->tree, ino);
	/* By the first open the kernel has long processed INIT, which sets the window. */
	if (readahead_fs->readahead_kb)
		pthread_once(&once, readahead_once);
	if (!n)
		fuse_reply_err(req, ENOENT);
	else if (n->is_dir)
		fuse_reply_err(req, EISDIR);
	else if (n->link)
		fuse_reply_err(req, ELOOP);
	else if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		fuse_reply_err(req, EROFS);
	else
		open_file(fs_of(req), req, n, fi);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	streams_free(&fs_of(req)->open, (struct streams *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* Each worker thread keeps one reply buffer: a fresh one per read would be fresh pages the
 * kernel must fault in, which costs more than the decoding. */
static pthread_key_t reply_key;
static pthread_once_t reply_once = PTHREAD_ONCE_INIT;

static void reply_free(void *p)
{
	struct sp_scratch *s = p;
	free(s->p);
	free(s);
}

static void reply_key_init(void)
{
	pthread_key_create(&reply_key, reply_free);
}

static void *reply_buffer(size_t size)
{
	pthread_once(&reply_once, reply_key_init);
	struct sp_scratch *s = pthread_getspecific(reply_key);
	if (!s && (s = calloc(1, sizeof(*s))))
		pthread_setspecific(reply_key, s);
	return s ? sp_scratch_get(s, size) : NULL;
}

/* Replies with the base ranges that make [off, off + size) when nothing else does: libfuse
 * splices them from the base files into the reply, never through this process's memory (it
 * copies instead when the session cannot splice, or a pipe cannot hold the whole read). No
 * SPLICE_F_MOVE: the pages stay in the base's page cache. 0 when the copy path must serve it. */
static int read_spliced(fuse_req_t req, const struct node *n, size_t size, off_t off)
{
	struct sp_base_range r[SPLICE_RANGES];
	int k = sp_delta_base_ranges(n->delta, n->file, size, (uint64_t)off, r, SPLICE_RANGES);
	struct fuse_bufvec *bv;
	if (k == 0)
		return 0;
	if (k < 0 || !(bv = calloc(1, sizeof(*bv) + (size_t)k * sizeof(bv->buf[0])))) {
		fuse_reply_err(req, k < 0 ? -k : ENOMEM);
		return 1;
	}
	bv->count = (size_t)k;
	for (int i = 0; i < k; i++)
		bv->buf[i] = (struct fuse_buf){.size = r[i].len, .fd = r[i].fd, .pos = (off_t)r[i].pos,
					       .flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK |
							FUSE_BUF_FD_RETRY};
	fuse_reply_data(req, bv, 0);
	free(bv);
	return 1;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node *n = tree_node(&fs->tree, ino);
	struct streams *s = (struct streams *)(uintptr_t)fi->fh;
	uint64_t ahead, len;
	if (!n || n->is_dir || off < 0) {
		fuse_reply_err(req, !n ? ENOENT : n->is_dir ? EISDIR : EINVAL);
		return;
	}
	if (s && fs->pool &&
	    (len = streams_note(s, (uint64_t)off, size, fs->max_window, sp_pool_threads(fs->pool),
				&ahead)))
		sp_pool_prefetch(fs->pool, n->delta, n->file, ahead, len);
	if (fs->splice && read_spliced(req, n, size, off))
		return;
	void *buf = reply_buffer(size);
	ssize_t got = !buf     ? -ENOMEM
		      : fs->pool ? sp_pool_read(fs->pool, n->delta, n->file, buf, size, (uint64_t)off)
				 : sp_delta_read(n->delta, fs->cache, n->file, buf, size, (uint64_t)off);
	if (got < 0)
		fuse_reply_err(req, (int)-got);
	else
		fuse_reply_buf(req, buf, (size_t)got);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = tree_node(&fs_of(req)->tree, ino);
	if (!n || !n->link)
		fuse_reply_err(req, n ? EINVAL : ENOENT);
	else
		fuse_reply_readlink(req, n->link);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct fs *fs = fs_of(req);
	uint64_t bytes = 0;
	for (size_t i = 0; i < fs->tree.n; i++)
		bytes += fs->tree.nodes[i]->size;
	struct statvfs sv = {.f_bsize = 4096, .f_frsize = 4096, .f_blocks = (bytes + 4095) / 4096,
			     .f_files = fs->tree.n, .f_namemax = 255};
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops sparsefs_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
	.readlink = op_readlink,
	.statfs = op_statfs,
	.getxattr = xattr_get,
	.listxattr = xattr_list,
};
