/*
** bind_dock_search.c — Vina's global search (ops/dock/search.c) in vl.dock.
** The friendlier dock.dock(rec, lig, box, opts) is stdlib/vl/dock.lua.
**
**   vl.dock.search(scorer, lig, {exhaustiveness = 8, seed = 0, num_modes = 9,
**                  energy_range = 3, min_rmsd = 1, threads, max_evals,
**                  steps_scale = 0.6, ftol = 1e-3, vina_bfgs = false, local_steps,
**                  refine = true})
**     -> {mode, ...}, info
**   mode = {affinity, inter, intra, unbound, search_energy, rmsd_lb, rmsd_ub,
**           terms, intra_terms = {gauss1, gauss2, repulsion, hydrophobic, hbond},
**           coords = [n,3] float64 (the Molecule's atom order), pos, q, tors}
**   info = {evals, steps, runs}
**
** The Molecule and Scorer userdata layouts and metatable names are
** bind_dock.c's, duplicated here (as bind_dock_mol.c does).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/dock/search.h"
#include "bind_dock.h"

static void push_vec(lua_State *L, const double *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static void setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static const char *const known_opts[] = {"exhaustiveness", "seed",        "num_modes", "energy_range", "min_rmsd", "threads",
                                          "max_evals",      "steps_scale", "local_steps", "refine",     "ftol", "vina_bfgs", NULL};

static int opt_int(lua_State *L, int opt, const char *k, lua_Integer def, lua_Integer lo, lua_Integer hi) {
  lua_Integer v = vlua_optinteger(L, opt, k, def);
  if (v < lo || v > hi)
    luaL_error(L, "dock.search: option '%s' = %d out of range (expected %d..%d)", k, (int)(v < -2000000000 ? -2000000000 : v > 2000000000 ? 2000000000 : v),
               (int)lo, (int)hi);
  return (int)v;
}

static double opt_pos(lua_State *L, int opt, const char *k, double def) {
  double v = vlua_optnumber(L, opt, k, def);
  if (!(v > 0) || !isfinite(v)) luaL_error(L, "dock.search: option '%s' = %f (expected a finite number > 0)", k, v);
  return v;
}

static int l_search(lua_State *L) {
  vl_dock_scorer *scorer = vlua_dock_check_scorer(L, 1);
  const vl_dock_mol *lig = vlua_dock_check_mol(L, 2);
  if (!lig->is_ligand) return luaL_error(L, "dock.search: %s is a receptor (expected a ligand)", lig->source);
  int opt = 0;
  if (!lua_isnoneornil(L, 3)) {
    if (!lua_istable(L, 3)) return luaL_error(L, "dock.search: options must be a table, got %s", luaL_typename(L, 3));
    opt = 3;
    lua_pushnil(L);
    while (lua_next(L, opt)) {
      lua_pop(L, 1);
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "dock.search: option names must be strings");
      const char *k = lua_tostring(L, -1);
      int ok = 0;
      for (int i = 0; known_opts[i] && !ok; i++) ok = strcmp(k, known_opts[i]) == 0;
      if (!ok)
        return luaL_error(L, "dock.search: unknown option '%s' (expected exhaustiveness, seed, num_modes, energy_range, "
                             "min_rmsd, threads, max_evals, steps_scale, local_steps, refine, ftol or vina_bfgs)", k);
    }
  }
  vl_dock_search_opt o;
  vl_dock_search_opt_default(&o);
  o.exhaustiveness = opt_int(L, opt, "exhaustiveness", 8, 1, 100000);
  o.seed = (uint64_t)vlua_optinteger(L, opt, "seed", 0);
  o.num_modes = opt_int(L, opt, "num_modes", 9, 1, 1000);
  o.energy_range = vlua_optnumber(L, opt, "energy_range", 3);
  if (!(o.energy_range >= 0) || !isfinite(o.energy_range))
    return luaL_error(L, "dock.search: option 'energy_range' = %f (expected a finite number >= 0)", o.energy_range);
  o.min_rmsd = opt_pos(L, opt, "min_rmsd", 1);
  o.threads = opt_int(L, opt, "threads", 0, 0, 4096);
  lua_Integer me = vlua_optinteger(L, opt, "max_evals", 0);
  if (me < 0) return luaL_error(L, "dock.search: option 'max_evals' = %d (expected >= 0, 0 for no limit)", (int)me);
  o.max_evals = (long)me;
  o.steps_scale = opt_pos(L, opt, "steps_scale", o.steps_scale);
  if (o.steps_scale > 1000) return luaL_error(L, "dock.search: option 'steps_scale' = %f (expected at most 1000)", o.steps_scale);
  o.local_steps = opt_int(L, opt, "local_steps", 0, 0, 100000);
  o.refine = vlua_optbool(L, opt, "refine", 1);
  o.ftol = vlua_optnumber(L, opt, "ftol", o.ftol);
  if (!(o.ftol >= 0) || !isfinite(o.ftol)) return luaL_error(L, "dock.search: option 'ftol' = %f (expected a finite number >= 0)", o.ftol);
  o.vina_bfgs = vlua_optbool(L, opt, "vina_bfgs", 0);
  vl_dock_result *r = NULL;
  vlua_check(L, vl_dock_search(scorer, lig, &o, &r));
  /* build the Lua result; r is freed on every path below */
  int n = r->natoms;
  lua_createtable(L, r->nmodes, 0);
  for (int i = 0; i < r->nmodes; i++) {
    const vl_dock_mode *md = &r->modes[i];
    lua_createtable(L, 0, 12);
    setnum(L, "affinity", md->affinity);
    setnum(L, "inter", md->inter);
    setnum(L, "intra", md->intra);
    setnum(L, "unbound", md->unbound);
    setnum(L, "search_energy", md->search_e);
    vlua_dock_push_terms(L, md->terms);
    lua_setfield(L, -2, "terms");
    vlua_dock_push_terms(L, md->intra_terms);
    lua_setfield(L, -2, "intra_terms");
    setnum(L, "rmsd_lb", md->rmsd_lb);
    setnum(L, "rmsd_ub", md->rmsd_ub);
    push_vec(L, md->pos, 3);
    lua_setfield(L, -2, "pos");
    push_vec(L, md->q, 4);
    lua_setfield(L, -2, "q");
    push_vec(L, md->tors, r->ntors);
    lua_setfield(L, -2, "tors");
    vl_tensor *t = vl_empty(2, (int64_t[]){n, 3}, VL_FLOAT64);
    if (!t) {
      vl_dock_result_free(r);
      return vlua_raise(L);
    }
    memcpy(vl_data_ptr(t), md->xyz, (size_t)n * 3 * sizeof(double));
    vlua_pushtensor(L, t);
    lua_setfield(L, -2, "coords");
    lua_rawseti(L, -2, i + 1);
  }
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, r->evals);
  lua_setfield(L, -2, "evals");
  lua_pushinteger(L, r->steps);
  lua_setfield(L, -2, "steps");
  lua_pushinteger(L, o.exhaustiveness);
  lua_setfield(L, -2, "runs");
  vl_dock_result_free(r);
  return 2;
}

static const vlua_Reg search_funcs[] = {
    {"search", l_search, VLUA_FUNC,
     "vl.dock.search(scorer, lig, {exhaustiveness, seed, num_modes, energy_range, threads, ...}) -> modes, info -- Vina's "
     "Monte Carlo docking"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_dock_search(lua_State *L) { vlua_register_in(L, "dock", search_funcs); }
