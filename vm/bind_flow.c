/*
** bind_flow.c — Lua binding of ops/flow.c, in the table vl.flow:
**
**   vl.flow.farneback(prev, next, {pyr_scale = 0.5, levels = 3, winsize = 15,
**                     iterations = 3, poly_n = 5, poly_sigma = 1.1 (1.5 for
**                     poly_n 7), gaussian = false, flow = nil}) -> [H,W,2]
**   vl.flow.lucas_kanade(prev, next, points, {win_size = 21, max_level = 3,
**                        iterations = 30, epsilon = 0.01,
**                        min_eig_threshold = 1e-4}) -> points, status, err
**   vl.flow.to_rgb(flow, {max_magnitude}) -> uint8 [H,W,3]
**   vl.flow.epe(flow, gt, {mask, per_pixel = false}) -> number | [H,W]
**
** Unknown option keys are refused.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

/* The options table at idx (absent or nil: none -> 0). */
static int opts_at(lua_State *L, const char *op, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TTABLE || vlua_totensor(L, idx))
    luaL_error(L, "%s: expected an options table as argument %d, got %s", op, idx, luaL_typename(L, idx));
  if (!lua_isnone(L, idx + 1)) luaL_error(L, "%s: arguments after the options table", op);
  return idx;
}

static bool opt_bool(lua_State *L, const char *op, int opt, const char *key, bool def) {
  if (!opt) return def;
  int t = lua_getfield(L, opt, key);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    luaL_error(L, "%s: option '%s' must be a boolean, got %s", op, key, lua_typename(L, t));
  bool v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int64_t opt_int(lua_State *L, const char *op, int opt, const char *key, int64_t def) {
  if (!opt) return def;
  int t = lua_getfield(L, opt, key);
  int64_t v = def;
  if (t == LUA_TNIL) {
  } else if (lua_isinteger(L, -1)) {
    v = (int64_t)lua_tointeger(L, -1);
  } else if (t == LUA_TNUMBER && lua_tonumber(L, -1) == floor(lua_tonumber(L, -1)) &&
             fabs(lua_tonumber(L, -1)) < 1e9) {
    v = (int64_t)lua_tonumber(L, -1);
  } else {
    luaL_error(L, "%s: option '%s' must be an integer, got %s", op, key,
               t == LUA_TNUMBER ? lua_tostring(L, -1) : lua_typename(L, t));
  }
  lua_pop(L, 1);
  if (v < -1000000000 || v > 1000000000) luaL_error(L, "%s: option '%s' = %I out of range", op, key, (lua_Integer)v);
  return v;
}

static double opt_num(lua_State *L, const char *op, int opt, const char *key, double def) {
  if (!opt) return def;
  int t = lua_getfield(L, opt, key);
  double v = def;
  if (t == LUA_TNUMBER)
    v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option '%s' must be a number, got %s", op, key, lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

/* A tensor option (nil: NULL); the options table keeps it alive. */
static vl_tensor *opt_tensor(lua_State *L, const char *op, int opt, const char *key) {
  if (!opt) return NULL;
  int t = lua_getfield(L, opt, key);
  vl_tensor *x = NULL;
  if (t != LUA_TNIL) {
    x = vlua_totensor(L, -1);
    if (!x) luaL_error(L, "%s: option '%s' must be a tensor, got %s", op, key, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return x;
}

static int l_farneback(lua_State *L) {
  const char *op = "farneback";
  vl_tensor *a = vlua_checktensor(L, 1), *b = vlua_checktensor(L, 2);
  int opt = opts_at(L, op, 3);
  static const char *const keys[] = {"pyr_scale", "levels",  "winsize",  "iterations", "poly_n",
                                     "poly_sigma", "gaussian", "flow", NULL};
  if (opt) vlua_conv_check_keys(L, opt, op, keys);
  vl_farneback_opts o;
  vl_flow_farneback_defaults(&o);
  o.pyr_scale = opt_num(L, op, opt, "pyr_scale", o.pyr_scale);
  o.levels = (int)opt_int(L, op, opt, "levels", o.levels);
  o.winsize = (int)opt_int(L, op, opt, "winsize", o.winsize);
  o.iterations = (int)opt_int(L, op, opt, "iterations", o.iterations);
  o.poly_n = (int)opt_int(L, op, opt, "poly_n", o.poly_n);
  o.poly_sigma = opt_num(L, op, opt, "poly_sigma", o.poly_n == 7 ? 1.5 : 1.1);
  o.gaussian = opt_bool(L, op, opt, "gaussian", false);
  vl_tensor *f0 = opt_tensor(L, op, opt, "flow");
  vlua_pushtensor(L, vl_flow_farneback(a, b, f0, &o));
  return 1;
}

static int l_lucas_kanade(lua_State *L) {
  const char *op = "lucas_kanade";
  vl_tensor *a = vlua_checktensor(L, 1), *b = vlua_checktensor(L, 2), *p = vlua_checktensor(L, 3);
  int opt = opts_at(L, op, 4);
  static const char *const keys[] = {"win_size", "max_level", "iterations", "epsilon", "min_eig_threshold", NULL};
  if (opt) vlua_conv_check_keys(L, opt, op, keys);
  vl_lk_opts o;
  vl_flow_lk_defaults(&o);
  o.win_size = opt_int(L, op, opt, "win_size", o.win_size);
  o.max_level = (int)opt_int(L, op, opt, "max_level", o.max_level);
  o.iterations = (int)opt_int(L, op, opt, "iterations", o.iterations);
  o.epsilon = opt_num(L, op, opt, "epsilon", o.epsilon);
  o.min_eig_threshold = opt_num(L, op, opt, "min_eig_threshold", o.min_eig_threshold);
  vl_tensor *np, *st, *er;
  vlua_check(L, vl_flow_lucas_kanade(a, b, p, &o, &np, &st, &er));
  vlua_pushtensor(L, np);
  vlua_pushtensor(L, st);
  vlua_pushtensor(L, er);
  return 3;
}

static int l_to_rgb(lua_State *L) {
  const char *op = "to_rgb";
  vl_tensor *f = vlua_checktensor(L, 1);
  int opt = opts_at(L, op, 2);
  static const char *const keys[] = {"max_magnitude", NULL};
  if (opt) vlua_conv_check_keys(L, opt, op, keys);
  double mm = opt_num(L, op, opt, "max_magnitude", 0);
  if (opt) {
    lua_getfield(L, opt, "max_magnitude");
    bool given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (given && !(mm > 0 && isfinite(mm))) luaL_error(L, "%s: max_magnitude %f, expected a finite value > 0", op, mm);
  }
  vlua_pushtensor(L, vl_flow_to_rgb(f, mm));
  return 1;
}

static int l_epe(lua_State *L) {
  const char *op = "epe";
  vl_tensor *f = vlua_checktensor(L, 1), *g = vlua_checktensor(L, 2);
  int opt = opts_at(L, op, 3);
  static const char *const keys[] = {"mask", "per_pixel", NULL};
  if (opt) vlua_conv_check_keys(L, opt, op, keys);
  vl_tensor *mask = opt_tensor(L, op, opt, "mask");
  bool pp = opt_bool(L, op, opt, "per_pixel", false);
  vl_tensor *r = vl_flow_epe(f, g, mask, pp);
  if (!r) return vlua_raise(L);
  if (pp) {
    vlua_pushtensor(L, r);
  } else {
    double v = 0;
    int64_t idx[1] = {0};
    vl_get(r, idx, &v);
    vl_tensor_release(r);
    lua_pushnumber(L, v);
  }
  return 1;
}

static const vlua_Reg flow_regs[] = {
    {"farneback", l_farneback, VLUA_FUNC,
     "vl.flow.farneback(prev, next, {pyr_scale = 0.5, levels = 3, winsize = 15, iterations = 3, poly_n = 5, "
     "poly_sigma = 1.1 (1.5 for poly_n 7), gaussian = false, flow = init}) -> Tensor -- dense optical flow [H,W,2] "
     "(u, v) as cv.calcOpticalFlowFarneback: prev(y,x) ~ next(y+v, x+u)"},
    {"lucas_kanade", l_lucas_kanade, VLUA_FUNC,
     "vl.flow.lucas_kanade(prev, next, points, {win_size = 21, max_level = 3, iterations = 30, epsilon = 0.01, "
     "min_eig_threshold = 1e-4}) -> points, status, err -- pyramidal Lucas-Kanade tracks of points [N,2] (x, y, "
     "0-based) as cv.calcOpticalFlowPyrLK"},
    {"to_rgb", l_to_rgb, VLUA_FUNC,
     "vl.flow.to_rgb(flow, {max_magnitude}) -> Tensor -- Middlebury colour coding of flow [H,W,2] as uint8 "
     "[H,W,3] RGB (+x red; the rim at max_magnitude, default the largest)"},
    {"epe", l_epe, VLUA_FUNC,
     "vl.flow.epe(flow, gt, {mask, per_pixel = false}) -> number | Tensor -- mean endpoint error |flow - gt| "
     "(over mask's true pixels), or the [H,W] map"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_flow(lua_State *L) { vlua_register_in(L, "flow", flow_regs); }
