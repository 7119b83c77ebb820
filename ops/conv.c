/*
** conv.c — convolution and pooling in NCHW (prefix vl_): conv2d, conv1d,
** conv_transpose2d, max_pool2d/1d, avg_pool2d/1d, adaptive_avg_pool2d,
** each with its backward next to it.
**
** Convolutions are im2col + GEMM (vl_sgemm, gemm.c; cblas_dgemm). Three
** primitives cover the forward and backward of both convolutions, over a
** geometry that names an "image" side (the big spatial tensor, read or
** written through im2col/col2im) and a "columns" side (one value per
** output position of the sliding window):
**
**   unfold_mm : cols[n,g] = W_g @ im2col(img[n,g])         conv fwd, conv_t grad_input
**   mm_fold   : img[n,g]  = col2im(W_g^T @ cols[n,g])      conv grad_input, conv_t fwd
**   wgrad     : gW_g      = sum_n cols[n,g] @ im2col(img[n,g])^T   both grad_weight
**
** W is the weight seen as [G*R, Ci*kH*kW] (conv: [O, C/G, kH, kW];
** conv_transpose: [C_in, C_out/G, kH, kW]), R its rows per group.
** A 1x1 kernel with stride 1 and no padding skips im2col (the image is its
** own column matrix).
**
** Threads: with a batch of at least two images and more than one thread,
** each OpenMP thread takes whole images with its own column buffer and
** OpenBLAS runs single-threaded inside (grad_weight partial sums are kept
** per thread and added at the end); a single image runs im2col/col2im over
** channels in parallel and lets OpenBLAS thread its GEMMs. Measured on 2
** cores: see scripts/bench/conv.lua.
**
** dtypes: float32 and float64; float16/bfloat16 are computed in float32
** and rounded back once; integer and bool tensors are refused (as
** PyTorch on CPU). Max pooling also takes int64/int32/uint8 (bool is
** refused). Inputs of any layout are made contiguous first.
**
** Unbatched inputs ([C,H,W] for the 2-D ops, [C,L] for the 1-D ones) get
** a batch dim of 1 added and removed through views, so autograd flows
** through those views.
*/
#include <limits.h>
#include <stdlib.h>

#include <cblas.h>
#include <omp.h>
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#endif

#include "autograd.h"
#include "conv_internal.h"

/* Largest GEMM size or leading dimension: Debian's OpenBLAS takes int. */
#define VL_CONV_BLAS_MAX INT_MAX


/* ------------------------------------------------------------------ */
/* Geometry                                                             */
/* ------------------------------------------------------------------ */

typedef struct geom {
  int64_t G;                 /* groups */
  int64_t Ci, H, W;          /* image side: channels per group, spatial size */
  int64_t R, OH, OW;         /* columns side: channels per group, spatial size */
  int64_t kH, kW, sH, sW, pT, pL, dH, dW; /* kernel, stride, top/left padding, dilation */
} geom;

static inline int64_t g_K(const geom *g) { return g->Ci * g->kH * g->kW; }
static inline int64_t g_L(const geom *g) { return g->OH * g->OW; }

/* The image is its own column matrix: 1x1 kernel, stride 1, no padding. */
static inline bool g_identity(const geom *g) {
  return g->kH == 1 && g->kW == 1 && g->sH == 1 && g->sW == 1 && g->pT == 0 && g->pL == 0 &&
         g->OH == g->H && g->OW == g->W;
}

/* Range [lo, hi) of output columns ow whose input column ow*s + off lies
   in [0, W). */
static inline void valid_range(int64_t off, int64_t s, int64_t W, int64_t OW, int64_t *lo, int64_t *hi) {
  int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t h = W - off > 0 ? (W - off + s - 1) / s : 0;
  if (l > OW) l = OW;
  if (h > OW) h = OW;
  if (h < l) h = l;
  *lo = l, *hi = h;
}

/* im2col: col[(c*kH + kh)*kW + kw][oh*OW + ow] = img[c][oh*sH - pT + kh*dH][ow*sW - pL + kw*dW]
   (0 outside the image). col2im adds the columns back (img zeroed first).
   `par`: split the rows over threads. */
#define DEFINE_IM2COL(T)                                                                        \
  VL_CLONES static void im2col_row_##T(const geom *g, const T *restrict img, T *restrict row, int64_t r) { \
    int64_t kk = g->kH * g->kW;                                                                 \
    int64_t c = r / kk, kh = (r % kk) / g->kW, kw = r % g->kW;                                  \
    const T *restrict plane = img + c * g->H * g->W;                                            \
    int64_t woff = kw * g->dW - g->pL, lo, hi;                                                  \
    valid_range(woff, g->sW, g->W, g->OW, &lo, &hi);                                            \
    for (int64_t oh = 0; oh < g->OH; oh++) {                                                    \
      int64_t ih = oh * g->sH - g->pT + kh * g->dH;                                             \
      T *restrict dst = row + oh * g->OW;                                                       \
      if (ih < 0 || ih >= g->H) {                                                               \
        for (int64_t ow = 0; ow < g->OW; ow++) dst[ow] = 0;                                     \
        continue;                                                                               \
      }                                                                                         \
      const T *restrict src = plane + ih * g->W + woff;                                         \
      for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;                                          \
      if (g->sW == 1) {                                                                         \
        for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow];                                 \
      } else {                                                                                  \
        for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * g->sW];                         \
      }                                                                                         \
      for (int64_t ow = hi; ow < g->OW; ow++) dst[ow] = 0;                                      \
    }                                                                                           \
  }                                                                                             \
  static void im2col_##T(const geom *g, const T *restrict img, T *restrict col, bool par) {     \
    int64_t rows = g_K(g), L = g_L(g);                                                          \
    _Pragma("omp parallel for if (par) schedule(static)")                                      \
    for (int64_t r = 0; r < rows; r++) im2col_row_##T(g, img, col + r * L, r);                  \
  }                                                                                             \
  VL_CLONES static void col2im_plane_##T(const geom *g, const T *restrict col, T *restrict plane,    \
                                         int64_t c) {                                           \
    int64_t L = g_L(g), kk = g->kH * g->kW, HW = g->H * g->W;                                   \
    for (int64_t i = 0; i < HW; i++) plane[i] = 0;                                              \
    for (int64_t k = 0; k < kk; k++) {                                                          \
      int64_t kh = k / g->kW, kw = k % g->kW;                                                   \
      const T *restrict row = col + (c * kk + k) * L;                                           \
      int64_t woff = kw * g->dW - g->pL, lo, hi;                                                \
      valid_range(woff, g->sW, g->W, g->OW, &lo, &hi);                                          \
      for (int64_t oh = 0; oh < g->OH; oh++) {                                                  \
        int64_t ih = oh * g->sH - g->pT + kh * g->dH;                                           \
        if (ih < 0 || ih >= g->H) continue;                                                     \
        T *restrict dst = plane + ih * g->W + woff;                                             \
        const T *restrict src = row + oh * g->OW;                                               \
        if (g->sW == 1) {                                                                       \
          for (int64_t ow = lo; ow < hi; ow++) dst[ow] += src[ow];                              \
        } else {                                                                                \
          for (int64_t ow = lo; ow < hi; ow++) dst[ow * g->sW] += src[ow];                      \
        }                                                                                       \
      }                                                                                         \
    }                                                                                           \
  }                                                                                             \
  static void col2im_##T(const geom *g, const T *restrict col, T *restrict img, bool par) {     \
    int64_t HW = g->H * g->W;                                                                   \
    _Pragma("omp parallel for if (par) schedule(static)")                                      \
    for (int64_t c = 0; c < g->Ci; c++) col2im_plane_##T(g, col, img + c * HW, c);              \
  }

DEFINE_IM2COL(float)
DEFINE_IM2COL(double)

static void im2col(vl_dtype dt, const geom *g, const void *img, void *col, bool par) {
  if (dt == VL_FLOAT32)
    im2col_float(g, img, col, par);
  else
    im2col_double(g, img, col, par);
}

static void col2im(vl_dtype dt, const geom *g, const void *col, void *img, bool par) {
  if (dt == VL_FLOAT32)
    col2im_float(g, col, img, par);
  else
    col2im_double(g, col, img, par);
}


/* ------------------------------------------------------------------ */
/* The three primitives                                                 */
/* ------------------------------------------------------------------ */

/* The multiply-adds of a batch's GEMMs (for plan_begin). */
static double batch_work(const geom *g, int64_t N) {
  return (double)N * (double)g->G * (double)g->R * (double)g_K(g) * (double)g_L(g);
}


/* ------------------------------------------------------------------ */
/* Depthwise: one image channel per group                               */
/* ------------------------------------------------------------------ */

/* With Ci == 1 (depthwise convolution, groups == channels) each GEMM is a
   [R, kH*kW] @ [kH*kW, L] product too thin for BLAS: the three primitives
   run as direct loops over planes instead, vectorised along output rows
   (contiguous for stride 1). Work is the same R*kH*kW*L multiply-adds per
   plane, without the im2col copy. */
/* Most kernel elements (kH*kW) the direct path takes (a stack array). */
#define VL_CONV_DW_MAXK 64
/* Output columns summed lane by lane in the weight gradient (a stack
   array of VL_CONV_DW_MAXK x this many elements, 32 KiB in float32). */
#define VL_CONV_DW_BLOCK 128

static inline bool g_direct(const geom *g) { return g->Ci == 1 && g->G > 1 && g->kH * g->kW <= VL_CONV_DW_MAXK; }

