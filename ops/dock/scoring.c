/*
** scoring.c — AutoDock Vina's scoring function: pair terms, Vina's
** tabulation of them, ligand-receptor and intramolecular energies with
** gradients, and the final affinity. See scoring.h for the formulas and
** the three methods (vina tables, exact, grid).
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "dock_internal.h"

void vl_dock_weights_default(vl_dock_weights *w) {
  w->gauss1 = -0.035579;
  w->gauss2 = -0.005156;
  w->repulsion = 0.840245;
  w->hydrophobic = -0.035069;
  w->hbond = -0.587439;
  w->rot = 0.05846;
}

static int hbond_possible(int t1, int t2) {
  return (vl_dock_xs_is_donor(t1) && vl_dock_xs_is_acceptor(t2)) || (vl_dock_xs_is_donor(t2) && vl_dock_xs_is_acceptor(t1));
}

/* 1 at or beyond `good`, 0 at or beyond `bad`, linear between. */
static double slope_step(double bad, double good, double x, double *dx) {
  *dx = 0;
  if (bad < good) {
    if (x <= bad) return 0;
    if (x >= good) return 1;
  } else {
    if (x >= bad) return 0;
    if (x <= good) return 1;
  }
  *dx = 1 / (good - bad);
  return (x - bad) / (good - bad);
}

void vl_dock_pair_terms(int t1, int t2, double r, double terms[VL_DOCK_NTERMS], double dterms[VL_DOCK_NTERMS]) {
  for (int k = 0; k < VL_DOCK_NTERMS; k++) {
    terms[k] = 0;
    if (dterms) dterms[k] = 0;
  }
  if (!(r < DOCK_CUTOFF) || t1 < 0 || t2 < 0 || t1 >= VL_DOCK_XS_COUNT || t2 >= VL_DOCK_XS_COUNT) return;
  double d = r - (vl_dock_xs_radius(t1) + vl_dock_xs_radius(t2));
  double x1 = d / 0.5, x2 = (d - 3.0) / 2.0;
  double g1 = exp(-x1 * x1), g2 = exp(-x2 * x2);
  terms[0] = g1;
  terms[1] = g2;
  terms[2] = d < 0 ? d * d : 0;
  double dh = 0, db = 0;
  if (vl_dock_xs_is_hydrophobic(t1) && vl_dock_xs_is_hydrophobic(t2)) terms[3] = slope_step(1.5, 0.5, d, &dh);
  if (hbond_possible(t1, t2)) terms[4] = slope_step(0, -0.7, d, &db);
  if (dterms) {
    dterms[0] = -2 * x1 / 0.5 * g1;
    dterms[1] = -2 * x2 / 2.0 * g2;
    dterms[2] = d < 0 ? 2 * d : 0;
    dterms[3] = dh;
    dterms[4] = db;
  }
}

double dock_pair_energy(const vl_dock_weights *w, int t1, int t2, double r, double *dedr) {
  double t[VL_DOCK_NTERMS], dt[VL_DOCK_NTERMS];
  vl_dock_pair_terms(t1, t2, r, t, dedr ? dt : NULL);
  double e = 0;
  /* summed in Vina's order */
  e += w->gauss1 * t[0];
  e += w->gauss2 * t[1];
  e += w->repulsion * t[2];
  e += w->hydrophobic * t[3];
  e += w->hbond * t[4];
  if (dedr)
    *dedr = w->gauss1 * dt[0] + w->gauss2 * dt[1] + w->repulsion * dt[2] + w->hydrophobic * dt[3] + w->hbond * dt[4];
  return e;
}

int dock_pair_index(int t1, int t2) {
  if (t1 > t2) {
    int t = t1;
    t1 = t2;
    t2 = t;
  }
  /* row t1 of the upper triangle starts after t1 rows of decreasing length */
  return t1 * VL_DOCK_XS_COUNT - t1 * (t1 - 1) / 2 + (t2 - t1);
}

