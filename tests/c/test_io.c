/*
** test_io.c — ops/io.c, npy.c and idx.c through the C API only: safetensors, .npy, IDX and
** atomic writes.
**
** References: the byte vectors of the reference implementation's own
** serialisation tests (huggingface/safetensors, safetensors/src/tensor.rs:
** test_serialization, test_empty, test_serialization_forced_alignement);
** the .npy layout NumPy documents (magic, version, little-endian header
** length, header dict padded to 64 bytes); the IDX layout (big-endian
** magic and dims).
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>
#include <cmocka.h>

#include "vl.h"

static double get1(const vl_tensor *t, int64_t i) {
  double v = 0;
  assert_int_equal(vl_get(t, &i, &v), VL_OK);
  return v;
}

/* Element i of t in row-major order (any layout, 0-d included). */
static double at(const vl_tensor *t, int64_t i) {
  vl_tensor *f = vl_reshape(t, 1, (int64_t[]){-1});
  assert_non_null(f);
  double v = get1(f, i);
  vl_tensor_release(f);
  return v;
}

static void assert_error(const char *part) {
  const char *e = vl_last_error();
  if (strstr(e, part) == NULL) fail_msg("error \"%s\" lacks \"%s\"", e, part);
}

/* A fresh temporary directory (removed with rm_tree). */
static void tmpdir(char *buf) {
  strcpy(buf, "/tmp/vl_test_io_XXXXXX");
  assert_non_null(mkdtemp(buf));
}

static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d)) != NULL) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static size_t read_all(const char *path, unsigned char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t n = fread(buf, 1, cap, f);
  fclose(f);
  return n;
}

/* ---- safetensors: the reference's own byte vectors ---------------------- */

static const unsigned char ref_attn[] = {
    64, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 46, 48, 34, 58, 123, 34, 100,
    116, 121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34,
    58, 91, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102, 115,
    101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 0, 0, 0, 0, 0, 0, 128, 63,
    0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64};

static const unsigned char ref_attn_aligned[] = {
    72, 0, 0, 0, 0, 0, 0, 0, 123, 34, 97, 116, 116, 110, 48, 34, 58, 123, 34, 100, 116,
    121, 112, 101, 34, 58, 34, 70, 51, 50, 34, 44, 34, 115, 104, 97, 112, 101, 34, 58,
    91, 49, 44, 49, 44, 50, 44, 51, 93, 44, 34, 100, 97, 116, 97, 95, 111, 102, 102,
    115, 101, 116, 115, 34, 58, 91, 48, 44, 50, 52, 93, 125, 125, 32, 32, 32, 32, 32,
    32, 32, 0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0,
    160, 64};

static const unsigned char ref_empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};

static const unsigned char ref_empty_meta[] = {
    40, 0, 0, 0, 0, 0, 0, 0, 123, 34, 95, 95, 109, 101, 116, 97, 100, 97, 116, 97, 95,
    95, 34, 58, 123, 34, 102, 114, 97, 109, 101, 119, 111, 114, 107, 34, 58, 34, 112,
    116, 34, 125, 125, 32, 32, 32, 32, 32};

static vl_tensor *arange_f32(int ndim, const int64_t *shape) {
  vl_tensor *t = vl_empty(ndim, shape, VL_FLOAT32);
  float *p = vl_data_ptr(t);
  for (int64_t i = 0; i < vl_numel(t); i++) p[i] = (float)i;
  return t;
}

static void check_serialize(int n, const char *const *names, const vl_tensor *const *ts, int nmeta,
                            const char *const *k, const char *const *v, const unsigned char *want, size_t len) {
  void *out;
  size_t nbytes;
  assert_int_equal(vl_safetensors_serialize(n, names, ts, nmeta, k, v, &out, &nbytes), VL_OK);
  assert_int_equal(nbytes, len);
  assert_memory_equal(out, want, len);
  free(out);
}

