/*
** pdbqt.c — PDBQT reader for docking (receptors and ligands).
**
** A receptor is the ATOM/HETATM records of a rigid PDBQT (the first MODEL
** when there are several); every other record (REMARK, TER, END, CONECT,
** MASTER, HEADER, ...) is skipped, so files that Vina refuses for a stray
** MASTER or CONECT line still load. A ligand is a torsion tree: ROOT ...
** ENDROOT, then nested BRANCH a b ... ENDBRANCH a b, and TORSDOF n; a file
** with MODEL/ENDMDL holds one ligand per model. Faults are reported as
** "file:line: what is wrong (expected ...)".
**
** Columns (1-based, inclusive): serial 7-11, name 13-16, residue 18-20,
** chain 22, residue number 23-26, x y z 31-38 39-46 47-54, charge 69-76,
** AutoDock type 78 to the end of the line.
*/
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../vl.h"
#include "molecule.h"

#define MAX_FILE_BYTES ((size_t)1 << 30) /* 1 GiB: larger is not a molecule file */
#define MAX_BRANCH_DEPTH 4096

static int read_file(const char *path, char **buf, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return vl_error(VL_EIO, "dock: cannot open '%s': %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap + 1);
  if (!b) {
    fclose(f);
    return vl_error(VL_ENOMEM, "dock: out of memory reading '%s'", path);
  }
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_FILE_BYTES) {
        free(b);
        fclose(f);
        return vl_error(VL_EFORMAT, "dock: '%s' is larger than 1 GiB (expected a PDBQT file)", path);
      }
      cap *= 2;
      char *nb = realloc(b, cap + 1);
      if (!nb) {
        free(b);
        fclose(f);
        return vl_error(VL_ENOMEM, "dock: out of memory reading '%s'", path);
      }
      b = nb;
    }
    size_t r = fread(b + n, 1, cap - n, f);
    n += r;
    if (r == 0) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(b);
    return vl_error(VL_EIO, "dock: error reading '%s'", path);
  }
  b[n] = 0;
  *buf = b;
  *len = n;
  return VL_OK;
}

/* One line: [s, s + n) without the newline. */
typedef struct line {
  const char *s;
  size_t n;
} line;

static int starts(const line *l, const char *tag) {
  size_t k = strlen(tag);
  return l->n >= k && memcmp(l->s, tag, k) == 0;
}

/* Columns a..b (1-based, inclusive), trimmed, into out (size cap). */
static void field(const line *l, size_t a, size_t b, char *out, size_t cap) {
  size_t i = a - 1, j = b < l->n ? b : l->n;
  while (i < j && isspace((unsigned char)l->s[i])) i++;
  while (j > i && isspace((unsigned char)l->s[j - 1])) j--;
  size_t n = i < j ? j - i : 0;
  if (n >= cap) n = cap - 1;
  memcpy(out, l->s + i, n);
  out[n] = 0;
}

static int parse_double(const char *s, double *v) {
  if (!*s) return 0;
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s || *end || errno == ERANGE || !isfinite(x)) return 0;
  *v = x;
  return 1;
}

static int parse_int(const char *s, int *v) {
  if (!*s) return 0;
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (end == s || *end || errno == ERANGE || x < -2147483647L || x > 2147483647L) return 0;
  *v = (int)x;
  return 1;
}

static const char *const other_metals[] = {"Cu", "Fe", "Na", "K", "Hg", "Co", "U", "Cd", "Ni"};

