/*
** tensor.c — storages, tensors, views and copies (prefix vl_).
**
** A tensor is a view: storage + offset + shape + strides. Views share the
** storage (reference-counted); only contiguous/clone/copy_/reshape-when-
** it-must allocate. Every allocation passes the memory accounting here, so
** an oversized request becomes an error, never an OOM kill.
*/
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/mman.h>

#include <cblas.h>
#include <omp.h>

#include "autograd.h"
#include "vl_internal.h"

/* ------------------------------------------------------------------ */
/* Memory accounting                                                    */
/* ------------------------------------------------------------------ */

/* The largest single storage we agree to allocate. Anything larger is
   surely a mistake (a negative size cast to unsigned, a typo'd shape). */
#define VL_MAX_STORAGE_BYTES ((size_t)1 << 46) /* 64 TiB */

static atomic_size_t memory_in_use;
static atomic_size_t memory_limit; /* 0 = none */
static vl_pressure_hook pressure_hook;
static void *pressure_ctx;

void vl_set_memory_limit(size_t bytes) { atomic_store(&memory_limit, bytes); }
size_t vl_memory_limit(void) { return atomic_load(&memory_limit); }
size_t vl_memory_in_use(void) { return atomic_load(&memory_in_use); }

void vl_set_pressure_hook(vl_pressure_hook hook, void *ctx) {
  pressure_hook = hook;
  pressure_ctx = ctx;
}

void vl_get_pressure_hook(vl_pressure_hook *hook, void **ctx) {
  *hook = pressure_hook;
  *ctx = pressure_ctx;
}

static bool over_limit(size_t nbytes) {
  size_t limit = atomic_load(&memory_limit);
  return limit != 0 && atomic_load(&memory_in_use) + nbytes > limit;
}

static char *size_str(size_t bytes, char *buf, size_t n) {
  const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    u++;
  }
  snprintf(buf, n, u == 0 ? "%.0f %s" : "%.1f %s", v, unit[u]);
  return buf;
}

/* Reserve `nbytes` against the limit; asks the pressure hook (the VM's
   garbage collector) once before giving up. */
static int memory_reserve(size_t nbytes) {
  if (over_limit(nbytes) && pressure_hook) pressure_hook(pressure_ctx, nbytes);
  if (over_limit(nbytes)) {
    char a[32], b[32], c[32];
    return vl_error(VL_ENOMEM, "out of memory: allocating %s would exceed the memory limit of %s (%s in use)",
                    size_str(nbytes, a, sizeof a), size_str(vl_memory_limit(), b, sizeof b),
                    size_str(vl_memory_in_use(), c, sizeof c));
  }
  atomic_fetch_add(&memory_in_use, nbytes);
  return VL_OK;
}

static void memory_unreserve(size_t nbytes) { atomic_fetch_sub(&memory_in_use, nbytes); }

/* ------------------------------------------------------------------ */
/* Storage                                                              */
/* ------------------------------------------------------------------ */

/* Storages at least this big get their own anonymous pages (mmap), so
   freeing them gives the memory back to the OS at once. Through malloc,
   a loop of big short-lived tensors grows the resident size without
   bound, as freed blocks stay trapped under small live ones. */
#define VL_MAPPED_STORAGE_MIN ((size_t)256 * 1024)

/* Freed page blocks kept for reuse: out-of-place ops in a loop ask for
   the same sizes again and again, and fresh pages cost a kernel fault and
   zeroing per 4 KiB. The cache is bounded, so resident memory stays flat.
   A training step frees a whole graph of activations in its backward and
   asks for the same sizes in the next forward: a transformer's graph
   holds hundreds of blocks, so the slots are many and the bound is set
   to hold one such graph (16 slots / 256 MiB spent ~10% of a ViT step
   zeroing fresh pages). */
#define VL_PAGE_CACHE_SLOTS 512
#define VL_PAGE_CACHE_MAX_BYTES ((size_t)1 << 30) /* 1 GiB */
/* Blocks this big ask the kernel for 2 MiB pages (fewer faults, TLB misses). */
#define VL_HUGEPAGE_MIN ((size_t)4 << 20)

static struct {
  pthread_mutex_t lock;
  size_t bytes;
  int count;
  struct { void *data; size_t nbytes; } slot[VL_PAGE_CACHE_SLOTS];
} page_cache = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t page_round(size_t n) { return (n + 4095) & ~(size_t)4095; }

/* *fresh tells whether the pages are new (so already zero). */
static void *storage_pages(size_t nbytes, bool *fresh) {
  size_t len = page_round(nbytes);
  void *p = NULL;
  pthread_mutex_lock(&page_cache.lock);
  for (int i = page_cache.count - 1; i >= 0; i--) {
    if (page_cache.slot[i].nbytes == len) {
      p = page_cache.slot[i].data;
      page_cache.bytes -= len;
      page_cache.slot[i] = page_cache.slot[--page_cache.count];
      break;
    }
  }
  pthread_mutex_unlock(&page_cache.lock);
  *fresh = p == NULL;
  if (p) return p;
  p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  if (len >= VL_HUGEPAGE_MIN) madvise(p, len, MADV_HUGEPAGE);
  return p;
}

static void storage_pages_free(void *data, size_t nbytes) {
  size_t len = page_round(nbytes);
  if (len > VL_PAGE_CACHE_MAX_BYTES / 2) { /* too big to be worth keeping */
    munmap(data, len);
    return;
  }
  pthread_mutex_lock(&page_cache.lock);
  /* make room by dropping the oldest blocks */
  while (page_cache.count == VL_PAGE_CACHE_SLOTS || page_cache.bytes + len > VL_PAGE_CACHE_MAX_BYTES) {
    munmap(page_cache.slot[0].data, page_cache.slot[0].nbytes);
    page_cache.bytes -= page_cache.slot[0].nbytes;
    memmove(&page_cache.slot[0], &page_cache.slot[1], (size_t)(page_cache.count - 1) * sizeof page_cache.slot[0]);
    page_cache.count--;
  }
  page_cache.slot[page_cache.count].data = data;
  page_cache.slot[page_cache.count].nbytes = len;
  page_cache.count++;
  page_cache.bytes += len;
  pthread_mutex_unlock(&page_cache.lock);
}

