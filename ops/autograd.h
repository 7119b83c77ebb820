/*
** autograd.h — what an op needs to take part in reverse-mode autograd
** (ops/autograd.c). Internal to ops/; not installed.
**
** An op that may be differentiated ends like this:
**
**   if (vl_ag_needed(2, (const vl_tensor *[]){a, b})) {
**     vl_node *n = vl_ag_node("mul", mul_backward, 2, (const vl_tensor *[]){a, b});
**     if (n == NULL || vl_ag_save(n, a) < 0 || vl_ag_save(n, b) < 0 || vl_ag_attach(out, n)) {
**       vl_ag_node_release(n);    // NULL-safe
**       vl_tensor_release(out);
**       return NULL;
**     }
**   }
**
** and its backward, next to its forward, turns the gradient of the output
** into gradients of the inputs:
**
**   static int mul_backward(vl_node *n, const vl_tensor *g, vl_tensor **gi) {
**     if (n->needs[0]) gi[0] = vl_ag_reduce_to(n, 0, vl_binary(VL_MUL, g, n->saved[1]));
**     ...
**     return VL_OK;  // or an error status; a NULL gi[i] where needed is an error
**   }
**
** Backward functions run with gradient recording off. Every gradient they
** return must have the shape and dtype of its input (vl_ag_reduce_to sums
** broadcast dims away and converts the dtype).
*/
#ifndef VL_AUTOGRAD_H
#define VL_AUTOGRAD_H

#include "vl.h"

typedef struct vl_node vl_node;
typedef int (*vl_backward_fn)(vl_node *n, const vl_tensor *grad_out, vl_tensor **grad_in);

/* The most saved tensors and inputs a node takes (cat of many tensors
   takes many inputs; they are allocated to size). */
#define VL_NODE_MAX_ARGS 8

struct vl_node {
  long refcount;
  const char *name;          /* the op, for messages and grad_fn names */
  vl_backward_fn backward;
  int ninputs;
  struct vl_node **next;     /* per input: its grad_fn (retained) or NULL */
  vl_tensor **leaf;          /* per input: the leaf to accumulate into (retained) or NULL */
  bool *needs;               /* per input: does it need a gradient */
  int *in_ndim;              /* per input: shape and dtype, for reduce_to */
  int64_t (*in_shape)[VL_MAX_DIMS];
  vl_dtype *in_dtype;
  int nsaved;
  vl_tensor *saved[VL_NODE_MAX_ARGS];          /* detached aliases (no graph) */
  long saved_version[VL_NODE_MAX_ARGS];        /* storage versions when saved */
  double arg[VL_NODE_MAX_ARGS];                /* op parameters */
  int64_t iarg[VL_NODE_MAX_ARGS];
  void *extra;                                 /* op-owned data, freed by free_extra */
  void (*free_extra)(void *extra);
  bool freed;                /* saved tensors dropped after a backward */
  /* engine bookkeeping during one backward pass */
  int pending;
  vl_tensor *grad_acc;
};

/* Per-tensor autograd state. */
struct vl_grad_meta {
  bool requires_grad;
  vl_tensor *grad;           /* accumulated gradient (leaves, or retained) */
  vl_node *grad_fn;          /* NULL for leaves */
};

/* Turn recording off (for a forward body whose internal copies and views
   must not record); returns the previous state for vl_set_grad_enabled. */
bool vl_ag_pause(void);

/* True when recording is on and some input requires grad. */
bool vl_ag_needed(int n, const vl_tensor *const *inputs);
/* A node for an op over n inputs; edges and shapes are taken from them. */
vl_node *vl_ag_node(const char *name, vl_backward_fn fn, int n, const vl_tensor *const *inputs);
/* Save a tensor for backward (a detached alias); returns its slot or -1. */
int vl_ag_save(vl_node *n, const vl_tensor *t);
/* Make `out` the node's output: requires grad, not a leaf. Takes over the
   caller's reference to n on success. */
int vl_ag_attach(vl_tensor *out, vl_node *n);
void vl_ag_node_release(vl_node *n);

/* Gradient `g` (taken over) summed down to input i's shape and converted
   to its dtype; NULL (error set) on failure or when g is NULL. */
vl_tensor *vl_ag_reduce_to(const vl_node *n, int i, vl_tensor *g);
/* Sum g (not taken over) down to a shape it was broadcast from. */
vl_tensor *vl_sum_to_shape(const vl_tensor *g, int ndim, const int64_t *shape);

/* Mark an in-place write to t's storage: backward refuses tensors that
   changed after being saved. */
void vl_bump_version(vl_tensor *t);
/* In-place ops call this first: writing into a tensor that takes part in
   a graph (requires grad while recording) is refused. */
int vl_ag_check_inplace(const char *op, const vl_tensor *t);

/* tensor.c calls this when a tensor with autograd state is freed. */
void vl_grad_meta_free(struct vl_grad_meta *meta);

#endif /* VL_AUTOGRAD_H */
