/*
** bind_dock_mol.c — molecule files for docking in vl.dock (the scoring
** side is vm/bind_dock.c): SDF/MOL2/PDB readers giving Chem objects,
** ligand preparation to the Molecule type of bind_dock.c, PDBQT and SDF
** writers, symmetry-aware RMSD.
**
**   vl.dock.read_sdf(path) / parse_sdf(text[, name])    -> {Chem, ...}
**   vl.dock.sdf_reader(path)  -> iterator: for chem in vl.dock.sdf_reader(p) do
**   vl.dock.read_mol2(path) / parse_mol2(text[, name])  -> {Chem, ...}
**   vl.dock.read_pdb(path) / parse_pdb(text[, name])    -> Chem
**   chem:info() chem:atoms() chem:bonds() chem:props() chem:coords() -> [n,3] f64
**   chem:prepare() -> Molecule, map, info   (map[i] = Chem atom of Molecule
**                     atom i's file position, 0 for a placed hydrogen)
**   chem:pdbqt() -> text, info               (the prepared ligand as PDBQT)
**   vl.dock.write_pdbqt(path, mol, {poses = [P,n,3] | [n,3], scores = {{e, lb, ub}, ...}})
**   vl.dock.write_sdf(path, chem, {poses = [P,n,3] | [n,3], props = {{name = value}, ...}})
**   vl.dock.rmsd(chem, a, b, {symmetry = true, ignore_orders = false,
**                max_automorphisms = 100000}) -> rmsd, automorphisms visited
**
** Molecules (the prepared ligands) are bind_dock.c's userdata, made and read
** through bind_dock.h.
*/
#include <stdlib.h>
#include <string.h>

#include "../ops/dock/io.h"
#include "../ops/dock/ligprep.h"
#include "bind_dock.h"

#define CHEM_MT "vl.dock.Chem"
#define SDFR_MT "vl.dock.SdfReader"

typedef struct chem_box {
  vl_chem *c; /* one malloc'ed vl_chem */
} chem_box;

typedef struct sdfr_box {
  vl_sdf_reader *r;
} sdfr_box;

static vl_chem *check_chem(lua_State *L, int idx) {
  chem_box *b = luaL_checkudata(L, idx, CHEM_MT);
  if (!b->c) luaL_error(L, "dock: molecule was freed");
  return b->c;
}

/* takes over *c's contents */
static void push_chem(lua_State *L, vl_chem *c) {
  chem_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->c = NULL;
  luaL_setmetatable(L, CHEM_MT);
  vl_chem *h = malloc(sizeof *h);
  if (!h) {
    vl_chem_clear(c);
    luaL_error(L, "dock: out of memory");
  }
  *h = *c;
  memset(c, 0, sizeof *c);
  b->c = h;
}

static int chem_gc(lua_State *L) {
  chem_box *b = luaL_checkudata(L, 1, CHEM_MT);
  if (b->c) {
    vl_chem_clear(b->c);
    free(b->c);
    b->c = NULL;
  }
  return 0;
}

/* the array cs is owned by a guard while pushing so an error leaks nothing */
static int push_chem_array(lua_State *L, int st, vl_chem *cs, int n) {
  if (st) return vlua_raise(L);
  /* push_chem may raise on OOM: free the rest through a protected copy */
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    chem_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->c = NULL;
    luaL_setmetatable(L, CHEM_MT);
    vl_chem *h = malloc(sizeof *h);
    if (!h) {
      for (int j = i; j < n; j++) vl_chem_clear(&cs[j]);
      free(cs);
      return luaL_error(L, "dock: out of memory");
    }
    *h = cs[i];
    memset(&cs[i], 0, sizeof cs[i]);
    b->c = h;
    lua_rawseti(L, -2, i + 1);
  }
  free(cs);
  return 1;
}

static int l_read_sdf(lua_State *L) {
  vl_chem *cs;
  int n;
  int st = vl_sdf_read(luaL_checkstring(L, 1), &cs, &n);
  return push_chem_array(L, st, cs, n);
}

static int l_parse_sdf(lua_State *L) {
  size_t len;
  const char *t = luaL_checklstring(L, 1, &len);
  vl_chem *cs;
  int n;
  int st = vl_sdf_parse(t, len, luaL_optstring(L, 2, "<string>"), &cs, &n);
  return push_chem_array(L, st, cs, n);
}

static int l_read_mol2(lua_State *L) {
  vl_chem *cs;
  int n;
  int st = vl_mol2_read(luaL_checkstring(L, 1), &cs, &n);
  return push_chem_array(L, st, cs, n);
}

