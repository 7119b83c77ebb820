/*
** stft.c — short-time Fourier transforms and spectral features (prefix
** vl_stft / vl_istft / vl_mel): torch.stft / torch.istft of PyTorch 1.13
** with their backward passes, and torchaudio's melscale_fbanks,
** MelSpectrogram and MFCC composed from recorded ops. The FFTs come from
** FFTW3: fftw3f for float32, fftw3 for float64.
**
** Layout: complex values are trailing (real, imaginary) pairs, as vl.fft.
** stft: x [B, L] -> pad (centre: n_fft/2 each side, reflect or zeros) ->
** frame t = xp[t hop .. t hop + n_fft) * window -> DFT -> [B, F, T, 2],
** F = n_fft/2 + 1 (onesided) or n_fft. istft: irfft of each frame's first
** n_fft/2 + 1 bins (imaginary parts of bin 0 and n/2 ignored; a two-sided
** input is cut to its first half, as torch.istft does for a real
** result), times the window, overlap-added, divided by the overlap-add
** of the squared window, centre padding cut.
**
** Both are linear, and their adjoints are made from the same two line
** transforms:
**   fwd_line  N reals -> F bins (r2c; bins past N/2 by conjugate symmetry;
**             "herm2" doubles bins 1..(N-1)/2: the adjoint of irfft)
**   inv_line  F bins -> N reals (c2r): Re(sum_k G_k e^{+2 pi i kn/N}) over
**             the given bins — for F = N/2+1 with "halve" the interior
**             bins are halved (adjoint of the onesided stft), without it
**             it is irfft; for F = N the pairs k, N-k are folded into
**             (G_k + conj G_{N-k}) / 2 (adjoint of the two-sided stft).
** stft backward: inv_line(halve) of each frame's gradient times the window,
** overlap-added, the reflected padding folded back. istft backward: the
** gradient divided by the envelope, cut into windowed frames, fwd_line
** (herm2 for onesided).
**
** Plans: FFTW's planner is not thread-safe, so plans are made (and
** cached, per kind, size and precision) under a mutex; executing a plan
** on other buffers (fftw_execute_dft_r2c) is thread-safe; those buffers
** are 64-byte aligned, as the fftw_malloc'd ones the plans were made on.
** Lines (batch x frame) run in parallel (OpenMP).
**
** The type-generic kernels are written once below STFT_BODY; this file
** includes itself twice to compile them for float and for double.
*/
#ifdef STFT_BODY

/* ---- type-generic part: R is float or double, FW(x) fftwf_x or fftw_x ---- */

static void SFX(fwd_line)(FW(plan) p, R *buf, FW(complex) *cb, int64_t N, int64_t F, bool herm2, R scale, R *out,
                          int64_t ostride) {
  FW(execute_dft_r2c)(p, buf, cb);
  int64_t h = N / 2 + 1;
  for (int64_t k = 0; k < F; k++) {
    R re, im, w = scale;
    if (k < h) {
      re = cb[k][0], im = cb[k][1];
      if (herm2 && k > 0 && 2 * k != N) w *= 2;
    } else {
      re = cb[N - k][0], im = -cb[N - k][1];
    }
    out[k * ostride] = re * w;
    out[k * ostride + 1] = im * w;
  }
}

static void SFX(inv_line)(FW(plan) p, const R *in, int64_t istride, int64_t N, int64_t F, bool halve, FW(complex) *cb,
                          R *buf) {
  int64_t h = N / 2 + 1;
  if (F == h) {
    for (int64_t k = 0; k < h; k++) {
      R f = (halve && k > 0 && 2 * k != N) ? (R)0.5 : (R)1;
      cb[k][0] = in[k * istride] * f, cb[k][1] = in[k * istride + 1] * f;
    }
  } else {
    cb[0][0] = in[0], cb[0][1] = in[1];
    for (int64_t k = 1; k < h; k++) {
      int64_t j = N - k;
      if (j == k) {
        cb[k][0] = in[k * istride], cb[k][1] = in[k * istride + 1];
      } else {
        cb[k][0] = (in[k * istride] + in[j * istride]) * (R)0.5;
        cb[k][1] = (in[k * istride + 1] - in[j * istride + 1]) * (R)0.5;
      }
    }
  }
  FW(execute_dft_c2r)(p, cb, buf);
}

/* out [B, Fl, T, 2]: its first F bins from frames src[b*bs + t*ts + n] * win[n].
   Frames go in tiles of STFT_TILE: each tile's bins are gathered in a
   per-thread buffer, then written as runs of STFT_TILE pairs per bin (the
   output is frequency-major). */
static int SFX(fwd_frames)(const R *src, int64_t bs, int64_t ts, const R *win, int64_t B, int64_t T, int64_t N,
                           int64_t F, int64_t Fl, bool herm2, R scale, R *out) {
  bool owned;
  FW(plan) p = (FW(plan))plan_get(PLAN_R2C, N, SIZEOF_R, &owned);
  if (p == NULL) return vl_last_status();
  int64_t tiles = (T + STFT_TILE - 1) / STFT_TILE, lines = B * tiles;
  int nt = omp_get_max_threads();
  if (B * T * N < VL_PARALLEL_GRAIN / 4) nt = 1;
  if (nt > lines) nt = (int)lines;
  int fail = 0;
#pragma omp parallel num_threads(nt) reduction(| : fail)
  {
    R *buf = amalloc(sizeof(R) * (size_t)N);
    FW(complex) *cb = amalloc(sizeof(FW(complex)) * (size_t)(N / 2 + 1));
    R *tile = malloc(sizeof(R) * 2 * STFT_TILE * (size_t)F);
    if (buf == NULL || cb == NULL || tile == NULL) fail = 1;
#pragma omp for schedule(static)
    for (int64_t l = 0; l < lines; l++) {
      if (buf == NULL || cb == NULL || tile == NULL) continue;
      int64_t b = l / tiles, t0 = (l % tiles) * STFT_TILE, n_t = T - t0 < STFT_TILE ? T - t0 : STFT_TILE;
      for (int64_t tt = 0; tt < n_t; tt++) {
        const R *s = src + b * bs + (t0 + tt) * ts;
        for (int64_t n = 0; n < N; n++) buf[n] = s[n] * win[n];
        SFX(fwd_line)(p, buf, cb, N, F, herm2, scale, tile + tt * 2, STFT_TILE * 2);
      }
      for (int64_t k = 0; k < F; k++)
        memcpy(out + ((b * Fl + k) * T + t0) * 2, tile + k * STFT_TILE * 2, sizeof(R) * 2 * (size_t)n_t);
    }
    free(buf);
    free(cb);
    free(tile);
  }
  plan_put(p, SIZEOF_R, owned);
  if (fail) return vl_error(VL_ENOMEM, "stft: out of memory for FFT buffers of %lld points", (long long)N);
  return VL_OK;
}

