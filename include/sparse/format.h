/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The on-disk format of a sparse delta, in one place (sparse-format(5) is the prose version).
 *
 * A delta is a directory holding one file, delta.sparse:
 *
 *   offset 0              struct sp_super (128 bytes)
 *   ...                   encoded chunk data, referenced by the chunk table
 *   chunk_table_off       struct sp_chunk[chunk_count] (with SP_FEATURE_INCOMPAT_ZTABLE: one
 *                         zstd frame of them, chunk_table_len bytes)
 *   manifest_off          one zstd frame holding the JSON manifest
 *
 * All integers are little-endian. Every structure carries or is covered by an XXH3-64 hash,
 * and every chunk records the XXH3-64 of the bytes it decodes to, so a reader detects a damaged
 * delta and a base that changed alike.
 */
#ifndef SPARSE_FORMAT_H
#define SPARSE_FORMAT_H

#include <assert.h>
#include <stdint.h>

#define SP_DELTA_FILE "delta.sparse"
#define SP_MAGIC "SPRSDLT\x1a"
#define SP_MAGIC_LEN 8
#define SP_VERSION 1

/* Feature bits. A reader refuses a delta with an incompat bit it does not know. */
#define SP_FEATURE_INCOMPAT_LOSSY (1ULL << 0) /* SP_CODEC_LOSSY chunks and auxiliary chunks */
#define SP_FEATURE_INCOMPAT_PATCH (1ULL << 1) /* SP_CODEC_PATCH chunks */
#define SP_FEATURE_INCOMPAT_HISTORY (1ULL << 2) /* SP_CODEC_HISTORY chunks, the manifest's history */
#define SP_FEATURE_INCOMPAT_PACK (1ULL << 3) /* SP_CODEC_SLICE chunks of auxiliary packs */
#define SP_FEATURE_INCOMPAT_ZTABLE (1ULL << 4) /* the chunk table is one zstd frame */
#define SP_FEATURE_INCOMPAT_WHOLEFP (1ULL << 5) /* small base files: a content hash alone */
#define SP_FEATURE_INCOMPAT_IMPLIED (1ULL << 6) /* the manifest leaves out what the table implies;
						 * SLICE chunks are covered by their pack's hash */
#define SP_FEATURE_INCOMPAT_HISTBASE (1ULL << 7) /* BASE chunks of files the history holds
						  * whole read it, covered by its hash */
#define SP_FEATURE_INCOMPAT_NAMEREF (1ULL << 8) /* base files named by an output file's index */
#define SP_FEATURE_INCOMPAT_DTABLE (1ULL << 9) /* the table's records coded against earlier ones */
#define SP_FEATURE_INCOMPAT_HISTSIZE (1ULL << 10) /* base files only the history reads take their
						   * sizes from the base */
#define SP_FEATURE_INCOMPAT_PTABLE (1ULL << 11) /* the coded table: base_off per codec, stored as
						 * byte planes */
#define SP_FEATURE_INCOMPAT_SUPPORTED                                                            \
	(SP_FEATURE_INCOMPAT_LOSSY | SP_FEATURE_INCOMPAT_PATCH | SP_FEATURE_INCOMPAT_HISTORY |    \
	 SP_FEATURE_INCOMPAT_PACK | SP_FEATURE_INCOMPAT_ZTABLE | SP_FEATURE_INCOMPAT_WHOLEFP |    \
	 SP_FEATURE_INCOMPAT_IMPLIED | SP_FEATURE_INCOMPAT_HISTBASE | SP_FEATURE_INCOMPAT_NAMEREF | \
	 SP_FEATURE_INCOMPAT_DTABLE | SP_FEATURE_INCOMPAT_HISTSIZE | SP_FEATURE_INCOMPAT_PTABLE)
#define SP_FEATURE_COMPAT_SUPPORTED 0ULL

/* Chunks are at most this large. By default a chunk of tensor data coded losslessly holds
 * 256 KiB (a random read decodes a quarter of what 1 MiB costs, for 0.3-0.5% more bytes), and
 * any other chunk 1 MiB (zstd frames and patches lose more to small chunks). */
#define SP_CHUNK_MIN (4u << 10)
#define SP_CHUNK_MAX (64u << 20)
#define SP_CHUNK_DEFAULT (1u << 20)
#define SP_CHUNK_TENSOR_DEFAULT (256u << 10)

