/* SPDX-License-Identifier: Apache-2.0 */
/* The lossless codec's encoder of MODE_RANS (see lossless_model.h). */
#ifndef SPARSE_LOSSLESS_ENCODE_H
#define SPARSE_LOSSLESS_ENCODE_H

#include "lossless_model.h"

/* Encodes the ne elements of ft against base in MODE_RANS into dst; returns the encoded size,
 * or 0 when it does not fit cap. */
size_t sp_lossless_encode_rans(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			       const uint8_t *ft, size_t ne, uint8_t *dst, size_t cap, int level);

#endif
