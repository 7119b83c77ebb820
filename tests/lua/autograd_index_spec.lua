local vl = require "vl"

-- Reverse-mode gradients of joining, indexing and ordering (ops/index.c, ops/sort.c):
-- cat, stack, split/chunk (views), gather, scatter, index_select,
-- masked_select, sort/topk values, flip, roll, repeat, tril, triu, and
-- the in-place scatters, which are not differentiable.
-- References: central differences in float64 (vl.gradcheck) and closed
-- forms (each gradient counts how often an input element reached the
-- output: repeated indices, repeated blocks).
-- Index values are 1-based in Lua.

local F64 = { dtype = "float64" }

local function randn(shape)
  return vl.randn(shape, F64):requires_grad(true)
end

-- a float64 leaf of `shape` laid out transposed (last two dims swapped in memory)
local function randn_t(shape)
  local n = #shape
  local s = {}
  for i = 1, n do s[i] = shape[i] end
  s[n - 1], s[n] = shape[n], shape[n - 1]
  local t = vl.randn(s, F64):transpose(n - 1, n)
  assert(not t:is_contiguous())
  return t:requires_grad(true)
end

local function leaf(values, dt)
  return vl.tensor(values, { dtype = dt or "float64" }):requires_grad(true)
end

local function flat(t)
  return t:reshape(-1):totable()
end

local function assert_close(got, want, tol, label)
  assert.are.equal(#want, #got, label .. ": element count")
  for i = 1, #want do
    local g, w = got[i], want[i]
    if not (math.abs(g - w) <= tol * (1 + math.abs(w))) then
      error(string.format("%s: element %d is %.17g, expected %.17g", label, i, g, w), 2)
    end
  end
end

local function gradcheck(fn, inputs, opts)
  local ok, msg = vl.gradcheck(fn, inputs, opts)
  assert(ok, msg)
end

-- the gradient of sum(fn(x)) for an x of `shape` with the given values
local function grad_of(fn, x)
  x.grad = nil
  local y = fn(x)
  y:backward(vl.ones(y:size(), { dtype = y.dtype }))
  return flat(x.grad)
end

local function idx(values) return vl.tensor(values, { dtype = "int64" }) end

-- both the contiguous and the transposed layout of a [r, c] leaf
local function layouts(r, c)
  return { { "contiguous", randn({ r, c }) }, { "transposed", randn_t({ r, c }) } }
end

-- ------------------------------------------------------------------
-- cat, stack, split, chunk
-- ------------------------------------------------------------------

describe("autograd of cat and stack", function()
  vl.manual_seed(11)
  for dim = 1, 3 do
    it("cat of 3 tensors along dim " .. dim .. ", one without grad", function()
      local s1, s2, s3 = { 2, 3, 4 }, { 2, 3, 4 }, { 2, 3, 4 }
      s2[dim], s3[dim] = 1, 3
      local a, b = randn(s1), vl.randn(s2, F64)
      local c = randn(s3)
      local y = vl.cat({ a, b, c }, dim)
      assert.are.equal("cat", y.grad_fn)
      gradcheck(function(p, q) return vl.cat({ p, b, q }, dim) end, { a, c })
      gradcheck(function(p, q) return vl.cat({ p, b, q }, -4 + dim) end, { a, c })
      assert.is_nil(b.grad)
    end)
  end

  it("cat of transposed and narrowed inputs, an input used twice", function()
    local a = randn_t({ 3, 4 })
    local b = randn({ 3, 6 })
    gradcheck(function(p, q) return vl.cat({ p, q:narrow(2, 2, 3), p }, 2) end, { a, b })
    -- a appears twice: its gradient is the sum of both slices
    local g = grad_of(function(p) return vl.cat({ p, p }, 1) end, a)
    for _, v in ipairs(g) do assert.are.equal(2, v) end
  end)

  it("cat promotes dtypes; each gradient comes back in its input's dtype", function()
    local a = leaf({ { 1, 2 } }, "float32")
    local b = leaf({ { 3, 4 } }, "float64")
    local i = vl.tensor({ { 5, 6 } }, { dtype = "int64" })
    local y = vl.cat({ a, b, i }, 1)
    assert.are.equal("float64", y.dtype)
    y:backward(vl.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, F64))
    assert.are.equal("float32", a.grad.dtype)
    assert.are.equal("float64", b.grad.dtype)
    assert.are.same({ 1, 2 }, flat(a.grad))
    assert.are.same({ 3, 4 }, flat(b.grad))
  end)

  it("cat skips legacy empty 1-D inputs, which get an empty gradient", function()
    local e = randn({ 0 })
    local a = randn({ 2, 3 })
    gradcheck(function(p, q) return vl.cat({ p, q, p }, 2) end, { e, a })
    vl.cat({ e, a }, 1):backward(vl.ones({ 2, 3 }, F64))
    assert.are.same({ 0 }, e.grad:size())
  end)

  for dim = 1, 3 do
    it("stack along dim " .. dim, function()
      local a, b = randn({ 2, 3 }), randn_t({ 2, 3 })
      local y = vl.stack({ a, b }, dim)
      assert.are.equal("stack", y.grad_fn)
      gradcheck(function(p, q) return vl.stack({ p, q, p }, dim) end, { a, b })
    end)
  end

  it("stack of 0-d tensors and of tensors with different dtypes", function()
    local a, b = randn({}), randn({})
    gradcheck(function(p, q) return vl.stack({ p, q }) end, { a, b })
    local c = leaf({ 1, 2 }, "float32")
    local d = leaf({ 3, 4 })
    vl.stack({ c, d }, 2):backward(vl.tensor({ { 1, 2 }, { 3, 4 } }, F64))
    assert.are.equal("float32", c.grad.dtype)
    assert.are.same({ 1, 3 }, flat(c.grad))
    assert.are.same({ 2, 4 }, flat(d.grad))
  end)
end)

