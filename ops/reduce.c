/*
** reduce.c — reductions (ops/vl.h "Reductions"): sum, mean, prod, amax,
** amin, all, any, logsumexp over any set of dims; var/std; vector norms.
** max/min with indices and argmax/argmin are in argmax.c; softmax/
** log_softmax and cumsum, which keep the shape, are in softmax.c; all
** three share reduce_internal.h.
**
** Every reduction is brought to one of two shapes of work on a dense
** buffer, [O, R, I] (O outer outputs, R reduced elements, I inner
** outputs, element (o, r, i) at o*R*I + r*I + i):
**   - I == 1: rows of R reduced one by one (reduce over the last dims, or
**     over everything); long rows are cut in VL_REDUCE_CHUNK pieces whose
**     partial results are merged, so one long row still uses every thread;
**   - I > 1: a leading/middle reduced dim; each task keeps accumulators
**     for a block of up to VL_REDUCE_COLBLOCK outputs (narrower when there
**     are few outputs, see vl__reduce_colblock) and adds whole rows into
**     them (contiguous, vectorised across the inner dim), a few rows at a
**     time for sum/max/min so the accumulators stay in registers; only
**     when even narrow blocks give too few tasks is the reduced dim split
**     too, in pieces whose partial results are merged.
** A tensor that is a dense permutation (contiguous, transposed, permuted)
** is read in place; anything else (narrowed, expanded, ...) is first
** copied by vl_contiguous. float16/bfloat16 are computed in float32.
** The split of the work depends on the shape only, never on the thread
** count, so results are the same for every thread count.
**
** Accumulation: floating sums in double (so 16M float32 values sum to
** within a few ulps); integer sums/products in int64, wrapping like
** PyTorch; var/std by the corrected two-pass method; logsumexp
** subtracts the max first.
**
** Autograd: each public entry point runs its forward with recording off
** and, when the input requires grad, records one node whose backward
** (next to the forward) is written with vl_ ops; see "Autograd" below.
*/
/* The kernels below never rely on floating-point exceptions; telling GCC
   so lets it turn the selects in max/min/clamp loops into vector code
   (with trapping math it keeps them as branches and does not vectorise).
   Before the includes, so that the inline helpers of the headers get it
   too. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <float.h>
#include <stdlib.h>

#include "reduce_internal.h"

/* Tuning constants, named. */
#define VL_REDUCE_MAX_RSPLIT 64  /* most pieces a reduced dim is split into in that case */
#define VL_REDUCE_MIN_RPIECE 64  /* fewest reduced rows in one such piece */

static bool is_intlike(vl_dtype dt) {
  return dt == VL_INT64 || dt == VL_INT32 || dt == VL_UINT8 || dt == VL_BOOL;
}

/* ------------------------------------------------------------------ */
/* Primitive passes                                                    */
/* ------------------------------------------------------------------ */

/* What one pass over the reduced elements computes per output. a1 is a
   double accumulator, a2 a second one (P_SUMDEV), ak an int64 one. */
enum {
  P_SUM,    /* a1 = sum x */
  P_PROD,   /* a1 = prod x */
  P_MAX,    /* a1 = max x (NaN wins) */
  P_MIN,    /* a1 = min x (NaN wins) */
  P_SUMDEV, /* a1 = sum (x - c), a2 = sum (x - c)^2 */
  P_SUMEXP, /* a1 = sum exp(x - c) */
  P_SUMABS, /* a1 = sum |x| */
  P_SUMSQ,  /* a1 = sum x^2 */
  P_SUMPOW, /* a1 = sum |x|^p */
  P_MAXABS, /* a1 = max |x| */
  P_MINABS, /* a1 = min |x| */
  P_NNZ,    /* ak = count of x != 0 */
  P_ISUM,   /* ak = sum x (int64, wrapping) */
  P_IPROD,  /* ak = prod x (int64, wrapping) */
  P_IMAX,   /* ak = max x */
  P_IMIN    /* ak = min x */
};

static bool prim_uses_ak(int prim) { return prim >= P_NNZ; }

VL_AI int64_t wrap_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* Sum (or sum of squares) of a float32 run in double: four vector
   accumulators in registers (GCC/clang vector extensions), so the loop is
   limited by memory rather than by the latency of one add chain. */
typedef double vl_v2d __attribute__((vector_size(16)));
VL_AI double row_sum_f32(const float *restrict x, int64_t n, bool squares) {
  vl_v2d a0 = {0, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    vl_v2d v0 = {x[i], x[i + 1]}, v1 = {x[i + 2], x[i + 3]};
    vl_v2d v2 = {x[i + 4], x[i + 5]}, v3 = {x[i + 6], x[i + 7]};
    if (squares) {
      v0 *= v0;
      v1 *= v1;
      v2 *= v2;
      v3 *= v3;
    }
    a0 += v0;
    a1 += v1;
    a2 += v2;
    a3 += v3;
  }
  vl_v2d t = (a0 + a1) + (a2 + a3);
  double r = t[0] + t[1];
  for (; i < n; i++) r += squares ? (double)x[i] * x[i] : (double)x[i];
  return r;
}