int vl_dock_box_init(vl_dock_box *b, const double center[3], const double size[3], double spacing) {
  if (!(spacing > 0.01) || !(spacing <= 10))
    return vl_error(VL_EARG, "dock box: grid spacing %g Å (expected 0.01 < spacing <= 10, Vina's default 0.375)", spacing);
  for (int d = 0; d < 3; d++) {
    if (!isfinite(center[d]) || fabs(center[d]) > 1e5)
      return vl_error(VL_EARG, "dock box: center[%d] = %g (expected a finite coordinate, |x| <= 1e5 Å)", d + 1, center[d]);
    if (!(size[d] > 0) || !(size[d] <= 1000))
      return vl_error(VL_EARG, "dock box: size[%d] = %g Å (expected 0 < size <= 1000)", d + 1, size[d]);
  }
  memset(b, 0, sizeof *b);
  b->spacing = spacing;
  for (int d = 0; d < 3; d++) {
    b->center[d] = center[d];
    b->size[d] = size[d];
    b->n[d] = (int)ceil(size[d] / spacing);
    if (b->n[d] < 1) b->n[d] = 1;
    double span = spacing * b->n[d];
    b->lo[d] = center[d] - span / 2;
    b->hi[d] = b->lo[d] + span;
  }
  return VL_OK;
}

/* ---- the scorer ---- */

void dock_cells_around(const vl_dock_scorer *s, const double *p, int lo[3], int hi[3]) {
  for (int d = 0; d < 3; d++) {
    int c = (int)floor((p[d] - s->clo[d]) / DOCK_CUTOFF);
    lo[d] = c - 1 < 0 ? 0 : c - 1;
    hi[d] = c + 1 >= s->cdim[d] ? s->cdim[d] - 1 : c + 1;
  }
}

static int build_tables(vl_dock_scorer *s) {
  int n = (int)(DOCK_FACTOR * DOCK_CUTOFF2) + 3;
  s->ntab = n;
  size_t total = (size_t)DOCK_NPAIRS * (size_t)n;
  s->fast = malloc(total * sizeof *s->fast);
  s->se = malloc(total * sizeof *s->se);
  s->sd = malloc(total * sizeof *s->sd);
  double *rs = malloc((size_t)n * sizeof *rs);
  if (!s->fast || !s->se || !s->sd || !rs) {
    free(rs);
    return vl_error(VL_ENOMEM, "dock scorer: out of memory for the pair tables");
  }
  for (int i = 0; i < n; i++) rs[i] = sqrt(i / DOCK_FACTOR);
  for (int t1 = 0; t1 < VL_DOCK_XS_COUNT; t1++)
    for (int t2 = t1; t2 < VL_DOCK_XS_COUNT; t2++) {
      size_t off = (size_t)dock_pair_index(t1, t2) * (size_t)n;
      double *se = s->se + off, *sd = s->sd + off, *fast = s->fast + off;
      for (int i = 0; i < n; i++) se[i] = dock_pair_energy(&s->w, t1, t2, rs[i], NULL);
      for (int i = 0; i < n; i++) {
        if (i == 0 || i == n - 1) sd[i] = 0;
        else sd[i] = (se[i + 1] - se[i - 1]) / ((rs[i + 1] - rs[i - 1]) * rs[i]);
        double f2 = i + 1 >= n ? 0 : se[i + 1];
        fast[i] = (f2 + se[i]) / 2;
      }
    }
  free(rs);
  return VL_OK;
}

