/*
** main.c — the vlua command.
**
**   vlua [options] [script [args]]
**
** The command line of lua5.4 (-e -l -i -v -E -W -- -, the `arg` table,
** LUA_INIT_5_4 / LUA_INIT, a traceback and a non-zero status on error),
** plus --threads N, the environment variables VLUA_NUM_THREADS and
** VLUA_MAX_MEMORY, and the `vl` library loaded as a global. See vlua(1).
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "../ops/vl.h"
#include "vlua.h"

#define VLUA_PROGNAME "vlua"
#define VLUA_MAX_THREADS 1024  /* largest --threads / VLUA_NUM_THREADS accepted */

/* repl.c */
int vlua_cli_docall(lua_State *L, int narg, int nres);
void vlua_cli_repl(lua_State *L, int noenv);

static const char *progname = VLUA_PROGNAME;
static const char *threads_opt;  /* the argument of --threads */

static void l_message(const char *pname, const char *msg) {
  if (pname) fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    l_message(progname, msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
  }
  return status;
}

static void print_usage(FILE *f, const char *badoption) {
  if (badoption) {
    fprintf(f, "%s: ", progname);
    if ((badoption[1] == 'e' || badoption[1] == 'l') && badoption[2] == '\0')
      fprintf(f, "'%s' needs argument\n", badoption);
    else if (strncmp(badoption, "--threads", 9) == 0)
      fprintf(f, "'--threads' needs a thread count (--threads N or --threads=N)\n");
    else
      fprintf(f, "unrecognized option '%s'\n", badoption);
  }
  fprintf(f,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat      execute string 'stat'\n"
          "  -i           enter interactive mode after executing 'script'\n"
          "  -l mod       require library 'mod' into global 'mod'\n"
          "  -l g=mod     require library 'mod' into global 'g'\n"
          "  -v           show version information\n"
          "  -E           ignore environment variables\n"
          "  -W           turn warnings on\n"
          "  --threads N  use N threads for tensor ops (OpenMP and OpenBLAS)\n"
          "  -h, --help   show this help\n"
          "  --           stop handling options\n"
          "  -            stop handling options and execute stdin\n"
          "The library `vl` is loaded as a global; type help() in the REPL. See vlua(1).\n",
          progname);
  fflush(f);
}

static void print_version(void) {
  fputs("vlua " VL_VERSION " -- " LUA_COPYRIGHT "\n", stdout);
  fflush(stdout);
}

/* The `arg` table: argv[script] at 0, the script's arguments at 1..n,
   the interpreter and its options at negative indices. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  int i, narg = argc - (script + 1);
  lua_createtable(L, narg > 0 ? narg : 0, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = vlua_cli_docall(L, 0, 0);
  return report(L, status);
}

static int dofile(lua_State *L, const char *name) { return dochunk(L, luaL_loadfile(L, name)); }

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* "g=mod" or "mod": g = require(mod). */
static int dolibrary(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  int status;
  if (eq) lua_pushlstring(L, spec, (size_t)(eq - spec));
  else lua_pushstring(L, spec);
  lua_getglobal(L, "require");
  lua_pushstring(L, eq ? eq + 1 : spec);
  status = vlua_cli_docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, lua_tostring(L, -2));
  else {
    lua_remove(L, -2);
    return report(L, status);
  }
  lua_pop(L, 1);
  return LUA_OK;
}

