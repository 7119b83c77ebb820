local vl = require "vl"

-- NumPy references (scripts/fixtures/elementwise.py): inputs rounded to
-- float32, references in float64 (`expected`) and rounded to float32
-- (`expected32`).
local F = dofile("tests/fixtures/elementwise.lua")

local function flat(t)
  local v = t:reshape(-1):totable()
  for i = 1, #v do
    if v[i] == true then v[i] = 1 elseif v[i] == false then v[i] = 0 end
  end
  return v
end

local function isnan(x) return x ~= x end

local function close(got, want, rtol, atol)
  if isnan(want) then return isnan(got) end
  if got == want then return true end
  return math.abs(got - want) <= rtol * math.abs(want) + atol
end

-- tolerances: float32 to ~1e-6 relative (atol covers subnormal results),
-- float64 to a few ulps
local TOL = {
  float32 = { rtol = 1e-6, atol = 3e-45 },
  float64 = { rtol = 1e-12, atol = 1e-300 },
}

local function check_values(got, want, tol, label)
  assert.are.equal(#want, #got, label .. ": element count")
  for i = 1, #want do
    if not close(got[i], want[i], tol.rtol, tol.atol) then
      error(string.format("%s: element %d is %.17g, expected %.17g", label, i, got[i], want[i]), 2)
    end
  end
end

local function same_shape(t, shape)
  local s = t:size()
  assert.are.same(shape, s)
end

local function apply_unary(op, x)
  if op == "gelu_tanh" then return vl.gelu(x, { approximate = "tanh" }) end
  return vl[op](x)
end

describe("elementwise unary ops match NumPy", function()
  for _, case in ipairs(F.unary) do
    for _, dt in ipairs({ "float32", "float64" }) do
      it(case.op .. " on " .. dt, function()
        local x = vl.tensor(case.input, { dtype = dt })
        local y = apply_unary(case.op, x)
        local want = dt == "float32" and case.expected32 or case.expected
        if case.op == "logical_not" then
          assert.are.equal("bool", y.dtype)
        else
          assert.are.equal(dt, y.dtype)
        end
        check_values(flat(y), want, TOL[dt], case.op)
        -- method form and a strided (transposed) input give the same
        local x2 = vl.tensor({ case.input, case.input }, { dtype = dt }):t()
        assert.is_false(x2:is_contiguous())
        local y2 = apply_unary(case.op, x2)
        check_values(flat(y2:select(2, 2)), want, TOL[dt], case.op .. " (strided)")
        -- in place keeps the values
        if case.op ~= "logical_not" and case.op ~= "softplus" then
          local x3 = x:clone()
          local r = case.op == "gelu_tanh" and x3:gelu_({ approximate = "tanh" }) or x3[case.op .. "_"](x3)
          assert.are.equal(x3, r)
          check_values(flat(x3), want, TOL[dt], case.op .. "_")
        end
      end)
    end
  end

  it("softplus with beta and threshold", function()
    local c = F.softplus_opts
    for _, dt in ipairs({ "float32", "float64" }) do
      local y = vl.softplus(vl.tensor(c.input, { dtype = dt }), { beta = c.beta, threshold = c.threshold })
      check_values(flat(y), dt == "float32" and c.expected32 or c.expected, TOL[dt], "softplus beta=2")
    end
  end)

  it("gelu method forms", function()
    local x = vl.tensor({ -1, 0, 1 }, { dtype = "float64" })
    local a, b = x:gelu(), x:gelu({ approximate = "tanh" })
    check_values(flat(a), { -0.15865525393145707, 0, 0.8413447460685429 }, TOL.float64, "gelu")
    check_values(flat(b), { -0.15880800939172324, 0, 0.8411919906082768 }, TOL.float64, "gelu tanh")
    check_values(flat(x:gelu({ approximate = "none" })), flat(a), TOL.float64, "gelu none")
  end)
end)

describe("elementwise binary ops match NumPy with broadcasting", function()
  for _, case in ipairs(F.binary) do
    local label = string.format("%s [%s] with [%s]", case.op, table.concat(case.a_shape, ","),
      table.concat(case.b_shape, ","))
    for _, dt in ipairs({ "float32", "float64" }) do
      it(label .. " in " .. dt, function()
        local a = vl.tensor(case.a, { dtype = dt }):view(case.a_shape)
        local b = vl.tensor(case.b, { dtype = dt }):view(case.b_shape)
        local r = vl[case.op](a, b)
        same_shape(r, case.shape)
        local tol = TOL[dt]
        if case.op == "pow" and dt == "float32" then tol = { rtol = 2e-7, atol = 0 } end
        check_values(flat(r), dt == "float32" and case.expected32 or case.expected, tol, label)
        -- method form agrees
        check_values(flat(a[case.op](a, b)), flat(r), { rtol = 0, atol = 0 }, label .. " (method)")
      end)
    end
  end

  it("comparisons and logical ops give bool", function()
    local a = vl.tensor({ 1, 2, 3 }, { dtype = "float32" })
    for _, op in ipairs({ "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor" }) do
      assert.are.equal("bool", vl[op](a, 2).dtype)
    end
    assert.are.same({ false, true, false }, vl.eq(a, 2):totable())
    assert.are.same({ true, true, false }, a:lt(3):totable())
  end)

  it("broadcasts a row vector, a column and a scalar over a matrix", function()
    local m = vl.arange(12, { dtype = "float32" }):view(3, 4)
    local row = vl.tensor({ 10, 20, 30, 40 }, { dtype = "float32" })
    local col = vl.tensor({ { 100 }, { 200 }, { 300 } }, { dtype = "float32" })
    assert.are.same({ { 10, 21, 32, 43 }, { 14, 25, 36, 47 }, { 18, 29, 40, 51 } }, (m + row):totable())
    assert.are.same({ { 100, 101, 102, 103 }, { 204, 205, 206, 207 }, { 308, 309, 310, 311 } },
      (m + col):totable())
    assert.are.same({ { 0, 2, 4, 6 }, { 8, 10, 12, 14 }, { 16, 18, 20, 22 } }, (m * 2):totable())
    assert.are.same({ 3, 4 }, (col + row):size())
  end)
end)

describe("elementwise non-contiguous inputs", function()
  it("transposed, narrowed and expanded operands", function()
    local m = vl.arange(12, { dtype = "float64" }):view(3, 4)
    local t = m:t() -- [4,3] strided
    local r = t + vl.tensor({ 1, 2, 3 }, { dtype = "float64" })
    assert.are.same({ { 1, 6, 11 }, { 2, 7, 12 }, { 3, 8, 13 }, { 4, 9, 14 } }, r:totable())
    local n = m:narrow(2, 2, 2) -- columns 2..3, offset 1
    assert.are.same({ { 2, 4 }, { 10, 12 }, { 18, 20 } }, (n * 2):totable())
    local e = vl.tensor({ { 1 }, { 2 }, { 3 } }, { dtype = "float64" }):expand(3, 4)
    assert.are.same({ { 0, 1, 2, 3 }, { 8, 10, 12, 14 }, { 24, 27, 30, 33 } }, (e * m):totable())
    assert.are.same({ { 1, 1, 1 }, { 1, 1, 1 }, { 1, 1, 1 }, { 1, 1, 1 } }, vl.exp(t - t):totable())
  end)

  it("large strided tensors split over threads agree with the contiguous path", function()
    local x = vl.randn(300, 517)
    local xt = x:t()
    local a = (xt * 3 + 1):contiguous()
    local b = xt:contiguous() * 3 + 1
    assert.is_true(vl.eq(a, b):all():item())
    local e1 = vl.sigmoid(xt):contiguous()
    local e2 = vl.sigmoid(xt:contiguous())
    assert.is_true(vl.eq(e1, e2):all():item())
  end)

  it("empty and 0-d tensors", function()
    local e = vl.zeros(0, 3)
    assert.are.same({ 0, 3 }, (e + 1):size())
    assert.are.same({ 2, 0, 3 }, (e + vl.zeros(2, 1, 3)):size())
    assert.are.same({ 0, 3 }, vl.exp(e):size())
    local s = vl.tensor(2.5)
    assert.are.equal(0, (s * 2):dim())
    assert.are.equal(5, (s * 2):item())
    assert.are.same({ 3.5, 4.5 }, (s + vl.tensor({ 1, 2 }, { dtype = "float32" })):totable())
    assert.are.equal(0, vl.exp(s):dim())
  end)
end)

describe("elementwise dtypes", function()
  local I = F.int64

  it("int64 arithmetic is exact and follows Python's remainder", function()
    local a, b = vl.tensor(I.a, { dtype = "int64" }), vl.tensor(I.b, { dtype = "int64" })
    for _, op in ipairs({ "add", "sub", "mul", "maximum", "minimum", "remainder" }) do
      local r = vl[op](a, b)
      assert.are.equal("int64", r.dtype)
      assert.are.same(I[op], r:totable(), op)
    end
    local d = a / b
    assert.are.equal("float32", d.dtype)
    check_values(flat(d), I.div, { rtol = 0, atol = 0 }, "int64 div")
    local p = vl.pow(vl.tensor(I.pow_a, { dtype = "int64" }), vl.tensor(I.pow_b, { dtype = "int64" }))
    assert.are.equal("int64", p.dtype)
    assert.are.same(I.pow, p:totable())
    local big = vl.tensor({ (1 << 62) + 1 }) -- not a double
    assert.are.equal((1 << 62) + 3, (big + 2):item())
    assert.are.equal(math.mininteger, (vl.tensor({ math.maxinteger }) + 1):item()) -- wraps
  end)

  it("uint8 wraps like NumPy", function()
    local U = F.uint8
    local a, b = vl.tensor(U.a, { dtype = "uint8" }), vl.tensor(U.b, { dtype = "uint8" })
    for _, op in ipairs({ "add", "sub", "mul" }) do
      local r = vl[op](a, b)
      assert.are.equal("uint8", r.dtype)
      assert.are.same(U[op], r:totable(), op)
    end
    assert.are.same({ 6, 253, 0, 128, 1 }, (-a):totable())
  end)

  it("int32, bool, float16 and bfloat16 paths", function()
    local i = vl.tensor({ -3, 0, 4 }, { dtype = "int32" })
    assert.are.equal("int32", (i * 2).dtype)
    assert.are.same({ -6, 0, 8 }, (i * 2):totable())
    assert.are.same({ 3, 0, 4 }, i:abs():totable())
    assert.are.same({ -1, 0, 1 }, i:sign():totable())
    assert.are.same({ 9, 0, 16 }, i:square():totable())
    assert.are.equal("int32", i:relu().dtype)
    local ef = i:exp()
    assert.are.equal("float32", ef.dtype)
    check_values(flat(ef), { math.exp(-3), 1, math.exp(4) }, TOL.float32, "exp int32")
    assert.are.equal("float32", (i * 0.5).dtype) -- float scalar with an int tensor
    assert.are.same({ -1.5, 0, 2 }, (i * 0.5):totable())
    local m = vl.tensor({ true, false, true })
    assert.are.equal("bool", m.dtype)
    assert.are.same({ false, true, false }, vl.logical_not(m):totable())
    assert.are.same({ true, false, true }, vl.logical_or(m, m):totable())
    assert.are.same({ 1, 0, 1 }, (m + vl.tensor({ 0, 0, 0 })):totable()) -- bool + int64 -> int64
    for _, dt in ipairs({ "float16", "bfloat16" }) do
      local h = vl.tensor({ 1, 2, 4 }, { dtype = dt })
      local r = h * h + 1
      assert.are.equal(dt, r.dtype)
      assert.are.same({ 2, 5, 17 }, r:totable())
      check_values(flat(vl.sqrt(h)), { 1, 1.4140625, 2 }, { rtol = 4e-3, atol = 0 }, "sqrt " .. dt)
      assert.are.equal("float32", (h + vl.tensor({ 1, 1, 1 }, { dtype = dt == "float16" and "bfloat16" or "float16" })).dtype)
    end
    assert.are.equal("float64", (vl.tensor({ 1 }, { dtype = "float32" }) + vl.tensor({ 1 }, { dtype = "float64" })).dtype)
  end)

  it("round is half to even, like torch", function()
    local x = vl.tensor({ 0.5, 1.5, 2.5, -0.5, -2.5, 3.5 })
    assert.are.same({ 0, 2, 2, -0.0, -2, 4 }, x:round():totable())
  end)
end)

describe("elementwise operators", function()
  local x = vl.tensor({ 1, 2, 4 }, { dtype = "float32" })

  it("numbers on either side", function()
    assert.are.same({ 2, 3, 5 }, (x + 1):totable())
    assert.are.same({ 2, 3, 5 }, (1 + x):totable())
    assert.are.same({ 1, 0, -2 }, (2 - x):totable())
    assert.are.same({ -1, 0, 2 }, (x - 2):totable())
    assert.are.same({ 3, 6, 12 }, (3 * x):totable())
    assert.are.same({ 2, 1, 0.5 }, (2 / x):totable())
    assert.are.same({ 0.5, 1, 2 }, (x / 2):totable())
    assert.are.same({ 1, 4, 16 }, (x ^ 2):totable())
    assert.are.same({ 2, 4, 16 }, (2 ^ x):totable())
    assert.are.same({ -1, -2, -4 }, (-x):totable())
    assert.are.same({ 1, 2, 1 }, (x % 3):totable())
    assert.are.same({ 2, 1, 2 }, (-x % 3):totable()) -- sign of the divisor (Python)
    assert.are.same({ -2, -1, -2 }, (x % -3):totable())
    assert.are.same({ 0, 1, 0 }, (vl.tensor({ -3, -2, 0 }) % 3):totable())
    assert.are.same({ 2, 4, 8 }, (x + x):totable())
    assert.are.equal("float32", (x + 1).dtype)
    assert.are.equal("float32", (1.5 * x).dtype)
  end)

  it("in-place methods return the tensor itself", function()
    local y = x:clone()
    assert.are.equal(y, y:add_(1))
    assert.are.same({ 2, 3, 5 }, y:totable())
    y:mul_(vl.tensor({ 1, 0, 2 }, { dtype = "float32" })):sub_(1)
    assert.are.same({ 1, -1, 9 }, y:totable())
    y:div_(2):pow_(2)
    assert.are.same({ 0.25, 0.25, 20.25 }, y:totable())
    y:clamp_(0.5, nil)
    assert.are.same({ 0.5, 0.5, 20.25 }, y:totable())
    y:neg_():exp_()
    check_values(flat(y), { math.exp(-0.5), math.exp(-0.5), math.exp(-20.25) }, TOL.float32, "exp_")
    local z = vl.zeros(2, 3)
    z:add_(vl.tensor({ 1, 2, 3 }, { dtype = "float32" })) -- row broadcast into z
    assert.are.same({ { 1, 2, 3 }, { 1, 2, 3 } }, z:totable())
    local zi = vl.tensor({ 5, 7 })
    zi:mul_(0.5) -- result converted to z's dtype (int64)
    assert.are.equal("int64", zi.dtype)
    assert.are.same({ 2, 3 }, zi:totable())
    local w = vl.arange(6, { dtype = "float32" })
    w:narrow(1, 2, 5):add_(w:narrow(1, 1, 5)) -- overlapping views read the old values
    assert.are.same({ 0, 1, 3, 5, 7, 9 }, w:totable())
  end)
end)

describe("elementwise clamp, where, masked_fill", function()
  local x = vl.tensor({ -3, -1, 0, 1, 3 }, { dtype = "float32" })

  it("clamp with one or both bounds", function()
    assert.are.same({ -1, -1, 0, 1, 1 }, vl.clamp(x, -1, 1):totable())
    assert.are.same({ -3, -1, 0, 1, 2 }, vl.clamp(x, nil, 2):totable())
    assert.are.same({ 0, 0, 0, 1, 3 }, x:clamp(0):totable())
    assert.are.same({ -2, -1, 0, 1, 2 }, x:clamp({ min = -2, max = 2 }):totable())
    assert.are.same({ -3, -1, 0, 0.5, 0.5 }, x:clamp({ max = 0.5 }):totable())
    local n = vl.tensor({ 0 / 0, 5 })
    assert.is_true(isnan(vl.clamp(n, 0, 1):totable()[1]))
    assert.are.same({ -1, -1, 0, 1, 1 }, vl.tensor({ -3, -1, 0, 1, 3 }):clamp(-1.5, 1.5):totable())
    -- min above max: every element becomes max (PyTorch)
    assert.are.same({ 1, 1, 1, 1, 1 }, x:clamp(2, 1):totable())
    assert.are.same({ 1, 1, 1, 1, 1 }, vl.tensor({ -3, -1, 0, 1, 3 }):clamp(2, 1):totable())
  end)

  it("where broadcasts all three operands", function()
    local c = vl.tensor({ true, false, true })
    assert.are.same({ 1, -2, 3 }, vl.where(c, vl.tensor({ 1, 2, 3 }), vl.tensor({ -1, -2, -3 })):totable())
    assert.are.same({ { 1, 0, 1 }, { 1, 0, 1 } }, vl.where(c, 1, vl.zeros(2, 1, { dtype = "int64" })):totable())
    local r = vl.where(x:gt(0), x, 0)
    assert.are.same({ 0, 0, 0, 1, 3 }, r:totable())
    assert.are.equal("float32", r.dtype)
    local u = vl.tensor({ 1, 0, 1 }, { dtype = "uint8" })
    assert.are.same({ 1, 9, 3 }, vl.where(u, vl.tensor({ 1, 2, 3 }), 9):totable())
  end)

  it("masked_fill and masked_fill_", function()
    local m = x:lt(0)
    assert.are.same({ 0, 0, 0, 1, 3 }, x:masked_fill(m, 0):totable())
    assert.are.same({ -3, -1, 0, 1, 3 }, x:totable()) -- untouched
    local y = vl.zeros(2, 3)
    assert.are.equal(y, y:masked_fill_(vl.tensor({ true, false, true }), 7))
    assert.are.same({ { 7, 0, 7 }, { 7, 0, 7 } }, y:totable())
    local yi = vl.zeros(2, 2, { dtype = "int64" })
    yi:masked_fill_(vl.tensor({ { 1, 0 }, { 0, 1 } }, { dtype = "uint8" }), -5)
    assert.are.same({ { -5, 0 }, { 0, -5 } }, yi:totable())
    assert.are.same({ 9, 0 }, vl.masked_fill(vl.zeros(2), vl.tensor({ true, false }), vl.tensor(9)):totable())
  end)
end)

describe("bad input", function()
  local a = vl.zeros(2, 3)
  local b = vl.zeros(4)

  local function fails(pattern, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
  end

  it("shape mismatch names the op and both shapes", function()
    fails("add: shapes %[2,3%] and %[4%]", vl.add, a, b)
    fails("mul: shapes %[2,3%] and %[4%]", function() return a * b end)
    fails("lt: shapes", vl.lt, a, b)
  end)

  it("in-place ops cannot grow the tensor", function()
    fails("add_: .*%[2,3%].*%[3%]", function() return vl.zeros(3):add_(a) end)
    fails("mul_: cannot write into an expanded tensor", function() return vl.zeros(1, 3):expand(2, 3):mul_(a) end)
  end)

  it("masks and conditions must be bool or uint8", function()
    fails("masked_fill: mask must be bool or uint8, got float32", vl.masked_fill, a, vl.zeros(3), 1)
    fails("masked_fill_: shapes %[2,3%] and %[4,3%]", function()
      return a:masked_fill_(vl.zeros(4, 3, { dtype = "bool" }), 1)
    end)
    fails("masked_fill_: mask of shape %[2,2,3%] does not broadcast to the tensor's shape %[2,3%]", function()
      return a:masked_fill_(vl.zeros(2, 2, 3, { dtype = "bool" }), 1)
    end)
    fails("where: cond must be bool or uint8, got int64", vl.where, vl.tensor({ 1, 0 }), 1, 2)
    fails("where: shapes", vl.where, vl.tensor({ true, false }), vl.zeros(3), 0)
  end)

  it("integer remainder by zero", function()
    fails("remainder: integer division by zero", vl.remainder, vl.tensor({ 1, 2 }), vl.tensor({ 1, 0 }))
    fails("remainder: integer division by zero", function() return vl.tensor({ 5 }) % 0 end)
    fails("remainder_: integer division by zero", function() return vl.tensor({ 5 }):remainder_(0) end)
    -- float remainder by zero is NaN, true division of integers by zero is inf
    assert.is_true(isnan((vl.tensor({ 5.0 }) % 0):item()))
    assert.are.equal(math.huge, (vl.tensor({ 5 }) / 0):item())
  end)

  it("bool negation and subtraction", function()
    fails("neg: negation of a bool tensor", function() return -vl.tensor({ true }) end)
    fails("sub: subtraction of two bool tensors", vl.sub, vl.tensor({ true }), vl.tensor({ false }))
  end)

  it("wrong argument types and options", function()
    fails("add: argument 2 must be a tensor or a number, got string", vl.add, a, "x")
    fails("add: argument 1 must be a tensor or a number, got table", function() return {} + a end)
    fails("gelu: option approximate must be \"none\" or \"tanh\", got fast", vl.gelu, a, { approximate = "fast" })
    fails("softplus: beta must be a non%-zero number", vl.softplus, a, { beta = 0 })
    fails("clamp: at least one of min and max", vl.clamp, a)
    fails("clamp: min must be a number or nil, got string", vl.clamp, a, "lo", 1)
    fails("clamp: min is NaN", vl.clamp, a, 0 / 0, 1)
    fails("masked_fill: value must be a number", vl.masked_fill, a, vl.zeros(3, { dtype = "bool" }), "v")
    fails("tensor expected", vl.exp, 3)
  end)
end)
