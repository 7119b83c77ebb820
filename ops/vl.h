/*
** vl.h — the vlua tensor core, public C API.
**
** Pure C11: nothing here knows about Lua. A C host links libvlua and calls
** these functions directly; vm/ wraps them for Lua.
**
** Conventions (see shared DESIGN.md):
**  - Functions returning `vl_tensor *` hand the caller one new reference
**    (release it with vl_tensor_release) or return NULL on failure.
**  - Functions returning `int` return VL_OK (0) or a vl_status code.
**  - On failure the message (op name, the values at fault, what was
**    expected) is kept per thread: vl_last_error().
**  - Dims are 0-based here; a negative dim counts from the end (-1 = last).
**    The Lua layer maps its 1-based dims onto these.
**  - Every kernel honours strides; nothing aborts on user data.
*/
#ifndef VL_H
#define VL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VL_VERSION "0.1.0"

/* Limits, named. */
#define VL_MAX_DIMS 8              /* most dims a tensor may have */
#define VL_ERROR_MAX 512           /* longest error message kept, bytes */
#define VL_ALIGNMENT 64            /* storage alignment, bytes (one cache line, AVX-512) */

/* ------------------------------------------------------------------ */
/* Status and errors (ops/error.c)                                     */
/* ------------------------------------------------------------------ */

typedef enum vl_status {
  VL_OK = 0,
  VL_EARG,     /* bad argument value */
  VL_ESHAPE,   /* shapes do not fit */
  VL_EDTYPE,   /* dtype not accepted */
  VL_EINDEX,   /* index out of range */
  VL_ENOMEM,   /* allocation failed or over the memory limit */
  VL_EIO,      /* a file could not be read or written */
  VL_EFORMAT,  /* a file's contents are malformed */
  VL_ESTATE    /* operation not valid in the current state */
} vl_status;

/* Record an error for this thread; returns `code` so callers can
   `return vl_error(VL_ESHAPE, "matmul: ...")`. */
