/*
** test_linalg.c — ops/linalg.c without Lua: products checked against a
** naive double-precision loop, BLAS layouts (a transposed operand must not
** be copied: vl_linalg_copy_count), integer/half paths, empty dims, and
** the error messages.
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

/* A contiguous tensor of a shape filled with a deterministic pattern in
   [-1, 1) (values exact in float16 too: multiples of 1/64). */
static vl_tensor *pattern(int ndim, const int64_t *shape, vl_dtype dt, unsigned seed) {
  vl_tensor *t = vl_empty(ndim, shape, vl_dtype_is_float(dt) ? VL_FLOAT64 : VL_INT64);
  assert_non_null(t);
  int64_t n = vl_numel(t);
  uint32_t s = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    int v = (int)((s >> 16) % 128) - 64;
    if (vl_dtype_is_float(dt))
      ((double *)vl_data_ptr(t))[i] = v / 64.0;
    else
      ((int64_t *)vl_data_ptr(t))[i] = v / 8;
  }
  vl_tensor *r = vl_to_dtype(t, dt);
  vl_tensor_release(t);
  assert_non_null(r);
  return r;
}

/* Element of t at the right-aligned, broadcast position of `index`
   (an index into a shape of `ndim` dims). */
static double at_bcast(const vl_tensor *t, int ndim, const int64_t *index) {
  int64_t idx[8] = {0};
  int lead = ndim - t->ndim;
  for (int d = 0; d < t->ndim; d++) idx[d] = t->shape[d] == 1 ? 0 : index[d + lead];
  double v;
  assert_int_equal(vl_get(t, idx, &v), VL_OK);
  return v;
}

/* Check r == a @ b for a, b of >= 2 dims (batch broadcast), naively. */
static void check_matmul(const vl_tensor *r, const vl_tensor *a, const vl_tensor *b, double tol) {
  int nd = r->ndim;
  int64_t K = a->shape[a->ndim - 1];
  int64_t n = vl_numel(r);
  int64_t idx[8];
  for (int64_t lin = 0; lin < n; lin++) {
    int64_t rem = lin;
    for (int d = nd - 1; d >= 0; d--) idx[d] = rem % r->shape[d], rem /= r->shape[d];
    double want = 0;
    int64_t ia[8], ib[8];
    memcpy(ia, idx, sizeof ia);
    memcpy(ib, idx, sizeof ib);
    for (int64_t k = 0; k < K; k++) {
      ia[nd - 1] = k;     /* a[..., i, k] */
      ib[nd - 2] = k;     /* b[..., k, j] */
      want += at_bcast(a, nd, ia) * at_bcast(b, nd, ib);
    }
    double got;
    assert_int_equal(vl_get(r, idx, &got), VL_OK);
    if (fabs(got - want) > tol * (1 + fabs(want))) {
      fail_msg("element %lld: got %.9g want %.9g", (long long)lin, got, want);
    }
  }
}

static void test_mm_closed_form(void **state) {
  (void)state;
  for (int k = 0; k < 2; k++) {
    vl_dtype dt = k ? VL_FLOAT64 : VL_FLOAT32;
    int64_t sa[2] = {2, 3}, sb[2] = {3, 2};
    vl_tensor *a = vl_arange(1, 7, 1, dt), *b = vl_arange(1, 7, 1, dt);
    vl_tensor *a2 = vl_view(a, 2, sa), *b2 = vl_view(b, 2, sb);
    vl_tensor *r = vl_mm(a2, b2);
    assert_non_null(r);
    assert_int_equal(r->dtype, dt);
    /* [[1,2,3],[4,5,6]] @ [[1,2],[3,4],[5,6]] = [[22,28],[49,64]] */
    double want[4] = {22, 28, 49, 64};
    for (int i = 0; i < 4; i++) {
      int64_t ix[2] = {i / 2, i % 2};
      double v;
      vl_get(r, ix, &v);
      assert_true(v == want[i]);
    }
    vl_tensor_release(a), vl_tensor_release(b), vl_tensor_release(a2), vl_tensor_release(b2);
    vl_tensor_release(r);
  }
}

/* A transposed operand, a column-narrowed one and a batch of transposed
   ones all reach BLAS without a copy. */
