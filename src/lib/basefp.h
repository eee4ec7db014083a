/* SPDX-License-Identifier: Apache-2.0 */
/* Fingerprints of base files: cheap ones a mount checks, and the full content hash --check
 * verifies. They make mounting over the wrong base fail with a message instead of wrong bytes. */
#ifndef SP_BASEFP_H
#define SP_BASEFP_H

#include <sys/stat.h>
#include <time.h>

#include "manifest.h"

#define SP_FP_SAMPLES 16
#define SP_FP_SAMPLE_SIZE 4096

/* Fills size, header_hash, sample_hash and content_hash (reads the whole file) of fd. */
int sp_fp_compute(int fd, uint64_t header_len, struct sp_base_fp *fp, const char *path,
		  struct sp_err *err);
/* Checks fd against fp, cheaply (no content hash, unless fp records nothing else; only the size
 * when it records no content hash). */
int sp_fp_check_quick(int fd, const struct sp_base_fp *fp, const char *path, struct sp_err *err);
/* Checks the content hash of fd against fp (reads the whole file). */
int sp_fp_check_content(int fd, const struct sp_base_fp *fp, const char *path, struct sp_err *err);

/* The XXH3-64 of len bytes of fd at off, read a MiB at a time. */
int sp_fp_hash_range(int fd, uint64_t off, uint64_t len, uint64_t *h);

/* A full check's verdict is remembered by the identity of the file it was made on (device,
 * inode, size, mtime and ctime to the nanosecond) and the content hash it matched: is there
 * one for st and content_hash? A missing, unreadable or corrupt record is no verdict. */
int sp_fp_verdict_known(const struct stat *st, uint64_t content_hash);
/* Remembers that the file of identity st holds content_hash, as checked from time began on
 * (in a file of its own, written whole then renamed); not when the file changed less than
 * SP_FP_TICK seconds before. Failing to write it is not an error: the verdict is then just not
 * remembered. */
#define SP_FP_TICK 2
void sp_fp_verdict_remember(const struct stat *st, uint64_t content_hash, time_t began);

#endif
