-- flow_spec.lua — vl.flow: farneback, lucas_kanade, to_rgb, epe.
-- References: synthetic motion with a known flow (a texture defined
-- analytically as a sum of sinusoids, so both frames are exact samples);
-- OpenCV 4.6 outputs on a small pair (tests/fixtures/flow/, made by
-- scripts/fixtures/flow.py with python3-opencv); the Middlebury colour code
-- transcribed in numpy (same script) and closed-form colours; hand-computed
-- endpoint errors.
local vl = require "vl"

local FX = "tests/fixtures/flow/"
local function load(name) return vl.npy.load(FX .. name .. ".npy") end

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

-- A smooth texture: 24 sinusoids, wavelengths 14..80 px, fixed parameters.
local seed = 20261127
local function rnd(lo, hi)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return lo + (hi - lo) * seed / 2147483648
end
local WAVES = {}
for i = 1, 24 do
  WAVES[i] = { f = rnd(0.08, 0.45), a = rnd(0, 2 * math.pi), p = rnd(0, 2 * math.pi), m = rnd(8, 18) / 2.2 }
end
local function texture(x, y)
  local v = vl.zeros(x:size(), { dtype = "float64" }) + 128
  for _, w in ipairs(WAVES) do
    v = v + vl.sin(x * (w.f * math.cos(w.a)) + y * (w.f * math.sin(w.a)) + w.p) * w.m
  end
  return v
end
local function grid(H, W)
  local xs = vl.arange(0, W, 1, { dtype = "float64" }):view({ 1, W }):expand({ H, W })
  local ys = vl.arange(0, H, 1, { dtype = "float64" }):view({ H, 1 }):expand({ H, W })
  return xs, ys
end

-- Frames moved by T(p) = R(theta) (p - c) + c + (tx, ty): next(p) = prev(T^-1 p).
-- Returns prev, next (float32) and the true flow T(p) - p as Lua functions.
local function moving_pair(H, W, theta, tx, ty)
  local xs, ys = grid(H, W)
  local cx, cy = (W - 1) / 2, (H - 1) / 2
  local c, s = math.cos(theta), math.sin(theta)
  local px, py = xs - (tx + cx), ys - (ty + cy)
  local sx, sy = px * c + py * s + cx, px * (-s) + py * c + cy
  local function truth(x, y)
    local qx, qy = x - cx, y - cy
    return qx * c - qy * s + cx + tx - x, qx * s + qy * c + cy + ty - y
  end
  return texture(xs, ys):float(), texture(sx, sy):float(), truth
end

