/*
** index.c — joining and indexing: cat, stack, split, chunk, gather,
** scatter, index_select, masked_select, nonzero, flip, roll, repeat,
** tril, triu. Ordering (sort, topk) is in ops/sort.c; the helpers both
** use are in ops/index_internal.h.
**
** Index tensors here are 0-based int64 (int32 accepted). Every index is
** checked against its dim before anything is written, so a bad index is
** an error and never a wild read or write. Kernels that only move
** elements (gather, index_select, flip, roll, repeat) copy
** raw element bytes, so every dtype is exact (int64 past 2^53 included).
**
** Autograd (section at the end): cat, stack, gather, scatter,
** index_select, masked_select, flip, roll, repeat, tril and triu
** record a node; split/chunk pieces are narrow views, which
** record themselves (ops/tensor.c). scatter_/scatter_add_ are in place
** and not differentiable; nonzero and index outputs take no part.
*/
#include <omp.h>
#include <stdlib.h>

#include "index_internal.h"

/* ------------------------------------------------------------------ */
/* Raw copies and index checks                                         */
/* ------------------------------------------------------------------ */

/* Copy `n` elements of size es from src (stride ss) to dst (stride ds). */
#define COPY_ROW_T(T)                                                          \
  do {                                                                         \
    T *restrict dp = (T *)dst;                                                 \
    const T *restrict sp = (const T *)src;                                     \
    for (int64_t j = 0; j < n; j++) dp[j * ds] = sp[j * ss];                   \
  } while (0)

static void copy_row(char *dst, int64_t ds, const char *src, int64_t ss, int64_t n, size_t es) {
  if (ds == 1 && ss == 1) {
    memmove(dst, src, (size_t)n * es);
    return;
  }
  switch (es) {
    case 1: COPY_ROW_T(uint8_t); break;
    case 2: COPY_ROW_T(uint16_t); break;
    case 4: COPY_ROW_T(uint32_t); break;
    default: COPY_ROW_T(uint64_t); break;
  }
}

/* A raw strided view: base pointer, offset and strides in elements.
   Unlike a vl_tensor it may have negative strides (flip). */
typedef struct rawview {
  char *base;
  int64_t off;
  int64_t stride[VL_MAX_DIMS];
} rawview;

static rawview raw_of(const vl_tensor *t) {
  rawview r;
  r.base = vl_base(t);
  r.off = t->offset;
  for (int d = 0; d < VL_MAX_DIMS; d++) r.stride[d] = d < t->ndim ? t->stride[d] : 0;
  return r;
}

/* dst <- src over `shape`; same element size; no overlap. */
static void copy_raw(int ndim, const int64_t *shape, size_t es, const rawview *dst, const rawview *src) {
  int64_t total = shape_numel(ndim, shape);
  if (total == 0) return;
  if (ndim == 0) {
    copy_elem(dst->base + dst->off * (int64_t)es, src->base + src->off * (int64_t)es, es);
    return;
  }
  int od = ndim - 1;
  int64_t inner = shape[od], rows = total / inner;
  int64_t ds = dst->stride[od], ss = src->stride[od];
  const int64_t *strides[2] = {dst->stride, src->stride};
  int64_t offs[2] = {dst->off, src->off};
#pragma omp parallel if (total > VL_PARALLEL_GRAIN && rows > 1)
  {
    int64_t lo, hi;
    thread_range(rows, &lo, &hi);
    if (lo < hi) {
      vl_iter it;
      vl_iter_init(&it, od, shape, 2, strides, offs);
      vl_iter_seek(&it, lo, offs);
      for (int64_t r = lo; r < hi; r++) {
        copy_row(dst->base + it.offset[0] * (int64_t)es, ds, src->base + it.offset[1] * (int64_t)es, ss,
                 inner, es);
        vl_iter_next(&it);
      }
    }
  }
}

static int check_index_dtype(const char *op, const vl_tensor *index) {
  if (index->dtype != VL_INT64 && index->dtype != VL_INT32)
    return vl_error(VL_EDTYPE, "%s: index must be an int64 or int32 tensor, got %s", op,
                    vl_dtype_name(index->dtype));
  return VL_OK;
}

static inline int64_t load_index(const char *base, int64_t off, vl_dtype dt) {
  return dt == VL_INT64 ? ((const int64_t *)base)[off] : (int64_t)((const int32_t *)base)[off];
}

/* Every element of `index` must lie in [0, size). */
static int check_index_range(const char *op, const vl_tensor *index, int64_t size) {
  layout l;
  layout_of(index, &l);
  if (shape_numel(l.ndim, l.shape) == 0) return VL_OK;
  const int64_t *strides[1] = {l.stride};
  int64_t offs[1] = {index->offset};
  vl_iter it;
  vl_iter_init(&it, l.ndim, l.shape, 1, strides, offs);
  const char *base = vl_base(index);
  do {
    int64_t v = load_index(base, it.offset[0], index->dtype);
    if (v < 0 || v >= size)
      return vl_error(VL_EINDEX, "%s: index %lld out of range for a dim of size %lld (expected 0..%lld)", op,
                      (long long)v, (long long)size, (long long)size - 1);
  } while (vl_iter_next(&it));
  return VL_OK;
}

/* A tensor written in place must not have two elements at one address. */
static int check_writable(const char *op, const vl_tensor *t) {
  for (int d = 0; d < t->ndim; d++)
    if (t->stride[d] == 0 && t->shape[d] > 1)
      return vl_error(VL_EARG,
                      "%s: the destination is an expanded view (stride 0 in dim %d) whose elements share "
                      "memory; call contiguous() or clone() first",
                      op, d);
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* cat, stack                                                          */
/* ------------------------------------------------------------------ */

static bool legacy_empty(const vl_tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

static vl_tensor *cat_fwd(int n, const vl_tensor *const *ts, int dim, int *dout) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (n <= 0 || ts == NULL) return vl_error(VL_EARG, "cat: expected a non-empty list of tensors (got %d)", n), NULL;
  for (int i = 0; i < n; i++)
    if (ts[i] == NULL) return vl_error(VL_EARG, "cat: tensor %d is NULL", i), NULL;
  vl_dtype dt = ts[0]->dtype;
  for (int i = 1; i < n; i++) dt = vl_promote(dt, ts[i]->dtype);
  /* 1-D tensors of shape [0] are skipped, as PyTorch does. */
  int ref = -1;
  for (int i = 0; i < n && ref < 0; i++)
    if (!legacy_empty(ts[i])) ref = i;
  if (ref < 0) {
    int64_t zero = 0;
    return vl_empty(1, &zero, dt);
  }
  const vl_tensor *r = ts[ref];
  if (r->ndim == 0)
    return vl_error(VL_ESHAPE, "cat: tensor %d is 0-d; zero-dimensional tensors cannot be concatenated", ref),
           NULL;
  int d;
  if (vl_wrap_dim("cat", dim, r->ndim, &d)) return NULL;
  *dout = d;
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    const vl_tensor *t = ts[i];
    if (legacy_empty(t)) continue;
    if (t->ndim != r->ndim)
      return vl_error(VL_ESHAPE, "cat: tensor %d has shape %s but tensor %d has %s (dims differ: %d ~= %d)", i,
                      vl_shape_str(t->ndim, t->shape, s1), ref, vl_shape_str(r->ndim, r->shape, s2), t->ndim,
                      r->ndim),
             NULL;
    for (int k = 0; k < r->ndim; k++)
      if (k != d && t->shape[k] != r->shape[k])
        return vl_error(VL_ESHAPE,
                        "cat: tensor %d has shape %s but tensor %d has %s; sizes must match except in cat dim "
                        "%d (dim %d: %lld ~= %lld)",
                        i, vl_shape_str(t->ndim, t->shape, s1), ref, vl_shape_str(r->ndim, r->shape, s2), d, k,
                        (long long)t->shape[k], (long long)r->shape[k]),
               NULL;
    if (t->shape[d] > INT64_MAX - total)
      return vl_error(VL_ENOMEM, "cat: total size along dim %d overflows", d), NULL;
    total += t->shape[d];
  }
  int64_t shape[VL_MAX_DIMS];
  memcpy(shape, r->shape, sizeof shape);
  shape[d] = total;
  vl_tensor *out = vl_empty(r->ndim, shape, dt);
  if (out == NULL) return NULL;
  int64_t pos = 0;
  for (int i = 0; i < n; i++) {
    const vl_tensor *t = ts[i];
    if (legacy_empty(t) || t->shape[d] == 0) continue;
    vl_tensor *v = vl_narrow(out, d, pos, t->shape[d]);
    int rc = v ? vl_copy_(v, t) : (int)vl_last_status();
    vl_tensor_release(v);
    if (rc != VL_OK) {
      vl_tensor_release(out);
      return NULL;
    }
    pos += t->shape[d];
  }
  return out;
}

