/*
** conv3d.c — 3-D convolution and pooling in NCDHW (prefix vl_): conv3d,
** max_pool3d, avg_pool3d, adaptive_avg_pool3d, each with its backward.
**
** conv3d is vol2col + GEMM as conv2d in conv.c: per image n and group g,
**   forward      y[n,g]  = W_g @ vol2col(x[n,g])
**   grad input   gx[n,g] = col2vol(W_g^T @ gy[n,g])
**   grad weight  gW_g    = sum_n gy[n,g] @ vol2col(x[n,g])^T
** with W seen as [O, C/G*kD*kH*kW]. vol2col and its GEMMs run on tiles
** of output positions (a column buffer of about 4 MB, reused). With at
** least two images and more than one thread, images go over OpenMP
** threads (each with its own column buffer, OpenBLAS single-threaded
** inside; grad-weight partial sums per thread, added in thread order).
**
** dtypes: float32 and float64 (float16/bfloat16 computed in float32);
** inputs of any layout are made contiguous first. Unbatched [C,D,H,W]
** inputs get a batch dim added and removed through views.
*/
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <omp.h>

#include "autograd.h"
#include "conv_internal.h"

#define C3_MAX_PARAM ((int64_t)1 << 24)

typedef struct g3 {
  int64_t G, Ci, D, H, W, R, OD, OH, OW;
  int64_t k[3], s[3], p[3], d[3];
} g3;

static inline int64_t g3_K(const g3 *g) { return g->Ci * g->k[0] * g->k[1] * g->k[2]; }
static inline int64_t g3_L(const g3 *g) { return g->OD * g->OH * g->OW; }

/* vol2col works on tiles of output columns [l0, l0 + lc) (positions
   (od, oh, ow) in row-major order), so that the column buffer stays small
   (C3_TILE_BYTES) and cache-warm between the copy and its GEMM, instead of
   a K x L buffer of hundreds of MB whose fresh pages cost more than the
   GEMM. Each row r of the tile is one (channel, kd, kh, kw); a tile row
   is copied as runs along ow. */
/* The kernel taps [lo, hi) of a window starting at `start` (dilation d,
   k taps) that fall inside [0, n). */
static inline void krange(int64_t start, int64_t d, int64_t k, int64_t n, int64_t *lo, int64_t *hi) {
  *lo = start < 0 ? VL_MIN((-start + d - 1) / d, k) : 0;
  *hi = start >= n ? 0 : VL_MIN(k, (n - 1 - start) / d + 1);
  if (*hi < *lo) *hi = *lo;
}

#define C3_TILE_BYTES ((int64_t)4 << 20)
#define C3_TILE_MIN 256

static int64_t g3_tile(const g3 *g, size_t es) {
  int64_t K = VL_MAX(g3_K(g), 1), L = g3_L(g);
  int64_t t = VL_MAX(C3_TILE_BYTES / (K * (int64_t)es), C3_TILE_MIN);
  return VL_MAX(VL_MIN(t, L), 1);
}

#define DEFINE_VOL2COL(T)                                                                            \
  static void vol2col_##T(const g3 *g, const T *restrict img, T *restrict col, int64_t l0, int64_t lc) { \
    int64_t kk = g->k[0] * g->k[1] * g->k[2], rows = g3_K(g), plane = g->OH * g->OW;                 \
    for (int64_t r = 0; r < rows; r++) {                                                             \
      int64_t c = r / kk, q = r % kk;                                                                \
      int64_t kd = q / (g->k[1] * g->k[2]), kh = (q / g->k[2]) % g->k[1], kw = q % g->k[2];         \
      const T *restrict vol = img + c * g->D * g->H * g->W;                                          \
      T *restrict dst = col + r * lc;                                                                \
      for (int64_t l = l0, end = l0 + lc; l < end;) {                                                \
        int64_t od = l / plane, oh = (l % plane) / g->OW, ow0 = l % g->OW;                           \
        int64_t n = VL_MIN(g->OW - ow0, end - l);                                                    \
        int64_t id = od * g->s[0] - g->p[0] + kd * g->d[0];                                          \
        int64_t ih = oh * g->s[1] - g->p[1] + kh * g->d[1];                                          \
        T *restrict d = dst + (l - l0);                                                              \
        if (id < 0 || id >= g->D || ih < 0 || ih >= g->H) {                                          \
          memset(d, 0, (size_t)n * sizeof(T));                                                       \
        } else {                                                                                     \
          const T *restrict src = vol + (id * g->H + ih) * g->W;                                     \
          int64_t sw = g->s[2], off = kw * g->d[2] - g->p[2], jl, jh;                                \
          krange(ow0 * sw + off, sw, n, g->W, &jl, &jh);                                             \
          if (jl > 0) memset(d, 0, (size_t)jl * sizeof(T));                                          \
          if (jh < n) memset(d + jh, 0, (size_t)(n - jh) * sizeof(T));                               \
          const T *restrict sp = src + (ow0 + jl) * sw + off;                                        \
          if (sw == 1) memcpy(d + jl, sp, (size_t)(jh - jl) * sizeof(T));                            \
          else                                                                                       \
            for (int64_t j = 0; j < jh - jl; j++) d[jl + j] = sp[j * sw];                            \
        }                                                                                            \
        l += n;                                                                                      \
      }                                                                                              \
    }                                                                                                \
  }                                                                                                  \
  /* img += the tile's columns put back (img zeroed by the caller) */                               \
  static void col2vol_##T(const g3 *g, const T *restrict col, T *restrict img, int64_t l0, int64_t lc) { \
    int64_t kk = g->k[0] * g->k[1] * g->k[2], rows = g3_K(g), plane = g->OH * g->OW;                 \
    for (int64_t r = 0; r < rows; r++) {                                                             \
      int64_t c = r / kk, q = r % kk;                                                                \
      int64_t kd = q / (g->k[1] * g->k[2]), kh = (q / g->k[2]) % g->k[1], kw = q % g->k[2];         \
      T *restrict vol = img + c * g->D * g->H * g->W;                                                \
      const T *restrict src = col + r * lc;                                                          \
      for (int64_t l = l0, end = l0 + lc; l < end;) {                                                \
        int64_t od = l / plane, oh = (l % plane) / g->OW, ow0 = l % g->OW;                           \
        int64_t n = VL_MIN(g->OW - ow0, end - l);                                                    \
        int64_t id = od * g->s[0] - g->p[0] + kd * g->d[0];                                          \
        int64_t ih = oh * g->s[1] - g->p[1] + kh * g->d[1];                                          \
        if (id >= 0 && id < g->D && ih >= 0 && ih < g->H) {                                          \
          T *restrict dst = vol + (id * g->H + ih) * g->W;                                           \
          const T *restrict s = src + (l - l0);                                                      \
          int64_t sw = g->s[2], off = kw * g->d[2] - g->p[2], jl, jh;                                \
          krange(ow0 * sw + off, sw, n, g->W, &jl, &jh);                                             \
          T *restrict dp = dst + (ow0 + jl) * sw + off;                                              \
          if (sw == 1)                                                                               \
            for (int64_t j = 0; j < jh - jl; j++) dp[j] += s[jl + j];                                \
          else                                                                                       \
            for (int64_t j = 0; j < jh - jl; j++) dp[j * sw] += s[jl + j];                           \
        }                                                                                            \
        l += n;                                                                                      \
      }                                                                                              \
    }                                                                                                \
  }
