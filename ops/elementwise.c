/*
** elementwise.c — unary and binary element-wise ops and clamp (prefix
** vl_), and their reverse-mode gradients. where and masked_fill are in
** where.c; what both files share (compiler setup, the loop driver's plan
** and context, checks) is in elementwise_internal.h.
**
** Autograd: an out-of-place op whose input requires grad records one node
** (unary_record, binary_record) saving only what its backward reads;
** the backward turns the output gradient into each input's with one
** fused pass (grad_kernel) or a plain op, summed over
** broadcast dims by vl_ag_reduce_to. In-place forms refuse tensors in the
** graph (vl_ag_check_inplace) and bump the storage version after writing.
**
** Every op runs through one strided loop driver (ew_run): the operands'
** strides are broadcast to the output shape, adjacent dims that can be
** walked as one are merged, and the element range is split between the
** OpenMP threads. Each thread walks its range one inner row at a time and
** hands the row to a kernel with one pointer and one step per operand.
** The kernels branch on the steps: all contiguous (the common case, an
** `omp simd` loop), a scalar operand (step 0: x + 1, a row vector over a
** matrix after merging, a column over a matrix), or strided.
**
** Kernels by dtype:
**  - float32 / float64 with every operand in that dtype: typed loops. The
**    exp family on float32 (exp, sigmoid, tanh, silu, gelu, gelu_tanh,
**    softplus) uses vl_expf (vl_internal.h), written so that the
**    compiler vectorises it (glibc's expf does not vectorise without
**    -ffast-math); float64 uses libm.
**  - integer/bool compute dtypes: elements read as int64, integer
**    arithmetic wrapping like PyTorch (no signed overflow in C).
**  - everything else (float16, bfloat16, mixed dtypes): elements read as
**    double through vl_load, computed in double, stored with vl_store.
*/
#include "elementwise_internal.h"

/* Thread ranges start on multiples of this many elements, so that every
   thread's contiguous run starts on a cache line (64 bytes of float32). */
#define EW_RANGE_ALIGN 64
/* Longest op name with the in-place suffix, for messages. */
#define EW_NAME_MAX 32

/* Internal op code of clamp next to the vl_unop codes. */
#define EW_CLAMP VL_UNOP_COUNT

/* ------------------------------------------------------------------ */
/* Names                                                                */
/* ------------------------------------------------------------------ */

static const char *const unop_names[VL_UNOP_COUNT] = {
    "neg",      "abs",         "exp",  "log",   "sqrt", "rsqrt",     "sin",        "cos",
    "tanh",     "sigmoid",     "relu", "gelu",  "gelu_tanh", "silu", "softplus", "logical_not",
    "sign",     "floor",       "ceil", "round", "reciprocal", "square"};

static const char *const binop_names[VL_BINOP_COUNT] = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "remainder", "eq", "ne",
    "lt",  "le",  "gt",  "ge",  "logical_and", "logical_or", "logical_xor"};

const char *vl_unop_name(vl_unop op) {
  return (unsigned)op < VL_UNOP_COUNT ? unop_names[op] : "unknown_unop";
}

const char *vl_binop_name(vl_binop op) {
  return (unsigned)op < VL_BINOP_COUNT ? binop_names[op] : "unknown_binop";
}

static bool binop_gives_bool(vl_binop op) { return op >= VL_EQ; }

/* Unary ops that keep integer/bool dtypes (the rest give float32). */
static bool unop_keeps_int(int op) {
  switch (op) {
    case VL_NEG: case VL_ABS: case VL_SIGN: case VL_FLOOR: case VL_CEIL:
    case VL_ROUND: case VL_SQUARE: case VL_RELU: case EW_CLAMP:
      return true;
    default:
      return false;
  }
}

/* ------------------------------------------------------------------ */
/* Scalar math                                                          */
/* ------------------------------------------------------------------ */

/* 1 / (1 + exp(-x)) without overflow or cancellation on either side. */
EW_INLINE float ew_sigmoidf(float x) {
  float e = vl_expf(-fabsf(x));
  float r = 1.0f / (1.0f + e);
  return x >= 0.0f ? r : e * r;
}

/* tanh: odd Taylor polynomial below EW_TANH_SMALL (where 1 - 2/(e^2x+1)
   would lose digits to cancellation), the exp form above. */
#define EW_TANH_SMALL 0.55f
EW_INLINE float ew_tanhf(float x) {
  float ax = fabsf(x);
  float z = x * x;
  float p = 6404582.0f / 10854718875.0f;
  p = p * z - 929569.0f / 638512875.0f;
  p = p * z + 21844.0f / 6081075.0f;
  p = p * z - 1382.0f / 155925.0f;
  p = p * z + 62.0f / 2835.0f;
  p = p * z - 17.0f / 315.0f;
  p = p * z + 2.0f / 15.0f;
  p = p * z - 1.0f / 3.0f;
  float small = x + x * z * p;
  float e = vl_expf(2.0f * ax);
  float big = copysignf(1.0f - 2.0f / (e + 1.0f), x);
  return ax < EW_TANH_SMALL ? small : big;
}

#define EW_SQRT_2_OVER_PI 0.79788456080286535588
#define EW_GELU_TANH_C 0.044715

/* 0.5 x (1 + tanh(u)) == x * sigmoid(2u): no cancellation for x << 0.
   2u is formed in double and split into float hi + lo, and exp(-|2u|) =
   expf(-|hi|) * (1 -+ lo): rounding 2u to float would otherwise cost
   |2u| ulps in the negative tail. |2u| is capped where sigmoid is 0 or 1
   in float anyway. */
#define EW_GELU_ARG_CAP 200.0
EW_INLINE float ew_gelu_tanhf(float x) {
  double xd = x;
  double t = 2.0 * EW_SQRT_2_OVER_PI * (xd + EW_GELU_TANH_C * xd * xd * xd);
  t = t > EW_GELU_ARG_CAP ? EW_GELU_ARG_CAP : t < -EW_GELU_ARG_CAP ? -EW_GELU_ARG_CAP : t;
  float hi = (float)t;
  float lo = (float)(t - (double)hi);
  float e = vl_expf(-fabsf(hi)) * (1.0f - (hi >= 0.0f ? lo : -lo));
  float r = 1.0f / (1.0f + e);
  return x * (hi >= 0.0f ? r : e * r);
}

/* GELU, erf form, for float32: x * Phi(x), Phi(x) = erfc(-x/sqrt2) / 2.
   erfc(z) = t exp(-z^2 + c(t)), t = 1 / (1 + z/2), with the Chebyshev fit
   c(t) of Numerical Recipes' erfcc (relative error < 1.2e-7 for all z >= 0).
   -z^2 = -x^2/2 is exact in double, and exp of the double argument is
   taken as expf(hi) * (1 + lo), so the negative tail keeps its relative
   accuracy; Phi(x) = 1 - erfc/2 for x >= 0 has no cancellation to fear. */
#define EW_GELU_EXP_FLOOR (-200.0) /* exp below this is 0 in float32 */
EW_INLINE float ew_normal_cdff(float x) {
  float z = fabsf(x) * (float)M_SQRT1_2;
  float tf = 1.0f / (1.0f + 0.5f * z);
  float c = 0.17087277f;
  c = c * tf - 0.82215223f;
  c = c * tf + 1.48851587f;
  c = c * tf - 1.13520398f;
  c = c * tf + 0.27886807f;
  c = c * tf - 0.18628806f;
  c = c * tf + 0.09678418f;
  c = c * tf + 0.37409196f;
  c = c * tf + 1.00002368f;
  c = c * tf - 1.26551223f;
  double xd = x;
  double arg = -0.5 * xd * xd + (double)c;
  arg = arg < EW_GELU_EXP_FLOOR ? EW_GELU_EXP_FLOOR : arg;
  float hi = (float)arg;
  float lo = (float)(arg - (double)hi);
  float erfc_z = tf * (vl_expf(hi) * (1.0f + lo));
  return x < 0.0f ? 0.5f * erfc_z : 1.0f - 0.5f * erfc_z;
}

