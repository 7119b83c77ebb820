/*
** bind_random.c — random numbers in Lua: vl.manual_seed, vl.rand, vl.randn,
** vl.randint, vl.randperm, x:uniform_, x:normal_, x:bernoulli_ (ops/random.c).
**
** randperm returns 1-based indices (a permutation of 1..n), like the other
** index-returning functions of vl; the C op is 0-based.
*/
#include <math.h>

#include "../ops/vl_internal.h"
#include "bind.h"

/* After a shape that started at `idx`, only an options table may follow. */
static void check_after_shape(lua_State *L, int idx, int ndim, const char *op) {
  int next = lua_istable(L, idx) && !vlua_totensor(L, idx) ? idx + 1 : idx + ndim;
  int top = lua_gettop(L);
  int opts = vlua_opts(L);
  if (next <= top && next != opts)
    luaL_error(L, "%s: argument %d must be a size or an options table, got %s", op, next,
               luaL_typename(L, next));
}

/* vl.rand(2, 3) / vl.rand({2, 3}, {dtype = "float64"}) */
static int make_float(lua_State *L, vl_tensor *(*fn)(int, const int64_t *, vl_dtype), const char *op) {
  int64_t shape[VL_MAX_DIMS];
  int ndim = vlua_checkshape(L, 1, shape, op);
  check_after_shape(L, 1, ndim, op);
  vl_dtype dt = vlua_optdtype(L, vlua_opts(L), "dtype", VL_FLOAT32);
  vlua_pushtensor(L, fn(ndim, shape, dt));
  return 1;
}

static int l_rand(lua_State *L) { return make_float(L, vl_rand, "rand"); }
static int l_randn(lua_State *L) { return make_float(L, vl_randn, "randn"); }

/* vl.rand_like(x, {dtype}) */
static int make_like(lua_State *L, vl_tensor *(*fn)(int, const int64_t *, vl_dtype)) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_dtype dt = vlua_optdtype(L, vlua_opts(L), "dtype", t->dtype);
  vlua_pushtensor(L, fn(t->ndim, t->shape, dt));
  return 1;
}

static int l_rand_like(lua_State *L) { return make_like(L, vl_rand); }
static int l_randn_like(lua_State *L) { return make_like(L, vl_randn); }

/* vl.randint(low, high, shape, {dtype}) or vl.randint(high, shape, {dtype}) */
static int l_randint(lua_State *L) {
  int64_t shape[VL_MAX_DIMS];
  lua_Integer low = 0, high;
  int sidx;
  if (lua_istable(L, 2) && !vlua_totensor(L, 2)) {
    high = luaL_checkinteger(L, 1);
    sidx = 2;
  } else {
    low = luaL_checkinteger(L, 1);
    high = luaL_checkinteger(L, 2);
    sidx = 3;
    int t = lua_type(L, 3);
    if (t != LUA_TNUMBER && !(t == LUA_TTABLE && vlua_opts(L) != 3))
      return luaL_error(L, "randint: expected vl.randint(low, high, shape) or vl.randint(high, shape) "
                           "with shape a table, got no shape");
  }
  int ndim = vlua_checkshape(L, sidx, shape, "randint");
  check_after_shape(L, sidx, ndim, "randint");
  vl_dtype dt = vlua_optdtype(L, vlua_opts(L), "dtype", VL_INT64);
  vlua_pushtensor(L, vl_randint((int64_t)low, (int64_t)high, ndim, shape, dt));
  return 1;
}

/* vl.randperm(n, {dtype}) -> a permutation of 1..n */
static int l_randperm(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  vl_dtype dt = vlua_optdtype(L, vlua_opts(L), "dtype", VL_INT64);
  if (n < 0) return luaL_error(L, "randperm: n must be non-negative (got %I)", (LUAI_UACINT)n);
  /* the largest value is n itself (1-based): it must be exact in dt */
  int64_t max = INT64_MAX;
  switch (dt) {
    case VL_INT64: break;
    case VL_INT32: max = INT32_MAX; break;
    case VL_UINT8: max = 255; break;
    case VL_FLOAT64: max = (int64_t)1 << 53; break;
    case VL_FLOAT32: max = (int64_t)1 << 24; break;
    case VL_FLOAT16: max = (int64_t)1 << 11; break;
    case VL_BFLOAT16: max = (int64_t)1 << 8; break;
    default:
      return luaL_error(L, "randperm: dtype %s not supported (expected an integer or float dtype)",
                        vl_dtype_name(dt));
  }
  if (n > max)
    return luaL_error(L, "randperm: n = %I does not fit dtype %s (expected n <= %I)", (LUAI_UACINT)n,
                      vl_dtype_name(dt), (LUAI_UACINT)max);
  vl_tensor *p = vl_randperm((int64_t)n, VL_INT64);
  if (!p) return vlua_raise(L);
  int64_t *a = (int64_t *)vl_data_ptr(p);
  for (int64_t i = 0; i < (int64_t)n; i++) a[i] += 1;
  if (dt == VL_INT64) {
    vlua_pushtensor(L, p);
    return 1;
  }
  vl_tensor *r = vl_to_dtype(p, dt);
  vl_tensor_release(p);
  vlua_pushtensor(L, r);
  return 1;
}

