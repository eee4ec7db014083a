/* SPDX-License-Identifier: Apache-2.0 */
/* mksparse's engine: plans the chunks of every output file, encodes them on a few threads, and
 * writes delta.sparse through a temporary file that is renamed into place only when complete. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "basefp.h"
#include "sparse/util.h"
#include "verify.h"
#include "writer.h"

#define BATCH_PER_THREAD 4
/* zstd's effort for patches of files that are not tensors, unless --level says: the large
 * windows of a patch pay for a slower match finder (a 6.6 MB CSV patch: 1.11 MB at level 3,
 * 0.57 MB at 12 in 3.5 s, 0.48 MB at 19 in 54 s). */
#define PATCH_LEVEL 12
/* What a mount checks of a base file that is not safetensors: its first bytes. */
#define FP_HEAD 4096

/* ---- encoding in batches ---- */

/* A LOSSY chunk: its hash covers its inputs, and its error goes to the report. */
static int encode_lossy(struct sp_codecs *cs, struct encode_job *j)
{
	size_t n = j->c.out_len / sp_dtype_size(j->c.dtype);
	float *delta = malloc(n * sizeof(float) + 1);
	size_t len = delta ? sp_lossy_encode(cs->cctx, cs->lossless, j->lossy, j->e0, n, j->dst,
					     j->dst_cap, j->level, delta, &cs->lossy)
			   : 0;
	if (len) {
		j->c.codec = SP_CODEC_LOSSY;
		j->c.data_len = (uint32_t)len;
		j->c.out_hash = sp_lossy_inputs_hash(j->dst, len, j->base, sp_chunk_base_len(&j->c));
		if (j->lossy->d) /* adapters: there is no fine-tune to measure against */
			sp_lossy_measure(j->lossy->d + j->e0, delta, j->ft, j->c.dtype, j->base,
					 j->c.base_dtype, n, &j->stats);
	}
	free(delta);
	return len ? 0 : -1;
}

/* Thread t encodes queued jobs with its codecs until none is left. */
static void encode_worker(void *arg, unsigned t)
{
	struct writer *w = arg;
	struct sp_codecs *cs = &w->codecs[t];
	size_t i;
	while ((i = atomic_fetch_add(&w->next_job, 1)) < w->njobs) {
		struct encode_job *j = &w->jobs[i];
		if (j->lossy) {
			j->rc = encode_lossy(cs, j);
			continue;
		}
		j->c.out_hash = XXH3_64bits(j->ft, j->c.out_len);
		j->rc = j->window ? sp_chunk_encode_patch(cs, &j->c, j->ft, j->window, j->wlen,
							  j->base, j->dst, j->dst_cap, j->level)
				  : sp_chunk_encode(cs, &j->c, j->ft, j->base, j->dst, j->dst_cap,
						    j->level);
	}
}

static int append(struct sp_chunk **v, size_t *n, size_t *cap, const struct sp_chunk *c)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 1024;
		struct sp_chunk *p = realloc(*v, ncap * sizeof(*p));
		if (!p)
			return -1;
		*v = p;
		*cap = ncap;
	}
	(*v)[(*n)++] = *c;
	return 0;
}

/* Appends encoded bytes to the data area (nothing is written in a dry run). */
static int write_data(struct writer *w, struct sp_chunk *c, const uint8_t *data)
{
	c->data_off = c->data_len ? w->pos : 0;
	if (w->tmp.fd >= 0 && sp_pwrite_full(w->tmp.fd, data, c->data_len, w->pos))
		return -1;
	w->pos += c->data_len;
	return 0;
}

static void add_stats(struct sp_lossy_stats *to, const struct sp_lossy_stats *s)
{
	to->err_d += s->err_d;
	to->norm_d += s->norm_d;
	to->err_w += s->err_w;
	to->norm_w += s->norm_w;
}

