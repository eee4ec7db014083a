/* SPDX-License-Identifier: Apache-2.0 */
/* The file a delta is written to: a temporary file, appended to after the superblock's place,
 * sealed with the superblock, and renamed to delta.sparse only when complete. A dry run writes
 * nothing and only counts the bytes. */
#ifndef SP_OUTPUT_H
#define SP_OUTPUT_H

#include "sparse/format.h"
#include "sparse/sparse.h"

struct sp_output;

/* Creates the temporary file in dir (made if missing), after removing those whose writers are
 * gone; a dry run creates nothing. NULL with err set. */
struct sp_output *sp_output_open(const char *dir, int dry, struct sp_err *err);
/* Appends len bytes; *off says where they went. */
int sp_output_append(struct sp_output *o, const void *data, uint64_t len, uint64_t *off,
		     struct sp_err *err);
/* The bytes so far, the superblock's place included. */
uint64_t sp_output_size(const struct sp_output *o);
/* The temporary file's path, for messages and to read it back ("delta" in a dry run). */
const char *sp_output_path(const struct sp_output *o);
/* Writes the superblock (its hash set here), syncs and closes the file. */
int sp_output_seal(struct sp_output *o, struct sp_super *sb, struct sp_err *err);
/* Renames the sealed file to dir/delta.sparse and syncs dir: from then on it is the delta. */
int sp_output_publish(struct sp_output *o, const char *dir, struct sp_err *err);
/* Closes o, removing its file unless published. */
void sp_output_free(struct sp_output *o);

#endif