DEFINE_VOL2COL(float)
DEFINE_VOL2COL(double)

static void vol2col(vl_dtype dt, const g3 *g, const void *img, void *col, int64_t l0, int64_t lc) {
  if (dt == VL_FLOAT32) vol2col_float(g, img, col, l0, lc);
  else vol2col_double(g, img, col, l0, lc);
}

static void col2vol(vl_dtype dt, const g3 *g, const void *col, void *img, int64_t l0, int64_t lc) {
  if (dt == VL_FLOAT32) col2vol_float(g, col, img, l0, lc);
  else col2vol_double(g, col, img, l0, lc);
}

/* The multiply-adds of a batch's GEMMs (for plan_begin). */
static double work3(const g3 *g, int64_t N) {
  return (double)N * (double)g->G * (double)g->R * (double)g3_K(g) * (double)g3_L(g);
}

/* cols[n,g] = W_g @ vol2col(img[n,g]), tile by tile */
static int unfold_mm(vl_dtype dt, const g3 *g, int64_t N, const char *img, const char *w, char *cols) {
  size_t es = vl_dtype_size(dt);
  int64_t K = g3_K(g), L = g3_L(g), DHW = g->D * g->H * g->W, LT = g3_tile(g, es);
  batch_plan p = plan_begin(work3(g, N), N);
  vl_tensor *buf = scratch(VL_MAX((int64_t)p.nthreads * K * LT, 1), dt);
  if (buf == NULL) {
    plan_end(&p);
    return vl_last_status();
  }
  char *bufp = vl_data_ptr(buf);
#pragma omp parallel for if (p.par) num_threads(p.nthreads) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    char *col = bufp + (size_t)(omp_get_thread_num() * K * LT) * es;
    for (int64_t gi = 0; gi < g->G; gi++) {
      const char *im = img + (size_t)((n * g->G + gi) * g->Ci * DHW) * es;
      char *out = cols + (size_t)((n * g->G + gi) * g->R * L) * es;
      for (int64_t l0 = 0; l0 < L; l0 += LT) {
        int64_t lc = VL_MIN(LT, L - l0);
        vol2col(dt, g, im, col, l0, lc);
        gemm(dt, false, false, g->R, lc, K, w + (size_t)(gi * g->R * K) * es, K, col, lc, 0,
             out + (size_t)l0 * es, L);
      }
    }
  }
  plan_end(&p);
  vl_tensor_release(buf);
  return VL_OK;
}

/* img[n,g] = col2vol(W_g^T @ cols[n,g]), tile by tile */
static int mm_fold(vl_dtype dt, const g3 *g, int64_t N, const char *cols, const char *w, char *img) {
  size_t es = vl_dtype_size(dt);
  int64_t K = g3_K(g), L = g3_L(g), DHW = g->D * g->H * g->W, LT = g3_tile(g, es);
  batch_plan p = plan_begin(work3(g, N), N);
  vl_tensor *buf = scratch(VL_MAX((int64_t)p.nthreads * K * LT, 1), dt);
  if (buf == NULL) {
    plan_end(&p);
    return vl_last_status();
  }
  char *bufp = vl_data_ptr(buf);
#pragma omp parallel for if (p.par) num_threads(p.nthreads) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    char *col = bufp + (size_t)(omp_get_thread_num() * K * LT) * es;
    for (int64_t gi = 0; gi < g->G; gi++) {
      char *im = img + (size_t)((n * g->G + gi) * g->Ci * DHW) * es;
      const char *in = cols + (size_t)((n * g->G + gi) * g->R * L) * es;
      memset(im, 0, (size_t)(g->Ci * DHW) * es);
      for (int64_t l0 = 0; l0 < L; l0 += LT) {
        int64_t lc = VL_MIN(LT, L - l0);
        gemm(dt, true, false, K, lc, g->R, w + (size_t)(gi * g->R * K) * es, K, in + (size_t)l0 * es, L, 0, col, lc);
        col2vol(dt, g, col, im, l0, lc);
      }
    }
  }
  plan_end(&p);
  vl_tensor_release(buf);
  return VL_OK;
}

