/* SPDX-License-Identifier: Apache-2.0 */
/* mksparse's engine: plans the chunks of every output file, encodes them on a few threads, and
 * writes delta.sparse through a temporary file that is renamed into place only when complete. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "basefp.h"
#include "chunk.h"
#include "io.h"
#include "model.h"

#define BATCH_PER_THREAD 4
#define META_LEVEL 19 /* headers and small files: tiny, so spend effort */

/* One chunk waiting to be encoded. */
struct job {
	struct sp_chunk c;
	const uint8_t *ft, *base;
	int level;
	uint8_t *dst;
	int rc;
};

struct writer {
	const struct sp_write_opts *o;
	struct sp_err *err;
	struct sp_model base, ft;
	uint32_t *base_fp_index; /* base model file -> index in the manifest's base files */
	cJSON *manifest, *base_files, *files;
	int fd;
	char *tmp_path;
	uint64_t pos;
	struct sp_chunk *chunks;
	size_t nchunks, cap;
	struct job *jobs;
	size_t njobs, batch;
	struct sp_codecs *codecs; /* one per thread */
	int threads;
	atomic_size_t next_job;
};

/* ---- encoding in batches ---- */

static void *encode_worker(void *arg)
{
	struct sp_codecs *cs = ((void **)arg)[0];
	struct writer *w = ((void **)arg)[1];
	size_t i;
	while ((i = atomic_fetch_add(&w->next_job, 1)) < w->njobs) {
		struct job *j = &w->jobs[i];
		j->c.out_hash = XXH3_64bits(j->ft, j->c.out_len);
		j->rc = sp_chunk_encode(cs, &j->c, j->ft, j->base, j->dst,
					2 * sp_chunk_bound(j->c.out_len), j->level);
	}
	return NULL;
}

static int add_chunk(struct writer *w, const struct sp_chunk *c)
{
	if (w->nchunks == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 1024;
		struct sp_chunk *p = realloc(w->chunks, cap * sizeof(*p));
		if (!p)
			return -1;
		w->chunks = p;
		w->cap = cap;
	}
	w->chunks[w->nchunks++] = *c;
	return 0;
}

/* Encodes the queued jobs in parallel, then appends them in order. */
static int flush(struct writer *w)
{
	pthread_t tids[64];
	void *args[64][2];
	int n = w->threads;
	atomic_store(&w->next_job, 0);
	for (int t = 0; t < n; t++) {
		args[t][0] = &w->codecs[t];
		args[t][1] = w;
		if (t > 0 && pthread_create(&tids[t], NULL, encode_worker, args[t]))
			n = t;
	}
	encode_worker(args[0]);
	for (int t = 1; t < n; t++)
		pthread_join(tids[t], NULL);
	for (size_t i = 0; i < w->njobs; i++) {
		struct job *j = &w->jobs[i];
		j->c.data_off = j->c.data_len ? w->pos : 0;
		if (j->rc || sp_pwrite_full(w->fd, j->dst, j->c.data_len, w->pos) ||
		    add_chunk(w, &j->c)) {
			sp_err_set(w->err, "%s: %s", w->tmp_path,
				   j->rc ? "a chunk failed to encode" : strerror(errno));
			return -1;
		}
		w->pos += j->c.data_len;
	}
	w->njobs = 0;
	return 0;
}

static int queue(struct writer *w, const struct job *j)
{
	if (w->njobs == w->batch && flush(w))
		return -1;
	struct job *q = &w->jobs[w->njobs++];
	uint8_t *dst = q->dst;
	*q = *j;
	q->dst = dst;
	return 0;
}

/* A run of output bytes [off, off+len) of the current file, from ft, with or without a base
 * (whose bytes follow the same elements), split into chunks. */
struct segment {
	uint64_t off, len;
	const uint8_t *ft, *base;
	uint32_t base_file;
	uint64_t base_off;
	enum sp_dtype dtype, base_dtype;
	int level;
};

/* The length of the chunk at s->off + done. A segment longer than a chunk starts with a
 * shorter one so that the rest fall on multiples of the chunk size in the file: a reader asking
 * for aligned ranges (the kernel's readahead) then covers whole chunks, which decode straight
 * into its buffer. */
