/*
** bind_io.c — tensor files in Lua (ops/io.c, npy.c, idx.c):
**   vl.safetensors.open/load/save, vl.npy.load/save, vl.save/vl.load
**   (tables of tensors as safetensors), vl.read_idx, vl.write_file (atomic),
**   and two helpers the progress bar needs: vl.isatty, vl.monotonic.
**
** vl.save flattens nested tables to dotted keys ("model.fc.weight",
** "layers.1"); numbers, strings and booleans go to __metadata__ as strings,
** their Lua types in the metadata entry "vl.save/types" (a JSON object), and
** "vl.save/layout" says whether vl.load should rebuild nested tables.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../ops/vl_internal.h"
#include "bind.h"

#define SAFETENSORS_MT "vl.SafetensorsFile"
#define SAVE_MAX_DEPTH 32              /* nested tables vl.save follows (deeper: a cycle) */
#define SAVE_LAYOUT_KEY "vl.save/layout" /* "nested" or "flat" */
#define SAVE_TYPES_KEY "vl.save/types"   /* {"key": "integer"|"number"|"boolean"} */

/* ------------------------------------------------------------------ */
/* Small helpers                                                        */
/* ------------------------------------------------------------------ */

/* A scratch array owned by the Lua stack (freed by the GC even when an
   error unwinds). */
static void *scratch(lua_State *L, size_t n, size_t size) {
  return lua_newuserdatauv(L, (n ? n : 1) * size, 0);
}

static void set_docs(lua_State *L, lua_CFunction f, const char *doc) {
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_DOCS);
  lua_pushcfunction(L, f);
  lua_pushstring(L, doc);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* vl[name] = a table of the given functions (docs registered for help). */
static void register_sub(lua_State *L, const char *name, const vlua_Reg *regs) {
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_MODULE);
  lua_newtable(L);
  for (const vlua_Reg *r = regs; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
    if (r->doc) set_docs(L, r->func, r->doc);
  }
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Push metadata of an open file as a table of strings. */
static void push_metadata(lua_State *L, const vl_safetensors *f) {
  int n = vl_safetensors_metadata_count(f);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const char *k, *v;
    vl_safetensors_metadata_item(f, i, &k, &v);
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
  }
}

/* ------------------------------------------------------------------ */
/* vl.safetensors.open: a lazy handle                                   */
/* ------------------------------------------------------------------ */

typedef struct st_box {
  vl_safetensors *f;
} st_box;

static vl_safetensors *check_open(lua_State *L) {
  st_box *b = luaL_checkudata(L, 1, SAFETENSORS_MT);
  if (b->f == NULL) luaL_error(L, "safetensors: the file is closed");
  return b->f;
}

static int st_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  st_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->f = NULL;
  luaL_setmetatable(L, SAFETENSORS_MT);
  b->f = vl_safetensors_open(path);
  if (b->f == NULL) return vlua_raise(L);
  return 1;
}

static int st_close(lua_State *L) {
  st_box *b = luaL_checkudata(L, 1, SAFETENSORS_MT);
  vl_safetensors_close(b->f);
  b->f = NULL;
  return 0;
}

static int st_keys(lua_State *L) {
  vl_safetensors *f = check_open(L);
  int n = vl_safetensors_count(f);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, vl_safetensors_key(f, i));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int st_len(lua_State *L) {
  lua_pushinteger(L, vl_safetensors_count(check_open(L)));
  return 1;
}

static int st_has(lua_State *L) {
  vl_safetensors *f = check_open(L);
  lua_pushboolean(L, vl_safetensors_has(f, luaL_checkstring(L, 2)));
  return 1;
}

static int st_meta(lua_State *L) {
  push_metadata(L, check_open(L));
  return 1;
}

static int st_get(lua_State *L) {
  vl_safetensors *f = check_open(L);
  vlua_pushtensor(L, vl_safetensors_get(f, luaL_checkstring(L, 2)));
  return 1;
}

static void info_of(lua_State *L, vl_safetensors *f, const char **dtype, int *ndim, const int64_t **shape,
                    uint64_t *b, uint64_t *e) {
  vlua_check(L, vl_safetensors_info(f, luaL_checkstring(L, 2), dtype, ndim, shape, b, e));
}

