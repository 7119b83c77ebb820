/*
** test_gemm.c — vl_sgemm (ops/gemm.c) against a plain double-precision
** loop, for every kernel this CPU has (AVX-512, AVX2, OpenBLAS): shapes
** around the micro-tile and block edges, both transposes, leading
** dimensions wider than the matrix, alpha/beta, beta == 0 over NaN bits,
** K == 0, and threaded products. A kernel the CPU lacks is reported as
** skipped, not passed.
*/
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "vl_internal.h"

static float value(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((int)((*s >> 16) % 257) - 128) / 64.0f;
}

/* One product checked against the reference; the matrices are stored
   with leading dimensions wider than needed and guard values past them. */
static void check_one(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  int64_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  int64_t lda = ac + 3, ldb = bc + 5, ldc = N + 2;
  float *A = malloc(sizeof(float) * (size_t)(ar * lda + 1));
  float *B = malloc(sizeof(float) * (size_t)(br * ldb + 1));
  float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1));
  double *R = malloc(sizeof(double) * (size_t)(M * N + 1));
  assert_non_null(A);
  assert_non_null(B);
  assert_non_null(C);
  assert_non_null(R);
  uint32_t s = (uint32_t)(M * 131 + N * 17 + K * 7 + ta * 3 + tb);
  for (int64_t i = 0; i < ar * lda; i++) A[i] = value(&s);
  for (int64_t i = 0; i < br * ldb; i++) B[i] = value(&s);
  for (int64_t i = 0; i < M * ldc; i++) C[i] = beta == 0 ? NAN : value(&s);
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double acc = 0;
      for (int64_t k = 0; k < K; k++) {
        double a = ta ? A[k * lda + i] : A[i * lda + k];
        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      R[i * N + j] = alpha * acc + (beta == 0 ? 0.0 : beta * (double)C[i * ldc + j]);
    }
  vl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  for (int64_t i = 0; i < M; i++) {
    for (int64_t j = 0; j < N; j++) {
      double want = R[i * N + j], got = C[i * ldc + j];
      double tol = 1e-5 * (1 + fabs(want)) * (1 + sqrt((double)K));
      if (!(fabs(got - want) <= tol))
        fail_msg("%s: ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g: C[%lld,%lld] = %g, expected %g",
                 vl_sgemm_kernel(), ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta, (long long)i,
                 (long long)j, got, want);
    }
    /* the columns between N and ldc are not C's: untouched */
    for (int64_t j = N; j < ldc && beta != 0; j++) {
      float v = C[i * ldc + j];
      assert_false(isnan(v));
    }
  }
  free(A);
  free(B);
  free(C);
  free(R);
}

static void check_kernel(const char *name) {
  if (!vl_sgemm_force(name)) {
    printf("# skip: this CPU has no %s kernel\n", name);
    skip();
  }
  assert_string_equal(vl_sgemm_kernel(), name);
  static const int64_t sizes[][3] = {
      {1, 1, 1},    {2, 3, 4},     {12, 32, 8},  {13, 33, 9},   {11, 31, 257}, {6, 16, 1},
      {7, 17, 3},   {64, 196, 288}, {193, 70, 5}, {25, 2049, 3}, {50, 64, 513}, {3, 100, 600},
  };
  static const float ab[][2] = {{1, 0}, {0.5f, 1}, {-2, 0.25f}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (int t = 0; t < 4; t++)
      for (size_t c = 0; c < 3; c++)
        check_one(t & 1, t & 2, sizes[i][0], sizes[i][1], sizes[i][2], ab[c][0], ab[c][1]);
  /* big enough to be threaded when called outside a parallel region */
  check_one(false, false, 300, 260, 270, 1, 0);
  check_one(true, true, 301, 259, 271, 1, 1);
  /* and called from inside one: each thread runs its own product */
  int bad = 0;
#pragma omp parallel for reduction(+ : bad)
  for (int r = 0; r < 4; r++) {
    float A[40 * 30], B[30 * 20], C[40 * 20];
    for (int i = 0; i < 40 * 30; i++) A[i] = (float)((i * 7 + r) % 13) - 6;
    for (int i = 0; i < 30 * 20; i++) B[i] = (float)((i * 5 + r) % 11) - 5;
    vl_sgemm(false, false, 40, 20, 30, 1, A, 30, B, 20, 0, C, 20);
    for (int i = 0; i < 40; i++)
      for (int j = 0; j < 20; j++) {
        float acc = 0;
        for (int k = 0; k < 30; k++) acc += A[i * 30 + k] * B[k * 20 + j];
        if (acc != C[i * 20 + j]) bad++;
      }
  }
  assert_int_equal(bad, 0);
}

static void test_avx512(void **state) {
  (void)state;
  check_kernel("avx512");
}

static void test_avx2(void **state) {
  (void)state;
  check_kernel("avx2");
}

static void test_openblas(void **state) {
  (void)state;
  check_kernel("openblas");
}

/* K == 0 and alpha == 0 leave beta * C (zeros for beta == 0, even over NaN). */
static void test_degenerate(void **state) {
  (void)state;
  float C[6] = {NAN, NAN, NAN, NAN, NAN, NAN}, D[6] = {1, 2, 3, 4, 5, 6};
  float A[1] = {0}, B[1] = {0};
  vl_sgemm(false, false, 2, 3, 0, 1, A, 1, B, 3, 0, C, 3);
  for (int i = 0; i < 6; i++) assert_true(C[i] == 0);
  vl_sgemm(false, false, 2, 3, 1, 0, A, 1, B, 3, 2, D, 3);
  for (int i = 0; i < 6; i++) assert_true(D[i] == 2 * (i + 1));
  vl_sgemm(false, false, 0, 3, 4, 1, A, 4, B, 3, 0, C, 3); /* nothing to do */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_avx512),
      cmocka_unit_test(test_avx2),
      cmocka_unit_test(test_openblas),
      cmocka_unit_test(test_degenerate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
