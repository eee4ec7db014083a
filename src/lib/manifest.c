/* SPDX-License-Identifier: Apache-2.0 */
#include "manifest.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *sp_json_hash(uint64_t h)
{
	char hex[17];
	snprintf(hex, sizeof(hex), "%016" PRIx64, h);
	return cJSON_CreateString(hex);
}

int sp_json_get_hash(const cJSON *obj, const char *key, uint64_t *h)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(obj, key);
	char *end;
	if (!cJSON_IsString(js) || strlen(js->valuestring) != 16)
		return -1;
	*h = strtoull(js->valuestring, &end, 16);
	return *end ? -1 : 0;
}

static void add_u64(cJSON *obj, const char *key, uint64_t v)
{
	cJSON_AddNumberToObject(obj, key, (double)v);
}

cJSON *sp_manifest_base_fp(const struct sp_base_fp *fp)
{
	cJSON *js = cJSON_CreateObject();
	cJSON_AddStringToObject(js, "name", fp->name);
	add_u64(js, "size", fp->size);
	add_u64(js, "header_len", fp->header_len);
	cJSON_AddItemToObject(js, "header_hash", sp_json_hash(fp->header_hash));
	cJSON_AddItemToObject(js, "sample_hash", sp_json_hash(fp->sample_hash));
	cJSON_AddItemToObject(js, "content_hash", sp_json_hash(fp->content_hash));
	return js;
}

cJSON *sp_manifest_file(const struct sp_file_info *f)
{
	cJSON *js = cJSON_CreateObject();
	cJSON_AddStringToObject(js, "name", f->name);
	add_u64(js, "size", f->size);
	cJSON_AddNumberToObject(js, "mtime", (double)f->mtime);
	add_u64(js, "mtime_nsec", f->mtime_nsec);
	add_u64(js, "first_chunk", f->first_chunk);
	add_u64(js, "chunk_count", f->chunk_count);
	add_u64(js, "mode", f->mode);
	if (f->link)
		cJSON_AddStringToObject(js, "link", f->link);
	return js;
}

cJSON *sp_manifest_tensor(const struct sp_tensor *t, const struct sp_tensor *base)
{
	cJSON *js = cJSON_CreateObject(), *shape = cJSON_AddArrayToObject(js, "shape");
	cJSON_AddStringToObject(js, "name", t->name);
	cJSON_AddStringToObject(js, "dtype", t->dtype_name);
	for (int i = 0; i < t->ndim; i++)
		cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[i]));
	add_u64(js, "offset", t->off);
	add_u64(js, "size", t->size);
	if (base) {
		cJSON *bshape = cJSON_AddArrayToObject(js, "base_shape");
		cJSON_AddStringToObject(js, "base_dtype", base->dtype_name);
		for (int i = 0; i < base->ndim; i++)
			cJSON_AddItemToArray(bshape, cJSON_CreateNumber((double)base->shape[i]));
	}
	return js;
}

/* A non-negative integer below 2^53 (where doubles stop being exact). */
static int get_u64(const cJSON *obj, const char *key, uint64_t *v)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!cJSON_IsNumber(js) || js->valuedouble < 0 || js->valuedouble > 9007199254740992.0 ||
	    js->valuedouble != (double)(uint64_t)js->valuedouble)
		return -1;
	*v = (uint64_t)js->valuedouble;
	return 0;
}

static const char *get_str(const cJSON *obj, const char *key)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(js) ? js->valuestring : NULL;
}

static int parse_base_fp(const cJSON *js, struct sp_base_fp *fp)
{
	const char *name = get_str(js, "name");
	if (!name || get_u64(js, "size", &fp->size) || get_u64(js, "header_len", &fp->header_len) ||
	    sp_json_get_hash(js, "header_hash", &fp->header_hash) ||
	    sp_json_get_hash(js, "sample_hash", &fp->sample_hash) ||
	    sp_json_get_hash(js, "content_hash", &fp->content_hash))
		return -1;
	fp->name = (char *)name;
	return 0;
}