static vl_tensor *stack_fwd(int n, const vl_tensor *const *ts, int dim, int *dout) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (n <= 0 || ts == NULL)
    return vl_error(VL_EARG, "stack: expected a non-empty list of tensors (got %d)", n), NULL;
  for (int i = 0; i < n; i++)
    if (ts[i] == NULL) return vl_error(VL_EARG, "stack: tensor %d is NULL", i), NULL;
  for (int i = 1; i < n; i++)
    if (!vl_same_shape(ts[i], ts[0]))
      return vl_error(VL_ESHAPE, "stack: tensor %d has shape %s but tensor 0 has %s (all must be equal)", i,
                      vl_shape_str(ts[i]->ndim, ts[i]->shape, s1), vl_shape_str(ts[0]->ndim, ts[0]->shape, s2)),
             NULL;
  if (ts[0]->ndim + 1 > VL_MAX_DIMS)
    return vl_error(VL_ESHAPE, "stack: result would have %d dims (at most %d)", ts[0]->ndim + 1, VL_MAX_DIMS),
           NULL;
  int d;
  if (vl_wrap_dim("stack", dim, ts[0]->ndim + 1, &d)) return NULL;
  *dout = d;
  vl_tensor **us = calloc((size_t)n, sizeof *us);
  if (us == NULL) return vl_error(VL_ENOMEM, "stack: out of memory"), NULL;
  vl_tensor *out = NULL;
  int i;
  for (i = 0; i < n; i++) {
    us[i] = vl_unsqueeze(ts[i], d);
    if (us[i] == NULL) break;
  }
  int dc;
  if (i == n) out = cat_fwd(n, (const vl_tensor *const *)us, d, &dc);
  for (i = 0; i < n; i++) vl_tensor_release(us[i]);
  free(us);
  return out;
}

/* ------------------------------------------------------------------ */
/* split, chunk                                                        */
/* ------------------------------------------------------------------ */

int vl_split_sizes(const vl_tensor *t, int nsizes, const int64_t *sizes, int dim, vl_tensor ***out, int *n) {
  *out = NULL;
  *n = 0;
  if (t->ndim == 0) return vl_error(VL_ESHAPE, "split: cannot split a 0-d tensor");
  int d;
  if (vl_wrap_dim("split", dim, t->ndim, &d)) return vl_last_status();
  if (nsizes <= 0) return vl_error(VL_EARG, "split: expected at least one size (got %d)", nsizes);
  int64_t sum = 0;
  for (int i = 0; i < nsizes; i++) {
    if (sizes[i] < 0) return vl_error(VL_EARG, "split: size %d is negative (%lld)", i, (long long)sizes[i]);
    if (sizes[i] > t->shape[d] - sum)
      return vl_error(VL_ESHAPE, "split: sizes add up to more than %lld, the size of dim %d", (long long)t->shape[d],
                      d);
    sum += sizes[i];
  }
  if (sum != t->shape[d])
    return vl_error(VL_ESHAPE, "split: sizes add up to %lld but dim %d has size %lld", (long long)sum, d,
                    (long long)t->shape[d]);
  vl_tensor **ps = calloc((size_t)nsizes, sizeof *ps);
  if (ps == NULL) return vl_error(VL_ENOMEM, "split: out of memory");
  int64_t pos = 0;
  for (int i = 0; i < nsizes; i++) {
    ps[i] = vl_narrow(t, d, pos, sizes[i]);
    if (ps[i] == NULL) {
      for (int j = 0; j < i; j++) vl_tensor_release(ps[j]);
      free(ps);
      return vl_last_status();
    }
    pos += sizes[i];
  }
  *out = ps;
  *n = nsizes;
  return VL_OK;
}

/* Pieces of `size` (the last may be smaller) covering `len`, or `count`
   pieces when forced (chunk of an empty dim). */
static int split_even(const char *op, const vl_tensor *t, int64_t size, int64_t count, int d, vl_tensor ***out,
                      int *n) {
  if (count > INT32_MAX) return vl_error(VL_EARG, "%s: too many pieces (%lld)", op, (long long)count);
  int64_t *sizes = malloc((size_t)count * sizeof *sizes);
  if (sizes == NULL) return vl_error(VL_ENOMEM, "%s: out of memory", op);
  int64_t left = t->shape[d];
  for (int64_t i = 0; i < count; i++) {
    sizes[i] = left < size ? left : size;
    left -= sizes[i];
  }
  int rc = vl_split_sizes(t, (int)count, sizes, d, out, n);
  free(sizes);
  return rc;
}

int vl_split(const vl_tensor *t, int64_t size, int dim, vl_tensor ***out, int *n) {
  *out = NULL;
  *n = 0;
  if (t->ndim == 0) return vl_error(VL_ESHAPE, "split: cannot split a 0-d tensor");
  int d;
  if (vl_wrap_dim("split", dim, t->ndim, &d)) return vl_last_status();
  int64_t len = t->shape[d];
  if (size < 0 || (size == 0 && len != 0))
    return vl_error(VL_EARG, "split: split size must be positive (got %lld)", (long long)size);
  int64_t count = size == 0 ? 1 : (len / size + (len % size != 0));
  if (count < 1) count = 1;
  return split_even("split", t, size, count, d, out, n);
}

