/*
** bind_conv.c — Lua bindings of ops/conv.c: vl.conv2d, vl.conv1d,
** vl.conv_transpose2d, vl.max_pool2d, vl.max_pool1d, vl.avg_pool2d,
** vl.avg_pool1d, vl.adaptive_avg_pool2d (functions in the vl table).
**
** Sizes are a number or a table {h, w}; options come in a trailing table
** and unknown keys are refused. max_pool indices returned to Lua are
** 1-based (Torch7), positions in the flattened H*W plane.
*/
#include <string.h>

#include "bind.h"

/* Refuse option keys not in `keys` (a NULL-terminated list). */
void vlua_conv_check_keys(lua_State *L, int opt, const char *op, const char *const *keys) {
  if (opt == 0) return;
  lua_pushnil(L);
  while (lua_next(L, opt)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    bool ok = false;
    for (int i = 0; key && keys[i]; i++)
      if (strcmp(key, keys[i]) == 0) ok = true;
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; keys[i]; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addstring(&b, keys[i]);
      }
      luaL_pushresult(&b);
      if (key) luaL_error(L, "%s: unknown option '%s' (expected %s)", op, key, lua_tostring(L, -1));
      luaL_error(L, "%s: option keys must be names, got a %s key", op, luaL_typename(L, -3));
    }
    lua_pop(L, 1);
  }
}

int64_t vlua_conv_to_int(lua_State *L, int idx, const char *op, const char *what) {
  if (!lua_isinteger(L, idx)) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
      lua_Number v = lua_tonumber(L, idx);
      if (v == (lua_Number)(lua_Integer)v) return (int64_t)v;
      luaL_error(L, "%s: %s must be an integer, got %s", op, what, lua_tostring(L, idx));
    }
    luaL_error(L, "%s: %s must be an integer or a table of integers, got %s", op, what, luaL_typename(L, idx));
  }
  return (int64_t)lua_tointeger(L, idx);
}

/* A value that is a number (all n entries equal) or a table of n numbers. */
void vlua_conv_get_sizes(lua_State *L, int idx, const char *op, const char *what, int n, int64_t *out) {
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, idx);
    if (len != n)
      luaL_error(L, "%s: %s must be a number or a table of %d numbers, got a table of %d", op, what, n, (int)len);
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, idx, i + 1);
      out[i] = vlua_conv_to_int(L, -1, op, what);
      lua_pop(L, 1);
    }
    return;
  }
  int64_t v = vlua_conv_to_int(L, idx, op, what);
  for (int i = 0; i < n; i++) out[i] = v;
}

/* opt[key] as sizes, or `def` for every entry when absent. */
void vlua_conv_opt_sizes(lua_State *L, int opt, const char *key, const char *op, int n, int64_t def, int64_t *out) {
  if (opt == 0 || lua_getfield(L, opt, key) == LUA_TNIL) {
    if (opt) lua_pop(L, 1);
    for (int i = 0; i < n; i++) out[i] = def;
    return;
  }
  vlua_conv_get_sizes(L, lua_gettop(L), op, key, n, out);
  lua_pop(L, 1);
}

/* The trailing options table at `idx` (or 0). */
int vlua_conv_opts_at(lua_State *L, int idx, const char *op) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TTABLE || vlua_totensor(L, idx))
    luaL_error(L, "%s: options must be a table, got %s", op, luaL_typename(L, idx));
  return idx;
}

/* The (x, w, [b], [opts]) arguments of the convolutions. A table in
   place of b is taken as the options. */
void vlua_conv_args(lua_State *L, const char *op, vl_tensor **x, vl_tensor **w, vl_tensor **b, int *opt) {
  *x = vlua_checktensor(L, 1);
  *w = vlua_checktensor(L, 2);
  *b = NULL;
  *opt = 0;
  if (lua_type(L, 3) == LUA_TTABLE && vlua_totensor(L, 3) == NULL) {
    *opt = 3;
    if (!lua_isnoneornil(L, 4)) luaL_error(L, "%s: arguments after the options table", op);
    return;
  }
  if (!lua_isnoneornil(L, 3)) *b = vlua_checktensor(L, 3);
  *opt = vlua_conv_opts_at(L, 4, op);
}

/* padding: sizes, or "valid" (0) / "same" (output as large as the input;
   stride 1 only; PyTorch's split: the extra odd pad goes at the end).
   Fills lo/hi per spatial dim; `k` are the kernel sizes. */
