/*
** gemm.c — float32 matrix multiply, C = alpha * op(A) @ op(B) + beta * C
** (vl_sgemm; declared in vl_internal.h, used by linalg.c, conv.c, nn.c and
** attention.c).
**
** Why not only OpenBLAS: Debian's OpenBLAS picks its kernels from the CPU
** *model*, and on CPUs it does not know (the machines this project runs on
** report a generic "Intel Xeon Processor" with AVX-512) it falls back to its
** SSE3 "Prescott" kernels, leaving most of the FMA width idle. vl_sgemm
** picks by CPU *features* instead (__builtin_cpu_supports): an AVX-512
** micro-kernel, an AVX2+FMA one, and cblas_sgemm on every other CPU, when
** a pack buffer cannot be allocated, or when the environment says
** VLUA_GEMM=blas (to compare).
** float64 stays on OpenBLAS (it serves gradcheck, not speed).
**
** The scheme is Goto's (as in BLIS and OpenBLAS): C is computed in
** KC-deep slices; each slice of op(B) is packed into NR-wide column panels
** and each MC-row block of op(A) into MR-tall row panels, both laid out in
** the order the micro-kernel reads them; the micro-kernel keeps an MR x NR
** block of C in registers (broadcast one A value, FMA it with NR/lanes
** vectors of B) and adds it to C once per slice. Panels are zero-padded;
** edge tiles store their valid corner under AVX-512 masks (AVX2: a full
** block into a scratch tile, then the valid part copied). Packing also
** absorbs the transposes and any row/column strides (hardware gathers).
**
** Threads: inside an OpenMP parallel region the caller already splits the
** work (conv runs images over threads), so the product runs on the calling
** thread. Outside, a product past VL_GEMM_PAR_WORK multiply-adds is cut into
** a grid of C blocks, one per thread, each packing its own panels (the
** repeated packing of the shared operand costs O(size) against O(M N K)).
** Pack buffers are kept per thread and grown, never shrunk.
*/
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include <cblas.h>
#include <omp.h>

#include "vl_internal.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define VL_GEMM_X86 1
#include <immintrin.h>
#endif

/* Depth of one packed slice (A panel MR*KC and B panel KC*NR stay in L1/L2). */
#define VL_GEMM_KC 256
/* Rows of op(A) packed at once (a multiple of every MR; MC*KC floats ~ L2/4). */
#define VL_GEMM_MC 192
/* Columns of op(B) packed at once (a multiple of every NR; KC*NC floats ~ L3 share). */
#define VL_GEMM_NC 2048
/* Largest MR x NR over the kernels (scratch tile size). */
#define VL_GEMM_TILE (12 * 32)
/* Products with fewer multiply-adds than this run on one thread. */
#define VL_GEMM_PAR_WORK (1 << 21)

/* op(A)[i,k] = a[i*ars + k*acs], op(B)[k,j] = b[k*brs + j*bcs], C[i,j] = c[i*ldc + j]. */
typedef struct gemm_args {
  int64_t M, N, K;
  const float *a, *b;
  float *c;
  int64_t ars, acs, brs, bcs, ldc;
  float alpha, beta;
  bool ta, tb;      /* the caller's form, for the OpenBLAS fallback */
  int64_t lda, ldb;
} gemm_args;

/* C[m0:m1, n0:n1] through OpenBLAS (callers keep sizes and leading
   dimensions within int, as it takes them); beta == 0 made explicit:
   some versions scale C by 0, which keeps NaN bits. */
static void blas_block(const gemm_args *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  float *c = g->c + m0 * g->ldc + n0;
  if (g->beta == 0)
    for (int64_t i = 0; i < m1 - m0; i++) memset(c + i * g->ldc, 0, (size_t)(n1 - n0) * sizeof(float));
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, (int)(m1 - m0),
              (int)(n1 - n0), (int)g->K, g->alpha, g->a + m0 * g->ars, (int)g->lda, g->b + n0 * g->bcs, (int)g->ldb,
              g->beta, c, (int)g->ldc);
}

/* A micro-kernel: c[MR,NR] = alpha * (a panel @ b panel) + beta * c, where
   the panels hold kc steps of MR and NR values; beta == 0 never reads c. */
typedef void (*gemm_kernel)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                            float beta);

