/*
** sdf.c — MDL SDF/MOL reader (V2000 and V3000 connection tables), streamed
** one record at a time, plus the element table and vl_chem helpers that
** mol2.c, pdb.c, ligprep.c, write.c and rmsd.c share.
**
** A record: title, program and comment lines, the counts line, the atom
** and bond blocks (V2000 fixed columns, or "M  V30" lines with "-"
** continuations), property lines up to "M  END" (M  CHG sets formal
** charges, replacing the atom block's charge column as the format says;
** other M lines are skipped), then "> <name>" data items up to "$$$$".
** A counts line without a version tag is read as V2000. Every error names
** the file and the line: a record that ends before its counts line's
** atoms and bonds, a bond to an atom that does not exist, an unknown
** element, coordinates that are not numbers, an empty file.
*/
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "io.h"

/* ---- elements ---- */

static const char *const elements[VL_CHEM_MAX_ELEMENT + 1] = {
    "?",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",  "S",
    "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho",
    "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po",
    "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md",
    "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};

const char *vl_chem_element_symbol(int z) { return z > 0 && z <= VL_CHEM_MAX_ELEMENT ? elements[z] : "?"; }

int vl_chem_element_from_symbol(const char *s) {
  char b[3] = {0, 0, 0};
  while (*s == ' ') s++;
  if (!isalpha((unsigned char)s[0])) return 0;
  b[0] = (char)toupper((unsigned char)s[0]);
  if (isalpha((unsigned char)s[1])) b[1] = (char)tolower((unsigned char)s[1]);
  if (s[1] && isalpha((unsigned char)s[1]) && isalpha((unsigned char)s[2])) return 0;
  if (strcmp(b, "D") == 0 || strcmp(b, "T") == 0) return 1; /* deuterium, tritium */
  for (int z = 1; z <= VL_CHEM_MAX_ELEMENT; z++)
    if (strcmp(elements[z], b) == 0) return z;
  return 0;
}

/* ---- vl_chem helpers ---- */

void vl_chem_clear(vl_chem *m) {
  if (!m) return;
  for (int i = 0; i < m->nprops; i++) {
    free(m->props[i].name);
    free(m->props[i].value);
  }
  free(m->props);
  free(m->atoms);
  free(m->bonds);
  memset(m, 0, sizeof *m);
}

void vl_chem_free_array(vl_chem *m, int n) {
  if (!m) return;
  for (int i = 0; i < n; i++) vl_chem_clear(&m[i]);
  free(m);
}

static char *dupstr(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

int vl_chem_set_prop(vl_chem *m, const char *name, const char *value) {
  for (int i = 0; i < m->nprops; i++)
    if (strcmp(m->props[i].name, name) == 0) {
      char *v = dupstr(value);
      if (!v) return vl_error(VL_ENOMEM, "dock: out of memory setting property '%s'", name);
      free(m->props[i].value);
      m->props[i].value = v;
      return VL_OK;
    }
  vl_chem_prop *p = realloc(m->props, (size_t)(m->nprops + 1) * sizeof *p);
  if (!p) return vl_error(VL_ENOMEM, "dock: out of memory setting property '%s'", name);
  m->props = p;
  char *n = dupstr(name), *v = dupstr(value);
  if (!n || !v) {
    free(n);
    free(v);
    return vl_error(VL_ENOMEM, "dock: out of memory setting property '%s'", name);
  }
  p[m->nprops].name = n;
  p[m->nprops].value = v;
  m->nprops++;
  return VL_OK;
}

const char *vl_chem_get_prop(const vl_chem *m, const char *name) {
  for (int i = 0; i < m->nprops; i++)
    if (strcmp(m->props[i].name, name) == 0) return m->props[i].value;
  return NULL;
}

int vl_chem_copy(vl_chem *dst, const vl_chem *src) {
  memset(dst, 0, sizeof *dst);
  *dst = *src;
  dst->atoms = NULL;
  dst->bonds = NULL;
  dst->props = NULL;
  dst->nprops = 0;
  dst->atoms = malloc((size_t)(src->natoms ? src->natoms : 1) * sizeof *dst->atoms);
  dst->bonds = malloc((size_t)(src->nbonds ? src->nbonds : 1) * sizeof *dst->bonds);
  if (!dst->atoms || !dst->bonds) {
    vl_chem_clear(dst);
    return vl_error(VL_ENOMEM, "dock: out of memory copying a molecule");
  }
  if (src->natoms) memcpy(dst->atoms, src->atoms, (size_t)src->natoms * sizeof *dst->atoms);
  if (src->nbonds) memcpy(dst->bonds, src->bonds, (size_t)src->nbonds * sizeof *dst->bonds);
  for (int i = 0; i < src->nprops; i++)
    if (vl_chem_set_prop(dst, src->props[i].name, src->props[i].value)) {
      vl_chem_clear(dst);
      return VL_ENOMEM;
    }
  return VL_OK;
}

/* ---- the reader ---- */

struct vl_sdf_reader {
  FILE *f;
  char *buf; /* the copy behind fmemopen, or NULL */
  char *line;
  size_t cap;
  ssize_t len;
  int lineno;
  int resync; /* skip to the next $$$$ before reading */
  int eof;
  char name[256];
};

static int next_line(vl_sdf_reader *r) {
  r->len = getline(&r->line, &r->cap, r->f);
  if (r->len < 0) {
    r->eof = 1;
    return 0;
  }
  while (r->len > 0 && (r->line[r->len - 1] == '\n' || r->line[r->len - 1] == '\r')) r->line[--r->len] = 0;
  r->lineno++;
  return 1;
}

int vl_sdf_open(const char *path, vl_sdf_reader **out) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return vl_error(VL_EIO, "sdf: cannot open '%s': %s", path, strerror(errno));
  vl_sdf_reader *r = calloc(1, sizeof *r);
  if (!r) {
    fclose(f);
    return vl_error(VL_ENOMEM, "sdf: out of memory opening '%s'", path);
  }
  r->f = f;
  snprintf(r->name, sizeof r->name, "%s", path);
  *out = r;
  return VL_OK;
}

int vl_sdf_open_buffer(const char *text, size_t len, const char *name, vl_sdf_reader **out) {
  *out = NULL;
  vl_sdf_reader *r = calloc(1, sizeof *r);
  char *b = malloc(len + 1);
  if (!r || !b) {
    free(r);
    free(b);
    return vl_error(VL_ENOMEM, "sdf: out of memory reading %s", name);
  }
  if (len) memcpy(b, text, len);
  b[len] = 0;
  r->buf = b;
  r->f = len ? fmemopen(b, len, "rb") : NULL;
  if (len && !r->f) {
    free(b);
    free(r);
    return vl_error(VL_EIO, "sdf: cannot read buffer %s", name);
  }
  if (!len) r->eof = 1;
  snprintf(r->name, sizeof r->name, "%s", name);
  *out = r;
  return VL_OK;
}

void vl_sdf_close(vl_sdf_reader *r) {
  if (!r) return;
  if (r->f) fclose(r->f);
  free(r->buf);
  free(r->line);
  free(r);
}

int vl_sdf_line(const vl_sdf_reader *r) { return r ? r->lineno : 0; }

/* ---- parsing helpers ---- */

/* columns [a, a+w) of s (length n) into out, trimmed */
static void col(const char *s, ssize_t n, int a, int w, char *out, size_t cap) {
  size_t k = 0;
  for (int i = a; i < a + w && i < n && k + 1 < cap; i++) out[k++] = s[i];
  out[k] = 0;
  char *p = out;
  while (*p == ' ' || *p == '\t') p++;
  memmove(out, p, strlen(p) + 1);
  size_t e = strlen(out);
  while (e > 0 && (out[e - 1] == ' ' || out[e - 1] == '\t')) out[--e] = 0;
}

static int to_int(const char *s, long *v) {
  if (!*s) return 0;
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (errno || *end) return 0;
  *v = x;
  return 1;
}

static int to_double(const char *s, double *v) {
  if (!*s) return 0;
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  while (*end == ' ') end++;
  if (errno || *end || !isfinite(x)) return 0;
  *v = x;
  return 1;
}

static int add_atom(vl_chem *m, int *cap) {
  if (m->natoms == *cap) {
    int nc = *cap ? *cap * 2 : 32;
    vl_chem_atom *a = realloc(m->atoms, (size_t)nc * sizeof *a);
    if (!a) return -1;
    m->atoms = a;
    *cap = nc;
  }
  memset(&m->atoms[m->natoms], 0, sizeof m->atoms[0]);
  m->atoms[m->natoms].occupancy = 1;
  m->atoms[m->natoms].chain = ' ';
  m->atoms[m->natoms].altloc = ' ';
  m->natoms++;
  return 0;
}

static int add_bond(vl_chem *m, int *cap, int a, int b, int order) {
  if (m->nbonds == *cap) {
    int nc = *cap ? *cap * 2 : 32;
    vl_chem_bond *x = realloc(m->bonds, (size_t)nc * sizeof *x);
    if (!x) return -1;
    m->bonds = x;
    *cap = nc;
  }
  m->bonds[m->nbonds++] = (vl_chem_bond){a, b, order};
  return 0;
}

#define OOM(r) vl_error(VL_ENOMEM, "sdf: out of memory reading %s", (r)->name)

static int set_element(vl_sdf_reader *r, vl_chem_atom *a, const char *sym) {
  int z = vl_chem_element_from_symbol(sym);
  if (!z)
    return vl_error(VL_EFORMAT, "%s:%d: unknown element '%s' (expected an element symbol such as C, N, Cl)",
                    r->name, r->lineno, sym);
  a->z = z;
  snprintf(a->name, sizeof a->name, "%s", vl_chem_element_symbol(z));
  return VL_OK;
}

static int check_bond(vl_sdf_reader *r, vl_chem *m, long a, long b, long t) {
  if (a < 1 || a > m->natoms || b < 1 || b > m->natoms)
    return vl_error(VL_EFORMAT, "%s:%d: bond between atoms %ld and %ld, but the molecule has %d atoms", r->name,
                    r->lineno, a, b, m->natoms);
  if (a == b) return vl_error(VL_EFORMAT, "%s:%d: bond from atom %ld to itself", r->name, r->lineno, a);
  if (t < 1 || t > 8)
    return vl_error(VL_EFORMAT, "%s:%d: bond type %ld (expected 1-3 or 4 for aromatic, 5-8 query types)",
                    r->name, r->lineno, t);
  return VL_OK;
}

static int bond_order_of_type(long t) { return t >= 1 && t <= 4 ? (int)t : 1; /* query types: single */ }

/* V2000 atom and bond blocks */
static int read_v2000(vl_sdf_reader *r, vl_chem *m, long na, long nb) {
  int acap = 0, bcap = 0;
  for (long i = 0; i < na; i++) {
    if (!next_line(r) || strncmp(r->line, "M  END", 6) == 0 || strcmp(r->line, "$$$$") == 0)
      return vl_error(VL_EFORMAT, "%s:%d: the record ends after %ld of its %ld atoms (counts line at line %d)",
                      r->name, r->lineno, i, na, m->line + 3);
    if (add_atom(m, &acap)) return OOM(r);
    vl_chem_atom *a = &m->atoms[m->natoms - 1];
    a->line = r->lineno;
    a->serial = (int)i + 1;
    char f[16];
    double xyz[3];
    int ok = r->len >= 34;
    for (int d = 0; ok && d < 3; d++) {
      col(r->line, r->len, 10 * d, 10, f, sizeof f);
      ok = to_double(f, &xyz[d]);
    }
    char sym[8] = "";
    long chg = 0;
    if (ok) {
      col(r->line, r->len, 31, 3, sym, sizeof sym);
      col(r->line, r->len, 36, 3, f, sizeof f);
      if (f[0] && !to_int(f, &chg)) chg = 0;
    } else { /* free format: x y z symbol */
      char e[8];
      ok = sscanf(r->line, "%lf %lf %lf %7s", &xyz[0], &xyz[1], &xyz[2], e) == 4 && isfinite(xyz[0]) &&
           isfinite(xyz[1]) && isfinite(xyz[2]);
      if (ok) snprintf(sym, sizeof sym, "%s", e);
    }
    if (!ok)
      return vl_error(VL_EFORMAT, "%s:%d: atom %ld: cannot read 'x y z element' from \"%.60s\"", r->name, r->lineno,
                      i + 1, r->line);
    memcpy(a->xyz, xyz, sizeof xyz);
    int st = set_element(r, a, sym);
    if (st) return st;
    static const int code[8] = {0, 3, 2, 1, 0, -1, -2, -3};
    a->charge = chg >= 0 && chg <= 7 ? code[chg] : 0;
  }
  for (long i = 0; i < nb; i++) {
    if (!next_line(r) || strncmp(r->line, "M  ", 3) == 0 || strcmp(r->line, "$$$$") == 0)
      return vl_error(VL_EFORMAT, "%s:%d: the record ends after %ld of its %ld bonds", r->name, r->lineno, i, nb);
    char f[8];
    long a, b, t;
    col(r->line, r->len, 0, 3, f, sizeof f);
    int ok = to_int(f, &a);
    col(r->line, r->len, 3, 3, f, sizeof f);
    ok = ok && to_int(f, &b);
    col(r->line, r->len, 6, 3, f, sizeof f);
    ok = ok && to_int(f, &t);
    if (!ok) ok = sscanf(r->line, "%ld %ld %ld", &a, &b, &t) == 3;
    if (!ok) return vl_error(VL_EFORMAT, "%s:%d: cannot read bond %ld from \"%.40s\"", r->name, r->lineno, i + 1, r->line);
    int st = check_bond(r, m, a, b, t);
    if (st) return st;
    if (add_bond(m, &bcap, (int)a - 1, (int)b - 1, bond_order_of_type(t))) return OOM(r);
  }
  return VL_OK;
}

/* One logical "M  V30" line (continuations joined) into *out (malloc'ed). */
static int v30_line(vl_sdf_reader *r, char **out) {
  *out = NULL;
  if (!next_line(r)) return vl_error(VL_EFORMAT, "%s:%d: the V3000 record ends early", r->name, r->lineno);
  if (strncmp(r->line, "M  V30 ", 7) != 0) {
    if (strncmp(r->line, "M  END", 6) == 0 || strcmp(r->line, "$$$$") == 0)
      return vl_error(VL_EFORMAT, "%s:%d: the V3000 record ends before END CTAB", r->name, r->lineno);
    return vl_error(VL_EFORMAT, "%s:%d: expected an 'M  V30' line, found \"%.40s\"", r->name, r->lineno, r->line);
  }
  size_t n = 0, cap = 0;
  char *s = NULL;
  for (;;) {
    const char *p = r->line + 7;
    size_t k = strlen(p);
    int cont = k > 0 && p[k - 1] == '-';
    if (cont) k--;
    if (n + k + 1 > cap) {
      cap = (n + k + 1) * 2;
      char *ns = realloc(s, cap);
      if (!ns) {
        free(s);
        return OOM(r);
      }
      s = ns;
    }
    memcpy(s + n, p, k);
    n += k;
    s[n] = 0;
    if (!cont) break;
    if (!next_line(r) || strncmp(r->line, "M  V30 ", 7) != 0) {
      free(s);
      return vl_error(VL_EFORMAT, "%s:%d: a V3000 line continued with '-' has no continuation", r->name, r->lineno);
    }
  }
  *out = s;
  return VL_OK;
}

typedef struct idmap {
  long id;
  int idx;
} idmap;

static int find_id(const idmap *map, int n, long id) {
  for (int i = 0; i < n; i++)
    if (map[i].id == id) return map[i].idx;
  return -1;
}

static int read_v3000(vl_sdf_reader *r, vl_chem *m) {
  char *s = NULL;
  int st, acap = 0, bcap = 0;
  long na = -1, nb = -1;
  idmap *map = NULL;
  int in_atoms = 0, in_bonds = 0, in_other = 0;
  for (;;) {
    st = v30_line(r, &s);
    if (st) goto done;
    char w1[32] = "", w2[32] = "";
    sscanf(s, "%31s %31s", w1, w2);
    if (strcmp(w1, "BEGIN") == 0) {
      if (strcmp(w2, "ATOM") == 0) in_atoms = 1;
      else if (strcmp(w2, "BOND") == 0) in_bonds = 1;
      else if (strcmp(w2, "CTAB") != 0) in_other++;
    } else if (strcmp(w1, "END") == 0) {
      if (strcmp(w2, "CTAB") == 0) break;
      if (strcmp(w2, "ATOM") == 0) {
        in_atoms = 0;
        if (m->natoms != na) {
          st = vl_error(VL_EFORMAT, "%s:%d: the ATOM block has %d atoms, COUNTS says %ld", r->name, r->lineno,
                        m->natoms, na);
          goto done;
        }
      } else if (strcmp(w2, "BOND") == 0) {
        in_bonds = 0;
        if (m->nbonds != nb) {
          st = vl_error(VL_EFORMAT, "%s:%d: the BOND block has %d bonds, COUNTS says %ld", r->name, r->lineno,
                        m->nbonds, nb);
          goto done;
        }
      } else if (in_other > 0)
        in_other--;
    } else if (strcmp(w1, "COUNTS") == 0) {
      if (sscanf(s, "%*s %ld %ld", &na, &nb) != 2 || na < 0 || nb < 0 || na > VL_CHEM_MAX_ATOMS ||
          nb > 8L * VL_CHEM_MAX_ATOMS) {
        st = vl_error(VL_EFORMAT, "%s:%d: bad V3000 COUNTS line \"%.40s\"", r->name, r->lineno, s);
        goto done;
      }
      map = malloc((size_t)(na ? na : 1) * sizeof *map);
      if (!map) {
        st = OOM(r);
        goto done;
      }
    } else if (in_atoms && !in_other) {
      if (na < 0 || m->natoms >= na) {
        st = vl_error(VL_EFORMAT, "%s:%d: more atoms than the COUNTS line's %ld", r->name, r->lineno, na);
        goto done;
      }
      long id;
      char sym[16];
      double xyz[3];
      int used = 0;
      if (sscanf(s, "%ld %15s %lf %lf %lf %*d%n", &id, sym, &xyz[0], &xyz[1], &xyz[2], &used) < 5 ||
          !isfinite(xyz[0]) || !isfinite(xyz[1]) || !isfinite(xyz[2])) {
        st = vl_error(VL_EFORMAT, "%s:%d: cannot read a V3000 atom (index type x y z aamap) from \"%.60s\"", r->name,
                      r->lineno, s);
        goto done;
      }
      if (add_atom(m, &acap)) {
        st = OOM(r);
        goto done;
      }
      vl_chem_atom *a = &m->atoms[m->natoms - 1];
      a->line = r->lineno;
      a->serial = (int)id;
      memcpy(a->xyz, xyz, sizeof xyz);
      if ((st = set_element(r, a, sym))) goto done;
      const char *c = strstr(s, " CHG=");
      if (c) a->charge = atoi(c + 5);
      map[m->natoms - 1] = (idmap){id, m->natoms - 1};
    } else if (in_bonds && !in_other) {
      long id, t, a, b;
      if (sscanf(s, "%ld %ld %ld %ld", &id, &t, &a, &b) != 4) {
        st = vl_error(VL_EFORMAT, "%s:%d: cannot read a V3000 bond (index type atom1 atom2) from \"%.60s\"", r->name,
                      r->lineno, s);
        goto done;
      }
      int ia = find_id(map, m->natoms, a), ib = find_id(map, m->natoms, b);
      if (ia < 0 || ib < 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: bond %ld refers to atom %ld, which the ATOM block does not define", r->name,
                      r->lineno, id, ia < 0 ? a : b);
        goto done;
      }
      if ((st = check_bond(r, m, ia + 1, ib + 1, t))) goto done;
      if (add_bond(m, &bcap, ia, ib, bond_order_of_type(t))) {
        st = OOM(r);
        goto done;
      }
    }
    free(s);
    s = NULL;
  }
  if (na < 0) st = vl_error(VL_EFORMAT, "%s:%d: V3000 CTAB without a COUNTS line", r->name, r->lineno);
done:
  free(s);
  free(map);
  return st;
}

