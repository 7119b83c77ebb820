/*
** io.h — molecule files for docking (prefix vl_chem_ / vl_dock_): a plain
** chemical molecule (elements, 3-D coordinates, bonds with orders, formal
** charges, SDF properties) read from SDF/MOL (V2000 and V3000), TRIPOS
** MOL2 and PDB; writers for PDBQT poses and SDF; symmetry-aware RMSD.
** ops/dock/ligprep.h turns a vl_chem into a dockable vl_dock_mol.
**
** Readers: sdf.c (also the element table and vl_chem helpers), mol2.c,
** pdb.c. Writers: write.c. RMSD: rmsd.c. Pure C11, no Lua. Errors through
** vl_error: VL_EIO when a file cannot be opened, read or written,
** VL_EFORMAT with "file:line: what" for malformed content.
*/
#ifndef VL_DOCK_IO_H
#define VL_DOCK_IO_H

#include <stddef.h>
#include <stdio.h>

#include "molecule.h"

#define VL_CHEM_MAX_ATOMS 1000000   /* a counts line above this is an error */
#define VL_CHEM_MAX_ELEMENT 118

/* Bond orders; VL_CHEM_BOND_AROMATIC is SDF type 4 / MOL2 'ar'. */
enum { VL_CHEM_BOND_SINGLE = 1, VL_CHEM_BOND_DOUBLE = 2, VL_CHEM_BOND_TRIPLE = 3, VL_CHEM_BOND_AROMATIC = 4 };

typedef struct vl_chem_atom {
  double xyz[3];
  double pcharge;      /* partial charge from the file (MOL2), else 0 */
  double occupancy;    /* PDB occupancy, 1 elsewhere */
  int z;               /* atomic number, 1..118 */
  int charge;          /* formal charge (SDF M  CHG / V3000 CHG=, MOL2 none, PDB cols 79-80) */
  int aromatic;        /* the file said aromatic (MOL2 C.ar, N.ar; aromatic bond) */
  int serial;          /* number in the file (1-based for SDF/MOL2, PDB serial) */
  int resnum;
  int line;            /* line of the atom record, 1-based */
  char name[8];
  char resname[8];
  char chain;          /* ' ' when none */
  char altloc;         /* PDB altloc kept, ' ' when none */
  char hetatm;         /* PDB HETATM */
} vl_chem_atom;

typedef struct vl_chem_bond {
  int a, b;            /* atom indices, 0-based */
  int order;           /* VL_CHEM_BOND_* */
} vl_chem_bond;

typedef struct vl_chem_prop {
  char *name;          /* SDF "> <name>" */
  char *value;         /* lines joined with '\n', no trailing newline */
} vl_chem_prop;

typedef struct vl_chem {
  int natoms, nbonds, nprops;
  vl_chem_atom *atoms;
  vl_chem_bond *bonds;
  vl_chem_prop *props;
  int has_bonds;       /* 0: the file gave no connectivity (PDB without CONECT) */
  int line;            /* first line of the record in its file */
  char title[256];
  char source[256];    /* file name, for messages */
} vl_chem;

void vl_chem_clear(vl_chem *m);                 /* free the contents, zero the struct */
void vl_chem_free_array(vl_chem *m, int n);     /* an array from the parse functions */
int vl_chem_copy(vl_chem *dst, const vl_chem *src);
const char *vl_chem_element_symbol(int z);      /* "?" out of range */
int vl_chem_element_from_symbol(const char *s); /* case-insensitive; 0 when unknown */
/* Set or add a property (copies both strings). */
int vl_chem_set_prop(vl_chem *m, const char *name, const char *value);
const char *vl_chem_get_prop(const vl_chem *m, const char *name);  /* NULL when absent */

/* ---- SDF / MOL (sdf.c) ---- */

/* A streaming reader: one record per vl_sdf_next, so screening libraries
   of any size are read in constant memory. */
typedef struct vl_sdf_reader vl_sdf_reader;
int vl_sdf_open(const char *path, vl_sdf_reader **out);
/* From a buffer (copied); `name` is used in messages. */
int vl_sdf_open_buffer(const char *text, size_t len, const char *name, vl_sdf_reader **out);
/* Next record into *m (cleared first). *got = 0 at the end of the file.
   After an error the reader skips to the next "$$$$" on the following call. */
