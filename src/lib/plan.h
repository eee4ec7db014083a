/* SPDX-License-Identifier: Apache-2.0 */
/* The plan: what each file of the fine-tune becomes. Safetensors headers are patched against
 * the base's, tensors coded against the base tensor of the same name, other files patched
 * against a base file or stored; the chunks go to the sink, the files to the manifest. */
#ifndef SP_PLAN_H
#define SP_PLAN_H

#include "history_pick.h"
#include "inputs.h"
#include "manifest.h"
#include "meter.h"
#include "packer.h"
#include "report.h"
#include "sink.h"

#define META_LEVEL 19 /* headers and small files: tiny, so spend effort */

struct sp_plan {
	/* set by the caller */
	const struct sp_write_opts *o;
	struct sp_err *err;
	struct sp_inputs *in;
	struct sp_sink *sink;
	struct sp_manifest_draft *manifest;
	struct sp_report *report; /* lossy modes: the quality report, else NULL */
	struct sp_meter *meter;
	int drop_lossy;  /* lossy tensors keep just the base: what the rest costs */
	int notes;       /* print notes (not in the dry runs a budget makes) */
	int patch_level; /* zstd effort for files that are not tensors */
	/* the plan's own */
	uint32_t *base_index;     /* base model file -> index in the manifest's base files */
	uint32_t nbase;           /* base files in the manifest so far */
	struct sp_base_match match; /* the fine-tune's tensors coded against the base */
	void *held; /* adapter mode: converted bytes the queue points into */
	const struct sp_history_pick *history; /* what new files are coded against, or NULL */
	uint8_t *small;                 /* per fine-tune file: enum small_kind, once classified */
	uint8_t *in_history;            /* per base file: the history holds it whole */
	struct sp_packer *packer;       /* small files packed together, or NULL */
	struct sp_packer *new_packer;   /* new ones, when they fill packs of their own; else NULL */
};

/* Readies p, whose caller's fields are set. */
int sp_plan_init(struct sp_plan *p);
void sp_plan_fini(struct sp_plan *p);
/* Plans file i of the fine-tune into chunks and its manifest entry. */
int sp_plan_file(struct sp_plan *p, uint32_t i);
/* Queues what the files planned left open (the last pack), and lists the history when a chunk
 * uses it. */
int sp_plan_finish(struct sp_plan *p);

#endif