/* gw[g] = sum_n cols[n,g] @ vol2col(img[n,g])^T, tile by tile */
static int wgrad(vl_dtype dt, const g3 *g, int64_t N, const char *img, const char *cols, char *gw) {
  size_t es = vl_dtype_size(dt);
  int64_t K = g3_K(g), L = g3_L(g), DHW = g->D * g->H * g->W, WN = g->G * g->R * K, LT = g3_tile(g, es);
  memset(gw, 0, (size_t)WN * es);
  batch_plan p = plan_begin(work3(g, N), N);
  int64_t per = K * LT + (p.par ? WN : 0);
  vl_tensor *buf = scratch(VL_MAX((int64_t)p.nthreads * per, 1), dt);
  if (buf == NULL) {
    plan_end(&p);
    return vl_last_status();
  }
  char *bufp = vl_data_ptr(buf);
#pragma omp parallel num_threads(p.nthreads) if (p.par)
  {
    int tid = omp_get_thread_num();
    char *col = bufp + (size_t)(tid * per) * es;
    char *acc = p.par ? col + (size_t)(K * LT) * es : gw;
    if (p.par) memset(acc, 0, (size_t)WN * es);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      for (int64_t gi = 0; gi < g->G; gi++) {
        const char *im = img + (size_t)((n * g->G + gi) * g->Ci * DHW) * es;
        const char *gy = cols + (size_t)((n * g->G + gi) * g->R * L) * es;
        for (int64_t l0 = 0; l0 < L; l0 += LT) {
          int64_t lc = VL_MIN(LT, L - l0);
          vol2col(dt, g, im, col, l0, lc);
          gemm(dt, false, true, g->R, K, lc, gy + (size_t)l0 * es, L, col, lc, 1, acc + (size_t)(gi * g->R * K) * es, K);
        }
      }
    }
  }
  if (p.par) {
    for (int t = 0; t < p.nthreads; t++) {
      const char *acc = bufp + (size_t)(t * per + K * LT) * es;
      if (dt == VL_FLOAT32) {
        float *restrict d = (float *)gw;
        const float *restrict s = (const float *)acc;
        for (int64_t i = 0; i < WN; i++) d[i] += s[i];
      } else {
        double *restrict d = (double *)gw;
        const double *restrict s = (const double *)acc;
        for (int64_t i = 0; i < WN; i++) d[i] += s[i];
      }
    }
  }
  plan_end(&p);
  vl_tensor_release(buf);
  return VL_OK;
}

/* ---- shared helpers ---- */


static int check3(const char *op, const char *what, const int64_t v[3], int64_t min) {
  for (int i = 0; i < 3; i++)
    if (v[i] < min || v[i] > C3_MAX_PARAM)
      return vl_error(VL_EARG, "%s: %s must be %s and at most %lld, got {%lld, %lld, %lld}", op, what,
                      min == 1 ? "at least 1" : "non-negative", (long long)C3_MAX_PARAM, (long long)v[0],
                      (long long)v[1], (long long)v[2]);
  return VL_OK;
}


static vl_tensor *any_batch(const vl_tensor *x, batched_fn fn, const void *args) {
  return x->ndim == 4 ? unbatched(x, fn, args) : fn(x, args);
}

static int need_5d(const char *op, const vl_tensor *x) {
  char s1[VL_SHAPE_STR];
  if (x->ndim != 5)
    return vl_error(VL_ESHAPE, "%s: expected a 5-d input [N,C,D,H,W] (or 4-d [C,D,H,W]), got %d-d %s", op, x->ndim,
                    vl_shape_str(x->ndim, x->shape, s1));
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* conv3d                                                               */
/* ------------------------------------------------------------------ */

typedef struct c3_ctx {
  g3 g;
  int64_t N;
} c3_ctx;

static int conv3d_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  const c3_ctx *cx = nd->extra;
  const vl_tensor *x = nd->saved[0], *w = nd->saved[1];
  vl_dtype dt = x->dtype;
  vl_tensor *gc = working(g, dt);
  if (gc == NULL) return vl_last_status();
  const char *gp = vl_data_ptr(gc), *xp = vl_data_ptr(x), *wp = vl_data_ptr(w);
  int rc = VL_OK;
  if (nd->needs[0]) {
    vl_tensor *gx = vl_empty(x->ndim, x->shape, dt);
    if (gx == NULL) rc = vl_last_status();
    else rc = mm_fold(dt, &cx->g, cx->N, gp, wp, vl_data_ptr(gx));
    if (rc != VL_OK) vl_tensor_release(gx);
    else if ((gi[0] = vl_ag_reduce_to(nd, 0, gx)) == NULL) rc = vl_last_status();
  }
  if (rc == VL_OK && nd->needs[1]) {
    vl_tensor *gw = vl_empty(w->ndim, w->shape, dt);
    if (gw == NULL) rc = vl_last_status();
    else rc = wgrad(dt, &cx->g, cx->N, xp, gp, vl_data_ptr(gw));
    if (rc != VL_OK) vl_tensor_release(gw);
    else if ((gi[1] = vl_ag_reduce_to(nd, 1, gw)) == NULL) rc = vl_last_status();
  }
  if (rc == VL_OK && nd->ninputs > 2 && nd->needs[2]) {
    int64_t N = gc->shape[0], C = gc->shape[1], S = g3_L(&cx->g);
    vl_tensor *gb = vl_empty(1, &C, dt);
    if (gb == NULL) rc = vl_last_status();
    else {
      char *bp = vl_data_ptr(gb);
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
      for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t n = 0; n < N; n++) {
          double r = 0;
          if (dt == VL_FLOAT32) {
            const float *restrict q = (const float *)gp + (n * C + c) * S;
#pragma omp simd reduction(+ : r)
            for (int64_t i = 0; i < S; i++) r += (double)q[i];
          } else {
            const double *restrict q = (const double *)gp + (n * C + c) * S;
#pragma omp simd reduction(+ : r)
            for (int64_t i = 0; i < S; i++) r += q[i];
          }
          s += r;
        }
        vl_store(bp, c, dt, s);
      }
      if ((gi[2] = vl_ag_reduce_to(nd, 2, gb)) == NULL) rc = vl_last_status();
    }
  }
  vl_tensor_release(gc);
  return rc;
}

