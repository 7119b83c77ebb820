/*
** lvl.c — luaopen_vl: builds the `vl` module from every bind_*.c file.
** The same entry serves the vlua binary (preloaded), C hosts (libvlua)
** and a stock lua5.4 doing require "vl" (vl.so).
*/
#include <dlfcn.h>
#include <pthread.h>

#include <omp.h>

#include "bind.h"
#include "vlua.h"

/* When an allocation would pass the memory limit, collect garbage in the
   Lua state that opened vl first: dead tensors may be holding the memory.
   Only from that state's own thread and outside parallel regions, where
   calling into Lua is safe. */
typedef struct pressure_owner {
  lua_State *main;
  pthread_t thread;
} pressure_owner;

static void collect_on_pressure(void *ctx, size_t wanted) {
  (void)wanted;
  pressure_owner *o = ctx;
  if (o && o->main && !omp_in_parallel() && pthread_equal(o->thread, pthread_self()))
    lua_gc(o->main, LUA_GCCOLLECT, 0);
}

/* Runs when the state closes: the hook must not outlive it. */
static int release_pressure_owner(lua_State *L) {
  pressure_owner *o = lua_touserdata(L, 1);
  vl_pressure_hook hook;
  void *ctx;
  vl_get_pressure_hook(&hook, &ctx);
  if (ctx == o) vl_set_pressure_hook(NULL, NULL);
  o->main = NULL;
  return 0;
}

static void install_pressure_hook(lua_State *L) {
  pressure_owner *o = lua_newuserdatauv(L, sizeof *o, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  o->main = lua_tothread(L, -1);
  lua_pop(L, 1);
  o->thread = pthread_self();
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, release_pressure_owner);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "vl.pressure_owner"); /* lives as long as the state */
  vl_set_pressure_hook(collect_on_pressure, o);
}

/* Where this code was loaded from (vl.so, libvlua.so or the binary). */
static void add_stdlib_path(lua_State *L) {
  Dl_info info;
  const char *anchor = NULL;
  if (dladdr((void *)(uintptr_t)luaopen_vl, &info) && info.dli_fname) anchor = info.dli_fname;
  vlua_add_stdlib_path(L, anchor);
}

LUAMOD_API int luaopen_vl(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_MODULE) == LUA_TTABLE) return 1; /* opened already */
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, VLUA_REG_MODULE);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, VLUA_REG_METHODS);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, VLUA_REG_DOCS);

  vlua_open_tensor(L);
  vlua_open_elementwise(L);
  vlua_open_reduce(L);
  vlua_open_linalg(L);
  vlua_open_index(L);
  vlua_open_random(L);
  vlua_open_autograd(L);
  vlua_open_conv(L);
  vlua_open_conv3d(L);
  vlua_open_io(L);
  vlua_open_nn(L);
  vlua_open_interpolate(L);
  vlua_open_video(L);
  vlua_open_attention(L);
  vlua_open_ssm(L);
  vlua_open_fft(L);
  vlua_open_audio(L);
  vlua_open_media(L);
  vlua_open_flow(L);
  vlua_open_dock(L);
  vlua_open_dock_mol(L);
  vlua_open_dock_search(L);

  lua_pushliteral(L, VL_VERSION);
  lua_setfield(L, -2, "version");
  lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_METHODS);
  lua_setfield(L, -2, "Tensor"); /* the methods table, for extension from Lua */
  install_pressure_hook(L);
  add_stdlib_path(L);
  return 1;
}
