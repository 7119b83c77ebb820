local vl = require "vl"

-- Reverse-mode gradients of the element-wise ops (ops/elementwise.c).
-- References: central differences through vl.gradcheck in float64 for
-- every op away from its kinks, and PyTorch 1.13's gradients at the kinks
-- (ties, NaN, bounds, zeros) saved by scripts/fixtures/autograd_elementwise.py.

local F = dofile("tests/fixtures/autograd_elementwise.lua")

local F64 = { dtype = "float64" }

-- a float64 leaf that requires grad
local function leaf(values, dt)
  return vl.tensor(values, { dtype = dt or "float64" }):requires_grad(true)
end

-- uniform on [lo, hi) in `shape`, float64, requiring grad
local function uniform(shape, lo, hi)
  local t = vl.rand(shape, F64) * (hi - lo) + lo
  return t:requires_grad(true)
end

-- |x| in [0.2, 2) with random signs: away from the kinks at 0
local function signed(shape)
  local m = vl.rand(shape, F64) * 1.8 + 0.2
  local s = vl.where(vl.rand(shape, F64):lt(0.5), -1.0, 1.0)
  return (m * s):requires_grad(true)
end

local function flat(t)
  return t:reshape(-1):totable()
end

local function isnan(x) return x ~= x end

local function assert_close(got, want, tol, label)
  assert.are.equal(#want, #got, label .. ": element count")
  for i = 1, #want do
    local g, w = got[i], want[i]
    local ok
    if isnan(w) then ok = isnan(g)
    elseif g == w then ok = true
    else ok = math.abs(g - w) <= tol * (1 + math.abs(w)) end
    if not ok then
      error(string.format("%s: element %d is %.17g, expected %.17g", label, i, g, w), 2)
    end
  end
end

local function gradcheck(fn, inputs, opts)
  local ok, msg = vl.gradcheck(fn, inputs, opts)
  assert(ok, msg)
end

local function ones_like(t) return vl.ones(t:size(), { dtype = t.dtype }) end

-- ------------------------------------------------------------------
-- Unary ops: name, how to call it, a domain away from kinks
-- ------------------------------------------------------------------

local POS = { 0.3, 2.5 }    -- log, sqrt, rsqrt, reciprocal (positive)
local UNARY = {
  { "neg", function(x) return -x end },
  { "abs", function(x) return x:abs() end, "signed" },
  { "exp", function(x) return x:exp() end },
  { "log", function(x) return x:log() end, POS },
  { "sqrt", function(x) return x:sqrt() end, POS },
  { "rsqrt", function(x) return x:rsqrt() end, POS },
  { "sin", function(x) return x:sin() end },
  { "cos", function(x) return x:cos() end },
  { "tanh", function(x) return x:tanh() end },
  { "sigmoid", function(x) return x:sigmoid() end },
  { "relu", function(x) return x:relu() end, "signed" },
  { "gelu", function(x) return x:gelu() end },
  { "gelu_tanh", function(x) return x:gelu({ approximate = "tanh" }) end },
  { "silu", function(x) return x:silu() end },
  { "softplus", function(x) return x:softplus() end },
  { "softplus_beta", function(x) return x:softplus({ beta = 2, threshold = 1.5 }) end },
  { "reciprocal", function(x) return x:reciprocal() end, POS },
  { "reciprocal_neg", function(x) return x:reciprocal() end, { -2.5, -0.3 } },
  { "square", function(x) return x:square() end },
  { "sign", function(x) return x:sign() end, "signed" },
  { "floor", function(x) return x:floor() end, { 0.1, 0.9 } },
  { "ceil", function(x) return x:ceil() end, { 1.1, 1.9 } },
  { "round", function(x) return x:round() end, { 2.1, 2.4 } },
}

local function unary_input(domain, shape)
  if domain == "signed" then return signed(shape) end
  domain = domain or { -2, 2 }
  return uniform(shape, domain[1], domain[2])
end

describe("autograd of unary element-wise ops", function()
  vl.manual_seed(1234)
  for _, u in ipairs(UNARY) do
    local name, fn, domain = u[1], u[2], u[3]
    it(name .. " passes gradcheck in float64", function()
      local x = unary_input(domain, { 3, 4 })
      local y = fn(x)
      assert.is_true(y:requires_grad())
      assert.is_false(y:is_leaf())
      gradcheck(fn, { x })
    end)
    it(name .. " on a transposed, non-contiguous input", function()
      local x = unary_input(domain, { 4, 3 })
      gradcheck(function(t) return fn(t:t()) end, { x })
    end)
    it(name .. ": float32 gradients agree with float64 ones to 1e-4", function()
      local x64 = unary_input(domain, { 5, 7 })
      local x32 = x64:detach():float():requires_grad(true)
      local g = vl.rand({ 5, 7 }, F64) + 0.5
      fn(x64):backward(g)
      fn(x32):backward(g:float())
      assert.are.equal("float32", x32.grad.dtype)
      assert_close(flat(x32.grad), flat(x64.grad), 1e-4, name)
    end)
  end

  it("records the op name as grad_fn", function()
    local x = leaf({ 1, 2 })
    assert.are.equal("exp", x:exp().grad_fn)
    assert.are.equal("gelu_tanh", x:gelu({ approximate = "tanh" }).grad_fn)
    assert.are.equal("softplus", x:softplus().grad_fn)
    assert.are.equal("clamp", x:clamp(0, 1).grad_fn)
    assert.are.equal("neg", (-x).grad_fn)
  end)

  it("piecewise constant ops give zero gradients", function()
    for _, op in ipairs({ "sign", "floor", "ceil", "round" }) do
      local x = leaf({ -1.5, 0.3, 2.7 })
      x[op](x):backward(vl.ones({ 3 }, F64))
      assert.are.same({ 0, 0, 0 }, flat(x.grad))
    end
  end)

  it("logical_not gives a bool tensor outside the graph", function()
    local x = leaf({ 0, 1 })
    local y = x:logical_not()
    assert.are.equal("bool", y.dtype)
    assert.is_false(y:requires_grad())
  end)

  it("exp, tanh and sigmoid gradients match closed forms", function()
    local x = leaf({ -1.5, 0, 0.5, 2 })
    local g = vl.tensor({ 1, 2, 3, 4 }, F64)
    x:exp():backward(g)
    assert_close(flat(x.grad), { math.exp(-1.5), 2, 3 * math.exp(0.5), 4 * math.exp(2) }, 1e-15, "exp")
    x.grad = nil
    x:tanh():backward(g)
    local want = {}
    for i, v in ipairs({ -1.5, 0, 0.5, 2 }) do want[i] = i * (1 - math.tanh(v) ^ 2) end
    assert_close(flat(x.grad), want, 1e-15, "tanh")
    x.grad = nil
    x:sigmoid():backward(g)
    for i, v in ipairs({ -1.5, 0, 0.5, 2 }) do
      local s = 1 / (1 + math.exp(-v))
      want[i] = i * s * (1 - s)
    end
    assert_close(flat(x.grad), want, 1e-15, "sigmoid")
  end)
end)

-- ------------------------------------------------------------------
-- Binary ops with broadcasting
-- ------------------------------------------------------------------

local SHAPES = {
  { { 3, 4 }, { 3, 4 } },
  { { 3, 1 }, { 1, 4 } },
  { { 2, 3, 4 }, { 4 } },
  { {}, { 2, 3 } },
  { { 2, 3 }, {} },
}

-- op, a's domain, b's domain
local BINARY = {
  { "add", { -2, 2 }, { -2, 2 } },
  { "sub", { -2, 2 }, { -2, 2 } },
  { "mul", { -2, 2 }, { -2, 2 } },
  { "div", { -2, 2 }, "signed" },
  { "pow", { 0.3, 2.5 }, { -2, 2 } },
  { "maximum", { -2, 2 }, { -2, 2 } },
  { "minimum", { -2, 2 }, { -2, 2 } },
  { "remainder", { -5, 5 }, { 0.7, 2 } },
  { "remainder", { -5, 5 }, { -2, -0.7 } },
}

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

describe("autograd of binary element-wise ops", function()
  vl.manual_seed(99)
  for _, b in ipairs(BINARY) do
    local op, da, db = b[1], b[2], b[3]
    for _, sh in ipairs(SHAPES) do
      it(("%s %s with %s passes gradcheck"):format(op, shape_str(sh[1]), shape_str(sh[2])), function()
        local x = unary_input(da, sh[1])
        local y = unary_input(db, sh[2])
        local fn = function(p, q) return vl[op](p, q) end
        local z = fn(x, y)
        assert.are.equal(op, z.grad_fn)
        gradcheck(fn, { x, y })
        -- the gradients have the inputs' shapes (broadcast dims summed away)
        z:backward(vl.ones(z:size(), F64))
        assert.are.same(x:size(), x.grad:size())
        assert.are.same(y:size(), y.grad:size())
      end)
    end
    it(op .. ": only the input that requires grad gets one", function()
      local x = unary_input(da, { 2, 3 })
      local y = unary_input(db, { 3 }):detach()
      gradcheck(function(p) return vl[op](p, y) end, { x })
      local x2 = x:detach()
      local y2 = y:requires_grad(true)
      gradcheck(function(q) return vl[op](x2, q) end, { y2 })
      assert.is_nil(x2.grad)
    end)
    it(op .. ": float32 gradients agree with float64 ones to 1e-4", function()
      local x64 = unary_input(da, { 4, 1 })
      local y64 = unary_input(db, { 1, 5 })
      local x32 = x64:detach():float():requires_grad(true)
      local y32 = y64:detach():float():requires_grad(true)
      local g = vl.rand({ 4, 5 }, F64) + 0.5
      vl[op](x64, y64):backward(g)
      vl[op](x32, y32):backward(g:float())
      assert_close(flat(x32.grad), flat(x64.grad), 1e-4, op .. " a")
      assert_close(flat(y32.grad), flat(y64.grad), 1e-4, op .. " b")
    end)
  end

  it("x * x counts both uses", function()
    local x = leaf({ 1.5, -2 })
    gradcheck(function(t) return t * t end, { x })
    x.grad = nil
    local y = x * x
    y:backward(vl.ones({ 2 }, F64))
    assert.are.same({ 3, -4 }, flat(x.grad))
  end)

  it("mixed dtypes: a float32 leaf times a float64 tensor gets a float32 gradient", function()
    local x = leaf({ 1, 2, 3 }, "float32")
    local w = vl.tensor({ 0.5, 0.25, 2 }, F64)
    local y = x * w
    assert.are.equal("float64", y.dtype)
    y:backward(vl.ones({ 3 }, F64))
    assert.are.equal("float32", x.grad.dtype)
    assert.are.same({ 0.5, 0.25, 2 }, flat(x.grad))
  end)

  it("an expanded (stride 0) or transposed upstream gradient", function()
    local x = leaf({ { 0.5 }, { 1.5 }, { -1 } })
    local y = leaf({ 2, -3, 4, 0.25 })
    local g = vl.tensor({ 2 }, F64):reshape({ 1, 1 }):expand({ 3, 4 })
    vl.div(x, y):backward(g)
    local want_x, want_y = {}, { 0, 0, 0, 0 }
    local xs, ys = { 0.5, 1.5, -1 }, { 2, -3, 4, 0.25 }
    for i = 1, 3 do
      want_x[i] = 0
      for j = 1, 4 do
        want_x[i] = want_x[i] + 2 / ys[j]
        want_y[j] = want_y[j] - 2 * xs[i] / ys[j] ^ 2
      end
    end
    assert_close(flat(x.grad), want_x, 1e-14, "x")
    assert_close(flat(y.grad), want_y, 1e-14, "y")
    local z = leaf({ { 1, 2, 3 }, { 4, 5, 6 } })
    local gt = vl.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, F64):t()
    z:tanh():backward(gt)
    local zs, gs = { 1, 2, 3, 4, 5, 6 }, { 1, 3, 5, 2, 4, 6 }
    local want = {}
    for i = 1, 6 do want[i] = gs[i] * (1 - math.tanh(zs[i]) ^ 2) end
    assert_close(flat(z.grad), want, 1e-15, "tanh")
  end)

  it("float16 and bfloat16 leaves get gradients in their dtype", function()
    for _, dt in ipairs({ "float16", "bfloat16" }) do
      local x = leaf({ 0.5, -1, 2 }, dt)
      local y = leaf({ 1.5, 0.25, -0.5 }, dt)
      local z = (x * y):sigmoid() + x:exp() / y
      assert.are.equal(dt, z.dtype)
      z:backward(vl.ones({ 3 }, { dtype = dt }))
      assert.are.equal(dt, x.grad.dtype)
      local x64, y64 = leaf({ 0.5, -1, 2 }), leaf({ 1.5, 0.25, -0.5 })
      local z64 = (x64 * y64):sigmoid() + x64:exp() / y64
      z64:backward(vl.ones({ 3 }, F64))
      assert_close(flat(x.grad:double()), flat(x64.grad), 3e-2, dt .. " x")
      assert_close(flat(y.grad:double()), flat(y64.grad), 3e-2, dt .. " y")
    end
  end)

  it("an integer tensor operand takes part without a gradient", function()
    local x = leaf({ 1.5, 2.5 })
    local k = vl.tensor({ 2, 3 }, { dtype = "int64" })
    gradcheck(function(t) return vl.pow(t, k) * k end, { x })
  end)

  it("comparisons and logical ops produce bool tensors without a graph", function()
    local x, y = leaf({ 1, 2 }), leaf({ 2, 1 })
    for _, op in ipairs({ "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor" }) do
      local z = vl[op](x, y)
      assert.are.equal("bool", z.dtype)
      assert.is_false(z:requires_grad())
      assert.is_nil(z.grad_fn)
    end
  end)
end)

