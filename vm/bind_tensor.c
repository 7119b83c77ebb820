/*
** bind_tensor.c — the tensor type in Lua: userdata and metatable,
** creation, views, indexing and slicing, conversions, memory and threads.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/vl_internal.h"
#include "bind.h"

/* Nested tables deeper than this are refused by vl.tensor. */
#define VLUA_MAX_NESTING VL_MAX_DIMS

/* ------------------------------------------------------------------ */
/* Creation                                                             */
/* ------------------------------------------------------------------ */

/* Default dtype of a creation call: the `dtype` option or `def`. */
static vl_dtype creation_dtype(lua_State *L, vl_dtype def) { return vlua_optdtype(L, vlua_opts(L), "dtype", def); }

typedef struct literal_scan {
  int ndim;
  int64_t shape[VL_MAX_DIMS];
  bool any_float, any_number, any_bool;
} literal_scan;

/* Walk nested tables: check they are rectangular and see what the
   leaves hold. `path` names the position for error messages. */
static void scan_literal(lua_State *L, int idx, int depth, literal_scan *s) {
  int t = lua_type(L, idx);
  if (t == LUA_TTABLE) {
    if (depth >= VLUA_MAX_NESTING) luaL_error(L, "tensor: nesting deeper than %d levels", VLUA_MAX_NESTING);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (depth == s->ndim) {
      s->ndim = depth + 1;
      s->shape[depth] = n;
    } else if (depth > s->ndim || s->shape[depth] != n) {
      luaL_error(L, "tensor: ragged nested table: a list at depth %d has %d elements, expected %d", depth + 1,
                 (int)n, depth < s->ndim ? (int)s->shape[depth] : 0);
    }
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      scan_literal(L, lua_gettop(L), depth + 1, s);
      lua_pop(L, 1);
    }
    return;
  }
  if (depth != s->ndim)
    luaL_error(L, "tensor: ragged nested table: a value at depth %d where lists of depth %d were seen", depth,
               s->ndim);
  if (t == LUA_TNUMBER) {
    s->any_number = true;
    if (!lua_isinteger(L, idx)) s->any_float = true;
  } else if (t == LUA_TBOOLEAN) {
    s->any_bool = true;
  } else {
    luaL_error(L, "tensor: elements must be numbers or booleans, got %s", luaL_typename(L, idx));
  }
}

static void fill_literal(lua_State *L, int idx, vl_tensor *t, int64_t *pos) {
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      fill_literal(L, lua_gettop(L), t, pos);
      lua_pop(L, 1);
    }
    return;
  }
  int64_t linear = (*pos)++;
  char *base = vl_data_ptr(t);
  if (t->dtype == VL_INT64 && lua_isinteger(L, idx)) {
    ((int64_t *)base)[linear] = (int64_t)lua_tointeger(L, idx);
  } else {
    double v = lua_type(L, idx) == LUA_TBOOLEAN ? lua_toboolean(L, idx) : lua_tonumber(L, idx);
    switch (t->dtype) {
      case VL_FLOAT32: ((float *)base)[linear] = (float)v; break;
      case VL_FLOAT64: ((double *)base)[linear] = v; break;
      default: {
        int64_t index[VL_MAX_DIMS], rem = linear;
        for (int d = t->ndim - 1; d >= 0; d--) {
          index[d] = rem % t->shape[d];
          rem /= t->shape[d];
        }
        vl_set(t, index, v);
      }
    }
  }
}

static int l_tensor(lua_State *L) {
  vl_tensor *src = vlua_totensor(L, 1);
  if (src) {
    vl_dtype dt = creation_dtype(L, src->dtype);
    vl_tensor *c = vl_clone(src);
    if (c && c->dtype != dt) {
      vl_tensor *d = vl_to_dtype(c, dt);
      vl_tensor_release(c);
      c = d;
    }
    vlua_pushtensor(L, c);
    return 1;
  }
  if (lua_type(L, 1) != LUA_TTABLE && lua_type(L, 1) != LUA_TNUMBER && lua_type(L, 1) != LUA_TBOOLEAN)
    return luaL_error(L, "tensor: expected a nested table of numbers, a number or a tensor, got %s",
                      luaL_typename(L, 1));
  literal_scan s = {0};
  scan_literal(L, 1, 0, &s);
  vl_dtype def = s.any_float ? VL_FLOAT32 : s.any_number ? VL_INT64 : s.any_bool ? VL_BOOL : VL_FLOAT32;
  vl_dtype dt = creation_dtype(L, def);
  vl_tensor *t = vl_empty(s.ndim, s.shape, dt);
  if (t == NULL) return vlua_raise(L);
  vlua_pushtensor(L, t);
  int64_t pos = 0;
  fill_literal(L, 1, t, &pos);
  return 1;
}

typedef vl_tensor *(*shape_ctor)(int, const int64_t *, vl_dtype);

