/*
** ssm.c — state-space ops (ops/vl.h "State-space ops"): the selective
** scan of Mamba (vl_selective_scan, fused forward and backward, and its
** one-token step form) and the depthwise causal conv1d (vl_causal_conv1d
** and its step form).
**
** Selective scan (selective_scan_ref of the Mamba code, Gu & Dao 2023),
** per batch b, channel d, state n and time t:
**   dt_t   = delta[b,d,t] + delta_bias[d]          (softplus'd if asked)
**   x_t[n] = exp(dt_t A[d,n]) x_{t-1}[n] + dt_t B_t[n] u[b,d,t]
**   y_t    = sum_n x_t[n] C_t[n] + D[d] u[b,d,t]
**   out    = y * silu(z)                           (when z is given)
** B and C are each fixed [D,N] or input-dependent [Bt,N,L] / grouped
** [Bt,G,N,L] (channel d reads group d / (D/G)). Input-dependent B and C
** are copied once to [Bt,G,L,N] so that a time step reads N contiguous
** values.
**
** Forward: one task per (b, d) row, spread over OpenMP threads; the state
** (N values) stays in a per-thread buffer in L1 and the inner loop over
** the state is compiled for AVX-512 / AVX2 (VL_CLONES). The [Bt,D,L,N]
** tensors never exist. When recording, the state entering every chunk
** of SSM_CHUNK steps is saved (Bt*D*ceil(L/SSM_CHUNK)*N values).
**
** Backward (reverse scan): for each chunk from the last, the chunk's
** states, exp(dt A) and dt are recomputed from its checkpoint into a
** per-thread buffer (SSM_CHUNK x N), then walked backwards carrying
** h = exp(dt_{t+1} A) * dL/dx_{t+1}:
**   gx_t  = gy_t C_t + h            gC_t += gy_t x_t
**   gB_t += gx_t dt_t u_t           gu_t  = gy_t D + dt_t <gx_t, B_t>
**   gdt_t = <gx_t, B_t> u_t + <gx_t x_{t-1} exp(dt_t A), A>
**   gA   += gx_t x_{t-1} exp(dt_t A) dt_t,  h = gx_t exp(dt_t A)
** Tasks are (b, group, block of channels); input-dependent gB/gC are
** summed per block into [L,N] buffers and added in block order, and the
** per-(b,d) sums of gA, gD, g delta_bias, fixed gB/gC are added over b in
** order afterwards: results do not depend on the thread count.
**
** float32 work accumulates in float32 (per-chunk sums of the parameter
** gradients are added in double); float64 runs the same code in double.
** float16/bfloat16 inputs are computed in float32.
*/
#include "nn_internal.h"

/* Steps between saved states (forward) and per recomputed chunk (backward). */
#define SSM_CHUNK 128
/* Backward: aim for at least this many (b, group, channel block) tasks. */
#define SSM_BWD_TASKS 64
/* Backward: most bytes the per-block input-dependent gB/gC buffers take. */
#define SSM_BWD_BUF_BYTES ((int64_t)256 << 20)

#if defined(__clang__)
#define SSM_SIMD
#define SSM_SIMD_SUM(a)
#define SSM_SIMD_SUM2(a, b)
#else
#define SSM_SIMD NN_SIMD
#define SSM_SIMD_SUM(a) NN_SIMD_SUM(a)
#define SSM_SIMD_SUM2(a, b) NN_SIMD_SUM2(a, b)
#endif

VL_ALWAYS_INLINE float ssm_expf(float x) { return x < (float)NN_EXPF_TINY ? 0.0f : vl_expf(x); }
#define SSM_EXP(x) (sizeof(real) == sizeof(float) ? (real)ssm_expf((float)(x)) : (real)exp((double)(x)))

/* out = the sum of pv[0..15] as a tree of vector adds (the compilers'
   in-order sum of a vector's lanes takes 16 dependent adds). */
#define SSM_TREE16(pv, out)                                   \
  do {                                                        \
    SSM_SIMD for (int j_ = 0; j_ < 8; j_++) pv[j_] += pv[j_ + 8]; \
    SSM_SIMD for (int j_ = 0; j_ < 4; j_++) pv[j_] += pv[j_ + 4]; \
    out = (pv[0] + pv[2]) + (pv[1] + pv[3]);                  \
  } while (0)

/* softplus as torch (beta 1, threshold 20). */
static inline double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }

/* log for float32 y >= 1 (finite), written to vectorise: y = m 2^e with
   m in [sqrt(1/2), sqrt(2)), log(m) by the Cephes logf polynomial
   (about 1 ulp). */
VL_ALWAYS_INLINE float ssm_logf(float y) {
  uint32_t b = vl_f2u(y);
  int32_t e = (int32_t)((b >> 23) & 0xff) - 126;
  float m = vl_u2f((b & 0x807fffffu) | 0x3f000000u); /* [0.5, 1) */
  bool lo = m < 0.707106781186547524f;
  e = lo ? e - 1 : e;
  float x = lo ? m + m - 1.0f : m - 1.0f;
  float z = x * x;
  float p = 7.0376836292E-2f;
  p = p * x - 1.1514610310E-1f;
  p = p * x + 1.1676998740E-1f;
  p = p * x - 1.2420140846E-1f;
  p = p * x + 1.4249322787E-1f;
  p = p * x - 1.6668057665E-1f;
  p = p * x + 2.0000714765E-1f;
  p = p * x - 2.4999993993E-1f;
  p = p * x + 3.3333331174E-1f;
  float r = p * x * z;
  float fe = (float)e;
  r += -2.12194440e-4f * fe;
  r += -0.5f * z;
  return x + r + 0.693359375f * fe;
}

/* float32 softplus (threshold 20) that vectorises: log1p(t), t = exp(x),
   as log(1 + t) corrected for the rounding of 1 + t. */
VL_ALWAYS_INLINE float ssm_softplusf(float x) {
  float t = ssm_expf(x > 20.0f ? 20.0f : x);
  float u = 1.0f + t;
  float l = ssm_logf(u) - ((u - 1.0f) - t) / u;
  return x > 20.0f ? x : l;
}
VL_ALWAYS_INLINE float ssm_sigmoidf(float x) { return 1.0f / (1.0f + vl_expf(-x)); }

#define SSM_SOFTPLUS(x) (sizeof(real) == sizeof(float) ? (real)ssm_softplusf((float)(x)) : (real)softplus((double)(x)))
#define SSM_SIGMOID(x) \
  (sizeof(real) == sizeof(float) ? (real)ssm_sigmoidf((float)(x)) : (real)(1.0 / (1.0 + exp(-(double)(x)))))
/* torch's softplus gradient: 1 above the threshold */
#define SSM_SOFTPLUS_GRAD(x) ((x) > 20 ? (real)1 : SSM_SIGMOID(x))

typedef struct ssm_ctx {
  vl_dtype dt;                  /* work dtype */
  int64_t Bt, D, L, N, G, Dg;   /* batch, channels, length, state, groups, channels per group */
  const void *u, *dl, *A, *Bm, *Cm, *Dv, *z, *bias;
  bool bvar, cvar;              /* B / C input-dependent ([Bt,G,L,N]) */
  bool softplus;
} ssm_ctx;

/* The B (or C) row of (b, d): base pointer (elements) and per-step stride. */
static inline int64_t ssm_base(const ssm_ctx *c, bool var, int64_t b, int64_t d, int64_t *ts) {
  if (!var) {
    *ts = 0;
    return d * c->N;
  }
  *ts = c->N;
  return (b * c->G + d / c->Dg) * c->L * c->N;
}

static inline int64_t ssm_nchunks(int64_t L) { return (L + SSM_CHUNK - 1) / SSM_CHUNK; }

/* ------------------------------------------------------------------ */
/* Forward                                                             */
/* ------------------------------------------------------------------ */

