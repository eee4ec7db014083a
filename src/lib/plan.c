/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "dtype.h"
#include "plan.h"

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
	const ZSTD_CDict *history; /* a new file: coded against the delta's history */
};

/* The length of the chunk at s->off + done. A segment longer than a chunk starts with a
 * shorter one so that the rest fall on multiples of the chunk size in the file: a reader asking
 * for aligned ranges (the kernel's readahead) then covers whole chunks, which decode straight
 * into its buffer. */
static uint64_t chunk_len(const struct sp_plan *pl, const struct segment *s, uint64_t done)
{
	uint64_t cs = s->tensor ? pl->o->tensor_chunk_size : pl->o->chunk_size;
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

static int emit(struct sp_plan *pl, const struct segment *s)
{
	size_t es = sp_dtype_size(s->dtype), bs = sp_dtype_size(s->base_dtype);
	for (uint64_t done = 0; done < s->len;) {
		uint64_t n = chunk_len(pl, s, done);
		struct encode_job j = {
			.c = {.out_off = s->off + done, .out_len = (uint32_t)n, .dtype = (uint8_t)s->dtype,
			      .base_dtype = (uint8_t)s->base_dtype, .base_file = SP_NO_BASE},
			.ft = s->ft + done,
			.level = s->level,
			.lossy = s->lossy,
			.e0 = done / es,
			.measure = pl->report != NULL,
			.history = s->history,
		};
		if (s->base) {
			j.base = s->base + done / es * bs;
			j.c.base_file = s->base_file;
			j.c.base_off = s->base_off + done / es * bs;
		}
		if (sp_sink_queue(pl->sink, &j))
			return -1;
		done += n;
	}
	return 0;
}

static int emit_stored(struct sp_plan *pl, const uint8_t *map, uint64_t off, uint64_t len,
		       enum sp_dtype dt, int level)
{
	/* an empty file is not mapped: NULL + 0 is undefined */
	struct segment s = {.off = off, .len = len, .ft = map ? map + off : NULL, .dtype = dt,
			    .base_dtype = dt, .level = level, .tensor = dt != SP_DT_BYTES};
	return emit(pl, &s);
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

static int out_of_memory(struct sp_plan *pl)
{
	sp_err_set(pl->err, "%s: out of memory", pl->in->ft.dir);
	return -1;
}

/* Stores the factor b of a low-rank part as an auxiliary chunk that the tensor's chunks share. */
static int store_factor(struct sp_plan *pl, struct sp_lossy_tensor *t)
{
	size_t n = (size_t)t->rank * t->cols;
	uint8_t *bytes = malloc(n * 4);
	if (!bytes)
		return out_of_memory(pl);
	size_t len = sp_lossy_factor_bytes(t->b, n, t->b_scale, t->f32_factors, bytes);
	int rc = sp_sink_add_aux(pl->sink, bytes, len, &t->aux);
	free(bytes);
	return rc;
}

/* The n overlapping elements of t as LOSSY chunks, encoded before the next tensor so that the
 * delta and its factors need only live this long. */
static int emit_lossy(struct sp_plan *pl, const struct segment *s, const struct sp_tensor *t,
		      uint64_t n, struct sp_lossy_choice c, uint32_t *rank, int *lossy)
{
	struct sp_lossy_prep p;
	uint64_t cols = row_elems(t);
	int rc = sp_lossy_prepare(s->ft, s->dtype, s->base, s->base_dtype, n / cols, cols, c, pl->o,
				  sp_inputs_factors(pl->in, t), &p);
	if (rc == 1) {
		sp_lossy_prep_free(&p);
		*lossy = 0;
		return emit(pl, s);
	}
	if (rc) {
		sp_err_set(pl->err, "%s: tensor %s: cannot factor its delta (out of memory?)",
			   pl->in->ft.dir, t->name);
		sp_lossy_prep_free(&p);
		return -1;
	}
	struct segment ls = *s;
	ls.lossy = &p.t;
	ls.tensor = 0;
	if (c.row_groups && p.t.bits && (p.t.group % cols == 0 || cols % p.t.group == 0))
		ls.unit = (p.t.group > cols ? p.t.group : cols) * sp_dtype_size(s->dtype);
	rc = (p.t.rank && store_factor(pl, &p.t)) || emit(pl, &ls) || sp_sink_flush(pl->sink);
	*rank = p.t.rank;
	sp_lossy_prep_free(&p);
	return rc;
}

/* ---- adapters ---- */

/* A LoRA target: the base plus its exact factors (f32), merged on read. */
static int emit_lora(struct sp_plan *pl, const struct segment *s, const struct sp_lora_target *lt)
{
	struct sp_lossy_tensor t = {.rows = lt->rows, .cols = lt->cols, .rank = lt->rank,
				    .f32_factors = 1, .a = lt->a, .b = lt->b, .a_scale = 1,
				    .b_scale = 1};
	struct segment ls = *s;
	ls.lossy = &t;
	ls.tensor = 0;
	return store_factor(pl, &t) || emit(pl, &ls) || sp_sink_flush(pl->sink);
}

/* A tensor the adapter saves whole, in the base's dtype, coded against the base. */
static int emit_full(struct sp_plan *pl, const struct segment *s, const struct sp_lora_full *lf)
{
	struct segment fs = *s;
	fs.ft = lf->data;
	fs.tensor = 1;
	if (lf->t->dtype != s->dtype) {
		uint64_t n = lf->t->nelem;
		if (!(pl->held = malloc(n * sp_dtype_size(s->dtype) + 1)))
			return out_of_memory(pl);
		sp_dtype_convert(lf->t->dtype, lf->data, s->dtype, pl->held, n);
		fs.ft = pl->held;
	}
	int rc = emit(pl, &fs) || sp_sink_flush(pl->sink);
	free(pl->held);
	pl->held = NULL;
	return rc;
}

/* How the adapter changes base tensor t: emitted here, or 1 when it leaves it alone. */
static int emit_adapted(struct sp_plan *pl, const struct segment *s, const struct sp_tensor *t)
{
	for (size_t i = 0; i < pl->in->lora->ntargets; i++)
		if (!strcmp(pl->in->lora->targets[i].base->name, t->name))
			return emit_lora(pl, s, &pl->in->lora->targets[i]);
	for (size_t i = 0; i < pl->in->lora->nfull; i++)
		if (!strcmp(pl->in->lora->full[i].base->name, t->name))
			return emit_full(pl, s, &pl->in->lora->full[i]);
	return 1;
}

/* ---- tensors ---- */

/* Fingerprints every base file the delta reads, the first time a chunk reads it: the manifest
 * lists them, and a reader checks them all before it serves anything. SP_NO_BASE (and the
 * error set) when it cannot be read. */
static uint32_t base_index(struct sp_plan *pl, uint32_t i)
{
	if (pl->base_index[i] != SP_NO_BASE)
		return pl->base_index[i];
	const struct sp_base_fp *fp = sp_inputs_fp(pl->in, i, pl->err);
	if (!fp)
		return SP_NO_BASE;
	sp_draft_add_base_fp(pl->manifest, fp);
	return pl->base_index[i] = pl->nbase++;
}

/* One line of the report: how tensor t was coded, its size and errors (st, unless lossy),
 * once its chunks (from mark on) are written. */
static int report_tensor(struct sp_plan *pl, const struct sp_tensor *t, struct sp_lossy_choice c,
			 uint32_t rank, struct sp_sink_mark mark, struct sp_lossy_stats st)
{
	uint64_t bytes;
	struct sp_lossy_stats written;
	if (sp_sink_since(pl->sink, mark, &bytes, &written))
		return -1;
	sp_report_tensor(pl->report, t->name, &c, rank, c.lossy ? &written : &st, bytes);
	return 0;
}

static int plan_tensor(struct sp_plan *pl, const uint8_t *map, const struct sp_tensor *t)
{
	const struct sp_tensor_ref *r = sp_model_find(&pl->in->base, t->name);
	uint64_t n = r ? overlap_elems(t, r->t) : 0;
	uint64_t bytes = t->dtype == SP_DT_BYTES ? n : n * sp_dtype_size(t->dtype);
	struct sp_lossy_choice c = {0};
	struct sp_lossy_stats st = {0};
	uint32_t rank = 0;
	struct sp_sink_mark mark = sp_sink_mark(pl->sink);
	const uint8_t *base = NULL;
	sp_draft_add_tensor(pl->manifest, t, r ? r->t : NULL);
	pl->match.of_tensors++;
	pl->match.tensors += r && bytes == t->size;
	pl->match.of_bytes += t->size;
	pl->match.bytes += bytes;
	if (n) {
		uint32_t bi = base_index(pl, r->file);
		if (bi == SP_NO_BASE || sp_model_map(&pl->in->base, r->file, pl->err))
			return -1;
		struct segment s = {
			.off = t->off, .len = bytes, .ft = map + t->off,
			.base = pl->in->base.files[r->file].map + r->t->off,
			.base_file = bi, .base_off = r->t->off,
			.dtype = t->dtype, .base_dtype = r->t->dtype, .level = pl->o->level,
			.tensor = !pl->in->lora, /* an adapter leaves most tensors as the base: 1 MiB */
		};
		c = sp_lossy_choose(pl->o, t, r->t, n / row_elems(t));
		if (pl->drop_lossy && c.lossy)
			c = (struct sp_lossy_choice){.lossy = 1};
		int rc = pl->in->lora ? emit_adapted(pl, &s, t) : 1;
		if (rc == 1)
			rc = c.lossy ? emit_lossy(pl, &s, t, n, c, &rank, &c.lossy) : emit(pl, &s);
		if (rc)
			return -1;
		base = s.base;
	}
	if (emit_stored(pl, map, t->off + bytes, t->size - bytes, t->dtype, pl->o->level))
		return -1;
	if (!pl->report)
		return 0;
	if (!c.lossy)
		sp_lossy_measure_exact(map + t->off, t->dtype, base, r ? r->t->dtype : t->dtype,
			    base ? n : t->nelem, &st);
	return report_tensor(pl, t, c, rank, mark, st);
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

static int base_named(const struct sp_plan *pl, const char *name)
{
	const struct sp_mfile *f = bsearch(name, pl->in->base.files, pl->in->base.nfiles,
					   sizeof(*pl->in->base.files), by_name);
	return f ? (int)(f - pl->in->base.files) : -1;
}

static const char *basename_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* The only base file with this file's name in another folder (a move), or -1. */
static int base_moved(const struct sp_plan *pl, const char *name)
{
	int found = -1;
	for (size_t i = 0; i < pl->in->base.nfiles; i++)
		if (!strcmp(basename_of(pl->in->base.files[i].name), basename_of(name))) {
			if (found >= 0)
				return -1;
			found = (int)i;
		}
	return found;
}

/* The base file whose content resembles f's most, if any does enough (a renamed file). */
static int base_similar(struct sp_plan *pl, const struct sp_mfile *f)
{
	struct sp_sketch mine;
	double best = SIMILAR_ENOUGH;
	int found = -1;
	sp_sketch(f->map, f->size, &mine);
	for (uint32_t i = 0; i < pl->in->base.nfiles; i++) {
		/* Tensor files are matched by tensor name, and reading them all would be slow. */
		const struct sp_mfile *b = &pl->in->base.files[i];
		int worth = b->size && !b->link && !b->is_st;
		const struct sp_sketch *s = worth ? sp_inputs_sketch(pl->in, i, pl->err) : NULL;
		double sim = s ? sp_sketch_similarity(&mine, s) : 0;
		if (sim > best) {
			best = sim;
			found = (int)i;
		}
	}
	return found;
}

static int usable(const struct sp_plan *pl, int i)
{
	return i >= 0 && pl->in->base.files[i].size && !pl->in->base.files[i].link;
}

/* The base file that is f's counterpart by name: the one the options map it to, the one at the
 * same path, or the only one of its name elsewhere; -1 for none, -2 when the options name a base
 * file that cannot be used. */
static int match_named(struct sp_plan *pl, const struct sp_mfile *f)
{
	size_t n = strlen(f->name);
	for (size_t k = 0; k < pl->o->nmap; k++)
		if (!strncmp(pl->o->map[k], f->name, n) && pl->o->map[k][n] == '=') {
			int i = base_named(pl, pl->o->map[k] + n + 1);
			if (usable(pl, i))
				return i;
			sp_err_set(pl->err, "--map %s: %s is not a non-empty regular file of the base",
				   pl->o->map[k], pl->o->map[k] + n + 1);
			return -2;
		}
	int i = base_named(pl, f->name);
	if (!usable(pl, i))
		i = base_moved(pl, f->name);
	return usable(pl, i) ? i : -1;
}

/* ---- small files: new ones coded against the history, and packed with changed ones ---- */

/* Packs pay from two files on: each shares what zstd learnt from the others. */
#define PACK_MIN 2
/* Packs hold at most this much, so that a small read decodes little. */
#define PACK_MAX (256u << 10)
/* New files that would fill more than a pack of their own are packed apart from changed ones,
 * in larger packs: a changed file refers to its old version in the history and gains little
 * from its neighbours, while a new file's best reference is often another new file. Fewer new
 * files stay among the changed ones of their folders, which they can share more with (measured
 * on real source releases and generated trees: README, Derived datasets). */
#define PACK_NEW_MAX (512u << 10)
/* Below this many bytes of new and changed small files, the seconds zstd takes to index a
 * history are not worth the few KB it saves them. */
#define HISTORY_MIN (64u << 10)

enum small_kind { SMALL_OTHER, SMALL_NEW, SMALL_CHANGED };

static int tensors_overlap(const struct sp_st *st)
{
	for (size_t i = 1; i < st->ntensors; i++)
		if (st->tensors[i].off < st->tensors[i - 1].off + st->tensors[i - 1].size)
			return 1;
	return 0;
}

/* A file planned as bytes (not as safetensors), with some. */
static int plain_bytes(const struct sp_mfile *f)
{
	return !f->link && f->size && !(f->is_st && !tensors_overlap(&f->st));
}

/* The largest file that joins a pack: a SLICE chunk is at most a chunk. */
static uint64_t pack_file_max(const struct sp_plan *pl)
{
	return pl->o->chunk_size < SP_PACK_FILE_MAX ? pl->o->chunk_size : SP_PACK_FILE_MAX;
}

/* What file i is: NEW (at most SMALL_FILE bytes, no counterpart by name: larger ones are patched
 * against their likest base file), CHANGED (small enough for a pack, and not its
 * counterpart's), or OTHER; -1 when it cannot be read. */
static int kind_of(struct sp_plan *pl, uint32_t i)
{
	const struct sp_mfile *f = &pl->in->ft.files[i];
	int b = plain_bytes(f) && f->size <= SMALL_FILE ? match_named(pl, f) : -2;
	if (b == -2 || (b >= 0 && f->size > pack_file_max(pl)))
		return SMALL_OTHER;
	if (sp_model_map(&pl->in->ft, i, pl->err) ||
	    (b >= 0 && sp_model_map(&pl->in->base, (uint32_t)b, pl->err)))
		return -1;
	const struct sp_mfile *bf = b >= 0 ? &pl->in->base.files[b] : NULL;
	if (bf && bf->size == f->size && !memcmp(bf->map, f->map, f->size))
		return SMALL_OTHER;
	return bf ? SMALL_CHANGED : SMALL_NEW;
}

/* What classify counts of the new and changed small files. */
struct small_totals {
	size_t nnew, npack;   /* files new, files that could join packs */
	uint64_t bytes;       /* their bytes */
	uint64_t new_packed;  /* bytes of new files that could join packs */
};

/* Every file's kind; the sketch of the new and changed ones together (what the history should
 * resemble), and their totals. */
static int classify(struct sp_plan *pl, struct sp_sketch *want, struct small_totals *t)
{
	struct sp_sketch one;
	want->n = 0;
	*t = (struct small_totals){0};
	if (!(pl->small = calloc(pl->in->ft.nfiles + 1, 1))) {
		sp_err_set(pl->err, "%s: out of memory", pl->in->ft.dir);
		return -1;
	}
	for (uint32_t i = 0; i < pl->in->ft.nfiles; i++) {
		const struct sp_mfile *f = &pl->in->ft.files[i];
		int k = kind_of(pl, i);
		if (k < 0)
			return -1;
		if (k == SMALL_OTHER)
			continue;
		pl->small[i] = (uint8_t)k;
		int packable = f->size <= pack_file_max(pl);
		t->nnew += k == SMALL_NEW;
		t->npack += packable;
		t->bytes += f->size;
		t->new_packed += k == SMALL_NEW && packable ? f->size : 0;
		sp_sketch(f->map, f->size, &one);
		sp_sketch_merge(want, &one);
	}
	return 0;
}

/* Which base files the history holds whole. */
static int mark_history(struct sp_plan *pl)
{
	if (!(pl->in_history = calloc(pl->in->base.nfiles + 1, 1))) {
		sp_err_set(pl->err, "%s: out of memory", pl->in->base.dir);
		return -1;
	}
	for (size_t k = 0; k < pl->history->nseg; k++) {
		const struct sp_history_seg *seg = &pl->history->seg[k];
		pl->in_history[seg->file] = seg->len == pl->in->base.files[seg->file].size;
	}
	return 0;
}

/* The history into the manifest, its files among the base files the reader checks. */
static int list_history(struct sp_plan *pl)
{
	for (size_t k = 0; k < pl->history->nseg; k++) {
		struct sp_history_seg seg = pl->history->seg[k];
		if ((seg.file = base_index(pl, seg.file)) == SP_NO_BASE)
			return -1;
		sp_draft_add_history(pl->manifest, &seg);
	}
	sp_draft_set_history_hash(pl->manifest, XXH3_64bits(pl->history->bytes, pl->history->len));
	return 0;
}

/* The history, picked in the first run and kept with the inputs for the next ones (a size
 * budget's): zstd takes seconds to index it. */
static const struct sp_history_pick *picked_history(struct sp_plan *pl,
						    const struct sp_sketch *want)
{
	struct sp_inputs *in = pl->in;
	if (in->history)
		return in->history;
	if (!(in->history = calloc(1, sizeof(*in->history)))) {
		sp_err_set(pl->err, "%s: out of memory", in->base.dir);
		return NULL;
	}
	if (sp_history_pick(in, want, META_LEVEL, in->history, pl->err)) {
		free(in->history);
		in->history = NULL;
	}
	return in->history;
}

/* Once, at the first file planned as bytes: the small files' kinds, the history when a new file
 * or a pack needs it, and the packers when files can share packs. */
static int prepare_small(struct sp_plan *pl)
{
	struct sp_sketch want;
	struct small_totals t;
	if (pl->small)
		return 0;
	if (classify(pl, &want, &t))
		return -1;
	if ((!t.nnew && t.npack < PACK_MIN) || t.bytes < HISTORY_MIN)
		return 0;
	if (!(pl->history = picked_history(pl, &want)) || mark_history(pl))
		return -1;
	/* The history's files first among the base files, in its order: the manifest can then say
	 * "the first N" instead of listing them. */
	for (size_t k = 0; k < pl->history->nseg; k++)
		if (base_index(pl, pl->history->seg[k].file) == SP_NO_BASE)
			return -1;
	if (t.npack < PACK_MIN)
		return 0;
	const ZSTD_CDict *h = pl->history->dict;
	if (!(pl->packer = sp_packer_new(pl->sink, h, META_LEVEL, PACK_MAX, pl->in->ft.dir,
					 pl->err)))
		return -1;
	if (t.new_packed > PACK_NEW_MAX &&
	    !(pl->new_packer = sp_packer_new(pl->sink, h, META_LEVEL, PACK_NEW_MAX, pl->in->ft.dir,
					     pl->err)))
		return -1;
	return 0;
}

/* The packer for a small file: a new one's, or the changed files' when the history holds its
 * counterpart b; NULL when the file is not packed. */
static struct sp_packer *packer_of(const struct sp_plan *pl, const struct sp_mfile *f, int b)
{
	enum small_kind k = pl->small[f - pl->in->ft.files];
	if (!pl->packer || f->size > pack_file_max(pl))
		return NULL;
	if (k == SMALL_NEW)
		return pl->new_packer ? pl->new_packer : pl->packer;
	return k == SMALL_CHANGED && pl->in_history && pl->in_history[b] ? pl->packer : NULL;
}

/* The history a new file is coded against, or NULL. */
static const ZSTD_CDict *history_of(const struct sp_plan *pl, const struct sp_mfile *f)
{
	int is_new = pl->small && pl->small[f - pl->in->ft.files] == SMALL_NEW;
	return is_new && pl->history ? pl->history->dict : NULL;
}

static int emit_history(struct sp_plan *pl, const struct sp_mfile *f)
{
	struct segment s = {.off = 0, .len = f->size, .ft = f->map, .dtype = SP_DT_BYTES,
			    .base_dtype = SP_DT_BYTES, .level = META_LEVEL,
			    .history = pl->history->dict};
	return emit(pl, &s);
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
static int emit_patched(struct sp_plan *pl, const uint8_t *map, uint64_t off, uint64_t len,
			uint64_t fsize, uint32_t bfile, uint64_t woff, uint64_t wlen,
			const ZSTD_CDict *history)
{
	const struct sp_mfile *b = &pl->in->base.files[bfile];
	uint32_t bi = base_index(pl, bfile);
	struct segment s = {.off = off, .len = len, .dtype = SP_DT_BYTES};
	int fixed = wlen > 0;
	if (bi == SP_NO_BASE || sp_model_map(&pl->in->base, bfile, pl->err))
		return -1;
	for (uint64_t done = 0; done < len;) {
		uint64_t n = chunk_len(pl, &s, done);
		if (!fixed)
			patch_window(off + done, n, fsize, b->size, &woff, &wlen);
		struct encode_job j = {
			.c = {.out_off = off + done, .out_len = (uint32_t)n, .base_file = bi,
			      .base_off = woff},
			.ft = map + off + done,
			.base = off + done + n <= b->size ? b->map + off + done : NULL,
			.window = b->map + woff,
			.wlen = wlen,
			.level = fsize <= SMALL_FILE ? META_LEVEL : pl->patch_level,
			.history = history,
		};
		if (sp_sink_queue(pl->sink, &j))
			return -1;
		done += n;
	}
	return 0;
}

/* A file that is not (valid) safetensors: patched against a base file, or stored. */
static int plan_blob(struct sp_plan *pl, const struct sp_mfile *f)
{
	const char *kind = sp_compressed_kind(f->map, f->size);
	int b = match_named(pl, f);
	if (kind && pl->notes)
		sp_log("%s: %s-compressed: a patch cannot see through the compression, so expect "
		       "little saving",
		       f->path, kind);
	if (b == -2 || prepare_small(pl))
		return -1;
	struct sp_packer *packer = packer_of(pl, f, b);
	if (packer)
		return sp_packer_add(packer, f->map, (uint32_t)f->size);
	const ZSTD_CDict *history = history_of(pl, f);
	if (b < 0 && f->size)
		b = base_similar(pl, f);
	if (b < 0 && history)
		return emit_history(pl, f);
	if (b < 0)
		return emit_stored(pl, f->map, 0, f->size, SP_DT_BYTES,
				   f->size <= SMALL_FILE ? META_LEVEL : pl->patch_level);
	return emit_patched(pl, f->map, 0, f->size, f->size, (uint32_t)b, 0, 0, history);
}

/* ---- files ---- */


/* The header (patched against the header of the base file of the same name, which differs
 * little), then each tensor in file order; bytes between tensors are stored. */
static int plan_safetensors(struct sp_plan *pl, const struct sp_mfile *f)
{
	uint64_t pos = f->st.header_len;
	int b = base_named(pl, f->name);
	int rc = b >= 0 && pl->in->base.files[b].is_st
			 ? emit_patched(pl, f->map, 0, pos, f->size, (uint32_t)b, 0,
					pl->in->base.files[b].st.header_len, NULL)
			 : emit_stored(pl, f->map, 0, pos, SP_DT_BYTES, META_LEVEL);
	if (rc)
		return -1;
	for (size_t i = 0; i < f->st.ntensors; i++) {
		const struct sp_tensor *t = &f->st.tensors[i];
		if (emit_stored(pl, f->map, pos, t->off - pos, SP_DT_BYTES, META_LEVEL) ||
		    plan_tensor(pl, f->map, t))
			return -1;
		pos = t->off + t->size;
		pl->meter->p.tensors_done++;
		sp_meter_tick(pl->meter, 0);
	}
	return emit_stored(pl, f->map, pos, f->size - pos, SP_DT_BYTES, META_LEVEL);
}

int sp_plan_file(struct sp_plan *pl, uint32_t i)
{
	struct sp_mfile *f = &pl->in->ft.files[i];
	struct sp_file_info info = {.name = f->name, .size = f->size, .mtime = f->mtime,
				    .mtime_nsec = f->mtime_nsec, .first_chunk = sp_sink_count(pl->sink),
				    .mode = f->mode, .link = f->link};
	int as_st = f->is_st && !tensors_overlap(&f->st);
	if (!f->link && sp_model_map(&pl->in->ft, i, pl->err))
		return -1;
	int rc = f->link ? 0 : as_st ? plan_safetensors(pl, f) : plan_blob(pl, f);
	info.chunk_count = sp_sink_count(pl->sink) - info.first_chunk;
	sp_draft_add_file(pl->manifest, &info, as_st);
	return rc;
}

int sp_plan_finish(struct sp_plan *pl)
{
	if ((pl->packer && sp_packer_close(pl->packer)) ||
	    (pl->new_packer && sp_packer_close(pl->new_packer)) || sp_sink_flush(pl->sink))
		return -1;
	/* Listed only when a chunk uses it: its files would be checked for nothing. */
	return pl->history && sp_sink_table_uses(pl->sink, SP_CODEC_HISTORY) ? list_history(pl) : 0;
}

int sp_plan_init(struct sp_plan *pl)
{
	size_t n = pl->in->base.nfiles;
	if (!(pl->base_index = malloc((n + 1) * sizeof(uint32_t)))) {
		sp_err_set(pl->err, "%s: out of memory", pl->in->base.dir);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		pl->base_index[i] = SP_NO_BASE;
	return 0;
}

void sp_plan_fini(struct sp_plan *pl)
{
	free(pl->base_index);
	free(pl->held);
	sp_packer_free(pl->packer);
	sp_packer_free(pl->new_packer);
	pl->packer = pl->new_packer = NULL;
	pl->history = NULL;
	free(pl->small);
	free(pl->in_history);
	pl->small = pl->in_history = NULL;
	pl->base_index = NULL;
	pl->held = NULL;
}
