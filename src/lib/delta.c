/* SPDX-License-Identifier: Apache-2.0 */
/* Opening a delta over its base, and the one read path: (file, offset, length) -> bytes. The
 * mount, --extract and --check all read through here. */
#include "delta.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "basefp.h"
#include "cache.h"
#include "chunk.h"
#include "history.h"
#include "sparse/util.h"
#include "source.h"

/* Decoded auxiliary chunks (low-rank factors shared by a tensor's chunks) kept per delta. */
#define AUX_CACHE (64u << 20)
/* A full check of a base file this big takes long enough (from a disk, a tenth of a second and
 * more) to say why the mount waits. */
#define SAY_CHECK (256u << 20)

int sp_is_delta_dir(const char *dir)
{
	char *p;
	if (asprintf(&p, "%s/%s", dir, SP_DELTA_FILE) < 0)
		return 0;
	int ok = access(p, F_OK) == 0;
	free(p);
	return ok;
}

static void close_base(struct sp_delta *d)
{
	for (size_t i = 0; d->base && i < d->m.nbase; i++) {
		if (d->base[i].fd >= 0)
			close(d->base[i].fd);
		free(d->base[i].path);
	}
	free(d->base);
	d->base = NULL;
	free(d->base_dir);
	d->base_dir = NULL;
}

/* Has base file b changed since it was opened? Its size, times or inode say so. */
static int base_changed(const struct sp_base_file *b)
{
	struct stat st;
	const struct stat *o = &b->seen;
	return fstat(b->fd, &st) || st.st_size != o->st_size || st.st_ino != o->st_ino ||
	       st.st_dev != o->st_dev || st.st_mtim.tv_sec != o->st_mtim.tv_sec ||
	       st.st_mtim.tv_nsec != o->st_mtim.tv_nsec || st.st_ctim.tv_sec != o->st_ctim.tv_sec ||
	       st.st_ctim.tv_nsec != o->st_ctim.tv_nsec;
}

/* Hashes base file i whole against the delta's record; a match is remembered by the file's
 * identity as it was opened, when it did not change meanwhile. */
static int check_base_file(struct sp_delta *d, size_t i, struct sp_err *err)
{
	struct sp_base_file *b = &d->base[i];
	time_t began = time(NULL);
	if (d->m.base[i].hashless) /* no chunk reads it: the history's own hash covers it */
		return 0;
	if (sp_fp_check_content(b->fd, &d->m.base[i], b->path, err))
		return -1;
	if (base_changed(b)) {
		sp_err_set(err, "%s: changed while it was being checked", b->path);
		return -1;
	}
	sp_fp_verdict_remember(&b->seen, d->m.base[i].content_hash, began);
	b->verified = 1;
	return 0;
}

/* Opens base file i under dir and checks its fingerprint; a remembered full check of it
 * stands, else SP_OPEN_CHECK_BASE makes one. */
static int open_base_file(struct sp_delta *d, size_t i, const char *dir, unsigned flags,
			  struct sp_err *err)
{
	struct sp_base_file *b = &d->base[i];
	if (asprintf(&b->path, "%s/%s", dir, d->m.base[i].name) < 0) {
		b->path = NULL;
		sp_err_set(err, "%s: out of memory", d->dir);
		return -1;
	}
	b->fd = open(b->path, O_RDONLY | O_CLOEXEC);
	if (b->fd < 0 || fstat(b->fd, &b->seen)) {
		sp_err_set(err, "%s: base file %s: %s", d->dir, b->path, strerror(errno));
		return -1;
	}
	if (d->m.base[i].size_from_base)
		d->m.base[i].size = (uint64_t)b->seen.st_size;
	if (sp_fp_check_quick(b->fd, &d->m.base[i], b->path, err))
		return -1;
	if (d->m.base[i].hashless)
		return 0;
	b->verified = sp_fp_verdict_known(&b->seen, d->m.base[i].content_hash);
	if (b->verified || !(flags & SP_OPEN_CHECK_BASE))
		return 0;
	if (d->m.base[i].size >= SAY_CHECK)
		sp_log("%s: hashing the whole base file (%llu MiB) against the delta's record, "
		       "once while it stays unchanged", b->path,
		       (unsigned long long)(d->m.base[i].size >> 20));
	return check_base_file(d, i, err);
}

