/* SPDX-License-Identifier: Apache-2.0 */
#include "budget.h"

#include <math.h>
#include <stdint.h>

/* The size of a dry run like the final run r, with quantization step step (or every lossy
 * tensor dropped). */
static int dry_size(struct sp_inputs *in, struct sp_write_opts o, const struct sp_run *final,
		    double step, int drop, uint64_t *size, struct sp_err *err)
{
	struct sp_write_stats st;
	struct sp_run r = *final;
	r.drop = drop;
	r.notes = 0;
	r.report = 0;
	o.dry_run = 1;
	o.step = step;
	int rc = sp_drive(in, &o, &r, &st, err);
	*size = rc ? UINT64_MAX : st.delta_bytes;
	return rc;
}

#define STEP_MIN 0.125
#define STEP_MAX 64.0
#define STEP_ROUNDS 10

/* A size budget: every lossy tensor gets the same quantization step relative to the RMS of its
 * groups, the smallest (finest) one whose delta fits, found by bisection over dry runs. Equal
 * relative steps measured better in held-out loss than steps that minimise the squared error. */
int sp_budget_fit(struct sp_inputs *in, struct sp_write_opts *o, struct sp_run *r,
		  struct sp_err *err)
{
	uint64_t size;
	double lo = STEP_MIN, hi = STEP_MAX;
	if (dry_size(in, *o, r, 1, 1, &size, err))
		return -1;
	if (size > o->size) {
		sp_err_set(err, "--size %llu is smaller than the %llu bytes the lossless parts alone "
				"take (1-D and small tensors, headers, other files)",
			   (unsigned long long)o->size, (unsigned long long)size);
		return -1;
	}
	if (dry_size(in, *o, r, hi, 0, &size, err))
		return -1;
	if (size > o->size) {
		r->drop = 1; /* even the coarsest step does not fit: keep just the base */
		return 0;
	}
	for (int i = 0; i < STEP_ROUNDS; i++) {
		double mid = sqrt(lo * hi);
		if (dry_size(in, *o, r, mid, 0, &size, err))
			return -1;
		*(size > o->size ? &lo : &hi) = mid;
	}
	o->step = hi;
	return 0;
}

