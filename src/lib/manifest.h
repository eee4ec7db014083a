/* SPDX-License-Identifier: Apache-2.0 */
/* The delta's manifest: a JSON document (sparse-format(5)) naming the base, the output files and
 * their tensors. Building it for the writer, parsing and validating it for readers. */
#ifndef SP_MANIFEST_H
#define SP_MANIFEST_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "safetensors.h"
#include "sparse/sparse.h"

/* What a reader checks a base file against. */
struct sp_base_fp {
	char *name;
	uint64_t size;
	uint64_t header_hash;  /* XXH3-64 of the first min(size, header_len) bytes */
	uint64_t header_len;
	uint64_t sample_hash;  /* XXH3-64 of SP_FP_SAMPLES blocks spread over the file */
	uint64_t content_hash; /* XXH3-64 of the whole file */
	int whole; /* read: only content_hash was recorded (a small file), so the quick check
		    * hashes the file whole */
	int hashless; /* read: no content hash, as no chunk reads the file (the history alone
		       * does, and its own hash covers it): checks compare its size alone */
	int hash_implied; /* read: size and content hash taken from a BASE chunk */
	int from_history; /* read: the history holds it whole, at history_at, and BASE chunks
			   * read it there (SP_FEATURE_INCOMPAT_HISTBASE) */
	uint64_t history_at;
	size_t history_seg; /* read: that segment's index */
	int size_from_base; /* read: its size is the base file's, found when the base is opened
			     * (SP_FEATURE_INCOMPAT_HISTSIZE): only the history reads it */
};

/* Base files up to this size are fingerprinted by their content hash alone: their quick check
 * (header and samples) would read about as much. */
#define SP_FP_WHOLE_MAX (64u << 10)

/* A piece of the delta's history (codec_history.h): bytes [off, off + len) of a base file. */
struct sp_history_seg {
	uint32_t file; /* index into base */
	uint64_t off, len;
};

/* The tensors a file lists: a safetensors file's (present), none for other files. */
struct sp_file_tensors {
	struct sp_tensor_info *t;
	size_t n;
	uint64_t *dims; /* the shapes' dimensions, which t points into */
	int present;
};

struct sp_manifest {
	cJSON *root; /* the strings below point into it */
	const char *created_by;
	uint32_t chunk_size;
	const char *mode;
	const char *base_path;    /* absolute, as written */
	const char *base_relpath; /* relative to the delta directory */
	const char *hub_id;       /* the base's Hugging Face hub id, if named by one, */
	const char *hub_revision; /* the revision it was named by, */
	const char *hub_commit;   /* and the snapshot it was */
	struct sp_base_match match;
	int has_match;            /* older deltas do not record it */
	struct sp_base_fp *base;
	size_t nbase;
	struct sp_file_info *files;
	struct sp_file_tensors *tensors; /* per file */
	size_t nfiles;
	uint64_t aux_chunks; /* chunks after the files' chunks, shared by LOSSY chunks */
	struct sp_history_seg *history; /* HISTORY chunks' dictionary, these concatenated */
	size_t nhistory;
	uint64_t history_len; /* their total, at most SP_HISTORY_MAX */
	int sizes_from_base;  /* some of its files' sizes are the base's: it is laid out (and
			       * checked against history_len) when the base is opened */
	uint64_t history_hash; /* XXH3-64 of the history's bytes, */
	int has_history_hash;  /* when recorded */
};

/* ---- writer side: the only code that knows the manifest's keys ---- */
/* The manifest being written. */
struct sp_manifest_draft;
/* A draft for a delta of this mode and largest chunk size (NULL: out of memory); then, in this
 * order: its base (path, relpath relative to the delta's folder or NULL, hub id or NULL), the
 * base files as they are fingerprinted and the output files as they are planned (each after its
 * tensors), the base match, the number of auxiliary chunks (when any); the history's segments
 * whenever the base file they name has been added. */
struct sp_manifest_draft *sp_draft_new(const char *mode, uint32_t chunk_size);
void sp_draft_free(struct sp_manifest_draft *d);
void sp_draft_set_base(struct sp_manifest_draft *d, const char *path, const char *relpath,
		       const struct sp_hub_ref *hub);
void sp_draft_add_base_fp(struct sp_manifest_draft *d, const struct sp_base_fp *fp);
/* A tensor of the next file, with the base tensor it is coded against (or NULL). */
void sp_draft_add_tensor(struct sp_manifest_draft *d, const struct sp_tensor *t,
			 const struct sp_tensor *base);
/* A file, with the tensors added since the last file when has_tensors (a safetensors file). */
void sp_draft_add_file(struct sp_manifest_draft *d, const struct sp_file_info *f, int has_tensors);
void sp_draft_set_match(struct sp_manifest_draft *d, const struct sp_base_match *match);
void sp_draft_set_aux(struct sp_manifest_draft *d, uint64_t aux_chunks);
void sp_draft_add_history(struct sp_manifest_draft *d, const struct sp_history_seg *seg);
void sp_draft_set_history_hash(struct sp_manifest_draft *d, uint64_t hash);
/* Before sp_draft_pack: the BASE chunks of base files the history holds whole lose their
 * hashes, as a reader of SP_FEATURE_INCOMPAT_HISTBASE takes their bytes from the history, which
 * its own hash covers, and so do the fingerprints of those files that no other chunk reads; 1
 * when the history holds any file whole (the delta then sets the bit). */
int sp_draft_base_from_history(struct sp_manifest_draft *d, struct sp_chunk *chunks, size_t n);

/* The manifest as the delta stores it: zstd-compressed JSON, data (len bytes) owned by the
 * caller. */
struct sp_packed {
	uint8_t *data;
	size_t len, raw_len;
	uint64_t features; /* the incompatible features its form needs (the manifest's) */
};
/* Packs d at zstd level level, leaving out what the delta's n chunks imply (a reader of
 * SP_FEATURE_INCOMPAT_IMPLIED takes it from them) and the content hashes of small base files no
 * chunk reads, and naming base files by the output files of their names
 * (SP_FEATURE_INCOMPAT_NAMEREF); errors name path. */
int sp_draft_pack(struct sp_manifest_draft *d, const struct sp_chunk *chunks, size_t n, int level,
		  struct sp_packed *out, const char *path, struct sp_err *err);

/* ---- reader side ---- */
/* What a manifest is read with: the delta's chunk table, loaded first (its records are checked
 * later, against the manifest) and its incompatible features. */
struct sp_manifest_table {
	const struct sp_chunk *chunks;
	uint64_t count;
	uint64_t features;
};
/* Parses and validates json; the table bounds the files' chunk ranges and, with
 * SP_FEATURE_INCOMPAT_IMPLIED, gives what the manifest leaves out. */
int sp_manifest_parse(const char *json, size_t len, const struct sp_manifest_table *t,
		      struct sp_manifest *m, const char *path, struct sp_err *err);
void sp_manifest_free(struct sp_manifest *m);
/* Lays the history out (history_at of the files it holds whole; the lengths of the segments of
 * files whose sizes the base gives, once they are known); returns its length. The parser lays
 * out a history whose sizes it knows; the delta, once it opens the base, one whose it does not
 * (SP_FEATURE_INCOMPAT_HISTSIZE). */
uint64_t sp_manifest_layout_history(struct sp_manifest *m);
/* The tensor holding output offset off of file file, for log lines: "(none)" outside any. */
const char *sp_manifest_tensor_at(const struct sp_manifest *m, size_t file, uint64_t off);

#endif