/* The history's files whose sizes the base gives must add up to the length the delta was made
 * with: a base of other sizes is refused here, as a fingerprint's size is. */
static int lay_out_history(struct sp_delta *d, const char *dir, struct sp_err *err)
{
	uint64_t len = sp_manifest_layout_history(&d->m);
	if (len == d->m.history_len)
		return 0;
	sp_err_set(err,
		   "%s: the history's files hold %llu bytes where the base this delta was made "
		   "against held %llu (wrong base? -o base=DIR says where the right one is)",
		   dir, (unsigned long long)len, (unsigned long long)d->m.history_len);
	return -1;
}

/* Opens every base file under dir and checks it. */
static int open_base_in(struct sp_delta *d, const char *dir, unsigned flags, struct sp_err *err)
{
	d->base = calloc(d->m.nbase + 1, sizeof(*d->base));
	if (!d->base || !(d->base_dir = strdup(dir))) {
		sp_err_set(err, "%s: out of memory", d->dir);
		return -1;
	}
	for (size_t i = 0; i < d->m.nbase; i++)
		d->base[i].fd = -1;
	for (size_t i = 0; i < d->m.nbase; i++)
		if (open_base_file(d, i, dir, flags, err))
			return -1;
	return d->m.sizes_from_base ? lay_out_history(d, dir, err) : 0;
}

/* The recorded hub id at its recorded commit, looked up in this machine's cache; NULL (with
 * why in err) when it is not there. */
static char *hub_base(const struct sp_delta *d, struct sp_err *err)
{
	struct sp_hub_ref ref;
	char *id, *dir = NULL;
	if (!d->m.hub_id || asprintf(&id, "%s@%s", d->m.hub_id, d->m.hub_commit) < 0)
		return NULL;
	if (sp_hub_locate(id, &ref, err) == 0) {
		dir = ref.dir;
		ref.dir = NULL;
		sp_hub_ref_free(&ref);
	}
	free(id);
	return dir;
}

/* The base is where -o base= says (a folder or a hub id), else the recorded hub id in the local
 * cache, else where it was (absolute path), else where it is relative to a local delta (both
 * moved together). */
static int open_base(struct sp_delta *d, const char *override, unsigned flags,
		     struct sp_err *err)
{
	struct sp_hub_ref given = {0};
	struct sp_err hub_err = {{0}};
	char *rel = NULL, *hub = NULL;
	if (override && sp_hub_locate(override, &given, err))
		return -1;
	const char *cands[4] = {given.dir, NULL, override ? NULL : d->m.base_path, NULL};
	if (!override && (hub = hub_base(d, &hub_err)))
		cands[1] = hub;
	if (!override && d->m.base_relpath && d->src->ops->local &&
	    asprintf(&rel, "%s/%s", d->dir, d->m.base_relpath) > 0)
		cands[3] = rel;
	struct sp_err first = {{0}};
	int rc = -1;
	for (int i = 0; i < 4 && rc; i++) {
		if (!cands[i] || (i > 0 && access(cands[i], F_OK)))
			continue;
		close_base(d);
		rc = open_base_in(d, cands[i], flags, err);
		if (rc && !first.msg[0])
			first = *err;
	}
	free(rel);
	free(hub);
	sp_hub_ref_free(&given);
	if (rc && first.msg[0])
		*err = first;
	else if (rc)
		sp_err_set(err, "%s: base %s not found (-o base=DIR says where it is)%s%.700s", d->dir,
			   d->m.base_path, hub_err.msg[0] ? "; " : "", hub_err.msg);
	return rc;
}

struct sp_delta *sp_delta_open(const char *dir, const char *base_dir, unsigned flags,
			       struct sp_err *err)
{
	char *path;
	if (asprintf(&path, "%s/%s", dir, SP_DELTA_FILE) < 0) {
		sp_err_set(err, "%s: out of memory", dir);
		return NULL;
	}
	struct sp_delta *d = sp_delta_open_file(dir, path, base_dir, flags, err);
	free(path);
	return d;
}

struct sp_delta *sp_delta_open_file(const char *dir, const char *file, const char *base_dir,
				    unsigned flags, struct sp_err *err)
{
	struct sp_source *src = sp_source_file_open(file, err);
	return src ? sp_delta_open_source(dir, file, src, base_dir, flags, err) : NULL;
}

