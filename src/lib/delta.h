/* SPDX-License-Identifier: Apache-2.0 */
/* The reader's view of a delta (internal: the public calls are in sparse/sparse.h). */
#ifndef SP_DELTA_H
#define SP_DELTA_H

#include <sys/stat.h>

#include "manifest.h"

struct sp_history;
struct sp_source;

struct sp_base_file {
	char *path;
	int fd;
	struct stat seen; /* at open, before its check: a spliced read compares it with fstat */
	int verified;     /* its whole content matched the delta's record, while it was as seen */
};

struct sp_delta {
	char *dir;
	char *path;            /* dir/delta.sparse */
	struct sp_source *src; /* its bytes: every read of them goes through here */
	struct sp_super sb;
	struct sp_chunk *chunks;
	struct sp_manifest m;
	char *base_dir;
	struct sp_base_file *base; /* m.nbase of them */
	uint8_t *reported;         /* per chunk: its failure was logged (once is enough) */
	uint64_t src_said;         /* when chunk_failed last logged a failed read of src */
	uint64_t *base_ok;         /* a bit per chunk: its base bytes matched its hash since the
				    * base file was opened (atomic: reads run on many threads) */
	struct sp_cache *aux_cache;
	struct sp_history *history; /* HISTORY chunks' dictionary, or NULL without a history */
};

/* sp_delta_open of the delta file at file (the writer's temporary file, to verify it), as if it
 * were dir/delta.sparse. */
struct sp_delta *sp_delta_open_file(const char *dir, const char *file, const char *base_dir,
				    unsigned flags, struct sp_err *err);

/* sp_delta_open over src, the bytes of file (which only names it), as if it were
 * dir/delta.sparse; src is closed with the delta, or by this call when it fails. A dir that is
 * a URL has no base relative to it. */
struct sp_delta *sp_delta_open_source(const char *dir, const char *file, struct sp_source *src,
				      const char *base_dir, unsigned flags, struct sp_err *err);

/* Reads and validates the superblock, chunk table and manifest of d->path from d->src. */
int sp_delta_load(struct sp_delta *d, struct sp_err *err);

/* The first chunk of file f that holds offset off (off < size). */
uint64_t sp_delta_find_chunk(const struct sp_delta *d, const struct sp_file_info *f, uint64_t off);

#endif