/* M  CHG / M  END lines (V2000) then data items up to $$$$ */
static int read_tail(vl_sdf_reader *r, vl_chem *m, int v3000) {
  int chg_reset = 0;
  int ended = 0;
  while (!ended) {
    if (!next_line(r)) return VL_OK; /* a MOL file ends without M  END or $$$$: accepted */
    if (strcmp(r->line, "$$$$") == 0) return VL_OK;
    if (strncmp(r->line, "M  END", 6) == 0) ended = 1;
    else if (!v3000 && strncmp(r->line, "M  CHG", 6) == 0) {
      if (!chg_reset) {
        for (int i = 0; i < m->natoms; i++) m->atoms[i].charge = 0;
        chg_reset = 1;
      }
      long cnt;
      char f[8];
      col(r->line, r->len, 6, 3, f, sizeof f);
      if (!to_int(f, &cnt) || cnt < 1 || cnt > 8 || r->len < 9 + 8 * cnt)
        return vl_error(VL_EFORMAT, "%s:%d: bad M  CHG line \"%.60s\"", r->name, r->lineno, r->line);
      for (long k = 0; k < cnt; k++) {
        long a, v;
        col(r->line, r->len, 9 + 8 * (int)k + 1, 3, f, sizeof f);
        int ok = to_int(f, &a);
        col(r->line, r->len, 9 + 8 * (int)k + 5, 3, f, sizeof f);
        ok = ok && to_int(f, &v);
        if (!ok || a < 1 || a > m->natoms || v < -15 || v > 15)
          return vl_error(VL_EFORMAT, "%s:%d: M  CHG entry %ld: atom %ld charge %ld (molecule has %d atoms)", r->name,
                          r->lineno, k + 1, ok ? a : 0, ok ? v : 0, m->natoms);
        m->atoms[a - 1].charge = (int)v;
      }
    }
  }
  /* data items */
  for (;;) {
    if (!next_line(r)) return VL_OK;
    if (strcmp(r->line, "$$$$") == 0) return VL_OK;
    if (r->line[0] != '>') continue;
    char name[256] = "";
    const char *lt = strchr(r->line, '<');
    const char *gt = lt ? strchr(lt + 1, '>') : NULL;
    if (lt && gt) snprintf(name, sizeof name, "%.*s", (int)(gt - lt - 1), lt + 1);
    else snprintf(name, sizeof name, "field%d", m->nprops + 1);
    size_t n = 0, cap = 64;
    char *val = malloc(cap);
    if (!val) return OOM(r);
    val[0] = 0;
    int more = 1;
    while ((more = next_line(r))) {
      if (r->len == 0) break;
      if (strcmp(r->line, "$$$$") == 0) break;
      size_t k = (size_t)r->len;
      if (n + k + 2 > cap) {
        cap = (n + k + 2) * 2;
        char *nv = realloc(val, cap);
        if (!nv) {
          free(val);
          return OOM(r);
        }
        val = nv;
      }
      if (n) val[n++] = '\n';
      memcpy(val + n, r->line, k);
      n += k;
      val[n] = 0;
    }
    int st = vl_chem_set_prop(m, name, val);
    free(val);
    if (st) return st;
    if (!more || strcmp(r->line, "$$$$") == 0) return VL_OK;
  }
}

