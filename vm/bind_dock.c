/*
** bind_dock.c — Lua binding of ops/dock (molecules, Vina scoring, grid
** maps, local optimisation) as the table vl.dock. The friendlier layer
** (dock.receptor, dock.score, dock.local_only ...) is stdlib/vl/dock.lua.
**
**   vl.dock.read_receptor(path)              -> Molecule
**   vl.dock.read_ligands(path)               -> {Molecule, ...} (one per MODEL)
**   vl.dock.scorer(rec, box, {weights})      -> Scorer; box = {center = {x,y,z},
**                                               size = {x,y,z}, spacing = 0.375}
**   vl.dock.pair_terms(xs1, xs2, r)          -> {5 terms}, {5 d/dr}
**   mol:info() mol:atoms() mol:bonds() mol:torsions() mol:pairs()
**   mol:coords() -> [n,3] float64 tensor (the molecule's atom order)
**   mol:pose_coords(pos, q, tors) -> [n,3];  mol:pose_gradient(xyz, dxyz) -> {g}
**   sc:score(lig, {coords, method, unbound}) -> energy table
**   sc:energy(lig, coords, {method, slope}) -> inter, intra, dE/dxyz [n,3]
**   sc:pose_energy(lig, pos, q, tors, {method}) -> e, {gradient}
**   sc:grids(lig | {types} | nil)  sc:grid_value(type, {x,y,z}) -> e, {g}
**   sc:local_opt(lig, {pos, q, tors, method = "grid", score_method = "vina",
**                max_steps, rounds}) -> score table + coords, pos, q, tors, evals
** Indices (atoms, nodes) are 1-based; methods are "vina" (Vina's tables,
** the default), "exact" (analytic) and "grid" (maps).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ops/dock/io.h"
#include "bind_dock.h"

#define MOL_MT "vl.dock.Molecule"
#define SCORER_MT "vl.dock.Scorer"

typedef struct mol_box {
  vl_dock_mol *m; /* owned: a single malloc'ed molecule */
} mol_box;

typedef struct scorer_box {
  vl_dock_scorer *s;
} scorer_box;

vl_dock_mol *vlua_dock_check_mol(lua_State *L, int idx) {
  mol_box *b = luaL_checkudata(L, idx, MOL_MT);
  if (!b->m) luaL_error(L, "dock: molecule was freed");
  return b->m;
}

vl_dock_scorer *vlua_dock_check_scorer(lua_State *L, int idx) {
  scorer_box *b = luaL_checkudata(L, idx, SCORER_MT);
  if (!b->s) luaL_error(L, "dock: scorer was freed");
  return b->s;
}

void vlua_dock_push_mol(lua_State *L, vl_dock_mol *m) {
  mol_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->m = m;
  luaL_setmetatable(L, MOL_MT);
}

static int mol_gc(lua_State *L) {
  mol_box *b = luaL_checkudata(L, 1, MOL_MT);
  vl_dock_mol_free(b->m);
  b->m = NULL;
  return 0;
}

static int scorer_gc(lua_State *L) {
  scorer_box *b = luaL_checkudata(L, 1, SCORER_MT);
  vl_dock_scorer_free(b->s);
  b->s = NULL;
  return 0;
}

static int l_read_receptor(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_dock_mol *m;
  vlua_check(L, vl_dock_read_receptor(path, &m));
  vlua_dock_push_mol(L, m);
  return 1;
}

static int l_read_ligands(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_dock_mol *ms;
  int n;
  vlua_check(L, vl_dock_read_ligands(path, &ms, &n));
  /* hand each molecule its own allocation so each userdata owns one */
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    vl_dock_mol *m = malloc(sizeof *m); /* owned by the userdata */
    if (!m) {
      vl_dock_mols_free(ms, n);
      return luaL_error(L, "dock: out of memory");
    }
    *m = ms[i];
    memset(&ms[i], 0, sizeof ms[i]);
    vlua_dock_push_mol(L, m);
    lua_rawseti(L, -2, i + 1);
  }
  vl_dock_mols_free(ms, n);
  return 1;
}

/* ---- helpers ---- */

/* Zeroed scratch memory owned by a userdata left on the stack (freed by
   the collector, so a Lua error in between leaks nothing). */