static int make_shaped(lua_State *L, shape_ctor ctor, const char *op) {
  int64_t shape[VL_MAX_DIMS];
  int n = vlua_checkshape(L, 1, shape, op);
  vlua_pushtensor(L, ctor(n, shape, creation_dtype(L, VL_FLOAT32)));
  return 1;
}

static int l_zeros(lua_State *L) { return make_shaped(L, vl_zeros, "zeros"); }
static int l_ones(lua_State *L) { return make_shaped(L, vl_ones, "ones"); }
static int l_empty(lua_State *L) { return make_shaped(L, vl_empty, "empty"); }

static int l_full(lua_State *L) {
  int64_t shape[VL_MAX_DIMS];
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = vlua_checkshape(L, 1, shape, "full");
  if (lua_type(L, 2) != LUA_TNUMBER && lua_type(L, 2) != LUA_TBOOLEAN)
    return luaL_error(L, "full: fill value must be a number or boolean, got %s", luaL_typename(L, 2));
  vl_dtype def = lua_isboolean(L, 2) ? VL_BOOL : lua_isinteger(L, 2) ? VL_INT64 : VL_FLOAT32;
  double v = lua_isboolean(L, 2) ? lua_toboolean(L, 2) : lua_tonumber(L, 2);
  vlua_pushtensor(L, vl_full(n, shape, v, creation_dtype(L, def)));
  return 1;
}

static int like(lua_State *L, double value, bool fill) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_dtype dt = creation_dtype(L, t->dtype);
  vl_tensor *r = fill ? vl_full(t->ndim, t->shape, value, dt) : vl_empty(t->ndim, t->shape, dt);
  vlua_pushtensor(L, r);
  return 1;
}

static int l_zeros_like(lua_State *L) { return like(L, 0, true); }
static int l_ones_like(lua_State *L) { return like(L, 1, true); }
static int l_empty_like(lua_State *L) { return like(L, 0, false); }
static int l_full_like(lua_State *L) { return like(L, luaL_checknumber(L, 2), true); }

static int l_arange(lua_State *L) {
  int nargs = lua_gettop(L) - (vlua_opts(L) ? 1 : 0);
  if (nargs < 1 || nargs > 3) return luaL_error(L, "arange: expected arange(end), arange(start, end) or arange(start, end, step)");
  bool all_int = true;
  for (int i = 1; i <= nargs; i++) {
    luaL_checknumber(L, i);
    if (!lua_isinteger(L, i)) all_int = false;
  }
  double start = nargs >= 2 ? lua_tonumber(L, 1) : 0;
  double end = nargs >= 2 ? lua_tonumber(L, 2) : lua_tonumber(L, 1);
  double step = nargs == 3 ? lua_tonumber(L, 3) : 1;
  vlua_pushtensor(L, vl_arange(start, end, step, creation_dtype(L, all_int ? VL_INT64 : VL_FLOAT32)));
  return 1;
}

static int l_linspace(lua_State *L) {
  double a = luaL_checknumber(L, 1), b = luaL_checknumber(L, 2);
  lua_Integer steps = luaL_checkinteger(L, 3);
  vlua_pushtensor(L, vl_linspace(a, b, (int64_t)steps, creation_dtype(L, VL_FLOAT32)));
  return 1;
}

static int l_eye(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  lua_Integer m = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : n;
  if (n < 0 || m < 0) return luaL_error(L, "eye: sizes must be >= 0, got %d x %d", (int)n, (int)m);
  vlua_pushtensor(L, vl_eye((int64_t)n, (int64_t)m, creation_dtype(L, VL_FLOAT32)));
  return 1;
}

/* ------------------------------------------------------------------ */
/* Introspection                                                        */
/* ------------------------------------------------------------------ */

static int l_size(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (lua_isnoneornil(L, 2)) {
    vlua_pushshape(L, t->ndim, t->shape);
    return 1;
  }
  if (t->ndim == 0) return luaL_error(L, "size: a 0-d tensor has no dims");
  lua_pushinteger(L, t->shape[vlua_checkdim(L, 2, t->ndim, "size")]);
  return 1;
}

static int l_stride(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (lua_isnoneornil(L, 2)) {
    vlua_pushshape(L, t->ndim, t->stride);
    return 1;
  }
  if (t->ndim == 0) return luaL_error(L, "stride: a 0-d tensor has no dims");
  lua_pushinteger(L, t->stride[vlua_checkdim(L, 2, t->ndim, "stride")]);
  return 1;
}

static int l_dim(lua_State *L) {
  lua_pushinteger(L, vlua_checktensor(L, 1)->ndim);
  return 1;
}

static int l_numel(lua_State *L) {
  lua_pushinteger(L, vl_numel(vlua_checktensor(L, 1)));
  return 1;
}

static int l_dtype(lua_State *L) {
  lua_pushstring(L, vl_dtype_name(vlua_checktensor(L, 1)->dtype));
  return 1;
}

