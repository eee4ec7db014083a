/* SPDX-License-Identifier: Apache-2.0 */
/* How each file of the fine-tune becomes chunks: safetensors headers and other files stored,
 * tensors coded against the base tensor of the same name, losslessly or (lossy modes) as a low
 * rank part and a quantized residual. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "manifest.h"
#include "similar.h"
#include "writer.h"

/* A run of output bytes [off, off+len) of the current file, from ft, with or without a base
 * (whose bytes follow the same elements), split into chunks. */
struct segment {
	uint64_t off, len;
	const uint8_t *ft, *base;
	uint32_t base_file;
	uint64_t base_off;
	enum sp_dtype dtype, base_dtype;
	int level;
	const struct sp_lossy_tensor *lossy; /* LOSSY chunks of this tensor */
	uint64_t unit; /* > 0: chunks hold whole multiples of these bytes (row groups) */
	int tensor;    /* tensor data coded losslessly: chunks of o->tensor_chunk_size */
};

/* The length of the chunk at s->off + done. A segment longer than a chunk starts with a
 * shorter one so that the rest fall on multiples of the chunk size in the file: a reader asking
 * for aligned ranges (the kernel's readahead) then covers whole chunks, which decode straight
 * into its buffer. */
static uint64_t chunk_len(const struct writer *w, const struct segment *s, uint64_t done)
{
	uint64_t cs = s->tensor ? w->o->tensor_chunk_size : w->o->chunk_size;
	uint64_t left = s->len - done, es = sp_dtype_size(s->dtype);
	/* Row groups count from a chunk's start: their chunks hold whole groups, not file-aligned. */
	if (s->unit && s->unit <= cs)
		return left < cs / s->unit * s->unit ? left : cs / s->unit * s->unit;
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
		struct encode_job j = {
			.c = {.out_off = s->off + done, .out_len = (uint32_t)n, .dtype = (uint8_t)s->dtype,
			      .base_dtype = (uint8_t)s->base_dtype, .base_file = SP_NO_BASE},
			.ft = s->ft + done,
			.level = s->level,
			.lossy = s->lossy,
			.e0 = done / es,
		};
		if (s->base) {
			j.base = s->base + done / es * bs;
			j.c.base_file = s->base_file;
			j.c.base_off = s->base_off + done / es * bs;
		}
		if (sp_writer_queue(w, &j))
			return -1;
		done += n;
	}
	return 0;
}

