/*
** bind_ssm.c — Lua binding of ops/ssm.c:
**
**   y[, last_state] = vl.selective_scan(u, delta, A, B, C, {D=, z=, delta_bias=,
**                                        delta_softplus=false, return_last_state=false})
**   state, y_t = vl.selective_scan_step(state, u_t, delta_t, A, B_t, C_t,
**                                       {D=, z=, delta_bias=, delta_softplus=false})
**   y = vl.causal_conv1d(x, weight, bias, {activation = nil | "silu"})
**   y_t, conv_state = vl.causal_conv1d_step(x_t, conv_state, weight, bias, {activation})
*/
#include <string.h>

#include "bind.h"

/* Every key of the options table at opt must be in keys (NULL-ended). */
static void check_keys(lua_State *L, int opt, const char *op, const char *const *keys, const char *list) {
  lua_pushnil(L);
  while (lua_next(L, opt)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    bool known = false;
    for (int i = 0; k && keys[i]; i++) known = known || strcmp(k, keys[i]) == 0;
    if (!known) {
      const char *what = k ? lua_pushfstring(L, "'%s'", k) : luaL_typename(L, -2);
      luaL_error(L, "%s: unknown option %s (expected %s)", op, what, list);
    }
    lua_pop(L, 1);
  }
}

/* The options table at idx (0 when none/nil); raises on other types. */
static int get_opts(lua_State *L, int idx, const char *op, const char *const *keys, const char *list) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TTABLE)
    return luaL_error(L, "%s: argument %d must be an options table, got %s", op, idx, luaL_typename(L, idx));
  check_keys(L, idx, op, keys, list);
  return idx;
}