void vlua_conv_padding(lua_State *L, int opt, const char *op, int n, const int64_t *k, const int64_t *stride,
                       const int64_t *dil, int64_t *lo, int64_t *hi) {
  if (opt && lua_getfield(L, opt, "padding") == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    if (strcmp(s, "valid") == 0) {
      for (int i = 0; i < n; i++) lo[i] = hi[i] = 0;
    } else if (strcmp(s, "same") == 0) {
      for (int i = 0; i < n; i++)
        if (stride[i] != 1)
          luaL_error(L, "%s: padding='same' needs stride 1, got stride %d", op, (int)stride[i]);
      for (int i = 0; i < n; i++) {
        int64_t total = dil[i] * (k[i] - 1);
        lo[i] = total / 2;
        hi[i] = total - lo[i];
      }
    } else {
      luaL_error(L, "%s: padding must be a number, a table, \"same\" or \"valid\", got '%s'", op, s);
    }
    lua_pop(L, 1);
    return;
  }
  if (opt) lua_pop(L, 1);
  int64_t p[3];
  vlua_conv_opt_sizes(L, opt, "padding", op, n, 0, p);
  for (int i = 0; i < n; i++) lo[i] = hi[i] = p[i];
}

static const char *const conv_keys[] = {"stride", "padding", "dilation", "groups", NULL};

int64_t vlua_conv_opt_groups(lua_State *L, int opt, const char *op) {
  if (opt == 0 || lua_getfield(L, opt, "groups") == LUA_TNIL) {
    if (opt) lua_pop(L, 1);
    return 1;
  }
  int64_t g = vlua_conv_to_int(L, -1, op, "groups");
  lua_pop(L, 1);
  return g;
}

/* vl.conv2d(x, w, [b], {stride=1, padding=0, dilation=1, groups=1}) */
static int l_conv2d(lua_State *L) {
  const char *op = "conv2d";
  vl_tensor *x, *w, *b;
  int opt;
  vlua_conv_args(L, op, &x, &w, &b, &opt);
  vlua_conv_check_keys(L, opt, op, conv_keys);
  int64_t stride[2], dil[2], lo[2], hi[2];
  vlua_conv_opt_sizes(L, opt, "stride", op, 2, 1, stride);
  vlua_conv_opt_sizes(L, opt, "dilation", op, 2, 1, dil);
  int64_t k[2] = {w->ndim == 4 ? w->shape[2] : 1, w->ndim == 4 ? w->shape[3] : 1};
  vlua_conv_padding(L, opt, op, 2, k, stride, dil, lo, hi);
  int64_t groups = vlua_conv_opt_groups(L, opt, op);
  int64_t pad[4] = {lo[0], hi[0], lo[1], hi[1]};
  vlua_pushtensor(L, vl_conv2d_pad(x, w, b, stride, pad, dil, groups));
  return 1;
}

/* vl.conv1d(x, w, [b], {stride=1, padding=0, dilation=1, groups=1}) */
static int l_conv1d(lua_State *L) {
  const char *op = "conv1d";
  vl_tensor *x, *w, *b;
  int opt;
  vlua_conv_args(L, op, &x, &w, &b, &opt);
  vlua_conv_check_keys(L, opt, op, conv_keys);
  int64_t stride[1], dil[1], lo[1], hi[1];
  vlua_conv_opt_sizes(L, opt, "stride", op, 1, 1, stride);
  vlua_conv_opt_sizes(L, opt, "dilation", op, 1, 1, dil);
  int64_t k[1] = {w->ndim == 3 ? w->shape[2] : 1};
  vlua_conv_padding(L, opt, op, 1, k, stride, dil, lo, hi);
  int64_t groups = vlua_conv_opt_groups(L, opt, op);
  vlua_pushtensor(L, vl_conv1d_pad(x, w, b, stride[0], lo[0], hi[0], dil[0], groups));
  return 1;
}

/* vl.conv_transpose2d(x, w, [b], {stride=1, padding=0, output_padding=0, dilation=1, groups=1}) */
static int l_conv_transpose2d(lua_State *L) {
  static const char *const keys[] = {"stride", "padding", "output_padding", "dilation", "groups", NULL};
  const char *op = "conv_transpose2d";
  vl_tensor *x, *w, *b;
  int opt;
  vlua_conv_args(L, op, &x, &w, &b, &opt);
  vlua_conv_check_keys(L, opt, op, keys);
  int64_t stride[2], pad[2], outpad[2], dil[2];
  vlua_conv_opt_sizes(L, opt, "stride", op, 2, 1, stride);
  vlua_conv_opt_sizes(L, opt, "padding", op, 2, 0, pad);
  vlua_conv_opt_sizes(L, opt, "output_padding", op, 2, 0, outpad);
  vlua_conv_opt_sizes(L, opt, "dilation", op, 2, 1, dil);
  int64_t groups = vlua_conv_opt_groups(L, opt, op);
  vlua_pushtensor(L, vl_conv_transpose2d(x, w, b, stride, pad, outpad, dil, groups));
  return 1;
}

