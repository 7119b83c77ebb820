/*
** io_internal.h — shared by the tensor file formats: ops/io.c
** (safetensors, and the blob and atomic-write plumbing defined there),
** ops/npy.c (.npy) and ops/idx.c (IDX): error formatting, shape helpers,
** blobs, atomic writes and a growing byte buffer. Not installed.
*/
#ifndef VL_IO_INTERNAL_H
#define VL_IO_INTERNAL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vl_internal.h"

#define IO_MSG_MAX 400            /* the part of a message after "op: path: " */
#define IO_WRITE_CHUNK (1u << 30) /* largest single write(2)/gzread call, bytes */

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */

/* vl_error with an "op: path: " prefix. */
static inline int io_fail(vl_status code, const char *op, const char *path, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static inline int io_fail(vl_status code, const char *op, const char *path, const char *fmt, ...) {
  char msg[IO_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return vl_error(code, "%s: %s: %s", op, path, msg);
}

typedef unsigned long long ull;

/* Row-major strides of a shape (a dim of 0 counts as 1). */
static inline void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d] > 0 ? shape[d] : 1;
  }
}

/* Whether the strides of a shape fit int64 even when a dim of 0 makes it
   empty (the product of max(size, 1) does not overflow). */
static inline bool strides_fit(int ndim, const int64_t *shape) {
  int64_t s = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) return false;
    if (__builtin_mul_overflow(s, shape[d] > 0 ? shape[d] : 1, &s)) return false;
  }
  return true;
}

/* Reverse the bytes of each `width`-byte element (endianness). */
static inline void swap_bytes(unsigned char *p, size_t nbytes, size_t width) {
  if (width < 2) return;
  for (size_t i = 0; i + width <= nbytes; i += width)
    for (size_t a = 0, z = width - 1; a < z; a++, z--) {
      unsigned char t = p[i + a];
      p[i + a] = p[i + z];
      p[i + z] = t;
    }
}

/* ------------------------------------------------------------------ */
/* Blobs and atomic writes                                              */
/* ------------------------------------------------------------------ */

/* Blobs (io.c): a file's bytes, mmap'd privately (copy-on-write), or a
   private copy of caller memory; reference-counted so that tensors
   viewing them keep them alive. */
typedef struct io_blob {
  unsigned char *base;
  size_t len;
  int mapped; /* munmap, else free */
  long refcount;
} io_blob;

io_blob *vl__blob_map(const char *op, const char *path);
io_blob *vl__blob_copy(const char *op, const void *data, size_t len);
void vl__blob_release(io_blob *b);
/* A tensor over `nbytes` at `off` in the blob: a zero-copy view when it
   can be, else a private copy (byte-swapped when `swap`). */
vl_tensor *vl__blob_tensor(io_blob *b, size_t off, size_t nbytes, int ndim, const int64_t *shape,
                           const int64_t *stride, vl_dtype dt, bool swap);

/* Atomic writes (io.c): temp file next to the target, fsync, rename. On
   any failure the temporary is removed and the target left as it was. */
typedef struct io_atomic {
  int fd;
  char *tmp;
  const char *path;
  const char *op;
} io_atomic;

int vl__atomic_begin(io_atomic *a, const char *op, const char *path);
int vl__atomic_write(io_atomic *a, const void *data, size_t n);
/* Write a tensor's bytes in row-major order (a contiguous copy if needed). */
int vl__atomic_write_tensor(io_atomic *a, const vl_tensor *t);
int vl__atomic_commit(io_atomic *a);

/* ------------------------------------------------------------------ */
/* A growing byte buffer                                                */
/* ------------------------------------------------------------------ */

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static inline void sb_add(sbuf *b, const void *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static inline void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static inline void sb_printf(sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static inline void sb_printf(sbuf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

#endif
