/*
** reduce_internal.h — shared by ops/reduce.c (reductions), ops/argmax.c
** (max/min with indices, argmax/argmin) and ops/softmax.c (softmax,
** log_softmax, cumsum): the
** [O, R, I] layout a reduction over dims is brought to, typed element
** loads, and the vectorised float32 max. Not installed.
**
** Layout: element (o, r, i) of the dense buffer at off + (o*R + r)*I + i;
** O outer outputs, R reduced elements, I inner outputs. See reduce.c.
*/
#ifndef VL_REDUCE_INTERNAL_H
#define VL_REDUCE_INTERNAL_H

#include "autograd.h"
#include "vl_internal.h"

#define VL_REDUCE_COLBLOCK 1024 /* outputs one task accumulates when an inner dim is kept (at most) */
#define VL_REDUCE_MIN_COLS 64   /* narrowest column block (256 bytes of float32 per row) */
#define VL_REDUCE_MIN_TASKS 16  /* (outer, column block) tasks wanted for the threads */
#define VL_REDUCE_CHUNK 16384   /* elements of a row one task reduces; longer rows are split */

#define VL_AI static inline __attribute__((always_inline))
/* Vectorise this loop (at -O2 GCC only vectorises loops it is told to). */
#define VL_SIMD _Pragma("omp simd")

/* ------------------------------------------------------------------ */
/* Element loads (dt is a constant after inlining)                     */
/* ------------------------------------------------------------------ */

VL_AI double ldf(const void *x, int64_t i, vl_dtype dt) {
  switch (dt) {
    case VL_FLOAT32: return ((const float *)x)[i];
    case VL_FLOAT64: return ((const double *)x)[i];
    case VL_INT64: return (double)((const int64_t *)x)[i];
    case VL_INT32: return ((const int32_t *)x)[i];
    case VL_UINT8: return ((const uint8_t *)x)[i];
    case VL_BOOL: return ((const uint8_t *)x)[i] != 0;
    default: return 0;
  }
}

VL_AI int64_t ldi(const void *x, int64_t i, vl_dtype dt) {
  switch (dt) {
    case VL_INT64: return ((const int64_t *)x)[i];
    case VL_INT32: return ((const int32_t *)x)[i];
    case VL_UINT8: return ((const uint8_t *)x)[i];
    case VL_BOOL: return ((const uint8_t *)x)[i] != 0;
    default: return 0; /* float types never take the integer path */
  }
}

VL_AI int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

VL_AI bool is_floatwork(vl_dtype dt) { return dt == VL_FLOAT32 || dt == VL_FLOAT64; }

/* The dtype float work is done in: float64 stays, other floats and all
   integers go to float32. */
static inline vl_dtype float_work(vl_dtype dt) { return dt == VL_FLOAT64 ? VL_FLOAT64 : VL_FLOAT32; }

/* The dtype a kernel reads: float16/bfloat16 are widened to float32. */
static inline vl_dtype native_work(vl_dtype dt) {
  return (dt == VL_FLOAT16 || dt == VL_BFLOAT16) ? VL_FLOAT32 : dt;
}

/* ------------------------------------------------------------------ */
/* Vectorised float32 max/min                                          */
/* ------------------------------------------------------------------ */

/* The float32 max/min and find below use SSE2 directly where the
   compiler has it (always on x86-64): GCC's vectoriser keeps the lanes of
   a max reduction in memory and does not vectorise a loop that exits
   early. Elsewhere the same work runs as plain C. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define VL_EXT_SSE2 1
#else
#define VL_EXT_SSE2 0
#endif

/* Elements per step: 8 vectors of 4, eight independent max chains. */
#define VL_EXT_LANES 32
/* Unroll the loops over those 8 vectors, so that they live in registers. */
#if defined(__GNUC__) && !defined(__clang__)
#define VL_UNROLL8 _Pragma("GCC unroll 8")
#else
#define VL_UNROLL8
#endif

