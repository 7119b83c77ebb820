-- conv_spec.lua — vl.conv2d / conv1d / conv_transpose2d, max/avg/adaptive pools.
-- References: PyTorch 1.13 float64 outputs and gradients in
-- tests/fixtures/conv.lua (made by scripts/fixtures/conv.py), central
-- differences (vl.gradcheck), adjoint identities (<A x, g> = <x, A^T g>),
-- direct sums over windows, and the float64 results for other dtypes and
-- layouts.
local vl = require "vl"

local fixtures = dofile("tests/fixtures/conv.lua")

local function T(values, shape, dtype)
  return vl.tensor(values, { dtype = dtype or "float64" }):view(shape)
end

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  return t:contiguous():view(-1):totable()
end

local function assert_close(got, want, rtol, atol, what)
  rtol, atol = rtol or 1e-10, atol or 1e-10
  local g = type(got) == "table" and got or flat(got)
  assert.are.equal(#want, #g, (what or "") .. ": element count")
  for i = 1, #want do
    local tol = atol + rtol * math.abs(want[i])
    if not (math.abs(g[i] - want[i]) <= tol) then
      error(string.format("%s element %d: got %.17g, want %.17g (tol %g)", what or "", i, g[i], want[i], tol), 2)
    end
  end
end

local function same_values(a, b, tol, what)
  assert.are.same(a:size(), b:size())
  assert_close(flat(a:double()), flat(b:double()), tol or 0, tol or 0, what)
end

-- Runs a fixture case on x (and w, b) with the case's arguments.
local function call(case, x, w, b)
  local op = vl[case.op]
  if case.w_shape then return op(x, w, b, case.opts) end
  if case.kernel then return op(x, case.kernel, case.opts) end
  return op(x, case.size)
end

local function inputs(case, dtype)
  local x = T(case.x, case.x_shape, dtype)
  local w = case.w and T(case.w, case.w_shape, dtype) or nil
  local b = case.b and T(case.b, { #case.b }, dtype) or nil
  return x, w, b
end

describe("conv against PyTorch (float64)", function()
  for _, case in ipairs(fixtures) do
    it(case.name .. ": output and gradients to 1e-10", function()
      local x, w, b = inputs(case)
      x:requires_grad(true)
      if w then w:requires_grad(true) end
      if b then b:requires_grad(true) end
      local y, ind = call(case, x, w, b)
      assert.are.same(case.y_shape, y:size())
      assert.are.equal("float64", y.dtype)
      assert_close(y, case.y, 1e-10, 1e-10, "y")
      if case.indices then
        assert.are.equal("int64", ind.dtype)
        assert.are.same(case.indices, flat(ind))
      end
      y:backward(T(case.gy, case.y_shape))
      assert_close(x.grad, case.gx, 1e-10, 1e-10, "gx")
      if w then assert_close(w.grad, case.gw, 1e-10, 1e-10, "gw") end
      if b then assert_close(b.grad, case.gb, 1e-10, 1e-10, "gb") end
    end)
  end
end)

describe("conv float32", function()
  for _, case in ipairs(fixtures) do
    it(case.name .. ": agrees with float64 to 1e-4", function()
      local x, w, b = inputs(case, "float32")
      x:requires_grad(true)
      if w then w:requires_grad(true) end
      local y = call(case, x, w, b)
      assert.are.equal("float32", y.dtype)
      assert_close(y, case.y, 1e-4, 1e-4, "y")
      y:backward(T(case.gy, case.y_shape, "float32"))
      assert.are.equal("float32", x.grad.dtype)
      assert_close(x.grad, case.gx, 1e-4, 1e-4, "gx")
      if w then assert_close(w.grad, case.gw, 1e-4, 1e-4, "gw") end
    end)
  end
end)

describe("conv gradcheck", function()
  local function R(...) return vl.randn({ ... }, { dtype = "float64" }):requires_grad(true) end
  before_each(function() vl.manual_seed(7) end)

  local function check(fn, ins)
    local ok, msg = vl.gradcheck(fn, ins, { atol = 1e-6, rtol = 1e-5 })
    assert(ok, msg)
  end

  it("conv2d with stride, padding, dilation, groups and bias", function()
    check(function(x, w, b) return vl.conv2d(x, w, b, { stride = { 2, 1 }, padding = { 1, 2 }, dilation = { 1, 2 }, groups = 2 }) end,
          { R(2, 4, 5, 5), R(4, 2, 3, 2), R(4) })
  end)
  it("conv2d with 'same' padding and an even kernel", function()
    check(function(x, w) return vl.conv2d(x, w, nil, { padding = "same" }) end, { R(1, 2, 4, 5), R(2, 2, 2, 4) })
  end)
  it("depthwise conv2d, conv1d and conv_transpose2d (direct loops)", function()
    check(function(x, w, b) return vl.conv2d(x, w, b, { stride = { 2, 1 }, padding = 1, dilation = { 1, 2 }, groups = 3 }) end,
          { R(2, 3, 5, 6), R(6, 1, 3, 3), R(6) })
    check(function(x, w) return vl.conv1d(x, w, nil, { padding = 3, groups = 4 }) end, { R(2, 4, 6), R(4, 1, 4) })
    check(function(x, w) return vl.conv_transpose2d(x, w, nil, { stride = 2, groups = 2 }) end, { R(1, 2, 3, 3), R(2, 1, 2, 3) })
  end)
  it("conv2d 1x1 (no im2col)", function()
    check(function(x, w, b) return vl.conv2d(x, w, b) end, { R(2, 3, 3, 2), R(2, 3, 1, 1), R(2) })
  end)
  it("conv1d", function()
    check(function(x, w, b) return vl.conv1d(x, w, b, { stride = 2, padding = 1, dilation = 2 }) end,
          { R(2, 2, 9), R(3, 2, 3), R(3) })
  end)
  it("conv_transpose2d with output_padding and groups", function()
    check(function(x, w, b) return vl.conv_transpose2d(x, w, b, { stride = 2, padding = 1, output_padding = 1, groups = 2 }) end,
          { R(2, 4, 3, 3), R(4, 1, 3, 3), R(2) })
  end)
  it("max_pool2d (with ceil_mode and padding) and max_pool1d", function()
    check(function(x) return vl.max_pool2d(x, 3, { stride = 2, padding = 1, ceil_mode = true }) end, { R(2, 2, 6, 5) })
    check(function(x) return vl.max_pool1d(x, 2, { dilation = 2 }) end, { R(2, 2, 7) })
  end)
  it("avg_pool2d, avg_pool1d and adaptive_avg_pool2d", function()
    check(function(x) return vl.avg_pool2d(x, { 3, 2 }, { stride = 2, padding = 1, ceil_mode = true, count_include_pad = false }) end,
          { R(2, 2, 6, 5) })
    check(function(x) return vl.avg_pool1d(x, 3, { stride = 2, padding = 1 }) end, { R(1, 2, 8) })
    check(function(x) return vl.adaptive_avg_pool2d(x, { 4, 3 }) end, { R(1, 2, 7, 5) })
  end)
  it("unbatched inputs flow through the added batch dim", function()
    check(function(x, w) return vl.conv2d(x, w, nil, { padding = 1 }) end, { R(2, 4, 4), R(3, 2, 3, 3) })
    check(function(x) return vl.max_pool2d(x, 2) end, { R(2, 4, 4) })
  end)
end)

describe("conv on large inputs (threaded paths)", function()
  local function dot(a, b) return (a:double() * b:double()):sum():item() end

  -- y = A(x) (no bias) is linear in x and in w: <y, gy> = <x, gx> = <w, gw>.
  local function adjoint(x, w, opts, transposed)
    x:requires_grad(true)
    w:requires_grad(true)
    local y = transposed and vl.conv_transpose2d(x, w, nil, opts) or vl.conv2d(x, w, nil, opts)
    local gy = vl.randn(y:size(), { dtype = y.dtype })
    y:backward(gy)
    local s = dot(y, gy)
    local tol = 1e-9 * (1 + math.abs(s))
    assert(math.abs(dot(x, x.grad) - s) <= tol, "<x, gx> ~= <y, gy>")
    assert(math.abs(dot(w, w.grad) - s) <= tol, "<w, gw> ~= <y, gy>")
    return y
  end

  it("one image (parallel im2col/col2im) and a batch (images over threads) agree", function()
    vl.manual_seed(3)
    local x = vl.randn({ 3, 8, 40, 36 }, { dtype = "float64" })
    local w = vl.randn({ 6, 4, 3, 3 }, { dtype = "float64" })
    local opts = { stride = { 1, 2 }, padding = 1, groups = 2 }
    local y = adjoint(x, w, opts)
    for n = 1, 3 do
      local xn = x:detach():narrow(1, n, 1)
      local yn = adjoint(xn:clone(), w:detach():clone(), opts)
      same_values(yn, y:detach():narrow(1, n, 1), 1e-12, "image " .. n)
    end
  end)

  it("conv_transpose2d on a batch satisfies the adjoint identities", function()
    vl.manual_seed(4)
    adjoint(vl.randn({ 4, 6, 20, 18 }, { dtype = "float64" }), vl.randn({ 6, 5, 4, 3 }, { dtype = "float64" }),
            { stride = 2, padding = 1, output_padding = 1 }, true)
  end)

  it("sampled outputs equal direct sums over the window", function()
    vl.manual_seed(5)
    local x = vl.randn({ 2, 5, 30, 33 }, { dtype = "float64" })
    local w = vl.randn({ 4, 5, 3, 4 }, { dtype = "float64" })
    local b = vl.randn({ 4 }, { dtype = "float64" })
    local y = vl.conv2d(x, w, b, { stride = { 2, 3 }, dilation = { 2, 1 } })
    assert.are.same({ 2, 4, 13, 10 }, y:size())
    for _, p in ipairs { { 1, 1, 1, 1 }, { 2, 4, 13, 10 }, { 1, 3, 7, 5 }, { 2, 2, 1, 10 } } do
      local n, o, i, j = p[1], p[2], p[3], p[4]
      local win = x:select(1, n):narrow(2, (i - 1) * 2 + 1, 5):narrow(3, (j - 1) * 3 + 1, 4)
      win = win:unfold(2, 1, 2) -- rows 1, 3, 5 (dilation 2): [5, 3, 4, 1]
      local want = (win:squeeze(4) * w:select(1, o)):sum():item() + b:totable()[o]
      local got = y:select(1, n):select(1, o):select(1, i):select(1, j):item()
      assert(math.abs(got - want) < 1e-10, string.format("y[%d,%d,%d,%d] = %g, want %g", n, o, i, j, got, want))
    end
  end)

  it("gives the same float32 result for 1 and 2 threads", function()
    local threads = vl.get_num_threads()
    vl.manual_seed(6)
    local x = vl.randn({ 4, 6, 24, 24 })
    local w = vl.randn({ 8, 6, 3, 3 })
    local gy = vl.randn({ 4, 8, 24, 24 })
    local function run()
      local xr, wr = x:clone():requires_grad(true), w:clone():requires_grad(true)
      local y = vl.conv2d(xr, wr, nil, { padding = 1 })
      y:backward(gy)
      return y, xr.grad, wr.grad
    end
    vl.set_num_threads(1)
    local ok, y1, gx1, gw1 = pcall(run)
    vl.set_num_threads(threads)
    assert(ok, y1)
    local y2, gx2, gw2 = run()
    same_values(y1, y2, 1e-4, "y")
    same_values(gx1, gx2, 1e-4, "gx")
    same_values(gw1, gw2, 1e-3, "gw")
  end)
end)

describe("conv layouts and dtypes", function()
  local case = fixtures[2] -- conv2d_stride2_pad1
  it("non-contiguous input, weight and bias give the same result", function()
    local x, w, b = inputs(case)
    local xt = x:transpose(3, 4):contiguous():transpose(3, 4)      -- strided view
    local wide = vl.zeros({ case.w_shape[1], case.w_shape[2], 3, 5 }, { dtype = "float64" })
    wide:narrow(4, 2, 3):copy_(w)
    local wn = wide:narrow(4, 2, 3)                                 -- narrowed view
    local bx = vl.zeros({ 1 }, { dtype = "float64" }):expand(#case.b) -- stride 0
    assert.is_false(xt:is_contiguous())
    assert.is_false(wn:is_contiguous())
    local y = vl.conv2d(xt, wn, b, case.opts)
    assert_close(y, case.y, 1e-10, 1e-10)
    local y0 = vl.conv2d(x, w, bx, case.opts)
    local ynb = vl.conv2d(x, w, nil, case.opts)
    same_values(y0, ynb, 0)
  end)

  it("gradients of non-contiguous leaves have their shape", function()
    local x, w = inputs(case)
    local xl = x:transpose(3, 4):contiguous()
    xl:requires_grad(true)
    local y = vl.conv2d(xl:transpose(3, 4), w, nil, case.opts)
    y:backward(T(case.gy, case.y_shape))
    assert.are.same({ 2, 3, 6, 7 }, xl.grad:size())
    same_values(xl.grad:transpose(3, 4), T(case.gx, case.x_shape), 1e-10)
  end)

  it("float16 and bfloat16 are computed in float32 and keep their dtype", function()
    local x, w, b = inputs(case, "float32")
    local y32 = vl.conv2d(x, w, b, case.opts)
    for _, dt in ipairs { "float16", "bfloat16" } do
      local y = vl.conv2d(x:to(dt), w:to(dt), b:to(dt), case.opts)
      assert.are.equal(dt, y.dtype)
      local ref = vl.conv2d(x:to(dt):float(), w:to(dt):float(), b:to(dt):float(), case.opts)
      same_values(y, ref:to(dt), 0, dt)
      same_values(y:float(), y32, dt == "float16" and 0.05 or 0.3, dt)
    end
    local p = vl.max_pool2d(x:half(), 2)
    assert.are.equal("float16", p.dtype)
    same_values(p, vl.max_pool2d(x, 2):half(), 0)
    assert.are.equal("bfloat16", vl.avg_pool2d(x:bfloat16(), 2).dtype)
  end)

  it("max_pool2d takes integer inputs and returns exact values and indices", function()
    local x = vl.tensor({ { { 1, 9, 3, 4 }, { 5, 6, 7, 8 }, { 9, 10, 2, 12 }, { 13, 14, 15, 1 } } })
    for _, dt in ipairs { "int64", "int32", "uint8" } do
      local v, i = vl.max_pool2d(x:to(dt), 2, { return_indices = true })
      assert.are.equal(dt, v.dtype)
      assert.are.same({ { { 9, 8 }, { 14, 15 } } }, v:totable())
      assert.are.same({ { { 2, 8 }, { 14, 15 } } }, i:totable())
    end
    local big = vl.tensor({ { { 9007199254740993, 9007199254740992 } } }, { dtype = "int64" })
    local v = vl.max_pool1d(big, 2)
    assert.are.equal(9007199254740993, v:totable()[1][1][1])
  end)

  it("max_pool2d propagates NaN and gives its index", function()
    local x = vl.tensor({ { { 1, 0 / 0 }, { 3, 2 } } })
    local v, i = vl.max_pool2d(x, 2, { return_indices = true })
    assert(v:item() ~= v:item())
    assert.are.equal(2, i:item())
  end)

  it("max_pool2d 2x2/stride 2 in float32 (its own fast path) agrees with the general loop", function()
    -- float64 runs the general window loop; ties (values rounded to halves)
    -- must pick the first maximum, NaN the last NaN, odd sizes drop the edge
    for _, shape in ipairs { { 2, 3, 9, 41 }, { 1, 1, 28, 28 }, { 1, 2, 5, 3 }, { 1, 1, 2, 66 } } do
      local x = (vl.randn(shape, { dtype = "float64" }) * 2):floor() / 2
      x = vl.where(vl.rand(shape, { dtype = "float64" }):lt(0.05), 0 / 0, x)
      local v64, i64 = vl.max_pool2d(x, 2, { return_indices = true })
      local v32, i32 = vl.max_pool2d(x:float(), 2, { return_indices = true })
      assert.are.same(i64:totable(), i32:totable())
      -- NaN where the general loop has NaN (x ~= x), equal values elsewhere
      local nan64, nan32 = v64:ne(v64), v32:ne(v32)
      assert.are.same(nan64:totable(), nan32:totable())
      assert.are.same(vl.where(nan64, 0, v64):float():totable(), vl.where(nan32, 0, v32):totable())
      assert.is_true(nan64:sum():item() > 0 or shape[4] < 10)
    end
  end)

  it("unbatched inputs give unbatched results", function()
    local x, w, b = inputs(case)
    local y = vl.conv2d(x:select(1, 2), w, b, case.opts)
    same_values(y, vl.conv2d(x, w, b, case.opts):select(1, 2), 0)
    local x1 = vl.randn({ 3, 10 }, { dtype = "float64" })
    local w1 = vl.randn({ 2, 3, 3 }, { dtype = "float64" })
    same_values(vl.conv1d(x1, w1), vl.conv1d(x1:unsqueeze(1), w1):squeeze(1), 0)
    local v, i = vl.max_pool1d(x1, 3, { return_indices = true })
    assert.are.same({ 3, 3 }, v:size())
    assert.are.same({ 3, 3 }, i:size())
    assert.are.same({ 3, 4, 4 }, vl.adaptive_avg_pool2d(x:select(1, 1), 4):size())
    assert.are.same({ 3, 3 }, vl.avg_pool1d(x1, 3):size())
    assert.are.same({ 4, 6, 8 }, vl.conv_transpose2d(vl.randn({ 3, 3, 4 }), vl.randn({ 3, 4, 2, 2 }), nil, { stride = 2 }):size())
  end)

  it("empty batches give empty results and gradients", function()
    local x = vl.zeros({ 0, 3, 5, 5 }, { dtype = "float64" }):requires_grad(true)
    local w = vl.randn({ 4, 3, 3, 3 }, { dtype = "float64" }):requires_grad(true)
    local b = vl.randn({ 4 }, { dtype = "float64" }):requires_grad(true)
    local y = vl.conv2d(x, w, b, { padding = 1 })
    assert.are.same({ 0, 4, 5, 5 }, y:size())
    y:backward(vl.zeros({ 0, 4, 5, 5 }, { dtype = "float64" }))
    assert.are.same({ 0, 3, 5, 5 }, x.grad:size())
    assert.are.same({ 0, 0, 0, 0 }, flat(b.grad))
    assert.are.same({ 0, 3, 2, 2 }, vl.max_pool2d(vl.zeros({ 0, 3, 5, 5 }), 2):size())
    assert.are.same({ 0, 3, 2, 2 }, vl.avg_pool2d(vl.zeros({ 0, 3, 5, 5 }), 2):size())
    assert.are.same({ 2, 3, 0, 4 }, vl.adaptive_avg_pool2d(vl.zeros({ 2, 3, 5, 5 }), { 0, 4 }):size())
  end)

  it("defaults: stride = kernel for pools, 'valid' = no padding", function()
    local x = vl.randn({ 1, 2, 6, 6 }, { dtype = "float64" })
    same_values(vl.max_pool2d(x, 2), vl.max_pool2d(x, { 2, 2 }, { stride = 2, padding = 0 }), 0)
    same_values(vl.avg_pool2d(x, 3), vl.avg_pool2d(x, 3, { stride = { 3, 3 } }), 0)
    local w = vl.randn({ 3, 2, 3, 3 }, { dtype = "float64" })
    same_values(vl.conv2d(x, w, nil, { padding = "valid" }), vl.conv2d(x, w), 0)
    same_values(vl.conv2d(x, w, { padding = "same" }), vl.conv2d(x, w, nil, { padding = 1 }), 0)
  end)

  it("a graph's memory is freed after backward", function()
    collectgarbage()
    local before = vl.memory_in_use()
    do
      local x = vl.randn({ 4, 8, 32, 32 }):requires_grad(true)
      local w = vl.randn({ 8, 8, 3, 3 }):requires_grad(true)
      local y = vl.max_pool2d(vl.conv2d(x, w, nil, { padding = 1 }), 2)
      y:backward(vl.ones(y:size()))
      assert.are.same({ 4, 8, 32, 32 }, x.grad:size())
      x, w, y = nil, nil, nil
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, vl.memory_in_use())
  end)

  it("records conv2d, max_pool2d ... as grad_fn names", function()
    local x = vl.randn({ 1, 1, 4, 4 }):requires_grad(true)
    assert.are.equal("conv2d", vl.conv2d(x, vl.randn({ 1, 1, 2, 2 })).grad_fn)
    assert.are.equal("conv_transpose2d", vl.conv_transpose2d(x, vl.randn({ 1, 1, 2, 2 })).grad_fn)
    assert.are.equal("max_pool2d", vl.max_pool2d(x, 2).grad_fn)
    assert.are.equal("avg_pool2d", vl.avg_pool2d(x, 2).grad_fn)
    assert.are.equal("adaptive_avg_pool2d", vl.adaptive_avg_pool2d(x, 2).grad_fn)
    assert.is_nil(vl.no_grad(function() return vl.conv2d(x, vl.randn({ 1, 1, 2, 2 })) end).grad_fn)
  end)
end)

describe("bad input", function()
  local x = vl.randn({ 2, 3, 5, 5 })
  local w = vl.randn({ 4, 3, 3, 3 })
  local function raises(pattern, fn)
    local ok, err = pcall(fn)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
  end

  it("conv2d: channels, groups, dims, bias, sizes", function()
    raises("conv2d: input has 3 channels but weight expects 4 %(weight shape %[8,4,3,3%], groups 1%)",
           function() return vl.conv2d(x, vl.randn({ 8, 4, 3, 3 })) end)
    raises("conv2d: input has 3 channels but weight expects 6 %(weight shape %[4,3,3,3%], groups 2%)",
           function() return vl.conv2d(x, w, nil, { groups = 2 }) end)
    raises("conv2d: weight has 3 output channels, not divisible by groups 2",
           function() return vl.conv2d(vl.randn({ 1, 4, 5, 5 }), vl.randn({ 3, 2, 3, 3 }), nil, { groups = 2 }) end)
    raises("conv2d: groups must be at least 1, got 0", function() return vl.conv2d(x, w, nil, { groups = 0 }) end)
    raises("conv2d: expected a 4%-d input %[N,C,H,W%] %(or 3%-d %[C,H,W%]%), got 2%-d %[5,5%]",
           function() return vl.conv2d(vl.randn({ 5, 5 }), w) end)
    raises("conv2d: expected a 4%-d input %[N,C,H,W%] %(or 3%-d %[C,H,W%]%), got 0%-d %[%]",
           function() return vl.conv2d(vl.tensor(1.5), w) end)
    raises("conv2d: expected a 4%-d weight, got 2%-d %[4,27%]", function() return vl.conv2d(x, vl.randn({ 4, 27 })) end)
    raises("conv2d: bias must have shape %[4%] %(one per output channel%), got %[3%]",
           function() return vl.conv2d(x, w, vl.randn({ 3 })) end)
    raises("conv2d: kernel 3x3 %(dilated 5x5%) is larger than the padded input 4x4 %(input %[1,3,2,2%]%)",
           function() return vl.conv2d(vl.randn({ 1, 3, 2, 2 }), w, nil, { padding = 1, dilation = 2 }) end)
    raises("conv2d: stride must be at least 1, got {0, 0}", function() return vl.conv2d(x, w, nil, { stride = 0 }) end)
    raises("conv2d: padding must be non%-negative, got {%-1, %-1}", function() return vl.conv2d(x, w, nil, { padding = -1 }) end)
    raises("conv2d: dilation must be at least 1, got {1, 0}", function() return vl.conv2d(x, w, nil, { dilation = { 1, 0 } }) end)
  end)

  it("conv2d: options and dtypes", function()
    raises("conv2d: padding='same' needs stride 1, got stride 2",
           function() return vl.conv2d(x, w, nil, { padding = "same", stride = 2 }) end)
    raises("conv2d: padding must be a number, a table, \"same\" or \"valid\", got 'full'",
           function() return vl.conv2d(x, w, nil, { padding = "full" }) end)
    raises("conv2d: unknown option 'strides' %(expected stride, padding, dilation, groups%)",
           function() return vl.conv2d(x, w, nil, { strides = 2 }) end)
    raises("conv2d: stride must be a number or a table of 2 numbers, got a table of 3",
           function() return vl.conv2d(x, w, nil, { stride = { 1, 1, 1 } }) end)
    raises("conv2d: stride must be an integer, got 1.5", function() return vl.conv2d(x, w, nil, { stride = 1.5 }) end)
    raises("conv2d: input is float32 but weight is float64", function() return vl.conv2d(x, w:double()) end)
    raises("conv2d: expected a floating%-point input, got int64",
           function() return vl.conv2d(x:long(), w:long()) end)
    raises("tensor expected, got string", function() return vl.conv2d(x, "w") end)
  end)

  it("conv1d and conv_transpose2d", function()
    raises("conv1d: input has 3 channels but weight expects 2 %(weight shape %[4,2,3%], groups 1%)",
           function() return vl.conv1d(vl.randn({ 2, 3, 9 }), vl.randn({ 4, 2, 3 })) end)
    raises("conv1d: expected a 3%-d input %[N,C,L%] %(or 2%-d %[C,L%]%), got 4%-d", function() return vl.conv1d(x, w) end)
    raises("conv1d: kernel 5 %(dilated 9%) is larger than the padded input 6",
           function() return vl.conv1d(vl.randn({ 1, 1, 4 }), vl.randn({ 1, 1, 5 }), nil, { padding = 1, dilation = 2 }) end)
    raises("conv_transpose2d: output_padding must be smaller than stride or dilation",
           function() return vl.conv_transpose2d(x, vl.randn({ 3, 2, 3, 3 }), nil, { stride = 2, output_padding = 2 }) end)
    raises("conv_transpose2d: input has 3 channels but weight expects 4",
           function() return vl.conv_transpose2d(x, vl.randn({ 4, 2, 3, 3 })) end)
    raises("conv_transpose2d: output size %-1x%-1 is too small",
           function() return vl.conv_transpose2d(vl.randn({ 1, 1, 1, 1 }), vl.randn({ 1, 1, 1, 1 }), nil, { padding = 1 }) end)
  end)

  it("pools", function()
    raises("max_pool2d: padding {2, 2} must be at most half the kernel size {3, 3}",
           function() return vl.max_pool2d(x, 3, { padding = 2 }) end)
    raises("max_pool2d: output size 0x0 is too small: kernel {7, 7} is larger than the padded input %[2,3,5,5%]",
           function() return vl.max_pool2d(x, 7) end)
    raises("max_pool2d: kernel size must be at least 1, got {0, 0}", function() return vl.max_pool2d(x, 0) end)
    raises("max_pool2d: bool input is not supported", function() return vl.max_pool2d(x:bool(), 2) end)
    raises("max_pool2d: expected a 4%-d input", function() return vl.max_pool2d(vl.randn({ 5, 5 }), 2) end)
    raises("max_pool2d: unknown option 'return_index'", function() return vl.max_pool2d(x, 2, { return_index = true }) end)
    raises("bad argument #2 to 'max_pool2d' %(kernel size expected", function() return vl.max_pool2d(x) end)
    raises("avg_pool2d: expected a floating%-point input, got int64", function() return vl.avg_pool2d(x:long(), 2) end)
    raises("avg_pool2d: divisor_override must be positive, got 0",
           function() return vl.avg_pool2d(x, 2, { divisor_override = 0 }) end)
    raises("avg_pool1d: stride must be at least 1", function() return vl.avg_pool1d(vl.randn({ 1, 2, 8 }), 2, { stride = -1 }) end)
    raises("max_pool1d: expected a 3%-d input %[N,C,L%] %(or 2%-d %[C,L%]%), got 4%-d", function() return vl.max_pool1d(x, 2) end)
    raises("adaptive_avg_pool2d: output size must be non%-negative, got {%-1, 2}",
           function() return vl.adaptive_avg_pool2d(x, { -1, 2 }) end)
    raises("adaptive_avg_pool2d: expected non%-empty channel and spatial dims, got input %[1,3,0,4%]",
           function() return vl.adaptive_avg_pool2d(vl.zeros({ 1, 3, 0, 4 }), 2) end)
  end)
end)
