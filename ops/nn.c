/*
** nn.c — neural network ops (ops/vl.h "Neural network ops"): linear,
** batch/layer/RMS/group normalisation, dropout, embedding and the losses
** (cross_entropy, nll_loss, mse, l1, smooth_l1, binary cross entropy with
** logits, kl_div, cosine_similarity), each with its backward beside it.
**
** Every op is one fused kernel with its own backward (no composition of
** smaller ops), so a training step makes few temporaries and the
** numerics are under control: log-softmax by max-subtraction inside the
** losses, softplus in its overflow-free form, variances in two passes.
**
** Layout: inputs are brought to contiguous copies in the work dtype
** (float32 for float32/float16/bfloat16, float64 when any input is
** float64; a contiguous input of that dtype is used as it is), outputs
** are converted back to the promoted input dtype. Integer and bool
** inputs are refused where the op needs real numbers (embedding gathers
** rows of any dtype). float32 kernels read and write float32 and
** accumulate in double.
**
** Sums over many elements are made of fixed chunks (NN_SUM_CHUNK) added
** in order, so results are the same for every thread count.
**
** Forward bodies run with gradient recording off (their internal copies
** record nothing); the op records its own node when an input requires
** grad. Backward functions receive dL/dout and rebuild what they need
** from the saved work copies and per-row statistics.
*/
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

/* Turn recording off for a forward body; returns the previous state. */
static bool nograd_begin(void) {
  bool was = vl_is_grad_enabled();
  vl_set_grad_enabled(false);
  return was;
}

static int need_tensor(const char *op, const char *what, const vl_tensor *t) {
  if (t == NULL) return vl_error(VL_EARG, "%s: %s is missing (NULL)", op, what);
  return VL_OK;
}

static int need_float(const char *op, const char *what, const vl_tensor *t) {
  if (t && !vl_dtype_is_float(t->dtype))
    return vl_error(VL_EDTYPE, "%s: %s must be a floating-point tensor, got %s", op, what,
                    vl_dtype_name(t->dtype));
  return VL_OK;
}

/* Promoted dtype of the non-NULL tensors (all float). */
static vl_dtype out_dtype(int n, const vl_tensor *const *ts) {
  vl_dtype dt = VL_DTYPE_COUNT;
  for (int i = 0; i < n; i++)
    if (ts[i]) dt = dt == VL_DTYPE_COUNT ? ts[i]->dtype : vl_promote(dt, ts[i]->dtype);
  return dt == VL_DTYPE_COUNT ? VL_FLOAT32 : dt;
}

static vl_dtype work_of(vl_dtype out) { return out == VL_FLOAT64 ? VL_FLOAT64 : VL_FLOAT32; }

/* A contiguous tensor of dtype dt with t's values (t itself, retained,
   when it already is one). NULL in, NULL out with no error. */
static vl_tensor *wcopy(const vl_tensor *t, vl_dtype dt) {
  if (t == NULL) return NULL;
  vl_tensor *c = vl_to_dtype(t, dt);
  if (c == NULL) return NULL;
  vl_tensor *r = vl_contiguous(c);
  vl_tensor_release(c);
  return r;
}

/* t broadcast to shape, then as wcopy. */
static vl_tensor *wcopy_expand(const vl_tensor *t, int ndim, const int64_t *shape, vl_dtype dt) {
  if (t == NULL) return NULL;
  vl_tensor *e = vl_expand(t, ndim, shape);
  if (e == NULL) return NULL;
  vl_tensor *r = wcopy(e, dt);
  vl_tensor_release(e);
  return r;
}

/* y (taken over) converted to dtype `out`. */
static vl_tensor *finish(vl_tensor *y, vl_dtype out) {
  if (y == NULL || y->dtype == out) return y;
  vl_tensor *c = vl_to_dtype(y, out);
  vl_tensor_release(y);
  return c;
}

static void release_all(int n, vl_tensor **ts) {
  for (int i = 0; i < n; i++) vl_tensor_release(ts[i]);
}

static const void *cdata(const vl_tensor *t) { return t ? vl_data_ptr(t) : NULL; }
static void *mdata(vl_tensor *t) { return t ? vl_data_ptr(t) : NULL; }

/* Record a node on `out` (taken over; released on failure): inputs,
   saved tensors (NULL entries keep their slot empty), parameters. */
static vl_tensor *record(vl_tensor *out, const char *name, vl_backward_fn fn, int nin,
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
static int give(vl_node *n, int i, vl_tensor *g, vl_tensor **gi) {
  if (g == NULL) return vl_last_status();
  gi[i] = vl_ag_reduce_to(n, i, g);
  return gi[i] ? VL_OK : vl_last_status();
}

static int64_t prod(int from, int to, const int64_t *shape) {
  int64_t p = 1;
  for (int d = from; d < to; d++) p *= shape[d];
  return p;
}

static int check_vec(const char *op, const char *what, const vl_tensor *t, int64_t c, const char *cname) {
  if (t == NULL) return VL_OK;
  if (t->ndim != 1 || t->shape[0] != c) {
    char s[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "%s: %s of shape %s must be [%lld] (one per %s)", op, what,
                    vl_shape_str(t->ndim, t->shape, s), (long long)c, cname);
  }
  return VL_OK;
}

static int check_eps(const char *op, double eps) {
  if (!(eps >= 0) || isinf(eps)) return vl_error(VL_EARG, "%s: eps must be finite and >= 0, got %g", op, eps);
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* linear                                                              */
/* ------------------------------------------------------------------ */

/* C[M,N] (contiguous) = op(A) @ op(B) + beta * C. */
static void nn_gemm(vl_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A,
                    int64_t lda, const void *B, int64_t ldb, double beta, void *C) {
  if (M == 0 || N == 0) return;
  if (beta == 0) memset(C, 0, (size_t)(M * N) * vl_dtype_size(dt)); /* C may hold NaN bits */
  if (K == 0) return;
  CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  if (dt == VL_FLOAT32)
    cblas_sgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, (float)beta, C,
                (int)N);
  else
    cblas_dgemm(CblasRowMajor, TA, TB, (int)M, (int)N, (int)K, 1.0, A, (int)lda, B, (int)ldb, beta, C, (int)N);
}

VL_ALWAYS_INLINE void colsum_k(const void *g, int64_t M, int64_t N, void *out, vl_dtype dt) {
  int64_t nb = (N + NN_COLBLOCK - 1) / NN_COLBLOCK;
#pragma omp parallel for if (M * N > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t b = 0; b < nb; b++) {
    double acc[NN_COLBLOCK];
    int64_t j0 = b * NN_COLBLOCK, nj = VL_MIN(NN_COLBLOCK, N - j0);
    for (int64_t j = 0; j < nj; j++) acc[j] = 0;
    for (int64_t r = 0; r < M; r++) {
#pragma omp simd
      for (int64_t j = 0; j < nj; j++) acc[j] += LD(g, r * N + j0 + j, dt);
    }
    for (int64_t j = 0; j < nj; j++) ST(out, j0 + j, dt, acc[j]);
  }
}

/* Sum of the rows of a contiguous [M, N] g: a [N] tensor. */
static vl_tensor *colsum(const vl_tensor *g, int64_t M, int64_t N) {
  vl_tensor *s = vl_empty(1, &N, g->dtype);
  if (s == NULL) return NULL;
  if (g->dtype == VL_FLOAT32)
    colsum_k(vl_data_ptr(g), M, N, vl_data_ptr(s), VL_FLOAT32);
  else
    colsum_k(vl_data_ptr(g), M, N, vl_data_ptr(s), VL_FLOAT64);
  return s;
}

static int linear_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *x = n->saved[0], *w = n->saved[1];
  vl_dtype dt = x->dtype;
  int64_t out = w->shape[0], in = w->shape[1], M = prod(0, x->ndim - 1, x->shape);
  vl_tensor *gc = wcopy(g, dt);
  if (gc == NULL) return vl_last_status();
  int rc = VL_OK;
  if (n->needs[0]) {
    vl_tensor *gx = vl_empty(x->ndim, x->shape, dt);
    if (gx) nn_gemm(dt, false, false, M, in, out, vl_data_ptr(gc), out, vl_data_ptr(w), in, 0, vl_data_ptr(gx));
    rc = give(n, 0, gx, gi);
  }
  if (rc == VL_OK && n->needs[1]) {
    vl_tensor *gw = vl_empty(2, w->shape, dt);
    if (gw) nn_gemm(dt, true, false, out, in, M, vl_data_ptr(gc), out, vl_data_ptr(x), in, 0, vl_data_ptr(gw));
    rc = give(n, 1, gw, gi);
  }
  if (rc == VL_OK && n->needs[2]) rc = give(n, 2, colsum(gc, M, out), gi);
  vl_tensor_release(gc);
  return rc;
}

static vl_tensor *linear_fwd(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, bool rec) {
  const char *op = "linear";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (need_tensor(op, "input", x) || need_tensor(op, "weight", w) || need_float(op, "input", x) ||
      need_float(op, "weight", w) || need_float(op, "bias", b))
    return NULL;
  if (w->ndim != 2)
    return vl_error(VL_ESHAPE, "linear: weight must be 2-D [out, in], got shape %s", vl_shape_str(w->ndim, w->shape, s1)),
           NULL;
  if (x->ndim < 1) return vl_error(VL_ESHAPE, "linear: input must be [..., in], got a 0-d tensor"), NULL;
  int64_t out = w->shape[0], in = w->shape[1];
  if (x->shape[x->ndim - 1] != in)
    return vl_error(VL_ESHAPE, "linear: input %s has %lld features in its last dim but weight %s takes %lld (weight is [out, in])",
                    vl_shape_str(x->ndim, x->shape, s1), (long long)x->shape[x->ndim - 1],
                    vl_shape_str(w->ndim, w->shape, s2), (long long)in),
           NULL;
  if (check_vec(op, "bias", b, out, "output feature")) return NULL;
  int64_t M = prod(0, x->ndim - 1, x->shape);
  if (M > NN_BLAS_INT_MAX || in > NN_BLAS_INT_MAX || out > NN_BLAS_INT_MAX)
    return vl_error(VL_EARG, "linear: sizes [%lld, %lld] x [%lld] exceed BLAS's %d", (long long)M, (long long)in,
                    (long long)out, NN_BLAS_INT_MAX),
           NULL;
  vl_dtype odt = out_dtype(3, (const vl_tensor *[]){x, w, b}), dt = work_of(odt);
  vl_tensor *tmp[3] = {wcopy(x, dt), wcopy(w, dt), wcopy(b, dt)};
  vl_tensor *y = NULL;
  if (tmp[0] && tmp[1] && (b == NULL || tmp[2])) {
    int64_t shape[VL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    y = vl_empty(x->ndim, shape, dt);
  }
  if (y) {
    void *yp = vl_data_ptr(y);
    if (b) {
      size_t row = (size_t)out * vl_dtype_size(dt);
      for (int64_t r = 0; r < M; r++) memcpy((char *)yp + (size_t)r * row, vl_data_ptr(tmp[2]), row);
    }
    nn_gemm(dt, false, true, M, out, in, vl_data_ptr(tmp[0]), in, vl_data_ptr(tmp[1]), in, b ? 1.0 : 0.0, yp);
    y = finish(y, odt);
    if (rec)
      y = record(y, "linear", linear_backward, 3, (const vl_tensor *[]){x, w, b}, 2,
                 (const vl_tensor *[]){tmp[0], tmp[1]}, NULL, NULL);
  }
  release_all(3, tmp);
  return y;
}

vl_tensor *vl_linear(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b) {
  bool rec = vl_ag_needed(3, (const vl_tensor *[]){x, w, b});
  bool was = nograd_begin();
  vl_tensor *y = linear_fwd(x, w, b, rec);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* Row statistics (layer norm, group norm, RMS norm)                    */
/* ------------------------------------------------------------------ */

/* mean and 1/sqrt(biased var + eps) of each row of a contiguous [R, D]
   (two passes, sums in double); rms: 1/sqrt(mean(x^2) + eps) in `inv`. */
VL_ALWAYS_INLINE void row_stats_k(const void *x, int64_t R, int64_t D, double eps, bool rms, double *mean,
                                  double *inv, vl_dtype dt) {
#pragma omp parallel for if (R * D > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < R; r++) {
    double m = 0, v = 0;
    NN_TYPED(dt, {
      const real *xr = (const real *)x + r * D;
      if (!rms) {
        NN_SIMD_SUM(m)
        for (int64_t j = 0; j < D; j++) m += xr[j];
        m = D > 0 ? m / (double)D : 0;
      }
      real mr = (real)m;
      NN_SIMD_SUM(v)
      for (int64_t j = 0; j < D; j++) {
        real d = xr[j] - mr;
        v += d * d;
      }
    });
    v = D > 0 ? v / (double)D : 0;
    mean[r] = m;
    inv[r] = 1.0 / sqrt(v + eps);
  }
}

static void row_stats(const vl_tensor *x, int64_t R, int64_t D, double eps, bool rms, double *mean, double *inv) {
  if (x->dtype == VL_FLOAT32)
    row_stats_k(vl_data_ptr(x), R, D, eps, rms, mean, inv, VL_FLOAT32);
  else
    row_stats_k(vl_data_ptr(x), R, D, eps, rms, mean, inv, VL_FLOAT64);
}

/* A float64 [2, n] tensor for per-row statistics (mean, inverse std). */
static vl_tensor *stats_new(int64_t n) { return vl_empty(2, (const int64_t[]){2, n}, VL_FLOAT64); }

/* ------------------------------------------------------------------ */
/* layer_norm, rms_norm                                                */
/* ------------------------------------------------------------------ */

/* y[r, j] = (x - mean_r) * inv_r * w[j] + b[j] (rms: mean 0, b NULL). */
VL_ALWAYS_INLINE void ln_apply_k(const void *x, void *y, const void *w, const void *b, const double *mean,
                                 const double *inv, int64_t R, int64_t D, vl_dtype dt) {
#pragma omp parallel for if (R * D > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < R; r++) {
    NN_TYPED(dt, {
      const real *restrict xr = (const real *)x + r * D, *restrict wr = w, *restrict br = b;
      real *restrict yr = (real *)y + r * D;
      real m = (real)mean[r], s = (real)inv[r];
      if (br) {
        NN_SIMD
        for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - m) * s * wr[j] + br[j];
      } else {
        NN_SIMD
        for (int64_t j = 0; j < D; j++) yr[j] = (xr[j] - m) * s * wr[j];
      }
    });
  }
}

