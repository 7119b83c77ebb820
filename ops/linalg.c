/*
** linalg.c — matrix products (prefix vl_): matmul with PyTorch semantics,
** mm, bmm, addmm, outer, dot.
**
** float32 products go to vl_sgemm (gemm.c: its own AVX-512/AVX2 kernels,
** OpenBLAS on other CPUs), float64 ones to OpenBLAS (cblas_dgemm); dot
** products and matrix-vector ones to OpenBLAS's sdot/ddot/gemv. A 2-D
** operand whose rows or columns are unit-stride (a transpose, a narrow)
** is passed as it is, with CblasTrans where needed and its leading
** dimension; only other layouts (expanded, stepped, overlapping) are
** copied. float16/bfloat16 are computed in float32 and rounded back;
** int64/int32/uint8 use a plain loop with wrapping (modular) arithmetic
** like PyTorch's integer matmul; bool is refused.
**
** Batched products loop over the broadcast batch dims. When A's batch dims
** fold into its rows and B is shared by every batch ([B,M,K] @ [K,N], a
** linear layer), the whole batch is one [B*M,K] @ [K,N] GEMM. Otherwise
** small GEMMs run one per OpenMP thread (single-threaded inside), and big
** ones are threaded inside each GEMM (see VL_GEMM_SPLIT_WORK).
**
** Autograd: every product records one node (matmul_backward) when an
** input of a float dtype requires grad. The gradients are products
** themselves, over transposed views (no copies): dA = alpha * dC @ B^T,
** dB = alpha * A^T @ dC, dc = beta * dC, each summed over the batch dims
** it was broadcast along. The forward runs with recording off, so that
** its own dtype conversions and copies record nothing.
*/
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <cblas.h>
#include <omp.h>

#include "autograd.h"
#include "vl_internal.h"

/* Largest size or leading dimension handed to BLAS: Debian's OpenBLAS
   takes 32-bit ints. */
#define VL_BLAS_INT_MAX INT_MAX

/* A batch whose GEMMs are each at most this many multiply-adds (M*N*K)
   runs one GEMM per OpenMP thread, OpenBLAS single-threaded; bigger GEMMs
   let OpenBLAS thread inside each. Measured on 2 cores (OpenBLAS 0.3.21):
   96 x [197,64]@[64,197] 55 vs 48 GFLOP/s, 96 x 64^3 55 vs 28,
   8 x 512^3 63.5 vs 61.5; a single GEMM is never split. */
#define VL_GEMM_SPLIT_WORK ((double)(1 << 27))

static atomic_long copy_count;

int64_t vl_linalg_copy_count(void) { return (int64_t)atomic_load(&copy_count); }

/* ------------------------------------------------------------------ */
/* Operands                                                             */
/* ------------------------------------------------------------------ */

/* How a tensor is read as a matrix: as itself (its last two dims, the
   dims before them batch dims), or a 1-D tensor as a row [1,n] or a
   column [n,1]. */
enum { AS_MATRIX, AS_ROW, AS_COL };

typedef struct mat {
  const vl_tensor *t;  /* the tensor read (a copy once copied) */
  int mode;            /* AS_MATRIX, AS_ROW, AS_COL */
  const char *data;    /* storage base */
  int64_t offset;      /* element offset of [0,...,0] */
  int64_t rows, cols, rs, cs;
  int64_t bstride[VL_MAX_DIMS];  /* per output batch dim; 0 = broadcast */
} mat;

static void mat_init(mat *m, const vl_tensor *t, int mode, int nbd, const int64_t *bshape) {
  m->t = t;
  m->mode = mode;
  m->data = vl_base(t);
  m->offset = t->offset;
  for (int d = 0; d < nbd; d++) m->bstride[d] = 0;
  if (mode == AS_ROW) {
    m->rows = 1, m->cols = t->shape[0], m->rs = 0, m->cs = t->stride[0];
  } else if (mode == AS_COL) {
    m->rows = t->shape[0], m->cols = 1, m->rs = t->stride[0], m->cs = 0;
  } else {
    int n = t->ndim;
    m->rows = t->shape[n - 2], m->cols = t->shape[n - 1];
    m->rs = t->stride[n - 2], m->cs = t->stride[n - 1];
    int tb = n - 2, lead = nbd - tb; /* t's batch dims align right */
    for (int d = 0; d < tb; d++)
      m->bstride[lead + d] = (t->shape[d] == 1 && bshape[lead + d] != 1) ? 0 : t->stride[d];
  }
}

