/*
** fuzz_npy.c — libFuzzer harness for the .npy reader (ops/npy.c). Built and
** run by `make fuzz` (clang, ASan + UBSan).
*/
#include <stddef.h>
#include <stdint.h>

#include "vl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static volatile unsigned sink;
  vl_tensor *t = vl_npy_from_memory(data, size, "fuzz");
  if (t == NULL) return 0;
  vl_tensor *c = vl_contiguous(t); /* walks the (maybe Fortran-order) view */
  if (c) {
    const unsigned char *p = vl_data_ptr(c);
    size_t n = (size_t)vl_numel(c) * vl_dtype_size(c->dtype);
    for (size_t i = 0; i < n; i++) sink += p[i];
    vl_tensor_release(c);
  }
  vl_tensor_release(t);
  return 0;
}
