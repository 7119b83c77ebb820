/*
** bind_nn.c — Lua bindings of ops/nn.c: vl.linear, the normalisations
** (batch_norm, layer_norm, rms_norm, group_norm), vl.dropout,
** vl.embedding and the losses (cross_entropy, nll_loss, mse_loss,
** l1_loss, smooth_l1_loss, binary_cross_entropy_with_logits, kl_div,
** cosine_similarity).
**
** Index values are 1-based here and 0-based in ops/: embedding ids,
** padding_idx and class targets are checked and shifted by this file, so
** that errors show the user's own numbers. ignore_index is compared with
** the target as given (before the shift); its default stays -100.
*/
#include <string.h>

#include "bind.h"

/* ------------------------------------------------------------------ */
/* Argument helpers                                                     */
/* ------------------------------------------------------------------ */

/* The options table at idx (0 when absent or nil). */
static int opts_at(lua_State *L, int idx, const char *op) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: argument %d must be an options table, got %s", op, idx, luaL_typename(L, idx));
  return idx;
}

/* Every key of the options table must be one of `keys` (NULL-terminated). */
static void check_keys(lua_State *L, int opt, const char *op, const char *const *keys) {
  if (opt == 0) return;
  lua_pushnil(L);
  while (lua_next(L, opt)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    bool known = false;
    for (int i = 0; k && keys[i]; i++) known = known || strcmp(k, keys[i]) == 0;
    if (!known) {
      const char *what = k ? lua_pushfstring(L, "'%s'", k) : luaL_typename(L, -2);
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; keys[i]; i++) {
        if (i) luaL_addstring(&b, keys[i + 1] ? ", " : " or ");
        luaL_addstring(&b, keys[i]);
      }
      luaL_pushresult(&b);
      luaL_error(L, "%s: unknown option %s (expected %s)", op, what, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
}

/* A tensor argument that may be nil. */
static vl_tensor *opt_arg_tensor(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return NULL;
  return vlua_checktensor(L, idx);
}

/* n optional tensor arguments from `first` on, then an options table,
   which may come early: vl.layer_norm(x, 4, {eps = 1e-6}). Fills ts and
   returns the options' index (0 when none). */
static int tensors_then_opts(lua_State *L, int first, int n, vl_tensor **ts, const char *op) {
  for (int i = 0; i < n; i++) ts[i] = NULL;
  for (int i = 0; i <= n; i++) {
    int idx = first + i;
    if (lua_type(L, idx) == LUA_TTABLE) return idx;
    if (i == n) return opts_at(L, idx, op);
    ts[i] = opt_arg_tensor(L, idx);
  }
  return 0;
}

/* opt[key] as a tensor, or NULL when absent. */
static vl_tensor *opt_tensor(lua_State *L, int opt, const char *key, const char *op) {
  if (opt == 0) return NULL;
  lua_getfield(L, opt, key);
  vl_tensor *t = NULL;
  if (!lua_isnil(L, -1)) {
    t = vlua_totensor(L, -1);
    if (t == NULL) luaL_error(L, "%s: option '%s' must be a tensor, got %s", op, key, luaL_typename(L, -1));
  }
  lua_pop(L, 1); /* the tensor stays alive in the options table */
  return t;
}

static bool opt_present(lua_State *L, int opt, const char *key) {
  if (opt == 0) return false;
  bool has = lua_getfield(L, opt, key) != LUA_TNIL;
  lua_pop(L, 1);
  return has;
}

static vl_reduction opt_reduction(lua_State *L, int opt, const char *op, bool batchmean_ok, const char *def) {
  const char *name = def;
  if (opt) {
    int t = lua_getfield(L, opt, "reduction");
    if (t != LUA_TNIL && t != LUA_TSTRING)
      luaL_error(L, "%s: option 'reduction' must be a string, got %s", op, lua_typename(L, t));
    if (t == LUA_TSTRING) name = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive in the options table */
  }
  vl_reduction r;
  vlua_check(L, vl_reduction_from_name(op, name, batchmean_ok, &r));
  return r;
}

/* A number of dims or a shape table naming the trailing dims of x that
   are normalised; checks they match and returns how many. */
static int norm_shape(lua_State *L, int idx, const vl_tensor *x, const char *op) {
  int64_t shape[VL_MAX_DIMS];
  int k;
  if (lua_isinteger(L, idx)) {
    shape[0] = lua_tointeger(L, idx);
    k = 1;
  } else if (lua_istable(L, idx)) {
    k = vlua_checkshape(L, idx, shape, op);
  } else {
    return luaL_error(L, "%s: normalized_shape must be a size or a table of sizes, got %s", op, luaL_typename(L, idx));
  }
  bool ok = k >= 1 && k <= x->ndim;
  for (int d = 0; ok && d < k; d++) ok = shape[d] == x->shape[x->ndim - k + d];
  if (!ok) {
    char s1[VL_SHAPE_STR], s2[VL_SHAPE_STR];
    luaL_error(L, "%s: normalized_shape %s does not match the last dims of the input's shape %s", op,
               vl_shape_str(k, shape, s1), vl_shape_str(x->ndim, x->shape, s2));
  }
  return k;
}

/* A fresh int64 copy of integer tensor t with 1-based values shifted to
   0-based, each checked to lie in 1..n (values equal to `keep`, when
   has_keep, are shifted without a check). */
static vl_tensor *shift_indices(lua_State *L, const vl_tensor *t, int64_t n, bool has_keep, int64_t keep,
                                const char *op, const char *what, const char *of) {
  if (t->dtype != VL_INT64 && t->dtype != VL_INT32 && t->dtype != VL_UINT8)
    luaL_error(L, "%s: %s must be an integer tensor (int64, int32 or uint8), got %s", op, what,
               vl_dtype_name(t->dtype));
  vl_tensor *c = vl_to_dtype(t, VL_INT64);
  vl_tensor *d = c ? vl_clone(c) : NULL;
  vl_tensor_release(c);
  if (d == NULL) vlua_raise(L);
  int64_t *p = vl_data_ptr(d), m = vl_numel(d);
  for (int64_t i = 0; i < m; i++) {
    if (has_keep && p[i] == keep) {
      p[i] = keep - 1;
      continue;
    }
    if (p[i] < 1 || p[i] > n) {
      int64_t bad = p[i];
      vl_tensor_release(d);
      if (has_keep)
        luaL_error(L, "%s: %s %I out of range for %I %s (expected 1..%I, or ignore_index %I)", op, what,
                   (lua_Integer)bad, (lua_Integer)n, of, (lua_Integer)n, (lua_Integer)keep);
      luaL_error(L, "%s: %s %I out of range for %I %s (expected 1..%I)", op, what, (lua_Integer)bad, (lua_Integer)n,
                 of, (lua_Integer)n);
    }
    p[i] -= 1;
  }
  return d;
}

/* Push the result of an op that needed a temporary, releasing it first. */
static int push_release(lua_State *L, vl_tensor *r, vl_tensor *tmp) {
  if (r == NULL) {
    /* keep the error message: release after reading it into Lua */
    lua_pushstring(L, vl_last_error());
    vl_tensor_release(tmp);
    return lua_error(L);
  }
  vl_tensor_release(tmp);
  vlua_pushtensor(L, r);
  return 1;
}

/* ------------------------------------------------------------------ */
/* Layers                                                               */
/* ------------------------------------------------------------------ */

static int l_linear(lua_State *L) {
  vl_tensor *x = vlua_checktensor(L, 1), *w = vlua_checktensor(L, 2), *b;
  int opt = tensors_then_opts(L, 3, 1, &b, "linear");
  check_keys(L, opt, "linear", (const char *const[]){NULL});
  vlua_pushtensor(L, vl_linear(x, w, b));
  return 1;
}

static int l_batch_norm(lua_State *L) {
  const char *op = "batch_norm";
  vl_tensor *x = vlua_checktensor(L, 1);
  vl_tensor *ts[4];
  int opt = tensors_then_opts(L, 2, 4, ts, op);
  vl_tensor *rm = ts[0], *rv = ts[1], *w = ts[2], *b = ts[3];
  check_keys(L, opt, op, (const char *const[]){"training", "momentum", "eps", NULL});
  bool training = vlua_optbool(L, opt, "training", 0);
  double momentum = vlua_optnumber(L, opt, "momentum", 0.1);
  double eps = vlua_optnumber(L, opt, "eps", 1e-5);
  vlua_pushtensor(L, vl_batch_norm(x, rm, rv, w, b, training, momentum, eps));
  return 1;
}

static int l_layer_norm(lua_State *L) {
  const char *op = "layer_norm";
  vl_tensor *x = vlua_checktensor(L, 1);
  int k = norm_shape(L, 2, x, op);
  vl_tensor *ts[2];
  int opt = tensors_then_opts(L, 3, 2, ts, op);
  vl_tensor *w = ts[0], *b = ts[1];
  check_keys(L, opt, op, (const char *const[]){"eps", NULL});
  vlua_pushtensor(L, vl_layer_norm(x, k, w, b, vlua_optnumber(L, opt, "eps", 1e-5)));
  return 1;
}

/* PyTorch's default eps for rms_norm: the machine epsilon of the dtype. */
static double dtype_eps(vl_dtype dt) {
  switch (dt) {
    case VL_FLOAT64: return 2.220446049250313e-16;
    case VL_FLOAT16: return 9.765625e-04;
    case VL_BFLOAT16: return 7.8125e-03;
    default: return 1.1920928955078125e-07;
  }
}

static int l_rms_norm(lua_State *L) {
  const char *op = "rms_norm";
  vl_tensor *x = vlua_checktensor(L, 1);
  int k = norm_shape(L, 2, x, op);
  vl_tensor *w;
  int opt = tensors_then_opts(L, 3, 1, &w, op);
  check_keys(L, opt, op, (const char *const[]){"eps", NULL});
  vlua_pushtensor(L, vl_rms_norm(x, k, w, vlua_optnumber(L, opt, "eps", dtype_eps(x->dtype))));
  return 1;
}

static int l_group_norm(lua_State *L) {
  const char *op = "group_norm";
  vl_tensor *x = vlua_checktensor(L, 1);
  lua_Integer groups = luaL_checkinteger(L, 2);
  vl_tensor *ts[2];
  int opt = tensors_then_opts(L, 3, 2, ts, op);
  vl_tensor *w = ts[0], *b = ts[1];
  check_keys(L, opt, op, (const char *const[]){"eps", NULL});
  vlua_pushtensor(L, vl_group_norm(x, (int64_t)groups, w, b, vlua_optnumber(L, opt, "eps", 1e-5)));
  return 1;
}

static int l_dropout(lua_State *L) {
  const char *op = "dropout";
  vl_tensor *x = vlua_checktensor(L, 1);
  double p = 0.5;
  int opt = 0;
  if (lua_type(L, 2) == LUA_TTABLE) {
    opt = 2;
  } else {
    if (!lua_isnoneornil(L, 2)) {
      if (lua_type(L, 2) != LUA_TNUMBER)
        return luaL_error(L, "dropout: p must be a number, got %s", luaL_typename(L, 2));
      p = lua_tonumber(L, 2);
    }
    opt = opts_at(L, 3, op);
  }
  check_keys(L, opt, op, (const char *const[]){"training", NULL});
  vlua_pushtensor(L, vl_dropout(x, p, vlua_optbool(L, opt, "training", 1)));
  return 1;
}

static int l_embedding(lua_State *L) {
  const char *op = "embedding";
  vl_tensor *idx = vlua_checktensor(L, 1), *w = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  check_keys(L, opt, op, (const char *const[]){"padding_idx", NULL});
  if (w->ndim != 2) {
    char s[VL_SHAPE_STR];
    return luaL_error(L, "embedding: weight must be 2-D [num_embeddings, dim], got shape %s",
                      vl_shape_str(w->ndim, w->shape, s));
  }
  int64_t num = w->shape[0], pad = -1;
  if (opt_present(L, opt, "padding_idx")) {
    lua_Integer p = vlua_optinteger(L, opt, "padding_idx", 0);
    if (p == 0 || p > num || p < -num)
      return luaL_error(L, "embedding: padding_idx %I out of range for %I embeddings (expected 1..%I or -%I..-1)", p,
                        (lua_Integer)num, (lua_Integer)num, (lua_Integer)num);
    pad = p > 0 ? p - 1 : num + p;
  }
  vl_tensor *i0 = shift_indices(L, idx, num, false, 0, op, "index", "embeddings");
  return push_release(L, vl_embedding(i0, w, pad), i0);
}

/* ------------------------------------------------------------------ */
/* Losses                                                               */
/* ------------------------------------------------------------------ */

#define IGNORE_DEFAULT (-100)

static int class_loss(lua_State *L, bool ce) {
  const char *op = ce ? "cross_entropy" : "nll_loss";
  vl_tensor *x = vlua_checktensor(L, 1), *t = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  if (ce)
    check_keys(L, opt, op, (const char *const[]){"weight", "ignore_index", "reduction", "label_smoothing", NULL});
  else
    check_keys(L, opt, op, (const char *const[]){"weight", "ignore_index", "reduction", NULL});
  vl_tensor *w = opt_tensor(L, opt, "weight", op);
  lua_Integer ii = vlua_optinteger(L, opt, "ignore_index", IGNORE_DEFAULT);
  vl_reduction red = opt_reduction(L, opt, op, false, "mean");
  double ls = ce ? vlua_optnumber(L, opt, "label_smoothing", 0) : 0;
  if (vl_dtype_is_float(t->dtype)) {
    if (ce && opt_present(L, opt, "ignore_index"))
      return luaL_error(L, "%s: ignore_index is not supported for probability targets (target is %s)", op,
                        vl_dtype_name(t->dtype));
    vlua_pushtensor(L, ce ? vl_cross_entropy(x, t, w, -1, red, ls) : vl_nll_loss(x, t, w, -1, red));
    return 1;
  }
  if (x->ndim == 0 || ii == LUA_MININTEGER) { /* the op reports the bad input */
    vlua_pushtensor(L, ce ? vl_cross_entropy(x, t, w, ii, red, ls) : vl_nll_loss(x, t, w, ii, red));
    return 1;
  }
  int64_t C = x->ndim == 1 ? x->shape[0] : x->shape[1];
  vl_tensor *t0 = shift_indices(L, t, C, true, (int64_t)ii, op, "target", "classes");
  vl_tensor *r = ce ? vl_cross_entropy(x, t0, w, (int64_t)ii - 1, red, ls) : vl_nll_loss(x, t0, w, (int64_t)ii - 1, red);
  return push_release(L, r, t0);
}

static int l_cross_entropy(lua_State *L) { return class_loss(L, true); }
static int l_nll_loss(lua_State *L) { return class_loss(L, false); }

static int l_mse_loss(lua_State *L) {
  const char *op = "mse_loss";
  vl_tensor *a = vlua_checktensor(L, 1), *b = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  check_keys(L, opt, op, (const char *const[]){"reduction", NULL});
  vlua_pushtensor(L, vl_mse_loss(a, b, opt_reduction(L, opt, op, false, "mean")));
  return 1;
}

static int l_l1_loss(lua_State *L) {
  const char *op = "l1_loss";
  vl_tensor *a = vlua_checktensor(L, 1), *b = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  check_keys(L, opt, op, (const char *const[]){"reduction", NULL});
  vlua_pushtensor(L, vl_l1_loss(a, b, opt_reduction(L, opt, op, false, "mean")));
  return 1;
}

static int l_smooth_l1_loss(lua_State *L) {
  const char *op = "smooth_l1_loss";
  vl_tensor *a = vlua_checktensor(L, 1), *b = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  check_keys(L, opt, op, (const char *const[]){"beta", "reduction", NULL});
  vl_reduction red = opt_reduction(L, opt, op, false, "mean");
  vlua_pushtensor(L, vl_smooth_l1_loss(a, b, red, vlua_optnumber(L, opt, "beta", 1.0)));
  return 1;
}

static int l_bce_with_logits(lua_State *L) {
  const char *op = "binary_cross_entropy_with_logits";
  vl_tensor *x = vlua_checktensor(L, 1), *y = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  check_keys(L, opt, op, (const char *const[]){"weight", "pos_weight", "reduction", NULL});
  vl_tensor *w = opt_tensor(L, opt, "weight", op), *pw = opt_tensor(L, opt, "pos_weight", op);
  vlua_pushtensor(L, vl_binary_cross_entropy_with_logits(x, y, w, pw, opt_reduction(L, opt, op, false, "mean")));
  return 1;
}

static int l_kl_div(lua_State *L) {
  const char *op = "kl_div";
  vl_tensor *x = vlua_checktensor(L, 1), *y = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  check_keys(L, opt, op, (const char *const[]){"reduction", "log_target", NULL});
  vl_reduction red = opt_reduction(L, opt, op, true, "mean");
  vlua_pushtensor(L, vl_kl_div(x, y, red, vlua_optbool(L, opt, "log_target", 0)));
  return 1;
}

static int l_cosine_similarity(lua_State *L) {
  const char *op = "cosine_similarity";
  vl_tensor *a = vlua_checktensor(L, 1), *b = vlua_checktensor(L, 2);
  int opt = opts_at(L, 3, op);
  check_keys(L, opt, op, (const char *const[]){"dim", "eps", NULL});
  int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  int dim = vlua_todim(L, vlua_optinteger(L, opt, "dim", 2), nd, op);
  vlua_pushtensor(L, vl_cosine_similarity(a, b, dim, vlua_optnumber(L, opt, "eps", 1e-8)));
  return 1;
}

static const vlua_Reg nn_regs[] = {
    {"linear", l_linear, VLUA_FUNC, "vl.linear(x, w, [b]) -> Tensor -- x[..., in] @ w[out, in]^T + b[out], one GEMM"},
    {"batch_norm", l_batch_norm, VLUA_FUNC,
     "vl.batch_norm(x, running_mean, running_var, weight, bias, {training=false, momentum=0.1, eps=1e-5}) -> Tensor "
     "-- normalise x [N,C,...] per channel; training updates the running stats in place"},
    {"layer_norm", l_layer_norm, VLUA_FUNC,
     "vl.layer_norm(x, normalized_shape, [weight], [bias], {eps=1e-5}) -> Tensor -- normalise over the last dims"},
    {"rms_norm", l_rms_norm, VLUA_FUNC,
     "vl.rms_norm(x, normalized_shape, [weight], {eps}) -> Tensor -- x / sqrt(mean(x^2) + eps) * weight over the last "
     "dims (eps: the dtype's machine epsilon)"},
    {"group_norm", l_group_norm, VLUA_FUNC,
     "vl.group_norm(x, num_groups, [weight], [bias], {eps=1e-5}) -> Tensor -- normalise x [N,C,...] per group of "
     "channels"},
    {"dropout", l_dropout, VLUA_FUNC,
     "vl.dropout(x, [p=0.5], {training=true}) -> Tensor -- zero elements with probability p, scale the rest by "
     "1/(1-p)"},
    {"embedding", l_embedding, VLUA_FUNC,
     "vl.embedding(indices, weight, {padding_idx}) -> Tensor -- rows of weight [num, dim] for 1-based indices"},
    {"cross_entropy", l_cross_entropy, VLUA_FUNC,
     "vl.cross_entropy(input, target, {weight, ignore_index=-100, reduction='mean', label_smoothing=0}) -> Tensor "
     "-- log-softmax + NLL; target: 1-based classes or probabilities"},
    {"nll_loss", l_nll_loss, VLUA_FUNC,
     "vl.nll_loss(logp, target, {weight, ignore_index=-100, reduction='mean'}) -> Tensor -- negative log-likelihood "
     "of 1-based classes"},
    {"mse_loss", l_mse_loss, VLUA_FUNC, "vl.mse_loss(input, target, {reduction='mean'}) -> Tensor -- (input - target)^2"},
    {"l1_loss", l_l1_loss, VLUA_FUNC, "vl.l1_loss(input, target, {reduction='mean'}) -> Tensor -- |input - target|"},
    {"smooth_l1_loss", l_smooth_l1_loss, VLUA_FUNC,
     "vl.smooth_l1_loss(input, target, {beta=1, reduction='mean'}) -> Tensor -- Huber-like: quadratic below beta"},
    {"binary_cross_entropy_with_logits", l_bce_with_logits, VLUA_FUNC,
     "vl.binary_cross_entropy_with_logits(x, y, {weight, pos_weight, reduction='mean'}) -> Tensor -- sigmoid + BCE, "
     "stable"},
    {"kl_div", l_kl_div, VLUA_FUNC,
     "vl.kl_div(input, target, {reduction='mean', log_target=false}) -> Tensor -- KL(target || exp(input)); "
     "reduction may be 'batchmean'"},
    {"cosine_similarity", l_cosine_similarity, VLUA_FUNC,
     "vl.cosine_similarity(a, b, {dim=2, eps=1e-8}) -> Tensor -- cosine of a and b along dim"},
    {NULL, NULL, 0, NULL},
};

void vlua_open_nn(lua_State *L) { vlua_register(L, nn_regs); }
