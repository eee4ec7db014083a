/* SPDX-License-Identifier: Apache-2.0 */
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int no_memory(const char *where, struct sp_err *err)
{
	sp_err_set(err, "%s: out of memory", where);
	return -1;
}

struct names {
	char **v;
	size_t n, cap;
};

static int names_add(struct names *ns, char *s)
{
	if (ns->n == ns->cap) {
		size_t cap = ns->cap ? ns->cap * 2 : 64;
		char **v = realloc(ns->v, cap * sizeof(*v));
		if (!v)
			return -1;
		ns->v = v;
		ns->cap = cap;
	}
	ns->v[ns->n++] = s;
	return 0;
}

/* Collects the regular files under root/rel into ns, as paths relative to root. */
static int walk(const char *root, const char *rel, struct names *ns, struct sp_err *err)
{
	char *dirpath;
	if (asprintf(&dirpath, "%s%s%s", root, *rel ? "/" : "", rel) < 0)
		return no_memory(root, err);
	DIR *dir = opendir(dirpath);
	if (!dir) {
		sp_err_set(err, "%s: %s", dirpath, strerror(errno));
		free(dirpath);
		return -1;
	}
	int rc = 0;
	struct dirent *de;
	while (rc == 0 && (de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *name, *path;
		struct stat st;
		if (asprintf(&name, "%s%s%s", rel, *rel ? "/" : "", de->d_name) < 0) {
			rc = no_memory(dirpath, err);
			break;
		}
		if (asprintf(&path, "%s/%s", root, name) < 0) {
			path = NULL;
			rc = no_memory(dirpath, err);
		} else if (lstat(path, &st)) {
			sp_err_set(err, "%s/%s: %s", dirpath, de->d_name, strerror(errno));
			rc = -1;
		} else if (S_ISDIR(st.st_mode)) {
			rc = walk(root, name, ns, err);
		} else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
			/* add_file decides what a link stands for */
			rc = names_add(ns, name) ? no_memory(dirpath, err) : 0;
			name = rc ? name : NULL;
		}
		free(path);
		free(name);
	}
	closedir(dir);
	free(dirpath);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Reads the safetensors header of f, if it has a valid one. A *.safetensors file that does not
 * parse is kept as a plain file: the delta reproduces it all the same, and a note says why. */
static void read_st_header(struct sp_mfile *f)
{
	uint8_t first8[8];
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	uint64_t len = 0;
	if (pread(fd, first8, 8, 0) == 8)
		len = sp_st_header_len(first8, f->size);
	uint8_t *head = len ? malloc(len) : NULL;
	struct sp_err why;
	sp_err_set(&why, "%s: not a safetensors file (the header length is past the end or over "
			 "%llu bytes)", f->path, (unsigned long long)SP_ST_HEADER_MAX);
	if (head && pread(fd, head, len, 0) == (ssize_t)len &&
	    sp_st_parse(head, len, f->size, &f->st, f->path, &why) == 0)
		f->is_st = 1;
	else
		sp_log("%s; stored as plain bytes", why.msg);
	free(head);
	close(fd);
}

/* Does the link at path resolve to something inside dir? */
static int points_inside(const char *dir, const char *path)
{
	char *d = realpath(dir, NULL), *t = realpath(path, NULL);
	size_t n = d ? strlen(d) : 0;
	int inside = d && t && !strncmp(d, t, n) && t[n] == '/';
	free(d);
	free(t);
	return inside;
}

/* Is path a file of a Hugging Face cache snapshot, a link into the repository's blobs? */
static int hub_blob_link(const char *path)
{
	char *t = realpath(path, NULL);
	struct stat st;
	int yes = t && strstr(path, "/snapshots/") && strstr(t, "/blobs/") && !stat(t, &st) &&
		  S_ISREG(st.st_mode);
	free(t);
	return yes;
}

/* Symbolic links are stored as links and never followed out of the folder, whose content
 * would otherwise leak into a delta, with one exception: the files of a Hugging Face cache
 * snapshot are links into the repository's blobs, and stand for those files. */
static int keep_link(const struct sp_model *m, const char *path)
{
	struct stat st;
	if (m->flags & SP_MODEL_FOLLOW_LINKS)
		return stat(path, &st) || !S_ISREG(st.st_mode);
	return points_inside(m->dir, path) || !hub_blob_link(path);
}

static int add_link(struct sp_mfile *f, const struct stat *lst, struct sp_err *err)
{
	char target[4096];
	ssize_t n = readlink(f->path, target, sizeof(target) - 1);
	if (n < 0 || !(f->link = strndup(target, (size_t)n))) {
		sp_err_set(err, "%s: %s", f->path, strerror(n < 0 ? errno : ENOMEM));
		return -1;
	}
	f->size = (uint64_t)n;
	f->mode = 0777;
	f->mtime = lst->st_mtim.tv_sec;
	f->mtime_nsec = (uint32_t)lst->st_mtim.tv_nsec;
	return 0;
}

static int add_file(struct sp_model *m, char *name, struct sp_err *err)
{
	struct sp_mfile *f = &m->files[m->nfiles++];
	struct stat st;
	f->name = name;
	if (asprintf(&f->path, "%s/%s", m->dir, name) < 0) {
		f->path = NULL;
		return no_memory(m->dir, err);
	}
	if (lstat(f->path, &st) == 0 && S_ISLNK(st.st_mode) && keep_link(m, f->path))
		return add_link(f, &st, err);
	if (stat(f->path, &st)) {
		sp_err_set(err, "%s: %s", f->path, strerror(errno));
		return -1;
	}
	f->size = (uint64_t)st.st_size;
	f->mode = st.st_mode & 07777;
	f->mtime = st.st_mtim.tv_sec;
	f->mtime_nsec = (uint32_t)st.st_mtim.tv_nsec;
	if (ends_with(name, ".safetensors"))
		read_st_header(f);
	return 0;
}

/* Indexes every tensor by name; a name seen twice keeps its first file. */
static int index_tensors(struct sp_model *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nfiles; i++)
		n += m->files[i].st.ntensors;
	m->refs = calloc(n + 1, sizeof(*m->refs));
	if (!m->refs)
		return -1;
	struct sp_tensor_ref *r = m->refs;
	for (size_t i = 0; i < m->nfiles; i++) {
		for (size_t j = 0; j < m->files[i].st.ntensors; j++) {
			struct sp_tensor *t = &m->files[i].st.tensors[j];
			if (sp_model_find(m, t->name))
				continue;
			*r = (struct sp_tensor_ref){.name = t->name, .t = t, .file = (uint32_t)i};
			HASH_ADD_KEYPTR(hh, m->by_name, r->name, strlen(r->name), r);
			r++;
		}
	}
	return 0;
}

