/*
** vlua.h — embedding API: run vlua scripts from a C program.
**
**   vlua_State *V = vlua_open(NULL);            // std libs + vl + stdlib path
**   vlua_push_tensor(V, "x", t);                // global x = t (retained)
**   if (vlua_dostring(V, "y = x * 2", "host") != VLUA_OK)
**     fprintf(stderr, "%s\n", vlua_last_error(V));
**   vl_tensor *y = vlua_to_tensor(V, "y");      // new reference or NULL
**   vlua_close(V);
**
** Nothing here exits or aborts the host: every Lua error, syntax error or
** memory-cap error comes back as a status and vlua_last_error() text
** (message + stack traceback). See vlua(3).
**
** Compile with `pkg-config --cflags --libs vlua` (it brings Lua's headers).
*/
#ifndef VLUA_H
#define VLUA_H

#include <stddef.h>

#include <lua.h>

#ifndef VL_H
#include "vl.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define VLUA_VERSION VL_VERSION

/* Status codes (the values match Lua's LUA_OK, LUA_ERRRUN, ...). */
#define VLUA_OK 0
#define VLUA_ERRRUN 2     /* runtime error (includes tensor memory-cap errors) */
#define VLUA_ERRSYNTAX 3  /* the chunk does not compile */
#define VLUA_ERRMEM 4     /* the Lua heap hit the memory cap / malloc failed */
#define VLUA_ERRERR 5     /* error while handling an error */
#define VLUA_ERRFILE 6    /* a script file could not be opened or read */
#define VLUA_ERRARG 7     /* bad argument to a vlua_ function (NULL name, ...) */

/* vlua_Options.flags */
#define VLUA_OPT_NO_ENV 1      /* ignore VLUA_PATH, LUA_PATH, LUA_CPATH (like lua -E) */
#define VLUA_OPT_NO_GLOBALS 2  /* do not set the globals `vl` and `help` */
#define VLUA_OPT_NO_VL 4       /* do not load vl at open (require "vl" still works) */

typedef struct vlua_Options {
  /* Bytes; 0 = no cap. Caps this interpreter's Lua heap (a runaway table
     gets "not enough memory") and, process-wide, tensor storage through
     vl_set_memory_limit (an oversized tensor is a Lua error). */
  size_t memory_limit;
  int num_threads;  /* > 0: vl_set_num_threads(num_threads); 0: unchanged */
  unsigned flags;   /* VLUA_OPT_* */
} vlua_Options;

typedef struct vlua_State vlua_State;

/* A new interpreter: Lua standard libraries, `vl` loaded (global `vl`,
   package.preload.vl, require "vl" gives the same table), the global
   `help`, and package.path extended by vlua_add_stdlib_path(L, NULL).
   opts may be NULL (defaults: no cap, threads unchanged). Returns NULL
   when it cannot be created; vlua_last_error(NULL) then says why. */
vlua_State *vlua_open(const vlua_Options *opts);
/* Close the interpreter (releases every tensor it holds). NULL is fine. */
void vlua_close(vlua_State *V);

/* Run a chunk of code / a script file. Return VLUA_OK or an error status;
   on error vlua_last_error(V) gives the message and a stack traceback.
   chunkname may be NULL ("=vlua"). vlua_dofile(V, NULL) reads stdin. */
int vlua_dostring(vlua_State *V, const char *code, const char *chunkname);
int vlua_dofile(vlua_State *V, const char *path);
/* The last error of V ("" when none). The text stays valid until the next
   vlua_ call on V. With V == NULL: why the last vlua_open on this thread
   failed. */
const char *vlua_last_error(const vlua_State *V);

/* Host functions. `name` may be dotted ("host.log"): missing tables are
   created. Returns VLUA_OK or an error status. */
int vlua_register_function(vlua_State *V, const char *name, lua_CFunction f);

