/*
** bind_index.c — Lua bindings for joining, indexing and ordering
** (ops/index.c, ops/sort.c): cat, stack, split, chunk, gather, scatter, index_select,
** masked_select, nonzero, sort, topk, flip, roll, repeat, tril, triu.
**
** Index values are 1-based in Lua (Torch7): index tensors given to
** gather/scatter/index_select are checked and shifted down by one here
** (so errors show the user's own numbers), and the indices returned by
** sort/topk/nonzero are shifted up by one.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bind.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/* Push `t` (new reference) and return it: the Lua stack owns it from
   here on, so a later error cannot leak it. */
static vl_tensor *own(lua_State *L, vl_tensor *t) {
  vlua_pushtensor(L, t); /* raises the vl error when NULL */
  return t;
}

/* luaL_error with the C library's printf (lua_pushfstring lacks %lld). */
static int fail(lua_State *L, const char *fmt, ...) {
  char buf[VL_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  luaL_where(L, 1);
  lua_pushstring(L, buf);
  lua_concat(L, 2);
  return lua_error(L);
}

static const char *shape_of(const vl_tensor *t, char *buf) { return vl_shape_str(t->ndim, t->shape, buf); }

/* The 1-based int64/int32 index tensor at `idx` as a 0-based contiguous
   int64 tensor (pushed on the stack), every value checked to lie in
   1..size. */
static vl_tensor *index_arg(lua_State *L, int idx, int64_t size, const char *op) {
  vl_tensor *ix = vlua_totensor(L, idx);
  if (ix == NULL && lua_istable(L, idx)) { /* a flat table of integers: {3, 1, 2} */
    int64_t n = (int64_t)luaL_len(L, idx);
    vl_tensor *out = own(L, vl_empty(1, &n, VL_INT64));
    int64_t *o = vl_data_ptr(out);
    for (int64_t i = 0; i < n; i++) {
      lua_rawgeti(L, idx, (lua_Integer)i + 1);
      if (!lua_isinteger(L, -1))
        fail(L, "%s: index table entry %lld must be an integer, got %s", op, (long long)i + 1,
             luaL_typename(L, -1));
      int64_t v = (int64_t)lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (v < 1 || v > size)
        fail(L, "%s: index %lld out of range for a dim of size %lld (expected 1..%lld; indices are 1-based)", op,
             (long long)v, (long long)size, (long long)size);
      o[i] = v - 1;
    }
    return out;
  }
  if (ix == NULL)
    fail(L, "%s: index must be an int64 tensor of 1-based indices, got %s", op, luaL_typename(L, idx));
  if (ix->dtype != VL_INT64 && ix->dtype != VL_INT32)
    fail(L, "%s: index must be an int64 or int32 tensor, got %s", op, vl_dtype_name(ix->dtype));
  vl_tensor *c = own(L, vl_contiguous(ix));
  vl_tensor *out = own(L, vl_empty(ix->ndim, ix->shape, VL_INT64));
  int64_t n = vl_numel(ix);
  int64_t *o = vl_data_ptr(out);
  const void *p = vl_data_ptr(c);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = c->dtype == VL_INT64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
    if (v < 1 || v > size) {
      if (size == 0)
        fail(L, "%s: index %lld out of range: the indexed dim is empty (indices are 1-based)", op,
                   (long long)v);
      fail(L, "%s: index %lld out of range for a dim of size %lld (expected 1..%lld; indices are 1-based)",
                 op, (long long)v, (long long)size, (long long)size);
    }
    o[i] = v - 1;
  }
  lua_remove(L, -2); /* the contiguous copy */
  return out;
}

/* Add one to a fresh contiguous int64 index result (0-based -> 1-based). */
static void to_one_based(vl_tensor *ix) {
  int64_t n = vl_numel(ix);
  int64_t *p = vl_data_ptr(ix);
  for (int64_t i = 0; i < n; i++) p[i] += 1;
}

static int64_t dim_size(const vl_tensor *t, int d) { return t->ndim == 0 ? 1 : t->shape[d]; }

/* Tensors for cat/stack: a table {a, b, ...} at 1, or tensors as
   arguments a, b, ... Returns the count and the index of the first
   argument after them. The array lives in a userdata on the stack. */