typedef struct c3_args {
  const vl_tensor *w, *b;
  int64_t stride[3], pad[6], dil[3], groups; /* pad: 3 before, then 3 after */
} c3_args;

static vl_tensor *conv3d_batched(const vl_tensor *x, const void *vargs) {
  const c3_args *a = vargs;
  const char *op = "conv3d";
  const vl_tensor *w = a->w, *b = a->b;
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (need_float(op, "input", x) || need_float(op, "weight", w) || (b && need_float(op, "bias", b))) return NULL;
  if (x->dtype != w->dtype || (b && b->dtype != x->dtype))
    return vl_error(VL_EDTYPE, "%s: input is %s but weight is %s%s%s (convert them to one dtype)", op,
                    vl_dtype_name(x->dtype), vl_dtype_name(w->dtype), b ? " and bias " : "",
                    b ? vl_dtype_name(b->dtype) : ""),
           NULL;
  if (need_5d(op, x)) return NULL;
  if (w->ndim != 5)
    return vl_error(VL_ESHAPE, "%s: expected a 5-d weight [O,C/groups,kD,kH,kW], got %d-d %s", op, w->ndim,
                    vl_shape_str(w->ndim, w->shape, s1)),
           NULL;
  if (a->groups < 1) return vl_error(VL_EARG, "%s: groups must be at least 1, got %lld", op, (long long)a->groups), NULL;
  if (check3(op, "stride", a->stride, 1) || check3(op, "dilation", a->dil, 1) || check3(op, "padding", a->pad, 0) || check3(op, "padding", a->pad + 3, 0))
    return NULL;
  int64_t N = x->shape[0], C = x->shape[1], O = w->shape[0], G = a->groups;
  if (w->shape[1] * G != C)
    return vl_error(VL_ESHAPE, "%s: input has %lld channels but weight expects %lld (weight shape %s, groups %lld)",
                    op, (long long)C, (long long)(w->shape[1] * G), vl_shape_str(5, w->shape, s1), (long long)G),
           NULL;
  if (O % G != 0)
    return vl_error(VL_ESHAPE, "%s: weight has %lld output channels, not divisible by groups %lld (weight shape %s)",
                    op, (long long)O, (long long)G, vl_shape_str(5, w->shape, s1)),
           NULL;
  if (b && (b->ndim != 1 || b->shape[0] != O))
    return vl_error(VL_ESHAPE, "%s: bias must have shape [%lld] (one per output channel), got %s", op, (long long)O,
                    vl_shape_str(b->ndim, b->shape, s1)),
           NULL;
  g3 g = {.G = G, .Ci = C / G, .D = x->shape[2], .H = x->shape[3], .W = x->shape[4], .R = O / G};
  int64_t out[3];
  for (int i = 0; i < 3; i++) {
    int64_t k = w->shape[2 + i];
    if (k < 1)
      return vl_error(VL_ESHAPE, "%s: weight has an empty kernel (weight shape %s)", op,
                      vl_shape_str(5, w->shape, s1)),
             NULL;
    int64_t ek = a->dil[i] * (k - 1) + 1, P = x->shape[2 + i] + a->pad[i] + a->pad[3 + i];
    if (P < ek)
      return vl_error(VL_ESHAPE,
                      "%s: kernel %lldx%lldx%lld (dilation {%lld, %lld, %lld}) is larger than the padded input %s "
                      "(padding {%lld, %lld, %lld} before, {%lld, %lld, %lld} after)",
                      op, (long long)w->shape[2], (long long)w->shape[3], (long long)w->shape[4],
                      (long long)a->dil[0], (long long)a->dil[1], (long long)a->dil[2],
                      vl_shape_str(5, x->shape, s2), (long long)a->pad[0], (long long)a->pad[1],
                      (long long)a->pad[2], (long long)a->pad[3], (long long)a->pad[4], (long long)a->pad[5]),
             NULL;
    out[i] = (P - ek) / a->stride[i] + 1;
    g.k[i] = k, g.s[i] = a->stride[i], g.p[i] = a->pad[i], g.d[i] = a->dil[i];
  }
  g.OD = out[0], g.OH = out[1], g.OW = out[2];
  int64_t K = g3_K(&g), L = g3_L(&g);
  if (K > INT_MAX || L > INT_MAX || g.R > INT_MAX || (L > 0 && K > (INT64_MAX >> 10) / L))
    return vl_error(VL_ENOMEM, "%s: the problem is too large for BLAS (sizes %lld, %lld, %lld; at most %d)", op,
                    (long long)g.R, (long long)K, (long long)L, INT_MAX),
           NULL;
  int64_t yshape[5] = {N, O, g.OD, g.OH, g.OW};

  bool need = vl_ag_needed(3, (const vl_tensor *[]){x, w, b});
  vl_dtype dt = compute_dtype(x->dtype);
  grad_guard gg = grad_off();
  vl_tensor *xc = working(x, dt), *wc = xc ? working(w, dt) : NULL, *bc = NULL, *y = NULL;
  int rc = xc && wc ? VL_OK : vl_last_status();
  if (rc == VL_OK && b && (bc = working(b, dt)) == NULL) rc = vl_last_status();
  if (rc == VL_OK && (y = vl_empty(5, yshape, dt)) == NULL) rc = vl_last_status();
  if (rc == VL_OK) rc = unfold_mm(dt, &g, N, vl_data_ptr(xc), vl_data_ptr(wc), vl_data_ptr(y));
  if (rc == VL_OK && bc) {
    char *yp = vl_data_ptr(y);
    const char *bp = vl_data_ptr(bc);
    for (int64_t r = 0; r < N * O; r++) {
      double v = vl_load(bp, r % O, dt);
      if (dt == VL_FLOAT32) {
        float *restrict q = (float *)yp + r * L;
        for (int64_t i = 0; i < L; i++) q[i] += (float)v;
      } else {
        double *restrict q = (double *)yp + r * L;
        for (int64_t i = 0; i < L; i++) q[i] += v;
      }
    }
  }
  if (rc == VL_OK && y->dtype != x->dtype) {
    vl_tensor *r = vl_to_dtype(y, x->dtype);
    vl_tensor_release(y);
    y = r;
    if (y == NULL) rc = vl_last_status();
  }
  grad_restore(gg);
  vl_tensor_release(bc);
  c3_ctx cx = {.g = g, .N = N};
  return conv_finish(op, rc, need, conv3d_backward, x, w, b, xc, wc, y, &cx, sizeof cx);
}

