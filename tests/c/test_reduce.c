/*
** test_reduce.c — ops/reduce.c and ops/argmax.c from C (no Lua): accuracy of large float32
** sums against double references, softmax against its closed form, the
** float32 exp used by softmax (vl_expf, vl_internal.h) against libm,
** errors, and determinism across thread counts.
*/
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vl.h"
#include "vl_internal.h" /* vl_expf */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define BIG_N (16 * 1024 * 1024) /* 16M float32 values, 64 MB */

static uint64_t lcg_state = 88172645463325252ull;
static double lcg_uniform(void) { /* [0, 1) */
  lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(lcg_state >> 11) * (1.0 / 9007199254740992.0);
}

static double item(const vl_tensor *t) {
  int64_t idx[VL_MAX_DIMS] = {0};
  double v = NAN;
  assert_int_equal(vl_get(t, idx, &v), VL_OK);
  return v;
}

static void test_sum_16m_float32(void **state) {
  (void)state;
  int64_t n = BIG_N;
  vl_tensor *x = vl_empty(1, &n, VL_FLOAT32);
  assert_non_null(x);
  float *p = vl_data_ptr(x);
  double ref = 0, comp = 0; /* Kahan-summed double reference */
  for (int64_t i = 0; i < n; i++) {
    p[i] = (float)(lcg_uniform() + 0.5);
    double y = (double)p[i] - comp, t = ref + y;
    comp = (t - ref) - y;
    ref = t;
  }
  /* a naive float32 running sum is off by far more than this */
  float naive = 0;
  for (int64_t i = 0; i < n; i++) naive += p[i];
  assert_true(fabs(naive - ref) / ref > 1e-5); /* ~3.6e-5 */

  vl_tensor *s = vl_reduce(VL_SUM, x, 0, NULL, false);
  assert_non_null(s);
  assert_int_equal(s->ndim, 0);
  assert_int_equal(s->dtype, VL_FLOAT32);
  assert_true(fabs(item(s) - ref) / ref < 1e-7); /* float32 rounding of the result only */
  vl_tensor *m = vl_reduce(VL_MEAN, x, 0, NULL, false);
  assert_true(fabs(item(m) - ref / (double)n) / (ref / (double)n) < 1e-7);

  /* rows of a [16, 1M] view and columns of a [1M, 16] view */
  int64_t shp[2] = {16, n / 16};
  vl_tensor *v = vl_view(x, 2, shp);
  int dim1 = 1;
  vl_tensor *rows = vl_reduce(VL_SUM, v, 1, &dim1, false);
  double tot = 0;
  for (int64_t r = 0; r < 16; r++) {
    int64_t idx[1] = {r};
    double got;
    vl_get(rows, idx, &got);
    double want = 0;
    for (int64_t i = 0; i < n / 16; i++) want += p[r * (n / 16) + i];
    assert_true(fabs(got - want) / want < 1e-7);
    tot += got;
  }
  assert_true(fabs(tot - ref) / ref < 1e-6);
  int64_t shc[2] = {n / 16, 16};
  vl_tensor *w = vl_view(x, 2, shc);
  int dim0 = 0;
  vl_tensor *cols = vl_reduce(VL_SUM, w, 1, &dim0, false);
  for (int64_t c = 0; c < 16; c++) {
    int64_t idx[1] = {c};
    double got, want = 0;
    vl_get(cols, idx, &got);
    for (int64_t i = 0; i < n / 16; i++) want += p[i * 16 + c];
    assert_true(fabs(got - want) / want < 1e-7);
  }

  /* same bits for every thread count */
  int threads = vl_get_num_threads();
  vl_set_num_threads(1);
  vl_tensor *s1 = vl_reduce(VL_SUM, x, 0, NULL, false);
  vl_tensor *c1 = vl_reduce(VL_SUM, w, 1, &dim0, false);
  vl_set_num_threads(threads);
  assert_true(item(s1) == item(s));
  assert_memory_equal(vl_data_ptr(c1), vl_data_ptr(cols), 16 * sizeof(float));

  vl_tensor *all[] = {x, s, m, v, rows, w, cols, s1, c1};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) vl_tensor_release(all[i]);
}

