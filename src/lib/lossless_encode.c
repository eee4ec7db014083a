/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The lossless codec's encoder: a first pass maps each element to its symbol and raw bits and
 * counts symbols per key; the keys are grouped to minimise the coded size; each group's table
 * is quantised, tuned and written; then the symbols are rANS-coded backwards.
 */
#include "lossless_encode.h"

#define HDR_MAX (3 + 10 * (GMAX + 3) + 4 * NSTATES)

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* An LSB-first bit writer: whole bytes go out at once, the last partial byte stays in acc. The
 * buffer needs 8 bytes of slack, as every put stores a whole word. */
struct bitw {
	uint8_t *p;
	uint64_t acc;
	unsigned n; /* bits in acc, below 8 between puts */
};

/* Appends the low r bits of v, r <= 32. Branch-free: the flush of a branch taken every few
 * elements at random would mispredict. */
static inline void bitw_put(struct bitw *w, uint64_t v, unsigned r)
{
	w->acc |= (v & ((1ull << r) - 1)) << w->n;
	w->n += r;
	memcpy(w->p, &w->acc, 8);
	w->p += w->n >> 3;
	w->acc >>= w->n & ~7u;
	w->n &= 7;
}

static inline void bitw_put64(struct bitw *w, uint64_t v, unsigned r)
{
	if (r > 32) {
		bitw_put(w, v, 32);
		v >>= 32;
		r -= 32;
	}
	bitw_put(w, v, r);
}

static uint8_t *bitw_flush(struct bitw *w)
{
	for (; w->n > 0; w->n = w->n > 8 ? w->n - 8 : 0) {
		*w->p++ = (uint8_t)w->acc;
		w->acc >>= 8;
	}
	return w->p;
}

/*
 * Encoder cost model of a frequency table, in bits. A coded table takes about 3 bits per used
 * symbol, but twice that works better: the entropy of a small group's own counts understates
 * what its symbols really cost, so splitting looks more profitable than it is (measured on
 * the gpt2-small fixtures: 3 -> 1.5231 MB, 6 -> 1.5072 MB for ft_sft).
 */
#define TABLE_BITS_PER_SYM 6.0
#define TABLE_BITS_FIXED 16.0

/* log2(x) for x >= 1, to about 1e-5: good enough to compare coding costs. */
static double log2_approx(double x)
{
	uint64_t b;
	memcpy(&b, &x, 8);
	int e = (int)(b >> 52) - 1023;
	b = (b & ((1ull << 52) - 1)) | (1023ull << 52);
	double m;
	memcpy(&m, &b, 8);
	double t = (m - 1) / (m + 1), t2 = t * t;
	return e + 2.8853900817779268 * t * (1 + t2 * (1.0 / 3 + t2 * (0.2 + t2 / 7)));
}

static double xlog2x(uint64_t c)
{
	return c > 1 ? (double)c * log2_approx((double)c) : 0;
}

/*
 * First pass: writes the raw bits of every element to raw and its symbol to s->sym.p, and
 * counts symbols per key. Returns the length of the raw bit stream in bytes.
 */
