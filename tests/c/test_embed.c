/*
** test_embed.c — cmocka tests of the embedding API (vm/vlua.h).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "vl.h"
#include "vlua.h"

static void assert_contains(const char *text, const char *part) {
  if (strstr(text, part) == NULL) {
    print_error("expected \"%s\" in:\n%s\n", part, text);
    fail();
  }
}

static vlua_State *open_default(void) {
  vlua_State *V = vlua_open(NULL);
  if (V == NULL) print_error("vlua_open: %s\n", vlua_last_error(NULL));
  assert_non_null(V);
  return V;
}

/* ------------------------------------------------------------------ */

static void test_run_string(void **state) {
  vlua_State *V = open_default();
  double v = 0;
  (void)state;
  assert_int_equal(vlua_dostring(V, "answer = 6 * 7", "t"), VLUA_OK);
  assert_string_equal(vlua_last_error(V), "");
  assert_int_equal(vlua_get_number(V, "answer", &v), VLUA_OK);
  assert_true(v == 42.0);
  /* Globals persist between chunks; vl and help are there. */
  assert_int_equal(vlua_dostring(V, "assert(answer == 42) assert(type(vl) == 'table')"
                                    " assert(require('vl') == vl) assert(type(help) == 'function')"
                                    " assert(package.preload.vl)", NULL),
                   VLUA_OK);
  assert_int_equal(vlua_set_number(V, "cfg.rate", 0.5), VLUA_OK);
  assert_int_equal(vlua_dostring(V, "assert(cfg.rate == 0.5)", NULL), VLUA_OK);
  vlua_close(V);
}

static void test_syntax_error(void **state) {
  vlua_State *V = open_default();
  (void)state;
  assert_int_equal(vlua_dostring(V, "x = = 1", "mychunk"), VLUA_ERRSYNTAX);
  assert_contains(vlua_last_error(V), "mychunk:1:");
  assert_contains(vlua_last_error(V), "near '='");
  /* The interpreter is still usable, and the error is cleared by success. */
  assert_int_equal(vlua_dostring(V, "x = 1", NULL), VLUA_OK);
  assert_string_equal(vlua_last_error(V), "");
  vlua_close(V);
}

static void test_runtime_error_traceback(void **state) {
  vlua_State *V = open_default();
  const char *code =
      "local function inner() error('boom here') end\n"
      "local function outer() inner() end\n"
      "outer()\n";
  (void)state;
  assert_int_equal(vlua_dostring(V, code, "rt"), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "rt:1: boom here");
  assert_contains(vlua_last_error(V), "stack traceback:");
  assert_contains(vlua_last_error(V), "inner");
  assert_contains(vlua_last_error(V), "outer");
  /* A vl error (bad shapes) is a runtime error naming the op. */
  assert_int_equal(vlua_dostring(V, "vl.ones(2, 3):matmul(vl.ones(2, 3))", "m"), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "matmul");
  /* A non-string error object. */
  assert_int_equal(vlua_dostring(V, "error({})", "e"), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "error object is a table value");
  vlua_close(V);
}

static void test_dofile(void **state) {
  vlua_State *V = open_default();
  char path[] = "/tmp/vlua_test_XXXXXX";
  int fd = mkstemp(path);
  double v = 0;
  (void)state;
  assert_true(fd >= 0);
  assert_true(write(fd, "from_file = 3 + 4\n", 18) == 18);
  close(fd);
  assert_int_equal(vlua_dofile(V, path), VLUA_OK);
  assert_int_equal(vlua_get_number(V, "from_file", &v), VLUA_OK);
  assert_true(v == 7.0);
  unlink(path);
  assert_int_equal(vlua_dofile(V, path), VLUA_ERRFILE);
  assert_contains(vlua_last_error(V), "cannot open");
  assert_contains(vlua_last_error(V), path);
  vlua_close(V);
}

/* ------------------------------------------------------------------ */

static int c_add(lua_State *L) {
  lua_pushnumber(L, luaL_checknumber(L, 1) + luaL_checknumber(L, 2));
  return 1;
}

typedef struct Seen {
  int calls;
  int nargs;
  vlua_Type types[6];
  double numbers[6];
  char string[32];
  int64_t tensor_numel;
} Seen;