/* An optional tensor option (the tensor stays alive in the options table). */
static vl_tensor *opt_tensor(lua_State *L, int opt, const char *key, const char *op) {
  if (!opt) return NULL;
  vl_tensor *t = NULL;
  if (lua_getfield(L, opt, key) != LUA_TNIL) {
    t = vlua_totensor(L, -1);
    if (t == NULL) luaL_error(L, "%s: option '%s' must be a tensor, got %s", op, key, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return t;
}

/* An optional tensor argument (nil allowed). */
static vl_tensor *arg_tensor_or_nil(lua_State *L, int idx, const char *op, const char *what) {
  if (lua_isnoneornil(L, idx)) return NULL;
  vl_tensor *t = vlua_totensor(L, idx);
  if (t == NULL) luaL_error(L, "%s: %s must be a tensor or nil, got %s", op, what, luaL_typename(L, idx));
  return t;
}

static const char *const scan_keys[] = {"D", "z", "delta_bias", "delta_softplus", "return_last_state", NULL};
static const char *const step_keys[] = {"D", "z", "delta_bias", "delta_softplus", NULL};
static const char *const conv_keys[] = {"activation", NULL};

static int l_selective_scan(lua_State *L) {
  const char *op = "selective_scan";
  vl_tensor *u = vlua_checktensor(L, 1), *delta = vlua_checktensor(L, 2), *A = vlua_checktensor(L, 3);
  vl_tensor *B = vlua_checktensor(L, 4), *C = vlua_checktensor(L, 5);
  int opt = get_opts(L, 6, op, scan_keys, "D, z, delta_bias, delta_softplus or return_last_state");
  vl_tensor *D = opt_tensor(L, opt, "D", op), *z = opt_tensor(L, opt, "z", op);
  vl_tensor *bias = opt_tensor(L, opt, "delta_bias", op);
  bool softplus = vlua_optbool(L, opt, "delta_softplus", 0);
  bool ret_last = vlua_optbool(L, opt, "return_last_state", 0);
  vl_tensor *last = NULL;
  vl_tensor *y = vl_selective_scan(u, delta, A, B, C, D, z, bias, softplus, ret_last ? &last : NULL);
  vlua_pushtensor(L, y);
  if (!ret_last) return 1;
  vlua_pushtensor(L, last);
  return 2;
}

static int l_selective_scan_step(lua_State *L) {
  const char *op = "selective_scan_step";
  vl_tensor *state = vlua_checktensor(L, 1), *u = vlua_checktensor(L, 2), *delta = vlua_checktensor(L, 3);
  vl_tensor *A = vlua_checktensor(L, 4), *B = vlua_checktensor(L, 5), *C = vlua_checktensor(L, 6);
  int opt = get_opts(L, 7, op, step_keys, "D, z, delta_bias or delta_softplus");
  vl_tensor *D = opt_tensor(L, opt, "D", op), *z = opt_tensor(L, opt, "z", op);
  vl_tensor *bias = opt_tensor(L, opt, "delta_bias", op);
  bool softplus = vlua_optbool(L, opt, "delta_softplus", 0);
  vl_tensor *ns = NULL, *y = NULL;
  vlua_check(L, vl_selective_scan_step(state, u, delta, A, B, C, D, z, bias, softplus, &ns, &y));
  vlua_pushtensor(L, ns);
  vlua_pushtensor(L, y);
  return 2;
}

/* activation option: nil -> false, "silu" -> true. */
static bool opt_silu(lua_State *L, int opt, const char *op) {
  if (!opt) return false;
  bool silu = false;
  int ty = lua_getfield(L, opt, "activation");
  if (ty != LUA_TNIL) {
    const char *s = ty == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (s && (strcmp(s, "silu") == 0 || strcmp(s, "swish") == 0))
      silu = true;
    else
      luaL_error(L, "%s: option 'activation' must be nil or \"silu\", got %s", op,
                 s ? lua_pushfstring(L, "\"%s\"", s) : luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return silu;
}

static int l_causal_conv1d(lua_State *L) {
  const char *op = "causal_conv1d";
  vl_tensor *x = vlua_checktensor(L, 1), *w = vlua_checktensor(L, 2);
  vl_tensor *bias = arg_tensor_or_nil(L, 3, op, "bias (argument 3)");
  int opt = get_opts(L, 4, op, conv_keys, "activation");
  vlua_pushtensor(L, vl_causal_conv1d(x, w, bias, opt_silu(L, opt, op)));
  return 1;
}

static int l_causal_conv1d_step(lua_State *L) {
  const char *op = "causal_conv1d_step";
  vl_tensor *x = vlua_checktensor(L, 1), *st = vlua_checktensor(L, 2), *w = vlua_checktensor(L, 3);
  vl_tensor *bias = arg_tensor_or_nil(L, 4, op, "bias (argument 4)");
  int opt = get_opts(L, 5, op, conv_keys, "activation");
  vl_tensor *y = NULL, *ns = NULL;
  vlua_check(L, vl_causal_conv1d_step(x, st, w, bias, opt_silu(L, opt, op), &y, &ns));
  vlua_pushtensor(L, y);
  vlua_pushtensor(L, ns);
  return 2;
}

static const vlua_Reg ssm_regs[] = {
    {"selective_scan", l_selective_scan, VLUA_FUNC,
     "vl.selective_scan(u, delta, A, B, C, {D, z, delta_bias, delta_softplus=false, return_last_state=false}) "
     "-> y[, last_state] -- Mamba's selective scan over u [batch,dim,len], fused forward and backward"},
    {"selective_scan_step", l_selective_scan_step, VLUA_FUNC,
     "vl.selective_scan_step(state, u_t, delta_t, A, B_t, C_t, {D, z, delta_bias, delta_softplus}) -> state, y_t "
     "-- one token of the selective scan (state [batch,dim,state]; no autograd)"},
    {"causal_conv1d", l_causal_conv1d, VLUA_FUNC,
     "vl.causal_conv1d(x, weight, bias, {activation=nil|\"silu\"}) -> y -- depthwise causal conv over x "
     "[batch,dim,len] with weight [dim,width] (zero left padding)"},
    {"causal_conv1d_step", l_causal_conv1d_step, VLUA_FUNC,
     "vl.causal_conv1d_step(x_t, conv_state, weight, bias, {activation}) -> y_t, conv_state -- one token of "
     "causal_conv1d with a rolling [batch,dim,width] window (a new tensor)"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_ssm(lua_State *L) { vlua_register(L, ssm_regs); }
