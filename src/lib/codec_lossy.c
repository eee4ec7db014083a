/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lossy chunk codec (SP_CODEC_LOSSY).
 *
 * A tensor is viewed as rows x cols (rows = its first dimension). Its delta D = ft - base is
 * approximated by A.B (A rows x rank, B rank x cols) plus a quantized residual; a chunk holds
 * n consecutive elements starting at row row0, column col0, and spans the rows
 * row0 .. row0 + ceil((col0 + n) / cols) - 1.
 *
 * CHUNK DATA (little-endian):
 *   0  u8   version, 1
 *   1  u8   flags: 1 low-rank part, 2 quantized residual, 4 factors stored as f32 (else f16)
 *   2  u16  rank (1..4096 with the low-rank part, else 0)
 *   4  u32  cols, elements per row (>= 1)
 *   8  u32  col0, the column of the chunk's first element (< cols)
 *   12 u32  aux, the ordinal of the auxiliary chunk holding B (low-rank part only)
 *   16 f32  a_scale: A = stored values * a_scale
 *   20 f32  b_scale: B = stored values * b_scale
 *   24 u8   bits of the residual codes (2..8; 0 without the quantized part)
 *   25 u8   zero
 *   26 u16  zero
 *   28 u32  group: elements per quantization group (>= 1; 0 without the quantized part)
 *   32 u32  a_len, 36 u32 s_len, 40 u32 q_len: the lengths of the three parts that follow,
 *           in this order (0 for a part that is absent):
 *     A: the chunk's rows of A, rows_spanned x rank values, f16 or f32;
 *     S: one f16 scale per group, ceil(n / group) of them, groups counted from the chunk start;
 *     and then, in place of a third zstd frame, the q_len bytes of the codes: with
 *        qmax = 2^(bits-1) - 1, each element's code q in [-qmax, qmax] as an I16, the n of them
 *        coded by the lossless delta codec (codec_lossless.h) against n zero I16s (its vector
 *        decoders take 16-bit elements).
 *
 * The auxiliary chunk holds B: rank x cols values, f16 or f32 as the flags say, row-major.
 *
 * DECODING, in f32: delta[i] = (A_rows . B)[col0 + i] (one sgemm over the rows spanned; zero
 * without the low-rank part); then delta[i] += scale[i / group] * q[i]; then
 * out[i] = round_to_dtype(base[i] + delta[i]), base converted to f32 first, rounding to nearest
 * even. The sgemm's rounding may differ between machines, so a LOSSY chunk's out_hash covers its
 * inputs (data, then base bytes), not its output.
 */
#include "codec_lossy.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "codec_lossless.h"
#include "dtype.h"

#define VERSION 1
#define HDR 44
#define F_LOWRANK 1
#define F_QUANT 2
#define F_F32 4
#define F16_MAX 65504.0f

struct hdr {
	uint8_t flags, bits;
	uint32_t rank, cols, col0, aux, group, a_len, s_len, q_len;
	float a_scale, b_scale;
};

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

void sp_lossy_scratch_free(struct sp_lossy_scratch *s)
{
	free(s->work.p);
	free(s->codes.p);
	free(s->zeros.p);
	free(s->gemm.p);
	memset(s, 0, sizeof(*s));
}

/* n zero bytes, kept: the buffer only ever grows, with zeros. */
static const uint8_t *zeros_of(struct sp_scratch *z, size_t n)
{
	size_t old = z->p ? z->cap : 0;
	if (!sp_scratch_get(z, n))
		return NULL;
	if (z->cap > old)
		memset(z->p + old, 0, z->cap - old);
	return z->p;
}

/* ---- factors ---- */

float sp_lossy_round_factor(float *x, size_t n, int f32_factors)
{
	float m = 0;
	if (f32_factors)
		return 1;
	for (size_t i = 0; i < n; i++)
		m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
	/* Scale the largest value to 2^14: well inside f16's range, far above its subnormals. */
	float scale = m > 0 ? m / 16384 : 1;
	for (size_t i = 0; i < n; i++) {
		uint16_t h;
		float v = x[i] / scale;
		sp_dtype_from_f32(SP_DT_F16, &v, &h, 1);
		sp_dtype_to_f32(SP_DT_F16, &h, &v, 1);
		x[i] = v * scale;
	}
	return scale;
}

size_t sp_lossy_factor_bytes(const float *x, size_t n, float scale, int f32_factors, uint8_t *out)
{
	if (f32_factors) {
		memcpy(out, x, n * 4);
		return n * 4;
	}
	for (size_t i = 0; i < n; i++) {
		float v = x[i] / scale;
		sp_dtype_from_f32(SP_DT_F16, &v, out + 2 * i, 1);
	}
	return n * 2;
}

