/*
** bind_linalg.c — Lua bindings of ops/linalg.c: vl.matmul, vl.mm, vl.bmm,
** vl.addmm, vl.outer, vl.dot, each also a tensor method (x:matmul(y)).
** The `*` operator stays element-wise; there is no matrix-product operator.
*/
#include <string.h>

#include "bind.h"

/* Two tensor arguments, then the op. */
#define BINARY(name, fn)                                  \
  static int l_##name(lua_State *L) {                     \
    vl_tensor *a = vlua_checktensor(L, 1);                \
    vl_tensor *b = vlua_checktensor(L, 2);                \
    vlua_pushtensor(L, fn(a, b));                         \
    return 1;                                             \
  }

BINARY(matmul, vl_matmul)
BINARY(mm, vl_mm)
BINARY(bmm, vl_bmm)
BINARY(outer, vl_outer)
BINARY(dot, vl_dot)

/* vl.addmm(c, a, b, {beta = 1, alpha = 1}) */
static int l_addmm(lua_State *L) {
  vl_tensor *c = vlua_checktensor(L, 1);
  vl_tensor *a = vlua_checktensor(L, 2);
  vl_tensor *b = vlua_checktensor(L, 3);
  int opt = lua_gettop(L) >= 4 ? 4 : 0;
  if (opt) {
    if (lua_isnil(L, 4)) {
      opt = 0;
    } else {
      luaL_checktype(L, 4, LUA_TTABLE);
      lua_pushnil(L);
      while (lua_next(L, 4)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (key == NULL || (strcmp(key, "beta") != 0 && strcmp(key, "alpha") != 0))
          return luaL_error(L, "addmm: unknown option %s (expected beta or alpha)",
                            key ? lua_pushfstring(L, "'%s'", key) : luaL_typename(L, -2));
        lua_pop(L, 1);
      }
    }
  }
  double beta = vlua_optnumber(L, opt, "beta", 1);
  double alpha = vlua_optnumber(L, opt, "alpha", 1);
  vlua_pushtensor(L, vl_addmm(c, a, b, beta, alpha));
  return 1;
}

static const vlua_Reg linalg_regs[] = {
    {"matmul", l_matmul, VLUA_BOTH,
     "vl.matmul(a, b) -> Tensor -- matrix product like torch.matmul: 1-D dot, 2-D, batched with "
     "broadcast batch dims"},
    {"mm", l_mm, VLUA_BOTH, "vl.mm(a, b) -> Tensor -- product of two 2-D tensors [n,k] @ [k,m]"},
    {"bmm", l_bmm, VLUA_BOTH,
     "vl.bmm(a, b) -> Tensor -- batched product of 3-D tensors [B,n,k] @ [B,k,m]"},
    {"addmm", l_addmm, VLUA_BOTH,
     "vl.addmm(c, a, b, {beta=1, alpha=1}) -> Tensor -- beta*c + alpha*(a @ b), c broadcast"},
    {"outer", l_outer, VLUA_BOTH,
     "vl.outer(a, b) -> Tensor -- outer product of 1-D tensors: [n] x [m] -> [n,m]"},
    {"dot", l_dot, VLUA_BOTH, "vl.dot(a, b) -> Tensor -- dot product of two 1-D tensors (0-d)"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_linalg(lua_State *L) { vlua_register(L, linalg_regs); }
