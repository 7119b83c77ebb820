/*
** test_elementwise.c — ops/elementwise.c from C (no Lua).
**
** References: double-precision libm (exp, tanh, erfc, ...) for the float32
** kernels, exact integer arithmetic written out here for the integer
** paths, and a plain per-element loop through vl_get for broadcasting and
** strided layouts.
*/
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vl.h"
/* vl_expf: the scalar float32 exp the kernels of ops/elementwise.c
   vectorise (they may use FMA where this build of it does not). */
#include "vl_internal.h"

#define EXP_POINTS 1000000
#define EXP_MAX_REL 3e-7

static vl_tensor *vec_f32(int64_t n, const float *v) {
  vl_tensor *t = vl_empty(1, &n, VL_FLOAT32);
  assert_non_null(t);
  memcpy(vl_data_ptr(t), v, (size_t)n * sizeof *v);
  return t;
}

static float f32_at(const vl_tensor *t, int64_t i) { return ((const float *)vl_data_ptr(t))[i]; }

/* |got - want| within rel * |want| (or exactly equal: inf, 0). */
static int close_rel(double got, double want, double rel) {
  if (isnan(want)) return isnan(got);
  if (got == want) return 1;
  return fabs(got - want) <= rel * fabs(want);
}

/* ---- the vectorised expf ------------------------------------------ */

static void test_expf_accuracy(void **state) {
  (void)state;
  int64_t n = EXP_POINTS;
  float *x = malloc((size_t)n * sizeof *x);
  assert_non_null(x);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(-100.0 + 200.0 * (double)i / (double)(n - 1));
  vl_tensor *t = vec_f32(n, x);
  vl_tensor *e = vl_unary(VL_EXP, t);
  assert_non_null(e);
  double max_rel = 0;
  int64_t checked_normal = 0;
  for (int64_t i = 0; i < n; i++) {
    double want = exp((double)x[i]);
    float got = f32_at(e, i);
    if (want > FLT_MAX) {
      /* past the largest float: inf, unless rounding brings it back */
      if ((float)want == INFINITY) assert_true(isinf(got) && got > 0);
    } else if (want >= FLT_MIN) {
      double rel = fabs((double)got - want) / want;
      if (rel > max_rel) max_rel = rel;
      checked_normal++;
    } else {
      /* subnormal results: within one subnormal step of the truth */
      assert_true(fabs((double)got - want) <= ldexp(1.0, -149));
    }
  }
  print_message("expf: max relative error %.3g over %lld normal results\n", max_rel, (long long)checked_normal);
  assert_true(checked_normal > n / 2);
  assert_true(max_rel < EXP_MAX_REL);
  vl_tensor_release(e);
  vl_tensor_release(t);
  free(x);
}

static void test_expf_edges(void **state) {
  (void)state;
  const float in[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 88.72f, 88.73f, -87.33f, -103.0f, -104.0f,
                      -1000.0f, 1000.0f, 1.0f, -1.0f, 1e-30f};
  int64_t n = sizeof in / sizeof in[0];
  vl_tensor *t = vec_f32(n, in);
  vl_tensor *e = vl_unary(VL_EXP, t);
  assert_non_null(e);
  assert_true(f32_at(e, 0) == 1.0f);
  assert_true(f32_at(e, 1) == 1.0f);
  assert_true(isinf(f32_at(e, 2)) && f32_at(e, 2) > 0);
  assert_true(f32_at(e, 3) == 0.0f);
  assert_true(isnan(f32_at(e, 4)));
  assert_true(isfinite(f32_at(e, 5)) && close_rel(f32_at(e, 5), exp((double)88.72f), 3e-7)); /* FLT_MAX region */
  assert_true(isinf(f32_at(e, 6)));
  assert_true(close_rel(f32_at(e, 7), exp((double)-87.33f), 3e-7));
  assert_true(f32_at(e, 8) > 0 && fabs(f32_at(e, 8) - exp(-103.0)) <= ldexp(1.0, -149)); /* subnormal */
  assert_true(f32_at(e, 9) == 0.0f);
  assert_true(f32_at(e, 10) == 0.0f);
  assert_true(isinf(f32_at(e, 11)));
  assert_true(close_rel(f32_at(e, 12), exp(1.0), 3e-7));
  assert_true(close_rel(f32_at(e, 13), exp(-1.0), 3e-7));
  assert_true(f32_at(e, 14) == 1.0f);
  /* the scalar build of the same code (no FMA) agrees to an ulp */
  for (int64_t i = 0; i < n; i++) {
    float s = vl_expf(in[i]), v = f32_at(e, i);
    if (isnan(v)) assert_true(isnan(s));
    else assert_true(s == v || fabs((double)s - v) <= 2.4e-7 * fabs((double)v) || fabs((double)s - v) <= ldexp(1.0, -149));
  }
  vl_tensor_release(e);
  vl_tensor_release(t);
}

