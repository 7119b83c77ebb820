/*
** attention.c — scaled dot-product attention (ops/vl.h "Attention"):
** vl_attention (fused, tiled) and vl_attention_weights (the same maths with
** the Lq x Lk weights materialised, for visualisation), with one fused
** backward beside them.
**
**   out = dropout(softmax(q k^T * scale + mask)) v
**   q [B,H,Lq,d], k [B,H,Lk,d], v [B,H,Lk,dv] -> out [B,H,Lq,dv]
**   (3-d inputs [B,L,d] are taken as H = 1)
**
** Forward (FlashAttention, Dao et al. 2022, algorithm 1 with the online
** softmax of Milakov & Gimelshein 2018): tasks are (batch*head, block of
** ATT_BQ query rows), spread over OpenMP threads. A task walks the keys in
** blocks of ATT_BK: S = scale * Q_blk K_blk^T (vl_sgemm, on the calling
** thread), mask, then per row the running max m and sum l are updated,
** P = exp(S - m), the output rows rescaled by exp(m_old - m) and
** O += P V_blk (vl_sgemm). Extra memory is one ATT_BQ x ATT_BK block per
** thread (two with dropout): the Lq x Lk matrix never exists. Each row's
** logsumexp L = m + log l is saved for the backward.
**
** Backward (FlashAttention algorithm 2): D = rowsum(dO * O); tasks are
** (batch*head, chunk of key blocks). For each key block and each query
** block the task recomputes S and P = exp(S - L), then
**   dV_j += P^T dO_i,  dP = dO_i V_j^T,  dS = P * (dP - D_i),
**   dK_j += scale dS^T Q_i,  dQ_i += scale dS K_j.
** dK/dV rows belong to one task; dQ goes to one buffer per key chunk,
** added in chunk order afterwards (several chunks only when batch*heads
** < ATT_BWD_TASKS; their buffers stay under ATT_BWD_DQ_BYTES). The chunk
** count depends on the sizes only, so results are the same for every
** thread count. Per thread: two blocks (four with dropout).
**
** Masks: bool (true = may attend, as torch's scaled_dot_product_attention)
** or additive float, broadcastable to [B,H,Lq,Lk], read through strides
** (never expanded). causal: query i attends keys j <= i (top-left aligned
** lower triangle, PyTorch's is_causal). Both may be given (ANDed). A query
** row whose keys are all masked gives an output row of 0 (PyTorch: NaN)
** and zero gradients; its logsumexp is stored as +inf.
**
** Dropout (p > 0) zeroes attention probabilities with the vl Philox
** generator and scales the rest by 1/(1-p): the forward reserves one
** counter block per 4 elements of [B,H,Lq,Lk] and element e (row-major)
** is kept when word e%4 of block e/4 is below (1-p)*2^32 — the same
** numbers vl.dropout would draw for a contiguous [B,H,Lq,Lk] tensor at
** the same generator state. The backward regenerates the mask from the
** saved (seed, offset). The normaliser l sums the probabilities before
** dropout, as PyTorch. The reservation goes through vl_get_rng_state /
** vl_set_rng_state (random.c keeps its atomic reserve private), so two OS
** threads drawing at the same moment may share counter blocks.
**
** Layout: q, k, v are used in place when their last dim is contiguous and
** the sequence stride covers a row (any batch/head strides: permuted and
** expanded views need no copy); otherwise they are copied. float16 and
** bfloat16 are computed in float32; float64 runs plain loops (gradcheck).
** The float32 row kernels (online softmax, exp, dS, dropout draws) are
** also compiled for AVX-512 and AVX2 and picked by CPU feature, as
** ops/gemm.c does: built for baseline x86-64 the exps cost as much as the
** GEMMs.
** Gradients of an additive mask are not computed: a mask that requires
** grad is refused while recording.
*/
#include "nn_internal.h"

/* Query rows per forward task and key rows per block. The S block
   (ATT_BQ x ATT_BK floats, 256 KiB) and the K/V blocks stay in L2. Measured
   on one AVX-512 core, B=1 H=8 d=64 L=1024, forward GFLOP/s: 64x128 61,
   128x128 67, 128x256 77, 256x256 85, 256x512 87 (vl_sgemm 1024^2: 140);
   256x256 keeps 32 tasks at B*H = 32, L = 256. */
#ifndef ATT_BQ
#define ATT_BQ 256
#endif
#ifndef ATT_BK
#define ATT_BK 256
#endif
/* Backward: aim for at least this many (batch*head, key chunk) tasks. */
#define ATT_BWD_TASKS 16
/* Backward: most bytes the per-chunk dQ buffers may take together. */
#define ATT_BWD_DQ_BYTES ((int64_t)64 << 20)


typedef struct att_ctx {
  vl_dtype dt;                 /* work dtype: float32 or float64 */
  int64_t B, H, Lq, Lk, d, dv;
  const char *q, *k, *v;       /* element [0,0,0,0] */
  int64_t qs[3], ks[3], vs[3]; /* strides of dims B, H, L (elements); last dim unit */
  int mkind;                   /* 0 none, 1 bool, 2 additive (work dtype) */
  const char *m;
  int64_t ms[4];               /* mask strides broadcast to [B,H,Lq,Lk] */
  bool causal;
  double scale;
  double p;                    /* dropout */
  uint64_t seed, base;         /* Philox key and first counter block */
} att_ctx;

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/* Loops GCC vectorises (no-trapping-math, nn_internal.h; the float64
   exp loops become calls to libmvec or stay scalar quietly); clang cannot
   vectorise the max without fast-math nor the float64 exp calls, and
   warns that it did not (the fuzz build compiles ops/ with clang). */
#if defined(__clang__)
#define ATT_SIMD_MAX(v)
#define ATT_SIMD_SUM(v)
#define ATT_SIMD
#else
#define ATT_SIMD_MAX(v) NN_PRAGMA(omp simd reduction(max : v))
#define ATT_SIMD_SUM(v) NN_SIMD_SUM(v)
#define ATT_SIMD NN_SIMD
#endif