/* A packer: dst[k*width + i] = src[k*kstep + i*istep] for i < n (zeros
   for n <= i < width), k < kc. Packing a panel whose values lie across
   rows (op(A) row-major, op(B) transposed) is a transpose; hardware
   gathers do it several times faster than scalar loops. istep == 1 is a
   plain (masked) vector copy. */
typedef void (*gemm_gather)(const float *src, int64_t istep, int64_t kstep, int64_t n, int width, int64_t kc,
                            float *dst);

/* The same for the valid rows x cols corner of an edge tile. */
typedef void (*gemm_edge_kernel)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, float alpha,
                                 float beta, int rows, int cols);

typedef struct gemm_impl {
  const char *name;
  int mr, nr;
  gemm_kernel kernel;
  gemm_edge_kernel edge; /* NULL: a full tile into scratch, then copied */
  gemm_gather gather;
} gemm_impl;

/* ------------------------------------------------------------------ */
/* Micro-kernels                                                        */
/* ------------------------------------------------------------------ */

#ifdef VL_GEMM_X86

/* AVX-512: 12 rows x 32 columns = 24 zmm accumulators, 2 for B, 1 for A. */
#define K512_ROW(i)                                  \
  av = _mm512_set1_ps(a[i]);                          \
  c##i##_0 = _mm512_fmadd_ps(av, b0, c##i##_0);       \
  c##i##_1 = _mm512_fmadd_ps(av, b1, c##i##_1);
