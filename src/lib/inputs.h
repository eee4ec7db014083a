/* SPDX-License-Identifier: Apache-2.0 */
/* What a write reads: the base, the fine-tune (or, for an adapter, the base again and the
 * adapter), and what is computed of them once however many times the write runs (a size budget
 * runs it a dozen times): the base files' fingerprints and content sketches, the low-rank
 * factors of lossy tensors, and the history new files are coded against. */
#ifndef SP_INPUTS_H
#define SP_INPUTS_H

#include "adapter.h"
#include "lossy.h"
#include "manifest.h"
#include "model.h"
#include "similar.h"

struct sp_history_pick;

struct sp_inputs {
	struct sp_model base, ft;
	struct sp_lora *lora; /* adapter mode: the fine-tune is the base plus these */
	struct sp_base_fp *fps;      /* per base file, once computed */
	uint8_t *fp_done;
	struct sp_sketch **sketches; /* per base file, once computed */
	struct sp_lossy_factors **factors; /* per fine-tune file and tensor, when kept */
	struct sp_history_pick *history;   /* the history, once the plan picked one */
};

/* Opens base_dir and ft_dir, and with adapter_dir (then ft_dir is the base) the adapter. With
 * keep_factors, the low-rank factors of lossy tensors are kept for the next run. */
int sp_inputs_open(struct sp_inputs *in, const char *base_dir, const char *ft_dir,
		   const char *adapter_dir, int keep_factors, struct sp_err *err);
void sp_inputs_close(struct sp_inputs *in);
/* The fingerprint of base file i, computed on first use. */
const struct sp_base_fp *sp_inputs_fp(struct sp_inputs *in, uint32_t i, struct sp_err *err);
/* The content sketch of base file i, computed on first use; NULL when out of memory. */
const struct sp_sketch *sp_inputs_sketch(struct sp_inputs *in, uint32_t i, struct sp_err *err);

/* Where the factors of fine-tune tensor t are kept; NULL when they are not. */
struct sp_lossy_factors *sp_inputs_factors(struct sp_inputs *in, const struct sp_tensor *t);

#endif