int vl_chunk(const vl_tensor *t, int chunks, int dim, vl_tensor ***out, int *n) {
  *out = NULL;
  *n = 0;
  if (chunks <= 0) return vl_error(VL_EARG, "chunk: number of chunks must be positive (got %d)", chunks);
  if (t->ndim == 0) return vl_error(VL_ESHAPE, "chunk: cannot chunk a 0-d tensor");
  int d;
  if (vl_wrap_dim("chunk", dim, t->ndim, &d)) return vl_last_status();
  int64_t len = t->shape[d];
  int64_t size = len / chunks + (len % chunks != 0);
  if (len == 0) return split_even("chunk", t, 0, chunks, d, out, n); /* `chunks` empty pieces */
  return split_even("chunk", t, size, len / size + (len % size != 0), d, out, n);
}

/* ------------------------------------------------------------------ */
/* gather, scatter                                                     */
/* ------------------------------------------------------------------ */

/* out[j] = t[to + j*ts + index[io + j*is] * dstride] for j < n. */
#define GATHER_ROW_T(T, IT)                                                    \
  do {                                                                         \
    T *restrict o = (T *)out;                                                  \
    const T *restrict tp = (const T *)tb + to;                                 \
    const IT *restrict ip = (const IT *)ib + io;                               \
    for (int64_t j = 0; j < n; j++) o[j] = tp[j * ts + (int64_t)ip[j * is] * dstride]; \
  } while (0)
#define GATHER_ROW_IDX(T)                                                      \
  do {                                                                         \
    if (idt == VL_INT64)                                                       \
      GATHER_ROW_T(T, int64_t);                                                \
    else                                                                       \
      GATHER_ROW_T(T, int32_t);                                                \
  } while (0)

static void gather_row(char *out, const char *tb, int64_t to, int64_t ts, int64_t dstride, const char *ib,
                       int64_t io, int64_t is, vl_dtype idt, int64_t n, size_t es) {
  switch (es) {
    case 1: GATHER_ROW_IDX(uint8_t); break;
    case 2: GATHER_ROW_IDX(uint16_t); break;
    case 4: GATHER_ROW_IDX(uint32_t); break;
    default: GATHER_ROW_IDX(uint64_t); break;
  }
}

static vl_tensor *gather_fwd(const vl_tensor *t, int dim, const vl_tensor *index) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (check_index_dtype("gather", index)) return NULL;
  layout T, I;
  layout_of(t, &T);
  layout_of(index, &I);
  int d;
  if (vl_wrap_dim("gather", dim, t->ndim, &d)) return NULL;
  if (I.ndim != T.ndim)
    return vl_error(VL_ESHAPE, "gather: index shape %s and input shape %s must have the same number of dims",
                    vl_shape_str(index->ndim, index->shape, s1), vl_shape_str(t->ndim, t->shape, s2)),
           NULL;
  for (int k = 0; k < T.ndim; k++)
    if (k != d && I.shape[k] > T.shape[k])
      return vl_error(VL_ESHAPE,
                      "gather: index shape %s is larger than input shape %s outside the gather dim (dim %d: "
                      "%lld > %lld)",
                      vl_shape_str(index->ndim, index->shape, s1), vl_shape_str(t->ndim, t->shape, s2), k,
                      (long long)I.shape[k], (long long)T.shape[k]),
             NULL;
  if (check_index_range("gather", index, T.shape[d])) return NULL;
  vl_tensor *out = vl_empty(index->ndim, index->shape, t->dtype);
  if (out == NULL) return NULL;
  int64_t total = shape_numel(I.ndim, I.shape);
  if (total == 0) return out;
  size_t es = vl_dtype_size(t->dtype);
  int64_t tstr[VL_MAX_DIMS], ostr[VL_MAX_DIMS];
  memcpy(tstr, T.stride, sizeof tstr);
  int64_t dstride = tstr[d];
  tstr[d] = 0;
  contiguous_strides(I.ndim, I.shape, ostr);
  const int64_t *strides[3] = {I.stride, tstr, ostr};
  int64_t offs[3] = {index->offset, t->offset, 0};
  const char *ib = vl_base(index), *tb = vl_base(t);
  char *ob = vl_data_ptr(out);
  vl_dtype idt = index->dtype;
  int od = I.ndim - 1;
  int64_t inner = I.shape[od], rows = total / inner;
  int64_t is = I.stride[od], ts = tstr[od];
#pragma omp parallel if (total > VL_PARALLEL_GRAIN && rows > 1)
  {
    int64_t lo, hi;
    thread_range(rows, &lo, &hi);
    if (lo < hi) {
      vl_iter it;
      vl_iter_init(&it, od, I.shape, 3, strides, offs);
      vl_iter_seek(&it, lo, offs);
      for (int64_t r = lo; r < hi; r++) {
        gather_row(ob + it.offset[2] * (int64_t)es, tb, it.offset[1], ts, dstride, ib, it.offset[0], is, idt,
                   inner, es);
        vl_iter_next(&it);
      }
    }
  }
  return out;
}

/* dst += src for one element of dtype dt (integers wrap, bool is or). */
static inline void add_elem(char *dst, const char *src, vl_dtype dt) {
  switch (dt) {
    case VL_FLOAT32: *(float *)dst += *(const float *)src; break;
    case VL_FLOAT64: *(double *)dst += *(const double *)src; break;
    case VL_FLOAT16:
      *(uint16_t *)dst = vl_float_to_half(vl_half_to_float(*(uint16_t *)dst) + vl_half_to_float(*(const uint16_t *)src));
      break;
    case VL_BFLOAT16:
      *(uint16_t *)dst = vl_float_to_bfloat16(vl_bfloat16_to_float(*(uint16_t *)dst) +
                                              vl_bfloat16_to_float(*(const uint16_t *)src));
      break;
    case VL_INT64:
      *(int64_t *)dst = (int64_t)((uint64_t) * (int64_t *)dst + (uint64_t) * (const int64_t *)src);
      break;
    case VL_INT32:
      *(int32_t *)dst = (int32_t)((uint32_t) * (int32_t *)dst + (uint32_t) * (const int32_t *)src);
      break;
    case VL_UINT8: *(uint8_t *)dst = (uint8_t)(*(uint8_t *)dst + *(const uint8_t *)src); break;
    case VL_BOOL: *(uint8_t *)dst = (*(uint8_t *)dst || *(const uint8_t *)src); break;
    default: break;
  }
}