#define K512_DECL(i) __m512 c##i##_0 = _mm512_setzero_ps(), c##i##_1 = _mm512_setzero_ps();
#define K512_STORE(i)                                                                            \
  if (beta == 0) {                                                                               \
    _mm512_storeu_ps(c + (i)*ldc, _mm512_mul_ps(va, c##i##_0));                                   \
    _mm512_storeu_ps(c + (i)*ldc + 16, _mm512_mul_ps(va, c##i##_1));                              \
  } else {                                                                                       \
    _mm512_storeu_ps(c + (i)*ldc,                                                                \
                     _mm512_fmadd_ps(va, c##i##_0, _mm512_mul_ps(vb, _mm512_loadu_ps(c + (i)*ldc)))); \
    _mm512_storeu_ps(c + (i)*ldc + 16,                                                           \
                     _mm512_fmadd_ps(va, c##i##_1,                                                \
                                     _mm512_mul_ps(vb, _mm512_loadu_ps(c + (i)*ldc + 16))));      \
  }

#define K512_BODY                                                                \
  K512_DECL(0) K512_DECL(1) K512_DECL(2) K512_DECL(3) K512_DECL(4) K512_DECL(5)    \
  K512_DECL(6) K512_DECL(7) K512_DECL(8) K512_DECL(9) K512_DECL(10) K512_DECL(11)  \
  for (int64_t k = 0; k < kc; k++) {                                             \
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), av;              \
    K512_ROW(0) K512_ROW(1) K512_ROW(2) K512_ROW(3) K512_ROW(4) K512_ROW(5)      \
    K512_ROW(6) K512_ROW(7) K512_ROW(8) K512_ROW(9) K512_ROW(10) K512_ROW(11)    \
    a += 12;                                                                     \
    b += 32;                                                                     \
  }                                                                              \
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);

__attribute__((target("avx512f,fma"))) static void kernel_avx512(int64_t kc, const float *restrict a,
                                                                  const float *restrict b, float *restrict c,
                                                                  int64_t ldc, float alpha, float beta) {
  K512_BODY
  K512_STORE(0) K512_STORE(1) K512_STORE(2) K512_STORE(3) K512_STORE(4) K512_STORE(5)
  K512_STORE(6) K512_STORE(7) K512_STORE(8) K512_STORE(9) K512_STORE(10) K512_STORE(11)
}

/* An edge tile: the first `rows` rows and `cols` columns, under masks
   (tiny products such as attention's per-head blocks are mostly edges). */
#define K512_STORE_MASKED(i)                                                                      \
  if ((i) < rows) {                                                                               \
    float *ci = c + (i)*ldc;                                                                      \
    __m512 v0 = _mm512_mul_ps(va, c##i##_0), v1 = _mm512_mul_ps(va, c##i##_1);                     \
    if (beta != 0) {                                                                              \
      v0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), v0);                                 \
      v1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), v1);                            \
    }                                                                                             \
    _mm512_mask_storeu_ps(ci, m0, v0);                                                            \
    _mm512_mask_storeu_ps(ci + 16, m1, v1);                                                       \
  }

__attribute__((target("avx512f,fma"))) static void kernel_avx512_edge(int64_t kc, const float *restrict a,
                                                                       const float *restrict b, float *restrict c,
                                                                       int64_t ldc, float alpha, float beta, int rows,
                                                                       int cols) {
  __mmask16 m0 = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
  __mmask16 m1 = (__mmask16)(cols <= 16 ? 0 : cols >= 32 ? 0xFFFF : (1u << (cols - 16)) - 1);
  K512_BODY
  K512_STORE_MASKED(0) K512_STORE_MASKED(1) K512_STORE_MASKED(2) K512_STORE_MASKED(3)
  K512_STORE_MASKED(4) K512_STORE_MASKED(5) K512_STORE_MASKED(6) K512_STORE_MASKED(7)
  K512_STORE_MASKED(8) K512_STORE_MASKED(9) K512_STORE_MASKED(10) K512_STORE_MASKED(11)
}

/* AVX2 + FMA: 6 rows x 16 columns = 12 ymm accumulators, 2 for B, 1 for A. */
#define K256_ROW(i)                                  \
  av = _mm256_broadcast_ss(a + (i));                  \
  c##i##_0 = _mm256_fmadd_ps(av, b0, c##i##_0);       \
  c##i##_1 = _mm256_fmadd_ps(av, b1, c##i##_1);
#define K256_DECL(i) __m256 c##i##_0 = _mm256_setzero_ps(), c##i##_1 = _mm256_setzero_ps();
#define K256_STORE(i)                                                                            \
  if (beta == 0) {                                                                               \
    _mm256_storeu_ps(c + (i)*ldc, _mm256_mul_ps(va, c##i##_0));                                   \
    _mm256_storeu_ps(c + (i)*ldc + 8, _mm256_mul_ps(va, c##i##_1));                               \
  } else {                                                                                       \
    _mm256_storeu_ps(c + (i)*ldc,                                                                \
                     _mm256_fmadd_ps(va, c##i##_0, _mm256_mul_ps(vb, _mm256_loadu_ps(c + (i)*ldc)))); \
    _mm256_storeu_ps(c + (i)*ldc + 8,                                                            \
                     _mm256_fmadd_ps(va, c##i##_1,                                                \
                                     _mm256_mul_ps(vb, _mm256_loadu_ps(c + (i)*ldc + 8))));       \
  }

__attribute__((target("avx2,fma"))) static void kernel_avx2(int64_t kc, const float *restrict a,
                                                             const float *restrict b, float *restrict c,
                                                             int64_t ldc, float alpha, float beta) {
  K256_DECL(0) K256_DECL(1) K256_DECL(2) K256_DECL(3) K256_DECL(4) K256_DECL(5)
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), av;
    K256_ROW(0) K256_ROW(1) K256_ROW(2) K256_ROW(3) K256_ROW(4) K256_ROW(5)
    a += 6;
    b += 16;
  }
  __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  K256_STORE(0) K256_STORE(1) K256_STORE(2) K256_STORE(3) K256_STORE(4) K256_STORE(5)
}

/* Gathers of 16 (AVX-512) or 8 (AVX2) lanes; width is a multiple of the
   lane count or below it (MR = 12 < 16, MR = 6 < 8, NR = 32, NR = 16). */
__attribute__((target("avx512f"))) static void gather_avx512(const float *src, int64_t istep, int64_t kstep,
                                                              int64_t n, int width, int64_t kc, float *dst) {
  __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                   _mm512_set1_epi32((int)istep));
  for (int i0 = 0; i0 < width; i0 += 16) {
    int lanes = VL_MIN(16, width - i0);
    int64_t valid = VL_MAX((int64_t)0, VL_MIN((int64_t)lanes, n - i0));
    __mmask16 load = (__mmask16)((1u << valid) - 1), store = (__mmask16)((1u << lanes) - 1);
    const float *s = src + i0 * istep;
    if (istep == 1) { /* contiguous: a masked load, no gather */
      for (int64_t k = 0; k < kc; k++)
        _mm512_mask_storeu_ps(dst + k * width + i0, store, _mm512_maskz_loadu_ps(load, s + k * kstep));
      continue;
    }
    for (int64_t k = 0; k < kc; k++) {
      __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), load, idx, s + k * kstep, 4);
      _mm512_mask_storeu_ps(dst + k * width + i0, store, v);
    }
  }
}

__attribute__((target("avx2,fma"))) static void gather_avx2(const float *src, int64_t istep, int64_t kstep,
                                                             int64_t n, int width, int64_t kc, float *dst) {
  __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)istep));
  __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int i0 = 0; i0 < width; i0 += 8) {
    int lanes = VL_MIN(8, width - i0);
    int64_t valid = VL_MAX((int64_t)0, VL_MIN((int64_t)lanes, n - i0));
    __m256 load = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), lane));
    __m256i store = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), lane);
    const float *s = src + i0 * istep;
    if (istep == 1) { /* contiguous: a masked load, no gather */
      for (int64_t k = 0; k < kc; k++)
        _mm256_maskstore_ps(dst + k * width + i0, store, _mm256_maskload_ps(s + k * kstep, _mm256_castps_si256(load)));
      continue;
    }
    for (int64_t k = 0; k < kc; k++) {
      __m256 v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), s + k * kstep, idx, load, 4);
      _mm256_maskstore_ps(dst + k * width + i0, store, v);
    }
  }
}