static void test_reference_vectors(void **state) {
  (void)state;
  int64_t s3[3] = {1, 2, 3}, s4[4] = {1, 1, 2, 3};
  vl_tensor *a = arange_f32(3, s3), *b = arange_f32(4, s4);
  const char *na[] = {"attn.0"}, *nb[] = {"attn0"};
  check_serialize(1, na, (const vl_tensor *const *)&a, 0, NULL, NULL, ref_attn, sizeof ref_attn);
  check_serialize(1, nb, (const vl_tensor *const *)&b, 0, NULL, NULL, ref_attn_aligned, sizeof ref_attn_aligned);
  check_serialize(0, NULL, NULL, 0, NULL, NULL, ref_empty, sizeof ref_empty);
  const char *k[] = {"framework"}, *v[] = {"pt"};
  check_serialize(0, NULL, NULL, 1, k, v, ref_empty_meta, sizeof ref_empty_meta);
  /* and they parse back */
  vl_safetensors *f = vl_safetensors_from_memory(ref_attn_aligned, sizeof ref_attn_aligned, "mem");
  assert_non_null(f);
  assert_int_equal(vl_safetensors_count(f), 1);
  assert_string_equal(vl_safetensors_key(f, 0), "attn0");
  vl_tensor *t = vl_safetensors_get(f, "attn0");
  assert_non_null(t);
  assert_int_equal(t->ndim, 4);
  assert_int_equal(t->storage->kind, VL_STORAGE_EXTERNAL); /* a view of the buffer */
  vl_safetensors_close(f);                                   /* t keeps the buffer */
  for (int i = 0; i < 6; i++) assert_true(at(t, i) == i);
  vl_tensor_release(t);
  f = vl_safetensors_from_memory(ref_empty_meta, sizeof ref_empty_meta, "mem");
  assert_non_null(f);
  assert_int_equal(vl_safetensors_count(f), 0);
  assert_string_equal(vl_safetensors_metadata_get(f, "framework"), "pt");
  vl_safetensors_close(f);
  vl_tensor_release(a);
  vl_tensor_release(b);
}

/* ---- safetensors: every dtype through a file ---------------------------- */

static void test_safetensors_roundtrip(void **state) {
  (void)state;
  char dir[64], path[128];
  tmpdir(dir);
  snprintf(path, sizeof path, "%s/all.safetensors", dir);
  vl_tensor *ts[VL_DTYPE_COUNT + 1];
  const char *names[VL_DTYPE_COUNT + 1];
  static const char *const nm[] = {"f32", "f64", "f16", "bf16", "i64", "i32", "u8", "bool"};
  int64_t shape[2] = {3, 5};
  for (int d = 0; d < VL_DTYPE_COUNT; d++) {
    vl_tensor *base = vl_arange(0, 15, 1, VL_FLOAT64);
    vl_tensor *c = vl_to_dtype(base, (vl_dtype)d);
    vl_tensor *v = vl_view(c, 2, shape);
    ts[d] = vl_transpose(v, 0, 1); /* non-contiguous */
    names[d] = nm[d];
    vl_tensor_release(base);
    vl_tensor_release(c);
    vl_tensor_release(v);
  }
  ts[VL_DTYPE_COUNT] = vl_scalar(-2.5, VL_FLOAT64);
  names[VL_DTYPE_COUNT] = "scalar";
  const char *k[] = {"b", "a"}, *v[] = {"2", "1\n\"quoted\""};
  assert_int_equal(vl_safetensors_save(path, VL_DTYPE_COUNT + 1, names, (const vl_tensor *const *)ts, 2, k, v), VL_OK);
  assert_int_equal(count_entries(dir), 1);
  vl_safetensors *f = vl_safetensors_open(path);
  assert_non_null(f);
  assert_int_equal(vl_safetensors_count(f), VL_DTYPE_COUNT + 1);
  assert_string_equal(vl_safetensors_metadata_get(f, "a"), "1\n\"quoted\"");
  for (int d = 0; d <= VL_DTYPE_COUNT; d++) {
    vl_tensor *t = vl_safetensors_get(f, names[d]);
    assert_non_null(t);
    assert_int_equal(t->dtype, ts[d]->dtype);
    assert_int_equal(t->ndim, ts[d]->ndim);
    /* written by descending dtype: every tensor is aligned, so a view */
    assert_int_equal(t->storage->kind, VL_STORAGE_EXTERNAL);
    vl_tensor *eq = vl_binary(VL_EQ, t, ts[d]);
    vl_tensor *all = vl_reduce(VL_ALL, eq, 0, NULL, false);
    assert_true(at(all, 0) == 1);
    vl_tensor_release(eq);
    vl_tensor_release(all);
    vl_tensor_release(t);
  }
  const char *dt;
  int ndim;
  const int64_t *sh;
  uint64_t b, e;
  assert_int_equal(vl_safetensors_info(f, "f64", &dt, &ndim, &sh, &b, &e), VL_OK);
  assert_string_equal(dt, "F64");
  assert_int_equal(ndim, 2);
  assert_int_equal(sh[0], 5);
  assert_int_equal(e - b, 15 * 8);
  assert_int_equal(vl_safetensors_info(f, "missing", NULL, NULL, NULL, NULL, NULL), VL_EINDEX);
  assert_null(vl_safetensors_get(f, "missing"));
  assert_error("no tensor named 'missing'");
  vl_safetensors_close(f);
  for (int d = 0; d <= VL_DTYPE_COUNT; d++) vl_tensor_release(ts[d]);
  rm_tree(dir);
}

