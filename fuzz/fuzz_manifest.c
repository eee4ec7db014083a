/* SPDX-License-Identifier: Apache-2.0 */
/* The manifest: JSON in, a validated manifest or an error out. Whatever it accepts must hold
 * what the readers rely on: safe names, chunk ranges inside the table, sane chunk sizes, a
 * history inside its base files. */
#include "fuzz.h"
#include "codec_history.h"
#include "manifest.h"

/* What sp_delta_load passes for the chunk table size in these inputs. */
#define CHUNKS 4096

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_manifest m;
	struct sp_err err;
	if (sp_manifest_parse((const char *)data, size, CHUNKS, &m, "fuzz", &err))
		return 0;
	FUZZ_CHECK(m.chunk_size >= SP_CHUNK_MIN && m.chunk_size <= SP_CHUNK_MAX && m.mode);
	for (size_t i = 0; i < m.nfiles; i++) {
		const struct sp_file_info *f = &m.files[i];
		FUZZ_CHECK(f->name[0] && f->name[0] != '/' && !strstr(f->name, "//"));
		FUZZ_CHECK(f->first_chunk + f->chunk_count <= CHUNKS);
		FUZZ_CHECK(!f->link || (strlen(f->link) == f->size && !f->chunk_count));
	}
	for (size_t i = 0; i < m.nbase; i++)
		FUZZ_CHECK(m.base[i].name != NULL);
	uint64_t total = 0;
	for (size_t i = 0; i < m.nhistory; i++) {
		const struct sp_history_seg *h = &m.history[i];
		FUZZ_CHECK(h->file < m.nbase && h->off + h->len <= m.base[h->file].size);
		total += h->len;
	}
	FUZZ_CHECK(total == m.history_len && total <= SP_HISTORY_MAX);
	sp_manifest_free(&m);
	return 0;
}