static const gemm_impl impl_avx512 = {"avx512", 12, 32, kernel_avx512, kernel_avx512_edge, gather_avx512};
static const gemm_impl impl_avx2 = {"avx2", 6, 16, kernel_avx2, NULL, gather_avx2};

#endif /* VL_GEMM_X86 */

/* The kernel this process uses, chosen once (NULL: OpenBLAS). */
static const gemm_impl *choose_impl(void) {
  const char *env = getenv("VLUA_GEMM");
  if (env && strcmp(env, "blas") == 0) return NULL;
#ifdef VL_GEMM_X86
  __builtin_cpu_init();
  bool want_avx2 = env && strcmp(env, "avx2") == 0;
  if (!want_avx2 && __builtin_cpu_supports("avx512f")) return &impl_avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &impl_avx2;
#endif
  return NULL;
}

static const gemm_impl *chosen_impl;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose_once(void) { chosen_impl = choose_impl(); }

static const gemm_impl *gemm_current(void) {
  pthread_once(&chosen_once, choose_once);
  return chosen_impl;
}

bool vl_sgemm_force(const char *name) {
  const gemm_impl *want = NULL;
#ifdef VL_GEMM_X86
  __builtin_cpu_init();
  if (strcmp(name, "avx512") == 0) {
    if (!__builtin_cpu_supports("avx512f")) return false;
    want = &impl_avx512;
  } else if (strcmp(name, "avx2") == 0) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
    want = &impl_avx2;
  } else
#endif
  if (strcmp(name, "openblas") != 0)
    return false;
  pthread_once(&chosen_once, choose_once);
  chosen_impl = want;
  return true;
}

const char *vl_sgemm_kernel(void) {
  const gemm_impl *impl = gemm_current();
  return impl ? impl->name : "openblas";
}

/* ------------------------------------------------------------------ */
/* Packing                                                              */
/* ------------------------------------------------------------------ */

/* Gather offsets are int32 element counts: lane i reads i * step. */
static inline bool fits_gather(int64_t step, int width) { return step <= INT32_MAX / width; }

/* Rows [i0, i0+mc) and depth [p0, p0+kc) of op(A) into ceil(mc/MR) panels
   of kc x MR values, zero-padded past mc. */
static void pack_a(const gemm_args *g, const gemm_impl *impl, int64_t i0, int64_t mc, int64_t p0, int64_t kc,
                   float *dst) {
  const int mr = impl->mr;
  for (int64_t ip = 0; ip < mc; ip += mr) {
    int64_t rows = VL_MIN((int64_t)mr, mc - ip);
    const float *src = g->a + (i0 + ip) * g->ars + p0 * g->acs;
    if (fits_gather(g->ars, mr)) {
      impl->gather(src, g->ars, g->acs, rows, mr, kc, dst);
    } else { /* rows too far apart for int32 gather offsets */
      for (int64_t r = 0; r < rows; r++) {
        const float *s = src + r * g->ars;
        for (int64_t k = 0; k < kc; k++) dst[k * mr + r] = s[k * g->acs];
      }
      for (int64_t r = rows; r < mr; r++)
        for (int64_t k = 0; k < kc; k++) dst[k * mr + r] = 0;
    }
    dst += kc * mr;
  }
}

