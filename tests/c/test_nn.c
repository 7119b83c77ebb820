/*
** test_nn.c — ops/nn.c without Lua: kernels against naive double loops
** (linear, layer_norm on a transposed input, batch_norm with its running
** stats, cross_entropy with weights, ignore_index and label smoothing,
** group_norm), a backward through vl_backward checked against the
** closed form, float32 against float64, and error messages.
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

/* A contiguous float64 tensor filled from a fixed LCG in [-2, 2). */
static vl_tensor *pattern(int ndim, const int64_t *shape, unsigned seed) {
  vl_tensor *t = vl_empty(ndim, shape, VL_FLOAT64);
  assert_non_null(t);
  uint32_t s = seed * 2654435761u + 12345u;
  double *p = vl_data_ptr(t);
  for (int64_t i = 0; i < vl_numel(t); i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = ((double)(s >> 8) / (double)(1u << 24)) * 4.0 - 2.0;
  }
  return t;
}

static double at(const vl_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
  int64_t idx[3] = {i0, i1, i2};
  double v = 0;
  assert_int_equal(vl_get(t, idx, &v), VL_OK);
  return v;
}

static void assert_near(double got, double want, double tol) {
  if (!(fabs(got - want) <= tol * (1 + fabs(want)))) fail_msg("got %.17g, want %.17g (tol %g)", got, want, tol);
}

static void test_linear_naive(void **state) {
  (void)state;
  vl_tensor *x = pattern(2, (int64_t[]){5, 7}, 1), *w = pattern(2, (int64_t[]){3, 7}, 2), *b = pattern(1, (int64_t[]){3}, 3);
  vl_tensor *y = vl_linear(x, w, b);
  assert_non_null(y);
  assert_int_equal(y->shape[0], 5);
  assert_int_equal(y->shape[1], 3);
  for (int i = 0; i < 5; i++)
    for (int o = 0; o < 3; o++) {
      double s = at(b, o, 0, 0);
      for (int k = 0; k < 7; k++) s += at(x, i, k, 0) * at(w, o, k, 0);
      assert_near(at(y, i, o, 0), s, 1e-13);
    }
  /* float32 against float64 */
  vl_tensor *xf = vl_to_dtype(x, VL_FLOAT32), *wf = vl_to_dtype(w, VL_FLOAT32), *yf = vl_linear(xf, wf, NULL);
  assert_non_null(yf);
  assert_int_equal(yf->dtype, VL_FLOAT32);
  for (int i = 0; i < 5; i++)
    for (int o = 0; o < 3; o++) assert_near(at(yf, i, o, 0), at(y, i, o, 0) - at(b, o, 0, 0), 1e-5);
  vl_tensor *ts[] = {x, w, b, y, xf, wf, yf};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vl_tensor_release(ts[i]);
}

static void test_layer_norm_transposed(void **state) {
  (void)state;
  vl_tensor *base = pattern(2, (int64_t[]){6, 4}, 4);
  vl_tensor *x = vl_transpose(base, 0, 1); /* [4, 6], rows not contiguous */
  vl_tensor *w = pattern(1, (int64_t[]){6}, 5), *b = pattern(1, (int64_t[]){6}, 6);
  vl_tensor *y = vl_layer_norm(x, 1, w, b, 1e-5);
  assert_non_null(y);
  for (int r = 0; r < 4; r++) {
    double m = 0, v = 0;
    for (int j = 0; j < 6; j++) m += at(x, r, j, 0) / 6;
    for (int j = 0; j < 6; j++) v += (at(x, r, j, 0) - m) * (at(x, r, j, 0) - m) / 6;
    for (int j = 0; j < 6; j++)
      assert_near(at(y, r, j, 0), (at(x, r, j, 0) - m) / sqrt(v + 1e-5) * at(w, j, 0, 0) + at(b, j, 0, 0), 1e-13);
  }
  vl_tensor *ts[] = {base, x, w, b, y};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vl_tensor_release(ts[i]);
}