/* Input gradient of layer norm (rms = false) or RMS norm, per row:
   LN:  gx = inv * (dy - mean(dy) - xhat * mean(dy * xhat)), dy = g * w
   RMS: gx = inv * (dy - x * inv^2 * mean(dy * x)). */
VL_ALWAYS_INLINE void ln_grad_x_k(const void *x, const void *g, const void *w, const double *mean, const double *inv,
                                  int64_t R, int64_t D, bool rms, void *gx, vl_dtype dt) {
#pragma omp parallel for if (R * D > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < R; r++) {
    double s1 = 0, s2 = 0;
    NN_TYPED(dt, {
      const real *restrict xr = (const real *)x + r * D, *restrict gr = (const real *)g + r * D, *restrict wr = w;
      real *restrict gxr = (real *)gx + r * D;
      real m = (real)mean[r], s = (real)inv[r];
      NN_SIMD_SUM2(s1, s2)
      for (int64_t j = 0; j < D; j++) {
        real dy = gr[j] * wr[j], xh = (xr[j] - m) * s;
        s1 += dy;
        s2 += dy * xh;
      }
      real a = rms ? 0 : (real)(s1 / (double)D), c = (real)(s2 / (double)D);
      NN_SIMD
      for (int64_t j = 0; j < D; j++) gxr[j] = s * (gr[j] * wr[j] - a - (xr[j] - m) * s * c);
    });
  }
}

/* gw[j] = sum_r g * xhat, gb[j] = sum_r g (either may be NULL). */
VL_ALWAYS_INLINE void ln_grad_wb_k(const void *x, const void *g, const double *mean, const double *inv, int64_t R,
                                   int64_t D, void *gw, void *gb, vl_dtype dt) {
  int64_t nb = (D + NN_COLBLOCK - 1) / NN_COLBLOCK;
#pragma omp parallel for if (R * D > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t b = 0; b < nb; b++) {
    double aw[NN_COLBLOCK], ab[NN_COLBLOCK];
    int64_t j0 = b * NN_COLBLOCK, nj = VL_MIN(NN_COLBLOCK, D - j0);
    for (int64_t j = 0; j < nj; j++) aw[j] = ab[j] = 0;
    for (int64_t r = 0; r < R; r++) {
      NN_TYPED(dt, {
        const real *restrict xr = (const real *)x + r * D + j0, *restrict gr = (const real *)g + r * D + j0;
        real m = (real)mean[r], s = (real)inv[r];
        NN_SIMD
        for (int64_t j = 0; j < nj; j++) {
          aw[j] += gr[j] * (xr[j] - m) * s;
          ab[j] += gr[j];
        }
      });
    }
    for (int64_t j = 0; j < nj; j++) {
      if (gw) ST(gw, j0 + j, dt, aw[j]);
      if (gb) ST(gb, j0 + j, dt, ab[j]);
    }
  }
}

/* saved: x, weight, stats; iarg: ndims, rms */
static int ln_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *x = n->saved[0], *w = n->saved[1], *st = n->saved[2];
  int k = (int)n->iarg[0];
  bool rms = n->iarg[1] != 0;
  vl_dtype dt = x->dtype;
  int64_t R = prod(0, x->ndim - k, x->shape), D = prod(x->ndim - k, x->ndim, x->shape);
  const double *mean = vl_data_ptr(st), *inv = mean + R;
  vl_tensor *gc = wcopy(g, dt);
  if (gc == NULL) return vl_last_status();
  int rc = VL_OK;
  if (n->needs[0]) {
    vl_tensor *gx = vl_empty(x->ndim, x->shape, dt);
    if (gx && dt == VL_FLOAT32)
      ln_grad_x_k(vl_data_ptr(x), vl_data_ptr(gc), cdata(w), mean, inv, R, D, rms, vl_data_ptr(gx), VL_FLOAT32);
    else if (gx)
      ln_grad_x_k(vl_data_ptr(x), vl_data_ptr(gc), cdata(w), mean, inv, R, D, rms, vl_data_ptr(gx), VL_FLOAT64);
    rc = give(n, 0, gx, gi);
  }
  bool nw = n->ninputs > 1 && n->needs[1], nb = n->ninputs > 2 && n->needs[2];
  if (rc == VL_OK && (nw || nb)) {
    const int64_t *wshape = x->shape + x->ndim - k;
    vl_tensor *gw = nw ? vl_empty(k, wshape, dt) : NULL, *gb = nb ? vl_empty(k, wshape, dt) : NULL;
    if ((!nw || gw) && (!nb || gb)) {
      if (dt == VL_FLOAT32)
        ln_grad_wb_k(vl_data_ptr(x), vl_data_ptr(gc), mean, inv, R, D, mdata(gw), mdata(gb), VL_FLOAT32);
      else
        ln_grad_wb_k(vl_data_ptr(x), vl_data_ptr(gc), mean, inv, R, D, mdata(gw), mdata(gb), VL_FLOAT64);
    }
    if (nw) rc = give(n, 1, gw, gi);
    if (nb && rc == VL_OK) rc = give(n, 2, gb, gi);
    else if (nb) vl_tensor_release(gb);
  }
  vl_tensor_release(gc);
  return rc;
}

static vl_tensor *ln_fwd(const char *op, const vl_tensor *x, int k, const vl_tensor *w, const vl_tensor *b,
                         double eps, bool rms, bool rec) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (need_tensor(op, "input", x) || need_float(op, "input", x) || need_float(op, "weight", w) ||
      need_float(op, "bias", b) || check_eps(op, eps))
    return NULL;
  if (k < 1 || k > x->ndim)
    return vl_error(VL_ESHAPE, "%s: cannot normalise over the last %d dims of a %d-d input of shape %s (expected 1..%d)",
                    op, k, x->ndim, vl_shape_str(x->ndim, x->shape, s1), x->ndim),
           NULL;
  const int64_t *ns = x->shape + x->ndim - k;
  const vl_tensor *aff[2] = {w, b};
  const char *names[2] = {"weight", "bias"};
  for (int i = 0; i < 2; i++) {
    const vl_tensor *t = aff[i];
    if (t == NULL) continue;
    bool ok = t->ndim == k;
    for (int d = 0; ok && d < k; d++) ok = t->shape[d] == ns[d];
    if (!ok)
      return vl_error(VL_ESHAPE, "%s: %s of shape %s must match the normalized shape %s", op, names[i],
                      vl_shape_str(t->ndim, t->shape, s1), vl_shape_str(k, ns, s2)),
             NULL;
  }
  vl_dtype odt = out_dtype(3, (const vl_tensor *[]){x, w, b}), dt = work_of(odt);
  int64_t R = prod(0, x->ndim - k, x->shape), D = prod(x->ndim - k, x->ndim, x->shape);
  /* no weight: ones, so that the kernels' inner loops do not branch */
  vl_tensor *tmp[4] = {wcopy(x, dt), w ? wcopy(w, dt) : vl_ones(k, ns, dt), wcopy(b, dt), stats_new(R)};
  vl_tensor *y = NULL;
  if (tmp[0] && tmp[1] && (!b || tmp[2]) && tmp[3]) y = vl_empty(x->ndim, x->shape, dt);
  if (y) {
    double *mean = vl_data_ptr(tmp[3]), *inv = mean + R;
    row_stats(tmp[0], R, D, eps, rms, mean, inv);
    if (dt == VL_FLOAT32)
      ln_apply_k(vl_data_ptr(tmp[0]), vl_data_ptr(y), cdata(tmp[1]), cdata(tmp[2]), mean, inv, R, D, VL_FLOAT32);
    else
      ln_apply_k(vl_data_ptr(tmp[0]), vl_data_ptr(y), cdata(tmp[1]), cdata(tmp[2]), mean, inv, R, D, VL_FLOAT64);
    y = finish(y, odt);
    if (rec)
      y = record(y, op, ln_backward, rms ? 2 : 3, (const vl_tensor *[]){x, w, b}, 3,
                 (const vl_tensor *[]){tmp[0], tmp[1], tmp[3]}, NULL, (const int64_t[VL_NODE_MAX_ARGS]){k, rms});
  }
  release_all(4, tmp);
  return y;
}

vl_tensor *vl_layer_norm(const vl_tensor *x, int ndims, const vl_tensor *weight, const vl_tensor *bias, double eps) {
  bool rec = vl_ag_needed(3, (const vl_tensor *[]){x, weight, bias});
  bool was = nograd_begin();
  vl_tensor *y = ln_fwd("layer_norm", x, ndims, weight, bias, eps, false, rec);
  vl_set_grad_enabled(was);
  return y;
}

vl_tensor *vl_rms_norm(const vl_tensor *x, int ndims, const vl_tensor *weight, double eps) {
  bool rec = vl_ag_needed(2, (const vl_tensor *[]){x, weight});
  bool was = nograd_begin();
  vl_tensor *y = ln_fwd("rms_norm", x, ndims, weight, NULL, eps, true, rec);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* group_norm                                                          */
/* ------------------------------------------------------------------ */

/* x, y contiguous [N, C, S]; row (n, g) holds channels g*Cg .. g*Cg+Cg-1. */
VL_ALWAYS_INLINE void gn_apply_k(const void *x, void *y, const void *w, const void *b, const double *mean,
                                 const double *inv, int64_t N, int64_t C, int64_t S, int64_t G, vl_dtype dt) {
  int64_t Cg = C / G;
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t nc = 0; nc < N * C; nc++) {
    int64_t c = nc % C, r = (nc / C) * G + c / Cg, o = nc * S;
    double k = inv[r] * (w ? LD(w, c, dt) : 1.0), bc = b ? LD(b, c, dt) : 0.0;
    NN_TYPED(dt, {
      const real *restrict xr = (const real *)x + o;
      real *restrict yr = (real *)y + o;
      real m = (real)mean[r], kr = (real)k, br = (real)bc;
      NN_SIMD
      for (int64_t j = 0; j < S; j++) yr[j] = (xr[j] - m) * kr + br;
    });
  }
}