/* The plane kernels are compute-bound: they are also compiled for
   AVX-512 and AVX2 and picked at load time (GNU ifunc), as in
   elementwise.c. They hold no OpenMP region (the clones would not reach
   an outlined parallel body); the loops over planes call them. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CONV_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CONV_CLONES
#endif

#define DEFINE_DIRECT(T)                                                                                \
  /* out = sum_k wk[k] * shift_k(in): one output plane */                                              \
  CONV_CLONES static void dw_fwd_plane_##T(const geom *g, const T *restrict in, const T *restrict wk,  \
                                           T *restrict out) {                                          \
    int64_t L = g_L(g);                                                                                \
    for (int64_t i = 0; i < L; i++) out[i] = 0;                                                        \
    for (int64_t kh = 0; kh < g->kH; kh++)                                                             \
      for (int64_t kw = 0; kw < g->kW; kw++) {                                                         \
        T wv = wk[kh * g->kW + kw];                                                                    \
        int64_t woff = kw * g->dW - g->pL, lo, hi;                                                     \
        valid_range(woff, g->sW, g->W, g->OW, &lo, &hi);                                               \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                       \
          int64_t ih = oh * g->sH - g->pT + kh * g->dH;                                                \
          if (ih < 0 || ih >= g->H) continue;                                                          \
          T *restrict o = out + oh * g->OW;                                                            \
          const T *restrict r = in + ih * g->W + woff;                                                 \
          if (g->sW == 1) {                                                                            \
            _Pragma("omp simd")                                                                        \
            for (int64_t ow = lo; ow < hi; ow++) o[ow] += wv * r[ow];                                  \
          } else {                                                                                     \
            for (int64_t ow = lo; ow < hi; ow++) o[ow] += wv * r[ow * g->sW];                          \
          }                                                                                            \
        }                                                                                              \
      }                                                                                                \
  }                                                                                                    \
  /* out += sum_k wk[k] * scatter_k(src): one image plane, one column plane */                         \
  CONV_CLONES static void dw_fold_plane_##T(const geom *g, const T *restrict src, const T *restrict wk, \
                                            T *restrict out) {                                         \
    for (int64_t kh = 0; kh < g->kH; kh++)                                                             \
      for (int64_t kw = 0; kw < g->kW; kw++) {                                                         \
        T wv = wk[kh * g->kW + kw];                                                                    \
        int64_t woff = kw * g->dW - g->pL, lo, hi;                                                     \
        valid_range(woff, g->sW, g->W, g->OW, &lo, &hi);                                               \
        for (int64_t oh = 0; oh < g->OH; oh++) {                                                       \
          int64_t ih = oh * g->sH - g->pT + kh * g->dH;                                                \
          if (ih < 0 || ih >= g->H) continue;                                                          \
          T *restrict d = out + ih * g->W + woff;                                                      \
          const T *restrict s = src + oh * g->OW;                                                      \
          if (g->sW == 1) {                                                                            \
            _Pragma("omp simd")                                                                        \
            for (int64_t ow = lo; ow < hi; ow++) d[ow] += wv * s[ow];                                  \
          } else {                                                                                     \
            for (int64_t ow = lo; ow < hi; ow++) d[ow * g->sW] += wv * s[ow];                          \
          }                                                                                            \
        }                                                                                              \
      }                                                                                                \
  }                                                                                                    \
  /* <src, shift_k(in)> for every k, added to acc[k]: lane sums over the  \
     rows in blocks of VL_CONV_DW_BLOCK output columns, reduced once per   \
     block (not once per row) */                                           \
  CONV_CLONES static void dw_wgrad_plane_##T(const geom *g, const T *restrict in, const T *restrict src, \
                                             double *restrict acc) {                                   \
    int64_t kk = g->kH * g->kW;                                                                        \
    T lanes[VL_CONV_DW_MAXK][VL_CONV_DW_BLOCK];                                                        \
    for (int64_t b0 = 0; b0 < g->OW; b0 += VL_CONV_DW_BLOCK) {                                         \
      int64_t b1 = VL_MIN(b0 + VL_CONV_DW_BLOCK, g->OW);                                               \
      for (int64_t k = 0; k < kk; k++)                                                                 \
        for (int64_t j = 0; j < VL_CONV_DW_BLOCK; j++) lanes[k][j] = 0;                                \
      for (int64_t kh = 0; kh < g->kH; kh++)                                                           \
        for (int64_t kw = 0; kw < g->kW; kw++) {                                                       \
          T *restrict ln = lanes[kh * g->kW + kw] - b0;                                                \
          int64_t woff = kw * g->dW - g->pL, lo, hi;                                                   \
          valid_range(woff, g->sW, g->W, g->OW, &lo, &hi);                                             \
          lo = VL_MAX(lo, b0), hi = VL_MIN(hi, b1);                                                    \
          for (int64_t oh = 0; oh < g->OH; oh++) {                                                     \
            int64_t ih = oh * g->sH - g->pT + kh * g->dH;                                              \
            if (ih < 0 || ih >= g->H) continue;                                                        \
            const T *restrict r = in + ih * g->W + woff;                                               \
            const T *restrict s = src + oh * g->OW;                                                    \
            if (g->sW == 1) {                                                                          \
              _Pragma("omp simd")                                                                      \
              for (int64_t ow = lo; ow < hi; ow++) ln[ow] += s[ow] * r[ow];                            \
            } else {                                                                                   \
              for (int64_t ow = lo; ow < hi; ow++) ln[ow] += s[ow] * r[ow * g->sW];                    \
            }                                                                                          \
          }                                                                                            \
        }                                                                                              \
      for (int64_t k = 0; k < kk; k++) {                                                               \
        double sum = 0;                                                                                \
        for (int64_t j = 0; j < b1 - b0; j++) sum += lanes[k][j];                                      \
        acc[k] += sum;                                                                                 \
      }                                                                                                \
    }                                                                                                  \
  }                                                                                                    \
  /* cols[n, g*R + r] = sum_k W[g*R + r, k] * shift_k(img[n, g]) */                                    \
  static void dw_unfold_mm_##T(const geom *g, int64_t N, const T *restrict img, const T *restrict w,   \
                               T *restrict cols) {                                                     \
    int64_t L = g_L(g), HW = g->H * g->W, kk = g->kH * g->kW, planes = N * g->G * g->R;               \
    _Pragma("omp parallel for if (planes * L * kk > VL_PARALLEL_GRAIN) schedule(static)")              \
    for (int64_t p = 0; p < planes; p++) {                                                             \
      int64_t n = p / (g->G * g->R), gr = p % (g->G * g->R), gi = gr / g->R;                           \
      dw_fwd_plane_##T(g, img + (n * g->G + gi) * HW, w + gr * kk, cols + p * L);                      \
    }                                                                                                  \
  }                                                                                                    \
  /* img[n, g] = sum_r sum_k W[g*R + r, k] * scatter_k(cols[n, g*R + r]) */                            \
  static void dw_mm_fold_##T(const geom *g, int64_t N, const T *restrict cols, const T *restrict w,    \
                             T *restrict img) {                                                        \
    int64_t L = g_L(g), HW = g->H * g->W, kk = g->kH * g->kW, planes = N * g->G;                       \
    _Pragma("omp parallel for if (planes * g->R * L * kk > VL_PARALLEL_GRAIN) schedule(static)")       \
    for (int64_t q = 0; q < planes; q++) {                                                             \
      int64_t gi = q % g->G;                                                                           \
      T *restrict out = img + q * HW;                                                                  \
      for (int64_t i = 0; i < HW; i++) out[i] = 0;                                                     \
      for (int64_t r = 0; r < g->R; r++)                                                               \
        dw_fold_plane_##T(g, cols + (q * g->R + r) * L, w + (gi * g->R + r) * kk, out);                \
    }                                                                                                  \
  }                                                                                                    \
  /* gW[g*R + r, k] = sum_n <cols[n, g*R + r], shift_k(img[n, g])>, summed in double */                \
  static void dw_wgrad_##T(const geom *g, int64_t N, const T *restrict img, const T *restrict cols,    \
                           T *restrict gw) {                                                           \
    int64_t L = g_L(g), HW = g->H * g->W, kk = g->kH * g->kW, GR = g->G * g->R;                        \
    _Pragma("omp parallel for if (GR * N * L * kk > VL_PARALLEL_GRAIN) schedule(static)")              \
    for (int64_t gr = 0; gr < GR; gr++) {                                                              \
      int64_t gi = gr / g->R;                                                                          \
      double acc[VL_CONV_DW_MAXK];                                                                     \
      for (int64_t k = 0; k < kk; k++) acc[k] = 0;                                                     \
      for (int64_t n = 0; n < N; n++)                                                                  \
        dw_wgrad_plane_##T(g, img + (n * g->G + gi) * HW, cols + (n * GR + gr) * L, acc);              \
      for (int64_t k = 0; k < kk; k++) gw[gr * kk + k] = (T)acc[k];                                    \
    }                                                                                                  \
  }

DEFINE_DIRECT(float)
DEFINE_DIRECT(double)

/* cols[n] = W_g @ im2col(img[n, g]) for every image n and group g.
   img: [N, G*Ci, H, W], cols: [N, G*R, OH, OW], w: [G*R, K], all contiguous. */
