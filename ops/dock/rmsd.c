/*
** rmsd.c — heavy-atom RMSD between two poses of one molecule, in place (no
** superposition), optionally the minimum over the automorphisms of the
** heavy-atom graph (vertices labelled by element, edges by bond order with
** aromatic a label of its own unless ignore_orders).
**
** Automorphisms are enumerated VF2-style: heavy atoms are matched in a
** breadth-first order; a candidate image must have the same element and
** heavy degree, be unused, and agree (bond present, same label) with every
** already matched neighbour. Branch and bound: a partial assignment whose
** squared-distance sum already reaches the best full one is cut, and the
** identity is tried first, so typical ligands visit few leaves. More than
** max_automorphisms complete mappings (or 64 x that many search nodes)
** stops with VL_EARG naming the limit, never a silent partial answer.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "io.h"

typedef struct rs {
  int n;          /* heavy atoms */
  int *el;        /* element */
  int *deg;
  int *lab;       /* n x n edge labels, 0 = none */
  int *seq;       /* matching order (heavy indices) */
  int *map;       /* seq position -> image */
  int *used;
  const double *a, *b; /* heavy coords, n x 3 */
  double best;
  long leaves, nodes, max_leaves, max_nodes;
  int over;
} rs;

static double d2(const double *p, const double *q) {
  double x = p[0] - q[0], y = p[1] - q[1], z = p[2] - q[2];
  return x * x + y * y + z * z;
}

static void search(rs *s, int pos, double sum, int *img) {
  if (s->over) return;
  if (++s->nodes > s->max_nodes) {
    s->over = 1;
    return;
  }
  if (sum >= s->best) return;
  if (pos == s->n) {
    s->best = sum;
    if (++s->leaves > s->max_leaves) s->over = 1;
    return;
  }
  int v = s->seq[pos];
  for (int t = 0; t < s->n && !s->over; t++) {
    int c = t == 0 ? v : t == v ? 0 : t; /* the identity image first */
    if (s->used[c] || s->el[c] != s->el[v] || s->deg[c] != s->deg[v]) continue;
    int ok = 1;
    for (int q = 0; q < pos && ok; q++) {
      int u = s->seq[q];
      if (s->lab[(size_t)u * s->n + v] != s->lab[(size_t)img[u] * s->n + c]) ok = 0;
    }
    if (!ok) continue;
    s->used[c] = 1;
    img[v] = c;
    search(s, pos + 1, sum + d2(s->a + 3 * v, s->b + 3 * c), img);
    s->used[c] = 0;
  }
}

/* The heavy-atom graph both molecule kinds reduce to: natoms atoms with a
   label each (-1 for a hydrogen, left out), bonds as (a, b, order). */
typedef struct graph {
  int natoms;
  const int *label;
  int nbonds;
  const int *bonds; /* nbonds x 3: a, b, order (0: unknown) */
} graph;

