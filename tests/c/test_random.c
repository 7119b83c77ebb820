/*
** test_random.c — ops/random.c (Philox generator, fills) and ops/format.c
** through the C API only.
**
** References: the Philox4x32-10 known-answer vectors of the Random123
** distribution (kat_vectors); closed-form moments of U[0,1) and N(0,1)
** (5-sigma bounds with fixed seeds); a chi-square critical value
** (df = 10, upper tail 1e-6: 46.863); PyTorch's repr() for vl_format.
*/
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vl.h"

#define N_STAT 1000000      /* samples for the moment checks */
#define N_PAR 300000        /* big enough to run in parallel (> VL_PARALLEL_GRAIN) */
#define CHI2_DF10_P1E6 46.863  /* chi-square upper 1e-6 quantile, 10 degrees of freedom */

static vl_tensor *t1(int64_t n, vl_dtype dt) { return vl_zeros(1, &n, dt); }

static double get1(const vl_tensor *t, int64_t i) {
  double v = 0;
  assert_int_equal(vl_get(t, &i, &v), VL_OK);
  return v;
}

static bool same_bytes(const vl_tensor *a, const vl_tensor *b) {
  if (vl_numel(a) != vl_numel(b) || a->dtype != b->dtype) return false;
  return memcmp(vl_data_ptr(a), vl_data_ptr(b), (size_t)vl_numel(a) * vl_dtype_size(a->dtype)) == 0;
}

/* ---- Philox known answers --------------------------------------------- */