static int l_is_contiguous(lua_State *L) {
  lua_pushboolean(L, vl_is_contiguous(vlua_checktensor(L, 1)));
  return 1;
}

static int l_storage_offset(lua_State *L) {
  lua_pushinteger(L, vlua_checktensor(L, 1)->offset);
  return 1;
}

static int l_shares_storage(lua_State *L) {
  lua_pushboolean(L, vl_shares_storage(vlua_checktensor(L, 1), vlua_checktensor(L, 2)));
  return 1;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, vlua_totensor(L, 1) != NULL);
  return 1;
}

/* Push element at storage offset `off` as a Lua value of the right kind. */
static void push_element(lua_State *L, const vl_tensor *t, int64_t off) {
  const char *base = (const char *)t->storage->data;
  switch (t->dtype) {
    case VL_INT64: lua_pushinteger(L, ((const int64_t *)base)[off]); break;
    case VL_INT32:
    case VL_UINT8: lua_pushinteger(L, (lua_Integer)vl_load(base, off, t->dtype)); break;
    case VL_BOOL: lua_pushboolean(L, base[off] != 0); break;
    default: lua_pushnumber(L, vl_load(base, off, t->dtype)); break;
  }
}

static int l_item(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (vl_numel(t) != 1) {
    char s[VL_SHAPE_STR];
    return luaL_error(L, "item: tensor of shape %s has %d elements, expected exactly 1",
                      vl_shape_str(t->ndim, t->shape, s), (int)vl_numel(t));
  }
  int64_t off = t->offset; /* every index is 0 */
  push_element(L, t, off);
  return 1;
}

