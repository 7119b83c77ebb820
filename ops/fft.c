/*
** fft.c — discrete Fourier transforms along one dim (prefix vl_fft /
** vl_ifft / vl_rfft / vl_irfft), as torch.fft in PyTorch 1.13, with their
** backward passes side by side. Our own code: no FFTW.
**
** vl has no complex dtype: a complex tensor is a real one (float32 or
** float64) whose last dim has size 2 (real, imaginary), like
** torch.view_as_real. fft/ifft take and give such pairs; rfft takes a real
** tensor and gives pairs; irfft takes pairs and gives a real tensor.
**
** Transforms: a complex-to-complex radix-2 iterative FFT (bit reversal,
** then log2 m butterfly passes with a table of exact twiddles) for
** power-of-two sizes, and Bluestein's chirp-z algorithm for every other
** size (the DFT written as a convolution with the chirp exp(s i pi j^2/n),
** done by power-of-two FFTs of size m >= 2n - 1; j^2 is reduced mod 2n
** before the angle is formed, so large sizes keep their precision). All
** arithmetic is in float64; float32 tensors are read and written as such.
** Real transforms run the complex FFT of the full length (no half-length
** packing): simple and exact, twice the work of a specialised one.
**
** Every "line" along the transformed dim is gathered through the input's
** strides into a per-thread float64 buffer, transformed, and scattered
** into the contiguous output; lines run in parallel (OpenMP).
**
** One core serves the four transforms and their backwards:
**   C2C  complex in, complex out (fft: sign -1, ifft: sign +1)
**   R2C  real in, the first out_len bins out (rfft; with Hermitian
**        weights w_k = 1 for k = 0 and k = n/2, 2 otherwise, 0 past n/2:
**        the backward of irfft)
**   C2R  complex bins in, real part of the inverse out (irfft when the
**        spectrum is completed by Hermitian symmetry, imaginary parts of
**        bin 0 and bin n/2 ignored; without it: the backward of rfft)
** Each reads min(input length, n) (irfft: n/2 + 1) points, zero-pads to
** n, and writes min(out_len, n) values, zero past them.
**
** Gradients (real-imaginary pairs as independent reals): the adjoint of
** x -> scale * F_s x is g -> scale * F_{-s} g; of rfft: the real part of
** the inverse of the bins zero-padded to n; of irfft: the rfft of g with
** the Hermitian weights. Input trimming / padding by n transposes to
** padding / trimming back to the input's length.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "autograd.h"
#include "vl_internal.h"

/* Largest transform length: keeps m = 2^ceil(log2(2n - 1)) and every
   index product far from int64 overflow. */
#define VL_FFT_MAX_N ((int64_t)1 << 40)

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ------------------------------------------------------------------ */
/* Plans                                                                */
/* ------------------------------------------------------------------ */

typedef struct fft_plan {
  int64_t n;       /* transform length */
  int64_t m;       /* radix-2 length: n, or Bluestein's padded length */
  int sign;        /* -1: exp(-2 pi i jk/n) (forward), +1 (inverse, unscaled) */
  double *tw;      /* m/2 twiddles exp(-2 pi i k/m), interleaved (re, im) */
  double *chirp;   /* Bluestein: n values exp(sign i pi k^2/n) */
  double *bf;      /* Bluestein: forward FFT (size m) of conj(chirp), wrapped */
} fft_plan;

static bool is_pow2(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

static void radix2(double *restrict a, int64_t m, const double *restrict tw, int sign) {
  if (m <= 1) return;
  for (int64_t i = 1, j = 0; i < m; i++) { /* bit reversal */
    int64_t bit = m >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      double tr = a[2 * i], ti = a[2 * i + 1];
      a[2 * i] = a[2 * j], a[2 * i + 1] = a[2 * j + 1];
      a[2 * j] = tr, a[2 * j + 1] = ti;
    }
  }
  for (int64_t len = 2; len <= m; len <<= 1) {
    int64_t half = len >> 1, step = m / len;
    for (int64_t i = 0; i < m; i += len) {
      for (int64_t j = 0; j < half; j++) {
        double wr = tw[2 * j * step], wi = sign < 0 ? tw[2 * j * step + 1] : -tw[2 * j * step + 1];
        double *p = a + 2 * (i + j), *q = a + 2 * (i + j + half);
        double xr = q[0] * wr - q[1] * wi, xi = q[0] * wi + q[1] * wr;
        q[0] = p[0] - xr, q[1] = p[1] - xi;
        p[0] += xr, p[1] += xi;
      }
    }
  }
}