/* Reduce one contiguous run of n elements starting at element `off`. */
VL_AI void row_kernel(int prim, const void *x, int64_t off, int64_t n, double c, double p, double *o1,
                      double *o2, int64_t *ok, vl_dtype dt) {
  switch (prim) {
    case P_SUM: {
      if (dt == VL_FLOAT32) {
        *o1 = row_sum_f32((const float *)x + off, n, false);
        break;
      }
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; i++) s += ldf(x, off + i, dt);
      *o1 = s;
      break;
    }
    case P_PROD: {
      double s = 1;
      for (int64_t i = 0; i < n; i++) s *= ldf(x, off + i, dt);
      *o1 = s;
      break;
    }
    case P_MAX: {
      if (dt == VL_FLOAT32 || dt == VL_FLOAT64) {
        *o1 = dt == VL_FLOAT32 ? row_ext_f32((const float *)x + off, n, true)
                               : row_ext_f64((const double *)x + off, n, true);
        break;
      }
      double m = -INFINITY;
      int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
      for (int64_t i = 0; i < n; i++) {
        double v = ldf(x, off + i, dt);
        m = v > m ? v : m;
        nan |= v != v;
      }
      *o1 = nan ? NAN : m;
      break;
    }
    case P_MIN: {
      if (dt == VL_FLOAT32 || dt == VL_FLOAT64) {
        *o1 = dt == VL_FLOAT32 ? row_ext_f32((const float *)x + off, n, false)
                               : row_ext_f64((const double *)x + off, n, false);
        break;
      }
      double m = INFINITY;
      int nan = 0;
#pragma omp simd reduction(min : m) reduction(| : nan)
      for (int64_t i = 0; i < n; i++) {
        double v = ldf(x, off + i, dt);
        m = v < m ? v : m;
        nan |= v != v;
      }
      *o1 = nan ? NAN : m;
      break;
    }
    case P_SUMDEV: {
      double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t i = 0; i < n; i++) {
        double d = ldf(x, off + i, dt) - c;
        s1 += d;
        s2 += d * d;
      }
      *o1 = s1;
      *o2 = s2;
      break;
    }
    case P_SUMEXP: {
      double s = 0;
      for (int64_t i = 0; i < n; i++) s += exp(ldf(x, off + i, dt) - c);
      *o1 = s;
      break;
    }
    case P_SUMABS: {
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; i++) s += fabs(ldf(x, off + i, dt));
      *o1 = s;
      break;
    }
    case P_SUMSQ: {
      if (dt == VL_FLOAT32) {
        *o1 = row_sum_f32((const float *)x + off, n, true);
        break;
      }
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; i++) {
        double v = ldf(x, off + i, dt);
        s += v * v;
      }
      *o1 = s;
      break;
    }
    case P_SUMPOW: {
      double s = 0;
      for (int64_t i = 0; i < n; i++) s += pow(fabs(ldf(x, off + i, dt)), p);
      *o1 = s;
      break;
    }
    case P_MAXABS: {
      double m = 0;
      int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
      for (int64_t i = 0; i < n; i++) {
        double v = fabs(ldf(x, off + i, dt));
        m = v > m ? v : m;
        nan |= v != v;
      }
      *o1 = nan ? NAN : m;
      break;
    }
    case P_MINABS: {
      double m = INFINITY;
      int nan = 0;
#pragma omp simd reduction(min : m) reduction(| : nan)
      for (int64_t i = 0; i < n; i++) {
        double v = fabs(ldf(x, off + i, dt));
        m = v < m ? v : m;
        nan |= v != v;
      }
      *o1 = nan ? NAN : m;
      break;
    }
    case P_NNZ: {
      int64_t k = 0;
#pragma omp simd reduction(+ : k)
      for (int64_t i = 0; i < n; i++) k += ldf(x, off + i, dt) != 0;
      *ok = k;
      break;
    }
    case P_ISUM: {
      uint64_t s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < n; i++) s += (uint64_t)ldi(x, off + i, dt);
      *ok = (int64_t)s;
      break;
    }
    case P_IPROD: {
      uint64_t s = 1;
      for (int64_t i = 0; i < n; i++) s *= (uint64_t)ldi(x, off + i, dt);
      *ok = (int64_t)s;
      break;
    }
    case P_IMAX: {
      int64_t m = INT64_MIN;
      for (int64_t i = 0; i < n; i++) {
        int64_t v = ldi(x, off + i, dt);
        m = v > m ? v : m;
      }
      *ok = m;
      break;
    }
    case P_IMIN: {
      int64_t m = INT64_MAX;
      for (int64_t i = 0; i < n; i++) {
        int64_t v = ldi(x, off + i, dt);
        m = v < m ? v : m;
      }
      *ok = m;
      break;
    }
    default: break;
  }
}

/* Rows a column kernel takes at once (sum, max, min): the accumulators are
   loaded and stored once per group and stay in registers in between. Each
   output still sees its rows in order, so the results are those of one row
   at a time. */
#define VL_REDUCE_ROWGROUP 4

/* Sum (squares: of squares) of nr rows of ni elements into a (zeroed):
   VL_REDUCE_ROWGROUP rows at a time. */
VL_AI void col_sum(const void *x, int64_t off, int64_t nr, int64_t ni, int64_t ld, bool squares,
                   double *restrict a, vl_dtype dt) {
#define VL_SQ(v) (squares ? (v) * (v) : (v))
  int64_t r = 0;
  for (; r + VL_REDUCE_ROWGROUP <= nr; r += VL_REDUCE_ROWGROUP) {
    int64_t b0 = off + r * ld, b1 = b0 + ld, b2 = b1 + ld, b3 = b2 + ld;
    VL_SIMD
    for (int64_t i = 0; i < ni; i++) {
      double v0 = ldf(x, b0 + i, dt), v1 = ldf(x, b1 + i, dt), v2 = ldf(x, b2 + i, dt), v3 = ldf(x, b3 + i, dt);
      a[i] = (((a[i] + VL_SQ(v0)) + VL_SQ(v1)) + VL_SQ(v2)) + VL_SQ(v3);
    }
  }
  for (; r < nr; r++) {
    int64_t b = off + r * ld;
    VL_SIMD
    for (int64_t i = 0; i < ni; i++) {
      double v = ldf(x, b + i, dt);
      a[i] += VL_SQ(v);
    }
  }
#undef VL_SQ
}

/* Max (ismax) or min of nr rows of ni float32 elements, NaN wins, into a:
   float accumulators (exact; four lanes to a 16-byte vector where double
   would give two), VL_REDUCE_ROWGROUP rows at a time. */
VL_AI void col_ext_f32(const float *restrict x, int64_t nr, int64_t ni, int64_t ld, bool ismax, double *restrict a) {
  float m[VL_REDUCE_COLBLOCK];
  float init = ismax ? -INFINITY : INFINITY;
  for (int64_t i = 0; i < ni; i++) m[i] = init;
  int64_t r = 0;
  for (; r + VL_REDUCE_ROWGROUP <= nr; r += VL_REDUCE_ROWGROUP) {
    const float *x0 = x + r * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
    if (ismax) {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        float e = m[i];
        e = VL_EXT_STEP(x0[i], e, true);
        e = VL_EXT_STEP(x1[i], e, true);
        e = VL_EXT_STEP(x2[i], e, true);
        m[i] = VL_EXT_STEP(x3[i], e, true);
      }
    } else {
      VL_SIMD
      for (int64_t i = 0; i < ni; i++) {
        float e = m[i];
        e = VL_EXT_STEP(x0[i], e, false);
        e = VL_EXT_STEP(x1[i], e, false);
        e = VL_EXT_STEP(x2[i], e, false);
        m[i] = VL_EXT_STEP(x3[i], e, false);
      }
    }
  }
  for (; r < nr; r++) {
    const float *xr = x + r * ld;
    VL_SIMD
    for (int64_t i = 0; i < ni; i++) m[i] = VL_EXT_STEP(xr[i], m[i], ismax);
  }
  for (int64_t i = 0; i < ni; i++) a[i] = m[i];
}

/* Reduce nr rows of ni contiguous elements (row r starts at off + r*ld)
   into ni accumulators. c holds ni per-output constants (P_SUMDEV,
   P_SUMEXP). */