/* ---- float32 transcendental kernels against double references ---- */

static double ref_unary(vl_unop op, double x) {
  switch (op) {
    case VL_TANH: return tanh(x);
    case VL_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case VL_SILU: return x / (1.0 + exp(-x));
    case VL_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    case VL_GELU_TANH: {
      double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
      return x / (1.0 + exp(-2.0 * u));
    }
    default: return NAN;
  }
}

static void test_f32_transcendentals(void **state) {
  (void)state;
  const vl_unop ops[] = {VL_TANH, VL_SIGMOID, VL_SILU, VL_GELU, VL_GELU_TANH};
  int64_t n = 200001;
  float *x = malloc((size_t)n * sizeof *x);
  assert_non_null(x);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(-20.0 + 40.0 * (double)i / (double)(n - 1));
  vl_tensor *t = vec_f32(n, x);
  for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
    vl_tensor *r = vl_unary(ops[k], t);
    assert_non_null(r);
    double max_err = 0;
    for (int64_t i = 0; i < n; i++) {
      double want = ref_unary(ops[k], x[i]);
      /* relative where the result is not tiny; in the far negative tail
         (|result| < 1e-3) float32 rounding of the argument alone moves
         the result by ~|x| ulps, so the error is measured against 1e-3 */
      double err = fabs(f32_at(r, i) - want) / fmax(fabs(want), 1e-3);
      if (err > max_err) max_err = err;
    }
    print_message("%s: max relative error %.3g\n", vl_unop_name(ops[k]), max_err);
    assert_true(max_err < 1e-6);
    vl_tensor_release(r);
  }
  vl_tensor_release(t);
  free(x);
}

/* ---- broadcasting and strided layouts against a per-element loop --- */

/* out[idx] == a[idx'] op b[idx''] for every output index (NumPy rules). */
static void check_binary_ref(vl_binop op, const vl_tensor *a, const vl_tensor *b, const vl_tensor *out) {
  int nd = out->ndim;
  int64_t n = vl_numel(out);
  int64_t idx[VL_MAX_DIMS] = {0}, ia[VL_MAX_DIMS], ib[VL_MAX_DIMS];
  for (int64_t k = 0; k < n; k++) {
    int64_t r = k;
    for (int d = nd - 1; d >= 0; d--) {
      idx[d] = r % out->shape[d];
      r /= out->shape[d];
    }
    for (int d = 0; d < a->ndim; d++) ia[d] = a->shape[d] == 1 ? 0 : idx[d + nd - a->ndim];
    for (int d = 0; d < b->ndim; d++) ib[d] = b->shape[d] == 1 ? 0 : idx[d + nd - b->ndim];
    double x, y, got;
    assert_int_equal(vl_get(a, ia, &x), VL_OK);
    assert_int_equal(vl_get(b, ib, &y), VL_OK);
    assert_int_equal(vl_get(out, idx, &got), VL_OK);
    double want;
    switch (op) {
      case VL_ADD: want = x + y; break;
      case VL_SUB: want = x - y; break;
      case VL_MUL: want = x * y; break;
      case VL_LT: want = x < y; break;
      default: want = NAN; break;
    }
    if (out->dtype == VL_FLOAT32) want = (float)want;
    if (got != want) fail_msg("element %lld: got %g, want %g (x=%g y=%g)", (long long)k, got, want, x, y);
  }
}

