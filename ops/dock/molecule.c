/*
** molecule.c — bonds, X-Score typing, intramolecular pairs and poses of
** docking molecules, following AutoDock Vina 1.2.3's model (Trott & Olson
** 2010; Vina's model.cpp describes the same rules):
**
**  - bonds: two atoms that cannot move relative to each other (same rigid
**    body, or a branch atom and its axis atoms) closer than 1.1 x the sum
**    of their covalent radii, unless a third such atom is closer to both;
**  - X-Score types: C is C_P when bonded to a heteroatom (not C/A/H/HD),
**    else C_H; N and O are acceptors when typed NA/OA, donors when bonded
**    to an HD (or a metal); metals are Met_D; H is not scored;
**  - intramolecular pairs: atoms that can move relative to each other and
**    are not within 3 bonds, counting bonds with Vina's depth-first walk
**    (which visits an atom once, at the first depth it reaches it, and so
**    can miss short paths around 5-membered rings: kept on purpose, as
**    Vina's scores depend on it);
**  - Nrot (of 1 + w Nrot): half a rotor per end of a rotatable (torsion
**    axis) bond whose other end is a heavy atom with more than one heavy
**    neighbour, so a torsion between two inner heavy atoms counts 1 and
**    one to a terminal OH / NH2 counts 1/2; TORSDOF is not used.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "molecule.h"

/* ---- type tables ---- */

static const char *const ad_names[VL_DOCK_AD_COUNT] = {
    "C", "A", "N", "O", "P", "S", "H", "F", "I", "NA", "OA", "SA", "HD", "Mg", "Mn", "Zn",
    "Ca", "Fe", "Cl", "Br", "Si", "At", "G0", "G1", "G2", "G3", "CG0", "CG1", "CG2", "CG3", "W"};

static const double ad_covalent[VL_DOCK_AD_COUNT] = {
    0.77, 0.77, 0.75, 0.73, 1.06, 1.02, 0.37, 0.71, 1.33, 0.75, 0.73, 1.02, 0.37, 1.30, 1.39, 1.31,
    1.74, 1.25, 0.99, 1.14, 1.11, 1.44, 0.77, 0.77, 0.77, 0.77, 0.77, 0.77, 0.77, 0.77, 0.00};

#define MAX_COVALENT 1.74   /* largest of ad_covalent (Ca) */
#define METAL_COVALENT 1.75 /* metals AutoDock does not type */

static const int ad_el[VL_DOCK_AD_COUNT] = {
    VL_DOCK_EL_C, VL_DOCK_EL_C, VL_DOCK_EL_N, VL_DOCK_EL_O, VL_DOCK_EL_P, VL_DOCK_EL_S,
    VL_DOCK_EL_H, VL_DOCK_EL_F, VL_DOCK_EL_I, VL_DOCK_EL_N, VL_DOCK_EL_O, VL_DOCK_EL_S,
    VL_DOCK_EL_H, VL_DOCK_EL_Met, VL_DOCK_EL_Met, VL_DOCK_EL_Met, VL_DOCK_EL_Met, VL_DOCK_EL_Met,
    VL_DOCK_EL_Cl, VL_DOCK_EL_Br, VL_DOCK_EL_Si, VL_DOCK_EL_At,
    VL_DOCK_EL_Dummy, VL_DOCK_EL_Dummy, VL_DOCK_EL_Dummy, VL_DOCK_EL_Dummy,
    VL_DOCK_EL_C, VL_DOCK_EL_C, VL_DOCK_EL_C, VL_DOCK_EL_C, VL_DOCK_EL_Dummy};

static const char *const xs_names[VL_DOCK_XS_COUNT + 1] = {
    "C_H", "C_P", "N_P", "N_D", "N_A", "N_DA", "O_P", "O_D", "O_A", "O_DA", "S_P", "P_P",
    "F_H", "Cl_H", "Br_H", "I_H", "Si", "At", "Met_D", "none"};

static const double xs_radii[VL_DOCK_XS_COUNT] = {
    1.9, 1.9, 1.8, 1.8, 1.8, 1.8, 1.7, 1.7, 1.7, 1.7, 2.0, 2.1, 1.5, 1.8, 2.0, 2.2, 2.2, 2.3, 1.2};

const char *vl_dock_ad_name(int ad) { return ad >= 0 && ad < VL_DOCK_AD_COUNT ? ad_names[ad] : "metal"; }
const char *vl_dock_xs_name(int xs) { return xs >= 0 && xs <= VL_DOCK_XS_COUNT ? xs_names[xs] : "none"; }

