/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lossless delta codec: a fine-tuned tensor chunk coded against its base chunk.
 *
 * MODEL. Each element (a little-endian word of W = 8, 16, 32 or 64 bits) becomes the integer
 * difference d = ord(ft) - ord(base) mod 2^W, read as a signed W-bit number. For floats,
 * ord(w) = w ^ (sign(w) ? 2^(W-1) - 1 : 0), which maps sign-magnitude bit patterns to two's
 * complement order (an involution, so every bit pattern, NaNs included, round-trips); for
 * integers and bytes ord(w) = w. d is split into a sign and the magnitude a = |d| (a = 2^(W-1)
 * for d = -2^(W-1)), and a into a token and raw low bits, with T sub-bucket bits (T = 3 for
 * W <= 16, 2 for W = 32, 1 for W = 64):
 *     r   = max(0, bitlen(a) - 1 - T)          number of raw bits
 *     tok = r * 2^T + (a >> r)                 so a = ((tok - r * 2^T) << r) | raw
 * i.e. a < 2^(T+1) is its own token, and a larger magnitude gets its bit length and the T
 * bits below its leading one. The symbol is sym = 0 for a = 0, else 2 * tok - 1 + neg, where
 * neg = (d < 0) XOR (base is a float with its sign bit set): mirroring negative weights lets
 * both signs share statistics, since updates tend to shrink (or grow) weights of either sign
 * alike. Decoding: tok = (sym + 1) / 2, r = tok < 2^(T+1) ? 0 : (tok >> T) - 1.
 *
 * The symbols are entropy coded with static rANS, one frequency table per group of keys. The
 * key of an element is a function of its base element only: for floats the KB = min(11, ebits
 * + min(mbits, 3)) bits below the sign bit (exponent and top mantissa bits: the magnitude,
 * in steps of an eighth of an octave), as the spread of d scales with it; integer and byte
 * types have the single key 0. Groups are contiguous key ranges, which the encoder picks to
 * minimise the coded size including the tables.
 *
 * ENCODED CHUNK. All integers are little-endian; "varint" is unsigned LEB128 (at most 10
 * bytes). Byte 0 is the format version (1), byte 1 the mode:
 *   0 SAME:  nothing follows; out = base.
 *   1 RAW:   n bytes follow: out verbatim.
 *   2 ZSTD:  one zstd frame follows, holding the n bytes of the words d (W bits each, LE);
 *            out = unord(ord(base) + d) per element, unord = ord.
 *   3 RANS:  the model above:
 *       u8      G, number of groups (1..64)
 *       varint  x G-1: first key of groups 1..G-1, strictly increasing and below 2^KB
 *               (floats) or 1 (others); group 0 starts at key 0, each ends where the next
 *               starts, the last at 2^KB
 *       varint  table_len, varint words_len[0], varint words_len[1] (both even),
 *               varint raw_len
 *       u32 x 16 initial rANS decoder states, each in [2^16, 2^32)
 *       table_len bytes: the G frequency tables in group order, one bit stream, read from
 *               the least significant bit of each byte up. Per table: 8 bits `last` (the
 *               highest symbol it may use; at most the dtype's highest symbol, 2 * ((W - 1 -
 *               T) * 2^T + 2^(T+1) - 1)), 2 bits k, then for y = 0..last the value
 *               z = zigzag(q[y] - pred(y)) (zigzag(v) = 2v for v >= 0, -2v - 1 for v < 0) as
 *               an Exp-Golomb-k code: m zero bits, a one bit, then m + k bits u, LSB first,
 *               and z = 2^(m+k) + u - 2^k. q[y] in 0..48 is a log weight (0: unused), and
 *               pred(0) = 48, pred(y) = q[y-1] for y = 1, 2 and even y, q[y-2] for odd y > 2
 *               (a negative symbol is predicted by its positive twin, a positive one by the
 *               previous token). Symbols above `last` have q = 0.
 *               Frequencies (summing to 4096) follow from q: weight(q) = {16, 19, 23,
 *               27}[(q-1) mod 4] << ((q-1) div 4) for q > 0, else 0; S = sum of weights (a
 *               table with S = 0 is invalid); f[y] = floor(weight * 4096 / S), raised to 1
 *               for a used symbol. If the sum is below 4096, the first symbol of largest
 *               weight takes the rest; while it is above, the first symbol of largest
 *               frequency gives up min(excess, its f - 1). cum[y] = sum of f below y.
 *       words_len[0] bytes, then words_len[1] bytes: word streams 0 and 1, 16-bit LE words
 *               consumed by the rANS decoder; states 0..7 read stream 0, states 8..15
 *               stream 1 (so that two vectors of 8 states renormalise independently).
 *       raw_len bytes: the raw bits of all elements in element order, a bit stream LSB
 *               first; raw_len = ceil(total raw bits / 8).
 *     Decoding element i: x = state[i mod 16]; slot = x mod 4096; sym is the symbol of the
 *     element's group's table whose range [cum, cum + f) holds slot; x = f * (x >> 12) +
 *     slot - cum; if x < 2^16, x = x << 16 | next word of stream (i mod 16) div 8. Then the
 *     next r raw bits complete a, and out = unord(ord(base) + (neg ? -a : a)). At the end
 *     every state is 2^16 and every stream has been consumed exactly (the raw bits up to the
 *     last byte); anything else is malformed input.
 */
