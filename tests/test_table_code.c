/* SPDX-License-Identifier: Apache-2.0 */
/* The chunk table's coding (SP_FEATURE_INCOMPAT_DTABLE, and PTABLE's prediction per codec and
 * byte planes): decoding what was coded gives every record back, whatever its fields; a table
 * of a tree's chunks codes to mostly zeros; and the coded fields are what sparse-format(5)
 * says, checked on a hand-made table. */
#include "table_code.h"
#include "testutil.h"

static uint64_t rng = 0x5eed;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

#define DTABLE SP_FEATURE_INCOMPAT_DTABLE
#define PTABLE (SP_FEATURE_INCOMPAT_DTABLE | SP_FEATURE_INCOMPAT_PTABLE)

/* Any bytes at all, and runs of equal codecs and base files (where the predictions apply),
 * with either coding, through the planes and back. */
static void roundtrip_any(uint64_t features)
{
	enum { N = 4096 };
	static struct sp_chunk c[N], was[N];
	for (size_t k = 0; k < N; k++) {
		for (size_t b = 0; b < sizeof(c[k]); b++)
			((uint8_t *)&c[k])[b] = (uint8_t)rnd();
		if (k % 3) {
			c[k].codec = (uint8_t)(rnd() % 3);
			c[k].base_file = (uint32_t)(rnd() % 4);
		}
	}
	static uint8_t planes[sizeof(c)];
	memcpy(was, c, sizeof(c));
	sp_table_code(c, N, features);
	CHECK(memcmp(was, c, sizeof(c)) != 0);
	sp_table_to_planes(c, N, planes);
	CHECK(planes[1] == ((uint8_t *)c)[sizeof(c[0])]); /* out_off's low byte, record 1 */
	sp_table_from_planes(planes, N, c);
	sp_table_uncode(c, N, features);
	CHECK(memcmp(was, c, sizeof(c)) == 0);
}

/* Two BASE chunks of base file 7, then a file of two ZSTD chunks, then two slices of pack 0. */
static void known_table(void)
{
	struct sp_chunk c[] = {
		{.out_off = 0, .base_off = 0, .out_len = 100, .base_file = 7, .codec = SP_CODEC_BASE},
		{.out_off = 100, .base_off = 100, .out_len = 50, .base_file = 7,
		 .codec = SP_CODEC_BASE},
		{.out_off = 0, .data_off = 128, .data_len = 30, .out_len = 90,
		 .base_file = SP_NO_BASE, .codec = SP_CODEC_ZSTD},
		{.out_off = 90, .data_off = 158, .data_len = 20, .out_len = 60,
		 .base_file = SP_NO_BASE, .codec = SP_CODEC_ZSTD},
		{.base_off = 0, .out_len = 40, .base_file = 0, .codec = SP_CODEC_SLICE},
		{.base_off = 40, .out_len = 10, .base_file = 0, .codec = SP_CODEC_SLICE},
	};
	sp_table_code(c, 6, DTABLE);
	CHECK(c[0].base_file == 7 && c[1].base_file == 0 && c[1].base_off == 0);
	CHECK(c[2].base_file == SP_NO_BASE && c[2].data_off == 0);
	CHECK(c[3].base_file == 0 && c[3].data_off == 0 && c[3].base_off == 0);
	CHECK(c[4].base_file == 0 && c[4].base_off == 0);
	CHECK(c[5].base_off == 0 && c[5].out_off == 0);
	CHECK(c[1].out_off == 100); /* out_off is stored as it is */
}

/* Slices of pack 0 between BASE chunks: with PTABLE each follows on from the slice before it,
 * as the record before does not. */
static void per_codec(void)
{
	struct sp_chunk c[] = {
		{.base_off = 0, .out_len = 40, .base_file = 0, .codec = SP_CODEC_SLICE},
		{.out_len = 100, .base_file = 3, .codec = SP_CODEC_BASE},
		{.base_off = 40, .out_len = 10, .base_file = 0, .codec = SP_CODEC_SLICE},
		{.base_off = 60, .out_len = 10, .base_file = 0, .codec = SP_CODEC_SLICE},
	};
	struct sp_chunk d[4];
	memcpy(d, c, sizeof(c));
	sp_table_code(d, 4, DTABLE);
	CHECK(d[2].base_off == 40 && d[3].base_off == 10);
	sp_table_code(c, 4, PTABLE);
	CHECK(c[2].base_off == 0 && c[3].base_off == 10 && c[1].base_file == 3);
}

int main(void)
{
	roundtrip_any(DTABLE);
	roundtrip_any(PTABLE);
	known_table();
	per_codec();
	return test_done();
}
