/* SPDX-License-Identifier: Apache-2.0 */
/* The write side of a delta's history (codec_history.h): which base content the fine-tune's new
 * files are coded against, read into one buffer and indexed once for zstd. */
#ifndef SP_HISTORY_PICK_H
#define SP_HISTORY_PICK_H

#include <zstd.h>

#include "inputs.h"

struct sp_history_pick {
	struct sp_history_seg *seg; /* file: an index into the base model's files */
	size_t nseg;
	uint8_t *bytes; /* the segments' bytes, concatenated */
	uint64_t len;
	ZSTD_CDict *dict;
};

/* The history for new files whose content sketches merge to want: the base's plain files (not
 * safetensors, links or empty), all of them in name order when they fit in SP_HISTORY_MAX, else
 * those most like want, the likest last (nearest to the data, so the cheapest to match).
 * h->nseg is 0 when the base has none. Coded at zstd level level. */
int sp_history_pick(struct sp_inputs *in, const struct sp_sketch *want, int level,
		    struct sp_history_pick *h, struct sp_err *err);
void sp_history_pick_free(struct sp_history_pick *h);

#endif