-- ------------------------------------------------------------------
-- Operators with Lua numbers
-- ------------------------------------------------------------------

describe("autograd through the tensor operators", function()
  vl.manual_seed(5)
  it("+ - * / ^ % and unary minus with numbers on either side", function()
    local x = uniform({ 2, 3 }, 0.5, 2)
    gradcheck(function(t)
      return (t * 2 + 1) / 3 - t ^ 2 + 2 ^ t - (1 - t) * (4 / t) + t % 0.7 + 5 % t + (-t)
    end, { x })
  end)

  it("operators between tensors broadcast", function()
    local x = uniform({ 3, 1 }, 0.5, 2)
    local y = uniform({ 4 }, 0.5, 2)
    gradcheck(function(a, b) return a * b + a / b - b ^ a + a % b end, { x, y })
  end)

  it("(x * y + x:exp()):backward gives y + exp(x) and x", function()
    local x = leaf({ 0.5, -1, 2 })
    local y = leaf({ 3, 4, -5 })
    local z = x * y + x:exp()
    z:backward(vl.ones({ 3 }, F64))
    assert_close(flat(x.grad), { 3 + math.exp(0.5), 4 + math.exp(-1), -5 + math.exp(2) }, 1e-15, "x")
    assert.are.same({ 0.5, -1, 2 }, flat(y.grad))
  end)

  it("(x * y + x:exp()):sum():backward() works on 0-d results", function()
    local x = leaf(0.5)
    local y = leaf(3)
    local z = x * y + x:exp()
    assert.are.same({}, z:size())
    z:backward()
    assert_close({ x.grad:item() }, { 3 + math.exp(0.5) }, 1e-15, "x")
    assert.are.equal(0.5, y.grad:item())
    -- with sum, when reductions record their backward
    local a = leaf({ 0.5, -1 })
    local b = leaf({ 3, 4 })
    local s = (a * b + a:exp()):sum()
    if s:requires_grad() then
      s:backward()
      assert_close(flat(a.grad), { 3 + math.exp(0.5), 4 + math.exp(-1) }, 1e-15, "a")
    end
  end)
end)