static void push_shape_any(lua_State *L, int ndim, const int64_t *shape) {
  lua_createtable(L, ndim, 0);
  for (int d = 0; d < ndim; d++) {
    lua_pushinteger(L, (lua_Integer)shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
}

static int st_shape(lua_State *L) {
  vl_safetensors *f = check_open(L);
  int ndim;
  const int64_t *shape;
  info_of(L, f, NULL, &ndim, &shape, NULL, NULL);
  push_shape_any(L, ndim, shape);
  return 1;
}

/* The vl dtype name ("float32"); the file's name ("I16") for dtypes vl lacks. */
static const char *vl_name_of_st(const char *st) {
  static const char *const map[][2] = {{"F32", "float32"}, {"F64", "float64"}, {"F16", "float16"},
                                       {"BF16", "bfloat16"}, {"I64", "int64"}, {"I32", "int32"},
                                       {"U8", "uint8"},     {"BOOL", "bool"}};
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
    if (strcmp(map[i][0], st) == 0) return map[i][1];
  return st;
}

static int st_dtype(lua_State *L) {
  vl_safetensors *f = check_open(L);
  const char *dt;
  info_of(L, f, &dt, NULL, NULL, NULL, NULL);
  lua_pushstring(L, vl_name_of_st(dt));
  return 1;
}

static int st_info(lua_State *L) {
  vl_safetensors *f = check_open(L);
  const char *dt;
  int ndim;
  const int64_t *shape;
  uint64_t b, e;
  info_of(L, f, &dt, &ndim, &shape, &b, &e);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, dt);
  lua_setfield(L, -2, "dtype");
  push_shape_any(L, ndim, shape);
  lua_setfield(L, -2, "shape");
  lua_createtable(L, 2, 0);
  lua_pushinteger(L, (lua_Integer)b);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, (lua_Integer)e);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, -2, "data_offsets");
  return 1;
}

static int st_tostring(lua_State *L) {
  st_box *b = luaL_checkudata(L, 1, SAFETENSORS_MT);
  if (b->f == NULL) lua_pushliteral(L, "safetensors file (closed)");
  else lua_pushfstring(L, "safetensors file (%d tensors)", vl_safetensors_count(b->f));
  return 1;
}

static const luaL_Reg st_methods[] = {
    {"keys", st_keys},   {"metadata", st_meta}, {"get", st_get},     {"shape", st_shape},
    {"dtype", st_dtype}, {"info", st_info},     {"has", st_has},     {"close", st_close},
    {NULL, NULL}};

static const luaL_Reg st_meta_methods[] = {
    {"__gc", st_close}, {"__close", st_close}, {"__len", st_len}, {"__tostring", st_tostring}, {NULL, NULL}};

/* ------------------------------------------------------------------ */
/* vl.safetensors.load / save                                           */
/* ------------------------------------------------------------------ */

/* Push a table name -> tensor (every tensor of f). */
static void push_all_tensors(lua_State *L, vl_safetensors *f) {
  int n = vl_safetensors_count(f);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    const char *k = vl_safetensors_key(f, i);
    vlua_pushtensor(L, vl_safetensors_get(f, k));
    lua_setfield(L, -2, k);
  }
}

/* vl.safetensors.load(path) -> {name = tensor}, metadata */
static int st_load(lua_State *L) {
  st_open(L); /* the handle at the top; closed by its __gc */
  vl_safetensors *f = ((st_box *)lua_touserdata(L, -1))->f;
  push_all_tensors(L, f);
  push_metadata(L, f);
  return 2;
}

/* Save n names/tensors from a table at `tbl` (string keys, tensor values)
   plus metadata from a table at `meta` (0: none). */