static const vl_tensor **tensor_list(lua_State *L, int *n, int *next, const char *op) {
  const vl_tensor **ts;
  if (lua_istable(L, 1) && vlua_totensor(L, 1) == NULL) {
    int len = (int)luaL_len(L, 1);
    if (len == 0) fail(L, "%s: expected a non-empty table of tensors", op);
    ts = lua_newuserdatauv(L, (size_t)len * sizeof *ts, 0);
    for (int i = 0; i < len; i++) {
      lua_rawgeti(L, 1, i + 1);
      ts[i] = vlua_totensor(L, -1);
      if (ts[i] == NULL)
        fail(L, "%s: element %d of the table is a %s, expected a tensor", op, i + 1, luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    *n = len;
    *next = 2;
  } else {
    int top = lua_gettop(L), len = 0;
    while (len < top && vlua_totensor(L, len + 1)) len++;
    if (len == 0)
      fail(L, "%s: expected a table of tensors (or tensors as arguments), got %s", op, luaL_typename(L, 1));
    ts = lua_newuserdatauv(L, (size_t)len * sizeof *ts, 0);
    for (int i = 0; i < len; i++) ts[i] = vlua_totensor(L, i + 1);
    *n = len;
    *next = len + 1;
  }
  return ts;
}

/* ------------------------------------------------------------------ */
/* cat, stack, split, chunk                                            */
/* ------------------------------------------------------------------ */

static bool legacy_empty(const vl_tensor *t) { return t->ndim == 1 && t->shape[0] == 0; }

static int l_cat(lua_State *L) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  int n, next, top = lua_gettop(L);
  const vl_tensor **ts = tensor_list(L, &n, &next, "cat");
  int ref = -1;
  for (int i = 0; i < n && ref < 0; i++)
    if (!legacy_empty(ts[i])) ref = i;
  int d = 0;
  if (ref >= 0) {
    const vl_tensor *r = ts[ref];
    if (r->ndim == 0)
      fail(L, "cat: tensor %d is 0-d; zero-dimensional tensors cannot be concatenated", ref + 1);
    d = next <= top ? vlua_optdim(L, next, r->ndim, 0, "cat") : 0;
    /* Check here so that messages use 1-based positions and dims. */
    for (int i = 0; i < n; i++) {
      const vl_tensor *t = ts[i];
      if (legacy_empty(t)) continue;
      if (t->ndim != r->ndim)
        fail(L, "cat: tensor %d has shape %s but tensor %d has %s (%d dims ~= %d)", i + 1, shape_of(t, s1),
                   ref + 1, shape_of(r, s2), t->ndim, r->ndim);
      for (int k = 0; k < r->ndim; k++)
        if (k != d && t->shape[k] != r->shape[k])
          fail(L,
                     "cat: tensor %d has shape %s but tensor %d has %s; sizes must match except in cat dim %d "
                     "(dim %d: %lld ~= %lld)",
                     i + 1, shape_of(t, s1), ref + 1, shape_of(r, s2), d + 1, k + 1, (long long)t->shape[k],
                     (long long)r->shape[k]);
    }
  }
  vlua_pushtensor(L, vl_cat(n, ts, d));
  return 1;
}

static int l_stack(lua_State *L) {
  char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
  int n, next, top = lua_gettop(L);
  const vl_tensor **ts = tensor_list(L, &n, &next, "stack");
  for (int i = 1; i < n; i++)
    if (!vl_same_shape(ts[i], ts[0]))
      fail(L, "stack: tensor %d has shape %s but tensor 1 has %s (all must be equal)", i + 1,
                 shape_of(ts[i], s1), shape_of(ts[0], s2));
  int d = next <= top ? vlua_optdim(L, next, ts[0]->ndim + 1, 0, "stack") : 0;
  vlua_pushtensor(L, vl_stack(n, ts, d));
  return 1;
}

/* Push the pieces as a Lua table and free the array. */
static int push_pieces(lua_State *L, int rc, vl_tensor **ps, int n) {
  vlua_check(L, rc);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    vlua_pushtensor(L, ps[i]);
    lua_rawseti(L, -2, i + 1);
  }
  free(ps);
  return 1;
}

