/* SPDX-License-Identifier: Apache-2.0 */
/* The write's progress: counted by the parts that do the work, reported to the caller's
 * callback at most every SP_PROGRESS_INTERVAL seconds. */
#ifndef SP_METER_H
#define SP_METER_H

#include <time.h>

#include "sparse/sparse.h"

struct sp_meter {
	struct sp_progress p; /* the counts: the plan and the sink add to them */
	sp_progress_fn fn;    /* NULL: nothing is reported */
	void *arg;
	struct timespec t0;
	double last; /* p.seconds at the last report */
};

/* Starts the clock; fn (may be NULL) gets the reports. */
void sp_meter_start(struct sp_meter *m, sp_progress_fn fn, void *arg);
/* Reports, if enough time has passed since the last report or this is the final one. */
void sp_meter_tick(struct sp_meter *m, int final);
/* Seconds since the start. */
double sp_meter_seconds(const struct sp_meter *m);

#endif
