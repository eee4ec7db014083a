/* SPDX-License-Identifier: Apache-2.0 */
/* A byte source over a remote object: blocks fetched by coalesced range requests, a read-ahead
 * window for sequential readers, a bounded memory set over the chunk cache on disk
 * (source_remote.h). */
#include "source_remote.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "blockcache.h"

/* A read is sequential when it starts within this many blocks of the last block a stream read
 * (readers on several threads take a file's chunks a little out of order). */
#define SEQ_SLACK 2
/* Sequential streams followed at once per object: a loader reads several files on threads. */
#define STREAMS 8

enum { FETCHING, READY, FAILED };

struct block {
	struct block *prev, *next; /* in the memory set's LRU list while READY */
	struct source_remote *src;
	uint64_t index;
	uint8_t *data;
	int state, used;
	int stored; /* in the disk cache, or being put there by a reader */
	unsigned refs; /* readers copying it or waiting for it */
};

/* Block buffers come from one mapping of the bound, in huge pages where the kernel has them:
 * a buffer of its own per block (malloc) faulted in 256 small pages each time, which cost a
 * reader as much as decoding (see the commit). Pages once touched stay until the end. */
#define HUGE (2u << 20)

struct sp_remote_mem {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a fetch ended */
	uint64_t max, blocks;
	struct block lru; /* lru.next: the least recently used */
	uint8_t *map, *slab; /* the mapping, and its first huge page boundary */
	size_t map_len;
	uint32_t *free_slots; /* the slab's unused block buffers, a stack */
	uint64_t nfree;
};

struct source_remote {
	struct sp_source base;
	struct sp_remote_mem *mem;
	struct sp_http *h;
	struct sp_http_object *obj;
	struct sp_blockcache *cache;
	char *key; /* the object's version, for the disk cache: URL, ETag, size */
	uint64_t size, nblocks;
	struct block **blocks; /* NULL: not in memory */
	int opened;
	struct stream {
		uint64_t last;   /* the last block it read */
		unsigned window; /* blocks read ahead of it; 0 until it goes on */
		uint64_t seen;   /* when it last read (s->tick): the oldest is replaced */
	} streams[STREAMS];
	uint64_t tick;
	unsigned inflight;
};

struct fetch {
	struct sp_http_req req;
	struct source_remote *src;
	struct block *b[SP_RUN_BLOCKS];
	uint8_t *segs[SP_RUN_BLOCKS];
	size_t n;
	struct fetch *next;
};

