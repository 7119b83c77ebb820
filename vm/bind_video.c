/*
** bind_video.c — Lua binding of ops/video.c:
**
**   vl.grid_sample(input, grid, {mode = "bilinear", padding_mode = "zeros",
**                                align_corners = false})
**   vl.affine_grid(theta, {N, C, H, W}, {align_corners = false})
**   vl.temporal_shift(x, {segments = T, fold_div = 8})
**
** as torch's F.grid_sample / F.affine_grid and TSM's shift. Unknown option
** keys are refused.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

/* Refuse keys of the options table at opt that are not in keys. */
static void check_keys(lua_State *L, const char *op, int opt, const char *const *keys, const char *list) {
  lua_pushnil(L);
  while (lua_next(L, opt)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    bool ok = false;
    for (int i = 0; key && keys[i]; i++)
      if (strcmp(key, keys[i]) == 0) ok = true;
    if (!ok) {
      if (key) luaL_error(L, "%s: unknown option '%s' (expected %s)", op, key, list);
      luaL_error(L, "%s: option keys must be names, got a %s key", op, luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
}

/* The options table at idx (absent or nil: none -> 0). */
static int opts_at(lua_State *L, const char *op, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TTABLE || vlua_totensor(L, idx))
    luaL_error(L, "%s: expected an options table as argument %d, got %s", op, idx, luaL_typename(L, idx));
  if (!lua_isnone(L, idx + 1)) luaL_error(L, "%s: arguments after the options table", op);
  return idx;
}

static bool opt_bool(lua_State *L, const char *op, int opt, const char *key) {
  if (!opt) return false;
  int t = lua_getfield(L, opt, key);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) luaL_error(L, "%s: option '%s' must be a boolean, got %s", op, key,
                                                     lua_typename(L, t));
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Integer option (def when absent). */
static int64_t opt_int(lua_State *L, const char *op, int opt, const char *key, int64_t def, bool required) {
  int t = opt ? lua_getfield(L, opt, key) : (lua_pushnil(L), LUA_TNIL);
  int64_t v = def;
  if (t == LUA_TNIL) {
    if (required) luaL_error(L, "%s: option '%s' is required", op, key);
  } else if (lua_isinteger(L, -1)) {
    v = (int64_t)lua_tointeger(L, -1);
  } else if (t == LUA_TNUMBER && lua_tonumber(L, -1) == floor(lua_tonumber(L, -1)) &&
             fabs(lua_tonumber(L, -1)) < 9.2e18) {
    v = (int64_t)lua_tonumber(L, -1);
  } else {
    luaL_error(L, "%s: option '%s' must be an integer, got %s", op, key,
               t == LUA_TNUMBER ? lua_tostring(L, -1) : lua_typename(L, t));
  }
  lua_pop(L, 1);
  return v;
}

static const char *opt_str(lua_State *L, const char *op, int opt, const char *key, const char *def) {
  if (!opt) return def;
  int t = lua_getfield(L, opt, key);
  const char *s = def;
  if (t == LUA_TSTRING)
    s = lua_tostring(L, -1); /* the table keeps it alive */
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option '%s' must be a string, got %s", op, key, lua_typename(L, t));
  lua_pop(L, 1);
  return s;
}

static int l_grid_sample(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1), *grid = vlua_checktensor(L, 2);
  int opt = opts_at(L, "grid_sample", 3);
  static const char *const keys[] = {"mode", "padding_mode", "align_corners", NULL};
  if (opt) check_keys(L, "grid_sample", opt, keys, "mode, padding_mode, align_corners");
  vl_grid_sample_mode mode;
  vl_grid_sample_padding pad;
  vlua_check(L, vl_grid_sample_mode_from_name(opt_str(L, "grid_sample", opt, "mode", "bilinear"), &mode));
  vlua_check(L, vl_grid_sample_padding_from_name(opt_str(L, "grid_sample", opt, "padding_mode", "zeros"), &pad));
  bool align = opt_bool(L, "grid_sample", opt, "align_corners");
  vlua_pushtensor(L, vl_grid_sample(x, grid, mode, pad, align));
  return 1;
}

static int l_affine_grid(lua_State *L) {
  vl_tensor *theta = vlua_checktensor(L, 1);
  if (lua_type(L, 2) != LUA_TTABLE || vlua_totensor(L, 2))
    luaL_error(L, "affine_grid: expected a size table {N,C,H,W} as argument 2, got %s", luaL_typename(L, 2));
  if (luaL_len(L, 2) != 4)
    luaL_error(L, "affine_grid: size must have 4 entries {N,C,H,W}, got %d", (int)luaL_len(L, 2));
  int64_t size[4];
  for (int i = 0; i < 4; i++) {
    lua_rawgeti(L, 2, i + 1);
    if (!lua_isinteger(L, -1))
      luaL_error(L, "affine_grid: size entries must be integers, got %s at %d", luaL_typename(L, -1), i + 1);
    size[i] = (int64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  int opt = opts_at(L, "affine_grid", 3);
  static const char *const keys[] = {"align_corners", NULL};
  if (opt) check_keys(L, "affine_grid", opt, keys, "align_corners");
  bool align = opt_bool(L, "affine_grid", opt, "align_corners");
  vlua_pushtensor(L, vl_affine_grid(theta, size, align));
  return 1;
}

static int l_temporal_shift(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  int opt = opts_at(L, "temporal_shift", 2);
  if (!opt) luaL_error(L, "temporal_shift: expected an options table with segments as argument 2");
  static const char *const keys[] = {"segments", "fold_div", NULL};
  check_keys(L, "temporal_shift", opt, keys, "segments, fold_div");
  int64_t seg = opt_int(L, "temporal_shift", opt, "segments", 0, true);
  int64_t fd = opt_int(L, "temporal_shift", opt, "fold_div", 8, false);
  vlua_pushtensor(L, vl_temporal_shift(x, seg, fd));
  return 1;
}

static const vlua_Reg video_regs[] = {
    {"grid_sample", l_grid_sample, VLUA_FUNC,
     "vl.grid_sample(input, grid, {mode = \"bilinear\"|\"nearest\", padding_mode = \"zeros\"|\"border\", "
     "align_corners = false}) -> Tensor -- sample [N,C,H,W] at grid [N,Ho,Wo,2] (x, y in [-1,1]) as torch's "
     "F.grid_sample -> [N,C,Ho,Wo]"},
    {"affine_grid", l_affine_grid, VLUA_FUNC,
     "vl.affine_grid(theta, {N, C, H, W}, {align_corners = false}) -> Tensor -- the [N,H,W,2] sampling grid of the "
     "affine maps theta [N,2,3], as torch's F.affine_grid"},
    {"temporal_shift", l_temporal_shift, VLUA_FUNC,
     "vl.temporal_shift(x, {segments = T, fold_div = 8}) -> Tensor -- TSM shift of x [N*T,C,...]: channels "
     "[1, C/fold_div] from frame t+1, the next C/fold_div from frame t-1, zeros at the ends"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_video(lua_State *L) { vlua_register(L, video_regs); }