static void push_table(lua_State *L, const vl_tensor *t, int dim, int64_t off) {
  if (dim == t->ndim) {
    push_element(L, t, off);
    return;
  }
  lua_createtable(L, (int)t->shape[dim], 0);
  for (int64_t i = 0; i < t->shape[dim]; i++) {
    push_table(L, t, dim + 1, off + i * t->stride[dim]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* Refuse to build Lua tables bigger than this: it would take minutes. */
#define VLUA_MAX_TOTABLE ((int64_t)1 << 27)

static int l_totable(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (vl_numel(t) > VLUA_MAX_TOTABLE)
    return luaL_error(L, "totable: %d elements is too many for a Lua table", (int)vl_numel(t));
  luaL_checkstack(L, t->ndim + 4, "totable");
  push_table(L, t, 0, t->offset);
  return 1;
}

static int l_tostring(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  char *s = vl_format(t);
  if (s == NULL) return vlua_raise(L);
  lua_pushstring(L, s);
  free(s);
  return 1;
}

static int l_len(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (t->ndim == 0) return luaL_error(L, "#: a 0-d tensor has no length (use x:item())");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}

static int l_gc(lua_State *L) {
  vlua_TensorBox *box = luaL_checkudata(L, 1, VLUA_TENSOR_MT);
  vl_tensor_release(box->t);
  box->t = NULL; /* __close then __gc: the second call is a no-op */
  return 0;
}

/* ------------------------------------------------------------------ */
/* Conversions                                                          */
/* ------------------------------------------------------------------ */

static int convert(lua_State *L, vl_dtype dt) {
  vlua_pushtensor(L, vl_to_dtype(vlua_checktensor(L, 1), dt));
  return 1;
}

static int l_to(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_dtype dt;
  if (vlua_totensor(L, 2)) dt = vlua_totensor(L, 2)->dtype; /* x:to(other) takes other's dtype */
  else dt = lua_istable(L, 2) ? vlua_optdtype(L, 2, "dtype", t->dtype) : vlua_checkdtype(L, 2, "to");
  return convert(L, dt);
}
static int l_float(lua_State *L) { return convert(L, VL_FLOAT32); }
static int l_double(lua_State *L) { return convert(L, VL_FLOAT64); }
static int l_half(lua_State *L) { return convert(L, VL_FLOAT16); }
static int l_bfloat16(lua_State *L) { return convert(L, VL_BFLOAT16); }
static int l_long(lua_State *L) { return convert(L, VL_INT64); }
static int l_int(lua_State *L) { return convert(L, VL_INT32); }
static int l_byte(lua_State *L) { return convert(L, VL_UINT8); }
static int l_bool(lua_State *L) { return convert(L, VL_BOOL); }

/* ------------------------------------------------------------------ */
/* Views                                                                */
/* ------------------------------------------------------------------ */

static int l_view(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int64_t shape[VL_MAX_DIMS];
  int n = vlua_checkshape(L, 2, shape, "view");
  vlua_pushtensor(L, vl_view(t, n, shape));
  return 1;
}

static int l_reshape(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int64_t shape[VL_MAX_DIMS];
  int n = vlua_checkshape(L, 2, shape, "reshape");
  vlua_pushtensor(L, vl_reshape(t, n, shape));
  return 1;
}

static int l_view_as(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1), *o = vlua_checktensor(L, 2);
  vlua_pushtensor(L, vl_view(t, o->ndim, o->shape));
  return 1;
}

static int l_reshape_as(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1), *o = vlua_checktensor(L, 2);
  vlua_pushtensor(L, vl_reshape(t, o->ndim, o->shape));
  return 1;
}

static int l_transpose(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int d0 = vlua_checkdim(L, 2, t->ndim, "transpose"), d1 = vlua_checkdim(L, 3, t->ndim, "transpose");
  vlua_pushtensor(L, vl_transpose(t, d0, d1));
  return 1;
}

static int l_t(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (t->ndim > 2) return luaL_error(L, "t: expects a tensor with <= 2 dims, got %d dims (use transpose)", t->ndim);
  vlua_pushtensor(L, t->ndim < 2 ? vl_view(t, t->ndim, t->shape) : vl_transpose(t, 0, 1));
  return 1;
}

static int l_permute(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int dims[VL_MAX_DIMS], n;
  if (lua_istable(L, 2)) {
    n = vlua_checkdims(L, 2, t->ndim, dims, "permute");
  } else {
    n = lua_gettop(L) - 1;
    if (n > VL_MAX_DIMS) n = VL_MAX_DIMS + 1;
    for (int i = 0; i < n && i < VL_MAX_DIMS; i++) dims[i] = vlua_checkdim(L, i + 2, t->ndim, "permute");
    for (int i = 0; i < n && i < VL_MAX_DIMS; i++)
      for (int j = 0; j < i; j++)
        if (dims[i] == dims[j]) return luaL_error(L, "permute: dim %d appears twice", dims[i] + 1);
  }
  if (n != t->ndim) return luaL_error(L, "permute: %d dims given for a %d-d tensor, expected %d", n, t->ndim, t->ndim);
  vlua_pushtensor(L, vl_permute(t, dims));
  return 1;
}

/* A 1-based (or negative) index into a dim of size n -> 0-based. */
static int64_t checkindex(lua_State *L, lua_Integer i, int64_t n, int dim, const char *op) {
  if (i == 0 || i > n || i < -n)
    luaL_error(L, "%s: index %d out of range for dim %d of size %d (expected 1..%d or -%d..-1)", op, (int)i, dim + 1,
               (int)n, (int)n, (int)n);
  return i > 0 ? (int64_t)i - 1 : (int64_t)i + n;
}

static int l_narrow(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (t->ndim == 0) return luaL_error(L, "narrow: cannot narrow a 0-d tensor");
  int dim = vlua_checkdim(L, 2, t->ndim, "narrow");
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  int64_t n = t->shape[dim];
  if (start == n + 1 && len == 0) start = n; /* empty narrow at the end */
  else start = checkindex(L, start, n, dim, "narrow");
  if (len < 0 || len > n - start)
    return luaL_error(L, "narrow: length %d from index %d runs past dim %d of size %d", (int)len, (int)start + 1,
                      dim + 1, (int)n);
  vlua_pushtensor(L, vl_narrow(t, dim, start, len));
  return 1;
}

static int l_select(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (t->ndim == 0) return luaL_error(L, "select: cannot select from a 0-d tensor");
  int dim = vlua_checkdim(L, 2, t->ndim, "select");
  int64_t i = checkindex(L, luaL_checkinteger(L, 3), t->shape[dim], dim, "select");
  vlua_pushtensor(L, vl_select(t, dim, i));
  return 1;
}

static int l_expand(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int64_t shape[VL_MAX_DIMS];
  int n = vlua_checkshape(L, 2, shape, "expand");
  vlua_pushtensor(L, vl_expand(t, n, shape));
  return 1;
}

static int l_expand_as(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1), *o = vlua_checktensor(L, 2);
  vlua_pushtensor(L, vl_expand(t, o->ndim, o->shape));
  return 1;
}

static int l_unfold(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int dim = vlua_checkdim(L, 2, t->ndim, "unfold");
  lua_Integer size = luaL_checkinteger(L, 3), step = luaL_checkinteger(L, 4);
  vlua_pushtensor(L, vl_unfold(t, dim, (int64_t)size, (int64_t)step));
  return 1;
}

static int l_squeeze(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int dim = lua_isnoneornil(L, 2) ? VL_ALL_DIMS : vlua_checkdim(L, 2, t->ndim, "squeeze");
  vlua_pushtensor(L, vl_squeeze(t, dim));
  return 1;
}

static int l_unsqueeze(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int dim = vlua_todim(L, luaL_checkinteger(L, 2), t->ndim + 1, "unsqueeze");
  vlua_pushtensor(L, vl_unsqueeze(t, dim));
  return 1;
}

static int l_flatten(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int s = vlua_optdim(L, 2, t->ndim, 0, "flatten");
  int e = vlua_optdim(L, 3, t->ndim, t->ndim ? t->ndim - 1 : 0, "flatten");
  vlua_pushtensor(L, vl_flatten(t, s, e));
  return 1;
}