int sp_writer_add_aux(struct writer *w, const uint8_t *bytes, size_t len, uint32_t *ordinal)
{
	struct sp_chunk c = {.out_len = (uint32_t)len, .base_file = SP_NO_BASE,
			     .out_hash = XXH3_64bits(bytes, len)};
	size_t cap = ZSTD_compressBound(len);
	uint8_t *z = malloc(cap);
	size_t zlen = z ? ZSTD_compressCCtx(w->codecs[0].cctx, z, cap, bytes, len, w->o->level) : 0;
	int stored = !z || ZSTD_isError(zlen) || zlen >= len;
	c.codec = stored ? SP_CODEC_RAW : SP_CODEC_ZSTD;
	c.data_len = (uint32_t)(stored ? len : zlen);
	int rc = len > SP_CHUNK_MAX || write_data(w, &c, stored ? bytes : z) ||
		 append(&w->aux, &w->naux, &w->aux_cap, &c);
	*ordinal = (uint32_t)(w->naux - 1);
	free(z);
	if (rc)
		sp_err_set(w->err, "%s: cannot store a low-rank factor: %s", w->ft.dir,
			   len > SP_CHUNK_MAX ? "too large" : strerror(errno));
	return rc;
}

/* Encodes the queued jobs in parallel, then appends them in order. */
int sp_writer_flush(struct writer *w)
{
	atomic_store(&w->next_job, 0);
	sp_threads_run((unsigned)w->threads, encode_worker, w);
	for (size_t i = 0; i < w->njobs; i++) {
		struct encode_job *j = &w->jobs[i];
		if (j->rc || write_data(w, &j->c, j->dst) ||
		    append(&w->chunks, &w->nchunks, &w->cap, &j->c)) {
			sp_err_set(w->err, "%s: %s", w->tmp.path ? w->tmp.path : "delta",
				   j->rc ? "a chunk failed to encode" : strerror(errno));
			return -1;
		}
		add_stats(&w->flushed, &j->stats);
		w->progress.bytes_done += j->c.out_len;
		sp_writer_progress(w, 0);
		w->lossy |= j->c.codec == SP_CODEC_LOSSY;
		w->patch |= j->c.codec == SP_CODEC_PATCH;
	}
	w->njobs = 0;
	return 0;
}

int sp_writer_queue(struct writer *w, const struct encode_job *j)
{
	if (w->njobs == w->batch && sp_writer_flush(w))
		return -1;
	struct encode_job *q = &w->jobs[w->njobs++];
	uint8_t *dst = q->dst;
	size_t cap = q->dst_cap, need = 2 * sp_chunk_bound(j->c.out_len);
	if (j->lossy) {
		size_t n = j->c.out_len / sp_dtype_size(j->c.dtype);
		need = sp_lossy_bound(n, j->lossy->rank, j->lossy->cols);
	}
	if (need > cap) {
		uint8_t *p = realloc(dst, need);
		if (!p) {
			sp_err_set(w->err, "%s: out of memory for a chunk of %u bytes", w->ft.dir,
				   j->c.out_len);
			return -1;
		}
		dst = p;
		cap = need;
	}
	*q = *j;
	q->dst = dst;
	q->dst_cap = cap;
	return 0;
}

void sp_writer_progress(struct writer *w, int final)
{
	struct timespec now;
	if (!w->o->progress || !w->notes)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	w->progress.seconds = (double)(now.tv_sec - w->t0.tv_sec) +
			      (double)(now.tv_nsec - w->t0.tv_nsec) / 1e9;
	if (!final && w->progress.seconds - w->progress_last < SP_PROGRESS_INTERVAL)
		return;
	w->progress_last = w->progress.seconds;
	w->progress.final = final;
	w->o->progress(&w->progress, w->o->progress_arg);
}

/* ---- the base ---- */

/* Fingerprints every base file the delta reads, the first time a chunk reads it: the manifest
 * lists them, and a reader checks them all before it serves anything. */
