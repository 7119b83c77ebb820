/*
** idx.c — IDX files (MNIST's format, prefix vl_idx_): plain or gzip (zlib),
** big-endian. The header's sizes are checked against the file (and, for
** gzip, against the most deflate can expand it) before anything is
** allocated or read.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "io_internal.h"

#define IO_GZIP_MAX_RATIO 1032 /* deflate cannot expand data more than this */

/* ------------------------------------------------------------------ */
/* IDX                                                                  */
/* ------------------------------------------------------------------ */

#define IDX "idx"

typedef struct idx_type {
  unsigned code;
  size_t width;   /* bytes in the file */
  vl_dtype dt;    /* tensor dtype */
  const char *name;
} idx_type;

static const idx_type idx_types[] = {
    {0x08, 1, VL_UINT8, "unsigned byte"}, {0x09, 1, VL_INT32, "signed byte"},
    {0x0B, 2, VL_INT32, "short"},         {0x0C, 4, VL_INT32, "int"},
    {0x0D, 4, VL_FLOAT32, "float"},       {0x0E, 8, VL_FLOAT64, "double"},
};

/* A byte source: a gzFile (plain files too: zlib reads them as they are)
   or memory. */
typedef struct idx_src {
  gzFile gz;
  const unsigned char *mem;
  size_t len, pos;
} idx_src;