static int scatter_impl(const char *op, vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src,
                        bool add) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (check_index_dtype(op, index)) return vl_last_status();
  layout T, I, S;
  layout_of(t, &T);
  layout_of(index, &I);
  layout_of(src, &S);
  int d;
  if (vl_wrap_dim(op, dim, t->ndim, &d)) return vl_last_status();
  /* A 0-d src is a value written at every index. */
  bool scalar = src->ndim == 0;
  if (I.ndim != T.ndim)
    return vl_error(VL_ESHAPE, "%s: index shape %s and self shape %s must have the same number of dims", op,
                    vl_shape_str(index->ndim, index->shape, s1), vl_shape_str(t->ndim, t->shape, s2));
  if (!scalar && S.ndim != I.ndim)
    return vl_error(VL_ESHAPE, "%s: index shape %s and src shape %s must have the same number of dims", op,
                    vl_shape_str(index->ndim, index->shape, s1), vl_shape_str(src->ndim, src->shape, s2));
  for (int k = 0; k < T.ndim; k++) {
    if (k != d && I.shape[k] > T.shape[k])
      return vl_error(VL_ESHAPE,
                      "%s: index shape %s is larger than self shape %s outside the scatter dim (dim %d: %lld > "
                      "%lld)",
                      op, vl_shape_str(index->ndim, index->shape, s1), vl_shape_str(t->ndim, t->shape, s2), k,
                      (long long)I.shape[k], (long long)T.shape[k]);
    if (!scalar && I.shape[k] > S.shape[k])
      return vl_error(VL_ESHAPE, "%s: index shape %s is larger than src shape %s (dim %d: %lld > %lld)", op,
                      vl_shape_str(index->ndim, index->shape, s1), vl_shape_str(src->ndim, src->shape, s2), k,
                      (long long)I.shape[k], (long long)S.shape[k]);
  }
  if (check_index_range(op, index, T.shape[d])) return vl_last_status();
  if (check_writable(op, t)) return vl_last_status();
  int64_t total = shape_numel(I.ndim, I.shape);
  if (total == 0) return VL_OK;
  vl_tensor *s = vl_to_dtype(src, t->dtype);
  if (s == NULL) return vl_last_status();
  if (scalar) memset(S.stride, 0, sizeof S.stride);
  size_t es = vl_dtype_size(t->dtype);
  int64_t tstr[VL_MAX_DIMS];
  memcpy(tstr, T.stride, sizeof tstr);
  int64_t dstride = tstr[d];
  tstr[d] = 0;
  const int64_t *strides[3] = {I.stride, tstr, S.stride};
  int64_t offs[3] = {index->offset, t->offset, s->offset};
  const char *ib = vl_base(index), *sb = vl_base(s);
  char *tb = vl_base(t);
  vl_dtype idt = index->dtype, dt = t->dtype;
  /* Serial: repeated indices write (or add to) one element, in order. */
  vl_iter it;
  vl_iter_init(&it, I.ndim, I.shape, 3, strides, offs);
  do {
    int64_t v = load_index(ib, it.offset[0], idt);
    char *dp = tb + (it.offset[1] + v * dstride) * (int64_t)es;
    const char *sp = sb + it.offset[2] * (int64_t)es;
    if (add)
      add_elem(dp, sp, dt);
    else
      copy_elem(dp, sp, es);
  } while (vl_iter_next(&it));
  vl_tensor_release(s);
  return VL_OK;
}

/* In place: not differentiable. A tensor in a graph is refused, and so
   is a src that requires grad (its gradient would be lost). */
static int scatter_inplace(const char *op, vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src,
                           bool add) {
  if (vl_ag_check_inplace(op, t) != VL_OK) return vl_last_status();
  if (src && vl_ag_needed(1, &src))
    return vl_error(VL_ESTATE,
                    "%s: src requires grad, but the in-place scatter is not differentiable; use the out-of-place "
                    "scatter, or run it inside vl.no_grad",
                    op);
  int rc = scatter_impl(op, t, dim, index, src, add);
  if (rc == VL_OK) vl_bump_version(t);
  return rc;
}

int vl_scatter_(vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src) {
  return scatter_inplace("scatter_", t, dim, index, src, false);
}

int vl_scatter_add_(vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src) {
  return scatter_inplace("scatter_add_", t, dim, index, src, true);
}

