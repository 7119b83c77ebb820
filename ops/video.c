/*
** video.c — spatial sampling and temporal ops for video networks
** (prefixes vl_grid_sample / vl_affine_grid / vl_temporal_shift /
** vl_warp / vl_video_interpolate).
** Forward and backward side by side.
**
** grid_sample: torch.nn.functional.grid_sample of PyTorch 1.13 for a 4-d
** input [N,C,H,W] and grid [N,Ho,Wo,2] (x then y, in [-1, 1]), modes
** bilinear and nearest (round half to even, as nearbyint), padding zeros
** and border, align_corners. Output [N,C,Ho,Wo]. Gradients to the input
** (both modes) and to the grid (bilinear; nearest gives a zero grid
** gradient, as PyTorch). Border padding clips the coordinate, and the
** clip's derivative is 0 at and beyond the border (PyTorch's
** clip_coordinates_set_grad). Non-finite or huge (|c| >= 1e15 pixels)
** coordinates read nothing (output 0, no gradient).
**
** affine_grid: F.affine_grid for theta [N,2,3] and size {N,C,H,W}:
** grid[n,h,w] = theta[n] @ (x_w, y_h, 1), with x, y from
** linspace(-1, 1) (scaled by (n-1)/n without align_corners; 0 for a size
** of 1). Gradient to theta.
**
** temporal_shift: TSM's shift for x [N*T, C, ...] (T = segments):
** channels [0, fold) take the next frame (t+1), channels [fold, 2 fold)
** the previous one (t-1), zero-filled at the ends; fold = C / fold_div
** (the second range is clipped to C). Any dtype; backward is the
** opposite shift.
**
** warp: backward warping by a flow in pixels, out[n,c,y,x] =
** img[n,c,y+v,x+u] (flow[...,0] = u along x, OpenCV's convention):
** grid_sample's kernels with the coordinate (x + u, y + v) taken as a
** pixel position (derivative 1), i.e. align_corners on the normalised
** grid; gradients to img and flow.
**
** video_interpolate: the frame at t in (0,1) from f0, f1 and the flows
** F01, F10: Super SloMo's intermediate flows F_t0 = -(1-t)t F01 + t^2 F10,
** F_t1 = (1-t)^2 F01 - t(1-t) F10, both frames warped back (bilinear,
** border) and blended by (1-t) w0 and t w1, normalised; w = 1, or with
** occlusion an in-frame mask times exp(-e^2/2), e the forward-backward
** consistency error at the point read in the other frame. No autograd.
**
** grid_sample and affine_grid compute in float64 (float32 inputs are
** widened and the result rounded back); other dtypes are refused. Any
** layout is made contiguous first. Threads: the grid_sample forward over
** (batch, output row), its backward over the batch (input gradients of
** one batch entry are scattered by one thread), temporal_shift over
** planes.
*/
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "vl_internal.h"

static const char *const gs_mode_names[] = {"bilinear", "nearest"};
static const char *const gs_pad_names[] = {"zeros", "border"};

int vl_grid_sample_mode_from_name(const char *name, vl_grid_sample_mode *out) {
  for (int i = 0; i < 2; i++)
    if (name && strcmp(name, gs_mode_names[i]) == 0) {
      *out = (vl_grid_sample_mode)i;
      return VL_OK;
    }
  return vl_error(VL_EARG, "grid_sample: unknown mode '%s' (expected 'bilinear' or 'nearest')",
                  name ? name : "(null)");
}

int vl_grid_sample_padding_from_name(const char *name, vl_grid_sample_padding *out) {
  for (int i = 0; i < 2; i++)
    if (name && strcmp(name, gs_pad_names[i]) == 0) {
      *out = (vl_grid_sample_padding)i;
      return VL_OK;
    }
  return vl_error(VL_EARG, "grid_sample: unknown padding_mode '%s' (expected 'zeros' or 'border')",
                  name ? name : "(null)");
}

/* A contiguous float64 copy (or t itself, retained). */
static vl_tensor *f64(const vl_tensor *t) {
  vl_tensor *c = vl_to_dtype(t, VL_FLOAT64);
  if (c == NULL) return NULL;
  vl_tensor *r = vl_contiguous(c);
  vl_tensor_release(c);
  return r;
}

/* Round a float64 result to dtype dt (takes over y). */
static vl_tensor *to_dt(vl_tensor *y, vl_dtype dt) {
  if (y == NULL || y->dtype == dt) return y;
  vl_tensor *r = vl_to_dtype(y, dt);
  vl_tensor_release(y);
  return r;
}

/* ------------------------------------------------------------------ */
/* grid_sample                                                          */
/* ------------------------------------------------------------------ */

#define GS "grid_sample"
#define GS_FAR 1e15

typedef struct gs_geom {
  int64_t N, C, IH, IW, OH, OW;
  int mode, pad;
  bool align;
  bool flow; /* vl_warp: the grid is a flow in pixels added to (ow, oh) */
} gs_geom;

/* Source coordinate of a normalised one and its derivative (PyTorch's
   grid_sampler_compute_source_index_set_grad). */