EW_INLINE float ew_geluf(float x) { return x * ew_normal_cdff(x); }

/* d/dx of x * Phi(x) in float32: Phi(x) + x * phi(x), both vectorised
   (the double form below goes through libm's erfc and exp per element). */
EW_INLINE float ew_gelu_gradf(float x) {
  float a = -0.5f * x * x;
  float e = vl_expf(a < (float)EW_GELU_EXP_FLOOR ? (float)EW_GELU_EXP_FLOOR : a);
  return ew_normal_cdff(x) + x * e * 0.39894228040143267794f;
}

static inline double ew_sigmoid(double x) {
  double e = exp(-fabs(x));
  double r = 1.0 / (1.0 + e);
  return x >= 0.0 ? r : e * r;
}

static inline double ew_gelu(double x) { return 0.5 * x * erfc(-x * M_SQRT1_2); }

static inline double ew_gelu_tanh(double x) {
  double u = EW_SQRT_2_OVER_PI * (x + EW_GELU_TANH_C * x * x * x);
  return x * ew_sigmoid(2.0 * u);
}

static inline double ew_softplus(double x, double beta, double thr) {
  double bx = beta * x;
  return bx > thr ? x : log1p(exp(bx)) / beta;
}

static inline float ew_softplusf(float x, float beta, float thr) {
  float bx = beta * x;
  return bx > thr ? x : log1pf(vl_expf(bx)) / beta;
}

EW_INLINE double ew_sign(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x; } /* keeps 0, -0, NaN */
EW_INLINE float ew_signf(float x) { return x > 0 ? 1.0f : x < 0 ? -1.0f : x; }

/* min(max(x, lo), hi) like PyTorch (hi wins when lo > hi); NaN stays. */
EW_INLINE float ew_clampf(float x, float lo, float hi) {
  float y = x < lo ? lo : x;
  return y > hi ? hi : y;
}

EW_INLINE double ew_clamp(double x, double lo, double hi) {
  double y = x < lo ? lo : x;
  return y > hi ? hi : y;
}

/* Python/PyTorch remainder: the result takes the divisor's sign. */
static inline double ew_rem(double x, double y) {
  double r = fmod(x, y);
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}

static inline float ew_remf(float x, float y) {
  float r = fmodf(x, y);
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}

/* Integer helpers: arithmetic in uint64 so overflow wraps (like PyTorch)
   instead of being undefined. */
static inline int64_t wrap_add(int64_t x, int64_t y) { return (int64_t)((uint64_t)x + (uint64_t)y); }
static inline int64_t wrap_sub(int64_t x, int64_t y) { return (int64_t)((uint64_t)x - (uint64_t)y); }
static inline int64_t wrap_mul(int64_t x, int64_t y) { return (int64_t)((uint64_t)x * (uint64_t)y); }
static inline int64_t wrap_neg(int64_t x) { return (int64_t)(0 - (uint64_t)x); }

/* x ** y for integers; a negative exponent truncates 1 / x**|y| toward
   zero (1 for x == 1, +-1 for x == -1, else 0). */
static int64_t ipow(int64_t x, int64_t y) {
  if (y < 0) {
    if (x == 1) return 1;
    if (x == -1) return (y & 1) ? -1 : 1;
    return 0;
  }
  uint64_t r = 1, b = (uint64_t)x;
  uint64_t e = (uint64_t)y;
  while (e) {
    if (e & 1) r *= b;
    b *= b;
    e >>= 1;
  }
  return (int64_t)r;
}

/* Python/PyTorch integer remainder; y != 0 (checked before the loop). */
static inline int64_t irem(int64_t x, int64_t y) {
  if (y == -1) return 0; /* INT64_MIN % -1 would trap */
  int64_t r = x % y;
  if (r != 0 && ((r < 0) != (y < 0))) r += y;
  return r;
}

/* ------------------------------------------------------------------ */
/* The strided loop driver                                              */
/* ------------------------------------------------------------------ */

/* Build a plan over `shape` for operands ts[0..nops) (ts[0] the output,
   already of that shape; inputs broadcast to it). */
void vl__ew_plan_init(ew_plan *pl, int ndim, const int64_t *shape, int nops, const vl_tensor *const *ts) {
  int64_t st[EW_MAX_OPS][VL_MAX_DIMS];
  pl->nops = nops;
  pl->numel = 1;
  for (int d = 0; d < ndim; d++) pl->numel *= shape[d];
  for (int k = 0; k < nops; k++) {
    vl_broadcast_strides(ts[k], ndim, shape, st[k]);
    pl->esize[k] = (int64_t)vl_dtype_size(ts[k]->dtype);
    pl->base[k] = vl_base(ts[k]) + ts[k]->offset * pl->esize[k];
  }
  /* Drop size-1 dims, then merge dim d into d+1 when every operand steps
     over it as over one longer row. */
  int nd = 0;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 1) continue;
    if (nd > 0) {
      bool merge = true;
      for (int k = 0; k < nops && merge; k++)
        merge = pl->stride[k][nd - 1] == st[k][d] * shape[d];
      if (merge) {
        pl->shape[nd - 1] *= shape[d];
        for (int k = 0; k < nops; k++) pl->stride[k][nd - 1] = st[k][d];
        continue;
      }
    }
    pl->shape[nd] = shape[d];
    for (int k = 0; k < nops; k++) pl->stride[k][nd] = st[k][d];
    nd++;
  }
  if (nd == 0) {
    pl->shape[0] = 1;
    for (int k = 0; k < nops; k++) pl->stride[k][0] = 0;
    nd = 1;
  }
  pl->ndim = nd;
}

/* Run the kernel over flat elements [start, end) of the plan. */
static void run_range(const ew_plan *pl, ew_kernel fn, const ew_ctx *c, int64_t start, int64_t end) {
  int nd = pl->ndim, nops = pl->nops;
  int64_t idx[VL_MAX_DIMS], off[EW_MAX_OPS] = {0}, step[EW_MAX_OPS];
  char *ptr[EW_MAX_OPS];
  int64_t rem = start;
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = rem % pl->shape[d];
    rem /= pl->shape[d];
    for (int k = 0; k < nops; k++) off[k] += idx[d] * pl->stride[k][d];
  }
  for (int k = 0; k < nops; k++) step[k] = pl->stride[k][nd - 1];
  int64_t inner = pl->shape[nd - 1];
  int64_t pos = start;
  while (pos < end) {
    int64_t len = inner - idx[nd - 1];
    if (len > end - pos) len = end - pos;
    for (int k = 0; k < nops; k++) ptr[k] = pl->base[k] + off[k] * pl->esize[k];
    fn(len, ptr, step, c);
    pos += len;
    if (pos >= end) break;
    idx[nd - 1] += len;
    for (int k = 0; k < nops; k++) off[k] += len * step[k];
    for (int d = nd - 1; d > 0 && idx[d] == pl->shape[d]; d--) {
      idx[d] = 0;
      idx[d - 1]++;
      for (int k = 0; k < nops; k++) off[k] += pl->stride[k][d - 1] - pl->shape[d] * pl->stride[k][d];
    }
  }
}