int vl_dock_ad_from_name(const char *name) {
  for (int i = 0; i < VL_DOCK_AD_COUNT; i++)
    if (strcmp(name, ad_names[i]) == 0) return i;
  if (strcmp(name, "Se") == 0) return VL_DOCK_AD_S; /* Vina's one equivalence */
  return VL_DOCK_AD_COUNT;
}

double vl_dock_xs_radius(int xs) { return xs >= 0 && xs < VL_DOCK_XS_COUNT ? xs_radii[xs] : 0.0; }
double vl_dock_ad_covalent_radius(int ad) { return ad >= 0 && ad < VL_DOCK_AD_COUNT ? ad_covalent[ad] : METAL_COVALENT; }

int vl_dock_xs_is_hydrophobic(int xs) {
  return xs == VL_DOCK_XS_C_H || xs == VL_DOCK_XS_F_H || xs == VL_DOCK_XS_Cl_H || xs == VL_DOCK_XS_Br_H ||
         xs == VL_DOCK_XS_I_H;
}
int vl_dock_xs_is_acceptor(int xs) {
  return xs == VL_DOCK_XS_N_A || xs == VL_DOCK_XS_N_DA || xs == VL_DOCK_XS_O_A || xs == VL_DOCK_XS_O_DA;
}
int vl_dock_xs_is_donor(int xs) {
  return xs == VL_DOCK_XS_N_D || xs == VL_DOCK_XS_N_DA || xs == VL_DOCK_XS_O_D || xs == VL_DOCK_XS_O_DA ||
         xs == VL_DOCK_XS_Met_D;
}

static int is_hydrogen(const vl_dock_atom *a) { return a->ad == VL_DOCK_AD_H || a->ad == VL_DOCK_AD_HD; }
static int is_heteroatom(const vl_dock_atom *a) {
  if (a->ad >= VL_DOCK_AD_COUNT) return a->el == VL_DOCK_EL_Met;
  return a->ad != VL_DOCK_AD_C && a->ad != VL_DOCK_AD_A && a->ad != VL_DOCK_AD_H && a->ad != VL_DOCK_AD_HD;
}
static double cov_radius(const vl_dock_atom *a) { return a->ad < VL_DOCK_AD_COUNT ? ad_covalent[a->ad] : METAL_COVALENT; }
static double cov_radius_search(const vl_dock_atom *a) { return a->ad < VL_DOCK_AD_COUNT ? ad_covalent[a->ad] : MAX_COVALENT; }

static double dist2(const double *a, const double *b) {
  double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
  return dx * dx + dy * dy + dz * dz;
}

/* ---- freeing ---- */

void vl_dock_mol_clear(vl_dock_mol *m) {
  if (!m) return;
  free(m->atoms);
  free(m->bonds);
  free(m->adj_start);
  free(m->adj);
  free(m->nodes);
  free(m->pairs);
  memset(m, 0, sizeof *m);
}

void vl_dock_mol_free(vl_dock_mol *m) {
  if (!m) return;
  vl_dock_mol_clear(m);
  free(m);
}

void vl_dock_mols_free(vl_dock_mol *m, int n) {
  if (!m) return;
  for (int i = 0; i < n; i++) vl_dock_mol_clear(&m[i]);
  free(m);
}

/* ---- mobility (Vina's distance types) ---- */

enum { DIST_VARIABLE = 0, DIST_FIXED = 1, DIST_ROTOR = 2 };

static int mobility(const vl_dock_mol *m, int i, int j) {
  if (!m->is_ligand || m->nnodes <= 1) return DIST_FIXED;
  int ni = m->atoms[i].node, nj = m->atoms[j].node;
  /* a branch's axis pair is its rotor (set last, over any FIXED) */
  for (int k = 1; k < m->nnodes; k++) {
    const vl_dock_node *n = &m->nodes[k];
    if ((n->axis_from == i && n->axis_to == j) || (n->axis_from == j && n->axis_to == i)) return DIST_ROTOR;
  }
  if (ni == nj) return DIST_FIXED;
  if (nj > 0 && (m->nodes[nj].axis_from == i || m->nodes[nj].axis_to == i)) return DIST_FIXED;
  if (ni > 0 && (m->nodes[ni].axis_from == j || m->nodes[ni].axis_to == j)) return DIST_FIXED;
  return DIST_VARIABLE;
}

/* ---- growable int lists ---- */

typedef struct ivec {
  int *v;
  int n, cap;
} ivec;

static int ivec_push(ivec *a, int x) {
  if (a->n == a->cap) {
    int cap = a->cap ? a->cap * 2 : 8;
    int *v = realloc(a->v, (size_t)cap * sizeof *v);
    if (!v) return -1;
    a->v = v;
    a->cap = cap;
  }
  a->v[a->n++] = x;
  return 0;
}

/* ---- bonds ---- */

