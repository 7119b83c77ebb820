/*
** sort.c — ordering: sort and topk (stable, every dtype), with their
** autograd: the values record a node whose backward scatter-adds the
** gradient back to where each value came from; indices take no part.
** Helpers shared with ops/index.c are in ops/index_internal.h.
*/
#include <omp.h>
#include <stdlib.h>

#include "index_internal.h"

/* Runs shorter than this are insertion-sorted inside the merge sort. */
#define VL_SORT_INSERTION_RUN 16

/* ------------------------------------------------------------------ */
/* sort, topk                                                          */
/* ------------------------------------------------------------------ */

/* Every dtype sorts as unsigned 64-bit keys whose order is the wanted
   one: floats by their IEEE bits (sign-flipped), NaN above +inf (PyTorch
   puts NaN last ascending, first descending), -0.0 equal to +0.0;
   integers with the sign bit flipped. Descending inverts the keys, so
   one stable ascending sort of (key, position) pairs serves every case
   and ties keep their index order. */
typedef struct sort_kv {
  uint64_t key;
  int64_t idx;
} sort_kv;

#define VL_SIGN_BIT UINT64_C(0x8000000000000000)

static inline uint64_t float_key(double v) {
  if (v != v) return UINT64_MAX;
  if (v == 0) v = 0.0; /* -0.0 sorts as +0.0 */
  uint64_t b;
  memcpy(&b, &v, sizeof b);
  return (b & VL_SIGN_BIT) ? ~b : (b | VL_SIGN_BIT);
}

static inline uint64_t int_key(int64_t v) { return (uint64_t)v ^ VL_SIGN_BIT; }

/* topk with k at most this (and n >= 4k) selects in one pass instead of sorting. */
#define VL_TOPK_SELECT_MAX 64

/* Stable merge sort of a[0..n) by key; tmp has n slots. `par`: split
   the merges of each pass across threads (one big slice). */
static void sort_pairs(sort_kv *restrict a, sort_kv *restrict tmp, int64_t n, bool par) {
  int64_t nruns = (n + VL_SORT_INSERTION_RUN - 1) / VL_SORT_INSERTION_RUN;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t r = 0; r < nruns; r++) {
    int64_t lo = r * VL_SORT_INSERTION_RUN, hi = VL_MIN(lo + VL_SORT_INSERTION_RUN, n);
    for (int64_t i = lo + 1; i < hi; i++) {
      sort_kv x = a[i];
      int64_t j = i;
      while (j > lo && x.key < a[j - 1].key) {
        a[j] = a[j - 1];
        j--;
      }
      a[j] = x;
    }
  }
  sort_kv *src = a, *dst = tmp;
  for (int64_t w = VL_SORT_INSERTION_RUN; w < n; w *= 2) {
    int64_t npairs = (n + 2 * w - 1) / (2 * w);
#pragma omp parallel for if (par && npairs > 1) schedule(static)
    for (int64_t p = 0; p < npairs; p++) {
      int64_t lo = p * 2 * w, mid = VL_MIN(lo + w, n), hi = VL_MIN(lo + 2 * w, n);
      int64_t i = lo, j = mid, o = lo;
      while (i < mid && j < hi) dst[o++] = src[j].key < src[i].key ? src[j++] : src[i++];
      while (i < mid) dst[o++] = src[i++];
      while (j < hi) dst[o++] = src[j++];
    }
    sort_kv *sw = src;
    src = dst;
    dst = sw;
  }
  if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

/* The k smallest pairs of a[0..n) in order, ties by position, into out. */
static void select_pairs(const sort_kv *restrict a, int64_t n, int64_t k, sort_kv *restrict out) {
  int64_t cnt = 0;
  for (int64_t j = 0; j < n; j++) {
    uint64_t key = a[j].key;
    if (cnt == k && key >= out[k - 1].key) continue; /* later equal keys lose */
    int64_t pos = cnt < k ? cnt : k - 1;
    while (pos > 0 && out[pos - 1].key > key) {
      out[pos] = out[pos - 1];
      pos--;
    }
    out[pos] = a[j];
    if (cnt < k) cnt++;
  }
}