/* An ATOM/HETATM record. strict: the serial must be a number (ligands). */
static int parse_atom(const line *l, const char *src, int lineno, int strict, vl_dock_atom *a) {
  char buf[96];
  memset(a, 0, sizeof *a);
  a->line = lineno;
  a->hetatm = starts(l, "HETATM");
  if (l->n < 54)
    return vl_error(VL_EFORMAT, "%s:%d: ATOM record too short (%zu characters, expected coordinates in columns 31-54)",
                    src, lineno, l->n);
  field(l, 7, 11, buf, sizeof buf);
  if (!parse_int(buf, &a->serial)) {
    if (strict)
      return vl_error(VL_EFORMAT, "%s:%d: atom serial number '%s' (columns 7-11) is not an integer", src, lineno, buf);
    a->serial = -1;
  }
  field(l, 13, 16, a->name, sizeof a->name);
  field(l, 18, 20, a->resname, sizeof a->resname);
  a->chain = l->n >= 22 && l->s[21] != ' ' ? l->s[21] : ' ';
  field(l, 23, 26, buf, sizeof buf);
  if (!parse_int(buf, &a->resnum)) a->resnum = 0;
  static const size_t cols[3][2] = {{31, 38}, {39, 46}, {47, 54}};
  for (int d = 0; d < 3; d++) {
    field(l, cols[d][0], cols[d][1], buf, sizeof buf);
    if (!parse_double(buf, &a->xyz[d]))
      return vl_error(VL_EFORMAT, "%s:%d: %c coordinate '%s' (columns %zu-%zu) is not a number", src, lineno, 'x' + d,
                      buf, cols[d][0], cols[d][1]);
  }
  field(l, 69, 76, buf, sizeof buf);
  if (buf[0] && !parse_double(buf, &a->charge))
    return vl_error(VL_EFORMAT, "%s:%d: partial charge '%s' (columns 69-76) is not a number", src, lineno, buf);
  if (l->n < 78)
    return vl_error(VL_EFORMAT, "%s:%d: no AutoDock atom type (expected it in columns 78-79)", src, lineno);
  field(l, 78, l->n, buf, sizeof buf);
  if (!buf[0]) return vl_error(VL_EFORMAT, "%s:%d: no AutoDock atom type (expected it in columns 78-79)", src, lineno);
  {
    size_t tl = strlen(buf) < sizeof a->type - 1 ? strlen(buf) : sizeof a->type - 1;
    memcpy(a->type, buf, tl);
    a->type[tl] = 0;
  }
  a->ad = vl_dock_ad_from_name(buf);
  if (a->ad == VL_DOCK_AD_COUNT) {
    int metal = 0;
    for (size_t k = 0; k < sizeof other_metals / sizeof *other_metals; k++)
      if (strcmp(buf, other_metals[k]) == 0) metal = 1;
    if (!metal)
      return vl_error(VL_EFORMAT,
                      "%s:%d: '%s' is not an AutoDock atom type (expected C, A, N, NA, O, OA, S, SA, H, HD, P, F, "
                      "Cl, Br, I, Mg, Mn, Zn, Ca, Fe ...; types are case-sensitive)",
                      src, lineno, buf);
    a->el = VL_DOCK_EL_Met;
  }
  a->xs = VL_DOCK_XS_NONE;
  return VL_OK;
}

static int ignorable(const line *l) {
  static const char *const tags[] = {"REMARK", "WARNING", "USER", "TER", "END", "CONECT", "MASTER",
                                     "COMPND", "HEADER", "TITLE", "AUTHOR", "CRYST1", "EXPDTA"};
  size_t i = 0;
  while (i < l->n && isspace((unsigned char)l->s[i])) i++;
  if (i == l->n) return 1;
  for (size_t k = 0; k < sizeof tags / sizeof *tags; k++)
    if (starts(l, tags[k]) && !starts(l, "ENDROOT") && !starts(l, "ENDBRANCH") && !starts(l, "ENDMDL")) return 1;
  return 0;
}

/* Split text into lines (kept as pointers into text). */
static int split_lines(const char *text, size_t len, line **out, int *n, const char *src) {
  size_t cap = 1024, k = 0;
  line *ls = malloc(cap * sizeof *ls);
  if (!ls) return vl_error(VL_ENOMEM, "dock: out of memory reading %s", src);
  size_t i = 0;
  while (i < len) {
    size_t j = i;
    while (j < len && text[j] != '\n') j++;
    size_t e = j;
    if (e > i && text[e - 1] == '\r') e--;
    if (k == cap) {
      if (cap > (size_t)1 << 28) {
        free(ls);
        return vl_error(VL_EFORMAT, "dock: %s has too many lines", src);
      }
      cap *= 2;
      line *nl = realloc(ls, cap * sizeof *ls);
      if (!nl) {
        free(ls);
        return vl_error(VL_ENOMEM, "dock: out of memory reading %s", src);
      }
      ls = nl;
    }
    ls[k].s = text + i;
    ls[k].n = e - i;
    k++;
    i = j + 1;
  }
  *out = ls;
  *n = (int)k;
  return VL_OK;
}

static void set_source(vl_dock_mol *m, const char *name) { snprintf(m->source, sizeof m->source, "%s", name); }

/* ---- receptor ---- */

