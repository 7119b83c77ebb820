/*
** bind_autograd.c — autograd in Lua: requires_grad, backward, x.grad,
** detach, vl.no_grad, vl.gradcheck.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/vl_internal.h"
#include "bind.h"

/* x:requires_grad() -> boolean; x:requires_grad(on) -> x */
static int l_requires_grad(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (lua_isnone(L, 2)) {
    lua_pushboolean(L, vl_requires_grad(t));
    return 1;
  }
  vlua_check(L, vl_set_requires_grad(t, lua_toboolean(L, 2)));
  lua_settop(L, 1);
  return 1;
}

static int l_requires_grad_(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vlua_check(L, vl_set_requires_grad(t, lua_isnone(L, 2) ? true : lua_toboolean(L, 2)));
  lua_settop(L, 1);
  return 1;
}

/* y:backward([grad], {retain_graph}) */
static int l_backward(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_tensor *g = vlua_totensor(L, 2);
  if (g == NULL && !lua_isnoneornil(L, 2) && !lua_istable(L, 2))
    return luaL_error(L, "backward: gradient must be a tensor, got %s", luaL_typename(L, 2));
  int opts = lua_istable(L, 2) ? 2 : lua_istable(L, 3) ? 3 : 0;
  bool retain = vlua_optbool(L, opts, "retain_graph", 0);
  vlua_check(L, vl_backward(t, g, retain));
  return 0;
}

static int l_detach(lua_State *L) {
  vlua_pushtensor(L, vl_detach(vlua_checktensor(L, 1)));
  return 1;
}

static int l_is_leaf(lua_State *L) {
  lua_pushboolean(L, vl_is_leaf(vlua_checktensor(L, 1)));
  return 1;
}

static int l_zero_grad(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_tensor *g = vl_get_grad(t);
  if (g) {
    bool was = vl_is_grad_enabled();
    vl_set_grad_enabled(false);
    int rc = vl_fill_(g, 0);
    vl_set_grad_enabled(was);
    vl_tensor_release(g);
    vlua_check(L, rc);
  }
  lua_settop(L, 1);
  return 1;
}

/* properties read through x.name (see bind_tensor.c's __index) */
static int p_grad(lua_State *L) {
  vl_tensor *g = vl_get_grad(vlua_checktensor(L, 1));
  if (g == NULL) lua_pushnil(L);
  else vlua_pushtensor(L, g);
  return 1;
}

static int p_grad_fn(lua_State *L) {
  const char *name = vl_grad_fn_name(vlua_checktensor(L, 1));
  if (name) lua_pushstring(L, name);
  else lua_pushnil(L);
  return 1;
}

/* x.grad = g / nil (see bind_tensor.c's __newindex) */
static int s_grad(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_tensor *g = lua_isnil(L, 2) ? NULL : vlua_checktensor(L, 2);
  vlua_check(L, vl_set_grad(t, g));
  return 0;
}

static int l_set_grad_enabled(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  vl_set_grad_enabled(lua_toboolean(L, 1));
  return 0;
}

static int l_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, vl_is_grad_enabled());
  return 1;
}

/* vl.no_grad(fn, ...) -> fn's results, recorded nothing; recording is
   restored even when fn raises. */