static int l_as_strided(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int64_t shape[VL_MAX_DIMS], stride[VL_MAX_DIMS];
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TTABLE);
  int n = vlua_checkshape(L, 2, shape, "as_strided");
  int m = vlua_checkshape(L, 3, stride, "as_strided");
  if (n != m) return luaL_error(L, "as_strided: shape has %d dims but stride has %d", n, m);
  lua_Integer off = luaL_optinteger(L, 4, t->offset);
  vlua_pushtensor(L, vl_as_strided(t, n, shape, stride, (int64_t)off));
  return 1;
}

static int l_contiguous(lua_State *L) {
  vlua_pushtensor(L, vl_contiguous(vlua_checktensor(L, 1)));
  return 1;
}

static int l_clone(lua_State *L) {
  vlua_pushtensor(L, vl_clone(vlua_checktensor(L, 1)));
  return 1;
}

/* Assign a Lua number/boolean or a tensor into `dst`. */
static void assign(lua_State *L, vl_tensor *dst, int vidx, const char *op) {
  vl_tensor *src = vlua_totensor(L, vidx);
  if (src) {
    vlua_check(L, vl_copy_(dst, src));
  } else if (lua_type(L, vidx) == LUA_TNUMBER || lua_type(L, vidx) == LUA_TBOOLEAN) {
    double v = lua_isboolean(L, vidx) ? lua_toboolean(L, vidx) : lua_tonumber(L, vidx);
    if (dst->dtype == VL_INT64 && lua_isinteger(L, vidx) && vl_numel(dst) == 1 && dst->ndim == 0)
      vlua_check(L, vl_set_int(dst, NULL, lua_tointeger(L, vidx)));
    else
      vlua_check(L, vl_fill_(dst, v));
  } else {
    luaL_error(L, "%s: value must be a number, boolean or tensor, got %s", op, luaL_typename(L, vidx));
  }
}

static int l_copy_(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vlua_checktensor(L, 2);
  assign(L, t, 2, "copy_");
  lua_settop(L, 1);
  return 1;
}

static int l_fill_(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (vlua_totensor(L, 2)) {
    vl_tensor *v = vlua_totensor(L, 2);
    if (v->ndim != 0) return luaL_error(L, "fill_: value tensor must be 0-d, got %d dims", v->ndim);
  }
  assign(L, t, 2, "fill_");
  lua_settop(L, 1);
  return 1;
}

static int l_zero_(lua_State *L) {
  vlua_check(L, vl_fill_(vlua_checktensor(L, 1), 0));
  lua_settop(L, 1);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Indexing: x[i], x[{i, {a, b}, {}}], x[mask]                          */
/* ------------------------------------------------------------------ */

/* Apply a Torch7-style index table to t: an integer selects (dropping the
   dim), {a, b[, step]} keeps an inclusive range, {a} keeps one, {} keeps
   all. Returns a new view. */
static vl_tensor *index_view(lua_State *L, vl_tensor *t, int key) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, key);
  if (n > t->ndim)
    luaL_error(L, "index: %d indices given for a %d-d tensor", (int)n, t->ndim);
  vl_tensor_retain(t);
  vl_tensor *cur = t;
  int dim = 0;
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, key, k);
    vl_tensor *next = NULL;
    int64_t size = cur->shape[dim];
    if (lua_isinteger(L, -1)) {
      lua_Integer i = lua_tointeger(L, -1);
      if (i == 0 || i > size || i < -size) {
        vl_tensor_release(cur);
        luaL_error(L, "index: index %d out of range for dim %d of size %d (expected 1..%d or -%d..-1)", (int)i,
                   dim + 1, (int)size, (int)size, (int)size);
      }
      next = vl_select(cur, dim, i > 0 ? i - 1 : i + size);
    } else if (lua_istable(L, -1)) {
      int r = lua_gettop(L);
      lua_Integer len = (lua_Integer)lua_rawlen(L, r);
      lua_Integer a = 1, b = size, step = 1;
      lua_rawgeti(L, r, 1);
      lua_rawgeti(L, r, 2);
      lua_rawgeti(L, r, 3);
      bool ok = (len == 0) || (lua_isinteger(L, -3) && (len < 2 || lua_isinteger(L, -2)) && (len < 3 || lua_isinteger(L, -1)));
      if (ok && len >= 1) a = b = lua_tointeger(L, -3);
      if (ok && len >= 2) b = lua_tointeger(L, -2);
      if (ok && len >= 3) step = lua_tointeger(L, -1);
      lua_pop(L, 3);
      if (!ok || len > 3) {
        vl_tensor_release(cur);
        luaL_error(L, "index: a range for dim %d must be {}, {i}, {first, last} or {first, last, step} of integers", dim + 1);
      }
      if (a < 0) a += size + 1;
      if (b < 0) b += size + 1;
      if (a < 1 || a > size + 1 || b < a - 1 || b > size || step < 1) {
        vl_tensor_release(cur);
        luaL_error(L, "index: range {%d, %d, %d} out of bounds for dim %d of size %d", (int)a, (int)b, (int)step,
                   dim + 1, (int)size);
      }
      next = vl_slice(cur, dim, a - 1, b, step);
      dim++;
    } else {
      vl_tensor_release(cur);
      luaL_error(L, "index: entry %d must be an integer or a range table, got %s", (int)k, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    vl_tensor_release(cur);
    if (next == NULL) vlua_raise(L);
    cur = next;
  }
  return cur;
}