/* A third atom (from `rel`) immobile relative to a and b and closer to
   both than they are to each other. */
static int atom_between(const vl_dock_mol *m, int a, int b, const int *rel, int nrel) {
  const vl_dock_atom *at = m->atoms;
  double r2 = dist2(at[a].xyz, at[b].xyz);
  for (int k = 0; k < nrel; k++) {
    int c = rel[k];
    if (c == a || c == b) continue;
    if (mobility(m, a, c) == DIST_VARIABLE || mobility(m, b, c) == DIST_VARIABLE) continue;
    if (dist2(at[a].xyz, at[c].xyz) < r2 && dist2(at[b].xyz, at[c].xyz) < r2) return 1;
  }
  return 0;
}

/* Ligand bonds in Vina's order: atoms grouped in 15 Å beads (each atom
   joins the first bead whose first atom is within 15 Å), candidates
   visited bead by bead; each atom's neighbour list holds its lower-index
   partners in ascending order, then its higher ones in candidate order. */
static int bonds_ligand(vl_dock_mol *m, ivec *nb, ivec *bl) {
  int n = m->natoms;
  const vl_dock_atom *at = m->atoms;
  int *bead_of = malloc((size_t)n * sizeof *bead_of);
  int *bead_first = malloc((size_t)n * sizeof *bead_first);
  int *order = malloc((size_t)n * sizeof *order);
  int *start = malloc((size_t)(n + 1) * sizeof *start);
  int *rel = malloc((size_t)n * sizeof *rel);
  int st = VL_OK;
  if (!bead_of || !bead_first || !order || !start || !rel) {
    st = vl_error(VL_ENOMEM, "dock: out of memory perceiving the bonds of %s", m->source);
    goto done;
  }
  int nbeads = 0;
  for (int i = 0; i < n; i++) {
    int b = 0;
    for (; b < nbeads; b++)
      if (dist2(at[i].xyz, at[bead_first[b]].xyz) < 15.0 * 15.0) break;
    if (b == nbeads) bead_first[nbeads++] = i;
    bead_of[i] = b;
  }
  /* atoms listed bead by bead, ascending within a bead */
  int k = 0;
  for (int b = 0; b < nbeads; b++) {
    start[b] = k;
    for (int i = 0; i < n; i++)
      if (bead_of[i] == b) order[k++] = i;
  }
  start[nbeads] = k;
  for (int i = 0; i < n; i++) {
    double ri = cov_radius_search(&at[i]);
    double reach = 1.1 * (ri + MAX_COVALENT);
    double bead_cut = 15.0 + reach;
    int nrel = 0;
    for (int b = 0; b < nbeads; b++) {
      if (dist2(at[bead_first[b]].xyz, at[i].xyz) > bead_cut * bead_cut) continue;
      for (int e = start[b]; e < start[b + 1]; e++) {
        int j = order[e];
        if (j == i || mobility(m, i, j) == DIST_VARIABLE) continue;
        if (dist2(at[i].xyz, at[j].xyz) < reach * reach) rel[nrel++] = j;
      }
    }
    for (int e = 0; e < nrel; e++) {
      int j = rel[e];
      if (j <= i) continue;
      double bl_ij = 1.1 * (cov_radius(&at[i]) + cov_radius(&at[j]));
      if (dist2(at[i].xyz, at[j].xyz) < bl_ij * bl_ij && !atom_between(m, i, j, rel, nrel)) {
        if (ivec_push(&nb[i], j) || ivec_push(&nb[j], i) || ivec_push(bl, i) || ivec_push(bl, j)) {
          st = vl_error(VL_ENOMEM, "dock: out of memory perceiving the bonds of %s", m->source);
          goto done;
        }
      }
    }
  }
done:
  free(bead_of);
  free(bead_first);
  free(order);
  free(start);
  free(rel);
  return st;
}

