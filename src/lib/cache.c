/* SPDX-License-Identifier: Apache-2.0 */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

struct sp_cache_key {
	void *owner;
	uint64_t idx;
};

struct sp_cache_entry {
	struct sp_cache_key key;
	uint8_t *data;
	size_t len;
	size_t served; /* bytes copied out of it so far */
	int refs;
	int ready;
	struct sp_cache_entry *prev, *next; /* LRU list: most recent at the tail */
	UT_hash_handle hh;
};

struct sp_cache {
	pthread_mutex_t lock;
	pthread_cond_t filled;
	size_t max_bytes, bytes;
	struct sp_cache_entry *table, *lru;
};

struct sp_cache *sp_cache_new(size_t max_bytes)
{
	struct sp_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->filled, NULL);
	c->max_bytes = max_bytes;
	return c;
}

static void entry_free(struct sp_cache *c, struct sp_cache_entry *e)
{
	HASH_DEL(c->table, e);
	DL_DELETE(c->lru, e);
	c->bytes -= e->len;
	free(e->data);
	free(e);
}

void sp_cache_free(struct sp_cache *c)
{
	if (!c)
		return;
	struct sp_cache_entry *e, *tmp;
	HASH_ITER(hh, c->table, e, tmp)
		entry_free(c, e);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->filled);
	free(c);
}

/* Drops least recently used entries nobody holds until the cache fits. Called locked. */
static void evict(struct sp_cache *c)
{
	struct sp_cache_entry *e = c->lru, *next;
	while (c->bytes > c->max_bytes && e) {
		next = e->next;
		if (e->refs == 0)
			entry_free(c, e);
		e = next;
	}
}

/* Decodes a missing entry outside the lock, then publishes it or withdraws it. */
static int fill_entry(struct sp_cache *c, struct sp_cache_entry *e, sp_cache_fill fill)
{
	int rc = -ENOMEM;
	e->data = malloc(e->len ? e->len : 1);
	pthread_mutex_unlock(&c->lock);
	if (e->data)
		rc = fill(e->key.owner, e->key.idx, e->data);
	pthread_mutex_lock(&c->lock);
	if (rc == 0) {
		e->ready = 1;
		c->bytes += e->len;
		evict(c);
	} else {
		HASH_DEL(c->table, e);
		DL_DELETE(c->lru, e);
		free(e->data);
		free(e);
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