int vl_error(vl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char *vl_last_error(void);  /* "" when none */
int vl_last_status(void);        /* a vl_status value */
void vl_clear_error(void);

/* ------------------------------------------------------------------ */
/* dtypes (ops/dtype.c)                                                */
/* ------------------------------------------------------------------ */

typedef enum vl_dtype {
  VL_FLOAT32 = 0,
  VL_FLOAT64,
  VL_FLOAT16,
  VL_BFLOAT16,
  VL_INT64,
  VL_INT32,
  VL_UINT8,
  VL_BOOL,
  VL_DTYPE_COUNT
} vl_dtype;

const char *vl_dtype_name(vl_dtype dt);           /* "float32", ... */
/* Accepts canonical names and the PyTorch aliases float, double, half,
   long, int, byte. Returns VL_OK or VL_EDTYPE (with a message). */
int vl_dtype_from_name(const char *name, vl_dtype *out);
size_t vl_dtype_size(vl_dtype dt);
bool vl_dtype_is_float(vl_dtype dt);               /* f16, bf16, f32, f64 */
/* Result dtype of a binary op:
   bool < uint8 < int32 < int64 < {float16, bfloat16} < float32 < float64;
   float16 with bfloat16 gives float32. */
vl_dtype vl_promote(vl_dtype a, vl_dtype b);

float vl_half_to_float(uint16_t h);
uint16_t vl_float_to_half(float f);               /* round to nearest even */
float vl_bfloat16_to_float(uint16_t b);
uint16_t vl_float_to_bfloat16(float f);           /* round to nearest even */

/* ------------------------------------------------------------------ */
/* Storage and tensors (ops/tensor.c)                                  */
/* ------------------------------------------------------------------ */

typedef void (*vl_release_fn)(void *ctx, void *data, size_t nbytes);

/* A reference-counted block of bytes. Owned (allocated here) or wrapping
   memory someone else owns (mmap'd files, host buffers). */
typedef enum vl_storage_kind {
  VL_STORAGE_HEAP,      /* owned, from the C heap (small tensors) */
  VL_STORAGE_MAPPED,    /* owned, fresh anonymous pages (zero); returned to the OS on free */
  VL_STORAGE_MAPPED_REUSED, /* owned, pages reused from the page cache (not zero) */
  VL_STORAGE_EXTERNAL   /* someone else's memory, given back through `release` */
} vl_storage_kind;

typedef struct vl_storage {
  void *data;
  size_t nbytes;
  long refcount;          /* updated atomically */
  long version;           /* bumped by in-place writes (autograd checks it) */
  vl_storage_kind kind;
  vl_release_fn release;  /* VL_STORAGE_EXTERNAL only (may be NULL: not freed) */
  void *release_ctx;
  bool gc_reported;       /* a binding told its garbage collector about these bytes */
} vl_storage;

struct vl_grad_meta;      /* autograd state, ops/autograd.c */

/* A strided view: storage + offset + shape + strides (in elements). */
typedef struct vl_tensor {
  vl_storage *storage;
  int64_t offset;                  /* elements from storage start */
  int ndim;                        /* 0 for a scalar tensor */
  int64_t shape[VL_MAX_DIMS];
  int64_t stride[VL_MAX_DIMS];     /* elements; may be 0 (expand) */
  vl_dtype dtype;
  long refcount;                   /* updated atomically */
  struct vl_grad_meta *grad_meta;  /* NULL unless autograd tracks it */
} vl_tensor;

/* Memory accounting: live storage bytes and an optional cap (0 = none).
   An allocation past the cap first calls the pressure hook (the VM runs
   its garbage collector there), then fails with VL_ENOMEM. */
void vl_set_memory_limit(size_t bytes);
size_t vl_memory_limit(void);
size_t vl_memory_in_use(void);
typedef void (*vl_pressure_hook)(void *ctx, size_t wanted);
void vl_set_pressure_hook(vl_pressure_hook hook, void *ctx);
void vl_get_pressure_hook(vl_pressure_hook *hook, void **ctx);

vl_storage *vl_storage_new(size_t nbytes);
vl_storage *vl_storage_wrap(void *data, size_t nbytes, vl_release_fn release, void *ctx);
void vl_storage_retain(vl_storage *s);
void vl_storage_release(vl_storage *s);

/* Creation. `shape` has `ndim` entries (ndim may be 0). */
vl_tensor *vl_empty(int ndim, const int64_t *shape, vl_dtype dt);
vl_tensor *vl_zeros(int ndim, const int64_t *shape, vl_dtype dt);
vl_tensor *vl_ones(int ndim, const int64_t *shape, vl_dtype dt);
vl_tensor *vl_full(int ndim, const int64_t *shape, double value, vl_dtype dt);
vl_tensor *vl_scalar(double value, vl_dtype dt);   /* 0-d tensor */
vl_tensor *vl_empty_like(const vl_tensor *t);      /* contiguous, same shape/dtype */
vl_tensor *vl_arange(double start, double end, double step, vl_dtype dt);
vl_tensor *vl_linspace(double start, double end, int64_t steps, vl_dtype dt);
vl_tensor *vl_eye(int64_t n, int64_t m, vl_dtype dt);
/* A new tensor over an existing storage (retained). Checks that every
   reachable element lies inside the storage. */
vl_tensor *vl_tensor_new_view(vl_storage *s, int64_t offset, int ndim,
                              const int64_t *shape, const int64_t *stride, vl_dtype dt);

void vl_tensor_retain(vl_tensor *t);
void vl_tensor_release(vl_tensor *t);   /* NULL is fine */

/* Introspection. */
int64_t vl_numel(const vl_tensor *t);
bool vl_is_contiguous(const vl_tensor *t);
bool vl_same_shape(const vl_tensor *a, const vl_tensor *b);
bool vl_shares_storage(const vl_tensor *a, const vl_tensor *b);
void *vl_data_ptr(const vl_tensor *t);  /* address of element [0,...,0] */
/* Shape as text, "[2,3]" (buf of at least VL_SHAPE_STR bytes). */
#define VL_SHAPE_STR 128
const char *vl_shape_str(int ndim, const int64_t *shape, char *buf);
/* Checked byte count of a shape: VL_OK, or VL_EARG for a negative size,
   VL_ENOMEM when the count overflows. `op` names the caller in messages. */
int vl_shape_nbytes(const char *op, int ndim, const int64_t *shape, vl_dtype dt, size_t *nbytes);

/* Element access by index (0-based, no negatives), as double. */
int vl_get(const vl_tensor *t, const int64_t *index, double *out);
int vl_set(vl_tensor *t, const int64_t *index, double value);
/* Integer-exact access for int64 tensors (doubles lose bits past 2^53). */
int vl_get_int(const vl_tensor *t, const int64_t *index, int64_t *out);
int vl_set_int(vl_tensor *t, const int64_t *index, int64_t value);

/* Views: share storage, never copy. */
vl_tensor *vl_view(const vl_tensor *t, int ndim, const int64_t *shape);      /* one -1 allowed */
vl_tensor *vl_reshape(const vl_tensor *t, int ndim, const int64_t *shape);   /* copies only if it must */
vl_tensor *vl_transpose(const vl_tensor *t, int d0, int d1);
vl_tensor *vl_permute(const vl_tensor *t, const int *dims);                  /* t->ndim entries */
vl_tensor *vl_narrow(const vl_tensor *t, int dim, int64_t start, int64_t length);
vl_tensor *vl_select(const vl_tensor *t, int dim, int64_t index);           /* removes dim */
vl_tensor *vl_slice(const vl_tensor *t, int dim, int64_t start, int64_t end, int64_t step); /* [start,end) */
vl_tensor *vl_expand(const vl_tensor *t, int ndim, const int64_t *shape);    /* -1 keeps a size */
vl_tensor *vl_unfold(const vl_tensor *t, int dim, int64_t size, int64_t step);
#define VL_ALL_DIMS 0x7fff
vl_tensor *vl_squeeze(const vl_tensor *t, int dim);                          /* VL_ALL_DIMS: all size-1 */
vl_tensor *vl_unsqueeze(const vl_tensor *t, int dim);                        /* dim in [-ndim-1, ndim] */
vl_tensor *vl_flatten(const vl_tensor *t, int start_dim, int end_dim);       /* view when possible */
vl_tensor *vl_as_strided(const vl_tensor *t, int ndim, const int64_t *shape,
                         const int64_t *stride, int64_t offset);

/* Copies. */
vl_tensor *vl_contiguous(const vl_tensor *t);   /* retains t when already contiguous */
vl_tensor *vl_clone(const vl_tensor *t);        /* always a fresh contiguous copy */
vl_tensor *vl_to_dtype(const vl_tensor *t, vl_dtype dt); /* retains t when already dt */
int vl_copy_(vl_tensor *dst, const vl_tensor *src);      /* src broadcast to dst, dtype converted */
int vl_fill_(vl_tensor *t, double value);

/* Normalise a possibly negative dim against ndim; VL_EINDEX with a
   message naming `op` when out of range. */
int vl_wrap_dim(const char *op, int dim, int ndim, int *out);

/* Broadcast two shapes (NumPy rules). */
int vl_broadcast_shapes(const char *op, int na, const int64_t *sa, int nb, const int64_t *sb,
                        int *nout, int64_t *out);

/* Printing like PyTorch: "tensor([[1.0000, 2.0000]])", with ", dtype=float64"
   appended for dtypes other than float32, int64 and bool (ops/format.c).
   Summarised past `VL_PRINT_THRESHOLD` elements. Returns a malloc'd
   string (free it) or NULL. */
#define VL_PRINT_THRESHOLD 1000
#define VL_PRINT_EDGEITEMS 3
char *vl_format(const vl_tensor *t);

/* Threads (OpenMP and OpenBLAS kept in step). */
void vl_set_num_threads(int n);
int vl_get_num_threads(void);

/* ------------------------------------------------------------------ */
/* Element-wise (ops/elementwise.c)                                    */
/* ------------------------------------------------------------------ */

typedef enum vl_unop {
  VL_NEG, VL_ABS, VL_EXP, VL_LOG, VL_SQRT, VL_RSQRT, VL_SIN, VL_COS, VL_TANH,
  VL_SIGMOID, VL_RELU, VL_GELU, VL_GELU_TANH, VL_SILU, VL_SOFTPLUS,
  VL_LOGICAL_NOT, VL_SIGN, VL_FLOOR, VL_CEIL, VL_ROUND, VL_RECIPROCAL, VL_SQUARE,
  VL_UNOP_COUNT
} vl_unop;

typedef enum vl_binop {
  VL_ADD, VL_SUB, VL_MUL, VL_DIV, VL_POW, VL_MAXIMUM, VL_MINIMUM, VL_REMAINDER,
  VL_EQ, VL_NE, VL_LT, VL_LE, VL_GT, VL_GE,          /* return bool */
  VL_LOGICAL_AND, VL_LOGICAL_OR, VL_LOGICAL_XOR,     /* return bool */
  VL_BINOP_COUNT
} vl_binop;

const char *vl_unop_name(vl_unop op);
const char *vl_binop_name(vl_binop op);

/* Math unary ops on integer/bool inputs return float32; neg/abs/sign/
   floor/ceil/round/square keep integer dtypes. */
vl_tensor *vl_unary(vl_unop op, const vl_tensor *a);
int vl_unary_(vl_unop op, vl_tensor *a);                  /* in place, keeps a's dtype */
/* Broadcasting binary op; result dtype vl_promote(a, b) (bool for
   comparisons/logical; div on integers gives float32). */
vl_tensor *vl_binary(vl_binop op, const vl_tensor *a, const vl_tensor *b);
int vl_binary_(vl_binop op, vl_tensor *a, const vl_tensor *b); /* a op= b; b broadcast to a */
/* Write into an existing tensor of the broadcast shape. */
int vl_binary_out(vl_binop op, vl_tensor *out, const vl_tensor *a, const vl_tensor *b);

vl_tensor *vl_softplus(const vl_tensor *a, double beta, double threshold);
vl_tensor *vl_clamp(const vl_tensor *a, double lo, double hi);  /* NAN = no bound */
int vl_clamp_(vl_tensor *a, double lo, double hi);
vl_tensor *vl_where(const vl_tensor *cond, const vl_tensor *a, const vl_tensor *b);
vl_tensor *vl_masked_fill(const vl_tensor *a, const vl_tensor *mask, double value);
int vl_masked_fill_(vl_tensor *a, const vl_tensor *mask, double value);

/* ------------------------------------------------------------------ */
/* Reductions (ops/reduce.c)                                           */
/* ------------------------------------------------------------------ */

/* `dims` lists `ndims` dims to reduce (negative allowed); ndims == 0
   reduces over all dims. */
typedef enum vl_redop {
  VL_SUM, VL_MEAN, VL_PROD, VL_AMAX, VL_AMIN, VL_ALL, VL_ANY, VL_LOGSUMEXP,
  VL_REDOP_COUNT
} vl_redop;

vl_tensor *vl_reduce(vl_redop op, const vl_tensor *t, int ndims, const int *dims, bool keepdim);
vl_tensor *vl_var(const vl_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim);
vl_tensor *vl_std(const vl_tensor *t, int ndims, const int *dims, int64_t correction, bool keepdim);
vl_tensor *vl_norm(const vl_tensor *t, double p, int ndims, const int *dims, bool keepdim);
/* Values and int64 indices of the max/min along one dim. */
int vl_max_dim(const vl_tensor *t, int dim, bool keepdim, vl_tensor **values, vl_tensor **indices);
int vl_min_dim(const vl_tensor *t, int dim, bool keepdim, vl_tensor **values, vl_tensor **indices);
/* argmax/argmin along `dim`, or of the flattened tensor when dim == VL_ALL_DIMS. */
vl_tensor *vl_argmax(const vl_tensor *t, int dim, bool keepdim);
vl_tensor *vl_argmin(const vl_tensor *t, int dim, bool keepdim);
vl_tensor *vl_softmax(const vl_tensor *t, int dim);
vl_tensor *vl_log_softmax(const vl_tensor *t, int dim);
vl_tensor *vl_cumsum(const vl_tensor *t, int dim);

/* ------------------------------------------------------------------ */
/* Linear algebra (ops/linalg.c) — OpenBLAS sgemm/dgemm                */
/* ------------------------------------------------------------------ */

vl_tensor *vl_matmul(const vl_tensor *a, const vl_tensor *b);  /* 1-D, 2-D, batched, broadcast */
/* The float32 GEMM kernel in use: "avx512", "avx2" (vlua's own, chosen by
   CPU features) or "openblas"; VLUA_GEMM=blas|avx2 in the environment
   forces one (ops/gemm.c). */
const char *vl_sgemm_kernel(void);
vl_tensor *vl_mm(const vl_tensor *a, const vl_tensor *b);      /* 2-D only */
vl_tensor *vl_bmm(const vl_tensor *a, const vl_tensor *b);     /* 3-D only */
/* beta * c + alpha * (a @ b); c broadcasts to the result. */
vl_tensor *vl_addmm(const vl_tensor *c, const vl_tensor *a, const vl_tensor *b, double beta, double alpha);
vl_tensor *vl_outer(const vl_tensor *a, const vl_tensor *b);
vl_tensor *vl_dot(const vl_tensor *a, const vl_tensor *b);     /* 0-d result */
/* Debug counter: operands the ops above copied (made contiguous or
   converted to float32) before calling BLAS, since the process started.
   A transposed or row-narrowed 2-D operand goes to BLAS as it is. */
int64_t vl_linalg_copy_count(void);

/* ------------------------------------------------------------------ */
/* Joining, indexing, ordering (ops/index.c)                           */
/* ------------------------------------------------------------------ */

vl_tensor *vl_cat(int n, const vl_tensor *const *ts, int dim);
vl_tensor *vl_stack(int n, const vl_tensor *const *ts, int dim);
/* Split into pieces of `size` (last may be smaller) or of the listed
   sizes; pieces are views. *out is malloc'd (free it after releasing). */
int vl_split(const vl_tensor *t, int64_t size, int dim, vl_tensor ***out, int *n);
int vl_split_sizes(const vl_tensor *t, int nsizes, const int64_t *sizes, int dim,
                   vl_tensor ***out, int *n);
int vl_chunk(const vl_tensor *t, int chunks, int dim, vl_tensor ***out, int *n);
/* Index tensors are int64 (int32 accepted), 0-based here. */
vl_tensor *vl_gather(const vl_tensor *t, int dim, const vl_tensor *index);
vl_tensor *vl_scatter(const vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src);
int vl_scatter_(vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src);
int vl_scatter_add_(vl_tensor *t, int dim, const vl_tensor *index, const vl_tensor *src);
vl_tensor *vl_index_select(const vl_tensor *t, int dim, const vl_tensor *index);
vl_tensor *vl_masked_select(const vl_tensor *t, const vl_tensor *mask);   /* 1-D result */
vl_tensor *vl_nonzero(const vl_tensor *t);                                /* (n, ndim) int64 */
/* Stable; NaN counts as the largest value (last ascending, first descending).
   topk results always come sorted, ties in index order. */
int vl_sort(const vl_tensor *t, int dim, bool descending, vl_tensor **values, vl_tensor **indices);
int vl_topk(const vl_tensor *t, int64_t k, int dim, bool largest, bool sorted,
            vl_tensor **values, vl_tensor **indices);
vl_tensor *vl_flip(const vl_tensor *t, int ndims, const int *dims);
/* n shifts along n dims; dims == NULL: the flattened tensor rolled by shifts[0] (n == 1). */
vl_tensor *vl_roll(const vl_tensor *t, int n, const int64_t *shifts, const int *dims);
vl_tensor *vl_repeat(const vl_tensor *t, int n, const int64_t *repeats);
vl_tensor *vl_tril(const vl_tensor *t, int64_t k);
vl_tensor *vl_triu(const vl_tensor *t, int64_t k);

/* ------------------------------------------------------------------ */
/* Random numbers (ops/random.c)                                       */
/* ------------------------------------------------------------------ */

/* A counter-based generator (Philox 4x32-10): the same seed gives the
   same numbers on every machine and for every thread count. */
void vl_manual_seed(uint64_t seed);   /* also resets the offset to 0 */
uint64_t vl_initial_seed(void);       /* VL_DEFAULT_SEED until seeded */
#define VL_DEFAULT_SEED 67280421310721ULL  /* PyTorch's default seed */
/* Generator state (seed, offset in 128-bit counter blocks) for
   checkpoints: restoring it replays the same numbers. */
void vl_get_rng_state(uint64_t *seed, uint64_t *offset);
void vl_set_rng_state(uint64_t seed, uint64_t offset);
/* One Philox 4x32-10 block (Salmon et al. 2011), for known-answer tests. */
void vl_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
vl_tensor *vl_rand(int ndim, const int64_t *shape, vl_dtype dt);          /* U[0,1) */
vl_tensor *vl_randn(int ndim, const int64_t *shape, vl_dtype dt);         /* N(0,1) */
vl_tensor *vl_randint(int64_t low, int64_t high, int ndim, const int64_t *shape, vl_dtype dt); /* [low,high) */
vl_tensor *vl_randperm(int64_t n, vl_dtype dt);
int vl_uniform_(vl_tensor *t, double lo, double hi);
int vl_normal_(vl_tensor *t, double mean, double std);
int vl_bernoulli_(vl_tensor *t, double p);

/* ------------------------------------------------------------------ */
/* Autograd (ops/autograd.c)                                           */
/* ------------------------------------------------------------------ */

/* Reverse mode, op level: an op whose input requires grad records a node
   (its saved tensors and backward) on its output while recording is on. */
void vl_set_grad_enabled(bool on);  /* per thread; on by default */
bool vl_is_grad_enabled(void);
/* Only leaves (tensors no recorded op produced) of a float dtype. */
int vl_set_requires_grad(vl_tensor *t, bool on);
bool vl_requires_grad(const vl_tensor *t);
bool vl_is_leaf(const vl_tensor *t);
const char *vl_grad_fn_name(const vl_tensor *t);     /* NULL for leaves */
vl_tensor *vl_get_grad(const vl_tensor *t);          /* new reference, or NULL (no error) */
int vl_set_grad(vl_tensor *t, const vl_tensor *g);   /* g NULL clears; shape must match */
vl_tensor *vl_detach(const vl_tensor *t);            /* same storage, out of the graph */
/* Backpropagate from t: `grad` is dL/dt (NULL allowed when t has one
   element: 1). Gradients accumulate into the leaves' grad. Unless
   retain_graph, the graph's saved tensors are freed on the way: a second
   backward through it is an error. */
int vl_backward(vl_tensor *t, const vl_tensor *grad, bool retain_graph);

/* ------------------------------------------------------------------ */
/* I/O: safetensors, .npy, IDX, atomic writes (ops/io.c)               */
/* ------------------------------------------------------------------ */

/* Readers validate sizes and offsets before reading and name the file and
   the byte or field at fault (VL_EIO: cannot open/read; VL_EFORMAT: bad
   contents; VL_EDTYPE: a dtype vl has no type for). Writers write a
   temporary file next to the target, fsync it and rename it into place:
   a failed write leaves the old file (or none) and no temporary. */
#define VL_SAFETENSORS_MAX_HEADER 100000000 /* header bytes (the reference implementation's limit) */
#define VL_NPY_MAX_HEADER 10000             /* header bytes (NumPy's default max_header_size) */

/* safetensors: the file is memory-mapped (privately: writing a loaded
   tensor in place never touches the file); each tensor is a zero-copy view
   of the mapping when its bytes are aligned, which keeps the mapping alive
   after vl_safetensors_close. */
typedef struct vl_safetensors vl_safetensors;
vl_safetensors *vl_safetensors_open(const char *path);
vl_safetensors *vl_safetensors_from_memory(const void *data, size_t nbytes, const char *name); /* copies */
void vl_safetensors_close(vl_safetensors *f);                      /* NULL is fine */
int vl_safetensors_count(const vl_safetensors *f);                 /* tensors */
const char *vl_safetensors_key(const vl_safetensors *f, int i);    /* i-th name, sorted; NULL past the end */
bool vl_safetensors_has(const vl_safetensors *f, const char *name);
/* dtype is the file's name ("F32", "I16", ...); shape has ndim entries
   (may exceed VL_MAX_DIMS); begin/end are the data_offsets. Any out
   pointer may be NULL. */
int vl_safetensors_info(const vl_safetensors *f, const char *name, const char **dtype, int *ndim,
                        const int64_t **shape, uint64_t *begin, uint64_t *end);
vl_tensor *vl_safetensors_get(const vl_safetensors *f, const char *name);
int vl_safetensors_metadata_count(const vl_safetensors *f);
int vl_safetensors_metadata_item(const vl_safetensors *f, int i, const char **key, const char **value); /* sorted */
const char *vl_safetensors_metadata_get(const vl_safetensors *f, const char *key); /* NULL when absent */
/* Tensors go in the reference writer's order (descending dtype, then
   name); the header is padded with spaces to a multiple of 8 bytes;
   metadata keys are sorted. Non-contiguous tensors are written row-major. */
int vl_safetensors_save(const char *path, int n, const char *const *names, const vl_tensor *const *tensors,
                        int nmeta, const char *const *keys, const char *const *values);
/* The same bytes into a malloc'd buffer (free it). */
int vl_safetensors_serialize(int n, const char *const *names, const vl_tensor *const *tensors, int nmeta,
                             const char *const *keys, const char *const *values, void **out, size_t *nbytes);

/* .npy (format 1.0-3.0): <f2 <f4 <f8 <i4 <i8 |u1 |b1, big-endian ('>')
   byte-swapped on load, fortran_order loaded as a column-major view.
   Object arrays (pickles) are refused. Saved as NumPy saves (1.0). */
vl_tensor *vl_npy_load(const char *path);
vl_tensor *vl_npy_from_memory(const void *data, size_t nbytes, const char *name); /* copies */
int vl_npy_save(const char *path, const vl_tensor *t);

/* IDX (MNIST): gzip or plain; u8 -> uint8, i8/i16/i32 -> int32,
   f32 -> float32, f64 -> float64. */
vl_tensor *vl_idx_load(const char *path);
vl_tensor *vl_idx_from_memory(const void *data, size_t nbytes, const char *name); /* uncompressed */

/* Write bytes to path atomically (temp file, fsync, rename). */
int vl_write_file_atomic(const char *path, const void *data, size_t nbytes);

/* ------------------------------------------------------------------ */
/* Neural network ops: convolution and pooling (ops/conv.c)            */
/* ------------------------------------------------------------------ */

/* NCHW (NCL for the 1-d ops), like PyTorch; an unbatched input ([C,H,W],
   [C,L]) gives an unbatched result. Pairs are {h, w}; a NULL pair takes
   its default (stride 1 — for pools the kernel —, padding 0, dilation 1,
   output_padding 0). float32/float64; float16/bfloat16 are computed in
   float32; integer and bool tensors are refused (max pooling also takes
   int64/int32/uint8). Every op records autograd (input, weight, bias). */

/* x [N,C,H,W], w [O,C/groups,kH,kW], b [O] or NULL -> [N,O,OH,OW]. */
vl_tensor *vl_conv2d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[2],
                     const int64_t padding[2], const int64_t dilation[2], int64_t groups);
