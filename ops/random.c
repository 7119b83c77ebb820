/*
** random.c — random numbers (prefix vl_rand / vl_*_ fills).
**
** One global counter-based generator: Philox 4x32-10 (Salmon, Moraes, Dror,
** Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC11, 2011). Its
** state is (seed, offset): the key is the 64-bit seed, the 128-bit counter
** of a block is offset + b. Each call reserves the blocks it needs by
** advancing the offset, then element i of a fill is a pure function of
** (seed, offset, i): a fill gives the same numbers for any thread count,
** any chunking and any machine.
**
** Per element, in row-major order of the (possibly strided) tensor:
**   uniform float32/16/bf16, normal float32/16/bf16, bernoulli:
**       4 elements per block (one 32-bit word each; Box-Muller takes
**       words 0,1 for elements 0,1 and words 2,3 for elements 2,3)
**   uniform/normal float64, randint: 2 elements per block (64 bits each)
**   randperm: Fisher-Yates step k draws 64 bits from block k/2.
*/
#include <stdatomic.h>
#include <stdlib.h>

#include "vl_internal.h"

#define VL_RNG_CHUNK_BLOCKS 4096  /* counter blocks per parallel work item */
#define VL_PHILOX_ROUNDS 10
#define VL_PHILOX_M0 0xD2511F53u  /* round multipliers (Salmon et al., table 2) */
#define VL_PHILOX_M1 0xCD9E8D57u
#define VL_PHILOX_W0 0x9E3779B9u  /* key bumps: golden ratio, sqrt(3)-1 */
#define VL_PHILOX_W1 0xBB67AE85u

static _Atomic uint64_t rng_seed = VL_DEFAULT_SEED;
static _Atomic uint64_t rng_offset = 0;

/* ------------------------------------------------------------------ */
/* Philox 4x32-10                                                      */
/* ------------------------------------------------------------------ */