-- ------------------------------------------------------------------
-- where, clamp, masked_fill, softplus
-- ------------------------------------------------------------------

describe("autograd of where, clamp, masked_fill", function()
  vl.manual_seed(11)
  it("where passes gradcheck with broadcasting", function()
    local cond = vl.tensor({ { true }, { false }, { true } })
    local a = uniform({ 1, 4 }, -2, 2)
    local b = uniform({}, -2, 2)
    gradcheck(function(p, q) return vl.where(cond, p, q) end, { a, b })
  end)

  it("where sends the gradient to a where cond holds and to b elsewhere", function()
    local a, b = leaf({ 1, 2, 3 }), leaf({ 4, 5, 6 })
    local cond = vl.tensor({ true, false, true })
    vl.where(cond, a, b):backward(vl.tensor({ 10, 20, 30 }, F64))
    assert.are.same({ 10, 0, 30 }, flat(a.grad))
    assert.are.same({ 0, 20, 0 }, flat(b.grad))
  end)

  it("where with a uint8 condition and a number", function()
    local a = uniform({ 2, 3 }, -2, 2)
    local cond = vl.tensor({ 1, 0, 1 }, { dtype = "uint8" })
    gradcheck(function(p) return vl.where(cond, p, 0.5) end, { a })
    gradcheck(function(p) return vl.where(cond, 0.5, p) end, { a })
  end)

  it("where's gradient matches PyTorch for x > 0 ? x : 2x", function()
    local x = leaf({ -1, 0, 0.5 })
    vl.where(x:gt(0), x, x * 2):backward(vl.ones({ 3 }, F64))
    assert.are.same({ 2, 2, 1 }, flat(x.grad)) -- torch.where gives [2, 2, 1]
  end)

  it("clamp passes gradcheck away from its bounds, both and one-sided", function()
    local x = leaf({ { -1.7, -0.9, -0.3 }, { 0.25, 0.8, 1.9 } })
    gradcheck(function(t) return t:clamp(-0.5, 1) end, { x })
    gradcheck(function(t) return t:clamp(nil, 0.5) end, { x })
    gradcheck(function(t) return t:clamp({ min = 0 }) end, { x })
  end)

  it("masked_fill passes gradcheck; the filled places get no gradient", function()
    local x = uniform({ 3, 4 }, -2, 2)
    local mask = vl.tensor({ true, false, false, true })
    gradcheck(function(t) return t:masked_fill(mask, 0.5) end, { x })
    x.grad = nil
    x:masked_fill(mask, 7):backward(vl.ones({ 3, 4 }, F64))
    assert.are.same({ 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0 }, flat(x.grad))
    assert.are.equal("masked_fill", x:masked_fill(mask, 1).grad_fn)
  end)

  it("masked_fill leaves its input untouched and out of place", function()
    local x = leaf({ 1, 2 })
    local y = x:masked_fill(vl.tensor({ true, false }), 9)
    assert.are.same({ 1, 2 }, flat(x))
    assert.are.same({ 9, 2 }, flat(y))
  end)
end)

