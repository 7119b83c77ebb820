/*
** softmax.c — the ops along one dim that keep the shape (ops/vl.h
** "Reductions"): softmax, log_softmax, cumsum.
**
** They share the layout of reduce.c (reduce_internal.h): the tensor is
** brought to a dense [O, R, I] buffer (R the dim the op runs along), read
** in place when it is a dense permutation in logical order, else copied.
** Work is split in (o, column block) tasks, or rows when I == 1; each
** output depends on its own row/column only, so results are the same for
** every thread count.
**
** softmax/log_softmax subtract the max along dim first and sum the exps
** in double; float32 exps use vl_expf (vl_internal.h), which vectorises,
** with terms below FLT_MIN flushed to 0 (sm_expf). A NaN poisons the
** values normalised with it (its row along dim); all -inf or all +inf
** along dim gives NaN, as in PyTorch. Integers go to float32; bool is
** refused. cumsum runs in double for floats, in wrapping int64 for
** integers (int64 result).
**
** Autograd: fused backward kernels over the same layout (end of file);
** the nodes are recorded through vl__reduce_record (reduce.c).
*/
/* No FP exceptions are read: lets GCC vectorise the max selects (see
   reduce.c). Before the includes, for the inline helpers too. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <stdlib.h>

#include "reduce_internal.h"

/* ------------------------------------------------------------------ */
/* softmax, log_softmax                                                */
/* ------------------------------------------------------------------ */

/* exp of x - max for float32 softmax: arguments below ln(FLT_MIN) give 0
   at once (as vl_expf(-inf)) instead of a subnormal. Such terms do not
   count next to the max's 1 in the sum, and subnormal results cost a
   microcode assist per vector on x86: with logits spread over more than
   87, softmax ran 9x slower. */
#define VL_SOFTMAX_TINY (-87.3365448f) /* ln(FLT_MIN): exp below it is subnormal */
VL_AI float sm_expf(float d) { return vl_expf(d < VL_SOFTMAX_TINY ? -INFINITY : d); }

/* Rows of a contiguous float32 [O, R]: the hot case (attention, logits). */
static void softmax_rows_f32(const float *restrict x, float *restrict y, int64_t O, int64_t R, bool logsm) {
#pragma omp parallel for if (O * R > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t o = 0; o < O; o++) {
    const float *restrict xr = x + o * R;
    float *restrict yr = y + o * R;
    /* A NaN in the row makes the max NaN (row_ext_f32), so the whole row
       comes out NaN, as in PyTorch; a row of -inf gives -inf - -inf = NaN. */
    float m = row_ext_f32(xr, R, true);
    if (m == -INFINITY || m == INFINITY) m = m - m; /* NaN: matches PyTorch for all -inf / +inf rows */
    double s = 0;
    if (logsm) {
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < R; j++) s += sm_expf(xr[j] - m);
      float ls = (float)log(s);
      VL_SIMD
      for (int64_t j = 0; j < R; j++) yr[j] = (xr[j] - m) - ls;
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < R; j++) {
        float e = sm_expf(xr[j] - m);
        yr[j] = e;
        s += e;
      }
      float inv = (float)(1.0 / s);
      VL_SIMD
      for (int64_t j = 0; j < R; j++) yr[j] *= inv;
    }
  }
}

VL_AI double exp_w(double v, vl_dtype dt) { return dt == VL_FLOAT32 ? (double)sm_expf((float)v) : exp(v); }

VL_AI void stw(void *y, int64_t i, vl_dtype dt, double v) {
  if (dt == VL_FLOAT32)
    ((float *)y)[i] = (float)v;
  else
    ((double *)y)[i] = v;
}

VL_AI double ldw(const void *y, int64_t i, vl_dtype dt) {
  return dt == VL_FLOAT32 ? ((const float *)y)[i] : ((const double *)y)[i];
}

/* Softmax of one (o, column block) task of [O, R, I], or of whole rows
   (I == 1, ni == 1) for float64. y is contiguous [O, R, I]; x is read at
   xoff + the same element index. */
