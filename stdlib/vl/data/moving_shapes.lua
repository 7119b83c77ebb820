-- vl.data.moving_shapes — a seeded synthetic video dataset: one coloured
-- shape per clip performing one of 8 actions, with a caption per clip and
-- an optional tone track (merged into vl.data).
--
--   local data = require "vl.data"
--   local ds = data.moving_shapes{n = 2000, frames = 16, size = 32, seed = 1, split = "train"}
--   local video, label = ds:get(1)     -- float32 [3,16,32,32] in [0,1], int64 0-d (1..8)
--   print(ds.classes[label:item()], ds.captions[1])   -- "moving left"  "a red circle moving left"
--   local loader = data.DataLoader(ds, {batch_size = 32, shuffle = true})  -- [32,3,16,32,32], [32]
--
-- Everything is drawn from the seed (split "test" uses another stream than
-- "train"), rendered with whole-tensor operations (signed distances over a
-- pixel grid, anti-aliased over one pixel) and kept as uint8 [N,C,T,H,W].
-- The global vl generator is left as it was. See man vl(7), "Moving shapes".
local vl = require "vl"

local fmt, floor, pi = string.format, math.floor, math.pi

local M = {}

M.moving_shapes_classes = { "moving left", "moving right", "moving up", "moving down", "rotating clockwise",
  "rotating counterclockwise", "growing", "shrinking" }
M.moving_shapes_shapes = { "circle", "square", "triangle", "cross" }
M.moving_shapes_colours = { "red", "green", "blue", "yellow", "cyan", "magenta" }

local RGB = {
  { 1.00, 0.12, 0.12 }, { 0.15, 0.85, 0.20 }, { 0.20, 0.40, 1.00 },
  { 0.95, 0.90, 0.15 }, { 0.10, 0.85, 0.90 }, { 0.90, 0.20, 0.85 },
}
local TEMPLATES = { "a %s %s %s", "the %s %s is %s", "a %s %s, %s" }
local PITCH = { 330, 440, 550, 660 } -- Hz, by shape

local LEFT, RIGHT, UP, DOWN, CW, CCW, GROW, SHRINK = 1, 2, 3, 4, 5, 6, 7, 8

local function check_int(v, what, lo, hi)
  if type(v) ~= "number" or v ~= floor(v) then
    error(fmt("moving_shapes: %s must be an integer, got %s", what, tostring(v)), 3)
  end
  v = math.tointeger(v)
  if v < lo or (hi and v > hi) then
    error(fmt("moving_shapes: %s must be in %d..%s, got %d", what, lo, hi and tostring(hi) or "", v), 3)
  end
  return v
end

local function check_num(v, what, lo, hi)
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    error(fmt("moving_shapes: %s must be a number in [%g, %g], got %s", what, lo, hi, tostring(v)), 3)
  end
  return v
end

