/*
** bfgs.c — local optimisation of a ligand pose (position, orientation,
** torsions) with analytic gradients, the quasi-Newton scheme of Vina's
** local search (Trott & Olson 2010): BFGS on the inverse Hessian, first
** step scaled by y.s / y.y, Armijo backtracking from a unit step (c =
** 1e-4, halving, 10 tries), stopping when the gradient norm drops below
** 1e-5 or after max_steps; the orientation moves by rotation vectors
** applied on the left of the quaternion. Vina 1.2.3's --local_only runs
** this on its grid maps with (25 + natoms) / 3 steps from the input pose,
** again (up to 5 runs) while an atom is outside the box, then scores the
** result with explicit receptor atoms.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "dock_internal.h"

int vl_dock_pose_energy(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *pos, const double *q,
                        const double *tors, int method, double slope, double *e, double *g, double *xyz) {
  int n = lig->natoms;
  double *dx = g ? calloc((size_t)n * 3, sizeof *dx) : NULL;
  if (g && !dx) return vl_error(VL_ENOMEM, "dock pose energy: out of memory");
  int st = vl_dock_pose_coords(lig, pos, q, tors, xyz);
  double ei = 0, ea = 0;
  if (!st) st = vl_dock_inter(s, lig, xyz, method, slope, &ei, NULL, dx);
  if (!st) st = vl_dock_intra(s, lig, xyz, method == VL_DOCK_GRID ? VL_DOCK_VINA : method, &ea, NULL, dx);
  if (!st && g) st = vl_dock_pose_gradient(lig, xyz, dx, g);
  free(dx);
  if (!st) *e = ei + ea;
  return st;
}

typedef struct pose {
  double pos[3], q[4];
  double *tors;
} pose;

static void pose_copy(pose *d, const pose *s, int nt) {
  memcpy(d->pos, s->pos, sizeof d->pos);
  memcpy(d->q, s->q, sizeof d->q);
  if (nt) memcpy(d->tors, s->tors, (size_t)nt * sizeof *d->tors);
}

static double wrap_angle(double a) {
  const double pi = 3.14159265358979323846;
  if (a > pi || a < -pi) {
    a = fmod(a, 2 * pi);
    if (a > pi) a -= 2 * pi;
    if (a < -pi) a += 2 * pi;
  }
  return a;
}

static void pose_step(pose *x, const double *p, double alpha, int nt) {
  double rv[3];
  for (int d = 0; d < 3; d++) {
    x->pos[d] += alpha * p[d];
    rv[d] = alpha * p[3 + d];
  }
  vl_dock_quat_rotate(x->q, rv);
  for (int k = 0; k < nt; k++) x->tors[k] = wrap_angle(x->tors[k] + alpha * p[6 + k]);
}

static double dot(const double *a, const double *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

typedef struct objective {
  const vl_dock_scorer *s;
  const vl_dock_mol *lig;
  int method;
  double slope;
  double *xyz;
  int evals;
} objective;

static int eval(objective *o, const pose *x, double *e, double *g) {
  o->evals++;
  return vl_dock_pose_energy(o->s, o->lig, x->pos, x->q, x->tors, o->method, o->slope, e, g, o->xyz);
}

/* One BFGS run; x is updated in place, returns the energy in *f_out. */
static int bfgs(objective *o, pose *x, int nt, int max_steps, double *f_out) {
  int n = 6 + nt;
  size_t nn = (size_t)n;
  double *h = malloc(nn * nn * sizeof *h);
  double *g = malloc(nn * sizeof *g), *gn = malloc(nn * sizeof *gn), *p = malloc(nn * sizeof *p);
  double *y = malloc(nn * sizeof *y), *hy = malloc(nn * sizeof *hy), *g0 = malloc(nn * sizeof *g0);
  double *tbuf = malloc((size_t)(3 * (nt ? nt : 1)) * sizeof *tbuf);
  int st = VL_OK;
  if (!h || !g || !gn || !p || !y || !hy || !g0 || !tbuf) {
    st = vl_error(VL_ENOMEM, "dock local_opt: out of memory");
    goto done;
  }
  pose xn = {.tors = tbuf}, x0 = {.tors = tbuf + nt}, xt = {.tors = tbuf + 2 * nt};
  (void)xt;
  for (size_t i = 0; i < nn * nn; i++) h[i] = 0;
  for (int i = 0; i < n; i++) h[i * n + i] = 1;
  double f0;
  st = eval(o, x, &f0, g);
  if (st) goto done;
  double f_orig = f0;
  pose_copy(&x0, x, nt);
  memcpy(g0, g, nn * sizeof *g);
  for (int step = 0; step < max_steps; step++) {
    for (int i = 0; i < n; i++) p[i] = -dot(&h[i * n], g, n);
    /* line search */
    double pg = dot(p, g, n), alpha = 1, f1 = 0;
    for (int trial = 0; trial < 10; trial++) {
      pose_copy(&xn, x, nt);
      pose_step(&xn, p, alpha, nt);
      st = eval(o, &xn, &f1, gn);
      if (st) goto done;
      if (f1 - f0 < 1e-4 * alpha * pg) break;
      alpha *= 0.5;
    }
    for (int i = 0; i < n; i++) y[i] = gn[i] - g[i];
    f0 = f1;
    pose_copy(x, &xn, nt);
    if (!(sqrt(dot(g, g, n)) >= 1e-5)) break;
    memcpy(g, gn, nn * sizeof *g);
    if (step == 0) {
      double yy = dot(y, y, n);
      if (fabs(yy) > 2.220446049250313e-16) {
        double sc = alpha * dot(y, p, n) / yy;
        for (int i = 0; i < n; i++) h[i * n + i] = sc;
      }
    }
    double yp = dot(y, p, n);
    if (alpha * yp < 2.220446049250313e-16) continue;
    for (int i = 0; i < n; i++) hy[i] = -dot(&h[i * n], y, n);
    double yhy = -dot(y, hy, n);
    double r = 1 / (alpha * yp);
    for (int i = 0; i < n; i++)
      for (int j = i; j < n; j++) {
        double v = h[i * n + j] + alpha * r * (hy[i] * p[j] + hy[j] * p[i]) + alpha * alpha * (r * r * yhy + r) * p[i] * p[j];
        h[i * n + j] = v;
        h[j * n + i] = v;
      }
  }
  if (!(f0 <= f_orig)) {
    f0 = f_orig;
    pose_copy(x, &x0, nt);
  }
  *f_out = f0;
done:
  free(h);
  free(g);
  free(gn);
  free(p);
  free(y);
  free(hy);
  free(g0);
  free(tbuf);
  return st;
}