/* Whether a rows x cols matrix with strides (rs, cs) can go to BLAS as it
   is: row-major (unit column stride) or transposed (unit row stride), with
   a leading dimension that keeps rows apart. Size-1 dims may have any
   stride. */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, bool *trans, int *ld) {
  if ((cs == 1 || cols <= 1) && (rows <= 1 || rs >= VL_MAX(cols, 1))) {
    int64_t l = rows <= 1 ? VL_MAX(cols, 1) : rs;
    if (l <= VL_BLAS_INT_MAX) {
      *trans = false, *ld = (int)l;
      return true;
    }
  }
  if ((rs == 1 || rows <= 1) && (cols <= 1 || cs >= VL_MAX(rows, 1))) {
    int64_t l = cols <= 1 ? VL_MAX(rows, 1) : cs;
    if (l <= VL_BLAS_INT_MAX) {
      *trans = true, *ld = (int)l;
      return true;
    }
  }
  return false;
}

static int64_t batch_offset(int64_t b, int nbd, const int64_t *bshape, const int64_t *bstride) {
  int64_t off = 0;
  for (int d = nbd - 1; d >= 0 && b > 0; d--) {
    off += (b % bshape[d]) * bstride[d];
    b /= bshape[d];
  }
  return off;
}

/* Can A's batch dims and rows merge into one row dim (so that a batch of
   [M,K] matrices is a single [nb*M,K] matrix)? Sets its row stride. */
static bool fold_rows(const mat *A, int nbd, const int64_t *bshape, int64_t *rs) {
  int64_t size = 1, stride = A->rs;
  bool have = false;
  if (A->rows != 1) size = A->rows, have = true;
  for (int d = nbd - 1; d >= 0; d--) {
    if (bshape[d] == 1) continue;
    if (!have) {
      size = bshape[d], stride = A->bstride[d], have = true;
      continue;
    }
    if (A->bstride[d] != stride * size) return false;
    size *= bshape[d];
  }
  *rs = stride;
  return true;
}

/* ------------------------------------------------------------------ */
/* Kernels                                                              */
/* ------------------------------------------------------------------ */

static void gemv(vl_dtype dt, bool trans, int rows, int cols, double alpha, const char *A, int lda,
                 const char *x, int incx, double beta, char *y) {
  CBLAS_TRANSPOSE T = trans ? CblasTrans : CblasNoTrans;
  if (beta == 0) {
    /* y may be uninitialised (NaN bits); BLAS says beta = 0 ignores it,
       but some OpenBLAS versions scale it by 0 instead */
    memset(y, 0, (size_t)(trans ? cols : rows) * vl_dtype_size(dt));
  }
  if (dt == VL_FLOAT32)
    cblas_sgemv(CblasRowMajor, T, rows, cols, (float)alpha, (const float *)A, lda,
                (const float *)x, incx, (float)beta, (float *)y, 1);
  else
    cblas_dgemv(CblasRowMajor, T, rows, cols, alpha, (const double *)A, lda, (const double *)x,
                incx, beta, (double *)y, 1);
}

/* C = alpha * op(A) @ op(B) + beta * C, C row-major with leading dim ldc.
   A matrix-vector product (N or M is 1) goes to gemv, which does not pack
   its operands the way gemm does. */
static void gemm(vl_dtype dt, bool ta, bool tb, int M, int N, int K, double alpha, const char *A,
                 int lda, const char *B, int ldb, double beta, char *C, int ldc) {
  if (N == 1) {
    /* C[:,0] = op(A) @ B[:,0]; B[k,0] sits at k*ldb (row-major) or k (transposed) */
    if (ta)
      gemv(dt, true, K, M, alpha, A, lda, B, tb ? 1 : ldb, beta, C);
    else
      gemv(dt, false, M, K, alpha, A, lda, B, tb ? 1 : ldb, beta, C);
    return;
  }
  if (M == 1) {
    /* C[0,:] = op(B)^T @ A[0,:]; A[0,k] sits at k (row-major) or k*lda (transposed) */
    if (tb)
      gemv(dt, false, N, K, alpha, B, ldb, A, ta ? lda : 1, beta, C);
    else
      gemv(dt, true, K, N, alpha, B, ldb, A, ta ? lda : 1, beta, C);
    return;
  }
  if (dt == VL_FLOAT32) {
    vl_sgemm(ta, tb, M, N, K, (float)alpha, (const float *)A, lda, (const float *)B, ldb, (float)beta,
             (float *)C, ldc);
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              (const double *)A, lda, (const double *)B, ldb, beta, (double *)C, ldc);
}

