/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sparse-genmodel: writes a synthetic base and fine-tune in Hugging Face layout, for the demo
 * and the tests, so that neither needs a real checkpoint.
 *
 *   sparse-genmodel demo BASE_DIR FT_DIR [LAYERS [WIDTH [FROZEN]]]
 *                                          a small GPT-2-like pair in BF16 (4 layers, 7 MB; each
 *                                          layer adds 1.6 MB) whose delta looks like a real light
 *                                          fine-tune: most words a few units in the last place
 *                                          from the base, some identical. WIDTH (default 256)
 *                                          is n_embd: a layer holds 24 WIDTH^2 bytes, so 60
 *                                          layers of width 1280 make a 2.4 GB pair member.
 *                                          The first FROZEN layers (default 0) are left as in
 *                                          the base, as when the lower layers were frozen
 *   sparse-genmodel edge BASE_DIR FT_DIR   every dtype and shape case the format handles
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dtype.h"

/* ---- a deterministic random source (splitmix64) ---- */

static uint64_t rng_state = 0x5eed;

static uint64_t rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uniform(void)
{
	return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void)
{
	return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
}

/* ---- tensors and files ---- */

struct tensor {
	char name[96];
	const char *dtype;
	int ndim;
	uint64_t shape[4];
	uint8_t *data;
	size_t size;
};

struct stfile {
	struct tensor t[64 * 13];
	int n;
};

static struct tensor *add(struct stfile *f, const char *name, const char *dtype, size_t esize,
			  int ndim, uint64_t d0, uint64_t d1)
{
	struct tensor *t = &f->t[f->n++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->dtype = dtype;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = d1;
	size_t n = ndim == 0 ? 1 : ndim == 1 ? d0 : d0 * d1;
	t->size = n * esize;
	t->data = calloc(t->size + 1, 1);
	return t;
}

static void die(const char *what)
{
	fprintf(stderr, "sparse-genmodel: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Writes tensors [from, to) of f as a safetensors file; gap > 0 leaves that many stray bytes
 * between tensors (not valid for the safetensors library, but a file the format must keep). */
static void write_st(const char *path, struct stfile *f, int from, int to, size_t gap)
{
	cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
	cJSON_AddStringToObject(meta, "format", "pt");
	size_t off = 0;
	for (int i = from; i < to; i++) {
		struct tensor *t = &f->t[i];
		cJSON *js = cJSON_AddObjectToObject(h, t->name), *shape = cJSON_AddArrayToObject(js, "shape");
		cJSON *offs = cJSON_AddArrayToObject(js, "data_offsets");
		cJSON_AddStringToObject(js, "dtype", t->dtype);
		for (int k = 0; k < t->ndim; k++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[k]));
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + t->size)));
		off += t->size + gap;
	}
	char *json = cJSON_PrintUnformatted(h);
	uint64_t hlen = (strlen(json) + 7) / 8 * 8; /* padded with spaces, as safetensors does */
	FILE *out = fopen(path, "wb");
	if (!out)
		die(path);
	fwrite(&hlen, 8, 1, out);
	fprintf(out, "%-*s", (int)hlen, json);
	for (int i = from; i < to; i++) {
		fwrite(f->t[i].data, 1, f->t[i].size, out);
		for (size_t g = 0; g < gap; g++)
			fputc((int)(rnd() & 0xff), out);
	}
	if (fclose(out))
		die(path);
	free(json);
	cJSON_Delete(h);
}

static void write_bytes(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *out = fopen(path, "wb");
	if (!out || fwrite(data, 1, len, out) != len || fclose(out))
		die(path);
}

static void write_text(const char *dir, const char *name, const char *text)
{
	write_bytes(dir, name, text, strlen(text));
}

static void mkdir_p(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s", dir);
	for (char *p = path + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(path, 0755);
			*p = '/';
		}
	if (mkdir(path, 0755) && errno != EEXIST)
		die(dir);
}

/* ---- float helpers ---- */

static void fill_float(struct tensor *t, enum sp_dtype dt, double scale, double mean)
{
	size_t n = t->size / sp_dtype_size(dt);
	for (size_t i = 0; i < n; i++) {
		double v = mean + scale * gauss();
		sp_dtype_convert(SP_DT_F64, &v, dt, t->data + i * sp_dtype_size(dt), 1);
	}
}

/* A fine-tune's update: each value moves by noise of a fixed absolute size, so that small
 * weights change by many units in the last place and large ones by few or none. Where the
 * shapes differ, only the leading elements both have. */