VL_ALWAYS_INLINE void gn_grad_x_k(const void *x, const void *g, const void *w, const double *mean, const double *inv,
                                  int64_t N, int64_t C, int64_t S, int64_t G, void *gx, vl_dtype dt) {
  int64_t Cg = C / G, D = Cg * S;
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < N * G; r++) {
    int64_t c0 = (r % G) * Cg, o = r * D;
    double s1 = 0, s2 = 0;
    NN_TYPED(dt, {
      real m = (real)mean[r], s = (real)inv[r];
      for (int64_t cc = 0; cc < Cg; cc++) {
        real wc = w ? ((const real *)w)[c0 + cc] : 1;
        const real *restrict xr = (const real *)x + o + cc * S, *restrict gr = (const real *)g + o + cc * S;
        NN_SIMD_SUM2(s1, s2)
        for (int64_t j = 0; j < S; j++) {
          real dy = gr[j] * wc;
          s1 += dy;
          s2 += dy * (xr[j] - m) * s;
        }
      }
      real a = (real)(s1 / (double)D), c = (real)(s2 / (double)D);
      for (int64_t cc = 0; cc < Cg; cc++) {
        real wc = w ? ((const real *)w)[c0 + cc] : 1;
        const real *restrict xr = (const real *)x + o + cc * S, *restrict gr = (const real *)g + o + cc * S;
        real *restrict gxr = (real *)gx + o + cc * S;
        NN_SIMD
        for (int64_t j = 0; j < S; j++) gxr[j] = s * (gr[j] * wc - a - (xr[j] - m) * s * c);
      }
    });
  }
}

VL_ALWAYS_INLINE void gn_grad_wb_k(const void *x, const void *g, const double *mean, const double *inv, int64_t N,
                                   int64_t C, int64_t S, int64_t G, void *gw, void *gb, vl_dtype dt) {
  int64_t Cg = C / G;
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t c = 0; c < C; c++) {
    double aw = 0, ab = 0;
    for (int64_t nn = 0; nn < N; nn++) {
      int64_t r = nn * G + c / Cg, o = (nn * C + c) * S;
      NN_TYPED(dt, {
        const real *restrict xr = (const real *)x + o, *restrict gr = (const real *)g + o;
        real m = (real)mean[r], s = (real)inv[r];
        NN_SIMD_SUM2(aw, ab)
        for (int64_t j = 0; j < S; j++) {
          aw += gr[j] * (xr[j] - m) * s;
          ab += gr[j];
        }
      });
    }
    if (gw) ST(gw, c, dt, aw);
    if (gb) ST(gb, c, dt, ab);
  }
}

/* saved: x, weight, stats; iarg: groups */
static int gn_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *x = n->saved[0], *w = n->saved[1], *st = n->saved[2];
  int64_t G = n->iarg[0], N = x->shape[0], C = x->shape[1], S = prod(2, x->ndim, x->shape);
  vl_dtype dt = x->dtype;
  const double *mean = vl_data_ptr(st), *inv = mean + N * G;
  vl_tensor *gc = wcopy(g, dt);
  if (gc == NULL) return vl_last_status();
  int rc = VL_OK;
  if (n->needs[0]) {
    vl_tensor *gx = vl_empty(x->ndim, x->shape, dt);
    if (gx && dt == VL_FLOAT32)
      gn_grad_x_k(vl_data_ptr(x), vl_data_ptr(gc), cdata(w), mean, inv, N, C, S, G, vl_data_ptr(gx), VL_FLOAT32);
    else if (gx)
      gn_grad_x_k(vl_data_ptr(x), vl_data_ptr(gc), cdata(w), mean, inv, N, C, S, G, vl_data_ptr(gx), VL_FLOAT64);
    rc = give(n, 0, gx, gi);
  }
  if (rc == VL_OK && (n->needs[1] || n->needs[2])) {
    vl_tensor *gw = n->needs[1] ? vl_empty(1, &C, dt) : NULL, *gb = n->needs[2] ? vl_empty(1, &C, dt) : NULL;
    if ((!n->needs[1] || gw) && (!n->needs[2] || gb)) {
      if (dt == VL_FLOAT32)
        gn_grad_wb_k(vl_data_ptr(x), vl_data_ptr(gc), mean, inv, N, C, S, G, mdata(gw), mdata(gb), VL_FLOAT32);
      else
        gn_grad_wb_k(vl_data_ptr(x), vl_data_ptr(gc), mean, inv, N, C, S, G, mdata(gw), mdata(gb), VL_FLOAT64);
    }
    if (n->needs[1]) rc = give(n, 1, gw, gi);
    if (n->needs[2] && rc == VL_OK) rc = give(n, 2, gb, gi);
    else if (n->needs[2]) vl_tensor_release(gb);
  }
  vl_tensor_release(gc);
  return rc;
}

static vl_tensor *gn_fwd(const vl_tensor *x, int64_t G, const vl_tensor *w, const vl_tensor *b, double eps, bool rec) {
  const char *op = "group_norm";
  char s1[VL_SHAPE_STR];
  if (need_tensor(op, "input", x) || need_float(op, "input", x) || need_float(op, "weight", w) ||
      need_float(op, "bias", b) || check_eps(op, eps))
    return NULL;
  if (x->ndim < 2)
    return vl_error(VL_ESHAPE, "group_norm: input must be [N, C, ...] with at least 2 dims, got shape %s",
                    vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  int64_t N = x->shape[0], C = x->shape[1], S = prod(2, x->ndim, x->shape);
  if (G < 1 || C % G != 0)
    return vl_error(VL_EARG, "group_norm: %lld channels do not split into %lld groups (groups must be >= 1 and divide C)",
                    (long long)C, (long long)G),
           NULL;
  if (check_vec(op, "weight", w, C, "channel") || check_vec(op, "bias", b, C, "channel")) return NULL;
  vl_dtype odt = out_dtype(3, (const vl_tensor *[]){x, w, b}), dt = work_of(odt);
  vl_tensor *tmp[4] = {wcopy(x, dt), wcopy(w, dt), wcopy(b, dt), stats_new(N * G)};
  vl_tensor *y = NULL;
  if (tmp[0] && (!w || tmp[1]) && (!b || tmp[2]) && tmp[3]) y = vl_empty(x->ndim, x->shape, dt);
  if (y) {
    double *mean = vl_data_ptr(tmp[3]), *inv = mean + N * G;
    row_stats(tmp[0], N * G, (C / G) * S, eps, false, mean, inv);
    if (dt == VL_FLOAT32)
      gn_apply_k(vl_data_ptr(tmp[0]), vl_data_ptr(y), cdata(tmp[1]), cdata(tmp[2]), mean, inv, N, C, S, G, VL_FLOAT32);
    else
      gn_apply_k(vl_data_ptr(tmp[0]), vl_data_ptr(y), cdata(tmp[1]), cdata(tmp[2]), mean, inv, N, C, S, G, VL_FLOAT64);
    y = finish(y, odt);
    if (rec)
      y = record(y, op, gn_backward, 3, (const vl_tensor *[]){x, w, b}, 3, (const vl_tensor *[]){tmp[0], tmp[1], tmp[3]},
                 NULL, (const int64_t[VL_NODE_MAX_ARGS]){G});
  }
  release_all(4, tmp);
  return y;
}

vl_tensor *vl_group_norm(const vl_tensor *x, int64_t groups, const vl_tensor *weight, const vl_tensor *bias, double eps) {
  bool rec = vl_ag_needed(3, (const vl_tensor *[]){x, weight, bias});
  bool was = nograd_begin();
  vl_tensor *y = gn_fwd(x, groups, weight, bias, eps, rec);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* batch_norm                                                          */
/* ------------------------------------------------------------------ */

/* Per-channel mean and biased variance of a contiguous [N, C, S] (two
   passes, sums in double). S == 1 ([N, C] features): column blocks, the
   inner loop running along the channels. */
VL_ALWAYS_INLINE void bn_stats_k(const void *x, int64_t N, int64_t C, int64_t S, double *mean, double *var,
                                 vl_dtype dt) {
  double cnt = (double)(N * S);
  if (S == 1) {
    int64_t nb = (C + NN_COLBLOCK - 1) / NN_COLBLOCK;
#pragma omp parallel for if (N * C > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
      int64_t c0 = b * NN_COLBLOCK, nc = VL_MIN(NN_COLBLOCK, C - c0);
      double s[NN_COLBLOCK], v[NN_COLBLOCK];
      for (int64_t c = 0; c < nc; c++) s[c] = v[c] = 0;
      NN_TYPED(dt, {
        for (int64_t n = 0; n < N; n++) {
          const real *restrict xr = (const real *)x + n * C + c0;
          NN_SIMD
          for (int64_t c = 0; c < nc; c++) s[c] += xr[c];
        }
        real m[NN_COLBLOCK];
        for (int64_t c = 0; c < nc; c++) m[c] = (real)(s[c] / cnt);
        for (int64_t n = 0; n < N; n++) {
          const real *restrict xr = (const real *)x + n * C + c0;
          NN_SIMD
          for (int64_t c = 0; c < nc; c++) {
            real d = xr[c] - m[c];
            v[c] += d * d;
          }
        }
      });
      for (int64_t c = 0; c < nc; c++) {
        mean[c0 + c] = s[c] / cnt;
        var[c0 + c] = v[c] / cnt;
      }
    }
    return;
  }
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t c = 0; c < C; c++) {
    double s = 0, v = 0;
    NN_TYPED(dt, {
      for (int64_t n = 0; n < N; n++) {
        const real *restrict xr = (const real *)x + (n * C + c) * S;
        NN_SIMD_SUM(s)
        for (int64_t j = 0; j < S; j++) s += xr[j];
      }
      real m = (real)(s / cnt);
      for (int64_t n = 0; n < N; n++) {
        const real *restrict xr = (const real *)x + (n * C + c) * S;
        NN_SIMD_SUM(v)
        for (int64_t j = 0; j < S; j++) {
          real d = xr[j] - m;
          v += d * d;
        }
      }
    });
    mean[c] = s / cnt;
    var[c] = v / cnt;
  }
}

/* y = (x - mean[c]) * inv[c] * w[c] + b[c] */
VL_ALWAYS_INLINE void bn_apply_k(const void *x, void *y, const void *w, const void *b, const double *mean,
                                 const double *inv, int64_t N, int64_t C, int64_t S, vl_dtype dt) {
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t nc = 0; nc < N * C; nc++) {
    int64_t c = nc % C, o = nc * S;
    double k = inv[c] * (w ? LD(w, c, dt) : 1.0), bc = b ? LD(b, c, dt) : 0.0;
    NN_TYPED(dt, {
      const real *restrict xr = (const real *)x + o;
      real *restrict yr = (real *)y + o;
      real m = (real)mean[c], kr = (real)k, br = (real)bc;
      NN_SIMD
      for (int64_t j = 0; j < S; j++) yr[j] = (xr[j] - m) * kr + br;
    });
  }
}

