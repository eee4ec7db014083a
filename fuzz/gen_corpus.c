/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sparse-fuzz-corpus FUZZ_DIR: writes the fuzz targets' seeds. A tiny model pair (every codec's
 * case: perturbed floats, a dtype change, an unchanged tensor, a new one, an edited text file,
 * new text files, large and small)
 * goes into FUZZ_DIR/model/base and a temporary fine-tune; its lossless and quant deltas into
 * FUZZ_DIR/model/{lossless,quant}; and from them FUZZ_DIR/corpus/<target>/ for each target, in
 * the input layout that target's comment gives.
 */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "chunk.h"
#include "codec_patch.h"
#include "delta.h"
#include "dtype.h"
#include "sparse/util.h"
#include "source.h"

#define MAX_SEEDS 6 /* per codec and delta: enough variety, a small corpus */

static uint64_t rng = 0xf00d;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static float gauss(void)
{
	double u = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
	double v = ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
	return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || sp_pwrite_full(fd, p, n, 0) || close(fd))
		die(path);
}

/* ---- the model pair ---- */

struct tensor {
	const char *name;
	enum sp_dtype dt;
	uint64_t rows, cols; /* cols 0: 1-D */
	uint8_t *data;
};

static size_t tensor_size(const struct tensor *t)
{
	return (size_t)(t->rows * (t->cols ? t->cols : 1)) * sp_dtype_size(t->dt);
}

static void write_st(const char *path, const struct tensor *t, int n)
{
	cJSON *h = cJSON_CreateObject();
	uint64_t off = 0;
	for (int i = 0; i < n; i++) {
		cJSON *js = cJSON_AddObjectToObject(h, t[i].name), *shape, *offs;
		cJSON_AddStringToObject(js, "dtype", sp_dtype_name(t[i].dt));
		shape = cJSON_AddArrayToObject(js, "shape");
		cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].rows));
		if (t[i].cols)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].cols));
		offs = cJSON_AddArrayToObject(js, "data_offsets");
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
		off += tensor_size(&t[i]);
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
	}
	char *json = cJSON_PrintUnformatted(h);
	uint64_t hlen = (strlen(json) + 7) / 8 * 8;
	uint8_t *buf = calloc(1, 8 + hlen + off);
	memcpy(buf, &hlen, 8);
	memset(buf + 8, ' ', hlen);
	memcpy(buf + 8, json, strlen(json));
	for (int i = 0, at = 0; i < n; at += (int)tensor_size(&t[i]), i++)
		memcpy(buf + 8 + hlen + at, t[i].data, tensor_size(&t[i]));
	write_file(path, buf, 8 + hlen + off);
	free(buf);
	free(json);
	cJSON_Delete(h);
}

/* Random values of scale s; with from, from's values (as f32) plus s-sized noise. */
static void fill(struct tensor *t, float s, const struct tensor *from)
{
	size_t n = tensor_size(t) / sp_dtype_size(t->dt);
	float *f = malloc(n * sizeof(float));
	t->data = malloc(tensor_size(t));
	if (from)
		sp_dtype_to_f32(from->dt, from->data, f, n);
	for (size_t i = 0; i < n; i++)
		f[i] = (from ? f[i] : 0) + s * gauss();
	sp_dtype_from_f32(t->dt, f, t->data, n);
	free(f);
}

static char *text(int words, int edit)
{
	static const char *const w[] = {"\"token\"", "\"merge\"", "\"vocab\"", "\"added\"", "12",
					"345", "\"normalizer\"", "\"pre_tokenizer\"", ":", ","};
	char *s = calloc((size_t)words, 16);
	for (int i = 0; i < words; i++) {
		strcat(s, w[rnd() % 10]);
		strcat(s, edit && i % 97 == 13 ? "\n\"edited\" " : i % 8 == 7 ? "\n" : " ");
	}
	return s;
}