/* Same with padding {top, bottom, left, right} (asymmetric: "same" for even kernels). */
vl_tensor *vl_conv2d_pad(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[2],
                         const int64_t padding[4], const int64_t dilation[2], int64_t groups);
/* x [N,C,L], w [O,C/groups,k], b [O] or NULL -> [N,O,OL]. */
vl_tensor *vl_conv1d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, int64_t stride, int64_t padding,
                     int64_t dilation, int64_t groups);
vl_tensor *vl_conv1d_pad(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, int64_t stride, int64_t pad_left,
                         int64_t pad_right, int64_t dilation, int64_t groups);
/* x [N,C_in,H,W], w [C_in,C_out/groups,kH,kW], b [C_out] or NULL ->
   [N,C_out,(H-1)*s-2p+d*(kH-1)+output_padding+1, ...]: the gradient of
   conv2d with respect to its input. output_padding < stride or < dilation. */
vl_tensor *vl_conv_transpose2d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[2],
                               const int64_t padding[2], const int64_t output_padding[2], const int64_t dilation[2],
                               int64_t groups);
/* Max over each window (a NaN wins) and, when `indices` is not NULL, its
   int64 position ih*W + iw in the plane (0-based; as PyTorch). Padding is
   at most half the kernel; ceil_mode lets the last window start inside
   the input or left padding. */
