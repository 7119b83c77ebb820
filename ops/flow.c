/*
** flow.c — optical flow (prefix vl_flow_).
**
** vl_flow_farneback: Gunnar Farnebäck, "Two-Frame Motion Estimation Based
** on Polynomial Expansion" (SCIA 2003), computed as OpenCV 4.6's
** cv::calcOpticalFlowFarneback does on the CPU, so that the two agree to
** float rounding:
**   - pyramid: level k (scale s = pyr_scale^k) is the full-resolution
**     image blurred by a Gaussian (sigma = (1/s - 1)/2, size
**     max(3, round(5 sigma) | 1); level 0: the 3-tap [1 2 1]/4 kernel that
**     OpenCV uses for sigma 0), reflect-101 borders, then resized
**     bilinearly (half-pixel centres, clamped at the edges) to
**     round(W s) x round(H s). Levels stop where a side would fall under
**     32 pixels, as OpenCV does. Only the rows and columns the resize
**     reads are blurred.
**   - polynomial expansion: separable Gaussian-weighted (poly_sigma)
**     filters of radius poly_n (replicated borders) give the quadratic
**     and linear coefficients (r_y, r_x, r_yy, r_xx, r_xy) by the closed
**     form inverse of the 6x6 Gram matrix.
**   - per level: the flow of the coarser level is resized bilinearly and
**     scaled by 1/pyr_scale; the update matrices (G11, G12, G22, h1, h2)
**     come from the two expansions at x and x + d (bilinear, weighted
**     down within 5 pixels of the border as OpenCV); each iteration blurs
**     them (box of winsize, or a Gaussian of sigma 0.3 (winsize/2)) and
**     solves the 2x2 system (+1e-3 on the determinant).
**   OpenCV updates the matrices in stripes behind the blur; since no row
**   it updates is read again in that iteration, that equals blurring all
**   rows first and updating after, which is what runs here, in one
**   parallel pass per iteration (ping-pong matrix buffers).
**
** vl_flow_lucas_kanade: Bouguet's pyramidal Lucas-Kanade as
** cv::calcOpticalFlowPyrLK on 8-bit images, in the same fixed point
** (14-bit bilinear weights, intensities with 5 fraction bits, Scharr
** derivatives, reflect-101 image borders and zero derivative borders of
** win_size pixels), so tracks agree with OpenCV's to float rounding.
**
** vl_flow_to_rgb (the Middlebury colour code) and vl_flow_epe (endpoint
** error) are in ops/flow_color.c.
**
** Threads: OpenMP over rows (Farnebäck) or points (Lucas-Kanade); the
** row functions carry VL_CLONES (AVX-512 / AVX2 / baseline copies).
*/
#include <float.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vl_internal.h"

#define FB_MIN_SIZE 32   /* OpenCV's smallest pyramid side */
#define FB_BORDER 5      /* rows/cols weighted down near the border */
#define FLOW_GRAIN 16384 /* pixels below which a pass runs on one thread */

/* ------------------------------------------------------------------ */
/* Input images                                                        */
/* ------------------------------------------------------------------ */

/* Layout of an image argument: gray [H,W] or [1,H,W]; colour [H,W,3]
   (checked first) or [3,H,W], RGB. */
typedef struct img_desc {
  int64_t h, w;
  int color;        /* 0 gray, 1 HWC, 2 CHW */
} img_desc;

static int describe_image(const char *op, const char *name, const vl_tensor *t, img_desc *d) {
  char sb[VL_SHAPE_STR];
  if (t->dtype != VL_UINT8 && t->dtype != VL_FLOAT32 && t->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, "%s: %s must be uint8, float32 or float64, got %s", op, name,
                    vl_dtype_name(t->dtype));
  d->color = 0;
  if (t->ndim == 2) {
    d->h = t->shape[0], d->w = t->shape[1];
  } else if (t->ndim == 3 && t->shape[2] == 3) {
    d->h = t->shape[0], d->w = t->shape[1], d->color = 1;
  } else if (t->ndim == 3 && t->shape[0] == 3) {
    d->h = t->shape[1], d->w = t->shape[2], d->color = 2;
  } else if (t->ndim == 3 && t->shape[0] == 1) {
    d->h = t->shape[1], d->w = t->shape[2];
  } else {
    return vl_error(VL_ESHAPE, "%s: %s has shape %s, expected a gray [H,W] or [1,H,W] or an RGB [H,W,3] or "
                    "[3,H,W] image", op, name, vl_shape_str(t->ndim, t->shape, sb));
  }
  if (d->h > INT_MAX / 4 || d->w > INT_MAX / 4 || d->h * d->w > INT_MAX / 8)
    return vl_error(VL_EARG, "%s: %s of %lld x %lld pixels is too large (at most %d pixels)", op, name,
                    (long long)d->h, (long long)d->w, INT_MAX / 8);
  return VL_OK;
}

/* OpenCV's RGB -> gray weights: 0.299 R + 0.587 G + 0.114 B; for uint8 its
   fixed point (15 bits, rounded: 9798, 19235, 3735), giving the same bytes
   as cvtColor(COLOR_RGB2GRAY) in OpenCV 4.x. */