/* float32 exp with results below FLT_MIN flushed to 0 (no subnormals). */
VL_ALWAYS_INLINE float att_expf(float x) { return vl_expf(x < (float)NN_EXPF_TINY ? -INFINITY : x); }
#define ATT_EXP(x) (sizeof(real) == sizeof(float) ? (real)att_expf((float)(x)) : (real)exp((double)(x)))

/* C = alpha op(A) op(B) + beta C: vl_sgemm for float32, plain loops for
   float64 (gradcheck sizes; no BLAS threads inside the parallel loops). */
static void att_gemm(vl_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const void *A,
                     int64_t lda, const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
  if (dt == VL_FLOAT32) {
    vl_sgemm(ta, tb, M, N, K, (float)alpha, A, lda, B, ldb, (float)beta, C, ldc);
    return;
  }
  const double *a = A, *b = B;
  double *c = C;
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) {
      double s = 0;
      for (int64_t kk = 0; kk < K; kk++) s += (ta ? a[kk * lda + i] : a[i * lda + kk]) * (tb ? b[j * ldb + kk] : b[kk * ldb + j]);
      c[i * ldc + j] = alpha * s + (beta == 0 ? 0.0 : beta * c[i * ldc + j]);
    }
}

/* Masked entries of an S block (rows i0.., cols j0..) become -inf;
   additive masks are added. */
VL_ALWAYS_INLINE void mask_block(const att_ctx *c, int64_t bh, int64_t i0, int64_t j0, int64_t mq, int64_t nk,
                                 void *Sv, int64_t lds, vl_dtype dt) {
  NN_TYPED(dt, {
    real *S = Sv;
    if (c->causal)
      for (int64_t r = 0; r < mq; r++) {
        int64_t first = i0 + r - j0 + 1; /* first masked column */
        for (int64_t col = first < 0 ? 0 : first; col < nk; col++) S[r * lds + col] = -INFINITY;
      }
    if (c->mkind) {
      int64_t b = bh / c->H, h = bh % c->H;
      int64_t es = c->mkind == 1 ? 1 : (int64_t)sizeof(real);
      const char *mb = c->m + (b * c->ms[0] + h * c->ms[1] + i0 * c->ms[2] + j0 * c->ms[3]) * es;
      int64_t s2 = c->ms[2], s3 = c->ms[3];
      for (int64_t r = 0; r < mq; r++) {
        real *Sr = S + r * lds;
        if (c->mkind == 1) {
          const uint8_t *mr = (const uint8_t *)mb + r * s2;
          for (int64_t col = 0; col < nk; col++)
            if (!mr[col * s3]) Sr[col] = -INFINITY;
        } else {
          const real *mr = (const real *)mb + r * s2;
          for (int64_t col = 0; col < nk; col++) Sr[col] += mr[col * s3];
        }
      }
    }
  });
}

/* Philox 4x32-10 (as ops/random.c, Salmon et al. 2011) on ATT_LANES
   consecutive counter blocks at once, laid out for the compiler to
   vectorise across lanes; out[j][l] is word j of block c + l. Checked
   against vl_philox4x32_10 through the dropout specs (vl.dropout). */
#define ATT_LANES 16
VL_ALWAYS_INLINE void att_philox_lanes(uint64_t c, uint32_t k0, uint32_t k1, uint32_t out[4][ATT_LANES]) {
  uint32_t x0[ATT_LANES], x1[ATT_LANES], x2[ATT_LANES], x3[ATT_LANES];
  for (int l = 0; l < ATT_LANES; l++) {
    uint64_t cl = c + (uint64_t)l;
    x0[l] = (uint32_t)cl;
    x1[l] = (uint32_t)(cl >> 32);
    x2[l] = 0;
    x3[l] = 0;
  }
  for (int r = 0; r < 10; r++) {
    NN_SIMD
    for (int l = 0; l < ATT_LANES; l++) {
      uint64_t p0 = (uint64_t)0xD2511F53u * x0[l];
      uint64_t p1 = (uint64_t)0xCD9E8D57u * x2[l];
      uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[l] ^ k0;
      uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3[l] ^ k1;
      x1[l] = (uint32_t)p1;
      x3[l] = (uint32_t)p0;
      x0[l] = y0;
      x2[l] = y2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  memcpy(out[0], x0, sizeof x0);
  memcpy(out[1], x1, sizeof x1);
  memcpy(out[2], x2, sizeof x2);
  memcpy(out[3], x3, sizeof x3);
}

/* Dropout multipliers for elements e0 .. e0+n-1 of [B,H,Lq,Lk]: Z[i] =
   zs when word e%4 of counter block base + e/4 is below thresh (=
   ceil((1-p) 2^32): the same test as vl_bernoulli_'s w 2^-32 < 1-p),
   else 0. */
VL_ALWAYS_INLINE void dropout_row_body(uint64_t seed, uint64_t base, uint64_t e0, int64_t n, uint64_t thresh,
                                       double zs, void *Zv, vl_dtype dt) {
  NN_TYPED(dt, {
    real *Z = Zv, zr = (real)zs;
    uint32_t w[4][ATT_LANES], u[4 * ATT_LANES];
    uint64_t end = e0 + (uint64_t)n;
    for (uint64_t b = e0 >> 2; b <= (end - 1) >> 2; b += ATT_LANES) {
      att_philox_lanes(base + b, (uint32_t)seed, (uint32_t)(seed >> 32), w);
      for (int l = 0; l < ATT_LANES; l++)
        for (int x = 0; x < 4; x++) u[4 * l + x] = w[x][l]; /* element order */
      uint64_t lo = VL_MAX(e0, 4 * b), hi = VL_MIN(end, 4 * (b + ATT_LANES));
      real *Zb = Z + (lo - e0);
      const uint32_t *ub = u + (lo - 4 * b);
      NN_SIMD
      for (int64_t i = 0; i < (int64_t)(hi - lo); i++) Zb[i] = (uint64_t)ub[i] < thresh ? zr : (real)0;
    }
  });
}

static void dropout_row_f32_base(uint64_t seed, uint64_t base, uint64_t e0, int64_t n, uint64_t thresh, double zs,
                                 void *Z) {
  dropout_row_body(seed, base, e0, n, thresh, zs, Z, VL_FLOAT32);
}
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("avx512f"))) static void dropout_row_f32_avx512(uint64_t seed, uint64_t base, uint64_t e0,
                                                                      int64_t n, uint64_t thresh, double zs,
                                                                      void *Z) {
  dropout_row_body(seed, base, e0, n, thresh, zs, Z, VL_FLOAT32);
}
__attribute__((target("avx2"))) static void dropout_row_f32_avx2(uint64_t seed, uint64_t base, uint64_t e0, int64_t n,
                                                                 uint64_t thresh, double zs, void *Z) {
  dropout_row_body(seed, base, e0, n, thresh, zs, Z, VL_FLOAT32);
}
#endif

