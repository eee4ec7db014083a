/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lossless codec's portable decoder of MODE_RANS: reads the header and the frequency
 * tables, copies the streams to padded scratch, lets the best vector decoder the CPU has take
 * the leading elements, decodes the rest with the reference scalar decoder, and checks that
 * every stream ended where it should.
 */
#include "lossless_decode.h"

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

/* Bounds-checked bit reader for the frequency tables. */
struct bitr {
	const uint8_t *p;
	uint64_t pos, len; /* in bits; len a multiple of 8 */
};

/* The bits from r->pos on, at least 57 of them, zeros past the end: a word at a time, as
 * reading the tables bit by bit took a tenth of decoding a 256 KiB chunk. */
static uint64_t bitr_peek(const struct bitr *r)
{
	uint64_t at = r->pos >> 3, end = r->len >> 3, v = 0;
	if (at + 8 <= end)
		v = load64le(r->p + at);
	else if (at < end)
		memcpy(&v, r->p + at, end - at);
	return v >> (r->pos & 7);
}

/* The next n <= 32 bits. */
static unsigned bitr_get(struct bitr *r, unsigned n, int *err)
{
	if (r->pos + n > r->len) {
		*err = 1;
		return 0;
	}
	unsigned v = (unsigned)(bitr_peek(r) & ((1ull << n) - 1));
	r->pos += n;
	return v;
}

/* An Exp-Golomb-k code: at most 16 zeros, a one, then zeros + k bits. */
static unsigned eg_get(struct bitr *br, unsigned k, int *err)
{
	uint64_t w = bitr_peek(br);
	unsigned zeros = w ? (unsigned)__builtin_ctzll(w) : 64;
	if (zeros > 16 || br->pos + zeros + 1 > br->len) {
		*err = 1;
		return 0;
	}
	br->pos += zeros + 1;
	return (1u << (zeros + k)) + bitr_get(br, zeros + k, err) - (1u << k);
}

/* What a symbol stands for: a = hi | (r raw bits), negated when neg. */
struct detok {
	uint64_t hi;
	uint8_t r, neg;
};

static void build_detok(struct dtinfo di, struct detok dt[NSYM])
{
	unsigned t = di.tbits;
	memset(dt, 0, NSYM * sizeof *dt);
	for (unsigned y = 1; y <= max_sym(di); y++) {
		unsigned tok = (y + 1) / 2, r = tok < (2u << t) ? 0 : (tok >> t) - 1;
		dt[y] = (struct detok){(uint64_t)(tok - (r << t)) << r, (uint8_t)r, (uint8_t)!(y & 1)};
	}
}

/*
 * The decoder entries of a symbol: v | j << PROB_BITS for its j-th slot, j < f. Four at a
 * time, as building tables takes a fair share of decoding a small chunk.
 */
static void fill_slots(uint32_t *row, unsigned f, uint32_t v)
{
	typedef uint32_t u32x4 __attribute__((vector_size(16)));
	u32x4 e = {v, v | 1u << PROB_BITS, v | 2u << PROB_BITS, v | 3u << PROB_BITS};
	unsigned j = 0;
	for (; j + 4 <= f; j += 4, e += 4u << PROB_BITS)
		memcpy(row + j, &e, sizeof e);
	for (; j < f; j++)
		row[j] = v | j << PROB_BITS;
}

/* Reads one frequency table (see put_table) into the decoder table of group g. */
static int get_table(struct sp_lossless *s, struct bitr *br, unsigned g, unsigned maxsym)
{
	int err = 0;
	uint8_t q[NSYM] = {0};
	unsigned last = bitr_get(br, 8, &err), k = bitr_get(br, 2, &err);
	if (err || last > maxsym)
		return -1;
	for (unsigned y = 0; y <= last; y++) {
		unsigned z = eg_get(br, k, &err);
		int v = q_pred(q, y) + (z & 1 ? -(int)((z + 1) / 2) : (int)(z / 2));
		if (err || v < 0 || v > QMAX)
			return -1;
		q[y] = (uint8_t)v;
	}
	struct table t;
	if (sp_lossless_derive_freqs(q, &t))
		return -1;
	for (unsigned y = 0; y <= last; y++)
		fill_slots(s->dtab[g] + t.cum[y], t.freq[y], (t.freq[y] - 1u) | y << 24);
	return 0;
}

/* The scalar decoder's working set, in locals so that stores to out cannot alias it. */
struct cursor {
	const uint32_t *dtab;
	const uint8_t *group, *p[NWS], *raw;
	uint64_t pos;
};

