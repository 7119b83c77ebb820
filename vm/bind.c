/*
** bind.c — the helper layer under every vm/bind_*.c file (prefix vlua_):
** tensor userdata, argument checking, dims, shapes and options.
*/
#include <math.h>
#include <string.h>

#include "bind.h"

/* ------------------------------------------------------------------ */
/* Registration                                                         */
/* ------------------------------------------------------------------ */

/* Register a NULL-terminated list into the sub-table vl.<name> (vl.fft,
 * vl.video, vl.audio ...), creating it on first use: several bindings may
 * fill one namespace (media I/O and frame interpolation both live in
 * vl.video). `where` is ignored; docs are keyed by function as usual. */
void vlua_register_in(lua_State *L, const char *name, const vlua_Reg *regs) {
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_MODULE);
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_DOCS);
  int module = lua_absindex(L, -2), docs = lua_absindex(L, -1);
  if (lua_getfield(L, module, name) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, module, name);
  }
  for (const vlua_Reg *r = regs; r->name != NULL; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
    if (r->doc) {
      lua_pushcfunction(L, r->func);
      lua_pushstring(L, r->doc);
      lua_rawset(L, docs);
    }
  }
  lua_pop(L, 3);
}

void vlua_register(lua_State *L, const vlua_Reg *regs) {
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_MODULE);
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_METHODS);
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_DOCS);
  int module = lua_absindex(L, -3), methods = lua_absindex(L, -2), docs = lua_absindex(L, -1);
  for (const vlua_Reg *r = regs; r->name != NULL; r++) {
    if (r->where & VLUA_FUNC) {
      lua_pushcfunction(L, r->func);
      lua_setfield(L, module, r->name);
    }
    if (r->where & VLUA_METHOD) {
      lua_pushcfunction(L, r->func);
      lua_setfield(L, methods, r->name);
    }
    if (r->doc) {
      lua_pushcfunction(L, r->func); /* light C functions compare by address */
      lua_pushstring(L, r->doc);
      lua_rawset(L, docs);
    }
  }
  lua_pop(L, 3);
}

/* ------------------------------------------------------------------ */
/* Tensors and errors                                                   */
/* ------------------------------------------------------------------ */

int vlua_raise(lua_State *L) {
  const char *msg = vl_last_error();
  return luaL_error(L, "%s", msg[0] ? msg : "vl: unknown error");
}

void vlua_check(lua_State *L, int status) {
  if (status != VL_OK) vlua_raise(L);
}

vl_tensor *vlua_totensor(lua_State *L, int idx) {
  vlua_TensorBox *box = luaL_testudata(L, idx, VLUA_TENSOR_MT);
  return box ? box->t : NULL;
}

vl_tensor *vlua_checktensor(lua_State *L, int idx) {
  vlua_TensorBox *box = luaL_testudata(L, idx, VLUA_TENSOR_MT);
  if (box == NULL) {
    const char *got = luaL_typename(L, idx);
    luaL_argerror(L, idx, lua_pushfstring(L, "tensor expected, got %s", got));
  }
  if (box->t == NULL) luaL_argerror(L, idx, "tensor was closed");
  return box->t;
}

/* Tell the collector about tensor bytes it cannot see, so that a loop
   making big tensors collects the dead ones in time. Each storage is
   reported once, when a tensor over it first reaches Lua (views and
   tensors saved by autograd share it). */
static void report_bytes(lua_State *L, const vl_tensor *t) {
  if (t->storage->gc_reported || t->storage->kind == VL_STORAGE_EXTERNAL) return;
  t->storage->gc_reported = true;
  size_t kib = t->storage->nbytes / 1024;
  if (kib > 0) lua_gc(L, LUA_GCSTEP, kib > INT32_MAX ? INT32_MAX : (int)kib);
}

void vlua_pushtensor(lua_State *L, vl_tensor *t) {
  if (t == NULL) {
    vlua_raise(L);
    return;
  }
  vlua_TensorBox *box = lua_newuserdatauv(L, sizeof *box, 0);
  box->t = t;
  luaL_setmetatable(L, VLUA_TENSOR_MT);
  report_bytes(L, t);
}