static vl_tensor *scatter_fwd(const vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src) {
  vl_tensor *out = vl_clone(t);
  if (out == NULL) return NULL;
  if (scatter_impl("scatter", out, dim, index, src, false) != VL_OK) {
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

/* ------------------------------------------------------------------ */
/* index_select, masked_select, nonzero                                */
/* ------------------------------------------------------------------ */

static vl_tensor *index_select_fwd(const vl_tensor *t, int dim, const vl_tensor *index) {
  char s1[VL_SHAPE_STR];
  if (check_index_dtype("index_select", index)) return NULL;
  if (index->ndim > 1)
    return vl_error(VL_ESHAPE, "index_select: index must be 0-d or 1-d, got shape %s",
                    vl_shape_str(index->ndim, index->shape, s1)),
           NULL;
  layout T;
  layout_of(t, &T);
  int d;
  if (vl_wrap_dim("index_select", dim, t->ndim, &d)) return NULL;
  if (check_index_range("index_select", index, T.shape[d])) return NULL;
  int64_t n = vl_numel(index);
  int64_t shape[VL_MAX_DIMS];
  memcpy(shape, T.shape, sizeof shape);
  shape[d] = n;
  /* 0-d input with a 0-d index stays 0-d */
  int ondim = (t->ndim == 0 && index->ndim == 0) ? 0 : T.ndim;
  vl_tensor *out = vl_empty(ondim, shape, t->dtype);
  if (out == NULL) return NULL;
  int64_t total = shape_numel(T.ndim, shape);
  if (total == 0) return out;
  int64_t *iv = malloc((size_t)n * sizeof *iv);
  if (iv == NULL) {
    vl_tensor_release(out);
    return vl_error(VL_ENOMEM, "index_select: out of memory"), NULL;
  }
  const char *ib = vl_base(index);
  int64_t istride = index->ndim ? index->stride[0] : 0;
  for (int64_t j = 0; j < n; j++) iv[j] = load_index(ib, index->offset + j * istride, index->dtype);
  size_t es = vl_dtype_size(t->dtype);
  int nd = T.ndim, od = nd - 1;
  int64_t tstr[VL_MAX_DIMS], ostr[VL_MAX_DIMS];
  memcpy(tstr, T.stride, sizeof tstr);
  int64_t dstride = tstr[d];
  tstr[d] = 0;
  contiguous_strides(nd, shape, ostr);
  int64_t inner = shape[od], rows = total / inner;
  const int64_t *strides[2] = {tstr, ostr};
  int64_t offs[2] = {t->offset, 0};
  const char *tb = vl_base(t);
  char *ob = vl_data_ptr(out);
  int64_t tin = T.stride[od];
#pragma omp parallel if (total > VL_PARALLEL_GRAIN && rows > 1)
  {
    int64_t lo, hi;
    thread_range(rows, &lo, &hi);
    if (lo < hi) {
      vl_iter it;
      vl_iter_init(&it, od, shape, 2, strides, offs);
      vl_iter_seek(&it, lo, offs);
      for (int64_t r = lo; r < hi; r++) {
        char *dp = ob + it.offset[1] * (int64_t)es;
        if (d == od) { /* selecting along the last dim: one index per element */
          const char *sp = tb + it.offset[0] * (int64_t)es;
          for (int64_t j = 0; j < inner; j++) copy_elem(dp + j * (int64_t)es, sp + iv[j] * dstride * (int64_t)es, es);
        } else {
          int64_t so = it.offset[0] + iv[it.index[d]] * dstride;
          copy_row(dp, 1, tb + so * (int64_t)es, tin, inner, es);
        }
        vl_iter_next(&it);
      }
    }
  }
  free(iv);
  return out;
}

static vl_tensor *masked_select_fwd(const vl_tensor *t, const vl_tensor *mask) {
  if (mask->dtype != VL_BOOL && mask->dtype != VL_UINT8)
    return vl_error(VL_EDTYPE, "masked_select: mask must be bool or uint8, got %s", vl_dtype_name(mask->dtype)),
           NULL;
  int nd;
  int64_t shape[VL_MAX_DIMS];
  if (vl_broadcast_shapes("masked_select", t->ndim, t->shape, mask->ndim, mask->shape, &nd, shape)) return NULL;
  int64_t tstr[VL_MAX_DIMS], mstr[VL_MAX_DIMS];
  vl_broadcast_strides(t, nd, shape, tstr);
  vl_broadcast_strides(mask, nd, shape, mstr);
  int64_t total = shape_numel(nd, shape);
  const uint8_t *mb = (const uint8_t *)vl_base(mask);
  int64_t count = 0;
  if (total > 0) {
    const int64_t *strides[1] = {mstr};
    int64_t offs[1] = {mask->offset};
    vl_iter it;
    vl_iter_init(&it, nd, shape, 1, strides, offs);
    do count += mb[it.offset[0]] != 0;
    while (vl_iter_next(&it));
  }
  vl_tensor *out = vl_empty(1, &count, t->dtype);
  if (out == NULL || count == 0) return out;
  size_t es = vl_dtype_size(t->dtype);
  const char *tb = vl_base(t);
  char *ob = vl_data_ptr(out);
  const int64_t *strides[2] = {mstr, tstr};
  int64_t offs[2] = {mask->offset, t->offset};
  vl_iter it;
  vl_iter_init(&it, nd, shape, 2, strides, offs);
  int64_t k = 0;
  do {
    if (mb[it.offset[0]]) copy_elem(ob + (k++) * (int64_t)es, tb + it.offset[1] * (int64_t)es, es);
  } while (vl_iter_next(&it));
  return out;
}

/* Exact "is not zero" per dtype; NaN counts as non-zero, -0.0 as zero. */
static inline bool elem_nonzero(const char *base, int64_t off, vl_dtype dt) {
  switch (dt) {
    case VL_FLOAT32: return ((const float *)base)[off] != 0;
    case VL_FLOAT64: return ((const double *)base)[off] != 0;
    case VL_FLOAT16:
    case VL_BFLOAT16: return (((const uint16_t *)base)[off] & 0x7fff) != 0;
    case VL_INT64: return ((const int64_t *)base)[off] != 0;
    case VL_INT32: return ((const int32_t *)base)[off] != 0;
    default: return ((const uint8_t *)base)[off] != 0;
  }
}

vl_tensor *vl_nonzero(const vl_tensor *t) {
  int64_t total = vl_numel(t);
  const char *tb = vl_base(t);
  int64_t count = 0;
  const int64_t *strides[1] = {t->stride};
  int64_t offs[1] = {t->offset};
  vl_iter it;
  if (total > 0) {
    vl_iter_init(&it, t->ndim, t->shape, 1, strides, offs);
    do count += elem_nonzero(tb, it.offset[0], t->dtype);
    while (vl_iter_next(&it));
  }
  int64_t shape[2] = {count, t->ndim};
  vl_tensor *out = vl_empty(2, shape, VL_INT64);
  if (out == NULL || count == 0) return out;
  int64_t *ob = vl_data_ptr(out);
  vl_iter_init(&it, t->ndim, t->shape, 1, strides, offs);
  int64_t k = 0;
  do {
    if (elem_nonzero(tb, it.offset[0], t->dtype)) {
      for (int d = 0; d < t->ndim; d++) ob[k * t->ndim + d] = it.index[d];
      k++;
    }
  } while (vl_iter_next(&it));
  return out;
}

/* ------------------------------------------------------------------ */

static vl_tensor *flip_fwd(const vl_tensor *t, int ndims, const int *dims) {
  bool seen[VL_MAX_DIMS] = {false};
  if (ndims < 0) return vl_error(VL_EARG, "flip: negative number of dims (%d)", ndims), NULL;
  rawview src = raw_of(t);
  for (int i = 0; i < ndims; i++) {
    int d;
    if (vl_wrap_dim("flip", dims[i], t->ndim, &d)) return NULL;
    if (t->ndim == 0) continue; /* flipping a scalar changes nothing */
    if (seen[d]) return vl_error(VL_EARG, "flip: dim %d appears more than once", d), NULL;
    seen[d] = true;
    if (t->shape[d] > 0) src.off += (t->shape[d] - 1) * t->stride[d];
    src.stride[d] = -t->stride[d];
  }
  vl_tensor *out = vl_empty(t->ndim, t->shape, t->dtype);
  if (out == NULL) return NULL;
  rawview dst = raw_of(out);
  copy_raw(t->ndim, t->shape, vl_dtype_size(t->dtype), &dst, &src);
  return out;
}

/* dst <- src rolled by s (0 <= s < shape[d]) along d. */
static void roll_raw(int ndim, const int64_t *shape, size_t es, const rawview *dst, const rawview *src, int d,
                     int64_t s) {
  int64_t n = shape[d];
  int64_t sh[VL_MAX_DIMS];
  memcpy(sh, shape, (size_t)ndim * sizeof *sh);
  rawview a = *dst, b = *src;
  /* dst[s:n] <- src[0:n-s] */
  sh[d] = n - s;
  a.off = dst->off + s * dst->stride[d];
  copy_raw(ndim, sh, es, &a, &b);
  /* dst[0:s] <- src[n-s:n] */
  sh[d] = s;
  a.off = dst->off;
  b.off = src->off + (n - s) * src->stride[d];
  copy_raw(ndim, sh, es, &a, &b);
}

static int64_t wrap_shift(int64_t s, int64_t n) {
  if (n == 0) return 0;
  int64_t r = s % n;
  return r < 0 ? r + n : r;
}

static vl_tensor *roll_fwd(const vl_tensor *t, int n, const int64_t *shifts, const int *dims) {
  size_t es = vl_dtype_size(t->dtype);
  if (n <= 0) return vl_error(VL_EARG, "roll: expected at least one shift (got %d)", n), NULL;
  if (dims == NULL) { /* roll the flattened tensor, restore the shape */
    if (n != 1) return vl_error(VL_EARG, "roll: without dims expects exactly one shift (got %d)", n), NULL;
    vl_tensor *c = vl_contiguous(t);
    if (c == NULL) return NULL;
    vl_tensor *out = vl_empty(t->ndim, t->shape, t->dtype);
    if (out == NULL) {
      vl_tensor_release(c);
      return NULL;
    }
    int64_t total = vl_numel(t);
    if (total > 0) {
      rawview dst = {vl_base(out), out->offset, {1}}, src = {vl_base(c), c->offset, {1}};
      roll_raw(1, &total, es, &dst, &src, 0, wrap_shift(shifts[0], total));
    }
    vl_tensor_release(c);
    return out;
  }
  int wd[VL_MAX_DIMS];
  if (n > VL_MAX_DIMS) return vl_error(VL_EARG, "roll: %d dims given (at most %d)", n, VL_MAX_DIMS), NULL;
  for (int i = 0; i < n; i++)
    if (vl_wrap_dim("roll", dims[i], t->ndim, &wd[i])) return NULL;
  if (t->ndim == 0) return vl_clone(t);
  /* one pass per dim: cur -> next */
  vl_tensor *cur = NULL;
  for (int i = 0; i < n; i++) {
    vl_tensor *next = vl_empty(t->ndim, t->shape, t->dtype);
    if (next == NULL) {
      vl_tensor_release(cur);
      return NULL;
    }
    const vl_tensor *from = cur ? cur : t;
    rawview dst = raw_of(next), src = raw_of(from);
    if (vl_numel(t) > 0)
      roll_raw(t->ndim, t->shape, es, &dst, &src, wd[i], wrap_shift(shifts[i], t->shape[wd[i]]));
    vl_tensor_release(cur);
    cur = next;
  }
  return cur;
}

static vl_tensor *repeat_fwd(const vl_tensor *t, int n, const int64_t *repeats) {
  if (n < t->ndim)
    return vl_error(VL_EARG, "repeat: %d repeat counts given for a %d-d tensor (need at least %d)", n, t->ndim,
                    t->ndim),
           NULL;
  if (n > VL_MAX_DIMS) return vl_error(VL_EARG, "repeat: %d repeat counts (at most %d dims)", n, VL_MAX_DIMS), NULL;
  int64_t ps[VL_MAX_DIMS], pst[VL_MAX_DIMS], os[VL_MAX_DIMS] = {0};
  int lead = n - t->ndim;
  for (int d = 0; d < n; d++) {
    if (repeats[d] < 0)
      return vl_error(VL_EARG, "repeat: repeat count %lld (position %d) is negative", (long long)repeats[d], d),
             NULL;
    ps[d] = d < lead ? 1 : t->shape[d - lead];
    pst[d] = d < lead ? 0 : t->stride[d - lead];
    if (ps[d] > 0 && repeats[d] > INT64_MAX / ps[d])
      return vl_error(VL_ENOMEM, "repeat: size %lld x %lld overflows", (long long)ps[d], (long long)repeats[d]), NULL;
    os[d] = ps[d] * repeats[d];
  }
  vl_tensor *out = vl_empty(n, os, t->dtype);
  if (out == NULL) return NULL;
  int64_t total = shape_numel(n, os);
  if (total == 0) return out;
  size_t es = vl_dtype_size(t->dtype);
  const char *tb = vl_base(t);
  char *ob = vl_data_ptr(out);
  if (n == 0) {
    copy_elem(ob, tb + t->offset * (int64_t)es, es);
    return out;
  }
  int od = n - 1;
  int64_t inner = os[od], rows = total / inner, pin = ps[od], sin = pst[od], rin = repeats[od];
  int64_t zero[VL_MAX_DIMS] = {0};
  const int64_t *strides[1] = {zero};
  int64_t offs[1] = {0};
#pragma omp parallel if (total > VL_PARALLEL_GRAIN && rows > 1)
  {
    int64_t lo, hi;
    thread_range(rows, &lo, &hi);
    if (lo < hi) {
      vl_iter it;
      vl_iter_init(&it, od, os, 1, strides, offs);
      vl_iter_seek(&it, lo, offs);
      for (int64_t r = lo; r < hi; r++) {
        int64_t so = t->offset;
        for (int q = 0; q < od; q++) so += (it.index[q] % ps[q]) * pst[q];
        char *dp = ob + r * inner * (int64_t)es;
        copy_row(dp, 1, tb + so * (int64_t)es, sin, pin, es);
        for (int64_t c = 1; c < rin; c++) memcpy(dp + c * pin * (int64_t)es, dp, (size_t)pin * es);
        vl_iter_next(&it);
      }
    }
  }
  return out;
}

static vl_tensor *tri_impl(const char *op, const vl_tensor *t, int64_t k, bool lower) {
  char s1[VL_SHAPE_STR];
  if (t->ndim < 2)
    return vl_error(VL_ESHAPE, "%s: expected a tensor with at least 2 dims, got shape %s", op,
                    vl_shape_str(t->ndim, t->shape, s1)),
           NULL;
  vl_tensor *out = vl_clone(t);
  if (out == NULL) return NULL;
  int64_t R = t->shape[t->ndim - 2], C = t->shape[t->ndim - 1];
  int64_t total = vl_numel(t);
  if (total == 0) return out;
  /* clamp so that i + k + 1 cannot overflow */
  if (k > C + 1) k = C + 1;
  if (k < -R - 1) k = -R - 1;
  int64_t rows = total / C;
  size_t es = vl_dtype_size(t->dtype);
  char *ob = vl_data_ptr(out);
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN)
  for (int64_t r = 0; r < rows; r++) {
    int64_t i = r % R, lo, hi;
    if (lower) { /* keep j <= i + k */
      lo = VL_MAX(0, i + k + 1);
      hi = C;
    } else { /* keep j >= i + k */
      lo = 0;
      hi = VL_MIN(C, VL_MAX(0, i + k));
    }
    if (lo < hi) memset(ob + (r * C + lo) * (int64_t)es, 0, (size_t)(hi - lo) * es);
  }
  return out;
}


/* ------------------------------------------------------------------ */
/* Autograd                                                            */
/* ------------------------------------------------------------------ */

/* The forwards above run with recording off (their own views, clones and
   conversions must not record); each public op then records one node
   when an input of a float dtype required grad as it began. */


/* ---- cat, stack: each input's slice of g ---- */

static int cat_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int d = (int)n->iarg[0];
  int64_t pos = 0;
  for (int i = 0; i < n->ninputs; i++) {
    bool skipped = n->in_ndim[i] == 1 && n->in_shape[i][0] == 0; /* legacy empty input */
    int64_t len = skipped ? 0 : n->in_shape[i][d];
    RET_GI(n, i, skipped ? vl_zeros(1, n->in_shape[i], n->in_dtype[i]) : vl_narrow(g, d, pos, len));
    pos += len;
  }
  return VL_OK;
}

