/* SPDX-License-Identifier: Apache-2.0 */
#include "driver.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "paths.h"
#include "plan.h"
#include "table_code.h"
#include "verify.h"

/* Tables above this (a model of some 20 GB and up) are compressed faster. */
#define TABLE_BIG (8u << 20)
#define TABLE_BIG_LEVEL 9

/* What one run holds. */
struct drive {
	const struct sp_write_opts *o;
	const struct sp_run *r;
	struct sp_err *err;
	struct sp_inputs *in;
	struct sp_meter meter;
	struct sp_output *out;
	struct sp_sink *sink;
	struct sp_manifest_draft *manifest;
	struct sp_plan plan;
	struct sp_sink_table table;
};

static const char *const modes[] = {"lossless", "svd", "quant"};

/* The manifest's head: the mode, the chunk size, and where the base is. */
static struct sp_manifest_draft *new_manifest(const struct drive *d)
{
	const char *mode = d->in->lora ? "lora" : modes[d->o->mode];
	struct sp_manifest_draft *m = sp_draft_new(mode, d->o->chunk_size);
	char *abs, *rel;
	if (!m)
		return NULL;
	sp_base_location(d->r->base_dir, d->r->out_dir, &abs, &rel);
	sp_draft_set_base(m, abs ? abs : d->r->base_dir, rel, d->r->base_hub);
	free(abs);
	free(rel);
	return m;
}

/* The output file, the sink that fills it, the manifest and the plan. */
static int start(struct drive *d)
{
	const struct sp_write_opts *o = d->o;
	struct sp_plan *pl = &d->plan;
	if (!(d->out = sp_output_open(d->r->out_dir, o->dry_run, d->err)) ||
	    !(d->sink = sp_sink_new(o->threads, o->chunk_size, o->level, d->out, &d->meter,
				    d->in->ft.dir, d->err)))
		return -1;
	*pl = (struct sp_plan){.o = o, .err = d->err, .in = d->in, .sink = d->sink,
			       .meter = &d->meter, .drop_lossy = d->r->drop, .notes = d->r->notes,
			       .patch_level = d->r->patch_level};
	pl->manifest = d->manifest = new_manifest(d);
	int report = d->r->report && o->mode != SP_MODE_LOSSLESS;
	if (report)
		pl->report = sp_report_new(modes[o->mode]);
	if (!d->manifest || (report && !pl->report)) {
		sp_err_set(d->err, "%s: out of memory", d->r->out_dir);
		return -1;
	}
	return sp_plan_init(pl);
}

static int plan_files(struct drive *d)
{
	const struct sp_model *ft = &d->in->ft;
	for (uint32_t i = 0; i < ft->nfiles; i++) {
		d->meter.p.files += 1;
		d->meter.p.tensors += ft->files[i].st.ntensors;
		d->meter.p.bytes += ft->files[i].size;
	}
	for (uint32_t i = 0; i < ft->nfiles; i++) {
		if (sp_plan_file(&d->plan, i))
			return -1;
		d->meter.p.files_done++;
		sp_meter_tick(&d->meter, 0);
	}
	if (sp_plan_finish(&d->plan))
		return -1;
	if (d->plan.match.of_tensors)
		sp_draft_set_match(d->manifest, &d->plan.match);
	return 0;
}

/* The chunk table as one zstd frame of its records coded against the records before them, as
 * byte planes: a ninth of their size or less on trees of small files, mostly hashes and lengths
 * (48 bytes per chunk were a fifth of a delta of many small files). */
static int pack_table(const struct sp_sink_table *t, struct sp_packed *out, const char *label,
		      struct sp_err *err)
{
	size_t raw = t->n * sizeof(struct sp_chunk), cap = ZSTD_compressBound(raw);
	int level = raw <= TABLE_BIG ? META_LEVEL : TABLE_BIG_LEVEL;
	struct sp_chunk *coded = malloc(raw + 1);
	uint8_t *planes = malloc(raw + 1);
	out->features = SP_FEATURE_INCOMPAT_ZTABLE | SP_FEATURE_INCOMPAT_DTABLE |
			SP_FEATURE_INCOMPAT_PTABLE;
	out->data = coded && planes ? malloc(cap) : NULL;
	if (out->data) {
		memcpy(coded, t->chunks, raw);
		sp_table_code(coded, t->n, out->features);
		sp_table_to_planes(coded, t->n, planes);
		out->len = ZSTD_compress(out->data, cap, planes, raw, level);
	}
	out->raw_len = raw;
	free(coded);
	free(planes);
	if (out->data && !ZSTD_isError(out->len))
		return 0;
	free(out->data);
	sp_err_set(err, "%s: out of memory for the chunk table", label);
	return -1;
}

