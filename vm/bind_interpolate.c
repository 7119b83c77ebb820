/*
** bind_interpolate.c — Lua binding of ops/interpolate.c:
**
**   vl.interpolate(x, {size = {h, w} | n, scale_factor = s | {sh, sw},
**                      mode = "nearest", align_corners = false,
**                      recompute_scale_factor = false})
**
** as torch.nn.functional.interpolate. Unknown option keys are refused.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

#define OP "interpolate"

static const char *const interp_keys[] = {"size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                                          NULL};

static void check_keys(lua_State *L, int opt) {
  lua_pushnil(L);
  while (lua_next(L, opt)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    bool ok = false;
    for (int i = 0; key && interp_keys[i]; i++)
      if (strcmp(key, interp_keys[i]) == 0) ok = true;
    if (!ok) {
      if (key) luaL_error(L, OP ": unknown option '%s' (expected size, scale_factor, mode, align_corners, "
                             "recompute_scale_factor)", key);
      luaL_error(L, OP ": option keys must be names, got a %s key", luaL_typename(L, -2));
    }
    lua_pop(L, 1);
  }
}

/* The value on top: a number or a table of 1 or 2 numbers -> n. */
static int get_list(lua_State *L, const char *what, bool integer, int64_t *iv, double *dv) {
  int top = lua_gettop(L);
  int n = 1;
  if (lua_type(L, top) == LUA_TTABLE) {
    lua_Integer len = luaL_len(L, top);
    if (len < 1 || len > 2)
      luaL_error(L, OP ": %s must be a number or a table of 1 or 2 numbers, got a table of %d", what, (int)len);
    n = (int)len;
  } else if (lua_type(L, top) != LUA_TNUMBER) {
    luaL_error(L, OP ": %s must be a number or a table of numbers, got %s", what, luaL_typename(L, top));
  }
  for (int i = 0; i < n; i++) {
    if (lua_type(L, top) == LUA_TTABLE)
      lua_rawgeti(L, top, i + 1);
    else
      lua_pushvalue(L, top);
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, OP ": %s entries must be numbers, got %s", what, luaL_typename(L, -1));
    if (integer) {
      lua_Number v = lua_tonumber(L, -1);
      if (lua_isinteger(L, -1))
        iv[i] = (int64_t)lua_tointeger(L, -1);
      else if (v == floor(v) && fabs(v) < 9.2e18)
        iv[i] = (int64_t)v;
      else
        luaL_error(L, OP ": %s must be integers, got %s", what, lua_tostring(L, -1));
    } else {
      dv[i] = (double)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
  }
  return n;
}

static bool opt_bool(lua_State *L, int opt, const char *key) {
  int t = lua_getfield(L, opt, key);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    luaL_error(L, OP ": option '%s' must be a boolean, got %s", key, lua_typename(L, t));
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int l_interpolate(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  if (lua_type(L, 2) != LUA_TTABLE || vlua_totensor(L, 2))
    luaL_error(L, OP ": expected an options table with size or scale_factor as argument 2, got %s",
               luaL_typename(L, 2));
  if (!lua_isnone(L, 3)) luaL_error(L, OP ": arguments after the options table");
  int opt = 2;
  check_keys(L, opt);
  vl_interp_mode mode = VL_INTERP_NEAREST;
  int t = lua_getfield(L, opt, "mode");
  if (t != LUA_TNIL) {
    if (t != LUA_TSTRING) luaL_error(L, OP ": option 'mode' must be a string, got %s", lua_typename(L, t));
    vlua_check(L, vl_interp_mode_from_name(lua_tostring(L, -1), &mode));
  }
  lua_pop(L, 1);
  bool align = opt_bool(L, opt, "align_corners");
  bool recompute = opt_bool(L, opt, "recompute_scale_factor");
  int64_t size[2];
  double scale[2];
  int nsize = 0, nscale = 0;
  if (lua_getfield(L, opt, "size") != LUA_TNIL) nsize = get_list(L, "size", true, size, NULL);
  lua_pop(L, 1);
  if (lua_getfield(L, opt, "scale_factor") != LUA_TNIL) nscale = get_list(L, "scale_factor", false, NULL, scale);
  lua_pop(L, 1);
  vlua_pushtensor(L, vl_interpolate(x, mode, nsize ? nsize : nscale, nsize ? size : NULL, nscale ? scale : NULL,
                                    align, recompute));
  return 1;
}

static const vlua_Reg interp_regs[] = {
    {"interpolate", l_interpolate, VLUA_FUNC,
     "vl.interpolate(x, {size = {h, w} | n, scale_factor = s | {sh, sw}, mode = \"nearest\", align_corners = false, "
     "recompute_scale_factor = false}) -> Tensor -- resize [N,C,L] / [N,C,H,W] as torch's F.interpolate; modes "
     "nearest, linear, bilinear, bicubic, area"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_interpolate(lua_State *L) { vlua_register(L, interp_regs); }
