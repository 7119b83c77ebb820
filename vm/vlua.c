/*
** vlua.c — the embedding API (vlua.h) and the pieces the CLI shares with
** it: the stdlib search path, help(), the traceback message handler,
** byte-size parsing.
**
** Every entry point that touches the Lua state runs its work inside
** lua_pcall, so no Lua error (or memory error) can reach the panic
** handler and abort the host.
**
** This file is also linked into vl.so (loaded by a stock lua5.4), where
** luaopen_vl calls vlua_add_stdlib_path: nothing here may depend on the
** CLI (readline, signals).
*/
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "../ops/vl.h"
#include "bind.h"
#include "vlua.h"

#define VLUA_ERR_OPEN_MAX 256    /* bytes kept for vlua_last_error(NULL) */
#define VLUA_HELP_WIDTH 78       /* columns help() wraps its name lists at */
#define VLUA_STDLIB_REL_COUNT 3  /* stdlib roots tried next to the anchor */

/* Stdlib roots relative to the directory of the binary / shared library. */
static const char *const stdlib_rel[VLUA_STDLIB_REL_COUNT] = {
    "../stdlib",           /* source tree: build/vlua -> stdlib/ */
    "../share/vlua",       /* installed: PREFIX/bin/vlua */
    "../../../share/vlua"  /* installed: PREFIX/lib/lua/5.4/vl.so */
};

/* ===================================================================== */
/* Lua heap with a cap                                                    */
/* ===================================================================== */

typedef struct vlua_Heap {
  size_t used;   /* bytes currently allocated by this state */
  size_t limit;  /* 0 = no cap */
} vlua_Heap;

typedef struct vlua_Warn {
  int on;    /* warnings shown (lua -W, warn("@on")) */
  int cont;  /* inside a multi-piece message */
} vlua_Warn;

struct vlua_State {
  vlua_Heap heap;      /* first member: the allocator's ud */
  vlua_Warn warn;
  lua_State *L;
  char *err;           /* last error text (malloc'd), NULL = none */
  int own_limit;       /* we set the process-wide tensor limit */
  size_t prev_limit;   /* ... and restore this on close */
};

static _Thread_local char open_error[VLUA_ERR_OPEN_MAX];

/* Lua's allocator contract: nsize == 0 frees; shrinking never fails. */
static void *heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  vlua_Heap *h = (vlua_Heap *)ud;
  void *p;
  if (ptr == NULL) osize = 0;  /* osize then encodes the object type */
  if (nsize == 0) {
    free(ptr);
    h->used -= osize;
    return NULL;
  }
  if (h->limit != 0 && nsize > osize) {
    size_t grow = nsize - osize;
    if (h->used > h->limit || grow > h->limit - h->used) return NULL;
  }
  p = realloc(ptr, nsize);
  if (p == NULL) return nsize <= osize ? ptr : NULL;
  h->used = h->used - osize + nsize;
  return p;
}

static void warn_fn(void *ud, const char *msg, int tocont) {
  vlua_Warn *w = (vlua_Warn *)ud;
  if (!w->cont && !tocont && msg[0] == '@') {  /* control message */
    if (strcmp(msg, "@on") == 0) w->on = 1;
    else if (strcmp(msg, "@off") == 0) w->on = 0;
    return;
  }
  if (w->on) {
    if (!w->cont) fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (!tocont) fputs("\n", stderr);
    fflush(stderr);
  }
  w->cont = tocont;
}

static int panic_fn(lua_State *L) {
  /* Only reachable by a host misusing vlua_lua_state outside lua_pcall. */
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "vlua: unprotected error in call to Lua API (%s)\n",
          msg ? msg : "error object is not a string");
  fflush(stderr);
  return 0;
}

/* ===================================================================== */
/* Shared helpers                                                         */
/* ===================================================================== */

