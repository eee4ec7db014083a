/* SPDX-License-Identifier: Apache-2.0 */
/* Opening a delta without its base: the superblock, the chunk table and the manifest, and every
 * check between them. Input: one byte (bit 0: fuzz_write_delta's fix), then the image. What
 * opens must be what the read path assumes: chunks that tile their files, inside the data. */
#include "delta.h"
#include "dtype.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet();
	return 0;
}

/* The tensors a file lists lie inside it, with shapes whose every dimension was read. */
static void check_tensors(const struct sp_delta *d, size_t i)
{
	size_t n;
	const struct sp_tensor_info *t = sp_delta_tensors(d, i, &n);
	for (size_t j = 0; t && j < n; j++) {
		FUZZ_CHECK(t[j].name && t[j].dtype && (t[j].shape || !t[j].ndim));
		FUZZ_CHECK(t[j].offset + t[j].size <= sp_delta_file(d, i)->size);
		for (size_t k = 0; k < t[j].ndim; k++)
			FUZZ_CHECK(t[j].shape[k] <= (1ull << 53));
		FUZZ_CHECK(!t[j].base_dtype || t[j].base_shape || !t[j].base_ndim);
	}
}

static void check_file(const struct sp_delta *d, const struct sp_file_info *f)
{
	uint64_t off = 0;
	FUZZ_CHECK(f->first_chunk + f->chunk_count <= sp_delta_chunk_count(d));
	for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++) {
		const struct sp_chunk *c = sp_delta_chunk(d, k);
		FUZZ_CHECK(c->out_off == off && c->out_len && c->codec < SP_CODEC_COUNT);
		FUZZ_CHECK(c->out_len % sp_dtype_size(c->dtype) == 0);
		FUZZ_CHECK(!c->data_len || (c->data_off >= sizeof(struct sp_super) &&
					    c->data_off + c->data_len <= d->sb.chunk_table_off));
		off += c->out_len;
	}
	FUZZ_CHECK(f->link || off == f->size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_err err;
	if (size < 1 || fuzz_write_delta(data + 1, size - 1, data[0] & 1))
		return 0;
	struct sp_delta *d = sp_delta_open(fuzz_tmpdir(), NULL, SP_OPEN_NO_BASE, &err);
	if (!d) {
		FUZZ_CHECK(err.msg[0]);
		return 0;
	}
	struct sp_delta_about a;
	sp_delta_about(d, &a);
	FUZZ_CHECK(a.mode && a.base_path && a.chunk_size >= SP_CHUNK_MIN);
	for (size_t i = 0; i < sp_delta_file_count(d); i++) {
		check_file(d, sp_delta_file(d, i));
		check_tensors(d, i);
	}
	sp_delta_close(d);
	return 0;
}
