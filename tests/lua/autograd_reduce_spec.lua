local vl = require "vl"

-- Reverse-mode gradients of the reductions (ops/reduce.c) and of
-- softmax/log_softmax/cumsum (ops/softmax.c).
-- References: central differences through vl.gradcheck in float64 (every
-- op, several dim sets, keepdim or not, contiguous, transposed and
-- expanded inputs), and closed forms where the op is not differentiable
-- in the usual sense and PyTorch fixes a convention (ties of amax/max and
-- of the inf-norm, zeros of prod, the 2-norm at 0).

local F64 = { dtype = "float64" }

local function flat(t)
  return t:reshape(-1):totable()
end

local function leaf(values, dt)
  return vl.tensor(values, { dtype = dt or "float64" }):requires_grad(true)
end

-- uniform on [lo, hi) in `shape`, float64 (no grad)
local function uniform(shape, lo, hi)
  return vl.rand(shape, F64) * (hi - lo) + lo
end

-- |x| in [0.5, 1.5) with random signs: away from 0 (norms, prod)
local function signed(shape)
  local m = uniform(shape, 0.5, 1.5)
  local s = vl.where(vl.rand(shape, F64):lt(0.5), -1.0, 1.0)
  return m * s
end

local function assert_close(got, want, tol, label)
  assert.are.equal(#want, #got, label .. ": element count")
  for i = 1, #want do
    local g, w = got[i], want[i]
    local ok = (g == w) or math.abs(g - w) <= tol * (1 + math.abs(w))
    if not ok then
      error(string.format("%s: element %d is %.17g, expected %.17g", label, i, g, w), 2)
    end
  end
end

local function gradcheck(fn, inputs, label)
  local ok, msg = vl.gradcheck(fn, inputs)
  assert(ok, (label or "") .. ": " .. tostring(msg))
end

-- The ops under test: name, how to call it on x with (dims, keepdim),
-- and the inputs it is smooth on. `dims` is nil (all) or a table of
-- 1-based dims; ops along one dim take dims[1].
local SHAPE = { 2, 3, 4 }
local ops = {
  { "sum", function(x, d, k) return x:sum(d, { keepdim = k }) end },
  { "mean", function(x, d, k) return x:mean(d, { keepdim = k }) end },
  { "prod", function(x, d, k) return x:prod(d, { keepdim = k }) end, signed },
  { "amax", function(x, d, k) return x:amax(d, { keepdim = k }) end },
  { "amin", function(x, d, k) return x:amin(d, { keepdim = k }) end },
  { "logsumexp", function(x, d, k) return x:logsumexp(d, { keepdim = k }) end },
  { "var", function(x, d, k) return x:var(d, { keepdim = k }) end },
  { "var correction=0", function(x, d, k) return x:var(d, { keepdim = k, correction = 0 }) end },
  -- (not over dim 1 alone: 2 elements leave no degree of freedom)
  { "var correction=2", function(x, d, k) return x:var(d, { keepdim = k, correction = 2 }) end, nil,
    function(d) return d and #d == 1 and d[1] == 1 end },
  { "std", function(x, d, k) return x:std(d, { keepdim = k }) end },
  { "std correction=0", function(x, d, k) return x:std(d, { keepdim = k, correction = 0 }) end },
  { "norm p=2", function(x, d, k) return vl.norm(x, 2, d, { keepdim = k }) end },
  { "norm p=1", function(x, d, k) return vl.norm(x, 1, d, { keepdim = k }) end, signed },
  { "norm p=3", function(x, d, k) return vl.norm(x, 3, d, { keepdim = k }) end, signed },
  { "norm p=0.5", function(x, d, k) return vl.norm(x, 0.5, d, { keepdim = k }) end, signed },
  { "norm p=-2", function(x, d, k) return vl.norm(x, -2, d, { keepdim = k }) end, signed },
  { "norm p=inf", function(x, d, k) return vl.norm(x, "inf", d, { keepdim = k }) end, signed },
  { "norm p=-inf", function(x, d, k) return vl.norm(x, "-inf", d, { keepdim = k }) end, signed },
  { "norm p=0", function(x, d, k) return vl.norm(x, 0, d, { keepdim = k }) end, signed },
}
-- ops along exactly one dim (keepdim where the op has it)
local dim_ops = {
  { "max values", function(x, d, k) return (x:max(d, { keepdim = k })) end },
  { "min values", function(x, d, k) return (x:min(d, { keepdim = k })) end },
  { "softmax", function(x, d) return vl.softmax(x, d) end },
  { "log_softmax", function(x, d) return vl.log_softmax(x, d) end },
  { "cumsum", function(x, d) return vl.cumsum(x, d) end },
}

local DIM_SETS = { false, { 1 }, { 2 }, { -1 }, { 1, 3 }, { 3, 2 } }

local function dims_label(d)
  return d and ("{" .. table.concat(d, ",") .. "}") or "all"
end

local function make_input(op, shape)
  local gen = op[3] or function(s) return uniform(s, -2, 2) end
  return gen(shape)
end

describe("gradcheck of the reductions (float64)", function()
  for _, op in ipairs(ops) do
    for _, d in ipairs(DIM_SETS) do
      for _, keep in ipairs(op[4] and op[4](d) and {} or { false, true }) do
        local label = op[1] .. " dims=" .. dims_label(d) .. " keepdim=" .. tostring(keep)
        it(label .. ", contiguous", function()
          local x = make_input(op, SHAPE):requires_grad(true)
          gradcheck(function(a) return op[2](a, d or nil, keep) end, { x }, label)
        end)
        it(label .. ", transposed", function()
          local x = make_input(op, { 4, 3, 2 }):transpose(1, 3):requires_grad(true) -- shape {2, 3, 4}
          assert.is_false(x:is_contiguous())
          gradcheck(function(a) return op[2](a, d or nil, keep) end, { x }, label)
        end)
      end
    end
    it(op[1] .. " of an expanded input (gradients summed over the broadcast dim)", function()
      local x = make_input(op, { 2, 1, 4 }):requires_grad(true)
      gradcheck(function(a) return op[2](a:expand(2, 3, 4), { 2, 3 }, false) end, { x }, op[1])
      gradcheck(function(a) return op[2](a:expand(2, 3, 4), nil, true) end, { x }, op[1])
    end)
    it(op[1] .. " of a narrowed input", function()
      local x = make_input(op, { 3, 5 }):requires_grad(true)
      gradcheck(function(a) return op[2](a:narrow(2, 2, 3), { 1 }, false) end, { x }, op[1])
    end)
  end
end)

describe("gradcheck of the ops along one dim (float64)", function()
  for _, op in ipairs(dim_ops) do
    for _, d in ipairs({ 1, 2, 3, -1 }) do
      for _, keep in ipairs({ false, true }) do
        local label = op[1] .. " dim=" .. d .. " keepdim=" .. tostring(keep)
        it(label, function()
          local x = uniform(SHAPE, -2, 2):requires_grad(true)
          gradcheck(function(a) return op[2](a, d, keep) end, { x }, label)
          local xt = uniform({ 4, 3, 2 }, -2, 2):transpose(1, 3):requires_grad(true)
          gradcheck(function(a) return op[2](a, d, keep) end, { xt }, label .. " transposed")
        end)
      end
    end
    it(op[1] .. " of an expanded input", function()
      local x = uniform({ 2, 1, 4 }, -2, 2):requires_grad(true)
      gradcheck(function(a) return op[2](a:expand(2, 3, 4), 2, false) end, { x }, op[1])
      gradcheck(function(a) return op[2](a:expand(2, 3, 4), 3, true) end, { x }, op[1])
    end)
    it(op[1] .. " of a 1-d input with long rows", function()
      local x = uniform({ 40 }, -3, 3):requires_grad(true)
      gradcheck(function(a) return op[2](a, 1, false) end, { x }, op[1])
    end)
  end

  it("softmax with a column block wider than one task (a leading dim, many columns)", function()
    local x = uniform({ 3, 70 }, -2, 2):requires_grad(true)
    local w = uniform({ 3, 70 }, -1, 1)
    gradcheck(function(a) return vl.softmax(a, 1) * w end, { x }, "softmax dim 1")
    gradcheck(function(a) return vl.log_softmax(a, 1) * w end, { x }, "log_softmax dim 1")
    gradcheck(function(a) return vl.cumsum(a, 1) * w end, { x }, "cumsum dim 1")
  end)

  it("reductions composed: the gradient flows through two reductions", function()
    local x = uniform({ 3, 4 }, -2, 2):requires_grad(true)
    gradcheck(function(a) return vl.softmax(a, 2):logsumexp(1) end, { x })
    gradcheck(function(a) return a:var(2):sqrt() * a:amax(2) end, { x })
    gradcheck(function(a) return vl.cumsum(vl.log_softmax(a, 1), 2):std() end, { x })
  end)
end)

describe("closed-form gradients", function()
  it("sum and mean broadcast the gradient back", function()
    local x = leaf({ { 1, 2, 3 }, { 4, 5, 6 } })
    x:sum(2):backward(vl.tensor({ 10, 20 }, F64))
    assert.are.same({ 10, 10, 10, 20, 20, 20 }, flat(x.grad))
    x.grad = nil
    x:mean(1, { keepdim = true }):backward(vl.tensor({ { 2, 4, 6 } }, F64))
    assert.are.same({ 1, 2, 3, 1, 2, 3 }, flat(x.grad))
    x.grad = nil
    x:mean():backward()
    assert_close(flat(x.grad), { 1 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6 }, 1e-15, "mean all")
  end)

  it("amax/amin and x:max() split the gradient evenly among ties (as torch.amax)", function()
    local x = leaf({ 1, 3, 3, 2 })
    x:amax():backward()
    assert.are.same({ 0, 0.5, 0.5, 0 }, flat(x.grad))
    x.grad = nil
    x:max():backward()
    assert.are.same({ 0, 0.5, 0.5, 0 }, flat(x.grad))
    local y = leaf({ { 5, 1, 1 }, { 2, 2, 2 } })
    y:amin(2):backward(vl.tensor({ 1, 3 }, F64))
    assert.are.same({ 0, 0.5, 0.5, 1, 1, 1 }, flat(y.grad))
    y.grad = nil
    y:min():backward()
    assert.are.same({ 0, 0.5, 0.5, 0, 0, 0 }, flat(y.grad))
  end)

  it("max/min along a dim send the whole gradient to the returned index", function()
    local x = leaf({ { 1, 3, 3 }, { 7, 7, 0 } })
    local v, i = x:max(2)
    assert.are.same({ 2, 1 }, flat(i))
    v:backward(vl.tensor({ 10, 20 }, F64))
    assert.are.same({ 0, 10, 0, 20, 0, 0 }, flat(x.grad))
    x.grad = nil
    local w, j = x:min(1, { keepdim = true })
    assert.are.same({ 1, 1, 2 }, flat(j))
    w:backward(vl.tensor({ { 1, 2, 3 } }, F64))
    assert.are.same({ 1, 2, 0, 0, 0, 3 }, flat(x.grad))
    -- the indices returned to Lua stay 1-based after backward
    assert.are.same({ 1, 1, 2 }, flat(j))
  end)

  it("Lua multiple returns: values get a grad_fn, the indices none", function()
    local x = uniform({ 3, 4 }, -1, 1):requires_grad(true)
    local v, i = x:max(2)
    assert.are.equal("max", v.grad_fn)
    assert.is_true(v:requires_grad())
    assert.is_nil(i.grad_fn)
    assert.is_false(i:requires_grad())
    local w, j = vl.min(x, 1)
    assert.are.equal("min", w.grad_fn)
    assert.is_nil(j.grad_fn)
    v:sum():backward()
    local g, ii = flat(x.grad), flat(i)
    for r = 1, 3 do
      for c = 1, 4 do
        assert.are.equal(c == ii[r] and 1 or 0, g[(r - 1) * 4 + c])
      end
    end
  end)

  it("prod: g * prod / x without zeros, the product of the others at a lone zero", function()
    local x = leaf({ 2, 3, 4 })
    x:prod():backward()
    assert.are.same({ 12, 8, 6 }, flat(x.grad))
    local z = leaf({ 2, 0, 3 })
    z:prod():backward()
    assert.are.same({ 0, 6, 0 }, flat(z.grad))
    local zz = leaf({ 0, 5, 0 })
    zz:prod():backward()
    assert.are.same({ 0, 0, 0 }, flat(zz.grad))
    -- per row: no zero, one zero, two zeros; and a zero in another row only
    local m = leaf({ { 1, 2, 3 }, { 4, 0, 5 }, { 0, 0, 6 } })
    m:prod(2):backward(vl.tensor({ 1, 2, 3 }, F64))
    assert.are.same({ 6, 3, 2, 0, 40, 0, 0, 0, 0 }, flat(m.grad))
    m.grad = nil
    -- columns: one zero (1*4*0), two zeros (2*0*0), none (3*5*6)
    m:prod(1):backward(vl.ones({ 3 }, F64))
    assert.are.same({ 0, 0, 30, 0, 0, 18, 4, 0, 15 }, flat(m.grad))
  end)

  it("prod's gradient at zeros agrees with central differences (prod is a polynomial)", function()
    local v = uniform({ 3, 4 }, -2, 2):totable()
    v[2][3], v[3][1], v[3][4] = 0, 0, 0
    local x = leaf(v)
    gradcheck(function(a) return a:prod(2) end, { x }, "prod rows")
    gradcheck(function(a) return a:prod(1, { keepdim = true }) end, { x }, "prod cols")
    gradcheck(function(a) return a:prod() end, { x }, "prod all")
    gradcheck(function(a) return a:t():prod(1) end, { x }, "prod transposed")
  end)

  it("logsumexp's gradient is the softmax", function()
    local x = leaf({ { 0, math.log(3) }, { 1, 1 } })
    x:logsumexp(2):backward(vl.tensor({ 1, 2 }, F64))
    assert_close(flat(x.grad), { 0.25, 0.75, 1, 1 }, 1e-15, "logsumexp")
  end)

  it("var and std with a correction", function()
    local x = leaf({ 1, 2, 6 }) -- mean 3, deviations -2, -1, 3
    x:var():backward() -- 2 d / (n - 1)
    assert_close(flat(x.grad), { -2, -1, 3 }, 1e-15, "var")
    x.grad = nil
    x:var(1, { correction = 0 }):backward() -- 2 d / n
    assert_close(flat(x.grad), { -4 / 3, -2 / 3, 2 }, 1e-15, "var correction=0")
    x.grad = nil
    local s = x:std() -- sqrt(7)
    s:backward() -- d / ((n - 1) std)
    local r = math.sqrt(7)
    assert_close(flat(x.grad), { -2 / (2 * r), -1 / (2 * r), 3 / (2 * r) }, 1e-15, "std")
    -- a constant row: std 0, gradient 0 (torch), not 0/0
    local c = leaf({ { 1, 1, 1 }, { 1, 2, 3 } })
    c:std(2):backward(vl.ones({ 2 }, F64))
    assert_close(flat(c.grad), { 0, 0, 0, -0.5, 0, 0.5 }, 1e-15, "std of a constant row")
  end)

  it("norms: the 2-norm has gradient 0 where the norm is 0 (torch), p=1 gives sign(x)", function()
    local z = leaf({ { 0, 0 }, { 3, 4 } })
    vl.norm(z, 2, 2):backward(vl.tensor({ 1, 10 }, F64))
    assert_close(flat(z.grad), { 0, 0, 6, 8 }, 1e-15, "norm 2")
    z.grad = nil
    vl.norm(z, 3, 2):backward(vl.ones({ 2 }, F64))
    local n3 = (27 + 64) ^ (1 / 3)
    assert_close(flat(z.grad), { 0, 0, 9 / n3 ^ 2, 16 / n3 ^ 2 }, 1e-14, "norm 3")
    z.grad = nil
    vl.norm(z, 0.5, 2):backward(vl.ones({ 2 }, F64))
    local nh = (math.sqrt(3) + 2) ^ 2
    assert_close(flat(z.grad), { 0, 0, (nh / 3) ^ 0.5, (nh / 4) ^ 0.5 }, 1e-14, "norm 0.5")
    local x = leaf({ -2, 0, 3 })
    vl.norm(x, 1):backward()
    assert.are.same({ -1, 0, 1 }, flat(x.grad))
    x.grad = nil
    vl.norm(x, 0):backward()
    assert.are.same({ 0, 0, 0 }, flat(x.grad))
  end)

  it("the inf-norm splits the gradient among the ties of |x|, with their signs", function()
    local x = leaf({ -3, 3, 1 })
    vl.norm(x, "inf"):backward()
    assert.are.same({ -0.5, 0.5, 0 }, flat(x.grad))
    x.grad = nil
    vl.norm(x, "-inf"):backward()
    assert.are.same({ 0, 0, 1 }, flat(x.grad))
  end)

  it("softmax, log_softmax and cumsum in closed form", function()
    local x = leaf({ 0, math.log(3) }) -- softmax {1/4, 3/4}
    vl.softmax(x, 1):backward(vl.tensor({ 1, 0 }, F64))
    -- y (g - <g, y>) = {1/4 (1 - 1/4), 3/4 (0 - 1/4)}
    assert_close(flat(x.grad), { 3 / 16, -3 / 16 }, 1e-15, "softmax")
    x.grad = nil
    vl.log_softmax(x, 1):backward(vl.tensor({ 1, 2 }, F64))
    -- g - softmax * sum g = {1 - 3/4, 2 - 9/4}
    assert_close(flat(x.grad), { 0.25, -0.25 }, 1e-15, "log_softmax")
    local c = leaf({ { 1, 2, 3 }, { 4, 5, 6 } })
    vl.cumsum(c, 2):backward(vl.tensor({ { 1, 2, 3 }, { 1, 1, 1 } }, F64))
    assert.are.same({ 6, 5, 3, 3, 2, 1 }, flat(c.grad))
    c.grad = nil
    vl.cumsum(c, 1):backward(vl.tensor({ { 1, 2, 3 }, { 10, 20, 30 } }, F64))
    assert.are.same({ 11, 22, 33, 10, 20, 30 }, flat(c.grad))
  end)

  it("a full graph: vl.log_softmax(x, 2):mean():backward()", function()
    local x = uniform({ 3, 5 }, -2, 2):requires_grad(true)
    vl.log_softmax(x, 2):mean():backward()
    -- d/dx of mean(log_softmax) = (1 - 5 softmax) / 15
    local sm = flat(vl.softmax(x:detach(), 2))
    local want = {}
    for i = 1, 15 do want[i] = (1 - 5 * sm[i]) / 15 end
    assert_close(flat(x.grad), want, 1e-14, "log_softmax mean")
    -- the rows of the gradient sum to 0
    local rows = flat(x.grad:sum(2))
    for i = 1, 3 do assert.is_true(math.abs(rows[i]) < 1e-15) end
  end)
end)

describe("float32 gradients match float64", function()
  local function check(label, fn, gen)
    it(label, function()
      local x64 = (gen and gen({ 4, 6 }) or uniform({ 4, 6 }, -2, 2))
      local x32 = x64:float():requires_grad(true)
      x64 = x64:clone():requires_grad(true)
      local y64, y32 = fn(x64), fn(x32)
      assert.are.equal("float32", y32.dtype)
      local w = uniform(y64:size(), 0.5, 1.5)
      y64:backward(w)
      y32:backward(w:float())
      assert.are.equal("float32", x32.grad.dtype)
      assert_close(flat(x32.grad), flat(x64.grad), 1e-4, label)
    end)
  end
  check("sum", function(x) return x:sum(2) end)
  check("mean", function(x) return x:mean(1, { keepdim = true }) end)
  check("prod", function(x) return x:prod(2) end, signed)
  check("amax", function(x) return x:amax(1) end)
  check("amin", function(x) return x:amin() end)
  check("logsumexp", function(x) return x:logsumexp(2) end)
  check("var", function(x) return x:var(2) end)
  check("std", function(x) return x:std(1, { keepdim = true }) end)
  check("norm 2", function(x) return vl.norm(x, 2, 2) end)
  check("norm 3", function(x) return vl.norm(x, 3, 1) end, signed)
  check("norm inf", function(x) return vl.norm(x, "inf", 2) end, signed)
  check("max values", function(x) return (x:max(2)) end)
  check("softmax", function(x) return vl.softmax(x, 2) end)
  check("softmax dim 1", function(x) return vl.softmax(x, 1) end)
  check("log_softmax", function(x) return vl.log_softmax(x, 1) end)
  check("cumsum", function(x) return vl.cumsum(x, 2) end)
end)

describe("what records no graph", function()
  it("reductions of integer inputs", function()
    local i = vl.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "int64" })
    for _, y in ipairs({ i:sum(), i:mean(), i:prod(1), i:amax(), i:logsumexp(2), i:var(), vl.norm(i),
      vl.softmax(i, 1), vl.log_softmax(i, 2), vl.cumsum(i, 1), (i:max(1)) }) do
      assert.is_false(y:requires_grad())
      assert.is_nil(y.grad_fn)
    end
    assert.has_error(function() i:requires_grad(true) end)
  end)

  it("all, any, argmax, argmin and the indices of a grad-requiring input", function()
    local x = uniform({ 3, 4 }, -1, 1):requires_grad(true)
    local outs = { x:all(), x:any(2), x:argmax(), x:argmin(1), select(2, x:max(1)), select(2, x:min(2)) }
    for _, y in ipairs(outs) do
      assert.is_false(y:requires_grad())
      assert.is_nil(y.grad_fn)
    end
  end)

  it("inside vl.no_grad", function()
    local x = uniform({ 3, 4 }, -1, 1):requires_grad(true)
    local y = vl.no_grad(function() return vl.softmax(x, 2):sum(1) end)
    assert.is_false(y:requires_grad())
  end)

  it("the grad_fn names", function()
    local x = uniform({ 3, 4 }, 0.5, 1):requires_grad(true)
    local names = {
      sum = x:sum(), mean = x:mean(1), prod = x:prod(), amax = x:amax(2), amin = x:amin(),
      logsumexp = x:logsumexp(1), var = x:var(), std = x:std(2), norm = vl.norm(x),
      softmax = vl.softmax(x, 1), log_softmax = vl.log_softmax(x, 2), cumsum = vl.cumsum(x, 2),
    }
    for name, y in pairs(names) do assert.are.equal(name, y.grad_fn) end
  end)
end)