static int unfold_mm(vl_dtype dt, const geom *g, int64_t N, const char *img, const char *w, char *cols) {
  if (g_direct(g)) {
    if (dt == VL_FLOAT32)
      dw_unfold_mm_float(g, N, (const float *)img, (const float *)w, (float *)cols);
    else
      dw_unfold_mm_double(g, N, (const double *)img, (const double *)w, (double *)cols);
    return VL_OK;
  }
  size_t es = vl_dtype_size(dt);
  int64_t K = g_K(g), L = g_L(g), HW = g->H * g->W;
  bool ident = g_identity(g);
  batch_plan p = plan_begin(batch_work(g, N), N);
  vl_tensor *buf = ident ? NULL : scratch((int64_t)p.nthreads * K * L, dt);
  if (!ident && buf == NULL) {
    plan_end(&p);
    return vl_last_status();
  }
  char *bufp = buf ? vl_data_ptr(buf) : NULL;
#pragma omp parallel for if (p.par) num_threads(p.nthreads) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    char *col = ident ? NULL : bufp + (size_t)(omp_get_thread_num() * K * L) * es;
    for (int64_t gi = 0; gi < g->G; gi++) {
      const char *im = img + (size_t)((n * g->G + gi) * g->Ci * HW) * es;
      if (!ident) im2col(dt, g, im, col, !p.par && K * L > VL_PARALLEL_GRAIN);
      gemm(dt, false, false, g->R, L, K, w + (size_t)(gi * g->R * K) * es, K, ident ? im : col, L, 0,
           cols + (size_t)((n * g->G + gi) * g->R * L) * es, L);
    }
  }
  plan_end(&p);
  vl_tensor_release(buf);
  return VL_OK;
}

/* img[n, g] = col2im(W_g^T @ cols[n, g]). */
static int mm_fold(vl_dtype dt, const geom *g, int64_t N, const char *cols, const char *w, char *img) {
  if (g_direct(g)) {
    if (dt == VL_FLOAT32)
      dw_mm_fold_float(g, N, (const float *)cols, (const float *)w, (float *)img);
    else
      dw_mm_fold_double(g, N, (const double *)cols, (const double *)w, (double *)img);
    return VL_OK;
  }
  size_t es = vl_dtype_size(dt);
  int64_t K = g_K(g), L = g_L(g), HW = g->H * g->W;
  bool ident = g_identity(g);
  batch_plan p = plan_begin(batch_work(g, N), N);
  vl_tensor *buf = ident ? NULL : scratch((int64_t)p.nthreads * K * L, dt);
  if (!ident && buf == NULL) {
    plan_end(&p);
    return vl_last_status();
  }
  char *bufp = buf ? vl_data_ptr(buf) : NULL;
#pragma omp parallel for if (p.par) num_threads(p.nthreads) schedule(static)
  for (int64_t n = 0; n < N; n++) {
    char *col = ident ? NULL : bufp + (size_t)(omp_get_thread_num() * K * L) * es;
    for (int64_t gi = 0; gi < g->G; gi++) {
      char *im = img + (size_t)((n * g->G + gi) * g->Ci * HW) * es;
      gemm(dt, true, false, K, L, g->R, w + (size_t)(gi * g->R * K) * es, K,
           cols + (size_t)((n * g->G + gi) * g->R * L) * es, L, 0, ident ? im : col, L);
      if (!ident) col2im(dt, g, col, im, !p.par && K * L > VL_PARALLEL_GRAIN);
    }
  }
  plan_end(&p);
  vl_tensor_release(buf);
  return VL_OK;
}

/* gw[g] = sum_n cols[n, g] @ im2col(img[n, g])^T; gw: [G*R, K]. */
static int wgrad(vl_dtype dt, const geom *g, int64_t N, const char *img, const char *cols, char *gw) {
  if (g_direct(g)) {
    if (dt == VL_FLOAT32)
      dw_wgrad_float(g, N, (const float *)img, (const float *)cols, (float *)gw);
    else
      dw_wgrad_double(g, N, (const double *)img, (const double *)cols, (double *)gw);
    return VL_OK;
  }
  size_t es = vl_dtype_size(dt);
  int64_t K = g_K(g), L = g_L(g), HW = g->H * g->W, WN = g->G * g->R * K;
  bool ident = g_identity(g);
  memset(gw, 0, (size_t)WN * es);
  batch_plan p = plan_begin(batch_work(g, N), N);
  /* per thread: a column buffer, and (threads > 1) a partial sum of gw */
  int64_t per = (ident ? 0 : K * L) + (p.par ? WN : 0);
  vl_tensor *buf = per ? scratch((int64_t)p.nthreads * per, dt) : NULL;
  if (per && buf == NULL) {
    plan_end(&p);
    return vl_last_status();
  }
  char *bufp = buf ? vl_data_ptr(buf) : NULL;
#pragma omp parallel num_threads(p.nthreads) if (p.par)
  {
    int tid = omp_get_thread_num();
    char *mine = bufp ? bufp + (size_t)(tid * per) * es : NULL;
    char *col = ident ? NULL : mine;
    char *acc = p.par ? mine + (size_t)(ident ? 0 : K * L) * es : gw;
    if (p.par) memset(acc, 0, (size_t)WN * es);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      for (int64_t gi = 0; gi < g->G; gi++) {
        const char *im = img + (size_t)((n * g->G + gi) * g->Ci * HW) * es;
        if (!ident) im2col(dt, g, im, col, !p.par && K * L > VL_PARALLEL_GRAIN);
        gemm(dt, false, true, g->R, K, L, cols + (size_t)((n * g->G + gi) * g->R * L) * es, L, ident ? im : col,
             L, 1, acc + (size_t)(gi * g->R * K) * es, K);
      }
    }
  }
  if (p.par) {
    /* add the partial sums in thread order (the same result every run) */
    for (int t = 0; t < p.nthreads; t++) {
      const char *acc = bufp + (size_t)(t * per + (ident ? 0 : K * L)) * es;
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

/* y[n, c, :] += b[c] over a contiguous [N, C, S]. */
static void add_bias(vl_dtype dt, int64_t N, int64_t C, int64_t S, char *y, const char *b) {
  int64_t rows = N * C;
#pragma omp parallel for if (rows * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r % C;
    if (dt == VL_FLOAT32) {
      float *restrict p = (float *)y + r * S;
      float v = ((const float *)b)[c];
      for (int64_t i = 0; i < S; i++) p[i] += v;
    } else {
      double *restrict p = (double *)y + r * S;
      double v = ((const double *)b)[c];
      for (int64_t i = 0; i < S; i++) p[i] += v;
    }
  }
}

/* gb[c] = sum over n and S of g[n, c, :] (contiguous [N, C, S]), summed in double. */
static void bias_grad(vl_dtype dt, int64_t N, int64_t C, int64_t S, const char *g, char *gb) {
#pragma omp parallel for if (N * C * S > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t c = 0; c < C; c++) {
    double s = 0;
    for (int64_t n = 0; n < N; n++) {
      int64_t base = (n * C + c) * S;
      if (dt == VL_FLOAT32) {
        const float *restrict p = (const float *)g + base;
        for (int64_t i = 0; i < S; i++) s += p[i];
      } else {
        const double *restrict p = (const double *)g + base;
        for (int64_t i = 0; i < S; i++) s += p[i];
      }
    }
    vl_store(gb, c, dt, s);
  }
}

/* ------------------------------------------------------------------ */
/* Shared checks and conversions                                        */
/* ------------------------------------------------------------------ */


/* Largest stride, padding, dilation, output padding or kernel size accepted:
   products with real tensor sizes (< 2^38 elements) stay far from int64
   overflow. */
#define VL_CONV_MAX_PARAM ((int64_t)1 << 24)

static int check_pos(const char *op, const char *what, const int64_t v[2], int64_t min) {
  if (v[0] < min || v[1] < min)
    return vl_error(VL_EARG, "%s: %s must be %s, got {%lld, %lld}", op, what,
                    min == 1 ? "at least 1" : "non-negative", (long long)v[0], (long long)v[1]);
  if (v[0] > VL_CONV_MAX_PARAM || v[1] > VL_CONV_MAX_PARAM)
    return vl_error(VL_EARG, "%s: %s must be at most %lld, got {%lld, %lld}", op, what,
                    (long long)VL_CONV_MAX_PARAM, (long long)v[0], (long long)v[1]);
  return VL_OK;
}

