/*
** molecule.h — molecules for docking (prefix vl_dock_): atoms with AutoDock
** and X-Score types, bonds, and a ligand's torsion tree, as AutoDock Vina
** 1.2.3 builds them from PDBQT (ops/dock/pdbqt.c reads, ops/dock/molecule.c
** perceives bonds, types and intramolecular pairs).
**
** Atom order. A ligand's atoms are kept in Vina's internal order, not the
** file's: the torsion tree is walked depth first and each rigid body (node)
** owns a contiguous range [begin, end) of atoms, which holds the node's own
** atoms and, right after each atom, the first atom of each branch hanging
** from it (that atom sits on the rotation axis and so moves with the
** parent). atom.order gives each atom's position in the file (0-based).
** A receptor keeps the file's order and has a single node.
**
** Poses. A ligand pose is a position (the root origin, i.e. the first ROOT
** atom), a unit quaternion (w, x, y, z) applied about that origin, and one
** angle per branch (radians, 0 = the input geometry). vl_dock_pose_coords
** turns a pose into coordinates; vl_dock_pose_gradient turns dE/dxyz into
** dE/d(position, orientation, torsions) with the orientation part as a
** torque (the derivative along a rotation vector applied on the left).
**
** Pure C11, no Lua. Errors through vl_error (VL_EIO for files that cannot
** be read, VL_EFORMAT with "file:line: ..." for malformed content).
*/
#ifndef VL_DOCK_MOLECULE_H
#define VL_DOCK_MOLECULE_H

#include <stdint.h>

/* AutoDock 4 atom types, numbered as Vina numbers them. */
enum {
  VL_DOCK_AD_C, VL_DOCK_AD_A, VL_DOCK_AD_N, VL_DOCK_AD_O, VL_DOCK_AD_P, VL_DOCK_AD_S,
  VL_DOCK_AD_H, VL_DOCK_AD_F, VL_DOCK_AD_I, VL_DOCK_AD_NA, VL_DOCK_AD_OA, VL_DOCK_AD_SA,
  VL_DOCK_AD_HD, VL_DOCK_AD_Mg, VL_DOCK_AD_Mn, VL_DOCK_AD_Zn, VL_DOCK_AD_Ca, VL_DOCK_AD_Fe,
  VL_DOCK_AD_Cl, VL_DOCK_AD_Br, VL_DOCK_AD_Si, VL_DOCK_AD_At,
  VL_DOCK_AD_G0, VL_DOCK_AD_G1, VL_DOCK_AD_G2, VL_DOCK_AD_G3,
  VL_DOCK_AD_CG0, VL_DOCK_AD_CG1, VL_DOCK_AD_CG2, VL_DOCK_AD_CG3, VL_DOCK_AD_W,
  VL_DOCK_AD_COUNT  /* also "not an AutoDock type" (metals such as Cu, Na, K) */
};

/* X-Score atom types (Vina's XS types); VL_DOCK_XS_NONE: not scored (H, W, G*). */
enum {
  VL_DOCK_XS_C_H, VL_DOCK_XS_C_P, VL_DOCK_XS_N_P, VL_DOCK_XS_N_D, VL_DOCK_XS_N_A,
  VL_DOCK_XS_N_DA, VL_DOCK_XS_O_P, VL_DOCK_XS_O_D, VL_DOCK_XS_O_A, VL_DOCK_XS_O_DA,
  VL_DOCK_XS_S_P, VL_DOCK_XS_P_P, VL_DOCK_XS_F_H, VL_DOCK_XS_Cl_H, VL_DOCK_XS_Br_H,
  VL_DOCK_XS_I_H, VL_DOCK_XS_Si, VL_DOCK_XS_At, VL_DOCK_XS_Met_D,
  VL_DOCK_XS_COUNT,
  VL_DOCK_XS_NONE = VL_DOCK_XS_COUNT
};

/* Elements as Vina groups them. */
enum {
  VL_DOCK_EL_H, VL_DOCK_EL_C, VL_DOCK_EL_N, VL_DOCK_EL_O, VL_DOCK_EL_S, VL_DOCK_EL_P,
  VL_DOCK_EL_F, VL_DOCK_EL_Cl, VL_DOCK_EL_Br, VL_DOCK_EL_I, VL_DOCK_EL_Si, VL_DOCK_EL_At,
  VL_DOCK_EL_Met, VL_DOCK_EL_Dummy, VL_DOCK_EL_COUNT
};

typedef struct vl_dock_atom {
  double xyz[3];     /* coordinates as read, Å */
  double charge;     /* partial charge (columns 69-76), 0 when blank */
  int ad;            /* VL_DOCK_AD_*; VL_DOCK_AD_COUNT for a metal AutoDock does not type */
  int xs;            /* VL_DOCK_XS_* */
  int el;            /* VL_DOCK_EL_* */
  int serial;        /* atom serial number (columns 7-11) */
  int resnum;        /* residue sequence number */
  int order;         /* position in the file, 0-based */
  int line;          /* line in the file, 1-based */
  int node;          /* ligand: the rigid body (torsion-tree node) it moves with */
  char name[5];      /* atom name, trimmed */
  char resname[4];   /* residue name, trimmed */
  char chain;        /* chain id, ' ' when blank */
  char type[4];      /* the AutoDock type as written (truncated) */
  uint8_t hetatm;    /* 1 for HETATM records */
} vl_dock_atom;

