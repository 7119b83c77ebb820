/*
** vl_internal.h — helpers shared by the kernels in ops/. Not installed.
**
** The generic path of every kernel reads elements as double through
** vl_load/vl_store and walks any strided layout with vl_iter; fast paths
** for contiguous float32/float64 sit beside it in each kernel.
*/
#ifndef VL_INTERNAL_H
#define VL_INTERNAL_H

#include <math.h>
#include <string.h>

#include "vl.h"

#define VL_UNUSED(x) ((void)(x))
#define VL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* A function compiled three times, for AVX-512, AVX2+FMA and baseline
   x86-64, the copy picked at load time by the CPU (GNU ifunc). The build
   targets baseline x86-64 (SSE2) so that it runs anywhere; hot loops that
   the compiler vectorises carry this. OpenMP regions are outlined before
   cloning, so put it on a function the parallel loop calls. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VL_CLONES
#endif

/* Loops shorter than this run on one thread: forking costs more. */
#define VL_PARALLEL_GRAIN 32768

/* Read element `i` (in elements from `base`) of dtype `dt` as double. */
static inline double vl_load(const void *base, int64_t i, vl_dtype dt) {
  switch (dt) {
    case VL_FLOAT32: return ((const float *)base)[i];
    case VL_FLOAT64: return ((const double *)base)[i];
    case VL_FLOAT16: return vl_half_to_float(((const uint16_t *)base)[i]);
    case VL_BFLOAT16: return vl_bfloat16_to_float(((const uint16_t *)base)[i]);
    case VL_INT64: return (double)((const int64_t *)base)[i];
    case VL_INT32: return ((const int32_t *)base)[i];
    case VL_UINT8: return ((const uint8_t *)base)[i];
    case VL_BOOL: return ((const uint8_t *)base)[i] != 0;
    default: return 0;
  }
}

/* Convert a double to an integer type without UB: NaN gives 0, values
   out of range saturate (C leaves the cast undefined there). */
static inline int64_t vl_double_to_i64(double v) {
  if (v != v) return 0;
  if (v >= 9223372036854775807.0) return INT64_MAX;
  if (v <= -9223372036854775808.0) return INT64_MIN;
  return (int64_t)v;
}

static inline void vl_store(void *base, int64_t i, vl_dtype dt, double v) {
  switch (dt) {
    case VL_FLOAT32: ((float *)base)[i] = (float)v; break;
    case VL_FLOAT64: ((double *)base)[i] = v; break;
    case VL_FLOAT16: ((uint16_t *)base)[i] = vl_float_to_half((float)v); break;
    case VL_BFLOAT16: ((uint16_t *)base)[i] = vl_float_to_bfloat16((float)v); break;
    case VL_INT64: ((int64_t *)base)[i] = vl_double_to_i64(v); break;
    case VL_INT32: {
      int64_t x = vl_double_to_i64(v);
      ((int32_t *)base)[i] = (int32_t)(x > INT32_MAX ? INT32_MAX : x < INT32_MIN ? INT32_MIN : x);
      break;
    }
    case VL_UINT8: {
      /* wraps modulo 256 like PyTorch's integer casts */
      int64_t x = vl_double_to_i64(v);
      ((uint8_t *)base)[i] = (uint8_t)(uint64_t)x;
      break;
    }
    case VL_BOOL: ((uint8_t *)base)[i] = (v != 0); break;
    default: break;
  }
}

/* Walk every element of an N-d strided layout in row-major order.
   Usage:
     vl_iter it; vl_iter_init(&it, t->ndim, t->shape);
     int64_t off = 0;  // kept in step by vl_iter_next for up to 3 operands
     do { ... } while (vl_iter_next(&it));
   The iterator tracks up to VL_ITER_MAX_OPERANDS offsets at once. */
#define VL_ITER_MAX_OPERANDS 4
typedef struct vl_iter {
  int ndim;
  int noperands;
  int64_t shape[VL_MAX_DIMS];
  int64_t index[VL_MAX_DIMS];
  int64_t stride[VL_ITER_MAX_OPERANDS][VL_MAX_DIMS];
  int64_t offset[VL_ITER_MAX_OPERANDS];
} vl_iter;

/* `strides[k]` is the stride array of operand k (already broadcast to
   `shape`, 0 on broadcast dims); `offsets[k]` its start offset. */
static inline void vl_iter_init(vl_iter *it, int ndim, const int64_t *shape, int noperands,
                                const int64_t *const *strides, const int64_t *offsets) {
  it->ndim = ndim;
  it->noperands = noperands;
  for (int d = 0; d < ndim; d++) {
    it->shape[d] = shape[d];
    it->index[d] = 0;
  }
  for (int k = 0; k < noperands; k++) {
    it->offset[k] = offsets[k];
    for (int d = 0; d < ndim; d++) it->stride[k][d] = strides[k][d];
  }
}