static void test_no_copy_for_transposes(void **state) {
  (void)state;
  int64_t s1[2] = {40, 30}, s2[2] = {40, 20};
  vl_tensor *a = pattern(2, s1, VL_FLOAT32, 1), *b = pattern(2, s2, VL_FLOAT32, 2);
  vl_tensor *at = vl_transpose(a, 0, 1); /* [30,40], strides [1,30] */
  size_t mem0 = vl_memory_in_use();
  int64_t c0 = vl_linalg_copy_count();
  vl_tensor *r = vl_mm(at, b);           /* [30,20] */
  assert_non_null(r);
  assert_int_equal(vl_linalg_copy_count(), c0);
  /* only the result was allocated */
  assert_int_equal(vl_memory_in_use() - mem0, 30 * 20 * sizeof(float));
  check_matmul(r, at, b, 1e-5);
  vl_tensor_release(r);

  /* both transposed: b^T @ a -> [20,30]... */
  vl_tensor *bt = vl_transpose(b, 0, 1);
  r = vl_mm(bt, a);
  assert_non_null(r);
  assert_int_equal(vl_linalg_copy_count(), c0);
  check_matmul(r, bt, a, 1e-5);
  vl_tensor_release(r);

  /* a column narrow keeps the row stride (leading dim 30 > 10) */
  vl_tensor *an = vl_narrow(a, 1, 5, 10);            /* [40,10] */
  vl_tensor *ant = vl_transpose(an, 0, 1);           /* [10,40] */
  r = vl_matmul(ant, b);
  assert_non_null(r);
  assert_int_equal(vl_linalg_copy_count(), c0);
  check_matmul(r, ant, b, 1e-5);
  vl_tensor_release(r);

  /* strided vectors go to gemv with their increment: [30,40] @ b[:,3] */
  vl_tensor *col = vl_select(b, 1, 3);               /* [40], stride 20 */
  r = vl_matmul(at, col);
  assert_non_null(r);
  assert_int_equal(vl_linalg_copy_count(), c0);
  for (int64_t i = 0; i < 30; i++) {
    double want = 0, x, y, got;
    for (int64_t k = 0; k < 40; k++) {
      int64_t ix[2] = {i, k};
      vl_get(at, ix, &x), vl_get(col, &k, &y);
      want += x * y;
    }
    vl_get(r, &i, &got);
    assert_true(fabs(got - want) < 1e-4);
  }
  vl_tensor_release(r);
  r = vl_matmul(col, a);                             /* [40] @ [40,30] */
  assert_non_null(r);
  assert_int_equal(vl_linalg_copy_count(), c0);
  vl_tensor_release(r);
  vl_tensor_release(col);

  /* an expanded operand (stride 0) must be copied, and still be right */
  int64_t s3[2] = {1, 30}, s4[2] = {40, 30};
  vl_tensor *row = pattern(2, s3, VL_FLOAT32, 3);
  vl_tensor *ex = vl_expand(row, 2, s4);             /* [40,30], strides [0,1] */
  vl_tensor *ext = vl_transpose(ex, 0, 1);           /* [30,40], strides [1,0] */
  r = vl_mm(ext, b);
  assert_non_null(r);
  assert_int_equal(vl_linalg_copy_count(), c0 + 1);
  check_matmul(r, ext, b, 1e-5);
  vl_tensor_release(r);

  /* batched transposes: [4,40,30] -> transpose(1,2) [4,30,40] @ [40,20] */
  int64_t s5[3] = {4, 40, 30};
  vl_tensor *a3 = pattern(3, s5, VL_FLOAT32, 4), *a3t = vl_transpose(a3, 1, 2);
  int64_t c1 = vl_linalg_copy_count();
  r = vl_matmul(a3t, b);
  assert_non_null(r);
  assert_int_equal(vl_linalg_copy_count(), c1);
  assert_int_equal(r->ndim, 3);
  check_matmul(r, a3t, b, 1e-5);
  vl_tensor_release(r);

  vl_tensor_release(a), vl_tensor_release(b), vl_tensor_release(at), vl_tensor_release(bt);
  vl_tensor_release(an), vl_tensor_release(ant), vl_tensor_release(row), vl_tensor_release(ex);
  vl_tensor_release(ext), vl_tensor_release(a3), vl_tensor_release(a3t);
}