static int l_no_grad(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  bool was = vl_is_grad_enabled();
  vl_set_grad_enabled(false);
  int nargs = lua_gettop(L) - 1;
  int rc = lua_pcall(L, nargs, LUA_MULTRET, 0);
  vl_set_grad_enabled(was);
  if (rc != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

/* ------------------------------------------------------------------ */
/* gradcheck: analytic gradients against central differences           */
/* ------------------------------------------------------------------ */

/* Calls fn(inputs...) and returns the sum of every output element
   weighted by `weights` (one fixed random tensor per output), so that one
   scalar checks the whole Jacobian-vector product. */
static double eval_weighted(lua_State *L, int fn, int inputs, int n, int weights) {
  lua_pushvalue(L, fn);
  for (int i = 1; i <= n; i++) lua_rawgeti(L, inputs, i);
  lua_call(L, n, 1);
  vl_tensor *out = vlua_totensor(L, -1);
  if (out == NULL) luaL_error(L, "gradcheck: fn must return a tensor, got %s", luaL_typename(L, -1));
  lua_rawgeti(L, weights, 1);
  vl_tensor *w = vlua_totensor(L, -1);
  if (w && !vl_same_shape(w, out)) luaL_error(L, "gradcheck: fn's output changed shape between calls");
  double s = 0;
  int64_t n_out = vl_numel(out);
  int64_t idx[VL_MAX_DIMS];
  for (int64_t k = 0; k < n_out; k++) {
    int64_t r = k;
    for (int d = out->ndim - 1; d >= 0; d--) {
      idx[d] = r % out->shape[d];
      r /= out->shape[d];
    }
    double v, wv = 1;
    vl_get(out, idx, &v);
    if (w) vl_get(w, idx, &wv);
    s += v * wv;
  }
  lua_pop(L, 2);
  return s;
}

/* vl.gradcheck(fn, {inputs...}, {eps=1e-6, atol=1e-5, rtol=1e-3})
   -> true, or false and a message naming the input and element at fault.
   Inputs should be float64 leaves that require grad. */
static int l_gradcheck(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  luaL_checktype(L, 2, LUA_TTABLE);
  int opts = lua_istable(L, 3) ? 3 : 0;
  double eps = vlua_optnumber(L, opts, "eps", 1e-6);
  double atol = vlua_optnumber(L, opts, "atol", 1e-5);
  double rtol = vlua_optnumber(L, opts, "rtol", 1e-3);
  int n = (int)luaL_len(L, 2);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (vlua_totensor(L, -1) == NULL) luaL_error(L, "gradcheck: input %d is not a tensor", i);
    lua_pop(L, 1);
  }
  /* the output's weights: a fixed pattern (deterministic, not all equal) */
  lua_newtable(L);
  int weights = lua_gettop(L);
  {
    lua_pushvalue(L, 1);
    for (int i = 1; i <= n; i++) lua_rawgeti(L, 2, i);
    lua_call(L, n, 1);
    vl_tensor *out = vlua_totensor(L, -1);
    if (out == NULL) return luaL_error(L, "gradcheck: fn must return a tensor, got %s", luaL_typename(L, -1));
    vl_tensor *w = vl_empty(out->ndim, out->shape, VL_FLOAT64);
    if (w == NULL) return vlua_raise(L);
    double *wp = vl_data_ptr(w);
    for (int64_t k = 0; k < vl_numel(w); k++) wp[k] = 0.5 + 0.25 * (double)((k * 7) % 5);
    /* analytic: d(sum(out * w))/d(input) = backward(w) */
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, 2, i);
      vl_set_grad(vlua_totensor(L, -1), NULL);
      lua_pop(L, 1);
    }
    if (!vl_requires_grad(out)) {
      vl_tensor_release(w);
      return luaL_error(L, "gradcheck: fn's output does not require grad (do the inputs require grad?)");
    }
    vl_tensor *wo = vl_to_dtype(w, out->dtype);
    int rc = wo ? vl_backward(out, wo, false) : vl_last_status();
    vl_tensor_release(wo);
    lua_pop(L, 1);
    vlua_pushtensor(L, w);
    lua_rawseti(L, weights, 1);
    vlua_check(L, rc);
  }
  bool was = vl_is_grad_enabled();
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    vl_tensor *x = vlua_totensor(L, -1);
    vl_tensor *g = vl_get_grad(x);
    lua_pop(L, 1);
    if (!vl_requires_grad(x)) {
      vl_tensor_release(g);
      continue;
    }
    int64_t nx = vl_numel(x);
    int64_t idx[VL_MAX_DIMS];
    for (int64_t k = 0; k < nx; k++) {
      int64_t r = k;
      for (int d = x->ndim - 1; d >= 0; d--) {
        idx[d] = r % x->shape[d];
        r /= x->shape[d];
      }
      double orig, analytic = 0;
      vl_get(x, idx, &orig);
      if (g) vl_get(g, idx, &analytic);
      vl_set_grad_enabled(false);
      vl_set(x, idx, orig + eps);
      double fp = eval_weighted(L, 1, 2, n, weights);
      vl_set(x, idx, orig - eps);
      double fm = eval_weighted(L, 1, 2, n, weights);
      vl_set(x, idx, orig);
      vl_set_grad_enabled(was);
      double numeric = (fp - fm) / (2 * eps);
      if (!(fabs(numeric - analytic) <= atol + rtol * fabs(numeric))) {
        vl_tensor_release(g);
        lua_pushboolean(L, 0);
        lua_pushfstring(L, "gradcheck: input %d, element %d: analytic %f, numeric %f", i, (int)k + 1, analytic,
                        numeric);
        return 2;
      }
    }
    vl_tensor_release(g);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const vlua_Reg autograd_regs[] = {
    {"requires_grad", l_requires_grad, VLUA_METHOD, "x:requires_grad([on]) -> boolean or x -- ask for gradients of x (float leaves)"},
    {"requires_grad_", l_requires_grad_, VLUA_METHOD, "x:requires_grad_([on=true]) -> x -- same, PyTorch's spelling"},
    {"backward", l_backward, VLUA_BOTH, "y:backward([grad], {retain_graph}) -- accumulate dy/dx into every leaf x's grad"},
    {"detach", l_detach, VLUA_BOTH, "x:detach() -> Tensor -- same data, outside the graph"},
    {"is_leaf", l_is_leaf, VLUA_METHOD, "x:is_leaf() -> boolean -- not produced by a recorded op"},
    {"zero_grad", l_zero_grad, VLUA_METHOD, "x:zero_grad() -> x -- set x.grad to zeros (x.grad = nil drops it)"},
    {"no_grad", l_no_grad, VLUA_FUNC, "vl.no_grad(fn, ...) -> fn's results -- run fn without recording gradients"},
    {"set_grad_enabled", l_set_grad_enabled, VLUA_FUNC, "vl.set_grad_enabled(on) -- turn gradient recording on or off"},
    {"is_grad_enabled", l_is_grad_enabled, VLUA_FUNC, "vl.is_grad_enabled() -> boolean"},
    {"gradcheck", l_gradcheck, VLUA_FUNC, "vl.gradcheck(fn, inputs, {eps, atol, rtol}) -> ok, msg -- gradients against central differences"},
    {NULL, NULL, 0, NULL}};

void vlua_open_autograd(lua_State *L) {
  vlua_register(L, autograd_regs);
  lua_getfield(L, LUA_REGISTRYINDEX, "vl.properties");
  lua_pushcfunction(L, p_grad);
  lua_setfield(L, -2, "grad");
  lua_pushcfunction(L, p_grad_fn);
  lua_setfield(L, -2, "grad_fn");
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, s_grad);
  lua_setfield(L, -2, "grad");
  lua_setfield(L, LUA_REGISTRYINDEX, "vl.setters");
}
