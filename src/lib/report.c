/* SPDX-License-Identifier: Apache-2.0 */
#include "report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

struct sp_report {
	cJSON *root;
	struct sp_lossy_stats total;
};

struct sp_report *sp_report_new(const char *mode)
{
	struct sp_report *r = calloc(1, sizeof(*r));
	if (r && (r->root = cJSON_CreateObject())) {
		cJSON_AddStringToObject(r->root, "mode", mode);
		cJSON_AddArrayToObject(r->root, "tensors");
		return r;
	}
	free(r);
	return NULL;
}

void sp_report_free(struct sp_report *r)
{
	if (!r)
		return;
	cJSON_Delete(r->root);
	free(r);
}

static double rel(double err, double norm)
{
	return norm > 0 ? sqrt(err / norm) : 0;
}

static void add_sizes(cJSON *obj, const struct sp_lossy_stats *st, uint64_t bytes)
{
	cJSON_AddNumberToObject(obj, "bytes", (double)bytes);
	cJSON_AddNumberToObject(obj, "delta_rel_err", rel(st->err_d, st->norm_d));
	cJSON_AddNumberToObject(obj, "weight_rel_err", rel(st->err_w, st->norm_w));
}

static const char *coding(const struct sp_lossy_choice *c, uint32_t rank)
{
	if (!c->lossy)
		return "lossless";
	return rank && c->bits ? "lowrank+quant" : rank ? "lowrank" : c->bits ? "quant" : "base";
}

void sp_report_tensor(struct sp_report *r, const char *name, const struct sp_lossy_choice *c,
		      uint32_t rank, const struct sp_lossy_stats *st, uint64_t bytes)
{
	cJSON *js = cJSON_CreateObject();
	cJSON_AddStringToObject(js, "name", name);
	cJSON_AddStringToObject(js, "coding", coding(c, rank));
	cJSON_AddNumberToObject(js, "rank", rank);
	cJSON_AddNumberToObject(js, "bits", c->bits);
	add_sizes(js, st, bytes);
	cJSON_AddItemToArray(cJSON_GetObjectItem(r->root, "tensors"), js);
	r->total.err_d += st->err_d;
	r->total.norm_d += st->norm_d;
	r->total.err_w += st->err_w;
	r->total.norm_w += st->norm_w;
}

void *sp_report_finish(struct sp_report *r, uint64_t delta_bytes)
{
	cJSON *total = cJSON_CreateObject(), *root = r->root;
	add_sizes(total, &r->total, delta_bytes);
	cJSON_AddItemToObject(root, "total", total);
	r->root = NULL;
	sp_report_free(r);
	return root;
}