/*
 * Decodes one element with rANS state x. Branch-free apart from the loop: the renormalising
 * read always loads a word and keeps it only when needed, as a branch on it would mispredict
 * often. The caller checks the stream bounds, which the padding makes safe to overrun a little.
 */
static inline __attribute__((always_inline)) void decode_one(struct dtinfo di,
							     const struct detok *dt,
							     struct cursor *c, const uint8_t **p,
							     uint32_t *x, const uint8_t *base,
							     uint8_t *out)
{
	unsigned w = di.width;
	uint64_t b = load_word(base, w);
	uint32_t e = c->dtab[c->group[key_of(b, di)] * PROB_SCALE + (*x & (PROB_SCALE - 1))];
	uint32_t y = ((e & (PROB_SCALE - 1)) + 1) * (*x >> PROB_BITS) + ((e >> PROB_BITS) & (PROB_SCALE - 1));
	uint32_t more = y < RANS_L;
	uint16_t word;
	memcpy(&word, *p, 2);
	*x = y << (16 * more) | (word & (0u - more)); /* arithmetic, not ?:, which gcc branches */
	*p += 2 * more;
	const struct detok *d = &dt[e >> 24];
	uint64_t a = d->hi;
	unsigned r = d->r;
	if (w == 8 && r > 32) { /* a 64-bit read yields at least 57 bits */
		a |= load64le(c->raw + (c->pos >> 3)) >> (c->pos & 7) & 0xffffffffu;
		c->pos += 32;
		r -= 32;
		a |= (load64le(c->raw + (c->pos >> 3)) >> (c->pos & 7) & ((1ull << r) - 1)) << 32;
	} else {
		a |= load64le(c->raw + (c->pos >> 3)) >> (c->pos & 7) & ((1ull << r) - 1);
	}
	c->pos += r;
	uint64_t neg = 0 - (uint64_t)(d->neg ^ mirror(b, di)), diff = (a ^ neg) - neg;
	store_word(out, ord((ord(b, di) + diff) & word_mask(w), di), w);
}

/*
 * The reference decoder: decodes elements i..ne, i a multiple of NSTATES, so that element i
 * takes state i mod NSTATES. Checks the bounds once per NSTATES elements, which read at most
 * 2 * NSTATES bytes of words and NSTATES * 64 bits of raw bits past them.
 */
static inline __attribute__((always_inline)) int decode_scalar_dt(struct dtinfo di,
								  struct rans_stream *rs,
								  const uint8_t *base, uint8_t *out,
								  size_t i, size_t ne)
{
	struct detok dt[NSYM];
	build_detok(di, dt);
	struct cursor c = {rs->dtab, rs->group, {0}, rs->raw, rs->pos};
	memcpy(c.p, rs->p, sizeof c.p);
	uint32_t x[NSTATES];
	memcpy(x, rs->st, sizeof x);
	unsigned w = di.width;
	for (; i < ne; i += NSTATES) {
		for (unsigned v = 0; v < NWS; v++)
			if (c.p[v] > rs->end[v])
				return -1;
		if (c.pos > rs->raw_bits)
			return -1;
		for (unsigned k = 0; k < NSTATES && i + k < ne; k++)
			decode_one(di, dt, &c, &c.p[k / (NSTATES / NWS)], &x[k], base + (i + k) * w,
				   out + (i + k) * w);
	}
	memcpy(rs->p, c.p, sizeof c.p);
	rs->pos = c.pos;
	memcpy(rs->st, x, sizeof x);
	return 0;
}

enum simd sp_lossless_simd_level(const struct sp_lossless *s)
{
#ifdef HAVE_AVX2
	if (s->simd >= SIMD_AVX512 && sp_lossless_have_avx512())
		return SIMD_AVX512;
	if (s->simd >= SIMD_AVX2 && sp_lossless_have_avx2())
		return SIMD_AVX2;
#else
	(void)s;
#endif
	return SIMD_NONE;
}

static int decode_scalar(enum sp_dtype dt, struct rans_stream *rs, const uint8_t *base,
			 uint8_t *out, size_t i, size_t ne)
{
	switch (dt) {
#define X(d) case d: return decode_scalar_dt(dtinfo(d), rs, base, out, i, ne);
	DT_CASES(X)
#undef X
	case SP_DT_U16: return decode_scalar_dt(dtinfo(SP_DT_I16), rs, base, out, i, ne);
	case SP_DT_U32: return decode_scalar_dt(dtinfo(SP_DT_I32), rs, base, out, i, ne);
	case SP_DT_U64: return decode_scalar_dt(dtinfo(SP_DT_I64), rs, base, out, i, ne);
	default: return decode_scalar_dt(dtinfo(SP_DT_U8), rs, base, out, i, ne);
	}
}