vl_storage *vl_storage_new(size_t nbytes) {
  if (nbytes > VL_MAX_STORAGE_BYTES) {
    char a[32];
    vl_error(VL_ENOMEM, "out of memory: refusing to allocate %s (the most one tensor may take is 64 TiB)",
             size_str(nbytes, a, sizeof a));
    return NULL;
  }
  if (memory_reserve(nbytes) != VL_OK) return NULL;
  vl_storage *s = malloc(sizeof *s);
  bool mapped = nbytes >= VL_MAPPED_STORAGE_MIN;
  /* aligned_alloc wants a multiple of the alignment; never 0 bytes */
  size_t padded = (nbytes + VL_ALIGNMENT - 1) / VL_ALIGNMENT * VL_ALIGNMENT;
  bool fresh = false;
  void *data = mapped ? storage_pages(nbytes, &fresh) : aligned_alloc(VL_ALIGNMENT, padded ? padded : VL_ALIGNMENT);
  if (s == NULL || data == NULL) {
    free(s);
    if (data && mapped) storage_pages_free(data, nbytes);
    else free(data);
    memory_unreserve(nbytes);
    char a[32];
    vl_error(VL_ENOMEM, "out of memory: the system refused %s", size_str(nbytes, a, sizeof a));
    return NULL;
  }
  s->data = data;
  s->nbytes = nbytes;
  s->refcount = 1;
  s->kind = mapped ? (fresh ? VL_STORAGE_MAPPED : VL_STORAGE_MAPPED_REUSED) : VL_STORAGE_HEAP;
  s->release = NULL;
  s->release_ctx = NULL;
  s->gc_reported = false;
  return s;
}

vl_storage *vl_storage_wrap(void *data, size_t nbytes, vl_release_fn release, void *ctx) {
  vl_storage *s = malloc(sizeof *s);
  if (s == NULL) {
    vl_error(VL_ENOMEM, "out of memory: storage header");
    return NULL;
  }
  s->data = data;
  s->nbytes = nbytes;
  s->refcount = 1;
  s->kind = VL_STORAGE_EXTERNAL;
  s->release = release;
  s->release_ctx = ctx;
  s->gc_reported = false;
  return s;
}

void vl_storage_retain(vl_storage *s) {
  if (s) __atomic_add_fetch(&s->refcount, 1, __ATOMIC_RELAXED);
}

void vl_storage_release(vl_storage *s) {
  if (s == NULL || __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  switch (s->kind) {
    case VL_STORAGE_HEAP:
      free(s->data);
      memory_unreserve(s->nbytes);
      break;
    case VL_STORAGE_MAPPED:
    case VL_STORAGE_MAPPED_REUSED:
      storage_pages_free(s->data, s->nbytes);
      memory_unreserve(s->nbytes);
      break;
    case VL_STORAGE_EXTERNAL:
      if (s->release) s->release(s->release_ctx, s->data, s->nbytes);
      break;
  }
  free(s);
}

/* ------------------------------------------------------------------ */
/* Shapes                                                               */
/* ------------------------------------------------------------------ */

const char *vl_shape_str(int ndim, const int64_t *shape, char *buf) {
  size_t n = 0;
  buf[n++] = '[';
  for (int d = 0; d < ndim && n < VL_SHAPE_STR - 24; d++)
    n += (size_t)snprintf(buf + n, VL_SHAPE_STR - n, d ? ",%lld" : "%lld", (long long)shape[d]);
  buf[n++] = ']';
  buf[n] = '\0';
  return buf;
}

int vl_shape_nbytes(const char *op, int ndim, const int64_t *shape, vl_dtype dt, size_t *nbytes) {
  char s[VL_SHAPE_STR];
  if (ndim < 0 || ndim > VL_MAX_DIMS)
    return vl_error(VL_ESHAPE, "%s: %d dims given, at most %d supported", op, ndim, VL_MAX_DIMS);
  if ((unsigned)dt >= VL_DTYPE_COUNT) return vl_error(VL_EDTYPE, "%s: invalid dtype %d", op, (int)dt);
  /* The product of the non-zero sizes must fit in int64 even when a zero
     dim makes the tensor empty: kernels multiply outer and inner sizes. */
  uint64_t nonzero = 1;
  bool overflow = false, empty = false;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0)
      return vl_error(VL_EARG, "%s: negative size %lld in shape %s", op, (long long)shape[d],
                      vl_shape_str(ndim, shape, s));
    if (shape[d] == 0) empty = true;
    else if (nonzero > (uint64_t)INT64_MAX / (uint64_t)shape[d]) overflow = true;
    else nonzero *= (uint64_t)shape[d];
  }
  uint64_t count = empty ? 0 : nonzero;
  size_t es = vl_dtype_size(dt);
  if (overflow || count > (uint64_t)INT64_MAX / es)
    return vl_error(VL_ENOMEM, "%s: shape %s of %s has a byte count that overflows", op,
                    vl_shape_str(ndim, shape, s), vl_dtype_name(dt));
  *nbytes = (size_t)(count * es);
  return VL_OK;
}

int vl_wrap_dim(const char *op, int dim, int ndim, int *out) {
  int n = ndim > 0 ? ndim : 1; /* a 0-d tensor accepts dim 0 / -1, as PyTorch */
  if (dim < -n || dim >= n)
    return vl_error(VL_EINDEX, "%s: dim %d out of range for a %d-d tensor (expected %d..%d)", op, dim,
                    ndim, -n, n - 1);
  *out = dim < 0 ? dim + n : dim;
  return VL_OK;
}

int vl_broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                        int64_t *out) {
  int n = na > nb ? na : nb;
  for (int i = 0; i < n; i++) {
    int64_t a = i < n - na ? 1 : sa[i - (n - na)];
    int64_t b = i < n - nb ? 1 : sb[i - (n - nb)];
    if (a != b && a != 1 && b != 1) {
      char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
      return vl_error(VL_ESHAPE, "%s: shapes %s and %s cannot be broadcast (%lld vs %lld at dim %d)", op,
                      vl_shape_str(na, sa, s1), vl_shape_str(nb, sb, s2), (long long)a, (long long)b,
                      i - n);
    }
    out[i] = a == 1 ? b : a;
  }
  *nout = n;
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Tensors                                                              */
/* ------------------------------------------------------------------ */

/* Row-major strides. A shape with a zero dim may have other dims whose
   product overflows (the tensor holds nothing): strides then saturate
   instead of overflowing, since no element is ever addressed. */
static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    stride[d] = s;
    int64_t n = shape[d] > 0 ? shape[d] : 1;
    s = s > INT64_MAX / n ? INT64_MAX : s * n;
  }
}

