/*
** scoring.h — AutoDock Vina's scoring function (Trott & Olson 2010, as
** Vina 1.2.3 computes it), grid maps and local optimisation (prefix
** vl_dock_). Pure C11; ops/dock/scoring.c, grid.c, bfgs.c.
**
** Pair energy at surface distance d = r - R1 - R2 (X-Score radii), r < 8 Å:
**   gauss1 exp(-(d/0.5)^2), gauss2 exp(-((d-3)/2)^2), repulsion d^2 (d < 0),
**   hydrophobic (both C_H/F_H/Cl_H/Br_H/I_H) 1 below 0.5, 0 above 1.5,
**   hbond (donor-acceptor) 1 below -0.7, 0 above 0, linear between;
**   weights -0.035579, -0.005156, 0.840245, -0.035069, -0.587439.
** Each ligand atom's receptor sum and each intramolecular pair energy
** are "curled" as Vina does (e > 0 -> e * 1000 / (1000 + e)). The score
** is (inter + intra - intra_unbound) / (1 + 0.05846 Nrot); score_only
** takes intra_unbound = intra, so the affinity is inter / (1 + w Nrot).
**
** Methods:
**   VL_DOCK_VINA   Vina's tabulated pair energies (32 samples per Å^2,
**                  the "fast" mid-point table for energies, the linear
**                  "smooth" table with its derivative when a gradient is
**                  asked for): what vina --score_only and --local_only use
**                  with explicit receptor atoms.
**   VL_DOCK_EXACT  the analytic functions above with exact derivatives.
**   VL_DOCK_GRID   precomputed maps per ligand X-Score type (Vina's cache,
**                  vina --no_refine), trilinear interpolation with its
**                  gradient.
*/
#ifndef VL_DOCK_SCORING_H
#define VL_DOCK_SCORING_H

#include "molecule.h"

#define VL_DOCK_NTERMS 5 /* gauss1, gauss2, repulsion, hydrophobic, hbond */

enum { VL_DOCK_VINA = 0, VL_DOCK_EXACT = 1, VL_DOCK_GRID = 2 };

typedef struct vl_dock_weights {
  double gauss1, gauss2, repulsion, hydrophobic, hbond, rot;
} vl_dock_weights;

void vl_dock_weights_default(vl_dock_weights *w);

/* Unweighted terms at distance r between X-Score types t1 and t2 (and
   their derivatives d/dr when dterms != NULL); all 0 at r >= 8. */
void vl_dock_pair_terms(int t1, int t2, double r, double terms[VL_DOCK_NTERMS], double dterms[VL_DOCK_NTERMS]);

/* The search box as Vina lays it out: n[d] = ceil(size/spacing) voxels,
   centred on center, [lo, hi] = center -/+ n*spacing/2. */
typedef struct vl_dock_box {
  double center[3], size[3], spacing;
  int n[3];
  double lo[3], hi[3];
} vl_dock_box;

int vl_dock_box_init(vl_dock_box *b, const double center[3], const double size[3], double spacing);

typedef struct vl_dock_energy {
  double affinity;   /* (inter + intra - unbound) / (1 + w_rot Nrot), kcal/mol */
  double inter;      /* ligand-receptor, including any out-of-box penalty */
  double intra;      /* ligand internal pairs */
  double unbound;    /* the intra energy the affinity subtracts */
  double torsional;  /* affinity - (inter + intra - unbound) */
  double nrot;       /* Nrot */
  double terms[VL_DOCK_NTERMS];       /* ligand-receptor, unweighted (tabulated like the method) */
  double intra_terms[VL_DOCK_NTERMS]; /* ligand internal, unweighted */
} vl_dock_energy;

/* A receptor prepared for scoring inside a box: receptor atoms near the
   box, Vina's pair tables, and (on demand) grid maps. Read-only once
   made (grid maps aside), so one scorer serves every ligand of a screen
   and every thread. */
typedef struct vl_dock_scorer vl_dock_scorer;

vl_dock_scorer *vl_dock_scorer_new(const vl_dock_mol *rec, const vl_dock_box *box, const vl_dock_weights *w);
void vl_dock_scorer_free(vl_dock_scorer *s);
const vl_dock_box *vl_dock_scorer_box(const vl_dock_scorer *s);
const vl_dock_weights *vl_dock_scorer_weights(const vl_dock_scorer *s);

/* Grid maps (ops/dock/grid.c) for the X-Score types listed (all types of
   `lig` when types == NULL and lig != NULL; every type when both are
   NULL), computed in parallel (OpenMP); maps already made are kept. */
int vl_dock_scorer_grids(vl_dock_scorer *s, const vl_dock_mol *lig, const int *types, int ntypes);
int vl_dock_scorer_has_grid(const vl_dock_scorer *s, int xs);
/* Map value at a point (trilinear), for tests: VL_OK or an error. */
int vl_dock_grid_value(const vl_dock_scorer *s, int xs, const double *p, double *e, double *grad);

/* Ligand-receptor energy of coordinates xyz (natoms x 3, the ligand's
   order); adds dE/dxyz into grad when not NULL; terms (unweighted,
   analytic, may be NULL). Atoms outside the box are moved onto it and
   charged `slope` per Å outside (Vina: 1e6). */
int vl_dock_inter(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz, int method, double slope,
                  double *e, double *terms, double *grad);
/* Intramolecular energy over lig->pairs (adds into grad when not NULL). */
int vl_dock_intra(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz, int method, double *e,
                  double *terms, double *grad);
/* Index of the first scored atom outside the box, or -1. */
int vl_dock_outside(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz);
/* The full score of xyz (NULL: the ligand's own coordinates). unbound:
   the intra energy to subtract (NaN: this pose's own, as score_only).
   Refuses a ligand with a scored atom outside the box. */
int vl_dock_score(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *xyz, int method, double unbound,
                  vl_dock_energy *out);

/* ---- local optimisation (ops/dock/bfgs.c) ---- */

/* Energy (inter + intra) of a pose and its gradient g[vl_dock_pose_size]. */
int vl_dock_pose_energy(const vl_dock_scorer *s, const vl_dock_mol *lig, const double *pos, const double *q,
                        const double *tors, int method, double slope, double *e, double *g, double *xyz);

typedef struct vl_dock_opt {
  int method;       /* energy optimised: VL_DOCK_GRID (Vina), VL_DOCK_VINA or VL_DOCK_EXACT */
  int score_method; /* final score: VL_DOCK_VINA (Vina, explicit atoms), EXACT or GRID */
  int max_steps;    /* BFGS steps per round; 0: Vina's (25 + natoms) / 3 */
  int rounds;       /* at most this many BFGS runs, stopping once every scored
                       atom is inside the box; 0: Vina's 5 */
  double slope;     /* out-of-box penalty per Å; 0: 1e6 */
} vl_dock_opt;

/* Vina's --local_only: BFGS over position, orientation and torsions from
   the pose given (updated in place), on the grid maps by default, then
   scored with explicit receptor atoms. xyz_out (natoms x 3) gets the
   final coordinates; out (may be NULL) the final score (score_only
   semantics: the affinity is inter / (1 + w Nrot)). opt may be NULL. */
int vl_dock_local_opt(const vl_dock_scorer *s, const vl_dock_mol *lig, double *pos, double *q, double *tors,
                      const vl_dock_opt *opt, double *xyz_out, vl_dock_energy *out, int *evals);

#endif