static uint64_t chunk_len(const struct writer *w, const struct segment *s, uint64_t done)
{
	uint64_t cs = w->o->chunk_size, left = s->len - done, es = sp_dtype_size(s->dtype);
	if (done == 0 && left > cs) {
		uint64_t first = (cs - s->off % cs) / es * es;
		if (first)
			return first;
	}
	return left < cs ? left : cs;
}

static int emit(struct writer *w, const struct segment *s)
{
	size_t es = sp_dtype_size(s->dtype), bs = sp_dtype_size(s->base_dtype);
	for (uint64_t done = 0; done < s->len;) {
		uint64_t n = chunk_len(w, s, done);
		struct job j = {
			.c = {.out_off = s->off + done, .out_len = (uint32_t)n, .dtype = (uint8_t)s->dtype,
			      .base_dtype = (uint8_t)s->base_dtype, .base_file = SP_NO_BASE},
			.ft = s->ft + done,
			.level = s->level,
		};
		if (s->base) {
			j.base = s->base + done / es * bs;
			j.c.base_file = s->base_file;
			j.c.base_off = s->base_off + done / es * bs;
		}
		if (queue(w, &j))
			return -1;
		done += n;
	}
	return 0;
}

static int emit_stored(struct writer *w, const uint8_t *map, uint64_t off, uint64_t len,
		       enum sp_dtype dt, int level)
{
	struct segment s = {.off = off, .len = len, .ft = map + off, .dtype = dt, .base_dtype = dt,
			    .level = level};
	return emit(w, &s);
}

/* ---- planning a tensor against its base ---- */

static uint64_t row_elems(const struct sp_tensor *t)
{
	return t->ndim && t->shape[0] ? t->nelem / t->shape[0] : t->nelem;
}

/* How many leading elements of t have a counterpart in base b: all of them when the shapes
 * agree, the common rows when only the first dimension differs (a grown vocabulary). */
static uint64_t overlap_elems(const struct sp_tensor *t, const struct sp_tensor *b)
{
	int same_dt = t->dtype == b->dtype && (t->dtype != SP_DT_BYTES ||
					       strcmp(t->dtype_name, b->dtype_name) == 0);
	if (!same_dt && !(sp_dtype_is_float(t->dtype) && sp_dtype_is_float(b->dtype)))
		return 0;
	if (t->dtype == SP_DT_BYTES)
		return t->size == b->size ? t->size : 0;
	if (t->nelem == b->nelem)
		return t->nelem;
	if (t->ndim != b->ndim || t->ndim == 0 ||
	    memcmp(t->shape + 1, b->shape + 1, (size_t)(t->ndim - 1) * sizeof(uint64_t)))
		return 0;
	uint64_t rows = t->shape[0] < b->shape[0] ? t->shape[0] : b->shape[0];
	return rows * row_elems(t);
}

static int plan_tensor(struct writer *w, const uint8_t *map, const struct sp_tensor *t,
		       cJSON *tensors)
{
	const struct sp_tensor_ref *r = sp_model_find(&w->base, t->name);
	uint64_t n = r ? overlap_elems(t, r->t) : 0;
	uint64_t bytes = t->dtype == SP_DT_BYTES ? n : n * sp_dtype_size(t->dtype);
	cJSON_AddItemToArray(tensors, sp_manifest_tensor(t, r ? r->t : NULL));
	if (n) {
		if (sp_model_map(&w->base, r->file, w->err))
			return -1;
		struct segment s = {
			.off = t->off, .len = bytes, .ft = map + t->off,
			.base = w->base.files[r->file].map + r->t->off,
			.base_file = w->base_fp_index[r->file], .base_off = r->t->off,
			.dtype = t->dtype, .base_dtype = r->t->dtype, .level = w->o->level,
		};
		if (emit(w, &s))
			return -1;
	}
	return emit_stored(w, map, t->off + bytes, t->size - bytes, t->dtype, w->o->level);
}

/* ---- files ---- */

static int tensors_overlap(const struct sp_st *st)
{
	for (size_t i = 1; i < st->ntensors; i++)
		if (st->tensors[i].off < st->tensors[i - 1].off + st->tensors[i - 1].size)
			return 1;
	return 0;
}