int sp_model_open(const char *dir, unsigned flags, struct sp_model *m, struct sp_err *err)
{
	struct names ns = {0};
	memset(m, 0, sizeof(*m));
	m->flags = flags;
	if (!(m->dir = strdup(dir))) {
		no_memory(dir, err);
		goto fail;
	}
	if (walk(dir, "", &ns, err))
		goto fail;
	qsort(ns.v, ns.n, sizeof(char *), cmp_str);
	if (!(m->files = calloc(ns.n + 1, sizeof(*m->files)))) {
		no_memory(dir, err);
		goto fail;
	}
	for (size_t i = 0; i < ns.n; i++) {
		char *name = ns.v[i];
		ns.v[i] = NULL;
		if (add_file(m, name, err))
			goto fail;
	}
	if (index_tensors(m)) {
		no_memory(dir, err);
		goto fail;
	}
	free(ns.v);
	return 0;
fail:
	for (size_t i = 0; i < ns.n; i++)
		free(ns.v[i]);
	free(ns.v);
	sp_model_close(m);
	return -1;
}

void sp_model_close(struct sp_model *m)
{
	HASH_CLEAR(hh, m->by_name);
	for (size_t i = 0; i < m->nfiles; i++) {
		struct sp_mfile *f = &m->files[i];
		if (f->map && f->size)
			munmap((void *)f->map, f->size);
		sp_st_free(&f->st);
		free(f->name);
		free(f->path);
		free(f->link);
	}
	free(m->files);
	free(m->refs);
	free(m->dir);
	memset(m, 0, sizeof(*m));
}

const struct sp_tensor_ref *sp_model_find(const struct sp_model *m, const char *name)
{
	struct sp_tensor_ref *r;
	HASH_FIND_STR(m->by_name, name, r);
	return r;
}

int sp_model_map(struct sp_model *m, uint32_t i, struct sp_err *err)
{
	struct sp_mfile *f = &m->files[i];
	if (f->link) {
		sp_err_set(err, "%s: a symbolic link has no content to map", f->path);
		return -1;
	}
	if (f->map || f->size == 0)
		return 0;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	void *p = fd < 0 ? MAP_FAILED : mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		sp_err_set(err, "%s: %s", f->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	f->map = p;
	return 0;
}
