/*
** npy.c — NumPy .npy files (prefix vl_npy_): format versions 1.0, 2.0 and
** 3.0, C or Fortran order, little or big endian; object arrays (pickles)
** are refused. Written as NumPy writes them (version 1.0, header padded to
** 64 bytes), atomically. Read through a blob (ops/io_internal.h): tensors
** are zero-copy views of the mapping where alignment and byte order allow.
** Every size and offset is checked before it is read.
*/
#include <stdlib.h>

#include "io_internal.h"

/* ------------------------------------------------------------------ */
/* .npy                                                                 */
/* ------------------------------------------------------------------ */

#define NPY "npy"
#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64              /* NumPy's ARRAY_ALIGN: header padded to this */
#define NPY_GROWTH_DIGITS 21      /* NumPy's GROWTH_AXIS_MAX_DIGITS: spare header room */
#define NPY_SUPPORTED "<f2 <f4 <f8 <i4 <i8 |u1 |b1 (either byte order)"

typedef struct npy_parse {
  const char *path;
  const char *h; /* header text, NUL-terminated copy */
  size_t pos, base; /* parse position; file offset of h[0] */
} npy_parse;

static int npy_err(npy_parse *p, const char *what) {
  return io_fail(VL_EFORMAT, NPY, p->path, "header: %s at byte %llu", what, (ull)(p->base + p->pos));
}

static void npy_ws(npy_parse *p) {
  while (p->h[p->pos] == ' ' || p->h[p->pos] == '\t' || p->h[p->pos] == '\n' || p->h[p->pos] == '\r') p->pos++;
}

/* A Python string literal without escapes, copied into out (cap bytes). */
static int npy_string(npy_parse *p, char *out, size_t cap) {
  char q = p->h[p->pos];
  if (q != '\'' && q != '"') return npy_err(p, "expected a quoted string");
  size_t start = ++p->pos, k = 0;
  while (p->h[p->pos] && p->h[p->pos] != q) {
    if (p->h[p->pos] == '\\') return npy_err(p, "escape sequences are not supported");
    if (k + 1 < cap) out[k++] = p->h[p->pos];
    p->pos++;
  }
  if (p->h[p->pos] != q) {
    p->pos = start;
    return npy_err(p, "unterminated string");
  }
  p->pos++;
  out[k] = '\0';
  return VL_OK;
}

static bool npy_word(npy_parse *p, const char *w) {
  size_t n = strlen(w);
  if (strncmp(p->h + p->pos, w, n) != 0) return false;
  p->pos += n;
  return true;
}

typedef struct npy_dtype {
  const char *code; /* kind + size after the byte-order mark */
  vl_dtype dt;
} npy_dtype;

static const npy_dtype npy_dtypes[] = {
    {"f2", VL_FLOAT16}, {"f4", VL_FLOAT32}, {"f8", VL_FLOAT64}, {"i4", VL_INT32},
    {"i8", VL_INT64},   {"u1", VL_UINT8},   {"b1", VL_BOOL},
};

/* descr -> dtype and byte order (swap: the data is big-endian). */
static int npy_descr(npy_parse *p, const char *descr, vl_dtype *dt, bool *swap) {
  const char *s = descr;
  char order = '=';
  if (*s == '<' || *s == '>' || *s == '|' || *s == '=') order = *s++;
  if (strchr(s, 'O'))
    return io_fail(VL_EFORMAT, NPY, p->path,
                   "dtype '%s' is an object array (pickled Python objects); vl refuses to load pickles", descr);
  for (size_t i = 0; i < sizeof npy_dtypes / sizeof npy_dtypes[0]; i++)
    if (strcmp(s, npy_dtypes[i].code) == 0) {
      *dt = npy_dtypes[i].dt;
      *swap = order == '>' && vl_dtype_size(*dt) > 1;
      return VL_OK;
    }
  return io_fail(VL_EDTYPE, NPY, p->path, "dtype '%s' is not supported (supported: " NPY_SUPPORTED ")", descr);
}