static int emit_stored(struct writer *w, const uint8_t *map, uint64_t off, uint64_t len,
		       enum sp_dtype dt, int level)
{
	/* an empty file is not mapped: NULL + 0 is undefined */
	struct segment s = {.off = off, .len = len, .ft = map ? map + off : NULL, .dtype = dt,
			    .tensor = dt != SP_DT_BYTES,
			    .base_dtype = dt, .level = level};
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

/* ---- lossy tensors ---- */

/* Stores the factor b of a low-rank part as an auxiliary chunk that the tensor's chunks share. */
static int store_factor(struct writer *w, struct sp_lossy_tensor *t)
{
	size_t n = (size_t)t->rank * t->cols;
	uint8_t *bytes = malloc(n * 4);
	int rc = bytes ? sp_writer_add_aux(w, bytes, sp_lossy_factor_bytes(t->b, n, t->b_scale,
									   t->f32_factors, bytes),
					   &t->aux)
		       : -1;
	free(bytes);
	return rc;
}

/* The n overlapping elements of t as LOSSY chunks, encoded before the next tensor so that the
 * delta and its factors need only live this long. */
static int emit_lossy(struct writer *w, const struct segment *s, const struct sp_tensor *t,
		      uint64_t n, struct sp_lossy_choice c, uint32_t *rank, int *lossy)
{
	struct sp_lossy_prep p;
	uint64_t cols = row_elems(t);
	int rc = sp_lossy_prepare(s->ft, s->dtype, s->base, s->base_dtype, n / cols, cols, c, w->o, &p);
	if (rc == 1) {
		sp_lossy_prep_free(&p);
		*lossy = 0;
		return emit(w, s);
	}
	if (rc) {
		sp_err_set(w->err, "%s: tensor %s: cannot factor its delta (out of memory?)",
			   w->ft.dir, t->name);
		sp_lossy_prep_free(&p);
		return -1;
	}
	struct segment ls = *s;
	ls.lossy = &p.t;
	ls.tensor = 0;
	if (c.row_groups && p.t.bits && (p.t.group % cols == 0 || cols % p.t.group == 0))
		ls.unit = (p.t.group > cols ? p.t.group : cols) * sp_dtype_size(s->dtype);
	memset(&w->flushed, 0, sizeof(w->flushed));
	rc = (p.t.rank && store_factor(w, &p.t)) || emit(w, &ls) || sp_writer_flush(w);
	*rank = p.t.rank;
	sp_lossy_prep_free(&p);
	return rc;
}

/* ---- adapters ---- */

/* A LoRA target: the base plus its exact factors (f32), merged on read. */
static int emit_lora(struct writer *w, const struct segment *s, const struct sp_lora_target *lt)
{
	struct sp_lossy_tensor t = {.rows = lt->rows, .cols = lt->cols, .rank = lt->rank,
				    .f32_factors = 1, .a = lt->a, .b = lt->b, .a_scale = 1,
				    .b_scale = 1};
	struct segment ls = *s;
	ls.lossy = &t;
	ls.tensor = 0;
	return store_factor(w, &t) || emit(w, &ls) || sp_writer_flush(w);
}

/* A tensor the adapter saves whole, in the base's dtype, coded against the base. */
static int emit_full(struct writer *w, const struct segment *s, const struct sp_lora_full *lf)
{
	struct segment fs = *s;
	fs.ft = lf->data;
	fs.tensor = 1;
	if (lf->t->dtype != s->dtype) {
		uint64_t n = lf->t->nelem;
		if (!(w->held = malloc(n * sp_dtype_size(s->dtype) + 1)))
			return -1;
		sp_dtype_convert(lf->t->dtype, lf->data, s->dtype, w->held, n);
		fs.ft = w->held;
	}
	int rc = emit(w, &fs) || sp_writer_flush(w);
	free(w->held);
	w->held = NULL;
	return rc;
}

/* How the adapter changes base tensor t: emitted here, or 1 when it leaves it alone. */
static int emit_adapted(struct writer *w, const struct segment *s, const struct sp_tensor *t)
{
	for (size_t i = 0; i < w->lora->ntargets; i++)
		if (!strcmp(w->lora->targets[i].base->name, t->name))
			return emit_lora(w, s, &w->lora->targets[i]);
	for (size_t i = 0; i < w->lora->nfull; i++)
		if (!strcmp(w->lora->full[i].base->name, t->name))
			return emit_full(w, s, &w->lora->full[i]);
	return 1;
}

/* ---- the quality report (lossy modes) ---- */

static double rel(double err, double norm)
{
	return norm > 0 ? sqrt(err / norm) : 0;
}

/* Norms of a tensor coded losslessly: its errors are zero, but it counts in the totals. */
static void exact_stats(const uint8_t *ft, enum sp_dtype dt, const uint8_t *base,
			enum sp_dtype bdt, uint64_t n, struct sp_lossy_stats *st)
{
	float *w = malloc(2 * n * sizeof(float) + 1), *b = w + n;
	if (!w || !sp_dtype_is_float(dt) || (base && !sp_dtype_is_float(bdt))) {
		free(w);
		return;
	}
	sp_dtype_to_f32(dt, ft, w, n);
	if (base)
		sp_dtype_to_f32(bdt, base, b, n);
	for (uint64_t i = 0; i < n; i++) {
		double d = (double)w[i] - (base ? b[i] : 0);
		st->norm_d += d * d;
		st->norm_w += (double)w[i] * w[i];
	}
	free(w);
}

static void report_add(cJSON *obj, const struct sp_lossy_stats *st, uint64_t bytes)
{
	cJSON_AddNumberToObject(obj, "bytes", (double)bytes);
	cJSON_AddNumberToObject(obj, "delta_rel_err", rel(st->err_d, st->norm_d));
	cJSON_AddNumberToObject(obj, "weight_rel_err", rel(st->err_w, st->norm_w));
}

/* One line of the report: how tensor t was coded, its size and errors, after its chunks (from
 * chunk first on) are written. */
static int report_tensor(struct writer *w, const struct sp_tensor *t, struct sp_lossy_choice c,
			 uint32_t rank, size_t first, size_t first_aux, struct sp_lossy_stats st)
{
	uint64_t bytes = 0;
	if (sp_writer_flush(w))
		return -1;
	for (size_t k = first; k < w->nchunks; k++)
		bytes += w->chunks[k].data_len;
	for (size_t k = first_aux; k < w->naux; k++)
		bytes += w->aux[k].data_len;
	if (c.lossy)
		st = w->flushed;
	cJSON *js = cJSON_CreateObject();
	cJSON_AddStringToObject(js, "name", t->name);
	cJSON_AddStringToObject(js, "coding", !c.lossy ? "lossless" : rank && c.bits ? "lowrank+quant"
					      : rank ? "lowrank" : c.bits ? "quant" : "base");
	cJSON_AddNumberToObject(js, "rank", rank);
	cJSON_AddNumberToObject(js, "bits", c.bits);
	report_add(js, &st, bytes);
	cJSON_AddItemToArray(cJSON_GetObjectItem(w->report, "tensors"), js);
	w->total.err_d += st.err_d;
	w->total.norm_d += st.norm_d;
	w->total.err_w += st.err_w;
	w->total.norm_w += st.norm_w;
	return 0;
}

static int plan_tensor(struct writer *w, const uint8_t *map, const struct sp_tensor *t,
		       cJSON *tensors)
{
	const struct sp_tensor_ref *r = sp_model_find(&w->base, t->name);
	uint64_t n = r ? overlap_elems(t, r->t) : 0;
	uint64_t bytes = t->dtype == SP_DT_BYTES ? n : n * sp_dtype_size(t->dtype);
	struct sp_lossy_choice c = {0};
	struct sp_lossy_stats st = {0};
	uint32_t rank = 0;
	size_t first = w->nchunks + w->njobs, first_aux = w->naux;
	const uint8_t *base = NULL;
	cJSON_AddItemToArray(tensors, sp_manifest_tensor(t, r ? r->t : NULL));
	w->match.of_tensors++;
	w->match.tensors += r && bytes == t->size;
	w->match.of_bytes += t->size;
	w->match.bytes += bytes;
	if (n) {
		uint32_t bi = sp_writer_base_index(w, r->file);
		if (bi == SP_NO_BASE || sp_model_map(&w->base, r->file, w->err))
			return -1;
		struct segment s = {
			.off = t->off, .len = bytes, .ft = map + t->off,
			.base = w->base.files[r->file].map + r->t->off,
			.base_file = bi, .base_off = r->t->off,
			.dtype = t->dtype, .base_dtype = r->t->dtype, .level = w->o->level,
			.tensor = !w->lora, /* an adapter leaves most tensors as the base: 1 MiB */
		};
		c = sp_lossy_choose(w->o, t, r->t, n / row_elems(t));
		if (w->drop_lossy && c.lossy)
			c = (struct sp_lossy_choice){.lossy = 1};
		int rc = w->lora ? emit_adapted(w, &s, t) : 1;
		if (rc == 1)
			rc = c.lossy ? emit_lossy(w, &s, t, n, c, &rank, &c.lossy) : emit(w, &s);
		if (rc)
			return -1;
		base = s.base;
	}
	if (emit_stored(w, map, t->off + bytes, t->size - bytes, t->dtype, w->o->level))
		return -1;
	if (!w->report)
		return 0;
	if (!c.lossy)
		exact_stats(map + t->off, t->dtype, base, r ? r->t->dtype : t->dtype,
			    base ? n : t->nelem, &st);
	return report_tensor(w, t, c, rank, first, first_aux, st);
}

cJSON *sp_plan_report_totals(struct writer *w)
{
	cJSON *total = cJSON_CreateObject();
	report_add(total, &w->total, w->pos);
	return total;
}

/* ---- files that are not tensors: patches against a base file ---- */

/* The part of a large base file a chunk is patched against, around where the chunk sits in
 * proportion: edits in place and rows added throughout keep it within reach. */
#define PATCH_WINDOW (8u << 20)
/* A base file at least this similar (estimated Jaccard of content anchors) is worth a patch. */
#define SIMILAR_ENOUGH 0.05
/* Files up to this size (configs, tokenizers) are small enough for zstd's highest effort. */
#define SMALL_FILE (1u << 20)

static int by_name(const void *key, const void *f)
{
	return strcmp(key, ((const struct sp_mfile *)f)->name);
}

static int base_named(const struct writer *w, const char *name)
{
	const struct sp_mfile *f = bsearch(name, w->base.files, w->base.nfiles,
					   sizeof(*w->base.files), by_name);
	return f ? (int)(f - w->base.files) : -1;
}

static const char *basename_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* The only base file with this file's name in another folder (a move), or -1. */
static int base_moved(const struct writer *w, const char *name)
{
	int found = -1;
	for (size_t i = 0; i < w->base.nfiles; i++)
		if (!strcmp(basename_of(w->base.files[i].name), basename_of(name))) {
			if (found >= 0)
				return -1;
			found = (int)i;
		}
	return found;
}

static const struct sp_sketch *base_sketch(struct writer *w, uint32_t i)
{
	struct sp_mfile *b = &w->base.files[i];
	if (!w->sketches && !(w->sketches = calloc(w->base.nfiles + 1, sizeof(*w->sketches))))
		return NULL;
	if (!w->sketches[i] && (w->sketches[i] = calloc(1, sizeof(struct sp_sketch))) &&
	    sp_model_map(&w->base, i, w->err) == 0)
		sp_sketch(b->map, b->size, w->sketches[i]);
	return w->sketches[i];
}

/* The base file whose content resembles f's most, if any does enough (a renamed file). */
static int base_similar(struct writer *w, const struct sp_mfile *f)
{
	struct sp_sketch mine;
	double best = SIMILAR_ENOUGH;
	int found = -1;
	sp_sketch(f->map, f->size, &mine);
	for (uint32_t i = 0; i < w->base.nfiles; i++) {
		/* Tensor files are matched by tensor name, and reading them all would be slow. */
		const struct sp_mfile *b = &w->base.files[i];
		const struct sp_sketch *s = b->size && !b->link && !b->is_st ? base_sketch(w, i) : NULL;
		double sim = s ? sp_sketch_similarity(&mine, s) : 0;
		if (sim > best) {
			best = sim;
			found = (int)i;
		}
	}
	return found;
}

static int usable(const struct writer *w, int i)
{
	return i >= 0 && w->base.files[i].size && !w->base.files[i].link;
}

/* The base file f is patched against: the one the options map it to, the one at the same
 * path, the only one of its name elsewhere, or the most similar one; -1 for none, -2 when the
 * options name a base file that cannot be used. */
static int match_base(struct writer *w, const struct sp_mfile *f)
{
	size_t n = strlen(f->name);
	for (size_t k = 0; k < w->o->nmap; k++)
		if (!strncmp(w->o->map[k], f->name, n) && w->o->map[k][n] == '=') {
			int i = base_named(w, w->o->map[k] + n + 1);
			if (usable(w, i))
				return i;
			sp_err_set(w->err, "--map %s: %s is not a non-empty regular file of the base",
				   w->o->map[k], w->o->map[k] + n + 1);
			return -2;
		}
	int i = base_named(w, f->name);
	if (!usable(w, i))
		i = base_moved(w, f->name);
	if (!usable(w, i) && f->size)
		i = base_similar(w, f);
	return usable(w, i) ? i : -1;
}

static void patch_window(uint64_t off, uint64_t n, uint64_t fsize, uint64_t bsize,
			 uint64_t *woff, uint64_t *wlen)
{
	*woff = 0;
	*wlen = bsize < PATCH_WINDOW ? bsize : PATCH_WINDOW;
	if (bsize <= PATCH_WINDOW)
		return;
	uint64_t center = (uint64_t)((double)(off + n / 2) / (double)fsize * (double)bsize);
	*woff = center > PATCH_WINDOW / 2 ? center - PATCH_WINDOW / 2 : 0;
	if (*woff > bsize - PATCH_WINDOW)
		*woff = bsize - PATCH_WINDOW;
}

/* Bytes [off, off+len) of a file of fsize bytes, each chunk patched against a window of base
 * model file bfile (or, with wlen, against that fixed window), else stored. */
static int emit_patched(struct writer *w, const uint8_t *map, uint64_t off, uint64_t len,
			uint64_t fsize, uint32_t bfile, uint64_t woff, uint64_t wlen)
{
	const struct sp_mfile *b = &w->base.files[bfile];
	uint32_t bi = sp_writer_base_index(w, bfile);
	struct segment s = {.off = off, .len = len, .dtype = SP_DT_BYTES};
	int fixed = wlen > 0;
	if (bi == SP_NO_BASE || sp_model_map(&w->base, bfile, w->err))
		return -1;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = chunk_len(w, &s, done);
		if (!fixed)
			patch_window(off + done, n, fsize, b->size, &woff, &wlen);
		struct encode_job j = {
			.c = {.out_off = off + done, .out_len = (uint32_t)n, .base_file = bi,
			      .base_off = woff},
			.ft = map + off + done,
			.base = off + done + n <= b->size ? b->map + off + done : NULL,
			.window = b->map + woff,
			.wlen = wlen,
			.level = fsize <= SMALL_FILE ? META_LEVEL : w->patch_level,
		};
		if (sp_writer_queue(w, &j))
			return -1;
		done += n;
	}
	return 0;
}