/* Receptor bonds (all atoms rigid): the same rule through a cell list. */
static int bonds_receptor(vl_dock_mol *m, ivec *nb, ivec *bl) {
  int n = m->natoms;
  const vl_dock_atom *at = m->atoms;
  const double cell = 1.1 * 2 * MAX_COVALENT; /* the largest candidate reach */
  double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
  for (int i = 0; i < n; i++)
    for (int d = 0; d < 3; d++) {
      if (!isfinite(at[i].xyz[d]))
        return vl_error(VL_EFORMAT, "%s:%d: coordinate is not a finite number", m->source, at[i].line);
      if (at[i].xyz[d] < lo[d]) lo[d] = at[i].xyz[d];
      if (at[i].xyz[d] > hi[d]) hi[d] = at[i].xyz[d];
    }
  int64_t dim[3];
  for (int d = 0; d < 3; d++) {
    dim[d] = (int64_t)((hi[d] - lo[d]) / cell) + 1;
    if (dim[d] > 4096) /* a bounding box over 15 km: not a molecule */
      return vl_error(VL_EFORMAT, "%s: receptor spans %.0f Å along axis %d (expected a molecule)", m->source,
                      hi[d] - lo[d], d + 1);
  }
  int64_t ncell = dim[0] * dim[1] * dim[2];
  if (ncell > (int64_t)64 * 1024 * 1024)
    return vl_error(VL_EFORMAT, "%s: receptor too spread out (%lld cells)", m->source, (long long)ncell);
  int *head = malloc((size_t)ncell * sizeof *head);
  int *next = malloc((size_t)n * sizeof *next);
  int *cellof = malloc((size_t)n * sizeof *cellof);
  ivec rel = {0};
  int st = VL_OK;
  if (!head || !next || !cellof) {
    st = vl_error(VL_ENOMEM, "dock: out of memory perceiving the bonds of %s", m->source);
    goto done;
  }
  for (int64_t c = 0; c < ncell; c++) head[c] = -1;
  for (int i = n - 1; i >= 0; i--) {
    int64_t c[3];
    for (int d = 0; d < 3; d++) c[d] = (int64_t)((at[i].xyz[d] - lo[d]) / cell);
    int64_t id = (c[0] * dim[1] + c[1]) * dim[2] + c[2];
    cellof[i] = (int)id;
    next[i] = head[id];
    head[id] = i;
  }
  for (int i = 0; i < n; i++) {
    double reach = 1.1 * (cov_radius_search(&at[i]) + MAX_COVALENT);
    int64_t id = cellof[i];
    int64_t cz = id % dim[2], cy = (id / dim[2]) % dim[1], cx = id / (dim[1] * dim[2]);
    rel.n = 0;
    for (int64_t x = cx - 1; x <= cx + 1; x++)
      for (int64_t y = cy - 1; y <= cy + 1; y++)
        for (int64_t z = cz - 1; z <= cz + 1; z++) {
          if (x < 0 || y < 0 || z < 0 || x >= dim[0] || y >= dim[1] || z >= dim[2]) continue;
          for (int j = head[(x * dim[1] + y) * dim[2] + z]; j >= 0; j = next[j])
            if (j != i && dist2(at[i].xyz, at[j].xyz) < reach * reach && ivec_push(&rel, j)) {
              st = vl_error(VL_ENOMEM, "dock: out of memory perceiving the bonds of %s", m->source);
              goto done;
            }
        }
    for (int e = 0; e < rel.n; e++) {
      int j = rel.v[e];
      if (j <= i) continue;
      double b = 1.1 * (cov_radius(&at[i]) + cov_radius(&at[j]));
      if (dist2(at[i].xyz, at[j].xyz) < b * b && !atom_between(m, i, j, rel.v, rel.n)) {
        if (ivec_push(&nb[i], j) || ivec_push(&nb[j], i) || ivec_push(bl, i) || ivec_push(bl, j)) {
          st = vl_error(VL_ENOMEM, "dock: out of memory perceiving the bonds of %s", m->source);
          goto done;
        }
      }
    }
  }
done:
  free(head);
  free(next);
  free(cellof);
  free(rel.v);
  return st;
}

/* ---- typing ---- */

static void assign_types(vl_dock_mol *m) {
  for (int i = 0; i < m->natoms; i++) {
    vl_dock_atom *a = &m->atoms[i];
    int acceptor = a->ad == VL_DOCK_AD_OA || a->ad == VL_DOCK_AD_NA;
    int to_hd = 0, to_het = 0;
    for (int k = m->adj_start[i]; k < m->adj_start[i + 1]; k++) {
      const vl_dock_atom *b = &m->atoms[m->adj[k]];
      if (b->ad == VL_DOCK_AD_HD) to_hd = 1;
      if (is_heteroatom(b)) to_het = 1;
    }
    int donor = a->el == VL_DOCK_EL_Met || to_hd;
    switch (a->el) {
    case VL_DOCK_EL_C: a->xs = to_het ? VL_DOCK_XS_C_P : VL_DOCK_XS_C_H; break;
    case VL_DOCK_EL_N:
      a->xs = acceptor && donor ? VL_DOCK_XS_N_DA : acceptor ? VL_DOCK_XS_N_A : donor ? VL_DOCK_XS_N_D : VL_DOCK_XS_N_P;
      break;
    case VL_DOCK_EL_O:
      a->xs = acceptor && donor ? VL_DOCK_XS_O_DA : acceptor ? VL_DOCK_XS_O_A : donor ? VL_DOCK_XS_O_D : VL_DOCK_XS_O_P;
      break;
    case VL_DOCK_EL_S: a->xs = VL_DOCK_XS_S_P; break;
    case VL_DOCK_EL_P: a->xs = VL_DOCK_XS_P_P; break;
    case VL_DOCK_EL_F: a->xs = VL_DOCK_XS_F_H; break;
    case VL_DOCK_EL_Cl: a->xs = VL_DOCK_XS_Cl_H; break;
    case VL_DOCK_EL_Br: a->xs = VL_DOCK_XS_Br_H; break;
    case VL_DOCK_EL_I: a->xs = VL_DOCK_XS_I_H; break;
    case VL_DOCK_EL_Si: a->xs = VL_DOCK_XS_Si; break;
    case VL_DOCK_EL_At: a->xs = VL_DOCK_XS_At; break;
    case VL_DOCK_EL_Met: a->xs = VL_DOCK_XS_Met_D; break;
    default: a->xs = VL_DOCK_XS_NONE; break; /* H, dummies */
    }
  }
}

