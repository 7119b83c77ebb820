-- script_spec.lua — vl.script, the command-line machinery of the training
-- scripts: parse_args (values, defaults, both flag forms, its usage errors),
-- is_interrupt, exists, fail_handler, config_of and check_config.
local S = require "vl.script"

local FLAGS = { epochs = "int", lr = "num", out = "str", quiet = "bool", ["eval-batch"] = "int" }
local DEFAULTS = { epochs = 10, lr = 0.002, quiet = false }

local function parse(argv) return S.parse_args(argv, FLAGS, DEFAULTS, "demo") end

local function err_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok)
  return err
end

describe("vl.script.parse_args", function()
  it("fills in the defaults and leaves them alone", function()
    local o = parse({})
    assert.are.equal(10, o.epochs)
    assert.are.equal(0.002, o.lr)
    assert.is_false(o.quiet)
    assert.is_nil(o.out)
    assert.are.equal(10, DEFAULTS.epochs)
  end)

  it("takes --name value and --name=value, turning - into _", function()
    local o = parse({ "--epochs", "3", "--lr=0.5", "--out", "a.safetensors", "--quiet", "--eval-batch=7" })
    assert.are.equal(3, o.epochs)
    assert.are.equal("integer", math.type(o.epochs))
    assert.are.equal(0.5, o.lr)
    assert.are.equal("a.safetensors", o.out)
    assert.is_true(o.quiet)
    assert.are.equal(7, o.eval_batch)
    assert.are.equal(2, parse({ "--epochs", "2.0" }).epochs)
    assert.are.equal("integer", math.type(parse({ "--epochs", "2.0" }).epochs))
    assert.are.equal(1e-3, parse({ "--lr", "1e-3" }).lr)
  end)

  it("reports usage errors with the script's name and no position", function()
    assert.are.equal("demo: unknown argument '--nope' (see --help)", err_of(parse, { "--nope" }))
    assert.are.equal("demo: unknown argument 'file' (see --help)", err_of(parse, { "file" }))
    assert.are.equal("demo: --quiet takes no value", err_of(parse, { "--quiet=1" }))
    assert.are.equal("demo: --epochs needs a value", err_of(parse, { "--epochs" }))
    assert.are.equal("demo: --out needs a non-empty value", err_of(parse, { "--out=" }))
    assert.are.equal("demo: --epochs expects an integer, got '2.5'", err_of(parse, { "--epochs", "2.5" }))
    assert.are.equal("demo: --lr expects a number, got 'x'", err_of(parse, { "--lr=x" }))
  end)

  it("usage and usage_fn raise formatted errors without a position", function()
    assert.are.equal("demo: --x must be at least 1, got 0", err_of(S.usage, "demo", "--%s must be at least 1, got %d",
      "x", 0))
    assert.are.equal("t: bad 3", err_of(S.usage_fn("t"), "bad %d", 3))
  end)
end)

describe("vl.script helpers", function()
  it("is_interrupt recognises vlua's SIGINT error only", function()
    assert.is_true(S.is_interrupt("interrupted!"))
    assert.is_true(S.is_interrupt("scripts/x.lua:3: interrupted!"))
    assert.is_false(S.is_interrupt("interrupted! later"))
    assert.is_false(S.is_interrupt("some other error"))
    assert.is_false(S.is_interrupt(nil))
    assert.is_false(S.is_interrupt({}))
  end)

  it("exists tells an openable file from a missing one", function()
    local path = os.tmpname()
    assert.is_true(S.exists(path))
    os.remove(path)
    assert.is_false(S.exists(path))
  end)

  it("fail_handler keeps prefixed messages and adds a traceback to the rest", function()
    local h = S.fail_handler("demo: ", "other: ")
    assert.are.equal("demo: bad", h("demo: bad"))
    assert.are.equal("other: bad", h("other: bad"))
    local t = h("boom")
    assert.is_truthy(t:find("^boom\nstack traceback:"))
    assert.is_truthy(h({}):find("stack traceback:", 1, true))
  end)

  it("uninterruptible runs each call whole in a hookless coroutine, passing arguments and errors", function()
    local seen = {}
    local step = S.uninterruptible(function(a, b, c)
      seen[#seen + 1] = { a, b, c, hooked = debug.gethook() ~= nil }
      if a == "fail" then error("step failed", 0) end
    end)
    -- a hook set on the main thread after creation (as vlua's SIGINT handler does)
    -- does not reach the calls
    debug.sethook(function() end, "", 1000)
    step(1, nil, 3)
    step("x", 2)
    debug.sethook()
    assert.are.same({ { 1, nil, 3, hooked = false }, { "x", 2, nil, hooked = false } }, seen)
    assert.are.equal("step failed", err_of(step, "fail"))
  end)

  it("config_of and check_config compare the recorded options", function()
    local keys = { "epochs", "eval_batch" }
    local c = S.config_of({ epochs = 3, eval_batch = 5, lr = 1 }, keys)
    assert.are.same({ epochs = 3, eval_batch = 5 }, c)
    S.check_config(c, { epochs = 3, eval_batch = 5 }, "ck", keys, "demo")
    assert.are.equal("demo: ck was made with other settings (eval-batch 5 (checkpoint) vs 6); pass the same " ..
      "flags, or --fresh to start over", err_of(S.check_config, c, { epochs = 3, eval_batch = 6 }, "ck", keys, "demo"))
  end)
end)