VL_AI void col_kernel(int prim, const void *x, int64_t off, int64_t nr, int64_t ni, int64_t ld,
                      const double *c, double p, double *restrict a1, double *restrict a2,
                      int64_t *restrict ak, vl_dtype dt) {
  switch (prim) {
    case P_PROD:
      for (int64_t i = 0; i < ni; i++) a1[i] = 1;
      break;
    case P_MAX: for (int64_t i = 0; i < ni; i++) a1[i] = -INFINITY; break;
    case P_MIN:
    case P_MINABS: for (int64_t i = 0; i < ni; i++) a1[i] = INFINITY; break;
    case P_SUMDEV:
      for (int64_t i = 0; i < ni; i++) a1[i] = a2[i] = 0;
      break;
    case P_NNZ:
    case P_ISUM: for (int64_t i = 0; i < ni; i++) ak[i] = 0; break;
    case P_IPROD: for (int64_t i = 0; i < ni; i++) ak[i] = 1; break;
    case P_IMAX: for (int64_t i = 0; i < ni; i++) ak[i] = INT64_MIN; break;
    case P_IMIN: for (int64_t i = 0; i < ni; i++) ak[i] = INT64_MAX; break;
    default: for (int64_t i = 0; i < ni; i++) a1[i] = 0; break;
  }
  if (prim == P_SUM || prim == P_SUMSQ) { /* two calls: `squares` a constant in each */
    if (prim == P_SUM)
      col_sum(x, off, nr, ni, ld, false, a1, dt);
    else
      col_sum(x, off, nr, ni, ld, true, a1, dt);
    return;
  }
  if (dt == VL_FLOAT32 && (prim == P_MAX || prim == P_MIN)) {
    col_ext_f32((const float *)x + off, nr, ni, ld, prim == P_MAX, a1);
    return;
  }
  for (int64_t r = 0; r < nr; r++) {
    int64_t b = off + r * ld;
    switch (prim) {
      case P_PROD:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) a1[i] *= ldf(x, b + i, dt);
        break;
      case P_MAX:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) {
          double v = ldf(x, b + i, dt);
          a1[i] = (v > a1[i] || v != v) ? v : a1[i];
        }
        break;
      case P_MIN:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) {
          double v = ldf(x, b + i, dt);
          a1[i] = (v < a1[i] || v != v) ? v : a1[i];
        }
        break;
      case P_SUMDEV:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) {
          double d = ldf(x, b + i, dt) - c[i];
          a1[i] += d;
          a2[i] += d * d;
        }
        break;
      case P_SUMEXP:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) a1[i] += exp(ldf(x, b + i, dt) - c[i]);
        break;
      case P_SUMABS:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) a1[i] += fabs(ldf(x, b + i, dt));
        break;
      case P_SUMPOW:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) a1[i] += pow(fabs(ldf(x, b + i, dt)), p);
        break;
      case P_MAXABS:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) {
          double v = fabs(ldf(x, b + i, dt));
          a1[i] = (v > a1[i] || v != v) ? v : a1[i];
        }
        break;
      case P_MINABS:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) {
          double v = fabs(ldf(x, b + i, dt));
          a1[i] = (v < a1[i] || v != v) ? v : a1[i];
        }
        break;
      case P_NNZ:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) ak[i] += ldf(x, b + i, dt) != 0;
        break;
      case P_ISUM:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) ak[i] = wrap_add(ak[i], ldi(x, b + i, dt));
        break;
      case P_IPROD:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) ak[i] = wrap_mul(ak[i], ldi(x, b + i, dt));
        break;
      case P_IMAX:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) {
          int64_t v = ldi(x, b + i, dt);
          ak[i] = v > ak[i] ? v : ak[i];
        }
        break;
      case P_IMIN:
        VL_SIMD
        for (int64_t i = 0; i < ni; i++) {
          int64_t v = ldi(x, b + i, dt);
          ak[i] = v < ak[i] ? v : ak[i];
        }
        break;
      default: break;
    }
  }
}

typedef void (*row_fn)(int prim, const void *x, int64_t off, int64_t n, double c, double p, double *o1,
                       double *o2, int64_t *ok);
typedef void (*col_fn)(int prim, const void *x, int64_t off, int64_t nr, int64_t ni, int64_t ld,
                       const double *c, double p, double *a1, double *a2, int64_t *ak);

/* The float column kernels convert and add (or compare) every element and
   are bound by the ALU with SSE2 alone: they are also compiled for
   AVX-512 and AVX2 and picked at load time (GNU ifunc). Same results in
   every version: the vector code keeps each output's order of additions,
   and ISO C mode (-std=c11) fuses no multiply-adds. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VL_CLONES
#endif

#define VL_DEF_PASS_KERNELS(SFX, DT, COLATTR)                                                         \
  static void row_##SFX(int prim, const void *x, int64_t off, int64_t n, double c, double p,       \
                        double *o1, double *o2, int64_t *ok) {                                       \
    row_kernel(prim, x, off, n, c, p, o1, o2, ok, DT);                                               \
  }                                                                                                  \
  COLATTR static void col_##SFX(int prim, const void *x, int64_t off, int64_t nr, int64_t ni,      \
                                int64_t ld, const double *c, double p, double *a1, double *a2,     \
                                int64_t *ak) {                                                       \
    col_kernel(prim, x, off, nr, ni, ld, c, p, a1, a2, ak, DT);                                      \
  }
VL_DEF_PASS_KERNELS(f32, VL_FLOAT32, VL_CLONES)
VL_DEF_PASS_KERNELS(f64, VL_FLOAT64, VL_CLONES)
VL_DEF_PASS_KERNELS(i64, VL_INT64, )
VL_DEF_PASS_KERNELS(i32, VL_INT32, )
VL_DEF_PASS_KERNELS(u8, VL_UINT8, )
VL_DEF_PASS_KERNELS(b8, VL_BOOL, )

static void pick_pass(vl_dtype dt, row_fn *rf, col_fn *cf) {
  switch (dt) {
    case VL_FLOAT64: *rf = row_f64; *cf = col_f64; break;
    case VL_INT64: *rf = row_i64; *cf = col_i64; break;
    case VL_INT32: *rf = row_i32; *cf = col_i32; break;
    case VL_UINT8: *rf = row_u8; *cf = col_u8; break;
    case VL_BOOL: *rf = row_b8; *cf = col_b8; break;
    default: *rf = row_f32; *cf = col_f32; break;
  }
}

/* a op= b for one output. */
static inline void merge_one(int prim, double *a1, double *a2, int64_t *ak, double b1, double b2, int64_t bk) {
  switch (prim) {
    case P_PROD: *a1 *= b1; break;
    case P_MAX:
    case P_MAXABS: *a1 = (b1 > *a1 || b1 != b1) ? b1 : *a1; break;
    case P_MIN:
    case P_MINABS: *a1 = (b1 < *a1 || b1 != b1) ? b1 : *a1; break;
    case P_SUMDEV:
      *a1 += b1;
      *a2 += b2;
      break;
    case P_NNZ:
    case P_ISUM: *ak = wrap_add(*ak, bk); break;
    case P_IPROD: *ak = wrap_mul(*ak, bk); break;
    case P_IMAX: *ak = bk > *ak ? bk : *ak; break;
    case P_IMIN: *ak = bk < *ak ? bk : *ak; break;
    default: *a1 += b1; break;
  }
}

/* Accumulator arrays for one pass. */
typedef struct acc {
  double *a1, *a2;
  int64_t *ak;
} acc;

static void acc_free(acc *a) {
  free(a->a1);
  free(a->a2);
  free(a->ak);
  a->a1 = a->a2 = NULL;
  a->ak = NULL;
}

static int acc_alloc(const char *op, int prim, int64_t n, acc *a) {
  a->a1 = a->a2 = NULL;
  a->ak = NULL;
  size_t m = (size_t)(n > 0 ? n : 1);
  if (prim_uses_ak(prim))
    a->ak = malloc(m * sizeof(int64_t));
  else
    a->a1 = malloc(m * sizeof(double));
  if (prim == P_SUMDEV) a->a2 = malloc(m * sizeof(double));
  if ((prim_uses_ak(prim) && !a->ak) || (!prim_uses_ak(prim) && !a->a1) || (prim == P_SUMDEV && !a->a2)) {
    acc_free(a);
    return vl_error(VL_ENOMEM, "%s: out of memory for %lld accumulators", op, (long long)n);
  }
  return VL_OK;
}