VL_AI void softmax_block(const void *x, int64_t xoff, void *y, int64_t o, int64_t i0, int64_t ni, int64_t R,
                         int64_t I, bool logsm, vl_dtype dt) {
  double m[VL_REDUCE_COLBLOCK], s[VL_REDUCE_COLBLOCK];
  int64_t base = o * R * I + i0;
  VL_SIMD
  for (int64_t i = 0; i < ni; i++) {
    m[i] = -INFINITY;
    s[i] = 0;
  }
  for (int64_t r = 0; r < R; r++) {
    VL_SIMD
    for (int64_t i = 0; i < ni; i++) {
      double v = ldw(x, xoff + base + r * I + i, dt);
      m[i] = v > m[i] ? v : m[i];
    }
  }
  VL_SIMD
  for (int64_t i = 0; i < ni; i++)
    if (m[i] == -INFINITY || m[i] == INFINITY) m[i] = m[i] - m[i]; /* NaN, as PyTorch */
  for (int64_t r = 0; r < R; r++) {
    VL_SIMD
    for (int64_t i = 0; i < ni; i++) {
      int64_t j = base + r * I + i;
      double e = exp_w(ldw(x, xoff + j, dt) - m[i], dt);
      if (!logsm) stw(y, j, dt, e);
      s[i] += e;
    }
  }
  if (logsm) {
    for (int64_t i = 0; i < ni; i++) s[i] = log(s[i]);
    for (int64_t r = 0; r < R; r++) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        int64_t j = base + r * I + i;
        stw(y, j, dt, (ldw(x, xoff + j, dt) - m[i]) - s[i]);
      }
    }
  } else {
    for (int64_t i = 0; i < ni; i++) s[i] = 1.0 / s[i];
    for (int64_t r = 0; r < R; r++) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        int64_t j = base + r * I + i;
        stw(y, j, dt, ldw(y, j, dt) * s[i]);
      }
    }
  }
}

/* float32 version of softmax_block: float maxima and exps (sm_expf),
   double sums. */
static void softmax_block_f32(const void *xv, int64_t xoff, void *yv, int64_t o, int64_t i0, int64_t ni,
                              int64_t R, int64_t I, bool logsm) {
  const float *restrict x = (const float *)xv + xoff;
  float *restrict y = yv;
  float m[VL_REDUCE_COLBLOCK];
  double s[VL_REDUCE_COLBLOCK];
  int64_t base = o * R * I + i0;
  for (int64_t i = 0; i < ni; i++) {
    m[i] = -INFINITY;
    s[i] = 0;
  }
  for (int64_t r = 0; r < R; r++) {
    const float *xr = x + base + r * I;
    VL_SIMD
    for (int64_t i = 0; i < ni; i++) m[i] = xr[i] > m[i] ? xr[i] : m[i];
  }
  for (int64_t i = 0; i < ni; i++)
    if (m[i] == -INFINITY || m[i] == INFINITY) m[i] = m[i] - m[i]; /* NaN, as PyTorch */
  for (int64_t r = 0; r < R; r++) {
    const float *xr = x + base + r * I;
    float *yr = y + base + r * I;
    if (logsm) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) s[i] += sm_expf(xr[i] - m[i]);
    } else {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        float e = sm_expf(xr[i] - m[i]);
        yr[i] = e;
        s[i] += e;
      }
    }
  }
  float f[VL_REDUCE_COLBLOCK];
  for (int64_t i = 0; i < ni; i++) f[i] = logsm ? (float)log(s[i]) : (float)(1.0 / s[i]);
  for (int64_t r = 0; r < R; r++) {
    const float *xr = x + base + r * I;
    float *yr = y + base + r * I;
    if (logsm) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) yr[i] = (xr[i] - m[i]) - f[i];
    } else {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) yr[i] *= f[i];
    }
  }
}
static void softmax_block_f64(const void *x, int64_t xoff, void *y, int64_t o, int64_t i0, int64_t ni, int64_t R,
                              int64_t I, bool logsm) {
  softmax_block(x, xoff, y, o, i0, ni, R, I, logsm, VL_FLOAT64);
}

