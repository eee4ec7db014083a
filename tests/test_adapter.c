/* SPDX-License-Identifier: Apache-2.0 */
/* PEFT LoRA adapters: the gpt2-small adapter merged through sp_lora matches the merged model
 * PEFT made, config options change the factors as PEFT's semantics say, and broken or
 * unsupported adapters are refused with an error naming the adapter. Usage: test_adapter FIXTURES
 * (the gpt2-small folder); exits 77 when it is absent. */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adapter.h"
#include "dtype.h"
#include "testutil.h"

static const char *fixtures;
static struct sp_model base_bf16;

static char *path_of(const char *a, const char *b)
{
	char *p;
	if (asprintf(&p, "%s/%s", a, b) < 0)
		exit(1);
	return p;
}

static const uint8_t *tensor_data(struct sp_model *m, const struct sp_tensor_ref *r)
{
	struct sp_err err;
	if (sp_model_map(m, r->file, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
	return m->files[r->file].map + r->t->off;
}

/* (a·b)[i][j] in double. */
static double ab(const struct sp_lora_target *t, uint64_t i, uint64_t j)
{
	double s = 0;
	for (uint32_t k = 0; k < t->rank; k++)
		s += (double)t->a[i * t->rank + k] * t->b[k * t->cols + j];
	return s;
}

static const struct sp_lora_target *target(const struct sp_lora *l, const char *base_name)
{
	for (size_t i = 0; i < l->ntargets; i++)
		if (!strcmp(l->targets[i].base->name, base_name))
			return &l->targets[i];
	return NULL;
}

/* A bf16 bit pattern as an integer that counts ulps across zero. */
static int bf16_ordered(uint16_t h)
{
	return h & 0x8000 ? -(int)(h & 0x7fff) : (int)h;
}

/* bf16(f32(base) + a·b), as PEFT merged it, against the merged model: counts exact elements,
 * returns the largest difference in ulps. */
static int compare_target(const struct sp_lora_target *t, const uint8_t *base,
			  const uint8_t *merged, uint64_t *exact)
{
	int worst = 0;
	for (uint64_t i = 0; i < t->rows; i++) {
		for (uint64_t j = 0; j < t->cols; j++) {
			uint64_t e = i * t->cols + j;
			uint16_t hb, hm, h;
			float w;
			memcpy(&hb, base + 2 * e, 2);
			memcpy(&hm, merged + 2 * e, 2);
			sp_dtype_convert(SP_DT_BF16, &hb, SP_DT_F32, &w, 1);
			w += (float)ab(t, i, j);
			sp_dtype_convert(SP_DT_F32, &w, SP_DT_BF16, &h, 1);
			int d = abs(bf16_ordered(h) - bf16_ordered(hm));
			*exact += d == 0;
			worst = d > worst ? d : worst;
		}
	}
	return worst;
}

static int load(const char *dir, const struct sp_model *base, struct sp_lora *lora)
{
	struct sp_err err = {{0}};
	int rc = sp_lora_load(dir, base, lora, &err);
	if (rc)
		fprintf(stderr, "%s\n", err.msg);
	return rc;
}

/* The fixture adapter reproduces ft_lora_merged; untargeted tensors are the base's. */
static void fixture_merge(void)
{
	char *adir = path_of(fixtures, "ft_lora_adapter"), *mdir = path_of(fixtures, "ft_lora_merged");
	struct sp_model merged;
	struct sp_lora lora;
	struct sp_err err;
	CHECK(sp_model_open(mdir, SP_MODEL_FOLLOW_LINKS, &merged, &err) == 0);
	CHECK(load(adir, &base_bf16, &lora) == 0);
	CHECK(lora.ntargets == 12 && lora.nfull == 0);
	uint64_t exact = 0, total = 0;
	int worst = 0;
	for (size_t i = 0; i < lora.ntargets; i++) {
		const struct sp_lora_target *t = &lora.targets[i];
		const struct sp_tensor_ref *m = sp_model_find(&merged, t->base->name);
		CHECK(t->rank == 8 && m && m->t->nelem == t->rows * t->cols);
		CHECK(t->base->t->shape[0] == t->rows && t->base->t->shape[1] == t->cols);
		int w = compare_target(t, tensor_data(&base_bf16, t->base), tensor_data(&merged, m),
				       &exact);
		worst = w > worst ? w : worst;
		total += t->rows * t->cols;
	}
	printf("fixture: %zu targets, %llu of %llu elements bit-exact (%.4f%%), worst %d ulp\n",
	       lora.ntargets, (unsigned long long)exact, (unsigned long long)total,
	       100.0 * (double)exact / (double)total, worst);
	CHECK((double)exact >= 0.999 * (double)total && worst <= 1);
	for (const struct sp_tensor_ref *r = base_bf16.refs; r->name; r++) {
		const struct sp_tensor_ref *m = sp_model_find(&merged, r->name);
		if (!target(&lora, r->name))
			CHECK(m && m->t->size == r->t->size &&
			      !memcmp(tensor_data(&base_bf16, r), tensor_data(&merged, m), r->t->size));
	}
	sp_lora_free(&lora);
	sp_model_close(&merged);
	free(adir);
	free(mdir);
}

/* Writes dir/adapter_config.json: the JSON of file from (NULL: an empty object) with the keys
 * of edits put in. */
static void write_config(const char *dir, const char *from, const char *edits)
{
	size_t len;
	uint8_t *text = from ? test_slurp(from, &len) : NULL;
	cJSON *root = text ? cJSON_ParseWithLength((char *)text, len) : cJSON_CreateObject();
	cJSON *e = cJSON_Parse(edits);
	if (!root || !e) {
		fprintf(stderr, "bad test JSON: %s\n", edits);
		exit(1);
	}
	while (e->child) {
		cJSON *it = cJSON_DetachItemViaPointer(e, e->child);
		cJSON_DeleteItemFromObjectCaseSensitive(root, it->string);
		cJSON_AddItemToObject(root, it->string, it);
	}
	char *out = cJSON_Print(root), *path = path_of(dir, "adapter_config.json");
	FILE *f = fopen(path, "w");
	CHECK(f && fputs(out, f) >= 0 && fclose(f) == 0);
	free(path);
	free(out);
	free(text);
	cJSON_Delete(e);
	cJSON_Delete(root);
}

static char *new_dir(const char *name)
{
	char *dir = path_of(test_tmpdir(), name);
	CHECK(mkdir(dir, 0755) == 0);
	return dir;
}

/* The fixture adapter's weights with its config edited. */
static char *fixture_variant(const char *name, const char *edits)
{
	char *dir = new_dir(name), *cfg = path_of(fixtures, "ft_lora_adapter/adapter_config.json");
	char *w = path_of(fixtures, "ft_lora_adapter/adapter_model.safetensors");
	char *link = path_of(dir, "adapter_model.safetensors");
	CHECK(symlink(w, link) == 0);
	write_config(dir, cfg, edits);
	free(cfg);
	free(w);
	free(link);
	return dir;
}

/* Loading dir must fail with a message naming the adapter and containing what. */
static void expect_error(const char *dir, const struct sp_model *base, const char *what)
{
	struct sp_lora lora;
	struct sp_err err = {{0}};
	int rc = sp_lora_load(dir, base, &lora, &err);
	CHECK(rc != 0);
	if (rc == 0) {
		sp_lora_free(&lora);
		fprintf(stderr, "%s loaded, but should fail with \"%s\"\n", dir, what);
		return;
	}
	printf("refused as expected: %s\n", err.msg);
	CHECK(strstr(err.msg, dir) != NULL);
	CHECK(strstr(err.msg, what) != NULL);
}

/* Loads a variant and the plain adapter; counts the targets whose a is factor times the plain
 * one (within rel), checking every b is unchanged. */
static size_t count_scaled(const char *dir, double factor, double rel)
{
	char *plain_dir = path_of(fixtures, "ft_lora_adapter");
	struct sp_lora plain, v;
	size_t n = 0;
	CHECK(load(plain_dir, &base_bf16, &plain) == 0);
	CHECK(load(dir, &base_bf16, &v) == 0);
	for (size_t i = 0; i < v.ntargets && v.ntargets == plain.ntargets; i++) {
		const struct sp_lora_target *p = &plain.targets[i], *t = &v.targets[i];
		int scaled = 1;
		CHECK(t->base == p->base);
		CHECK(!memcmp(t->b, p->b, t->rank * t->cols * sizeof(float)));
		for (uint64_t e = 0; e < t->rows * t->rank; e++)
			scaled &= fabs(t->a[e] - factor * p->a[e]) <= rel * fabs(factor * p->a[e]);
		n += scaled;
	}
	sp_lora_free(&plain);
	sp_lora_free(&v);
	free(plain_dir);
	return n;
}

static void fixture_options(void)
{
	char *d = fixture_variant("rslora", "{\"use_rslora\": true}");
	/* scale alpha / sqrt(r) = 16 / sqrt(8) instead of alpha / r = 2 */
	CHECK(count_scaled(d, 16 / sqrt(8) / 2, 1e-6) == 12);
	free(d);
	d = fixture_variant("alpha1", "{\"alpha_pattern\": {\"h.1.attn.c_attn\": 32}}");
	CHECK(count_scaled(d, 2, 0) == 1 && count_scaled(d, 1, 0) == 11);
	free(d);
	d = fixture_variant("alpha_re", "{\"alpha_pattern\": {\"h\\\\.[13]\\\\.attn\\\\.c_(attn|proj)\":"
					" 32, \"c_fc\": 4}}");
	CHECK(count_scaled(d, 2, 0) == 4 && count_scaled(d, 0.25, 0) == 4);
	free(d);
	d = fixture_variant("target_re", "{\"target_modules\": "
					 "\".*\\\\.h\\\\.\\\\d+\\\\.(?:attn\\\\.c_attn|attn\\\\.c_proj|mlp\\\\.c_fc)\"}");
	CHECK(count_scaled(d, 1, 0) == 12);
	free(d);
}

static void fixture_refusals(void)
{
	static const struct {
		const char *name, *edits, *what;
	} cases[] = {
		{"ia3", "{\"peft_type\": \"IA3\"}", "peft_type is IA3"},
		{"dora", "{\"use_dora\": true}", "DoRA"},
		{"pissa", "{\"init_lora_weights\": \"pissa_niter_4\"}", "rewrites the base"},
		{"rank1", "{\"rank_pattern\": {\"h.2.mlp.c_fc\": 4}}",
		 "module transformer.h.2.mlp.c_fc: the weights have rank 8"},
		{"fifo", "{\"fan_in_fan_out\": false}", "fan_in_fan_out false"},
		{"targets", "{\"target_modules\": [\"c_attn\", \"attn.c_proj\"]}",
		 "mlp.c_fc has LoRA weights but target_modules"},
		{"lookbehind", "{\"alpha_pattern\": {\"(?<=h)c_attn\": 8}}",
		 "alpha_pattern key \"(?<=h)c_attn\""},
		{"bias", "{\"bias\": \"some\"}", "bias must be"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *d = fixture_variant(cases[i].name, cases[i].edits);
		expect_error(d, &base_bf16, cases[i].what);
		free(d);
	}
}

/* ---- small synthetic models and adapters ---- */

struct st_tensor {
	const char *name, *dtype;
	int ndim;
	uint64_t shape[2];
	const float *v;
};

static uint64_t nelem(const struct st_tensor *t)
{
	return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

/* Writes a safetensors file, converting the f32 values to each tensor's dtype. */
static void write_st(const char *path, const struct st_tensor *ts, size_t n)
{
	cJSON *h = cJSON_CreateObject();
	uint64_t off = 0;
	for (size_t i = 0; i < n; i++) {
		cJSON *t = cJSON_AddObjectToObject(h, ts[i].name), *shape, *offs;
		uint64_t size = nelem(&ts[i]) * sp_dtype_size(sp_dtype_from_name(ts[i].dtype));
		cJSON_AddStringToObject(t, "dtype", ts[i].dtype);
		shape = cJSON_AddArrayToObject(t, "shape");
		for (int d = 0; d < ts[i].ndim; d++)
			cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)ts[i].shape[d]));
		offs = cJSON_AddArrayToObject(t, "data_offsets");
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
		cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + size)));
		off += size;
	}
	char *json = cJSON_PrintUnformatted(h);
	uint64_t hl = strlen(json);
	FILE *f = fopen(path, "wb");
	CHECK(f && fwrite(&hl, 8, 1, f) == 1 && fwrite(json, 1, hl, f) == hl);
	for (size_t i = 0; f && i < n; i++) {
		enum sp_dtype dt = sp_dtype_from_name(ts[i].dtype);
		uint64_t k = nelem(&ts[i]);
		int32_t *buf = calloc(k, 8);
		if (dt == SP_DT_I32)
			for (uint64_t e = 0; e < k; e++)
				buf[e] = (int32_t)ts[i].v[e];
		else
			sp_dtype_convert(SP_DT_F32, ts[i].v, dt, buf, k);
		CHECK(fwrite(buf, sp_dtype_size(dt), k, f) == k);
		free(buf);
	}
	CHECK(f && fclose(f) == 0);
	free(json);
	cJSON_Delete(h);
}

