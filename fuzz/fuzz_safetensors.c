/* SPDX-License-Identifier: Apache-2.0 */
/* The safetensors header parser, on a whole file's bytes. Tensors it accepts lie inside the file
 * and have the byte size their shape and dtype say. */
#include <stdlib.h>

#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_st st;
	struct sp_err err;
	if (size < 8)
		return 0;
	uint64_t head = sp_st_header_len(data, size);
	if (!head || sp_st_parse(data, head, size, &st, "fuzz", &err))
		return 0;
	FUZZ_CHECK(st.header_len == head);
	for (size_t i = 0; i < st.ntensors; i++) {
		const struct sp_tensor *t = &st.tensors[i];
		FUZZ_CHECK(t->off >= head && t->off <= size && t->size <= size - t->off);
		FUZZ_CHECK(i == 0 || st.tensors[i - 1].off <= t->off);
		FUZZ_CHECK(t->dtype == SP_DT_BYTES || t->size == t->nelem * sp_dtype_size(t->dtype));
		uint64_t n = 1;
		for (int k = 0; k < t->ndim; k++)
			n *= t->shape[k];
		FUZZ_CHECK(n == t->nelem);
	}
	sp_st_free(&st);
	return 0;
}