static int check_blas(const char *op, int64_t a, int64_t b, int64_t c) {
  if (a > VL_CONV_BLAS_MAX || b > VL_CONV_BLAS_MAX || c > VL_CONV_BLAS_MAX || (b > 0 && c > (INT64_MAX >> 10) / b))
    return vl_error(VL_ENOMEM, "%s: the problem is too large for BLAS (sizes %lld, %lld, %lld; at most %d)", op,
                    (long long)a, (long long)b, (long long)c, VL_CONV_BLAS_MAX);
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* conv2d and conv_transpose2d                                          */
/* ------------------------------------------------------------------ */

/* What backward needs beyond the saved tensors. */
typedef struct conv_ctx {
  geom g;
  int64_t N;
  bool transposed;  /* conv_transpose2d: x is the columns side */
} conv_ctx;

/* Backward of both convolutions. saved[0] = x, saved[1] = w (contiguous,
   compute dtype). Inputs: x, w, b. */
static int conv_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  const conv_ctx *cx = nd->extra;
  const vl_tensor *x = nd->saved[0], *w = nd->saved[1];
  vl_dtype dt = x->dtype;
  vl_tensor *gc = working(g, dt);
  if (gc == NULL) return vl_last_status();
  const char *gp = vl_data_ptr(gc), *xp = vl_data_ptr(x), *wp = vl_data_ptr(w);
  int rc = VL_OK;
  /* image side and columns side of the geometry */
  const char *img = cx->transposed ? gp : xp, *cols = cx->transposed ? xp : gp;
  if (nd->needs[0]) {
    vl_tensor *gx = vl_empty(x->ndim, x->shape, dt);
    if (gx == NULL) rc = vl_last_status();
    else if (cx->transposed) rc = unfold_mm(dt, &cx->g, cx->N, gp, wp, vl_data_ptr(gx));
    else rc = mm_fold(dt, &cx->g, cx->N, gp, wp, vl_data_ptr(gx));
    if (rc != VL_OK) vl_tensor_release(gx);
    else gi[0] = vl_ag_reduce_to(nd, 0, gx);
  }
  if (rc == VL_OK && nd->needs[1]) {
    vl_tensor *gw = vl_empty(w->ndim, w->shape, dt);
    if (gw == NULL) rc = vl_last_status();
    else rc = wgrad(dt, &cx->g, cx->N, img, cols, vl_data_ptr(gw));
    if (rc != VL_OK) vl_tensor_release(gw);
    else gi[1] = vl_ag_reduce_to(nd, 1, gw);
  }
  if (rc == VL_OK && nd->ninputs > 2 && nd->needs[2]) {
    int64_t C = gc->shape[1], S = gc->shape[2] * gc->shape[3];
    vl_tensor *gb = vl_empty(1, &C, dt);
    if (gb == NULL) rc = vl_last_status();
    else {
      bias_grad(dt, gc->shape[0], C, S, gp, vl_data_ptr(gb));
      gi[2] = vl_ag_reduce_to(nd, 2, gb);
    }
  }
  vl_tensor_release(gc);
  return rc;
}

static int conv_check_common(const char *op, const vl_tensor *x, const vl_tensor *w, const vl_tensor *b,
                             int64_t groups) {
  char s1[VL_SHAPE_STR];
  int rc = need_float(op, "input", x);
  if (rc == VL_OK) rc = need_float(op, "weight", w);
  if (rc == VL_OK && b) rc = need_float(op, "bias", b);
  if (rc != VL_OK) return rc;
  if (x->dtype != w->dtype || (b && b->dtype != x->dtype))
    return vl_error(VL_EDTYPE, "%s: input is %s but weight is %s%s%s (convert them to one dtype)", op,
                    vl_dtype_name(x->dtype), vl_dtype_name(w->dtype), b ? " and bias " : "",
                    b ? vl_dtype_name(b->dtype) : "");
  if (x->ndim != 4)
    return vl_error(VL_ESHAPE, "%s: expected a 4-d input [N,C,H,W] (or 3-d [C,H,W]), got %d-d %s", op, x->ndim,
                    vl_shape_str(x->ndim, x->shape, s1));
  if (w->ndim != 4)
    return vl_error(VL_ESHAPE, "%s: expected a 4-d weight, got %d-d %s", op, w->ndim,
                    vl_shape_str(w->ndim, w->shape, s1));
  if (groups < 1) return vl_error(VL_EARG, "%s: groups must be at least 1, got %lld", op, (long long)groups);
  return VL_OK;
}

/* The forward of both convolutions once shapes are checked: y is
   [N, Cy, OHy, OWy]; g the geometry; b applies to y's channels. */
static vl_tensor *conv_run(const char *op, bool transposed, const vl_tensor *x, const vl_tensor *w,
                           const vl_tensor *b, const geom *g, const int64_t yshape[4]) {
  bool need = vl_ag_needed(3, (const vl_tensor *[]){x, w, b});
  vl_dtype dt = compute_dtype(x->dtype);
  int64_t N = x->shape[0];
  grad_guard gg = grad_off();
  vl_tensor *xc = working(x, dt), *wc = xc ? working(w, dt) : NULL, *bc = NULL, *y = NULL;
  int rc = xc && wc ? VL_OK : vl_last_status();
  if (rc == VL_OK && b && (bc = working(b, dt)) == NULL) rc = vl_last_status();
  if (rc == VL_OK && (y = vl_empty(4, yshape, dt)) == NULL) rc = vl_last_status();
  if (rc == VL_OK) {
    if (transposed)
      rc = mm_fold(dt, g, N, vl_data_ptr(xc), vl_data_ptr(wc), vl_data_ptr(y));
    else
      rc = unfold_mm(dt, g, N, vl_data_ptr(xc), vl_data_ptr(wc), vl_data_ptr(y));
  }
  if (rc == VL_OK && bc) add_bias(dt, N, yshape[1], yshape[2] * yshape[3], vl_data_ptr(y), vl_data_ptr(bc));
  if (rc == VL_OK && y->dtype != x->dtype) {
    vl_tensor *r = vl_to_dtype(y, x->dtype);
    vl_tensor_release(y);
    y = r;
    if (y == NULL) rc = vl_last_status();
  }
  grad_restore(gg);
  vl_tensor_release(bc);
  conv_ctx cx = {.g = *g, .N = N, .transposed = transposed};
  return conv_finish(op, rc, need, conv_backward, x, w, b, xc, wc, y, &cx, sizeof cx);
}


typedef struct conv_args {
  const vl_tensor *w, *b;
  int64_t stride[2], pad[4], dil[2], outpad[2], groups;
} conv_args;

static vl_tensor *conv2d_batched(const vl_tensor *x, const void *vargs) {
  const conv_args *a = vargs;
  const char *op = "conv2d";
  const vl_tensor *w = a->w, *b = a->b;
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (conv_check_common(op, x, w, b, a->groups) != VL_OK) return NULL;
  if (check_pos(op, "stride", a->stride, 1) || check_pos(op, "dilation", a->dil, 1) ||
      check_pos(op, "padding", a->pad, 0) || check_pos(op, "padding", a->pad + 2, 0))
    return NULL;
  int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t O = w->shape[0], kH = w->shape[2], kW = w->shape[3], G = a->groups;
  if (w->shape[1] * G != C)
    return vl_error(VL_ESHAPE, "%s: input has %lld channels but weight expects %lld (weight shape %s, groups %lld)",
                    op, (long long)C, (long long)(w->shape[1] * G), vl_shape_str(4, w->shape, s1), (long long)G),
           NULL;
  if (O % G != 0)
    return vl_error(VL_ESHAPE, "%s: weight has %lld output channels, not divisible by groups %lld (weight shape %s)",
                    op, (long long)O, (long long)G, vl_shape_str(4, w->shape, s1)),
           NULL;
  if (b && (b->ndim != 1 || b->shape[0] != O))
    return vl_error(VL_ESHAPE, "%s: bias must have shape [%lld] (one per output channel), got %s", op, (long long)O,
                    vl_shape_str(b->ndim, b->shape, s1)),
           NULL;
  if (kH < 1 || kW < 1)
    return vl_error(VL_ESHAPE, "%s: weight has an empty kernel (weight shape %s)", op,
                    vl_shape_str(4, w->shape, s1)),
           NULL;
  int64_t ekH = a->dil[0] * (kH - 1) + 1, ekW = a->dil[1] * (kW - 1) + 1;
  int64_t PH = H + a->pad[0] + a->pad[1], PW = W + a->pad[2] + a->pad[3];
  if (PH < ekH || PW < ekW)
    return vl_error(VL_ESHAPE,
                    "%s: kernel %lldx%lld (dilated %lldx%lld) is larger than the padded input %lldx%lld (input %s)",
                    op, (long long)kH, (long long)kW, (long long)ekH, (long long)ekW, (long long)PH, (long long)PW,
                    vl_shape_str(4, x->shape, s2)),
           NULL;
  geom g = {.G = G, .Ci = C / G, .H = H, .W = W, .R = O / G,
            .OH = (PH - ekH) / a->stride[0] + 1, .OW = (PW - ekW) / a->stride[1] + 1,
            .kH = kH, .kW = kW, .sH = a->stride[0], .sW = a->stride[1], .pT = a->pad[0], .pL = a->pad[2],
            .dH = a->dil[0], .dW = a->dil[1]};
  if (check_blas(op, g.R, g_K(&g), g_L(&g)) != VL_OK) return NULL;
  int64_t yshape[4] = {N, O, g.OH, g.OW};
  return conv_run(op, false, x, w, b, &g, yshape);
}

static vl_tensor *conv2d_any(const vl_tensor *x, const conv_args *a) {
  if (x->ndim == 3) return unbatched(x, conv2d_batched, a);
  return conv2d_batched(x, a);
}

vl_tensor *vl_conv2d_pad(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[2],
                         const int64_t padding[4], const int64_t dilation[2], int64_t groups) {
  conv_args a = {.w = w, .b = b, .groups = groups};
  for (int i = 0; i < 2; i++) {
    a.stride[i] = stride ? stride[i] : 1;
    a.dil[i] = dilation ? dilation[i] : 1;
  }
  for (int i = 0; i < 4; i++) a.pad[i] = padding ? padding[i] : 0;
  return conv2d_any(x, &a);
}

vl_tensor *vl_conv2d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[2],
                     const int64_t padding[2], const int64_t dilation[2], int64_t groups) {
  int64_t pad[4] = {0, 0, 0, 0};
  if (padding) pad[0] = pad[1] = padding[0], pad[2] = pad[3] = padding[1];
  return vl_conv2d_pad(x, w, b, stride, pad, dilation, groups);
}

