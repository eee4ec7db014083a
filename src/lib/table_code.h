/* SPDX-License-Identifier: Apache-2.0 */
/* The chunk table's records coded against the records before them
 * (SP_FEATURE_INCOMPAT_DTABLE, sparse-format(5)): offsets and base file indices that follow on
 * from earlier chunks' become small or 0, so the table's zstd frame holds little but lengths
 * and hashes. With SP_FEATURE_INCOMPAT_PTABLE too, a base_off follows on from the last record
 * of its codec, not only from the record just before, and the frame holds the coded records as
 * byte planes (each field's bytes together), which zstd compresses better still. */
#ifndef SP_TABLE_CODE_H
#define SP_TABLE_CODE_H

#include <stddef.h>
#include <stdint.h>

#include "sparse/format.h"

/* n records, in place: as stored (coded), and back; features: the delta's incompatible ones. */
void sp_table_code(struct sp_chunk *c, size_t n, uint64_t features);
void sp_table_uncode(struct sp_chunk *c, size_t n, uint64_t features);

/* The bytes of n records as 48 planes (byte j of record k at j * n + k) into out, and back
 * from in; in and out are distinct buffers of n records' bytes. */
void sp_table_to_planes(const struct sp_chunk *c, size_t n, uint8_t *out);
void sp_table_from_planes(const uint8_t *in, size_t n, struct sp_chunk *c);

#endif
