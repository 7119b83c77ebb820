/*
** embed.c — a small C host running vlua scripts.
**
** Opens an interpreter, registers two host functions (one with the Lua C
** API, one plain C), hands a tensor to a script, reads the result back,
** shows errors being caught, closes. Prints "embed: ok" and exits 0 when
** every check holds (make test runs it).
**
**   cc embed.c $(pkg-config --cflags --libs vlua) -o embed
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "vl.h"
#include "vlua.h"

static int failures;

static void check(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "embed: FAILED: %s\n", what);
    failures++;
  }
}

/* Lua C API flavour: host.log(message). */
static int host_log(lua_State *L) {
  printf("[host] %s\n", luaL_checkstring(L, 1));
  return 0;
}

/* Plain C flavour: host.scale(t, k) -> a new tensor k * t, computed by the
   host with the C API of ops/. */
static int host_scale(void *ud, int nargs, const vlua_Value *args, vlua_Value *result,
                      char *err, size_t errsize) {
  vl_tensor *k, *r;
  (void)ud;
  if (nargs != 2 || args[0].type != VLUA_TTENSOR || args[1].type != VLUA_TNUMBER) {
    snprintf(err, errsize, "host.scale(t, k): expected a tensor and a number");
    return 1;
  }
  k = vl_scalar(args[1].number, args[0].tensor->dtype);
  r = k ? vl_binary(VL_MUL, args[0].tensor, k) : NULL;
  vl_tensor_release(k);
  if (r == NULL) {
    snprintf(err, errsize, "host.scale: %s", vl_last_error());
    return 1;
  }
  result->type = VLUA_TTENSOR;
  result->tensor = r;  /* handed over to Lua */
  return 0;
}

static const char script[] =
    "host.log('x is ' .. table.concat(x:size(), 'x') .. ' ' .. x:type())\n"
    "local w = vl.ones(3, 2)\n"
    "y = host.scale(x:matmul(w), 0.5)    -- (2x3) @ (3x2), then halved in C\n"
    "total = y:sum():item()\n"
    "host.log('y = ' .. tostring(y))\n";

int main(void) {
  vlua_Options opts;
  vlua_State *V;
  vl_tensor *x, *y, *flat;
  const int64_t shape[2] = {2, 3};
  double total = 0, v;
  int64_t i;

  memset(&opts, 0, sizeof opts);
  opts.memory_limit = (size_t)256 << 20;  /* Lua heap and tensors: 256 MiB */
  V = vlua_open(&opts);
  if (V == NULL) {
    fprintf(stderr, "embed: %s\n", vlua_last_error(NULL));
    return 1;
  }
  check(vlua_register_function(V, "host.log", host_log) == VLUA_OK, "register host.log");
  check(vlua_register_callback(V, "host.scale", host_scale, NULL) == VLUA_OK,
        "register host.scale");

  /* x = [[0, 1, 2], [3, 4, 5]] made in C, passed in as a global. */
  flat = vl_arange(0, 6, 1, VL_FLOAT32);
  x = flat ? vl_view(flat, 2, shape) : NULL;
  vl_tensor_release(flat);
  check(x != NULL, "make x");
  if (x == NULL) return 1;
  check(vlua_push_tensor(V, "x", x) == VLUA_OK, "push x");

  if (vlua_dostring(V, script, "script") != VLUA_OK) {
    fprintf(stderr, "embed: script failed:\n%s\n", vlua_last_error(V));
    failures++;
  }

  /* Read y back: rows of x summed, halved: [[1.5, 1.5], [6, 6]]. */
  y = vlua_to_tensor(V, "y");
  check(y != NULL && y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 2, "y is 2x2");
  for (i = 0; y != NULL && i < 4; i++) {
    int64_t idx[2] = {i / 2, i % 2};
    double want = i < 2 ? 1.5 : 6.0;
    check(vl_get(y, idx, &v) == VL_OK && fabs(v - want) < 1e-6, "y values");
  }
  check(vlua_get_number(V, "total", &total) == VLUA_OK && fabs(total - 15.0) < 1e-6, "total");
  printf("y read back in C: total %g\n", total);

  /* Errors come back as a status and a message, never an abort. */
  check(vlua_dostring(V, "return vl.ones(2, 3):matmul(vl.ones(2, 3))", "bad shapes") ==
            VLUA_ERRRUN, "shape error caught");
  printf("caught: %.*s\n", (int)strcspn(vlua_last_error(V), "\n"), vlua_last_error(V));
  check(vlua_dostring(V, "y = = 1", "typo") == VLUA_ERRSYNTAX, "syntax error caught");
  printf("caught: %s\n", vlua_last_error(V));
  check(vlua_dostring(V, "host.scale('not a tensor', 2)", "bad call") == VLUA_ERRRUN,
        "host error caught");
  printf("caught: %.*s\n", (int)strcspn(vlua_last_error(V), "\n"), vlua_last_error(V));
  check(vlua_to_tensor(V, "total") == NULL, "total is not a tensor");

  vl_tensor_release(y);
  vl_tensor_release(x);
  vlua_close(V);
  if (failures) {
    printf("embed: %d check(s) failed\n", failures);
    return 1;
  }
  printf("embed: ok\n");
  return 0;
}