/* One (b, d) row: out (may be NULL), last state (may be NULL), chunk
   checkpoints (may be NULL); x: N work values. */
VL_ALWAYS_INLINE void fwd_row(const ssm_ctx *c, int64_t b, int64_t d, void *outp, void *lastp, void *chkp,
                              void *xp, vl_dtype dt, int64_t NC) {
  NN_TYPED(dt, {
    const int64_t L = c->L, N = NC, row = b * c->D + d;
    const real *u = (const real *)c->u + row * L, *dl = (const real *)c->dl + row * L;
    const real *z = c->z ? (const real *)c->z + row * L : NULL;
    const real *A = (const real *)c->A + d * N;
    int64_t bs, cs;
    const real *Bp = (const real *)c->Bm + ssm_base(c, c->bvar, b, d, &bs);
    const real *Cp = (const real *)c->Cm + ssm_base(c, c->cvar, b, d, &cs);
    real Dd = c->Dv ? ((const real *)c->Dv)[d] : 0, bias = c->bias ? ((const real *)c->bias)[d] : 0;
    real *out = outp ? (real *)outp + row * L : NULL;
    real *chk = chkp ? (real *)chkp + row * ssm_nchunks(L) * N : NULL;
    real *x = xp, *dtb = x + N, *yb = dtb + SSM_CHUNK;
    for (int64_t n = 0; n < N; n++) x[n] = 0;
    for (int64_t t0 = 0; t0 < L; t0 += SSM_CHUNK) {
      int64_t m = VL_MIN(SSM_CHUNK, L - t0);
      if (chk) memcpy(chk + (t0 / SSM_CHUNK) * N, x, (size_t)N * sizeof(real));
      /* the block's steps dt, vectorised over time */
      if (c->softplus) {
        SSM_SIMD
        for (int64_t i = 0; i < m; i++) dtb[i] = SSM_SOFTPLUS(dl[t0 + i] + bias);
      } else {
        SSM_SIMD
        for (int64_t i = 0; i < m; i++) dtb[i] = dl[t0 + i] + bias;
      }
      for (int64_t i = 0; i < m; i++) {
        int64_t t = t0 + i;
        real dlt = dtb[i], du = dlt * u[t], y = 0;
        const real *Bq = Bp + t * bs, *Cq = Cp + t * cs;
        if (N == 16) {
          /* sum <x, C> as a tree: the compiler's in-order sum of the
             vector's lanes took 16 dependent adds per step */
          real pv[16];
          SSM_SIMD
          for (int64_t n = 0; n < 16; n++) {
            real a = SSM_EXP(dlt * A[n]);
            real xn = a * x[n] + du * Bq[n];
            x[n] = xn;
            pv[n] = xn * Cq[n];
          }
          SSM_TREE16(pv, y);
        } else {
          SSM_SIMD_SUM(y)
          for (int64_t n = 0; n < N; n++) {
            real a = SSM_EXP(dlt * A[n]);
            real xn = a * x[n] + du * Bq[n];
            x[n] = xn;
            y += xn * Cq[n];
          }
        }
        yb[i] = y;
      }
      if (out) {
        real *o = out + t0;
        const real *uu = u + t0;
        if (z) {
          const real *zz = z + t0;
          SSM_SIMD
          for (int64_t i = 0; i < m; i++) o[i] = (yb[i] + Dd * uu[i]) * zz[i] * SSM_SIGMOID(zz[i]);
        } else {
          SSM_SIMD
          for (int64_t i = 0; i < m; i++) o[i] = yb[i] + Dd * uu[i];
        }
      }
    }
    if (lastp) memcpy((real *)lastp + row * N, x, (size_t)N * sizeof(real));
  });
}

/* float32 rows, with the state size 16 (Mamba's default) a constant: the
   loop over the state becomes one AVX-512 vector (two AVX2 ones). Sizes 8
   and 4 (small models) are constants too: with a run-time bound the short
   loop stays scalar and costs more than size 16. */
VL_CLONES static void fwd_row_f32(const ssm_ctx *c, int64_t b, int64_t d, void *o, void *l, void *k, void *x) {
  if (c->N == 16)
    fwd_row(c, b, d, o, l, k, x, VL_FLOAT32, 16);
  else if (c->N == 8)
    fwd_row(c, b, d, o, l, k, x, VL_FLOAT32, 8);
  else if (c->N == 4)
    fwd_row(c, b, d, o, l, k, x, VL_FLOAT32, 4);
  else
    fwd_row(c, b, d, o, l, k, x, VL_FLOAT32, c->N);
}
static void fwd_row_f64(const ssm_ctx *c, int64_t b, int64_t d, void *o, void *l, void *k, void *x) {
  fwd_row(c, b, d, o, l, k, x, VL_FLOAT64, c->N);
}

