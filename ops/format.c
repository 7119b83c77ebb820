/*
** format.c — tensors as text, the way PyTorch prints them (vl_format).
**
** Follows the rules of PyTorch's torch/_tensor_str.py (default print
** options: precision 4, threshold VL_PRINT_THRESHOLD, edgeitems
** VL_PRINT_EDGEITEMS, linewidth VL_PRINT_LINEWIDTH):
**  - one formatter for the whole tensor, built from the elements that are
**    shown (the summarised ones only, past the threshold);
**  - floats: "int mode" ("1., 2.") when every nonzero finite value is
**    integral, scientific ("1.0000e+08") when max/min of the nonzero finite
**    magnitudes exceeds 1000 or max exceeds 1e8 (or, outside int mode, the
**    min is below 1e-4), else fixed with 4 decimals; every element padded
**    to the widest; nan/inf as nan/inf/-inf;
**  - integers plainly, bool as True/False;
**  - rows wrap at the line width; N-d nests brackets, with dim-1 newlines
**    between slices; "..." marks summarised runs;
**  - suffixes ", dtype=float64" (no "torch.") for dtypes other than
**    float32, int64 and bool; empty tensors print "[]" with their size
**    (unless 1-d) and their dtype (unless float32).
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "vl_internal.h"

#define VL_PRINT_PRECISION 4   /* digits after the point */
#define VL_PRINT_LINEWIDTH 80  /* characters per line before a row wraps */
#define VL_PRINT_NUM_MAX 64    /* longest formatted number: "-1.7977e+308", int64 */
#define VL_PRINT_PREFIX "tensor("

/* ------------------------------------------------------------------ */
/* A growing string                                                    */
/* ------------------------------------------------------------------ */

typedef struct sbuf {
  char *s;
  size_t len, cap;
  bool failed;
} sbuf;

static void sb_grow(sbuf *b, size_t extra) {
  if (b->failed) return;
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) {
    if (cap > SIZE_MAX / 2) {
      b->failed = true;
      return;
    }
    cap *= 2;
  }
  char *s = realloc(b->s, cap);
  if (!s) {
    b->failed = true;
    return;
  }
  b->s = s;
  b->cap = cap;
}