/* Dropout multipliers of a block: Z[r, col] = 1/(1-p) or 0 for element
   (bh, i0 + r, j0 + col) of [B,H,Lq,Lk]. */
static void dropout_block(const att_ctx *c, int64_t bh, int64_t i0, int64_t j0, int64_t mq, int64_t nk, void *Zv,
                          int64_t ldz, vl_dtype dt) {
  double keep = 1.0 - c->p, zs = c->p < 1 ? 1.0 / keep : 0.0;
  uint64_t thresh = (uint64_t)ceil(keep * 4294967296.0);
  size_t es = vl_dtype_size(dt);
  void (*row)(uint64_t, uint64_t, uint64_t, int64_t, uint64_t, double, void *) = dropout_row_f32_base;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  if (__builtin_cpu_supports("avx512f"))
    row = dropout_row_f32_avx512;
  else if (__builtin_cpu_supports("avx2"))
    row = dropout_row_f32_avx2;
#endif
  if (nk <= 0) return;
  for (int64_t r = 0; r < mq; r++) {
    uint64_t e0 = ((uint64_t)(bh * c->Lq + i0 + r)) * (uint64_t)c->Lk + (uint64_t)j0;
    void *Zr = (char *)Zv + (size_t)(r * ldz) * es;
    if (dt == VL_FLOAT32)
      row(c->seed, c->base, e0, nk, thresh, zs, Zr);
    else
      dropout_row_body(c->seed, c->base, e0, nk, thresh, zs, Zr, VL_FLOAT64);
  }
}

/* ------------------------------------------------------------------ */
/* Row kernels (the softmax work between the GEMMs)                    */
/* ------------------------------------------------------------------ */

/* Online softmax over one S block: per row, the new running max m, P =
   exp(S - m) in place, l = l * exp(m_old - m) + sum P, and the output row
   rescaled by exp(m_old - m). A row whose keys so far are all masked
   keeps m = -inf, l = 0 and gets P = 0. */
VL_ALWAYS_INLINE void softmax_rows_body(void *Sv, int64_t lds, int64_t mq, int64_t nk, void *mv, void *lv, void *Ov,
                                        int64_t dv, vl_dtype dt) {
  NN_TYPED(dt, {
    real *S = Sv, *m = mv, *l = lv, *O = Ov;
    for (int64_t r = 0; r < mq; r++) {
      real *Sr = S + r * lds;
      real mx = -INFINITY;
      ATT_SIMD_MAX(mx)
      for (int64_t col = 0; col < nk; col++) mx = Sr[col] > mx ? Sr[col] : mx;
      real mnew = mx > m[r] ? mx : m[r];
      if (mnew == -INFINITY) {
        for (int64_t col = 0; col < nk; col++) Sr[col] = 0;
        continue;
      }
      real sum = 0;
      ATT_SIMD_SUM(sum)
      for (int64_t col = 0; col < nk; col++) {
        real e = ATT_EXP(Sr[col] - mnew);
        Sr[col] = e;
        sum += e;
      }
      real alpha = ATT_EXP(m[r] - mnew);
      if (alpha != 1) {
        real *Or = O + r * dv;
        NN_SIMD
        for (int64_t x = 0; x < dv; x++) Or[x] *= alpha;
      }
      l[r] = l[r] * alpha + sum;
      m[r] = mnew;
    }
  });
}

/* Backward: P = exp(S - L) per row, in place (L = +inf: a 0 row). */
VL_ALWAYS_INLINE void exp_rows_body(void *Sv, int64_t lds, int64_t mq, int64_t nk, const void *Lv, vl_dtype dt) {
  NN_TYPED(dt, {
    real *S = Sv;
    const real *L = Lv;
    for (int64_t r = 0; r < mq; r++) {
      real *Sr = S + r * lds, Lr = L[r];
      ATT_SIMD
      for (int64_t col = 0; col < nk; col++) Sr[col] = ATT_EXP(Sr[col] - Lr);
    }
  });
}

/* Backward: dS = P * (dP * Z - D) per row, into dP (Z: dropout
   multipliers or NULL). */
VL_ALWAYS_INLINE void ds_rows_body(const void *Pv, void *dPv, const void *Zv, int64_t lds, int64_t mq, int64_t nk,
                                   const void *Dv, vl_dtype dt) {
  NN_TYPED(dt, {
    const real *P = Pv, *Z = Zv, *D = Dv;
    real *dP = dPv;
    for (int64_t r = 0; r < mq; r++) {
      const real *Sr = P + r * lds;
      real *dPr = dP + r * lds, Dr = D[r];
      if (Z) {
        const real *Zr = Z + r * lds;
        NN_SIMD
        for (int64_t col = 0; col < nk; col++) dPr[col] = Sr[col] * (dPr[col] * Zr[col] - Dr);
      } else {
        NN_SIMD
        for (int64_t col = 0; col < nk; col++) dPr[col] = Sr[col] * (dPr[col] - Dr);
      }
    }
  });
}

/* float32 versions compiled for AVX-512 and AVX2 as well (the build
   targets baseline x86-64), picked by CPU feature as ops/gemm.c does:
   the exps are as much work as the GEMMs otherwise. */