int vl_max_pool2d(const vl_tensor *x, const int64_t kernel[2], const int64_t stride[2], const int64_t padding[2],
                  const int64_t dilation[2], bool ceil_mode, vl_tensor **values, vl_tensor **indices);
/* stride 0 = kernel. Indices are positions along L. */
int vl_max_pool1d(const vl_tensor *x, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
                  bool ceil_mode, vl_tensor **values, vl_tensor **indices);
/* Mean over each window; count_include_pad counts the zero padding in the
   divisor; divisor_override > 0 replaces the divisor (0 = none). */
vl_tensor *vl_avg_pool2d(const vl_tensor *x, const int64_t kernel[2], const int64_t stride[2],
                         const int64_t padding[2], bool ceil_mode, bool count_include_pad, int64_t divisor_override);
vl_tensor *vl_avg_pool1d(const vl_tensor *x, int64_t kernel, int64_t stride, int64_t padding, bool ceil_mode,
                         bool count_include_pad);
/* Output cell i averages input rows floor(i*H/out_h) .. ceil((i+1)*H/out_h)-1 (same for columns). */
vl_tensor *vl_adaptive_avg_pool2d(const vl_tensor *x, int64_t out_h, int64_t out_w);

/* ------------------------------------------------------------------ */
/* Neural network ops: normalisation, dropout, embedding, losses       */
/* (ops/nn.c) — fused kernels, each with its own backward               */
/* ------------------------------------------------------------------ */

/* Float inputs (float16/bfloat16 computed in float32, float64 when any
   input is float64); the result has the promoted input dtype. Optional
   tensors may be NULL. */

/* x[..., in] @ w[out, in]^T + b[out] -> [..., out], one GEMM. */
vl_tensor *vl_linear(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b);
/* x [N, C, ...]; weight, bias, running stats [C]. Training: batch
   statistics (biased variance), and running_mean/var (may be NULL)
   updated in place: r = (1 - momentum) r + momentum stat, the variance
   unbiased. Eval: the running statistics (required). */
