/* SPDX-License-Identifier: Apache-2.0 */
#include "load_st.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A model folder holding this file: sp_model_open wants a folder. */
static const struct sp_mfile *load(struct sp_model *m, const char *path, struct sp_err *err)
{
	char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
	const char *name = slash ? path + (slash - dir) + 1 : path;
	if (!dir) {
		sp_err_set(err, "%s: out of memory", path);
		return NULL;
	}
	if (slash)
		*slash = 0;
	int bad = sp_model_open(slash ? dir : ".", SP_MODEL_FOLLOW_LINKS, m, err);
	free(dir);
	if (bad)
		return NULL;
	for (uint32_t i = 0; i < m->nfiles; i++)
		if (!strcmp(m->files[i].name, name) && m->files[i].is_st)
			return sp_model_map(m, i, err) ? NULL : &m->files[i];
	sp_err_set(err, "%s: not a safetensors file", path);
	return NULL;
}

const struct sp_mfile *bench_load_st(struct sp_model *m, const char *path, const char *prog)
{
	struct sp_err err;
	const struct sp_mfile *f = load(m, path, &err);
	if (!f) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		exit(1);
	}
	return f;
}
