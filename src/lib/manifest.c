/* SPDX-License-Identifier: Apache-2.0 */
#include "manifest.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <zstd.h>

#include "codec_history.h"
#include "dtype.h"

/* Hashes travel as 16 hex digits: JSON numbers cannot hold 64 bits. */
static cJSON *json_hash(uint64_t h)
{
	char hex[17];
	snprintf(hex, sizeof(hex), "%016" PRIx64, h);
	return cJSON_CreateString(hex);
}

static int json_get_hash(const cJSON *obj, const char *key, uint64_t *h)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(obj, key);
	char *end;
	if (!cJSON_IsString(js) || strlen(js->valuestring) != 16)
		return -1;
	*h = strtoull(js->valuestring, &end, 16);
	return *end ? -1 : 0;
}

static const char *get_str(const cJSON *obj, const char *key)
{
	const cJSON *js = cJSON_GetObjectItemCaseSensitive(obj, key);
	return cJSON_IsString(js) ? js->valuestring : NULL;
}

/* A base file as listed: its entry, and its size (a cJSON array is a list: no lookups in it). */
struct draft_fp {
	cJSON *js;
	uint64_t size;
	int in_history; /* held whole by the history; kept only if it has a hash (HISTBASE) */
};

struct sp_manifest_draft {
	cJSON *root;
	cJSON *tensors; /* the next file's, as they are added */
	struct draft_fp *fps;
	size_t nfps, capfps;
	int oom; /* an entry could not be kept: packing fails */
};

/* Building the manifest: a member or an element that cannot be allocated marks the draft, which
 * then fails to pack (a manifest missing an entry would describe another delta). */
static cJSON *need(struct sp_manifest_draft *d, cJSON *js)
{
	d->oom |= !js;
	return js;
}

static void put(struct sp_manifest_draft *d, cJSON *obj, const char *key, cJSON *js)
{
	if (!js || !cJSON_AddItemToObject(obj, key, js)) {
		cJSON_Delete(js);
		d->oom = 1;
	}
}

static void push(struct sp_manifest_draft *d, cJSON *list, cJSON *js)
{
	if (!js || !cJSON_AddItemToArray(list, js)) {
		cJSON_Delete(js);
		d->oom = 1;
	}
}

static void add_u64(struct sp_manifest_draft *d, cJSON *obj, const char *key, uint64_t v)
{
	need(d, cJSON_AddNumberToObject(obj, key, (double)v));
}

static void add_str(struct sp_manifest_draft *d, cJSON *obj, const char *key, const char *v)
{
	need(d, cJSON_AddStringToObject(obj, key, v));
}

static cJSON *base_fp_json(struct sp_manifest_draft *d, const struct sp_base_fp *fp)
{
	cJSON *js = need(d, cJSON_CreateObject());
	add_str(d, js, "name", fp->name);
	add_u64(d, js, "size", fp->size);
	if (fp->size > SP_FP_WHOLE_MAX) {
		add_u64(d, js, "header_len", fp->header_len);
		put(d, js, "header_hash", json_hash(fp->header_hash));
		put(d, js, "sample_hash", json_hash(fp->sample_hash));
	}
	put(d, js, "content_hash", json_hash(fp->content_hash));
	return js;
}

/* The chunk table implies a file's first chunk (where the previous file's end) and, but for a
 * link, its size (its chunks' total). */
static cJSON *file_json(struct sp_manifest_draft *d, const struct sp_file_info *f)
{
	cJSON *js = need(d, cJSON_CreateObject());
	add_str(d, js, "name", f->name);
	if (f->link)
		add_u64(d, js, "size", f->size);
	need(d, cJSON_AddNumberToObject(js, "mtime", (double)f->mtime));
	add_u64(d, js, "mtime_nsec", f->mtime_nsec);
	add_u64(d, js, "chunk_count", f->chunk_count);
	add_u64(d, js, "mode", f->mode);
	if (f->link)
		add_str(d, js, "link", f->link);
	return js;
}

static void add_shape(struct sp_manifest_draft *d, cJSON *obj, const char *key,
		      const struct sp_tensor *t)
{
	cJSON *shape = need(d, cJSON_AddArrayToObject(obj, key));
	for (int i = 0; i < t->ndim; i++)
		push(d, shape, cJSON_CreateNumber((double)t->shape[i]));
}

static cJSON *tensor_json(struct sp_manifest_draft *d, const struct sp_tensor *t,
			  const struct sp_tensor *base)
{
	cJSON *js = need(d, cJSON_CreateObject());
	add_shape(d, js, "shape", t);
	add_str(d, js, "name", t->name);
	add_str(d, js, "dtype", t->dtype_name);
	add_u64(d, js, "offset", t->off);
	add_u64(d, js, "size", t->size);
	if (base) {
		add_shape(d, js, "base_shape", base);
		add_str(d, js, "base_dtype", base->dtype_name);
	}
	return js;
}

struct sp_manifest_draft *sp_draft_new(const char *mode, uint32_t chunk_size)
{
	struct sp_manifest_draft *d = calloc(1, sizeof(*d));
	cJSON *js = d ? cJSON_CreateObject() : NULL;
	if (!js) {
		free(d);
		return NULL;
	}
	d->root = js;
	add_str(d, js, "format", "sparse-delta");
	add_u64(d, js, "version", SP_VERSION);
	add_str(d, js, "created_by", "mksparse " SPARSE_VERSION_STRING);
	add_str(d, js, "mode", mode);
	add_u64(d, js, "chunk_size", chunk_size);
	return d;
}

void sp_draft_free(struct sp_manifest_draft *d)
{
	if (!d)
		return;
	cJSON_Delete(d->root);
	cJSON_Delete(d->tensors);
	free(d->fps);
	free(d);
}

