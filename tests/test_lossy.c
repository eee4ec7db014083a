/* SPDX-License-Identifier: Apache-2.0 */
/* Lossy deltas: the truncated SVD, the lossy chunk codec, and the writer's svd, quant and size
 * budget modes on a generated pair, read back through the library.
 * usage: test_lossy PATH_TO_SPARSE_GENMODEL */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/stat.h>

#include "codec_lossless.h"
#include "codec_lossy.h"
#include "dtype.h"
#include "lossy.h"
#include "lowrank.h"
#include "model.h"
#include "sparse/sparse.h"
#include "testutil.h"

static uint64_t seed = 7;

static float gauss(void)
{
	double u[2];
	for (int k = 0; k < 2; k++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		u[k] = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
	}
	return (float)(sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static double rel_err(const float *x, const float *y, size_t n)
{
	double e = 0, t = 0;
	for (size_t i = 0; i < n; i++) {
		e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
		t += (double)x[i] * x[i];
	}
	return sqrt(e / t);
}

/* A rank-5 matrix comes back exactly at rank 5; a larger rank is capped by the matrix; the
 * singular values come largest first. */
static void lowrank(void)
{
	size_t m = 60, n = 40, r = 5;
	float *u = malloc(m * r * 4), *v = malloc(r * n * 4), *d = calloc(m * n, 4);
	float *a = malloc(m * n * 4), *b = malloc(n * n * 4), *s = malloc(n * 4), *p = calloc(m * n, 4);
	for (size_t i = 0; i < m * r; i++)
		u[i] = gauss();
	for (size_t i = 0; i < r * n; i++)
		v[i] = gauss();
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++)
			for (size_t k = 0; k < r; k++)
				d[i * n + j] += u[i * r + k] * v[k * n + j];
	CHECK(sp_lowrank(d, m, n, r, a, b, s) == (long)r);
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < n; j++)
			for (size_t k = 0; k < r; k++)
				p[i * n + j] += a[i * r + k] * b[k * n + j];
	CHECK(rel_err(d, p, m * n) < 1e-4);
	CHECK(s[0] >= s[1] && s[1] >= s[4] && s[4] > 0);
	CHECK(sp_lowrank(d, m, n, 1000, a, b, s) == (long)n);
	CHECK(sp_lowrank(d, m, n, 0, a, b, s) == 0);
	CHECK(sp_lowrank_energy_rank(s, n, 1.0, 0) == 0);
	free(u), free(v), free(d), free(a), free(b), free(s), free(p);
}

/* The same prep, with its factors computed or reused. */
static int same_prep(const struct sp_lossy_prep *x, const struct sp_lossy_prep *y)
{
	uint64_t an = x->t.rows * x->t.rank, bn = (uint64_t)x->t.rank * x->t.cols;
	return x->t.rank == y->t.rank && x->t.a_scale == y->t.a_scale &&
	       x->t.b_scale == y->t.b_scale && !memcmp(x->a, y->a, an * 4) &&
	       !memcmp(x->b, y->b, bn * 4) && !memcmp(x->d, y->d, x->t.rows * x->t.cols * 4);
}

/* A size budget's runs reuse each tensor's factors: what they get from the kept ones is what
 * factoring again gives, for a low-rank delta (rank kept) and a full-rank one (auto: none). */