static inline __attribute__((always_inline)) size_t analyze_dt(struct sp_lossless *s, struct dtinfo di,
							       const uint8_t *base, const uint8_t *ft,
							       size_t ne, uint8_t *raw)
{
	struct bitw bw = {raw, 0, 0};
	unsigned w = di.width, t = di.tbits;
	uint64_t mask = word_mask(w);
	uint8_t *syms = s->sym.p; /* locals: a byte store could alias the fields of s */
	uint32_t (*hist)[NSYM] = s->hist, *keyn = s->keyn;
	for (size_t i = 0; i < ne; i++) {
		uint64_t b = load_word(base + i * w, w), f = load_word(ft + i * w, w);
		/* Branch-free: the signs and sizes of the differences are close to random, and gcc
		 * made branches of ?: here that mispredicted about every other element. */
		uint64_t d = (ord(f, di) - ord(b, di)) & mask;
		uint64_t neg = d >> (8 * w - 1);
		uint64_t a = ((d ^ (0 - neg)) + neg) & mask;
		int excess = (int)bitlen64(a | 1) - 1 - (int)t;
		unsigned r = (unsigned)(excess & ~(excess >> 31));
		unsigned tok = (r << t) + (unsigned)(a >> r);
		unsigned sym = (2 * tok - 1 + ((unsigned)neg ^ mirror(b, di))) & (0u - (a != 0));
		unsigned k = key_of(b, di);
		syms[i] = (uint8_t)sym;
		hist[k][sym]++;
		keyn[k]++;
		if (w == 8)
			bitw_put64(&bw, a, r);
		else
			bitw_put(&bw, a, r);
	}
	return (size_t)(bitw_flush(&bw) - raw);
}

static size_t analyze(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
		      const uint8_t *ft, size_t ne, uint8_t *raw)
{
	switch (dt) { /* one specialised copy per layout; unsigned types share the signed ones */
#define X(d) case d: return analyze_dt(s, dtinfo(d), base, ft, ne, raw);
	DT_CASES(X)
#undef X
	case SP_DT_U16: return analyze_dt(s, dtinfo(SP_DT_I16), base, ft, ne, raw);
	case SP_DT_U32: return analyze_dt(s, dtinfo(SP_DT_I32), base, ft, ne, raw);
	case SP_DT_U64: return analyze_dt(s, dtinfo(SP_DT_I64), base, ft, ne, raw);
	default: return analyze_dt(s, dtinfo(SP_DT_U8), base, ft, ne, raw);
	}
}

/*
 * Splits the used keys, in key order, into at most amax runs ("atoms") of at least ne / amax
 * elements each but the last, sums their histograms into s->ahist and clears s->hist for the
 * next chunk. akey[a] is the first key of atom a. Returns the number of atoms.
 */
static unsigned build_atoms(struct sp_lossless *s, unsigned nkeys, size_t ne, unsigned amax,
			    unsigned akey[GMAX])
{
	size_t min = ne / amax + 1, cur = 0;
	unsigned na = 0;
	for (unsigned k = 0; k < nkeys; k++) {
		if (!s->keyn[k])
			continue;
		if (!na || cur >= min) {
			akey[na] = k;
			memset(s->ahist[na++], 0, sizeof s->ahist[0]);
			cur = 0;
		}
		for (unsigned y = 0; y < NSYM; y++)
			s->ahist[na - 1][y] += s->hist[k][y];
		cur += s->keyn[k];
		memset(s->hist[k], 0, sizeof s->hist[k]);
		s->keyn[k] = 0;
	}
	return na;
}

/*
 * Partitions the atoms into contiguous groups minimising the estimated coded size (order-0
 * entropy of each group plus the cost of its table), by dynamic programming over the split
 * points. Writes the first atom of each group to gstart; returns the number of groups.
 */
