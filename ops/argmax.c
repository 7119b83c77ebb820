/*
** argmax.c — max/min with indices along a dim (vl_max_dim, vl_min_dim)
** and argmax/argmin (one dim or the flattened tensor). First occurrence
** wins ties; the first NaN wins over everything. The input is brought to
** the [O, R, I] layout of ops/reduce.c (reduce_internal.h) and each task
** finds the extreme of a row, or of a block of columns down the rows.
**
** Autograd: the values of max/min record one node whose backward sends
** g to the selected elements; the indices and argmax/argmin take no part.
*/
/* As in reduce.c: no trapping math, so that GCC vectorises the selects.
   Before the includes, for the inline helpers too. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <stdlib.h>

#include "reduce_internal.h"

/* ------------------------------------------------------------------ */
/* max/min with indices, argmax/argmin                                 */
/* ------------------------------------------------------------------ */

/* Is candidate (value v) better than the current best b? First
   occurrence wins ties; the first NaN wins over everything. */
VL_AI bool better_f(double v, double b, bool ismax) {
  if (b != b) return false;
  if (v != v) return true;
  return ismax ? v > b : v < b;
}

/* Index (0-based, within the run) of the extreme of n elements. */
VL_AI int64_t argext_row(const void *x, int64_t off, int64_t n, bool ismax, vl_dtype dt) {
  int64_t bi = 0;
  if (dt == VL_FLOAT32) { /* the extreme first, then its first position (or the first NaN's) */
    const float *xf = (const float *)x + off;
    bool nan;
    float e = row_ext_f32_nan(xf, n, ismax, &nan);
    int64_t i = find_f32(xf, n, e, nan);
    return i < n ? i : 0;
  } else if (dt == VL_FLOAT64) {
    double e = row_ext_f64((const double *)x + off, n, ismax);
    if (e != e) {
      for (int64_t i = 0; i < n; i++)
        if (ldf(x, off + i, dt) != ldf(x, off + i, dt)) return i;
    } else {
      for (int64_t i = 0; i < n; i++)
        if (ldf(x, off + i, dt) == e) return i;
    }
    return 0;
  } else {
    int64_t b = ldi(x, off, dt);
    for (int64_t i = 1; i < n; i++) {
      int64_t v = ldi(x, off + i, dt);
      if (ismax ? v > b : v < b) {
        b = v;
        bi = i;
      }
    }
  }
  return bi;
}

/* Indices of the extremes down nr rows (row r at off + r*ld) for ni
   columns (ni <= VL_REDUCE_COLBLOCK). */
VL_AI void argext_col(const void *x, int64_t off, int64_t nr, int64_t ni, int64_t ld, bool ismax, vl_dtype dt,
                      int64_t *restrict idx) {
  for (int64_t i = 0; i < ni; i++) idx[i] = 0;
  if (is_floatwork(dt)) {
    double b[VL_REDUCE_COLBLOCK];
    for (int64_t i = 0; i < ni; i++) b[i] = ldf(x, off + i, dt);
    for (int64_t r = 1; r < nr; r++) {
      int64_t base = off + r * ld;
      for (int64_t i = 0; i < ni; i++) {
        double v = ldf(x, base + i, dt);
        bool take = (ismax ? v > b[i] : v < b[i]) || (v != v && b[i] == b[i]);
        b[i] = take ? v : b[i];
        idx[i] = take ? r : idx[i];
      }
    }
  } else {
    int64_t b[VL_REDUCE_COLBLOCK];
    for (int64_t i = 0; i < ni; i++) b[i] = ldi(x, off + i, dt);
    for (int64_t r = 1; r < nr; r++) {
      int64_t base = off + r * ld;
      for (int64_t i = 0; i < ni; i++) {
        int64_t v = ldi(x, base + i, dt);
        bool take = ismax ? v > b[i] : v < b[i];
        b[i] = take ? v : b[i];
        idx[i] = take ? r : idx[i];
      }
    }
  }
}

typedef int64_t (*argrow_fn)(const void *x, int64_t off, int64_t n, bool ismax);
typedef void (*argcol_fn)(const void *x, int64_t off, int64_t nr, int64_t ni, int64_t ld, bool ismax, int64_t *idx);

#define VL_DEF_ARG_KERNELS(SFX, DT)                                                                            \
  static int64_t argrow_##SFX(const void *x, int64_t off, int64_t n, bool ismax) {                           \
    return argext_row(x, off, n, ismax, DT);                                                                 \
  }                                                                                                          \
  static void argcol_##SFX(const void *x, int64_t off, int64_t nr, int64_t ni, int64_t ld, bool ismax,       \
                           int64_t *idx) {                                                                   \
    argext_col(x, off, nr, ni, ld, ismax, DT, idx);                                                          \
  }
