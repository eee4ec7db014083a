/* SPDX-License-Identifier: Apache-2.0 */
/* A bounded cache of decoded chunks, shared by threads and deltas. A chunk that several threads
 * want at once is decoded once: the others wait for it. */
#ifndef SP_CACHE_H
#define SP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "sparse/sparse.h"

struct sp_cache_entry;

/* Fills out (len bytes) with chunk idx of owner; returns 0 or a negative errno. */
typedef int (*sp_cache_fill)(void *owner, uint64_t idx, void *out);

/* Returns the bytes of chunk idx of owner, decoding them with fill on a miss, and holds them
 * until sp_cache_release(*held). NULL with *rc set when fill failed (nothing is cached then). */
const uint8_t *sp_cache_get(struct sp_cache *c, void *owner, uint64_t idx, size_t len,
			    sp_cache_fill fill, struct sp_cache_entry **held, int *rc);
/* Like sp_cache_get, but never decodes: NULL when chunk idx is not cached (one being decoded
 * is waited for). */
const uint8_t *sp_cache_find(struct sp_cache *c, void *owner, uint64_t idx,
			     struct sp_cache_entry **held);
/* Is chunk idx cached or being decoded? A hint: it may be evicted right after. */
int sp_cache_has(struct sp_cache *c, void *owner, uint64_t idx);
size_t sp_cache_max(const struct sp_cache *c);
void sp_cache_release(struct sp_cache *c, struct sp_cache_entry *held);
/* sp_cache_release, after n bytes of it were copied out. Once as many bytes as it holds have
 * been, it is the first to be evicted: the kernel keeps the pages it read, so a chunk served
 * whole is seldom asked for again, while one served in part is (the rest of it, by the next
 * read of its stream, which may come after many other streams' reads). */
void sp_cache_release_served(struct sp_cache *c, struct sp_cache_entry *held, size_t n);
/* Bytes the entries take now (whole pages, those being decoded included). */
size_t sp_cache_bytes(struct sp_cache *c);

#endif