/* A tensor header over `s` (retained). No bounds check: internal use. */
static vl_tensor *tensor_header(vl_storage *s, int64_t offset, int ndim, const int64_t *shape,
                                const int64_t *stride, vl_dtype dt) {
  vl_tensor *t = calloc(1, sizeof *t);
  if (t == NULL) {
    vl_error(VL_ENOMEM, "out of memory: tensor header");
    return NULL;
  }
  vl_storage_retain(s);
  t->storage = s;
  t->offset = offset;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    t->shape[d] = shape[d];
    t->stride[d] = stride[d];
  }
  t->dtype = dt;
  t->refcount = 1;
  return t;
}

/* How a view was made, so that its backward can undo it. */
typedef struct view_grad {
  const char *name;
  vl_backward_fn backward;
  int64_t iarg[VL_NODE_MAX_ARGS];
} view_grad;

static vl_tensor *view_of(const vl_tensor *t, int64_t offset, int ndim, const int64_t *shape,
                          const int64_t *stride, const view_grad *vg) {
  vl_tensor *v = tensor_header(t->storage, offset, ndim, shape, stride, t->dtype);
  if (v == NULL || vg == NULL || !vl_ag_needed(1, &t)) return v;
  vl_node *n = vl_ag_node(vg->name, vg->backward, 1, &t);
  if (n) memcpy(n->iarg, vg->iarg, sizeof n->iarg);
  if (n == NULL || vl_ag_attach(v, n) != VL_OK) {
    vl_ag_node_release(n);
    vl_tensor_release(v);
    return NULL;
  }
  return v;
}

/* Backward of the views. Each returns the input's gradient in gi[0]. */
static int reshape_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  gi[0] = vl_ag_reduce_to(n, 0, vl_reshape(g, n->in_ndim[0], n->in_shape[0]));
  return gi[0] ? VL_OK : vl_last_status();
}

static int transpose_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  gi[0] = vl_transpose(g, (int)n->iarg[0], (int)n->iarg[1]);
  return gi[0] ? VL_OK : vl_last_status();
}

static int permute_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int inverse[VL_MAX_DIMS];
  for (int d = 0; d < g->ndim; d++) inverse[n->iarg[d]] = d;
  gi[0] = vl_permute(g, inverse);
  return gi[0] ? VL_OK : vl_last_status();
}

static int expand_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  vl_tensor_retain((vl_tensor *)g);
  gi[0] = vl_ag_reduce_to(n, 0, (vl_tensor *)g);
  return gi[0] ? VL_OK : vl_last_status();
}

/* narrow, select and slice: the gradient lands in the same view of zeros. */
static int subview_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  vl_tensor *z = vl_zeros(n->in_ndim[0], n->in_shape[0], n->in_dtype[0]);
  if (z == NULL) return vl_last_status();
  int dim = (int)n->iarg[0];
  vl_tensor *v = n->iarg[3] == 0 ? vl_select(z, dim, n->iarg[1]) : vl_slice(z, dim, n->iarg[1], n->iarg[2], n->iarg[3]);
  int rc = v ? vl_copy_(v, g) : vl_last_status();
  vl_tensor_release(v);
  if (rc != VL_OK) {
    vl_tensor_release(z);
    return rc;
  }
  gi[0] = z;
  return VL_OK;
}

/* unfold: windows may overlap, so each window's gradient is added. */
static int unfold_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  int dim = (int)n->iarg[0];
  int64_t size = n->iarg[1], step = n->iarg[2];
  int in_nd = n->in_ndim[0] ? n->in_ndim[0] : 1;
  int64_t in_shape[VL_MAX_DIMS] = {1};
  memcpy(in_shape, n->in_shape[0], sizeof in_shape);
  if (n->in_ndim[0] == 0) in_shape[0] = 1;
  vl_tensor *z = vl_zeros(in_nd, in_shape, n->in_dtype[0]);
  if (z == NULL) return vl_last_status();
  int rc = VL_OK;
  /* g: input dims with dim = window count, plus a last dim of `size`;
     move the window dim into place so each window lines up with a narrow */
  int perm[VL_MAX_DIMS];
  for (int d = 0; d < in_nd; d++) perm[d] = d == dim ? in_nd : d;
  perm[in_nd] = dim;
  for (int64_t w = 0; w < g->shape[dim] && rc == VL_OK; w++) {
    vl_tensor *gw = vl_narrow(g, dim, w, 1);            /* [..., 1, ..., size] */
    vl_tensor *gp = gw ? vl_permute(gw, perm) : NULL;   /* [..., size, ..., 1] */
    vl_tensor *gs = gp ? vl_squeeze(gp, in_nd) : NULL;  /* [..., size, ...] */
    vl_tensor *zw = vl_narrow(z, dim, w * step, size);
    rc = gs && zw ? vl_binary_(VL_ADD, zw, gs) : vl_last_status();
    vl_tensor_release(gw);
    vl_tensor_release(gp);
    vl_tensor_release(gs);
    vl_tensor_release(zw);
  }
  if (rc == VL_OK && n->in_ndim[0] == 0) {
    vl_tensor *r = vl_reshape(z, 0, NULL);
    vl_tensor_release(z);
    z = r;
    rc = z ? VL_OK : vl_last_status();
  }
  if (rc != VL_OK) {
    vl_tensor_release(z);
    return rc;
  }
  gi[0] = z;
  return VL_OK;
}

static const view_grad reshape_grad = {"view", reshape_backward, {0}};

vl_tensor *vl_empty(int ndim, const int64_t *shape, vl_dtype dt) {
  size_t nbytes;
  if (vl_shape_nbytes("empty", ndim, shape, dt, &nbytes) != VL_OK) return NULL;
  vl_storage *s = vl_storage_new(nbytes);
  if (s == NULL) return NULL;
  int64_t stride[VL_MAX_DIMS];
  contiguous_strides(ndim, shape, stride);
  vl_tensor *t = tensor_header(s, 0, ndim, shape, stride, dt);
  vl_storage_release(s);
  return t;
}