static vl_tensor *ramp(int ndim, const int64_t *shape, vl_dtype dt, double start) {
  vl_tensor *t = vl_empty(ndim, shape, dt);
  assert_non_null(t);
  int64_t n = vl_numel(t);
  vl_tensor *flat = vl_arange(start, start + (double)n, 1, dt);
  assert_non_null(flat);
  vl_tensor *v = vl_view(flat, ndim, shape);
  assert_non_null(v);
  assert_int_equal(vl_copy_(t, v), VL_OK);
  vl_tensor_release(v);
  vl_tensor_release(flat);
  return t;
}

static void test_broadcast_shapes(void **state) {
  (void)state;
  struct {
    int na;
    int64_t sa[3];
    int nb;
    int64_t sb[3];
  } cases[] = {
      {2, {3, 1}, 2, {1, 4}}, {3, {2, 3, 4}, 1, {4}}, {0, {0}, 2, {2, 3}},   {2, {5, 7}, 2, {5, 1}},
      {1, {7}, 1, {1}},       {3, {2, 1, 4}, 2, {3, 1}}, {2, {0, 3}, 1, {3}}, {2, {300, 257}, 1, {257}},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    vl_tensor *a = ramp(cases[k].na, cases[k].sa, VL_FLOAT32, -5);
    vl_tensor *b = ramp(cases[k].nb, cases[k].sb, VL_FLOAT32, 0.5);
    vl_binop ops[] = {VL_ADD, VL_SUB, VL_MUL, VL_LT};
    for (int o = 0; o < 4; o++) {
      vl_tensor *r = vl_binary(ops[o], a, b);
      assert_non_null(r);
      check_binary_ref(ops[o], a, b, r);
      vl_tensor *r2 = vl_binary(ops[o], b, a); /* scalar/row on the left */
      assert_non_null(r2);
      check_binary_ref(ops[o], b, a, r2);
      vl_tensor_release(r);
      vl_tensor_release(r2);
    }
    vl_tensor_release(a);
    vl_tensor_release(b);
  }
}

/* Big enough to run on several threads, with rows that end inside a
   thread's range, and strided inputs. */
static void test_strided_parallel(void **state) {
  (void)state;
  int64_t shape[2] = {513, 301};
  vl_tensor *m = ramp(2, shape, VL_FLOAT32, -1000);
  vl_tensor *mt = vl_transpose(m, 0, 1); /* [301, 513] strided */
  int64_t rs[2] = {301, 1};
  vl_tensor *col = ramp(2, rs, VL_FLOAT32, 3); /* [301, 1] */
  vl_tensor *r = vl_binary(VL_ADD, mt, col);
  assert_non_null(r);
  check_binary_ref(VL_ADD, mt, col, r);
  /* expanded input, narrowed input with an offset */
  int64_t es[2] = {301, 513};
  int64_t one[1] = {513};
  vl_tensor *row = ramp(1, one, VL_FLOAT32, 7);
  vl_tensor *ex = vl_expand(row, 2, es);
  vl_tensor *nar = vl_narrow(m, 1, 5, 200); /* [513, 200], offset 5 */
  vl_tensor *r2 = vl_binary(VL_MUL, ex, mt);
  assert_non_null(r2);
  check_binary_ref(VL_MUL, ex, mt, r2);
  vl_tensor *r3 = vl_binary(VL_SUB, nar, nar);
  assert_non_null(r3);
  check_binary_ref(VL_SUB, nar, nar, r3);
  /* float64 and int64 the same way */
  vl_tensor *md = vl_to_dtype(mt, VL_FLOAT64), *ci = vl_to_dtype(col, VL_INT64);
  vl_tensor *r4 = vl_binary(VL_ADD, md, ci);
  assert_non_null(r4);
  assert_int_equal(r4->dtype, VL_FLOAT64);
  check_binary_ref(VL_ADD, md, ci, r4);
  vl_tensor *mi = vl_to_dtype(mt, VL_INT64);
  vl_tensor *r5 = vl_binary(VL_MUL, mi, ci);
  assert_non_null(r5);
  assert_int_equal(r5->dtype, VL_INT64);
  check_binary_ref(VL_MUL, mi, ci, r5);
  vl_tensor *ts[] = {m, mt, col, r, row, ex, nar, r2, r3, md, ci, r4, mi, r5};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) vl_tensor_release(ts[k]);
}