vl_tensor *vl_cat(int n, const vl_tensor *const *ts, int dim) {
  bool rec = n > 0 && ts && vl_ag_needed(n, ts);
  bool was = vl_ag_pause();
  int d = 0;
  vl_tensor *out = cat_fwd(n, ts, dim, &d);
  vl_set_grad_enabled(was);
  return ag_record(out, rec, "cat", cat_backward, n, ts, 0, NULL, 1, (int64_t[]){d});
}

static int stack_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  for (int i = 0; i < n->ninputs; i++) RET_GI(n, i, vl_select(g, (int)n->iarg[0], i));
  return VL_OK;
}

vl_tensor *vl_stack(int n, const vl_tensor *const *ts, int dim) {
  bool rec = n > 0 && ts && vl_ag_needed(n, ts);
  bool was = vl_ag_pause();
  int d = 0;
  vl_tensor *out = stack_fwd(n, ts, dim, &d);
  vl_set_grad_enabled(was);
  return ag_record(out, rec, "stack", stack_backward, n, ts, 0, NULL, 1, (int64_t[]){d});
}

/* ---- gather, scatter, index_select, masked_select ---- */

/* gather: g scatter-added back into zeros (saved[0]: the index). */
static int gather_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  RET_GI(n, 0, scatter_add_zeros(n, 0, g, (int)n->iarg[0], n->saved[0]));
  return VL_OK;
}

