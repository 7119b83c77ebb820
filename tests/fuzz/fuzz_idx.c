/*
** fuzz_idx.c — libFuzzer harness for the IDX reader (ops/idx.c, the
** uncompressed path). Built and run by `make fuzz` (clang, ASan + UBSan).
*/
#include <stddef.h>
#include <stdint.h>

#include "vl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static volatile unsigned sink;
  vl_set_memory_limit(64u << 20); /* claims of huge dims fail cleanly */
  vl_tensor *t = vl_idx_from_memory(data, size, "fuzz");
  if (t == NULL) return 0;
  const unsigned char *p = vl_data_ptr(t);
  size_t n = (size_t)vl_numel(t) * vl_dtype_size(t->dtype);
  for (size_t i = 0; i < n; i++) sink += p[i];
  vl_tensor_release(t);
  return 0;
}