/* ---- safetensors: corrupt buffers --------------------------------------- */

static void expect_bad(const char *header, size_t data_len, const char *part) {
  size_t hn = strlen(header), n = 8 + hn + data_len;
  unsigned char *buf = calloc(1, n);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hn >> (8 * i));
  memcpy(buf + 8, header, hn);
  vl_clear_error();
  vl_safetensors *f = vl_safetensors_from_memory(buf, n, "bad.safetensors");
  if (f != NULL) fail_msg("accepted: %s", header);
  assert_int_equal(vl_last_status(), VL_EFORMAT);
  assert_error("safetensors: bad.safetensors: ");
  assert_error(part);
  free(buf);
}

static void test_safetensors_corrupt(void **state) {
  (void)state;
  expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[5,6],\"data_offsets\":[0,100]}}", 100,
             "tensor 'w' data_offsets [0, 100] do not match dtype F32 and shape [5,6] (120 bytes)");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
             6, "overlap tensor 'a'");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[1,5]}}", 5, "leave a gap: bytes 0..1");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 3, "run past the end of the file");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 5, "1 bytes unaccounted for");
  expect_bad("{\"a\":{\"dtype\":\"Q8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'Q8'");
  expect_bad("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]}}", 1, "do not fill whole bytes");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0]}}", 4, "expected [begin, end]");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[-4],\"data_offsets\":[0,4]}}", 4, "shape entry 1 is -4");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[\"4\"],\"data_offsets\":[0,4]}}", 4, "shape entry 1 is a string");
  expect_bad("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,1e300]}}", 4, "two non-negative integers");
  expect_bad("{\"a\":1,", 0, "not valid JSON");
  expect_bad("\"str\"   ", 0, "header is a string, expected a JSON object");
  expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ is an array");
  expect_bad("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "__metadata__ appears twice");
  /* too short / header past the end: built by hand */
  unsigned char small[5] = {1, 2, 3, 4, 5};
  assert_null(vl_safetensors_from_memory(small, 5, "s"));
  assert_error("5 bytes, too small");
  unsigned char past[12] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' '};
  assert_null(vl_safetensors_from_memory(past, 12, "p"));
  assert_error("header length 200 (bytes 0-7) runs past the end of the file (12 bytes)");
  unsigned char huge[8] = {0, 0, 0, 0, 0, 0, 0, 0x80};
  assert_null(vl_safetensors_from_memory(huge, 8, "h"));
  assert_error("exceeds the limit of 100000000 bytes");
  /* nested arrays past cJSON's nesting limit are an error, not a crash */
  char deep[3000 + 16];
  memset(deep, '[', 3000);
  deep[3000] = '\0';
  expect_bad(deep, 0, "not valid JSON");
  /* open a file that is not there */
  assert_null(vl_safetensors_open("/nonexistent/dir/x.safetensors"));
  assert_int_equal(vl_last_status(), VL_EIO);
  assert_error("cannot open (No such file or directory)");
}