static void test_philox_kat(void **state) {
  (void)state;
  static const struct {
    uint32_t ctr[4], key[2], out[4];
  } kat[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (size_t k = 0; k < sizeof kat / sizeof kat[0]; k++) {
    uint32_t out[4];
    vl_philox4x32_10(kat[k].ctr, kat[k].key, out);
    for (int j = 0; j < 4; j++) assert_int_equal(out[j], kat[k].out[j]);
  }
}

/* rand's documented stream: element i of a float32 fill is word i%4 of
   the block at counter offset + i/4, key = seed, top 24 bits. */
static void test_stream_layout(void **state) {
  (void)state;
  uint64_t seed = 0x0123456789abcdefULL;
  vl_manual_seed(seed);
  int64_t n = 12;
  vl_tensor *r = vl_rand(1, &n, VL_FLOAT32);
  assert_non_null(r);
  const float *p = vl_data_ptr(r);
  for (int64_t i = 0; i < n; i++) {
    uint32_t ctr[4] = {(uint32_t)(i / 4), 0, 0, 0}, key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    vl_philox4x32_10(ctr, key, out);
    float want = (float)((out[i % 4] >> 8) * (1.0 / 16777216.0));
    assert_true(p[i] == want);
  }
  uint64_t s, off;
  vl_get_rng_state(&s, &off);
  assert_true(s == seed);
  assert_true(off == 3);  /* 12 floats = 3 blocks */
  vl_tensor_release(r);
}

/* ---- reproducibility ---------------------------------------------------- */

static void test_seed_reproducible(void **state) {
  (void)state;
  int64_t shape[2] = {100, 37};
  vl_dtype dts[] = {VL_FLOAT32, VL_FLOAT64, VL_FLOAT16, VL_BFLOAT16};
  for (size_t k = 0; k < 4; k++) {
    vl_manual_seed(42);
    assert_true(vl_initial_seed() == 42);
    vl_tensor *a = vl_rand(2, shape, dts[k]);
    vl_tensor *an = vl_randn(2, shape, dts[k]);
    vl_manual_seed(42);
    vl_tensor *b = vl_rand(2, shape, dts[k]);
    vl_tensor *bn = vl_randn(2, shape, dts[k]);
    vl_manual_seed(43);
    vl_tensor *c = vl_rand(2, shape, dts[k]);
    assert_true(same_bytes(a, b));
    assert_true(same_bytes(an, bn));
    assert_false(same_bytes(a, c));
    assert_false(same_bytes(a, an));
    vl_tensor_release(a);
    vl_tensor_release(an);
    vl_tensor_release(b);
    vl_tensor_release(bn);
    vl_tensor_release(c);
  }
  /* consecutive calls differ; a prefix of a longer fill is a shorter fill */
  vl_manual_seed(7);
  int64_t n = 1001, m = 9;
  vl_tensor *x = vl_rand(1, &n, VL_FLOAT64);
  vl_tensor *y = vl_rand(1, &n, VL_FLOAT64);
  assert_false(same_bytes(x, y));
  vl_manual_seed(7);
  vl_tensor *z = vl_rand(1, &m, VL_FLOAT64);
  assert_memory_equal(vl_data_ptr(z), vl_data_ptr(x), (size_t)m * sizeof(double));
  vl_tensor_release(x);
  vl_tensor_release(y);
  vl_tensor_release(z);
}

static void test_rng_state_replay(void **state) {
  (void)state;
  vl_manual_seed(5);
  int64_t n = 50;
  vl_tensor *warm = vl_randn(1, &n, VL_FLOAT32);
  uint64_t s, off;
  vl_get_rng_state(&s, &off);
  vl_tensor *a = vl_randint(-3, 1000, 1, &n, VL_INT64);
  vl_set_rng_state(s, off);
  vl_tensor *b = vl_randint(-3, 1000, 1, &n, VL_INT64);
  assert_true(same_bytes(a, b));
  vl_tensor_release(warm);
  vl_tensor_release(a);
  vl_tensor_release(b);
}

/* The same numbers for 1 and 2 threads, contiguous and strided. */
typedef vl_tensor *(*maker)(void);
static vl_tensor *mk_rand32(void) { int64_t n = N_PAR; return vl_rand(1, &n, VL_FLOAT32); }
static vl_tensor *mk_rand64(void) { int64_t n = N_PAR; return vl_rand(1, &n, VL_FLOAT64); }
static vl_tensor *mk_randn32(void) { int64_t n = N_PAR + 3; return vl_randn(1, &n, VL_FLOAT32); }
static vl_tensor *mk_randn64(void) { int64_t n = N_PAR + 1; return vl_randn(1, &n, VL_FLOAT64); }
static vl_tensor *mk_randn16(void) { int64_t n = N_PAR; return vl_randn(1, &n, VL_BFLOAT16); }
static vl_tensor *mk_randint(void) { int64_t n = N_PAR; return vl_randint(-1000000, 1000000, 1, &n, VL_INT64); }
static vl_tensor *mk_randperm(void) { return vl_randperm(N_PAR, VL_INT64); }
static vl_tensor *mk_bern(void) {
  int64_t n = N_PAR;
  vl_tensor *t = vl_empty(1, &n, VL_UINT8);
  assert_int_equal(vl_bernoulli_(t, 0.25), VL_OK);
  return t;
}
static vl_tensor *mk_strided(void) {
  /* fill a transposed view, return the contiguous base */
  int64_t shape[2] = {600, 500};
  vl_tensor *base = vl_zeros(2, shape, VL_FLOAT32);
  vl_tensor *tv = vl_transpose(base, 0, 1);
  assert_int_equal(vl_normal_(tv, 1.0, 3.0), VL_OK);
  vl_tensor_release(tv);
  return base;
}

static void test_thread_invariance(void **state) {
  (void)state;
  maker makers[] = {mk_rand32, mk_rand64, mk_randn32, mk_randn64, mk_randn16,
                    mk_randint, mk_randperm, mk_bern, mk_strided};
  int saved = vl_get_num_threads();
  for (size_t k = 0; k < sizeof makers / sizeof makers[0]; k++) {
    vl_set_num_threads(1);
    vl_manual_seed(2024);
    vl_tensor *a = makers[k]();
    vl_set_num_threads(2);
    vl_manual_seed(2024);
    vl_tensor *b = makers[k]();
    assert_non_null(a);
    assert_non_null(b);
    assert_true(same_bytes(a, b));
    vl_tensor_release(a);
    vl_tensor_release(b);
  }
  vl_set_num_threads(saved);
}

/* ---- statistics --------------------------------------------------------- */

static void moments(const vl_tensor *t0, double *mean, double *var) {
  int64_t n = vl_numel(t0);
  vl_tensor *t = vl_view(t0, 1, &n);  /* contiguous input: flat view */
  assert_non_null(t);
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = get1(t, i);
    s += v;
    s2 += v * v;
  }
  vl_tensor_release(t);
  *mean = s / (double)n;
  *var = s2 / (double)n - *mean * *mean;
}

