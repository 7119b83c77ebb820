/*
** bind_reduce.c — Lua bindings of the reductions in ops/reduce.c and ops/argmax.c:
** sum/mean/prod/amax/amin/all/any/logsumexp, var/std, norm, max/min,
** argmax/argmin, softmax/log_softmax, cumsum.
**
** Dims are 1-based (negative from the end); the indices returned by
** max/min/argmax/argmin are 1-based int64 tensors, as in Torch7.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

/* Dims at `idx`: nil/none/options table -> 0 (all dims), a number or a
   table of numbers -> the 0-based list. Anything else is an error. */
static int check_dims_arg(lua_State *L, int idx, const vl_tensor *x, int *dims, const char *op) {
  int t = lua_type(L, idx);
  if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TNUMBER && t != LUA_TTABLE)
    luaL_error(L, "%s: dims must be a dim or a table of dims (1-based), got %s", op, luaL_typename(L, idx));
  return vlua_checkdims(L, idx, x->ndim, dims, op);
}

/* keepdim from the options table, or a boolean right after the dims
   (x:sum(2, true), as torch's positional keepdim). */
static bool opt_keepdim(lua_State *L, int opts, int idx) {
  if (lua_type(L, idx) == LUA_TBOOLEAN) return lua_toboolean(L, idx);
  return vlua_optbool(L, opts, "keepdim", 0);
}

/* A fresh contiguous int64 tensor of 0-based indices -> 1-based. */
static vl_tensor *one_based(vl_tensor *t) {
  if (!t) return NULL;
  int64_t *p = vl_data_ptr(t);
  int64_t n = vl_numel(t);
  for (int64_t i = 0; i < n; i++) p[i] += 1;
  return t;
}

static int reduce_op(lua_State *L, vl_redop op, const char *name) {
  vl_tensor *x = vlua_checktensor(L, 1);
  int opts = vlua_opts(L);
  int dims[VL_MAX_DIMS];
  int n = check_dims_arg(L, 2, x, dims, name);
  bool keepdim = opt_keepdim(L, opts, 3);
  vlua_pushtensor(L, vl_reduce(op, x, n, dims, keepdim));
  return 1;
}

static int l_sum(lua_State *L) { return reduce_op(L, VL_SUM, "sum"); }
static int l_mean(lua_State *L) { return reduce_op(L, VL_MEAN, "mean"); }
static int l_prod(lua_State *L) { return reduce_op(L, VL_PROD, "prod"); }
static int l_amax(lua_State *L) { return reduce_op(L, VL_AMAX, "amax"); }
static int l_amin(lua_State *L) { return reduce_op(L, VL_AMIN, "amin"); }
static int l_all(lua_State *L) { return reduce_op(L, VL_ALL, "all"); }
static int l_any(lua_State *L) { return reduce_op(L, VL_ANY, "any"); }
static int l_logsumexp(lua_State *L) { return reduce_op(L, VL_LOGSUMEXP, "logsumexp"); }

static int var_op(lua_State *L, bool take_sqrt) {
  const char *name = take_sqrt ? "std" : "var";
  vl_tensor *x = vlua_checktensor(L, 1);
  int opts = vlua_opts(L);
  int dims[VL_MAX_DIMS], n = 0;
  bool unbiased = vlua_optbool(L, opts, "unbiased", 1);
  if (lua_type(L, 2) == LUA_TBOOLEAN) { /* var(x, unbiased) */
    unbiased = lua_toboolean(L, 2);
  } else {
    n = check_dims_arg(L, 2, x, dims, name);
    if (lua_type(L, 3) == LUA_TBOOLEAN) unbiased = lua_toboolean(L, 3); /* var(x, dims, unbiased) */
  }
  bool keepdim = opt_keepdim(L, opts, 4);
  lua_Integer correction = vlua_optinteger(L, opts, "correction", unbiased ? 1 : 0);
  if (correction < 0) luaL_error(L, "%s: correction must be >= 0 (1 = unbiased, 0 = population), got %d", name,
                                 (int)(correction < INT32_MIN ? INT32_MIN : correction));
  vl_tensor *r = take_sqrt ? vl_std(x, n, dims, (int64_t)correction, keepdim)
                           : vl_var(x, n, dims, (int64_t)correction, keepdim);
  vlua_pushtensor(L, r);
  return 1;
}

static int l_var(lua_State *L) { return var_op(L, false); }
static int l_std(lua_State *L) { return var_op(L, true); }