static void *scratch(lua_State *L, size_t bytes) {
  void *p = lua_newuserdatauv(L, bytes ? bytes : 1, 0);
  memset(p, 0, bytes ? bytes : 1);
  return p;
}

static void setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}
static void setstr(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static void push_vec(lua_State *L, const double *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* n numbers from a Lua table at idx (field name for messages) */
static void check_vec(lua_State *L, int idx, double *v, int n, const char *what) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "dock: %s must be a table of %d numbers, got %s", what, n, luaL_typename(L, idx));
  if ((int)lua_rawlen(L, idx) != n)
    luaL_error(L, "dock: %s must hold %d numbers, got %d", what, n, (int)lua_rawlen(L, idx));
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    if (!lua_isnumber(L, -1)) luaL_error(L, "dock: %s[%d] is not a number", what, i + 1);
    v[i] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
}

static vl_tensor *new_coords(lua_State *L, int n, const double *xyz) {
  int64_t shape[2] = {n, 3};
  vl_tensor *t = vl_empty(2, shape, VL_FLOAT64);
  if (!t) vlua_raise(L);
  if (n) memcpy(vl_data_ptr(t), xyz, (size_t)n * 3 * sizeof(double));
  return t;
}

/* coordinates [natoms, 3] from a tensor at idx -> doubles in a scratch
   userdata pushed on the stack */
static double *check_coords(lua_State *L, int idx, const vl_dock_mol *m, const char *op) {
  vl_tensor *t = vlua_checktensor(L, idx);
  if (t->ndim != 2 || t->shape[0] != m->natoms || t->shape[1] != 3) {
    if (t->ndim == 2)
      luaL_error(L, "%s: coordinates must be a [%d, 3] tensor (the molecule's atoms), got [%d, %d]", op, m->natoms,
                 (int)t->shape[0], (int)t->shape[1]);
    luaL_error(L, "%s: coordinates must be a [%d, 3] tensor (the molecule's atoms), got a %d-d tensor", op, m->natoms, t->ndim);
  }
  vl_tensor *d = vl_to_dtype(t, VL_FLOAT64);
  if (!d) vlua_raise(L);
  vl_tensor *c = vl_contiguous(d);
  vl_tensor_release(d);
  if (!c) vlua_raise(L);
  double *out = scratch(L, (size_t)(m->natoms ? m->natoms : 1) * 3 * sizeof *out);
  if (!out) {
    vl_tensor_release(c);
    luaL_error(L, "%s: out of memory", op);
  }
  memcpy(out, vl_data_ptr(c), (size_t)m->natoms * 3 * sizeof *out);
  vl_tensor_release(c);
  return out;
}

static int method_from(lua_State *L, int opt, const char *op) {
  if (!opt) return VL_DOCK_VINA;
  int t = lua_getfield(L, opt, "method");
  int m = VL_DOCK_VINA;
  if (t != LUA_TNIL) {
    const char *s = lua_tostring(L, -1);
    if (t != LUA_TSTRING) luaL_error(L, "%s: option 'method' must be a string", op);
    if (strcmp(s, "vina") == 0) m = VL_DOCK_VINA;
    else if (strcmp(s, "exact") == 0) m = VL_DOCK_EXACT;
    else if (strcmp(s, "grid") == 0) m = VL_DOCK_GRID;
    else luaL_error(L, "%s: unknown method '%s' (expected vina, exact or grid)", op, s);
  }
  lua_pop(L, 1);
  return m;
}

static int opt_table(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  return lua_absindex(L, idx);
}

/* ---- molecule methods ---- */

static int mol_info(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  lua_newtable(L);
  setint(L, "natoms", m->natoms);
  setint(L, "nbonds", m->nbonds);
  setint(L, "ntorsions", m->nnodes > 0 ? m->nnodes - 1 : 0);
  setint(L, "npairs", m->npairs);
  setint(L, "torsdof", m->torsdof);
  setnum(L, "nrot", m->nrot);
  setnum(L, "rotors", m->rotors);
  setint(L, "model", m->model);
  setstr(L, "source", m->source);
  lua_pushboolean(L, m->is_ligand);
  lua_setfield(L, -2, "is_ligand");
  int heavy = 0;
  for (int i = 0; i < m->natoms; i++) heavy += m->atoms[i].el != VL_DOCK_EL_H;
  setint(L, "heavy_atoms", heavy);
  return 1;
}