/* Stored factor values (f16 or f32) times scale, into f32. */
static void load_factor(const uint8_t *src, size_t n, int f32, float scale, float *dst)
{
	sp_dtype_to_f32(f32 ? SP_DT_F32 : SP_DT_F16, src, dst, n);
	for (size_t i = 0; i < n; i++)
		dst[i] *= scale;
}

/* The low-rank part of elements [col0, col0 + n) of rows_spanned rows: a (rows x rank) . b. */
static int lowrank_part(const float *a, const float *b, uint32_t rank, uint32_t cols,
			uint32_t col0, size_t n, size_t rows, float *delta, struct sp_scratch *gemm)
{
	float *tmp = sp_scratch_get(gemm, rows * cols * sizeof(float));
	if (!tmp)
		return -1;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)rank, 1,
		    a, (int)rank, b, (int)cols, 0, tmp, (int)cols);
	memcpy(delta, tmp + col0, n * sizeof(float));
	return 0;
}

/* ---- encoding ---- */

size_t sp_lossy_bound(size_t n, uint32_t rank, uint64_t cols)
{
	size_t rows = n / (cols ? cols : 1) + 2;
	return HDR + ZSTD_compressBound(rows * rank * 4) + ZSTD_compressBound(n / 1 * 2 + 2) +
	       ZSTD_compressBound(n + 1);
}

static size_t zframe(ZSTD_CCtx *cctx, uint8_t *dst, size_t cap, const void *src, size_t n, int level)
{
	size_t z = ZSTD_compressCCtx(cctx, dst, cap, src, n, level);
	return ZSTD_isError(z) ? 0 : z;
}

/* Quantizes r (n values) group by group: f16 scales into s16, codes into q; adds the
 * dequantized values to delta. */
/* The scale of a group: its RMS times step, or its largest magnitude over qmax. */
static float group_scale(const float *r, size_t lo, size_t hi, int qmax, float step)
{
	double m = 0;
	for (size_t i = lo; i < hi; i++)
		if (step > 0)
			m += (double)r[i] * r[i];
		else if (fabsf(r[i]) > m)
			m = fabsf(r[i]);
	double scale = step > 0 ? sqrt(m / (double)(hi - lo)) * step : m / qmax;
	return scale < F16_MAX ? (float)scale : F16_MAX; /* stored as f16: keep it finite */
}

static void quantize(const float *r, size_t n, int bits, uint32_t group, float step,
		     uint16_t *s16, int16_t *q, float *delta)
{
	int qmax = (1 << (bits - 1)) - 1;
	for (size_t g = 0; g * group < n; g++) {
		size_t lo = g * group, hi = lo + group < n ? lo + group : n;
		float scale = group_scale(r, lo, hi, qmax, step);
		sp_dtype_from_f32(SP_DT_F16, &scale, &s16[g], 1);
		sp_dtype_to_f32(SP_DT_F16, &s16[g], &scale, 1);
		for (size_t i = lo; i < hi; i++) {
			float c = scale > 0 ? nearbyintf(r[i] / scale) : 0;
			c = c > (float)qmax ? (float)qmax : c < (float)-qmax ? (float)-qmax : c;
			delta[i] += scale * c;
			q[i] = (int16_t)c;
		}
	}
}

static void put_header(uint8_t *dst, const struct hdr *h)
{
	uint16_t rank = (uint16_t)h->rank, zero = 0;
	memset(dst, 0, HDR);
	dst[0] = VERSION;
	dst[1] = h->flags;
	memcpy(dst + 2, &rank, 2);
	put32(dst + 4, h->cols);
	put32(dst + 8, h->col0);
	put32(dst + 12, h->aux);
	memcpy(dst + 16, &h->a_scale, 4);
	memcpy(dst + 20, &h->b_scale, 4);
	dst[24] = h->bits;
	memcpy(dst + 26, &zero, 2);
	put32(dst + 28, h->group);
	put32(dst + 32, h->a_len);
	put32(dst + 36, h->s_len);
	put32(dst + 40, h->q_len);
}

/* The A rows of the chunk, stored and compressed at dst; their decoded form in a_rows. */
static size_t encode_a(ZSTD_CCtx *cctx, const struct sp_lossy_tensor *t, uint64_t row0,
		       size_t rows, uint8_t *dst, size_t cap, int level, float *a_rows,
		       struct sp_scratch *s)
{
	size_t cnt = rows * t->rank;
	uint8_t *raw = sp_scratch_get(s, cnt * 4 + 1);
	if (!raw)
		return 0;
	size_t bytes = sp_lossy_factor_bytes(t->a + row0 * t->rank, cnt, t->a_scale, t->f32_factors, raw);
	load_factor(raw, cnt, t->f32_factors, t->a_scale, a_rows);
	return zframe(cctx, dst, cap, raw, bytes, level);
}