void vl__ew_run(const ew_plan *pl, ew_kernel fn, const ew_ctx *c) {
  int64_t n = pl->numel;
  if (n <= 0) return;
#pragma omp parallel if (n > VL_PARALLEL_GRAIN)
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t per = (n + nt - 1) / nt;
    per = (per + EW_RANGE_ALIGN - 1) / EW_RANGE_ALIGN * EW_RANGE_ALIGN;
    int64_t s = t * per, e = VL_MIN(n, s + per);
    if (s < e) run_range(pl, fn, c, s, e);
  }
}

/* ------------------------------------------------------------------ */
/* Unary kernels                                                        */
/* ------------------------------------------------------------------ */

#define UN_LOOP(TO, TI, EXPR)                                        \
  do {                                                               \
    TO *o_ = (TO *)p[0];                                             \
    const TI *a_ = (const TI *)p[1];                                 \
    int64_t so_ = s[0], sa_ = s[1];                                  \
    if (so_ == 1 && sa_ == 1) {                                      \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {          \
        TI x = a_[i];                                                \
        o_[i] = (EXPR);                                              \
      }                                                              \
    } else {                                                         \
      for (int64_t i = 0; i < n; i++) {                              \
        TI x = a_[i * sa_];                                          \
        o_[i * so_] = (EXPR);                                        \
      }                                                              \
    }                                                                \
  } while (0)

EW_CLONES /* sqrt does not vectorise while sqrtf may set errno (-fmath-errno is the
   default and cannot be switched off per file): contiguous rows use the
   SSE instruction directly. Same correctly rounded results. */
static bool sqrt_f32_simd(int op, int64_t n, char *const *p, const int64_t *s) {
#if defined(__SSE2__)
  if (s[0] != 1 || s[1] != 1 || (op != VL_SQRT && op != VL_RSQRT)) return false;
  float *o = (float *)p[0];
  const float *a = (const float *)p[1];
  int64_t i = 0;
  const __m128 one = _mm_set1_ps(1.0f);
  for (; i + 4 <= n; i += 4) {
    __m128 r = _mm_sqrt_ps(_mm_loadu_ps(a + i));
    if (op == VL_RSQRT) r = _mm_div_ps(one, r);
    _mm_storeu_ps(o + i, r);
  }
  for (; i < n; i++) o[i] = op == VL_RSQRT ? 1.0f / sqrtf(a[i]) : sqrtf(a[i]);
  return true;
#else
  VL_UNUSED(op), VL_UNUSED(n), VL_UNUSED(p), VL_UNUSED(s);
  return false;
#endif
}

static bool sqrt_f64_simd(int op, int64_t n, char *const *p, const int64_t *s) {
#if defined(__SSE2__)
  if (s[0] != 1 || s[1] != 1 || (op != VL_SQRT && op != VL_RSQRT)) return false;
  double *o = (double *)p[0];
  const double *a = (const double *)p[1];
  int64_t i = 0;
  const __m128d one = _mm_set1_pd(1.0);
  for (; i + 2 <= n; i += 2) {
    __m128d r = _mm_sqrt_pd(_mm_loadu_pd(a + i));
    if (op == VL_RSQRT) r = _mm_div_pd(one, r);
    _mm_storeu_pd(o + i, r);
  }
  for (; i < n; i++) o[i] = op == VL_RSQRT ? 1.0 / sqrt(a[i]) : sqrt(a[i]);
  return true;
#else
  VL_UNUSED(op), VL_UNUSED(n), VL_UNUSED(p), VL_UNUSED(s);
  return false;
#endif
}

EW_CLONES static void un_f32(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  if (sqrt_f32_simd(c->op, n, p, s)) return;
  const float lo = (float)c->lo, hi = (float)c->hi;
  const float beta = (float)c->beta, thr = (float)c->thr;
  switch (c->op) {
    case VL_NEG: UN_LOOP(float, float, -x); break;
    case VL_ABS: UN_LOOP(float, float, fabsf(x)); break;
    case VL_EXP: UN_LOOP(float, float, vl_expf(x)); break;
    case VL_LOG: UN_LOOP(float, float, logf(x)); break;
    case VL_SQRT: UN_LOOP(float, float, sqrtf(x)); break;
    case VL_RSQRT: UN_LOOP(float, float, 1.0f / sqrtf(x)); break;
    case VL_SIN: UN_LOOP(float, float, sinf(x)); break;
    case VL_COS: UN_LOOP(float, float, cosf(x)); break;
    case VL_TANH: UN_LOOP(float, float, ew_tanhf(x)); break;
    case VL_SIGMOID: UN_LOOP(float, float, ew_sigmoidf(x)); break;
    case VL_RELU: UN_LOOP(float, float, x < 0.0f ? 0.0f : x); break;
    case VL_GELU: UN_LOOP(float, float, ew_geluf(x)); break;
    case VL_GELU_TANH: UN_LOOP(float, float, ew_gelu_tanhf(x)); break;
    case VL_SILU: UN_LOOP(float, float, x * ew_sigmoidf(x)); break;
    case VL_SOFTPLUS: UN_LOOP(float, float, ew_softplusf(x, beta, thr)); break;
    case VL_SIGN: UN_LOOP(float, float, ew_signf(x)); break;
    case VL_FLOOR: UN_LOOP(float, float, floorf(x)); break;
    case VL_CEIL: UN_LOOP(float, float, ceilf(x)); break;
    case VL_ROUND: UN_LOOP(float, float, rintf(x)); break; /* half to even */
    case VL_RECIPROCAL: UN_LOOP(float, float, 1.0f / x); break;
    case VL_SQUARE: UN_LOOP(float, float, x * x); break;
    case EW_CLAMP: UN_LOOP(float, float, ew_clampf(x, lo, hi)); break;
    default: break;
  }
}

static void un_f64(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  if (sqrt_f64_simd(c->op, n, p, s)) return;
  const double lo = c->lo, hi = c->hi, beta = c->beta, thr = c->thr;
  switch (c->op) {
    case VL_NEG: UN_LOOP(double, double, -x); break;
    case VL_ABS: UN_LOOP(double, double, fabs(x)); break;
    case VL_EXP: UN_LOOP(double, double, exp(x)); break;
    case VL_LOG: UN_LOOP(double, double, log(x)); break;
    case VL_SQRT: UN_LOOP(double, double, sqrt(x)); break;
    case VL_RSQRT: UN_LOOP(double, double, 1.0 / sqrt(x)); break;
    case VL_SIN: UN_LOOP(double, double, sin(x)); break;
    case VL_COS: UN_LOOP(double, double, cos(x)); break;
    case VL_TANH: UN_LOOP(double, double, tanh(x)); break;
    case VL_SIGMOID: UN_LOOP(double, double, ew_sigmoid(x)); break;
    case VL_RELU: UN_LOOP(double, double, x < 0.0 ? 0.0 : x); break;
    case VL_GELU: UN_LOOP(double, double, ew_gelu(x)); break;
    case VL_GELU_TANH: UN_LOOP(double, double, ew_gelu_tanh(x)); break;
    case VL_SILU: UN_LOOP(double, double, x * ew_sigmoid(x)); break;
    case VL_SOFTPLUS: UN_LOOP(double, double, ew_softplus(x, beta, thr)); break;
    case VL_SIGN: UN_LOOP(double, double, ew_sign(x)); break;
    case VL_FLOOR: UN_LOOP(double, double, floor(x)); break;
    case VL_CEIL: UN_LOOP(double, double, ceil(x)); break;
    case VL_ROUND: UN_LOOP(double, double, rint(x)); break;
    case VL_RECIPROCAL: UN_LOOP(double, double, 1.0 / x); break;
    case VL_SQUARE: UN_LOOP(double, double, x * x); break;
    case EW_CLAMP: UN_LOOP(double, double, ew_clamp(x, lo, hi)); break;
    default: break;
  }
}