static void test_safetensors_save_bad(void **state) {
  (void)state;
  vl_tensor *t = vl_zeros(0, NULL, VL_FLOAT32);
  const vl_tensor *ts[2] = {t, t};
  const char *dup[2] = {"x", "x"}, *res[1] = {"__metadata__"};
  void *out;
  size_t n;
  assert_int_equal(vl_safetensors_serialize(2, dup, ts, 0, NULL, NULL, &out, &n), VL_EARG);
  assert_error("tensor name 'x' appears twice");
  assert_int_equal(vl_safetensors_serialize(1, res, ts, 0, NULL, NULL, &out, &n), VL_EARG);
  assert_error("reserved");
  const char *bad_utf8[1] = {"\xff"};
  assert_int_equal(vl_safetensors_serialize(1, bad_utf8, ts, 0, NULL, NULL, &out, &n), VL_EARG);
  assert_error("not valid UTF-8");
  const char *k[2] = {"a", "a"}, *v[2] = {"1", "2"};
  assert_int_equal(vl_safetensors_serialize(0, NULL, NULL, 2, k, v, &out, &n), VL_EARG);
  assert_error("metadata key 'a' appears twice");
  assert_int_equal(vl_safetensors_save("/nonexistent/dir/x.safetensors", 1, dup, ts, 0, NULL, NULL), VL_EIO);
  assert_error("cannot create a temporary file next to it");
  vl_tensor_release(t);
}

/* ---- npy ----------------------------------------------------------------- */

static void test_npy_roundtrip(void **state) {
  (void)state;
  char dir[64], path[128];
  tmpdir(dir);
  snprintf(path, sizeof path, "%s/x.npy", dir);
  int64_t shape[3] = {2, 3, 4};
  for (int d = 0; d < VL_DTYPE_COUNT; d++) {
    vl_tensor *base = vl_arange(-5, 19, 1, VL_FLOAT64);
    vl_tensor *c = vl_to_dtype(base, (vl_dtype)d);
    vl_tensor *v = vl_view(c, 3, shape);
    int st = vl_npy_save(path, v);
    if (d == VL_BFLOAT16) {
      assert_int_equal(st, VL_EDTYPE);
      assert_error("bfloat16 has no NumPy dtype");
    } else {
      assert_int_equal(st, VL_OK);
      /* the layout NumPy documents: magic, version 1.0, header to 64 bytes */
      unsigned char buf[256];
      size_t n = read_all(path, buf, sizeof buf);
      assert_true(n >= 64);
      assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
      size_t hl = buf[8] | (size_t)buf[9] << 8;
      assert_int_equal((10 + hl) % 64, 0);
      assert_int_equal(buf[10 + hl - 1], '\n');
      vl_tensor *back = vl_npy_load(path);
      assert_non_null(back);
      assert_int_equal(back->dtype, d);
      for (int i = 0; i < 24; i++) assert_true(at(back, i) == at(v, i));
      vl_tensor_release(back);
    }
    vl_tensor_release(base);
    vl_tensor_release(c);
    vl_tensor_release(v);
  }
  assert_int_equal(count_entries(dir), 1);
  rm_tree(dir);
}

static void test_npy_memory(void **state) {
  (void)state;
  /* Fortran order, big-endian int64, version 2.0 */
  char hdr[64];
  int hn = snprintf(hdr, sizeof hdr, "{'descr': '>i8', 'fortran_order': True, 'shape': (2, 3), }");
  size_t total = 128 - 12; /* header padded so that the data starts at byte 128 */
  unsigned char buf[128 + 48];
  memset(buf, ' ', sizeof buf);
  memcpy(buf, "\x93NUMPY\x02\x00", 8);
  uint32_t hl = (uint32_t)(total);
  buf[8] = (unsigned char)hl, buf[9] = (unsigned char)(hl >> 8), buf[10] = 0, buf[11] = 0;
  memcpy(buf + 12, hdr, (size_t)hn);
  buf[127] = '\n';
  for (int i = 0; i < 6; i++) { /* column-major 0..5, big-endian */
    memset(buf + 128 + 8 * i, 0, 8);
    buf[128 + 8 * i + 7] = (unsigned char)i;
  }
  vl_tensor *t = vl_npy_from_memory(buf, sizeof buf, "mem.npy");
  if (t == NULL) fail_msg("%s", vl_last_error());
  assert_non_null(t);
  assert_int_equal(t->dtype, VL_INT64);
  assert_int_equal(t->shape[0], 2);
  assert_int_equal(t->shape[1], 3);
  /* element [r][c] = r + 2c */
  for (int r = 0; r < 2; r++)
    for (int c = 0; c < 3; c++) {
      int64_t ix[2] = {r, c}, v;
      assert_int_equal(vl_get_int(t, ix, &v), VL_OK);
      assert_int_equal(v, r + 2 * c);
    }
  vl_tensor_release(t);
  /* truncated data */
  assert_null(vl_npy_from_memory(buf, sizeof buf - 1, "cut.npy"));
  assert_error("npy: cut.npy: data truncated");
  /* an object array */
  const char *obj = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }";
  memset(buf + 12, ' ', 115);
  memcpy(buf + 12, obj, strlen(obj));
  assert_null(vl_npy_from_memory(buf, sizeof buf, "obj.npy"));
  assert_error("refuses to load pickles");
}

