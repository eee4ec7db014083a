/* SPDX-License-Identifier: Apache-2.0 */
/* Packs: small files coded together as one auxiliary chunk, so that each shares what zstd learnt
 * from the ones before it (a file coded alone pays for its own frame and starts with nothing
 * learnt). Each file is one SLICE chunk of its pack, so reading it decodes one pack, at most
 * the packer's max bytes. */
#ifndef SP_PACKER_H
#define SP_PACKER_H

#include "sink.h"

#define SP_PACK_FILE_MAX (128u << 10) /* the largest file that joins a pack */

struct sp_packer;

/* A packer queuing to sink packs of at most max bytes (at least SP_PACK_FILE_MAX), coded against
 * history (or alone when NULL) at zstd level level. NULL when out of memory, with err set naming
 * label. */
struct sp_packer *sp_packer_new(struct sp_sink *sink, const ZSTD_CDict *history, int level,
				uint32_t max, const char *label, struct sp_err *err);
void sp_packer_free(struct sp_packer *p);
/* Queues a file of n bytes (at most SP_PACK_FILE_MAX) as a SLICE chunk of the open pack,
 * closing the pack first when the file does not fit. */
int sp_packer_add(struct sp_packer *p, const uint8_t *bytes, uint32_t n);
/* Queues the open pack, if any. */
int sp_packer_close(struct sp_packer *p);

#endif