/* softmax(x)_j = w_j / sum w for x_j = c + log w_j, whatever c is. */
static void test_softmax_closed_form(void **state) {
  (void)state;
  const int64_t rows = 300, cols = 97;
  int64_t sh[2] = {rows, cols};
  vl_dtype dts[2] = {VL_FLOAT32, VL_FLOAT64};
  for (int k = 0; k < 2; k++) {
    vl_tensor *x = vl_empty(2, sh, dts[k]);
    double wsum = 0;
    for (int64_t j = 0; j < cols; j++) wsum += (double)(j + 1);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < cols; j++) {
        int64_t idx[2] = {r, j};
        double c = (double)(r % 7) * 300.0 - 900.0; /* offsets up to +-900: exp would overflow */
        vl_set(x, idx, c + log((double)(j + 1)));
      }
    vl_tensor *y = vl_softmax(x, -1);
    vl_tensor *ly = vl_log_softmax(x, 1);
    assert_non_null(y);
    assert_non_null(ly);
    double tol = dts[k] == VL_FLOAT32 ? 2e-4 : 1e-9; /* float32 inputs near 900 hold ~6e-5 absolute */
    for (int64_t r = 0; r < rows; r++) {
      double s = 0;
      for (int64_t j = 0; j < cols; j++) {
        int64_t idx[2] = {r, j};
        double got, lgot, want = (double)(j + 1) / wsum;
        vl_get(y, idx, &got);
        vl_get(ly, idx, &lgot);
        assert_true(fabs(got - want) <= tol * want);
        assert_true(fabs(lgot - log(want)) <= tol);
        s += got;
      }
      assert_true(fabs(s - 1) < 1e-5);
    }
    /* along dim 0 of the transpose: same numbers */
    vl_tensor *xt = vl_transpose(x, 0, 1);
    vl_tensor *yt = vl_softmax(xt, 0);
    for (int64_t r = 0; r < rows; r += 37)
      for (int64_t j = 0; j < cols; j += 11) {
        int64_t a[2] = {r, j}, b[2] = {j, r};
        double u, v;
        vl_get(y, a, &u);
        vl_get(yt, b, &v);
        assert_true(fabs(u - v) <= 1e-6 * u);
      }
    vl_tensor_release(x);
    vl_tensor_release(y);
    vl_tensor_release(ly);
    vl_tensor_release(xt);
    vl_tensor_release(yt);
  }
}

/* float32 softmax: terms whose exp is below FLT_MIN are 0 (not
   subnormal), terms just above it are accurate, NaN poisons its row. */
static void test_softmax_tiny_terms(void **state) {
  (void)state;
  int64_t sh[2] = {3, 4};
  vl_tensor *x = vl_empty(2, sh, VL_FLOAT32);
  float *p = vl_data_ptr(x);
  const float v[12] = {0, -80, -90, -1000, 5, 5 - 87.0f, 5 - 87.5f, -INFINITY, 1, NAN, 0, 2};
  memcpy(p, v, sizeof v);
  vl_tensor *xt = vl_transpose(x, 0, 1);
  vl_tensor *xtc = vl_contiguous(xt); /* [4, 3]: softmax over dim 0 takes the column path */
  for (int dim = 0; dim < 2; dim++) {
    vl_tensor *y = dim ? vl_softmax(xtc, 0) : vl_softmax(x, 1);
    assert_non_null(y);
    for (int64_t r = 0; r < 3; r++)
      for (int64_t j = 0; j < 4; j++) {
        int64_t idx[2] = {dim ? j : r, dim ? r : j};
        double got;
        vl_get(y, idx, &got);
        double xv = v[r * 4 + j], m = r == 0 ? 0 : 5;
        double den = r == 0 ? 1 + exp(-80.0) : 1 + exp((double)(5 - 87.0f) - 5);
        double want = exp(xv - m) / den;
        if (r == 2) {
          assert_true(isnan(got));
        } else if (want < FLT_MIN) {
          assert_true(got == 0); /* -90, -1000, -87.5 below the max, -inf */
        } else {
          assert_true(fabs(got - want) <= 1e-6 * want);
        }
      }
    vl_tensor_release(y);
  }
  vl_tensor_release(xt);
  vl_tensor_release(xtc);
  vl_tensor_release(x);
}