describe("split and chunk pieces are differentiable views", function()
  vl.manual_seed(12)
  it("pieces used separately: each part of the gradient lands in its slice", function()
    local x = randn({ 5, 4 })
    local p = x:split(2, 1) -- rows 1-2, 3-4, 5
    assert.are.equal(3, #p)
    assert.is_true(p[1]:requires_grad())
    local y = p[1]:exp():sum() + (p[3] * 3):sum()
    y:backward()
    local g = x.grad
    local xe = x:detach():exp()
    for i = 1, 5 do
      for j = 1, 4 do
        local want = (i <= 2) and xe[i][j] or (i == 5 and 3 or 0)
        assert_close({ g[i][j] }, { want }, 1e-14, ("x[%d][%d]"):format(i, j))
      end
    end
  end)

  it("split with sizes and chunk pass gradcheck, contiguous and transposed", function()
    for _, l in ipairs(layouts(4, 6)) do
      local x = l[2]
      gradcheck(function(t)
        local p = t:split({ 1, 3, 2 }, 2)
        return vl.cat({ p[3] * 2, p[1]:tanh(), p[2] }, 2)
      end, { x })
      gradcheck(function(t)
        local c = t:chunk(3, 1)
        return c[1] * c[2] - c[2]:square()
      end, { x })
    end
  end)
end)

-- ------------------------------------------------------------------
-- gather, scatter, index_select, masked_select
-- ------------------------------------------------------------------

describe("autograd of gather and scatter", function()
  vl.manual_seed(21)
  it("gather with repeated indices passes gradcheck along each dim", function()
    for _, l in ipairs(layouts(3, 4)) do
      local x = l[2]
      gradcheck(function(t) return t:gather(2, idx({ { 1, 1, 4 }, { 2, 2, 2 }, { 4, 3, 1 } })) end, { x })
      gradcheck(function(t) return t:gather(1, idx({ { 1, 3, 3, 1 }, { 1, 1, 1, 2 } })) end, { x })
    end
  end)

  it("gather's gradient counts how often each element was picked", function()
    local x = randn({ 2, 3 })
    local g = grad_of(function(t) return t:gather(2, idx({ { 1, 1, 1, 3 }, { 2, 3, 2, 2 } })) end, x)
    assert.are.same({ 3, 0, 1, 0, 3, 1 }, g)
    assert.are.equal("gather", x:gather(1, idx({ { 1 } })).grad_fn)
  end)

  it("gather with an index smaller than the input, and an int32 index", function()
    local x = randn({ 4, 5 })
    gradcheck(function(t) return t:gather(1, idx({ { 4, 1 }, { 2, 2 } })) end, { x })
    local i32 = vl.tensor({ { 2, 2, 1 } }, { dtype = "int32" })
    gradcheck(function(t) return t:gather(2, i32) end, { x })
  end)

  it("scatter passes gradcheck for self and src, indices unique", function()
    for _, l in ipairs(layouts(3, 5)) do
      local x = l[2]
      local src = randn({ 2, 4 })
      local index = idx({ { 5, 1, 3 }, { 2, 4, 1 } })
      gradcheck(function(t, s) return t:scatter(2, index, s) end, { x, src })
      gradcheck(function(t, s) return t:scatter(1, idx({ { 3, 1, 2, 1, 2 } }), s) end, { x, randn({ 1, 5 }) })
    end
  end)

  it("scatter with repeated indices: the last write wins, the others get no gradient", function()
    local x = randn({ 2, 4 })
    local src = randn({ 2, 3 })
    local index = idx({ { 2, 2, 4 }, { 1, 1, 1 } })
    gradcheck(function(t, s) return t:scatter(2, index, s) end, { x, src })
    local y = x:scatter(2, index, src)
    -- the forward keeps src[1][2] at x[1][2] and src[2][3] at x[2][1]
    assert.are.equal(src[1][2], y[1][2])
    assert.are.equal(src[2][3], y[2][1])
    x.grad, src.grad = nil, nil
    y:backward(vl.tensor({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 } }, F64))
    assert.are.same({ 1, 0, 3, 0, 0, 6, 7, 8 }, flat(x.grad))
    assert.are.same({ 0, 2, 4, 0, 0, 5 }, flat(src.grad))
  end)

  it("scatter of a number, and of a 0-d src that requires grad", function()
    local x = randn({ 3, 3 })
    local index = idx({ { 1, 1 }, { 3, 2 } })
    gradcheck(function(t) return t:scatter(2, index, 0.5) end, { x })
    local v = randn({})
    gradcheck(function(t, s) return t:scatter(2, index, s) end, { x, v })
    v.grad = nil
    x:scatter(2, index, v):backward(vl.full({ 3, 3 }, 2, F64))
    assert.are.equal(6, v.grad:item()) -- three distinct places written
  end)

  it("scatter_add_ and scatter_ refuse tensors in a graph", function()
    local x = randn({ 2, 3 })
    local index = idx({ { 1, 2 } })
    local src = vl.ones({ 1, 2 }, F64)
    local ok, err = pcall(function() x:scatter_(2, index, src) end)
    assert.is_false(ok)
    assert.matches("scatter_: in%-place operation on a tensor that requires grad", tostring(err))
    ok, err = pcall(function() x:scatter_add_(2, index, src) end)
    assert.is_false(ok)
    assert.matches("scatter_add_: in%-place", tostring(err))
    local y = x * 2
    ok, err = pcall(function() y:scatter_add_(1, index, src) end)
    assert.is_false(ok)
    assert.matches("scatter_add_: in%-place operation on a tensor that requires grad %(mul%)", tostring(err))
  end)

  it("an in-place scatter of a src that requires grad is refused", function()
    local z = vl.zeros({ 2, 3 }, F64)
    local s = randn({ 1, 2 })
    local ok, err = pcall(function() z:scatter_add_(2, idx({ { 1, 2 } }), s) end)
    assert.is_false(ok)
    assert.matches("scatter_add_: src requires grad", tostring(err))
    -- fine without recording, and on detached tensors
    vl.no_grad(function() z:scatter_add_(2, idx({ { 1, 2 } }), s) end)
    z:scatter_(2, idx({ { 3, 3 } }), s:detach())
    assert.are.equal(s[1][2], z[1][3])
    local x = randn({ 2, 3 })
    vl.no_grad(function() x:scatter_(1, idx({ { 2 } }), 7) end)
    assert.are.equal(7, x[2][1])
  end)

  it("scatter_ bumps the version: a saved tensor changed by it fails backward", function()
    local w = randn({ 3 })
    local x = vl.ones({ 3 }, F64)
    local y = x * w -- saves x
    x:scatter_(1, idx({ 2 }), 5)
    local ok, err = pcall(function() y:backward(vl.ones({ 3 }, F64)) end)
    assert.is_false(ok)
    assert.matches("modified by an in%-place operation", tostring(err))
  end)
end)