/* conv1d: [N,C,L] as [N,C,1,L] through conv2d. */
static vl_tensor *conv1d_batched(const vl_tensor *x, const void *vargs) {
  const conv_args *a = vargs;
  const char *op = "conv1d";
  char s1[VL_SHAPE_STR];
  if (x->ndim != 3)
    return vl_error(VL_ESHAPE, "%s: expected a 3-d input [N,C,L] (or 2-d [C,L]), got %d-d %s", op, x->ndim,
                    vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  if (a->w->ndim != 3)
    return vl_error(VL_ESHAPE, "%s: expected a 3-d weight [O,C/groups,k], got %d-d %s", op, a->w->ndim,
                    vl_shape_str(a->w->ndim, a->w->shape, s1)),
           NULL;
  if (a->stride[1] < 1 || a->dil[1] < 1 || a->pad[2] < 0 || a->pad[3] < 0 || a->stride[1] > VL_CONV_MAX_PARAM ||
      a->dil[1] > VL_CONV_MAX_PARAM || a->pad[2] > VL_CONV_MAX_PARAM || a->pad[3] > VL_CONV_MAX_PARAM)
    return vl_error(VL_EARG, "%s: stride and dilation must be 1..16777216 and padding 0..16777216, got stride %lld, "
                             "padding %lld/%lld, dilation %lld",
                    op, (long long)a->stride[1], (long long)a->pad[2], (long long)a->pad[3], (long long)a->dil[1]),
           NULL;
  /* the checks conv2d would make, in 1-d terms */
  const vl_tensor *w = a->w;
  int64_t G = a->groups, C = x->shape[1], L = x->shape[2], k = w->shape[2];
  if (G >= 1 && w->shape[1] * G != C)
    return vl_error(VL_ESHAPE, "%s: input has %lld channels but weight expects %lld (weight shape %s, groups %lld)",
                    op, (long long)C, (long long)(w->shape[1] * G), vl_shape_str(3, w->shape, s1), (long long)G),
           NULL;
  if (G >= 1 && w->shape[0] % G != 0)
    return vl_error(VL_ESHAPE, "%s: weight has %lld output channels, not divisible by groups %lld (weight shape %s)",
                    op, (long long)w->shape[0], (long long)G, vl_shape_str(3, w->shape, s1)),
           NULL;
  int64_t ek = a->dil[1] * (k - 1) + 1, PL = L + a->pad[2] + a->pad[3];
  if (k >= 1 && PL < ek)
    return vl_error(VL_ESHAPE, "%s: kernel %lld (dilated %lld) is larger than the padded input %lld (input %s)", op,
                    (long long)k, (long long)ek, (long long)PL, vl_shape_str(3, x->shape, s1)),
           NULL;
  vl_tensor *x4 = vl_unsqueeze(x, 2), *w4 = x4 ? vl_unsqueeze(a->w, 2) : NULL, *y4 = NULL;
  if (w4) {
    conv_args b = *a;
    b.w = w4;
    vl_clear_error();
    y4 = conv2d_batched(x4, &b);
    if (y4 == NULL && strncmp(vl_last_error(), "conv2d:", 7) == 0) {
      /* name this op in the message */
      char msg[VL_ERROR_MAX];
      snprintf(msg, sizeof msg, "%s", vl_last_error() + 7);
      vl_error((vl_status)vl_last_status(), "conv1d:%s", msg);
    }
  }
  vl_tensor *y = y4 ? vl_squeeze(y4, 2) : NULL;
  vl_tensor_release(x4), vl_tensor_release(w4), vl_tensor_release(y4);
  return y;
}

vl_tensor *vl_conv1d_pad(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, int64_t stride, int64_t pad_left,
                         int64_t pad_right, int64_t dilation, int64_t groups) {
  conv_args a = {.w = w, .b = b, .groups = groups,
                 .stride = {1, stride}, .pad = {0, 0, pad_left, pad_right}, .dil = {1, dilation}};
  if (x->ndim == 2) return unbatched(x, conv1d_batched, &a);
  return conv1d_batched(x, &a);
}

vl_tensor *vl_conv1d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, int64_t stride, int64_t padding,
                     int64_t dilation, int64_t groups) {
  return vl_conv1d_pad(x, w, b, stride, padding, padding, dilation, groups);
}

static vl_tensor *conv_t_batched(const vl_tensor *x, const void *vargs) {
  const conv_args *a = vargs;
  const char *op = "conv_transpose2d";
  const vl_tensor *w = a->w, *b = a->b;
  char s1[VL_SHAPE_STR];
  if (conv_check_common(op, x, w, b, a->groups) != VL_OK) return NULL;
  int64_t pad2[2] = {a->pad[0], a->pad[2]};
  if (check_pos(op, "stride", a->stride, 1) || check_pos(op, "dilation", a->dil, 1) ||
      check_pos(op, "padding", pad2, 0) || check_pos(op, "output_padding", a->outpad, 0))
    return NULL;
  for (int i = 0; i < 2; i++)
    if (a->outpad[i] >= a->stride[i] && a->outpad[i] >= a->dil[i])
      return vl_error(VL_EARG,
                      "%s: output_padding must be smaller than stride or dilation, got output_padding {%lld, %lld}, "
                      "stride {%lld, %lld}, dilation {%lld, %lld}",
                      op, (long long)a->outpad[0], (long long)a->outpad[1], (long long)a->stride[0],
                      (long long)a->stride[1], (long long)a->dil[0], (long long)a->dil[1]),
             NULL;
  int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t G = a->groups, kH = w->shape[2], kW = w->shape[3];
  if (w->shape[0] != C)
    return vl_error(VL_ESHAPE, "%s: input has %lld channels but weight expects %lld (weight shape %s, groups %lld)",
                    op, (long long)C, (long long)w->shape[0], vl_shape_str(4, w->shape, s1), (long long)G),
           NULL;
  if (C % G != 0)
    return vl_error(VL_ESHAPE, "%s: input has %lld channels, not divisible by groups %lld", op, (long long)C,
                    (long long)G),
           NULL;
  int64_t O = w->shape[1] * G;
  if (b && (b->ndim != 1 || b->shape[0] != O))
    return vl_error(VL_ESHAPE, "%s: bias must have shape [%lld] (one per output channel), got %s", op, (long long)O,
                    vl_shape_str(b->ndim, b->shape, s1)),
           NULL;
  if (kH < 1 || kW < 1)
    return vl_error(VL_ESHAPE, "%s: weight has an empty kernel (weight shape %s)", op,
                    vl_shape_str(4, w->shape, s1)),
           NULL;
  int64_t OH = (H - 1) * a->stride[0] - 2 * a->pad[0] + a->dil[0] * (kH - 1) + a->outpad[0] + 1;
  int64_t OW = (W - 1) * a->stride[1] - 2 * a->pad[2] + a->dil[1] * (kW - 1) + a->outpad[1] + 1;
  if (OH < 1 || OW < 1)
    return vl_error(VL_ESHAPE, "%s: output size %lldx%lld is too small (input %s, padding {%lld, %lld})", op,
                    (long long)OH, (long long)OW, vl_shape_str(4, x->shape, s1), (long long)a->pad[0],
                    (long long)a->pad[2]),
           NULL;
  geom g = {.G = G, .Ci = w->shape[1], .H = OH, .W = OW, .R = C / G, .OH = H, .OW = W,
            .kH = kH, .kW = kW, .sH = a->stride[0], .sW = a->stride[1], .pT = a->pad[0], .pL = a->pad[2],
            .dH = a->dil[0], .dW = a->dil[1]};
  if (check_blas(op, g.R, g_K(&g), g_L(&g)) != VL_OK) return NULL;
  int64_t yshape[4] = {N, O, OH, OW};
  return conv_run(op, true, x, w, b, &g, yshape);
}

vl_tensor *vl_conv_transpose2d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[2],
                               const int64_t padding[2], const int64_t output_padding[2], const int64_t dilation[2],
                               int64_t groups) {
  conv_args a = {.w = w, .b = b, .groups = groups};
  for (int i = 0; i < 2; i++) {
    a.stride[i] = stride ? stride[i] : 1;
    a.dil[i] = dilation ? dilation[i] : 1;
    a.outpad[i] = output_padding ? output_padding[i] : 0;
    a.pad[2 * i] = a.pad[2 * i + 1] = padding ? padding[i] : 0;
  }
  if (x->ndim == 3) return unbatched(x, conv_t_batched, &a);
  return conv_t_batched(x, &a);
}

/* ------------------------------------------------------------------ */
/* Pooling                                                              */
/* ------------------------------------------------------------------ */

typedef struct pool_args {
  const char *op;
  int64_t kernel[2], stride[2], pad[2], dil[2];
  bool ceil_mode, count_include_pad, want_indices;
  int64_t divisor;          /* avg: divisor_override, 0 = none */
  int64_t out[2];           /* adaptive: output size */
  vl_tensor **indices;      /* max: where the indices go */
} pool_args;