static unsigned choose_groups(const struct sp_lossless *s, unsigned na, unsigned nsym,
			      unsigned gstart[GMAX])
{
	double best[GMAX + 1];
	unsigned from[GMAX + 1];
	uint8_t used[GMAX][NSYM]; /* the symbols each atom uses, in order: most are not */
	unsigned nused[GMAX];
	for (unsigned j = 0; j < na; j++) {
		nused[j] = 0;
		for (unsigned y = 0; y < nsym; y++)
			if (s->ahist[j][y])
				used[j][nused[j]++] = (uint8_t)y;
	}
	best[0] = 0;
	for (unsigned j = 1; j <= na; j++)
		best[j] = 1e300;
	for (unsigned i = 0; i < na; i++) {
		uint64_t acc[NSYM] = {0}, total = 0;
		double sum_xlogx = 0, xl[NSYM] = {0}; /* xl[y] = xlog2x(acc[y]) */
		unsigned nnz = 0;
		for (unsigned j = i; j < na; j++) {
			for (unsigned u = 0; u < nused[j]; u++) {
				unsigned y = used[j][u];
				uint32_t h = s->ahist[j][y];
				nnz += !acc[y];
				acc[y] += h;
				double x = xlog2x(acc[y]);
				sum_xlogx += x - xl[y];
				xl[y] = x;
				total += h;
			}
			double cost = best[i] + xlog2x(total) - sum_xlogx +
				      TABLE_BITS_PER_SYM * nnz + TABLE_BITS_FIXED;
			if (cost < best[j + 1]) {
				best[j + 1] = cost;
				from[j + 1] = i;
			}
		}
	}
	unsigned ng = 0, rev[GMAX];
	for (unsigned j = na; j > 0; j = from[j])
		rev[ng++] = from[j];
	for (unsigned g = 0; g < ng; g++)
		gstart[g] = rev[ng - 1 - g];
	return ng;
}

/*
 * Quantises counts to log weights: q = QMAX for the most frequent symbol, one step less per
 * quarter bit of lower probability, at least 1 for a used symbol, 0 for an unused one.
 */
static void quantize(const uint64_t cnt[NSYM], uint8_t q[NSYM])
{
	uint64_t cmax = 0;
	for (unsigned y = 0; y < NSYM; y++)
		cmax = cnt[y] > cmax ? cnt[y] : cmax;
	for (unsigned y = 0; y < NSYM; y++) {
		double v = cnt[y] ? QMAX + 0.5 - 4 * log2_approx((double)cmax / (double)cnt[y]) : 0;
		q[y] = (uint8_t)(v >= QMAX ? QMAX : v >= 1 ? v : cnt[y] ? 1 : 0);
	}
}

static unsigned eg_len(unsigned v, unsigned k)
{
	return 2 * bitlen64(v + (1u << k)) - 1 - k;
}

static void eg_put(struct bitw *w, unsigned v, unsigned k)
{
	v += 1u << k;
	unsigned nb = bitlen64(v);
	bitw_put(w, 1u << (nb - 1 - k), nb - k); /* nb - 1 - k zeros, then a one */
	bitw_put(w, v, nb - 1);                /* v below its leading one */
}

static unsigned zigzag(int v)
{
	return v < 0 ? 2u * (unsigned)-v - 1 : 2u * (unsigned)v;
}

/* Writes a table: last, k, then each q[y] - q_pred(q, y), y <= last, zigzagged, Exp-Golomb-k. */
static void put_table(struct bitw *w, const uint8_t q[NSYM])
{
	unsigned last = 0, best_k = 0, best_len = ~0u;
	for (unsigned y = 0; y < NSYM; y++)
		last = q[y] ? y : last;
	for (unsigned k = 0; k < 4; k++) {
		unsigned len = 0;
		for (unsigned y = 0; y <= last; y++)
			len += eg_len(zigzag(q[y] - q_pred(q, y)), k);
		if (len < best_len) {
			best_len = len;
			best_k = k;
		}
	}
	bitw_put(w, last, 8);
	bitw_put(w, best_k, 2);
	for (unsigned y = 0; y <= last; y++)
		eg_put(w, zigzag(q[y] - q_pred(q, y)), best_k);
}

/*
 * Trades table bits for coded bits: moves each log weight q[y] of a used symbol (but the most
 * frequent one, which takes the rest of the frequency) by up to TUNE_MAX quarter bits where
 * that saves more bits of the table than the symbol's cnt[y] occurrences lose, greedily in
 * table order, for the best Exp-Golomb parameter. A rare symbol's weight matters little
 * (ft_sft: 1.3 KB smaller in all).
 */
