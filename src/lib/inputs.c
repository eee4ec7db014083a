/* SPDX-License-Identifier: Apache-2.0 */
#include "inputs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "basefp.h"
#include "history_pick.h"

/* What a mount checks of a base file that is not safetensors: its first bytes. */
#define FP_HEAD 4096

/* Adapter mode: the output is the base, laid out as it is, plus the adapter. */
static int load_adapter(struct sp_inputs *in, const char *adapter_dir, struct sp_err *err)
{
	if (!(in->lora = calloc(1, sizeof(*in->lora)))) {
		sp_err_set(err, "%s: out of memory", adapter_dir);
		return -1;
	}
	return sp_lora_load(adapter_dir, &in->base, in->lora, err);
}

/* A place for the factors of every tensor of every file of m. */
static int keep_room(const struct sp_model *m, struct sp_lossy_factors ***factors)
{
	if (!(*factors = calloc(m->nfiles + 1, sizeof(**factors))))
		return -1;
	for (size_t i = 0; i < m->nfiles; i++)
		if (!((*factors)[i] = calloc(m->files[i].st.ntensors + 1, sizeof(***factors))))
			return -1;
	return 0;
}

int sp_inputs_open(struct sp_inputs *in, const char *base_dir, const char *ft_dir,
		   const char *adapter_dir, int keep_factors, struct sp_err *err)
{
	memset(in, 0, sizeof(*in));
	if (sp_model_open(base_dir, SP_MODEL_FOLLOW_LINKS, &in->base, err) ||
	    sp_model_open(ft_dir, 0, &in->ft, err))
		return -1;
	if (adapter_dir && load_adapter(in, adapter_dir, err))
		return -1;
	size_t n = in->base.nfiles + 1;
	in->fps = calloc(n, sizeof(*in->fps));
	in->fp_done = calloc(n, 1);
	in->sketches = calloc(n, sizeof(*in->sketches));
	if (!in->fps || !in->fp_done || !in->sketches ||
	    (keep_factors && keep_room(&in->ft, &in->factors))) {
		sp_err_set(err, "%s: out of memory", base_dir);
		return -1;
	}
	return 0;
}

void sp_inputs_close(struct sp_inputs *in)
{
	if (in->lora)
		sp_lora_free(in->lora);
	free(in->lora);
	for (size_t i = 0; in->sketches && i < in->base.nfiles; i++)
		free(in->sketches[i]);
	free(in->sketches);
	if (in->history)
		sp_history_pick_free(in->history);
	free(in->history);
	for (size_t i = 0; in->factors && i < in->ft.nfiles; i++) {
		for (size_t k = 0; in->factors[i] && k < in->ft.files[i].st.ntensors; k++)
			sp_lossy_factors_free(&in->factors[i][k]);
		free(in->factors[i]);
	}
	free(in->factors);
	free(in->fps);
	free(in->fp_done);
	sp_model_close(&in->base);
	sp_model_close(&in->ft);
	memset(in, 0, sizeof(*in));
}

const struct sp_base_fp *sp_inputs_fp(struct sp_inputs *in, uint32_t i, struct sp_err *err)
{
	struct sp_mfile *f = &in->base.files[i];
	struct sp_base_fp *fp = &in->fps[i];
	if (in->fp_done[i])
		return fp;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	uint64_t head = f->is_st ? f->st.header_len : FP_HEAD;
	*fp = (struct sp_base_fp){.name = f->name};
	int rc = fd < 0 ? -1 : sp_fp_compute(fd, head, fp, f->path, err);
	if (fd < 0)
		sp_err_set(err, "%s: %s", f->path, strerror(errno));
	else
		close(fd);
	in->fp_done[i] = rc == 0;
	return rc ? NULL : fp;
}

const struct sp_sketch *sp_inputs_sketch(struct sp_inputs *in, uint32_t i, struct sp_err *err)
{
	struct sp_mfile *b = &in->base.files[i];
	if (!in->sketches[i] && (in->sketches[i] = calloc(1, sizeof(struct sp_sketch))) &&
	    sp_model_map(&in->base, i, err) == 0)
		sp_sketch(b->map, b->size, in->sketches[i]);
	return in->sketches[i];
}

struct sp_lossy_factors *sp_inputs_factors(struct sp_inputs *in, const struct sp_tensor *t)
{
	for (size_t i = 0; in->factors && i < in->ft.nfiles; i++) {
		const struct sp_st *st = &in->ft.files[i].st;
		if (st->ntensors && t >= st->tensors && t < st->tensors + st->ntensors)
			return &in->factors[i][t - st->tensors];
	}
	return NULL;
}