/* Decodes the elements, the vector decoder taking what it can, and checks the end state. */
static int decode_elements(const struct sp_lossless *s, enum sp_dtype dt, struct rans_stream *rs,
			   const uint8_t *base, uint8_t *out, size_t ne)
{
	ptrdiff_t done = 0;
	switch (sp_lossless_simd_level(s)) {
#ifdef HAVE_AVX2
	case SIMD_AVX512: done = sp_lossless_decode_avx512(dt, rs, base, out, ne); break;
	case SIMD_AVX2: done = sp_lossless_decode_avx2(s, dt, rs, base, out, ne); break;
#endif
	default: break;
	}
	if (done < 0)
		return -1;
	unsigned w = dtinfo(dt).width;
	if (decode_scalar(dt, rs, base + done * w, out + done * w, 0, ne - (size_t)done))
		return -1;
	/* The encoder started every state at RANS_L; anything else means corrupt input. */
	for (unsigned k = 0; k < NSTATES; k++)
		if (rs->st[k] != RANS_L)
			return -1;
	for (unsigned v = 0; v < NWS; v++)
		if (rs->p[v] != rs->end[v])
			return -1;
	return (rs->pos + 7) / 8 * 8 == rs->raw_bits ? 0 : -1;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int sp_lossless_decode_rans(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			    const uint8_t *p, const uint8_t *end, uint8_t *out, size_t n)
{
	struct dtinfo di = dtinfo(dt);
	unsigned nkeys = 1u << key_bits(di), ng;
	uint64_t gkey[GMAX + 1], tab_len, len[NWS + 1]; /* the word streams, then the raw bits */
	if (p >= end || (ng = *p++) < 1 || ng > GMAX)
		return -1;
	gkey[0] = 0;
	gkey[ng] = nkeys;
	for (unsigned g = 1; g < ng; g++)
		if (get_varint(&p, end, &gkey[g]) || gkey[g] <= gkey[g - 1] || gkey[g] >= nkeys)
			return -1;
	if (get_varint(&p, end, &tab_len))
		return -1;
	for (unsigned v = 0; v <= NWS; v++)
		if (get_varint(&p, end, &len[v]) || (v < NWS && len[v] % 2))
			return -1;
	if ((size_t)(end - p) < 4 * NSTATES)
		return -1;
	struct rans_stream rs;
	for (unsigned k = 0; k < NSTATES; k++, p += 4)
		if ((rs.st[k] = get_u32(p)) < RANS_L)
			return -1;
	uint64_t left = (uint64_t)(end - p);
	if (tab_len > left)
		return -1;
	left -= tab_len;
	for (unsigned v = 0; v < NWS; v++) {
		if (len[v] > left)
			return -1;
		left -= len[v];
	}
	if (len[NWS] != left || left > n + 8)
		return -1;

	struct bitr br = {p, 0, 8 * tab_len};
	for (unsigned g = 0; g < ng; g++) {
		if (get_table(s, &br, g, max_sym(di)))
			return -1;
		for (uint64_t k = gkey[g]; k < gkey[g + 1]; k++)
			s->group[k] = (uint8_t)g;
	}
	/* The streams get copied to padded scratch, so that the hot loops may read past them. */
	if (!sp_scratch_get(&s->buf, (size_t)(end - p) - tab_len + (NWS + 1) * PAD))
		return -1;
	const uint8_t *src = p + tab_len;
	uint8_t *dst = s->buf.p;
	for (unsigned v = 0; v <= NWS; v++) {
		memcpy(dst, src, len[v]);
		memset(dst + len[v], 0, PAD);
		if (v < NWS) {
			rs.p[v] = dst;
			rs.end[v] = dst + len[v];
		}
		src += len[v];
		dst += len[v] + PAD;
	}
	rs.raw = dst - len[NWS] - PAD;
	rs.pos = 0;
	rs.raw_bits = 8 * len[NWS];
	rs.dtab = s->dtab[0];
	rs.group = s->group;
	rs.gkey = gkey;
	rs.ng = ng;
	return decode_elements(s, dt, &rs, base, out, n / di.width);
}
