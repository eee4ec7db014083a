/* SPDX-License-Identifier: Apache-2.0 */
/* The chunk table's records coded against the records before them
 * (SP_FEATURE_INCOMPAT_DTABLE, sparse-format(5)): offsets and base file indices that follow on
 * from earlier chunks' become small or 0, so the table's zstd frame holds little but lengths
 * and hashes. */
#ifndef SP_TABLE_CODE_H
#define SP_TABLE_CODE_H

#include <stddef.h>

#include "sparse/format.h"

/* n records, in place: as stored (coded), and back. */
void sp_table_code(struct sp_chunk *c, size_t n);
void sp_table_uncode(struct sp_chunk *c, size_t n);

#endif