/* Checks of the windowed pools; sets the output size. */
static int pool_check(const pool_args *a, const vl_tensor *x, bool with_dilation, int64_t *OH, int64_t *OW) {
  const char *op = a->op;
  char s1[VL_SHAPE_STR];
  if (x->ndim != 4)
    return vl_error(VL_ESHAPE, "%s: expected a 4-d input [N,C,H,W] (or 3-d [C,H,W]), got %d-d %s", op, x->ndim,
                    vl_shape_str(x->ndim, x->shape, s1));
  if (check_pos(op, "kernel size", a->kernel, 1) || check_pos(op, "stride", a->stride, 1) ||
      check_pos(op, "padding", a->pad, 0) || (with_dilation && check_pos(op, "dilation", a->dil, 1)))
    return vl_last_status();
  if (a->pad[0] > a->kernel[0] / 2 || a->pad[1] > a->kernel[1] / 2)
    return vl_error(VL_EARG, "%s: padding {%lld, %lld} must be at most half the kernel size {%lld, %lld}", op,
                    (long long)a->pad[0], (long long)a->pad[1], (long long)a->kernel[0], (long long)a->kernel[1]);
  if (x->shape[1] == 0 || x->shape[2] == 0 || x->shape[3] == 0)
    return vl_error(VL_ESHAPE, "%s: expected non-empty channel and spatial dims, got input %s", op,
                    vl_shape_str(4, x->shape, s1));
  int64_t d0 = with_dilation ? a->dil[0] : 1, d1 = with_dilation ? a->dil[1] : 1;
  *OH = pool_out(x->shape[2], a->kernel[0], a->pad[0], a->stride[0], d0, a->ceil_mode);
  *OW = pool_out(x->shape[3], a->kernel[1], a->pad[1], a->stride[1], d1, a->ceil_mode);
  if (*OH < 1 || *OW < 1)
    return vl_error(VL_ESHAPE,
                    "%s: output size %lldx%lld is too small: kernel {%lld, %lld}%s is larger than the padded input "
                    "%s (padding {%lld, %lld})",
                    op, (long long)*OH, (long long)*OW, (long long)a->kernel[0], (long long)a->kernel[1],
                    with_dilation && (d0 > 1 || d1 > 1) ? " (dilated)" : "", vl_shape_str(4, x->shape, s1),
                    (long long)a->pad[0], (long long)a->pad[1]);
  return VL_OK;
}

/* ---- max pooling ---- */

typedef struct pool_geom {
  int64_t planes, H, W, OH, OW, kH, kW, sH, sW, pH, pW, dH, dW;
} pool_geom;

/* One typed kernel per dtype: the max over each window (a NaN wins, as in
   PyTorch) and its flat index ih*W + iw in the plane. */
#define DEFINE_MAXPOOL(T, NAME)                                                                          \
  static void NAME(const pool_geom *p, const T *restrict x, T *restrict y, int64_t *restrict ind) {      \
    int64_t HW = p->H * p->W, OHW = p->OH * p->OW;                                                       \
    _Pragma("omp parallel for if (p->planes * OHW * p->kH * p->kW > VL_PARALLEL_GRAIN) schedule(static)") \
    for (int64_t pl = 0; pl < p->planes; pl++) {                                                         \
      const T *restrict xp = x + pl * HW;                                                                \
      for (int64_t oh = 0; oh < p->OH; oh++) {                                                           \
        int64_t hs = oh * p->sH - p->pH, he = VL_MIN(hs + (p->kH - 1) * p->dH + 1, p->H);                \
        while (hs < 0) hs += p->dH;                                                                      \
        for (int64_t ow = 0; ow < p->OW; ow++) {                                                         \
          int64_t ws = ow * p->sW - p->pW, we = VL_MIN(ws + (p->kW - 1) * p->dW + 1, p->W);              \
          while (ws < 0) ws += p->dW;                                                                    \
          int64_t best = hs * p->W + ws;                                                                 \
          T m = 0;                                                                                       \
          bool have = false;                                                                             \
          for (int64_t ih = hs; ih < he; ih += p->dH)                                                    \
            for (int64_t iw = ws; iw < we; iw += p->dW) {                                                \
              T v = xp[ih * p->W + iw];                                                                  \
              if (!have || v > m || v != v) { /* the last NaN wins, as in PyTorch */                    \
                m = v, best = ih * p->W + iw, have = true;                                               \
              }                                                                                          \
            }                                                                                            \
          y[pl * OHW + oh * p->OW + ow] = have ? m : (T)MAXPOOL_EMPTY_##NAME;                            \
          ind[pl * OHW + oh * p->OW + ow] = best;                                                        \
        }                                                                                                \
      }                                                                                                  \
    }                                                                                                    \
  }

/* The common 2x2, stride 2 window without padding, in float32: one output
   row from input rows r0, r1 (r1 = r0 + W). Same choice as the general
   loop: the first maximum, or the last NaN. */
static inline void maxpool2x2_scalar(const float *r0, const float *r1, int64_t W, int64_t base, int64_t ow0,
                                     int64_t OW, float *yo, int64_t *io) {
  for (int64_t ow = ow0; ow < OW; ow++) {
    const float c[4] = {r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]};
    const int64_t at[4] = {0, 1, W, W + 1};
    int best = 0;
    for (int q = 1; q < 4; q++)
      if (c[q] > c[best] || c[q] != c[q]) best = q;
    yo[ow] = c[best];
    io[ow] = base + 2 * ow + at[best];
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
#define VL_POOL_AVX512 1
/* Flat indices of eight windows from their choices (0..3: which of
   r0[2j], r0[2j+1], r1[2j], r1[2j+1]); `first` is window 0's r0[2j]. */
__attribute__((target("avx512f"))) static inline void maxpool2x2_index8(__m256i sel32, int64_t first, int64_t W,
                                                                         int64_t *io, __mmask8 keep) {
  const __m512i two_j = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  __m512i s = _mm512_cvtepi32_epi64(sel32);
  __m512i idx = _mm512_add_epi64(_mm512_set1_epi64(first), two_j);
  idx = _mm512_add_epi64(idx, _mm512_and_si512(s, _mm512_set1_epi64(1)));
  __mmask8 lower = _mm512_cmpge_epi64_mask(s, _mm512_set1_epi64(2));
  idx = _mm512_mask_add_epi64(idx, lower, idx, _mm512_set1_epi64(W));
  _mm512_mask_storeu_epi64(io, keep, idx);
}

/* Sixteen outputs at a time: de-interleave even/odd columns of both rows,
   then three masked compare-and-select steps (NaN counts as greater). */
__attribute__((target("avx512f"))) static void maxpool2x2_row_avx512(const float *r0, const float *r1, int64_t W,
                                                                      int64_t base, int64_t OW, float *yo,
                                                                      int64_t *io) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  for (int64_t ow = 0; ow < OW; ow += 16) {
    /* a short or last chunk loads and stores under masks */
    int64_t n = VL_MIN((int64_t)16, OW - ow);
    __mmask16 lo = (__mmask16)(n >= 8 ? 0xFFFF : (1u << (2 * n)) - 1);
    __mmask16 hi = (__mmask16)(n <= 8 ? 0 : n == 16 ? 0xFFFF : (1u << (2 * n - 16)) - 1);
    __mmask16 out = (__mmask16)(n == 16 ? 0xFFFF : (1u << n) - 1);
    __m512 a0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * ow), a1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * ow + 16);
    __m512 b0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * ow), b1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * ow + 16);
    __m512 cand[3] = {_mm512_permutex2var_ps(a0, odd, a1), _mm512_permutex2var_ps(b0, even, b1),
                      _mm512_permutex2var_ps(b0, odd, b1)};
    __m512 m = _mm512_permutex2var_ps(a0, even, a1);
    __m512i sel = _mm512_setzero_si512();
    for (int q = 0; q < 3; q++) {
      __mmask16 t = _mm512_cmp_ps_mask(cand[q], m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(cand[q], cand[q], _CMP_UNORD_Q);
      m = _mm512_mask_mov_ps(m, t, cand[q]);
      sel = _mm512_mask_mov_epi32(sel, t, _mm512_set1_epi32(q + 1));
    }
    _mm512_mask_storeu_ps(yo + ow, out, m);
    /* int64 indices, eight at a time (the extract needs a constant half) */
    maxpool2x2_index8(_mm512_extracti64x4_epi64(sel, 0), base + 2 * ow, W, io + ow, (__mmask8)out);
    maxpool2x2_index8(_mm512_extracti64x4_epi64(sel, 1), base + 2 * ow + 16, W, io + ow + 8, (__mmask8)(out >> 8));
  }
}
#endif

static void maxpool2x2_plane_f32(const float *xp, int64_t W, int64_t OH, int64_t OW, float *y, int64_t *ind,
                                 bool avx512) {
  for (int64_t oh = 0; oh < OH; oh++) {
    const float *r0 = xp + 2 * oh * W;
#ifdef VL_POOL_AVX512
    if (avx512) {
      maxpool2x2_row_avx512(r0, r0 + W, W, 2 * oh * W, OW, y + oh * OW, ind + oh * OW);
      continue;
    }
#endif
    maxpool2x2_scalar(r0, r0 + W, W, 2 * oh * W, 0, OW, y + oh * OW, ind + oh * OW);
  }
  VL_UNUSED(avx512);
}

static bool maxpool_is_2x2(const pool_geom *p) {
  return p->kH == 2 && p->kW == 2 && p->sH == 2 && p->sW == 2 && p->pH == 0 && p->pW == 0 && p->dH == 1 &&
         p->dW == 1 && 2 * p->OH <= p->H && 2 * p->OW <= p->W;
}

static void maxpool2x2_f32(const pool_geom *p, const float *x, float *y, int64_t *ind) {
  int64_t HW = p->H * p->W, OHW = p->OH * p->OW;
  bool avx512 = false;
#ifdef VL_POOL_AVX512
  avx512 = __builtin_cpu_supports("avx512f");
#endif
#pragma omp parallel for if (p->planes * HW > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t pl = 0; pl < p->planes; pl++)
    maxpool2x2_plane_f32(x + pl * HW, p->W, p->OH, p->OW, y + pl * OHW, ind + pl * OHW, avx512);
}

/* The value of a window that holds no element (padding and dilation can
   make one): -inf like PyTorch, the lowest value for integers. */