void sp_draft_set_base(struct sp_manifest_draft *d, const char *path, const char *relpath,
		       const struct sp_hub_ref *hub)
{
	/* The output files first: the base files' names, mostly the same, compress against them. */
	need(d, cJSON_AddArrayToObject(d->root, "files"));
	cJSON *base = need(d, cJSON_AddObjectToObject(d->root, "base"));
	add_str(d, base, "path", path);
	if (hub && hub->id) {
		cJSON *js = need(d, cJSON_AddObjectToObject(base, "hub"));
		add_str(d, js, "id", hub->id);
		add_str(d, js, "revision", hub->revision);
		add_str(d, js, "commit", hub->commit);
	}
	if (relpath)
		add_str(d, base, "relpath", relpath);
	need(d, cJSON_AddArrayToObject(base, "files"));
}

static cJSON *base_files(const struct sp_manifest_draft *d)
{
	return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d->root, "base"),
						"files");
}

void sp_draft_add_base_fp(struct sp_manifest_draft *d, const struct sp_base_fp *fp)
{
	if (d->nfps == d->capfps) {
		size_t cap = d->capfps ? 2 * d->capfps : 64;
		struct draft_fp *p = realloc(d->fps, cap * sizeof(*p));
		if (!p) {
			d->oom = 1;
			return;
		}
		d->fps = p;
		d->capfps = cap;
	}
	cJSON *js = base_fp_json(d, fp);
	if (!js)
		return;
	d->fps[d->nfps++] = (struct draft_fp){.js = js, .size = fp->size};
	push(d, base_files(d), js);
}

void sp_draft_add_tensor(struct sp_manifest_draft *d, const struct sp_tensor *t,
			 const struct sp_tensor *base)
{
	if (!d->tensors)
		d->tensors = need(d, cJSON_CreateArray());
	push(d, d->tensors, tensor_json(d, t, base));
}

void sp_draft_add_file(struct sp_manifest_draft *d, const struct sp_file_info *f, int has_tensors)
{
	cJSON *js = file_json(d, f);
	if (has_tensors)
		put(d, js, "tensors", d->tensors ? d->tensors : cJSON_CreateArray());
	else
		cJSON_Delete(d->tensors);
	d->tensors = NULL;
	push(d, cJSON_GetObjectItemCaseSensitive(d->root, "files"), js);
}

void sp_draft_set_match(struct sp_manifest_draft *d, const struct sp_base_match *match)
{
	cJSON *base = cJSON_GetObjectItemCaseSensitive(d->root, "base");
	cJSON *js = need(d, cJSON_AddObjectToObject(base, "matched"));
	add_u64(d, js, "tensors", match->tensors);
	add_u64(d, js, "of_tensors", match->of_tensors);
	add_u64(d, js, "bytes", match->bytes);
	add_u64(d, js, "of_bytes", match->of_bytes);
}

void sp_draft_set_aux(struct sp_manifest_draft *d, uint64_t aux_chunks)
{
	add_u64(d, d->root, "aux_chunks", aux_chunks);
}

void sp_draft_add_history(struct sp_manifest_draft *d, const struct sp_history_seg *seg)
{
	cJSON *list = cJSON_GetObjectItemCaseSensitive(d->root, "history");
	if (!list)
		list = need(d, cJSON_AddArrayToObject(d->root, "history"));
	if (!seg->off && seg->file < d->nfps && seg->len == d->fps[seg->file].size) {
		push(d, list, cJSON_CreateNumber(seg->file)); /* a whole file */
		d->fps[seg->file].in_history = seg->len > 0; /* as a reader sees it */
		return;
	}
	cJSON *js = need(d, cJSON_CreateObject());
	add_u64(d, js, "file", seg->file);
	add_u64(d, js, "off", seg->off);
	add_u64(d, js, "len", seg->len);
	push(d, list, js);
}

void sp_draft_set_history_hash(struct sp_manifest_draft *d, uint64_t hash)
{
	put(d, d->root, "history_hash", json_hash(hash));
}

/* Does chunk c read base bytes (and so name a base file by base_file)? */
static int reads_base(const struct sp_chunk *c)
{
	return c->codec == SP_CODEC_BASE || c->codec == SP_CODEC_DELTA ||
	       c->codec == SP_CODEC_LOSSY || c->codec == SP_CODEC_PATCH;
}

/* Does chunk c read the whole of a base file of this size? */
static int reads_whole(const struct sp_chunk *c, uint64_t size)
{
	return c->codec == SP_CODEC_BASE && !c->base_off && c->out_len == size;
}

/* How chunks read a base file: */
#define READ_PART 1  /* a chunk reads part of it, */
#define READ_WHOLE 2 /* a BASE chunk reads it whole, */
#define READ_OTHER 4 /* a chunk other than BASE reads it (READ_PART too) */

static int read_as(const struct sp_chunk *c, uint64_t size)
{
	return c->codec != SP_CODEC_BASE ? READ_OTHER | READ_PART
	       : reads_whole(c, size)	 ? READ_WHOLE
					 : READ_PART;
}

/* How the delta's chunks read each base file (READ_*), or NULL when out of memory. */
static uint8_t *base_uses(const struct sp_manifest_draft *d, const struct sp_chunk *chunks,
			  size_t n)
{
	uint8_t *use = calloc(d->nfps + 1, 1);
	for (size_t k = 0; use && k < n; k++) {
		const struct sp_chunk *c = &chunks[k];
		if (reads_base(c) && c->base_file < d->nfps)
			use[c->base_file] |= (uint8_t)read_as(c, d->fps[c->base_file].size);
	}
	return use;
}

/* What a reader of SP_FEATURE_INCOMPAT_IMPLIED does without, of a small base file that chunks
 * read only whole: its content hash and size (the chunk's hash and length are the file's); of
 * one no chunk reads: its content hash; and with SP_FEATURE_INCOMPAT_HISTBASE, of a file the
 * history holds whole that only BASE chunks read, whatever its size: every hash. */
