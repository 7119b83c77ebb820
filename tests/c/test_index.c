/* test_index.c — ops/index.c and ops/sort.c without Lua: joining, indexing, ordering. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vl.h"

/* ---- helpers ---------------------------------------------------- */

static vl_tensor *make_f32(int ndim, const int64_t *shape, const float *v) {
  vl_tensor *t = vl_empty(ndim, shape, VL_FLOAT32);
  assert_non_null(t);
  memcpy(vl_data_ptr(t), v, (size_t)vl_numel(t) * sizeof(float));
  return t;
}

static vl_tensor *make_i64(int ndim, const int64_t *shape, const int64_t *v) {
  vl_tensor *t = vl_empty(ndim, shape, VL_INT64);
  assert_non_null(t);
  memcpy(vl_data_ptr(t), v, (size_t)vl_numel(t) * sizeof(int64_t));
  return t;
}

/* Element i (row-major over t's shape) as double, any layout/dtype. */
static double at(const vl_tensor *t, int64_t flat) {
  int64_t idx[VL_MAX_DIMS];
  for (int d = t->ndim - 1; d >= 0; d--) {
    idx[d] = flat % t->shape[d];
    flat /= t->shape[d];
  }
  double v;
  assert_int_equal(vl_get(t, idx, &v), VL_OK);
  return v;
}

static int64_t at_i(const vl_tensor *t, int64_t flat) {
  int64_t idx[VL_MAX_DIMS];
  for (int d = t->ndim - 1; d >= 0; d--) {
    idx[d] = flat % t->shape[d];
    flat /= t->shape[d];
  }
  int64_t v;
  assert_int_equal(vl_get_int(t, idx, &v), VL_OK);
  return v;
}

static void expect_values(const vl_tensor *t, int n, const double *want) {
  assert_int_equal(vl_numel(t), n);
  for (int i = 0; i < n; i++) {
    double got = at(t, i);
    if (isnan(want[i]))
      assert_true(isnan(got));
    else
      assert_true(got == want[i]);
  }
}

static void expect_shape(const vl_tensor *t, int ndim, const int64_t *shape) {
  assert_int_equal(t->ndim, ndim);
  for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
}

static void expect_error(vl_status code, const char *needle) {
  assert_int_equal(vl_last_status(), code);
  if (strstr(vl_last_error(), needle) == NULL) fail_msg("error '%s' lacks '%s'", vl_last_error(), needle);
}

/* ---- cat / stack ------------------------------------------------ */

static void test_cat(void **state) {
  (void)state;
  int64_t s23[2] = {2, 3}, s22[2] = {2, 2};
  float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {7, 8, 9, 10};
  vl_tensor *x = make_f32(2, s23, a), *y = make_f32(2, s22, b);
  const vl_tensor *ts[2] = {x, y};
  vl_tensor *c = vl_cat(2, ts, 1);
  assert_non_null(c);
  expect_shape(c, 2, (int64_t[]){2, 5});
  expect_values(c, 10, (double[]){1, 2, 3, 7, 8, 4, 5, 6, 9, 10});
  vl_tensor_release(c);
  /* dim 0 mismatch names both shapes */
  assert_null(vl_cat(2, ts, 0));
  expect_error(VL_ESHAPE, "[2,2]");
  assert_true(strstr(vl_last_error(), "[2,3]") != NULL);
  /* transposed (non-contiguous) input, negative dim */
  vl_tensor *xt = vl_transpose(x, 0, 1); /* [3,2] */
  const vl_tensor *t2[2] = {xt, xt};
  c = vl_cat(2, t2, -1);
  expect_shape(c, 2, (int64_t[]){3, 4});
  expect_values(c, 12, (double[]){1, 4, 1, 4, 2, 5, 2, 5, 3, 6, 3, 6});
  vl_tensor_release(c);
  /* promotion int32 + float64 -> float64; empty [0] skipped */
  vl_tensor *i = vl_arange(0, 3, 1, VL_INT32), *f = vl_arange(10, 12, 1, VL_FLOAT64);
  vl_tensor *e = vl_empty(1, (int64_t[]){0}, VL_FLOAT32);
  vl_tensor *x2 = vl_view(i, 2, (int64_t[]){1, 3});
  vl_tensor *f2 = vl_view(f, 2, (int64_t[]){1, 2});
  const vl_tensor *t3[3] = {x2, e, f2};
  c = vl_cat(3, t3, 1);
  assert_non_null(c);
  assert_int_equal(c->dtype, VL_FLOAT64);
  expect_values(c, 5, (double[]){0, 1, 2, 10, 11});
  vl_tensor_release(c);
  /* 0-d cannot be concatenated */
  vl_tensor *s = vl_scalar(1, VL_FLOAT32);
  const vl_tensor *t4[1] = {s};
  assert_null(vl_cat(1, t4, 0));
  expect_error(VL_ESHAPE, "0-d");
  /* stack */
  const vl_tensor *t5[2] = {x, x};
  vl_tensor *st = vl_stack(2, t5, 1);
  expect_shape(st, 3, (int64_t[]){2, 2, 3});
  expect_values(st, 12, (double[]){1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6});
  vl_tensor_release(st);
  assert_null(vl_stack(2, ts, 0));
  expect_error(VL_ESHAPE, "stack");
  vl_tensor *objs[] = {x, y, xt, i, f, e, x2, f2, s};
  for (size_t k = 0; k < sizeof objs / sizeof *objs; k++) vl_tensor_release(objs[k]);
}