static int cb_record(void *ud, int nargs, const vlua_Value *args, vlua_Value *result,
                     char *err, size_t errsize) {
  Seen *s = (Seen *)ud;
  int i;
  s->calls++;
  s->nargs = nargs;
  for (i = 0; i < nargs && i < 6; i++) {
    s->types[i] = args[i].type;
    s->numbers[i] = args[i].number;
    if (args[i].type == VLUA_TSTRING) snprintf(s->string, sizeof s->string, "%s", args[i].string);
    if (args[i].type == VLUA_TTENSOR) s->tensor_numel = vl_numel(args[i].tensor);
  }
  if (nargs > 0 && args[0].type == VLUA_TSTRING && strcmp(args[0].string, "fail") == 0) {
    snprintf(err, errsize, "cb_record: asked to fail");
    return 1;
  }
  result->type = VLUA_TSTRING;
  result->string = "done";
  return 0;
}

static int cb_make_tensor(void *ud, int nargs, const vlua_Value *args, vlua_Value *result,
                          char *err, size_t errsize) {
  (void)ud;
  (void)err;
  (void)errsize;
  result->type = VLUA_TTENSOR;
  result->tensor = vl_full(0, NULL, nargs > 0 ? args[0].number : 0, VL_FLOAT64);
  return 0;
}

static void test_host_functions(void **state) {
  vlua_State *V = open_default();
  Seen seen;
  double v = 0;
  (void)state;
  memset(&seen, 0, sizeof seen);
  assert_int_equal(vlua_register_function(V, "c_add", c_add), VLUA_OK);
  assert_int_equal(vlua_register_function(V, "host.math.add", c_add), VLUA_OK);
  assert_int_equal(vlua_register_callback(V, "host.record", cb_record, &seen), VLUA_OK);
  assert_int_equal(vlua_register_callback(V, "host.scalar", cb_make_tensor, NULL), VLUA_OK);
  assert_int_equal(vlua_dostring(V, "r1 = c_add(1, 2) r2 = host.math.add(10, 5)", NULL), VLUA_OK);
  assert_int_equal(vlua_get_number(V, "r1", &v), VLUA_OK);
  assert_true(v == 3.0);
  assert_int_equal(vlua_get_number(V, "r2", &v), VLUA_OK);
  assert_true(v == 15.0);

  assert_int_equal(vlua_dostring(V,
                                 "local r = host.record(1.5, 'hi', true, nil, vl.zeros(2, 5), {})\n"
                                 "assert(r == 'done')\n"
                                 "local t = host.scalar(2.5)\n"
                                 "assert(vl.is_tensor(t) and t:item() == 2.5 and t:type() == 'float64')",
                                 NULL),
                   VLUA_OK);
  assert_int_equal(seen.calls, 1);
  assert_int_equal(seen.nargs, 6);
  assert_int_equal(seen.types[0], VLUA_TNUMBER);
  assert_true(seen.numbers[0] == 1.5);
  assert_int_equal(seen.types[1], VLUA_TSTRING);
  assert_string_equal(seen.string, "hi");
  assert_int_equal(seen.types[2], VLUA_TBOOLEAN);
  assert_true(seen.numbers[2] == 1.0);
  assert_int_equal(seen.types[3], VLUA_TNIL);
  assert_int_equal(seen.types[4], VLUA_TTENSOR);
  assert_int_equal(seen.tensor_numel, 10);
  assert_int_equal(seen.types[5], VLUA_TOTHER);

  /* A callback failure is a Lua error with its message. */
  assert_int_equal(vlua_dostring(V, "host.record('fail')", "cb"), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "cb_record: asked to fail");
  /* ... that Lua code can catch. */
  assert_int_equal(vlua_dostring(V, "assert(not pcall(host.record, 'fail'))", NULL), VLUA_OK);
  /* A dotted name through a non-table is refused with a message. */
  assert_int_equal(vlua_register_function(V, "r1.x", c_add), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "'r1' is a number, not a table");
  vlua_close(V);
}

