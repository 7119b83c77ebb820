/*
** flow_color.c — what is done with a flow field once computed (ops/flow.c
** computes it): vl_flow_to_rgb, Middlebury's colour-wheel picture, and
** vl_flow_epe, the endpoint error against a reference flow.
*/
#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "vl_internal.h"

#define EPE_GRAIN 16384 /* pixels below which the error runs on one thread */

/* ------------------------------------------------------------------ */
/* Colour code and endpoint error                                      */
/* ------------------------------------------------------------------ */

/* Middlebury's 55-colour wheel (colorcode.cpp's makecolorwheel), RGB. */
static int color_wheel(uint8_t wheel[][3]) {
  static const int seg[6] = {15, 6, 4, 11, 13, 6}; /* RY YG GC CB BM MR */
  /* per segment: the channel that ramps, its direction, the two fixed */
  static const int ramp[6] = {1, 0, 2, 1, 0, 2}, up[6] = {1, 0, 1, 0, 1, 0};
  static const uint8_t fixed[6][3] = {{255, 0, 0}, {0, 255, 0}, {0, 255, 0},
                                      {0, 0, 255}, {0, 0, 255}, {255, 0, 0}};
  int k = 0;
  for (int s = 0; s < 6; s++)
    for (int i = 0; i < seg[s]; i++, k++) {
      for (int c = 0; c < 3; c++) wheel[k][c] = fixed[s][c];
      int v = 255 * i / seg[s];
      wheel[k][ramp[s]] = (uint8_t)(up[s] ? v : 255 - v);
    }
  return k;
}

/* Middlebury's "unknown flow": a component above 1e9 or NaN. */
static inline bool flow_unknown(float u, float v) { return !(fabsf(u) <= 1e9f) || !(fabsf(v) <= 1e9f); }

static int flow_check(const char *op, const char *name, const vl_tensor *f) {
  char sb[VL_SHAPE_STR];
  if (f->ndim != 3 || f->shape[2] != 2)
    return vl_error(VL_ESHAPE, "%s: %s has shape %s, expected [H,W,2] (u, v)", op, name,
                    vl_shape_str(f->ndim, f->shape, sb));
  if (f->dtype != VL_FLOAT32 && f->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, "%s: %s must be float32 or float64, got %s", op, name, vl_dtype_name(f->dtype));
  return VL_OK;
}

vl_tensor *vl_flow_to_rgb(const vl_tensor *flow, double max_magnitude) {
  const char *op = "to_rgb";
  if (!flow) {
    vl_error(VL_EARG, "%s: missing flow", op);
    return NULL;
  }
  if (flow_check(op, "flow", flow)) return NULL;
  if (!(max_magnitude >= 0) || !isfinite(max_magnitude)) {
    vl_error(VL_EARG, "%s: max_magnitude %g, expected a finite value > 0 (or none: the largest in the flow)", op,
             max_magnitude);
    return NULL;
  }
  vl_tensor *f = vl_to_dtype(flow, VL_FLOAT32), *fc = f ? vl_contiguous(f) : NULL;
  vl_tensor_release(f);
  if (!fc) return NULL;
  int64_t shape[3] = {flow->shape[0], flow->shape[1], 3};
  vl_tensor *out = vl_empty(3, shape, VL_UINT8);
  if (!out) {
    vl_tensor_release(fc);
    return NULL;
  }
  const int64_t n = shape[0] * shape[1];
  const float *p = vl_data_ptr(fc);
  uint8_t *o = vl_data_ptr(out);
  float maxrad = 0;
  for (int64_t i = 0; i < n; i++)
    if (!flow_unknown(p[2 * i], p[2 * i + 1]))
      maxrad = fmaxf(maxrad, sqrtf(p[2 * i] * p[2 * i] + p[2 * i + 1] * p[2 * i + 1]));
  if (max_magnitude > 0) maxrad = (float)max_magnitude;
  if (maxrad == 0) maxrad = 1;
  uint8_t wheel[55][3];
  const int ncols = color_wheel(wheel);
#pragma omp parallel for schedule(static) if (n > EPE_GRAIN)
  for (int64_t i = 0; i < n; i++) {
    float u = p[2 * i], v = p[2 * i + 1];
    uint8_t *q = o + 3 * i;
    if (flow_unknown(u, v)) {
      q[0] = q[1] = q[2] = 0;
      continue;
    }
    float fx = u / maxrad, fy = v / maxrad;
    float rad = sqrtf(fx * fx + fy * fy);
    if (!isfinite(rad)) rad = 2;  /* inf / inf: out of range */
    float a = (float)(atan2(-fy, -fx) / M_PI);
    float fk = (float)((a + 1.0) / 2.0 * (ncols - 1));
    int k0 = (int)fk;
    if (k0 < 0) k0 = 0;
    if (k0 > ncols - 1) k0 = ncols - 1;
    int k1 = (k0 + 1) % ncols;
    float fr = fk - (float)k0;
    for (int b = 0; b < 3; b++) {
      float c0 = wheel[k0][b] / 255.0f, c1 = wheel[k1][b] / 255.0f;
      float col = (1 - fr) * c0 + fr * c1;
      if (rad <= 1)
        col = 1 - rad * (1 - col);
      else
        col *= .75f;
      double c = 255.0 * col;
      q[b] = (uint8_t)(c < 0 ? 0 : c > 255 ? 255 : (int)c);
    }
  }
  vl_tensor_release(fc);
  return out;
}

