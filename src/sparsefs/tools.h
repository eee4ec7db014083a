/* SPDX-License-Identifier: Apache-2.0 */
/* sparsefs --info, --check and --extract: the same library and chunk decoding as the mount. */
#ifndef SPARSEFS_TOOLS_H
#define SPARSEFS_TOOLS_H

#include "sparse/remote.h"

int tools_main(int argc, char **argv);

/* Says on standard error why path failed ("sparsefs: PATH: WHAT: REASON"); -1. */
int tool_failed(const char *path, const char *what, int err);

/* Closes standard output: what was printed must have reached it (a full disk fails). Returns
 * rc when not 0 (its failure is already told), else 1 with a message when it did not. */
int close_stdout(int rc);

/* The sp_delta_open flags that -o base_check=VALUE asks for (NULL: the default, full); -1 with a
 * message for a value that is neither full nor quick. Shared by the mount and the tools. */
int base_check_flags(const char *value, unsigned *flags);

/* One -o option of remote deltas (endpoint=, region=, cafile=, bearer_file=, cache_dir=,
 * cache_max=, max_requests=, timeout=), for the mount and the tools alike: 1 when opt is one
 * (its value kept in o), 0 when it is not, -1 with a message when its value is not right. */
int remote_opt(const char *opt, struct sp_remote_opts *o);
void remote_opts_free(struct sp_remote_opts *o);
/* What opening where needs: NULL for a local path, else a remote context. 0, or -1 with a
 * message. */
int remote_for(const char *where, const struct sp_remote_opts *o, struct sp_remote **r);

#endif