static void imply_fingerprints(struct sp_manifest_draft *d, const uint8_t *use)
{
	static const char *const hashes[] = {"content_hash", "header_len", "header_hash",
					     "sample_hash"};
	for (size_t i = 0; i < d->nfps; i++) {
		cJSON *js = d->fps[i].js;
		int all = d->fps[i].in_history && !(use[i] & READ_OTHER);
		if (!all && ((use[i] & READ_PART) || cJSON_GetObjectItemCaseSensitive(js, "header_hash")))
			continue;
		for (size_t h = 0; h < (all ? 4 : 1); h++)
			cJSON_DeleteItemFromObjectCaseSensitive(js, hashes[h]);
		if (use[i] == READ_WHOLE && d->fps[i].size <= SP_FP_WHOLE_MAX)
			cJSON_DeleteItemFromObjectCaseSensitive(js, "size");
	}
}

/* A base file the history holds whole (given by its index) that no chunk reads leaves its size
 * to the base (SP_FEATURE_INCOMPAT_HISTSIZE), the history its length; returns the bit, or 0
 * when no file does. */
static uint64_t leave_sizes_to_base(struct sp_manifest_draft *d, const uint8_t *use)
{
	cJSON *list = cJSON_GetObjectItemCaseSensitive(d->root, "history"), *js;
	uint64_t len = 0, bit = 0;
	cJSON_ArrayForEach(js, list) {
		if (!cJSON_IsNumber(js)) {
			len += (uint64_t)cJSON_GetObjectItemCaseSensitive(js, "len")->valuedouble;
			continue;
		}
		size_t i = (size_t)js->valuedouble;
		len += d->fps[i].size;
		if (d->fps[i].in_history && !use[i]) {
			cJSON_DeleteItemFromObjectCaseSensitive(d->fps[i].js, "size");
			bit = SP_FEATURE_INCOMPAT_HISTSIZE;
		}
	}
	if (bit)
		add_u64(d, d->root, "history_len", len);
	return bit;
}

int sp_draft_base_from_history(struct sp_manifest_draft *d, struct sp_chunk *chunks, size_t n)
{
	/* Without the history's hash nothing would cover them: they keep their hashes. */
	int covered = cJSON_GetObjectItemCaseSensitive(d->root, "history_hash") != NULL, any = 0;
	for (size_t i = 0; i < d->nfps; i++)
		any |= d->fps[i].in_history &= covered;
	for (size_t k = 0; k < n; k++)
		if (chunks[k].codec == SP_CODEC_BASE && chunks[k].base_file < d->nfps &&
		    d->fps[chunks[k].base_file].in_history)
			chunks[k].out_hash = 0;
	return any;
}

/* A history of the first N base files whole, in order, is written as N. */
static void count_history(struct sp_manifest_draft *d)
{
	cJSON *list = cJSON_GetObjectItemCaseSensitive(d->root, "history"), *js, *count;
	double i = 0;
	cJSON_ArrayForEach(js, list)
		if (!cJSON_IsNumber(js) || js->valuedouble != i++)
			return;
	if (i > 0 && (count = cJSON_CreateNumber(i)))
		cJSON_ReplaceItemInObjectCaseSensitive(d->root, "history", count);
}

struct name_index {
	const char *name;
	size_t i;
	UT_hash_handle hh;
};

/* The output files' names, each to its index; NULL when out of memory (*all to free). */
static struct name_index *index_names(const struct sp_manifest_draft *d, struct name_index **all)
{
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(d->root, "files"), *js;
	struct name_index *set = NULL;
	size_t i = 0;
	if (!(*all = calloc((size_t)cJSON_GetArraySize(files) + 1, sizeof(**all))))
		return NULL;
	cJSON_ArrayForEach(js, files) {
		struct name_index *e = &(*all)[i];
		*e = (struct name_index){.name = get_str(js, "name"), .i = i++};
		HASH_ADD_KEYPTR(hh, set, e->name, strlen(e->name), e);
	}
	return set;
}

/* Base file fp (detached) into list, named by output file i: a fingerprint of its name alone
 * extends a run [first, count] that ends at i, or starts one; another keeps its members. 0, or
 * 1 when out of memory. */
static int refer_name(cJSON *list, cJSON *fp, size_t i)
{
	cJSON *last = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1), *run;
	if (fp->child->next)
		return !cJSON_ReplaceItemInObjectCaseSensitive(fp, "name",
							       cJSON_CreateNumber((double)i)) ||
		       !cJSON_AddItemToArray(list, fp);
	cJSON_Delete(fp);
	if (cJSON_IsArray(last) && last->child->valuedouble + last->child->next->valuedouble == i) {
		cJSON_SetNumberValue(last->child->next, last->child->next->valuedouble + 1);
		return 0;
	}
	return !(run = cJSON_CreateArray()) || !cJSON_AddItemToArray(list, run) ||
	       !cJSON_AddItemToArray(run, cJSON_CreateNumber((double)i)) ||
	       !cJSON_AddItemToArray(run, cJSON_CreateNumber(1));
}

/* Most base files of a derived tree share their names with output files, which the manifest
 * lists already: those name them by index (SP_FEATURE_INCOMPAT_NAMEREF). Returns the bit, or 0
 * when no base file was renamed (also when memory is short: the names then stay). */
static uint64_t refer_names(struct sp_manifest_draft *d)
{
	struct name_index *all, *set = index_names(d, &all), *e;
	cJSON *base = cJSON_GetObjectItemCaseSensitive(d->root, "base"), *list = NULL, *fp;
	cJSON *old = cJSON_GetObjectItemCaseSensitive(base, "files");
	uint64_t bit = 0;
	if (set && (list = cJSON_CreateArray()))
		while ((fp = cJSON_DetachItemFromArray(old, 0))) {
			HASH_FIND_STR(set, get_str(fp, "name"), e);
			if (e) {
				d->oom |= refer_name(list, fp, e->i);
				bit = SP_FEATURE_INCOMPAT_NAMEREF;
			} else {
				d->oom |= !cJSON_AddItemToArray(list, fp);
			}
		}
	if (list)
		cJSON_ReplaceItemInObjectCaseSensitive(base, "files", list);
	HASH_CLEAR(hh, set);
	free(all);
	return bit;
}

