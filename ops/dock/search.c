/*
** search.c — Vina's Monte Carlo global search (see search.h).
**
** The inner loop is allocation free: each thread owns a workspace (pose
** buffers, coordinates, forces, BFGS matrices), the ligand is turned once
** into a flat model (per-atom map pointers, coordinates relative to each
** rigid body's origin, intramolecular pairs with their table offsets),
** and the energy (grid maps, trilinear, curled; Vina's smooth pair table
** for the intramolecular pairs) and its gradient with respect to the pose
** are computed in one pass.
**
** Per run, as Vina 1.2.3: start from a random pose (position uniform in
** the box, uniformly random orientation, torsions uniform in [-pi, pi));
** steps = 105 (50 + natoms + 10 (6 + ntorsions)); each step mutates one
** of position (+ 2 Å * a random point in the unit ball), orientation
** (rotation vector 2 / gyration radius * a point in the unit ball) or one
** torsion (a new uniform angle), runs BFGS ((25 + natoms) / 3 steps,
** energies curled at 10), accepts by Metropolis at T = 1.2; an accepted
** pose better than the run's best (or while the container is not full)
** is optimised again with uncapped energies (curl 1000) and offered to
** the container (replacing a pose within min_rmsd if better).
**
** Three departures from Vina, all options: the number of steps is
** multiplied by steps_scale (default 0.6), the BFGS of a mutated pose
** stops once a step gains less than ftol (default 1e-3 kcal/mol), and the
** BFGS has the safeguards listed at bfgs() (vina_bfgs = 1 turns them off); with
** steps_scale = 1, ftol = 0 and vina_bfgs = 1 the search is Vina's.
** scripts/bench/dock.lua measures what the defaults cost in redocking
** success and gain in time.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../vl.h"
#include "dock_internal.h"
#include "search.h"

#define PI 3.14159265358979323846
#define EPS 2.220446049250313e-16
#define HUNT_CAP 10.0
#define TEMPERATURE 1.2
#define AMPLITUDE 2.0
#define SLOPE 1e6

void vl_dock_search_opt_default(vl_dock_search_opt *o) {
  memset(o, 0, sizeof *o);
  o->exhaustiveness = 8;
  o->num_modes = 9;
  o->energy_range = 3;
  o->min_rmsd = 1;
  o->steps_scale = 0.6;
  o->ftol = 1e-3;
  o->refine = 1;
}

/* ---- random numbers: splitmix64 seeding a xoshiro256** per run ---- */

typedef struct rng {
  uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, uint64_t run) {
  uint64_t x = seed ^ (0xD1B54A32D192ED03ull * (run + 1));
  for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
  uint64_t *s = r->s;
  uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return res;
}

/* uniform in [0, 1) */
static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static double rng_range(rng *r, double a, double b) { return a + (b - a) * rng_unit(r); }
static int rng_int(rng *r, int n) { return (int)(rng_unit(r) * n); }
static double rng_normal(rng *r) {
  double u = rng_unit(r), v = rng_unit(r);
  return sqrt(-2 * log(1 - u)) * cos(2 * PI * v);
}
static void rng_ball(rng *r, double *v) {
  for (;;) {
    for (int d = 0; d < 3; d++) v[d] = rng_range(r, -1, 1);
    if (v[0] * v[0] + v[1] * v[1] + v[2] * v[2] < 1) return;
  }
}

/* ---- the flat ligand model ---- */

typedef struct pairx {
  int a, b;
  const double *tab; /* Vina's smooth table for this type pair, packed: per sample
                        {e, e[i+1] - e[i], de/dr / r, its difference} */
} pairx;

typedef struct model {
  int n, nn, nt, P; /* atoms, nodes, torsions, pose length 7 + nt */
  const vl_dock_node *nodes;
  double *rel;      /* n x 3: atom - its node's origin (input geometry) */
  double *relorg;   /* nn x 3: node origin - parent origin (input) */
  double *axis;     /* nn x 3: unit axis axis_from -> axis_to (input) */
  const double **map; /* n: grid map per atom, NULL when not scored */
  int npairs;
  pairx *pairs;
  int ntabs;
  double *tabs;     /* packed tables of the type pairs in use */
  int nheavy;
  int *heavy;       /* heavy atom indices */
  int *el;          /* element per atom */
  /* grid geometry */
  double lo[3], factor[3], top[3];
  int dim[3];
  size_t sx, sy;
} model;

static void model_free(model *m) {
  free(m->rel);
  free(m->relorg);
  free(m->axis);
  free((void *)m->map);
  free(m->pairs);
  free(m->tabs);
  free(m->heavy);
  free(m->el);
}