#define ATT_ROW_FNS(SUF, ATTR)                                                                                    \
  ATTR static void softmax_rows_##SUF(void *S, int64_t lds, int64_t mq, int64_t nk, void *m, void *l, void *O,   \
                                      int64_t dv) {                                                               \
    softmax_rows_body(S, lds, mq, nk, m, l, O, dv, VL_FLOAT32);                                                   \
  }                                                                                                               \
  ATTR static void exp_rows_##SUF(void *S, int64_t lds, int64_t mq, int64_t nk, const void *L) {                 \
    exp_rows_body(S, lds, mq, nk, L, VL_FLOAT32);                                                                 \
  }                                                                                                               \
  ATTR static void ds_rows_##SUF(const void *P, void *dP, const void *Z, int64_t lds, int64_t mq, int64_t nk,    \
                                 const void *D) {                                                                 \
    ds_rows_body(P, dP, Z, lds, mq, nk, D, VL_FLOAT32);                                                           \
  }

ATT_ROW_FNS(base, )
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define ATT_X86 1
ATT_ROW_FNS(avx512, __attribute__((target("avx512f,fma"))))
ATT_ROW_FNS(avx2, __attribute__((target("avx2,fma"))))
#endif

/* 2: AVX-512, 1: AVX2 + FMA, 0: baseline. */
static int att_isa(void) {
#ifdef ATT_X86
  if (__builtin_cpu_supports("avx512f")) return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}

static void softmax_rows(void *S, int64_t lds, int64_t mq, int64_t nk, void *m, void *l, void *O, int64_t dv,
                         vl_dtype dt) {
  if (dt == VL_FLOAT64) return softmax_rows_body(S, lds, mq, nk, m, l, O, dv, VL_FLOAT64);
#ifdef ATT_X86
  int isa = att_isa();
  if (isa == 2) return softmax_rows_avx512(S, lds, mq, nk, m, l, O, dv);
  if (isa == 1) return softmax_rows_avx2(S, lds, mq, nk, m, l, O, dv);
#endif
  softmax_rows_base(S, lds, mq, nk, m, l, O, dv);
}

static void exp_rows(void *S, int64_t lds, int64_t mq, int64_t nk, const void *L, vl_dtype dt) {
  if (dt == VL_FLOAT64) return exp_rows_body(S, lds, mq, nk, L, VL_FLOAT64);
#ifdef ATT_X86
  int isa = att_isa();
  if (isa == 2) return exp_rows_avx512(S, lds, mq, nk, L);
  if (isa == 1) return exp_rows_avx2(S, lds, mq, nk, L);
#endif
  exp_rows_base(S, lds, mq, nk, L);
}

static void ds_rows(const void *P, void *dP, const void *Z, int64_t lds, int64_t mq, int64_t nk, const void *D,
                    vl_dtype dt) {
  if (dt == VL_FLOAT64) return ds_rows_body(P, dP, Z, lds, mq, nk, D, VL_FLOAT64);
#ifdef ATT_X86
  int isa = att_isa();
  if (isa == 2) return ds_rows_avx512(P, dP, Z, lds, mq, nk, D);
  if (isa == 1) return ds_rows_avx2(P, dP, Z, lds, mq, nk, D);
#endif
  ds_rows_base(P, dP, Z, lds, mq, nk, D);
}

/* Element [b, h, i, 0] of a prepared input. */
static inline const char *row_ptr(const char *base, const int64_t *s, int64_t b, int64_t h, int64_t i, size_t es) {
  return base + (b * s[0] + h * s[1] + i * s[2]) * (int64_t)es;
}

/* ------------------------------------------------------------------ */
/* Forward                                                             */
/* ------------------------------------------------------------------ */

/* One forward task: query rows i0 .. i0+mq-1 of head bh. S is a block of
   ATT_BQ x bk (ld lds); the weights path passes the rows of the weights
   tensor with bk = Lk. O rows (contiguous, dv wide) accumulate in place.
   Z: a dropout block (or NULL). */
VL_ALWAYS_INLINE void fwd_task(const att_ctx *c, int64_t bh, int64_t i0, int64_t mq, int64_t bk, void *Sv,
                               int64_t lds, void *Zv, void *mv, void *lv, void *Ov, void *Lv, bool weights,
                               vl_dtype dt) {
  NN_TYPED(dt, {
    size_t es = sizeof(real);
    int64_t b = bh / c->H, h = bh % c->H, dv = c->dv;
    const real *Q = (const real *)row_ptr(c->q, c->qs, b, h, i0, es);
    const real *K = (const real *)row_ptr(c->k, c->ks, b, h, 0, es);
    const real *V = (const real *)row_ptr(c->v, c->vs, b, h, 0, es);
    real *S = Sv, *Z = Zv, *m = mv, *l = lv;
    real *O = (real *)Ov + (bh * c->Lq + i0) * dv, *L = (real *)Lv + bh * c->Lq + i0;
    for (int64_t r = 0; r < mq; r++) {
      m[r] = -INFINITY;
      l[r] = 0;
    }
    memset(O, 0, (size_t)(mq * dv) * es);
    int64_t jend = c->causal ? VL_MIN(c->Lk, i0 + mq) : c->Lk;
    for (int64_t j0 = 0; j0 < jend; j0 += bk) {
      int64_t nk = VL_MIN(bk, jend - j0);
      att_gemm(dt, false, true, mq, nk, c->d, c->scale, Q, c->qs[2], K + j0 * c->ks[2], c->ks[2], 0, S, lds);
      mask_block(c, bh, i0, j0, mq, nk, S, lds, dt);
      softmax_rows(S, lds, mq, nk, m, l, O, dv, dt);
      if (Z) {
        dropout_block(c, bh, i0, j0, mq, nk, Z, bk, dt);
        for (int64_t r = 0; r < mq; r++) {
          real *Sr = S + r * lds, *Zr = Z + r * bk;
          NN_SIMD
          for (int64_t col = 0; col < nk; col++) Sr[col] *= Zr[col];
        }
      }
      att_gemm(dt, false, false, mq, dv, nk, 1, S, lds, V + j0 * c->vs[2], c->vs[2], 1, O, dv);
    }
    for (int64_t r = 0; r < mq; r++) {
      real inv = l[r] > 0 ? (real)1 / l[r] : 0;
      real *Or = O + r * dv;
      NN_SIMD
      for (int64_t x = 0; x < dv; x++) Or[x] *= inv;
      L[r] = l[r] > 0 ? m[r] + (real)log((double)l[r]) : (real)INFINITY;
      if (weights) {
        real *Sr = S + r * lds;
        NN_SIMD
        for (int64_t col = 0; col < jend; col++) Sr[col] *= inv;
      }
    }
  });
}