int vl_sdf_next(vl_sdf_reader *r, vl_chem *m, int *got);
int vl_sdf_line(const vl_sdf_reader *r);         /* lines read so far */
void vl_sdf_close(vl_sdf_reader *r);
/* All records of a file or buffer (an empty file is an error). */
int vl_sdf_read(const char *path, vl_chem **out, int *n);
int vl_sdf_parse(const char *text, size_t len, const char *name, vl_chem **out, int *n);

/* ---- MOL2 (mol2.c) ---- */

int vl_mol2_read(const char *path, vl_chem **out, int *n);
int vl_mol2_parse(const char *text, size_t len, const char *name, vl_chem **out, int *n);

/* ---- PDB (pdb.c) ---- */

/* ATOM/HETATM of the first MODEL. Alternate locations: per atom (chain,
   residue, insertion code, name) the first altloc seen is kept unless a
   later one has a strictly higher occupancy. CONECT records give bonds
   (repeats raise the order, as PDB writers encode double bonds); without
   CONECT has_bonds = 0 and ligprep perceives bonds from distances.
   HEADER, REMARK, TER, MASTER, ANISOU, SEQRES ... are skipped. */
int vl_pdb_read(const char *path, vl_chem *out);
int vl_pdb_parse(const char *text, size_t len, const char *name, vl_chem *out);

/* ---- writers (write.c); atomic: temp file + fsync + rename ---- */

/* Write a text buffer to path atomically. */
int vl_dock_write_atomic(const char *path, const char *text, size_t len);

/* Poses of a ligand (vl_dock_mol from PDBQT or ligprep) as Vina's output:
   MODEL k / REMARK VINA RESULT: affinity rmsd_lb rmsd_ub / ROOT ... BRANCH
   ... TORSDOF / ENDMDL. xyz: nposes x natoms x 3 in the molecule's order
   (NULL: the molecule's own coordinates, nposes must be 1); scores:
   nposes x 3 or NULL (no VINA RESULT line). */
int vl_dock_pdbqt_text(const vl_dock_mol *lig, int nposes, const double *xyz, const double *scores,
                       char **text, size_t *len);
int vl_dock_write_pdbqt(const char *path, const vl_dock_mol *lig, int nposes, const double *xyz,
                        const double *scores);

/* SDF (V2000) records of one molecule in several poses. xyz: nposes x
   natoms x 3 in the vl_chem's atom order (NULL: its own coordinates, one
   pose). props: for pose k, nprops name/value pairs at props[k*nprops..]
   (may be NULL); the molecule's own properties are written first. */
int vl_sdf_text(const vl_chem *m, int nposes, const double *xyz, int nprops, const char *const *names,
                const char *const *values, char **text, size_t *len);
int vl_sdf_write(const char *path, const vl_chem *m, int nposes, const double *xyz, int nprops,
                 const char *const *names, const char *const *values);

/* ---- RMSD (rmsd.c) ---- */

#define VL_RMSD_MAX_AUTOMORPHISMS 100000  /* enumeration bound; see vl_chem_rmsd */

/* Heavy-atom RMSD between two poses (coordinates in m's atom order, natoms
   x 3 each) without superposition. symmetry != 0: minimum over the graph
   automorphisms of the heavy-atom graph labelled by element, formal charge
   is ignored, bond orders with aromatic = 1.5 are compared unless
   ignore_orders (then connectivity only, as the data curator's RDKit
   script). More than VL_RMSD_MAX_AUTOMORPHISMS automorphisms: VL_EARG
   ("rmsd: more than N automorphisms ..."), unless max_automorphisms
   (<= 0: the default bound) is raised. *count (may be NULL) gets the number
   of automorphisms visited. */
int vl_chem_rmsd(const vl_chem *m, const double *xyz_a, const double *xyz_b, int symmetry, int ignore_orders,
                 long max_automorphisms, double *rmsd, long *count);
/* The same for a PDBQT molecule (Vina's atom order): its graph has no bond
   orders, so symmetry is over element and connectivity, as
   vina_reference.csv counts it. */
int vl_dock_mol_rmsd(const vl_dock_mol *m, const double *xyz_a, const double *xyz_b, int symmetry,
                     long max_automorphisms, double *rmsd, long *count);

#endif