static vl_tensor *softmax_impl(const char *name, const vl_tensor *t, int dim, bool logsm) {
  if (check_tensor(name, t)) return NULL;
  if (t->dtype == VL_BOOL) {
    vl_error(VL_EDTYPE, "%s: bool tensors are not accepted (expected a float or integer tensor)", name);
    return NULL;
  }
  rplan pl;
  if (vl__reduce_plan(name, t, 1, &dim, true, &pl)) return NULL;
  vl_dtype out_dt = vl_dtype_is_float(t->dtype) ? t->dtype : VL_FLOAT32;
  vl_dtype work = float_work(t->dtype);
  if (vl_numel(t) == 0) return vl_empty(t->ndim, t->shape, out_dt);
  rlayout L;
  if (vl__reduce_prepare(name, t, pl.mask, work, true, &L)) return NULL;
  vl_tensor *y = vl_empty(t->ndim, t->shape, work);
  if (!y) {
    vl_tensor_release(L.src);
    return NULL;
  }
  int64_t O = L.O, R = L.R, I = L.I;
  void *yp = vl_data_ptr(y);
  if (work == VL_FLOAT32 && I == 1) {
    softmax_rows_f32((const float *)L.x + L.off, yp, O, R, logsm);
  } else if (I == 1) {
#pragma omp parallel for if (O * R > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t o = 0; o < O; o++) softmax_block_f64(L.x, L.off, yp, o, 0, 1, R, 1, logsm);
  } else {
    int64_t cb = vl__reduce_colblock(O, I), nb = (I + cb - 1) / cb;
#pragma omp parallel for if (O * R * I > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t t2 = 0; t2 < O * nb; t2++) {
      int64_t o = t2 / nb, i0 = (t2 % nb) * cb, ni = VL_MIN(cb, I - i0);
      if (work == VL_FLOAT32)
        softmax_block_f32(L.x, L.off, yp, o, i0, ni, R, I, logsm);
      else
        softmax_block_f64(L.x, L.off, yp, o, i0, ni, R, I, logsm);
    }
  }
  vl_tensor_release(L.src);
  if (out_dt != work) {
    vl_tensor *z = vl_to_dtype(y, out_dt);
    vl_tensor_release(y);
    y = z;
  }
  return y;
}


/* ------------------------------------------------------------------ */
/* cumsum                                                              */
/* ------------------------------------------------------------------ */

/* y: contiguous [O, R, I] of float32/float64 (float input) or int64
   (integer input); one task per (o, column block). */
VL_AI void cumsum_block(const void *x, int64_t xoff, void *y, int64_t o, int64_t i0, int64_t ni, int64_t R,
                        int64_t I, vl_dtype dt) {
  int64_t base = o * R * I + i0;
  if (I == 1) { /* running sum along a row */
    if (is_floatwork(dt)) {
      double a = 0;
      for (int64_t r = 0; r < R; r++) {
        a += ldf(x, xoff + base + r, dt);
        stw(y, base + r, dt, a);
      }
    } else {
      int64_t a = 0, *yi = y;
      for (int64_t r = 0; r < R; r++) {
        a = wrap_add(a, ldi(x, xoff + base + r, dt));
        yi[base + r] = a;
      }
    }
    return;
  }
  if (is_floatwork(dt)) {
    double a[VL_REDUCE_COLBLOCK];
    for (int64_t i = 0; i < ni; i++) a[i] = 0;
    for (int64_t r = 0; r < R; r++) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        int64_t j = base + r * I + i;
        a[i] += ldf(x, xoff + j, dt);
        stw(y, j, dt, a[i]);
      }
    }
  } else {
    int64_t a[VL_REDUCE_COLBLOCK];
    int64_t *yi = y;
    for (int64_t i = 0; i < ni; i++) a[i] = 0;
    for (int64_t r = 0; r < R; r++) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        int64_t j = base + r * I + i;
        a[i] = wrap_add(a[i], ldi(x, xoff + j, dt));
        yi[j] = a[i];
      }
    }
  }
}