static int l_parse_mol2(lua_State *L) {
  size_t len;
  const char *t = luaL_checklstring(L, 1, &len);
  vl_chem *cs;
  int n;
  int st = vl_mol2_parse(t, len, luaL_optstring(L, 2, "<string>"), &cs, &n);
  return push_chem_array(L, st, cs, n);
}

static int l_read_pdb(lua_State *L) {
  vl_chem c;
  if (vl_pdb_read(luaL_checkstring(L, 1), &c)) return vlua_raise(L);
  push_chem(L, &c);
  return 1;
}

static int l_parse_pdb(lua_State *L) {
  size_t len;
  const char *t = luaL_checklstring(L, 1, &len);
  vl_chem c;
  if (vl_pdb_parse(t, len, luaL_optstring(L, 2, "<string>"), &c)) return vlua_raise(L);
  push_chem(L, &c);
  return 1;
}

/* ---- streaming SDF ---- */

static int sdfr_gc(lua_State *L) {
  sdfr_box *b = luaL_checkudata(L, 1, SDFR_MT);
  vl_sdf_close(b->r);
  b->r = NULL;
  return 0;
}

static int sdfr_next(lua_State *L) {
  sdfr_box *b = luaL_checkudata(L, lua_upvalueindex(1), SDFR_MT);
  if (!b->r) return 0;
  vl_chem c;
  memset(&c, 0, sizeof c);
  int got;
  if (vl_sdf_next(b->r, &c, &got)) return vlua_raise(L);
  if (!got) {
    vl_sdf_close(b->r);
    b->r = NULL;
    lua_pushnil(L);
    return 1;
  }
  push_chem(L, &c);
  return 1;
}

static int l_sdf_reader(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  sdfr_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->r = NULL;
  luaL_setmetatable(L, SDFR_MT);
  if (vl_sdf_open(path, &b->r)) return vlua_raise(L);
  lua_pushcclosure(L, sdfr_next, 1);
  return 1;
}

/* ---- Chem methods ---- */