static int l_index(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  switch (lua_type(L, 2)) {
    case LUA_TSTRING: {
      const char *k = lua_tostring(L, 2);
      lua_pushvalue(L, 2);
      if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1; /* a method */
      lua_pop(L, 1);
      if (strcmp(k, "shape") == 0) vlua_pushshape(L, t->ndim, t->shape);
      else if (strcmp(k, "dtype") == 0) lua_pushstring(L, vl_dtype_name(t->dtype));
      else if (strcmp(k, "ndim") == 0) lua_pushinteger(L, t->ndim);
      else {
        /* properties added by other subsystems (e.g. grad) */
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(2)) == LUA_TFUNCTION) {
          lua_pushvalue(L, 1);
          lua_call(L, 1, 1);
        }
      }
      return 1;
    }
    case LUA_TNUMBER: {
      if (!lua_isinteger(L, 2)) return luaL_error(L, "index: index must be an integer, got %s", lua_tostring(L, 2));
      if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-d tensor (use x:item())");
      int64_t i = checkindex(L, lua_tointeger(L, 2), t->shape[0], 0, "index");
      if (t->ndim == 1) {
        push_element(L, t, t->offset + i * t->stride[0]);
        return 1;
      }
      vlua_pushtensor(L, vl_select(t, 0, i));
      return 1;
    }
    case LUA_TTABLE:
      vlua_pushtensor(L, index_view(L, t, 2));
      return 1;
    case LUA_TUSERDATA: {
      vl_tensor *mask = vlua_totensor(L, 2);
      if (mask && (mask->dtype == VL_BOOL || mask->dtype == VL_UINT8)) {
        vlua_pushtensor(L, vl_masked_select(t, mask));
        return 1;
      }
      break;
    }
    default: break;
  }
  return luaL_error(L, "index: cannot index a tensor with a %s (use an integer, a table of ranges or a bool mask)",
                    luaL_typename(L, 2));
}

static int l_newindex(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_tensor *dst = NULL;
  switch (lua_type(L, 2)) {
    case LUA_TNUMBER: {
      if (!lua_isinteger(L, 2)) return luaL_error(L, "index: index must be an integer, got %s", lua_tostring(L, 2));
      if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-d tensor (use x:fill_(v))");
      int64_t i = checkindex(L, lua_tointeger(L, 2), t->shape[0], 0, "index");
      dst = vl_select(t, 0, i);
      break;
    }
    case LUA_TTABLE: dst = index_view(L, t, 2); break;
    case LUA_TUSERDATA: {
      vl_tensor *mask = vlua_totensor(L, 2);
      if (mask && (mask->dtype == VL_BOOL || mask->dtype == VL_UINT8)) {
        if (lua_type(L, 3) != LUA_TNUMBER && lua_type(L, 3) != LUA_TBOOLEAN)
          return luaL_error(L, "index: x[mask] = v needs a number v, got %s", luaL_typename(L, 3));
        double v = lua_isboolean(L, 3) ? lua_toboolean(L, 3) : lua_tonumber(L, 3);
        vlua_check(L, vl_masked_fill_(t, mask, v));
        return 0;
      }
      return luaL_error(L, "index: cannot index a tensor with a %s", luaL_typename(L, 2));
    }
    case LUA_TSTRING:
      /* setters added by other subsystems (e.g. x.grad = g) */
      lua_getfield(L, LUA_REGISTRYINDEX, "vl.setters");
      if (lua_istable(L, -1) && lua_getfield(L, -1, lua_tostring(L, 2)) == LUA_TFUNCTION) {
        lua_pushvalue(L, 1);
        lua_pushvalue(L, 3);
        lua_call(L, 2, 0);
        return 0;
      }
      return luaL_error(L, "tensor: cannot set field '%s' (only grad can be assigned)", lua_tostring(L, 2));
    default:
      return luaL_error(L, "index: cannot index a tensor with a %s", luaL_typename(L, 2));
  }
  if (dst == NULL) return vlua_raise(L);
  vlua_pushtensor(L, dst); /* owned by Lua now, so an error below cannot leak it */
  assign(L, dst, 3, "index");
  return 0;
}

/* ------------------------------------------------------------------ */
/* Memory and threads                                                   */
/* ------------------------------------------------------------------ */

static int l_set_memory_limit(lua_State *L) {
  lua_Integer n = lua_isnoneornil(L, 1) ? 0 : luaL_checkinteger(L, 1);
  if (n < 0) return luaL_error(L, "set_memory_limit: limit must be >= 0 bytes (0 = none), got %d", (int)n);
  vl_set_memory_limit((size_t)n);
  return 0;
}