struct sp_remote_mem *sp_remote_mem_new(uint64_t max_bytes)
{
	struct sp_remote_mem *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	m->max = (max_bytes ? max_bytes : SP_REMOTE_MEM_DEFAULT) >> SP_BLOCK_SHIFT;
	m->lru.prev = m->lru.next = &m->lru;
	m->map_len = (m->max << SP_BLOCK_SHIFT) + HUGE;
	m->map = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->map == MAP_FAILED || !(m->free_slots = calloc(m->max, sizeof(*m->free_slots)))) {
		sp_remote_mem_free(m);
		return NULL;
	}
	m->slab = (uint8_t *)(((uintptr_t)m->map + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	madvise(m->slab, m->max << SP_BLOCK_SHIFT, MADV_HUGEPAGE); /* a hint: none is fine */
	while (m->nfree < m->max) /* the first slot on top */
		m->free_slots[m->nfree] = (uint32_t)(m->max - 1 - m->nfree), m->nfree++;
	return m;
}

/* A block's buffer: a slot of the slab, else (readers above the bound) malloc'd. */
static uint8_t *buf_get(struct sp_remote_mem *m)
{
	return m->nfree ? m->slab + ((uint64_t)m->free_slots[--m->nfree] << SP_BLOCK_SHIFT)
			: malloc(SP_BLOCK);
}

static void buf_put(struct sp_remote_mem *m, uint8_t *p)
{
	if (p >= m->slab && p < m->slab + (m->max << SP_BLOCK_SHIFT))
		m->free_slots[m->nfree++] = (uint32_t)((uint64_t)(p - m->slab) >> SP_BLOCK_SHIFT);
	else
		free(p);
}

void sp_remote_mem_free(struct sp_remote_mem *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	if (m->map && m->map != MAP_FAILED)
		munmap(m->map, m->map_len);
	free(m->free_slots);
	free(m);
}

int sp_block_runs(uint64_t first, uint64_t end, int (*have)(uint64_t b, void *arg),
		  int (*run)(uint64_t first, uint64_t n, void *arg), void *arg)
{
	for (uint64_t b = first; b < end;) {
		if (have(b, arg)) {
			b++;
			continue;
		}
		uint64_t n = 1;
		while (n < SP_RUN_BLOCKS && b + n < end && !have(b + n, arg))
			n++;
		int rc = run(b, n, arg);
		if (rc)
			return rc;
		b += n;
	}
	return 0;
}

/* ---- the memory set (under mem->lock) ---- */

static void lru_unlink(struct block *b)
{
	b->prev->next = b->next;
	b->next->prev = b->prev;
	b->prev = b->next = NULL;
}

static void lru_push(struct sp_remote_mem *m, struct block *b)
{
	b->prev = m->lru.prev;
	b->next = &m->lru;
	m->lru.prev->next = b;
	m->lru.prev = b;
}

static void block_free(struct sp_remote_mem *m, struct block *b)
{
	buf_put(m, b->data);
	free(b);
}

/* Drops the least recently used block that no reader holds (read_only: one already read):
 * 1, or 0 when there is none. */
static int evict(struct sp_remote_mem *m, int read_only)
{
	for (struct block *b = m->lru.next; b != &m->lru; b = b->next) {
		if (b->refs || (read_only && !b->used))
			continue;
		lru_unlink(b);
		b->src->blocks[b->index] = NULL;
		m->blocks--;
		block_free(m, b);
		return 1;
	}
	return 0;
}

static size_t block_len(const struct source_remote *s, uint64_t i)
{
	uint64_t left = s->size - (i << SP_BLOCK_SHIFT);
	return left < SP_BLOCK ? (size_t)left : SP_BLOCK;
}

/* A block about to be fetched, or NULL: out of memory, or no room for read-ahead. */
static struct block *block_new(struct source_remote *s, uint64_t i, int ahead)
{
	struct sp_remote_mem *m = s->mem;
	while (m->blocks >= m->max && (evict(m, 1) || (!ahead && evict(m, 0))))
		;
	if (ahead && m->blocks >= m->max)
		return NULL;
	struct block *b = calloc(1, sizeof(*b));
	if (!b || !(b->data = buf_get(m))) {
		free(b);
		return NULL;
	}
	b->src = s;
	b->index = i;
	b->state = FETCHING;
	s->blocks[i] = b;
	m->blocks++;
	return b;
}

/* ---- fetching ---- */

/* A request for blocks b[0..n) ended (rc 0: they are whole). */
static void ended(struct source_remote *s, struct block **blocks, size_t n, int rc)
{
	struct sp_remote_mem *m = s->mem;
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < n; i++) {
		struct block *b = blocks[i];
		if (rc == 0) {
			b->state = READY;
			lru_push(m, b);
			continue;
		}
		b->state = FAILED;
		s->blocks[b->index] = NULL;
		m->blocks--;
		if (!b->refs)
			block_free(m, b);
	}
	s->inflight--;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void fetched(struct sp_http_req *r, int rc)
{
	struct fetch *f = r->arg;
	ended(f->src, f->b, f->n, rc);
	free(f);
}

struct plan {
	struct source_remote *s;
	int ahead;
	struct fetch *list, **tail;
};

static int have(uint64_t b, void *arg)
{
	return ((struct plan *)arg)->s->blocks[b] != NULL;
}

/* One request for blocks [first, first + n), as many of them as there is room for. */
static int plan_run(uint64_t first, uint64_t n, void *arg)
{
	struct plan *p = arg;
	struct source_remote *s = p->s;
	struct fetch *f = calloc(1, sizeof(*f));
	while (f && f->n < n && (f->b[f->n] = block_new(s, first + f->n, p->ahead))) {
		f->segs[f->n] = f->b[f->n]->data;
		f->n++;
	}
	if (!f || !f->n) {
		free(f);
		return 1;
	}
	f->src = s;
	s->inflight++;
	*p->tail = f;
	p->tail = &f->next;
	return f->n < n;
}

/* Where read-ahead ends for a read of blocks [b0, b1]: the read goes on from where one of the
 * streams was, whose window then grows, or starts a stream in place of the one idle longest. */
static uint64_t ahead_end(struct source_remote *s, uint64_t b0, uint64_t b1)
{
	struct stream *st = NULL, *idle = &s->streams[0];
	for (int i = 0; i < STREAMS && !st; i++) {
		struct stream *k = &s->streams[i];
		if (b0 + SEQ_SLACK >= k->last && b0 <= k->last + SEQ_SLACK)
			st = k;
		else if (k->seen < idle->seen)
			idle = k;
	}
	if (!st) {
		*idle = (struct stream){.last = b1, .seen = ++s->tick};
		return b1 + 1;
	}
	st->seen = ++s->tick;
	if (b1 > st->last) {
		st->window = !st->window ? SP_WINDOW_FIRST
		: st->window * 2 > SP_WINDOW_MAX ? SP_WINDOW_MAX : st->window * 2;
		st->last = b1;
	}
	uint64_t end = st->last + 1 + st->window;
	return end < s->nblocks ? end : s->nblocks;
}

/* Requests blocks [i, j) of f. */
static void request(struct source_remote *s, struct fetch *f, size_t i, size_t j)
{
	struct fetch *g = f;
	if (i > 0 || j < f->n) {
		if (!(g = calloc(1, sizeof(*g)))) {
			ended(s, f->b + i, j - i, -ENOMEM);
			return;
		}
		memcpy(g->b, f->b + i, (j - i) * sizeof(*g->b));
		g->n = j - i;
		g->src = s;
	}
	uint64_t first = g->b[0]->index;
	for (size_t k = 0; k < g->n; k++)
		g->segs[k] = g->b[k]->data;
	g->req = (struct sp_http_req){.obj = s->obj, .segs = g->segs, .seg_len = SP_BLOCK,
				      .off = first << SP_BLOCK_SHIFT, .done = fetched, .arg = g};
	g->req.len = (g->n - 1) * (size_t)SP_BLOCK + block_len(s, first + g->n - 1);
	sp_http_submit(s->h, &g->req);
}

/* Blocks the disk cache has are read from it; the others are requested, one request per run
 * of adjacent ones. */
static void resolve(struct source_remote *s, struct fetch *f)
{
	int hit[SP_RUN_BLOCKS] = {0}, hits = 0;
	for (size_t k = 0; s->cache && k < f->n; k++)
		hits += hit[k] = !sp_blockcache_get(s->cache, s->key, f->b[k]->index, f->b[k]->data,
						    block_len(s, f->b[k]->index));
	if (!hits) {
		request(s, f, 0, f->n);
		return;
	}
	size_t runs = 0;
	pthread_mutex_lock(&s->mem->lock);
	for (size_t k = 0; k < f->n; k++) {
		runs += !hit[k] && (k == 0 || hit[k - 1]);
		if (!hit[k])
			continue;
		f->b[k]->state = READY;
		f->b[k]->stored = 1;
		lru_push(s->mem, f->b[k]);
	}
	s->inflight += runs; /* f's one request becomes one per run of misses */
	s->inflight--;
	pthread_cond_broadcast(&s->mem->cond);
	pthread_mutex_unlock(&s->mem->lock);
	for (size_t k = 0, e; k < f->n; k = e) {
		for (e = k + 1; e < f->n && hit[e] == hit[k]; e++)
			;
		if (!hit[k])
			request(s, f, k, e);
	}
	free(f);
}

static void submit(struct source_remote *s, struct fetch *list)
{
	for (struct fetch *f = list, *next; f; f = next) {
		next = f->next;
		resolve(s, f);
	}
}

/* ---- the source ---- */

/* Copies the part of [off, off + len) that block b (data) holds into buf. */
static void copy_part(const struct source_remote *s, void *buf, size_t len, uint64_t off,
		      uint64_t b, const uint8_t *data)
{
	uint64_t at = b << SP_BLOCK_SHIFT, from = off > at ? off : at;
	uint64_t to = off + len < at + block_len(s, b) ? off + len : at + block_len(s, b);
	memcpy((uint8_t *)buf + (from - off), data + (from - at), to - from);
}

/* At open time (no transfer thread): from the memory set or the disk cache, else one request
 * on this thread. */
static int read_now(struct source_remote *s, void *buf, size_t len, uint64_t off)
{
	uint64_t b0 = off >> SP_BLOCK_SHIFT, b1 = (off + len - 1) >> SP_BLOCK_SHIFT;
	uint8_t *tmp = NULL;
	int whole = 1;
	for (uint64_t b = b0; b <= b1 && whole; b++) {
		pthread_mutex_lock(&s->mem->lock);
		struct block *k = s->blocks[b];
		int here = k && k->state == READY;
		if (here)
			copy_part(s, buf, len, off, b, k->data);
		pthread_mutex_unlock(&s->mem->lock);
		if (!here && s->cache && (tmp || (tmp = malloc(SP_BLOCK))) &&
		    !sp_blockcache_get(s->cache, s->key, b, tmp, block_len(s, b)))
			copy_part(s, buf, len, off, b, tmp);
		else
			whole = here;
	}
	free(tmp);
	struct sp_err err;
	if (whole)
		return 0;
	if (sp_http_get(s->obj, buf, len, off, &err)) {
		sp_log("%s", err.msg);
		return -EIO;
	}
	return 0;
}

/* Copies [off, off + len) out of the pinned blocks b0.. (READY). */
static void copy_out(struct source_remote *s, struct block **pin, void *buf, size_t len,
		     uint64_t off)
{
	uint64_t b0 = off >> SP_BLOCK_SHIFT;
	for (size_t done = 0; done < len;) {
		uint64_t at = off + done, b = at >> SP_BLOCK_SHIFT;
		size_t in = (size_t)(at - (b << SP_BLOCK_SHIFT)), k = block_len(s, b) - in;
		if (k > len - done)
			k = len - done;
		memcpy((uint8_t *)buf + done, pin[b - b0]->data + in, k);
		done += k;
	}
}

static int remote_pread(struct sp_source *src, void *buf, size_t len, uint64_t off)
{
	struct source_remote *s = (struct source_remote *)src;
	if (off > s->size || len > s->size - off)
		return -EIO;
	if (!len)
		return 0;
	if (!s->opened)
		return read_now(s, buf, len, off);
	uint64_t b0 = off >> SP_BLOCK_SHIFT, b1 = (off + len - 1) >> SP_BLOCK_SHIFT, n = b1 - b0 + 1;
	struct block *stack[4], **pin = n <= 4 ? stack : malloc(n * sizeof(*pin));
	struct sp_remote_mem *m = s->mem;
	struct plan p = {.s = s, .tail = &p.list};
	if (!pin)
		return -ENOMEM;
	pthread_mutex_lock(&m->lock);
	uint64_t end = ahead_end(s, b0, b1);
	int rc = sp_block_runs(b0, b1 + 1, have, plan_run, &p) ? -ENOMEM : 0;
	for (uint64_t b = b0; b <= b1; b++)
		if ((pin[b - b0] = s->blocks[b]))
			pin[b - b0]->refs++;
	p.ahead = 1;
	sp_block_runs(b1 + 1, end, have, plan_run, &p);
	pthread_mutex_unlock(&m->lock);
	submit(s, p.list);
	pthread_mutex_lock(&m->lock);
	uint64_t store = 0; /* a bit per block this reader puts into the disk cache */
	for (uint64_t b = b0; b <= b1; b++) {
		struct block *k = pin[b - b0];
		while (k && k->state == FETCHING)
			pthread_cond_wait(&m->cond, &m->lock);
		if (!k || k->state == FAILED)
			rc = rc ? rc : -EIO;
		else if (!k->stored && s->cache && b - b0 < 64 && (k->stored = 1))
			store |= 1ull << (b - b0);
	}
	pthread_mutex_unlock(&m->lock);
	if (rc == 0)
		copy_out(s, pin, buf, len, off);
	for (uint64_t b = b0; b <= b1; b++)
		if (store >> (b - b0) & 1)
			sp_blockcache_put(s->cache, s->key, b, pin[b - b0]->data, block_len(s, b));
	pthread_mutex_lock(&m->lock);
	for (uint64_t b = b0; b <= b1; b++) {
		struct block *k = pin[b - b0];
		if (!k)
			continue;
		k->refs--;
		k->used = 1;
		if (k->state == FAILED && !k->refs) {
			block_free(m, k);
		} else if (k->state == READY) {
			lru_unlink(k);
			lru_push(m, k);
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (pin != stack)
		free(pin);
	return rc;
}

static uint64_t remote_size(const struct sp_source *src)
{
	return ((const struct source_remote *)src)->size;
}

static void remote_close(struct sp_source *src)
{
	struct source_remote *s = (struct source_remote *)src;
	struct sp_remote_mem *m = s->mem;
	pthread_mutex_lock(&m->lock);
	while (s->inflight)
		pthread_cond_wait(&m->cond, &m->lock);
	for (uint64_t i = 0; s->blocks && i < s->nblocks; i++) {
		struct block *b = s->blocks[i];
		if (!b)
			continue;
		lru_unlink(b);
		m->blocks--;
		block_free(m, b);
	}
	pthread_mutex_unlock(&m->lock);
	sp_http_object_close(s->obj);
	free(s->blocks);
	free(s->key);
	free(s);
}

static const struct sp_source_ops remote_ops = {
	.pread = remote_pread,
	.size = remote_size,
	.close = remote_close,
};

struct sp_source *sp_source_remote_open(struct sp_http *h, struct sp_remote_mem *m,
					struct sp_blockcache *cache, const char *url,
					sp_http_sign_fn sign, void *sign_state, long *status,
					struct sp_err *err)
{
	struct source_remote *s = calloc(1, sizeof(*s));
	struct block *b = calloc(1, sizeof(*b));
	size_t got;
	*status = 0;
	if (!s || !b || !(b->data = malloc(SP_BLOCK))) {
		sp_err_set(err, "%s: out of memory", url);
		goto fail;
	}
	s->base.ops = &remote_ops;
	s->mem = m;
	s->h = h;
	if (!(s->obj = sp_http_object_open(h, url, sign, sign_state, b->data, SP_BLOCK, &got,
					     status, err)))
		goto fail;
	s->size = sp_http_object_size(s->obj);
	s->nblocks = (s->size + SP_BLOCK - 1) >> SP_BLOCK_SHIFT;
	if (!(s->blocks = calloc(s->nblocks, sizeof(*s->blocks))) ||
	    asprintf(&s->key, "%s\n%s\n%llu", sp_http_object_shown(s->obj),
		     sp_http_object_etag(s->obj), (unsigned long long)s->size) < 0) {
		sp_err_set(err, "%s: out of memory", sp_http_object_shown(s->obj));
		sp_http_object_close(s->obj);
		free(s->blocks);
		goto fail;
	}
	s->cache = cache;
	if (!sp_blockcache_has(cache, s->key, 0, got)) /* each mount fetches it: no write each time */
		sp_blockcache_put(cache, s->key, 0, b->data, got);
	b->src = s;
	b->state = READY;
	b->stored = 1;
	pthread_mutex_lock(&m->lock);
	s->blocks[0] = b;
	lru_push(m, b);
	m->blocks++;
	pthread_mutex_unlock(&m->lock);
	return &s->base;
fail:
	if (b)
		free(b->data);
	free(b);
	free(s);
	return NULL;
}

void sp_source_remote_opened(struct sp_source *src)
{
	((struct source_remote *)src)->opened = 1;
}