static void test_batch_norm_running_stats(void **state) {
  (void)state;
  int64_t N = 4, C = 3, S = 5;
  vl_tensor *x = pattern(3, (int64_t[]){N, C, S}, 7);
  vl_tensor *rm = vl_zeros(1, &C, VL_FLOAT64), *rv = vl_ones(1, &C, VL_FLOAT64);
  vl_tensor *y = vl_batch_norm(x, rm, rv, NULL, NULL, true, 0.25, 1e-5);
  assert_non_null(y);
  for (int c = 0; c < C; c++) {
    double m = 0, v = 0, cnt = (double)(N * S);
    for (int n = 0; n < N; n++)
      for (int s = 0; s < S; s++) m += at(x, n, c, s) / cnt;
    for (int n = 0; n < N; n++)
      for (int s = 0; s < S; s++) v += (at(x, n, c, s) - m) * (at(x, n, c, s) - m) / cnt;
    assert_near(at(rm, c, 0, 0), 0.25 * m, 1e-14);
    assert_near(at(rv, c, 0, 0), 0.75 + 0.25 * v * cnt / (cnt - 1), 1e-14);
    for (int n = 0; n < N; n++)
      for (int s = 0; s < S; s++) assert_near(at(y, n, c, s), (at(x, n, c, s) - m) / sqrt(v + 1e-5), 1e-12);
  }
  vl_tensor_release(y);
  /* eval: the running stats, untouched */
  double rm0 = at(rm, 1, 0, 0), rv0 = at(rv, 1, 0, 0);
  y = vl_batch_norm(x, rm, rv, NULL, NULL, false, 0.25, 1e-5);
  assert_non_null(y);
  assert_near(at(y, 2, 1, 3), (at(x, 2, 1, 3) - rm0) / sqrt(rv0 + 1e-5), 1e-14);
  assert_true(at(rm, 1, 0, 0) == rm0);
  vl_tensor *ts[] = {x, rm, rv, y};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vl_tensor_release(ts[i]);
}

/* Naive cross entropy with PyTorch 1.13 semantics (mean reduction). */
static double ce_naive(const vl_tensor *x, const int64_t *t, const double *w, int64_t ii, double eps) {
  int64_t N = x->shape[0], C = x->shape[1];
  double nll = 0, sm = 0, wsum = 0;
  for (int64_t i = 0; i < N; i++) {
    if (t[i] == ii) continue;
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; c++) m = fmax(m, at(x, i, c, 0));
    for (int64_t c = 0; c < C; c++) s += exp(at(x, i, c, 0) - m);
    double lse = m + log(s);
    nll += -w[t[i]] * (at(x, i, t[i], 0) - lse);
    for (int64_t c = 0; c < C; c++) sm += -w[c] * (at(x, i, c, 0) - lse);
    wsum += w[t[i]];
  }
  return (1 - eps) * nll / wsum + eps / (double)C * sm / wsum;
}

static void test_cross_entropy_naive(void **state) {
  (void)state;
  int64_t N = 6, C = 4;
  vl_tensor *x = pattern(2, (int64_t[]){N, C}, 8);
  int64_t tv[] = {0, 3, -7, 2, 1, 3};
  double wv[] = {0.5, 1.0, 1.5, 2.0};
  vl_tensor *t = vl_empty(1, &N, VL_INT64), *w = vl_empty(1, &C, VL_FLOAT64);
  memcpy(vl_data_ptr(t), tv, sizeof tv);
  memcpy(vl_data_ptr(w), wv, sizeof wv);
  double ones[] = {1, 1, 1, 1};
  for (int k = 0; k < 2; k++) {
    double eps = k ? 0.2 : 0.0;
    vl_tensor *l = vl_cross_entropy(x, t, w, -7, VL_REDUCTION_MEAN, eps);
    assert_non_null(l);
    assert_int_equal(l->ndim, 0);
    assert_near(at(l, 0, 0, 0), ce_naive(x, tv, wv, -7, eps), 1e-14);
    vl_tensor_release(l);
    l = vl_cross_entropy(x, t, NULL, -7, VL_REDUCTION_MEAN, eps);
    assert_near(at(l, 0, 0, 0), ce_naive(x, tv, ones, -7, eps), 1e-14);
    vl_tensor_release(l);
  }
  /* float32 against float64 */
  vl_tensor *xf = vl_to_dtype(x, VL_FLOAT32), *lf = vl_cross_entropy(xf, t, w, -7, VL_REDUCTION_MEAN, 0.1);
  assert_non_null(lf);
  assert_int_equal(lf->dtype, VL_FLOAT64); /* weight is float64: promoted */
  assert_near(at(lf, 0, 0, 0), ce_naive(x, tv, wv, -7, 0.1), 1e-6);
  /* a class out of range is an error naming it */
  tv[1] = 4;
  memcpy(vl_data_ptr(t), tv, sizeof tv);
  assert_null(vl_cross_entropy(x, t, NULL, -100, VL_REDUCTION_MEAN, 0));
  assert_int_equal(vl_last_status(), VL_EINDEX);
  assert_non_null(strstr(vl_last_error(), "cross_entropy: target 4 out of range for 4 classes"));
  vl_tensor *ts[] = {x, t, w, xf, lf};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vl_tensor_release(ts[i]);
}