static void test_bad_arguments(void **state) {
  vlua_State *V = open_default();
  double v;
  (void)state;
  assert_int_equal(vlua_dostring(V, NULL, NULL), VLUA_ERRARG);
  assert_contains(vlua_last_error(V), "code is NULL");
  assert_int_equal(vlua_register_function(V, NULL, c_add), VLUA_ERRARG);
  assert_int_equal(vlua_register_function(V, "a..b", c_add), VLUA_ERRARG);
  assert_contains(vlua_last_error(V), "bad name 'a..b'");
  assert_int_equal(vlua_register_function(V, "f", NULL), VLUA_ERRARG);
  assert_int_equal(vlua_register_callback(V, ".f", cb_record, NULL), VLUA_ERRARG);
  assert_int_equal(vlua_push_tensor(V, "t", NULL), VLUA_ERRARG);
  assert_contains(vlua_last_error(V), "tensor is NULL");
  assert_int_equal(vlua_get_number(V, "", &v), VLUA_ERRARG);
  assert_int_equal(vlua_get_number(V, "nothing_here", &v), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "'nothing_here' is a nil, not a number");
  assert_int_equal(vlua_dostring(NULL, "x = 1", NULL), VLUA_ERRARG);
  assert_null(vlua_to_tensor(NULL, "x"));
  assert_null(vlua_lua_state(NULL));
  vlua_close(NULL);
  vlua_close(V);
}

/* ------------------------------------------------------------------ */

static void test_tensor_round_trip(void **state) {
  vlua_State *V = open_default();
  const int64_t shape[2] = {2, 3};
  vl_tensor *x = vl_empty(2, shape, VL_FLOAT32), *y, *again;
  int64_t i;
  (void)state;
  assert_non_null(x);
  for (i = 0; i < 6; i++) {
    int64_t idx[2] = {i / 3, i % 3};
    assert_int_equal(vl_set(x, idx, (double)(i + 1)), VL_OK);
  }
  assert_int_equal(vlua_push_tensor(V, "data.x", x), VLUA_OK);
  assert_int_equal(x->refcount, 2);  /* ours and Lua's */
  /* Lua sees the values, shares the storage (an in-place op shows in C). */
  assert_int_equal(vlua_dostring(V,
                                 "local x = data.x\n"
                                 "assert(x:size(1) == 2 and x:size(2) == 3)\n"
                                 "assert(x:sum():item() == 21)\n"
                                 "y = x:t():contiguous()\n"
                                 "x:select(1, 1):fill_(0)\n",
                                 NULL),
                   VLUA_OK);
  {
    int64_t idx[2] = {0, 2};
    double v;
    assert_int_equal(vl_get(x, idx, &v), VL_OK);
    assert_true(v == 0.0);
  }
  y = vlua_to_tensor(V, "y");
  assert_non_null(y);
  assert_int_equal(y->ndim, 2);
  assert_int_equal(y->shape[0], 3);
  assert_int_equal(y->shape[1], 2);
  for (i = 0; i < 6; i++) {  /* y = original x transposed: y[r][c] = x[c][r] */
    int64_t idx[2] = {i / 2, i % 2};
    double v;
    assert_int_equal(vl_get(y, idx, &v), VL_OK);
    assert_true(v == (double)((i % 2) * 3 + i / 2 + 1));
  }
  /* A new reference each time. */
  again = vlua_to_tensor(V, "y");
  assert_ptr_equal(again, y);
  assert_true(y->refcount >= 3);
  vl_tensor_release(again);
  /* Not a tensor: NULL and a message. */
  assert_int_equal(vlua_dostring(V, "n = 5", NULL), VLUA_OK);
  assert_null(vlua_to_tensor(V, "n"));
  assert_contains(vlua_last_error(V), "'n' is a number, not a tensor");
  assert_null(vlua_to_tensor(V, "missing.deep.name"));
  assert_contains(vlua_last_error(V), "not a tensor");
  /* Our references outlive the interpreter. */
  vlua_close(V);
  assert_int_equal(x->refcount, 1);
  assert_int_equal(y->refcount, 1);
  vl_tensor_release(x);
  vl_tensor_release(y);
}

static void test_memory_cap(void **state) {
  vlua_Options o;
  vlua_State *V;
  size_t before = vl_memory_limit();
  (void)state;
  memset(&o, 0, sizeof o);
  o.memory_limit = (size_t)16 << 20;  /* 16 MiB */
  V = vlua_open(&o);
  assert_non_null(V);
  assert_int_equal(vl_memory_limit(), o.memory_limit);
  /* A runaway Lua table: a memory error, not a crash. */
  assert_int_equal(vlua_dostring(V, "t = {} for i = 1, 1e9 do t[i] = i end", "grow"), VLUA_ERRMEM);
  assert_contains(vlua_last_error(V), "not enough memory");
  assert_int_equal(vlua_dostring(V, "t = nil collectgarbage()", NULL), VLUA_OK);
  /* A runaway string. */
  assert_int_equal(vlua_dostring(V, "s = string.rep('x', 1 << 30)", NULL), VLUA_ERRMEM);
  /* An oversized tensor: a Lua error from the tensor cap. */
  assert_int_equal(vlua_dostring(V, "big = vl.zeros(1024, 1024, 64)", "tensor"), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "tensor:1:");
  /* Still usable afterwards. */
  assert_int_equal(vlua_dostring(V, "ok = vl.ones(10):sum():item()", NULL), VLUA_OK);
  vlua_close(V);
  assert_int_equal(vl_memory_limit(), before);  /* restored */
  /* Too small to even open: NULL with a reason. */
  o.memory_limit = 4096;
  assert_null(vlua_open(&o));
  assert_true(strlen(vlua_last_error(NULL)) > 0);
  assert_int_equal(vl_memory_limit(), before);
}

