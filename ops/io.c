/*
** io.c — safetensors files (prefix vl_safetensors_) and the plumbing the
** tensor file formats share: blobs (memory-mapped files) and atomic
** writes (vl_write_file_atomic). .npy is in ops/npy.c, IDX in ops/idx.c;
** what they share is declared in ops/io_internal.h.
**
**  - safetensors: memory-mapped, validated as the reference implementation
**    (huggingface/safetensors, safetensors/src/tensor.rs) validates, tensors
**    handed out lazily as zero-copy views of the mapping; written atomically
**    with the reference's layout (tensors by descending dtype, then name;
**    header padded with spaces to 8 bytes).
**
** Every reader checks sizes and offsets before it reads, and names the file
** and the byte or field at fault. Files are data: nothing here runs code.
** Writes go to a temporary file in the same directory, are fsync'd and
** renamed into place: a failed or interrupted write never leaves a half file.
*/
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io_internal.h"

#define IO_JSON_INT_MAX 9007199254740992.0 /* 2^53: JSON integers above lose bits in a double */
#define IO_JSON_ERR_CONTEXT 24         /* header bytes quoted around a JSON error */

/* ------------------------------------------------------------------ */
/* Blobs: a file's bytes (mmap'd) or a private copy, reference-counted  */
/* so that tensors viewing them keep them alive.                        */
/* ------------------------------------------------------------------ */

void vl__blob_release(io_blob *b) {
  if (b == NULL || __atomic_sub_fetch(&b->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
  if (b->mapped) munmap(b->base, b->len);
  else free(b->base);
  free(b);
}

static void blob_storage_release(void *ctx, void *data, size_t nbytes) {
  VL_UNUSED(data);
  VL_UNUSED(nbytes);
  vl__blob_release(ctx);
}

/* Map `path` privately (copy-on-write: tensors may be written in place
   without touching the file). */
io_blob *vl__blob_map(const char *op, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    io_fail(VL_EIO, op, path, "cannot open (%s)", strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    io_fail(VL_EIO, op, path, "cannot stat (%s)", strerror(errno));
    close(fd);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    io_fail(VL_EIO, op, path, "not a regular file");
    close(fd);
    return NULL;
  }
  io_blob *b = calloc(1, sizeof *b);
  if (b == NULL) {
    close(fd);
    vl_error(VL_ENOMEM, "%s: out of memory", op);
    return NULL;
  }
  b->refcount = 1;
  b->len = (size_t)st.st_size;
  if (b->len > 0) {
    void *p = mmap(NULL, b->len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      io_fail(VL_EIO, op, path, "cannot map %llu bytes (%s)", (ull)b->len, strerror(errno));
      close(fd);
      free(b);
      return NULL;
    }
    b->base = p;
    b->mapped = 1;
  }
  close(fd);
  return b;
}

/* A private copy of caller memory (fuzzing, tests, buffers from elsewhere). */
io_blob *vl__blob_copy(const char *op, const void *data, size_t len) {
  io_blob *b = calloc(1, sizeof *b);
  unsigned char *p = len ? malloc(len) : NULL;
  if (b == NULL || (len && p == NULL)) {
    free(b);
    free(p);
    vl_error(VL_ENOMEM, "%s: out of memory copying %llu bytes", op, (ull)len);
    return NULL;
  }
  if (len) memcpy(p, data, len);
  b->base = p;
  b->len = len;
  b->refcount = 1;
  return b;
}

/* A tensor over `nbytes` at `off` in the blob with the given strides: a
   zero-copy view when the bytes are aligned for the dtype, in native byte
   order and (for bool) hold only 0 and 1; else a private copy fixed up. */
vl_tensor *vl__blob_tensor(io_blob *b, size_t off, size_t nbytes, int ndim, const int64_t *shape,
                              const int64_t *stride, vl_dtype dt, bool swap) {
  if (nbytes == 0) return vl_zeros(ndim, shape, dt);
  const unsigned char *src = b->base + off;
  size_t width = vl_dtype_size(dt);
  bool bad_bool = false;
  if (dt == VL_BOOL)
    for (size_t i = 0; i < nbytes && !bad_bool; i++) bad_bool = src[i] > 1;
  bool zero_copy = !swap && !bad_bool && ((uintptr_t)src % width) == 0;
  vl_storage *s;
  if (zero_copy) {
    __atomic_add_fetch(&b->refcount, 1, __ATOMIC_RELAXED);
    s = vl_storage_wrap((void *)src, nbytes, blob_storage_release, b);
    if (s == NULL) {
      vl__blob_release(b);
      return NULL;
    }
  } else {
    s = vl_storage_new(nbytes);
    if (s == NULL) return NULL;
    unsigned char *dst = s->data;
    memcpy(dst, src, nbytes);
    if (swap) swap_bytes(dst, nbytes, width);
    if (bad_bool)
      for (size_t i = 0; i < nbytes; i++) dst[i] = dst[i] != 0;
  }
  vl_tensor *t = vl_tensor_new_view(s, 0, ndim, shape, stride, dt);
  vl_storage_release(s);
  return t;
}

/* ------------------------------------------------------------------ */
/* Atomic writes: temp file next to the target, fsync, rename.          */
/* ------------------------------------------------------------------ */

int vl__atomic_begin(io_atomic *a, const char *op, const char *path) {
  a->fd = -1;
  a->op = op;
  a->path = path;
  size_t n = strlen(path);
  a->tmp = malloc(n + 16);
  if (a->tmp == NULL) return vl_error(VL_ENOMEM, "%s: out of memory", op);
  memcpy(a->tmp, path, n);
  memcpy(a->tmp + n, ".tmp-XXXXXX", 12);
  a->fd = mkostemp(a->tmp, O_CLOEXEC);
  if (a->fd < 0) {
    int e = errno;
    free(a->tmp);
    a->tmp = NULL;
    return io_fail(VL_EIO, op, path, "cannot create a temporary file next to it (%s)", strerror(e));
  }
  /* mkstemp makes 0600; give the file the mode a plain create would */
  mode_t mask = umask(0);
  umask(mask);
  if (fchmod(a->fd, 0666 & ~mask) != 0) { /* not fatal: the data is what matters */
  }
  return VL_OK;
}

static void atomic_abort(io_atomic *a) {
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
  if (a->tmp) {
    unlink(a->tmp);
    free(a->tmp);
    a->tmp = NULL;
  }
}

int vl__atomic_write(io_atomic *a, const void *data, size_t n) {
  const unsigned char *p = data;
  while (n > 0) {
    size_t chunk = n > IO_WRITE_CHUNK ? IO_WRITE_CHUNK : n;
    ssize_t w = write(a->fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      atomic_abort(a);
      return io_fail(VL_EIO, a->op, a->path, "write failed (%s); the file was left as it was", strerror(e));
    }
    p += w;
    n -= (size_t)w;
  }
  return VL_OK;
}

int vl__atomic_commit(io_atomic *a) {
  if (fsync(a->fd) != 0) {
    int e = errno;
    atomic_abort(a);
    return io_fail(VL_EIO, a->op, a->path, "fsync failed (%s); the file was left as it was", strerror(e));
  }
  if (close(a->fd) != 0) {
    int e = errno;
    a->fd = -1;
    atomic_abort(a);
    return io_fail(VL_EIO, a->op, a->path, "close failed (%s); the file was left as it was", strerror(e));
  }
  a->fd = -1;
  if (rename(a->tmp, a->path) != 0) {
    int e = errno;
    atomic_abort(a);
    return io_fail(VL_EIO, a->op, a->path, "cannot rename the temporary file into place (%s)", strerror(e));
  }
  /* make the rename itself durable */
  char *slash = strrchr(a->tmp, '/');
  const char *dir = ".";
  if (slash == a->tmp) dir = "/";
  else if (slash) *slash = '\0', dir = a->tmp;
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) != 0) { /* some file systems refuse; the data is already safe */
    }
    close(dfd);
  }
  free(a->tmp);
  a->tmp = NULL;
  return VL_OK;
}