#include "codec_lossless.h"
#include "scratch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define VERSION 1
enum mode { MODE_SAME, MODE_RAW, MODE_ZSTD, MODE_RANS };

#define PROB_BITS 12
#define PROB_SCALE (1u << PROB_BITS)
#define RANS_L (1u << 16) /* states live in [RANS_L, 2^32); words are 16 bits */
#define NSTATES 16 /* interleaved rANS states: the lanes of two 256-bit vectors of u32 */
#define NWS 2 /* word streams: states 8v..8v+7 renormalise from stream v */
#define NSYM 256
#define GMAX 64
#define KEY_BITS_MAX 11 /* bits of a float's key (see the top) */
#define KMAX (1u << KEY_BITS_MAX)
#define QMAX 48 /* quantised log weights of a frequency table: 1..QMAX, 0 = absent */
#define HDR_MAX (3 + 10 * (GMAX + 3) + 4 * NSTATES)
#define DEFAULT_LEVEL 3
#define PAD (8 * NSTATES + 16) /* readable zero bytes after each stream in the decoder */

/* The decoders of 16-bit dtypes, from the reference one up; the CPU may lack the vector ones. */
enum simd { SIMD_NONE, SIMD_AVX2, SIMD_AVX512 };

struct dtinfo {
	unsigned width;  /* bytes per element */
	unsigned ebits;  /* exponent bits; 0 for integer and byte types */
	unsigned mbits;  /* mantissa bits */
	unsigned tbits;  /* T: sub-bucket bits of a token */
};

/* A group's frequency table, as the encoder builds it. */
struct table {
	uint16_t freq[NSYM], cum[NSYM];
};

struct sp_lossless {
	uint32_t (*hist)[NSYM];        /* encoder: symbol counts per key; KMAX rows, mostly untouched */
	uint32_t keyn[KMAX];           /* encoder: elements per key (rows of hist to clear) */
	uint32_t ahist[GMAX][NSYM];    /* encoder: symbol counts per atom (run of keys) */
	struct table etab[GMAX];       /* encoder: the tables of the groups */
	uint32_t dtab[GMAX][PROB_SCALE]; /* decoder: (f - 1) | (slot - cum) << 12 | sym << 24 */
	uint8_t group[KMAX];           /* decoder: key -> group */
	uint8_t perm[256][8];          /* decoder: lane -> word index, per renormalisation mask */
	enum simd simd;                /* decoder: the best vector decoder it may use */
	struct sp_scratch sym;         /* encoder: symbol per element */
	struct sp_scratch buf;         /* encoder: streams, zstd input and output; decoder: streams */
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
};