/* frames [B, T, N] = inv_line(the first F bins of X [B, Fl, T, 2]) * scale * win. */
static int SFX(inv_frames)(const R *X, int64_t B, int64_t T, int64_t N, int64_t F, int64_t Fl, bool halve, R scale,
                           const R *win, R *frames) {
  bool owned;
  FW(plan) p = (FW(plan))plan_get(PLAN_C2R, N, SIZEOF_R, &owned);
  if (p == NULL) return vl_last_status();
  int64_t lines = B * T;
  int nt = omp_get_max_threads();
  if (lines * N < VL_PARALLEL_GRAIN / 4) nt = 1;
  if (nt > lines) nt = (int)lines;
  int fail = 0;
#pragma omp parallel num_threads(nt) reduction(| : fail)
  {
    R *buf = amalloc(sizeof(R) * (size_t)N);
    FW(complex) *cb = amalloc(sizeof(FW(complex)) * (size_t)(N / 2 + 1));
    if (buf == NULL || cb == NULL) fail = 1;
#pragma omp for schedule(static)
    for (int64_t l = 0; l < lines; l++) {
      if (buf == NULL || cb == NULL) continue;
      int64_t b = l / T, t = l % T;
      SFX(inv_line)(p, X + (b * Fl * T + t) * 2, T * 2, N, F, halve, cb, buf);
      R *o = frames + l * N;
      for (int64_t n = 0; n < N; n++) o[n] = buf[n] * scale * win[n];
    }
    free(buf);
    free(cb);
  }
  plan_put(p, SIZEOF_R, owned);
  if (fail) return vl_error(VL_ENOMEM, "istft: out of memory for FFT buffers of %lld points", (long long)N);
  return VL_OK;
}

/* y [B, Ly] (zeroed here) += frames [B, T, N] at t * hop (t*hop + N <= Ly). */
static void SFX(ola)(const R *frames, int64_t B, int64_t T, int64_t N, int64_t hop, R *y, int64_t Ly) {
#pragma omp parallel for schedule(static) if (B > 1 && B * T * N > VL_PARALLEL_GRAIN)
  for (int64_t b = 0; b < B; b++) {
    R *yb = y + b * Ly;
    memset(yb, 0, sizeof(R) * (size_t)Ly);
    for (int64_t t = 0; t < T; t++) {
      const R *f = frames + (b * T + t) * N;
      R *o = yb + t * hop;
      for (int64_t n = 0; n < N; n++) o[n] += f[n];
    }
  }
}

#else /* !STFT_BODY */

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fftw3.h>
#include <omp.h>

#include "autograd.h"
#include "vl_internal.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define STFT_MAX_N ((int64_t)1 << 28) /* largest n_fft (FFTW takes int sizes) */
#define STFT_TILE 16                  /* frames per output tile (fwd_frames) */

/* ------------------------------------------------------------------ */
/* Plan cache                                                           */
/* ------------------------------------------------------------------ */

enum { PLAN_R2C, PLAN_C2R };
#define PLAN_CACHE 64

typedef struct plan_entry {
  int kind;
  int64_t n;
  int rsize; /* sizeof(float) or sizeof(double) */
  void *plan;
} plan_entry;

static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;
static plan_entry plan_cache[PLAN_CACHE];
static int plan_count;

/* A plan for one transform on fftw_malloc'd buffers (the caller holds
   plan_lock). */
static void *plan_make(int kind, int64_t n, int rsize) {
  void *plan = NULL;
  size_t nc = (size_t)(n / 2 + 1);
  if (rsize == (int)sizeof(float)) {
    float *r = fftwf_malloc(sizeof(float) * (size_t)n);
    fftwf_complex *c = fftwf_malloc(sizeof(fftwf_complex) * nc);
    if (r && c)
      plan = kind == PLAN_R2C ? (void *)fftwf_plan_dft_r2c_1d((int)n, r, c, FFTW_ESTIMATE)
                              : (void *)fftwf_plan_dft_c2r_1d((int)n, c, r, FFTW_ESTIMATE);
    fftwf_free(r);
    fftwf_free(c);
  } else {
    double *r = fftw_malloc(sizeof(double) * (size_t)n);
    fftw_complex *c = fftw_malloc(sizeof(fftw_complex) * nc);
    if (r && c)
      plan = kind == PLAN_R2C ? (void *)fftw_plan_dft_r2c_1d((int)n, r, c, FFTW_ESTIMATE)
                              : (void *)fftw_plan_dft_c2r_1d((int)n, c, r, FFTW_ESTIMATE);
    fftw_free(r);
    fftw_free(c);
  }
  return plan;
}

/* The plan for (kind, n, precision): from the cache, or made and cached.
   Cached plans live as long as the process (one may be executing on
   another thread at any time). Once PLAN_CACHE sizes are cached, a new
   size gets a plan of its own (*owned set): give it back with plan_put. */