int vl_write_file_atomic(const char *path, const void *data, size_t nbytes) {
  io_atomic a;
  if (path == NULL || path[0] == '\0') return vl_error(VL_EARG, "write_file: empty path");
  if (vl__atomic_begin(&a, "write_file", path) != VL_OK) return vl_last_status();
  if (vl__atomic_write(&a, data, nbytes) != VL_OK) return vl_last_status();
  return vl__atomic_commit(&a);
}

/* Write a tensor's bytes in row-major order (a contiguous copy if needed). */
int vl__atomic_write_tensor(io_atomic *a, const vl_tensor *t) {
  if (vl_numel(t) == 0) return VL_OK;
  vl_tensor *c = vl_contiguous(t);
  if (c == NULL) {
    atomic_abort(a);
    return vl_last_status();
  }
  int st = vl__atomic_write(a, vl_data_ptr(c), (size_t)vl_numel(c) * vl_dtype_size(c->dtype));
  vl_tensor_release(c);
  return st;
}

/* ------------------------------------------------------------------ */
/* JSON strings and UTF-8                                               */
/* ------------------------------------------------------------------ */

/* A JSON string as serde_json writes it: ", \ and control characters
   escaped, everything else (UTF-8 included) as is. */
static void sb_json_string(sbuf *b, const char *s) {
  sb_add(b, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
      case '"': sb_add(b, "\\\"", 2); break;
      case '\\': sb_add(b, "\\\\", 2); break;
      case '\b': sb_add(b, "\\b", 2); break;
      case '\f': sb_add(b, "\\f", 2); break;
      case '\n': sb_add(b, "\\n", 2); break;
      case '\r': sb_add(b, "\\r", 2); break;
      case '\t': sb_add(b, "\\t", 2); break;
      default:
        if (*p < 0x20) sb_printf(b, "\\u%04x", *p);
        else sb_add(b, p, 1);
    }
  }
  sb_add(b, "\"", 1);
}