static double gs_coord(double c, int64_t base, int64_t size, const gs_geom *g, double *d) {
  double v;
  if (g->flow) {
    *d = 1, v = (double)base + c;
  } else {
    /* PyTorch's CPU kernel: (c + 1) * scale - offset */
    *d = g->align ? (double)(size - 1) / 2 : (double)size / 2;
    v = (c + 1) * *d - (g->align ? 0.0 : 0.5);
  }
  if (g->pad == VL_GS_BORDER) {
    double lim = (double)(size - 1);
    if (v <= 0) {
      v = 0, *d = 0;
    } else if (v >= lim) {
      v = lim, *d = 0;
    }
  }
  return v;
}

static inline bool gs_in(int64_t x, int64_t y, const gs_geom *g) { return x >= 0 && x < g->IW && y >= 0 && y < g->IH; }

static inline bool gs_ok(double ix, double iy) { return fabs(ix) < GS_FAR && fabs(iy) < GS_FAR; } /* false for NaN */

static void gs_forward(const gs_geom *g, const double *x, const double *grid, double *y) {
  int64_t rows = g->N * g->OH, plane = g->IH * g->IW, oplane = g->OH * g->OW;
#pragma omp parallel for if (rows * g->OW * g->C > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t n = r / g->OH, oh = r % g->OH;
    const double *xn = x + n * g->C * plane;
    double *yn = y + n * g->C * oplane + oh * g->OW;
    for (int64_t ow = 0; ow < g->OW; ow++) {
      const double *gp = grid + ((n * g->OH + oh) * g->OW + ow) * 2;
      double dx, dy, ix = gs_coord(gp[0], ow, g->IW, g, &dx), iy = gs_coord(gp[1], oh, g->IH, g, &dy);
      if (!gs_ok(ix, iy)) {
        for (int64_t c = 0; c < g->C; c++) yn[c * oplane + ow] = 0;
        continue;
      }
      if (g->mode == VL_GS_NEAREST) {
        int64_t xi = (int64_t)nearbyint(ix), yi = (int64_t)nearbyint(iy);
        bool in = gs_in(xi, yi, g);
        for (int64_t c = 0; c < g->C; c++) yn[c * oplane + ow] = in ? xn[c * plane + yi * g->IW + xi] : 0;
        continue;
      }
      int64_t x0 = (int64_t)floor(ix), y0 = (int64_t)floor(iy), x1 = x0 + 1, y1 = y0 + 1;
      double wnw = ((double)x1 - ix) * ((double)y1 - iy), wne = (ix - (double)x0) * ((double)y1 - iy);
      double wsw = ((double)x1 - ix) * (iy - (double)y0), wse = (ix - (double)x0) * (iy - (double)y0);
      bool inw = gs_in(x0, y0, g), ine = gs_in(x1, y0, g), isw = gs_in(x0, y1, g), ise = gs_in(x1, y1, g);
      for (int64_t c = 0; c < g->C; c++) {
        const double *xc = xn + c * plane;
        double v = 0;
        if (inw) v += xc[y0 * g->IW + x0] * wnw;
        if (ine) v += xc[y0 * g->IW + x1] * wne;
        if (isw) v += xc[y1 * g->IW + x0] * wsw;
        if (ise) v += xc[y1 * g->IW + x1] * wse;
        yn[c * oplane + ow] = v;
      }
    }
  }
}

/* gx (zeroed, may be NULL) and ggrid (zeroed, may be NULL) from go. */
static void gs_backward_kernel(const gs_geom *g, const double *x, const double *grid, const double *go, double *gx,
                               double *ggrid) {
  int64_t plane = g->IH * g->IW, oplane = g->OH * g->OW;
#pragma omp parallel for if (g->N * oplane * g->C > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t n = 0; n < g->N; n++) {
    const double *xn = x + n * g->C * plane;
    const double *gon = go + n * g->C * oplane;
    double *gxn = gx ? gx + n * g->C * plane : NULL;
    for (int64_t p = 0; p < oplane; p++) {
      const double *gp = grid + (n * oplane + p) * 2;
      double dx, dy, ix = gs_coord(gp[0], p % g->OW, g->IW, g, &dx), iy = gs_coord(gp[1], p / g->OW, g->IH, g, &dy);
      if (!gs_ok(ix, iy)) continue;
      if (g->mode == VL_GS_NEAREST) {
        int64_t xi = (int64_t)nearbyint(ix), yi = (int64_t)nearbyint(iy);
        if (gxn && gs_in(xi, yi, g))
          for (int64_t c = 0; c < g->C; c++) gxn[c * plane + yi * g->IW + xi] += gon[c * oplane + p];
        continue;
      }
      int64_t x0 = (int64_t)floor(ix), y0 = (int64_t)floor(iy), x1 = x0 + 1, y1 = y0 + 1;
      double ax = (double)x1 - ix, bx = ix - (double)x0, ay = (double)y1 - iy, by = iy - (double)y0;
      bool inw = gs_in(x0, y0, g), ine = gs_in(x1, y0, g), isw = gs_in(x0, y1, g), ise = gs_in(x1, y1, g);
      int64_t onw = y0 * g->IW + x0, one = y0 * g->IW + x1, osw = y1 * g->IW + x0, ose = y1 * g->IW + x1;
      double gix = 0, giy = 0;
      for (int64_t c = 0; c < g->C; c++) {
        double o = gon[c * oplane + p];
        const double *xc = xn + c * plane;
        double *gc = gxn ? gxn + c * plane : NULL;
        if (inw) {
          double v = xc[onw];
          gix -= v * ay * o, giy -= v * ax * o;
          if (gc) gc[onw] += ax * ay * o;
        }
        if (ine) {
          double v = xc[one];
          gix += v * ay * o, giy -= v * bx * o;
          if (gc) gc[one] += bx * ay * o;
        }
        if (isw) {
          double v = xc[osw];
          gix -= v * by * o, giy += v * ax * o;
          if (gc) gc[osw] += ax * by * o;
        }
        if (ise) {
          double v = xc[ose];
          gix += v * by * o, giy += v * bx * o;
          if (gc) gc[ose] += bx * by * o;
        }
      }
      if (ggrid) {
        ggrid[(n * oplane + p) * 2] = dx * gix;
        ggrid[(n * oplane + p) * 2 + 1] = dy * giy;
      }
    }
  }
}