static struct dtinfo dtinfo(enum sp_dtype dt)
{
	switch (dt) {
	case SP_DT_F64: return (struct dtinfo){8, 11, 52, 1};
	case SP_DT_F32: return (struct dtinfo){4, 8, 23, 2};
	case SP_DT_F16: return (struct dtinfo){2, 5, 10, 3};
	case SP_DT_BF16: return (struct dtinfo){2, 8, 7, 3};
	case SP_DT_F8_E4M3: return (struct dtinfo){1, 4, 3, 3};
	case SP_DT_F8_E5M2: return (struct dtinfo){1, 5, 2, 3};
	case SP_DT_I64: case SP_DT_U64: return (struct dtinfo){8, 0, 0, 1};
	case SP_DT_I32: case SP_DT_U32: return (struct dtinfo){4, 0, 0, 2};
	case SP_DT_I16: case SP_DT_U16: return (struct dtinfo){2, 0, 0, 3};
	default: return (struct dtinfo){1, 0, 0, 3};
	}
}

/* Width of a key in bits: exponent and up to 3 mantissa bits of a float; 0 otherwise. */
static unsigned key_bits(struct dtinfo di)
{
	unsigned kb = di.ebits ? di.ebits + (di.mbits < 3 ? di.mbits : 3) : 0;
	return kb > KEY_BITS_MAX ? KEY_BITS_MAX : kb;
}

/* Highest valid symbol: 2 * max token, the token of a = 2^(W-1). */
static unsigned max_sym(struct dtinfo di)
{
	unsigned w = 8 * di.width, t = di.tbits;
	return 2 * ((w - 1 - t) * (1u << t) + (2u << t) - 1);
}

/* ---- element transforms (W-bit words held in uint64_t) ---- */

static inline __attribute__((always_inline)) uint64_t load_word(const uint8_t *p, unsigned width)
{
	switch (width) {
	case 1: return *p;
	case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
	case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
	default: { uint64_t v; memcpy(&v, p, 8); return v; }
	}
}

static inline __attribute__((always_inline)) void store_word(uint8_t *p, uint64_t v, unsigned width)
{
	switch (width) {
	case 1: *p = (uint8_t)v; break;
	case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
	case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
	default: memcpy(p, &v, 8); break;
	}
}

static inline uint64_t word_mask(unsigned width)
{
	return width == 8 ? ~0ull : (1ull << (8 * width)) - 1;
}

/* Sign-magnitude to two's-complement order; its own inverse. Identity for integers. */
static inline __attribute__((always_inline)) uint64_t ord(uint64_t w, struct dtinfo di)
{
	if (!di.ebits)
		return w;
	uint64_t sign = w >> (8 * di.width - 1);
	return w ^ ((0 - sign) & (word_mask(di.width) >> 1));
}

/* The magnitude bits below a float's sign order its keys by magnitude. */
static inline __attribute__((always_inline)) unsigned key_of(uint64_t w, struct dtinfo di)
{
	unsigned kb = key_bits(di);
	return kb ? (unsigned)(w >> (8 * di.width - 1 - kb)) & ((1u << kb) - 1) : 0;
}

/* 1 for a negative float: its difference is coded mirrored, so that both signs share keys. */
static inline __attribute__((always_inline)) unsigned mirror(uint64_t w, struct dtinfo di)
{
	return di.ebits ? (unsigned)(w >> (8 * di.width - 1)) : 0;
}

static inline unsigned bitlen64(uint64_t a)
{
	return a ? 64 - (unsigned)__builtin_clzll(a) : 0;
}

/* ---- small byte and bit helpers ---- */