/* Depth [p0, p0+kc) and columns [j0, j0+nc) of op(B) into ceil(nc/NR)
   panels of kc x NR values, zero-padded past nc. */
static void pack_b(const gemm_args *g, const gemm_impl *impl, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                   float *dst) {
  const int nr = impl->nr;
  for (int64_t jp = 0; jp < nc; jp += nr) {
    int64_t cols = VL_MIN((int64_t)nr, nc - jp);
    const float *src = g->b + p0 * g->brs + (j0 + jp) * g->bcs;
    if (fits_gather(g->bcs, nr)) {
      impl->gather(src, g->bcs, g->brs, cols, nr, kc, dst);
    } else { /* columns too far apart for int32 gather offsets: down each column */
      for (int64_t c = 0; c < cols; c++) {
        const float *s = src + c * g->bcs;
        for (int64_t k = 0; k < kc; k++) dst[k * nr + c] = s[k * g->brs];
      }
      for (int64_t k = 0; k < kc; k++)
        for (int64_t c = cols; c < nr; c++) dst[k * nr + c] = 0;
    }
    dst += kc * nr;
  }
}

/* This thread's pack buffers (64-byte aligned), grown on demand; NULL
   when memory runs out. */
static _Thread_local float *pack_buffer;
static _Thread_local size_t pack_floats;

static float *pack_space(size_t floats) {
  if (floats > pack_floats) {
    free(pack_buffer);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    pack_buffer = aligned_alloc(64, bytes);
    pack_floats = pack_buffer ? floats : 0;
  }
  return pack_buffer;
}

/* ------------------------------------------------------------------ */
/* The blocked product over one block of C                              */
/* ------------------------------------------------------------------ */

/* C[m0:m1, n0:n1] of the product, on the calling thread. False when the
   pack buffers could not be allocated (nothing was written then). */
static bool gemm_block(const gemm_args *g, const gemm_impl *impl, int64_t m0, int64_t m1, int64_t n0,
                       int64_t n1) {
  const int mr = impl->mr, nr = impl->nr;
  int64_t ncmax = VL_MIN((int64_t)VL_GEMM_NC, (n1 - n0 + nr - 1) / nr * nr);
  int64_t mcmax = VL_MIN((int64_t)VL_GEMM_MC, (m1 - m0 + mr - 1) / mr * mr);
  int64_t kcmax = VL_MIN((int64_t)VL_GEMM_KC, g->K);
  float *bp = pack_space((size_t)(kcmax * (ncmax + mcmax)));
  if (!bp) return false;
  float *ap = bp + kcmax * ncmax;
  _Alignas(64) float tile[VL_GEMM_TILE];

  for (int64_t jc = n0; jc < n1; jc += VL_GEMM_NC) {
    int64_t nc = VL_MIN((int64_t)VL_GEMM_NC, n1 - jc);
    for (int64_t pc = 0; pc < g->K; pc += VL_GEMM_KC) {
      int64_t kc = VL_MIN((int64_t)VL_GEMM_KC, g->K - pc);
      float beta = pc == 0 ? g->beta : 1.0f; /* later slices add to the first */
      pack_b(g, impl, pc, kc, jc, nc, bp);
      for (int64_t ic = m0; ic < m1; ic += VL_GEMM_MC) {
        int64_t mc = VL_MIN((int64_t)VL_GEMM_MC, m1 - ic);
        pack_a(g, impl, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          int64_t cols = VL_MIN((int64_t)nr, nc - jr);
          const float *bpanel = bp + (jr / nr) * kc * nr;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            int64_t rows = VL_MIN((int64_t)mr, mc - ir);
            const float *apanel = ap + (ir / mr) * kc * mr;
            float *c = g->c + (ic + ir) * g->ldc + (jc + jr);
            if (rows == mr && cols == nr) {
              impl->kernel(kc, apanel, bpanel, c, g->ldc, g->alpha, beta);
              continue;
            }
            if (impl->edge) {
              impl->edge(kc, apanel, bpanel, c, g->ldc, g->alpha, beta, (int)rows, (int)cols);
              continue;
            }
            impl->kernel(kc, apanel, bpanel, tile, nr, 1.0f, 0.0f);
            for (int64_t i = 0; i < rows; i++)
              for (int64_t j = 0; j < cols; j++) {
                float v = g->alpha * tile[i * nr + j];
                c[i * g->ldc + j] = beta == 0 ? v : v + beta * c[i * g->ldc + j];
              }
          }
        }
      }
    }
  }
  return true;
}