static void model_pair(const char *base_dir, const char *ft_dir)
{
	struct tensor b[] = {{"emb", SP_DT_BF16, 64, 64, 0}, {"w1", SP_DT_F32, 48, 32, 0},
			     {"w2", SP_DT_F16, 32, 32, 0},   {"conv", SP_DT_F32, 32, 32, 0},
			     {"same", SP_DT_I32, 512, 0, 0}, {"bias", SP_DT_F32, 64, 0, 0}};
	struct tensor f[] = {{"emb", SP_DT_BF16, 64, 64, 0}, {"w1", SP_DT_F32, 48, 32, 0},
			     {"w2", SP_DT_F16, 32, 32, 0},   {"conv", SP_DT_BF16, 32, 32, 0},
			     {"same", SP_DT_I32, 512, 0, 0}, {"bias", SP_DT_F32, 64, 0, 0},
			     {"new", SP_DT_F32, 24, 24, 0}};
	for (int i = 0; i < 6; i++) {
		if (b[i].dt == SP_DT_I32) {
			fill(&b[i], 1000, NULL);
			f[i].data = malloc(tensor_size(&b[i]));
			memcpy(f[i].data, b[i].data, tensor_size(&b[i]));
		} else {
			fill(&b[i], 0.02f, NULL);
			fill(&f[i], 2e-4f, &b[i]);
		}
	}
	fill(&f[6], 0.02f, NULL);
	char path[4096];
	if (sp_mkdir_p(base_dir) || sp_mkdir_p(ft_dir))
		die("mkdir");
	snprintf(path, sizeof(path), "%s/model.safetensors", base_dir);
	write_st(path, b, 6);
	snprintf(path, sizeof(path), "%s/model.safetensors", ft_dir);
	write_st(path, f, 7);
	uint64_t saved = rng;
	for (int edit = 0; edit < 2; edit++) {
		rng = saved;
		char *t = text(900, edit);
		snprintf(path, sizeof(path), "%s/tokenizer.json", edit ? ft_dir : base_dir);
		write_file(path, t, strlen(t));
		free(t);
		snprintf(path, sizeof(path), "%s/config.json", edit ? ft_dir : base_dir);
		write_file(path, "{\"model_type\": \"fuzz\"}\n", 23);
	}
	/* New files of the base's words: a large one in HISTORY chunks, two small in a pack. */
	for (int i = 0; i < 3; i++) {
		rng = saved + (uint64_t)i;
		char *t = text(i ? 300 : 9000, 1);
		snprintf(path, sizeof(path), "%s/notes%d.txt", ft_dir, i);
		write_file(path, t, strlen(t));
		free(t);
	}
	for (int i = 0; i < 6; i++)
		free(b[i].data);
	for (int i = 0; i < 7; i++)
		free(f[i].data);
}

/* ---- the seeds ---- */

static char corpus[2048];

static void seed(const char *target, const char *name, const void *a, size_t alen, const void *b,
		 size_t blen)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", corpus, target);
	if (sp_mkdir_p(path))
		die(path);
	snprintf(path, sizeof(path), "%s/%s/%s", corpus, target, name);
	uint8_t *buf = malloc(alen + blen + 1);
	memcpy(buf, a, alen);
	if (blen)
		memcpy(buf + alen, b, blen);
	write_file(path, buf, alen + blen);
	free(buf);
}

static uint8_t *slurp(const char *path, size_t *n)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st))
		die(path);
	uint8_t *p = malloc((size_t)st.st_size + 1);
	if (sp_pread_full(fd, p, (size_t)st.st_size, 0))
		die(path);
	close(fd);
	*n = (size_t)st.st_size;
	return p;
}

/* The delta image as it is (fix 0) and with its manifest in plain JSON (fix 1). */
static void delta_seeds(const struct sp_delta *d, const char *tag)
{
	size_t n;
	uint8_t *img = slurp(d->path, &n), hdr[9] = {0};
	size_t raw = (size_t)d->sb.manifest_raw_len, moff = (size_t)d->sb.manifest_off;
	uint8_t *fixed = malloc(moff + raw);
	memcpy(fixed, img, moff);
	if (ZSTD_decompress(fixed + moff, raw, img + moff, (size_t)d->sb.manifest_len) != raw)
		die("manifest");
	char name[64];
	for (int fix = 0; fix < 2; fix++) {
		const uint8_t *p = fix ? fixed : img;
		size_t len = fix ? moff + raw : n;
		hdr[0] = (uint8_t)fix;
		for (int i = 1; i < 9; i++)
			hdr[i] = (uint8_t)rnd();
		snprintf(name, sizeof(name), "%s-%s", tag, fix ? "fixed" : "intact");
		seed("superblock", name, hdr, 1, p, len);
		seed("delta", name, hdr, 9, p, len);
	}
	snprintf(name, sizeof(name), "%s.json", tag);
	seed("manifest", name, fixed + moff, raw, NULL, 0);
	free(img);
	free(fixed);
}

struct inputs {
	uint8_t *data, *base, *aux;
	size_t base_len, aux_len;
};

static void read_inputs(const struct sp_delta *d, const struct sp_chunk *c, struct inputs *in)
{
	memset(in, 0, sizeof(*in));
	in->data = malloc(c->data_len + 1);
	if (sp_source_pread(d->src, in->data, c->data_len, c->data_off))
		die("data");
	uint64_t blen = sp_chunk_base_len(c);
	if (c->codec == SP_CODEC_PATCH && sp_chunk_patch_window(c, in->data, &blen))
		die("window");
	in->base_len = (size_t)blen;
	in->base = malloc(blen + 1);
	if (blen && sp_pread_full(d->base[c->base_file].fd, in->base, blen, c->base_off))
		die("base");
	long ord = c->codec == SP_CODEC_LOSSY ? sp_lossy_aux(in->data, c->data_len) : -1;
	if (ord >= 0) {
		uint64_t k = d->sb.chunk_count - d->m.aux_chunks + (uint64_t)ord;
		in->aux_len = d->chunks[k].out_len;
		in->aux = malloc(in->aux_len);
		if (sp_delta_decode_chunk((struct sp_delta *)d, k, in->aux))
			die("aux");
	}
}