int vl_dock_parse_receptor(const char *text, size_t len, const char *name, vl_dock_mol **out) {
  *out = NULL;
  line *ls;
  int nl;
  int st = split_lines(text, len, &ls, &nl, name);
  if (st) return st;
  vl_dock_mol *m = calloc(1, sizeof *m);
  if (!m) {
    free(ls);
    return vl_error(VL_ENOMEM, "dock: out of memory reading %s", name);
  }
  set_source(m, name);
  int cap = 0;
  for (int i = 0; i < nl && st == VL_OK; i++) {
    const line *l = &ls[i];
    if (starts(l, "ENDMDL")) break; /* first model only */
    if (starts(l, "ROOT") || starts(l, "BRANCH") || starts(l, "TORSDOF")) {
      st = vl_error(VL_EFORMAT, "%s:%d: %.*s record in a receptor (expected a rigid receptor; torsion trees belong to ligands)",
                    name, i + 1, (int)(l->n > 7 ? 7 : l->n), l->s);
      break;
    }
    if (!starts(l, "ATOM  ") && !starts(l, "HETATM")) continue;
    if (m->natoms == cap) {
      cap = cap ? cap * 2 : 1024;
      vl_dock_atom *na = realloc(m->atoms, (size_t)cap * sizeof *na);
      if (!na) {
        st = vl_error(VL_ENOMEM, "dock: out of memory reading %s", name);
        break;
      }
      m->atoms = na;
    }
    vl_dock_atom *a = &m->atoms[m->natoms];
    st = parse_atom(l, name, i + 1, 0, a);
    if (st) break;
    a->order = m->natoms;
    m->natoms++;
  }
  free(ls);
  if (st == VL_OK && m->natoms == 0) st = vl_error(VL_EFORMAT, "%s: no ATOM/HETATM records (expected a receptor)", name);
  if (st == VL_OK) {
    m->nnodes = 1;
    m->nodes = malloc(sizeof *m->nodes);
    if (!m->nodes) st = vl_error(VL_ENOMEM, "dock: out of memory reading %s", name);
    else {
      m->nodes[0] = (vl_dock_node){-1, 0, m->natoms, -1, -1, 1};
      st = vl_dock_mol_perceive(m);
    }
  }
  if (st) {
    vl_dock_mol_free(m);
    return st;
  }
  *out = m;
  return VL_OK;
}

int vl_dock_read_receptor(const char *path, vl_dock_mol **out) {
  char *buf;
  size_t len;
  *out = NULL;
  int st = read_file(path, &buf, &len);
  if (st) return st;
  st = vl_dock_parse_receptor(buf, len, path, out);
  free(buf);
  return st;
}

/* ---- ligand ---- */

typedef struct tbranch {
  int parent;       /* parent branch, -1 for ROOT */
  int from, to;     /* serials on the BRANCH line */
  int from_atom;    /* temp index of the parent atom */
  int immobile;     /* temp index of atom `to`, -1 until seen */
  int first_atom;   /* temp atoms of this branch are listed through next_in */
  int last_atom;
  int nchildren;
} tbranch;

typedef struct tparse {
  vl_dock_atom *atoms;   /* temp atoms, file order */
  int *branch_of;        /* branch of each temp atom */
  int *next_in;          /* next atom of the same branch */
  int natoms, cap;
  tbranch *br;
  int nbr, brcap;
  /* output */
  vl_dock_mol *m;
  int *newidx;
  int count;
  const char *src;
} tparse;

static int essentially_empty(const tparse *p, int b) {
  for (int a = p->br[b].first_atom; a >= 0; a = p->next_in[a]) {
    if (a != p->br[b].immobile) return 0;
    for (int c = 0; c < p->nbr; c++)
      if (p->br[c].parent == b && p->br[c].from_atom == a) return 0;
  }
  return 1;
}

static void place(tparse *p, int a, int node) {
  p->newidx[a] = p->count;
  p->m->atoms[p->count] = p->atoms[a];
  p->m->atoms[p->count].node = node;
  p->count++;
}

