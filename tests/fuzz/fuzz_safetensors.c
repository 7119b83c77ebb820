/*
** fuzz_safetensors.c — libFuzzer harness for the safetensors reader
** (ops/io.c). Built and run by `make fuzz` (clang, ASan + UBSan). Every
** accepted file must give tensors whose every byte is readable.
*/
#include <stddef.h>
#include <stdint.h>

#include "vl.h"

/* Touch every byte of t (ASan checks the reads). */
static unsigned touch(const vl_tensor *t) {
  vl_tensor *c = vl_contiguous(t);
  unsigned acc = 0;
  if (c == NULL) return 0;
  const unsigned char *p = vl_data_ptr(c);
  size_t n = (size_t)vl_numel(c) * vl_dtype_size(c->dtype);
  for (size_t i = 0; i < n; i++) acc += p[i];
  vl_tensor_release(c);
  return acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static volatile unsigned sink;
  vl_safetensors *f = vl_safetensors_from_memory(data, size, "fuzz");
  if (f == NULL) return 0;
  for (int i = 0; i < vl_safetensors_count(f); i++) {
    const char *name = vl_safetensors_key(f, i);
    const char *dt;
    int ndim;
    const int64_t *shape;
    uint64_t b, e;
    if (vl_safetensors_info(f, name, &dt, &ndim, &shape, &b, &e) != VL_OK) __builtin_trap();
    vl_tensor *t = vl_safetensors_get(f, name);
    if (t) {
      sink += touch(t);
      vl_tensor_release(t);
    }
  }
  for (int i = 0; i < vl_safetensors_metadata_count(f); i++) {
    const char *k, *v;
    vl_safetensors_metadata_item(f, i, &k, &v);
    sink += (unsigned char)k[0] + (unsigned char)v[0];
  }
  vl_safetensors_close(f);
  return 0;
}