/* Integers as unsigned 64-bit: sums and products wrap instead of
   overflowing, and truncate to the dtype's width like PyTorch's. */
static inline uint64_t load_u(const char *base, int64_t i, vl_dtype dt) {
  switch (dt) {
    case VL_INT64: return (uint64_t)((const int64_t *)base)[i];
    case VL_INT32: return (uint64_t)(int64_t)((const int32_t *)base)[i];
    case VL_UINT8: return ((const uint8_t *)base)[i];
    default: return 0;
  }
}

static inline void store_u(char *base, int64_t i, vl_dtype dt, uint64_t v) {
  switch (dt) {
    case VL_INT64: ((int64_t *)base)[i] = (int64_t)v; break;
    case VL_INT32: ((int32_t *)base)[i] = (int32_t)(uint32_t)v; break;
    case VL_UINT8: ((uint8_t *)base)[i] = (uint8_t)v; break;
    default: break;
  }
}

/* C[b] = alpha * A[b] @ B[b] + beta * C[b] on integers (beta == 0: C's
   old contents are ignored). C is contiguous [nb, M, N]. */
static void gemm_int(vl_dtype dt, int nbd, const int64_t *bshape, int64_t nb, const mat *A,
                     const mat *B, int64_t K, int64_t alpha, int64_t beta, char *C) {
  int64_t M = A->rows, N = B->cols, rows = nb * M;
  double work = (double)rows * (double)N * (double)K;
  const char *ad = (const char *)A->data, *bd = (const char *)B->data;
#pragma omp parallel for if (work > VL_PARALLEL_GRAIN)
  for (int64_t r = 0; r < rows; r++) {
    int64_t b = r / M, i = r % M;
    int64_t ao = A->offset + batch_offset(b, nbd, bshape, A->bstride) + i * A->rs;
    int64_t bo = B->offset + batch_offset(b, nbd, bshape, B->bstride);
    for (int64_t j = 0; j < N; j++) {
      uint64_t acc = 0;
      for (int64_t k = 0; k < K; k++)
        acc += load_u(ad, ao + k * A->cs, dt) * load_u(bd, bo + k * B->rs + j * B->cs, dt);
      acc *= (uint64_t)alpha;
      if (beta != 0) acc += (uint64_t)beta * load_u(C, r * N + j, dt);
      store_u(C, r * N + j, dt, acc);
    }
  }
}

/* C[b] = alpha * A[b] @ B[b] + beta * C[b] with BLAS; A and B already
   have BLAS layouts. */
static void gemm_blas(vl_dtype dt, int nbd, const int64_t *bshape, int64_t nb, const mat *A,
                      const mat *B, int64_t K, double alpha, double beta, char *C) {
  size_t es = vl_dtype_size(dt);
  int64_t M = A->rows, N = B->cols;
  bool ta, tb;
  int lda, ldb;
  blas_layout(B->rows, B->cols, B->rs, B->cs, &tb, &ldb);

  /* B shared by every batch and A's batches folding into its rows: one
     [nb*M, K] @ [K, N] GEMM (C is contiguous, so it folds the same way). */
  bool b_shared = true;
  for (int d = 0; d < nbd; d++)
    if (bshape[d] != 1 && B->bstride[d] != 0) b_shared = false;
  int64_t frs;
  if (nb > 1 && b_shared && nb * M <= VL_BLAS_INT_MAX && fold_rows(A, nbd, bshape, &frs) &&
      blas_layout(nb * M, A->cols, frs, A->cs, &ta, &lda)) {
    gemm(dt, ta, tb, (int)(nb * M), (int)N, (int)K, alpha,
         A->data + (size_t)A->offset * es, lda, B->data + (size_t)B->offset * es, ldb, beta, C,
         (int)N);
    return;
  }

  blas_layout(A->rows, A->cols, A->rs, A->cs, &ta, &lda);
  int threads = omp_get_max_threads();
  double work = (double)M * (double)N * (double)K;
  bool split = nb > 1 && threads > 1 && nb >= threads && work <= VL_GEMM_SPLIT_WORK &&
               !omp_in_parallel();
  int blas_threads = 0;
  if (split) {
    blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
  }
#pragma omp parallel for if (split) schedule(static)
  for (int64_t b = 0; b < nb; b++) {
    int64_t ao = A->offset + batch_offset(b, nbd, bshape, A->bstride);
    int64_t bo = B->offset + batch_offset(b, nbd, bshape, B->bstride);
    gemm(dt, ta, tb, (int)M, (int)N, (int)K, alpha, A->data + (size_t)ao * es, lda,
         B->data + (size_t)bo * es, ldb, beta, C + (size_t)(b * M * N) * es, (int)N);
  }
  if (split) openblas_set_num_threads(blas_threads);
}

