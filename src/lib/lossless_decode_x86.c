/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lossless codec's x86 vector decoders of MODE_RANS for 16-bit dtypes (bf16, f16, i16):
 * AVX2 (two vectors of 8 states) and AVX-512 (one of 16). Each decodes exactly what the
 * portable decoder in lossless_decode.c does; the tests compare them on every input.
 */
#include "lossless_decode.h"

#ifdef HAVE_AVX2
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,popcnt")))
#define VBLOCK 2048 /* elements whose groups the vector decoder looks up ahead, in one go */

/* ord() of 16-bit floats held in 32-bit lanes. */
static inline __attribute__((always_inline)) AVX2 __m256i ord16x8(__m256i w)
{
	__m256i sign = _mm256_srai_epi32(_mm256_slli_epi32(w, 16), 31);
	return _mm256_xor_si256(w, _mm256_and_si256(sign, _mm256_set1_epi32(0x7fff)));
}

/*
 * Inclusive prefix sums of the lanes of v. Within each 128-bit half by byte shifts, then the
 * low half's total is added to the high half.
 */
static inline __attribute__((always_inline)) AVX2 __m256i prefix_sum8(__m256i v)
{
	v = _mm256_add_epi32(v, _mm256_slli_si256(v, 4));
	v = _mm256_add_epi32(v, _mm256_slli_si256(v, 8));
	__m256i low_total = _mm256_shuffle_epi32(v, 0xff);
	return _mm256_add_epi32(v, _mm256_permute2x128_si256(low_total, low_total, 0x08));
}

/*
 * The r[j] bits at bit offset off[j] of the 16 bytes at p, per lane; off + r <= 103. Each lane
 * picks the 4 bytes that hold its bits with a byte shuffle, which is much cheaper than a
 * gather. The offsets go as far as 91, 7 lanes of 12 bits after the 7 bits of a partial byte.
 */
static inline __attribute__((always_inline)) AVX2 __m256i bits16x8(const uint8_t *p, __m256i off,
								  __m256i r)
{
	const __m256i splat = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12,
					       0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
	__m256i win = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
	__m256i idx = _mm256_shuffle_epi8(_mm256_srli_epi32(off, 3), splat);
	idx = _mm256_add_epi32(idx, _mm256_set1_epi32(0x03020100));
	__m256i v = _mm256_srlv_epi32(_mm256_shuffle_epi8(win, idx),
				      _mm256_and_si256(off, _mm256_set1_epi32(7)));
	return _mm256_andnot_si256(_mm256_sllv_epi32(_mm256_set1_epi32(-1), r), v);
}

/*
 * The groups of 32 elements of 16 bits at base, to grp: a group is a range of keys, so an
 * element's group is the number of groups after the first that start at or below its key.
 * Counting those for many keys at a time beats looking each key up.
 */
static inline __attribute__((always_inline)) AVX2 void groups16x32(struct dtinfo di,
								  const __m256i *start,
								  unsigned ng,
								  const uint8_t *base,
								  uint8_t *grp)
{
	unsigned kb = key_bits(di);
	const __m256i mask = _mm256_set1_epi16((1 << kb) - 1);
	__m256i k0 = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)base), 15 - kb), mask);
	__m256i k1 = _mm256_and_si256(_mm256_srli_epi16(_mm256_loadu_si256((const __m256i *)base + 1), 15 - kb), mask);
	__m256i g0 = _mm256_setzero_si256(), g1 = g0;
	for (unsigned j = 1; j < ng; j++) {
		g0 = _mm256_sub_epi16(g0, _mm256_cmpgt_epi16(k0, start[j]));
		g1 = _mm256_sub_epi16(g1, _mm256_cmpgt_epi16(k1, start[j]));
	}
	__m256i g = _mm256_permute4x64_epi64(_mm256_packus_epi16(g0, g1), 0xd8);
	_mm256_storeu_si256((__m256i *)grp, g);
}

/* The vector decoder's working set; the streams advance by the elements decoded. */
struct vcursor {
	const uint32_t *dtab;
	const uint8_t (*perm)[8];
	const uint8_t *raw;
	size_t pos;
};