describe("autograd of index_select and masked_select", function()
  vl.manual_seed(22)
  it("index_select with repeats passes gradcheck along each dim", function()
    for _, l in ipairs(layouts(3, 4)) do
      local x = l[2]
      gradcheck(function(t) return t:index_select(1, { 3, 1, 3, 3 }) end, { x })
      gradcheck(function(t) return t:index_select(2, idx({ 2, 2, 4 })) end, { x })
      gradcheck(function(t) return t:index_select(-1, vl.tensor({ 1, 4 }, { dtype = "int32" })) end, { x })
    end
    gradcheck(function(t) return t:index_select(2, { 1, 2, 1 }) end, { randn({ 2, 3, 4 }) })
  end)

  it("index_select's gradient counts the repeats", function()
    local x = randn({ 2, 3 })
    assert.are.same({ 2, 0, 1, 2, 0, 1 }, grad_of(function(t) return t:index_select(2, { 1, 3, 1 }) end, x))
    assert.are.same({ 0, 0, 0, 3, 3, 3 }, grad_of(function(t) return t:index_select(1, { 2, 2, 2 }) end, x))
    assert.are.equal("index_select", x:index_select(1, { 1 }).grad_fn)
  end)

  it("index_select on a 0-d tensor and with a 0-d index", function()
    local s = randn({})
    gradcheck(function(t) return t:index_select(1, idx({ 1, 1 })) end, { s })
    local x = randn({ 3, 2 })
    gradcheck(function(t) return t:index_select(1, vl.tensor(2)) end, { x })
  end)

  it("masked_select passes gradcheck, with a broadcast mask and a uint8 mask", function()
    for _, l in ipairs(layouts(3, 4)) do
      local x = l[2]
      local m = vl.tensor({ { true, false, true, true }, { false, false, true, false }, { true, true, false, true } })
      gradcheck(function(t) return t:masked_select(m) end, { x })
      gradcheck(function(t) return t:masked_select(vl.tensor({ true, false, false, true })) end, { x })
      gradcheck(function(t) return t:masked_select(vl.tensor({ 0, 1, 1, 0 }, { dtype = "uint8" })) end, { x })
    end
  end)

  it("masked_select with the input broadcast against the mask sums its gradient", function()
    local x = leaf({ 1, 2, 3 })
    local m = vl.tensor({ { true, false, true }, { true, true, false } })
    local y = x:masked_select(m)
    assert.are.same({ 1, 3, 1, 2 }, flat(y))
    assert.are.equal("masked_select", y.grad_fn)
    y:backward(vl.tensor({ 10, 20, 30, 40 }, F64))
    assert.are.same({ 40, 40, 20 }, flat(x.grad))
    gradcheck(function(t) return t:masked_select(m) end, { x })
  end)

  it("an empty selection gives a zero gradient", function()
    local x = randn({ 2, 2 })
    assert.are.same({ 0, 0, 0, 0 }, grad_of(function(t) return t:masked_select(vl.zeros({ 2, 2 }, { dtype = "bool" })) end, x))
  end)
end)