static int ssm_forward(const ssm_ctx *c, void *out, void *last, void *chk) {
  int64_t rows = c->Bt * c->D;
  size_t es = vl_dtype_size(c->dt);
  int failed = 0;
  double work = (double)rows * (double)c->L * (double)(c->N + 1);
#pragma omp parallel if (rows > 1 && work > VL_PARALLEL_GRAIN)
  {
    void *x = malloc((size_t)(c->N + 2 * SSM_CHUNK) * es);
    if (x == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (x == NULL) continue;
      if (c->dt == VL_FLOAT32)
        fwd_row_f32(c, r / c->D, r % c->D, out, last, chk, x);
      else
        fwd_row_f64(c, r / c->D, r % c->D, out, last, chk, x);
    }
    free(x);
  }
  if (failed) return vl_error(VL_ENOMEM, "selective_scan: out of memory for the per-thread state");
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Backward                                                            */
/* ------------------------------------------------------------------ */

typedef struct ssm_grads {
  const void *g;        /* upstream gradient [Bt,D,L] */
  const void *chk;      /* checkpoints [Bt,D,nch,N] */
  void *gu, *gdl, *gz;  /* [Bt,D,L] (gz may be NULL) */
  double *gA;           /* per row [Bt,D,N] */
  double *gBf, *gCf;    /* fixed B/C: per row [Bt,D,N] */
  double *gD, *gbias;   /* per row [Bt,D] */
  void *gBv, *gCv;      /* input-dependent: per block [nblk][Bt,G,L,N] (work dtype) */
  int64_t nblk;         /* channel blocks per group */
} ssm_grads;

/* Per-thread work area, in work-dtype elements. */
static inline int64_t ssm_work_elems(int64_t N) { return 3 * (int64_t)SSM_CHUNK * N + 4 * SSM_CHUNK + 8 * N; }

VL_ALWAYS_INLINE void bwd_row(const ssm_ctx *c, const ssm_grads *g, int64_t b, int64_t d, int64_t blk, void *wp,
                              vl_dtype dt, int64_t NC) {
  NN_TYPED(dt, {
    const int64_t L = c->L, N = NC, row = b * c->D + d, K = SSM_CHUNK;
    const real *u = (const real *)c->u + row * L, *dl = (const real *)c->dl + row * L;
    const real *z = c->z ? (const real *)c->z + row * L : NULL;
    const real *gout = (const real *)g->g + row * L;
    const real *A = (const real *)c->A + d * N;
    int64_t bs, cs, bb = ssm_base(c, c->bvar, b, d, &bs), cb = ssm_base(c, c->cvar, b, d, &cs);
    const real *Bp = (const real *)c->Bm + bb, *Cp = (const real *)c->Cm + cb;
    int64_t vsz = c->Bt * c->G * L * N;
    real *gBv = c->bvar ? (real *)g->gBv + blk * vsz + bb : NULL;
    real *gCv = c->cvar ? (real *)g->gCv + blk * vsz + cb : NULL;
    real Dd = c->Dv ? ((const real *)c->Dv)[d] : 0, bias = c->bias ? ((const real *)c->bias)[d] : 0;
    const real *chk = (const real *)g->chk + row * ssm_nchunks(L) * N;
    real *gu = (real *)g->gu + row * L, *gdl = (real *)g->gdl + row * L;
    real *gz = g->gz ? (real *)g->gz + row * L : NULL;
    real *w = wp;
    real *abuf = w, *xbuf = abuf + K * N, *dbuf = xbuf + K * N, *ybuf = dbuf + K, *sbuf = ybuf + K;
    real *zbuf = sbuf + K, *h = zbuf + K, *x = h + N, *gAc = x + N, *gBc = gAc + N, *gCc = gBc + N;
    double *gAd = g->gA + row * N, *gBd = g->gBf ? g->gBf + row * N : NULL, *gCd = g->gCf ? g->gCf + row * N : NULL;
    double gDs = 0, gbs = 0;
    for (int64_t n = 0; n < N; n++) {
      h[n] = 0;
      gAd[n] = 0;
      if (gBd) gBd[n] = 0;
      if (gCd) gCd[n] = 0;
    }
    for (int64_t ch = ssm_nchunks(L) - 1; ch >= 0; ch--) {
      int64_t t0 = ch * K, t1 = VL_MIN(L, t0 + K);
      /* recompute the chunk's states from its checkpoint */
      for (int64_t n = 0; n < N; n++) x[n] = chk[ch * N + n];
      int64_t m = t1 - t0;
      if (c->softplus) {
        SSM_SIMD
        for (int64_t i = 0; i < m; i++) {
          real raw = dl[t0 + i] + bias;
          dbuf[i] = SSM_SOFTPLUS(raw);
          sbuf[i] = SSM_SOFTPLUS_GRAD(raw);
        }
      } else {
        SSM_SIMD
        for (int64_t i = 0; i < m; i++) dbuf[i] = dl[t0 + i] + bias;
      }
      if (z) {
        const real *zz = z + t0;
        SSM_SIMD
        for (int64_t i = 0; i < m; i++) zbuf[i] = SSM_SIGMOID(zz[i]);
      }
      for (int64_t t = t0; t < t1; t++) {
        real dlt = dbuf[t - t0];
        real du = dlt * u[t], y = 0;
        const real *Bq = Bp + t * bs, *Cq = Cp + t * cs;
        real *ar = abuf + (t - t0) * N, *xr = xbuf + (t - t0) * N;
        const real *xprev = t == t0 ? x : xr - N;
        if (N == 16) {
          real pv[16];
          SSM_SIMD
          for (int64_t n = 0; n < 16; n++) {
            real a = SSM_EXP(dlt * A[n]);
            real xn = a * xprev[n] + du * Bq[n];
            ar[n] = a;
            xr[n] = xn;
            pv[n] = xn * Cq[n];
          }
          if (z) SSM_TREE16(pv, y);
        } else {
          SSM_SIMD_SUM(y)
          for (int64_t n = 0; n < N; n++) {
            real a = SSM_EXP(dlt * A[n]);
            real xn = a * xprev[n] + du * Bq[n];
            ar[n] = a;
            xr[n] = xn;
            y += xn * Cq[n];
          }
        }
        ybuf[t - t0] = y + Dd * u[t];
      }
      for (int64_t n = 0; n < N; n++) gAc[n] = gBc[n] = gCc[n] = 0;
      /* walk the chunk backwards */
      for (int64_t t = t1 - 1; t >= t0; t--) {
        real gy = gout[t];
        if (z) {
          real zt = z[t], s = zbuf[t - t0];
          gz[t] = gy * ybuf[t - t0] * s * (1 + zt * (1 - s));
          gy = gy * zt * s;
        }
        gDs += (double)(gy * u[t]);
        real dlt = dbuf[t - t0], ut = u[t], dtu = dlt * ut;
        const real *Bq = Bp + t * bs, *Cq = Cp + t * cs;
        const real *ar = abuf + (t - t0) * N, *xr = xbuf + (t - t0) * N;
        const real *xprev = t == t0 ? x : xr - N;
        real sB = 0, sA = 0;
        real *gbq = gBv ? gBv + t * bs : gBc, *gcq = gCv ? gCv + t * cs : gCc;
        if (N == 16) {
          real pa[16], pb[16];
          SSM_SIMD
          for (int64_t n = 0; n < 16; n++) {
            real gx = gy * Cq[n] + h[n];
            real ga = gx * xprev[n] * ar[n];
            gcq[n] += gy * xr[n];
            gbq[n] += gx * dtu;
            gAc[n] += ga * dlt;
            pa[n] = ga * A[n];
            pb[n] = gx * Bq[n];
            h[n] = gx * ar[n];
          }
          SSM_TREE16(pa, sA);
          SSM_TREE16(pb, sB);
        } else {
          SSM_SIMD_SUM2(sB, sA)
          for (int64_t n = 0; n < N; n++) {
            real gx = gy * Cq[n] + h[n];
            real ga = gx * xprev[n] * ar[n];
            gcq[n] += gy * xr[n];
            gbq[n] += gx * dtu;
            gAc[n] += ga * dlt;
            sA += ga * A[n];
            sB += gx * Bq[n];
            h[n] = gx * ar[n];
          }
        }
        gu[t] = gy * Dd + dlt * sB;
        real gdt = sB * ut + sA;
        if (c->softplus) gdt *= sbuf[t - t0];
        gdl[t] = gdt;
        gbs += (double)gdt;
      }
      for (int64_t n = 0; n < N; n++) {
        gAd[n] += (double)gAc[n];
        if (gBd) gBd[n] += (double)gBc[n];
        if (gCd) gCd[n] += (double)gCc[n];
      }
    }
    g->gD[row] = gDs;
    g->gbias[row] = gbs;
  });
}

VL_CLONES static void bwd_row_f32(const ssm_ctx *c, const ssm_grads *g, int64_t b, int64_t d, int64_t blk, void *w) {
  if (c->N == 16)
    bwd_row(c, g, b, d, blk, w, VL_FLOAT32, 16);
  else if (c->N == 8)
    bwd_row(c, g, b, d, blk, w, VL_FLOAT32, 8);
  else if (c->N == 4)
    bwd_row(c, g, b, d, blk, w, VL_FLOAT32, 4);
  else
    bwd_row(c, g, b, d, blk, w, VL_FLOAT32, c->N);
}
static void bwd_row_f64(const ssm_ctx *c, const ssm_grads *g, int64_t b, int64_t d, int64_t blk, void *w) {
  bwd_row(c, g, b, d, blk, w, VL_FLOAT64, c->N);
}

/* The backward over all rows; fills g's buffers. */
static int ssm_backward(const ssm_ctx *c, ssm_grads *g) {
  size_t es = vl_dtype_size(c->dt);
  int64_t ntask = c->Bt * c->G * g->nblk, per = (c->Dg + g->nblk - 1) / g->nblk;
  int failed = 0;
  double work = (double)c->Bt * (double)c->D * (double)c->L * (double)(c->N + 1);
#pragma omp parallel if (ntask > 1 && work > VL_PARALLEL_GRAIN)
  {
    void *w = malloc((size_t)ssm_work_elems(c->N) * es);
    if (w == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntask; t++) {
      if (w == NULL) continue;
      int64_t blk = t % g->nblk, bg = t / g->nblk, b = bg / c->G, grp = bg % c->G;
      int64_t d0 = grp * c->Dg + blk * per, d1 = VL_MIN((grp + 1) * c->Dg, d0 + per);
      for (int64_t d = d0; d < d1; d++) {
        if (c->dt == VL_FLOAT32)
          bwd_row_f32(c, g, b, d, blk, w);
        else
          bwd_row_f64(c, g, b, d, blk, w);
      }
    }
    free(w);
  }
  if (failed) return vl_error(VL_ENOMEM, "selective_scan backward: out of memory for the per-thread buffers");
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Argument checks and preparation                                     */
/* ------------------------------------------------------------------ */

static int bad_shape(const char *op, const char *what, const vl_tensor *t, const char *expected) {
  char s[VL_SHAPE_STR];
  return vl_error(VL_ESHAPE, "%s: %s has shape %s, expected %s", op, what, vl_shape_str(t->ndim, t->shape, s),
                  expected);
}

/* Checks B or C against the sizes; sets *var and *groups. */
static int check_bc(const char *op, const char *what, const vl_tensor *t, int64_t Bt, int64_t D, int64_t L, int64_t N,
                    bool *var, int64_t *groups) {
  char e[256];
  snprintf(e, sizeof e,
           "[%lld,%lld] (dim, state: fixed), [%lld,%lld,%lld] (batch, state, len: input-dependent) or "
           "[%lld,G,%lld,%lld] (grouped, G dividing dim %lld)",
           (long long)D, (long long)N, (long long)Bt, (long long)N, (long long)L, (long long)Bt, (long long)N,
           (long long)L, (long long)D);
  if (t->ndim == 2) {
    if (t->shape[0] != D || t->shape[1] != N) return bad_shape(op, what, t, e);
    *var = false;
    *groups = 1;
    return VL_OK;
  }
  if (t->ndim == 3) {
    if (t->shape[0] != Bt || t->shape[1] != N || t->shape[2] != L) return bad_shape(op, what, t, e);
    *var = true;
    *groups = 1;
    return VL_OK;
  }
  if (t->ndim == 4) {
    if (t->shape[0] != Bt || t->shape[2] != N || t->shape[3] != L) return bad_shape(op, what, t, e);
    int64_t G = t->shape[1];
    if (G < 1 || D % G != 0)
      return vl_error(VL_ESHAPE, "%s: %s has %lld groups (shape %s), which must divide dim %lld", op, what,
                      (long long)G, vl_shape_str(t->ndim, t->shape, e), (long long)D);
    *var = true;
    *groups = G;
    return VL_OK;
  }
  return bad_shape(op, what, t, e);
}

/* B or C as the kernel reads it: fixed [D,N] contiguous, or [Bt,G,L,N]. */
static vl_tensor *prep_bc(const vl_tensor *t, bool var, vl_dtype dt) {
  if (!var) return wcopy(t, dt);
  vl_tensor *v4 = t->ndim == 3 ? vl_unsqueeze(t, 1) : (vl_tensor_retain((vl_tensor *)t), (vl_tensor *)t);
  vl_tensor *p = v4 ? vl_permute(v4, (const int[]){0, 1, 3, 2}) : NULL;
  vl_tensor_release(v4);
  vl_tensor *r = wcopy(p, dt);
  vl_tensor_release(p);
  return r;
}

/* saved: u, delta, A, B, C (prepared), D, z, delta_bias (or NULL);
   extra: the checkpoints tensor; iarg: softplus, B var, C var, groups. */
static int selective_scan_backward(vl_node *n, const vl_tensor *gout, vl_tensor **gi) {
  ssm_ctx c;
  memset(&c, 0, sizeof c);
  const vl_tensor *u = n->saved[0];
  c.dt = u->dtype;
  c.Bt = u->shape[0];
  c.D = u->shape[1];
  c.L = u->shape[2];
  c.N = n->saved[2]->shape[1];
  c.softplus = n->iarg[0] != 0;
  c.bvar = n->iarg[1] != 0;
  c.cvar = n->iarg[2] != 0;
  c.G = n->iarg[3];
  c.Dg = c.D / c.G;
  c.u = cdata(u);
  c.dl = cdata(n->saved[1]);
  c.A = cdata(n->saved[2]);
  c.Bm = cdata(n->saved[3]);
  c.Cm = cdata(n->saved[4]);
  c.Dv = cdata(n->saved[5]);
  c.z = cdata(n->saved[6]);
  c.bias = cdata(n->saved[7]);
  vl_dtype dt = c.dt;
  int64_t BD = c.Bt * c.D;
  ssm_grads g;
  memset(&g, 0, sizeof g);
  g.nblk = 1;
  if (c.bvar || c.cvar) {
    int64_t want = (SSM_BWD_TASKS + c.Bt * c.G - 1) / (c.Bt * c.G);
    int64_t vbytes = c.Bt * c.G * c.L * c.N * (int64_t)vl_dtype_size(dt) * ((c.bvar ? 1 : 0) + (c.cvar ? 1 : 0));
    g.nblk = VL_MAX(1, VL_MIN(VL_MIN(want, c.Dg), vbytes > 0 ? SSM_BWD_BUF_BYTES / vbytes : want));
  } else {
    g.nblk = VL_MAX(1, c.Dg);
  }
  vl_tensor *gc = wcopy(gout, dt);
  vl_tensor *gu = vl_empty(3, u->shape, dt), *gdl = vl_empty(3, u->shape, dt);
  vl_tensor *gz = c.z ? vl_empty(3, u->shape, dt) : NULL;
  int64_t vshape[5] = {g.nblk, c.Bt, c.G, c.L, c.N};
  vl_tensor *gBv = c.bvar ? vl_zeros(5, vshape, dt) : NULL, *gCv = c.cvar ? vl_zeros(5, vshape, dt) : NULL;
  double *acc = malloc((size_t)VL_MAX(1, BD) * (size_t)(3 * c.N + 2) * sizeof(double));
  int rc = gc && gu && gdl && (gz || !c.z) && (gBv || !c.bvar) && (gCv || !c.cvar) ? VL_OK : vl_last_status();
  if (rc == VL_OK && acc == NULL) rc = vl_error(VL_ENOMEM, "selective_scan backward: out of memory");
  if (rc == VL_OK) {
    g.g = cdata(gc);
    g.chk = n->extra ? cdata((const vl_tensor *)n->extra) : NULL;
    g.gu = mdata(gu);
    g.gdl = mdata(gdl);
    g.gz = mdata(gz);
    g.gA = acc;
    g.gBf = c.bvar ? NULL : acc + BD * c.N;
    g.gCf = c.cvar ? NULL : acc + 2 * BD * c.N;
    g.gD = acc + 3 * BD * c.N;
    g.gbias = g.gD + BD;
    g.gBv = mdata(gBv);
    g.gCv = mdata(gCv);
    rc = ssm_backward(&c, &g);
  }
  /* sums over the batch (and the channel blocks), in order */
  vl_tensor *gA = NULL, *gBf = NULL, *gCf = NULL, *gDt = NULL, *gbt = NULL;
  if (rc == VL_OK) {
    int64_t ash[2] = {c.D, c.N}, dsh[1] = {c.D};
    gA = vl_empty(2, ash, dt);
    gBf = c.bvar ? NULL : vl_empty(2, ash, dt);
    gCf = c.cvar ? NULL : vl_empty(2, ash, dt);
    gDt = vl_empty(1, dsh, dt);
    gbt = vl_empty(1, dsh, dt);
    if (!gA || (!c.bvar && !gBf) || (!c.cvar && !gCf) || !gDt || !gbt) rc = vl_last_status();
  }
  if (rc == VL_OK) {
    vl_tensor *dst[3] = {gA, gBf, gCf};
    const double *src[3] = {g.gA, g.gBf, g.gCf};
    for (int k = 0; k < 3; k++) {
      if (dst[k] == NULL) continue;
      for (int64_t i = 0; i < c.D * c.N; i++) {
        double s = 0;
        for (int64_t b = 0; b < c.Bt; b++) s += src[k][b * c.D * c.N + i];
        ST(mdata(dst[k]), i, dt, s);
      }
    }
    for (int64_t i = 0; i < c.D; i++) {
      double s1 = 0, s2 = 0;
      for (int64_t b = 0; b < c.Bt; b++) {
        s1 += g.gD[b * c.D + i];
        s2 += g.gbias[b * c.D + i];
      }
      ST(mdata(gDt), i, dt, s1);
      ST(mdata(gbt), i, dt, s2);
    }
    vl_tensor *vs[2] = {gBv, gCv};
    for (int k = 0; k < 2; k++) {
      if (vs[k] == NULL || g.nblk == 1) continue;
      int64_t m = c.Bt * c.G * c.L * c.N;
      NN_TYPED(dt, {
        real *p = mdata(vs[k]);
        for (int64_t blk = 1; blk < g.nblk; blk++)
          for (int64_t i = 0; i < m; i++) p[i] += p[blk * m + i];
      });
    }
  }
  /* hand out the gradients */
  vl_tensor *bc[2] = {NULL, NULL};
  for (int k = 0; k < 2 && rc == VL_OK; k++) {
    vl_tensor *vt = k == 0 ? gBv : gCv;
    if (vt == NULL) {
      bc[k] = k == 0 ? gBf : gCf;
      vl_tensor_retain(bc[k]);
      continue;
    }
    /* block 0 of [nblk,Bt,G,L,N] -> [Bt,G,N,L] -> the input's shape */
    vl_tensor *b0 = vl_narrow(vt, 0, 0, 1);
    vl_tensor *v4 = b0 ? vl_view(b0, 4, (int64_t[]){c.Bt, c.G, c.L, c.N}) : NULL;
    vl_tensor *p = v4 ? vl_permute(v4, (const int[]){0, 1, 3, 2}) : NULL;
    vl_tensor *pc = p ? vl_contiguous(p) : NULL;
    bc[k] = pc ? vl_view(pc, n->in_ndim[3 + k], n->in_shape[3 + k]) : NULL;
    vl_tensor *tmp[4] = {b0, v4, p, pc};
    release_all(4, tmp);
    if (bc[k] == NULL) rc = vl_last_status();
  }
  vl_tensor *all[8] = {gu, gdl, gA, bc[0], bc[1], gDt, gz, gbt};
  for (int i = 0; i < 8 && rc == VL_OK; i++) {
    if (!n->needs[i]) continue;
    vl_tensor_retain(all[i]);
    rc = give(n, i, all[i], gi);
  }
  release_all(8, all);
  vl_tensor *tmp[5] = {gc, gBv, gCv, gBf, gCf};
  release_all(5, tmp);
  free(acc);
  return rc;
}

static void free_tensor_extra(void *p) { vl_tensor_release(p); }

static vl_tensor *scan_fwd(const vl_tensor *u, const vl_tensor *delta, const vl_tensor *A, const vl_tensor *B,
                           const vl_tensor *C, const vl_tensor *D, const vl_tensor *z, const vl_tensor *delta_bias,
                           bool softplus, bool rec, vl_tensor **last_state) {
  const char *op = "selective_scan";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (need_tensor(op, "u", u) || need_tensor(op, "delta", delta) || need_tensor(op, "A", A) ||
      need_tensor(op, "B", B) || need_tensor(op, "C", C))
    return NULL;
  const vl_tensor *all[8] = {u, delta, A, B, C, D, z, delta_bias};
  const char *names[8] = {"u", "delta", "A", "B", "C", "D", "z", "delta_bias"};
  for (int i = 0; i < 8; i++)
    if (need_float(op, names[i], all[i])) return NULL;
  if (u->ndim != 3)
    return vl_error(VL_ESHAPE, "%s: u must be 3-d [batch, dim, len], got shape %s", op,
                    vl_shape_str(u->ndim, u->shape, s1)),
           NULL;
  int64_t Bt = u->shape[0], Dm = u->shape[1], L = u->shape[2];
  if (delta->ndim != 3 || delta->shape[0] != Bt || delta->shape[1] != Dm || delta->shape[2] != L)
    return vl_error(VL_ESHAPE, "%s: delta has shape %s but u has shape %s (they must match)", op,
                    vl_shape_str(delta->ndim, delta->shape, s1), vl_shape_str(3, u->shape, s2)),
           NULL;
  if (z && (z->ndim != 3 || z->shape[0] != Bt || z->shape[1] != Dm || z->shape[2] != L))
    return vl_error(VL_ESHAPE, "%s: z has shape %s but u has shape %s (they must match)", op,
                    vl_shape_str(z->ndim, z->shape, s1), vl_shape_str(3, u->shape, s2)),
           NULL;
  if (A->ndim != 2 || A->shape[0] != Dm)
    return vl_error(VL_ESHAPE, "%s: A has shape %s, expected [%lld, state] (dim of u %s)", op,
                    vl_shape_str(A->ndim, A->shape, s1), (long long)Dm, vl_shape_str(3, u->shape, s2)),
           NULL;
  int64_t N = A->shape[1], Gb = 1, Gc = 1;
  bool bvar, cvar;
  if (check_bc(op, "B", B, Bt, Dm, L, N, &bvar, &Gb) || check_bc(op, "C", C, Bt, Dm, L, N, &cvar, &Gc)) return NULL;
  if (bvar && cvar && Gb != Gc)
    return vl_error(VL_ESHAPE, "%s: B has %lld groups and C has %lld (they must match)", op, (long long)Gb,
                    (long long)Gc),
           NULL;
  if (check_vec(op, "D", D, Dm, "channel") || check_vec(op, "delta_bias", delta_bias, Dm, "channel")) return NULL;
  int64_t nel, nch = ssm_nchunks(L), tmp;
  if (__builtin_mul_overflow(Bt, Dm, &nel) || __builtin_mul_overflow(nel, L, &tmp) ||
      __builtin_mul_overflow(nel, nch, &tmp) || __builtin_mul_overflow(tmp, N, &tmp) ||
      __builtin_mul_overflow(Bt * (bvar ? Gb : Gc), L, &tmp) || __builtin_mul_overflow(tmp, N * 64, &tmp))
    return vl_error(VL_ENOMEM, "%s: sizes batch %lld, dim %lld, len %lld, state %lld overflow int64", op,
                    (long long)Bt, (long long)Dm, (long long)L, (long long)N),
           NULL;
  vl_dtype odt = out_dtype(8, all), dt = work_of(odt);
  ssm_ctx c;
  memset(&c, 0, sizeof c);
  c.dt = dt;
  c.Bt = Bt;
  c.D = Dm;
  c.L = L;
  c.N = N;
  c.G = bvar ? Gb : cvar ? Gc : 1;
  c.Dg = Dm / c.G;
  c.bvar = bvar;
  c.cvar = cvar;
  c.softplus = softplus;
  vl_tensor *p[8] = {wcopy(u, dt), wcopy(delta, dt), wcopy(A, dt), prep_bc(B, bvar, dt), prep_bc(C, cvar, dt),
                     wcopy(D, dt), wcopy(z, dt), wcopy(delta_bias, dt)};
  vl_tensor *out = NULL, *Y = NULL, *last = NULL, *chk = NULL;
  bool ok = true;
  for (int i = 0; i < 8; i++) ok = ok && (p[i] || !all[i]);
  if (ok) {
    c.u = cdata(p[0]);
    c.dl = cdata(p[1]);
    c.A = cdata(p[2]);
    c.Bm = cdata(p[3]);
    c.Cm = cdata(p[4]);
    c.Dv = cdata(p[5]);
    c.z = cdata(p[6]);
    c.bias = cdata(p[7]);
    Y = vl_empty(3, u->shape, dt);
    if (last_state) last = vl_empty(3, (int64_t[]){Bt, Dm, N}, dt);
    if (rec) chk = vl_empty(4, (int64_t[]){Bt, Dm, nch, N}, dt);
    ok = Y && (last || !last_state) && (chk || !rec);
  }
  if (ok && ssm_forward(&c, mdata(Y), mdata(last), mdata(chk)) == VL_OK) {
    vl_tensor_retain(Y);
    out = finish(Y, odt);
    if (out && rec) {
      vl_node *nd = vl_ag_node(op, selective_scan_backward, 8, all);
      bool good = nd != NULL;
      for (int i = 0; good && i < 8; i++) {
        if (p[i]) {
          good = vl_ag_save(nd, p[i]) >= 0;
        } else {
          nd->saved[nd->nsaved++] = NULL;
        }
      }
      if (good) {
        nd->iarg[0] = softplus;
        nd->iarg[1] = bvar;
        nd->iarg[2] = cvar;
        nd->iarg[3] = c.G;
        nd->extra = chk;
        nd->free_extra = free_tensor_extra;
        chk = NULL;
        good = vl_ag_attach(out, nd) == VL_OK;
        if (good) nd = NULL;
      }
      vl_ag_node_release(nd);
      if (!good) {
        vl_tensor_release(out);
        out = NULL;
      }
    }
    if (out && last_state) {
      vl_tensor_retain(last);
      *last_state = finish(last, odt);
      if (*last_state == NULL) {
        vl_tensor_release(out);
        out = NULL;
      }
    }
  }
  release_all(8, p);
  vl_tensor *t3[3] = {Y, last, chk};
  release_all(3, t3);
  return out;
}

vl_tensor *vl_selective_scan(const vl_tensor *u, const vl_tensor *delta, const vl_tensor *A, const vl_tensor *B,
                             const vl_tensor *C, const vl_tensor *D, const vl_tensor *z, const vl_tensor *delta_bias,
                             bool delta_softplus, vl_tensor **last_state) {
  if (last_state) *last_state = NULL;
  bool rec = vl_ag_needed(8, (const vl_tensor *[]){u, delta, A, B, C, D, z, delta_bias});
  bool was = vl_ag_pause();
  vl_tensor *y = scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, rec, last_state);
  vl_set_grad_enabled(was);
  return y;
}

/* ------------------------------------------------------------------ */
/* One step of the scan                                                */
/* ------------------------------------------------------------------ */

/* B_t or C_t of the step as a 3-d [Bt or 1, G, N] view: [Bt,N] -> G = 1,
   [D,N] (when D != Bt) -> [1,D,N], [Bt or 1,G,N] as is. */
static vl_tensor *step_bc(const char *op, const char *what, const vl_tensor *t, int64_t Bt, int64_t Dm, int64_t N) {
  char s[VL_SHAPE_STR];
  if (t->ndim == 2 && t->shape[1] == N && (t->shape[0] == Bt || t->shape[0] == Dm))
    return vl_unsqueeze(t, t->shape[0] == Bt ? 1 : 0);
  if (t->ndim == 3 && (t->shape[0] == Bt || t->shape[0] == 1) && t->shape[2] == N && t->shape[1] >= 1 &&
      Dm % t->shape[1] == 0)
    return vl_tensor_retain((vl_tensor *)t), (vl_tensor *)t;
  return vl_error(VL_ESHAPE,
                  "%s: %s has shape %s, expected [%lld,%lld] (batch, state), [%lld,%lld] (dim, state) or "
                  "[%lld or 1,G,%lld] (groups G dividing dim %lld)",
                  op, what, vl_shape_str(t->ndim, t->shape, s), (long long)Bt, (long long)N, (long long)Dm,
                  (long long)N, (long long)Bt, (long long)N, (long long)Dm),
         NULL;
}

/* The step's rows r0..r1-1, in the same arithmetic as the full forward
   (same exp, softplus, sigmoid and sums), so that the two agree to the
   last bits or nearly. */
typedef struct step_args {
  int64_t Bt, D, N, bbs, cbs, dgb, dgc;
  bool softplus;
  const void *in[9]; /* state, u, delta, A, B, C, D, z, delta_bias */
  void *ns, *y;
} step_args;

VL_ALWAYS_INLINE void step_rows(const step_args *s, int64_t r0, int64_t r1, vl_dtype dt, int64_t NC) {
  NN_TYPED(dt, {
    const int64_t N = NC, Dm = s->D;
    const real *S = s->in[0], *U = s->in[1], *DL = s->in[2], *AA = s->in[3], *BB = s->in[4], *CC = s->in[5];
    const real *DD = s->in[6], *Z = s->in[7], *BI = s->in[8];
    real *NS = s->ns, *Y = s->y;
    for (int64_t r = r0; r < r1; r++) {
      int64_t b = r / Dm, d = r % Dm;
      real dlt = DL[r] + (BI ? BI[d] : 0);
      if (s->softplus) dlt = SSM_SOFTPLUS(dlt);
      real du = dlt * U[r], y = 0;
      const real *Bq = BB + b * s->bbs + (d / s->dgb) * N, *Cq = CC + b * s->cbs + (d / s->dgc) * N;
      const real *A = AA + d * N, *x = S + r * N;
      real *xo = NS + r * N;
      if (N == 16) {
        real pv[16];
        SSM_SIMD
        for (int64_t n = 0; n < 16; n++) {
          real xn = SSM_EXP(dlt * A[n]) * x[n] + du * Bq[n];
          xo[n] = xn;
          pv[n] = xn * Cq[n];
        }
        SSM_TREE16(pv, y);
      } else {
        SSM_SIMD_SUM(y)
        for (int64_t n = 0; n < N; n++) {
          real xn = SSM_EXP(dlt * A[n]) * x[n] + du * Bq[n];
          xo[n] = xn;
          y += xn * Cq[n];
        }
      }
      real o = y + (DD ? DD[d] : 0) * U[r];
      if (Z) o = o * Z[r] * SSM_SIGMOID(Z[r]);
      Y[r] = o;
    }
  });
}

VL_CLONES static void step_rows_f32(const step_args *s, int64_t r0, int64_t r1) {
  if (s->N == 16)
    step_rows(s, r0, r1, VL_FLOAT32, 16);
  else
    step_rows(s, r0, r1, VL_FLOAT32, s->N);
}
static void step_rows_f64(const step_args *s, int64_t r0, int64_t r1) { step_rows(s, r0, r1, VL_FLOAT64, s->N); }

int vl_selective_scan_step(const vl_tensor *state, const vl_tensor *u, const vl_tensor *delta, const vl_tensor *A,
                           const vl_tensor *B, const vl_tensor *C, const vl_tensor *D, const vl_tensor *z,
                           const vl_tensor *delta_bias, bool delta_softplus, vl_tensor **new_state, vl_tensor **y) {
  const char *op = "selective_scan_step";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (new_state == NULL || y == NULL) return vl_error(VL_EARG, "%s: new_state and y must not be NULL", op);
  *new_state = *y = NULL;
  if (need_tensor(op, "state", state) || need_tensor(op, "u", u) || need_tensor(op, "delta", delta) ||
      need_tensor(op, "A", A) || need_tensor(op, "B", B) || need_tensor(op, "C", C))
    return vl_last_status();
  const vl_tensor *all[9] = {state, u, delta, A, B, C, D, z, delta_bias};
  const char *names[9] = {"state", "u", "delta", "A", "B", "C", "D", "z", "delta_bias"};
  for (int i = 0; i < 9; i++)
    if (need_float(op, names[i], all[i])) return vl_last_status();
  if (state->ndim != 3)
    return vl_error(VL_ESHAPE, "%s: state must be 3-d [batch, dim, state], got shape %s", op,
                    vl_shape_str(state->ndim, state->shape, s1));
  int64_t Bt = state->shape[0], Dm = state->shape[1], N = state->shape[2];
  const vl_tensor *bd[3] = {u, delta, z};
  const char *bdn[3] = {"u", "delta", "z"};
  for (int i = 0; i < 3; i++)
    if (bd[i] && (bd[i]->ndim != 2 || bd[i]->shape[0] != Bt || bd[i]->shape[1] != Dm))
      return vl_error(VL_ESHAPE, "%s: %s has shape %s, expected [%lld,%lld] (batch, dim of state %s)", op, bdn[i],
                      vl_shape_str(bd[i]->ndim, bd[i]->shape, s1), (long long)Bt, (long long)Dm,
                      vl_shape_str(3, state->shape, s2));
  if (A->ndim != 2 || A->shape[0] != Dm || A->shape[1] != N)
    return vl_error(VL_ESHAPE, "%s: A has shape %s, expected [%lld,%lld] (dim, state of state %s)", op,
                    vl_shape_str(A->ndim, A->shape, s1), (long long)Dm, (long long)N,
                    vl_shape_str(3, state->shape, s2));
  if (check_vec(op, "D", D, Dm, "channel") || check_vec(op, "delta_bias", delta_bias, Dm, "channel"))
    return vl_last_status();
  vl_dtype odt = out_dtype(9, all), dt = work_of(odt);
  vl_tensor *b3 = step_bc(op, "B", B, Bt, Dm, N), *c3 = b3 ? step_bc(op, "C", C, Bt, Dm, N) : NULL;
  vl_tensor *p[9] = {NULL};
  int rc = c3 ? VL_OK : vl_last_status();
  if (rc == VL_OK) {
    p[0] = wcopy(state, dt), p[1] = wcopy(u, dt), p[2] = wcopy(delta, dt), p[3] = wcopy(A, dt);
    p[4] = wcopy(b3, dt), p[5] = wcopy(c3, dt), p[6] = wcopy(D, dt), p[7] = wcopy(z, dt);
    p[8] = wcopy(delta_bias, dt);
    for (int i = 0; i < 9; i++)
      if (all[i] && p[i] == NULL) rc = vl_last_status();
  }
  vl_tensor *ns = NULL, *yt = NULL;
  if (rc == VL_OK) {
    ns = vl_empty(3, state->shape, dt);
    yt = vl_empty(2, (int64_t[]){Bt, Dm}, dt);
    if (!ns || !yt) rc = vl_last_status();
  }
  if (rc == VL_OK) {
    int64_t Gb = b3->shape[1], Gc = c3->shape[1], bbs = b3->shape[0] == 1 ? 0 : Gb * N,
            cbs = c3->shape[0] == 1 ? 0 : Gc * N;
    step_args a = {Bt, Dm, N, bbs, cbs, Dm / Gb, Dm / Gc, delta_softplus,
                   {cdata(p[0]), cdata(p[1]), cdata(p[2]), cdata(p[3]), cdata(p[4]), cdata(p[5]), cdata(p[6]),
                    cdata(p[7]), cdata(p[8])},
                   mdata(ns), mdata(yt)};
    int64_t rows = Bt * Dm;
    NN_PRAGMA(omp parallel for if (rows * N > VL_PARALLEL_GRAIN) schedule(static))
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
      if (dt == VL_FLOAT32)
        step_rows_f32(&a, r0, VL_MIN(rows, r0 + 64));
      else
        step_rows_f64(&a, r0, VL_MIN(rows, r0 + 64));
    }
    *new_state = finish(ns, odt);
    *y = finish(yt, odt);
    ns = yt = NULL;
    if (*new_state == NULL || *y == NULL) {
      rc = vl_last_status();
      vl_tensor_release(*new_state);
      vl_tensor_release(*y);
      *new_state = *y = NULL;
    }
  }
  release_all(9, p);
  vl_tensor *t4[4] = {b3, c3, ns, yt};
  release_all(4, t4);
  return rc;
}