-- The per-clip parameters, from uniforms u[1..] of the clip (a Lua list).
-- Positions in pixels, origin at the top-left corner, y down; angles in
-- radians, increasing clockwise on screen.
local function clip_params(action, u, S, T)
  local p = { action = action }
  p.shape = floor(u[1] * 4) + 1
  p.colour = floor(u[2] * 6) + 1
  p.bright = 0.7 + 0.3 * u[3]
  p.bg = 0.12 * u[4]
  p.template = floor(u[5] * #TEMPLATES) + 1
  p.theta0 = 2 * pi * u[6]
  local r = S * (0.12 + 0.06 * u[7])
  local r_a = S * (0.07 + 0.03 * u[7])
  local r_b = r_a * (1.8 + 0.6 * u[8])
  local rmax = (action == GROW or action == SHRINK) and r_b or r
  local m = rmax + 1
  local d = S * (0.30 + 0.20 * u[9])
  local function between(lo, hi, w) if hi < lo then return (lo + hi) / 2 end return lo + (hi - lo) * w end
  local cx, cy = between(m, S - m, u[10]), between(m, S - m, u[11])
  local spin = (action == CW and 1 or -1) * pi * (0.6 + 0.4 * u[12])
  p.cx, p.cy, p.r, p.th = {}, {}, {}, {}
  local along = between(m, S - m - d, u[10])
  for t = 0, T - 1 do
    local tau = T > 1 and t / (T - 1) or 0
    local x, y, rr, th = cx, cy, r, p.theta0
    if action == LEFT then x = S - along - tau * d
    elseif action == RIGHT then x = along + tau * d
    elseif action == UP then y = S - along - tau * d
    elseif action == DOWN then y = along + tau * d
    elseif action == CW or action == CCW then th = p.theta0 + spin * tau
    elseif action == GROW then rr = r_a + (r_b - r_a) * tau
    elseif action == SHRINK then rr = r_b + (r_a - r_b) * tau end
    p.cx[t + 1], p.cy[t + 1], p.r[t + 1], p.th[t + 1] = x, y, rr, th
  end
  p.rmax, p.spin = rmax, spin
  -- one distractor dot: grey, drifting in a random direction
  p.dot = {
    x = S * u[13], y = S * u[14], r = 1.2 + 0.8 * u[15], grey = 0.25 + 0.25 * u[16],
    vx = 0.6 * math.cos(2 * pi * u[17]) * u[18], vy = 0.6 * math.sin(2 * pi * u[17]) * u[18],
  }
  p.phase = 2 * pi * u[19]
  return p
end

local NU = 19 -- uniforms per clip

-- Alpha of a shape given rotated coordinates (u, v) and radius r ([n,T,1,1]).
local function sdf_circle(u, v, r) return (u * u + v * v):sqrt() - r end
local function sdf_square(u, v, r) return vl.maximum(u:abs(), v:abs()) - r * 0.85 end
local function sdf_triangle(u, v, r)
  -- equilateral, a vertex along +u; inradius 0.65 r (circumradius 1.3 r)
  local c, s = math.cos(2 * pi / 3), math.sin(2 * pi / 3)
  local d1 = -u
  local d2 = u * (-c) + v * s -- outward normals at angles pi, pi/3, -pi/3
  local d3 = u * (-c) - v * s
  return vl.maximum(vl.maximum(d1, d2), d3) - r * 0.65
end
local function sdf_cross(u, v, r)
  local au, av = u:abs(), v:abs()
  local a, b = r, r * 0.4
  return vl.minimum(vl.maximum(au - a, av - b), vl.maximum(au - b, av - a))
end
local SDF = { sdf_circle, sdf_square, sdf_triangle, sdf_cross }

local function alpha(sdf) return (sdf:neg():add(0.5)):clamp(0, 1) end

local function col(list, n, T)
  return vl.tensor(list, { dtype = "float32" }):view(n, T, 1, 1)
end

-- Render the clips ids[1..n] of `P` into out (uint8 [N,C,T,S,S]).
local function render(out, P, ids, S, T, C, noise)
  local n = #ids
  local grid = vl.arange(0, S, 1, { dtype = "float32" }):add(0.5)
  local X, Y = grid:view(1, 1, 1, S), grid:view(1, 1, S, 1)
  local cx, cy, r, th, shp = {}, {}, {}, {}, {}
  local px, py = {}, {}
  for k = 0, n - 1 do
    local p = P[ids[k + 1]]
    shp[k + 1] = p.shape
    for t = 1, T do
      local j = k * T + t
      cx[j], cy[j], r[j], th[j] = p.cx[t], p.cy[t], p.r[t], p.th[t]
      px[j], py[j] = p.dot.x + p.dot.vx * (t - 1), p.dot.y + p.dot.vy * (t - 1)
    end
  end
  cx, cy, r, th, px, py = col(cx, n, T), col(cy, n, T), col(r, n, T), col(th, n, T), col(px, n, T), col(py, n, T)
  local dx, dy = X - cx, Y - cy
  local cs, sn = th:cos(), th:sin()
  local u, v = cs * dx + sn * dy, cs * dy - sn * dx
  local shape_id = vl.tensor(shp, { dtype = "int64" }):view(n, 1, 1, 1)
  local sdf
  for k = #SDF, 1, -1 do
    local present = false
    for _, s in ipairs(shp) do present = present or s == k end
    if present then
      local d = SDF[k](u, v, r)
      sdf = sdf and vl.where(shape_id:eq(k), d, sdf) or d
    end
  end
  local a = alpha(sdf)
  -- the notch: a dark dot off-centre (makes rotation visible for every shape)
  local nu = u - r * 0.4
  local an = alpha((nu * nu + v * v):sqrt() - r * 0.35) * a
  -- the distractor
  local ddx, ddy = X - px, Y - py
  local dr, grey, bg, bright = {}, {}, {}, {}
  for k = 0, n - 1 do
    local p = P[ids[k + 1]]
    dr[k + 1], grey[k + 1], bg[k + 1], bright[k + 1] = p.dot.r, p.dot.grey, p.bg, p.bright
  end
  local function per_clip(list) return vl.tensor(list, { dtype = "float32" }):view(n, 1, 1, 1) end
  local ad = alpha((ddx * ddx + ddy * ddy):sqrt() - per_clip(dr))
  local greyt, bgt, brt = per_clip(grey), per_clip(bg), per_clip(bright)
  local shade = (an * (-0.85)):add(1) -- 1 outside the notch, 0.15 inside
  local chans = {}
  for ch = 1, C do
    local colour = {}
    for k = 0, n - 1 do
      local p = P[ids[k + 1]]
      local rgb = RGB[p.colour]
      colour[k + 1] = (C == 3 and rgb[ch] or (0.2989 * rgb[1] + 0.587 * rgb[2] + 0.114 * rgb[3])) * p.bright
    end
    local base = bgt + (vl.rand({ n, T, S, S }):sub(0.5):mul(2 * noise))
    base = base + (greyt - base) * ad
    local fg = per_clip(colour) * shade
    chans[ch] = (base + (fg - base) * a)
  end
  local x = vl.stack(chans, 2):clamp(0, 1):mul(255):add(0.5):floor():byte()
  for k = 1, n do out:select(1, ids[k]):copy_(x:select(1, k)) end
end

-- The tone track of clip p: float32 [L].
local function tone(p, L, rate)
  local tau = L > 1 and vl.arange(0, L, 1, { dtype = "float64" }):div(L - 1) or vl.zeros(1, { dtype = "float64" })
  local f0 = PITCH[p.shape]
  local a = p.action
  local amp, pitch
  local T = #p.cx
  -- per-sample interpolation of a per-frame list
  local function follow(list)
    local t = vl.tensor(list, { dtype = "float64" })
    if T == 1 then return vl.full({ L }, list[1], { dtype = "float64" }) end
    local pos = tau * (T - 1)
    local i0 = pos:floor():clamp(0, T - 2)
    local w = pos - i0
    local lo = t:index_select(1, i0:long():add(1))
    local hi = t:index_select(1, i0:long():add(2))
    return lo + (hi - lo) * w
  end
  local S = p.size
  if a == LEFT or a == RIGHT then
    amp = follow(p.cx):div(S):square() -- louder to the right: (x / size)^2
    pitch = vl.ones_like(tau)
  elseif a == UP or a == DOWN then
    amp = vl.full_like(tau, 0.8)
    pitch = vl.pow(2, follow(p.cy):div(-S):add(0.5)) -- higher on screen, higher pitch
  elseif a == CW or a == CCW then
    amp = (follow(p.th):mul(4)):cos():mul(0.4):add(0.6) -- four beats per turn
    pitch = (a == CW) and tau:mul(0.1):add(1) or tau:mul(-0.1):add(1)
  else
    local rr = follow(p.r):div(p.rmax)
    amp = rr * rr -- the area
    pitch = rr:reciprocal():sqrt() -- bigger, lower
  end
  local phase = (pitch * (2 * pi * f0 / rate)):cumsum(1):add(p.phase)
  return (phase:sin() * amp):mul(0.5):float()
end

-- data.moving_shapes{n = 2000, frames = 16, size = 32, channels = 3, seed = 1,
--   split = "train" | "test", noise = 0.04, audio = false, audio_rate = 8000, fps = 8}
function M.moving_shapes(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("moving_shapes: expected an options table", 2) end
  local data = require "vl.data"
  local n = check_int(opts.n or 2000, "n", 1)
  local T = check_int(opts.frames or 16, "frames", 1, 4096)
  local S = check_int(opts.size or 32, "size", 8, 1024)
  local C = check_int(opts.channels or 3, "channels", 1, 3)
  if C == 2 then error("moving_shapes: channels must be 1 or 3, got 2", 2) end
  local seed = opts.seed or 1
  if math.type(seed) ~= "integer" then error(fmt("moving_shapes: seed must be an integer, got %s", tostring(seed)), 2) end
  local split = opts.split or "train"
  if split ~= "train" and split ~= "test" then
    error(fmt("moving_shapes: split must be \"train\" or \"test\", got %s", tostring(split)), 2)
  end
  local noise = check_num(opts.noise or 0.04, "noise", 0, 0.5)
  local rate = check_int(opts.audio_rate or 8000, "audio_rate", 2000, 192000)
  local fps = check_num(opts.fps or 8, "fps", 1e-3, 1000)
  if n * C * T * S * S > (1 << 40) then error("moving_shapes: n x channels x frames x size^2 is too large", 2) end

  local saved = vl.get_rng_state()
  vl.manual_seed(seed * 2 + (split == "test" and 1 or 0))
  local ok, err = pcall(function()
    local actions = vl.randperm(n):sub(1):remainder(8):add(1)
    local U = vl.rand({ n, NU }, { dtype = "float64" }):totable()
    local alist = actions:totable()
    local P = {}
    for i = 1, n do
      P[i] = clip_params(alist[i], U[i], S, T)
      P[i].size = S
    end
    local video = vl.empty({ n, C, T, S, S }, { dtype = "uint8" })
    local chunk = math.max(1, (1 << 20) // (T * S * S))
    -- chunks of one shape where possible: each chunk computes the distance
    -- functions of the shapes it holds only
    local sorted = {}
    for i = 1, n do sorted[i] = i end
    table.sort(sorted, function(a, b)
      if P[a].shape ~= P[b].shape then return P[a].shape < P[b].shape end
      return a < b
    end)
    for first = 1, n, chunk do
      render(video, P, table.move(sorted, first, math.min(first + chunk - 1, n), 1, {}), S, T, C, noise)
    end
    return { P = P, video = video, labels = actions }
  end)
  vl.set_rng_state(saved)
  if not ok then error(err, 0) end
  local P, video, labels = err.P, err.video, err.labels

  local captions, shapes, colours = {}, {}, {}
  for i = 1, n do
    local p = P[i]
    local cname, sname = M.moving_shapes_colours[p.colour], M.moving_shapes_shapes[p.shape]
    captions[i] = fmt(TEMPLATES[p.template], cname, sname, M.moving_shapes_classes[p.action])
    shapes[i], colours[i] = p.shape, p.colour
  end
  local samples = math.max(1, floor(T / fps * rate + 0.5))

  local audio
  if opts.audio then
    local cache = {}
    audio = setmetatable({}, {
      __index = function(_, i)
        if math.type(i) ~= "integer" or i < 1 or i > n then return nil end
        local a = cache[i] or tone(P[i], samples, rate)
        cache[i] = a
        return a
      end,
      __len = function() return n end,
    })
  end

  local function clip(i) return video:select(1, i):float():div(255) end
  local ds = data.Dataset.new {
    len = n,
    get = function(i)
      if audio then return clip(i), labels:select(1, i), audio[i] end
      return clip(i), labels:select(1, i)
    end,
    get_batch = function(ix)
      local x = video:index_select(1, ix):float():div(255)
      local y = labels:index_select(1, ix)
      if audio then
        local list = {}
        for k, i in ipairs(ix:totable()) do list[k] = audio[i] end
        return x, y, vl.stack(list, 1)
      end
      return x, y
    end,
  }
  ds.video, ds.labels, ds.classes, ds.captions = video, labels, M.moving_shapes_classes, captions
  ds.shapes = vl.tensor(shapes, { dtype = "int64" })
  ds.colours = vl.tensor(colours, { dtype = "int64" })
  ds.shape_names, ds.colour_names = M.moving_shapes_shapes, M.moving_shapes_colours
  ds.audio, ds.audio_rate, ds.audio_samples, ds.fps = audio, rate, samples, fps
  ds.frames, ds.size, ds.channels, ds.split, ds.seed = T, S, C, split, seed
  return ds
end

return M
