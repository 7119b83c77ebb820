/* cmocka tests of the tensor core (ops/tensor.c, dtype.c, error.c), no Lua. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vl.h"

static vl_tensor *arange_f32(int64_t n) { return vl_arange(0, (double)n, 1, VL_FLOAT32); }

static double at(const vl_tensor *t, int64_t i, int64_t j) {
  int64_t idx[2] = {i, j};
  double v = NAN;
  assert_int_equal(vl_get(t, idx, &v), VL_OK);
  return v;
}

static void test_views_share_storage(void **state) {
  (void)state;
  vl_tensor *a = arange_f32(12);
  int64_t shape[2] = {3, 4};
  vl_tensor *m = vl_view(a, 2, shape);
  assert_non_null(m);
  assert_true(vl_shares_storage(a, m));
  vl_tensor *t = vl_transpose(m, 0, 1);
  assert_true(vl_shares_storage(a, t));
  assert_false(vl_is_contiguous(t));
  assert_int_equal(t->shape[0], 4);
  assert_int_equal(t->stride[0], 1);
  assert_int_equal(t->stride[1], 4);
  assert_true(at(t, 3, 2) == 11); /* t[3][2] = m[2][3] = 2*4+3 */
  vl_tensor *n = vl_narrow(m, 1, 1, 2);
  assert_int_equal(n->offset, 1);
  assert_true(at(n, 2, 1) == 10);
  vl_tensor *s = vl_select(m, 0, -1);
  assert_int_equal(s->ndim, 1);
  assert_int_equal(s->offset, 8);
  size_t before = vl_memory_in_use();
  vl_tensor *c = vl_contiguous(t);
  assert_true(vl_memory_in_use() > before); /* a copy was made */
  assert_true(vl_is_contiguous(c));
  assert_true(at(c, 3, 2) == 11);
  vl_tensor *same = vl_contiguous(m); /* already contiguous: the same tensor */
  assert_ptr_equal(same, m);
  vl_tensor_release(same);
  vl_tensor *objs[] = {a, m, t, n, s, c};
  for (size_t i = 0; i < sizeof objs / sizeof objs[0]; i++) vl_tensor_release(objs[i]);
}

static void test_view_needs_copy_is_error(void **state) {
  (void)state;
  vl_tensor *a = arange_f32(6);
  int64_t s23[2] = {2, 3}, s6[1] = {6};
  vl_tensor *m = vl_view(a, 2, s23);
  vl_tensor *t = vl_transpose(m, 0, 1);
  assert_null(vl_view(t, 1, s6));
  assert_int_equal(vl_last_status(), VL_ESHAPE);
  assert_non_null(strstr(vl_last_error(), "view:"));
  assert_non_null(strstr(vl_last_error(), "reshape"));
  vl_tensor *r = vl_reshape(t, 1, s6); /* copies */
  assert_non_null(r);
  assert_false(vl_shares_storage(r, t));
  double want[6] = {0, 3, 1, 4, 2, 5};
  for (int64_t i = 0; i < 6; i++) {
    double v;
    assert_int_equal(vl_get(r, &i, &v), VL_OK);
    assert_true(v == want[i]);
  }
  vl_tensor_release(r);
  vl_tensor_release(t);
  vl_tensor_release(m);
  vl_tensor_release(a);
}

static void test_expand_and_unfold(void **state) {
  (void)state;
  vl_tensor *a = arange_f32(3);
  int64_t shape[2] = {4, 3};
  vl_tensor *e = vl_expand(a, 2, shape);
  assert_non_null(e);
  assert_int_equal(e->stride[0], 0);
  assert_true(at(e, 3, 2) == 2);
  int64_t bad[2] = {4, 5};
  assert_null(vl_expand(a, 2, bad));
  assert_non_null(strstr(vl_last_error(), "expand"));
  vl_tensor *x = arange_f32(7);
  vl_tensor *u = vl_unfold(x, 0, 3, 2); /* windows [0..2], [2..4], [4..6] */
  assert_int_equal(u->shape[0], 3);
  assert_int_equal(u->shape[1], 3);
  assert_true(at(u, 2, 0) == 4 && at(u, 1, 2) == 4);
  vl_tensor_release(u);
  vl_tensor_release(x);
  vl_tensor_release(e);
  vl_tensor_release(a);
}

static void test_copy_converts_and_broadcasts(void **state) {
  (void)state;
  int64_t shape[2] = {2, 3};
  vl_tensor *d = vl_zeros(2, shape, VL_INT32);
  vl_tensor *row = vl_arange(0.5, 3.5, 1, VL_FLOAT64); /* 0.5 1.5 2.5 */
  assert_int_equal(vl_copy_(d, row), VL_OK);
  assert_true(at(d, 1, 2) == 2); /* truncation toward zero, as C and PyTorch */
  int64_t bad[1] = {4};
  vl_tensor *b = vl_zeros(1, bad, VL_FLOAT32);
  assert_int_not_equal(vl_copy_(d, b), VL_OK);
  assert_non_null(strstr(vl_last_error(), "[4]"));
  vl_tensor_release(b);
  vl_tensor_release(row);
  vl_tensor_release(d);
}

static void test_int64_copies_are_exact(void **state) {
  (void)state;
  int64_t n = 2;
  vl_tensor *a = vl_empty(1, &n, VL_INT64);
  int64_t i0 = 0, i1 = 1, big = ((int64_t)1 << 62) + 1;
  assert_int_equal(vl_set_int(a, &i0, big), VL_OK);
  assert_int_equal(vl_set_int(a, &i1, -big), VL_OK);
  vl_tensor *c = vl_clone(a);
  int64_t v;
  assert_int_equal(vl_get_int(c, &i0, &v), VL_OK);
  assert_true(v == big);
  assert_int_equal(vl_get_int(c, &i1, &v), VL_OK);
  assert_true(v == -big);
  vl_tensor_release(c);
  vl_tensor_release(a);
}

