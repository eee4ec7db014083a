/* SPDX-License-Identifier: Apache-2.0 */
/* mksparse's engine, inside the library: writer.c runs the jobs and writes delta.sparse,
 * plan.c decides how each file and tensor becomes chunks. */
#ifndef SP_WRITER_H
#define SP_WRITER_H

#include <cjson/cJSON.h>
#include <stdatomic.h>

#include "adapter.h"
#include "chunk.h"
#include "lossy.h"
#include "model.h"
#include "similar.h"
#include "tempfile.h"

#define META_LEVEL 19 /* headers and small files: tiny, so spend effort */

/* One chunk waiting to be encoded. */
struct encode_job {
	struct sp_chunk c;
	const uint8_t *ft, *base;
	int level;
	const uint8_t *window;               /* a base window to patch against, or NULL */
	uint64_t wlen;
	const struct sp_lossy_tensor *lossy; /* LOSSY chunks: the tensor, and this chunk's */
	uint64_t e0;                         /* first element in it */
	struct sp_lossy_stats stats;         /* LOSSY chunks: what the chunk's error is */
	uint8_t *dst;
	size_t dst_cap;
	int rc;
};

struct writer {
	const struct sp_write_opts *o;
	struct sp_err *err;
	struct sp_model base, ft;
	uint32_t *base_fp_index; /* base model file -> index in the manifest's base files */
	uint32_t nbase;          /* base files in the manifest so far */
	cJSON *manifest, *report; /* the manifest (manifest.c's keys), the quality report */
	struct sp_temp tmp;      /* the file written; fd -1 in a dry run */
	uint64_t pos;
	struct sp_chunk *chunks, *aux;
	size_t nchunks, cap, naux, aux_cap;
	struct encode_job *jobs;
	size_t njobs, batch;
	struct sp_lossy_stats flushed; /* the sum of the LOSSY jobs' stats, since last reset */
	struct sp_lossy_stats total;   /* the report's totals */
	int lossy;                     /* a LOSSY chunk was written */
	int patch;                     /* a PATCH chunk was written */
	int drop_lossy;                /* lossy tensors keep just the base: what the rest costs */
	struct sp_lora *lora;          /* adapter mode: the fine-tune is the base plus these */
	struct sp_sketch **sketches;   /* per base file, once computed: for rename matching */
	int notes;                     /* print notes (not in the dry runs a budget makes) */
	int patch_level;               /* zstd effort for files that are not tensors */
	void *held;                    /* adapter mode: converted bytes the queue points into */
	struct sp_codecs *codecs;      /* one per thread */
	int threads;
	atomic_size_t next_job;
	const struct sp_hub_ref *base_hub; /* the base's hub id, if named by one */
	struct sp_progress progress;       /* for o->progress, in runs with notes */
	double progress_last;              /* progress.seconds at the last report */
	struct timespec t0;
	struct sp_base_match match;        /* the fine-tune's tensors coded against the base */
};

/* Adds a chunk to the queue; encodes and writes the queue when full. */
int sp_writer_queue(struct writer *w, const struct encode_job *j);
/* Encodes and writes every queued chunk. */
int sp_writer_flush(struct writer *w);
/* The manifest's index of base model file i, fingerprinting it on first use; SP_NO_BASE (and
 * the error set) when it cannot be read. */
uint32_t sp_writer_base_index(struct writer *w, uint32_t i);
/* Stores bytes as an auxiliary chunk; *ordinal is what LOSSY chunks name it by. */
int sp_writer_add_aux(struct writer *w, const uint8_t *bytes, size_t len, uint32_t *ordinal);

/* Reports progress to the caller when it asks for it and enough time has passed. */
void sp_writer_progress(struct writer *w, int final);

/* Plans file i of the fine-tune into chunks and its manifest entry. */
int sp_plan_file(struct writer *w, uint32_t i);
/* The report's totals, once every file is written. */
cJSON *sp_plan_report_totals(struct writer *w);

#endif
