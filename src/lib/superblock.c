/* SPDX-License-Identifier: Apache-2.0 */
/* Loading delta.sparse: the superblock, the chunk table and the manifest, each validated before
 * anything trusts it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <zstd.h>

#include "chunk.h"
#include "delta.h"
#include "dtype.h"
#include "source.h"
#include "table_code.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the on-disk structures are read as they lie: this needs a little-endian host"
#endif

static int load_super(struct sp_delta *d, uint64_t file_size, struct sp_err *err)
{
	struct sp_super *sb = &d->sb;
	if (file_size < sizeof(*sb) || sp_source_pread(d->src, sb, sizeof(*sb), 0) ||
	    memcmp(sb->magic, SP_MAGIC, SP_MAGIC_LEN)) {
		sp_err_set(err, "%s: not a sparse delta (bad magic)", d->path);
		return -1;
	}
	if (sb->version != SP_VERSION || sb->super_size != sizeof(*sb)) {
		sp_err_set(err, "%s: format version %u is not supported (this reader knows %u)",
			   d->path, sb->version, SP_VERSION);
		return -1;
	}
	if (XXH3_64bits(sb, offsetof(struct sp_super, super_hash)) != sb->super_hash) {
		sp_err_set(err, "%s: superblock checksum mismatch (damaged delta)", d->path);
		return -1;
	}
	if (sb->feature_incompat & ~SP_FEATURE_INCOMPAT_SUPPORTED) {
		sp_err_set(err, "%s: uses incompatible features 0x%llx, which this reader does not know "
				"(a newer mksparse wrote it)", d->path,
			   (unsigned long long)(sb->feature_incompat & ~SP_FEATURE_INCOMPAT_SUPPORTED));
		return -1;
	}
	if (sb->file_size != file_size) {
		sp_err_set(err, "%s: is %llu bytes, should be %llu (truncated?)", d->path,
			   (unsigned long long)file_size, (unsigned long long)sb->file_size);
		return -1;
	}
	return 0;
}

/* A zstd frame of at most 128 KiB blocks makes at most 32768 bytes of each stored byte. */
#define ZSTD_RATIO_MAX 32768

/* The chunk table's stored length: the raw records, or (ZTABLE) the frame holding them. */
static int table_span(const struct sp_super *sb, uint64_t *stored)
{
	uint64_t bytes = sb->chunk_count * sizeof(struct sp_chunk);
	int z = (sb->feature_incompat & SP_FEATURE_INCOMPAT_ZTABLE) != 0;
	*stored = z ? sb->chunk_table_len : bytes;
	if ((!z && sb->chunk_table_len) ||
	    (z ? sb->chunk_count > sb->chunk_table_len * (ZSTD_RATIO_MAX / sizeof(struct sp_chunk))
	      : sb->chunk_count > sb->file_size / sizeof(struct sp_chunk)))
		return -1;
	return sb->chunk_table_off < sizeof(*sb) || *stored > sb->file_size ||
			       sb->chunk_table_off > sb->file_size - *stored
		       ? -1
		       : 0;
}

/* The stored table into d->chunks: read, hashed, and decompressed when it is a frame. */
static int read_table(struct sp_delta *d, uint8_t *stored, uint64_t len, struct sp_err *err)
{
	const struct sp_super *sb = &d->sb;
	uint64_t bytes = sb->chunk_count * sizeof(struct sp_chunk);
	int rc = sp_source_pread(d->src, stored, len, sb->chunk_table_off);
	if (rc)
		sp_err_set(err, "%s: cannot read the chunk table: %s", d->path, strerror(-rc));
	else if (XXH3_64bits(stored, len) != sb->chunk_table_hash)
		sp_err_set(err, "%s: chunk table checksum mismatch (damaged delta)", d->path);
	else if (stored != (uint8_t *)d->chunks &&
		 ZSTD_decompress(d->chunks, bytes, stored, len) != bytes)
		sp_err_set(err, "%s: the chunk table does not decompress", d->path);
	else
		return 0;
	return -1;
}

/* The records of a table stored as byte planes (SP_FEATURE_INCOMPAT_PTABLE), put together. */
static int from_planes(struct sp_delta *d, struct sp_err *err)
{
	size_t bytes = d->sb.chunk_count * sizeof(struct sp_chunk);
	uint8_t *planes = malloc(bytes + 1);
	if (!planes) {
		sp_err_set(err, "%s: out of memory for the chunk table", d->path);
		return -1;
	}
	memcpy(planes, d->chunks, bytes);
	sp_table_from_planes(planes, d->sb.chunk_count, d->chunks);
	free(planes);
	return 0;
}