int vl_dock_local_opt(const vl_dock_scorer *s, const vl_dock_mol *lig, double *pos, double *q, double *tors,
                      const vl_dock_opt *opt, double *xyz_out, vl_dock_energy *out, int *evals) {
  if (!lig->is_ligand || lig->nnodes < 1) return vl_error(VL_EARG, "dock local_opt: %s is not a ligand", lig->source);
  vl_dock_opt o = {VL_DOCK_GRID, VL_DOCK_VINA, 0, 0, 0};
  if (opt) o = *opt;
  if (o.method != VL_DOCK_VINA && o.method != VL_DOCK_EXACT && o.method != VL_DOCK_GRID)
    return vl_error(VL_EARG, "dock local_opt: unknown method %d (expected vina, exact or grid)", o.method);
  if (o.score_method != VL_DOCK_VINA && o.score_method != VL_DOCK_EXACT && o.score_method != VL_DOCK_GRID)
    return vl_error(VL_EARG, "dock local_opt: unknown score method %d (expected vina, exact or grid)", o.score_method);
  if (o.max_steps <= 0) o.max_steps = (25 + lig->natoms) / 3;
  if (o.rounds <= 0) o.rounds = 5;
  if (!(o.slope > 0)) o.slope = 1e6;
  if (o.max_steps > 100000 || o.rounds > 1000)
    return vl_error(VL_EARG, "dock local_opt: max_steps %d, rounds %d (expected at most 100000 and 1000)", o.max_steps, o.rounds);
  if (o.method == VL_DOCK_GRID || o.score_method == VL_DOCK_GRID)
    for (int i = 0; i < lig->natoms; i++) {
      int t = lig->atoms[i].xs;
      if (t < VL_DOCK_XS_COUNT && !vl_dock_scorer_has_grid(s, t))
        return vl_error(VL_ESTATE, "dock local_opt: no grid map for type %s (compute the maps first)", vl_dock_xs_name(t));
    }
  int nt = lig->nnodes - 1;
  double *xyz = malloc((size_t)lig->natoms * 3 * sizeof *xyz);
  double *tb = malloc((size_t)(nt ? nt : 1) * sizeof *tb);
  if (!xyz || !tb) {
    free(xyz);
    free(tb);
    return vl_error(VL_ENOMEM, "dock local_opt: out of memory");
  }
  pose x = {.tors = tb};
  memcpy(x.pos, pos, sizeof x.pos);
  memcpy(x.q, q, sizeof x.q);
  if (nt) memcpy(x.tors, tors, (size_t)nt * sizeof *tors);
  objective ob = {s, lig, o.method, o.slope, xyz, 0};
  int st = VL_OK;
  double f = 0;
  for (int r = 0; r < o.rounds && !st; r++) {
    st = bfgs(&ob, &x, nt, o.max_steps, &f);
    if (!st) st = vl_dock_pose_coords(lig, x.pos, x.q, x.tors, xyz);
    if (!st && vl_dock_outside(s, lig, xyz) < 0) break; /* back inside the box: done, as Vina */
  }
  if (!st) {
    memcpy(pos, x.pos, sizeof x.pos);
    memcpy(q, x.q, sizeof x.q);
    if (nt) memcpy(tors, x.tors, (size_t)nt * sizeof *tors);
    if (xyz_out) memcpy(xyz_out, xyz, (size_t)lig->natoms * 3 * sizeof *xyz);
    if (out) st = vl_dock_score(s, lig, xyz, o.score_method, NAN, out);
  }
  if (evals) *evals = ob.evals;
  free(xyz);
  free(tb);
  return st;
}