/* Max (ismax) or min of a float32 run, NaNs ignored (-inf / +inf for an
   empty or all-NaN run); *nan set when the run holds a NaN. maxps(v, m)
   is `v > m ? v : m`, so a NaN v leaves m as it is; one unordered compare
   per two vectors catches the NaNs. Bound by memory, not by the ALU. */
VL_AI float row_ext_f32_nan(const float *restrict x, int64_t n, bool ismax, bool *nan) {
  float init = ismax ? -INFINITY : INFINITY;
  float r = init;
  bool any = false;
  int64_t i = 0;
#if VL_EXT_SSE2
  if (n >= VL_EXT_LANES) {
    __m128 m[8], u = _mm_setzero_ps();
    VL_UNROLL8
    for (int k = 0; k < 8; k++) m[k] = _mm_set1_ps(init);
    for (; i + VL_EXT_LANES <= n; i += VL_EXT_LANES) {
      __m128 v[8];
      VL_UNROLL8
      for (int k = 0; k < 8; k++) v[k] = _mm_loadu_ps(x + i + 4 * k);
      if (ismax) {
        VL_UNROLL8
        for (int k = 0; k < 8; k++) m[k] = _mm_max_ps(v[k], m[k]);
      } else {
        VL_UNROLL8
        for (int k = 0; k < 8; k++) m[k] = _mm_min_ps(v[k], m[k]);
      }
      VL_UNROLL8
      for (int k = 0; k < 8; k += 2) u = _mm_or_ps(u, _mm_cmpunord_ps(v[k], v[k + 1]));
    }
    float lanes[VL_EXT_LANES];
    VL_UNROLL8
    for (int k = 0; k < 8; k++) _mm_storeu_ps(lanes + 4 * k, m[k]);
    for (int k = 0; k < VL_EXT_LANES; k++) r = (ismax ? lanes[k] > r : lanes[k] < r) ? lanes[k] : r;
    any = _mm_movemask_ps(u) != 0;
  }
#endif
  for (; i < n; i++) {
    float v = x[i];
    r = (ismax ? v > r : v < r) ? v : r;
    any |= v != v;
  }
  *nan = any;
  return r;
}

/* Position of the first NaN of a float32 run (n if none), or, when
   !find_nan, of the first element equal to e: 16 elements tested at a
   time, the block with a hit then scanned. */
VL_AI int64_t find_f32(const float *restrict x, int64_t n, float e, bool find_nan) {
  int64_t i = 0;
#if VL_EXT_SSE2
  __m128 ev = _mm_set1_ps(e);
  for (; i + 16 <= n; i += 16) {
    __m128 v0 = _mm_loadu_ps(x + i), v1 = _mm_loadu_ps(x + i + 4);
    __m128 v2 = _mm_loadu_ps(x + i + 8), v3 = _mm_loadu_ps(x + i + 12);
    __m128 c;
    if (find_nan)
      c = _mm_or_ps(_mm_cmpunord_ps(v0, v1), _mm_cmpunord_ps(v2, v3));
    else
      c = _mm_or_ps(_mm_or_ps(_mm_cmpeq_ps(v0, ev), _mm_cmpeq_ps(v1, ev)),
                    _mm_or_ps(_mm_cmpeq_ps(v2, ev), _mm_cmpeq_ps(v3, ev)));
    if (_mm_movemask_ps(c)) break;
  }
#endif
  for (; i < n; i++)
    if (find_nan ? x[i] != x[i] : x[i] == e) return i;
  return n;
}

/* Max or min of a float32 run; NaN wins (the first NaN of the run). */
VL_AI float row_ext_f32(const float *restrict x, int64_t n, bool ismax) {
  bool nan;
  float r = row_ext_f32_nan(x, n, ismax, &nan);
  return nan ? x[find_f32(x, n, 0, true)] : r;
}

/* ------------------------------------------------------------------ */
/* Dims and layouts (reduce.c)                                         */
/* ------------------------------------------------------------------ */