#define MAXPOOL_EMPTY_maxpool_f32 (-INFINITY)
#define MAXPOOL_EMPTY_maxpool_f64 (-INFINITY)
#define MAXPOOL_EMPTY_maxpool_i64 INT64_MIN
#define MAXPOOL_EMPTY_maxpool_i32 INT32_MIN
#define MAXPOOL_EMPTY_maxpool_u8 0

DEFINE_MAXPOOL(float, maxpool_f32)
DEFINE_MAXPOOL(double, maxpool_f64)
DEFINE_MAXPOOL(int64_t, maxpool_i64)
DEFINE_MAXPOOL(int32_t, maxpool_i32)
DEFINE_MAXPOOL(uint8_t, maxpool_u8)

/* gx[plane][ind] += g over every output (ind saved by the forward). */
static int max_pool_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *ind = nd->saved[0];
  vl_dtype dt = compute_dtype(nd->in_dtype[0]);
  vl_tensor *gc = working(g, dt), *ic = gc ? vl_contiguous(ind) : NULL;
  vl_tensor *gx = ic ? vl_zeros(4, nd->in_shape[0], dt) : NULL;
  if (gx == NULL) {
    vl_tensor_release(gc), vl_tensor_release(ic);
    return vl_last_status();
  }
  int64_t planes = gx->shape[0] * gx->shape[1], HW = gx->shape[2] * gx->shape[3];
  int64_t OHW = gc->shape[2] * gc->shape[3];
  const int64_t *ip = vl_data_ptr(ic);
  const char *gp = vl_data_ptr(gc);
  char *xp = vl_data_ptr(gx);
#pragma omp parallel for if (planes * OHW > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t pl = 0; pl < planes; pl++) {
    for (int64_t o = 0; o < OHW; o++) {
      int64_t k = ip[pl * OHW + o];
      if (k < 0 || k >= HW) continue; /* an empty window */
      if (dt == VL_FLOAT32)
        ((float *)xp)[pl * HW + k] += ((const float *)gp)[pl * OHW + o];
      else
        ((double *)xp)[pl * HW + k] += ((const double *)gp)[pl * OHW + o];
    }
  }
  vl_tensor_release(gc), vl_tensor_release(ic);
  gi[0] = vl_ag_reduce_to(nd, 0, gx);
  return gi[0] ? VL_OK : vl_last_status();
}

static vl_tensor *max_pool_batched(const vl_tensor *x, const void *vargs) {
  const pool_args *a = vargs;
  int64_t OH, OW;
  if (x->dtype == VL_BOOL)
    return vl_error(VL_EDTYPE, "%s: bool input is not supported (convert it to a number dtype)", a->op), NULL;
  if (pool_check(a, x, true, &OH, &OW) != VL_OK) return NULL;
  bool need = vl_ag_needed(1, &x);
  vl_dtype dt = x->dtype == VL_FLOAT16 || x->dtype == VL_BFLOAT16 ? VL_FLOAT32 : x->dtype;
  pool_geom p = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], OH, OW, a->kernel[0], a->kernel[1],
                 a->stride[0], a->stride[1], a->pad[0], a->pad[1], a->dil[0], a->dil[1]};
  int64_t yshape[4] = {x->shape[0], x->shape[1], OH, OW};
  grad_guard gg = grad_off();
  vl_tensor *xc = working(x, dt);
  vl_tensor *y = xc ? vl_empty(4, yshape, dt) : NULL, *ind = y ? vl_empty(4, yshape, VL_INT64) : NULL;
  int rc = ind ? VL_OK : vl_last_status();
  if (rc == VL_OK) {
    const void *xp = vl_data_ptr(xc);
    void *yp = vl_data_ptr(y);
    int64_t *ip = vl_data_ptr(ind);
    switch (dt) {
      case VL_FLOAT32:
        if (maxpool_is_2x2(&p))
          maxpool2x2_f32(&p, xp, yp, ip);
        else
          maxpool_f32(&p, xp, yp, ip);
        break;
      case VL_FLOAT64: maxpool_f64(&p, xp, yp, ip); break;
      case VL_INT64: maxpool_i64(&p, xp, yp, ip); break;
      case VL_INT32: maxpool_i32(&p, xp, yp, ip); break;
      default: maxpool_u8(&p, xp, yp, ip); break;
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
    vl_node *n = vl_ag_node(a->op, max_pool_backward, 1, &x);
    if (n == NULL || vl_ag_save(n, ind) < 0 || vl_ag_attach(y, n) != VL_OK) {
      vl_ag_node_release(n);
      rc = vl_last_status();
    }
  }
  if (rc != VL_OK) {
    vl_tensor_release(y), vl_tensor_release(ind);
    return NULL;
  }
  /* the indices go out through a->indices; the values are the result */
  *a->indices = ind;
  return y;
}

/* Runs a pool that also gives indices, batched or not. */
static int max_pool_any(const vl_tensor *x, pool_args *a, vl_tensor **values, vl_tensor **indices) {
  vl_tensor *ind = NULL, *y;
  a->indices = &ind;
  if (x->ndim == 3) {
    y = unbatched(x, max_pool_batched, a);
    if (ind) {
      vl_tensor *s = vl_squeeze(ind, 0);
      vl_tensor_release(ind);
      ind = s;
      if (s == NULL) {
        vl_tensor_release(y);
        y = NULL;
      }
    }
  } else {
    y = max_pool_batched(x, a);
  }
  if (y == NULL) {
    vl_tensor_release(ind);
    return vl_last_status();
  }
  *values = y;
  if (indices)
    *indices = ind;
  else
    vl_tensor_release(ind);
  return VL_OK;
}

static void pair(int64_t out[2], const int64_t *in, int64_t def0, int64_t def1) {
  out[0] = in ? in[0] : def0;
  out[1] = in ? in[1] : def1;
}

int vl_max_pool2d(const vl_tensor *x, const int64_t kernel[2], const int64_t stride[2], const int64_t padding[2],
                  const int64_t dilation[2], bool ceil_mode, vl_tensor **values, vl_tensor **indices) {
  *values = NULL;
  if (indices) *indices = NULL;
  if (kernel == NULL) return vl_error(VL_EARG, "max_pool2d: a kernel size is needed");
  pool_args a = {.op = "max_pool2d", .ceil_mode = ceil_mode};
  pair(a.kernel, kernel, 1, 1);
  pair(a.stride, stride, kernel[0], kernel[1]);
  pair(a.pad, padding, 0, 0);
  pair(a.dil, dilation, 1, 1);
  return max_pool_any(x, &a, values, indices);
}

/* The 1-d pools: [N,C,L] as [N,C,1,L] (unbatched [C,L] as [C,1,L]). */
static int pool1d_prepare(const char *op, const vl_tensor *x, vl_tensor **x4) {
  char s1[VL_SHAPE_STR];
  if (x->ndim != 2 && x->ndim != 3)
    return vl_error(VL_ESHAPE, "%s: expected a 3-d input [N,C,L] (or 2-d [C,L]), got %d-d %s", op, x->ndim,
                    vl_shape_str(x->ndim, x->shape, s1));
  *x4 = vl_unsqueeze(x, x->ndim - 1);
  return *x4 ? VL_OK : vl_last_status();
}

static vl_tensor *squeeze_h(vl_tensor *t) {
  if (t == NULL) return NULL;
  vl_tensor *r = vl_squeeze(t, t->ndim - 2);
  vl_tensor_release(t);
  return r;
}

int vl_max_pool1d(const vl_tensor *x, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                  bool ceil_mode, vl_tensor **values, vl_tensor **indices) {
  *values = NULL;
  if (indices) *indices = NULL;
  vl_tensor *x4;
  if (pool1d_prepare("max_pool1d", x, &x4) != VL_OK) return vl_last_status();
  pool_args a = {.op = "max_pool1d", .ceil_mode = ceil_mode, .kernel = {1, kernel},
                 .stride = {1, stride == 0 ? kernel : stride}, .pad = {0, padding}, .dil = {1, dilation}};
  vl_tensor *v = NULL, *i = NULL;
  int rc = max_pool_any(x4, &a, &v, &i);
  vl_tensor_release(x4);
  if (rc != VL_OK) return rc;
  v = squeeze_h(v);
  i = v ? squeeze_h(i) : (vl_tensor_release(i), NULL);
  if (v == NULL || i == NULL) {
    vl_tensor_release(v), vl_tensor_release(i);
    return vl_last_status();
  }
  *values = v;
  if (indices)
    *indices = i;
  else
    vl_tensor_release(i);
  return VL_OK;
}

/* ---- average pooling ---- */

/* The window [hs, he) x [ws, we) of output (oh, ow) and its divisor, as
   PyTorch's avg_pool2d. */
typedef struct avg_geom {
  pool_geom p;
  bool count_include_pad;
  int64_t divisor;
} avg_geom;

static inline void avg_window(const avg_geom *a, int64_t oh, int64_t ow, int64_t *hs, int64_t *he, int64_t *ws,
                              int64_t *we, double *div) {
  const pool_geom *p = &a->p;
  int64_t h0 = oh * p->sH - p->pH, w0 = ow * p->sW - p->pW;
  int64_t h1 = VL_MIN(h0 + p->kH, p->H + p->pH), w1 = VL_MIN(w0 + p->kW, p->W + p->pW);
  int64_t size = (h1 - h0) * (w1 - w0);
  h0 = VL_MAX(h0, 0), w0 = VL_MAX(w0, 0);
  h1 = VL_MIN(h1, p->H), w1 = VL_MIN(w1, p->W);
  *hs = h0, *he = h1, *ws = w0, *we = w1;
  if (a->divisor)
    *div = (double)a->divisor;
  else
    *div = (double)(a->count_include_pad ? size : (h1 - h0) * (w1 - w0));
}