static void test_uniform_stats(void **state) {
  (void)state;
  vl_dtype dts[] = {VL_FLOAT32, VL_FLOAT64};
  for (int k = 0; k < 2; k++) {
    vl_manual_seed(1234);
    int64_t n = N_STAT;
    vl_tensor *t = vl_rand(1, &n, dts[k]);
    double mean, var, lo = 1, hi = 0;
    moments(t, &mean, &var);
    for (int64_t i = 0; i < n; i++) {
      double v = get1(t, i);
      lo = fmin(lo, v);
      hi = fmax(hi, v);
    }
    assert_true(lo >= 0.0 && hi < 1.0);
    assert_true(lo < 1e-4 && hi > 1 - 1e-4);
    /* U[0,1): mean 1/2, var 1/12; sd of the sample var sqrt((1/80 - 1/144)/n) */
    assert_true(fabs(mean - 0.5) < 5 * sqrt(1.0 / 12 / n));
    assert_true(fabs(var - 1.0 / 12) < 5 * sqrt((1.0 / 80 - 1.0 / 144) / n));
    vl_tensor_release(t);
  }
}

static void test_normal_stats(void **state) {
  (void)state;
  vl_dtype dts[] = {VL_FLOAT32, VL_FLOAT64};
  for (int k = 0; k < 2; k++) {
    vl_manual_seed(99);
    int64_t n = N_STAT;
    vl_tensor *t = vl_randn(1, &n, dts[k]);
    double mean, var;
    moments(t, &mean, &var);
    assert_true(fabs(mean) < 5 / sqrt((double)n));
    assert_true(fabs(var - 1) < 5 * sqrt(2.0 / n));
    /* a fraction inside 1 sigma near 0.6827 */
    int64_t inside = 0;
    for (int64_t i = 0; i < n; i++) inside += fabs(get1(t, i)) < 1.0;
    double p = 0.682689492137;
    assert_true(fabs((double)inside / n - p) < 5 * sqrt(p * (1 - p) / n));
    vl_tensor_release(t);
  }
  /* normal_(mean, std) on a strided view */
  int64_t shape[2] = {1000, 1000};
  vl_tensor *t = vl_zeros(2, shape, VL_FLOAT64);
  vl_tensor *tv = vl_transpose(t, 0, 1);
  vl_manual_seed(3);
  assert_int_equal(vl_normal_(tv, 5.0, 2.0), VL_OK);
  double mean, var;
  moments(t, &mean, &var);
  assert_true(fabs(mean - 5) < 5 * 2 / 1000.0);
  assert_true(fabs(var - 4) < 5 * 4 * sqrt(2.0) / 1000.0);
  vl_tensor_release(tv);
  vl_tensor_release(t);
}

static void test_randint_chi2(void **state) {
  (void)state;
  vl_manual_seed(77);
  int64_t n = N_STAT;
  vl_tensor *t = vl_randint(-5, 6, 1, &n, VL_INT64);
  int64_t count[11] = {0};
  const int64_t *p = vl_data_ptr(t);
  for (int64_t i = 0; i < n; i++) {
    assert_true(p[i] >= -5 && p[i] < 6);
    count[p[i] + 5]++;
  }
  double e = n / 11.0, chi2 = 0;
  for (int k = 0; k < 11; k++) chi2 += (count[k] - e) * (count[k] - e) / e;
  assert_true(chi2 < CHI2_DF10_P1E6);
  vl_tensor_release(t);

  /* the other dtypes stay in range */
  vl_dtype dts[] = {VL_INT32, VL_UINT8, VL_FLOAT32, VL_FLOAT64, VL_FLOAT16, VL_BFLOAT16};
  int64_t lows[] = {-7, 250, -100, 1000000, -2048, 0};
  int64_t highs[] = {3, 256, 100, 1000003, 2049, 257};
  for (int k = 0; k < 6; k++) {
    int64_t m = 5000;
    vl_tensor *r = vl_randint(lows[k], highs[k], 1, &m, dts[k]);
    assert_non_null(r);
    bool hit_low = false;
    for (int64_t i = 0; i < m; i++) {
      double v = get1(r, i);
      assert_true(v >= (double)lows[k] && v < (double)highs[k] && v == floor(v));
      hit_low |= v == (double)lows[k];
    }
    assert_true(hit_low);
    vl_tensor_release(r);
  }
  /* the whole int64 range: no overflow */
  int64_t m = 1000;
  vl_tensor *r = vl_randint(INT64_MIN, INT64_MAX, 1, &m, VL_INT64);
  assert_non_null(r);
  int negatives = 0;
  for (int64_t i = 0; i < m; i++) negatives += ((const int64_t *)vl_data_ptr(r))[i] < 0;
  assert_true(negatives > 400 && negatives < 600);
  vl_tensor_release(r);
}

