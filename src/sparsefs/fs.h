/* SPDX-License-Identifier: Apache-2.0 */
/* The FUSE low-level operations over a tree of deltas. */
#ifndef SPARSEFS_FS_H
#define SPARSEFS_FS_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <fuse_lowlevel.h>

#include "streams.h"
#include "tree.h"

/* The most base ranges a spliced read is sent from: where more are needed (a base laid out
 * otherwise), the read is copied. */
#define SPLICE_RANGES 4

enum prefetch { PREFETCH_NONE, PREFETCH_SEQUENTIAL, PREFETCH_ALL };

struct fs {
	struct tree tree;
	struct sp_cache *cache;
	struct sp_pool *pool;    /* decodes ahead of the reads, into cache; NULL: it would not start */
	unsigned decoders;       /* its threads (0: one per CPU) */
	enum prefetch prefetch;
	struct streams_set open;  /* the read streams of the open files */
	uint64_t max_window;     /* the most a stream decodes ahead: within the cache */
	const char *mountpoint; /* absolute */
	unsigned readahead_kb;
	int splice;              /* serve base chunks from the base files' descriptors (-o splice) */
	unsigned max_read;       /* the -o max_read given to the kernel, 0 for none */
	uid_t uid;
	gid_t gid;
};

extern const struct fuse_lowlevel_ops sparsefs_ops;

#endif