vl_tensor *vl_conv3d_pad(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[3],
                         const int64_t padding[6], const int64_t dilation[3], int64_t groups) {
  c3_args a = {.w = w, .b = b, .groups = groups};
  for (int i = 0; i < 3; i++) {
    a.stride[i] = stride ? stride[i] : 1;
    a.dil[i] = dilation ? dilation[i] : 1;
  }
  for (int i = 0; i < 6; i++) a.pad[i] = padding ? padding[i] : 0;
  return any_batch(x, conv3d_batched, &a);
}

vl_tensor *vl_conv3d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[3],
                     const int64_t padding[3], const int64_t dilation[3], int64_t groups) {
  int64_t pad[6] = {0, 0, 0, 0, 0, 0};
  if (padding)
    for (int i = 0; i < 3; i++) pad[i] = pad[3 + i] = padding[i];
  return vl_conv3d_pad(x, w, b, stride, pad, dilation, groups);
}

/* ------------------------------------------------------------------ */
/* Pooling                                                              */
/* ------------------------------------------------------------------ */

typedef struct p3 {
  const char *op;
  int kind;                 /* 0 max, 1 avg, 2 adaptive */
  int64_t planes, in[3], out[3], k[3], s[3], p[3], d[3];
  bool ceil_mode, count_include_pad;
  vl_tensor **indices;
} p3;


/* window of output position o along dim i: [lo, hi) in the input, and the
   (count_include_pad) window size. */
static inline void win(const p3 *a, int i, int64_t o, int64_t *lo, int64_t *hi, int64_t *full) {
  if (a->kind == 2) {
    *lo = (o * a->in[i]) / a->out[i];
    *hi = ((o + 1) * a->in[i] + a->out[i] - 1) / a->out[i];
    *full = *hi - *lo;
    return;
  }
  int64_t s = o * a->s[i] - a->p[i], e = VL_MIN(s + a->k[i], a->in[i] + a->p[i]);
  *full = e - s;
  *lo = VL_MAX(s, 0), *hi = VL_MIN(e, a->in[i]);
}

/* Per-plane kernels, typed (T = float, double). Max: windows scanned in
   (kd, kh, kw) order, the first maximum wins a tie, the first NaN ends the
   scan (it is the result). Avg: window sums over contiguous rows, divided
   once. The plane loops over N*C planes run in parallel (OpenMP). */
