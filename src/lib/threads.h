/* SPDX-License-Identifier: Apache-2.0 */
/* Fork-join: one function run on several threads at once, the calling thread among them. */
#ifndef SP_THREADS_H
#define SP_THREADS_H

/* The most threads sp_threads_run starts (and the most any -j or decoders= may ask). */
#define SP_THREADS_MAX 64

/* Runs fn(arg, t) for t = 0..n-1 at once, t = 0 on the calling thread, and returns when all
 * have ended: how many ran (at least 1; fewer than n, at most SP_THREADS_MAX, when threads
 * cannot be made). fn shares out the work itself, e.g. by an atomic index. */
unsigned sp_threads_run(unsigned n, void (*fn)(void *arg, unsigned t), void *arg);

/* One thread per CPU online, within [1, SP_THREADS_MAX]. */
unsigned sp_threads_cpus(void);

#endif
