/*
** test_conv.c — ops/conv.c without Lua: conv2d (forward and, through
** autograd, its input/weight/bias gradients) and conv_transpose2d against
** naive direct loops in double, for strides, asymmetric padding,
** dilation, groups, 1x1 kernels, non-contiguous inputs and float32; max
** and average pooling against direct loops; error messages.
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

/* A contiguous tensor filled with a deterministic pattern in [-1, 1). */
static vl_tensor *pattern(int ndim, const int64_t *shape, vl_dtype dt, unsigned seed) {
  vl_tensor *t = vl_empty(ndim, shape, VL_FLOAT64);
  assert_non_null(t);
  int64_t n = vl_numel(t);
  uint32_t s = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    ((double *)vl_data_ptr(t))[i] = (double)((int)((s >> 8) % 2048) - 1024) / 1024.0;
  }
  vl_tensor *r = vl_to_dtype(t, dt);
  vl_tensor_release(t);
  assert_non_null(r);
  return r;
}

/* Element [a,b,c,d] of a 4-d tensor of any layout, as double. */
static double at4(const vl_tensor *t, int64_t a, int64_t b, int64_t c, int64_t d) {
  int64_t idx[4] = {a, b, c, d};
  double v;
  assert_int_equal(vl_get(t, idx, &v), VL_OK);
  return v;
}

typedef struct cfg {
  int64_t N, C, H, W, O, kH, kW;
  int64_t stride[2], pad[4], dil[2], groups; /* pad: top, bottom, left, right */
  bool bias;
} cfg;

static int64_t out_size(int64_t in, int64_t lo, int64_t hi, int64_t k, int64_t s, int64_t d) {
  return (in + lo + hi - d * (k - 1) - 1) / s + 1;
}

/* Naive conv2d of (x, w, b) and, for upstream gradient g, the gradients
   of sum(y * g); all in double, arrays laid out row-major. */
static void naive_conv(const cfg *c, const vl_tensor *x, const vl_tensor *w, const vl_tensor *b,
                       const vl_tensor *g, double *y, double *gx, double *gw, double *gb) {
  int64_t OH = out_size(c->H, c->pad[0], c->pad[1], c->kH, c->stride[0], c->dil[0]);
  int64_t OW = out_size(c->W, c->pad[2], c->pad[3], c->kW, c->stride[1], c->dil[1]);
  int64_t Cg = c->C / c->groups, Og = c->O / c->groups;
  memset(gx, 0, sizeof(double) * (size_t)(c->N * c->C * c->H * c->W));
  memset(gw, 0, sizeof(double) * (size_t)(c->O * Cg * c->kH * c->kW));
  memset(gb, 0, sizeof(double) * (size_t)c->O);
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->O; o++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t gi = o / Og;
          double s = 0;
          if (b) {
            int64_t i1[1] = {o};
            vl_get(b, i1, &s);
          }
          double gv = at4(g, n, o, oh, ow);
          for (int64_t ci = 0; ci < Cg; ci++)
            for (int64_t kh = 0; kh < c->kH; kh++)
              for (int64_t kw = 0; kw < c->kW; kw++) {
                int64_t ih = oh * c->stride[0] - c->pad[0] + kh * c->dil[0];
                int64_t iw = ow * c->stride[1] - c->pad[2] + kw * c->dil[1];
                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                int64_t ch = gi * Cg + ci;
                double xv = at4(x, n, ch, ih, iw), wv = at4(w, o, ci, kh, kw);
                s += xv * wv;
                gx[((n * c->C + ch) * c->H + ih) * c->W + iw] += wv * gv;
                gw[((o * Cg + ci) * c->kH + kh) * c->kW + kw] += xv * gv;
              }
          y[((n * c->O + o) * OH + oh) * OW + ow] = s;
          gb[o] += gv;
        }
}

static void expect_close(const vl_tensor *t, const double *want, double tol, const char *what) {
  int64_t n = vl_numel(t);
  vl_tensor *d = vl_to_dtype(t, VL_FLOAT64);
  vl_tensor *c = vl_contiguous(d);
  const double *p = vl_data_ptr(c);
  for (int64_t i = 0; i < n; i++) {
    if (!(fabs(p[i] - want[i]) <= tol * (1 + fabs(want[i])))) {
      print_error("%s: element %lld: got %.17g, want %.17g\n", what, (long long)i, p[i], want[i]);
      fail();
    }
  }
  vl_tensor_release(c);
  vl_tensor_release(d);
}

