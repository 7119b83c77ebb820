/*
** pdb.c — PDB reader for ligands and small structures: ATOM/HETATM of the
** first MODEL (fixed columns: serial 7-11, name 13-16, altloc 17, residue
** 18-20, chain 22, number 23-26, insertion 27, x y z 31-54, occupancy
** 55-60, element 77-78, charge 79-80), CONECT bonds. Everything else
** (HEADER, REMARK, SEQRES, TER, ANISOU, MASTER, END ...) is skipped.
**
** Alternate locations: for each atom (chain, residue number, insertion
** code, residue name, atom name) the first altloc in the file is kept,
** and replaced only by a later altloc with a strictly higher occupancy
** (so "A" wins ties, as most programs do).
** Element: columns 77-78, else the atom name (first letters, without
** digits). Bonds: CONECT; a pair listed twice (or three times) from the
** same atom is a double (triple) bond, as PDB writers encode orders. No
** CONECT: has_bonds = 0 (ligprep then perceives bonds from distances).
*/
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "io.h"

static void fld(const char *s, size_t n, size_t a, size_t b, char *out, size_t cap) {
  size_t k = 0;
  for (size_t i = a; i < b && i < n && k + 1 < cap; i++) out[k++] = s[i];
  out[k] = 0;
  char *p = out;
  while (*p == ' ') p++;
  memmove(out, p, strlen(p) + 1);
  k = strlen(out);
  while (k > 0 && out[k - 1] == ' ') out[--k] = 0;
}

typedef struct cpair {
  int a, b;     /* serials, a < b */
  int na, nb;   /* times listed from a, from b */
} cpair;

int vl_pdb_parse(const char *text, size_t len, const char *name, vl_chem *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->source, sizeof m->source, "%s", name);
  m->line = 1;
  int st = VL_OK, acap = 0, pcap = 0, np = 0, lineno = 0;
  cpair *pairs = NULL;
  char *icodes = NULL;
  size_t pos = 0;
  int in_model = 0, models = 0;
