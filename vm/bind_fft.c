/*
** bind_fft.c — Lua binding of ops/fft.c, as the table vl.fft:
**
**   vl.fft.fft(x, {n, dim = -1, norm = "backward"})    complex -> complex
**   vl.fft.ifft(x, {n, dim = -1, norm = "backward"})   complex -> complex
**   vl.fft.rfft(x, {n, dim = -1, norm = "backward"})   real -> complex
**   vl.fft.irfft(x, {n, dim = -1, norm = "backward"})  complex -> real
**
** as torch.fft. vl has no complex dtype: "complex" is a real tensor whose
** last dim has size 2 (real, imaginary), and dim (1-based, negative from
** the end) counts the dims before it. Unknown option keys are refused.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

typedef vl_tensor *(*fft_fn)(const vl_tensor *, int64_t, int, vl_fft_norm);

static int run(lua_State *L, const char *op, fft_fn fn, bool complex_in) {
  vl_tensor *x = vlua_checktensor(L, 1);
  int opt = 0;
  if (!lua_isnoneornil(L, 2)) {
    if (lua_type(L, 2) != LUA_TTABLE || vlua_totensor(L, 2))
      luaL_error(L, "%s: argument 2 must be an options table {n, dim, norm}, got %s", op, luaL_typename(L, 2));
    opt = 2;
  }
  if (!lua_isnone(L, 3)) luaL_error(L, "%s: arguments after the options table", op);
  int64_t n = -1;
  int dim = -1;
  vl_fft_norm norm = VL_FFT_NORM_BACKWARD;
  if (opt) {
    lua_pushnil(L);
    while (lua_next(L, opt)) {
      const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      if (key == NULL || (strcmp(key, "n") && strcmp(key, "dim") && strcmp(key, "norm")))
        luaL_error(L, "%s: unknown option '%s' (expected n, dim, norm)", op, key ? key : luaL_typename(L, -2));
      lua_pop(L, 1);
    }
    int t = lua_getfield(L, opt, "n");
    if (t != LUA_TNIL) {
      if (!lua_isinteger(L, -1)) luaL_error(L, "%s: option 'n' must be an integer, got %s", op, luaL_tolstring(L, -1, NULL));
      lua_Integer v = lua_tointeger(L, -1);
      if (v < 1) luaL_error(L, "%s: option 'n' must be >= 1, got %d", op, (int)(v < -1000000 ? -1000000 : v));
      n = (int64_t)v;
    }
    lua_pop(L, 1);
    t = lua_getfield(L, opt, "norm");
    if (t != LUA_TNIL) {
      if (t != LUA_TSTRING) luaL_error(L, "%s: option 'norm' must be a string, got %s", op, lua_typename(L, t));
      vlua_check(L, vl_fft_norm_from_name(lua_tostring(L, -1), &norm));
    }
    lua_pop(L, 1);
    t = lua_getfield(L, opt, "dim");
    if (t != LUA_TNIL) {
      if (!lua_isinteger(L, -1)) luaL_error(L, "%s: option 'dim' must be an integer, got %s", op, luaL_typename(L, -1));
      int lnd = complex_in ? x->ndim - 1 : x->ndim;
      /* a shape the op refuses anyway: let it say why */
      if (lnd >= 1 && (!complex_in || x->shape[x->ndim - 1] == 2))
        dim = vlua_todim(L, lua_tointeger(L, -1), lnd, op);
    }
    lua_pop(L, 1);
  }
  vlua_pushtensor(L, fn(x, n, dim, norm));
  return 1;
}

static int l_fft(lua_State *L) { return run(L, "fft", vl_fft, true); }
static int l_ifft(lua_State *L) { return run(L, "ifft", vl_ifft, true); }
static int l_rfft(lua_State *L) { return run(L, "rfft", vl_rfft, false); }
static int l_irfft(lua_State *L) { return run(L, "irfft", vl_irfft, true); }

static const vlua_Reg fft_regs[] = {
    {"fft", l_fft, 0,
     "vl.fft.fft(x, {n, dim = -1, norm = \"backward\"}) -> Tensor -- DFT of complex x ([..., 2] real-imaginary "
     "pairs) along dim, as torch.fft.fft"},
    {"ifft", l_ifft, 0,
     "vl.fft.ifft(x, {n, dim = -1, norm = \"backward\"}) -> Tensor -- inverse DFT of complex x ([..., 2]), "
     "scaled by 1/n"},
    {"rfft", l_rfft, 0,
     "vl.fft.rfft(x, {n, dim = -1, norm = \"backward\"}) -> Tensor -- DFT of real x: the n/2+1 non-negative "
     "frequencies as [..., 2] pairs"},
    {"irfft", l_irfft, 0,
     "vl.fft.irfft(x, {n = 2*(m-1), dim = -1, norm = \"backward\"}) -> Tensor -- real inverse of rfft from the "
     "first n/2+1 bins of complex x ([..., 2])"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_fft(lua_State *L) { vlua_register_in(L, "fft", fft_regs); }
