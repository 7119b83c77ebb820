/*
** repl.c — the vlua read-eval-print loop and the SIGINT handling shared
** with main.c.
**
** On a terminal: GNU readline (callback interface, so that Ctrl-C at the
** prompt only clears the line), persistent history, TAB completion of
** globals, table fields (vl.ma<TAB>, a.b.c<TAB>) and methods (x:<TAB>).
** On a pipe: plain lines, no prompts, no banner; results on stdout, errors
** on stderr.
**
** Semantics follow lua.c: a line is first compiled as "return <line>;" so
** that an expression prints its values; a chunk whose syntax error ends at
** "<eof>" is incomplete and asks for a continuation line. A SIGINT while
** Lua code runs sets a hook that raises "interrupted!" at the next
** instruction (lua.c's lstop technique); the session survives.
*/
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "../ops/vl.h"
#include "bind.h"
#include "vlua.h"

#define VLUA_PROMPT "> "             /* default _PROMPT */
#define VLUA_PROMPT2 ">> "           /* default _PROMPT2 (continuation) */
#define VLUA_HISTORY_FILE ".vlua_history"
#define VLUA_HISTORY_MAX 1000        /* entries kept in memory and in the file */
#define VLUA_COMPLETE_MAX 4096       /* most candidates one TAB gathers */
#define VLUA_COMPLETE_DEPTH 8        /* __index tables followed per value */

/* Shared with main.c. */
int vlua_cli_docall(lua_State *L, int narg, int nres);
void vlua_cli_repl(lua_State *L, int noenv);

/* ===================================================================== */
/* Signals                                                                */
/* ===================================================================== */

static lua_State *globalL;                    /* the state laction hooks */
static volatile sig_atomic_t prompt_sigint;   /* Ctrl-C while reading */
static volatile sig_atomic_t got_winch;       /* terminal resized */
static volatile sig_atomic_t run_sigint;      /* Ctrl-C while Lua code ran */
static void (*idle_sigint)(int) = SIG_DFL;    /* SIGINT outside docall */

static void setsignal(int sig, void (*handler)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, NULL);
}

static void lstop(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* A signal handler may not touch the state; lua_sethook is the one call
   documented as safe here. A second Ctrl-C (before the hook runs, e.g.
   inside a long C kernel) gets the default action and ends the process. */
static void laction(int sig) {
  int flags = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  setsignal(sig, SIG_DFL, 0);
  run_sigint = 1;
  lua_sethook(globalL, lstop, flags, 1);
}

static void on_prompt_sigint(int sig) {
  (void)sig;
  prompt_sigint = 1;
}

static void on_winch(int sig) {
  (void)sig;
  got_winch = 1;
}

int vlua_cli_docall(lua_State *L, int narg, int nres) {
  int status;
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, vlua_msghandler);
  lua_insert(L, base);
  globalL = L;
  setsignal(SIGINT, laction, 0);
  status = lua_pcall(L, narg, nres, base);
  setsignal(SIGINT, idle_sigint, 0);
  if (lua_gethook(L) == lstop) lua_sethook(L, NULL, 0, 0);  /* Ctrl-C just too late */
  lua_remove(L, base);
  return status;
}

/* ===================================================================== */
/* Reading lines                                                          */
/* ===================================================================== */

enum { READ_OK, READ_EOF, READ_INTR };

static int tty;            /* stdin is a terminal: readline, prompts, history */
static lua_State *replL;   /* for the completion callback */
static char *cb_line;      /* what the readline callback handed over */
static int cb_done;

static void cb_handler(char *line) {
  cb_line = line;
  cb_done = 1;
  rl_callback_handler_remove();
}