uint32_t sp_writer_base_index(struct writer *w, uint32_t i)
{
	struct sp_mfile *f = &w->base.files[i];
	struct sp_base_fp fp = {.name = f->name};
	if (w->base_fp_index[i] != SP_NO_BASE)
		return w->base_fp_index[i];
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);
	uint64_t head = f->is_st ? f->st.header_len : FP_HEAD;
	int rc = fd < 0 ? -1 : sp_fp_compute(fd, head, &fp, f->path, w->err);
	if (fd < 0)
		sp_err_set(w->err, "%s: %s", f->path, strerror(errno));
	else
		close(fd);
	if (rc)
		return SP_NO_BASE;
	sp_manifest_add_base_fp(w->manifest, &fp);
	return w->base_fp_index[i] = w->nbase++;
}

/* The path of absolute path to, relative to absolute directory from: "../" for each part of
 * from below the common parts, then the rest of to. */
static void relative_path(const char *from, const char *to, char *rel, size_t cap)
{
	size_t common = 0, k = 0;
	for (; from[k] && from[k] == to[k]; k++)
		if (from[k] == '/')
			common = k;
	if ((!from[k] && (!to[k] || to[k] == '/')) || (!to[k] && from[k] == '/'))
		common = k;
	rel[0] = 0;
	for (const char *p = from + common; *p; p++)
		if (*p == '/' && p[1] && p[1] != '/')
			strncat(rel, "../", cap - strlen(rel) - 1);
	const char *rest = to + common;
	while (*rest == '/')
		rest++;
	strncat(rel, rest, cap - strlen(rel) - 1);
	size_t n = strlen(rel);
	if (n && rel[n - 1] == '/')
		rel[n - 1] = 0;
	if (!*rel)
		snprintf(rel, cap, ".");
}

/* An absolute path for dir, which need not exist yet (a dry run creates nothing). */
static char *absolute(const char *dir)
{
	char *abs = realpath(dir, NULL), *cwd;
	if (abs || dir[0] == '/')
		return abs ? abs : strdup(dir);
	if (!(cwd = getcwd(NULL, 0)) || asprintf(&abs, "%s/%s", cwd, dir) < 0)
		abs = NULL;
	free(cwd);
	return abs;
}

/* The base in the manifest: its absolute path, where the delta's folder finds it, and the hub
 * id it was named by (where readers look for it first). */
static void set_base(cJSON *m, const char *base_dir, const char *out_dir,
		     const struct sp_hub_ref *hub)
{
	char *abs_base = realpath(base_dir, NULL), *abs_out = absolute(out_dir);
	char rel[PATH_MAX];
	if (abs_base && abs_out)
		relative_path(abs_out, abs_base, rel, sizeof(rel));
	sp_manifest_set_base(m, abs_base ? abs_base : base_dir, abs_base && abs_out ? rel : NULL,
			     hub);
	free(abs_base);
	free(abs_out);
}

/* ---- the output file ---- */

/* The temporary file's error, errno as the failing call (named by call, if not a write) left
 * it. */
static int tmp_error(struct writer *w, const char *call)
{
	sp_err_set(w->err, "%s: %s%s%s", w->tmp.path, call, *call ? ": " : "", strerror(errno));
	return -1;
}

