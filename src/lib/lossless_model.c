/* SPDX-License-Identifier: Apache-2.0 */
/* The frequency tables of the lossless codec, from the log weights that a chunk stores. */
#include "lossless_model.h"

/* The weight of log weight q: 16 * 2^((q - 1) / 4) in exact integers. */
static uint64_t q_weight(unsigned q)
{
	static const uint8_t base[4] = {16, 19, 23, 27};
	return q ? (uint64_t)base[(q - 1) & 3] << ((q - 1) >> 2) : 0;
}

int sp_lossless_derive_freqs(const uint8_t q[NSYM], struct table *t)
{
	uint64_t w[NSYM], sum = 0;
	for (unsigned y = 0; y < NSYM; y++)
		sum += w[y] = q_weight(q[y]);
	if (!sum)
		return -1;
	unsigned tot = 0, big = 0;
	for (unsigned y = 0; y < NSYM; y++) { /* unused symbols skip the division: most are */
		unsigned f = w[y] ? (unsigned)(w[y] * PROB_SCALE / sum) : 0;
		t->freq[y] = (uint16_t)(w[y] && !f ? 1 : f);
		tot += t->freq[y];
		big = w[y] > w[big] ? y : big;
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
