/*
** where.c — where and masked_fill (prefix vl_), forward and backward.
** They run through the strided loop driver of ops/elementwise.c
** (elementwise_internal.h): typed kernels for float32/float64, a generic
** one (exact for integer dtypes) for the rest. cond/mask are bool or
** uint8; a non-zero byte selects.
**
** Autograd: where sends g to a where cond holds and to b elsewhere;
** masked_fill sends it to a where the mask does not hold. The mask is
** saved; masked_fill_ is in place and refuses tensors in the graph.
*/
#include "elementwise_internal.h"

/* ------------------------------------------------------------------ */
/* where / masked_fill kernels                                          */
/* ------------------------------------------------------------------ */

#define WHERE_LOOP(T)                                                           \
  do {                                                                          \
    T *o_ = (T *)p[0];                                                          \
    const uint8_t *c_ = (const uint8_t *)p[1];                                  \
    const T *a_ = (const T *)p[2], *b_ = (const T *)p[3];                       \
    if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {                     \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o_[i] = c_[i] ? a_[i] : b_[i]; \
    } else {                                                                    \
      for (int64_t i = 0; i < n; i++) o_[i * s[0]] = c_[i * s[1]] ? a_[i * s[2]] : b_[i * s[3]]; \
    }                                                                           \
  } while (0)

static void where_f32(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  VL_UNUSED(c);
  WHERE_LOOP(float);
}

static void where_f64(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  VL_UNUSED(c);
  WHERE_LOOP(double);
}

/* cond is bool or uint8: a non-zero byte selects a. */
static void where_generic(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  vl_dtype to = c->dt[0], ta = c->dt[2], tb = c->dt[3];
  bool exact = dtype_is_int(to);
  int64_t eo = (int64_t)vl_dtype_size(to), ea = (int64_t)vl_dtype_size(ta), eb = (int64_t)vl_dtype_size(tb);
  for (int64_t i = 0; i < n; i++) {
    bool sel = ((const uint8_t *)p[1])[i * s[1]] != 0;
    if (exact) {
      int64_t v = sel ? load_i64(p[2] + i * s[2] * ea, ta) : load_i64(p[3] + i * s[3] * eb, tb);
      store_i64(p[0] + i * s[0] * eo, to, v);
    } else {
      double v = sel ? vl_load(p[2], i * s[2], ta) : vl_load(p[3], i * s[3], tb);
      vl_store(p[0], i * s[0], to, v);
    }
  }
}

static void fill_f32(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  float *o = (float *)p[0];
  const uint8_t *m = (const uint8_t *)p[1];
  const float v = (float)c->value;
  if (s[0] == 1 && s[1] == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) o[i] = m[i] ? v : o[i];
  } else {
    for (int64_t i = 0; i < n; i++)
      if (m[i * s[1]]) o[i * s[0]] = v;
  }
}

static void fill_generic(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  vl_dtype to = c->dt[0];
  const uint8_t *m = (const uint8_t *)p[1];
  for (int64_t i = 0; i < n; i++)
    if (m[i * s[1]]) vl_store(p[0], i * s[0], to, c->value);
}

/* ------------------------------------------------------------------ */
/* where, masked_fill                                                   */
/* ------------------------------------------------------------------ */

/* where: the gradient goes to a where cond holds and to b elsewhere;
   masked_fill: to a where the mask does not hold. saved[0] = cond/mask. */
static int where_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  vl_tensor *zero = vl_scalar(0, g->dtype);
  if (zero == NULL) return vl_last_status();
  bool fill = n->ninputs == 1;
  int rc = VL_OK;
  for (int i = 0; i < n->ninputs && rc == VL_OK; i++) {
    if (!n->needs[i]) continue;
    bool takes_true = i == 0 && !fill;
    gi[i] = vl_ag_reduce_to(n, i, vl_where(n->saved[0], takes_true ? g : zero, takes_true ? zero : g));
    if (gi[i] == NULL) rc = vl_last_status();
  }
  vl_tensor_release(zero);
  return rc;
}