static void gs_geom_of(const vl_node *nd, gs_geom *g) {
  const int64_t *xs = nd->in_shape[0], *gsh = nd->in_shape[1];
  *g = (gs_geom){.N = xs[0], .C = xs[1], .IH = xs[2], .IW = xs[3], .OH = gsh[1], .OW = gsh[2],
                 .mode = (int)nd->iarg[0], .pad = (int)nd->iarg[1], .align = nd->iarg[2] != 0,
                 .flow = nd->iarg[3] != 0};
}

static int gs_backward(vl_node *nd, const vl_tensor *go, vl_tensor **gi) {
  gs_geom g;
  gs_geom_of(nd, &g);
  vl_tensor *x = f64(nd->saved[0]), *grid = x ? f64(nd->saved[1]) : NULL, *gc = grid ? f64(go) : NULL;
  vl_tensor *gx = NULL, *gg = NULL;
  int rc = gc ? VL_OK : vl_last_status();
  if (rc == VL_OK && nd->needs[0] && (gx = vl_zeros(4, nd->in_shape[0], VL_FLOAT64)) == NULL) rc = vl_last_status();
  if (rc == VL_OK && nd->needs[1] && (gg = vl_zeros(4, nd->in_shape[1], VL_FLOAT64)) == NULL) rc = vl_last_status();
  if (rc == VL_OK && vl_numel(gc) > 0)
    gs_backward_kernel(&g, vl_data_ptr(x), vl_data_ptr(grid), vl_data_ptr(gc), gx ? vl_data_ptr(gx) : NULL,
                       g.mode == VL_GS_BILINEAR && gg ? vl_data_ptr(gg) : NULL);
  vl_tensor_release(x);
  vl_tensor_release(grid);
  vl_tensor_release(gc);
  if (rc != VL_OK) {
    vl_tensor_release(gx);
    vl_tensor_release(gg);
    return rc;
  }
  if (gx && (gi[0] = vl_ag_reduce_to(nd, 0, gx)) == NULL) rc = vl_last_status();
  if (gg && (gi[1] = vl_ag_reduce_to(nd, 1, gg)) == NULL) rc = vl_last_status();
  return rc;
}

vl_tensor *vl_grid_sample(const vl_tensor *input, const vl_tensor *grid, vl_grid_sample_mode mode,
                          vl_grid_sample_padding padding, bool align_corners) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (input == NULL || grid == NULL) return vl_error(VL_EARG, GS ": no %s tensor", input ? "grid" : "input"), NULL;
  if ((unsigned)mode > VL_GS_NEAREST) return vl_error(VL_EARG, GS ": unknown mode %d", (int)mode), NULL;
  if ((unsigned)padding > VL_GS_BORDER) return vl_error(VL_EARG, GS ": unknown padding_mode %d", (int)padding), NULL;
  if (input->dtype != VL_FLOAT32 && input->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, GS ": expected a float32 or float64 input, got %s (convert it with :to(\"float32\"))",
                    vl_dtype_name(input->dtype)),
           NULL;
  if (grid->dtype != input->dtype)
    return vl_error(VL_EDTYPE, GS ": grid dtype %s differs from input dtype %s (expected the same)",
                    vl_dtype_name(grid->dtype), vl_dtype_name(input->dtype)),
           NULL;
  if (input->ndim != 4)
    return vl_error(VL_ESHAPE, GS ": expected a 4-d input [N,C,H,W], got %d-d %s", input->ndim,
                    vl_shape_str(input->ndim, input->shape, s1)),
           NULL;
  if (grid->ndim != 4 || grid->shape[3] != 2 || grid->shape[0] != input->shape[0])
    return vl_error(VL_ESHAPE, GS ": expected a grid [N,Ho,Wo,2] with N = %lld (input %s), got %s",
                    (long long)input->shape[0], vl_shape_str(4, input->shape, s1),
                    vl_shape_str(grid->ndim, grid->shape, s2)),
           NULL;
  if (input->shape[2] == 0 || input->shape[3] == 0)
    return vl_error(VL_ESHAPE, GS ": expected non-empty spatial dims, got input %s", vl_shape_str(4, input->shape, s1)),
           NULL;
  gs_geom g = {.N = input->shape[0], .C = input->shape[1], .IH = input->shape[2], .IW = input->shape[3],
               .OH = grid->shape[1], .OW = grid->shape[2], .mode = mode, .pad = padding, .align = align_corners};
  int64_t yshape[4] = {g.N, g.C, g.OH, g.OW};
  size_t nbytes;
  if (vl_shape_nbytes(GS, 4, yshape, input->dtype, &nbytes) != VL_OK) return NULL;
  bool need = vl_ag_needed(2, (const vl_tensor *[]){input, grid});
  bool was = vl_ag_pause();
  vl_tensor *x = f64(input), *gr = x ? f64(grid) : NULL, *y = gr ? vl_empty(4, yshape, VL_FLOAT64) : NULL;
  if (y && vl_numel(y) > 0) gs_forward(&g, vl_data_ptr(x), vl_data_ptr(gr), vl_data_ptr(y));
  vl_tensor_release(x);
  vl_tensor_release(gr);
  y = to_dt(y, input->dtype);
  vl_set_grad_enabled(was);
  if (y == NULL) return NULL;
  if (need) {
    vl_node *n = vl_ag_node(GS, gs_backward, 2, (const vl_tensor *[]){input, grid});
    if (n) n->iarg[0] = mode, n->iarg[1] = padding, n->iarg[2] = align_corners;
    if (n == NULL || vl_ag_save(n, input) < 0 || vl_ag_save(n, grid) < 0 || vl_ag_attach(y, n) != VL_OK) {
      vl_ag_node_release(n);
      vl_tensor_release(y);
      return NULL;
    }
  }
  return y;
}