/* Values, then (return_indices) 1-based indices. */
int vlua_conv_push_max_result(lua_State *L, int rc, vl_tensor *v, vl_tensor *ind, bool want) {
  if (rc != VL_OK) return vlua_raise(L);
  if (!want) {
    vl_tensor_release(ind);
    vlua_pushtensor(L, v);
    return 1;
  }
  vl_tensor *one = vl_scalar(1, VL_INT64);
  vl_tensor *i1 = one ? vl_binary(VL_ADD, ind, one) : NULL;
  vl_tensor_release(one);
  vl_tensor_release(ind);
  if (i1 == NULL) {
    vl_tensor_release(v);
    return vlua_raise(L);
  }
  vlua_pushtensor(L, v);
  vlua_pushtensor(L, i1);
  return 2;
}

static const char *const maxpool_keys[] = {"stride", "padding", "dilation", "ceil_mode", "return_indices", NULL};

/* vl.max_pool2d(x, kernel, {stride=kernel, padding=0, dilation=1, ceil_mode=false, return_indices=false}) */
static int l_max_pool2d(lua_State *L) {
  const char *op = "max_pool2d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t k[2], s[2], p[2], d[2];
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "kernel size");
  vlua_conv_get_sizes(L, 2, op, "kernel size", 2, k);
  int opt = vlua_conv_opts_at(L, 3, op);
  vlua_conv_check_keys(L, opt, op, maxpool_keys);
  bool has_stride = opt && lua_getfield(L, opt, "stride") != LUA_TNIL;
  lua_settop(L, 3);
  if (has_stride)
    vlua_conv_opt_sizes(L, opt, "stride", op, 2, 1, s);
  else
    s[0] = k[0], s[1] = k[1];
  vlua_conv_opt_sizes(L, opt, "padding", op, 2, 0, p);
  vlua_conv_opt_sizes(L, opt, "dilation", op, 2, 1, d);
  bool ceil_mode = vlua_optbool(L, opt, "ceil_mode", 0);
  bool want = vlua_optbool(L, opt, "return_indices", 0);
  vl_tensor *v = NULL, *ind = NULL;
  int rc = vl_max_pool2d(x, k, s, p, d, ceil_mode, &v, &ind);
  return vlua_conv_push_max_result(L, rc, v, ind, want);
}

/* vl.max_pool1d(x, kernel, {stride=kernel, padding=0, dilation=1, ceil_mode=false, return_indices=false}) */
static int l_max_pool1d(lua_State *L) {
  const char *op = "max_pool1d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t k, s, p, d;
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "kernel size");
  vlua_conv_get_sizes(L, 2, op, "kernel size", 1, &k);
  int opt = vlua_conv_opts_at(L, 3, op);
  vlua_conv_check_keys(L, opt, op, maxpool_keys);
  vlua_conv_opt_sizes(L, opt, "stride", op, 1, k, &s);
  if (s == 0) luaL_error(L, "%s: stride must be at least 1, got 0", op);
  vlua_conv_opt_sizes(L, opt, "padding", op, 1, 0, &p);
  vlua_conv_opt_sizes(L, opt, "dilation", op, 1, 1, &d);
  bool ceil_mode = vlua_optbool(L, opt, "ceil_mode", 0);
  bool want = vlua_optbool(L, opt, "return_indices", 0);
  vl_tensor *v = NULL, *ind = NULL;
  int rc = vl_max_pool1d(x, k, s, p, d, ceil_mode, &v, &ind);
  return vlua_conv_push_max_result(L, rc, v, ind, want);
}

static const char *const avgpool_keys[] = {"stride", "padding", "ceil_mode", "count_include_pad",
                                           "divisor_override", NULL};

/* vl.avg_pool2d(x, kernel, {stride=kernel, padding=0, ceil_mode=false, count_include_pad=true, divisor_override}) */
static int l_avg_pool2d(lua_State *L) {
  const char *op = "avg_pool2d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t k[2], s[2], p[2];
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "kernel size");
  vlua_conv_get_sizes(L, 2, op, "kernel size", 2, k);
  int opt = vlua_conv_opts_at(L, 3, op);
  vlua_conv_check_keys(L, opt, op, avgpool_keys);
  bool has_stride = opt && lua_getfield(L, opt, "stride") != LUA_TNIL;
  lua_settop(L, 3);
  if (has_stride)
    vlua_conv_opt_sizes(L, opt, "stride", op, 2, 1, s);
  else
    s[0] = k[0], s[1] = k[1];
  vlua_conv_opt_sizes(L, opt, "padding", op, 2, 0, p);
  bool ceil_mode = vlua_optbool(L, opt, "ceil_mode", 0);
  bool cip = vlua_optbool(L, opt, "count_include_pad", 1);
  int64_t div = 0;
  if (opt && lua_getfield(L, opt, "divisor_override") != LUA_TNIL) {
    div = vlua_conv_to_int(L, -1, op, "divisor_override");
    if (div <= 0) luaL_error(L, "%s: divisor_override must be positive, got %d", op, (int)div);
  }
  vlua_pushtensor(L, vl_avg_pool2d(x, k, s, p, ceil_mode, cip, div));
  return 1;
}