typedef struct rplan {
  bool mask[VL_MAX_DIMS];   /* dims reduced */
  int out_ndim;
  int64_t out_shape[VL_MAX_DIMS];
  int64_t R;                /* reduced elements per output */
  int64_t N;                /* outputs */
} rplan;

typedef struct rlayout {
  vl_tensor *src;   /* one reference: t itself or a converted/contiguous copy */
  const void *x;    /* storage base */
  int64_t off;      /* element offset of element [0,...,0] */
  int64_t O, R, I;
  vl_dtype dt;
} rlayout;

/* Width of the column blocks of [O, R, I] work with I > 1: at most
   VL_REDUCE_COLBLOCK, halved (down to VL_REDUCE_MIN_COLS) until there are
   VL_REDUCE_MIN_TASKS (o, block) tasks, so that a reduction over the
   first dim of a matrix still uses every thread. Results do not depend on
   it: each output sees its rows in the same order in any block. */
static inline int64_t vl__reduce_colblock(int64_t O, int64_t I) {
  int64_t cb = VL_REDUCE_COLBLOCK;
  while (cb > VL_REDUCE_MIN_COLS && O * ((I + cb - 1) / cb) < VL_REDUCE_MIN_TASKS) cb /= 2;
  return cb;
}

static inline int check_tensor(const char *op, const vl_tensor *t) {
  if (!t) return vl_error(VL_EARG, "%s: tensor is NULL", op);
  if ((unsigned)t->dtype >= VL_DTYPE_COUNT) return vl_error(VL_EDTYPE, "%s: unknown dtype %d", op, (int)t->dtype);
  return VL_OK;
}

/* The reduced dims (ndims == 0: all) of t, the output shape (reduced
   dims kept as 1 when keepdim), R and N. Errors name `op`. */
int vl__reduce_plan(const char *op, const vl_tensor *t, int ndims, const int *dims, bool keepdim, rplan *pl);

/* Bring t (non-empty) into an [O, R, I] layout of dtype `work`, in place
   when t is a dense permutation, else through a copy. ordered: memory
   order must follow logical order (flat indices and outputs of t's own
   shape); otherwise kept dims first, reduced last. L->src holds one
   reference the caller releases. */
int vl__reduce_prepare(const char *op, const vl_tensor *t, const bool *mask, vl_dtype work, bool ordered,
                       rlayout *L);

/* ------------------------------------------------------------------ */
/* Autograd (reduce.c)                                                 */
/* ------------------------------------------------------------------ */

/* Forward work of an op whose input requires grad runs with recording
   off (its internal copies record nothing): rec = vl__ag_begin(t), the
   work, vl__ag_end(rec). rec tells whether to record the result. */
bool vl__ag_begin(const vl_tensor *t);
void vl__ag_end(bool rec);

/* The reduced dims of a plan (or the one dim of softmax/cumsum) as bits. */
int64_t vl__mask_bits(int ndim, const bool *mask);

/* Record out = op(t): a node with iarg[0] = mask, iarg[1] = what,
   arg[0] = arg, `save` (or NULL) saved with its slot in iarg[2] and out
   saved (save_out) with its slot in iarg[3] (-1 when not saved). Returns
   out, or NULL after releasing it. */
vl_tensor *vl__reduce_record(const char *name, vl_backward_fn fn, const vl_tensor *t, vl_tensor *out,
                             int64_t mask, int64_t what, double arg, const vl_tensor *save, bool save_out);

/* ------------------------------------------------------------------ */
/* Float64 max/min, empty-set errors (reduce.c, argmax.c)              */
/* ------------------------------------------------------------------ */

/* One step of a NaN-sticky max (ismax) or min: NaN wins. */
#define VL_EXT_STEP(v, m, ismax) ((((ismax) ? (v) > (m) : (v) < (m)) || (v) != (v)) ? (v) : (m))

