/*
** bind_attention.c — Lua binding of ops/attention.c:
**
**   out = vl.attention(q, k, v, {mask=, causal=false, scale=1/sqrt(d),
**                                dropout=0, need_weights=false})
**   out, weights = vl.attention(q, k, v, {need_weights = true})
**
** need_weights takes the non-tiled path (vl_attention_weights), which
** stores the whole [B,H,Lq,Lk] weights tensor; the output and its
** gradients are the same as the fused path's.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

static const char *const attention_keys[] = {"mask", "causal", "scale", "dropout", "need_weights", NULL};

/* Every key of the options table must be one of attention_keys. */
static void check_keys(lua_State *L, int opt) {
  lua_pushnil(L);
  while (lua_next(L, opt)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    bool known = false;
    for (int i = 0; k && attention_keys[i]; i++) known = known || strcmp(k, attention_keys[i]) == 0;
    if (!known) {
      const char *what = k ? lua_pushfstring(L, "'%s'", k) : luaL_typename(L, -2);
      luaL_error(L, "attention: unknown option %s (expected mask, causal, scale, dropout or need_weights)", what);
    }
    lua_pop(L, 1);
  }
}

static int l_attention(lua_State *L) {
  vl_tensor *q = vlua_checktensor(L, 1), *k = vlua_checktensor(L, 2), *v = vlua_checktensor(L, 3);
  int opt = 0;
  if (!lua_isnoneornil(L, 4)) {
    if (lua_type(L, 4) != LUA_TTABLE)
      return luaL_error(L, "attention: argument 4 must be an options table, got %s", luaL_typename(L, 4));
    opt = 4;
    check_keys(L, opt);
  }
  vl_tensor *mask = NULL;
  if (opt && lua_getfield(L, opt, "mask") != LUA_TNIL) {
    mask = vlua_totensor(L, -1);
    if (mask == NULL) return luaL_error(L, "attention: option 'mask' must be a tensor, got %s", luaL_typename(L, -1));
  }
  if (opt) lua_pop(L, 1); /* the mask stays alive in the options table */
  bool causal = vlua_optbool(L, opt, "causal", 0);
  double scale = vlua_optnumber(L, opt, "scale", NAN);
  double dropout = vlua_optnumber(L, opt, "dropout", 0);
  bool need_weights = vlua_optbool(L, opt, "need_weights", 0);
  if (!need_weights) {
    vlua_pushtensor(L, vl_attention(q, k, v, mask, causal, scale, dropout));
    return 1;
  }
  vl_tensor *out = NULL, *w = NULL;
  vlua_check(L, vl_attention_weights(q, k, v, mask, causal, scale, dropout, &out, &w));
  vlua_pushtensor(L, out);
  vlua_pushtensor(L, w);
  return 2;
}

static const vlua_Reg attention_regs[] = {
    {"attention", l_attention, VLUA_FUNC,
     "vl.attention(q, k, v, {mask, causal=false, scale=1/sqrt(d), dropout=0, need_weights=false}) -> out[, weights] "
     "-- softmax(q k^T * scale + mask) v over [B,H,L,d], fused (flash-attention); need_weights also returns the "
     "[B,H,Lq,Lk] weights (materialised)"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_attention(lua_State *L) { vlua_register(L, attention_regs); }