/* ------------------------------------------------------------------ */
/* The shared driver                                                    */
/* ------------------------------------------------------------------ */

static int check_dtypes(const char *op, const vl_tensor *a, const vl_tensor *b) {
  if (a->dtype != b->dtype)
    return vl_error(VL_EDTYPE, "%s: expected both tensors to have the same dtype, got %s and %s", op,
                    vl_dtype_name(a->dtype), vl_dtype_name(b->dtype));
  if (a->dtype == VL_BOOL)
    return vl_error(VL_EDTYPE, "%s: bool tensors are not supported (convert to a number dtype first)",
                    op);
  return VL_OK;
}

static int mismatch(const char *op, const vl_tensor *a, const vl_tensor *b, int64_t ka, int64_t kb) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  return vl_error(VL_ESHAPE, "%s: shapes %s and %s cannot be multiplied (%lld ~= %lld)", op,
                  vl_shape_str(a->ndim, a->shape, s1), vl_shape_str(b->ndim, b->shape, s2),
                  (long long)ka, (long long)kb);
}

/* Scale a contiguous tensor by beta in place (beta == 0 zeroes it). */
static void scale_(vl_tensor *t, double beta) {
  if (beta == 1) return;
  if (beta == 0) {
    vl_fill_(t, 0);
    return;
  }
  int64_t n = vl_numel(t);
  char *p = vl_data_ptr(t);
  for (int64_t i = 0; i < n; i++) {
    if (vl_dtype_is_float(t->dtype))
      vl_store(p, i, t->dtype, beta * vl_load(p, i, t->dtype));
    else
      store_u(p, i, t->dtype, (uint64_t)vl_double_to_i64(beta) * load_u(p, i, t->dtype));
  }
}

/* out = beta * c + alpha * A @ B over the batch dims `bshape`, for
   operands whose dtypes are checked and equal (c: same dtype or NULL; it
   broadcasts to out, which has shape out_shape = bshape + [M, N] with the
   size-1 dims of 1-D operands dropped). */
