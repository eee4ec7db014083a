/* SPDX-License-Identifier: Apache-2.0 */
/* Safetensors element types: names, sizes, and the conversions a dtype change needs. */
#ifndef SP_DTYPE_H
#define SP_DTYPE_H

#include <stddef.h>

#include "sparse/format.h"

/* SP_DT_BYTES for a name this table does not know. */
enum sp_dtype sp_dtype_from_name(const char *name);
const char *sp_dtype_name(enum sp_dtype dt);
/* Bytes per element; 1 for SP_DT_BYTES. */
size_t sp_dtype_size(enum sp_dtype dt);
/* Is dt one of F16 BF16 F32 F64, between which values convert? */
int sp_dtype_is_float(enum sp_dtype dt);

/* Converts n elements from src (of type from) to dst (of type to), rounding to nearest even.
 * Both must be float types. */
void sp_dtype_convert(enum sp_dtype from, const void *src, enum sp_dtype to, void *dst, size_t n);

/* n elements of a float type to f32, and back rounding to nearest even: the lossy codecs
 * compute in f32. */
void sp_dtype_to_f32(enum sp_dtype dt, const void *src, float *dst, size_t n);
void sp_dtype_from_f32(enum sp_dtype dt, const float *src, void *dst, size_t n);

#endif
