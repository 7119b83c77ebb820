-- Chaos test: no input reachable from Lua may crash the interpreter.
-- The random part runs tests/chaos_driver.lua in a child process (a crash
-- there must not take busted down); the crashes it found once are kept
-- below as regular cases.
local vl = require "vl"

local VLUA = os.getenv("VLUA_BIN") or "build/vlua"
local CALLS = 20000 -- per seed; the driver runs ~20000 calls a second
local SEEDS = { 1, 2, 3 }

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function last_lines(path, n)
  local lines = {}
  local f = io.open(path, "r")
  if not f then return "(no stderr)" end
  for line in f:lines() do
    lines[#lines + 1] = line
    if #lines > n then table.remove(lines, 1) end
  end
  f:close()
  return table.concat(lines, "\n")
end

-- Run the driver; returns its stdout, exit status, and stderr's last lines.
local function run_driver(seed, count)
  local errfile = os.tmpname()
  local cmd = string.format("%s tests/chaos_driver.lua %d %d 2>%s", shell_quote(VLUA), seed, count,
    shell_quote(errfile))
  if os.execute("command -v timeout >/dev/null 2>&1") then cmd = "timeout 120 " .. cmd end
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, how, code = p:close()
  local tail = last_lines(errfile, 5)
  os.remove(errfile)
  return out, ok, how, code, tail
end

describe("chaos", function()
  for _, seed in ipairs(SEEDS) do
    it("random calls of every vl function and tensor method do not crash (seed " .. seed .. ")", function()
      local out, ok, how, code, tail = run_driver(seed, CALLS)
      local msg = string.format("driver (seed %d) ended with %s %s; last calls on stderr:\n%s", seed,
        tostring(how), tostring(code), tail)
      assert.is_true(ok == true, msg)
      assert.matches("done " .. CALLS .. " calls", out, 1, true)
    end)
  end

  it("the driver is deterministic", function()
    local a = run_driver(7, 2000)
    local b = run_driver(7, 2000)
    assert.matches("done 2000 calls", a, 1, true)
    assert.are.equal(a, b)
  end)
end)

describe("chaos reproducers", function()
  local x4 = vl.randn(1, 2, 5, 5)
  local w = vl.randn(1, 2, 3, 3)

  -- ops/conv.c conv2d_batched: padding 2^62 overflowed H + pad (UBSan:
  -- signed integer overflow), found by the chaos run.
  it("conv2d rejects a huge padding", function()
    local ok, err = pcall(vl.conv2d, x4, w, nil, { padding = 1 << 62 })
    assert.is_false(ok)
    assert.matches("conv2d: padding must be at most", err)
  end)

  it("conv2d rejects a huge dilation and stride", function()
    local ok, err = pcall(vl.conv2d, x4, w, nil, { dilation = 1 << 62 })
    assert.is_false(ok)
    assert.matches("conv2d: dilation must be at most", err)
    ok, err = pcall(vl.conv2d, x4, w, nil, { stride = 1 << 62 })
    assert.is_false(ok)
    assert.matches("conv2d: stride must be at most", err)
  end)

  it("conv1d rejects a huge padding and dilation", function()
    local ok, err = pcall(vl.conv1d, vl.randn(1, 2, 5), vl.randn(1, 2, 3), nil, { padding = 1 << 62 })
    assert.is_false(ok)
    assert.matches("conv1d: .*padding 0..16777216", err)
    ok, err = pcall(vl.conv1d, vl.randn(1, 2, 5), vl.randn(1, 2, 3), nil, { dilation = 1 << 62 })
    assert.is_false(ok)
    assert.matches("conv1d: ", err)
  end)

  it("conv_transpose2d and the pools reject huge parameters", function()
    local wt = vl.randn(2, 1, 3, 3)
    local ok, err = pcall(vl.conv_transpose2d, x4, wt, nil, { stride = 1 << 62, output_padding = 1 })
    assert.is_false(ok)
    assert.matches("conv_transpose2d: stride must be at most", err)
    ok, err = pcall(vl.max_pool2d, x4, 2, { dilation = 1 << 62 })
    assert.is_false(ok)
    assert.matches("max_pool2d: ", err)
    ok, err = pcall(vl.avg_pool2d, x4, 2, { stride = 1 << 62 })
    assert.is_false(ok)
    assert.matches("avg_pool2d: ", err)
  end)

  -- ops/tensor.c vl_numel / ops/index_internal.h shape_numel (UBSan: signed
  -- overflow 2^62 * 3): an empty shape whose other dims multiply past
  -- int64 was accepted; kernels then multiplied outer/inner sizes.
  it("vl.rand(3, 2^62, 0) is rejected", function()
    local ok, err = pcall(vl.rand, 3, 1 << 62, 0)
    assert.is_false(ok)
    assert.matches("rand: shape %[3,4611686018427387904,0%] .* overflows", err)
  end)

  it("x:repeats with huge counts on an empty tensor is rejected", function()
    local ok, err = pcall(vl.Tensor.repeats, vl.zeros(0), 1 << 62, 2, 1 << 62)
    assert.is_false(ok)
    assert.matches("overflows", err)
  end)

  it("expand to an overflowing shape is rejected, empty or not", function()
    local ok, err = pcall(vl.Tensor.expand, vl.zeros(0), 1 << 62, 4, 0)
    assert.is_false(ok)
    assert.matches("expand: shape .* overflows", err)
    ok, err = pcall(vl.Tensor.expand, vl.zeros(1), 1 << 62, 4)
    assert.is_false(ok)
    assert.matches("expand: shape .* overflows", err)
  end)

  it("empty tensors with a huge but representable size still work", function()
    local e = vl.zeros(1 << 62, 0)
    assert.are.equal(0, e:numel())
    assert.are.equal(0, e:sum(1):numel())
  end)

  -- ops/nn.c gn_fwd (UBSan: signed overflow N * G): 0 channels split
  -- into 2^62 groups passed the C % G check.
  it("group_norm rejects more groups than channels", function()
    local ok, err = pcall(vl.group_norm, vl.zeros(2, 0, 3, { dtype = "float64" }), 1 << 62)
    assert.is_false(ok)
    assert.matches("group_norm: 0 channels do not split into 4611686018427387904 groups", err)
  end)

  it("moderate parameters still work", function()
    local y = vl.conv2d(x4, w, nil, { padding = 1, dilation = 2, stride = 2 })
    assert.are.same({ 1, 1, 2, 2 }, { y:size(1), y:size(2), y:size(3), y:size(4) })
  end)
end)