/* ---- split / chunk ---------------------------------------------- */

static void release_pieces(vl_tensor **ps, int n) {
  for (int i = 0; i < n; i++) vl_tensor_release(ps[i]);
  free(ps);
}

static void test_split_chunk(void **state) {
  (void)state;
  vl_tensor *x = vl_arange(0, 10, 1, VL_FLOAT32);
  vl_tensor **ps;
  int n;
  assert_int_equal(vl_split(x, 4, 0, &ps, &n), VL_OK);
  assert_int_equal(n, 3);
  assert_int_equal(ps[2]->shape[0], 2);
  assert_true(vl_shares_storage(ps[1], x));
  assert_true(at(ps[1], 0) == 4);
  release_pieces(ps, n);
  assert_int_equal(vl_split_sizes(x, 3, (int64_t[]){1, 6, 3}, 0, &ps, &n), VL_OK);
  assert_int_equal(ps[1]->shape[0], 6);
  assert_true(at(ps[2], 0) == 7);
  release_pieces(ps, n);
  assert_int_not_equal(vl_split_sizes(x, 2, (int64_t[]){1, 6}, 0, &ps, &n), VL_OK);
  expect_error(VL_ESHAPE, "7");
  assert_null(ps);
  /* chunk: ceil(n/chunks) sized pieces; 6 in 4 chunks gives 3 of 2 */
  vl_tensor *y = vl_arange(0, 6, 1, VL_FLOAT32);
  assert_int_equal(vl_chunk(y, 4, 0, &ps, &n), VL_OK);
  assert_int_equal(n, 3);
  release_pieces(ps, n);
  assert_int_equal(vl_chunk(x, 3, -1, &ps, &n), VL_OK);
  assert_int_equal(n, 3);
  assert_int_equal(ps[0]->shape[0], 4);
  assert_int_equal(ps[2]->shape[0], 2);
  release_pieces(ps, n);
  vl_tensor *e = vl_empty(1, (int64_t[]){0}, VL_FLOAT32);
  assert_int_equal(vl_chunk(e, 3, 0, &ps, &n), VL_OK);
  assert_int_equal(n, 3);
  release_pieces(ps, n);
  assert_int_not_equal(vl_chunk(x, 0, 0, &ps, &n), VL_OK);
  expect_error(VL_EARG, "chunk");
  assert_int_not_equal(vl_split(x, 0, 0, &ps, &n), VL_OK);
  vl_tensor_release(x);
  vl_tensor_release(y);
  vl_tensor_release(e);
}

/* ---- gather / scatter ------------------------------------------- */