static void test_randperm(void **state) {
  (void)state;
  int64_t sizes[] = {0, 1, 2, 5, 1000, 100003};
  for (int k = 0; k < 6; k++) {
    int64_t n = sizes[k];
    vl_tensor *t = vl_randperm(n, VL_INT64);
    assert_non_null(t);
    assert_int_equal(t->ndim, 1);
    assert_int_equal(t->shape[0], n);
    char *seen = calloc((size_t)n + 1, 1);
    const int64_t *p = vl_data_ptr(t);
    int64_t fixed = 0;
    for (int64_t i = 0; i < n; i++) {
      assert_true(p[i] >= 0 && p[i] < n);
      assert_false(seen[p[i]]);
      seen[p[i]] = 1;
      fixed += p[i] == i;
    }
    if (n >= 1000) assert_true(fixed < 10); /* about 1 fixed point expected */
    free(seen);
    vl_tensor_release(t);
  }
  /* other dtypes */
  vl_tensor *a = vl_randperm(256, VL_UINT8);
  vl_tensor *b = vl_randperm(300, VL_FLOAT32);
  assert_non_null(a);
  assert_non_null(b);
  double sa = 0, sb = 0;
  for (int64_t i = 0; i < 256; i++) sa += get1(a, i);
  for (int64_t i = 0; i < 300; i++) sb += get1(b, i);
  assert_true(sa == 255.0 * 256 / 2 && sb == 299.0 * 300 / 2);
  vl_tensor_release(a);
  vl_tensor_release(b);
  /* every position is uniform: position 0 over 3-permutations */
  int64_t counts[3] = {0};
  for (int rep = 0; rep < 30000; rep++) {
    vl_tensor *t = vl_randperm(3, VL_INT64);
    counts[((const int64_t *)vl_data_ptr(t))[0]]++;
    vl_tensor_release(t);
  }
  for (int k = 0; k < 3; k++) assert_true(fabs(counts[k] - 10000.0) < 5 * sqrt(30000 * (2.0 / 9)));
}