static void kept_factors(void)
{
	size_t m = 64, n = 48;
	float *bw = malloc(m * n * 4), *fw = malloc(m * n * 4);
	struct sp_write_opts o = {.mode = SP_MODE_QUANT, .bits = 8, .rank = 16, .energy = 0.99,
				  .auto_rank = 1, .step = 1};
	struct sp_lossy_choice c = {.lossy = 1, .rank = 16, .bits = 8};
	for (int full = 0; full < 2; full++) {
		for (size_t i = 0; i < m * n; i++)
			bw[i] = gauss();
		for (size_t i = 0; i < m; i++)
			for (size_t j = 0; j < n; j++)
				fw[i * n + j] = bw[i * n + j] + (full ? 0.1f * gauss()
								      : 0.1f * (float)(i % 3) * (float)(j % 5));
		struct sp_lossy_factors keep = {0};
		struct sp_lossy_prep fresh, first, again;
		CHECK(sp_lossy_prepare((uint8_t *)fw, SP_DT_F32, (uint8_t *)bw, SP_DT_F32, m, n, c, &o,
				       NULL, &fresh) == 0);
		CHECK(sp_lossy_prepare((uint8_t *)fw, SP_DT_F32, (uint8_t *)bw, SP_DT_F32, m, n, c, &o,
				       &keep, &first) == 0);
		CHECK(keep.done && keep.rank == fresh.t.rank && (fresh.t.rank == 0) == full);
		CHECK(sp_lossy_prepare((uint8_t *)fw, SP_DT_F32, (uint8_t *)bw, SP_DT_F32, m, n, c, &o,
				       &keep, &again) == 0);
		CHECK(same_prep(&fresh, &first) && same_prep(&fresh, &again));
		sp_lossy_prep_free(&fresh);
		sp_lossy_prep_free(&first);
		sp_lossy_prep_free(&again);
		sp_lossy_factors_free(&keep);
	}
	free(bw);
	free(fw);
}

/* A chunk starting inside a row decodes to what the encoder said it would, for each mix of
 * parts; damaged data is refused without reading out of bounds. */
static void codec_case(int rank, int bits, float step, int f32)
{
	size_t rows = 24, cols = 50, n = 700, e0 = 130;
	float *d = malloc(rows * cols * 4), *a = malloc(rows * 8 * 4), *b = malloc(8 * cols * 4);
	float *delta = malloc(n * 4), *base_f = malloc(n * 4), *want = malloc(n * 4), *got = malloc(n * 4);
	uint16_t *base = malloc(n * 2), *out = malloc(n * 2), *expect = malloc(n * 2);
	for (size_t i = 0; i < rows * cols; i++)
		d[i] = 0.01f * gauss();
	for (size_t i = 0; i < rows * 8; i++)
		a[i] = gauss();
	for (size_t i = 0; i < 8 * cols; i++)
		b[i] = 0.001f * gauss();
	for (size_t i = 0; i < n; i++)
		base_f[i] = gauss();
	sp_dtype_from_f32(SP_DT_BF16, base_f, base, n);
	struct sp_lossy_tensor t = {.rows = rows, .cols = cols, .d = d, .rank = (uint32_t)rank,
				    .f32_factors = f32, .a = a, .b = b, .bits = bits, .group = 64,
				    .step = step, .a_scale = 1, .b_scale = 1};
	if (rank) {
		t.a_scale = sp_lossy_round_factor(a, rows * (size_t)rank, f32);
		t.b_scale = sp_lossy_round_factor(b, (size_t)rank * cols, f32);
	}
	uint8_t *aux = malloc((size_t)rank * cols * 4 + 1), *dst = malloc(sp_lossy_bound(n, 8, cols));
	size_t aux_len = rank ? sp_lossy_factor_bytes(b, (size_t)rank * cols, t.b_scale, f32, aux) : 0;
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	ZSTD_DCtx *dc = ZSTD_createDCtx();
	struct sp_lossless *ll = sp_lossless_new();
	struct sp_lossy_scratch scratch = {0};
	size_t len = sp_lossy_encode(cc, ll, &t, e0, n, dst, sp_lossy_bound(n, 8, cols), 3, delta, &scratch);
	CHECK(len > 0);
	sp_dtype_to_f32(SP_DT_BF16, base, want, n);
	for (size_t i = 0; i < n; i++)
		want[i] += delta[i];
	sp_dtype_from_f32(SP_DT_BF16, want, expect, n);
	CHECK(sp_lossy_decode(dc, ll, dst, len, rank ? aux : NULL, aux_len, (uint8_t *)base,
			      SP_DT_BF16, SP_DT_BF16, out, n, &scratch) == 0);
	CHECK(memcmp(out, expect, n * 2) == 0);
	if (bits || rank) { /* the parts approximate the delta */
		sp_dtype_to_f32(SP_DT_BF16, out, got, n);
		CHECK(sp_lossy_aux(dst, len) == (rank ? 0 : -1));
	}
	for (size_t cut = 0; cut < len; cut += 7)
		CHECK(sp_lossy_decode(dc, ll, dst, cut, aux, aux_len, (uint8_t *)base, SP_DT_BF16,
				      SP_DT_BF16, out, n, &scratch) != 0);
	for (size_t i = 0; i < len; i += 3) {
		dst[i] ^= 0x55; /* must not crash; may decode to other values */
		sp_lossy_decode(dc, ll, dst, len, aux, aux_len, (uint8_t *)base, SP_DT_BF16,
				SP_DT_BF16, out, n, &scratch);
		dst[i] ^= 0x55;
	}
	ZSTD_freeCCtx(cc), ZSTD_freeDCtx(dc), sp_lossless_free(ll), sp_lossy_scratch_free(&scratch);
	free(d), free(a), free(b), free(delta), free(base_f), free(want), free(got), free(base);
	free(out), free(expect), free(aux), free(dst);
}

