/* SPDX-License-Identifier: Apache-2.0 */
/* sparsefs --extract: a delta's files written out, decoded on several threads (extract.h). */
#include "extract.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sparse/util.h"
#include "tools.h"

/* Threads take a file's chunks in slices of about this many output bytes, ending where a chunk
 * ends (a chunk cut in two would be decoded twice). */
#define SLICE (8u << 20)

/* A regular file of the delta, written under a temporary name and renamed when whole. */
struct out {
	size_t index; /* in the delta */
	char path[PATH_MAX], tmp[PATH_MAX];
	int fd;            /* -1 until its first slice opens it, and again once it is finished */
	atomic_ulong left; /* its slices not yet written */
};

struct slice {
	struct out *o;
	uint64_t off, len;
};

struct extract {
	struct sp_delta *d;
	struct out *outs;
	size_t nouts;
	struct slice *slices;
	size_t nslices, cap;
	uint64_t max_slice; /* bytes: each thread's buffer */
	atomic_size_t next; /* the next slice to take */
	atomic_int failed;  /* a slice failed: the others stop */
	pthread_mutex_t lock; /* opening the files */
};

static int extract_link(const struct sp_file_info *f, const char *path)
{
	if (unlink(path) && errno != ENOENT) /* an earlier extract's */
		return tool_failed(path, "cannot replace it", errno);
	return symlink(f->link, path) ? tool_failed(path, "", errno) : 0;
}

/* OUT/NAME of file i, its folder made. */
static int out_path(const char *out, const struct sp_file_info *f, char *path)
{
	char dir[PATH_MAX];
	if ((size_t)snprintf(path, PATH_MAX, "%s/%s", out, f->name) >= PATH_MAX)
		return tool_failed(f->name, "", ENAMETOOLONG);
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = 0;
	return sp_mkdir_p(dir) ? tool_failed(dir, "", errno) : 0;
}

static int add_slice(struct extract *x, struct out *o, uint64_t off, uint64_t len)
{
	if (x->nslices == x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 64;
		struct slice *s = realloc(x->slices, cap * sizeof(*s));
		if (!s)
			return tool_failed("--extract", "", ENOMEM);
		x->slices = s;
		x->cap = cap;
	}
	x->slices[x->nslices++] = (struct slice){.o = o, .off = off, .len = len};
	if (len > x->max_slice)
		x->max_slice = len;
	atomic_fetch_add(&o->left, 1);
	return 0;
}

/* File o's slices: its chunks, SLICE bytes or more each (one empty slice for an empty file). */
static int plan_file(struct extract *x, struct out *o)
{
	const struct sp_file_info *f = sp_delta_file(x->d, o->index);
	uint64_t from = 0, end = f->first_chunk + f->chunk_count;
	for (uint64_t k = f->first_chunk; k < end; k++) {
		const struct sp_chunk *c = sp_delta_chunk(x->d, k);
		uint64_t to = c->out_off + c->out_len;
		if (to - from < SLICE && k + 1 < end)
			continue;
		if (add_slice(x, o, from, to - from))
			return -1;
		from = to;
	}
	return atomic_load(&o->left) ? 0 : add_slice(x, o, 0, f->size);
}

static int plan(struct extract *x, const char *out)
{
	size_t n = sp_delta_file_count(x->d);
	if (!(x->outs = calloc(n ? n : 1, sizeof(*x->outs))))
		return tool_failed("--extract", "", ENOMEM);
	for (size_t i = 0; i < n; i++) {
		const struct sp_file_info *f = sp_delta_file(x->d, i);
		struct out *o = &x->outs[x->nouts];
		if (f->link)
			continue;
		*o = (struct out){.index = i, .fd = -1};
		x->nouts++;
		if (out_path(out, f, o->path) || plan_file(x, o))
			return -1;
	}
	return 0;
}

/* The temporary file of o, made by the first slice that needs it. */
static int open_out(struct extract *x, struct out *o)
{
	int rc = 0;
	pthread_mutex_lock(&x->lock);
	if (o->fd < 0 && !o->tmp[0]) {
		char *slash = strrchr(o->path, '/');
		if ((size_t)snprintf(o->tmp, sizeof(o->tmp), "%.*s/.%.200s.sparse-XXXXXX",
				     (int)(slash - o->path), o->path, slash + 1) >= sizeof(o->tmp))
			rc = tool_failed(o->path, "", ENAMETOOLONG);
		else if ((o->fd = mkostemp(o->tmp, O_CLOEXEC)) < 0)
			rc = tool_failed(o->path, "cannot create a temporary file", errno);
		if (rc)
			o->tmp[0] = 0;
	}
	pthread_mutex_unlock(&x->lock);
	return rc;
}

