/* SPDX-License-Identifier: Apache-2.0 */
#include "sink.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "sparse/util.h"

#define BATCH_PER_THREAD 4

struct chunks {
	struct sp_chunk *v;
	size_t n, cap;
};

struct sp_sink {
	struct sp_output *out;
	struct sp_meter *meter;
	const char *label;
	struct sp_err *err;
	int aux_level;
	int threads;
	struct sp_codecs *codecs; /* one per thread */
	struct encode_job *jobs;
	size_t njobs, batch;
	atomic_size_t next_job;
	struct chunks chunks, aux; /* aux: reserved entries are zero until their pack is stored */
	size_t queued_packs;       /* queued jobs that are packs, not the files' chunks */
	struct sp_lossy_stats stats; /* of the LOSSY chunks written since the last mark */
	uint8_t used[SP_CODEC_COUNT]; /* the codecs of the chunks written, packs' included */
};

/* A LOSSY chunk: its hash covers its inputs, and its error goes to the report. */
static int encode_lossy(struct sp_codecs *cs, struct encode_job *j)
{
	size_t n = j->c.out_len / sp_dtype_size(j->c.dtype);
	float *delta = malloc(n * sizeof(float) + 1);
	size_t len = delta ? sp_lossy_encode(cs->cctx, cs->lossless, j->lossy, j->e0, n, j->dst,
					     j->dst_cap, j->level, delta, &cs->lossy)
			   : 0;
	if (len) {
		j->c.codec = SP_CODEC_LOSSY;
		j->c.data_len = (uint32_t)len;
		j->c.out_hash = sp_lossy_inputs_hash(j->dst, len, j->base, sp_chunk_base_len(&j->c));
		if (j->measure && j->lossy->d) /* adapters: no fine-tune to measure against */
			sp_lossy_measure(j->lossy->d + j->e0, delta, j->ft, j->c.dtype, j->base,
					 j->c.base_dtype, n, &j->stats);
	}
	free(delta);
	return len ? 0 : -1;
}

/* Thread t encodes queued jobs with its codecs until none is left. */
static void encode_worker(void *arg, unsigned t)
{
	struct sp_sink *s = arg;
	struct sp_codecs *cs = &s->codecs[t];
	size_t i;
	while ((i = atomic_fetch_add(&s->next_job, 1)) < s->njobs) {
		struct encode_job *j = &s->jobs[i];
		if (j->lossy) {
			j->rc = encode_lossy(cs, j);
			continue;
		}
		if (j->slice) { /* its pack's hash covers it (SP_FEATURE_INCOMPAT_IMPLIED) */
			j->c.out_hash = 0;
			j->c.codec = SP_CODEC_SLICE;
			j->c.data_len = 0;
			j->rc = 0;
			continue;
		}
		j->c.out_hash = XXH3_64bits(j->ft, j->c.out_len);
		if (j->history && !j->window) {
			j->rc = sp_chunk_encode_history(cs, &j->c, j->ft, j->history, j->dst,
							j->dst_cap, j->level);
			continue;
		}
		j->rc = j->window ? sp_chunk_encode_patch(cs, &j->c, j->ft, j->window, j->wlen,
							  j->base, j->dst, j->dst_cap, j->level)
				  : sp_chunk_encode(cs, &j->c, j->ft, j->base, j->dst, j->dst_cap,
						    j->level);
		if (j->rc == 0 && j->history && j->c.codec != SP_CODEC_BASE)
			sp_chunk_try_history(cs, &j->c, j->ft, j->history, j->dst, j->dst_cap);
	}
}

static int append(struct chunks *v, const struct sp_chunk *c)
{
	if (v->n == v->cap) {
		size_t ncap = v->cap ? v->cap * 2 : 1024;
		struct sp_chunk *p = realloc(v->v, ncap * sizeof(*p));
		if (!p)
			return -1;
		v->v = p;
		v->cap = ncap;
	}
	v->v[v->n++] = *c;
	return 0;
}