static void codec(void)
{
	codec_case(0, 0, 0, 0);
	codec_case(4, 0, 0, 0);
	codec_case(4, 0, 0, 1);
	codec_case(0, 4, 0, 0);
	codec_case(0, 2, 2.5f, 0);
	codec_case(8, 3, 0, 0);
}

/* ---- the writer's modes ---- */

static char base[4096], ft[4096];

/* Writes a delta with o, reads every file back; returns the report's total delta error. */
static double write_read(const char *name, struct sp_write_opts o, uint64_t *size)
{
	char out[4200];
	struct sp_write_stats st;
	struct sp_err err;
	snprintf(out, sizeof(out), "%s/%s", test_tmpdir(), name);
	if (sp_write_delta(base, ft, out, &o, &st, &err)) {
		fprintf(stderr, "  %s: %s\n", name, err.msg);
		test_failures++;
		return -1;
	}
	struct sp_delta *d = sp_delta_open(out, NULL, 0, &err);
	CHECK(d != NULL);
	for (size_t i = 0; d && i < sp_delta_file_count(d); i++) {
		const struct sp_file_info *f = sp_delta_file(d, i);
		uint8_t *buf = malloc(f->size + 1);
		CHECK(sp_delta_read(d, NULL, i, buf, f->size, 0) == (ssize_t)f->size);
		free(buf);
	}
	sp_delta_close(d);
	cJSON *total = cJSON_GetObjectItem(st.report, "total");
	double e = cJSON_GetNumberValue(cJSON_GetObjectItem(total, "delta_rel_err"));
	cJSON_Delete(st.report);
	if (size)
		*size = st.delta_bytes;
	return e;
}

static void modes(void)
{
	struct sp_write_opts o = {.mode = SP_MODE_SVD, .rank = 4};
	struct sp_err err;
	uint64_t s_fixed = 0, s_budget = 0;
	double e0, e4, e64, e_huge, q8, q4;
	/* Rank 0 would keep just the base: refused, as a mistake more likely than a wish. */
	o.rank = 0;
	CHECK(sp_write_delta(base, ft, "/nonexistent/never", &o, NULL, &err) != 0);
	CHECK(strstr(err.msg, "rank") != NULL);
	o.rank = 1;
	e0 = write_read("svd1", o, NULL);
	o.rank = 4;
	e4 = write_read("svd4", o, NULL);
	o.rank = 64;
	e64 = write_read("svd64", o, NULL);
	o.rank = 4000; /* more than the matrices allow: capped */
	e_huge = write_read("svdhuge", o, NULL);
	CHECK(e0 > 0.5 && e4 < e0 && e64 < e4 && e_huge < 1e-2);
	o = (struct sp_write_opts){.mode = SP_MODE_SVD, .rank = 4, .group = 64};
	CHECK(sp_write_delta(base, ft, "/nonexistent/never", &o, NULL, &err) != 0);
	o = (struct sp_write_opts){.mode = SP_MODE_QUANT, .bits = 8};
	q8 = write_read("q8", o, NULL);
	o.bits = 4;
	q4 = write_read("q4", o, NULL);
	CHECK(q8 < q4 && q4 < 0.2);
	o.rank = 8;
	CHECK(write_read("q4r8", o, NULL) < q4);
	o = (struct sp_write_opts){.size = 200000};
	write_read("budget", o, &s_budget);
	CHECK(s_budget <= 200000);
	/* A budget below what the lossless parts need is refused, and says so. */
	o = (struct sp_write_opts){.size = 5000};
	CHECK(sp_write_delta(base, ft, "/nonexistent/never", &o, NULL, &err) != 0);
	CHECK(strstr(err.msg, "lossless parts") != NULL);
	/* A dry run writes nothing and says what it would have written. */
	char out[4200];
	struct sp_write_stats st;
	snprintf(out, sizeof(out), "%s/dry", test_tmpdir());
	o = (struct sp_write_opts){.mode = SP_MODE_QUANT, .bits = 4, .dry_run = 1};
	CHECK(sp_write_delta(base, ft, out, &o, &st, &err) == 0 && st.delta_bytes > s_fixed);
	cJSON_Delete(st.report);
	CHECK(!sp_is_delta_dir(out));
	/* Options that make no sense together are refused. */
	o = (struct sp_write_opts){.mode = SP_MODE_LOSSLESS, .rank = 4};
	CHECK(sp_write_delta(base, ft, out, &o, NULL, &err) != 0);
	o = (struct sp_write_opts){.mode = SP_MODE_QUANT};
	CHECK(sp_write_delta(base, ft, out, &o, NULL, &err) != 0 && strstr(err.msg, "bits"));
}