static void plan_free(fft_plan *p) {
  free(p->tw);
  free(p->chirp);
  free(p->bf);
  p->tw = p->chirp = p->bf = NULL;
}

static int plan_init(const char *op, fft_plan *p, int64_t n, int sign) {
  memset(p, 0, sizeof *p);
  p->n = n, p->sign = sign;
  int64_t m = 1;
  if (is_pow2(n)) {
    m = n;
  } else {
    while (m < 2 * n - 1) m <<= 1;
  }
  p->m = m;
  p->tw = malloc(sizeof(double) * (size_t)(m > 1 ? m : 2));
  if (p->tw == NULL) return vl_error(VL_ENOMEM, "%s: out of memory for the twiddles of length %lld", op, (long long)m);
  for (int64_t k = 0; k < m / 2; k++) {
    double ang = -2.0 * M_PI * (double)k / (double)m;
    p->tw[2 * k] = cos(ang), p->tw[2 * k + 1] = sin(ang);
  }
  if (m == n) return VL_OK;
  p->chirp = malloc(sizeof(double) * 2 * (size_t)n);
  p->bf = calloc(2 * (size_t)m, sizeof(double));
  if (p->chirp == NULL || p->bf == NULL) {
    plan_free(p);
    return vl_error(VL_ENOMEM, "%s: out of memory for a Bluestein plan of length %lld (padded %lld)", op,
                    (long long)n, (long long)m);
  }
  int64_t q = 0; /* k^2 mod 2n */
  for (int64_t k = 0; k < n; k++) {
    double ang = (double)sign * M_PI * (double)q / (double)n;
    p->chirp[2 * k] = cos(ang), p->chirp[2 * k + 1] = sin(ang);
    q = (q + 2 * k + 1) % (2 * n);
  }
  p->bf[0] = p->chirp[0], p->bf[1] = -p->chirp[1];
  for (int64_t k = 1; k < n; k++) {
    p->bf[2 * k] = p->bf[2 * (m - k)] = p->chirp[2 * k];
    p->bf[2 * k + 1] = p->bf[2 * (m - k) + 1] = -p->chirp[2 * k + 1];
  }
  radix2(p->bf, m, p->tw, -1);
  return VL_OK;
}

/* Doubles of scratch a thread needs besides its n-point buffer. */
static size_t plan_scratch(const fft_plan *p) { return p->m == p->n ? 0 : 2 * (size_t)p->m; }

/* In-place unscaled DFT of n complex values in x. */
static void plan_exec(const fft_plan *p, double *restrict x, double *restrict s) {
  if (p->m == p->n) {
    radix2(x, p->n, p->tw, p->sign);
    return;
  }
  int64_t n = p->n, m = p->m;
  const double *c = p->chirp;
  for (int64_t j = 0; j < n; j++) {
    s[2 * j] = x[2 * j] * c[2 * j] - x[2 * j + 1] * c[2 * j + 1];
    s[2 * j + 1] = x[2 * j] * c[2 * j + 1] + x[2 * j + 1] * c[2 * j];
  }
  memset(s + 2 * n, 0, sizeof(double) * 2 * (size_t)(m - n));
  radix2(s, m, p->tw, -1);
  for (int64_t k = 0; k < m; k++) {
    double ar = s[2 * k], ai = s[2 * k + 1], br = p->bf[2 * k], bi = p->bf[2 * k + 1];
    s[2 * k] = ar * br - ai * bi, s[2 * k + 1] = ar * bi + ai * br;
  }
  radix2(s, m, p->tw, +1);
  double inv = 1.0 / (double)m;
  for (int64_t k = 0; k < n; k++) {
    double ar = s[2 * k] * inv, ai = s[2 * k + 1] * inv;
    x[2 * k] = ar * c[2 * k] - ai * c[2 * k + 1];
    x[2 * k + 1] = ar * c[2 * k + 1] + ai * c[2 * k];
  }
}