/* Adaptive windows: start = floor(i*in/out), end = ceil((i+1)*in/out). */
static inline int64_t ad_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
static inline int64_t ad_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

typedef struct avg_ctx {
  avg_geom a;
  bool adaptive;
} avg_ctx;

static inline void window_of(const avg_ctx *c, int64_t oh, int64_t ow, int64_t *hs, int64_t *he, int64_t *ws,
                             int64_t *we, double *div) {
  if (c->adaptive) {
    const pool_geom *p = &c->a.p;
    *hs = ad_start(oh, p->H, p->OH), *he = ad_end(oh, p->H, p->OH);
    *ws = ad_start(ow, p->W, p->OW), *we = ad_end(ow, p->W, p->OW);
    *div = (double)((*he - *hs) * (*we - *ws));
  } else {
    avg_window(&c->a, oh, ow, hs, he, ws, we, div);
  }
}

/* Sums in double, whatever the dtype. */
static void avg_forward(const avg_ctx *c, vl_dtype dt, const char *x, char *y) {
  const pool_geom *p = &c->a.p;
  int64_t HW = p->H * p->W, OHW = p->OH * p->OW;
#pragma omp parallel for if (p->planes * HW > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t pl = 0; pl < p->planes; pl++) {
    for (int64_t oh = 0; oh < p->OH; oh++)
      for (int64_t ow = 0; ow < p->OW; ow++) {
        int64_t hs, he, ws, we;
        double div, s = 0;
        window_of(c, oh, ow, &hs, &he, &ws, &we, &div);
        if (dt == VL_FLOAT32) {
          const float *xp = (const float *)x + pl * HW;
          for (int64_t ih = hs; ih < he; ih++)
            for (int64_t iw = ws; iw < we; iw++) s += xp[ih * p->W + iw];
        } else {
          const double *xp = (const double *)x + pl * HW;
          for (int64_t ih = hs; ih < he; ih++)
            for (int64_t iw = ws; iw < we; iw++) s += xp[ih * p->W + iw];
        }
        vl_store(y, pl * OHW + oh * p->OW + ow, dt, s / div);
      }
  }
}

static int avg_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  const avg_ctx *c = nd->extra;
  const pool_geom *p = &c->a.p;
  vl_dtype dt = compute_dtype(nd->in_dtype[0]);
  vl_tensor *gc = working(g, dt);
  vl_tensor *gx = gc ? vl_zeros(4, nd->in_shape[0], dt) : NULL;
  if (gx == NULL) {
    vl_tensor_release(gc);
    return vl_last_status();
  }
  int64_t HW = p->H * p->W, OHW = p->OH * p->OW;
  const char *gp = vl_data_ptr(gc);
  char *xp = vl_data_ptr(gx);
#pragma omp parallel for if (p->planes * HW > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t pl = 0; pl < p->planes; pl++) {
    for (int64_t oh = 0; oh < p->OH; oh++)
      for (int64_t ow = 0; ow < p->OW; ow++) {
        int64_t hs, he, ws, we;
        double div;
        window_of(c, oh, ow, &hs, &he, &ws, &we, &div);
        double v = vl_load(gp, pl * OHW + oh * p->OW + ow, dt) / div;
        if (dt == VL_FLOAT32) {
          float *d = (float *)xp + pl * HW, fv = (float)v;
          for (int64_t ih = hs; ih < he; ih++)
            for (int64_t iw = ws; iw < we; iw++) d[ih * p->W + iw] += fv;
        } else {
          double *d = (double *)xp + pl * HW;
          for (int64_t ih = hs; ih < he; ih++)
            for (int64_t iw = ws; iw < we; iw++) d[ih * p->W + iw] += v;
        }
      }
  }
  vl_tensor_release(gc);
  gi[0] = vl_ag_reduce_to(nd, 0, gx);
  return gi[0] ? VL_OK : vl_last_status();
}

/* Shared tail of avg_pool2d and adaptive_avg_pool2d. */
static vl_tensor *avg_run(const char *op, const vl_tensor *x, const avg_ctx *c) {
  bool need = vl_ag_needed(1, &x);
  vl_dtype dt = compute_dtype(x->dtype);
  int64_t yshape[4] = {x->shape[0], x->shape[1], c->a.p.OH, c->a.p.OW};
  grad_guard gg = grad_off();
  vl_tensor *xc = working(x, dt), *y = xc ? vl_empty(4, yshape, dt) : NULL;
  int rc = y ? VL_OK : vl_last_status();
  if (rc == VL_OK) {
    avg_forward(c, dt, vl_data_ptr(xc), vl_data_ptr(y));
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
    vl_node *n = vl_ag_node(op, avg_backward, 1, &x);
    avg_ctx *cc = n ? malloc(sizeof *cc) : NULL;
    if (cc) {
      *cc = *c;
      n->extra = cc, n->free_extra = free;
    }
    if (n == NULL || cc == NULL || vl_ag_attach(y, n) != VL_OK) {
      if (n && cc == NULL) vl_error(VL_ENOMEM, "%s: out of memory for the autograd node", op);
      vl_ag_node_release(n);
      rc = vl_last_status();
    }
  }
  if (rc != VL_OK) {
    vl_tensor_release(y);
    return NULL;
  }
  return y;
}

static vl_tensor *avg_pool_batched(const vl_tensor *x, const void *vargs) {
  const pool_args *a = vargs;
  int64_t OH, OW;
  if (need_float(a->op, "input", x) != VL_OK || pool_check(a, x, false, &OH, &OW) != VL_OK) return NULL;
  if (a->divisor < 0)
    return vl_error(VL_EARG, "%s: divisor_override must be positive, got %lld", a->op, (long long)a->divisor), NULL;
  avg_ctx c = {.adaptive = false,
               .a = {.p = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], OH, OW, a->kernel[0], a->kernel[1],
                           a->stride[0], a->stride[1], a->pad[0], a->pad[1], 1, 1},
                     .count_include_pad = a->count_include_pad,
                     .divisor = a->divisor}};
  return avg_run(a->op, x, &c);
}

vl_tensor *vl_avg_pool2d(const vl_tensor *x, const int64_t kernel[2], const int64_t stride[2],
                         const int64_t padding[2], bool ceil_mode, bool count_include_pad,
                         int64_t divisor_override) {
  if (kernel == NULL) return vl_error(VL_EARG, "avg_pool2d: a kernel size is needed"), NULL;
  pool_args a = {.op = "avg_pool2d", .ceil_mode = ceil_mode, .count_include_pad = count_include_pad,
                 .divisor = divisor_override};
  pair(a.kernel, kernel, 1, 1);
  pair(a.stride, stride, kernel[0], kernel[1]);
  pair(a.pad, padding, 0, 0);
  if (x->ndim == 3) return unbatched(x, avg_pool_batched, &a);
  return avg_pool_batched(x, &a);
}

vl_tensor *vl_avg_pool1d(const vl_tensor *x, int64_t kernel, int64_t stride, int64_t padding, bool ceil_mode,
                         bool count_include_pad) {
  vl_tensor *x4;
  if (pool1d_prepare("avg_pool1d", x, &x4) != VL_OK) return NULL;
  pool_args a = {.op = "avg_pool1d", .ceil_mode = ceil_mode, .count_include_pad = count_include_pad,
                 .kernel = {1, kernel}, .stride = {1, stride == 0 ? kernel : stride}, .pad = {0, padding}};
  vl_tensor *y = x4->ndim == 3 ? unbatched(x4, avg_pool_batched, &a) : avg_pool_batched(x4, &a);
  vl_tensor_release(x4);
  return squeeze_h(y);
}

static vl_tensor *adaptive_batched(const vl_tensor *x, const void *vargs) {
  const pool_args *a = vargs;
  const char *op = a->op;
  char s1[VL_SHAPE_STR];
  if (need_float(op, "input", x) != VL_OK) return NULL;
  if (x->ndim != 4)
    return vl_error(VL_ESHAPE, "%s: expected a 4-d input [N,C,H,W] (or 3-d [C,H,W]), got %d-d %s", op, x->ndim,
                    vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  if (a->out[0] < 0 || a->out[1] < 0)
    return vl_error(VL_EARG, "%s: output size must be non-negative, got {%lld, %lld}", op, (long long)a->out[0],
                    (long long)a->out[1]),
           NULL;
  if (x->shape[1] == 0 || x->shape[2] == 0 || x->shape[3] == 0)
    return vl_error(VL_ESHAPE, "%s: expected non-empty channel and spatial dims, got input %s", op,
                    vl_shape_str(4, x->shape, s1)),
           NULL;
  if (x->shape[2] > INT64_MAX / VL_MAX(a->out[0], 1) || x->shape[3] > INT64_MAX / VL_MAX(a->out[1], 1))
    return vl_error(VL_ENOMEM, "%s: sizes too large", op), NULL;
  avg_ctx c = {.adaptive = true,
               .a = {.p = {x->shape[0] * x->shape[1], x->shape[2], x->shape[3], a->out[0], a->out[1], 1, 1, 1, 1, 0,
                           0, 1, 1}}};
  return avg_run(op, x, &c);
}

vl_tensor *vl_adaptive_avg_pool2d(const vl_tensor *x, int64_t out_h, int64_t out_w) {
  pool_args a = {.op = "adaptive_avg_pool2d", .out = {out_h, out_w}};
  if (x->ndim == 3) return unbatched(x, adaptive_batched, &a);
  return adaptive_batched(x, &a);
}