describe("0-d, empty and already-reduced results still record", function()
  it("0-d inputs", function()
    local x = vl.tensor(2.5, F64):requires_grad(true)
    for _, f in ipairs({
      function(a) return a:sum() end, function(a) return a:mean(1) end, function(a) return a:prod() end,
      function(a) return a:amax() end, function(a) return a:logsumexp() end,
      function(a) return vl.norm(a, 3) end, function(a) return (a:max(1)) end,
      function(a) return vl.softmax(a, 1) end, function(a) return vl.log_softmax(a, 1) end,
      function(a) return vl.cumsum(a, 1) end,
    }) do
      local y = f(x)
      assert.are.equal(0, y:dim())
      assert.is_true(y:requires_grad())
      gradcheck(f, { x })
    end
    x.grad = nil
    x:sum():backward()
    assert.are.equal(1, x.grad:item())
    x.grad = nil
    local v = x:max(1)
    v:backward()
    assert.are.equal(1, x.grad:item())
  end)

  it("a reduction over size-1 dims and a full reduction of one element", function()
    local x = uniform({ 3, 1 }, -1, 1):requires_grad(true)
    gradcheck(function(a) return a:sum(2) end, { x })
    gradcheck(function(a) return a:amax(2, { keepdim = true }) end, { x })
    gradcheck(function(a) return (a:max(2)) end, { x })
    local one = uniform({ 1, 1 }, -1, 1):requires_grad(true)
    gradcheck(function(a) return a:prod() end, { one })
    gradcheck(function(a) return vl.norm(a) end, { one })
  end)

  it("empty inputs: the result records and backward gives an empty gradient", function()
    local e = vl.zeros({ 3, 0 }, F64):requires_grad(true)
    local outs = { e:sum(), e:sum(2), e:mean(2), e:prod(2, { keepdim = true }), e:logsumexp(2), e:var(2),
      vl.norm(e, 2, 2), e:amax(1), vl.softmax(e, 2), vl.log_softmax(e, 1), vl.cumsum(e, 2), (e:max(1)) }
    for k, y in ipairs(outs) do
      assert.is_true(y:requires_grad(), "output " .. k)
      assert.is_not_nil(y.grad_fn, "output " .. k)
      e.grad = nil
      y:backward(vl.ones(y:size(), F64))
      assert.are.same({ 3, 0 }, e.grad:size())
    end
    -- sum of an empty tensor is 0 with a zero gradient over nothing
    local s = e:sum()
    assert.are.equal(0, s:item())
  end)
end)

