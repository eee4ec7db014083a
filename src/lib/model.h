/* SPDX-License-Identifier: Apache-2.0 */
/* A model folder: its files (recursively, sorted), the safetensors among them, and every tensor
 * by name across shards. */
#ifndef SP_MODEL_H
#define SP_MODEL_H

#include <stdint.h>
#include <uthash.h>

#include "safetensors.h"

struct sp_mfile {
	char *name;          /* relative to the folder */
	char *path;          /* folder/name */
	uint64_t size;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t mode;       /* permission bits */
	char *link;          /* a symbolic link kept as a link: its target (size is its length) */
	int is_st;           /* parsed as safetensors */
	struct sp_st st;
	const uint8_t *map;  /* whole file, mapped on demand by sp_model_map */
};

struct sp_tensor_ref {
	const char *name;
	struct sp_tensor *t;
	uint32_t file;
	UT_hash_handle hh;
};

struct sp_model {
	char *dir;
	unsigned flags;
	struct sp_mfile *files;
	size_t nfiles;
	struct sp_tensor_ref *refs;    /* one per distinct tensor name */
	struct sp_tensor_ref *by_name; /* uthash over refs */
};

/* Read the files links point to, wherever they are: for folders the delta refers to (a base,
 * an adapter) rather than stores. */
#define SP_MODEL_FOLLOW_LINKS 1u

/* Lists dir: every regular file and symbolic link below it, parsing *.safetensors. Links are
 * kept as links unless flags say to follow them, or they are a Hugging Face snapshot's files. */
int sp_model_open(const char *dir, unsigned flags, struct sp_model *m, struct sp_err *err);
void sp_model_close(struct sp_model *m);
const struct sp_tensor_ref *sp_model_find(const struct sp_model *m, const char *name);
/* Maps file i read-only (once). */
int sp_model_map(struct sp_model *m, uint32_t i, struct sp_err *err);

#endif