int vl_sdf_next(vl_sdf_reader *r, vl_chem *m, int *got) {
  vl_chem_clear(m);
  *got = 0;
  if (r->resync) {
    r->resync = 0;
    while (next_line(r))
      if (strcmp(r->line, "$$$$") == 0) break;
  }
  if (r->eof) return VL_OK;
  /* header: title (skip blank lines between records only when the whole
     rest is blank) */
  if (!next_line(r)) return VL_OK;
  int first = r->lineno;
  snprintf(m->source, sizeof m->source, "%s", r->name);
  m->line = first;
  m->has_bonds = 1;
  snprintf(m->title, sizeof m->title, "%s", r->line);
  int st = VL_OK;
  int blank = 1;
  for (const char *p = m->title; *p; p++)
    if (!isspace((unsigned char)*p)) blank = 0;
  int l4 = 0;
  for (int k = 0; k < 3; k++) {
    if (!next_line(r)) break;
    for (const char *p = r->line; *p; p++)
      if (!isspace((unsigned char)*p)) blank = 0;
    if (k == 2) l4 = 1;
  }
  if (!l4) {
    vl_chem_clear(m);
    if (blank) return VL_OK; /* trailing blank lines are no record */
    return vl_error(VL_EFORMAT, "%s:%d: the record starting at line %d ends before its counts line", r->name,
                    r->lineno, first);
  }
  int v3000 = strstr(r->line, "V3000") != NULL;
  if (v3000) {
    st = read_v3000(r, m);
  } else {
    char f[8];
    long na, nb;
    col(r->line, r->len, 0, 3, f, sizeof f);
    int ok = to_int(f, &na);
    col(r->line, r->len, 3, 3, f, sizeof f);
    ok = ok && to_int(f, &nb);
    if (!ok || na < 0 || nb < 0 || na > 999 || nb > 999)
      st = vl_error(VL_EFORMAT, "%s:%d: bad counts line \"%.40s\" (expected 'aaabbb ... V2000')", r->name, r->lineno,
                    r->line);
    else
      st = read_v2000(r, m, na, nb);
  }
  if (st == VL_OK) st = read_tail(r, m, v3000);
  if (st == VL_OK && m->natoms == 0)
    st = vl_error(VL_EFORMAT, "%s:%d: the record has no atoms", r->name, first + 3);
  if (st) {
    vl_chem_clear(m);
    if (!r->eof && strcmp(r->line ? r->line : "", "$$$$") != 0) r->resync = 1;
    return st;
  }
  *got = 1;
  return VL_OK;
}