-- ------------------------------------------------------------------
-- sort, topk
-- ------------------------------------------------------------------

describe("autograd of sort and topk values", function()
  vl.manual_seed(31)
  it("sort values pass gradcheck along each dim, ascending and descending", function()
    for _, l in ipairs(layouts(3, 5)) do
      local x = l[2]
      gradcheck(function(t) return (t:sort()) end, { x })
      gradcheck(function(t) return (t:sort(1, { descending = true })) end, { x })
    end
  end)

  it("topk values pass gradcheck, largest and smallest", function()
    for _, l in ipairs(layouts(4, 5)) do
      local x = l[2]
      gradcheck(function(t) return (t:topk(2)) end, { x })
      gradcheck(function(t) return (t:topk(3, 1, { largest = false })) end, { x })
      gradcheck(function(t) return (t:topk(0, 1)) end, { x })
    end
  end)

  it("the values' gradient goes back to where each value came from", function()
    local x = leaf({ 3, 1, 2, 5 })
    local v, i = x:topk(2)
    assert.are.same({ 5, 3 }, flat(v))
    assert.are.same({ 4, 1 }, flat(i)) -- 1-based indices, rewritten by the binding
    assert.are.equal("topk", v.grad_fn)
    v:backward(vl.tensor({ 10, 20 }, F64))
    assert.are.same({ 20, 0, 0, 10 }, flat(x.grad))
    x.grad = nil
    local s = x:sort()
    assert.are.equal("sort", s.grad_fn)
    s:backward(vl.tensor({ 1, 2, 3, 4 }, F64))
    assert.are.same({ 3, 1, 2, 4 }, flat(x.grad))
  end)

  it("indices, argsort-like outputs and nonzero take no part in the graph", function()
    local x = randn({ 2, 3 })
    local _, i = x:sort(2)
    assert.are.equal("int64", i.dtype)
    assert.is_false(i:requires_grad())
    local _, j = x:topk(1)
    assert.is_false(j:requires_grad())
    local nz = x:nonzero()
    assert.is_false(nz:requires_grad())
    assert.is_nil(nz.grad_fn)
  end)

  it("sort of a 0-d tensor", function()
    gradcheck(function(t) return (t:sort()) end, { randn({}) })
  end)
end)