static int l_split(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (t->ndim == 0) fail(L, "split: cannot split a 0-d tensor");
  int d = vlua_optdim(L, 3, t->ndim, 0, "split");
  vl_tensor **ps;
  int n, rc;
  if (lua_istable(L, 2)) {
    int m = (int)luaL_len(L, 2);
    if (m == 0) fail(L, "split: the table of sizes is empty");
    int64_t *sizes = lua_newuserdatauv(L, (size_t)m * sizeof *sizes, 0);
    int64_t sum = 0;
    for (int i = 0; i < m; i++) {
      lua_rawgeti(L, 2, i + 1);
      if (!lua_isinteger(L, -1))
        fail(L, "split: size %d must be an integer, got %s", i + 1, luaL_typename(L, -1));
      sizes[i] = lua_tointeger(L, -1);
      lua_pop(L, 1);
      if (sizes[i] < 0) fail(L, "split: size %d is negative (%lld)", i + 1, (long long)sizes[i]);
      if (sizes[i] > t->shape[d] - sum)
        fail(L, "split: sizes add up to more than %lld, the size of dim %d", (long long)t->shape[d], d + 1);
      sum += sizes[i];
    }
    if (sum != t->shape[d])
      fail(L, "split: sizes add up to %lld but dim %d has size %lld", (long long)sum, d + 1,
                 (long long)t->shape[d]);
    rc = vl_split_sizes(t, m, sizes, d, &ps, &n);
  } else {
    if (!lua_isinteger(L, 2))
      fail(L, "split: expected a split size (integer) or a table of sizes, got %s", luaL_typename(L, 2));
    lua_Integer size = lua_tointeger(L, 2);
    if (size <= 0 && !(size == 0 && t->shape[d] == 0))
      fail(L, "split: split size must be positive (got %lld)", (long long)size);
    rc = vl_split(t, (int64_t)size, d, &ps, &n);
  }
  return push_pieces(L, rc, ps, n);
}

static int l_chunk(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  lua_Integer chunks = luaL_checkinteger(L, 2);
  if (chunks <= 0 || chunks > INT32_MAX)
    fail(L, "chunk: number of chunks must be positive (got %lld)", (long long)chunks);
  if (t->ndim == 0) fail(L, "chunk: cannot chunk a 0-d tensor");
  int d = vlua_optdim(L, 3, t->ndim, 0, "chunk");
  vl_tensor **ps;
  int n;
  int rc = vl_chunk(t, (int)chunks, d, &ps, &n);
  return push_pieces(L, rc, ps, n);
}

/* ------------------------------------------------------------------ */
/* gather, scatter, index_select, masked_select, nonzero               */
/* ------------------------------------------------------------------ */

static int l_gather(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int d = vlua_checkdim(L, 2, t->ndim, "gather");
  vl_tensor *ix = index_arg(L, 3, dim_size(t, d), "gather");
  vlua_pushtensor(L, vl_gather(t, d, ix));
  return 1;
}

/* scatter family: (self, dim, index, src) with src a tensor or number. */
static int scatter_common(lua_State *L, const char *op, int mode) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int d = vlua_checkdim(L, 2, t->ndim, op);
  vl_tensor *ix = index_arg(L, 3, dim_size(t, d), op);
  vl_tensor *src = own(L, vlua_totensor_or_scalar(L, 4, t, op));
  switch (mode) {
    case 0: vlua_pushtensor(L, vl_scatter(t, d, ix, src)); break;
    case 1:
      vlua_check(L, vl_scatter_(t, d, ix, src));
      lua_pushvalue(L, 1);
      break;
    default:
      vlua_check(L, vl_scatter_add_(t, d, ix, src));
      lua_pushvalue(L, 1);
      break;
  }
  return 1;
}

static int l_scatter(lua_State *L) { return scatter_common(L, "scatter", 0); }
static int l_scatter_(lua_State *L) { return scatter_common(L, "scatter_", 1); }
static int l_scatter_add_(lua_State *L) { return scatter_common(L, "scatter_add_", 2); }

static int l_index_select(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int d = vlua_checkdim(L, 2, t->ndim, "index_select");
  vl_tensor *ix = index_arg(L, 3, dim_size(t, d), "index_select");
  vlua_pushtensor(L, vl_index_select(t, d, ix));
  return 1;
}

static int l_masked_select(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_tensor *m = vlua_totensor(L, 2);
  if (m == NULL) fail(L, "masked_select: mask must be a bool tensor, got %s", luaL_typename(L, 2));
  vlua_pushtensor(L, vl_masked_select(t, m));
  return 1;
}

static int l_nonzero(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  vl_tensor *r = own(L, vl_nonzero(t));
  to_one_based(r);
  return 1;
}

/* ------------------------------------------------------------------ */
/* sort, topk                                                          */
/* ------------------------------------------------------------------ */

static int last_dim(const vl_tensor *t) { return t->ndim > 0 ? t->ndim - 1 : 0; }

static int push_values_indices(lua_State *L, int rc, vl_tensor *v, vl_tensor *ix) {
  vlua_check(L, rc);
  vlua_pushtensor(L, v);
  to_one_based(ix);
  vlua_pushtensor(L, ix);
  return 2;
}