static double un_d(int op, double x, const ew_ctx *c) {
  switch (op) {
    case VL_NEG: return -x;
    case VL_ABS: return fabs(x);
    case VL_EXP: return exp(x);
    case VL_LOG: return log(x);
    case VL_SQRT: return sqrt(x);
    case VL_RSQRT: return 1.0 / sqrt(x);
    case VL_SIN: return sin(x);
    case VL_COS: return cos(x);
    case VL_TANH: return tanh(x);
    case VL_SIGMOID: return ew_sigmoid(x);
    case VL_RELU: return x < 0.0 ? 0.0 : x;
    case VL_GELU: return ew_gelu(x);
    case VL_GELU_TANH: return ew_gelu_tanh(x);
    case VL_SILU: return x * ew_sigmoid(x);
    case VL_SOFTPLUS: return ew_softplus(x, c->beta, c->thr);
    case VL_LOGICAL_NOT: return x == 0;
    case VL_SIGN: return ew_sign(x);
    case VL_FLOOR: return floor(x);
    case VL_CEIL: return ceil(x);
    case VL_ROUND: return rint(x);
    case VL_RECIPROCAL: return 1.0 / x;
    case VL_SQUARE: return x * x;
    case EW_CLAMP: return ew_clamp(x, c->lo, c->hi);
    default: return x;
  }
}

/* Any dtype in and out, computed in double. */
static void un_generic(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  vl_dtype to = c->dt[0], ti = c->dt[1];
  for (int64_t i = 0; i < n; i++) vl_store(p[0], i * s[0], to, un_d(c->op, vl_load(p[1], i * s[1], ti), c));
}

static int64_t un_i(int op, int64_t x, const ew_ctx *c) {
  switch (op) {
    case VL_NEG: return wrap_neg(x);
    case VL_ABS: return x < 0 ? wrap_neg(x) : x;
    case VL_SIGN: return (x > 0) - (x < 0);
    case VL_SQUARE: return wrap_mul(x, x);
    case VL_RELU: return x < 0 ? 0 : x;
    case EW_CLAMP: {
      int64_t y = x < c->ilo ? c->ilo : x;
      return y > c->ihi ? c->ihi : y;
    }
    default: return x; /* floor, ceil, round */
  }
}

/* Integer/bool in and out, exact in int64. */
static void un_int(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  vl_dtype to = c->dt[0], ti = c->dt[1];
  int64_t eo = (int64_t)vl_dtype_size(to), ei = (int64_t)vl_dtype_size(ti);
  for (int64_t i = 0; i < n; i++)
    store_i64(p[0] + i * s[0] * eo, to, un_i(c->op, load_i64(p[1] + i * s[1] * ei, ti), c));
}

/* ------------------------------------------------------------------ */
/* Binary kernels                                                       */
/* ------------------------------------------------------------------ */

#define BIN_LOOP(TO, TI, EXPR)                                       \
  do {                                                               \
    TO *o_ = (TO *)p[0];                                             \
    const TI *a_ = (const TI *)p[1], *b_ = (const TI *)p[2];         \
    int64_t so_ = s[0], sa_ = s[1], sb_ = s[2];                      \
    if (so_ == 1 && sa_ == 1 && sb_ == 1) {                          \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {          \
        TI x = a_[i], y = b_[i];                                     \
        o_[i] = (EXPR);                                              \
      }                                                              \
    } else if (so_ == 1 && sa_ == 1 && sb_ == 0) {                   \
      const TI y = b_[0];                                            \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {          \
        TI x = a_[i];                                                \
        o_[i] = (EXPR);                                              \
      }                                                              \
    } else if (so_ == 1 && sa_ == 0 && sb_ == 1) {                   \
      const TI x = a_[0];                                            \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {          \
        TI y = b_[i];                                                \
        o_[i] = (EXPR);                                              \
      }                                                              \
    } else {                                                         \
      for (int64_t i = 0; i < n; i++) {                              \
        TI x = a_[i * sa_], y = b_[i * sb_];                         \
        o_[i * so_] = (EXPR);                                        \
      }                                                              \
    }                                                                \
  } while (0)

#define BIN_CASES(T, POW, REM)                                                  \
  case VL_ADD: BIN_LOOP(T, T, x + y); break;                                     \
  case VL_SUB: BIN_LOOP(T, T, x - y); break;                                     \
  case VL_MUL: BIN_LOOP(T, T, x * y); break;                                     \
  case VL_DIV: BIN_LOOP(T, T, x / y); break;                                     \
  case VL_POW:                                                                   \
    if (s[2] == 0 && *(const T *)p[2] == 2) BIN_LOOP(T, T, ((void)y, x * x));       \
    else BIN_LOOP(T, T, POW(x, y));                                              \
    break;                                                                       \
  case VL_MAXIMUM: BIN_LOOP(T, T, (x > y || x != x) ? x : y); break;             \
  case VL_MINIMUM: BIN_LOOP(T, T, (x < y || x != x) ? x : y); break;             \
  case VL_REMAINDER: BIN_LOOP(T, T, REM(x, y)); break;                           \
  case VL_EQ: BIN_LOOP(uint8_t, T, x == y); break;                               \
  case VL_NE: BIN_LOOP(uint8_t, T, x != y); break;                               \
  case VL_LT: BIN_LOOP(uint8_t, T, x < y); break;                                \
  case VL_LE: BIN_LOOP(uint8_t, T, x <= y); break;                               \
  case VL_GT: BIN_LOOP(uint8_t, T, x > y); break;                                \
  case VL_GE: BIN_LOOP(uint8_t, T, x >= y); break;                               \
  case VL_LOGICAL_AND: BIN_LOOP(uint8_t, T, (x != 0) & (y != 0)); break;         \
  case VL_LOGICAL_OR: BIN_LOOP(uint8_t, T, (x != 0) | (y != 0)); break;          \
  case VL_LOGICAL_XOR: BIN_LOOP(uint8_t, T, (x != 0) ^ (y != 0)); break;         \
  default: break;

EW_CLONES static void bin_f32(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  switch (c->op) { BIN_CASES(float, powf, ew_remf) }
}

static void bin_f64(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  switch (c->op) { BIN_CASES(double, pow, ew_rem) }
}

static double bin_d(int op, double x, double y) {
  switch (op) {
    case VL_ADD: return x + y;
    case VL_SUB: return x - y;
    case VL_MUL: return x * y;
    case VL_DIV: return x / y;
    case VL_POW: return pow(x, y);
    case VL_MAXIMUM: return (x > y || x != x) ? x : y;
    case VL_MINIMUM: return (x < y || x != x) ? x : y;
    case VL_REMAINDER: return ew_rem(x, y);
    case VL_EQ: return x == y;
    case VL_NE: return x != y;
    case VL_LT: return x < y;
    case VL_LE: return x <= y;
    case VL_GT: return x > y;
    case VL_GE: return x >= y;
    case VL_LOGICAL_AND: return (x != 0) && (y != 0);
    case VL_LOGICAL_OR: return (x != 0) || (y != 0);
    case VL_LOGICAL_XOR: return (x != 0) != (y != 0);
    default: return 0;
  }
}