describe("graph memory", function()
  it("a reduction's saved input and output are freed by backward", function()
    local n = 50000
    collectgarbage("collect")
    local x = vl.rand({ 2, n }, F64):requires_grad(true)
    collectgarbage("collect")
    collectgarbage("collect")
    local base = vl.memory_in_use()
    local sm = vl.softmax(x, 2) -- saves its output (2n doubles)
    local y = sm:logsumexp(2)   -- saves sm (already counted) and its own output
    sm = nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(base + 2 * n * 8 + 2 * 8, vl.memory_in_use())
    y:backward(vl.ones({ 2 }, F64))
    collectgarbage("collect")
    collectgarbage("collect")
    -- left: y and x.grad; softmax's output went with the saved tensors
    assert.are.equal(base + 2 * 8 + 2 * n * 8, vl.memory_in_use())
    y = nil
    x.grad = nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(base, vl.memory_in_use())
  end)

  it("max along a dim keeps only a copy of the indices, freed with the graph", function()
    collectgarbage("collect")
    local x = vl.rand({ 1000, 10 }, F64):requires_grad(true)
    collectgarbage("collect")
    collectgarbage("collect")
    local base = vl.memory_in_use()
    local v, i = x:max(2)
    i = nil
    collectgarbage("collect")
    collectgarbage("collect")
    -- v (1000 doubles) and the saved indices (1000 int64)
    assert.are.equal(base + 1000 * 8 + 1000 * 8, vl.memory_in_use())
    v:sum():backward()
    v = nil
    x.grad = nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(base, vl.memory_in_use())
  end)

  it("backward refuses an input changed in place after the reduction saved it", function()
    local x = uniform({ 3, 4 }, 0.5, 1)
    local xr = x:detach():requires_grad(true)
    local y = xr:prod()
    x:fill_(2)
    local ok, err = pcall(function() y:backward() end)
    assert.is_false(ok)
    assert.matches("modified by an in%-place operation", err)
  end)
end)
