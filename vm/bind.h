/*
** bind.h — the helper layer every vm/bind_*.c file uses to turn ops into
** Lua functions and tensor methods. Only vm/ includes Lua headers.
**
** Conventions:
**  - Lua dims and indices are 1-based; negative count from the end.
**    vlua_checkdim converts them to the 0-based dims of ops/.
**  - Options come in a trailing table: vl.sum(x, 2, {keepdim = true}).
**  - A failed op raises a Lua error with vl_last_error()'s message.
*/
#ifndef VLUA_BIND_H
#define VLUA_BIND_H

#include <lauxlib.h>
#include <lua.h>

#include "../ops/vl.h"

#define VLUA_TENSOR_MT "vl.Tensor"     /* metatable name of tensor userdata */
#define VLUA_REG_DOCS "vl.docs"        /* registry: function -> doc string */
#define VLUA_REG_MODULE "vl.module"    /* registry: the vl table */
#define VLUA_REG_METHODS "vl.methods"  /* registry: tensor methods table */

/* Where a registered function goes. */
#define VLUA_FUNC 1    /* vl.name(...) */
#define VLUA_METHOD 2  /* x:name(...) */
#define VLUA_BOTH (VLUA_FUNC | VLUA_METHOD)

/* One binding: its doc is "signature -- one line", shown by help(). */
typedef struct vlua_Reg {
  const char *name;
  lua_CFunction func;
  int where;
  const char *doc;
} vlua_Reg;

/* Register a NULL-terminated list into vl and/or the tensor methods. */
void vlua_register(lua_State *L, const vlua_Reg *regs);
/* The same into the sub-table vl.<name>, created on first use. */
void vlua_register_in(lua_State *L, const char *name, const vlua_Reg *regs);

/* Tensor userdata. */
typedef struct vlua_TensorBox {
  vl_tensor *t;  /* one reference, released by __gc / __close */
} vlua_TensorBox;

vl_tensor *vlua_checktensor(lua_State *L, int idx);
vl_tensor *vlua_totensor(lua_State *L, int idx);  /* NULL when not a live tensor */
/* Push a tensor, taking over the caller's reference. NULL raises the
   pending vl error (so `vlua_pushtensor(L, vl_op(...))` is the idiom). */
void vlua_pushtensor(lua_State *L, vl_tensor *t);
/* Raise vl_last_error() as a Lua error. */
int vlua_raise(lua_State *L);
/* Raise if status != VL_OK. */
void vlua_check(lua_State *L, int status);

/* A tensor argument or a Lua number/boolean turned into a 0-d tensor
   whose dtype follows PyTorch's scalar rules against `like` (may be NULL):
   an integer keeps like's integer/float dtype, a float with an integer
   tensor gives float32, a boolean gives bool. Returns a new reference. */
vl_tensor *vlua_totensor_or_scalar(lua_State *L, int idx, const vl_tensor *like, const char *op);

/* Dims: 1-based or negative Lua dim -> 0-based; raises naming `op`
   ("op: dim 4 out of range for a 3-d tensor (expected -3..3)"). */
int vlua_checkdim(lua_State *L, int idx, int ndim, const char *op);
int vlua_optdim(lua_State *L, int idx, int ndim, int def, const char *op);
int vlua_todim(lua_State *L, lua_Integer d, int ndim, const char *op);  /* same, from a value */
/* A dim or a table of dims at idx -> 0-based list; returns the count
   (0 when idx is nil/none/an options table). */
int vlua_checkdims(lua_State *L, int idx, int ndim, int *dims, const char *op);

/* Shapes: a table {2, 3} or integers from idx to top (stopping at the
   first non-integer, e.g. an options table). Returns ndim. */
int vlua_checkshape(lua_State *L, int idx, int64_t *shape, const char *op);
void vlua_pushshape(lua_State *L, int ndim, const int64_t *shape);  /* as a Lua table */

/* Options table helpers (opt may be 0 or a non-table: defaults apply). */
int vlua_optbool(lua_State *L, int opt, const char *key, int def);
lua_Number vlua_optnumber(lua_State *L, int opt, const char *key, lua_Number def);
lua_Integer vlua_optinteger(lua_State *L, int opt, const char *key, lua_Integer def);
vl_dtype vlua_optdtype(lua_State *L, int opt, const char *key, vl_dtype def);
vl_dtype vlua_checkdtype(lua_State *L, int idx, const char *op);  /* "float32", ... */
/* The index of a trailing options table, or 0. */
int vlua_opts(lua_State *L);

/* Registration of each subsystem (called by luaopen_vl). */
void vlua_open_tensor(lua_State *L);
void vlua_open_elementwise(lua_State *L);
void vlua_open_reduce(lua_State *L);
void vlua_open_linalg(lua_State *L);
void vlua_open_index(lua_State *L);
void vlua_open_random(lua_State *L);
void vlua_open_autograd(lua_State *L);
void vlua_open_conv(lua_State *L);
void vlua_open_conv3d(lua_State *L);
void vlua_open_io(lua_State *L);
void vlua_open_nn(lua_State *L);
void vlua_open_interpolate(lua_State *L);
void vlua_open_video(lua_State *L);
void vlua_open_attention(lua_State *L);
void vlua_open_ssm(lua_State *L);
void vlua_open_fft(lua_State *L);
void vlua_open_audio(lua_State *L);
void vlua_open_media(lua_State *L);
void vlua_open_flow(lua_State *L);
void vlua_open_dock(lua_State *L);
void vlua_open_dock_mol(lua_State *L);
void vlua_open_dock_search(lua_State *L);

/* Option helpers of the convolution and pooling bindings (bind_conv.c),
   shared by bind_conv3d.c. Sizes: a number or a table of n (<= 3). */
void vlua_conv_check_keys(lua_State *L, int opt, const char *op, const char *const *keys);
int64_t vlua_conv_to_int(lua_State *L, int idx, const char *op, const char *what);
void vlua_conv_get_sizes(lua_State *L, int idx, const char *op, const char *what, int n, int64_t *out);
void vlua_conv_opt_sizes(lua_State *L, int opt, const char *key, const char *op, int n, int64_t def, int64_t *out);
int vlua_conv_opts_at(lua_State *L, int idx, const char *op);
void vlua_conv_args(lua_State *L, const char *op, vl_tensor **x, vl_tensor **w, vl_tensor **b, int *opt);
void vlua_conv_padding(lua_State *L, int opt, const char *op, int n, const int64_t *k, const int64_t *stride,
                       const int64_t *dil, int64_t *lo, int64_t *hi);
int64_t vlua_conv_opt_groups(lua_State *L, int opt, const char *op);
int vlua_conv_push_max_result(lua_State *L, int rc, vl_tensor *v, vl_tensor *ind, bool want);

#endif /* VLUA_BIND_H */