static int emit(tparse *p, int b, int node, int depth) {
  if (depth > MAX_BRANCH_DEPTH)
    return vl_error(VL_EFORMAT, "%s: BRANCH records nested more than %d deep", p->src, MAX_BRANCH_DEPTH);
  vl_dock_mol *m = p->m;
  m->nodes[node].begin = p->count;
  for (int a = p->br[b].first_atom; a >= 0; a = p->next_in[a]) {
    if (a != p->br[b].immobile) place(p, a, node);
    for (int c = 0; c < p->nbr; c++)
      if (p->br[c].parent == b && p->br[c].from_atom == a && p->br[c].first_atom >= 0) place(p, p->br[c].immobile, node);
  }
  m->nodes[node].end = p->count;
  for (int a = p->br[b].first_atom; a >= 0; a = p->next_in[a])
    for (int c = 0; c < p->nbr; c++) {
      if (p->br[c].parent != b || p->br[c].from_atom != a || essentially_empty(p, c)) continue;
      int k = m->nnodes++;
      m->nodes[k].parent = node;
      m->nodes[k].axis_from = p->newidx[a];
      m->nodes[k].axis_to = p->newidx[p->br[c].immobile];
      int st = emit(p, c, k, depth + 1);
      if (st) return st;
      m->nodes[k].sub_end = m->nnodes;
    }
  return VL_OK;
}

static int build_ligand(tparse *p, int torsdof, int model, vl_dock_mol *m) {
  memset(m, 0, sizeof *m);
  set_source(m, p->src);
  m->is_ligand = 1;
  m->torsdof = torsdof;
  m->model = model;
  m->natoms = p->natoms;
  m->atoms = malloc((size_t)p->natoms * sizeof *m->atoms);
  m->nodes = malloc((size_t)p->nbr * sizeof *m->nodes);
  p->newidx = malloc((size_t)p->natoms * sizeof *p->newidx);
  if (!m->atoms || !m->nodes || !p->newidx) return vl_error(VL_ENOMEM, "dock: out of memory reading %s", p->src);
  p->m = m;
  p->count = 0;
  m->nnodes = 1;
  m->nodes[0] = (vl_dock_node){-1, 0, 0, -1, -1, 0};
  int st = emit(p, 0, 0, 0);
  m->nodes[0].sub_end = m->nnodes;
  free(p->newidx);
  p->newidx = NULL;
  if (st) return st;
  if (p->count != p->natoms)
    return vl_error(VL_EFORMAT, "%s: %d atoms of the torsion tree could not be placed", p->src, p->natoms - p->count);
  return vl_dock_mol_perceive(m);
}

static int add_branch(tparse *p, int parent, int from, int to, int from_atom) {
  if (p->nbr == p->brcap) {
    p->brcap = p->brcap ? p->brcap * 2 : 16;
    tbranch *nb = realloc(p->br, (size_t)p->brcap * sizeof *nb);
    if (!nb) return -1;
    p->br = nb;
  }
  p->br[p->nbr] = (tbranch){parent, from, to, from_atom, -1, -1, -1, 0};
  return p->nbr++;
}

static int add_atom(tparse *p, const vl_dock_atom *a, int b) {
  if (p->natoms == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 64;
    vl_dock_atom *na = realloc(p->atoms, (size_t)p->cap * sizeof *na);
    if (!na) return -1;
    p->atoms = na;
    int *nbo = realloc(p->branch_of, (size_t)p->cap * sizeof *nbo);
    if (!nbo) return -1;
    p->branch_of = nbo;
    int *nn = realloc(p->next_in, (size_t)p->cap * sizeof *nn);
    if (!nn) return -1;
    p->next_in = nn;
  }
  int k = p->natoms++;
  p->atoms[k] = *a;
  p->branch_of[k] = b;
  p->next_in[k] = -1;
  if (p->br[b].last_atom >= 0) p->next_in[p->br[b].last_atom] = k;
  else p->br[b].first_atom = k;
  p->br[b].last_atom = k;
  return 0;
}

static int two_ints(const line *l, size_t skip, int *a, int *b) {
  char buf[64];
  size_t n = l->n - skip < sizeof buf - 1 ? l->n - skip : sizeof buf - 1;
  memcpy(buf, l->s + skip, n);
  buf[n] = 0;
  char extra;
  return sscanf(buf, "%d %d %c", a, b, &extra) == 2 && *a >= 0 && *b >= 0;
}