/* ------------------------------------------------------------------ */
/* Causal depthwise conv1d                                             */
/* ------------------------------------------------------------------ */

/* One (b, d) row: pre-activation into o (length L). */
VL_ALWAYS_INLINE void conv_row(const void *xp, const void *wp, double bias, int64_t L, int64_t W, void *op,
                               vl_dtype dt) {
  NN_TYPED(dt, {
    const real *x = xp, *w = wp;
    real *o = op;
    for (int64_t t = 0; t < L; t++) o[t] = (real)bias;
    for (int64_t k = 0; k < W; k++) {
      int64_t sh = W - 1 - k; /* o[t] += w[k] x[t - sh] */
      real wk = w[k];
      SSM_SIMD
      for (int64_t t = sh; t < L; t++) o[t] += wk * x[t - sh];
    }
  });
}
VL_CLONES static void conv_row_f32(const void *x, const void *w, double b, int64_t L, int64_t W, void *o) {
  conv_row(x, w, b, L, W, o, VL_FLOAT32);
}
static void conv_row_f64(const void *x, const void *w, double b, int64_t L, int64_t W, void *o) {
  conv_row(x, w, b, L, W, o, VL_FLOAT64);
}

static void conv_all(vl_dtype dt, const void *x, const void *w, const void *bias, int64_t Bt, int64_t Dm, int64_t L,
                     int64_t W, void *out) {
  size_t es = vl_dtype_size(dt);
#pragma omp parallel for if (Bt * Dm * L * W > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < Bt * Dm; r++) {
    int64_t d = r % Dm;
    const char *xr = (const char *)x + (size_t)(r * L) * es;
    const char *wr = (const char *)w + (size_t)(d * W) * es;
    char *o = (char *)out + (size_t)(r * L) * es;
    double bv = bias ? LD(bias, d, dt) : 0;
    if (dt == VL_FLOAT32)
      conv_row_f32(xr, wr, bv, L, W, o);
    else
      conv_row_f64(xr, wr, bv, L, W, o);
  }
}