static const char *const el_names[VL_DOCK_EL_COUNT] = {"H", "C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "Si", "At", "Met", "Dummy"};

static const char *el_name(int el) { return el >= 0 && el < VL_DOCK_EL_COUNT ? el_names[el] : "?"; }

static int mol_atoms(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  lua_createtable(L, m->natoms, 0);
  for (int i = 0; i < m->natoms; i++) {
    const vl_dock_atom *a = &m->atoms[i];
    lua_createtable(L, 0, 16);
    setstr(L, "name", a->name);
    setstr(L, "resname", a->resname);
    char ch[2] = {a->chain, 0};
    setstr(L, "chain", ch);
    setint(L, "resnum", a->resnum);
    setint(L, "serial", a->serial);
    setint(L, "line", a->line);
    setint(L, "order", a->order + 1);
    setint(L, "node", a->node + 1);
    setstr(L, "ad", a->type);
    setstr(L, "xs", vl_dock_xs_name(a->xs));
    setstr(L, "element", el_name(a->el));
    setnum(L, "charge", a->charge);
    setnum(L, "x", a->xyz[0]);
    setnum(L, "y", a->xyz[1]);
    setnum(L, "z", a->xyz[2]);
    lua_pushboolean(L, a->hetatm);
    lua_setfield(L, -2, "hetatm");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int mol_bonds(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  lua_createtable(L, m->nbonds, 0);
  for (int b = 0; b < m->nbonds; b++) {
    lua_createtable(L, 2, 1);
    lua_pushinteger(L, m->bonds[b].a + 1);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, m->bonds[b].b + 1);
    lua_rawseti(L, -2, 2);
    lua_pushboolean(L, m->bonds[b].rotatable);
    lua_setfield(L, -2, "rotatable");
    lua_rawseti(L, -2, b + 1);
  }
  return 1;
}

static int mol_pairs(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  lua_createtable(L, m->npairs, 0);
  for (int p = 0; p < m->npairs; p++) {
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, m->pairs[p].a + 1);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, m->pairs[p].b + 1);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, p + 1);
  }
  return 1;
}