static void test_batched_broadcast(void **state) {
  (void)state;
  struct {
    int na, nb;
    int64_t sa[4], sb[4];
    int nr;
    int64_t sr[4];
  } cases[] = {
      {4, 3, {2, 1, 3, 4}, {5, 4, 6}, 4, {2, 5, 3, 6}},
      {3, 3, {7, 3, 4}, {7, 4, 5}, 3, {7, 3, 5}},    /* bmm-like, split path */
      {3, 2, {6, 3, 4}, {4, 5}, 3, {6, 3, 5}},       /* folds into one GEMM */
      {2, 3, {3, 4}, {6, 4, 5}, 3, {6, 3, 5}},       /* a broadcast */
      {3, 3, {1, 3, 4}, {4, 4, 2}, 3, {4, 3, 2}},
      {4, 4, {2, 3, 1, 4}, {1, 3, 4, 1}, 4, {2, 3, 1, 1}},
  };
  vl_set_num_threads(2);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (int k = 0; k < 2; k++) {
      vl_dtype dt = k ? VL_FLOAT64 : VL_FLOAT32;
      vl_tensor *a = pattern(cases[c].na, cases[c].sa, dt, 10 + (unsigned)c);
      vl_tensor *b = pattern(cases[c].nb, cases[c].sb, dt, 20 + (unsigned)c);
      vl_tensor *r = vl_matmul(a, b);
      assert_non_null(r);
      assert_int_equal(r->ndim, cases[c].nr);
      for (int d = 0; d < r->ndim; d++) assert_int_equal(r->shape[d], cases[c].sr[d]);
      check_matmul(r, a, b, k ? 1e-12 : 1e-5);
      vl_tensor_release(a), vl_tensor_release(b), vl_tensor_release(r);
    }
  }
}

/* A batch big enough to be split over threads, with non-contiguous batch
   strides (a permuted [B,H,...] layout, as attention makes). */
static void test_attention_like(void **state) {
  (void)state;
  vl_set_num_threads(2);
  int64_t sq[4] = {2, 5, 3, 8};            /* [B, T, H, D] */
  vl_tensor *q = pattern(4, sq, VL_FLOAT32, 7), *k = pattern(4, sq, VL_FLOAT32, 8);
  int perm_q[4] = {0, 2, 1, 3}, perm_k[4] = {0, 2, 3, 1};
  vl_tensor *qh = vl_permute(q, perm_q);   /* [2,3,5,8] */
  vl_tensor *kh = vl_permute(k, perm_k);   /* [2,3,8,5] */
  int64_t c0 = vl_linalg_copy_count();
  vl_tensor *s = vl_matmul(qh, kh);        /* [2,3,5,5] */
  assert_non_null(s);
  assert_int_equal(vl_linalg_copy_count(), c0);
  check_matmul(s, qh, kh, 1e-5);
  vl_tensor_release(s);
  vl_tensor_release(q), vl_tensor_release(k), vl_tensor_release(qh), vl_tensor_release(kh);
}