static void test_vl_expf(void **state) {
  (void)state;
  double worst = 0;
  for (int i = 0; i <= 200000; i++) {
    float x = -86.0f + 174.7f * (float)i / 200000.0f;
    double want = exp((double)x), got = vl_expf(x);
    double rel = fabs(got - want) / want;
    if (rel > worst) worst = rel;
  }
  assert_true(worst < 5e-7);
  assert_true(vl_expf(0.0f) == 1.0f);
  assert_true(vl_expf(-INFINITY) == 0.0f);
  /* subnormal results down to exp(-103.97), then 0 */
  assert_true(vl_expf(-100.0f) > 0 && fabs(vl_expf(-100.0f) - exp(-100.0)) <= ldexp(1.0, -149));
  assert_true(vl_expf(-104.0f) == 0.0f);
  assert_true(isinf(vl_expf(89.0f)));
  assert_true(isinf(vl_expf(INFINITY)));
  assert_true(isnan(vl_expf(NAN)));
  assert_true(isfinite(vl_expf(88.7f)));
}

static void test_var_large_offset(void **state) {
  (void)state;
  int64_t n = 100001;
  vl_tensor *x = vl_empty(1, &n, VL_FLOAT64);
  double *p = vl_data_ptr(x);
  for (int64_t i = 0; i < n; i++) p[i] = 1e9 + (double)(i % 2); /* var = 1/4 * n/(n-1) (about) */
  vl_tensor *v = vl_var(x, 0, NULL, 0, false);
  double ones = (double)(n / 2), mean = ones / (double)n;
  double want = mean * (1 - mean);
  assert_true(fabs(item(v) - want) < 1e-9);
  vl_tensor *s = vl_std(x, 0, NULL, 1, false);
  assert_true(fabs(item(s) - sqrt(want * (double)n / (double)(n - 1))) < 1e-9);
  vl_tensor_release(x);
  vl_tensor_release(v);
  vl_tensor_release(s);
}

static void test_int_wrap_and_indices(void **state) {
  (void)state;
  int64_t n = 3;
  vl_tensor *x = vl_empty(1, &n, VL_INT64);
  int64_t *p = vl_data_ptr(x);
  p[0] = INT64_MAX;
  p[1] = 1;
  p[2] = 5;
  vl_tensor *s = vl_reduce(VL_SUM, x, 0, NULL, false);
  int64_t idx0[1] = {0}, got;
  assert_int_equal(vl_get_int(s, idx0, &got), VL_OK);
  assert_true(got == INT64_MIN + 5); /* wraps like PyTorch, no UB */
  vl_tensor *pr = vl_reduce(VL_PROD, x, 0, NULL, false);
  vl_get_int(pr, idx0, &got);
  assert_true(got == (int64_t)((uint64_t)INT64_MAX * 5u));
  vl_tensor *mx = vl_reduce(VL_AMAX, x, 0, NULL, false);
  vl_get_int(mx, idx0, &got);
  assert_true(got == INT64_MAX); /* exact past 2^53 */

  /* NaN wins max/argmax with its first index */
  int64_t m = 6;
  vl_tensor *f = vl_empty(1, &m, VL_FLOAT32);
  float *q = vl_data_ptr(f);
  float vals[6] = {1, 9, NAN, 9, NAN, 2};
  memcpy(q, vals, sizeof vals);
  vl_tensor *am = vl_argmax(f, VL_ALL_DIMS, false);
  vl_get_int(am, idx0, &got);
  assert_int_equal(got, 2);
  vl_tensor *vals_t = NULL, *ind_t = NULL;
  assert_int_equal(vl_min_dim(f, 0, false, &vals_t, &ind_t), VL_OK);
  vl_get_int(ind_t, idx0, &got);
  assert_int_equal(got, 2);
  assert_true(isnan(item(vals_t)));
  q[2] = q[4] = 0;
  vl_tensor *am2 = vl_argmax(f, 0, false);
  vl_get_int(am2, idx0, &got);
  assert_int_equal(got, 1); /* first of the tied 9s */

  vl_tensor *all[] = {x, s, pr, mx, f, am, vals_t, ind_t, am2};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) vl_tensor_release(all[i]);
}

