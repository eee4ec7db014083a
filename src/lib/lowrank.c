/* SPDX-License-Identifier: Apache-2.0 */
#include "lowrank.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sparse/util.h"

/* LAPACK through OpenBLAS (Fortran calling convention: the last argument is the hidden length
 * of the character argument). */
void sgeqrf_(const int *m, const int *n, float *a, const int *lda, float *tau, float *work,
	     const int *lwork, int *info);
void sorgqr_(const int *m, const int *n, const int *k, float *a, const int *lda, const float *tau,
	     float *work, const int *lwork, int *info);
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
	     float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork,
	     int *iwork, int *info, size_t jobz_len);

#define OVERSAMPLE 10
#define POWER_ITERS 2

void sp_blas_threads(int n)
{
	openblas_set_num_threads(n);
}

/* A deterministic standard normal sequence (splitmix64 + Box-Muller). */
static void gaussian(float *x, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i += 2) {
		double u[2];
		for (int k = 0; k < 2; k++) {
			uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
			z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
			u[k] = ((double)((z ^ (z >> 31)) >> 11) + 0.5) / 9007199254740992.0;
		}
		double r = sqrt(-2 * log(u[0]));
		x[i] = (float)(r * cos(6.283185307179586 * u[1]));
		if (i + 1 < n)
			x[i + 1] = (float)(r * sin(6.283185307179586 * u[1]));
	}
}

/* Replaces the m x l column-major y by an orthonormal basis of its columns. */
static int orthonormalize(float *y, int m, int l)
{
	int info = 0, lwork = -1;
	float q, *tau = malloc((size_t)l * sizeof(float)), *work;
	sgeqrf_(&m, &l, y, &m, tau, &q, &lwork, &info);
	lwork = (int)q > l * 64 ? (int)q : l * 64;
	work = malloc((size_t)lwork * sizeof(float));
	if (tau && work) {
		sgeqrf_(&m, &l, y, &m, tau, work, &lwork, &info);
		if (info == 0)
			sorgqr_(&m, &l, &l, y, &m, tau, work, &lwork, &info);
	}
	int ok = tau && work && info == 0;
	free(tau);
	free(work);
	return ok ? 0 : -1;
}

/* The thin SVD of the n x l column-major c: u (n x l), s (l), vt (l x l). c is destroyed. */
static int small_svd(float *c, int n, int l, float *u, float *s, float *vt)
{
	int info = 0, lwork = -1, *iwork = malloc(8 * (size_t)l * sizeof(int));
	float q, *work = NULL;
	sgesdd_("S", &n, &l, c, &n, s, u, &n, vt, &l, &q, &lwork, iwork, &info, 1);
	lwork = (int)q + 1;
	if (iwork && (work = malloc((size_t)lwork * sizeof(float))))
		sgesdd_("S", &n, &l, c, &n, s, u, &n, vt, &l, work, &lwork, iwork, &info, 1);
	int ok = iwork && work && info == 0;
	free(iwork);
	free(work);
	return ok ? 0 : -1;
}

/*
 * Working in column-major terms, the row-major m x n d is D^T (n x m, leading dimension n).
 * Y = D W spans D's range; power iterations Y = D (D^T Y) sharpen it; with Q = orth(Y),
 * C = D^T Q (n x l) = Uc S Vc^T gives D ~ Q C^T = (Q Vc) S Uc^T.
 */
static int range_svd(const float *d, int m, int n, int l, float *q, float *c, float *uc,
		     float *s, float *vt)
{
	float *z = c; /* n x l scratch, reused */
	gaussian(z, (size_t)n * (size_t)l, 0x5eed + (uint64_t)m * 31 + (uint64_t)n);
	cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, l, n, 1, d, n, z, n, 0, q, m);
	for (int it = 0; it < POWER_ITERS; it++) {
		if (orthonormalize(q, m, l))
			return -1;
		cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, l, m, 1, d, n, q, m, 0, z, n);
		if (orthonormalize(z, n, l))
			return -1;
		cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, l, n, 1, d, n, z, n, 0, q, m);
	}
	if (orthonormalize(q, m, l))
		return -1;
	cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, l, m, 1, d, n, q, m, 0, c, n);
	return small_svd(c, n, l, uc, s, vt);
}

long sp_lowrank(const float *d, size_t m, size_t n, size_t rank, float *a, float *b, float *s)
{
	size_t mn = m < n ? m : n, k = rank < mn ? rank : mn, l = k + OVERSAMPLE < mn ? k + OVERSAMPLE : mn;
	if (k == 0)
		return 0;
	float *q = malloc(m * l * sizeof(float)), *c = malloc(n * l * sizeof(float));
	float *uc = malloc(n * l * sizeof(float)), *sv = malloc(l * sizeof(float));
	float *vt = malloc(l * l * sizeof(float)), *u = malloc(m * l * sizeof(float));
	long rc = -1;
	if (q && c && uc && sv && vt && u && range_svd(d, (int)m, (int)n, (int)l, q, c, uc, sv, vt) == 0) {
		/* U = Q Vc = Q vt^T (m x l, column-major). */
		cblas_sgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)m, (int)l, (int)l, 1, q,
			    (int)m, vt, (int)l, 0, u, (int)m);
		for (size_t i = 0; i < m; i++)
			for (size_t j = 0; j < k; j++)
				a[i * k + j] = u[i + j * m] * sv[j];
		for (size_t j = 0; j < k; j++)
			memcpy(b + j * n, uc + j * n, n * sizeof(float));
		if (s)
			memcpy(s, sv, k * sizeof(float));
		rc = (long)k;
	}
	free(q);
	free(c);
	free(uc);
	free(sv);
	free(vt);
	free(u);
	return rc;
}

size_t sp_lowrank_energy_rank(const float *s, size_t k, double total, double energy)
{
	double kept = 0;
	for (size_t r = 0; r < k; r++) {
		if (kept >= energy * total)
			return r;
		kept += (double)s[r] * s[r];
	}
	return k;
}