static void bin_generic(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  vl_dtype to = c->dt[0], ta = c->dt[1], tb = c->dt[2];
  for (int64_t i = 0; i < n; i++)
    vl_store(p[0], i * s[0], to, bin_d(c->op, vl_load(p[1], i * s[1], ta), vl_load(p[2], i * s[2], tb)));
}

static int64_t bin_i(int op, int64_t x, int64_t y) {
  switch (op) {
    case VL_ADD: return wrap_add(x, y);
    case VL_SUB: return wrap_sub(x, y);
    case VL_MUL: return wrap_mul(x, y);
    case VL_POW: return ipow(x, y);
    case VL_MAXIMUM: return x > y ? x : y;
    case VL_MINIMUM: return x < y ? x : y;
    case VL_REMAINDER: return y == 0 ? 0 : irem(x, y); /* zeros rejected before the loop */
    case VL_EQ: return x == y;
    case VL_NE: return x != y;
    case VL_LT: return x < y;
    case VL_LE: return x <= y;
    case VL_GT: return x > y;
    case VL_GE: return x >= y;
    case VL_LOGICAL_AND: return (x != 0) && (y != 0);
    case VL_LOGICAL_OR: return (x != 0) || (y != 0);
    case VL_LOGICAL_XOR: return (x != 0) != (y != 0);
    default: return 0; /* div never runs here */
  }
}

static void bin_int(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  vl_dtype to = c->dt[0], ta = c->dt[1], tb = c->dt[2];
  int64_t eo = (int64_t)vl_dtype_size(to), ea = (int64_t)vl_dtype_size(ta), eb = (int64_t)vl_dtype_size(tb);
  for (int64_t i = 0; i < n; i++)
    store_i64(p[0] + i * s[0] * eo, to,
              bin_i(c->op, load_i64(p[1] + i * s[1] * ea, ta), load_i64(p[2] + i * s[2] * eb, tb)));
}

/* ------------------------------------------------------------------ */
/* Gradient kernels (backward of the ops above)                         */
/* ------------------------------------------------------------------ */

/* One fused pass per input gradient: out = g * d(op)/d(input), reading
   the upstream gradient g and the saved tensors u (and v), all broadcast
   to g's shape. Unary ops use their vl_unop code (EW_CLAMP for clamp)
   with u = the saved input x or output y (see unary_saves); binary ops
   use the codes below with u = a, v = b. Formulas and their conventions
   at kinks follow PyTorch 1.13. */
enum {
  GR_DIV_B = EW_CLAMP + 1, /* -g * (a / b) / b */
  GR_POW_A,                /* g * b * a^(b-1), 0 where b == 0 */
  GR_POW_B,                /* g * a^b * log(a), 0 where a == 0 and b >= 0 */
  GR_MAX_A,                /* ties split the gradient in half */
  GR_MAX_B,
  GR_MIN_A,
  GR_MIN_B,
  GR_REM_B                 /* -g * floor(a / b) */
};

#define EW_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi) */

/* d/dx of x * Phi(x): Phi(x) + x * phi(x). */
static inline double gr_gelu(double x) {
  return 0.5 * erfc(-x * M_SQRT1_2) + x * exp(-0.5 * x * x) * EW_INV_SQRT_2PI;
}

/* d/dx of 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + c x^3). */
static inline double gr_gelu_tanh(double x) {
  double x2 = x * x;
  double t = tanh(EW_SQRT_2_OVER_PI * (x + EW_GELU_TANH_C * x2 * x));
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * EW_SQRT_2_OVER_PI * (1.0 + 3.0 * EW_GELU_TANH_C * x2);
}

static inline double gr_silu(double x) {
  double s = ew_sigmoid(x);
  return s * (1.0 + x * (1.0 - s));
}

/* max/min: g to the larger (smaller) side, half each on ties, all of it
   to both where a NaN makes every comparison false. */
#define GR_MAXMIN(g, x, y, LOSES) ((x) == (y) ? 0.5 * (g) : (LOSES) ? 0.0 : (g))

/* The gradient for one element, in double: the generic and float64 paths. */
static inline double gr_d(int op, double g, double u, double v, const ew_ctx *c) {
  switch (op) {
    case VL_ABS: return g * ew_sign(u);
    case VL_EXP: return g * u;
    case VL_LOG: return g / u;
    case VL_SQRT: return g / (2.0 * u);
    case VL_RSQRT: return -0.5 * g * u * u * u;
    case VL_SIN: return g * cos(u);
    case VL_COS: return -g * sin(u);
    case VL_TANH: return g * (1.0 - u * u);
    case VL_SIGMOID: return g * u * (1.0 - u);
    case VL_RELU: return u > 0.0 ? g : 0.0;
    case VL_GELU: return g * gr_gelu(u);
    case VL_GELU_TANH: return g * gr_gelu_tanh(u);
    case VL_SILU: return g * gr_silu(u);
    case VL_SOFTPLUS: return c->beta * u > c->thr ? g : g * ew_sigmoid(c->beta * u);
    case VL_RECIPROCAL: return -g * u * u;
    case VL_SQUARE: return 2.0 * g * u;
    case EW_CLAMP: return (u >= c->lo && u <= c->hi) ? g : 0.0;
    case GR_DIV_B: return -g * (u / v) / v;
    case GR_POW_A: return v == 0.0 ? 0.0 : g * v * pow(u, v - 1.0);
    case GR_POW_B: return (u == 0.0 && v >= 0.0) ? 0.0 : g * pow(u, v) * log(u);
    case GR_MAX_A: return GR_MAXMIN(g, u, v, u < v);
    case GR_MAX_B: return GR_MAXMIN(g, u, v, u > v);
    case GR_MIN_A: return GR_MAXMIN(g, u, v, u > v);
    case GR_MIN_B: return GR_MAXMIN(g, u, v, u < v);
    case GR_REM_B: return -g * floor(u / v);
    default: return 0.0;
  }
}

/* p[0] = out, p[1] = g, p[2] = u (, p[3] = v): same type T throughout. */
#define GR_LOOP(T, EXPR)                                                   \
  do {                                                                     \
    T *o_ = (T *)p[0];                                                     \
    const T *g_ = (const T *)p[1], *u_ = (const T *)p[2];                  \
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {                             \
      _Pragma("omp simd") for (int64_t i = 0; i < n; i++) {                \
        T g = g_[i], u = u_[i];                                            \
        o_[i] = (EXPR);                                                    \
      }                                                                    \
    } else {                                                               \
      for (int64_t i = 0; i < n; i++) {                                    \
        T g = g_[i * s[1]], u = u_[i * s[2]];                              \
        o_[i * s[0]] = (EXPR);                                             \
      }                                                                    \
    }                                                                      \
  } while (0)

#define GR_LOOP2(T, EXPR)                                                  \
  do {                                                                     \
    T *o_ = (T *)p[0];                                                     \
    const T *g_ = (const T *)p[1], *u_ = (const T *)p[2], *v_ = (const T *)p[3]; \
    for (int64_t i = 0; i < n; i++) {                                      \
      T g = g_[i * s[1]], u = u_[i * s[2]], v = v_[i * s[3]];              \
      o_[i * s[0]] = (EXPR);                                               \
    }                                                                      \
  } while (0)