VL_DEF_ARG_KERNELS(f32, VL_FLOAT32)
VL_DEF_ARG_KERNELS(f64, VL_FLOAT64)
VL_DEF_ARG_KERNELS(i64, VL_INT64)
VL_DEF_ARG_KERNELS(i32, VL_INT32)
VL_DEF_ARG_KERNELS(u8, VL_UINT8)
VL_DEF_ARG_KERNELS(b8, VL_BOOL)

static void pick_arg(vl_dtype dt, argrow_fn *rf, argcol_fn *cf) {
  switch (dt) {
    case VL_FLOAT64: *rf = argrow_f64; *cf = argcol_f64; break;
    case VL_INT64: *rf = argrow_i64; *cf = argcol_i64; break;
    case VL_INT32: *rf = argrow_i32; *cf = argcol_i32; break;
    case VL_UINT8: *rf = argrow_u8; *cf = argcol_u8; break;
    case VL_BOOL: *rf = argrow_b8; *cf = argcol_b8; break;
    default: *rf = argrow_f32; *cf = argcol_f32; break;
  }
}

/* Is element at position j better than the one at b (both absolute)? */
static bool better_at(const void *x, int64_t j, int64_t b, bool ismax, vl_dtype dt) {
  if (is_floatwork(dt)) return better_f(vl_load(x, j, dt), vl_load(x, b, dt), ismax);
  int64_t v = ldi(x, j, dt), w = ldi(x, b, dt);
  return ismax ? v > w : v < w;
}

static int argext_run(const char *op, const rlayout *L, bool ismax, int64_t *idx) {
  argrow_fn rf;
  argcol_fn cf;
  pick_arg(L->dt, &rf, &cf);
  int64_t O = L->O, R = L->R, I = L->I, off = L->off, total = O * R * I;
  const void *x = L->x;
  if (I == 1) {
    int64_t C = R > VL_REDUCE_CHUNK ? (R + VL_REDUCE_CHUNK - 1) / VL_REDUCE_CHUNK : 1;
    if (C == 1) {
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)
      for (int64_t o = 0; o < O; o++) idx[o] = rf(x, off + o * R, R, ismax);
      return VL_OK;
    }
    int64_t T = O * C;
    int64_t *part = malloc((size_t)T * sizeof(int64_t));
    if (!part) return vl_error(VL_ENOMEM, "%s: out of memory for %lld partial results", op, (long long)T);
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)
    for (int64_t t = 0; t < T; t++) {
      int64_t o = t / C, s = (t % C) * VL_REDUCE_CHUNK;
      part[t] = s + rf(x, off + o * R + s, VL_MIN(VL_REDUCE_CHUNK, R - s), ismax);
    }
    for (int64_t o = 0; o < O; o++) {
      int64_t best = part[o * C], base = off + o * R;
      for (int64_t k = 1; k < C; k++)
        if (better_at(x, base + part[o * C + k], base + best, ismax, L->dt)) best = part[o * C + k];
      idx[o] = best;
    }
    free(part);
    return VL_OK;
  }
  int64_t cb = vl__reduce_colblock(O, I), nb = (I + cb - 1) / cb;
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t t = 0; t < O * nb; t++) {
    int64_t o = t / nb, i0 = (t % nb) * cb;
    cf(x, off + o * R * I + i0, R, VL_MIN(cb, I - i0), I, ismax, idx + o * I + i0);
  }
  return VL_OK;
}

/* dim == VL_ALL_DIMS: over the flattened tensor. */
static int argext_impl(const char *name, const vl_tensor *t, int dim, bool keepdim, bool ismax, vl_tensor **values,
                       vl_tensor **indices) {
  if (values) *values = NULL;
  if (indices) *indices = NULL;
  if (check_tensor(name, t)) return vl_last_status();
  rplan pl;
  if (dim == VL_ALL_DIMS) {
    if (vl__reduce_plan(name, t, 0, NULL, keepdim, &pl)) return vl_last_status();
  } else {
    if (vl__reduce_plan(name, t, 1, &dim, keepdim, &pl)) return vl_last_status();
  }
  if (pl.R == 0) return empty_error(name, ismax ? "maximum" : "minimum", t);
  vl_tensor *ind = vl_empty(pl.out_ndim, pl.out_shape, VL_INT64);
  vl_tensor *val = values ? vl_empty(pl.out_ndim, pl.out_shape, t->dtype) : NULL;
  if (!ind || (values && !val)) goto fail;
  if (pl.N > 0) {
    rlayout L;
    if (vl__reduce_prepare(name, t, pl.mask, native_work(t->dtype), dim == VL_ALL_DIMS, &L)) goto fail;
    int64_t *idx = vl_data_ptr(ind);
    if (argext_run(name, &L, ismax, idx)) {
      vl_tensor_release(L.src);
      goto fail;
    }
    if (val) {
      char *vp = vl_data_ptr(val);
      size_t es = vl_dtype_size(t->dtype);
      int64_t R = L.R, I = L.I;
      for (int64_t j = 0; j < pl.N; j++) {
        int64_t o = j / I, i = j % I;
        int64_t pos = L.off + (o * R + idx[j]) * I + i;
        if (L.dt == t->dtype)
          memcpy(vp + (size_t)j * es, (const char *)L.x + (size_t)pos * es, es);
        else
          vl_store(vp, j, t->dtype, vl_load(L.x, pos, L.dt));
      }
    }
    vl_tensor_release(L.src);
  }
  if (values) *values = val;
  if (indices)
    *indices = ind;
  else
    vl_tensor_release(ind);
  return VL_OK;
fail:
  vl_tensor_release(ind);
  vl_tensor_release(val);
  return vl_last_status() != VL_OK ? vl_last_status() : VL_ENOMEM;
}