/*
 * decode_one for 8 elements of 16 bits, one per lane, with the states x and the groups grp:
 * lane j is element j, so of the words and of the raw bits, which both come in element
 * order, it takes those after the ones of lanes 0..j-1.
 */
static inline __attribute__((always_inline)) AVX2 __m256i step16x8(struct dtinfo di,
								  struct vcursor *c,
								  const uint8_t **p, __m256i x,
								  const uint8_t *grp,
								  const uint8_t *base,
								  uint8_t *out)
{
	const __m256i zero = _mm256_setzero_si256(), one = _mm256_set1_epi32(1);
	const __m256i low12 = _mm256_set1_epi32(PROB_SCALE - 1);
	__m256i row = _mm256_slli_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)grp)),
					PROB_BITS);
	__m256i e = _mm256_i32gather_epi32((const int *)c->dtab,
					   _mm256_add_epi32(row, _mm256_and_si256(x, low12)), 4);
	__m256i f = _mm256_add_epi32(_mm256_and_si256(e, low12), one);
	__m256i y = _mm256_add_epi32(_mm256_mullo_epi32(f, _mm256_srli_epi32(x, PROB_BITS)),
				     _mm256_and_si256(_mm256_srli_epi32(e, PROB_BITS), low12));

	/* Renormalisation: the lanes below RANS_L take the next words, in lane order. */
	__m256i more = _mm256_cmpeq_epi32(_mm256_srli_epi32(y, 16), zero);
	unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(more));
	__m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)*p));
	__m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)c->perm[m]));
	words = _mm256_permutevar8x32_epi32(words, idx);
	x = _mm256_blendv_epi8(y, _mm256_or_si256(_mm256_slli_epi32(y, 16), words), more);
	*p += 2 * (unsigned)__builtin_popcount(m);

	/* The magnitude a = hi | r raw bits, computed as build_detok does. */
	unsigned t = di.tbits;
	__m256i sym = _mm256_srli_epi32(e, 24);
	__m256i tok = _mm256_srli_epi32(_mm256_add_epi32(sym, one), 1);
	__m256i r = _mm256_max_epi32(_mm256_sub_epi32(_mm256_srli_epi32(tok, t), one), zero);
	__m256i hi = _mm256_sllv_epi32(_mm256_sub_epi32(tok, _mm256_slli_epi32(r, t)), r);
	__m256i end = prefix_sum8(r);
	__m256i off = _mm256_add_epi32(_mm256_set1_epi32((int)(c->pos & 7)), _mm256_sub_epi32(end, r));
	__m256i a = _mm256_or_si256(hi, bits16x8(c->raw + (c->pos >> 3), off, r));
	c->pos += (uint32_t)_mm256_extract_epi32(end, 7);

	__m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)base));
	__m256i neg = _mm256_andnot_si256(sym, one);
	if (di.ebits) {
		neg = _mm256_xor_si256(neg, _mm256_srli_epi32(b, 15));
		b = ord16x8(b);
	}
	neg = _mm256_sub_epi32(zero, neg);
	__m256i o = _mm256_add_epi32(b, _mm256_sub_epi32(_mm256_xor_si256(a, neg), neg));
	o = _mm256_and_si256(o, _mm256_set1_epi32(0xffff));
	if (di.ebits)
		o = ord16x8(o);
	o = _mm256_permute4x64_epi64(_mm256_packus_epi32(o, o), 0x08);
	_mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(o));
	return x;
}

/*
 * Decodes ne elements of 16 bits, ne a multiple of 32: two vectors of 8 states, whose
 * dependency chains (gather, multiply, renormalisation) overlap. The groups of a block of
 * elements are found first, without gathers, which are slow. Checks the bounds once per
 * NSTATES elements, which read at most 16 bytes of each word stream (+ a 16-byte load) and
 * 192 bits of raw bits (+ a 16-byte load) past them.
 */