int vlua_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int vlua_parse_size(const char *s, size_t *out) {
  static const struct {
    const char *suffix;
    unsigned long long mult;
  } units[] = {
      {"", 1ULL},        {"b", 1ULL},
      {"k", 1ULL << 10}, {"kb", 1ULL << 10}, {"kib", 1ULL << 10},
      {"m", 1ULL << 20}, {"mb", 1ULL << 20}, {"mib", 1ULL << 20},
      {"g", 1ULL << 30}, {"gb", 1ULL << 30}, {"gib", 1ULL << 30},
      {"t", 1ULL << 40}, {"tb", 1ULL << 40}, {"tib", 1ULL << 40},
  };
  char *end;
  unsigned long long v;
  size_t i;
  if (s == NULL || out == NULL) return -1;
  while (*s == ' ' || *s == '\t') s++;
  if (*s < '0' || *s > '9') return -1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno != 0) return -1;
  while (*end == ' ' || *end == '\t') end++;
  for (i = 0; i < sizeof units / sizeof units[0]; i++) {
    const char *a = end, *b = units[i].suffix;
    while (*a && *b && (*a | 0x20) == *b) a++, b++;
    while (*a == ' ' || *a == '\t') a++;
    if (*a == '\0' && *b == '\0') {
      if (v > (unsigned long long)SIZE_MAX / units[i].mult) return -1;
      *out = (size_t)(v * units[i].mult);
      return 0;
    }
  }
  return -1;
}

/* ===================================================================== */
/* Stdlib search path                                                     */
/* ===================================================================== */

/* Is `entry` (length n) one of the ';'-separated entries of `path`? */
static int path_has(const char *path, const char *entry, size_t n) {
  const char *p = path;
  while (*p) {
    const char *e = strchr(p, ';');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && memcmp(p, entry, n) == 0) return 1;
    if (!e) break;
    p = e + 1;
  }
  return 0;
}

/* Append one pattern to the buffer under construction (the string at the
   top of the stack, `acc`) unless `old` or the new part already has it. */
static void add_pattern(lua_State *L, const char *old, const char *pat, size_t n) {
  const char *acc = lua_tostring(L, -1);
  if (n == 0 || path_has(old, pat, n) || path_has(acc, pat, n)) return;
  if (acc[0] != '\0') {
    lua_pushliteral(L, ";");
    lua_pushlstring(L, pat, n);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, pat, n);
  }
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

void vlua_add_stdlib_path(lua_State *L, const char *anchor) {
  int top = lua_gettop(L);
  int noenv;
  const char *old;
  int pkg;
  luaL_checkstack(L, 8, "vlua_add_stdlib_path");
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (!lua_istable(L, -1) || lua_getfield(L, -1, LUA_LOADLIBNAME) != LUA_TTABLE) {
    lua_settop(L, top);  /* no package library: nothing to extend */
    return;
  }
  pkg = lua_gettop(L);
  lua_getfield(L, pkg, "path");
  old = lua_isstring(L, -1) ? lua_tostring(L, -1) : "";  /* anchored at pkg+1 */
  lua_getfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  noenv = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_pushliteral(L, "");  /* the accumulator, at pkg+2 */

  /* 1. VLUA_PATH entries. */
  if (!noenv) {
    const char *env = getenv("VLUA_PATH");
    while (env && *env) {
      const char *e = strchr(env, ';');
      size_t n = e ? (size_t)(e - env) : strlen(env);
      if (n > 0) {
        if (memchr(env, '?', n)) {
          add_pattern(L, old, env, n);
        } else {
          size_t m = n;
          while (m > 1 && env[m - 1] == '/') m--;
          lua_pushfstring(L, "%s/?.lua", lua_pushlstring(L, env, m));
          lua_replace(L, -2);
          lua_pushfstring(L, "%s/?/init.lua", lua_pushlstring(L, env, m));
          lua_replace(L, -2);
          /* stack: acc, pat1, pat2 */
          lua_rotate(L, -3, 2);  /* pat1, pat2, acc */
          add_pattern(L, old, lua_tostring(L, -3), lua_rawlen(L, -3));
          add_pattern(L, old, lua_tostring(L, -2), lua_rawlen(L, -2));
          lua_rotate(L, -3, 1);  /* acc, pat1, pat2 */
          lua_pop(L, 2);
        }
      }
      if (!e) break;
      env = e + 1;
    }
  }

  /* 2. stdlib directories next to the anchor. */
  {
    char exe[PATH_MAX], dir[PATH_MAX], cand[PATH_MAX], real[PATH_MAX];
    int ok = 0;
    if (anchor == NULL) {
      ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
      if (n > 0) exe[n] = '\0', ok = 1;
    } else if (realpath(anchor, exe) != NULL) {
      ok = 1;
    }
    if (ok) {
      char *slash = strrchr(exe, '/');
      size_t i;
      if (slash == NULL) ok = 0;
      else if (slash == exe) strcpy(dir, "/");
      else {
        memcpy(dir, exe, (size_t)(slash - exe));
        dir[slash - exe] = '\0';
      }
      for (i = 0; ok && i < VLUA_STDLIB_REL_COUNT; i++) {
        int w = snprintf(cand, sizeof cand, "%s/%s", dir, stdlib_rel[i]);
        if (w < 0 || (size_t)w >= sizeof cand) continue;
        if (realpath(cand, real) == NULL || !is_dir(real)) continue;
        lua_pushfstring(L, "%s/?.lua", real);
        lua_pushfstring(L, "%s/?/init.lua", real);
        lua_rotate(L, -3, 2);
        add_pattern(L, old, lua_tostring(L, -3), lua_rawlen(L, -3));
        add_pattern(L, old, lua_tostring(L, -2), lua_rawlen(L, -2));
        lua_rotate(L, -3, 1);
        lua_pop(L, 2);
      }
    }
  }

  /* 3. new entries first, then the old path. */
  if (lua_rawlen(L, -1) > 0) {
    if (old[0] != '\0') {
      lua_pushliteral(L, ";");
      lua_pushvalue(L, pkg + 1);
      lua_concat(L, 3);
    }
    lua_setfield(L, pkg, "path");
  }
  lua_settop(L, top);
}