/* p as a number or "inf" / "-inf" / "fro" (= 2). */
static double norm_p(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    double p = lua_tonumber(L, idx);
    if (p != p) luaL_error(L, "norm: p must be a number, got nan");
    return p;
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (strcmp(s, "inf") == 0) return INFINITY;
    if (strcmp(s, "-inf") == 0) return -INFINITY;
    if (strcmp(s, "fro") == 0) return 2;
    luaL_error(L, "norm: p must be a number, \"inf\", \"-inf\" or \"fro\", got \"%s\"", s);
  }
  luaL_error(L, "norm: p must be a number, \"inf\", \"-inf\" or \"fro\", got %s", luaL_typename(L, idx));
  return 0;
}

/* norm(x, {p=, dim=, keepdim=}) or norm(x, p, dim, {keepdim=}). */
static int l_norm(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  int opts = vlua_opts(L);
  int dims[VL_MAX_DIMS], n = 0;
  double p = 2;
  if (!lua_isnoneornil(L, 2) && 2 != opts) p = norm_p(L, 2);
  if (!lua_isnoneornil(L, 3) && 3 != opts) n = check_dims_arg(L, 3, x, dims, "norm");
  if (opts) {
    if (lua_getfield(L, opts, "p") != LUA_TNIL) p = norm_p(L, lua_gettop(L));
    lua_pop(L, 1);
    if (lua_getfield(L, opts, "dim") != LUA_TNIL) n = check_dims_arg(L, lua_gettop(L), x, dims, "norm");
    lua_pop(L, 1);
  }
  bool keepdim = vlua_optbool(L, opts, "keepdim", 0);
  vlua_pushtensor(L, vl_norm(x, p, n, dims, keepdim));
  return 1;
}

static int extreme_op(lua_State *L, bool ismax) {
  const char *name = ismax ? "max" : "min";
  vl_tensor *x = vlua_checktensor(L, 1);
  vl_tensor *other = vlua_totensor(L, 2);
  if (other) { /* x:max(y): element-wise, as torch.max(a, b) */
    vlua_pushtensor(L, vl_binary(ismax ? VL_MAXIMUM : VL_MINIMUM, x, other));
    return 1;
  }
  int opts = vlua_opts(L);
  if (lua_isnoneornil(L, 2) || opts == 2) {
    if (vl_numel(x) == 0) {
      char buf[VL_SHAPE_STR];
      luaL_error(L, "%s: cannot take the %s of an empty tensor (shape %s)", name, ismax ? "maximum" : "minimum",
                 vl_shape_str(x->ndim, x->shape, buf));
    }
    vlua_pushtensor(L, vl_reduce(ismax ? VL_AMAX : VL_AMIN, x, 0, NULL, false));
    return 1;
  }
  int dim = vlua_checkdim(L, 2, x->ndim, name);
  bool keepdim = opt_keepdim(L, opts, 3);
  if (x->ndim > 0 && x->shape[dim] == 0) {
    char buf[VL_SHAPE_STR];
    luaL_error(L, "%s: cannot take the %s over dim %d of size 0 (shape %s)", name, ismax ? "maximum" : "minimum",
               dim + 1, vl_shape_str(x->ndim, x->shape, buf));
  }
  vl_tensor *values = NULL, *indices = NULL;
  int st = ismax ? vl_max_dim(x, dim, keepdim, &values, &indices) : vl_min_dim(x, dim, keepdim, &values, &indices);
  vlua_check(L, st);
  vlua_pushtensor(L, values);
  vlua_pushtensor(L, one_based(indices));
  return 2;
}

static int l_max(lua_State *L) { return extreme_op(L, true); }
static int l_min(lua_State *L) { return extreme_op(L, false); }

static int argext_op(lua_State *L, bool ismax) {
  const char *name = ismax ? "argmax" : "argmin";
  vl_tensor *x = vlua_checktensor(L, 1);
  int opts = vlua_opts(L);
  int dim = VL_ALL_DIMS;
  if (!lua_isnoneornil(L, 2) && opts != 2) dim = vlua_checkdim(L, 2, x->ndim, name);
  bool keepdim = opt_keepdim(L, opts, 3);
  if (dim != VL_ALL_DIMS && x->ndim > 0 && x->shape[dim] == 0) {
    char buf[VL_SHAPE_STR];
    luaL_error(L, "%s: cannot take the %s over dim %d of size 0 (shape %s)", name, ismax ? "maximum" : "minimum",
               dim + 1, vl_shape_str(x->ndim, x->shape, buf));
  }
  vl_tensor *r = ismax ? vl_argmax(x, dim, keepdim) : vl_argmin(x, dim, keepdim);
  vlua_pushtensor(L, one_based(r));
  return 1;
}