describe("gradients at kinks and edges match PyTorch 1.13", function()
  local names = {}
  for name in pairs(F) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local c = F[name]
    it(name, function()
      local a = vl.tensor(c.in1, F64):reshape(c.shape1):requires_grad(true)
      local b = c.in2 and vl.tensor(c.in2, F64):reshape(c.shape2):requires_grad(true)
      local y
      local o = c.opts or {}
      if c.op == "clamp" then y = a:clamp(o.min, o.max)
      elseif c.op == "softplus" then y = a:softplus(o)
      elseif c.op == "gelu_tanh" then y = a:gelu({ approximate = "tanh" })
      elseif b then y = vl[c.op](a, b)
      else y = a[c.op](a) end
      y:backward(vl.tensor(c.grad_out, F64):reshape(c.out_shape))
      assert_close(flat(a.grad), c.grad1, 1e-12, name .. " a")
      if b then assert_close(flat(b.grad), c.grad2, 1e-12, name .. " b") end
    end)
  end
end)

-- ------------------------------------------------------------------
-- The graph: chains, accumulation, retain_graph, freeing, no_grad
-- ------------------------------------------------------------------

describe("autograd graphs of element-wise ops", function()
  vl.manual_seed(3)
  it("a chain of ops passes gradcheck", function()
    local x = uniform({ 2, 3 }, -1.5, 1.5)
    local y = uniform({ 3 }, -1.5, 1.5)
    gradcheck(function(a, b)
      local h = (a * b):tanh() + (a:square() + 1):log() * b:sigmoid()
      h = h - vl.gelu(a / (b:abs() + 1)) + vl.maximum(a, b):silu()
      return vl.where(h:gt(0), h:exp(), h:softplus()):clamp(-3, 3) * a:cos()
    end, { x, y })
  end)

  it("gelu's float32 gradient (its own vectorised erfc) is within 1e-6 of float64's over [-12, 12]", function()
    local x = vl.linspace(-12, 12, 200001, { dtype = "float64" })
    local x32 = x:float():requires_grad(true)
    x32:gelu():sum():backward()
    local x64 = x:clone():requires_grad(true)
    x64:gelu():sum():backward()
    assert.is_true((x32.grad:double() - x64.grad):abs():max():item() < 1e-6)
  end)

  it("a chain in float32 agrees with float64 to 1e-4", function()
    local function chain(a, b)
      return ((a * b):tanh() + (a:square() + 1):sqrt() / b:exp()):sigmoid() * a:sin()
    end
    local x64, y64 = uniform({ 3, 3 }, -1, 1), uniform({ 3 }, -1, 1)
    local x32, y32 = x64:detach():float():requires_grad(true), y64:detach():float():requires_grad(true)
    chain(x64, y64):backward(vl.ones({ 3, 3 }, F64))
    chain(x32, y32):backward(vl.ones({ 3, 3 }))
    assert_close(flat(x32.grad), flat(x64.grad), 1e-4, "x")
    assert_close(flat(y32.grad), flat(y64.grad), 1e-4, "y")
  end)

  it("gradients accumulate across two backward calls", function()
    local x = leaf({ 1, 2 })
    local g = vl.ones({ 2 }, F64)
    local y1 = x * 3
    y1:backward(g)
    assert.are.same({ 3, 3 }, flat(x.grad))
    local y2 = x:square()
    y2:backward(g)
    assert.are.same({ 5, 7 }, flat(x.grad))
    x.grad = nil
    local y3 = x - 1
    y3:backward(g)
    assert.are.same({ 1, 1 }, flat(x.grad))
  end)

  it("a second backward without retain_graph fails with the freed-graph message", function()
    local x = leaf({ 1, 2 })
    local y = x:exp() * 2
    local g = vl.ones({ 2 }, F64)
    y:backward(g)
    local ok, err = pcall(function() y:backward(g) end)
    assert.is_false(ok)
    assert.matches("a second time", err)
    assert.matches("retain_graph", err)
  end)

  it("retain_graph keeps the graph for another backward", function()
    local x = leaf({ 1, 2 })
    local y = x:exp() * x
    local g = vl.ones({ 2 }, F64)
    y:backward(g, { retain_graph = true })
    local first = flat(x.grad)
    y:backward(g)
    local second = flat(x.grad)
    for i = 1, 2 do assert.are.equal(2 * first[i], second[i]) end
    assert.has_error(function() y:backward(g) end)
  end)

  it("the saved tensors are freed by backward and the graph with its output", function()
    local n = 100000
    collectgarbage("collect")
    local x = vl.rand({ n }, F64):requires_grad(true)
    local g = vl.ones({ n }, F64)
    local bytes = n * 8
    collectgarbage("collect")
    collectgarbage("collect")
    local base = vl.memory_in_use()
    local y = x:exp():tanh() -- exp's output lives only as tanh's input
    collectgarbage("collect")
    collectgarbage("collect")
    -- y, and exp's output saved by exp (tanh saves its own output, y)
    assert.are.equal(base + 2 * bytes, vl.memory_in_use())
    y:backward(g)
    collectgarbage("collect")
    collectgarbage("collect")
    -- y and x.grad remain; exp's output went with the saved tensors
    assert.are.equal(base + 2 * bytes, vl.memory_in_use())
    assert.is_not_nil(x.grad)
    y = nil
    x.grad = nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(base, vl.memory_in_use())
  end)

  it("vl.no_grad records nothing", function()
    local x = leaf({ 1, 2 })
    local y = vl.no_grad(function() return (x * 2 + x:exp()):tanh() end)
    assert.is_false(y:requires_grad())
    assert.is_nil(y.grad_fn)
    assert.is_true(y:is_leaf())
    local z = x * 2
    assert.is_true(z:requires_grad())
  end)

  it("in-place ops run on leaves inside vl.no_grad and on detached tensors", function()
    local x = leaf({ 1, 2 })
    vl.no_grad(function()
      x:add_(1)
      x:exp_()
      x:clamp_(0, 10)
      x:masked_fill_(vl.tensor({ true, false }), 0)
    end)
    assert.are.equal(0, flat(x)[1])
    assert.is_true(x:requires_grad())
    x:detach():mul_(2)
    assert.are.equal(2 * math.min(math.exp(3), 10), flat(x)[2])
  end)

  it("a tensor without grad can be updated in place, then used", function()
    local x = leaf({ 1, 2 })
    local w = vl.tensor({ 3, 4 }, F64)
    w:add_(1)
    local y = x * w
    y:backward(vl.ones({ 2 }, F64))
    assert.are.same({ 4, 5 }, flat(x.grad))
  end)
end)