struct sp_super {
	uint8_t magic[SP_MAGIC_LEN];
	uint32_t version;          /* SP_VERSION */
	uint32_t super_size;       /* sizeof(struct sp_super) */
	uint64_t feature_compat;
	uint64_t feature_incompat;
	uint64_t chunk_table_off;
	uint64_t chunk_count;
	uint64_t chunk_table_hash; /* XXH3-64 of the chunk table bytes, as stored */
	uint64_t manifest_off;
	uint64_t manifest_len;     /* compressed length */
	uint64_t manifest_raw_len; /* JSON length */
	uint64_t manifest_hash;    /* XXH3-64 of the compressed manifest */
	uint64_t file_size;        /* size of delta.sparse: catches truncation */
	uint64_t chunk_table_len;  /* SP_FEATURE_INCOMPAT_ZTABLE: the frame's length; else 0 */
	uint8_t reserved[16];      /* zero */
	uint64_t super_hash;       /* XXH3-64 of the 120 bytes above */
};
static_assert(sizeof(struct sp_super) == 128, "sp_super is 128 bytes on disk");

/* How a chunk's output bytes are produced. */
enum sp_codec {
	SP_CODEC_RAW = 0,   /* data holds the output bytes as they are */
	SP_CODEC_ZSTD = 1,  /* data holds one zstd frame of the output bytes */
	SP_CODEC_BASE = 2,  /* output equals base bytes [base_off, base_off + out_len); no data */
	SP_CODEC_DELTA = 3, /* lossless delta against the base (codec_lossless.h), see sp_chunk */
	SP_CODEC_LOSSY = 4, /* base + low rank + quantized residual (codec_lossy.h), approximate */
	SP_CODEC_PATCH = 5, /* zstd against a window of a base file (codec_patch.h) */
	SP_CODEC_HISTORY = 6, /* zstd with the delta's history as dictionary (codec_history.h) */
	SP_CODEC_SLICE = 7,   /* output equals bytes [base_off, +out_len) of a pack; no data */
	SP_CODEC_COUNT
};

/* Element types, as safetensors names them. SP_DT_BYTES stands for any other name. */
enum sp_dtype {
	SP_DT_BYTES = 0,
	SP_DT_BOOL,
	SP_DT_U8,
	SP_DT_I8,
	SP_DT_I16,
	SP_DT_U16,
	SP_DT_I32,
	SP_DT_U32,
	SP_DT_I64,
	SP_DT_U64,
	SP_DT_F16,
	SP_DT_BF16,
	SP_DT_F32,
	SP_DT_F64,
	SP_DT_F8_E4M3,
	SP_DT_F8_E5M2,
	SP_DT_COUNT
};

/*
 * One chunk of an output file. The chunks of a file are consecutive in the table, sorted by
 * out_off, and cover the file exactly. After the files' chunks come the manifest's aux_chunks
 * auxiliary chunks (RAW or ZSTD, or HISTORY, out_off 0), which belong to no file: data that the
 * LOSSY chunks of a tensor share, or a pack: small files coded together, each file a SLICE
 * chunk of it.
 *
 * SP_CODEC_DELTA and SP_CODEC_LOSSY read base_len bytes of base file base_file at base_off,
 * holding elements of base_dtype. DELTA converts them to dtype (round to nearest even) when the
 * dtypes differ, then applies the residual in data; out_hash is the hash of the output. LOSSY
 * computes in f32 with BLAS, whose last bit may differ between machines: its out_hash is the
 * hash of its data followed by its base bytes. SP_CODEC_PATCH reads the window of base file
 * base_file at base_off whose length its data names (codec_patch.h). SP_CODEC_HISTORY reads
 * the delta's history, which the manifest lists; its base_file is SP_NO_BASE. SP_CODEC_SLICE
 * copies out_len bytes at base_off of auxiliary chunk number base_file (0 is the first); with
 * SP_FEATURE_INCOMPAT_IMPLIED its out_hash is 0, the pack's own hash covering its bytes. With
 * SP_FEATURE_INCOMPAT_HISTBASE, a BASE chunk of a base file the history holds whole reads the
 * history instead, and its out_hash is 0: the history's hash covers those bytes.
 */
struct sp_chunk {
	uint64_t out_off;   /* offset of the chunk in its output file */
	uint64_t data_off;  /* offset of its encoded bytes in delta.sparse */
	uint64_t base_off;  /* offset of its base bytes in the base file */
	uint64_t out_hash;  /* XXH3-64 of the chunk's output bytes */
	uint32_t out_len;
	uint32_t data_len;
	uint32_t base_file; /* index into the manifest's base.files; UINT32_MAX for none */
	uint8_t codec;      /* enum sp_codec */
	uint8_t dtype;      /* enum sp_dtype of the output elements */
	uint8_t base_dtype; /* enum sp_dtype of the base elements */
	uint8_t reserved;   /* zero */
};
static_assert(sizeof(struct sp_chunk) == 48, "sp_chunk is 48 bytes on disk");

#define SP_NO_BASE UINT32_MAX

#endif
