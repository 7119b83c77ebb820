/*
** nn.c — neural network ops (ops/vl.h "Neural network ops"): linear,
** batch/layer/RMS/group normalisation, dropout and embedding; the losses
** (cross_entropy, nll_loss, mse, l1, smooth_l1, binary cross entropy with
** logits, kl_div, cosine_similarity) are in loss.c. Each op has its backward beside it.
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
#include "nn_internal.h"

/* ------------------------------------------------------------------ */
/* linear                                                              */
/* ------------------------------------------------------------------ */

/* C[M,N] (contiguous) = op(A) @ op(B) + beta * C. */
static void nn_gemm(vl_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A,
                    int64_t lda, const void *B, int64_t ldb, double beta, void *C) {
  if (M == 0 || N == 0) return;
  if (beta == 0) memset(C, 0, (size_t)(M * N) * vl_dtype_size(dt)); /* C may hold NaN bits */
  if (K == 0) return;
  if (dt == VL_FLOAT32) {
    vl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, (float)beta, C, N);
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
              (int)K, 1.0, A, (int)lda, B, (int)ldb, beta, C, (int)N);
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
  bool was = vl_ag_pause();
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
  bool was = vl_ag_pause();
  vl_tensor *y = ln_fwd("layer_norm", x, ndims, weight, bias, eps, false, rec);
  vl_set_grad_enabled(was);
  return y;
}

vl_tensor *vl_rms_norm(const vl_tensor *x, int ndims, const vl_tensor *weight, double eps) {
  bool rec = vl_ag_needed(2, (const vl_tensor *[]){x, weight});
  bool was = vl_ag_pause();
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
  if (G < 1 || G > (C > 0 ? C : 1) || C % G != 0) /* G <= C also keeps N * G from overflowing */
    return vl_error(VL_EARG, "group_norm: %lld channels do not split into %lld groups (groups must be 1..C and divide C)",
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
  bool was = vl_ag_pause();
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
  bool was = vl_ag_pause();
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
  bool was = vl_ag_pause();
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
  bool was = vl_ag_pause();
  vl_tensor *y = embedding_fwd(indices, weight, padding_idx, rec);
  vl_set_grad_enabled(was);
  return y;
}