/* Keys of one slice: n elements from offset `to`, stride `ts`. */
static void load_keys(sort_kv *restrict kv, const char *tb, int64_t to, int64_t ts, int64_t n, vl_dtype dt,
                      bool descending) {
  uint64_t flip = descending ? UINT64_MAX : 0;
  switch (dt) {
    case VL_FLOAT32: {
      const float *p = (const float *)tb + to;
      for (int64_t j = 0; j < n; j++) kv[j] = (sort_kv){float_key(p[j * ts]) ^ flip, j};
      break;
    }
    case VL_FLOAT64: {
      const double *p = (const double *)tb + to;
      for (int64_t j = 0; j < n; j++) kv[j] = (sort_kv){float_key(p[j * ts]) ^ flip, j};
      break;
    }
    case VL_FLOAT16:
    case VL_BFLOAT16:
      for (int64_t j = 0; j < n; j++) kv[j] = (sort_kv){float_key(vl_load(tb, to + j * ts, dt)) ^ flip, j};
      break;
    case VL_INT64: {
      const int64_t *p = (const int64_t *)tb + to;
      for (int64_t j = 0; j < n; j++) kv[j] = (sort_kv){int_key(p[j * ts]) ^ flip, j};
      break;
    }
    case VL_INT32: {
      const int32_t *p = (const int32_t *)tb + to;
      for (int64_t j = 0; j < n; j++) kv[j] = (sort_kv){int_key(p[j * ts]) ^ flip, j};
      break;
    }
    default: { /* uint8, bool */
      const uint8_t *p = (const uint8_t *)tb + to;
      bool isbool = dt == VL_BOOL;
      for (int64_t j = 0; j < n; j++) {
        int64_t v = isbool ? p[j * ts] != 0 : p[j * ts];
        kv[j] = (sort_kv){int_key(v) ^ flip, j};
      }
      break;
    }
  }
}

/* Sort each slice along `dim` and keep the first k (k < 0: all). */
static int sort_impl(const char *op, const vl_tensor *t, int dim, bool descending, int64_t k, vl_tensor **values,
                     vl_tensor **indices) {
  *values = NULL;
  *indices = NULL;
  layout T;
  layout_of(t, &T);
  int d;
  if (vl_wrap_dim(op, dim, t->ndim, &d)) return vl_last_status();
  int64_t n = T.shape[d];
  if (k < 0) k = n;
  if (k > n)
    return vl_error(VL_EARG, "%s: k (%lld) is larger than the size of dim %d (%lld)", op, (long long)k, d,
                    (long long)n);
  int64_t oshape[VL_MAX_DIMS];
  memcpy(oshape, T.shape, sizeof oshape);
  oshape[d] = k;
  int ondim = (t->ndim == 0 && k == 1) ? 0 : T.ndim;
  vl_tensor *v = vl_empty(ondim, oshape, t->dtype);
  vl_tensor *ix = v ? vl_empty(ondim, oshape, VL_INT64) : NULL;
  if (ix == NULL) {
    vl_tensor_release(v);
    return vl_last_status();
  }
  int64_t total = shape_numel(T.ndim, T.shape);
  if (total == 0 || k == 0) {
    *values = v;
    *indices = ix;
    return VL_OK;
  }
  int64_t slices = total / n;
  bool select = k < n && k <= VL_TOPK_SELECT_MAX && n >= 4 * k;
  /* per-thread buffers: keys and merge scratch (or the selection) */
  int nt = omp_get_max_threads();
  bool par_slices = slices > 1 && total > VL_PARALLEL_GRAIN;
  bool par_inner = !par_slices && !select && n > VL_PARALLEL_GRAIN && nt > 1;
  if (!par_slices) nt = 1;
  size_t per = (size_t)n * 2;
  if ((size_t)n > SIZE_MAX / 2 / sizeof(sort_kv) / (size_t)nt) {
    vl_tensor_release(v);
    vl_tensor_release(ix);
    return vl_error(VL_ENOMEM, "%s: slice of %lld elements is too large", op, (long long)n);
  }
  sort_kv *buf = malloc(per * (size_t)nt * sizeof *buf);
  if (buf == NULL) {
    vl_tensor_release(v);
    vl_tensor_release(ix);
    return vl_error(VL_ENOMEM, "%s: out of memory for a sort buffer of %lld elements", op, (long long)n);
  }
  /* iterate over every dim except d */
  int rnd = 0;
  int64_t rshape[VL_MAX_DIMS], rts[VL_MAX_DIMS], rvs[VL_MAX_DIMS];
  int64_t vstr[VL_MAX_DIMS];
  contiguous_strides(T.ndim, oshape, vstr);
  for (int q = 0; q < T.ndim; q++)
    if (q != d) {
      rshape[rnd] = T.shape[q];
      rts[rnd] = T.stride[q];
      rvs[rnd] = vstr[q];
      rnd++;
    }
  int64_t tsd = T.stride[d], vsd = vstr[d];
  const int64_t *strides[2] = {rts, rvs};
  int64_t offs[2] = {t->offset, 0};
  const char *tb = vl_base(t);
  char *vb = vl_data_ptr(v);
  int64_t *ib = vl_data_ptr(ix);
  size_t es = vl_dtype_size(t->dtype);
  vl_dtype dt = t->dtype;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t lo, hi;
    thread_range(slices, &lo, &hi);
    sort_kv *keys = buf + per * (size_t)omp_get_thread_num();
    sort_kv *tmp = keys + n;
    if (lo < hi) {
      vl_iter it;
      vl_iter_init(&it, rnd, rshape, 2, strides, offs);
      vl_iter_seek(&it, lo, offs);
      for (int64_t s = lo; s < hi; s++) {
        int64_t to = it.offset[0], vo = it.offset[1];
        load_keys(keys, tb, to, tsd, n, dt, descending);
        const sort_kv *res = keys;
        if (select) {
          select_pairs(keys, n, k, tmp);
          res = tmp;
        } else {
          sort_pairs(keys, tmp, n, par_inner);
        }
        for (int64_t j = 0; j < k; j++) {
          copy_elem(vb + (vo + j * vsd) * (int64_t)es, tb + (to + res[j].idx * tsd) * (int64_t)es, es);
          ib[vo + j * vsd] = res[j].idx;
        }
        vl_iter_next(&it);
      }
    }
  }
  free(buf);
  *values = v;
  *indices = ix;
  return VL_OK;
}