vl_tensor *vl_zeros(int ndim, const int64_t *shape, vl_dtype dt) {
  vl_tensor *t = vl_empty(ndim, shape, dt);
  /* fresh anonymous pages are zero already */
  if (t && t->storage->kind != VL_STORAGE_MAPPED) memset(t->storage->data, 0, t->storage->nbytes);
  return t;
}

vl_tensor *vl_full(int ndim, const int64_t *shape, double value, vl_dtype dt) {
  vl_tensor *t = vl_empty(ndim, shape, dt);
  if (t && vl_fill_(t, value) != VL_OK) {
    vl_tensor_release(t);
    return NULL;
  }
  return t;
}

vl_tensor *vl_ones(int ndim, const int64_t *shape, vl_dtype dt) { return vl_full(ndim, shape, 1, dt); }

vl_tensor *vl_scalar(double value, vl_dtype dt) { return vl_full(0, NULL, value, dt); }

vl_tensor *vl_empty_like(const vl_tensor *t) { return vl_empty(t->ndim, t->shape, t->dtype); }

/* Sizes of arange/linspace beyond this are refused as mistakes. */
#define VL_MAX_RANGE_LENGTH ((double)((int64_t)1 << 50))

vl_tensor *vl_arange(double start, double end, double step, vl_dtype dt) {
  if (step == 0 || step != step || start != start || end != end || !isfinite(start) || !isfinite(end))
    return vl_error(VL_EARG, "arange: start %g, end %g, step %g: need finite bounds and a non-zero step",
                    start, end, step),
           NULL;
  double n = ceil((end - start) / step);
  if (n < 0) n = 0;
  if (n > VL_MAX_RANGE_LENGTH)
    return vl_error(VL_ENOMEM, "arange: %g elements is too many", n), NULL;
  int64_t len = (int64_t)n;
  vl_tensor *t = vl_empty(1, &len, dt);
  if (t == NULL) return NULL;
  void *p = vl_data_ptr(t);
  for (int64_t i = 0; i < len; i++) vl_store(p, i, dt, start + (double)i * step);
  return t;
}

vl_tensor *vl_linspace(double start, double end, int64_t steps, vl_dtype dt) {
  if (steps < 0) return vl_error(VL_EARG, "linspace: steps must be >= 0, got %lld", (long long)steps), NULL;
  vl_tensor *t = vl_empty(1, &steps, dt);
  if (t == NULL) return NULL;
  void *p = vl_data_ptr(t);
  double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
  /* the second half counts back from `end` so both ends are exact (as PyTorch) */
  for (int64_t i = 0; i < steps; i++)
    vl_store(p, i, dt, i < steps / 2 ? start + step * (double)i : end - step * (double)(steps - 1 - i));
  return t;
}

vl_tensor *vl_eye(int64_t n, int64_t m, vl_dtype dt) {
  if (m < 0) m = n;
  int64_t shape[2] = {n, m};
  vl_tensor *t = vl_zeros(2, shape, dt);
  if (t == NULL) return NULL;
  void *p = vl_data_ptr(t);
  for (int64_t i = 0; i < n && i < m; i++) vl_store(p, i * m + i, dt, 1);
  return t;
}

/* Lowest and highest element offsets a layout reaches (empty: lo > hi). */
static void reach(int ndim, const int64_t *shape, const int64_t *stride, int64_t offset, int64_t *lo,
                  int64_t *hi) {
  *lo = *hi = offset;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == 0) {
      *lo = 1;
      *hi = 0;
      return;
    }
    int64_t span = (shape[d] - 1) * stride[d];
    if (span < 0) *lo += span;
    else *hi += span;
  }
}

vl_tensor *vl_tensor_new_view(vl_storage *s, int64_t offset, int ndim, const int64_t *shape,
                              const int64_t *stride, vl_dtype dt) {
  size_t nbytes;
  if (vl_shape_nbytes("view", ndim, shape, dt, &nbytes) != VL_OK) return NULL;
  int64_t lo, hi;
  reach(ndim, shape, stride, offset, &lo, &hi);
  int64_t nelem = (int64_t)(s->nbytes / vl_dtype_size(dt));
  if (lo <= hi && (lo < 0 || hi >= nelem))
    return vl_error(VL_EINDEX, "view: elements %lld..%lld lie outside a storage of %lld elements",
                    (long long)lo, (long long)hi, (long long)nelem),
           NULL;
  return tensor_header(s, offset, ndim, shape, stride, dt);
}

void vl_tensor_retain(vl_tensor *t) {
  if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
}

void vl_tensor_release(vl_tensor *t) {
  if (t == NULL || __atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (t->grad_meta) vl_grad_meta_free(t->grad_meta);
  vl_storage_release(t->storage);
  free(t);
}

int64_t vl_numel(const vl_tensor *t) {
  int64_t n = 1;
  /* a zero dim first: the other dims' product may overflow (vl_shape_nbytes) */
  for (int d = 0; d < t->ndim; d++)
    if (t->shape[d] == 0) return 0;
  for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
  return n;
}

bool vl_is_contiguous(const vl_tensor *t) {
  int64_t expected = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] == 0) return true;
    if (t->shape[d] != 1 && t->stride[d] != expected) return false;
    expected *= t->shape[d];
  }
  return true;
}

