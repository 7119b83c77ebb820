/*
** ligprep.h — from a parsed molecule (vl_chem: 3-D coordinates, bonds) to
** a dockable ligand (vl_dock_mol), the way `obabel ligand.sdf -h -O
** ligand.pdbqt` (Open Babel 3.1.1's PDBQT writer) prepares it, which is how
** the reference ligands under /work/shared/data/complexes were made.
** ops/dock/ligprep.c describes each rule.
*/
#ifndef VL_DOCK_LIGPREP_H
#define VL_DOCK_LIGPREP_H

#include "io.h"
#include "molecule.h"

typedef struct vl_dock_prep_info {
  int heavy;          /* heavy atoms kept */
  int polar_h;        /* polar hydrogens in the ligand (HD) */
  int added_h;        /* of which placed here (implicit in the file) */
  int merged_h;       /* non-polar hydrogens merged into their carbon */
  int dropped;        /* atoms of smaller disconnected pieces dropped (salts) */
  int torsions;       /* BRANCH records = TORSDOF */
  int aromatic;       /* aromatic atoms */
  int bonds_perceived;/* 1 when bonds came from distances (PDB without CONECT) */
} vl_dock_prep_info;

/* The prepared ligand as PDBQT text (ROOT/BRANCH/TORSDOF, charges 0).
   srcmap (may be NULL; malloc'ed, *nsrc entries, one per PDBQT atom in
   file order) gives each atom's index in c, or -1 for a hydrogen placed
   here. info may be NULL. */
int vl_dock_ligprep_pdbqt(const vl_chem *c, char **text, size_t *len, int **srcmap, int *nsrc,
                          vl_dock_prep_info *info);
/* The same parsed into a ligand (vl_dock_parse_ligands: Vina's atom order,
   vl_dock_mol_perceive). srcmap[atom.order] is the atom's index in c (-1
   for a placed hydrogen). */
int vl_dock_ligprep(const vl_chem *c, vl_dock_mol *out, int **srcmap, vl_dock_prep_info *info);

#endif