/* Plain-C flavour: no Lua API needed in the callback. */
typedef enum vlua_Type {
  VLUA_TNIL = 0,
  VLUA_TBOOLEAN,
  VLUA_TNUMBER,
  VLUA_TSTRING,
  VLUA_TTENSOR,
  VLUA_TOTHER  /* tables, functions, ...: passed as their type only */
} vlua_Type;

typedef struct vlua_Value {
  vlua_Type type;
  double number;       /* VLUA_TNUMBER; VLUA_TBOOLEAN: 0 or 1 */
  const char *string;  /* VLUA_TSTRING (args: valid during the call; result: copied) */
  size_t len;          /* string length */
  vl_tensor *tensor;   /* VLUA_TTENSOR (args: borrowed; result: a reference handed over) */
} vlua_Value;

/* Called with the Lua arguments converted to vlua_Values. Set *result
   (it starts as nil) and return 0, or write a message into err (errsize
   bytes) and return non-zero to raise it as a Lua error. */
typedef int (*vlua_HostFunction)(void *ud, int nargs, const vlua_Value *args,
                                 vlua_Value *result, char *err, size_t errsize);
#define VLUA_MAX_HOST_ARGS 16  /* most arguments passed to a vlua_HostFunction */
int vlua_register_callback(vlua_State *V, const char *name, vlua_HostFunction fn, void *ud);

/* Tensors and numbers across the boundary (names may be dotted). */
int vlua_push_tensor(vlua_State *V, const char *name, vl_tensor *t);  /* retains t */
vl_tensor *vlua_to_tensor(vlua_State *V, const char *name);  /* new reference, or NULL + error */
int vlua_set_number(vlua_State *V, const char *name, double value);
int vlua_get_number(vlua_State *V, const char *name, double *out);

/* The underlying Lua state, for advanced hosts. Errors raised with it
   outside a protected call go to Lua's panic handler: use lua_pcall. */
lua_State *vlua_lua_state(vlua_State *V);

/* Ask the running chunk to stop with the error "interrupted!" at its next
   Lua instruction. Async-signal-safe: may be called from a SIGINT handler
   or another thread. */
void vlua_interrupt(vlua_State *V);

/* --------------------------------------------------------------------- */
/* Pieces shared by the vlua CLI, vl.so and hosts using a raw lua_State.  */
/* --------------------------------------------------------------------- */

/* The module entry point: require "vl" (vm/lvl.c). */
LUAMOD_API int luaopen_vl(lua_State *L);

/* Prepend to package.path, in this order, skipping patterns already there:
   the entries of env VLUA_PATH (';'-separated Lua path patterns or plain
   directories; skipped when the registry field LUA_NOENV is true), then
   the stdlib directories found next to `anchor` (the path of the vlua
   binary or of vl.so; NULL = /proc/self/exe), those that exist of
     <dir>/../stdlib            (in the source tree: build/vlua)
     <dir>/../share/vlua        (installed: PREFIX/bin/vlua)
     <dir>/../../../share/vlua  (installed: PREFIX/lib/lua/5.4/vl.so)
   each as <root>/?.lua;<root>/?/init.lua. Never raises except on memory
   errors. */
void vlua_add_stdlib_path(lua_State *L, const char *anchor);

/* help(x): prints the doc of a bound function (registry "vl.docs"), the
   shape/dtype/strides and methods of a tensor, the fields of a table, or
   an introduction when called without arguments. */
int vlua_help(lua_State *L);

/* A lua_pcall message handler: message + stack traceback (as lua.c). */
int vlua_msghandler(lua_State *L);

/* Parse a byte count: "1048576", "512K", "64M", "2G" (also KB/KiB, MB, ...,
   case-insensitive). Returns 0 and sets *out, or -1 on a malformed or
   overflowing value. */
int vlua_parse_size(const char *s, size_t *out);

#ifdef __cplusplus
}
#endif

#endif /* VLUA_H */