static void *plan_get(int kind, int64_t n, int rsize, bool *owned) {
  void *plan = NULL;
  *owned = false;
  pthread_mutex_lock(&plan_lock);
  for (int i = 0; i < plan_count; i++)
    if (plan_cache[i].kind == kind && plan_cache[i].n == n && plan_cache[i].rsize == rsize) {
      plan = plan_cache[i].plan;
      break;
    }
  if (plan == NULL) {
    plan = plan_make(kind, n, rsize);
    if (plan && plan_count < PLAN_CACHE)
      plan_cache[plan_count++] = (plan_entry){kind, n, rsize, plan};
    else if (plan)
      *owned = true;
  }
  pthread_mutex_unlock(&plan_lock);
  if (plan == NULL) vl_error(VL_ENOMEM, "stft: FFTW could not plan a transform of %lld points", (long long)n);
  return plan;
}

static void plan_put(void *plan, int rsize, bool owned) {
  if (!owned) return;
  pthread_mutex_lock(&plan_lock);
  if (rsize == (int)sizeof(float))
    fftwf_destroy_plan(plan);
  else
    fftw_destroy_plan(plan);
  pthread_mutex_unlock(&plan_lock);
}

/* Per-thread FFT buffers: 64-byte aligned, so that FFTW's new-array
   execute sees the alignment of the fftw_malloc'd buffers the plans were
   made on (fftw_malloc itself is left to the planner, under the lock). */
static void *amalloc(size_t n) {
  void *p = NULL;
  return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}

/* ---- the type-generic kernels, for float and double ---- */

#define STFT_BODY
#define R float
#define SIZEOF_R ((int)sizeof(float))
#define SFX(name) name##_f32
#define FW(name) fftwf_##name
#include "stft.c"
#undef R
#undef SIZEOF_R
#undef SFX
#undef FW
#define R double
#define SIZEOF_R ((int)sizeof(double))
#define SFX(name) name##_f64
#define FW(name) fftw_##name
#include "stft.c"
#undef R
#undef SIZEOF_R
#undef SFX
#undef FW
#undef STFT_BODY

static int fwd_frames(vl_dtype dt, const void *src, int64_t bs, int64_t ts, const void *win, int64_t B, int64_t T,
                      int64_t N, int64_t F, int64_t Fl, bool herm2, double scale, void *out) {
  if (dt == VL_FLOAT64) return fwd_frames_f64(src, bs, ts, win, B, T, N, F, Fl, herm2, scale, out);
  return fwd_frames_f32(src, bs, ts, win, B, T, N, F, Fl, herm2, (float)scale, out);
}

static int inv_frames(vl_dtype dt, const void *X, int64_t B, int64_t T, int64_t N, int64_t F, int64_t Fl, bool halve,
                      double scale, const void *win, void *frames) {
  if (dt == VL_FLOAT64) return inv_frames_f64(X, B, T, N, F, Fl, halve, scale, win, frames);
  return inv_frames_f32(X, B, T, N, F, Fl, halve, (float)scale, win, frames);
}

static void ola(vl_dtype dt, const void *frames, int64_t B, int64_t T, int64_t N, int64_t hop, void *y, int64_t Ly) {
  if (dt == VL_FLOAT64)
    ola_f64(frames, B, T, N, hop, y, Ly);
  else
    ola_f32(frames, B, T, N, hop, y, Ly);
}

/* ------------------------------------------------------------------ */
/* Shared helpers                                                       */
/* ------------------------------------------------------------------ */

/* Keep the message of the error in flight, prefixed by what failed. */
static void *rewrap(const char *op, const char *what) {
  char msg[VL_ERROR_MAX];
  snprintf(msg, sizeof msg, "%s", vl_last_error());
  vl_error(vl_last_status(), "%s: %s: %s", op, what, msg);
  return NULL;
}

/* The window padded to n_fft (centred), as a contiguous [N] tensor of dt. */
static vl_tensor *padded_window(const char *op, const vl_tensor *window, int64_t N, int64_t win_length, vl_dtype dt) {
  char s1[VL_SHAPE_STR];
  int64_t shape[1] = {N};
  vl_tensor *w = vl_zeros(1, shape, VL_FLOAT64);
  if (w == NULL) return NULL;
  double *wd = vl_data_ptr(w);
  int64_t left = (N - win_length) / 2;
  if (window == NULL) {
    for (int64_t n = 0; n < win_length; n++) wd[left + n] = 0.5 - 0.5 * cos(2.0 * M_PI * (double)n / (double)win_length);
  } else {
    if (window->ndim != 1 || window->shape[0] != win_length) {
      vl_tensor_release(w);
      return vl_error(VL_ESHAPE, "%s: window of shape %s, expected a 1-d tensor of win_length = %lld", op,
                      vl_shape_str(window->ndim, window->shape, s1), (long long)win_length),
             NULL;
    }
    if (!vl_dtype_is_float(window->dtype)) {
      vl_tensor_release(w);
      return vl_error(VL_EDTYPE, "%s: window is %s, expected a float tensor", op, vl_dtype_name(window->dtype)), NULL;
    }
    const void *base = vl_base(window);
    for (int64_t n = 0; n < win_length; n++)
      wd[left + n] = vl_load(base, window->offset + n * window->stride[0], window->dtype);
  }
  vl_tensor *out = vl_to_dtype(w, dt);
  vl_tensor_release(w);
  return out;
}

static int check_float(const char *op, const char *what, const vl_tensor *x) {
  if (x == NULL) return vl_error(VL_EARG, "%s: no %s tensor", op, what);
  if (x->dtype != VL_FLOAT32 && x->dtype != VL_FLOAT64)
    return vl_error(VL_EDTYPE, "%s: %s is %s, expected float32 or float64 (convert first, e.g. x:float())", op, what,
                    vl_dtype_name(x->dtype));
  return VL_OK;
}

