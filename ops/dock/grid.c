/*
** grid.c — Vina's grid maps: for each ligand X-Score type, the receptor
** energy a probe atom of that type feels at every point of the box
** (spacing box.spacing, (n+1)^3 points from box.lo), summed from Vina's
** "fast" pair table as Vina's cache does; evaluated by trilinear
** interpolation with its gradient, curled, plus `slope` per Å outside
** the box (Vina's grid::evaluate). Maps are computed in parallel (OpenMP,
** one z-line per task), once per scorer, and reused for every ligand.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "dock_internal.h"

static size_t grid_points(const vl_dock_scorer *s) {
  return (size_t)(s->box.n[0] + 1) * (size_t)(s->box.n[1] + 1) * (size_t)(s->box.n[2] + 1);
}

int vl_dock_scorer_has_grid(const vl_dock_scorer *s, int xs) {
  return xs >= 0 && xs < VL_DOCK_XS_COUNT && s->grid[xs] != NULL;
}

int vl_dock_scorer_grids(vl_dock_scorer *s, const vl_dock_mol *lig, const int *types, int ntypes) {
  int want[VL_DOCK_XS_COUNT] = {0};
  if (types) {
    for (int k = 0; k < ntypes; k++) {
      if (types[k] < 0 || types[k] >= VL_DOCK_XS_COUNT)
        return vl_error(VL_EARG, "dock grids: X-Score type %d out of range (expected 0..%d)", types[k], VL_DOCK_XS_COUNT - 1);
      want[types[k]] = 1;
    }
  } else if (lig) {
    for (int i = 0; i < lig->natoms; i++)
      if (lig->atoms[i].xs < VL_DOCK_XS_COUNT) want[lig->atoms[i].xs] = 1;
  } else {
    for (int t = 0; t < VL_DOCK_XS_COUNT; t++) want[t] = 1;
  }
  int list[VL_DOCK_XS_COUNT], nt = 0;
  for (int t = 0; t < VL_DOCK_XS_COUNT; t++)
    if (want[t] && !s->grid[t]) list[nt++] = t;
  if (nt == 0) return VL_OK;
  size_t npts = grid_points(s);
  if (npts > ((size_t)1 << 31) / VL_DOCK_XS_COUNT)
    return vl_error(VL_EARG, "dock grids: %zu grid points per map is too many (box %g x %g x %g Å at spacing %g)", npts,
                    s->box.size[0], s->box.size[1], s->box.size[2], s->box.spacing);
  double *maps[VL_DOCK_XS_COUNT];
  for (int k = 0; k < nt; k++) {
    maps[k] = malloc(npts * sizeof(double));
    if (!maps[k]) {
      for (int j = 0; j < k; j++) free(maps[j]);
      return vl_error(VL_ENOMEM, "dock grids: out of memory for %d maps of %zu points", nt, npts);
    }
  }
  const int nx = s->box.n[0] + 1, ny = s->box.n[1] + 1, nz = s->box.n[2] + 1;
  const double h = s->box.spacing;
  const int64_t lines = (int64_t)nx * ny;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t line = 0; line < lines; line++) {
    int ix = (int)(line / ny), iy = (int)(line % ny);
    double acc[VL_DOCK_XS_COUNT];
    int pidx[VL_DOCK_XS_COUNT][VL_DOCK_XS_COUNT];
    for (int k = 0; k < nt; k++)
      for (int t2 = 0; t2 < VL_DOCK_XS_COUNT; t2++) pidx[k][t2] = dock_pair_index(list[k], t2);
    for (int iz = 0; iz < nz; iz++) {
      double p[3] = {s->box.lo[0] + ix * h, s->box.lo[1] + iy * h, s->box.lo[2] + iz * h};
      for (int k = 0; k < nt; k++) acc[k] = 0;
      int lo[3], hi[3];
      dock_cells_around(s, p, lo, hi);
      for (int cx = lo[0]; cx <= hi[0]; cx++)
        for (int cy = lo[1]; cy <= hi[1]; cy++)
          for (int cz = lo[2]; cz <= hi[2]; cz++) {
            int c = (cx * s->cdim[1] + cy) * s->cdim[2] + cz;
            for (int j = s->cstart[c]; j < s->cstart[c + 1]; j++) {
              const double *y = &s->rxyz[3 * j];
              double dx = p[0] - y[0], dy = p[1] - y[1], dz = p[2] - y[2];
              double r2 = dx * dx + dy * dy + dz * dz;
              if (!(r2 < DOCK_CUTOFF2)) continue;
              int t2 = s->rxs[j];
              for (int k = 0; k < nt; k++) acc[k] += dock_fast(s, pidx[k][t2], r2);
            }
          }
      size_t at = ((size_t)ix * ny + iy) * nz + iz;
      for (int k = 0; k < nt; k++) maps[k][at] = acc[k];
    }
  }
  for (int k = 0; k < nt; k++) s->grid[list[k]] = maps[k];
  return VL_OK;
}

int dock_grid_eval(const vl_dock_scorer *s, int t, const double *p, double slope, double *e, double *g) {
  const double *m = t >= 0 && t < VL_DOCK_XS_COUNT ? s->grid[t] : NULL;
  if (!m) return vl_error(VL_ESTATE, "dock grid: no map for type %s (compute the maps first)", vl_dock_xs_name(t));
  const int dim[3] = {s->box.n[0] + 1, s->box.n[1] + 1, s->box.n[2] + 1};
  double f[3], miss = 0;
  int a[3], region[3];
  for (int d = 0; d < 3; d++) {
    double factor = s->box.n[d] / (s->box.hi[d] - s->box.lo[d]);
    double sd = (p[d] - s->box.lo[d]) * factor;
    double top = dim[d] - 1;
    if (sd < 0) {
      miss += -sd / factor;
      region[d] = -1;
      a[d] = 0;
      f[d] = 0;
    } else if (sd >= top) {
      miss += (sd - top) / factor;
      region[d] = 1;
      a[d] = dim[d] - 2;
      f[d] = 1;
    } else {
      region[d] = 0;
      a[d] = (int)sd;
      f[d] = sd - a[d];
    }
    if (a[d] < 0) a[d] = 0; /* a one-voxel box */
  }
  const size_t sy = (size_t)dim[2], sx = (size_t)dim[1] * dim[2];
  const double *c = m + a[0] * sx + a[1] * sy + a[2];
  double v000 = c[0], v001 = c[1], v010 = c[sy], v011 = c[sy + 1];
  double v100 = c[sx], v101 = c[sx + 1], v110 = c[sx + sy], v111 = c[sx + sy + 1];
  double x = f[0], y = f[1], z = f[2], mx = 1 - x, my = 1 - y, mz = 1 - z;
  double val = v000 * mx * my * mz + v100 * x * my * mz + v010 * mx * y * mz + v110 * x * y * mz + v001 * mx * my * z +
               v101 * x * my * z + v011 * mx * y * z + v111 * x * y * z;
  if (g) {
    double gr[3];
    gr[0] = -v000 * my * mz + v100 * my * mz - v010 * y * mz + v110 * y * mz - v001 * my * z + v101 * my * z -
            v011 * y * z + v111 * y * z;
    gr[1] = -v000 * mx * mz - v100 * x * mz + v010 * mx * mz + v110 * x * mz - v001 * mx * z - v101 * x * z +
            v011 * mx * z + v111 * x * z;
    gr[2] = -v000 * mx * my - v100 * x * my - v010 * mx * y - v110 * x * y + v001 * mx * my + v101 * x * my +
            v011 * mx * y + v111 * x * y;
    dock_curl(&val, gr, DOCK_CURL);
    for (int d = 0; d < 3; d++) {
      double factor = s->box.n[d] / (s->box.hi[d] - s->box.lo[d]);
      g[d] = (region[d] == 0 ? gr[d] * factor : 0) + slope * region[d];
    }
  } else {
    dock_curl(&val, NULL, DOCK_CURL);
  }
  *e = val + slope * miss;
  return VL_OK;
}

int vl_dock_grid_value(const vl_dock_scorer *s, int xs, const double *p, double *e, double *grad) {
  return dock_grid_eval(s, xs, p, 1e6, e, grad);
}