/* Vina's bonded_to(a, depth): depth-first, an atom visited once. */
static void bonded_within(const vl_dock_mol *m, int a, int depth, int *mark, int stamp, int *list, int *nlist) {
  if (mark[a] == stamp) return;
  mark[a] = stamp;
  list[(*nlist)++] = a;
  if (depth > 0)
    for (int k = m->adj_start[a]; k < m->adj_start[a + 1]; k++)
      bonded_within(m, m->adj[k], depth - 1, mark, stamp, list, nlist);
}

static int find_pairs(vl_dock_mol *m) {
  int n = m->natoms;
  int *mark = calloc((size_t)n, sizeof *mark);
  int *list = malloc((size_t)n * sizeof *list);
  ivec pairs = {0};
  int st = VL_OK;
  if (!mark || !list) {
    st = vl_error(VL_ENOMEM, "dock: out of memory listing the pairs of %s", m->source);
    goto done;
  }
  for (int i = 0; i < n; i++) {
    int nlist = 0;
    bonded_within(m, i, 3, mark, i + 1, list, &nlist);
    if (m->atoms[i].xs >= VL_DOCK_XS_COUNT) continue;
    for (int j = i + 1; j < n; j++) {
      if (m->atoms[j].xs >= VL_DOCK_XS_COUNT || mark[j] == i + 1) continue;
      if (mobility(m, i, j) != DIST_VARIABLE) continue;
      if (ivec_push(&pairs, i) || ivec_push(&pairs, j)) {
        st = vl_error(VL_ENOMEM, "dock: out of memory listing the pairs of %s", m->source);
        goto done;
      }
    }
  }
  m->npairs = pairs.n / 2;
  m->pairs = malloc((size_t)(m->npairs ? m->npairs : 1) * sizeof *m->pairs);
  if (!m->pairs) {
    st = vl_error(VL_ENOMEM, "dock: out of memory listing the pairs of %s", m->source);
    goto done;
  }
  for (int p = 0; p < m->npairs; p++) {
    m->pairs[p].a = pairs.v[2 * p];
    m->pairs[p].b = pairs.v[2 * p + 1];
  }
done:
  free(mark);
  free(list);
  free(pairs.v);
  return st;
}

static double count_rotors(const vl_dock_mol *m) {
  double nrot = 0;
  for (int i = 0; i < m->natoms; i++) {
    if (m->atoms[i].el == VL_DOCK_EL_H) continue;
    int ar = 0;
    for (int k = m->adj_start[i]; k < m->adj_start[i + 1]; k++) {
      int j = m->adj[k];
      if (is_hydrogen(&m->atoms[j]) || mobility(m, i, j) != DIST_ROTOR) continue;
      int heavy = 0;
      for (int l = m->adj_start[j]; l < m->adj_start[j + 1]; l++)
        if (!is_hydrogen(&m->atoms[m->adj[l]])) heavy++;
      if (heavy > 1) ar++;
    }
    nrot += 0.5 * ar;
  }
  return nrot;
}

/* The layout a builder must produce: node ranges tile [0, natoms) in
   order, parents come first, axis atoms lie where Vina puts them. */