static void test_vectors(void **state) {
  (void)state;
  int64_t s4[1] = {4}, s34[2] = {3, 4}, s43[2] = {4, 3}, s245[3] = {2, 4, 5};
  vl_tensor *v = pattern(1, s4, VL_FLOAT64, 1), *w = pattern(1, s4, VL_FLOAT64, 2);
  vl_tensor *m = pattern(2, s34, VL_FLOAT64, 3), *mt = pattern(2, s43, VL_FLOAT64, 4);
  vl_tensor *b3 = pattern(3, s245, VL_FLOAT64, 5);
  double want = 0, x, y;
  for (int64_t i = 0; i < 4; i++) {
    vl_get(v, &i, &x), vl_get(w, &i, &y);
    want += x * y;
  }
  vl_tensor *d = vl_dot(v, w), *d2 = vl_matmul(v, w);
  assert_non_null(d);
  assert_non_null(d2);
  assert_int_equal(d->ndim, 0);
  assert_int_equal(d2->ndim, 0);
  vl_get(d, NULL, &x), vl_get(d2, NULL, &y);
  assert_true(fabs(x - want) < 1e-12 && fabs(y - want) < 1e-12);

  vl_tensor *mv = vl_matmul(m, v);       /* [3] */
  assert_int_equal(mv->ndim, 1);
  assert_int_equal(mv->shape[0], 3);
  for (int64_t i = 0; i < 3; i++) {
    double acc = 0, a, b;
    for (int64_t k = 0; k < 4; k++) {
      int64_t ix[2] = {i, k};
      vl_get(m, ix, &a), vl_get(v, &k, &b);
      acc += a * b;
    }
    vl_get(mv, &i, &a);
    assert_true(fabs(a - acc) < 1e-12);
  }
  vl_tensor *vm = vl_matmul(v, mt);      /* [3] */
  assert_int_equal(vm->ndim, 1);
  assert_int_equal(vm->shape[0], 3);
  vl_tensor *vb = vl_matmul(v, b3);      /* [2,5] */
  assert_int_equal(vb->ndim, 2);
  assert_int_equal(vb->shape[0], 2);
  assert_int_equal(vb->shape[1], 5);
  vl_tensor *o = vl_outer(v, w);         /* [4,4] */
  assert_int_equal(o->ndim, 2);
  for (int64_t i = 0; i < 16; i++) {
    int64_t ix[2] = {i / 4, i % 4};
    double a, b, r;
    vl_get(v, &ix[0], &a), vl_get(w, &ix[1], &b), vl_get(o, ix, &r);
    assert_true(r == a * b);
  }
  vl_tensor *list[] = {v, w, m, mt, b3, d, d2, mv, vm, vb, o};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) vl_tensor_release(list[i]);
}

static void test_addmm(void **state) {
  (void)state;
  int64_t s23[2] = {2, 3}, s34[2] = {3, 4}, s4[1] = {4};
  vl_tensor *a = pattern(2, s23, VL_FLOAT64, 1), *b = pattern(2, s34, VL_FLOAT64, 2);
  vl_tensor *c = pattern(1, s4, VL_FLOAT64, 3);
  vl_tensor *ab = vl_mm(a, b), *r = vl_addmm(c, a, b, 0.5, 2.0);
  assert_non_null(r);
  for (int64_t i = 0; i < 8; i++) {
    int64_t ix[2] = {i / 4, i % 4};
    double x, y, z;
    vl_get(ab, ix, &x), vl_get(c, &ix[1], &y), vl_get(r, ix, &z);
    assert_true(fabs(z - (0.5 * y + 2 * x)) < 1e-12);
  }
  /* beta = 0 ignores c, NaNs included */
  vl_tensor *cn = vl_full(1, s4, NAN, VL_FLOAT64), *r0 = vl_addmm(cn, a, b, 0, 1);
  for (int64_t i = 0; i < 8; i++) {
    int64_t ix[2] = {i / 4, i % 4};
    double x, z;
    vl_get(ab, ix, &x), vl_get(r0, ix, &z);
    assert_true(z == x);
  }
  vl_tensor_release(a), vl_tensor_release(b), vl_tensor_release(c), vl_tensor_release(ab);
  vl_tensor_release(r), vl_tensor_release(cn), vl_tensor_release(r0);
}