static int mol_torsions(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  lua_createtable(L, m->nnodes, 0);
  for (int k = 0; k < m->nnodes; k++) {
    const vl_dock_node *n = &m->nodes[k];
    lua_createtable(L, 0, 6);
    setint(L, "parent", n->parent + 1); /* 0 for the root */
    setint(L, "first", n->begin + 1);
    setint(L, "last", n->end);
    setint(L, "axis_from", n->axis_from + 1);
    setint(L, "axis_to", n->axis_to + 1);
    /* every atom this torsion moves: its own and its descendants' */
    lua_newtable(L);
    int c = 0;
    for (int j = k; j < n->sub_end; j++)
      for (int i = m->nodes[j].begin; i < m->nodes[j].end; i++) {
        lua_pushinteger(L, i + 1);
        lua_rawseti(L, -2, ++c);
      }
    lua_setfield(L, -2, "moves");
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

static int mol_coords(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  double *xyz = scratch(L, (size_t)(m->natoms ? m->natoms : 1) * 3 * sizeof *xyz);
  if (!xyz) return luaL_error(L, "dock: out of memory");
  for (int i = 0; i < m->natoms; i++)
    for (int d = 0; d < 3; d++) xyz[3 * i + d] = m->atoms[i].xyz[d];
  vl_tensor *t = vl_empty(2, (int64_t[]){m->natoms, 3}, VL_FLOAT64);
  if (t && m->natoms) memcpy(vl_data_ptr(t), xyz, (size_t)m->natoms * 3 * sizeof *xyz);
  vlua_pushtensor(L, t);
  return 1;
}

/* mol:rmsd(other, {symmetry = true, max_automorphisms}) -> rmsd, automorphisms:
   heavy-atom RMSD in place to other (a Molecule with the same atoms in the
   same order, e.g. a docked pose read back, or [natoms, 3] coordinates),
   the minimum over the automorphisms of the bond graph (element and
   connectivity: PDBQT has no bond orders) unless symmetry = false. */
static int mol_rmsd(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  int opt = 0;
  if (!lua_isnoneornil(L, 3)) {
    if (!lua_istable(L, 3)) return luaL_error(L, "rmsd: options must be a table, got %s", luaL_typename(L, 3));
    opt = 3;
  }
  int sym = vlua_optbool(L, opt, "symmetry", 1);
  lua_Integer mx = vlua_optinteger(L, opt, "max_automorphisms", VL_RMSD_MAX_AUTOMORPHISMS);
  if (mx < 1) return luaL_error(L, "rmsd: option 'max_automorphisms' = %d (expected >= 1)", (int)(mx < -1000000000 ? -1000000000 : mx));
  size_t bytes = (size_t)(m->natoms ? m->natoms : 1) * 3 * sizeof(double);
  double *a = scratch(L, bytes), *b;
  if (!a) return luaL_error(L, "rmsd: out of memory");
  for (int i = 0; i < m->natoms; i++) memcpy(a + 3 * i, m->atoms[i].xyz, 3 * sizeof(double));
  if (luaL_testudata(L, 2, MOL_MT)) {
    vl_dock_mol *o = vlua_dock_check_mol(L, 2);
    if (o->natoms != m->natoms)
      return luaL_error(L, "rmsd: the other molecule has %d atoms, this one %d (expected the same molecule)", o->natoms,
                        m->natoms);
    for (int i = 0; i < m->natoms; i++)
      if (o->atoms[i].el != m->atoms[i].el)
        return luaL_error(L, "rmsd: atom %d is %s here and %s in the other molecule (expected the same atom order)", i + 1,
                          el_name(m->atoms[i].el), el_name(o->atoms[i].el));
    b = scratch(L, bytes);
    if (!b) return luaL_error(L, "rmsd: out of memory");
    for (int i = 0; i < m->natoms; i++) memcpy(b + 3 * i, o->atoms[i].xyz, 3 * sizeof(double));
  } else if (vlua_totensor(L, 2)) {
    b = check_coords(L, 2, m, "rmsd");
  } else {
    return luaL_error(L, "rmsd: expected a Molecule or [%d, 3] coordinates, got %s", m->natoms, luaL_typename(L, 2));
  }
  double r;
  long cnt;
  vlua_check(L, vl_dock_mol_rmsd(m, a, b, sym, (long)mx, &r, &cnt));
  lua_pushnumber(L, r);
  lua_pushinteger(L, cnt);
  return 2;
}

static void check_pose(lua_State *L, int idx, const vl_dock_mol *m, double *pos, double *q, double *tors) {
  check_vec(L, idx, pos, 3, "position");
  check_vec(L, idx + 1, q, 4, "orientation quaternion");
  int nt = m->nnodes - 1;
  if (nt > 0 || !lua_isnoneornil(L, idx + 2)) check_vec(L, idx + 2, tors, nt, "torsions");
}

static int mol_pose_identity(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  if (!m->is_ligand) return luaL_error(L, "pose_identity: %s is not a ligand", m->source);
  int nt = m->nnodes - 1;
  double pos[3], q[4], *tors = scratch(L, (size_t)(nt ? nt : 1) * sizeof *tors);
  if (!tors) return luaL_error(L, "dock: out of memory");
  vl_dock_pose_identity(m, pos, q, tors);
  push_vec(L, pos, 3);
  push_vec(L, q, 4);
  push_vec(L, tors, nt);
  return 3;
}

static int mol_pose_coords(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  if (!m->is_ligand) return luaL_error(L, "pose_coords: %s is not a ligand", m->source);
  int nt = m->nnodes - 1;
  double pos[3], q[4];
  double *tors = scratch(L, (size_t)(nt ? nt : 1) * sizeof *tors);
  double *xyz = scratch(L, (size_t)(m->natoms ? m->natoms : 1) * 3 * sizeof *xyz);
  if (!tors || !xyz) {
    return luaL_error(L, "dock: out of memory");
  }
  check_pose(L, 2, m, pos, q, tors);
  int st = vl_dock_pose_coords(m, pos, q, tors, xyz);
  vl_tensor *t = st ? NULL : new_coords(L, m->natoms, xyz);
  if (st) return vlua_raise(L);
  vlua_pushtensor(L, t);
  return 1;
}

static int mol_pose_gradient(lua_State *L) {
  vl_dock_mol *m = vlua_dock_check_mol(L, 1);
  if (!m->is_ligand) return luaL_error(L, "pose_gradient: %s is not a ligand", m->source);
  double *xyz = check_coords(L, 2, m, "pose_gradient");
  double *dx = check_coords(L, 3, m, "pose_gradient");
  int n = vl_dock_pose_size(m);
  double *g = scratch(L, (size_t)n * sizeof *g);
  int st = g ? vl_dock_pose_gradient(m, xyz, dx, g) : vl_error(VL_ENOMEM, "dock: out of memory");
  if (st) {
    return vlua_raise(L);
  }
  push_vec(L, g, n);
  return 1;
}

/* ---- scorer ---- */

static void check_box(lua_State *L, int idx, vl_dock_box *box) {
  idx = lua_absindex(L, idx);
  luaL_checktype(L, idx, LUA_TTABLE);
  double c[3], s[3], h = 0.375;
  lua_getfield(L, idx, "center");
  check_vec(L, -1, c, 3, "box.center");
  lua_pop(L, 1);
  lua_getfield(L, idx, "size");
  check_vec(L, -1, s, 3, "box.size");
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "spacing") != LUA_TNIL) {
    if (!lua_isnumber(L, -1)) luaL_error(L, "dock: box.spacing must be a number");
    h = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  vlua_check(L, vl_dock_box_init(box, c, s, h));
}

static int l_scorer(lua_State *L) {
  vl_dock_mol *rec = vlua_dock_check_mol(L, 1);
  vl_dock_box box;
  check_box(L, 2, &box);
  vl_dock_weights w;
  vl_dock_weights_default(&w);
  int opt = opt_table(L, 3);
  if (opt) {
    if (lua_getfield(L, opt, "weights") == LUA_TTABLE) {
      struct {
        const char *k;
        double *v;
      } f[] = {{"gauss1", &w.gauss1}, {"gauss2", &w.gauss2}, {"repulsion", &w.repulsion},
               {"hydrophobic", &w.hydrophobic}, {"hbond", &w.hbond}, {"rot", &w.rot}};
      for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        if (lua_getfield(L, -1, f[i].k) != LUA_TNIL) *f[i].v = luaL_checknumber(L, -1);
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  scorer_box *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->s = NULL;
  luaL_setmetatable(L, SCORER_MT);
  b->s = vl_dock_scorer_new(rec, &box, &w);
  if (!b->s) return vlua_raise(L);
  /* keep the receptor alive with the scorer */
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

void vlua_dock_push_terms(lua_State *L, const double *terms) {
  static const char *const names[VL_DOCK_NTERMS] = {"gauss1", "gauss2", "repulsion", "hydrophobic", "hbond"};
  lua_createtable(L, 0, VL_DOCK_NTERMS);
  for (int k = 0; k < VL_DOCK_NTERMS; k++) setnum(L, names[k], terms[k]);
}

static void push_energy(lua_State *L, const vl_dock_energy *e) {
  lua_createtable(L, 0, 10);
  setnum(L, "affinity", e->affinity);
  setnum(L, "inter", e->inter);
  setnum(L, "intra", e->intra);
  setnum(L, "unbound", e->unbound);
  setnum(L, "torsional", e->torsional);
  setnum(L, "nrot", e->nrot);
  vlua_dock_push_terms(L, e->terms);
  lua_setfield(L, -2, "terms");
  vlua_dock_push_terms(L, e->intra_terms);
  lua_setfield(L, -2, "intra_terms");
}

static int sc_score(lua_State *L) {
  vl_dock_scorer *s = vlua_dock_check_scorer(L, 1);
  vl_dock_mol *lig = vlua_dock_check_mol(L, 2);
  int opt = opt_table(L, 3);
  int method = method_from(L, opt, "score");
  double unbound = NAN;
  double *xyz = NULL;
  if (opt) {
    if (lua_getfield(L, opt, "unbound") != LUA_TNIL) unbound = luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, opt, "coords") != LUA_TNIL) {
      xyz = check_coords(L, -1, lig, "score"); /* pushes its scratch */
      lua_remove(L, -2);
    } else {
      lua_pop(L, 1);
    }
  }
  if (method == VL_DOCK_GRID) {
    int st = vl_dock_scorer_grids(s, lig, NULL, 0);
    if (st) {
      return vlua_raise(L);
    }
  }
  vl_dock_energy e;
  int st = vl_dock_score(s, lig, xyz, method, unbound, &e);
  if (st) return vlua_raise(L);
  push_energy(L, &e);
  return 1;
}

static int sc_energy(lua_State *L) {
  vl_dock_scorer *s = vlua_dock_check_scorer(L, 1);
  vl_dock_mol *lig = vlua_dock_check_mol(L, 2);
  int opt = opt_table(L, 4);
  int method = method_from(L, opt, "energy");
  double slope = 1e6;
  if (opt) {
    if (lua_getfield(L, opt, "slope") != LUA_TNIL) slope = luaL_checknumber(L, -1);
    lua_pop(L, 1);
  }
  double *xyz = check_coords(L, 3, lig, "energy");
  double *g = scratch(L, (size_t)(lig->natoms ? lig->natoms : 1) * 3 * sizeof *g);
  double ei = 0, ea = 0;
  int st = g ? VL_OK : vl_error(VL_ENOMEM, "dock energy: out of memory");
  if (!st && method == VL_DOCK_GRID) st = vl_dock_scorer_grids(s, lig, NULL, 0);
  if (!st) st = vl_dock_inter(s, lig, xyz, method, slope, &ei, NULL, g);
  if (!st) st = vl_dock_intra(s, lig, xyz, method == VL_DOCK_GRID ? VL_DOCK_VINA : method, &ea, NULL, g);
  vl_tensor *t = st ? NULL : new_coords(L, lig->natoms, g);
  if (st) return vlua_raise(L);
  lua_pushnumber(L, ei);
  lua_pushnumber(L, ea);
  vlua_pushtensor(L, t);
  return 3;
}

static int sc_pose_energy(lua_State *L) {
  vl_dock_scorer *s = vlua_dock_check_scorer(L, 1);
  vl_dock_mol *lig = vlua_dock_check_mol(L, 2);
  if (!lig->is_ligand) return luaL_error(L, "pose_energy: %s is not a ligand", lig->source);
  int opt = opt_table(L, 6);
  int method = method_from(L, opt, "pose_energy");
  int nt = lig->nnodes - 1, n = vl_dock_pose_size(lig);
  double pos[3], q[4];
  double *tors = scratch(L, (size_t)(nt ? nt : 1) * sizeof *tors);
  double *g = scratch(L, (size_t)n * sizeof *g);
  double *xyz = scratch(L, (size_t)lig->natoms * 3 * sizeof *xyz);
  if (!tors || !g || !xyz) {
    return luaL_error(L, "dock: out of memory");
  }
  check_pose(L, 3, lig, pos, q, tors);
  double e = 0;
  int st = VL_OK;
  if (method == VL_DOCK_GRID) st = vl_dock_scorer_grids(s, lig, NULL, 0);
  if (!st) st = vl_dock_pose_energy(s, lig, pos, q, tors, method, 1e6, &e, g, xyz);
  if (st) {
    return vlua_raise(L);
  }
  lua_pushnumber(L, e);
  push_vec(L, g, n);
  return 2;
}

static int xs_from_name(const char *s) {
  for (int t = 0; t < VL_DOCK_XS_COUNT; t++)
    if (strcmp(s, vl_dock_xs_name(t)) == 0) return t;
  return -1;
}

static int sc_grids(lua_State *L) {
  vl_dock_scorer *s = vlua_dock_check_scorer(L, 1);
  int st;
  if (lua_isnoneornil(L, 2)) {
    st = vl_dock_scorer_grids(s, NULL, NULL, 0);
  } else if (luaL_testudata(L, 2, MOL_MT)) {
    st = vl_dock_scorer_grids(s, vlua_dock_check_mol(L, 2), NULL, 0);
  } else {
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)lua_rawlen(L, 2), types[VL_DOCK_XS_COUNT];
    if (n > VL_DOCK_XS_COUNT) return luaL_error(L, "grids: at most %d types", VL_DOCK_XS_COUNT);
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, 2, i + 1);
      const char *nm = lua_tostring(L, -1);
      types[i] = nm ? xs_from_name(nm) : -1;
      if (types[i] < 0) return luaL_error(L, "grids: unknown X-Score type '%s' (expected C_H, C_P, N_P, ...)", nm ? nm : "?");
      lua_pop(L, 1);
    }
    st = vl_dock_scorer_grids(s, NULL, types, n);
  }
  vlua_check(L, st);
  lua_settop(L, 1);
  return 1;
}