/* Read up to n bytes; returns the count (< n at the end), or -1. */
static int64_t idx_read(idx_src *s, void *dst, size_t n) {
  if (s->gz == NULL) {
    size_t k = s->len - s->pos < n ? s->len - s->pos : n;
    memcpy(dst, s->mem + s->pos, k);
    s->pos += k;
    return (int64_t)k;
  }
  size_t got = 0;
  while (got < n) {
    size_t chunk = n - got > IO_WRITE_CHUNK ? IO_WRITE_CHUNK : n - got;
    int r = gzread(s->gz, (unsigned char *)dst + got, (unsigned)chunk);
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (int64_t)got;
}

/* zlib's message without the "<fd:N>: " it puts first. */
static const char *gz_message(gzFile gz, int *code) {
  const char *m = gzerror(gz, code);
  if (m == NULL || m[0] == '\0') return "read error";
  const char *sep = m[0] == '<' ? strstr(m, ">: ") : NULL;
  return sep ? sep + 3 : m;
}

static const char *idx_gzerror(idx_src *s) {
  int code = 0;
  return s->gz ? gz_message(s->gz, &code) : "read error";
}

/* `size`: bytes in the file (memory); a gzip file's data expands at most
   IO_GZIP_MAX_RATIO times, so a header claiming more is refused before
   anything is allocated. */
static vl_tensor *idx_parse(idx_src *s, const char *path, uint64_t size, bool gzipped) {
  unsigned char magic[4];
  int64_t r = idx_read(s, magic, 4);
  if (r < 0) return io_fail(VL_EIO, IDX, path, "cannot read (%s)", idx_gzerror(s)), NULL;
  if (r < 4) return io_fail(VL_EFORMAT, IDX, path, "file is %lld bytes, too short for the 4-byte magic", (long long)r), NULL;
  if (magic[0] != 0 || magic[1] != 0)
    return io_fail(VL_EFORMAT, IDX, path, "bad magic %02x %02x %02x %02x at byte 0 (expected 00 00 <type> <ndim>)",
                   magic[0], magic[1], magic[2], magic[3]),
           NULL;
  const idx_type *ty = NULL;
  for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
    if (idx_types[i].code == magic[2]) ty = &idx_types[i];
  if (ty == NULL)
    return io_fail(VL_EFORMAT, IDX, path,
                   "unknown element type 0x%02x at byte 2 (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)", magic[2]),
           NULL;
  int ndim = magic[3];
  if (ndim < 1 || ndim > VL_MAX_DIMS)
    return io_fail(VL_EFORMAT, IDX, path, "%d dims at byte 3 (expected 1..%d)", ndim, VL_MAX_DIMS), NULL;
  unsigned char dims[4 * VL_MAX_DIMS];
  r = idx_read(s, dims, 4 * (size_t)ndim);
  if (r < 0) return io_fail(VL_EIO, IDX, path, "cannot read (%s)", idx_gzerror(s)), NULL;
  if (r < 4 * ndim)
    return io_fail(VL_EFORMAT, IDX, path, "truncated: the header of %d dims needs %d bytes, the file ends at byte %lld",
                   ndim, 4 + 4 * ndim, (long long)(4 + r)),
           NULL;
  int64_t shape[VL_MAX_DIMS];
  uint64_t count = 1, nbytes;
  for (int d = 0; d < ndim; d++) {
    const unsigned char *p = dims + 4 * d;
    shape[d] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    if (__builtin_mul_overflow(count, (uint64_t)shape[d], &count))
      return io_fail(VL_EFORMAT, IDX, path, "dims overflow"), NULL;
  }
  if (__builtin_mul_overflow(count, (uint64_t)ty->width, &nbytes) || !strides_fit(ndim, shape))
    return io_fail(VL_EFORMAT, IDX, path, "dims overflow"), NULL;
  uint64_t data_at = 4 + 4 * (uint64_t)ndim;
  bool exact = !gzipped;
  uint64_t limit = gzipped ? (size > UINT64_MAX / IO_GZIP_MAX_RATIO ? UINT64_MAX : size * IO_GZIP_MAX_RATIO)
                           : (size > data_at ? size - data_at : 0);
  char sh[VL_SHAPE_STR];
  if (nbytes > limit)
    return io_fail(VL_EFORMAT, IDX, path, "truncated: dims %s of %s need %llu data bytes from byte %llu, the file holds %s%llu",
                   vl_shape_str(ndim, shape, sh), ty->name, (ull)nbytes, (ull)data_at, exact ? "" : "at most ",
                   (ull)limit),
           NULL;
  vl_tensor *t = vl_empty(ndim, shape, ty->dt);
  if (t == NULL) return NULL;
  unsigned char *out = vl_data_ptr(t);
  unsigned char *raw = out;
  if (ty->width != vl_dtype_size(ty->dt) && nbytes > 0) { /* widened: read raw first */
    raw = malloc((size_t)nbytes);
    if (raw == NULL) {
      vl_tensor_release(t);
      return vl_error(VL_ENOMEM, "%s: out of memory", IDX), NULL;
    }
  }
  r = nbytes ? idx_read(s, raw, (size_t)nbytes) : 0;
  int bad = 0;
  if (r < 0) bad = io_fail(VL_EIO, IDX, path, "cannot read (%s)", idx_gzerror(s));
  else if ((uint64_t)r < nbytes)
    bad = io_fail(VL_EFORMAT, IDX, path, "truncated: dims %s of %s need %llu data bytes from byte %llu, the file holds %lld",
                  vl_shape_str(ndim, shape, sh), ty->name, (ull)nbytes, (ull)data_at, (long long)r);
  else {
    unsigned char extra;
    int64_t more = idx_read(s, &extra, 1);
    if (more < 0) bad = io_fail(VL_EIO, IDX, path, "cannot read (%s)", idx_gzerror(s));
    else if (more > 0)
      bad = io_fail(VL_EFORMAT, IDX, path, "trailing bytes after the data, which ends at byte %llu (dims %s)",
                    (ull)(data_at + nbytes), vl_shape_str(ndim, shape, sh));
    else if (s->gz) { /* zlib reports a cut-off stream (no trailer) softly: ask */
      int code = Z_OK;
      const char *m = gz_message(s->gz, &code);
      if (code != Z_OK) bad = io_fail(VL_EFORMAT, IDX, path, "gzip stream ends early or is corrupt (%s)", m);
    }
  }
  if (bad) {
    if (raw != out) free(raw);
    vl_tensor_release(t);
    return NULL;
  }
  if (ty->code == 0x09) {
    int32_t *o = (int32_t *)out;
    for (uint64_t i = 0; i < count; i++) o[i] = (int8_t)raw[i];
  } else if (ty->code == 0x0B) {
    int32_t *o = (int32_t *)out;
    for (uint64_t i = 0; i < count; i++) o[i] = (int16_t)(uint16_t)((unsigned)raw[2 * i] << 8 | raw[2 * i + 1]);
  } else {
    swap_bytes(out, (size_t)nbytes, ty->width);
  }
  if (raw != out) free(raw);
  return t;
}

vl_tensor *vl_idx_load(const char *path) {
  if (path == NULL) return vl_error(VL_EARG, "%s: no path given", IDX), NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_fail(VL_EIO, IDX, path, "cannot open (%s)", strerror(errno)), NULL;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return io_fail(VL_EIO, IDX, path, "not a regular file"), NULL;
  }
  idx_src s = {0};
  s.gz = gzdopen(fd, "rb");
  if (s.gz == NULL) {
    close(fd);
    return vl_error(VL_ENOMEM, "%s: out of memory", IDX), NULL;
  }
  gzbuffer(s.gz, 1 << 17);
  unsigned char peek[2] = {0, 0};
  bool gzipped = pread(fd, peek, 2, 0) == 2 && peek[0] == 0x1f && peek[1] == 0x8b;
  vl_tensor *t = idx_parse(&s, path, (uint64_t)st.st_size, gzipped);
  gzclose(s.gz);
  return t;
}

vl_tensor *vl_idx_from_memory(const void *data, size_t nbytes, const char *name) {
  idx_src s = {0};
  s.mem = data;
  s.len = nbytes;
  const char *path = name ? name : "<memory>";
  return idx_parse(&s, path, (uint64_t)nbytes, false);
}