/* Runs one configuration in dtype dt, x optionally as a transposed view. */
static void run_conv(const cfg *c, vl_dtype dt, bool strided_x, double tol) {
  int64_t xs[4] = {c->N, c->C, c->H, c->W}, xts[4] = {c->N, c->C, c->W, c->H};
  int64_t ws[4] = {c->O, c->C / c->groups, c->kH, c->kW}, bs[1] = {c->O};
  vl_tensor *x;
  if (strided_x) {
    vl_tensor *xt = pattern(4, xts, dt, 1);
    x = vl_transpose(xt, 2, 3); /* [N,C,H,W] with unit stride along H */
    vl_tensor_release(xt);
    assert_false(vl_is_contiguous(x));
  } else {
    x = pattern(4, xs, dt, 1);
  }
  vl_tensor *w = pattern(4, ws, dt, 2), *b = c->bias ? pattern(1, bs, dt, 3) : NULL;
  assert_int_equal(vl_set_requires_grad(x, true), VL_OK);
  assert_int_equal(vl_set_requires_grad(w, true), VL_OK);
  if (b) assert_int_equal(vl_set_requires_grad(b, true), VL_OK);
  vl_tensor *y = vl_conv2d_pad(x, w, b, c->stride, c->pad, c->dil, c->groups);
  if (y == NULL) print_error("%s\n", vl_last_error());
  assert_non_null(y);
  int64_t OH = out_size(c->H, c->pad[0], c->pad[1], c->kH, c->stride[0], c->dil[0]);
  int64_t OW = out_size(c->W, c->pad[2], c->pad[3], c->kW, c->stride[1], c->dil[1]);
  assert_int_equal(y->shape[0], c->N);
  assert_int_equal(y->shape[1], c->O);
  assert_int_equal(y->shape[2], OH);
  assert_int_equal(y->shape[3], OW);
  assert_int_equal(y->dtype, dt);
  vl_tensor *g = pattern(4, y->shape, dt, 4);
  size_t ny = (size_t)vl_numel(y), nx = (size_t)vl_numel(x), nw = (size_t)vl_numel(w);
  double *ey = malloc(ny * sizeof *ey), *egx = malloc(nx * sizeof *egx), *egw = malloc(nw * sizeof *egw);
  double *egb = malloc((size_t)c->O * sizeof *egb);
  naive_conv(c, x, w, b, g, ey, egx, egw, egb);
  expect_close(y, ey, tol, "y");
  assert_int_equal(vl_backward(y, g, false), VL_OK);
  vl_tensor *gx = vl_get_grad(x), *gw = vl_get_grad(w), *gb = b ? vl_get_grad(b) : NULL;
  assert_non_null(gx);
  assert_non_null(gw);
  expect_close(gx, egx, tol, "gx");
  expect_close(gw, egw, tol, "gw");
  if (b) expect_close(gb, egb, tol, "gb");
  free(ey), free(egx), free(egw), free(egb);
  vl_tensor_release(gx), vl_tensor_release(gw), vl_tensor_release(gb);
  vl_tensor_release(g), vl_tensor_release(y);
  vl_tensor_release(x), vl_tensor_release(w), vl_tensor_release(b);
}

static const cfg configs[] = {
    {2, 3, 7, 6, 4, 3, 3, {1, 1}, {0, 0, 0, 0}, {1, 1}, 1, true},   /* plain */
    {3, 4, 9, 8, 6, 3, 2, {2, 1}, {1, 1, 2, 2}, {1, 2}, 2, true},   /* stride, pad, dilation, groups */
    {2, 4, 8, 8, 4, 3, 3, {2, 2}, {1, 1, 1, 1}, {1, 1}, 4, false},  /* depthwise */
    {2, 5, 4, 6, 3, 1, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 1, true},   /* 1x1: no im2col */
    {1, 2, 6, 7, 3, 4, 2, {1, 1}, {1, 2, 0, 1}, {1, 1}, 1, true},   /* asymmetric ("same", even kernel) */
    {1, 6, 40, 40, 4, 3, 3, {1, 1}, {1, 1, 1, 1}, {1, 1}, 2, true}, /* one big image: threaded im2col */
    {4, 8, 20, 20, 8, 3, 3, {1, 1}, {1, 1, 1, 1}, {2, 2}, 1, true}, /* a batch over threads */
    {2, 16, 30, 31, 32, 3, 3, {1, 2}, {1, 1, 0, 2}, {1, 1}, 16, true}, /* depthwise x2, threaded loops */
};