/* The header verbatim, then each tensor in file order; bytes between tensors are stored. */
static int plan_safetensors(struct writer *w, const struct sp_mfile *f, cJSON *tensors)
{
	uint64_t pos = f->st.header_len;
	if (emit_stored(w, f->map, 0, pos, SP_DT_BYTES, META_LEVEL))
		return -1;
	for (size_t i = 0; i < f->st.ntensors; i++) {
		const struct sp_tensor *t = &f->st.tensors[i];
		if (emit_stored(w, f->map, pos, t->off - pos, SP_DT_BYTES, META_LEVEL) ||
		    plan_tensor(w, f->map, t, tensors))
			return -1;
		pos = t->off + t->size;
	}
	return emit_stored(w, f->map, pos, f->size - pos, SP_DT_BYTES, META_LEVEL);
}

static int plan_file(struct writer *w, uint32_t i)
{
	struct sp_mfile *f = &w->ft.files[i];
	struct sp_file_info info = {.name = f->name, .size = f->size, .mtime = f->mtime,
				    .mtime_nsec = f->mtime_nsec, .first_chunk = w->nchunks + w->njobs};
	int as_st = f->is_st && !tensors_overlap(&f->st);
	cJSON *tensors = as_st ? cJSON_CreateArray() : NULL;
	if (sp_model_map(&w->ft, i, w->err))
		return -1;
	int rc = as_st ? plan_safetensors(w, f, tensors)
		       : emit_stored(w, f->map, 0, f->size, SP_DT_BYTES, META_LEVEL);
	info.chunk_count = w->nchunks + w->njobs - info.first_chunk;
	cJSON *js = sp_manifest_file(&info);
	if (tensors)
		cJSON_AddItemToObject(js, "tensors", tensors);
	cJSON_AddItemToArray(w->files, js);
	return rc;
}

/* ---- the base ---- */

/* Fingerprints every safetensors file of the base: the manifest lists them. */
static int fingerprint_base(struct writer *w)
{
	uint32_t n = 0;
	w->base_fp_index = calloc(w->base.nfiles + 1, sizeof(uint32_t));
	if (!w->base_fp_index)
		return -1;
	for (size_t i = 0; i < w->base.nfiles; i++) {
		struct sp_mfile *f = &w->base.files[i];
		struct sp_base_fp fp = {.name = f->name};
		w->base_fp_index[i] = SP_NO_BASE;
		if (!f->is_st)
			continue;
		int fd = open(f->path, O_RDONLY | O_CLOEXEC);
		int rc = fd < 0 ? -1 : sp_fp_compute(fd, f->st.header_len, &fp, f->path, w->err);
		if (fd < 0)
			sp_err_set(w->err, "%s: %s", f->path, strerror(errno));
		else
			close(fd);
		if (rc)
			return -1;
		cJSON_AddItemToArray(w->base_files, sp_manifest_base_fp(&fp));
		w->base_fp_index[i] = n++;
	}
	return 0;
}

/* The path of absolute path to, relative to absolute directory from: "../" for each part of
 * from below the common parts, then the rest of to. */
static void relative_path(const char *from, const char *to, char *rel, size_t cap)
{
	size_t common = 0, k = 0;
	for (; from[k] && from[k] == to[k]; k++)
		if (from[k] == '/')
			common = k;
	if ((!from[k] && (!to[k] || to[k] == '/')) || (!to[k] && from[k] == '/'))
		common = k;
	rel[0] = 0;
	for (const char *p = from + common; *p; p++)
		if (*p == '/' && p[1] && p[1] != '/')
			strncat(rel, "../", cap - strlen(rel) - 1);
	const char *rest = to + common;
	while (*rest == '/')
		rest++;
	strncat(rel, rest, cap - strlen(rel) - 1);
	size_t n = strlen(rel);
	if (n && rel[n - 1] == '/')
		rel[n - 1] = 0;
	if (!*rel)
		snprintf(rel, cap, ".");
}