static vl_tensor *product(const char *op, int out_ndim, const int64_t *out_shape, int nbd,
                          const int64_t *bshape, mat *A, mat *B, const vl_tensor *c, double beta,
                          double alpha) {
  vl_dtype dt = A->t->dtype;
  int64_t K = A->cols;

  if (dt == VL_FLOAT16 || dt == VL_BFLOAT16) {
    /* compute in float32, round the result once */
    vl_tensor *a32 = vl_to_dtype(A->t, VL_FLOAT32), *b32 = vl_to_dtype(B->t, VL_FLOAT32);
    vl_tensor *c32 = c ? vl_to_dtype(c, VL_FLOAT32) : NULL, *r32 = NULL, *r = NULL;
    atomic_fetch_add(&copy_count, 2 + (c != NULL));
    if (a32 && b32 && (c == NULL || c32)) {
      mat A2, B2;
      mat_init(&A2, a32, A->mode, nbd, bshape);
      mat_init(&B2, b32, B->mode, nbd, bshape);
      r32 = product(op, out_ndim, out_shape, nbd, bshape, &A2, &B2, c32, beta, alpha);
      if (r32) r = vl_to_dtype(r32, dt);
    }
    vl_tensor_release(a32), vl_tensor_release(b32), vl_tensor_release(c32), vl_tensor_release(r32);
    return r;
  }

  bool is_float = dt == VL_FLOAT32 || dt == VL_FLOAT64;
  if (is_float) {
    int64_t sizes[3] = {A->rows, B->cols, K};
    for (int i = 0; i < 3; i++)
      if (sizes[i] > VL_BLAS_INT_MAX)
        return vl_error(VL_EARG, "%s: size %lld exceeds the BLAS limit %d", op, (long long)sizes[i],
                        VL_BLAS_INT_MAX),
               NULL;
  } else if (alpha != floor(alpha) || beta != floor(beta) || fabs(alpha) > 9e18 || fabs(beta) > 9e18) {
    return vl_error(VL_EARG, "%s: alpha and beta must be integers for %s tensors, got alpha=%g beta=%g",
                    op, vl_dtype_name(dt), alpha, beta),
           NULL;
  }

  vl_tensor *out = vl_empty(out_ndim, out_shape, dt);
  if (out == NULL) return NULL;
  if (vl_numel(out) == 0) return out;
  if (c && beta != 0 && vl_copy_(out, c) != VL_OK) goto fail;

  int64_t nb = 1;
  for (int d = 0; d < nbd; d++) nb *= bshape[d];
  char *C = vl_data_ptr(out);

  if (K == 0) {
    scale_(out, c ? beta : 0);
    return out;
  }
  if (!is_float) {
    gemm_int(dt, nbd, bshape, nb, A, B, K, vl_double_to_i64(alpha), c ? vl_double_to_i64(beta) : 0, C);
    return out;
  }

  /* Operands BLAS cannot read as they are become contiguous copies. */
  vl_tensor *copies[2] = {NULL, NULL};
  mat *ops[2] = {A, B};
  for (int i = 0; i < 2; i++) {
    mat *m = ops[i];
    bool tr;
    int ld;
    if (blas_layout(m->rows, m->cols, m->rs, m->cs, &tr, &ld)) continue;
    copies[i] = vl_contiguous(m->t);
    if (copies[i] == NULL) {
      vl_tensor_release(copies[0]);
      goto fail;
    }
    atomic_fetch_add(&copy_count, 1);
    mat_init(m, copies[i], m->mode, nbd, bshape);
  }
  gemm_blas(dt, nbd, bshape, nb, A, B, K, alpha, c ? beta : 0, C);
  vl_tensor_release(copies[0]);
  vl_tensor_release(copies[1]);
  return out;

fail:
  vl_tensor_release(out);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* dot                                                                  */
/* ------------------------------------------------------------------ */

static vl_tensor *dot_impl(const char *op, const vl_tensor *a, const vl_tensor *b) {
  if (a->shape[0] != b->shape[0]) return mismatch(op, a, b, a->shape[0], b->shape[0]), NULL;
  if (check_dtypes(op, a, b) != VL_OK) return NULL;
  vl_dtype dt = a->dtype;
  vl_tensor *out = vl_empty(0, NULL, dt);
  if (out == NULL) return NULL;
  int64_t n = a->shape[0], sa = a->stride[0], sb = b->stride[0];
  const char *pa = vl_data_ptr(a), *pb = vl_data_ptr(b);
  char *po = vl_data_ptr(out);
  bool blas = n <= VL_BLAS_INT_MAX && sa > 0 && sb > 0 && sa <= VL_BLAS_INT_MAX &&
              sb <= VL_BLAS_INT_MAX;
  if (dt == VL_FLOAT32 && blas) {
    *(float *)po = cblas_sdot((int)n, (const float *)pa, (int)sa, (const float *)pb, (int)sb);
  } else if (dt == VL_FLOAT64 && blas) {
    *(double *)po = cblas_ddot((int)n, (const double *)pa, (int)sa, (const double *)pb, (int)sb);
  } else if (vl_dtype_is_float(dt)) {
    double acc = 0;
    for (int64_t i = 0; i < n; i++) acc += vl_load(pa, i * sa, dt) * vl_load(pb, i * sb, dt);
    vl_store(po, 0, dt, acc);
  } else {
    uint64_t acc = 0;
    for (int64_t i = 0; i < n; i++) acc += load_u(pa, i * sa, dt) * load_u(pb, i * sb, dt);
    store_u(po, 0, dt, acc);
  }
  return out;
}


/* ------------------------------------------------------------------ */
/* matmul and friends                                                   */
/* ------------------------------------------------------------------ */

/* PyTorch's matmul: 1-D @ 1-D is a dot product; a 1-D left operand is a
   row [1,K] and a 1-D right operand a column [K,1], their size-1 dim
   dropped from the result; the dims before the last two are batch dims
   and broadcast. c (addmm) broadcasts to the result. */
static vl_tensor *matmul_impl(const char *op, const vl_tensor *a, const vl_tensor *b,
                              const vl_tensor *c, double beta, double alpha) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (a == NULL || b == NULL) return vl_error(VL_EARG, "%s: tensor argument is NULL", op), NULL;
  if (a->ndim == 0 || b->ndim == 0)
    return vl_error(VL_ESHAPE, "%s: both arguments need at least 1 dim, got shapes %s and %s", op,
                    vl_shape_str(a->ndim, a->shape, s1), vl_shape_str(b->ndim, b->shape, s2)),
           NULL;
  if (a->ndim == 1 && b->ndim == 1 && c == NULL) return dot_impl(op, a, b);

  int64_t ka = a->shape[a->ndim - 1];
  int64_t kb = b->ndim == 1 ? b->shape[0] : b->shape[b->ndim - 2];
  if (ka != kb) return mismatch(op, a, b, ka, kb), NULL;
  if (check_dtypes(op, a, b) != VL_OK) return NULL;

  /* batch dims, broadcast */
  int na = a->ndim > 2 ? a->ndim - 2 : 0, nbb = b->ndim > 2 ? b->ndim - 2 : 0;
  int nbd = VL_MAX(na, nbb);
  int64_t bshape[VL_MAX_DIMS];
  for (int d = 0; d < nbd; d++) {
    int da = d - (nbd - na), db = d - (nbd - nbb);
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa != sb && sa != 1 && sb != 1)
      return vl_error(VL_ESHAPE,
                      "%s: shapes %s and %s cannot be multiplied (batch dims %s and %s do not "
                      "broadcast: %lld ~= %lld)",
                      op, vl_shape_str(a->ndim, a->shape, s1), vl_shape_str(b->ndim, b->shape, s2),
                      vl_shape_str(na, a->shape, (char[VL_SHAPE_STR]){0}),
                      vl_shape_str(nbb, b->shape, (char[VL_SHAPE_STR]){0}), (long long)sa,
                      (long long)sb),
             NULL;
    bshape[d] = sa == 1 ? sb : sa;
  }

  mat A, B;
  mat_init(&A, a, a->ndim == 1 ? AS_ROW : AS_MATRIX, nbd, bshape);
  mat_init(&B, b, b->ndim == 1 ? AS_COL : AS_MATRIX, nbd, bshape);
  int64_t out_shape[VL_MAX_DIMS];
  int out_ndim = 0;
  for (int d = 0; d < nbd; d++) out_shape[out_ndim++] = bshape[d];
  if (a->ndim > 1) out_shape[out_ndim++] = A.rows;
  if (b->ndim > 1) out_shape[out_ndim++] = B.cols;

  if (c) {
    if (c->dtype != a->dtype)
      return vl_error(VL_EDTYPE, "%s: expected c to have the dtype of a and b (%s), got %s", op,
                      vl_dtype_name(a->dtype), vl_dtype_name(c->dtype)),
             NULL;
    bool fits = c->ndim <= out_ndim;
    for (int d = 0; fits && d < c->ndim; d++) {
      int64_t s = c->shape[d], o = out_shape[out_ndim - c->ndim + d];
      if (s != o && s != 1) fits = false;
    }
    if (!fits)
      return vl_error(VL_ESHAPE, "%s: c of shape %s does not broadcast to the result shape %s", op,
                      vl_shape_str(c->ndim, c->shape, s1), vl_shape_str(out_ndim, out_shape, s2)),
             NULL;
  }
  return product(op, out_ndim, out_shape, nbd, bshape, &A, &B, c, beta, alpha);
}

