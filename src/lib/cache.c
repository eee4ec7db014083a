/* SPDX-License-Identifier: Apache-2.0 */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uthash.h>
#include <utlist.h>

struct sp_cache_key {
	void *owner;
	uint64_t idx;
};

struct sp_cache_entry {
	struct sp_cache_key key;
	uint8_t *data;
	size_t len, cap; /* cap: the bytes mapped for it, whole pages */
	size_t served;   /* bytes copied out of it so far */
	int refs;
	int ready;
	struct sp_cache_entry *prev, *next; /* LRU list: most recent at the tail; or spare list */
	UT_hash_handle hh;
};

/* Buffers are mappings the cache keeps, not malloc's: malloc would take them from the arena of
 * the thread that decodes (glibc keeps one per thread, up to 8 per CPU), and freed there they
 * would stay there, each arena coming to keep as much as the whole cache. Fresh pages cost more
 * than decoding into them, so a buffer once mapped is used again: all are a slot's size, the
 * largest entry's so far, and an evicted entry's buffer is kept as a spare for the next.
 * Decoded entries take up to max_bytes (more only while readers hold them); with those being
 * decoded and the spares, up to limit(): a slot more for each entry ever decoded at once. */
struct sp_cache {
	pthread_mutex_t lock;
	pthread_cond_t filled;
	size_t max_bytes;
	size_t bytes, busy, spare_bytes; /* buffers of decoded entries, of those being decoded, spare */
	unsigned filling, filling_peak; /* entries being decoded: now, and at most at once so far */
	size_t page, slot;
	struct sp_cache_entry *table, *lru, *spare;
};

struct sp_cache *sp_cache_new(size_t max_bytes)
{
	struct sp_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->filled, NULL);
	c->max_bytes = max_bytes;
	c->page = (size_t)sysconf(_SC_PAGESIZE);
	return c;
}

static size_t limit(const struct sp_cache *c)
{
	return c->max_bytes + c->filling_peak * c->slot;
}

static void entry_unmap(struct sp_cache_entry *e)
{
	if (e->data)
		munmap(e->data, e->cap);
	free(e);
}

/* Takes e out of the table and the LRU list. Called locked. */
static void entry_unlink(struct sp_cache *c, struct sp_cache_entry *e)
{
	HASH_DEL(c->table, e);
	DL_DELETE(c->lru, e);
	if (e->ready)
		c->bytes -= e->cap;
}

/* Keeps the buffer of an unlinked entry as a spare when it is a slot's size and the limit allows,
 * else unmaps it. Called locked. */
static void retire(struct sp_cache *c, struct sp_cache_entry *e)
{
	if (!e->data || e->cap != c->slot ||
	    c->bytes + c->busy + c->spare_bytes + e->cap > limit(c)) {
		entry_unmap(e);
		return;
	}
	LL_PREPEND(c->spare, e);
	c->spare_bytes += e->cap;
}

void sp_cache_free(struct sp_cache *c)
{
	if (!c)
		return;
	struct sp_cache_entry *e, *tmp;
	HASH_ITER(hh, c->table, e, tmp) {
		entry_unlink(c, e);
		entry_unmap(e);
	}
	LL_FOREACH_SAFE(c->spare, e, tmp)
		entry_unmap(e);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->filled);
	free(c);
}

/* Drops least recently used entries nobody holds until the decoded ones fit. Called locked. */
static void evict(struct sp_cache *c)
{
	struct sp_cache_entry *e = c->lru, *next;
	while (c->bytes > c->max_bytes && e) {
		next = e->next;
		if (e->refs == 0) {
			entry_unlink(c, e);
			retire(c, e);
		}
		e = next;
	}
}

/* Pages for cap bytes: populated at once, since a fault per page while decoding into them costs
 * more than the decoding. */