static int pushargs(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  int status;
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;  /* stdin */
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = vlua_cli_docall(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

#define has_error 1  /* bad option */
#define has_i 2      /* -i */
#define has_v 4      /* -v */
#define has_e 8      /* -e */
#define has_E 16     /* -E */
#define has_help 32  /* -h, --help */

/* Scan the options. Returns a mask, or has_error with *first at the bad
   option. *first: the script's index, or 0 when there is none. */
static int collectargs(char **argv, int *first) {
  int args = 0, i;
  *first = 0;
  if (argv[0] == NULL) return 0;
  if (argv[0][0]) progname = argv[0];
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;  /* the script */
    switch (argv[i][1]) {
      case '-':
        if (argv[i][2] == '\0') {
          *first = argv[i + 1] ? i + 1 : 0;
          return args;
        }
        if (strcmp(argv[i], "--help") == 0) {
          args |= has_help;
        } else if (strcmp(argv[i], "--threads") == 0) {
          if (argv[i + 1] == NULL || argv[i + 1][0] == '-') return has_error;
          threads_opt = argv[++i];
        } else if (strncmp(argv[i], "--threads=", 10) == 0) {
          threads_opt = argv[i] + 10;
        } else {
          return has_error;
        }
        break;
      case '\0': return args;  /* "-": stdin is the script */
      case 'E':
        if (argv[i][2] != '\0') return has_error;
        args |= has_E;
        break;
      case 'W':
        if (argv[i][2] != '\0') return has_error;
        break;
      case 'h':
        if (argv[i][2] != '\0') return has_error;
        args |= has_help;
        break;
      case 'i':
        args |= has_i;
        /* FALLTHROUGH */
      case 'v':
        if (argv[i][2] != '\0') return has_error;
        if (argv[i][1] == 'v') args |= has_v;
        break;
      case 'e':
        args |= has_e;
        /* FALLTHROUGH */
      case 'l':
        if (argv[i][2] == '\0') {
          i++;
          if (argv[i] == NULL || argv[i][0] == '-') {
            *first = i - 1;
            return has_error;
          }
        }
        break;
      default: return has_error;
    }
  }
  *first = 0;
  return args;
}

/* Run -e, -l and -W in order. Returns 0 when one fails. */
static int runargs(lua_State *L, char **argv, int n) {
  int i;
  for (i = 1; i < n; i++) {
    int option = argv[i][1];
    if (option == '-') {  /* --threads N: skip its value */
      if (strcmp(argv[i], "--threads") == 0) i++;
      continue;
    }
    switch (option) {
      case 'e':
      case 'l': {
        const char *extra = argv[i] + 2;
        int status;
        if (*extra == '\0') extra = argv[++i];
        status = option == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
        if (status != LUA_OK) return 0;
        break;
      }
      case 'W': lua_warning(L, "@on", 0); break;
      default: break;
    }
  }
  return 1;
}

static int handle_luainit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (init == NULL) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (init == NULL) return LUA_OK;
  if (init[0] == '@') return dofile(L, init + 1);
  return dostring(L, init, name);
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int args = (int)lua_tointeger(L, 3);
  int script = (int)lua_tointeger(L, 4);
  int optlim = script > 0 ? script : argc;
  luaL_checkversion(L);
  if (args & has_v) print_version();
  createargtable(L, argv, argc, script);
  if (!(args & has_E) && handle_luainit(L) != LUA_OK) return 0;
  if (!runargs(L, argv, optlim)) return 0;
  if (script > 0 && handle_script(L, argv + script) != LUA_OK) return 0;
  if ((args & has_i) || (script < 1 && !(args & (has_e | has_v)))) {
    int interactive = isatty(STDIN_FILENO);
    if (!(args & has_i) && !interactive) {
      if (dofile(L, NULL) != LUA_OK) return 0;  /* `vlua < file`: run stdin */
    } else {
      if (interactive) {
        if (!(args & has_v)) print_version();
        fputs("Type help() for help, Ctrl-D to exit.\n", stdout);
        fflush(stdout);
      }
      vlua_cli_repl(L, args & has_E);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int parse_threads(const char *what, const char *s, int *out) {
  char *end;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || end == s || *end != '\0' || v < 1 || v > VLUA_MAX_THREADS) {
    fprintf(stderr, "%s: %s: bad thread count '%s' (expected an integer in 1..%d)\n",
            progname, what, s, VLUA_MAX_THREADS);
    return -1;
  }
  *out = (int)v;
  return 0;
}

int main(int argc, char **argv) {
  vlua_Options opts;
  vlua_State *V;
  lua_State *L;
  int script, args, status, result;
  memset(&opts, 0, sizeof opts);
  args = collectargs(argv, &script);
  if (args == has_error) {
    print_usage(stderr, argv[script]);
    return EXIT_FAILURE;
  }
  if (args & has_help) {
    print_usage(stdout, NULL);
    return EXIT_SUCCESS;
  }
  if (args & has_E) {
    opts.flags |= VLUA_OPT_NO_ENV;
  } else {
    const char *mem = getenv("VLUA_MAX_MEMORY");
    const char *thr = getenv("VLUA_NUM_THREADS");
    if (mem && *mem && vlua_parse_size(mem, &opts.memory_limit) != 0) {
      fprintf(stderr, "%s: VLUA_MAX_MEMORY: bad size '%s' (expected bytes, e.g. 1073741824, 512M, 2G)\n",
              progname, mem);
      return EXIT_FAILURE;
    }
    if (thr && *thr && parse_threads("VLUA_NUM_THREADS", thr, &opts.num_threads) != 0)
      return EXIT_FAILURE;
  }
  if (threads_opt && parse_threads("--threads", threads_opt, &opts.num_threads) != 0)
    return EXIT_FAILURE;
  V = vlua_open(&opts);
  if (V == NULL) {
    l_message(progname, vlua_last_error(NULL));
    return EXIT_FAILURE;
  }
  L = vlua_lua_state(V);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushinteger(L, args);
  lua_pushinteger(L, script);
  status = lua_pcall(L, 4, 1, 0);
  result = lua_toboolean(L, -1);
  report(L, status);
  vlua_close(V);
  return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
