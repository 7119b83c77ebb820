/*
** autograd.c — reverse-mode automatic differentiation (prefix vl_ag_,
** public entry points vl_backward, vl_set_requires_grad, ...).
**
** Ops record one node per output (see autograd.h). The graph is a DAG
** of nodes; a node holds its inputs' nodes and leaves, never its output,
** and saves detached aliases, so there are no reference cycles and
** dropping the last tensor of a graph frees the whole graph.
**
** vl_backward walks the graph once to count each node's consumers, then
** runs nodes in dependency order (a node runs when every consumer has
** passed its gradient down), accumulating into leaves' grad.
*/
#include <stdlib.h>

#include "autograd.h"
#include "vl_internal.h"

static _Thread_local bool grad_disabled; /* recording is on unless set */

void vl_set_grad_enabled(bool on) { grad_disabled = !on; }
bool vl_is_grad_enabled(void) { return !grad_disabled; }

bool vl_ag_pause(void) {
  bool was = !grad_disabled;
  grad_disabled = true;
  return was;
}

/* ------------------------------------------------------------------ */
/* Per-tensor state                                                     */
/* ------------------------------------------------------------------ */

static struct vl_grad_meta *meta_of(vl_tensor *t) {
  if (t->grad_meta == NULL) {
    t->grad_meta = calloc(1, sizeof *t->grad_meta);
    if (t->grad_meta == NULL) vl_error(VL_ENOMEM, "out of memory: autograd state");
  }
  return t->grad_meta;
}

void vl_grad_meta_free(struct vl_grad_meta *meta) {
  if (meta == NULL) return;
  vl_tensor_release(meta->grad);
  vl_ag_node_release(meta->grad_fn);
  free(meta);
}

bool vl_requires_grad(const vl_tensor *t) { return t->grad_meta && t->grad_meta->requires_grad; }

bool vl_is_leaf(const vl_tensor *t) { return t->grad_meta == NULL || t->grad_meta->grad_fn == NULL; }

const char *vl_grad_fn_name(const vl_tensor *t) {
  return t->grad_meta && t->grad_meta->grad_fn ? t->grad_meta->grad_fn->name : NULL;
}

int vl_set_requires_grad(vl_tensor *t, bool on) {
  if (!vl_is_leaf(t)) {
    if (on) return VL_OK; /* already part of a graph */
    return vl_error(VL_ESTATE, "requires_grad: %s's output is not a leaf; use detach() to take it out of the graph",
                    vl_grad_fn_name(t));
  }
  if (on && !vl_dtype_is_float(t->dtype))
    return vl_error(VL_EDTYPE, "requires_grad: only floating-point tensors can require gradients, got %s",
                    vl_dtype_name(t->dtype));
  if (!on && t->grad_meta == NULL) return VL_OK;
  struct vl_grad_meta *m = meta_of(t);
  if (m == NULL) return VL_ENOMEM;
  m->requires_grad = on;
  return VL_OK;
}

vl_tensor *vl_get_grad(const vl_tensor *t) {
  if (t->grad_meta == NULL || t->grad_meta->grad == NULL) return NULL;
  vl_tensor_retain(t->grad_meta->grad);
  return t->grad_meta->grad;
}

int vl_set_grad(vl_tensor *t, const vl_tensor *g) {
  if (g && !vl_same_shape(t, g)) {
    char a[VL_SHAPE_STR], b[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "grad: gradient of shape %s does not match the tensor's shape %s",
                    vl_shape_str(g->ndim, g->shape, a), vl_shape_str(t->ndim, t->shape, b));
  }
  if (g == NULL && t->grad_meta == NULL) return VL_OK;
  struct vl_grad_meta *m = meta_of(t);
  if (m == NULL) return VL_ENOMEM;
  vl_tensor *old = m->grad;
  m->grad = NULL;
  if (g) {
    vl_tensor *c = vl_detach(g);
    if (c == NULL) {
      m->grad = old;
      return vl_last_status();
    }
    m->grad = c;
  }
  vl_tensor_release(old);
  return VL_OK;
}

vl_tensor *vl_detach(const vl_tensor *t) {
  return vl_tensor_new_view(t->storage, t->offset, t->ndim, t->shape, t->stride, t->dtype);
}

void vl_bump_version(vl_tensor *t) { __atomic_add_fetch(&t->storage->version, 1, __ATOMIC_RELAXED); }