/* Parse lines [lo, hi) as one ligand. */
static int parse_one(const line *ls, int lo, int hi, const char *src, int model, vl_dock_mol *out) {
  tparse p = {0};
  p.src = src;
  int st = VL_OK;
  int state = 0; /* 0 before ROOT, 1 in ROOT, 2 after ENDROOT */
  int torsdof = -1, torsdof_line = 0;
  int stack[MAX_BRANCH_DEPTH + 1], depth = 0;
  int last_line = lo;
  if (add_branch(&p, -1, -1, -1, -1) < 0) {
    st = vl_error(VL_ENOMEM, "dock: out of memory reading %s", src);
    goto done;
  }
  stack[0] = 0;
  for (int i = lo; i < hi; i++) {
    const line *l = &ls[i];
    int ln = i + 1;
    last_line = ln;
    if (starts(l, "ATOM  ") || starts(l, "HETATM")) {
      if (state == 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: atom before ROOT (expected ROOT ... ENDROOT first)", src, ln);
        goto done;
      }
      if (state == 2 && depth == 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: atom after ENDROOT outside any BRANCH", src, ln);
        goto done;
      }
      vl_dock_atom a;
      st = parse_atom(l, src, ln, 1, &a);
      if (st) goto done;
      a.order = p.natoms;
      int b = stack[depth];
      if (depth > 0 && a.serial == p.br[b].to) {
        if (p.br[b].immobile >= 0) {
          st = vl_error(VL_EFORMAT, "%s:%d: atom %d appears twice in BRANCH %d %d", src, ln, a.serial, p.br[b].from, p.br[b].to);
          goto done;
        }
        p.br[b].immobile = p.natoms;
      }
      if (add_atom(&p, &a, b)) {
        st = vl_error(VL_ENOMEM, "dock: out of memory reading %s", src);
        goto done;
      }
    } else if (starts(l, "ROOT")) {
      if (state != 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: second ROOT record", src, ln);
        goto done;
      }
      state = 1;
    } else if (starts(l, "ENDROOT")) {
      if (state != 1) {
        st = vl_error(VL_EFORMAT, "%s:%d: ENDROOT without ROOT", src, ln);
        goto done;
      }
      state = 2;
    } else if (starts(l, "BRANCH")) {
      int a, b;
      if (state != 2) {
        st = vl_error(VL_EFORMAT, "%s:%d: BRANCH %s (expected after ENDROOT)", src, ln, state == 0 ? "before ROOT" : "inside ROOT");
        goto done;
      }
      if (!two_ints(l, 6, &a, &b)) {
        st = vl_error(VL_EFORMAT, "%s:%d: BRANCH needs two atom numbers (got '%.*s')", src, ln, (int)(l->n > 40 ? 40 : l->n), l->s);
        goto done;
      }
      if (depth >= MAX_BRANCH_DEPTH) {
        st = vl_error(VL_EFORMAT, "%s:%d: BRANCH records nested more than %d deep", src, ln, MAX_BRANCH_DEPTH);
        goto done;
      }
      int cur = stack[depth], from_atom = -1;
      for (int k = p.br[cur].first_atom; k >= 0; k = p.next_in[k])
        if (p.atoms[k].serial == a) {
          from_atom = k;
          break;
        }
      if (from_atom < 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: BRANCH %d %d: no atom %d in the enclosing %s", src, ln, a, b, a, depth ? "BRANCH" : "ROOT");
        goto done;
      }
      int nb = add_branch(&p, cur, a, b, from_atom);
      if (nb < 0) {
        st = vl_error(VL_ENOMEM, "dock: out of memory reading %s", src);
        goto done;
      }
      stack[++depth] = nb;
    } else if (starts(l, "ENDBRANCH")) {
      int a, b;
      if (!two_ints(l, 9, &a, &b)) {
        st = vl_error(VL_EFORMAT, "%s:%d: ENDBRANCH needs two atom numbers", src, ln);
        goto done;
      }
      if (depth == 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: ENDBRANCH %d %d without BRANCH", src, ln, a, b);
        goto done;
      }
      tbranch *t = &p.br[stack[depth]];
      if (a != t->from || b != t->to) {
        st = vl_error(VL_EFORMAT, "%s:%d: ENDBRANCH %d %d closes BRANCH %d %d", src, ln, a, b, t->from, t->to);
        goto done;
      }
      if (t->immobile < 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: BRANCH %d %d has no atom %d", src, ln, a, b, b);
        goto done;
      }
      depth--;
    } else if (starts(l, "TORSDOF")) {
      char buf[32];
      field(l, 8, l->n, buf, sizeof buf);
      int v;
      if (!parse_int(buf, &v) || v < 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: TORSDOF '%s' is not a count", src, ln, buf);
        goto done;
      }
      if (torsdof >= 0) {
        st = vl_error(VL_EFORMAT, "%s:%d: second TORSDOF record (first on line %d)", src, ln, torsdof_line);
        goto done;
      }
      torsdof = v;
      torsdof_line = ln;
    } else if (starts(l, "MODEL") || starts(l, "ENDMDL")) {
      /* model boundaries are handled by the caller */
    } else if (!ignorable(l)) {
      char tag[8];
      size_t n = l->n < 6 ? l->n : 6;
      memcpy(tag, l->s, n);
      tag[n] = 0;
      st = vl_error(VL_EFORMAT, "%s:%d: unknown record '%s' in a ligand (expected ROOT, BRANCH, ATOM, TORSDOF ...)", src, ln, tag);
      goto done;
    }
  }
  if (depth > 0) {
    st = vl_error(VL_EFORMAT, "%s:%d: BRANCH %d %d is never closed (missing ENDBRANCH)", src, last_line, p.br[stack[depth]].from,
                  p.br[stack[depth]].to);
    goto done;
  }
  if (p.natoms == 0 || p.br[0].first_atom < 0) {
    st = vl_error(VL_EFORMAT, "%s:%d: no atoms in the ligand%s (expected ROOT, ATOM records, ENDROOT)", src, last_line,
                  state == 0 ? " and no ROOT" : "");
    goto done;
  }
  if (state == 1) {
    st = vl_error(VL_EFORMAT, "%s:%d: ROOT is never closed (missing ENDROOT)", src, last_line);
    goto done;
  }
  if (torsdof < 0) {
    st = vl_error(VL_EFORMAT, "%s:%d: missing TORSDOF record", src, last_line);
    goto done;
  }
  st = build_ligand(&p, torsdof, model, out);
done:
  free(p.atoms);
  free(p.branch_of);
  free(p.next_in);
  free(p.br);
  free(p.newidx);
  return st;
}

