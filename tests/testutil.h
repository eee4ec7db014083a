/* SPDX-License-Identifier: Apache-2.0 */
/* A few helpers the C tests share: checks that report where they failed, a temporary
 * directory removed at exit, and whole-file reads. */
#ifndef SPARSE_TESTUTIL_H
#define SPARSE_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int test_failures;

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			test_failures++;                                                 \
		}                                                                        \
	} while (0)

/* A fresh directory under $TMPDIR, removed with everything in it when the test exits. */
const char *test_tmpdir(void);
/* Runs a shell command, failing the test if it fails. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The whole file at path (malloc'd), its size in *len; NULL if unreadable. */
uint8_t *test_slurp(const char *path, size_t *len);
int test_done(void);

#endif