/* ---- integer paths ------------------------------------------------ */

static vl_tensor *vec_i64(int64_t n, const int64_t *v) {
  vl_tensor *t = vl_empty(1, &n, VL_INT64);
  assert_non_null(t);
  memcpy(vl_data_ptr(t), v, (size_t)n * sizeof *v);
  return t;
}

static int64_t i64_at(const vl_tensor *t, int64_t i) { return ((const int64_t *)vl_data_ptr(t))[i]; }

static void test_int64_exact(void **state) {
  (void)state;
  const int64_t big = ((int64_t)1 << 62) + 1; /* not a double */
  int64_t av[] = {big, -7, 7, -7, 7, INT64_MAX, 3};
  int64_t bv[] = {2, 3, -3, -3, 3, 1, 4};
  vl_tensor *a = vec_i64(7, av), *b = vec_i64(7, bv);
  vl_tensor *s = vl_binary(VL_ADD, a, b);
  assert_non_null(s);
  assert_int_equal(s->dtype, VL_INT64);
  assert_true(i64_at(s, 0) == big + 2);
  assert_true(i64_at(s, 5) == INT64_MIN); /* wraps like PyTorch */
  vl_tensor *r = vl_binary(VL_REMAINDER, a, b);
  assert_non_null(r);
  const int64_t rem_want[] = {1, 2, -2, -1, 1, 0, 3}; /* Python's % */
  for (int i = 1; i < 7; i++) assert_true(i64_at(r, i) == rem_want[i]);
  assert_true(i64_at(r, 0) == 1);
  vl_tensor *p = vl_binary(VL_POW, a, b);
  assert_non_null(p);
  assert_int_equal(p->dtype, VL_INT64);
  assert_true(i64_at(p, 1) == -343 && i64_at(p, 4) == 343 && i64_at(p, 6) == 81);
  assert_true(i64_at(p, 2) == 0); /* 7 ** -3 truncates */
  vl_tensor *d = vl_binary(VL_DIV, a, b);
  assert_non_null(d);
  assert_int_equal(d->dtype, VL_FLOAT32);
  assert_true(f32_at(d, 1) == (float)(-7.0 / 3.0));
  vl_tensor *m = vl_binary(VL_MAXIMUM, a, b);
  assert_true(i64_at(m, 0) == big);
  vl_tensor *eq = vl_binary(VL_EQ, a, a);
  assert_int_equal(eq->dtype, VL_BOOL);
  /* integer division by zero: true division gives inf, remainder errors */
  int64_t zv[] = {0, 1, 0, 1, 1, 1, 1};
  vl_tensor *z = vec_i64(7, zv);
  vl_tensor *dz = vl_binary(VL_DIV, a, z);
  assert_non_null(dz);
  assert_true(isinf(f32_at(dz, 0)) && f32_at(dz, 0) > 0);
  assert_null(vl_binary(VL_REMAINDER, a, z));
  assert_non_null(strstr(vl_last_error(), "remainder"));
  assert_non_null(strstr(vl_last_error(), "zero"));
  vl_tensor *ts[] = {a, b, s, r, p, d, m, eq, z, dz};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) vl_tensor_release(ts[k]);
}