static int save_tables(lua_State *L, const char *op, const char *path, int tbl, int meta) {
  int n = 0, nm = 0;
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    lua_pop(L, 1);
    n++;
  }
  if (meta) {
    lua_pushnil(L);
    while (lua_next(L, meta)) {
      lua_pop(L, 1);
      nm++;
    }
  }
  const char **names = scratch(L, (size_t)n, sizeof *names);
  const vl_tensor **ts = scratch(L, (size_t)n, sizeof *ts);
  const char **keys = scratch(L, (size_t)nm, sizeof *keys);
  const char **vals = scratch(L, (size_t)nm, sizeof *vals);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      return luaL_error(L, "%s: %s: keys must be strings (got a %s key)", op, path, luaL_typename(L, -2));
    vl_tensor *t = vlua_totensor(L, -1);
    if (t == NULL)
      return luaL_error(L, "%s: %s: value of '%s' is a %s, expected a tensor%s", op, path, lua_tostring(L, -2),
                        luaL_typename(L, -1),
                        lua_istable(L, -1) ? " (vl.save flattens nested tables)" : "");
    names[i] = lua_tostring(L, -2);
    ts[i++] = t;
    lua_pop(L, 1);
  }
  i = 0;
  if (meta) { /* string keys and string values (checked by the callers) */
    lua_pushnil(L);
    while (lua_next(L, meta)) {
      keys[i] = lua_tostring(L, -2);
      vals[i++] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  vlua_check(L, vl_safetensors_save(path, n, names, ts, nm, keys, vals));
  return 0;
}

/* vl.safetensors.save(path, {name = tensor}, {metadata = {k = "v"}}) */
static int st_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int meta = 0;
  if (lua_istable(L, 3)) {
    lua_settop(L, 3);
    lua_getfield(L, 3, "metadata"); /* 4 */
    if (lua_istable(L, 4)) {
      lua_newtable(L); /* 5: a copy with the values as strings */
      meta = 5;
      lua_pushnil(L);
      while (lua_next(L, 4)) {
        if (lua_type(L, -2) != LUA_TSTRING || !(lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER))
          return luaL_error(L, "safetensors.save: %s: metadata must map strings to strings (got %s = %s)", path,
                            luaL_typename(L, -2), luaL_typename(L, -1));
        lua_pushvalue(L, -2);
        lua_pushvalue(L, -2);
        lua_tolstring(L, -1, NULL); /* a number becomes a string (on the copy) */
        lua_rawset(L, meta);
        lua_pop(L, 1);
      }
    } else if (!lua_isnil(L, 4)) {
      return luaL_error(L, "safetensors.save: option metadata must be a table of strings (got a %s)",
                        luaL_typename(L, 4));
    }
  }
  return save_tables(L, "safetensors.save", path, 2, meta);
}

/* ------------------------------------------------------------------ */
/* vl.save / vl.load                                                     */
/* ------------------------------------------------------------------ */

typedef struct save_ctx {
  int tensors, meta; /* stack indices of the output tables */
  cJSON *types;
  int nested;
  const char *dotted; /* a key with a '.' (ambiguous once nested) */
  const char *path;
} save_ctx;

