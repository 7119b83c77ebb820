/*
** bind_elementwise.c — Lua bindings of ops/elementwise.c and ops/where.c: unary and
** binary element-wise ops (functions, methods, in-place methods), clamp,
** where, masked_fill, and the arithmetic operators of tensors.
**
** A Lua number (or boolean) next to a tensor becomes a 0-d tensor through
** vlua_totensor_or_scalar (PyTorch's scalar promotion): x + 1 stays float32,
** an int64 tensor times 0.5 gives float32.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bind.h"

/* ------------------------------------------------------------------ */
/* Operands                                                             */
/* ------------------------------------------------------------------ */

static void check_operand(lua_State *L, int idx, const char *op) {
  if (vlua_totensor(L, idx)) return;
  int t = lua_type(L, idx);
  if (t != LUA_TNUMBER && t != LUA_TBOOLEAN)
    luaL_error(L, "%s: argument %d must be a tensor or a number, got %s", op, idx, luaL_typename(L, idx));
}

/* The tensor at idx, or the number there made a 0-d tensor (dtype after
   `like`). The new tensor replaces the number on the stack, so the stack
   owns it and a later error cannot leak it. Borrowed either way. */
static vl_tensor *operand(lua_State *L, int idx, const vl_tensor *like, const char *op) {
  vl_tensor *t = vlua_totensor(L, idx);
  if (t) return t;
  vl_tensor *s = vlua_totensor_or_scalar(L, idx, like, op);
  vlua_pushtensor(L, s);
  lua_replace(L, idx);
  return s;
}

/* Two operands at 1 and 2, numbers converted against the other side. */
static void operands(lua_State *L, const char *op, vl_tensor **a, vl_tensor **b) {
  check_operand(L, 1, op);
  check_operand(L, 2, op);
  lua_settop(L, 2);
  vl_tensor *ta = vlua_totensor(L, 1), *tb = vlua_totensor(L, 2);
  *a = operand(L, 1, tb, op);
  *b = operand(L, 2, ta ? ta : *a, op);
}

/* ------------------------------------------------------------------ */
/* Binary ops                                                           */
/* ------------------------------------------------------------------ */

static int binary(lua_State *L, vl_binop op) {
  vl_tensor *a, *b;
  operands(L, vl_binop_name(op), &a, &b);
  vlua_pushtensor(L, vl_binary(op, a, b));
  return 1;
}

/* x:op_(y): x op= y, y broadcast to x; returns x. */
static int binary_(lua_State *L, vl_binop op) {
  char name[32];
  snprintf(name, sizeof name, "%s_", vl_binop_name(op));
  vl_tensor *a = vlua_checktensor(L, 1);
  check_operand(L, 2, name);
  lua_settop(L, 2);
  vl_tensor *b = operand(L, 2, a, name);
  vlua_check(L, vl_binary_(op, a, b));
  lua_settop(L, 1);
  return 1;
}

#define BINARY_FNS(fname, OP)                                 \
  static int ew_##fname(lua_State *L) { return binary(L, OP); } \
  static int ew_##fname##_(lua_State *L) { return binary_(L, OP); }

BINARY_FNS(add, VL_ADD)
BINARY_FNS(sub, VL_SUB)
BINARY_FNS(mul, VL_MUL)
BINARY_FNS(div, VL_DIV)
BINARY_FNS(pow, VL_POW)
BINARY_FNS(maximum, VL_MAXIMUM)
BINARY_FNS(minimum, VL_MINIMUM)
BINARY_FNS(remainder, VL_REMAINDER)
BINARY_FNS(eq, VL_EQ)
BINARY_FNS(ne, VL_NE)
BINARY_FNS(lt, VL_LT)
BINARY_FNS(le, VL_LE)
BINARY_FNS(gt, VL_GT)
BINARY_FNS(ge, VL_GE)
BINARY_FNS(logical_and, VL_LOGICAL_AND)
BINARY_FNS(logical_or, VL_LOGICAL_OR)
BINARY_FNS(logical_xor, VL_LOGICAL_XOR)