/* Leaves out what the chunk table or the base says; returns the feature bits that needs. Only
 * on a complete draft: these steps take every entry's members as given. */
static uint64_t leave_out_implied(struct sp_manifest_draft *d, const struct sp_chunk *chunks,
				  size_t n)
{
	uint8_t *use = base_uses(d, chunks, n);
	if (!use) {
		d->oom = 1;
		return 0;
	}
	imply_fingerprints(d, use);
	uint64_t features = leave_sizes_to_base(d, use);
	free(use);
	count_history(d);
	return features | refer_names(d);
}

int sp_draft_pack(struct sp_manifest_draft *d, const struct sp_chunk *chunks, size_t n, int level,
		  struct sp_packed *out, const char *path, struct sp_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!d->oom)
		out->features = leave_out_implied(d, chunks, n);
	char *json = d->oom ? NULL : cJSON_PrintUnformatted(d->root);
	size_t cap = json ? ZSTD_compressBound(strlen(json)) : 0;
	out->data = json ? malloc(cap) : NULL;
	out->raw_len = json ? strlen(json) : 0;
	size_t zlen = out->data ? ZSTD_compress(out->data, cap, json, out->raw_len, level) : 0;
	free(json);
	if (!out->data)
		sp_err_set(err, "%s: out of memory for the manifest", path);
	else if (ZSTD_isError(zlen))
		sp_err_set(err, "%s: the manifest: %s", path, ZSTD_getErrorName(zlen));
	else {
		out->len = zlen;
		return 0;
	}
	free(out->data);
	out->data = NULL;
	return -1;
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

static int has(const cJSON *obj, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(obj, key) != NULL;
}

/* A base file's size the chunk table is to give (JSON sizes are below 2^53). */
#define SIZE_PENDING UINT64_MAX

/* A base file's fingerprint, its name given; with implied, a small file's content hash, and then
 * its size, may be left out (hashless, SIZE_PENDING, until the chunk table gives them); with
 * histbase, a larger file's hashes too (when the history holds it whole: checked later). */
static int parse_base_fp(const cJSON *js, const char *name, int implied, int histbase,
			 struct sp_base_fp *fp)
{
	fp->whole = !has(js, "header_hash") && !has(js, "header_len") && !has(js, "sample_hash");
	fp->hashless = implied && fp->whole && !has(js, "content_hash");
	fp->size = SIZE_PENDING;
	if (!name || ((!fp->hashless || has(js, "size")) && get_u64(js, "size", &fp->size)) ||
	    (!fp->hashless && json_get_hash(js, "content_hash", &fp->content_hash)))
		return -1;
	fp->name = (char *)name;
	if (fp->whole)
		return fp->size <= SP_FP_WHOLE_MAX || fp->size == SIZE_PENDING ||
			       (histbase && fp->hashless)
			       ? 0
			       : -1;
	return get_u64(js, "header_len", &fp->header_len) ||
			       json_get_hash(js, "header_hash", &fp->header_hash) ||
			       json_get_hash(js, "sample_hash", &fp->sample_hash)
		       ? -1
		       : 0;
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

/* A shape: non-negative integers whose product times elem does not overflow, and equals size
 * when exact. The product is checked as it grows: no shape wraps around to a small size. */
static int shape_ok(const cJSON *shape, uint64_t elem, uint64_t size, int exact)
{
	const cJSON *d;
	uint64_t bytes = elem;
	if (!cJSON_IsArray(shape))
		return 0;
	cJSON_ArrayForEach(d, shape) {
		uint64_t n;
		if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9007199254740992.0 ||
		    d->valuedouble != (double)(n = (uint64_t)d->valuedouble) ||
		    (n && bytes > UINT64_MAX / n))
			return 0;
		bytes *= n;
	}
	return !exact || bytes == size;
}

/* Copies a checked shape's dimensions to *dims, which it advances. */
static const uint64_t *take_shape(const cJSON *shape, uint64_t **dims, size_t *ndim)
{
	const uint64_t *first = *dims;
	const cJSON *d;
	*ndim = 0;
	cJSON_ArrayForEach(d, shape) {
		*(*dims)++ = (uint64_t)d->valuedouble;
		++*ndim;
	}
	return first;
}

/* A tensor entry (--info and the log lines read it): its bytes lie inside its file, and its
 * shape and dtype give its size (a dtype this reader does not know may have any size). */
static int parse_tensor(const cJSON *js, uint64_t file_size, struct sp_tensor_info *t,
			uint64_t **dims)
{
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(js, "shape");
	const cJSON *bshape = cJSON_GetObjectItemCaseSensitive(js, "base_shape");
	t->name = get_str(js, "name");
	t->dtype = get_str(js, "dtype");
	if (!t->name || !t->dtype || get_u64(js, "offset", &t->offset) ||
	    get_u64(js, "size", &t->size) || t->offset > file_size || t->size > file_size - t->offset)
		return -1;
	enum sp_dtype dtype = sp_dtype_from_name(t->dtype);
	if (!shape_ok(shape, dtype == SP_DT_BYTES ? 1 : sp_dtype_size(dtype), t->size,
		      dtype != SP_DT_BYTES))
		return -1;
	t->shape = take_shape(shape, dims, &t->ndim);
	if (!bshape)
		return 0;
	if (!shape_ok(bshape, 1, 0, 0) || !(t->base_dtype = get_str(js, "base_dtype")))
		return -1;
	t->base_shape = take_shape(bshape, dims, &t->base_ndim);
	return 0;
}

/* The dimensions of every shape of a tensor list: what parse_tensors needs room for. */
static size_t count_dims(const cJSON *ts)
{
	const cJSON *t;
	size_t n = 0;
	cJSON_ArrayForEach(t, ts) {
		n += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "shape"));
		n += (size_t)cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "base_shape"));
	}
	return n;
}