/* O [BH, Lq, dv] and L [BH*Lq] (contiguous, work dtype) from the context;
   W (weights path): [BH, Lq, Lk] zero-filled, or NULL for the fused path. */
static int att_forward(const att_ctx *c, void *O, void *Lse, void *W) {
  vl_dtype dt = c->dt;
  size_t es = vl_dtype_size(dt);
  int64_t BH = c->B * c->H, nqb = (c->Lq + ATT_BQ - 1) / ATT_BQ, ntask = BH * nqb;
  int64_t bk = W ? VL_MAX(c->Lk, 1) : ATT_BK;
  size_t sblock = W ? 0 : (size_t)(ATT_BQ * ATT_BK);
  size_t zblock = c->p > 0 ? (size_t)ATT_BQ * (size_t)bk : 0;
  int failed = 0;
  if (ntask == 0) return VL_OK;
  double work = (double)BH * (double)c->Lq * (double)c->Lk * (double)(c->d + c->dv);
#pragma omp parallel if (ntask > 1 && work > VL_PARALLEL_GRAIN)
  {
    char *buf = malloc((sblock + zblock + 2 * ATT_BQ) * es);
    if (buf == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntask; t++) {
      if (buf == NULL) continue;
      int64_t bh = t / nqb, i0 = (t % nqb) * ATT_BQ, mq = VL_MIN(ATT_BQ, c->Lq - i0);
      char *S = W && c->Lk > 0 ? (char *)W + (size_t)((bh * c->Lq + i0) * c->Lk) * es : buf;
      int64_t lds = W ? c->Lk : ATT_BK;
      void *Z = zblock ? buf + sblock * es : NULL;
      void *m = buf + (sblock + zblock) * es, *l = buf + (sblock + zblock + ATT_BQ) * es;
      if (dt == VL_FLOAT32)
        fwd_task(c, bh, i0, mq, bk, S, lds, Z, m, l, O, Lse, W != NULL, VL_FLOAT32);
      else
        fwd_task(c, bh, i0, mq, bk, S, lds, Z, m, l, O, Lse, W != NULL, VL_FLOAT64);
    }
    free(buf);
  }
  if (failed) return vl_error(VL_ENOMEM, "attention: out of memory for the per-thread blocks");
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Backward                                                            */
/* ------------------------------------------------------------------ */

/* Key block j0..j0+nk-1 of head bh against every query block. dO, dK, dV:
   contiguous [BH, L, *]; dQ: this chunk's [BH, Lq, d] buffer; D, L: [BH*Lq].
   S, dP, Z, Pd: ATT_BQ x ATT_BK blocks (Z, Pd only with dropout). */
VL_ALWAYS_INLINE void bwd_block(const att_ctx *c, int64_t bh, int64_t j0, int64_t nk, const void *dOv,
                                const void *Dv, const void *Lv, void *dQv, void *dKv, void *dVv, void *Sv,
                                void *dPv, void *Zv, void *Pdv, vl_dtype dt) {
  NN_TYPED(dt, {
    size_t es = sizeof(real);
    int64_t b = bh / c->H, h = bh % c->H, d = c->d, dv = c->dv, lds = ATT_BK;
    const real *K = (const real *)row_ptr(c->k, c->ks, b, h, j0, es);
    const real *V = (const real *)row_ptr(c->v, c->vs, b, h, j0, es);
    real *dK = (real *)dKv + (bh * c->Lk + j0) * d, *dV = (real *)dVv + (bh * c->Lk + j0) * dv;
    real *S = Sv, *dP = dPv, *Z = Zv, *Pd = Pdv;
    for (int64_t i0 = c->causal ? j0 / ATT_BQ * ATT_BQ : 0; i0 < c->Lq; i0 += ATT_BQ) {
      int64_t mq = VL_MIN(ATT_BQ, c->Lq - i0);
      const real *Q = (const real *)row_ptr(c->q, c->qs, b, h, i0, es);
      const real *dO = (const real *)dOv + (bh * c->Lq + i0) * dv;
      const real *D = (const real *)Dv + bh * c->Lq + i0, *L = (const real *)Lv + bh * c->Lq + i0;
      real *dQ = (real *)dQv + (bh * c->Lq + i0) * d;
      att_gemm(dt, false, true, mq, nk, d, c->scale, Q, c->qs[2], K, c->ks[2], 0, S, lds);
      mask_block(c, bh, i0, j0, mq, nk, S, lds, dt);
      exp_rows(S, lds, mq, nk, L, dt);
      const real *P = S;
      if (Z) {
        dropout_block(c, bh, i0, j0, mq, nk, Z, lds, dt);
        for (int64_t x = 0; x < mq * lds; x++) Pd[x] = S[x] * Z[x];
        P = Pd;
      }
      att_gemm(dt, true, false, nk, dv, mq, 1, P, lds, dO, dv, 1, dV, dv);
      att_gemm(dt, false, true, mq, nk, dv, 1, dO, dv, V, c->vs[2], 0, dP, lds);
      ds_rows(S, dP, Z, lds, mq, nk, D, dt);
      att_gemm(dt, true, false, nk, d, mq, c->scale, dP, lds, Q, c->qs[2], 1, dK, d);
      att_gemm(dt, false, false, mq, d, nk, c->scale, dP, lds, K, c->ks[2], 1, dQ, d);
    }
  });
}

VL_ALWAYS_INLINE void rowdot(const void *av, const void *bv, void *outv, int64_t rows, int64_t n, vl_dtype dt) {
  NN_TYPED(dt, {
    const real *a = av, *bb = bv;
    real *out = outv;
    NN_PRAGMA(omp parallel for if (rows * n > VL_PARALLEL_GRAIN) schedule(static))
    for (int64_t r = 0; r < rows; r++) {
      double s = 0;
      NN_SIMD_SUM(s)
      for (int64_t x = 0; x < n; x++) s += (double)a[r * n + x] * (double)bb[r * n + x];
      out[r] = (real)s;
    }
  });
}

/* dQ, dK, dV (contiguous, zeroed, work dtype) from dO and the saved O, L. */
static int att_backward(const att_ctx *c, const void *dO, const void *O, const void *Lse, void *dQ, void *dK,
                        void *dV) {
  vl_dtype dt = c->dt;
  size_t es = vl_dtype_size(dt);
  int64_t BH = c->B * c->H, nkb = (c->Lk + ATT_BK - 1) / ATT_BK;
  if (BH == 0 || c->Lq == 0 || nkb == 0) return VL_OK;
  /* chunks of key blocks: from the sizes only (thread-count independent) */
  int64_t dq_bytes = BH * c->Lq * c->d * (int64_t)es;
  int64_t nch = BH >= ATT_BWD_TASKS ? 1 : (ATT_BWD_TASKS + BH - 1) / BH;
  nch = VL_MIN(nch, nkb);
  if (dq_bytes > 0) nch = VL_MAX(1, VL_MIN(nch, ATT_BWD_DQ_BYTES / dq_bytes));
  int64_t per = (nkb + nch - 1) / nch;
  nch = (nkb + per - 1) / per;
  char *D = malloc((size_t)(BH * c->Lq) * es);
  char *dqb = nch > 1 ? calloc((size_t)nch, (size_t)dq_bytes) : NULL;
  if (D == NULL || (nch > 1 && dqb == NULL && dq_bytes > 0)) {
    free(D);
    free(dqb);
    return vl_error(VL_ENOMEM, "attention backward: out of memory for %lld dQ buffers of %lld bytes",
                    (long long)nch, (long long)dq_bytes);
  }
  if (dt == VL_FLOAT32)
    rowdot(dO, O, D, BH * c->Lq, c->dv, VL_FLOAT32);
  else
    rowdot(dO, O, D, BH * c->Lq, c->dv, VL_FLOAT64);
  size_t blk = (size_t)(ATT_BQ * ATT_BK), nblk = c->p > 0 ? 4 : 2;
  int64_t ntask = BH * nch;
  int failed = 0;
  double work = (double)BH * (double)c->Lq * (double)c->Lk * (double)(c->d + c->dv);
#pragma omp parallel if (ntask > 1 && work > VL_PARALLEL_GRAIN)
  {
    char *buf = malloc(nblk * blk * es);
    if (buf == NULL) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < ntask; t++) {
      if (buf == NULL) continue;
      int64_t bh = t / nch, ch = t % nch;
      void *dq = nch > 1 ? dqb + (size_t)ch * (size_t)dq_bytes : dQ;
      void *S = buf, *dP = buf + blk * es, *Z = nblk > 2 ? buf + 2 * blk * es : NULL;
      void *Pd = nblk > 2 ? buf + 3 * blk * es : NULL;
      for (int64_t kb = ch * per; kb < VL_MIN(nkb, (ch + 1) * per); kb++) {
        int64_t j0 = kb * ATT_BK, nk = VL_MIN(ATT_BK, c->Lk - j0);
        if (dt == VL_FLOAT32)
          bwd_block(c, bh, j0, nk, dO, D, Lse, dq, dK, dV, S, dP, Z, Pd, VL_FLOAT32);
        else
          bwd_block(c, bh, j0, nk, dO, D, Lse, dq, dK, dV, S, dP, Z, Pd, VL_FLOAT64);
      }
    }
    free(buf);
  }
  if (!failed && nch > 1) { /* dQ = sum of the chunks, in chunk order */
    int64_t n = BH * c->Lq * c->d;
    NN_TYPED(dt, {
      real *q = dQ;
      const real *src = (const real *)dqb;
      NN_PRAGMA(omp parallel for if (n > VL_PARALLEL_GRAIN) schedule(static))
      for (int64_t x = 0; x < n; x++) {
        real s = 0;
        for (int64_t ch = 0; ch < nch; ch++) s += src[ch * n + x];
        q[x] = s;
      }
    });
  }
  free(D);
  free(dqb);
  if (failed) return vl_error(VL_ENOMEM, "attention backward: out of memory for the per-thread blocks");
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Argument checks and preparation                                     */
/* ------------------------------------------------------------------ */


/* t (3-d [B,L,x] or 4-d [B,H,L,x]) as a 4-d tensor of dtype dt whose last
   dim is contiguous and whose rows do not overlap: a view of t when it is
   one (permuted and expanded views included), else a contiguous copy. */
static vl_tensor *prep_input(const vl_tensor *t, vl_dtype dt) {
  vl_tensor *u = t->ndim == 3 ? vl_unsqueeze(t, 1) : (vl_tensor_retain((vl_tensor *)t), (vl_tensor *)t);
  vl_tensor *c = u ? vl_to_dtype(u, dt) : NULL;
  vl_tensor_release(u);
  if (c == NULL) return NULL;
  int64_t x = c->shape[3];
  bool ok = (x <= 1 || c->stride[3] == 1) && (c->shape[2] <= 1 || c->stride[2] >= x);
  if (ok) return c;
  vl_tensor *r = vl_contiguous(c);
  vl_tensor_release(c);
  return r;
}

static void fill_ctx(att_ctx *c, const vl_tensor *q, const vl_tensor *k, const vl_tensor *v, const vl_tensor *m,
                     bool causal, double scale, double p, uint64_t seed, uint64_t base) {
  memset(c, 0, sizeof *c);
  c->dt = q->dtype;
  c->B = q->shape[0];
  c->H = q->shape[1];
  c->Lq = q->shape[2];
  c->d = q->shape[3];
  c->Lk = k->shape[2];
  c->dv = v->shape[3];
  const vl_tensor *in[3] = {q, k, v};
  const char **ptr[3] = {&c->q, &c->k, &c->v};
  int64_t *st[3] = {c->qs, c->ks, c->vs};
  for (int i = 0; i < 3; i++) {
    *ptr[i] = vl_data_ptr(in[i]);
    st[i][0] = in[i]->stride[0];
    st[i][1] = in[i]->stride[1];
    st[i][2] = in[i]->shape[2] <= 1 ? VL_MAX(in[i]->shape[3], 1) : in[i]->stride[2];
  }
  if (m) {
    c->mkind = m->dtype == VL_BOOL ? 1 : 2;
    c->m = vl_data_ptr(m);
    int64_t shape[4] = {c->B, c->H, c->Lq, c->Lk};
    vl_broadcast_strides(m, 4, shape, c->ms);
  }
  c->causal = causal;
  c->scale = scale;
  c->p = p;
  c->seed = seed;
  c->base = base;
}

/* The mask as a 4-d tensor broadcastable to [B,H,Lq,Lk] (a bool view, or
   an additive mask in dtype dt); target is the user's [B,(H,)Lq,Lk]. */
static vl_tensor *prep_mask(const vl_tensor *mask, int nd, const int64_t *target, vl_dtype dt) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (mask->dtype != VL_BOOL && !vl_dtype_is_float(mask->dtype))
    return vl_error(VL_EDTYPE,
                    "attention: mask must be a bool tensor (true = may attend) or a floating-point additive mask, "
                    "got %s",
                    vl_dtype_name(mask->dtype)),
           NULL;
  bool fits = mask->ndim <= nd;
  for (int i = 0; fits && i < mask->ndim; i++) {
    int64_t ms = mask->shape[mask->ndim - 1 - i], ts = target[nd - 1 - i];
    fits = ms == ts || ms == 1;
  }
  if (!fits)
    return vl_error(VL_ESHAPE, "attention: mask of shape %s does not broadcast to %s (%s)",
                    vl_shape_str(mask->ndim, mask->shape, s1), vl_shape_str(nd, target, s2),
                    nd == 4 ? "[B,H,Lq,Lk]" : "[B,Lq,Lk]"),
           NULL;
  int64_t shape[4], stride[4];
  for (int i = 0; i < 4; i++) {
    int src = nd == 3 ? (i == 1 ? -1 : (i == 0 ? 0 : i - 1)) : i; /* target dim i of [B,H,Lq,Lk] in user dims */
    int md = src < 0 ? -1 : src - (nd - mask->ndim);
    shape[i] = md >= 0 ? mask->shape[md] : 1;
    stride[i] = md >= 0 ? mask->stride[md] : 0;
  }
  vl_tensor *v4 = vl_as_strided(mask, 4, shape, stride, mask->offset);
  if (v4 == NULL) return NULL;
  if (mask->dtype == VL_BOOL) return v4;
  vl_tensor *c = vl_to_dtype(v4, dt);
  vl_tensor_release(v4);
  return c;
}