static int write_tail(struct writer *w, struct sp_super *sb)
{
	for (size_t i = 0; i < w->naux; i++)
		if (append(&w->chunks, &w->nchunks, &w->cap, &w->aux[i]))
			return -1;
	if (w->lossy || w->naux)
		sb->feature_incompat |= SP_FEATURE_INCOMPAT_LOSSY;
	if (w->patch)
		sb->feature_incompat |= SP_FEATURE_INCOMPAT_PATCH;
	if (w->naux)
		sp_manifest_set_aux(w->manifest, w->naux);
	char *json = cJSON_PrintUnformatted(w->manifest);
	size_t raw = json ? strlen(json) : 0, cap = ZSTD_compressBound(raw);
	uint8_t *z = json ? malloc(cap) : NULL;
	size_t zlen = z ? ZSTD_compress(z, cap, json, raw, META_LEVEL) : 0;
	uint64_t table = w->nchunks * sizeof(struct sp_chunk);
	int rc = -1;
	if (!z)
		sp_err_set(w->err, "%s: out of memory for the manifest", w->ft.dir);
	else if (ZSTD_isError(zlen))
		sp_err_set(w->err, "%s: the manifest: %s", w->ft.dir, ZSTD_getErrorName(zlen));
	else {
		sb->chunk_table_off = w->pos;
		sb->chunk_count = w->nchunks;
		sb->chunk_table_hash = XXH3_64bits(w->chunks, table);
		sb->manifest_off = w->pos + table;
		sb->manifest_len = zlen;
		sb->manifest_raw_len = raw;
		sb->manifest_hash = XXH3_64bits(z, zlen);
		sb->file_size = sb->manifest_off + zlen;
		rc = w->tmp.fd >= 0 && (sp_pwrite_full(w->tmp.fd, w->chunks, table, w->pos) ||
					sp_pwrite_full(w->tmp.fd, z, zlen, sb->manifest_off))
			     ? tmp_error(w, "")
			     : 0;
	}
	free(json);
	free(z);
	return rc;
}

/* The temporary file being written, for sp_write_remove_temp in a signal handler: a copy in
 * static storage, since a handler may neither lock nor follow the writer's pointers. */
static char signal_tmp[PATH_MAX];
static volatile sig_atomic_t signal_tmp_set;

void sp_write_remove_temp(void)
{
	if (signal_tmp_set)
		unlink(signal_tmp);
}

/* Closes the temporary file, which has its name or is gone, and drops its lock. */
static void forget_temp(struct writer *w)
{
	signal_tmp_set = 0;
	sp_temp_close(&w->tmp);
}

/* The finished temporary file, read back through the reader (opts.verify): decoded, checked
 * against every hash and, for a bit-exact delta, against the fine-tune. */
static int verify(struct writer *w, const char *base_dir, const char *ft_dir, const char *out_dir)
{
	int exact = w->o->mode == SP_MODE_LOSSLESS && !w->o->size && !w->lora;
	if (!w->o->verify)
		return 0;
	return sp_verify_written(out_dir, w->tmp.path, base_dir, exact ? ft_dir : NULL, w->err);
}

/* The superblock, synced, and the file closed: close is where some file systems (NFS) report
 * a failed write. */
static int seal(struct writer *w, struct sp_super *sb)
{
	sb->super_hash = XXH3_64bits(sb, offsetof(struct sp_super, super_hash));
	if (sp_pwrite_full(w->tmp.fd, sb, sizeof(*sb), 0))
		return tmp_error(w, "");
	if (fsync(w->tmp.fd))
		return tmp_error(w, "fsync");
	int rc = close(w->tmp.fd);
	w->tmp.fd = -1;
	return rc ? tmp_error(w, "close") : 0;
}

static int publish(struct writer *w, const char *out_dir)
{
	char *final = NULL;
	if (asprintf(&final, "%s/%s", out_dir, SP_DELTA_FILE) < 0) {
		sp_err_set(w->err, "%s: out of memory", out_dir);
		return -1;
	}
	int rc = rename(w->tmp.path, final);
	if (rc)
		sp_err_set(w->err, "%s: cannot rename it to %s: %s", w->tmp.path, final,
			   strerror(errno));
	else
		forget_temp(w);
	free(final);
	return rc;
}

/* The new name made durable. File systems that cannot sync a folder say EINVAL. */
static int sync_dir(struct writer *w, const char *out_dir)
{
	int dfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = dfd < 0 || (fsync(dfd) && errno != EINVAL) ? -1 : 0;
	if (rc)
		sp_err_set(w->err, "%s: %s: %s (the delta is complete, but its name may not "
				   "survive a crash)",
			   out_dir, dfd < 0 ? "open" : "fsync", strerror(errno));
	if (dfd >= 0)
		close(dfd);
	return rc;
}