typedef void (*cumsum_fn)(const void *x, int64_t xoff, void *y, int64_t o, int64_t i0, int64_t ni, int64_t R,
                          int64_t I);
#define VL_DEF_CUMSUM(SFX, DT)                                                                          \
  static void cumsum_##SFX(const void *x, int64_t xoff, void *y, int64_t o, int64_t i0, int64_t ni,   \
                           int64_t R, int64_t I) {                                                    \
    cumsum_block(x, xoff, y, o, i0, ni, R, I, DT);                                                    \
  }
VL_DEF_CUMSUM(f32, VL_FLOAT32)
VL_DEF_CUMSUM(f64, VL_FLOAT64)
VL_DEF_CUMSUM(i64, VL_INT64)
VL_DEF_CUMSUM(i32, VL_INT32)
VL_DEF_CUMSUM(u8, VL_UINT8)
VL_DEF_CUMSUM(b8, VL_BOOL)

static vl_tensor *cumsum_fwd(const vl_tensor *t, int dim) {
  const char *name = "cumsum";
  if (check_tensor(name, t)) return NULL;
  rplan pl;
  if (vl__reduce_plan(name, t, 1, &dim, true, &pl)) return NULL;
  bool isf = vl_dtype_is_float(t->dtype);
  vl_dtype out_dt = isf ? t->dtype : VL_INT64;
  vl_dtype work = native_work(t->dtype);
  if (vl_numel(t) == 0) return vl_empty(t->ndim, t->shape, out_dt);
  rlayout L;
  if (vl__reduce_prepare(name, t, pl.mask, work, true, &L)) return NULL;
  vl_dtype ydt = isf ? work : VL_INT64;
  vl_tensor *y = vl_empty(t->ndim, t->shape, ydt);
  if (!y) {
    vl_tensor_release(L.src);
    return NULL;
  }
  cumsum_fn fn;
  switch (L.dt) {
    case VL_FLOAT64: fn = cumsum_f64; break;
    case VL_INT64: fn = cumsum_i64; break;
    case VL_INT32: fn = cumsum_i32; break;
    case VL_UINT8: fn = cumsum_u8; break;
    case VL_BOOL: fn = cumsum_b8; break;
    default: fn = cumsum_f32; break;
  }
  int64_t O = L.O, R = L.R, I = L.I;
  int64_t cb = vl__reduce_colblock(O, I), nb = (I + cb - 1) / cb;
  void *yp = vl_data_ptr(y);
#pragma omp parallel for if (O * R * I > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t t2 = 0; t2 < O * nb; t2++) {
    int64_t o = t2 / nb, i0 = (t2 % nb) * cb;
    fn(L.x, L.off, yp, o, i0, VL_MIN(cb, I - i0), R, I);
  }
  vl_tensor_release(L.src);
  if (out_dt != ydt) {
    vl_tensor *z = vl_to_dtype(y, out_dt);
    vl_tensor_release(y);
    y = z;
  }
  return y;
}

/* ------------------------------------------------------------------ */
/* Backward of softmax, log_softmax, cumsum                            */
/* ------------------------------------------------------------------ */

/* The nodes keep the dim in iarg[1] and the output y in iarg[3]'s slot
   (softmax, log_softmax). Gradients are computed by fused kernels over
   the [O, R, I] layout of the (contiguous) output gradient g, in float32
   or float64 with double sums:
     softmax      gx = y (g - sum_r g y)
     log_softmax  gx = g - exp(y) sum_r g
     cumsum       gx = reverse running sum of g along dim. */
enum { SM_SOFTMAX, SM_LOGSOFTMAX, SM_CUMSUM };

/* exp of a log-softmax output (<= 0): vectorised in float32. */
VL_AI double sm_exp_y(double y, vl_dtype dt) { return dt == VL_FLOAT32 ? (double)vl_expf((float)y) : exp(y); }