/* The file's time and mode, then its final name. */
static int finish_out(struct out *o, const struct sp_file_info *f)
{
	struct timespec times[2] = {{.tv_sec = f->mtime, .tv_nsec = f->mtime_nsec},
				    {.tv_sec = f->mtime, .tv_nsec = f->mtime_nsec}};
	/* Never set-id bits from a delta; mkstemp made it 0600, a file without a mode gets 0644
	 * less the umask, as open would give it. */
	mode_t mask = umask(0);
	umask(mask);
	int rc = futimens(o->fd, times) ? tool_failed(o->path, "cannot set its time", errno)
		 : fchmod(o->fd, f->mode ? f->mode & 0777 : 0644 & ~mask)
			 ? tool_failed(o->path, "cannot set its mode", errno)
			 : 0;
	if (close(o->fd) && rc == 0)
		rc = tool_failed(o->path, "cannot write", errno);
	o->fd = -1;
	if (rc == 0 && rename(o->tmp, o->path))
		rc = tool_failed(o->path, "cannot rename the temporary file to it", errno);
	if (rc == 0)
		o->tmp[0] = 0;
	return rc;
}

/* One slice decoded into buf and written; the last of its file finishes the file. */
static int run_slice(struct extract *x, const struct slice *s, uint8_t *buf)
{
	struct out *o = s->o;
	if (open_out(x, o))
		return -1;
	for (uint64_t done = 0; done < s->len;) {
		ssize_t n = sp_delta_read(x->d, NULL, o->index, buf, s->len - done, s->off + done);
		if (n <= 0) { /* the library logged which chunk, and why */
			fprintf(stderr, "sparsefs: %s: cannot read: %s (see the line above)\n",
				o->path, strerror(n < 0 ? (int)-n : EIO));
			return -1;
		}
		if (sp_pwrite_full(o->fd, buf, (size_t)n, s->off + done))
			return tool_failed(o->path, "cannot write", errno);
		done += (uint64_t)n;
	}
	return atomic_fetch_sub(&o->left, 1) == 1 ? finish_out(o, sp_delta_file(x->d, o->index))
						  : 0;
}

static void worker(void *arg, unsigned t)
{
	struct extract *x = arg;
	uint8_t *buf = malloc(x->max_slice ? x->max_slice : 1);
	size_t k;
	(void)t;
	if (!buf) {
		tool_failed("--extract", "", ENOMEM);
		atomic_store(&x->failed, 1);
	}
	while (buf && !atomic_load(&x->failed) && (k = atomic_fetch_add(&x->next, 1)) < x->nslices)
		if (run_slice(x, &x->slices[k], buf))
			atomic_store(&x->failed, 1);
	free(buf);
}

int extract_delta(struct sp_delta *d, const char *out, unsigned threads)
{
	struct extract x = {.d = d};
	pthread_mutex_init(&x.lock, NULL);
	int rc = sp_mkdir_p(out) ? tool_failed(out, "", errno) : plan(&x, out);
	if (rc == 0) {
		sp_threads_run(threads ? threads : sp_threads_cpus(), worker, &x);
		rc = atomic_load(&x.failed) ? -1 : 0;
	}
	/* Links last: no file is then written through a link the delta made. */
	for (size_t i = 0; rc == 0 && i < sp_delta_file_count(d); i++) {
		const struct sp_file_info *f = sp_delta_file(d, i);
		char path[PATH_MAX];
		if (f->link)
			rc = out_path(out, f, path) ? -1 : extract_link(f, path);
	}
	for (size_t i = 0; i < x.nouts; i++) { /* what a failure left unfinished */
		if (x.outs[i].fd >= 0)
			close(x.outs[i].fd);
		if (x.outs[i].tmp[0])
			unlink(x.outs[i].tmp);
	}
	pthread_mutex_destroy(&x.lock);
	free(x.slices);
	free(x.outs);
	return rc;
}