static int l_sort(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int opt = vlua_opts(L);
  int d = last_dim(t);
  if (lua_isinteger(L, 2) || (lua_type(L, 2) == LUA_TNUMBER)) d = vlua_checkdim(L, 2, t->ndim, "sort");
  else if (!lua_isnoneornil(L, 2) && opt != 2)
    fail(L, "sort: dim expected (an integer), got %s", luaL_typename(L, 2));
  bool desc = vlua_optbool(L, opt, "descending", 0);
  if (lua_isboolean(L, 3)) desc = lua_toboolean(L, 3); /* x:sort(dim, true), as PyTorch */
  vl_tensor *v, *ix;
  int rc = vl_sort(t, d, desc, &v, &ix);
  return push_values_indices(L, rc, v, ix);
}

static int l_topk(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  if (!lua_isinteger(L, 2)) fail(L, "topk: k must be an integer, got %s", luaL_typename(L, 2));
  lua_Integer k = lua_tointeger(L, 2);
  int opt = vlua_opts(L);
  int d = last_dim(t);
  if (lua_type(L, 3) == LUA_TNUMBER) d = vlua_checkdim(L, 3, t->ndim, "topk");
  else if (!lua_isnoneornil(L, 3) && opt != 3)
    fail(L, "topk: dim expected (an integer), got %s", luaL_typename(L, 3));
  bool largest = vlua_optbool(L, opt, "largest", 1);
  bool sorted = vlua_optbool(L, opt, "sorted", 1);
  int64_t n = dim_size(t, d);
  if (k < 0 || k > n)
    fail(L, "topk: k (%lld) out of range for dim %d of size %lld (expected 0..%lld)", (long long)k, d + 1,
               (long long)n, (long long)n);
  vl_tensor *v, *ix;
  int rc = vl_topk(t, (int64_t)k, d, largest, sorted, &v, &ix);
  return push_values_indices(L, rc, v, ix);
}

/* ------------------------------------------------------------------ */
/* flip, roll, repeat, tril, triu                                      */
/* ------------------------------------------------------------------ */

/* Dims as a table, one integer, or several integer arguments from idx. */
static int dims_arg(lua_State *L, int idx, int ndim, int *dims, const char *op) {
  int n = vlua_checkdims(L, idx, ndim, dims, op);
  if (n == 1 && lua_type(L, idx) == LUA_TNUMBER) {
    int top = lua_gettop(L);
    for (int i = idx + 1; i <= top && lua_type(L, i) == LUA_TNUMBER; i++) {
      if (n == VL_MAX_DIMS) fail(L, "%s: more than %d dims listed", op, VL_MAX_DIMS);
      dims[n] = vlua_checkdim(L, i, ndim, op);
      for (int j = 0; j < n; j++)
        if (dims[j] == dims[n]) fail(L, "%s: dim %d appears twice in the list of dims", op, dims[n] + 1);
      n++;
    }
  }
  return n;
}

static int l_flip(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int dims[VL_MAX_DIMS];
  if (lua_isnoneornil(L, 2)) fail(L, "flip: dims expected (a dim or a table of dims)");
  int n = dims_arg(L, 2, t->ndim, dims, "flip");
  vlua_pushtensor(L, vl_flip(t, n, dims));
  return 1;
}

