/* SPDX-License-Identifier: Apache-2.0 */
/* Which base file a derived file resembles most, when no base file has its name (a renamed or
 * moved file): a bottom-k sketch of content-defined anchors, compared by estimated Jaccard
 * similarity. Only the choice of reference is made here; zstd finds the matches. */
#ifndef SP_SIMILAR_H
#define SP_SIMILAR_H

#include <stddef.h>
#include <stdint.h>

#define SP_SKETCH_K 256

struct sp_sketch {
	uint64_t h[SP_SKETCH_K]; /* the smallest anchor hashes, ascending */
	size_t n;
};

void sp_sketch(const uint8_t *p, size_t len, struct sp_sketch *s);
/* Estimated Jaccard similarity of the two anchor sets, 0 to 1. */
double sp_sketch_similarity(const struct sp_sketch *a, const struct sp_sketch *b);
/* Makes into the sketch of the union of its content and s's. */
void sp_sketch_merge(struct sp_sketch *into, const struct sp_sketch *s);
/* "gzip", "zstd", ... when p starts like a compressed file (patches cannot see through it). */
const char *sp_compressed_kind(const uint8_t *p, size_t len);

#endif