/* saved: x, w, bias (work dtype, contiguous); iarg: silu */
static int causal_conv1d_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *x = n->saved[0], *w = n->saved[1], *bias = n->saved[2];
  vl_dtype dt = x->dtype;
  int64_t Bt = x->shape[0], Dm = x->shape[1], L = x->shape[2], W = w->shape[1];
  bool silu = n->iarg[0] != 0;
  vl_tensor *gc = wcopy(g, dt), *gp = vl_empty(3, x->shape, dt);
  vl_tensor *gx = vl_empty(3, x->shape, dt), *gw = vl_empty(2, w->shape, dt);
  vl_tensor *gb = vl_empty(1, (int64_t[]){Dm}, dt);
  int rc = gc && gp && gx && gw && gb ? VL_OK : vl_last_status();
  if (rc == VL_OK) {
    /* gradient of the pre-activation */
    if (silu) {
      conv_all(dt, cdata(x), cdata(w), cdata(bias), Bt, Dm, L, W, mdata(gp));
      NN_TYPED(dt, {
        real *P = mdata(gp);
        const real *G = cdata(gc);
        int64_t m = Bt * Dm * L;
        NN_PRAGMA(omp parallel for if (m > VL_PARALLEL_GRAIN) schedule(static))
        for (int64_t i = 0; i < m; i++) {
          real s = (real)(1.0 / (1.0 + exp(-(double)P[i])));
          P[i] = G[i] * s * (1 + P[i] * (1 - s));
        }
      });
    } else {
      memcpy(mdata(gp), cdata(gc), (size_t)(Bt * Dm * L) * vl_dtype_size(dt));
    }
    NN_TYPED(dt, {
      const real *P = cdata(gp), *X = cdata(x), *Wt = cdata(w);
      real *GX = mdata(gx), *GW = mdata(gw), *GB = mdata(gb);
      NN_PRAGMA(omp parallel for if (Bt * Dm * L * W > VL_PARALLEL_GRAIN) schedule(static))
      for (int64_t d = 0; d < Dm; d++) {
        double sb = 0;
        for (int64_t k = 0; k < W; k++) {
          int64_t sh = W - 1 - k;
          double sw = 0;
          for (int64_t b = 0; b < Bt; b++) {
            const real *pr = P + (b * Dm + d) * L, *xr = X + (b * Dm + d) * L;
            real s = 0;
            SSM_SIMD_SUM(s)
            for (int64_t t = sh; t < L; t++) s += pr[t] * xr[t - sh];
            sw += (double)s;
          }
          GW[d * W + k] = (real)sw;
        }
        for (int64_t b = 0; b < Bt; b++) {
          const real *pr = P + (b * Dm + d) * L;
          real *gr = GX + (b * Dm + d) * L;
          real s = 0;
          SSM_SIMD_SUM(s)
          for (int64_t t = 0; t < L; t++) s += pr[t];
          sb += (double)s;
          for (int64_t t = 0; t < L; t++) gr[t] = 0;
          for (int64_t k = 0; k < W; k++) {
            int64_t sh = W - 1 - k; /* gx[t - sh] += w[k] p[t] */
            real wk = Wt[d * W + k];
            SSM_SIMD
            for (int64_t t = sh; t < L; t++) gr[t - sh] += wk * pr[t];
          }
        }
        GB[d] = (real)sb;
      }
    });
  }
  vl_tensor *all[3] = {gx, gw, gb};
  for (int i = 0; i < 3 && rc == VL_OK; i++) {
    if (!n->needs[i]) continue;
    vl_tensor_retain(all[i]);
    rc = give(n, i, all[i], gi);
  }
  release_all(3, all);
  vl_tensor_release(gc);
  vl_tensor_release(gp);
  return rc;
}

