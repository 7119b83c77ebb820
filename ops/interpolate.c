/*
** interpolate.c — resizing of [N,C,L] and [N,C,H,W] tensors (prefix
** vl_interp / vl_interpolate), as torch.nn.functional.interpolate in
** PyTorch 1.13: nearest (the legacy one: src = floor(dst * scale)),
** linear, bilinear, bicubic (A = -0.75, source indices clamped to the
** border) and area (adaptive average pooling), with align_corners and the
** scale_factor path. Forward and backward side by side.
**
** Every mode is a separable linear map: output (oh, ow) is
**   sum_a wy[oh][a] * sum_b wx[ow][b] * x[iy[oh][a]][ix[ow][b]]
** (area: weights 1 and a division by the window size), so one pair of
** per-axis tables (indices and weights, K taps per output) drives both
** the forward (a gather, in PyTorch's summation order) and the backward
** (the scatter-add of the same weights). A 1-d input is a 2-d one whose
** height axis is the identity.
**
** The tables reproduce PyTorch's arithmetic, including its precision:
** for float32 the scale, source coordinates and weights are computed in
** float (PyTorch's opmath type), for float64 in double; legacy nearest
** floors the coordinate through floorf as PyTorch does. When scale_factor
** is given (and recompute_scale_factor is not), the coordinate mapping
** uses 1/scale_factor, not in/out, as PyTorch does; align_corners uses
** (in-1)/(out-1) whatever was given.
**
** One place where PyTorch 1.13 is not self-consistent: the nearest and
** bicubic backward treat out == in as a copy even when a scale_factor != 1
** made the forward interpolate (e.g. L = 5, scale_factor 1.1: the forward
** reads 0,0,1,2,3). Here the backward is always the adjoint of the
** forward (the forward matches PyTorch).
**
** dtypes: float32 and float64; float16/bfloat16 are computed in float32
** and rounded back; integer and bool tensors are refused. Any layout is
** made contiguous first. Threads: the forward over (plane, output row),
** the backward over planes (planes are independent).
*/
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "vl_internal.h"

#define OP "interpolate"

/* Largest output size per axis: keeps index arithmetic far from int64
   overflow (and memory limits reject big outputs long before). */
#define VL_INTERP_MAX_SIZE ((int64_t)1 << 40)

static const char *const mode_names[] = {"nearest", "linear", "bilinear", "bicubic", "area"};

int vl_interp_mode_from_name(const char *name, vl_interp_mode *out) {
  for (int i = 0; i < 5; i++)
    if (name && strcmp(name, mode_names[i]) == 0) {
      *out = (vl_interp_mode)i;
      return VL_OK;
    }
  return vl_error(VL_EARG,
                  OP ": unknown mode '%s' (expected 'nearest', 'linear', 'bilinear', 'bicubic' or 'area')",
                  name ? name : "(null)");
}

const char *vl_interp_mode_name(vl_interp_mode m) {
  return (unsigned)m < 5 ? mode_names[m] : "?";
}

/* ------------------------------------------------------------------ */
/* Geometry and per-axis tables                                         */
/* ------------------------------------------------------------------ */

typedef struct interp_ctx {
  vl_interp_mode mode;
  bool align;
  int nsp;             /* spatial dims of the input: 1 or 2 */
  int64_t planes;      /* N * C */
  int64_t in[2], out[2];  /* height then width; 1-d: height 1 -> 1 */
  bool has_scale[2];   /* coordinates from 1/scale_factor */
  double scale[2];
} interp_ctx;

typedef struct axis_table {
  int64_t K;           /* taps per output */
  int64_t *idx;        /* [out * K] source positions */
  int64_t *cnt;        /* [out] taps used (area: the window size) */
  double *w;           /* [out * K] weights */
  float *wf;           /* the same in float (float32 kernels) */
} axis_table;

static void table_free(axis_table *t) {
  free(t->idx);
  free(t->cnt);
  free(t->w);
  free(t->wf);
  memset(t, 0, sizeof *t);
}

/* Round through float when the kernel runs in float32: PyTorch computes
   coordinates and weights in the op's opmath type. One rounding of a
   double result of one +,-,*,/ on float values is the float result. */
static inline double R(bool single, double v) { return single ? (double)(float)v : v; }

