/* SPDX-License-Identifier: Apache-2.0 */
#include "similar.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* An anchor every 1 KiB on average, where a gear hash of the bytes before it has its low bits
 * clear: the same content gives the same anchors wherever it moved. */
#define ANCHOR_MASK 0x3ffull
#define ANCHOR_SPAN 32

static uint64_t gear[256];
static int gear_ready;

/* Planning is single-threaded: no need for more than a flag. */
static void gear_init(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < 256; i++) {
		x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
		gear[i] = x * 0x2545f4914f6cdd1dull;
	}
	gear_ready = 1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Keeps the k smallest distinct values of v[0..n) in s. */
static void bottom_k(uint64_t *v, size_t n, struct sp_sketch *s)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	s->n = 0;
	for (size_t i = 0; i < n && s->n < SP_SKETCH_K; i++)
		if (s->n == 0 || v[i] != s->h[s->n - 1])
			s->h[s->n++] = v[i];
}

void sp_sketch(const uint8_t *p, size_t len, struct sp_sketch *s)
{
	size_t cap = len / (ANCHOR_MASK + 1) * 4 + 16, n = 0;
	uint64_t *v = malloc(cap * sizeof(*v)), h = 0;
	if (!gear_ready)
		gear_init();
	s->n = 0;
	if (!v)
		return;
	for (size_t i = 0; i < len; i++) {
		h = (h << 1) + gear[p[i]];
		if ((h & ANCHOR_MASK) == 0 && i >= ANCHOR_SPAN && n < cap)
			v[n++] = XXH3_64bits(p + i - ANCHOR_SPAN, ANCHOR_SPAN);
	}
	bottom_k(v, n, s);
	free(v);
}

double sp_sketch_similarity(const struct sp_sketch *a, const struct sp_sketch *b)
{
	size_t i = 0, j = 0, seen = 0, both = 0;
	/* Walk the union's smallest values: the share found in both estimates the Jaccard index. */
	while (seen < SP_SKETCH_K && (i < a->n || j < b->n)) {
		if (j >= b->n || (i < a->n && a->h[i] < b->h[j]))
			i++;
		else if (i >= a->n || b->h[j] < a->h[i])
			j++;
		else
			i++, j++, both++;
		seen++;
	}
	return seen ? (double)both / (double)seen : 0;
}

void sp_sketch_merge(struct sp_sketch *into, const struct sp_sketch *s)
{
	struct sp_sketch u = {.n = 0};
	size_t i = 0, j = 0;
	while (u.n < SP_SKETCH_K && (i < into->n || j < s->n)) {
		uint64_t a = i < into->n ? into->h[i] : UINT64_MAX, b = j < s->n ? s->h[j] : UINT64_MAX;
		u.h[u.n++] = a < b ? a : b;
		i += a <= b;
		j += b <= a;
	}
	*into = u;
}

const char *sp_compressed_kind(const uint8_t *p, size_t len)
{
	static const struct {
		const char *name;
		const char *magic;
		size_t n;
	} kinds[] = {
		{"gzip", "\x1f\x8b", 2},      {"zstd", "\x28\xb5\x2f\xfd", 4},
		{"xz", "\xfd" "7zXZ", 5},     {"bzip2", "BZh", 3},
		{"zip", "PK\x03\x04", 4},     {"parquet", "PAR1", 4},
	};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (len >= kinds[i].n && !memcmp(p, kinds[i].magic, kinds[i].n))
			return kinds[i].name;
	return NULL;
}