static cJSON *base_json(const char *base_dir, const char *out_dir)
{
	char *abs_base = realpath(base_dir, NULL), *abs_out = realpath(out_dir, NULL);
	cJSON *js = cJSON_CreateObject();
	cJSON_AddStringToObject(js, "path", abs_base ? abs_base : base_dir);
	if (abs_base && abs_out) {
		char rel[PATH_MAX];
		relative_path(abs_out, abs_base, rel, sizeof(rel));
		cJSON_AddStringToObject(js, "relpath", rel);
	}
	free(abs_base);
	free(abs_out);
	return js;
}

/* ---- the output file ---- */

static int write_tail(struct writer *w, struct sp_super *sb)
{
	char *json = cJSON_PrintUnformatted(w->manifest);
	size_t raw = json ? strlen(json) : 0, cap = ZSTD_compressBound(raw);
	uint8_t *z = malloc(cap);
	size_t zlen = z ? ZSTD_compress(z, cap, json, raw, META_LEVEL) : 0;
	uint64_t table = w->nchunks * sizeof(struct sp_chunk);
	int rc = -1;
	if (json && z && !ZSTD_isError(zlen)) {
		sb->chunk_table_off = w->pos;
		sb->chunk_count = w->nchunks;
		sb->chunk_table_hash = XXH3_64bits(w->chunks, table);
		sb->manifest_off = w->pos + table;
		sb->manifest_len = zlen;
		sb->manifest_raw_len = raw;
		sb->manifest_hash = XXH3_64bits(z, zlen);
		sb->file_size = sb->manifest_off + zlen;
		rc = sp_pwrite_full(w->fd, w->chunks, table, w->pos) ||
		     sp_pwrite_full(w->fd, z, zlen, sb->manifest_off);
	}
	free(json);
	free(z);
	return rc;
}

/* Chunk table, manifest, and last the superblock: until it is written and the file renamed,
 * nothing looks like a delta. */
static int finish(struct writer *w, const char *out_dir)
{
	struct sp_super sb = {.version = SP_VERSION, .super_size = sizeof(sb)};
	char *final = NULL;
	memcpy(sb.magic, SP_MAGIC, SP_MAGIC_LEN);
	if (flush(w))
		return -1;
	if (write_tail(w, &sb) == 0) {
		sb.super_hash = XXH3_64bits(&sb, offsetof(struct sp_super, super_hash));
		if (sp_pwrite_full(w->fd, &sb, sizeof(sb), 0) == 0 && fsync(w->fd) == 0 &&
		    asprintf(&final, "%s/%s", out_dir, SP_DELTA_FILE) > 0 &&
		    rename(w->tmp_path, final) == 0) {
			free(final);
			int dfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (dfd >= 0) {
				fsync(dfd);
				close(dfd);
			}
			free(w->tmp_path);
			w->tmp_path = NULL;
			w->pos = sb.file_size;
			return 0;
		}
	}
	free(final);
	sp_err_set(w->err, "%s: cannot write: %s", out_dir, strerror(errno ? errno : EIO));
	return -1;
}

static int open_output(struct writer *w, const char *out_dir)
{
	if (sp_mkdir_p(out_dir)) {
		sp_err_set(w->err, "%s: %s", out_dir, strerror(errno));
		return -1;
	}
	if (asprintf(&w->tmp_path, "%s/.%s.XXXXXX", out_dir, SP_DELTA_FILE) < 0)
		return -1;
	w->fd = mkstemp(w->tmp_path);
	if (w->fd < 0) {
		sp_err_set(w->err, "%s: %s", w->tmp_path, strerror(errno));
		free(w->tmp_path);
		w->tmp_path = NULL;
		return -1;
	}
	fchmod(w->fd, 0644);
	w->pos = sizeof(struct sp_super);
	return 0;
}

/* ---- setup ---- */