static int check_conv(const char *op, const vl_tensor *x, int xnd, const vl_tensor *w, const vl_tensor *bias) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (need_tensor(op, "x", x) || need_tensor(op, "weight", w)) return vl_last_status();
  if (need_float(op, "x", x) || need_float(op, "weight", w) || need_float(op, "bias", bias)) return vl_last_status();
  if (x->ndim != xnd)
    return vl_error(VL_ESHAPE, "%s: x must be %s, got shape %s", op, xnd == 3 ? "3-d [batch, dim, len]" : "2-d [batch, dim]",
                    vl_shape_str(x->ndim, x->shape, s1));
  if (w->ndim != 2 || w->shape[0] != x->shape[1] || w->shape[1] < 1)
    return vl_error(VL_ESHAPE, "%s: weight has shape %s, expected [%lld, width >= 1] (dim of x %s)", op,
                    vl_shape_str(w->ndim, w->shape, s1), (long long)x->shape[1], vl_shape_str(x->ndim, x->shape, s2));
  return check_vec(op, "bias", bias, x->shape[1], "channel");
}

static vl_tensor *conv_fwd(const vl_tensor *x, const vl_tensor *w, const vl_tensor *bias, bool silu, bool rec) {
  const char *op = "causal_conv1d";
  if (check_conv(op, x, 3, w, bias)) return NULL;
  int64_t Bt = x->shape[0], Dm = x->shape[1], L = x->shape[2], W = w->shape[1], tmp;
  if (__builtin_mul_overflow(Bt * Dm, L, &tmp) || __builtin_mul_overflow(tmp, W, &tmp))
    return vl_error(VL_ENOMEM, "%s: sizes overflow int64", op), NULL;
  const vl_tensor *all[3] = {x, w, bias};
  vl_dtype odt = out_dtype(3, all), dt = work_of(odt);
  vl_tensor *p[3] = {wcopy(x, dt), wcopy(w, dt), wcopy(bias, dt)};
  vl_tensor *out = NULL;
  if (p[0] && p[1] && (p[2] || !bias)) {
    vl_tensor *o = vl_empty(3, x->shape, dt);
    if (o) {
      conv_all(dt, cdata(p[0]), cdata(p[1]), cdata(p[2]), Bt, Dm, L, W, mdata(o));
      if (silu) {
        NN_TYPED(dt, {
          real *P = mdata(o);
          int64_t m = Bt * Dm * L;
          NN_PRAGMA(omp parallel for if (m > VL_PARALLEL_GRAIN) schedule(static))
          for (int64_t i = 0; i < m; i++) P[i] = P[i] / (1 + (real)exp(-(double)P[i]));
        });
      }
      out = finish(o, odt);
      if (out && rec)
        out = record(out, op, causal_conv1d_backward, 3, all, 3, (const vl_tensor *const *)p, NULL,
                     (const int64_t[VL_NODE_MAX_ARGS]){silu});
    }
  }
  release_all(3, p);
  return out;
}