/* Advance to the next element; returns false after the last one. */
static inline bool vl_iter_next(vl_iter *it) {
  for (int d = it->ndim - 1; d >= 0; d--) {
    if (++it->index[d] < it->shape[d]) {
      for (int k = 0; k < it->noperands; k++) it->offset[k] += it->stride[k][d];
      return true;
    }
    it->index[d] = 0;
    for (int k = 0; k < it->noperands; k++) it->offset[k] -= it->stride[k][d] * (it->shape[d] - 1);
  }
  return false;
}

/* Position an iterator at flat (row-major) element `linear`: lets
   parallel loops start each thread's chunk anywhere. */
static inline void vl_iter_seek(vl_iter *it, int64_t linear, const int64_t *offsets) {
  for (int k = 0; k < it->noperands; k++) it->offset[k] = offsets[k];
  for (int d = it->ndim - 1; d >= 0; d--) {
    int64_t n = it->shape[d];
    int64_t i = n > 0 ? linear % n : 0;
    linear = n > 0 ? linear / n : 0;
    it->index[d] = i;
    for (int k = 0; k < it->noperands; k++) it->offset[k] += i * it->stride[k][d];
  }
}

/* Strides of `t` broadcast to an output shape of `ndim` dims (t's dims
   aligned to the right; 0 stride where t has size 1 or no dim). The
   caller has already checked the shapes broadcast. */
static inline void vl_broadcast_strides(const vl_tensor *t, int ndim, const int64_t *shape,
                                        int64_t *out) {
  int lead = ndim - t->ndim;
  for (int d = 0; d < ndim; d++) {
    if (d < lead) {
      out[d] = 0;
    } else {
      int td = d - lead;
      out[d] = (t->shape[td] == 1 && shape[d] != 1) ? 0 : t->stride[td];
    }
  }
}

/* ------------------------------------------------------------------ */
/* float32 exp                                                          */
/* ------------------------------------------------------------------ */

/* Force inlining: the exp loops vectorise only when vl_expf is inlined. */
#if defined(__GNUC__)
#define VL_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define VL_ALWAYS_INLINE static inline
#endif

/* Bit casts through memcpy (no aliasing UB; compiled to a register move). */
VL_ALWAYS_INLINE uint32_t vl_f2u(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

VL_ALWAYS_INLINE float vl_u2f(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* exp for float32, written to vectorise: no branches, no calls.
   Range reduction x = k ln2 + r, |r| <= ln2/2, with ln2 split in two
   (Cody-Waite: k * VL_LN2_HI is exact for |k| <= 2^15); exp(r) by the
   Cephes minimax polynomial; 2^k applied as two factors 2^(k/2) so that
   results down to the smallest subnormal round only once. Max error about
   1 ulp on normal results; inf for x > 88.72..., 0 below -103.97..., NaN
   in gives NaN out. Subnormal results (x in -103.97..-87.34) cost a
   microcode assist per vector on x86 (about 13x slower than normal ones).
   Used by the float32 exp family (elementwise.c) and softmax (softmax.c);
   glibc's expf does not vectorise without -ffast-math. */
#define VL_EXPF_HI 89.0f     /* exp(89) overflows float32: clamp to here */
#define VL_EXPF_LO (-104.0f) /* exp(-104) rounds to 0: clamp to here */
#define VL_LN2_HI 0.693359375f
#define VL_LN2_LO (-2.12194440e-4f)
#define VL_LOG2E 1.44269504088896341f
#define VL_ROUND_MAGIC 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer */

VL_ALWAYS_INLINE float vl_expf(float x) {
  float xc = x > VL_EXPF_HI ? VL_EXPF_HI : x;
  xc = xc < VL_EXPF_LO ? VL_EXPF_LO : xc;
  float t = xc * VL_LOG2E + VL_ROUND_MAGIC;
  float kf = t - VL_ROUND_MAGIC;
  int32_t k = (int32_t)(vl_f2u(t) - vl_f2u(VL_ROUND_MAGIC));
  float r = xc - kf * VL_LN2_HI;
  r = r - kf * VL_LN2_LO;
  float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  int32_t k1 = k >> 1;
  int32_t k2 = k - k1;
  float s1 = vl_u2f((uint32_t)(k1 + 127) << 23);
  float s2 = vl_u2f((uint32_t)(k2 + 127) << 23);
  float res = p * s1 * s2;
  return x != x ? x : res;
}

/* Storage base pointer of a tensor (element 0 of its storage). */
static inline char *vl_base(const vl_tensor *t) { return (char *)t->storage->data; }

/* C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C in float32, with
   cblas_sgemm's row-major contract (lda/ldb/ldc are row strides; ta/tb
   transpose), except that beta == 0 never reads C (it may hold NaN bits)
   and sizes are int64. ops/gemm.c: its own AVX-512 / AVX2 kernels where
   the CPU has them, OpenBLAS otherwise. Inside an OpenMP parallel region
   it runs on the calling thread; outside, it threads big products itself. */
void vl_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Make vl_sgemm use kernel `name` ("avx512", "avx2", "openblas") from now
   on; false if this CPU lacks it. For tests and benchmarks: not thread-safe
   against concurrent products. */
bool vl_sgemm_force(const char *name);

#endif /* VL_INTERNAL_H */
