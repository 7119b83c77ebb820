/*
** dtype.c — element types: names, sizes, promotion and the 16-bit float
** conversions (prefix vl_dtype, vl_half, vl_bfloat16).
*/
#include <string.h>

#include "vl.h"

typedef struct dtype_info {
  const char *name;
  size_t size;
  bool is_float;
  int rank; /* promotion order; f16 and bf16 share a rank */
} dtype_info;

static const dtype_info dtype_table[VL_DTYPE_COUNT] = {
    [VL_FLOAT32] = {"float32", 4, true, 5},
    [VL_FLOAT64] = {"float64", 8, true, 6},
    [VL_FLOAT16] = {"float16", 2, true, 4},
    [VL_BFLOAT16] = {"bfloat16", 2, true, 4},
    [VL_INT64] = {"int64", 8, false, 3},
    [VL_INT32] = {"int32", 4, false, 2},
    [VL_UINT8] = {"uint8", 1, false, 1},
    [VL_BOOL] = {"bool", 1, false, 0},
};

/* PyTorch's alternative spellings. */
static const struct {
  const char *alias;
  vl_dtype dtype;
} dtype_aliases[] = {
    {"float", VL_FLOAT32}, {"double", VL_FLOAT64}, {"half", VL_FLOAT16},
    {"long", VL_INT64},    {"int", VL_INT32},      {"byte", VL_UINT8},
};

static bool dtype_valid(vl_dtype dt) { return (unsigned)dt < VL_DTYPE_COUNT; }

const char *vl_dtype_name(vl_dtype dt) { return dtype_valid(dt) ? dtype_table[dt].name : "?"; }

size_t vl_dtype_size(vl_dtype dt) { return dtype_valid(dt) ? dtype_table[dt].size : 0; }

bool vl_dtype_is_float(vl_dtype dt) { return dtype_valid(dt) && dtype_table[dt].is_float; }

int vl_dtype_from_name(const char *name, vl_dtype *out) {
  if (name == NULL) return vl_error(VL_EDTYPE, "dtype: no name given");
  if (strncmp(name, "torch.", 6) == 0) name += 6; /* accept "torch.float32" */
  for (int i = 0; i < VL_DTYPE_COUNT; i++) {
    if (strcmp(name, dtype_table[i].name) == 0) {
      *out = (vl_dtype)i;
      return VL_OK;
    }
  }
  for (size_t i = 0; i < sizeof dtype_aliases / sizeof dtype_aliases[0]; i++) {
    if (strcmp(name, dtype_aliases[i].alias) == 0) {
      *out = dtype_aliases[i].dtype;
      return VL_OK;
    }
  }
  return vl_error(VL_EDTYPE,
                  "dtype: unknown dtype '%s' (expected float32, float64, float16, bfloat16, "
                  "int64, int32, uint8 or bool)",
                  name);
}

vl_dtype vl_promote(vl_dtype a, vl_dtype b) {
  if (a == b) return a;
  if ((a == VL_FLOAT16 && b == VL_BFLOAT16) || (a == VL_BFLOAT16 && b == VL_FLOAT16))
    return VL_FLOAT32;
  return dtype_table[a].rank >= dtype_table[b].rank ? a : b;
}

/* IEEE 754 binary16 <-> binary32, bit-exact, round to nearest even. */
float vl_half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13); /* inf or NaN */
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else { /* subnormal: renormalise */
    int e = -1;
    do {
      e++;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | ((uint32_t)(112 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t vl_float_to_half(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) /* inf or NaN (keep NaN quiet) */
    return sign | (absx > 0x7f800000u ? 0x7e00 : 0x7c00);
  if (absx >= 0x477ff000u) return sign | 0x7c00; /* rounds past 65504: inf */
  if (absx < 0x38800000u) {                      /* result is subnormal or zero */
    if (absx < 0x33000000u) return sign;         /* below half the smallest subnormal */
    uint32_t e = absx >> 23;
    uint32_t mant = (absx & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1))) half++;
    return sign | (uint16_t)half;
  }
  uint32_t r = absx + 0xfff + ((absx >> 13) & 1); /* round to nearest even */
  return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

float vl_bfloat16_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t vl_float_to_bfloat16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}