#define TUNE_MAX 6
static void tune_table(const uint64_t cnt[NSYM], uint8_t q[NSYM])
{
	/* Bits lost per occurrence when a symbol's weight is off by d quarter bits (a rare
	 * symbol's probability scaled by 2^(d/4)): -d/4 + (2^(d/4) - 1) / ln 2. */
	static const double loss[2 * TUNE_MAX + 1] = {
		0.5674, 0.4139, 0.2787, 0.1651, 0.0774, 0.0205, 0,
		0.0230, 0.0976, 0.2336, 0.4427, 0.7386, 1.1379};
	uint64_t cmax = 0;
	for (unsigned y = 0; y < NSYM; y++)
		cmax = cnt[y] > cmax ? cnt[y] : cmax;
	uint8_t best[NSYM];
	double best_cost = 1e300;
	for (unsigned k = 0; k < 4; k++) {
		uint8_t t[NSYM];
		double cost = 0;
		memcpy(t, q, NSYM);
		for (unsigned y = 0; y < NSYM; y++) {
			if (!cnt[y] || cnt[y] == cmax)
				continue;
			double bc = 1e300;
			int pred = q_pred(t, y), bq = q[y];
			for (int d = -TUNE_MAX; d <= TUNE_MAX; d++) {
				int v = q[y] + d;
				double c = v < 1 || v > QMAX ? 1e300 :
					   eg_len(zigzag(v - pred), k) + (double)cnt[y] * loss[d + TUNE_MAX];
				if (c < bc) {
					bc = c;
					bq = v;
				}
			}
			t[y] = (uint8_t)bq;
			cost += bc;
		}
		if (cost < best_cost) {
			best_cost = cost;
			memcpy(best, t, NSYM);
		}
	}
	memcpy(q, best, NSYM);
}

/*
 * rANS-encodes the symbols backwards, writing the words of stream v down from p[v]; p[v] ends
 * at the start of the words written.
 */
static inline __attribute__((always_inline)) void rans_encode_dt(const uint8_t *syms,
								  struct dtinfo di,
								  const uint8_t *base,
								  const struct table *tabs,
								  const uint8_t *lut, size_t ne,
								  uint8_t *p[NWS],
								  uint32_t st[NSTATES])
{
	uint32_t x[NSTATES]; /* locals, which the byte stores below cannot alias */
	uint8_t *out[NWS];
	memcpy(out, p, sizeof out);
	for (unsigned k = 0; k < NSTATES; k++)
		x[k] = RANS_L;
	for (size_t i = ne; i-- > 0;) {
		const struct table *t = &tabs[lut[key_of(load_word(base + i * di.width, di.width), di)]];
		unsigned k = i % NSTATES, v = k / (NSTATES / NWS), y = syms[i];
		uint32_t f = t->freq[y], xk = x[k];
		/* Branch-free, as whether a state renormalises is close to random: the word is
		 * always stored below the stream, where it is overwritten when not kept. */
		unsigned more = xk >= (uint64_t)f << (32 - PROB_BITS);
		uint16_t low = (uint16_t)xk;
		memcpy(out[v] - 2, &low, 2);
		out[v] -= 2 * more;
		xk >>= 16 * more;
		x[k] = ((xk / f) << PROB_BITS) + xk % f + t->cum[y];
	}
	memcpy(p, out, sizeof out);
	memcpy(st, x, sizeof x);
}

static void rans_encode(const struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			const struct table *tabs, const uint8_t *lut, size_t ne, uint8_t *p[NWS],
			uint32_t st[NSTATES])
{
	switch (dt) { /* one specialised copy per layout, as in analyze */
#define X(d) case d: rans_encode_dt(s->sym.p, dtinfo(d), base, tabs, lut, ne, p, st); return;
	DT_CASES(X)
#undef X
	case SP_DT_U16: rans_encode_dt(s->sym.p, dtinfo(SP_DT_I16), base, tabs, lut, ne, p, st); return;
	case SP_DT_U32: rans_encode_dt(s->sym.p, dtinfo(SP_DT_I32), base, tabs, lut, ne, p, st); return;
	case SP_DT_U64: rans_encode_dt(s->sym.p, dtinfo(SP_DT_I64), base, tabs, lut, ne, p, st); return;
	default: rans_encode_dt(s->sym.p, dtinfo(SP_DT_U8), base, tabs, lut, ne, p, st); return;
	}
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		*p++ = (uint8_t)(v >> 8 * i);
	return p;
}