/* ------------------------------------------------------------------ */
/* Unary ops                                                            */
/* ------------------------------------------------------------------ */

static int unary(lua_State *L, vl_unop op) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vlua_pushtensor(L, vl_unary(op, x));
  return 1;
}

static int unary_(lua_State *L, vl_unop op) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vlua_check(L, vl_unary_(op, x));
  lua_settop(L, 1);
  return 1;
}

#define UNARY_FNS(fname, OP)                                 \
  static int ew_##fname(lua_State *L) { return unary(L, OP); } \
  static int ew_##fname##_(lua_State *L) { return unary_(L, OP); }

UNARY_FNS(neg, VL_NEG)
UNARY_FNS(abs, VL_ABS)
UNARY_FNS(exp, VL_EXP)
UNARY_FNS(log, VL_LOG)
UNARY_FNS(sqrt, VL_SQRT)
UNARY_FNS(rsqrt, VL_RSQRT)
UNARY_FNS(sin, VL_SIN)
UNARY_FNS(cos, VL_COS)
UNARY_FNS(tanh, VL_TANH)
UNARY_FNS(sigmoid, VL_SIGMOID)
UNARY_FNS(relu, VL_RELU)
UNARY_FNS(gelu_tanh, VL_GELU_TANH)
UNARY_FNS(silu, VL_SILU)
UNARY_FNS(logical_not, VL_LOGICAL_NOT)
UNARY_FNS(sign, VL_SIGN)
UNARY_FNS(floor, VL_FLOOR)
UNARY_FNS(ceil, VL_CEIL)
UNARY_FNS(round, VL_ROUND)
UNARY_FNS(reciprocal, VL_RECIPROCAL)
UNARY_FNS(square, VL_SQUARE)

/* {approximate = "none" | "tanh"} -> VL_GELU / VL_GELU_TANH */
static vl_unop gelu_op(lua_State *L, const char *op) {
  int opt = vlua_opts(L);
  if (opt == 0) return VL_GELU;
  int t = lua_getfield(L, opt, "approximate");
  vl_unop r = VL_GELU;
  if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "tanh") == 0)
    r = VL_GELU_TANH;
  else if (!(t == LUA_TNIL || (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "none") == 0)))
    luaL_error(L, "%s: option approximate must be \"none\" or \"tanh\", got %s", op,
               t == LUA_TSTRING ? lua_tostring(L, -1) : lua_typename(L, t));
  lua_pop(L, 1);
  return r;
}

static int ew_gelu(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vl_unop op = gelu_op(L, "gelu");
  vlua_pushtensor(L, vl_unary(op, x));
  return 1;
}

static int ew_gelu_(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vl_unop op = gelu_op(L, "gelu_");
  vlua_check(L, vl_unary_(op, x));
  lua_settop(L, 1);
  return 1;
}

#define SOFTPLUS_BETA 1.0       /* PyTorch's defaults */
#define SOFTPLUS_THRESHOLD 20.0

static int ew_softplus(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  int opt = vlua_opts(L);
  double beta = vlua_optnumber(L, opt, "beta", SOFTPLUS_BETA);
  double thr = vlua_optnumber(L, opt, "threshold", SOFTPLUS_THRESHOLD);
  vlua_pushtensor(L, vl_softplus(x, beta, thr));
  return 1;
}

/* ------------------------------------------------------------------ */
/* clamp, where, masked_fill                                            */
/* ------------------------------------------------------------------ */

/* A bound: nil -> NAN (none), a number, else an error. */
static double bound_at(lua_State *L, int idx, const char *op, const char *what) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TNONE) return NAN;
  if (t != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be a number or nil, got %s", op, what, luaL_typename(L, idx));
  double v = lua_tonumber(L, idx);
  if (v != v) luaL_error(L, "%s: %s is NaN (use nil for no bound)", op, what);
  return v;
}

