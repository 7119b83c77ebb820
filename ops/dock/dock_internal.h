/*
** dock_internal.h — the scorer's insides, shared by ops/dock/scoring.c,
** grid.c and bfgs.c. Not a public header.
*/
#ifndef VL_DOCK_INTERNAL_H
#define VL_DOCK_INTERNAL_H

#include "scoring.h"

#define DOCK_CUTOFF 8.0
#define DOCK_CUTOFF2 64.0
#define DOCK_FACTOR 32.0 /* table samples per Å^2, as Vina */
#define DOCK_CURL 1000.0 /* Vina's "authentic" v */
#define DOCK_NPAIRS (VL_DOCK_XS_COUNT * (VL_DOCK_XS_COUNT + 1) / 2)

struct vl_dock_scorer {
  vl_dock_weights w;
  vl_dock_box box;
  /* receptor atoms (scored types) within the cutoff of the box, by cell */
  int nrec;
  double *rxyz;
  int *rxs;
  double clo[3];
  int cdim[3];
  int *cstart; /* cdim[0]*cdim[1]*cdim[2] + 1 */
  /* Vina's tables per type pair */
  int ntab;
  double *fast, *se, *sd;
  /* grid maps per ligand type, (n[0]+1) x (n[1]+1) x (n[2]+1), x slowest */
  double *grid[VL_DOCK_XS_COUNT];
};

int dock_pair_index(int t1, int t2);
/* weighted pair energy and d/dr (analytic) */
double dock_pair_energy(const vl_dock_weights *w, int t1, int t2, double r, double *dedr);
/* receptor atoms near p: visit the 27 cells around p's cell */
void dock_cells_around(const vl_dock_scorer *s, const double *p, int lo[3], int hi[3]);

static inline double dock_fast(const vl_dock_scorer *s, int pair, double r2) {
  return s->fast[(size_t)pair * s->ntab + (size_t)(DOCK_FACTOR * r2)];
}

static inline void dock_curl(double *e, double *g, double v) {
  if (*e > 0) {
    double t = v / (v + *e);
    *e *= t;
    if (g) {
      g[0] *= t * t;
      g[1] *= t * t;
      g[2] *= t * t;
    }
  }
}

#endif