/* sg[c] = sum g, sgx[c] = sum g * xhat. */
VL_ALWAYS_INLINE void bn_gsums_k(const void *x, const void *g, const double *mean, const double *inv, int64_t N,
                                 int64_t C, int64_t S, double *sg, double *sgx, vl_dtype dt) {
  if (S == 1) {
    int64_t nb = (C + NN_COLBLOCK - 1) / NN_COLBLOCK;
#pragma omp parallel for if (N * C > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
      int64_t c0 = b * NN_COLBLOCK, nc = VL_MIN(NN_COLBLOCK, C - c0);
      double a[NN_COLBLOCK], e[NN_COLBLOCK];
      for (int64_t c = 0; c < nc; c++) a[c] = e[c] = 0;
      NN_TYPED(dt, {
        real m[NN_COLBLOCK];
        for (int64_t c = 0; c < nc; c++) m[c] = (real)mean[c0 + c];
        for (int64_t n = 0; n < N; n++) {
          const real *restrict xr = (const real *)x + n * C + c0, *restrict gr = (const real *)g + n * C + c0;
          NN_SIMD
          for (int64_t c = 0; c < nc; c++) {
            a[c] += gr[c];
            e[c] += gr[c] * (xr[c] - m[c]);
          }
        }
      });
      for (int64_t c = 0; c < nc; c++) {
        sg[c0 + c] = a[c];
        sgx[c0 + c] = e[c] * inv[c0 + c];
      }
    }
    return;
  }
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t c = 0; c < C; c++) {
    double a = 0, e = 0;
    NN_TYPED(dt, {
      real m = (real)mean[c];
      for (int64_t n = 0; n < N; n++) {
        const real *restrict xr = (const real *)x + (n * C + c) * S, *restrict gr = (const real *)g + (n * C + c) * S;
        NN_SIMD_SUM2(a, e)
        for (int64_t j = 0; j < S; j++) {
          a += gr[j];
          e += gr[j] * (xr[j] - m);
        }
      }
    });
    sg[c] = a;
    sgx[c] = e * inv[c];
  }
}

/* training: gx = w inv (g - sg/M - xhat sgx/M); eval: gx = g w inv. */
VL_ALWAYS_INLINE void bn_grad_x_k(const void *x, const void *g, const void *w, const double *mean, const double *inv,
                                  const double *sg, const double *sgx, int64_t N, int64_t C, int64_t S, bool training,
                                  void *gx, vl_dtype dt) {
  double M = (double)(N * S);
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t nc = 0; nc < N * C; nc++) {
    int64_t c = nc % C, o = nc * S;
    double s = inv[c], k = s * (w ? LD(w, c, dt) : 1.0);
    double a = training ? sg[c] / M : 0, b = training ? sgx[c] / M * s : 0;
    NN_TYPED(dt, {
      const real *restrict xr = (const real *)x + o, *restrict gr = (const real *)g + o;
      real *restrict gxr = (real *)gx + o;
      real m = (real)mean[c], kr = (real)k, ar = (real)a, br = (real)b;
      NN_SIMD
      for (int64_t j = 0; j < S; j++) gxr[j] = kr * (gr[j] - ar - (xr[j] - m) * br);
    });
  }
}

/* saved: x, weight, stats; iarg: training */
static int bn_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *x = n->saved[0], *w = n->saved[1], *st = n->saved[2];
  bool training = n->iarg[0] != 0;
  int64_t N = x->shape[0], C = x->shape[1], S = prod(2, x->ndim, x->shape);
  vl_dtype dt = x->dtype;
  const double *mean = vl_data_ptr(st), *inv = mean + C;
  vl_tensor *gc = wcopy(g, dt);
  double *sums = malloc(sizeof(double) * (size_t)(2 * C + 1));
  if (gc == NULL || sums == NULL) {
    vl_tensor_release(gc);
    free(sums);
    return gc ? vl_error(VL_ENOMEM, "batch_norm: out of memory in backward") : vl_last_status();
  }
  double *sg = sums, *sgx = sums + C;
  if (dt == VL_FLOAT32)
    bn_gsums_k(vl_data_ptr(x), vl_data_ptr(gc), mean, inv, N, C, S, sg, sgx, VL_FLOAT32);
  else
    bn_gsums_k(vl_data_ptr(x), vl_data_ptr(gc), mean, inv, N, C, S, sg, sgx, VL_FLOAT64);
  int rc = VL_OK;
  if (n->needs[0]) {
    vl_tensor *gx = vl_empty(x->ndim, x->shape, dt);
    if (gx && dt == VL_FLOAT32)
      bn_grad_x_k(vl_data_ptr(x), vl_data_ptr(gc), cdata(w), mean, inv, sg, sgx, N, C, S, training, vl_data_ptr(gx),
                  VL_FLOAT32);
    else if (gx)
      bn_grad_x_k(vl_data_ptr(x), vl_data_ptr(gc), cdata(w), mean, inv, sg, sgx, N, C, S, training, vl_data_ptr(gx),
                  VL_FLOAT64);
    rc = give(n, 0, gx, gi);
  }
  for (int i = 1; i <= 2 && rc == VL_OK; i++) {
    if (!n->needs[i]) continue;
    vl_tensor *t = vl_empty(1, &C, VL_FLOAT64);
    if (t) memcpy(vl_data_ptr(t), i == 1 ? sgx : sg, sizeof(double) * (size_t)C);
    rc = give(n, i, t, gi);
  }
  free(sums);
  vl_tensor_release(gc);
  return rc;
}

static double ld_vec(const vl_tensor *t, int64_t i) {
  return vl_load(vl_base(t), t->offset + i * t->stride[0], t->dtype);
}

static void st_vec(vl_tensor *t, int64_t i, double v) { vl_store(vl_base(t), t->offset + i * t->stride[0], t->dtype, v); }