/* A file name must stay inside the mount: relative, no "." or ".." parts, no empty parts. */
static int safe_name(const char *name)
{
	if (!*name || *name == '/')
		return 0;
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		p += n;
		if (*p == '/')
			p++;
		if (!*p && p[-1] == '/')
			return 0;
	}
	return 1;
}

static int parse_file(const cJSON *js, uint64_t chunk_count, struct sp_file_info *f)
{
	uint64_t nsec = 0, mode = 0;
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(js, "mtime");
	f->name = get_str(js, "name");
	if (!f->name || !safe_name(f->name) || get_u64(js, "size", &f->size) ||
	    get_u64(js, "first_chunk", &f->first_chunk) ||
	    get_u64(js, "chunk_count", &f->chunk_count) || get_u64(js, "mtime_nsec", &nsec) ||
	    !cJSON_IsNumber(mt) || !(fabs(mt->valuedouble) < 9.2e18) || nsec >= 1000000000u)
		return -1;
	f->mtime = (int64_t)mt->valuedouble;
	f->mtime_nsec = (uint32_t)nsec;
	const cJSON *link = cJSON_GetObjectItemCaseSensitive(js, "link");
	if (link && (!cJSON_IsString(link) || !*link->valuestring ||
		     strlen(link->valuestring) != f->size || f->chunk_count))
		return -1;
	f->link = link ? link->valuestring : NULL;
	if (cJSON_GetObjectItemCaseSensitive(js, "mode") && (get_u64(js, "mode", &mode) || mode > 07777))
		return -1;
	f->mode = (uint32_t)mode;
	return f->first_chunk > chunk_count || f->chunk_count > chunk_count - f->first_chunk ? -1 : 0;
}

static int parse_base(const cJSON *base, struct sp_manifest *m)
{
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(base, "files"), *js;
	m->base_path = get_str(base, "path");
	m->base_relpath = get_str(base, "relpath");
	if (!m->base_path || !cJSON_IsArray(files))
		return -1;
	m->base = calloc((size_t)cJSON_GetArraySize(files) + 1, sizeof(*m->base));
	if (!m->base)
		return -1;
	cJSON_ArrayForEach(js, files)
		if (parse_base_fp(js, &m->base[m->nbase++]))
			return -1;
	return 0;
}

static int parse_files(const cJSON *files, uint64_t chunk_count, struct sp_manifest *m)
{
	const cJSON *js;
	if (!cJSON_IsArray(files))
		return -1;
	m->files = calloc((size_t)cJSON_GetArraySize(files) + 1, sizeof(*m->files));
	if (!m->files)
		return -1;
	cJSON_ArrayForEach(js, files)
		if (parse_file(js, chunk_count, &m->files[m->nfiles++]))
			return -1;
	return 0;
}

int sp_manifest_parse(const char *json, size_t len, uint64_t chunk_count, struct sp_manifest *m,
		      const char *path, struct sp_err *err)
{
	uint64_t cs = 0;
	memset(m, 0, sizeof(*m));
	m->root = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(m->root) || get_u64(m->root, "chunk_size", &cs) || cs < SP_CHUNK_MIN ||
	    cs > SP_CHUNK_MAX || !(m->mode = get_str(m->root, "mode")) ||
	    parse_base(cJSON_GetObjectItemCaseSensitive(m->root, "base"), m) ||
	    parse_files(cJSON_GetObjectItemCaseSensitive(m->root, "files"), chunk_count, m)) {
		sp_err_set(err, "%s: the manifest is malformed", path);
		sp_manifest_free(m);
		return -1;
	}
	m->chunk_size = (uint32_t)cs;
	if (cJSON_GetObjectItemCaseSensitive(m->root, "aux_chunks") &&
	    get_u64(m->root, "aux_chunks", &m->aux_chunks)) {
		sp_err_set(err, "%s: the manifest is malformed (aux_chunks)", path);
		sp_manifest_free(m);
		return -1;
	}
	return 0;
}

void sp_manifest_free(struct sp_manifest *m)
{
	cJSON_Delete(m->root);
	free(m->base);
	free(m->files);
	memset(m, 0, sizeof(*m));
}