/* ------------------------------------------------------------------ */
/* warp: backward warping by a flow in pixels                           */
/* ------------------------------------------------------------------ */

#define WP "video.warp"

typedef struct wp_args {
  const vl_tensor *flow;
  int mode, pad;
} wp_args;

/* img [N,C,H,W], flow [N,H,W,2]: grid_sample's kernels with the
   coordinates (x + u, y + v) in pixels. */
static vl_tensor *warp_batched(const vl_tensor *img, const void *vargs) {
  const wp_args *a = vargs;
  const vl_tensor *flow = a->flow;
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (flow->ndim != 4 || flow->shape[0] != img->shape[0] || flow->shape[1] != img->shape[2] ||
      flow->shape[2] != img->shape[3] || flow->shape[3] != 2)
    return vl_error(VL_ESHAPE, WP ": expected a flow [%s%lld,%lld,2] for image %s, got %s",
                    img->shape[0] == 1 ? "" : "N,", (long long)img->shape[2], (long long)img->shape[3],
                    vl_shape_str(img->ndim, img->shape, s1), vl_shape_str(flow->ndim, flow->shape, s2)),
           NULL;
  gs_geom g = {.N = img->shape[0], .C = img->shape[1], .IH = img->shape[2], .IW = img->shape[3],
               .OH = img->shape[2], .OW = img->shape[3], .mode = a->mode, .pad = a->pad, .align = true, .flow = true};
  bool need = vl_ag_needed(2, (const vl_tensor *[]){img, flow});
  bool was = vl_ag_pause();
  vl_tensor *x = f64(img), *gr = x ? f64(flow) : NULL, *y = gr ? vl_empty(4, img->shape, VL_FLOAT64) : NULL;
  if (y && vl_numel(y) > 0) gs_forward(&g, vl_data_ptr(x), vl_data_ptr(gr), vl_data_ptr(y));
  vl_tensor_release(x);
  vl_tensor_release(gr);
  y = to_dt(y, img->dtype);
  vl_set_grad_enabled(was);
  if (y == NULL) return NULL;
  if (need) {
    vl_node *n = vl_ag_node(WP, gs_backward, 2, (const vl_tensor *[]){img, flow});
    if (n) n->iarg[0] = a->mode, n->iarg[1] = a->pad, n->iarg[2] = 1, n->iarg[3] = 1;
    if (n == NULL || vl_ag_save(n, img) < 0 || vl_ag_save(n, flow) < 0 || vl_ag_attach(y, n) != VL_OK) {
      vl_ag_node_release(n);
      vl_tensor_release(y);
      return NULL;
    }
  }
  return y;
}

vl_tensor *vl_warp(const vl_tensor *img, const vl_tensor *flow, vl_grid_sample_mode mode,
                   vl_grid_sample_padding padding) {
  char s1[VL_SHAPE_STR];
  if (img == NULL || flow == NULL) return vl_error(VL_EARG, WP ": no %s tensor", img ? "flow" : "image"), NULL;
  if ((unsigned)mode > VL_GS_NEAREST) return vl_error(VL_EARG, WP ": unknown mode %d", (int)mode), NULL;
  if ((unsigned)padding > VL_GS_BORDER) return vl_error(VL_EARG, WP ": unknown padding_mode %d", (int)padding), NULL;
  if (img->dtype != VL_FLOAT32 && img->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, WP ": expected a float32 or float64 image, got %s (convert it with :to(\"float32\"))",
                    vl_dtype_name(img->dtype)),
           NULL;
  if (flow->dtype != img->dtype)
    return vl_error(VL_EDTYPE, WP ": flow dtype %s differs from image dtype %s (expected the same)",
                    vl_dtype_name(flow->dtype), vl_dtype_name(img->dtype)),
           NULL;
  if (img->ndim != 3 && img->ndim != 4)
    return vl_error(VL_ESHAPE, WP ": expected an image [C,H,W] or [N,C,H,W], got %d-d %s", img->ndim,
                    vl_shape_str(img->ndim, img->shape, s1)),
           NULL;
  if (flow->ndim != img->ndim)
    return vl_error(VL_ESHAPE, WP ": expected a %d-d flow %s for a %d-d image, got %d-d %s", img->ndim,
                    img->ndim == 3 ? "[H,W,2]" : "[N,H,W,2]", img->ndim, flow->ndim,
                    vl_shape_str(flow->ndim, flow->shape, s1)),
           NULL;
  if (img->shape[img->ndim - 1] == 0 || img->shape[img->ndim - 2] == 0)
    return vl_error(VL_ESHAPE, WP ": expected non-empty spatial dims, got image %s",
                    vl_shape_str(img->ndim, img->shape, s1)),
           NULL;
  wp_args a = {.flow = flow, .mode = mode, .pad = padding};
  if (img->ndim == 4) return warp_batched(img, &a);
  vl_tensor *xb = vl_unsqueeze(img, 0), *fb = xb ? vl_unsqueeze(flow, 0) : NULL, *y = NULL;
  if (fb) {
    a.flow = fb;
    y = warp_batched(xb, &a);
  }
  vl_tensor_release(xb);
  vl_tensor_release(fb);
  if (y == NULL) return NULL;
  vl_tensor *r = vl_squeeze(y, 0);
  vl_tensor_release(y);
  return r;
}