static void sb_putn(sbuf *b, const char *s, size_t n) {
  sb_grow(b, n);
  if (b->failed) return;
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void sb_spaces(sbuf *b, int n) {
  if (n <= 0) return;
  sb_grow(b, (size_t)n);
  if (b->failed) return;
  memset(b->s + b->len, ' ', (size_t)n);
  b->len += (size_t)n;
  b->s[b->len] = '\0';
}

/* ------------------------------------------------------------------ */
/* Elements                                                            */
/* ------------------------------------------------------------------ */

static double elem_f(const vl_tensor *t, int64_t off) { return vl_load(vl_base(t), off, t->dtype); }

static int64_t elem_i(const vl_tensor *t, int64_t off) {
  if (t->dtype == VL_INT64) return ((const int64_t *)vl_base(t))[off];
  return (int64_t)vl_load(vl_base(t), off, t->dtype);
}

/* Walk the elements that are shown, in order. */
typedef void (*visit_fn)(void *ctx, const vl_tensor *t, int64_t off);

static void visit(const vl_tensor *t, int dim, int64_t off, bool summarize, visit_fn fn,
                  void *ctx) {
  if (dim == t->ndim) {
    fn(ctx, t, off);
    return;
  }
  int64_t n = t->shape[dim];
  for (int64_t i = 0; i < n; i++) {
    if (summarize && n > 2 * VL_PRINT_EDGEITEMS && i == VL_PRINT_EDGEITEMS)
      i = n - VL_PRINT_EDGEITEMS;
    visit(t, dim + 1, off + i * t->stride[dim], summarize, fn, ctx);
  }
}

/* ------------------------------------------------------------------ */
/* The formatter                                                       */
/* ------------------------------------------------------------------ */

typedef struct formatter {
  bool floating;
  bool int_mode;
  bool sci_mode;
  int max_width;
  /* statistics of the nonzero finite values (floats) */
  bool any;
  double amin, amax;
} formatter;

/* The number without padding, into buf (VL_PRINT_NUM_MAX bytes). */
static int format_raw(const formatter *f, const vl_tensor *t, int64_t off, char *buf) {
  if (!f->floating) {
    if (t->dtype == VL_BOOL) return snprintf(buf, VL_PRINT_NUM_MAX, "%s", elem_f(t, off) != 0 ? "True" : "False");
    return snprintf(buf, VL_PRINT_NUM_MAX, "%lld", (long long)elem_i(t, off));
  }
  double v = elem_f(t, off);
  if (isnan(v)) return snprintf(buf, VL_PRINT_NUM_MAX, "nan");
  if (isinf(v)) return snprintf(buf, VL_PRINT_NUM_MAX, "%s", v < 0 ? "-inf" : "inf");
  if (f->sci_mode) return snprintf(buf, VL_PRINT_NUM_MAX, "%.*e", VL_PRINT_PRECISION, v);
  if (f->int_mode) return snprintf(buf, VL_PRINT_NUM_MAX, "%.0f.", v);
  return snprintf(buf, VL_PRINT_NUM_MAX, "%.*f", VL_PRINT_PRECISION, v);
}

static void stats_fn(void *ctx, const vl_tensor *t, int64_t off) {
  formatter *f = ctx;
  double v = elem_f(t, off);
  if (!isfinite(v) || v == 0) return;
  double a = fabs(v);
  if (!f->any) {
    f->any = true;
    f->amin = f->amax = a;
  } else {
    if (a < f->amin) f->amin = a;
    if (a > f->amax) f->amax = a;
  }
  if (v != ceil(v)) f->int_mode = false;
}

static void width_fn(void *ctx, const vl_tensor *t, int64_t off) {
  formatter *f = ctx;
  if (f->floating) {
    double v = elem_f(t, off);
    if (!isfinite(v) || v == 0) return;  /* only nonzero finite values count */
  }
  char buf[VL_PRINT_NUM_MAX];
  int n = format_raw(f, t, off, buf);
  if (n > f->max_width) f->max_width = n;
}

static void formatter_init(formatter *f, const vl_tensor *t, bool summarize) {
  memset(f, 0, sizeof *f);
  f->floating = vl_dtype_is_float(t->dtype);
  f->int_mode = true;
  f->max_width = 1;
  if (f->floating) {
    visit(t, 0, t->offset, summarize, stats_fn, f);
    if (!f->any) return;  /* all zero / non-finite: int mode, width 1 */
    double ratio = f->amax / f->amin;
    if (f->int_mode)
      f->sci_mode = ratio > 1000.0 || f->amax > 1.0e8;
    else
      f->sci_mode = ratio > 1000.0 || f->amax > 1.0e8 || f->amin < 1.0e-4;
  }
  visit(t, 0, t->offset, summarize, width_fn, f);
}

static void put_elem(sbuf *b, const formatter *f, const vl_tensor *t, int64_t off) {
  char buf[VL_PRINT_NUM_MAX];
  int n = format_raw(f, t, off, buf);
  sb_spaces(b, f->max_width - n);
  sb_puts(b, buf);
}

/* ------------------------------------------------------------------ */
/* Layout                                                              */
/* ------------------------------------------------------------------ */

static void put_vector(sbuf *b, const formatter *f, const vl_tensor *t, int64_t off, int indent,
                       bool summarize) {
  int dim = t->ndim - 1;
  int64_t n = t->shape[dim];
  int64_t per_line = (VL_PRINT_LINEWIDTH - indent) / (f->max_width + 2);
  if (per_line < 1) per_line = 1;
  bool cut = summarize && n > 2 * VL_PRINT_EDGEITEMS;
  int64_t shown = cut ? 2 * VL_PRINT_EDGEITEMS + 1 : n;  /* " ..." counts as one item */
  sb_puts(b, "[");
  for (int64_t k = 0; k < shown; k++) {
    if (k > 0) {
      if (k % per_line == 0) {
        sb_puts(b, ",\n");
        sb_spaces(b, indent + 1);
      } else {
        sb_puts(b, ", ");
      }
    }
    if (cut && k == VL_PRINT_EDGEITEMS) {
      sb_puts(b, " ...");
      continue;
    }
    int64_t i = cut && k > VL_PRINT_EDGEITEMS ? n - (shown - k) : k;
    put_elem(b, f, t, off + i * t->stride[dim]);
  }
  sb_puts(b, "]");
}

static void put_tensor(sbuf *b, const formatter *f, const vl_tensor *t, int dim, int64_t off,
                       int indent, bool summarize) {
  int left = t->ndim - dim;
  if (left == 1) {
    put_vector(b, f, t, off, indent, summarize);
    return;
  }
  int64_t n = t->shape[dim];
  bool cut = summarize && n > 2 * VL_PRINT_EDGEITEMS;
  sb_puts(b, "[");
  bool first = true;
  for (int64_t i = 0; i < n; i++) {
    if (!first) {
      sb_puts(b, ",");
      for (int k = 0; k < left - 1; k++) sb_puts(b, "\n");
      sb_spaces(b, indent + 1);
    }
    first = false;
    if (cut && i == VL_PRINT_EDGEITEMS) {
      sb_puts(b, "...");
      i = n - VL_PRINT_EDGEITEMS - 1;
      continue;
    }
    put_tensor(b, f, t, dim + 1, off + i * t->stride[dim], indent + 1, summarize);
  }
  sb_puts(b, "]");
}

/* ", suffix", or ",\n" + indent + suffix when the line would pass the width. */
static void put_suffix(sbuf *b, const char *suffix, int indent, int64_t *last_line_len) {
  int64_t n = (int64_t)strlen(suffix);
  if (*last_line_len + n + 2 > VL_PRINT_LINEWIDTH) {
    sb_puts(b, ",\n");
    sb_spaces(b, indent);
    *last_line_len = indent + n;
  } else {
    sb_puts(b, ", ");
    *last_line_len += n + 2;
  }
  sb_puts(b, suffix);
}

char *vl_format(const vl_tensor *t) {
  if (!t) {
    vl_error(VL_EARG, "format: tensor is NULL");
    return NULL;
  }
  if ((unsigned)t->dtype >= VL_DTYPE_COUNT) {
    vl_error(VL_EDTYPE, "format: unknown dtype %d", (int)t->dtype);
    return NULL;
  }
  if (t->ndim < 0 || t->ndim > VL_MAX_DIMS) {
    vl_error(VL_ESHAPE, "format: %d dims (expected 0..%d)", t->ndim, VL_MAX_DIMS);
    return NULL;
  }
  sbuf b = {0};
  const int indent = (int)strlen(VL_PRINT_PREFIX);
  char suffixes[2][VL_SHAPE_STR + 32];
  int nsuf = 0;
  int64_t numel = vl_numel(t);
  sb_puts(&b, VL_PRINT_PREFIX);
  if (numel == 0) {
    sb_puts(&b, "[]");
    if (t->ndim != 1) {
      /* Python's tuple: "(0, 3)" */
      int n = snprintf(suffixes[nsuf], sizeof suffixes[nsuf], "size=(");
      for (int d = 0; d < t->ndim; d++)
        n += snprintf(suffixes[nsuf] + n, sizeof suffixes[nsuf] - (size_t)n, "%s%lld",
                      d ? ", " : "", (long long)t->shape[d]);
      snprintf(suffixes[nsuf] + n, sizeof suffixes[nsuf] - (size_t)n, ")");
      nsuf++;
    }
    if (t->dtype != VL_FLOAT32)
      snprintf(suffixes[nsuf++], sizeof suffixes[0], "dtype=%s", vl_dtype_name(t->dtype));
  } else {
    if (!t->storage || !t->storage->data) {
      vl_error(VL_ESTATE, "format: tensor has no storage");
      return NULL;
    }
    bool summarize = numel > VL_PRINT_THRESHOLD;
    formatter f;
    formatter_init(&f, t, summarize);
    if (t->ndim == 0) {
      put_elem(&b, &f, t, t->offset);
    } else {
      put_tensor(&b, &f, t, 0, t->offset, indent, summarize);
    }
    if (t->dtype != VL_FLOAT32 && t->dtype != VL_INT64 && t->dtype != VL_BOOL)
      snprintf(suffixes[nsuf++], sizeof suffixes[0], "dtype=%s", vl_dtype_name(t->dtype));
  }
  if (!b.failed) {
    /* PyTorch counts the last line from after its newline, plus one */
    const char *nl = strrchr(b.s, '\n');
    int64_t last = nl ? (int64_t)(b.len - (size_t)(nl - b.s)) + 1 : (int64_t)b.len + 2;
    for (int k = 0; k < nsuf; k++) put_suffix(&b, suffixes[k], indent, &last);
    sb_puts(&b, ")");
  }
  if (b.failed) {
    free(b.s);
    vl_error(VL_ENOMEM, "format: out of memory building the string");
    return NULL;
  }
  return b.s;
}