/* A safetensors file's tensor list into ft; -1 when malformed (ENOMEM counts as that). */
static int parse_tensors(const cJSON *ts, uint64_t file_size, struct sp_file_tensors *ft)
{
	const cJSON *js;
	if (!ts)
		return 0;
	if (!cJSON_IsArray(ts))
		return -1;
	ft->present = 1;
	ft->t = calloc((size_t)cJSON_GetArraySize(ts) + 1, sizeof(*ft->t));
	ft->dims = calloc(count_dims(ts) + 1, sizeof(*ft->dims));
	if (!ft->t || !ft->dims)
		return -1;
	uint64_t *dims = ft->dims;
	cJSON_ArrayForEach(js, ts)
		if (!cJSON_IsObject(js) || parse_tensor(js, file_size, &ft->t[ft->n++], &dims))
			return -1;
	return 0;
}

/* A file's run of chunks and its size. With SP_FEATURE_INCOMPAT_IMPLIED either may be left to
 * the table: the run then starts at next (where the previous file's ends), and the size is what
 * the run's chunks add up to. */
static const char *parse_chunks(const cJSON *js, const struct sp_manifest_table *t, uint64_t next,
				struct sp_file_info *f)
{
	int implied = (t->features & SP_FEATURE_INCOMPAT_IMPLIED) != 0;
	f->first_chunk = next;
	if (get_u64(js, "chunk_count", &f->chunk_count) ||
	    ((!implied || has(js, "first_chunk")) && get_u64(js, "first_chunk", &f->first_chunk)))
		return "a file's chunks";
	if (f->first_chunk > t->count || f->chunk_count > t->count - f->first_chunk)
		return "a chunk range outside the chunk table";
	if (!implied || has(js, "size"))
		return get_u64(js, "size", &f->size) ? "a file's size" : NULL;
	f->size = 0;
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++)
		f->size += t->chunks[k].out_len;
	return NULL;
}

/* Why file entry js is wrong, or NULL. */
static const char *parse_file(const cJSON *js, const struct sp_manifest_table *t, uint64_t next,
			      struct sp_file_info *f, struct sp_file_tensors *ft)
{
	uint64_t nsec = 0, mode = 0;
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(js, "mtime");
	const char *why;
	if (!(f->name = get_str(js, "name")))
		return "a file without a name";
	if (!safe_name(f->name))
		return "a file name that leaves the mount (absolute, empty, '.' or '..')";
	if ((why = parse_chunks(js, t, next, f)))
		return why;
	if (get_u64(js, "mtime_nsec", &nsec) || !cJSON_IsNumber(mt) ||
	    !(fabs(mt->valuedouble) < 9.2e18) || nsec >= 1000000000u)
		return "a file's time"; /* an mtime past int64 would not convert */
	f->mtime = (int64_t)mt->valuedouble;
	f->mtime_nsec = (uint32_t)nsec;
	const cJSON *link = cJSON_GetObjectItemCaseSensitive(js, "link");
	if (link && (!cJSON_IsString(link) || !*link->valuestring ||
		     strlen(link->valuestring) != f->size || f->chunk_count))
		return "a link's target";
	f->link = link ? link->valuestring : NULL;
	if (cJSON_GetObjectItemCaseSensitive(js, "mode") && (get_u64(js, "mode", &mode) || mode > 07777))
		return "a file's mode";
	f->mode = (uint32_t)mode;
	if (parse_tensors(cJSON_GetObjectItemCaseSensitive(js, "tensors"), f->size, ft))
		return "a tensor's shape, dtype or offsets (outside its file, or a size that overflows)";
	return NULL;
}

/* The optional hub id (written since 0.1.0's ecosystem work; older deltas have none). */
static int parse_hub(const cJSON *hub, struct sp_manifest *m)
{
	char *id = NULL, *rev = NULL;
	if (!hub)
		return 0;
	m->hub_id = get_str(hub, "id");
	m->hub_revision = get_str(hub, "revision");
	m->hub_commit = get_str(hub, "commit");
	int ok = m->hub_id && m->hub_commit && m->hub_revision &&
		 strlen(m->hub_commit) == 40 && strspn(m->hub_commit, "0123456789abcdef") == 40 &&
		 !sp_hub_parse(m->hub_id, &id, &rev) && !strchr(m->hub_id, '@');
	free(id);
	free(rev);
	return ok ? 0 : -1;
}

/* The optional share of the fine-tune's tensors coded against the base (older deltas have
 * none): --info shows it. */
static int parse_match(const cJSON *js, struct sp_manifest *m)
{
	struct sp_base_match *mt = &m->match;
	if (!js)
		return 0;
	m->has_match = 1;
	if (get_u64(js, "tensors", &mt->tensors) || get_u64(js, "of_tensors", &mt->of_tensors) ||
	    get_u64(js, "bytes", &mt->bytes) || get_u64(js, "of_bytes", &mt->of_bytes))
		return -1;
	return mt->tensors > mt->of_tensors || mt->bytes > mt->of_bytes ? -1 : 0;
}

/* An integer from 0 to below max, into *i. */
static int get_index(const cJSON *js, size_t max, size_t *i)
{
	double v = cJSON_IsNumber(js) ? js->valuedouble : -1;
	if (!(v >= 0 && v < (double)max) || v != (double)(size_t)v)
		return -1;
	*i = (size_t)v;
	return 0;
}

/* How many base files the list names: its entries, a run [first, count] counting count. With
 * each output file named at most once, that is at most the entries and the output files
 * together; SIZE_MAX when more, or a run is malformed. */
static size_t count_base_files(const cJSON *files, int refs, size_t nfiles)
{
	const cJSON *js;
	size_t n = 0, entries = 0, first, count;
	cJSON_ArrayForEach(js, files) {
		entries++;
		if (!(refs && cJSON_IsArray(js))) {
			n++;
			continue;
		}
		if (cJSON_GetArraySize(js) != 2 || get_index(js->child, nfiles, &first) ||
		    get_index(js->child->next, nfiles + 1, &count) || !count ||
		    count > nfiles - first)
			return SIZE_MAX;
		n += count;
		if (n > nfiles + entries)
			return SIZE_MAX;
	}
	return n;
}