static void perturb_float(const struct tensor *base, struct tensor *ft, enum sp_dtype dt, double step)
{
	size_t es = sp_dtype_size(dt), n = (ft->size < base->size ? ft->size : base->size) / es;
	for (size_t i = 0; i < n; i++) {
		double v;
		sp_dtype_convert(dt, base->data + i * es, SP_DT_F64, &v, 1);
		v += step * gauss();
		sp_dtype_convert(SP_DT_F64, &v, dt, ft->data + i * es, 1);
	}
}

static struct tensor *copy(struct stfile *f, const struct tensor *src, const char *name)
{
	struct tensor *t = &f->t[f->n++];
	*t = *src;
	if (name)
		snprintf(t->name, sizeof(t->name), "%s", name);
	t->data = malloc(src->size + 1);
	memcpy(t->data, src->data, src->size);
	return t;
}

/* ---- the demo pair ---- */

static const char *demo_config =
	"{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
	"  \"vocab_size\": 1024,\n  \"n_positions\": 256,\n  \"n_embd\": %d,\n  \"n_layer\": %d,\n"
	"  \"n_head\": 4,\n  \"bos_token_id\": 0,\n  \"eos_token_id\": 0,\n"
	"  \"torch_dtype\": \"bfloat16\"\n}\n";

static void demo_layer(struct stfile *b, int l, int e)
{
	char name[96];
	static const struct {
		const char *what;
		int rows, cols; /* in units of e; cols 0 = 1-D */
		double scale, mean;
	} parts[] = {
		{"ln_1.weight", 1, 0, 0.05, 1.0}, {"ln_1.bias", 1, 0, 0.02, 0},
		{"attn.c_attn.weight", 1, 3, 0.02, 0}, {"attn.c_attn.bias", 3, 0, 0.02, 0},
		{"attn.c_proj.weight", 1, 1, 0.014, 0}, {"attn.c_proj.bias", 1, 0, 0.02, 0},
		{"ln_2.weight", 1, 0, 0.05, 1.0}, {"ln_2.bias", 1, 0, 0.02, 0},
		{"mlp.c_fc.weight", 1, 4, 0.02, 0}, {"mlp.c_fc.bias", 4, 0, 0.02, 0},
		{"mlp.c_proj.weight", 4, 1, 0.014, 0}, {"mlp.c_proj.bias", 1, 0, 0.02, 0},
	};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		snprintf(name, sizeof(name), "transformer.h.%d.%s", l, parts[i].what);
		int nd = parts[i].cols ? 2 : 1;
		struct tensor *t = add(b, name, "BF16", 2, nd, (uint64_t)(parts[i].rows * e),
				       (uint64_t)(parts[i].cols * e));
		fill_float(t, SP_DT_BF16, parts[i].scale, parts[i].mean);
	}
}

static void write_folder(const char *dir, struct stfile *f, const char *config)
{
	char path[4096];
	mkdir_p(dir);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	write_st(path, f, 0, f->n, 0);
	write_text(dir, "config.json", config);
	write_text(dir, "generation_config.json",
		   "{\n  \"bos_token_id\": 0,\n  \"eos_token_id\": 0,\n  \"transformers_version\": \"4.57.0\"\n}\n");
	write_text(dir, "tokenizer_config.json",
		   "{\n  \"model_max_length\": 256,\n  \"tokenizer_class\": \"GPT2Tokenizer\"\n}\n");
}

static void demo(const char *base_dir, const char *ft_dir, int layers, int e, int frozen)
{
	static struct stfile b, f;
	fill_float(add(&b, "transformer.wte.weight", "BF16", 2, 2, 1024, (uint64_t)e), SP_DT_BF16, 0.02, 0);
	fill_float(add(&b, "transformer.wpe.weight", "BF16", 2, 2, 256, (uint64_t)e), SP_DT_BF16, 0.01, 0);
	for (int l = 0; l < layers; l++)
		demo_layer(&b, l, e);
	fill_float(add(&b, "transformer.ln_f.weight", "BF16", 2, 1, (uint64_t)e, 0), SP_DT_BF16, 0.05, 1.0);
	fill_float(add(&b, "transformer.ln_f.bias", "BF16", 2, 1, (uint64_t)e, 0), SP_DT_BF16, 0.02, 0);
	/* wte and wpe, then 12 tensors a layer: a frozen layer's are the base's. */
	for (int i = 0; i < b.n; i++) {
		struct tensor *t = copy(&f, &b.t[i], NULL);
		if (i < 2 || i >= 2 + 12 * frozen)
			perturb_float(&b.t[i], t, SP_DT_BF16, 4e-4);
	}
	char config[1024];
	snprintf(config, sizeof(config), demo_config, e, layers);
	write_folder(base_dir, &b, config);
	write_folder(ft_dir, &f, config);
}

