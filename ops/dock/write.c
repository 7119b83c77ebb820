/*
** write.c — PDBQT poses (Vina's output layout) and SDF records, written
** atomically: a temporary file in the target's directory, fsync, rename.
**
** PDBQT: one MODEL per pose with "REMARK VINA RESULT:" (affinity, rmsd_lb,
** rmsd_ub as Vina 1.2.3 prints them, %9.3f), then ROOT, the root's atoms,
** ENDROOT, nested BRANCH a b ... ENDBRANCH a b, TORSDOF; atoms of each
** rigid body in their original file order, serials renumbered from 1, a
** rigid bodies in the order of their first atom in the original file
** (so a PDBQT read and written again keeps its layout and Vina order).
** SDF: V2000 (at most 999 atoms and bonds), M  CHG for formal charges,
** the molecule's properties then each pose's, "$$$$" after each record.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../vl.h"
#include "io.h"

typedef struct sbuf {
  char *s;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int need = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (need < 0) {
    b->oom = 1;
    return;
  }
  if (b->n + (size_t)need + 1 > b->cap) {
    size_t nc = (b->n + (size_t)need + 1) * 2;
    char *ns = realloc(b->s, nc);
    if (!ns) {
      b->oom = 1;
      return;
    }
    b->s = ns;
    b->cap = nc;
  }
  va_start(ap, fmt);
  vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
  va_end(ap);
  b->n += (size_t)need;
}

/* ops/io.c's atomic write (temp file, fsync, rename, the mode a plain
   create would give). */
int vl_dock_write_atomic(const char *path, const char *text, size_t len) {
  return vl_write_file_atomic(path, text, len);
}

/* ---- PDBQT ---- */

static void pdbqt_atom(sbuf *b, const vl_dock_atom *a, int serial, const double *x) {
  char nm[8];
  if (strlen(a->name) < 4 && a->name[0] && !(a->name[1] && a->name[1] >= 'a' && a->name[1] <= 'z'))
    snprintf(nm, sizeof nm, " %-3.3s", a->name);
  else snprintf(nm, sizeof nm, "%-4.4s", a->name[0] ? a->name : "X");
  const char *t = a->ad < VL_DOCK_AD_COUNT ? vl_dock_ad_name(a->ad) : a->type;
  sb_printf(b, "%s%5d %-4.4s %-3.3s %c%4d    %8.3f%8.3f%8.3f  0.00  0.00    %+6.3f %-2s\n",
            a->hetatm ? "HETATM" : "ATOM  ", serial % 100000, nm, a->resname[0] ? a->resname : "UNL",
            a->chain ? a->chain : ' ', a->resnum % 10000, x[0], x[1], x[2], a->charge, t);
}

typedef struct tw {
  const vl_dock_mol *m;
  int *grp;     /* output group (node) of each atom */
  int *byorder; /* atoms sorted by file order */
  int *serial;
  int next;
  int *first;   /* per node: the smallest file order of its atoms */
} tw;