/* ===================================================================== */
/* help()                                                                 */
/* ===================================================================== */

static void push_methods(lua_State *L) {
  luaL_getmetatable(L, VLUA_TENSOR_MT);
  if (lua_istable(L, -1) && lua_getfield(L, -1, "__index") == LUA_TTABLE) {
    lua_remove(L, -2);
    return;
  }
  lua_settop(L, lua_gettop(L) - (lua_istable(L, -2) ? 2 : 1));
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_METHODS);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted string keys of the table at idx (skipping "_"-prefixed ones);
   pushes a userdata holding the array (kept alive by the stack) and
   returns it; the strings stay anchored by the table. */
static const char **sorted_keys(lua_State *L, int idx, int functions_only, size_t *count) {
  size_t n = 0, cap = 0;
  const char **keys;
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_tostring(L, -2)[0] != '_' &&
        (!functions_only || lua_isfunction(L, -1)))
      cap++;
    lua_pop(L, 1);
  }
  keys = (const char **)lua_newuserdatauv(L, (cap ? cap : 1) * sizeof *keys, 0);
  lua_pushnil(L);
  while (n < cap && lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING && lua_tostring(L, -2)[0] != '_' &&
        (!functions_only || lua_isfunction(L, -1)))
      keys[n++] = lua_tostring(L, -2);
    lua_pop(L, 1);
  }
  qsort(keys, n, sizeof *keys, cmp_str);
  *count = n;
  return keys;
}

static void out(const char *s) { lua_writestring(s, strlen(s)); }

/* Write the string at the top of the stack and pop it. */
static void out_top(lua_State *L) {
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  lua_writestring(s, n);
  lua_pop(L, 1);
}

static void out_wrapped(const char **names, size_t n, const char *indent) {
  size_t col = 0, i, ind = strlen(indent);
  for (i = 0; i < n; i++) {
    size_t len = strlen(names[i]);
    if (col == 0) {
      out(indent);
      col = ind;
    } else if (col + 1 + len > VLUA_HELP_WIDTH) {
      out("\n");
      out(indent);
      col = ind;
    } else {
      out(" ");
      col++;
    }
    out(names[i]);
    col += len;
  }
  if (col) out("\n");
}

/* The doc string of the function at idx, pushed (or nil pushed). */
static int push_doc(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_DOCS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return 0;
  }
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  if (lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return 0;
  }
  return 1;
}

/* "sig -- text" -> "sig\n    text\n" */
static void out_doc(const char *doc) {
  const char *sep = strstr(doc, " -- ");
  if (sep) {
    lua_writestring(doc, (size_t)(sep - doc));
    out("\n    ");
    out(sep + 4);
  } else {
    out(doc);
  }
  out("\n");
}

