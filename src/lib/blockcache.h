/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk cache on disk for remote deltas: blocks of remote objects kept in a folder, so that
 * they survive unmount and reboot and are shared by every mount and process that names the same
 * folder. Bounded by a size (least recently used blocks go first) and by a free-space floor on
 * its file system. Every hit is checked against a checksum stored with the block. A cache that
 * cannot be written only means "not cached": nothing here is an error to a reader.
 */
#ifndef SP_BLOCKCACHE_H
#define SP_BLOCKCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "sparse/sparse.h"

/* max_bytes when the caller gives 0: 10 GiB. */
#define SP_BLOCKCACHE_DEFAULT_MAX (10ull << 30)

struct sp_blockcache;

/* The cache in dir (made, with its parents, if missing), holding at most max_bytes (0: the
 * default). NULL with err naming dir and the reason only when dir cannot be made or opened;
 * the caller then goes on without a cache. A folder that can be read but not written serves
 * the blocks it has and adds none. */
struct sp_blockcache *sp_blockcache_open(const char *dir, uint64_t max_bytes, struct sp_err *err);
/* NULL is accepted (nothing to close). */
void sp_blockcache_close(struct sp_blockcache *c);
/* 0: block `block` (len bytes) of object `object` (a string naming one version of one object,
 * e.g. "URL\nETAG\nSIZE"; the cache hashes it for file names and never writes it) is in buf,
 * its checksum verified; -1: not cached (a damaged entry is removed, with one log line, and
 * counts as not cached; c NULL is an empty cache). */
int sp_blockcache_get(struct sp_blockcache *c, const char *object, uint64_t block, void *buf,
		      size_t len);
/* 1 when a file of the right size holds the block (unverified: a get checks it), else 0. */
int sp_blockcache_has(struct sp_blockcache *c, const char *object, uint64_t block, size_t len);
/* Stores it, evicting the least recently used to stay under max_bytes and above a free-space
 * floor; a failure only means "not cached" (never an error to the reader). c NULL: nothing. */
void sp_blockcache_put(struct sp_blockcache *c, const char *object, uint64_t block,
		       const void *buf, size_t len);

#endif