static int read_tty(const char *prompt, char **out) {
  int fd = fileno(rl_instream ? rl_instream : stdin);
  cb_line = NULL;
  cb_done = 0;
  prompt_sigint = 0;
  fflush(stdout);
  rl_callback_handler_install(prompt, cb_handler);
  while (!cb_done) {
    fd_set fds;
    int r;
    if (prompt_sigint) {  /* Ctrl-C: drop the line, start a fresh prompt */
      FILE *o = rl_outstream ? rl_outstream : stdout;
      prompt_sigint = 0;
      rl_point = rl_end;  /* show the dropped line whole, then "^C" */
      rl_redisplay();
      fputs("^C\n", o);
      fflush(o);
      rl_callback_sigcleanup();
      rl_replace_line("", 0);
      rl_callback_handler_remove();
      return READ_INTR;
    }
    if (got_winch) {
      got_winch = 0;
      rl_resize_terminal();
    }
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    r = select(fd + 1, &fds, NULL, NULL, NULL);
    if (r < 0) {
      if (errno == EINTR) continue;
      rl_callback_handler_remove();
      return READ_EOF;
    }
    rl_callback_read_char();
  }
  if (cb_line == NULL) {  /* Ctrl-D on an empty line */
    /* readline (8.1+) ends every later line with an extra newline once
       it has seen EOF: a continuation-prompt Ctrl-D does not end the REPL. */
    rl_eof_found = 0;
    RL_UNSETSTATE(RL_STATE_EOF);
    return READ_EOF;
  }
  *out = cb_line;
  return READ_OK;
}

static int read_pipe(char **out) {
  char *line = NULL;
  size_t cap = 0;
  for (;;) {
    ssize_t n;
    errno = 0;
    n = getline(&line, &cap, stdin);
    if (n >= 0) {
      if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
      *out = line;
      return READ_OK;
    }
    if (errno == EINTR) {
      clearerr(stdin);
      if (prompt_sigint) {
        prompt_sigint = 0;
        free(line);
        return READ_INTR;
      }
      continue;
    }
    free(line);
    return READ_EOF;
  }
}

static const char *get_prompt(lua_State *L, int firstline) {
  const char *p = NULL;
  int t = lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2");
  if (t == LUA_TSTRING || t == LUA_TNUMBER) p = lua_tostring(L, -1);
  lua_pop(L, 1);  /* the global keeps the string alive */
  return p ? p : (firstline ? VLUA_PROMPT : VLUA_PROMPT2);
}

/* Read a line and push it; READ_OK, READ_EOF or READ_INTR. */
static int pushline(lua_State *L, int firstline) {
  char *line = NULL;
  int r = tty ? read_tty(get_prompt(L, firstline), &line) : read_pipe(&line);
  if (r != READ_OK) return r;
  if (firstline && line[0] == '=')  /* Lua 5.2 compatibility: "=x" */
    lua_pushfstring(L, "return %s", line + 1);
  else
    lua_pushstring(L, line);
  free(line);
  return READ_OK;
}

/* ===================================================================== */
/* History                                                                */
/* ===================================================================== */

static char hist_path[PATH_MAX];
static int hist_on;

static void history_open(int noenv) {
  const char *env = noenv ? NULL : getenv("VLUA_HISTORY");
  using_history();
  stifle_history(VLUA_HISTORY_MAX);
  if (env != NULL) {
    if (env[0] == '\0' || strlen(env) >= sizeof hist_path) return;  /* "" = no file */
    strcpy(hist_path, env);
  } else {
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0') {
      struct passwd *pw = getpwuid(getuid());
      home = pw ? pw->pw_dir : NULL;
    }
    if (home == NULL) return;
    if (snprintf(hist_path, sizeof hist_path, "%s/%s", home, VLUA_HISTORY_FILE) >=
        (int)sizeof hist_path)
      return;
  }
  hist_on = 1;
  history_truncate_file(hist_path, VLUA_HISTORY_MAX);  /* failures ignored */
  read_history(hist_path);
}

static void history_save(const char *line) {
  HIST_ENTRY *last;
  if (!tty || line[strspn(line, " \t\n")] == '\0') return;
  last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
  if (last && strcmp(last->line, line) == 0) return;
  add_history(line);
  if (hist_on && append_history(1, hist_path) != 0) {
    struct stat st;
    if (stat(hist_path, &st) != 0) write_history(hist_path);  /* first entry: create it */
  }
}

static void history_close(void) {
  if (hist_on) history_truncate_file(hist_path, VLUA_HISTORY_MAX);
}

/* ===================================================================== */
/* Completion                                                             */
/* ===================================================================== */

typedef struct Cands {
  char **v;
  size_t n, cap;
  const char *text;
} Cands;

static Cands cands;
static size_t cand_next;

static const char *const keywords[] = {
    "and",   "break", "do",   "else", "elseif", "end",   "false",  "for",  "function", "goto",
    "if",    "in",    "local", "nil", "not",    "or",    "repeat", "return", "then",   "true",
    "until", "while", NULL};