/* Strict UTF-8 (as Rust's str::from_utf8): no overlongs, no surrogates,
   nothing past U+10FFFF. Returns the offset of the first bad byte, or len. */
static size_t utf8_check(const unsigned char *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 1;
    else if (c == 0xE0) n = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) n = 2;
    else if (c == 0xED) n = 2, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) n = 2;
    else if (c == 0xF0) n = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 3;
    else if (c == 0xF4) n = 3, hi = 0x8F;
    else return i;
    if (i + n >= len) return i;
    if (s[i + 1] < lo || s[i + 1] > hi) return i;
    for (size_t k = 2; k <= n; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    i += n + 1;
  }
  return len;
}

/* ------------------------------------------------------------------ */
/* safetensors                                                          */
/* ------------------------------------------------------------------ */

/* Every dtype of the reference implementation, in its enum order (the
   order that its writer sorts by, descending). `vl` is -1 for dtypes the
   core has no tensor type for: such tensors validate but cannot be taken. */
typedef struct st_dtype {
  const char *name;
  unsigned bits;
  int vl;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"BOOL", 8, VL_BOOL},     {"F4", 4, -1},          {"F6_E2M3", 6, -1}, {"F6_E3M2", 6, -1},
    {"U8", 8, VL_UINT8},      {"I8", 8, -1},          {"F8_E5M2", 8, -1}, {"F8_E4M3", 8, -1},
    {"F8_E8M0", 8, -1},       {"I16", 16, -1},        {"U16", 16, -1},    {"F16", 16, VL_FLOAT16},
    {"BF16", 16, VL_BFLOAT16}, {"I32", 32, VL_INT32}, {"U32", 32, -1},    {"F32", 32, VL_FLOAT32},
    {"C64", 64, -1},          {"F64", 64, VL_FLOAT64}, {"I64", 64, VL_INT64}, {"U64", 64, -1},
};
#define ST_NDTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))
#define ST_SUPPORTED "F64 F32 F16 BF16 I64 I32 U8 BOOL"

static int st_dtype_of_vl(vl_dtype dt) {
  for (int i = 0; i < ST_NDTYPES; i++)
    if (st_dtypes[i].vl == (int)dt) return i;
  return -1;
}

typedef struct st_entry {
  const char *name; /* points into the parsed JSON */
  int dt;           /* index into st_dtypes */
  int ndim;
  int64_t *shape;
  uint64_t begin, end; /* in the data buffer after the header */
} st_entry;

struct vl_safetensors {
  io_blob *blob;
  char *path;
  cJSON *json;
  uint64_t header_len;
  int n;
  st_entry *e;   /* by offset */
  int *by_name;  /* indices into e, sorted by name */
  int nmeta;
  const char **meta_keys, **meta_values; /* sorted by key */
};

void vl_safetensors_close(vl_safetensors *f) {
  if (f == NULL) return;
  for (int i = 0; i < f->n; i++) free(f->e[i].shape);
  free(f->e);
  free(f->by_name);
  free(f->meta_keys);
  free(f->meta_values);
  cJSON_Delete(f->json);
  vl__blob_release(f->blob);
  free(f->path);
  free(f);
}

static const char *json_type(const cJSON *v) {
  if (v == NULL) return "missing";
  if (cJSON_IsNull(v)) return "null";
  if (cJSON_IsBool(v)) return "a boolean";
  if (cJSON_IsNumber(v)) return "a number";
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsArray(v)) return "an array";
  if (cJSON_IsObject(v)) return "an object";
  return "invalid";
}

/* A non-negative JSON integer that a double holds exactly. */
static bool json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!(d >= 0) || d > IO_JSON_INT_MAX || d != floor(d)) return false;
  *out = (uint64_t)d;
  return true;
}

static const char *st_name_of(const st_entry *e) { return e->name; }