static int model_init(model *m, const vl_dock_scorer *s, const vl_dock_mol *lig) {
  memset(m, 0, sizeof *m);
  int n = lig->natoms, nn = lig->nnodes;
  m->n = n;
  m->nn = nn;
  m->nt = nn - 1;
  m->P = 7 + m->nt;
  m->nodes = lig->nodes;
  m->rel = malloc((size_t)n * 3 * sizeof *m->rel);
  m->relorg = calloc((size_t)nn * 3, sizeof *m->relorg);
  m->axis = calloc((size_t)nn * 3, sizeof *m->axis);
  m->map = malloc((size_t)n * sizeof *m->map);
  m->pairs = malloc((size_t)(lig->npairs ? lig->npairs : 1) * sizeof *m->pairs);
  m->heavy = malloc((size_t)n * sizeof *m->heavy);
  m->el = malloc((size_t)n * sizeof *m->el);
  if (!m->rel || !m->relorg || !m->axis || !m->map || !m->pairs || !m->heavy || !m->el) {
    model_free(m);
    return vl_error(VL_ENOMEM, "dock search: out of memory for a %d-atom ligand", n);
  }
  const vl_dock_atom *at = lig->atoms;
  const double *o0 = at[lig->nodes[0].begin].xyz;
  for (int k = 0; k < nn; k++) {
    const vl_dock_node *nd = &lig->nodes[k];
    const double *ro = k == 0 ? o0 : at[nd->axis_to].xyz;
    if (k > 0) {
      const vl_dock_node *p = &lig->nodes[nd->parent];
      const double *po = p->parent < 0 ? o0 : at[p->axis_to].xyz;
      double ax[3], l = 0;
      for (int d = 0; d < 3; d++) {
        m->relorg[3 * k + d] = at[nd->axis_to].xyz[d] - po[d];
        ax[d] = at[nd->axis_to].xyz[d] - at[nd->axis_from].xyz[d];
        l += ax[d] * ax[d];
      }
      l = sqrt(l);
      if (!(l > 1e-9)) {
        model_free(m);
        return vl_error(VL_EFORMAT, "%s: branch axis atoms %d and %d coincide", lig->source, at[nd->axis_from].serial,
                        at[nd->axis_to].serial);
      }
      for (int d = 0; d < 3; d++) m->axis[3 * k + d] = ax[d] / l;
    }
    for (int i = nd->begin; i < nd->end; i++)
      for (int d = 0; d < 3; d++) m->rel[3 * i + d] = at[i].xyz[d] - ro[d];
  }
  for (int i = 0; i < n; i++) {
    int t = at[i].xs;
    m->map[i] = t < VL_DOCK_XS_COUNT ? s->grid[t] : NULL;
    m->el[i] = at[i].el;
    if (at[i].el != VL_DOCK_EL_H) m->heavy[m->nheavy++] = i;
  }
  int slot[DOCK_NPAIRS], used[DOCK_NPAIRS];
  for (int k = 0; k < DOCK_NPAIRS; k++) slot[k] = -1;
  for (int p = 0; p < lig->npairs; p++) {
    int t1 = at[lig->pairs[p].a].xs, t2 = at[lig->pairs[p].b].xs;
    if (t1 >= VL_DOCK_XS_COUNT || t2 >= VL_DOCK_XS_COUNT) continue;
    int pi = dock_pair_index(t1, t2);
    if (slot[pi] < 0) {
      slot[pi] = m->ntabs;
      used[m->ntabs++] = pi;
    }
  }
  const size_t nt4 = (size_t)s->ntab * 4;
  m->tabs = malloc((m->ntabs ? (size_t)m->ntabs : 1) * nt4 * sizeof *m->tabs);
  if (!m->tabs) {
    model_free(m);
    return vl_error(VL_ENOMEM, "dock search: out of memory for the pair tables");
  }
  for (int k = 0; k < m->ntabs; k++) {
    const double *se = s->se + (size_t)used[k] * s->ntab, *sd = s->sd + (size_t)used[k] * s->ntab;
    double *t = m->tabs + (size_t)k * nt4;
    for (int i = 0; i < s->ntab; i++) {
      int j = i + 1 < s->ntab ? i + 1 : i;
      t[4 * i] = se[i];
      t[4 * i + 1] = se[j] - se[i];
      t[4 * i + 2] = sd[i];
      t[4 * i + 3] = sd[j] - sd[i];
    }
  }
  for (int p = 0; p < lig->npairs; p++) {
    int a = lig->pairs[p].a, b = lig->pairs[p].b;
    int t1 = at[a].xs, t2 = at[b].xs;
    if (t1 >= VL_DOCK_XS_COUNT || t2 >= VL_DOCK_XS_COUNT) continue;
    m->pairs[m->npairs++] = (pairx){a, b, m->tabs + (size_t)slot[dock_pair_index(t1, t2)] * nt4};
  }
  for (int d = 0; d < 3; d++) {
    m->dim[d] = s->box.n[d] + 1;
    m->lo[d] = s->box.lo[d];
    m->factor[d] = s->box.n[d] / (s->box.hi[d] - s->box.lo[d]);
    m->top[d] = m->dim[d] - 1;
  }
  m->sy = (size_t)m->dim[2];
  m->sx = (size_t)m->dim[1] * (size_t)m->dim[2];
  return VL_OK;
}

/* ---- per-thread workspace ---- */

typedef struct ws {
  double *xyz, *dx;      /* n x 3 */
  double *R, *org;       /* nn x 9, nn x 3 */
  double *F, *T;         /* nn x 3 */
  double *h, *g, *gn, *p, *y, *hy; /* BFGS: N x N and N (N = 6 + nt) */
  double *xn, *x0;       /* poses (P) */
  double ftol;           /* stop BFGS once a step gains less than this (0: never) */
  int guarded;           /* BFGS safeguards (see bfgs) */
  long evals;
} ws;

static void ws_free(ws *w) {
  free(w->xyz);
  free(w->dx);
  free(w->R);
  free(w->org);
  free(w->F);
  free(w->T);
  free(w->h);
  free(w->g);
  free(w->gn);
  free(w->p);
  free(w->y);
  free(w->hy);
  free(w->xn);
  free(w->x0);
}

static int ws_init(ws *w, const model *m) {
  memset(w, 0, sizeof *w);
  size_t n3 = (size_t)m->n * 3, N = (size_t)(6 + m->nt);
  w->xyz = malloc(n3 * sizeof(double));
  w->dx = malloc(n3 * sizeof(double));
  w->R = malloc((size_t)m->nn * 9 * sizeof(double));
  w->org = malloc((size_t)m->nn * 3 * sizeof(double));
  w->F = malloc((size_t)m->nn * 3 * sizeof(double));
  w->T = malloc((size_t)m->nn * 3 * sizeof(double));
  w->h = malloc(N * N * sizeof(double));
  w->g = malloc(N * sizeof(double));
  w->gn = malloc(N * sizeof(double));
  w->p = malloc(N * sizeof(double));
  w->y = malloc(N * sizeof(double));
  w->hy = malloc(N * sizeof(double));
  w->xn = malloc((size_t)m->P * sizeof(double));
  w->x0 = malloc((size_t)m->P * sizeof(double));
  if (!w->xyz || !w->dx || !w->R || !w->org || !w->F || !w->T || !w->h || !w->g || !w->gn || !w->p || !w->y || !w->hy ||
      !w->xn || !w->x0) {
    ws_free(w);
    return vl_error(VL_ENOMEM, "dock search: out of memory for a workspace");
  }
  return VL_OK;
}