static int is_ident(const char *s, size_t n) {
  size_t i;
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

static void cand_add(Cands *c, const char *prefix, size_t plen, const char *name, size_t nlen) {
  char *s;
  size_t i;
  if (c->n >= VLUA_COMPLETE_MAX) return;
  for (i = 0; i < c->n; i++)  /* e.g. a key shadowed along an __index chain */
    if (strlen(c->v[i]) == plen + nlen && memcmp(c->v[i], prefix, plen) == 0 &&
        memcmp(c->v[i] + plen, name, nlen) == 0)
      return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 64;
    char **v = (char **)realloc(c->v, cap * sizeof *v);
    if (v == NULL) return;
    c->v = v;
    c->cap = cap;
  }
  s = (char *)malloc(plen + nlen + 1);
  if (s == NULL) return;
  memcpy(s, prefix, plen);
  memcpy(s + plen, name, nlen);
  s[plen + nlen] = '\0';
  c->v[c->n++] = s;
}

/* Add the identifier keys of the table at idx that start with partial. */
static void collect_keys(lua_State *L, int idx, Cands *c, const char *prefix, size_t plen,
                         const char *partial, int functions_only) {
  size_t pl = strlen(partial);
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t kl;
      const char *k = lua_tolstring(L, -2, &kl);
      if (kl >= pl && memcmp(k, partial, pl) == 0 && is_ident(k, kl) &&
          (k[0] != '_' || partial[0] == '_')) {
        int ok = !functions_only || lua_isfunction(L, -1);
        if (!ok && luaL_getmetafield(L, -1, "__call") != LUA_TNIL) {  /* callable object */
          ok = 1;
          lua_pop(L, 1);
        }
        if (ok) cand_add(c, prefix, plen, k, kl);
      }
    }
    lua_pop(L, 1);
  }
}

/* Candidates from the value at idx: its own keys (a table), then its
   metatable's __index tables; a tensor lists its methods (and, after a
   '.', its properties). */
static void collect_value(lua_State *L, int idx, Cands *c, const char *prefix, size_t plen,
                          const char *partial, int functions_only) {
  int depth;
  idx = lua_absindex(L, idx);
  lua_pushvalue(L, idx);
  for (depth = 0; depth < VLUA_COMPLETE_DEPTH; depth++) {
    int tensor = 0;
    if (lua_istable(L, -1)) collect_keys(L, -1, c, prefix, plen, partial, functions_only);
    if (!lua_getmetatable(L, -1)) break;
    luaL_getmetatable(L, VLUA_TENSOR_MT);
    tensor = lua_rawequal(L, -1, -2) && !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (tensor) {
      lua_getfield(L, LUA_REGISTRYINDEX, VLUA_REG_METHODS);
      if (lua_istable(L, -1)) collect_keys(L, -1, c, prefix, plen, partial, functions_only);
      lua_pop(L, 1);
      if (!functions_only) {
        lua_getfield(L, LUA_REGISTRYINDEX, "vl.properties");
        if (lua_istable(L, -1)) collect_keys(L, -1, c, prefix, plen, partial, 0);
        lua_pop(L, 1);
      }
    }
    if (lua_getfield(L, -1, "__index") != LUA_TTABLE) {
      lua_pop(L, 2);
      break;
    }
    lua_remove(L, -2);  /* metatable */
    lua_remove(L, -2);  /* previous value */
  }
  lua_settop(L, idx);
}

static int p_gather(lua_State *L) {
  Cands *c = (Cands *)lua_touserdata(L, 1);
  const char *text = c->text;
  const char *dot = strrchr(text, '.'), *colon = strrchr(text, ':');
  const char *sep = dot > colon ? dot : colon;
  const char *p;
  if (sep == NULL) {
    int i;
    size_t tl = strlen(text);
    for (i = 0; keywords[i]; i++)
      if (strncmp(keywords[i], text, tl) == 0) cand_add(c, "", 0, keywords[i], strlen(keywords[i]));
    lua_pushglobaltable(L);
    collect_value(L, -1, c, "", 0, text, 0);
    return 0;
  }
  /* Walk a.b.c up to the separator. */
  lua_pushglobaltable(L);
  for (p = text; p < sep;) {
    const char *end = memchr(p, '.', (size_t)(sep - p));
    size_t n;
    if (end == NULL) end = sep;
    n = (size_t)(end - p);
    if (!is_ident(p, n)) return 0;
    if (!lua_istable(L, -1) && !lua_isuserdata(L, -1) && !lua_isstring(L, -1)) return 0;
    lua_pushlstring(L, p, n);
    lua_gettable(L, -2);  /* may run an __index (protected by the caller) */
    lua_remove(L, -2);
    if (lua_isnil(L, -1)) return 0;
    p = end + 1;
  }
  collect_value(L, -1, c, text, (size_t)(sep - text) + 1, sep + 1, *sep == ':');
  return 0;
}