/* ---- row groups: a scale per token's row in embeddings ---- */

#define RG_ROWS 256
#define RG_COLS 192
#define RG_N (RG_ROWS * RG_COLS)

/* A folder with model.safetensors holding lin.weight then wte.weight, f32, RG_ROWS x RG_COLS
 * each; the header is padded to 8 bytes, which leaves the tensors off any chunk's rows. */
static void write_rg_model(const char *dir, const float *lin, const float *wte, uint64_t *data0)
{
	char json[512], path[4200];
	int n = snprintf(json, sizeof(json),
			 "{\"lin.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[0,%d]},"
			 "\"wte.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%d,%d]}}",
			 RG_ROWS, RG_COLS, RG_N * 4, RG_ROWS, RG_COLS, RG_N * 4, 2 * RG_N * 4);
	uint64_t hl = ((uint64_t)n + 7) / 8 * 8;
	memset(json + n, ' ', hl - (uint64_t)n);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	FILE *f = fopen(path, "wb");
	CHECK(f && fwrite(&hl, 8, 1, f) == 1 && fwrite(json, 1, hl, f) == hl &&
	      fwrite(lin, 4, RG_N, f) == RG_N && fwrite(wte, 4, RG_N, f) == RG_N);
	CHECK(f && fclose(f) == 0);
	*data0 = 8 + hl;
}

/* The largest and the mean relative error of the rows of got against want whose delta (against
 * base) is small: the odd rows. */
static void small_rows_err(const float *want, const float *got, const float *base, double *max,
			   double *mean)
{
	*max = *mean = 0;
	for (int r = 1; r < RG_ROWS; r += 2) {
		float d[RG_COLS], e[RG_COLS];
		for (int c = 0; c < RG_COLS; c++) {
			d[c] = want[r * RG_COLS + c] - base[r * RG_COLS + c];
			e[c] = got[r * RG_COLS + c] - base[r * RG_COLS + c];
		}
		double x = rel_err(d, e, RG_COLS);
		*max = x > *max ? x : *max;
		*mean += x / (RG_ROWS / 2);
	}
}

/* Under a size budget an embedding's rows get a scale each, in chunks of whole rows: a token
 * whose delta is a hundred times smaller than its neighbours' keeps it, where a tensor of the
 * same delta with groups across rows loses it. */