vl_tensor *vl_batch_norm(const vl_tensor *x, vl_tensor *running_mean, vl_tensor *running_var,
                         const vl_tensor *weight, const vl_tensor *bias, bool training, double momentum,
                         double eps);
/* Normalise over the last `ndims` dims; weight/bias have those dims' shape. */
vl_tensor *vl_layer_norm(const vl_tensor *x, int ndims, const vl_tensor *weight, const vl_tensor *bias, double eps);
/* x / sqrt(mean(x^2) + eps) * weight over the last `ndims` dims. */
vl_tensor *vl_rms_norm(const vl_tensor *x, int ndims, const vl_tensor *weight, double eps);
/* x [N, C, ...] normalised per (sample, group of C/groups channels). */
vl_tensor *vl_group_norm(const vl_tensor *x, int64_t groups, const vl_tensor *weight, const vl_tensor *bias,
                         double eps);
/* Zeroes elements with probability p (Philox, seeded by vl_manual_seed)
   and scales the rest by 1/(1-p). Not training or p == 0: x itself
   (a new reference). */
vl_tensor *vl_dropout(const vl_tensor *x, double p, bool training);
/* Rows of weight [num, dim] picked by 0-based integer indices -> [..., dim].
   padding_idx (-1: none) gets no gradient. */
vl_tensor *vl_embedding(const vl_tensor *indices, const vl_tensor *weight, int64_t padding_idx);

typedef enum vl_reduction {
  VL_REDUCTION_NONE, VL_REDUCTION_MEAN, VL_REDUCTION_SUM,
  VL_REDUCTION_BATCHMEAN   /* kl_div only: sum / input's first dim */
} vl_reduction;
/* "none", "mean", "sum" (and "batchmean" when batchmean_ok). */
int vl_reduction_from_name(const char *op, const char *name, bool batchmean_ok, vl_reduction *out);

/* input [C], [N, C] or [N, C, d1, ...]; target 0-based class indices
   (integer, input's shape without the class dim) or probabilities
   (float, input's shape). PyTorch 1.13 semantics: weighted mean divides
   by the weights of the counted targets; label smoothing mixes the
   target with the uniform distribution; ignore_index applies to class
   targets only. */
vl_tensor *vl_cross_entropy(const vl_tensor *input, const vl_tensor *target, const vl_tensor *weight,
                            int64_t ignore_index, vl_reduction red, double label_smoothing);
/* input holds log-probabilities; class-index targets only. */
vl_tensor *vl_nll_loss(const vl_tensor *input, const vl_tensor *target, const vl_tensor *weight,
                       int64_t ignore_index, vl_reduction red);
/* input and target broadcast together (gradients for both). */
vl_tensor *vl_mse_loss(const vl_tensor *input, const vl_tensor *target, vl_reduction red);
vl_tensor *vl_l1_loss(const vl_tensor *input, const vl_tensor *target, vl_reduction red);
/* 0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (beta 0: L1). */
vl_tensor *vl_smooth_l1_loss(const vl_tensor *input, const vl_tensor *target, vl_reduction red, double beta);
/* target has input's shape; weight and pos_weight broadcast to it. */
vl_tensor *vl_binary_cross_entropy_with_logits(const vl_tensor *input, const vl_tensor *target,
                                               const vl_tensor *weight, const vl_tensor *pos_weight,
                                               vl_reduction red);
/* input: log-probabilities; target: probabilities (log_target: log-probabilities). */
vl_tensor *vl_kl_div(const vl_tensor *input, const vl_tensor *target, vl_reduction red, bool log_target);
/* sum over dim of (a / max(|a|, eps)) * (b / max(|b|, eps)); a, b broadcast. */
vl_tensor *vl_cosine_similarity(const vl_tensor *a, const vl_tensor *b, int dim, double eps);

/* ------------------------------------------------------------------ */
/* Interpolation (ops/interpolate.c)                                    */
/* ------------------------------------------------------------------ */

/* torch.nn.functional.interpolate of PyTorch 1.13. */
typedef enum vl_interp_mode {
  VL_INTERP_NEAREST,   /* legacy nearest: src = floor(dst * scale); [N,C,L] or [N,C,H,W] */
  VL_INTERP_LINEAR,    /* [N,C,L] (or unbatched [C,L]) */
  VL_INTERP_BILINEAR,  /* [N,C,H,W] (or unbatched [C,H,W]) */
  VL_INTERP_BICUBIC,   /* same; A = -0.75, source indices clamped to the border */
  VL_INTERP_AREA       /* adaptive average pooling to the output size; [N,C,L] or [N,C,H,W] */
} vl_interp_mode;
/* "nearest", "linear", "bilinear", "bicubic", "area" (VL_EARG otherwise). */
int vl_interp_mode_from_name(const char *name, vl_interp_mode *out);
const char *vl_interp_mode_name(vl_interp_mode m);
/* Exactly one of size (output sizes) and scale_factor is non-NULL; it
   has n entries: one per spatial dim, or 1 for all. With scale_factor the
   output size is floor(in * s) and the coordinates map through 1/s
   (recompute_scale_factor: through in/out). align_corners (linear,
   bilinear, bicubic only) maps corner to corner: scale (in-1)/(out-1).
   float32/float64 (float16/bfloat16 computed in float32); records autograd. */
vl_tensor *vl_interpolate(const vl_tensor *x, vl_interp_mode mode, int n, const int64_t *size,
                          const double *scale_factor, bool align_corners, bool recompute_scale_factor);

/* ------------------------------------------------------------------ */
/* Attention (ops/attention.c)                                         */
/* ------------------------------------------------------------------ */

/* out = dropout(softmax(q k^T * scale + mask)) v for q [B,H,Lq,d],
   k [B,H,Lk,d], v [B,H,Lk,dv] -> [B,H,Lq,dv] (3-d [B,L,d] inputs: H = 1,
   3-d result). Any strides; q, k, v share one float dtype (float16 and
   bfloat16 computed in float32). Fused and tiled (flash-attention): the
   Lq x Lk matrix is never stored. mask (may be NULL): bool (true = may
   attend) or an additive float mask, broadcastable to [B,H,Lq,Lk]
   ([B,Lq,Lk] for 3-d inputs); no gradient flows to it. causal: query i
   attends keys j <= i (top-left aligned, as PyTorch's is_causal); may be
   combined with mask. A query whose keys are all masked gives a 0 row.
   scale: NAN for 1/sqrt(d). dropout p in [0, 1] drops probabilities with
   the vl generator (vl_manual_seed) — always, when p > 0. Records
   autograd for q, k, v. */
vl_tensor *vl_attention(const vl_tensor *q, const vl_tensor *k, const vl_tensor *v, const vl_tensor *mask,
                        bool causal, double scale, double dropout);
/* The same (same numbers, same gradients, same dropout draws), and the
   attention weights [B,H,Lq,Lk] (after dropout: what multiplies v; no
   gradient) from a non-tiled path that stores the whole Lq x Lk matrix. */
int vl_attention_weights(const vl_tensor *q, const vl_tensor *k, const vl_tensor *v, const vl_tensor *mask,
                         bool causal, double scale, double dropout, vl_tensor **out, vl_tensor **weights);

/* ------------------------------------------------------------------ */
/* FFT (ops/fft.c)                                                      */
/* ------------------------------------------------------------------ */

/* torch.fft of PyTorch 1.13 along one dim. vl has no complex dtype: a
   complex tensor is a float32/float64 tensor whose last dim has size 2
   (real, imaginary), like torch.view_as_real. dim counts the dims before
   that pair (negative from the end). n < 0: the input's length (irfft:
   2 * (length - 1)); otherwise the input is trimmed or zero-padded to n.
   Radix-2 for power-of-two n, Bluestein for any other; float64 inside,
   output in the input's dtype (integer and bool inputs: float32; float16
   and bfloat16 are refused); any strides. All record autograd. */
