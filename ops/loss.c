/*
** loss.c — the losses of ops/vl.h "Neural network ops": cross_entropy,
** nll_loss, mse, l1, smooth_l1, binary cross entropy with logits, kl_div,
** cosine_similarity, each a fused kernel with its backward beside it.
** Conventions (work dtype, fixed-chunk sums, recording) as in nn.c.
*/
#include "nn_internal.h"

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
  bool was = vl_ag_pause();
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
  bool was = vl_ag_pause();
  vl_tensor *y = ce_fwd("cross_entropy", true, input, target, weight, ignore_index, red, label_smoothing, rec);
  vl_set_grad_enabled(was);
  return y;
}

vl_tensor *vl_nll_loss(const vl_tensor *input, const vl_tensor *target, const vl_tensor *weight,
                       int64_t ignore_index, vl_reduction red) {
  bool rec = vl_ag_needed(1, &input);
  bool was = vl_ag_pause();
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
  bool was = vl_ag_pause();
  vl_tensor *y = cos_fwd(a, b, dim, eps, rec);
  vl_set_grad_enabled(was);
  return y;
}