int vl_ag_check_inplace(const char *op, const vl_tensor *t) {
  if (!grad_disabled && vl_requires_grad(t))
    return vl_error(VL_ESTATE,
                    "%s: in-place operation on a tensor that requires grad (%s); run it inside vl.no_grad or on a "
                    "detached tensor",
                    op, vl_is_leaf(t) ? "a leaf" : vl_grad_fn_name(t));
  return VL_OK;
}

/* ------------------------------------------------------------------ */
/* Nodes                                                                */
/* ------------------------------------------------------------------ */

bool vl_ag_needed(int n, const vl_tensor *const *inputs) {
  if (grad_disabled) return false;
  for (int i = 0; i < n; i++)
    if (inputs[i] && vl_requires_grad(inputs[i])) return true;
  return false;
}

vl_node *vl_ag_node(const char *name, vl_backward_fn fn, int n, const vl_tensor *const *inputs) {
  vl_node *node = calloc(1, sizeof *node);
  if (node == NULL) return vl_error(VL_ENOMEM, "out of memory: autograd node"), NULL;
  node->refcount = 1;
  node->name = name;
  node->backward = fn;
  node->ninputs = n;
  node->next = calloc((size_t)n + 1, sizeof *node->next);
  node->leaf = calloc((size_t)n + 1, sizeof *node->leaf);
  node->needs = calloc((size_t)n + 1, sizeof *node->needs);
  node->in_ndim = calloc((size_t)n + 1, sizeof *node->in_ndim);
  node->in_shape = calloc((size_t)n + 1, sizeof *node->in_shape);
  node->in_dtype = calloc((size_t)n + 1, sizeof *node->in_dtype);
  if (!node->next || !node->leaf || !node->needs || !node->in_ndim || !node->in_shape || !node->in_dtype) {
    vl_ag_node_release(node);
    return vl_error(VL_ENOMEM, "out of memory: autograd node"), NULL;
  }
  for (int i = 0; i < n; i++) {
    const vl_tensor *t = inputs[i];
    if (t == NULL) continue;
    node->in_ndim[i] = t->ndim;
    memcpy(node->in_shape[i], t->shape, sizeof node->in_shape[i]);
    node->in_dtype[i] = t->dtype;
    if (!vl_requires_grad(t)) continue;
    node->needs[i] = true;
    if (t->grad_meta->grad_fn) {
      node->next[i] = t->grad_meta->grad_fn;
      __atomic_add_fetch(&node->next[i]->refcount, 1, __ATOMIC_RELAXED);
    } else {
      node->leaf[i] = (vl_tensor *)t;
      vl_tensor_retain(node->leaf[i]);
    }
  }
  return node;
}

int vl_ag_save(vl_node *n, const vl_tensor *t) {
  if (n->nsaved == VL_NODE_MAX_ARGS) {
    vl_error(VL_ESTATE, "%s: more than %d tensors saved for backward", n->name, VL_NODE_MAX_ARGS);
    return -1;
  }
  vl_tensor *d = vl_detach(t);
  if (d == NULL) return -1;
  n->saved_version[n->nsaved] = t->storage->version;
  n->saved[n->nsaved] = d;
  return n->nsaved++;
}

int vl_ag_attach(vl_tensor *out, vl_node *n) {
  struct vl_grad_meta *m = meta_of(out);
  if (m == NULL) return VL_ENOMEM;
  vl_ag_node_release(m->grad_fn);
  m->grad_fn = n;
  m->requires_grad = true;
  return VL_OK;
}

static void node_free_saved(vl_node *n) {
  for (int i = 0; i < n->nsaved; i++) {
    vl_tensor_release(n->saved[i]);
    n->saved[i] = NULL;
  }
  if (n->free_extra && n->extra) n->free_extra(n->extra);
  n->extra = NULL;
  n->freed = true;
}

/* Releasing a node may release a long chain (an RNN unrolled 10k steps):
   done with an explicit stack, never by recursion. */
void vl_ag_node_release(vl_node *n) {
  vl_node **stack = NULL;
  size_t top = 0, cap = 0;
  while (n || top) {
    if (n == NULL) n = stack[--top];
    if (__atomic_sub_fetch(&n->refcount, 1, __ATOMIC_ACQ_REL) != 0) {
      n = NULL;
      continue;
    }
    node_free_saved(n);
    vl_tensor_release(n->grad_acc);
    for (int i = 0; i < n->ninputs; i++) {
      if (n->leaf) vl_tensor_release(n->leaf[i]);
      if (n->next && n->next[i]) {
        if (top == cap) {
          size_t nc = cap ? cap * 2 : 16;
          vl_node **s = realloc(stack, nc * sizeof *s);
          if (s == NULL) continue; /* cannot happen in practice; leaks that branch */
          stack = s;
          cap = nc;
        }
        stack[top++] = n->next[i];
      }
    }
    free(n->next);
    free(n->leaf);
    free(n->needs);
    free(n->in_ndim);
    free(n->in_shape);
    free(n->in_dtype);
    free(n);
    n = NULL;
  }
  free(stack);
}