static void test_open_close_many(void **state) {
  size_t base = vl_memory_in_use();
  int i;
  (void)state;
  for (i = 0; i < 40; i++) {
    vlua_State *V = open_default();
    assert_int_equal(vlua_dostring(V, "local a = vl.ones(64, 64) b = a:matmul(a) c = {b, b}", NULL),
                     VLUA_OK);
    assert_true(vl_memory_in_use() > base);
    vlua_close(V);
    assert_int_equal(vl_memory_in_use(), base);  /* every tensor released */
  }
}

/* ------------------------------------------------------------------ */

static int c_interrupt(lua_State *L) {
  vlua_State *V = (vlua_State *)lua_touserdata(L, lua_upvalueindex(1));
  vlua_interrupt(V);
  return 0;
}

static void test_interrupt(void **state) {
  vlua_State *V = open_default();
  lua_State *L = vlua_lua_state(V);
  (void)state;
  assert_non_null(L);
  lua_pushlightuserdata(L, V);
  lua_pushcclosure(L, c_interrupt, 1);
  lua_setglobal(L, "stop");
  assert_int_equal(vlua_dostring(V, "stop() while true do end", "loop"), VLUA_ERRRUN);
  assert_contains(vlua_last_error(V), "interrupted!");
  /* The next chunk is not interrupted. */
  assert_int_equal(vlua_dostring(V, "for i = 1, 1e5 do end", NULL), VLUA_OK);
  vlua_close(V);
}

static void test_options_flags(void **state) {
  vlua_Options o;
  vlua_State *V;
  (void)state;
  memset(&o, 0, sizeof o);
  o.flags = VLUA_OPT_NO_GLOBALS;
  V = vlua_open(&o);
  assert_non_null(V);
  assert_int_equal(vlua_dostring(V, "assert(vl == nil and help == nil)"
                                    " local m = require 'vl' assert(m.ones)",
                                    NULL),
                   VLUA_OK);
  vlua_close(V);
  o.flags = VLUA_OPT_NO_VL;
  o.num_threads = 1;
  V = vlua_open(&o);
  assert_non_null(V);
  assert_int_equal(vl_get_num_threads(), 1);
  assert_int_equal(vlua_dostring(V, "assert(package.loaded.vl == nil) vl = require 'vl'"
                                    " assert(vl.ones)",
                                    NULL),
                   VLUA_OK);
  vlua_close(V);
}

static void test_vlua_path(void **state) {
  char dir[] = "/tmp/vlua_path_XXXXXX";
  char file[256];
  FILE *f;
  vlua_State *V;
  vlua_Options o;
  (void)state;
  assert_non_null(mkdtemp(dir));
  snprintf(file, sizeof file, "%s/vlua_test_mod.lua", dir);
  f = fopen(file, "w");
  assert_non_null(f);
  fputs("return { answer = 42 }\n", f);
  fclose(f);
  setenv("VLUA_PATH", dir, 1);
  V = open_default();
  assert_int_equal(vlua_dostring(V, "assert(require('vlua_test_mod').answer == 42)", NULL), VLUA_OK);
  vlua_close(V);
  /* VLUA_OPT_NO_ENV ignores it. */
  memset(&o, 0, sizeof o);
  o.flags = VLUA_OPT_NO_ENV;
  V = vlua_open(&o);
  assert_non_null(V);
  assert_int_equal(vlua_dostring(V, "assert(not pcall(require, 'vlua_test_mod'))", NULL), VLUA_OK);
  vlua_close(V);
  unsetenv("VLUA_PATH");
  unlink(file);
  rmdir(dir);
}

