/* SPDX-License-Identifier: Apache-2.0 */
/* The driver: one run of the writer, step by step. Opens the output, plans every file of the
 * fine-tune into the chunk sink, writes the chunk table and the manifest, seals the file,
 * reads it back when asked, and gives it its name. */
#ifndef SP_DRIVER_H
#define SP_DRIVER_H

#include "inputs.h"

/* How one run differs from the options. */
struct sp_run {
	const char *base_dir; /* as given: the manifest records where it is */
	const char *ft_dir;   /* a bit-exact delta is compared with it on read-back; NULL: not */
	const char *out_dir;
	int drop;        /* lossy tensors keep just the base */
	int notes;       /* say what is worth saying, report progress (not in a budget's dry runs) */
	int report;      /* lossy modes: make the quality report (sp_write_stats.report) */
	int patch_level; /* the level for patches: the options' level, if they give one */
	const struct sp_hub_ref *base_hub; /* the base's hub id, for the manifest */
};

/* Writes the delta of in under o (o->dry_run: only sizes it); stats may be NULL. */
int sp_drive(struct sp_inputs *in, const struct sp_write_opts *o, const struct sp_run *r,
	     struct sp_write_stats *stats, struct sp_err *err);

#endif
