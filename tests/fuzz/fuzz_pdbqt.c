/*
** fuzz_pdbqt.c — libFuzzer harness for the PDBQT reader (ops/dock/pdbqt.c)
** and what it runs on every molecule (bond perception, typing, pairs,
** poses). Both the ligand and the receptor parsers see each input.
*/
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vl.h"
#include "dock/molecule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static volatile double sink;
  vl_dock_mol *ligs = NULL;
  int n = 0;
  if (vl_dock_parse_ligands((const char *)data, size, "fuzz", &ligs, &n) == VL_OK) {
    for (int k = 0; k < n; k++) {
      vl_dock_mol *m = &ligs[k];
      int nt = m->nnodes - 1;
      double pos[3], q[4], *tors = calloc((size_t)(nt > 0 ? nt : 1), sizeof *tors);
      double *xyz = calloc((size_t)(m->natoms > 0 ? m->natoms : 1) * 3, sizeof *xyz);
      double *g = calloc((size_t)vl_dock_pose_size(m), sizeof *g);
      if (tors && xyz && g) {
        vl_dock_pose_identity(m, pos, q, tors);
        for (int i = 0; i < nt; i++) tors[i] = 0.5;
        if (vl_dock_pose_coords(m, pos, q, tors, xyz) == VL_OK && vl_dock_pose_gradient(m, xyz, xyz, g) == VL_OK)
          sink += g[0];
      }
      free(tors);
      free(xyz);
      free(g);
    }
    vl_dock_mols_free(ligs, n);
  }
  vl_dock_mol *rec = NULL;
  if (vl_dock_parse_receptor((const char *)data, size, "fuzz", &rec) == VL_OK) {
    sink += rec->natoms;
    vl_dock_mol_free(rec);
  }
  return 0;
}
