/* SPDX-License-Identifier: Apache-2.0 */
/* The quality report of a lossy write: per tensor, how it was coded, its bytes and its relative
 * errors, then the totals. The only code that knows the report's JSON keys. */
#ifndef SP_REPORT_H
#define SP_REPORT_H

#include "lossy.h"

struct sp_report;

/* A report for a write in mode (NULL: out of memory). */
struct sp_report *sp_report_new(const char *mode);
void sp_report_free(struct sp_report *r);
/* Tensor name, coded as c says with rank rank (c->lossy 0: losslessly), in bytes bytes of the
 * delta, with errors st. */
void sp_report_tensor(struct sp_report *r, const char *name, const struct sp_lossy_choice *c,
		      uint32_t rank, const struct sp_lossy_stats *st, uint64_t bytes);
/* Adds the totals (the delta's bytes, every tensor's errors) and hands the report over as a
 * cJSON object (sp_write_stats.report); r is freed. */
void *sp_report_finish(struct sp_report *r, uint64_t delta_bytes);

#endif