static uint8_t *map_new(size_t cap)
{
	void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

/* Entry e's buffer, unless it is smaller than need: then it is unmapped. Frees e. */
static uint8_t *take(struct sp_cache_entry *e, size_t need, size_t *got)
{
	uint8_t *p = e->data;
	*got = e->cap;
	if (e->cap >= need) {
		free(e);
		return p;
	}
	entry_unmap(e);
	return NULL;
}

/* A buffer of need bytes or more (*got is its size) for an entry about to be decoded: a spare,
 * else a new slot while the limit allows, else the buffer of the least recently used entry
 * nobody holds, evicted (a new slot when every entry is held). Called locked. */
static uint8_t *buffer_for(struct sp_cache *c, size_t need, size_t *got)
{
	struct sp_cache_entry *e, *next;
	uint8_t *p = NULL;
	if (need > c->slot)
		c->slot = need;
	while (!p && (e = c->spare)) {
		LL_DELETE(c->spare, e);
		c->spare_bytes -= e->cap;
		p = take(e, need, got);
	}
	for (e = c->lru; !p && e && c->bytes + c->busy + c->slot > limit(c); e = next) {
		next = e->next;
		if (e->refs == 0) {
			entry_unlink(c, e);
			p = take(e, need, got);
		}
	}
	if (p)
		return p;
	*got = c->slot;
	return map_new(c->slot);
}

/* Decodes a missing entry outside the lock, then publishes it or withdraws it. */
static int fill_entry(struct sp_cache *c, struct sp_cache_entry *e, sp_cache_fill fill)
{
	int rc = -ENOMEM;
	size_t need = e->len ? (e->len - 1) / c->page * c->page + c->page : c->page;
	if (++c->filling > c->filling_peak)
		c->filling_peak = c->filling;
	if (!(e->data = buffer_for(c, need, &e->cap)))
		e->cap = 0;
	c->busy += e->cap;
	pthread_mutex_unlock(&c->lock);
	if (e->data)
		rc = fill(e->key.owner, e->key.idx, e->data);
	pthread_mutex_lock(&c->lock);
	c->filling--;
	c->busy -= e->cap;
	if (rc == 0) {
		e->ready = 1;
		c->bytes += e->cap;
		evict(c);
	} else {
		entry_unlink(c, e);
		retire(c, e);
	}
	pthread_cond_broadcast(&c->filled);
	return rc;
}

static struct sp_cache_entry *lookup(struct sp_cache *c, void *owner, uint64_t idx)
{
	struct sp_cache_key key;
	struct sp_cache_entry *e;
	memset(&key, 0, sizeof(key));
	key.owner = owner;
	key.idx = idx;
	HASH_FIND(hh, c->table, &key, sizeof(key), e);
	return e;
}

/* The entry of chunk idx, waited for while it is being filled, marked recent and held; NULL
 * when absent. Called locked. */
static struct sp_cache_entry *hold(struct sp_cache *c, void *owner, uint64_t idx)
{
	struct sp_cache_entry *e;
	while ((e = lookup(c, owner, idx)) && !e->ready)
		pthread_cond_wait(&c->filled, &c->lock);
	if (e) {
		DL_DELETE(c->lru, e);
		DL_APPEND(c->lru, e);
		e->refs++;
	}
	return e;
}

/* A new entry for chunk idx, filled and held; NULL with *rc set on failure. Called locked. */
static struct sp_cache_entry *insert(struct sp_cache *c, void *owner, uint64_t idx, size_t len,
				     sp_cache_fill fill, int *rc)
{
	struct sp_cache_entry *e = calloc(1, sizeof(*e));
	if (!e) {
		*rc = -ENOMEM;
		return NULL;
	}
	e->key.owner = owner;
	e->key.idx = idx;
	e->len = len;
	e->refs = 1;
	HASH_ADD(hh, c->table, key, sizeof(e->key), e);
	DL_APPEND(c->lru, e);
	return (*rc = fill_entry(c, e, fill)) ? NULL : e;
}

const uint8_t *sp_cache_get(struct sp_cache *c, void *owner, uint64_t idx, size_t len,
			    sp_cache_fill fill, struct sp_cache_entry **held, int *rc)
{
	pthread_mutex_lock(&c->lock);
	struct sp_cache_entry *e = hold(c, owner, idx);
	if (!e)
		e = insert(c, owner, idx, len, fill, rc);
	pthread_mutex_unlock(&c->lock);
	*held = e;
	return e ? e->data : NULL;
}

const uint8_t *sp_cache_find(struct sp_cache *c, void *owner, uint64_t idx,
			     struct sp_cache_entry **held)
{
	pthread_mutex_lock(&c->lock);
	struct sp_cache_entry *e = hold(c, owner, idx);
	pthread_mutex_unlock(&c->lock);
	*held = e;
	return e ? e->data : NULL;
}

int sp_cache_has(struct sp_cache *c, void *owner, uint64_t idx)
{
	pthread_mutex_lock(&c->lock);
	int has = lookup(c, owner, idx) != NULL;
	pthread_mutex_unlock(&c->lock);
	return has;
}

size_t sp_cache_max(const struct sp_cache *c)
{
	return c->max_bytes;
}

void sp_cache_release(struct sp_cache *c, struct sp_cache_entry *held)
{
	sp_cache_release_served(c, held, 0);
}

void sp_cache_release_served(struct sp_cache *c, struct sp_cache_entry *held, size_t n)
{
	pthread_mutex_lock(&c->lock);
	held->served += n;
	if (n && held->served >= held->len) {
		DL_DELETE(c->lru, held);
		DL_PREPEND(c->lru, held);
	}
	held->refs--;
	evict(c);
	pthread_mutex_unlock(&c->lock);
}

size_t sp_cache_bytes(struct sp_cache *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->bytes;
	pthread_mutex_unlock(&c->lock);
	return n;
}