static void test_gather_scatter(void **state) {
  (void)state;
  int64_t s23[2] = {2, 3};
  float a[6] = {1, 2, 3, 4, 5, 6};
  vl_tensor *x = make_f32(2, s23, a);
  vl_tensor *ix = make_i64(2, (int64_t[]){2, 2}, (int64_t[]){2, 0, 1, 1});
  vl_tensor *g = vl_gather(x, 1, ix);
  expect_shape(g, 2, (int64_t[]){2, 2});
  expect_values(g, 4, (double[]){3, 1, 5, 5});
  vl_tensor_release(g);
  /* out of range is an error, never a wild read */
  vl_tensor *bad = make_i64(2, (int64_t[]){2, 2}, (int64_t[]){0, 3, 1, 1});
  assert_null(vl_gather(x, 1, bad));
  expect_error(VL_EINDEX, "index 3");
  /* float index */
  vl_tensor *fi = vl_zeros(2, (int64_t[]){2, 2}, VL_FLOAT32);
  assert_null(vl_gather(x, 1, fi));
  expect_error(VL_EDTYPE, "int64");
  /* scatter_: bad index leaves the destination untouched */
  vl_tensor *z = vl_zeros(2, s23, VL_FLOAT32);
  vl_tensor *src = make_f32(2, (int64_t[]){2, 2}, (float[]){10, 20, 30, 40});
  assert_int_not_equal(vl_scatter_(z, 1, bad, src), VL_OK);
  expect_values(z, 6, (double[]){0, 0, 0, 0, 0, 0});
  assert_int_equal(vl_scatter_(z, 1, ix, src), VL_OK);
  expect_values(z, 6, (double[]){20, 0, 10, 0, 40, 0}); /* repeated index 1: last write wins */
  /* scatter_add_ accumulates repeats; int64 beyond 2^53 stays exact */
  vl_tensor *acc = vl_zeros(1, (int64_t[]){2}, VL_INT64);
  vl_tensor *i1 = make_i64(1, (int64_t[]){3}, (int64_t[]){1, 1, 0});
  int64_t big = (INT64_C(1) << 53) + 1;
  vl_tensor *sv = make_i64(1, (int64_t[]){3}, (int64_t[]){big, 1, 7});
  assert_int_equal(vl_scatter_add_(acc, 0, i1, sv), VL_OK);
  assert_true(at_i(acc, 1) == big + 1);
  assert_true(at_i(acc, 0) == 7);
  /* int32 index works too */
  vl_tensor *i32 = vl_to_dtype(ix, VL_INT32);
  g = vl_gather(x, 1, i32);
  expect_values(g, 4, (double[]){3, 1, 5, 5});
  vl_tensor_release(g);
  /* expanded destination refused */
  vl_tensor *one = vl_zeros(1, (int64_t[]){1}, VL_FLOAT32);
  vl_tensor *ex = vl_expand(one, 1, (int64_t[]){3});
  assert_int_not_equal(vl_scatter_(ex, 0, i1, src), VL_OK);
  vl_tensor *objs[] = {x, ix, bad, fi, z, src, acc, i1, sv, i32, one, ex};
  for (size_t k = 0; k < sizeof objs / sizeof *objs; k++) vl_tensor_release(objs[k]);
}

static void test_scatter_scalar(void **state) {
  (void)state;
  vl_tensor *x = vl_zeros(2, (int64_t[]){2, 3}, VL_FLOAT32);
  vl_tensor *ix = make_i64(2, (int64_t[]){1, 3}, (int64_t[]){1, 0, 1});
  vl_tensor *five = vl_scalar(5, VL_FLOAT32);
  vl_tensor *sc = vl_scatter(x, 0, ix, five);
  assert_non_null(sc);
  expect_values(sc, 6, (double[]){0, 5, 0, 5, 0, 5});
  expect_values(x, 6, (double[]){0, 0, 0, 0, 0, 0}); /* out of place */
  vl_tensor_release(sc);
  vl_tensor_release(x);
  vl_tensor_release(ix);
  vl_tensor_release(five);
}

/* ---- index_select / masked_select / nonzero --------------------- */