static void test_uniform_bernoulli(void **state) {
  (void)state;
  vl_manual_seed(11);
  vl_dtype dts[] = {VL_FLOAT32, VL_FLOAT64, VL_FLOAT16, VL_BFLOAT16};
  for (int k = 0; k < 4; k++) {
    vl_tensor *t = t1(20000, dts[k]);
    assert_int_equal(vl_uniform_(t, -2.0, 3.0), VL_OK);
    double lo = 10, hi = -10;
    for (int64_t i = 0; i < 20000; i++) {
      double v = get1(t, i);
      lo = fmin(lo, v);
      hi = fmax(hi, v);
    }
    assert_true(lo >= -2.0 && hi < 3.0);
    assert_true(lo < -1.9 && hi > 2.9);
    /* a bound that rounds: results stay below hi */
    assert_int_equal(vl_uniform_(t, 0.0, 1.0000001), VL_OK);
    for (int64_t i = 0; i < 20000; i++) assert_true(get1(t, i) < 1.0000001);
    assert_int_equal(vl_uniform_(t, 2.5, 2.5), VL_OK);
    assert_true(get1(t, 0) == 2.5 && get1(t, 19999) == 2.5);
    vl_tensor_release(t);
  }
  /* only a narrowed column is written */
  int64_t shape[2] = {50, 4};
  vl_tensor *z = vl_zeros(2, shape, VL_FLOAT32);
  vl_tensor *col = vl_narrow(z, 1, 2, 1);
  assert_int_equal(vl_uniform_(col, 1.0, 2.0), VL_OK);
  for (int64_t i = 0; i < 50; i++)
    for (int64_t j = 0; j < 4; j++) {
      int64_t idx[2] = {i, j};
      double v;
      vl_get(z, idx, &v);
      if (j == 2) assert_true(v >= 1.0 && v < 2.0);
      else assert_true(v == 0.0);
    }
  vl_tensor_release(col);
  vl_tensor_release(z);

  vl_dtype bd[] = {VL_BOOL, VL_UINT8, VL_INT32, VL_INT64, VL_FLOAT32, VL_FLOAT64, VL_FLOAT16, VL_BFLOAT16};
  for (int k = 0; k < 8; k++) {
    int64_t n = 100000;
    vl_tensor *t = t1(n, bd[k]);
    assert_int_equal(vl_bernoulli_(t, 0.0), VL_OK);
    for (int64_t i = 0; i < n; i += 997) assert_true(get1(t, i) == 0.0);
    assert_int_equal(vl_bernoulli_(t, 1.0), VL_OK);
    for (int64_t i = 0; i < n; i += 997) assert_true(get1(t, i) == 1.0);
    assert_int_equal(vl_bernoulli_(t, 0.3), VL_OK);
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
      double v = get1(t, i);
      assert_true(v == 0.0 || v == 1.0);
      s += v;
    }
    assert_true(fabs(s / n - 0.3) < 5 * sqrt(0.3 * 0.7 / n));
    vl_tensor_release(t);
  }
  /* 0-d and empty */
  vl_tensor *s0 = vl_rand(0, NULL, VL_FLOAT32);
  assert_non_null(s0);
  assert_int_equal(s0->ndim, 0);
  double v0;
  assert_int_equal(vl_get(s0, NULL, &v0), VL_OK);
  assert_true(v0 >= 0 && v0 < 1);
  int64_t e[2] = {0, 3};
  vl_tensor *em = vl_randn(2, e, VL_FLOAT64);
  assert_non_null(em);
  assert_int_equal(vl_numel(em), 0);
  vl_tensor_release(s0);
  vl_tensor_release(em);
}

/* ---- bad input ---------------------------------------------------------- */

static void expect_error(bool failed, vl_status code, const char *needle) {
  assert_true(failed);
  assert_int_equal(vl_last_status(), code);
  if (!strstr(vl_last_error(), needle)) fail_msg("error '%s' lacks '%s'", vl_last_error(), needle);
}

static void test_bad_input(void **state) {
  (void)state;
  int64_t n = 4, neg = -2, shape9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  expect_error(vl_rand(1, &n, VL_INT64) == NULL, VL_EDTYPE, "rand: dtype int64");
  expect_error(vl_randn(1, &n, VL_BOOL) == NULL, VL_EDTYPE, "randn: dtype bool");
  expect_error(vl_rand(1, &neg, VL_FLOAT32) == NULL, VL_EARG, "rand");
  expect_error(vl_rand(9, shape9, VL_FLOAT32) == NULL, VL_ESHAPE, "rand: 9 dims");
  expect_error(vl_randint(0, 2, 1, &n, VL_BOOL) == NULL, VL_EDTYPE, "randint: dtype bool");
  expect_error(vl_randint(5, 5, 1, &n, VL_INT64) == NULL, VL_EARG, "randint: high (5) must be greater than low (5)");
  expect_error(vl_randint(0, 300, 1, &n, VL_UINT8) == NULL, VL_EARG, "does not fit dtype uint8");
  expect_error(vl_randint(-1, 3, 1, &n, VL_UINT8) == NULL, VL_EARG, "[-1, 3)");
  expect_error(vl_randint(0, (int64_t)1 << 40, 1, &n, VL_FLOAT32) == NULL, VL_EARG, "float32");
  expect_error(vl_randperm(-1, VL_INT64) == NULL, VL_EARG, "randperm: n must be non-negative (got -1)");
  expect_error(vl_randperm(3, VL_BOOL) == NULL, VL_EDTYPE, "randperm: dtype bool");
  expect_error(vl_randperm(257, VL_UINT8) == NULL, VL_EARG, "uint8");

  vl_tensor *it = t1(4, VL_INT64), *ft = t1(4, VL_FLOAT32);
  expect_error(vl_uniform_(it, 0, 1) != VL_OK, VL_EDTYPE, "uniform_: dtype int64");
  expect_error(vl_normal_(it, 0, 1) != VL_OK, VL_EDTYPE, "normal_: dtype int64");
  expect_error(vl_uniform_(ft, 2, 1) != VL_OK, VL_EARG, "uniform_: low (2) must be <= high (1)");
  expect_error(vl_uniform_(ft, 0, INFINITY) != VL_OK, VL_EARG, "finite");
  expect_error(vl_normal_(ft, 0, -1) != VL_OK, VL_EARG, "normal_: std must be finite and >= 0 (got -1)");
  expect_error(vl_normal_(ft, 0, NAN) != VL_OK, VL_EARG, "normal_: std");
  expect_error(vl_bernoulli_(ft, 1.5) != VL_OK, VL_EARG, "bernoulli_: p must be in [0, 1] (got 1.5)");
  expect_error(vl_bernoulli_(ft, NAN) != VL_OK, VL_EARG, "bernoulli_");
  int64_t big[2] = {3, 4};
  vl_tensor *ex = vl_expand(ft, 2, big);
  assert_non_null(ex);
  expect_error(vl_uniform_(ex, 0, 1) != VL_OK, VL_EARG, "uniform_: the tensor is an expanded view (a dim of size 3 has stride 0");
  expect_error(vl_bernoulli_(NULL, 0.5) != VL_OK, VL_EARG, "bernoulli_");
  vl_tensor_release(ex);
  vl_tensor_release(it);
  vl_tensor_release(ft);
}