static void help_tensor(lua_State *L, const vl_tensor *t) {
  char shape[VL_SHAPE_STR], stride[VL_SHAPE_STR];
  vl_shape_str(t->ndim, t->shape, shape);
  vl_shape_str(t->ndim, t->stride, stride);
  lua_pushfstring(L, "Tensor  shape %s  dtype %s  strides %s  offset %I\n", shape,
                  vl_dtype_name(t->dtype), stride, (lua_Integer)t->offset);
  out_top(L);
  lua_pushfstring(L, "  %I elements, %s, storage %I bytes%s\n", (lua_Integer)vl_numel(t),
                  vl_is_contiguous(t) ? "contiguous" : "not contiguous (a strided view)",
                  (lua_Integer)(t->storage ? t->storage->nbytes : 0),
                  t->grad_meta ? ", tracked by autograd" : "");
  out_top(L);
}

static const char help_intro[] =
    "vlua " VLUA_VERSION " -- Lua 5.4 with tensors: the `vl` library.\n"
    "  help(vl.matmul)  what a function does    help(x)      a tensor's shape, dtype, methods\n"
    "  help(vl)         every function of vl    help(\"add\")  look a name up in vl\n"
    "  x = vl.randn(2, 3)   x:sum()   y = x:t():matmul(x)   print(y)\n"
    "REPL: an expression prints its value; an unfinished statement continues on the\n"
    "next line (>>); TAB completes names (vl.ma<TAB>, x:<TAB>); Ctrl-C stops a running\n"
    "chunk or clears the line; Ctrl-D exits. History is kept in ~/.vlua_history.\n"
    "More: man vlua (the program), man vl (the library), man 3 vlua (embedding in C).\n";

/* Resolve a dotted name ("matmul", "vl.matmul", "string.format") for
   help("..."): looks in vl first, then in the globals. Pushes the value. */
static void resolve_name(lua_State *L, const char *name) {
  int pass;
  for (pass = 0; pass < 2; pass++) {
    const char *p = name;
    if (pass == 0) {
      if (lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_MODULE) != LUA_TTABLE) {
        lua_pop(L, 1);
        continue;
      }
    } else {
      lua_pushglobaltable(L);
    }
    while (p && !lua_isnil(L, -1)) {
      const char *dot = strchr(p, '.');
      size_t n = dot ? (size_t)(dot - p) : strlen(p);
      if (lua_istable(L, -1)) {
        lua_pushlstring(L, p, n);
        lua_rawget(L, -2);
      } else {
        lua_pushnil(L);
      }
      lua_remove(L, -2);
      p = dot ? dot + 1 : NULL;
    }
    if (!lua_isnil(L, -1)) return;
    lua_pop(L, 1);
  }
  lua_pushnil(L);
}

