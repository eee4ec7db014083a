/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A byte source: where a delta file's bytes come from. The delta reader (delta.c, superblock.c)
 * reads delta.sparse only through one, so decoding, caching, verification and the front ends do
 * not know whether it is a local file (source_file.c) or a remote object (source_remote.c). The
 * base model is not read through a source: it stays local files, whose descriptors are spliced.
 *
 * What every source guarantees:
 * - pread is safe from many threads at once, on the same source, without locking by the caller;
 * - pread gives exactly len bytes at off, or an error (-errno, EIO for bytes past the end):
 *   never a short read;
 * - the size is pinned at open and does not change while the source is open.
 */
#ifndef SP_SOURCE_H
#define SP_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "sparse/sparse.h"

struct sp_source;

struct sp_source_ops {
	int (*pread)(struct sp_source *s, void *buf, size_t len, uint64_t off);
	uint64_t (*size)(const struct sp_source *s);
	void (*close)(struct sp_source *s);
	/* a file in a local folder, where a base recorded relative to the delta is looked for */
	int local;
};

/* Each kind of source embeds this first. */
struct sp_source {
	const struct sp_source_ops *ops;
};

/* The local file at path; NULL with the path and errno's reason in err. */
struct sp_source *sp_source_file_open(const char *path, struct sp_err *err);

static inline int sp_source_pread(struct sp_source *s, void *buf, size_t len, uint64_t off)
{
	return s->ops->pread(s, buf, len, off);
}

static inline uint64_t sp_source_size(const struct sp_source *s)
{
	return s->ops->size(s);
}

static inline void sp_source_close(struct sp_source *s)
{
	if (s)
		s->ops->close(s);
}

#endif