/* A history segment's bytes (history.c reads them through here). */
static int read_base(void *owner, uint32_t file, void *buf, uint64_t len, uint64_t off)
{
	const struct sp_delta *d = owner;
	return d->base ? sp_pread_full(d->base[file].fd, buf, len, off) : -1;
}

struct sp_delta *sp_delta_open_source(const char *dir, const char *file, struct sp_source *src,
				      const char *base_dir, unsigned flags, struct sp_err *err)
{
	struct sp_delta *d = calloc(1, sizeof(*d));
	if (!d) {
		sp_err_set(err, "%s: out of memory", dir);
		sp_source_close(src);
		return NULL;
	}
	d->src = src;
	if (!(d->dir = strdup(dir)) || !(d->path = strdup(file)))
		goto no_memory;
	if (sp_delta_load(d, err))
		goto fail;
	if (!(d->reported = calloc(d->sb.chunk_count + 1, 1)) ||
	    !(d->base_ok = calloc(d->sb.chunk_count / 64 + 1, sizeof(*d->base_ok))) ||
	    !(d->aux_cache = sp_cache_new(AUX_CACHE)) ||
	    (d->m.history_len && !(d->history = sp_history_new(&d->m, read_base, d))))
		goto no_memory;
	if (!(flags & SP_OPEN_NO_BASE) && open_base(d, base_dir, flags, err))
		goto fail;
	return d;
no_memory:
	sp_err_set(err, "%s: out of memory", dir);
fail:
	sp_delta_close(d);
	return NULL;
}

void sp_delta_close(struct sp_delta *d)
{
	if (!d)
		return;
	close_base(d);
	sp_source_close(d->src);
	sp_manifest_free(&d->m);
	free(d->chunks);
	free(d->reported);
	free(d->base_ok);
	sp_cache_free(d->aux_cache);
	sp_history_free(d->history);
	free(d->path);
	free(d->dir);
	free(d);
}

const char *sp_delta_path(const struct sp_delta *d)
{
	return d->dir;
}

uint64_t sp_delta_bytes(const struct sp_delta *d)
{
	return sp_source_size(d->src);
}

const char *sp_delta_base_dir(const struct sp_delta *d)
{
	return d->base_dir;
}

size_t sp_delta_file_count(const struct sp_delta *d)
{
	return d->m.nfiles;
}

const struct sp_file_info *sp_delta_file(const struct sp_delta *d, size_t i)
{
	return &d->m.files[i];
}

uint64_t sp_delta_chunk_count(const struct sp_delta *d)
{
	return d->sb.chunk_count;
}

const struct sp_chunk *sp_delta_chunk(const struct sp_delta *d, uint64_t i)
{
	return &d->chunks[i];
}

void sp_delta_about(const struct sp_delta *d, struct sp_delta_about *about)
{
	*about = (struct sp_delta_about){
		.created_by = d->m.created_by, .mode = d->m.mode, .chunk_size = d->m.chunk_size,
		.base_path = d->m.base_path, .base_relpath = d->m.base_relpath,
		.hub_id = d->m.hub_id, .hub_revision = d->m.hub_revision,
		.hub_commit = d->m.hub_commit, .match = d->m.has_match ? &d->m.match : NULL,
	};
}

/* The index of auxiliary chunk ord: they end the table. */
static uint64_t aux_index(const struct sp_delta *d, uint64_t ord)
{
	return d->sb.chunk_count - d->m.aux_chunks + ord;
}

uint64_t sp_delta_chunk_stored(const struct sp_delta *d, uint64_t i)
{
	const struct sp_chunk *c = &d->chunks[i];
	if (c->codec != SP_CODEC_SLICE)
		return c->data_len;
	const struct sp_chunk *pack = &d->chunks[aux_index(d, c->base_file)];
	return (pack->data_len * (uint64_t)c->out_len + pack->out_len / 2) / pack->out_len;
}

const struct sp_tensor_info *sp_delta_tensors(const struct sp_delta *d, size_t i, size_t *n)
{
	*n = d->m.tensors[i].n;
	return d->m.tensors[i].present ? d->m.tensors[i].t : NULL;
}

/* ---- per-thread decoding state ---- */

struct scratch {
	struct sp_codecs cs;
	struct sp_scratch data, base; /* a chunk's encoded bytes and its base bytes */
};

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_free(void *p)
{
	struct scratch *s = p;
	sp_codecs_fini(&s->cs);
	free(s->data.p);
	free(s->base.p);
	free(s);
}

