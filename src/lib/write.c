/* SPDX-License-Identifier: Apache-2.0 */
/* mksparse's entry points: the options checked, the inputs opened once, a size budget fitted
 * by dry runs, then the run that writes the delta. Any model folder may be named by a hub id. */
#include "budget.h"
#include "meter.h"
#include "write_opts.h"

/* zstd's effort for patches of files that are not tensors, unless --level says: the large
 * windows of a patch pay for a slower match finder (a 6.6 MB CSV patch: 1.11 MB at level 3,
 * 0.57 MB at 12 in 3.5 s, 0.48 MB at 19 in 54 s). */
#define PATCH_LEVEL 12

static int write_delta(const char *base_dir, const char *ft_dir, const char *out_dir,
		       const struct sp_write_opts *opts, const struct sp_hub_ref *base_hub,
		       struct sp_write_stats *stats, struct sp_err *err)
{
	struct sp_write_opts o = *opts;
	struct sp_inputs in;
	struct sp_run r = {.base_dir = base_dir, .ft_dir = ft_dir, .out_dir = out_dir, .notes = 1,
			   .report = 1, .patch_level = opts->level ? opts->level : PATCH_LEVEL,
			   .base_hub = base_hub};
	struct sp_meter clock;
	sp_meter_start(&clock, NULL, NULL);
	if (sp_write_opts_check(&o, err))
		return -1;
	int rc = sp_inputs_open(&in, base_dir, ft_dir, NULL, o.size > 0, err) ||
				 (o.size && sp_budget_fit(&in, &o, &r, err)) ||
				 sp_drive(&in, &o, &r, stats, err)
			 ? -1
			 : 0;
	sp_inputs_close(&in);
	if (rc == 0 && stats)
		stats->seconds = sp_meter_seconds(&clock);
	return rc;
}

static int write_adapter(const char *adapter_dir, const char *base_dir, const char *out_dir,
			 const struct sp_write_opts *opts, const struct sp_hub_ref *base_hub,
			 struct sp_write_stats *stats, struct sp_err *err)
{
	struct sp_write_opts o = *opts;
	struct sp_inputs in;
	struct sp_run r = {.base_dir = base_dir, .out_dir = out_dir, .notes = 1, .report = 1,
			   .patch_level = opts->level ? opts->level : PATCH_LEVEL,
			   .base_hub = base_hub};
	if (sp_write_opts_check_adapter(&o, adapter_dir, err))
		return -1;
	int rc = sp_inputs_open(&in, base_dir, base_dir, adapter_dir, 0, err) ||
				 sp_drive(&in, &o, &r, stats, err)
			 ? -1
			 : 0;
	sp_inputs_close(&in);
	return rc;
}

int sp_write_delta(const char *base_dir, const char *ft_dir, const char *out_dir,
		   const struct sp_write_opts *opts, struct sp_write_stats *stats, struct sp_err *err)
{
	struct sp_hub_ref base, ft = {0};
	int rc = -1;
	if (sp_hub_locate(base_dir, &base, err) == 0 && sp_hub_locate(ft_dir, &ft, err) == 0)
		rc = write_delta(base.dir, ft.dir, out_dir, opts, &base, stats, err);
	sp_hub_ref_free(&base);
	sp_hub_ref_free(&ft);
	return rc;
}

int sp_write_adapter(const char *adapter_dir, const char *base_dir, const char *out_dir,
		     const struct sp_write_opts *opts, struct sp_write_stats *stats,
		     struct sp_err *err)
{
	struct sp_hub_ref base, adapter = {0};
	int rc = -1;
	if (sp_hub_locate(base_dir, &base, err) == 0 && sp_hub_locate(adapter_dir, &adapter, err) == 0)
		rc = write_adapter(adapter.dir, base.dir, out_dir, opts, &base, stats, err);
	sp_hub_ref_free(&base);
	sp_hub_ref_free(&adapter);
	return rc;
}