static int load_chunk_table(struct sp_delta *d, struct sp_err *err)
{
	const struct sp_super *sb = &d->sb;
	uint64_t bytes = sb->chunk_count * sizeof(struct sp_chunk), len;
	int framed = (sb->feature_incompat & SP_FEATURE_INCOMPAT_ZTABLE) != 0;
	int coded = (sb->feature_incompat & SP_FEATURE_INCOMPAT_DTABLE) != 0;
	int planes = (sb->feature_incompat & SP_FEATURE_INCOMPAT_PTABLE) != 0;
	if ((!framed && coded) || (planes && !coded)) {
		sp_err_set(err, "%s: %s", d->path,
			   coded ? "a coded chunk table that is not a zstd frame"
				 : "a chunk table in byte planes that is not coded");
		return -1;
	}
	if (table_span(sb, &len)) {
		sp_err_set(err, "%s: the chunk table lies outside the file", d->path);
		return -1;
	}
	d->chunks = malloc(bytes ? bytes : 1);
	uint8_t *stored = framed ? malloc(len + 1) : (uint8_t *)d->chunks;
	int rc = d->chunks && stored ? read_table(d, stored, len, err) : -1;
	if (!d->chunks || !stored)
		sp_err_set(err, "%s: out of memory for the chunk table", d->path);
	if (framed)
		free(stored);
	if (rc == 0 && planes)
		rc = from_planes(d, err);
	if (rc == 0 && coded)
		sp_table_uncode(d->chunks, sb->chunk_count, sb->feature_incompat);
	return rc;
}

/* A base file fingerprinted by its content hash alone, only where the delta declares them. */
static int check_whole_fps(const struct sp_delta *d, struct sp_err *err)
{
	for (size_t i = 0; i < d->m.nbase; i++)
		if (d->m.base[i].whole && !(d->sb.feature_incompat & SP_FEATURE_INCOMPAT_WHOLEFP)) {
			sp_err_set(err, "%s: base file %s: a fingerprint without its header and samples "
					"in a delta that does not declare them", d->path, d->m.base[i].name);
			return -1;
		}
	return 0;
}

static int load_manifest(struct sp_delta *d, struct sp_err *err)
{
	const struct sp_super *sb = &d->sb;
	if (sb->manifest_off < sizeof(*sb) || sb->manifest_len > sb->file_size - sb->manifest_off ||
	    sb->manifest_raw_len > (1ull << 31)) {
		sp_err_set(err, "%s: the manifest lies outside the file", d->path);
		return -1;
	}
	char *z = malloc(sb->manifest_len + 1), *json = malloc(sb->manifest_raw_len + 1);
	int rc = -1, got = -ENOMEM;
	if (z && json)
		got = sp_source_pread(d->src, z, sb->manifest_len, sb->manifest_off);
	if (got)
		sp_err_set(err, "%s: cannot read the manifest: %s", d->path, strerror(-got));
	else if (XXH3_64bits(z, sb->manifest_len) != sb->manifest_hash)
		sp_err_set(err, "%s: manifest checksum mismatch (damaged delta)", d->path);
	else if (ZSTD_decompress(json, sb->manifest_raw_len, z, sb->manifest_len) !=
		 sb->manifest_raw_len)
		sp_err_set(err, "%s: the manifest does not decompress", d->path);
	else
		rc = sp_manifest_parse(json, sb->manifest_raw_len,
				       &(struct sp_manifest_table){d->chunks, sb->chunk_count,
								   sb->feature_incompat},
				       &d->m, d->path, err);
	free(z);
	free(json);
	return rc ? rc : check_whole_fps(d, err);
}

static int data_outside(const struct sp_delta *d, const struct sp_chunk *c)
{
	return c->data_len && (c->data_off < sizeof(d->sb) || c->data_off > d->sb.chunk_table_off ||
			       c->data_len > d->sb.chunk_table_off - c->data_off);
}

/* A PATCH chunk's window length is in its data: the reader bounds it when it decodes. */
static const char *bad_patch(const struct sp_delta *d, const struct sp_chunk *c)
{
	if (!(d->sb.feature_incompat & SP_FEATURE_INCOMPAT_PATCH))
		return "a patch chunk in a delta that does not declare them";
	if (c->base_file >= d->m.nbase || c->base_off > d->m.base[c->base_file].size)
		return "patch against no such base file range";
	return c->data_len < 8 ? "patch chunk without its header" : NULL;
}

static const char *bad_history(const struct sp_delta *d, const struct sp_chunk *c)
{
	if (!(d->sb.feature_incompat & SP_FEATURE_INCOMPAT_HISTORY))
		return "a history chunk in a delta that does not declare them";
	if (!d->m.history_len)
		return "a history chunk in a delta without a history";
	return c->base_file != SP_NO_BASE ? "a history chunk that names a base file" : NULL;
}

/* A SLICE chunk's range must lie within its pack: the auxiliary chunks are listed (and checked)
 * after the files' chunks, so the pack's entry is read here only when it exists. */
static const char *bad_slice(const struct sp_delta *d, const struct sp_chunk *c)
{
	if (!(d->sb.feature_incompat & SP_FEATURE_INCOMPAT_PACK))
		return "a slice chunk in a delta that does not declare them";
	if (c->data_len || c->base_file >= d->m.aux_chunks || d->m.aux_chunks > d->sb.chunk_count)
		return "a slice of no such pack";
	const struct sp_chunk *pack = &d->chunks[d->sb.chunk_count - d->m.aux_chunks + c->base_file];
	if (c->base_off > pack->out_len || c->out_len > pack->out_len - c->base_off)
		return "a slice outside its pack";
	return NULL;
}