-- Errors |flow - truth| at pixels at least `border` from the edge.
local function inner_errors(flow, truth, border)
  local H, W = flow:size()[1], flow:size()[2]
  local f = flow:totable()
  local errs, us, vs = {}, {}, {}
  for y = border, H - 1 - border do
    for x = border, W - 1 - border do
      local u, v = f[y + 1][x + 1][1], f[y + 1][x + 1][2]
      local tu, tv = truth(x, y)
      errs[#errs + 1] = math.sqrt((u - tu) ^ 2 + (v - tv) ^ 2)
      us[#us + 1], vs[#vs + 1] = u, v
    end
  end
  return errs, us, vs
end

describe("farneback on synthetic motion", function()
  it("a (1.7, -1.1) shift: median flow within 0.1 px away from a 16 px border", function()
    local prev, next = moving_pair(128, 128, 0, 1.7, -1.1)
    local flow = vl.flow.farneback(prev, next)
    assert.are.same({ 128, 128, 2 }, flow:size())
    assert.are.equal("float32", flow.dtype)
    local _, us, vs = inner_errors(flow, function() return 1.7, -1.1 end, 16)
    local mu, mv = median(us), median(vs)
    assert.is_true(math.abs(mu - 1.7) < 0.1, "median u " .. mu)
    assert.is_true(math.abs(mv + 1.1) < 0.1, "median v " .. mv)
  end)

  it("the same shift on uint8 frames (rounded), with poly_n 7 and a Gaussian window", function()
    local prev, next = moving_pair(128, 128, 0, 1.7, -1.1)
    local p8, n8 = vl.round(prev):to("uint8"), vl.round(next):to("uint8")
    local flow = vl.flow.farneback(p8, n8, { poly_n = 7, gaussian = true, winsize = 21 })
    local _, us, vs = inner_errors(flow, function() return 1.7, -1.1 end, 16)
    assert.is_true(math.abs(median(us) - 1.7) < 0.1, "median u " .. median(us))
    assert.is_true(math.abs(median(vs) + 1.1) < 0.1, "median v " .. median(vs))
  end)

  it("a rotation by 0.02 rad about the centre plus a shift: median error under 0.1 px", function()
    -- (the rotated texture is not a pure shift of any window: at 0.03 rad
    -- the median error is 0.11 px, at 0.02 about 0.07, both unbiased)
    local prev, next, truth = moving_pair(128, 128, 0.02, 0.6, 0.4)
    local flow = vl.flow.farneback(prev, next)
    local errs = inner_errors(flow, truth, 16)
    local m = median(errs)
    assert.is_true(m < 0.1, "median endpoint error " .. m)
    -- the field really rotates: opposite sides move 1.9 px apart
    local tu1 = truth(16, 16)
    local tu2 = truth(16, 111)
    assert.is_true(math.abs(tu1 - tu2) > 1.5)
  end)

  it("gives the same flow on 1 and 2 threads (box and Gaussian windows)", function()
    -- 144 x 160: above the size where the passes split rows over threads
    local prev, next = moving_pair(144, 160, 0.02, 1.0, 0.5)
    local n = vl.get_num_threads()
    for _, g in ipairs({ false, true }) do
      vl.set_num_threads(1)
      local a = vl.flow.farneback(prev, next, { gaussian = g })
      vl.set_num_threads(2)
      local b = vl.flow.farneback(prev, next, { gaussian = g })
      vl.set_num_threads(n)
      assert.are.equal(0, vl.flow.epe(a, b))
    end
  end)
end)

describe("farneback against OpenCV 4.6", function()
  local prev, next = load("prev"), load("next")
  local H, W = 64, 96
  local init = vl.zeros({ H, W, 2 })
  for x = 0, W - 1 do init:select(2, x + 1):select(2, 1):fill_(1.0 + 0.01 * (x - (W - 1) / 2)) end
  init:select(3, 2):fill_(-0.5)
  local cases = {
    default = {},
    gauss7 = { pyr_scale = 0.8, levels = 3, winsize = 9, iterations = 4, poly_n = 7, poly_sigma = 1.5,
               gaussian = true },
    init = { pyr_scale = 0.7, levels = 2, winsize = 11, iterations = 2, poly_n = 5, poly_sigma = 1.2, flow = init },
    flat = { pyr_scale = 0.5, levels = 0, winsize = 5, iterations = 5 },
  }
  for _, name in ipairs({ "default", "gauss7", "init", "flat" }) do
    it(name .. ": mean EPE to cv2.calcOpticalFlowFarneback below 1e-4 px, largest below 1e-3", function()
      local ref = load("fb_" .. name)
      local flow = vl.flow.farneback(prev, next, cases[name])
      local mean = vl.flow.epe(flow, ref)
      local worst = vl.flow.epe(flow, ref, { per_pixel = true }):max():item()
      assert.is_true(mean < 1e-4, "mean EPE " .. mean)
      assert.is_true(worst < 1e-3, "max EPE " .. worst)
      -- and the flow is not trivially small: the motion is about 1.5 px
      assert.is_true(vl.flow.epe(ref, vl.zeros({ H, W, 2 })) > 1)
    end)
  end

  it("the initial flow is not changed and float64 initial flows give the same result", function()
    local keep = init:clone()
    local a = vl.flow.farneback(prev, next, cases.init)
    local b = vl.flow.farneback(prev, next, { pyr_scale = 0.7, levels = 2, winsize = 11, iterations = 2,
                                              poly_sigma = 1.2, flow = init:double() })
    assert.are.equal(0, vl.flow.epe(init, keep))
    assert.are.equal(0, vl.flow.epe(a, b))
  end)

  it("RGB frames use OpenCV's RGB -> gray (same flow as cv2.cvtColor gray), HWC and CHW alike", function()
    local rp, rn = load("rgb_prev"), load("rgb_next")
    local gp, gn = load("gray_prev"), load("gray_next")
    local want = vl.flow.farneback(gp, gn)
    assert.are.equal(0, vl.flow.epe(vl.flow.farneback(rp, rn), want))
    local cp, cn = rp:permute({ 3, 1, 2 }), rn:permute({ 3, 1, 2 })
    assert.are.equal(0, vl.flow.epe(vl.flow.farneback(cp, cn), want))
    -- [1,H,W], float32 and strided views give the gray result too
    assert.are.equal(0, vl.flow.epe(vl.flow.farneback(gp:view({ 1, H, W }), gn:view({ 1, H, W })), want))
    assert.are.equal(0, vl.flow.epe(vl.flow.farneback(gp:float(), gn:float()), want))
    local gpt = gp:t():contiguous():t()
    assert.is_false(gpt:is_contiguous())
    assert.are.equal(0, vl.flow.epe(vl.flow.farneback(gpt, gn), want))
  end)
end)

describe("lucas_kanade", function()
  it("tracks a (1.7, -1.1) shift: median within 0.1 px on a grid inside", function()
    local prev, next = moving_pair(128, 128, 0, 1.7, -1.1)
    local pts = {}
    for y = 20, 108, 11 do
      for x = 20, 108, 11 do pts[#pts + 1] = { x, y } end
    end
    local p, st, err = vl.flow.lucas_kanade(prev, next, vl.tensor(pts, { dtype = "float32" }))
    assert.are.same({ #pts, 2 }, p:size())
    assert.are.equal("bool", st.dtype)
    assert.are.equal("float32", err.dtype)
    local pt, stt = p:totable(), st:totable()
    local du, dv = {}, {}
    for i = 1, #pts do
      assert.is_true(stt[i], "point " .. i .. " lost")
      du[#du + 1], dv[#dv + 1] = pt[i][1] - pts[i][1], pt[i][2] - pts[i][2]
    end
    assert.is_true(math.abs(median(du) - 1.7) < 0.1, "median u " .. median(du))
    assert.is_true(math.abs(median(dv) + 1.1) < 0.1, "median v " .. median(dv))
  end)

  it("tracks a rotation (0.02 rad): median point error under 0.1 px", function()
    local prev, next, truth = moving_pair(128, 128, 0.02, 0.6, 0.4)
    local pts = {}
    for y = 20, 108, 11 do
      for x = 20, 108, 11 do pts[#pts + 1] = { x, y } end
    end
    local p = vl.flow.lucas_kanade(prev, next, vl.tensor(pts, { dtype = "float32" })):totable()
    local errs = {}
    for i, q in ipairs(pts) do
      local tu, tv = truth(q[1], q[2])
      errs[i] = math.sqrt((p[i][1] - q[1] - tu) ^ 2 + (p[i][2] - q[2] - tv) ^ 2)
    end
    assert.is_true(median(errs) < 0.1, "median error " .. median(errs))
  end)

  local lk_cases = {
    default = {},
    small = { win_size = 9, max_level = 1, iterations = 10, epsilon = 0.03, min_eig_threshold = 1e-3 },
  }
  for _, name in ipairs({ "default", "small" }) do
    it(name .. ": matches cv2.calcOpticalFlowPyrLK (status exactly, points and errors to 1e-3)", function()
      local prev, next, pts = load("prev"), load("next"), load("lk_points")
      local p, st, err = vl.flow.lucas_kanade(prev, next, pts, lk_cases[name])
      p, st, err = p:totable(), st:totable(), err:totable()
      local rp, rs, re = load("lk_" .. name .. "_pts"):totable(), load("lk_" .. name .. "_status"):totable(),
                         load("lk_" .. name .. "_err"):totable()
      local tracked, lost = 0, 0
      for i = 1, #rp do
        assert.are.equal(rs[i] ~= 0, st[i], "status of point " .. i)
        if st[i] then
          tracked = tracked + 1
          assert.is_true(math.abs(p[i][1] - rp[i][1]) < 1e-3 and math.abs(p[i][2] - rp[i][2]) < 1e-3,
                         string.format("point %d: (%g, %g) vs (%g, %g)", i, p[i][1], p[i][2], rp[i][1], rp[i][2]))
          assert.is_true(math.abs(err[i] - re[i]) < 1e-3, "error of point " .. i)
        else
          lost = lost + 1
          assert.are.equal(0, err[i])
        end
      end
      assert.is_true(tracked >= 60)
      assert.is_true(lost >= 2) -- the two points outside the image
    end)
  end

  it("loses points that leave the image and keeps float64 points", function()
    local prev, next = moving_pair(64, 64, 0, 1.7, -1.1)
    local pts = vl.tensor({ { 30, 30 }, { -100, 5 }, { 5, 500 } }, { dtype = "float64" })
    local p, st = vl.flow.lucas_kanade(prev, next, pts, { max_level = 1 })
    assert.are.same({ true, false, false }, st:totable())
    assert.are.equal("float32", p.dtype)
    local none = vl.flow.lucas_kanade(prev, next, vl.zeros({ 0, 2 }))
    assert.are.same({ 0, 2 }, none:size())
  end)
end)

describe("to_rgb", function()
  it("matches the numpy transcription of Middlebury's colour code", function()
    local got = vl.flow.to_rgb(load("wheel_flow"), { max_magnitude = 2.0 })
    assert.are.same({ 9, 11, 3 }, got:size())
    assert.are.equal("uint8", got.dtype)
    assert.are.same(load("wheel_rgb"):totable(), got:totable())
  end)

  it("closed-form colours: +x at the rim is red, no motion white, unknown black", function()
    local f = vl.tensor({ { { 3, 0 }, { 0, 0 }, { 0 / 0, 1 }, { -3, 0 } } }, { dtype = "float32" })
    local c = vl.flow.to_rgb(f, { max_magnitude = 3 }):totable()[1]
    assert.are.same({ 255, 0, 0 }, c[1])
    assert.are.same({ 255, 255, 255 }, c[2])
    assert.are.same({ 0, 0, 0 }, c[3])
    -- -x: wheel entry 27 (cyan-blue: 0, 255 - 255*2//11, 255)
    assert.are.same({ 0, 209, 255 }, c[4])
    -- without max_magnitude the largest flow (3) is the rim
    assert.are.same(c, vl.flow.to_rgb(f):totable()[1])
  end)
end)

describe("epe", function()
  it("mean, masked mean and per-pixel map", function()
    local f = vl.tensor({ { { 3, 4 }, { 0, 0 } }, { { 1, 1 }, { 6, 8 } } }, { dtype = "float32" })
    local g = vl.zeros({ 2, 2, 2 })
    assert.is_true(math.abs(vl.flow.epe(f, g) - (5 + 0 + math.sqrt(2) + 10) / 4) < 1e-12)
    local m = vl.tensor({ { true, false }, { false, true } })
    assert.are.equal(7.5, vl.flow.epe(f, g, { mask = m }))
    local map = vl.flow.epe(f, g, { per_pixel = true })
    assert.are.same({ 2, 2 }, map:size())
    assert.are.equal(10, map:totable()[2][2])
  end)
end)

describe("bad input", function()
  local a = vl.zeros({ 40, 40 })
  it("mismatched sizes, dims and dtypes", function()
    fails("farneback: prev %[40,40%] and next %[40,41%] have different sizes", vl.flow.farneback, a,
          vl.zeros({ 40, 41 }))
    fails("farneback: prev has shape %[2,40,40%], expected a gray", vl.flow.farneback, vl.zeros({ 2, 40, 40 }), a)
    fails("farneback: prev has shape %[40%]", vl.flow.farneback, vl.zeros({ 40 }), a)
    fails("farneback: next must be uint8, float32 or float64, got int32", vl.flow.farneback, a,
          vl.zeros({ 40, 40 }, { dtype = "int32" }))
    fails("lucas_kanade: points have shape %[3%], expected %[N,2%]", vl.flow.lucas_kanade, a, a, vl.zeros({ 3 }))
    fails("lucas_kanade: points must be float32 or float64", vl.flow.lucas_kanade, a, a,
          vl.zeros({ 3, 2 }, { dtype = "int64" }))
    fails("epe: flow %[2,2,2%] and gt %[2,3,2%] differ in shape", vl.flow.epe, vl.zeros({ 2, 2, 2 }),
          vl.zeros({ 2, 3, 2 }))
    fails("to_rgb: flow has shape %[2,2,3%], expected %[H,W,2%]", vl.flow.to_rgb, vl.zeros({ 2, 2, 3 }))
    fails("farneback: initial flow has shape %[40,40%], expected %[40,40,2%]", vl.flow.farneback, a, a,
          { flow = a })
  end)

  it("option values out of range and unknown options", function()
    fails("levels %-1 out of range", vl.flow.farneback, a, a, { levels = -1 })
    fails("winsize 8, expected an odd size from 3", vl.flow.farneback, a, a, { winsize = 8 })
    fails("winsize 1, expected an odd size from 3", vl.flow.farneback, a, a, { winsize = 1 })
    fails("poly_n 6, expected 5 or 7", vl.flow.farneback, a, a, { poly_n = 6 })
    fails("pyr_scale 1 out of range, expected 0 < pyr_scale < 1", vl.flow.farneback, a, a, { pyr_scale = 1 })
    fails("iterations 0 out of range", vl.flow.farneback, a, a, { iterations = 0 })
    fails("unknown option 'win_size'", vl.flow.farneback, a, a, { win_size = 3 })
    fails("win_size 2 out of range", vl.flow.lucas_kanade, a, a, vl.zeros({ 1, 2 }), { win_size = 2 })
    fails("max_level %-1 out of range", vl.flow.lucas_kanade, a, a, vl.zeros({ 1, 2 }), { max_level = -1 })
    fails("max_magnitude %-1%.0+, expected a finite value > 0", vl.flow.to_rgb, vl.zeros({ 2, 2, 2 }),
          { max_magnitude = -1 })
  end)

  it("NaN or infinite intensities and points are refused, naming the pixel", function()
    local b = vl.zeros({ 40, 40 })
    b[3][5] = 0 / 0
    fails("farneback: next has a NaN or infinite value at row 3, column 5", vl.flow.farneback, a, b)
    fails("lucas_kanade: prev has a NaN or infinite value at row 3, column 5", vl.flow.lucas_kanade, b, a,
          vl.zeros({ 1, 2 }))
    fails("lucas_kanade: point 2 has a NaN", vl.flow.lucas_kanade, a, a, vl.tensor({ { 1, 1 }, { 0 / 0, 1 } }))
  end)

  it("images smaller than the pyramid allows: levels are clamped (sides stay >= 32)", function()
    local prev, next = moving_pair(40, 48, 0, 0.7, -0.4)
    local f5 = vl.flow.farneback(prev, next, { levels = 5 })
    local f0 = vl.flow.farneback(prev, next, { levels = 0 })
    assert.are.equal(0, vl.flow.epe(f5, f0))
    local tiny = vl.flow.farneback(vl.ones({ 3, 4 }), vl.ones({ 3, 4 }), { levels = 3 })
    assert.are.same({ 3, 4, 2 }, tiny:size())
    assert.are.equal(0, vl.flow.epe(tiny, vl.zeros({ 3, 4, 2 })))
    local empty = vl.flow.farneback(vl.zeros({ 0, 5 }), vl.zeros({ 0, 5 }))
    assert.are.same({ 0, 5, 2 }, empty:size())
    -- Lucas-Kanade stops its pyramid where a level would be no larger than the window
    local pts = vl.tensor({ { 20, 20 } }, { dtype = "float32" })
    local p5 = vl.flow.lucas_kanade(prev, next, pts, { max_level = 5 })
    local p0 = vl.flow.lucas_kanade(prev, next, pts, { max_level = 0 })
    assert.are.same(p0:totable(), p5:totable())
  end)
end)