typedef enum vl_fft_norm {
  VL_FFT_NORM_BACKWARD,  /* forward unscaled, inverse scaled by 1/n (default) */
  VL_FFT_NORM_ORTHO,     /* both by 1/sqrt(n) */
  VL_FFT_NORM_FORWARD    /* forward by 1/n, inverse unscaled */
} vl_fft_norm;
/* "backward", "ortho", "forward" (VL_EARG otherwise). */
int vl_fft_norm_from_name(const char *name, vl_fft_norm *out);
vl_tensor *vl_fft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm);    /* [...,2] -> [...,n,...,2] */
vl_tensor *vl_ifft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm);   /* [...,2] -> [...,n,...,2] */
vl_tensor *vl_rfft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm);   /* real -> [...,n/2+1,...,2] */
/* Uses the first n/2+1 bins (zero-padded when fewer), completed by
   Hermitian symmetry; the imaginary parts of bin 0 and bin n/2 are
   ignored. [...,2] -> real [...,n,...]. */
vl_tensor *vl_irfft(const vl_tensor *x, int64_t n, int dim, vl_fft_norm norm);

/* ------------------------------------------------------------------ */
/* State-space ops (ops/ssm.c)                                         */
/* ------------------------------------------------------------------ */

/* Selective scan (Mamba's selective_scan_ref): u, delta [Bt,D,L];
   A [D,N]; B and C each [D,N] (fixed), [Bt,N,L] (input-dependent) or
   [Bt,G,N,L] (grouped, G divides D); D, delta_bias [D] and z [Bt,D,L]
   may be NULL. dt = delta + delta_bias (softplus'd when delta_softplus);
   x_t = exp(dt_t A) x_{t-1} + dt_t B_t u_t; y_t = <x_t, C_t> + D u_t;
   out = y * silu(z). Returns out [Bt,D,L] in the promoted dtype
   (float32 work, float64 kept); last_state (may be NULL) gets the final
   state [Bt,D,N] (no gradient). Fused: the [Bt,D,L,N] tensors are never
   stored. Records autograd for all eight inputs (fused reverse scan). */
vl_tensor *vl_selective_scan(const vl_tensor *u, const vl_tensor *delta, const vl_tensor *A, const vl_tensor *B,
                             const vl_tensor *C, const vl_tensor *D, const vl_tensor *z, const vl_tensor *delta_bias,
                             bool delta_softplus, vl_tensor **last_state);
/* One token: state [Bt,D,N], u, delta, z [Bt,D], B and C [Bt,N], [D,N]
   (when D != Bt) or [Bt or 1,G,N]. New tensors *new_state [Bt,D,N] and
   *y [Bt,D]; the same numbers as step t of vl_selective_scan. No autograd. */
int vl_selective_scan_step(const vl_tensor *state, const vl_tensor *u, const vl_tensor *delta, const vl_tensor *A,
                           const vl_tensor *B, const vl_tensor *C, const vl_tensor *D, const vl_tensor *z,
                           const vl_tensor *delta_bias, bool delta_softplus, vl_tensor **new_state, vl_tensor **y);
/* Depthwise causal conv1d: x [Bt,D,L], weight [D,W], bias [D] or NULL;
   out[b,d,t] = bias[d] + sum_k w[d,k] x[b,d,t-(W-1)+k] (zeros before 0),
   then silu when asked. Records autograd for x, weight, bias. */
vl_tensor *vl_causal_conv1d(const vl_tensor *x, const vl_tensor *weight, const vl_tensor *bias, bool silu);
/* One token: x [Bt,D], conv_state [Bt,D,W] (the last W inputs, oldest
   first). *new_state = conv_state shifted left with x appended (a new
   tensor), *y [Bt,D] = the conv over it (+bias, silu). No autograd. */
int vl_causal_conv1d_step(const vl_tensor *x, const vl_tensor *conv_state, const vl_tensor *weight,
                          const vl_tensor *bias, bool silu, vl_tensor **y, vl_tensor **new_state);

/* ------------------------------------------------------------------ */
/* 3-D convolution and pooling (ops/conv3d.c)                           */
/* ------------------------------------------------------------------ */
/* x [N,C,D,H,W] (or unbatched [C,D,H,W]), float32/float64 (float16 and
   bfloat16 computed in float32). A NULL size array means its default
   (stride 1 — for pools the kernel —, padding 0, dilation 1). conv3d:
   w [O,C/groups,kD,kH,kW], b [O] or NULL. All record autograd. */
vl_tensor *vl_conv3d(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[3],
                     const int64_t padding[3], const int64_t dilation[3], int64_t groups);
/* padding {before_d, before_h, before_w, after_d, after_h, after_w} ("same"). */
vl_tensor *vl_conv3d_pad(const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, const int64_t stride[3],
                         const int64_t padding[6], const int64_t dilation[3], int64_t groups);
/* *values; *indices (when not NULL): int64, 0-based flat positions in the
   D*H*W volume. */
int vl_max_pool3d(const vl_tensor *x, const int64_t kernel[3], const int64_t stride[3], const int64_t padding[3],
                  const int64_t dilation[3], bool ceil_mode, vl_tensor **values, vl_tensor **indices);
vl_tensor *vl_avg_pool3d(const vl_tensor *x, const int64_t kernel[3], const int64_t stride[3],
                         const int64_t padding[3], bool ceil_mode, bool count_include_pad);
vl_tensor *vl_adaptive_avg_pool3d(const vl_tensor *x, const int64_t size[3]);

/* ------------------------------------------------------------------ */
/* Video ops (ops/video.c)                                             */
/* ------------------------------------------------------------------ */

typedef enum { VL_GS_BILINEAR = 0, VL_GS_NEAREST = 1 } vl_grid_sample_mode;
typedef enum { VL_GS_ZEROS = 0, VL_GS_BORDER = 1 } vl_grid_sample_padding;
int vl_grid_sample_mode_from_name(const char *name, vl_grid_sample_mode *out);        /* "bilinear", "nearest" */
int vl_grid_sample_padding_from_name(const char *name, vl_grid_sample_padding *out);  /* "zeros", "border" */
/* torch.nn.functional.grid_sample (PyTorch 1.13), 4-d: input [N,C,H,W],
   grid [N,Ho,Wo,2] (x, y in [-1, 1]), same dtype (float32 or float64)
   -> [N,C,Ho,Wo]. Records autograd for input and grid (nearest: the
   grid gradient is zero). */
vl_tensor *vl_grid_sample(const vl_tensor *input, const vl_tensor *grid, vl_grid_sample_mode mode,
                          vl_grid_sample_padding padding, bool align_corners);
/* torch.nn.functional.affine_grid, 4-d: theta [N,2,3], size {N,C,H,W}
   -> grid [N,H,W,2]. Records autograd for theta. */
vl_tensor *vl_affine_grid(const vl_tensor *theta, const int64_t size[4], bool align_corners);
/* TSM temporal shift: x [N*T,C,...], T = segments; channels [0, C/fold_div)
   take frame t+1, [C/fold_div, 2 C/fold_div) frame t-1 (zeros at the
   ends), the rest stay. Any dtype; records autograd. */
vl_tensor *vl_temporal_shift(const vl_tensor *x, int64_t segments, int64_t fold_div);
/* Backward warping by a flow in pixels (OpenCV's convention, u along x):
   out[n,c,y,x] = img[n,c,y+v,x+u], img [C,H,W] or [N,C,H,W], flow
   [H,W,2] or [N,H,W,2] of the same dtype (float32/float64). Bilinear or
   nearest, zeros or border padding. Records autograd for img and flow. */