static int check_tree(const vl_dock_mol *m) {
  const char *src = m->source;
  if (m->natoms < 0 || (m->natoms > 0 && !m->atoms))
    return vl_error(VL_EARG, "dock: %s: %d atoms (expected >= 0 with an atom array)", src, m->natoms);
  if (m->nnodes < 1 || !m->nodes) return vl_error(VL_EARG, "dock: %s has no torsion-tree nodes (expected a root node)", src);
  int next = 0;
  for (int k = 0; k < m->nnodes; k++) {
    const vl_dock_node *nd = &m->nodes[k];
    if (nd->begin != next || nd->end < nd->begin || nd->end > m->natoms)
      return vl_error(VL_EARG, "dock: %s: node %d covers atoms [%d, %d) (expected to start at %d, within %d atoms)", src, k,
                      nd->begin, nd->end, next, m->natoms);
    next = nd->end;
    if (k == 0) {
      if (nd->parent != -1) return vl_error(VL_EARG, "dock: %s: the root node has parent %d (expected -1)", src, nd->parent);
      if (m->natoms > 0 && nd->end == nd->begin) return vl_error(VL_EARG, "dock: %s: the root node has no atoms", src);
    } else {
      if (nd->parent < 0 || nd->parent >= k)
        return vl_error(VL_EARG, "dock: %s: node %d has parent %d (expected an earlier node)", src, k, nd->parent);
      if (nd->axis_from < 0 || nd->axis_from >= m->natoms || nd->axis_to < 0 || nd->axis_to >= m->natoms ||
          nd->axis_from == nd->axis_to)
        return vl_error(VL_EARG, "dock: %s: node %d has axis atoms %d, %d (expected two atoms of the molecule)", src, k,
                        nd->axis_from, nd->axis_to);
      const vl_dock_node *p = &m->nodes[nd->parent];
      if (nd->axis_to < p->begin || nd->axis_to >= p->end || nd->axis_from >= p->end)
        return vl_error(VL_EARG, "dock: %s: node %d's axis atoms %d, %d are not in or above its parent", src, k,
                        nd->axis_from, nd->axis_to);
    }
    if (nd->sub_end <= k || nd->sub_end > m->nnodes)
      return vl_error(VL_EARG, "dock: %s: node %d has sub_end %d (expected %d..%d)", src, k, nd->sub_end, k + 1, m->nnodes);
    for (int i = nd->begin; i < nd->end; i++)
      if (m->atoms[i].node != k)
        return vl_error(VL_EARG, "dock: %s: atom %d lies in node %d's range but says node %d", src, i, k, m->atoms[i].node);
  }
  if (next != m->natoms)
    return vl_error(VL_EARG, "dock: %s: the nodes cover %d of %d atoms", src, next, m->natoms);
  for (int i = 0; i < m->natoms; i++)
    for (int d = 0; d < 3; d++)
      if (!isfinite(m->atoms[i].xyz[d])) return vl_error(VL_EARG, "dock: %s: atom %d has a non-finite coordinate", src, i);
  return VL_OK;
}

int vl_dock_mol_perceive(vl_dock_mol *m) {
  int n = m->natoms;
  int cst = check_tree(m);
  if (cst) return cst;
  free(m->adj_start);
  free(m->adj);
  free(m->bonds);
  free(m->pairs);
  m->adj_start = NULL;
  m->adj = NULL;
  m->bonds = NULL;
  m->pairs = NULL;
  m->nbonds = m->npairs = 0;
  for (int i = 0; i < n; i++) {
    vl_dock_atom *a = &m->atoms[i];
    if (a->ad < VL_DOCK_AD_COUNT) a->el = ad_el[a->ad];
    else a->el = VL_DOCK_EL_Met;
  }
  ivec *nb = calloc((size_t)(n ? n : 1), sizeof *nb);
  ivec bl = {0};
  if (!nb) return vl_error(VL_ENOMEM, "dock: out of memory perceiving %s", m->source);
  int st = m->is_ligand ? bonds_ligand(m, nb, &bl) : bonds_receptor(m, nb, &bl);
  if (st == VL_OK) {
    m->nbonds = bl.n / 2;
    m->adj_start = malloc((size_t)(n + 1) * sizeof *m->adj_start);
    m->adj = malloc((size_t)(bl.n ? bl.n : 1) * sizeof *m->adj);
    m->bonds = malloc((size_t)(m->nbonds ? m->nbonds : 1) * sizeof *m->bonds);
    if (!m->adj_start || !m->adj || !m->bonds) st = vl_error(VL_ENOMEM, "dock: out of memory perceiving %s", m->source);
  }
  if (st == VL_OK) {
    int k = 0;
    for (int i = 0; i < n; i++) {
      m->adj_start[i] = k;
      for (int e = 0; e < nb[i].n; e++) m->adj[k++] = nb[i].v[e];
    }
    m->adj_start[n] = k;
    for (int b = 0; b < m->nbonds; b++) {
      m->bonds[b].a = bl.v[2 * b];
      m->bonds[b].b = bl.v[2 * b + 1];
      m->bonds[b].rotatable = mobility(m, bl.v[2 * b], bl.v[2 * b + 1]) == DIST_ROTOR;
    }
    assign_types(m);
    if (m->is_ligand) {
      st = find_pairs(m);
      m->rotors = count_rotors(m);
      m->nrot = m->rotors;
    } else {
      m->pairs = malloc(sizeof *m->pairs);
      if (!m->pairs) st = vl_error(VL_ENOMEM, "dock: out of memory perceiving %s", m->source);
      m->nrot = 0;
    }
  }
  for (int i = 0; i < n; i++) free(nb[i].v);
  free(nb);
  free(bl.v);
  return st;
}