/* Record where (inputs a, b) or masked_fill (input a); `mask` is saved. */
static vl_tensor *where_record(const char *name, const vl_tensor *mask, int nin, const vl_tensor *const *in,
                               vl_tensor *out) {
  if (!vl_dtype_is_float(out->dtype) || !vl_ag_needed(nin, in)) return out;
  vl_node *n = vl_ag_node(name, where_backward, nin, in);
  if (n == NULL || vl_ag_save(n, mask) < 0 || vl_ag_attach(out, n) != VL_OK) {
    vl_ag_node_release(n);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

static int check_mask_dtype(const char *op, const char *what, const vl_tensor *m) {
  if (m->dtype != VL_BOOL && m->dtype != VL_UINT8)
    return vl_error(VL_EDTYPE, "%s: %s must be bool or uint8, got %s", op, what, vl_dtype_name(m->dtype));
  return VL_OK;
}

vl_tensor *vl_where(const vl_tensor *cond, const vl_tensor *a, const vl_tensor *b) {
  const char *name = "where";
  if (check_tensor(name, "cond", cond) || check_tensor(name, "a", a) || check_tensor(name, "b", b)) return NULL;
  if (check_mask_dtype(name, "cond", cond)) return NULL;
  int n1, nd;
  int64_t s1[VL_MAX_DIMS], shape[VL_MAX_DIMS];
  if (vl_broadcast_shapes(name, cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1)) return NULL;
  if (vl_broadcast_shapes(name, n1, s1, b->ndim, b->shape, &nd, shape)) return NULL;
  vl_dtype dt = vl_promote(a->dtype, b->dtype);
  vl_tensor *out = vl_empty(nd, shape, dt);
  if (out == NULL) return NULL;
  const vl_tensor *ops[4] = {out, cond, a, b};
  ew_plan pl;
  vl__ew_plan_init(&pl, nd, shape, 4, ops);
  ew_ctx c;
  ctx_init(&c, 0);
  for (int k = 0; k < 4; k++) c.dt[k] = ops[k]->dtype;
  ew_kernel fn = where_generic;
  if (a->dtype == dt && b->dtype == dt && dt == VL_FLOAT32) fn = where_f32;
  if (a->dtype == dt && b->dtype == dt && dt == VL_FLOAT64) fn = where_f64;
  vl__ew_run(&pl, fn, &c);
  return where_record(name, cond, 2, (const vl_tensor *[]){a, b}, out);
}

int vl_masked_fill_(vl_tensor *a, const vl_tensor *mask, double value) {
  const char *name = "masked_fill_";
  int rc;
  if ((rc = check_tensor(name, "tensor", a)) || (rc = check_tensor(name, "mask", mask))) return rc;
  if ((rc = check_mask_dtype(name, "mask", mask))) return rc;
  if ((rc = vl_ag_check_inplace(name, a))) return rc;
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if ((rc = vl_broadcast_shapes(name, a->ndim, a->shape, mask->ndim, mask->shape, &nd, shape))) return rc;
  if (!shapes_equal(nd, shape, a->ndim, a->shape)) {
    char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "%s: mask of shape %s does not broadcast to the tensor's shape %s", name,
                    vl_shape_str(mask->ndim, mask->shape, s1), vl_shape_str(a->ndim, a->shape, s2));
  }
  if ((rc = check_writable(name, a))) return rc;
  vl_tensor *tmp = NULL;
  const vl_tensor *m = unalias(a, mask, &tmp);
  if (m == NULL) return vl_last_status();
  const vl_tensor *ops[2] = {a, m};
  ew_plan pl;
  vl__ew_plan_init(&pl, a->ndim, a->shape, 2, ops);
  ew_ctx c;
  ctx_init(&c, 0);
  c.dt[0] = a->dtype;
  c.dt[1] = m->dtype;
  c.value = value;
  vl__ew_run(&pl, a->dtype == VL_FLOAT32 ? fill_f32 : fill_generic, &c);
  vl_tensor_release(tmp);
  vl_bump_version(a);
  return VL_OK;
}

vl_tensor *vl_masked_fill(const vl_tensor *a, const vl_tensor *mask, double value) {
  if (check_tensor("masked_fill", "tensor", a) || check_tensor("masked_fill", "mask", mask)) return NULL;
  if (check_mask_dtype("masked_fill", "mask", mask)) return NULL;
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if (vl_broadcast_shapes("masked_fill", a->ndim, a->shape, mask->ndim, mask->shape, &nd, shape)) return NULL;
  if (!shapes_equal(nd, shape, a->ndim, a->shape)) {
    char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
    vl_error(VL_ESHAPE, "masked_fill: mask of shape %s does not broadcast to the tensor's shape %s",
             vl_shape_str(mask->ndim, mask->shape, s1), vl_shape_str(a->ndim, a->shape, s2));
    return NULL;
  }
  vl_tensor *d = vl_detach(a); /* the copy is filled in place: it must not be in the graph */
  vl_tensor *out = d ? vl_clone(d) : NULL;
  vl_tensor_release(d);
  if (out == NULL) return NULL;
  if (vl_masked_fill_(out, mask, value) != VL_OK) {
    vl_tensor_release(out);
    return NULL;
  }
  return where_record("masked_fill", mask, 1, &a, out);
}
