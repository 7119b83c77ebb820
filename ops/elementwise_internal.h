/*
** elementwise_internal.h — shared by ops/elementwise.c (unary and binary
** ops, clamp) and ops/where.c (where, masked_fill): the compiler setup of
** the kernels, the strided loop driver's plan and context (the driver is
** in elementwise.c), integer element access and the shared checks. Not
** installed. Include it first: the pragma below must come before any
** other header so that their inline helpers get it too.
*/
#ifndef VL_ELEMENTWISE_INTERNAL_H
#define VL_ELEMENTWISE_INTERNAL_H

#if defined(__GNUC__) && !defined(__clang__)
/* Let the kernels vectorise: we never read FP exception flags or errno,
   and loops of unknown length should vectorise at -O2 too. a*b+c may
   become one fused multiply-add where the CPU has FMA (the AVX2/AVX-512
   clones below): one rounding instead of two, so float32 results can
   differ in the last bit between machines. No reassociation. */
#pragma GCC optimize("no-trapping-math", "no-math-errno", "vect-cost-model=dynamic", "fp-contract=fast")
#endif

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <omp.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "autograd.h"
#include "vl_internal.h"

/* Most operands one kernel walks at once: output + 3 inputs (where). */
#define EW_MAX_OPS 4

/* The math helpers must inline into the kernel loops to vectorise; the
   big switch kernels would otherwise exhaust GCC's inlining budget. */
#if defined(__GNUC__)
#define EW_INLINE static inline __attribute__((always_inline))
#else
#define EW_INLINE static inline
#endif

/* The float32 kernels are compiled for AVX-512 and AVX2 (with FMA) too and
   picked at load time (VL_CLONES): the exp family is compute-bound with
   SSE2 alone. */
#define EW_CLONES VL_CLONES

/* ------------------------------------------------------------------ */
/* The strided loop driver (elementwise.c)                              */
/* ------------------------------------------------------------------ */

typedef struct ew_plan {
  int nops;                               /* operand 0 is the output */
  int ndim;                               /* >= 1 after merging */
  int64_t numel;
  int64_t shape[VL_MAX_DIMS];
  int64_t stride[EW_MAX_OPS][VL_MAX_DIMS]; /* elements */
  char *base[EW_MAX_OPS];                  /* element [0,...,0] */
  int64_t esize[EW_MAX_OPS];
} ew_plan;

typedef struct ew_ctx {
  int op;
  vl_dtype dt[EW_MAX_OPS];
  double beta, thr;  /* softplus */
  double lo, hi;     /* clamp (float), -inf/+inf when absent */
  int64_t ilo, ihi;  /* clamp (integer) */
  double value;      /* masked_fill */
} ew_ctx;

/* One inner row: n elements; p[k] points at operand k's first element,
   s[k] is its step in elements. */
typedef void (*ew_kernel)(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c);

/* Build a plan over `shape` for operands ts[0..nops) (ts[0] the output,
   already of that shape; inputs broadcast to it). */
void vl__ew_plan_init(ew_plan *pl, int ndim, const int64_t *shape, int nops, const vl_tensor *const *ts);
/* Run the kernel over every element of the plan, split between threads. */
void vl__ew_run(const ew_plan *pl, ew_kernel fn, const ew_ctx *c);

#define EW_SOFTPLUS_BETA 1.0
#define EW_SOFTPLUS_THRESHOLD 20.0

static inline void ctx_init(ew_ctx *c, int op) {
  memset(c, 0, sizeof *c);
  c->op = op;
  c->beta = EW_SOFTPLUS_BETA;
  c->thr = EW_SOFTPLUS_THRESHOLD;
  c->lo = -INFINITY;
  c->hi = INFINITY;
}

/* ------------------------------------------------------------------ */
/* Integer element access                                               */
/* ------------------------------------------------------------------ */

static inline bool dtype_is_int(vl_dtype dt) { return !vl_dtype_is_float(dt); } /* int*, uint8, bool */

static inline int64_t load_i64(const char *p, vl_dtype dt) {
  switch (dt) {
    case VL_INT64: return *(const int64_t *)p;
    case VL_INT32: return *(const int32_t *)p;
    case VL_UINT8: return *(const uint8_t *)p;
    case VL_BOOL: return *(const uint8_t *)p != 0;
    default: return vl_double_to_i64(vl_load(p, 0, dt));
  }
}

static inline void store_i64(char *p, vl_dtype dt, int64_t v) {
  switch (dt) {
    case VL_INT64: *(int64_t *)p = v; break;
    case VL_INT32: *(int32_t *)p = (int32_t)(uint32_t)(uint64_t)v; break; /* wraps */
    case VL_UINT8: *(uint8_t *)p = (uint8_t)(uint64_t)v; break;           /* wraps */
    case VL_BOOL: *(uint8_t *)p = v != 0; break;
    default: vl_store(p, 0, dt, (double)v); break;
  }
}

/* ------------------------------------------------------------------ */
/* Shared checks                                                        */
/* ------------------------------------------------------------------ */

static inline int check_tensor(const char *op, const char *what, const vl_tensor *t) {
  if (t == NULL) return vl_error(VL_EARG, "%s: %s is NULL (expected a tensor)", op, what);
  return VL_OK;
}

/* An output with a stride-0 dim (an expanded view) would be written many
   times over through one element. */
static inline int check_writable(const char *op, const vl_tensor *t) {
  for (int d = 0; d < t->ndim; d++) {
    if (t->stride[d] == 0 && t->shape[d] > 1) {
      char buf[VL_SHAPE_STR];
      return vl_error(VL_EARG,
                      "%s: cannot write into an expanded tensor of shape %s (dim %d has stride 0); "
                      "clone it first",
                      op, vl_shape_str(t->ndim, t->shape, buf), d);
    }
  }
  return VL_OK;
}

/* When `in` overlaps the output without being the very same view, read a
   copy instead so that no element is read after it was overwritten.
   Returns the tensor to read (*tmp holds a new reference or NULL). */
static inline const vl_tensor *unalias(const vl_tensor *out, const vl_tensor *in, vl_tensor **tmp) {
  *tmp = NULL;
  if (!vl_shares_storage(out, in)) return in;
  bool same = in->dtype == out->dtype && in->offset == out->offset && in->ndim == out->ndim;
  for (int d = 0; same && d < in->ndim; d++)
    same = in->shape[d] == out->shape[d] && (in->stride[d] == out->stride[d] || in->shape[d] == 1);
  if (same) return in;
  *tmp = vl_clone(in);
  return *tmp;
}

static inline bool shapes_equal(int na, const int64_t *sa, int nb, const int64_t *sb) {
  if (na != nb) return false;
  for (int d = 0; d < na; d++)
    if (sa[d] != sb[d]) return false;
  return true;
}

#endif