static char *generator(const char *text, int state) {
  (void)text;
  if (state == 0) cand_next = 0;
  if (cand_next < cands.n) {
    char *s = cands.v[cand_next];
    cands.v[cand_next++] = NULL;  /* readline frees what we return */
    return s;
  }
  return NULL;
}

static void cands_free(void) {
  size_t i;
  for (i = 0; i < cands.n; i++) free(cands.v[i]);
  free(cands.v);
  memset(&cands, 0, sizeof cands);
}

/* Where the string literal holding position `end` starts, or -1 (short
   strings only; a "--" comment outside strings stops the scan). */
static int string_start(const char *buf, int end) {
  int i, q = -1;
  char quote = 0;
  for (i = 0; i < end; i++) {
    char ch = buf[i];
    if (quote) {
      if (ch == '\\') i++;
      else if (ch == quote) quote = 0;
    } else if (ch == '"' || ch == '\'') {
      quote = ch;
      q = i;
    } else if (ch == '-' && buf[i + 1] == '-') {
      return -1;
    }
  }
  return quote ? q : -1;
}

/* File names completing `full` (the string typed so far); readline's word
   is the tail of it after the last break character ("/"), so the first
   `strip` bytes are cut off each match. Directories get a "/". */
static void file_cands(const char *full, size_t strip) {
  char *m;
  int state = 0;
  while ((m = rl_filename_completion_function(full, state++)) != NULL) {
    struct stat st;
    size_t n = strlen(m);
    if (n >= strip) {
      int dir = stat(m, &st) == 0 && S_ISDIR(st.st_mode);
      cand_add(&cands, m + strip, n - strip, "/", dir ? 1 : 0);
    }
    free(m);
  }
}

static char **complete(const char *text, int start, int end) {
  lua_State *L = replL;
  char **matches;
  int top, q;
  rl_attempted_completion_over = 1;
  rl_completion_append_character = '\0';
  cands_free();
  q = string_start(rl_line_buffer, end);
  if (q >= 0) {  /* inside a string literal: file names */
    char *full;
    if (start < q + 1) return NULL;
    full = strndup(rl_line_buffer + q + 1, (size_t)(end - q - 1));
    if (full == NULL) return NULL;
    file_cands(full, (size_t)(start - q - 1));
    free(full);
  } else if (L != NULL) {
    cands.text = text;
    top = lua_gettop(L);
    if (lua_checkstack(L, 2 * VLUA_COMPLETE_DEPTH + 16)) {
      lua_pushcfunction(L, p_gather);
      lua_pushlightuserdata(L, &cands);
      lua_pcall(L, 1, 0, 0);  /* an error just means fewer candidates */
    }
    lua_settop(L, top);
  }
  matches = cands.n ? rl_completion_matches(text, generator) : NULL;
  cands_free();
  return matches;
}

/* ===================================================================== */
/* The loop                                                               */
/* ===================================================================== */

#define EOFMARK "<eof>"
#define EOFMARK_LEN (sizeof(EOFMARK) - 1)

/* A syntax error ending at <eof>: the chunk is incomplete (pops the message). */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= EOFMARK_LEN && strcmp(msg + lmsg - EOFMARK_LEN, EOFMARK) == 0) {
      lua_pop(L, 1);
      return 1;
    }
  }
  return 0;
}

/* Compile the line at the top as "return <line>;". On success the chunk
   replaces nothing: it is pushed above the line. */
static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);  /* the "return" text */
    history_save(line);
  } else {
    lua_pop(L, 2);
  }
  return status;
}

/* Compile the line at index 1, reading continuation lines while the chunk
   is incomplete. Returns the load status (chunk or message on top), or
   -2 when Ctrl-C dropped the chunk. */
