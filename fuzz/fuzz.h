/* SPDX-License-Identifier: Apache-2.0 */
/* What the fuzz targets share: reading their inputs, a scratch folder for delta images, and
 * where the fixed base model lives. Each target defines LLVMFuzzerTestOneInput; libFuzzer or
 * driver.c (the corpus replayed, for ctest) calls it. */
#ifndef SP_FUZZ_H
#define SP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sparse/sparse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the run: a finding, with the sanitizers' or the driver's exit status. */
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fuzz_fail(#cond, __FILE__, __LINE__))
void fuzz_fail(const char *what, const char *file, int line) __attribute__((noreturn));

/* Consumes fields from the front of an input; short inputs read as zeros. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};
uint64_t fuzz_u(struct fuzz_in *in, size_t bytes);
/* The next len bytes (zero-padded in a buffer of the caller's when the input is short). */
const uint8_t *fuzz_bytes(struct fuzz_in *in, size_t len, uint8_t *pad);

/* The next len bytes (zero-padded) in a malloc'd buffer of just that size, so that ASan sees
 * any read past them; the caller frees it. */
uint8_t *fuzz_take(struct fuzz_in *in, size_t len);

/* Quiets the library's log lines: bad chunks are the point here. */
void fuzz_quiet(void);

/* A folder for the image of the delta under test (removed at exit). */
const char *fuzz_tmpdir(void);

/*
 * Writes a delta image to fuzz_tmpdir()/delta.sparse. fix = 0: the bytes as they are. fix = 1:
 * the bytes from manifest_off on are the plain JSON manifest; it is compressed and every length
 * and hash of the superblock recomputed, so that mutations reach the checks behind them.
 */
int fuzz_write_delta(const uint8_t *data, size_t size, int fix);

/* The base model every seed delta was made against (fuzz/model/base). */
const char *fuzz_model_dir(void);

#endif
