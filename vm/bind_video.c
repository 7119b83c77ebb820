/*
** bind_video.c — Lua binding of ops/video.c:
**
**   vl.grid_sample(input, grid, {mode = "bilinear", padding_mode = "zeros",
**                                align_corners = false})
**   vl.affine_grid(theta, {N, C, H, W}, {align_corners = false})
**   vl.temporal_shift(x, {segments = T, fold_div = 8})
**
** as torch's F.grid_sample / F.affine_grid and TSM's shift, and in vl.video
** (vlua_register_in, shared with the media bindings):
**
**   vl.video.warp(img, flow, {mode = "bilinear", padding_mode = "border"})
**   vl.video.interpolate(f0, f1, t, {flow01 =, flow10 =, occlusion = true,
**                                    flow_opts = {...}})
**
** interpolate computes missing flows with vl.flow.farneback (looked up at
** call time) on the grey frames (float frames rescaled to 0..255 by the
** pair's joint range first, as 8-bit frames). Unknown option keys are refused.
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
  if (opt) vlua_conv_check_keys(L, opt, "grid_sample", keys);
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
  if (opt) vlua_conv_check_keys(L, opt, "affine_grid", keys);
  bool align = opt_bool(L, "affine_grid", opt, "align_corners");
  vlua_pushtensor(L, vl_affine_grid(theta, size, align));
  return 1;
}

static int l_temporal_shift(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  int opt = opts_at(L, "temporal_shift", 2);
  if (!opt) luaL_error(L, "temporal_shift: expected an options table with segments as argument 2");
  static const char *const keys[] = {"segments", "fold_div", NULL};
  vlua_conv_check_keys(L, opt, "temporal_shift", keys);
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

/* ---- vl.video.warp / vl.video.interpolate ---- */

static int l_warp(lua_State *L) {
  vl_tensor *img = vlua_checktensor(L, 1), *flow = vlua_checktensor(L, 2);
  int opt = opts_at(L, "video.warp", 3);
  static const char *const keys[] = {"mode", "padding_mode", NULL};
  if (opt) vlua_conv_check_keys(L, opt, "video.warp", keys);
  vl_grid_sample_mode mode;
  vl_grid_sample_padding pad;
  vlua_check(L, vl_grid_sample_mode_from_name(opt_str(L, "video.warp", opt, "mode", "bilinear"), &mode));
  vlua_check(L, vl_grid_sample_padding_from_name(opt_str(L, "video.warp", opt, "padding_mode", "border"), &pad));
  vlua_pushtensor(L, vl_warp(img, flow, mode, pad));
  return 1;
}

/* The grey float32 [H,W] of frame n of img ([N,C,H,W] contiguous float64),
   C = 1 or 3 (ITU-R 601 luma), pushed on the stack. */
static vl_tensor *push_grey(lua_State *L, const vl_tensor *img, int64_t n) {
  int64_t C = img->shape[1], H = img->shape[2], W = img->shape[3], HW = H * W;
  int64_t shape[2] = {H, W};
  vl_tensor *g = vl_empty(2, shape, VL_FLOAT32);
  vlua_pushtensor(L, g);
  const double *p = (const double *)vl_data_ptr(img) + n * C * HW;
  float *q = vl_data_ptr(g);
  for (int64_t i = 0; i < HW; i++)
    q[i] = (float)(C == 1 ? p[i] : 0.299 * p[i] + 0.587 * p[HW + i] + 0.114 * p[2 * HW + i]);
  return g;
}

/* flow01 and flow10 [N,H,W,2] float32 from vl.flow.farneback, pushed in
   that order. f0/f1 are [N,C,H,W]; flow_opts at fo (0: none). */
static void push_farneback(lua_State *L, const vl_tensor *f0, const vl_tensor *f1, int fo) {
  const char *op = "video.interpolate";
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_MODULE);
  bool have = lua_getfield(L, -1, "flow") == LUA_TTABLE && lua_getfield(L, -1, "farneback") == LUA_TFUNCTION;
  if (!have)
    luaL_error(L, "%s: no flow01/flow10 given and vl.flow.farneback is not available (pass both flows in the "
               "options)", op);
  int fn = lua_absindex(L, -1);
  int64_t N = f0->shape[0], C = f0->shape[1], H = f0->shape[2], W = f0->shape[3];
  if (C != 1 && C != 3)
    luaL_error(L, "%s: computing the flows needs 1- or 3-channel frames, got %lld channels (pass flow01 and flow10)",
               op, (long long)C);
  vl_tensor *x[2];
  for (int i = 0; i < 2; i++) {
    vl_tensor *d = vl_to_dtype(i ? f1 : f0, VL_FLOAT64);
    vlua_pushtensor(L, d);
    x[i] = vl_contiguous(d);
    vlua_pushtensor(L, x[i]);
  }
  int64_t shape[4] = {N, H, W, 2};
  vl_tensor *out[2];
  int base = lua_gettop(L);
  for (int i = 0; i < 2; i++) {
    out[i] = vl_empty(4, shape, VL_FLOAT32);
    vlua_pushtensor(L, out[i]);
  }
  bool rescale = f0->dtype != VL_UINT8;
  for (int64_t n = 0; n < N; n++)
    for (int i = 0; i < 2; i++) {
      lua_pushvalue(L, fn);
      vl_tensor *g[2] = {push_grey(L, x[i], n), push_grey(L, x[1 - i], n)};
      if (rescale) { /* float frames: both greys onto 0..255 by their joint range, as 8-bit frames */
        float lo = INFINITY, hi = -INFINITY;
        for (int k = 0; k < 2; k++) {
          const float *q = vl_data_ptr(g[k]);
          for (int64_t j = 0; j < H * W; j++) lo = fminf(lo, q[j]), hi = fmaxf(hi, q[j]);
        }
        float sc = hi > lo ? 255.0f / (hi - lo) : 0.0f;
        for (int k = 0; k < 2; k++) {
          float *q = vl_data_ptr(g[k]);
          for (int64_t j = 0; j < H * W; j++) q[j] = (q[j] - lo) * sc;
        }
      }
      if (fo) lua_pushvalue(L, fo);
      lua_call(L, fo ? 3 : 2, 1);
      vl_tensor *r = vlua_totensor(L, -1);
      if (r == NULL || r->ndim != 3 || r->shape[0] != H || r->shape[1] != W || r->shape[2] != 2)
        luaL_error(L, "%s: vl.flow.farneback returned %s, expected a [%lld,%lld,2] tensor", op,
                   r ? "a tensor of another shape" : luaL_typename(L, -1), (long long)H, (long long)W);
      vl_tensor *rf = vl_to_dtype(r, VL_FLOAT32);
      vlua_pushtensor(L, rf);
      vl_tensor *rc = vl_contiguous(rf);
      vlua_pushtensor(L, rc);
      memcpy((float *)vl_data_ptr(out[i]) + n * H * W * 2, vl_data_ptr(rc), (size_t)(H * W * 2) * sizeof(float));
      lua_pop(L, 3);
    }
  /* leave flow01, flow10 on top */
  lua_pushvalue(L, base + 1);
  lua_pushvalue(L, base + 2);
}