EW_CLONES static void gr_f32(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  const float lo = (float)c->lo, hi = (float)c->hi, beta = (float)c->beta, thr = (float)c->thr;
  switch (c->op) {
    case VL_ABS: GR_LOOP(float, g * ew_signf(u)); break;
    case VL_EXP: GR_LOOP(float, g * u); break;
    case VL_LOG: GR_LOOP(float, g / u); break;
    case VL_SQRT: GR_LOOP(float, g / (2.0f * u)); break;
    case VL_RSQRT: GR_LOOP(float, -0.5f * g * u * u * u); break;
    case VL_SIN: GR_LOOP(float, g * cosf(u)); break;
    case VL_COS: GR_LOOP(float, -g * sinf(u)); break;
    case VL_TANH: GR_LOOP(float, g * (1.0f - u * u)); break;
    case VL_SIGMOID: GR_LOOP(float, g * u * (1.0f - u)); break;
    case VL_RELU: GR_LOOP(float, u > 0.0f ? g : 0.0f); break;
    case VL_GELU: GR_LOOP(float, g * ew_gelu_gradf(u)); break;
    case VL_GELU_TANH: GR_LOOP(float, g * (float)gr_gelu_tanh(u)); break;
    case VL_SILU: GR_LOOP(float, g * (ew_sigmoidf(u) * (1.0f + u * (1.0f - ew_sigmoidf(u))))); break;
    case VL_SOFTPLUS: GR_LOOP(float, beta * u > thr ? g : g * ew_sigmoidf(beta * u)); break;
    case VL_RECIPROCAL: GR_LOOP(float, -g * u * u); break;
    case VL_SQUARE: GR_LOOP(float, 2.0f * g * u); break;
    case EW_CLAMP: GR_LOOP(float, (u >= lo && u <= hi) ? g : 0.0f); break;
    default: GR_LOOP2(float, (float)gr_d(c->op, g, u, v, c)); break;
  }
}

static void gr_f64(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  if (c->op > EW_CLAMP)
    GR_LOOP2(double, gr_d(c->op, g, u, v, c));
  else
    GR_LOOP(double, gr_d(c->op, g, u, 0.0, c));
}

static void gr_generic(int64_t n, char *const *p, const int64_t *s, const ew_ctx *c) {
  bool two = c->op > EW_CLAMP;
  for (int64_t i = 0; i < n; i++) {
    double v = two ? vl_load(p[3], i * s[3], c->dt[3]) : 0.0;
    vl_store(p[0], i * s[0], c->dt[0],
             gr_d(c->op, vl_load(p[1], i * s[1], c->dt[1]), vl_load(p[2], i * s[2], c->dt[2]), v, c));
  }
}

/* out (g's shape and dtype) = the gradient `c->op` of g, u (and v, for
   the binary codes). u and v broadcast to g's shape. */
static vl_tensor *grad_kernel(const ew_ctx *base, const vl_tensor *g, const vl_tensor *u, const vl_tensor *v) {
  vl_tensor *out = vl_empty(g->ndim, g->shape, g->dtype);
  if (out == NULL) return NULL;
  const vl_tensor *ops[EW_MAX_OPS] = {out, g, u, v};
  int nops = base->op > EW_CLAMP ? 4 : 3;
  ew_plan pl;
  vl__ew_plan_init(&pl, g->ndim, g->shape, nops, ops);
  ew_ctx c = *base;
  bool all32 = true, all64 = true;
  for (int k = 0; k < nops; k++) {
    c.dt[k] = ops[k]->dtype;
    all32 = all32 && c.dt[k] == VL_FLOAT32;
    all64 = all64 && c.dt[k] == VL_FLOAT64;
  }
  vl__ew_run(&pl, all32 ? gr_f32 : all64 ? gr_f64 : gr_generic, &c);
  return out;
}

/* ------------------------------------------------------------------ */
/* Unary                                                                */
/* ------------------------------------------------------------------ */

static vl_dtype unary_result_dtype(int op, vl_dtype in) {
  if (op == VL_LOGICAL_NOT) return VL_BOOL;
  if (vl_dtype_is_float(in) || unop_keeps_int(op)) return in;
  return VL_FLOAT32;
}

/* out = op(a); out has a's shape. c holds the op and its parameters. */
static int unary_into(const char *name, ew_ctx *c, vl_tensor *out, const vl_tensor *a) {
  if (c->op == VL_NEG && a->dtype == VL_BOOL)
    return vl_error(VL_EDTYPE, "%s: negation of a bool tensor is not supported (use logical_not)", name);
  vl_tensor *tmp = NULL;
  const vl_tensor *in = unalias(out, a, &tmp);
  if (in == NULL) return vl_last_status();
  const vl_tensor *ops[2] = {out, in};
  ew_plan pl;
  vl__ew_plan_init(&pl, out->ndim, out->shape, 2, ops);
  c->dt[0] = out->dtype;
  c->dt[1] = in->dtype;
  ew_kernel fn;
  if (in->dtype == out->dtype && in->dtype == VL_FLOAT32 && c->op != VL_LOGICAL_NOT)
    fn = un_f32;
  else if (in->dtype == out->dtype && in->dtype == VL_FLOAT64 && c->op != VL_LOGICAL_NOT)
    fn = un_f64;
  else if (dtype_is_int(in->dtype) && dtype_is_int(out->dtype) && unop_keeps_int(c->op))
    fn = un_int;
  else
    fn = un_generic;
  vl__ew_run(&pl, fn, c);
  vl_tensor_release(tmp);
  return VL_OK;
}

/* What a unary op's backward reads: nothing, its input x or its output y
   (whichever the formula needs; the output when both would do). */
enum { SAVE_NONE, SAVE_INPUT, SAVE_OUTPUT };

static int unary_saves(int op) {
  switch (op) {
    case VL_EXP: case VL_SQRT: case VL_RSQRT: case VL_TANH: case VL_SIGMOID:
    case VL_RELU: case VL_RECIPROCAL:
      return SAVE_OUTPUT;
    case VL_NEG: case VL_SIGN: case VL_FLOOR: case VL_CEIL: case VL_ROUND:
      return SAVE_NONE;
    default:
      return SAVE_INPUT; /* abs log sin cos gelu gelu_tanh silu softplus square clamp */
  }
}

/* iarg[0] = op; arg = beta, threshold (softplus), lo, hi (clamp). */
static int unary_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int op = (int)n->iarg[0];
  vl_tensor *r;
  switch (op) {
    case VL_NEG: r = vl_unary(VL_NEG, g); break;
    case VL_SIGN: case VL_FLOOR: case VL_CEIL: case VL_ROUND: /* piecewise constant */
      r = vl_zeros(n->in_ndim[0], n->in_shape[0], n->in_dtype[0]);
      break;
    default: {
      ew_ctx c;
      ctx_init(&c, op);
      c.beta = n->arg[0];
      c.thr = n->arg[1];
      c.lo = n->arg[2];
      c.hi = n->arg[3];
      r = grad_kernel(&c, g, n->saved[0], NULL);
    }
  }
  gi[0] = vl_ag_reduce_to(n, 0, r);
  return gi[0] ? VL_OK : vl_last_status();
}

/* Record the node of out = op(a) when a needs a gradient; releases out
   and returns NULL on failure. logical_not (bool output) records none. */