static int graph_rmsd(const graph *m, const double *xyz_a, const double *xyz_b, int symmetry, int ignore_orders,
                      long max_automorphisms, double *rmsd, long *count) {
  if (count) *count = 0;
  if (m->natoms <= 0) return vl_error(VL_EARG, "rmsd: the molecule has no atoms");
  int n = 0;
  for (int i = 0; i < m->natoms; i++) n += m->label[i] >= 0;
  if (n == 0) return vl_error(VL_EARG, "rmsd: the molecule has no heavy atoms");
  if (n > 2000) return vl_error(VL_EARG, "rmsd: %d heavy atoms (at most 2000: the symmetry search is for ligands)", n);
  int *hidx = malloc((size_t)m->natoms * sizeof *hidx);
  double *a = malloc((size_t)n * 3 * sizeof *a), *b = malloc((size_t)n * 3 * sizeof *b);
  if (!hidx || !a || !b) {
    free(hidx);
    free(a);
    free(b);
    return vl_error(VL_ENOMEM, "rmsd: out of memory");
  }
  int k = 0;
  for (int i = 0; i < m->natoms; i++) {
    hidx[i] = -1;
    if (m->label[i] < 0) continue;
    hidx[i] = k;
    memcpy(a + 3 * k, xyz_a + 3 * i, 3 * sizeof(double));
    memcpy(b + 3 * k, xyz_b + 3 * i, 3 * sizeof(double));
    k++;
  }
  double plain = 0;
  for (int i = 0; i < n; i++) plain += d2(a + 3 * i, b + 3 * i);
  int st = VL_OK;
  if (!symmetry) {
    *rmsd = sqrt(plain / n);
    if (count) *count = 1;
    goto out;
  }
  rs s;
  memset(&s, 0, sizeof s);
  s.n = n;
  s.el = malloc((size_t)n * sizeof(int));
  s.deg = calloc((size_t)n, sizeof(int));
  s.lab = calloc((size_t)n * (size_t)n, sizeof(int));
  s.seq = malloc((size_t)n * sizeof(int));
  s.used = calloc((size_t)n, sizeof(int));
  int *img = malloc((size_t)n * sizeof(int));
  int *seen = calloc((size_t)n, sizeof(int));
  if (!s.el || !s.deg || !s.lab || !s.seq || !s.used || !img || !seen) {
    st = vl_error(VL_ENOMEM, "rmsd: out of memory (%d heavy atoms)", n);
    goto sdone;
  }
  for (int i = 0; i < m->natoms; i++)
    if (hidx[i] >= 0) s.el[hidx[i]] = m->label[i];
  for (int e = 0; e < m->nbonds; e++) {
    const int *bd = m->bonds + 3 * e;
    if (bd[0] < 0 || bd[0] >= m->natoms || bd[1] < 0 || bd[1] >= m->natoms) continue;
    int u = hidx[bd[0]], v = hidx[bd[1]];
    if (u < 0 || v < 0) continue;
    int l = ignore_orders ? 1 : bd[2];
    if (l <= 0) l = 1;
    if (!s.lab[(size_t)u * n + v]) {
      s.deg[u]++;
      s.deg[v]++;
    }
    s.lab[(size_t)u * n + v] = s.lab[(size_t)v * n + u] = l;
  }
  /* breadth-first matching order, component by component */
  int q = 0;
  for (int r = 0; r < n; r++) {
    if (seen[r]) continue;
    int h = q;
    s.seq[q++] = r;
    seen[r] = 1;
    while (h < q) {
      int u = s.seq[h++];
      for (int v = 0; v < n; v++)
        if (s.lab[(size_t)u * n + v] && !seen[v]) {
          seen[v] = 1;
          s.seq[q++] = v;
        }
    }
  }
  s.a = a;
  s.b = b;
  s.best = INFINITY;
  s.max_leaves = max_automorphisms > 0 ? max_automorphisms : VL_RMSD_MAX_AUTOMORPHISMS;
  s.max_nodes = 64 * s.max_leaves + 64L * n;
  search(&s, 0, 0.0, img);
  if (s.over) {
    st = vl_error(VL_EARG,
                  "rmsd: more than %ld automorphisms (or %ld search steps) for %d heavy atoms; raise "
                  "max_automorphisms or use symmetry = false",
                  s.max_leaves, s.max_nodes, n);
    goto sdone;
  }
  *rmsd = sqrt((isfinite(s.best) ? s.best : plain) / n);
  if (count) *count = s.leaves;
sdone:
  free(s.el);
  free(s.deg);
  free(s.lab);
  free(s.seq);
  free(s.used);
  free(img);
  free(seen);
out:
  free(hidx);
  free(a);
  free(b);
  return st;
}

/* label and bond arrays for a molecule of natoms atoms and nbonds bonds */
static int graph_alloc(graph *g, int natoms, int nbonds, int **label, int **bonds) {
  *label = malloc((size_t)(natoms > 0 ? natoms : 1) * sizeof **label);
  *bonds = malloc((size_t)(nbonds > 0 ? nbonds : 1) * 3 * sizeof **bonds);
  if (!*label || !*bonds) {
    free(*label);
    free(*bonds);
    return vl_error(VL_ENOMEM, "rmsd: out of memory");
  }
  *g = (graph){natoms, *label, nbonds, *bonds};
  return VL_OK;
}

int vl_chem_rmsd(const vl_chem *m, const double *xyz_a, const double *xyz_b, int symmetry, int ignore_orders,
                 long max_automorphisms, double *rmsd, long *count) {
  if (count) *count = 0;
  if (!m || m->natoms <= 0) return vl_error(VL_EARG, "rmsd: the molecule has no atoms");
  graph g;
  int *label, *bonds;
  if (graph_alloc(&g, m->natoms, m->nbonds, &label, &bonds)) return VL_ENOMEM;
  for (int i = 0; i < m->natoms; i++) label[i] = m->atoms[i].z == 1 ? -1 : m->atoms[i].z;
  for (int e = 0; e < m->nbonds; e++) {
    bonds[3 * e] = m->bonds[e].a;
    bonds[3 * e + 1] = m->bonds[e].b;
    bonds[3 * e + 2] = m->bonds[e].order;
  }
  int st = graph_rmsd(&g, xyz_a, xyz_b, symmetry, ignore_orders, max_automorphisms, rmsd, count);
  free(label);
  free(bonds);
  return st;
}

int vl_dock_mol_rmsd(const vl_dock_mol *m, const double *xyz_a, const double *xyz_b, int symmetry,
                     long max_automorphisms, double *rmsd, long *count) {
  if (count) *count = 0;
  if (!m || m->natoms <= 0) return vl_error(VL_EARG, "rmsd: the molecule has no atoms");
  graph g;
  int *label, *bonds;
  if (graph_alloc(&g, m->natoms, m->nbonds, &label, &bonds)) return VL_ENOMEM;
  for (int i = 0; i < m->natoms; i++) label[i] = m->atoms[i].el == VL_DOCK_EL_H ? -1 : m->atoms[i].el;
  for (int e = 0; e < m->nbonds; e++) {
    bonds[3 * e] = m->bonds[e].a;
    bonds[3 * e + 1] = m->bonds[e].b;
    bonds[3 * e + 2] = 0; /* PDBQT has no bond orders: connectivity only */
  }
  int st = graph_rmsd(&g, xyz_a, xyz_b, symmetry, 1, max_automorphisms, rmsd, count);
  free(label);
  free(bonds);
  return st;
}
