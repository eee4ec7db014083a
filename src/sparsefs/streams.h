/* SPDX-License-Identifier: Apache-2.0 */
#ifndef SPARSEFS_STREAMS_H
#define SPARSEFS_STREAMS_H

#include <pthread.h>
#include <stdint.h>

/* Sequential streams within one open file, so that the chunks ahead of each decode before they
 * are asked for. A read that goes on where a stream's last one ended (a loader's, or the
 * kernel's readahead) grows that stream's window: 8 MiB ahead, doubling to 128 MiB. Several
 * streams per file, since a loader's threads each read their own tensors. */
#define STREAM_WINDOW_MIN (8ull << 20)
#define STREAM_WINDOW_MAX (128ull << 20)

struct streams;

/* The streams of every open file. The kernel sends no release for files still open when the
 * daemon ends (a signal, a lazy unmount): destroy frees what is left here. */
struct streams_set {
	pthread_mutex_t lock;
	struct streams *all;
};
#define STREAMS_SET_INIT {PTHREAD_MUTEX_INITIALIZER, NULL}

struct streams *streams_new(struct streams_set *set);
void streams_free(struct streams_set *set, struct streams *s);
void streams_free_all(struct streams_set *set);
/* Notes a read of [off, off + len); returns the bytes to decode ahead from *ahead (0: none).
 * The streams reading lately share max_window. More than max_busy of them (the decoding
 * threads) keep the CPUs busy by themselves: nothing is decoded ahead then, since a chunk
 * decoded ahead costs one more copy than one decoded into the reply. */
uint64_t streams_note(struct streams *s, uint64_t off, uint64_t len, uint64_t max_window,
		      unsigned max_busy, uint64_t *ahead);
/* A stream at offset 0 whose window is already max_window, as if the file were being read
 * from the start: the bytes to decode ahead from 0. */
uint64_t streams_start(struct streams *s, uint64_t max_window);

#endif