/* ------------------------------------------------------------------ */
/* The core                                                             */
/* ------------------------------------------------------------------ */

typedef enum fft_kind { K_C2C, K_R2C, K_C2R } fft_kind;

static double load(const void *base, vl_dtype dt, int64_t off) {
  return dt == VL_FLOAT64 ? ((const double *)base)[off] : (double)((const float *)base)[off];
}

static void store(void *base, vl_dtype dt, int64_t off, double v) {
  if (dt == VL_FLOAT64)
    ((double *)base)[off] = v;
  else
    ((float *)base)[off] = (float)v;
}

/* x: complex ([..., 2]) for C2C and C2R, real for R2C; dim: 0-based among
   the logical dims (those before the pair dim). herm: C2R completes the
   spectrum by symmetry; R2C applies the Hermitian weights. */
static vl_tensor *fft_core(const char *op, fft_kind kind, const vl_tensor *x, int dim, int64_t n, int sign,
                           double scale, int64_t out_len, bool herm) {
  bool cin = kind != K_R2C, cout = kind != K_C2R;
  int lnd = cin ? x->ndim - 1 : x->ndim;
  int64_t oshape[VL_MAX_DIMS];
  for (int d = 0; d < lnd; d++) oshape[d] = x->shape[d];
  oshape[dim] = out_len;
  int ond = lnd;
  if (cout) oshape[ond++] = 2;
  vl_tensor *y = vl_empty(ond, oshape, x->dtype);
  if (y == NULL) {
    char msg[VL_ERROR_MAX], s1[VL_SHAPE_STR];
    snprintf(msg, sizeof msg, "%s", vl_last_error());
    vl_error(vl_last_status(), "%s: output %s: %s", op, vl_shape_str(ond, oshape, s1), msg);
    return NULL;
  }
  int64_t nlines = 1;
  for (int d = 0; d < lnd; d++)
    if (d != dim) nlines *= x->shape[d];
  if (vl_numel(y) == 0) return y;
  if (nlines == 0) return y;

  fft_plan plan;
  if (plan_init(op, &plan, n, sign) != VL_OK) {
    vl_tensor_release(y);
    return NULL;
  }
  int nthreads = omp_get_max_threads();
  size_t per = 2 * (size_t)n + plan_scratch(&plan);
  if ((double)per * nlines * 4 < VL_PARALLEL_GRAIN || nlines == 1) nthreads = 1;
  if ((int64_t)nthreads > nlines) nthreads = (int)nlines;
  double *scratch = malloc(sizeof(double) * per * (size_t)nthreads);
  if (scratch == NULL) {
    plan_free(&plan);
    vl_tensor_release(y);
    vl_error(VL_ENOMEM, "%s: out of memory for %d scratch buffers of %zu doubles", op, nthreads, per);
    return NULL;
  }

  /* the other dims, with input and output strides */
  int no = 0;
  int64_t osz[VL_MAX_DIMS], ist[VL_MAX_DIMS], ost[VL_MAX_DIMS];
  for (int d = 0; d < lnd; d++)
    if (d != dim) osz[no] = x->shape[d], ist[no] = x->stride[d], ost[no] = y->stride[d], no++;
  int64_t in_len = x->shape[dim], in_st = x->stride[dim], out_st = y->stride[dim];
  int64_t ipair = cin ? x->stride[x->ndim - 1] : 0;
  int64_t read_max = (kind == K_C2R && herm) ? n / 2 + 1 : n;
  int64_t nread = in_len < read_max ? in_len : read_max;
  int64_t nwrite_max = (kind == K_R2C && herm) ? n / 2 + 1 : n;
  int64_t nwrite = out_len < nwrite_max ? out_len : nwrite_max;
  const void *xb = vl_data_ptr(x);
  void *yb = vl_data_ptr(y);
  vl_dtype dt = x->dtype;

#pragma omp parallel num_threads(nthreads)
  {
    double *buf = scratch + per * (size_t)omp_get_thread_num();
    double *s = buf + 2 * n;
#pragma omp for schedule(static)
    for (int64_t l = 0; l < nlines; l++) {
      int64_t io = 0, oo = 0, r = l;
      for (int k = no - 1; k >= 0; k--) {
        int64_t i = r % osz[k];
        r /= osz[k];
        io += i * ist[k], oo += i * ost[k];
      }
      memset(buf, 0, sizeof(double) * 2 * (size_t)n);
      for (int64_t j = 0; j < nread; j++) {
        int64_t off = io + j * in_st;
        buf[2 * j] = load(xb, dt, off);
        buf[2 * j + 1] = cin ? load(xb, dt, off + ipair) : 0.0;
      }
      if (kind == K_C2R && herm) {
        buf[1] = 0.0;
        if (n % 2 == 0 && nread > n / 2) buf[n + 1] = 0.0; /* imag of bin n/2 */
        for (int64_t k = 1; k < (n + 1) / 2; k++) buf[2 * (n - k)] = buf[2 * k], buf[2 * (n - k) + 1] = -buf[2 * k + 1];
      }
      plan_exec(&plan, buf, s);
      for (int64_t k = 0; k < out_len; k++) {
        int64_t off = oo + k * out_st;
        double re = 0.0, im = 0.0;
        if (k < nwrite) {
          double w = scale;
          if (kind == K_R2C && herm && !(k == 0 || (n % 2 == 0 && k == n / 2))) w *= 2.0;
          re = buf[2 * k] * w, im = buf[2 * k + 1] * w;
        }
        store(yb, dt, off, re);
        if (cout) store(yb, dt, off + 1, im);
      }
    }
  }
  free(scratch);
  plan_free(&plan);
  return y;
}