-- ------------------------------------------------------------------
-- flip, roll, repeat, tril, triu
-- ------------------------------------------------------------------

describe("autograd of flip, roll, repeat, tril, triu", function()
  vl.manual_seed(41)
  it("flip passes gradcheck over one and several dims", function()
    for _, l in ipairs(layouts(3, 4)) do
      local x = l[2]
      gradcheck(function(t) return t:flip(1) end, { x })
      gradcheck(function(t) return t:flip({ 1, 2 }) end, { x })
      gradcheck(function(t) return t:flip(-1) end, { x })
    end
    gradcheck(function(t) return t:flip({ 3, 1 }) end, { randn({ 2, 3, 4 }) })
    assert.are.equal("flip", randn({ 2 }):flip(1).grad_fn)
  end)

  it("roll passes gradcheck: dims, negative and large shifts, flattened", function()
    for _, l in ipairs(layouts(3, 4)) do
      local x = l[2]
      gradcheck(function(t) return t:roll(1, 1) end, { x })
      gradcheck(function(t) return t:roll({ -2, 7 }, { 1, 2 }) end, { x })
      gradcheck(function(t) return t:roll(5) end, { x })
      gradcheck(function(t) return t:roll(-13) end, { x })
    end
  end)

  it("roll's gradient is the output gradient rolled back", function()
    local x = leaf({ 1, 2, 3, 4 })
    local y = x:roll(1)
    assert.are.same({ 4, 1, 2, 3 }, flat(y))
    assert.are.equal("roll", y.grad_fn)
    y:backward(vl.tensor({ 10, 20, 30, 40 }, F64))
    assert.are.same({ 20, 30, 40, 10 }, flat(x.grad))
  end)

  it("repeat passes gradcheck, with new leading dims", function()
    for _, l in ipairs(layouts(2, 3)) do
      local x = l[2]
      gradcheck(function(t) return t:repeats(2, 3) end, { x })
      gradcheck(function(t) return t:repeats(2, 1, 2) end, { x })
      gradcheck(function(t) return t:repeats({ 1, 1 }) end, { x })
    end
    gradcheck(function(t) return t:repeats(3) end, { randn({}) })
    gradcheck(function(t) return t:repeats(1, 2, 1, 2, 1, 2, 1) end, { randn({ 2, 1, 2 }) })
  end)

  it("repeat's gradient sums over the repeated blocks", function()
    local x = randn({ 2, 3 })
    local g = grad_of(function(t) return t:repeats(2, 2, 3) end, x)
    for _, v in ipairs(g) do assert.are.equal(12, v) end
    local z = grad_of(function(t) return t:repeats(0, 1) end, x)
    for _, v in ipairs(z) do assert.are.equal(0, v) end
    assert.are.equal("repeat", x:repeats(1, 1).grad_fn)
  end)

  it("tril and triu pass gradcheck for several diagonals, batched", function()
    for _, l in ipairs(layouts(4, 5)) do
      local x = l[2]
      for _, k in ipairs({ 0, 1, -2, 9, -9 }) do
        gradcheck(function(t) return t:tril(k) end, { x })
        gradcheck(function(t) return t:triu(k) end, { x })
      end
    end
    gradcheck(function(t) return t:tril(-1) end, { randn({ 2, 3, 3 }) })
  end)

  it("tril and triu mask the gradient like the values", function()
    local x = randn({ 3, 3 })
    assert.are.same({ 1, 0, 0, 1, 1, 0, 1, 1, 1 }, grad_of(function(t) return t:tril() end, x))
    assert.are.same({ 0, 1, 1, 0, 0, 1, 0, 0, 0 }, grad_of(function(t) return t:triu(1) end, x))
    assert.are.equal("triu", x:triu().grad_fn)
  end)
end)