/* Output file i's name for a base file (SP_FEATURE_INCOMPAT_NAMEREF); NULL when named before. */
static const char *named_name(const struct sp_manifest *m, uint8_t *named, size_t i)
{
	return named[i]++ ? NULL : m->files[i].name;
}

/* A base file entry: its fingerprint, named by a string or (named: SP_FEATURE_INCOMPAT_NAMEREF)
 * by an output file's index. */
static const char *parse_base_entry(const cJSON *js, int implied, int histbase,
				    struct sp_manifest *m, uint8_t *named)
{
	const cJSON *nm = cJSON_GetObjectItemCaseSensitive(js, "name");
	struct sp_base_fp *fp = &m->base[m->nbase++];
	size_t i;
	const char *name = cJSON_IsString(nm) ? nm->valuestring
			   : named && !get_index(nm, m->nfiles, &i) ? named_name(m, named, i)
								    : NULL;
	if (!name || parse_base_fp(js, name, implied, histbase, fp))
		return "a base file's fingerprint";
	return safe_name(fp->name) ? NULL
				   : "a base file name that leaves the base (absolute, empty, '.' or '..')";
}

/* A run [first, count]: base files named as output files first to first + count - 1, each
 * fingerprinted by its name alone (as SP_FEATURE_INCOMPAT_IMPLIED allows). */
static const char *parse_run(const cJSON *js, int implied, struct sp_manifest *m, uint8_t *named)
{
	size_t first = (size_t)js->child->valuedouble, count = (size_t)js->child->next->valuedouble;
	for (size_t i = first; i < first + count; i++) {
		const char *name = implied ? named_name(m, named, i) : NULL;
		if (!name)
			return "a run of base files outside the files, or naming one twice";
		m->base[m->nbase++] = (struct sp_base_fp){
			.name = (char *)name, .size = SIZE_PENDING, .whole = 1, .hashless = 1};
	}
	return NULL;
}

/* The base; features say which forms its files may take (SP_FEATURE_INCOMPAT_*). */
static const char *parse_base(const cJSON *base, uint64_t features, struct sp_manifest *m)
{
	int implied = (features & SP_FEATURE_INCOMPAT_IMPLIED) != 0;
	int refs = (features & SP_FEATURE_INCOMPAT_NAMEREF) != 0;
	int histbase = (features & SP_FEATURE_INCOMPAT_HISTBASE) != 0;
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(base, "files"), *js;
	m->base_path = get_str(base, "path");
	m->base_relpath = get_str(base, "relpath");
	if (!m->base_path || !cJSON_IsArray(files))
		return "no base";
	if (parse_hub(cJSON_GetObjectItemCaseSensitive(base, "hub"), m))
		return "a malformed hub id";
	if (parse_match(cJSON_GetObjectItemCaseSensitive(base, "matched"), m))
		return "a malformed share of tensors matched";
	size_t n = count_base_files(files, refs, m->nfiles);
	if (n == SIZE_MAX)
		return "a run of base files outside the files, or naming one twice";
	m->base = calloc(n + 1, sizeof(*m->base));
	uint8_t *named = refs ? calloc(m->nfiles + 1, 1) : NULL;
	const char *why = m->base && (named || !refs) ? NULL : "out of memory";
	cJSON_ArrayForEach(js, files) {
		if (why)
			break;
		why = refs && cJSON_IsArray(js) ? parse_run(js, implied, m, named)
						: parse_base_entry(js, implied, histbase, m, named);
	}
	free(named);
	return why;
}

struct seen {
	const char *name;
	UT_hash_handle hh;
};

/* Why the file names clash (one twice, or one a folder of another), or NULL. */
static const char *name_clash(const struct sp_manifest *m, const char **which)
{
	struct seen *set = NULL, *s, *tmp, *all = calloc(m->nfiles + 1, sizeof(*all));
	const char *why = all ? NULL : "out of memory";
	for (size_t i = 0; !why && i < m->nfiles; i++) {
		const char *n = m->files[i].name;
		HASH_FIND_STR(set, n, s);
		if (s) {
			why = "a file name that appears twice";
			*which = n;
		} else {
			all[i].name = n;
			HASH_ADD_KEYPTR(hh, set, n, strlen(n), &all[i]);
		}
	}
	for (size_t i = 0; !why && i < m->nfiles; i++) {
		const char *n = m->files[i].name;
		for (const char *sl = strchr(n, '/'); !why && sl; sl = strchr(sl + 1, '/')) {
			HASH_FIND(hh, set, n, (size_t)(sl - n), s);
			if (s) {
				why = "a file name that is also a folder";
				*which = n;
			}
		}
	}
	HASH_ITER(hh, set, s, tmp)
		HASH_DEL(set, s);
	free(all);
	return why;
}

static const char *parse_files(const cJSON *files, const struct sp_manifest_table *t,
			       struct sp_manifest *m, const char **which)
{
	const cJSON *js;
	uint64_t next = 0;
	if (!cJSON_IsArray(files))
		return "no files";
	m->files = calloc((size_t)cJSON_GetArraySize(files) + 1, sizeof(*m->files));
	m->tensors = calloc((size_t)cJSON_GetArraySize(files) + 1, sizeof(*m->tensors));
	if (!m->files || !m->tensors)
		return "out of memory";
	cJSON_ArrayForEach(js, files) {
		struct sp_file_info *f = &m->files[m->nfiles];
		const char *why = parse_file(js, t, next, f, &m->tensors[m->nfiles]);
		m->nfiles++;
		if (why) {
			*which = get_str(js, "name");
			return why;
		}
		next = f->first_chunk + f->chunk_count;
	}
	return name_clash(m, which);
}

/* A NUL character, raw or escaped, would cut a name short where C reads it: refused. A
 * backslash only ever starts an escape, so skipping each escape's second character is enough
 * to tell "\u0000" from an escaped backslash followed by "u0000". */
