-- video_data_spec.lua — vl.data.moving_shapes (synthetic video) and the
-- frame samplers vl.data.tsn_indices / uniform_indices / dense_indices.
-- References: closed forms worked by hand (MMAction2's SampleFrames rules,
-- PyTorchVideo's uniform subsample, SlowFast's test views) and, for the
-- videos, what the pixels show (centroids, areas, colours, pitches measured
-- from the rendered tensors).
local vl = require "vl"
local data = require "vl.data"

local function list(t) return t:totable() end

describe("vl.data.tsn_indices", function()
  it("test mode takes the segment centres (exact values)", function()
    -- floor((k + 1/2) * 300 / 8) + 1
    assert.are.same({ 19, 57, 94, 132, 169, 207, 244, 282 }, list(data.tsn_indices(300, 8)))
    assert.are.same({ 2, 6, 9 }, list(data.tsn_indices(10, 3, { train = false })))
    assert.are.same({ 1 }, list(data.tsn_indices(1, 1)))
    local t = data.tsn_indices(16, 4)
    assert.are.equal("int64", t.dtype)
    assert.are.same({ 4 }, t:size())
  end)

  it("videos shorter than the segment count repeat frames as MMAction2", function()
    assert.are.same({ 1, 1, 2, 3, 3 }, list(data.tsn_indices(3, 5)))                -- test: centres
    assert.are.same({ 1, 2, 2, 3, 3 }, list(data.tsn_indices(3, 5, { train = true }))) -- train: around(k * 3/5)
    assert.are.same({ 1, 1, 2, 3 }, list(data.tsn_indices(2, 4, { train = true })))    -- halves round to even
  end)

  it("train mode draws one frame inside each segment, all of its frames in time", function()
    local g = data.Generator(3)
    local seen = {}
    for _ = 1, 200 do
      local idx = list(data.tsn_indices(43, 4, { train = true, generator = g })) -- segments of 10, 3 left over
      for k = 1, 4 do
        local lo = (k - 1) * 10 + 1
        assert.is_true(idx[k] >= lo and idx[k] <= lo + 9, "index " .. idx[k] .. " outside segment " .. k)
      end
      seen[idx[1]] = true
    end
    for f = 1, 10 do assert.is_true(seen[f], "frame " .. f .. " never drawn") end
  end)

  it("is reproducible with the same seed and leaves the global generator alone", function()
    vl.manual_seed(99)
    local before = vl.get_rng_state()
    local a = list(data.tsn_indices(1000, 16, { train = true, generator = data.Generator(7) }))
    local b = list(data.tsn_indices(1000, 16, { train = true, generator = data.Generator(7) }))
    local c = list(data.tsn_indices(1000, 16, { train = true, generator = 7 })) -- an integer seed
    local d = list(data.tsn_indices(1000, 16, { train = true, generator = data.Generator(8) }))
    assert.are.same(a, b)
    assert.are.same(a, c)
    assert.are_not.same(a, d)
    assert.are.same(before, vl.get_rng_state())
    -- a Generator advances: two draws differ, and a saved state replays
    local g = data.Generator(7)
    local st = g:get_state()
    local e1 = list(data.tsn_indices(1000, 16, { train = true, generator = g }))
    local e2 = list(data.tsn_indices(1000, 16, { train = true, generator = g }))
    assert.are.same(a, e1)
    assert.are_not.same(e1, e2)
    g:set_state(st)
    assert.are.same(e1, list(data.tsn_indices(1000, 16, { train = true, generator = g })))
    -- without a generator: the global vl generator, repeatable by vl.manual_seed
    vl.manual_seed(5)
    local f1 = list(data.tsn_indices(1000, 16, { train = true }))
    vl.manual_seed(5)
    assert.are.same(f1, list(data.tsn_indices(1000, 16, { train = true })))
  end)

  it("rejects bad arguments clearly", function()
    local ok, err = pcall(data.tsn_indices, 0, 3)
    assert.is_false(ok)
    assert.matches("tsn_indices: num_frames must be >= 1, got 0", err)
    ok, err = pcall(data.tsn_indices, 10, 2.5)
    assert.matches("tsn_indices: num_segments must be an integer, got 2.5", err)
    ok, err = pcall(data.tsn_indices, 10, 2, { train = true, generator = "x" })
    assert.matches("generator must be a vl.data.Generator or an integer seed, got string", err)
  end)
end)

