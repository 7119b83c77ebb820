-- vl.script — the command-line machinery the experiment scripts share
-- (scripts/train_vit.lua, train_vim.lua, train_video.lua, video_text.lua,
-- train_cnn.lua): flag parsing, usage errors, interrupt detection, --help
-- from the header comment, and the main() wrapper's exits.
--
--   local S = require "vl.script"
--   local o = S.parse_args(argv, FLAGS, DEFAULTS, "train_vit")
--
-- A usage error is a string error (level 0) starting "NAME: "; the scripts'
-- fail handlers print such errors as one line and exit with status 2.
local vl = require "vl"
local fmt = string.format

local S = {}

-- usage(name, msg, ...): raise "name: msg" (formatted) without a position.
function S.usage(name, msg, ...) error(fmt(name .. ": " .. msg, ...), 0) end

-- usage_fn(name) -> function(msg, ...) raising S.usage(name, msg, ...).
function S.usage_fn(name)
  return function(msg, ...) error(fmt(name .. ": " .. msg, ...), 0) end
end

-- uninterruptible(fn) -> function(...) that runs fn(...) in a coroutine
-- made now. vlua's SIGINT hook is set on the main Lua thread when Ctrl-C
-- arrives, and a coroutine created before that has no hook: a call (an
-- optimiser step and its bookkeeping) runs whole or not at all. Errors in
-- fn are raised again (after that the function is spent).
function S.uninterruptible(fn)
  local co = coroutine.create(function(...)
    local args = table.pack(...)
    while true do
      fn(table.unpack(args, 1, args.n))
      args = table.pack(coroutine.yield())
    end
  end)
  return function(...)
    local ok, err = coroutine.resume(co, ...)
    if not ok then error(err, 0) end
  end
end

-- parse_args(argv, flags, defaults, name) -> options.
-- flags: { ["flag-name"] = "bool" | "str" | "int" | "num" }; "--name=value"
-- and "--name value" both work; the option's key is the name with "-"
-- turned into "_". defaults are copied first. Errors (raised as
-- "NAME: ..."): an unknown argument, a value given to a bool, a missing or
-- empty value, a number that is not one (or not an integer for "int").
function S.parse_args(argv, flags, defaults, name)
  local usage = S.usage_fn(name)
  local o = {}
  for k, v in pairs(defaults or {}) do o[k] = v end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local flag, val = a:match("^%-%-([%w%-]+)=(.*)$")
    flag = flag or a:match("^%-%-([%w%-]+)$")
    local kind = flag and flags[flag]
    if not kind then usage("unknown argument '%s' (see --help)", a) end
    if kind == "bool" and val ~= nil then usage("--%s takes no value", flag) end
    if kind ~= "bool" and val == nil then
      i = i + 1
      val = argv[i]
      if val == nil then usage("--%s needs a value", flag) end
    end
    local key = flag:gsub("%-", "_")
    if kind == "bool" then
      o[key] = true
    elseif kind == "str" then
      if val == "" then usage("--%s needs a non-empty value", flag) end
      o[key] = val
    else
      local n = tonumber(val)
      if n == nil or (kind == "int" and math.tointeger(n) == nil) then
        usage("--%s expects %s, got '%s'", flag, kind == "int" and "an integer" or "a number", val)
      end
      o[key] = kind == "int" and math.tointeger(n) or n
    end
    i = i + 1
  end
  return o
end

-- is_interrupt(err): whether err is vlua's SIGINT error ("...interrupted!").
function S.is_interrupt(err)
  return type(err) == "string" and err:match("interrupted!$") ~= nil
end

-- exists(path): whether path can be opened for reading.
function S.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- print_help(path): print the leading "--" comment lines of a script file.
function S.print_help(path)
  local f = io.open(path, "r")
  if f then
    for line in f:lines() do
      if not line:match("^%-%-") then break end
      print((line:gsub("^%-%- ?", "")))
    end
    f:close()
  end
end

-- fail_handler(prefix, ...) -> an xpcall handler: string errors starting
-- with one of the prefixes (Lua patterns, anchored; e.g. "train_vit: ")
-- come back as they are, anything else with a traceback.
function S.fail_handler(...)
  local prefixes = { ... }
  return function(err)
    if type(err) == "string" then
      for _, p in ipairs(prefixes) do
        if err:find("^" .. p) then return err end
      end
    end
    return debug.traceback(tostring(err), 2)
  end