static int has_nul(const char *json, size_t len)
{
	if (memchr(json, 0, len))
		return 1;
	for (size_t i = 0; i + 1 < len; i++)
		if (json[i] == '\\') {
			if (json[i + 1] == 'u' && len - i >= 6 && !memcmp(json + i + 2, "0000", 4))
				return 1;
			i++;
		}
	return 0;
}

/* Base file i, whole, as a history segment. */
static struct sp_history_seg whole_file(const struct sp_manifest *m, size_t i)
{
	return (struct sp_history_seg){.file = (uint32_t)i, .len = m->base[i].size};
}

/* A history segment: an object, or (implied) the number of a base file taken whole. */
static int parse_segment(const cJSON *js, int implied, struct sp_manifest *m,
			 struct sp_history_seg *h)
{
	uint64_t file;
	size_t i;
	if (implied && cJSON_IsNumber(js)) {
		if (get_index(js, m->nbase, &i))
			return -1;
		*h = whole_file(m, i);
		return 0;
	}
	if (get_u64(js, "file", &file) || get_u64(js, "off", &h->off) ||
	    get_u64(js, "len", &h->len) || file >= m->nbase || m->base[file].size == SIZE_PENDING ||
	    h->off > m->base[file].size || h->len > m->base[file].size - h->off)
		return -1;
	h->file = (uint32_t)file;
	return 0;
}

/* A whole file's segment whose file has no size yet: with SP_FEATURE_INCOMPAT_HISTSIZE its size
 * is the base file's, and its length is known once the base is opened (and 0 until then). */
static int leave_size_to_base(struct sp_manifest *m, struct sp_history_seg *h, int histsize)
{
	if (h->len != SIZE_PENDING)
		return 0;
	if (!histsize)
		return -1;
	m->base[h->file].size_from_base = 1;
	m->sizes_from_base = 1;
	h->len = 0;
	return 0;
}

/* With SP_FEATURE_INCOMPAT_HISTSIZE, history_len: the history's length (its files' sizes in
 * the base it was made against), at least what the sizes known add up to, at most
 * SP_HISTORY_MAX, and equal to that when every size is known; required when one is not. */
static const char *parse_history_len(const cJSON *root, int histsize, struct sp_manifest *m)
{
	uint64_t len;
	if (!histsize || (!m->sizes_from_base && !has(root, "history_len")))
		return NULL;
	if (get_u64(root, "history_len", &len) || len < m->history_len || len > SP_HISTORY_MAX ||
	    (!m->sizes_from_base && len != m->history_len))
		return "a history_len missing, or not the history's length";
	m->history_len = len;
	return NULL;
}

/* The optional history (deltas without HISTORY chunks have none): a list of segments of base
 * files within them, or (implied) a count n, the first n base files whole; at most
 * SP_HISTORY_MAX bytes in all. */
static const char *parse_history(const cJSON *list, int implied, int histsize,
				 struct sp_manifest *m)
{
	int counted = implied && cJSON_IsNumber(list);
	size_t n = 0;
	if (!list)
		return NULL;
	if (counted ? get_index(list, m->nbase + 1, &n) || !n : !cJSON_IsArray(list))
		return counted ? "a history count outside 1 to the number of base files"
			       : "a history that is not a list";
	if (!counted)
		n = (size_t)cJSON_GetArraySize(list);
	if (!(m->history = calloc(n + 1, sizeof(*m->history))))
		return "out of memory";
	const cJSON *js = counted ? NULL : list->child;
	for (size_t i = 0; i < n; i++, js = js ? js->next : NULL) {
		struct sp_history_seg *h = &m->history[m->nhistory++];
		if (counted)
			*h = whole_file(m, i);
		if (!counted && parse_segment(js, implied, m, h))
			return "a history segment outside its base file, or too long a history";
		if (leave_size_to_base(m, h, histsize))
			return "a history file without its size";
		if (h->len > SP_HISTORY_MAX - m->history_len)
			return "a history segment outside its base file, or too long a history";
		m->history_len += h->len;
	}
	return NULL;
}

/* Does BASE chunk c give hashless fingerprint fp its content hash (and its size, if pending)? */
static int gives_fingerprint(const struct sp_chunk *c, const struct sp_base_fp *fp)
{
	return fp->hashless && c->codec == SP_CODEC_BASE && !c->base_off &&
	       (fp->size == SIZE_PENDING ? c->out_len <= SP_FP_WHOLE_MAX : c->out_len == fp->size);
}

/* The fingerprints left to the table: each takes the hash (and length) of the first BASE chunk
 * that reads its file from the start, whole (the chunk itself is checked later, with the
 * table); a file that no chunk reads has no hash. */
static void take_fingerprints(struct sp_manifest *m, const struct sp_manifest_table *t)
{
	for (uint64_t k = 0; k < t->count; k++) {
		const struct sp_chunk *c = &t->chunks[k];
		struct sp_base_fp *fp = c->base_file < m->nbase ? &m->base[c->base_file] : NULL;
		if (fp && gives_fingerprint(c, fp)) {
			fp->content_hash = c->out_hash;
			fp->size = c->out_len;
			fp->hashless = 0;
			fp->hash_implied = 1;
		}
	}
}

/* A base file still without its size takes it from the base (SP_FEATURE_INCOMPAT_HISTSIZE)
 * when a history segment given by its index holds it whole; no chunk may then read it. */
static const char *check_sizes(const struct sp_manifest *m, const char **which)
{
	for (size_t i = 0; i < m->nbase; i++)
		if (m->base[i].size == SIZE_PENDING && !m->base[i].size_from_base) {
			*which = m->base[i].name;
			return "a base file without its size that no chunk reads whole";
		}
	return NULL;
}

/* With SP_FEATURE_INCOMPAT_HISTBASE, BASE chunks read a base file that a history segment holds
 * whole from the history (its first such segment): a content hash taken from such a chunk is
 * none (the writer wrote 0), the history's hash covering the file instead. */