-- ------------------------------------------------------------------
-- Refused: in-place writes into the graph
-- ------------------------------------------------------------------

describe("bad input", function()
  local function fails(fn, pattern)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
  end

  it("in-place ops on a leaf that requires grad", function()
    local x = leaf({ 1, 2 })
    fails(function() x:add_(1) end, "add_: in%-place operation on a tensor that requires grad %(a leaf%)")
    fails(function() x:mul_(x:detach()) end, "mul_: in%-place operation")
    fails(function() x:exp_() end, "exp_: in%-place operation on a tensor that requires grad")
    fails(function() x:relu_() end, "relu_: in%-place operation")
    fails(function() x:gelu_() end, "gelu_: in%-place operation")
    fails(function() x:clamp_(0, 1) end, "clamp_: in%-place operation")
    fails(function() x:masked_fill_(vl.tensor({ true, false }), 0) end, "masked_fill_: in%-place operation")
    assert.are.same({ 1, 2 }, flat(x))
  end)

  it("in-place ops on a tensor produced by the graph", function()
    local x = leaf({ 1, 2 })
    local y = x * 2
    fails(function() y:sub_(1) end, "sub_: in%-place operation on a tensor that requires grad %(mul%)")
    fails(function() y:tanh_() end, "tanh_: .*%(mul%)")
    fails(function() y:narrow(1, 1, 1):add_(1) end, "add_: in%-place operation")
  end)

  it("an in-place op whose operand b requires grad", function()
    local x = leaf({ 1, 2 })
    local a = vl.zeros({ 2 }, F64)
    fails(function() a:add_(x) end, "add_: the operand b requires grad, but in%-place operations are not differentiable")
    fails(function() a:div_(x) end, "div_: the operand b requires grad")
    assert.are.same({ 0, 0 }, flat(a))
    vl.no_grad(function() a:add_(x) end)
    assert.are.same({ 1, 2 }, flat(a))
  end)

  it("modifying a saved input in place, then backward", function()
    local w = leaf({ 1, 2 })
    local x = vl.tensor({ 3, 4 }, F64)
    local y = x * w -- saves x for w's gradient
    x:mul_(2)
    fails(function() y:backward(vl.ones({ 2 }, F64)) end,
      "backward: a tensor saved by mul was modified by an in%-place operation after it was saved")
  end)

  it("modifying a saved output in place, then backward", function()
    local x = leaf({ 1, 2 })
    local y = x:exp() -- saves its output
    vl.no_grad(function() y:add_(1) end)
    fails(function() y:backward(vl.ones({ 2 }, F64)) end, "saved by exp was modified")
    local z = x:sigmoid()
    local m = vl.no_grad(function() return z:detach() end)
    m:fill_(0)
    fails(function() z:backward(vl.ones({ 2 }, F64)) end, "saved by sigmoid was modified")
  end)

  it("modifying where's condition after it was saved", function()
    local x = leaf({ 1, 2 })
    local cond = vl.tensor({ true, false })
    local y = vl.where(cond, x, 0.0)
    cond:logical_not_()
    fails(function() y:backward(vl.ones({ 2 }, F64)) end, "saved by where was modified")
  end)

  it("backward of a non-scalar without a gradient", function()
    local x = leaf({ 1, 2 })
    fails(function() x:exp():backward() end, "backward: a gradient is needed for a non%-scalar output of shape %[2%]")
  end)

  it("leaves the interpreter usable", function()
    local x = leaf({ 1, 2 })
    local y = x:exp()
    y:backward(vl.ones({ 2 }, F64))
    assert_close(flat(x.grad), { math.exp(1), math.exp(2) }, 1e-15, "exp")
  end)
end)