static vl_tensor *bn_fwd(const vl_tensor *x, vl_tensor *rm, vl_tensor *rv, const vl_tensor *w, const vl_tensor *b,
                         bool training, double momentum, double eps, bool rec) {
  const char *op = "batch_norm";
  char s1[VL_SHAPE_STR];
  if (need_tensor(op, "input", x) || need_float(op, "input", x) || need_float(op, "weight", w) ||
      need_float(op, "bias", b) || need_float(op, "running_mean", rm) || need_float(op, "running_var", rv) ||
      check_eps(op, eps))
    return NULL;
  if (x->ndim < 2)
    return vl_error(VL_ESHAPE, "batch_norm: input must be [N, C, ...] with at least 2 dims, got shape %s",
                    vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  int64_t N = x->shape[0], C = x->shape[1], S = prod(2, x->ndim, x->shape);
  if (check_vec(op, "weight", w, C, "channel") || check_vec(op, "bias", b, C, "channel") ||
      check_vec(op, "running_mean", rm, C, "channel") || check_vec(op, "running_var", rv, C, "channel"))
    return NULL;
  if (!training && (rm == NULL || rv == NULL))
    return vl_error(VL_EARG, "batch_norm: running_mean and running_var are needed in eval mode (training = false)"),
           NULL;
  if (training && N * S <= 1)
    return vl_error(VL_EARG, "batch_norm: expected more than 1 value per channel when training, got input of shape %s",
                    vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  if (!isfinite(momentum)) return vl_error(VL_EARG, "batch_norm: momentum must be finite, got %g", momentum), NULL;
  vl_dtype odt = out_dtype(3, (const vl_tensor *[]){x, w, b}), dt = work_of(odt);
  vl_tensor *tmp[4] = {wcopy(x, dt), wcopy(w, dt), wcopy(b, dt), stats_new(C)};
  double *var = malloc(sizeof(double) * (size_t)(C + 1));
  vl_tensor *y = NULL;
  if (tmp[0] && (!w || tmp[1]) && (!b || tmp[2]) && tmp[3] && var) y = vl_empty(x->ndim, x->shape, dt);
  else if (var == NULL) vl_error(VL_ENOMEM, "batch_norm: out of memory");
  if (y) {
    double *mean = vl_data_ptr(tmp[3]), *inv = mean + C;
    if (training) {
      if (dt == VL_FLOAT32)
        bn_stats_k(vl_data_ptr(tmp[0]), N, C, S, mean, var, VL_FLOAT32);
      else
        bn_stats_k(vl_data_ptr(tmp[0]), N, C, S, mean, var, VL_FLOAT64);
    } else {
      for (int64_t c = 0; c < C; c++) {
        mean[c] = ld_vec(rm, c);
        var[c] = ld_vec(rv, c);
      }
    }
    for (int64_t c = 0; c < C; c++) inv[c] = 1.0 / sqrt(var[c] + eps);
    if (dt == VL_FLOAT32)
      bn_apply_k(vl_data_ptr(tmp[0]), vl_data_ptr(y), cdata(tmp[1]), cdata(tmp[2]), mean, inv, N, C, S, VL_FLOAT32);
    else
      bn_apply_k(vl_data_ptr(tmp[0]), vl_data_ptr(y), cdata(tmp[1]), cdata(tmp[2]), mean, inv, N, C, S, VL_FLOAT64);
    if (training) {
      double cnt = (double)(N * S), unbias = cnt / (cnt - 1);
      for (int64_t c = 0; c < C; c++) {
        if (rm) st_vec(rm, c, (1 - momentum) * ld_vec(rm, c) + momentum * mean[c]);
        if (rv) st_vec(rv, c, (1 - momentum) * ld_vec(rv, c) + momentum * var[c] * unbias);
      }
      if (rm) vl_bump_version(rm);
      if (rv) vl_bump_version(rv);
    }
    y = finish(y, odt);
    if (rec)
      y = record(y, op, bn_backward, 3, (const vl_tensor *[]){x, w, b}, 3, (const vl_tensor *[]){tmp[0], tmp[1], tmp[3]},
                 NULL, (const int64_t[VL_NODE_MAX_ARGS]){training});
  }
  free(var);
  release_all(4, tmp);
  return y;
}

vl_tensor *vl_batch_norm(const vl_tensor *x, vl_tensor *running_mean, vl_tensor *running_var,
                         const vl_tensor *weight, const vl_tensor *bias, bool training, double momentum,
                         double eps) {
  /* the running stats are written in place: not while they take part in a graph */
  if (training && ((running_mean && vl_ag_check_inplace("batch_norm (running_mean)", running_mean)) ||
                   (running_var && vl_ag_check_inplace("batch_norm (running_var)", running_var))))
    return NULL;
  bool rec = vl_ag_needed(3, (const vl_tensor *[]){x, weight, bias});
  bool was = nograd_begin();
  vl_tensor *y = bn_fwd(x, running_mean, running_var, weight, bias, training, momentum, eps, rec);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* dropout                                                             */
/* ------------------------------------------------------------------ */

VL_ALWAYS_INLINE void mul_k(const void *a, const void *b, void *y, int64_t n, vl_dtype dt) {
#pragma omp parallel for simd if (n > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t i = 0; i < n; i++) ST(y, i, dt, LD(a, i, dt) * LD(b, i, dt));
}

/* a * b for contiguous tensors of one work dtype and shape. */
static vl_tensor *mul_new(const vl_tensor *a, const vl_tensor *b) {
  vl_tensor *y = vl_empty(a->ndim, a->shape, a->dtype);
  if (y == NULL) return NULL;
  if (a->dtype == VL_FLOAT32)
    mul_k(vl_data_ptr(a), vl_data_ptr(b), vl_data_ptr(y), vl_numel(a), VL_FLOAT32);
  else
    mul_k(vl_data_ptr(a), vl_data_ptr(b), vl_data_ptr(y), vl_numel(a), VL_FLOAT64);
  return y;
}

/* saved: the scaled mask */
static int dropout_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *mask = n->saved[0];
  vl_tensor *gc = wcopy(g, mask->dtype);
  if (gc == NULL) return vl_last_status();
  vl_tensor *gx = mul_new(gc, mask);
  vl_tensor_release(gc);
  return give(n, 0, gx, gi);
}

static vl_tensor *dropout_fwd(const vl_tensor *x, double p, bool training, bool rec) {
  const char *op = "dropout";
  if (need_tensor(op, "input", x) || need_float(op, "input", x)) return NULL;
  if (!(p >= 0 && p <= 1)) return vl_error(VL_EARG, "dropout: p must be in [0, 1], got %g", p), NULL;
  if (!training || p == 0) { /* the identity, as PyTorch: the input itself */
    vl_tensor_retain((vl_tensor *)x);
    return (vl_tensor *)x;
  }
  vl_dtype dt = work_of(x->dtype);
  vl_tensor *xc = wcopy(x, dt), *mask = xc ? vl_empty(x->ndim, x->shape, dt) : NULL, *y = NULL;
  int rc = mask ? (p == 1 ? vl_fill_(mask, 0) : vl_bernoulli_(mask, 1 - p)) : vl_last_status();
  if (rc == VL_OK && p < 1) {
    double scale = 1.0 / (1.0 - p);
    int64_t nm = vl_numel(mask);
    void *mp = vl_data_ptr(mask);
    if (dt == VL_FLOAT32) {
      float sf = (float)scale, *m = mp;
      for (int64_t i = 0; i < nm; i++) m[i] *= sf;
    } else {
      double *m = mp;
      for (int64_t i = 0; i < nm; i++) m[i] *= scale;
    }
  }
  if (rc == VL_OK) y = finish(mul_new(xc, mask), x->dtype);
  if (y && rec) y = record(y, op, dropout_backward, 1, &x, 1, (const vl_tensor *[]){mask}, NULL, NULL);
  vl_tensor_release(xc);
  vl_tensor_release(mask);
  return y;
}

vl_tensor *vl_dropout(const vl_tensor *x, double p, bool training) {
  bool rec = vl_ag_needed(1, &x);
  bool was = nograd_begin();
  vl_tensor *y = dropout_fwd(x, p, training, rec);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* embedding                                                           */
/* ------------------------------------------------------------------ */

/* Indices as a contiguous int64 tensor, each checked against [0, num). */
static vl_tensor *checked_indices(const char *op, const vl_tensor *idx, int64_t num, const char *what) {
  if (idx->dtype != VL_INT64 && idx->dtype != VL_INT32 && idx->dtype != VL_UINT8)
    return vl_error(VL_EDTYPE, "%s: indices must be an integer tensor (int64, int32 or uint8), got %s", op,
                    vl_dtype_name(idx->dtype)),
           NULL;
  vl_tensor *ic = wcopy(idx, VL_INT64);
  if (ic == NULL) return NULL;
  const int64_t *p = vl_data_ptr(ic);
  int64_t n = vl_numel(ic);
  for (int64_t i = 0; i < n; i++) {
    if (p[i] < 0 || p[i] >= num) {
      vl_error(VL_EINDEX, "%s: index %lld out of range for %lld %s (expected 0..%lld)", op, (long long)p[i],
               (long long)num, what, (long long)num - 1);
      vl_tensor_release(ic);
      return NULL;
    }
  }
  return ic;
}

/* saved: indices (int64); iarg: padding_idx */
static int embedding_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *ic = n->saved[0];
  int64_t pad = n->iarg[0], num = n->in_shape[0][0], dim = n->in_shape[0][1];
  vl_dtype dt = work_of(n->in_dtype[0]);
  vl_tensor *gc = wcopy(g, dt), *gw = gc ? vl_zeros(2, (const int64_t[]){num, dim}, dt) : NULL;
  if (gw) {
    const int64_t *p = vl_data_ptr(ic);
    int64_t ni = vl_numel(ic);
    const void *gp = vl_data_ptr(gc);
    void *wp = vl_data_ptr(gw);
    /* rows of gw are disjoint per column block: parallel over columns */
    int64_t nb = (dim + NN_COLBLOCK - 1) / NN_COLBLOCK;
#pragma omp parallel for if (ni * dim > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t b = 0; b < nb; b++) {
      int64_t j0 = b * NN_COLBLOCK, nj = VL_MIN(NN_COLBLOCK, dim - j0);
      for (int64_t i = 0; i < ni; i++) {
        if (p[i] == pad) continue;
        int64_t o = p[i] * dim + j0, go = i * dim + j0;
        if (dt == VL_FLOAT32) {
          float *w = (float *)wp + o;
          const float *gg = (const float *)gp + go;
#pragma omp simd
          for (int64_t j = 0; j < nj; j++) w[j] += gg[j];
        } else {
          double *w = (double *)wp + o;
          const double *gg = (const double *)gp + go;
#pragma omp simd
          for (int64_t j = 0; j < nj; j++) w[j] += gg[j];
        }
      }
    }
  }
  vl_tensor_release(gc);
  return give(n, 0, gw, gi);
}

static vl_tensor *embedding_fwd(const vl_tensor *idx, const vl_tensor *w, int64_t pad, bool rec) {
  const char *op = "embedding";
  char s1[VL_SHAPE_STR];
  if (need_tensor(op, "indices", idx) || need_tensor(op, "weight", w)) return NULL;
  if (w->ndim != 2)
    return vl_error(VL_ESHAPE, "embedding: weight must be 2-D [num_embeddings, dim], got shape %s",
                    vl_shape_str(w->ndim, w->shape, s1)),
           NULL;
  int64_t num = w->shape[0], dim = w->shape[1];
  if (pad < -1 || pad >= num)
    return vl_error(VL_EINDEX, "embedding: padding_idx %lld out of range for %lld embeddings (expected 0..%lld, or -1 for none)",
                    (long long)pad, (long long)num, (long long)num - 1),
           NULL;
  if (idx->ndim + 1 > VL_MAX_DIMS)
    return vl_error(VL_ESHAPE, "embedding: indices have %d dims; the result would have more than %d", idx->ndim,
                    VL_MAX_DIMS),
           NULL;
  vl_tensor *ic = checked_indices(op, idx, num, "embeddings");
  if (ic == NULL) return NULL;
  vl_tensor *wc = vl_contiguous(w), *y = NULL;
  int64_t shape[VL_MAX_DIMS];
  memcpy(shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim);
  shape[idx->ndim] = dim;
  if (wc) y = vl_empty(idx->ndim + 1, shape, w->dtype);
  if (y) {
    size_t row = (size_t)dim * vl_dtype_size(w->dtype);
    const int64_t *p = vl_data_ptr(ic);
    int64_t ni = vl_numel(ic);
    const char *src = vl_data_ptr(wc);
    char *dst = vl_data_ptr(y);
#pragma omp parallel for if (ni * dim > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t i = 0; i < ni; i++) memcpy(dst + (size_t)i * row, src + (size_t)p[i] * row, row);
    if (rec)
      y = record(y, op, embedding_backward, 1, &w, 1, (const vl_tensor *[]){ic}, NULL,
                 (const int64_t[VL_NODE_MAX_ARGS]){pad});
  }
  vl_tensor_release(wc);
  vl_tensor_release(ic);
  return y;
}

vl_tensor *vl_embedding(const vl_tensor *indices, const vl_tensor *weight, int64_t padding_idx) {
  bool rec = weight && vl_ag_needed(1, &weight);
  bool was = nograd_begin();
  vl_tensor *y = embedding_fwd(indices, weight, padding_idx, rec);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* Reductions of losses                                                */
/* ------------------------------------------------------------------ */

int vl_reduction_from_name(const char *op, const char *name, bool batchmean_ok, vl_reduction *out) {
  static const char *names[] = {"none", "mean", "sum", "batchmean"};
  for (int i = 0; i < 4; i++) {
    if (name && strcmp(name, names[i]) == 0 && (i < 3 || batchmean_ok)) {
      *out = (vl_reduction)i;
      return VL_OK;
    }
  }
  return vl_error(VL_EARG, "%s: unknown reduction '%s' (expected 'none', 'mean', 'sum'%s)", op, name ? name : "(null)",
                  batchmean_ok ? " or 'batchmean'" : "");
}

static int check_reduction(const char *op, vl_reduction red, bool batchmean_ok) {
  if (red == VL_REDUCTION_NONE || red == VL_REDUCTION_MEAN || red == VL_REDUCTION_SUM ||
      (red == VL_REDUCTION_BATCHMEAN && batchmean_ok))
    return VL_OK;
  return vl_error(VL_EARG, "%s: reduction %d not accepted (expected none, mean, sum%s)", op, (int)red,
                  batchmean_ok ? " or batchmean" : "");
}

/* k sums for each of nch chunks. */
static double *partials_new(int64_t nch, int k) {
  double *p = calloc((size_t)(nch * k + 1), sizeof(double));
  if (p == NULL) vl_error(VL_ENOMEM, "loss: out of memory for partial sums");
  return p;
}

static double partials_sum(const double *p, int64_t nch, int k, int which) {
  double s = 0;
  for (int64_t c = 0; c < nch; c++) s += p[c * k + which];
  return s;
}

/* The scalar value of a gradient g of a reduced (one-element) loss. */
static double scalar_of(const vl_tensor *g) {
  int64_t idx[VL_MAX_DIMS] = {0};
  double v = 0;
  vl_get(g, idx, &v);
  return v;
}

/* ------------------------------------------------------------------ */
/* Element-wise losses: mse, l1, smooth_l1, bce with logits, kl_div     */
/* ------------------------------------------------------------------ */

typedef enum el_kind { EL_MSE, EL_L1, EL_SMOOTH_L1, EL_BCE, EL_KL, EL_KL_LOG } el_kind;

static const char *el_names[] = {"mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits",
                                 "kl_div", "kl_div"};

VL_ALWAYS_INLINE double sgn(double d) { return d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0; }

/* softplus(-x) = log(1 + exp(-x)) without overflow */
VL_ALWAYS_INLINE double softplus_neg(double x) { return (x < 0 ? -x : 0.0) + log1p(exp(-fabs(x))); }

/* sigmoid(-x) without overflow */
VL_ALWAYS_INLINE double sigmoid_neg(double x) {
  if (x >= 0) {
    double e = exp(-x);
    return e / (1 + e);
  }
  return 1 / (1 + exp(x));
}

/* Loss of one element; w and pw are the BCE weight and pos_weight (1 when absent). */
VL_ALWAYS_INLINE double el_loss(el_kind k, double x, double y, double w, double pw, double beta) {
  switch (k) {
    case EL_MSE: return (x - y) * (x - y);
    case EL_L1: return fabs(x - y);
    case EL_SMOOTH_L1: {
      double ad = fabs(x - y);
      return ad < beta ? 0.5 * ad * ad / beta : ad - 0.5 * beta;
    }
    case EL_BCE: return w * ((1 - y) * x + ((pw - 1) * y + 1) * softplus_neg(x));
    case EL_KL: return (y == 0 ? 0.0 : y * log(y)) - y * x; /* xlogy(y, y) - y x */
    case EL_KL_LOG: return exp(y) * (y - x);
  }
  return 0;
}

VL_ALWAYS_INLINE void el_grad(el_kind k, double x, double y, double w, double pw, double beta, double *gx,
                              double *gy) {
  switch (k) {
    case EL_MSE: *gx = 2 * (x - y); *gy = -*gx; break;
    case EL_L1: *gx = sgn(x - y); *gy = -*gx; break;
    case EL_SMOOTH_L1: {
      double d = x - y;
      *gx = fabs(d) < beta ? d / beta : sgn(d);
      *gy = -*gx;
      break;
    }
    case EL_BCE:
      *gx = w * ((1 - y) - ((pw - 1) * y + 1) * sigmoid_neg(x));
      *gy = w * (-x + (pw - 1) * softplus_neg(x));
      break;
    case EL_KL: *gx = -y; *gy = log(y) + 1 - x; break;
    case EL_KL_LOG: {
      double e = exp(y);
      *gx = -e;
      *gy = e * (y - x + 1);
      break;
    }
  }
}

/* out: per-element losses (NULL: partial sums per chunk into part). */
VL_ALWAYS_INLINE void el_fwd_k(el_kind k, const void *x, const void *y, const void *w, const void *pw, int64_t n,
                               double beta, void *out, double *part, vl_dtype dt) {
  int64_t nch = (n + NN_SUM_CHUNK - 1) / NN_SUM_CHUNK;
#pragma omp parallel for if (n > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t c = 0; c < nch; c++) {
    int64_t lo = c * NN_SUM_CHUNK, hi = VL_MIN(n, lo + NN_SUM_CHUNK);
    double s = 0;
    for (int64_t i = lo; i < hi; i++) {
      double l = el_loss(k, LD(x, i, dt), LD(y, i, dt), w ? LD(w, i, dt) : 1.0, pw ? LD(pw, i, dt) : 1.0, beta);
      if (out)
        ST(out, i, dt, l);
      else
        s += l;
    }
    if (part) part[c] = s;
  }
}

/* gx, gy (either may be NULL) = dloss/dx * g[i] (g NULL: * gs). */
VL_ALWAYS_INLINE void el_bwd_k(el_kind k, const void *x, const void *y, const void *w, const void *pw, int64_t n,
                               double beta, const void *g, double gs, void *gx, void *gy, vl_dtype dt) {
#pragma omp parallel for if (n > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t i = 0; i < n; i++) {
    double a = 0, b = 0, s = g ? LD(g, i, dt) : gs;
    el_grad(k, LD(x, i, dt), LD(y, i, dt), w ? LD(w, i, dt) : 1.0, pw ? LD(pw, i, dt) : 1.0, beta, &a, &b);
    if (gx) ST(gx, i, dt, a * s);
    if (gy) ST(gy, i, dt, b * s);
  }
}