static void test_small_int_dtypes(void **state) {
  (void)state;
  int64_t n = 4;
  vl_tensor *u = vl_empty(1, &n, VL_UINT8);
  uint8_t *pu = vl_data_ptr(u);
  pu[0] = 250, pu[1] = 3, pu[2] = 0, pu[3] = 128;
  vl_tensor *ten = vl_scalar(10, VL_UINT8);
  vl_tensor *s = vl_binary(VL_ADD, u, ten);
  assert_int_equal(s->dtype, VL_UINT8);
  assert_int_equal(((uint8_t *)vl_data_ptr(s))[0], 4); /* 260 wraps */
  vl_tensor *neg = vl_unary(VL_NEG, u);
  assert_int_equal(neg->dtype, VL_UINT8);
  assert_int_equal(((uint8_t *)vl_data_ptr(neg))[1], 253);
  vl_tensor *i32 = vl_to_dtype(u, VL_INT32);
  vl_tensor *sq = vl_unary(VL_SQUARE, i32);
  assert_int_equal(sq->dtype, VL_INT32);
  assert_int_equal(((int32_t *)vl_data_ptr(sq))[0], 62500);
  vl_tensor *ex = vl_unary(VL_EXP, i32);
  assert_int_equal(ex->dtype, VL_FLOAT32);
  assert_true(close_rel(f32_at(ex, 1), exp(3.0), 1e-6));
  vl_tensor *bl = vl_to_dtype(u, VL_BOOL);
  vl_tensor *nt = vl_unary(VL_LOGICAL_NOT, bl);
  assert_int_equal(nt->dtype, VL_BOOL);
  assert_int_equal(((uint8_t *)vl_data_ptr(nt))[2], 1);
  assert_int_equal(((uint8_t *)vl_data_ptr(nt))[0], 0);
  assert_null(vl_unary(VL_NEG, bl));
  assert_non_null(strstr(vl_last_error(), "neg"));
  assert_null(vl_binary(VL_SUB, bl, bl));
  assert_non_null(strstr(vl_last_error(), "bool"));
  vl_tensor *h = vl_to_dtype(u, VL_FLOAT16);
  vl_tensor *hs = vl_binary(VL_MUL, h, h);
  assert_int_equal(hs->dtype, VL_FLOAT16);
  double v;
  int64_t i1 = 1;
  assert_int_equal(vl_get(hs, &i1, &v), VL_OK);
  assert_true(v == 9.0);
  vl_tensor *ts[] = {u, ten, s, neg, i32, sq, ex, bl, nt, h, hs};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) vl_tensor_release(ts[k]);
}

/* ---- in place, out, overlap -------------------------------------- */

static void test_inplace(void **state) {
  (void)state;
  int64_t shape[2] = {3, 4};
  vl_tensor *a = ramp(2, shape, VL_FLOAT32, 0);
  int64_t four = 4;
  vl_tensor *row = ramp(1, &four, VL_FLOAT32, 100);
  assert_int_equal(vl_binary_(VL_ADD, a, row), VL_OK);
  assert_true(f32_at(a, 5) == 5 + 101);
  /* b broadcasting to a bigger shape than a: error naming both shapes */
  assert_int_not_equal(vl_binary_(VL_ADD, row, a), VL_OK);
  assert_non_null(strstr(vl_last_error(), "add_"));
  assert_non_null(strstr(vl_last_error(), "[3,4]"));
  assert_non_null(strstr(vl_last_error(), "[4]"));
  /* writing into an expanded view is refused */
  vl_tensor *ex = vl_expand(row, 2, shape);
  assert_int_not_equal(vl_binary_(VL_MUL, ex, a), VL_OK);
  assert_non_null(strstr(vl_last_error(), "expanded"));
  /* overlap: a[1:] += a[:-1] reads the old values */
  int64_t six = 6;
  vl_tensor *v = ramp(1, &six, VL_FLOAT32, 1); /* 1..6 */
  vl_tensor *hi = vl_narrow(v, 0, 1, 5), *lo = vl_narrow(v, 0, 0, 5);
  assert_int_equal(vl_binary_(VL_ADD, hi, lo), VL_OK);
  const float want[] = {1, 3, 5, 7, 9, 11};
  for (int i = 0; i < 6; i++) assert_true(f32_at(v, i) == want[i]);
  /* in place on a transposed view, result converted to a's dtype */
  vl_tensor *ai = vl_to_dtype(a, VL_INT64);
  vl_tensor *at = vl_transpose(ai, 0, 1);
  vl_tensor *half = vl_scalar(0.5, VL_FLOAT32);
  assert_int_equal(vl_binary_(VL_MUL, at, half), VL_OK);
  assert_int_equal(ai->dtype, VL_INT64);
  assert_true(i64_at(ai, 5) == 53); /* (5 + 101) * 0.5 */
  assert_int_equal(vl_unary_(VL_NEG, at), VL_OK);
  assert_true(i64_at(ai, 5) == -53);
  /* binary_out with a mismatched out shape */
  vl_tensor *out = vl_empty(1, &four, VL_FLOAT32);
  assert_int_not_equal(vl_binary_out(VL_ADD, out, a, row), VL_OK);
  assert_non_null(strstr(vl_last_error(), "out"));
  assert_int_equal(vl_binary_out(VL_ADD, out, row, row), VL_OK);
  assert_true(f32_at(out, 3) == 206);
  vl_tensor *ts[] = {a, row, ex, v, hi, lo, ai, at, half, out};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) vl_tensor_release(ts[k]);
}

