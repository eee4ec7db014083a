/* SPDX-License-Identifier: Apache-2.0 */
#include "table_code.h"

/* What the records before a chunk predict of it. */
struct predict {
	uint64_t data_end;    /* where the last chunk with data ends its data */
	uint32_t file[256];   /* per codec, the base_file of the last chunk of that codec, */
	uint64_t end[256];    /* and the end of its base range (base_off + out_len) */
	struct sp_chunk prev; /* the chunk before, as it is, */
	int has_prev;         /* when there is one */
	int per_codec;        /* SP_FEATURE_INCOMPAT_PTABLE */
};

/* base_off follows on from the chunk before when that one has the same codec and base file
 * (PTABLE: from the last chunk of its codec, when that has the same base file); a chunk with no
 * base file has base_off 0. */
static uint64_t base_off_guess(const struct predict *p, const struct sp_chunk *c)
{
	const struct sp_chunk *b = &p->prev;
	if (c->base_file == SP_NO_BASE)
		return 0;
	if (p->per_codec)
		return p->file[c->codec] == c->base_file ? p->end[c->codec] : 0;
	return p->has_prev && b->codec == c->codec && b->base_file == c->base_file
		       ? b->base_off + b->out_len
		       : 0;
}

/* c, as it is, becomes the chunk before the next. */
static void advance(struct predict *p, const struct sp_chunk *c)
{
	if (c->data_len)
		p->data_end = c->data_off + c->data_len;
	p->file[c->codec] = c->base_file;
	p->end[c->codec] = c->base_off + c->out_len;
	p->prev = *c;
	p->has_prev = 1;
}

static struct predict start(uint64_t features)
{
	return (struct predict){.data_end = sizeof(struct sp_super),
				.per_codec = (features & SP_FEATURE_INCOMPAT_PTABLE) != 0};
}

/* Unsigned arithmetic wraps: any stored value decodes, and coding then decoding is exact. */
void sp_table_code(struct sp_chunk *c, size_t n, uint64_t features)
{
	struct predict p = start(features);
	for (size_t k = 0; k < n; k++) {
		struct sp_chunk was = c[k];
		c[k].base_file = was.base_file - p.file[was.codec];
		c[k].base_off = was.base_off - base_off_guess(&p, &was);
		if (was.data_len)
			c[k].data_off = was.data_off - p.data_end;
		advance(&p, &was);
	}
}

void sp_table_uncode(struct sp_chunk *c, size_t n, uint64_t features)
{
	struct predict p = start(features);
	for (size_t k = 0; k < n; k++) {
		c[k].base_file += p.file[c[k].codec];
		c[k].base_off += base_off_guess(&p, &c[k]);
		if (c[k].data_len)
			c[k].data_off += p.data_end;
		advance(&p, &c[k]);
	}
}

void sp_table_to_planes(const struct sp_chunk *c, size_t n, uint8_t *out)
{
	const uint8_t *b = (const uint8_t *)c;
	for (size_t k = 0; k < n; k++)
		for (size_t j = 0; j < sizeof(*c); j++)
			out[j * n + k] = b[k * sizeof(*c) + j];
}

void sp_table_from_planes(const uint8_t *in, size_t n, struct sp_chunk *c)
{
	uint8_t *b = (uint8_t *)c;
	for (size_t k = 0; k < n; k++)
		for (size_t j = 0; j < sizeof(*c); j++)
			b[k * sizeof(*c) + j] = in[j * n + k];
}
