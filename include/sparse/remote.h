/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote deltas: a delta folder served by an HTTP(S) server or kept in an S3-compatible object
 * store, read by single-range requests (only the parts that readers touch) through a chunk
 * cache on disk. A delta folder holds the same files and bytes wherever it is stored; a URL
 * names the folder (https://HOST/PATH/ft or s3://BUCKET/PREFIX/ft), whose SP_DELTA_FILE is read.
 */
#ifndef SPARSE_REMOTE_H
#define SPARSE_REMOTE_H

#include "sparse/sparse.h"

/* Does s name a remote location (http://, https:// or s3://) rather than a local path? */
int sp_is_url(const char *s);

struct sp_remote_opts {
	const char *endpoint;    /* s3://: the store, http(s)://HOST[:PORT] (path-style requests);
				  * NULL: AWS (https://BUCKET.s3.REGION.amazonaws.com) */
	const char *region;      /* s3://: the SigV4 region; NULL: AWS_REGION, else
				  * AWS_DEFAULT_REGION, else us-east-1 */
	const char *cafile;      /* https: a PEM file of the CAs to trust; NULL: the system's */
	const char *bearer_file; /* http(s)://: a file whose first line is a bearer token */
	const char *cache_dir;   /* the chunk cache; NULL: $XDG_CACHE_HOME/sparse/remote (else
				  * ~/.cache/sparse/remote); "" for none (memory only) */
	uint64_t cache_max;      /* the chunk cache's bound in bytes; 0: the default */
	unsigned max_requests;   /* range requests in flight at once; 0: 32 */
	unsigned timeout;        /* seconds a request may go without progress before it is
				  * retried; 0: the default */
};

/* What every remote delta of a process shares: the transfers, the credentials (read here, from
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, else ~/.aws/credentials with
 * AWS_PROFILE; none: unsigned requests) and the chunk cache. Starts no thread: a process may
 * fork (as the mount does when it goes to the background) after opening deltas. */
struct sp_remote;

struct sp_remote *sp_remote_new(const struct sp_remote_opts *o, struct sp_err *err);
/* After every delta opened through it is closed. */
void sp_remote_free(struct sp_remote *r);

/* Which deltas `where` holds: a local folder, or a URL (r must then be given). 1 when where is
 * itself a delta; 0 when it is a folder or prefix of deltas, with their names (one level down,
 * sorted; malloc'd, as is the array) in *names; -1 with err (naming where and, for a URL, the
 * HTTP status) when it is neither or cannot be read. */
int sp_list_deltas(struct sp_remote *r, const char *where, char ***names, size_t *n,
		   struct sp_err *err);

/* sp_delta_open of a local folder or (with r) of a URL. A remote delta costs a few small
 * requests to open (its header, chunk table and manifest); its object's ETag is pinned then,
 * and a later change of the object makes reads fail (EIO and one log line), never mix. */
struct sp_delta *sp_delta_open_at(struct sp_remote *r, const char *where, const char *base_dir,
				  unsigned flags, struct sp_err *err);

#endif