bool vl_same_shape(const vl_tensor *a, const vl_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

bool vl_shares_storage(const vl_tensor *a, const vl_tensor *b) { return a->storage == b->storage; }

void *vl_data_ptr(const vl_tensor *t) { return vl_base(t) + t->offset * (int64_t)vl_dtype_size(t->dtype); }

/* ------------------------------------------------------------------ */
/* Element access                                                       */
/* ------------------------------------------------------------------ */

static int element_offset(const char *op, const vl_tensor *t, const int64_t *index, int64_t *off) {
  int64_t o = t->offset;
  for (int d = 0; d < t->ndim; d++) {
    if (index[d] < 0 || index[d] >= t->shape[d])
      return vl_error(VL_EINDEX, "%s: index %lld out of range for dim %d of size %lld", op,
                      (long long)index[d], d, (long long)t->shape[d]);
    o += index[d] * t->stride[d];
  }
  *off = o;
  return VL_OK;
}

int vl_get(const vl_tensor *t, const int64_t *index, double *out) {
  int64_t o;
  if (element_offset("get", t, index, &o) != VL_OK) return VL_EINDEX;
  *out = vl_load(vl_base(t), o, t->dtype);
  return VL_OK;
}

int vl_set(vl_tensor *t, const int64_t *index, double value) {
  int64_t o;
  if (element_offset("set", t, index, &o) != VL_OK) return VL_EINDEX;
  vl_store(vl_base(t), o, t->dtype, value);
  return VL_OK;
}

int vl_get_int(const vl_tensor *t, const int64_t *index, int64_t *out) {
  int64_t o;
  if (element_offset("get", t, index, &o) != VL_OK) return VL_EINDEX;
  *out = t->dtype == VL_INT64 ? ((const int64_t *)vl_base(t))[o] : vl_double_to_i64(vl_load(vl_base(t), o, t->dtype));
  return VL_OK;
}

int vl_set_int(vl_tensor *t, const int64_t *index, int64_t value) {
  int64_t o;
  if (element_offset("set", t, index, &o) != VL_OK) return VL_EINDEX;
  if (t->dtype == VL_INT64) ((int64_t *)vl_base(t))[o] = value;
  else vl_store(vl_base(t), o, t->dtype, (double)value);
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Views                                                                */
/* ------------------------------------------------------------------ */

/* Resolve one -1 in `shape` against numel; checks the element count. */
static int infer_shape(const char *op, const vl_tensor *t, int ndim, const int64_t *shape, int64_t *out) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (ndim < 0 || ndim > VL_MAX_DIMS)
    return vl_error(VL_ESHAPE, "%s: %d dims given, at most %d supported", op, ndim, VL_MAX_DIMS);
  int infer = -1;
  int64_t known = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] == -1) {
      if (infer >= 0) return vl_error(VL_ESHAPE, "%s: only one dimension can be -1 in shape %s", op, vl_shape_str(ndim, shape, s1));
      infer = d;
    } else if (shape[d] < 0) {
      return vl_error(VL_EARG, "%s: negative size %lld in shape %s", op, (long long)shape[d], vl_shape_str(ndim, shape, s1));
    } else {
      if (shape[d] != 0 && known > INT64_MAX / shape[d])
        return vl_error(VL_ESHAPE, "%s: shape %s is too large", op, vl_shape_str(ndim, shape, s1));
      known *= shape[d];
    }
    out[d] = shape[d];
  }
  int64_t n = vl_numel(t);
  if (infer >= 0) {
    if (known == 0 || n % known != 0)
      return vl_error(VL_ESHAPE, "%s: shape %s is invalid for a tensor of %lld elements (shape %s)", op,
                      vl_shape_str(ndim, shape, s1), (long long)n, vl_shape_str(t->ndim, t->shape, s2));
    out[infer] = n / known;
  } else if (known != n) {
    return vl_error(VL_ESHAPE, "%s: shape %s is invalid for a tensor of %lld elements (shape %s)", op,
                    vl_shape_str(ndim, shape, s1), (long long)n, vl_shape_str(t->ndim, t->shape, s2));
  }
  return VL_OK;
}

/* Strides for viewing t with `shape` without a copy, as PyTorch's
   computeStride: walk the old dims in chunks that are contiguous with
   each other and map each chunk onto new dims. false if impossible. */