/* ---- coordinates, energy, gradient ---- */

static inline void mat_vec(const double *A, const double *v, double *o) {
  o[0] = A[0] * v[0] + A[1] * v[1] + A[2] * v[2];
  o[1] = A[3] * v[0] + A[4] * v[1] + A[5] * v[2];
  o[2] = A[6] * v[0] + A[7] * v[1] + A[8] * v[2];
}

static inline void cross(const double *a, const double *b, double *c) {
  c[0] = a[1] * b[2] - a[2] * b[1];
  c[1] = a[2] * b[0] - a[0] * b[2];
  c[2] = a[0] * b[1] - a[1] * b[0];
}

/* pose x = [pos 3, q 4, tors nt] -> w->xyz */
static void coords(const model *m, ws *w, const double *x) {
  const double *q = x + 3;
  double nq = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  double qw = q[0] / nq, qx = q[1] / nq, qy = q[2] / nq, qz = q[3] / nq;
  double *R = w->R, *org = w->org;
  R[0] = 1 - 2 * (qy * qy + qz * qz); R[1] = 2 * (qx * qy - qw * qz);     R[2] = 2 * (qx * qz + qw * qy);
  R[3] = 2 * (qx * qy + qw * qz);     R[4] = 1 - 2 * (qx * qx + qz * qz); R[5] = 2 * (qy * qz - qw * qx);
  R[6] = 2 * (qx * qz - qw * qy);     R[7] = 2 * (qy * qz + qw * qx);     R[8] = 1 - 2 * (qx * qx + qy * qy);
  org[0] = x[0];
  org[1] = x[1];
  org[2] = x[2];
  for (int k = 0; k < m->nn; k++) {
    const vl_dock_node *nd = &m->nodes[k];
    double *Rk = R + 9 * k, *ok = org + 3 * k;
    if (k > 0) {
      const double *Rp = R + 9 * nd->parent;
      double u[3], t[3];
      mat_vec(Rp, m->relorg + 3 * k, t);
      for (int d = 0; d < 3; d++) ok[d] = org[3 * nd->parent + d] + t[d];
      mat_vec(Rp, m->axis + 3 * k, u);
      double th = x[7 + k - 1], c = cos(th), s = sin(th), tc = 1 - c;
      double Rt[9] = {tc * u[0] * u[0] + c,        tc * u[0] * u[1] - s * u[2], tc * u[0] * u[2] + s * u[1],
                      tc * u[0] * u[1] + s * u[2], tc * u[1] * u[1] + c,        tc * u[1] * u[2] - s * u[0],
                      tc * u[0] * u[2] - s * u[1], tc * u[1] * u[2] + s * u[0], tc * u[2] * u[2] + c};
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) Rk[3 * i + j] = Rt[3 * i] * Rp[j] + Rt[3 * i + 1] * Rp[3 + j] + Rt[3 * i + 2] * Rp[6 + j];
    }
    for (int i = nd->begin; i < nd->end; i++) {
      double r[3];
      mat_vec(Rk, m->rel + 3 * i, r);
      w->xyz[3 * i] = ok[0] + r[0];
      w->xyz[3 * i + 1] = ok[1] + r[1];
      w->xyz[3 * i + 2] = ok[2] + r[2];
    }
  }
}

/* inter (grid maps, curled at v) + intra (smooth table, curled at v) of
   w->xyz; forces into w->dx */
static double energy_xyz(const model *m, ws *w, double v) {
  double e = 0;
  const double *xyz = w->xyz;
  double *dx = w->dx;
  for (int i = 0; i < m->n; i++) {
    double *gi = dx + 3 * i;
    const double *mp = m->map[i];
    if (!mp) {
      gi[0] = gi[1] = gi[2] = 0;
      continue;
    }
    double f[3], miss = 0;
    int a[3], region[3];
    for (int d = 0; d < 3; d++) {
      double sd = (xyz[3 * i + d] - m->lo[d]) * m->factor[d];
      if (!(sd >= 0)) { /* NaN too: the energy becomes NaN and the pose is rejected */
        miss -= sd / m->factor[d];
        region[d] = -1;
        a[d] = 0;
        f[d] = 0;
      } else if (sd >= m->top[d]) {
        miss += (sd - m->top[d]) / m->factor[d];
        region[d] = 1;
        a[d] = m->dim[d] - 2;
        f[d] = 1;
      } else {
        region[d] = 0;
        a[d] = (int)sd;
        f[d] = sd - a[d];
      }
      if (a[d] < 0) a[d] = 0;
    }
    const size_t sx = m->sx, sy = m->sy;
    const double *c = mp + a[0] * sx + a[1] * sy + a[2];
    double v000 = c[0], v001 = c[1], v010 = c[sy], v011 = c[sy + 1];
    double v100 = c[sx], v101 = c[sx + 1], v110 = c[sx + sy], v111 = c[sx + sy + 1];
    double X = f[0], Y = f[1], Z = f[2], mx = 1 - X, my = 1 - Y, mz = 1 - Z;
    /* interpolate along z, then y, then x */
    double c00 = v000 * mz + v001 * Z, c01 = v010 * mz + v011 * Z, c10 = v100 * mz + v101 * Z, c11 = v110 * mz + v111 * Z;
    double c0 = c00 * my + c01 * Y, c1 = c10 * my + c11 * Y;
    double val = c0 * mx + c1 * X;
    double gr[3];
    gr[0] = c1 - c0;
    gr[1] = (c01 - c00) * mx + (c11 - c10) * X;
    double d00 = v001 - v000, d01 = v011 - v010, d10 = v101 - v100, d11 = v111 - v110;
    gr[2] = (d00 * my + d01 * Y) * mx + (d10 * my + d11 * Y) * X;
    if (val > 0) {
      double t = v / (v + val);
      val *= t;
      gr[0] *= t * t;
      gr[1] *= t * t;
      gr[2] *= t * t;
    }
    for (int d = 0; d < 3; d++) gi[d] = (region[d] == 0 ? gr[d] * m->factor[d] : 0) + SLOPE * region[d];
    e += val + SLOPE * miss;
  }
  for (int p = 0; p < m->npairs; p++) {
    const pairx *pr = &m->pairs[p];
    const double *xa = xyz + 3 * pr->a, *xb = xyz + 3 * pr->b;
    double r[3] = {xb[0] - xa[0], xb[1] - xa[1], xb[2] - xa[2]};
    double r2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2];
    if (!(r2 < DOCK_CUTOFF2)) continue;
    double rf = DOCK_FACTOR * r2;
    size_t i1 = (size_t)rf;
    double rem = rf - (double)i1;
    const double *t = pr->tab + 4 * i1;
    double pe = t[0] + rem * t[1];
    double dor = t[2] + rem * t[3];
    if (pe > 0) {
      double t = v / (v + pe);
      pe *= t;
      dor *= t * t;
    }
    e += pe;
    double *ga = dx + 3 * pr->a, *gb = dx + 3 * pr->b;
    for (int d = 0; d < 3; d++) {
      ga[d] -= dor * r[d];
      gb[d] += dor * r[d];
    }
  }
  return e;
}