static void test_conv2d_float64(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) run_conv(&configs[i], VL_FLOAT64, false, 1e-12);
}

static void test_conv2d_float32(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) run_conv(&configs[i], VL_FLOAT32, false, 1e-4);
}

static void test_conv2d_strided_input(void **state) {
  (void)state;
  run_conv(&configs[1], VL_FLOAT64, true, 1e-12);
  run_conv(&configs[3], VL_FLOAT64, true, 1e-12);
}

static void test_conv2d_one_thread(void **state) {
  (void)state;
  int t = vl_get_num_threads();
  vl_set_num_threads(1);
  run_conv(&configs[6], VL_FLOAT64, false, 1e-12);
  vl_set_num_threads(t);
}

/* conv_transpose2d: y[n, g*Og + oc, ih*s - p + kh*d, ...] += x[n, c, ih, iw] * w[c, oc, kh, kw]. */
static void test_conv_transpose2d(void **state) {
  (void)state;
  int64_t N = 2, C = 4, H = 3, W = 4, G = 2, Og = 3, kH = 3, kW = 2;
  int64_t s[2] = {2, 3}, p[2] = {1, 0}, op[2] = {1, 2}, d[2] = {1, 2};
  int64_t xs[4] = {N, C, H, W}, ws[4] = {C, Og, kH, kW}, bs[1] = {G * Og};
  vl_tensor *x = pattern(4, xs, VL_FLOAT64, 5), *w = pattern(4, ws, VL_FLOAT64, 6), *b = pattern(1, bs, VL_FLOAT64, 7);
  vl_tensor *y = vl_conv_transpose2d(x, w, b, s, p, op, d, G);
  assert_non_null(y);
  int64_t OH = (H - 1) * s[0] - 2 * p[0] + d[0] * (kH - 1) + op[0] + 1;
  int64_t OW = (W - 1) * s[1] - 2 * p[1] + d[1] * (kW - 1) + op[1] + 1;
  assert_int_equal(y->shape[2], OH);
  assert_int_equal(y->shape[3], OW);
  size_t n = (size_t)(N * G * Og * OH * OW);
  double *e = calloc(n, sizeof *e);
  for (int64_t i = 0; i < N; i++)
    for (int64_t oc = 0; oc < G * Og; oc++)
      for (int64_t k = 0; k < OH * OW; k++) {
        int64_t i1[1] = {oc};
        vl_get(b, i1, &e[(i * G * Og + oc) * OH * OW + k]);
      }
  int64_t Cg = C / G;
  for (int64_t i = 0; i < N; i++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t ih = 0; ih < H; ih++)
        for (int64_t iw = 0; iw < W; iw++)
          for (int64_t oc = 0; oc < Og; oc++)
            for (int64_t kh = 0; kh < kH; kh++)
              for (int64_t kw = 0; kw < kW; kw++) {
                int64_t oh = ih * s[0] - p[0] + kh * d[0], ow = iw * s[1] - p[1] + kw * d[1];
                if (oh < 0 || oh >= OH || ow < 0 || ow >= OW) continue;
                int64_t ch = (c / Cg) * Og + oc;
                e[((i * G * Og + ch) * OH + oh) * OW + ow] += at4(x, i, c, ih, iw) * at4(w, c, oc, kh, kw);
              }
  expect_close(y, e, 1e-12, "conv_transpose2d");
  free(e);
  vl_tensor_release(x), vl_tensor_release(w), vl_tensor_release(b), vl_tensor_release(y);
}