static vl_tensor *npy_parse_blob(io_blob *b, const char *path) {
  const unsigned char *buf = b->base;
  size_t len = b->len;
  if (len < 10)
    return io_fail(VL_EFORMAT, NPY, path, "file is %llu bytes, too short for the 10-byte npy preamble", (ull)len), NULL;
  if (memcmp(buf, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
    return io_fail(VL_EFORMAT, NPY, path, "not an .npy file: bytes 0-5 are not the magic \\x93NUMPY"), NULL;
  int major = buf[6], minor = buf[7];
  if (!(major >= 1 && major <= 3 && minor == 0))
    return io_fail(VL_EFORMAT, NPY, path, "format version %d.%d at byte 6 is not supported (expected 1.0, 2.0 or 3.0)",
                   major, minor),
           NULL;
  size_t pre = major == 1 ? 10 : 12;
  if (len < pre)
    return io_fail(VL_EFORMAT, NPY, path, "file is %llu bytes, too short for the %llu-byte preamble of version %d.0",
                   (ull)len, (ull)pre, major),
           NULL;
  uint64_t hlen = major == 1 ? (uint64_t)buf[8] | (uint64_t)buf[9] << 8
                             : (uint64_t)buf[8] | (uint64_t)buf[9] << 8 | (uint64_t)buf[10] << 16 |
                                   (uint64_t)buf[11] << 24;
  if (hlen > VL_NPY_MAX_HEADER)
    return io_fail(VL_EFORMAT, NPY, path, "header length %llu (byte 8) exceeds the limit of %d bytes", (ull)hlen,
                   VL_NPY_MAX_HEADER),
           NULL;
  if (hlen > len - pre)
    return io_fail(VL_EFORMAT, NPY, path, "header length %llu (byte 8) runs past the end of the file (%llu bytes)",
                   (ull)hlen, (ull)len),
           NULL;
  char *h = malloc((size_t)hlen + 1);
  if (h == NULL) return vl_error(VL_ENOMEM, "%s: out of memory", NPY), NULL;
  memcpy(h, buf + pre, (size_t)hlen);
  h[hlen] = '\0';
  npy_parse p = {path, h, 0, pre};
  if (strlen(h) != hlen) {
    p.pos = strlen(h);
    npy_err(&p, "NUL byte");
    free(h);
    return NULL;
  }
  char descr[64] = "", key[32];
  int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0, ndim = 0;
  int64_t shape[VL_MAX_DIMS];
  int st = VL_OK;
  npy_ws(&p);
  if (h[p.pos] != '{') st = npy_err(&p, "expected '{'");
  else p.pos++;
  while (st == VL_OK) {
    npy_ws(&p);
    if (h[p.pos] == '}') break;
    size_t kpos = p.pos;
    if ((st = npy_string(&p, key, sizeof key)) != VL_OK) break;
    npy_ws(&p);
    if (h[p.pos] != ':') {
      st = npy_err(&p, "expected ':'");
      break;
    }
    p.pos++;
    npy_ws(&p);
    if (strcmp(key, "descr") == 0 && !have_descr) {
      if (h[p.pos] == '[') {
        st = io_fail(VL_EDTYPE, NPY, path, "structured dtypes (a list descr) are not supported");
        break;
      }
      if ((st = npy_string(&p, descr, sizeof descr)) != VL_OK) break;
      have_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
      if (npy_word(&p, "True")) fortran = 1;
      else if (npy_word(&p, "False")) fortran = 0;
      else {
        st = npy_err(&p, "fortran_order must be True or False");
        break;
      }
      have_order = 1;
    } else if (strcmp(key, "shape") == 0 && !have_shape) {
      if (h[p.pos] != '(') {
        st = npy_err(&p, "shape must be a tuple");
        break;
      }
      p.pos++;
      for (;;) {
        npy_ws(&p);
        if (h[p.pos] == ')') {
          p.pos++;
          break;
        }
        if (h[p.pos] == '-') {
          st = npy_err(&p, "negative size in shape");
          break;
        }
        if (h[p.pos] < '0' || h[p.pos] > '9') {
          st = npy_err(&p, "expected a size in shape");
          break;
        }
        uint64_t v = 0;
        while (h[p.pos] >= '0' && h[p.pos] <= '9') {
          if (v > (uint64_t)INT64_MAX / 10) {
            st = npy_err(&p, "size in shape too large");
            break;
          }
          v = v * 10 + (uint64_t)(h[p.pos++] - '0');
        }
        if (st != VL_OK) break;
        if (h[p.pos] == 'L') p.pos++; /* Python 2 long */
        if (ndim == VL_MAX_DIMS) {
          st = npy_err(&p, "shape has more than 8 dims, the most vl supports");
          break;
        }
        shape[ndim++] = (int64_t)v;
        npy_ws(&p);
        if (h[p.pos] == ',') p.pos++;
        else if (h[p.pos] != ')') {
          st = npy_err(&p, "expected ',' or ')' in shape");
          break;
        }
      }
      if (st != VL_OK) break;
      have_shape = 1;
    } else {
      p.pos = kpos;
      char what[160];
      snprintf(what, sizeof what, "unexpected key '%s' (expected descr, fortran_order and shape once each)", key);
      st = npy_err(&p, what);
      break;
    }
    npy_ws(&p);
    if (h[p.pos] == ',') p.pos++;
    else if (h[p.pos] != '}') st = npy_err(&p, "expected ',' or '}'");
  }
  if (st == VL_OK) {
    p.pos++;
    npy_ws(&p);
    if (h[p.pos] != '\0') st = npy_err(&p, "trailing characters after the header dict");
  }
  if (st == VL_OK && !(have_descr && have_order && have_shape))
    st = io_fail(VL_EFORMAT, NPY, path, "header lacks '%s'",
                 !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
  free(h);
  vl_dtype dt = VL_FLOAT32;
  bool swap = false;
  if (st == VL_OK) st = npy_descr(&p, descr, &dt, &swap);
  if (st != VL_OK) return NULL;
  size_t width = vl_dtype_size(dt);
  uint64_t count = 1, nbytes;
  for (int d = 0; d < ndim; d++)
    if (__builtin_mul_overflow(count, (uint64_t)shape[d], &count))
      return io_fail(VL_EFORMAT, NPY, path, "shape overflows"), NULL;
  if (__builtin_mul_overflow(count, (uint64_t)width, &nbytes) || !strides_fit(ndim, shape))
    return io_fail(VL_EFORMAT, NPY, path, "shape overflows"), NULL;
  uint64_t data_at = pre + hlen;
  char sh[VL_SHAPE_STR];
  if (nbytes > len - data_at)
    return io_fail(VL_EFORMAT, NPY, path, "data truncated: shape %s of '%s' needs %llu bytes from byte %llu, the file holds %llu",
                   vl_shape_str(ndim, shape, sh), descr, (ull)nbytes, (ull)data_at, (ull)(len - data_at)),
           NULL;
  int64_t stride[VL_MAX_DIMS];
  if (fortran) { /* column-major: the first dim varies fastest */
    int64_t s = 1;
    for (int d = 0; d < ndim; d++) {
      stride[d] = s;
      s *= shape[d] > 0 ? shape[d] : 1;
    }
  } else {
    contiguous_strides(ndim, shape, stride);
  }
  return vl__blob_tensor(b, (size_t)data_at, (size_t)nbytes, ndim, shape, stride, dt, swap);
}

vl_tensor *vl_npy_load(const char *path) {
  if (path == NULL) return vl_error(VL_EARG, "%s: no path given", NPY), NULL;
  io_blob *b = vl__blob_map(NPY, path);
  if (b == NULL) return NULL;
  vl_tensor *t = npy_parse_blob(b, path);
  vl__blob_release(b);
  return t;
}

vl_tensor *vl_npy_from_memory(const void *data, size_t nbytes, const char *name) {
  io_blob *b = vl__blob_copy(NPY, data, nbytes);
  if (b == NULL) return NULL;
  vl_tensor *t = npy_parse_blob(b, name ? name : "<memory>");
  vl__blob_release(b);
  return t;
}

/* The header NumPy 1.24 writes: keys sorted, repr values, spare room for
   the growth axis, padded with spaces and a newline to NPY_ALIGN. */
static int npy_header(const char *op, const char *path, const vl_tensor *t, sbuf *out) {
  const char *descr;
  switch (t->dtype) {
    case VL_FLOAT32: descr = "<f4"; break;
    case VL_FLOAT64: descr = "<f8"; break;
    case VL_FLOAT16: descr = "<f2"; break;
    case VL_INT64: descr = "<i8"; break;
    case VL_INT32: descr = "<i4"; break;
    case VL_UINT8: descr = "|u1"; break;
    case VL_BOOL: descr = "|b1"; break;
    default:
      return io_fail(VL_EDTYPE, op, path, "%s has no NumPy dtype (convert it first, e.g. x:float())",
                     vl_dtype_name(t->dtype));
  }
  sbuf h = {0};
  sb_printf(&h, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (int d = 0; d < t->ndim; d++) sb_printf(&h, d ? ", %lld" : "%lld", (long long)t->shape[d]);
  sb_str(&h, t->ndim == 1 ? ",), }" : "), }");
  if (t->ndim > 0) {
    char first[32];
    int w = snprintf(first, sizeof first, "%lld", (long long)t->shape[0]);
    for (int k = w; k < NPY_GROWTH_DIGITS; k++) sb_add(&h, " ", 1);
  }
  size_t hlen = h.n + 1; /* the newline */
  size_t pad = NPY_ALIGN - ((NPY_MAGIC_LEN + 2 + 2 + hlen) % NPY_ALIGN);
  size_t total = hlen + pad;
  if (total > 65535) {
    free(h.p);
    return io_fail(VL_EARG, op, path, "header too long for format 1.0");
  }
  sb_add(out, NPY_MAGIC, NPY_MAGIC_LEN);
  unsigned char v[4] = {1, 0, (unsigned char)(total & 0xff), (unsigned char)(total >> 8)};
  sb_add(out, v, 4);
  sb_add(out, h.p, h.n);
  for (size_t k = 0; k < pad; k++) sb_add(out, " ", 1);
  sb_add(out, "\n", 1);
  int oom = h.oom || out->oom;
  free(h.p);
  if (oom) return vl_error(VL_ENOMEM, "%s: out of memory", op);
  return VL_OK;
}

int vl_npy_save(const char *path, const vl_tensor *t) {
  const char *op = "npy.save";
  if (path == NULL || path[0] == '\0') return vl_error(VL_EARG, "%s: empty path", op);
  if (t == NULL) return vl_error(VL_EARG, "%s: no tensor given", op);
  sbuf h = {0};
  if (npy_header(op, path, t, &h) != VL_OK) {
    free(h.p);
    return vl_last_status();
  }
  io_atomic a;
  int st = vl__atomic_begin(&a, op, path);
  if (st == VL_OK) st = vl__atomic_write(&a, h.p, h.n);
  if (st == VL_OK) st = vl__atomic_write_tensor(&a, t);
  if (st == VL_OK) st = vl__atomic_commit(&a);
  free(h.p);
  return st;
}