/* ------------------------------------------------------------------ */
/* interpolate: a frame between two by bidirectional backward warping   */
/* ------------------------------------------------------------------ */

#define VI "video.interpolate"

/* Bilinear sample of the planar field f [K,H,W] at (x, y), the
   coordinate clamped to the image (border padding). */
static inline void vi_sample(const double *f, int64_t K, int64_t H, int64_t W, double x, double y, double *out) {
  x = x <= 0 ? 0 : x >= (double)(W - 1) ? (double)(W - 1) : x;
  y = y <= 0 ? 0 : y >= (double)(H - 1) ? (double)(H - 1) : y;
  int64_t x0 = (int64_t)floor(x), y0 = (int64_t)floor(y);
  int64_t x1 = VL_MIN(x0 + 1, W - 1), y1 = VL_MIN(y0 + 1, H - 1);
  double bx = x - (double)x0, by = y - (double)y0, ax = 1 - bx, ay = 1 - by;
  for (int64_t k = 0; k < K; k++) {
    const double *p = f + k * H * W;
    out[k] = ay * (ax * p[y0 * W + x0] + bx * p[y0 * W + x1]) + by * (ax * p[y1 * W + x0] + bx * p[y1 * W + x1]);
  }
}

static inline bool vi_inside(double x, double y, int64_t H, int64_t W) {
  return x >= 0 && x <= (double)(W - 1) && y >= 0 && y <= (double)(H - 1);
}

/* Planar float64 copy [N,K,H,W] of a [N,H,W,K]-interleaved tensor (or
   of [N,K,H,W] itself when planar is true). */
static vl_tensor *vi_planar(const vl_tensor *t, bool planar) {
  if (planar) return f64(t);
  vl_tensor *p = vl_permute(t, (const int[]){0, 3, 1, 2});
  vl_tensor *r = p ? f64(p) : NULL;
  vl_tensor_release(p);
  return r;
}

static void vi_kernel(const double *f0, const double *f1, const double *a, const double *b, double *y, int64_t N,
                      int64_t C, int64_t H, int64_t W, double t, bool occlusion) {
  int64_t HW = H * W;
#pragma omp parallel for if (N * H * W * C > VL_PARALLEL_GRAIN / 4) schedule(static)
  for (int64_t r = 0; r < N * H; r++) {
    int64_t n = r / H, py = r % H;
    const double *an = a + n * 2 * HW, *bn = b + n * 2 * HW;
    const double *i0 = f0 + n * C * HW, *i1 = f1 + n * C * HW;
    double *yn = y + n * C * HW;
    for (int64_t px = 0; px < W; px++) {
      int64_t q = py * W + px;
      double u01 = an[q], v01 = an[HW + q], u10 = bn[q], v10 = bn[HW + q];
      /* Super SloMo's intermediate flows, linear motion */
      double ut0 = -(1 - t) * t * u01 + t * t * u10, vt0 = -(1 - t) * t * v01 + t * t * v10;
      double ut1 = (1 - t) * (1 - t) * u01 - t * (1 - t) * u10, vt1 = (1 - t) * (1 - t) * v01 - t * (1 - t) * v10;
      double x0 = (double)px + ut0, y0 = (double)py + vt0, x1 = (double)px + ut1, y1 = (double)py + vt1;
      double w0 = 1 - t, w1 = t;
      if (occlusion) {
        /* forward-backward consistency of the points both warps read:
           content at p0 missing from frame 1 -> trust frame 0 there,
           and the other way round; points outside a frame get no weight */
        double fa[2], fb[2];
        vi_sample(an, 2, H, W, x0, y0, fa);
        vi_sample(bn, 2, H, W, x0 + fa[0], y0 + fa[1], fb);
        double e0 = (fa[0] + fb[0]) * (fa[0] + fb[0]) + (fa[1] + fb[1]) * (fa[1] + fb[1]);
        vi_sample(bn, 2, H, W, x1, y1, fb);
        vi_sample(an, 2, H, W, x1 + fb[0], y1 + fb[1], fa);
        double e1 = (fa[0] + fb[0]) * (fa[0] + fb[0]) + (fa[1] + fb[1]) * (fa[1] + fb[1]);
        double c0 = vi_inside(x0, y0, H, W) ? exp(-0.5 * e1) : 0, c1 = vi_inside(x1, y1, H, W) ? exp(-0.5 * e0) : 0;
        if ((1 - t) * c0 + t * c1 > 1e-6) w0 = (1 - t) * c0, w1 = t * c1;
        double s = w0 + w1;
        w0 /= s, w1 /= s;
      }
      double s0[64], s1[64];
      for (int64_t c0 = 0; c0 < C; c0 += 64) {
        int64_t cn = VL_MIN(C - c0, 64);
        vi_sample(i0 + c0 * HW, cn, H, W, x0, y0, s0);
        vi_sample(i1 + c0 * HW, cn, H, W, x1, y1, s1);
        for (int64_t c = 0; c < cn; c++) yn[(c0 + c) * HW + q] = w0 * s0[c] + w1 * s1[c];
      }
    }
  }
}

