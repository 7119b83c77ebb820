/*
** ligprep.c — a parsed molecule (vl_chem) to a dockable ligand, following
** Open Babel 3.1.1's PDBQT writer as run by `obabel in.sdf -h -O out.pdbqt`
** (the preparation of the reference ligands in /work/shared/data/complexes;
** ADT's prepare_ligand4 differs in details noted below).
**
**  1. Bonds. The file's bonds and orders (SDF, MOL2, PDB CONECT). Without
**     any (PDB without CONECT): bonded when d < r1 + r2 + 0.45 Å (Open
**     Babel's covalent radii), then planar 5/6-rings of C/N/O/S become
**     aromatic, terminal O/S on C/P/S closer than 1.30/1.70 Å double and
**     terminal N on C closer than 1.20 Å triple (rough: prefer SDF/MOL2).
**  2. Only the largest connected piece is kept (salts and counter-ions are
**     dropped; info->dropped counts their atoms).
**  3. Aromaticity: atoms and bonds the file marks aromatic (SDF bond type
**     4, MOL2 'ar' bonds and *.ar atoms), plus Kekulé rings of 5-7 atoms
**     that are Hückel (4n+2) counting 1 electron per atom with a double
**     bond to a ring atom, 2 per N/O/S (or C-) with single bonds only,
**     0 per C with an exocyclic C=X, and refusing sp3 carbons.
**  4. Implicit hydrogens from the standard valences (C 4, N 3, O 2, S 2/4/6,
**     P 3/5, B 3, halogens 1, adjusted by the formal charge), so donors
**     are typed the same with or without explicit H. Polar hydrogens (on
**     anything but C) are kept; missing ones are placed 1 Å out along the
**     free direction (their position only matters for bond perception:
**     Vina does not score H). Non-polar H are merged into their carbon.
**  5. AutoDock types (Open Babel's OutputAtom): H -> HD; aromatic C -> A,
**     other C -> C; every O -> OA; N -> NA unless it has 4 neighbours
**     (ammonium) or 3 neighbours and is sp2 (amide, aniline, nitro,
**     pyrrole-type, any N bonded to an aromatic or multiply bonded atom);
**     S -> SA only for S- (thiolate), else S; P, F, Cl, Br, I, Mg, Mn, Zn,
**     Ca, Fe, Si as themselves. Charges: 0 (Open Babel's writer leaves
**     them 0 without -xp/--partialcharge; Vina ignores charges).
**  6. Rotatable bonds (Open Babel's IsRotBond_PDBQT): single, not
**     aromatic, not in a ring, not an amide C-N (N with 3 neighbours, C
**     with C=O) nor an amidine C-N (C with C=N; aromatic-typed bonds are
**     first given a Kekulé form by a matching that is greedy in atom order,
**     then completed by augmenting paths, which reproduces Open Babel's
**     choice on the reference set, e.g. 1y6r's aminopyrimidine), and both ends
**     with more than one neighbour after non-polar H are merged. So C-OH,
**     C-NH2 and C-SH are rotors (their HD moves) while C-CH3, C-CF3's C-F
**     and C-Cl are not. This is Vina's count as well: Vina takes the
**     torsion tree as written (TORSDOF = BRANCH records).
**  7. Root: the atom whose removal leaves the smallest largest piece (the
**     most central, first in file order on ties); its rigid piece is ROOT.
**     Branches are grown depth first, always taking the first remaining
**     rigid piece (by lowest atom index) bonded to the current one, as
**     Open Babel's ConstructTree does.
**  8. The result is written as PDBQT text and read back with
**     vl_dock_parse_ligands, so the atom order, nodes and perception are
**     exactly those of a PDBQT ligand (coordinates rounded to 0.001 Å).
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "ligprep.h"

#define OOM() vl_error(VL_ENOMEM, "ligprep: out of memory preparing %s", c->source)

typedef struct graph {
  int n;
  int *start;  /* n + 1 */
  int *nb;     /* neighbour */
  int *bond;   /* bond index */
} graph;

static void graph_free(graph *g) {
  free(g->start);
  free(g->nb);
  free(g->bond);
  memset(g, 0, sizeof *g);
}

static int graph_build(graph *g, int n, const vl_chem_bond *b, int nb) {
  memset(g, 0, sizeof *g);
  g->n = n;
  g->start = calloc((size_t)n + 1, sizeof *g->start);
  g->nb = malloc((size_t)(2 * nb + 1) * sizeof *g->nb);
  g->bond = malloc((size_t)(2 * nb + 1) * sizeof *g->bond);
  if (!g->start || !g->nb || !g->bond) {
    graph_free(g);
    return -1;
  }
  for (int k = 0; k < nb; k++) {
    g->start[b[k].a + 1]++;
    g->start[b[k].b + 1]++;
  }
  for (int i = 0; i < n; i++) g->start[i + 1] += g->start[i];
  int *fill = calloc((size_t)n + 1, sizeof *fill);
  if (!fill) {
    graph_free(g);
    return -1;
  }
  for (int k = 0; k < nb; k++) {
    int a = b[k].a, c = b[k].b;
    g->nb[g->start[a] + fill[a]] = c;
    g->bond[g->start[a] + fill[a]++] = k;
    g->nb[g->start[c] + fill[c]] = a;
    g->bond[g->start[c] + fill[c]++] = k;
  }
  free(fill);
  return 0;
}

