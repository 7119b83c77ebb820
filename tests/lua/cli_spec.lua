-- The vlua command: options, arg table, exit status, environment, and the
-- REPL driven through a pipe (including Ctrl-C via kill -INT).
-- Runs $VLUA_BIN (default build/vlua) as a child process.
local vl = require "vl"

local VLUA = os.getenv("VLUA_BIN") or "build/vlua"

-- Variables that would change the outcome are cleared for every run.
local CLEAN = "env -u LUA_INIT -u LUA_INIT_5_4 -u VLUA_PATH -u VLUA_MAX_MEMORY"
  .. " -u VLUA_NUM_THREADS -u LUA_PATH -u LUA_PATH_5_4"

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- run("-e 'print(1)'", {stdin = "...", env = "A=1 B=2"}) -> {out, err, code}
local function run(args, opts)
  opts = opts or {}
  local inp, out, err = os.tmpname(), os.tmpname(), os.tmpname()
  spit(inp, opts.stdin or "")
  local cmd = string.format("%s %s %s %s < %s > %s 2> %s", CLEAN, opts.env or "", q(VLUA),
    args, q(inp), q(out), q(err))
  local _, how, code = os.execute(cmd)
  local r = { out = slurp(out), err = slurp(err), code = code, how = how }
  os.remove(inp)
  os.remove(out)
  os.remove(err)
  return r
end

local function script(text)
  local path = os.tmpname() .. ".lua"
  spit(path, text)
  return path
end

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. q(p)))
  return p
end