/* The chunk table and the manifest after the data, and the superblock that points at them. */
static int write_tail(struct drive *d, struct sp_super *sb)
{
	struct sp_sink_table *t = &d->table;
	struct sp_packed m;
	if (sp_sink_finish(d->sink, t))
		return -1;
	if (t->lossy || (t->naux && !t->slice))
		sb->feature_incompat |= SP_FEATURE_INCOMPAT_LOSSY;
	if (t->slice)
		sb->feature_incompat |= SP_FEATURE_INCOMPAT_PACK;
	if (t->patch)
		sb->feature_incompat |= SP_FEATURE_INCOMPAT_PATCH;
	if (t->history)
		sb->feature_incompat |= SP_FEATURE_INCOMPAT_HISTORY;
	if (t->naux)
		sp_draft_set_aux(d->manifest, t->naux);
	if (sp_draft_base_from_history(d->manifest, t->chunks, t->n))
		sb->feature_incompat |= SP_FEATURE_INCOMPAT_HISTBASE;
	if (sp_draft_pack(d->manifest, t->chunks, t->n, META_LEVEL, &m, d->in->ft.dir, d->err))
		return -1;
	struct sp_packed table;
	if (pack_table(t, &table, d->in->ft.dir, d->err)) {
		free(m.data);
		return -1;
	}
	/* A table of a few records is smaller as it is than as a frame. */
	int framed = table.len < table.raw_len;
	const void *stored = framed ? (const void *)table.data : (const void *)t->chunks;
	size_t stored_len = framed ? table.len : table.raw_len;
	sb->feature_incompat |= SP_FEATURE_INCOMPAT_WHOLEFP | SP_FEATURE_INCOMPAT_IMPLIED |
				(framed ? table.features : 0) | m.features;
	sb->chunk_count = t->n;
	sb->chunk_table_len = framed ? table.len : 0;
	sb->chunk_table_hash = XXH3_64bits(stored, stored_len);
	sb->manifest_len = m.len;
	sb->manifest_raw_len = m.raw_len;
	sb->manifest_hash = XXH3_64bits(m.data, m.len);
	int rc = sp_output_append(d->out, stored, stored_len, &sb->chunk_table_off, d->err) ||
		 sp_output_append(d->out, m.data, m.len, &sb->manifest_off, d->err);
	sb->file_size = sp_output_size(d->out);
	free(table.data);
	free(m.data);
	return rc ? -1 : 0;
}

/* The finished temporary file, read back through the reader (opts.verify): decoded, checked
 * against every hash and, for a bit-exact delta, against the fine-tune. */
static int verify(const struct drive *d)
{
	const struct sp_write_opts *o = d->o;
	int exact = o->mode == SP_MODE_LOSSLESS && !o->size && d->r->ft_dir;
	if (!o->verify)
		return 0;
	return sp_verify_written(d->r->out_dir, sp_output_path(d->out), d->r->base_dir,
				 exact ? d->r->ft_dir : NULL, d->err);
}

/* Chunk table, manifest, and last the superblock: until it is written, verified and the file
 * renamed, nothing looks like a delta. */
static int finish(struct drive *d)
{
	struct sp_super sb = {.version = SP_VERSION, .super_size = sizeof(sb)};
	memcpy(sb.magic, SP_MAGIC, SP_MAGIC_LEN);
	if (write_tail(d, &sb))
		return -1;
	if (d->o->dry_run)
		return 0;
	return sp_output_seal(d->out, &sb, d->err) || verify(d) ||
	       sp_output_publish(d->out, d->r->out_dir, d->err);
}

static void fill_stats(struct drive *d, struct sp_write_stats *st)
{
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < d->in->ft.nfiles; i++) {
		st->ft_bytes += d->in->ft.files[i].size;
		st->tensors += d->in->ft.files[i].st.ntensors;
	}
	st->delta_bytes = sp_output_size(d->out);
	st->chunks = d->table.n;
	st->match = d->plan.match;
	if (d->plan.report) {
		st->report = sp_report_finish(d->plan.report, st->delta_bytes);
		d->plan.report = NULL;
	}
	st->seconds = sp_meter_seconds(&d->meter);
}

int sp_drive(struct sp_inputs *in, const struct sp_write_opts *o, const struct sp_run *r,
	     struct sp_write_stats *stats, struct sp_err *err)
{
	struct drive d = {.o = o, .r = r, .err = err, .in = in};
	sp_meter_start(&d.meter, r->notes ? o->progress : NULL, o->progress_arg);
	int rc = start(&d) || plan_files(&d) || finish(&d) ? -1 : 0;
	if (rc == 0) {
		sp_meter_tick(&d.meter, 1);
		if (stats)
			fill_stats(&d, stats);
	}
	sp_plan_fini(&d.plan);
	sp_report_free(d.plan.report);
	sp_draft_free(d.manifest);
	sp_sink_free(d.sink);
	sp_output_free(d.out);
	return rc;
}