/* saved: q, k, v (prepared), O, L (work dtype), mask (prepared or NULL);
   arg: scale, p; iarg: causal, seed, first counter block */
static int attention_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *O = n->saved[3], *L = n->saved[4];
  const vl_tensor *m = n->saved[5];
  att_ctx c;
  fill_ctx(&c, q, k, v, m, n->iarg[0] != 0, n->arg[0], n->arg[1], (uint64_t)n->iarg[1], (uint64_t)n->iarg[2]);
  vl_tensor *gc = wcopy(g, c.dt), *g4 = gc ? vl_view(gc, 4, O->shape) : NULL;
  vl_tensor_release(gc);
  vl_tensor *d[3] = {vl_zeros(4, q->shape, c.dt), vl_zeros(4, k->shape, c.dt), vl_zeros(4, v->shape, c.dt)};
  int rc = g4 && d[0] && d[1] && d[2] ? VL_OK : vl_last_status();
  if (rc == VL_OK)
    rc = att_backward(&c, vl_data_ptr(g4), vl_data_ptr(O), vl_data_ptr(L), vl_data_ptr(d[0]), vl_data_ptr(d[1]),
                      vl_data_ptr(d[2]));
  for (int i = 0; i < 3 && rc == VL_OK; i++) {
    if (!n->needs[i]) continue;
    rc = give(n, i, vl_view(d[i], n->in_ndim[i], n->in_shape[i]), gi);
  }
  release_all(3, d);
  vl_tensor_release(g4);
  return rc;
}

