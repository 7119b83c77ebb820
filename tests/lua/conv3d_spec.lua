-- conv3d_spec.lua — vl.conv3d, vl.max_pool3d, vl.avg_pool3d,
-- vl.adaptive_avg_pool3d and the nn layers Conv3d, MaxPool3d, AvgPool3d,
-- AdaptiveAvgPool3d. References: PyTorch 1.13 float64 outputs and
-- gradients in tests/fixtures/conv3d.lua (made by
-- scripts/fixtures/conv3d.py), central differences (vl.gradcheck), and
-- conv2d on a depth-1 volume.
local vl = require "vl"
local nn = require "vl.nn"

local fixtures = dofile("tests/fixtures/conv3d.lua")

local function T(values, shape, dtype)
  return vl.tensor(values, { dtype = dtype or "float64" }):view(shape)
end

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  return t:contiguous():view(-1):totable()
end

local function assert_close(got, want, rtol, atol, what)
  local g = type(got) == "table" and got or flat(got)
  assert.are.equal(#want, #g, (what or "") .. ": element count")
  for i = 1, #want do
    local tol = atol + rtol * math.abs(want[i])
    if not (math.abs(g[i] - want[i]) <= tol) then
      error(string.format("%s element %d: got %.17g, want %.17g (tol %g)", what or "", i, g[i], want[i], tol), 2)
    end
  end
end

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

local function errors(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error was: " .. tostring(err))
end

describe("conv3d and 3-d pools against PyTorch", function()
  for _, dtype in ipairs({ "float64", "float32" }) do
    local tol = dtype == "float64" and 1e-10 or 1e-5
    for _, case in ipairs(fixtures) do
      it(case.name .. " " .. dtype .. ": output and gradients to " .. tol, function()
        local x, w, b = inputs(case, dtype)
        x:requires_grad(true)
        if w then w:requires_grad(true) end
        if b then b:requires_grad(true) end
        local y, ind = call(case, x, w, b)
        assert.are.same(case.y_shape, y:size())
        assert.are.equal(dtype, y.dtype)
        assert_close(y, case.y, tol, tol, "y")
        if case.indices then
          assert.are.equal("int64", ind.dtype)
          assert.are.same(case.indices, flat(ind))
        end
        y:backward(T(case.gy, case.y_shape, dtype))
        assert.are.equal(dtype, x.grad.dtype)
        assert_close(x.grad, case.gx, tol, tol, "gx")
        if w then assert_close(w.grad, case.gw, tol, tol, "gw") end
        if b then assert_close(b.grad, case.gb, tol, tol, "gb") end
      end)
    end
  end

  it("unbatched [C,D,H,W] gives the batched result without the batch dim", function()
    for _, case in ipairs(fixtures) do
      if case.x_shape[1] == 1 then
        local x, w, b = inputs(case)
        local xs = x:view({ table.unpack(case.x_shape, 2) })
        local y = call(case, xs, w, b)
        local want = { table.unpack(case.y_shape, 2) }
        assert.are.same(want, y:size())
        assert_close(y, case.y, 1e-10, 1e-10, case.name .. " unbatched")
      end
    end
  end)

  it("strided (non-contiguous) input gives the same result", function()
    local case = fixtures[2]
    local x, w, b = inputs(case)
    -- the same values in a transposed layout
    local xt = x:transpose(3, 5):contiguous():transpose(3, 5)
    assert.is_false(xt:is_contiguous())
    assert_close(call(case, xt, w, b), case.y, 1e-10, 1e-10, "y")
  end)
end)

describe("conv3d gradcheck (float64)", function()
  local function R(...) return vl.randn({ ... }, { dtype = "float64" }):requires_grad(true) end
  before_each(function() vl.manual_seed(11) end)
  local function check(fn, ins)
    local ok, msg = vl.gradcheck(fn, ins, { atol = 1e-6, rtol = 1e-5 })
    assert(ok, msg)
  end

  it("conv3d with stride, padding, dilation, groups and bias", function()
    check(function(x, w, b)
      return vl.conv3d(x, w, b, { stride = { 2, 1, 1 }, padding = { 1, 0, 1 }, dilation = { 1, 2, 1 }, groups = 2 })
    end, { R(2, 4, 4, 5, 3), R(4, 2, 2, 2, 3), R(4) })
  end)
  it("conv3d with 'same' padding and an even kernel", function()
    check(function(x, w) return vl.conv3d(x, w, nil, { padding = "same" }) end, { R(1, 2, 3, 4, 3), R(2, 2, 2, 3, 2) })
  end)
  it("max_pool3d with padding, dilation and ceil_mode", function()
    check(function(x) return vl.max_pool3d(x, 3, { stride = 2, padding = 1, ceil_mode = true }) end, { R(1, 2, 5, 4, 5) })
    check(function(x) return vl.max_pool3d(x, 2, { dilation = { 1, 2, 1 } }) end, { R(2, 1, 4, 5, 4) })
  end)
  it("avg_pool3d and adaptive_avg_pool3d", function()
    check(function(x) return vl.avg_pool3d(x, { 3, 2, 3 }, { stride = 2, padding = 1, ceil_mode = true, count_include_pad = false }) end,
          { R(1, 2, 5, 4, 6) })
    check(function(x) return vl.avg_pool3d(x, 2, { stride = 1, padding = 1 }) end, { R(1, 1, 3, 3, 4) })
    check(function(x) return vl.adaptive_avg_pool3d(x, { 2, 4, 3 }) end, { R(1, 2, 5, 3, 7) })
  end)
end)

describe("conv3d closed forms and edge cases", function()
  it("a depth-1 volume with a depth-1 kernel is conv2d", function()
    vl.manual_seed(3)
    local x, w, b = vl.randn({ 2, 4, 1, 6, 7 }, { dtype = "float64" }), vl.randn({ 6, 2, 1, 3, 2 }, { dtype = "float64" }),
        vl.randn({ 6 }, { dtype = "float64" })
    local y3 = vl.conv3d(x, w, b, { stride = { 1, 2, 1 }, padding = { 0, 1, 1 }, groups = 2 })
    local y2 = vl.conv2d(x:squeeze(3), w:squeeze(3), b, { stride = { 2, 1 }, padding = 1, groups = 2 })
    assert_close(y3:squeeze(3), flat(y2), 1e-12, 1e-12, "conv3d vs conv2d")
  end)

  it("an empty batch gives an empty result and empty gradients", function()
    local x = vl.zeros({ 0, 2, 4, 4, 4 }, { dtype = "float64" }):requires_grad(true)
    local w = vl.ones({ 3, 2, 3, 3, 3 }, { dtype = "float64" }):requires_grad(true)
    local y = vl.conv3d(x, w, nil, { padding = 1 })
    assert.are.same({ 0, 3, 4, 4, 4 }, y:size())
    y:sum():backward()
    assert.are.same({ 0, 2, 4, 4, 4 }, x.grad:size())
    assert_close(w.grad, flat(vl.zeros({ 3, 2, 3, 3, 3 })), 0, 0, "gw")
    assert.are.same({ 0, 2, 2, 2, 2 }, vl.max_pool3d(x, 2):size())
    assert.are.same({ 0, 2, 2, 2, 2 }, vl.avg_pool3d(x, 2):size())
    assert.are.same({ 0, 2, 1, 1, 1 }, vl.adaptive_avg_pool3d(x, 1):size())
  end)

  it("a larger batch (images over threads) matches one image at a time", function()
    vl.manual_seed(5)
    local x = vl.randn({ 4, 3, 6, 8, 8 }):requires_grad(true)
    local w = vl.randn({ 16, 3, 3, 3, 3 }):requires_grad(true) -- 2M multiply-adds: over threads
    local y = vl.conv3d(x, w, nil, { padding = 1 })
    local g = vl.randn(y:size())
    y:backward(g)
    local gw = vl.zeros(w:size())
    for n = 1, 4 do
      local xn = x:detach():narrow(1, n, 1):clone():requires_grad(true)
      local wn = w:detach():clone():requires_grad(true)
      local yn = vl.conv3d(xn, wn, nil, { padding = 1 })
      assert_close(yn, flat(y:detach():narrow(1, n, 1)), 1e-5, 1e-5, "y image " .. n)
      yn:backward(g:narrow(1, n, 1))
      assert_close(xn.grad, flat(x.grad:narrow(1, n, 1)), 1e-5, 1e-5, "gx image " .. n)
      gw = gw + wn.grad
    end
    assert_close(w.grad, flat(gw), 1e-4, 1e-4, "gw")
  end)
end)

describe("conv3d column tiles", function()
  -- 64 input channels and a 3x3x3 kernel: K = 1728 rows, so a tile holds
  -- 606 (float32) or 303 (float64) of the 960 output positions; the
  -- reference runs one output depth slice at a time (96 positions, one tile)
  for _, dt in ipairs({ "float32", "float64" }) do
    it(dt .. ": tiled forward and gradients equal the slice-by-slice result", function()
      vl.manual_seed(29)
      local tol = dt == "float32" and 1e-4 or 1e-10
      local x = vl.randn({ 2, 64, 10, 8, 12 }, { dtype = dt }):requires_grad(true)
      local w = (vl.randn({ 4, 64, 3, 3, 3 }, { dtype = dt }) * 0.1):requires_grad(true)
      local opts = { padding = { 0, 1, 0 }, stride = { 1, 1, 1 } }
      local y = vl.conv3d(x, w, nil, opts)
      assert.are.same({ 2, 4, 8, 8, 10 }, y:size())
      local g = vl.randn(y:size(), { dtype = dt })
      y:backward(g)
      local gx = vl.zeros(x:size(), { dtype = "float64" })
      local gw = vl.zeros(w:size(), { dtype = "float64" })
      for od = 1, 8 do
        local xs = x:detach():narrow(3, od, 3):clone():requires_grad(true)
        local ws = w:detach():clone():requires_grad(true)
        local ys = vl.conv3d(xs, ws, nil, opts)
        assert_close(ys, flat(y:detach():narrow(3, od, 1)), tol, tol, "y slice " .. od)
        ys:backward(g:narrow(3, od, 1))
        local part = gx:narrow(3, od, 3)
        part:copy_(part + xs.grad:double())
        gw = gw + ws.grad:double()
      end
      assert_close(x.grad, flat(gx), tol, tol, "gx")
      assert_close(w.grad, flat(gw), 10 * tol, 10 * tol, "gw")
    end)
  end
end)

describe("conv3d padding wider than the input", function()
  it("a 1x1x1 kernel with padding 3 and stride 2 gives the zero-padded input, and its gradient", function()
    local x = vl.arange(1, 9, 1, { dtype = "float64" }):view({ 1, 1, 2, 2, 2 }):requires_grad(true)
    local w = vl.ones({ 1, 1, 1, 1, 1 }, { dtype = "float64" })
    local y = vl.conv3d(x, w, nil, { padding = 3, stride = 2 })
    assert.are.same({ 1, 1, 4, 4, 4 }, y:size())
    -- output o (0-based) reads input 2o - 3: only o = 2 (input 1) lands inside
    local want = vl.zeros({ 1, 1, 4, 4, 4 }, { dtype = "float64" })
    want[{ 1, 1, 3, 3, 3 }] = 8
    assert_close(y, flat(want), 0, 0, "y")
    y:sum():backward()
    assert_close(x.grad, { 0, 0, 0, 0, 0, 0, 0, 1 }, 0, 0, "gx")
    local y2 = vl.conv3d(x:detach(), w, nil, { padding = { 0, 0, 5 } })
    assert.are.same({ 1, 1, 2, 2, 12 }, y2:size())
    assert_close(y2:narrow(5, 6, 2), flat(x:detach()), 0, 0, "inside")
    assert.are.equal(36, y2:sum():item())
  end)
end)

describe("3-d pool kernels", function()
  it("max_pool3d {2,2,2} and {1,2,2} in float32 (the fast path) agree with the general loop", function()
    -- float64 runs the general window loop; values rounded to halves make
    -- ties (the first maximum wins), NaN ends a window's scan (the first
    -- NaN is the result), odd sizes drop the edge; gradients go through
    -- the same indices
    vl.manual_seed(41)
    for _, c in ipairs { { { 2, 3, 5, 9, 41 }, { 2, 2, 2 } }, { { 1, 2, 4, 6, 66 }, { 1, 2, 2 } },
                         { { 1, 1, 3, 5, 3 }, { 2, 2, 2 } }, { { 2, 2, 3, 7, 18 }, { 1, 2, 2 } } } do
      local shape, k = c[1], c[2]
      local x = (vl.randn(shape, { dtype = "float64" }) * 2):floor() / 2
      x = vl.where(vl.rand(shape, { dtype = "float64" }):lt(0.05), 0 / 0, x)
      local v64, i64 = vl.max_pool3d(x, k, { return_indices = true })
      local v32, i32 = vl.max_pool3d(x:float(), k, { return_indices = true })
      assert.are.same(i64:totable(), i32:totable())
      local nan64, nan32 = v64:ne(v64), v32:ne(v32)
      assert.are.same(nan64:totable(), nan32:totable())
      assert.are.same(vl.where(nan64, 0, v64):float():totable(), vl.where(nan32, 0, v32):totable())
      assert.is_true(nan64:sum():item() > 0 or shape[5] < 10)
      -- backward: the gradient lands on the chosen elements
      local xf, xd = x:float():requires_grad(true), x:clone():requires_grad(true)
      local g = vl.rand(v64:size(), { dtype = "float64" })
      vl.max_pool3d(xf, k):backward(g:float())
      vl.max_pool3d(xd, k):backward(g)
      assert.are.same(xd.grad:float():totable(), xf.grad:totable())
    end
  end)
  it("avg_pool3d {2,2,2} and {1,2,2} in float32 (the fast path) give the general loop's values", function()
    -- the float64 general loop sums the same doubles in the same order, so
    -- its result rounded to float32 is the float32 result exactly
    vl.manual_seed(47)
    for _, c in ipairs { { { 2, 3, 5, 9, 41 }, { 2, 2, 2 } }, { { 1, 2, 4, 6, 66 }, { 1, 2, 2 } },
                         { { 1, 1, 3, 5, 3 }, { 2, 2, 2 } } } do
      local x = (vl.randn(c[1]) * 1000):double() -- float32 values
      local v32 = vl.avg_pool3d(x:float(), c[2])
      assert.are.same(vl.avg_pool3d(x, c[2]):float():totable(), v32:totable())
    end
  end)
  it("max_pool3d on a strictly increasing volume picks the last corner of each window", function()
    local x = vl.arange(2 * 4 * 6, { dtype = "float32" }):view({ 1, 1, 2, 4, 6 })
    local v, i = vl.max_pool3d(x, 2, { return_indices = true })
    assert.are.same({ { { { { 31, 33, 35 }, { 43, 45, 47 } } } } }, v:totable())
    assert.are.same((v + 1):totable(), i:to("float32"):totable()) -- 1-based flat indices in the plane
    local v2 = vl.max_pool3d(x, { 1, 2, 2 })
    assert.are.same({ { { { { 7, 9, 11 }, { 19, 21, 23 } }, { { 31, 33, 35 }, { 43, 45, 47 } } } } }, v2:totable())
  end)
  it("threaded and single-threaded pools agree exactly, forward and backward", function()
    vl.manual_seed(43)
    local x = vl.randn({ 4, 8, 6, 10, 12 }):requires_grad(true)
    local threads = vl.get_num_threads()
    local function run(n)
      vl.set_num_threads(n)
      local out = {}
      for _, f in ipairs {
        function(t) return vl.max_pool3d(t, 2) end,
        function(t) return vl.max_pool3d(t, 3, { stride = 2, padding = 1 }) end,
        function(t) return vl.avg_pool3d(t, { 1, 2, 2 }) end,
        function(t) return vl.adaptive_avg_pool3d(t, { 2, 3, 5 }) end,
      } do
        x.grad = nil
        local y = f(x)
        y:backward(vl.ones(y:size()))
        out[#out + 1] = flat(y)
        out[#out + 1] = flat(x.grad)
      end
      return out
    end
    local a, b = run(1), run(math.max(2, threads))
    vl.set_num_threads(threads)
    for i = 1, #a do assert_close(b[i], a[i], 0, 0, "result " .. i) end
  end)
end)

describe("conv3d bad inputs", function()
  local x = vl.zeros({ 1, 4, 3, 5, 5 })
  it("names the op and the values at fault", function()
    errors("conv3d: expected a 5-d input", vl.conv3d, vl.zeros({ 4, 5, 5 }), vl.zeros({ 2, 4, 1, 1, 1 }))
    errors("conv3d: expected a 5-d weight", vl.conv3d, x, vl.zeros({ 2, 4, 3, 3 }))
    errors("conv3d: input has 4 channels but weight expects 3", vl.conv3d, x, vl.zeros({ 2, 3, 1, 1, 1 }))
    errors("not divisible by groups 2", vl.conv3d, x, vl.zeros({ 3, 2, 1, 1, 1 }), nil, { groups = 2 })
    errors("conv3d: kernel 5x1x1", vl.conv3d, x, vl.zeros({ 2, 4, 5, 1, 1 }))
    errors("conv3d: stride must be at least 1", vl.conv3d, x, vl.zeros({ 2, 4, 1, 1, 1 }), nil, { stride = { 1, 0, 1 } })
    errors("conv3d: bias must have shape [2]", vl.conv3d, x, vl.zeros({ 2, 4, 1, 1, 1 }), vl.zeros({ 3 }))
    errors("conv3d: input is float32 but weight is float64", vl.conv3d, x, vl.zeros({ 2, 4, 1, 1, 1 }, { dtype = "float64" }))
    errors("conv3d: expected a floating-point input, got int64", vl.conv3d, vl.zeros({ 1, 4, 3, 5, 5 }, { dtype = "int64" }),
           vl.zeros({ 2, 4, 1, 1, 1 }))
    errors("conv3d: padding='same' needs stride 1", vl.conv3d, x, vl.zeros({ 2, 4, 1, 1, 1 }), nil, { padding = "same", stride = 2 })
    errors("conv3d: stride must be a number or a table of 3 numbers", vl.conv3d, x, vl.zeros({ 2, 4, 1, 1, 1 }), nil, { stride = { 1, 2 } })
    errors("conv3d: unknown option 'strides'", vl.conv3d, x, vl.zeros({ 2, 4, 1, 1, 1 }), nil, { strides = 1 })
  end)
  it("pools name the op and the values at fault", function()
    errors("max_pool3d: expected a 5-d input", vl.max_pool3d, vl.zeros({ 5, 5 }), 2)
    errors("max_pool3d: padding {2, 0, 0} must be at most half the kernel size {3, 3, 3}", vl.max_pool3d, x, 3, { padding = { 2, 0, 0 } })
    errors("avg_pool3d: output would be empty", vl.avg_pool3d, x, { 4, 1, 1 })
    errors("avg_pool3d: kernel size must be at least 1", vl.avg_pool3d, x, 0)
    errors("adaptive_avg_pool3d: output size must be non-negative", vl.adaptive_avg_pool3d, x, { 1, -1, 1 })
    errors("adaptive_avg_pool3d: expected non-empty channel and spatial dims", vl.adaptive_avg_pool3d, vl.zeros({ 1, 2, 0, 3, 3 }), 1)
    errors("max_pool3d: expected a floating-point input, got uint8", vl.max_pool3d, vl.zeros({ 1, 1, 2, 2, 2 }, { dtype = "uint8" }), 2)
  end)
end)

describe("nn 3-d layers", function()
  it("Conv3d has PyTorch's parameter shapes, init bounds and forward", function()
    vl.manual_seed(1)
    local m = nn.Conv3d(4, 6, { 3, 2, 3 }, { stride = 2, padding = 1, groups = 2 })
    assert.are.same({ 6, 2, 3, 2, 3 }, m.weight:size())
    assert.are.same({ 6 }, m.bias:size())
    local bound = 1 / math.sqrt(2 * 3 * 2 * 3)
    assert.is_true(m.weight:abs():max():item() <= bound)
    assert.is_true(m.bias:abs():max():item() <= bound)
    local x = vl.randn({ 2, 4, 5, 6, 5 })
    local want = vl.conv3d(x, m.weight, m.bias, { stride = 2, padding = 1, groups = 2 })
    assert_close(m(x), flat(want), 0, 0, "forward")
    assert.is_truthy(tostring(m):find("Conv3d(4, 6", 1, true))
    assert.is_nil(nn.Conv3d(2, 2, 1, { bias = false }).bias)
  end)
  it("pool layers call the functional ops", function()
    local x = vl.randn({ 1, 2, 5, 6, 7 })
    assert_close(nn.MaxPool3d(3, { stride = 2, padding = 1, ceil_mode = true })(x),
                 flat(vl.max_pool3d(x, 3, { stride = 2, padding = 1, ceil_mode = true })), 0, 0, "MaxPool3d")
    assert_close(nn.AvgPool3d(2, { count_include_pad = false, padding = 1 })(x),
                 flat(vl.avg_pool3d(x, 2, { count_include_pad = false, padding = 1 })), 0, 0, "AvgPool3d")
    assert_close(nn.AdaptiveAvgPool3d({ 1, 2, 3 })(x), flat(vl.adaptive_avg_pool3d(x, { 1, 2, 3 })), 0, 0, "Adaptive")
  end)
  it("bad layer arguments give clear errors", function()
    errors("Conv3d: in_channels (3) must be divisible by groups (2)", nn.Conv3d, 3, 4, 3, { groups = 2 })
  end)
end)
