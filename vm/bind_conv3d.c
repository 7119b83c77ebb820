/*
** bind_conv3d.c — Lua bindings of ops/conv3d.c: vl.conv3d, vl.max_pool3d,
** vl.avg_pool3d, vl.adaptive_avg_pool3d (functions in the vl table).
**
** Sizes are a number or a table {d, h, w}; options come in a trailing
** table and unknown keys are refused. max_pool3d indices returned to Lua
** are 1-based positions in the flattened D*H*W volume.
*/
#include <string.h>

#include "bind.h"

/* The option helpers (vlua_conv_*) are shared with bind_conv.c (bind.h). */

static const char *const conv_keys[] = {"stride", "padding", "dilation", "groups", NULL};

/* vl.conv3d(x, w, [b], {stride=1, padding=0, dilation=1, groups=1}) */
static int l_conv3d(lua_State *L) {
  const char *op = "conv3d";
  vl_tensor *x, *w, *b;
  int opt;
  vlua_conv_args(L, op, &x, &w, &b, &opt);
  vlua_conv_check_keys(L, opt, op, conv_keys);
  int64_t stride[3], dil[3], lo[3], hi[3], k[3];
  vlua_conv_opt_sizes(L, opt, "stride", op, 3, 1, stride);
  vlua_conv_opt_sizes(L, opt, "dilation", op, 3, 1, dil);
  for (int i = 0; i < 3; i++) k[i] = w->ndim == 5 ? w->shape[2 + i] : 1;
  vlua_conv_padding(L, opt, op, 3, k, stride, dil, lo, hi);
  int64_t groups = vlua_conv_opt_groups(L, opt, op);
  int64_t pad[6] = {lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]};
  vlua_pushtensor(L, vl_conv3d_pad(x, w, b, stride, pad, dil, groups));
  return 1;
}

/* The kernel at 2 and the stride option (default: the kernel). */
static int pool_sizes(lua_State *L, const char *op, const char *const *keys, int64_t *k, int64_t *s) {
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "kernel size");
  vlua_conv_get_sizes(L, 2, op, "kernel size", 3, k);
  int opt = vlua_conv_opts_at(L, 3, op);
  vlua_conv_check_keys(L, opt, op, keys);
  bool has_stride = opt && lua_getfield(L, opt, "stride") != LUA_TNIL;
  lua_settop(L, 3);
  if (has_stride)
    vlua_conv_opt_sizes(L, opt, "stride", op, 3, 1, s);
  else
    memcpy(s, k, 3 * sizeof *k);
  return opt;
}

/* vl.max_pool3d(x, kernel, {stride=kernel, padding=0, dilation=1, ceil_mode=false, return_indices=false}) */
static int l_max_pool3d(lua_State *L) {
  static const char *const keys[] = {"stride", "padding", "dilation", "ceil_mode", "return_indices", NULL};
  const char *op = "max_pool3d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t k[3], s[3], p[3], d[3];
  int opt = pool_sizes(L, op, keys, k, s);
  vlua_conv_opt_sizes(L, opt, "padding", op, 3, 0, p);
  vlua_conv_opt_sizes(L, opt, "dilation", op, 3, 1, d);
  bool ceil_mode = vlua_optbool(L, opt, "ceil_mode", 0);
  bool want = vlua_optbool(L, opt, "return_indices", 0);
  vl_tensor *v = NULL, *ind = NULL;
  int rc = vl_max_pool3d(x, k, s, p, d, ceil_mode, &v, &ind);
  return vlua_conv_push_max_result(L, rc, v, ind, want);
}

/* vl.avg_pool3d(x, kernel, {stride=kernel, padding=0, ceil_mode=false, count_include_pad=true}) */
static int l_avg_pool3d(lua_State *L) {
  static const char *const keys[] = {"stride", "padding", "ceil_mode", "count_include_pad", NULL};
  const char *op = "avg_pool3d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t k[3], s[3], p[3];
  int opt = pool_sizes(L, op, keys, k, s);
  vlua_conv_opt_sizes(L, opt, "padding", op, 3, 0, p);
  bool ceil_mode = vlua_optbool(L, opt, "ceil_mode", 0);
  bool cip = vlua_optbool(L, opt, "count_include_pad", 1);
  vlua_pushtensor(L, vl_avg_pool3d(x, k, s, p, ceil_mode, cip));
  return 1;
}

/* vl.adaptive_avg_pool3d(x, size) -- size a number or {d, h, w} */
static int l_adaptive_avg_pool3d(lua_State *L) {
  const char *op = "adaptive_avg_pool3d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t sz[3];
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "output size");
  vlua_conv_get_sizes(L, 2, op, "output size", 3, sz);
  vlua_pushtensor(L, vl_adaptive_avg_pool3d(x, sz));
  return 1;
}

static const vlua_Reg conv3d_regs[] = {
    {"conv3d", l_conv3d, VLUA_FUNC,
     "vl.conv3d(x, w, [b], {stride=1, padding=0, dilation=1, groups=1}) -> Tensor -- 3-d convolution, x "
     "[N,C,D,H,W], w [O,C/groups,kD,kH,kW]; padding a number, {d, h, w}, \"same\" or \"valid\""},
    {"max_pool3d", l_max_pool3d, VLUA_FUNC,
     "vl.max_pool3d(x, kernel, {stride=kernel, padding=0, dilation=1, ceil_mode=false, return_indices=false}) -> "
     "Tensor [, indices] -- max over 3-d windows; indices 1-based in the D*H*W volume"},
    {"avg_pool3d", l_avg_pool3d, VLUA_FUNC,
     "vl.avg_pool3d(x, kernel, {stride=kernel, padding=0, ceil_mode=false, count_include_pad=true}) -> Tensor -- "
     "mean over 3-d windows"},
    {"adaptive_avg_pool3d", l_adaptive_avg_pool3d, VLUA_FUNC,
     "vl.adaptive_avg_pool3d(x, size) -> Tensor -- mean pooling to an output of size {d, h, w} (or a number)"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_conv3d(lua_State *L) { vlua_register(L, conv3d_regs); }