#define DEFINE_POOL3(T)                                                                                  \
  static void maxpool_plane_##T(const p3 *a, const T *restrict x, T *restrict y, int64_t *restrict ip) {  \
    int64_t o = 0, H = a->in[1], W = a->in[2];                                                           \
    for (int64_t od = 0; od < a->out[0]; od++) {                                                         \
      int64_t d0 = od * a->s[0] - a->p[0], dl, dh;                                                       \
      krange(d0, a->d[0], a->k[0], a->in[0], &dl, &dh);                                                  \
      for (int64_t oh = 0; oh < a->out[1]; oh++) {                                                       \
        int64_t h0 = oh * a->s[1] - a->p[1], hl, hh;                                                     \
        krange(h0, a->d[1], a->k[1], H, &hl, &hh);                                                       \
        for (int64_t ow = 0; ow < a->out[2]; ow++, o++) {                                                \
          int64_t w0 = ow * a->s[2] - a->p[2], wl, wh;                                                   \
          krange(w0, a->d[2], a->k[2], W, &wl, &wh);                                                     \
          T best = (T)-INFINITY;                                                                         \
          int64_t bi = -1;                                                                               \
          for (int64_t kd = dl; kd < dh; kd++)                                                           \
            for (int64_t kh = hl; kh < hh; kh++) {                                                       \
              int64_t base = ((d0 + kd * a->d[0]) * H + h0 + kh * a->d[1]) * W + w0;                    \
              for (int64_t kw = wl; kw < wh; kw++) {                                                     \
                int64_t q = base + kw * a->d[2];                                                         \
                T v = x[q];                                                                              \
                if (bi < 0 || v > best || isnan(v)) {                                                    \
                  best = v, bi = q;                                                                      \
                  if (isnan(v)) goto done;                                                               \
                }                                                                                        \
              }                                                                                          \
            }                                                                                            \
        done:                                                                                            \
          y[o] = best;                                                                                   \
          ip[o] = bi;                                                                                    \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
  }                                                                                                      \
  static void avgpool_plane_##T(const p3 *a, const T *restrict x, T *restrict y) {                       \
    int64_t o = 0;                                                                                       \
    for (int64_t od = 0; od < a->out[0]; od++) {                                                         \
      int64_t d0, d1, fd;                                                                                \
      win(a, 0, od, &d0, &d1, &fd);                                                                      \
      for (int64_t oh = 0; oh < a->out[1]; oh++) {                                                       \
        int64_t h0, h1, fh;                                                                              \
        win(a, 1, oh, &h0, &h1, &fh);                                                                    \
        for (int64_t ow = 0; ow < a->out[2]; ow++, o++) {                                                \
          int64_t w0, w1, fw;                                                                            \
          win(a, 2, ow, &w0, &w1, &fw);                                                                  \
          double div = a->kind == 2 || a->count_include_pad ? (double)(fd * fh * fw)                     \
                                                             : (double)((d1 - d0) * (h1 - h0) * (w1 - w0)); \
          double s = 0;                                                                                  \
          for (int64_t id = d0; id < d1; id++)                                                           \
            for (int64_t ih = h0; ih < h1; ih++) {                                                       \
              const T *restrict r = x + (id * a->in[1] + ih) * a->in[2];                                 \
              double rs = 0;                                                                             \
              _Pragma("omp simd reduction(+ : rs)") for (int64_t iw = w0; iw < w1; iw++) rs += (double)r[iw]; \
              s += rs;                                                                                   \
            }                                                                                            \
          y[o] = (T)(s / div);                                                                           \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
  }                                                                                                      \
  /* gx (zeroed) += go scattered through the indices */                                                  \
  static void maxpool_bwd_plane_##T(int64_t IS, int64_t OS, const int64_t *restrict ip, const T *restrict g, \
                                    T *restrict gx) {                                                    \
    for (int64_t o = 0; o < OS; o++) {                                                                   \
      int64_t k = ip[o];                                                                                 \
      if (k >= 0 && k < IS) gx[k] += g[o];                                                               \
    }                                                                                                    \
  }                                                                                                      \
  static void avgpool_bwd_plane_##T(const p3 *a, const T *restrict g, T *restrict gx) {                  \
    int64_t o = 0;                                                                                       \
    for (int64_t od = 0; od < a->out[0]; od++) {                                                         \
      int64_t d0, d1, fd;                                                                                \
      win(a, 0, od, &d0, &d1, &fd);                                                                      \
      for (int64_t oh = 0; oh < a->out[1]; oh++) {                                                       \
        int64_t h0, h1, fh;                                                                              \
        win(a, 1, oh, &h0, &h1, &fh);                                                                    \
        for (int64_t ow = 0; ow < a->out[2]; ow++, o++) {                                                \
          int64_t w0, w1, fw;                                                                            \
          win(a, 2, ow, &w0, &w1, &fw);                                                                  \
          double div = a->kind == 2 || a->count_include_pad ? (double)(fd * fh * fw)                     \
                                                             : (double)((d1 - d0) * (h1 - h0) * (w1 - w0)); \
          T v = (T)((double)g[o] / div);                                                                 \
          for (int64_t id = d0; id < d1; id++)                                                           \
            for (int64_t ih = h0; ih < h1; ih++) {                                                       \
              T *restrict r = gx + (id * a->in[1] + ih) * a->in[2];                                      \
              for (int64_t iw = w0; iw < w1; iw++) r[iw] += v;                                           \
            }                                                                                            \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
  }
DEFINE_POOL3(float)
DEFINE_POOL3(double)

/* The float32 fast paths of max_pool3d and avg_pool3d for windows
   {1 or 2, 2, 2} with stride = kernel, no padding, dilation 1 and every
   window inside the input. Max: the same scan order, tie and NaN rules as
   maxpool_plane_float, written branch-free over a row of outputs so that
   it vectorises. */
static bool pool_fast_ok(const p3 *a, vl_dtype dt) {
  if (dt != VL_FLOAT32 || a->kind == 2) return false;
  if ((a->k[0] != 1 && a->k[0] != 2) || a->k[1] != 2 || a->k[2] != 2) return false;
  for (int i = 0; i < 3; i++)
    if (a->s[i] != a->k[i] || a->p[i] != 0 || a->d[i] != 1 || a->out[i] * a->k[i] > a->in[i]) return false;
  return true;
}

#define MP_UPD(val, q)                                                 \
  do {                                                                 \
    float v_ = (val);                                                  \
    bool u_ = v_ > best || (v_ != v_ && best == best);                 \
    best = u_ ? v_ : best;                                             \
    bi = u_ ? (q) : bi;                                                \
  } while (0)

/* Compiled for AVX-512 and AVX2 too and picked at load time (GNU ifunc),
   as conv.c's plane kernels; no OpenMP region inside. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define C3_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define C3_CLONES
#endif

C3_CLONES static void maxpool_fast_plane(const p3 *a, const float *restrict x, float *restrict y,
                                         int64_t *restrict ip) {
  int64_t H = a->in[1], W = a->in[2], OW = a->out[2], HW = H * W;
  bool two = a->k[0] == 2;
  for (int64_t od = 0; od < a->out[0]; od++)
    for (int64_t oh = 0; oh < a->out[1]; oh++) {
      int64_t b0 = (od * a->k[0] * H + 2 * oh) * W;
      const float *restrict r0 = x + b0, *restrict r1 = r0 + W, *restrict r2 = r0 + HW, *restrict r3 = r1 + HW;
      float *restrict yo = y + (od * a->out[1] + oh) * OW;
      int64_t *restrict io = ip + (od * a->out[1] + oh) * OW;
      if (two) {
#pragma omp simd
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t c = 2 * ow, q = b0 + c;
          float best = r0[c];
          int64_t bi = q;
          MP_UPD(r0[c + 1], q + 1);
          MP_UPD(r1[c], q + W);
          MP_UPD(r1[c + 1], q + W + 1);
          MP_UPD(r2[c], q + HW);
          MP_UPD(r2[c + 1], q + HW + 1);
          MP_UPD(r3[c], q + HW + W);
          MP_UPD(r3[c + 1], q + HW + W + 1);
          yo[ow] = best, io[ow] = bi;
        }
      } else {
#pragma omp simd
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t c = 2 * ow, q = b0 + c;
          float best = r0[c];
          int64_t bi = q;
          MP_UPD(r0[c + 1], q + 1);
          MP_UPD(r1[c], q + W);
          MP_UPD(r1[c + 1], q + W + 1);
          yo[ow] = best, io[ow] = bi;
        }
      }
    }
}

/* avg_pool3d's float32 fast path for the same windows: the sums of the
   general loop in the same order (each row pair summed in double, rows
   added in (kd, kh) order, divided once), so the same values. */
C3_CLONES static void avgpool_fast_plane(const p3 *a, const float *restrict x, float *restrict y) {
  int64_t H = a->in[1], W = a->in[2], OW = a->out[2], HW = H * W;
  bool two = a->k[0] == 2;
  double div = two ? 8.0 : 4.0;
  for (int64_t od = 0; od < a->out[0]; od++)
    for (int64_t oh = 0; oh < a->out[1]; oh++) {
      const float *restrict r0 = x + (od * a->k[0] * H + 2 * oh) * W, *restrict r1 = r0 + W;
      const float *restrict r2 = r0 + HW, *restrict r3 = r1 + HW;
      float *restrict yo = y + (od * a->out[1] + oh) * OW;
      if (two) {
#pragma omp simd
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t c = 2 * ow;
          double s = 0;
          s += (double)r0[c] + (double)r0[c + 1];
          s += (double)r1[c] + (double)r1[c + 1];
          s += (double)r2[c] + (double)r2[c + 1];
          s += (double)r3[c] + (double)r3[c + 1];
          yo[ow] = (float)(s / div);
        }
      } else {
#pragma omp simd
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t c = 2 * ow;
          double s = 0;
          s += (double)r0[c] + (double)r0[c + 1];
          s += (double)r1[c] + (double)r1[c + 1];
          yo[ow] = (float)(s / div);
        }
      }
    }
}

static int pool_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  const p3 *a = nd->extra;
  vl_dtype dt = compute_dtype(nd->in_dtype[0]);
  vl_tensor *gc = working(g, dt);
  vl_tensor *gx = gc ? vl_zeros(5, nd->in_shape[0], dt) : NULL;
  if (gx == NULL) {
    vl_tensor_release(gc);
    return vl_last_status();
  }
  int64_t IS = a->in[0] * a->in[1] * a->in[2], OS = a->out[0] * a->out[1] * a->out[2];
  const char *gp = vl_data_ptr(gc);
  char *xp = vl_data_ptr(gx);
  const int64_t *ip = a->kind == 0 ? vl_data_ptr(nd->saved[0]) : NULL;
  size_t es = vl_dtype_size(dt);
#pragma omp parallel for if (a->planes * (OS + IS) > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t pl = 0; pl < a->planes; pl++) {
    const char *g1 = gp + (size_t)(pl * OS) * es;
    char *x1 = xp + (size_t)(pl * IS) * es;
    if (a->kind == 0) {
      if (dt == VL_FLOAT32) maxpool_bwd_plane_float(IS, OS, ip + pl * OS, (const float *)g1, (float *)x1);
      else maxpool_bwd_plane_double(IS, OS, ip + pl * OS, (const double *)g1, (double *)x1);
    } else {
      if (dt == VL_FLOAT32) avgpool_bwd_plane_float(a, (const float *)g1, (float *)x1);
      else avgpool_bwd_plane_double(a, (const double *)g1, (double *)x1);
    }
  }
  vl_tensor_release(gc);
  gi[0] = vl_ag_reduce_to(nd, 0, gx);
  return gi[0] ? VL_OK : vl_last_status();
}

/* Forward of the three pools on a checked [N,C,D,H,W] input. */
static vl_tensor *pool_run(const vl_tensor *x, const p3 *a) {
  bool need = vl_ag_needed(1, &x);
  vl_dtype dt = compute_dtype(x->dtype);
  int64_t yshape[5] = {x->shape[0], x->shape[1], a->out[0], a->out[1], a->out[2]};
  int64_t IS = a->in[0] * a->in[1] * a->in[2], OS = a->out[0] * a->out[1] * a->out[2];
  grad_guard gg = grad_off();
  vl_tensor *xc = working(x, dt), *y = xc ? vl_empty(5, yshape, dt) : NULL, *ind = NULL;
  if (y && a->kind == 0) ind = vl_empty(5, yshape, VL_INT64);
  int rc = y && (a->kind != 0 || ind) ? VL_OK : vl_last_status();
  if (rc == VL_OK) {
    const char *xp = vl_data_ptr(xc);
    char *yp = vl_data_ptr(y);
    int64_t *ip = ind ? vl_data_ptr(ind) : NULL;
    size_t es = vl_dtype_size(dt);
    bool fast = pool_fast_ok(a, dt);
#pragma omp parallel for if (a->planes * (OS + IS) > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t pl = 0; pl < a->planes; pl++) {
      const char *x1 = xp + (size_t)(pl * IS) * es;
      char *y1 = yp + (size_t)(pl * OS) * es;
      if (a->kind == 0) {
        if (fast) maxpool_fast_plane(a, (const float *)x1, (float *)y1, ip + pl * OS);
        else if (dt == VL_FLOAT32) maxpool_plane_float(a, (const float *)x1, (float *)y1, ip + pl * OS);
        else maxpool_plane_double(a, (const double *)x1, (double *)y1, ip + pl * OS);
      } else {
        if (fast) avgpool_fast_plane(a, (const float *)x1, (float *)y1);
        else if (dt == VL_FLOAT32) avgpool_plane_float(a, (const float *)x1, (float *)y1);
        else avgpool_plane_double(a, (const double *)x1, (double *)y1);
      }
    }
    if (dt != x->dtype) {
      vl_tensor *r = vl_to_dtype(y, x->dtype);
      vl_tensor_release(y);
      y = r;
      if (y == NULL) rc = vl_last_status();
    }
  }
  grad_restore(gg);
  vl_tensor_release(xc);
  if (rc == VL_OK && need) {
    vl_node *n = vl_ag_node(a->op, pool_backward, 1, &x);
    p3 *cc = n ? malloc(sizeof *cc) : NULL;
    if (cc) {
      *cc = *a;
      cc->indices = NULL;
      n->extra = cc, n->free_extra = free;
    }
    if (n == NULL || cc == NULL || (ind && vl_ag_save(n, ind) < 0) || vl_ag_attach(y, n) != VL_OK) {
      if (n && cc == NULL) vl_error(VL_ENOMEM, "%s: out of memory for the autograd node", a->op);
      vl_ag_node_release(n);
      rc = vl_last_status();
    }
  }
  if (rc != VL_OK) {
    vl_tensor_release(y), vl_tensor_release(ind);
    return NULL;
  }
  if (a->indices) *a->indices = ind;
  else vl_tensor_release(ind);
  return y;
}