static void test_group_norm_naive(void **state) {
  (void)state;
  int64_t N = 2, C = 6, S = 3, G = 2, Cg = C / G;
  vl_tensor *x = pattern(3, (int64_t[]){N, C, S}, 9), *w = pattern(1, &C, 10);
  vl_tensor *y = vl_group_norm(x, G, w, NULL, 1e-5);
  assert_non_null(y);
  for (int n = 0; n < N; n++)
    for (int g = 0; g < G; g++) {
      double m = 0, v = 0, cnt = (double)(Cg * S);
      for (int c = g * Cg; c < (g + 1) * Cg; c++)
        for (int s = 0; s < S; s++) m += at(x, n, c, s) / cnt;
      for (int c = g * Cg; c < (g + 1) * Cg; c++)
        for (int s = 0; s < S; s++) v += (at(x, n, c, s) - m) * (at(x, n, c, s) - m) / cnt;
      for (int c = g * Cg; c < (g + 1) * Cg; c++)
        for (int s = 0; s < S; s++)
          assert_near(at(y, n, c, s), (at(x, n, c, s) - m) / sqrt(v + 1e-5) * at(w, c, 0, 0), 1e-13);
    }
  vl_tensor *ts[] = {x, w, y};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vl_tensor_release(ts[i]);
}

/* d/dx of mean((x - y)^2) = 2 (x - y) / n through the autograd engine. */
static void test_mse_backward(void **state) {
  (void)state;
  int64_t n = 10;
  vl_tensor *x = pattern(1, &n, 11), *y = pattern(1, &n, 12);
  assert_int_equal(vl_set_requires_grad(x, true), VL_OK);
  vl_tensor *l = vl_mse_loss(x, y, VL_REDUCTION_MEAN);
  assert_non_null(l);
  assert_string_equal(vl_grad_fn_name(l), "mse_loss");
  assert_int_equal(vl_backward(l, NULL, false), VL_OK);
  vl_tensor *g = vl_get_grad(x);
  assert_non_null(g);
  for (int i = 0; i < n; i++) assert_near(at(g, i, 0, 0), 2 * (at(x, i, 0, 0) - at(y, i, 0, 0)) / (double)n, 1e-15);
  vl_tensor *ts[] = {x, y, l, g};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) vl_tensor_release(ts[i]);
}

static void test_errors(void **state) {
  (void)state;
  vl_tensor *x = vl_zeros(2, (int64_t[]){2, 3}, VL_FLOAT32), *w = vl_zeros(2, (int64_t[]){4, 5}, VL_FLOAT32);
  assert_null(vl_linear(x, w, NULL));
  assert_int_equal(vl_last_status(), VL_ESHAPE);
  assert_non_null(strstr(vl_last_error(), "linear: input [2,3] has 3 features"));
  vl_reduction r;
  assert_int_equal(vl_reduction_from_name("mse_loss", "avg", false, &r), VL_EARG);
  assert_non_null(strstr(vl_last_error(), "mse_loss: unknown reduction 'avg'"));
  assert_int_equal(vl_reduction_from_name("kl_div", "batchmean", true, &r), VL_OK);
  assert_int_equal(r, VL_REDUCTION_BATCHMEAN);
  assert_null(vl_mse_loss(x, x, VL_REDUCTION_BATCHMEAN));
  assert_null(vl_dropout(x, -0.5, true));
  assert_non_null(strstr(vl_last_error(), "dropout: p must be in [0, 1]"));
  assert_null(vl_group_norm(x, 2, NULL, NULL, 1e-5));
  assert_non_null(strstr(vl_last_error(), "group_norm: 3 channels do not split into 2 groups"));
  assert_null(vl_layer_norm(NULL, 1, NULL, NULL, 1e-5));
  vl_tensor_release(x);
  vl_tensor_release(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_naive),         cmocka_unit_test(test_layer_norm_transposed),
      cmocka_unit_test(test_batch_norm_running_stats), cmocka_unit_test(test_cross_entropy_naive),
      cmocka_unit_test(test_group_norm_naive),     cmocka_unit_test(test_mse_backward),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