static uint8_t float_index(enum sp_dtype dt)
{
	return dt == SP_DT_F16 ? 0 : dt == SP_DT_BF16 ? 1 : dt == SP_DT_F32 ? 2 : 3;
}

static void codec_seeds(const struct sp_chunk *c, const struct inputs *in, const char *name)
{
	uint8_t h[16];
	size_t n = c->out_len / sp_dtype_size(c->dtype);
	uint8_t *body = malloc(sizeof(*c) + c->data_len + in->base_len + in->aux_len + 1);
	memcpy(body, c, sizeof(*c));
	memcpy(body + sizeof(*c), in->data, c->data_len);
	memcpy(body + sizeof(*c) + c->data_len, in->base, in->base_len);
	seed("chunk", name, body, sizeof(*c) + c->data_len + in->base_len, NULL, 0);
	if (c->codec == SP_CODEC_DELTA && c->dtype == c->base_dtype) {
		h[0] = c->dtype, h[1] = (uint8_t)n, h[2] = (uint8_t)(n >> 8), h[3] = 0;
		memcpy(body, h, 4);
		memcpy(body + 4, in->base, in->base_len);
		seed("lossless", name, body, 4 + in->base_len, in->data, c->data_len);
	} else if (c->codec == SP_CODEC_LOSSY) {
		uint32_t al = (uint32_t)in->aux_len;
		h[0] = float_index(c->dtype), h[1] = float_index(c->base_dtype);
		h[2] = (uint8_t)n, h[3] = (uint8_t)(n >> 8);
		memcpy(h + 4, &al, 4);
		memcpy(body, h, 8);
		memcpy(body + 8, in->base, in->base_len);
		memcpy(body + 8 + in->base_len, in->aux, in->aux_len);
		seed("lossy", name, body, 8 + in->base_len + in->aux_len, in->data, c->data_len);
	} else if (c->codec == SP_CODEC_PATCH) {
		h[0] = (uint8_t)in->base_len, h[1] = (uint8_t)(in->base_len >> 8);
		h[2] = (uint8_t)c->out_len, h[3] = (uint8_t)(c->out_len >> 8), h[4] = 0;
		memcpy(body, h, 5);
		memcpy(body + 5, in->base, in->base_len);
		seed("patch", name, body, 5 + in->base_len, in->data, c->data_len);
	}
	free(body);
}

static void chunk_seeds(struct sp_delta *d, const char *tag)
{
	int per_codec[SP_CODEC_COUNT] = {0};
	for (uint64_t k = 0; k < d->sb.chunk_count; k++) {
		const struct sp_chunk *c = &d->chunks[k];
		if (per_codec[c->codec]++ >= MAX_SEEDS)
			continue;
		struct inputs in;
		char name[64];
		read_inputs(d, c, &in);
		snprintf(name, sizeof(name), "%s-%llu", tag, (unsigned long long)k);
		codec_seeds(c, &in, name);
		free(in.data);
		free(in.base);
		free(in.aux);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sparse-fuzz-corpus FUZZ_DIR\n");
		return 2;
	}
	char base[2048], ft[] = "/tmp/sparse-fuzz-ft-XXXXXX", out[2048], path[2048 + 32];
	struct sp_err err;
	snprintf(base, sizeof(base), "%s/model/base", argv[1]);
	snprintf(corpus, sizeof(corpus), "%s/corpus", argv[1]);
	if (!mkdtemp(ft))
		die("mkdtemp");
	model_pair(base, ft);
	static const struct {
		const char *tag;
		struct sp_write_opts o;
	} deltas[] = {
		{"lossless", {.chunk_size = 4096, .threads = 1, .mode = SP_MODE_LOSSLESS}},
		{"quant", {.chunk_size = 4096, .threads = 1, .mode = SP_MODE_QUANT, .rank = 4, .bits = 4}},
	};
	for (size_t i = 0; i < 2; i++) {
		snprintf(out, sizeof(out), "%s/model/%s", argv[1], deltas[i].tag);
		struct sp_write_stats stats;
		if (sp_write_delta(base, ft, out, &deltas[i].o, &stats, &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		cJSON_Delete(stats.report);
		struct sp_delta *d = sp_delta_open(out, base, 0, &err);
		if (!d) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		delta_seeds(d, deltas[i].tag);
		chunk_seeds(d, deltas[i].tag);
		sp_delta_close(d);
	}
	snprintf(path, sizeof(path), "%s/model.safetensors", base);
	size_t n;
	uint8_t *st = slurp(path, &n);
	seed("safetensors", "base", st, n, NULL, 0);
	free(st);
	snprintf(path, sizeof(path), "%s/model.safetensors", ft);
	st = slurp(path, &n);
	seed("safetensors", "ft", st, n, NULL, 0);
	free(st);
	snprintf(path, sizeof(path), "rm -rf '%s'", ft);
	return system(path) == 0 ? 0 : 1;
}