/* ---- poses ---- */

int vl_dock_pose_size(const vl_dock_mol *lig) { return 6 + (lig->nnodes > 0 ? lig->nnodes - 1 : 0); }

void vl_dock_pose_identity(const vl_dock_mol *lig, double *pos, double *q, double *tors) {
  int o = lig->nnodes > 0 ? lig->nodes[0].begin : 0;
  for (int d = 0; d < 3; d++) pos[d] = lig->natoms > 0 ? lig->atoms[o].xyz[d] : 0.0;
  q[0] = 1;
  q[1] = q[2] = q[3] = 0;
  for (int k = 0; k + 1 < lig->nnodes; k++) tors[k] = 0;
}

static void quat_to_mat(const double *q, double R[9]) {
  double w = q[0], x = q[1], y = q[2], z = q[3];
  R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z);     R[2] = 2 * (x * z + w * y);
  R[3] = 2 * (x * y + w * z);     R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
  R[6] = 2 * (x * z - w * y);     R[7] = 2 * (y * z + w * x);     R[8] = 1 - 2 * (x * x + y * y);
}

static void axis_angle_mat(const double *u, double th, double R[9]) {
  double c = cos(th), s = sin(th), t = 1 - c, x = u[0], y = u[1], z = u[2];
  R[0] = t * x * x + c;     R[1] = t * x * y - s * z; R[2] = t * x * z + s * y;
  R[3] = t * x * y + s * z; R[4] = t * y * y + c;     R[5] = t * y * z - s * x;
  R[6] = t * x * z - s * y; R[7] = t * y * z + s * x; R[8] = t * z * z + c;
}

static void mat_mul(const double A[9], const double B[9], double C[9]) {
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) C[3 * i + j] = A[3 * i] * B[j] + A[3 * i + 1] * B[3 + j] + A[3 * i + 2] * B[6 + j];
}

static void mat_vec(const double A[9], const double *v, double *out) {
  for (int i = 0; i < 3; i++) out[i] = A[3 * i] * v[0] + A[3 * i + 1] * v[1] + A[3 * i + 2] * v[2];
}

void vl_dock_quat_rotate(double *q, const double *rv) {
  double th = sqrt(rv[0] * rv[0] + rv[1] * rv[1] + rv[2] * rv[2]);
  double a[4] = {1, 0, 0, 0};
  if (th > 1e-300) {
    double s = sin(th / 2) / th;
    a[0] = cos(th / 2);
    a[1] = rv[0] * s;
    a[2] = rv[1] * s;
    a[3] = rv[2] * s;
  }
  double r[4] = {a[0] * q[0] - a[1] * q[1] - a[2] * q[2] - a[3] * q[3],
                 a[0] * q[1] + a[1] * q[0] + a[2] * q[3] - a[3] * q[2],
                 a[0] * q[2] - a[1] * q[3] + a[2] * q[0] + a[3] * q[1],
                 a[0] * q[3] + a[1] * q[2] - a[2] * q[1] + a[3] * q[0]};
  double nrm = sqrt(r[0] * r[0] + r[1] * r[1] + r[2] * r[2] + r[3] * r[3]);
  if (!(nrm > 0)) nrm = 1;
  for (int k = 0; k < 4; k++) q[k] = r[k] / nrm;
}