static void el_fwd(el_kind k, const vl_tensor *x, const vl_tensor *y, const vl_tensor *w, const vl_tensor *pw,
                   double beta, vl_tensor *out, double *part) {
  int64_t n = vl_numel(x);
  void *op = out ? vl_data_ptr(out) : NULL;
  if (x->dtype == VL_FLOAT32)
    el_fwd_k(k, vl_data_ptr(x), vl_data_ptr(y), cdata(w), cdata(pw), n, beta, op, part, VL_FLOAT32);
  else
    el_fwd_k(k, vl_data_ptr(x), vl_data_ptr(y), cdata(w), cdata(pw), n, beta, op, part, VL_FLOAT64);
}

/* saved: x, y, weight, pos_weight (broadcast, work dtype);
   iarg: kind, reduction; arg: beta, denominator of the reduction */
static int el_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *x = n->saved[0], *y = n->saved[1], *w = n->saved[2], *pw = n->saved[3];
  el_kind k = (el_kind)n->iarg[0];
  vl_reduction red = (vl_reduction)n->iarg[1];
  vl_dtype dt = x->dtype;
  vl_tensor *gc = NULL;
  double gs = 0;
  if (red == VL_REDUCTION_NONE) {
    gc = wcopy(g, dt);
    if (gc == NULL) return vl_last_status();
  } else {
    gs = scalar_of(g) / n->arg[1];
  }
  vl_tensor *gx = n->needs[0] ? vl_empty(x->ndim, x->shape, dt) : NULL;
  vl_tensor *gy = n->needs[1] ? vl_empty(x->ndim, x->shape, dt) : NULL;
  int rc = VL_OK;
  if ((n->needs[0] && !gx) || (n->needs[1] && !gy)) {
    rc = vl_last_status();
  } else {
    int64_t ne = vl_numel(x);
    if (dt == VL_FLOAT32)
      el_bwd_k(k, vl_data_ptr(x), vl_data_ptr(y), cdata(w), cdata(pw), ne, n->arg[0], cdata(gc), gs, mdata(gx),
               mdata(gy), VL_FLOAT32);
    else
      el_bwd_k(k, vl_data_ptr(x), vl_data_ptr(y), cdata(w), cdata(pw), ne, n->arg[0], cdata(gc), gs, mdata(gx),
               mdata(gy), VL_FLOAT64);
  }
  vl_tensor_release(gc);
  if (rc != VL_OK) {
    vl_tensor_release(gx);
    vl_tensor_release(gy);
    return rc;
  }
  if (gx) rc = give(n, 0, gx, gi);
  if (gy && rc == VL_OK) rc = give(n, 1, gy, gi);
  else vl_tensor_release(gy);
  return rc;
}

/* Does `t` broadcast to the shape of `to` without enlarging it? */
static int check_broadcast_to(const char *op, const char *what, const vl_tensor *t, const vl_tensor *to) {
  if (t == NULL) return VL_OK;
  bool ok = t->ndim <= to->ndim;
  for (int d = 0; ok && d < t->ndim; d++) {
    int64_t s = t->shape[t->ndim - 1 - d], o = to->shape[to->ndim - 1 - d];
    ok = s == o || s == 1;
  }
  if (!ok) {
    char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "%s: %s of shape %s does not broadcast to the input's shape %s", op, what,
                    vl_shape_str(t->ndim, t->shape, s1), vl_shape_str(to->ndim, to->shape, s2));
  }
  return VL_OK;
}

static vl_tensor *el_loss_fwd(el_kind k, const vl_tensor *x, const vl_tensor *y, const vl_tensor *w,
                              const vl_tensor *pw, vl_reduction red, double beta, bool rec) {
  const char *op = el_names[k];
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (need_tensor(op, "input", x) || need_tensor(op, "target", y) || need_float(op, "input", x) ||
      need_float(op, "target", y) || need_float(op, "weight", w) || need_float(op, "pos_weight", pw) ||
      check_reduction(op, red, k == EL_KL || k == EL_KL_LOG))
    return NULL;
  if (k == EL_SMOOTH_L1 && !(beta >= 0)) return vl_error(VL_EARG, "smooth_l1_loss: beta must be >= 0, got %g", beta), NULL;
  if (k == EL_SMOOTH_L1 && beta == 0) k = EL_L1; /* PyTorch: beta 0 is the L1 loss */
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if (k == EL_BCE) {
    if (!vl_same_shape(x, y))
      return vl_error(VL_ESHAPE, "%s: target of shape %s must have the input's shape %s", op,
                      vl_shape_str(y->ndim, y->shape, s1), vl_shape_str(x->ndim, x->shape, s2)),
             NULL;
    if (check_broadcast_to(op, "weight", w, x) || check_broadcast_to(op, "pos_weight", pw, x)) return NULL;
    nd = x->ndim;
    memcpy(shape, x->shape, sizeof shape);
  } else if (vl_broadcast_shapes(op, x->ndim, x->shape, y->ndim, y->shape, &nd, shape) != VL_OK) {
    return NULL;
  }
  vl_dtype odt = out_dtype(2, (const vl_tensor *[]){x, y}), dt = work_of(odt);
  vl_tensor *tmp[5] = {wcopy_expand(x, nd, shape, dt), wcopy_expand(y, nd, shape, dt), wcopy_expand(w, nd, shape, dt),
                       wcopy_expand(pw, nd, shape, dt), NULL};
  vl_tensor *out = NULL;
  if (tmp[0] && tmp[1] && (!w || tmp[2]) && (!pw || tmp[3])) {
    int64_t n = vl_numel(tmp[0]);
    double denom = 1;
    if (red == VL_REDUCTION_MEAN) denom = (double)n;
    if (red == VL_REDUCTION_BATCHMEAN) denom = x->ndim > 0 ? (double)x->shape[0] : 1.0;
    if (red == VL_REDUCTION_NONE) {
      out = vl_empty(nd, shape, dt);
      if (out) el_fwd(k, tmp[0], tmp[1], tmp[2], tmp[3], beta, out, NULL);
    } else {
      int64_t nch = (n + NN_SUM_CHUNK - 1) / NN_SUM_CHUNK;
      double *part = partials_new(nch, 1);
      if (part) {
        el_fwd(k, tmp[0], tmp[1], tmp[2], tmp[3], beta, NULL, part);
        out = vl_scalar(partials_sum(part, nch, 1, 0) / denom, dt);
        free(part);
      }
    }
    out = finish(out, odt);
    if (rec)
      out = record(out, op, el_backward, 2, (const vl_tensor *[]){x, y}, 4,
                   (const vl_tensor *[]){tmp[0], tmp[1], tmp[2], tmp[3]}, (const double[VL_NODE_MAX_ARGS]){beta, denom},
                   (const int64_t[VL_NODE_MAX_ARGS]){k, red});
  }
  release_all(5, tmp);
  return out;
}

static vl_tensor *el_entry(el_kind k, const vl_tensor *x, const vl_tensor *y, const vl_tensor *w,
                           const vl_tensor *pw, vl_reduction red, double beta) {
  bool rec = vl_ag_needed(2, (const vl_tensor *[]){x, y});
  bool was = nograd_begin();
  vl_tensor *r = el_loss_fwd(k, x, y, w, pw, red, beta, rec);
  vl_set_grad_enabled(was);
  return r;
}

vl_tensor *vl_mse_loss(const vl_tensor *input, const vl_tensor *target, vl_reduction red) {
  return el_entry(EL_MSE, input, target, NULL, NULL, red, 0);
}

vl_tensor *vl_l1_loss(const vl_tensor *input, const vl_tensor *target, vl_reduction red) {
  return el_entry(EL_L1, input, target, NULL, NULL, red, 0);
}

vl_tensor *vl_smooth_l1_loss(const vl_tensor *input, const vl_tensor *target, vl_reduction red, double beta) {
  return el_entry(EL_SMOOTH_L1, input, target, NULL, NULL, red, beta);
}

vl_tensor *vl_binary_cross_entropy_with_logits(const vl_tensor *input, const vl_tensor *target,
                                               const vl_tensor *weight, const vl_tensor *pos_weight,
                                               vl_reduction red) {
  return el_entry(EL_BCE, input, target, weight, pos_weight, red, 0);
}

vl_tensor *vl_kl_div(const vl_tensor *input, const vl_tensor *target, vl_reduction red, bool log_target) {
  return el_entry(log_target ? EL_KL_LOG : EL_KL, input, target, NULL, NULL, red, 0);
}

/* ------------------------------------------------------------------ */
/* cross_entropy, nll_loss                                             */
/* ------------------------------------------------------------------ */

/* The input as [N, C, S]: [C] is one sample, [N, C, d1, ...] has S = prod d. */
typedef struct cl_dims {
  int64_t N, C, S;
} cl_dims;

static cl_dims cl_dims_of(const vl_tensor *x) {
  cl_dims d;
  if (x->ndim == 1) {
    d.N = 1;
    d.C = x->shape[0];
    d.S = 1;
  } else {
    d.N = x->shape[0];
    d.C = x->shape[1];
    d.S = prod(2, x->ndim, x->shape);
  }
  return d;
}

/* exp of d for the float32 paths: below ln(FLT_MIN) gives 0 (see NN_EXPF_TINY). */
VL_ALWAYS_INLINE float expf_flush(float d) { return vl_expf(d < (float)NN_EXPF_TINY ? -INFINITY : d); }

/* log-sum-exp along the classes of position (n, s); S == 1 reads a
   contiguous row (vectorised). All -inf, an inf or a NaN among the
   classes give NaN, as PyTorch. */
VL_ALWAYS_INLINE double lse_at(const void *x, int64_t base, int64_t C, int64_t S, vl_dtype dt) {
  if (C == 0) return -INFINITY;
  double res = 0;
  if (S == 1) {
    NN_TYPED(dt, {
      const real *restrict r = (const real *)x + base;
      /* independent lanes keep the maxima in registers (an omp simd
         max reduction kept its accumulator in memory) */
      real lane[NN_MAX_LANES], m;
      for (int k = 0; k < NN_MAX_LANES; k++) lane[k] = r[0];
      int64_t c0 = 0;
      for (; c0 + NN_MAX_LANES <= C; c0 += NN_MAX_LANES)
        for (int k = 0; k < NN_MAX_LANES; k++) lane[k] = r[c0 + k] > lane[k] ? r[c0 + k] : lane[k];
      m = lane[0];
      for (int k = 1; k < NN_MAX_LANES; k++) m = lane[k] > m ? lane[k] : m;
      for (; c0 < C; c0++) m = r[c0] > m ? r[c0] : m;
      double s = 0;
      if (dt == VL_FLOAT32) {
        NN_SIMD_SUM(s)
        for (int64_t c = 0; c < C; c++) s += expf_flush((float)(r[c] - m));
      } else {
        NN_SIMD_SUM(s)
        for (int64_t c = 0; c < C; c++) s += exp((double)(r[c] - m));
      }
      res = isfinite((double)m) ? (double)m + log(s) : NAN;
    });
    return res;
  }
  double m = -INFINITY;
  for (int64_t c = 0; c < C; c++) {
    double v = LD(x, base + c * S, dt);
    m = v > m || v != v ? v : m;
  }
  if (!isfinite(m)) return NAN;
  double s = 0;
  for (int64_t c = 0; c < C; c++) s += EXPW(LD(x, base + c * S, dt) - m, dt);
  return m + log(s);
}