/* ------------------------------------------------------------------ */
/* Ops and their backwards                                              */
/* ------------------------------------------------------------------ */

int vl_fft_norm_from_name(const char *name, vl_fft_norm *out) {
  static const char *const names[] = {"backward", "ortho", "forward"};
  for (int i = 0; i < 3; i++)
    if (name && strcmp(name, names[i]) == 0) {
      *out = (vl_fft_norm)i;
      return VL_OK;
    }
  return vl_error(VL_EARG, "fft: unknown norm '%s' (expected 'backward', 'ortho' or 'forward')", name ? name : "(null)");
}

/* The scale of a transform of length n: inverse says whether it is the
   inverse-direction one (ifft, irfft). */
static double norm_scale(vl_fft_norm norm, int64_t n, bool inverse) {
  switch (norm) {
  case VL_FFT_NORM_ORTHO: return 1.0 / sqrt((double)n);
  case VL_FFT_NORM_FORWARD: return inverse ? 1.0 : 1.0 / (double)n;
  default: return inverse ? 1.0 / (double)n : 1.0;
  }
}

/* iarg: 0 kind, 1 dim, 2 n, 3 sign, 4 input length along dim; arg 0 scale. */
static int fft_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  fft_kind kind = (fft_kind)nd->iarg[0];
  int dim = (int)nd->iarg[1], sign = (int)nd->iarg[3];
  int64_t n = nd->iarg[2], in_len = nd->iarg[4];
  double scale = nd->arg[0];
  vl_dtype dt = nd->in_dtype[0] == VL_FLOAT64 ? VL_FLOAT64 : VL_FLOAT32;
  vl_tensor *gc = vl_to_dtype(g, dt);
  if (gc == NULL) return vl_last_status();
  vl_tensor *gx = NULL;
  switch (kind) {
  case K_C2C: gx = fft_core(nd->name, K_C2C, gc, dim, n, -sign, scale, in_len, false); break;
  case K_R2C: gx = fft_core(nd->name, K_C2R, gc, dim, n, -sign, scale, in_len, false); break;
  case K_C2R: gx = fft_core(nd->name, K_R2C, gc, dim, n, -sign, scale, in_len, true); break;
  }
  vl_tensor_release(gc);
  if (gx == NULL) return vl_last_status();
  gi[0] = vl_ag_reduce_to(nd, 0, gx);
  return gi[0] ? VL_OK : vl_last_status();
}