/* ---- clamp, where, masked_fill, names ----------------------------- */

static void test_clamp_where_fill(void **state) {
  (void)state;
  const float xv[] = {-3, -1, 0, 1, 3, NAN};
  vl_tensor *x = vec_f32(6, xv);
  vl_tensor *c = vl_clamp(x, -1.5, NAN);
  assert_true(f32_at(c, 0) == -1.5f && f32_at(c, 4) == 3 && isnan(f32_at(c, 5)));
  vl_tensor *c2 = vl_clamp(x, NAN, 0.5);
  assert_true(f32_at(c2, 0) == -3 && f32_at(c2, 4) == 0.5f);
  vl_tensor *xi = vl_arange(-3, 3, 1, VL_INT64);
  assert_int_equal(vl_clamp_(xi, -1.5, 1.5), VL_OK);
  assert_true(i64_at(xi, 0) == -1 && i64_at(xi, 5) == 1);
  vl_tensor *zero = vl_scalar(0, VL_FLOAT32);
  vl_tensor *mask = vl_binary(VL_GT, x, zero);
  assert_int_equal(mask->dtype, VL_BOOL);
  vl_tensor *w = vl_where(mask, x, zero);
  assert_true(f32_at(w, 0) == 0 && f32_at(w, 4) == 3);
  assert_null(vl_where(x, x, x));
  assert_non_null(strstr(vl_last_error(), "where"));
  vl_tensor *mf = vl_masked_fill(x, mask, -9);
  assert_true(f32_at(mf, 3) == -9 && f32_at(mf, 0) == -3);
  assert_int_not_equal(vl_masked_fill_(x, x, 1), VL_OK);
  assert_non_null(strstr(vl_last_error(), "mask"));
  int64_t two_six[2] = {2, 6};
  vl_tensor *m2 = vl_zeros(2, two_six, VL_BOOL);
  assert_int_not_equal(vl_masked_fill_(x, m2, 1), VL_OK); /* mask bigger than the tensor */
  assert_non_null(strstr(vl_last_error(), "[2,6]"));
  assert_string_equal(vl_unop_name(VL_GELU_TANH), "gelu_tanh");
  assert_string_equal(vl_binop_name(VL_LOGICAL_XOR), "logical_xor");
  vl_tensor *ts[] = {x, c, c2, xi, mask, w, mf, zero, m2};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) vl_tensor_release(ts[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_expf_accuracy),    cmocka_unit_test(test_expf_edges),
      cmocka_unit_test(test_f32_transcendentals), cmocka_unit_test(test_broadcast_shapes),
      cmocka_unit_test(test_strided_parallel), cmocka_unit_test(test_int64_exact),
      cmocka_unit_test(test_small_int_dtypes), cmocka_unit_test(test_inplace),
      cmocka_unit_test(test_clamp_where_fill),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
