/*
** mol2.c — TRIPOS MOL2 reader: @<TRIPOS>MOLECULE (name, counts),
** @<TRIPOS>ATOM (id name x y z type [subst_id subst_name charge]) and
** @<TRIPOS>BOND (id a1 a2 type); other sections are skipped. Every
** @<TRIPOS>MOLECULE starts a new molecule.
**
** Types: the element is the SYBYL type before the '.', "Du"/"LP"
** are refused as unknown elements; *.ar atoms and 'ar' bonds are aromatic,
** 'am' bonds single. MOL2 has no formal charges, so they are derived from
** the types: N.4 is +1, and a carboxylate / phosphate / sulfonate written
** with O.co2 gets one C=O (or P=O, S=O) and -1 on the other oxygens, so
** that the valence model of ligprep sees no hydroxyl hydrogens there.
*/
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "io.h"

static int read_whole(const char *path, char **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return vl_error(VL_EIO, "mol2: cannot open '%s': %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap + 1);
  while (b) {
    if (n == cap) {
      if (cap >= ((size_t)1 << 30)) {
        free(b);
        fclose(f);
        return vl_error(VL_EFORMAT, "mol2: '%s' is larger than 1 GiB", path);
      }
      char *nb = realloc(b, cap * 2 + 1);
      if (!nb) {
        free(b);
        b = NULL;
        break;
      }
      b = nb;
      cap *= 2;
    }
    size_t r = fread(b + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (!b) return vl_error(VL_ENOMEM, "mol2: out of memory reading '%s'", path);
  if (err) {
    free(b);
    return vl_error(VL_EIO, "mol2: error reading '%s'", path);
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return VL_OK;
}

typedef struct mline {
  const char *s;
  size_t n;
} mline;

enum { SEC_NONE, SEC_MOL, SEC_ATOM, SEC_BOND, SEC_OTHER };

static int finish(vl_chem *m, char (*types)[12], const char *name, int decl_atoms, int decl_bonds, int line) {
  if (m->natoms == 0) return vl_error(VL_EFORMAT, "%s:%d: molecule '%s' has no atoms", name, line, m->title);
  if (decl_atoms >= 0 && m->natoms != decl_atoms)
    return vl_error(VL_EFORMAT, "%s:%d: molecule '%s' lists %d atoms, its counts line says %d", name, line, m->title,
                    m->natoms, decl_atoms);
  if (decl_bonds >= 0 && m->nbonds != decl_bonds)
    return vl_error(VL_EFORMAT, "%s:%d: molecule '%s' lists %d bonds, its counts line says %d", name, line, m->title,
                    m->nbonds, decl_bonds);
  /* charges from types */
  for (int i = 0; i < m->natoms; i++)
    if (strcmp(types[i], "N.4") == 0) m->atoms[i].charge = 1;
  for (int i = 0; i < m->natoms; i++) {
    int z = m->atoms[i].z;
    if (z != 6 && z != 15 && z != 16) continue;
    int first = 1;
    for (int k = 0; k < m->nbonds; k++) {
      int o = m->bonds[k].a == i ? m->bonds[k].b : m->bonds[k].b == i ? m->bonds[k].a : -1;
      if (o < 0 || strcmp(types[o], "O.co2") != 0) continue;
      int deg = 0;
      for (int l = 0; l < m->nbonds; l++) deg += m->bonds[l].a == o || m->bonds[l].b == o;
      if (deg != 1) continue;
      if (first) {
        m->bonds[k].order = VL_CHEM_BOND_DOUBLE;
        first = 0;
      } else {
        m->bonds[k].order = VL_CHEM_BOND_SINGLE;
        m->atoms[o].charge = -1;
      }
      m->atoms[o].aromatic = 0;
    }
  }
  return VL_OK;
}

int vl_mol2_parse(const char *text, size_t len, const char *name, vl_chem **out, int *n) {
  *out = NULL;
  *n = 0;
  vl_chem *mols = NULL;
  int cnt = 0, cap = 0, st = VL_OK;
  int sec = SEC_NONE, molline = 0, acap = 0, bcap = 0, decl_atoms = -1, decl_bonds = -1, startline = 0;
  char (*types)[12] = NULL;
  int tcap = 0;
  long *ids = NULL;
  size_t pos = 0;
  int lineno = 0;
  vl_chem *m = NULL;
#define FAIL(...)                            \
  do {                                       \
    st = vl_error(VL_EFORMAT, __VA_ARGS__);  \
    goto done;                               \
  } while (0)
  while (pos <= len) {
    if (pos == len && (pos == 0 || text[pos - 1] == '\n')) break;
    size_t e = pos;
    while (e < len && text[e] != '\n') e++;
    lineno++;
    char buf[512];
    size_t k = e - pos < sizeof buf - 1 ? e - pos : sizeof buf - 1;
    memcpy(buf, text + pos, k);
    buf[k] = 0;
    while (k > 0 && (buf[k - 1] == '\r' || buf[k - 1] == ' ' || buf[k - 1] == '\t')) buf[--k] = 0;
    pos = e + 1;
    const char *s = buf;
    while (*s == ' ' || *s == '\t') s++;
    if (s[0] == '@' && memcmp(s, "@<TRIPOS>", 9 <= strlen(s) ? 9 : strlen(s) + 1) == 0) {
      const char *t = s + 9;
      if (strncmp(t, "MOLECULE", 8) == 0) {
        if (m && (st = finish(m, types, name, decl_atoms, decl_bonds, startline))) goto done;
        if (cnt == cap) {
          cap = cap ? cap * 2 : 4;
          vl_chem *nm = realloc(mols, (size_t)cap * sizeof *nm);
          if (!nm) {
            st = vl_error(VL_ENOMEM, "mol2: out of memory reading %s", name);
            goto done;
          }
          mols = nm;
        }
        m = &mols[cnt++];
        memset(m, 0, sizeof *m);
        snprintf(m->source, sizeof m->source, "%s", name);
        m->line = lineno;
        m->has_bonds = 1;
        startline = lineno;
        acap = bcap = 0;
        decl_atoms = decl_bonds = -1;
        sec = SEC_MOL;
        molline = 0;
      } else if (strncmp(t, "ATOM", 4) == 0) {
        if (!m) FAIL("%s:%d: @<TRIPOS>ATOM before @<TRIPOS>MOLECULE", name, lineno);
        sec = SEC_ATOM;
      } else if (strncmp(t, "BOND", 4) == 0) {
        if (!m) FAIL("%s:%d: @<TRIPOS>BOND before @<TRIPOS>MOLECULE", name, lineno);
        sec = SEC_BOND;
      } else
        sec = SEC_OTHER;
      continue;
    }
    if (*s == '#') continue;
    if (sec == SEC_MOL) {
      molline++;
      if (molline == 1) snprintf(m->title, sizeof m->title, "%.255s", s);
      else if (molline == 2) {
        long na = -1, nb = 0;
        int got = sscanf(s, "%ld %ld", &na, &nb);
        if (got < 1 || na < 0 || na > VL_CHEM_MAX_ATOMS || nb < 0 || nb > 8L * VL_CHEM_MAX_ATOMS)
          FAIL("%s:%d: bad MOL2 counts line \"%.40s\" (expected 'atoms bonds ...')", name, lineno, s);
        decl_atoms = (int)na;
        decl_bonds = got >= 2 ? (int)nb : -1;
      }
      continue;
    }
    if (!*s) continue;
    if (sec == SEC_ATOM) {
      long id;
      char an[32], ty[32];
      double x, y, z, q = 0;
      int got = sscanf(s, "%ld %31s %lf %lf %lf %31s %*s %*s %lf", &id, an, &x, &y, &z, ty, &q);
      if (got < 6 || !isfinite(x) || !isfinite(y) || !isfinite(z))
        FAIL("%s:%d: cannot read a MOL2 atom (id name x y z type) from \"%.60s\"", name, lineno, s);
      if (m->natoms >= VL_CHEM_MAX_ATOMS) FAIL("%s:%d: more than %d atoms", name, lineno, VL_CHEM_MAX_ATOMS);
      if (m->natoms == acap) {
        acap = acap ? acap * 2 : 32;
        vl_chem_atom *na = realloc(m->atoms, (size_t)acap * sizeof *na);
        char (*nt)[12] = tcap < acap ? realloc(types, (size_t)acap * sizeof *nt) : types;
        long *ni = tcap < acap ? realloc(ids, (size_t)acap * sizeof *ni) : ids;
        if (na) m->atoms = na;
        if (nt) types = nt;
        if (ni) ids = ni;
        if (!na || !nt || !ni) {
          st = vl_error(VL_ENOMEM, "mol2: out of memory reading %s", name);
          goto done;
        }
        if (tcap < acap) tcap = acap;
      }
      vl_chem_atom *a = &m->atoms[m->natoms];
      memset(a, 0, sizeof *a);
      a->xyz[0] = x;
      a->xyz[1] = y;
      a->xyz[2] = z;
      a->pcharge = got >= 7 && isfinite(q) ? q : 0;
      a->occupancy = 1;
      a->chain = ' ';
      a->altloc = ' ';
      a->serial = (int)id;
      a->line = lineno;
      snprintf(a->name, sizeof a->name, "%.7s", an);
      char el[8];
      size_t l = strcspn(ty, ".");
      snprintf(el, sizeof el, "%.*s", (int)(l < 7 ? l : 7), ty);
      a->z = vl_chem_element_from_symbol(el);
      if (!a->z)
        FAIL("%s:%d: unknown element in atom type '%s' (expected a SYBYL type such as C.3, N.ar, Cl)", name, lineno, ty);
      a->aromatic = strstr(ty, ".ar") != NULL;
      snprintf(types[m->natoms], sizeof types[0], "%.11s", ty);
      ids[m->natoms] = id;
      m->natoms++;
      continue;
    }
    if (sec == SEC_BOND) {
      long id, a1, a2;
      char ty[16];
      if (sscanf(s, "%ld %ld %ld %15s", &id, &a1, &a2, ty) != 4)
        FAIL("%s:%d: cannot read a MOL2 bond (id atom1 atom2 type) from \"%.60s\"", name, lineno, s);
      int i1 = -1, i2 = -1;
      for (int i = 0; i < m->natoms; i++) {
        if (ids[i] == a1) i1 = i;
        if (ids[i] == a2) i2 = i;
      }
      if (i1 < 0 || i2 < 0)
        FAIL("%s:%d: bond %ld refers to atom %ld, which the ATOM section does not define", name, lineno, id,
             i1 < 0 ? a1 : a2);
      if (i1 == i2) FAIL("%s:%d: bond %ld joins atom %ld to itself", name, lineno, id, a1);
      int order;
      if (strcmp(ty, "1") == 0 || strcmp(ty, "am") == 0 || strcmp(ty, "du") == 0 || strcmp(ty, "un") == 0 ||
          strcmp(ty, "nc") == 0)
        order = 1;
      else if (strcmp(ty, "2") == 0) order = 2;
      else if (strcmp(ty, "3") == 0) order = 3;
      else if (strcmp(ty, "ar") == 0) order = VL_CHEM_BOND_AROMATIC;
      else FAIL("%s:%d: bond type '%s' (expected 1, 2, 3, am, ar, du, un or nc)", name, lineno, ty);
      if (m->nbonds == bcap) {
        bcap = bcap ? bcap * 2 : 32;
        vl_chem_bond *nb = realloc(m->bonds, (size_t)bcap * sizeof *nb);
        if (!nb) {
          st = vl_error(VL_ENOMEM, "mol2: out of memory reading %s", name);
          goto done;
        }
        m->bonds = nb;
      }
      m->bonds[m->nbonds++] = (vl_chem_bond){i1, i2, order};
      continue;
    }
  }
  if (m && (st = finish(m, types, name, decl_atoms, decl_bonds, startline))) goto done;
  if (cnt == 0) FAIL("%s:%d: no @<TRIPOS>MOLECULE in the file (empty or not MOL2)", name, lineno);
#undef FAIL
done:
  free(types);
  free(ids);
  if (st) {
    vl_chem_free_array(mols, cnt);
    return st;
  }
  *out = mols;
  *n = cnt;
  return VL_OK;
}

int vl_mol2_read(const char *path, vl_chem **out, int *n) {
  char *b = NULL;
  size_t len = 0;
  *out = NULL;
  *n = 0;
  int st = read_whole(path, &b, &len);
  if (st) return st;
  st = vl_mol2_parse(b, len, path, out, n);
  free(b);
  return st;
}