/* clamp(x, min, max) or clamp(x, {min =, max =}) */
static void clamp_args(lua_State *L, const char *op, double *lo, double *hi) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_getfield(L, 2, "min");
    *lo = bound_at(L, -1, op, "min");
    lua_getfield(L, 2, "max");
    *hi = bound_at(L, -1, op, "max");
    lua_pop(L, 2);
  } else {
    *lo = bound_at(L, 2, op, "min");
    *hi = bound_at(L, 3, op, "max");
  }
  if (isnan(*lo) && isnan(*hi)) luaL_error(L, "%s: at least one of min and max must be given", op);
}

static int ew_clamp(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  double lo, hi;
  clamp_args(L, "clamp", &lo, &hi);
  vlua_pushtensor(L, vl_clamp(x, lo, hi));
  return 1;
}

static int ew_clamp_(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  double lo, hi;
  clamp_args(L, "clamp_", &lo, &hi);
  vlua_check(L, vl_clamp_(x, lo, hi));
  lua_settop(L, 1);
  return 1;
}

static int ew_where(lua_State *L) {
  vl_tensor *cond = vlua_checktensor(L, 1);
  check_operand(L, 2, "where");
  check_operand(L, 3, "where");
  lua_settop(L, 3);
  vl_tensor *ta = vlua_totensor(L, 2), *tb = vlua_totensor(L, 3);
  vl_tensor *a = operand(L, 2, tb, "where");
  vl_tensor *b = operand(L, 3, ta ? ta : a, "where");
  vlua_pushtensor(L, vl_where(cond, a, b));
  return 1;
}

/* The fill value: a number, a boolean or a one-element tensor. */
static double fill_value(lua_State *L, int idx, const char *op) {
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER: return lua_tonumber(L, idx);
    case LUA_TBOOLEAN: return lua_toboolean(L, idx);
    default: break;
  }
  vl_tensor *t = vlua_totensor(L, idx);
  if (t && vl_numel(t) == 1) {
    int64_t zero[VL_MAX_DIMS] = {0};
    double v;
    vlua_check(L, vl_get(t, zero, &v));
    return v;
  }
  if (t) {
    char s[VL_SHAPE_STR];
    luaL_error(L, "%s: value must be a number or a one-element tensor, got a tensor of shape %s", op,
               vl_shape_str(t->ndim, t->shape, s));
  }
  luaL_error(L, "%s: value must be a number, got %s", op, luaL_typename(L, idx));
  return 0;
}

static int ew_masked_fill(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vl_tensor *mask = vlua_checktensor(L, 2);
  double v = fill_value(L, 3, "masked_fill");
  vlua_pushtensor(L, vl_masked_fill(x, mask, v));
  return 1;
}

