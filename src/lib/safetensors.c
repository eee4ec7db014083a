/* SPDX-License-Identifier: Apache-2.0 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

uint64_t sp_st_header_len(const uint8_t first8[8], uint64_t file_size)
{
	uint64_t n;
	memcpy(&n, first8, 8);
	if (file_size < 8 || n > SP_ST_HEADER_MAX || n > file_size - 8)
		return 0;
	return 8 + n;
}

static int parse_shape(const cJSON *js, struct sp_tensor *t)
{
	if (!cJSON_IsArray(js))
		return -1;
	t->ndim = cJSON_GetArraySize(js);
	t->shape = calloc(t->ndim ? (size_t)t->ndim : 1, sizeof(uint64_t));
	if (!t->shape)
		return -1;
	t->nelem = 1;
	int i = 0;
	const cJSON *d;
	cJSON_ArrayForEach(d, js) {
		if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15)
			return -1;
		t->shape[i++] = (uint64_t)d->valuedouble;
		if (t->shape[i - 1] && t->nelem > UINT64_MAX / t->shape[i - 1])
			return -1;
		t->nelem *= t->shape[i - 1];
	}
	return 0;
}

static int parse_offsets(const cJSON *js, uint64_t data_size, struct sp_tensor *t)
{
	const cJSON *b = cJSON_GetArrayItem(js, 0), *e = cJSON_GetArrayItem(js, 1);
	if (cJSON_GetArraySize(js) != 2 || !cJSON_IsNumber(b) || !cJSON_IsNumber(e) ||
	    b->valuedouble < 0 || e->valuedouble < b->valuedouble ||
	    e->valuedouble > (double)data_size)
		return -1;
	t->off = (uint64_t)b->valuedouble;
	t->size = (uint64_t)e->valuedouble - t->off;
	return 0;
}

/* One "name": {"dtype", "shape", "data_offsets"} entry; offsets relative to the data. */
static const char *parse_tensor(const cJSON *js, uint64_t data_size, struct sp_tensor *t)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(js, "dtype");
	if (!cJSON_IsString(dt))
		return "no dtype";
	t->name = strdup(js->string);
	t->dtype_name = strdup(dt->valuestring);
	if (!t->name || !t->dtype_name)
		return "out of memory";
	t->dtype = sp_dtype_from_name(dt->valuestring);
	if (parse_shape(cJSON_GetObjectItemCaseSensitive(js, "shape"), t))
		return "bad shape";
	if (parse_offsets(cJSON_GetObjectItemCaseSensitive(js, "data_offsets"), data_size, t))
		return "bad data_offsets";
	if (t->dtype != SP_DT_BYTES && (t->nelem > UINT64_MAX / sp_dtype_size(t->dtype) ||
					t->size != t->nelem * sp_dtype_size(t->dtype)))
		return "byte size does not match shape and dtype";
	return NULL;
}

static int by_offset(const void *a, const void *b)
{
	const struct sp_tensor *x = a, *y = b;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	return x->size < y->size ? -1 : x->size > y->size;
}

static int parse_tensors(const cJSON *root, uint64_t data_size, uint64_t base, struct sp_st *st,
			 const char *path, struct sp_err *err)
{
	st->tensors = calloc((size_t)cJSON_GetArraySize(root) + 1, sizeof(*st->tensors));
	if (!st->tensors) {
		sp_err_set(err, "%s: out of memory", path);
		return -1;
	}
	const cJSON *js;
	cJSON_ArrayForEach(js, root) {
		if (strcmp(js->string, "__metadata__") == 0)
			continue;
		struct sp_tensor *t = &st->tensors[st->ntensors++];
		const char *why = cJSON_IsObject(js) ? parse_tensor(js, data_size, t) : "not an object";
		if (why) {
			sp_err_set(err, "%s: tensor '%s': %s", path, js->string, why);
			return -1;
		}
		t->off += base;
	}
	qsort(st->tensors, st->ntensors, sizeof(*st->tensors), by_offset);
	return 0;
}

int sp_st_parse(const uint8_t *head, uint64_t head_len, uint64_t file_size, struct sp_st *st,
		const char *path, struct sp_err *err)
{
	memset(st, 0, sizeof(*st));
	if (head_len < 8 || !(st->header_len = sp_st_header_len(head, file_size)) ||
	    head_len < st->header_len) {
		sp_err_set(err, "%s: not a safetensors file (bad header length)", path);
		return -1;
	}
	cJSON *root = cJSON_ParseWithLength((const char *)head + 8, st->header_len - 8);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		sp_err_set(err, "%s: not a safetensors file (header is not a JSON object)", path);
		return -1;
	}
	int rc = parse_tensors(root, file_size - st->header_len, st->header_len, st, path, err);
	cJSON_Delete(root);
	if (rc)
		sp_st_free(st);
	return rc;
}

void sp_st_free(struct sp_st *st)
{
	for (size_t i = 0; st->tensors && i < st->ntensors; i++) {
		free(st->tensors[i].name);
		free(st->tensors[i].dtype_name);
		free(st->tensors[i].shape);
	}
	free(st->tensors);
	memset(st, 0, sizeof(*st));
}