/* One (o, column block) task; y is NULL for cumsum. kind and dt are
   constants in each instance below, so the inner loops vectorise. */
VL_AI void sm_grad_block(int kind, const void *g, const void *y, void *gx, int64_t o, int64_t i0, int64_t ni,
                         int64_t R, int64_t I, vl_dtype dt) {
  int64_t base = o * R * I + i0;
  if (I == 1) { /* one row: scalar sums */
    double s = 0;
    if (kind == SM_CUMSUM) {
      for (int64_t r = R - 1; r >= 0; r--) {
        s += ldw(g, base + r, dt);
        stw(gx, base + r, dt, s);
      }
      return;
    }
    if (kind == SM_SOFTMAX) {
#pragma omp simd reduction(+ : s)
      for (int64_t r = 0; r < R; r++) s += ldw(g, base + r, dt) * ldw(y, base + r, dt);
      VL_SIMD
      for (int64_t r = 0; r < R; r++) {
        double yv = ldw(y, base + r, dt);
        stw(gx, base + r, dt, yv * (ldw(g, base + r, dt) - s));
      }
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t r = 0; r < R; r++) s += ldw(g, base + r, dt);
      VL_SIMD
      for (int64_t r = 0; r < R; r++)
        stw(gx, base + r, dt, ldw(g, base + r, dt) - sm_exp_y(ldw(y, base + r, dt), dt) * s);
    }
    return;
  }
  double s[VL_REDUCE_COLBLOCK];
  for (int64_t i = 0; i < ni; i++) s[i] = 0;
  if (kind == SM_CUMSUM) {
    for (int64_t r = R - 1; r >= 0; r--) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        int64_t j = base + r * I + i;
        s[i] += ldw(g, j, dt);
        stw(gx, j, dt, s[i]);
      }
    }
    return;
  }
  for (int64_t r = 0; r < R; r++) {
    int64_t j0 = base + r * I;
    if (kind == SM_SOFTMAX) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) s[i] += ldw(g, j0 + i, dt) * ldw(y, j0 + i, dt);
    } else {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) s[i] += ldw(g, j0 + i, dt);
    }
  }
  for (int64_t r = 0; r < R; r++) {
    int64_t j0 = base + r * I;
    if (kind == SM_SOFTMAX) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) stw(gx, j0 + i, dt, ldw(y, j0 + i, dt) * (ldw(g, j0 + i, dt) - s[i]));
    } else {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++)
        stw(gx, j0 + i, dt, ldw(g, j0 + i, dt) - sm_exp_y(ldw(y, j0 + i, dt), dt) * s[i]);
    }
  }
}

typedef void (*sm_grad_fn)(const void *g, const void *y, void *gx, int64_t o, int64_t i0, int64_t ni, int64_t R,
                           int64_t I);
#define VL_DEF_SM_GRAD(SFX, KIND, DT)                                                                        \
  static void sm_grad_##SFX(const void *g, const void *y, void *gx, int64_t o, int64_t i0, int64_t ni,     \
                            int64_t R, int64_t I) {                                                        \
    sm_grad_block(KIND, g, y, gx, o, i0, ni, R, I, DT);                                                    \
  }
VL_DEF_SM_GRAD(sm_f32, SM_SOFTMAX, VL_FLOAT32)
VL_DEF_SM_GRAD(sm_f64, SM_SOFTMAX, VL_FLOAT64)
VL_DEF_SM_GRAD(lsm_f32, SM_LOGSOFTMAX, VL_FLOAT32)
VL_DEF_SM_GRAD(lsm_f64, SM_LOGSOFTMAX, VL_FLOAT64)
VL_DEF_SM_GRAD(cs_f32, SM_CUMSUM, VL_FLOAT32)
VL_DEF_SM_GRAD(cs_f64, SM_CUMSUM, VL_FLOAT64)

/* Contiguous t in dtype dt (a new reference). */
static vl_tensor *dense_as(const vl_tensor *t, vl_dtype dt) {
  vl_tensor *c = vl_to_dtype(t, dt);
  if (c == NULL) return NULL;
  vl_tensor *d = vl_contiguous(c);
  vl_tensor_release(c);
  return d;
}