int vlua_help(lua_State *L) {
  vl_tensor *t;
  int type = lua_type(L, 1);
  lua_settop(L, type == LUA_TNONE ? 0 : 1);
  if (type == LUA_TSTRING) {
    const char *name = lua_tostring(L, 1);
    resolve_name(L, name);
    if (lua_isnil(L, -1)) {
      lua_pushfstring(L, "help: no function or value named '%s' in vl or the globals\n", name);
      out_top(L);
      return 0;
    }
    lua_replace(L, 1);
    type = lua_type(L, 1);
  }
  if (type == LUA_TNONE) {
    out(help_intro);
  } else if (type == LUA_TFUNCTION) {
    if (push_doc(L, 1)) {
      out_doc(lua_tostring(L, -1));
    } else {
      lua_Debug ar;
      lua_pushvalue(L, 1);
      lua_getinfo(L, ">S", &ar);
      if (ar.what[0] == 'C')
        out("a built-in (C) function without a vlua doc; see the Lua manual\n");
      else {
        lua_pushfstring(L, "a Lua function defined at %s:%d (no doc)\n", ar.short_src,
                        ar.linedefined);
        out_top(L);
      }
    }
  } else if (type == LUA_TUSERDATA && (t = vlua_totensor(L, 1)) != NULL) {
    help_tensor(L, t);
    push_methods(L);
    if (lua_istable(L, -1)) {
      size_t n;
      const char **names = sorted_keys(L, -1, 1, &n);
      out("Methods (x:name(...); help(\"name\") for one):\n");
      out_wrapped(names, n, "  ");
    }
  } else if (type == LUA_TTABLE) {
    size_t n, i;
    const char **names = sorted_keys(L, 1, 0, &n);
    for (i = 0; i < n; i++) {
      lua_getfield(L, 1, names[i]);
      lua_pushfstring(L, "  %s ", names[i]);
      out_top(L);
      if (strlen(names[i]) < 20) {
        static const char pad[] = "                    ";
        out(pad + strlen(names[i]));
      }
      if (lua_isfunction(L, -1) && push_doc(L, -1)) {
        const char *doc = lua_tostring(L, -1);
        const char *sep = strstr(doc, " -- ");
        out(sep ? sep + 4 : doc);
      } else {
        lua_pushstring(L, luaL_typename(L, -1));
        out_top(L);
        lua_pushnil(L);
      }
      lua_pop(L, 2);
      out("\n");
    }
    if (n == 0) out("  (an empty table)\n");
  } else {
    luaL_tolstring(L, 1, NULL);
    lua_pushfstring(L, "%s: %s\n", luaL_typename(L, 1), lua_tostring(L, -1));
    out_top(L);
  }
  fflush(stdout);
  return 0;
}

/* ===================================================================== */
/* The embedding API                                                      */
/* ===================================================================== */

static void set_error(vlua_State *V, const char *msg) {
  free(V->err);
  V->err = msg ? strdup(msg) : NULL;
}

static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