static void test_stdlib_path_anchor(void **state) {
  char root[] = "/tmp/vlua_anchor_XXXXXX";
  char bin[64], stdlib_dir[64], exe[64], want[200];
  vlua_State *V;
  lua_State *L;
  const char *path;
  const char *first;
  (void)state;
  assert_non_null(mkdtemp(root));
  snprintf(bin, sizeof bin, "%s/bin", root);
  snprintf(stdlib_dir, sizeof stdlib_dir, "%s/stdlib", root);
  snprintf(exe, sizeof exe, "%s/bin/vlua", root);
  assert_int_equal(mkdir(bin, 0700), 0);
  assert_int_equal(mkdir(stdlib_dir, 0700), 0);
  fclose(fopen(exe, "w"));
  V = open_default();
  L = vlua_lua_state(V);
  vlua_add_stdlib_path(L, exe);
  vlua_add_stdlib_path(L, exe);  /* twice: no duplicates */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  path = lua_tostring(L, -1);
  snprintf(want, sizeof want, "%s/?.lua;%s/?/init.lua;", stdlib_dir, stdlib_dir);
  first = strstr(path, want);
  assert_non_null(first);
  assert_null(strstr(first + 1, want));
  /* before Lua's default directories */
  assert_true(strstr(path, "/usr/share/lua/") == NULL || first < strstr(path, "/usr/share/lua/"));
  /* share/vlua does not exist: not added. */
  assert_null(strstr(path, "share/vlua"));
  lua_pop(L, 2);
  vlua_close(V);
  unlink(exe);
  rmdir(bin);
  rmdir(stdlib_dir);
  rmdir(root);
}

static void test_help_output(void **state) {
  vlua_State *V = open_default();
  char path[] = "/tmp/vlua_help_XXXXXX";
  int fd = mkstemp(path), saved;
  char buf[8192];
  ssize_t n;
  (void)state;
  assert_true(fd >= 0);
  fflush(stdout);
  saved = dup(1);
  dup2(fd, 1);
  assert_int_equal(vlua_dostring(V, "help(vl.ones) help(vl.ones(2, 3):t()) help('zeros') help()", NULL),
                   VLUA_OK);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  unlink(path);
  assert_true(n > 0);
  buf[n] = '\0';
  assert_contains(buf, "vl.ones(");
  assert_contains(buf, "shape [3,2]");
  assert_contains(buf, "dtype float32");
  assert_contains(buf, "strides [1,3]");
  assert_contains(buf, "not contiguous");
  assert_contains(buf, "matmul");  /* in the method list */
  assert_contains(buf, "vl.zeros(");
  assert_contains(buf, "help(vl.matmul)");
  vlua_close(V);
}

static void test_parse_size(void **state) {
  size_t v;
  (void)state;
  assert_int_equal(vlua_parse_size("1048576", &v), 0);
  assert_int_equal(v, 1048576);
  assert_int_equal(vlua_parse_size("512K", &v), 0);
  assert_int_equal(v, 512 * 1024);
  assert_int_equal(vlua_parse_size("64m", &v), 0);
  assert_int_equal(v, (size_t)64 << 20);
  assert_int_equal(vlua_parse_size("2 GiB", &v), 0);
  assert_int_equal(v, (size_t)2 << 30);
  assert_int_equal(vlua_parse_size("3GB", &v), 0);
  assert_int_equal(v, (size_t)3 << 30);
  assert_int_equal(vlua_parse_size("", &v), -1);
  assert_int_equal(vlua_parse_size("-5", &v), -1);
  assert_int_equal(vlua_parse_size("12Q", &v), -1);
  assert_int_equal(vlua_parse_size("abc", &v), -1);
  assert_int_equal(vlua_parse_size("99999999999999999999", &v), -1);
  assert_int_equal(vlua_parse_size("99999999999T", &v), -1);
  assert_int_equal(vlua_parse_size(NULL, &v), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_run_string),
      cmocka_unit_test(test_syntax_error),
      cmocka_unit_test(test_runtime_error_traceback),
      cmocka_unit_test(test_dofile),
      cmocka_unit_test(test_host_functions),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_tensor_round_trip),
      cmocka_unit_test(test_memory_cap),
      cmocka_unit_test(test_open_close_many),
      cmocka_unit_test(test_interrupt),
      cmocka_unit_test(test_options_flags),
      cmocka_unit_test(test_vlua_path),
      cmocka_unit_test(test_stdlib_path_anchor),
      cmocka_unit_test(test_help_output),
      cmocka_unit_test(test_parse_size),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
