/* SPDX-License-Identifier: Apache-2.0 */
/* A delta's history on the read side: the base segments its manifest lists, read and joined on
 * the first HISTORY chunk a reader decodes (or BASE chunk it reads from the history), then
 * shared by every thread until the delta closes. */
#ifndef SP_HISTORY_H
#define SP_HISTORY_H

#include <zstd.h>

#include "manifest.h"

/* Reads len bytes at off of base file file into buf; 0 or -1. */
typedef int (*sp_history_read_fn)(void *owner, uint32_t file, void *buf, uint64_t len,
				  uint64_t off);

struct sp_history;

/* The history of m (which must outlive it), its segments read through read(owner, ...). NULL
 * when out of memory. */
struct sp_history *sp_history_new(const struct sp_manifest *m, sp_history_read_fn read,
				  void *owner);
void sp_history_free(struct sp_history *h);
/* The history as a dictionary, built on the first call; NULL when a segment cannot be read (the
 * next call tries again) or memory is short, *why saying which. Thread-safe. */
const ZSTD_DDict *sp_history_dict(struct sp_history *h, const char **why);
/* The history's bytes, checked against its hash, as sp_history_dict builds them. */
const uint8_t *sp_history_bytes(struct sp_history *h, const char **why);

#endif