/* Positions per partial sum: about NN_SUM_CHUNK elements. */
static int64_t cl_chunk(int64_t C) { return VL_MAX(1, NN_SUM_CHUNK / VL_MAX(C, 1)); }

/* Class targets. part per chunk: [nll sum, smooth sum, weight sum].
   out (NULL for reductions): per-position loss. */
VL_ALWAYS_INLINE void ce_fwd_k(const void *x, const int64_t *t, const void *w, cl_dims d, int64_t ii, bool logits,
                               double eps, double *lse, void *out, double *part, vl_dtype dt) {
  int64_t P = d.N * d.S, C = d.C, S = d.S, pc = cl_chunk(C), nch = (P + pc - 1) / pc;
#pragma omp parallel for if (P * C > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t ch = 0; ch < nch; ch++) {
    int64_t lo = ch * pc, hi = VL_MIN(P, lo + pc);
    double snll = 0, ssm = 0, sw = 0;
    for (int64_t i = lo; i < hi; i++) {
      int64_t base = (i / S) * C * S + i % S, tc = t[i];
      double l = logits ? lse_at(x, base, C, S, dt) : 0.0, nll = 0, sm = 0;
      if (lse) lse[i] = l;
      if (tc != ii) {
        double wt = w ? LD(w, tc, dt) : 1.0;
        nll = -wt * (LD(x, base + tc * S, dt) - l);
        if (eps > 0 && S == 1 && !w) {
          NN_TYPED(dt, {
            const real *restrict r = (const real *)x + base;
            NN_SIMD_SUM(sm)
            for (int64_t c = 0; c < C; c++) sm += l - r[c];
          });
        } else if (eps > 0) {
          for (int64_t c = 0; c < C; c++) sm += (w ? LD(w, c, dt) : 1.0) * (l - LD(x, base + c * S, dt));
        }
        sw += wt;
      }
      if (out) ST(out, i, dt, (1 - eps) * nll + (eps > 0 ? eps / (double)C * sm : 0.0));
      snll += nll;
      ssm += sm;
    }
    part[ch * 3] = snll;
    part[ch * 3 + 1] = ssm;
    part[ch * 3 + 2] = sw;
  }
}

/* gx for class targets: the scales a (nll part) and b (smoothing part)
   of a position are g[i] (or gs) times the reduction's factors fa, fb:
   gx_c = a w_t (p_c - [c == t]) + b (p_c sum(w) - w_c). */
VL_ALWAYS_INLINE void ce_bwd_k(const void *x, const int64_t *t, const void *w, cl_dims d, int64_t ii, bool logits,
                               double eps, const double *lse, const void *g, double gs, double fa, double fb, void *gx,
                               vl_dtype dt) {
  int64_t P = d.N * d.S, C = d.C, S = d.S;
  double wtot = 0;
  for (int64_t c = 0; c < C; c++) wtot += w ? LD(w, c, dt) : 1.0;
#pragma omp parallel for if (P * C > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t i = 0; i < P; i++) {
    int64_t base = (i / S) * C * S + i % S, tc = t[i];
    if (tc == ii) {
      for (int64_t c = 0; c < C; c++) ST(gx, base + c * S, dt, 0.0);
      continue;
    }
    double gv = g ? LD(g, i, dt) : gs, a = gv * (1 - eps) * fa, b = eps > 0 ? gv * eps / (double)C * fb : 0.0;
    double wt = w ? LD(w, tc, dt) : 1.0;
    if (logits && S == 1) {
      /* gx_c = p_c (a w_t + b sum(w)) - b w_c */
      NN_TYPED(dt, {
        const real *restrict r = (const real *)x + base, *restrict wr = w;
        real *restrict gr = (real *)gx + base;
        real k = (real)(a * wt + b * wtot), br = (real)b;
        if (dt == VL_FLOAT32) {
          float l = (float)lse[i];
          if (wr) {
            NN_SIMD
            for (int64_t c = 0; c < C; c++) gr[c] = (real)expf_flush((float)r[c] - l) * k - br * wr[c];
          } else {
            NN_SIMD
            for (int64_t c = 0; c < C; c++) gr[c] = (real)expf_flush((float)r[c] - l) * k - br;
          }
        } else {
          double l = lse[i];
          for (int64_t c = 0; c < C; c++) gr[c] = (real)exp((double)r[c] - l) * k - br * (wr ? wr[c] : 1);
        }
      });
      ST(gx, base + tc, dt, LD(gx, base + tc, dt) - a * wt);
    } else if (logits) {
      double l = lse[i];
      for (int64_t c = 0; c < C; c++) {
        double p = EXPW(LD(x, base + c * S, dt) - l, dt);
        double v = a * wt * p;
        if (eps > 0) v += b * (p * wtot - (w ? LD(w, c, dt) : 1.0));
        ST(gx, base + c * S, dt, v);
      }
      ST(gx, base + tc * S, dt, LD(gx, base + tc * S, dt) - a * wt);
    } else {
      for (int64_t c = 0; c < C; c++) ST(gx, base + c * S, dt, 0.0);
      ST(gx, base + tc * S, dt, -a * wt);
    }
  }
}

/* Probability targets: q = t (1 - eps) + eps / C; loss = sum_c w_c q_c (lse - x_c). */
VL_ALWAYS_INLINE void cep_fwd_k(const void *x, const void *t, const void *w, cl_dims d, double eps, double *lse,
                                void *out, double *part, vl_dtype dt) {
  int64_t P = d.N * d.S, C = d.C, S = d.S, pc = cl_chunk(C), nch = (P + pc - 1) / pc;
#pragma omp parallel for if (P * C > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t ch = 0; ch < nch; ch++) {
    int64_t lo = ch * pc, hi = VL_MIN(P, lo + pc);
    double s = 0;
    for (int64_t i = lo; i < hi; i++) {
      int64_t base = (i / S) * C * S + i % S;
      double l = lse_at(x, base, C, S, dt), li = 0;
      lse[i] = l;
      for (int64_t c = 0; c < C; c++) {
        double q = LD(t, base + c * S, dt) * (1 - eps) + eps / (double)C;
        li += (w ? LD(w, c, dt) : 1.0) * q * (l - LD(x, base + c * S, dt));
      }
      if (out) ST(out, i, dt, li);
      s += li;
    }
    part[ch] = s;
  }
}

VL_ALWAYS_INLINE void cep_bwd_k(const void *x, const void *t, const void *w, cl_dims d, double eps, const double *lse,
                                const void *g, double gs, void *gx, void *gt, vl_dtype dt) {
  int64_t P = d.N * d.S, C = d.C, S = d.S;
#pragma omp parallel for if (P * C > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t i = 0; i < P; i++) {
    int64_t base = (i / S) * C * S + i % S;
    double s = g ? LD(g, i, dt) : gs, l = lse[i], Q = 0;
    for (int64_t c = 0; c < C; c++)
      Q += (w ? LD(w, c, dt) : 1.0) * (LD(t, base + c * S, dt) * (1 - eps) + eps / (double)C);
    for (int64_t c = 0; c < C; c++) {
      int64_t o = base + c * S;
      double wc = w ? LD(w, c, dt) : 1.0, xc = LD(x, o, dt);
      if (gx) {
        double q = LD(t, o, dt) * (1 - eps) + eps / (double)C;
        ST(gx, o, dt, s * (EXPW(xc - l, dt) * Q - wc * q));
      }
      if (gt) ST(gt, o, dt, s * (1 - eps) * wc * (l - xc));
    }
  }
}

/* saved: x, target, weight, lse (float64 [N*S]);
   iarg: prob targets, ignore_index, reduction, logits; arg: eps, fa, fb
   (the reduction's factors of the nll and smoothing parts) */
static int ce_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *x = n->saved[0], *t = n->saved[1], *w = n->saved[2], *lt = n->saved[3];
  bool prob = n->iarg[0] != 0, logits = n->iarg[3] != 0;
  int64_t ii = n->iarg[1];
  vl_reduction red = (vl_reduction)n->iarg[2];
  double eps = n->arg[0], fa = n->arg[1], fb = n->arg[2];
  vl_dtype dt = x->dtype;
  cl_dims d = cl_dims_of(x);
  vl_tensor *gc = NULL;
  double gs = 0;
  if (red == VL_REDUCTION_NONE) {
    gc = wcopy(g, dt);
    if (gc == NULL) return vl_last_status();
  } else {
    gs = scalar_of(g);
  }
  const double *lse = lt ? vl_data_ptr(lt) : NULL;
  int rc = VL_OK;
  bool ng = n->ninputs > 1 && n->needs[1];
  vl_tensor *gx = n->needs[0] ? vl_empty(x->ndim, x->shape, dt) : NULL;
  vl_tensor *gt = ng ? vl_empty(x->ndim, x->shape, dt) : NULL;
  if ((n->needs[0] && !gx) || (ng && !gt)) {
    rc = vl_last_status();
  } else if (prob) {
    if (dt == VL_FLOAT32)
      cep_bwd_k(vl_data_ptr(x), vl_data_ptr(t), cdata(w), d, eps, lse, cdata(gc), gs * fa, mdata(gx), mdata(gt),
                VL_FLOAT32);
    else
      cep_bwd_k(vl_data_ptr(x), vl_data_ptr(t), cdata(w), d, eps, lse, cdata(gc), gs * fa, mdata(gx), mdata(gt),
                VL_FLOAT64);
  } else if (gx) {
    if (dt == VL_FLOAT32)
      ce_bwd_k(vl_data_ptr(x), vl_data_ptr(t), cdata(w), d, ii, logits, eps, lse, cdata(gc), gs, fa, fb,
               vl_data_ptr(gx), VL_FLOAT32);
    else
      ce_bwd_k(vl_data_ptr(x), vl_data_ptr(t), cdata(w), d, ii, logits, eps, lse, cdata(gc), gs, fa, fb,
               vl_data_ptr(gx), VL_FLOAT64);
  }
  vl_tensor_release(gc);
  if (rc != VL_OK) {
    vl_tensor_release(gx);
    vl_tensor_release(gt);
    return rc;
  }
  if (gx) rc = give(n, 0, gx, gi);
  if (gt && rc == VL_OK) rc = give(n, 1, gt, gi);
  else vl_tensor_release(gt);
  return rc;
}