static int gather_receptor(vl_dock_scorer *s, const vl_dock_mol *rec) {
  const vl_dock_box *b = &s->box;
  int cnt = 0;
  for (int i = 0; i < rec->natoms; i++) {
    const vl_dock_atom *a = &rec->atoms[i];
    if (a->xs >= VL_DOCK_XS_COUNT) continue;
    int in = 1;
    for (int d = 0; d < 3; d++)
      if (a->xyz[d] < b->lo[d] - DOCK_CUTOFF || a->xyz[d] > b->hi[d] + DOCK_CUTOFF) in = 0;
    cnt += in;
  }
  int64_t ncell = 1;
  for (int d = 0; d < 3; d++) {
    s->clo[d] = b->lo[d] - DOCK_CUTOFF;
    s->cdim[d] = (int)floor((b->hi[d] - b->lo[d] + 2 * DOCK_CUTOFF) / DOCK_CUTOFF) + 1;
    ncell *= s->cdim[d];
  }
  s->nrec = cnt;
  s->rxyz = malloc((size_t)(cnt ? cnt : 1) * 3 * sizeof *s->rxyz);
  s->rxs = malloc((size_t)(cnt ? cnt : 1) * sizeof *s->rxs);
  s->cstart = calloc((size_t)ncell + 1, sizeof *s->cstart);
  int *cell = malloc((size_t)(cnt ? cnt : 1) * sizeof *cell);
  int *fill = malloc((size_t)ncell * sizeof *fill);
  if (!s->rxyz || !s->rxs || !s->cstart || !cell || !fill) {
    free(cell);
    free(fill);
    return vl_error(VL_ENOMEM, "dock scorer: out of memory for the receptor (%d atoms)", cnt);
  }
  int k = 0;
  for (int i = 0; i < rec->natoms; i++) {
    const vl_dock_atom *a = &rec->atoms[i];
    if (a->xs >= VL_DOCK_XS_COUNT) continue;
    int in = 1, c[3];
    for (int d = 0; d < 3; d++) {
      if (a->xyz[d] < b->lo[d] - DOCK_CUTOFF || a->xyz[d] > b->hi[d] + DOCK_CUTOFF) in = 0;
      c[d] = (int)floor((a->xyz[d] - s->clo[d]) / DOCK_CUTOFF);
      if (c[d] < 0) c[d] = 0;
      if (c[d] >= s->cdim[d]) c[d] = s->cdim[d] - 1;
    }
    if (!in) continue;
    cell[k] = (c[0] * s->cdim[1] + c[1]) * s->cdim[2] + c[2];
    s->cstart[cell[k] + 1]++;
    k++;
  }
  for (int64_t c = 0; c < ncell; c++) s->cstart[c + 1] += s->cstart[c];
  for (int64_t c = 0; c < ncell; c++) fill[c] = s->cstart[c];
  k = 0;
  for (int i = 0; i < rec->natoms; i++) {
    const vl_dock_atom *a = &rec->atoms[i];
    if (a->xs >= VL_DOCK_XS_COUNT) continue;
    int in = 1;
    for (int d = 0; d < 3; d++)
      if (a->xyz[d] < b->lo[d] - DOCK_CUTOFF || a->xyz[d] > b->hi[d] + DOCK_CUTOFF) in = 0;
    if (!in) continue;
    int slot = fill[cell[k]]++;
    for (int d = 0; d < 3; d++) s->rxyz[3 * slot + d] = a->xyz[d];
    s->rxs[slot] = a->xs;
    k++;
  }
  free(cell);
  free(fill);
  return VL_OK;
}

vl_dock_scorer *vl_dock_scorer_new(const vl_dock_mol *rec, const vl_dock_box *box, const vl_dock_weights *w) {
  if (!rec || !box) {
    vl_error(VL_EARG, "dock scorer: receptor and box are required");
    return NULL;
  }
  if (rec->is_ligand) {
    vl_error(VL_EARG, "dock scorer: %s is a ligand (expected a receptor)", rec->source);
    return NULL;
  }
  vl_dock_scorer *s = calloc(1, sizeof *s);
  if (!s) {
    vl_error(VL_ENOMEM, "dock scorer: out of memory");
    return NULL;
  }
  if (w) s->w = *w;
  else vl_dock_weights_default(&s->w);
  s->box = *box;
  if (build_tables(s) || gather_receptor(s, rec)) {
    vl_dock_scorer_free(s);
    return NULL;
  }
  return s;
}

void vl_dock_scorer_free(vl_dock_scorer *s) {
  if (!s) return;
  free(s->rxyz);
  free(s->rxs);
  free(s->cstart);
  free(s->fast);
  free(s->se);
  free(s->sd);
  for (int t = 0; t < VL_DOCK_XS_COUNT; t++) free(s->grid[t]);
  free(s);
}

const vl_dock_box *vl_dock_scorer_box(const vl_dock_scorer *s) { return &s->box; }
const vl_dock_weights *vl_dock_scorer_weights(const vl_dock_scorer *s) { return &s->w; }

/* ---- energies ---- */

int vl_dock_outside(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz) {
  for (int i = 0; i < lig->natoms; i++) {
    if (lig->atoms[i].xs >= VL_DOCK_XS_COUNT) continue;
    for (int d = 0; d < 3; d++)
      if (!(xyz[3 * i + d] >= s->box.lo[d] && xyz[3 * i + d] <= s->box.hi[d])) return i;
  }
  return -1;
}

int dock_grid_eval(const vl_dock_scorer *s, int t, const double *p, double slope, double *e, double *g);

/* Unweighted terms of one pair: analytic (exact), or as Vina's "fast"
   table would hold each term alone (vina, grid). */
static void add_terms(int t1, int t2, double r2, int method, double *terms) {
  double a[VL_DOCK_NTERMS], b[VL_DOCK_NTERMS];
  if (method == VL_DOCK_EXACT) {
    vl_dock_pair_terms(t1, t2, sqrt(r2), a, NULL);
    for (int k = 0; k < VL_DOCK_NTERMS; k++) terms[k] += a[k];
    return;
  }
  double i = floor(DOCK_FACTOR * r2);
  vl_dock_pair_terms(t1, t2, sqrt(i / DOCK_FACTOR), a, NULL);
  vl_dock_pair_terms(t1, t2, sqrt((i + 1) / DOCK_FACTOR), b, NULL);
  for (int k = 0; k < VL_DOCK_NTERMS; k++) terms[k] += (a[k] + b[k]) / 2;
}