static double dist(const double *a, const double *b) {
  double dx = a[0] - b[0], dy = a[1] - b[1], dz = a[2] - b[2];
  return sqrt(dx * dx + dy * dy + dz * dz);
}

static double cov_radius(int z) {
  switch (z) {
  case 1: return 0.31;
  case 5: return 0.84;
  case 6: return 0.76;
  case 7: return 0.71;
  case 8: return 0.66;
  case 9: return 0.57;
  case 14: return 1.11;
  case 15: return 1.07;
  case 16: return 1.05;
  case 17: return 1.02;
  case 34: return 1.20;
  case 35: return 1.20;
  case 53: return 1.39;
  default: return 1.50;
  }
}

/* BFS path a -> b not using bond `skip`, restricted to `allowed` (NULL:
   all); returns the path length in atoms (0: none) with the atoms in path. */
static int shortest_cycle(const graph *g, int a, int b, int skip, int *prev, int *queue, int *path, int maxlen) {
  for (int i = 0; i < g->n; i++) prev[i] = -2;
  int qh = 0, qt = 0;
  queue[qt++] = a;
  prev[a] = -1;
  while (qh < qt) {
    int u = queue[qh++];
    if (u == b) break;
    for (int k = g->start[u]; k < g->start[u + 1]; k++) {
      if (g->bond[k] == skip) continue;
      int v = g->nb[k];
      if (prev[v] != -2) continue;
      prev[v] = u;
      queue[qt++] = v;
    }
  }
  if (prev[b] == -2) return 0;
  int len = 0;
  for (int u = b; u != -1; u = prev[u]) {
    if (len >= maxlen) return 0;
    path[len++] = u;
  }
  return len;
}

typedef struct ring {
  int n;
  int a[8];
} ring;

static int ring_same(const ring *r, const int *p, int n) {
  if (r->n != n) return 0;
  for (int i = 0; i < n; i++) {
    int f = 0;
    for (int j = 0; j < n; j++)
      if (r->a[j] == p[i]) f = 1;
    if (!f) return 0;
  }
  return 1;
}

/* One bond's order (aromatic as 4) from an adjacency slot. */
#define BO(k) (bonds[g.bond[k]].order)

static void unit(double *v) {
  double n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
  if (n > 1e-9) {
    v[0] /= n;
    v[1] /= n;
    v[2] /= n;
  }
}

static void cross(const double *a, const double *b, double *o) {
  o[0] = a[1] * b[2] - a[2] * b[1];
  o[1] = a[2] * b[0] - a[0] * b[2];
  o[2] = a[0] * b[1] - a[1] * b[0];
}

/* Position of the k-th of nh hydrogens on atom x with heavy neighbours
   nbx[0..nn) (ref: a neighbour of nbx[0], or NULL); d: bond length. */
static void place_h(const double *x, double (*nbx)[3], int nn, const double *ref, int k, int nh, int sp2, double d,
                    double *out) {
  double u[3] = {0, 0, 0}, p[3], q[3];
  for (int i = 0; i < nn; i++) {
    double v[3] = {x[0] - nbx[i][0], x[1] - nbx[i][1], x[2] - nbx[i][2]};
    unit(v);
    for (int t = 0; t < 3; t++) u[t] += v[t];
  }
  double len = sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]);
  if (nn == 0 || len < 1e-3) {
    u[0] = 1;
    u[1] = u[2] = 0;
  }
  unit(u);
  /* a perpendicular: from the reference atom or the neighbour plane */
  double r[3] = {0, 0, 1};
  if (nn >= 2) {
    double a[3] = {nbx[0][0] - x[0], nbx[0][1] - x[1], nbx[0][2] - x[2]};
    double b[3] = {nbx[1][0] - x[0], nbx[1][1] - x[1], nbx[1][2] - x[2]};
    cross(a, b, r);
  } else if (nn == 1 && ref) {
    for (int t = 0; t < 3; t++) r[t] = nbx[0][t] - ref[t];
  }
  double dot = r[0] * u[0] + r[1] * u[1] + r[2] * u[2];
  for (int t = 0; t < 3; t++) p[t] = r[t] - dot * u[t];
  if (sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2]) < 1e-3) {
    double e[3] = {fabs(u[0]) < 0.9 ? 1.0 : 0.0, fabs(u[0]) < 0.9 ? 0.0 : 1.0, 0};
    cross(u, e, p);
  }
  unit(p);
  cross(u, p, q);
  double th;
  if (nn >= 2) th = nh == 1 ? 0.0 : 54.75 * M_PI / 180; /* NH2+ in a ring: out of plane */
  else if (nn == 1) th = (sp2 ? 60.0 : 70.5) * M_PI / 180;
  else th = k == 0 ? 0.0 : 109.5 * M_PI / 180;
  double phi = nh > 0 ? 2 * M_PI * k / nh : 0;
  if (nn >= 2 && nh == 2) phi = k ? M_PI : 0;
  for (int t = 0; t < 3; t++) out[t] = x[t] + d * (cos(th) * u[t] + sin(th) * (cos(phi) * p[t] + sin(phi) * q[t]));
}

static const char *ad_type(int z, int arom, int nacc, int charge) {
  switch (z) {
  case 1: return "HD";
  case 6: return arom ? "A" : "C";
  case 7: return nacc ? "NA" : "N";
  case 8: return "OA";
  case 16: return charge == -1 ? "SA" : "S";
  case 15: return "P";
  case 9: return "F";
  case 17: return "Cl";
  case 35: return "Br";
  case 53: return "I";
  case 12: return "Mg";
  case 25: return "Mn";
  case 30: return "Zn";
  case 20: return "Ca";
  case 26: return "Fe";
  case 14: return "Si";
  case 34: return "Se";
  case 85: return "At";
  default: return NULL;
  }
}