static int l_memory_limit(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)vl_memory_limit());
  return 1;
}

static int l_memory_in_use(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)vl_memory_in_use());
  return 1;
}

static int l_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > 1024) return luaL_error(L, "set_num_threads: expected 1..1024 threads, got %d", (int)n);
  vl_set_num_threads((int)n);
  return 0;
}

static int l_get_num_threads(lua_State *L) {
  lua_pushinteger(L, vl_get_num_threads());
  return 1;
}

static int l_gemm_kernel(lua_State *L) {
  lua_pushstring(L, vl_sgemm_kernel());
  return 1;
}

static const vlua_Reg tensor_regs[] = {
    {"tensor", l_tensor, VLUA_FUNC, "vl.tensor(data, {dtype}) -> Tensor -- from nested tables, a number or a tensor (copied)"},
    {"zeros", l_zeros, VLUA_FUNC, "vl.zeros(shape..., {dtype}) -> Tensor -- filled with 0 (float32 by default)"},
    {"ones", l_ones, VLUA_FUNC, "vl.ones(shape..., {dtype}) -> Tensor -- filled with 1"},
    {"empty", l_empty, VLUA_FUNC, "vl.empty(shape..., {dtype}) -> Tensor -- uninitialised"},
    {"full", l_full, VLUA_FUNC, "vl.full(shape, value, {dtype}) -> Tensor -- filled with value"},
    {"zeros_like", l_zeros_like, VLUA_BOTH, "vl.zeros_like(x, {dtype}) -> Tensor -- zeros of x's shape and dtype"},
    {"ones_like", l_ones_like, VLUA_BOTH, "vl.ones_like(x, {dtype}) -> Tensor -- ones of x's shape and dtype"},
    {"empty_like", l_empty_like, VLUA_BOTH, "vl.empty_like(x, {dtype}) -> Tensor -- uninitialised, x's shape"},
    {"full_like", l_full_like, VLUA_BOTH, "vl.full_like(x, value, {dtype}) -> Tensor -- value in x's shape"},
    {"arange", l_arange, VLUA_FUNC, "vl.arange([start,] end [, step], {dtype}) -> Tensor -- [start, end) by step"},
    {"linspace", l_linspace, VLUA_FUNC, "vl.linspace(start, end, steps, {dtype}) -> Tensor -- evenly spaced, both ends included"},
    {"eye", l_eye, VLUA_FUNC, "vl.eye(n [, m], {dtype}) -> Tensor -- identity matrix"},
    {"is_tensor", l_is_tensor, VLUA_FUNC, "vl.is_tensor(v) -> boolean"},
    {"size", l_size, VLUA_BOTH, "x:size([dim]) -> table or integer -- the shape, or one dim's size"},
    {"stride", l_stride, VLUA_BOTH, "x:stride([dim]) -> table or integer -- strides in elements"},
    {"dim", l_dim, VLUA_BOTH, "x:dim() -> integer -- number of dims"},
    {"numel", l_numel, VLUA_BOTH, "x:numel() -> integer -- number of elements"},
    {"nelement", l_numel, VLUA_METHOD, "x:nelement() -> integer -- number of elements"},
    {"type", l_dtype, VLUA_METHOD, "x:type() -> string -- the dtype name (also x.dtype)"},
    {"is_contiguous", l_is_contiguous, VLUA_BOTH, "x:is_contiguous() -> boolean -- row-major with no gaps"},
    {"storage_offset", l_storage_offset, VLUA_BOTH, "x:storage_offset() -> integer -- elements from the storage start (0 for a fresh tensor)"},
    {"shares_storage", l_shares_storage, VLUA_BOTH, "x:shares_storage(y) -> boolean -- whether x and y view the same memory"},
    {"item", l_item, VLUA_BOTH, "x:item() -> number -- the value of a one-element tensor"},
    {"totable", l_totable, VLUA_BOTH, "x:totable() -> table -- nested Lua tables (a number for 0-d)"},
    {"tolist", l_totable, VLUA_METHOD, "x:tolist() -> table -- same as totable"},
    {"to", l_to, VLUA_METHOD, "x:to(dtype) -> Tensor -- converted copy (x itself when already that dtype)"},
    {"float", l_float, VLUA_METHOD, "x:float() -> Tensor -- as float32"},
    {"double", l_double, VLUA_METHOD, "x:double() -> Tensor -- as float64"},
    {"half", l_half, VLUA_METHOD, "x:half() -> Tensor -- as float16"},
    {"bfloat16", l_bfloat16, VLUA_METHOD, "x:bfloat16() -> Tensor -- as bfloat16"},
    {"long", l_long, VLUA_METHOD, "x:long() -> Tensor -- as int64"},
    {"int", l_int, VLUA_METHOD, "x:int() -> Tensor -- as int32"},
    {"byte", l_byte, VLUA_METHOD, "x:byte() -> Tensor -- as uint8"},
    {"bool", l_bool, VLUA_METHOD, "x:bool() -> Tensor -- as bool"},
    {"view", l_view, VLUA_BOTH, "x:view(shape...) -> Tensor -- same data, new shape (no copy; one size may be -1)"},
    {"view_as", l_view_as, VLUA_METHOD, "x:view_as(y) -> Tensor -- view with y's shape"},
    {"reshape", l_reshape, VLUA_BOTH, "x:reshape(shape...) -> Tensor -- a view when possible, else a copy"},
    {"reshape_as", l_reshape_as, VLUA_METHOD, "x:reshape_as(y) -> Tensor -- reshape to y's shape"},
    {"transpose", l_transpose, VLUA_BOTH, "x:transpose(dim1, dim2) -> Tensor -- swap two dims (view)"},
    {"t", l_t, VLUA_BOTH, "x:t() -> Tensor -- transpose of a matrix (view)"},
    {"permute", l_permute, VLUA_BOTH, "x:permute(dims...) -> Tensor -- reorder dims (view)"},
    {"narrow", l_narrow, VLUA_BOTH, "x:narrow(dim, start, length) -> Tensor -- length elements from start (1-based, view)"},
    {"select", l_select, VLUA_BOTH, "x:select(dim, index) -> Tensor -- slice at index, dim removed (view)"},
    {"expand", l_expand, VLUA_BOTH, "x:expand(shape...) -> Tensor -- broadcast size-1 dims without copying (-1 keeps)"},
    {"expand_as", l_expand_as, VLUA_METHOD, "x:expand_as(y) -> Tensor -- expand to y's shape"},
    {"unfold", l_unfold, VLUA_BOTH, "x:unfold(dim, size, step) -> Tensor -- sliding windows as a new last dim (view)"},
    {"squeeze", l_squeeze, VLUA_BOTH, "x:squeeze([dim]) -> Tensor -- drop size-1 dims (view)"},
    {"unsqueeze", l_unsqueeze, VLUA_BOTH, "x:unsqueeze(dim) -> Tensor -- insert a size-1 dim (view)"},
    {"flatten", l_flatten, VLUA_BOTH, "x:flatten([start_dim [, end_dim]]) -> Tensor -- merge dims start..end"},
    {"as_strided", l_as_strided, VLUA_METHOD, "x:as_strided(shape, stride [, offset]) -> Tensor -- raw view (bounds checked)"},
    {"contiguous", l_contiguous, VLUA_BOTH, "x:contiguous() -> Tensor -- x if already contiguous, else a packed copy"},
    {"clone", l_clone, VLUA_BOTH, "x:clone() -> Tensor -- a packed copy"},
    {"copy_", l_copy_, VLUA_METHOD, "x:copy_(src) -> x -- copy src (broadcast, converted) into x"},
    {"fill_", l_fill_, VLUA_METHOD, "x:fill_(value) -> x -- set every element"},
    {"zero_", l_zero_, VLUA_METHOD, "x:zero_() -> x -- set every element to 0"},
    {"set_memory_limit", l_set_memory_limit, VLUA_FUNC, "vl.set_memory_limit(bytes) -- cap tensor memory (0 or nil: no cap)"},
    {"memory_limit", l_memory_limit, VLUA_FUNC, "vl.memory_limit() -> integer -- the cap in bytes (0: none)"},
    {"memory_in_use", l_memory_in_use, VLUA_FUNC, "vl.memory_in_use() -> integer -- bytes held by live tensors"},
    {"set_num_threads", l_set_num_threads, VLUA_FUNC, "vl.set_num_threads(n) -- threads for OpenMP and OpenBLAS"},
    {"get_num_threads", l_get_num_threads, VLUA_FUNC, "vl.get_num_threads() -> integer"},
    {"gemm_kernel", l_gemm_kernel, VLUA_FUNC,
     "vl.gemm_kernel() -> string -- the float32 matrix-multiply kernel: \"avx512\", \"avx2\" or \"openblas\""},
    {NULL, NULL, 0, NULL}};

/* Creates the tensor metatable; vl table and registry entries exist. */
void vlua_open_tensor(lua_State *L) {
  luaL_newmetatable(L, VLUA_TENSOR_MT);
  int mt = lua_gettop(L);
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_METHODS);
  lua_newtable(L); /* properties: name -> function(x) (e.g. grad) */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "vl.properties");
  lua_pushcclosure(L, l_index, 2);
  lua_setfield(L, mt, "__index");
  lua_pushcfunction(L, l_newindex);
  lua_setfield(L, mt, "__newindex");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, mt, "__tostring");
  lua_pushcfunction(L, l_len);
  lua_setfield(L, mt, "__len");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, mt, "__gc");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, mt, "__close");
  lua_pop(L, 1);
  vlua_register(L, tensor_regs);
}