vl_tensor *vlua_totensor_or_scalar(lua_State *L, int idx, const vl_tensor *like, const char *op) {
  vl_tensor *t = vlua_totensor(L, idx);
  if (t) {
    vl_tensor_retain(t);
    return t;
  }
  vl_dtype dt;
  double v;
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
      v = lua_toboolean(L, idx);
      dt = like && like->dtype != VL_BOOL ? like->dtype : VL_BOOL;
      break;
    case LUA_TNUMBER:
      v = lua_tonumber(L, idx);
      if (lua_isinteger(L, idx)) {
        dt = like == NULL ? VL_INT64 : like->dtype == VL_BOOL ? VL_INT64 : like->dtype;
        /* an integer scalar adopts an integer tensor's dtype (PyTorch) */
      } else {
        dt = like && vl_dtype_is_float(like->dtype) ? like->dtype : VL_FLOAT32;
      }
      break;
    default:
      luaL_error(L, "%s: argument %d must be a tensor or a number, got %s", op, idx, luaL_typename(L, idx));
      return NULL;
  }
  /* A 0-d float64 keeps the Lua value exact; promotion then follows
     `like`. Stored in `dt` directly so the result dtype is right. */
  vl_tensor *s = vl_scalar(v, dt);
  if (s == NULL) vlua_raise(L);
  return s;
}

/* ------------------------------------------------------------------ */
/* Dims                                                                 */
/* ------------------------------------------------------------------ */

int vlua_todim(lua_State *L, lua_Integer d, int ndim, const char *op) {
  int n = ndim > 0 ? ndim : 1; /* a 0-d tensor takes dim 1 / -1, as PyTorch */
  if (d == 0 || d > n || d < -n)
    luaL_error(L, "%s: dim %d out of range for a %d-d tensor (expected 1..%d or -%d..-1; dims are 1-based)", op,
               (int)(d > INT32_MAX ? INT32_MAX : d < INT32_MIN ? INT32_MIN : d), ndim, n, n);
  return d > 0 ? (int)d - 1 : (int)d + n;
}

int vlua_checkdim(lua_State *L, int idx, int ndim, const char *op) {
  if (!lua_isinteger(L, idx)) {
    if (lua_isnumber(L, idx))
      luaL_error(L, "%s: dim must be an integer, got %s", op, lua_tostring(L, idx));
    luaL_error(L, "%s: dim expected (an integer), got %s", op, luaL_typename(L, idx));
  }
  return vlua_todim(L, lua_tointeger(L, idx), ndim, op);
}

int vlua_optdim(lua_State *L, int idx, int ndim, int def, const char *op) {
  if (lua_isnoneornil(L, idx)) return def;
  return vlua_checkdim(L, idx, ndim, op);
}

int vlua_checkdims(lua_State *L, int idx, int ndim, int *dims, const char *op) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_isinteger(L, idx) || lua_type(L, idx) == LUA_TNUMBER) {
    dims[0] = vlua_checkdim(L, idx, ndim, op);
    return 1;
  }
  if (!lua_istable(L, idx) || luaL_len(L, idx) == 0) return 0; /* options table or {} */
  int n = (int)luaL_len(L, idx);
  if (n > VL_MAX_DIMS) luaL_error(L, "%s: %d dims listed, at most %d", op, n, VL_MAX_DIMS);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    dims[i] = vlua_checkdim(L, -1, ndim, op);
    lua_pop(L, 1);
    for (int j = 0; j < i; j++)
      if (dims[j] == dims[i]) luaL_error(L, "%s: dim %d appears twice in the list of dims", op, dims[i] + 1);
  }
  return n;
}

/* ------------------------------------------------------------------ */
/* Shapes                                                               */
/* ------------------------------------------------------------------ */