/* children of node k in the order their first atom appears in the file */
static int children(const tw *w, int k, int *out) {
  int nc = 0;
  for (int c = k + 1; c < w->m->nnodes; c++)
    if (w->m->nodes[c].parent == k) out[nc++] = c;
  for (int i = 1; i < nc; i++)
    for (int j = i; j > 0 && w->first[out[j - 1]] > w->first[out[j]]; j--) {
      int t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return nc;
}

static void number(tw *w, int k) {
  for (int e = 0; e < w->m->natoms; e++) {
    int i = w->byorder[e];
    if (w->grp[i] == k) w->serial[i] = ++w->next;
  }
  int buf[64], *kids = w->m->nnodes <= 64 ? buf : malloc((size_t)w->m->nnodes * sizeof *kids);
  if (!kids) return;
  int nc = children(w, k, kids);
  for (int c = 0; c < nc; c++) number(w, kids[c]);
  if (kids != buf) free(kids);
}

static void emit(tw *w, sbuf *b, int k, const double *xyz) {
  const vl_dock_mol *m = w->m;
  if (k == 0) sb_printf(b, "ROOT\n");
  else sb_printf(b, "BRANCH %3d %3d\n", w->serial[m->nodes[k].axis_from], w->serial[m->nodes[k].axis_to]);
  for (int e = 0; e < m->natoms; e++) {
    int i = w->byorder[e];
    if (w->grp[i] == k) pdbqt_atom(b, &m->atoms[i], w->serial[i], xyz + 3 * i);
  }
  if (k == 0) sb_printf(b, "ENDROOT\n");
  int buf[64], *kids = m->nnodes <= 64 ? buf : malloc((size_t)m->nnodes * sizeof *kids);
  if (!kids) {
    b->oom = 1;
    return;
  }
  int nc = children(w, k, kids);
  for (int c = 0; c < nc; c++) emit(w, b, kids[c], xyz);
  if (kids != buf) free(kids);
  if (k > 0) sb_printf(b, "ENDBRANCH %3d %3d\n", w->serial[m->nodes[k].axis_from], w->serial[m->nodes[k].axis_to]);
}

int vl_dock_pdbqt_text(const vl_dock_mol *lig, int nposes, const double *xyz, const double *scores, char **text,
                       size_t *len) {
  *text = NULL;
  *len = 0;
  if (!lig || lig->natoms <= 0) return vl_error(VL_EARG, "write_pdbqt: the molecule has no atoms");
  if (nposes < 1) return vl_error(VL_EARG, "write_pdbqt: %d poses (expected at least 1)", nposes);
  if (!xyz && nposes != 1) return vl_error(VL_EARG, "write_pdbqt: %d poses but no coordinates", nposes);
  int n = lig->natoms;
  int nn0 = lig->nnodes > 0 ? lig->nnodes : 1;
  tw w = {lig, malloc((size_t)n * sizeof(int)), malloc((size_t)n * sizeof(int)), calloc((size_t)n, sizeof(int)), 0,
          malloc((size_t)nn0 * sizeof(int))};
  double *own = xyz ? NULL : malloc((size_t)n * 3 * sizeof *own);
  if (!w.grp || !w.byorder || !w.serial || !w.first || (!xyz && !own)) {
    free(w.first);
    free(w.grp);
    free(w.byorder);
    free(w.serial);
    free(own);
    return vl_error(VL_ENOMEM, "write_pdbqt: out of memory");
  }
  if (own)
    for (int i = 0; i < n; i++) memcpy(own + 3 * i, lig->atoms[i].xyz, sizeof lig->atoms[i].xyz);
  int nn = lig->nnodes > 0 ? lig->nnodes : 1;
  for (int i = 0; i < n; i++) {
    w.grp[i] = lig->nnodes > 0 ? lig->atoms[i].node : 0;
    if (w.grp[i] < 0 || w.grp[i] >= nn) w.grp[i] = 0;
    w.byorder[i] = i;
  }
  for (int k = 1; k < lig->nnodes; k++) w.grp[lig->nodes[k].axis_to] = k;
  for (int k = 0; k < nn; k++) w.first[k] = 1 << 30;
  for (int i = 0; i < n; i++)
    if (lig->atoms[i].order < w.first[w.grp[i]]) w.first[w.grp[i]] = lig->atoms[i].order;
  for (int i = 1; i < n; i++) { /* by file order (insertion sort: ligands are small) */
    int v = w.byorder[i], j = i;
    while (j > 0 && lig->atoms[w.byorder[j - 1]].order > lig->atoms[v].order) {
      w.byorder[j] = w.byorder[j - 1];
      j--;
    }
    w.byorder[j] = v;
  }
  number(&w, 0);
  sbuf b = {0};
  for (int p = 0; p < nposes; p++) {
    const double *x = xyz ? xyz + (size_t)p * n * 3 : own;
    if (nposes > 1 || scores) sb_printf(&b, "MODEL %d\n", p + 1);
    if (scores)
      sb_printf(&b, "REMARK VINA RESULT: %9.3f  %9.3f  %9.3f\n", scores[3 * p], scores[3 * p + 1], scores[3 * p + 2]);
    sb_printf(&b, "REMARK  Name = %.70s\n", lig->source);
    if (lig->is_ligand || lig->nnodes > 1) {
      emit(&w, &b, 0, x);
      sb_printf(&b, "TORSDOF %d\n", lig->torsdof);
    } else
      for (int e = 0; e < n; e++) pdbqt_atom(&b, &lig->atoms[w.byorder[e]], w.serial[w.byorder[e]], x + 3 * w.byorder[e]);
    if (nposes > 1 || scores) sb_printf(&b, "ENDMDL\n");
  }
  free(w.grp);
  free(w.byorder);
  free(w.serial);
  free(w.first);
  free(own);
  if (b.oom) {
    free(b.s);
    return vl_error(VL_ENOMEM, "write_pdbqt: out of memory");
  }
  *text = b.s;
  *len = b.n;
  return VL_OK;
}

int vl_dock_write_pdbqt(const char *path, const vl_dock_mol *lig, int nposes, const double *xyz,
                        const double *scores) {
  char *t;
  size_t l;
  int st = vl_dock_pdbqt_text(lig, nposes, xyz, scores, &t, &l);
  if (st) return st;
  st = vl_dock_write_atomic(path, t, l);
  free(t);
  return st;
}

/* ---- SDF ---- */

int vl_sdf_text(const vl_chem *m, int nposes, const double *xyz, int nprops, const char *const *names,
                const char *const *values, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  if (!m || m->natoms <= 0) return vl_error(VL_EARG, "write_sdf: the molecule has no atoms");
  if (m->natoms > 999 || m->nbonds > 999)
    return vl_error(VL_EARG, "write_sdf: %d atoms and %d bonds (V2000 holds at most 999 of each)", m->natoms, m->nbonds);
  if (nposes < 1) return vl_error(VL_EARG, "write_sdf: %d poses (expected at least 1)", nposes);
  if (!xyz && nposes != 1) return vl_error(VL_EARG, "write_sdf: %d poses but no coordinates", nposes);
  sbuf b = {0};
  for (int p = 0; p < nposes; p++) {
    sb_printf(&b, "%.80s\n  vlua          3D\n\n", m->title);
    sb_printf(&b, "%3d%3d  0  0  0  0  0  0  0  0999 V2000\n", m->natoms, m->nbonds);
    int ncharged = 0;
    for (int i = 0; i < m->natoms; i++) {
      const vl_chem_atom *a = &m->atoms[i];
      const double *x = xyz ? xyz + ((size_t)p * m->natoms + i) * 3 : a->xyz;
      int code = a->charge >= -3 && a->charge <= 3 && a->charge ? 4 - a->charge : 0;
      if (a->charge) ncharged++;
      sb_printf(&b, "%10.4f%10.4f%10.4f %-3s 0%3d  0  0  0  0  0  0  0  0  0  0\n", x[0], x[1], x[2],
                vl_chem_element_symbol(a->z), code);
    }
    for (int k = 0; k < m->nbonds; k++)
      sb_printf(&b, "%3d%3d%3d  0\n", m->bonds[k].a + 1, m->bonds[k].b + 1, m->bonds[k].order);
    for (int i = 0, done = 0; done < ncharged;) {
      int cnt = ncharged - done < 8 ? ncharged - done : 8;
      sb_printf(&b, "M  CHG%3d", cnt);
      for (int k = 0; k < cnt; i++) {
        if (!m->atoms[i].charge) continue;
        sb_printf(&b, " %3d %3d", i + 1, m->atoms[i].charge);
        k++;
      }
      sb_printf(&b, "\n");
      done += cnt;
    }
    sb_printf(&b, "M  END\n");
    for (int k = 0; k < m->nprops; k++) {
      int over = 0;
      for (int j = 0; j < nprops && names; j++)
        if (strcmp(names[p * nprops + j], m->props[k].name) == 0) over = 1;
      if (!over) sb_printf(&b, ">  <%s>\n%s\n\n", m->props[k].name, m->props[k].value);
    }
    for (int j = 0; j < nprops && names && values; j++)
      sb_printf(&b, ">  <%s>\n%s\n\n", names[p * nprops + j], values[p * nprops + j]);
    sb_printf(&b, "$$$$\n");
  }
  if (b.oom) {
    free(b.s);
    return vl_error(VL_ENOMEM, "write_sdf: out of memory");
  }
  *text = b.s;
  *len = b.n;
  return VL_OK;
}

int vl_sdf_write(const char *path, const vl_chem *m, int nposes, const double *xyz, int nprops,
                 const char *const *names, const char *const *values) {
  char *t;
  size_t l;
  int st = vl_sdf_text(m, nposes, xyz, nprops, names, values, &t, &l);
  if (st) return st;
  st = vl_dock_write_atomic(path, t, l);
  free(t);
  return st;
}