static vl_tensor *attention_fwd(const vl_tensor *q, const vl_tensor *k, const vl_tensor *v, const vl_tensor *mask,
                                bool causal, double scale, double p, bool rec, vl_tensor **weights) {
  const char *op = "attention";
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR], s3[VL_SHAPE_STR];
  if (need_tensor(op, "q", q) || need_tensor(op, "k", k) || need_tensor(op, "v", v)) return NULL;
  if (q->ndim != 3 && q->ndim != 4)
    return vl_error(VL_ESHAPE, "attention: q must be 4-d [B,H,Lq,d] or 3-d [B,Lq,d], got shape %s",
                    vl_shape_str(q->ndim, q->shape, s1)),
           NULL;
  if (k->ndim != q->ndim || v->ndim != q->ndim)
    return vl_error(VL_ESHAPE, "attention: q %s, k %s and v %s must have the same number of dims (4-d [B,H,L,d] or 3-d [B,L,d])",
                    vl_shape_str(q->ndim, q->shape, s1), vl_shape_str(k->ndim, k->shape, s2),
                    vl_shape_str(v->ndim, v->shape, s3)),
           NULL;
  if (need_float(op, "q", q) || need_float(op, "k", k) || need_float(op, "v", v)) return NULL;
  if (q->dtype != k->dtype || q->dtype != v->dtype)
    return vl_error(VL_EDTYPE, "attention: q, k and v must have one dtype, got q %s, k %s, v %s",
                    vl_dtype_name(q->dtype), vl_dtype_name(k->dtype), vl_dtype_name(v->dtype)),
           NULL;
  int nd = q->ndim;
  for (int i = 0; i < nd - 2; i++)
    if (k->shape[i] != q->shape[i] || v->shape[i] != q->shape[i])
      return vl_error(VL_ESHAPE, "attention: q %s, k %s and v %s must agree on the batch%s dims",
                      vl_shape_str(nd, q->shape, s1), vl_shape_str(nd, k->shape, s2), vl_shape_str(nd, v->shape, s3),
                      nd == 4 ? " and head" : ""),
             NULL;
  int64_t Lq = q->shape[nd - 2], d = q->shape[nd - 1], Lk = k->shape[nd - 2], dv = v->shape[nd - 1];
  if (k->shape[nd - 1] != d)
    return vl_error(VL_ESHAPE, "attention: k %s has last dim %lld but q %s has head dim d = %lld (they must match)",
                    vl_shape_str(nd, k->shape, s1), (long long)k->shape[nd - 1], vl_shape_str(nd, q->shape, s2),
                    (long long)d),
           NULL;
  if (v->shape[nd - 2] != Lk)
    return vl_error(VL_ESHAPE, "attention: v %s has %lld rows but k %s has %lld keys (they must match)",
                    vl_shape_str(nd, v->shape, s1), (long long)v->shape[nd - 2], vl_shape_str(nd, k->shape, s2),
                    (long long)Lk),
           NULL;
  if (!(p >= 0 && p <= 1)) return vl_error(VL_EARG, "attention: dropout must be in [0, 1], got %g", p), NULL;
  if (isnan(scale)) scale = d > 0 ? 1.0 / sqrt((double)d) : 1.0;
  if (!isfinite(scale)) return vl_error(VL_EARG, "attention: scale must be finite, got %g", scale), NULL;
  int64_t B = q->shape[0], H = nd == 4 ? q->shape[1] : 1, nel;
  if (__builtin_mul_overflow(B, H, &nel) || __builtin_mul_overflow(nel, Lq, &nel) ||
      __builtin_mul_overflow(nel, Lk, &nel) || nel > INT64_MAX / 4)
    return vl_error(VL_ENOMEM, "attention: B*H*Lq*Lk = %lld*%lld*%lld*%lld overflows int64", (long long)B,
                    (long long)H, (long long)Lq, (long long)Lk),
           NULL;
  vl_dtype dt = work_of(q->dtype);
  int64_t tshape[4] = {B, H, Lq, Lk}, ushape[4];
  for (int i = 0; i < nd - 2; i++) ushape[i] = q->shape[i];
  ushape[nd - 2] = Lq;
  ushape[nd - 1] = Lk;
  vl_tensor *qp = prep_input(q, dt), *kp = qp ? prep_input(k, dt) : NULL, *vp = kp ? prep_input(v, dt) : NULL;
  vl_tensor *mp = vp && mask ? prep_mask(mask, nd, ushape, dt) : NULL;
  int64_t oshape[4] = {B, H, Lq, dv};
  vl_tensor *O = vp && (mp || !mask) ? vl_empty(4, oshape, dt) : NULL;
  int64_t lshape[1] = {B * H * Lq};
  vl_tensor *Lse = O ? vl_empty(1, lshape, dt) : NULL;
  vl_tensor *W = Lse && weights ? vl_zeros(4, tshape, dt) : NULL;
  vl_tensor *out = NULL;
  if (Lse && (W || !weights)) {
    uint64_t seed = 0, base = 0;
    if (p > 0 && nel > 0) {
      vl_get_rng_state(&seed, &base);
      vl_set_rng_state(seed, base + (uint64_t)(nel + 3) / 4);
    }
    att_ctx c;
    fill_ctx(&c, qp, kp, vp, mp, causal, scale, p, seed, base);
    if (att_forward(&c, vl_data_ptr(O), vl_data_ptr(Lse), W ? vl_data_ptr(W) : NULL) == VL_OK) {
      out = nd == 4 ? (vl_tensor_retain(O), O) : vl_view(O, 3, (int64_t[]){B, Lq, dv});
      out = finish(out, q->dtype);
      if (out && rec)
        out = record(out, op, attention_backward, 3, (const vl_tensor *[]){q, k, v}, 6,
                     (const vl_tensor *[]){qp, kp, vp, O, Lse, mp}, (const double[VL_NODE_MAX_ARGS]){scale, p},
                     (const int64_t[VL_NODE_MAX_ARGS]){causal, (int64_t)seed, (int64_t)base});
      if (out && weights) {
        vl_tensor *w = nd == 4 ? (vl_tensor_retain(W), W) : vl_view(W, 3, ushape);
        *weights = finish(w, q->dtype);
        if (*weights == NULL) {
          vl_tensor_release(out);
          out = NULL;
        }
      }
    }
  }
  vl_tensor *tmp[7] = {qp, kp, vp, mp, O, Lse, W};
  release_all(7, tmp);
  return out;
}