static inline int gray_u8(int r, int g, int b) { return (r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15; }

/* Gray float image (values as given; uint8 as 0..255). Refuses NaN/Inf. */
static int image_to_f32(const char *op, const char *name, const vl_tensor *t, const img_desc *d, float *out) {
  vl_tensor *c = vl_contiguous(t);
  if (!c) return vl_last_status();
  const int64_t n = d->h * d->w;
  const void *p = vl_data_ptr(c);
  int64_t bad = -1;
  if (c->dtype == VL_UINT8) {
    const uint8_t *s = p;
    if (!d->color)
      for (int64_t i = 0; i < n; i++) out[i] = s[i];
    else if (d->color == 1)
      for (int64_t i = 0; i < n; i++) out[i] = (float)gray_u8(s[3 * i], s[3 * i + 1], s[3 * i + 2]);
    else
      for (int64_t i = 0; i < n; i++) out[i] = (float)gray_u8(s[i], s[n + i], s[2 * n + i]);
  } else {
    for (int64_t i = 0; i < n; i++) {
      double r, g, b;
      if (!d->color) {
        r = vl_load(p, i, c->dtype);
        out[i] = (float)r;
      } else {
        int64_t s0 = d->color == 1 ? 3 * i : i, st = d->color == 1 ? 1 : n;
        r = vl_load(p, s0, c->dtype), g = vl_load(p, s0 + st, c->dtype), b = vl_load(p, s0 + 2 * st, c->dtype);
        out[i] = (float)(0.299 * r + 0.587 * g + 0.114 * b);
      }
      if (bad < 0 && !isfinite(out[i])) bad = i;
    }
  }
  vl_tensor_release(c);
  if (bad >= 0)
    return vl_error(VL_EARG, "%s: %s has a NaN or infinite value at row %lld, column %lld (1-based), expected "
                    "finite intensities", op, name, (long long)(bad / d->w + 1), (long long)(bad % d->w + 1));
  return VL_OK;
}

/* Reflect-101 index (OpenCV's borderInterpolate, BORDER_REFLECT_101). */
static inline int reflect101(int p, int len) {
  if (len == 1) return 0;
  while ((unsigned)p >= (unsigned)len) {
    if (p < 0)
      p = -p;
    else
      p = 2 * len - 2 - p;
  }
  return p;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ------------------------------------------------------------------ */
/* Farnebäck: pyramid levels                                           */
/* ------------------------------------------------------------------ */

/* Bilinear resize map of OpenCV's INTER_LINEAR (half-pixel centres):
   dst i reads src idx[i] (weight 1 - wt[i]) and idx[i] + 1 (wt[i]). */
static void linear_map(int src, int dst, int *idx, float *wt) {
  double sc = (double)src / dst;
  for (int i = 0; i < dst; i++) {
    float f = (float)((i + 0.5) * sc - 0.5);
    int s = (int)floorf(f);
    f -= (float)s;
    if (s < 0) f = 0, s = 0;
    if (s >= src - 1) f = 0, s = src - 1;
    idx[i] = s;
    wt[i] = f;
  }
}

/* OpenCV's getGaussianKernel(n, sigma) as float (sigma <= 0 and n == 3:
   its fixed [0.25 0.5 0.25]). */
static void gaussian_kernel(int n, double sigma, float *k) {
  if (sigma <= 0 && n == 3) {
    k[0] = 0.25f, k[1] = 0.5f, k[2] = 0.25f;
    return;
  }
  if (sigma <= 0) sigma = ((n - 1) * 0.5 - 1) * 0.3 + 0.8;
  double s2 = -0.5 / (sigma * sigma), sum = 0;
  for (int i = 0; i < n; i++) {
    double x = i - (n - 1) * 0.5;
    k[i] = (float)exp(s2 * x * x);
    sum += k[i];
  }
  sum = 1. / sum;
  for (int i = 0; i < n; i++) k[i] = (float)(k[i] * sum);
}

/* acc[x] = sum_t k[t] rows[t][x] (vertical blur of one row). */
VL_CLONES static void vblur_row(const float *const *rows, const float *k, int n, int w, float *restrict acc) {
  const float *restrict r0 = rows[0];
  const float k0 = k[0];
#pragma omp simd
  for (int x = 0; x < w; x++) acc[x] = k0 * r0[x];
  for (int t = 1; t < n; t++) {
    const float *restrict r = rows[t];
    float kt = k[t];
#pragma omp simd
    for (int x = 0; x < w; x++) acc[x] += kt * r[x];
  }
}

/* out[x] = sum_t k[t] pad[x + t] (horizontal blur of a padded row). */
VL_CLONES static void hblur_row(const float *restrict pad, const float *k, int n, int w, float *restrict out) {
  const float k0 = k[0];
#pragma omp simd
  for (int x = 0; x < w; x++) out[x] = k0 * pad[x];
  for (int t = 1; t < n; t++) {
    float kt = k[t];
    const float *restrict p = pad + t;
#pragma omp simd
    for (int x = 0; x < w; x++) out[x] += kt * p[x];
  }
}

/* One source row of the blurred image: vertical then horizontal blur,
   reflect-101 borders. vbuf holds W + 2r floats, rows n pointers. */
static void blurred_row(const float *img, int W, int H, int sy, const float *k, int n, float *vbuf,
                        const float **rows, float *out) {
  int r = n / 2;
  for (int t = 0; t < n; t++) rows[t] = img + (int64_t)reflect101(sy + t - r, H) * W;
  float *mid = vbuf + r;
  vblur_row(rows, k, n, W, mid);
  for (int i = 1; i <= r; i++) {
    mid[-i] = mid[reflect101(-i, W)];
    mid[W - 1 + i] = mid[reflect101(W - 1 + i, W)];
  }
  hblur_row(vbuf, k, n, W, out);
}

/* Bilinear sampling of one or two blurred source rows at the columns of
   the resize map (weight 0 reads the left sample only, exactly). */
VL_CLONES static void sample1(const float *b0, const int *xi, const int *xi1, const float *xw, int w,
                              float *restrict o) {
#pragma omp simd
  for (int x = 0; x < w; x++) o[x] = b0[xi[x]] * (1 - xw[x]) + b0[xi1[x]] * xw[x];
}

VL_CLONES static void sample2(const float *b0, const float *b1, const int *xi, const int *xi1, const float *xw,
                              float fy, int w, float *restrict o) {
#pragma omp simd
  for (int x = 0; x < w; x++) {
    float v0 = b0[xi[x]] * (1 - xw[x]) + b0[xi1[x]] * xw[x];
    float v1 = b1[xi[x]] * (1 - xw[x]) + b1[xi1[x]] * xw[x];
    o[x] = v0 * (1 - fy) + v1 * fy;
  }
}

/* Level image: Gaussian blur (kernel k of n taps) of img [H,W], resized
   to [h,w] bilinearly. */
static int level_image(const float *img, int W, int H, int w, int h, const float *k, int n, float *out) {
  int *xi = malloc(sizeof(int) * (size_t)w), *yi = malloc(sizeof(int) * (size_t)h);
  float *xw = malloc(sizeof(float) * (size_t)w), *yw = malloc(sizeof(float) * (size_t)h);
  int *xi1 = malloc(sizeof(int) * (size_t)w);
  int oom = !xi || !yi || !xw || !yw || !xi1;
  if (oom) {
    free(xi), free(xi1), free(yi), free(xw), free(yw);
    return vl_error(VL_ENOMEM, "farneback: out of memory");
  }
  linear_map(W, w, xi, xw);
  linear_map(H, h, yi, yw);
  for (int x = 0; x < w; x++) xi1[x] = VL_MIN(xi[x] + 1, W - 1);
  int r = n / 2;
#pragma omp parallel if ((int64_t)W * h > FLOW_GRAIN)
  {
    float *vbuf = malloc(sizeof(float) * (size_t)(W + 2 * r + 1) * 3);
    float *b0 = vbuf + (W + 2 * r + 1), *b1 = b0 + (W + 2 * r + 1);
    const float **rows = malloc(sizeof(float *) * (size_t)n);
    int have0 = -1, have1 = -1;
    if (!vbuf || !rows) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(static)
    for (int y = 0; y < h; y++) {
      if (!vbuf || !rows) continue;
      int sy = yi[y];
      float fy = yw[y];
      /* keep the last two source rows: neighbours often share them */
      if (have0 != sy) {
        if (have1 == sy) {
          float *t = b0;
          b0 = b1, b1 = t;
          have1 = have0;
        } else {
          blurred_row(img, W, H, sy, k, n, vbuf, rows, b0);
        }
        have0 = sy;
      }
      if (fy != 0 && have1 != sy + 1) {
        blurred_row(img, W, H, sy + 1, k, n, vbuf, rows, b1);
        have1 = sy + 1;
      }
      float *o = out + (int64_t)y * w;
      if (w == W && fy == 0) {
        memcpy(o, b0, sizeof(float) * (size_t)w);
        continue;
      }
      if (fy != 0)
        sample2(b0, b1, xi, xi1, xw, fy, w, o);
      else
        sample1(b0, xi, xi1, xw, w, o);
    }
    free(vbuf);
    free(rows);
  }
  free(xi), free(xi1), free(yi), free(xw), free(yw);
  return oom ? vl_error(VL_ENOMEM, "farneback: out of memory") : VL_OK;
}

/* Bilinear resize of two planes (the flow) with OpenCV's map, times s. */
static int resize_flow(const float *su, const float *sv, int W, int H, float *du, float *dv, int w, int h,
                       float s) {
  int *xi = malloc(sizeof(int) * (size_t)w), *yi = malloc(sizeof(int) * (size_t)h);
  float *xw = malloc(sizeof(float) * (size_t)w), *yw = malloc(sizeof(float) * (size_t)h);
  if (!xi || !yi || !xw || !yw) {
    free(xi), free(yi), free(xw), free(yw);
    return vl_error(VL_ENOMEM, "farneback: out of memory");
  }
  linear_map(W, w, xi, xw);
  linear_map(H, h, yi, yw);
#pragma omp parallel for schedule(static) if ((int64_t)w * h > FLOW_GRAIN)
  for (int y = 0; y < h; y++) {
    int y0 = yi[y], y1 = y0 + (yw[y] != 0);
    float fy = yw[y];
    for (int c = 0; c < 2; c++) {
      const float *p = c ? sv : su;
      const float *r0 = p + (int64_t)y0 * W, *r1 = p + (int64_t)y1 * W;
      float *o = (c ? dv : du) + (int64_t)y * w;
      for (int x = 0; x < w; x++) {
        int x0 = xi[x], x1 = x0 + (xw[x] != 0);
        float fx = xw[x];
        float a = r0[x0] * (1 - fx) + r0[x1] * fx, b = r1[x0] * (1 - fx) + r1[x1] * fx;
        o[x] = (a * (1 - fy) + b * fy) * s;
      }
    }
  }
  free(xi), free(yi), free(xw), free(yw);
  return VL_OK;
}

/* OpenCV's INTER_AREA weights (computeResizeAreaTab) for shrinking src
   to dst: entries (dst, src, weight), returns the count. */
static int area_tab(int src, int dst, int *di, int *si, float *al) {
  double scale = (double)src / dst;
  int k = 0;
  for (int dx = 0; dx < dst; dx++) {
    double f1 = dx * scale, f2 = f1 + scale;
    double cell = fmin(scale, src - f1);
    int s1 = (int)ceil(f1), s2 = (int)floor(f2);
    s2 = VL_MIN(s2, src - 1);
    s1 = VL_MIN(s1, s2);
    if (s1 - f1 > 1e-3) di[k] = dx, si[k] = s1 - 1, al[k++] = (float)((s1 - f1) / cell);
    for (int sx = s1; sx < s2; sx++) di[k] = dx, si[k] = sx, al[k++] = (float)(1.0 / cell);
    if (f2 - s2 > 1e-3) di[k] = dx, si[k] = s2, al[k++] = (float)(fmin(fmin(f2 - s2, 1.), cell) / cell);
  }
  return k;
}

/* The initial flow [H,W,2] (interleaved) shrunk to [h,w] (INTER_AREA) and
   scaled by s, into planes. */
static int area_flow(const float *f, int W, int H, float *du, float *dv, int w, int h, float s) {
  if (w == W && h == H) {
    for (int64_t i = 0; i < (int64_t)w * h; i++) du[i] = f[2 * i] * s, dv[i] = f[2 * i + 1] * s;
    return VL_OK;
  }
  size_t nx = (size_t)W * 2 + 4, ny = (size_t)H * 2 + 4;
  int *xd = malloc(sizeof(int) * nx), *xs = malloc(sizeof(int) * nx), *yd = malloc(sizeof(int) * ny),
      *ys = malloc(sizeof(int) * ny);
  float *xa = malloc(sizeof(float) * nx), *ya = malloc(sizeof(float) * ny);
  double *acc = calloc((size_t)w * h * 2, sizeof(double));
  if (!xd || !xs || !yd || !ys || !xa || !ya || !acc) {
    free(xd), free(xs), free(yd), free(ys), free(xa), free(ya), free(acc);
    return vl_error(VL_ENOMEM, "farneback: out of memory resizing the initial flow");
  }
  int kx = area_tab(W, w, xd, xs, xa), ky = area_tab(H, h, yd, ys, ya);
  for (int j = 0; j < ky; j++)
    for (int i = 0; i < kx; i++) {
      const float *p = f + ((int64_t)ys[j] * W + xs[i]) * 2;
      double a = (double)ya[j] * xa[i];
      double *q = acc + ((int64_t)yd[j] * w + xd[i]) * 2;
      q[0] += a * p[0], q[1] += a * p[1];
    }
  for (int64_t i = 0; i < (int64_t)w * h; i++) du[i] = (float)acc[2 * i] * s, dv[i] = (float)acc[2 * i + 1] * s;
  free(xd), free(xs), free(yd), free(ys), free(xa), free(ya), free(acc);
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Farnebäck: polynomial expansion                                     */
/* ------------------------------------------------------------------ */

typedef struct poly_consts {
  int n;
  float g[8], xg[8], xxg[8]; /* taps 0..n */
  double ig11, ig03, ig33, ig55;
} poly_consts;

/* FarnebackPrepareGaussian: the 1-d weights and the entries of the
   inverse Gram matrix the expansion needs (3x3 block inverted in closed
   form; the rest is diagonal). */
static void poly_prepare(int n, double sigma, poly_consts *pc) {
  if (sigma < FLT_EPSILON) sigma = n * 0.3;
  float g[15];
  double s = 0;
  for (int x = -n; x <= n; x++) {
    g[x + n] = (float)exp(-x * x / (2 * sigma * sigma));
    s += g[x + n];
  }
  s = 1. / s;
  pc->n = n;
  for (int x = 0; x <= n; x++) {
    float v = (float)(g[x + n] * s);
    pc->g[x] = v;
    pc->xg[x] = (float)(x * v);
    pc->xxg[x] = (float)(x * x * v);
  }
  double G00 = 0, G11 = 0, G33 = 0, G55 = 0;
  for (int y = -n; y <= n; y++)
    for (int x = -n; x <= n; x++) {
      double gy = pc->g[abs(y)], gx = pc->g[abs(x)];
      G00 += gy * gx;
      G11 += gy * gx * x * x;
      G33 += gy * gx * x * x * x * x;
      G55 += gy * gx * x * x * y * y;
    }
  /* block [[G00, G11, G11], [G11, G33, G55], [G11, G55, G33]] */
  double a = G00, b = G11, c = G33, d = G55;
  double det = a * (c * c - d * d) - b * (b * c - b * d) + b * (b * d - c * b);
  pc->ig03 = -(b * c - b * d) / det;  /* cofactor (1,0) / det, symmetric */
  pc->ig33 = (a * c - b * b) / det;
  pc->ig11 = 1. / G11;
  pc->ig55 = 1. / G55;
}

/* Vertical part for one row: v0 = sum g I, v1 = sum xg (I(y+k) - I(y-k)),
   v2 = sum xxg I; rows clamped (replicated). */
VL_CLONES static void poly_vrow(const float *img, int w, int h, int y, const poly_consts *pc, float *restrict v0,
                                float *restrict v1, float *restrict v2) {
  const float *r = img + (int64_t)y * w;
  float g0 = pc->g[0];
#pragma omp simd
  for (int x = 0; x < w; x++) v0[x] = r[x] * g0, v1[x] = 0, v2[x] = 0;
  for (int k = 1; k <= pc->n; k++) {
    const float *restrict a = img + (int64_t)VL_MAX(y - k, 0) * w;
    const float *restrict b = img + (int64_t)VL_MIN(y + k, h - 1) * w;
    float gk = pc->g[k], xk = pc->xg[k], xxk = pc->xxg[k];
#pragma omp simd
    for (int x = 0; x < w; x++) {
      float p = a[x] + b[x];
      v0[x] += gk * p;
      v1[x] += xk * (b[x] - a[x]);
      v2[x] += xxk * p;
    }
  }
}

/* Horizontal part: padded rows (n replicated on each side) -> the five
   coefficient planes; n is a constant in each copy (5 or 7). */
#define POLY_HROW(N)                                                                                          \
  VL_CLONES static void poly_hrow##N(const float *v0, const float *v1, const float *v2, int w,              \
                                     const poly_consts *pc, float *restrict ry, float *restrict rx,         \
                                     float *restrict ryy, float *restrict rxx, float *restrict rxy) {       \
    const float ig11 = (float)pc->ig11, ig03 = (float)pc->ig03, ig33 = (float)pc->ig33,                     \
                ig55 = (float)pc->ig55;                                                                      \
    float g[N + 1], xg[N + 1], xxg[N + 1];                                                                   \
    for (int k = 0; k <= N; k++) g[k] = pc->g[k], xg[k] = pc->xg[k], xxg[k] = pc->xxg[k];                  \
    _Pragma("omp simd") for (int x = 0; x < w; x++) {                                                        \
      float b1 = v0[x] * g[0], b2 = 0, b3 = v1[x] * g[0], b4 = 0, b5 = v2[x] * g[0], b6 = 0;                 \
      for (int k = 1; k <= N; k++) {                                                                         \
        float tg = v0[x + k] + v0[x - k];                                                                    \
        b1 += tg * g[k];                                                                                     \
        b4 += tg * xxg[k];                                                                                   \
        b2 += (v0[x + k] - v0[x - k]) * xg[k];                                                               \
        b3 += (v1[x + k] + v1[x - k]) * g[k];                                                                \
        b6 += (v1[x + k] - v1[x - k]) * xg[k];                                                               \
        b5 += (v2[x + k] + v2[x - k]) * g[k];                                                                \
      }                                                                                                      \
      ry[x] = b3 * ig11;                                                                                     \
      rx[x] = b2 * ig11;                                                                                     \
      ryy[x] = b1 * ig03 + b5 * ig33;                                                                        \
      rxx[x] = b1 * ig03 + b4 * ig33;                                                                        \
      rxy[x] = b6 * ig55;                                                                                    \
    }                                                                                                        \
  }
POLY_HROW(5)
POLY_HROW(7)

/* R: 5 planes of w*h (ry, rx, ryy, rxx, rxy). */
static int poly_exp(const float *img, int w, int h, const poly_consts *pc, float *R) {
  const int n = pc->n;
  const int64_t plane = (int64_t)w * h;
int oom = 0;
#pragma omp parallel if (plane > FLOW_GRAIN)
  {
    size_t len = (size_t)w + 2 * n;
    float *buf = malloc(sizeof(float) * len * 3);
    float *v0 = buf + n, *v1 = v0 + len, *v2 = v1 + len;
    if (!buf) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(static)
    for (int y = 0; y < h; y++) {
      if (!buf) continue;
      poly_vrow(img, w, h, y, pc, v0, v1, v2);
      for (int k = 1; k <= n; k++) {
        v0[-k] = v0[0], v1[-k] = v1[0], v2[-k] = v2[0];
        v0[w - 1 + k] = v0[w - 1], v1[w - 1 + k] = v1[w - 1], v2[w - 1 + k] = v2[w - 1];
      }
      int64_t o = (int64_t)y * w;
      if (n == 5)
        poly_hrow5(v0, v1, v2, w, pc, R + o, R + plane + o, R + 2 * plane + o, R + 3 * plane + o, R + 4 * plane + o);
      else
        poly_hrow7(v0, v1, v2, w, pc, R + o, R + plane + o, R + 2 * plane + o, R + 3 * plane + o, R + 4 * plane + o);
    }
    free(buf);
  }
  return oom ? vl_error(VL_ENOMEM, "farneback: out of memory") : VL_OK;
}

/* ------------------------------------------------------------------ */
/* Farnebäck: update matrices and flow                                 */
/* ------------------------------------------------------------------ */

typedef struct fb_level {
  int w, h;
  const float *R0, *R1; /* 5 planes each */
  float *fu, *fv;       /* flow planes */
  const float *colpart; /* border scale, per column */
  const uint8_t *colcond;
} fb_level;

/* Branch-free helpers for vectorised loops: with trapping math, GCC will
   not if-convert float selects, so select on the bits. clamp_coord keeps
   |v| <= 1e9 (NaN too: +-1e9) so the float -> int conversion stays
   defined; images are narrower than that (describe_image). */
static inline float clamp_coord(float v) {
  uint32_t b;
  memcpy(&b, &v, 4);
  b = (b & 0x7fffffffu) > 0x4E6E6B28u ? (b & 0x80000000u) | 0x4E6E6B28u : b; /* 1e9f */
  memcpy(&v, &b, 4);
  return v;
}

static inline float fsel(int c, float a, float b) {
  uint32_t ua, ub, m = -(uint32_t)(c != 0);
  memcpy(&ua, &a, 4);
  memcpy(&ub, &b, 4);
  ua = (ua & m) | (ub & ~m);
  memcpy(&a, &ua, 4);
  return a;
}

/* FarnebackUpdateMatrices for row y: M (5 planes) from the flow. */
VL_CLONES static void update_row(const fb_level *L, int y, float *M) {
  const int w = L->w, h = L->h;
  const int64_t plane = (int64_t)w * h, o = (int64_t)y * w;
  const float *restrict fu = L->fu + o, *restrict fv = L->fv + o;
  const float *restrict a0 = L->R0 + o, *restrict a1 = L->R0 + plane + o, *restrict a2 = L->R0 + 2 * plane + o,
                        *restrict a3 = L->R0 + 3 * plane + o, *restrict a4 = L->R0 + 4 * plane + o;
  const float *restrict b0 = L->R1, *restrict b1 = L->R1 + plane, *restrict b2 = L->R1 + 2 * plane,
                        *restrict b3 = L->R1 + 3 * plane, *restrict b4 = L->R1 + 4 * plane;
  float *restrict m0 = M + o, *restrict m1 = M + plane + o, *restrict m2 = M + 2 * plane + o,
                  *restrict m3 = M + 3 * plane + o, *restrict m4 = M + 4 * plane + o;
  static const float border[FB_BORDER] = {0.14f, 0.14f, 0.4472f, 0.4472f, 0.4472f};
  const float rowpart = (y < FB_BORDER ? border[y] : 1.f) * (y >= h - FB_BORDER ? border[h - y - 1] : 1.f);
  const int rowcond = (unsigned)(y - FB_BORDER) >= (unsigned)(h - FB_BORDER * 2);
  const float *restrict colpart = L->colpart;
  const uint8_t *restrict colcond = L->colcond;
  const float fy0 = (float)y;
#pragma omp simd
  for (int x = 0; x < w; x++) {
    float dx = fu[x], dy = fv[x];
    float fx = clamp_coord((float)x + dx), fy = clamp_coord(fy0 + dy);
    int x1 = (int)fx, y1 = (int)fy; /* floor: truncate, then step down below zero */
    x1 -= (float)x1 > fx;
    y1 -= (float)y1 > fy;
    int in = ((unsigned)x1 < (unsigned)(w - 1)) & ((unsigned)y1 < (unsigned)(h - 1));
    fx -= (float)x1, fy -= (float)y1;
    int p = (int)(((unsigned)y1 * (unsigned)w + (unsigned)x1) & -(unsigned)in); /* 0 outside */
    float w00 = (1.f - fx) * (1.f - fy), w01 = fx * (1.f - fy), w10 = (1.f - fx) * fy, w11 = fx * fy;
    /* both branches computed (p = 0 reads valid memory), then selected */
    float q2 = w00 * b0[p] + w01 * b0[p + 1] + w10 * b0[p + w] + w11 * b0[p + w + 1];
    float q3 = w00 * b1[p] + w01 * b1[p + 1] + w10 * b1[p + w] + w11 * b1[p + w + 1];
    float q4 = w00 * b2[p] + w01 * b2[p + 1] + w10 * b2[p + w] + w11 * b2[p + w + 1];
    float q5 = w00 * b3[p] + w01 * b3[p + 1] + w10 * b3[p + w] + w11 * b3[p + w + 1];
    float q6 = w00 * b4[p] + w01 * b4[p + 1] + w10 * b4[p + w] + w11 * b4[p + w + 1];
    float r2 = fsel(in, q2, 0.f), r3 = fsel(in, q3, 0.f);
    float r4 = fsel(in, (a2[x] + q4) * 0.5f, a2[x]);
    float r5 = fsel(in, (a3[x] + q5) * 0.5f, a3[x]);
    float r6 = fsel(in, (a4[x] + q6) * 0.25f, a4[x] * 0.5f);
    r2 = (a0[x] - r2) * 0.5f;
    r3 = (a1[x] - r3) * 0.5f;
    r2 += r4 * dy + r6 * dx;
    r3 += r6 * dy + r5 * dx;
    float sc = fsel(colcond[x] | rowcond, colpart[x] * rowpart, 1.f);
    r2 *= sc, r3 *= sc, r4 *= sc, r5 *= sc, r6 *= sc;
    m0[x] = r4 * r4 + r6 * r6;
    m1[x] = (r4 + r5) * r6;
    m2[x] = r5 * r5 + r6 * r6;
    m3[x] = r4 * r2 + r6 * r3;
    m4[x] = r6 * r2 + r5 * r3;
  }
}

/* Solve the blurred 2x2 systems of one row (sums already scaled). */
VL_CLONES static void solve_row_d(const double *restrict s, int64_t cs, int w, double scale, float *restrict fu,
                                  float *restrict fv) {
  const double *restrict g11 = s, *restrict g12 = s + cs, *restrict g22 = s + 2 * cs, *restrict h1 = s + 3 * cs,
                         *restrict h2 = s + 4 * cs;
#pragma omp simd
  for (int x = 0; x < w; x++) {
    double a = g11[x] * scale, b = g12[x] * scale, c = g22[x] * scale, p = h1[x] * scale, q = h2[x] * scale;
    double idet = 1. / (a * c - b * b + 1e-3);
    fu[x] = (float)((a * q - b * p) * idet);
    fv[x] = (float)((c * p - b * q) * idet);
  }
}

VL_CLONES static void solve_row_f(const float *restrict s, int64_t cs, int w, float *restrict fu,
                                  float *restrict fv) {
  const float *restrict g11 = s, *restrict g12 = s + cs, *restrict g22 = s + 2 * cs, *restrict h1 = s + 3 * cs,
                        *restrict h2 = s + 4 * cs;
#pragma omp simd
  for (int x = 0; x < w; x++) {
    double a = g11[x], b = g12[x], c = g22[x], p = h1[x], q = h2[x];
    double idet = 1. / (a * c - b * b + 1e-3);
    fu[x] = (float)((a * q - b * p) * idet);
    fv[x] = (float)((c * p - b * q) * idet);
  }
}

/* vs[x] += add[x] - sub[x] over 5 planes (double running sums). */
VL_CLONES static void vsum_slide(double *restrict vs, int64_t cs, const float *add, const float *sub,
                                 int64_t plane, int w) {
  for (int c = 0; c < 5; c++) {
    double *restrict v = vs + c * cs;
    const float *restrict a = add + c * plane, *restrict s = sub + c * plane;
#pragma omp simd
    for (int x = 0; x < w; x++) v[x] += (double)a[x] - (double)s[x];
  }
}

VL_CLONES static void vsum_add(double *restrict vs, int64_t cs, const float *add, int64_t plane, int w,
                               double k) {
  for (int c = 0; c < 5; c++) {
    double *restrict v = vs + c * cs;
    const float *restrict a = add + c * plane;
#pragma omp simd
    for (int x = 0; x < w; x++) v[x] += k * a[x];
  }
}

/* Horizontal box sums (window 2m+1, replicated border) of the five
   vertical sums into hs. */
static void hbox_row(const double *vs, int64_t cs, int w, int m, double *hs) {
  for (int c = 0; c < 5; c++) {
    const double *v = vs + c * cs;
    double *o = hs + c * cs;
    double s = v[0] * (m + 1);
    for (int x = 1; x <= m; x++) s += v[VL_MIN(x, w - 1)];
    o[0] = s;
    for (int x = 1; x < w; x++) {
      s += v[VL_MIN(x + m, w - 1)] - v[VL_MAX(x - m - 1, 0)];
      o[x] = s;
    }
  }
}

/* Gaussian blur pieces: vertical (clamped rows) and horizontal
   (replicated columns), float as OpenCV. */
VL_CLONES static void gblur_v(const float *M, int64_t plane, int w, int h, int y, const float *kern, int m,
                              float *restrict out, int64_t cs) {
  for (int c = 0; c < 5; c++) {
    const float *P = M + c * plane;
    float *restrict o = out + c * cs;
    const float *restrict r = P + (int64_t)y * w;
    const float k0 = kern[0];
#pragma omp simd
    for (int x = 0; x < w; x++) o[x] = r[x] * k0;
    for (int i = 1; i <= m; i++) {
      const float *restrict a = P + (int64_t)VL_MIN(y + i, h - 1) * w, *restrict b = P + (int64_t)VL_MAX(y - i, 0) * w;
      float k = kern[i];
#pragma omp simd
      for (int x = 0; x < w; x++) o[x] += (a[x] + b[x]) * k;
    }
  }
}

VL_CLONES static void gblur_h(const float *vpad, int w, const float *kern, int m, float *restrict out) {
  const float k0 = kern[0];
#pragma omp simd
  for (int x = 0; x < w; x++) out[x] = vpad[x] * k0;
  for (int i = 1; i <= m; i++) {
    float k = kern[i];
    const float *restrict a = vpad + i, *restrict b = vpad - i;
#pragma omp simd
    for (int x = 0; x < w; x++) out[x] += (a[x] + b[x]) * k;
  }
}

/* One iteration at a level: flow from blur(M_in); then, when update,
   M_out from the new flow. */
static int fb_iterate(const fb_level *L, const float *Min, float *Mout, int winsize, bool gaussian,
                      const float *gkern, bool update) {
  int oom = 0;
  const int w = L->w, h = L->h, m = winsize / 2;
  const int64_t plane = (int64_t)w * h;
  const double scale = 1. / ((double)winsize * winsize);
#pragma omp parallel if (plane > FLOW_GRAIN)
  {
    int nth = omp_get_num_threads(), id = omp_get_thread_num();
    int ya = (int)((int64_t)h * id / nth), yb = (int)((int64_t)h * (id + 1) / nth);
    int64_t cs = (int64_t)w + 2 * m + 2;
    if (!gaussian) {
      double *vs = malloc(sizeof(double) * (size_t)cs * 10);
      double *hs = vs + 5 * cs;
      if (!vs) {
#pragma omp atomic write
        oom = 1;
        yb = ya;
      }
      if (ya < yb) {
        /* rows ya-m .. ya+m, clamped */
        memset(vs, 0, sizeof(double) * (size_t)cs * 5);
        for (int i = -m; i <= m; i++) vsum_add(vs, cs, Min + (int64_t)clampi(ya + i, 0, h - 1) * w, plane, w, 1.0);
      }
      for (int y = ya; y < yb; y++) {
        if (y > ya)
          vsum_slide(vs, cs, Min + (int64_t)VL_MIN(y + m, h - 1) * w, Min + (int64_t)VL_MAX(y - m - 1, 0) * w,
                     plane, w);
        hbox_row(vs, cs, w, m, hs);
        int64_t o = (int64_t)y * w;
        solve_row_d(hs, cs, w, scale, L->fu + o, L->fv + o);
        if (update) update_row(L, y, Mout);
      }
      free(vs);
    } else {
      float *vb = malloc(sizeof(float) * (size_t)cs * 10);
      float *hb = vb + 5 * cs;
      if (!vb) {
#pragma omp atomic write
        oom = 1;
        yb = ya;
      }
      for (int y = ya; y < yb; y++) {
        gblur_v(Min, plane, w, h, y, gkern, m, vb + m, cs);
        for (int c = 0; c < 5; c++) {
          float *v = vb + c * cs + m;
          for (int i = 1; i <= m; i++) v[-i] = v[0], v[w - 1 + i] = v[w - 1];
          gblur_h(v, w, gkern, m, hb + c * cs);
        }
        int64_t o = (int64_t)y * w;
        solve_row_f(hb, cs, w, L->fu + o, L->fv + o);
        if (update) update_row(L, y, Mout);
      }
      free(vb);
    }
  }
  return oom ? vl_error(VL_ENOMEM, "farneback: out of memory") : VL_OK;
}

static void fb_update_all(const fb_level *L, float *M) {
#pragma omp parallel for schedule(static) if ((int64_t)L->w * L->h > FLOW_GRAIN)
  for (int y = 0; y < L->h; y++) update_row(L, y, M);
}

void vl_flow_farneback_defaults(vl_farneback_opts *o) {
  o->pyr_scale = 0.5;
  o->levels = 3;
  o->winsize = 15;
  o->iterations = 3;
  o->poly_n = 5;
  o->poly_sigma = 1.1;
  o->gaussian = false;
}

vl_tensor *vl_flow_farneback(const vl_tensor *prev, const vl_tensor *next, const vl_tensor *init_flow,
                             const vl_farneback_opts *opt) {
  const char *op = "farneback";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (!prev || !next || !opt) {
    vl_error(VL_EARG, "%s: missing image", op);
    return NULL;
  }
  img_desc da, db;
  if (describe_image(op, "prev", prev, &da) || describe_image(op, "next", next, &db)) return NULL;
  if (da.h != db.h || da.w != db.w) {
    vl_error(VL_ESHAPE, "%s: prev %s and next %s have different sizes (%lld x %lld vs %lld x %lld), expected the "
             "same", op, vl_shape_str(prev->ndim, prev->shape, s1), vl_shape_str(next->ndim, next->shape, s2),
             (long long)da.h, (long long)da.w, (long long)db.h, (long long)db.w);
    return NULL;
  }
  if (!(opt->pyr_scale > 0 && opt->pyr_scale < 1)) {
    vl_error(VL_EARG, "%s: pyr_scale %g out of range, expected 0 < pyr_scale < 1", op, opt->pyr_scale);
    return NULL;
  }
  if (opt->levels < 0 || opt->levels > 64) {
    vl_error(VL_EARG, "%s: levels %d out of range, expected 0..64 (0: no pyramid)", op, opt->levels);
    return NULL;
  }
  if (opt->winsize < 3 || opt->winsize % 2 == 0 || opt->winsize > 1001) {
    vl_error(VL_EARG, "%s: winsize %d, expected an odd size from 3 to 1001", op, opt->winsize);
    return NULL;
  }
  if (opt->iterations < 1 || opt->iterations > 1000) {
    vl_error(VL_EARG, "%s: iterations %d out of range, expected 1..1000", op, opt->iterations);
    return NULL;
  }
  if (opt->poly_n != 5 && opt->poly_n != 7) {
    vl_error(VL_EARG, "%s: poly_n %d, expected 5 or 7", op, opt->poly_n);
    return NULL;
  }
  if (!(opt->poly_sigma >= 0 && opt->poly_sigma <= 100)) {
    vl_error(VL_EARG, "%s: poly_sigma %g out of range, expected 0..100 (0: 0.3 poly_n)", op, opt->poly_sigma);
    return NULL;
  }
  const int W = (int)da.w, H = (int)da.h;
  int64_t oshape[3] = {H, W, 2};
  if (init_flow) {
    if (init_flow->ndim != 3 || init_flow->shape[0] != H || init_flow->shape[1] != W || init_flow->shape[2] != 2) {
      vl_error(VL_ESHAPE, "%s: initial flow has shape %s, expected [%d,%d,2] (the image's [H,W,2])", op,
               vl_shape_str(init_flow->ndim, init_flow->shape, s1), H, W);
      return NULL;
    }
    if (init_flow->dtype != VL_FLOAT32 && init_flow->dtype != VL_FLOAT64) {
      vl_error(VL_EDTYPE, "%s: initial flow must be float32 or float64, got %s", op, vl_dtype_name(init_flow->dtype));
      return NULL;
    }
  }
  vl_tensor *out = vl_empty(3, oshape, VL_FLOAT32);
  if (!out || (int64_t)W * H == 0) return out;

  const int64_t N = (int64_t)W * H;
  float *img[2] = {malloc(sizeof(float) * (size_t)N), malloc(sizeof(float) * (size_t)N)};
  /* per level: I (w*h), R0, R1 (5 each), M x2 (5 each), flow planes x2 (prev
     level and this one) */
  size_t need = (size_t)N * (1 + 10 + 10 + 4);
  float *work = malloc(sizeof(float) * need);
  float *colpart = malloc(sizeof(float) * (size_t)W);
  uint8_t *colcond = malloc((size_t)W);
  float *f0 = NULL;
  int rc = VL_OK;
  if (!img[0] || !img[1] || !work || !colpart || !colcond) {
    rc = vl_error(VL_ENOMEM, "%s: out of memory for %lld x %lld images", op, (long long)H, (long long)W);
    goto done;
  }
  if ((rc = image_to_f32(op, "prev", prev, &da, img[0])) || (rc = image_to_f32(op, "next", next, &db, img[1])))
    goto done;
  if (init_flow) {
    vl_tensor *f = vl_to_dtype(init_flow, VL_FLOAT32);
    vl_tensor *fc = f ? vl_contiguous(f) : NULL;
    vl_tensor_release(f);
    if (!fc) {
      rc = vl_last_status();
      goto done;
    }
    f0 = malloc(sizeof(float) * (size_t)N * 2);
    if (!f0) {
      vl_tensor_release(fc);
      rc = vl_error(VL_ENOMEM, "%s: out of memory", op);
      goto done;
    }
    memcpy(f0, vl_data_ptr(fc), sizeof(float) * (size_t)N * 2);
    vl_tensor_release(fc);
  }

  int levels = 0;
  double scale = 1;
  for (levels = 0; levels < opt->levels; levels++) {
    scale *= opt->pyr_scale;
    if (W * scale < FB_MIN_SIZE || H * scale < FB_MIN_SIZE) break;
  }

  poly_consts pc;
  poly_prepare(opt->poly_n, opt->poly_sigma, &pc);
  float gk[512];
  int m = opt->winsize / 2;
  if (opt->gaussian) {
    double sg = m * 0.3, s = 1;
    gk[0] = 1;
    for (int i = 1; i <= m; i++) {
      gk[i] = (float)exp(-i * i / (2 * sg * sg));
      s += gk[i] * 2.0;
    }
    s = 1. / s;
    for (int i = 0; i <= m; i++) gk[i] = (float)(gk[i] * s);
  }

  float *I = work, *R0 = I + N, *R1 = R0 + 5 * N, *MA = R1 + 5 * N, *MB = MA + 5 * N;
  float *pu = MB + 5 * N, *pv = pu + N, *cu = pv + N, *cv = cu + N;
  int pw = 0, ph = 0;
  for (int k = levels; k >= 0; k--) {
    scale = 1;
    for (int i = 0; i < k; i++) scale *= opt->pyr_scale;
    double sigma = (1. / scale - 1) * 0.5;
    int ksz = VL_MAX((int)lrint(sigma * 5) | 1, 3);
    int w = (int)lrint(W * scale), h = (int)lrint(H * scale);
    float *kern = malloc(sizeof(float) * (size_t)ksz);
    if (!kern) {
      rc = vl_error(VL_ENOMEM, "%s: out of memory", op);
      goto done;
    }
    gaussian_kernel(ksz, sigma, kern);
    /* flow of this level */
    float *fu = cu, *fv = cv;
    if (k == levels) {
      if (f0) {
        if ((rc = area_flow(f0, W, H, fu, fv, w, h, (float)scale))) {
          free(kern);
          goto done;
        }
      } else {
        memset(fu, 0, sizeof(float) * (size_t)w * h);
        memset(fv, 0, sizeof(float) * (size_t)w * h);
      }
    } else {
      if ((rc = resize_flow(pu, pv, pw, ph, fu, fv, w, h, (float)(1. / opt->pyr_scale)))) {
        free(kern);
        goto done;
      }
    }
    for (int i = 0; i < 2; i++) {
      if ((rc = level_image(img[i], W, H, w, h, kern, ksz, I)) || (rc = poly_exp(I, w, h, &pc, i ? R1 : R0))) {
        free(kern);
        goto done;
      }
    }
    free(kern);
    for (int x = 0; x < w; x++) {
      static const float border[FB_BORDER] = {0.14f, 0.14f, 0.4472f, 0.4472f, 0.4472f};
      colpart[x] = (x < FB_BORDER ? border[x] : 1.f) * (x >= w - FB_BORDER ? border[w - x - 1] : 1.f);
      colcond[x] = (unsigned)(x - FB_BORDER) >= (unsigned)(w - FB_BORDER * 2);
    }
    fb_level L = {w, h, R0, R1, fu, fv, colpart, colcond};
    fb_update_all(&L, MA);
    float *Min = MA, *Mout = MB;
    for (int it = 0; it < opt->iterations; it++) {
      if ((rc = fb_iterate(&L, Min, Mout, opt->winsize, opt->gaussian, gk, it < opt->iterations - 1))) goto done;
      float *t = Min;
      Min = Mout, Mout = t;
    }
    /* this level's flow becomes the previous one */
    float *t = pu;
    pu = cu, cu = t;
    t = pv, pv = cv, cv = t;
    pw = w, ph = h;
  }
  {
    float *o = vl_data_ptr(out);
    for (int64_t i = 0; i < N; i++) o[2 * i] = pu[i], o[2 * i + 1] = pv[i];
  }
done:
  free(img[0]), free(img[1]), free(work), free(colpart), free(colcond), free(f0);
  if (rc) {
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

/* ------------------------------------------------------------------ */
/* Pyramidal Lucas-Kanade (OpenCV's calcOpticalFlowPyrLK, 8-bit)       */
/* ------------------------------------------------------------------ */

#define LK_W_BITS 14
#define LK_DESCALE(x, n) (((x) + (1 << ((n) - 1))) >> (n))

/* One pyramid level: image padded by `pad` pixels (reflect-101) and, for
   the first image, Scharr derivatives (Ix and Iy planes) padded with
   zeros. */
typedef struct lk_level {
  int w, h, pad, stride;  /* stride = w + 2 pad */
  uint8_t *img;           /* (h + 2 pad) x stride */
  int16_t *deriv;         /* Ix plane then Iy plane, each (h + 2 pad) x stride, or NULL */
  float *fimg;            /* the second image as float (exact), or NULL */
} lk_level;

static inline const uint8_t *lk_px(const lk_level *L, int y, int x) {
  return L->img + (int64_t)(y + L->pad) * L->stride + (x + L->pad);
}

/* One row of pyrDown: [1 4 6 4 1] down the five source rows (their
   padding holds the reflect-101 border), then across at even columns. */
VL_CLONES static void pyr_down_row(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3,
                                   const uint8_t *r4, int sw, int dw, int *restrict tmp, uint8_t *restrict o) {
#pragma omp simd
  for (int x = -2; x < sw + 2; x++) tmp[x + 2] = r0[x] + r4[x] + 4 * (r1[x] + r3[x]) + 6 * r2[x];
#pragma omp simd
  for (int x = 0; x < dw; x++) {
    const int *t = tmp + 2 * x;
    o[x] = (uint8_t)((t[0] + t[4] + 4 * (t[1] + t[3]) + 6 * t[2] + 128) >> 8);
  }
}

/* pyrDown of a uint8 image: [1 4 6 4 1]^2 / 256, rounded, reflect-101
   (the source's border must be filled: lk_border). Exact integers, so
   the same bytes as cv::pyrDown. */
static int lk_pyr_down(const lk_level *s, lk_level *d) {
  const int sw = s->w, dw = d->w, dh = d->h;
  int oom = 0;
#pragma omp parallel if ((int64_t)dw * dh > FLOW_GRAIN)
  {
    int *tmp = malloc(sizeof(int) * (size_t)(sw + 4));
    if (!tmp) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(static)
    for (int y = 0; y < dh; y++) {
      if (!tmp) continue;
      const uint8_t *r[5];
      for (int i = 0; i < 5; i++) r[i] = lk_px(s, 2 * y + i - 2, 0);
      pyr_down_row(r[0], r[1], r[2], r[3], r[4], sw, dw, tmp, (uint8_t *)lk_px(d, y, 0));
    }
    free(tmp);
  }
  return oom ? vl_error(VL_ENOMEM, "lucas_kanade: out of memory") : VL_OK;
}

/* Fill the reflect-101 border of a level's image. */
static void lk_border(lk_level *L) {
  const int w = L->w, h = L->h, p = L->pad;
  for (int y = -p; y < h + p; y++) {
    uint8_t *row = L->img + (int64_t)(y + p) * L->stride + p;
    const uint8_t *src = L->img + (int64_t)(reflect101(y, h) + p) * L->stride + p;
    if (y < 0 || y >= h) memcpy(row, src, (size_t)w);
    for (int x = 1; x <= p; x++) {
      row[-x] = row[reflect101(-x, w)];
      row[w - 1 + x] = row[reflect101(w - 1 + x, w)];
    }
  }
}

/* calcSharrDeriv: Ix = [-1 0 1] x [3 10 3]^T, Iy likewise, 16-bit. */
static int lk_deriv(lk_level *L) {
  int oom = 0;
  const int w = L->w, h = L->h, p = L->pad;
  const int64_t plane = (int64_t)L->stride * (h + 2 * p);
  memset(L->deriv, 0, sizeof(int16_t) * 2 * (size_t)plane);
#pragma omp parallel if ((int64_t)w * h > FLOW_GRAIN)
  {
    int *t0 = malloc(sizeof(int) * (size_t)(w + 2)), *t1 = malloc(sizeof(int) * (size_t)(w + 2));
    if (!t0 || !t1) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(static)
    for (int y = 0; y < h; y++) {
      if (!t0 || !t1) continue;
      const uint8_t *s0 = lk_px(L, reflect101(y - 1, h), 0), *s1 = lk_px(L, y, 0),
                    *s2 = lk_px(L, reflect101(y + 1, h), 0);
      for (int x = 0; x < w; x++) {
        t0[x + 1] = (s0[x] + s2[x]) * 3 + s1[x] * 10;
        t1[x + 1] = s2[x] - s0[x];
      }
      int x0 = w > 1 ? 1 : 0, x1 = w > 1 ? w - 2 : 0;
      t0[0] = t0[x0 + 1], t0[w + 1] = t0[x1 + 1];
      t1[0] = t1[x0 + 1], t1[w + 1] = t1[x1 + 1];
      int16_t *dx = L->deriv + (int64_t)(y + p) * L->stride + p, *dy = dx + plane;
      for (int x = 0; x < w; x++) {
        dx[x] = (int16_t)(t0[x + 2] - t0[x]);
        dy[x] = (int16_t)((t1[x + 2] + t1[x]) * 3 + t1[x + 1] * 10);
      }
    }
    free(t0), free(t1);
  }
  return oom ? vl_error(VL_ENOMEM, "lucas_kanade: out of memory") : VL_OK;
}

/* Gray uint8 image of an argument (float rounded and saturated). */
static int image_to_u8(const char *op, const char *name, const vl_tensor *t, const img_desc *d, uint8_t *out) {
  vl_tensor *c = vl_contiguous(t);
  if (!c) return vl_last_status();
  const int64_t n = d->h * d->w;
  const void *p = vl_data_ptr(c);
  int64_t bad = -1;
  if (c->dtype == VL_UINT8) {
    const uint8_t *s = p;
    if (!d->color)
      memcpy(out, s, (size_t)n);
    else if (d->color == 1)
      for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)gray_u8(s[3 * i], s[3 * i + 1], s[3 * i + 2]);
    else
      for (int64_t i = 0; i < n; i++) out[i] = (uint8_t)gray_u8(s[i], s[n + i], s[2 * n + i]);
  } else {
    for (int64_t i = 0; i < n; i++) {
      double v;
      if (!d->color) {
        v = vl_load(p, i, c->dtype);
      } else {
        int64_t s0 = d->color == 1 ? 3 * i : i, st = d->color == 1 ? 1 : n;
        v = 0.299 * vl_load(p, s0, c->dtype) + 0.587 * vl_load(p, s0 + st, c->dtype) +
            0.114 * vl_load(p, s0 + 2 * st, c->dtype);
      }
      if (!isfinite(v)) {
        if (bad < 0) bad = i;
        v = 0;
      }
      v = nearbyint(v);
      out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  vl_tensor_release(c);
  if (bad >= 0)
    return vl_error(VL_EARG, "%s: %s has a NaN or infinite value at row %lld, column %lld (1-based), expected "
                    "finite intensities", op, name, (long long)(bad / d->w + 1), (long long)(bad % d->w + 1));
  return VL_OK;
}

void vl_flow_lk_defaults(vl_lk_opts *o) {
  o->win_size = 21;
  o->max_level = 3;
  o->iterations = 30;
  o->epsilon = 0.01;
  o->min_eig_threshold = 1e-4;
}

typedef struct lk_job {
  const lk_level *I, *J;
  int level, max_level, ws, max_count;
  int wsp;            /* ws rounded up to 16 */
  const float *mask;  /* wsp entries: 1 inside the window, 0 past it */
  double eps2;
  float min_eig;
  const float *prev;
  float *next, *err;
  uint8_t *status;
} lk_job;

static inline void lk_weights(float a, float b, int *w) {
  w[0] = (int)lrintf((1.f - a) * (1.f - b) * (1 << LK_W_BITS));
  w[1] = (int)lrintf(a * (1.f - b) * (1 << LK_W_BITS));
  w[2] = (int)lrintf((1.f - a) * b * (1 << LK_W_BITS));
  w[3] = (1 << LK_W_BITS) - w[0] - w[1] - w[2];
}

/* cvFloor of a coordinate, kept defined for wild values. */
static inline int lk_floor(float v) {
  if (!(v > -1e9f)) return -1000000000;
  if (v > 1e9f) return 1000000000;
  return (int)floorf(v);
}

/* Sum of n floats (n a multiple of 16) by halving: short dependency
   chains and vector adds instead of one long scalar chain. Overwrites c. */
static inline float lk_hsum(float *restrict c, int n) {
  for (; n > 16; n -= 16)
    for (int k = 0; k < 16; k++) c[k] += c[n - 16 + k];
  for (int k = 0; k < 8; k++) c[k] += c[k + 8];
  for (int k = 0; k < 4; k++) c[k] += c[k + 4];
  return (c[0] + c[2]) + (c[1] + c[3]);
}

/* The window of the first image: intensities (5 fraction bits) and
   derivatives at the sub-pixel corner, and the gradient matrix sums.
   Rows are `ws` long here: the window side rounded up to 16 (whole
   vectors), the extra columns masked out. Sums go per column first (acc,
   3 ws floats) so that the loops vectorise without reordering a
   reduction. */
VL_CLONES static void lk_window(const lk_level *I, int ipx, int ipy, const int *iw, int ws, int wsp, const float *mask,
                                float *restrict ip, float *restrict ixp, float *restrict iyp, float *restrict acc,
                                float *A) {
  const int w0 = iw[0], w1 = iw[1], w2 = iw[2], w3 = iw[3], step = I->stride;
  const int64_t dplane = (int64_t)I->stride * (I->h + 2 * I->pad);
  float *restrict c11 = acc, *restrict c12 = acc + wsp, *restrict c22 = acc + 2 * wsp;
  for (int x = 0; x < 3 * wsp; x++) acc[x] = 0;
  for (int y = 0; y < ws; y++) {
    const uint8_t *restrict src = I->img + (int64_t)(y + ipy + I->pad) * step + ipx + I->pad;
    const int16_t *restrict dx = I->deriv + (int64_t)(y + ipy + I->pad) * step + ipx + I->pad;
    const int16_t *restrict dy = dx + dplane;
    float *restrict o = ip + y * wsp, *restrict ox = ixp + y * wsp, *restrict oy = iyp + y * wsp;
#pragma omp simd
    for (int x = 0; x < wsp; x++) {
      int ival = LK_DESCALE(src[x] * w0 + src[x + 1] * w1 + src[x + step] * w2 + src[x + step + 1] * w3,
                            LK_W_BITS - 5);
      int ixv = LK_DESCALE(dx[x] * w0 + dx[x + 1] * w1 + dx[x + step] * w2 + dx[x + step + 1] * w3, LK_W_BITS);
      int iyv = LK_DESCALE(dy[x] * w0 + dy[x + 1] * w1 + dy[x + step] * w2 + dy[x + step + 1] * w3, LK_W_BITS);
      /* columns past the window (mask 0) get zero derivatives: they add
         nothing to A or b */
      float fx = (float)ixv * mask[x], fy = (float)iyv * mask[x];
      o[x] = (float)ival;
      ox[x] = fx;
      oy[x] = fy;
      c11[x] += fx * fx; /* exact integers: rounds as (float)(ixv * ixv) */
      c12[x] += fx * fy;
      c22[x] += fy * fy;
    }
  }
  A[0] = lk_hsum(c11, wsp), A[1] = lk_hsum(c12, wsp), A[2] = lk_hsum(c22, wsp);
}

/* The bilinear value of J in OpenCV's fixed point, computed in float:
   J is stored as float (exact), each product of a byte and a 14-bit
   weight and their sum stay below 2^24 (exact), and the rounding shift
   is a floor of a power-of-two scaling (the argument is positive: the
   weights sum to 2^14 and at most one is -1, so truncation is the floor),
   so jv equals OpenCV's integer. */
#define LK_JV(J0, J1, x, w0, w1, w2, w3)                                                                \
  (float)(int)(((J0)[x] * (w0) + (J0)[(x) + 1] * (w1) + (J1)[x] * (w2) + (J1)[(x) + 1] * (w3) +           \
                (float)(1 << (LK_W_BITS - 6))) * (1.f / (1 << (LK_W_BITS - 5))))

/* The mismatch vector over the window at the second image's corner
   (float products of exact integers round as OpenCV's (float)(a*b)). */
VL_CLONES static void lk_b(const float *J, int step, const int *iw, int ws, int wsp, const float *ip,
                           const float *ixp, const float *iyp, float *restrict acc, float *b) {
  const float w0 = (float)iw[0], w1 = (float)iw[1], w2 = (float)iw[2], w3 = (float)iw[3];
  float *restrict c1 = acc, *restrict c2 = acc + wsp;
  for (int x = 0; x < 2 * wsp; x++) acc[x] = 0;
  for (int y = 0; y < ws; y++) {
    const float *restrict J0 = J + (int64_t)y * step, *restrict J1 = J0 + step;
    const float *restrict o = ip + y * wsp, *restrict ox = ixp + y * wsp, *restrict oy = iyp + y * wsp;
#pragma omp simd
    for (int x = 0; x < wsp; x++) {
      float diff = LK_JV(J0, J1, x, w0, w1, w2, w3) - o[x];
      c1[x] += diff * ox[x];
      c2[x] += diff * oy[x];
    }
  }
  b[0] = lk_hsum(c1, wsp), b[1] = lk_hsum(c2, wsp);
}

VL_CLONES static float lk_err(const float *J, int step, const int *iw, int ws, int wsp, const float *ip,
                              float *restrict acc) {
  const float w0 = (float)iw[0], w1 = (float)iw[1], w2 = (float)iw[2], w3 = (float)iw[3];
  for (int x = 0; x < ws; x++) acc[x] = 0;
  for (int y = 0; y < ws; y++) {
    const float *restrict J0 = J + (int64_t)y * step, *restrict J1 = J0 + step;
    const float *restrict o = ip + y * wsp;
#pragma omp simd
    for (int x = 0; x < ws; x++) acc[x] += fabsf(LK_JV(J0, J1, x, w0, w1, w2, w3) - o[x]);
  }
  float e = 0;
  for (int x = 0; x < ws; x++) e += acc[x];
  return e;
}

static inline const float *lk_fpx(const lk_level *L, int y, int x) {
  return L->fimg + (int64_t)(y + L->pad) * L->stride + (x + L->pad);
}

/* Bilinear window of J at corner (ix, iy) minus the I window: the sum of
   |diff| (for the error) or the b vector. */
static void lk_point(const lk_job *jb, int64_t i, float *Iwin, float *IxW, float *IyW, float *acc) {
  const lk_level *I = jb->I, *J = jb->J;
  const int ws = jb->ws, level = jb->level;
  const float halfw = (ws - 1) * 0.5f;
  float px = jb->prev[2 * i] * (float)(1. / (1 << level)), py = jb->prev[2 * i + 1] * (float)(1. / (1 << level));
  float nx, ny;
  if (level == jb->max_level)
    nx = px, ny = py;
  else
    nx = jb->next[2 * i] * 2.f, ny = jb->next[2 * i + 1] * 2.f;
  jb->next[2 * i] = nx, jb->next[2 * i + 1] = ny;
  px -= halfw, py -= halfw;
  int ipx = lk_floor(px), ipy = lk_floor(py);
  if (ipx < -ws || ipx >= I->w || ipy < -ws || ipy >= I->h) {
    if (level == 0) jb->status[i] = 0, jb->err[i] = 0;
    return;
  }
  int iw[4];
  lk_weights(px - (float)ipx, py - (float)ipy, iw);
  float A[3];
  lk_window(I, ipx, ipy, iw, ws, jb->wsp, jb->mask, Iwin, IxW, IyW, acc, A);
  float A11 = A[0], A12 = A[1], A22 = A[2];
  const float FLT_SCALE = 1.f / (1 << 20);
  A11 *= FLT_SCALE, A12 *= FLT_SCALE, A22 *= FLT_SCALE;
  float D = A11 * A22 - A12 * A12;
  float min_eig = (A22 + A11 - sqrtf((A11 - A22) * (A11 - A22) + 4.f * A12 * A12)) / (float)(2 * ws * ws);
  if (min_eig < jb->min_eig || D < FLT_EPSILON) {
    if (level == 0) jb->status[i] = 0, jb->err[i] = 0;
    return;
  }
  D = 1.f / D;
  nx -= halfw, ny -= halfw;
  float pdx = 0, pdy = 0;
  const int sJ = J->stride;
  for (int j = 0; j < jb->max_count; j++) {
    int inx = lk_floor(nx), iny = lk_floor(ny);
    if (inx < -ws || inx >= J->w || iny < -ws || iny >= J->h) {
      if (level == 0) jb->status[i] = 0, jb->err[i] = 0;
      break;
    }
    lk_weights(nx - (float)inx, ny - (float)iny, iw);
    float bb[2];
    lk_b(lk_fpx(J, iny, inx), sJ, iw, ws, jb->wsp, Iwin, IxW, IyW, acc, bb);
    float b1 = bb[0], b2 = bb[1];
    b1 *= FLT_SCALE, b2 *= FLT_SCALE;
    float dx = (A12 * b2 - A22 * b1) * D, dy = (A12 * b1 - A11 * b2) * D;
    nx += dx, ny += dy;
    jb->next[2 * i] = nx + halfw, jb->next[2 * i + 1] = ny + halfw;
    if ((double)dx * dx + (double)dy * dy <= jb->eps2) break;
    if (j > 0 && fabsf(dx + pdx) < 0.01f && fabsf(dy + pdy) < 0.01f) {
      jb->next[2 * i] -= dx * 0.5f, jb->next[2 * i + 1] -= dy * 0.5f;
      break;
    }
    pdx = dx, pdy = dy;
  }
  if (jb->status[i] && level == 0) {
    float ex = jb->next[2 * i] - halfw, ey = jb->next[2 * i + 1] - halfw;
    int inx = lk_floor(ex), iny = lk_floor(ey);
    if (inx < -ws || inx >= J->w || iny < -ws || iny >= J->h) {
      jb->status[i] = 0, jb->err[i] = 0;
      return;
    }
    lk_weights(ex - (float)inx, ey - (float)iny, iw);
    float e = lk_err(lk_fpx(J, iny, inx), sJ, iw, ws, jb->wsp, Iwin, acc);
    jb->err[i] = e * 1.f / (float)(32 * ws * ws);
  }
}

static void lk_free_level(lk_level *L) {
  free(L->img), free(L->deriv), free(L->fimg);
  L->img = NULL, L->fimg = NULL, L->deriv = NULL;
}

int vl_flow_lucas_kanade(const vl_tensor *prev, const vl_tensor *next, const vl_tensor *points, const vl_lk_opts *opt,
                         vl_tensor **next_points, vl_tensor **status, vl_tensor **err) {
  const char *op = "lucas_kanade";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (next_points) *next_points = NULL;
  if (status) *status = NULL;
  if (err) *err = NULL;
  if (!prev || !next || !points || !opt || !next_points || !status || !err)
    return vl_error(VL_EARG, "%s: missing argument", op);
  img_desc da, db;
  int rc;
  if ((rc = describe_image(op, "prev", prev, &da)) || (rc = describe_image(op, "next", next, &db))) return rc;
  if (da.h != db.h || da.w != db.w)
    return vl_error(VL_ESHAPE, "%s: prev %s and next %s have different sizes (%lld x %lld vs %lld x %lld), expected "
                    "the same", op, vl_shape_str(prev->ndim, prev->shape, s1),
                    vl_shape_str(next->ndim, next->shape, s2), (long long)da.h, (long long)da.w, (long long)db.h,
                    (long long)db.w);
  if (points->ndim != 2 || points->shape[1] != 2)
    return vl_error(VL_ESHAPE, "%s: points have shape %s, expected [N,2] (x, y)", op,
                    vl_shape_str(points->ndim, points->shape, s1));
  if (points->dtype != VL_FLOAT32 && points->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, "%s: points must be float32 or float64, got %s", op, vl_dtype_name(points->dtype));
  if (opt->win_size < 3 || opt->win_size > 1001)
    return vl_error(VL_EARG, "%s: win_size %lld out of range, expected 3..1001", op, (long long)opt->win_size);
  if (opt->max_level < 0 || opt->max_level > 30)
    return vl_error(VL_EARG, "%s: max_level %d out of range, expected 0..30", op, opt->max_level);
  if (opt->iterations < 0)
    return vl_error(VL_EARG, "%s: iterations %d, expected >= 0 (OpenCV caps it at 100)", op, opt->iterations);
  if (!(opt->epsilon >= 0))
    return vl_error(VL_EARG, "%s: epsilon %g, expected >= 0 (OpenCV caps it at 10)", op, opt->epsilon);
  if (!(opt->min_eig_threshold >= 0) || !isfinite(opt->min_eig_threshold))
    return vl_error(VL_EARG, "%s: min_eig_threshold %g, expected a finite value >= 0", op, opt->min_eig_threshold);

  const int64_t npts = points->shape[0];
  int64_t pshape[2] = {npts, 2}, sshape[1] = {npts};
  vl_tensor *np = vl_empty(2, pshape, VL_FLOAT32), *st = vl_empty(1, sshape, VL_BOOL),
            *er = vl_empty(1, sshape, VL_FLOAT32);
  vl_tensor *pf = vl_to_dtype(points, VL_FLOAT32), *pc = pf ? vl_contiguous(pf) : NULL;
  vl_tensor_release(pf);
  const int ws = (int)opt->win_size, W = (int)da.w, H = (int)da.h;
  lk_level *levs = NULL;
  uint8_t *g0 = NULL, *g1 = NULL;
  float *mask = NULL;
  int maxl = 0;
  if (!np || !st || !er || !pc) {
    rc = vl_last_status();
    goto fail;
  }
  const float *pp = vl_data_ptr(pc);
  for (int64_t i = 0; i < 2 * npts; i++)
    if (!isfinite(pp[i])) {
      rc = vl_error(VL_EARG, "%s: point %lld has a NaN or infinite coordinate, expected finite (x, y)", op,
                    (long long)(i / 2 + 1));
      goto fail;
    }
  float *nxt = vl_data_ptr(np), *ev = vl_data_ptr(er);
  uint8_t *sv = vl_data_ptr(st);
  for (int64_t i = 0; i < npts; i++) sv[i] = 1, ev[i] = 0, nxt[2 * i] = pp[2 * i], nxt[2 * i + 1] = pp[2 * i + 1];
  if (npts == 0) goto ok;
  if ((int64_t)W * H == 0) {
    for (int64_t i = 0; i < npts; i++) sv[i] = 0;
    goto ok;
  }
  /* pyramid sizes: stop where the next level is no larger than the window */
  {
    int sw = W, sh = H;
    for (maxl = 0; maxl < opt->max_level; maxl++) {
      sw = (sw + 1) / 2, sh = (sh + 1) / 2;
      if (sw <= ws || sh <= ws) break;
    }
  }
  const int wsp = (ws + 15) / 16 * 16;
  mask = malloc(sizeof(float) * (size_t)wsp);
  levs = calloc((size_t)(maxl + 1) * 2, sizeof(lk_level));
  g0 = malloc((size_t)W * H), g1 = malloc((size_t)W * H);
  if (!levs || !g0 || !g1 || !mask) {
    rc = vl_error(VL_ENOMEM, "%s: out of memory", op);
    goto fail;
  }
  for (int x = 0; x < wsp; x++) mask[x] = x < ws ? 1.f : 0.f;
  if ((rc = image_to_u8(op, "prev", prev, &da, g0)) || (rc = image_to_u8(op, "next", next, &db, g1))) goto fail;
  for (int l = 0; l <= maxl; l++)
    for (int k = 0; k < 2; k++) {
      lk_level *L = &levs[2 * l + k];
      L->w = l ? (levs[2 * (l - 1) + k].w + 1) / 2 : W;
      L->h = l ? (levs[2 * (l - 1) + k].h + 1) / 2 : H;
      L->pad = wsp; /* windows reach ws left and up, wsp right and down */
      L->stride = L->w + 2 * wsp;
      size_t n = (size_t)L->stride * (size_t)(L->h + 2 * wsp);
      L->img = malloc(n);
      L->deriv = k == 0 ? malloc(n * 2 * sizeof(int16_t)) : NULL; /* two planes */
      L->fimg = k == 1 ? malloc(n * sizeof(float)) : NULL;
      if (!L->img || (k == 0 && !L->deriv) || (k == 1 && !L->fimg)) {
        rc = vl_error(VL_ENOMEM, "%s: out of memory for the pyramid", op);
        goto fail;
      }
      if (l == 0) {
        const uint8_t *g = k ? g1 : g0;
        for (int y = 0; y < H; y++) memcpy((uint8_t *)lk_px(L, y, 0), g + (int64_t)y * W, (size_t)W);
      } else {
        if ((rc = lk_pyr_down(&levs[2 * (l - 1) + k], L))) goto fail;
      }
      lk_border(L);
      if (k == 0 && (rc = lk_deriv(L))) goto fail;
      if (k == 1)
        for (size_t e = 0; e < n; e++) L->fimg[e] = L->img[e];
    }
  {
    int max_count = VL_MIN(VL_MAX(opt->iterations, 0), 100), oom = 0;
    double eps = fmin(fmax(opt->epsilon, 0.), 10.);
    for (int l = maxl; l >= 0 && !oom; l--) {
      lk_job jb = {&levs[2 * l], &levs[2 * l + 1], l, maxl, ws, max_count, wsp, mask, eps * eps,
                   (float)opt->min_eig_threshold, pp, nxt, ev, sv};
#pragma omp parallel if (npts > 64)
      {
        float *buf = malloc(sizeof(float) * ((size_t)wsp * ws * 3 + (size_t)wsp * 3));
        if (!buf) {
#pragma omp atomic write
          oom = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < npts; i++) {
          if (!buf) continue;
          lk_point(&jb, i, buf, buf + (size_t)wsp * ws, buf + (size_t)wsp * ws * 2, buf + (size_t)wsp * ws * 3);
        }
        free(buf);
      }
    }
    if (oom) {
      rc = vl_error(VL_ENOMEM, "%s: out of memory", op);
      goto fail;
    }
  }
ok:
  if (levs)
    for (int l = 0; l <= maxl; l++) lk_free_level(&levs[2 * l]), lk_free_level(&levs[2 * l + 1]);
  free(levs), free(g0), free(g1), free(mask);
  vl_tensor_release(pc);
  *next_points = np, *status = st, *err = er;
  return VL_OK;
fail:
  if (levs)
    for (int l = 0; l <= maxl; l++) lk_free_level(&levs[2 * l]), lk_free_level(&levs[2 * l + 1]);
  free(levs), free(g0), free(g1), free(mask);
  vl_tensor_release(pc), vl_tensor_release(np), vl_tensor_release(st), vl_tensor_release(er);
  return rc ? rc : vl_error(VL_ENOMEM, "%s: out of memory", op);
}