/* A file that is not (valid) safetensors: patched against a base file, or stored. */
static int plan_blob(struct writer *w, const struct sp_mfile *f)
{
	const char *kind = sp_compressed_kind(f->map, f->size);
	int b = match_base(w, f);
	if (kind && w->notes)
		sp_log("%s: %s-compressed: a patch cannot see through the compression, so expect "
		       "little saving",
		       f->path, kind);
	if (b == -2)
		return -1;
	if (b < 0)
		return emit_stored(w, f->map, 0, f->size, SP_DT_BYTES,
				   f->size <= SMALL_FILE ? META_LEVEL : w->patch_level);
	return emit_patched(w, f->map, 0, f->size, f->size, (uint32_t)b, 0, 0);
}

/* ---- files ---- */

static int tensors_overlap(const struct sp_st *st)
{
	for (size_t i = 1; i < st->ntensors; i++)
		if (st->tensors[i].off < st->tensors[i - 1].off + st->tensors[i - 1].size)
			return 1;
	return 0;
}

/* The header (patched against the header of the base file of the same name, which differs
 * little), then each tensor in file order; bytes between tensors are stored. */
static int plan_safetensors(struct writer *w, const struct sp_mfile *f, cJSON *tensors)
{
	uint64_t pos = f->st.header_len;
	int b = base_named(w, f->name);
	int rc = b >= 0 && w->base.files[b].is_st
			 ? emit_patched(w, f->map, 0, pos, f->size, (uint32_t)b, 0,
					w->base.files[b].st.header_len)
			 : emit_stored(w, f->map, 0, pos, SP_DT_BYTES, META_LEVEL);
	if (rc)
		return -1;
	for (size_t i = 0; i < f->st.ntensors; i++) {
		const struct sp_tensor *t = &f->st.tensors[i];
		if (emit_stored(w, f->map, pos, t->off - pos, SP_DT_BYTES, META_LEVEL) ||
		    plan_tensor(w, f->map, t, tensors))
			return -1;
		pos = t->off + t->size;
		w->progress.tensors_done++;
		sp_writer_progress(w, 0);
	}
	return emit_stored(w, f->map, pos, f->size - pos, SP_DT_BYTES, META_LEVEL);
}

int sp_plan_file(struct writer *w, uint32_t i)
{
	struct sp_mfile *f = &w->ft.files[i];
	struct sp_file_info info = {.name = f->name, .size = f->size, .mtime = f->mtime,
				    .mtime_nsec = f->mtime_nsec, .first_chunk = w->nchunks + w->njobs,
				    .mode = f->mode, .link = f->link};
	int as_st = f->is_st && !tensors_overlap(&f->st);
	cJSON *tensors = as_st ? cJSON_CreateArray() : NULL;
	if (!f->link && sp_model_map(&w->ft, i, w->err))
		return -1;
	int rc = f->link ? 0 : as_st ? plan_safetensors(w, f, tensors) : plan_blob(w, f);
	info.chunk_count = w->nchunks + w->njobs - info.first_chunk;
	sp_manifest_add_file(w->manifest, &info, tensors);
	return rc;
}