static inline __attribute__((always_inline)) AVX2 int decode_avx2_dt(struct dtinfo di,
								     const struct sp_lossless *s,
								     struct rans_stream *rs,
								     const uint8_t *base,
								     uint8_t *out, size_t ne)
{
	struct vcursor c = {rs->dtab, s->perm, rs->raw, rs->pos};
	const uint8_t *p0 = rs->p[0], *p1 = rs->p[1];
	__m256i x0 = _mm256_loadu_si256((const __m256i *)rs->st);
	__m256i x1 = _mm256_loadu_si256((const __m256i *)rs->st + 1);
	uint8_t grp[VBLOCK];
	__m256i start[GMAX]; /* start[g] = first key of group g - 1, for a signed > */
	for (unsigned g = 1; g < rs->ng; g++)
		start[g] = _mm256_set1_epi16((short)(rs->gkey[g] - 1));
	for (size_t i0 = 0; i0 < ne; i0 += VBLOCK) {
		size_t nb = ne - i0 < VBLOCK ? ne - i0 : VBLOCK;
		for (size_t i = 0; i < nb; i += 32)
			groups16x32(di, start, rs->ng, base + 2 * (i0 + i), grp + i);
		for (size_t i = 0; i < nb; i += NSTATES) {
			if (p0 > rs->end[0] || p1 > rs->end[1] || c.pos > rs->raw_bits)
				return -1;
			const uint8_t *b = base + 2 * (i0 + i);
			uint8_t *o = out + 2 * (i0 + i);
			x0 = step16x8(di, &c, &p0, x0, grp + i, b, o);
			x1 = step16x8(di, &c, &p1, x1, grp + i + 8, b + 16, o + 16);
		}
	}
	_mm256_storeu_si256((__m256i *)rs->st, x0);
	_mm256_storeu_si256((__m256i *)rs->st + 1, x1);
	rs->p[0] = p0;
	rs->p[1] = p1;
	rs->pos = c.pos;
	return 0;
}

AVX2 ptrdiff_t sp_lossless_decode_avx2(const struct sp_lossless *s, enum sp_dtype dt,
				       struct rans_stream *rs, const uint8_t *base, uint8_t *out,
				       size_t ne)
{
	size_t blocks = ne - ne % 32; /* whole calls of groups16x32 */
	int r;
	switch (dt) {
	case SP_DT_BF16: r = decode_avx2_dt(dtinfo(SP_DT_BF16), s, rs, base, out, blocks); break;
	case SP_DT_F16: r = decode_avx2_dt(dtinfo(SP_DT_F16), s, rs, base, out, blocks); break;
	case SP_DT_I16: case SP_DT_U16:
		r = decode_avx2_dt(dtinfo(SP_DT_I16), s, rs, base, out, blocks);
		break;
	default: return 0;
	}
	return r ? -1 : (ptrdiff_t)blocks;
}

int sp_lossless_have_avx2(void)
{
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}

#define AVX512 __attribute__((target("avx2,popcnt,avx512f,avx512bw,avx512vl,avx512vbmi")))

/* ord() of 16-bit floats held in 32-bit lanes. */
static inline __attribute__((always_inline)) AVX512 __m512i ord16x16(__m512i w)
{
	__m512i sign = _mm512_srai_epi32(_mm512_slli_epi32(w, 16), 31);
	return _mm512_xor_si512(w, _mm512_and_si512(sign, _mm512_set1_epi32(0x7fff)));
}

/* Inclusive prefix sums of the lanes of v: log steps of shifting lanes up, zeros shifted in. */
static inline __attribute__((always_inline)) AVX512 __m512i prefix_sum16(__m512i v)
{
	const __m512i zero = _mm512_setzero_si512();
	v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 15));
	v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 14));
	v = _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 12));
	return _mm512_add_epi32(v, _mm512_alignr_epi32(v, zero, 8));
}

/*
 * The r[j] bits at bit offset off[j] of the 64 bytes at p, per lane; off + r <= 224. Each lane
 * picks the 4 bytes that hold its bits with a byte permutation. The offsets go as far as 187,
 * 15 lanes of 12 bits after the 7 bits of a partial byte.
 */