/* PyTorch's area_pixel_compute_scale. */
static double coord_scale(bool single, int64_t in, int64_t out, bool align, bool has_sf, double sf) {
  if (align) return out > 1 ? R(single, R(single, (double)(in - 1)) / R(single, (double)(out - 1))) : 0.0;
  if (has_sf && sf > 0) return R(single, 1.0 / sf);
  return R(single, R(single, (double)in) / R(single, (double)out));
}

/* PyTorch's area_pixel_compute_source_index. */
static double src_index(bool single, double scale, int64_t i, bool align, bool cubic) {
  if (align) return R(single, scale * R(single, (double)i));
  double s = R(single, scale * ((double)i + 0.5) - 0.5);
  return (!cubic && s < 0) ? 0.0 : s;
}

/* PyTorch's cubic convolution weights for t in [0, 1), A = -0.75,
   evaluated in the opmath type. */
static double cc1(bool single, double x) { /* ((A + 2) x - (A + 3)) x x + 1 */
  double u = R(single, 1.25 * x);
  u = R(single, u - 2.25);
  u = R(single, u * x);
  u = R(single, u * x);
  return R(single, u + 1.0);
}

static double cc2(bool single, double x) { /* ((A x - 5A) x + 8A) x - 4A */
  double u = R(single, -0.75 * x);
  u = R(single, u + 3.75);
  u = R(single, u * x);
  u = R(single, u - 6.0);
  u = R(single, u * x);
  return R(single, u + 3.0);
}

static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Adaptive pooling windows [start, end) (PyTorch's start_index/end_index,
   without overflow: the caller checked in * out fits). */
static inline int64_t ad_start(int64_t i, int64_t in, int64_t out) { return (i / out) * in + ((i % out) * in) / out; }
static inline int64_t ad_end(int64_t i, int64_t in, int64_t out) { return 1 + ((i + 1) * in - 1) / out; }

/* The table of axis d (0: height, 1: width). A 1-d input's height axis
   is the identity. */
