/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers that the library uses and that its front ends share with it: whole reads and writes,
 * mkdir -p, a fork-join over threads, and a buffer kept between calls.
 */
#ifndef SPARSE_UTIL_H
#define SPARSE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Whole reads and writes that retry short transfers and EINTR: 0, or -1 with errno (EIO for
 * a read that meets the end of the file). */
int sp_pread_full(int fd, void *buf, size_t len, uint64_t off);
int sp_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* mkdir -p: a delta often goes into a directory of deltas not made yet. */
int sp_mkdir_p(const char *dir);

/* The most threads sp_threads_run starts (and the most any -j or decoders= may ask). */
#define SP_THREADS_MAX 64

/* Runs fn(arg, t) for t = 0..n-1 at once, t = 0 on the calling thread, and returns when all
 * have ended: how many ran (at least 1; fewer than n, at most SP_THREADS_MAX, when threads
 * cannot be made). fn shares out the work itself, e.g. by an atomic index. */
unsigned sp_threads_run(unsigned n, void (*fn)(void *arg, unsigned t), void *arg);

/* One thread per CPU online, within [1, SP_THREADS_MAX]. */
unsigned sp_threads_cpus(void);

/* How many threads the BLAS under lossy decoding and SVD may use (default: its own choice, one
 * per CPU); a caller that decodes on many threads already wants 1. */
void sp_blas_threads(int n);

/* A buffer that grows as needed and is kept between calls: fresh memory costs page faults,
 * which on the read path cost more than decoding. */
struct sp_scratch {
	uint8_t *p;
	size_t cap;
};

/* At least n bytes (NULL when out of memory); the contents do not survive growing. */
void *sp_scratch_get(struct sp_scratch *s, size_t n);

#endif