#define FAIL(...)                           \
  do {                                      \
    st = vl_error(VL_EFORMAT, __VA_ARGS__); \
    goto done;                              \
  } while (0)
  while (pos < len) {
    size_t e = pos;
    while (e < len && text[e] != '\n') e++;
    const char *s = text + pos;
    size_t n = e - pos;
    if (n && s[n - 1] == '\r') n--;
    pos = e + 1;
    lineno++;
    if (n >= 5 && strncmp(s, "MODEL", 5) == 0) {
      models++;
      in_model = 1;
      continue;
    }
    if (n >= 6 && strncmp(s, "ENDMDL", 6) == 0) {
      if (models >= 1) break;
      continue;
    }
    int het = n >= 6 && strncmp(s, "HETATM", 6) == 0;
    if (het || (n >= 4 && strncmp(s, "ATOM", 4) == 0 && (n == 4 || s[4] == ' ' || isdigit((unsigned char)s[4])))) {
      if (n < 54) FAIL("%s:%d: ATOM/HETATM record shorter than 54 columns (no coordinates)", name, lineno);
      char f[16];
      double xyz[3];
      for (int d = 0; d < 3; d++) {
        fld(s, n, 30 + 8 * (size_t)d, 38 + 8 * (size_t)d, f, sizeof f);
        char *end;
        errno = 0;
        xyz[d] = strtod(f, &end);
        if (!f[0] || *end || errno || !isfinite(xyz[d]))
          FAIL("%s:%d: coordinate %c is \"%s\" (expected a number in columns %d-%d)", name, lineno, "xyz"[d], f,
               31 + 8 * d, 38 + 8 * d);
      }
      char nm[8], res[8], el[4] = "", chg[4] = "";
      fld(s, n, 12, 16, nm, sizeof nm);
      fld(s, n, 17, 20, res, sizeof res);
      fld(s, n, 76, 78, el, sizeof el);
      fld(s, n, 78, 80, chg, sizeof chg);
      char alt = n > 16 ? s[16] : ' ', chain = n > 21 ? s[21] : ' ', icode = n > 26 ? s[26] : ' ';
      fld(s, n, 22, 26, f, sizeof f);
      int resnum = atoi(f);
      fld(s, n, 6, 11, f, sizeof f);
      int serial = atoi(f);
      fld(s, n, 54, 60, f, sizeof f);
      double occ = f[0] ? atof(f) : 1.0;
      int z = el[0] ? vl_chem_element_from_symbol(el) : 0;
      if (!z) { /* from the name: letters only */
        char b[3] = {0, 0, 0};
        int k = 0;
        for (const char *p = nm; *p && k < 2; p++)
          if (isalpha((unsigned char)*p)) b[k++] = *p;
          else if (k) break;
        /* a 4-character name starting in column 13 may be a 2-letter element */
        if (k == 2 && !(n > 12 && s[12] != ' ' && isalpha((unsigned char)s[12]))) b[1] = 0;
        z = vl_chem_element_from_symbol(b);
        if (!z && b[1]) {
          b[1] = 0;
          z = vl_chem_element_from_symbol(b);
        }
      }
      if (!z) FAIL("%s:%d: unknown element for atom '%s' (columns 77-78 \"%s\")", name, lineno, nm, el);
      /* altloc */
      if (alt != ' ') {
        int found = -1;
        for (int i = 0; i < m->natoms; i++) {
          vl_chem_atom *o = &m->atoms[i];
          if (o->altloc != ' ' && o->chain == chain && o->resnum == resnum && icodes[i] == icode &&
              strcmp(o->name, nm) == 0 && strcmp(o->resname, res) == 0) {
            found = i;
            break;
          }
        }
        if (found >= 0) {
          vl_chem_atom *o = &m->atoms[found];
          if (occ > o->occupancy) {
            memcpy(o->xyz, xyz, sizeof xyz);
            o->occupancy = occ;
            o->altloc = alt;
            o->line = lineno; /* the serial stays the first altloc's, for CONECT */
          }
          continue;
        }
      }
      if (m->natoms >= VL_CHEM_MAX_ATOMS) FAIL("%s:%d: more than %d atoms", name, lineno, VL_CHEM_MAX_ATOMS);
      if (m->natoms == acap) {
        acap = acap ? acap * 2 : 64;
        vl_chem_atom *na = realloc(m->atoms, (size_t)acap * sizeof *na);
        char *ni = realloc(icodes, (size_t)acap);
        if (na) m->atoms = na;
        if (ni) icodes = ni;
        if (!na || !ni) {
          st = vl_error(VL_ENOMEM, "pdb: out of memory reading %s", name);
          goto done;
        }
      }
      vl_chem_atom *a = &m->atoms[m->natoms];
      memset(a, 0, sizeof *a);
      memcpy(a->xyz, xyz, sizeof xyz);
      a->z = z;
      a->occupancy = occ;
      a->serial = serial;
      a->resnum = resnum;
      a->line = lineno;
      a->chain = chain;
      a->altloc = alt;
      a->hetatm = (char)het;
      snprintf(a->name, sizeof a->name, "%s", nm);
      snprintf(a->resname, sizeof a->resname, "%s", res);
      if (chg[0]) { /* "2+" / "1-" */
        int v = isdigit((unsigned char)chg[0]) ? chg[0] - '0' : 0;
        if (chg[1] == '-') v = -v;
        a->charge = v;
      }
      icodes[m->natoms] = icode;
      m->natoms++;
      continue;
    }
    if (n >= 6 && strncmp(s, "CONECT", 6) == 0) {
      char f[8];
      fld(s, n, 6, 11, f, sizeof f);
      int a = atoi(f);
      if (a <= 0) FAIL("%s:%d: CONECT without an atom serial", name, lineno);
      for (size_t c0 = 11; c0 + 5 <= n && c0 < 31; c0 += 5) {
        fld(s, n, c0, c0 + 5, f, sizeof f);
        if (!f[0]) continue;
        int b = atoi(f);
        if (b <= 0 || b == a) continue;
        int lo = a < b ? a : b, hi = a < b ? b : a, k = 0;
        for (; k < np; k++)
          if (pairs[k].a == lo && pairs[k].b == hi) break;
        if (k == np) {
          if (np == pcap) {
            pcap = pcap ? pcap * 2 : 64;
            cpair *nq = realloc(pairs, (size_t)pcap * sizeof *nq);
            if (!nq) {
              st = vl_error(VL_ENOMEM, "pdb: out of memory reading %s", name);
              goto done;
            }
            pairs = nq;
          }
          pairs[np++] = (cpair){lo, hi, 0, 0};
        }
        if (a == lo) pairs[k].na++;
        else pairs[k].nb++;
      }
    }
  }
  (void)in_model;
  if (m->natoms == 0) FAIL("%s:%d: no ATOM or HETATM record (empty or not a PDB file)", name, lineno);
  if (np) {
    m->bonds = malloc((size_t)np * sizeof *m->bonds);
    if (!m->bonds) {
      st = vl_error(VL_ENOMEM, "pdb: out of memory reading %s", name);
      goto done;
    }
    for (int k = 0; k < np; k++) {
      int ia = -1, ib = -1;
      for (int i = 0; i < m->natoms; i++) {
        if (m->atoms[i].serial == pairs[k].a) ia = i;
        if (m->atoms[i].serial == pairs[k].b) ib = i;
      }
      if (ia < 0 || ib < 0) continue; /* a bond to an atom of a later MODEL or a dropped altloc */
      int o = pairs[k].na > pairs[k].nb ? pairs[k].na : pairs[k].nb;
      m->bonds[m->nbonds++] = (vl_chem_bond){ia, ib, o < 1 ? 1 : o > 3 ? 3 : o};
    }
    m->has_bonds = 1;
  }
#undef FAIL
done:
  free(pairs);
  free(icodes);
  if (st) vl_chem_clear(m);
  return st;
}

int vl_pdb_read(const char *path, vl_chem *out) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f) return vl_error(VL_EIO, "pdb: cannot open '%s': %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  while (b) {
    if (n == cap) {
      if (cap >= ((size_t)1 << 30)) {
        free(b);
        fclose(f);
        return vl_error(VL_EFORMAT, "pdb: '%s' is larger than 1 GiB", path);
      }
      char *nb = realloc(b, cap * 2);
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
  if (!b) return vl_error(VL_ENOMEM, "pdb: out of memory reading '%s'", path);
  if (err) {
    free(b);
    return vl_error(VL_EIO, "pdb: error reading '%s'", path);
  }
  int st = vl_pdb_parse(b, n, path, out);
  free(b);
  return st;
}