/* ------------------------------------------------------------------ */
/* Autograd                                                             */
/* ------------------------------------------------------------------ */

enum { AG_MATMUL, AG_OUTER }; /* iarg[0]: how the node's product was formed */


/* Save t (NULL: an empty slot, nothing kept alive) and return its slot. */
static int save_opt(vl_node *n, const vl_tensor *t) {
  if (t) return vl_ag_save(n, t);
  if (n->nsaved == VL_NODE_MAX_ARGS) {
    vl_error(VL_ESTATE, "%s: more than %d tensors saved for backward", n->name, VL_NODE_MAX_ARGS);
    return -1;
  }
  n->saved[n->nsaved] = NULL;
  return n->nsaved++;
}

static vl_tensor *scaled(const vl_tensor *g, double s) {
  if (s == 1) {
    vl_tensor_retain((vl_tensor *)g);
    return (vl_tensor *)g;
  }
  vl_tensor *k = vl_scalar(s, g->dtype);
  vl_tensor *r = k ? vl_binary(VL_MUL, g, k) : NULL;
  vl_tensor_release(k);
  return r;
}

/* The product of two matrices with alpha folded into the GEMM. */
static vl_tensor *prod_alpha(const char *op, const vl_tensor *x, const vl_tensor *y, double alpha) {
  return matmul_impl(op, x, y, NULL, 0, alpha);
}

/* Backward of matmul, mm, bmm, addmm, dot and outer. saved[0] is a
   (kept when b needs a gradient), saved[1] is b (kept when a does);
   arg[0] = alpha, arg[1] = beta; input 2 is addmm's c. */
