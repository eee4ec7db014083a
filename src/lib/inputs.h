/* SPDX-License-Identifier: Apache-2.0 */
/* What a write reads: the base, the fine-tune (or, for an adapter, the base again and the
 * adapter), and what is computed of them once however many times the write runs (a size budget
 * runs it a dozen times): the base files' fingerprints and content sketches. */
#ifndef SP_INPUTS_H
#define SP_INPUTS_H

#include "adapter.h"
#include "manifest.h"
#include "model.h"
#include "similar.h"

struct sp_inputs {
	struct sp_model base, ft;
	struct sp_lora *lora; /* adapter mode: the fine-tune is the base plus these */
	struct sp_base_fp *fps;      /* per base file, once computed */
	uint8_t *fp_done;
	struct sp_sketch **sketches; /* per base file, once computed */
};

/* Opens base_dir and ft_dir, and with adapter_dir (then ft_dir is the base) the adapter. */
int sp_inputs_open(struct sp_inputs *in, const char *base_dir, const char *ft_dir,
		   const char *adapter_dir, struct sp_err *err);
void sp_inputs_close(struct sp_inputs *in);
/* The fingerprint of base file i, computed on first use. */
const struct sp_base_fp *sp_inputs_fp(struct sp_inputs *in, uint32_t i, struct sp_err *err);
/* The content sketch of base file i, computed on first use; NULL when out of memory. */
const struct sp_sketch *sp_inputs_sketch(struct sp_inputs *in, uint32_t i, struct sp_err *err);

#endif