static int sc_grid_value(lua_State *L) {
  vl_dock_scorer *s = vlua_dock_check_scorer(L, 1);
  const char *nm = luaL_checkstring(L, 2);
  int t = xs_from_name(nm);
  if (t < 0) return luaL_error(L, "grid_value: unknown X-Score type '%s'", nm);
  double p[3], e, g[3];
  check_vec(L, 3, p, 3, "point");
  vlua_check(L, vl_dock_grid_value(s, t, p, &e, g));
  lua_pushnumber(L, e);
  push_vec(L, g, 3);
  return 2;
}

static int sc_box(lua_State *L) {
  vl_dock_scorer *s = vlua_dock_check_scorer(L, 1);
  const vl_dock_box *b = vl_dock_scorer_box(s);
  lua_newtable(L);
  push_vec(L, b->center, 3);
  lua_setfield(L, -2, "center");
  push_vec(L, b->size, 3);
  lua_setfield(L, -2, "size");
  setnum(L, "spacing", b->spacing);
  push_vec(L, b->lo, 3);
  lua_setfield(L, -2, "lo");
  push_vec(L, b->hi, 3);
  lua_setfield(L, -2, "hi");
  double n[3] = {b->n[0], b->n[1], b->n[2]};
  push_vec(L, n, 3);
  lua_setfield(L, -2, "n");
  return 1;
}