/* Appends the encoded bytes to the output and the entry to list v. */
static int store(struct sp_sink *s, struct chunks *v, struct sp_chunk *c, const uint8_t *data)
{
	uint64_t off;
	if (sp_output_append(s->out, data, c->data_len, &off, s->err))
		return -1;
	c->data_off = c->data_len ? off : 0;
	if (append(v, c)) {
		sp_err_set(s->err, "%s: out of memory for the chunk table", s->label);
		return -1;
	}
	return 0;
}

static void add_stats(struct sp_lossy_stats *to, const struct sp_lossy_stats *st)
{
	to->err_d += st->err_d;
	to->norm_d += st->norm_d;
	to->err_w += st->err_w;
	to->norm_w += st->norm_w;
}

int sp_sink_add_aux(struct sp_sink *s, const uint8_t *bytes, size_t len, uint32_t *ordinal)
{
	struct sp_chunk c = {.out_len = (uint32_t)len, .base_file = SP_NO_BASE,
			     .out_hash = XXH3_64bits(bytes, len)};
	if (len > SP_CHUNK_MAX) {
		sp_err_set(s->err, "%s: cannot store a low-rank factor: too large", s->label);
		return -1;
	}
	size_t cap = ZSTD_compressBound(len);
	uint8_t *z = malloc(cap);
	size_t zlen = z ? ZSTD_compressCCtx(s->codecs[0].cctx, z, cap, bytes, len, s->aux_level) : 0;
	int stored = !z || ZSTD_isError(zlen) || zlen >= len;
	c.codec = stored ? SP_CODEC_RAW : SP_CODEC_ZSTD;
	c.data_len = (uint32_t)(stored ? len : zlen);
	int rc = store(s, &s->aux, &c, stored ? bytes : z);
	*ordinal = (uint32_t)(s->aux.n - 1);
	free(z);
	return rc;
}

uint32_t sp_sink_reserve_aux(struct sp_sink *s)
{
	struct sp_chunk none = {0};
	return append(&s->aux, &none) ? UINT32_MAX : (uint32_t)(s->aux.n - 1);
}

/* A pack into the auxiliary entry reserved for it. */
static int store_pack(struct sp_sink *s, struct encode_job *j)
{
	uint64_t off;
	if (sp_output_append(s->out, j->dst, j->c.data_len, &off, s->err))
		return -1;
	j->c.data_off = off;
	s->aux.v[j->slot] = j->c;
	return 0;
}

int sp_sink_flush(struct sp_sink *s)
{
	atomic_store(&s->next_job, 0);
	sp_threads_run((unsigned)s->threads, encode_worker, s);
	for (size_t i = 0; i < s->njobs; i++) {
		struct encode_job *j = &s->jobs[i];
		if (j->rc) {
			sp_err_set(s->err, "%s: a chunk failed to encode", sp_output_path(s->out));
			return -1;
		}
		if (j->pack ? store_pack(s, j) : store(s, &s->chunks, &j->c, j->dst))
			return -1;
		add_stats(&s->stats, &j->stats);
		s->meter->p.bytes_done += j->c.out_len;
		sp_meter_tick(s->meter, 0);
		s->used[j->c.codec] = 1;
	}
	s->njobs = 0;
	s->queued_packs = 0;
	return 0;
}

/* The job's output buffer, grown to what j needs. */
static int reserve(struct sp_sink *s, struct encode_job *q, const struct encode_job *j)
{
	size_t need = 2 * sp_chunk_bound(j->c.out_len);
	if (j->lossy)
		need = sp_lossy_bound(j->c.out_len / sp_dtype_size(j->c.dtype), j->lossy->rank,
				      j->lossy->cols);
	if (need <= q->dst_cap)
		return 0;
	uint8_t *p = realloc(q->dst, need);
	if (!p) {
		sp_err_set(s->err, "%s: out of memory for a chunk of %u bytes", s->label,
			   j->c.out_len);
		return -1;
	}
	q->dst = p;
	q->dst_cap = need;
	return 0;
}

