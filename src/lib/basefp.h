/* SPDX-License-Identifier: Apache-2.0 */
/* Fingerprints of base files: cheap ones a mount checks, and the full content hash --check
 * verifies. They make mounting over the wrong base fail with a message instead of wrong bytes. */
#ifndef SP_BASEFP_H
#define SP_BASEFP_H

#include "manifest.h"

#define SP_FP_SAMPLES 16
#define SP_FP_SAMPLE_SIZE 4096

/* Fills size, header_hash, sample_hash and content_hash (reads the whole file) of fd. */
int sp_fp_compute(int fd, uint64_t header_len, struct sp_base_fp *fp, const char *path,
		  struct sp_err *err);
/* Checks fd against fp, cheaply (no content hash). */
int sp_fp_check_quick(int fd, const struct sp_base_fp *fp, const char *path, struct sp_err *err);
/* Checks the content hash of fd against fp (reads the whole file). */
int sp_fp_check_content(int fd, const struct sp_base_fp *fp, const char *path, struct sp_err *err);

#endif