static int l_argmax(lua_State *L) { return argext_op(L, true); }
static int l_argmin(lua_State *L) { return argext_op(L, false); }

/* A required dim at 2 for softmax / log_softmax / cumsum. */
static int required_dim(lua_State *L, const vl_tensor *x, const char *name) {
  if (lua_isnoneornil(L, 2) || lua_type(L, 2) == LUA_TTABLE)
    luaL_error(L, "%s: dim is required (e.g. vl.%s(x, -1) for the last dim)", name, name);
  return vlua_checkdim(L, 2, x->ndim, name);
}

static int l_softmax(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vlua_pushtensor(L, vl_softmax(x, required_dim(L, x, "softmax")));
  return 1;
}

static int l_log_softmax(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vlua_pushtensor(L, vl_log_softmax(x, required_dim(L, x, "log_softmax")));
  return 1;
}

static int l_cumsum(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1);
  vlua_pushtensor(L, vl_cumsum(x, required_dim(L, x, "cumsum")));
  return 1;
}

static const vlua_Reg reduce_regs[] = {
    {"sum", l_sum, VLUA_BOTH,
     "vl.sum(x [, dims], {keepdim}) -> Tensor -- sum over dims (nil: all; integers/bool give int64; keepdim may also be a boolean after dims)"},
    {"mean", l_mean, VLUA_BOTH,
     "vl.mean(x [, dims], {keepdim}) -> Tensor -- mean over dims (integers promote to float32)"},
    {"prod", l_prod, VLUA_BOTH, "vl.prod(x [, dims], {keepdim}) -> Tensor -- product over dims"},
    {"amax", l_amax, VLUA_BOTH, "vl.amax(x [, dims], {keepdim}) -> Tensor -- maximum over dims (NaN wins)"},
    {"amin", l_amin, VLUA_BOTH, "vl.amin(x [, dims], {keepdim}) -> Tensor -- minimum over dims (NaN wins)"},
    {"all", l_all, VLUA_BOTH, "vl.all(x [, dims], {keepdim}) -> bool Tensor -- every element non-zero"},
    {"any", l_any, VLUA_BOTH, "vl.any(x [, dims], {keepdim}) -> bool Tensor -- some element non-zero"},
    {"logsumexp", l_logsumexp, VLUA_BOTH,
     "vl.logsumexp(x, dims, {keepdim}) -> Tensor -- log(sum(exp(x))) over dims, computed stably"},
    {"var", l_var, VLUA_BOTH,
     "vl.var(x [, dims] [, unbiased], {unbiased=true, correction, keepdim}) -> Tensor -- variance (correction 1 by default)"},
    {"std", l_std, VLUA_BOTH,
     "vl.std(x [, dims] [, unbiased], {unbiased=true, correction, keepdim}) -> Tensor -- standard deviation"},
    {"norm", l_norm, VLUA_BOTH,
     "vl.norm(x [, p [, dims]], {p=2, dim, keepdim}) -> Tensor -- vector p-norm (p: number, \"inf\", \"-inf\", \"fro\"; 0 counts non-zeros)"},
    {"max", l_max, VLUA_BOTH,
     "vl.max(x [, dim], {keepdim}) -> Tensor [, indices] -- 0-d max, or values and 1-based indices along dim; max(x, y) element-wise"},
    {"min", l_min, VLUA_BOTH,
     "vl.min(x [, dim], {keepdim}) -> Tensor [, indices] -- 0-d min, or values and 1-based indices along dim; min(x, y) element-wise"},
    {"argmax", l_argmax, VLUA_BOTH,
     "vl.argmax(x [, dim], {keepdim}) -> int64 Tensor -- 1-based index of the max (of the flattened x without dim)"},
    {"argmin", l_argmin, VLUA_BOTH,
     "vl.argmin(x [, dim], {keepdim}) -> int64 Tensor -- 1-based index of the min (of the flattened x without dim)"},
    {"softmax", l_softmax, VLUA_BOTH, "vl.softmax(x, dim) -> Tensor -- exp(x) / sum(exp(x)) along dim, computed stably"},
    {"log_softmax", l_log_softmax, VLUA_BOTH,
     "vl.log_softmax(x, dim) -> Tensor -- x - logsumexp(x) along dim, computed stably"},
    {"cumsum", l_cumsum, VLUA_BOTH,
     "vl.cumsum(x, dim) -> Tensor -- running sums along dim (integers/bool give int64)"},
    {NULL, NULL, 0, NULL}};

void vlua_open_reduce(lua_State *L) { vlua_register(L, reduce_regs); }