vl_tensor *vl_flow_epe(const vl_tensor *flow, const vl_tensor *gt, const vl_tensor *mask, bool per_pixel) {
  const char *op = "epe";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (!flow || !gt) {
    vl_error(VL_EARG, "%s: missing flow", op);
    return NULL;
  }
  if (flow_check(op, "flow", flow) || flow_check(op, "gt", gt)) return NULL;
  if (!vl_same_shape(flow, gt)) {
    vl_error(VL_ESHAPE, "%s: flow %s and gt %s differ in shape, expected the same [H,W,2]", op,
             vl_shape_str(flow->ndim, flow->shape, s1), vl_shape_str(gt->ndim, gt->shape, s2));
    return NULL;
  }
  const int64_t H = flow->shape[0], W = flow->shape[1], n = H * W;
  if (mask) {
    if (mask->ndim != 2 || mask->shape[0] != H || mask->shape[1] != W) {
      vl_error(VL_ESHAPE, "%s: mask has shape %s, expected [%lld,%lld] (the flow's [H,W])", op,
               vl_shape_str(mask->ndim, mask->shape, s1), (long long)H, (long long)W);
      return NULL;
    }
    if (mask->dtype != VL_BOOL && mask->dtype != VL_UINT8) {
      vl_error(VL_EDTYPE, "%s: mask must be bool or uint8, got %s", op, vl_dtype_name(mask->dtype));
      return NULL;
    }
  }
  vl_tensor *a = vl_to_dtype(flow, VL_FLOAT64), *ac = a ? vl_contiguous(a) : NULL;
  vl_tensor *b = vl_to_dtype(gt, VL_FLOAT64), *bc = b ? vl_contiguous(b) : NULL;
  vl_tensor *mc = mask ? vl_contiguous(mask) : NULL;
  vl_tensor_release(a), vl_tensor_release(b);
  vl_tensor *out = NULL;
  if (!ac || !bc || (mask && !mc)) goto done;
  const double *p = vl_data_ptr(ac), *q = vl_data_ptr(bc);
  const uint8_t *mk = mc ? vl_data_ptr(mc) : NULL;
  if (per_pixel) {
    int64_t shape[2] = {H, W};
    out = vl_empty(2, shape, VL_FLOAT32);
    if (!out) goto done;
    float *o = vl_data_ptr(out);
    for (int64_t i = 0; i < n; i++)
      o[i] = (mk && !mk[i]) ? 0.f : (float)hypot(p[2 * i] - q[2 * i], p[2 * i + 1] - q[2 * i + 1]);
  } else {
    double s = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < n; i++)
      if (!mk || mk[i]) s += hypot(p[2 * i] - q[2 * i], p[2 * i + 1] - q[2 * i + 1]), cnt++;
    out = vl_scalar(cnt ? s / (double)cnt : NAN, VL_FLOAT64);
  }
done:
  vl_tensor_release(ac), vl_tensor_release(bc), vl_tensor_release(mc);
  return out;
}
