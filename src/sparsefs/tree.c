/* SPDX-License-Identifier: Apache-2.0 */
#include "tree.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static int add_delta(struct tree *t, uint64_t dir, const char *path, const char *base,
		     unsigned flags, struct sp_err *err)
{
	struct sp_delta *d = sp_delta_open(path, base, flags, err);
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

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every sub-folder of path that holds a delta becomes a folder of the mount. */
static int add_deltas_in(struct tree *t, const char *path, const char *base, unsigned flags,
			 struct sp_err *err)
{
	struct dirent **ents;
	int n = scandir(path, &ents, NULL, by_name), rc = 0, found = 0;
	if (n < 0) {
		sp_err_set(err, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char *sub = NULL;
		if (rc == 0 && ents[i]->d_name[0] != '.' &&
		    asprintf(&sub, "%s/%s", path, ents[i]->d_name) > 0 && sp_is_delta_dir(sub)) {
			const char *name = ents[i]->d_name;
			uint64_t dir = add_node(t, 1, name, strlen(name), 1);
			rc = dir ? add_delta(t, dir, sub, base, flags, err) : -1;
			found++;
		}
		free(sub);
		free(ents[i]);
	}
	free(ents);
	if (rc == 0 && !found) {
		sp_err_set(err, "%s: neither a delta (no %s) nor a directory of deltas", path,
			   SP_DELTA_FILE);
		rc = -1;
	}
	return rc;
}

int tree_build(struct tree *t, const char *path, const char *base, unsigned flags,
	       struct sp_err *err)
{
	memset(t, 0, sizeof(*t));
	err->msg[0] = 0;
	int rc = add_node(t, 0, "", 0, 1) ? 0 : -1;
	if (rc == 0)
		rc = sp_is_delta_dir(path) ? add_delta(t, 1, path, base, flags, err)
					   : add_deltas_in(t, path, base, flags, err);
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