static inline void philox_block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                uint32_t k0, uint32_t k1, uint32_t out[4]) {
  for (int r = 0; r < VL_PHILOX_ROUNDS; r++) {
    if (r > 0) {
      k0 += VL_PHILOX_W0;
      k1 += VL_PHILOX_W1;
    }
    uint64_t p0 = (uint64_t)VL_PHILOX_M0 * c0;
    uint64_t p1 = (uint64_t)VL_PHILOX_M1 * c2;
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

/* VL_RNG_LANES consecutive blocks at once, laid out so the compiler can
   vectorise across lanes (32x32->64 multiplies). out[j][k]: word j of
   block b + k. */
#define VL_RNG_LANES 16
static inline void philox_lanes(uint64_t c, uint32_t k0, uint32_t k1,
                                uint32_t out[4][VL_RNG_LANES]) {
  uint32_t x0[VL_RNG_LANES], x1[VL_RNG_LANES], x2[VL_RNG_LANES], x3[VL_RNG_LANES];
  for (int l = 0; l < VL_RNG_LANES; l++) {
    uint64_t cl = c + (uint64_t)l;
    x0[l] = (uint32_t)cl;
    x1[l] = (uint32_t)(cl >> 32);
    x2[l] = 0;
    x3[l] = 0;
  }
  for (int r = 0; r < VL_PHILOX_ROUNDS; r++) {
#pragma omp simd
    for (int l = 0; l < VL_RNG_LANES; l++) {
      uint64_t p0 = (uint64_t)VL_PHILOX_M0 * x0[l];
      uint64_t p1 = (uint64_t)VL_PHILOX_M1 * x2[l];
      uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[l] ^ k0;
      uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3[l] ^ k1;
      x1[l] = (uint32_t)p1;
      x3[l] = (uint32_t)p0;
      x0[l] = y0;
      x2[l] = y2;
    }
    k0 += VL_PHILOX_W0;
    k1 += VL_PHILOX_W1;
  }
  memcpy(out[0], x0, sizeof x0);
  memcpy(out[1], x1, sizeof x1);
  memcpy(out[2], x2, sizeof x2);
  memcpy(out[3], x3, sizeof x3);
}

void vl_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  philox_block(ctr[0], ctr[1], ctr[2], ctr[3], key[0], key[1], out);
}

/* Block `b` of a call whose reservation starts at `base`. */
static inline void rng_block(uint64_t seed, uint64_t base, uint64_t b, uint32_t out[4]) {
  uint64_t c = base + b;  /* wraps modulo 2^64: harmless */
  philox_block((uint32_t)c, (uint32_t)(c >> 32), 0, 0, (uint32_t)seed, (uint32_t)(seed >> 32),
               out);
}

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

void vl_manual_seed(uint64_t seed) {
  atomic_store(&rng_seed, seed);
  atomic_store(&rng_offset, 0);
}

uint64_t vl_initial_seed(void) { return atomic_load(&rng_seed); }

void vl_get_rng_state(uint64_t *seed, uint64_t *offset) {
  if (seed) *seed = atomic_load(&rng_seed);
  if (offset) *offset = atomic_load(&rng_offset);
}

void vl_set_rng_state(uint64_t seed, uint64_t offset) {
  atomic_store(&rng_seed, seed);
  atomic_store(&rng_offset, offset);
}

/* Reserve `nblocks` counter blocks; returns the first. */
static uint64_t rng_reserve(uint64_t nblocks, uint64_t *seed) {
  *seed = atomic_load(&rng_seed);
  return atomic_fetch_add(&rng_offset, nblocks);
}

/* ------------------------------------------------------------------ */
/* Conversions from random bits                                        */
/* ------------------------------------------------------------------ */

#define VL_2POW_M24 (1.0 / 16777216.0)             /* 2^-24 */
#define VL_2POW_M32 (1.0 / 4294967296.0)           /* 2^-32 */
#define VL_2POW_M53 (1.0 / 9007199254740992.0)     /* 2^-53 */
#define VL_TWO_PI 6.283185307179586476925286766559

static inline uint64_t join64(uint32_t hi, uint32_t lo) { return ((uint64_t)hi << 32) | lo; }

/* [0, 1) on a grid of 2^-bits: exact in a float with `bits` significand bits. */
static inline double u_bits32(uint32_t w, int bits, double scale) { return (double)(w >> (32 - bits)) * scale; }
static inline double u53(uint64_t x) { return (double)(x >> 11) * VL_2POW_M53; }
/* (0, 1]: safe for log. */
static inline double u24_open0(uint32_t w) { return (double)((w >> 8) + 1) * VL_2POW_M24; }
static inline double u53_open0(uint64_t x) { return (double)((x >> 11) + 1) * VL_2POW_M53; }

/* floor(x * r / 2^64): maps 64 random bits onto [0, r) (bias < r / 2^64). */
static inline uint64_t mulhi64(uint64_t x, uint64_t r) {
  uint64_t xl = (uint32_t)x, xh = x >> 32, rl = (uint32_t)r, rh = r >> 32;
  uint64_t ll = xl * rl, lh = xl * rh, hl = xh * rl, hh = xh * rh;
  uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
  return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* Significand bits of a float dtype (the integers up to 2^bits are exact). */
static int float_bits(vl_dtype dt) {
  switch (dt) {
    case VL_FLOAT64: return 53;
    case VL_FLOAT32: return 24;
    case VL_FLOAT16: return 11;
    case VL_BFLOAT16: return 8;
    default: return 0;
  }
}

/* Largest half/bfloat16 bit pattern whose value is < hi. */
static uint16_t below16(vl_dtype dt, double hi) {
  uint16_t b = dt == VL_FLOAT16 ? vl_float_to_half((float)hi) : vl_float_to_bfloat16((float)hi);
  for (int k = 0; k < 3; k++) {
    double v = dt == VL_FLOAT16 ? vl_half_to_float(b) : vl_bfloat16_to_float(b);
    if (!(v >= hi)) break;
    if ((b & 0x7fff) == 0) b = 0x8001;      /* +-0 -> smallest negative */
    else if (b & 0x8000) b = (uint16_t)(b + 1);
    else b = (uint16_t)(b - 1);
  }
  return b;
}

/* ------------------------------------------------------------------ */
/* The fill driver                                                     */
/* ------------------------------------------------------------------ */

typedef enum { K_UNIFORM, K_NORMAL, K_BERNOULLI, K_RANDINT } rng_kind;

typedef struct rng_spec {
  rng_kind kind;
  double a, b;          /* uniform: [a, b); normal: mean, std; bernoulli: p */
  int64_t low;          /* randint */
  uint64_t range;       /* randint: high - low */
  int per_block;        /* elements drawn from one counter block: 4 or 2 */
  int bits;             /* uniform: significand bits of the grid */
  double scale;         /* uniform: 2^-bits */
  bool clamp;           /* uniform: keep results below b after rounding */
  double hi_f64;        /* largest value < b in the dtype */
  float hi_f32;
  uint16_t hi_16;
} rng_spec;

/* Where element after element of a strided tensor goes. */
typedef struct cursor {
  bool contig;
  int64_t pos;
  vl_iter it;
} cursor;

static inline int64_t cursor_next(cursor *c) {
  if (c->contig) return c->pos++;
  int64_t o = c->it.offset[0];
  vl_iter_next(&c->it);
  return o;
}

/* Values of block `w` for its `per_block` elements, as doubles (randint:
   as int64 in iv). */
static inline void block_values(const rng_spec *s, const uint32_t w[4], double v[4], int64_t iv[4]) {
  switch (s->kind) {
    case K_UNIFORM:
      if (s->per_block == 4) {
        for (int k = 0; k < 4; k++) v[k] = s->a + (s->b - s->a) * u_bits32(w[k], s->bits, s->scale);
      } else {
        v[0] = s->a + (s->b - s->a) * u53(join64(w[0], w[1]));
        v[1] = s->a + (s->b - s->a) * u53(join64(w[2], w[3]));
      }
      break;
    case K_NORMAL:
      if (s->per_block == 4) {
        for (int p = 0; p < 2; p++) {
          /* float32 math: the result is stored in (at most) float32 */
          float r = sqrtf(-2.0f * logf((float)u24_open0(w[2 * p])));
          float th = (float)(VL_TWO_PI * u_bits32(w[2 * p + 1], 24, VL_2POW_M24));
          float sn, cs;
          sincosf(th, &sn, &cs);
          v[2 * p] = s->a + s->b * (double)(r * cs);
          v[2 * p + 1] = s->a + s->b * (double)(r * sn);
        }
      } else {
        double r = sqrt(-2.0 * log(u53_open0(join64(w[0], w[1]))));
        double th = VL_TWO_PI * u53(join64(w[2], w[3]));
        double sn, cs;
        sincos(th, &sn, &cs);
        v[0] = s->a + s->b * r * cs;
        v[1] = s->a + s->b * r * sn;
      }
      break;
    case K_BERNOULLI:
      for (int k = 0; k < 4; k++) v[k] = (double)w[k] * VL_2POW_M32 < s->a ? 1.0 : 0.0;
      break;
    case K_RANDINT:
      for (int k = 0; k < 2; k++) {
        uint64_t off = mulhi64(join64(w[2 * k], w[2 * k + 1]), s->range);
        iv[k] = (int64_t)((uint64_t)s->low + off);  /* in [low, high): fits */
        v[k] = (double)iv[k];
      }
      break;
  }
}

static inline void store_one(const rng_spec *s, char *data, int64_t o, vl_dtype dt, double v,
                             int64_t iv) {
  switch (dt) {
    case VL_FLOAT32: {
      float f = (float)v;
      if (s->clamp && (double)f >= s->b) f = s->hi_f32;
      ((float *)data)[o] = f;
      break;
    }
    case VL_FLOAT64:
      if (s->clamp && v >= s->b) v = s->hi_f64;
      ((double *)data)[o] = v;
      break;
    case VL_FLOAT16:
    case VL_BFLOAT16: {
      uint16_t h = dt == VL_FLOAT16 ? vl_float_to_half((float)v) : vl_float_to_bfloat16((float)v);
      if (s->clamp) {
        double back = dt == VL_FLOAT16 ? vl_half_to_float(h) : vl_bfloat16_to_float(h);
        if (back >= s->b) h = s->hi_16;
      }
      ((uint16_t *)data)[o] = h;
      break;
    }
    case VL_INT64:
      ((int64_t *)data)[o] = s->kind == K_RANDINT ? iv : (int64_t)v;
      break;
    default:
      vl_store(data, o, dt, v);
      break;
  }
}

/* Fill every element of t (any strides) from the generator. */
static int rng_fill(vl_tensor *t, rng_spec *s) {
  int64_t n = vl_numel(t);
  if (n == 0) return VL_OK;
  vl_dtype dt = t->dtype;
  if (s->clamp) {
    s->hi_f64 = nextafter(s->b, -INFINITY);
    s->hi_f32 = (float)s->b;
    if ((double)s->hi_f32 >= s->b) s->hi_f32 = nextafterf(s->hi_f32, -INFINITY);
    if (dt == VL_FLOAT16 || dt == VL_BFLOAT16) s->hi_16 = below16(dt, s->b);
  }
  const int per = s->per_block;
  const uint64_t nblocks = (uint64_t)((n + per - 1) / per);
  uint64_t seed;
  const uint64_t base = rng_reserve(nblocks, &seed);
  const bool contig = vl_is_contiguous(t);
  char *data = vl_base(t) + (size_t)t->offset * vl_dtype_size(dt);
  const int64_t nchunks = (int64_t)((nblocks + VL_RNG_CHUNK_BLOCKS - 1) / VL_RNG_CHUNK_BLOCKS);
  const int64_t *strides[1] = {t->stride};
  const int64_t zero = 0;

#pragma omp parallel for schedule(static) if (n > VL_PARALLEL_GRAIN)
  for (int64_t c = 0; c < nchunks; c++) {
    uint64_t b0 = (uint64_t)c * VL_RNG_CHUNK_BLOCKS;
    uint64_t b1 = VL_MIN(b0 + VL_RNG_CHUNK_BLOCKS, nblocks);
    int64_t e = (int64_t)b0 * per;  /* first element of the chunk */
    cursor cur;
    memset(&cur, 0, sizeof cur);
    cur.contig = contig;
    cur.pos = e;
    if (!contig) {
      vl_iter_init(&cur.it, t->ndim, t->shape, 1, strides, &zero);
      vl_iter_seek(&cur.it, e, &zero);
    }
    const bool fast32 = contig && dt == VL_FLOAT32 && !s->clamp && s->kind != K_RANDINT;
    const bool fast64 = contig && dt == VL_FLOAT64 && !s->clamp && s->kind != K_RANDINT;
    for (uint64_t bl = b0; bl < b1; bl += VL_RNG_LANES) {
      uint32_t W[4][VL_RNG_LANES];
      philox_lanes(base + bl, (uint32_t)seed, (uint32_t)(seed >> 32), W);
      int lanes = (int)VL_MIN((uint64_t)VL_RNG_LANES, b1 - bl);
      for (int l = 0; l < lanes; l++) {
        uint32_t w[4] = {W[0][l], W[1][l], W[2][l], W[3][l]};
        double v[4];
        int64_t iv[4] = {0, 0, 0, 0};
        block_values(s, w, v, iv);
        int m = (int)VL_MIN((int64_t)per, n - e);
        if (fast32) {
          float *o = (float *)data + e;
          for (int k = 0; k < m; k++) o[k] = (float)v[k];
        } else if (fast64) {
          double *o = (double *)data + e;
          for (int k = 0; k < m; k++) o[k] = v[k];
        } else {
          for (int k = 0; k < m; k++) store_one(s, data, cursor_next(&cur), dt, v[k], iv[k]);
        }
        e += per;
      }
    }
  }
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Argument checks                                                     */
/* ------------------------------------------------------------------ */

static int check_float_dtype(const char *op, vl_dtype dt) {
  if ((unsigned)dt >= VL_DTYPE_COUNT) return vl_error(VL_EDTYPE, "%s: unknown dtype %d", op, (int)dt);
  if (!vl_dtype_is_float(dt))
    return vl_error(VL_EDTYPE,
                    "%s: dtype %s not supported (expected a float dtype: float32, float64, "
                    "float16 or bfloat16)",
                    op, vl_dtype_name(dt));
  return VL_OK;
}

/* Writing into a tensor whose elements alias (expanded dims) is refused:
   the result would depend on write order. */
static int check_writable(const char *op, const vl_tensor *t) {
  if (!t) return vl_error(VL_EARG, "%s: tensor is NULL", op);
  for (int d = 0; d < t->ndim; d++)
    if (t->stride[d] == 0 && t->shape[d] > 1)
      return vl_error(VL_EARG,
                      "%s: the tensor is an expanded view (a dim of size %lld has stride 0, so "
                      "several elements share one memory location); fill a contiguous copy instead",
                      op, (long long)t->shape[d]);
  return VL_OK;
}

static vl_tensor *new_tensor(const char *op, int ndim, const int64_t *shape, vl_dtype dt) {
  if (ndim < 0 || ndim > VL_MAX_DIMS) {
    vl_error(VL_ESHAPE, "%s: %d dims (expected 0..%d)", op, ndim, VL_MAX_DIMS);
    return NULL;
  }
  if (ndim > 0 && !shape) {
    vl_error(VL_EARG, "%s: shape is NULL", op);
    return NULL;
  }
  size_t nbytes;
  if (vl_shape_nbytes(op, ndim, shape, dt, &nbytes) != VL_OK) return NULL;
  return vl_empty(ndim, shape, dt);
}

static void uniform_spec(rng_spec *s, vl_dtype dt, double lo, double hi) {
  memset(s, 0, sizeof *s);
  s->kind = K_UNIFORM;
  s->a = lo;
  s->b = hi;
  s->per_block = dt == VL_FLOAT64 ? 2 : 4;
  s->bits = float_bits(dt);
  s->scale = ldexp(1.0, -s->bits);
  /* [0,1) on the dtype's own grid is exact; other bounds may round up to hi */
  s->clamp = hi > lo && !(lo == 0.0 && hi == 1.0);
}

static void normal_spec(rng_spec *s, vl_dtype dt, double mean, double std) {
  memset(s, 0, sizeof *s);
  s->kind = K_NORMAL;
  s->a = mean;
  s->b = std;
  s->per_block = dt == VL_FLOAT64 ? 2 : 4;
}

/* ------------------------------------------------------------------ */
/* Public ops                                                          */
/* ------------------------------------------------------------------ */

vl_tensor *vl_rand(int ndim, const int64_t *shape, vl_dtype dt) {
  if (check_float_dtype("rand", dt) != VL_OK) return NULL;
  vl_tensor *t = new_tensor("rand", ndim, shape, dt);
  if (!t) return NULL;
  rng_spec s;
  uniform_spec(&s, dt, 0.0, 1.0);
  rng_fill(t, &s);
  return t;
}

vl_tensor *vl_randn(int ndim, const int64_t *shape, vl_dtype dt) {
  if (check_float_dtype("randn", dt) != VL_OK) return NULL;
  vl_tensor *t = new_tensor("randn", ndim, shape, dt);
  if (!t) return NULL;
  rng_spec s;
  normal_spec(&s, dt, 0.0, 1.0);
  rng_fill(t, &s);
  return t;
}

/* [low, high) must hold only values the dtype stores exactly. */
static int check_int_range(const char *op, int64_t low, int64_t high, vl_dtype dt) {
  int64_t lo_min, hi_max;  /* low >= lo_min, high - 1 <= hi_max */
  switch (dt) {
    case VL_INT64: return VL_OK;
    case VL_INT32: lo_min = INT32_MIN; hi_max = INT32_MAX; break;
    case VL_UINT8: lo_min = 0; hi_max = 255; break;
    case VL_FLOAT64: case VL_FLOAT32: case VL_FLOAT16: case VL_BFLOAT16:
      hi_max = (int64_t)1 << float_bits(dt);
      lo_min = -hi_max;
      break;
    default:
      return vl_error(VL_EDTYPE, "%s: dtype %s not supported (expected an integer or float dtype)",
                      op, vl_dtype_name(dt));
  }
  if (low < lo_min || high - 1 > hi_max)
    return vl_error(VL_EARG,
                    "%s: range [%lld, %lld) does not fit dtype %s (expected %lld <= low and "
                    "high <= %lld)",
                    op, (long long)low, (long long)high, vl_dtype_name(dt), (long long)lo_min,
                    (long long)hi_max + 1);
  return VL_OK;
}

vl_tensor *vl_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, vl_dtype dt) {
  if ((unsigned)dt >= VL_DTYPE_COUNT) {
    vl_error(VL_EDTYPE, "randint: unknown dtype %d", (int)dt);
    return NULL;
  }
  if (dt == VL_BOOL) {
    vl_error(VL_EDTYPE, "randint: dtype bool not supported (expected an integer or float dtype)");
    return NULL;
  }
  if (high <= low) {
    vl_error(VL_EARG, "randint: high (%lld) must be greater than low (%lld)", (long long)high,
             (long long)low);
    return NULL;
  }
  if (check_int_range("randint", low, high, dt) != VL_OK) return NULL;
  vl_tensor *t = new_tensor("randint", ndim, shape, dt);
  if (!t) return NULL;
  rng_spec s;
  memset(&s, 0, sizeof s);
  s.kind = K_RANDINT;
  s.low = low;
  s.range = (uint64_t)high - (uint64_t)low;
  s.per_block = 2;
  rng_fill(t, &s);
  return t;
}

vl_tensor *vl_randperm(int64_t n, vl_dtype dt) {
  if ((unsigned)dt >= VL_DTYPE_COUNT) {
    vl_error(VL_EDTYPE, "randperm: unknown dtype %d", (int)dt);
    return NULL;
  }
  if (n < 0) {
    vl_error(VL_EARG, "randperm: n must be non-negative (got %lld)", (long long)n);
    return NULL;
  }
  if (dt == VL_BOOL) {
    vl_error(VL_EDTYPE, "randperm: dtype bool not supported (expected an integer or float dtype)");
    return NULL;
  }
  if (n > 0 && check_int_range("randperm", 0, n, dt) != VL_OK) return NULL;
  vl_tensor *out = new_tensor("randperm", 1, &n, dt);
  if (!out || n == 0) return out;
  vl_tensor *work = dt == VL_INT64 ? out : vl_empty(1, &n, VL_INT64);
  if (!work) {
    vl_tensor_release(out);
    return NULL;
  }
  int64_t *a = (int64_t *)vl_data_ptr(work);
  for (int64_t i = 0; i < n; i++) a[i] = i;
  if (n > 1) {
    /* step k (k = 0 .. n-2) swaps a[i], i = n-1-k, with a[j], j uniform in [0, i] */
    uint64_t steps = (uint64_t)n - 1;
    uint64_t seed;
    uint64_t base = rng_reserve((steps + 1) / 2, &seed);
    uint32_t w[4] = {0, 0, 0, 0};
    for (uint64_t k = 0; k < steps; k++) {
      if (k % 2 == 0) rng_block(seed, base, k / 2, w);
      int64_t i = n - 1 - (int64_t)k;
      uint64_t x = k % 2 == 0 ? join64(w[0], w[1]) : join64(w[2], w[3]);
      int64_t j = (int64_t)mulhi64(x, (uint64_t)i + 1);
      int64_t tmp = a[i];
      a[i] = a[j];
      a[j] = tmp;
    }
  }
  if (work != out) {
    void *o = vl_data_ptr(out);
    for (int64_t i = 0; i < n; i++) vl_store(o, i, dt, (double)a[i]);
    vl_tensor_release(work);
  }
  return out;
}

int vl_uniform_(vl_tensor *t, double lo, double hi) {
  int st = check_writable("uniform_", t);
  if (st != VL_OK) return st;
  if ((st = check_float_dtype("uniform_", t->dtype)) != VL_OK) return st;
  if (!isfinite(lo) || !isfinite(hi))
    return vl_error(VL_EARG, "uniform_: bounds must be finite (got [%g, %g))", lo, hi);
  if (lo > hi)
    return vl_error(VL_EARG, "uniform_: low (%g) must be <= high (%g)", lo, hi);
  if (!isfinite(hi - lo))
    return vl_error(VL_EARG, "uniform_: high - low overflows (got [%g, %g))", lo, hi);
  rng_spec s;
  uniform_spec(&s, t->dtype, lo, hi);
  return rng_fill(t, &s);
}

int vl_normal_(vl_tensor *t, double mean, double std) {
  int st = check_writable("normal_", t);
  if (st != VL_OK) return st;
  if ((st = check_float_dtype("normal_", t->dtype)) != VL_OK) return st;
  if (!isfinite(mean)) return vl_error(VL_EARG, "normal_: mean must be finite (got %g)", mean);
  if (!(std >= 0.0) || !isfinite(std))
    return vl_error(VL_EARG, "normal_: std must be finite and >= 0 (got %g)", std);
  rng_spec s;
  normal_spec(&s, t->dtype, mean, std);
  return rng_fill(t, &s);
}

int vl_bernoulli_(vl_tensor *t, double p) {
  int st = check_writable("bernoulli_", t);
  if (st != VL_OK) return st;
  if ((unsigned)t->dtype >= VL_DTYPE_COUNT)
    return vl_error(VL_EDTYPE, "bernoulli_: unknown dtype %d", (int)t->dtype);
  if (!(p >= 0.0 && p <= 1.0))
    return vl_error(VL_EARG, "bernoulli_: p must be in [0, 1] (got %g)", p);
  rng_spec s;
  memset(&s, 0, sizeof s);
  s.kind = K_BERNOULLI;
  s.a = p;
  s.per_block = 4;
  return rng_fill(t, &s);
}
