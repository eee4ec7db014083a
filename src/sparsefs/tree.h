/* SPDX-License-Identifier: Apache-2.0 */
/* The mounted namespace: one delta's files at the root, or one folder per delta of a directory
 * of deltas. Built once at mount time from the manifests; inode numbers index the node array from 1. */
#ifndef SPARSEFS_TREE_H
#define SPARSEFS_TREE_H

#include <stddef.h>
#include <stdint.h>
#include <uthash.h>

#include "sparse/remote.h"

struct node {
	char *name;
	uint64_t ino;
	uint64_t parent; /* inode */
	int is_dir;
	struct sp_delta *delta; /* files: the delta and its file index */
	size_t file;
	const char *link;       /* symbolic links: the target */
	uint32_t mode;          /* permission bits as recorded, 0 when not */
	uint64_t size;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint64_t *kids; /* directories: child inodes in name order */
	size_t nkids, kids_cap;
	struct node *by_name; /* directories: children by name */
	UT_hash_handle hh;
};

struct tree {
	struct node **nodes; /* nodes[ino - 1] */
	size_t n, cap;
	struct sp_delta **deltas;
	size_t ndeltas;
};

/* Opens path: a delta folder or a folder of them, local or (with r) a URL. base overrides
 * every delta's base; flags go to sp_delta_open_at. */
int tree_build(struct tree *t, struct sp_remote *r, const char *path, const char *base,
	       unsigned flags, struct sp_err *err);
void tree_free(struct tree *t);
struct node *tree_node(struct tree *t, uint64_t ino);
struct node *tree_lookup(struct tree *t, uint64_t parent, const char *name);

#endif