static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    int r;
    if (!incomplete(L, status)) {
      history_save(line);
      return status;
    }
    r = pushline(L, 0);
    if (r == READ_INTR) return -2;
    if (r == READ_EOF) {  /* report the incomplete chunk */
      history_save(line);
      return luaL_loadbuffer(L, line, len, "=stdin");
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* -1: end of input; -2: interrupted (nothing to run); else load status
   with the chunk or the message as the only stack value. */
static int loadline(lua_State *L) {
  int status, r;
  lua_settop(L, 0);
  r = pushline(L, 1);
  if (r == READ_EOF) return -1;
  if (r == READ_INTR) return -2;
  if ((status = addreturn(L)) != LUA_OK) status = multiline(L);
  if (status == -2) {
    lua_settop(L, 0);
    return -2;
  }
  lua_remove(L, 1);
  return status;
}

/* Sequences this short, of plain values and without a __tostring, print
   their contents ({2, 3}) instead of an address: shapes read at a glance. */
#define REPL_SHOW_SEQUENCE_MAX 16

static bool show_sequence(lua_State *L, int i) {
  if (!lua_istable(L, i) || luaL_getmetafield(L, i, "__tostring") != LUA_TNIL) {
    if (lua_istable(L, i)) lua_pop(L, 1);
    return false;
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, i);
  if (n == 0 || n > REPL_SHOW_SEQUENCE_MAX) return false;
  lua_pushnil(L);
  lua_Integer keys = 0;
  while (lua_next(L, i)) {
    int t = lua_type(L, -1);
    lua_pop(L, 1);
    if (++keys > n || (t != LUA_TNUMBER && t != LUA_TBOOLEAN && t != LUA_TSTRING)) {
      lua_pop(L, 1);
      return false;
    }
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addchar(&b, '{');
  for (lua_Integer k = 1; k <= n; k++) {
    if (k > 1) luaL_addstring(&b, ", ");
    lua_rawgeti(L, i, k);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushfstring(L, "\"%s\"", lua_tostring(L, -1));
      lua_remove(L, -2);
    } else {
      luaL_tolstring(L, -1, NULL);
      lua_remove(L, -2);
    }
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '}');
  luaL_pushresult(&b);
  return true;
}

static int p_print(lua_State *L) {
  int n = lua_gettop(L), i;
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s = show_sequence(L, i) ? lua_tolstring(L, -1, &len) : luaL_tolstring(L, i, &len);
    if (i > 1) lua_writestring("\t", 1);
    lua_writestring(s, len);
    lua_pop(L, 1);
  }
  lua_writeline();
  return 0;
}

static void report(lua_State *L, int status) {
  if (tty && run_sigint) fputs("\n", stderr);  /* after the terminal's "^C" */
  run_sigint = 0;
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_pop(L, 1);
  }
}

void vlua_cli_repl(lua_State *L, int noenv) {
  int status;
  tty = isatty(STDIN_FILENO);
  replL = L;
  globalL = L;
  if (tty) {
    static const char breaks[] = " \t\n\"\\'`@$><=;|&{(+-*/%^#~,)[]}";
    rl_readline_name = "vlua";
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = breaks;
    rl_completer_word_break_characters = breaks;
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    history_open(noenv);
    setsignal(SIGWINCH, on_winch, SA_RESTART);
  }
  idle_sigint = on_prompt_sigint;
  setsignal(SIGINT, idle_sigint, 0);
  while ((status = loadline(L)) != -1) {
    if (status == -2) continue;
    if (status == LUA_OK) status = vlua_cli_docall(L, 0, LUA_MULTRET);
    if (status == LUA_OK) {
      int n = lua_gettop(L);
      if (n > 0) {
        luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
        lua_pushcfunction(L, p_print);
        lua_insert(L, 1);
        status = vlua_cli_docall(L, n, 0);
      }
    }
    report(L, status);
  }
  lua_settop(L, 0);
  idle_sigint = SIG_DFL;
  setsignal(SIGINT, SIG_DFL, 0);
  if (tty) {
    const char *bp = rl_variable_value("enable-bracketed-paste");
    setsignal(SIGWINCH, SIG_DFL, 0);
    history_close();
    if (bp == NULL || strcmp(bp, "on") != 0) lua_writeline();  /* else readline did */
  }
  replL = NULL;
}