static int l_interpolate(lua_State *L) {
  const char *op = "video.interpolate";
  vl_tensor *f0 = vlua_checktensor(L, 1), *f1 = vlua_checktensor(L, 2);
  double t = luaL_checknumber(L, 3);
  int opt = opts_at(L, op, 4);
  static const char *const keys[] = {"flow01", "flow10", "occlusion", "flow_opts", NULL};
  if (opt) vlua_conv_check_keys(L, opt, op, keys);
  bool occ = true;
  vl_tensor *fl[2] = {NULL, NULL};
  int fo = 0;
  if (opt) {
    if (lua_getfield(L, opt, "occlusion") != LUA_TNIL) occ = opt_bool(L, op, opt, "occlusion");
    lua_pop(L, 1);
    for (int i = 0; i < 2; i++) {
      const char *k = i ? "flow10" : "flow01";
      if (lua_getfield(L, opt, k) != LUA_TNIL && (fl[i] = vlua_totensor(L, -1)) == NULL)
        luaL_error(L, "%s: option '%s' must be a tensor [H,W,2] or [N,H,W,2], got %s", op, k, luaL_typename(L, -1));
      lua_pop(L, 1); /* the options table keeps it alive */
    }
    int ty = lua_getfield(L, opt, "flow_opts");
    if (ty == LUA_TTABLE) fo = lua_gettop(L);
    else if (ty != LUA_TNIL) luaL_error(L, "%s: option 'flow_opts' must be a table, got %s", op, lua_typename(L, ty));
    else lua_pop(L, 1);
  }
  if ((fl[0] == NULL) != (fl[1] == NULL))
    luaL_error(L, "%s: give both flow01 and flow10, or neither (to compute them with vl.flow.farneback)", op);
  if (fl[0] == NULL) {
    if (!(t > 0 && t < 1)) luaL_error(L, "%s: t must lie in (0, 1), got %g", op, t);
    /* bad frames: the op's own message (its frame checks come before the flow checks) */
    if ((f0->ndim != 3 && f0->ndim != 4) || f1->ndim != f0->ndim ||
        memcmp(f0->shape, f1->shape, sizeof(int64_t) * (size_t)f0->ndim) || f0->dtype != f1->dtype ||
        (f0->dtype != VL_FLOAT32 && f0->dtype != VL_FLOAT64 && f0->dtype != VL_UINT8))
      vlua_pushtensor(L, vl_video_interpolate(f0, f1, t, f0, f0, occ));
    vl_tensor *b0 = f0->ndim == 4 ? vl_contiguous(f0) : vl_unsqueeze(f0, 0);
    vlua_pushtensor(L, b0);
    vl_tensor *b1 = f1->ndim == 4 ? vl_contiguous(f1) : vl_unsqueeze(f1, 0);
    vlua_pushtensor(L, b1);
    push_farneback(L, b0, b1, fo);
    fl[0] = vlua_checktensor(L, -2), fl[1] = vlua_checktensor(L, -1);
    if (f0->ndim == 3) {
      for (int i = 0; i < 2; i++) {
        fl[i] = vl_squeeze(fl[i], 0);
        vlua_pushtensor(L, fl[i]);
      }
    }
  }
  vlua_pushtensor(L, vl_video_interpolate(f0, f1, t, fl[0], fl[1], occ));
  return 1;
}

static const vlua_Reg video_ns_regs[] = {
    {"warp", l_warp, VLUA_FUNC,
     "vl.video.warp(img, flow, {mode = \"bilinear\"|\"nearest\", padding_mode = \"border\"|\"zeros\"}) -> Tensor -- "
     "backward warping: out(y,x) = img(y + v, x + u) for img [C,H,W]/[N,C,H,W] and a flow [H,W,2]/[N,H,W,2] in pixels "
     "(u along x); differentiable in img and flow"},
    {"interpolate", l_interpolate, VLUA_FUNC,
     "vl.video.interpolate(f0, f1, t, {flow01 =, flow10 =, occlusion = true, flow_opts = {}}) -> Tensor -- the frame "
     "at time t in (0,1) by bidirectional backward warping (Super SloMo's intermediate flows); flows from "
     "vl.flow.farneback when not given"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_video(lua_State *L) {
  vlua_register(L, video_regs);
  vlua_register_in(L, "video", video_ns_regs);
}
