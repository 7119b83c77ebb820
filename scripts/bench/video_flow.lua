-- scripts/bench/video_flow.lua — optical flow against OpenCV (Debian's
-- python3-opencv through /usr/bin/python3, scripts/bench/flow_opencv.py)
-- on the same 640x480 frames with the same thread count (1 and 2):
--   - vl.flow.farneback vs cv2.calcOpticalFlowFarneback, same parameters
--     (pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5,
--     poly_sigma 1.1): best time in ms and the mean endpoint error of both
--     against the known flow (whole frame and 16 px inside the border);
--   - vl.flow.lucas_kanade vs cv2.calcOpticalFlowPyrLK on 1000 points
--     (win 21, 3 levels): time and the median point error.
-- The frames: a smooth texture (24 sinusoids, analytic) and the same
-- texture rotated by 0.01 rad about the centre and moved by (2.3, -1.4),
-- rounded to uint8; written to .npy files (vl.npy.save) that the peer reads.
-- ratio = OpenCV time / vlua time (above 1: vlua faster).
-- Run: build/vlua scripts/bench/video_flow.lua [--rounds N]
local vl = require "vl"
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib/bench.lua")

local H, W = 480, 640
local THETA, TX, TY = 0.01, 2.3, -1.4
local ROUNDS = 3
for i = 1, #arg do
  if arg[i] == "--rounds" then ROUNDS = tonumber(arg[i + 1]) end
end

-- deterministic parameters (LCG), the same texture as the tests use
local seed = 12345
local function rnd(lo, hi)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return lo + (hi - lo) * seed / 2147483648
end
local waves = {}
for i = 1, 24 do
  waves[i] = { f = rnd(0.08, 0.45), a = rnd(0, 2 * math.pi), p = rnd(0, 2 * math.pi), m = rnd(8, 18) / 2.2 }
end

local function texture(x, y)
  local v = vl.full({ H, W }, 128.0, { dtype = "float64" })
  for _, w in ipairs(waves) do
    v = v + vl.sin((x * (w.f * math.cos(w.a)) + y * (w.f * math.sin(w.a))) + w.p) * w.m
  end
  return v
end

local xs = vl.arange(0, W, 1, { dtype = "float64" }):view({ 1, W }):expand({ H, W })
local ys = vl.arange(0, H, 1, { dtype = "float64" }):view({ H, 1 }):expand({ H, W })
local cx, cy = (W - 1) / 2, (H - 1) / 2
local c, s = math.cos(THETA), math.sin(THETA)
-- next(p) = prev(T^-1 p), T: rotate about the centre, then translate
local px, py = xs - (TX + cx), ys - (TY + cy)
local sx, sy = px * c + py * s + cx, px * (-s) + py * c + cy
local function to_u8(t) return vl.clamp(vl.round(t), 0, 255):to("uint8") end
local prev, next = to_u8(texture(xs, ys)), to_u8(texture(sx, sy))
-- flow at p: T(p) - p
local qx, qy = xs - cx, ys - cy
local gu = qx * c - qy * s + cx + TX - xs
local gv = qx * s + qy * c + cy + TY - ys
local gt = vl.stack({ gu, gv }, 3):float():contiguous()

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
vl.npy.save(dir .. "/prev.npy", prev)
vl.npy.save(dir .. "/next.npy", next)
vl.npy.save(dir .. "/gt.npy", gt)