typedef struct vl_dock_bond {
  int a, b;          /* atom indices */
  int rotatable;     /* 1 for the axis bond of a torsion (Vina's DISTANCE_ROTOR) */
} vl_dock_bond;

/* A rigid body of the torsion tree; node 0 is ROOT, parents before children. */
typedef struct vl_dock_node {
  int parent;        /* parent node, -1 for the root */
  int begin, end;    /* atoms [begin, end) move with this node */
  int axis_from;     /* atom in the parent bound to this branch (BRANCH's first number) */
  int axis_to;       /* this branch's first atom (BRANCH's second number): origin */
  int sub_end;       /* nodes (this, sub_end) are this node's descendants */
} vl_dock_node;

/* An intramolecular pair Vina scores: more than 3 bonds apart (as Vina
   counts them) and able to move relative to each other. */
typedef struct vl_dock_pair {
  int a, b;
} vl_dock_pair;

typedef struct vl_dock_mol {
  int natoms;
  vl_dock_atom *atoms;
  int nbonds;
  vl_dock_bond *bonds;
  int *adj_start;    /* natoms + 1 offsets into adj: bonded neighbours in Vina's order */
  int *adj;
  int nnodes;        /* 1 for a receptor or a rigid ligand */
  vl_dock_node *nodes;
  int npairs;
  vl_dock_pair *pairs;
  int torsdof;       /* TORSDOF record (ligands), 0 for receptors */
  int is_ligand;
  double nrot;       /* Nrot of 1 + w*Nrot as Vina counts it (terminal rotors 1/2) */
  double rotors;     /* the same count (kept for builders that set nrot otherwise) */
  char source[256];  /* file name (for messages), possibly shortened */
  int model;         /* MODEL number, 0 when the file had none */
} vl_dock_mol;

/* ---- reading (ops/dock/pdbqt.c) ---- */

/* Read a rigid receptor PDBQT: ATOM/HETATM records (first MODEL only);
   REMARK, TER, END, CONECT, MASTER, HEADER ... are skipped. */
int vl_dock_read_receptor(const char *path, vl_dock_mol **out);
/* Read the ligands of a PDBQT file: one per MODEL (or the whole file when
   it has no MODEL record), each with ROOT/BRANCH/ENDBRANCH/TORSDOF.
   *out is a malloc'ed array of *n molecules; free with vl_dock_mols_free. */
int vl_dock_read_ligands(const char *path, vl_dock_mol **out, int *n);
/* The same from a buffer; `name` is used in messages. */
int vl_dock_parse_ligands(const char *text, size_t len, const char *name, vl_dock_mol **out, int *n);
int vl_dock_parse_receptor(const char *text, size_t len, const char *name, vl_dock_mol **out);

void vl_dock_mol_free(vl_dock_mol *m);          /* one from vl_dock_read_receptor */
void vl_dock_mols_free(vl_dock_mol *m, int n);   /* an array from vl_dock_read_ligands */
void vl_dock_mol_clear(vl_dock_mol *m);          /* free the contents, keep the struct */

/* ---- perception (ops/dock/molecule.c) ---- */

/* Bonds, X-Score types, rotatable bonds, Nrot and intramolecular pairs,
   as Vina 1.2.3 derives them from atoms (xyz, ad) and nodes. The readers
   call this; a builder that fills atoms and nodes itself (SDF/MOL2) calls
   it last, with: is_ligand set; nodes[0] the root (parent -1); node k's
   atoms the range [begin, end), ranges tiling [0, natoms) in node order;
   parents before children; each atom's .node its node; for k > 0,
   axis_to (the branch's first atom) inside the parent's range and
   axis_from (its bonded atom) in the parent or above; sub_end past the
   last descendant. A layout that breaks these is refused (VL_EARG). */
int vl_dock_mol_perceive(vl_dock_mol *m);

/* Type names. */
const char *vl_dock_ad_name(int ad);
const char *vl_dock_xs_name(int xs);
int vl_dock_ad_from_name(const char *name);      /* VL_DOCK_AD_COUNT if unknown */
double vl_dock_xs_radius(int xs);                /* X-Score vdW radius, Å */
double vl_dock_ad_covalent_radius(int ad);
int vl_dock_xs_is_hydrophobic(int xs);
int vl_dock_xs_is_donor(int xs);
int vl_dock_xs_is_acceptor(int xs);

/* ---- poses (ops/dock/molecule.c) ---- */

/* Number of pose variables: 3 (position) + 3 (orientation) + nnodes - 1. */
int vl_dock_pose_size(const vl_dock_mol *lig);
/* The pose of the input geometry: position = first ROOT atom, identity
   rotation, zero torsions. pos[3], q[4], tors[nnodes-1]. */
void vl_dock_pose_identity(const vl_dock_mol *lig, double *pos, double *q, double *tors);
/* Coordinates (natoms x 3, ligand order) of a pose. */
int vl_dock_pose_coords(const vl_dock_mol *lig, const double *pos, const double *q,
                        const double *tors, double *xyz);
/* dE/dxyz (natoms x 3) at xyz -> g[3 + 3 + nnodes - 1]: force sum, torque
   about the root origin, and per-branch torque along the branch axis. */
int vl_dock_pose_gradient(const vl_dock_mol *lig, const double *xyz, const double *dxyz, double *g);
/* q <- exp(rotvec / 2) * q (normalised). */
void vl_dock_quat_rotate(double *q, const double *rotvec);

#endif
