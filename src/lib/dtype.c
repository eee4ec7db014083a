/* SPDX-License-Identifier: Apache-2.0 */
#include "dtype.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const struct {
	const char *name;
	size_t size;
} dtypes[SP_DT_COUNT] = {
	[SP_DT_BYTES] = {"BYTES", 1},   [SP_DT_BOOL] = {"BOOL", 1},
	[SP_DT_U8] = {"U8", 1},         [SP_DT_I8] = {"I8", 1},
	[SP_DT_I16] = {"I16", 2},       [SP_DT_U16] = {"U16", 2},
	[SP_DT_I32] = {"I32", 4},       [SP_DT_U32] = {"U32", 4},
	[SP_DT_I64] = {"I64", 8},       [SP_DT_U64] = {"U64", 8},
	[SP_DT_F16] = {"F16", 2},       [SP_DT_BF16] = {"BF16", 2},
	[SP_DT_F32] = {"F32", 4},       [SP_DT_F64] = {"F64", 8},
	[SP_DT_F8_E4M3] = {"F8_E4M3", 1}, [SP_DT_F8_E5M2] = {"F8_E5M2", 1},
};

enum sp_dtype sp_dtype_from_name(const char *name)
{
	for (int i = 1; i < SP_DT_COUNT; i++)
		if (strcmp(name, dtypes[i].name) == 0)
			return (enum sp_dtype)i;
	return SP_DT_BYTES;
}

const char *sp_dtype_name(enum sp_dtype dt)
{
	return dt < SP_DT_COUNT ? dtypes[dt].name : "?";
}

size_t sp_dtype_size(enum sp_dtype dt)
{
	return dt < SP_DT_COUNT ? dtypes[dt].size : 1;
}

int sp_dtype_is_float(enum sp_dtype dt)
{
	return dt == SP_DT_F16 || dt == SP_DT_BF16 || dt == SP_DT_F32 || dt == SP_DT_F64;
}

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static uint32_t f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static double f16_to_double(uint16_t h)
{
	int e = (h >> 10) & 0x1f, m = h & 0x3ff;
	double v;
	if (e == 0)
		v = ldexp(m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexp(m | 0x400, e - 25);
	return (h & 0x8000) ? -v : v;
}

/* Round to nearest even: scale the value so that one unit in the last place is 1.0 and let
 * nearbyint (default rounding mode) do the rounding. */
static uint16_t f16_from_double(double v)
{
	uint16_t sign = signbit(v) ? 0x8000 : 0;
	double a = fabs(v);
	if (isnan(v))
		return sign | 0x7e00;
	if (a >= 65520.0)
		return sign | 0x7c00;
	if (a < ldexp(1, -14))
		return sign | (uint16_t)nearbyint(ldexp(a, 24));
	int e;
	frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
	double m = nearbyint(ldexp(a, 11 - e)); /* 11 significant bits */
	if (m >= 2048) {
		m /= 2;
		e++;
	}
	if (e + 14 >= 31)
		return sign | 0x7c00;
	return sign | (uint16_t)((e + 14) << 10) | ((uint16_t)m & 0x3ff);
}

/* Branch-free, so that loops over it vectorize: the lossy reader rounds every element. */
static uint16_t bf16_from_f32(float f)
{
	uint32_t u = f32_bits(f);
	uint32_t rounded = (u + 0x7fff + ((u >> 16) & 1)) >> 16, quiet = (u >> 16) | 0x40;
	return (uint16_t)((u & 0x7fffffff) > 0x7f800000 ? quiet : rounded);
}

static double load(enum sp_dtype dt, const uint8_t *p)
{
	uint16_t h;
	uint32_t w;
	double d;
	switch (dt) {
	case SP_DT_F16:
		memcpy(&h, p, 2);
		return f16_to_double(h);
	case SP_DT_BF16:
		memcpy(&h, p, 2);
		return f32_from_bits((uint32_t)h << 16);
	case SP_DT_F32:
		memcpy(&w, p, 4);
		return f32_from_bits(w);
	default:
		memcpy(&d, p, 8);
		return d;
	}
}

static void store(enum sp_dtype dt, uint8_t *p, double v)
{
	uint16_t h;
	float f;
	switch (dt) {
	case SP_DT_F16:
		h = f16_from_double(v);
		memcpy(p, &h, 2);
		break;
	case SP_DT_BF16:
		/* Through f32 first: exact for values that came from f32/f16/bf16, the common case. */
		h = bf16_from_f32((float)v);
		memcpy(p, &h, 2);
		break;
	case SP_DT_F32:
		f = (float)v;
		memcpy(p, &f, 4);
		break;
	default:
		memcpy(p, &v, 8);
		break;
	}
}

void sp_dtype_convert(enum sp_dtype from, const void *src, enum sp_dtype to, void *dst, size_t n)
{
	size_t fs = sp_dtype_size(from), ts = sp_dtype_size(to);
	const uint8_t *s = src;
	uint8_t *d = dst;
	for (size_t i = 0; i < n; i++)
		store(to, d + i * ts, load(from, s + i * fs));
}

void sp_dtype_to_f32(enum sp_dtype dt, const void *src, float *dst, size_t n)
{
	const uint8_t *s = src;
	uint16_t h;
	switch (dt) {
	case SP_DT_F32:
		memcpy(dst, src, n * 4);
		break;
	case SP_DT_BF16:
		for (size_t i = 0; i < n; i++) {
			memcpy(&h, s + 2 * i, 2);
			dst[i] = f32_from_bits((uint32_t)h << 16);
		}
		break;
	default:
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)load(dt, s + i * sp_dtype_size(dt));
		break;
	}
}

void sp_dtype_from_f32(enum sp_dtype dt, const float *src, void *dst, size_t n)
{
	uint8_t *d = dst;
	uint16_t h;
	switch (dt) {
	case SP_DT_F32:
		memcpy(dst, src, n * 4);
		break;
	case SP_DT_BF16:
		for (size_t i = 0; i < n; i++) {
			h = bf16_from_f32(src[i]);
			memcpy(d + 2 * i, &h, 2);
		}
		break;
	default:
		for (size_t i = 0; i < n; i++)
			store(dt, d + i * sp_dtype_size(dt), src[i]);
		break;
	}
}