static int l_roll(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int64_t shifts[VL_MAX_DIMS];
  int ns = 0;
  if (lua_isinteger(L, 2)) {
    shifts[ns++] = lua_tointeger(L, 2);
  } else if (lua_istable(L, 2)) {
    int m = (int)luaL_len(L, 2);
    if (m == 0 || m > VL_MAX_DIMS) fail(L, "roll: expected 1..%d shifts, got %d", VL_MAX_DIMS, m);
    for (int i = 0; i < m; i++) {
      lua_rawgeti(L, 2, i + 1);
      if (!lua_isinteger(L, -1))
        fail(L, "roll: shift %d must be an integer, got %s", i + 1, luaL_typename(L, -1));
      shifts[ns++] = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  } else {
    fail(L, "roll: shifts expected (an integer or a table of integers), got %s", luaL_typename(L, 2));
  }
  int dims[VL_MAX_DIMS];
  int nd = vlua_checkdims(L, 3, t->ndim, dims, "roll");
  if (nd == 0) {
    if (ns != 1) fail(L, "roll: %d shifts given without dims (expected one shift for the flattened tensor)", ns);
    vlua_pushtensor(L, vl_roll(t, 1, shifts, NULL));
    return 1;
  }
  if (nd != ns) fail(L, "roll: %d shifts but %d dims (expected as many of each)", ns, nd);
  vlua_pushtensor(L, vl_roll(t, ns, shifts, dims));
  return 1;
}

static int l_repeat(lua_State *L) {
  vl_tensor *t = vlua_checktensor(L, 1);
  int64_t reps[VL_MAX_DIMS];
  int n = vlua_checkshape(L, 2, reps, "repeat");
  if (n < t->ndim)
    fail(L, "repeat: %d repeat counts given for a %d-d tensor (need at least %d)", n, t->ndim, t->ndim);
  for (int i = 0; i < n; i++)
    if (reps[i] < 0) fail(L, "repeat: repeat count %d is negative (%lld)", i + 1, (long long)reps[i]);
  vlua_pushtensor(L, vl_repeat(t, n, reps));
  return 1;
}

static int tri(lua_State *L, bool lower) {
  vl_tensor *t = vlua_checktensor(L, 1);
  lua_Integer k = luaL_optinteger(L, 2, 0);
  vlua_pushtensor(L, lower ? vl_tril(t, (int64_t)k) : vl_triu(t, (int64_t)k));
  return 1;
}

static int l_tril(lua_State *L) { return tri(L, true); }
static int l_triu(lua_State *L) { return tri(L, false); }

/* ------------------------------------------------------------------ */

static const vlua_Reg index_regs[] = {
    {"cat", l_cat, VLUA_FUNC,
     "vl.cat({a, b, ...}, dim=1) -> Tensor -- concatenate along dim (dtypes promoted; 1-D empty tensors skipped)"},
    {"stack", l_stack, VLUA_FUNC,
     "vl.stack({a, b, ...}, dim=1) -> Tensor -- join equal-shaped tensors along a new dim"},
    {"split", l_split, VLUA_BOTH,
     "x:split(size | {sizes}, dim=1) -> {views} -- pieces of `size` (last may be smaller) or of the listed sizes"},
    {"chunk", l_chunk, VLUA_BOTH, "x:chunk(n, dim=1) -> {views} -- at most n pieces of ceil(size/n)"},
    {"gather", l_gather, VLUA_BOTH,
     "x:gather(dim, index) -> Tensor -- out[i][j] = x[i][index[i][j]] along dim (1-based int64 index)"},
    {"scatter", l_scatter, VLUA_BOTH,
     "x:scatter(dim, index, src) -> Tensor -- copy of x with src (tensor or number) written at 1-based index"},
    {"scatter_", l_scatter_, VLUA_METHOD, "x:scatter_(dim, index, src) -> x -- in-place scatter"},
    {"scatter_add_", l_scatter_add_, VLUA_METHOD,
     "x:scatter_add_(dim, index, src) -> x -- add src into x at 1-based index (repeats accumulate)"},
    {"index_select", l_index_select, VLUA_BOTH,
     "x:index_select(dim, index) -> Tensor -- the slices at the 1-based indices of a 1-D index (tensor or table)"},
    {"masked_select", l_masked_select, VLUA_BOTH,
     "x:masked_select(mask) -> Tensor -- 1-D tensor of the elements where the bool/uint8 mask (broadcast) is true"},
    {"nonzero", l_nonzero, VLUA_BOTH, "x:nonzero() -> Tensor -- (n, ndim) int64 1-based positions of non-zeros"},
    {"sort", l_sort, VLUA_BOTH,
     "x:sort(dim=-1, {descending=false}) -> values, indices -- stable sort, NaN largest, 1-based int64 indices"},
    {"topk", l_topk, VLUA_BOTH,
     "x:topk(k, dim=-1, {largest=true, sorted=true}) -> values, indices -- k largest (or smallest), sorted"},
    {"flip", l_flip, VLUA_BOTH, "x:flip(dims) -> Tensor -- copy with the order of the listed dims reversed"},
    {"roll", l_roll, VLUA_BOTH,
     "x:roll(shifts, dims) -> Tensor -- rotate elements along dims (no dims: the flattened tensor)"},
    {"repeat", l_repeat, VLUA_BOTH,
     "x[\"repeat\"](x, r1, r2, ...) -> Tensor -- tile x r_i times along each dim (PyTorch Tensor.repeat)"},
    {"repeats", l_repeat, VLUA_BOTH, "x:repeats(r1, r2, ... | {r}) -> Tensor -- alias of repeat (a Lua keyword)"},
    {"tril", l_tril, VLUA_BOTH, "x:tril(k=0) -> Tensor -- zero the elements above diagonal k of the last two dims"},
    {"triu", l_triu, VLUA_BOTH, "x:triu(k=0) -> Tensor -- zero the elements below diagonal k of the last two dims"},
    {NULL, NULL, 0, NULL}};

void vlua_open_index(lua_State *L) { vlua_register(L, index_regs); }