static inline __attribute__((always_inline)) AVX512 __m512i bits16x16(const uint8_t *p, __m512i off,
								    __m512i r)
{
	__m512i idx = _mm512_mullo_epi32(_mm512_srli_epi32(off, 3), _mm512_set1_epi32(0x01010101));
	idx = _mm512_add_epi32(idx, _mm512_set1_epi32(0x03020100));
	__m512i v = _mm512_srlv_epi32(_mm512_permutexvar_epi8(idx, _mm512_loadu_si512(p)),
				      _mm512_and_si512(off, _mm512_set1_epi32(7)));
	return _mm512_andnot_si512(_mm512_sllv_epi32(_mm512_set1_epi32(-1), r), v);
}

/*
 * The next words of the two streams for the lanes in m (lanes 0..7 from p[0], 8..15 from
 * p[1]), each lane taking the word after those of the lanes below it in its half: an expand
 * per half, which places consecutive words in the selected lanes.
 */
static inline __attribute__((always_inline)) AVX512 __m512i words16x16(const uint8_t *p[NWS],
								     __mmask16 m)
{
	__m256i w0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p[0]));
	__m256i w1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p[1]));
	w0 = _mm256_maskz_expand_epi32((__mmask8)m, w0);
	w1 = _mm256_maskz_expand_epi32((__mmask8)(m >> 8), w1);
	p[0] += 2 * (unsigned)__builtin_popcount(m & 0xff);
	p[1] += 2 * (unsigned)__builtin_popcount(m >> 8);
	return _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
}

/*
 * As groups16x32, by binary search: the group of a key is the last whose first key is at or
 * below it, and start[] (first keys, then 0x7fff up to 64 entries) is looked up with a word
 * permutation; steps is the search's first step, a power of two (0 for one group).
 */
static inline __attribute__((always_inline)) AVX512 void groups16x32_avx512(struct dtinfo di,
									   const __m512i start[2],
									   unsigned steps,
									   const uint8_t *base,
									   uint8_t *grp)
{
	unsigned kb = key_bits(di);
	__m512i k = _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(base), 15 - kb),
				     _mm512_set1_epi16((short)((1 << kb) - 1)));
	__m512i g = _mm512_setzero_si512();
	for (unsigned step = steps; step; step >>= 1) {
		__m512i cand = _mm512_add_epi16(g, _mm512_set1_epi16((short)step));
		__m512i first = _mm512_permutex2var_epi16(start[0], cand, start[1]);
		g = _mm512_mask_mov_epi16(g, _mm512_cmpge_epi16_mask(k, first), cand);
	}
	_mm256_storeu_si256((__m256i *)grp, _mm512_cvtepi16_epi8(g));
}

/* decode_one for 16 elements of 16 bits, lane j being element j and state j. */
static inline __attribute__((always_inline)) AVX512 __m512i step16x16(struct dtinfo di,
								    struct vcursor *c,
								    const uint8_t *p[NWS], __m512i x,
								    const uint8_t *grp,
								    const uint8_t *base,
								    uint8_t *out)
{
	const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
	const __m512i low12 = _mm512_set1_epi32(PROB_SCALE - 1);
	__m512i row = _mm512_slli_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)grp)),
					PROB_BITS);
	__m512i e = _mm512_i32gather_epi32(_mm512_add_epi32(row, _mm512_and_si512(x, low12)),
					   (const int *)c->dtab, 4);
	__m512i f = _mm512_add_epi32(_mm512_and_si512(e, low12), one);
	__m512i y = _mm512_add_epi32(_mm512_mullo_epi32(f, _mm512_srli_epi32(x, PROB_BITS)),
				     _mm512_and_si512(_mm512_srli_epi32(e, PROB_BITS), low12));
	__mmask16 more = _mm512_cmplt_epu32_mask(y, _mm512_set1_epi32(RANS_L));
	x = _mm512_mask_or_epi32(y, more, _mm512_slli_epi32(y, 16), words16x16(p, more));

	unsigned t = di.tbits;
	__m512i sym = _mm512_srli_epi32(e, 24);
	__m512i tok = _mm512_srli_epi32(_mm512_add_epi32(sym, one), 1);
	__m512i r = _mm512_max_epi32(_mm512_sub_epi32(_mm512_srli_epi32(tok, t), one), zero);
	__m512i hi = _mm512_sllv_epi32(_mm512_sub_epi32(tok, _mm512_slli_epi32(r, t)), r);
	__m512i end = prefix_sum16(r);
	__m512i off = _mm512_add_epi32(_mm512_set1_epi32((int)(c->pos & 7)), _mm512_sub_epi32(end, r));
	__m512i a = _mm512_or_si512(hi, bits16x16(c->raw + (c->pos >> 3), off, r));
	c->pos += (uint32_t)_mm_extract_epi32(_mm512_extracti32x4_epi32(end, 3), 3);

	__m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)base));
	__m512i neg = _mm512_andnot_si512(sym, one);
	if (di.ebits) {
		neg = _mm512_xor_si512(neg, _mm512_srli_epi32(b, 15));
		b = ord16x16(b);
	}
	neg = _mm512_sub_epi32(zero, neg);
	__m512i o = _mm512_add_epi32(b, _mm512_sub_epi32(_mm512_xor_si512(a, neg), neg));
	if (di.ebits) /* ord16x16 looks at the low 16 bits only, and so does the narrowing store */
		o = ord16x16(o);
	_mm256_storeu_si256((__m256i *)out, _mm512_cvtepi32_epi16(o));
	return x;
}