static void test_select(void **state) {
  (void)state;
  int64_t s23[2] = {2, 3};
  vl_tensor *x = make_f32(2, s23, (float[]){1, 2, 3, 4, 5, 6});
  vl_tensor *xt = vl_transpose(x, 0, 1); /* [[1,4],[2,5],[3,6]] */
  vl_tensor *ix = make_i64(1, (int64_t[]){4}, (int64_t[]){2, 0, 2, 1});
  vl_tensor *r = vl_index_select(xt, 0, ix);
  expect_shape(r, 2, (int64_t[]){4, 2});
  expect_values(r, 8, (double[]){3, 6, 1, 4, 3, 6, 2, 5});
  vl_tensor_release(r);
  r = vl_index_select(x, 1, ix);
  expect_values(r, 8, (double[]){3, 1, 3, 2, 6, 4, 6, 5});
  vl_tensor_release(r);
  vl_tensor *i2 = make_i64(1, (int64_t[]){1}, (int64_t[]){2});
  assert_null(vl_index_select(x, 0, i2));
  expect_error(VL_EINDEX, "index 2");
  /* masked_select broadcasts a row mask */
  vl_tensor *m = vl_zeros(1, (int64_t[]){3}, VL_BOOL);
  int64_t k0 = 0, k2 = 2;
  vl_set(m, &k0, 1);
  vl_set(m, &k2, 1);
  r = vl_masked_select(x, m);
  expect_shape(r, 1, (int64_t[]){4});
  expect_values(r, 4, (double[]){1, 3, 4, 6});
  vl_tensor_release(r);
  vl_tensor *m4 = vl_zeros(1, (int64_t[]){4}, VL_BOOL);
  assert_null(vl_masked_select(x, m4));
  expect_error(VL_ESHAPE, "masked_select");
  assert_null(vl_masked_select(x, x));
  expect_error(VL_EDTYPE, "bool");
  /* nonzero */
  vl_tensor *nz_in = make_f32(2, s23, (float[]){0, 1, 0, NAN, 0, -2});
  r = vl_nonzero(nz_in);
  expect_shape(r, 2, (int64_t[]){3, 2});
  expect_values(r, 6, (double[]){0, 1, 1, 0, 1, 2});
  vl_tensor_release(r);
  vl_tensor *zz = vl_zeros(2, s23, VL_FLOAT16);
  r = vl_nonzero(zz);
  expect_shape(r, 2, (int64_t[]){0, 2});
  vl_tensor_release(r);
  vl_tensor *objs[] = {x, xt, ix, i2, m, m4, nz_in, zz};
  for (size_t k = 0; k < sizeof objs / sizeof *objs; k++) vl_tensor_release(objs[k]);
}

/* ---- sort / topk ------------------------------------------------- */

static void test_sort(void **state) {
  (void)state;
  vl_tensor *x = make_f32(1, (int64_t[]){7}, (float[]){3, NAN, 1, 3, -INFINITY, 1, NAN});
  vl_tensor *v, *ix;
  assert_int_equal(vl_sort(x, 0, false, &v, &ix), VL_OK);
  expect_values(v, 7, (double[]){-INFINITY, 1, 1, 3, 3, NAN, NAN});
  expect_values(ix, 7, (double[]){4, 2, 5, 0, 3, 1, 6}); /* stable */
  assert_int_equal(ix->dtype, VL_INT64);
  vl_tensor_release(v);
  vl_tensor_release(ix);
  assert_int_equal(vl_sort(x, 0, true, &v, &ix), VL_OK);
  expect_values(v, 7, (double[]){NAN, NAN, 3, 3, 1, 1, -INFINITY});
  expect_values(ix, 7, (double[]){1, 6, 0, 3, 2, 5, 4});
  vl_tensor_release(v);
  vl_tensor_release(ix);
  /* int64 keys beyond 2^53 compare exactly */
  int64_t b = INT64_C(1) << 60;
  vl_tensor *y = make_i64(1, (int64_t[]){3}, (int64_t[]){b + 1, b, b + 2});
  assert_int_equal(vl_sort(y, 0, false, &v, &ix), VL_OK);
  assert_true(at_i(v, 0) == b && at_i(v, 2) == b + 2);
  expect_values(ix, 3, (double[]){1, 0, 2});
  vl_tensor_release(v);
  vl_tensor_release(ix);
  /* along dim 0 of a 2-D tensor */
  vl_tensor *m = make_f32(2, (int64_t[]){2, 3}, (float[]){5, 1, 2, 4, 6, 0});
  assert_int_equal(vl_sort(m, 0, false, &v, &ix), VL_OK);
  expect_values(v, 6, (double[]){4, 1, 0, 5, 6, 2});
  expect_values(ix, 6, (double[]){1, 0, 1, 0, 1, 0});
  vl_tensor_release(v);
  vl_tensor_release(ix);
  /* topk */
  assert_int_equal(vl_topk(m, 2, 1, true, true, &v, &ix), VL_OK);
  expect_shape(v, 2, (int64_t[]){2, 2});
  expect_values(v, 4, (double[]){5, 2, 6, 4});
  expect_values(ix, 4, (double[]){0, 2, 1, 0});
  vl_tensor_release(v);
  vl_tensor_release(ix);
  assert_int_equal(vl_topk(m, 1, 1, false, true, &v, &ix), VL_OK);
  expect_values(v, 2, (double[]){1, 0});
  vl_tensor_release(v);
  vl_tensor_release(ix);
  assert_int_not_equal(vl_topk(m, 4, 1, true, true, &v, &ix), VL_OK);
  expect_error(VL_EARG, "topk");
  assert_null(v);
  vl_tensor_release(x);
  vl_tensor_release(y);
  vl_tensor_release(m);
}