static int setup(struct writer *w)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	w->threads = w->o->threads > 0 ? w->o->threads : (int)(cpus > 0 ? cpus : 1);
	if (w->threads > 64)
		w->threads = 64;
	w->batch = (size_t)w->threads * BATCH_PER_THREAD;
	w->jobs = calloc(w->batch, sizeof(*w->jobs));
	w->codecs = calloc((size_t)w->threads, sizeof(*w->codecs));
	if (!w->jobs || !w->codecs)
		return -1;
	for (size_t i = 0; i < w->batch; i++)
		if (!(w->jobs[i].dst = malloc(2 * sp_chunk_bound(w->o->chunk_size))))
			return -1;
	for (int t = 0; t < w->threads; t++)
		if (sp_codecs_init(&w->codecs[t]))
			return -1;
	w->manifest = cJSON_CreateObject();
	cJSON_AddStringToObject(w->manifest, "format", "sparse-delta");
	cJSON_AddNumberToObject(w->manifest, "version", SP_VERSION);
	cJSON_AddStringToObject(w->manifest, "created_by", "mksparse " SPARSE_VERSION_STRING);
	cJSON_AddStringToObject(w->manifest, "mode", "lossless");
	cJSON_AddNumberToObject(w->manifest, "chunk_size", w->o->chunk_size);
	return 0;
}

static void teardown(struct writer *w)
{
	if (w->tmp_path) {
		unlink(w->tmp_path);
		free(w->tmp_path);
	}
	if (w->fd >= 0)
		close(w->fd);
	for (size_t i = 0; w->jobs && i < w->batch; i++)
		free(w->jobs[i].dst);
	for (int t = 0; w->codecs && t < w->threads; t++)
		sp_codecs_fini(&w->codecs[t]);
	free(w->jobs);
	free(w->codecs);
	free(w->chunks);
	free(w->base_fp_index);
	cJSON_Delete(w->manifest);
	sp_model_close(&w->base);
	sp_model_close(&w->ft);
}

static int check_opts(struct sp_write_opts *o, struct sp_err *err)
{
	if (!o->chunk_size)
		o->chunk_size = SP_CHUNK_DEFAULT;
	if (!o->level)
		o->level = 3;
	if (o->chunk_size < SP_CHUNK_MIN || o->chunk_size > SP_CHUNK_MAX ||
	    (o->chunk_size & (o->chunk_size - 1))) {
		sp_err_set(err, "chunk size %u: must be a power of two from %u to %u", o->chunk_size,
			   SP_CHUNK_MIN, SP_CHUNK_MAX);
		return -1;
	}
	if (o->level < 1 || o->level > 19) {
		sp_err_set(err, "level %d: must be 1 to 19", o->level);
		return -1;
	}
	return 0;
}

static int write_all(struct writer *w, const char *base_dir, const char *ft_dir,
		     const char *out_dir)
{
	if (sp_model_open(base_dir, &w->base, w->err) || sp_model_open(ft_dir, &w->ft, w->err))
		return -1;
	if (setup(w) || open_output(w, out_dir))
		return -1;
	cJSON *base = base_json(base_dir, out_dir);
	cJSON_AddItemToObject(w->manifest, "base", base);
	w->base_files = cJSON_AddArrayToObject(base, "files");
	w->files = cJSON_AddArrayToObject(w->manifest, "files");
	if (fingerprint_base(w))
		return -1;
	for (uint32_t i = 0; i < w->ft.nfiles; i++)
		if (plan_file(w, i))
			return -1;
	return finish(w, out_dir);
}

int sp_write_delta(const char *base_dir, const char *ft_dir, const char *out_dir,
		   const struct sp_write_opts *opts, struct sp_write_stats *stats, struct sp_err *err)
{
	struct sp_write_opts o = *opts;
	struct writer w = {.o = &o, .err = err, .fd = -1};
	struct timespec t0, t1;
	err->msg[0] = 0;
	if (check_opts(&o, err))
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = write_all(&w, base_dir, ft_dir, out_dir);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc && !err->msg[0])
		sp_err_set(err, "%s: %s", out_dir, strerror(errno ? errno : ENOMEM));
	if (rc == 0 && stats) {
		memset(stats, 0, sizeof(*stats));
		for (size_t i = 0; i < w.ft.nfiles; i++) {
			stats->ft_bytes += w.ft.files[i].size;
			stats->tensors += w.ft.files[i].st.ntensors;
		}
		stats->delta_bytes = w.pos;
		stats->chunks = w.nchunks;
		stats->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	}
	teardown(&w);
	return rc;
}