/* ------------------------------------------------------------------ */
/* Gradient helpers for backward functions                              */
/* ------------------------------------------------------------------ */

vl_tensor *vl_sum_to_shape(const vl_tensor *g, int ndim, const int64_t *shape) {
  int dims[VL_MAX_DIMS], nd = 0;
  int lead = g->ndim - ndim;
  if (lead < 0) {
    char a[VL_SHAPE_STR], b[VL_SHAPE_STR];
    return vl_error(VL_ESHAPE, "backward: gradient of shape %s cannot be reduced to %s",
                    vl_shape_str(g->ndim, g->shape, a), vl_shape_str(ndim, shape, b)),
           NULL;
  }
  for (int d = 0; d < g->ndim; d++)
    if (d < lead || (shape[d - lead] == 1 && g->shape[d] != 1)) dims[nd++] = d;
  if (nd == 0 && lead == 0) {
    vl_tensor_retain((vl_tensor *)g);
    return (vl_tensor *)g;
  }
  vl_tensor *s = vl_reduce(VL_SUM, g, nd, dims, true);
  if (s == NULL) return NULL;
  vl_tensor *r = vl_reshape(s, ndim, shape);
  vl_tensor_release(s);
  return r;
}

vl_tensor *vl_ag_reduce_to(const vl_node *n, int i, vl_tensor *g) {
  if (g == NULL) return NULL;
  vl_tensor *r = vl_sum_to_shape(g, n->in_ndim[i], n->in_shape[i]);
  vl_tensor_release(g);
  if (r && r->dtype != n->in_dtype[i]) {
    vl_tensor *c = vl_to_dtype(r, n->in_dtype[i]);
    vl_tensor_release(r);
    r = c;
  }
  return r;
}

/* ------------------------------------------------------------------ */
/* The engine                                                           */
/* ------------------------------------------------------------------ */

typedef struct node_list {
  vl_node **items;
  size_t count, cap;
} node_list;

static int list_push(node_list *l, vl_node *n) {
  if (l->count == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 64;
    vl_node **p = realloc(l->items, nc * sizeof *p);
    if (p == NULL) return vl_error(VL_ENOMEM, "out of memory: backward");
    l->items = p;
    l->cap = nc;
  }
  l->items[l->count++] = n;
  return VL_OK;
}

/* Add g into *acc (taking g over); the first gradient is kept as is. */
static int accumulate(vl_tensor **acc, vl_tensor *g) {
  if (*acc == NULL) {
    *acc = g;
    return VL_OK;
  }
  vl_tensor *s = vl_binary(VL_ADD, *acc, g);
  vl_tensor_release(g);
  if (s == NULL) return vl_last_status();
  vl_tensor_release(*acc);
  *acc = s;
  return VL_OK;
}

static int accumulate_leaf(vl_tensor *leaf, vl_tensor *g) {
  struct vl_grad_meta *m = meta_of(leaf);
  if (m == NULL) {
    vl_tensor_release(g);
    return VL_ENOMEM;
  }
  /* the leaf's grad must not alias a gradient that flows elsewhere */
  if (m->grad == NULL) {
    vl_tensor *c = vl_is_contiguous(g) && g->storage->refcount == 1 ? (vl_tensor_retain(g), g) : vl_clone(g);
    vl_tensor_release(g);
    if (c == NULL) return vl_last_status();
    m->grad = c;
    return VL_OK;
  }
  return accumulate(&m->grad, g);
}

/* Count, for every node reachable from root, how many edges lead into
   it; the order of discovery is kept to reset state afterwards. */
static int discover(vl_node *root, node_list *all) {
  node_list stack = {0};
  int rc = list_push(&stack, root);
  root->pending = 0;
  if (rc == VL_OK) rc = list_push(all, root);
  while (rc == VL_OK && stack.count) {
    vl_node *n = stack.items[--stack.count];
    for (int i = 0; i < n->ninputs && rc == VL_OK; i++) {
      vl_node *c = n->next[i];
      if (c == NULL) continue;
      if (c->pending++ == 0) {
        rc = list_push(&stack, c);
        if (rc == VL_OK) rc = list_push(all, c);
      }
    }
  }
  free(stack.items);
  return rc;
}

