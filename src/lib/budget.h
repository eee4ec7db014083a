/* SPDX-License-Identifier: Apache-2.0 */
/* A size budget (opts.size): the quantization step that makes the delta fit, found by dry runs
 * of the driver over the same inputs. */
#ifndef SP_BUDGET_H
#define SP_BUDGET_H

#include "driver.h"

/* Sets o->step to the finest step whose delta fits in o->size, or r->drop when even the
 * coarsest does not (lossy tensors then keep just the base). -1 when the lossless parts alone
 * do not fit, with the reason in err. */
int sp_budget_fit(struct sp_inputs *in, struct sp_write_opts *o, struct sp_run *r,
		  struct sp_err *err);

#endif