int vl_dock_ligprep_pdbqt(const vl_chem *c, char **text, size_t *len, int **srcmap, int *nsrc,
                          vl_dock_prep_info *info) {
  *text = NULL;
  *len = 0;
  if (srcmap) *srcmap = NULL;
  if (nsrc) *nsrc = 0;
  vl_dock_prep_info inf;
  memset(&inf, 0, sizeof inf);
  int n = c->natoms;
  if (n <= 0) return vl_error(VL_EARG, "ligprep: %s has no atoms", c->source);
  if (n > VL_CHEM_MAX_ATOMS) return vl_error(VL_EARG, "ligprep: %s has %d atoms (at most %d)", c->source, n, VL_CHEM_MAX_ATOMS);
  int st = VL_OK;
  graph g = {0}, w = {0};
  vl_chem_bond *bonds = NULL, *wb = NULL;
  int nbonds = c->nbonds;
  int *prev = NULL, *queue = NULL, *path = NULL, *comp = NULL, *impl = NULL, *arom = NULL, *inring = NULL;
  int *keep = NULL, *widx = NULL, *wsrc = NULL, *wz = NULL, *wtype_arom = NULL, *wnacc = NULL, *wcharge = NULL;
  int *kek = NULL, *need = NULL;
  int *rot = NULL, *frag = NULL, *order = NULL, *node_of_frag = NULL, *parent = NULL, *conn_p = NULL, *conn_c = NULL;
  int *serial = NULL, *kids = NULL, *fragstart = NULL, *fragatoms = NULL;
  double (*wx)[3] = NULL;
  ring *rings = NULL;
  int nrings = 0, ringcap = 0;
  char *out = NULL;
  size_t olen = 0, ocap = 0;

  /* 1. bonds */
  bonds = malloc((size_t)(nbonds + 1) * sizeof *bonds);
  if (!bonds) return OOM();
  if (nbonds) memcpy(bonds, c->bonds, (size_t)nbonds * sizeof *bonds);
  if (!c->has_bonds && nbonds == 0 && n > 1) {
    inf.bonds_perceived = 1;
    int cap = n + 1;
    vl_chem_bond *nb0 = realloc(bonds, (size_t)cap * sizeof *nb0);
    if (!nb0) {
      st = OOM();
      goto done;
    }
    bonds = nb0;
    for (int i = 0; i < n; i++)
      for (int j = i + 1; j < n; j++) {
        double d = dist(c->atoms[i].xyz, c->atoms[j].xyz);
        if (d < 0.4 || d > cov_radius(c->atoms[i].z) + cov_radius(c->atoms[j].z) + 0.45) continue;
        if (c->atoms[i].z == 1 && c->atoms[j].z == 1) continue;
        if (nbonds == cap) {
          cap *= 2;
          vl_chem_bond *nb = realloc(bonds, (size_t)cap * sizeof *nb);
          if (!nb) {
            st = OOM();
            goto done;
          }
          bonds = nb;
        }
        bonds[nbonds++] = (vl_chem_bond){i, j, 1};
      }
  }
  if (graph_build(&g, n, bonds, nbonds)) {
    st = OOM();
    goto done;
  }
  prev = malloc((size_t)n * sizeof *prev);
  queue = malloc((size_t)n * sizeof *queue);
  path = malloc((size_t)n * sizeof *path);
  comp = malloc((size_t)n * sizeof *comp);
  impl = calloc((size_t)n, sizeof *impl);
  arom = calloc((size_t)n, sizeof *arom);
  inring = calloc((size_t)(nbonds + 1), sizeof *inring);
  keep = calloc((size_t)n, sizeof *keep);
  if (!prev || !queue || !path || !comp || !impl || !arom || !inring || !keep) {
    st = OOM();
    goto done;
  }
  /* ring bonds and small rings */
  for (int k = 0; k < nbonds; k++) {
    int len8 = shortest_cycle(&g, bonds[k].a, bonds[k].b, k, prev, queue, path, n);
    if (!len8) continue;
    inring[k] = 1;
    if (len8 > 8) continue;
    int dup = 0;
    for (int r = 0; r < nrings && !dup; r++) dup = ring_same(&rings[r], path, len8);
    if (dup) continue;
    if (nrings == ringcap) {
      ringcap = ringcap ? ringcap * 2 : 16;
      ring *nr = realloc(rings, (size_t)ringcap * sizeof *nr);
      if (!nr) {
        st = OOM();
        goto done;
      }
      rings = nr;
    }
    rings[nrings].n = len8;
    memcpy(rings[nrings].a, path, (size_t)len8 * sizeof(int)); /* a cycle in path order */
    nrings++;
  }
  if (inf.bonds_perceived) {
    /* planar 5/6 rings of C/N/O/S: aromatic; short terminal bonds: multiple */
    for (int r = 0; r < nrings; r++) {
      ring *R = &rings[r];
      if (R->n != 5 && R->n != 6) continue;
      int ok = 1;
      double cen[3] = {0, 0, 0};
      for (int i = 0; i < R->n; i++) {
        int z = c->atoms[R->a[i]].z;
        if (z != 6 && z != 7 && z != 8 && z != 16) ok = 0;
        for (int t = 0; t < 3; t++) cen[t] += c->atoms[R->a[i]].xyz[t] / R->n;
      }
      if (!ok) continue;
      double nrm[3] = {0, 0, 0};
      for (int i = 0; i < R->n; i++) {
        const double *p1 = c->atoms[R->a[i]].xyz, *p2 = c->atoms[R->a[(i + 1) % R->n]].xyz;
        double a[3] = {p1[0] - cen[0], p1[1] - cen[1], p1[2] - cen[2]}, b[3] = {p2[0] - cen[0], p2[1] - cen[1], p2[2] - cen[2]}, x[3];
        cross(a, b, x);
        for (int t = 0; t < 3; t++) nrm[t] += x[t];
      }
      unit(nrm);
      for (int i = 0; i < R->n; i++) {
        const double *p = c->atoms[R->a[i]].xyz;
        double dev = fabs((p[0] - cen[0]) * nrm[0] + (p[1] - cen[1]) * nrm[1] + (p[2] - cen[2]) * nrm[2]);
        if (dev > 0.1) ok = 0;
      }
      if (!ok) continue;
      for (int i = 0; i < R->n; i++) {
        int a = R->a[i], b = R->a[(i + 1) % R->n];
        for (int k = g.start[a]; k < g.start[a + 1]; k++)
          if (g.nb[k] == b) bonds[g.bond[k]].order = VL_CHEM_BOND_AROMATIC;
      }
    }
    for (int k = 0; k < nbonds; k++) {
      if (bonds[k].order != 1) continue;
      int a = bonds[k].a, b = bonds[k].b;
      for (int s = 0; s < 2; s++, a ^= b, b ^= a, a ^= b) {
        int za = c->atoms[a].z, zb = c->atoms[b].z, deg = g.start[a + 1] - g.start[a];
        double d = dist(c->atoms[a].xyz, c->atoms[b].xyz);
        if (deg != 1) continue;
        if (za == 8 && (zb == 6 || zb == 15 || zb == 16) && d < 1.30) bonds[k].order = 2;
        else if (za == 16 && (zb == 6 || zb == 15 || zb == 16) && d < 1.70) bonds[k].order = 2;
        else if (za == 7 && zb == 6 && d < 1.20) bonds[k].order = 3;
        if (bonds[k].order != 1) break;
      }
    }
  }
  /* 2. the largest piece */
  {
    for (int i = 0; i < n; i++) comp[i] = -1;
    int ncomp = 0, best = 0, bestheavy = -1;
    for (int s = 0; s < n; s++) {
      if (comp[s] >= 0) continue;
      int qh = 0, qt = 0, heavy = 0;
      queue[qt++] = s;
      comp[s] = ncomp;
      while (qh < qt) {
        int u = queue[qh++];
        if (c->atoms[u].z != 1) heavy++;
        for (int k = g.start[u]; k < g.start[u + 1]; k++)
          if (comp[g.nb[k]] < 0) {
            comp[g.nb[k]] = ncomp;
            queue[qt++] = g.nb[k];
          }
      }
      if (heavy > bestheavy) {
        bestheavy = heavy;
        best = ncomp;
      }
      ncomp++;
    }
    for (int i = 0; i < n; i++) {
      keep[i] = comp[i] == best;
      if (!keep[i]) inf.dropped++;
    }
  }
  /* 3. aromaticity: flagged by the file */
  for (int i = 0; i < n; i++) arom[i] = c->atoms[i].aromatic != 0;
  for (int k = 0; k < nbonds; k++)
    if (bonds[k].order == VL_CHEM_BOND_AROMATIC) arom[bonds[k].a] = arom[bonds[k].b] = 1;
  /* 4. implicit hydrogens */
  for (int i = 0; i < n; i++) {
    const vl_chem_atom *a = &c->atoms[i];
    int v = 0, karom = 0;
    for (int k = g.start[i]; k < g.start[i + 1]; k++) {
      int o = BO(k);
      if (o == VL_CHEM_BOND_AROMATIC) karom++;
      else v += o;
    }
    v += karom + (karom >= 2 ? 1 : 0);
    if (karom >= 2 && a->z == 7 && g.start[i + 1] - g.start[i] == 3) v -= 1; /* n(R) in an aromatic ring: 3 */
    int ch = a->charge, t;
    switch (a->z) {
    case 6: t = ch ? 3 : 4; break;
    case 7: t = 3 + ch; break;
    case 8: t = 2 + ch; break;
    case 16: t = v <= 2 + ch ? 2 + ch : v <= 4 ? 4 : 6; break;
    case 15: t = v <= 3 ? 3 : 5; break;
    case 5: t = 3; break;
    case 9: case 17: case 35: case 53: t = 1 + ch; break;
    default: t = 0;
    }
    impl[i] = t > v ? t - v : 0;
  }
  /* Hückel on Kekulé rings the file did not mark: single rings, then
     pairs of fused rings (an atom counted once) */
  for (int pass = 0; pass < 2; pass++)
    for (int r = 0; r < nrings; r++)
      for (int r2 = pass ? r + 1 : r; r2 < (pass ? nrings : r + 1); r2++) {
        int set[16], ns = 0, shared = 0;
        for (int i = 0; i < rings[r].n; i++) set[ns++] = rings[r].a[i];
        if (r2 != r) {
          for (int i = 0; i < rings[r2].n; i++) {
            int dup = 0;
            for (int j = 0; j < rings[r].n; j++) dup |= rings[r].a[j] == rings[r2].a[i];
            if (dup) shared++;
            else set[ns++] = rings[r2].a[i];
          }
          if (shared < 2) continue;
        }
        if (rings[r].n < 5 || rings[r].n > 7 || (r2 != r && (rings[r2].n < 5 || rings[r2].n > 7))) continue;
        int all = 1;
        for (int i = 0; i < ns; i++) all &= arom[set[i]];
        if (all) continue;
        int e = 0, ok = 1;
        for (int i = 0; i < ns && ok; i++) {
          int a = set[i], z = c->atoms[a].z, ch = c->atoms[a].charge;
          int dbl_ring = 0, dbl_exo = 0, triple = 0;
          for (int k = g.start[a]; k < g.start[a + 1]; k++) {
            int o = BO(k);
            if (o == 2) {
              if (inring[g.bond[k]]) dbl_ring = 1;
              else dbl_exo = 1;
            }
            if (o == 3) triple = 1;
            if (o == VL_CHEM_BOND_AROMATIC) dbl_ring = 1;
          }
          int deg = g.start[a + 1] - g.start[a] + impl[a];
          if (triple) ok = 0;
          else if (dbl_ring) e += 1;
          else if (z == 6 && dbl_exo) e += 0;
          else if ((z == 7 && deg == 3 && ch == 0) || (z == 7 && ch == -1) ||
                   ((z == 8 || z == 16 || z == 34) && ch == 0) || (z == 6 && ch == -1))
            e += 2;
          else if (z == 6 && ch == 1) e += 0;
          else ok = 0;
        }
        if (ok && e % 4 == 2)
          for (int i = 0; i < ns; i++) arom[set[i]] = 1;
      }
  /* Kekulé form of aromatic-typed bonds (SDF type 4, MOL2 ar), for the
     amide/amidine tests only: a matching of the atoms that need a double
     bond, greedy in atom order then augmenting paths. kek[b] = 2 marks a
     double. */
  kek = calloc((size_t)(nbonds + 1), sizeof *kek);
  need = calloc((size_t)n, sizeof *need);
  if (!kek || !need) {
    st = OOM();
    goto done;
  }
  for (int i = 0; i < n; i++) {
    int karom = 0, dbl = 0, z = c->atoms[i].z;
    for (int k = g.start[i]; k < g.start[i + 1]; k++) {
      if (BO(k) == VL_CHEM_BOND_AROMATIC) karom++;
      if (BO(k) == 2 || BO(k) == 3) dbl = 1;
    }
    int deg = g.start[i + 1] - g.start[i] + impl[i];
    if (!karom || dbl) continue;
    if (z == 6 && c->atoms[i].charge == 0) need[i] = 1;
    if (z == 7 && ((deg == 2 && c->atoms[i].charge == 0) || (deg == 3 && c->atoms[i].charge == 1))) need[i] = 1;
  }
  for (int i = 0; i < n; i++) {
    if (need[i] != 1) continue;
    for (int k = g.start[i]; k < g.start[i + 1]; k++)
      if (BO(k) == VL_CHEM_BOND_AROMATIC && need[g.nb[k]] == 1) {
        kek[g.bond[k]] = 2;
        need[i] = need[g.nb[k]] = 2;
        break;
      }
  }
  for (int i = 0; i < n; i++) {
    if (need[i] != 1) continue;
    /* augmenting path by BFS alternating unmatched / matched aromatic bonds */
    for (int j = 0; j < n; j++) prev[j] = -2;
    int qh = 0, qt = 0, end = -1;
    queue[qt++] = i;
    prev[i] = -1;
    while (qh < qt && end < 0) {
      int u = queue[qh++];
      for (int k = g.start[u]; k < g.start[u + 1] && end < 0; k++) {
        int v = g.nb[k];
        if (BO(k) != VL_CHEM_BOND_AROMATIC || !need[v] || kek[g.bond[k]] || prev[v] != -2) continue;
        prev[v] = u;
        if (need[v] == 1) {
          end = v;
          break;
        }
        for (int l = g.start[v]; l < g.start[v + 1]; l++)
          if (kek[g.bond[l]] == 2 && prev[g.nb[l]] == -2) {
            prev[g.nb[l]] = v;
            queue[qt++] = g.nb[l];
          }
      }
    }
    if (end < 0) continue;
    for (int v = end; prev[v] != -1;) {
      int u = prev[v];
      for (int k = g.start[u]; k < g.start[u + 1]; k++)
        if (g.nb[k] == v) kek[g.bond[k]] = kek[g.bond[k]] == 2 ? 0 : 2;
      v = u;
    }
    need[i] = need[end] = 2;
  }
  /* 5. the working graph: kept heavy atoms and polar H, then placed H */
  int nw = 0, nwcap = 0;
  for (int i = 0; i < n; i++)
    if (keep[i]) {
      const vl_chem_atom *a = &c->atoms[i];
      if (a->z == 1) {
        int polar = 1;
        for (int k = g.start[i]; k < g.start[i + 1]; k++)
          if (c->atoms[g.nb[k]].z == 6) polar = 0;
        if (!polar) {
          keep[i] = 0;
          inf.merged_h++;
          continue;
        }
      }
      nwcap += 1 + (a->z == 7 || a->z == 8 || a->z == 16 || a->z == 15 ? impl[i] : 0);
    }
  widx = malloc((size_t)n * sizeof *widx);
  wsrc = malloc((size_t)(nwcap + 1) * sizeof *wsrc);
  wx = malloc((size_t)(nwcap + 1) * sizeof *wx);
  wz = malloc((size_t)(nwcap + 1) * sizeof *wz);
  wtype_arom = calloc((size_t)(nwcap + 1), sizeof *wtype_arom);
  wnacc = calloc((size_t)(nwcap + 1), sizeof *wnacc);
  wcharge = calloc((size_t)(nwcap + 1), sizeof *wcharge);
  wb = malloc((size_t)(nbonds + nwcap + 1) * sizeof *wb);
  if (!widx || !wsrc || !wx || !wz || !wtype_arom || !wnacc || !wcharge || !wb) {
    st = OOM();
    goto done;
  }
  for (int i = 0; i < n; i++) {
    widx[i] = -1;
    if (!keep[i]) continue;
    const vl_chem_atom *a = &c->atoms[i];
    if (!ad_type(a->z, 0, 0, 0)) {
      st = vl_error(VL_EARG, "ligprep: %s:%d: element %s (atom %d) has no AutoDock type", c->source, a->line,
                    vl_chem_element_symbol(a->z), i + 1);
      goto done;
    }
    widx[i] = nw;
    wsrc[nw] = i;
    memcpy(wx[nw], a->xyz, sizeof wx[nw]);
    wz[nw] = a->z;
    wcharge[nw] = a->charge;
    wtype_arom[nw] = arom[i];
    nw++;
    if (a->z == 1) inf.polar_h++;
    else inf.heavy++;
    if (arom[i]) inf.aromatic++;
  }
  int nwb = 0;
  for (int k = 0; k < nbonds; k++) {
    int a = widx[bonds[k].a], b = widx[bonds[k].b];
    if (a < 0 || b < 0) continue;
    wb[nwb] = bonds[k];
    wb[nwb].a = a;
    wb[nwb].b = b;
    if (inring[k]) wb[nwb].order |= 0x100; /* ring flag, masked off below */
    if (kek[k] == 2) wb[nwb].order |= 0x200; /* Kekulé double of an aromatic bond */
    nwb++;
  }
  /* placed hydrogens */
  for (int i = 0; i < n; i++) {
    if (!keep[i] || !impl[i]) continue;
    int z = c->atoms[i].z;
    if (z != 7 && z != 8 && z != 16 && z != 15) continue;
    double nbx[8][3];
    int nn = 0, sp2 = arom[i];
    const double *ref = NULL;
    for (int k = g.start[i]; k < g.start[i + 1]; k++) {
      int j = g.nb[k];
      if (BO(k) >= 2) sp2 = 1;
      if (nn < 8) memcpy(nbx[nn++], c->atoms[j].xyz, sizeof nbx[0]);
      for (int l = g.start[j]; l < g.start[j + 1]; l++) {
        if (g.nb[l] != i && !ref) ref = c->atoms[g.nb[l]].xyz;
        if (BO(l) >= 2) sp2 = 1;
      }
    }
    double d = z == 7 ? 1.01 : z == 8 ? 0.96 : z == 16 ? 1.34 : 1.42;
    for (int h = 0; h < impl[i]; h++) {
      place_h(c->atoms[i].xyz, nbx, nn, ref, h, impl[i], sp2, d, wx[nw]);
      wsrc[nw] = -1;
      wz[nw] = 1;
      wb[nwb++] = (vl_chem_bond){widx[i], nw, 1};
      nw++;
      inf.polar_h++;
      inf.added_h++;
    }
  }
  if (graph_build(&w, nw, wb, nwb)) {
    st = OOM();
    goto done;
  }
  /* N acceptors (Open Babel: not [deg 4] and not [deg 3 and sp2]) */
  for (int v = 0; v < nw; v++) {
    if (wz[v] != 7) continue;
    int i = wsrc[v];
    int deg = w.start[v + 1] - w.start[v];
    int sp2 = wtype_arom[v];
    for (int k = w.start[v]; k < w.start[v + 1]; k++) {
      int o = wb[w.bond[k]].order & 0xff, u = w.nb[k];
      if (o >= 2) sp2 = 1;
      if (wz[u] == 1) continue;
      if (wtype_arom[u]) sp2 = 1;
      for (int l = w.start[u]; l < w.start[u + 1]; l++)
        if ((wb[w.bond[l]].order & 0xff) >= 2) sp2 = 1;
    }
    (void)i;
    if (deg >= 4) sp2 = 0;
    wnacc[v] = !((deg >= 4) || (deg == 3 && sp2));
  }
  /* 6. rotatable bonds */
  rot = calloc((size_t)(nwb + 1), sizeof *rot);
  if (!rot) {
    st = OOM();
    goto done;
  }
  for (int k = 0; k < nwb; k++) {
    int o = wb[k].order & 0xff, ringb = wb[k].order & 0x100;
    int a = wb[k].a, b = wb[k].b;
    if (o != 1 || ringb) continue;
    if (w.start[a + 1] - w.start[a] <= 1 || w.start[b + 1] - w.start[b] <= 1) continue;
    int cc = -1, nn = -1;
    if (wz[a] == 6 && wz[b] == 7) cc = a, nn = b;
    if (wz[a] == 7 && wz[b] == 6) cc = b, nn = a;
    if (cc >= 0 && w.start[nn + 1] - w.start[nn] == 3) {
      int amide = 0;
      for (int l = w.start[cc]; l < w.start[cc + 1]; l++) {
        int u = w.nb[l], ol = wb[w.bond[l]].order & 0xff;
        int dbl = ol == 2 || (wb[w.bond[l]].order & 0x200);
        if (dbl && wz[u] == 8) amide = 1; /* C(=O)-N */
        if (dbl && wz[u] == 7) amide = 1; /* C(=N)-N: amidine */
      }
      if (amide) continue;
    }
    rot[k] = 1;
  }
  /* rigid pieces, ordered by their lowest atom */
  frag = malloc((size_t)nw * sizeof *frag);
  fragstart = calloc((size_t)nw + 2, sizeof *fragstart);
  fragatoms = malloc((size_t)nw * sizeof *fragatoms);
  int *wq = malloc((size_t)nw * sizeof *wq);
  if (!frag || !fragstart || !fragatoms || !wq) {
    free(wq);
    st = OOM();
    goto done;
  }
  int nfrag = 0;
  for (int v = 0; v < nw; v++) frag[v] = -1;
  for (int s = 0; s < nw; s++) {
    if (frag[s] >= 0) continue;
    int qh = 0, qt = 0;
    wq[qt++] = s;
    frag[s] = nfrag;
    while (qh < qt) {
      int u = wq[qh++];
      for (int k = w.start[u]; k < w.start[u + 1]; k++)
        if (!rot[w.bond[k]] && frag[w.nb[k]] < 0) {
          frag[w.nb[k]] = nfrag;
          wq[qt++] = w.nb[k];
        }
    }
    nfrag++;
  }
  for (int v = 0; v < nw; v++) fragstart[frag[v] + 1]++;
  for (int f = 0; f < nfrag; f++) fragstart[f + 1] += fragstart[f];
  {
    int *fill = calloc((size_t)nfrag + 1, sizeof *fill);
    if (!fill) {
      free(wq);
      st = OOM();
      goto done;
    }
    for (int v = 0; v < nw; v++) fragatoms[fragstart[frag[v]] + fill[frag[v]]++] = v; /* ascending */
    free(fill);
  }
  /* 7. root atom: removal leaves the smallest largest piece */
  int root_atom = 0, bestmax = nw + 1;
  {
    int *seen = malloc((size_t)nw * sizeof *seen);
    if (!seen) {
      free(wq);
      st = OOM();
      goto done;
    }
    for (int r = 0; r < nw; r++) {
      for (int v = 0; v < nw; v++) seen[v] = 0;
      seen[r] = 1;
      int mx = 0;
      for (int s = 0; s < nw; s++) {
        if (seen[s]) continue;
        int qh = 0, qt = 0;
        wq[qt++] = s;
        seen[s] = 1;
        while (qh < qt) {
          int u = wq[qh++];
          for (int k = w.start[u]; k < w.start[u + 1]; k++)
            if (!seen[w.nb[k]]) {
              seen[w.nb[k]] = 1;
              wq[qt++] = w.nb[k];
            }
        }
        if (qt > mx) mx = qt;
      }
      if (mx < bestmax) {
        bestmax = mx;
        root_atom = r;
      }
    }
    free(seen);
  }
  free(wq);
  /* tree, depth first as Open Babel's ConstructTree */
  node_of_frag = malloc((size_t)nfrag * sizeof *node_of_frag);
  order = malloc((size_t)nfrag * sizeof *order); /* tree node -> fragment */
  parent = malloc((size_t)nfrag * sizeof *parent);
  conn_p = malloc((size_t)nfrag * sizeof *conn_p);
  conn_c = malloc((size_t)nfrag * sizeof *conn_c);
  kids = calloc((size_t)nfrag, sizeof *kids);
  int *done_ = calloc((size_t)nfrag, sizeof *done_);
  if (!node_of_frag || !order || !parent || !conn_p || !conn_c || !kids || !done_) {
    free(done_);
    st = OOM();
    goto done;
  }
  for (int f = 0; f < nfrag; f++) node_of_frag[f] = -1;
  int nnodes = 1;
  order[0] = frag[root_atom];
  node_of_frag[order[0]] = 0;
  parent[0] = -1;
  conn_p[0] = conn_c[0] = -1;
  {
    int pos = 0;
    while (!done_[0]) {
      if (done_[pos]) {
        pos--;
        continue;
      }
      int found = 0;
      int pf = order[pos];
      for (int f = 0; f < nfrag && !found; f++) {
        if (node_of_frag[f] >= 0) continue;
        for (int ia = fragstart[pf]; ia < fragstart[pf + 1] && !found; ia++) {
          int ra = fragatoms[ia];
          for (int jb = fragstart[f]; jb < fragstart[f + 1] && !found; jb++) {
            int bj = fragatoms[jb];
            for (int k = w.start[ra]; k < w.start[ra + 1]; k++)
              if (w.nb[k] == bj) {
                found = 1;
                break;
              }
            if (found) {
              int nd = nnodes++;
              order[nd] = f;
              node_of_frag[f] = nd;
              parent[nd] = pos;
              conn_p[nd] = ra;
              conn_c[nd] = bj;
              kids[pos]++;
              pos = nd;
            }
          }
        }
      }
      if (!found) done_[pos] = 1;
    }
  }
  free(done_);
  if (nnodes != nfrag) {
    st = vl_error(VL_EARG, "ligprep: %s: %d rigid pieces are not connected to the root", c->source, nfrag - nnodes);
    goto done;
  }
  inf.torsions = nfrag - 1;
  /* 8. PDBQT text */
  serial = malloc((size_t)nw * sizeof *serial);
  int *outsrc = malloc((size_t)(nw + 1) * sizeof *outsrc);
  if (!serial || !outsrc) {
    free(outsrc);
    st = OOM();
    goto done;
  }
  {
    int s = 1;
    for (int nd = 0; nd < nnodes; nd++) {
      int f = order[nd];
      for (int ia = fragstart[f]; ia < fragstart[f + 1]; ia++) {
        outsrc[s - 1] = wsrc[fragatoms[ia]];
        serial[fragatoms[ia]] = s++;
      }
    }
  }
#define EMIT(...)                                                                  \
  do {                                                                             \
    int need_ = snprintf(NULL, 0, __VA_ARGS__);                                    \
    if (olen + (size_t)need_ + 1 > ocap) {                                         \
      size_t nc_ = (olen + (size_t)need_ + 1) * 2;                                 \
      char *no_ = realloc(out, nc_);                                               \
      if (!no_) {                                                                  \
        free(outsrc);                                                              \
        st = OOM();                                                                \
        goto done;                                                                 \
      }                                                                            \
      out = no_;                                                                   \
      ocap = nc_;                                                                  \
    }                                                                              \
    snprintf(out + olen, ocap - olen, __VA_ARGS__);                                \
    olen += (size_t)need_;                                                         \
  } while (0)
  {
    char title[80];
    size_t tl = strlen(c->title) < sizeof title - 1 ? strlen(c->title) : sizeof title - 1;
    memcpy(title, c->title, tl);
    title[tl] = 0;
    for (char *p = title; *p; p++)
      if (*p == '\n' || *p == '\r') *p = ' ';
    EMIT("REMARK  Name = %s\n", title);
    EMIT("REMARK                            x       y       z     vdW  Elec       q    Type\n");
    EMIT("REMARK                         _______ _______ _______ _____ _____    ______ ____\n");
    int *left = malloc((size_t)nnodes * sizeof *left);
    if (!left) {
      free(outsrc);
      st = OOM();
      goto done;
    }
    memcpy(left, kids, (size_t)nnodes * sizeof *left);
    for (int nd = 0; nd < nnodes; nd++) {
      if (nd == 0) EMIT("ROOT\n");
      else EMIT("BRANCH%4d%4d\n", serial[conn_p[nd]], serial[conn_c[nd]]);
      int f = order[nd];
      for (int ia = fragstart[f]; ia < fragstart[f + 1]; ia++) {
        int v = fragatoms[ia];
        const char *sym = vl_chem_element_symbol(wz[v]);
        char nm[8];
        if (strlen(sym) == 1) snprintf(nm, sizeof nm, " %-3s", sym);
        else snprintf(nm, sizeof nm, "%-4s", sym);
        const char *t = ad_type(wz[v], wtype_arom[v], wnacc[v], wcharge[v]);
        EMIT("ATOM  %5d %-4.4s %-3s %c%4d%c   %8.3f%8.3f%8.3f  0.00  0.00    %+5.3f %-2s\n", serial[v], nm, "UNL",
             ' ', 1, ' ', wx[v][0], wx[v][1], wx[v][2], 0.0, t);
      }
      if (nd == 0) EMIT("ENDROOT\n");
      int j = nd;
      while (j != 0 && left[j] == 0) {
        EMIT("ENDBRANCH%4d%4d\n", serial[conn_p[j]], serial[conn_c[j]]);
        left[parent[j]]--;
        j = parent[j];
      }
    }
    free(left);
    EMIT("TORSDOF %d\n", nfrag - 1);
  }
#undef EMIT
  *text = out;
  *len = olen;
  out = NULL;
  if (srcmap) *srcmap = outsrc;
  else free(outsrc);
  if (nsrc) *nsrc = nw;
  if (info) *info = inf;
done:
  free(out);
  graph_free(&g);
  graph_free(&w);
  free(bonds);
  free(wb);
  free(prev);
  free(queue);
  free(path);
  free(comp);
  free(impl);
  free(arom);
  free(inring);
  free(keep);
  free(widx);
  free(wsrc);
  free(wx);
  free(wz);
  free(wtype_arom);
  free(wnacc);
  free(wcharge);
  free(rot);
  free(kek);
  free(need);
  free(frag);
  free(order);
  free(node_of_frag);
  free(parent);
  free(conn_p);
  free(conn_c);
  free(serial);
  free(kids);
  free(fragstart);
  free(fragatoms);
  free(rings);
  return st;
}

int vl_dock_ligprep(const vl_chem *c, vl_dock_mol *out, int **srcmap, vl_dock_prep_info *info) {
  memset(out, 0, sizeof *out);
  if (srcmap) *srcmap = NULL;
  char *text;
  size_t len;
  int *map = NULL, nmap = 0;
  int st = vl_dock_ligprep_pdbqt(c, &text, &len, &map, &nmap, info);
  if (st) return st;
  vl_dock_mol *mols = NULL;
  int n = 0;
  st = vl_dock_parse_ligands(text, len, c->source[0] ? c->source : "ligprep", &mols, &n);
  free(text);
  if (st) {
    free(map);
    return st;
  }
  if (n != 1) {
    vl_dock_mols_free(mols, n);
    free(map);
    return vl_error(VL_EARG, "ligprep: %s: internal PDBQT gave %d ligands", c->source, n);
  }
  *out = mols[0];
  free(mols);
  if (srcmap) *srcmap = map;
  else free(map);
  return VL_OK;
}