static void flatten(lua_State *L, int t, const char *prefix, int depth, save_ctx *c) {
  if (depth > SAVE_MAX_DEPTH)
    luaL_error(L, "vl.save: %s: tables nested deeper than %d at '%s' (a cycle?)", c->path, SAVE_MAX_DEPTH, prefix);
  luaL_checkstack(L, 8, "vl.save");
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      if (strchr(k, '.') && c->dotted == NULL) c->dotted = k;
      if (prefix) lua_pushfstring(L, "%s.%s", prefix, k);
      else lua_pushvalue(L, -2);
    } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2)) {
      c->nested = 1;
      lua_Integer k = lua_tointeger(L, -2);
      if (prefix) lua_pushfstring(L, "%s.%I", prefix, (LUAI_UACINT)k);
      else lua_pushfstring(L, "%I", (LUAI_UACINT)k);
    } else {
      luaL_error(L, "vl.save: %s: keys must be strings or integers (got a %s key under '%s')", c->path,
                 luaL_typename(L, -2), prefix ? prefix : "the top");
    }
    /* stack: key, value, name */
    const char *name = lua_tostring(L, -1);
    int vt = lua_type(L, -2);
    int dup = lua_getfield(L, c->tensors, name) != LUA_TNIL;
    lua_pop(L, 1);
    if (!dup) {
      dup = lua_getfield(L, c->meta, name) != LUA_TNIL;
      lua_pop(L, 1);
    }
    if (dup) luaL_error(L, "vl.save: %s: key '%s' appears twice once nested tables are flattened", c->path, name);
    if (vlua_totensor(L, -2)) {
      lua_pushvalue(L, -1);
      lua_pushvalue(L, -3);
      lua_rawset(L, c->tensors);
    } else if (vt == LUA_TTABLE) {
      c->nested = 1;
      flatten(L, lua_absindex(L, -2), name, depth + 1, c);
    } else if (vt == LUA_TNUMBER || vt == LUA_TSTRING || vt == LUA_TBOOLEAN) {
      const char *type = NULL;
      lua_pushvalue(L, -1);
      if (vt == LUA_TNUMBER && lua_isinteger(L, -3)) {
        type = "integer";
        lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, -3));
      } else if (vt == LUA_TNUMBER) {
        char buf[40];
        snprintf(buf, sizeof buf, "%.17g", (double)lua_tonumber(L, -3));
        type = "number";
        lua_pushstring(L, buf);
      } else if (vt == LUA_TBOOLEAN) {
        type = "boolean";
        lua_pushstring(L, lua_toboolean(L, -3) ? "true" : "false");
      } else {
        lua_pushvalue(L, -3);
      }
      lua_rawset(L, c->meta);
      if (type && cJSON_AddStringToObject(c->types, name, type) == NULL) luaL_error(L, "vl.save: out of memory");
    } else {
      luaL_error(L, "vl.save: %s: value at '%s' is a %s; expected a tensor, table, number, string or boolean",
                 c->path, name, luaL_typename(L, -2));
    }
    lua_pop(L, 2); /* name, value */
  }
}

/* The cJSON object of types must not leak when flatten raises: keep it in
   a userdata whose __gc deletes it. */
typedef struct json_box {
  cJSON *j;
} json_box;

static int json_box_gc(lua_State *L) {
  json_box *b = lua_touserdata(L, 1);
  cJSON_Delete(b->j);
  b->j = NULL;
  return 0;
}

static json_box *new_json_box(lua_State *L, cJSON *j) {
  json_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->j = j;
  if (luaL_newmetatable(L, "vl.io.json")) {
    lua_pushcfunction(L, json_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

/* vl.save(path, tbl) */
static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  save_ctx c = {0};
  c.path = path;
  lua_newtable(L);
  c.tensors = lua_gettop(L);
  lua_newtable(L);
  c.meta = lua_gettop(L);
  json_box *jb = new_json_box(L, cJSON_CreateObject());
  if (jb->j == NULL) return luaL_error(L, "vl.save: out of memory");
  c.types = jb->j;
  flatten(L, 2, NULL, 0, &c);
  if (c.nested && c.dotted)
    return luaL_error(L, "vl.save: %s: key '%s' contains '.', which vl.save uses to join the keys of nested tables",
                      path, c.dotted);
  if (lua_getfield(L, c.meta, SAVE_LAYOUT_KEY) != LUA_TNIL || lua_getfield(L, c.meta, SAVE_TYPES_KEY) != LUA_TNIL)
    return luaL_error(L, "vl.save: %s: keys '%s' and '%s' are reserved", path, SAVE_LAYOUT_KEY, SAVE_TYPES_KEY);
  lua_settop(L, c.meta + 1);
  lua_pushstring(L, c.nested ? "nested" : "flat");
  lua_setfield(L, c.meta, SAVE_LAYOUT_KEY);
  char *types = cJSON_PrintUnformatted(c.types);
  if (types == NULL) return luaL_error(L, "vl.save: out of memory");
  lua_pushstring(L, types);
  cJSON_free(types);
  lua_setfield(L, c.meta, SAVE_TYPES_KEY);
  return save_tables(L, "vl.save", path, c.tensors, c.meta);
}

/* t[path] = value at the top (popped), creating the tables on the way;
   all-digit segments become integer keys. */
static void put_nested(lua_State *L, int t, const char *name, const char *path) {
  int value = lua_gettop(L);
  lua_pushvalue(L, t);
  const char *seg = name;
  for (;;) {
    const char *dot = strchr(seg, '.');
    size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
    int digits = n > 0 && n < 16 && seg[0] != '0';
    for (size_t i = 0; i < n && digits; i++) digits = seg[i] >= '0' && seg[i] <= '9';
    if (digits) lua_pushinteger(L, (lua_Integer)strtoll(seg, NULL, 10));
    else lua_pushlstring(L, seg, n);
    /* stack: value, table, key */
    if (dot == NULL) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, -3) != LUA_TNIL)
        luaL_error(L, "vl.load: %s: key '%s' clashes with another key once nested tables are rebuilt", path, name);
      lua_pop(L, 1);
      lua_pushvalue(L, value);
      lua_rawset(L, -3);
      break;
    }
    lua_pushvalue(L, -1);
    int ty = lua_rawget(L, -3);
    if (ty == LUA_TNIL) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, -5); /* table[key] = new */
      lua_remove(L, -2); /* key */
    } else if (ty == LUA_TTABLE && !vlua_totensor(L, -1)) {
      lua_remove(L, -2);
    } else {
      luaL_error(L, "vl.load: %s: key '%s' runs into a value that is not a table", path, name);
    }
    lua_remove(L, -2); /* parent */
    seg = dot + 1;
  }
  lua_settop(L, value - 1);
}