/* Chunk table, manifest, and last the superblock: until it is written, verified and the file
 * renamed, nothing looks like a delta. */
static int finish(struct writer *w, const char *base_dir, const char *ft_dir, const char *out_dir)
{
	struct sp_super sb = {.version = SP_VERSION, .super_size = sizeof(sb)};
	memcpy(sb.magic, SP_MAGIC, SP_MAGIC_LEN);
	if (sp_writer_flush(w) || write_tail(w, &sb))
		return -1;
	w->pos = sb.file_size;
	if (w->o->dry_run)
		return 0;
	return seal(w, &sb) || verify(w, base_dir, ft_dir, out_dir) || publish(w, out_dir) ||
	       sync_dir(w, out_dir);
}

/* Creates the temporary file, after removing those whose writers are gone. */
static int open_output(struct writer *w, const char *out_dir)
{
	if (sp_mkdir_p(out_dir)) {
		sp_err_set(w->err, "%s: %s", out_dir, strerror(errno));
		return -1;
	}
	sp_temp_sweep(out_dir, SP_DELTA_FILE);
	if (sp_temp_open(out_dir, SP_DELTA_FILE, &w->tmp, w->err))
		return -1;
	if (strlen(w->tmp.path) < sizeof(signal_tmp)) {
		memcpy(signal_tmp, w->tmp.path, strlen(w->tmp.path) + 1);
		signal_tmp_set = 1;
	}
	w->pos = sizeof(struct sp_super);
	return 0;
}

/* ---- setup ---- */

static int setup(struct writer *w)
{
	w->threads = w->o->threads > 0 ? w->o->threads : (int)sp_threads_cpus();
	if (w->threads > SP_THREADS_MAX)
		w->threads = SP_THREADS_MAX;
	w->batch = (size_t)w->threads * BATCH_PER_THREAD;
	w->jobs = calloc(w->batch, sizeof(*w->jobs));
	w->codecs = calloc((size_t)w->threads, sizeof(*w->codecs));
	if (!w->jobs || !w->codecs)
		return -1;
	for (size_t i = 0; i < w->batch; i++) {
		w->jobs[i].dst_cap = 2 * sp_chunk_bound(w->o->chunk_size);
		if (!(w->jobs[i].dst = malloc(w->jobs[i].dst_cap)))
			return -1;
	}
	for (int t = 0; t < w->threads; t++)
		if (sp_codecs_init(&w->codecs[t]))
			return -1;
	static const char *modes[] = {"lossless", "svd", "quant"};
	w->manifest = sp_manifest_new(w->lora ? "lora" : modes[w->o->mode], w->o->chunk_size);
	if (w->o->mode != SP_MODE_LOSSLESS) {
		w->report = cJSON_CreateObject();
		cJSON_AddStringToObject(w->report, "mode", modes[w->o->mode]);
		cJSON_AddArrayToObject(w->report, "tensors");
	}
	return 0;
}

static void teardown(struct writer *w)
{
	if (w->tmp.path)
		unlink(w->tmp.path);
	forget_temp(w);
	for (size_t i = 0; w->jobs && i < w->batch; i++)
		free(w->jobs[i].dst);
	for (int t = 0; w->codecs && t < w->threads; t++)
		sp_codecs_fini(&w->codecs[t]);
	free(w->jobs);
	free(w->codecs);
	free(w->chunks);
	free(w->aux);
	free(w->base_fp_index);
	cJSON_Delete(w->report);
	cJSON_Delete(w->manifest);
	if (w->lora)
		sp_lora_free(w->lora);
	free(w->lora);
	free(w->held);
	for (size_t i = 0; w->sketches && i < w->base.nfiles; i++)
		free(w->sketches[i]);
	free(w->sketches);
	sp_model_close(&w->base);
	sp_model_close(&w->ft);
}

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

static int check_opts(struct sp_write_opts *o, struct sp_err *err)
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