/* values of max/min along a dim: g goes to the selected element (the
   saved indices, a copy: the Lua binding turns its indices 1-based in
   place); iarg[1] = the dim. */
static int argext_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  if (ag_empty_input(n, gi)) return gi[0] ? VL_OK : vl_last_status();
  tmps k = {.n = 0};
  vl_tensor *gk, *z, *r = NULL;
  if (n->in_ndim[0] == 0) return ag_finish(n, (vl_tensor *)g, gi, &k); /* 0-d: the value itself */
  if ((gk = tmp(&k, ag_kept(n, g))) && (z = tmp(&k, vl_zeros(n->in_ndim[0], n->in_shape[0], g->dtype))) &&
      vl_scatter_add_(z, (int)n->iarg[1], AG_X(n), gk) == VL_OK)
    r = z;
  return ag_finish(n, r, gi, &k);
}

static int argext_record(const char *name, const vl_tensor *t, int dim, bool keepdim, bool ismax,
                         vl_tensor **values, vl_tensor **indices) {
  bool rec = vl__ag_begin(t);
  int rc = argext_impl(name, t, dim, keepdim, ismax, values, indices);
  if (rc != VL_OK || !rec || !vl_dtype_is_float((*values)->dtype)) {
    vl__ag_end(rec);
    return rc;
  }
  rplan pl;
  int d = 0;
  vl_tensor *ind = NULL, *saved = NULL;
  if (vl__reduce_plan(name, t, 1, &dim, keepdim, &pl) == VL_OK && vl_wrap_dim(name, dim, t->ndim, &d) == VL_OK &&
      (ind = vl_clone(*indices)) != NULL) {
    int64_t shape[VL_MAX_DIMS];
    for (int k = 0; k < t->ndim; k++) shape[k] = k == d ? 1 : t->shape[k];
    saved = vl_reshape(ind, t->ndim, shape);
  }
  vl_tensor_release(ind);
  vl__ag_end(rec);
  /* the indices take the input's slot: the node reads no input values */
  vl_tensor *v = saved ? vl__reduce_record(name, argext_backward, t, *values, vl__mask_bits(t->ndim, pl.mask), d, 0,
                                           saved, false)
                       : NULL;
  vl_tensor_release(saved);
  if (v == NULL) {
    if (!saved) vl_tensor_release(*values);
    vl_tensor_release(*indices);
    *values = *indices = NULL;
    return vl_last_status();
  }
  return VL_OK;
}

static int check_outs(const char *name, vl_tensor **values, vl_tensor **indices) {
  if (!values || !indices) return vl_error(VL_EARG, "%s: values and indices out-pointers must not be NULL", name);
  return VL_OK;
}

int vl_max_dim(const vl_tensor *t, int dim, bool keepdim, vl_tensor **values, vl_tensor **indices) {
  if (check_outs("max", values, indices)) return vl_last_status();
  if (dim == VL_ALL_DIMS) return vl_error(VL_EARG, "max: a dim is required (use vl_argmax for the flattened tensor)");
  return argext_record("max", t, dim, keepdim, true, values, indices);
}

int vl_min_dim(const vl_tensor *t, int dim, bool keepdim, vl_tensor **values, vl_tensor **indices) {
  if (check_outs("min", values, indices)) return vl_last_status();
  if (dim == VL_ALL_DIMS) return vl_error(VL_EARG, "min: a dim is required (use vl_argmin for the flattened tensor)");
  return argext_record("min", t, dim, keepdim, false, values, indices);
}

vl_tensor *vl_argmax(const vl_tensor *t, int dim, bool keepdim) {
  vl_tensor *ind = NULL;
  bool rec = vl__ag_begin(t); /* integer indices: no gradient */
  argext_impl("argmax", t, dim, keepdim, true, NULL, &ind);
  vl__ag_end(rec);
  return ind;
}

vl_tensor *vl_argmin(const vl_tensor *t, int dim, bool keepdim) {
  vl_tensor *ind = NULL;
  bool rec = vl__ag_begin(t);
  argext_impl("argmin", t, dim, keepdim, false, NULL, &ind);
  vl__ag_end(rec);
  return ind;
}
