/*
** limits.c — what this machine can do, for the benchmarks to compare with:
** raw OpenBLAS cblas_sgemm throughput for given shapes, and memory bandwidth
** of a plain C copy loop. Built and run by the scripts in scripts/bench:
**
**   cc -O3 -march=native -fopenmp scripts/bench/limits.c $(pkg-config --cflags --libs openblas) -o limits
**   ./limits copy N                      16M floats: copy 16777216
**   ./limits sgemm B,M,N,K,TB,SHARED ... C[b] = A[b] @ op(B[b]), float32
**
** TB is n (B[b] is [K,N]) or t (B[b] is stored [N,K] and passed CblasTrans,
** like k^T in attention). SHARED 1: one B for every batch (a linear layer),
** which can also run as one [B*M,K] @ [K,N] GEMM. Output, one line each:
**   copy N <GB/s warm destination> <GB/s fresh destination each time>
**   sgemm SPEC <GFLOP/s best> <how> <GFLOP/s plain loop>
**   core <OpenBLAS core name> threads <n>
** GB/s counts bytes read + bytes written; GFLOP/s counts 2*B*M*N*K.
** Thread count: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS as set by the caller.
** Each figure is the best of repeated runs (at least VL_BENCH_MIN_RUNS, for
** at least VL_BENCH_MIN_SECONDS).
*/
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VL_BENCH_MIN_RUNS 3        /* repetitions at least */
#define VL_BENCH_MIN_SECONDS 0.4   /* and this long in all */

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Best time of fn over repeated runs (one warm-up run first). */
static double best_time(void (*fn)(void *), void *ctx) {
  fn(ctx);
  double best = 1e30, start = now();
  for (int r = 0; r < VL_BENCH_MIN_RUNS || now() - start < VL_BENCH_MIN_SECONDS; r++) {
    double t0 = now();
    fn(ctx);
    double t = now() - t0;
    if (t < best) best = t;
  }
  return best;
}

/* ---- memory bandwidth ------------------------------------------------ */

typedef struct {
  int64_t n;
  float *src, *dst;
} copy_ctx;

static void copy_loop(float *restrict dst, const float *restrict src, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

static void copy_warm(void *p) {
  copy_ctx *c = p;
  copy_loop(c->dst, c->src, c->n);
}

static void copy_fresh(void *p) {
  copy_ctx *c = p;
  float *dst = malloc((size_t)c->n * sizeof(float));
  if (dst == NULL) return;
  copy_loop(dst, c->src, c->n);
  c->dst[c->n / 2] = dst[c->n / 2]; /* keep the copy alive */
  free(dst);
}

static int bench_copy(int64_t n) {
  copy_ctx c = {n, malloc((size_t)n * sizeof(float)), malloc((size_t)n * sizeof(float))};
  if (c.src == NULL || c.dst == NULL) return fprintf(stderr, "limits: out of memory\n"), 1;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) c.src[i] = (float)(i & 1023), c.dst[i] = 0;
  double bytes = 2.0 * (double)n * sizeof(float);
  double warm = best_time(copy_warm, &c), fresh = best_time(copy_fresh, &c);
  printf("copy %lld %.2f %.2f\n", (long long)n, bytes / warm * 1e-9, bytes / fresh * 1e-9);
  free(c.src), free(c.dst);
  return 0;
}

/* ---- sgemm ------------------------------------------------------------ */

typedef struct {
  int B, M, N, K, shared;
  char tb;
  float *a, *b, *c;
} gemm_ctx;

static void one(const gemm_ctx *g, int i) {
  const float *b = g->b + (g->shared ? 0 : (size_t)i * g->K * g->N);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, g->tb == 't' ? CblasTrans : CblasNoTrans, g->M, g->N,
              g->K, 1.0f, g->a + (size_t)i * g->M * g->K, g->K, b, g->tb == 't' ? g->K : g->N,
              0.0f, g->c + (size_t)i * g->M * g->N, g->N);
}

/* A plain loop: OpenBLAS threads inside each GEMM. */
static void gemm_loop(void *p) {
  gemm_ctx *g = p;
  for (int i = 0; i < g->B; i++) one(g, i);
}

/* One GEMM per OpenMP thread, OpenBLAS single-threaded. */
static void gemm_split(void *p) {
  gemm_ctx *g = p;
  int nt = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < g->B; i++) one(g, i);
  openblas_set_num_threads(nt);
}

/* A shared B: the batch is one [B*M, K] @ [K, N] GEMM. */
static void gemm_fold(void *p) {
  gemm_ctx *g = p;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, g->tb == 't' ? CblasTrans : CblasNoTrans, g->B * g->M,
              g->N, g->K, 1.0f, g->a, g->K, g->b, g->tb == 't' ? g->K : g->N, 0.0f, g->c, g->N);
}

static int bench_sgemm(const char *spec) {
  gemm_ctx g = {0};
  if (sscanf(spec, "%d,%d,%d,%d,%c,%d", &g.B, &g.M, &g.N, &g.K, &g.tb, &g.shared) != 6 ||
      g.B < 1 || g.M < 1 || g.N < 1 || g.K < 1)
    return fprintf(stderr, "limits: bad sgemm spec '%s' (want B,M,N,K,TB,SHARED)\n", spec), 1;
  size_t na = (size_t)g.B * g.M * g.K, nb = (size_t)(g.shared ? 1 : g.B) * g.K * g.N,
         nc = (size_t)g.B * g.M * g.N;
  g.a = malloc(na * sizeof(float)), g.b = malloc(nb * sizeof(float)), g.c = malloc(nc * sizeof(float));
  if (!g.a || !g.b || !g.c) return fprintf(stderr, "limits: out of memory\n"), 1;
  for (size_t i = 0; i < na; i++) g.a[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
  for (size_t i = 0; i < nb; i++) g.b[i] = (float)((i * 5) % 11) * 0.1f - 0.5f;
  memset(g.c, 0, nc * sizeof(float));
  double flops = 2.0 * g.B * g.M * (double)g.N * g.K;
  double loop = flops / best_time(gemm_loop, &g) * 1e-9, best = loop;
  const char *how = "loop";
  if (g.B > 1 && omp_get_max_threads() > 1) {
    double split = flops / best_time(gemm_split, &g) * 1e-9;
    if (split > best) best = split, how = "split";
  }
  if (g.B > 1 && g.shared) {
    double fold = flops / best_time(gemm_fold, &g) * 1e-9;
    if (fold > best) best = fold, how = "fold";
  }
  printf("sgemm %s %.2f %s %.2f\n", spec, best, how, loop);
  free(g.a), free(g.b), free(g.c);
  return 0;
}

int main(int argc, char **argv) {
  int rc = 0;
  for (int i = 1; i < argc && rc == 0; i++) {
    if (strcmp(argv[i], "copy") == 0 && i + 1 < argc) {
      rc = bench_copy(atoll(argv[++i]));
    } else if (strcmp(argv[i], "sgemm") == 0) {
      while (i + 1 < argc && strchr(argv[i + 1], ',') && rc == 0) rc = bench_sgemm(argv[++i]);
    } else {
      fprintf(stderr, "usage: limits [copy N] [sgemm B,M,N,K,TB,SHARED ...]\n");
      return 2;
    }
    fflush(stdout);
  }
  printf("core %s threads %d\n", openblas_get_corename(), openblas_get_num_threads());
  return rc;
}