/* vl.load(path, {flat}) -> table, metadata */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int flat_opt = lua_istable(L, 2) ? vlua_optbool(L, 2, "flat", 0) : 0;
  lua_settop(L, 1);
  st_open(L); /* 2: the handle */
  vl_safetensors *f = ((st_box *)lua_touserdata(L, 2))->f;
  const char *layout = vl_safetensors_metadata_get(f, SAVE_LAYOUT_KEY);
  const char *types_s = vl_safetensors_metadata_get(f, SAVE_TYPES_KEY);
  int nested = layout && strcmp(layout, "nested") == 0 && !flat_opt;
  json_box *jb = new_json_box(L, types_s ? cJSON_Parse(types_s) : NULL); /* 3 */
  lua_newtable(L); /* 4: result */
  int res = 4;
  int n = vl_safetensors_count(f);
  for (int i = 0; i < n; i++) {
    const char *k = vl_safetensors_key(f, i);
    vlua_pushtensor(L, vl_safetensors_get(f, k));
    if (nested) put_nested(L, res, k, path);
    else lua_setfield(L, res, k);
  }
  if (layout) { /* written by vl.save: its scalars come back typed */
    int nm = vl_safetensors_metadata_count(f);
    for (int i = 0; i < nm; i++) {
      const char *k, *v;
      vl_safetensors_metadata_item(f, i, &k, &v);
      if (strcmp(k, SAVE_LAYOUT_KEY) == 0 || strcmp(k, SAVE_TYPES_KEY) == 0) continue;
      const cJSON *ty = jb->j ? cJSON_GetObjectItemCaseSensitive(jb->j, k) : NULL;
      const char *tn = cJSON_IsString(ty) ? ty->valuestring : "string";
      if (strcmp(tn, "integer") == 0) lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
      else if (strcmp(tn, "number") == 0) lua_pushnumber(L, (lua_Number)strtod(v, NULL));
      else if (strcmp(tn, "boolean") == 0) lua_pushboolean(L, strcmp(v, "true") == 0);
      else lua_pushstring(L, v);
      if (nested) put_nested(L, res, k, path);
      else lua_setfield(L, res, k);
    }
  }
  push_metadata(L, f);
  return 2;
}

/* ------------------------------------------------------------------ */
/* npy, IDX, atomic text, tty, clock                                    */
/* ------------------------------------------------------------------ */

static int npy_load(lua_State *L) {
  vlua_pushtensor(L, vl_npy_load(luaL_checkstring(L, 1)));
  return 1;
}

static int npy_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vlua_check(L, vl_npy_save(path, vlua_checktensor(L, 2)));
  return 0;
}

