/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libsparse: write a fine-tune as a delta against its base, and read it back byte for byte.
 * The library knows nothing of FUSE or of command lines; mksparse and sparsefs are front ends.
 */
#ifndef SPARSE_SPARSE_H
#define SPARSE_SPARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sparse/format.h"

#define SPARSE_VERSION_STRING "0.1.0"

/* Every failing call fills one of these with a message that names the file and the reason. */
struct sp_err {
	char msg[1024];
};

void sp_err_set(struct sp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Where the library writes its rare log lines (a bad chunk, a changed base): stderr by default. */
void sp_set_log(void (*log)(const char *line));
void sp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a byte count with an optional K, M or G suffix (powers of 1024); 0 or -1. */
int sp_parse_size(const char *s, uint64_t *out);

/* ---- Hugging Face hub ids ---- */

/* A model folder as the user named it: a folder, or a hub id ORG/NAME[@REVISION] found in the
 * local Hugging Face cache. */
struct sp_hub_ref {
	char *dir;      /* the folder: the argument itself, or the cache snapshot */
	char *id;       /* ORG/NAME when resolved from the cache, else NULL */
	char *revision; /* the branch, tag or commit asked for ("main" when none) */
	char *commit;   /* the snapshot's commit hash */
};

/* Splits ORG/NAME[@REVISION] (malloc'd; revision "main" when absent); -1 when arg is not one. */
int sp_hub_parse(const char *arg, char **id, char **revision);
/* An existing folder is itself (it wins over an id); else an id is looked up in HF_HUB_CACHE,
 * HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub and ~/.cache/huggingface/hub, in that order,
 * never on the network. Anything else is returned as it is, for the caller's open to fail on.
 * -1 when an id is not in the cache, with every place looked at in err. */
int sp_hub_locate(const char *arg, struct sp_hub_ref *ref, struct sp_err *err);
void sp_hub_ref_free(struct sp_hub_ref *ref);

/* ---- writing ---- */

enum sp_mode {
	SP_MODE_LOSSLESS, /* bit-exact */
	SP_MODE_SVD,      /* 2-D weights as base + a truncated SVD of the delta */
	SP_MODE_QUANT,    /* 2-D weights as base + optional low rank + a quantized residual */
};

/* How far a write is: what is planned (files, tensors) and encoded (bytes) of the totals. */
struct sp_progress {
	uint64_t files_done, files;
	uint64_t tensors_done, tensors;
	uint64_t bytes_done, bytes; /* the fine-tune's bytes */
	double seconds;             /* since the write began */
	int final;                  /* the last call, once everything is encoded */
};

/* Called on the writing thread, at most every SP_PROGRESS_INTERVAL seconds and once at the end;
 * not during the dry runs that a size budget makes. */
typedef void (*sp_progress_fn)(const struct sp_progress *p, void *arg);
#define SP_PROGRESS_INTERVAL 0.2

struct sp_write_opts {
	uint32_t chunk_size; /* output bytes per chunk; 0 = SP_CHUNK_DEFAULT */
	/* the same for tensor data coded losslessly, at most chunk_size; 0 = chunk_size if that
	 * is given, else SP_CHUNK_TENSOR_DEFAULT */
	uint32_t tensor_chunk_size;
	int level;           /* effort 1..19; 0 = default (3 for tensors, 12 for other files) */
	int threads;         /* 0 = one per online CPU, at most 64 */
	enum sp_mode mode;
	uint32_t rank;       /* svd: the rank; quant: the rank of the low-rank part (0: none) */
	double energy;       /* svd: if > 0, per tensor the smallest rank keeping this fraction of
			      * the delta's squared Frobenius norm (rank is then the most allowed) */
	int bits;            /* quant: 2..8 bits per residual code */
	uint32_t group;      /* quant: elements per scale; 0 = 128 */
	double step;         /* quant: > 0 sets each group's scale to step times the group's RMS
			      * (codes entropy coded, clamped to bits), instead of its largest value
			      * over the largest code */
	uint64_t size;       /* > 0: a budget in bytes for the whole delta: quant mode with the
			      * smallest step that fits (bits default 4) */
	int auto_rank;       /* with energy: a low-rank part only where the delta is low rank (the
			      * energy is kept within an eighth of its smaller dimension); a size
			      * budget without a rank sets it */
	int row_groups;      /* quant: in embeddings and the LM head, whose rows are tokens, the
			      * groups tile the rows (a row, several whole rows shorter than 256
			      * elements, or an equal part of at most group elements of a longer
			      * one) and each chunk holds whole groups; a size budget without a
			      * group sets it */
	int lowrank_embeddings; /* allow a low-rank part on embeddings and the LM head */
	int dry_run;         /* compute everything, write nothing */
	int verify;          /* before the delta takes its name, decode it all back through the
			      * reader: every chunk against its hash and, when bit-exact, against
			      * the fine-tune's bytes */
	/* "DERIVED=BASE" pairs: patch file DERIVED (a path in the fine-tune or derived dataset)
	 * against BASE (a path in the base), instead of the base file chosen by name or content */
	const char *const *map;
	size_t nmap;
	sp_progress_fn progress; /* NULL: none */
	void *progress_arg;
};

/* How much of the fine-tune's tensors is coded against a base tensor of the same name: the
 * tensors that are over all their elements (a shape or dtype that cannot be matched is stored
 * whole; a grown first dimension, in part), and the bytes that are. A small fraction says the
 * base is likely not the model the fine-tune came from. */
struct sp_base_match {
	uint64_t tensors, of_tensors;
	uint64_t bytes, of_bytes;
};

struct sp_write_stats {
	uint64_t ft_bytes;     /* total size of the fine-tune's files */
	uint64_t delta_bytes;  /* size of delta.sparse (that it would have, in a dry run) */
	uint64_t tensors;
	uint64_t chunks;
	double seconds;
	struct sp_base_match match;
	/* The quality report (a cJSON object: per tensor and total relative errors), owned by the
	 * caller (cJSON_Delete); lossy modes only, else NULL. */
	void *report;
};

/* Writes the delta of ft_dir against base_dir into out_dir/delta.sparse, atomically: on failure
 * nothing that looks like a delta is left behind. */
int sp_write_delta(const char *base_dir, const char *ft_dir, const char *out_dir,
		   const struct sp_write_opts *opts, struct sp_write_stats *stats, struct sp_err *err);

/* Refuses an output where the delta would become part of an input, or hold one: out_dir
 * equal to or inside inputs[i] (a folder or a hub id, whose role, such as "the base", says
 * what it is), or an input inside out_dir. Compared by real paths; out_dir need not exist (its
 * nearest existing parent is resolved), and inputs that do not exist are not compared. -1,
 * with the error set, when they overlap. */
int sp_write_check_output(const char *out_dir, const char *const *inputs,
			  const char *const *roles, size_t n, struct sp_err *err);

/* For a SIGINT or SIGTERM handler: removes the temporary file of the write in progress, if
 * any (async-signal-safe). The handler then ends the process. */
void sp_write_remove_temp(void);

/* Writes the model that a PEFT LoRA adapter makes of base_dir, merged (W + scale B A, computed
 * on read), as a delta in the base's layout. Lossy only in the rounding of the merge. */
int sp_write_adapter(const char *adapter_dir, const char *base_dir, const char *out_dir,
		     const struct sp_write_opts *opts, struct sp_write_stats *stats,
		     struct sp_err *err);

/* ---- reading ---- */

struct sp_delta;
struct sp_cache;

struct sp_file_info {
	const char *name; /* path relative to the model folder, '/'-separated */
	uint64_t size;
	int64_t mtime;    /* seconds since the epoch */
	uint32_t mtime_nsec;
	uint64_t first_chunk;
	uint64_t chunk_count;
	uint32_t mode;    /* permission bits (0: not recorded) */
	const char *link; /* a symbolic link: its target (size is its length); NULL for a file */
};

/* Is dir a delta directory (holding SP_DELTA_FILE)? */
int sp_is_delta_dir(const char *dir);

/* Do not open the base: the manifest and chunk table only (for --info); reads fail. */
#define SP_OPEN_NO_BASE 1u
/* Check each base file whole against the content hash recorded at write time, unless such a
 * check is remembered for it: a file that differs is refused, naming it. A match is remembered
 * by the file's identity (device, inode, size, mtime, ctime) and that hash, under
 * $XDG_CACHE_HOME/sparse (else ~/.cache/sparse), so that the next open of the unchanged file
 * costs nothing; one that cannot be written is just not remembered. */
#define SP_OPEN_CHECK_BASE 2u

/* Opens a delta and its base: base_dir overrides where the base lives (NULL: as recorded). The
 * base is checked cheaply (sizes, header hashes, sampled content), or whole with
 * SP_OPEN_CHECK_BASE; reading decodes nothing yet. A base file whose full check is remembered
 * counts as verified either way. */
struct sp_delta *sp_delta_open(const char *dir, const char *base_dir, unsigned flags,
			       struct sp_err *err);
void sp_delta_close(struct sp_delta *d);

const char *sp_delta_path(const struct sp_delta *d);
/* The size of the delta's SP_DELTA_FILE, as it was when the delta was opened. */
uint64_t sp_delta_bytes(const struct sp_delta *d);
const char *sp_delta_base_dir(const struct sp_delta *d);
size_t sp_delta_file_count(const struct sp_delta *d);
const struct sp_file_info *sp_delta_file(const struct sp_delta *d, size_t i);
uint64_t sp_delta_chunk_count(const struct sp_delta *d);
const struct sp_chunk *sp_delta_chunk(const struct sp_delta *d, uint64_t i);
/* The bytes of delta.sparse chunk i stands for: its data, or for a SLICE chunk its share of its
 * pack's data, in proportion to the bytes it takes of the pack. */
uint64_t sp_delta_chunk_stored(const struct sp_delta *d, uint64_t i);
/* What the manifest says of the delta and its base; NULL members were not recorded. */
struct sp_delta_about {
	const char *created_by;      /* the writer and its version */
	const char *mode;            /* "lossless", "svd", "quant" or "lora" */
	uint32_t chunk_size;         /* the largest chunk's output */
	const char *base_path;       /* the base, absolute, as written */
	const char *base_relpath;    /* the base relative to the delta's folder */
	const char *hub_id, *hub_revision, *hub_commit; /* a base named by a hub id */
	const struct sp_base_match *match; /* the fine-tune's tensors coded against the base */
};
void sp_delta_about(const struct sp_delta *d, struct sp_delta_about *about);

/* A tensor of an output file, as the manifest lists it. */
struct sp_tensor_info {
	const char *name;
	const char *dtype;             /* as safetensors names it: "BF16", ... */
	size_t ndim;
	const uint64_t *shape;
	uint64_t offset, size;         /* its bytes in the file */
	const char *base_dtype;        /* the base tensor it is coded against; NULL: none */
	size_t base_ndim;
	const uint64_t *base_shape;
};

/* The tensors of file i in the manifest's order, *n of them; NULL (and *n 0) for a file that
 * is not a safetensors file. */
const struct sp_tensor_info *sp_delta_tensors(const struct sp_delta *d, size_t i, size_t *n);

/* Decodes chunk i into out (chunk->out_len bytes) and verifies its hash. 0, or -EIO with one
 * log line naming the delta, file, tensor and chunk. */
int sp_delta_decode_chunk(struct sp_delta *d, uint64_t i, void *out);

/* Decodes every chunk of d, each checked against its hash (and logged when bad); with ft_dir,
 * also compares each chunk that is not LOSSY with the file of the same name in ft_dir. Returns
 * how many chunks are bad, err saying why the first is; -1 (err set) when a file of ft_dir
 * cannot be opened or memory runs out. */
int64_t sp_delta_verify(struct sp_delta *d, const char *ft_dir, struct sp_err *err);

/* Reads len bytes of file at off through cache (NULL: no cache). Returns the bytes read (short
 * only at end of file), or -EIO. Thread-safe. */
ssize_t sp_delta_read(struct sp_delta *d, struct sp_cache *cache, size_t file, void *buf,
		      size_t len, uint64_t off);

/* A range of a base file, as it is. */
struct sp_base_range {
	int fd;
	uint64_t pos;
	uint64_t len;
};

/* When every chunk that [off, off + len) of file overlaps (to the end of the file) is stored as
 * base bytes (SP_CODEC_BASE), fills r with the base ranges that make it, in order, and returns
 * how many: the caller may send them as they are (splice). 0 when some chunk is not, or more
 * than max ranges would be needed. Each chunk's base bytes are hashed on its first use (or
 * not, when its base file was verified whole): one whose hash differs gives -EIO, with one log
 * line naming the base file. -EIO too, with one log line, when a base file changed (fstat:
 * size, times, inode) since the delta was opened. Thread-safe. */
int sp_delta_base_ranges(struct sp_delta *d, size_t file, size_t len, uint64_t off,
			 struct sp_base_range *r, size_t max);

/* Verifies the whole base content against the hashes recorded at write time, always reading
 * it, and remembers a match as SP_OPEN_CHECK_BASE does. */
int sp_delta_check_base(struct sp_delta *d, struct sp_err *err);

/* ---- the chunk cache, shared by any number of deltas and threads ---- */

#define SP_CACHE_DEFAULT (32u << 20)

struct sp_cache *sp_cache_new(size_t max_bytes);
void sp_cache_free(struct sp_cache *c);

/* ---- decoding on threads of its own, into a cache ---- */

struct sp_pool;

/* Starts threads (0: one per online CPU, at most 64) that decode chunks into cache. */
struct sp_pool *sp_pool_new(struct sp_cache *cache, unsigned threads);
unsigned sp_pool_threads(const struct sp_pool *p);
/* Chunks stored as base bytes are not decoded ahead (a mount that splices them has no use for
 * them in the cache). Before the first prefetch. */
void sp_pool_skip_base(struct sp_pool *p);
/* Stops the threads, dropping what is queued; before the cache and the deltas go. */
void sp_pool_free(struct sp_pool *p);
/* Queues the chunks of file that hold [off, off + len) for decoding into the cache, behind what
 * is queued; chunks cached or queued already are skipped, and nothing is queued past the
 * cache's size. Returns at once. */
void sp_pool_prefetch(struct sp_pool *p, struct sp_delta *d, size_t file, uint64_t off,
		      uint64_t len);
/* sp_delta_read through the pool's cache, where the chunks after the first that the read spans
 * decode on the pool's threads meanwhile. */
ssize_t sp_pool_read(struct sp_pool *p, struct sp_delta *d, size_t file, void *buf, size_t len,
		     uint64_t off);

#endif