static int64_t shape_entry(lua_State *L, int idx, const char *op) {
  if (!lua_isinteger(L, idx)) {
    if (lua_type(L, idx) == LUA_TNUMBER)
      luaL_error(L, "%s: sizes must be integers, got %s", op, lua_tostring(L, idx));
    luaL_error(L, "%s: sizes must be integers, got %s", op, luaL_typename(L, idx));
  }
  return (int64_t)lua_tointeger(L, idx);
}

int vlua_checkshape(lua_State *L, int idx, int64_t *shape, const char *op) {
  int n = 0;
  if (lua_istable(L, idx) && !luaL_testudata(L, idx, VLUA_TENSOR_MT)) {
    lua_Integer len = luaL_len(L, idx);
    if (len > VL_MAX_DIMS) luaL_error(L, "%s: shape has %d dims, at most %d supported", op, (int)len, VL_MAX_DIMS);
    for (n = 0; n < len; n++) {
      lua_rawgeti(L, idx, n + 1);
      shape[n] = shape_entry(L, -1, op);
      lua_pop(L, 1);
    }
    return n;
  }
  int top = lua_gettop(L);
  for (int i = idx; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
    if (n == VL_MAX_DIMS) luaL_error(L, "%s: shape has more than %d dims", op, VL_MAX_DIMS);
    shape[n++] = shape_entry(L, i, op);
  }
  return n;
}

void vlua_pushshape(lua_State *L, int ndim, const int64_t *shape) {
  lua_createtable(L, ndim, 0);
  for (int d = 0; d < ndim; d++) {
    lua_pushinteger(L, (lua_Integer)shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
}

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */

int vlua_opts(lua_State *L) {
  int top = lua_gettop(L);
  if (top > 0 && lua_type(L, top) == LUA_TTABLE && lua_rawlen(L, top) == 0) return top;
  return 0;
}

/* Pushes opt[key] and returns its type; LUA_TNIL when no options. */
static int getopt(lua_State *L, int opt, const char *key) {
  if (opt == 0 || lua_type(L, opt) != LUA_TTABLE) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, opt, key);
}

int vlua_optbool(lua_State *L, int opt, const char *key, int def) {
  int t = getopt(L, opt, key);
  int v = t == LUA_TNIL ? def : lua_toboolean(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    luaL_error(L, "option '%s' must be a boolean, got %s", key, lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

lua_Number vlua_optnumber(lua_State *L, int opt, const char *key, lua_Number def) {
  int t = getopt(L, opt, key);
  if (t != LUA_TNIL && t != LUA_TNUMBER)
    luaL_error(L, "option '%s' must be a number, got %s", key, lua_typename(L, t));
  lua_Number v = t == LUA_TNIL ? def : lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

lua_Integer vlua_optinteger(lua_State *L, int opt, const char *key, lua_Integer def) {
  int t = getopt(L, opt, key);
  if (t != LUA_TNIL && !lua_isinteger(L, -1))
    luaL_error(L, "option '%s' must be an integer, got %s", key,
               t == LUA_TNUMBER ? lua_tostring(L, -1) : lua_typename(L, t));
  lua_Integer v = t == LUA_TNIL ? def : lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

static vl_dtype dtype_from_value(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_error(L, "%s: dtype must be a string such as \"float32\", got %s", what, luaL_typename(L, idx));
  vl_dtype dt;
  if (vl_dtype_from_name(lua_tostring(L, idx), &dt) != VL_OK)
    luaL_error(L, "%s: unknown dtype '%s' (expected float32, float64, float16, bfloat16, int64, int32, uint8 or bool)",
               what, lua_tostring(L, idx));
  return dt;
}

vl_dtype vlua_optdtype(lua_State *L, int opt, const char *key, vl_dtype def) {
  int t = getopt(L, opt, key);
  vl_dtype dt = t == LUA_TNIL ? def : dtype_from_value(L, -1, key);
  lua_pop(L, 1);
  return dt;
}

vl_dtype vlua_checkdtype(lua_State *L, int idx, const char *op) { return dtype_from_value(L, idx, op); }