int vl_dock_parse_ligands(const char *text, size_t len, const char *name, vl_dock_mol **out, int *n) {
  *out = NULL;
  *n = 0;
  line *ls;
  int nl;
  int st = split_lines(text, len, &ls, &nl, name);
  if (st) return st;
  int nmodels = 0;
  for (int i = 0; i < nl; i++)
    if (starts(&ls[i], "MODEL")) nmodels++;
  int cap = nmodels ? nmodels : 1;
  vl_dock_mol *mols = calloc((size_t)cap, sizeof *mols);
  if (!mols) {
    free(ls);
    return vl_error(VL_ENOMEM, "dock: out of memory reading %s", name);
  }
  int count = 0;
  if (nmodels == 0) {
    st = parse_one(ls, 0, nl, name, 0, &mols[0]);
    if (st == VL_OK) count = 1;
  } else {
    int i = 0;
    while (i < nl && st == VL_OK) {
      if (!starts(&ls[i], "MODEL")) {
        const line *l = &ls[i];
        if (!ignorable(l)) {
          st = vl_error(VL_EFORMAT, "%s:%d: record outside MODEL ... ENDMDL in a multi-model file", name, i + 1);
          break;
        }
        i++;
        continue;
      }
      char buf[32];
      field(&ls[i], 6, ls[i].n, buf, sizeof buf);
      int num = count + 1;
      if (buf[0] && !parse_int(buf, &num)) num = count + 1;
      int j = i + 1;
      while (j < nl && !starts(&ls[j], "ENDMDL") && !starts(&ls[j], "MODEL")) j++;
      if (j == nl || starts(&ls[j], "MODEL")) {
        st = vl_error(VL_EFORMAT, "%s:%d: MODEL %d has no ENDMDL", name, i + 1, num);
        break;
      }
      st = parse_one(ls, i + 1, j, name, num, &mols[count]);
      if (st) {
        vl_dock_mol_clear(&mols[count]);
        break;
      }
      count++;
      i = j + 1;
    }
  }
  free(ls);
  if (st) {
    if (nmodels == 0) vl_dock_mol_clear(&mols[0]);
    vl_dock_mols_free(mols, count);
    return st;
  }
  *out = mols;
  *n = count;
  return VL_OK;
}

int vl_dock_read_ligands(const char *path, vl_dock_mol **out, int *n) {
  char *buf;
  size_t len;
  *out = NULL;
  *n = 0;
  int st = read_file(path, &buf, &len);
  if (st) return st;
  st = vl_dock_parse_ligands(buf, len, path, out, n);
  free(buf);
  return st;
}
