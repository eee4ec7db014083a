/* SPDX-License-Identifier: Apache-2.0 */
/* The write options' policy: defaults filled in, contradictions refused with the reason. */
#ifndef SP_WRITE_OPTS_H
#define SP_WRITE_OPTS_H

#include "sparse/sparse.h"

/* Fills in o's defaults (a size budget picks quant mode and its bits, group and rank) and
 * checks them; -1 with the reason in err. */
int sp_write_opts_check(struct sp_write_opts *o, struct sp_err *err);
/* The same for packaging the adapter in adapter_dir, which allows no lossy mode. */
int sp_write_opts_check_adapter(struct sp_write_opts *o, const char *adapter_dir,
				struct sp_err *err);

#endif