describe("vlua command line", function()
  it("-v prints the version of vlua and Lua", function()
    local r = run("-v")
    assert.equals(0, r.code)
    assert.matches("^vlua " .. vl.version:gsub("%.", "%%.") .. " %-%- Lua 5%.4", r.out)
  end)

  it("-h prints the usage and exits 0", function()
    local r = run("-h")
    assert.equals(0, r.code)
    assert.matches("usage: ", r.out)
    assert.matches("%-%-threads N", r.out)
  end)

  it("rejects unknown options and missing arguments with the usage", function()
    local r = run("-q")
    assert.equals(1, r.code)
    assert.matches("unrecognized option '%-q'", r.err)
    assert.matches("usage: ", r.err)
    r = run("-e")
    assert.equals(1, r.code)
    assert.matches("'%-e' needs argument", r.err)
    r = run("--bogus")
    assert.equals(1, r.code)
    assert.matches("unrecognized option '%-%-bogus'", r.err)
  end)

  it("-e runs statements in order", function()
    local r = run("-e 'x = 20' -e 'print(x + 22)'")
    assert.equals(0, r.code)
    assert.equals("42\n", r.out)
  end)

  it("has vl as a global, the same table require returns, and help", function()
    local r = run([[-e "print(vl == require 'vl', type(help), type(package.preload.vl))"]])
    assert.equals("true\tfunction\tfunction\n", r.out)
  end)

  it("-l mod and -l g=mod require a module into a global", function()
    local dir = tmpdir()
    spit(dir .. "/clitestmod.lua", "return { x = 5 }\n")
    local env = "VLUA_PATH=" .. q(dir)
    local r = run("-l clitestmod -e 'print(clitestmod.x)'", { env = env })
    assert.equals(0, r.code, r.err)
    assert.equals("5\n", r.out)
    r = run("-l m=clitestmod -e 'print(m.x, clitestmod)'", { env = env })
    assert.equals("5\tnil\n", r.out)
    r = run("-l no_such_module_xyz")
    assert.equals(1, r.code)
    assert.matches("module 'no_such_module_xyz' not found", r.err)
    os.remove(dir .. "/clitestmod.lua")
    os.remove(dir)
  end)

  it("builds the arg table and passes script arguments as ...", function()
    local s = script("print(select('#', ...), ...)\n"
      .. "print(arg[-4] ~= nil, arg[-3], arg[-2], arg[0] == ARG0, arg[1], arg[2], #arg)\n")
    local r = run("-W -e " .. q("ARG0 = " .. string.format("%q", s)) .. " " .. q(s) .. " one two")
    assert.equals(0, r.code, r.err)
    assert.equals("2\tone\ttwo\ntrue\t-W\t-e\ttrue\tone\ttwo\t2\n", r.out)
    os.remove(s)
  end)

  it("runs stdin with - (and passes the arguments)", function()
    local r = run("- a b", { stdin = "print(arg[0], ...)" })
    assert.equals(0, r.code, r.err)
    assert.equals("-\ta\tb\n", r.out)
  end)

  it("runs piped stdin as a script when there are no arguments", function()
    local r = run("", { stdin = "local x = 1\nprint(x + 1)\n" })
    assert.equals(0, r.code, r.err)
    assert.equals("2\n", r.out)
  end)

  it("-- stops option handling", function()
    local s = script("print(...)")
    local r = run("-- " .. q(s) .. " -e")
    assert.equals(0, r.code, r.err)
    assert.equals("-e\n", r.out)
    os.remove(s)
  end)

  it("exits non-zero with the message and a traceback on error", function()
    local s = script("local function inner()\n  error('kaboom')\nend\nlocal function outer() inner() end\nouter()\n")
    local r = run(q(s))
    assert.equals(1, r.code)
    assert.equals("", r.out)
    assert.matches(":2: kaboom", r.err, 1, true)
    assert.matches("stack traceback:", r.err, 1, true)
    assert.matches("inner", r.err, 1, true)
    assert.matches("outer", r.err, 1, true)
    os.remove(s)
    r = run("-e 'error(\"from e\")'")
    assert.equals(1, r.code)
    assert.matches("(command line):1: from e", r.err, 1, true)
    r = run("-e 'x = = 1'")
    assert.equals(1, r.code)
    assert.matches("near '='", r.err, 1, true)
    r = run(q("/nonexistent/script.lua"))
    assert.equals(1, r.code)
    assert.matches("cannot open /nonexistent/script.lua", r.err, 1, true)
  end)

  it("reports vl errors from scripts with the op's message", function()
    local r = run("-e 'vl.ones(2, 3):matmul(vl.ones(2, 3))'")
    assert.equals(1, r.code)
    assert.matches("matmul", r.err, 1, true)
    assert.matches("stack traceback:", r.err, 1, true)
  end)

  it("os.exit sets the exit status", function()
    assert.equals(3, run("-e 'os.exit(3)'").code)
    assert.equals(0, run("-e 'os.exit(true)'").code)
    assert.equals(1, run("-e 'os.exit(false)'").code)
    assert.equals(7, run("-e 'os.exit(7, true)'").code)
  end)

  it("-W turns warnings on", function()
    local r = run("-W -e 'warn(\"careful\")'")
    assert.matches("Lua warning: careful", r.err, 1, true)
    r = run("-e 'warn(\"careful\")'")
    assert.equals("", r.err)
  end)
end)