static vl_tensor *ce_fwd(const char *op, bool logits, const vl_tensor *x, const vl_tensor *t, const vl_tensor *w,
                         int64_t ii, vl_reduction red, double eps, bool rec) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR], s3[VL_SHAPE_STR];
  if (need_tensor(op, "input", x) || need_tensor(op, "target", t) || need_float(op, "input", x) ||
      need_float(op, "weight", w) || check_reduction(op, red, false))
    return NULL;
  if (!(eps >= 0 && eps <= 1)) return vl_error(VL_EARG, "%s: label_smoothing must be in [0, 1], got %g", op, eps), NULL;
  if (x->ndim < 1)
    return vl_error(VL_ESHAPE, "%s: input must be [C], [N, C] or [N, C, d1, ...], got a 0-d tensor", op), NULL;
  cl_dims d = cl_dims_of(x);
  bool prob = vl_dtype_is_float(t->dtype);
  if (prob && !logits)
    return vl_error(VL_EDTYPE, "%s: target must be an integer tensor of class indices, got %s", op,
                    vl_dtype_name(t->dtype)),
           NULL;
  if (!prob && t->dtype != VL_INT64 && t->dtype != VL_INT32 && t->dtype != VL_UINT8)
    return vl_error(VL_EDTYPE, "%s: target must hold class indices (int64) or probabilities (float), got %s", op,
                    vl_dtype_name(t->dtype)),
           NULL;
  if (prob) {
    if (!vl_same_shape(x, t))
      return vl_error(VL_ESHAPE, "%s: probability target of shape %s must have the input's shape %s", op,
                      vl_shape_str(t->ndim, t->shape, s1), vl_shape_str(x->ndim, x->shape, s2)),
             NULL;
  } else {
    int64_t want[VL_MAX_DIMS];
    int nw = 0;
    for (int k = 0; k < x->ndim; k++)
      if (k != (x->ndim == 1 ? 0 : 1)) want[nw++] = x->shape[k];
    bool ok = t->ndim == nw;
    for (int k = 0; ok && k < nw; k++) ok = t->shape[k] == want[k];
    if (!ok)
      return vl_error(VL_ESHAPE, "%s: target of shape %s does not fit input %s (expected %s: the input's shape without its class dim)",
                      op, vl_shape_str(t->ndim, t->shape, s1), vl_shape_str(x->ndim, x->shape, s2),
                      vl_shape_str(nw, want, s3)),
             NULL;
  }
  if (check_vec(op, "weight", w, d.C, "class")) return NULL;
  vl_dtype odt = out_dtype(3, (const vl_tensor *[]){x, prob ? t : NULL, w}), dt = work_of(odt);
  vl_tensor *tmp[4] = {wcopy(x, dt), prob ? wcopy(t, dt) : wcopy(t, VL_INT64), wcopy(w, dt), NULL};
  int64_t P = d.N * d.S;
  vl_tensor *out = NULL;
  double *part = NULL;
  if (!tmp[0] || !tmp[1] || (w && !tmp[2])) goto done;
  if (!prob) {
    const int64_t *tp = vl_data_ptr(tmp[1]);
    for (int64_t i = 0; i < P; i++)
      if (tp[i] != ii && (tp[i] < 0 || tp[i] >= d.C)) {
        vl_error(VL_EINDEX, "%s: target %lld out of range for %lld classes (expected 0..%lld or ignore_index %lld)", op,
                 (long long)tp[i], (long long)d.C, (long long)d.C - 1, (long long)ii);
        goto done;
      }
  }
  if (logits && (tmp[3] = vl_empty(1, &P, VL_FLOAT64)) == NULL) goto done;
  int64_t nch = (P + cl_chunk(d.C) - 1) / cl_chunk(d.C);
  if ((part = partials_new(nch, 3)) == NULL) goto done;
  int64_t oshape[VL_MAX_DIMS];
  int ond = 0;
  for (int k = 0; k < x->ndim; k++)
    if (k != (x->ndim == 1 ? 0 : 1)) oshape[ond++] = x->shape[k];
  vl_tensor *per = red == VL_REDUCTION_NONE ? vl_empty(ond, oshape, dt) : NULL;
  if (red == VL_REDUCTION_NONE && per == NULL) goto done;
  double *lse = tmp[3] ? vl_data_ptr(tmp[3]) : NULL;
  double fa = 1, fb = 1, value = 0;
  if (prob) {
    if (dt == VL_FLOAT32)
      cep_fwd_k(vl_data_ptr(tmp[0]), vl_data_ptr(tmp[1]), cdata(tmp[2]), d, eps, lse, mdata(per), part, VL_FLOAT32);
    else
      cep_fwd_k(vl_data_ptr(tmp[0]), vl_data_ptr(tmp[1]), cdata(tmp[2]), d, eps, lse, mdata(per), part, VL_FLOAT64);
    /* part has one sum per chunk here, packed at the front */
    for (int64_t c = 0; c < nch; c++) value += part[c];
    if (red == VL_REDUCTION_MEAN) fa = 1.0 / (double)P;
    value *= fa;
  } else {
    if (dt == VL_FLOAT32)
      ce_fwd_k(vl_data_ptr(tmp[0]), vl_data_ptr(tmp[1]), cdata(tmp[2]), d, ii, logits, eps, lse, mdata(per), part,
               VL_FLOAT32);
    else
      ce_fwd_k(vl_data_ptr(tmp[0]), vl_data_ptr(tmp[1]), cdata(tmp[2]), d, ii, logits, eps, lse, mdata(per), part,
               VL_FLOAT64);
    double snll = partials_sum(part, nch, 3, 0), ssm = partials_sum(part, nch, 3, 1), sw = partials_sum(part, nch, 3, 2);
    if (red == VL_REDUCTION_MEAN) {
      /* PyTorch 1.13: both parts over the summed weights of the
         counted (not ignored) targets; their count without weights */
      fa = fb = 1.0 / sw;
    }
    value = (1 - eps) * snll * fa;
    if (eps > 0) value += eps / (double)d.C * ssm * fb;
  }
  out = per ? per : vl_scalar(value, dt);
  out = finish(out, odt);
  if (rec)
    out = record(out, op, ce_backward, prob ? 2 : 1, (const vl_tensor *[]){x, t}, 4,
                 (const vl_tensor *[]){tmp[0], tmp[1], tmp[2], tmp[3]}, (const double[VL_NODE_MAX_ARGS]){eps, fa, fb},
                 (const int64_t[VL_NODE_MAX_ARGS]){prob, ii, red, logits});
done:
  free(part);
  release_all(4, tmp);
  return out;
}

vl_tensor *vl_cross_entropy(const vl_tensor *input, const vl_tensor *target, const vl_tensor *weight,
                            int64_t ignore_index, vl_reduction red, double label_smoothing) {
  bool prob = target && vl_dtype_is_float(target->dtype);
  bool rec = vl_ag_needed(prob ? 2 : 1, (const vl_tensor *[]){input, target});
  bool was = nograd_begin();
  vl_tensor *y = ce_fwd("cross_entropy", true, input, target, weight, ignore_index, red, label_smoothing, rec);
  vl_set_grad_enabled(was);
  return y;
}

vl_tensor *vl_nll_loss(const vl_tensor *input, const vl_tensor *target, const vl_tensor *weight,
                       int64_t ignore_index, vl_reduction red) {
  bool rec = vl_ag_needed(1, &input);
  bool was = nograd_begin();
  vl_tensor *y = ce_fwd("nll_loss", false, input, target, weight, ignore_index, red, 0, rec);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* cosine_similarity                                                   */
/* ------------------------------------------------------------------ */

/* a, b contiguous [O, D, In]; out [O, In]:
   cos = sum (a / max(|a|, eps)) (b / max(|b|, eps)). */
VL_ALWAYS_INLINE void cos_fwd_k(const void *a, const void *b, int64_t O, int64_t D, int64_t In, double eps, void *out,
                                vl_dtype dt) {
#pragma omp parallel for if (O * D * In > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t oi = 0; oi < O * In; oi++) {
    int64_t base = (oi / In) * D * In + oi % In;
    double ab = 0, aa = 0, bb = 0;
    for (int64_t k = 0; k < D; k++) {
      double x = LD(a, base + k * In, dt), y = LD(b, base + k * In, dt);
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    double na = VL_MAX(sqrt(aa), eps), nb = VL_MAX(sqrt(bb), eps);
    ST(out, oi, dt, ab / (na * nb));
  }
}

/* ga = g (b / (na nb) - cos a / na^2), gb likewise. */
VL_ALWAYS_INLINE void cos_bwd_k(const void *a, const void *b, int64_t O, int64_t D, int64_t In, double eps,
                                const void *g, void *ga, void *gb, vl_dtype dt) {
#pragma omp parallel for if (O * D * In > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t oi = 0; oi < O * In; oi++) {
    int64_t base = (oi / In) * D * In + oi % In;
    double ab = 0, aa = 0, bb = 0;
    for (int64_t k = 0; k < D; k++) {
      double x = LD(a, base + k * In, dt), y = LD(b, base + k * In, dt);
      ab += x * y;
      aa += x * x;
      bb += y * y;
    }
    double na = VL_MAX(sqrt(aa), eps), nb = VL_MAX(sqrt(bb), eps), gv = LD(g, oi, dt);
    double cs = ab / (na * nb), inv = 1.0 / (na * nb);
    for (int64_t k = 0; k < D; k++) {
      int64_t o = base + k * In;
      double x = LD(a, o, dt), y = LD(b, o, dt);
      if (ga) ST(ga, o, dt, gv * (y * inv - cs * x / (na * na)));
      if (gb) ST(gb, o, dt, gv * (x * inv - cs * y / (nb * nb)));
    }
  }
}

/* saved: a, b broadcast (work dtype); iarg: dim; arg: eps */
static int cos_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *a = n->saved[0], *b = n->saved[1];
  int dim = (int)n->iarg[0];
  double eps = n->arg[0];
  vl_dtype dt = a->dtype;
  int64_t O = prod(0, dim, a->shape), D = a->shape[dim], In = prod(dim + 1, a->ndim, a->shape);
  vl_tensor *gc = wcopy(g, dt);
  if (gc == NULL) return vl_last_status();
  vl_tensor *ga = n->needs[0] ? vl_empty(a->ndim, a->shape, dt) : NULL;
  vl_tensor *gb = n->needs[1] ? vl_empty(a->ndim, a->shape, dt) : NULL;
  int rc = VL_OK;
  if ((n->needs[0] && !ga) || (n->needs[1] && !gb)) {
    rc = vl_last_status();
  } else if (dt == VL_FLOAT32) {
    cos_bwd_k(vl_data_ptr(a), vl_data_ptr(b), O, D, In, eps, vl_data_ptr(gc), mdata(ga), mdata(gb), VL_FLOAT32);
  } else {
    cos_bwd_k(vl_data_ptr(a), vl_data_ptr(b), O, D, In, eps, vl_data_ptr(gc), mdata(ga), mdata(gb), VL_FLOAT64);
  }
  vl_tensor_release(gc);
  if (rc != VL_OK) {
    vl_tensor_release(ga);
    vl_tensor_release(gb);
    return rc;
  }
  if (ga) rc = give(n, 0, ga, gi);
  if (gb && rc == VL_OK) rc = give(n, 1, gb, gi);
  else vl_tensor_release(gb);
  return rc;
}

static vl_tensor *cos_fwd(const vl_tensor *a, const vl_tensor *b, int dim, double eps, bool rec) {
  const char *op = "cosine_similarity";
  if (need_tensor(op, "a", a) || need_tensor(op, "b", b) || need_float(op, "a", a) || need_float(op, "b", b) ||
      check_eps(op, eps))
    return NULL;
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if (vl_broadcast_shapes(op, a->ndim, a->shape, b->ndim, b->shape, &nd, shape) != VL_OK) return NULL;
  if (nd == 0) return vl_error(VL_ESHAPE, "%s: inputs must have at least 1 dim, got 0-d tensors", op), NULL;
  if (vl_wrap_dim(op, dim, nd, &dim) != VL_OK) return NULL;
  vl_dtype odt = out_dtype(2, (const vl_tensor *[]){a, b}), dt = work_of(odt);
  vl_tensor *tmp[2] = {wcopy_expand(a, nd, shape, dt), wcopy_expand(b, nd, shape, dt)};
  vl_tensor *out = NULL;
  if (tmp[0] && tmp[1]) {
    int64_t O = prod(0, dim, shape), D = shape[dim], In = prod(dim + 1, nd, shape), oshape[VL_MAX_DIMS];
    int ond = 0;
    for (int k = 0; k < nd; k++)
      if (k != dim) oshape[ond++] = shape[k];
    out = vl_empty(ond, oshape, dt);
    if (out && dt == VL_FLOAT32)
      cos_fwd_k(vl_data_ptr(tmp[0]), vl_data_ptr(tmp[1]), O, D, In, eps, vl_data_ptr(out), VL_FLOAT32);
    else if (out)
      cos_fwd_k(vl_data_ptr(tmp[0]), vl_data_ptr(tmp[1]), O, D, In, eps, vl_data_ptr(out), VL_FLOAT64);
    out = finish(out, odt);
    if (rec)
      out = record(out, op, cos_backward, 2, (const vl_tensor *[]){a, b}, 2, (const vl_tensor *[]){tmp[0], tmp[1]},
                   (const double[VL_NODE_MAX_ARGS]){eps}, (const int64_t[VL_NODE_MAX_ARGS]){dim});
  }
  release_all(2, tmp);
  return out;
}

vl_tensor *vl_cosine_similarity(const vl_tensor *a, const vl_tensor *b, int dim, double eps) {
  bool rec = vl_ag_needed(2, (const vl_tensor *[]){a, b});
  bool was = nograd_begin();
  vl_tensor *y = cos_fwd(a, b, dim, eps, rec);
  vl_set_grad_enabled(was);
  return y;
}
