/*
** test_attention.c — ops/attention.c without Lua: vl_attention against a
** naive double-loop softmax(q k^T * scale + mask) v (float64 and float32,
** several key blocks, causal, bool mask), vl_attention_weights, the
** backward through vl_backward against central differences of the naive
** loop, and error messages.
*/
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vl.h"

/* A contiguous float64 tensor filled from a fixed LCG in [-1, 1). */
static vl_tensor *pattern(int ndim, const int64_t *shape, unsigned seed) {
  vl_tensor *t = vl_empty(ndim, shape, VL_FLOAT64);
  assert_non_null(t);
  uint32_t s = seed * 2654435761u + 12345u;
  double *p = vl_data_ptr(t);
  for (int64_t i = 0; i < vl_numel(t); i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = ((double)(s >> 8) / (double)(1u << 24)) * 2.0 - 1.0;
  }
  return t;
}

static void assert_near(double got, double want, double tol) {
  if (!(fabs(got - want) <= tol * (1 + fabs(want)))) fail_msg("got %.17g, want %.17g (tol %g)", got, want, tol);
}

/* Naive attention on contiguous float64 [BH, L, x] buffers; mask [Lq, Lk]
   of 0/1 (may be NULL); a fully masked row gives 0. */
static void naive(const double *q, const double *k, const double *v, const unsigned char *mask, int64_t BH,
                  int64_t Lq, int64_t Lk, int64_t d, int64_t dv, bool causal, double scale, double *out) {
  double *s = malloc((size_t)Lk * sizeof *s);
  assert_non_null(s);
  for (int64_t b = 0; b < BH; b++)
    for (int64_t i = 0; i < Lq; i++) {
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j < Lk; j++) {
        double x = 0;
        for (int64_t c = 0; c < d; c++) x += q[(b * Lq + i) * d + c] * k[(b * Lk + j) * d + c];
        bool ok = (!causal || j <= i) && (!mask || mask[i * Lk + j]);
        s[j] = ok ? x * scale : -INFINITY;
        if (s[j] > mx) mx = s[j];
      }
      for (int64_t j = 0; j < Lk; j++) sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
      for (int64_t c = 0; c < dv; c++) {
        double o = 0;
        for (int64_t j = 0; j < Lk; j++)
          if (s[j] != -INFINITY) o += exp(s[j] - mx) / sum * v[(b * Lk + j) * dv + c];
        out[(b * Lq + i) * dv + c] = sum > 0 ? o : 0;
      }
    }
  free(s);
}

static void check_case(int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t d, int64_t dv, bool causal, bool masked) {
  vl_tensor *q = pattern(4, (int64_t[]){B, H, Lq, d}, 1), *k = pattern(4, (int64_t[]){B, H, Lk, d}, 2);
  vl_tensor *v = pattern(4, (int64_t[]){B, H, Lk, dv}, 3);
  vl_tensor *m = NULL;
  unsigned char *mb = NULL;
  if (masked) {
    m = vl_empty(2, (int64_t[]){Lq, Lk}, VL_BOOL);
    assert_non_null(m);
    mb = vl_data_ptr(m);
    for (int64_t i = 0; i < Lq * Lk; i++) mb[i] = (unsigned char)((i * 7919 % 5) != 0);
    mb[2 * Lk % (Lq * Lk)] = 1;
  }
  double scale = 0.37;
  double *want = malloc((size_t)(B * H * Lq * dv) * sizeof *want);
  assert_non_null(want);
  naive(vl_data_ptr(q), vl_data_ptr(k), vl_data_ptr(v), mb, B * H, Lq, Lk, d, dv, causal, scale, want);
  vl_tensor *y = vl_attention(q, k, v, m, causal, scale, 0);
  assert_non_null(y);
  const double *yp = vl_data_ptr(y);
  for (int64_t i = 0; i < vl_numel(y); i++) assert_near(yp[i], want[i], 1e-12);
  /* float32 */
  vl_tensor *qf = vl_to_dtype(q, VL_FLOAT32), *kf = vl_to_dtype(k, VL_FLOAT32), *vf = vl_to_dtype(v, VL_FLOAT32);
  vl_tensor *yf = vl_attention(qf, kf, vf, m, causal, scale, 0);
  assert_non_null(yf);
  assert_int_equal(yf->dtype, VL_FLOAT32);
  const float *yfp = vl_data_ptr(yf);
  for (int64_t i = 0; i < vl_numel(yf); i++) assert_near(yfp[i], want[i], 1e-5);
  /* the weights path gives the same output */
  vl_tensor *y2 = NULL, *w = NULL;
  assert_int_equal(vl_attention_weights(q, k, v, m, causal, scale, 0, &y2, &w), VL_OK);
  const double *y2p = vl_data_ptr(y2);
  for (int64_t i = 0; i < vl_numel(y2); i++) assert_near(y2p[i], want[i], 1e-12);
  assert_int_equal(w->ndim, 4);
  assert_int_equal(w->shape[3], Lk);
  free(want);
  vl_tensor *ts[] = {q, k, v, m, y, qf, kf, vf, yf, y2, w};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) vl_tensor_release(ts[i]);
}