/* ---- the edge cases ---- */

static const struct {
	const char *name;
	enum sp_dtype dt;
} all_dtypes[] = {
	{"F64", SP_DT_F64}, {"F32", SP_DT_F32}, {"F16", SP_DT_F16}, {"BF16", SP_DT_BF16},
	{"F8_E4M3", SP_DT_F8_E4M3}, {"F8_E5M2", SP_DT_F8_E5M2}, {"I64", SP_DT_I64},
	{"I32", SP_DT_I32}, {"I16", SP_DT_I16}, {"I8", SP_DT_I8}, {"U8", SP_DT_U8},
	{"U16", SP_DT_U16}, {"U32", SP_DT_U32}, {"U64", SP_DT_U64}, {"BOOL", SP_DT_BOOL},
};

static void fill_bytes(struct tensor *t)
{
	for (size_t i = 0; i < t->size; i++)
		t->data[i] = (uint8_t)(rnd() & 0xff);
}

/* Special values a float codec must keep bit for bit: NaNs with payloads, infinities, -0,
 * the smallest denormals. */
static void sprinkle_specials(struct tensor *t, size_t es)
{
	static const uint64_t pats[] = {0, ~0ull, 1, 0x8000000000000000ull, 0x7ff8000000000001ull,
					0x7fffffffffffffffull, 0x00000000ffffffffull};
	size_t n = t->size / es;
	for (size_t k = 0; k < sizeof(pats) / sizeof(pats[0]) && k * 7 < n; k++)
		memcpy(t->data + k * 7 * es, (const uint8_t *)&pats[k] + (8 - es) * (k % 2), es);
}

static void edge_dtypes(struct stfile *b, struct stfile *f)
{
	for (size_t i = 0; i < sizeof(all_dtypes) / sizeof(all_dtypes[0]); i++) {
		char name[64];
		enum sp_dtype dt = all_dtypes[i].dt;
		size_t es = sp_dtype_size(dt);
		snprintf(name, sizeof(name), "dtype.%s", all_dtypes[i].name);
		struct tensor *bt = add(b, name, all_dtypes[i].name, es, 2, 37, 19);
		if (sp_dtype_is_float(dt))
			fill_float(bt, dt, 0.02, 0);
		else
			fill_bytes(bt);
		if (dt == SP_DT_BOOL)
			for (size_t k = 0; k < bt->size; k++)
				bt->data[k] &= 1;
		struct tensor *ft = copy(f, bt, NULL);
		if (sp_dtype_is_float(dt))
			perturb_float(bt, ft, dt, 1e-3);
		else
			for (size_t k = 0; k < ft->size; k += 3)
				ft->data[k] ^= dt == SP_DT_BOOL ? 1 : (uint8_t)(rnd() & 0x7);
		sprinkle_specials(ft, es);
	}
}

/* A tensor whose dtype changed (each way), one whose rows grew, one whose rows shrank, one new,
 * one dropped, one unchanged, scalars, empties, a dtype the format does not know, and a tensor
 * big enough to span many chunks. */
static void edge_shapes(struct stfile *b, struct stfile *f)
{
	struct tensor *t, *g;
	fill_float(t = add(b, "conv.bf16_to_f32", "BF16", 2, 2, 64, 48), SP_DT_BF16, 0.02, 0);
	fill_float(t = add(f, "conv.bf16_to_f32", "F32", 4, 2, 64, 48), SP_DT_F32, 0.02, 0);
	fill_float(t = add(b, "conv.f32_to_f16", "F32", 4, 2, 64, 48), SP_DT_F32, 0.02, 0);
	sp_dtype_convert(SP_DT_F32, t->data, SP_DT_F16,
			 add(f, "conv.f32_to_f16", "F16", 2, 2, 64, 48)->data, 64 * 48);
	fill_float(t = add(b, "vocab.grown", "BF16", 2, 2, 100, 64), SP_DT_BF16, 0.02, 0);
	fill_float(g = add(f, "vocab.grown", "BF16", 2, 2, 116, 64), SP_DT_BF16, 0.02, 0);
	perturb_float(t, g, SP_DT_BF16, 1e-3);
	fill_float(t = add(b, "vocab.shrunk", "F16", 2, 2, 120, 64), SP_DT_F16, 0.02, 0);
	perturb_float(t, add(f, "vocab.shrunk", "F16", 2, 2, 100, 64), SP_DT_F16, 1e-3);
	fill_float(add(f, "new.weight", "BF16", 2, 2, 40, 40), SP_DT_BF16, 0.02, 0);
	fill_float(add(b, "dropped.weight", "BF16", 2, 2, 40, 40), SP_DT_BF16, 0.02, 0);
	fill_float(t = add(b, "same.weight", "F32", 4, 2, 30, 30), SP_DT_F32, 0.02, 0);
	copy(f, t, NULL);
	fill_float(t = add(b, "scalar", "F32", 4, 0, 0, 0), SP_DT_F32, 1, 0);
	perturb_float(t, copy(f, t, NULL), SP_DT_F32, 0.1);
	add(b, "empty.2d", "BF16", 2, 2, 0, 64);
	add(f, "empty.2d", "BF16", 2, 2, 0, 64);
	add(f, "empty.1d", "F32", 4, 1, 0, 0);
	fill_bytes(t = add(b, "unknown.dtype", "F8_E8M0", 1, 1, 333, 0));
	copy(f, t, NULL)->data[5] ^= 0x10;
	fill_float(t = add(b, "big.weight", "BF16", 2, 2, 300, 128), SP_DT_BF16, 0.02, 0);
	perturb_float(t, copy(f, t, NULL), SP_DT_BF16, 4e-4);
}