static void test_integer_and_half(void **state) {
  (void)state;
  int64_t s23[2] = {2, 3}, s32[2] = {3, 2};
  vl_dtype ints[3] = {VL_INT64, VL_INT32, VL_UINT8};
  for (int k = 0; k < 3; k++) {
    vl_tensor *a0 = vl_arange(1, 7, 1, ints[k]), *a = vl_view(a0, 2, s23);
    vl_tensor *b0 = vl_arange(1, 7, 1, ints[k]), *b = vl_view(b0, 2, s32);
    vl_tensor *r = vl_matmul(a, b);
    assert_non_null(r);
    assert_int_equal(r->dtype, ints[k]);
    int64_t want[4] = {22, 28, 49, 64}, got;
    for (int i = 0; i < 4; i++) {
      int64_t ix[2] = {i / 2, i % 2};
      double v;
      vl_get(r, ix, &v);
      got = (int64_t)v;
      assert_int_equal(got, want[i]);
    }
    vl_tensor *at = vl_transpose(b, 0, 1); /* [2,3] strided */
    vl_tensor *r2 = vl_matmul(at, b);      /* [2,2]: b^T b */
    check_matmul(r2, at, b, 0);
    vl_tensor_release(a0), vl_tensor_release(a), vl_tensor_release(b0), vl_tensor_release(b);
    vl_tensor_release(r), vl_tensor_release(at), vl_tensor_release(r2);
  }
  /* int64 keeps all 64 bits; int32 wraps like PyTorch */
  int64_t s1[2] = {1, 1};
  vl_tensor *big = vl_full(2, s1, 3037000499.0, VL_INT64), *sq = vl_mm(big, big);
  int64_t ix[2] = {0, 0}, v;
  vl_get_int(sq, ix, &v);
  assert_true(v == (int64_t)3037000499 * 3037000499);
  vl_tensor *b32 = vl_full(2, s1, 65536, VL_INT32), *w32 = vl_mm(b32, b32);
  double dv;
  vl_get(w32, ix, &dv);
  assert_true(dv == 0); /* 2^32 mod 2^32 */
  vl_tensor_release(big), vl_tensor_release(sq), vl_tensor_release(b32), vl_tensor_release(w32);

  /* half types: computed in float32, rounded once */
  int64_t s58[2] = {5, 8}, s87[2] = {8, 7};
  vl_dtype halves[2] = {VL_FLOAT16, VL_BFLOAT16};
  for (int k = 0; k < 2; k++) {
    vl_tensor *a = pattern(2, s58, halves[k], 1), *b = pattern(2, s87, halves[k], 2);
    vl_tensor *r = vl_matmul(a, b);
    assert_non_null(r);
    assert_int_equal(r->dtype, halves[k]);
    check_matmul(r, a, b, k ? 1e-2 : 1e-3);
    vl_tensor_release(a), vl_tensor_release(b), vl_tensor_release(r);
  }
}

static void test_empty(void **state) {
  (void)state;
  int64_t s30[2] = {3, 0}, s04[2] = {0, 4}, s05[2] = {0, 5}, s53[2] = {5, 3};
  vl_dtype dts[3] = {VL_FLOAT32, VL_FLOAT64, VL_INT64};
  for (int k = 0; k < 3; k++) {
    vl_tensor *a = vl_ones(2, s30, dts[k]), *b = vl_ones(2, s04, dts[k]);
    vl_tensor *r = vl_mm(a, b); /* K = 0: zeros [3,4] */
    assert_non_null(r);
    assert_int_equal(r->shape[0], 3);
    assert_int_equal(r->shape[1], 4);
    for (int64_t i = 0; i < 12; i++) {
      int64_t ix[2] = {i / 4, i % 4};
      double v;
      vl_get(r, ix, &v);
      assert_true(v == 0);
    }
    vl_tensor *c = vl_ones(2, s05, dts[k]), *d = vl_ones(2, s53, dts[k]);
    vl_tensor *e = vl_mm(c, d); /* M = 0: [0,3] */
    assert_non_null(e);
    assert_int_equal(e->shape[0], 0);
    assert_int_equal(e->shape[1], 3);
    vl_tensor_release(a), vl_tensor_release(b), vl_tensor_release(r);
    vl_tensor_release(c), vl_tensor_release(d), vl_tensor_release(e);
  }
}

static void expect_error(vl_tensor *r, vl_status code, const char *msg) {
  assert_null(r);
  assert_int_equal(vl_last_status(), code);
  if (strstr(vl_last_error(), msg) == NULL) fail_msg("error '%s' lacks '%s'", vl_last_error(), msg);
}