/* x:uniform_([from [, to]]) -> x */
static int l_uniform_(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  double lo = luaL_optnumber(L, 2, 0.0), hi = luaL_optnumber(L, 3, 1.0);
  vlua_check(L, vl_uniform_(t, lo, hi));
  lua_settop(L, 1);
  return 1;
}

/* x:normal_([mean [, std]]) -> x */
static int l_normal_(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  double mean = luaL_optnumber(L, 2, 0.0), std = luaL_optnumber(L, 3, 1.0);
  vlua_check(L, vl_normal_(t, mean, std));
  lua_settop(L, 1);
  return 1;
}

/* x:bernoulli_([p]) -> x */
static int l_bernoulli_(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  double p = luaL_optnumber(L, 2, 0.5);
  vlua_check(L, vl_bernoulli_(t, p));
  lua_settop(L, 1);
  return 1;
}

static int l_manual_seed(lua_State *L) {
  if (!lua_isinteger(L, 1)) {
    if (lua_type(L, 1) == LUA_TNUMBER)
      return luaL_error(L, "manual_seed: seed must be an integer, got %f", lua_tonumber(L, 1));
    return luaL_error(L, "manual_seed: seed must be an integer, got %s", luaL_typename(L, 1));
  }
  vl_manual_seed((uint64_t)lua_tointeger(L, 1));
  return 0;
}

static int l_initial_seed(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)vl_initial_seed());
  return 1;
}

/* vl.get_rng_state() -> {seed = s, offset = o} */
static int l_get_rng_state(lua_State *L) {
  uint64_t seed, offset;
  vl_get_rng_state(&seed, &offset);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)seed);
  lua_setfield(L, -2, "seed");
  lua_pushinteger(L, (lua_Integer)offset);
  lua_setfield(L, -2, "offset");
  return 1;
}

static lua_Integer state_field(lua_State *L, const char *key) {
  lua_getfield(L, 1, key);
  if (!lua_isinteger(L, -1))
    luaL_error(L, "set_rng_state: field '%s' must be an integer, got %s", key, luaL_typename(L, -1));
  lua_Integer v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static int l_set_rng_state(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer seed = state_field(L, "seed"), offset = state_field(L, "offset");
  vl_set_rng_state((uint64_t)seed, (uint64_t)offset);
  return 0;
}

void vlua_open_random(lua_State *L) {
  static const vlua_Reg regs[] = {
      {"manual_seed", l_manual_seed, VLUA_FUNC,
       "vl.manual_seed(n) -- seed the generator (an integer) and restart its stream"},
      {"initial_seed", l_initial_seed, VLUA_FUNC,
       "vl.initial_seed() -> integer -- the seed in use (67280421310721 until seeded)"},
      {"get_rng_state", l_get_rng_state, VLUA_FUNC,
       "vl.get_rng_state() -> {seed, offset} -- generator state, for checkpoints"},
      {"set_rng_state", l_set_rng_state, VLUA_FUNC,
       "vl.set_rng_state(state) -- restore a state from vl.get_rng_state()"},
      {"rand", l_rand, VLUA_FUNC, "vl.rand(shape..., {dtype}) -> Tensor -- uniform on [0, 1) (float32 by default)"},
      {"randn", l_randn, VLUA_FUNC, "vl.randn(shape..., {dtype}) -> Tensor -- standard normal N(0, 1)"},
      {"rand_like", l_rand_like, VLUA_BOTH, "vl.rand_like(x, {dtype}) -> Tensor -- uniform [0, 1) in x's shape and dtype"},
      {"randn_like", l_randn_like, VLUA_BOTH, "vl.randn_like(x, {dtype}) -> Tensor -- N(0, 1) in x's shape and dtype"},
      {"randint", l_randint, VLUA_FUNC,
       "vl.randint([low,] high, shape, {dtype}) -> Tensor -- integers uniform on [low, high) (int64 by default)"},
      {"randperm", l_randperm, VLUA_FUNC,
       "vl.randperm(n, {dtype}) -> Tensor -- a random permutation of 1..n (int64 by default)"},
      {"uniform_", l_uniform_, VLUA_METHOD, "x:uniform_([from=0 [, to=1]]) -> x -- fill with U[from, to)"},
      {"normal_", l_normal_, VLUA_METHOD, "x:normal_([mean=0 [, std=1]]) -> x -- fill with N(mean, std^2)"},
      {"bernoulli_", l_bernoulli_, VLUA_METHOD, "x:bernoulli_([p=0.5]) -> x -- fill with 1 (probability p) or 0"},
      {NULL, NULL, 0, NULL},
  };
  vlua_register(L, regs);
}