/* Many slices, big enough for the parallel path; checked by brute force. */
static void test_sort_parallel(void **state) {
  (void)state;
  int64_t R = 2000, C = 37;
  vl_tensor *x = vl_empty(2, (int64_t[]){R, C}, VL_FLOAT64);
  double *p = vl_data_ptr(x);
  uint64_t s = 12345;
  for (int64_t i = 0; i < R * C; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    p[i] = (double)((s >> 33) % 50); /* many ties */
  }
  vl_tensor *xt = vl_transpose(x, 0, 1); /* sort along dim 0 of a strided view */
  vl_tensor *v, *ix;
  assert_int_equal(vl_sort(xt, 0, false, &v, &ix), VL_OK);
  for (int64_t c = 0; c < R; c += 97) {
    for (int64_t j = 0; j < C; j++) {
      int64_t k = at_i(ix, j * R + c);
      assert_true(at(v, j * R + c) == p[c * C + k]);
      if (j > 0) {
        double a = at(v, (j - 1) * R + c), b = at(v, j * R + c);
        assert_true(a <= b);
        if (a == b) assert_true(at_i(ix, (j - 1) * R + c) < k);
      }
    }
  }
  vl_tensor_release(v);
  vl_tensor_release(ix);
  vl_tensor_release(xt);
  vl_tensor_release(x);
}

/* One long slice: merges run across threads; -0.0 equals +0.0 (stable). */
static void test_sort_one_slice(void **state) {
  (void)state;
  int64_t n = 100000;
  vl_tensor *x = vl_empty(1, &n, VL_FLOAT32);
  float *p = vl_data_ptr(x);
  uint64_t s = 99;
  for (int64_t i = 0; i < n; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    p[i] = (float)((int64_t)((s >> 33) % 21) - 10);
  }
  p[5] = -0.0f;
  p[7] = 0.0f;
  p[9] = -0.0f;
  p[11] = NAN;
  for (int desc = 0; desc < 2; desc++) {
    vl_tensor *v, *ix;
    assert_int_equal(vl_sort(x, 0, desc, &v, &ix), VL_OK);
    const float *vp = vl_data_ptr(v);
    const int64_t *ip = vl_data_ptr(ix);
    if (desc) assert_true(isnan(vp[0]) && ip[0] == 11);
    else assert_true(isnan(vp[n - 1]) && ip[n - 1] == 11);
    int64_t last_zero = -1;
    for (int64_t j = 0; j < n; j++) {
      if (isnan(vp[j])) continue;
      assert_true(vp[j] == p[ip[j]]);
      if (j > 0 && !isnan(vp[j - 1])) {
        assert_true(desc ? vp[j - 1] >= vp[j] : vp[j - 1] <= vp[j]);
        if (vp[j - 1] == vp[j]) assert_true(ip[j - 1] < ip[j]);
      }
      if (vp[j] == 0 && last_zero < 0) last_zero = j;
    }
    /* the first zeros keep index order: 5 (-0.0), 7, 9 (-0.0) among them */
    assert_true(last_zero >= 0);
    assert_true(signbit(vp[last_zero]) == signbit(p[ip[last_zero]]));
    vl_tensor_release(v);
    vl_tensor_release(ix);
  }
  vl_tensor_release(x);
}