static void setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}
static void setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}
static void setstr(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static int chem_info(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  lua_newtable(L);
  setint(L, "natoms", c->natoms);
  setint(L, "nbonds", c->nbonds);
  int heavy = 0;
  for (int i = 0; i < c->natoms; i++) heavy += c->atoms[i].z != 1;
  setint(L, "heavy_atoms", heavy);
  setstr(L, "title", c->title);
  setstr(L, "source", c->source);
  setint(L, "line", c->line);
  lua_pushboolean(L, c->has_bonds);
  lua_setfield(L, -2, "has_bonds");
  return 1;
}

static int chem_atoms(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  lua_createtable(L, c->natoms, 0);
  for (int i = 0; i < c->natoms; i++) {
    const vl_chem_atom *a = &c->atoms[i];
    lua_createtable(L, 0, 14);
    setstr(L, "element", vl_chem_element_symbol(a->z));
    setint(L, "atomic_number", a->z);
    setnum(L, "x", a->xyz[0]);
    setnum(L, "y", a->xyz[1]);
    setnum(L, "z", a->xyz[2]);
    setint(L, "charge", a->charge);
    setnum(L, "partial_charge", a->pcharge);
    setnum(L, "occupancy", a->occupancy);
    setstr(L, "name", a->name);
    setstr(L, "resname", a->resname);
    char ch[2] = {a->chain, 0}, al[2] = {a->altloc, 0};
    setstr(L, "chain", ch);
    setstr(L, "altloc", al);
    setint(L, "resnum", a->resnum);
    setint(L, "serial", a->serial);
    setint(L, "line", a->line);
    lua_pushboolean(L, a->aromatic);
    lua_setfield(L, -2, "aromatic");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int chem_bonds(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  lua_createtable(L, c->nbonds, 0);
  for (int k = 0; k < c->nbonds; k++) {
    lua_createtable(L, 3, 0);
    lua_pushinteger(L, c->bonds[k].a + 1);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, c->bonds[k].b + 1);
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, c->bonds[k].order);
    lua_rawseti(L, -2, 3);
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

static int chem_props(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  lua_createtable(L, 0, c->nprops);
  for (int k = 0; k < c->nprops; k++) setstr(L, c->props[k].name, c->props[k].value);
  return 1;
}

static int chem_coords(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  int64_t shape[2] = {c->natoms, 3};
  vl_tensor *t = vl_empty(2, shape, VL_FLOAT64);
  if (!t) return vlua_raise(L);
  double *d = vl_data_ptr(t);
  for (int i = 0; i < c->natoms; i++) memcpy(d + 3 * i, c->atoms[i].xyz, 3 * sizeof(double));
  vlua_pushtensor(L, t);
  return 1;
}

static void push_info(lua_State *L, const vl_dock_prep_info *inf) {
  lua_createtable(L, 0, 8);
  setint(L, "heavy", inf->heavy);
  setint(L, "polar_h", inf->polar_h);
  setint(L, "added_h", inf->added_h);
  setint(L, "merged_h", inf->merged_h);
  setint(L, "dropped", inf->dropped);
  setint(L, "torsions", inf->torsions);
  setint(L, "aromatic", inf->aromatic);
  lua_pushboolean(L, inf->bonds_perceived);
  lua_setfield(L, -2, "bonds_perceived");
}

static int chem_prepare(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  vl_dock_mol *m = malloc(sizeof *m);
  if (!m) return luaL_error(L, "prepare: out of memory");
  int *map = NULL;
  vl_dock_prep_info inf;
  if (vl_dock_ligprep(c, m, &map, &inf)) {
    free(m);
    return vlua_raise(L);
  }
  int n = m->natoms;
  vlua_dock_push_mol(L, m);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    int o = m->atoms[i].order;
    lua_pushinteger(L, o >= 0 && o < n && map[o] >= 0 ? map[o] + 1 : 0);
    lua_rawseti(L, -2, i + 1);
  }
  free(map);
  push_info(L, &inf);
  return 3;
}

static int chem_pdbqt(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  char *t;
  size_t len;
  vl_dock_prep_info inf;
  if (vl_dock_ligprep_pdbqt(c, &t, &len, NULL, NULL, &inf)) return vlua_raise(L);
  lua_pushlstring(L, t, len);
  free(t);
  push_info(L, &inf);
  return 2;
}

/* ---- writers and rmsd ---- */

/* [P, n, 3] or [n, 3] tensor -> scratch doubles (pushed on the stack) */
static double *check_poses(lua_State *L, int idx, int n, int *np, const char *op) {
  vl_tensor *t = vlua_checktensor(L, idx);
  int P;
  if (t->ndim == 2 && t->shape[0] == n && t->shape[1] == 3) P = 1;
  else if (t->ndim == 3 && t->shape[1] == n && t->shape[2] == 3 && t->shape[0] >= 1 && t->shape[0] <= 1000000)
    P = (int)t->shape[0];
  else
    return luaL_error(L, "%s: poses must be a [%d, 3] or [P, %d, 3] tensor (the molecule's atoms), got a %d-d tensor",
                      op, n, n, t->ndim),
           NULL;
  vl_tensor *d = vl_to_dtype(t, VL_FLOAT64);
  if (!d) vlua_raise(L);
  vl_tensor *c = vl_contiguous(d);
  vl_tensor_release(d);
  if (!c) vlua_raise(L);
  size_t bytes = (size_t)P * (size_t)n * 3 * sizeof(double);
  double *out = lua_newuserdatauv(L, bytes ? bytes : 1, 0);
  if (bytes) memcpy(out, vl_data_ptr(c), bytes);
  vl_tensor_release(c);
  *np = P;
  return out;
}

static int l_write_pdbqt(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_dock_mol *m = vlua_dock_check_mol(L, 2);
  int opt = lua_istable(L, 3) ? 3 : 0;
  int P = 1;
  double *xyz = NULL, *scores = NULL;
  if (opt && lua_getfield(L, opt, "poses") != LUA_TNIL) {
    xyz = check_poses(L, lua_gettop(L), m->natoms, &P, "write_pdbqt");
  }
  if (opt && lua_getfield(L, opt, "scores") != LUA_TNIL) {
    int si = lua_gettop(L);
    luaL_checktype(L, si, LUA_TTABLE);
    if ((int)lua_rawlen(L, si) != P)
      return luaL_error(L, "write_pdbqt: %d score rows for %d poses", (int)lua_rawlen(L, si), P);
    scores = lua_newuserdatauv(L, (size_t)P * 3 * sizeof(double), 0);
    for (int p = 0; p < P; p++) {
      lua_rawgeti(L, si, p + 1);
      for (int k = 0; k < 3; k++) {
        lua_rawgeti(L, -1, k + 1);
        scores[3 * p + k] = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0.0;
        if (k == 0 && !lua_isnumber(L, -1)) return luaL_error(L, "write_pdbqt: scores[%d][1] is not a number", p + 1);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
  }
  vlua_check(L, vl_dock_write_pdbqt(path, m, P, xyz, scores));
  return 0;
}

static int l_write_sdf(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  vl_chem *c = check_chem(L, 2);
  int opt = lua_istable(L, 3) ? 3 : 0;
  int P = 1;
  double *xyz = NULL;
  if (opt && lua_getfield(L, opt, "poses") != LUA_TNIL) xyz = check_poses(L, lua_gettop(L), c->natoms, &P, "write_sdf");
  /* props: {{name = value, ...}, ...} one table per pose, same keys */
  int nprops = 0;
  const char **names = NULL, **values = NULL;
  if (opt && lua_getfield(L, opt, "props") != LUA_TNIL) {
    int pi = lua_gettop(L);
    luaL_checktype(L, pi, LUA_TTABLE);
    if ((int)lua_rawlen(L, pi) != P)
      return luaL_error(L, "write_sdf: %d property tables for %d poses", (int)lua_rawlen(L, pi), P);
    /* keys of the first pose, sorted for a stable order */
    lua_rawgeti(L, pi, 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      nprops++;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    names = lua_newuserdatauv(L, (size_t)(P * nprops + 1) * sizeof *names, 0);
    values = lua_newuserdatauv(L, (size_t)(P * nprops + 1) * sizeof *values, 0);
    lua_rawgeti(L, pi, 1);
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "write_sdf: property names must be strings");
      names[k++] = lua_tostring(L, -2);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    for (int a = 1; a < nprops; a++) /* sort names */
      for (int b2 = a; b2 > 0 && strcmp(names[b2 - 1], names[b2]) > 0; b2--) {
        const char *t = names[b2];
        names[b2] = names[b2 - 1];
        names[b2 - 1] = t;
      }
    for (int p = 0; p < P; p++) {
      lua_rawgeti(L, pi, p + 1);
      luaL_checktype(L, -1, LUA_TTABLE);
      for (int j = 0; j < nprops; j++) {
        names[p * nprops + j] = names[j];
        lua_getfield(L, -1, names[j]);
        if (!lua_isstring(L, -1))
          return luaL_error(L, "write_sdf: pose %d has no string or number for property '%s'", p + 1, names[j]);
        values[p * nprops + j] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the string stays alive: it is in the table */
      }
      lua_pop(L, 1);
    }
  }
  vlua_check(L, vl_sdf_write(path, c, P, xyz, nprops, names, values));
  return 0;
}

static double *check_xyz(lua_State *L, int idx, int n, const char *what) {
  int P;
  double *x = check_poses(L, idx, n, &P, "rmsd");
  if (P != 1) luaL_error(L, "rmsd: %s must be a [%d, 3] tensor", what, n);
  return x;
}

static int l_rmsd(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  double *a = check_xyz(L, 2, c->natoms, "the first pose");
  double *b = check_xyz(L, 3, c->natoms, "the second pose");
  int opt = lua_istable(L, 4) ? 4 : 0;
  int sym = vlua_optbool(L, opt, "symmetry", 1);
  int ign = vlua_optbool(L, opt, "ignore_orders", 0);
  long mx = (long)vlua_optinteger(L, opt, "max_automorphisms", VL_RMSD_MAX_AUTOMORPHISMS);
  double r;
  long cnt;
  vlua_check(L, vl_chem_rmsd(c, a, b, sym, ign, mx, &r, &cnt));
  lua_pushnumber(L, r);
  lua_pushinteger(L, cnt);
  return 2;
}

/* chem:rmsd(other, {symmetry = true, ignore_orders = false, max_automorphisms})
   -> rmsd, automorphisms: vl.dock.rmsd from this molecule's coordinates to
   other's (a Chem with the same atoms in the same order, or [natoms, 3]). */
static int chem_rmsd(lua_State *L) {
  vl_chem *c = check_chem(L, 1);
  int opt = 0;
  if (!lua_isnoneornil(L, 3)) {
    if (!lua_istable(L, 3)) return luaL_error(L, "rmsd: options must be a table, got %s", luaL_typename(L, 3));
    opt = 3;
  }
  size_t bytes = (size_t)(c->natoms ? c->natoms : 1) * 3 * sizeof(double);
  double *a = lua_newuserdatauv(L, bytes, 0), *b;
  for (int i = 0; i < c->natoms; i++) memcpy(a + 3 * i, c->atoms[i].xyz, 3 * sizeof(double));
  if (luaL_testudata(L, 2, CHEM_MT)) {
    vl_chem *o = check_chem(L, 2);
    if (o->natoms != c->natoms)
      return luaL_error(L, "rmsd: the other molecule has %d atoms, this one %d (expected the same molecule)", o->natoms,
                        c->natoms);
    for (int i = 0; i < c->natoms; i++)
      if (o->atoms[i].z != c->atoms[i].z)
        return luaL_error(L, "rmsd: atom %d has atomic number %d here and %d in the other molecule (expected the same atom order)",
                          i + 1, c->atoms[i].z, o->atoms[i].z);
    b = lua_newuserdatauv(L, bytes, 0);
    for (int i = 0; i < c->natoms; i++) memcpy(b + 3 * i, o->atoms[i].xyz, 3 * sizeof(double));
  } else if (vlua_totensor(L, 2)) {
    b = check_xyz(L, 2, c->natoms, "the other pose");
  } else {
    return luaL_error(L, "rmsd: expected a Chem or [%d, 3] coordinates, got %s", c->natoms, luaL_typename(L, 2));
  }
  int sym = vlua_optbool(L, opt, "symmetry", 1);
  int ign = vlua_optbool(L, opt, "ignore_orders", 0);
  lua_Integer mx = vlua_optinteger(L, opt, "max_automorphisms", VL_RMSD_MAX_AUTOMORPHISMS);
  if (mx < 1) return luaL_error(L, "rmsd: option 'max_automorphisms' = %d (expected >= 1)", (int)(mx < -1000000000 ? -1000000000 : mx));
  double r;
  long cnt;
  vlua_check(L, vl_chem_rmsd(c, a, b, sym, ign, (long)mx, &r, &cnt));
  lua_pushnumber(L, r);
  lua_pushinteger(L, cnt);
  return 2;
}

static int chem_tostring(lua_State *L) {
  chem_box *b = luaL_checkudata(L, 1, CHEM_MT);
  if (!b->c) lua_pushliteral(L, "dock.Chem (freed)");
  else lua_pushfstring(L, "dock.Chem(%s, %d atoms, %d bonds)", b->c->title, b->c->natoms, b->c->nbonds);
  return 1;
}

static const luaL_Reg chem_methods[] = {
    {"info", chem_info},   {"atoms", chem_atoms},     {"bonds", chem_bonds}, {"props", chem_props},
    {"coords", chem_coords}, {"prepare", chem_prepare}, {"pdbqt", chem_pdbqt}, {"rmsd", chem_rmsd},
    {NULL, NULL},
};

static const vlua_Reg mol_funcs[] = {
    {"read_sdf", l_read_sdf, VLUA_FUNC, "vl.dock.read_sdf(path) -> {Chem} -- SDF/MOL V2000/V3000, all records"},
    {"parse_sdf", l_parse_sdf, VLUA_FUNC, "vl.dock.parse_sdf(text[, name]) -> {Chem} -- SDF from a string"},
    {"sdf_reader", l_sdf_reader, VLUA_FUNC, "vl.dock.sdf_reader(path) -> iterator -- one SDF record at a time"},
    {"read_mol2", l_read_mol2, VLUA_FUNC, "vl.dock.read_mol2(path) -> {Chem} -- TRIPOS MOL2"},
    {"parse_mol2", l_parse_mol2, VLUA_FUNC, "vl.dock.parse_mol2(text[, name]) -> {Chem} -- MOL2 from a string"},
    {"read_pdb", l_read_pdb, VLUA_FUNC, "vl.dock.read_pdb(path) -> Chem -- PDB ATOM/HETATM (first MODEL), CONECT"},
    {"parse_pdb", l_parse_pdb, VLUA_FUNC, "vl.dock.parse_pdb(text[, name]) -> Chem -- PDB from a string"},
    {"write_pdbqt", l_write_pdbqt, VLUA_FUNC,
     "vl.dock.write_pdbqt(path, mol, {poses, scores}) -- Vina-style PDBQT poses, atomic"},
    {"write_sdf", l_write_sdf, VLUA_FUNC, "vl.dock.write_sdf(path, chem, {poses, props}) -- SDF poses, atomic"},
    {"rmsd", l_rmsd, VLUA_FUNC,
     "vl.dock.rmsd(chem, a, b, {symmetry, ignore_orders, max_automorphisms}) -> rmsd, n -- heavy-atom RMSD"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_dock_mol(lua_State *L) {
  if (luaL_newmetatable(L, CHEM_MT)) {
    luaL_newlib(L, chem_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, chem_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, chem_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, chem_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SDFR_MT)) {
    lua_pushcfunction(L, sdfr_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, sdfr_gc);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  vlua_register_in(L, "dock", mol_funcs);
}