static int matmul_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
  const vl_tensor *a = n->saved[0], *b = n->saved[1];
  double alpha = n->arg[0], beta = n->arg[1];
  int na = n->in_ndim[0], nb = n->in_ndim[1];
  const char *op = n->name;

  if (n->ninputs > 2 && n->needs[2]) {
    gi[2] = vl_ag_reduce_to(n, 2, scaled(g, beta));
    if (gi[2] == NULL) return vl_last_status();
  }
  if (n->iarg[0] == AG_OUTER) { /* g [M,N]: da = g @ b, db = a @ g (= g^T a) */
    if (n->needs[0] && (gi[0] = vl_ag_reduce_to(n, 0, prod_alpha(op, g, b, 1))) == NULL) return vl_last_status();
    if (n->needs[1] && (gi[1] = vl_ag_reduce_to(n, 1, prod_alpha(op, a, g, 1))) == NULL) return vl_last_status();
    return VL_OK;
  }
  if (na == 1 && nb == 1) { /* dot: g is 0-d */
    if (n->needs[0] && (gi[0] = vl_ag_reduce_to(n, 0, vl_binary(VL_MUL, g, b))) == NULL) return vl_last_status();
    if (n->needs[1] && (gi[1] = vl_ag_reduce_to(n, 1, vl_binary(VL_MUL, g, a))) == NULL) return vl_last_status();
    return VL_OK;
  }

  /* G: the gradient with the size-1 dims of 1-D operands put back, so
     that it is [..., M, N] like a product of matrices. */
  vl_tensor *G = NULL;
  if (na == 1) G = vl_unsqueeze(g, -2);
  else if (nb == 1) G = vl_unsqueeze(g, -1);
  else G = (vl_tensor_retain((vl_tensor *)g), (vl_tensor *)g);
  if (G == NULL) return vl_last_status();
  int rc = VL_OK;

  if (n->needs[0]) { /* dA = alpha * G @ B^T */
    vl_tensor *bt = nb == 1 ? vl_unsqueeze(b, 0) : vl_transpose(b, nb - 2, nb - 1);
    vl_tensor *r = bt ? prod_alpha(op, G, bt, alpha) : NULL;
    vl_tensor_release(bt);
    if (r && na == 1) { /* [..., 1, K] -> [..., K] */
      vl_tensor *s = vl_squeeze(r, r->ndim - 2);
      vl_tensor_release(r);
      r = s;
    }
    if ((gi[0] = vl_ag_reduce_to(n, 0, r)) == NULL) rc = vl_last_status();
  }

  if (rc == VL_OK && n->needs[1]) { /* dB = alpha * A^T @ G */
    vl_tensor *r = NULL;
    if (nb <= 2 && G->ndim > 2) {
      /* B is shared by every batch (a linear layer): fold A's and G's
         batch dims into their rows, one [K, rows] @ [rows, N] GEMM
         instead of a batch of products summed afterwards. */
      int64_t rows = 1;
      for (int d = 0; d < na - 1; d++) rows *= a->shape[d];
      int64_t ash[2] = {rows, a->shape[na - 1]}, gsh[2] = {rows, G->shape[G->ndim - 1]};
      vl_tensor *a2 = vl_reshape(a, 2, ash), *g2 = a2 ? vl_reshape(G, 2, gsh) : NULL;
      vl_tensor *a2t = g2 ? vl_transpose(a2, 0, 1) : NULL;
      r = a2t ? prod_alpha(op, a2t, g2, alpha) : NULL;
      vl_tensor_release(a2), vl_tensor_release(g2), vl_tensor_release(a2t);
    } else {
      vl_tensor *at = na == 1 ? vl_unsqueeze(a, 1) : vl_transpose(a, na - 2, na - 1);
      r = at ? prod_alpha(op, at, G, alpha) : NULL;
      vl_tensor_release(at);
    }
    if (r && nb == 1) { /* [..., K, 1] -> [..., K] */
      vl_tensor *s = vl_squeeze(r, r->ndim - 1);
      vl_tensor_release(r);
      r = s;
    }
    if ((gi[1] = vl_ag_reduce_to(n, 1, r)) == NULL) rc = vl_last_status();
  }
  vl_tensor_release(G);
  return rc;
}

/* Record the node of a product on out (rec: an input required grad when
   the op began). Integer results take no part in autograd. */
static vl_tensor *record_product(vl_tensor *out, bool rec, const char *name, int kind, const vl_tensor *a,
                                 const vl_tensor *b, const vl_tensor *c, double beta, double alpha) {
  if (out == NULL || !rec || !vl_dtype_is_float(out->dtype)) return out;
  vl_node *n = vl_ag_node(name, matmul_backward, c ? 3 : 2, (const vl_tensor *[]){a, b, c});
  if (n) {
    n->iarg[0] = kind;
    n->arg[0] = alpha;
    n->arg[1] = beta;
  }
  /* a's gradient needs b and b's needs a: keep only what is used */
  if (n == NULL || save_opt(n, n->needs[1] ? a : NULL) < 0 || save_opt(n, n->needs[0] ? b : NULL) < 0 ||
      vl_ag_attach(out, n) != VL_OK) {
    vl_ag_node_release(n);
    vl_tensor_release(out);
    return NULL;
  }
  return out;
}