describe("vl.data.uniform_indices", function()
  it("spreads n frames from the first to the last (exact values)", function()
    -- torch.linspace(0, 15, 8).long() = 0 2 4 6 8 10 12 15
    assert.are.same({ 1, 3, 5, 7, 9, 11, 13, 16 }, list(data.uniform_indices(16, 8)))
    assert.are.same({ 1, 16 }, list(data.uniform_indices(16, 2)))
    assert.are.same({ 1 }, list(data.uniform_indices(16, 1)))
    assert.are.same({ 1, 2, 3, 4, 5 }, list(data.uniform_indices(5, 5)))
    assert.are.same({ 1, 1, 1, 2, 2, 2, 3 }, list(data.uniform_indices(3, 7))) -- more than there are: repeats
    local ok, err = pcall(data.uniform_indices, 10, 0)
    assert.is_false(ok)
    assert.matches("uniform_indices: n must be >= 1, got 0", err)
  end)
end)

describe("vl.data.dense_indices", function()
  it("test mode spaces clips evenly (exact values)", function()
    -- span 29, delta 271: starts 0, 135, 271
    local idx = data.dense_indices(300, 8, { stride = 4, num_clips = 3 })
    assert.are.same({ 3, 8 }, idx:size())
    assert.are.same({ 1, 5, 9, 13, 17, 21, 25, 29 }, list(idx)[1])
    assert.are.same({ 136, 140, 144, 148, 152, 156, 160, 164 }, list(idx)[2])
    assert.are.same({ 272, 276, 280, 284, 288, 292, 296, 300 }, list(idx)[3])
    -- one clip: the centred one, floor(93 / 2) = 46
    assert.are.same({ { 47, 49, 51, 53 } }, list(data.dense_indices(100, 4, { stride = 2 })))
    assert.are.same({ { 3, 4, 5, 6 } }, list(data.dense_indices(8, 4, { step = 1 })))
  end)

  it("wraps around or repeats the last frame when the video is too short", function()
    assert.are.same({ { 1, 3, 5, 2 } }, list(data.dense_indices(5, 4, { stride = 2 })))
    assert.are.same({ { 1, 3, 5, 5 } }, list(data.dense_indices(5, 4, { stride = 2, out_of_bound = "repeat_last" })))
    local ok, err = pcall(data.dense_indices, 5, 4, { out_of_bound = "clamp" })
    assert.is_false(ok)
    assert.matches("out_of_bound must be \"loop\" or \"repeat_last\"", err)
  end)

  it("train mode draws each clip's start uniformly and reproducibly", function()
    local g = data.Generator(11)
    local starts = {}
    for _ = 1, 100 do
      local idx = list(data.dense_indices(20, 4, { stride = 3, num_clips = 2, train = true, generator = g }))
      for _, clip in ipairs(idx) do
        local s = clip[1]
        assert.is_true(s >= 1 and s <= 11) -- delta = 20 - 10 = 10
        for j = 2, 4 do assert.are.equal(s + 3 * (j - 1), clip[j]) end
        starts[s] = true
      end
    end
    for s = 1, 11 do assert.is_true(starts[s], "start " .. s .. " never drawn") end
    local a = data.dense_indices(500, 8, { stride = 2, num_clips = 4, train = true, generator = 1 })
    local b = data.dense_indices(500, 8, { stride = 2, num_clips = 4, train = true, generator = 1 })
    assert.are.same(list(a), list(b))
  end)
end)

-- Foreground (the shape) of a clip [C,T,H,W] float: pixels well above the
-- dark background in their brightest channel and not grey (the distractor
-- is grey); returns per-frame centroid x, y and area.
local function track(clip)
  local mx, mn = clip:amax(1), clip:amin(1)
  local m = vl.logical_and(mx:gt(0.45), (mx - mn):gt(0.3)):float() -- [T,H,W]
  local S = clip:size(3)
  local xs = vl.arange(0, S, 1, { dtype = "float32" }):view(1, 1, S)
  local ys = vl.arange(0, S, 1, { dtype = "float32" }):view(1, S, 1)
  local area = m:sum({ 2, 3 })
  return (m * xs):sum({ 2, 3 }):div(area):totable(), (m * ys):sum({ 2, 3 }):div(area):totable(), area:totable()