int vl_dock_inter(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz, int method, double slope,
                  double *e_out, double *terms, double *grad) {
  if (method != VL_DOCK_VINA && method != VL_DOCK_EXACT && method != VL_DOCK_GRID)
    return vl_error(VL_EARG, "dock inter: unknown method %d (expected vina, exact or grid)", method);
  if (terms)
    for (int k = 0; k < VL_DOCK_NTERMS; k++) terms[k] = 0;
  double e = 0;
  for (int i = 0; i < lig->natoms; i++) {
    int t1 = lig->atoms[i].xs;
    if (t1 >= VL_DOCK_XS_COUNT) continue;
    const double *x = &xyz[3 * i];
    for (int d = 0; d < 3; d++)
      if (!isfinite(x[d])) return vl_error(VL_EARG, "dock inter: atom %d coordinate is not finite", i + 1);
    if (method == VL_DOCK_GRID) {
      double ea, ga[3];
      int st = dock_grid_eval(s, t1, x, slope, &ea, grad ? ga : NULL);
      if (st) return st;
      e += ea;
      if (grad)
        for (int d = 0; d < 3; d++) grad[3 * i + d] += ga[d];
    }
    double adj[3], pen = 0, pen_g[3] = {0, 0, 0};
    for (int d = 0; d < 3; d++) {
      adj[d] = x[d];
      if (x[d] < s->box.lo[d]) {
        adj[d] = s->box.lo[d];
        pen += s->box.lo[d] - x[d];
        pen_g[d] = -slope;
      } else if (x[d] > s->box.hi[d]) {
        adj[d] = s->box.hi[d];
        pen += x[d] - s->box.hi[d];
        pen_g[d] = slope;
      }
    }
    int need_pairs = method != VL_DOCK_GRID || terms;
    if (!need_pairs) continue;
    double this_e = 0, g[3] = {0, 0, 0};
    int lo[3], hi[3];
    dock_cells_around(s, adj, lo, hi);
    for (int cx = lo[0]; cx <= hi[0]; cx++)
      for (int cy = lo[1]; cy <= hi[1]; cy++)
        for (int cz = lo[2]; cz <= hi[2]; cz++) {
          int c = (cx * s->cdim[1] + cy) * s->cdim[2] + cz;
          for (int j = s->cstart[c]; j < s->cstart[c + 1]; j++) {
            const double *y = &s->rxyz[3 * j];
            double r[3] = {adj[0] - y[0], adj[1] - y[1], adj[2] - y[2]};
            double r2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
            if (!(r2 < DOCK_CUTOFF2)) continue;
            int t2 = s->rxs[j];
            if (terms) add_terms(t1, t2, r2, method, terms);
            if (method == VL_DOCK_GRID) continue;
            if (method == VL_DOCK_VINA) {
              int pi = dock_pair_index(t1, t2);
              if (!grad) {
                this_e += dock_fast(s, pi, r2);
              } else {
                double rf = DOCK_FACTOR * r2;
                size_t i1 = (size_t)rf;
                double rem = rf - (double)i1;
                size_t off = (size_t)pi * s->ntab;
                double ev = s->se[off + i1] + rem * (s->se[off + i1 + 1] - s->se[off + i1]);
                double dor = s->sd[off + i1] + rem * (s->sd[off + i1 + 1] - s->sd[off + i1]);
                this_e += ev;
                for (int d = 0; d < 3; d++) g[d] += dor * r[d];
              }
            } else {
              double rr = sqrt(r2), dedr;
              this_e += dock_pair_energy(&s->w, t1, t2, rr, grad ? &dedr : NULL);
              if (grad && rr > 0)
                for (int d = 0; d < 3; d++) g[d] += dedr * r[d] / rr;
            }
          }
        }
    if (method == VL_DOCK_GRID) continue;
    dock_curl(&this_e, grad ? g : NULL, DOCK_CURL);
    e += this_e + pen * slope;
    if (grad)
      for (int d = 0; d < 3; d++) grad[3 * i + d] += g[d] + pen_g[d];
  }
  *e_out = e;
  return VL_OK;
}

