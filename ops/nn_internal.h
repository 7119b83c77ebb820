/*
** nn_internal.h — helpers shared by ops/nn.c (linear, norms, dropout,
** embedding) and ops/loss.c (the losses): work-dtype copies, recording,
** typed loads and stores, chunk constants. Internal to ops/.
*/
#ifndef VL_NN_INTERNAL_H
#define VL_NN_INTERNAL_H

/* No FP exceptions are read: lets GCC vectorise the selects of the exp
   and max loops (as softmax.c). Before the includes, for the inline
   helpers too. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <limits.h>
#include <stdlib.h>

#include <cblas.h>

#include "autograd.h"
#include "vl_internal.h"

/* Largest size handed to BLAS: Debian's OpenBLAS takes 32-bit ints. */
#define NN_BLAS_INT_MAX INT_MAX
/* Elements per partial sum of a loss: partials are added in order, so a
   sum does not depend on the thread count. */
#define NN_SUM_CHUNK 4096
/* Running maxima kept side by side when scanning a row of logits. */
#define NN_MAX_LANES 16
/* Columns per task when weight gradients sum over rows. */
#define NN_COLBLOCK 256
/* float32 exp arguments below ln(FLT_MIN) give 0 (as softmax.c): such
   terms do not count next to the max's 1, and subnormals are slow. */
#define NN_EXPF_TINY (-87.3365448)

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