static int sc_local_opt(lua_State *L) {
  vl_dock_scorer *s = vlua_dock_check_scorer(L, 1);
  vl_dock_mol *lig = vlua_dock_check_mol(L, 2);
  if (!lig->is_ligand) return luaL_error(L, "local_opt: %s is not a ligand", lig->source);
  int opt = opt_table(L, 3);
  vl_dock_opt o = {VL_DOCK_GRID, VL_DOCK_VINA, 0, 0, 0};
  if (opt) {
    lua_getfield(L, opt, "method");
    int has = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has) o.method = method_from(L, opt, "local_opt");
    if (lua_getfield(L, opt, "score_method") == LUA_TSTRING) {
      const char *sm = lua_tostring(L, -1);
      o.score_method = strcmp(sm, "vina") == 0 ? VL_DOCK_VINA : strcmp(sm, "exact") == 0 ? VL_DOCK_EXACT
                     : strcmp(sm, "grid") == 0 ? VL_DOCK_GRID : -1;
      if (o.score_method < 0) return luaL_error(L, "local_opt: unknown score_method '%s' (expected vina, exact or grid)", sm);
    }
    lua_pop(L, 1);
  }
  int nt = lig->nnodes - 1;
  double pos[3], q[4];
  double *tors = scratch(L, (size_t)(nt ? nt : 1) * sizeof *tors);
  double *xyz = scratch(L, (size_t)lig->natoms * 3 * sizeof *xyz);
  if (!tors || !xyz) {
    return luaL_error(L, "dock: out of memory");
  }
  vl_dock_pose_identity(lig, pos, q, tors);
  if (opt) {
    if (lua_getfield(L, opt, "max_steps") != LUA_TNIL) o.max_steps = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, opt, "rounds") != LUA_TNIL) o.rounds = (int)luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    if (lua_getfield(L, opt, "pos") != LUA_TNIL) check_vec(L, -1, pos, 3, "pos");
    lua_pop(L, 1);
    if (lua_getfield(L, opt, "q") != LUA_TNIL) check_vec(L, -1, q, 4, "q");
    lua_pop(L, 1);
    if (lua_getfield(L, opt, "tors") != LUA_TNIL) check_vec(L, -1, tors, nt, "tors");
    lua_pop(L, 1);
  }
  int st = VL_OK;
  if (o.method == VL_DOCK_GRID || o.score_method == VL_DOCK_GRID) st = vl_dock_scorer_grids(s, lig, NULL, 0);
  vl_dock_energy e;
  int evals = 0;
  if (!st) st = vl_dock_local_opt(s, lig, pos, q, tors, &o, xyz, &e, &evals);
  if (st) {
    return vlua_raise(L);
  }
  vl_tensor *t = new_coords(L, lig->natoms, xyz);
  push_energy(L, &e);
  vlua_pushtensor(L, t);
  lua_setfield(L, -2, "coords");
  push_vec(L, pos, 3);
  lua_setfield(L, -2, "pos");
  push_vec(L, q, 4);
  lua_setfield(L, -2, "q");
  push_vec(L, tors, nt);
  lua_setfield(L, -2, "tors");
  setint(L, "evals", evals);
  return 1;
}