describe("vlua environment and threads", function()
  it("--threads N sets the thread count", function()
    assert.equals("2\n", run("--threads 2 -e 'print(vl.get_num_threads())'").out)
    assert.equals("1\n", run("--threads=1 -e 'print(vl.get_num_threads())'").out)
    local r = run("--threads 2 -e 'print(arg[1], arg[2])'")
    assert.equals("--threads\t2\n", r.out)
  end)

  it("rejects a bad thread count", function()
    for _, bad in ipairs({ "0", "abc", "-3", "99999", "2x" }) do
      local r = run("--threads=" .. q(bad) .. " -e 'print(1)'")
      assert.equals(1, r.code, bad)
      assert.matches("bad thread count", r.err, 1, true)
    end
    local r = run("--threads")
    assert.equals(1, r.code)
    assert.matches("needs a thread count", r.err, 1, true)
  end)

  it("VLUA_NUM_THREADS sets it too; --threads wins", function()
    assert.equals("2\n", run("-e 'print(vl.get_num_threads())'", { env = "VLUA_NUM_THREADS=2" }).out)
    assert.equals("1\n", run("--threads 1 -e 'print(vl.get_num_threads())'",
      { env = "VLUA_NUM_THREADS=2" }).out)
    local r = run("-e 'print(1)'", { env = "VLUA_NUM_THREADS=many" })
    assert.equals(1, r.code)
    assert.matches("VLUA_NUM_THREADS: bad thread count 'many'", r.err, 1, true)
  end)

  it("VLUA_MAX_MEMORY caps tensors and the Lua heap", function()
    local r = run("-e 'print(vl.memory_limit())'", { env = "VLUA_MAX_MEMORY=64M" })
    assert.equals(tostring(64 * 1024 * 1024) .. "\n", r.out)
    r = run("-e 'local t = {} for i = 1, 1e9 do t[i] = i end'", { env = "VLUA_MAX_MEMORY=32M" })
    assert.equals("exit", r.how)  -- an error, not a kill
    assert.equals(1, r.code)
    assert.matches("not enough memory", r.err, 1, true)
    r = run("-e 'x = vl.zeros(1024, 1024, 64)'", { env = "VLUA_MAX_MEMORY=32M" })
    assert.equals(1, r.code)
    assert.matches("stack traceback:", r.err, 1, true)
    r = run("-e 'print(1)'", { env = "VLUA_MAX_MEMORY=lots" })
    assert.equals(1, r.code)
    assert.matches("VLUA_MAX_MEMORY: bad size 'lots'", r.err, 1, true)
  end)

  it("honours LUA_INIT_5_4, then LUA_INIT (also @file)", function()
    assert.equals("1\n", run("-e 'print(init_ran)'", { env = "LUA_INIT='init_ran = 1'" }).out)
    assert.equals("54\n", run("-e 'print(init_ran)'",
      { env = "LUA_INIT='init_ran = 1' LUA_INIT_5_4='init_ran = 54'" }).out)
    local s = script("init_ran = 'file'")
    assert.equals("file\n", run("-e 'print(init_ran)'", { env = "LUA_INIT=@" .. q(s) }).out)
    os.remove(s)
    local r = run("-e 'print(1)'", { env = "LUA_INIT='error(\"bad init\")'" })
    assert.equals(1, r.code)
    assert.matches("bad init", r.err, 1, true)
  end)

  it("-E ignores LUA_INIT, VLUA_PATH, VLUA_MAX_MEMORY and VLUA_NUM_THREADS", function()
    local r = run("-E -e 'print(init_ran, vl.memory_limit())'",
      { env = "LUA_INIT='init_ran = 1' VLUA_MAX_MEMORY=lots VLUA_NUM_THREADS=x" })
    assert.equals(0, r.code, r.err)
    assert.equals("nil\t0\n", r.out)
    r = run("-E -e 'print((package.path:find(\"vlua_e_dir\", 1, true)))'", { env = "VLUA_PATH=/vlua_e_dir" })
    assert.equals("nil\n", r.out)
  end)

  it("finds modules through VLUA_PATH (directories and ?-patterns)", function()
    local dir = tmpdir()
    spit(dir .. "/vpmod.lua", "return 'plain dir'\n")
    assert(os.execute("mkdir -p " .. q(dir .. "/pkg")))
    spit(dir .. "/pkg/init.lua", "return 'init file'\n")
    spit(dir .. "/pat_vpmod2.lua", "return 'pattern'\n")
    local env = "VLUA_PATH=" .. q("/nonexistent;" .. dir .. ";" .. dir .. "/pat_?.lua")
    local r = run("-e 'print((require \"vpmod\"), (require \"pkg\"), (require \"vpmod2\"))'", { env = env })
    assert.equals(0, r.code, r.err)
    assert.equals("plain dir\tinit file\tpattern\n", r.out)
    os.remove(dir .. "/vpmod.lua")
    os.remove(dir .. "/pkg/init.lua")
    os.remove(dir .. "/pkg")
    os.remove(dir .. "/pat_vpmod2.lua")
    os.remove(dir)
  end)

  it("puts the stdlib next to the binary on package.path, before Lua's defaults", function()
    local r = run("-e 'print(package.path)'")
    local exe = VLUA:match("^/") and VLUA or (assert(io.popen("pwd")):read("l") .. "/" .. VLUA)
    local root = exe:gsub("/[^/]+/[^/]+$", "")  -- build/vlua -> the checkout
    local p = r.out
    local at = p:find(root .. "/stdlib/?.lua;", 1, true)
    assert.is_truthy(at, p)
    assert.is_truthy(p:find(root .. "/stdlib/?/init.lua", 1, true))
    local default = p:find("/usr/share/lua/5.4/?.lua", 1, true)
    assert.is_truthy(not default or at < default)
  end)
end)