/* One pass over [O, R, I] (element (o,r,i) at off + (o*R + r)*I + i)
   into out (O*I outputs). c: O*I per-output constants or NULL. */
static int run_pass(const char *op, int prim, vl_dtype dt, const void *x, int64_t off, int64_t O, int64_t R,
                    int64_t I, const double *c, double p, acc *out) {
  row_fn rf;
  col_fn cf;
  pick_pass(dt, &rf, &cf);
  int64_t total = O * R * I;
  double *o1 = out->a1, *o2 = out->a2;
  int64_t *ok = out->ak;
  if (I == 1) {
    int64_t C = R > VL_REDUCE_CHUNK ? (R + VL_REDUCE_CHUNK - 1) / VL_REDUCE_CHUNK : 1;
    if (C == 1) {
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)
      for (int64_t o = 0; o < O; o++)
        rf(prim, x, off + o * R, R, c ? c[o] : 0.0, p, o1 ? o1 + o : NULL, o2 ? o2 + o : NULL,
           ok ? ok + o : NULL);
      return VL_OK;
    }
    int64_t T = O * C;
    acc part;
    if (acc_alloc(op, prim, T, &part)) return vl_last_status();
    double *p1 = part.a1, *p2 = part.a2;
    int64_t *pk = part.ak;
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t t = 0; t < T; t++) {
      int64_t o = t / C, s = (t % C) * VL_REDUCE_CHUNK;
      int64_t n = VL_MIN(VL_REDUCE_CHUNK, R - s);
      rf(prim, x, off + o * R + s, n, c ? c[o] : 0.0, p, p1 ? p1 + t : NULL, p2 ? p2 + t : NULL,
         pk ? pk + t : NULL);
    }
    for (int64_t o = 0; o < O; o++) {
      int64_t t0 = o * C;
      if (o1) o1[o] = p1[t0];
      if (o2) o2[o] = p2[t0];
      if (ok) ok[o] = pk[t0];
      for (int64_t k = 1; k < C; k++)
        merge_one(prim, o1 ? o1 + o : NULL, o2 ? o2 + o : NULL, ok ? ok + o : NULL, p1 ? p1[t0 + k] : 0,
                  p2 ? p2[t0 + k] : 0, pk ? pk[t0 + k] : 0);
    }
    acc_free(&part);
    return VL_OK;
  }

  int64_t cb = vl__reduce_colblock(O, I), nb = (I + cb - 1) / cb;
  int64_t tasks = O * nb;
  int64_t RC = 1; /* fewer tasks than VL_REDUCE_MIN_TASKS even so: split the reduced dim too */
  if (tasks < VL_REDUCE_MIN_TASKS && total > VL_PARALLEL_GRAIN) {
    RC = R / VL_REDUCE_MIN_RPIECE;
    RC = VL_MAX(1, VL_MIN(RC, VL_REDUCE_MAX_RSPLIT));
  }
  acc part = {NULL, NULL, NULL};
  acc *dst = out;
  if (RC > 1) {
    if (acc_alloc(op, prim, RC * O * I, &part)) return vl_last_status();
    dst = &part;
  }
  double *q1 = dst->a1, *q2 = dst->a2;
  int64_t *qk = dst->ak;
  int64_t OI = O * I;
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t t = 0; t < RC * tasks; t++) {
    int64_t rc = t / tasks, rem = t % tasks, o = rem / nb, b = rem % nb;
    int64_t i0 = b * cb, ni = VL_MIN(cb, I - i0);
    int64_t r0 = R * rc / RC, r1 = R * (rc + 1) / RC;
    int64_t d = rc * OI + o * I + i0;
    cf(prim, x, off + (o * R + r0) * I + i0, r1 - r0, ni, I, c ? c + o * I + i0 : NULL, p, q1 ? q1 + d : NULL,
       q2 ? q2 + d : NULL, qk ? qk + d : NULL);
  }
  if (RC > 1) {
    for (int64_t j = 0; j < OI; j++) {
      if (o1) o1[j] = q1[j];
      if (o2) o2[j] = q2[j];
      if (ok) ok[j] = qk[j];
      for (int64_t rc = 1; rc < RC; rc++)
        merge_one(prim, o1 ? o1 + j : NULL, o2 ? o2 + j : NULL, ok ? ok + j : NULL, q1 ? q1[rc * OI + j] : 0,
                  q2 ? q2[rc * OI + j] : 0, qk ? qk[rc * OI + j] : 0);
    }
    acc_free(&part);
  }
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Dims, output shapes, layouts                                        */
/* ------------------------------------------------------------------ */

int vl__reduce_plan(const char *op, const vl_tensor *t, int ndims, const int *dims, bool keepdim, rplan *pl) {
  memset(pl, 0, sizeof *pl);
  if (ndims < 0) return vl_error(VL_EARG, "%s: number of dims %d is negative", op, ndims);
  if (ndims > 0 && !dims) return vl_error(VL_EARG, "%s: %d dims announced but the dims list is NULL", op, ndims);
  if (ndims == 0) {
    for (int d = 0; d < t->ndim; d++) pl->mask[d] = true;
  } else {
    bool seen[VL_MAX_DIMS + 1] = {false};
    for (int k = 0; k < ndims; k++) {
      int d;
      if (vl_wrap_dim(op, dims[k], t->ndim, &d)) return vl_last_status();
      if (seen[d]) return vl_error(VL_EARG, "%s: dim %d appears twice in the list of dims", op, dims[k]);
      seen[d] = true;
      if (t->ndim > 0) pl->mask[d] = true;
    }
  }
  pl->R = 1;
  pl->N = 1;
  for (int d = 0; d < t->ndim; d++) {
    if (pl->mask[d]) {
      pl->R *= t->shape[d];
      if (keepdim) pl->out_shape[pl->out_ndim++] = 1;
    } else {
      pl->N *= t->shape[d];
      pl->out_shape[pl->out_ndim++] = t->shape[d];
    }
  }
  return VL_OK;
}

/* Can `x` be read in place as [O, R, I]? Its dims of size > 1 must form a
   dense block (a permutation of a contiguous layout) whose memory order
   keeps the kept dims in logical order (all dims, when `ordered`) and
   holds the reduced dims in one run. */
static bool dense_plan(const vl_tensor *x, const bool *mask, bool ordered, int64_t *O, int64_t *R, int64_t *I) {
  int idx[VL_MAX_DIMS], n = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (x->shape[d] <= 1) continue;
    if (x->stride[d] <= 0) return false;
    idx[n++] = d;
  }
  for (int a = 1; a < n; a++) { /* insertion sort, stride descending */
    int v = idx[a], b = a - 1;
    while (b >= 0 && x->stride[idx[b]] < x->stride[v]) {
      idx[b + 1] = idx[b];
      b--;
    }
    idx[b + 1] = v;
  }
  int64_t expect = 1;
  for (int k = n - 1; k >= 0; k--) {
    if (x->stride[idx[k]] != expect) return false;
    expect *= x->shape[idx[k]];
  }
  int last_kept = -1, last_any = -1, phase = 0;
  *O = *R = *I = 1;
  for (int k = 0; k < n; k++) {
    int d = idx[k];
    if (ordered && d < last_any) return false;
    last_any = d;
    if (mask[d]) {
      if (phase == 2) return false;
      phase = 1;
      *R *= x->shape[d];
    } else {
      if (d < last_kept) return false;
      last_kept = d;
      if (phase == 0) {
        *O *= x->shape[d];
      } else {
        phase = 2;
        *I *= x->shape[d];
      }
    }
  }
  return true;
}