static int ew_masked_fill_(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vl_tensor *mask = vlua_checktensor(L, 2);
  double v = fill_value(L, 3, "masked_fill_");
  vlua_check(L, vl_masked_fill_(x, mask, v));
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Registration                                                         */
/* ------------------------------------------------------------------ */

#define BIN_REG(n, what)                                                                       \
  {#n, ew_##n, VLUA_BOTH, "vl." #n "(a, b) -> Tensor -- element-wise " what ", broadcasting"}, \
  {#n "_", ew_##n##_, VLUA_METHOD, "x:" #n "_(y) -> x -- in place: x = " what " (y broadcast to x)"}

#define UN_REG(n, what)                                                  \
  {#n, ew_##n, VLUA_BOTH, "vl." #n "(x) -> Tensor -- element-wise " what}, \
  {#n "_", ew_##n##_, VLUA_METHOD, "x:" #n "_() -> x -- in place: " what}

static const vlua_Reg elementwise_regs[] = {
    BIN_REG(add, "a + b"),
    BIN_REG(sub, "a - b"),
    BIN_REG(mul, "a * b"),
    BIN_REG(div, "a / b (true division; integers give float32)"),
    BIN_REG(pow, "a ^ b (integers stay integers)"),
    BIN_REG(maximum, "max(a, b), NaN propagates"),
    BIN_REG(minimum, "min(a, b), NaN propagates"),
    BIN_REG(remainder, "a % b with the sign of b (Python); integer b must not hold 0"),
    BIN_REG(eq, "a == b as bool"),
    BIN_REG(ne, "a ~= b as bool"),
    BIN_REG(lt, "a < b as bool"),
    BIN_REG(le, "a <= b as bool"),
    BIN_REG(gt, "a > b as bool"),
    BIN_REG(ge, "a >= b as bool"),
    BIN_REG(logical_and, "a and b (non-zero is true) as bool"),
    BIN_REG(logical_or, "a or b (non-zero is true) as bool"),
    BIN_REG(logical_xor, "a xor b (non-zero is true) as bool"),
    UN_REG(neg, "-x"),
    UN_REG(abs, "|x|"),
    UN_REG(exp, "e^x"),
    UN_REG(log, "natural log"),
    UN_REG(sqrt, "square root"),
    UN_REG(rsqrt, "1 / sqrt(x)"),
    UN_REG(sin, "sine"),
    UN_REG(cos, "cosine"),
    UN_REG(tanh, "hyperbolic tangent"),
    UN_REG(sigmoid, "1 / (1 + e^-x)"),
    UN_REG(relu, "max(x, 0)"),
    UN_REG(gelu_tanh, "GELU, tanh approximation"),
    UN_REG(silu, "x * sigmoid(x)"),
    UN_REG(logical_not, "x == 0 as bool"),
    UN_REG(sign, "-1, 0 or 1"),
    UN_REG(floor, "round down"),
    UN_REG(ceil, "round up"),
    UN_REG(round, "round half to even"),
    UN_REG(reciprocal, "1 / x"),
    UN_REG(square, "x * x"),
    {"gelu", ew_gelu, VLUA_BOTH,
     "vl.gelu(x, {approximate = \"none\"|\"tanh\"}) -> Tensor -- x * Phi(x) (erf form by default)"},
    {"gelu_", ew_gelu_, VLUA_METHOD, "x:gelu_({approximate}) -> x -- GELU in place"},
    {"softplus", ew_softplus, VLUA_BOTH,
     "vl.softplus(x, {beta = 1, threshold = 20}) -> Tensor -- log(1 + e^(beta x)) / beta, x past the threshold"},
    {"clamp", ew_clamp, VLUA_BOTH,
     "vl.clamp(x, min, max) -> Tensor -- limit to [min, max]; nil (or {min=, max=}) leaves a side open"},
    {"clamp_", ew_clamp_, VLUA_METHOD, "x:clamp_(min, max) -> x -- clamp in place"},
    {"where", ew_where, VLUA_FUNC,
     "vl.where(cond, a, b) -> Tensor -- a where cond (bool/uint8) is true, else b; all three broadcast"},
    {"masked_fill", ew_masked_fill, VLUA_BOTH,
     "vl.masked_fill(x, mask, value) -> Tensor -- copy of x with value where mask (bool/uint8) is true"},
    {"masked_fill_", ew_masked_fill_, VLUA_METHOD, "x:masked_fill_(mask, value) -> x -- masked_fill in place"},
    {NULL, NULL, 0, NULL}};

/* Operators on tensors (a number may sit on either side: 2 - x, 2 / x).
   Lua's __eq/__lt/__le must return booleans, so comparisons stay methods. */
static const luaL_Reg operator_regs[] = {
    {"__add", ew_add}, {"__sub", ew_sub}, {"__mul", ew_mul}, {"__div", ew_div},
    {"__pow", ew_pow}, {"__mod", ew_remainder}, {"__unm", ew_neg}, {NULL, NULL}};

void vlua_open_elementwise(lua_State *L) {
  vlua_register(L, elementwise_regs);
  luaL_getmetatable(L, VLUA_TENSOR_MT);
  if (lua_istable(L, -1)) luaL_setfuncs(L, operator_regs, 0);
  lua_pop(L, 1);
}