/* Max or min of a float64 run, NaN wins (float32: row_ext_f32 above). */
VL_AI double row_ext_f64(const double *restrict x, int64_t n, bool ismax) {
  double init = ismax ? -INFINITY : INFINITY;
  double m[4] = {init, init, init, init};
  int64_t i = 0;
  if (ismax) {
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; k++) m[k] = VL_EXT_STEP(x[i + k], m[k], true);
  } else {
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; k++) m[k] = VL_EXT_STEP(x[i + k], m[k], false);
  }
  double r = init;
  for (; i < n; i++) r = VL_EXT_STEP(x[i], r, ismax);
  for (int k = 0; k < 4; k++) r = VL_EXT_STEP(m[k], r, ismax);
  return r;
}

/* The dim is not named: callers number dims differently (0-based here,
   1-based in Lua); the shape shows which one is empty. */
static inline int empty_error(const char *op, const char *what, const vl_tensor *t) {
  char buf[VL_SHAPE_STR];
  return vl_error(VL_EARG, "%s: cannot take the %s over a dim of size 0 (shape %s): an empty set has no %s", op,
                  what, vl_shape_str(t->ndim, t->shape, buf), what);
}

/* ------------------------------------------------------------------ */
/* Shared pieces of the backwards (reduce.c, argmax.c)                 */
/* ------------------------------------------------------------------ */

#define AG_X(n) ((n)->saved[(n)->iarg[2]])
#define AG_Y(n) ((n)->saved[(n)->iarg[3]])

/* The output's shape with the reduced dims kept as 1. */
static inline void ag_keep_shape(const vl_node *n, int64_t *shape) {
  for (int d = 0; d < n->in_ndim[0]; d++) shape[d] = (n->iarg[0] & ((int64_t)1 << d)) ? 1 : n->in_shape[0][d];
}

/* t (an output-shaped tensor) viewed with the reduced dims kept. */
static inline vl_tensor *ag_kept(const vl_node *n, const vl_tensor *t) {
  int64_t shape[VL_MAX_DIMS];
  ag_keep_shape(n, shape);
  return vl_reshape(t, n->in_ndim[0], shape);
}

/* An empty input gets an empty gradient: no formula needs to run. */
static inline bool ag_empty_input(const vl_node *n, vl_tensor **gi) {
  for (int d = 0; d < n->in_ndim[0]; d++)
    if (n->in_shape[0][d] == 0) {
      gi[0] = vl_zeros(n->in_ndim[0], n->in_shape[0], n->in_dtype[0]);
      return true;
    }
  return false;
}

/* Temporaries of a backward, released together at its end: each step is
   `if (!(a = tmp(&k, vl_op(...)))) goto done;`. */
#define VL_AG_MAX_TMPS 24 /* most temporaries one backward holds */
typedef struct tmps {
  vl_tensor *t[VL_AG_MAX_TMPS];
  int n;
} tmps;

static inline vl_tensor *tmp(tmps *k, vl_tensor *t) {
  if (t == NULL) return NULL;
  if (k->n == VL_AG_MAX_TMPS) {
    vl_tensor_release(t);
    vl_error(VL_ESTATE, "backward: internal error: more than %d temporaries", VL_AG_MAX_TMPS);
    return NULL;
  }
  k->t[k->n++] = t;
  return t;
}

static inline void tmps_free(tmps *k) {
  for (int i = 0; i < k->n; i++) vl_tensor_release(k->t[i]);
  k->n = 0;
}

/* Finish a backward: r (not taken over, may be NULL) summed/converted
   into gi[0]. */
static inline int ag_finish(const vl_node *n, vl_tensor *r, vl_tensor **gi, tmps *k) {
  if (r) vl_tensor_retain(r);
  gi[0] = vl_ag_reduce_to(n, 0, r);
  tmps_free(k);
  return gi[0] ? VL_OK : vl_last_status();
}

#endif /* VL_REDUCE_INTERNAL_H */