vl_tensor *vl_gather(const vl_tensor *t, int dim, const vl_tensor *index) {
  bool rec = vl_ag_needed(1, &t);
  bool was = vl_ag_pause();
  vl_tensor *out = gather_fwd(t, dim, index);
  vl_set_grad_enabled(was);
  int d = 0;
  if (out && rec) vl_wrap_dim("gather", dim, t->ndim, &d);
  return ag_record(out, rec, "gather", gather_backward, 1, &t, 1, &index, 1, (int64_t[]){d});
}

/* `small` (taken over) in the leading corner of a zero tensor of `shape`. */
static vl_tensor *embed_zeros(vl_tensor *small, int ndim, const int64_t *shape) {
  if (small == NULL) return NULL;
  if (small->ndim == ndim && memcmp(small->shape, shape, (size_t)ndim * sizeof *shape) == 0) return small;
  vl_tensor *z = vl_zeros(ndim, shape, small->dtype);
  vl_tensor *v = z;
  if (v) vl_tensor_retain(v);
  for (int k = 0; v && k < ndim; k++) {
    vl_tensor *w = vl_narrow(v, k, 0, small->shape[k]);
    vl_tensor_release(v);
    v = w;
  }
  int rc = v ? vl_copy_(v, small) : vl_last_status();
  vl_tensor_release(v);
  vl_tensor_release(small);
  if (rc != VL_OK) {
    vl_tensor_release(z);
    return NULL;
  }
  return z;
}

/* The gradient of scatter's src: g at each src element's target, but
   only for the element that wrote it last (the scatter runs serially,
   so with repeated indices the last write wins and the others are
   overwritten: their gradient is zero). A 0-d src (a value written at
   every index) gets the sum over the positions it wrote. */
static vl_tensor *scatter_src_grad(const vl_node *n, const vl_tensor *g, int d, const vl_tensor *index) {
  int64_t ni = vl_numel(index);
  vl_tensor *ids = vl_arange(0, (double)ni, 1, VL_INT64);
  vl_tensor *idr = ids ? vl_reshape(ids, index->ndim, index->shape) : NULL;
  vl_tensor *w = idr ? vl_full(n->in_ndim[0], n->in_shape[0], -1, VL_INT64) : NULL;
  vl_tensor *win = NULL, *mask = NULL, *gg = NULL, *zero = NULL, *r = NULL;
  if (w && vl_scatter_(w, d, index, idr) == VL_OK) win = vl_gather(w, d, index);
  if (win) mask = vl_binary(VL_EQ, win, idr);
  if (mask) gg = vl_gather(g, d, index);
  if (gg) zero = vl_scalar(0, g->dtype);
  if (zero) r = vl_where(mask, gg, zero);
  vl_tensor_release(ids), vl_tensor_release(idr), vl_tensor_release(w), vl_tensor_release(win);
  vl_tensor_release(mask), vl_tensor_release(gg), vl_tensor_release(zero);
  if (r == NULL) return NULL;
  if (n->in_ndim[1] == 0) {
    vl_tensor *s = vl_reduce(VL_SUM, r, 0, NULL, false);
    vl_tensor_release(r);
    return s;
  }
  return embed_zeros(r, n->in_ndim[1], n->in_shape[1]);
}

/* scatter: self gets g with the written positions zeroed, src the
   values of g it landed on (saved[0]: the index). */
static int scatter_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int d = (int)n->iarg[0];
  const vl_tensor *index = n->saved[0];
  if (n->needs[0]) {
    vl_tensor *zero = vl_scalar(0, g->dtype);
    vl_tensor *r = zero ? vl_scatter(g, d, index, zero) : NULL;
    vl_tensor_release(zero);
    if ((gi[0] = vl_ag_reduce_to(n, 0, r)) == NULL) return vl_last_status();
  }
  RET_GI(n, 1, scatter_src_grad(n, g, d, index));
  return VL_OK;
}

vl_tensor *vl_scatter(const vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src) {
  bool rec = vl_ag_needed(2, (const vl_tensor *[]){t, src});
  bool was = vl_ag_pause();
  vl_tensor *out = scatter_fwd(t, dim, index, src);
  vl_set_grad_enabled(was);
  int d = 0;
  if (out && rec) vl_wrap_dim("scatter", dim, t->ndim, &d);
  return ag_record(out, rec, "scatter", scatter_backward, 2, (const vl_tensor *[]){t, src}, 1, &index, 1,
                   (int64_t[]){d});
}

/* index_select: g added back at the selected positions (index_add),
   through scatter_add with the index expanded along g. */
static int index_select_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int d = (int)n->iarg[0];
  const vl_tensor *index = n->saved[0];
  vl_tensor *ix;
  if (g->ndim == 0) {
    vl_tensor_retain((vl_tensor *)index);
    ix = (vl_tensor *)index;
  } else {
    int64_t vs[VL_MAX_DIMS];
    for (int k = 0; k < g->ndim; k++) vs[k] = k == d ? vl_numel(index) : 1;
    vl_tensor *v = vl_reshape(index, g->ndim, vs);
    ix = v ? vl_expand(v, g->ndim, g->shape) : NULL;
    vl_tensor_release(v);
  }
  vl_tensor *r = ix ? scatter_add_zeros(n, 0, g, d, ix) : NULL;
  vl_tensor_release(ix);
  RET_GI(n, 0, r);
  return VL_OK;
}

vl_tensor *vl_index_select(const vl_tensor *t, int dim, const vl_tensor *index) {
  bool rec = vl_ag_needed(1, &t);
  bool was = vl_ag_pause();
  vl_tensor *out = index_select_fwd(t, dim, index);
  vl_set_grad_enabled(was);
  int d = 0;
  if (out && rec) vl_wrap_dim("index_select", dim, t->ndim, &d);
  return ag_record(out, rec, "index_select", index_select_backward, 1, &t, 1, &index, 1, (int64_t[]){d});
}

/* masked_select: g's elements, in order, back at the set positions of
   the mask over the broadcast shape (then summed to the input's shape).
   saved[0]: the mask. */
static int masked_select_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *mask = n->saved[0];
  int nd;
  int64_t shape[VL_MAX_DIMS], mstr[VL_MAX_DIMS];
  if (vl_broadcast_shapes("masked_select", n->in_ndim[0], n->in_shape[0], mask->ndim, mask->shape, &nd, shape))
    return vl_last_status();
  vl_tensor *z = vl_zeros(nd, shape, g->dtype);
  if (z == NULL) return vl_last_status();
  int64_t total = shape_numel(nd, shape), count = g->shape[0];
  if (total > 0 && count > 0) {
    vl_broadcast_strides(mask, nd, shape, mstr);
    const int64_t *strides[1] = {mstr};
    int64_t offs[1] = {mask->offset};
    const uint8_t *mb = (const uint8_t *)vl_base(mask);
    const char *gb = vl_data_ptr(g);
    char *zb = vl_data_ptr(z);
    size_t es = vl_dtype_size(g->dtype);
    int64_t gs = g->stride[0], k = 0, pos = 0;
    vl_iter it;
    vl_iter_init(&it, nd, shape, 1, strides, offs);
    do {
      if (mb[it.offset[0]] && k < count) copy_elem(zb + pos * (int64_t)es, gb + (k++) * gs * (int64_t)es, es);
      pos++;
    } while (vl_iter_next(&it));
  }
  RET_GI(n, 0, z);
  return VL_OK;
}

