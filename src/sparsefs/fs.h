/* SPDX-License-Identifier: Apache-2.0 */
/* The FUSE low-level operations over a tree of deltas. */
#ifndef SPARSEFS_FS_H
#define SPARSEFS_FS_H

#define FUSE_USE_VERSION FUSE_MAKE_VERSION(3, 14)
#include <fuse_lowlevel.h>

#include "tree.h"

struct fs {
	struct tree tree;
	struct sp_cache *cache;
	const char *mountpoint; /* absolute */
	unsigned readahead_kb;
	uid_t uid;
	gid_t gid;
};

extern const struct fuse_lowlevel_ops sparsefs_ops;

#endif