VL_ALWAYS_INLINE double LD(const void *p, int64_t i, vl_dtype dt) {
  return dt == VL_FLOAT32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

VL_ALWAYS_INLINE void ST(void *p, int64_t i, vl_dtype dt, double v) {
  if (dt == VL_FLOAT32)
    ((float *)p)[i] = (float)v;
  else
    ((double *)p)[i] = v;
}

/* exp in the work precision: vl_expf for float32 (vectorises). */
VL_ALWAYS_INLINE double EXPW(double d, vl_dtype dt) {
  if (dt == VL_FLOAT32) return d < NN_EXPF_TINY ? 0.0 : (double)vl_expf((float)d);
  return exp(d);
}

/* Run the statements with `real` = float for float32 work, double for
   float64 (dt is a constant in the always-inlined kernels: one branch
   remains). float32 kernels compute elements in float and sum in double. */
#define NN_TYPED(dt, ...)     \
  do {                        \
    if ((dt) == VL_FLOAT32) { \
      typedef float real;     \
      __VA_ARGS__             \
    } else {                  \
      typedef double real;    \
      __VA_ARGS__             \
    }                         \
  } while (0)
#define NN_SIMD _Pragma("omp simd")
#define NN_PRAGMA(x) _Pragma(#x)
#define NN_SIMD_SUM(a) NN_PRAGMA(omp simd reduction(+ : a))
#define NN_SIMD_SUM2(a, b) NN_PRAGMA(omp simd reduction(+ : a, b))


static inline int need_tensor(const char *op, const char *what, const vl_tensor *t) {
  if (t == NULL) return vl_error(VL_EARG, "%s: %s is missing (NULL)", op, what);
  return VL_OK;
}

static inline int need_float(const char *op, const char *what, const vl_tensor *t) {
  if (t && !vl_dtype_is_float(t->dtype))
    return vl_error(VL_EDTYPE, "%s: %s must be a floating-point tensor, got %s", op, what,
                    vl_dtype_name(t->dtype));
  return VL_OK;
}

/* Promoted dtype of the non-NULL tensors (all float). */
static inline vl_dtype out_dtype(int n, const vl_tensor *const *ts) {
  vl_dtype dt = VL_DTYPE_COUNT;
  for (int i = 0; i < n; i++)
    if (ts[i]) dt = dt == VL_DTYPE_COUNT ? ts[i]->dtype : vl_promote(dt, ts[i]->dtype);
  return dt == VL_DTYPE_COUNT ? VL_FLOAT32 : dt;
}

static inline vl_dtype work_of(vl_dtype out) { return out == VL_FLOAT64 ? VL_FLOAT64 : VL_FLOAT32; }

/* A contiguous tensor of dtype dt with t's values (t itself, retained,
   when it already is one). NULL in, NULL out with no error. */
static inline vl_tensor *wcopy(const vl_tensor *t, vl_dtype dt) {
  if (t == NULL) return NULL;
  vl_tensor *c = vl_to_dtype(t, dt);
  if (c == NULL) return NULL;
  vl_tensor *r = vl_contiguous(c);
  vl_tensor_release(c);
  return r;
}

/* t broadcast to shape, then as wcopy. */
static inline vl_tensor *wcopy_expand(const vl_tensor *t, int ndim, const int64_t *shape, vl_dtype dt) {
  if (t == NULL) return NULL;
  vl_tensor *e = vl_expand(t, ndim, shape);
  if (e == NULL) return NULL;
  vl_tensor *r = wcopy(e, dt);
  vl_tensor_release(e);
  return r;
}

/* y (taken over) converted to dtype `out`. */
static inline vl_tensor *finish(vl_tensor *y, vl_dtype out) {
  if (y == NULL || y->dtype == out) return y;
  vl_tensor *c = vl_to_dtype(y, out);
  vl_tensor_release(y);
  return c;
}

static inline void release_all(int n, vl_tensor **ts) {
  for (int i = 0; i < n; i++) vl_tensor_release(ts[i]);
}

static inline const void *cdata(const vl_tensor *t) { return t ? vl_data_ptr(t) : NULL; }
static inline void *mdata(vl_tensor *t) { return t ? vl_data_ptr(t) : NULL; }

/* Record a node on `out` (taken over; released on failure): inputs,
   saved tensors (NULL entries keep their slot empty), parameters. */
static inline vl_tensor *record(vl_tensor *out, const char *name, vl_backward_fn fn, int nin,
                         const vl_tensor *const *in, int nsave, const vl_tensor *const *save,
                         const double *arg, const int64_t *iarg) {
  if (out == NULL) return NULL;
  vl_node *n = vl_ag_node(name, fn, nin, in);
  if (n == NULL) goto fail;
  for (int k = 0; k < nsave; k++) {
    if (save[k]) {
      if (vl_ag_save(n, save[k]) < 0) goto fail;
    } else {
      n->saved[n->nsaved++] = NULL;
    }
  }
  if (arg) memcpy(n->arg, arg, sizeof n->arg);
  if (iarg) memcpy(n->iarg, iarg, sizeof n->iarg);
  if (vl_ag_attach(out, n) != VL_OK) goto fail;
  return out;
fail:
  vl_ag_node_release(n);
  vl_tensor_release(out);
  return NULL;
}

/* The gradient of input i from a work-dtype tensor g (taken over). */
static inline int give(vl_node *n, int i, vl_tensor *g, vl_tensor **gi) {
  if (g == NULL) return vl_last_status();
  gi[i] = vl_ag_reduce_to(n, i, g);
  return gi[i] ? VL_OK : vl_last_status();
}

static inline int64_t prod(int from, int to, const int64_t *shape) {
  int64_t p = 1;
  for (int d = from; d < to; d++) p *= shape[d];
  return p;
}

static inline int check_vec(const char *op, const char *what, const vl_tensor *t, int64_t c, const char *cname) {
  if (t == NULL) return VL_OK;
  if (t->ndim != 1 || t->shape[0] != c) {
    char s[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "%s: %s of shape %s must be [%lld] (one per %s)", op, what,
                    vl_shape_str(t->ndim, t->shape, s), (long long)c, cname);
  }
  return VL_OK;
}

static inline int check_eps(const char *op, double eps) {
  if (!(eps >= 0) || isinf(eps)) return vl_error(VL_EARG, "%s: eps must be finite and >= 0, got %g", op, eps);
  return VL_OK;
}


#endif /* VL_NN_INTERNAL_H */