vl_tensor *vl_video_interpolate(const vl_tensor *f0, const vl_tensor *f1, double t, const vl_tensor *flow01,
                                const vl_tensor *flow10, bool occlusion) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (f0 == NULL || f1 == NULL || flow01 == NULL || flow10 == NULL)
    return vl_error(VL_EARG, VI ": missing %s", f0 == NULL || f1 == NULL ? "frame" : "flow"), NULL;
  if (!(t > 0 && t < 1)) return vl_error(VL_EARG, VI ": t must lie in (0, 1), got %g", t), NULL;
  if (f0->dtype != VL_FLOAT32 && f0->dtype != VL_FLOAT64 && f0->dtype != VL_UINT8)
    return vl_error(VL_EDTYPE, VI ": expected float32, float64 or uint8 frames, got %s", vl_dtype_name(f0->dtype)),
           NULL;
  if (f1->dtype != f0->dtype)
    return vl_error(VL_EDTYPE, VI ": frames differ in dtype: f0 %s, f1 %s (expected the same)",
                    vl_dtype_name(f0->dtype), vl_dtype_name(f1->dtype)),
           NULL;
  if ((f0->ndim != 3 && f0->ndim != 4) || f1->ndim != f0->ndim || memcmp(f0->shape, f1->shape, sizeof(int64_t) * (size_t)f0->ndim))
    return vl_error(VL_ESHAPE, VI ": expected two frames of one shape [C,H,W] or [N,C,H,W], got f0 %s and f1 %s",
                    vl_shape_str(f0->ndim, f0->shape, s1), vl_shape_str(f1->ndim, f1->shape, s2)),
           NULL;
  int b = f0->ndim == 4;
  int64_t N = b ? f0->shape[0] : 1, C = f0->shape[b], H = f0->shape[b + 1], W = f0->shape[b + 2];
  if (H == 0 || W == 0) return vl_error(VL_ESHAPE, VI ": expected non-empty frames, got %s", vl_shape_str(f0->ndim, f0->shape, s1)), NULL;
  const vl_tensor *fl[2] = {flow01, flow10};
  for (int i = 0; i < 2; i++) {
    const vl_tensor *f = fl[i];
    bool ok = f->ndim == f0->ndim && f->shape[f->ndim - 1] == 2 && f->shape[b] == H && f->shape[b + 1] == W &&
              (!b || f->shape[0] == N);
    if (!ok)
      return vl_error(VL_ESHAPE, VI ": expected %s [%s%lld,%lld,2] for frames %s, got %s", i ? "flow10" : "flow01",
                      b ? "N," : "", (long long)H, (long long)W, vl_shape_str(f0->ndim, f0->shape, s1),
                      vl_shape_str(f->ndim, f->shape, s2)),
             NULL;
    if (f->dtype != VL_FLOAT32 && f->dtype != VL_FLOAT64)
      return vl_error(VL_EDTYPE, VI ": expected a float32 or float64 %s, got %s", i ? "flow10" : "flow01",
                      vl_dtype_name(f->dtype)),
             NULL;
  }
  bool was = vl_ag_pause();
  vl_tensor *x0 = NULL, *x1 = NULL, *a = NULL, *bb = NULL, *y = NULL, *v[4] = {NULL, NULL, NULL, NULL};
  /* views as [N,...] */
  const vl_tensor *src[4] = {f0, f1, flow01, flow10};
  int rc = VL_OK;
  for (int i = 0; i < 4 && rc == VL_OK; i++)
    if ((v[i] = b ? vl_contiguous(src[i]) : vl_unsqueeze(src[i], 0)) == NULL) rc = vl_last_status();
  if (rc == VL_OK && ((x0 = f64(v[0])) == NULL || (x1 = f64(v[1])) == NULL || (a = vi_planar(v[2], false)) == NULL ||
                      (bb = vi_planar(v[3], false)) == NULL))
    rc = vl_last_status();
  int64_t yshape[4] = {N, C, H, W};
  if (rc == VL_OK && (y = vl_empty(4, yshape, VL_FLOAT64)) == NULL) rc = vl_last_status();
  if (rc == VL_OK && vl_numel(y) > 0)
    vi_kernel(vl_data_ptr(x0), vl_data_ptr(x1), vl_data_ptr(a), vl_data_ptr(bb), vl_data_ptr(y), N, C, H, W, t,
              occlusion);
  for (int i = 0; i < 4; i++) vl_tensor_release(v[i]);
  vl_tensor_release(x0), vl_tensor_release(x1), vl_tensor_release(a), vl_tensor_release(bb);
  if (rc == VL_OK && f0->dtype == VL_UINT8) {
    double *p = vl_data_ptr(y);
    int64_t n = vl_numel(y);
    for (int64_t i = 0; i < n; i++) p[i] = nearbyint(p[i] < 0 ? 0 : p[i] > 255 ? 255 : p[i]);
  }
  if (rc == VL_OK) {
    y = to_dt(y, f0->dtype);
    if (y == NULL) rc = vl_last_status();
  }
  if (rc == VL_OK && !b) {
    vl_tensor *r = vl_squeeze(y, 0);
    vl_tensor_release(y);
    y = r;
  }
  vl_set_grad_enabled(was);
  if (rc != VL_OK) {
    vl_tensor_release(y);
    return NULL;
  }
  return y;
}