int sp_sink_queue(struct sp_sink *s, const struct encode_job *j)
{
	if (s->njobs == s->batch && sp_sink_flush(s))
		return -1;
	struct encode_job *q = &s->jobs[s->njobs];
	if (reserve(s, q, j))
		return -1;
	uint8_t *dst = q->dst;
	size_t cap = q->dst_cap;
	*q = *j;
	q->dst = dst;
	q->dst_cap = cap;
	s->njobs++;
	s->queued_packs += j->pack != 0;
	return 0;
}

int sp_sink_table_uses(const struct sp_sink *s, enum sp_codec codec)
{
	return s->used[codec];
}

size_t sp_sink_count(const struct sp_sink *s)
{
	return s->chunks.n + s->njobs - s->queued_packs;
}

struct sp_sink_mark sp_sink_mark(struct sp_sink *s)
{
	memset(&s->stats, 0, sizeof(s->stats));
	return (struct sp_sink_mark){.chunks = sp_sink_count(s), .aux = s->aux.n};
}

int sp_sink_since(struct sp_sink *s, struct sp_sink_mark mark, uint64_t *bytes,
		  struct sp_lossy_stats *st)
{
	if (sp_sink_flush(s))
		return -1;
	*bytes = 0;
	for (size_t k = mark.chunks; k < s->chunks.n; k++)
		*bytes += s->chunks.v[k].data_len;
	for (size_t k = mark.aux; k < s->aux.n; k++)
		*bytes += s->aux.v[k].data_len;
	*st = s->stats;
	return 0;
}

int sp_sink_finish(struct sp_sink *s, struct sp_sink_table *t)
{
	if (sp_sink_flush(s))
		return -1;
	for (size_t i = 0; i < s->aux.n; i++)
		if (append(&s->chunks, &s->aux.v[i])) {
			sp_err_set(s->err, "%s: out of memory for the chunk table", s->label);
			return -1;
		}
	*t = (struct sp_sink_table){.chunks = s->chunks.v, .n = s->chunks.n, .naux = s->aux.n,
				    .lossy = s->used[SP_CODEC_LOSSY], .patch = s->used[SP_CODEC_PATCH],
				    .history = s->used[SP_CODEC_HISTORY],
				    .slice = s->used[SP_CODEC_SLICE]};
	return 0;
}

/* Output buffers for a batch of chunks of chunk_size bytes, and a codec set per thread. */
static int setup(struct sp_sink *s, uint32_t chunk_size)
{
	s->batch = (size_t)s->threads * BATCH_PER_THREAD;
	s->jobs = calloc(s->batch, sizeof(*s->jobs));
	s->codecs = calloc((size_t)s->threads, sizeof(*s->codecs));
	if (!s->jobs || !s->codecs)
		return -1;
	for (size_t i = 0; i < s->batch; i++) {
		s->jobs[i].dst_cap = 2 * sp_chunk_bound(chunk_size);
		if (!(s->jobs[i].dst = malloc(s->jobs[i].dst_cap)))
			return -1;
	}
	for (int t = 0; t < s->threads; t++)
		if (sp_codecs_init(&s->codecs[t]))
			return -1;
	return 0;
}

struct sp_sink *sp_sink_new(int threads, uint32_t chunk_size, int aux_level, struct sp_output *out,
			    struct sp_meter *m, const char *label, struct sp_err *err)
{
	struct sp_sink *s = calloc(1, sizeof(*s));
	int n = threads > 0 ? threads : (int)sp_threads_cpus();
	if (s)
		*s = (struct sp_sink){.out = out, .meter = m, .label = label, .err = err,
				      .aux_level = aux_level,
				      .threads = n < SP_THREADS_MAX ? n : SP_THREADS_MAX};
	if (!s || setup(s, chunk_size)) {
		sp_err_set(err, "%s: out of memory", label);
		sp_sink_free(s);
		return NULL;
	}
	return s;
}

void sp_sink_free(struct sp_sink *s)
{
	if (!s)
		return;
	for (size_t i = 0; s->jobs && i < s->batch; i++)
		free(s->jobs[i].dst);
	for (int t = 0; s->codecs && t < s->threads; t++)
		sp_codecs_fini(&s->codecs[t]);
	free(s->jobs);
	free(s->codecs);
	free(s->chunks.v);
	free(s->aux.v);
	free(s);
}