/* vl.avg_pool1d(x, kernel, {stride=kernel, padding=0, ceil_mode=false, count_include_pad=true}) */
static int l_avg_pool1d(lua_State *L) {
  static const char *const keys[] = {"stride", "padding", "ceil_mode", "count_include_pad", NULL};
  const char *op = "avg_pool1d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t k, s, p;
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "kernel size");
  vlua_conv_get_sizes(L, 2, op, "kernel size", 1, &k);
  int opt = vlua_conv_opts_at(L, 3, op);
  vlua_conv_check_keys(L, opt, op, keys);
  vlua_conv_opt_sizes(L, opt, "stride", op, 1, k, &s);
  if (s == 0) luaL_error(L, "%s: stride must be at least 1, got 0", op);
  vlua_conv_opt_sizes(L, opt, "padding", op, 1, 0, &p);
  bool ceil_mode = vlua_optbool(L, opt, "ceil_mode", 0);
  bool cip = vlua_optbool(L, opt, "count_include_pad", 1);
  vlua_pushtensor(L, vl_avg_pool1d(x, k, s, p, ceil_mode, cip));
  return 1;
}

/* vl.adaptive_avg_pool2d(x, size) -- size a number or {h, w} */
static int l_adaptive_avg_pool2d(lua_State *L) {
  const char *op = "adaptive_avg_pool2d";
  vl_tensor *x = vlua_checktensor(L, 1);
  int64_t sz[2];
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "output size");
  vlua_conv_get_sizes(L, 2, op, "output size", 2, sz);
  vlua_pushtensor(L, vl_adaptive_avg_pool2d(x, sz[0], sz[1]));
  return 1;
}

static const vlua_Reg conv_regs[] = {
    {"conv2d", l_conv2d, VLUA_FUNC,
     "vl.conv2d(x, w, [b], {stride=1, padding=0, dilation=1, groups=1}) -> Tensor -- 2-d convolution, x [N,C,H,W], "
     "w [O,C/groups,kH,kW]; padding a number, {h, w}, \"same\" or \"valid\""},
    {"conv1d", l_conv1d, VLUA_FUNC,
     "vl.conv1d(x, w, [b], {stride=1, padding=0, dilation=1, groups=1}) -> Tensor -- 1-d convolution, x [N,C,L], "
     "w [O,C/groups,k]"},
    {"conv_transpose2d", l_conv_transpose2d, VLUA_FUNC,
     "vl.conv_transpose2d(x, w, [b], {stride=1, padding=0, output_padding=0, dilation=1, groups=1}) -> Tensor -- "
     "transposed convolution, w [C_in,C_out/groups,kH,kW]"},
    {"max_pool2d", l_max_pool2d, VLUA_FUNC,
     "vl.max_pool2d(x, kernel, {stride=kernel, padding=0, dilation=1, ceil_mode=false, return_indices=false}) -> "
     "Tensor [, indices] -- max over windows; indices 1-based in the H*W plane"},
    {"max_pool1d", l_max_pool1d, VLUA_FUNC,
     "vl.max_pool1d(x, kernel, {stride=kernel, padding=0, dilation=1, ceil_mode=false, return_indices=false}) -> "
     "Tensor [, indices] -- max over windows of [N,C,L]"},
    {"avg_pool2d", l_avg_pool2d, VLUA_FUNC,
     "vl.avg_pool2d(x, kernel, {stride=kernel, padding=0, ceil_mode=false, count_include_pad=true, "
     "divisor_override}) -> Tensor -- mean over windows"},
    {"avg_pool1d", l_avg_pool1d, VLUA_FUNC,
     "vl.avg_pool1d(x, kernel, {stride=kernel, padding=0, ceil_mode=false, count_include_pad=true}) -> Tensor -- "
     "mean over windows of [N,C,L]"},
    {"adaptive_avg_pool2d", l_adaptive_avg_pool2d, VLUA_FUNC,
     "vl.adaptive_avg_pool2d(x, size) -> Tensor -- mean pooling to an output of size {h, w} (or a number)"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_conv(lua_State *L) { vlua_register(L, conv_regs); }