/* ------------------------------------------------------------------ */
/* affine_grid                                                          */
/* ------------------------------------------------------------------ */

#define AG "affine_grid"

/* torch.linspace(-1, 1, n) (its two-sided evaluation), scaled by
   (n-1)/n without align_corners; 0 when n == 1. */
static void ag_base(int64_t n, bool align, double *v) {
  if (n <= 1) {
    if (n == 1) v[0] = 0;
    return;
  }
  double step = 2.0 / (double)(n - 1);
  int64_t half = n / 2;
  for (int64_t i = 0; i < n; i++) {
    v[i] = i < half ? -1.0 + step * (double)i : 1.0 - step * (double)(n - 1 - i);
    if (!align) v[i] = v[i] * (double)(n - 1) / (double)n;
  }
}

/* The base coordinates xs [W] then ys [H] in one malloc'd block. */
static double *ag_bases(int64_t H, int64_t W, bool align) {
  double *b = malloc((size_t)(H + W) * sizeof *b);
  if (b == NULL) {
    vl_error(VL_ENOMEM, AG ": out of memory for the base grid (%lld + %lld values)", (long long)W, (long long)H);
    return NULL;
  }
  ag_base(W, align, b);
  ag_base(H, align, b + W);
  return b;
}

static int ag_backward(vl_node *nd, const vl_tensor *go, vl_tensor **gi) {
  int64_t N = nd->iarg[0], H = nd->iarg[1], W = nd->iarg[2];
  bool align = nd->iarg[3] != 0;
  double *b = ag_bases(H, W, align);
  if (b == NULL) return vl_last_status();
  vl_tensor *gc = f64(go), *gt = gc ? vl_zeros(3, (int64_t[]){N, 2, 3}, VL_FLOAT64) : NULL;
  if (gt) {
    const double *g = vl_data_ptr(gc), *xs = b, *ys = b + W;
    double *t = vl_data_ptr(gt);
    for (int64_t n = 0; n < N; n++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < W; w++)
          for (int k = 0; k < 2; k++) {
            double v = g[((n * H + h) * W + w) * 2 + k];
            t[n * 6 + k * 3] += v * xs[w];
            t[n * 6 + k * 3 + 1] += v * ys[h];
            t[n * 6 + k * 3 + 2] += v;
          }
  }
  free(b);
  vl_tensor_release(gc);
  if (gt == NULL) return vl_last_status();
  gi[0] = vl_ag_reduce_to(nd, 0, gt);
  return gi[0] ? VL_OK : vl_last_status();
}

vl_tensor *vl_affine_grid(const vl_tensor *theta, const int64_t size[4], bool align_corners) {
  char s1[VL_SHAPE_STR];
  if (theta == NULL || size == NULL) return vl_error(VL_EARG, AG ": no theta or size"), NULL;
  if (theta->dtype != VL_FLOAT32 && theta->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, AG ": expected a float32 or float64 theta, got %s", vl_dtype_name(theta->dtype)), NULL;
  if (size[0] < 1 || size[1] < 1 || size[2] < 1 || size[3] < 1)
    return vl_error(VL_EARG, AG ": expected a positive size {N,C,H,W}, got {%lld,%lld,%lld,%lld}", (long long)size[0],
                    (long long)size[1], (long long)size[2], (long long)size[3]),
           NULL;
  if (theta->ndim != 3 || theta->shape[0] != size[0] || theta->shape[1] != 2 || theta->shape[2] != 3)
    return vl_error(VL_ESHAPE, AG ": expected theta [%lld,2,3] for size {%lld,%lld,%lld,%lld}, got %s",
                    (long long)size[0], (long long)size[0], (long long)size[1], (long long)size[2],
                    (long long)size[3], vl_shape_str(theta->ndim, theta->shape, s1)),
           NULL;
  int64_t N = size[0], H = size[2], W = size[3];
  int64_t yshape[4] = {N, H, W, 2};
  size_t nbytes;
  if (vl_shape_nbytes(AG, 4, yshape, theta->dtype, &nbytes) != VL_OK) return NULL;
  bool need = vl_ag_needed(1, &theta);
  bool was = vl_ag_pause();
  double *b = ag_bases(H, W, align_corners);
  vl_tensor *tc = b ? f64(theta) : NULL, *y = tc ? vl_empty(4, yshape, VL_FLOAT64) : NULL;
  if (y) {
    const double *t = vl_data_ptr(tc), *xs = b, *ys = b + W;
    double *o = vl_data_ptr(y);
    for (int64_t n = 0; n < N; n++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < W; w++)
          for (int k = 0; k < 2; k++) {
            const double *r = t + n * 6 + k * 3;
            o[((n * H + h) * W + w) * 2 + k] = xs[w] * r[0] + ys[h] * r[1] + r[2];
          }
  }
  free(b);
  vl_tensor_release(tc);
  y = to_dt(y, theta->dtype);
  vl_set_grad_enabled(was);
  if (y == NULL) return NULL;
  if (need) {
    vl_node *n = vl_ag_node(AG, ag_backward, 1, &theta);
    if (n) n->iarg[0] = N, n->iarg[1] = H, n->iarg[2] = W, n->iarg[3] = align_corners;
    if (n == NULL || vl_ag_attach(y, n) != VL_OK) {
      vl_ag_node_release(n);
      vl_tensor_release(y);
      return NULL;
    }
  }
  return y;
}