/* Adapter mode: the output is the base, laid out as it is, plus the adapter. */
static int load_adapter(struct writer *w, const char *adapter_dir)
{
	if (!(w->lora = calloc(1, sizeof(*w->lora))))
		return -1;
	return sp_lora_load(adapter_dir, &w->base, w->lora, w->err);
}

static int write_all(struct writer *w, const char *base_dir, const char *ft_dir,
		     const char *adapter_dir, const char *out_dir)
{
	if (sp_model_open(base_dir, SP_MODEL_FOLLOW_LINKS, &w->base, w->err) ||
	    sp_model_open(ft_dir, 0, &w->ft, w->err))
		return -1;
	if (adapter_dir && load_adapter(w, adapter_dir))
		return -1;
	if (setup(w)) {
		sp_err_set(w->err, "%s: out of memory", out_dir);
		return -1;
	}
	if (!w->o->dry_run && open_output(w, out_dir))
		return -1;
	if (w->o->dry_run)
		w->pos = sizeof(struct sp_super);
	set_base(w->manifest, base_dir, out_dir, w->base_hub);
	if (!(w->base_fp_index = malloc((w->base.nfiles + 1) * sizeof(uint32_t))))
		return -1;
	for (size_t i = 0; i < w->base.nfiles; i++)
		w->base_fp_index[i] = SP_NO_BASE;
	for (uint32_t i = 0; i < w->ft.nfiles; i++) {
		w->progress.files += 1;
		w->progress.tensors += w->ft.files[i].st.ntensors;
		w->progress.bytes += w->ft.files[i].size;
	}
	for (uint32_t i = 0; i < w->ft.nfiles; i++) {
		if (sp_plan_file(w, i))
			return -1;
		w->progress.files_done++;
		sp_writer_progress(w, 0);
	}
	if (w->match.of_tensors)
		sp_manifest_set_match(w->manifest, &w->match);
	if (finish(w, base_dir, adapter_dir ? NULL : ft_dir, out_dir))
		return -1;
	sp_writer_progress(w, 1);
	return 0;
}

/* How one run of the writer differs from the options. */
struct run {
	int drop;        /* lossy tensors keep just the base */
	int notes;       /* say what is worth saying (not in a budget's dry runs) */
	int patch_level; /* the level for patches: the options' level, if they give one */
	const struct sp_hub_ref *base_hub; /* the base's hub id, for the manifest */
};

static int write_once(const char *base_dir, const char *ft_dir, const char *adapter_dir,
		      const char *out_dir, const struct sp_write_opts *o, const struct run *r,
		      struct sp_write_stats *stats, struct sp_err *err)
{
	struct writer w = {.o = o, .err = err, .tmp = {.fd = -1, .lock_fd = -1},
			   .drop_lossy = r->drop, .notes = r->notes, .patch_level = r->patch_level,
			   .base_hub = r->base_hub};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	w.t0 = t0;
	int rc = write_all(&w, base_dir, ft_dir, adapter_dir, out_dir);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc && !err->msg[0]) /* the failures that set no message are allocations' */
		sp_err_set(err, "%s: %s", out_dir, strerror(ENOMEM));
	if (rc == 0) {
		memset(stats, 0, sizeof(*stats));
		for (size_t i = 0; i < w.ft.nfiles; i++) {
			stats->ft_bytes += w.ft.files[i].size;
			stats->tensors += w.ft.files[i].st.ntensors;
		}
		stats->delta_bytes = w.pos;
		stats->chunks = w.nchunks;
		stats->match = w.match;
		if (w.report) {
			cJSON_AddItemToObject(w.report, "total", sp_plan_report_totals(&w));
			stats->report = w.report;
			w.report = NULL;
		}
		stats->seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	}
	teardown(&w);
	return rc;
}

/* The size of a dry run like the final run r, with quantization step step (or every lossy
 * tensor dropped). */