vl_tensor *vl_causal_conv1d(const vl_tensor *x, const vl_tensor *weight, const vl_tensor *bias, bool silu) {
  bool rec = vl_ag_needed(3, (const vl_tensor *[]){x, weight, bias});
  bool was = vl_ag_pause();
  vl_tensor *y = conv_fwd(x, weight, bias, silu, rec);
  vl_set_grad_enabled(was);
  return y;
}

int vl_causal_conv1d_step(const vl_tensor *x, const vl_tensor *conv_state, const vl_tensor *weight,
                          const vl_tensor *bias, bool silu, vl_tensor **y, vl_tensor **new_state) {
  const char *op = "causal_conv1d_step";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (y == NULL || new_state == NULL) return vl_error(VL_EARG, "%s: y and new_state must not be NULL", op);
  *y = *new_state = NULL;
  if (check_conv(op, x, 2, weight, bias) || need_tensor(op, "conv_state", conv_state) ||
      need_float(op, "conv_state", conv_state))
    return vl_last_status();
  int64_t Bt = x->shape[0], Dm = x->shape[1], W = weight->shape[1];
  if (conv_state->ndim != 3 || conv_state->shape[0] != Bt || conv_state->shape[1] != Dm ||
      conv_state->shape[2] != W)
    return vl_error(VL_ESHAPE, "%s: conv_state has shape %s, expected [%lld,%lld,%lld] (batch, dim of x %s, width)",
                    op, vl_shape_str(conv_state->ndim, conv_state->shape, s1), (long long)Bt, (long long)Dm,
                    (long long)W, vl_shape_str(2, x->shape, s2));
  const vl_tensor *all[4] = {x, conv_state, weight, bias};
  vl_dtype odt = out_dtype(4, all), dt = work_of(odt);
  vl_tensor *p[4] = {wcopy(x, dt), wcopy(conv_state, dt), wcopy(weight, dt), wcopy(bias, dt)};
  int rc = p[0] && p[1] && p[2] && (p[3] || !bias) ? VL_OK : vl_last_status();
  vl_tensor *ns = NULL, *yt = NULL;
  if (rc == VL_OK) {
    ns = vl_empty(3, conv_state->shape, dt);
    yt = vl_empty(2, x->shape, dt);
    if (!ns || !yt) rc = vl_last_status();
  }
  if (rc == VL_OK) {
    NN_TYPED(dt, {
      const real *X = cdata(p[0]), *S = cdata(p[1]), *Wt = cdata(p[2]), *BI = cdata(p[3]);
      real *NS = mdata(ns), *Y = mdata(yt);
      for (int64_t r = 0; r < Bt * Dm; r++) {
        int64_t d = r % Dm;
        real acc = BI ? BI[d] : 0;
        for (int64_t k = 0; k < W; k++) {
          real v = k + 1 < W ? S[r * W + k + 1] : X[r];
          NS[r * W + k] = v;
          acc += Wt[d * W + k] * v;
        }
        if (silu) acc = acc / (1 + (real)exp(-(double)acc));
        Y[r] = acc;
      }
    });
    *y = finish(yt, odt);
    *new_state = finish(ns, odt);
    yt = ns = NULL;
    if (*y == NULL || *new_state == NULL) {
      rc = vl_last_status();
      vl_tensor_release(*y);
      vl_tensor_release(*new_state);
      *y = *new_state = NULL;
    }
  }
  release_all(4, p);
  vl_tensor_release(ns);
  vl_tensor_release(yt);
  return rc;
}