#define SYN_CONFIG "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": " \
		   "[\"lin\", \"emb\"], \"rank_pattern\": {\"lin|emb\": 2}, \"bias\": \"all\", " \
		   "\"fan_in_fan_out\": false}"

/* A folder holding one safetensors file (name) and, for an adapter, a config. */
static char *syn_dir(const char *dir_name, const char *file, const struct st_tensor *ts, size_t n,
		     const char *config_edits)
{
	char *dir = new_dir(dir_name), *p = path_of(dir, file);
	write_st(p, ts, n);
	if (config_edits) {
		write_config(dir, NULL, SYN_CONFIG);
		char *cfg = path_of(dir, "adapter_config.json");
		write_config(dir, cfg, config_edits);
		free(cfg);
	}
	free(p);
	return dir;
}

static void open_model(const char *dir, struct sp_model *m)
{
	struct sp_err err;
	if (sp_model_open(dir, SP_MODEL_FOLLOW_LINKS, m, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		exit(1);
	}
}

/* lin: A [2, 5] in BF16 under the ".default" spelling, B [3, 2] in F16, r 2 by rank_pattern
 * (scale 8 / 2 = 4); lin.bias saved whole (bias "all") and head saved whole (modules_to_save),
 * against bases laid out [out, in] and [in, out]; emb: an embedding [4, 3], whose delta is
 * (B·A)ᵀ whatever fan_in_fan_out says. Values are exact in every dtype. */
static void synthetic(void)
{
	float A[10], B[6], bias[3] = {1, 2, 3}, head[12], w[15] = {0};
	for (int e = 0; e < 10; e++)
		A[e] = (float)(e + 1) / 8;
	for (int e = 0; e < 6; e++)
		B[e] = (float)(e - 2) / 4;
	for (int e = 0; e < 12; e++)
		head[e] = (float)e;
	struct st_tensor ad[] = {
		{"base_model.model.lin.lora_A.default.weight", "BF16", 2, {2, 5}, A},
		{"base_model.model.lin.lora_B.weight", "F16", 2, {3, 2}, B},
		{"base_model.model.lin.bias", "F32", 1, {3, 0}, bias},
		{"base_model.model.head.modules_to_save.default.weight", "F32", 2, {4, 3}, head},
		{"base_model.model.emb.lora_embedding_A", "F32", 2, {2, 4}, A},
		{"base_model.model.emb.lora_embedding_B", "F32", 2, {3, 2}, B},
	};
	struct st_tensor oi[] = {{"lin.weight", "F32", 2, {3, 5}, w},
				 {"lin.bias", "BF16", 1, {3, 0}, w},
				 {"head.weight", "F32", 2, {4, 3}, w},
				 {"emb.weight", "F32", 2, {4, 3}, w}};
	struct st_tensor io[] = {{"lin.weight", "F32", 2, {5, 3}, w},
				 {"lin.bias", "BF16", 1, {3, 0}, w},
				 {"head.weight", "F32", 2, {4, 3}, w},
				 {"emb.weight", "F32", 2, {4, 3}, w}};
	char *base_oi = syn_dir("base_oi", "model.safetensors", oi, 4, NULL);
	char *base_io = syn_dir("base_io", "model.safetensors", io, 4, NULL);
	char *lin = syn_dir("lin", "adapter_model.safetensors", ad, 6, "{}");
	char *conv1d = syn_dir("conv1d", "adapter_model.safetensors", ad, 6,
			       "{\"fan_in_fan_out\": true}");
	struct sp_model moi, mio;
	struct sp_lora l, c;
	open_model(base_oi, &moi);
	open_model(base_io, &mio);
	CHECK(load(lin, &moi, &l) == 0 && load(conv1d, &mio, &c) == 0);
	CHECK(l.ntargets == 2 && c.ntargets == 2 && l.nfull == 2 && c.nfull == 2);
	const struct sp_lora_target *tl = target(&l, "lin.weight"), *tc = target(&c, "lin.weight");
	const struct sp_lora_target *te = target(&l, "emb.weight");
	CHECK(tl && tc && te);
	if (tl && tc && te) {
		CHECK(tl->rank == 2 && tl->rows == 3 && tl->cols == 5 && tc->rows == 5 && tc->cols == 3);
		CHECK(te->rank == 2 && te->rows == 4 && te->cols == 3);
		for (int o = 0; o < 3; o++) {
			for (int i = 0; i < 5; i++) {
				double want = 4 * (B[o * 2] * A[i] + B[o * 2 + 1] * A[5 + i]);
				CHECK(ab(tl, (uint64_t)o, (uint64_t)i) == want);
				CHECK(ab(tc, (uint64_t)i, (uint64_t)o) == want);
			}
			for (int n = 0; n < 4; n++)
				CHECK(ab(te, (uint64_t)n, (uint64_t)o) ==
				      4 * (B[o * 2] * A[n] + B[o * 2 + 1] * A[4 + n]));
		}
	}
	for (size_t i = 0; i < l.nfull; i++) {
		const struct sp_lora_full *f = &l.full[i];
		int is_head = !strcmp(f->base->name, "head.weight");
		CHECK(is_head || !strcmp(f->base->name, "lin.bias"));
		CHECK(!memcmp(f->data, is_head ? head : bias, f->t->size));
	}
	sp_lora_free(&l);
	sp_lora_free(&c);
	expect_error(conv1d, &moi, "fan_in_fan_out true");

	char *only_a = syn_dir("only_a", "adapter_model.safetensors", ad, 1, "{}");
	expect_error(only_a, &moi, "lora_A without lora_B");
	ad[1].dtype = "I32";
	char *ints = syn_dir("ints", "adapter_model.safetensors", ad, 2, "{}");
	expect_error(ints, &moi, "I32");
	sp_model_close(&moi);
	sp_model_close(&mio);
	free(base_oi), free(base_io), free(lin), free(conv1d), free(only_a), free(ints);
}

/* Adapters whose modules do not fit the real base. */
static void synthetic_vs_fixture(void)
{
	float *zeros = calloc(576 * 8, sizeof(float));
	struct st_tensor missing[] = {
		{"base_model.model.transformer.h.9.attn.c_attn.lora_A.weight", "F32", 2, {8, 192}, zeros},
		{"base_model.model.transformer.h.9.attn.c_attn.lora_B.weight", "F32", 2, {576, 8}, zeros},
	};
	struct st_tensor narrow[] = {
		{"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", "F32", 2, {8, 100}, zeros},
		{"base_model.model.transformer.h.0.attn.c_attn.lora_B.weight", "F32", 2, {576, 8}, zeros},
	};
	const char *cfg = "{\"r\": 8, \"target_modules\": [\"c_attn\"], \"rank_pattern\": {}, "
			  "\"fan_in_fan_out\": true}";
	char *d = syn_dir("missing", "adapter_model.safetensors", missing, 2, cfg);
	expect_error(d, &base_bf16, "LoRA module transformer.h.9.attn.c_attn is not in the base");
	free(d);
	d = syn_dir("narrow", "adapter_model.safetensors", narrow, 2, cfg);
	expect_error(d, &base_bf16, "transformer.h.0.attn.c_attn.weight is [192, 576]");
	free(d);
	free(zeros);
}

int main(int argc, char **argv)
{
	struct stat st;
	char *base_dir = argc > 1 ? path_of(argv[1], "base_bf16") : NULL;
	if (!base_dir || stat(base_dir, &st) || !S_ISDIR(st.st_mode)) {
		printf("SKIP: fixtures %s not found\n", argc > 1 ? argv[1] : "(no argument)");
		free(base_dir);
		return 77;
	}
	fixtures = argv[1];
	open_model(base_dir, &base_bf16);
	fixture_merge();
	fixture_options();
	fixture_refusals();
	synthetic();
	synthetic_vs_fixture();
	sp_model_close(&base_bf16);
	free(base_dir);
	return test_done();
}