vl_tensor *vl_masked_select(const vl_tensor *t, const vl_tensor *mask) {
  bool rec = vl_ag_needed(1, &t);
  bool was = vl_ag_pause();
  vl_tensor *out = masked_select_fwd(t, mask);
  vl_set_grad_enabled(was);
  return ag_record(out, rec, "masked_select", masked_select_backward, 1, &t, 1, &mask, 0, NULL);
}

/* ---- flip, roll, repeat, tril, triu ---- */

/* iarg[0]: a bit per flipped dim; flipping g again undoes it. */
static int flip_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int dims[VL_MAX_DIMS], nd = 0;
  for (int d = 0; d < VL_MAX_DIMS; d++)
    if (n->iarg[0] & ((int64_t)1 << d)) dims[nd++] = d;
  RET_GI(n, 0, vl_flip(g, nd, dims));
  return VL_OK;
}

vl_tensor *vl_flip(const vl_tensor *t, int ndims, const int *dims) {
  bool rec = vl_ag_needed(1, &t);
  bool was = vl_ag_pause();
  vl_tensor *out = flip_fwd(t, ndims, dims);
  vl_set_grad_enabled(was);
  int64_t mask = 0;
  for (int i = 0; out && rec && t->ndim > 0 && i < ndims; i++) { /* a scalar is its own flip */
    int d = 0;
    vl_wrap_dim("flip", dims[i], t->ndim, &d);
    mask |= (int64_t)1 << d;
  }
  return ag_record(out, rec, "flip", flip_backward, 1, &t, 0, NULL, 1, &mask);
}

/* iarg[i]: the shift that undoes shift i; arg[i]: its dim, -1 past the
   last (arg[0] == -2: the flattened tensor was rolled). */
static int roll_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int dims[VL_MAX_DIMS], nd = 0;
  while (nd < VL_MAX_DIMS && n->arg[nd] >= 0) {
    dims[nd] = (int)n->arg[nd];
    nd++;
  }
  if (n->arg[0] == -2) RET_GI(n, 0, vl_roll(g, 1, n->iarg, NULL));
  else RET_GI(n, 0, vl_roll(g, nd, n->iarg, dims));
  return VL_OK;
}

vl_tensor *vl_roll(const vl_tensor *t, int n, const int64_t *shifts, const int *dims) {
  bool rec = vl_ag_needed(1, &t);
  bool was = vl_ag_pause();
  vl_tensor *out = roll_fwd(t, n, shifts, dims);
  vl_set_grad_enabled(was);
  if (out == NULL || !rec) return out;
  vl_node *node = vl_ag_node("roll", roll_backward, 1, &t);
  if (node == NULL) {
    vl_tensor_release(out);
    return NULL;
  }
  for (int i = 0; i < VL_NODE_MAX_ARGS; i++) node->arg[i] = -1;
  if (dims == NULL) {
    node->arg[0] = -2;
    node->iarg[0] = -wrap_shift(shifts[0], vl_numel(t)); /* in (-numel, 0]: negating is safe */
  } else {
    for (int i = 0; i < n; i++) { /* n <= VL_MAX_DIMS: checked by the forward */
      int d = 0;
      vl_wrap_dim("roll", dims[i], t->ndim, &d);
      node->arg[i] = d;
      node->iarg[i] = -wrap_shift(shifts[i], t->ndim ? t->shape[d] : 1);
    }
  }
  if (vl_ag_attach(out, node) != VL_OK) {
    vl_ag_node_release(node);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

/* repeat: each block's gradient is summed back. iarg[0..nr): the repeat
   counts; arg[0]: nr. One dim at a time: g viewed as [before, r, s*after]
   and summed over r (2n dims [r0, s0, r1, s1, ...] would not fit in
   VL_MAX_DIMS). */
static int repeat_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int nr = (int)n->arg[0], lead = nr - n->in_ndim[0];
  if (vl_numel(g) == 0) {
    RET_GI(n, 0, vl_zeros(n->in_ndim[0], n->in_shape[0], g->dtype));
    return VL_OK;
  }
  int64_t cs[VL_MAX_DIMS];
  memcpy(cs, g->shape, (size_t)nr * sizeof *cs);
  vl_tensor *G = (vl_tensor_retain((vl_tensor *)g), (vl_tensor *)g);
  for (int k = 0; k < nr && G; k++) {
    int64_t r = n->iarg[k];
    if (r == 1) continue;
    int64_t s = k < lead ? 1 : n->in_shape[0][k - lead], before = 1, after = 1;
    for (int q = 0; q < k; q++) before *= cs[q];
    for (int q = k + 1; q < nr; q++) after *= cs[q];
    int64_t sh3[3] = {before, r, s * after};
    vl_tensor *v = vl_reshape(G, 3, sh3);
    vl_tensor *sm = v ? vl_reduce(VL_SUM, v, 1, (int[]){1}, false) : NULL;
    cs[k] = s;
    vl_tensor *next = sm ? vl_reshape(sm, nr, cs) : NULL;
    vl_tensor_release(v), vl_tensor_release(sm), vl_tensor_release(G);
    G = next;
  }
  RET_GI(n, 0, G); /* sums the leading size-1 dims away */
  return VL_OK;
}

vl_tensor *vl_repeat(const vl_tensor *t, int n, const int64_t *repeats) {
  bool rec = vl_ag_needed(1, &t);
  bool was = vl_ag_pause();
  vl_tensor *out = repeat_fwd(t, n, repeats);
  vl_set_grad_enabled(was);
  if (out == NULL || !rec) return out;
  vl_node *node = vl_ag_node("repeat", repeat_backward, 1, &t);
  if (node == NULL) {
    vl_tensor_release(out);
    return NULL;
  }
  node->arg[0] = n; /* n <= VL_MAX_DIMS: checked by the forward */
  for (int i = 0; i < n; i++) node->iarg[i] = repeats[i];
  if (vl_ag_attach(out, node) != VL_OK) {
    vl_ag_node_release(node);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

/* tril/triu: the gradient masked the same way (iarg[0] = k, iarg[1] = lower). */
static int tri_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  RET_GI(n, 0, n->iarg[1] ? vl_tril(g, n->iarg[0]) : vl_triu(g, n->iarg[0]));
  return VL_OK;
}

static vl_tensor *tri(const char *op, const vl_tensor *t, int64_t k, bool lower) {
  bool rec = vl_ag_needed(1, &t);
  bool was = vl_ag_pause();
  vl_tensor *out = tri_impl(op, t, k, lower);
  vl_set_grad_enabled(was);
  return ag_record(out, rec, op, tri_backward, 1, &t, 0, NULL, 2, (int64_t[]){k, lower});
}

vl_tensor *vl_tril(const vl_tensor *t, int64_t k) { return tri("tril", t, k, true); }
vl_tensor *vl_triu(const vl_tensor *t, int64_t k) { return tri("triu", t, k, false); }