static int l_pair_terms(lua_State *L) {
  const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
  double r = luaL_checknumber(L, 3);
  int t1 = xs_from_name(a), t2 = xs_from_name(b);
  if (t1 < 0 || t2 < 0) return luaL_error(L, "pair_terms: unknown X-Score type '%s'", t1 < 0 ? a : b);
  double t[VL_DOCK_NTERMS], d[VL_DOCK_NTERMS];
  vl_dock_pair_terms(t1, t2, r, t, d);
  push_vec(L, t, VL_DOCK_NTERMS);
  push_vec(L, d, VL_DOCK_NTERMS);
  return 2;
}

static int l_xs_radius(lua_State *L) {
  const char *a = luaL_checkstring(L, 1);
  int t = xs_from_name(a);
  if (t < 0) return luaL_error(L, "xs_radius: unknown X-Score type '%s'", a);
  lua_pushnumber(L, vl_dock_xs_radius(t));
  return 1;
}

static const luaL_Reg mol_methods[] = {
    {"info", mol_info},
    {"atoms", mol_atoms},
    {"bonds", mol_bonds},
    {"pairs", mol_pairs},
    {"torsions", mol_torsions},
    {"coords", mol_coords},
    {"pose_identity", mol_pose_identity},
    {"pose_coords", mol_pose_coords},
    {"pose_gradient", mol_pose_gradient},
    {"rmsd", mol_rmsd},
    {NULL, NULL},
};