static void test_against_naive(void **state) {
  (void)state;
  check_case(2, 3, 5, 7, 4, 6, false, false);
  check_case(1, 2, 300, 270, 3, 2, true, false);  /* two query and two key blocks */
  check_case(1, 1, 9, 600, 5, 3, false, true);    /* three key blocks, bool mask */
  check_case(2, 1, 40, 17, 2, 3, true, true);
}

/* d(sum(y * g))/dq[idx] by central differences of the naive loop. */
static double numeric_dq(vl_tensor *q, vl_tensor *k, vl_tensor *v, const double *g, int64_t idx, int64_t BH,
                         int64_t Lq, int64_t Lk, int64_t d, int64_t dv) {
  double *qp = vl_data_ptr(q), save = qp[idx], h = 1e-6, f[2];
  double *y = malloc((size_t)(BH * Lq * dv) * sizeof *y);
  assert_non_null(y);
  for (int s = 0; s < 2; s++) {
    qp[idx] = save + (s ? -h : h);
    naive(qp, vl_data_ptr(k), vl_data_ptr(v), NULL, BH, Lq, Lk, d, dv, true, 1 / sqrt((double)d), y);
    f[s] = 0;
    for (int64_t i = 0; i < BH * Lq * dv; i++) f[s] += y[i] * g[i];
  }
  qp[idx] = save;
  free(y);
  return (f[0] - f[1]) / (2 * h);
}

static void test_backward(void **state) {
  (void)state;
  int64_t B = 1, H = 2, Lq = 6, Lk = 5, d = 3, dv = 2;
  vl_tensor *q = pattern(4, (int64_t[]){B, H, Lq, d}, 4), *k = pattern(4, (int64_t[]){B, H, Lk, d}, 5);
  vl_tensor *v = pattern(4, (int64_t[]){B, H, Lk, dv}, 6), *g = pattern(4, (int64_t[]){B, H, Lq, dv}, 7);
  assert_int_equal(vl_set_requires_grad(q, true), VL_OK);
  vl_tensor *y = vl_attention(q, k, v, NULL, true, NAN, 0);
  assert_non_null(y);
  assert_string_equal(vl_grad_fn_name(y), "attention");
  assert_int_equal(vl_backward(y, g, false), VL_OK);
  vl_tensor *gq = vl_get_grad(q);
  assert_non_null(gq);
  assert_null(vl_get_grad(k));
  vl_tensor *qd = vl_detach(q);
  for (int64_t i = 0; i < vl_numel(q); i++)
    assert_near(((double *)vl_data_ptr(gq))[i], numeric_dq(qd, k, v, vl_data_ptr(g), i, B * H, Lq, Lk, d, dv), 1e-7);
  vl_tensor *ts[] = {q, k, v, g, y, gq, qd};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) vl_tensor_release(ts[i]);
}

static void expect_error(vl_tensor *got, const char *needle) {
  assert_null(got);
  if (strstr(vl_last_error(), needle) == NULL) fail_msg("error '%s' does not contain '%s'", vl_last_error(), needle);
}

static void test_errors(void **state) {
  (void)state;
  vl_tensor *q = pattern(4, (int64_t[]){2, 3, 5, 4}, 1), *k = pattern(4, (int64_t[]){2, 3, 6, 4}, 2);
  vl_tensor *v = pattern(4, (int64_t[]){2, 3, 6, 2}, 3), *k5 = pattern(4, (int64_t[]){2, 3, 6, 5}, 4);
  vl_tensor *m = vl_ones(2, (int64_t[]){5, 5}, VL_BOOL), *mi = vl_ones(2, (int64_t[]){5, 6}, VL_INT32);
  vl_tensor *kf = vl_to_dtype(k, VL_FLOAT32);
  expect_error(vl_attention(NULL, k, v, NULL, false, NAN, 0), "attention: q is missing (NULL)");
  expect_error(vl_attention(q, k5, v, NULL, false, NAN, 0), "has last dim 5 but q [2,3,5,4] has head dim d = 4");
  expect_error(vl_attention(q, k, v, m, false, NAN, 0), "attention: mask of shape [5,5] does not broadcast to [2,3,5,6]");
  expect_error(vl_attention(q, k, v, mi, false, NAN, 0), "attention: mask must be a bool tensor");
  expect_error(vl_attention(q, kf, v, NULL, false, NAN, 0), "q, k and v must have one dtype, got q float64, k float32");
  expect_error(vl_attention(q, k, v, NULL, false, NAN, -0.1), "attention: dropout must be in [0, 1], got -0.1");
  expect_error(vl_attention(q, k, v, NULL, false, INFINITY, 0), "attention: scale must be finite, got inf");
  assert_int_equal(vl_attention_weights(q, k, v, NULL, false, NAN, 0, NULL, NULL), VL_EARG);
  vl_tensor *ts[] = {q, k, v, k5, m, mi, kf};
  for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) vl_tensor_release(ts[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_naive),
      cmocka_unit_test(test_backward),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