static int shape_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int kind = (int)(n->iarg[1] >> 8), dim = (int)(n->iarg[1] & 0xff);
  int nd = n->in_ndim[0];
  const int64_t *shape = n->in_shape[0];
  vl_dtype work = float_work(g->dtype);
  int64_t O = 1, R = nd > 0 ? shape[dim] : 1, I = 1;
  for (int d = 0; d < nd; d++) {
    if (d < dim) O *= shape[d];
    if (d > dim) I *= shape[d];
  }
  vl_tensor *gc = dense_as(g, work);
  vl_tensor *yc = kind == SM_CUMSUM || gc == NULL ? NULL : dense_as(n->saved[n->iarg[3]], work);
  vl_tensor *gx = gc && (yc || kind == SM_CUMSUM) ? vl_empty(nd, shape, work) : NULL;
  if (gx && O * R * I > 0) {
    const void *gp = vl_data_ptr(gc), *yp = yc ? vl_data_ptr(yc) : NULL;
    void *xp = vl_data_ptr(gx);
    int64_t cb = I == 1 ? 1 : vl__reduce_colblock(O, I), nb = (I + cb - 1) / cb;
    bool f32 = work == VL_FLOAT32;
    sm_grad_fn fn = kind == SM_SOFTMAX ? (f32 ? sm_grad_sm_f32 : sm_grad_sm_f64)
                  : kind == SM_LOGSOFTMAX ? (f32 ? sm_grad_lsm_f32 : sm_grad_lsm_f64)
                                          : (f32 ? sm_grad_cs_f32 : sm_grad_cs_f64);
#pragma omp parallel for if (O * R * I > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t t2 = 0; t2 < O * nb; t2++) {
      int64_t o = t2 / nb, i0 = (t2 % nb) * cb, ni = VL_MIN(cb, I - i0);
      fn(gp, yp, xp, o, i0, ni, R, I);
    }
  }
  vl_tensor_release(gc);
  vl_tensor_release(yc);
  gi[0] = vl_ag_reduce_to(n, 0, gx);
  return gi[0] ? VL_OK : vl_last_status();
}

/* Record out = op(t) along dim (0-based, wrapped) when t requires grad. */
static vl_tensor *shape_record(const char *name, int kind, const vl_tensor *t, int dim, vl_tensor *out) {
  int d = 0;
  if (vl_wrap_dim(name, dim, t->ndim, &d)) { /* cannot fail: the forward ran */
    vl_tensor_release(out);
    return NULL;
  }
  bool mask[VL_MAX_DIMS] = {false};
  if (t->ndim > 0) mask[d] = true;
  return vl__reduce_record(name, shape_backward, t, out, vl__mask_bits(t->ndim, mask), ((int64_t)kind << 8) | d, 0,
                           NULL, kind != SM_CUMSUM);
}

/* Integer inputs never require grad (and give float32/int64 results
   with no node). */
static vl_tensor *shape_op(const char *name, int kind, const vl_tensor *t, int dim) {
  bool rec = vl__ag_begin(t);
  vl_tensor *out = kind == SM_CUMSUM ? cumsum_fwd(t, dim) : softmax_impl(name, t, dim, kind == SM_LOGSOFTMAX);
  vl__ag_end(rec);
  if (out == NULL || !rec || !vl_dtype_is_float(out->dtype)) return out;
  return shape_record(name, kind, t, dim, out);
}

vl_tensor *vl_softmax(const vl_tensor *t, int dim) { return shape_op("softmax", SM_SOFTMAX, t, dim); }
vl_tensor *vl_log_softmax(const vl_tensor *t, int dim) { return shape_op("log_softmax", SM_LOGSOFTMAX, t, dim); }
vl_tensor *vl_cumsum(const vl_tensor *t, int dim) { return shape_op("cumsum", SM_CUMSUM, t, dim); }