static int read_all(vl_sdf_reader *r, vl_chem **out, int *n) {
  int cap = 0, cnt = 0, got, st = VL_OK;
  vl_chem *mols = NULL;
  for (;;) {
    vl_chem m = {0};
    st = vl_sdf_next(r, &m, &got);
    if (st || !got) break;
    if (cnt == cap) {
      cap = cap ? cap * 2 : 4;
      vl_chem *nm = realloc(mols, (size_t)cap * sizeof *nm);
      if (!nm) {
        vl_chem_clear(&m);
        st = OOM(r);
        break;
      }
      mols = nm;
    }
    mols[cnt++] = m;
  }
  if (st == VL_OK && cnt == 0) st = vl_error(VL_EFORMAT, "%s:%d: no molecule in the file (empty SDF)", r->name, r->lineno);
  if (st) {
    vl_chem_free_array(mols, cnt);
    return st;
  }
  *out = mols;
  *n = cnt;
  return VL_OK;
}

int vl_sdf_read(const char *path, vl_chem **out, int *n) {
  *out = NULL;
  *n = 0;
  vl_sdf_reader *r;
  int st = vl_sdf_open(path, &r);
  if (st) return st;
  st = read_all(r, out, n);
  vl_sdf_close(r);
  return st;
}

int vl_sdf_parse(const char *text, size_t len, const char *name, vl_chem **out, int *n) {
  *out = NULL;
  *n = 0;
  vl_sdf_reader *r;
  int st = vl_sdf_open_buffer(text, len, name, &r);
  if (st) return st;
  st = read_all(r, out, n);
  vl_sdf_close(r);
  return st;
}