vl_tensor *vl_warp(const vl_tensor *img, const vl_tensor *flow, vl_grid_sample_mode mode,
                   vl_grid_sample_padding padding);
/* The frame at time t in (0,1) between f0 and f1 ([C,H,W] or [N,C,H,W],
   float32/float64/uint8) from the flows 0->1 and 1->0 ([H,W,2] or
   [N,H,W,2], pixels): Super SloMo's intermediate flows, both frames
   warped back (border) and blended by (1-t, t), weighted by
   forward-backward consistency and in-frame masks when occlusion is
   true. Not recorded by autograd. */
vl_tensor *vl_video_interpolate(const vl_tensor *f0, const vl_tensor *f1, double t, const vl_tensor *flow01,
                                const vl_tensor *flow10, bool occlusion);

/* ------------------------------------------------------------------ */
/* Audio files and resampling (ops/audio.c), spectral features         */
/* (ops/stft.c)                                                          */
/* ------------------------------------------------------------------ */

/* What libsndfile reports of a file: format "WAV", "FLAC", "OGG", ...;
   subtype "PCM_16", "PCM_24", "FLOAT", "VORBIS", ... */
typedef struct vl_audio_meta {
  char format[16];
  char subtype[16];
  int channels;
  int rate;
  int64_t frames;
} vl_audio_meta;
/* Errors name the file and libsndfile's reason (VL_EIO: cannot open;
   VL_EFORMAT: not audio, corrupt or truncated). */
int vl_audio_info(const char *path, vl_audio_meta *info);
/* [channels, frames] float32 or float64, n-bit PCM scaled by 1/2^(n-1);
   frames < 0: to the end. info may be NULL. */
vl_tensor *vl_audio_read(const char *path, int64_t start, int64_t frames, vl_dtype dt, vl_audio_meta *info);
/* x [samples] or [channels, samples] (float). format NULL: from the
   extension (.wav .flac .ogg); subtype NULL: PCM_16 (WAV, FLAC) or VORBIS
   (OGG); quality (Vorbis, 0..1) NAN: libsndfile's default. PCM samples
   are rounded and saturated to the n-bit range; NaN/inf refused (except
   FLOAT/DOUBLE). Atomic: temp file, fsync, rename. */
int vl_audio_write(const char *path, const vl_tensor *x, int64_t rate, const char *format, const char *subtype,
                   double quality);
/* torchaudio.functional.resample (sinc_interp_hann) along the last dim:
   [..., n] -> [..., ceil(n * new / orig)] (rates reduced by their gcd).
   Composed of recorded ops (conv1d): differentiable. Same rates: x. */
vl_tensor *vl_audio_resample(const vl_tensor *x, int64_t orig_rate, int64_t new_rate, int64_t lowpass_filter_width,
                             double rolloff);

/* STFT / ISTFT with FFTW3 (fftw3f for float32, fftw3 for float64), as
   torch.stft(return_complex=True) viewed as real / torch.istft of
   PyTorch 1.13; complex values are trailing (real, imaginary) pairs.
   window NULL: a periodic Hann window of win_length; else a 1-d tensor of
   win_length. Windows shorter than n_fft are zero-padded on both sides
   (centred). hop >= 1, 1 <= win_length <= n_fft. Both record autograd for
   x / X (not for the window). */
typedef enum vl_pad_mode { VL_PAD_REFLECT, VL_PAD_CONSTANT } vl_pad_mode;
/* x [..., samples] -> [..., n_fft/2+1 (onesided) or n_fft, frames, 2]. */
vl_tensor *vl_stft(const vl_tensor *x, int64_t n_fft, int64_t hop, int64_t win_length, const vl_tensor *window,
                   bool center, vl_pad_mode pad_mode, bool normalized, bool onesided);
/* X [..., freq, frames, 2] -> [..., length]; onesided < 0: freq != n_fft;
   length < 0: all the samples the frames cover (less the centre padding).
   Refuses a window/hop whose squared-window overlap-add falls below
   1e-11 anywhere in the output (the NOLA condition). */
vl_tensor *vl_istft(const vl_tensor *X, int64_t n_fft, int64_t hop, int64_t win_length, const vl_tensor *window,
                    bool center, bool normalized, int onesided, int64_t length);
/* torchaudio.functional.melscale_fbanks: [n_freqs, n_mels] triangular
   filters over linspace(0, floor(rate/2), n_freqs) Hz; slaney_norm scales
   each by 2 / (its width in Hz); slaney_scale uses the Slaney mel scale
   (else HTK). Computed in float64. */
vl_tensor *vl_mel_filterbank(int64_t n_freqs, double f_min, double f_max, int64_t n_mels, double sample_rate,
                             bool slaney_norm, bool slaney_scale, vl_dtype dt);
/* torchaudio.transforms.MelSpectrogram / MFCC options; vl_melspec_defaults
   fills torchaudio's defaults (rate 16000, n_fft 400, hop = win/2,
   128 mels, f_max = floor(rate/2), power 2, centre + reflect, HTK). */
typedef struct vl_melspec_opts {
  double sample_rate;
  int64_t n_fft, win_length, hop_length;   /* 0: n_fft, win_length / 2 */
  double f_min, f_max;                     /* f_max NAN: floor(rate / 2) */
  int64_t n_mels;
  double power;                            /* 1: magnitude, 2: power */
  bool normalized;                         /* divide by sqrt(sum window^2) */
  bool center;
  vl_pad_mode pad_mode;
  bool slaney_norm, slaney_scale;
  const vl_tensor *window;                 /* NULL: periodic Hann */
} vl_melspec_opts;
void vl_melspec_defaults(vl_melspec_opts *o);
/* x [..., samples] -> [..., n_mels, frames]; composed of recorded ops. */
vl_tensor *vl_melspectrogram(const vl_tensor *x, const vl_melspec_opts *o);
/* [..., n_mfcc, frames]: DCT-II (ortho) of 10 log10(max(mel, 1e-10))
   floored at (max over the last 3 dims) - top_db (top_db NAN: no floor),
   or of log(mel + 1e-6) when log_mels. */
vl_tensor *vl_mfcc(const vl_tensor *x, const vl_melspec_opts *o, int64_t n_mfcc, bool log_mels, double top_db);

/* ------------------------------------------------------------------ */
/* Media I/O: video and images through FFmpeg (ops/media.c)            */
/* ------------------------------------------------------------------ */

/* Video: any container and codec libavformat/libavcodec read; frames come
   out as uint8 RGB [T,H,W,3] (or [T,3,H,W]). Frame i (0-based) is the one
   shown at i / fps seconds after the stream's start: indices assume a
   constant frame rate. Reads seek to the keyframe before the first frame
   asked for and decode forward, so only the frames asked for are kept.
   Errors name the op, the file and the stream/codec, with FFmpeg's text.
   FFmpeg's own log is silent unless VLUA_FFMPEG_LOG=1 (or a level: quiet,
   error, warning, info, debug) is set in the environment. */
#define VL_MEDIA_NAME 32
typedef struct vl_video_info {
  int64_t width, height;
  double fps;                       /* frames per second */
  int64_t frames;                   /* frame count (estimated when !frames_exact) */
  bool frames_exact;                /* the container stated the count */
  double duration;                  /* seconds (0 when unknown) */
  double start_time;                /* seconds of the first frame in the container */
  int64_t bit_rate;                 /* bits/s (0 when unknown) */
  int stream;                       /* index of the video stream */
  bool has_audio;
  char codec[VL_MEDIA_NAME];        /* "h264", "mpeg4", "rawvideo", ... */
  char pixel_format[VL_MEDIA_NAME]; /* "yuv420p", ... */
} vl_video_info;