/* ---- fast float32 paths against plain loops ------------------------- */

/* What max/min/argmax/argmin must give for a run of n floats (stride st):
   the first NaN if there is one, else the extreme and its first index. */
static int64_t ref_argext(const float *x, int64_t n, int64_t st, bool ismax, float *val) {
  int64_t bi = 0;
  for (int64_t i = 0; i < n; i++) {
    float v = x[i * st], b = x[bi * st];
    if (v != v) {
      bi = i;
      break;
    }
    if (ismax ? v > b : v < b) bi = i;
  }
  *val = x[bi * st];
  return bi;
}

/* Fill row r of length n with a pattern picked by r: random values, ties,
   all -inf / +inf, NaNs in the first block / in the vector part / in the
   scalar tail, signed zeros. */
static void fill_row(float *x, int64_t n, int64_t r) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(lcg_uniform() * 200.0 - 100.0);
  switch (r % 8) {
    case 1: for (int64_t i = 0; i < n; i++) x[i] = (float)(i % 5); break; /* ties: first 4 wins */
    case 2: for (int64_t i = 0; i < n; i++) x[i] = (r & 8) ? INFINITY : -INFINITY; break;
    case 3: x[0] = NAN; break;
    case 4: x[n / 2] = NAN; x[n - 1] = NAN; break;
    case 5: x[n - 1] = NAN; break; /* in the scalar tail for most n */
    case 6: for (int64_t i = 0; i < n; i++) x[i] = (i & 1) ? -0.0f : 0.0f; break;
    case 7: x[(r * 7) % n] = 1e30f; x[(r * 3) % n] = -1e30f; break;
    default: break;
  }
}

static void test_f32_ext_paths(void **state) {
  (void)state;
  /* lengths around the vector steps (16, 32) and the row chunk (16384) */
  const int64_t lens[] = {1, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 1000, 16385, 40000};
  const int64_t rows = 24;
  for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
    int64_t n = lens[li];
    for (int layout = 0; layout < 2; layout++) {
      /* layout 0: [rows, n] reduced over dim 1 (rows path);
         layout 1: [n, rows] reduced over dim 0 (column path) */
      int64_t sh[2] = {layout ? n : rows, layout ? rows : n};
      vl_tensor *x = vl_empty(2, sh, VL_FLOAT32);
      float *p = vl_data_ptr(x);
      float *row = malloc((size_t)n * sizeof *row);
      assert_non_null(row);
      for (int64_t r = 0; r < rows; r++) {
        fill_row(row, n, r);
        for (int64_t i = 0; i < n; i++) p[layout ? i * rows + r : r * n + i] = row[i];
      }
      int d = layout ? 0 : 1;
      for (int ismax = 0; ismax < 2; ismax++) {
        vl_tensor *v = vl_reduce(ismax ? VL_AMAX : VL_AMIN, x, 1, &d, false);
        vl_tensor *a = ismax ? vl_argmax(x, d, false) : vl_argmin(x, d, false);
        vl_tensor *mv = NULL, *mi = NULL;
        assert_int_equal((ismax ? vl_max_dim : vl_min_dim)(x, d, false, &mv, &mi), VL_OK);
        assert_non_null(v);
        assert_non_null(a);
        const float *vp = vl_data_ptr(v), *mvp = vl_data_ptr(mv);
        const int64_t *ap = vl_data_ptr(a), *mip = vl_data_ptr(mi);
        for (int64_t r = 0; r < rows; r++) {
          float want;
          int64_t wi = ref_argext(p + (layout ? r : r * n), n, layout ? rows : 1, ismax != 0, &want);
          if (want != want) {
            assert_true(isnan(vp[r]) && isnan(mvp[r]));
          } else {
            assert_true(vp[r] == want && mvp[r] == want);
          }
          if (ap[r] != wi) print_message("n %lld layout %d row %lld: %lld, want %lld\n", (long long)n, layout,
                                         (long long)r, (long long)ap[r], (long long)wi);
          assert_int_equal(ap[r], wi);
          assert_int_equal(mip[r], wi);
        }
        vl_tensor_release(v);
        vl_tensor_release(a);
        vl_tensor_release(mv);
        vl_tensor_release(mi);
      }
      free(row);
      vl_tensor_release(x);
    }
  }
}