static int l_read_idx(lua_State *L) {
  vlua_pushtensor(L, vl_idx_load(luaL_checkstring(L, 1)));
  return 1;
}

static int l_write_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  vlua_check(L, vl_write_file_atomic(path, s, n));
  return 0;
}

/* vl.isatty(fd | file) */
static int l_isatty(lua_State *L) {
  int fd;
  luaL_Stream *s = luaL_testudata(L, 1, LUA_FILEHANDLE);
  if (s) {
    if (s->closef == NULL || s->f == NULL) return luaL_error(L, "isatty: the file is closed");
    fd = fileno(s->f);
  } else {
    lua_Integer i = luaL_checkinteger(L, 1);
    if (i < 0 || i > 1 << 20) return luaL_error(L, "isatty: fd %I is not a file descriptor", (LUAI_UACINT)i);
    fd = (int)i;
  }
  lua_pushboolean(L, isatty(fd) == 1);
  return 1;
}

/* vl.fsync(file): flush a Lua file's buffer and ask the kernel to put it on
 * disk, so an append-only journal survives a power cut, not only a kill. */
static int l_fsync(lua_State *L) {
  luaL_Stream *s = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  if (s->closef == NULL || s->f == NULL) return luaL_error(L, "fsync: the file is closed");
  if (fflush(s->f) != 0 || fsync(fileno(s->f)) != 0)
    return luaL_error(L, "fsync: %s", strerror(errno));
  return 0;
}

static int l_monotonic(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
  return 1;
}

static const vlua_Reg io_regs[] = {
    {"save", l_save, VLUA_FUNC,
     "vl.save(path, tbl) -- tensors of a (nested) table to safetensors; numbers/strings/booleans as metadata; atomic"},
    {"load", l_load, VLUA_FUNC,
     "vl.load(path, {flat}) -> tbl, metadata -- what vl.save wrote (nested tables rebuilt), or any safetensors file"},
    {"read_idx", l_read_idx, VLUA_FUNC, "vl.read_idx(path) -> Tensor -- an IDX file (MNIST format), gzipped or not"},
    {"write_file", l_write_file, VLUA_FUNC,
     "vl.write_file(path, string) -- write atomically (temp file, fsync, rename)"},
    {"isatty", l_isatty, VLUA_FUNC, "vl.isatty(fd | file) -> boolean -- whether it is a terminal"},
    {"fsync", l_fsync, VLUA_FUNC, "vl.fsync(file) -- flush a Lua file and fsync it to disk"},
    {"monotonic", l_monotonic, VLUA_FUNC, "vl.monotonic() -> number -- wall-clock seconds (monotonic)"},
    {NULL, NULL, 0, NULL}};

static const vlua_Reg safetensors_regs[] = {
    {"open", st_open, 0,
     "vl.safetensors.open(path) -> file -- validate and map; f:keys() f:metadata() f:get(name) f:shape(name) "
     "f:dtype(name) f:info(name) f:has(name) f:close()"},
    {"load", st_load, 0, "vl.safetensors.load(path) -> {name = Tensor}, metadata -- every tensor (zero-copy)"},
    {"save", st_save, 0,
     "vl.safetensors.save(path, {name = Tensor}, {metadata = {k = v}}) -- write atomically, reference layout"},
    {NULL, NULL, 0, NULL}};

static const vlua_Reg npy_regs[] = {
    {"load", npy_load, 0, "vl.npy.load(path) -> Tensor -- a NumPy .npy file (v1-v3, C or Fortran order; no pickles)"},
    {"save", npy_save, 0, "vl.npy.save(path, x) -- write x as NumPy writes .npy (v1.0), atomically"},
    {NULL, NULL, 0, NULL}};

void vlua_open_io(lua_State *L) {
  vlua_register(L, io_regs);
  register_sub(L, "safetensors", safetensors_regs);
  register_sub(L, "npy", npy_regs);
  if (luaL_newmetatable(L, SAFETENSORS_MT)) {
    luaL_setfuncs(L, st_meta_methods, 0);
    luaL_newlib(L, st_methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}
