/*
** index_internal.h — shared by ops/index.c (joining, indexing) and
** ops/sort.c (sort, topk): the 0-d-as-1-d layout, per-thread ranges,
** raw element copies and the autograd recording helpers. Not installed.
*/
#ifndef VL_INDEX_INTERNAL_H
#define VL_INDEX_INTERNAL_H

#include <omp.h>

#include "autograd.h"
#include "vl_internal.h"

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/* A layout with 0-d promoted to 1-d of size 1 (as PyTorch does for dim
   arguments on scalars). */
typedef struct layout {
  int ndim;
  int64_t shape[VL_MAX_DIMS];
  int64_t stride[VL_MAX_DIMS];
} layout;

static inline void layout_of(const vl_tensor *t, layout *l) {
  if (t->ndim == 0) {
    l->ndim = 1;
    l->shape[0] = 1;
    l->stride[0] = 0;
    return;
  }
  l->ndim = t->ndim;
  for (int d = 0; d < t->ndim; d++) {
    l->shape[d] = t->shape[d];
    l->stride[d] = t->stride[d];
  }
}

static inline int64_t shape_numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  /* a zero dim first: the other dims' product may overflow (vl_shape_nbytes) */
  for (int d = 0; d < ndim; d++)
    if (shape[d] == 0) return 0;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  return n;
}

static inline void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d] > 0 ? shape[d] : 1;
  }
}

/* This thread's share [lo, hi) of n items inside a parallel region. */
static inline void thread_range(int64_t n, int64_t *lo, int64_t *hi) {
  int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
  int64_t q = n / nt, r = n % nt;
  *lo = q * tid + (tid < r ? tid : r);
  *hi = *lo + q + (tid < r ? 1 : 0);
}

static inline void copy_elem(char *restrict dst, const char *restrict src, size_t es) {
  switch (es) {
    case 1: memcpy(dst, src, 1); break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    default: memcpy(dst, src, 8); break;
  }
}

/* ------------------------------------------------------------------ */
/* Autograd recording                                                  */
/* ------------------------------------------------------------------ */

/* Record `name` on out over inputs in[0..n), saving save[0..ns) and
   setting iarg[0..ni). Releases out and returns NULL on failure. */
static inline vl_tensor *ag_record(vl_tensor *out, bool rec, const char *name, vl_backward_fn fn, int n,
                                   const vl_tensor *const *in, int ns, const vl_tensor *const *save, int ni,
                                   const int64_t *iarg) {
  if (out == NULL || !rec || !vl_dtype_is_float(out->dtype)) return out;
  vl_node *node = vl_ag_node(name, fn, n, in);
  bool ok = node != NULL;
  for (int i = 0; ok && i < ns; i++) ok = vl_ag_save(node, save[i]) >= 0;
  for (int i = 0; ok && i < ni; i++) node->iarg[i] = iarg[i];
  if (!ok || vl_ag_attach(out, node) != VL_OK) {
    vl_ag_node_release(node);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

#define RET_GI(n, i, expr)                                             \
  do {                                                                 \
    if ((n)->needs[i] && ((gi[i] = vl_ag_reduce_to((n), (i), (expr))) == NULL)) \
      return vl_last_status();                                         \
  } while (0)

/* A zero tensor of input i's shape (in g's dtype) with g scatter-added
   into it along dim d at `index` (repeated indices accumulate). */
static inline vl_tensor *scatter_add_zeros(const vl_node *n, int i, const vl_tensor *g, int d,
                                          const vl_tensor *index) {
  vl_tensor *z = vl_zeros(n->in_ndim[i], n->in_shape[i], g->dtype);
  if (z && vl_scatter_add_(z, d, index, g) != VL_OK) {
    vl_tensor_release(z);
    return NULL;
  }
  return z;
}

#endif