int vl_dock_intra(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz, int method, double *e_out,
                  double *terms, double *grad) {
  if (terms)
    for (int k = 0; k < VL_DOCK_NTERMS; k++) terms[k] = 0;
  double e = 0;
  for (int p = 0; p < lig->npairs; p++) {
    int a = lig->pairs[p].a, b = lig->pairs[p].b;
    int t1 = lig->atoms[a].xs, t2 = lig->atoms[b].xs;
    double r[3] = {xyz[3 * b] - xyz[3 * a], xyz[3 * b + 1] - xyz[3 * a + 1], xyz[3 * b + 2] - xyz[3 * a + 2]};
    double r2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
    if (!(r2 < DOCK_CUTOFF2)) continue;
    if (terms) add_terms(t1, t2, r2, method, terms);
    double pe, f[3] = {0, 0, 0};
    int pi = dock_pair_index(t1, t2);
    if (method == VL_DOCK_EXACT) {
      double rr = sqrt(r2), dedr;
      pe = dock_pair_energy(&s->w, t1, t2, rr, grad ? &dedr : NULL);
      if (grad && rr > 0)
        for (int d = 0; d < 3; d++) f[d] = dedr * r[d] / rr;
    } else if (!grad) {
      pe = dock_fast(s, pi, r2);
    } else {
      double rf = DOCK_FACTOR * r2;
      size_t i1 = (size_t)rf;
      double rem = rf - (double)i1;
      size_t off = (size_t)pi * s->ntab;
      pe = s->se[off + i1] + rem * (s->se[off + i1 + 1] - s->se[off + i1]);
      double dor = s->sd[off + i1] + rem * (s->sd[off + i1 + 1] - s->sd[off + i1]);
      for (int d = 0; d < 3; d++) f[d] = dor * r[d];
    }
    dock_curl(&pe, grad ? f : NULL, DOCK_CURL);
    e += pe;
    if (grad)
      for (int d = 0; d < 3; d++) {
        grad[3 * a + d] -= f[d];
        grad[3 * b + d] += f[d];
      }
  }
  *e_out = e;
  return VL_OK;
}

int vl_dock_score(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz, int method, double unbound,
                  vl_dock_energy *out) {
  if (!lig->is_ligand) return vl_error(VL_EARG, "dock score: %s is a receptor (expected a ligand)", lig->source);
  if (lig->natoms == 0) return vl_error(VL_EARG, "dock score: %s has no atoms", lig->source);
  double *own = NULL;
  if (!xyz) {
    own = malloc((size_t)lig->natoms * 3 * sizeof *own);
    if (!own) return vl_error(VL_ENOMEM, "dock score: out of memory");
    for (int i = 0; i < lig->natoms; i++)
      for (int d = 0; d < 3; d++) own[3 * i + d] = lig->atoms[i].xyz[d];
    xyz = own;
  }
  int st = VL_OK;
  int out_i = vl_dock_outside(s, lig, xyz);
  if (out_i >= 0) {
    const vl_dock_atom *a = &lig->atoms[out_i];
    const vl_dock_box *b = &s->box;
    st = vl_error(VL_EARG,
                  "dock score: ligand atom %d (%s, line %d of %s) at (%.3f, %.3f, %.3f) is outside the box "
                  "[%.3f, %.3f] x [%.3f, %.3f] x [%.3f, %.3f] (enlarge or move the box)",
                  a->serial, a->name, a->line, lig->source, xyz[3 * out_i], xyz[3 * out_i + 1], xyz[3 * out_i + 2],
                  b->lo[0], b->hi[0], b->lo[1], b->hi[1], b->lo[2], b->hi[2]);
    goto done;
  }
  if (method == VL_DOCK_GRID) {
    for (int i = 0; i < lig->natoms; i++) {
      int t = lig->atoms[i].xs;
      if (t < VL_DOCK_XS_COUNT && !s->grid[t]) {
        st = vl_error(VL_ESTATE, "dock score: no grid map for type %s (compute the maps first)", vl_dock_xs_name(t));
        goto done;
      }
    }
  }
  memset(out, 0, sizeof *out);
  st = vl_dock_inter(s, lig, xyz, method, 1e6, &out->inter, out->terms, NULL);
  if (st) goto done;
  st = vl_dock_intra(s, lig, xyz, method, &out->intra, out->intra_terms, NULL);
  if (st) goto done;
  out->unbound = isnan(unbound) ? out->intra : unbound;
  out->nrot = lig->nrot;
  double x = out->inter + out->intra - out->unbound;
  double den = 1 + s->w.rot * lig->nrot;
  out->affinity = fabs(x) < 2.220446049250313e-16 ? 0 : x / den;
  out->torsional = out->affinity - x;
done:
  free(own);
  return st;
}