/* See reduce_internal.h. */
int vl__reduce_prepare(const char *op, const vl_tensor *t, const bool *mask, vl_dtype work, bool ordered, rlayout *L) {
  vl_tensor *x = vl_to_dtype(t, work);
  if (!x) return vl_last_status();
  int64_t O, R, I;
  if (!dense_plan(x, mask, ordered, &O, &R, &I)) {
    /* Copy: in logical order, or kept dims first and reduced dims last. */
    bool pm[VL_MAX_DIMS] = {false};
    vl_tensor *y;
    if (ordered) {
      memcpy(pm, mask, sizeof pm);
      y = vl_contiguous(x);
    } else {
      int perm[VL_MAX_DIMS], k = 0;
      for (int d = 0; d < x->ndim; d++)
        if (!mask[d]) perm[k++] = d;
      for (int d = 0; d < x->ndim; d++)
        if (mask[d]) {
          pm[k] = true;
          perm[k++] = d;
        }
      vl_tensor *pv = vl_permute(x, perm);
      y = pv ? vl_contiguous(pv) : NULL;
      vl_tensor_release(pv);
    }
    vl_tensor_release(x);
    if (!y) return vl_last_status();
    if (!dense_plan(y, pm, ordered, &O, &R, &I)) {
      vl_tensor_release(y);
      return vl_error(VL_ESTATE, "%s: internal error: a contiguous copy is not dense", op);
    }
    x = y;
  }
  L->src = x;
  L->x = vl_base(x);
  L->off = x->offset;
  L->O = O;
  L->R = R;
  L->I = I;
  L->dt = x->dtype;
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Output stores                                                       */
/* ------------------------------------------------------------------ */

/* out: a fresh contiguous tensor of n elements. */
static void store_f(vl_tensor *out, const double *v, int64_t n) {
  void *p = vl_data_ptr(out);
  switch (out->dtype) {
    case VL_FLOAT32: {
      float *q = p;
      VL_SIMD
      for (int64_t i = 0; i < n; i++) q[i] = (float)v[i];
      break;
    }
    case VL_FLOAT64: memcpy(p, v, (size_t)n * sizeof(double)); break;
    default:
      for (int64_t i = 0; i < n; i++) vl_store(p, i, out->dtype, v[i]);
      break;
  }
}

static void store_i(vl_tensor *out, const int64_t *v, int64_t n) {
  void *p = vl_data_ptr(out);
  switch (out->dtype) {
    case VL_INT64: memcpy(p, v, (size_t)n * sizeof(int64_t)); break;
    case VL_INT32:
      for (int64_t i = 0; i < n; i++) ((int32_t *)p)[i] = (int32_t)v[i];
      break;
    case VL_UINT8:
      for (int64_t i = 0; i < n; i++) ((uint8_t *)p)[i] = (uint8_t)v[i];
      break;
    case VL_BOOL:
      for (int64_t i = 0; i < n; i++) ((uint8_t *)p)[i] = v[i] != 0;
      break;
    default:
      for (int64_t i = 0; i < n; i++) vl_store(p, i, out->dtype, (double)v[i]);
      break;
  }
}

static void fill_value(vl_tensor *out, int64_t n, double v) {
  void *p = vl_data_ptr(out);
  for (int64_t i = 0; i < n; i++) vl_store(p, i, out->dtype, v);
}

static vl_tensor *filled(const rplan *pl, vl_dtype dt, double v) {
  vl_tensor *out = vl_empty(pl->out_ndim, pl->out_shape, dt);
  if (out) fill_value(out, pl->N, v);
  return out;
}

/* ------------------------------------------------------------------ */
/* Autograd: recording and the shared pieces of the backwards          */
/* ------------------------------------------------------------------ */

/* A node of a reduction keeps (autograd.h):
     iarg[0]  the reduced dims of the input, one bit per dim;
     iarg[1]  what to differentiate (the vl_redop, the dim of max/min);
     iarg[2]  slot of the saved input (-1: not saved);
     iarg[3]  slot of the saved output (-1: not saved);
     arg[0]   a parameter (the correction of var/std, p of norm).
   The output gradient has the output's shape; a reduction's backward
   first views it with the reduced dims kept as 1 (ag_kept) so that it
   broadcasts against the input. */

/* Forward work of an op that will record: done with recording off, so
   that the copies and conversions inside it record nothing. */
bool vl__ag_begin(const vl_tensor *t) {
  bool rec = vl_ag_needed(1, &t);
  if (rec) vl_set_grad_enabled(false);
  return rec;
}

void vl__ag_end(bool rec) {
  if (rec) vl_set_grad_enabled(true);
}

int64_t vl__mask_bits(int ndim, const bool *mask) {
  int64_t b = 0;
  for (int d = 0; d < ndim; d++)
    if (mask[d]) b |= (int64_t)1 << d;
  return b;
}

vl_tensor *vl__reduce_record(const char *name, vl_backward_fn fn, const vl_tensor *t, vl_tensor *out,
                             int64_t mask, int64_t what, double arg, const vl_tensor *save, bool save_out) {
  vl_node *n = vl_ag_node(name, fn, 1, &t);
  bool ok = n != NULL;
  if (ok) {
    n->iarg[0] = mask;
    n->iarg[1] = what;
    n->iarg[2] = save ? vl_ag_save(n, save) : -1;
    n->iarg[3] = save_out ? vl_ag_save(n, out) : -1;
    n->arg[0] = arg;
    ok = (!save || n->iarg[2] >= 0) && (!save_out || n->iarg[3] >= 0) && vl_ag_attach(out, n) == VL_OK;
  }
  if (!ok) {
    vl_ag_node_release(n);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

/* The reduced dims of a node as a list (empty for a 0-d input, where
   "all dims" reduces nothing either). */
static int ag_dims(const vl_node *n, int *dims) {
  int k = 0;
  for (int d = 0; d < n->in_ndim[0]; d++)
    if (n->iarg[0] & ((int64_t)1 << d)) dims[k++] = d;
  return k;
}

/* Reduced elements per output. */
static int64_t ag_count(const vl_node *n) {
  int64_t r = 1;
  for (int d = 0; d < n->in_ndim[0]; d++)
    if (n->iarg[0] & ((int64_t)1 << d)) r *= n->in_shape[0][d];
  return r;
}

/* A 0-d tensor of g's dtype (so that it does not promote g). */
static vl_tensor *scalar_like(tmps *k, const vl_tensor *g, double v) { return tmp(k, vl_scalar(v, g->dtype)); }

/* ------------------------------------------------------------------ */
/* vl_reduce                                                           */
/* ------------------------------------------------------------------ */

static const char *const redop_names[VL_REDOP_COUNT] = {"sum", "mean", "prod", "amax", "amin", "all", "any",
                                                        "logsumexp"};

static vl_tensor *reduce_fwd(vl_redop op, const vl_tensor *t, int ndims, const int *dims, bool keepdim) {
  if ((unsigned)op >= VL_REDOP_COUNT) {
    vl_error(VL_EARG, "reduce: unknown reduction %d (expected 0..%d)", (int)op, VL_REDOP_COUNT - 1);
    return NULL;
  }
  const char *name = redop_names[op];
  if (check_tensor(name, t)) return NULL;
  rplan pl;
  if (vl__reduce_plan(name, t, ndims, dims, keepdim, &pl)) return NULL;

  vl_dtype in = t->dtype, out_dt, work;
  bool isf = vl_dtype_is_float(in);
  switch (op) {
    case VL_SUM:
    case VL_PROD:
      out_dt = isf ? in : VL_INT64;
      work = native_work(in);
      break;
    case VL_AMAX:
    case VL_AMIN:
      out_dt = in;
      work = native_work(in);
      break;
    case VL_ALL:
    case VL_ANY:
      out_dt = VL_BOOL;
      work = native_work(in);
      break;
    default: /* mean, logsumexp: float results; integers promote to float32 */
      out_dt = isf ? in : VL_FLOAT32;
      work = float_work(in);
      break;
  }

  if (pl.R == 0 || pl.N == 0) {
    if (pl.R == 0 && (op == VL_AMAX || op == VL_AMIN)) {
      empty_error(name, op == VL_AMAX ? "maximum" : "minimum", t);
      return NULL;
    }
    double id = 0;
    switch (op) {
      case VL_MEAN: id = NAN; break;
      case VL_PROD:
      case VL_ALL: id = 1; break;
      case VL_LOGSUMEXP: id = -INFINITY; break;
      default: id = 0; break;
    }
    return filled(&pl, out_dt, id);
  }

  rlayout L;
  if (vl__reduce_prepare(name, t, pl.mask, work, false, &L)) return NULL;
  bool ints = is_intlike(L.dt);
  int prim;
  switch (op) {
    case VL_SUM:
    case VL_MEAN: prim = ints ? P_ISUM : P_SUM; break;
    case VL_PROD: prim = ints ? P_IPROD : P_PROD; break;
    case VL_AMAX: prim = ints ? P_IMAX : P_MAX; break;
    case VL_AMIN: prim = ints ? P_IMIN : P_MIN; break;
    case VL_ALL:
    case VL_ANY: prim = P_NNZ; break;
    default: prim = P_MAX; break; /* logsumexp: the max first */
  }
  int64_t N = pl.N, R = pl.R;
  acc a;
  vl_tensor *out = NULL;
  if (acc_alloc(name, prim, N, &a)) goto done;
  if (run_pass(name, prim, L.dt, L.x, L.off, L.O, L.R, L.I, NULL, 0, &a)) goto done;

  if (op == VL_LOGSUMEXP) {
    acc s;
    if (acc_alloc(name, P_SUMEXP, N, &s)) goto done;
    double *c = malloc((size_t)N * sizeof(double));
    if (!c) {
      acc_free(&s);
      vl_error(VL_ENOMEM, "logsumexp: out of memory");
      goto done;
    }
    for (int64_t j = 0; j < N; j++) c[j] = isfinite(a.a1[j]) ? a.a1[j] : 0.0;
    int st = run_pass(name, P_SUMEXP, L.dt, L.x, L.off, L.O, L.R, L.I, c, 0, &s);
    free(c);
    if (st) {
      acc_free(&s);
      goto done;
    }
    for (int64_t j = 0; j < N; j++) {
      double m = a.a1[j];
      a.a1[j] = isfinite(m) ? m + log(s.a1[j]) : m;
    }
    acc_free(&s);
  }

  out = vl_empty(pl.out_ndim, pl.out_shape, out_dt);
  if (!out) goto done;
  switch (op) {
    case VL_MEAN: /* always float work */
      for (int64_t j = 0; j < N; j++) a.a1[j] /= (double)R;
      store_f(out, a.a1, N);
      break;
    case VL_ALL:
    case VL_ANY: {
      uint8_t *q = vl_data_ptr(out);
      for (int64_t j = 0; j < N; j++) q[j] = op == VL_ALL ? a.ak[j] == R : a.ak[j] > 0;
      break;
    }
    default:
      if (ints)
        store_i(out, a.ak, N);
      else
        store_f(out, a.a1, N);
      break;
  }
done:
  acc_free(&a);
  vl_tensor_release(L.src);
  return out;
}

/* Gradients of vl_reduce (g has the output's shape):
     sum        g broadcast back;
     mean       g / R;
     prod       g * prod / x when x holds no zero; otherwise, per output,
                the product of the others at a lone zero, 0 elsewhere
                (PyTorch's rule: exact with zeros, no 0/0);
     amax/amin  g split evenly among the elements equal to the result;
     logsumexp  g * exp(x - result) (the softmax of x). */
static int prod_factor(const vl_node *n, tmps *k, const vl_tensor *x, const vl_tensor *yk, vl_tensor **f) {
  int dims[VL_MAX_DIMS], nd = ag_dims(n, dims);
  vl_tensor *z, *anyz, *x1, *p1, *cnt, *c0, *c1, *lone, *zero, *inner, *a;
  double has_zero = 0;
  if (!(z = tmp(k, vl_binary(VL_EQ, x, scalar_like(k, x, 0))))) return vl_last_status();
  if (!(anyz = tmp(k, vl_reduce(VL_ANY, z, 0, NULL, false)))) return vl_last_status();
  int64_t at[1] = {0};
  if (vl_get(anyz, at, &has_zero)) return vl_last_status();
  if (!has_zero) { /* the common case: prod / x */
    *f = tmp(k, vl_binary(VL_DIV, yk, x));
    return *f ? VL_OK : vl_last_status();
  }
  if (!(x1 = tmp(k, vl_masked_fill(x, z, 1.0)))) return vl_last_status();
  if (!(p1 = tmp(k, vl_reduce(VL_PROD, x1, nd, dims, true)))) return vl_last_status(); /* product of non-zeros */
  if (!(cnt = tmp(k, vl_reduce(VL_SUM, z, nd, dims, true)))) return vl_last_status(); /* zeros per output */
  if (!(c0 = tmp(k, vl_binary(VL_EQ, cnt, scalar_like(k, cnt, 0))))) return vl_last_status();
  if (!(c1 = tmp(k, vl_binary(VL_EQ, cnt, scalar_like(k, cnt, 1))))) return vl_last_status();
  if (!(lone = tmp(k, vl_binary(VL_LOGICAL_AND, z, c1)))) return vl_last_status();
  if (!(zero = scalar_like(k, x, 0))) return vl_last_status();
  if (!(inner = tmp(k, vl_where(lone, p1, zero)))) return vl_last_status();
  if (!(a = tmp(k, vl_binary(VL_DIV, p1, x1)))) return vl_last_status();
  *f = tmp(k, vl_where(c0, a, inner));
  return *f ? VL_OK : vl_last_status();
}

static int reduce_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  if (ag_empty_input(n, gi)) return gi[0] ? VL_OK : vl_last_status();
  int dims[VL_MAX_DIMS], nd = ag_dims(n, dims);
  tmps k = {.n = 0};
  vl_tensor *gk, *r = NULL;
  if (!(gk = tmp(&k, ag_kept(n, g)))) return ag_finish(n, NULL, gi, &k);
  switch ((vl_redop)n->iarg[1]) {
    case VL_SUM: r = tmp(&k, vl_expand(gk, n->in_ndim[0], n->in_shape[0])); break;
    case VL_MEAN: {
      vl_tensor *s = tmp(&k, vl_binary(VL_MUL, gk, scalar_like(&k, gk, 1.0 / (double)ag_count(n))));
      r = s ? tmp(&k, vl_expand(s, n->in_ndim[0], n->in_shape[0])) : NULL;
      break;
    }
    case VL_PROD: {
      vl_tensor *yk = tmp(&k, ag_kept(n, AG_Y(n))), *f = NULL;
      if (yk && prod_factor(n, &k, AG_X(n), yk, &f) == VL_OK) r = tmp(&k, vl_binary(VL_MUL, gk, f));
      break;
    }
    case VL_AMAX:
    case VL_AMIN: {
      vl_tensor *yk, *eq, *cnt, *share;
      if ((yk = tmp(&k, ag_kept(n, AG_Y(n)))) && (eq = tmp(&k, vl_binary(VL_EQ, AG_X(n), yk))) &&
          (cnt = tmp(&k, vl_reduce(VL_SUM, eq, nd, dims, true))) && (share = tmp(&k, vl_binary(VL_DIV, gk, cnt))))
        r = tmp(&k, vl_binary(VL_MUL, eq, share));
      break;
    }
    case VL_LOGSUMEXP: {
      vl_tensor *yk, *d, *e;
      if ((yk = tmp(&k, ag_kept(n, AG_Y(n)))) && (d = tmp(&k, vl_binary(VL_SUB, AG_X(n), yk))) &&
          (e = tmp(&k, vl_unary(VL_EXP, d))))
        r = tmp(&k, vl_binary(VL_MUL, gk, e));
      break;
    }
    default: vl_error(VL_ESTATE, "%s: no backward", n->name); break;
  }
  return ag_finish(n, r, gi, &k);
}

vl_tensor *vl_reduce(vl_redop op, const vl_tensor *t, int ndims, const int *dims, bool keepdim) {
  bool rec = vl__ag_begin(t);
  vl_tensor *out = reduce_fwd(op, t, ndims, dims, keepdim);
  vl__ag_end(rec);
  /* all/any give bool and integer inputs never require grad: no node */
  if (out == NULL || !rec || op == VL_ALL || op == VL_ANY || !vl_dtype_is_float(out->dtype)) return out;
  rplan pl;
  if (vl__reduce_plan(redop_names[op], t, ndims, dims, keepdim, &pl)) { /* cannot fail: the forward ran */
    vl_tensor_release(out);
    return NULL;
  }
  bool saves = op == VL_PROD || op == VL_AMAX || op == VL_AMIN || op == VL_LOGSUMEXP;
  return vl__reduce_record(redop_names[op], reduce_backward, t, out, vl__mask_bits(t->ndim, pl.mask), op, 0,
                           saves ? t : NULL, saves);
}

/* ------------------------------------------------------------------ */
/* var, std                                                            */
/* ------------------------------------------------------------------ */

static vl_tensor *var_impl(const char *name, const vl_tensor *t, int ndims, const int *dims, int64_t correction,
                           bool keepdim, bool take_sqrt) {
  if (check_tensor(name, t)) return NULL;
  if (correction < 0) {
    vl_error(VL_EARG, "%s: correction %lld must be >= 0 (1 = unbiased, 0 = population)", name,
             (long long)correction);
    return NULL;
  }
  rplan pl;
  if (vl__reduce_plan(name, t, ndims, dims, keepdim, &pl)) return NULL;
  vl_dtype out_dt = vl_dtype_is_float(t->dtype) ? t->dtype : VL_FLOAT32;
  if (pl.R == 0 || pl.N == 0) return filled(&pl, out_dt, NAN);

  rlayout L;
  if (vl__reduce_prepare(name, t, pl.mask, float_work(t->dtype), false, &L)) return NULL;
  int64_t N = pl.N, R = pl.R;
  vl_tensor *out = NULL;
  acc m = {NULL, NULL, NULL}, d = {NULL, NULL, NULL};
  if (acc_alloc(name, P_SUM, N, &m) || acc_alloc(name, P_SUMDEV, N, &d)) goto done;
  if (run_pass(name, P_SUM, L.dt, L.x, L.off, L.O, L.R, L.I, NULL, 0, &m)) goto done;
  for (int64_t j = 0; j < N; j++) m.a1[j] /= (double)R;
  if (run_pass(name, P_SUMDEV, L.dt, L.x, L.off, L.O, L.R, L.I, m.a1, 0, &d)) goto done;
  double dof = (double)VL_MAX(0, R - correction);
  for (int64_t j = 0; j < N; j++) {
    /* corrected two-pass: sum d^2 - (sum d)^2 / n removes the rounding
       error of the mean */
    double m2 = d.a2[j] - d.a1[j] * d.a1[j] / (double)R;
    if (m2 < 0) m2 = 0;
    double v = m2 / dof;
    d.a1[j] = take_sqrt ? sqrt(v) : v;
  }
  out = vl_empty(pl.out_ndim, pl.out_shape, out_dt);
  if (out) store_f(out, d.a1, N);
done:
  acc_free(&m);
  acc_free(&d);
  vl_tensor_release(L.src);
  return out;
}

/* var: g * 2 (x - mean) / (R - correction); std: g (x - mean) /
   ((R - correction) std), 0 where std is 0 (as PyTorch, not 0/0). */
static int var_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  if (ag_empty_input(n, gi)) return gi[0] ? VL_OK : vl_last_status();
  int dims[VL_MAX_DIMS], nd = ag_dims(n, dims);
  bool is_std = n->iarg[1] != 0;
  double dof = (double)VL_MAX(0, ag_count(n) - (int64_t)n->arg[0]);
  const vl_tensor *x = AG_X(n);
  tmps k = {.n = 0};
  vl_tensor *gk, *mean, *dev, *scale, *r = NULL;
  if ((gk = tmp(&k, ag_kept(n, g))) && (mean = tmp(&k, vl_reduce(VL_MEAN, x, nd, dims, true))) &&
      (dev = tmp(&k, vl_binary(VL_SUB, x, mean)))) {
    if (is_std) {
      vl_tensor *yk, *den, *q, *z;
      scale = (yk = tmp(&k, ag_kept(n, AG_Y(n)))) &&
                      (den = tmp(&k, vl_binary(VL_MUL, yk, scalar_like(&k, yk, dof)))) &&
                      (q = tmp(&k, vl_binary(VL_DIV, gk, den))) &&
                      (z = tmp(&k, vl_binary(VL_EQ, yk, scalar_like(&k, yk, 0))))
                  ? tmp(&k, vl_masked_fill(q, z, 0))
                  : NULL;
    } else {
      scale = tmp(&k, vl_binary(VL_MUL, gk, scalar_like(&k, gk, 2.0 / dof)));
    }
    if (scale) r = tmp(&k, vl_binary(VL_MUL, dev, scale));
  }
  return ag_finish(n, r, gi, &k);
}

static vl_tensor *var_record(const char *name, const vl_tensor *t, int ndims, const int *dims, int64_t correction,
                             bool keepdim, bool take_sqrt) {
  bool rec = vl__ag_begin(t);
  vl_tensor *out = var_impl(name, t, ndims, dims, correction, keepdim, take_sqrt);
  vl__ag_end(rec);
  if (out == NULL || !rec) return out;
  rplan pl;
  if (vl__reduce_plan(name, t, ndims, dims, keepdim, &pl)) {
    vl_tensor_release(out);
    return NULL;
  }
  return vl__reduce_record(name, var_backward, t, out, vl__mask_bits(t->ndim, pl.mask), take_sqrt,
                           (double)correction, t, take_sqrt);
}

vl_tensor *vl_var(const vl_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim) {
  return var_record("var", t, ndims, dims, correction, keepdim, false);
}

vl_tensor *vl_std(const vl_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim) {
  return var_record("std", t, ndims, dims, correction, keepdim, true);
}
/* ------------------------------------------------------------------ */
/* norm                                                                */
/* ------------------------------------------------------------------ */

static vl_tensor *norm_fwd(const vl_tensor *t, double p, int ndims, const int *dims, bool keepdim) {
  const char *name = "norm";
  if (check_tensor(name, t)) return NULL;
  if (p != p) {
    vl_error(VL_EARG, "norm: p must be a number (a real > 0, 0, or +-inf), got nan");
    return NULL;
  }
  rplan pl;
  if (vl__reduce_plan(name, t, ndims, dims, keepdim, &pl)) return NULL;
  vl_dtype out_dt = vl_dtype_is_float(t->dtype) ? t->dtype : VL_FLOAT32;
  if (pl.R == 0 || pl.N == 0) {
    if (pl.R == 0 && isinf(p)) {
      empty_error(name, p > 0 ? "maximum" : "minimum", t);
      return NULL;
    }
    return filled(&pl, out_dt, 0);
  }
  int prim = p == 2 ? P_SUMSQ : p == 1 ? P_SUMABS : p == INFINITY ? P_MAXABS : p == -INFINITY ? P_MINABS
           : p == 0 ? P_NNZ : P_SUMPOW;
  rlayout L;
  if (vl__reduce_prepare(name, t, pl.mask, float_work(t->dtype), false, &L)) return NULL;
  int64_t N = pl.N;
  vl_tensor *out = NULL;
  acc a;
  if (acc_alloc(name, prim, N, &a)) goto done;
  if (run_pass(name, prim, L.dt, L.x, L.off, L.O, L.R, L.I, NULL, p, &a)) goto done;
  out = vl_empty(pl.out_ndim, pl.out_shape, out_dt);
  if (!out) goto done;
  if (prim == P_NNZ) {
    for (int64_t j = 0; j < N; j++) vl_store(vl_data_ptr(out), j, out_dt, (double)a.ak[j]);
  } else {
    for (int64_t j = 0; j < N; j++) {
      if (prim == P_SUMSQ)
        a.a1[j] = sqrt(a.a1[j]);
      else if (prim == P_SUMPOW)
        a.a1[j] = pow(a.a1[j], 1.0 / p);
    }
    store_f(out, a.a1, N);
  }
done:
  acc_free(&a);
  vl_tensor_release(L.src);
  return out;
}

/* Gradients of the p-norm n = (sum |x|^p)^(1/p), as PyTorch's
   norm_backward (a zero norm gives a zero gradient, not 0/0):
     p = 0       0 (a count);
     p = 1       g sign(x);
     p = 2       g x / n, 0 where n == 0;
     p = +-inf   g sign(x) split evenly among the |x| equal to n;
     other p     g sign(x) |x|^(p-1) / n^(p-1), 0 where x == 0 or n == 0. */
static int norm_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  if (ag_empty_input(n, gi)) return gi[0] ? VL_OK : vl_last_status();
  int dims[VL_MAX_DIMS], nd = ag_dims(n, dims);
  double p = n->arg[0];
  const vl_tensor *x = AG_X(n);
  tmps k = {.n = 0};
  vl_tensor *gk, *yk, *r = NULL;
  if (!(gk = tmp(&k, ag_kept(n, g))) || !(yk = tmp(&k, ag_kept(n, AG_Y(n))))) return ag_finish(n, NULL, gi, &k);
  if (p == 0) {
    r = tmp(&k, vl_zeros(n->in_ndim[0], n->in_shape[0], n->in_dtype[0]));
  } else if (p == 1) {
    vl_tensor *s = tmp(&k, vl_unary(VL_SIGN, x));
    if (s) r = tmp(&k, vl_binary(VL_MUL, s, gk));
  } else if (isinf(p)) {
    vl_tensor *ax, *eq, *cnt, *share, *s, *sh;
    if ((ax = tmp(&k, vl_unary(VL_ABS, x))) && (eq = tmp(&k, vl_binary(VL_EQ, ax, yk))) &&
        (cnt = tmp(&k, vl_reduce(VL_SUM, eq, nd, dims, true))) && (share = tmp(&k, vl_binary(VL_DIV, gk, cnt))) &&
        (s = tmp(&k, vl_unary(VL_SIGN, x))) && (sh = tmp(&k, vl_binary(VL_MUL, eq, share))))
      r = tmp(&k, vl_binary(VL_MUL, s, sh));
  } else {
    /* scale = g / n^(p-1) (g / n for p = 2), 0 where n == 0 */
    vl_tensor *den, *q, *nz, *scale;
    const vl_tensor *xs = NULL;
    den = p == 2 ? yk : tmp(&k, vl_binary(VL_POW, yk, scalar_like(&k, yk, p - 1)));
    if (den && (q = tmp(&k, vl_binary(VL_DIV, gk, den))) &&
        (nz = tmp(&k, vl_binary(VL_EQ, yk, scalar_like(&k, yk, 0)))) && (scale = tmp(&k, vl_masked_fill(q, nz, 0)))) {
      if (p == 2) {
        xs = x;
      } else { /* sign(x) |x|^(p-1), 0 at x == 0 */
        vl_tensor *ax, *pw, *s, *sp, *xz;
        if ((ax = tmp(&k, vl_unary(VL_ABS, x))) && (pw = tmp(&k, vl_binary(VL_POW, ax, scalar_like(&k, ax, p - 1)))) &&
            (s = tmp(&k, vl_unary(VL_SIGN, x))) && (sp = tmp(&k, vl_binary(VL_MUL, s, pw))) &&
            (xz = tmp(&k, vl_binary(VL_EQ, x, scalar_like(&k, x, 0)))))
          xs = tmp(&k, vl_masked_fill(sp, xz, 0));
      }
      if (xs) r = tmp(&k, vl_binary(VL_MUL, xs, scale));
    }
  }
  return ag_finish(n, r, gi, &k);
}

vl_tensor *vl_norm(const vl_tensor *t, double p, int ndims, const int *dims, bool keepdim) {
  bool rec = vl__ag_begin(t);
  vl_tensor *out = norm_fwd(t, p, ndims, dims, keepdim);
  vl__ag_end(rec);
  if (out == NULL || !rec) return out;
  rplan pl;
  if (vl__reduce_plan("norm", t, ndims, dims, keepdim, &pl)) {
    vl_tensor_release(out);
    return NULL;
  }
  return vl__reduce_record("norm", norm_backward, t, out, vl__mask_bits(t->ndim, pl.mask), 0, p,
                           t, true);
}
