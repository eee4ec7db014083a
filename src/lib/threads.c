/* SPDX-License-Identifier: Apache-2.0 */
#include "sparse/util.h"

#include <pthread.h>
#include <unistd.h>

struct start {
	void (*fn)(void *arg, unsigned t);
	void *arg;
	unsigned t;
};

static void *trampoline(void *p)
{
	struct start *s = p;
	s->fn(s->arg, s->t);
	return NULL;
}

unsigned sp_threads_run(unsigned n, void (*fn)(void *arg, unsigned t), void *arg)
{
	pthread_t th[SP_THREADS_MAX];
	struct start st[SP_THREADS_MAX];
	unsigned made = 1;
	for (; made < n && made < SP_THREADS_MAX; made++) {
		st[made] = (struct start){fn, arg, made};
		if (pthread_create(&th[made], NULL, trampoline, &st[made]))
			break;
	}
	fn(arg, 0);
	for (unsigned t = 1; t < made; t++)
		pthread_join(th[t], NULL);
	return made;
}

unsigned sp_threads_cpus(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus < 1 ? 1 : cpus > SP_THREADS_MAX ? SP_THREADS_MAX : (unsigned)cpus;
}