/* op(a, b[, c]) computed with recording off, then recorded. */
static vl_tensor *recorded(const char *name, const vl_tensor *a, const vl_tensor *b, const vl_tensor *c,
                           double beta, double alpha) {
  bool rec = vl_ag_needed(3, (const vl_tensor *[]){a, b, c});
  bool was = vl_ag_pause();
  vl_tensor *out = matmul_impl(name, a, b, c, beta, alpha);
  vl_set_grad_enabled(was);
  return record_product(out, rec, name, AG_MATMUL, a, b, c, beta, alpha);
}

/* ------------------------------------------------------------------ */
/* Public entry points                                                  */
/* ------------------------------------------------------------------ */

vl_tensor *vl_dot(const vl_tensor *a, const vl_tensor *b) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (a == NULL || b == NULL) return vl_error(VL_EARG, "dot: tensor argument is NULL"), NULL;
  if (a->ndim != 1 || b->ndim != 1)
    return vl_error(VL_ESHAPE, "dot: expected 1-D tensors, got shapes %s and %s",
                    vl_shape_str(a->ndim, a->shape, s1), vl_shape_str(b->ndim, b->shape, s2)),
           NULL;
  bool rec = vl_ag_needed(2, (const vl_tensor *[]){a, b});
  vl_tensor *out = dot_impl("dot", a, b);
  return record_product(out, rec, "dot", AG_MATMUL, a, b, NULL, 0, 1);
}

vl_tensor *vl_matmul(const vl_tensor *a, const vl_tensor *b) { return recorded("matmul", a, b, NULL, 0, 1); }

static int need_dims(const char *op, const vl_tensor *a, const vl_tensor *b, int nd) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  if (a == NULL || b == NULL) return vl_error(VL_EARG, "%s: tensor argument is NULL", op);
  if (a->ndim != nd || b->ndim != nd)
    return vl_error(VL_ESHAPE, "%s: expected %d-D tensors, got shapes %s and %s", op, nd,
                    vl_shape_str(a->ndim, a->shape, s1), vl_shape_str(b->ndim, b->shape, s2));
  return VL_OK;
}

vl_tensor *vl_mm(const vl_tensor *a, const vl_tensor *b) {
  if (need_dims("mm", a, b, 2) != VL_OK) return NULL;
  return recorded("mm", a, b, NULL, 0, 1);
}

vl_tensor *vl_bmm(const vl_tensor *a, const vl_tensor *b) {
  if (need_dims("bmm", a, b, 3) != VL_OK) return NULL;
  if (a->shape[0] != b->shape[0]) {
    char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "bmm: batch sizes of shapes %s and %s differ (%lld ~= %lld)",
                    vl_shape_str(a->ndim, a->shape, s1), vl_shape_str(b->ndim, b->shape, s2),
                    (long long)a->shape[0], (long long)b->shape[0]),
           NULL;
  }
  return recorded("bmm", a, b, NULL, 0, 1);
}

vl_tensor *vl_addmm(const vl_tensor *c, const vl_tensor *a, const vl_tensor *b, double beta,
                    double alpha) {
  if (c == NULL) return vl_error(VL_EARG, "addmm: tensor argument is NULL"), NULL;
  if (need_dims("addmm", a, b, 2) != VL_OK) return NULL;
  return recorded("addmm", a, b, c, beta, alpha);
}

vl_tensor *vl_outer(const vl_tensor *a, const vl_tensor *b) {
  if (need_dims("outer", a, b, 1) != VL_OK) return NULL;
  if (check_dtypes("outer", a, b) != VL_OK) return NULL;
  mat A, B;
  mat_init(&A, a, AS_COL, 0, NULL);
  mat_init(&B, b, AS_ROW, 0, NULL);
  int64_t shape[2] = {a->shape[0], b->shape[0]};
  bool rec = vl_ag_needed(2, (const vl_tensor *[]){a, b});
  bool was = vl_ag_pause();
  vl_tensor *out = product("outer", 2, shape, 0, NULL, &A, &B, NULL, 0, 1);
  vl_set_grad_enabled(was);
  return record_product(out, rec, "outer", AG_OUTER, a, b, NULL, 0, 1);
}
