/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A byte source over a remote object (source.h), read in blocks of SP_BLOCK bytes through the
 * transfer engine (http.h). Missing adjacent blocks are fetched by one range request (up to
 * SP_RUN_BLOCKS); a sequential reader (up to 8 of them per object) opens a window of requests
 * ahead of it that doubles from SP_WINDOW_FIRST to SP_WINDOW_MAX blocks; a block in flight is
 * waited for by every reader that needs it. Fetched blocks stay in a memory set shared by the
 * sources of one sp_remote_mem, bounded by its max bytes: the least recently used block goes
 * first, one already read before one read ahead and not read yet, which read-ahead never
 * displaces (it stops at the bound). A reader whose blocks find the set full of blocks in use
 * may add them above the bound: the blocks its read spans.
 * Under the memory set, the chunk cache on disk (blockcache.h): a block found there costs no
 * request.
 */
#ifndef SP_SOURCE_REMOTE_H
#define SP_SOURCE_REMOTE_H

#include "blockcache.h"
#include "http.h"
#include "source.h"

#define SP_BLOCK_SHIFT 20
#define SP_BLOCK (1u << SP_BLOCK_SHIFT)
#define SP_RUN_BLOCKS 16u
#define SP_WINDOW_FIRST 8u
#define SP_WINDOW_MAX 128u
/* The default bound of the memory set: the largest window, and room for what readers use. */
#define SP_REMOTE_MEM_DEFAULT ((uint64_t)(SP_WINDOW_MAX + 2 * SP_RUN_BLOCKS) << SP_BLOCK_SHIFT)

struct sp_remote_mem;
struct sp_remote_mem *sp_remote_mem_new(uint64_t max_bytes);
/* After every source using it is closed. */
void sp_remote_mem_free(struct sp_remote_mem *m);

/* The object at url (its first block fetched now, on this thread, pinning its size and ETag;
 * *status: the HTTP status of a failure, as sp_http_object_open). Reads are made on the
 * calling thread until sp_source_remote_opened, through h's transfer thread after. Blocks are
 * looked for in cache (NULL: none) before they are fetched, and put there once read, under
 * the object's URL (as shown), ETag and size. */
struct sp_source *sp_source_remote_open(struct sp_http *h, struct sp_remote_mem *m,
					struct sp_blockcache *cache, const char *url,
					sp_http_sign_fn sign, void *sign_state, long *status,
					struct sp_err *err);
void sp_source_remote_opened(struct sp_source *s);

/* Splits the missing blocks among [first, end) into runs of adjacent ones, at most
 * SP_RUN_BLOCKS each: calls run(first, n, arg) for each, in order; have(b, arg) says whether
 * block b is there. Stops at (and returns) run's first non-zero. */
int sp_block_runs(uint64_t first, uint64_t end, int (*have)(uint64_t b, void *arg),
		  int (*run)(uint64_t first, uint64_t n, void *arg), void *arg);

#endif