static int axis_build(const interp_ctx *c, int d, bool single, axis_table *t) {
  int64_t in = c->in[d], out = c->out[d];
  bool identity = (c->nsp == 1 && d == 0);
  vl_interp_mode m = identity ? VL_INTERP_NEAREST : c->mode;
  int64_t K = 1;
  if (m == VL_INTERP_LINEAR || m == VL_INTERP_BILINEAR) K = 2;
  if (m == VL_INTERP_BICUBIC) K = 4;
  if (m == VL_INTERP_AREA) K = (in + out - 1) / out + 1;  /* no window is longer */
  memset(t, 0, sizeof *t);
  t->K = K;
  size_t n = (size_t)(out * K);
  t->idx = malloc(n * sizeof *t->idx);
  t->w = malloc(n * sizeof *t->w);
  t->wf = malloc(n * sizeof *t->wf);
  t->cnt = malloc((size_t)out * sizeof *t->cnt);
  if (!t->idx || !t->w || !t->wf || !t->cnt) {
    table_free(t);
    return vl_error(VL_ENOMEM, OP ": out of memory for the index tables (%lld outputs, %lld taps)", (long long)out,
                    (long long)K);
  }
  double scale = coord_scale(single, in, out, c->align, c->has_scale[d], c->scale[d]);
  for (int64_t i = 0; i < out; i++) {
    int64_t *ix = t->idx + i * K;
    double *w = t->w + i * K;
    t->cnt[i] = K;
    if (identity) {
      ix[0] = 0, w[0] = 1;
      continue;
    }
    switch (m) {
      case VL_INTERP_NEAREST: {
        /* HelperInterpNearest: floorf(scale * i), the legacy nearest */
        double real = src_index(single, scale, i, true, false);
        int64_t k = real < 16777216.0 ? (int64_t)floorf((float)real) : (int64_t)floor(real);
        ix[0] = VL_MIN(k, in - 1), w[0] = 1;
        break;
      }
      case VL_INTERP_LINEAR:
      case VL_INTERP_BILINEAR: {
        if (in == out) { /* PyTorch copies when the sizes agree */
          ix[0] = ix[1] = i, w[0] = 1, w[1] = 0;
          break;
        }
        double real = src_index(single, scale, i, c->align, false);
        int64_t i0 = (int64_t)real;
        double l1 = R(single, real - R(single, (double)i0));
        l1 = l1 < 0 ? 0 : l1 > 1 ? 1 : l1;
        ix[0] = i0, ix[1] = i0 + (i0 < in - 1 ? 1 : 0);
        w[0] = R(single, 1.0 - l1), w[1] = l1;
        break;
      }
      case VL_INTERP_BICUBIC: {
        double real = src_index(single, scale, i, c->align, true);
        int64_t i0 = (int64_t)floor(real);
        double tt = R(single, real - R(single, (double)i0));
        double x2 = R(single, 1.0 - tt);
        w[0] = cc2(single, R(single, tt + 1.0));
        w[1] = cc1(single, tt);
        w[2] = cc1(single, x2);
        w[3] = cc2(single, R(single, x2 + 1.0));
        for (int j = 0; j < 4; j++) ix[j] = clamp64(i0 - 1 + j, 0, in - 1);
        break;
      }
      case VL_INTERP_AREA: {
        int64_t s = ad_start(i, in, out), e = ad_end(i, in, out);
        t->cnt[i] = e - s;
        for (int64_t j = 0; j < K; j++) ix[j] = j < e - s ? s + j : s, w[j] = j < e - s ? 1 : 0;
        break;
      }
    }
  }
  for (size_t k = 0; k < n; k++) t->wf[k] = (float)t->w[k];
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Kernels                                                              */
/* ------------------------------------------------------------------ */

/* Forward over (plane, output row); T the compute type, W its weights. */
#define INTERP_FORWARD(T, W)                                                                              \
  do {                                                                                                    \
    const T *xs = (const T *)xv;                                                                          \
    T *ys = (T *)yv;                                                                                      \
    _Pragma("omp parallel for if (rows * OW * ty->K * tx->K > VL_PARALLEL_GRAIN) schedule(static)")      \
    for (int64_t r = 0; r < rows; r++) {                                                                  \
      int64_t p = r / OH, oh = r % OH;                                                                    \
      const T *xp = xs + p * IH * IW;                                                                     \
      T *yp = ys + p * OH * OW + oh * OW;                                                                 \
      const int64_t *iy = ty->idx + oh * ty->K, ny = ty->cnt[oh];                                         \
      const W *wy = ty->W_FIELD + oh * ty->K;                                                             \
      if (nearest) { /* a gather */                                                                       \
        const T *row = xp + iy[0] * IW;                                                                   \
        for (int64_t ow = 0; ow < OW; ow++) yp[ow] = row[tx->idx[ow]];                                    \
        continue;                                                                                         \
      }                                                                                                   \
      for (int64_t ow = 0; ow < OW; ow++) {                                                               \
        const int64_t *ix = tx->idx + ow * tx->K, nx = tx->cnt[ow];                                       \
        const W *wx = tx->W_FIELD + ow * tx->K;                                                           \
        T acc = 0;                                                                                        \
        for (int64_t a = 0; a < ny; a++) {                                                                \
          const T *row = xp + iy[a] * IW;                                                                 \
          T s = row[ix[0]] * wx[0]; /* first term alone: keeps -0.0, as PyTorch */                        \
          for (int64_t b = 1; b < nx; b++) s += row[ix[b]] * wx[b];                                       \
          acc = a == 0 ? s * wy[0] : acc + s * wy[a];                                                     \
        }                                                                                                 \
        if (area) acc /= (T)(ny * nx);                                                                    \
        yp[ow] = acc;                                                                                     \
      }                                                                                                   \
    }                                                                                                     \
  } while (0)

static void interp_forward(const interp_ctx *c, const axis_table *ty, const axis_table *tx, vl_dtype dt,
                           const void *xv, void *yv) {
  int64_t IH = c->in[0], IW = c->in[1], OH = c->out[0], OW = c->out[1];
  int64_t rows = c->planes * OH;
  bool area = c->mode == VL_INTERP_AREA, nearest = c->mode == VL_INTERP_NEAREST;
  if (dt == VL_FLOAT32) {
#define W_FIELD wf
    INTERP_FORWARD(float, float);
#undef W_FIELD
  } else {
#define W_FIELD w
    INTERP_FORWARD(double, double);
#undef W_FIELD
  }
}

/* Backward: gx (zeroed) += the adjoint of the forward, per plane. */
#define INTERP_BACKWARD(T, W)                                                                             \
  do {                                                                                                    \
    const T *gs = (const T *)gv;                                                                          \
    T *gxs = (T *)gxv;                                                                                    \
    _Pragma("omp parallel for if (c->planes * OH * OW * ty->K * tx->K > VL_PARALLEL_GRAIN) schedule(static)") \
    for (int64_t p = 0; p < c->planes; p++) {                                                             \
      T *gxp = gxs + p * IH * IW;                                                                         \
      const T *gp = gs + p * OH * OW;                                                                     \
      for (int64_t oh = 0; oh < OH; oh++) {                                                               \
        const int64_t *iy = ty->idx + oh * ty->K, ny = ty->cnt[oh];                                       \
        const W *wy = ty->W_FIELD + oh * ty->K;                                                           \
        for (int64_t ow = 0; ow < OW; ow++) {                                                             \
          const int64_t *ix = tx->idx + ow * tx->K, nx = tx->cnt[ow];                                     \
          const W *wx = tx->W_FIELD + ow * tx->K;                                                         \
          T v = gp[oh * OW + ow];                                                                         \
          if (area) v /= (T)(ny * nx);                                                                    \
          for (int64_t a = 0; a < ny; a++) {                                                              \
            T *row = gxp + iy[a] * IW;                                                                    \
            T va = v * wy[a];                                                                             \
            for (int64_t b = 0; b < nx; b++) row[ix[b]] += va * wx[b];                                    \
          }                                                                                               \
        }                                                                                                 \
      }                                                                                                   \
    }                                                                                                     \
  } while (0)

static void interp_backward_kernel(const interp_ctx *c, const axis_table *ty, const axis_table *tx, vl_dtype dt,
                                   const void *gv, void *gxv) {
  int64_t IH = c->in[0], IW = c->in[1], OH = c->out[0], OW = c->out[1];
  bool area = c->mode == VL_INTERP_AREA;
  if (dt == VL_FLOAT32) {
#define W_FIELD wf
    INTERP_BACKWARD(float, float);
#undef W_FIELD
  } else {
#define W_FIELD w
    INTERP_BACKWARD(double, double);
#undef W_FIELD
  }
}

/* Both tables for a context; VL_OK or an error (nothing to free then). */
static int tables(const interp_ctx *c, bool single, axis_table *ty, axis_table *tx) {
  if (axis_build(c, 0, single, ty) != VL_OK) return vl_last_status();
  if (axis_build(c, 1, single, tx) != VL_OK) {
    table_free(ty);
    return vl_last_status();
  }
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Op                                                                   */
/* ------------------------------------------------------------------ */

static vl_dtype compute_dtype(vl_dtype dt) { return dt == VL_FLOAT64 ? VL_FLOAT64 : VL_FLOAT32; }

/* A contiguous copy in dtype cdt (or t itself, retained). */
static vl_tensor *working(const vl_tensor *t, vl_dtype cdt) {
  vl_tensor *c = vl_to_dtype(t, cdt);
  if (c == NULL) return NULL;
  vl_tensor *r = vl_contiguous(c);
  vl_tensor_release(c);
  return r;
}

static int interp_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  const interp_ctx *c = nd->extra;
  vl_dtype dt = compute_dtype(nd->in_dtype[0]);
  axis_table ty = {0}, tx = {0};
  if (c->planes > 0 && tables(c, dt == VL_FLOAT32, &ty, &tx) != VL_OK) return vl_last_status();
  vl_tensor *gc = working(g, dt);
  vl_tensor *gx = gc ? vl_zeros(nd->in_ndim[0], nd->in_shape[0], dt) : NULL;
  if (gx != NULL && c->planes > 0) interp_backward_kernel(c, &ty, &tx, dt, vl_data_ptr(gc), vl_data_ptr(gx));
  table_free(&ty);
  table_free(&tx);
  vl_tensor_release(gc);
  if (gx == NULL) return vl_last_status();
  gi[0] = vl_ag_reduce_to(nd, 0, gx);
  return gi[0] ? VL_OK : vl_last_status();
}

/* Runs a batched input [N,C,L] / [N,C,H,W] with a filled context. */
static vl_tensor *interp_run(const vl_tensor *x, const interp_ctx *c) {
  bool need = vl_ag_needed(1, &x);
  vl_dtype dt = compute_dtype(x->dtype);
  int64_t yshape[4] = {x->shape[0], x->shape[1], c->out[0], c->out[1]};
  if (c->nsp == 1) yshape[2] = c->out[1];
  int yndim = 2 + c->nsp;
  size_t nbytes;
  if (vl_shape_nbytes(OP, yndim, yshape, x->dtype, &nbytes) != VL_OK) return NULL;
  /* the output first: an oversized one fails here, before the tables */
  axis_table ty = {0}, tx = {0};
  bool was = vl_is_grad_enabled();
  vl_set_grad_enabled(false);
  vl_tensor *xc = working(x, dt), *y = xc ? vl_empty(yndim, yshape, dt) : NULL;
  int rc = y ? VL_OK : vl_last_status();
  if (xc && !y) {  /* say whose allocation failed */
    char msg[VL_ERROR_MAX], s1[VL_SHAPE_STR];
    snprintf(msg, sizeof msg, "%s", vl_last_error());
    rc = vl_error(rc, OP ": output %s: %s", vl_shape_str(yndim, yshape, s1), msg);
  }
  if (rc == VL_OK && c->planes > 0) rc = tables(c, dt == VL_FLOAT32, &ty, &tx);
  if (rc == VL_OK) {
    if (c->planes > 0) interp_forward(c, &ty, &tx, dt, vl_data_ptr(xc), vl_data_ptr(y));
    if (dt != x->dtype) {
      vl_tensor *r = vl_to_dtype(y, x->dtype);
      vl_tensor_release(y);
      y = r;
      if (y == NULL) rc = vl_last_status();
    }
  }
  vl_set_grad_enabled(was);
  vl_tensor_release(xc);
  table_free(&ty);
  table_free(&tx);
  if (rc == VL_OK && need) {
    vl_node *n = vl_ag_node(OP, interp_backward, 1, &x);
    interp_ctx *cc = n ? malloc(sizeof *cc) : NULL;
    if (cc) {
      *cc = *c;
      n->extra = cc, n->free_extra = free;
    }
    if (n == NULL || cc == NULL || vl_ag_attach(y, n) != VL_OK) {
      if (n && cc == NULL) vl_error(VL_ENOMEM, OP ": out of memory for the autograd node");
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

/* Output size of one axis from a scale factor, as PyTorch: the product
   in double, truncated. */
static int size_from_scale(int64_t in, double sf, int axis, int64_t *out) {
  if (!(sf > 0) || !isfinite(sf))
    return vl_error(VL_EARG, OP ": scale_factor must be positive and finite, got %g (spatial dim %d)", sf, axis);
  double v = (double)in * sf;
  if (v >= (double)VL_INTERP_MAX_SIZE)
    return vl_error(VL_EARG, OP ": scale_factor %g on input size %lld gives an output size of %g, at most %lld allowed",
                    sf, (long long)in, floor(v), (long long)VL_INTERP_MAX_SIZE - 1);
  *out = (int64_t)v;
  if (*out < 1)
    return vl_error(VL_EARG, OP ": scale_factor %g on input size %lld gives an output size of 0 (expected at least 1)",
                    sf, (long long)in);
  return VL_OK;
}

vl_tensor *vl_interpolate(const vl_tensor *x, vl_interp_mode mode, int n, const int64_t *size,
                          const double *scale_factor, bool align_corners, bool recompute_scale_factor) {
  char s1[VL_SHAPE_STR];
  if (x == NULL) return vl_error(VL_EARG, OP ": no input tensor"), NULL;
  if ((unsigned)mode > VL_INTERP_AREA) return vl_error(VL_EARG, OP ": unknown mode %d", (int)mode), NULL;
  const char *mname = mode_names[mode];
  if (!vl_dtype_is_float(x->dtype))
    return vl_error(VL_EDTYPE, OP ": expected a floating-point input, got %s (convert it with :to(\"float32\"))",
                    vl_dtype_name(x->dtype)),
           NULL;
  /* spatial dims and batching */
  int nsp, nd = x->ndim;
  bool unbatched = false;
  if (mode == VL_INTERP_LINEAR) {
    nsp = 1;
    if (nd != 3 && nd != 2)
      return vl_error(VL_ESHAPE, OP ": mode 'linear' expects a 3-d input [N,C,L] (or 2-d [C,L]), got %d-d %s", nd,
                      vl_shape_str(nd, x->shape, s1)),
             NULL;
    unbatched = nd == 2;
  } else if (mode == VL_INTERP_BILINEAR || mode == VL_INTERP_BICUBIC) {
    nsp = 2;
    if (nd != 4 && nd != 3)
      return vl_error(VL_ESHAPE, OP ": mode '%s' expects a 4-d input [N,C,H,W] (or 3-d [C,H,W]), got %d-d %s",
                      mname, nd, vl_shape_str(nd, x->shape, s1)),
             NULL;
    unbatched = nd == 3;
  } else {
    if (nd != 3 && nd != 4)
      return vl_error(VL_ESHAPE, OP ": mode '%s' expects a 3-d input [N,C,L] or a 4-d input [N,C,H,W], got %d-d %s",
                      mname, nd, vl_shape_str(nd, x->shape, s1)),
             NULL;
    nsp = nd - 2;
  }
  if (align_corners && (mode == VL_INTERP_NEAREST || mode == VL_INTERP_AREA))
    return vl_error(VL_EARG, OP ": align_corners can only be set with the modes 'linear', 'bilinear' and 'bicubic', "
                    "not '%s'", mname),
           NULL;
  if ((size == NULL) == (scale_factor == NULL))
    return vl_error(VL_EARG, OP ": %s", size ? "give either size or scale_factor, not both"
                                             : "give either size or scale_factor"),
           NULL;
  if (n != 1 && n != nsp)
    return vl_error(VL_EARG, OP ": %s has %d entries for %d spatial dim%s of the %s input %s (mode '%s')",
                    size ? "size" : "scale_factor", n, nsp, nsp > 1 ? "s" : "", unbatched ? "unbatched" : "batched",
                    vl_shape_str(nd, x->shape, s1), mname),
           NULL;
  if (size && recompute_scale_factor)
    return vl_error(VL_EARG, OP ": recompute_scale_factor is only meaningful with scale_factor, not size"), NULL;
  const int64_t *sp = x->shape + (unbatched ? 1 : 2);  /* spatial sizes */
  int64_t C = x->shape[unbatched ? 0 : 1], N = unbatched ? 1 : x->shape[0];
  if (C == 0 || sp[0] == 0 || (nsp == 2 && sp[1] == 0))
    return vl_error(VL_ESHAPE, OP ": expected non-empty channel and spatial dims, got input %s",
                    vl_shape_str(nd, x->shape, s1)),
           NULL;

  interp_ctx c = {.mode = mode, .align = align_corners, .nsp = nsp, .in = {1, 1}, .out = {1, 1}};
  for (int d = 0; d < nsp; d++) {
    int ax = 2 - nsp + d;  /* 1-d: the width axis */
    int64_t in = sp[d], out = 1;
    c.in[ax] = in;
    if (size) {
      out = size[n == 1 ? 0 : d];
      if (out < 1 || out >= VL_INTERP_MAX_SIZE) {
        vl_error(VL_EARG, OP ": output size must be between 1 and %lld, got %lld (spatial dim %d)",
                 (long long)VL_INTERP_MAX_SIZE - 1, (long long)out, d + 1);
        return NULL;
      }
    } else {
      double sf = scale_factor[n == 1 ? 0 : d];
      if (size_from_scale(in, sf, d + 1, &out) != VL_OK) return NULL;
      /* area always recomputes (PyTorch): it pools to the output size */
      c.has_scale[ax] = !recompute_scale_factor;
      c.scale[ax] = sf;
    }
    if (mode == VL_INTERP_AREA && out > INT64_MAX / in)
      return vl_error(VL_EARG, OP ": sizes too large for area mode (input %lld, output %lld)", (long long)in,
                      (long long)out),
             NULL;
    c.out[ax] = out;
  }
  if (N > 0 && C > INT64_MAX / N) return vl_error(VL_ENOMEM, OP ": batch too large"), NULL;
  c.planes = N * C;

  if (!unbatched) return interp_run(x, &c);
  vl_tensor *xb = vl_unsqueeze(x, 0);
  if (xb == NULL) return NULL;
  vl_tensor *y = interp_run(xb, &c);
  vl_tensor_release(xb);
  if (y == NULL) return NULL;
  vl_tensor *r = vl_squeeze(y, 0);
  vl_tensor_release(y);
  return r;
}