/* Sums down the columns keep each column's order of additions (rows in
   turn, in double), whatever the blocking: the same bits as a plain loop. */
static void test_column_sums_exact(void **state) {
  (void)state;
  const int64_t R = 333, I = 2000;
  int64_t sh[2] = {R, I};
  vl_tensor *x = vl_empty(2, sh, VL_FLOAT32);
  float *p = vl_data_ptr(x);
  /* +-2^40 in the first and last rows around values in [-1, 1]: the
     double sums round (by 2^-12) and the big terms cancel, so any other
     order of additions shows in the float result */
  for (int64_t i = 0; i < R * I; i++) p[i] = (float)(lcg_uniform() * 2.0 - 1.0);
  for (int64_t i = 0; i < I; i++) {
    p[i] = (float)ldexp(1.0 + lcg_uniform(), 40);
    p[(R - 1) * I + i] = -p[i];
  }
  p[5 * I + 7] = NAN;
  int d0 = 0;
  vl_tensor *s = vl_reduce(VL_SUM, x, 1, &d0, false);
  vl_tensor *n2 = vl_norm(x, 2.0, 1, &d0, false);
  vl_tensor *mx = vl_reduce(VL_AMAX, x, 1, &d0, false);
  assert_non_null(s);
  assert_non_null(n2);
  assert_non_null(mx);
  const float *sp = vl_data_ptr(s), *np2 = vl_data_ptr(n2), *mp = vl_data_ptr(mx);
  for (int64_t i = 0; i < I; i++) {
    double a = 0, q = 0;
    float m = -INFINITY;
    for (int64_t r = 0; r < R; r++) {
      float v = p[r * I + i];
      a += v;
      q += (double)v * v;
      m = (v > m || v != v) && m == m ? v : m;
    }
    if (i == 7) {
      assert_true(isnan(sp[i]) && isnan(np2[i]) && isnan(mp[i]));
      continue;
    }
    assert_true(sp[i] == (float)a);
    assert_true(np2[i] == (float)sqrt(q));
    assert_true(mp[i] == m);
  }
  vl_tensor_release(x);
  vl_tensor_release(s);
  vl_tensor_release(n2);
  vl_tensor_release(mx);
}

/* Every split of the work depends on the shape only: the same bits for
   1, 2, 3 and 4 threads, on the row path, the chunked row path, the column
   path and the column path that splits the reduced dim. */
static void test_thread_count_independent(void **state) {
  (void)state;
  const int64_t shapes[][2] = {{4096, 64}, {3, 100000}, {700, 3000}, {64, 4096}};
  int threads = vl_get_num_threads();
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    int64_t sh[2] = {shapes[k][0], shapes[k][1]}, n = sh[0] * sh[1];
    vl_tensor *x = vl_empty(2, sh, VL_FLOAT32);
    float *p = vl_data_ptr(x);
    for (int64_t i = 0; i < n; i++) p[i] = (float)(lcg_uniform() * 10.0 - 5.0);
    vl_tensor *ref[2][5] = {{NULL}};
    for (int nt = 1; nt <= 4; nt++) {
      vl_set_num_threads(nt);
      for (int d = 0; d < 2; d++) {
        vl_tensor *got[5] = {vl_reduce(VL_SUM, x, 1, &d, false), vl_var(x, 1, &d, 1, false),
                             vl_reduce(VL_AMAX, x, 1, &d, false), vl_argmin(x, d, false), vl_softmax(x, d)};
        for (int j = 0; j < 5; j++) {
          assert_non_null(got[j]);
          if (nt == 1) {
            ref[d][j] = got[j];
            continue;
          }
          size_t bytes = (size_t)vl_numel(got[j]) * vl_dtype_size(got[j]->dtype);
          assert_memory_equal(vl_data_ptr(got[j]), vl_data_ptr(ref[d][j]), bytes);
          vl_tensor_release(got[j]);
        }
      }
    }
    vl_set_num_threads(threads);
    for (int d = 0; d < 2; d++)
      for (int j = 0; j < 5; j++) vl_tensor_release(ref[d][j]);
    vl_tensor_release(x);
  }
}

