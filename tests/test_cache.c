/* SPDX-License-Identifier: Apache-2.0 */
/* The chunk cache under threads: right bytes, one decode per chunk while it stays cached, a
 * bound it keeps, and failures that are not cached; chunks served whole evicted first. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "cache.h"
#include "testutil.h"

#define KEYS 64
#define LEN 1000

static atomic_int fills[KEYS];
static size_t slot; /* what an entry of LEN bytes takes: whole pages */
static struct sp_cache *cache;
static int owner;

static int fill(void *o, uint64_t idx, void *out)
{
	if (o != &owner)
		return -EINVAL;
	atomic_fetch_add(&fills[idx], 1);
	usleep(200); /* long enough that other threads ask for the same chunk meanwhile */
	if (idx == 13)
		return -EIO;
	memset(out, (int)idx, LEN);
	return 0;
}

static void *reader(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	for (int i = 0; i < 2000; i++) {
		uint64_t idx = (uint64_t)(rand_r(&seed) % KEYS);
		struct sp_cache_entry *held;
		int rc = 0;
		const uint8_t *p = sp_cache_get(cache, &owner, idx, LEN, fill, &held, &rc);
		if (idx == 13) {
			CHECK(p == NULL && rc == -EIO);
			continue;
		}
		CHECK(p && p[0] == idx && p[LEN - 1] == idx);
		if (p)
			sp_cache_release(cache, held);
	}
	return NULL;
}

static void run(size_t max_bytes)
{
	pthread_t t[8];
	for (int k = 0; k < KEYS; k++)
		atomic_store(&fills[k], 0);
	cache = sp_cache_new(max_bytes);
	for (uintptr_t i = 0; i < 8; i++)
		pthread_create(&t[i], NULL, reader, (void *)(i + 1));
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	CHECK(sp_cache_bytes(cache) <= max_bytes);
	sp_cache_free(cache);
}

/* A chunk served whole goes before one served in part, however recently it was used. */
static void served_first(void)
{
	struct sp_cache_entry *held;
	int rc = 0;
	cache = sp_cache_new(2 * slot);
	CHECK(sp_cache_get(cache, &owner, 1, LEN, fill, &held, &rc) != NULL);
	sp_cache_release_served(cache, held, LEN / 2);
	CHECK(sp_cache_get(cache, &owner, 2, LEN, fill, &held, &rc) != NULL);
	sp_cache_release_served(cache, held, LEN);
	CHECK(sp_cache_get(cache, &owner, 3, LEN, fill, &held, &rc) != NULL);
	sp_cache_release(cache, held);
	CHECK(sp_cache_has(cache, &owner, 1));
	CHECK(!sp_cache_has(cache, &owner, 2));
	CHECK(sp_cache_has(cache, &owner, 3));
	sp_cache_free(cache);
}

int main(void)
{
	slot = ((LEN - 1) / (size_t)sysconf(_SC_PAGESIZE) + 1) * (size_t)sysconf(_SC_PAGESIZE);
	served_first();
	run(KEYS * slot);
	for (int k = 0; k < KEYS; k++)
		if (k != 13)
			CHECK(atomic_load(&fills[k]) <= 1);
	CHECK(atomic_load(&fills[13]) > 1); /* a failure is retried, not remembered */
	run(5 * slot);
	int total = 0;
	for (int k = 0; k < KEYS; k++)
		total += atomic_load(&fills[k]);
	CHECK(total > KEYS); /* a small cache decodes again what it evicted */
	return test_done();
}
