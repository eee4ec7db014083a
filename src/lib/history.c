/* SPDX-License-Identifier: Apache-2.0 */
#include "history.h"

#include <pthread.h>
#include <stdlib.h>
#include <xxhash.h>

#include "codec_history.h"

struct sp_history {
	const struct sp_manifest *m;
	sp_history_read_fn read;
	void *owner;
	pthread_mutex_t lock; /* held while building: readers of the first chunks wait for it */
	uint8_t *bytes;
	ZSTD_DDict *dict; /* set once built; read without the lock after */
};

struct sp_history *sp_history_new(const struct sp_manifest *m, sp_history_read_fn read,
				  void *owner)
{
	struct sp_history *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	*h = (struct sp_history){.m = m, .read = read, .owner = owner};
	pthread_mutex_init(&h->lock, NULL);
	return h;
}

void sp_history_free(struct sp_history *h)
{
	if (!h)
		return;
	ZSTD_freeDDict(h->dict);
	free(h->bytes);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static const char *build(struct sp_history *h)
{
	const struct sp_manifest *m = h->m;
	uint8_t *bytes = malloc(m->history_len + 1);
	uint64_t at = 0;
	if (!bytes)
		return "out of memory";
	for (size_t i = 0; i < m->nhistory; i++) {
		const struct sp_history_seg *s = &m->history[i];
		if (h->read(h->owner, s->file, bytes + at, s->len, s->off)) {
			free(bytes);
			return "cannot read the base for the delta's history";
		}
		at += s->len;
	}
	if (m->has_history_hash && XXH3_64bits(bytes, m->history_len) != m->history_hash) {
		free(bytes);
		return "the base files of the delta's history changed since it was written";
	}
	ZSTD_DDict *dict = sp_history_ddict(bytes, m->history_len);
	if (!dict) {
		free(bytes);
		return "out of memory";
	}
	h->bytes = bytes;
	__atomic_store_n(&h->dict, dict, __ATOMIC_RELEASE);
	return NULL;
}

const ZSTD_DDict *sp_history_dict(struct sp_history *h, const char **why)
{
	const ZSTD_DDict *dict = __atomic_load_n(&h->dict, __ATOMIC_ACQUIRE);
	if (dict)
		return dict;
	pthread_mutex_lock(&h->lock);
	*why = h->dict ? NULL : build(h);
	dict = h->dict;
	pthread_mutex_unlock(&h->lock);
	return dict;
}

const uint8_t *sp_history_bytes(struct sp_history *h, const char **why)
{
	return sp_history_dict(h, why) ? h->bytes : NULL;
}
