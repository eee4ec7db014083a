/* SPDX-License-Identifier: Apache-2.0 */
#include "tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct node *tree_node(struct tree *t, uint64_t ino)
{
	return ino >= 1 && ino <= t->n ? t->nodes[ino - 1] : NULL;
}

struct node *tree_lookup(struct tree *t, uint64_t parent, const char *name)
{
	struct node *dir = tree_node(t, parent), *n = NULL;
	if (dir && dir->is_dir)
		HASH_FIND_STR(dir->by_name, name, n);
	return n;
}

static uint64_t add_node(struct tree *t, uint64_t parent, const char *name, size_t len, int is_dir)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct node **p = realloc(t->nodes, cap * sizeof(*p));
		if (!p)
			return 0;
		t->nodes = p;
		t->cap = cap;
	}
	struct node *n = calloc(1, sizeof(*n)), *dir = tree_node(t, parent);
	if (!n || !(n->name = strndup(name, len))) {
		free(n);
		return 0;
	}
	t->nodes[t->n++] = n;
	n->ino = t->n;
	n->parent = parent;
	n->is_dir = is_dir;
	n->mtime = time(NULL);
	uint64_t ino = t->n;
	if (dir) {
		if (dir->nkids == dir->kids_cap) {
			size_t cap = dir->kids_cap ? dir->kids_cap * 2 : 8;
			uint64_t *k = realloc(dir->kids, cap * sizeof(*k));
			if (!k)
				return 0;
			dir->kids = k;
			dir->kids_cap = cap;
		}
		dir->kids[dir->nkids++] = ino;
		HASH_ADD_KEYPTR(hh, dir->by_name, n->name, strlen(n->name), n);
	}
	return ino;
}

/* Adds a delta's file under dir, creating the folders of its path on the way. */
static int add_file(struct tree *t, uint64_t dir, struct sp_delta *d, size_t i, struct sp_err *err)
{
	const struct sp_file_info *f = sp_delta_file(d, i);
	const char *p = f->name;
	for (const char *slash; (slash = strchr(p, '/')); p = slash + 1) {
		char part[256];
		snprintf(part, sizeof(part), "%.*s", (int)(slash - p), p);
		struct node *n = tree_lookup(t, dir, part);
		if (n && !n->is_dir)
			goto clash;
		dir = n ? n->ino : add_node(t, dir, p, (size_t)(slash - p), 1);
		if (!dir)
			return -1;
	}
	if (tree_lookup(t, dir, p))
		goto clash;
	uint64_t ino = add_node(t, dir, p, strlen(p), 0);
	if (!ino)
		return -1;
	struct node *n = tree_node(t, ino);
	n->delta = d;
	n->file = i;
	n->link = f->link;
	n->mode = f->mode;
	n->size = f->size;
	n->mtime = f->mtime;
	n->mtime_nsec = f->mtime_nsec;
	return 0;
clash:
	sp_err_set(err, "%s: file %s appears twice in the manifest", sp_delta_path(d), f->name);
	return -1;
}

static int add_delta(struct tree *t, uint64_t dir, struct sp_remote *r, const char *path,
		     const char *base, unsigned flags, struct sp_err *err)
{
	struct sp_delta *d = sp_delta_open_at(r, path, base, flags, err);
	if (!d)
		return -1;
	struct sp_delta **p = realloc(t->deltas, (t->ndeltas + 1) * sizeof(*p));
	if (!p) {
		sp_delta_close(d);
		return -1;
	}
	t->deltas = p;
	t->deltas[t->ndeltas++] = d;
	for (size_t i = 0; i < sp_delta_file_count(d); i++)
		if (add_file(t, dir, d, i, err))
			return -1;
	return 0;
}

/* Each of the deltas named in a folder (or prefix) of them becomes a folder of the mount. */
static int add_deltas_in(struct tree *t, struct sp_remote *r, const char *path, char **names,
			 size_t n, const char *base, unsigned flags, struct sp_err *err)
{
	size_t len = strlen(path);
	const char *sep = len && path[len - 1] == '/' ? "" : "/"; /* "s3://b/deltas/" too */
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char *sub = NULL;
		uint64_t dir = add_node(t, 1, names[i], strlen(names[i]), 1);
		rc = dir && asprintf(&sub, "%s%s%s", path, sep, names[i]) > 0
			     ? add_delta(t, dir, r, sub, base, flags, err)
			     : -1;
		free(sub);
	}
	return rc;
}

int tree_build(struct tree *t, struct sp_remote *r, const char *path, const char *base,
	       unsigned flags, struct sp_err *err)
{
	char **names = NULL;
	size_t n = 0;
	memset(t, 0, sizeof(*t));
	err->msg[0] = 0;
	int rc = add_node(t, 0, "", 0, 1) ? 0 : -1;
	if (rc == 0) {
		int one = sp_list_deltas(r, path, &names, &n, err);
		rc = one < 0  ? -1
		     : one ? add_delta(t, 1, r, path, base, flags, err)
			   : add_deltas_in(t, r, path, names, n, base, flags, err);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	if (rc) {
		if (!err->msg[0])
			sp_err_set(err, "%s: out of memory", path);
		tree_free(t);
	}
	return rc;
}

void tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		HASH_CLEAR(hh, t->nodes[i]->by_name);
		free(t->nodes[i]->name);
		free(t->nodes[i]->kids);
		free(t->nodes[i]);
	}
	for (size_t i = 0; i < t->ndeltas; i++)
		sp_delta_close(t->deltas[i]);
	free(t->nodes);
	free(t->deltas);
	memset(t, 0, sizeof(*t));
}
