/*
** bind_dock.h — the vl.dock userdata shared by the docking bindings:
** Molecule (bind_dock.c owns its metatable and __gc) and Scorer.
** bind_dock_mol.c makes Molecules from prepared ligands, bind_dock_search.c
** reads both; they go through these functions, never the layout.
*/
#ifndef VLUA_BIND_DOCK_H
#define VLUA_BIND_DOCK_H

#include "../ops/dock/molecule.h"
#include "../ops/dock/scoring.h"
#include "bind.h"

/* The Molecule at idx (a Lua error if it is not one, or was freed). */
vl_dock_mol *vlua_dock_check_mol(lua_State *L, int idx);
/* The Scorer at idx (likewise). */
vl_dock_scorer *vlua_dock_check_scorer(lua_State *L, int idx);
/* Push m as a Molecule; the userdata owns it (freed by __gc). */
void vlua_dock_push_mol(lua_State *L, vl_dock_mol *m);
/* Push Vina's VL_DOCK_NTERMS term sums as {gauss1, gauss2, repulsion,
   hydrophobic, hbond}. */
void vlua_dock_push_terms(lua_State *L, const double *terms);

#endif
