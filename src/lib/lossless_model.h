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
/*
 * This header holds what the encoder and the decoders share: the constants and element
 * transforms above, the codec's per-thread state, and the frequency tables' log weights.
 */
#ifndef SPARSE_LOSSLESS_MODEL_H
#define SPARSE_LOSSLESS_MODEL_H

#include <stdint.h>
#include <string.h>
#include <zstd.h>

#include "sparse/util.h"
#include "sparse/format.h"

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

static inline struct dtinfo dtinfo(enum sp_dtype dt)
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
static inline unsigned key_bits(struct dtinfo di)
{
	unsigned kb = di.ebits ? di.ebits + (di.mbits < 3 ? di.mbits : 3) : 0;
	return kb > KEY_BITS_MAX ? KEY_BITS_MAX : kb;
}

/* Highest valid symbol: 2 * max token, the token of a = 2^(W-1). */
static inline unsigned max_sym(struct dtinfo di)
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

/* One specialised copy of a hot loop per element layout; unsigned types share the signed ones. */
#define DT_CASES(X) \
	X(SP_DT_BF16) X(SP_DT_F16) X(SP_DT_F32) X(SP_DT_F64) X(SP_DT_F8_E4M3) X(SP_DT_F8_E5M2) \
	X(SP_DT_I8) X(SP_DT_I16) X(SP_DT_I32) X(SP_DT_I64)

/* The prediction of q[y]: a negative symbol from its positive twin, else the previous token. */
static inline int q_pred(const uint8_t *q, unsigned y)
{
	return y == 0 ? QMAX : y <= 2 ? q[y - 1] : y % 2 ? q[y - 2] : q[y - 1];
}

/*
 * Frequencies from log weights q[0..NSYM): f = max(1, floor(weight * 4096 / sum of weights))
 * for used symbols; then the first symbol of largest weight takes up what is left to make
 * the sum 4096, or, while the sum is above 4096, the first symbol of largest frequency gives
 * up min(excess, f - 1). Returns -1 when no symbol is used.
 */
int sp_lossless_derive_freqs(const uint8_t q[NSYM], struct table *t);

#endif