static void edge(const char *base_dir, const char *ft_dir)
{
	static struct stfile b, f, odd;
	char path[4096];
	edge_dtypes(&b, &f);
	edge_shapes(&b, &f);
	mkdir_p(base_dir);
	mkdir_p(ft_dir);
	snprintf(path, sizeof(path), "%s/model.safetensors", base_dir);
	write_st(path, &b, 0, b.n, 0);
	/* The fine-tune is sharded where the base is not: tensors match by name, not by file. */
	int half = f.n / 2;
	snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", ft_dir);
	write_st(path, &f, 0, half, 0);
	snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", ft_dir);
	write_st(path, &f, half, f.n, 0);
	cJSON *idx = cJSON_CreateObject(), *map = cJSON_CreateObject();
	cJSON_AddItemToObject(cJSON_AddObjectToObject(idx, "metadata"), "total_size", cJSON_CreateNumber(0));
	for (int i = 0; i < f.n; i++)
		cJSON_AddStringToObject(map, f.t[i].name, i < half ? "model-00001-of-00002.safetensors"
								   : "model-00002-of-00002.safetensors");
	cJSON_AddItemToObject(idx, "weight_map", map);
	char *js = cJSON_Print(idx);
	write_text(ft_dir, "model.safetensors.index.json", js);
	free(js);
	cJSON_Delete(idx);
	/* Stray bytes between tensors: not loadable, but a file is kept as it is. */
	fill_float(add(&odd, "a", "F32", 4, 1, 10, 0), SP_DT_F32, 1, 0);
	fill_float(add(&odd, "b", "F32", 4, 1, 10, 0), SP_DT_F32, 1, 0);
	snprintf(path, sizeof(path), "%s/gappy.safetensors", ft_dir);
	write_st(path, &odd, 0, odd.n, 5);
	write_text(ft_dir, "config.json", "{\"model_type\": \"edge\"}\n");
	write_text(ft_dir, "empty.txt", "");
	static const char broken[] = "\x10\0\0\0\0\0\0\0{not json at all";
	write_bytes(ft_dir, "broken.safetensors", broken, sizeof(broken) - 1);
	snprintf(path, sizeof(path), "%s/sub/dir", ft_dir);
	mkdir_p(path);
	write_text(ft_dir, "sub/dir/notes.txt", "a file in a sub-folder\n");
	write_text(base_dir, "config.json", "{\"model_type\": \"edge\"}\n");
}

int main(int argc, char **argv)
{
	int layers = argc >= 5 ? atoi(argv[4]) : 4, width = argc >= 6 ? atoi(argv[5]) : 256;
	int frozen = argc == 7 ? atoi(argv[6]) : 0;
	if (argc < 4 || argc > 7 || (strcmp(argv[1], "demo") && strcmp(argv[1], "edge")) ||
	    layers < 1 || layers > 60 || width < 4 || width > 4096 || width % 4 || frozen < 0 ||
	    frozen > layers) {
		fprintf(stderr, "usage: sparse-genmodel demo BASE_DIR FT_DIR [LAYERS (1-60) "
				"[WIDTH (4-4096, a multiple of 4) [FROZEN (0-LAYERS)]]]\n"
				"       sparse-genmodel edge BASE_DIR FT_DIR\n");
		return 2;
	}
	if (!strcmp(argv[1], "demo"))
		demo(argv[2], argv[3], layers, width, frozen);
	else
		edge(argv[2], argv[3]);
	return 0;
}