int vl_dock_pose_coords(const vl_dock_mol *lig, const double *pos, const double *q, const double *tors, double *xyz) {
  int nn = lig->nnodes;
  if (nn < 1) return vl_error(VL_ESTATE, "dock pose: %s has no torsion tree", lig->source);
  double (*R)[9] = malloc((size_t)nn * sizeof *R);
  double (*org)[3] = malloc((size_t)nn * sizeof *org);
  if (!R || !org) {
    free(R);
    free(org);
    return vl_error(VL_ENOMEM, "dock pose: out of memory");
  }
  double qn[4] = {q[0], q[1], q[2], q[3]};
  double nq = sqrt(qn[0] * qn[0] + qn[1] * qn[1] + qn[2] * qn[2] + qn[3] * qn[3]);
  if (!(nq > 0)) {
    free(R);
    free(org);
    return vl_error(VL_EARG, "dock pose: orientation quaternion has norm %g (expected > 0)", nq);
  }
  for (int k = 0; k < 4; k++) qn[k] /= nq;
  quat_to_mat(qn, R[0]);
  for (int d = 0; d < 3; d++) org[0][d] = pos[d];
  const vl_dock_atom *at = lig->atoms;
  const double *o0 = at[lig->nodes[0].begin].xyz;
  for (int k = 0; k < nn; k++) {
    const vl_dock_node *nd = &lig->nodes[k];
    if (k > 0) {
      const vl_dock_node *p = &lig->nodes[nd->parent];
      const double *po = p->parent < 0 ? o0 : at[p->axis_to].xyz;
      double rel[3], ax[3], axw[3], Rt[9];
      for (int d = 0; d < 3; d++) rel[d] = at[nd->axis_to].xyz[d] - po[d];
      mat_vec(R[nd->parent], rel, org[k]);
      for (int d = 0; d < 3; d++) org[k][d] += org[nd->parent][d];
      for (int d = 0; d < 3; d++) ax[d] = at[nd->axis_to].xyz[d] - at[nd->axis_from].xyz[d];
      double l = sqrt(ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]);
      if (!(l > 1e-9)) {
        free(R);
        free(org);
        return vl_error(VL_EFORMAT, "%s: branch axis atoms %d and %d coincide", lig->source,
                        at[nd->axis_from].serial, at[nd->axis_to].serial);
      }
      for (int d = 0; d < 3; d++) ax[d] /= l;
      mat_vec(R[nd->parent], ax, axw);
      axis_angle_mat(axw, tors[k - 1], Rt);
      mat_mul(Rt, R[nd->parent], R[k]);
    }
    const double *ro = k == 0 ? o0 : at[nd->axis_to].xyz;
    for (int i = nd->begin; i < nd->end; i++) {
      double rel[3], w[3];
      for (int d = 0; d < 3; d++) rel[d] = at[i].xyz[d] - ro[d];
      mat_vec(R[k], rel, w);
      for (int d = 0; d < 3; d++) xyz[3 * i + d] = org[k][d] + w[d];
    }
  }
  free(R);
  free(org);
  return VL_OK;
}

static void cross(const double *a, const double *b, double *c) {
  c[0] = a[1] * b[2] - a[2] * b[1];
  c[1] = a[2] * b[0] - a[0] * b[2];
  c[2] = a[0] * b[1] - a[1] * b[0];
}

int vl_dock_pose_gradient(const vl_dock_mol *lig, const double *xyz, const double *dx, double *g) {
  int nn = lig->nnodes;
  if (nn < 1) return vl_error(VL_ESTATE, "dock pose: %s has no torsion tree", lig->source);
  double (*F)[3] = calloc((size_t)nn, sizeof *F);
  double (*T)[3] = calloc((size_t)nn, sizeof *T);
  if (!F || !T) {
    free(F);
    free(T);
    return vl_error(VL_ENOMEM, "dock pose: out of memory");
  }
  /* origins in the current frame: node 0 the first root atom, others their axis atom */
  for (int k = nn - 1; k >= 0; k--) {
    const vl_dock_node *nd = &lig->nodes[k];
    const double *o = k == 0 ? &xyz[3 * nd->begin] : &xyz[3 * nd->axis_to];
    for (int i = nd->begin; i < nd->end; i++) {
      double r[3], t[3];
      for (int d = 0; d < 3; d++) {
        F[k][d] += dx[3 * i + d];
        r[d] = xyz[3 * i + d] - o[d];
      }
      cross(r, &dx[3 * i], t);
      for (int d = 0; d < 3; d++) T[k][d] += t[d];
    }
    if (k > 0) {
      /* torsion: torque along the axis (axis_from -> axis_to) */
      double ax[3];
      for (int d = 0; d < 3; d++) ax[d] = xyz[3 * nd->axis_to + d] - xyz[3 * nd->axis_from + d];
      double l = sqrt(ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]);
      g[6 + k - 1] = l > 0 ? (T[k][0] * ax[0] + T[k][1] * ax[1] + T[k][2] * ax[2]) / l : 0;
      /* pass force and torque to the parent, moving the torque's centre */
      int p = nd->parent;
      const double *po = p == 0 ? &xyz[3 * lig->nodes[0].begin] : &xyz[3 * lig->nodes[p].axis_to];
      double r[3], t[3];
      for (int d = 0; d < 3; d++) r[d] = o[d] - po[d];
      cross(r, F[k], t);
      for (int d = 0; d < 3; d++) {
        F[p][d] += F[k][d];
        T[p][d] += T[k][d] + t[d];
      }
    }
  }
  for (int d = 0; d < 3; d++) {
    g[d] = F[0][d];
    g[3 + d] = T[0][d];
  }
  free(F);
  free(T);
  return VL_OK;
}