static vl_tensor *unary_record(const char *name, const ew_ctx *c, const vl_tensor *a, vl_tensor *out) {
  if (c->op == VL_LOGICAL_NOT || !vl_dtype_is_float(out->dtype) || !vl_ag_needed(1, &a)) return out;
  vl_node *n = vl_ag_node(name, unary_backward, 1, &a);
  int saves = unary_saves(c->op);
  if (n) {
    n->iarg[0] = c->op;
    n->arg[0] = c->beta;
    n->arg[1] = c->thr;
    n->arg[2] = c->lo;
    n->arg[3] = c->hi;
  }
  if (n == NULL || (saves != SAVE_NONE && vl_ag_save(n, saves == SAVE_INPUT ? a : out) < 0) ||
      vl_ag_attach(out, n) != VL_OK) {
    vl_ag_node_release(n);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

/* `name` must be a literal: the graph keeps it as the grad_fn name. */
static vl_tensor *unary_new(const char *name, ew_ctx *c, const vl_tensor *a) {
  if (check_tensor(name, "input", a)) return NULL;
  vl_tensor *out = vl_empty(a->ndim, a->shape, unary_result_dtype(c->op, a->dtype));
  if (out == NULL) return NULL;
  if (unary_into(name, c, out, a) != VL_OK) {
    vl_tensor_release(out);
    return NULL;
  }
  return unary_record(name, c, a, out);
}

static int unary_inplace(const char *name, ew_ctx *c, vl_tensor *a) {
  if (check_tensor(name, "input", a)) return vl_last_status();
  if (vl_ag_check_inplace(name, a) != VL_OK) return vl_last_status();
  int rc = check_writable(name, a);
  if (rc) return rc;
  rc = unary_into(name, c, a, a);
  if (rc == VL_OK) vl_bump_version(a);
  return rc;
}

vl_tensor *vl_unary(vl_unop op, const vl_tensor *a) {
  if ((unsigned)op >= VL_UNOP_COUNT) {
    vl_error(VL_EARG, "unary: unknown op code %d (expected 0..%d)", (int)op, VL_UNOP_COUNT - 1);
    return NULL;
  }
  ew_ctx c;
  ctx_init(&c, op);
  return unary_new(unop_names[op], &c, a);
}

int vl_unary_(vl_unop op, vl_tensor *a) {
  if ((unsigned)op >= VL_UNOP_COUNT)
    return vl_error(VL_EARG, "unary_: unknown op code %d (expected 0..%d)", (int)op, VL_UNOP_COUNT - 1);
  char name[EW_NAME_MAX];
  snprintf(name, sizeof name, "%s_", unop_names[op]);
  ew_ctx c;
  ctx_init(&c, op);
  return unary_inplace(name, &c, a);
}

vl_tensor *vl_softplus(const vl_tensor *a, double beta, double threshold) {
  if (beta == 0 || beta != beta) {
    vl_error(VL_EARG, "softplus: beta must be a non-zero number, got %g", beta);
    return NULL;
  }
  if (threshold != threshold) {
    vl_error(VL_EARG, "softplus: threshold must be a number, got NaN");
    return NULL;
  }
  ew_ctx c;
  ctx_init(&c, VL_SOFTPLUS);
  c.beta = beta;
  c.thr = threshold;
  return unary_new("softplus", &c, a);
}

/* Clamp bounds: NaN = none. For integer tensors the bounds become the
   integers inside them (lo rounded up, hi rounded down), saturated. */
static int clamp_ctx(const char *name, ew_ctx *c, double lo, double hi) {
  ctx_init(c, EW_CLAMP);
  if (lo == INFINITY || hi == -INFINITY)
    return vl_error(VL_EARG, "%s: bounds min=%g, max=%g leave no value (an infinite bound on the wrong side)",
                    name, lo, hi);
  if (lo == lo) c->lo = lo;
  if (hi == hi) c->hi = hi;
  c->ilo = lo == lo ? vl_double_to_i64(ceil(lo)) : INT64_MIN;
  c->ihi = hi == hi ? vl_double_to_i64(floor(hi)) : INT64_MAX;
  return VL_OK;
}

vl_tensor *vl_clamp(const vl_tensor *a, double lo, double hi) {
  ew_ctx c;
  if (clamp_ctx("clamp", &c, lo, hi)) return NULL;
  return unary_new("clamp", &c, a);
}

int vl_clamp_(vl_tensor *a, double lo, double hi) {
  ew_ctx c;
  int rc = clamp_ctx("clamp_", &c, lo, hi);
  if (rc) return rc;
  return unary_inplace("clamp_", &c, a);
}

/* ------------------------------------------------------------------ */
/* Binary                                                               */
/* ------------------------------------------------------------------ */

static vl_dtype binary_result_dtype(vl_binop op, vl_dtype a, vl_dtype b) {
  if (binop_gives_bool(op)) return VL_BOOL;
  vl_dtype ct = vl_promote(a, b);
  if (op == VL_DIV && dtype_is_int(ct)) return VL_FLOAT32;
  return ct;
}

/* Does any element of t equal zero? (integer remainder check) */
static bool has_zero(const vl_tensor *t) {
  int64_t n = vl_numel(t);
  if (n == 0) return false;
  const int64_t *strides[1] = {t->stride};
  int64_t offsets[1] = {t->offset};
  vl_iter it;
  vl_iter_init(&it, t->ndim, t->shape, 1, strides, offsets);
  do {
    if (load_i64(vl_base(t) + it.offset[0] * (int64_t)vl_dtype_size(t->dtype), t->dtype) == 0) return true;
  } while (vl_iter_next(&it));
  return false;
}

/* out = a op b; out already has the broadcast shape. */
static int binary_into(const char *name, vl_binop op, vl_tensor *out, const vl_tensor *a, const vl_tensor *b) {
  vl_dtype ct = vl_promote(a->dtype, b->dtype);
  if (op == VL_SUB && a->dtype == VL_BOOL && b->dtype == VL_BOOL)
    return vl_error(VL_EDTYPE, "%s: subtraction of two bool tensors is not supported (use logical_xor)", name);
  bool int_compute = dtype_is_int(ct) && op != VL_DIV;
  if (op == VL_REMAINDER && int_compute && has_zero(b))
    return vl_error(VL_EARG, "%s: integer division by zero (the divisor, of dtype %s, holds a 0)", name,
                    vl_dtype_name(b->dtype));
  vl_tensor *ta = NULL, *tb = NULL;
  const vl_tensor *ia = unalias(out, a, &ta);
  const vl_tensor *ib = ia ? unalias(out, b, &tb) : NULL;
  if (ia == NULL || ib == NULL) {
    vl_tensor_release(ta);
    return vl_last_status();
  }
  const vl_tensor *ops[3] = {out, ia, ib};
  ew_plan pl;
  vl__ew_plan_init(&pl, out->ndim, out->shape, 3, ops);
  ew_ctx c;
  ctx_init(&c, op);
  c.dt[0] = out->dtype;
  c.dt[1] = ia->dtype;
  c.dt[2] = ib->dtype;
  vl_dtype want = binop_gives_bool(op) ? VL_BOOL : ia->dtype;
  ew_kernel fn;
  if (ia->dtype == VL_FLOAT32 && ib->dtype == VL_FLOAT32 && out->dtype == want)
    fn = bin_f32;
  else if (ia->dtype == VL_FLOAT64 && ib->dtype == VL_FLOAT64 && out->dtype == want)
    fn = bin_f64;
  else if (int_compute)
    fn = bin_int;
  else
    fn = bin_generic;
  vl__ew_run(&pl, fn, &c);
  vl_tensor_release(ta);
  vl_tensor_release(tb);
  return VL_OK;
}

/* iarg[0] = op, iarg[1] / iarg[2] = the slots where a / b were saved
   (-1: not saved). Each gradient is summed over the dims its input was
   broadcast along. */
static int binary_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int op = (int)n->iarg[0];
  const vl_tensor *a = n->iarg[1] >= 0 ? n->saved[n->iarg[1]] : NULL;
  const vl_tensor *b = n->iarg[2] >= 0 ? n->saved[n->iarg[2]] : NULL;
  ew_ctx c;
  ctx_init(&c, 0);
  for (int i = 0; i < 2; i++) {
    if (!n->needs[i]) continue;
    vl_tensor *r = NULL;
    switch (op) {
      case VL_ADD: vl_tensor_retain((vl_tensor *)g), r = (vl_tensor *)g; break;
      case VL_SUB:
        if (i == 0) vl_tensor_retain((vl_tensor *)g), r = (vl_tensor *)g;
        else r = vl_unary(VL_NEG, g);
        break;
      case VL_MUL: r = vl_binary(VL_MUL, g, i == 0 ? b : a); break;
      case VL_DIV:
        if (i == 0) {
          r = vl_binary(VL_DIV, g, b);
        } else {
          c.op = GR_DIV_B;
          r = grad_kernel(&c, g, a, b);
        }
        break;
      case VL_REMAINDER:
        if (i == 0) {
          vl_tensor_retain((vl_tensor *)g), r = (vl_tensor *)g;
        } else {
          c.op = GR_REM_B;
          r = grad_kernel(&c, g, a, b);
        }
        break;
      case VL_POW: c.op = i == 0 ? GR_POW_A : GR_POW_B; r = grad_kernel(&c, g, a, b); break;
      case VL_MAXIMUM: c.op = i == 0 ? GR_MAX_A : GR_MAX_B; r = grad_kernel(&c, g, a, b); break;
      case VL_MINIMUM: c.op = i == 0 ? GR_MIN_A : GR_MIN_B; r = grad_kernel(&c, g, a, b); break;
      default: return vl_error(VL_ESTATE, "%s: no backward", n->name);
    }
    gi[i] = vl_ag_reduce_to(n, i, r);
    if (gi[i] == NULL) return vl_last_status();
  }
  return VL_OK;
}

/* Which of a, b the backward of op reads, given which inputs need a
   gradient (mul saves b only for a's gradient, a only for b's). */
static void binary_saves(vl_binop op, const bool *needs, bool *save_a, bool *save_b) {
  switch (op) {
    case VL_MUL: *save_a = needs[1]; *save_b = needs[0]; break;
    case VL_DIV: *save_a = needs[1]; *save_b = true; break;
    case VL_REMAINDER: *save_a = *save_b = needs[1]; break;
    case VL_POW: case VL_MAXIMUM: case VL_MINIMUM: *save_a = *save_b = true; break;
    default: *save_a = *save_b = false; break; /* add, sub */
  }
}

/* Record the node of out = a op b; releases out and returns NULL on
   failure. Comparisons and logical ops (bool outputs) record none. */
static vl_tensor *binary_record(vl_binop op, const vl_tensor *a, const vl_tensor *b, vl_tensor *out) {
  const vl_tensor *in[2] = {a, b};
  if (binop_gives_bool(op) || !vl_dtype_is_float(out->dtype) || !vl_ag_needed(2, in)) return out;
  vl_node *n = vl_ag_node(binop_names[op], binary_backward, 2, in);
  bool ok = n != NULL;
  if (ok) {
    bool sa, sb;
    binary_saves(op, n->needs, &sa, &sb);
    n->iarg[0] = op;
    n->iarg[1] = sa ? vl_ag_save(n, a) : -1;
    n->iarg[2] = sb ? vl_ag_save(n, b) : -1;
    ok = (!sa || n->iarg[1] >= 0) && (!sb || n->iarg[2] >= 0) && vl_ag_attach(out, n) == VL_OK;
  }
  if (!ok) {
    vl_ag_node_release(n);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

static int check_binop(const char *fn, vl_binop op) {
  if ((unsigned)op >= VL_BINOP_COUNT)
    return vl_error(VL_EARG, "%s: unknown op code %d (expected 0..%d)", fn, (int)op, VL_BINOP_COUNT - 1);
  return VL_OK;
}

vl_tensor *vl_binary(vl_binop op, const vl_tensor *a, const vl_tensor *b) {
  if (check_binop("binary", op)) return NULL;
  const char *name = binop_names[op];
  if (check_tensor(name, "a", a) || check_tensor(name, "b", b)) return NULL;
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if (vl_broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
  vl_tensor *out = vl_empty(nd, shape, binary_result_dtype(op, a->dtype, b->dtype));
  if (out == NULL) return NULL;
  if (binary_into(name, op, out, a, b) != VL_OK) {
    vl_tensor_release(out);
    return NULL;
  }
  return binary_record(op, a, b, out);
}

int vl_binary_(vl_binop op, vl_tensor *a, const vl_tensor *b) {
  int rc = check_binop("binary_", op);
  if (rc) return rc;
  char name[EW_NAME_MAX];
  snprintf(name, sizeof name, "%s_", binop_names[op]);
  if ((rc = check_tensor(name, "a", a)) || (rc = check_tensor(name, "b", b))) return rc;
  if ((rc = vl_ag_check_inplace(name, a))) return rc;
  if (vl_ag_needed(1, &b))
    return vl_error(VL_ESTATE,
                    "%s: the operand b requires grad, but in-place operations are not differentiable; write "
                    "x = x %s y out of place (or run it inside vl.no_grad, or on y:detach())",
                    name, binop_names[op]);
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if ((rc = vl_broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape))) return rc;
  if (!shapes_equal(nd, shape, a->ndim, a->shape)) {
    char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR], s3[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE,
                    "%s: in-place result would have shape %s but the tensor written to has shape %s "
                    "(b of shape %s must broadcast to a's shape)",
                    name, vl_shape_str(nd, shape, s1), vl_shape_str(a->ndim, a->shape, s2),
                    vl_shape_str(b->ndim, b->shape, s3));
  }
  if ((rc = check_writable(name, a))) return rc;
  rc = binary_into(name, op, a, a, b);
  if (rc == VL_OK) vl_bump_version(a);
  return rc;
}

int vl_binary_out(vl_binop op, vl_tensor *out, const vl_tensor *a, const vl_tensor *b) {
  int rc = check_binop("binary_out", op);
  if (rc) return rc;
  const char *name = binop_names[op];
  if ((rc = check_tensor(name, "out", out)) || (rc = check_tensor(name, "a", a)) ||
      (rc = check_tensor(name, "b", b)))
    return rc;
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if ((rc = vl_broadcast_shapes(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape))) return rc;
  if (!shapes_equal(nd, shape, out->ndim, out->shape)) {
    char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "%s: out has shape %s but the broadcast result has shape %s", name,
                    vl_shape_str(out->ndim, out->shape, s1), vl_shape_str(nd, shape, s2));
  }
  if ((rc = vl_ag_check_inplace(name, out))) return rc;
  const vl_tensor *in[2] = {a, b};
  if (vl_ag_needed(2, in))
    return vl_error(VL_ESTATE,
                    "%s: writing into an out tensor is not differentiable and an input requires grad; use "
                    "vl_binary (or run it with recording off)",
                    name);
  if ((rc = check_writable(name, out))) return rc;
  rc = binary_into(name, op, out, a, b);
  if (rc == VL_OK) vl_bump_version(out);
  return rc;
}