/*
 * As decode_avx2_dt, with the 16 states in one vector: one dependency chain, but half the
 * instructions and gathers twice as wide, and the groups found by binary search. Checks the
 * bounds once per step, which reads at most 16 bytes of each word stream and 192 bits of raw
 * bits (+ a 64-byte load) past them.
 */
static inline __attribute__((always_inline)) AVX512 int decode_avx512_dt(struct dtinfo di,
									 struct rans_stream *rs,
									 const uint8_t *base,
									 uint8_t *out, size_t ne)
{
	struct vcursor c = {rs->dtab, NULL, rs->raw, rs->pos};
	const uint8_t *p[NWS] = {rs->p[0], rs->p[1]};
	__m512i x = _mm512_loadu_si512(rs->st);
	uint8_t grp[VBLOCK];
	int16_t first[GMAX];
	for (unsigned g = 0; g < GMAX; g++)
		first[g] = (int16_t)(g < rs->ng ? rs->gkey[g] : 0x7fff);
	const __m512i start[2] = {_mm512_loadu_si512(first), _mm512_loadu_si512(first + 32)};
	unsigned steps = rs->ng > 1 ? 1u << (bitlen64(rs->ng - 1) - 1) : 0;
	for (size_t i0 = 0; i0 < ne; i0 += VBLOCK) {
		size_t nb = ne - i0 < VBLOCK ? ne - i0 : VBLOCK;
		for (size_t i = 0; i < nb; i += 32)
			groups16x32_avx512(di, start, steps, base + 2 * (i0 + i), grp + i);
		for (size_t i = 0; i < nb; i += NSTATES) {
			if (p[0] > rs->end[0] || p[1] > rs->end[1] || c.pos > rs->raw_bits)
				return -1;
			x = step16x16(di, &c, p, x, grp + i, base + 2 * (i0 + i), out + 2 * (i0 + i));
		}
	}
	_mm512_storeu_si512(rs->st, x);
	rs->p[0] = p[0];
	rs->p[1] = p[1];
	rs->pos = c.pos;
	return 0;
}

AVX512 ptrdiff_t sp_lossless_decode_avx512(enum sp_dtype dt, struct rans_stream *rs,
					   const uint8_t *base, uint8_t *out, size_t ne)
{
	size_t blocks = ne - ne % 32;
	int r;
	switch (dt) {
	case SP_DT_BF16: r = decode_avx512_dt(dtinfo(SP_DT_BF16), rs, base, out, blocks); break;
	case SP_DT_F16: r = decode_avx512_dt(dtinfo(SP_DT_F16), rs, base, out, blocks); break;
	case SP_DT_I16: case SP_DT_U16:
		r = decode_avx512_dt(dtinfo(SP_DT_I16), rs, base, out, blocks);
		break;
	default: return 0;
	}
	return r ? -1 : (ptrdiff_t)blocks;
}

int sp_lossless_have_avx512(void)
{
	return sp_lossless_have_avx2() && __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
	       __builtin_cpu_supports("avx512vbmi");
}
#endif
