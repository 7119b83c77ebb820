-- interpolate_spec.lua — vl.interpolate (torch.nn.functional.interpolate).
-- References: PyTorch 1.13 float64 outputs and input gradients, float32
-- outputs and a sweep of nearest source indices in
-- tests/fixtures/interpolate.lua (made by scripts/fixtures/interpolate.py);
-- central differences (vl.gradcheck); closed forms (linear ramps); the
-- contiguous float64 results for other layouts, dtypes and thread counts.
local vl = require "vl"

local fx = dofile("tests/fixtures/interpolate.lua")

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

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

describe("interpolate against PyTorch (float64)", function()
  for _, c in ipairs(fx.cases) do
    it(c.name .. ": output and input gradient to 1e-12", function()
      local x = T(c.x, c.x_shape):requires_grad(true)
      local y = vl.interpolate(x, c.opts)
      assert.are.same(c.y_shape, y:size())
      assert.are.equal("float64", y.dtype)
      assert_close(y, c.y, 1e-12, 1e-12, "y")
      y:backward(T(c.gy, c.y_shape))
      assert_close(x.grad, c.gx, 1e-12, 1e-12, "gx")
    end)
  end
end)

describe("interpolate float32 against PyTorch's float32", function()
  for _, c in ipairs(fx.cases) do
    it(c.name .. ": output and gradient to 1e-5", function()
      local x = T(c.x, c.x_shape, "float32"):requires_grad(true)
      local y = vl.interpolate(x, c.opts)
      assert.are.equal("float32", y.dtype)
      -- same float32 coordinates and source indices as PyTorch; weights and
      -- sums agree to a few ulps (PyTorch's build may fuse multiply-adds)
      assert_close(y, c.y32, 1e-5, 1e-5, "y32")
      y:backward(T(c.gy, c.y_shape, "float32"))
      assert.are.equal("float32", x.grad.dtype)
      assert_close(x.grad, c.gx, 1e-5, 1e-5, "gx")
    end)
  end
end)

describe("interpolate nearest picks PyTorch's source indices", function()
  it("over a sweep of sizes and scale factors, float32 and float64", function()
    local checked = 0
    for _, e in ipairs(fx.nearest) do
      for _, dt in ipairs({ "float32", "float64" }) do
        local n = e["in"]
        local x = vl.arange(0, n, 1, { dtype = dt })
        x = e.dims == 1 and x:view({ 1, 1, n }) or x:view({ 1, 1, n, 1 })
        local opts = { mode = "nearest" }
        if e.out then
          opts.size = e.dims == 1 and e.out or { e.out, 1 }
        else
          opts.scale_factor = e.dims == 1 and e.sf or { e.sf, 1.0 }
        end
        local got = flat(vl.interpolate(x, opts))
        local want = dt == "float32" and e.f32 or e.f64
        assert.are.same(want, got, string.format("in %d, %s %s, %s", n, e.out and "out" or "sf", e.out or e.sf, dt))
        checked = checked + 1
      end
    end
    assert.is_true(checked > 1000)
  end)
end)

describe("interpolate layouts, dtypes, threads", function()
  local case = {}
  for _, c in ipairs(fx.cases) do case[c.name] = c end

  it("non-contiguous inputs (transposed, sliced, expanded) give the contiguous result and gradient", function()
    for _, name in ipairs({ "bicubic_up", "bilinear_scale", "area2d_down", "nearest2d_scale", "linear_up_align" }) do
      local c = case[name]
      local nd = #c.x_shape
      -- a leaf holding x with its last two dims swapped: its transpose is x
      local sw = {}
      for i = 1, nd do sw[i] = c.x_shape[i] end
      sw[nd - 1], sw[nd] = sw[nd], sw[nd - 1]
      local base = T(c.x, c.x_shape):transpose(nd - 1, nd):contiguous():requires_grad(true)
      assert.are.same(sw, base:size())
      local x = base:transpose(nd - 1, nd)
      assert.is_false(x:is_contiguous())
      local y = vl.interpolate(x, c.opts)
      assert_close(y, c.y, 1e-12, 1e-12, name .. " y")
      y:backward(T(c.gy, c.y_shape))
      assert_close(base.grad:transpose(nd - 1, nd), c.gx, 1e-12, 1e-12, name .. " gx")
    end
    -- every other element of a wider tensor (innermost stride 2)
    local c = case.bilinear_up
    local x = T(c.x, c.x_shape)
    local wide = vl.zeros({ 2, 3, 4, 5, 2 }, { dtype = "float64" })
    wide:select(5, 1):copy_(x)
    local v = wide:select(5, 1)
    assert.are.same({ 120, 40, 10, 2 }, v:stride())
    assert_close(vl.interpolate(v, c.opts), c.y, 1e-12, 1e-12, "sliced")
    -- a broadcast (stride 0) batch
    local one = T(c.x, c.x_shape):narrow(1, 1, 1)
    local e = one:expand(3, 3, 4, 5)
    local ye = vl.interpolate(e, c.opts)
    local y1 = vl.interpolate(one, c.opts)
    for n = 1, 3 do assert_close(ye:narrow(1, n, 1), flat(y1), 0, 0, "expanded") end
  end)

  it("float16 and bfloat16 are computed in float32 and keep their dtype", function()
    local c = case.bicubic_vit_posemb_align
    for _, dt in ipairs({ "float16", "bfloat16" }) do
      local x = T(c.x, c.x_shape, dt):requires_grad(true)
      local y = vl.interpolate(x, c.opts)
      assert.are.equal(dt, y.dtype)
      assert_close(y:double(), c.y, 2e-2, 2e-2, dt)
      y:backward(T(c.gy, c.y_shape, dt))
      assert.are.equal(dt, x.grad.dtype)
      assert_close(x.grad:double(), c.gx, 3e-2, 3e-2, dt .. " gx")
    end
  end)

  it("unbatched inputs give unbatched results (bilinear/bicubic [C,H,W], linear [C,L])", function()
    local c = case.bilinear_up
    local x = T(c.x, c.x_shape)
    local y = vl.interpolate(x[2], c.opts)
    assert.are.same({ 3, 7, 9 }, y:size())
    assert_close(y, flat(vl.interpolate(x, c.opts)[2]), 0, 0, "unbatched")
  end)

  it("an empty batch gives an empty result and gradient", function()
    local x = vl.zeros({ 0, 3, 4, 5 }, { dtype = "float64" }):requires_grad(true)
    local y = vl.interpolate(x, { size = { 6, 2 }, mode = "bicubic" })
    assert.are.same({ 0, 3, 6, 2 }, y:size())
    y:sum():backward()
    assert.are.same({ 0, 3, 4, 5 }, x.grad:size())
  end)

  it("threaded and single-threaded runs agree exactly (forward and backward)", function()
    vl.manual_seed(3)
    local x = vl.randn({ 4, 16, 24, 20 }):requires_grad(true)
    local g = vl.randn({ 4, 16, 37, 29 })
    local threads = vl.get_num_threads()
    for _, mode in ipairs({ "nearest", "bilinear", "bicubic", "area" }) do
      local opts = { size = { 37, 29 }, mode = mode }
      vl.set_num_threads(1)
      x.grad = nil
      local y1 = vl.interpolate(x, opts)
      y1:backward(g)
      local g1 = x.grad
      vl.set_num_threads(math.max(2, threads))
      x.grad = nil
      local y2 = vl.interpolate(x, opts)
      y2:backward(g)
      assert_close(y2, flat(y1), 0, 0, mode .. " forward")
      assert_close(x.grad, flat(g1), 0, 0, mode .. " backward")
    end
    vl.set_num_threads(threads)
  end)
end)

describe("interpolate closed forms", function()
  it("align_corners maps a ramp to the ramp of the new size (linear, bilinear)", function()
    local r = vl.linspace(0, 1, 5, { dtype = "float64" })
    assert_close(vl.interpolate(r:view({ 1, 1, 5 }), { size = 9, mode = "linear", align_corners = true }),
                 flat(vl.linspace(0, 1, 9, { dtype = "float64" })), 1e-15, 1e-15, "linear")
    -- bilinear of a plane a*i + b*j is the plane on the new grid
    local H, W, OH, OW = 4, 6, 7, 3
    local p = vl.zeros({ 1, 1, H, W }, { dtype = "float64" })
    for i = 0, H - 1 do for j = 0, W - 1 do p[1][1][i + 1][j + 1] = 2 * i / (H - 1) - 3 * j / (W - 1) end end
    local y = vl.interpolate(p, { size = { OH, OW }, mode = "bilinear", align_corners = true })
    local want = {}
    for i = 0, OH - 1 do for j = 0, OW - 1 do want[#want + 1] = 2 * i / (OH - 1) - 3 * j / (OW - 1) end end
    assert_close(y, want, 1e-12, 1e-12, "bilinear")
    -- bicubic reproduces constants (its weights sum to 1), borders included
    local cst = vl.full({ 1, 2, 3, 4 }, 0.25, { dtype = "float64" })
    for _, ac in ipairs({ false, true }) do
      local yc = vl.interpolate(cst, { size = { 8, 3 }, mode = "bicubic", align_corners = ac })
      for _, v in ipairs(flat(yc)) do assert(math.abs(v - 0.25) < 1e-15, "bicubic constant " .. v) end
    end
  end)

  it("area over whole multiples is the block mean; nearest by 2 repeats", function()
    local x = vl.arange(0, 16, 1, { dtype = "float64" }):view({ 1, 1, 4, 4 })
    assert_close(vl.interpolate(x, { size = 2, mode = "area" }), { 2.5, 4.5, 10.5, 12.5 }, 0, 0, "area")
    local y = vl.interpolate(x:narrow(3, 1, 2):narrow(4, 1, 2), { scale_factor = 2 })
    assert_close(y, { 0, 0, 1, 1, 0, 0, 1, 1, 4, 4, 5, 5, 4, 4, 5, 5 }, 0, 0, "nearest")
    -- nearest copies: -0.0 keeps its sign, infinities stay
    local z = flat(vl.interpolate(vl.tensor({ -0.0, math.huge, -math.huge }):view({ 1, 1, 3 }), { size = 6 }))
    assert.are.equal(-math.huge, 1 / z[1])
    assert.are.same({ math.huge, math.huge, -math.huge }, { z[3], z[4], z[6] })
  end)
end)

describe("interpolate gradcheck (float64)", function()
  local function R(...) return vl.randn({ ... }, { dtype = "float64" }):requires_grad(true) end
  before_each(function() vl.manual_seed(11) end)
  local function check(x, opts)
    local ok, msg = vl.gradcheck(function(t) return vl.interpolate(t, opts) end, { x }, { atol = 1e-7, rtol = 1e-6 })
    assert(ok, msg)
  end

  it("nearest 1-d and 2-d, up and down, scale_factor", function()
    check(R(2, 2, 5), { size = 7 })
    check(R(1, 2, 4, 7), { size = { 6, 3 } })
    check(R(1, 1, 5, 5), { scale_factor = 1.1 })
  end)
  it("linear and bilinear, both align_corners", function()
    for _, ac in ipairs({ false, true }) do
      check(R(2, 2, 5), { size = 8, mode = "linear", align_corners = ac })
      check(R(1, 2, 4, 6), { size = { 7, 3 }, mode = "bilinear", align_corners = ac })
      check(R(1, 1, 5, 4), { scale_factor = { 1.6, 0.6 }, mode = "bilinear", align_corners = ac })
    end
  end)
  it("bicubic, both align_corners, border clamping", function()
    for _, ac in ipairs({ false, true }) do
      check(R(1, 2, 4, 5), { size = { 7, 3 }, mode = "bicubic", align_corners = ac })
      check(R(1, 1, 7, 6), { size = { 2, 9 }, mode = "bicubic", align_corners = ac })
    end
    check(R(1, 1, 5, 5), { scale_factor = 1.1, mode = "bicubic" })
  end)
  it("area 1-d and 2-d", function()
    check(R(2, 2, 9), { size = 4, mode = "area" })
    check(R(1, 2, 5, 7), { size = { 3, 10 }, mode = "area" })
  end)
end)

describe("interpolate bad input", function()
  local x4 = vl.zeros({ 1, 2, 4, 4 })
  local x3 = vl.zeros({ 1, 2, 4 })
  it("wrong number of dims for the mode", function()
    fails("interpolate: mode 'linear' expects a 3%-d input %[N,C,L%] %(or 2%-d %[C,L%]%), got 4%-d %[1,2,4,4%]",
          vl.interpolate, x4, { size = 3, mode = "linear" })
    fails("interpolate: mode 'bilinear' expects a 4%-d input %[N,C,H,W%] %(or 3%-d %[C,H,W%]%), got 2%-d %[2,4%]",
          vl.interpolate, vl.zeros({ 2, 4 }), { size = 3, mode = "bilinear" })
    fails("interpolate: mode 'nearest' expects a 3%-d input %[N,C,L%] or a 4%-d input %[N,C,H,W%], got 5%-d",
          vl.interpolate, vl.zeros({ 1, 1, 2, 2, 2 }), { size = 3 })
    fails("interpolate: size has 2 entries for 1 spatial dim of the batched input %[1,2,4%] %(mode 'nearest'%)",
          vl.interpolate, x3, { size = { 3, 3 } })
    fails("interpolate: scale_factor must be a number or a table of 1 or 2 numbers, got a table of 3",
          vl.interpolate, x4, { scale_factor = { 1, 2, 3 } })
  end)
  it("sizes and scale factors out of range", function()
    fails("interpolate: output size must be between 1 and %d+, got 0", vl.interpolate, x4, { size = { 0, 3 } })
    fails("interpolate: output size must be between 1 and %d+, got %-2", vl.interpolate, x3, { size = -2 })
    fails("interpolate: scale_factor must be positive and finite, got %-1", vl.interpolate, x4, { scale_factor = -1 })
    fails("interpolate: scale_factor must be positive and finite, got inf", vl.interpolate, x4, { scale_factor = math.huge })
    fails("interpolate: scale_factor 0.1 on input size 4 gives an output size of 0", vl.interpolate, x4, { scale_factor = 0.1 })
    fails("interpolate: scale_factor 1e%+30 on input size 4 gives an output size of 4e%+30", vl.interpolate, x4,
          { scale_factor = 1e30 })
    fails("interpolate: shape %[1,2,1000000000000,1000000000000%] of float32 has a byte count that overflows",
          vl.interpolate, x4, { size = { 1e12, 1e12 } })
    fails("interpolate: size must be integers, got 2.5", vl.interpolate, x4, { size = 2.5 })
    -- fits int64 but not the memory limit: refused before any work
    local limit = vl.memory_limit()
    vl.set_memory_limit(1 << 30)
    local ok, err = pcall(vl.interpolate, x4, { size = { 100000, 100000 }, mode = "bicubic" })
    vl.set_memory_limit(limit)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("interpolate: output %[1,2,100000,100000%]: out of memory"), err)
  end)
  it("size and scale_factor: exactly one", function()
    fails("interpolate: give either size or scale_factor, not both", vl.interpolate, x4, { size = 3, scale_factor = 2 })
    fails("interpolate: give either size or scale_factor$", vl.interpolate, x4, { mode = "bilinear" })
    fails("interpolate: recompute_scale_factor is only meaningful with scale_factor", vl.interpolate, x4,
          { size = 3, recompute_scale_factor = true })
  end)
  it("modes, options, dtypes", function()
    fails("interpolate: unknown mode 'lanczos' %(expected 'nearest', 'linear', 'bilinear', 'bicubic' or 'area'%)",
          vl.interpolate, x4, { size = 3, mode = "lanczos" })
    fails("interpolate: align_corners can only be set with the modes 'linear', 'bilinear' and 'bicubic', not 'nearest'",
          vl.interpolate, x4, { size = 3, align_corners = true })
    fails("interpolate: unknown option 'antialias'", vl.interpolate, x4, { size = 3, antialias = true })
    fails("interpolate: option 'align_corners' must be a boolean, got number", vl.interpolate, x4,
          { size = 3, mode = "bilinear", align_corners = 1 })
    fails("interpolate: expected an options table with size or scale_factor as argument 2, got number",
          vl.interpolate, x4, 3)
    fails("interpolate: expected a floating%-point input, got int64", vl.interpolate, vl.zeros({ 1, 1, 2, 2 }, { dtype = "int64" }), { size = 3 })
    fails("interpolate: expected a floating%-point input, got uint8", vl.interpolate, vl.zeros({ 1, 1, 2, 2 }, { dtype = "uint8" }), { size = 3 })
    fails("interpolate: expected non%-empty channel and spatial dims, got input %[1,0,4,4%]", vl.interpolate,
          vl.zeros({ 1, 0, 4, 4 }), { size = 3 })
  end)
end)