static const char *mark_history_files(struct sp_manifest *m, int histbase)
{
	for (size_t k = 0; histbase && k < m->nhistory; k++) {
		struct sp_base_fp *fp = &m->base[m->history[k].file];
		if (fp->size_from_base || m->history[k].off || !fp->size ||
		    m->history[k].len != fp->size || fp->from_history)
			continue;
		if (!m->has_history_hash)
			return "a history without its hash, that base files are read from";
		fp->from_history = 1;
		fp->history_seg = k;
		fp->hashless |= fp->hash_implied;
	}
	return NULL;
}

uint64_t sp_manifest_layout_history(struct sp_manifest *m)
{
	uint64_t at = 0;
	for (size_t k = 0; k < m->nhistory; k++) {
		struct sp_history_seg *h = &m->history[k];
		struct sp_base_fp *fp = &m->base[h->file];
		if (fp->size_from_base)
			h->len = fp->size;
		if (fp->from_history && fp->history_seg == k)
			fp->history_at = at;
		at = h->len > UINT64_MAX - at ? UINT64_MAX : at + h->len;
	}
	return at;
}

/* Every base file a chunk reads has a content hash, but one whose BASE chunks read the history;
 * one of more than SP_FP_WHOLE_MAX bytes without its hashes is one the history holds whole. */
static const char *check_hashless(const struct sp_manifest *m, const struct sp_manifest_table *t,
				  const char **which)
{
	for (size_t i = 0; i < m->nbase; i++)
		if (m->base[i].hashless && m->base[i].size > SP_FP_WHOLE_MAX &&
		    !m->base[i].from_history && !m->base[i].size_from_base) {
			*which = m->base[i].name;
			return "a base file of more than 64 KiB without its hashes, that the history "
			       "does not hold whole";
		}
	for (uint64_t k = 0; k < t->count; k++) {
		const struct sp_chunk *c = &t->chunks[k];
		const struct sp_base_fp *fp = c->base_file < m->nbase ? &m->base[c->base_file] : NULL;
		if (reads_base(c) && fp && fp->size_from_base) {
			*which = fp->name;
			return "a base file whose size the base gives, that a chunk reads";
		}
		if (reads_base(c) && fp && fp->hashless &&
		    !(c->codec == SP_CODEC_BASE && fp->from_history)) {
			*which = fp->name;
			return "a base file that a chunk reads, without its content hash";
		}
	}
	return NULL;
}

/* Why the top level is wrong, or NULL. */
static const char *parse_top(struct sp_manifest *m, const struct sp_manifest_table *t,
			     const char **which)
{
	int implied = (t->features & SP_FEATURE_INCOMPAT_IMPLIED) != 0;
	int histsize = (t->features & SP_FEATURE_INCOMPAT_HISTSIZE) != 0;
	uint64_t cs = 0, version = SP_VERSION;
	const char *why;
	if (!cJSON_IsObject(m->root))
		return "not a JSON object";
	if (cJSON_GetObjectItemCaseSensitive(m->root, "version") &&
	    (get_u64(m->root, "version", &version) || version != SP_VERSION))
		return "a format version this reader does not know";
	if (get_u64(m->root, "chunk_size", &cs) || cs < SP_CHUNK_MIN || cs > SP_CHUNK_MAX)
		return "no valid chunk_size";
	m->chunk_size = (uint32_t)cs;
	m->created_by = get_str(m->root, "created_by");
	if (!(m->mode = get_str(m->root, "mode")))
		return "no mode";
	if ((why = parse_files(cJSON_GetObjectItemCaseSensitive(m->root, "files"), t, m, which)) ||
	    (why = parse_base(cJSON_GetObjectItemCaseSensitive(m->root, "base"), t->features, m)))
		return why;
	take_fingerprints(m, t);
	if (has(m->root, "aux_chunks") && get_u64(m->root, "aux_chunks", &m->aux_chunks))
		return "aux_chunks";
	if ((m->has_history_hash = has(m->root, "history_hash")) &&
	    json_get_hash(m->root, "history_hash", &m->history_hash))
		return "history_hash";
	if ((why = parse_history(cJSON_GetObjectItemCaseSensitive(m->root, "history"), implied,
				 histsize, m)) ||
	    (why = parse_history_len(m->root, histsize, m)) || (why = check_sizes(m, which)) ||
	    (why = mark_history_files(m, (t->features & SP_FEATURE_INCOMPAT_HISTBASE) != 0)))
		return why;
	if (!m->sizes_from_base)
		sp_manifest_layout_history(m);
	return check_hashless(m, t, which);
}

int sp_manifest_parse(const char *json, size_t len, const struct sp_manifest_table *t,
		      struct sp_manifest *m, const char *path, struct sp_err *err)
{
	const char *which = NULL, *why;
	memset(m, 0, sizeof(*m));
	if (has_nul(json, len))
		why = "a NUL character";
	else if (!(m->root = cJSON_ParseWithLength(json, len)))
		why = "not JSON";
	else
		why = parse_top(m, t, &which);
	if (!why)
		return 0;
	if (which)
		sp_err_set(err, "%s: the manifest is malformed: %s: '%s'", path, why, which);
	else
		sp_err_set(err, "%s: the manifest is malformed: %s", path, why);
	sp_manifest_free(m);
	return -1;
}

const char *sp_manifest_tensor_at(const struct sp_manifest *m, size_t file, uint64_t off)
{
	const struct sp_file_tensors *ft = &m->tensors[file];
	for (size_t i = 0; i < ft->n; i++)
		if (off >= ft->t[i].offset && off - ft->t[i].offset < ft->t[i].size)
			return ft->t[i].name;
	return "(none)";
}

void sp_manifest_free(struct sp_manifest *m)
{
	cJSON_Delete(m->root);
	free(m->base);
	free(m->history);
	free(m->files);
	for (size_t i = 0; m->tensors && i < m->nfiles; i++) {
		free(m->tensors[i].t);
		free(m->tensors[i].dims);
	}
	free(m->tensors);
	memset(m, 0, sizeof(*m));
}