describe("vlua REPL on a pipe", function()
  it("prints expression values, no prompts, and survives errors", function()
    local r = run("-i", {
      stdin = table.concat({
        "1 + 1",
        "'a', nil, 3",
        "x = 5",
        "x * 2",
        "=x",
        "error('oops')",
        "print('after')",
        "",
      }, "\n"),
    })
    assert.equals(0, r.code)
    assert.equals("2\na\tnil\t3\n10\n5\nafter\n", r.out)
    assert.matches("stdin:1: oops", r.err, 1, true)
    assert.matches("stack traceback:", r.err, 1, true)
  end)

  it("shows short plain sequences such as shapes by their contents", function()
    local r = run("-i", { stdin = "vl.ones(2, 3):size()\n{1, 'a', true}\n{{1}}\n" })
    assert.equals(0, r.code)
    assert.equals("{2, 3}\n{1, \"a\", true}\n", r.out:match("^(.-\n.-\n)"))
    assert.matches("^table: ", r.out:match("\n.-\n(.*)$"))
  end)

  it("accepts multi-line definitions", function()
    local r = run("-i", {
      stdin = "function sq(x)\n  local y = x * x\n  return y\nend\nsq(7)\nt = {\n  1,\n  2,\n}\nprint(#t)\n",
    })
    assert.equals(0, r.code, r.err)
    assert.equals("49\n2\n", r.out)
    assert.equals("", r.err)
  end)

  it("reports an unfinished chunk at end of input", function()
    local r = run("-i", { stdin = "function f()\n  return 1\n" })
    assert.equals(0, r.code)
    assert.matches("'end' expected", r.err, 1, true)
  end)

  it("prints tensors through __tostring and help() docs", function()
    local r = run("-i", { stdin = "x = vl.ones(2)\nx\nhelp(vl.ones)\nhelp(x)\nhelp()\nhelp('zeros')\n" })
    assert.equals(0, r.code, r.err)
    assert.matches("tensor([1., 1.])", r.out, 1, true)
    assert.matches("vl.ones(", r.out, 1, true)
    assert.matches("shape [2]", r.out, 1, true)
    assert.matches("dtype float32", r.out, 1, true)
    assert.matches("Methods", r.out, 1, true)
    assert.matches("help(vl.matmul)", r.out, 1, true)
    assert.matches("vl.zeros(", r.out, 1, true)
  end)

  it("runs -e first, then the REPL with -i", function()
    local r = run("-e 'y = 6' -i", { stdin = "y * 7\n" })
    assert.equals("42\n", r.out)
  end)

  it("Ctrl-C (SIGINT) stops a running loop and the session goes on", function()
    local pidfile = os.tmpname()
    local out, err = os.tmpname(), os.tmpname()
    local feeder = string.format(
      "{ echo 'n = 0 while true do n = n + 1 end'; sleep 2; kill -INT $(cat %s); sleep 0.5;"
        .. " echo 'print(\"survived\", n > 0)'; }",
      q(pidfile))
    local cmd = string.format("%s | %s PIDF=%s VB=%s sh -c 'echo $$ > \"$PIDF\"; exec \"$VB\" -i' > %s 2> %s",
      feeder, CLEAN, q(pidfile), q(VLUA), q(out), q(err))
    local _, how, code = os.execute(cmd)
    local o, e = slurp(out), slurp(err)
    os.remove(pidfile)
    os.remove(out)
    os.remove(err)
    assert.equals("exit", how)
    assert.equals(0, code)
    assert.matches("interrupted!", e, 1, true)
    assert.equals("survived\ttrue\n", o)
  end)
end)
