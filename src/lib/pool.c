/* SPDX-License-Identifier: Apache-2.0 */
/* Worker threads that decode chunks into a cache before a read asks for them. One queue: the
 * chunks a read is waiting for at its head, prefetched ones at its tail. A chunk a reader
 * reaches first is taken off the queue, so that it is never decoded twice. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>
#include <utlist.h>

#include "cache.h"
#include "delta.h"
#include "sparse/util.h"

struct job_key {
	struct sp_delta *d;
	uint64_t idx;
};

struct decode_job {
	struct job_key key;
	struct decode_job *prev, *next;
	UT_hash_handle hh;
};

struct sp_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct sp_cache *cache;
	struct decode_job *queue, *set; /* the same jobs, in order and by key */
	size_t queued_bytes;
	int skip_base; /* base chunks are not decoded ahead */
	int stop;
	unsigned n;
	pthread_t th[SP_THREADS_MAX];
};

static int fill(void *owner, uint64_t idx, void *out)
{
	return sp_delta_decode_chunk(owner, idx, out);
}

static struct decode_job *find(struct sp_pool *p, struct sp_delta *d, uint64_t idx)
{
	struct job_key key;
	struct decode_job *j;
	memset(&key, 0, sizeof(key));
	key.d = d;
	key.idx = idx;
	HASH_FIND(hh, p->set, &key, sizeof(key), j);
	return j;
}

/* Takes job j off the queue. Called locked. */
static void unqueue(struct sp_pool *p, struct decode_job *j)
{
	DL_DELETE(p->queue, j);
	HASH_DEL(p->set, j);
	p->queued_bytes -= j->key.d->chunks[j->key.idx].out_len;
	free(j);
}

static void *worker(void *arg)
{
	struct sp_pool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->stop && !p->queue)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stop)
			break;
		struct job_key k = p->queue->key;
		unqueue(p, p->queue);
		pthread_mutex_unlock(&p->lock);
		struct sp_cache_entry *held = NULL;
		int rc;
		/* A failure is logged by the decoder and met again by the reader. */
		if (sp_cache_get(p->cache, k.d, k.idx, k.d->chunks[k.idx].out_len, fill, &held, &rc))
			sp_cache_release(p->cache, held);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct sp_pool *sp_pool_new(struct sp_cache *cache, unsigned threads)
{
	struct sp_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	if (!threads)
		threads = sp_threads_cpus();
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	p->cache = cache;
	for (; p->n < threads && p->n < SP_THREADS_MAX; p->n++)
		if (pthread_create(&p->th[p->n], NULL, worker, p))
			break;
	if (!p->n) {
		sp_pool_free(p);
		return NULL;
	}
	return p;
}

unsigned sp_pool_threads(const struct sp_pool *p)
{
	return p->n;
}

void sp_pool_skip_base(struct sp_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->skip_base = 1;
	pthread_mutex_unlock(&p->lock);
}

void sp_pool_free(struct sp_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	while (p->queue)
		unqueue(p, p->queue);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	free(p);
}

/* Queues chunk idx at the head (urgent) or the tail. An urgent chunk already queued moves to
 * the head. Called locked. */
static void enqueue(struct sp_pool *p, struct sp_delta *d, uint64_t idx, int urgent)
{
	struct decode_job *j = find(p, d, idx);
	size_t len = d->chunks[idx].out_len;
	if (j && urgent) {
		DL_DELETE(p->queue, j);
		DL_PREPEND(p->queue, j);
	}
	if (j || sp_cache_has(p->cache, d, idx) ||
	    (!urgent && p->skip_base && d->chunks[idx].codec == SP_CODEC_BASE) ||
	    (!urgent && p->queued_bytes + len > sp_cache_max(p->cache)) ||
	    !(j = calloc(1, sizeof(*j))))
		return;
	j->key.d = d;
	j->key.idx = idx;
	HASH_ADD(hh, p->set, key, sizeof(j->key), j);
	if (urgent)
		DL_PREPEND(p->queue, j);
	else
		DL_APPEND(p->queue, j);
	p->queued_bytes += len;
	pthread_cond_signal(&p->work);
}

/* The chunks [*first, *end) of file that hold [off, off + len); 0 when there are none. */
static int span(struct sp_delta *d, size_t file, uint64_t off, uint64_t len, uint64_t *first,
		uint64_t *end)
{
	const struct sp_file_info *f = &d->m.files[file];
	if (f->link || off >= f->size || !len)
		return 0;
	uint64_t stop = len > f->size - off ? f->size : off + len;
	*first = sp_delta_find_chunk(d, f, off);
	for (*end = *first; *end < f->first_chunk + f->chunk_count; ++*end)
		if (d->chunks[*end].out_off >= stop)
			break;
	return 1;
}

void sp_pool_prefetch(struct sp_pool *p, struct sp_delta *d, size_t file, uint64_t off,
		      uint64_t len)
{
	uint64_t k, end;
	if (!span(d, file, off, len, &k, &end))
		return;
	pthread_mutex_lock(&p->lock);
	for (; k < end; k++)
		enqueue(p, d, k, 0);
	pthread_mutex_unlock(&p->lock);
}

/* Takes chunks [k, end) off the queue: the reader decodes them itself now, or has. */
static void withdraw(struct sp_pool *p, struct sp_delta *d, uint64_t k, uint64_t end)
{
	struct decode_job *j;
	pthread_mutex_lock(&p->lock);
	for (; k < end; k++)
		if ((j = find(p, d, k)))
			unqueue(p, j);
	pthread_mutex_unlock(&p->lock);
}

ssize_t sp_pool_read(struct sp_pool *p, struct sp_delta *d, size_t file, void *buf, size_t len,
		     uint64_t off)
{
	uint64_t first, end;
	if (!span(d, file, off, len, &first, &end))
		return sp_delta_read(d, p->cache, file, buf, len, off);
	uint64_t stop = off + len < d->m.files[file].size ? off + len : d->m.files[file].size;
	pthread_mutex_lock(&p->lock);
	for (uint64_t k = end; k-- > first + 1;)
		enqueue(p, d, k, 1);
	pthread_mutex_unlock(&p->lock);
	/* Chunk by chunk, each taken off the queue first: queued still, nobody has started it. */
	for (uint64_t k = first; k < end; k++) {
		const struct sp_chunk *c = &d->chunks[k];
		uint64_t from = c->out_off > off ? c->out_off : off;
		uint64_t to = c->out_off + c->out_len < stop ? c->out_off + c->out_len : stop;
		withdraw(p, d, k, k + 1);
		ssize_t got = sp_delta_read(d, p->cache, file, (uint8_t *)buf + (from - off),
					    (size_t)(to - from), from);
		if (got < 0) {
			withdraw(p, d, k + 1, end);
			return got;
		}
	}
	return (ssize_t)(stop - off);
}