static vl_tensor *pool_batched(const vl_tensor *x, const void *vargs) {
  p3 a = *(const p3 *)vargs;
  const char *op = a.op;
  char s1[VL_SHAPE_STR];
  if (need_float(op, "input", x) || need_5d(op, x)) return NULL;
  if (x->shape[1] == 0 || x->shape[2] == 0 || x->shape[3] == 0 || x->shape[4] == 0)
    return vl_error(VL_ESHAPE, "%s: expected non-empty channel and spatial dims, got input %s", op,
                    vl_shape_str(5, x->shape, s1)),
           NULL;
  a.planes = x->shape[0] * x->shape[1];
  for (int i = 0; i < 3; i++) a.in[i] = x->shape[2 + i];
  if (a.kind == 2) {
    for (int i = 0; i < 3; i++)
      if (a.out[i] < 0 || a.out[i] > C3_MAX_PARAM)
        return vl_error(VL_EARG, "%s: output size must be non-negative (and at most %lld), got {%lld, %lld, %lld}",
                        op, (long long)C3_MAX_PARAM, (long long)a.out[0], (long long)a.out[1], (long long)a.out[2]),
               NULL;
    for (int i = 0; i < 3; i++)
      if (a.in[i] > INT64_MAX / VL_MAX(a.out[i], 1) / 2) return vl_error(VL_ENOMEM, "%s: sizes too large", op), NULL;
  } else {
    if (check3(op, "kernel size", a.k, 1) || check3(op, "stride", a.s, 1) || check3(op, "padding", a.p, 0) ||
        check3(op, "dilation", a.d, 1))
      return NULL;
    for (int i = 0; i < 3; i++)
      if (a.p[i] > a.k[i] / 2)
        return vl_error(VL_EARG, "%s: padding {%lld, %lld, %lld} must be at most half the kernel size {%lld, %lld, %lld}",
                        op, (long long)a.p[0], (long long)a.p[1], (long long)a.p[2], (long long)a.k[0],
                        (long long)a.k[1], (long long)a.k[2]),
               NULL;
    for (int i = 0; i < 3; i++) {
      a.out[i] = pool_out(a.in[i], a.k[i], a.p[i], a.s[i], a.d[i], a.ceil_mode);
      if (a.out[i] < 1)
        return vl_error(VL_ESHAPE,
                        "%s: output would be empty: kernel {%lld, %lld, %lld} (dilation {%lld, %lld, %lld}) is larger "
                        "than the padded input %s (padding {%lld, %lld, %lld})",
                        op, (long long)a.k[0], (long long)a.k[1], (long long)a.k[2], (long long)a.d[0],
                        (long long)a.d[1], (long long)a.d[2], vl_shape_str(5, x->shape, s1), (long long)a.p[0],
                        (long long)a.p[1], (long long)a.p[2]),
               NULL;
    }
  }
  return pool_run(x, &a);
}