/* ------------------------------------------------------------------ */
/* temporal_shift                                                       */
/* ------------------------------------------------------------------ */

#define TS "temporal_shift"

/* dst (zeroed) from src, both contiguous [B,T,C,plane] of esize bytes:
   channels [0, f1) read frame t + dir, [f1, f2) frame t - dir, the rest
   frame t. dir = 1 is the forward shift, -1 its adjoint. */
static void ts_kernel(const char *src, char *dst, int64_t B, int64_t T, int64_t C, int64_t plane, size_t esize,
                      int64_t f1, int64_t f2, int dir) {
  int64_t planes = B * T * C;
  size_t pb = (size_t)plane * esize;
#pragma omp parallel for if (planes * plane > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t i = 0; i < planes; i++) {
    int64_t c = i % C, t = (i / C) % T;
    int64_t dt = c < f1 ? dir : c < f2 ? -dir : 0;
    if (t + dt < 0 || t + dt >= T) continue;
    memcpy(dst + (size_t)i * pb, src + (size_t)(i + dt * C) * pb, pb);
  }
}

static int ts_backward(vl_node *nd, const vl_tensor *go, vl_tensor **gi) {
  vl_tensor *gc = vl_contiguous(go), *gx = gc ? vl_zeros(nd->in_ndim[0], nd->in_shape[0], go->dtype) : NULL;
  if (gx && vl_numel(gx) > 0)
    ts_kernel(vl_data_ptr(gc), vl_data_ptr(gx), nd->iarg[0], nd->iarg[1], nd->iarg[2], nd->iarg[3],
              vl_dtype_size(go->dtype), nd->iarg[4], nd->iarg[5], -1);
  vl_tensor_release(gc);
  if (gx == NULL) return vl_last_status();
  gi[0] = vl_ag_reduce_to(nd, 0, gx);
  return gi[0] ? VL_OK : vl_last_status();
}

vl_tensor *vl_temporal_shift(const vl_tensor *x, int64_t segments, int64_t fold_div) {
  char s1[VL_SHAPE_STR];
  if (x == NULL) return vl_error(VL_EARG, TS ": no input tensor"), NULL;
  if (x->ndim < 2)
    return vl_error(VL_ESHAPE, TS ": expected an input [N*T,C,...] of at least 2 dims, got %d-d %s", x->ndim,
                    vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  if (segments < 1) return vl_error(VL_EARG, TS ": segments must be at least 1, got %lld", (long long)segments), NULL;
  if (fold_div < 1) return vl_error(VL_EARG, TS ": fold_div must be at least 1, got %lld", (long long)fold_div), NULL;
  if (x->shape[0] % segments != 0)
    return vl_error(VL_ESHAPE, TS ": the first dim %lld of input %s is not a multiple of segments = %lld",
                    (long long)x->shape[0], vl_shape_str(x->ndim, x->shape, s1), (long long)segments),
           NULL;
  int64_t T = segments, B = x->shape[0] / T, C = x->shape[1], plane = 1;
  for (int d = 2; d < x->ndim; d++) plane *= x->shape[d]; /* fits: the tensor exists */
  int64_t f1 = C / fold_div, f2 = VL_MIN(2 * f1, C);
  bool need = vl_ag_needed(1, &x);
  bool was = vl_ag_pause();
  vl_tensor *xc = vl_contiguous(x), *y = xc ? vl_zeros(x->ndim, x->shape, x->dtype) : NULL;
  if (y && vl_numel(y) > 0)
    ts_kernel(vl_data_ptr(xc), vl_data_ptr(y), B, T, C, plane, vl_dtype_size(x->dtype), f1, f2, 1);
  vl_tensor_release(xc);
  vl_set_grad_enabled(was);
  if (y == NULL) return NULL;
  if (need) {
    vl_node *n = vl_ag_node(TS, ts_backward, 1, &x);
    if (n) n->iarg[0] = B, n->iarg[1] = T, n->iarg[2] = C, n->iarg[3] = plane, n->iarg[4] = f1, n->iarg[5] = f2;
    if (n == NULL || vl_ag_attach(y, n) != VL_OK) {
      vl_ag_node_release(n);
      vl_tensor_release(y);
      return NULL;
    }
  }
  return y;
}