static bool view_strides(const vl_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
  if (vl_numel(t) == 0 || t->ndim == 0) {
    contiguous_strides(ndim, shape, stride);
    return true;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = t->stride[t->ndim - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int td = t->ndim - 1; td >= 0; td--) {
    tensor_numel *= t->shape[td];
    /* end of a chunk: first dim, or the next dim is not contiguous with this one */
    if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        stride[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (td > 0) {
        chunk_base_stride = t->stride[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

vl_tensor *vl_view(const vl_tensor *t, int ndim, const int64_t *shape) {
  int64_t s[VL_MAX_DIMS], st[VL_MAX_DIMS];
  if (infer_shape("view", t, ndim, shape, s) != VL_OK) return NULL;
  if (!view_strides(t, ndim, s, st)) {
    char a[VL_SHAPE_STR], b[VL_SHAPE_STR];
    vl_error(VL_ESHAPE,
             "view: shape %s is not compatible with the strides of a tensor of shape %s (it would need a "
             "copy; use reshape or contiguous)",
             vl_shape_str(ndim, s, a), vl_shape_str(t->ndim, t->shape, b));
    return NULL;
  }
  return view_of(t, t->offset, ndim, s, st, &reshape_grad);
}

vl_tensor *vl_reshape(const vl_tensor *t, int ndim, const int64_t *shape) {
  int64_t s[VL_MAX_DIMS], st[VL_MAX_DIMS];
  if (infer_shape("reshape", t, ndim, shape, s) != VL_OK) return NULL;
  if (view_strides(t, ndim, s, st)) return view_of(t, t->offset, ndim, s, st, &reshape_grad);
  vl_tensor *c = vl_clone(t);
  if (c == NULL) return NULL;
  vl_tensor *v = vl_view(c, ndim, s);
  vl_tensor_release(c);
  return v;
}

vl_tensor *vl_transpose(const vl_tensor *t, int d0, int d1) {
  if (vl_wrap_dim("transpose", d0, t->ndim, &d0) || vl_wrap_dim("transpose", d1, t->ndim, &d1)) return NULL;
  view_grad vg = {"transpose", transpose_backward, {d0, d1}};
  if (t->ndim == 0) return view_of(t, t->offset, 0, NULL, NULL, &reshape_grad);
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(stride, t->stride, sizeof stride);
  shape[d0] = t->shape[d1];
  shape[d1] = t->shape[d0];
  stride[d0] = t->stride[d1];
  stride[d1] = t->stride[d0];
  return view_of(t, t->offset, t->ndim, shape, stride, &vg);
}

vl_tensor *vl_permute(const vl_tensor *t, const int *dims) {
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  view_grad vg = {"permute", permute_backward, {0}};
  bool seen[VL_MAX_DIMS] = {false};
  for (int d = 0; d < t->ndim; d++) {
    int k;
    if (vl_wrap_dim("permute", dims[d], t->ndim, &k)) return NULL;
    if (seen[k]) return vl_error(VL_EARG, "permute: dim %d repeated", dims[d]), NULL;
    seen[k] = true;
    shape[d] = t->shape[k];
    stride[d] = t->stride[k];
    vg.iarg[d] = k;
  }
  return view_of(t, t->offset, t->ndim, shape, stride, &vg);
}

vl_tensor *vl_narrow(const vl_tensor *t, int dim, int64_t start, int64_t length) {
  if (t->ndim == 0) return vl_error(VL_ESHAPE, "narrow: cannot narrow a 0-d tensor"), NULL;
  if (vl_wrap_dim("narrow", dim, t->ndim, &dim)) return NULL;
  int64_t n = t->shape[dim];
  if (start < 0) start += n;
  if (start < 0 || length < 0 || start > n || length > n - start)
    return vl_error(VL_EINDEX, "narrow: start %lld and length %lld out of range for dim %d of size %lld",
                    (long long)start, (long long)length, dim, (long long)n),
           NULL;
  int64_t shape[VL_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[dim] = length;
  view_grad vg = {"narrow", subview_backward, {dim, start, start + length, 1}};
  return view_of(t, t->offset + start * t->stride[dim], t->ndim, shape, t->stride, &vg);
}

vl_tensor *vl_select(const vl_tensor *t, int dim, int64_t index) {
  if (t->ndim == 0) return vl_error(VL_ESHAPE, "select: cannot index a 0-d tensor"), NULL;
  if (vl_wrap_dim("select", dim, t->ndim, &dim)) return NULL;
  int64_t n = t->shape[dim];
  if (index < -n || index >= n)
    return vl_error(VL_EINDEX, "select: index %lld out of range for dim %d of size %lld", (long long)index,
                    dim, (long long)n),
           NULL;
  if (index < 0) index += n;
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  int k = 0;
  for (int d = 0; d < t->ndim; d++) {
    if (d == dim) continue;
    shape[k] = t->shape[d];
    stride[k++] = t->stride[d];
  }
  view_grad vg = {"select", subview_backward, {dim, index, 0, 0}};
  return view_of(t, t->offset + index * t->stride[dim], t->ndim - 1, shape, stride, &vg);
}

vl_tensor *vl_slice(const vl_tensor *t, int dim, int64_t start, int64_t end, int64_t step) {
  if (t->ndim == 0) return vl_error(VL_ESHAPE, "slice: cannot slice a 0-d tensor"), NULL;
  if (vl_wrap_dim("slice", dim, t->ndim, &dim)) return NULL;
  if (step <= 0) return vl_error(VL_EARG, "slice: step must be positive, got %lld", (long long)step), NULL;
  int64_t n = t->shape[dim];
  /* clamp like Python slices */
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = VL_MIN(VL_MAX(start, 0), n);
  end = VL_MIN(VL_MAX(end, start), n);
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(stride, t->stride, sizeof stride);
  shape[dim] = (end - start + step - 1) / step;
  stride[dim] = t->stride[dim] * step;
  view_grad vg = {"slice", subview_backward, {dim, start, end, step}};
  return view_of(t, t->offset + start * t->stride[dim], t->ndim, shape, stride, &vg);
}

vl_tensor *vl_expand(const vl_tensor *t, int ndim, const int64_t *shape) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (ndim < t->ndim || ndim > VL_MAX_DIMS)
    return vl_error(VL_ESHAPE, "expand: cannot expand shape %s to %s (%d dims, need %d..%d)",
                    vl_shape_str(t->ndim, t->shape, s1), vl_shape_str(ndim, shape, s2), ndim, t->ndim,
                    VL_MAX_DIMS),
           NULL;
  int64_t out[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  int lead = ndim - t->ndim;
  for (int d = 0; d < ndim; d++) {
    int64_t want = shape[d];
    if (d < lead) {
      if (want < 0)
        return vl_error(VL_ESHAPE, "expand: size %lld not allowed for new leading dim %d in %s",
                        (long long)want, d, vl_shape_str(ndim, shape, s2)),
               NULL;
      out[d] = want;
      stride[d] = 0;
      continue;
    }
    int64_t have = t->shape[d - lead];
    if (want == -1) want = have;
    if (want == have) {
      out[d] = have;
      stride[d] = t->stride[d - lead];
    } else if (have == 1 && want >= 0) {
      out[d] = want;
      stride[d] = 0;
    } else {
      return vl_error(VL_ESHAPE, "expand: cannot expand shape %s to %s (size %lld at dim %d must be 1 or %lld)",
                      vl_shape_str(t->ndim, t->shape, s1), vl_shape_str(ndim, shape, s2), (long long)have,
                      d - lead, (long long)want),
             NULL;
    }
  }
  size_t count; /* element counts must fit in int64, even with a zero dim */
  if (vl_shape_nbytes("expand", ndim, out, VL_UINT8, &count) != VL_OK) return NULL;
  static const view_grad vg = {"expand", expand_backward, {0}};
  return view_of(t, t->offset, ndim, out, stride, &vg);
}

vl_tensor *vl_unfold(const vl_tensor *t, int dim, int64_t size, int64_t step) {
  if (t->ndim >= VL_MAX_DIMS) return vl_error(VL_ESHAPE, "unfold: a %d-d tensor cannot gain a dim", t->ndim), NULL;
  int d0;
  if (vl_wrap_dim("unfold", dim, t->ndim, &d0)) return NULL;
  int64_t n = t->ndim ? t->shape[d0] : 1;
  int64_t st = t->ndim ? t->stride[d0] : 1;
  if (size < 0 || size > n || step <= 0)
    return vl_error(VL_EARG, "unfold: size %lld and step %lld invalid for dim %d of size %lld (need 0 <= size <= %lld, step > 0)",
                    (long long)size, (long long)step, d0, (long long)n, (long long)n),
           NULL;
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  memcpy(stride, t->stride, sizeof stride);
  int nd = t->ndim ? t->ndim : 1;
  if (t->ndim == 0) shape[0] = 1, stride[0] = 1;
  shape[d0] = (n - size) / step + 1;
  stride[d0] = st * step;
  shape[nd] = size;
  stride[nd] = st;
  view_grad vg = {"unfold", unfold_backward, {d0, size, step}};
  return view_of(t, t->offset, nd + 1, shape, stride, &vg);
}

vl_tensor *vl_squeeze(const vl_tensor *t, int dim) {
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  int k = 0;
  if (dim != VL_ALL_DIMS && vl_wrap_dim("squeeze", dim, t->ndim, &dim)) return NULL;
  for (int d = 0; d < t->ndim; d++) {
    bool drop = t->shape[d] == 1 && (dim == VL_ALL_DIMS || dim == d);
    if (drop) continue;
    shape[k] = t->shape[d];
    stride[k++] = t->stride[d];
  }
  return view_of(t, t->offset, k, shape, stride, &reshape_grad);
}

vl_tensor *vl_unsqueeze(const vl_tensor *t, int dim) {
  if (t->ndim >= VL_MAX_DIMS)
    return vl_error(VL_ESHAPE, "unsqueeze: a %d-d tensor cannot gain a dim (max %d)", t->ndim, VL_MAX_DIMS), NULL;
  if (vl_wrap_dim("unsqueeze", dim, t->ndim + 1, &dim)) return NULL;
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  int k = 0;
  for (int d = 0; d <= t->ndim; d++) {
    if (d == dim) {
      shape[k] = 1;
      stride[k++] = d < t->ndim ? t->stride[d] * t->shape[d] : 1;
    }
    if (d < t->ndim) {
      shape[k] = t->shape[d];
      stride[k++] = t->stride[d];
    }
  }
  return view_of(t, t->offset, t->ndim + 1, shape, stride, &reshape_grad);
}

vl_tensor *vl_flatten(const vl_tensor *t, int start_dim, int end_dim) {
  if (t->ndim == 0) {
    int64_t one = 1;
    return vl_reshape(t, 1, &one);
  }
  if (vl_wrap_dim("flatten", start_dim, t->ndim, &start_dim) || vl_wrap_dim("flatten", end_dim, t->ndim, &end_dim))
    return NULL;
  if (start_dim > end_dim)
    return vl_error(VL_EARG, "flatten: start dim %d comes after end dim %d", start_dim, end_dim), NULL;
  int64_t shape[VL_MAX_DIMS];
  int k = 0;
  for (int d = 0; d < t->ndim; d++) {
    if (d > start_dim && d <= end_dim) shape[k - 1] *= t->shape[d];
    else shape[k++] = t->shape[d];
  }
  return vl_reshape(t, k, shape);
}

vl_tensor *vl_as_strided(const vl_tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                         int64_t offset) {
  return vl_tensor_new_view(t->storage, offset, ndim, shape, stride, t->dtype);
}

/* ------------------------------------------------------------------ */
/* Copies                                                               */
/* ------------------------------------------------------------------ */

/* Same-dtype strided copy of `n`-byte elements: exact for every dtype. */
#define COPY_ROWS(T)                                                              \
  do {                                                                            \
    T *restrict dp = (T *)vl_base(dst);                                           \
    const T *restrict sp = (const T *)vl_base(src);                               \
    _Pragma("omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)")   \
    for (int64_t r = 0; r < rows; r++) {                                          \
      int64_t od = dst->offset, os = src->offset, rem = r;                        \
      for (int d = nd - 2; d >= 0; d--) {                                         \
        int64_t i = rem % shape[d];                                               \
        rem /= shape[d];                                                          \
        od += i * dst->stride[d];                                                 \
        os += i * sstride[d];                                                     \
      }                                                                           \
      if (dinner == 1 && sinner == 1)                                             \
        memcpy(dp + od, sp + os, (size_t)inner * sizeof(T));                      \
      else                                                                        \
        for (int64_t j = 0; j < inner; j++) dp[od + j * dinner] = sp[os + j * sinner]; \
    }                                                                             \
  } while (0)

static void copy_same_dtype(vl_tensor *dst, const vl_tensor *src, const int64_t *sstride) {
  int nd = dst->ndim;
  const int64_t *shape = dst->shape;
  int64_t total = vl_numel(dst);
  int64_t inner = nd ? shape[nd - 1] : 1;
  int64_t rows = inner ? total / inner : 0;
  int64_t dinner = nd ? dst->stride[nd - 1] : 1, sinner = nd ? sstride[nd - 1] : 1;
  switch (vl_dtype_size(dst->dtype)) {
    case 1: COPY_ROWS(uint8_t); break;
    case 2: COPY_ROWS(uint16_t); break;
    case 4: COPY_ROWS(uint32_t); break;
    default: COPY_ROWS(uint64_t); break;
  }
}

/* Converting copy through double (int64 beyond 2^53 loses bits, as any
   conversion to float would). float32 -> float64 and back take a typed path. */
static void copy_convert(vl_tensor *dst, const vl_tensor *src, const int64_t *sstride) {
  int nd = dst->ndim;
  const int64_t *shape = dst->shape;
  int64_t total = vl_numel(dst);
  int64_t inner = nd ? shape[nd - 1] : 1;
  int64_t rows = inner ? total / inner : 0;
  int64_t dinner = nd ? dst->stride[nd - 1] : 1, sinner = nd ? sstride[nd - 1] : 1;
  char *db = vl_base(dst);
  const char *sb = vl_base(src);
  vl_dtype dd = dst->dtype, sd = src->dtype;
#pragma omp parallel for if (total > VL_PARALLEL_GRAIN) schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    int64_t od = dst->offset, os = src->offset, rem = r;
    for (int d = nd - 2; d >= 0; d--) {
      int64_t i = rem % shape[d];
      rem /= shape[d];
      od += i * dst->stride[d];
      os += i * sstride[d];
    }
    if (dd == VL_FLOAT32 && sd == VL_FLOAT64) {
      float *dp = (float *)db;
      const double *sp = (const double *)sb;
      for (int64_t j = 0; j < inner; j++) dp[od + j * dinner] = (float)sp[os + j * sinner];
    } else if (dd == VL_FLOAT64 && sd == VL_FLOAT32) {
      double *dp = (double *)db;
      const float *sp = (const float *)sb;
      for (int64_t j = 0; j < inner; j++) dp[od + j * dinner] = sp[os + j * sinner];
    } else {
      for (int64_t j = 0; j < inner; j++) vl_store(db, od + j * dinner, dd, vl_load(sb, os + j * sinner, sd));
    }
  }
}

/* The copy itself: no autograd checks (clone, to_dtype and backward
   functions use it on fresh tensors). */
static int copy_into(vl_tensor *dst, const vl_tensor *src) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (src->ndim > dst->ndim)
    return vl_error(VL_ESHAPE, "copy_: source shape %s does not broadcast to destination shape %s",
                    vl_shape_str(src->ndim, src->shape, s1), vl_shape_str(dst->ndim, dst->shape, s2));
  int lead = dst->ndim - src->ndim;
  for (int d = 0; d < src->ndim; d++)
    if (src->shape[d] != 1 && src->shape[d] != dst->shape[d + lead])
      return vl_error(VL_ESHAPE, "copy_: source shape %s does not broadcast to destination shape %s",
                      vl_shape_str(src->ndim, src->shape, s1), vl_shape_str(dst->ndim, dst->shape, s2));
  if (vl_numel(dst) == 0) return VL_OK;
  int64_t sstride[VL_MAX_DIMS];
  vl_broadcast_strides(src, dst->ndim, dst->shape, sstride);
  /* Overlapping source and destination: copy through a temporary. */
  if (dst->storage == src->storage) {
    vl_tensor *tmp = vl_empty(src->ndim, src->shape, src->dtype);
    int rc = tmp ? copy_into(tmp, src) : vl_last_status();
    if (rc == VL_OK) rc = copy_into(dst, tmp);
    vl_tensor_release(tmp);
    return rc;
  }
  if (dst->dtype == src->dtype) {
    int64_t n = vl_numel(dst);
    if (vl_is_contiguous(dst) && vl_is_contiguous(src) && vl_numel(src) == n) {
      size_t es = vl_dtype_size(dst->dtype);
      char *dp = vl_data_ptr(dst);
      const char *sp = vl_data_ptr(src);
      /* split big copies across threads: one core cannot saturate memory */
      int64_t chunks = n > VL_PARALLEL_GRAIN * 8 ? omp_get_max_threads() : 1;
#pragma omp parallel for if (chunks > 1)
      for (int64_t c = 0; c < chunks; c++) {
        int64_t lo = n * c / chunks, hi = n * (c + 1) / chunks;
        memcpy(dp + lo * es, sp + lo * es, (size_t)(hi - lo) * es);
      }
      return VL_OK;
    }
    copy_same_dtype(dst, src, sstride);
  } else {
    copy_convert(dst, src, sstride);
  }
  return VL_OK;
}

int vl_copy_(vl_tensor *dst, const vl_tensor *src) {
  if (vl_ag_check_inplace("copy_", dst) != VL_OK) return vl_last_status();
  if (vl_ag_needed(1, &src))
    return vl_error(VL_ESTATE, "copy_: copying a tensor that requires grad into another tensor is not "
                               "differentiable; build the result with ops (cat, where, ...) or copy inside vl.no_grad");
  int rc = copy_into(dst, src);
  if (rc == VL_OK) vl_bump_version(dst);
  return rc;
}

/* clone and dtype conversion pass the gradient straight through (the
   conversion back to the input's dtype is vl_ag_reduce_to's). */
static int identity_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  vl_tensor_retain((vl_tensor *)g);
  gi[0] = vl_ag_reduce_to(n, 0, (vl_tensor *)g);
  return gi[0] ? VL_OK : vl_last_status();
}

/* A copy of t in dtype dt that records `name` when t needs a gradient. */
static vl_tensor *copy_as(const char *name, const vl_tensor *t, vl_dtype dt) {
  vl_tensor *c = vl_empty(t->ndim, t->shape, dt);
  if (c == NULL) return NULL;
  if (copy_into(c, t) != VL_OK) {
    vl_tensor_release(c);
    return NULL;
  }
  if (vl_dtype_is_float(dt) && vl_ag_needed(1, &t)) {
    vl_node *n = vl_ag_node(name, identity_backward, 1, &t);
    if (n == NULL || vl_ag_attach(c, n) != VL_OK) {
      vl_ag_node_release(n);
      vl_tensor_release(c);
      return NULL;
    }
  }
  return c;
}

vl_tensor *vl_clone(const vl_tensor *t) { return copy_as("clone", t, t->dtype); }

vl_tensor *vl_contiguous(const vl_tensor *t) {
  if (vl_is_contiguous(t)) {
    vl_tensor_retain((vl_tensor *)t);
    return (vl_tensor *)t;
  }
  return vl_clone(t);
}

vl_tensor *vl_to_dtype(const vl_tensor *t, vl_dtype dt) {
  if ((unsigned)dt >= VL_DTYPE_COUNT) return vl_error(VL_EDTYPE, "to: invalid dtype %d", (int)dt), NULL;
  if (t->dtype == dt) {
    vl_tensor_retain((vl_tensor *)t);
    return (vl_tensor *)t;
  }
  return copy_as("to", t, dt);
}

int vl_fill_(vl_tensor *t, double value) {
  if (vl_ag_check_inplace("fill_", t) != VL_OK) return vl_last_status();
  vl_bump_version(t);
  /* Build one element of the right dtype, then copy it by its bytes. */
  uint64_t bits = 0;
  vl_store(&bits, 0, t->dtype, value);
  vl_tensor one = {0};
  vl_storage s = {.data = &bits, .nbytes = sizeof bits, .refcount = 1};
  one.storage = &s;
  one.dtype = t->dtype;
  one.refcount = 1;
  int64_t n = vl_numel(t);
  if (n == 0) return VL_OK;
  if (vl_is_contiguous(t)) {
    char *p = vl_data_ptr(t);
    switch (t->dtype) {
      case VL_FLOAT32: {
        float v = (float)value, *restrict f = (float *)p;
#pragma omp parallel for if (n > VL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++) f[i] = v;
        return VL_OK;
      }
      case VL_FLOAT64: {
        double *restrict f = (double *)p;
#pragma omp parallel for if (n > VL_PARALLEL_GRAIN)
        for (int64_t i = 0; i < n; i++) f[i] = value;
        return VL_OK;
      }
      default: break;
    }
  }
  int64_t sstride[VL_MAX_DIMS] = {0};
  copy_same_dtype(t, &one, sstride);
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Threads                                                              */
/* ------------------------------------------------------------------ */

/* More threads than this is surely a typo. */
#define VL_MAX_THREADS 1024

void vl_set_num_threads(int n) {
  if (n < 1) n = 1;
  if (n > VL_MAX_THREADS) n = VL_MAX_THREADS;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int vl_get_num_threads(void) { return omp_get_max_threads(); }