size_t sp_lossy_encode(ZSTD_CCtx *cctx, struct sp_lossless *ll, const struct sp_lossy_tensor *t,
		       uint64_t e0, size_t n,
		       uint8_t *dst, size_t cap, int level, float *delta_out,
		       struct sp_lossy_scratch *scratch)
{
	struct hdr h = {.cols = (uint32_t)t->cols, .col0 = (uint32_t)(e0 % t->cols), .aux = t->aux,
			.a_scale = t->a_scale, .b_scale = t->b_scale, .rank = t->rank,
			.bits = (uint8_t)t->bits, .group = t->bits ? t->group : 0};
	uint64_t row0 = e0 / t->cols;
	size_t rows = (h.col0 + n + t->cols - 1) / t->cols, pos = HDR;
	float *work = malloc((rows * t->rank + 2 * n + 1) * sizeof(float));
	int16_t *codes = malloc(n * sizeof(int16_t) + 1);
	const uint8_t *zeros = zeros_of(&scratch->zeros, n * sizeof(int16_t));
	uint16_t *s16 = malloc((n / (t->group ? t->group : 1) + 2) * sizeof(uint16_t));
	int ok = work && codes && zeros && s16;
	memset(delta_out, 0, n * sizeof(float));
	h.flags = (uint8_t)((t->rank ? F_LOWRANK : 0) | (t->bits ? F_QUANT : 0) |
			    (t->f32_factors ? F_F32 : 0));
	if (ok && t->rank) {
		float *a_rows = work + 2 * n;
		h.a_len = (uint32_t)encode_a(cctx, t, row0, rows, dst + pos, cap - pos, level, a_rows,
					     &scratch->codes);
		ok = h.a_len && lowrank_part(a_rows, t->b, t->rank, h.cols, h.col0, n, rows, delta_out,
					     &scratch->gemm) == 0;
		pos += h.a_len;
	}
	if (ok && t->bits) {
		float *r = work;
		size_t groups = (n + t->group - 1) / t->group;
		for (size_t i = 0; i < n; i++)
			r[i] = t->d[e0 + i] - delta_out[i];
		quantize(r, n, t->bits, t->group, t->step, s16, codes, delta_out);
		h.s_len = (uint32_t)zframe(cctx, dst + pos, cap - pos, s16, groups * 2, level);
		pos += h.s_len;
		h.q_len = (uint32_t)sp_lossless_encode(ll, SP_DT_I16, zeros, codes,
						       n * sizeof(int16_t), dst + pos, cap - pos,
						       level);
		pos += h.q_len;
		ok = h.s_len && h.q_len;
	}
	put_header(dst, &h);
	free(work);
	free(codes);
	free(s16);
	return ok ? pos : 0;
}

/* ---- decoding ---- */

static int parse_header(const uint8_t *p, size_t len, struct hdr *h)
{
	uint16_t rank;
	if (len < HDR || p[0] != VERSION || (p[1] & ~(F_LOWRANK | F_QUANT | F_F32)))
		return -1;
	h->flags = p[1];
	memcpy(&rank, p + 2, 2);
	h->rank = rank;
	h->cols = get32(p + 4);
	h->col0 = get32(p + 8);
	h->aux = get32(p + 12);
	memcpy(&h->a_scale, p + 16, 4);
	memcpy(&h->b_scale, p + 20, 4);
	h->bits = p[24];
	h->group = get32(p + 28);
	h->a_len = get32(p + 32);
	h->s_len = get32(p + 36);
	h->q_len = get32(p + 40);
	if (!h->cols || h->col0 >= h->cols || !isfinite(h->a_scale) || !isfinite(h->b_scale))
		return -1;
	if ((h->flags & F_LOWRANK) ? (!h->rank || h->rank > SP_LOSSY_MAX_RANK) : h->rank != 0)
		return -1;
	if ((h->flags & F_QUANT) ? h->bits < 2 || h->bits > 8 || !h->group
				 : h->bits || h->group || h->s_len || h->q_len)
		return -1;
	if ((!(h->flags & F_LOWRANK) && h->a_len) || p[25] || p[26] || p[27])
		return -1;
	return (uint64_t)h->a_len + h->s_len + h->q_len == len - HDR ? 0 : -1;
}

