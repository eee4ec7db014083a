/* SPDX-License-Identifier: Apache-2.0 */
#include "streams.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "sparse/sparse.h"

#define NSTREAMS 8
/* How far a read may land from where its stream ended and still continue it: the kernel's
 * readahead requests run on several threads, so they arrive a little out of order. */
#define SLACK (2ull << 20)
/* A stream is busy while it had one of the last RECENT reads of the file. */
#define RECENT 64

struct stream {
	uint64_t next;   /* where the last read ended */
	uint64_t ahead;  /* decoding has been asked for up to here */
	uint64_t window; /* 0: one read so far */
	unsigned used;   /* for replacing the least recently used */
};

struct streams {
	struct streams *prev, *next; /* in the set of open files */
	pthread_mutex_t lock;
	struct stream s[NSTREAMS];
	unsigned tick;
};

struct streams *streams_new(struct streams_set *set)
{
	struct streams *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_lock(&set->lock);
	DL_APPEND(set->all, s);
	pthread_mutex_unlock(&set->lock);
	return s;
}

static void destroy(struct streams *s)
{
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void streams_free(struct streams_set *set, struct streams *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&set->lock);
	DL_DELETE(set->all, s);
	pthread_mutex_unlock(&set->lock);
	destroy(s);
}

void streams_free_all(struct streams_set *set)
{
	struct streams *s, *tmp;
	DL_FOREACH_SAFE(set->all, s, tmp) {
		DL_DELETE(set->all, s);
		destroy(s);
	}
}

/* The stream that a read at off continues, else the least recently used one, reset. */
static struct stream *stream_for(struct streams *s, uint64_t off)
{
	struct stream *lru = &s->s[0];
	for (int i = 0; i < NSTREAMS; i++) {
		struct stream *t = &s->s[i];
		if (t->used && off + t->window + SLACK >= t->next && off <= t->next + SLACK)
			return t;
		if (t->used < lru->used)
			lru = t;
	}
	*lru = (struct stream){.next = off, .ahead = off};
	return lru;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Asks for the window ahead of t once less than half of it is left; each refill that finds
 * the reader still behind doubles the window. */
static uint64_t advance(struct stream *t, uint64_t max_window, uint64_t *ahead)
{
	if (t->ahead > t->next && t->ahead - t->next >= t->window / 2)
		return 0;
	if (t->ahead > t->next)
		t->window = min64(t->window * 2, max_window);
	uint64_t from = t->ahead > t->next ? t->ahead : t->next, to = t->next + t->window;
	t->ahead = to;
	*ahead = from;
	return to - from;
}

/* How many streams have read lately: they share the window, which the cache must hold. */
static unsigned busy(const struct streams *s)
{
	unsigned n = 0;
	for (int i = 0; i < NSTREAMS; i++)
		n += s->s[i].used && s->tick - s->s[i].used < RECENT;
	return n ? n : 1;
}

uint64_t streams_note(struct streams *s, uint64_t off, uint64_t len, uint64_t max_window,
		      unsigned max_busy, uint64_t *ahead)
{
	pthread_mutex_lock(&s->lock);
	struct stream *t = stream_for(s, off);
	int continues = t->used != 0 && off + len > t->next;
	if (continues && !t->window)
		t->window = min64(STREAM_WINDOW_MIN, max_window);
	if (off + len > t->next)
		t->next = off + len;
	t->used = ++s->tick;
	unsigned b = busy(s);
	uint64_t n = continues && b <= max_busy ? advance(t, max_window / b, ahead) : 0;
	pthread_mutex_unlock(&s->lock);
	return n;
}

uint64_t streams_start(struct streams *s, uint64_t max_window)
{
	pthread_mutex_lock(&s->lock);
	s->s[0] = (struct stream){.ahead = max_window, .window = max_window, .used = ++s->tick};
	pthread_mutex_unlock(&s->lock);
	return max_window;
}