/* ---- sort, topk: the values' gradient goes back to where they came from ---- */

/* saved[0]: a private copy of the indices (callers may rewrite the
   returned ones in place: the Lua binding makes them 1-based). */
static int sort_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  RET_GI(n, 0, scatter_add_zeros(n, 0, g, (int)n->iarg[0], n->saved[0]));
  return VL_OK;
}

static int record_sort(const char *op, int rc, const vl_tensor *t, int dim, vl_tensor **values,
                       vl_tensor **indices) {
  if (rc != VL_OK || !vl_ag_needed(1, &t) || !vl_dtype_is_float((*values)->dtype)) return rc;
  int d = 0;
  vl_wrap_dim(op, dim, t->ndim, &d);
  vl_tensor *ix = vl_clone(*indices);
  vl_tensor *v = ix ? ag_record(*values, true, op, sort_backward, 1, &t, 1, (const vl_tensor *[]){ix}, 1,
                                (int64_t[]){d})
                    : NULL;
  vl_tensor_release(ix);
  if (v == NULL) {
    if (ix == NULL) vl_tensor_release(*values);
    vl_tensor_release(*indices);
    *values = *indices = NULL;
    return vl_last_status();
  }
  return VL_OK;
}

int vl_sort(const vl_tensor *t, int dim, bool descending, vl_tensor **values, vl_tensor **indices) {
  int rc = sort_impl("sort", t, dim, descending, -1, values, indices);
  return record_sort("sort", rc, t, dim, values, indices);
}

/* Results always come sorted (stable: ties keep index order); `sorted`
   is accepted for PyTorch compatibility. */
int vl_topk(const vl_tensor *t, int64_t k, int dim, bool largest, bool sorted, vl_tensor **values,
            vl_tensor **indices) {
  VL_UNUSED(sorted);
  if (k < 0) {
    *values = *indices = NULL;
    return vl_error(VL_EARG, "topk: k must be >= 0 (got %lld)", (long long)k);
  }
  int rc = sort_impl("topk", t, dim, largest, k, values, indices);
  return record_sort("topk", rc, t, dim, values, indices);
}

/* ------------------------------------------------------------------ */
/* flip, roll, repeat, tril, triu                                      */