static inline uint64_t load64le(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v; /* the codec assumes a little-endian host, as the rest of sparse does */
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

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

struct bitw {
	uint8_t *p;
	uint64_t acc;
	unsigned n;
};

/* Appends the low r bits of v, r <= 32. */
static inline void bitw_put(struct bitw *w, uint64_t v, unsigned r)
{
	w->acc |= (v & ((1ull << r) - 1)) << w->n;
	w->n += r;
	if (w->n >= 32) {
		uint32_t x = (uint32_t)w->acc;
		memcpy(w->p, &x, 4);
		w->p += 4;
		w->acc >>= 32;
		w->n -= 32;
	}
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

/* Bounds-checked bit reader for the frequency tables. */
struct bitr {
	const uint8_t *p;
	uint64_t pos, len; /* in bits */
};

static unsigned bitr_get(struct bitr *r, unsigned n, int *err)
{
	unsigned v = 0;
	for (unsigned i = 0; i < n; i++, r->pos++) {
		if (r->pos >= r->len) {
			*err = 1;
			return 0;
		}
		v |= (unsigned)(r->p[r->pos >> 3] >> (r->pos & 7) & 1) << i;
	}
	return v;
}

/* ---- state ---- */

struct sp_lossless *sp_lossless_new(void)
{
	struct sp_lossless *s = calloc(1, sizeof *s);
	if (!s || !(s->hist = calloc(KMAX, sizeof *s->hist))) { /* pages stay untouched until used */
		free(s);
		return NULL;
	}
	s->simd = SIMD_AVX512;
	for (unsigned m = 0; m < 256; m++) /* lane j of mask m takes word popcount(m & (2^j - 1)) */
		for (unsigned j = 0, c = 0; j < 8; j++)
			s->perm[m][j] = (uint8_t)(m >> j & 1 ? c++ : 0);
	return s;
}

void sp_lossless_free(struct sp_lossless *s)
{
	if (!s)
		return;
	free(s->hist);
	free(s->sym.p);
	free(s->buf.p);
	ZSTD_freeCCtx(s->cctx);
	ZSTD_freeDCtx(s->dctx);
	free(s);
}


size_t sp_lossless_bound(size_t n)
{
	return n + 2; /* the RAW mode */
}

/* ---- frequency tables (shared by encoder and decoder: part of the format) ---- */

/* The prediction of q[y]: a negative symbol from its positive twin, else the previous token. */
static int q_pred(const uint8_t *q, unsigned y)
{
	return y == 0 ? QMAX : y <= 2 ? q[y - 1] : y % 2 ? q[y - 2] : q[y - 1];
}

/* The weight of log weight q: 16 * 2^((q - 1) / 4) in exact integers. */
static uint64_t q_weight(unsigned q)
{
	static const uint8_t base[4] = {16, 19, 23, 27};
	return q ? (uint64_t)base[(q - 1) & 3] << ((q - 1) >> 2) : 0;
}

/*
 * Frequencies from log weights q[0..NSYM): f = max(1, floor(weight * 4096 / sum of weights))
 * for used symbols; then the first symbol of largest weight takes up what is left to make
 * the sum 4096, or, while the sum is above 4096, the first symbol of largest frequency gives
 * up min(excess, f - 1). Returns -1 when no symbol is used.
 */
static int derive_freqs(const uint8_t q[NSYM], struct table *t)
{
	uint64_t sum = 0;
	for (unsigned y = 0; y < NSYM; y++)
		sum += q_weight(q[y]);
	if (!sum)
		return -1;
	unsigned tot = 0, big = 0;
	for (unsigned y = 0; y < NSYM; y++) {
		uint64_t w = q_weight(q[y]);
		unsigned f = (unsigned)(w * PROB_SCALE / sum);
		t->freq[y] = (uint16_t)(w && !f ? 1 : f);
		tot += t->freq[y];
		big = w > q_weight(q[big]) ? y : big;
	}
	if (tot <= PROB_SCALE)
		t->freq[big] += (uint16_t)(PROB_SCALE - tot);
	while (tot > PROB_SCALE) {
		unsigned m = 0;
		for (unsigned y = 1; y < NSYM; y++)
			m = t->freq[y] > t->freq[m] ? y : m;
		unsigned take = tot - PROB_SCALE < t->freq[m] - 1u ? tot - PROB_SCALE : t->freq[m] - 1u;
		t->freq[m] -= (uint16_t)take;
		tot -= take;
	}
	for (unsigned y = 0, c = 0; y < NSYM; c += t->freq[y++])
		t->cum[y] = (uint16_t)c;
	return 0;
}

/* ---- encoder ---- */

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
	for (size_t i = 0; i < ne; i++) {
		uint64_t b = load_word(base + i * w, w), f = load_word(ft + i * w, w);
		uint64_t d = (ord(f, di) - ord(b, di)) & mask;
		unsigned neg = (unsigned)(d >> (8 * w - 1));
		uint64_t a = (neg ? 0 - d : d) & mask;
		unsigned bl = bitlen64(a);
		unsigned r = bl > t + 1 ? bl - 1 - t : 0;
		unsigned tok = (r << t) + (unsigned)(a >> r);
		unsigned sym = a ? 2 * tok - 1 + (neg ^ mirror(b, di)) : 0;
		unsigned k = key_of(b, di);
		s->sym.p[i] = (uint8_t)sym;
		s->hist[k][sym]++;
		s->keyn[k]++;
		if (w == 8)
			bitw_put64(&bw, a, r);
		else
			bitw_put(&bw, a, r);
	}
	return (size_t)(bitw_flush(&bw) - raw);
}

#define DT_CASES(X) \
	X(SP_DT_BF16) X(SP_DT_F16) X(SP_DT_F32) X(SP_DT_F64) X(SP_DT_F8_E4M3) X(SP_DT_F8_E5M2) \
	X(SP_DT_I8) X(SP_DT_I16) X(SP_DT_I32) X(SP_DT_I64)

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
	best[0] = 0;
	for (unsigned j = 1; j <= na; j++)
		best[j] = 1e300;
	for (unsigned i = 0; i < na; i++) {
		uint64_t acc[NSYM] = {0}, total = 0;
		double sum_xlogx = 0, xl[NSYM] = {0}; /* xl[y] = xlog2x(acc[y]) */
		unsigned nnz = 0;
		for (unsigned j = i; j < na; j++) {
			for (unsigned y = 0; y < nsym; y++) {
				uint32_t h = s->ahist[j][y];
				if (!h)
					continue;
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
static void rans_encode(const struct sp_lossless *s, struct dtinfo di, const uint8_t *base,
			const struct table *tabs, const uint8_t *lut, size_t ne, uint8_t *p[NWS],
			uint32_t st[NSTATES])
{
	for (unsigned k = 0; k < NSTATES; k++)
		st[k] = RANS_L;
	for (size_t i = ne; i-- > 0;) {
		const struct table *t = &tabs[lut[key_of(load_word(base + i * di.width, di.width), di)]];
		unsigned k = i % NSTATES;
		uint32_t f = t->freq[s->sym.p[i]], x = st[k];
		if (x >= (uint64_t)f << (32 - PROB_BITS)) {
			uint8_t *w = p[k / (NSTATES / NWS)] -= 2;
			w[0] = (uint8_t)x;
			w[1] = (uint8_t)(x >> 8);
			x >>= 16;
		}
		st[k] = ((x / f) << PROB_BITS) + x % f + t->cum[s->sym.p[i]];
	}
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		*p++ = (uint8_t)(v >> 8 * i);
	return p;
}

/* Encodes in MODE_RANS; returns the encoded size, or 0 when it does not fit cap. */
static size_t encode_rans(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
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
		derive_freqs(q, &tabs[g]);
		put_table(&tw, q);
	}
	size_t tab_len = (size_t)(bitw_flush(&tw) - tab);
	uint32_t st[NSTATES];
	uint8_t *words[NWS];
	size_t words_len[NWS], total = tab_len + raw_len;
	for (unsigned v = 0; v < NWS; v++)
		words[v] = raw + raw_cap + (v + 1) * rans_cap;
	rans_encode(s, di, base, tabs, lut, ne, words, st);
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

/* The words d = ord(ft) - ord(base), or with inverse set, out = unord(ord(base) + d) in place. */
static void diff_words(struct dtinfo di, const uint8_t *base, const uint8_t *ft, uint8_t *out,
		       size_t ne, int inverse)
{
	unsigned w = di.width;
	uint64_t mask = word_mask(w);
	for (size_t i = 0; i < ne; i++) {
		uint64_t b = ord(load_word(base + i * w, w), di), x = load_word(ft + i * w, w);
		uint64_t y = inverse ? ord((b + x) & mask, di) : (ord(x, di) - b) & mask;
		store_word(out + i * w, y, w);
	}
}

/* Encodes in MODE_ZSTD; returns the encoded size, or 0 when it does not fit cap. */
static size_t encode_zstd(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
			  const uint8_t *ft, size_t n, uint8_t *dst, size_t cap, int level)
{
	size_t zcap = ZSTD_compressBound(n);
	if (!s->cctx && !(s->cctx = ZSTD_createCCtx()))
		return 0;
	if (!sp_scratch_get(&s->buf, n + zcap))
		return 0;
	struct dtinfo di = dtinfo(dt);
	diff_words(di, base, ft, s->buf.p, n / di.width, 0);
	size_t z = ZSTD_compressCCtx(s->cctx, s->buf.p + n, zcap, s->buf.p, n, level);
	if (ZSTD_isError(z) || z + 2 > cap)
		return 0;
	dst[0] = VERSION;
	dst[1] = MODE_ZSTD;
	memcpy(dst + 2, s->buf.p + n, z);
	return z + 2;
}

size_t sp_lossless_encode(struct sp_lossless *s, enum sp_dtype dt, const void *base,
			  const void *ft, size_t n, void *dst, size_t cap, int level)
{
	struct dtinfo di = dtinfo(dt);
	uint8_t *out = dst;
	if (n % di.width || cap < 2)
		return 0;
	level = level <= 0 ? DEFAULT_LEVEL : level > 19 ? 19 : level;
	out[0] = VERSION;
	if (!memcmp(base, ft, n)) {
		out[1] = MODE_SAME;
		return 2;
	}
	/* Candidates go to dst only when smaller than what is there, so try the likely best first. */
	size_t best = n + 2 <= cap ? n + 2 : SIZE_MAX;
	size_t r = encode_rans(s, dt, base, ft, n / di.width, out, best < cap ? best - 1 : cap, level);
	best = r ? r : best;
	if (!di.ebits || level >= 10) { /* integers may carry structure that only LZ finds */
		r = encode_zstd(s, dt, base, ft, n, out, best < cap ? best - 1 : cap, level);
		best = r ? r : best;
	}
	if (best == n + 2) {
		out[1] = MODE_RAW;
		memcpy(out + 2, ft, n);
	}
	return best == SIZE_MAX ? 0 : best;
}

/* ---- decoder ---- */

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

static unsigned eg_get(struct bitr *br, unsigned k, int *err)
{
	unsigned zeros = 0;
	while (!bitr_get(br, 1, err))
		if (*err || ++zeros > 16) {
			*err = 1;
			return 0;
		}
	return (1u << (zeros + k)) + bitr_get(br, zeros + k, err) - (1u << k);
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
	if (derive_freqs(q, &t))
		return -1;
	for (unsigned y = 0; y <= last; y++)
		fill_slots(s->dtab[g] + t.cum[y], t.freq[y], (t.freq[y] - 1u) | y << 24);
	return 0;
}

/* Where the decoder stands in the streams of a MODE_RANS chunk. */
struct rans_stream {
	const uint32_t *dtab;         /* the groups' decoder tables, a row of PROB_SCALE each */
	const uint8_t *group;         /* key -> group */
	const uint64_t *gkey;         /* first key of each group */
	unsigned ng;                  /* number of groups */
	const uint8_t *p[NWS], *end[NWS]; /* next word, end of each word stream; PAD bytes follow */
	const uint8_t *raw;           /* raw bits; PAD bytes follow */
	uint64_t pos, raw_bits;       /* next raw bit, length of the raw bits */
	uint32_t st[NSTATES];
};

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

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_AVX2 1
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

/* Vector decoding of the leading elements; returns how many it decoded, or -1. */
static AVX2 ptrdiff_t decode_avx2(const struct sp_lossless *s, enum sp_dtype dt,
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

static int have_avx2(void)
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

/* As decode_avx2. */
static AVX512 ptrdiff_t decode_avx512(enum sp_dtype dt, struct rans_stream *rs,
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

static int have_avx512(void)
{
	return have_avx2() && __builtin_cpu_supports("avx512f") &&
	       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
	       __builtin_cpu_supports("avx512vbmi");
}
#endif

/* The vector decoder to use: the best the CPU has, up to the one s->simd allows. */
static enum simd simd_level(const struct sp_lossless *s)
{
#ifdef HAVE_AVX2
	if (s->simd >= SIMD_AVX512 && have_avx512())
		return SIMD_AVX512;
	if (s->simd >= SIMD_AVX2 && have_avx2())
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
	switch (simd_level(s)) {
#ifdef HAVE_AVX2
	case SIMD_AVX512: done = decode_avx512(dt, rs, base, out, ne); break;
	case SIMD_AVX2: done = decode_avx2(s, dt, rs, base, out, ne); break;
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

static int decode_rans(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
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

static int decode_zstd(struct sp_lossless *s, enum sp_dtype dt, const uint8_t *base,
		       const uint8_t *p, size_t len, uint8_t *out, size_t n)
{
	struct dtinfo di = dtinfo(dt);
	if (!s->dctx && !(s->dctx = ZSTD_createDCtx()))
		return -1;
	size_t r = ZSTD_decompressDCtx(s->dctx, out, n, p, len);
	if (ZSTD_isError(r) || r != n)
		return -1;
	diff_words(di, base, out, out, n / di.width, 1);
	return 0;
}

int sp_lossless_decode(struct sp_lossless *s, enum sp_dtype dt, const void *base,
		       const void *src, size_t srclen, void *out, size_t n)
{
	const uint8_t *p = src;
	if (n % dtinfo(dt).width || srclen < 2 || p[0] != VERSION)
		return -1;
	switch (p[1]) {
	case MODE_SAME:
		if (srclen != 2)
			return -1;
		memcpy(out, base, n);
		return 0;
	case MODE_RAW:
		if (srclen != n + 2)
			return -1;
		memcpy(out, p + 2, n);
		return 0;
	case MODE_ZSTD:
		return decode_zstd(s, dt, base, p + 2, srclen - 2, out, n);
	case MODE_RANS:
		return decode_rans(s, dt, base, p + 2, p + srclen, out, n);
	default:
		return -1;
	}
}

/*
 * Internal, for the tests and benchmarks: limits the decoder to the scalar reference decoder
 * (level 0), the AVX2 decoder (1) or the AVX-512 one (2), where the CPU has it. Returns the
 * level decoding will use, the highest the CPU has up to the one asked for.
 */
int sp_lossless_set_simd(struct sp_lossless *s, int level);
int sp_lossless_set_simd(struct sp_lossless *s, int level)
{
	s->simd = level <= 0 ? SIMD_NONE : level == 1 ? SIMD_AVX2 : SIMD_AVX512;
	return (int)simd_level(s);
}