uint64_t sp_lossy_inputs_hash(const uint8_t *data, size_t len, const uint8_t *base, size_t blen)
{
	XXH3_state_t *st = XXH3_createState();
	uint64_t h = 0;
	if (st) {
		XXH3_64bits_reset(st);
		XXH3_64bits_update(st, data, len);
		XXH3_64bits_update(st, base, blen);
		h = XXH3_64bits_digest(st);
		XXH3_freeState(st);
	}
	return h;
}

long sp_lossy_aux(const uint8_t *data, size_t len)
{
	struct hdr h;
	return parse_header(data, len, &h) || !(h.flags & F_LOWRANK) ? -1 : (long)h.aux;
}

static int unzstd(ZSTD_DCtx *dctx, void *dst, size_t n, const uint8_t *src, size_t len)
{
	size_t z = ZSTD_decompressDCtx(dctx, dst, n, src, len);
	return ZSTD_isError(z) || z != n ? -1 : 0;
}

static int decode_lowrank(ZSTD_DCtx *dctx, const struct hdr *h, const uint8_t *src,
			  const uint8_t *aux, size_t aux_len, float *delta, size_t n,
			  struct sp_lossy_scratch *s)
{
	size_t rows = (h->col0 + n + h->cols - 1) / h->cols, es = (h->flags & F_F32) ? 4 : 2;
	size_t na = rows * h->rank, nb = (size_t)h->rank * h->cols;
	if (!aux || aux_len != nb * es)
		return -1;
	float *ab = sp_scratch_get(&s->codes, (na + nb) * sizeof(float) + na * es + 1);
	uint8_t *raw = (uint8_t *)(ab + na + nb);
	if (!ab || unzstd(dctx, raw, na * es, src, h->a_len))
		return -1;
	load_factor(raw, na, h->flags & F_F32, h->a_scale, ab);
	load_factor(aux, nb, h->flags & F_F32, h->b_scale, ab + na);
	return lowrank_part(ab, ab + na, h->rank, h->cols, h->col0, n, rows, delta, &s->gemm);
}

static int decode_quant(ZSTD_DCtx *dctx, struct sp_lossless *ll, const struct hdr *h,
			const uint8_t *src, float *delta, size_t n, struct sp_lossy_scratch *s)
{
	size_t groups = (n + h->group - 1) / h->group;
	int16_t *q = sp_scratch_get(&s->codes, n * sizeof(int16_t) +
					       groups * (sizeof(float) + sizeof(uint16_t)) + 8);
	const uint8_t *zeros = zeros_of(&s->zeros, n * sizeof(int16_t));
	if (!q || !zeros)
		return -1;
	float *scale = (float *)(q + n + (n & 1));
	uint16_t *s16 = (uint16_t *)(scale + groups);
	if (unzstd(dctx, s16, groups * 2, src, h->s_len) ||
	    sp_lossless_decode(ll, SP_DT_I16, zeros, src + h->s_len, h->q_len, q,
			       n * sizeof(int16_t)))
		return -1;
	sp_dtype_to_f32(SP_DT_F16, s16, scale, groups);
	int qmax = (1 << (h->bits - 1)) - 1, bad = 0;
	for (size_t g = 0; g < groups; g++) {
		size_t lo = g * h->group, hi = lo + h->group < n ? lo + h->group : n;
		for (size_t i = lo; i < hi; i++) {
			bad |= q[i] > qmax || q[i] < -qmax;
			delta[i] += scale[g] * (float)q[i];
		}
	}
	return bad ? -1 : 0;
}

int sp_lossy_decode(ZSTD_DCtx *dctx, struct sp_lossless *ll, const uint8_t *data, size_t len,
		    const uint8_t *aux,
		    size_t aux_len, const uint8_t *base, enum sp_dtype base_dt, enum sp_dtype dt,
		    void *out, size_t n, struct sp_lossy_scratch *scratch)
{
	struct hdr h;
	float *delta = sp_scratch_get(&scratch->work, 2 * n * sizeof(float) + 1), *bf = delta + n;
	int rc = delta && parse_header(data, len, &h) == 0 ? 0 : -1;
	if (rc == 0) {
		memset(delta, 0, n * sizeof(float));
		if (h.flags & F_LOWRANK)
			rc = decode_lowrank(dctx, &h, data + HDR, aux, aux_len, delta, n, scratch);
		if (rc == 0 && (h.flags & F_QUANT))
			rc = decode_quant(dctx, ll, &h, data + HDR + h.a_len, delta, n, scratch);
	}
	if (rc == 0) {
		sp_dtype_to_f32(base_dt, base, bf, n);
		for (size_t i = 0; i < n; i++)
			delta[i] += bf[i];
		sp_dtype_from_f32(dt, delta, out, n);
	}
	return rc;
}
