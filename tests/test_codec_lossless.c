/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the lossless delta codec: round trips of every dtype on random and on
 * fine-tune-like data at awkward sizes, and decoding of truncated, corrupted and random input,
 * which must fail cleanly (run under -fsanitize=address,undefined to catch stray accesses).
 * Every decode runs with the scalar reference decoder and with each vector decoder the CPU
 * has (AVX2, AVX-512), which must all agree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_lossless.h"
#include "testutil.h"

static const struct {
	enum sp_dtype dt;
	const char *name;
	unsigned width;
	int is_float;
} dtypes[] = {
	{SP_DT_F64, "F64", 8, 1},    {SP_DT_F32, "F32", 4, 1},         {SP_DT_F16, "F16", 2, 1},
	{SP_DT_BF16, "BF16", 2, 1},  {SP_DT_F8_E4M3, "F8_E4M3", 1, 1}, {SP_DT_F8_E5M2, "F8_E5M2", 1, 1},
	{SP_DT_I64, "I64", 8, 0},    {SP_DT_I32, "I32", 4, 0},         {SP_DT_I16, "I16", 2, 0},
	{SP_DT_I8, "I8", 1, 0},      {SP_DT_U8, "U8", 1, 0},           {SP_DT_U16, "U16", 2, 0},
	{SP_DT_U32, "U32", 4, 0},    {SP_DT_U64, "U64", 8, 0},         {SP_DT_BOOL, "BOOL", 1, 0},
	{SP_DT_BYTES, "BYTES", 1, 0},
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static void put_word(uint8_t *p, uint64_t v, unsigned w)
{
	memcpy(p, &v, w); /* little-endian host */
}

/* A small signed step, mostly a few units, sometimes large. */
static int64_t step(void)
{
	uint64_t r = rnd();
	int64_t mag = (int64_t)(r >> 40 & 0xf);
	if ((r & 0xff) < 8)
		mag = (int64_t)(r >> 20 & 0xffff);
	else if ((r & 0xff) < 40)
		mag = 0;
	return r & 0x100 ? -mag : mag;
}

/*
 * Fine-tune-like data: a base of floats near +-0.02 (or small integers) and a fine-tune a few
 * units of the last place away, with special values sprinkled into both.
 */
static void fill_realistic(uint8_t *base, uint8_t *ft, size_t ne, unsigned w, int is_float)
{
	static const uint64_t specials[] = {0, 1, 0x7f, 0x80, 0xff, 0x7c00, 0x7f80, 0x7fc0, 0x8000,
					    0xffff, 0x7f800000, 0x7fc00001, 0x80000000, 0x00000001,
					    0x7ff0000000000000ull, 0x8000000000000000ull, ~0ull};
	for (size_t i = 0; i < ne; i++) {
		uint64_t b;
		if (is_float) { /* exponent just below the middle of the range: |x| ~ 0.02 */
			unsigned bits = 8 * w, ebits = w == 8 ? 11 : w == 4 ? 8 : w == 2 ? 8 : 4;
			uint64_t e = (1ull << (ebits - 1)) - 7 + rnd() % 4;
			b = e << (bits - 1 - ebits) | (rnd() & ((1ull << (bits - 1 - ebits)) - 1));
			b |= (rnd() & 1) << (bits - 1);
		} else {
			b = (uint64_t)(int64_t)(rnd() % 2001) - 1000;
		}
		uint64_t f = b + (uint64_t)step();
		if (rnd() % 64 == 0)
			b = specials[rnd() % (sizeof specials / sizeof *specials)];
		if (rnd() % 64 == 0)
			f = specials[rnd() % (sizeof specials / sizeof *specials)];
		put_word(base + i * w, b, w);
		put_word(ft + i * w, f, w);
	}
}

/*
 * Decodes with the scalar decoder and each vector decoder the CPU has: all must return the
 * same, and the same output when they succeed. Returns what they return.
 */
static int decode_both(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
		       const uint8_t *enc, size_t len, uint8_t *out, size_t n)
{
	sp_lossless_set_simd(s, 0);
	int r = sp_lossless_decode(s, dt, base, enc, len, out, n);
	uint8_t *vout = malloc(n + 1);
	for (int level = 1; level <= 2; level++) {
		if (sp_lossless_set_simd(s, level) != level)
			continue;
		memcpy(vout, out, n);
		CHECK(sp_lossless_decode(s, dt, base, enc, len, vout, n) == r);
		if (r == 0)
			CHECK(!memcmp(out, vout, n));
	}
	free(vout);
	return r;
}

/* Encodes ft against base and checks that it decodes back; returns the encoded size. */
static size_t roundtrip(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			const uint8_t *ft, size_t n, int level, uint8_t **enc_out)
{
	size_t cap = sp_lossless_bound(n);
	uint8_t *enc = malloc(cap), *out = malloc(n + 1);
	size_t len = sp_lossless_encode(s, dt, base, ft, n, enc, cap, level);
	CHECK(len > 0 && len <= cap);
	if (len) {
		memset(out, 0xa5, n + 1);
		CHECK(decode_both(s, dt, base, enc, len, out, n) == 0);
		CHECK(!memcmp(out, ft, n));
		CHECK(out[n] == 0xa5);
	}
	free(out);
	if (enc_out)
		*enc_out = enc;
	else
		free(enc);
	return len;
}

/* Decoding damaged input must fail or succeed without touching memory it does not own. */
static void check_damage(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			 const uint8_t *enc, size_t len, size_t n)
{
	uint8_t *out = malloc(n + 1), *bad = malloc(len + 1);
	size_t step_len = len > 64 ? len / 61 + 1 : 1;
	for (size_t cut = 0; cut < len; cut += step_len) { /* exact copies: ASan sees overreads */
		uint8_t *trunc = malloc(cut + 1);
		memcpy(trunc, enc, cut);
		CHECK(decode_both(s, dt, base, trunc, cut, out, n) == -1);
		free(trunc);
	}
	for (int trial = 0; trial < 200; trial++) {
		memcpy(bad, enc, len);
		for (int k = 1 + (int)(rnd() % 4); k > 0; k--)
			bad[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
		int r = decode_both(s, dt, base, bad, len, out, n);
		CHECK(r == 0 || r == -1);
	}
	uint8_t *longer = malloc(len + 1);
	memcpy(longer, enc, len);
	longer[len] = 0;
	CHECK(decode_both(s, dt, base, longer, len + 1, out, n) == -1);
	if (n)
		CHECK(decode_both(s, dt, base, enc, len, out, n - 1) == -1 || len == 2);
	free(longer);
	free(bad);
	free(out);
}

static void test_dtype(struct sp_lossless *s, unsigned d)
{
	unsigned w = dtypes[d].width;
	/* Around the vector decoder's steps (16 and 32 elements) and blocks (2048) too. */
	static const size_t counts[] = {0, 1, 2, 3, 5, 7, 31, 33, 48, 64, 1001, 2079, 4096, 65537};
	for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
		size_t ne = counts[c], n = ne * w;
		uint8_t *base = malloc(n + 1), *ft = malloc(n + 1), *enc;
		for (int kind = 0; kind < 3; kind++) {
			if (kind == 0) {
				fill_random(base, n);
				fill_random(ft, n);
			} else if (kind == 1) {
				fill_realistic(base, ft, ne, w, dtypes[d].is_float);
			} else {
				memcpy(ft, base, n); /* identical but one element */
				if (ne)
					ft[(ne / 2) * w] ^= 1;
			}
			int level = kind == 1 && c % 2 ? 19 : c % 3 ? 0 : 1;
			size_t len = roundtrip(s, dtypes[d].dt, base, ft, n, level, &enc);
			if (kind == 1 && ne >= 4096)
				CHECK(len < n * 3 / 4); /* a few units of difference must compress */
			if (len && ne <= 4096)
				check_damage(s, dtypes[d].dt, base, enc, len, n);
			free(enc);
		}
		free(base);
		free(ft);
	}
}

/* Every 16-bit pattern against every other in some order: NaNs, infinities, -0, denormals. */
static void test_all_patterns(struct sp_lossless *s)
{
	size_t ne = 65536, n = 2 * ne;
	uint8_t *base = malloc(n), *ft = malloc(n);
	for (size_t i = 0; i < ne; i++) {
		put_word(base + 2 * i, i, 2);
		put_word(ft + 2 * i, (i * 40503u + 12345u) & 0xffff, 2);
	}
	roundtrip(s, SP_DT_BF16, base, ft, n, 0, NULL);
	roundtrip(s, SP_DT_F16, base, ft, n, 0, NULL);
	roundtrip(s, SP_DT_BF16, ft, base, n, 0, NULL);
	free(base);
	free(ft);
}

static void test_errors(struct sp_lossless *s)
{
	uint8_t base[8] = {0}, ft[8] = {1, 2, 3, 4, 5, 6, 7, 8}, dst[64], out[8];
	CHECK(sp_lossless_encode(s, SP_DT_F32, base, ft, 6, dst, sizeof dst, 0) == 0); /* not whole */
	CHECK(sp_lossless_encode(s, SP_DT_F32, base, ft, 8, dst, 1, 0) == 0);          /* no room */
	CHECK(sp_lossless_decode(s, SP_DT_F32, base, dst, 0, out, 8) == -1);
	size_t len = sp_lossless_encode(s, SP_DT_F32, base, ft, 8, dst, sizeof dst, 0);
	CHECK(len > 0);
	dst[0] ^= 0xff; /* unknown version */
	CHECK(sp_lossless_decode(s, SP_DT_F32, base, dst, len, out, 8) == -1);
	/* Random input behind every mode byte must be rejected or decoded, never overrun. */
	uint8_t junk[300];
	for (int trial = 0; trial < 20000; trial++) {
		size_t jl = 2 + rnd() % (sizeof junk - 2);
		fill_random(junk, jl);
		junk[0] = 1;
		junk[1] = (uint8_t)(rnd() % 5);
		uint8_t *exact = malloc(jl);
		memcpy(exact, junk, jl);
		unsigned d = (unsigned)(rnd() % (sizeof dtypes / sizeof *dtypes));
		uint8_t obase[64] = {0}, oout[64];
		size_t on = (64 / dtypes[d].width) * dtypes[d].width;
		int r = decode_both(s, dtypes[d].dt, obase, exact, jl, oout, on);
		CHECK(r == 0 || r == -1);
		free(exact);
	}
}

/* One state serves many chunks of any dtype and size in turn. */
static void test_reuse(struct sp_lossless *s)
{
	size_t ne = 1u << 19, n = 2 * ne;
	uint8_t *base = malloc(n), *ft = malloc(n);
	fill_realistic(base, ft, ne, 2, 1);
	size_t big = roundtrip(s, SP_DT_BF16, base, ft, n, 3, NULL);
	size_t again = roundtrip(s, SP_DT_BF16, base, ft, n, 3, NULL);
	CHECK(big == again); /* encoding is deterministic and leaves no state behind */
	roundtrip(s, SP_DT_F32, base, ft, n, 0, NULL);
	roundtrip(s, SP_DT_BF16, base, ft, 2 * 3, 0, NULL);
	free(base);
	free(ft);
}

int main(void)
{
	struct sp_lossless *s = sp_lossless_new();
	CHECK(s != NULL);
	if (!s)
		return 1;
	for (unsigned d = 0; d < sizeof dtypes / sizeof *dtypes; d++) {
		int before = test_failures;
		test_dtype(s, d);
		if (test_failures != before)
			fprintf(stderr, "dtype %s failed\n", dtypes[d].name);
	}
	test_all_patterns(s);
	test_errors(s);
	test_reuse(s);
	if (!test_failures)
		printf("test_codec_lossless: ok (vector decoders tested: %s)\n",
		       (const char *[]){"none", "AVX2", "AVX2, AVX-512"}[sp_lossless_set_simd(s, 2)]);
	sp_lossless_free(s);
	return test_done();
}