/* Threads as a grid tm x tn over C whose blocks are the most square in
   units of micro-tiles (a long thin C is cut along its long side). */
static void thread_grid(int t, int64_t M, int64_t N, const gemm_impl *impl, int *tm, int *tn) {
  double best = -1;
  for (int cn = 1; cn <= t; cn++) {
    if (t % cn) continue;
    int cm = t / cn;
    double bm = (double)M / cm / impl->mr, bn = (double)N / cn / impl->nr;
    if (bm < 1 || bn < 1) continue;
    double score = bm < bn ? bm / bn : bn / bm;
    if (score > best) best = score, *tm = cm, *tn = cn;
  }
  if (best < 0) *tm = 1, *tn = 1;
}

/* Run the product with our kernels. A block whose pack buffers cannot be
   had (out of memory) goes to OpenBLAS, which needs none of ours;
   gemm_block writes nothing before it has them. */
static void gemm_run(const gemm_args *g, const gemm_impl *impl) {
  int t = omp_in_parallel() ? 1 : omp_get_max_threads();
  double work = (double)g->M * (double)g->N * (double)g->K;
  int tm = 1, tn = 1;
  if (t > 1 && work >= VL_GEMM_PAR_WORK) thread_grid(t, g->M, g->N, impl, &tm, &tn);
  if (tm * tn == 1) {
    if (!gemm_block(g, impl, 0, g->M, 0, g->N)) blas_block(g, 0, g->M, 0, g->N);
    return;
  }

  /* block edges on micro-tile boundaries */
  int64_t mstep = (g->M / tm + impl->mr - 1) / impl->mr * impl->mr;
  int64_t nstep = (g->N / tn + impl->nr - 1) / impl->nr * impl->nr;
#pragma omp parallel for num_threads(tm * tn) schedule(static)
  for (int b = 0; b < tm * tn; b++) {
    int64_t m0 = VL_MIN(g->M, (b / tn) * mstep), m1 = b / tn == tm - 1 ? g->M : VL_MIN(g->M, m0 + mstep);
    int64_t n0 = VL_MIN(g->N, (b % tn) * nstep), n1 = b % tn == tn - 1 ? g->N : VL_MIN(g->N, n0 + nstep);
    if (m0 < m1 && n0 < n1 && !gemm_block(g, impl, m0, m1, n0, n1)) blas_block(g, m0, m1, n0, n1);
  }
}

/* C = beta * C over an M x N block (beta == 0 writes zeros). */
static void scale_c(float *C, int64_t M, int64_t N, int64_t ldc, float beta) {
  if (beta == 1) return;
  for (int64_t i = 0; i < M; i++) {
    float *row = C + i * ldc;
    if (beta == 0)
      memset(row, 0, (size_t)N * sizeof(float));
    else
      for (int64_t j = 0; j < N; j++) row[j] *= beta;
  }
}

void vl_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
              const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0) {
    scale_c(C, M, N, ldc, beta);
    return;
  }
  const gemm_impl *impl = gemm_current();
  gemm_args g = {.M = M, .N = N, .K = K, .a = A, .b = B, .c = C,
                 .ars = ta ? 1 : lda, .acs = ta ? lda : 1, .brs = tb ? 1 : ldb, .bcs = tb ? ldb : 1, .ldc = ldc,
                 .alpha = alpha, .beta = beta, .ta = ta, .tb = tb, .lda = lda, .ldb = ldb};
  if (impl)
    gemm_run(&g, impl);
  else
    blas_block(&g, 0, M, 0, N);
}
