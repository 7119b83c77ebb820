/*
** search.h — AutoDock Vina's global search (Trott & Olson 2010, as Vina
** 1.2.3 runs it): `exhaustiveness` independent Monte Carlo runs over the
** ligand's position, orientation and torsions, each mutation followed by
** a BFGS local optimisation on the grid maps and a Metropolis test
** (temperature 1.2); accepted poses that are new bests are refined again
** (uncapped energies) and kept in a per-run container of distinct poses
** (heavy-atom RMSD >= min_rmsd). The runs are merged, each kept pose is
** refined with explicit receptor atoms and scored, and the modes are
** sorted, clustered, cut to num_modes and energy_range. Pure C11 +
** OpenMP; ops/dock/search.c.
**
** Determinism: run r draws from its own generator seeded from (seed, r),
** and runs are merged in run order, so a seed gives the same modes
** whatever the number of threads.
*/
#ifndef VL_DOCK_SEARCH_H
#define VL_DOCK_SEARCH_H

#include <stdint.h>

#include "scoring.h"

typedef struct vl_dock_search_opt {
  int exhaustiveness;   /* independent runs (Vina --exhaustiveness); 0: 8 */
  uint64_t seed;        /* runs seeded from (seed, run index) */
  int num_modes;        /* modes returned at most; 0: 9 */
  double energy_range;  /* kcal/mol above the best; <= 0: 3 */
  double min_rmsd;      /* clustering threshold, Å; <= 0: 1 */
  int threads;          /* OpenMP threads; 0: the default */
  long max_evals;       /* energy evaluations per run (0: no limit) */
  double steps_scale;   /* multiplies Vina's Monte Carlo steps per run; default 0.6 */
  int local_steps;      /* BFGS steps per local optimisation; 0: (25 + natoms) / 3 */
  int refine;           /* 1: BFGS with explicit receptor atoms on each kept pose */
  double ftol;          /* stop a BFGS run once a step gains less than this
                           (kcal/mol; default 1e-3; 0: never, as Vina) */
  int vina_bfgs;        /* 1: Vina's BFGS as it is; 0 (default): with the
                           two safeguards search.c lists (no negative first
                           inverse Hessian, quadratic backtracking) */
} vl_dock_search_opt;

void vl_dock_search_opt_default(vl_dock_search_opt *o);

typedef struct vl_dock_mode {
  double pos[3], q[4];  /* pose: root origin, orientation quaternion (w, x, y, z) */
  double *tors;         /* nnodes - 1 torsions (radians, relative to the input geometry) */
  double *xyz;          /* natoms x 3, the molecule's (Vina's) atom order */
  double affinity;      /* (inter + intra - unbound) / (1 + w_rot Nrot), kcal/mol */
  double inter, intra;  /* explicit-atom energies (Vina's tables) */
  double terms[VL_DOCK_NTERMS];       /* ligand-receptor term sums, unweighted (as vl_dock_score) */
  double intra_terms[VL_DOCK_NTERMS]; /* ligand internal term sums, unweighted */
  double unbound;       /* the intra energy subtracted: the best mode's intra */
  double search_e;      /* energy (inter + intra) the search ended with on the grid */
  double rmsd_lb, rmsd_ub; /* to the best mode, heavy atoms, as Vina reports */
} vl_dock_mode;

typedef struct vl_dock_result {
  int nmodes;
  vl_dock_mode *modes;
  int natoms, ntors;
  long evals;           /* energy evaluations over all runs */
  long steps;           /* Monte Carlo steps per run */
} vl_dock_result;

/* Dock `lig` in the scorer's box. Grid maps for the ligand's types are
   made when missing. *out is allocated; free with vl_dock_result_free. */
int vl_dock_search(vl_dock_scorer *s, const vl_dock_mol *lig, const vl_dock_search_opt *opt, vl_dock_result **out);
void vl_dock_result_free(vl_dock_result *r);

#endif