typedef enum { VL_RESIZE_BILINEAR = 0, VL_RESIZE_AREA, VL_RESIZE_BICUBIC } vl_resize_mode;
int vl_resize_mode_from_name(const char *name, vl_resize_mode *out); /* "bilinear", "area", "bicubic" */

typedef struct vl_video_read_opts {
  int64_t start;          /* first frame, 0-based (when start_time < 0) */
  double start_time;      /* seconds from the stream's start; < 0: use start */
  int64_t frames;         /* at most this many frames; < 0: to the end */
  int64_t step;           /* keep every step-th frame (>= 1) */
  int64_t height, width;  /* output size; 0: the video's own */
  vl_resize_mode resize;
  bool chw;               /* [T,3,H,W] instead of [T,H,W,3] */
  bool yuv;               /* the planes of yuv444p (Y, U, V) instead of RGB; implies chw */
} vl_video_read_opts;
void vl_video_read_opts_init(vl_video_read_opts *o); /* start 0, all frames, step 1, own size */

int vl_video_probe(const char *path, vl_video_info *info);
/* Decode the frames asked for into one uint8 tensor. `info` (may be NULL)
   gets the file's info; *first (may be NULL) the 0-based index of the
   first frame returned. A start past the end gives T = 0. */
vl_tensor *vl_video_read(const char *path, const vl_video_read_opts *o, vl_video_info *info, int64_t *first);

/* Clips for streaming: clip c holds frames s + c*stride + j*step,
   j < clip (s the start of o). o->frames (when >= 0) bounds the frames
   covered. Each clip is a fresh [clip,H,W,3] (or [clip,3,H,W]) tensor;
   only the frames of the current clip are held. */
typedef struct vl_video_clips vl_video_clips;
vl_video_clips *vl_video_clips_open(const char *path, const vl_video_read_opts *o, int64_t clip, int64_t stride);
const vl_video_info *vl_video_clips_info(const vl_video_clips *c);
/* *out: the next clip (new reference) or NULL at the end; *first its
   first frame's 0-based index. */
int vl_video_clips_next(vl_video_clips *c, vl_tensor **out, int64_t *first);
void vl_video_clips_close(vl_video_clips *c); /* NULL is fine */

/* Write frames uint8 (or float in [0, 1], clamped and rounded) [T,H,W,3]
   RGB ([T,3,H,W] when chw) atomically. Container from the extension
   (.mp4/.m4v/.mov/.mkv/.avi; .y4m raw YUV4MPEG2). */
typedef struct vl_video_write_opts {
  double fps;             /* > 0 */
  const char *codec;      /* "h264" (libx264), "mpeg4", "rawvideo"; NULL: h264 if present else mpeg4, rawvideo for .y4m */
  double crf;             /* H.264 constant rate factor 0..51; < 0: 18 */
  int qscale;             /* MPEG-4 quantiser 1..31; 0: 3 */
  int64_t bit_rate;       /* bits/s; > 0 replaces crf/qscale */
  int gop;                /* keyframe interval; 0: the encoder's default */
  const char *preset;     /* x264 preset; NULL: "medium" */
  bool chw;
  bool yuv;               /* frames are [T,3,H,W] yuv444p planes (only .y4m): written as they are */
} vl_video_write_opts;
void vl_video_write_opts_init(vl_video_write_opts *o);
int vl_video_write(const char *path, const vl_tensor *frames, const vl_video_write_opts *o);

/* Images: PNG and JPEG through libavcodec, binary PPM (P6) / PGM (P5)
   parsed here. uint8 [H,W,C] (or [C,H,W]), C = 3 (RGB) or 1 (gray:
   round(0.299 R + 0.587 G + 0.114 B) when the file is colour). An alpha
   channel is dropped. */
vl_tensor *vl_image_read(const char *path, bool chw, bool gray);
/* img uint8 (or float in [0,1]) [H,W,C], [C,H,W] when chw, or [H,W];
   C = 1 or 3. Format from the extension: .png, .jpg/.jpeg (quality
   1..100, 0: 95), .ppm (3 channels), .pgm (1). Atomic. */
int vl_image_write(const char *path, const vl_tensor *img, bool chw, int quality);

/* ------------------------------------------------------------------ */
/* Optical flow (ops/flow.c)                                           */
/* ------------------------------------------------------------------ */

/* Images: gray [H,W] or [1,H,W], or RGB [H,W,3] (tried first) or [3,H,W]
   made gray with OpenCV's weights 0.299 R + 0.587 G + 0.114 B (its
   15-bit fixed point for uint8); uint8, float32 or float64 (intensities
   as given, 0..255 like OpenCV's 8-bit images); NaN/Inf refused. */
typedef struct vl_farneback_opts {
  double pyr_scale;   /* 0 < s < 1 (0.5) */
  int levels;         /* pyramid levels above the image (3); fewer when a side would drop under 32 */
  int winsize;        /* odd averaging window, >= 3 (15) */
  int iterations;     /* per level (3) */
  int poly_n;         /* 5 or 7 (5) */
  double poly_sigma;  /* 1.1 for poly_n 5, 1.5 for 7; 0: 0.3 poly_n */
  bool gaussian;      /* Gaussian instead of box window (OPTFLOW_FARNEBACK_GAUSSIAN) */
} vl_farneback_opts;
void vl_flow_farneback_defaults(vl_farneback_opts *o);
/* Dense flow [H,W,2] float32 (u = x, v = y displacement; prev(y,x) ~
   next(y+v, x+u)) as cv::calcOpticalFlowFarneback. init_flow [H,W,2]
   (or NULL) is the starting flow (OPTFLOW_USE_INITIAL_FLOW). */
vl_tensor *vl_flow_farneback(const vl_tensor *prev, const vl_tensor *next, const vl_tensor *init_flow,
                             const vl_farneback_opts *opt);

typedef struct vl_lk_opts {
  int64_t win_size;          /* square window side, >= 3 (21) */
  int max_level;             /* pyramid levels above the image (3) */
  int iterations;            /* per level, capped at 100 (30) */
  double epsilon;            /* stop when the step is below it, pixels (0.01) */
  double min_eig_threshold;  /* lose points whose gradient matrix is weaker (1e-4) */
} vl_lk_opts;
void vl_flow_lk_defaults(vl_lk_opts *o);
/* Sparse pyramidal Lucas-Kanade as cv::calcOpticalFlowPyrLK (8-bit:
   float images are rounded to 0..255). points [N,2] (x, y; pixel centres
   at integers, 0-based). *next_points [N,2] float32, *status [N] bool
   (false: lost or left the image), *err [N] float32 (mean absolute
   intensity difference over the window; 0 where status is false). */
int vl_flow_lucas_kanade(const vl_tensor *prev, const vl_tensor *next, const vl_tensor *points, const vl_lk_opts *opt,
                         vl_tensor **next_points, vl_tensor **status, vl_tensor **err);
/* Middlebury colour code of flow [H,W,2] -> uint8 [H,W,3] RGB; the
   magnitude max_magnitude (0: the flow's largest) is the wheel's rim;
   unknown flow (NaN or |component| > 1e9) is black. */
vl_tensor *vl_flow_to_rgb(const vl_tensor *flow, double max_magnitude);
/* Endpoint error |flow - gt| per pixel: a float64 0-d mean (over mask's
   true pixels when mask [H,W] bool/uint8 is given; NaN over none), or the
   [H,W] float32 map when per_pixel (0 outside the mask). */
vl_tensor *vl_flow_epe(const vl_tensor *flow, const vl_tensor *gt, const vl_tensor *mask, bool per_pixel);

#endif /* VL_H */
