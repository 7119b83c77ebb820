-- video_ops_spec.lua — vl.grid_sample, vl.affine_grid, vl.temporal_shift.
-- References: PyTorch 1.13 float64 and float32 outputs and gradients in
-- tests/fixtures/video_ops.lua (made by scripts/fixtures/video_ops.py,
-- TSM's own shift written in torch); central differences (vl.gradcheck);
-- closed forms (identity grids, shifted frames); contiguous results for
-- other layouts and thread counts. vl.video.warp against grid_sample in
-- PyTorch (same fixture file); vl.video.interpolate on synthetic motion
-- (a sum-of-sinusoids texture translated or rotated, exact flows given).
local vl = require "vl"

local fx = dofile("tests/fixtures/video_ops.lua")

local function T(values, shape, dtype)
  return vl.tensor(values, { dtype = dtype or "float64" }):view(shape)
end

local function flat(t)
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

local function gs_name(c)
  return string.format("%s/%s/align_corners=%s", c.mode, c.padding_mode, tostring(c.align_corners))
end

describe("grid_sample against PyTorch", function()
  for _, c in ipairs(fx.grid_sample) do
    local opts = { mode = c.mode, padding_mode = c.padding_mode, align_corners = c.align_corners }
    local yshape = { c.x_shape[1], c.x_shape[2], c.grid_shape[2], c.grid_shape[3] }
    it(gs_name(c) .. ": float64 output and both gradients to 1e-10", function()
      local x = T(c.x, c.x_shape):requires_grad(true)
      local grid = T(c.grid, c.grid_shape):requires_grad(true)
      local y = vl.grid_sample(x, grid, opts)
      assert.are.same(yshape, y:size())
      assert.are.equal("float64", y.dtype)
      assert_close(y, c.y, 1e-10, 1e-10, "y")
      y:backward(T(c.gy, yshape))
      assert_close(x.grad, c.gx, 1e-10, 1e-10, "gx")
      assert_close(grid.grad, c.ggrid, 1e-10, 1e-10, "ggrid")
    end)
    it(gs_name(c) .. ": float32 output and both gradients to 1e-5", function()
      local x = T(c.x, c.x_shape, "float32"):requires_grad(true)
      local grid = T(c.grid, c.grid_shape, "float32"):requires_grad(true)
      local y = vl.grid_sample(x, grid, opts)
      assert.are.equal("float32", y.dtype)
      assert_close(y, c.y32, 1e-5, 1e-5, "y32")
      y:backward(T(c.gy, yshape, "float32"))
      assert.are.equal("float32", x.grad.dtype)
      assert.are.equal("float32", grid.grad.dtype)
      assert_close(x.grad, c.gx32, 1e-5, 1e-5, "gx32")
      assert_close(grid.grad, c.ggrid32, 1e-5, 1e-5, "ggrid32")
    end)
  end

  it("strided input and grid give the contiguous result", function()
    local c = fx.grid_sample[2]
    local opts = { mode = c.mode, padding_mode = c.padding_mode, align_corners = c.align_corners }
    local x = T(c.x, c.x_shape)
    local grid = T(c.grid, c.grid_shape)
    -- the same values through transposed storage
    local xt = x:transpose(3, 4):contiguous():transpose(3, 4)
    local gt = grid:permute({ 4, 1, 2, 3 }):contiguous():permute({ 2, 3, 4, 1 })
    assert.is_false(xt:is_contiguous())
    assert.is_false(gt:is_contiguous())
    assert_close(vl.grid_sample(xt, gt, opts), c.y, 1e-10, 1e-10, "strided")
  end)

  it("threaded and single-threaded runs agree exactly", function()
    vl.manual_seed(5)
    local x = vl.randn({ 3, 8, 20, 24 }, { dtype = "float64" }):requires_grad(true)
    local grid = (vl.rand({ 3, 30, 40, 2 }, { dtype = "float64" }) * 2.4 - 1.2):requires_grad(true)
    local g = vl.randn({ 3, 8, 30, 40 }, { dtype = "float64" })
    local threads = vl.get_num_threads()
    local function run(n)
      vl.set_num_threads(n)
      x.grad, grid.grad = nil, nil
      local y = vl.grid_sample(x, grid, { padding_mode = "border" })
      y:backward(g)
      return flat(y), flat(x.grad), flat(grid.grad)
    end
    local y1, gx1, gg1 = run(1)
    local y2, gx2, gg2 = run(math.max(2, threads))
    vl.set_num_threads(threads)
    assert_close(y2, y1, 0, 0, "forward")
    assert_close(gx2, gx1, 0, 0, "input gradient")
    assert_close(gg2, gg1, 0, 0, "grid gradient")
  end)
end)

describe("grid_sample closed forms", function()
  it("the identity grid of affine_grid reproduces the input (align_corners both ways)", function()
    vl.manual_seed(1)
    local x = vl.randn({ 2, 3, 5, 7 }, { dtype = "float64" })
    local theta = T({ 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0 }, { 2, 2, 3 })
    for _, ac in ipairs({ false, true }) do
      local grid = vl.affine_grid(theta, { 2, 3, 5, 7 }, { align_corners = ac })
      for _, mode in ipairs({ "bilinear", "nearest" }) do
        assert_close(vl.grid_sample(x, grid, { mode = mode, align_corners = ac }), flat(x), 1e-12, 1e-12, mode)
      end
    end
  end)
  it("far outside: zeros padding reads 0, border the edge pixel", function()
    local x = T({ 1, 2, 3, 4 }, { 1, 1, 2, 2 })
    local grid = T({ -9, -9, 9, -9, -9, 9, 1e300, 1e300, 0 / 0, 0 }, { 1, 1, 5, 2 })
    assert_close(vl.grid_sample(x, grid), { 0, 0, 0, 0, 0 }, 0, 0, "zeros")
    assert_close(vl.grid_sample(x, grid, { padding_mode = "border" }), { 1, 2, 3, 4, 0 }, 0, 0, "border")
  end)
  it("empty batch, channels and output grids", function()
    assert.are.same({ 0, 2, 3, 4 }, vl.grid_sample(vl.zeros({ 0, 2, 5, 5 }), vl.zeros({ 0, 3, 4, 2 })):size())
    assert.are.same({ 1, 0, 3, 4 }, vl.grid_sample(vl.zeros({ 1, 0, 5, 5 }), vl.zeros({ 1, 3, 4, 2 })):size())
    assert.are.same({ 1, 2, 0, 4 }, vl.grid_sample(vl.zeros({ 1, 2, 5, 5 }), vl.zeros({ 1, 0, 4, 2 })):size())
    -- no channels: the grid gradient is all zeros
    local grid = (vl.ones({ 1, 3, 4, 2 }, { dtype = "float64" }) * 0.3):requires_grad(true)
    vl.grid_sample(vl.zeros({ 1, 0, 5, 5 }, { dtype = "float64" }), grid):sum():backward()
    assert_close(grid.grad, flat(vl.zeros({ 24 })), 0, 0, "grid gradient")
  end)
end)

describe("affine_grid against PyTorch", function()
  for _, c in ipairs(fx.affine_grid) do
    local name = string.format("size {%s}, align_corners=%s", table.concat(c.size, ","), tostring(c.align_corners))
    local yshape = { c.size[1], c.size[3], c.size[4], 2 }
    it(name .. ": output and theta gradient (float64 1e-10, float32 1e-5)", function()
      local theta = T(c.theta, { c.size[1], 2, 3 }):requires_grad(true)
      local y = vl.affine_grid(theta, c.size, { align_corners = c.align_corners })
      assert.are.same(yshape, y:size())
      assert_close(y, c.y, 1e-10, 1e-10, "y")
      y:backward(T(c.gy, yshape))
      assert_close(theta.grad, c.gtheta, 1e-10, 1e-10, "gtheta")
      local y32 = vl.affine_grid(T(c.theta, { c.size[1], 2, 3 }, "float32"), c.size, { align_corners = c.align_corners })
      assert.are.equal("float32", y32.dtype)
      assert_close(y32, c.y32, 1e-5, 1e-5, "y32")
    end)
  end
end)

describe("temporal_shift against TSM's shift in torch", function()
  for _, c in ipairs(fx.temporal_shift) do
    local name = string.format("shape {%s}, segments %d, fold_div %d", table.concat(c.shape, ","), c.segments,
      c.fold_div)
    it(name .. ": output and gradient exactly", function()
      local x = T(c.x, c.shape):requires_grad(true)
      local y = vl.temporal_shift(x, { segments = c.segments, fold_div = c.fold_div })
      assert.are.same(c.shape, y:size())
      assert_close(y, c.y, 0, 0, "y")
      y:backward(T(c.gy, c.shape))
      assert_close(x.grad, c.gx, 0, 0, "gx")
    end)
  end
  it("default fold_div 8, strided and integer input", function()
    local c = fx.temporal_shift[1] -- fold_div 8
    local x = T(c.x, c.shape)
    local xs = x:transpose(3, 4):contiguous():transpose(3, 4)
    assert.is_false(xs:is_contiguous())
    assert_close(vl.temporal_shift(xs, { segments = c.segments }), c.y, 0, 0, "strided")
    -- uint8 frames: channel 1 from the next frame, channel 2 from the previous one
    local u = vl.arange(1, 13, 1, { dtype = "uint8" }):view({ 3, 4, 1, 1 })
    local y = vl.temporal_shift(u, { segments = 3, fold_div = 4 })
    assert.are.equal("uint8", y.dtype)
    assert.are.same({ 5, 0, 3, 4, 9, 2, 7, 8, 0, 6, 11, 12 }, flat(y))
  end)
end)

describe("video ops gradcheck (float64)", function()
  local function R(...) return vl.randn({ ... }, { dtype = "float64" }):requires_grad(true) end
  -- grid points drawn in (-lo, lo); away from pixel-grid kinks with this seed
  local function G(n, h, w, lo)
    return (vl.rand({ n, h, w, 2 }, { dtype = "float64" }) * (2 * lo) - lo):requires_grad(true)
  end
  before_each(function() vl.manual_seed(17) end)
  local function check(fn, inputs)
    local ok, msg = vl.gradcheck(fn, inputs, { atol = 1e-7, rtol = 1e-6 })
    assert(ok, msg)
  end

  it("grid_sample bilinear, zeros and border, both align_corners, to input and grid", function()
    for _, pad in ipairs({ "zeros", "border" }) do
      for _, ac in ipairs({ false, true }) do
        local opts = { padding_mode = pad, align_corners = ac }
        check(function(x, g) return vl.grid_sample(x, g, opts) end, { R(2, 2, 4, 5), G(2, 3, 4, 1.3) })
      end
    end
  end)
  it("grid_sample nearest: input gradient, zero grid gradient", function()
    for _, pad in ipairs({ "zeros", "border" }) do
      local opts = { mode = "nearest", padding_mode = pad }
      check(function(x, g) return vl.grid_sample(x, g, opts) end, { R(1, 2, 4, 5), G(1, 3, 4, 1.3) })
    end
  end)
  it("affine_grid and affine_grid into grid_sample, to theta", function()
    for _, ac in ipairs({ false, true }) do
      check(function(t) return vl.affine_grid(t, { 2, 1, 3, 4 }, { align_corners = ac }) end, { R(2, 2, 3) })
      local x = R(1, 2, 5, 6)
      local theta = T({ 0.9, 0.13, 0.05, -0.11, 0.8, -0.07 }, { 1, 2, 3 }):requires_grad(true)
      check(function(xx, t)
        return vl.grid_sample(xx, vl.affine_grid(t, { 1, 2, 4, 3 }, { align_corners = ac }), { align_corners = ac })
      end, { x, theta })
    end
  end)
  it("temporal_shift", function()
    check(function(x) return vl.temporal_shift(x, { segments = 3, fold_div = 4 }) end, { R(6, 8, 2, 2) })
  end)
end)

describe("video ops bad input", function()
  local x = vl.zeros({ 1, 2, 4, 4 })
  local g = vl.zeros({ 1, 3, 3, 2 })
  it("grid_sample shapes, dtypes and options", function()
    fails("grid_sample: expected a 4%-d input %[N,C,H,W%], got 3%-d %[2,4,4%]", vl.grid_sample, vl.zeros({ 2, 4, 4 }), g)
    fails("grid_sample: expected a grid %[N,Ho,Wo,2%] with N = 1 %(input %[1,2,4,4%]%), got %[1,3,3,3%]",
      vl.grid_sample, x, vl.zeros({ 1, 3, 3, 3 }))
    fails("grid_sample: expected a grid %[N,Ho,Wo,2%] with N = 1 %(input %[1,2,4,4%]%), got %[2,3,3,2%]",
      vl.grid_sample, x, vl.zeros({ 2, 3, 3, 2 }))
    fails("grid_sample: grid dtype float64 differs from input dtype float32", vl.grid_sample, x,
      vl.zeros({ 1, 3, 3, 2 }, { dtype = "float64" }))
    fails("grid_sample: expected a float32 or float64 input, got int64", vl.grid_sample,
      vl.zeros({ 1, 2, 4, 4 }, { dtype = "int64" }), g)
    fails("grid_sample: expected non%-empty spatial dims, got input %[1,2,0,4%]", vl.grid_sample,
      vl.zeros({ 1, 2, 0, 4 }), g)
    fails("grid_sample: unknown mode 'bicubic' %(expected 'bilinear' or 'nearest'%)", vl.grid_sample, x, g,
      { mode = "bicubic" })
    fails("grid_sample: unknown padding_mode 'reflection' %(expected 'zeros' or 'border'%)", vl.grid_sample, x, g,
      { padding_mode = "reflection" })
    fails("grid_sample: unknown option 'antialias'", vl.grid_sample, x, g, { antialias = true })
    fails("grid_sample: option 'align_corners' must be a boolean, got number", vl.grid_sample, x, g,
      { align_corners = 1 })
  end)
  it("affine_grid sizes and theta", function()
    local th = vl.zeros({ 2, 2, 3 })
    fails("affine_grid: expected theta %[1,2,3%] for size {1,3,4,5}, got %[2,2,3%]", vl.affine_grid, th, { 1, 3, 4, 5 })
    fails("affine_grid: expected a positive size {N,C,H,W}, got {2,3,0,5}", vl.affine_grid, th, { 2, 3, 0, 5 })
    fails("affine_grid: size must have 4 entries {N,C,H,W}, got 3", vl.affine_grid, th, { 2, 4, 5 })
    fails("affine_grid: expected a float32 or float64 theta, got int32", vl.affine_grid,
      vl.zeros({ 2, 2, 3 }, { dtype = "int32" }), { 2, 3, 4, 5 })
  end)
  it("temporal_shift segments and fold_div", function()
    local v = vl.zeros({ 6, 8, 2, 2 })
    fails("temporal_shift: the first dim 6 of input %[6,8,2,2%] is not a multiple of segments = 4",
      vl.temporal_shift, v, { segments = 4 })
    fails("temporal_shift: segments must be at least 1, got 0", vl.temporal_shift, v, { segments = 0 })
    fails("temporal_shift: fold_div must be at least 1, got 0", vl.temporal_shift, v, { segments = 3, fold_div = 0 })
    fails("temporal_shift: option 'segments' is required", vl.temporal_shift, v, {})
    fails("temporal_shift: option 'segments' must be an integer, got 2.5", vl.temporal_shift, v, { segments = 2.5 })
    fails("temporal_shift: expected an input %[N%*T,C,...%] of at least 2 dims, got 1%-d %[6%]", vl.temporal_shift,
      vl.zeros({ 6 }), { segments = 3 })
  end)
end)

describe("vl.video.warp", function()
  for _, c in ipairs(fx.warp) do
    local opts = { mode = c.mode, padding_mode = c.padding_mode }
    it(c.mode .. "/" .. c.padding_mode .. ": against torch's grid_sample (align_corners) with gradients, 1e-10", function()
      local x = T(c.x, c.x_shape):requires_grad(true)
      local flow = T(c.flow, c.flow_shape):requires_grad(true)
      local y = vl.video.warp(x, flow, opts)
      assert.are.same(c.x_shape, y:size())
      assert_close(y, c.y, 1e-10, 1e-10, "y")
      y:backward(T(c.gy, c.x_shape))
      assert_close(x.grad, c.gx, 1e-10, 1e-10, "gx")
      assert_close(flow.grad, c.gflow, 1e-10, 1e-10, "gflow")
      -- float32 and the unbatched [C,H,W] form give the same numbers
      local y32 = vl.video.warp(T(c.x, c.x_shape, "float32"), T(c.flow, c.flow_shape, "float32"), opts)
      assert.are.equal("float32", y32.dtype)
      assert_close(y32, c.y, 1e-5, 1e-5, "y32")
      local y1 = vl.video.warp(T(c.x, c.x_shape):select(1, 2), T(c.flow, c.flow_shape):select(1, 2), opts)
      assert_close(y1, flat(y:detach():select(1, 2)), 0, 0, "unbatched")
    end)
  end
  it("closed forms: zero flow is the identity, an integer flow shifts (border repeats the edge)", function()
    local img = vl.arange(12, { dtype = "float64" }):view({ 1, 3, 4 })
    local flow = vl.zeros({ 3, 4, 2 }, { dtype = "float64" })
    assert_close(vl.video.warp(img, flow), flat(img), 0, 0, "identity")
    flow:select(3, 1):fill_(1)  -- u = +1: out(y,x) = img(y, x+1)
    flow:select(3, 2):fill_(-1) -- v = -1: out(y,x) = img(y-1, x+1)
    assert_close(vl.video.warp(img, flow), { 1, 2, 3, 3, 1, 2, 3, 3, 5, 6, 7, 7 }, 0, 0, "border")
    assert_close(vl.video.warp(img, flow, { padding_mode = "zeros" }), { 0, 0, 0, 0, 1, 2, 3, 0, 5, 6, 7, 0 }, 0, 0,
      "zeros")
  end)
  it("gradcheck to image and flow (float64), bilinear zeros and border", function()
    vl.manual_seed(23)
    for _, pad in ipairs({ "zeros", "border" }) do
      local x = vl.randn({ 2, 2, 4, 5 }, { dtype = "float64" }):requires_grad(true)
      local f = (vl.rand({ 2, 4, 5, 2 }, { dtype = "float64" }) * 3 - 1.5):requires_grad(true)
      local ok, msg = vl.gradcheck(function(a, b) return vl.video.warp(a, b, { padding_mode = pad }) end, { x, f },
        { atol = 1e-7, rtol = 1e-6 })
      assert(ok, msg)
    end
    -- unbatched [C,H,W] with [H,W,2] (through views)
    local x = vl.randn({ 3, 4, 5 }, { dtype = "float64" }):requires_grad(true)
    local f = (vl.rand({ 4, 5, 2 }, { dtype = "float64" }) * 3 - 1.5):requires_grad(true)
    local ok, msg = vl.gradcheck(function(a, b) return vl.video.warp(a, b) end, { x, f }, { atol = 1e-7, rtol = 1e-6 })
    assert(ok, msg)
  end)
  it("bad input gives clear errors", function()
    local img = vl.zeros({ 2, 3, 4, 5 })
    fails("video.warp: expected a flow %[N,4,5,2%] for image %[2,3,4,5%], got %[2,4,4,2%]", vl.video.warp, img,
      vl.zeros({ 2, 4, 4, 2 }))
    fails("video.warp: expected a 4%-d flow %[N,H,W,2%] for a 4%-d image, got 3%-d %[4,5,2%]", vl.video.warp, img,
      vl.zeros({ 4, 5, 2 }))
    fails("video.warp: expected an image %[C,H,W%] or %[N,C,H,W%], got 2%-d %[4,5%]", vl.video.warp, vl.zeros({ 4, 5 }),
      vl.zeros({ 4, 5, 2 }))
    fails("video.warp: flow dtype float64 differs from image dtype float32", vl.video.warp, img,
      vl.zeros({ 2, 4, 5, 2 }, { dtype = "float64" }))
    fails("video.warp: expected a float32 or float64 image, got uint8", vl.video.warp,
      vl.zeros({ 3, 4, 5 }, { dtype = "uint8" }), vl.zeros({ 4, 5, 2 }))
    fails("video.warp: unknown option 'align_corners'", vl.video.warp, img, vl.zeros({ 2, 4, 5, 2 }),
      { align_corners = true })
    fails("grid_sample: unknown padding_mode 'reflection'", vl.video.warp, img, vl.zeros({ 2, 4, 5, 2 }),
      { padding_mode = "reflection" })
  end)
end)

describe("vl.video.interpolate on synthetic motion", function()
  local pi = math.pi
  local H, W = 48, 64
  -- a smooth texture [3,H,W] read at the points (fx(x,y), fy(x,y))
  local function texture(fx, fy)
    local x = vl.arange(W, { dtype = "float64" }):view({ 1, W }):expand({ H, W })
    local y = vl.arange(H, { dtype = "float64" }):view({ H, 1 }):expand({ H, W })
    local X, Y = fx(x, y), fy(x, y)
    local ch = {}
    for c = 1, 3 do
      ch[c] = (vl.sin(X * (2 * pi / 29) + c) + vl.cos(Y * (2 * pi / 23) - 0.5 * c) * 0.7
        + vl.sin((X + Y) * (2 * pi / 37) + 0.3 * c) * 0.5):view({ 1, H, W })
    end
    return vl.cat(ch, 1)
  end
  local function inner(t, m) return t:narrow(-2, m + 1, H - 2 * m):narrow(-1, m + 1, W - 2 * m) end
  local function maxerr(a, b, m) return inner((a - b):abs(), m):max():item() end

  local dx, dy = 5.0, -3.0
  local function moved(s) return texture(function(x) return x - s * dx end, function(_, y) return y - s * dy end) end
  local f0, f1 = moved(0), moved(1)
  local flow01 = vl.stack({ vl.full({ H, W }, dx, { dtype = "float64" }), vl.full({ H, W }, dy, { dtype = "float64" }) }, 3)
  local flow10 = -flow01

  it("translation: t = 0.5 and 0.25 match the texture moved by t*(dx,dy) (bilinear error only)", function()
    for _, t in ipairs({ 0.5, 0.25 }) do
      local want = moved(t)
      for _, occ in ipairs({ true, false }) do
        local y = vl.video.interpolate(f0, f1, t, { flow01 = flow01, flow10 = flow10, occlusion = occ })
        assert.are.same({ 3, H, W }, y:size())
        local e = maxerr(y, want, 6)
        assert(e < 0.02, string.format("t=%g occlusion=%s: max error %g", t, tostring(occ), e))
      end
      -- blending without warping is far off: the check can fail
      assert(maxerr(f0 * (1 - t) + f1 * t, want, 6) > 0.1)
    end
  end)
  it("translation: in-frame weights fill the strip that one frame does not see", function()
    local want = moved(0.5)
    local function strip(y) return (y - want):abs():narrow(2, 10, H - 20):narrow(3, 1, 3):max():item() end
    local yo = vl.video.interpolate(f0, f1, 0.5, { flow01 = flow01, flow10 = flow10 })
    local yn = vl.video.interpolate(f0, f1, 0.5, { flow01 = flow01, flow10 = flow10, occlusion = false })
    assert(strip(yo) < 0.02, "occlusion weights: " .. strip(yo))
    assert(strip(yn) > 0.1, "plain blend: " .. strip(yn))
  end)
  it("batched [N,C,H,W] frames, float32 and uint8 give the per-frame results", function()
    local y = vl.video.interpolate(f0, f1, 0.5, { flow01 = flow01, flow10 = flow10 })
    local b0, b1 = vl.stack({ f0, f1 }, 1), vl.stack({ f1, f0 }, 1)
    local yb = vl.video.interpolate(b0, b1, 0.5, { flow01 = vl.stack({ flow01, flow10 }, 1),
      flow10 = vl.stack({ flow10, flow01 }, 1) })
    assert.are.same({ 2, 3, H, W }, yb:size())
    assert_close(yb:select(1, 1), flat(y), 0, 0, "batch entry 1")
    local y32 = vl.video.interpolate(f0:float(), f1:float(), 0.5, { flow01 = flow01:float(), flow10 = flow10:float() })
    assert.are.equal("float32", y32.dtype)
    assert_close(y32, flat(y), 1e-5, 1e-5, "float32")
    local u0, u1 = ((f0 + 2.2) * 55):round():to("uint8"), ((f1 + 2.2) * 55):round():to("uint8")
    local yu = vl.video.interpolate(u0, u1, 0.5, { flow01 = flow01, flow10 = flow10 })
    assert.are.equal("uint8", yu.dtype)
    local want = (moved(0.5) + 2.2) * 55
    local e = maxerr(yu:double(), want, 6)
    assert(e < 0.02 * 55 + 1.5, "uint8 max error " .. e)
  end)
  it("rotation by 10 degrees: exact flows, Super SloMo's intermediate flows", function()
    local th = math.rad(10)
    local cx, cy = (W - 1) / 2, (H - 1) / 2
    local function rotated(a)
      local c, s = math.cos(a), math.sin(a)
      return texture(function(x, y) return (x - cx) * c + (y - cy) * s + cx end,
        function(x, y) return -(x - cx) * s + (y - cy) * c + cy end)
    end
    local function rflow(a) -- p -> R(a)(p - c) + c - p
      local c, s = math.cos(a), math.sin(a)
      local x = vl.arange(W, { dtype = "float64" }):view({ 1, W }):expand({ H, W })
      local y = vl.arange(H, { dtype = "float64" }):view({ H, 1 }):expand({ H, W })
      return vl.stack({ (x - cx) * c - (y - cy) * s + cx - x, (x - cx) * s + (y - cy) * c + cy - y }, 3)
    end
    local r0, r1 = rotated(0), rotated(th)
    for _, t in ipairs({ 0.5, 0.25 }) do
      local want = rotated(t * th)
      local y = vl.video.interpolate(r0, r1, t, { flow01 = rflow(th), flow10 = rflow(-th) })
      local e = maxerr(y, want, 6)
      assert(e < 0.05, string.format("t=%g: max error %g", t, e))
      assert(maxerr(r0 * (1 - t) + r1 * t, want, 6) > 0.1)
    end
  end)
  it("a square moving over a still background: consistency weights pick the visible frame more often", function()
    local h, w, S, x0, y0, d = 40, 56, 14, 16, 13, 8
    vl.manual_seed(3)
    local bg = vl.rand({ 1, h, w }, { dtype = "float64" }) * 0.2
    local function frame(s)
      local f = bg:clone()
      f:narrow(2, y0 + 1, S):narrow(3, x0 + s + 1, S):fill_(1.0)
      return f
    end
    local function fl(xs, u)
      local f = vl.zeros({ h, w, 2 }, { dtype = "float64" })
      f:narrow(1, y0 + 1, S):narrow(2, xs + 1, S):select(3, 1):fill_(u)
      return f
    end
    local want = frame(d // 2)
    local bad = {}
    for _, occ in ipairs({ true, false }) do
      local y = vl.video.interpolate(frame(0), frame(d), 0.5, { flow01 = fl(x0, d), flow10 = fl(x0 + d, -d),
        occlusion = occ })
      bad[occ] = (y - want):abs():gt(0.3):sum():item()
    end
    assert(bad[true] < bad[false], string.format("wrong pixels: %d with weights, %d without", bad[true], bad[false]))
  end)
  it("without flows: vl.flow.farneback when present, a clear error otherwise", function()
    if vl.flow and vl.flow.farneback then
      local y = vl.video.interpolate(f0, f1, 0.5)
      local e = maxerr(y, moved(0.5), 12)
      assert(e < 0.05, "max error with Farneback flows " .. e)
    else
      fails("video.interpolate: no flow01/flow10 given and vl.flow.farneback is not available", vl.video.interpolate,
        f0, f1, 0.5)
    end
  end)
  it("bad input gives clear errors", function()
    local o = { flow01 = flow01, flow10 = flow10 }
    for _, t in ipairs({ 0, 1, 1.5, -0.2, 0 / 0 }) do
      fails("video.interpolate: t must lie in %(0, 1%), got", vl.video.interpolate, f0, f1, t, o)
    end
    fails("video.interpolate: expected two frames of one shape %[C,H,W%] or %[N,C,H,W%], got f0 %[3,48,64%] and f1 %[3,48,63%]",
      vl.video.interpolate, f0, f1:narrow(3, 1, 63), 0.5, o)
    fails("video.interpolate: expected flow10 %[48,64,2%] for frames %[3,48,64%], got %[48,63,2%]",
      vl.video.interpolate, f0, f1, 0.5, { flow01 = flow01, flow10 = flow10:narrow(2, 1, 63) })
    fails("video.interpolate: give both flow01 and flow10, or neither", vl.video.interpolate, f0, f1, 0.5,
      { flow01 = flow01 })
    fails("video.interpolate: frames differ in dtype: f0 float64, f1 float32", vl.video.interpolate, f0, f1:float(),
      0.5, o)
    fails("video.interpolate: expected float32, float64 or uint8 frames, got int64", vl.video.interpolate,
      f0:to("int64"), f1:to("int64"), 0.5, o)
    fails("video.interpolate: expected float32, float64 or uint8 frames, got int64", vl.video.interpolate,
      f0:to("int64"), f1:to("int64"), 0.5)
    fails("video.interpolate: expected two frames of one shape", vl.video.interpolate, f0, f1:narrow(2, 1, 40), 0.5)
    fails("video.interpolate: unknown option 'flow'", vl.video.interpolate, f0, f1, 0.5, { flow = flow01 })
    fails("video.interpolate: option 'flow01' must be a tensor", vl.video.interpolate, f0, f1, 0.5,
      { flow01 = 1, flow10 = flow10 })
  end)
end)
