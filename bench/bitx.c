/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bitx: the BitX baseline of ZipLLM, for benchmarking the lossless delta codec.
 *
 *   bitx BASE.safetensors FT.safetensors
 *
 * For each tensor of FT matched by name in BASE (over the bytes both hold), every float word is
 * XORed with the base's word and split into an exponent plane and a sign+mantissa plane (bf16:
 * one byte each, as ZipLLM does), and each plane of the tensor is compressed with zstd level 3.
 * Integer and other tensors are XORed and compressed whole. Bytes of FT that have no counterpart
 * in BASE (new tensors, grown tensors) are compressed with zstd level 3 as they are.
 * Prints the total compressed size in bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include <zstd.h>

struct tensor {
	const char *name;
	const char *dtype;
	const unsigned char *data;
	size_t len;
};

struct model {
	unsigned char *file;
	cJSON *header;
	struct tensor *t;
	int n;
};

/* Float layouts: width in bytes and exponent bits; the other bits are sign and mantissa. */
struct layout {
	const char *dtype;
	int width, exp_bits;
};

static const struct layout layouts[] = {
	{"BF16", 2, 8}, {"F16", 2, 5}, {"F32", 4, 8}, {"F64", 8, 11},
	{"F8_E4M3", 1, 4}, {"F8_E5M2", 1, 5},
};

static void die(const char *what)
{
	fprintf(stderr, "bitx: %s\n", what);
	exit(2);
}

static unsigned char *read_file(const char *path, size_t *size)
{
	FILE *f = fopen(path, "rb");
	if (!f || fseek(f, 0, SEEK_END) || (long)(*size = (size_t)ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		die(path);
	unsigned char *buf = malloc(*size ? *size : 1);
	if (!buf || fread(buf, 1, *size, f) != *size)
		die(path);
	fclose(f);
	return buf;
}

static void load(struct model *m, const char *path)
{
	size_t size;
	m->file = read_file(path, &size);
	uint64_t hlen = 0;
	for (int i = 7; i >= 0 && size >= 8; i--)
		hlen = hlen << 8 | m->file[i];
	if (size < 8 || hlen > size - 8)
		die("bad safetensors header length");
	m->header = cJSON_ParseWithLength((const char *)m->file + 8, (size_t)hlen);
	if (!m->header)
		die("bad safetensors header JSON");
	const unsigned char *body = m->file + 8 + hlen;
	size_t body_len = size - 8 - hlen;
	m->t = calloc((size_t)cJSON_GetArraySize(m->header) + 1, sizeof *m->t);
	const cJSON *it;
	cJSON_ArrayForEach(it, m->header) {
		if (!strcmp(it->string, "__metadata__"))
			continue;
		const cJSON *dt = cJSON_GetObjectItem(it, "dtype");
		const cJSON *off = cJSON_GetObjectItem(it, "data_offsets");
		if (!cJSON_IsString(dt) || cJSON_GetArraySize(off) != 2)
			die("bad tensor entry");
		double b = cJSON_GetArrayItem(off, 0)->valuedouble, e = cJSON_GetArrayItem(off, 1)->valuedouble;
		if (b < 0 || e < b || e > (double)body_len)
			die("tensor out of bounds");
		m->t[m->n++] = (struct tensor){it->string, dt->valuestring, body + (size_t)b, (size_t)(e - b)};
	}
}

static const struct tensor *find(const struct model *m, const char *name)
{
	for (int i = 0; i < m->n; i++)
		if (!strcmp(m->t[i].name, name))
			return &m->t[i];
	return NULL;
}

static size_t zstd3(const void *src, size_t n)
{
	if (!n)
		return 0;
	size_t cap = ZSTD_compressBound(n);
	void *dst = malloc(cap);
	size_t r = ZSTD_compress(dst, cap, src, n, 3);
	if (!dst || ZSTD_isError(r))
		die("zstd failed");
	free(dst);
	return r;
}

/* Bit i of a little-endian word of w bytes. */
static int get_bit(const unsigned char *w, int i)
{
	return w[i >> 3] >> (i & 7) & 1;
}

static void put_bit(unsigned char *p, int i, int v)
{
	p[i >> 3] |= (unsigned char)(v << (i & 7));
}

/*
 * XORs n words of layout l and compresses the exponent plane and the sign+mantissa plane. Each
 * plane stores its bits packed into whole bytes per element: bf16 gives one byte each, f32 one
 * exponent byte and three sign+mantissa bytes.
 */
static size_t bitx_float(const struct layout *l, const unsigned char *a, const unsigned char *b, size_t n)
{
	int w = l->width, bits = 8 * w, mant = bits - 1 - l->exp_bits;
	int eb = (l->exp_bits + 7) / 8, sb = (mant + 1 + 7) / 8;
	unsigned char *ep = calloc(n * eb + 1, 1), *sp = calloc(n * sb + 1, 1);
	if (!ep || !sp)
		die("out of memory");
	for (size_t i = 0; i < n; i++) {
		unsigned char x[8];
		for (int k = 0; k < w; k++)
			x[k] = a[i * w + k] ^ b[i * w + k];
		for (int k = 0; k < l->exp_bits; k++)
			put_bit(ep + i * eb, k, get_bit(x, mant + k));
		for (int k = 0; k < mant; k++)
			put_bit(sp + i * sb, k, get_bit(x, k));
		put_bit(sp + i * sb, mant, get_bit(x, bits - 1));
	}
	size_t r = zstd3(ep, n * eb) + zstd3(sp, n * sb);
	free(ep);
	free(sp);
	return r;
}

static size_t bitx_tensor(const struct tensor *base, const struct tensor *ft)
{
	size_t n = base->len < ft->len ? base->len : ft->len;
	size_t extra = zstd3(ft->data + n, ft->len - n);
	for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++) {
		const struct layout *l = &layouts[i];
		if (!strcmp(ft->dtype, l->dtype) && !strcmp(base->dtype, l->dtype))
			return extra + bitx_float(l, base->data, ft->data, n / l->width);
	}
	unsigned char *x = malloc(n + 1);
	if (!x)
		die("out of memory");
	for (size_t i = 0; i < n; i++)
		x[i] = base->data[i] ^ ft->data[i];
	size_t r = zstd3(x, n);
	free(x);
	return extra + r;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bitx BASE.safetensors FT.safetensors\n");
		return 2;
	}
	struct model base = {0}, ft = {0};
	load(&base, argv[1]);
	load(&ft, argv[2]);
	size_t total = 0;
	for (int i = 0; i < ft.n; i++) {
		const struct tensor *b = find(&base, ft.t[i].name);
		total += b ? bitx_tensor(b, &ft.t[i]) : zstd3(ft.t[i].data, ft.t[i].len);
	}
	printf("%zu\n", total);
	cJSON_Delete(base.header);
	cJSON_Delete(ft.header);
	free(base.file);
	free(ft.file);
	free(base.t);
	free(ft.t);
	return 0;
}