static vl_tensor *attention_entry(const vl_tensor *q, const vl_tensor *k, const vl_tensor *v, const vl_tensor *mask,
                                  bool causal, double scale, double dropout, vl_tensor **weights) {
  if (mask && vl_is_grad_enabled() && vl_requires_grad(mask))
    return vl_error(VL_EARG,
                    "attention: the additive mask requires grad, but gradients to the mask are not supported "
                    "(pass mask:detach(), or a bool mask)"),
           NULL;
  bool rec = vl_ag_needed(3, (const vl_tensor *[]){q, k, v});
  bool was = vl_ag_pause();
  vl_tensor *y = attention_fwd(q, k, v, mask, causal, scale, dropout, rec, weights);
  vl_set_grad_enabled(was);
  return y;
}

vl_tensor *vl_attention(const vl_tensor *q, const vl_tensor *k, const vl_tensor *v, const vl_tensor *mask,
                        bool causal, double scale, double dropout) {
  return attention_entry(q, k, v, mask, causal, scale, dropout, NULL);
}

int vl_attention_weights(const vl_tensor *q, const vl_tensor *k, const vl_tensor *v, const vl_tensor *mask,
                         bool causal, double scale, double dropout, vl_tensor **out, vl_tensor **weights) {
  if (out == NULL || weights == NULL)
    return vl_error(VL_EARG, "attention_weights: out and weights must not be NULL");
  *out = *weights = NULL;
  *out = attention_entry(q, k, v, mask, causal, scale, dropout, weights);
  return *out ? VL_OK : vl_last_status();
}