static vl_tensor *fft_op(const char *op, fft_kind kind, const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm,
                         int sign, bool inverse) {
  char s1[VL_SHAPE_STR];
  if (x == NULL) return vl_error(VL_EARG, "%s: no input tensor", op), NULL;
  if (x->dtype == VL_FLOAT16 || x->dtype == VL_BFLOAT16)
    return vl_error(VL_EDTYPE, "%s: input is %s, expected float32 or float64 (convert first, e.g. x:float())", op,
                    vl_dtype_name(x->dtype)),
           NULL;
  if (x->dtype != VL_FLOAT32 && x->dtype != VL_FLOAT64) { /* integers and bool: as float32 (no gradient) */
    vl_tensor *xf = vl_to_dtype(x, VL_FLOAT32);
    if (xf == NULL) return NULL;
    vl_tensor *y = fft_op(op, kind, xf, n, dim, norm, sign, inverse);
    vl_tensor_release(xf);
    return y;
  }
  if ((unsigned)norm > VL_FFT_NORM_FORWARD) return vl_error(VL_EARG, "%s: unknown norm %d", op, (int)norm), NULL;
  bool cin = kind != K_R2C;
  int lnd = x->ndim;
  if (cin) {
    if (x->ndim < 2 || x->shape[x->ndim - 1] != 2)
      return vl_error(VL_ESHAPE,
                      "%s: input of shape %s is not complex: expected at least 2 dims, the last of size 2 "
                      "(real, imaginary)",
                      op, vl_shape_str(x->ndim, x->shape, s1)),
             NULL;
    lnd--;
  } else if (x->ndim < 1) {
    return vl_error(VL_ESHAPE, "%s: input is a 0-d tensor, expected at least 1 dim", op), NULL;
  }
  int d;
  if (dim < -lnd || dim >= lnd)
    return vl_error(VL_EINDEX, "%s: dim %d out of range for %d transformable dims of shape %s (expected %d..%d)", op,
                    dim, lnd, vl_shape_str(x->ndim, x->shape, s1), -lnd, lnd - 1),
           NULL;
  d = dim < 0 ? dim + lnd : dim;
  int64_t len = x->shape[d];
  if (n < 0) n = (kind == K_C2R) ? 2 * (len - 1) : len;
  if (n < 1)
    return vl_error(VL_EARG, "%s: invalid number of data points %lld along dim of size %lld (expected n >= 1)", op,
                    (long long)n, (long long)len),
           NULL;
  if (n > VL_FFT_MAX_N)
    return vl_error(VL_EARG, "%s: n = %lld is too large (at most %lld)", op, (long long)n, (long long)VL_FFT_MAX_N),
           NULL;
  int64_t out_len = kind == K_R2C ? n / 2 + 1 : n;
  double scale = norm_scale(norm, n, inverse);
  bool need = vl_ag_needed(1, &x);
  bool was = vl_ag_pause();
  vl_tensor *y = fft_core(op, kind, x, d, n, sign, scale, out_len, kind == K_C2R);
  vl_set_grad_enabled(was);
  if (y == NULL) return NULL;
  if (need) {
    vl_node *nd = vl_ag_node(op, fft_backward, 1, &x);
    if (nd) {
      nd->iarg[0] = kind, nd->iarg[1] = d, nd->iarg[2] = n, nd->iarg[3] = sign, nd->iarg[4] = len;
      nd->arg[0] = scale;
    }
    if (nd == NULL || vl_ag_attach(y, nd) != VL_OK) {
      vl_ag_node_release(nd);
      vl_tensor_release(y);
      return NULL;
    }
  }
  return y;
}

vl_tensor *vl_fft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm) {
  return fft_op("fft", K_C2C, x, n, dim, norm, -1, false);
}

vl_tensor *vl_ifft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm) {
  return fft_op("ifft", K_C2C, x, n, dim, norm, +1, true);
}

vl_tensor *vl_rfft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm) {
  return fft_op("rfft", K_R2C, x, n, dim, norm, -1, false);
}

vl_tensor *vl_irfft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm) {
  return fft_op("irfft", K_C2R, x, n, dim, norm, +1, true);
}