static void row_groups(void)
{
	CHECK(sp_lossy_row_group(192, 2048) == 192 && sp_lossy_row_group(100, 2048) == 200);
	CHECK(sp_lossy_row_group(3072, 2048) == 1536 && sp_lossy_row_group(11008, 2048) == 1376);
	CHECK(sp_lossy_row_group(4099, 2048) == 2048); /* a prime: no part of a row fits */
	float *b = malloc(RG_N * 4), *w = malloc(RG_N * 4), *got = malloc(2 * RG_N * 4);
	char bdir[4200], fdir[4200], out[4200];
	uint64_t data0;
	for (int i = 0; i < RG_N; i++) {
		b[i] = gauss();
		w[i] = b[i] + gauss() * (i / RG_COLS % 2 ? 0.01f : 1.0f);
	}
	snprintf(bdir, sizeof(bdir), "%s/rg-base", test_tmpdir());
	snprintf(fdir, sizeof(fdir), "%s/rg-ft", test_tmpdir());
	snprintf(out, sizeof(out), "%s/rg-delta", test_tmpdir());
	write_rg_model(bdir, b, b, &data0);
	write_rg_model(fdir, w, w, &data0);
	struct sp_write_opts o = {.size = 2 * RG_N * 4 / 8, .chunk_size = 4096};
	struct sp_write_stats st;
	struct sp_err err;
	CHECK(sp_write_delta(bdir, fdir, out, &o, &st, &err) == 0);
	cJSON_Delete(st.report);
	struct sp_delta *d = sp_delta_open(out, NULL, 0, &err);
	CHECK(d && sp_delta_read(d, NULL, 0, got, 2 * RG_N * 4, data0) == 2 * RG_N * 4);
	double emb_max, emb_mean, lin_max, lin_mean;
	small_rows_err(w, got + RG_N, b, &emb_max, &emb_mean);
	small_rows_err(w, got, b, &lin_max, &lin_mean);
	CHECK(emb_max < 0.9 && lin_mean > 0.95);
	sp_delta_close(d);
	free(b), free(w), free(got);
}

/* Every dtype and shape case in a lossy mode: 2-D float tensors change, the rest (1-D, integer,
 * F8, scalars, empties, stored rows of a grown tensor, other files) stays bit-exact. */
static void edge_cases(const char *gen)
{
	char ebase[4200], eft[4200], out[4200], path[4400];
	struct sp_write_opts o = {.mode = SP_MODE_QUANT, .bits = 4, .rank = 4};
	struct sp_write_stats st;
	struct sp_err err;
	struct sp_model m;
	snprintf(ebase, sizeof(ebase), "%s/edge-base", test_tmpdir());
	snprintf(eft, sizeof(eft), "%s/edge-ft", test_tmpdir());
	snprintf(out, sizeof(out), "%s/edge-quant", test_tmpdir());
	if (test_sh("'%s' edge '%s' '%s'", gen, ebase, eft))
		return;
	if (sp_write_delta(ebase, eft, out, &o, &st, &err) || sp_model_open(eft, 0, &m, &err)) {
		fprintf(stderr, "  %s\n", err.msg);
		test_failures++;
		return;
	}
	cJSON_Delete(st.report);
	struct sp_delta *d = sp_delta_open(out, NULL, 0, &err);
	CHECK(d != NULL);
	for (size_t i = 0; d && i < sp_delta_file_count(d); i++) {
		const struct sp_file_info *f = sp_delta_file(d, i);
		size_t size;
		snprintf(path, sizeof(path), "%s/%s", eft, f->name);
		uint8_t *orig = test_slurp(path, &size), *got = malloc(f->size + 1);
		CHECK(sp_delta_read(d, NULL, i, got, f->size, 0) == (ssize_t)size);
		for (size_t k = 0; k < m.nfiles; k++) {
			const struct sp_mfile *mf = &m.files[k];
			if (strcmp(mf->name, f->name))
				continue;
			uint64_t pos = 0;
			for (size_t j = 0; j < mf->st.ntensors; j++) {
				const struct sp_tensor *t = &mf->st.tensors[j];
				CHECK(memcmp(got + pos, orig + pos, t->off - pos) == 0);
				if (t->ndim < 2 || !sp_dtype_is_float(t->dtype))
					CHECK(memcmp(got + t->off, orig + t->off, t->size) == 0);
				pos = t->off + t->size;
			}
			if (!mf->is_st)
				CHECK(memcmp(got, orig, size) == 0);
		}
		free(orig);
		free(got);
	}
	sp_model_close(&m);
	sp_delta_close(d);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	lowrank();
	kept_factors();
	codec();
	snprintf(base, sizeof(base), "%s/base", test_tmpdir());
	snprintf(ft, sizeof(ft), "%s/ft", test_tmpdir());
	if (test_sh("'%s' demo '%s' '%s'", argv[1], base, ft))
		return 1;
	modes();
	row_groups();
	edge_cases(argv[1]);
	return test_done();
}