static int check_sizes(const char *op, int64_t N, int64_t hop, int64_t win_length) {
  if (N < 1 || N > STFT_MAX_N)
    return vl_error(VL_EARG, "%s: n_fft = %lld, expected 1..%lld", op, (long long)N, (long long)STFT_MAX_N);
  if (hop < 1) return vl_error(VL_EARG, "%s: hop_length = %lld, expected >= 1", op, (long long)hop);
  if (win_length < 1 || win_length > N)
    return vl_error(VL_EARG, "%s: win_length = %lld, expected 1..n_fft (%lld)", op, (long long)win_length,
                    (long long)N);
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* stft                                                                 */
/* ------------------------------------------------------------------ */

/* iarg: 0 N, 1 hop, 2 T, 3 L, 4 pad, 5 pad_mode, 6 onesided; arg 0 scale;
   saved 0: the padded window. */

/* End a backward: g (the gradient of the flattened input, owned) goes back
   to the input's shape as gi[0]; on an earlier failure st it is released. */
static int finish_input_grad(const vl_node *nd, int st, vl_tensor *g, vl_tensor **gi) {
  if (st != VL_OK) {
    vl_tensor_release(g);
    return st;
  }
  vl_tensor *gv = vl_view(g, nd->in_ndim[0], nd->in_shape[0]);
  vl_tensor_release(g);
  if (gv == NULL) return vl_last_status();
  gi[0] = vl_ag_reduce_to(nd, 0, gv);
  return gi[0] ? VL_OK : vl_last_status();
}

static int stft_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  int64_t N = nd->iarg[0], hop = nd->iarg[1], T = nd->iarg[2], L = nd->iarg[3], pad = nd->iarg[4];
  bool reflect = nd->iarg[5] == VL_PAD_REFLECT, onesided = nd->iarg[6] != 0;
  const vl_tensor *w = nd->saved[0];
  vl_dtype dt = w->dtype;
  int64_t F = onesided ? N / 2 + 1 : N, Lp = L + 2 * pad;
  int64_t B = vl_numel(g) / (F * T * 2);
  vl_tensor *gd = vl_to_dtype(g, dt), *gc = gd ? vl_contiguous(gd) : NULL;
  vl_tensor_release(gd);
  if (gc == NULL) return vl_last_status();
  int64_t fshape[3] = {B, T, N}, pshape[2] = {B, Lp}, xshape[2] = {B, L};
  vl_tensor *frames = vl_empty(3, fshape, dt), *gp = vl_empty(2, pshape, dt), *gx = vl_empty(2, xshape, dt);
  int st = frames && gp && gx ? VL_OK : vl_last_status();
  if (st == VL_OK) st = inv_frames(dt, vl_data_ptr(gc), B, T, N, F, F, true, nd->arg[0], vl_data_ptr(w), vl_data_ptr(frames));
  vl_tensor_release(gc);
  if (st == VL_OK) {
    ola(dt, vl_data_ptr(frames), B, T, N, hop, vl_data_ptr(gp), Lp);
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < L; i++) {
        int64_t from = b * Lp + pad + i, to = b * L + i;
        double v = vl_load(vl_data_ptr(gp), from, dt);
        vl_store(vl_data_ptr(gx), to, dt, v);
      }
    if (reflect && pad > 0) {
      void *gpd = vl_data_ptr(gp), *gxd = vl_data_ptr(gx);
      for (int64_t b = 0; b < B; b++)
        for (int64_t j = 1; j <= pad; j++) {
          int64_t l = b * L + j, r = b * L + L - 1 - j;
          vl_store(gxd, l, dt, vl_load(gxd, l, dt) + vl_load(gpd, b * Lp + pad - j, dt));
          vl_store(gxd, r, dt, vl_load(gxd, r, dt) + vl_load(gpd, b * Lp + pad + L - 1 + j, dt));
        }
    }
  }
  vl_tensor_release(frames);
  vl_tensor_release(gp);
  return finish_input_grad(nd, st, gx, gi);
}