/* w->dx at w->xyz -> g[6 + nt] (force, torque about the root origin, torsion torques) */
static void pose_grad(const model *m, ws *w, double *g) {
  const double *xyz = w->xyz, *dx = w->dx;
  double *F = w->F, *T = w->T;
  memset(F, 0, (size_t)m->nn * 3 * sizeof *F);
  memset(T, 0, (size_t)m->nn * 3 * sizeof *T);
  for (int k = m->nn - 1; k >= 0; k--) {
    const vl_dock_node *nd = &m->nodes[k];
    const double *o = k == 0 ? xyz + 3 * nd->begin : xyz + 3 * nd->axis_to;
    double *Fk = F + 3 * k, *Tk = T + 3 * k;
    for (int i = nd->begin; i < nd->end; i++) {
      const double *f = dx + 3 * i;
      double r[3] = {xyz[3 * i] - o[0], xyz[3 * i + 1] - o[1], xyz[3 * i + 2] - o[2]}, t[3];
      Fk[0] += f[0];
      Fk[1] += f[1];
      Fk[2] += f[2];
      cross(r, f, t);
      Tk[0] += t[0];
      Tk[1] += t[1];
      Tk[2] += t[2];
    }
    if (k > 0) {
      double ax[3];
      for (int d = 0; d < 3; d++) ax[d] = xyz[3 * nd->axis_to + d] - xyz[3 * nd->axis_from + d];
      double l = sqrt(ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]);
      g[6 + k - 1] = l > 0 ? (Tk[0] * ax[0] + Tk[1] * ax[1] + Tk[2] * ax[2]) / l : 0;
      int p = nd->parent;
      const double *po = p == 0 ? xyz + 3 * m->nodes[0].begin : xyz + 3 * m->nodes[p].axis_to;
      double r[3] = {o[0] - po[0], o[1] - po[1], o[2] - po[2]}, t[3];
      cross(r, Fk, t);
      for (int d = 0; d < 3; d++) {
        F[3 * p + d] += Fk[d];
        T[3 * p + d] += Tk[d] + t[d];
      }
    }
  }
  for (int d = 0; d < 3; d++) {
    g[d] = F[d];
    g[3 + d] = T[d];
  }
}

static double eval(const model *m, ws *w, const double *x, double v, double *g) {
  w->evals++;
  coords(m, w, x);
  double e = energy_xyz(m, w, v);
  pose_grad(m, w, g);
  return e;
}

/* ---- BFGS (Vina's quasi-Newton, as ops/dock/bfgs.c) ---- */

static double wrap_angle(double a) {
  if (a > PI || a < -PI) {
    a = fmod(a, 2 * PI);
    if (a > PI) a -= 2 * PI;
    if (a < -PI) a += 2 * PI;
  }
  return a;
}

static void pose_step(const model *m, double *x, const double *p, double alpha) {
  double rv[3];
  for (int d = 0; d < 3; d++) {
    x[d] += alpha * p[d];
    rv[d] = alpha * p[3 + d];
  }
  vl_dock_quat_rotate(x + 3, rv);
  for (int k = 0; k < m->nt; k++) x[7 + k] = wrap_angle(x[7 + k] + alpha * p[6 + k]);
}