end

describe("vl.data.moving_shapes", function()
  local ds = data.moving_shapes { n = 48, frames = 12, size = 32, seed = 3 }

  it("is a Dataset of float32 clips [C,T,H,W] in [0,1] and 1-based int64 labels", function()
    assert.are.equal(48, #ds)
    local x, y = ds:get(5)
    assert.are.equal("float32", x.dtype)
    assert.are.same({ 3, 12, 32, 32 }, x:size())
    assert.is_true(x:min():item() >= 0 and x:max():item() <= 1)
    assert.are.equal("int64", y.dtype)
    assert.are.equal(0, y:dim())
    assert.are.equal(ds.labels[5], y:item())
    assert.are.same({ 48 }, ds.labels:size())
    assert.are.equal(8, #ds.classes)
    assert.are.equal("moving left", ds.classes[1])
    -- balanced: 48 clips, 6 of each action
    local count = {}
    for _, l in ipairs(ds.labels:totable()) do count[l] = (count[l] or 0) + 1 end
    for c = 1, 8 do assert.are.equal(6, count[c]) end
    -- stored as uint8 [N,C,T,H,W]
    assert.are.equal("uint8", ds.video.dtype)
    assert.are.same({ 48, 3, 12, 32, 32 }, ds.video:size())
  end)

  it("get_batch equals the stacked samples and feeds a DataLoader", function()
    local ix = vl.tensor({ 3, 17, 40 }, { dtype = "int64" })
    local xb, yb = ds:get_batch(ix)
    assert.are.same({ 3, 3, 12, 32, 32 }, xb:size())
    for k, i in ipairs({ 3, 17, 40 }) do
      local x, y = ds:get(i)
      assert.are.equal(0, (xb:select(1, k) - x):abs():max():item())
      assert.are.equal(y:item(), yb[k])
    end
    local loader = data.DataLoader(ds, { batch_size = 16 })
    local n = 0
    for x, y in loader() do
      n = n + 1
      assert.are.same({ 16, 3, 12, 32, 32 }, x:size())
      assert.are.same({ 16 }, y:size())
    end
    assert.are.equal(3, n)
  end)

  it("is deterministic: same options give identical tensors; seeds and splits differ", function()
    vl.manual_seed(42)
    local before = vl.get_rng_state()
    local a = data.moving_shapes { n = 24, frames = 8, size = 24, seed = 9 }
    local b = data.moving_shapes { n = 24, frames = 8, size = 24, seed = 9 }
    assert.are.same(before, vl.get_rng_state()) -- the global generator is untouched
    assert.are.equal(0, (a.video:long() - b.video:long()):abs():max():item())
    assert.are.same(a.labels:totable(), b.labels:totable())
    assert.are.same(a.captions, b.captions)
    local c = data.moving_shapes { n = 24, frames = 8, size = 24, seed = 10 }
    local d = data.moving_shapes { n = 24, frames = 8, size = 24, seed = 9, split = "test" }
    assert.is_true((a.video:long() - c.video:long()):abs():sum():item() > 0)
    assert.is_true((a.video:long() - d.video:long()):abs():sum():item() > 0)
    assert.are_not.same(a.captions, d.captions)
  end)

  it("captions name the colour, the shape and the action", function()
    local templates = 0
    local seen = {}
    for i = 1, #ds do
      local cap = ds.captions[i]
      local action = ds.classes[ds.labels[i]]
      local shape = ds.shape_names[ds.shapes[i]]
      local colour = ds.colour_names[ds.colours[i]]
      assert.is_truthy(cap:find(action, 1, true), cap)
      assert.is_truthy(cap:find(colour .. " " .. shape, 1, true), cap)
      local form = cap:gsub(colour, "C"):gsub(shape, "S"):gsub(action, "A")
      if not seen[form] then templates, seen[form] = templates + 1, true end
    end
    assert.is_true(templates >= 2) -- template variations
  end)

  it("the pixels show the action: motion, growth, a steady centre when rotating", function()
    local checked = {}
    for i = 1, #ds do
      local a = ds.labels[i]
      local xs, ys, area = track(ds:get(i))
      local T = #xs
      local dx, dy = xs[T] - xs[1], ys[T] - ys[1]
      local name = ds.classes[a] .. " (clip " .. i .. ")"
      if a == 1 then assert.is_true(dx < -5 and math.abs(dy) < 2, name .. string.format(" dx %.2f dy %.2f", dx, dy))
      elseif a == 2 then assert.is_true(dx > 5 and math.abs(dy) < 2, name)
      elseif a == 3 then assert.is_true(dy < -5 and math.abs(dx) < 2, name) -- y grows downwards
      elseif a == 4 then assert.is_true(dy > 5 and math.abs(dx) < 2, name)
      elseif a == 7 then assert.is_true(area[T] > 2.2 * area[1], name .. string.format(" area %g -> %g", area[1], area[T]))
      elseif a == 8 then assert.is_true(area[1] > 2.2 * area[T], name)
      else -- rotating: stays in place, keeps its size, but the pixels change
        assert.is_true(math.abs(dx) < 1.5 and math.abs(dy) < 1.5, name .. string.format(" dx %.2f dy %.2f", dx, dy))
        assert.is_true(math.abs(area[T] - area[1]) < 0.3 * area[1], name)
      end
      checked[a] = true
    end
    for a = 1, 8 do assert.is_true(checked[a]) end
  end)

  it("draws rotations clockwise or counterclockwise on screen as named", function()
    -- The notch (a dark dot off the centre) turns with the shape: find it
    -- as the hole in the bright shape (pixels with shape pixels within size/8
    -- px in all four directions) and follow its angle around the centroid.
    local function notch_angle(clip, t)
      local S = clip:size(3)
      local mx = clip:select(2, t):amax(1):totable()
      local M = {}
      for y = 1, S do
        M[y] = {}
        for x = 1, S do M[y][x] = mx[y][x] > 0.45 end
      end
      local function hit(y, x, dy, dx)
        for k = 1, S // 8 do
          local yy, xx = y + k * dy, x + k * dx
          if yy < 1 or yy > S or xx < 1 or xx > S then return false end
          if M[yy][xx] then return true end
        end
        return false
      end
      local hx, hy, hc, sx, sy, sc = 0, 0, 0, 0, 0, 0
      for y = 1, S do
        for x = 1, S do
          if M[y][x] then
            sx, sy, sc = sx + x, sy + y, sc + 1
          elseif hit(y, x, 0, 1) and hit(y, x, 0, -1) and hit(y, x, 1, 0) and hit(y, x, -1, 0) then
            hx, hy, hc = hx + x, hy + y, hc + 1
          end
        end
      end
      if hc == 0 then return nil end
      return math.atan(hy / hc - sy / sc, hx / hc - sx / sc)
    end
    local rot = data.moving_shapes { n = 64, frames = 12, size = 48, seed = 3, noise = 0 }
    local n = 0
    for i = 1, #rot do
      local a = rot.labels[i]
      if a == 5 or a == 6 then
        local clip = rot:get(i)
        local prev, prev_t
        local rates = {}
        for t = 1, clip:size(2) do
          local ang = notch_angle(clip, t)
          if ang then
            if prev then
              local d = (ang - prev + math.pi) % (2 * math.pi) - math.pi
              rates[#rates + 1] = d / (t - prev_t)
            end
            prev, prev_t = ang, t
          end
        end
        assert.is_true(#rates >= 5)
        table.sort(rates)
        local median = rates[(#rates + 1) // 2]
        -- angles grow clockwise on screen (y down)
        if a == 5 then
          assert.is_true(median > 0.08, "clockwise clip " .. i .. " turns at " .. median)
        else
          assert.is_true(median < -0.08, "counterclockwise clip " .. i .. " turns at " .. median)
        end
        n = n + 1
      end
    end
    assert.is_true(n >= 16)
  end)

  it("colours the shape as its caption says", function()
    local dominant = { red = 1, green = 2, blue = 3 }
    for i = 1, #ds do
      local cname = ds.colour_names[ds.colours[i]]
      local want = dominant[cname]
      if want then
        local clip = ds:get(i)
        local fg = clip:amax(1):gt(0.45):float() -- [T,H,W]
        local mean = (clip * fg):sum({ 2, 3, 4 }):totable()
        for c = 1, 3 do
          if c ~= want then assert.is_true(mean[want] > 2 * mean[c], cname .. " clip " .. i) end
        end
      end
    end
  end)

  it("grey (channels = 1), other sizes and frame counts", function()
    local g = data.moving_shapes { n = 8, frames = 5, size = 20, channels = 1, seed = 2 }
    local x = g:get(1)
    assert.are.same({ 1, 5, 20, 20 }, x:size())
    local t = data.moving_shapes { n = 3, frames = 1, size = 16 }
    assert.are.same({ 3, 1, 16, 16 }, t:get(3):size())
  end)

  it("has a tone track: pitch from the shape, envelope from the action", function()
    local a = data.moving_shapes { n = 32, frames = 16, seed = 4, audio = true, audio_rate = 8000, fps = 8 }
    assert.are.equal(16000, a.audio_samples) -- 16 frames at 8 fps, 2 s at 8 kHz
    local x, y, tone = a:get(1)
    assert.are.equal("float32", tone.dtype)
    assert.are.same({ 16000 }, tone:size())
    assert.are.equal(0, (tone - a.audio[1]):abs():max():item())
    local _, _, tb = a:get_batch(vl.tensor({ 1, 2 }, { dtype = "int64" }))
    assert.are.same({ 2, 16000 }, tb:size())
    local pitch = { circle = 330, square = 440, triangle = 550, cross = 660 }
    local function rms(t, first, len) return t:narrow(1, first, len):square():mean():sqrt():item() end
    for i = 1, #a do
      local act = a.labels[i]
      local s = a.audio[i]
      assert.is_true(s:abs():max():item() <= 0.5 and s:abs():max():item() > 0.05) -- finite, amplitude <= 1/2
      if act == 1 or act == 2 then -- steady pitch: count the zero crossings
        local v = s:totable()
        local zc = 0
        for k = 2, #v do if (v[k - 1] < 0) ~= (v[k] < 0) then zc = zc + 1 end end
        local f = zc / 2 / 2.0
        local want = pitch[a.shape_names[a.shapes[i]]]
        assert.is_true(math.abs(f - want) < 0.02 * want, string.format("clip %d: %.1f Hz, want %d", i, f, want))
        local first, last = rms(s, 1, 2000), rms(s, 14001, 2000)
        if act == 1 then assert.is_true(first > 1.5 * last) else assert.is_true(last > 1.5 * first) end
      elseif act == 7 then
        assert.is_true(rms(s, 14001, 2000) > 2 * rms(s, 1, 2000))
      elseif act == 8 then
        assert.is_true(rms(s, 1, 2000) > 2 * rms(s, 14001, 2000))
      end
    end
    -- no tone track unless asked
    assert.is_nil(ds.audio)
    assert.are.equal(2, select("#", ds:get(1)))
  end)

  it("rejects bad options clearly", function()
    local cases = {
      { { split = "val" }, "moving_shapes: split must be \"train\" or \"test\", got val" },
      { { channels = 2 }, "moving_shapes: channels must be 1 or 3, got 2" },
      { { n = 0 }, "moving_shapes: n must be in 1" },
      { { size = 4 }, "moving_shapes: size must be in 8..1024, got 4" },
      { { frames = 2.5 }, "moving_shapes: frames must be an integer, got 2.5" },
      { { seed = "a" }, "moving_shapes: seed must be an integer" },
      { { noise = -1 }, "moving_shapes: noise must be a number in %[0, 0.5%]" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(data.moving_shapes, c[1])
      assert.is_false(ok)
      assert.matches(c[2], err)
    end
  end)
end)
