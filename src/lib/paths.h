/* SPDX-License-Identifier: Apache-2.0 */
/* The paths of a write (sp_write_check_output is public, in sparse.h). */
#ifndef SP_PATHS_H
#define SP_PATHS_H

#include "sparse/sparse.h"

/* Where the manifest says the base is: *abs its absolute path, *rel that path relative to
 * out_dir (which need not exist yet); NULL where it cannot be resolved. The caller frees both. */
void sp_base_location(const char *base_dir, const char *out_dir, char **abs, char **rel);

#endif
