/* SPDX-License-Identifier: Apache-2.0 */
/* The chunk sink: queues the chunks the plan makes, encodes a batch of them at a time on every
 * thread, and appends them in order to the output file. It keeps the chunk table. */
#ifndef SP_SINK_H
#define SP_SINK_H

#include "chunk.h"
#include "lossy.h"
#include "meter.h"
#include "output.h"

/* One chunk to encode: its entry (offsets, dtypes, base file) and its inputs. */
struct encode_job {
	struct sp_chunk c;
	const uint8_t *ft, *base;
	int level;
	const uint8_t *window;               /* a base window to patch against, or NULL */
	uint64_t wlen;
	const ZSTD_CDict *history;           /* the delta's history to code against (as well as
					      * the window, if any), or NULL */
	int slice;            /* a SLICE chunk (c names its pack): nothing to encode or hash */
	int pack;             /* a pack, stored as the auxiliary chunk reserved for it: */
	uint32_t slot;        /* its ordinal */
	const struct sp_lossy_tensor *lossy; /* LOSSY chunks: the tensor, and this chunk's */
	uint64_t e0;                         /* first element in it */
	int measure;                         /* and its error wanted (a quality report) */
	/* set by the sink */
	struct sp_lossy_stats stats;         /* LOSSY chunks: what the chunk's error is */
	uint8_t *dst;
	size_t dst_cap;
	int rc;
};

struct sp_sink;

/* A sink of threads encoders (0: one per CPU) for chunks of at most chunk_size bytes, writing
 * to out and counting bytes in m; auxiliary chunks are compressed at aux_level. Messages name
 * label (the fine-tune). NULL with err set. */
struct sp_sink *sp_sink_new(int threads, uint32_t chunk_size, int aux_level, struct sp_output *out,
			    struct sp_meter *m, const char *label, struct sp_err *err);
void sp_sink_free(struct sp_sink *s);

/* Queues a chunk, which must stay readable until flushed; encodes and writes the queue when
 * full. */
int sp_sink_queue(struct sp_sink *s, const struct encode_job *j);
/* Encodes and writes every queued chunk. */
int sp_sink_flush(struct sp_sink *s);
/* Stores bytes as an auxiliary chunk (written now, listed after all others); *ordinal is what
 * LOSSY chunks name it by. */
int sp_sink_add_aux(struct sp_sink *s, const uint8_t *bytes, size_t len, uint32_t *ordinal);
/* Reserves the next auxiliary chunk for a pack queued later (pack set, this ordinal in slot);
 * UINT32_MAX when out of memory. */
uint32_t sp_sink_reserve_aux(struct sp_sink *s);
/* Whether a chunk written so far has this codec (a pack's included). */
int sp_sink_table_uses(const struct sp_sink *s, enum sp_codec codec);
/* The index the next queued chunk will have. */
size_t sp_sink_count(const struct sp_sink *s);

/* A point in the sink, from which sp_sink_since counts. */
struct sp_sink_mark {
	size_t chunks, aux;
};
struct sp_sink_mark sp_sink_mark(struct sp_sink *s);
/* Flushes, then sums the encoded bytes of the chunks and auxiliary chunks queued since mark,
 * and the error statistics of the LOSSY ones. */
int sp_sink_since(struct sp_sink *s, struct sp_sink_mark mark, uint64_t *bytes,
		  struct sp_lossy_stats *st);

/* Every chunk, once the sink is finished: the auxiliary chunks last. */
struct sp_sink_table {
	struct sp_chunk *chunks; /* the driver may still clear hashes (sp_draft_base_from_history) */
	size_t n, naux;
	int lossy, patch, history, slice; /* a LOSSY, PATCH, HISTORY, SLICE chunk is among them */
};
/* Flushes and lists every chunk; s still owns the table. */
int sp_sink_finish(struct sp_sink *s, struct sp_sink_table *t);

#endif
