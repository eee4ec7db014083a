/* SPDX-License-Identifier: Apache-2.0 */
/*
 * entropy_bound: how small the lossless codec's model could make a BF16 fine-tune, if its
 * frequency tables cost nothing.
 *
 *   entropy_bound BASE.safetensors FT.safetensors
 *
 * For every BF16 tensor of FT with a base tensor of the same name and size, the codec's symbols
 * (see lossless_model.h: token of |ord(ft) - ord(base)| with 3 sub-bucket bits, the sign
 * mirrored by the base's) are counted per context, and the empirical conditional entropy of the
 * symbols, plus the raw bits, is summed over tensors. Contexts: the top 5, 8 (the exponent) and
 * 11 bits below the base word's sign (the codec's key), and the exponent with the quartile of
 * the row's and of the column's mean magnitude (side information a coder would have to send).
 * The figures are lower bounds for coders using those contexts with one table per tensor: a
 * real coder also pays for its tables, which the empirical entropy leaves out.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load_st.h"

#define TBITS 3
#define NSYM 256
#define NCTX (1u << 13)

static void die(const char *what)
{
	fprintf(stderr, "entropy_bound: %s\n", what);
	exit(1);
}


static int16_t ord16(uint16_t w)
{
	return (int16_t)(w ^ ((w >> 15) ? 0x7fff : 0));
}

/* The codec's symbol of one element, and its raw bits. */
static unsigned symbol(uint16_t base, uint16_t ft, unsigned *raw)
{
	int d = (int16_t)(uint16_t)(ord16(ft) - ord16(base));
	unsigned a = (unsigned)abs(d), neg = (d < 0) ^ (base >> 15), r = 0;
	if (!a) {
		*raw = 0;
		return 0;
	}
	if (a >= 2u << TBITS)
		r = 32 - (unsigned)__builtin_clz(a) - 1 - TBITS;
	*raw = r;
	return 2 * ((r << TBITS) + (a >> r)) - 1 + neg;
}

/* Sum over contexts of n log2(n / count): the bits of an ideal coder with one table each. */
static double entropy(uint32_t (*h)[NSYM], unsigned nctx)
{
	double bits = 0;
	for (unsigned c = 0; c < nctx; c++) {
		double n = 0;
		for (unsigned y = 0; y < NSYM; y++)
			n += h[c][y];
		for (unsigned y = 0; y < NSYM; y++)
			if (h[c][y])
				bits += h[c][y] * log2(n / h[c][y]);
	}
	return bits;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Quartile class 0..3 of each of the n values v (means of log2(|d| + 1) of a row or column). */
static void quartiles(const double *v, size_t n, uint8_t *cls)
{
	double *s = malloc(n * sizeof(*s));
	if (!s)
		die("out of memory");
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	for (size_t i = 0; i < n; i++)
		cls[i] = (uint8_t)((v[i] > s[n / 4]) + (v[i] > s[n / 2]) + (v[i] > s[3 * n / 4]));
	free(s);
}

enum { CTX_K5, CTX_K8, CTX_K11, CTX_K8_RC, NMODELS };
static const char *const model_name[NMODELS] = {
	"top 5 bits of the base word", "exponent (8 bits)", "exponent + 3 mantissa bits (the codec's key)",
	"exponent + row and column quartiles"};

/* Adds the bits of one tensor (rows x cols elements) under every context model to bits[]. */
static void tensor_bits(const uint16_t *b, const uint16_t *f, size_t rows, size_t cols,
			uint32_t (*h)[NSYM], double bits[NMODELS], double *raw_bits)
{
	size_t n = rows * cols;
	double *rm = calloc(rows, sizeof(*rm)), *cm = calloc(cols, sizeof(*cm));
	uint8_t *rc = malloc(rows), *cc = malloc(cols);
	if (!rm || !cm || !rc || !cc)
		die("out of memory");
	for (size_t i = 0; i < n; i++) {
		double m = log2(fabs((double)(int16_t)(uint16_t)(ord16(f[i]) - ord16(b[i]))) + 1);
		rm[i / cols] += m;
		cm[i % cols] += m;
	}
	quartiles(rm, rows, rc);
	quartiles(cm, cols, cc);
	for (int model = 0; model < NMODELS; model++) {
		memset(h, 0, NCTX * sizeof(*h));
		for (size_t i = 0; i < n; i++) {
			unsigned r, y = symbol(b[i], f[i], &r), k;
			switch (model) {
			case CTX_K5: k = (b[i] >> 10) & 0x1f; break;
			case CTX_K8: k = (b[i] >> 7) & 0xff; break;
			case CTX_K11: k = (b[i] >> 4) & 0x7ff; break;
			default: k = ((b[i] >> 7) & 0xff) << 4 | rc[i / cols] << 2 | cc[i % cols]; break;
			}
			h[k][y]++;
			if (model == 0)
				*raw_bits += r;
		}
		bits[model] += entropy(h, NCTX);
	}
	free(rm);
	free(cm);
	free(rc);
	free(cc);
}

int main(int argc, char **argv)
{
	struct sp_model bm, fm;
	if (argc != 3)
		die("usage: entropy_bound BASE.safetensors FT.safetensors");
	const struct sp_mfile *bf = bench_load_st(&bm, argv[1], "entropy_bound"),
			     *ff = bench_load_st(&fm, argv[2], "entropy_bound");
	uint32_t (*h)[NSYM] = malloc(NCTX * sizeof(*h));
	double bits[NMODELS] = {0}, raw = 0;
	size_t elems = 0;
	if (!h)
		die("out of memory");
	for (size_t i = 0; i < ff->st.ntensors; i++) {
		const struct sp_tensor *t = &ff->st.tensors[i];
		const struct sp_tensor_ref *r = sp_model_find(&bm, t->name);
		if (!r || t->dtype != SP_DT_BF16 || r->t->dtype != SP_DT_BF16 || r->t->size != t->size ||
		    !t->nelem)
			continue;
		size_t rows = t->ndim >= 2 ? t->shape[0] : 1, cols = t->nelem / rows;
		tensor_bits((const uint16_t *)(bf->map + r->t->off), (const uint16_t *)(ff->map + t->off),
			    rows, cols, h, bits, &raw);
		elems += t->nelem;
	}
	printf("%zu BF16 elements (%zu bytes); raw bits %.0f bytes\n", elems, 2 * elems, raw / 8);
	for (int m = 0; m < NMODELS; m++)
		printf("%-46s %10.0f bytes (%.3f bits per element)\n", model_name[m], (bits[m] + raw) / 8,
		       (bits[m] + raw) / (double)elems);
	free(h);
	return 0;
}