-- ------------------------------------------------------------------
-- float32 against float64, a combined graph, memory
-- ------------------------------------------------------------------

describe("index ops in larger graphs", function()
  vl.manual_seed(51)
  local function chain(x, w)
    local p = x:split(2, 2)
    local h = vl.cat({ p[2]:flip(1), p[1]:roll(1, 1), (x:gather(2, idx({ { 1, 4 }, { 2, 2 }, { 3, 1 } }))) }, 2)
    h = vl.stack({ h, h:tril() }, 1):matmul(w)
    local v = h:reshape(-1):sort()
    return (v:topk(5) * v:narrow(1, 1, 5)):sum() + h:masked_select(h:gt(0)):sum()
      + x:index_select(1, { 3, 3 }):repeats(2, 1):triu():sum()
  end

  it("a chain of every op passes gradcheck", function()
    gradcheck(chain, { randn({ 3, 4 }), randn({ 6, 2 }) })
  end)

  it("float32 gradients agree with float64 ones to 1e-4", function()
    local x64, w64 = randn({ 3, 4 }), randn({ 6, 2 })
    local x32 = x64:detach():float():requires_grad(true)
    local w32 = w64:detach():float():requires_grad(true)
    chain(x64, w64):backward()
    chain(x32, w32):backward()
    assert.are.equal("float32", x32.grad.dtype)
    assert_close(flat(x32.grad), flat(x64.grad), 1e-4, "x")
    assert_close(flat(w32.grad), flat(w64.grad), 1e-4, "w")
  end)

  it("the graph's saved tensors are freed after backward", function()
    collectgarbage("collect")
    collectgarbage("collect")
    local base = vl.memory_in_use()
    local x = vl.randn({ 100, 100 }, F64):requires_grad(true)
    local y = chain(x:narrow(1, 1, 3):narrow(2, 1, 4), vl.randn({ 6, 2 }, F64):requires_grad(true))
    y:backward()
    assert.has_error(function() y:backward() end)
    x, y = nil, nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(base, vl.memory_in_use())
  end)
end)