vl_tensor *vl_stft(const vl_tensor *x, int64_t N, int64_t hop, int64_t win_length, const vl_tensor *window,
                   bool center, vl_pad_mode pad_mode, bool normalized, bool onesided) {
  const char *op = "stft";
  char s1[VL_SHAPE_STR];
  if (check_float(op, "input", x) != VL_OK || check_sizes(op, N, hop, win_length) != VL_OK) return NULL;
  if (x->ndim < 1) return vl_error(VL_ESHAPE, "%s: input is 0-d, expected [samples] or [..., samples]", op), NULL;
  if (pad_mode != VL_PAD_REFLECT && pad_mode != VL_PAD_CONSTANT)
    return vl_error(VL_EARG, "%s: unknown pad mode %d", op, (int)pad_mode), NULL;
  int64_t L = x->shape[x->ndim - 1], B = 1;
  for (int d = 0; d < x->ndim - 1; d++) B *= x->shape[d];
  int64_t pad = center ? N / 2 : 0;
  if (center && pad_mode == VL_PAD_REFLECT && pad >= L && pad > 0)
    return vl_error(VL_ESHAPE,
                    "%s: reflect padding of %lld (n_fft/2) needs more than %lld samples (input %s); use "
                    "pad_mode = \"constant\" or a smaller n_fft",
                    op, (long long)pad, (long long)L, vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  int64_t Lp = L + 2 * pad;
  if (N > Lp)
    return vl_error(VL_ESHAPE, "%s: n_fft = %lld is larger than the %sinput length %lld (input %s)", op,
                    (long long)N, center ? "padded " : "", (long long)Lp, vl_shape_str(x->ndim, x->shape, s1)),
           NULL;
  int64_t T = 1 + (Lp - N) / hop, F = onesided ? N / 2 + 1 : N;
  vl_dtype dt = x->dtype;
  int64_t oshape[VL_MAX_DIMS + 2];
  int ond = 0;
  for (int d = 0; d < x->ndim - 1; d++) oshape[ond++] = x->shape[d];
  oshape[ond++] = F, oshape[ond++] = T, oshape[ond++] = 2;
  if (ond > VL_MAX_DIMS)
    return vl_error(VL_ESHAPE, "%s: input %s has too many dims (the result adds 2; at most %d)", op,
                    vl_shape_str(x->ndim, x->shape, s1), VL_MAX_DIMS),
           NULL;
  bool need = vl_ag_needed(1, &x);
  bool was = vl_ag_pause();
  vl_tensor *y = vl_empty(ond, oshape, dt);
  vl_tensor *w = y ? padded_window(op, window, N, win_length, dt) : NULL;
  vl_tensor *xc = w ? vl_contiguous(x) : NULL;
  int64_t pshape[2] = {B, Lp};
  vl_tensor *xp = xc ? vl_empty(2, pshape, dt) : NULL;
  vl_set_grad_enabled(was);
  if (xp == NULL || B == 0) {
    vl_tensor_release(w), vl_tensor_release(xc), vl_tensor_release(xp);
    if (y == NULL) return rewrap(op, "output");
    if (B == 0 && xp) return y; /* an empty result */
    vl_tensor_release(y);
    return NULL;
  }
  size_t es = vl_dtype_size(dt);
  const char *xs = vl_data_ptr(xc);
  char *ps = vl_data_ptr(xp);
  for (int64_t b = 0; b < B; b++) {
    const char *src = xs + (size_t)(b * L) * es;
    char *dst = ps + (size_t)(b * Lp) * es;
    if (L) memcpy(dst + (size_t)pad * es, src, (size_t)L * es);
    for (int64_t j = 1; j <= pad; j++) {
      if (pad_mode == VL_PAD_REFLECT) {
        memcpy(dst + (size_t)(pad - j) * es, src + (size_t)j * es, es);
        memcpy(dst + (size_t)(pad + L - 1 + j) * es, src + (size_t)(L - 1 - j) * es, es);
      } else {
        memset(dst + (size_t)(pad - j) * es, 0, es);
        memset(dst + (size_t)(pad + L - 1 + j) * es, 0, es);
      }
    }
  }
  vl_tensor_release(xc);
  double scale = normalized ? 1.0 / sqrt((double)N) : 1.0;
  int st = fwd_frames(dt, ps, Lp, hop, vl_data_ptr(w), B, T, N, F, F, false, scale, vl_data_ptr(y));
  vl_tensor_release(xp);
  if (st != VL_OK) {
    vl_tensor_release(w), vl_tensor_release(y);
    return NULL;
  }
  if (need) {
    vl_node *nd = vl_ag_node(op, stft_backward, 1, &x);
    if (nd) {
      nd->iarg[0] = N, nd->iarg[1] = hop, nd->iarg[2] = T, nd->iarg[3] = L, nd->iarg[4] = pad;
      nd->iarg[5] = pad_mode, nd->iarg[6] = onesided;
      nd->arg[0] = scale;
    }
    if (nd == NULL || vl_ag_save(nd, w) < 0 || vl_ag_attach(y, nd) != VL_OK) {
      vl_ag_node_release(nd);
      vl_tensor_release(w), vl_tensor_release(y);
      return NULL;
    }
  }
  vl_tensor_release(w);
  return y;
}

/* ------------------------------------------------------------------ */
/* istft                                                                */
/* ------------------------------------------------------------------ */

/* The overlap-add of the squared window over [0, Lexp), float64. */
static double *envelope(const vl_tensor *w, int64_t T, int64_t N, int64_t hop, int64_t Lexp) {
  double *env = calloc((size_t)Lexp, sizeof(double));
  if (env == NULL) {
    vl_error(VL_ENOMEM, "istft: out of memory for the window envelope of %lld samples", (long long)Lexp);
    return NULL;
  }
  const void *wd = vl_data_ptr(w);
  for (int64_t t = 0; t < T; t++)
    for (int64_t n = 0; n < N; n++) {
      double v = vl_load(wd, n, w->dtype);
      env[t * hop + n] += v * v;
    }
  return env;
}

/* iarg: 0 N, 1 hop, 2 T, 3 start, 4 out_len, 5 F; arg 0 scale; saved 0 window. */
static int istft_backward(vl_node *nd, const vl_tensor *g, vl_tensor **gi) {
  int64_t N = nd->iarg[0], hop = nd->iarg[1], T = nd->iarg[2], start = nd->iarg[3], out_len = nd->iarg[4];
  int64_t F = nd->iarg[5];
  const vl_tensor *w = nd->saved[0];
  vl_dtype dt = w->dtype;
  int64_t Lexp = N + hop * (T - 1), B = out_len ? vl_numel(g) / out_len : 0;
  int64_t stop = start + out_len < Lexp ? start + out_len : Lexp;
  vl_tensor *gd = vl_to_dtype(g, dt), *gc = gd ? vl_contiguous(gd) : NULL;
  vl_tensor_release(gd);
  if (gc == NULL) return vl_last_status();
  double *env = envelope(w, T, N, hop, Lexp);
  int64_t yshape[2] = {B, Lexp}, gshape[4] = {B, F, T, 2};
  vl_tensor *gy = env ? vl_zeros(2, yshape, dt) : NULL;
  vl_tensor *gX = gy ? vl_zeros(4, gshape, dt) : NULL; /* bins past n_fft/2 (two-sided input): 0 */
  int st = gX ? VL_OK : vl_last_status();
  if (st == VL_OK) {
    const void *gs = vl_data_ptr(gc);
    void *gyd = vl_data_ptr(gy);
    for (int64_t b = 0; b < B; b++)
      for (int64_t p = start; p < stop; p++)
        vl_store(gyd, b * Lexp + p, dt, vl_load(gs, b * out_len + p - start, dt) / env[p]);
    st = fwd_frames(dt, gyd, Lexp, hop, vl_data_ptr(w), B, T, N, N / 2 + 1, F, true, nd->arg[0], vl_data_ptr(gX));
  }
  free(env);
  vl_tensor_release(gc);
  vl_tensor_release(gy);
  return finish_input_grad(nd, st, gX, gi);
}

vl_tensor *vl_istft(const vl_tensor *X, int64_t N, int64_t hop, int64_t win_length, const vl_tensor *window,
                    bool center, bool normalized, int onesided, int64_t length) {
  const char *op = "istft";
  char s1[VL_SHAPE_STR];
  if (check_float(op, "input", X) != VL_OK || check_sizes(op, N, hop, win_length) != VL_OK) return NULL;
  if (X->ndim < 3 || X->shape[X->ndim - 1] != 2)
    return vl_error(VL_ESHAPE, "%s: input of shape %s, expected [..., freq, frames, 2] (real, imaginary pairs)", op,
                    vl_shape_str(X->ndim, X->shape, s1)),
           NULL;
  int64_t F = X->shape[X->ndim - 3], T = X->shape[X->ndim - 2], B = 1;
  for (int d = 0; d < X->ndim - 3; d++) B *= X->shape[d];
  bool one = onesided < 0 ? F != N : onesided != 0;
  if (one && F != N / 2 + 1)
    return vl_error(VL_ESHAPE, "%s: %lld frequency bins (input %s), expected n_fft/2+1 = %lld for n_fft = %lld%s", op,
                    (long long)F, vl_shape_str(X->ndim, X->shape, s1), (long long)(N / 2 + 1), (long long)N,
                    onesided < 0 ? " (or n_fft for a two-sided spectrum)" : ""),
           NULL;
  if (!one && F != N)
    return vl_error(VL_ESHAPE, "%s: %lld frequency bins (input %s), expected n_fft = %lld for a two-sided spectrum",
                    op, (long long)F, vl_shape_str(X->ndim, X->shape, s1), (long long)N),
           NULL;
  if (T < 1) return vl_error(VL_ESHAPE, "%s: input %s has no frames", op, vl_shape_str(X->ndim, X->shape, s1)), NULL;
  int64_t Lexp;
  if (__builtin_mul_overflow(hop, T - 1, &Lexp) || __builtin_add_overflow(Lexp, N, &Lexp))
    return vl_error(VL_EARG, "%s: %lld frames of hop %lld overflow", op, (long long)T, (long long)hop), NULL;
  int64_t start = center ? N / 2 : 0;
  int64_t end = length >= 0 ? start + length : center ? Lexp - N / 2 : Lexp;
  if (end <= start)
    return vl_error(VL_ESHAPE, "%s: %lld frames of hop %lld leave no samples once %lld samples of centre padding are cut",
                    op, (long long)T, (long long)hop, (long long)(2 * start)),
           NULL;
  int64_t out_len = end - start, stop = end < Lexp ? end : Lexp;
  vl_dtype dt = X->dtype;
  bool need = vl_ag_needed(1, &X);
  bool was = vl_ag_pause();
  vl_tensor *w = padded_window(op, window, N, win_length, dt);
  vl_set_grad_enabled(was);
  if (w == NULL) return NULL;
  double *env = envelope(w, T, N, hop, Lexp);
  if (env == NULL) {
    vl_tensor_release(w);
    return NULL;
  }
  for (int64_t p = start; p < stop; p++)
    if (fabs(env[p]) < 1e-11) {
      double v = env[p];
      free(env), vl_tensor_release(w);
      return vl_error(VL_EARG,
                      "%s: window overlap-add is %g at sample %lld (< 1e-11): window and hop_length %lld fail the "
                      "NOLA condition (with center = false, a window that is 0 at its ends cannot rebuild the first "
                      "and last samples)",
                      op, v, (long long)(p - start + 1), (long long)hop),
             NULL;
    }
  int64_t oshape[VL_MAX_DIMS];
  int ond = 0;
  for (int d = 0; d < X->ndim - 3; d++) oshape[ond++] = X->shape[d];
  oshape[ond++] = out_len;
  was = vl_ag_pause();
  vl_tensor *y = vl_zeros(ond, oshape, dt);
  vl_tensor *Xc = y ? vl_contiguous(X) : NULL;
  int64_t fshape[3] = {B, T, N}, yshape[2] = {B, Lexp};
  vl_tensor *frames = Xc ? vl_empty(3, fshape, dt) : NULL, *yf = frames ? vl_empty(2, yshape, dt) : NULL;
  vl_set_grad_enabled(was);
  double scale = normalized ? 1.0 / sqrt((double)N) : 1.0 / (double)N;
  int st = yf ? VL_OK : vl_last_status();
  if (st == VL_OK && B > 0)
    st = inv_frames(dt, vl_data_ptr(Xc), B, T, N, N / 2 + 1, F, false, scale, vl_data_ptr(w), vl_data_ptr(frames));
  if (st == VL_OK && B > 0) {
    ola(dt, vl_data_ptr(frames), B, T, N, hop, vl_data_ptr(yf), Lexp);
    const void *ys = vl_data_ptr(yf);
    void *yd = vl_data_ptr(y);
    for (int64_t b = 0; b < B; b++)
      for (int64_t p = start; p < stop; p++)
        vl_store(yd, b * out_len + p - start, dt, vl_load(ys, b * Lexp + p, dt) / env[p]);
  }
  free(env);
  vl_tensor_release(Xc), vl_tensor_release(frames), vl_tensor_release(yf);
  if (st != VL_OK) {
    vl_tensor_release(w), vl_tensor_release(y);
    return NULL;
  }
  if (need) {
    vl_node *nd = vl_ag_node(op, istft_backward, 1, &X);
    if (nd) {
      nd->iarg[0] = N, nd->iarg[1] = hop, nd->iarg[2] = T, nd->iarg[3] = start, nd->iarg[4] = out_len;
      nd->iarg[5] = F;
      nd->arg[0] = scale;
    }
    if (nd == NULL || vl_ag_save(nd, w) < 0 || vl_ag_attach(y, nd) != VL_OK) {
      vl_ag_node_release(nd);
      vl_tensor_release(w), vl_tensor_release(y);
      return NULL;
    }
  }
  vl_tensor_release(w);
  return y;
}

/* ------------------------------------------------------------------ */
/* Mel filter banks, mel spectrograms, MFCC                             */
/* ------------------------------------------------------------------ */

static double hz_to_mel(double f, bool slaney) {
  if (!slaney) return 2595.0 * log10(1.0 + f / 700.0);
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp, logstep = log(6.4) / 27.0;
  if (f >= min_log_hz) return min_log_mel + log(f / min_log_hz) / logstep;
  return f / f_sp;
}

static double mel_to_hz(double m, bool slaney) {
  if (!slaney) return 700.0 * (pow(10.0, m / 2595.0) - 1.0);
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp, logstep = log(6.4) / 27.0;
  if (m >= min_log_mel) return min_log_hz * exp(logstep * (m - min_log_mel));
  return f_sp * m;
}

/* torch.linspace's i-th point (the upper half counted from the end). */
static double linpoint(double a, double b, int64_t steps, int64_t i) {
  if (steps == 1) return a;
  double step = (b - a) / (double)(steps - 1);
  return i < steps / 2 ? a + step * (double)i : b - step * (double)(steps - 1 - i);
}

vl_tensor *vl_mel_filterbank(int64_t n_freqs, double f_min, double f_max, int64_t n_mels, double sample_rate,
                             bool slaney_norm, bool slaney_scale, vl_dtype dt) {
  const char *op = "audio.mel_filterbank";
  if (n_freqs < 1 || n_mels < 1)
    return vl_error(VL_EARG, "%s: n_freqs = %lld, n_mels = %lld, expected both >= 1", op, (long long)n_freqs,
                    (long long)n_mels),
           NULL;
  if (!(sample_rate > 0)) return vl_error(VL_EARG, "%s: sample_rate %g, expected > 0", op, sample_rate), NULL;
  if (!(f_min >= 0) || !(f_max > f_min))
    return vl_error(VL_EARG, "%s: f_min %g, f_max %g, expected 0 <= f_min < f_max", op, f_min, f_max), NULL;
  if (dt != VL_FLOAT32 && dt != VL_FLOAT64)
    return vl_error(VL_EDTYPE, "%s: dtype %s, expected float32 or float64", op, vl_dtype_name(dt)), NULL;
  int64_t shape[2] = {n_freqs, n_mels};
  vl_tensor *fb = vl_empty(2, shape, VL_FLOAT64);
  double *f_pts = malloc(sizeof(double) * (size_t)(n_mels + 2));
  if (fb == NULL || f_pts == NULL) {
    free(f_pts), vl_tensor_release(fb);
    return vl_error(VL_ENOMEM, "%s: out of memory", op), NULL;
  }
  double m_min = hz_to_mel(f_min, slaney_scale), m_max = hz_to_mel(f_max, slaney_scale);
  for (int64_t i = 0; i < n_mels + 2; i++) f_pts[i] = mel_to_hz(linpoint(m_min, m_max, n_mels + 2, i), slaney_scale);
  double nyq = floor(sample_rate / 2);
  double *fd = vl_data_ptr(fb);
  for (int64_t k = 0; k < n_freqs; k++) {
    double f = linpoint(0, nyq, n_freqs, k);
    for (int64_t m = 0; m < n_mels; m++) {
      double down = (f - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
      double up = (f_pts[m + 2] - f) / (f_pts[m + 2] - f_pts[m + 1]);
      double v = down < up ? down : up;
      if (!(v > 0)) v = 0;
      if (slaney_norm) v *= 2.0 / (f_pts[m + 2] - f_pts[m]);
      fd[k * n_mels + m] = v;
    }
  }
  free(f_pts);
  vl_tensor *out = vl_to_dtype(fb, dt);
  vl_tensor_release(fb);
  return out;
}

void vl_melspec_defaults(vl_melspec_opts *o) {
  memset(o, 0, sizeof *o);
  o->sample_rate = 16000;
  o->n_fft = 400;
  o->f_min = 0;
  o->f_max = NAN;
  o->n_mels = 128;
  o->power = 2;
  o->center = true;
  o->pad_mode = VL_PAD_REFLECT;
}

/* Owned intermediate results of a composition, released together. */
typedef struct keep {
  vl_tensor *t[24];
  int n;
  bool fail;
} keep;

static vl_tensor *kp(keep *k, vl_tensor *t) {
  if (t == NULL || k->n == 24) {
    k->fail = true;
    vl_tensor_release(t);
    return NULL;
  }
  return k->t[k->n++] = t;
}

static void keep_release(keep *k) {
  for (int i = 0; i < k->n; i++) vl_tensor_release(k->t[i]);
  k->n = 0;
}

/* Hand one kept tensor to the caller. */
static vl_tensor *keep_take(keep *k, vl_tensor *t) {
  vl_tensor_retain(t);
  keep_release(k);
  return t;
}

static vl_tensor *mel_compose(keep *k, const char *op, const vl_tensor *x, const vl_melspec_opts *o) {
  if (check_float(op, "input", x) != VL_OK) return NULL;
  if (o->n_fft < 1) return vl_error(VL_EARG, "%s: n_fft = %lld, expected >= 1", op, (long long)o->n_fft), NULL;
  int64_t win = o->win_length ? o->win_length : o->n_fft;
  int64_t hop = o->hop_length ? o->hop_length : win / 2;
  if (hop < 1)
    return vl_error(VL_EARG, "%s: hop_length = %lld, expected >= 1 (win_length %lld gives win_length/2 = 0)", op,
                    (long long)hop, (long long)win),
           NULL;
  if (!(o->sample_rate > 0)) return vl_error(VL_EARG, "%s: sample_rate %g, expected > 0", op, o->sample_rate), NULL;
  if (!(o->power > 0)) return vl_error(VL_EARG, "%s: power %g, expected > 0", op, o->power), NULL;
  double f_max = isnan(o->f_max) ? floor(o->sample_rate / 2) : o->f_max;
  vl_dtype dt = x->dtype;
  vl_tensor *spec = kp(k, vl_stft(x, o->n_fft, hop, win, o->window, o->center, o->pad_mode, false, true));
  if (spec == NULL) return NULL;
  vl_tensor *re = kp(k, vl_select(spec, -1, 0)), *im = re ? kp(k, vl_select(spec, -1, 1)) : NULL;
  vl_tensor *re2 = im ? kp(k, vl_binary(VL_MUL, re, re)) : NULL, *im2 = re2 ? kp(k, vl_binary(VL_MUL, im, im)) : NULL;
  vl_tensor *p = im2 ? kp(k, vl_binary(VL_ADD, re2, im2)) : NULL;
  if (p == NULL) return NULL;
  double norm2 = 1;
  if (o->normalized) { /* torchaudio: spec / sqrt(sum window^2), so |spec|^2 / sum window^2 */
    vl_tensor *w = kp(k, padded_window(op, o->window, o->n_fft, win, VL_FLOAT64));
    if (w == NULL) return NULL;
    double s = 0;
    const double *wd = vl_data_ptr(w);
    for (int64_t i = 0; i < o->n_fft; i++) s += wd[i] * wd[i];
    norm2 = s;
  }
  if (o->normalized) {
    vl_tensor *c = kp(k, vl_scalar(1.0 / norm2, dt));
    if (c == NULL || (p = kp(k, vl_binary(VL_MUL, p, c))) == NULL) return NULL;
  }
  if (o->power == 1) {
    p = kp(k, vl_unary(VL_SQRT, p));
  } else if (o->power != 2) {
    vl_tensor *e = kp(k, vl_scalar(o->power / 2, dt));
    p = e ? kp(k, vl_binary(VL_POW, p, e)) : NULL;
  }
  if (p == NULL) return NULL;
  vl_tensor *fb = kp(k, vl_mel_filterbank(o->n_fft / 2 + 1, o->f_min, f_max, o->n_mels, o->sample_rate, o->slaney_norm,
                                          o->slaney_scale, dt));
  if (fb == NULL) return rewrap(op, "mel filter bank");
  vl_tensor *pt = kp(k, vl_transpose(p, -1, -2));
  vl_tensor *m = pt ? kp(k, vl_matmul(pt, fb)) : NULL;
  return m ? kp(k, vl_transpose(m, -1, -2)) : NULL;
}

vl_tensor *vl_melspectrogram(const vl_tensor *x, const vl_melspec_opts *o) {
  keep k = {0};
  vl_melspec_opts d;
  if (o == NULL) vl_melspec_defaults(&d), o = &d;
  vl_tensor *m = mel_compose(&k, "audio.melspectrogram", x, o);
  if (m == NULL) {
    keep_release(&k);
    return NULL;
  }
  return keep_take(&k, m);
}

vl_tensor *vl_mfcc(const vl_tensor *x, const vl_melspec_opts *o, int64_t n_mfcc, bool log_mels, double top_db) {
  const char *op = "audio.mfcc";
  keep k = {0};
  vl_melspec_opts d;
  if (o == NULL) vl_melspec_defaults(&d), o = &d;
  if (n_mfcc < 1 || n_mfcc > o->n_mels)
    return vl_error(VL_EARG, "%s: n_mfcc = %lld, expected 1..n_mels (%lld)", op, (long long)n_mfcc,
                    (long long)o->n_mels),
           NULL;
  if (!isnan(top_db) && !(top_db >= 0))
    return vl_error(VL_EARG, "%s: top_db %g, expected >= 0 (or none)", op, top_db), NULL;
  vl_tensor *m = mel_compose(&k, op, x, o);
  if (m == NULL) goto fail;
  vl_dtype dt = m->dtype;
  vl_tensor *db;
  if (log_mels) {
    vl_tensor *c = kp(&k, vl_scalar(1e-6, dt));
    vl_tensor *s = c ? kp(&k, vl_binary(VL_ADD, m, c)) : NULL;
    db = s ? kp(&k, vl_unary(VL_LOG, s)) : NULL;
  } else {
    vl_tensor *cl = kp(&k, vl_clamp(m, 1e-10, NAN));
    vl_tensor *lg = cl ? kp(&k, vl_unary(VL_LOG, cl)) : NULL;
    vl_tensor *c = lg ? kp(&k, vl_scalar(10.0 / log(10.0), dt)) : NULL;
    db = c ? kp(&k, vl_binary(VL_MUL, lg, c)) : NULL;
    if (db && !isnan(top_db)) {
      int nd = db->ndim < 3 ? db->ndim : 3, dims[3] = {-1, -2, -3};
      vl_tensor *mx = kp(&k, vl_reduce(VL_AMAX, db, nd, dims, true));
      vl_tensor *t = mx ? kp(&k, vl_scalar(top_db, dt)) : NULL;
      vl_tensor *fl = t ? kp(&k, vl_binary(VL_SUB, mx, t)) : NULL;
      db = fl ? kp(&k, vl_binary(VL_MAXIMUM, db, fl)) : NULL;
    }
  }
  if (db == NULL) goto fail;
  /* DCT-II, ortho: dct[n, j] = cos(pi / M (n + 0.5) j) sqrt(2/M), j = 0 also / sqrt(2) */
  int64_t M = o->n_mels, dshape[2] = {M, n_mfcc};
  vl_tensor *dct64 = kp(&k, vl_empty(2, dshape, VL_FLOAT64));
  if (dct64 == NULL) goto fail;
  double *dd = vl_data_ptr(dct64);
  for (int64_t n = 0; n < M; n++)
    for (int64_t j = 0; j < n_mfcc; j++)
      dd[n * n_mfcc + j] = cos(M_PI / (double)M * ((double)n + 0.5) * (double)j) * sqrt(2.0 / (double)M) *
                           (j == 0 ? 1.0 / sqrt(2.0) : 1.0);
  vl_tensor *dct = kp(&k, vl_to_dtype(dct64, dt));
  vl_tensor *dbt = dct ? kp(&k, vl_transpose(db, -1, -2)) : NULL;
  vl_tensor *mf = dbt ? kp(&k, vl_matmul(dbt, dct)) : NULL;
  vl_tensor *out = mf ? kp(&k, vl_transpose(mf, -1, -2)) : NULL;
  if (out == NULL) goto fail;
  return keep_take(&k, out);
fail:
  keep_release(&k);
  return NULL;
}

#endif /* STFT_BODY */