static void fill3(int64_t out[3], const int64_t *in, const int64_t *def, int64_t dv) {
  for (int i = 0; i < 3; i++) out[i] = in ? in[i] : def ? def[i] : dv;
}

int vl_max_pool3d(const vl_tensor *x, const int64_t kernel[3], const int64_t stride[3], const int64_t padding[3],
                  const int64_t dilation[3], bool ceil_mode, vl_tensor **values, vl_tensor **indices) {
  *values = NULL;
  if (indices) *indices = NULL;
  if (kernel == NULL) return vl_error(VL_EARG, "max_pool3d: a kernel size is needed");
  vl_tensor *ind = NULL;
  p3 a = {.op = "max_pool3d", .kind = 0, .ceil_mode = ceil_mode, .indices = &ind};
  fill3(a.k, kernel, NULL, 1), fill3(a.s, stride, kernel, 1), fill3(a.p, padding, NULL, 0);
  fill3(a.d, dilation, NULL, 1);
  vl_tensor *y = any_batch(x, pool_batched, &a);
  if (y == NULL) {
    vl_tensor_release(ind);
    return vl_last_status();
  }
  if (ind && x->ndim == 4) {
    vl_tensor *s = vl_squeeze(ind, 0);
    vl_tensor_release(ind);
    ind = s;
    if (s == NULL) {
      vl_tensor_release(y);
      return vl_last_status();
    }
  }
  *values = y;
  if (indices) *indices = ind;
  else vl_tensor_release(ind);
  return VL_OK;
}

vl_tensor *vl_avg_pool3d(const vl_tensor *x, const int64_t kernel[3], const int64_t stride[3],
                         const int64_t padding[3], bool ceil_mode, bool count_include_pad) {
  if (kernel == NULL) return vl_error(VL_EARG, "avg_pool3d: a kernel size is needed"), NULL;
  p3 a = {.op = "avg_pool3d", .kind = 1, .ceil_mode = ceil_mode, .count_include_pad = count_include_pad};
  fill3(a.k, kernel, NULL, 1), fill3(a.s, stride, kernel, 1), fill3(a.p, padding, NULL, 0);
  fill3(a.d, NULL, NULL, 1);
  return any_batch(x, pool_batched, &a);
}

vl_tensor *vl_adaptive_avg_pool3d(const vl_tensor *x, const int64_t size[3]) {
  p3 a = {.op = "adaptive_avg_pool3d", .kind = 2};
  fill3(a.out, size, NULL, 1);
  fill3(a.k, NULL, NULL, 1), fill3(a.s, NULL, NULL, 1), fill3(a.p, NULL, NULL, 0), fill3(a.d, NULL, NULL, 1);
  return any_batch(x, pool_batched, &a);
}