/* ---- vl_format ---------------------------------------------------------- */

static void expect_format(const vl_tensor *t, const char *want) {
  assert_non_null(t);
  char *s = vl_format(t);
  assert_non_null(s);
  assert_string_equal(s, want);
  free(s);
}

static void test_format(void **state) {
  (void)state;
  int64_t s22[2] = {2, 2};
  vl_tensor *a = vl_arange(1, 5, 1, VL_FLOAT32);
  vl_tensor *a22 = vl_view(a, 2, s22);
  expect_format(a22, "tensor([[1., 2.],\n        [3., 4.]])");
  vl_tensor *at = vl_transpose(a22, 0, 1);
  expect_format(at, "tensor([[1., 3.],\n        [2., 4.]])");
  vl_tensor *d = vl_linspace(0, 1, 3, VL_FLOAT64);
  expect_format(d, "tensor([0.0000, 0.5000, 1.0000], dtype=float64)");
  vl_tensor *s = vl_scalar(3.5, VL_FLOAT32);
  expect_format(s, "tensor(3.5000)");
  vl_tensor *si = vl_scalar(-7, VL_INT64);
  expect_format(si, "tensor(-7)");
  int64_t e[2] = {0, 3};
  vl_tensor *em = vl_zeros(2, e, VL_FLOAT32);
  expect_format(em, "tensor([], size=(0, 3))");
  vl_tensor *b = vl_ones(1, s22, VL_BOOL);
  expect_format(b, "tensor([True, True])");
  vl_tensor *sm = vl_full(1, s22, 1e-5, VL_FLOAT32);
  expect_format(sm, "tensor([1.0000e-05, 1.0000e-05])");
  vl_tensor *big = vl_arange(0, 2000, 1, VL_INT64);
  expect_format(big, "tensor([   0,    1,    2,  ..., 1997, 1998, 1999])");
  vl_tensor *ts[] = {a, a22, at, d, s, si, em, b, sm, big};
  for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) vl_tensor_release(ts[k]);
  assert_null(vl_format(NULL));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_philox_kat),      cmocka_unit_test(test_stream_layout),
      cmocka_unit_test(test_seed_reproducible), cmocka_unit_test(test_rng_state_replay),
      cmocka_unit_test(test_thread_invariance), cmocka_unit_test(test_uniform_stats),
      cmocka_unit_test(test_normal_stats),    cmocka_unit_test(test_randint_chi2),
      cmocka_unit_test(test_randperm),        cmocka_unit_test(test_uniform_bernoulli),
      cmocka_unit_test(test_bad_input),       cmocka_unit_test(test_format),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
