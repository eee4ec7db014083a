/* SPDX-License-Identifier: Apache-2.0 */
/* The benches' way to one safetensors file, through the library's model. */
#ifndef SPARSE_BENCH_LOAD_ST_H
#define SPARSE_BENCH_LOAD_ST_H

#include "model.h"

/* Opens the folder holding path as model m and maps path; exits with a message naming prog and
 * the reason when it cannot. */
const struct sp_mfile *bench_load_st(struct sp_model *m, const char *path, const char *prog);

#endif