static void test_errors(void **state) {
  (void)state;
  int64_t s23[2] = {2, 3}, s45[2] = {4, 5}, s3[1] = {3}, s4[1] = {4}, s234[3] = {2, 3, 4},
          s345[3] = {3, 4, 5}, s33[2] = {3, 3};
  vl_tensor *a = vl_ones(2, s23, VL_FLOAT32), *b = vl_ones(2, s45, VL_FLOAT32);
  vl_tensor *v3 = vl_ones(1, s3, VL_FLOAT32), *v4 = vl_ones(1, s4, VL_FLOAT32);
  vl_tensor *t3 = vl_ones(3, s234, VL_FLOAT32), *u3 = vl_ones(3, s345, VL_FLOAT32);
  vl_tensor *d = vl_ones(2, s45, VL_FLOAT64), *bo = vl_ones(2, s33, VL_BOOL);
  vl_tensor *z = vl_scalar(1, VL_FLOAT32), *c33 = vl_ones(2, s33, VL_FLOAT32);
  int64_t s54[2] = {5, 4}, s34[2] = {3, 4}, s11[2] = {1, 1};
  vl_tensor *f64 = vl_ones(2, s54, VL_FLOAT64), *b34 = vl_ones(2, s34, VL_FLOAT32);
  vl_tensor *c64 = vl_ones(2, s33, VL_FLOAT64), *i1 = vl_ones(2, s11, VL_INT64);
  size_t mem0 = vl_memory_in_use();
  expect_error(vl_matmul(a, b), VL_ESHAPE, "matmul: shapes [2,3] and [4,5] cannot be multiplied (3 ~= 4)");
  expect_error(vl_mm(a, b), VL_ESHAPE, "mm: shapes [2,3] and [4,5] cannot be multiplied (3 ~= 4)");
  expect_error(vl_matmul(v3, v4), VL_ESHAPE, "matmul: shapes [3] and [4] cannot be multiplied (3 ~= 4)");
  expect_error(vl_dot(v3, v4), VL_ESHAPE, "dot: shapes [3] and [4] cannot be multiplied (3 ~= 4)");
  expect_error(vl_matmul(z, a), VL_ESHAPE, "matmul: both arguments need at least 1 dim");
  expect_error(vl_mm(t3, a), VL_ESHAPE, "mm: expected 2-D tensors, got shapes [2,3,4] and [2,3]");
  expect_error(vl_bmm(a, a), VL_ESHAPE, "bmm: expected 3-D tensors");
  expect_error(vl_bmm(t3, u3), VL_ESHAPE, "bmm: batch sizes of shapes [2,3,4] and [3,4,5] differ (2 ~= 3)");
  expect_error(vl_matmul(t3, u3), VL_ESHAPE, "batch dims [2] and [3] do not broadcast");
  expect_error(vl_matmul(t3, d), VL_EDTYPE, "matmul: expected both tensors to have the same dtype, got float32 and float64");
  expect_error(vl_matmul(bo, bo), VL_EDTYPE, "matmul: bool tensors are not supported");
  expect_error(vl_outer(a, v3), VL_ESHAPE, "outer: expected 1-D tensors");
  expect_error(vl_dot(a, v3), VL_ESHAPE, "dot: expected 1-D tensors");
  expect_error(vl_addmm(c33, a, b34, 1, 1), VL_ESHAPE, "addmm: c of shape [3,3] does not broadcast to the result shape [2,4]");
  expect_error(vl_addmm(c64, a, b34, 1, 1), VL_EDTYPE, "addmm: expected c to have the dtype of a and b");
  expect_error(vl_addmm(i1, i1, i1, 0.5, 1), VL_EARG, "addmm: alpha and beta must be integers");
  expect_error(vl_matmul(NULL, a), VL_EARG, "matmul: tensor argument is NULL");
  expect_error(vl_matmul(f64, f64), VL_ESHAPE, "matmul: shapes [5,4] and [5,4] cannot be multiplied (4 ~= 5)");
  expect_error(vl_matmul(v4, a), VL_ESHAPE, "matmul: shapes [4] and [2,3] cannot be multiplied (4 ~= 2)");
  expect_error(vl_matmul(a, v4), VL_ESHAPE, "matmul: shapes [2,3] and [4] cannot be multiplied (3 ~= 4)");
  assert_int_equal(vl_memory_in_use(), mem0); /* nothing leaked on the error paths */
  vl_tensor *list[] = {a, b, v3, v4, t3, u3, d, bo, z, c33, f64, b34, c64, i1};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) vl_tensor_release(list[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mm_closed_form),   cmocka_unit_test(test_no_copy_for_transposes),
      cmocka_unit_test(test_batched_broadcast), cmocka_unit_test(test_attention_like),
      cmocka_unit_test(test_vectors),          cmocka_unit_test(test_addmm),
      cmocka_unit_test(test_integer_and_half), cmocka_unit_test(test_empty),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