static int cmp_offsets(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int cmp_by_name(const void *a, const void *b, void *ctx) {
  const st_entry *e = ctx;
  return strcmp(e[*(const int *)a].name, e[*(const int *)b].name);
}

static int cmp_meta(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#define ST "safetensors"

/* Parse one tensor entry of the header. */
static int st_entry_parse(vl_safetensors *f, const cJSON *item, st_entry *e) {
  const char *path = f->path, *name = item->string;
  e->name = name;
  if (!cJSON_IsObject(item))
    return io_fail(VL_EFORMAT, ST, path, "tensor '%s' is %s, expected an object with dtype, shape and data_offsets",
                   name, json_type(item));
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsString(dt))
    return io_fail(VL_EFORMAT, ST, path, "tensor '%s': field 'dtype' is %s, expected a string", name, json_type(dt));
  e->dt = -1;
  for (int i = 0; i < ST_NDTYPES; i++)
    if (strcmp(dt->valuestring, st_dtypes[i].name) == 0) e->dt = i;
  if (e->dt < 0)
    return io_fail(VL_EFORMAT, ST, path, "tensor '%s': unknown dtype '%s'", name, dt->valuestring);
  if (!cJSON_IsArray(shape))
    return io_fail(VL_EFORMAT, ST, path, "tensor '%s': field 'shape' is %s, expected an array of sizes", name,
                   json_type(shape));
  e->ndim = cJSON_GetArraySize(shape);
  if (e->ndim > 0) {
    e->shape = malloc((size_t)e->ndim * sizeof *e->shape);
    if (e->shape == NULL) return vl_error(VL_ENOMEM, "%s: out of memory", ST);
  }
  int d = 0;
  for (const cJSON *s = shape->child; s; s = s->next, d++) {
    uint64_t v;
    if (!json_uint(s, &v)) {
      if (cJSON_IsNumber(s))
        return io_fail(VL_EFORMAT, ST, path, "tensor '%s': shape entry %d is %g, expected a non-negative integer",
                       name, d + 1, s->valuedouble);
      return io_fail(VL_EFORMAT, ST, path, "tensor '%s': shape entry %d is %s, expected a non-negative integer",
                     name, d + 1, json_type(s));
    }
    e->shape[d] = (int64_t)v;
  }
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
    return io_fail(VL_EFORMAT, ST, path, "tensor '%s': field 'data_offsets' is %s, expected [begin, end]", name,
                   cJSON_IsArray(offs) ? "an array of the wrong length" : json_type(offs));
  if (!json_uint(offs->child, &e->begin) || !json_uint(offs->child->next, &e->end))
    return io_fail(VL_EFORMAT, ST, path, "tensor '%s': data_offsets must be two non-negative integers", name);
  return VL_OK;
}

static int st_parse_metadata(vl_safetensors *f, const cJSON *m) {
  if (cJSON_IsNull(m)) return VL_OK;
  if (!cJSON_IsObject(m))
    return io_fail(VL_EFORMAT, ST, f->path, "__metadata__ is %s, expected an object of strings", json_type(m));
  int n = cJSON_GetArraySize(m);
  f->meta_keys = malloc((size_t)(n ? n : 1) * sizeof *f->meta_keys);
  f->meta_values = malloc((size_t)(n ? n : 1) * sizeof *f->meta_values);
  if (f->meta_keys == NULL || f->meta_values == NULL) return vl_error(VL_ENOMEM, "%s: out of memory", ST);
  int i = 0;
  for (const cJSON *v = m->child; v; v = v->next) {
    if (!cJSON_IsString(v))
      return io_fail(VL_EFORMAT, ST, f->path, "__metadata__ value of '%s' is %s, expected a string", v->string,
                     json_type(v));
    f->meta_keys[i++] = v->string;
  }
  f->nmeta = n;
  qsort(f->meta_keys, (size_t)n, sizeof *f->meta_keys, cmp_meta);
  for (i = 0; i + 1 < n; i++)
    if (strcmp(f->meta_keys[i], f->meta_keys[i + 1]) == 0)
      return io_fail(VL_EFORMAT, ST, f->path, "__metadata__ key '%s' appears twice", f->meta_keys[i]);
  for (i = 0; i < n; i++)
    f->meta_values[i] = cJSON_GetObjectItemCaseSensitive(m, f->meta_keys[i])->valuestring;
  return VL_OK;
}

/* Validate the whole file (reference rules), keeping the parsed header. */
static int st_parse(vl_safetensors *f) {
  const unsigned char *buf = f->blob->base;
  size_t len = f->blob->len;
  const char *path = f->path;
  if (len < 8)
    return io_fail(VL_EFORMAT, ST, path, "file is %llu bytes, too small for the 8-byte header length", (ull)len);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
  if (n > VL_SAFETENSORS_MAX_HEADER)
    return io_fail(VL_EFORMAT, ST, path, "header length %llu (bytes 0-7) exceeds the limit of %d bytes", (ull)n,
                   VL_SAFETENSORS_MAX_HEADER);
  if (n > len - 8)
    return io_fail(VL_EFORMAT, ST, path, "header length %llu (bytes 0-7) runs past the end of the file (%llu bytes)",
                   (ull)n, (ull)len);
  f->header_len = n;
  const unsigned char *h = buf + 8;
  size_t bad = utf8_check(h, (size_t)n);
  if (bad != n) return io_fail(VL_EFORMAT, ST, path, "header is not valid UTF-8 at byte %llu", (ull)(8 + bad));
  const char *end = NULL;
  f->json = cJSON_ParseWithLengthOpts((const char *)h, (size_t)n, &end, 0);
  if (f->json == NULL) {
    size_t at = end ? (size_t)(end - (const char *)h) : 0;
    if (at > n) at = (size_t)n;
    char ctx[IO_JSON_ERR_CONTEXT + 1];
    size_t k = 0;
    for (size_t i = at; i < n && k < IO_JSON_ERR_CONTEXT; i++) ctx[k++] = (h[i] >= 0x20 && h[i] < 0x7f) ? (char)h[i] : '?';
    ctx[k] = '\0';
    return io_fail(VL_EFORMAT, ST, path, "header is not valid JSON: error at byte %llu near \"%s\"", (ull)(8 + at), ctx);
  }
  /* only whitespace may follow the JSON value */
  for (size_t i = end ? (size_t)(end - (const char *)h) : (size_t)n; i < n; i++)
    if (!(h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r'))
      return io_fail(VL_EFORMAT, ST, path, "header is not valid JSON: trailing characters at byte %llu", (ull)(8 + i));
  if (!cJSON_IsObject(f->json))
    return io_fail(VL_EFORMAT, ST, path, "header is %s, expected a JSON object", json_type(f->json));

  int count = 0, nmeta_items = 0;
  for (const cJSON *it = f->json->child; it; it = it->next) {
    if (strcmp(it->string, "__metadata__") == 0) {
      if (nmeta_items++) return io_fail(VL_EFORMAT, ST, path, "__metadata__ appears twice");
      if (st_parse_metadata(f, it) != VL_OK) return vl_last_status();
    } else {
      count++;
    }
  }
  f->e = calloc((size_t)(count ? count : 1), sizeof *f->e);
  f->by_name = malloc((size_t)(count ? count : 1) * sizeof *f->by_name);
  if (f->e == NULL || f->by_name == NULL) return vl_error(VL_ENOMEM, "%s: out of memory", ST);
  for (const cJSON *it = f->json->child; it; it = it->next) {
    if (strcmp(it->string, "__metadata__") == 0) continue;
    if (st_entry_parse(f, it, &f->e[f->n++]) != VL_OK) return vl_last_status();
  }
  /* names must be unique */
  for (int i = 0; i < f->n; i++) f->by_name[i] = i;
  qsort_r(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_by_name, f->e);
  for (int i = 0; i + 1 < f->n; i++)
    if (strcmp(f->e[f->by_name[i]].name, f->e[f->by_name[i + 1]].name) == 0)
      return io_fail(VL_EFORMAT, ST, path, "tensor '%s' appears twice in the header", f->e[f->by_name[i]].name);

  /* offsets: sorted, contiguous from 0, each the size dtype x shape says */
  qsort(f->e, (size_t)f->n, sizeof *f->e, cmp_offsets);
  uint64_t data_len = (uint64_t)len - 8 - n, start = 0;
  for (int i = 0; i < f->n; i++) {
    const st_entry *e = &f->e[i];
    const char *nm = st_name_of(e);
    if (e->end < e->begin)
      return io_fail(VL_EFORMAT, ST, path, "tensor '%s' data_offsets [%llu, %llu] end before they begin", nm,
                     (ull)e->begin, (ull)e->end);
    if (e->begin > start)
      return io_fail(VL_EFORMAT, ST, path,
                     "tensor '%s' data_offsets [%llu, %llu] leave a gap: bytes %llu..%llu of the data belong to no tensor",
                     nm, (ull)e->begin, (ull)e->end, (ull)start, (ull)e->begin);
    if (e->begin < start)
      return io_fail(VL_EFORMAT, ST, path,
                     "tensor '%s' data_offsets [%llu, %llu] overlap tensor '%s', which ends at %llu", nm,
                     (ull)e->begin, (ull)e->end, st_name_of(&f->e[i - 1]), (ull)start);
    uint64_t nel = 1, nbits;
    char sh[VL_SHAPE_STR];
    for (int d = 0; d < e->ndim; d++)
      if (__builtin_mul_overflow(nel, (uint64_t)e->shape[d], &nel))
        return io_fail(VL_EFORMAT, ST, path, "tensor '%s': shape %s overflows", nm, vl_shape_str(e->ndim, e->shape, sh));
    if (__builtin_mul_overflow(nel, (uint64_t)st_dtypes[e->dt].bits, &nbits))
      return io_fail(VL_EFORMAT, ST, path, "tensor '%s': shape %s of dtype %s overflows", nm,
                     vl_shape_str(e->ndim, e->shape, sh), st_dtypes[e->dt].name);
    if (nbits % 8)
      return io_fail(VL_EFORMAT, ST, path, "tensor '%s': %llu elements of %s do not fill whole bytes", nm, (ull)nel,
                     st_dtypes[e->dt].name);
    if (e->end - e->begin != nbits / 8)
      return io_fail(VL_EFORMAT, ST, path, "tensor '%s' data_offsets [%llu, %llu] do not match dtype %s and shape %s (%llu bytes)",
                     nm, (ull)e->begin, (ull)e->end, st_dtypes[e->dt].name, vl_shape_str(e->ndim, e->shape, sh),
                     (ull)(nbits / 8));
    if (e->end > data_len)
      return io_fail(VL_EFORMAT, ST, path,
                     "tensor '%s' data_offsets [%llu, %llu] run past the end of the file: %llu bytes of data follow the header",
                     nm, (ull)e->begin, (ull)e->end, (ull)data_len);
    start = e->end;
  }
  if (start != data_len)
    return io_fail(VL_EFORMAT, ST, path,
                   "the tensors cover %llu bytes of data but %llu follow the header (%llu bytes unaccounted for at byte %llu)",
                   (ull)start, (ull)data_len, (ull)(data_len - start), (ull)(8 + n + start));
  /* the name index refers to offset order now */
  for (int i = 0; i < f->n; i++) f->by_name[i] = i;
  qsort_r(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_by_name, f->e);
  return VL_OK;
}

static vl_safetensors *st_open_blob(io_blob *b, const char *path) {
  if (b == NULL) return NULL;
  vl_safetensors *f = calloc(1, sizeof *f);
  char *p = strdup(path);
  if (f == NULL || p == NULL) {
    free(f);
    free(p);
    vl__blob_release(b);
    vl_error(VL_ENOMEM, "%s: out of memory", ST);
    return NULL;
  }
  f->blob = b;
  f->path = p;
  if (st_parse(f) != VL_OK) {
    vl_safetensors_close(f);
    return NULL;
  }
  return f;
}

vl_safetensors *vl_safetensors_open(const char *path) {
  if (path == NULL) return vl_error(VL_EARG, "%s: no path given", ST), NULL;
  return st_open_blob(vl__blob_map(ST, path), path);
}

vl_safetensors *vl_safetensors_from_memory(const void *data, size_t nbytes, const char *name) {
  return st_open_blob(vl__blob_copy(ST, data, nbytes), name ? name : "<memory>");
}

int vl_safetensors_count(const vl_safetensors *f) { return f ? f->n : 0; }

const char *vl_safetensors_key(const vl_safetensors *f, int i) {
  if (f == NULL || i < 0 || i >= f->n) return NULL;
  return f->e[f->by_name[i]].name;
}

static const st_entry *st_find(const vl_safetensors *f, const char *name) {
  int lo = 0, hi = f->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    const st_entry *e = &f->e[f->by_name[mid]];
    int c = strcmp(name, e->name);
    if (c == 0) return e;
    if (c < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return NULL;
}

bool vl_safetensors_has(const vl_safetensors *f, const char *name) {
  return f && name && st_find(f, name) != NULL;
}

int vl_safetensors_info(const vl_safetensors *f, const char *name, const char **dtype, int *ndim,
                        const int64_t **shape, uint64_t *begin, uint64_t *end) {
  const st_entry *e = f && name ? st_find(f, name) : NULL;
  if (e == NULL) return io_fail(VL_EINDEX, ST, f ? f->path : "?", "no tensor named '%s'", name ? name : "(null)");
  if (dtype) *dtype = st_dtypes[e->dt].name;
  if (ndim) *ndim = e->ndim;
  if (shape) *shape = e->shape;
  if (begin) *begin = e->begin;
  if (end) *end = e->end;
  return VL_OK;
}

vl_tensor *vl_safetensors_get(const vl_safetensors *f, const char *name) {
  const st_entry *e = f && name ? st_find(f, name) : NULL;
  if (e == NULL) return io_fail(VL_EINDEX, ST, f ? f->path : "?", "no tensor named '%s'", name ? name : "(null)"), NULL;
  if (st_dtypes[e->dt].vl < 0)
    return io_fail(VL_EDTYPE, ST, f->path, "tensor '%s' has dtype %s, which vl does not support (supported: " ST_SUPPORTED ")",
                   e->name, st_dtypes[e->dt].name),
           NULL;
  if (e->ndim > VL_MAX_DIMS)
    return io_fail(VL_ESHAPE, ST, f->path, "tensor '%s' has %d dims, at most %d are supported", e->name, e->ndim,
                   VL_MAX_DIMS),
           NULL;
  char sh[VL_SHAPE_STR];
  if (!strides_fit(e->ndim, e->shape))
    return io_fail(VL_ESHAPE, ST, f->path, "tensor '%s': shape %s is too large", e->name,
                   vl_shape_str(e->ndim, e->shape, sh)),
           NULL;
  int64_t stride[VL_MAX_DIMS];
  contiguous_strides(e->ndim, e->shape, stride);
  size_t off = (size_t)(8 + f->header_len + e->begin);
  return vl__blob_tensor(f->blob, off, (size_t)(e->end - e->begin), e->ndim, e->shape, stride, (vl_dtype)st_dtypes[e->dt].vl,
                     false);
}

int vl_safetensors_metadata_count(const vl_safetensors *f) { return f ? f->nmeta : 0; }

int vl_safetensors_metadata_item(const vl_safetensors *f, int i, const char **key, const char **value) {
  if (f == NULL || i < 0 || i >= f->nmeta) return vl_error(VL_EINDEX, "%s: metadata item %d out of range", ST, i);
  if (key) *key = f->meta_keys[i];
  if (value) *value = f->meta_values[i];
  return VL_OK;
}

const char *vl_safetensors_metadata_get(const vl_safetensors *f, const char *key) {
  if (f == NULL || key == NULL) return NULL;
  for (int i = 0; i < f->nmeta; i++)
    if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
  return NULL;
}

/* --- writing --- */

typedef struct st_out {
  const char *name;
  const vl_tensor *t;
  int dt;
  uint64_t nbytes;
} st_out;

static int cmp_out(const void *a, const void *b) {
  const st_out *x = a, *y = b;
  if (x->dt != y->dt) return x->dt > y->dt ? -1 : 1; /* descending dtype, as the reference */
  return strcmp(x->name, y->name);
}

static int cmp_out_name(const void *a, const void *b) {
  return strcmp((*(const st_out *const *)a)->name, (*(const st_out *const *)b)->name);
}

typedef struct st_meta {
  const char *k, *v;
} st_meta;

static int cmp_meta_kv(const void *a, const void *b) { return strcmp(((const st_meta *)a)->k, ((const st_meta *)b)->k); }

static bool utf8_ok(const char *s) { return utf8_check((const unsigned char *)s, strlen(s)) == strlen(s); }

/* Check the inputs and build the header; *outs is sorted in file order. */
static int st_prepare(const char *op, const char *path, int n, const char *const *names,
                      const vl_tensor *const *tensors, int nmeta, const char *const *keys,
                      const char *const *values, st_out **outs, sbuf *hdr) {
  *outs = NULL;
  if (n < 0 || nmeta < 0) return vl_error(VL_EARG, "%s: negative count", op);
  st_out *o = calloc((size_t)(n ? n : 1), sizeof *o);
  st_out **byname = malloc((size_t)(n ? n : 1) * sizeof *byname);
  st_meta *m = malloc((size_t)(nmeta ? nmeta : 1) * sizeof *m);
  if (o == NULL || byname == NULL || m == NULL) {
    free(o);
    free(byname);
    free(m);
    return vl_error(VL_ENOMEM, "%s: out of memory", op);
  }
  int st = VL_OK;
  for (int i = 0; i < n && st == VL_OK; i++) {
    if (names[i] == NULL || tensors[i] == NULL) {
      st = io_fail(VL_EARG, op, path, "tensor %d has no name or no tensor", i + 1);
      break;
    }
    if (strcmp(names[i], "__metadata__") == 0) {
      st = io_fail(VL_EARG, op, path, "'__metadata__' is reserved and cannot name a tensor");
      break;
    }
    if (!utf8_ok(names[i])) {
      st = io_fail(VL_EARG, op, path, "tensor name %d is not valid UTF-8", i + 1);
      break;
    }
    o[i].name = names[i];
    o[i].t = tensors[i];
    o[i].dt = st_dtype_of_vl(tensors[i]->dtype);
    o[i].nbytes = (uint64_t)vl_numel(tensors[i]) * vl_dtype_size(tensors[i]->dtype);
    byname[i] = &o[i];
  }
  if (st == VL_OK) {
    qsort(byname, (size_t)n, sizeof *byname, cmp_out_name);
    for (int i = 0; i + 1 < n; i++)
      if (strcmp(byname[i]->name, byname[i + 1]->name) == 0) {
        st = io_fail(VL_EARG, op, path, "tensor name '%s' appears twice", byname[i]->name);
        break;
      }
  }
  for (int i = 0; i < nmeta && st == VL_OK; i++) {
    if (keys[i] == NULL || values[i] == NULL) st = io_fail(VL_EARG, op, path, "metadata item %d is NULL", i + 1);
    else if (!utf8_ok(keys[i]) || !utf8_ok(values[i]))
      st = io_fail(VL_EARG, op, path, "metadata '%s' is not valid UTF-8", keys[i]);
    m[i].k = keys[i];
    m[i].v = values[i];
  }
  if (st == VL_OK) {
    qsort(m, (size_t)nmeta, sizeof *m, cmp_meta_kv);
    for (int i = 0; i + 1 < nmeta; i++)
      if (strcmp(m[i].k, m[i + 1].k) == 0) {
        st = io_fail(VL_EARG, op, path, "metadata key '%s' appears twice", m[i].k);
        break;
      }
  }
  if (st == VL_OK) {
    qsort(o, (size_t)n, sizeof *o, cmp_out);
    sb_add(hdr, "{", 1);
    if (nmeta > 0) {
      sb_str(hdr, "\"__metadata__\":{");
      for (int i = 0; i < nmeta; i++) {
        if (i) sb_add(hdr, ",", 1);
        sb_json_string(hdr, m[i].k);
        sb_add(hdr, ":", 1);
        sb_json_string(hdr, m[i].v);
      }
      sb_add(hdr, "}", 1);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
      if (i || nmeta > 0) sb_add(hdr, ",", 1);
      sb_json_string(hdr, o[i].name);
      sb_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", st_dtypes[o[i].dt].name);
      for (int d = 0; d < o[i].t->ndim; d++) sb_printf(hdr, d ? ",%lld" : "%lld", (long long)o[i].t->shape[d]);
      sb_printf(hdr, "],\"data_offsets\":[%llu,%llu]}", (ull)off, (ull)(off + o[i].nbytes));
      off += o[i].nbytes;
    }
    sb_add(hdr, "}", 1);
    while (hdr->n % 8) sb_add(hdr, " ", 1);
    if (hdr->oom) st = vl_error(VL_ENOMEM, "%s: out of memory building the header", op);
    else if (hdr->n > VL_SAFETENSORS_MAX_HEADER)
      st = io_fail(VL_EARG, op, path, "the header would take %llu bytes, more than the limit of %d", (ull)hdr->n,
                   VL_SAFETENSORS_MAX_HEADER);
  }
  free(byname);
  free(m);
  if (st != VL_OK) {
    free(o);
    return st;
  }
  *outs = o;
  return VL_OK;
}

static void le64(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

int vl_safetensors_save(const char *path, int n, const char *const *names, const vl_tensor *const *tensors,
                        int nmeta, const char *const *keys, const char *const *values) {
  const char *op = "safetensors.save";
  if (path == NULL || path[0] == '\0') return vl_error(VL_EARG, "%s: empty path", op);
  st_out *o;
  sbuf hdr = {0};
  if (st_prepare(op, path, n, names, tensors, nmeta, keys, values, &o, &hdr) != VL_OK) {
    free(hdr.p);
    return vl_last_status();
  }
  io_atomic a;
  int st = vl__atomic_begin(&a, op, path);
  unsigned char len8[8];
  le64(len8, hdr.n);
  if (st == VL_OK) st = vl__atomic_write(&a, len8, 8);
  if (st == VL_OK) st = vl__atomic_write(&a, hdr.p, hdr.n);
  for (int i = 0; i < n && st == VL_OK; i++) st = vl__atomic_write_tensor(&a, o[i].t);
  if (st == VL_OK) st = vl__atomic_commit(&a);
  free(o);
  free(hdr.p);
  return st;
}

int vl_safetensors_serialize(int n, const char *const *names, const vl_tensor *const *tensors, int nmeta,
                             const char *const *keys, const char *const *values, void **out, size_t *nbytes) {
  const char *op = "safetensors.serialize";
  st_out *o;
  sbuf hdr = {0}, all = {0};
  *out = NULL;
  *nbytes = 0;
  if (st_prepare(op, "<memory>", n, names, tensors, nmeta, keys, values, &o, &hdr) != VL_OK) {
    free(hdr.p);
    return vl_last_status();
  }
  unsigned char len8[8];
  le64(len8, hdr.n);
  sb_add(&all, len8, 8);
  sb_add(&all, hdr.p, hdr.n);
  int st = VL_OK;
  for (int i = 0; i < n && st == VL_OK; i++) {
    if (vl_numel(o[i].t) == 0) continue;
    vl_tensor *c = vl_contiguous(o[i].t);
    if (c == NULL) {
      st = vl_last_status();
      break;
    }
    sb_add(&all, vl_data_ptr(c), (size_t)o[i].nbytes);
    vl_tensor_release(c);
  }
  if (st == VL_OK && all.oom) st = vl_error(VL_ENOMEM, "%s: out of memory", op);
  free(o);
  free(hdr.p);
  if (st != VL_OK) {
    free(all.p);
    return st;
  }
  *out = all.p;
  *nbytes = all.n;
  return VL_OK;
}