/* Why chunk c cannot be trusted, or NULL. Every reader-visible field is bounded here. */
static const char *bad_chunk(const struct sp_delta *d, const struct sp_chunk *c)
{
	size_t es = sp_dtype_size(c->dtype);
	int lossy = c->codec == SP_CODEC_LOSSY;
	if (c->codec >= SP_CODEC_COUNT || c->dtype >= SP_DT_COUNT || c->base_dtype >= SP_DT_COUNT)
		return "unknown codec or dtype";
	if (lossy && !(d->sb.feature_incompat & SP_FEATURE_INCOMPAT_LOSSY))
		return "a lossy chunk in a delta that does not declare them";
	if (c->out_len == 0 || c->out_len > d->m.chunk_size || c->out_len % es)
		return "bad output length";
	if (data_outside(d, c))
		return "data outside the data area";
	if (c->codec == SP_CODEC_RAW && c->data_len != c->out_len)
		return "raw chunk of the wrong length";
	if (c->codec == SP_CODEC_PATCH)
		return bad_patch(d, c);
	if (c->codec == SP_CODEC_HISTORY)
		return bad_history(d, c);
	if (c->codec == SP_CODEC_SLICE)
		return bad_slice(d, c);
	if (c->codec != SP_CODEC_BASE && c->codec != SP_CODEC_DELTA && !lossy)
		return NULL;
	if (c->base_file >= d->m.nbase)
		return "no such base file";
	if ((c->dtype != c->base_dtype || lossy) &&
	    (c->codec == SP_CODEC_BASE || !sp_dtype_is_float(c->dtype) ||
	     !sp_dtype_is_float(c->base_dtype)))
		return "base dtype cannot be converted";
	uint64_t blen = sp_chunk_base_len(c), bsize = d->m.base[c->base_file].size;
	if (c->base_off > bsize || blen > bsize - c->base_off)
		return "base range outside the base file";
	return NULL;
}

/* After the files' chunks, the auxiliary chunks: whole blobs of stored bytes, up to the largest
 * chunk size (a low-rank factor may be larger than an output chunk), or packs coded with the
 * history. */
static int bad_aux(const struct sp_delta *d, const struct sp_chunk *c)
{
	int codec_ok = c->codec == SP_CODEC_RAW || c->codec == SP_CODEC_ZSTD ||
		       (c->codec == SP_CODEC_HISTORY && !bad_history(d, c) &&
			(d->sb.feature_incompat & SP_FEATURE_INCOMPAT_PACK));
	return !codec_ok || c->out_off || !c->out_len || c->out_len > SP_CHUNK_MAX ||
	       data_outside(d, c) || (c->codec == SP_CODEC_RAW && c->data_len != c->out_len);
}

static int check_aux_chunks(const struct sp_delta *d, uint64_t first, struct sp_err *err)
{
	if (d->m.aux_chunks != d->sb.chunk_count - first || first > d->sb.chunk_count) {
		sp_err_set(err, "%s: chunks belong to no file", d->path);
		return -1;
	}
	if (d->m.aux_chunks &&
	    !(d->sb.feature_incompat & (SP_FEATURE_INCOMPAT_LOSSY | SP_FEATURE_INCOMPAT_PACK))) {
		sp_err_set(err, "%s: auxiliary chunks in a delta that does not declare them", d->path);
		return -1;
	}
	for (uint64_t k = first; k < d->sb.chunk_count; k++) {
		if (bad_aux(d, &d->chunks[k])) {
			sp_err_set(err, "%s: auxiliary chunk %llu is malformed", d->path,
				   (unsigned long long)k);
			return -1;
		}
	}
	return 0;
}

/* The files' chunk ranges follow each other and each file's chunks tile it from 0. */
static int check_chunks(struct sp_delta *d, struct sp_err *err)
{
	uint64_t next = 0;
	for (size_t i = 0; i < d->m.nfiles; i++) {
		const struct sp_file_info *f = &d->m.files[i];
		uint64_t off = 0;
		if (f->first_chunk != next) {
			sp_err_set(err, "%s: %s: chunk range out of order", d->path, f->name);
			return -1;
		}
		for (uint64_t k = f->first_chunk; k < f->first_chunk + f->chunk_count; k++) {
			const struct sp_chunk *c = &d->chunks[k];
			const char *why = c->out_off != off ? "chunks do not tile the file" : bad_chunk(d, c);
			if (why) {
				sp_err_set(err, "%s: %s: chunk %llu: %s", d->path, f->name,
					   (unsigned long long)k, why);
				return -1;
			}
			off += c->out_len;
		}
		if (off != f->size && !f->link) { /* a link's size is its target's length */
			sp_err_set(err, "%s: %s: chunks do not add up to the file size", d->path, f->name);
			return -1;
		}
		next += f->chunk_count;
	}
	return check_aux_chunks(d, next, err);
}

int sp_delta_load(struct sp_delta *d, struct sp_err *err)
{
	if (load_super(d, sp_source_size(d->src), err) || load_chunk_table(d, err) ||
	    load_manifest(d, err) || check_chunks(d, err))
		return -1;
	return 0;
}
