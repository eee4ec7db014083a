/* SPDX-License-Identifier: Apache-2.0 */
#include "meter.h"

#include <string.h>

void sp_meter_start(struct sp_meter *m, sp_progress_fn fn, void *arg)
{
	memset(m, 0, sizeof(*m));
	m->fn = fn;
	m->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &m->t0);
}

double sp_meter_seconds(const struct sp_meter *m)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - m->t0.tv_sec) + (double)(now.tv_nsec - m->t0.tv_nsec) / 1e9;
}

void sp_meter_tick(struct sp_meter *m, int final)
{
	if (!m->fn)
		return;
	m->p.seconds = sp_meter_seconds(m);
	if (!final && m->p.seconds - m->last < SP_PROGRESS_INTERVAL)
		return;
	m->last = m->p.seconds;
	m->p.final = final;
	m->fn(&m->p, m->arg);
}
