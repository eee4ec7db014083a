/* SPDX-License-Identifier: Apache-2.0 */
/* sparsefs --extract: the files of an open delta written out, decoded on several threads. */
#ifndef SPARSEFS_EXTRACT_H
#define SPARSEFS_EXTRACT_H

#include "sparse/sparse.h"

/* Writes every file of d under out (made if missing), each under a temporary name in its folder
 * renamed when whole, so that a failure leaves no file that looks complete and replaces an
 * earlier extract's file only then; links last, so that no file is written through a link the
 * delta made. Threads (0: one per CPU) take the files' chunks in slices. 0, or -1 with a
 * message on standard error. */
int extract_delta(struct sp_delta *d, const char *out, unsigned threads);

#endif