end

-- start(argv, parse, handler, script, hint) -> options, or nil after --help.
-- A usage error goes to stderr and exits with status 2; hint (a function
-- returning a line or nil, e.g. a BLAS tip) is written to stderr before a run.
function S.start(argv, parse, handler, script, hint)
  local ok, o = xpcall(parse, handler, argv)
  if not ok then
    io.stderr:write(o, "\n")
    os.exit(2)
  end
  if o.help then
    S.print_help(script)
    return nil
  end
  local h = hint and hint()
  if h then io.stderr:write(h, "\n") end
  return o
end

-- finish(name, catch_interrupt, ok, r) -> r: the exits after xpcall(run)
-- (call it as S.finish(name, catch, xpcall(run, handler, ...))):
-- with catch_interrupt, an interrupt before training started prints
-- "NAME: interrupted before training started; nothing saved" and exits 130;
-- any other error is written to stderr and exits 1.
function S.finish(name, catch_interrupt, ok, r)
  if not ok and catch_interrupt and S.is_interrupt(r:match("^[^\n]*")) then
    io.stderr:write("\n" .. name .. ": interrupted before training started; nothing saved\n")
    os.exit(130)
  end
  if not ok then
    io.stderr:write(r, "\n")
    os.exit(1)
  end
  return r
end

-- config_of(o, keys) -> the options a checkpoint records.
function S.config_of(o, keys)
  local c = {}
  for _, k in ipairs(keys) do c[k] = o[k] end
  return c
end

-- check_config(saved, o, path, keys, name): error "NAME: PATH was made with
-- other settings (...)" unless the checkpoint's options agree with o.
function S.check_config(saved, o, path, keys, name)
  local diffs = {}
  for _, k in ipairs(keys) do
    if saved[k] ~= o[k] then
      diffs[#diffs + 1] = fmt("%s %s (checkpoint) vs %s", k:gsub("_", "-"), tostring(saved[k]), tostring(o[k]))
    end
  end
  if #diffs > 0 then
    error(fmt("%s: %s was made with other settings (%s); pass the same flags, or --fresh to start over", name,
      path, table.concat(diffs, "; ")), 0)
  end
end

-- resume(o, t) -> history, cur, resumed: the checkpoint half of a training
-- script's start. t = {name, path (the checkpoint), config_keys, load (path ->
-- table), model, optim, sched, threads, epochs, steps, say (fmt, ...)}.
-- --resume (o.resume) without a checkpoint is an error. A checkpoint, unless
-- o.fresh, must match o's settings (check_config); it restores the model,
-- optimizer, scheduler and RNG and reports where the run goes on. history is
-- the epochs already done, cur the position ({epoch, step, order, rng, sums}),
-- resumed {epoch, step} or nil when the run starts afresh.
function S.resume(o, t)
  local say = t.say
  if o.resume and not S.exists(t.path) then
    error(fmt("%s: --resume: no checkpoint at %s", t.name, t.path), 0)
  end
  if not S.exists(t.path) or o.fresh then return {}, { epoch = 0, step = 0, rng = vl.get_rng_state() }, nil end
  local ck = t.load(t.path)
  S.check_config(ck.config or {}, o, t.path, t.config_keys, t.name)
  if ck.threads and ck.threads ~= t.threads then
    say("warning: %s was written with %d threads, this run has %d: the numbers may differ in the last digits",
      t.path, ck.threads, t.threads)
  end
  t.model:load_state_dict(ck.model)
  t.optim:load_state_dict(ck.optim)
  t.sched:load_state_dict(ck.sched)
  local history = ck.history or {}
  local cur = { epoch = ck.epoch, step = ck.step or 0, order = ck.order, rng = ck.rng, sums = ck.sums }
  vl.set_rng_state(ck.rng)
  if cur.step > 0 then
    say("resuming from %s at epoch %d/%d, step %d/%d", t.path, ck.epoch + 1, t.epochs, cur.step, t.steps)
  else
    say("resuming from %s after epoch %d/%d", t.path, ck.epoch, t.epochs)
  end
  for e, h in ipairs(history) do
    say("epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  (from the checkpoint)", e, t.epochs,
      h.train_loss, h.train_acc, h.test_loss, h.test_acc)
  end
  return history, cur, { epoch = ck.epoch, step = cur.step }
end

return S