static int dry_size(const char *base_dir, const char *ft_dir, const char *out_dir,
		    struct sp_write_opts o, const struct run *final, double step, int drop,
		    uint64_t *size, struct sp_err *err)
{
	struct sp_write_stats st;
	struct run r = {.drop = drop, .patch_level = final->patch_level,
			.base_hub = final->base_hub};
	o.dry_run = 1;
	o.step = step;
	int rc = write_once(base_dir, ft_dir, NULL, out_dir, &o, &r, &st, err);
	cJSON_Delete(st.report);
	*size = rc ? UINT64_MAX : st.delta_bytes;
	return rc;
}

#define STEP_MIN 0.125
#define STEP_MAX 64.0
#define STEP_ROUNDS 10

/* A size budget: every lossy tensor gets the same quantization step relative to the RMS of its
 * groups, the smallest (finest) one whose delta fits, found by bisection over dry runs. Equal
 * relative steps measured better in held-out loss than steps that minimise the squared error. */
static int fit_budget(const char *base_dir, const char *ft_dir, const char *out_dir,
		      struct sp_write_opts *o, struct run *r, struct sp_err *err)
{
	uint64_t size;
	double lo = STEP_MIN, hi = STEP_MAX;
	if (dry_size(base_dir, ft_dir, out_dir, *o, r, 1, 1, &size, err))
		return -1;
	if (size > o->size) {
		sp_err_set(err, "--size %llu is smaller than the %llu bytes the lossless parts alone "
				"take (1-D and small tensors, headers, other files)",
			   (unsigned long long)o->size, (unsigned long long)size);
		return -1;
	}
	if (dry_size(base_dir, ft_dir, out_dir, *o, r, hi, 0, &size, err))
		return -1;
	if (size > o->size) {
		r->drop = 1; /* even the coarsest step does not fit: keep just the base */
		return 0;
	}
	for (int i = 0; i < STEP_ROUNDS; i++) {
		double mid = sqrt(lo * hi);
		if (dry_size(base_dir, ft_dir, out_dir, *o, r, mid, 0, &size, err))
			return -1;
		*(size > o->size ? &lo : &hi) = mid;
	}
	o->step = hi;
	return 0;
}

static int write_delta(const char *base_dir, const char *ft_dir, const char *out_dir,
		       const struct sp_write_opts *opts, const struct sp_hub_ref *base_hub,
		       struct sp_write_stats *stats, struct sp_err *err)
{
	struct sp_write_opts o = *opts;
	struct sp_write_stats st;
	struct run r = {.notes = 1, .patch_level = opts->level ? opts->level : PATCH_LEVEL,
			.base_hub = base_hub};
	struct timespec t0, t1;
	err->msg[0] = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (check_opts(&o, err) || (o.size && fit_budget(base_dir, ft_dir, out_dir, &o, &r, err)))
		return -1;
	int rc = write_once(base_dir, ft_dir, NULL, out_dir, &o, &r, &st, err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	st.seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (rc == 0 && stats)
		*stats = st;
	else if (rc == 0)
		cJSON_Delete(st.report);
	return rc;
}

static int write_adapter(const char *adapter_dir, const char *base_dir, const char *out_dir,
			 const struct sp_write_opts *opts, const struct sp_hub_ref *base_hub,
			 struct sp_write_stats *stats, struct sp_err *err)
{
	struct sp_write_opts o = *opts;
	struct sp_write_stats st;
	err->msg[0] = 0;
	if (o.mode != SP_MODE_LOSSLESS || o.size) {
		sp_err_set(err, "%s: an adapter is packaged as it is: no lossy mode or size budget",
			   adapter_dir);
		return -1;
	}
	if (check_opts(&o, err))
		return -1;
	struct run r = {.notes = 1, .patch_level = opts->level ? opts->level : PATCH_LEVEL,
			.base_hub = base_hub};
	int rc = write_once(base_dir, base_dir, adapter_dir, out_dir, &o, &r, &st, err);
	if (rc == 0 && stats)
		*stats = st;
	return rc;
}

/* ---- the entry points: any model folder may be named by a hub id ---- */

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