static void scratch_key_init(void)
{
	pthread_key_create(&scratch_key, scratch_free);
}

static struct scratch *scratch_get(void)
{
	pthread_once(&scratch_once, scratch_key_init);
	struct scratch *s = pthread_getspecific(scratch_key);
	if (s)
		return s;
	s = calloc(1, sizeof(*s));
	if (!s || sp_codecs_init(&s->cs)) {
		free(s);
		return NULL;
	}
	pthread_setspecific(scratch_key, s);
	return s;
}

/* ---- decoding ---- */

static size_t file_of_chunk(const struct sp_delta *d, uint64_t idx)
{
	size_t lo = 0, hi = d->m.nfiles;
	while (hi - lo > 1) {
		size_t mid = (lo + hi) / 2;
		if (d->m.files[mid].first_chunk <= idx)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

static const char CANNOT_READ[] = "cannot read the delta";
/* A source that fails (a server down, an object replaced) fails every chunk at once and says
 * why itself: one chunk's line a minute is enough. */
#define CANNOT_READ_SAID_S 60

/* 1 when a chunk that cannot be read is logged now, 0 when one was within the last minute. */
static int say_cannot_read(struct sp_delta *d)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* A minute later than the clock, so that src_said's 0 is a minute ago even at boot. */
	uint64_t now = (uint64_t)ts.tv_sec + CANNOT_READ_SAID_S, last;
	last = __atomic_load_n(&d->src_said, __ATOMIC_RELAXED);
	return now - last >= CANNOT_READ_SAID_S &&
	       __atomic_compare_exchange_n(&d->src_said, &last, now, 0, __ATOMIC_RELAXED,
					   __ATOMIC_RELAXED);
}

static int chunk_failed(struct sp_delta *d, uint64_t idx, const char *why)
{
	const struct sp_chunk *c = &d->chunks[idx];
	size_t f = file_of_chunk(d, idx);
	if (why == CANNOT_READ && !say_cannot_read(d))
		return -EIO;
	if (__atomic_exchange_n(&d->reported[idx], 1, __ATOMIC_RELAXED))
		return -EIO;
	const char *more = why == CANNOT_READ ? "; others that cannot be read in the next minute "
						"are not logged" : "";
	if (idx >= d->sb.chunk_count - d->m.aux_chunks) {
		sp_log("%s: auxiliary chunk %llu: %s%s", d->dir, (unsigned long long)idx, why, more);
		return -EIO;
	}
	sp_log("%s: file %s, tensor %s, chunk %llu (bytes %llu..%llu): %s%s", d->dir,
	       d->m.files[f].name, sp_manifest_tensor_at(&d->m, f, c->out_off), (unsigned long long)idx,
	       (unsigned long long)c->out_off, (unsigned long long)(c->out_off + c->out_len), why,
	       more);
	return -EIO;
}

/* Reads a chunk's data and the base bytes it needs (a PATCH chunk's data names its window). */
static const char *read_inputs(struct sp_delta *d, const struct sp_chunk *c, struct scratch *s,
			       struct sp_chunk_in *in)
{
	uint64_t blen = sp_chunk_base_len(c);
	if (!sp_scratch_get(&s->data, c->data_len))
		return "out of memory";
	if (sp_source_pread(d->src, s->data.p, c->data_len, c->data_off))
		return CANNOT_READ;
	if (c->codec == SP_CODEC_PATCH &&
	    (sp_chunk_patch_window(c, s->data.p, &blen) ||
	     blen > d->m.base[c->base_file].size - c->base_off))
		return "names a window outside its base file (damaged delta)";
	if (!sp_scratch_get(&s->base, blen) ||
	    (blen && sp_pread_full(d->base[c->base_file].fd, s->base.p, blen, c->base_off)))
		return "cannot read the base";
	*in = (struct sp_chunk_in){.data = s->data.p, .base = s->base.p, .base_len = blen};
	const char *why = NULL;
	if (c->codec == SP_CODEC_HISTORY && !(in->history = sp_history_dict(d->history, &why)))
		return why;
	return NULL;
}

/* An auxiliary chunk (RAW, ZSTD or HISTORY) into out. It is fetched in the middle of decoding a
 * LOSSY or SLICE chunk, so it keeps off the thread's scratch buffers, which hold that chunk's
 * inputs. */
static int decode_aux(void *owner, uint64_t idx, void *out)
{
	struct sp_delta *d = owner;
	const struct sp_chunk *c = &d->chunks[idx];
	struct scratch *s = scratch_get();
	uint8_t *data = malloc(c->data_len + 1);
	struct sp_chunk_in in = {.data = data};
	const char *why = s && data ? CANNOT_READ : "out of memory";
	if (!s || !data || sp_source_pread(d->src, data, c->data_len, c->data_off) ||
	    (c->codec == SP_CODEC_HISTORY && !(in.history = sp_history_dict(d->history, &why)))) {
		free(data);
		return chunk_failed(d, idx, why);
	}
	int rc = sp_chunk_decode(&s->cs, c, &in, out);
	free(data);
	if (rc)
		return chunk_failed(d, idx, "does not decode (damaged delta)");
	if (XXH3_64bits(out, c->out_len) != c->out_hash)
		return chunk_failed(d, idx, "checksum mismatch (damaged delta)");
	return 0;
}

/* A LOSSY chunk: its inputs are checked (its output may differ in the last bit between
 * machines), then decoded with the auxiliary chunk it names, from the delta's own cache. */
static int decode_lossy(struct sp_delta *d, uint64_t idx, struct scratch *s,
			struct sp_chunk_in *in, void *out)
{
	const struct sp_chunk *c = &d->chunks[idx];
	if (sp_lossy_inputs_hash(in->data, c->data_len, in->base, in->base_len) != c->out_hash)
		return chunk_failed(d, idx, "checksum mismatch (damaged delta, or the base changed)");
	long ord = sp_lossy_aux(in->data, c->data_len);
	uint64_t k = aux_index(d, (uint64_t)ord);
	struct sp_cache_entry *held = NULL;
	const uint8_t *aux = NULL;
	int rc = 0;
	if (ord >= 0 && (uint64_t)ord >= d->m.aux_chunks)
		return chunk_failed(d, idx, "names no auxiliary chunk (damaged delta)");
	if (ord >= 0 && !(aux = sp_cache_get(d->aux_cache, d, k, d->chunks[k].out_len, decode_aux,
					      &held, &rc)))
		return rc;
	in->aux = aux;
	in->aux_len = aux ? d->chunks[k].out_len : 0;
	rc = sp_chunk_decode(&s->cs, c, in, out);
	if (held)
		sp_cache_release(d->aux_cache, held);
	return rc ? chunk_failed(d, idx, "does not decode (damaged delta)") : 0;
}

/* A SLICE chunk: its bytes of the pack it names, decoded once into the delta's own cache. */
static int decode_slice(struct sp_delta *d, uint64_t idx, void *out)
{
	const struct sp_chunk *c = &d->chunks[idx];
	uint64_t k = aux_index(d, c->base_file);
	struct sp_cache_entry *held = NULL;
	int rc = 0;
	const uint8_t *pack = sp_cache_get(d->aux_cache, d, k, d->chunks[k].out_len, decode_aux,
					   &held, &rc);
	if (!pack)
		return rc;
	memcpy(out, pack + c->base_off, c->out_len);
	sp_cache_release(d->aux_cache, held);
	if (!(d->sb.feature_incompat & SP_FEATURE_INCOMPAT_IMPLIED) && /* else the pack's hash */
	    XXH3_64bits(out, c->out_len) != c->out_hash)
		return chunk_failed(d, idx, "checksum mismatch (damaged delta)");
	return 0;
}

/* Base chunk k's bytes, read since its base file was opened, matched its hash. */
static void base_chunk_matched(struct sp_delta *d, uint64_t k)
{
	__atomic_fetch_or(&d->base_ok[k / 64], 1ull << (k % 64), __ATOMIC_RELAXED);
}

/* Were base chunk k's bytes verified while its base file was as it was opened (its whole
 * content at open, or the chunk since)? */
static int base_chunk_trusted(const struct sp_delta *d, uint64_t k)
{
	return d->base[d->chunks[k].base_file].verified ||
	       (__atomic_load_n(&d->base_ok[k / 64], __ATOMIC_RELAXED) >> (k % 64) & 1);
}

/* Base chunk k's base bytes do not hash to what the delta recorded. */
static int base_mismatch(struct sp_delta *d, uint64_t k)
{
	const struct sp_chunk *c = &d->chunks[k];
	char why[4352];
	snprintf(why, sizeof(why),
		 "base file %s, bytes %llu..%llu: checksum mismatch (the base changed since the "
		 "delta was written)",
		 d->base[c->base_file].path, (unsigned long long)c->base_off,
		 (unsigned long long)(c->base_off + c->out_len));
	return chunk_failed(d, k, why);
}

/* A BASE chunk of a file the history holds whole: its bytes there, which the history's hash
 * checked when it was joined (SP_FEATURE_INCOMPAT_HISTBASE). */
static int decode_base_from_history(struct sp_delta *d, uint64_t idx, void *out)
{
	const struct sp_chunk *c = &d->chunks[idx];
	const char *why = NULL;
	const uint8_t *h = sp_history_bytes(d->history, &why);
	if (!h)
		return chunk_failed(d, idx, why);
	memcpy(out, h + d->m.base[c->base_file].history_at + c->base_off, c->out_len);
	return 0;
}

static int decode_base(struct sp_delta *d, uint64_t idx, void *out)
{
	const struct sp_chunk *c = &d->chunks[idx];
	if (d->m.base[c->base_file].from_history)
		return decode_base_from_history(d, idx, out);
	if (sp_pread_full(d->base[c->base_file].fd, out, c->out_len, c->base_off))
		return chunk_failed(d, idx, "cannot read the base");
	if (XXH3_64bits(out, c->out_len) != c->out_hash)
		return base_mismatch(d, idx);
	base_chunk_matched(d, idx);
	return 0;
}

int sp_delta_decode_chunk(struct sp_delta *d, uint64_t idx, void *out)
{
	const struct sp_chunk *c = &d->chunks[idx];
	struct scratch *s = scratch_get();
	struct sp_chunk_in in;
	const char *why;
	if (!s)
		return chunk_failed(d, idx, "out of memory");
	if (c->codec == SP_CODEC_SLICE)
		return decode_slice(d, idx, out);
	if (c->base_file != SP_NO_BASE && !d->base)
		return chunk_failed(d, idx, "the base is not open");
	if (c->codec == SP_CODEC_BASE)
		return decode_base(d, idx, out);
	if ((why = read_inputs(d, c, s, &in)))
		return chunk_failed(d, idx, why);
	if (c->codec == SP_CODEC_LOSSY)
		return decode_lossy(d, idx, s, &in, out);
	if (sp_chunk_decode(&s->cs, c, &in, out))
		return chunk_failed(d, idx, "does not decode (damaged delta, or the base changed)");
	if (XXH3_64bits(out, c->out_len) != c->out_hash)
		return chunk_failed(d, idx, "checksum mismatch (damaged delta, or the base changed)");
	return 0;
}

static int fill(void *owner, uint64_t idx, void *out)
{
	return sp_delta_decode_chunk(owner, idx, out);
}

/* Copies the part of chunk k that [off, off+len) overlaps into buf. A chunk found in the cache
 * (decoded ahead, or partly read before) is copied; other whole chunks decode straight into buf;
 * other partial ones go through the cache so that the next read finds them. */
static int read_chunk(struct sp_delta *d, struct sp_cache *cache, uint64_t k, uint8_t *buf,
		      size_t len, uint64_t off)
{
	const struct sp_chunk *c = &d->chunks[k];
	uint64_t from = off > c->out_off ? off : c->out_off;
	uint64_t to = off + len < c->out_off + c->out_len ? off + len : c->out_off + c->out_len;
	struct sp_cache_entry *held = NULL;
	const uint8_t *src = NULL;
	uint8_t *tmp = NULL;
	int rc = 0;
	if (from == c->out_off && to == c->out_off + c->out_len) {
		if (!cache || !(src = sp_cache_find(cache, d, k, &held)))
			return sp_delta_decode_chunk(d, k, buf + (from - off));
	} else if (cache) {
		src = sp_cache_get(cache, d, k, c->out_len, fill, &held, &rc);
	} else {
		src = tmp = malloc(c->out_len);
		rc = tmp ? sp_delta_decode_chunk(d, k, tmp) : -ENOMEM;
	}
	if (rc == 0)
		memcpy(buf + (from - off), src + (from - c->out_off), to - from);
	if (held)
		sp_cache_release_served(cache, held, to - from);
	free(tmp);
	return rc;
}

uint64_t sp_delta_find_chunk(const struct sp_delta *d, const struct sp_file_info *f, uint64_t off)
{
	uint64_t lo = f->first_chunk, hi = f->first_chunk + f->chunk_count;
	while (hi - lo > 1) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (d->chunks[mid].out_off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

ssize_t sp_delta_read(struct sp_delta *d, struct sp_cache *cache, size_t file, void *buf,
		      size_t len, uint64_t off)
{
	const struct sp_file_info *f = &d->m.files[file];
	if (f->link)
		return -EINVAL; /* a link has a target, not content */
	if (off >= f->size)
		return 0;
	if (len > f->size - off)
		len = (size_t)(f->size - off);
	uint64_t end = off + len;
	for (uint64_t k = sp_delta_find_chunk(d, f, off); k < f->first_chunk + f->chunk_count; k++) {
		if (d->chunks[k].out_off >= end)
			break;
		int rc = read_chunk(d, cache, k, buf, len, off);
		if (rc)
			return rc;
	}
	return (ssize_t)len;
}

/* Appends chunk c's base bytes in [from, to) to r, joined to the last range where they go on
 * from it; 0, or -1 when r is full. */
static int add_range(const struct sp_delta *d, const struct sp_chunk *c, uint64_t from,
		     uint64_t to, struct sp_base_range *r, size_t *n, size_t max)
{
	int fd = d->base[c->base_file].fd;
	uint64_t pos = c->base_off + (from - c->out_off);
	if (*n && r[*n - 1].fd == fd && r[*n - 1].pos + r[*n - 1].len == pos) {
		r[*n - 1].len += to - from;
		return 0;
	}
	if (*n == max)
		return -1;
	r[(*n)++] = (struct sp_base_range){.fd = fd, .pos = pos, .len = to - from};
	return 0;
}

/* Base chunk k's bytes hashed as the delta recorded, now or earlier while its base file was as
 * it was opened; else -EIO and a log line naming the base file. */
static int check_base_chunk(struct sp_delta *d, uint64_t k)
{
	const struct sp_chunk *c = &d->chunks[k];
	uint64_t h;
	if (base_chunk_trusted(d, k))
		return 0;
	if (sp_fp_hash_range(d->base[c->base_file].fd, c->base_off, c->out_len, &h))
		return chunk_failed(d, k, "cannot read the base");
	if (h != c->out_hash)
		return base_mismatch(d, k);
	base_chunk_matched(d, k);
	return 0;
}

/* Chunks first..last, all base chunks, may be spliced: each verified, and no base file
 * changed since it was opened (checked after the hashes, which it then covers). */
static int check_spliced(struct sp_delta *d, uint64_t first, uint64_t last)
{
	uint32_t checked = SP_NO_BASE;
	for (uint64_t k = first; k <= last; k++) {
		int rc = check_base_chunk(d, k);
		if (rc)
			return rc;
	}
	for (uint64_t k = first; k <= last; k++) {
		const struct sp_chunk *c = &d->chunks[k];
		if (c->base_file != checked && base_changed(&d->base[checked = c->base_file]))
			return chunk_failed(d, k, "its base file changed since it was opened "
						  "(size, times or inode): not spliced");
	}
	return 0;
}

int sp_delta_base_ranges(struct sp_delta *d, size_t file, size_t len, uint64_t off,
			 struct sp_base_range *r, size_t max)
{
	const struct sp_file_info *f = &d->m.files[file];
	size_t n = 0;
	if (f->link || off >= f->size || !d->base)
		return 0;
	uint64_t end = len > f->size - off ? f->size : off + len;
	uint64_t first = sp_delta_find_chunk(d, f, off), k = first;
	for (; k < f->first_chunk + f->chunk_count && d->chunks[k].out_off < end; k++) {
		const struct sp_chunk *c = &d->chunks[k];
		uint64_t from = off > c->out_off ? off : c->out_off;
		uint64_t to = end < c->out_off + c->out_len ? end : c->out_off + c->out_len;
		if (c->codec != SP_CODEC_BASE || d->m.base[c->base_file].from_history ||
		    add_range(d, c, from, to, r, &n, max))
			return 0;
	}
	int rc = check_spliced(d, first, k - 1);
	return rc ? rc : (int)n;
}

int sp_delta_check_base(struct sp_delta *d, struct sp_err *err)
{
	for (size_t i = 0; i < d->m.nbase; i++)
		if (check_base_file(d, i, err))
			return -1;
	return 0;
}
