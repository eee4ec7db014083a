/* SPDX-License-Identifier: Apache-2.0 */
/* Truncated SVD by a randomized range finder (Halko, Martinsson and Tropp, 2011): a few gemms,
 * a QR and one small SVD, so a 4096 x 11008 delta takes a fraction of a second. */
#ifndef SP_LOWRANK_H
#define SP_LOWRANK_H

#include <stddef.h>

/* Factors the m x n row-major matrix d as a * b with k = min(rank, m, n) inner columns:
 * a (m x k, row-major) = U diag(s), b (k x n, row-major) = V^T, s (k) the singular values,
 * largest first. Deterministic for given inputs. Returns k, or -1 when out of memory or when
 * LAPACK fails. */
long sp_lowrank(const float *d, size_t m, size_t n, size_t rank, float *a, float *b, float *s);

/* The smallest rank whose leading singular values s[0..k) keep a fraction energy of total, the
 * squared Frobenius norm of the matrix; k if they do not. */
size_t sp_lowrank_energy_rank(const float *s, size_t k, double total, double energy);

#endif