/* ---- flip / roll / repeat / tril / triu --------------------------- */

static void test_shuffles(void **state) {
  (void)state;
  int64_t s23[2] = {2, 3};
  vl_tensor *x = make_f32(2, s23, (float[]){1, 2, 3, 4, 5, 6});
  vl_tensor *r = vl_flip(x, 1, (int[]){1});
  expect_values(r, 6, (double[]){3, 2, 1, 6, 5, 4});
  vl_tensor_release(r);
  r = vl_flip(x, 2, (int[]){0, -1});
  expect_values(r, 6, (double[]){6, 5, 4, 3, 2, 1});
  vl_tensor_release(r);
  assert_null(vl_flip(x, 2, (int[]){1, 1}));
  expect_error(VL_EARG, "flip");
  r = vl_roll(x, 1, (int64_t[]){1}, NULL);
  expect_values(r, 6, (double[]){6, 1, 2, 3, 4, 5});
  vl_tensor_release(r);
  r = vl_roll(x, 2, (int64_t[]){-1, 4}, (int[]){1, 0});
  expect_values(r, 6, (double[]){2, 3, 1, 5, 6, 4});
  vl_tensor_release(r);
  vl_tensor *xt = vl_transpose(x, 0, 1);
  r = vl_roll(xt, 1, (int64_t[]){1}, NULL); /* flattened [1,4,2,5,3,6] */
  expect_values(r, 6, (double[]){6, 1, 4, 2, 5, 3});
  vl_tensor_release(r);
  r = vl_repeat(x, 3, (int64_t[]){2, 1, 2});
  expect_shape(r, 3, (int64_t[]){2, 2, 6});
  {
    double w[24] = {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6};
    memcpy(w + 12, w, 12 * sizeof *w);
    expect_values(r, 24, w);
  }
  vl_tensor_release(r);
  r = vl_repeat(xt, 2, (int64_t[]){1, 2});
  expect_values(r, 12, (double[]){1, 4, 1, 4, 2, 5, 2, 5, 3, 6, 3, 6});
  vl_tensor_release(r);
  assert_null(vl_repeat(x, 1, (int64_t[]){2}));
  expect_error(VL_EARG, "repeat");
  vl_tensor *o = vl_ones(2, (int64_t[]){3, 4}, VL_INT32);
  r = vl_tril(o, 0);
  expect_values(r, 12, (double[]){1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0});
  vl_tensor_release(r);
  r = vl_triu(o, 1);
  expect_values(r, 12, (double[]){0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1});
  vl_tensor_release(r);
  r = vl_triu(o, INT64_MIN);
  expect_values(r, 12, (double[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  vl_tensor_release(r);
  r = vl_tril(o, INT64_MIN);
  expect_values(r, 12, (double[]){0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  vl_tensor_release(r);
  vl_tensor *v1 = vl_arange(0, 3, 1, VL_FLOAT32);
  assert_null(vl_tril(v1, 0));
  expect_error(VL_ESHAPE, "tril");
  vl_tensor *objs[] = {x, xt, o, v1};
  for (size_t k = 0; k < sizeof objs / sizeof *objs; k++) vl_tensor_release(objs[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cat),          cmocka_unit_test(test_split_chunk), cmocka_unit_test(test_gather_scatter),
      cmocka_unit_test(test_scatter_scalar), cmocka_unit_test(test_select),    cmocka_unit_test(test_sort),
      cmocka_unit_test(test_sort_parallel), cmocka_unit_test(test_sort_one_slice), cmocka_unit_test(test_shuffles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
