/*
** conv_internal.h — helpers shared by the convolution and pooling files
** (conv.c: 1-D/2-D, conv3d.c: 3-D): the GEMM call, how a batch is split
** over threads, scratch buffers, working copies, the unbatched wrapper
** and PyTorch's pooling output size. Not installed.
*/
#ifndef VL_CONV_INTERNAL_H
#define VL_CONV_INTERNAL_H

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"
#include "vl_internal.h"

/* A batch whose GEMMs add up to fewer multiply-adds than this runs on one
   thread: starting the threads costs more (tiny convolutions, gradcheck). */
#define VL_CONV_PAR_WORK (1 << 20)

/* C[M,N] = op(A) @ op(B) + beta * C, row-major. Empty sizes are handled
   here (BLAS leaves C alone when K is 0, even with beta 0). */
static inline void gemm(vl_dtype dt, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                 const void *B, int64_t ldb, double beta, void *C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == 0) {
      size_t es = vl_dtype_size(dt);
      for (int64_t i = 0; i < M; i++) memset((char *)C + (size_t)(i * ldc) * es, 0, (size_t)N * es);
    }
    return;
  }
  if (dt == VL_FLOAT32) {
    vl_sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, (float)beta, C, ldc);
    return;
  }
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N,
              (int)K, 1.0, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

/* How a batch loop runs: images over OpenMP threads (OpenBLAS on one
   thread inside), or one image at a time with threaded BLAS and im2col. */
typedef struct batch_plan {
  bool par;          /* images over threads */
  int nthreads;      /* threads the image loop may use */
  int blas_threads;  /* OpenBLAS's count, restored after */
} batch_plan;

/* `work`: the batch's multiply-adds. */
static inline batch_plan plan_begin(double work, int64_t N) {
  batch_plan p = {false, 1, 0};
  int t = omp_get_max_threads();
  if (N > 1 && t > 1 && work > VL_CONV_PAR_WORK && !omp_in_parallel()) {
    p.par = true;
    p.nthreads = (int)VL_MIN((int64_t)t, N);
    p.blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
  }
  return p;
}

static inline void plan_end(const batch_plan *p) {
  if (p->par) openblas_set_num_threads(p->blas_threads);
}

/* A scratch buffer of `n` elements (through the tensor allocator, so the
   memory cap applies). */
static inline vl_tensor *scratch(int64_t n, vl_dtype dt) {
  int64_t shape[1] = {n};
  return vl_empty(1, shape, dt);
}

/* Recording is switched off while an op builds its working copies (they
   are not part of the graph), then restored. */
typedef struct grad_guard {
  bool was;
} grad_guard;

static inline grad_guard grad_off(void) {
  grad_guard g = {vl_is_grad_enabled()};
  vl_set_grad_enabled(false);
  return g;
}

static inline void grad_restore(grad_guard g) { vl_set_grad_enabled(g.was); }

/* The dtype the kernels run in for a tensor of dtype dt. */
static inline vl_dtype compute_dtype(vl_dtype dt) { return dt == VL_FLOAT64 ? VL_FLOAT64 : VL_FLOAT32; }

/* A contiguous copy in dtype cdt (or t itself, retained). */
static inline vl_tensor *working(const vl_tensor *t, vl_dtype cdt) {
  vl_tensor *c = vl_to_dtype(t, cdt);
  if (c == NULL) return NULL;
  vl_tensor *r = vl_contiguous(c);
  vl_tensor_release(c);
  return r;
}

static inline int need_float(const char *op, const char *what, const vl_tensor *t) {
  if (!vl_dtype_is_float(t->dtype))
    return vl_error(VL_EDTYPE, "%s: expected a floating-point %s, got %s (convert it with :to(\"float32\"))", op,
                    what, vl_dtype_name(t->dtype));
  return VL_OK;
}

/* Unbatched input: add a batch dim, run, take it off again (views, so
   autograd flows through). */
typedef vl_tensor *(*batched_fn)(const vl_tensor *x, const void *args);

static inline vl_tensor *unbatched(const vl_tensor *x, batched_fn fn, const void *args) {
  vl_tensor *xb = vl_unsqueeze(x, 0);
  if (xb == NULL) return NULL;
  vl_tensor *y = fn(xb, args);
  vl_tensor_release(xb);
  if (y == NULL) return NULL;
  vl_tensor *r = vl_squeeze(y, 0);
  vl_tensor_release(y);
  return r;
}

/* PyTorch's pooling_output_shape. */
/* The end of a convolution's forward (2-D and 3-D): when rc is VL_OK and
   gradients are needed, record the node with a malloc'ed copy of the
   ctx_size bytes at ctx as its extra and the working copies xc, wc saved;
   then release xc and wc. Returns y, or NULL (y released) on failure. */
static inline vl_tensor *conv_finish(const char *op, int rc, bool need, vl_backward_fn backward,
                                     const vl_tensor *x, const vl_tensor *w, const vl_tensor *b, vl_tensor *xc,
                                     vl_tensor *wc, vl_tensor *y, const void *ctx, size_t ctx_size) {
  if (rc == VL_OK && need) {
    vl_node *n = vl_ag_node(op, backward, b ? 3 : 2, (const vl_tensor *[]){x, w, b});
    void *cx = n ? malloc(ctx_size) : NULL;
    if (n && cx) {
      memcpy(cx, ctx, ctx_size);
      n->extra = cx, n->free_extra = free;
    }
    if (n == NULL || cx == NULL || vl_ag_save(n, xc) < 0 || vl_ag_save(n, wc) < 0 || vl_ag_attach(y, n) != VL_OK) {
      if (n && cx == NULL) vl_error(VL_ENOMEM, "%s: out of memory for the autograd node", op);
      vl_ag_node_release(n);
      rc = vl_last_status();
    }
  }
  vl_tensor_release(xc);
  vl_tensor_release(wc);
  if (rc != VL_OK) {
    vl_tensor_release(y);
    return NULL;
  }
  return y;
}

static inline int64_t pool_out(int64_t in, int64_t k, int64_t pad, int64_t s, int64_t d, bool ceil_mode) {
  int64_t num = in + 2 * pad - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t q = num >= 0 ? num / s : -((-num + s - 1) / s); /* floor division */
  int64_t o = q + 1;
  if (ceil_mode && (o - 1) * s >= in + pad) o--;
  return o;
}

#endif /* VL_CONV_INTERNAL_H */
