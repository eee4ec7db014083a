/* SPDX-License-Identifier: Apache-2.0 */
/* The manifest: JSON in, a validated manifest or an error out. Whatever it accepts must hold
 * what the readers rely on: safe names, chunk ranges inside the table, sane chunk sizes, a
 * history inside its base files. */
#include "fuzz.h"
#include "codec_history.h"
#include "manifest.h"

/* The chunk table the inputs are read with: what the manifest may leave to it (sizes, content
 * hashes) comes from here. */
#define CHUNKS 4096
static struct sp_chunk table[CHUNKS];

/* Chunks of a few sizes, one in four a BASE chunk that reads a small base file whole. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	for (uint32_t k = 0; k < CHUNKS; k++)
		table[k] = (struct sp_chunk){.out_len = 1u << (k % 13), .out_hash = k,
					     .codec = k % 4 ? SP_CODEC_ZSTD : SP_CODEC_BASE,
					     .base_file = k % 7};
	return 0;
}

/* What opening a base does with sizes it gives (a file of 1 byte each): the history then adds
 * up as a reader finds it, and each file it holds whole lies inside it. */
static void lay_out(struct sp_manifest *m)
{
	for (size_t i = 0; i < m->nbase; i++)
		if (m->base[i].size_from_base)
			m->base[i].size = 1;
	uint64_t len = sp_manifest_layout_history(m), total = 0;
	for (size_t i = 0; i < m->nhistory; i++)
		total += m->history[i].len;
	FUZZ_CHECK(len == total);
	for (size_t i = 0; i < m->nbase; i++)
		FUZZ_CHECK(!m->base[i].from_history ||
			   m->base[i].history_at + m->base[i].size <= len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_manifest m;
	struct sp_err err;
	struct sp_manifest_table t = {table, CHUNKS, SP_FEATURE_INCOMPAT_SUPPORTED};
	if (sp_manifest_parse((const char *)data, size, &t, &m, "fuzz", &err))
		return 0;
	FUZZ_CHECK(m.chunk_size >= SP_CHUNK_MIN && m.chunk_size <= SP_CHUNK_MAX && m.mode);
	for (size_t i = 0; i < m.nfiles; i++) {
		const struct sp_file_info *f = &m.files[i];
		FUZZ_CHECK(f->name[0] && f->name[0] != '/' && !strstr(f->name, "//"));
		FUZZ_CHECK(f->first_chunk + f->chunk_count <= CHUNKS);
		FUZZ_CHECK(!f->link || (strlen(f->link) == f->size && !f->chunk_count));
	}
	for (size_t i = 0; i < m.nbase; i++)
		FUZZ_CHECK(m.base[i].name != NULL && (!m.base[i].hashless || m.base[i].whole));
	uint64_t total = 0;
	for (size_t i = 0; i < m.nhistory; i++) {
		const struct sp_history_seg *h = &m.history[i];
		FUZZ_CHECK(h->file < m.nbase);
		const struct sp_base_fp *fp = &m.base[h->file];
		FUZZ_CHECK(h->off + h->len <= fp->size);
		FUZZ_CHECK(!fp->size_from_base || (!h->off && !h->len && !fp->from_history));
		total += h->len;
	}
	FUZZ_CHECK(m.history_len <= SP_HISTORY_MAX &&
		   (m.sizes_from_base ? total <= m.history_len : total == m.history_len));
	lay_out(&m);
	sp_manifest_free(&m);
	return 0;
}
