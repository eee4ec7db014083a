/* SPDX-License-Identifier: Apache-2.0 */
/* A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) read as low-rank
 * deltas against the tensors of its base model, so that the merged model W + scale·B·A can be
 * produced in the base's own layout with neither Python nor PEFT. */
#ifndef SP_ADAPTER_H
#define SP_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* One targeted base tensor: merged = base + a·b over the base tensor viewed as rows x cols
 * (rows = shape[0], cols = the rest), with the LoRA scale folded into a. */
struct sp_lora_target {
	const struct sp_tensor_ref *base; /* the base tensor (in the sp_model passed to load) */
	uint32_t rank;
	uint64_t rows, cols;
	float *a; /* rows x rank, row-major */
	float *b; /* rank x cols, row-major */
};

/* A module saved whole (modules_to_save, a trained bias, a saved embedding): the base tensor is
 * replaced by these bytes. t has the base tensor's shape; its dtype may differ from the base's
 * (both are then float types, and whoever writes the merged model converts). */
struct sp_lora_full {
	const struct sp_tensor_ref *base;
	const struct sp_tensor *t; /* in the adapter's own sp_model */
	const uint8_t *data;       /* t->size bytes, mapped */
};

struct sp_lora {
	struct sp_model adapter; /* the adapter folder, kept open for the mapped data */
	struct sp_lora_target *targets; /* sorted by module name */
	size_t ntargets;
	struct sp_lora_full *full;
	size_t nfull;
};

/* Loads the PEFT LoRA adapter in adapter_dir against base. Plain LoRA only: anything that makes
 * the merged weight more than W + scale·B·A (DoRA, lora_bias, PiSSA-style initialisations that
 * rewrite the base, ...) is refused with an error naming the file and the reason, as are
 * weights that do not fit the base. On failure lora is left empty. */
int sp_lora_load(const char *adapter_dir, const struct sp_model *base, struct sp_lora *lora,
		 struct sp_err *err);
void sp_lora_free(struct sp_lora *lora);

#endif