size_t sp_lossless_encode_rans(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			       const uint8_t *ft, size_t ne, uint8_t *dst, size_t cap, int level)
{
	struct dtinfo di = dtinfo(dt);
	size_t raw_cap = ne * di.width + 16, rans_cap = 2 * ne + 16;
	size_t tab_cap = GMAX * (2 + NSYM * 4);
	if (!sp_scratch_get(&s->sym, ne) ||
	    !sp_scratch_get(&s->buf, raw_cap + NWS * rans_cap + tab_cap))
		return 0;
	uint8_t *raw = s->buf.p, *tab = raw + raw_cap + NWS * rans_cap;
	size_t raw_len = analyze(s, dt, base, ft, ne, raw);

	unsigned akey[GMAX], gstart[GMAX], nkeys = 1u << key_bits(di);
	unsigned na = build_atoms(s, nkeys, ne, level < 3 ? GMAX / 4 : GMAX, akey);
	unsigned ng = choose_groups(s, na, max_sym(di) + 1, gstart);

	uint8_t lut[KMAX];
	struct table *tabs = s->etab;
	struct bitw tw = {tab, 0, 0};
	for (unsigned g = 0; g < ng; g++) {
		unsigned a_end = g + 1 < ng ? gstart[g + 1] : na;
		unsigned k_end = g + 1 < ng ? akey[gstart[g + 1]] : nkeys;
		uint64_t cnt[NSYM] = {0};
		for (unsigned a = gstart[g]; a < a_end; a++)
			for (unsigned y = 0; y < NSYM; y++)
				cnt[y] += s->ahist[a][y];
		for (unsigned k = g ? akey[gstart[g]] : 0; k < k_end; k++)
			lut[k] = (uint8_t)g;
		uint8_t q[NSYM];
		quantize(cnt, q);
		tune_table(cnt, q);
		sp_lossless_derive_freqs(q, &tabs[g]);
		put_table(&tw, q);
	}
	size_t tab_len = (size_t)(bitw_flush(&tw) - tab);
	uint32_t st[NSTATES];
	uint8_t *words[NWS];
	size_t words_len[NWS], total = tab_len + raw_len;
	for (unsigned v = 0; v < NWS; v++)
		words[v] = raw + raw_cap + (v + 1) * rans_cap;
	rans_encode(s, dt, base, tabs, lut, ne, words, st);
	for (unsigned v = 0; v < NWS; v++)
		total += words_len[v] = (size_t)(raw + raw_cap + (v + 1) * rans_cap - words[v]);

	uint8_t hdr[HDR_MAX], *h = hdr;
	*h++ = VERSION;
	*h++ = MODE_RANS;
	*h++ = (uint8_t)ng;
	for (unsigned g = 1; g < ng; g++)
		h = put_varint(h, akey[gstart[g]]);
	h = put_varint(h, tab_len);
	for (unsigned v = 0; v < NWS; v++)
		h = put_varint(h, words_len[v]);
	h = put_varint(h, raw_len);
	for (unsigned k = 0; k < NSTATES; k++)
		h = put_u32(h, st[k]);
	total += (size_t)(h - hdr);
	if (total > cap)
		return 0;
	uint8_t *d = dst;
	memcpy(d, hdr, (size_t)(h - hdr));
	memcpy(d += h - hdr, tab, tab_len);
	d += tab_len;
	for (unsigned v = 0; v < NWS; v++) {
		memcpy(d, words[v], words_len[v]);
		d += words_len[v];
	}
	memcpy(d, raw, raw_len);
	return total;
}