static void test_pools(void **state) {
  (void)state;
  int64_t xs[4] = {2, 3, 7, 6};
  vl_tensor *x = pattern(4, xs, VL_FLOAT64, 8);
  int64_t k[2] = {3, 2}, s[2] = {2, 2}, p[2] = {1, 1}, d[2] = {1, 2};
  vl_tensor *v, *ind;
  assert_int_equal(vl_max_pool2d(x, k, s, p, d, false, &v, &ind), VL_OK);
  int64_t OH = (7 + 2 - 1 * 2 - 1) / 2 + 1, OW = (6 + 2 - 2 * 1 - 1) / 2 + 1;
  assert_int_equal(v->shape[2], OH);
  assert_int_equal(v->shape[3], OW);
  vl_tensor *a = vl_avg_pool2d(x, k, s, p, false, false, 0);
  assert_non_null(a);
  for (int64_t n = 0; n < 2; n++)
    for (int64_t c = 0; c < 3; c++)
      for (int64_t oh = 0; oh < OH; oh++)
        for (int64_t ow = 0; ow < OW; ow++) {
          double m = -INFINITY, sum = 0;
          int64_t arg = -1, cnt = 0;
          for (int64_t kh = 0; kh < 3; kh++)
            for (int64_t kw = 0; kw < 2; kw++) {
              int64_t ih = oh * 2 - 1 + kh, iw = ow * 2 - 1 + kw * 2;
              if (ih >= 0 && ih < 7 && iw >= 0 && iw < 6 && at4(x, n, c, ih, iw) > m)
                m = at4(x, n, c, ih, iw), arg = ih * 6 + iw;
              int64_t jw = ow * 2 - 1 + kw; /* avg pool: no dilation */
              if (ih >= 0 && ih < 7 && jw >= 0 && jw < 6) sum += at4(x, n, c, ih, jw), cnt++;
            }
          assert_true(at4(v, n, c, oh, ow) == m);
          int64_t idx[4] = {n, c, oh, ow}, got;
          assert_int_equal(vl_get_int(ind, idx, &got), VL_OK);
          assert_int_equal(got, arg);
          assert_true(fabs(at4(a, n, c, oh, ow) - sum / (double)cnt) < 1e-14);
        }
  vl_tensor *ad = vl_adaptive_avg_pool2d(x, 3, 4);
  assert_non_null(ad);
  /* row windows of 7 -> 3: [0,3) [2,5) [4,7); columns of 6 -> 4: [0,2) [1,3) [3,5) [4,6) */
  double want = (at4(x, 1, 2, 2, 1) + at4(x, 1, 2, 2, 2) + at4(x, 1, 2, 3, 1) + at4(x, 1, 2, 3, 2) +
                 at4(x, 1, 2, 4, 1) + at4(x, 1, 2, 4, 2)) / 6;
  assert_true(fabs(at4(ad, 1, 2, 1, 1) - want) < 1e-14);
  vl_tensor_release(ad), vl_tensor_release(a), vl_tensor_release(v), vl_tensor_release(ind);
  vl_tensor_release(x);
}

static void expect_error(vl_tensor *r, const char *fragment) {
  assert_null(r);
  if (strstr(vl_last_error(), fragment) == NULL) {
    print_error("message '%s' lacks '%s'\n", vl_last_error(), fragment);
    fail();
  }
}

static void test_errors(void **state) {
  (void)state;
  int64_t xs[4] = {1, 3, 5, 5}, ws[4] = {8, 4, 3, 3}, w2s[3] = {2, 3, 3};
  vl_tensor *x = pattern(4, xs, VL_FLOAT32, 1), *w = pattern(4, ws, VL_FLOAT32, 2), *w3 = pattern(3, w2s, VL_FLOAT32, 3);
  expect_error(vl_conv2d(x, w, NULL, NULL, NULL, NULL, 1),
               "conv2d: input has 3 channels but weight expects 4 (weight shape [8,4,3,3], groups 1)");
  expect_error(vl_conv2d(x, w3, NULL, NULL, NULL, NULL, 1), "conv2d: expected a 4-d weight");
  expect_error(vl_conv2d(x, w, NULL, NULL, NULL, NULL, 0), "conv2d: groups must be at least 1, got 0");
  int64_t big[2] = {3, 3};
  vl_tensor *v = NULL, *i = NULL;
  assert_int_not_equal(vl_max_pool2d(x, big, NULL, big, NULL, false, &v, &i), VL_OK);
  assert_null(v);
  assert_non_null(strstr(vl_last_error(), "max_pool2d: padding {3, 3} must be at most half the kernel size"));
  vl_tensor *xi = vl_to_dtype(x, VL_INT32);
  expect_error(vl_avg_pool2d(xi, big, NULL, NULL, false, true, 0), "avg_pool2d: expected a floating-point input, got int32");
  vl_tensor_release(xi), vl_tensor_release(x), vl_tensor_release(w), vl_tensor_release(w3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv2d_float64),    cmocka_unit_test(test_conv2d_float32),
      cmocka_unit_test(test_conv2d_strided_input), cmocka_unit_test(test_conv2d_one_thread),
      cmocka_unit_test(test_conv_transpose2d),  cmocka_unit_test(test_pools),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
