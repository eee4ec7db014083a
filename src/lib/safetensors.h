/* SPDX-License-Identifier: Apache-2.0 */
/* The safetensors container: an 8-byte little-endian header length, a JSON header, the data. */
#ifndef SP_SAFETENSORS_H
#define SP_SAFETENSORS_H

#include <stdint.h>

#include "dtype.h"
#include "sparse/sparse.h"

/* safetensors itself refuses larger headers. */
#define SP_ST_HEADER_MAX 100000000ull

struct sp_tensor {
	char *name;
	char *dtype_name;    /* as the header spells it */
	enum sp_dtype dtype; /* SP_DT_BYTES for names we do not know */
	int ndim;
	uint64_t *shape;
	uint64_t nelem;
	uint64_t off;        /* absolute offset in the file */
	uint64_t size;
};

struct sp_st {
	uint64_t header_len; /* 8 + the JSON length: where the data starts */
	struct sp_tensor *tensors; /* sorted by offset */
	size_t ntensors;
};

/* Parses the header of a safetensors file of file_size bytes whose first bytes are at head
 * (head_len of them: at least 8, and the whole header when it says so). Tensors must lie inside
 * the file; holes and overlaps are allowed (the caller stores the file as it is). */
int sp_st_parse(const uint8_t *head, uint64_t head_len, uint64_t file_size, struct sp_st *st,
		const char *path, struct sp_err *err);
/* Reads the 8-byte length of a header: the bytes sp_st_parse needs, or 0 if not safetensors. */
uint64_t sp_st_header_len(const uint8_t first8[8], uint64_t file_size);
void sp_st_free(struct sp_st *st);

#endif