void vlua_interrupt(vlua_State *V) {
  if (V == NULL) return;
  lua_sethook(V->L, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

/* After a protected call: keep its error message (or clear the last one),
   empty the stack, and pass the status on. */
static int call_result(vlua_State *V, lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    set_error(V, msg ? msg : "(error object is not a string)");
    if (V->err == NULL) status = VLUA_ERRMEM;
  } else {
    set_error(V, NULL);
  }
  lua_settop(L, 0);
  return status;
}

/* Run f(ud) protected with a traceback; on error keep the message. */
static int protected_call(vlua_State *V, lua_CFunction f, void *ud) {
  lua_State *L = V->L;
  int status;
  lua_settop(L, 0);
  lua_pushcfunction(L, vlua_msghandler);
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  status = lua_pcall(L, 1, 0, 1);
  return call_result(V, L, status);
}

typedef struct OpenArgs {
  const vlua_Options *opts;
} OpenArgs;

static int p_open(lua_State *L) {
  OpenArgs *a = (OpenArgs *)lua_touserdata(L, 1);
  unsigned flags = a->opts ? a->opts->flags : 0;
  if (flags & VLUA_OPT_NO_ENV) {
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  vlua_add_stdlib_path(L, NULL);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_vl);
  lua_setfield(L, -2, "vl");
  lua_pop(L, 1);
  if (!(flags & VLUA_OPT_NO_VL)) {
    luaL_requiref(L, "vl", luaopen_vl, !(flags & VLUA_OPT_NO_GLOBALS));
    lua_pop(L, 1);
  }
  if (!(flags & VLUA_OPT_NO_GLOBALS)) {
    lua_pushcfunction(L, vlua_help);
    lua_setglobal(L, "help");
  }
  return 0;
}

vlua_State *vlua_open(const vlua_Options *opts) {
  vlua_State *V = (vlua_State *)calloc(1, sizeof *V);
  OpenArgs args;
  int status;
  open_error[0] = '\0';
  if (V == NULL) {
    snprintf(open_error, sizeof open_error, "vlua_open: not enough memory");
    return NULL;
  }
  V->heap.limit = opts ? opts->memory_limit : 0;
  V->L = lua_newstate(heap_alloc, &V->heap);
  if (V->L == NULL) {
    snprintf(open_error, sizeof open_error,
             "vlua_open: cannot create the Lua state (not enough memory%s)",
             V->heap.limit ? " within the memory limit" : "");
    free(V);
    return NULL;
  }
  lua_atpanic(V->L, panic_fn);
  lua_setwarnf(V->L, warn_fn, &V->warn);
  if (opts && opts->memory_limit) {
    V->own_limit = 1;
    V->prev_limit = vl_memory_limit();
    vl_set_memory_limit(opts->memory_limit);
  }
  if (opts && opts->num_threads > 0) vl_set_num_threads(opts->num_threads);
  args.opts = opts;
  status = protected_call(V, p_open, &args);
  if (status != LUA_OK) {
    snprintf(open_error, sizeof open_error, "vlua_open: %s",
             V->err ? V->err : "not enough memory");
    vlua_close(V);
    return NULL;
  }
  return V;
}

void vlua_close(vlua_State *V) {
  if (V == NULL) return;
  lua_close(V->L);  /* luaopen_vl's pressure hook unhooks itself here (__gc) */
  if (V->own_limit) vl_set_memory_limit(V->prev_limit);
  free(V->err);
  free(V);
}

const char *vlua_last_error(const vlua_State *V) {
  if (V == NULL) return open_error;
  return V->err ? V->err : "";
}

lua_State *vlua_lua_state(vlua_State *V) { return V ? V->L : NULL; }

/* Run the function just loaded (at the top) with a traceback. */
static int finish_chunk(vlua_State *V, int status) {
  lua_State *L = V->L;
  if (status == LUA_OK) {
    int base = lua_gettop(L);  /* the chunk */
    lua_pushcfunction(L, vlua_msghandler);
    lua_insert(L, base);
    status = lua_pcall(L, 0, 0, base);
  }
  if (lua_gethook(L) == stop_hook) lua_sethook(L, NULL, 0, 0);  /* a late interrupt */
  return call_result(V, L, status);
}

static int arg_error(vlua_State *V, const char *msg) {
  if (V) set_error(V, msg);
  return VLUA_ERRARG;
}

int vlua_dostring(vlua_State *V, const char *code, const char *chunkname) {
  char name[VLUA_ERR_OPEN_MAX];
  if (V == NULL) return VLUA_ERRARG;
  if (code == NULL) return arg_error(V, "vlua_dostring: code is NULL");
  lua_settop(V->L, 0);
  if (chunkname == NULL) {
    chunkname = "=vlua";
  } else if (chunkname[0] != '=' && chunkname[0] != '@') {
    snprintf(name, sizeof name, "=%s", chunkname);  /* shown as is in messages */
    chunkname = name;
  }
  /* lua_load is protected: a syntax or memory error comes back as status. */
  return finish_chunk(V, luaL_loadbuffer(V->L, code, strlen(code), chunkname));
}

/* luaL_loadfile pushes strings outside lua_load's protection: run it in a
   protected call that returns (status, chunk-or-message). */
static int p_loadfile(lua_State *L) {
  const char *path = (const char *)lua_touserdata(L, 1);
  int status = luaL_loadfile(L, path);
  lua_pushinteger(L, status);
  lua_insert(L, -2);
  return 2;
}

int vlua_dofile(vlua_State *V, const char *path) {
  lua_State *L;
  int status;
  if (V == NULL) return VLUA_ERRARG;
  L = V->L;
  lua_settop(L, 0);
  lua_pushcfunction(L, p_loadfile);
  lua_pushlightuserdata(L, (void *)path);
  status = lua_pcall(L, 1, 2, 0);
  if (status == LUA_OK) {
    status = (int)lua_tointeger(L, 1);
    lua_remove(L, 1);
  }
  return finish_chunk(V, status);
}

/* --- dotted names ---------------------------------------------------- */

static int valid_name(const char *name) {
  const char *p = name;
  if (name == NULL || *name == '\0') return 0;
  for (; *p; p++)
    if (*p == '.' && (p == name || p[1] == '.' || p[1] == '\0')) return 0;
  return 1;
}

/* Set the value at the top as the dotted global `name` (pops it). */
static void set_dotted(lua_State *L, const char *name) {
  int v = lua_gettop(L);
  const char *dot;
  lua_pushglobaltable(L);
  while ((dot = strchr(name, '.')) != NULL) {
    lua_pushlstring(L, name, (size_t)(dot - name));
    lua_pushvalue(L, -1);
    if (lua_gettable(L, -3) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_settable(L, -5);
    } else if (!lua_istable(L, -1)) {
      luaL_error(L, "'%s' is a %s, not a table", lua_tostring(L, -2), luaL_typename(L, -1));
    }
    lua_remove(L, -2);  /* key */
    lua_remove(L, -2);  /* parent */
    name = dot + 1;
  }
  lua_pushvalue(L, v);
  lua_setfield(L, -2, name);
  lua_settop(L, v - 1);
}

/* Push the value of the dotted global `name` (nil when a part is missing). */
static void get_dotted(lua_State *L, const char *name) {
  const char *dot;
  lua_pushglobaltable(L);
  for (;;) {
    dot = strchr(name, '.');
    lua_pushlstring(L, name, dot ? (size_t)(dot - name) : strlen(name));
    lua_gettable(L, -2);
    lua_remove(L, -2);
    if (!dot) return;
    if (lua_isnil(L, -1)) return;
    name = dot + 1;
  }
}

/* --- host functions -------------------------------------------------- */

typedef struct SetArgs {
  const char *name;
  lua_CFunction f;
  vlua_HostFunction host;
  void *ud;
  vl_tensor *t;
  double number;
  int kind;  /* SET_* */
} SetArgs;

enum { SET_CFUNCTION, SET_CALLBACK, SET_TENSOR, SET_NUMBER };

static int host_trampoline(lua_State *L) {
  vlua_HostFunction *fn = (vlua_HostFunction *)lua_touserdata(L, lua_upvalueindex(1));
  void *ud = lua_touserdata(L, lua_upvalueindex(2));
  vlua_Value args[VLUA_MAX_HOST_ARGS];
  vlua_Value res;
  char err[VL_ERROR_MAX];
  int n = lua_gettop(L), i, rc;
  if (n > VLUA_MAX_HOST_ARGS)
    return luaL_error(L, "host function: %d arguments given, at most %d accepted", n,
                      VLUA_MAX_HOST_ARGS);
  memset(args, 0, sizeof args);
  for (i = 0; i < n; i++) {
    vlua_Value *a = &args[i];
    switch (lua_type(L, i + 1)) {
      case LUA_TNIL: a->type = VLUA_TNIL; break;
      case LUA_TBOOLEAN:
        a->type = VLUA_TBOOLEAN;
        a->number = lua_toboolean(L, i + 1);
        break;
      case LUA_TNUMBER:
        a->type = VLUA_TNUMBER;
        a->number = (double)lua_tonumber(L, i + 1);
        break;
      case LUA_TSTRING:
        a->type = VLUA_TSTRING;
        a->string = lua_tolstring(L, i + 1, &a->len);
        break;
      default:
        a->tensor = vlua_totensor(L, i + 1);
        a->type = a->tensor ? VLUA_TTENSOR : VLUA_TOTHER;
        break;
    }
  }
  memset(&res, 0, sizeof res);
  err[0] = '\0';
  rc = (*fn)(ud, n, args, &res, err, sizeof err);
  if (rc != 0) {
    if (res.type == VLUA_TTENSOR) vl_tensor_release(res.tensor);
    err[sizeof err - 1] = '\0';
    return luaL_error(L, "%s", err[0] ? err : "host function failed");
  }
  switch (res.type) {
    case VLUA_TBOOLEAN: lua_pushboolean(L, res.number != 0); return 1;
    case VLUA_TNUMBER: lua_pushnumber(L, (lua_Number)res.number); return 1;
    case VLUA_TSTRING:
      if (res.string == NULL) return 0;
      lua_pushlstring(L, res.string, res.len ? res.len : strlen(res.string));
      return 1;
    case VLUA_TTENSOR:
      if (res.tensor == NULL) return luaL_error(L, "host function returned a NULL tensor");
      vlua_pushtensor(L, res.tensor);
      return 1;
    default: return 0;
  }
}

static int p_set(lua_State *L) {
  SetArgs *a = (SetArgs *)lua_touserdata(L, 1);
  switch (a->kind) {
    case SET_CFUNCTION: lua_pushcfunction(L, a->f); break;
    case SET_CALLBACK: {
      vlua_HostFunction *slot =
          (vlua_HostFunction *)lua_newuserdatauv(L, sizeof(vlua_HostFunction), 0);
      *slot = a->host;
      lua_pushlightuserdata(L, a->ud);
      lua_pushcclosure(L, host_trampoline, 2);
      break;
    }
    case SET_TENSOR:
      vl_tensor_retain(a->t);
      vlua_pushtensor(L, a->t);
      break;
    default: lua_pushnumber(L, (lua_Number)a->number); break;
  }
  set_dotted(L, a->name);
  return 0;
}

static int do_set(vlua_State *V, SetArgs *a, const char *fn) {
  if (V == NULL) return VLUA_ERRARG;
  if (!valid_name(a->name)) {
    char msg[VLUA_ERR_OPEN_MAX];
    snprintf(msg, sizeof msg, "%s: bad name '%s' (expected a name like \"x\" or \"host.f\")",
             fn, a->name ? a->name : "(null)");
    return arg_error(V, msg);
  }
  return protected_call(V, p_set, a);
}

int vlua_register_function(vlua_State *V, const char *name, lua_CFunction f) {
  SetArgs a = {name, f, NULL, NULL, NULL, 0, SET_CFUNCTION};
  if (f == NULL) return arg_error(V, "vlua_register_function: function is NULL");
  return do_set(V, &a, "vlua_register_function");
}

int vlua_register_callback(vlua_State *V, const char *name, vlua_HostFunction fn, void *ud) {
  SetArgs a = {name, NULL, fn, ud, NULL, 0, SET_CALLBACK};
  if (fn == NULL) return arg_error(V, "vlua_register_callback: function is NULL");
  return do_set(V, &a, "vlua_register_callback");
}

int vlua_push_tensor(vlua_State *V, const char *name, vl_tensor *t) {
  SetArgs a = {name, NULL, NULL, NULL, t, 0, SET_TENSOR};
  if (t == NULL) return arg_error(V, "vlua_push_tensor: tensor is NULL");
  return do_set(V, &a, "vlua_push_tensor");
}

int vlua_set_number(vlua_State *V, const char *name, double value) {
  SetArgs a = {name, NULL, NULL, NULL, NULL, value, SET_NUMBER};
  return do_set(V, &a, "vlua_set_number");
}

typedef struct GetArgs {
  const char *name;
  const char *fn;
  vl_tensor *t;
  double number;
  int want_tensor;
} GetArgs;

static int p_get(lua_State *L) {
  GetArgs *a = (GetArgs *)lua_touserdata(L, 1);
  get_dotted(L, a->name);
  if (a->want_tensor) {
    vl_tensor *t = vlua_totensor(L, -1);
    if (t == NULL)
      return luaL_error(L, "%s: '%s' is a %s, not a tensor", a->fn, a->name,
                        luaL_typename(L, -1));
    vl_tensor_retain(t);
    a->t = t;
  } else {
    int isnum;
    lua_Number v = lua_tonumberx(L, -1, &isnum);
    if (!isnum)
      return luaL_error(L, "%s: '%s' is a %s, not a number", a->fn, a->name,
                        luaL_typename(L, -1));
    a->number = (double)v;
  }
  return 0;
}

static int do_get(vlua_State *V, GetArgs *a) {
  if (V == NULL) return VLUA_ERRARG;
  if (!valid_name(a->name)) {
    char msg[VLUA_ERR_OPEN_MAX];
    snprintf(msg, sizeof msg, "%s: bad name '%s'", a->fn, a->name ? a->name : "(null)");
    return arg_error(V, msg);
  }
  return protected_call(V, p_get, a);
}

vl_tensor *vlua_to_tensor(vlua_State *V, const char *name) {
  GetArgs a = {name, "vlua_to_tensor", NULL, 0, 1};
  if (do_get(V, &a) != VLUA_OK) {
    vl_tensor_release(a.t);
    return NULL;
  }
  return a.t;
}

int vlua_get_number(vlua_State *V, const char *name, double *out) {
  GetArgs a = {name, "vlua_get_number", NULL, 0, 0};
  int status;
  if (out == NULL) return arg_error(V, "vlua_get_number: out is NULL");
  status = do_get(V, &a);
  if (status == VLUA_OK) *out = a.number;
  return status;
}