-- 1000 points on a grid inside the frame
local NP = 1000
local pts = {}
for i = 0, NP - 1 do
  pts[#pts + 1] = { 24 + (i % 40) * 15.0 + 0.25, 24 + (i // 40) * 17.0 + 0.5 }
end
local points = vl.tensor(pts, { dtype = "float32" })
vl.npy.save(dir .. "/points.npy", points)

local inner = vl.zeros({ H, W }, { dtype = "bool" })
inner:narrow(1, 17, H - 32):narrow(2, 17, W - 32):fill_(1)

local FB = { pyr_scale = 0.5, levels = 3, winsize = 15, iterations = 3, poly_n = 5, poly_sigma = 1.1 }

local function median(t)
  table.sort(t)
  local n = #t
  if n == 0 then return 0 / 0 end
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local function lk_error(p, st)
  local pt, stt, gtt = p:totable(), st:totable(), {}
  local errs = {}
  for i = 1, NP do
    if stt[i] then
      local x, y = pts[i][1], pts[i][2]
      local qx_, qy_ = x - cx, y - cy
      local ex, ey = qx_ * c - qy_ * s + cx + TX, qx_ * s + qy_ * c + cy + TY
      errs[#errs + 1] = math.sqrt((pt[i][1] - ex) ^ 2 + (pt[i][2] - ey) ^ 2)
    end
  end
  gtt = #errs
  return median(errs), gtt
end

local function vlua_run(n)
  vl.set_num_threads(n)
  local flow
  local tf = bench.best_time(function() flow = vl.flow.farneback(prev, next, FB) end)
  local p, st
  local tl = bench.best_time(function() p, st = vl.flow.lucas_kanade(prev, next, points) end)
  local lkm, lkn = lk_error(p, st)
  return { fb = tf * 1e3, epe = vl.flow.epe(flow, gt), epe_in = vl.flow.epe(flow, gt, { mask = inner }),
           lk = tl * 1e3, lk_err = lkm, lk_n = lkn }
end

local have_cv = select(2, bench.lines("/usr/bin/python3 -c 'import cv2'"))
local function opencv_run(n)
  if not have_cv then return nil end
  local rows, _, okc, out = bench.run_peer(bench.env(n) .. "/usr/bin/python3 " .. bench.dir .. "flow_opencv.py " ..
                                           dir .. " " .. n)
  if not okc then
    print("OpenCV failed:\n" .. table.concat(out, "\n"))
    return nil
  end
  local f, l = rows.farneback, rows.lk
  return { fb = tonumber(f[3]), epe = tonumber(f[4]), epe_in = tonumber(f[5]), lk = tonumber(l[3]),
           lk_err = tonumber(l[4]), lk_n = tonumber(l[5]), version = rows.version and rows.version[3] }
end

local maxn = math.max(1, bench.threads())
bench.header("optical flow, 640x480 uint8 frames (rotation 0.01 rad + translation (2.3, -1.4)): best time in ms", maxn)
local threads = { 1 }
if maxn >= 2 then threads[2] = 2 end
local res = {}
for r = 1, ROUNDS do
  for _, n in ipairs(threads) do
    local v, o = vlua_run(n), opencv_run(n)
    local b = res[n] or {}
    res[n] = b
    if not b.v or v.fb < b.v.fb then b.vfb, b.v = v.fb, v end
    b.vlk = math.min(b.vlk or math.huge, v.lk)
    if o then
      b.ofb = math.min(b.ofb or math.huge, o.fb)
      b.olk = math.min(b.olk or math.huge, o.lk)
      b.o = o
    end
  end
  _ = r
end
vl.set_num_threads(maxn)
if not have_cv then print("OpenCV: n/a (install python3-opencv)") end
if res[1] and res[1].o and res[1].o.version then print("OpenCV " .. res[1].o.version) end
print()
local fmt = "%-8s %10s %10s %7s   %12s %12s %12s %12s"
print(string.format(fmt, "threads", "vl fb", "cv2 fb", "ratio", "vl EPE", "cv2 EPE", "vl EPE in", "cv2 EPE in"))
for _, n in ipairs(threads) do
  local b = res[n]
  local o = b.o or {}
  print(string.format(fmt, n, bench.num(b.vfb), bench.num(b.ofb), bench.ratio(b.ofb, b.vfb),
                      string.format("%.4f", b.v.epe), o.epe and string.format("%.4f", o.epe) or "n/a",
                      string.format("%.4f", b.v.epe_in), o.epe_in and string.format("%.4f", o.epe_in) or "n/a"))
end
print()
fmt = "%-8s %10s %10s %7s   %14s %14s"
print(string.format(fmt, "threads", "vl LK", "cv2 LK", "ratio", "vl med err", "cv2 med err"))
for _, n in ipairs(threads) do
  local b = res[n]
  local o = b.o or {}
  print(string.format(fmt, n, string.format("%.2f", b.vlk), b.olk and string.format("%.2f", b.olk) or "n/a",
                      bench.ratio(b.olk, b.vlk),
                      string.format("%.4f (%d)", b.v.lk_err, b.v.lk_n),
                      o.lk_err and string.format("%.4f (%d)", o.lk_err, o.lk_n) or "n/a"))
end
print("ratio = OpenCV time / vlua time (above 1: vlua faster); EPE in px against the known flow, 'in': 16 px "
      .. "inside the border; LK: median distance to the true position over tracked points (count)")
os.execute("rm -rf " .. dir)