static int check_saved(const vl_node *n) {
  if (n->freed)
    return vl_error(VL_ESTATE,
                    "backward: trying to go through %s's part of the graph a second time, but its saved tensors "
                    "were freed after the first backward (pass {retain_graph = true} to the first)",
                    n->name);
  for (int i = 0; i < n->nsaved; i++)
    if (n->saved[i] && n->saved[i]->storage->version != n->saved_version[i])
      return vl_error(VL_ESTATE,
                      "backward: a tensor saved by %s was modified by an in-place operation after it was saved",
                      n->name);
  return VL_OK;
}

static int run_node(vl_node *n, bool retain_graph, node_list *ready) {
  int rc = check_saved(n);
  vl_tensor *g = n->grad_acc;
  n->grad_acc = NULL;
  vl_tensor *gi[VL_NODE_MAX_ARGS * 8];
  vl_tensor **grads = n->ninputs <= (int)(sizeof gi / sizeof gi[0]) ? gi : calloc((size_t)n->ninputs, sizeof *grads);
  if (grads == NULL) rc = vl_error(VL_ENOMEM, "out of memory: backward");
  for (int i = 0; i < n->ninputs && grads; i++) grads[i] = NULL;
  if (rc == VL_OK) {
    vl_clear_error();
    rc = n->backward(n, g, grads);
    for (int i = 0; i < n->ninputs && rc == VL_OK; i++)
      if (n->needs[i] && grads[i] == NULL)
        rc = vl_last_status() != VL_OK ? vl_last_status()
                                        : vl_error(VL_ESTATE, "%s: backward gave no gradient", n->name);
  }
  for (int i = 0; i < n->ninputs && grads; i++) {
    vl_tensor *gr = grads[i];
    if (gr == NULL) continue;
    if (rc != VL_OK || !n->needs[i]) {
      vl_tensor_release(gr);
    } else if (n->next[i]) {
      rc = accumulate(&n->next[i]->grad_acc, gr);
    } else {
      rc = accumulate_leaf(n->leaf[i], gr);
    }
  }
  for (int i = 0; i < n->ninputs; i++) {
    vl_node *c = n->next[i];
    if (c && --c->pending == 0 && rc == VL_OK) rc = list_push(ready, c);
  }
  if (grads != gi) free(grads);
  vl_tensor_release(g);
  if (!retain_graph) node_free_saved(n);
  return rc;
}

int vl_backward(vl_tensor *t, const vl_tensor *grad, bool retain_graph) {
  if (!vl_requires_grad(t))
    return vl_error(VL_ESTATE, "backward: the tensor does not require grad and has no grad_fn (call "
                               "x:requires_grad(true) on the inputs before computing it)");
  vl_tensor *g;
  if (grad == NULL) {
    if (vl_numel(t) != 1) {
      char s[VL_SHAPE_STR];
      return vl_error(VL_EARG, "backward: a gradient is needed for a non-scalar output of shape %s (pass one of the same shape)",
                      vl_shape_str(t->ndim, t->shape, s));
    }
    g = vl_ones(t->ndim, t->shape, t->dtype);
  } else {
    if (!vl_same_shape(grad, t)) {
      char a[VL_SHAPE_STR], b[VL_SHAPE_STR];
      return vl_error(VL_ESHAPE, "backward: gradient of shape %s does not match the output's shape %s",
                      vl_shape_str(grad->ndim, grad->shape, a), vl_shape_str(t->ndim, t->shape, b));
    }
    g = vl_to_dtype(grad, t->dtype);
  }
  if (g == NULL) return vl_last_status();
  if (vl_is_leaf(t)) return accumulate_leaf(t, g);

  bool was_disabled = grad_disabled;
  grad_disabled = true; /* backward functions record nothing */
  vl_node *root = t->grad_meta->grad_fn;
  __atomic_add_fetch(&root->refcount, 1, __ATOMIC_RELAXED); /* t may be freed by a hook */
  node_list all = {0}, ready = {0};
  int rc = discover(root, &all);
  if (rc == VL_OK) {
    root->grad_acc = g;
    g = NULL;
    rc = list_push(&ready, root);
  }
  while (rc == VL_OK && ready.count) rc = run_node(ready.items[--ready.count], retain_graph, &ready);
  /* leave every node ready for the next pass, even after an error */
  for (size_t i = 0; i < all.count; i++) {
    all.items[i]->pending = 0;
    vl_tensor_release(all.items[i]->grad_acc);
    all.items[i]->grad_acc = NULL;
  }
  vl_tensor_release(g);
  free(all.items);
  free(ready.items);
  vl_ag_node_release(root);
  grad_disabled = was_disabled;
  return rc;
}