static const luaL_Reg scorer_methods[] = {
    {"score", sc_score},
    {"energy", sc_energy},
    {"pose_energy", sc_pose_energy},
    {"grids", sc_grids},
    {"grid_value", sc_grid_value},
    {"box", sc_box},
    {"local_opt", sc_local_opt},
    {NULL, NULL},
};

static int mol_tostring(lua_State *L) {
  mol_box *b = luaL_checkudata(L, 1, MOL_MT);
  if (!b->m) lua_pushliteral(L, "dock.Molecule (freed)");
  else lua_pushfstring(L, "dock.Molecule(%s, %d atoms, %d torsions)", b->m->source, b->m->natoms, b->m->nnodes - 1);
  return 1;
}

static const vlua_Reg dock_funcs[] = {
    {"read_receptor", l_read_receptor, VLUA_FUNC, "vl.dock.read_receptor(path) -> Molecule -- rigid receptor PDBQT"},
    {"read_ligands", l_read_ligands, VLUA_FUNC, "vl.dock.read_ligands(path) -> {Molecule} -- ligand PDBQT, one per MODEL"},
    {"scorer", l_scorer, VLUA_FUNC, "vl.dock.scorer(rec, box, {weights}) -> Scorer -- Vina scoring in a box"},
    {"pair_terms", l_pair_terms, VLUA_FUNC, "vl.dock.pair_terms(xs1, xs2, r) -> terms, dterms -- Vina's 5 terms"},
    {"xs_radius", l_xs_radius, VLUA_FUNC, "vl.dock.xs_radius(xs) -> radius -- X-Score vdW radius"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_dock(lua_State *L) {
  if (luaL_newmetatable(L, MOL_MT)) {
    luaL_newlib(L, mol_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, mol_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, mol_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, mol_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SCORER_MT)) {
    luaL_newlib(L, scorer_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, scorer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, scorer_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  vlua_register_in(L, "dock", dock_funcs);
}