static void test_errors(void **state) {
  (void)state;
  int64_t sh[2] = {2, 3}, she[2] = {0, 3};
  vl_tensor *x = vl_zeros(2, sh, VL_FLOAT32);
  vl_tensor *e = vl_zeros(2, she, VL_FLOAT32);
  int bad = 2, dup[2] = {0, -2};
  assert_null(vl_reduce(VL_SUM, x, 1, &bad, false));
  assert_non_null(strstr(vl_last_error(), "sum: dim 2 out of range"));
  assert_null(vl_reduce(VL_MEAN, x, 2, dup, false));
  assert_non_null(strstr(vl_last_error(), "mean: dim -2 appears twice"));
  assert_null(vl_reduce(VL_SUM, NULL, 0, NULL, false));
  assert_non_null(strstr(vl_last_error(), "sum: tensor is NULL"));
  assert_null(vl_reduce((vl_redop)99, x, 0, NULL, false));
  assert_non_null(strstr(vl_last_error(), "unknown reduction 99"));
  assert_null(vl_reduce(VL_AMAX, e, 0, NULL, false));
  assert_non_null(strstr(vl_last_error(), "amax: cannot take the maximum over a dim of size 0 (shape [0,3])"));
  vl_tensor *v = NULL, *i = NULL;
  int d0 = 0;
  assert_int_equal(vl_max_dim(e, 0, false, &v, &i), VL_EARG);
  assert_null(v);
  assert_null(i);
  assert_null(vl_var(x, 0, NULL, -1, false));
  assert_non_null(strstr(vl_last_error(), "var: correction -1"));
  assert_null(vl_norm(x, NAN, 0, NULL, false));
  assert_non_null(strstr(vl_last_error(), "norm: p must be a number"));
  vl_tensor *b = vl_zeros(2, sh, VL_BOOL);
  assert_null(vl_softmax(b, 1));
  assert_non_null(strstr(vl_last_error(), "softmax: bool tensors are not accepted"));
  assert_null(vl_cumsum(x, 5));
  assert_non_null(strstr(vl_last_error(), "cumsum: dim 5 out of range"));
  assert_int_equal(vl_max_dim(x, 0, false, NULL, &i), VL_EARG);
  /* empty over a non-empty dim: fine */
  vl_tensor *r = vl_reduce(VL_AMAX, e, 1, &(int){1}, false);
  assert_non_null(r);
  assert_int_equal(vl_numel(r), 0);
  vl_tensor *z = vl_reduce(VL_PROD, e, 1, &d0, true);
  assert_non_null(z);
  assert_int_equal(z->ndim, 2);
  assert_true(item(z) == 1.0);
  vl_tensor_release(x);
  vl_tensor_release(e);
  vl_tensor_release(b);
  vl_tensor_release(r);
  vl_tensor_release(z);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sum_16m_float32),  cmocka_unit_test(test_softmax_closed_form),
      cmocka_unit_test(test_softmax_tiny_terms), cmocka_unit_test(test_vl_expf),        cmocka_unit_test(test_var_large_offset),
      cmocka_unit_test(test_int_wrap_and_indices), cmocka_unit_test(test_f32_ext_paths),
      cmocka_unit_test(test_column_sums_exact),  cmocka_unit_test(test_thread_count_independent),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
