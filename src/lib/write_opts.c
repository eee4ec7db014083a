/* SPDX-License-Identifier: Apache-2.0 */
#include "write_opts.h"

#include "codec_lossy.h"
#include "sparse/format.h"

/* Energy mode looks for the rank among the first this many singular values by default. */
#define ENERGY_RANK_CAP 1024

/* Bits of the codes under a size budget: the step decides how many levels are used, and with
 * 8 bits no step clips, so the size falls steadily as the step grows. Its scales cover larger
 * groups: they cost less, and measured no worse; but in embeddings a scale per row (a token,
 * whose delta may differ from its neighbours' by far) measured better in held-out loss, twice
 * better on the heavy fine-tune at 1/8. A low-rank part goes only where the delta is low rank,
 * found among this many singular values. */
#define BUDGET_BITS 8
#define BUDGET_GROUP 2048
#define BUDGET_RANK_CAP 64
#define BUDGET_ENERGY 0.99

static int check_lossy_opts(struct sp_write_opts *o, struct sp_err *err)
{
	const char *why = NULL;
	if (o->size && o->mode == SP_MODE_LOSSLESS)
		o->mode = SP_MODE_QUANT;
	if (o->size && o->mode == SP_MODE_QUANT && !o->bits)
		o->bits = BUDGET_BITS;
	if (o->size && !o->group) {
		o->group = BUDGET_GROUP;
		o->row_groups = 1;
	}
	if (o->size && !o->rank && o->energy == 0) {
		o->rank = BUDGET_RANK_CAP;
		o->energy = BUDGET_ENERGY;
		o->auto_rank = 1;
	}
	if (o->size && o->mode != SP_MODE_QUANT)
		why = "a size budget is spent in quant mode";
	else if (o->size && o->step > 0)
		why = "a size budget picks the step itself";
	else if (o->mode == SP_MODE_SVD && !o->rank && o->energy == 0)
		why = "svd mode needs a rank or an energy";
	else if (o->row_groups && o->mode != SP_MODE_QUANT)
		why = "row groups: only quant mode quantizes";
	else if (o->mode == SP_MODE_SVD && (o->group || o->step > 0))
		why = "group and step: svd mode quantizes nothing (quant mode does)";
	else if (o->mode == SP_MODE_LOSSLESS && o->lowrank_embeddings)
		why = "lowrank_embeddings needs a lossy mode";
	else if (o->mode == SP_MODE_LOSSLESS && (o->rank || o->bits || o->energy > 0 || o->group ||
					    o->step > 0))
		why = "rank, energy, bits, group and step need a lossy mode (svd or quant)";
	else if (o->mode == SP_MODE_SVD && o->bits)
		why = "bits: svd mode quantizes nothing (quant mode does)";
	else if (o->mode == SP_MODE_QUANT && (o->bits < 2 || o->bits > 8))
		why = "quant mode needs bits from 2 to 8";
	else if (o->step < 0)
		why = "the step must be positive";
	else if (o->energy < 0 || o->energy > 1)
		why = "energy must be a fraction from 0 to 1";
	else if (o->rank > SP_LOSSY_MAX_RANK)
		why = "rank is at most 4096";
	if (why) {
		sp_err_set(err, "%s", why);
		return -1;
	}
	if (o->energy > 0 && !o->rank)
		o->rank = ENERGY_RANK_CAP;
	return 0;
}

static int check_chunk_size(uint32_t n, uint32_t max, struct sp_err *err)
{
	if (n >= SP_CHUNK_MIN && n <= max && !(n & (n - 1)))
		return 0;
	sp_err_set(err, "chunk size %u: must be a power of two from %u to %u", n, SP_CHUNK_MIN, max);
	return -1;
}

int sp_write_opts_check(struct sp_write_opts *o, struct sp_err *err)
{
	if (!o->tensor_chunk_size)
		o->tensor_chunk_size = o->chunk_size ? o->chunk_size : SP_CHUNK_TENSOR_DEFAULT;
	if (!o->chunk_size)
		o->chunk_size = SP_CHUNK_DEFAULT;
	if (!o->level)
		o->level = 3;
	if (check_chunk_size(o->chunk_size, SP_CHUNK_MAX, err) ||
	    check_chunk_size(o->tensor_chunk_size, o->chunk_size, err))
		return -1;
	if (o->level < 1 || o->level > 19) {
		sp_err_set(err, "level %d: must be 1 to 19", o->level);
		return -1;
	}
	return check_lossy_opts(o, err);
}

int sp_write_opts_check_adapter(struct sp_write_opts *o, const char *adapter_dir,
				struct sp_err *err)
{
	if (o->mode != SP_MODE_LOSSLESS || o->size) {
		sp_err_set(err, "%s: an adapter is packaged as it is: no lossy mode or size budget",
			   adapter_dir);
		return -1;
	}
	return sp_write_opts_check(o, err);
}