static void test_half_round_trip_exhaustive(void **state) {
  (void)state;
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = vl_half_to_float((uint16_t)h);
    if (isnan(f)) continue;
    assert_int_equal(vl_float_to_half(f), h);
  }
  /* closed forms: largest half, smallest subnormal, rounding to even */
  assert_true(vl_half_to_float(0x7bff) == 65504.0f);
  assert_true(vl_half_to_float(0x0001) == ldexpf(1, -24));
  assert_int_equal(vl_float_to_half(65520.0f), 0x7c00);           /* halfway past max -> inf */
  assert_int_equal(vl_float_to_half(1.0f + ldexpf(1, -11)), 0x3c00); /* tie -> even */
  assert_int_equal(vl_float_to_half(ldexpf(1, -25)), 0x0000);      /* tie -> even (0) */
  assert_int_equal(vl_float_to_half(ldexpf(3, -26)), 0x0001);
  assert_true(isnan(vl_half_to_float(vl_float_to_half(NAN))));
  assert_true(vl_bfloat16_to_float(vl_float_to_bfloat16(1.0f)) == 1.0f);
  assert_int_equal(vl_float_to_bfloat16(1.0f + ldexpf(1, -8)), 0x3f80); /* tie -> even */
  assert_int_equal(vl_float_to_bfloat16(1.0f + ldexpf(3, -8)), 0x3f82);
}

static void test_memory_limit(void **state) {
  (void)state;
  size_t in_use = vl_memory_in_use();
  vl_set_memory_limit(in_use + (1 << 20));
  int64_t big = 1 << 20; /* 4 MiB of float32 */
  assert_null(vl_zeros(1, &big, VL_FLOAT32));
  assert_int_equal(vl_last_status(), VL_ENOMEM);
  assert_non_null(strstr(vl_last_error(), "memory limit"));
  int64_t small = 1000;
  vl_tensor *ok = vl_zeros(1, &small, VL_FLOAT32);
  assert_non_null(ok);
  vl_tensor_release(ok);
  vl_set_memory_limit(0);
  assert_int_equal(vl_memory_in_use(), in_use);
}

static void test_bad_sizes(void **state) {
  (void)state;
  int64_t neg[2] = {2, -3};
  assert_null(vl_empty(2, neg, VL_FLOAT32));
  assert_non_null(strstr(vl_last_error(), "negative size -3"));
  int64_t huge[3] = {INT64_MAX / 2, 4, 4};
  assert_null(vl_empty(3, huge, VL_FLOAT32));
  assert_non_null(strstr(vl_last_error(), "overflows"));
  int64_t big[1] = {(int64_t)1 << 50};
  assert_null(vl_empty(1, big, VL_FLOAT64)); /* 8 PiB */
  assert_int_equal(vl_last_status(), VL_ENOMEM);
  int64_t zero_and_huge[2] = {0, INT64_MAX};
  vl_tensor *z = vl_empty(2, zero_and_huge, VL_FLOAT32);
  assert_non_null(z); /* zero elements: fine */
  vl_tensor_release(z);
  int64_t zero_then_huge[3] = {0, (int64_t)1 << 40, (int64_t)1 << 40}; /* outer*inner sizes would overflow */
  assert_null(vl_zeros(3, zero_then_huge, VL_FLOAT64));
  assert_non_null(strstr(vl_last_error(), "overflows"));
}

static void test_linspace_and_arange(void **state) {
  (void)state;
  vl_tensor *l = vl_linspace(0, 1, 5, VL_FLOAT64);
  for (int64_t i = 0; i < 5; i++) {
    double v;
    vl_get(l, &i, &v);
    assert_true(v == 0.25 * (double)i);
  }
  vl_tensor *a = vl_arange(1, 2, 0.3, VL_FLOAT64); /* 1, 1.3, 1.6, 1.9 */
  assert_int_equal(a->shape[0], 4);
  assert_null(vl_arange(0, 1, 0, VL_FLOAT32));
  assert_non_null(strstr(vl_last_error(), "arange"));
  vl_tensor_release(a);
  vl_tensor_release(l);
}

static void test_as_strided_bounds(void **state) {
  (void)state;
  vl_tensor *a = arange_f32(4);
  int64_t shape[1] = {3}, stride[1] = {2};
  assert_null(vl_as_strided(a, 1, shape, stride, 0)); /* reaches element 4 of 4 */
  assert_int_equal(vl_last_status(), VL_EINDEX);
  stride[0] = 1;
  vl_tensor *v = vl_as_strided(a, 1, shape, stride, 1);
  assert_non_null(v);
  vl_tensor_release(v);
  vl_tensor_release(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_views_share_storage),
      cmocka_unit_test(test_view_needs_copy_is_error),
      cmocka_unit_test(test_expand_and_unfold),
      cmocka_unit_test(test_copy_converts_and_broadcasts),
      cmocka_unit_test(test_int64_copies_are_exact),
      cmocka_unit_test(test_half_round_trip_exhaustive),
      cmocka_unit_test(test_memory_limit),
      cmocka_unit_test(test_bad_sizes),
      cmocka_unit_test(test_linspace_and_arange),
      cmocka_unit_test(test_as_strided_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