/* ---- IDX ----------------------------------------------------------------- */

static void test_idx_memory(void **state) {
  (void)state;
  const unsigned char u8[] = {0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255};
  vl_tensor *t = vl_idx_from_memory(u8, sizeof u8, "u8");
  assert_non_null(t);
  assert_int_equal(t->dtype, VL_UINT8);
  assert_int_equal(t->shape[1], 3);
  assert_true(at(t, 5) == 255);
  vl_tensor_release(t);
  const unsigned char i16[] = {0, 0, 0x0B, 1, 0, 0, 0, 2, 0x80, 0x00, 0x01, 0x02};
  t = vl_idx_from_memory(i16, sizeof i16, "i16");
  assert_non_null(t);
  assert_int_equal(t->dtype, VL_INT32);
  assert_true(get1(t, 0) == -32768);
  assert_true(get1(t, 1) == 258);
  vl_tensor_release(t);
  const unsigned char f64[] = {0, 0, 0x0E, 1, 0, 0, 0, 1, 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18};
  t = vl_idx_from_memory(f64, sizeof f64, "f64");
  assert_non_null(t);
  assert_true(get1(t, 0) == 3.141592653589793);
  vl_tensor_release(t);
  assert_null(vl_idx_from_memory(u8, sizeof u8 - 1, "cut"));
  assert_error("idx: cut: truncated: dims [2,3] of unsigned byte need 6 data bytes from byte 12, the file holds 5");
  const unsigned char bad[] = {0, 1, 8, 1, 0, 0, 0, 0};
  assert_null(vl_idx_from_memory(bad, sizeof bad, "bad"));
  assert_error("bad magic 00 01 08 01 at byte 0");
}

/* ---- atomic writes --------------------------------------------------------- */

static void test_atomic_write(void **state) {
  (void)state;
  char dir[64], path[128];
  tmpdir(dir);
  snprintf(path, sizeof path, "%s/out.bin", dir);
  assert_int_equal(vl_write_file_atomic(path, "old", 3), VL_OK);
  /* a child with a file size limit: the write fails half way */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {4096, 4096};
    setrlimit(RLIMIT_FSIZE, &rl);
    static char big[1 << 16];
    int st = vl_write_file_atomic(path, big, sizeof big);
    _exit(st == VL_EIO && strstr(vl_last_error(), "write failed (File too large)") ? 0 : 1);
  }
  int status;
  waitpid(pid, &status, 0);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  unsigned char buf[16];
  assert_int_equal(read_all(path, buf, sizeof buf), 3);
  assert_memory_equal(buf, "old", 3);
  assert_int_equal(count_entries(dir), 1); /* no temporary left */
  /* the new file has an ordinary mode, not mkstemp's 0600 */
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  mode_t mask = umask(0);
  umask(mask);
  assert_int_equal(st.st_mode & 0777, 0666 & ~mask);
  rm_tree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_vectors),   cmocka_unit_test(test_safetensors_roundtrip),
      cmocka_unit_test(test_safetensors_corrupt), cmocka_unit_test(test_safetensors_save_bad),
      cmocka_unit_test(test_npy_roundtrip),       cmocka_unit_test(test_npy_memory),
      cmocka_unit_test(test_idx_memory),          cmocka_unit_test(test_atomic_write),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