static inline double dot(const double *a, const double *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* BFGS safeguards (w->guarded), two departures from Vina that save
   evaluations:
   - the first inverse Hessian is scaled by y.s / y.y only when that is
     positive: Vina scales it even when negative, and every later step of
     that local search then climbs, failing all its line-search trials;
   - backtracking by the minimum of the quadratic through f0, f0' and
     f(alpha), kept in [0.1, 0.5] alpha, instead of plain halving: a step
     that overshoots by far (Vina's unit step on a raw gradient, hundreds of
     kcal/mol/Å in a clash) comes back in a few trials instead of up to ten.
   Vina's other habits stay, on purpose: a line search that fails all its
   trials still moves, and the first step is not capped. Stopping or
   capping there saved more evaluations but made Monte Carlo runs explore
   less (on 1uw6, 6 of 64 seeded dockings over four run settings, up to
   twice Vina's steps, ended in a wrong pocket, against none of 48 with
   these two; scripts/bench/dock.lua and
   tests/lua/dock_search_spec.lua measure success with them). */
#define LINE_TRIALS 10

/* optimise pose x in place (stopping early on gains below ftol when > 0);
   returns its energy */
static double bfgs(const model *m, ws *w, double *x, double v, int max_steps, double ftol) {
  const int n = 6 + m->nt, P = m->P, guarded = w->guarded;
  double *h = w->h, *g = w->g, *gn = w->gn, *p = w->p, *y = w->y, *hy = w->hy, *xn = w->xn, *x0 = w->x0;
  for (int i = 0; i < n * n; i++) h[i] = 0;
  for (int i = 0; i < n; i++) h[i * n + i] = 1;
  double f0 = eval(m, w, x, v, g), f_orig = f0;
  memcpy(x0, x, (size_t)P * sizeof *x);
  for (int step = 0; step < max_steps; step++) {
    for (int i = 0; i < n; i++) p[i] = -dot(h + i * n, g, n);
    double pg = dot(p, g, n), alpha = 1, f1 = 0;
    for (int trial = 0; trial < LINE_TRIALS; trial++) {
      memcpy(xn, x, (size_t)P * sizeof *x);
      pose_step(m, xn, p, alpha);
      f1 = eval(m, w, xn, v, gn);
      if (f1 - f0 < 1e-4 * alpha * pg) break;
      if (guarded) {
        if (trial + 1 == LINE_TRIALS) break; /* alpha stays the step's (Vina halves it once more) */
        double den = 2 * (f1 - f0 - pg * alpha), na = den > 0 ? -pg * alpha * alpha / den : 0.5 * alpha;
        alpha = na >= 0.1 * alpha ? (na <= 0.5 * alpha ? na : 0.5 * alpha) : 0.1 * alpha; /* NaN: 0.1 alpha */
      } else {
        alpha *= 0.5;
      }
    }
    for (int i = 0; i < n; i++) y[i] = gn[i] - g[i];
    double gain = f0 - f1;
    f0 = f1;
    memcpy(x, xn, (size_t)P * sizeof *x);
    if (!(sqrt(dot(g, g, n)) >= 1e-5)) break;
    if (ftol > 0 && gain >= 0 && gain < ftol) break;
    memcpy(g, gn, (size_t)n * sizeof *g);
    double yp = dot(y, p, n);
    if (step == 0 && !(guarded && alpha * yp < EPS)) {
      double yy = dot(y, y, n);
      if (fabs(yy) > EPS) {
        double sc = alpha * yp / yy;
        for (int i = 0; i < n; i++) h[i * n + i] = sc;
      }
    }
    if (alpha * yp < EPS) continue;
    for (int i = 0; i < n; i++) hy[i] = -dot(h + i * n, y, n);
    double yhy = -dot(y, hy, n), r = 1 / (alpha * yp);
    double c2 = alpha * alpha * (r * r * yhy + r), c1 = alpha * r;
    for (int i = 0; i < n; i++)
      for (int j = i; j < n; j++) {
        double val = h[i * n + j] + c1 * (hy[i] * p[j] + hy[j] * p[i]) + c2 * p[i] * p[j];
        h[i * n + j] = val;
        h[j * n + i] = val;
      }
  }
  if (!(f0 <= f_orig)) {
    f0 = f_orig;
    memcpy(x, x0, (size_t)P * sizeof *x);
  }
  return f0;
}

/* ---- containers of distinct poses ---- */

typedef struct kept {
  double e;
  double *x;    /* pose (P) */
  double *hc;   /* heavy atom coordinates (nheavy x 3) */
} kept;

typedef struct container {
  int n, cap;
  kept *k;      /* cap entries, storage owned */
} container;

static void cont_free(container *c) {
  if (!c->k) return;
  for (int i = 0; i < c->cap; i++) {
    free(c->k[i].x);
    free(c->k[i].hc);
  }
  free(c->k);
  c->k = NULL;
}

static int cont_init(container *c, int cap, const model *m) {
  c->n = 0;
  c->cap = cap;
  c->k = calloc((size_t)cap, sizeof *c->k);
  if (!c->k) return vl_error(VL_ENOMEM, "dock search: out of memory");
  for (int i = 0; i < cap; i++) {
    c->k[i].x = malloc((size_t)m->P * sizeof(double));
    c->k[i].hc = malloc((size_t)(m->nheavy ? m->nheavy : 1) * 3 * sizeof(double));
    if (!c->k[i].x || !c->k[i].hc) {
      cont_free(c);
      return vl_error(VL_ENOMEM, "dock search: out of memory");
    }
  }
  return VL_OK;
}

static double rmsd_hc(const double *a, const double *b, int nh) {
  double s = 0;
  for (int i = 0; i < 3 * nh; i++) {
    double d = a[i] - b[i];
    s += d * d;
  }
  return nh ? sqrt(s / nh) : 0;
}

static void set_entry(kept *k, double e, const double *x, const double *hc, int P, int nh) {
  k->e = e;
  memcpy(k->x, x, (size_t)P * sizeof *x);
  memcpy(k->hc, hc, (size_t)nh * 3 * sizeof *hc);
}

/* keep sorted by energy (insertion of the changed entry) */
static void cont_resort(container *c, int i) {
  kept t = c->k[i];
  while (i > 0 && c->k[i - 1].e > t.e) {
    c->k[i] = c->k[i - 1];
    i--;
  }
  while (i + 1 < c->n && c->k[i + 1].e < t.e) {
    c->k[i] = c->k[i + 1];
    i++;
  }
  c->k[i] = t;
}

/* Vina's add_to_output_container */
static void cont_add(container *c, double e, const double *x, const double *hc, const model *m, double min_rmsd) {
  if (!(e < 1e300)) return;
  int best = -1;
  double br = 0;
  for (int i = 0; i < c->n; i++) {
    double r = rmsd_hc(hc, c->k[i].hc, m->nheavy);
    if (best < 0 || r < br) {
      best = i;
      br = r;
    }
  }
  if (best >= 0 && br < min_rmsd) {
    if (e < c->k[best].e) {
      set_entry(&c->k[best], e, x, hc, m->P, m->nheavy);
      cont_resort(c, best);
    }
  } else if (c->n < c->cap) {
    set_entry(&c->k[c->n], e, x, hc, m->P, m->nheavy);
    c->n++;
    cont_resort(c, c->n - 1);
  } else if (c->n > 0 && e < c->k[c->n - 1].e) {
    set_entry(&c->k[c->n - 1], e, x, hc, m->P, m->nheavy);
    cont_resort(c, c->n - 1);
  }
}

static void heavy_coords(const model *m, const double *xyz, double *hc) {
  for (int j = 0; j < m->nheavy; j++) {
    int i = m->heavy[j];
    hc[3 * j] = xyz[3 * i];
    hc[3 * j + 1] = xyz[3 * i + 1];
    hc[3 * j + 2] = xyz[3 * i + 2];
  }
}

static double gyration(const model *m, const double *xyz, const double *origin) {
  double acc = 0;
  for (int j = 0; j < m->nheavy; j++) {
    const double *p = xyz + 3 * m->heavy[j];
    double dx = p[0] - origin[0], dy = p[1] - origin[1], dz = p[2] - origin[2];
    acc += dx * dx + dy * dy + dz * dz;
  }
  return m->nheavy ? sqrt(acc / m->nheavy) : 0;
}

/* ---- one Monte Carlo run ---- */

typedef struct run_par {
  long steps;
  int local_steps;
  long max_evals;
  double min_rmsd;
  double lo[3], hi[3];
} run_par;

static void mc_run(const model *m, ws *w, const run_par *rp, rng *r, container *out, double *tmp, double *cand,
                   double *hc) {
  const int P = m->P, nt = m->nt;
  /* random start */
  for (int d = 0; d < 3; d++) tmp[d] = rng_range(r, rp->lo[d], rp->hi[d]);
  double qn = 0;
  do {
    qn = 0;
    for (int k = 0; k < 4; k++) {
      tmp[3 + k] = rng_normal(r);
      qn += tmp[3 + k] * tmp[3 + k];
    }
  } while (!(qn > 1e-12));
  qn = sqrt(qn);
  for (int k = 0; k < 4; k++) tmp[3 + k] /= qn;
  for (int k = 0; k < nt; k++) tmp[7 + k] = rng_range(r, -PI, PI);
  double tmp_e = 0, best_e = INFINITY;
  coords(m, w, tmp);
  double gyr = gyration(m, w->xyz, tmp);
  const int nmut = 2 + nt;
  for (long step = 0; step < rp->steps; step++) {
    if (rp->max_evals > 0 && w->evals > rp->max_evals) break;
    memcpy(cand, tmp, (size_t)P * sizeof *cand);
    int which = rng_int(r, nmut);
    if (which == 0) {
      double v[3];
      rng_ball(r, v);
      for (int d = 0; d < 3; d++) cand[d] += AMPLITUDE * v[d];
    } else if (which == 1) {
      if (gyr > EPS) {
        double v[3];
        rng_ball(r, v);
        for (int d = 0; d < 3; d++) v[d] *= AMPLITUDE / gyr;
        vl_dock_quat_rotate(cand + 3, v);
      }
    } else {
      cand[7 + which - 2] = rng_range(r, -PI, PI);
    }
    double ce = bfgs(m, w, cand, HUNT_CAP, rp->local_steps, w->ftol);
    int accept = step == 0 || ce < tmp_e;
    if (!accept) accept = rng_unit(r) < exp((tmp_e - ce) / TEMPERATURE);
    if (!accept) continue;
    memcpy(tmp, cand, (size_t)P * sizeof *tmp);
    tmp_e = ce;
    if (tmp_e < best_e || out->n < out->cap) {
      /* the poses kept are converged as Vina's are: no early stop here (few
         steps take this branch, so it costs little) */
      tmp_e = bfgs(m, w, tmp, DOCK_CURL, rp->local_steps, 0);
      coords(m, w, tmp);
      gyr = gyration(m, w->xyz, tmp);
      heavy_coords(m, w->xyz, hc);
      cont_add(out, tmp_e, tmp, hc, m, rp->min_rmsd);
      if (tmp_e < best_e) best_e = tmp_e;
    } else {
      coords(m, w, tmp);
      gyr = gyration(m, w->xyz, tmp);
    }
  }
}

/* ---- final scoring ---- */

typedef struct fmode {
  double *x;
  double *xyz;
  double search_e, inter, intra;
  double terms[VL_DOCK_NTERMS], intra_terms[VL_DOCK_NTERMS];
  int keep;
} fmode;

/* Vina's rmsd lower bound: each heavy atom to the nearest heavy atom of
   the same element in the other pose, both ways, the larger */
static double rmsd_lb_asym(const model *m, const double *a, const double *b) {
  double s = 0;
  for (int j = 0; j < m->nheavy; j++) {
    int i = m->heavy[j];
    double best = INFINITY;
    for (int l = 0; l < m->nheavy; l++) {
      int k = m->heavy[l];
      if (m->el[k] != m->el[i]) continue;
      double dx = a[3 * i] - b[3 * k], dy = a[3 * i + 1] - b[3 * k + 1], dz = a[3 * i + 2] - b[3 * k + 2];
      double r2 = dx * dx + dy * dy + dz * dz;
      if (r2 < best) best = r2;
    }
    s += best;
  }
  return m->nheavy ? sqrt(s / m->nheavy) : 0;
}

static double rmsd_full_heavy(const model *m, const double *a, const double *b) {
  double s = 0;
  for (int j = 0; j < m->nheavy; j++) {
    int i = m->heavy[j];
    for (int d = 0; d < 3; d++) {
      double t = a[3 * i + d] - b[3 * i + d];
      s += t * t;
    }
  }
  return m->nheavy ? sqrt(s / m->nheavy) : 0;
}

void vl_dock_result_free(vl_dock_result *r) {
  if (!r) return;
  for (int i = 0; i < r->nmodes; i++) {
    free(r->modes[i].tors);
    free(r->modes[i].xyz);
  }
  free(r->modes);
  free(r);
}

static int cmp_double_idx(const void *a, const void *b) {
  const double *x = a, *y = b;
  if (x[0] < y[0]) return -1;
  if (x[0] > y[0]) return 1;
  return x[1] < y[1] ? -1 : x[1] > y[1];
}

int vl_dock_search(vl_dock_scorer *s, const vl_dock_mol *lig, const vl_dock_search_opt *opt, vl_dock_result **out) {
  *out = NULL;
  vl_dock_search_opt o;
  vl_dock_search_opt_default(&o);
  if (opt) o = *opt;
  if (!lig->is_ligand || lig->nnodes < 1) return vl_error(VL_EARG, "dock search: %s is not a ligand", lig->source);
  if (lig->natoms < 1) return vl_error(VL_EARG, "dock search: %s has no atoms", lig->source);
  if (o.exhaustiveness <= 0) o.exhaustiveness = 8;
  if (o.exhaustiveness > 100000)
    return vl_error(VL_EARG, "dock search: exhaustiveness %d (expected 1..100000)", o.exhaustiveness);
  if (o.num_modes <= 0) o.num_modes = 9;
  if (o.num_modes > 1000) return vl_error(VL_EARG, "dock search: num_modes %d (expected 1..1000)", o.num_modes);
  if (!(o.min_rmsd > 0)) o.min_rmsd = 1;
  if (!(o.steps_scale > 0)) o.steps_scale = 1;
  if (!(o.energy_range >= 0) || !isfinite(o.energy_range) || !isfinite(o.min_rmsd) || !(o.steps_scale <= 1000))
    return vl_error(VL_EARG, "dock search: energy_range %g, min_rmsd %g, steps_scale %g (expected finite, energy_range >= 0, steps_scale <= 1000)",
                    o.energy_range, o.min_rmsd, o.steps_scale);
  if (o.threads < 0 || o.threads > 4096) return vl_error(VL_EARG, "dock search: threads %d (expected 0..4096)", o.threads);
  if (o.local_steps < 0 || o.local_steps > 100000)
    return vl_error(VL_EARG, "dock search: local_steps %d (expected 0..100000)", o.local_steps);
  int st = vl_dock_scorer_grids(s, lig, NULL, 0);
  if (st) return st;

  model m;
  st = model_init(&m, s, lig);
  if (st) return st;
  const int R = o.exhaustiveness, P = m.P, n = m.n;
  run_par rp;
  long heuristic = (long)n + 10L * (6 + m.nt);
  rp.steps = (long)floor(105.0 * (50 + heuristic) * o.steps_scale);
  if (rp.steps < 1) rp.steps = 1;
  rp.local_steps = o.local_steps > 0 ? o.local_steps : (25 + n) / 3;
  rp.max_evals = o.max_evals;
  rp.min_rmsd = o.min_rmsd;
  for (int d = 0; d < 3; d++) {
    rp.lo[d] = s->box.lo[d];
    rp.hi[d] = s->box.hi[d];
  }
  int cap = o.num_modes;
  container *conts = calloc((size_t)R, sizeof *conts);
  long *evals = calloc((size_t)R, sizeof *evals);
  int *rst = calloc((size_t)R, sizeof *rst);
  if (!conts || !evals || !rst) {
    free(conts);
    free(evals);
    free(rst);
    model_free(&m);
    return vl_error(VL_ENOMEM, "dock search: out of memory");
  }
  int nthreads = o.threads;
#ifdef _OPENMP
  if (nthreads <= 0) nthreads = omp_get_max_threads();
  if (nthreads > R) nthreads = R;
#else
  nthreads = 1;
#endif
#pragma omp parallel num_threads(nthreads)
  {
    ws w;
    int wst = ws_init(&w, &m), have_ws = !wst;
    double *tmp = malloc((size_t)P * sizeof *tmp), *cand = malloc((size_t)P * sizeof *cand);
    double *hc = malloc((size_t)(m.nheavy ? m.nheavy : 1) * 3 * sizeof *hc);
    if (!wst && (!tmp || !cand || !hc)) wst = VL_ENOMEM;
#pragma omp for schedule(dynamic, 1)
    for (int r = 0; r < R; r++) {
      if (wst) {
        rst[r] = wst;
        continue;
      }
      rst[r] = cont_init(&conts[r], cap, &m);
      if (rst[r]) continue;
      rng g;
      rng_seed(&g, o.seed, (uint64_t)r);
      w.evals = 0;
      w.ftol = o.ftol;
      w.guarded = !o.vina_bfgs;
      mc_run(&m, &w, &rp, &g, &conts[r], tmp, cand, hc);
      evals[r] = w.evals;
    }
    if (have_ws) ws_free(&w);
    free(tmp);
    free(cand);
    free(hc);
  }
  for (int r = 0; r < R && !st; r++)
    if (rst[r]) st = vl_error(VL_ENOMEM, "dock search: out of memory in run %d", r + 1);
  long total_evals = 0;
  for (int r = 0; r < R; r++) total_evals += evals[r];

  /* merge in run order */
  container all = {0};
  if (!st) st = cont_init(&all, cap, &m);
  for (int r = 0; r < R && !st; r++)
    for (int i = 0; i < conts[r].n; i++) cont_add(&all, conts[r].k[i].e, conts[r].k[i].x, conts[r].k[i].hc, &m, o.min_rmsd);
  for (int r = 0; r < R; r++) cont_free(&conts[r]);
  free(conts);
  free(evals);
  free(rst);

  /* refine with explicit atoms and score */
  fmode *fm = NULL;
  int nf = st ? 0 : all.n;
  double *order = NULL;
  vl_dock_result *res = NULL;
  if (!st) {
    fm = calloc((size_t)(nf ? nf : 1), sizeof *fm);
    order = malloc((size_t)(nf ? nf : 1) * 2 * sizeof *order);
    if (!fm || !order) st = vl_error(VL_ENOMEM, "dock search: out of memory");
  }
  for (int i = 0; i < nf && !st; i++) {
    fm[i].x = malloc((size_t)P * sizeof(double));
    fm[i].xyz = malloc((size_t)n * 3 * sizeof(double));
    if (!fm[i].x || !fm[i].xyz) {
      st = vl_error(VL_ENOMEM, "dock search: out of memory");
      break;
    }
    memcpy(fm[i].x, all.k[i].x, (size_t)P * sizeof(double));
    fm[i].search_e = all.k[i].e;
    double *x = fm[i].x;
    if (o.refine) {
      vl_dock_opt lo = {VL_DOCK_VINA, VL_DOCK_VINA, rp.local_steps, 0, 0};
      st = vl_dock_local_opt(s, lig, x, x + 3, x + 7, &lo, fm[i].xyz, NULL, NULL);
    } else {
      st = vl_dock_pose_coords(lig, x, x + 3, x + 7, fm[i].xyz);
    }
    if (st) break;
    if (vl_dock_outside(s, lig, fm[i].xyz) >= 0) {
      fm[i].keep = 0; /* cannot be scored inside the box */
      continue;
    }
    fm[i].keep = 1;
    st = vl_dock_inter(s, lig, fm[i].xyz, VL_DOCK_VINA, SLOPE, &fm[i].inter, fm[i].terms, NULL);
    if (!st) st = vl_dock_intra(s, lig, fm[i].xyz, VL_DOCK_VINA, &fm[i].intra, fm[i].intra_terms, NULL);
  }
  cont_free(&all);
  if (!st) {
    /* order by inter + intra (the affinity's order for a common unbound term) */
    int nk = 0;
    for (int i = 0; i < nf; i++)
      if (fm[i].keep) {
        order[2 * nk] = fm[i].inter + fm[i].intra;
        order[2 * nk + 1] = i;
        nk++;
      }
    qsort(order, (size_t)nk, 2 * sizeof *order, cmp_double_idx);
    res = calloc(1, sizeof *res);
    if (!res) st = vl_error(VL_ENOMEM, "dock search: out of memory");
    if (!st) {
      res->natoms = n;
      res->ntors = m.nt;
      res->evals = total_evals;
      res->steps = rp.steps;
      res->modes = calloc((size_t)(nk ? nk : 1), sizeof *res->modes);
      if (!res->modes) st = vl_error(VL_ENOMEM, "dock search: out of memory");
    }
    double den = 1 + s->w.rot * lig->nrot, unbound = 0, best_aff = 0;
    for (int j = 0; j < nk && !st; j++) {
      fmode *f = &fm[(int)order[2 * j + 1]];
      if (res->nmodes == 0) unbound = f->intra;
      double x = f->inter + f->intra - unbound;
      double aff = fabs(x) < EPS ? 0 : x / den;
      if (res->nmodes == 0) best_aff = aff;
      if (aff > best_aff + o.energy_range) break;
      if (res->nmodes >= o.num_modes) break;
      /* clustering: drop a pose within min_rmsd of a better mode */
      int dup = 0;
      for (int k = 0; k < res->nmodes && !dup; k++) dup = rmsd_full_heavy(&m, f->xyz, res->modes[k].xyz) < o.min_rmsd;
      if (dup) continue;
      vl_dock_mode *md = &res->modes[res->nmodes];
      md->tors = malloc((size_t)(m.nt ? m.nt : 1) * sizeof(double));
      md->xyz = f->xyz;
      f->xyz = NULL;
      res->nmodes++;
      if (!md->tors) {
        st = vl_error(VL_ENOMEM, "dock search: out of memory");
        break;
      }
      memcpy(md->pos, f->x, 3 * sizeof(double));
      memcpy(md->q, f->x + 3, 4 * sizeof(double));
      if (m.nt) memcpy(md->tors, f->x + 7, (size_t)m.nt * sizeof(double));
      md->affinity = aff;
      md->inter = f->inter;
      md->intra = f->intra;
      memcpy(md->terms, f->terms, sizeof md->terms);
      memcpy(md->intra_terms, f->intra_terms, sizeof md->intra_terms);
      md->unbound = unbound;
      md->search_e = f->search_e;
      const double *b = res->modes[0].xyz;
      double l1 = rmsd_lb_asym(&m, md->xyz, b), l2 = rmsd_lb_asym(&m, b, md->xyz);
      md->rmsd_lb = l1 > l2 ? l1 : l2;
      md->rmsd_ub = rmsd_full_heavy(&m, md->xyz, b);
    }
  }
  for (int i = 0; i < nf; i++) {
    free(fm[i].x);
    free(fm[i].xyz);
  }
  free(fm);
  free(order);
  model_free(&m);
  if (st) {
    vl_dock_result_free(res);
    return st;
  }
  if (res->nmodes == 0) {
    vl_dock_result_free(res);
    return vl_error(VL_ESTATE, "dock search: no pose of %s found inside the box (is the box large enough for the ligand?)",
                    lig->source);
  }
  *out = res;
  return VL_OK;
}
