-- vl.data.video_sampling — which frames of a video a clip is made of
-- (merged into vl.data: vl.data.tsn_indices, uniform_indices,
-- dense_indices, Generator).
--
--   local data = require "vl.data"
--   local g = data.Generator(7)
--   data.tsn_indices(300, 8, {train = true, generator = g})   -- int64 [8], 1-based
--   data.tsn_indices(300, 8)                                   -- segment centres
--   data.uniform_indices(300, 16)                              -- int64 [16]
--   data.dense_indices(300, 8, {stride = 4, num_clips = 3})    -- int64 [3, 8]
--   clip = video:index_select(2, idx:view(-1))                 -- video [C,T,H,W]
--
-- Every function returns 1-based frame indices as an int64 tensor, ready for
-- index_select. Random draws (train = true) come from `generator`: a
-- vl.data.Generator, or an integer seed (a fresh generator per call), or,
-- when absent, the global vl generator (vl.manual_seed makes it repeatable).
-- The rules are MMAction2's SampleFrames (TSN) and SlowFast's clip sampling;
-- see man vl(7), "Frame sampling".
local vl = require "vl"

local fmt, floor, max = string.format, math.floor, math.max

local M = {}

local function check_int(v, what, ctx, lo)
  if type(v) ~= "number" or v ~= floor(v) then
    error(fmt("%s: %s must be an integer, got %s", ctx, what, tostring(v)), 3)
  end
  v = math.tointeger(v)
  if lo and v < lo then error(fmt("%s: %s must be >= %d, got %d", ctx, what, lo, v), 3) end
  return v
end

-- ---------------------------------------------------------------------------
-- A seeded generator of its own: the Philox state of the global vl
-- generator ({seed, offset}), swapped in for a draw and back out after, so
-- that drawing from it neither disturbs nor depends on vl's own stream.
-- ---------------------------------------------------------------------------

local Generator = {}
Generator.__index = Generator
M.Generator = Generator

-- data.Generator([seed = 0]) -> generator; g:manual_seed(s), g:get_state(),
-- g:set_state(st) (the {seed, offset} tables of vl.get_rng_state).
function Generator.new(seed)
  seed = check_int(seed or 0, "seed", "Generator")
  return setmetatable({ state = { seed = seed, offset = 0 } }, Generator)
end
setmetatable(Generator, { __call = function(_, seed) return Generator.new(seed) end })

function Generator:manual_seed(seed)
  self.state = { seed = check_int(seed, "seed", "Generator:manual_seed"), offset = 0 }
  return self
end

function Generator:get_state() return { seed = self.state.seed, offset = self.state.offset } end

function Generator:set_state(st)
  if type(st) ~= "table" or math.type(st.seed) ~= "integer" or math.type(st.offset) ~= "integer" then
    error("Generator:set_state: expected {seed = integer, offset = integer}", 2)
  end
  self.state = { seed = st.seed, offset = st.offset }
  return self
end

-- g:run(fn, ...) -> fn(...) with g's stream as the vl generator.
function Generator:run(fn, ...)
  local saved = vl.get_rng_state()
  vl.set_rng_state(self.state)
  local r = table.pack(pcall(fn, ...))
  self.state = vl.get_rng_state()
  vl.set_rng_state(saved)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

function Generator.is_generator(g) return getmetatable(g) == Generator end

-- Run fn under `gen` (a Generator, an integer seed, or nil: the vl generator).
local function drawing(gen, ctx, fn)
  if gen == nil then return fn() end
  if math.type(gen) == "integer" then gen = Generator.new(gen) end
  if getmetatable(gen) ~= Generator then
    error(fmt("%s: generator must be a vl.data.Generator or an integer seed, got %s", ctx, type(gen)), 3)
  end
  return gen:run(fn)
end

-- Integers uniform on [0, hi) (hi >= 1), n of them, as a Lua list.
local function randints(hi, n)
  return vl.randint(0, hi, { n }, { dtype = "int64" }):totable()
end

local function to_index(list0, shape)
  local t = vl.tensor(list0, { dtype = "int64" }):add(1)
  if shape then t = t:view(shape) end
  return t
end

local function opts_of(opts, ctx)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(fmt("%s: options must be a table, got %s", ctx, type(opts)), 3) end
  return opts
end

-- numpy.around (round half to even) of a non-negative value.
local function round_half_even(x)
  local f = floor(x)
  local d = x - f
  if d > 0.5 then return f + 1 end
  if d < 0.5 then return f end
  return (f % 2 == 0) and f or f + 1
end

-- ---------------------------------------------------------------------------
-- TSN segment sampling (MMAction2 SampleFrames with clip_len = 1)
-- ---------------------------------------------------------------------------

-- data.tsn_indices(num_frames, num_segments, {train = false, generator}) -> int64 [num_segments]
-- The video is cut into num_segments equal segments of L = num_frames //
-- num_segments frames; training takes a random frame of each (offset
-- uniform on 0..L-1), test the centre of each: floor((k + 1/2) *
-- num_frames / num_segments) (0-based k and frames; +1 in the result).
-- Videos with fewer frames than segments: training takes
-- round_half_even(k * num_frames / num_segments), test the centres as
-- above, so frames repeat (both as MMAction2).
function M.tsn_indices(num_frames, num_segments, opts)
  local ctx = "tsn_indices"
  num_frames = check_int(num_frames, "num_frames", ctx, 1)
  num_segments = check_int(num_segments, "num_segments", ctx, 1)
  opts = opts_of(opts, ctx)
  local n, s = num_frames, num_segments
  local out = {}
  if opts.train then
    local avg = n // s
    if avg > 0 then
      local r = drawing(opts.generator, ctx, function() return randints(avg, s) end)
      for k = 0, s - 1 do out[k + 1] = k * avg + r[k + 1] end
    else
      local ratio = n / s
      for k = 0, s - 1 do out[k + 1] = math.tointeger(round_half_even(k * ratio)) end
    end
  else
    for k = 0, s - 1 do out[k + 1] = ((2 * k + 1) * n) // (2 * s) end -- exact in integers
  end
  return to_index(out)
end

-- ---------------------------------------------------------------------------
-- Uniform subsampling (PyTorchVideo's UniformTemporalSubsample)
-- ---------------------------------------------------------------------------

-- data.uniform_indices(num_frames, n) -> int64 [n]: n frames evenly spread
-- from the first to the last, floor(k * (num_frames - 1) / (n - 1)) for
-- k = 0..n-1 (the first frame when n = 1); n > num_frames repeats frames.
-- Exact integer arithmetic (torch.linspace(...).long() computes the same in
-- floating point).
function M.uniform_indices(num_frames, n)
  local ctx = "uniform_indices"
  num_frames = check_int(num_frames, "num_frames", ctx, 1)
  n = check_int(n, "n", ctx, 1)
  local out = {}
  if n == 1 then
    out[1] = 0
  else
    for k = 0, n - 1 do out[k + 1] = (k * (num_frames - 1)) // (n - 1) end
  end
  return to_index(out)
end

-- ---------------------------------------------------------------------------
-- Dense clip sampling (SlowFast / MMAction2)
-- ---------------------------------------------------------------------------

-- data.dense_indices(num_frames, clip_len, {stride = 1, num_clips = 1,
--   train = false, generator, out_of_bound = "loop" | "repeat_last"})
--   -> int64 [num_clips, clip_len]
-- A clip is clip_len frames `stride` apart, spanning span = (clip_len-1) *
-- stride + 1 frames from a start s (0-based): s + j * stride. With delta =
-- max(num_frames - span, 0), training draws each clip's start uniformly on
-- 0..delta; test spaces the starts evenly, floor(k * delta / (num_clips - 1))
-- (the centred floor(delta / 2) for one clip), as SlowFast's test views.
-- A clip that runs past the end (video shorter than the span) wraps
-- around (out_of_bound = "loop", MMAction2's default) or repeats the last
-- frame ("repeat_last").
function M.dense_indices(num_frames, clip_len, opts)
  local ctx = "dense_indices"
  num_frames = check_int(num_frames, "num_frames", ctx, 1)
  clip_len = check_int(clip_len, "clip_len", ctx, 1)
  opts = opts_of(opts, ctx)
  local stride = check_int(opts.stride or opts.step or 1, "stride", ctx, 1)
  local num_clips = check_int(opts.num_clips or 1, "num_clips", ctx, 1)
  local oob = opts.out_of_bound or "loop"
  if oob ~= "loop" and oob ~= "repeat_last" then
    error(fmt("%s: out_of_bound must be \"loop\" or \"repeat_last\", got %s", ctx, tostring(oob)), 2)
  end
  local span = (clip_len - 1) * stride + 1
  local delta = max(num_frames - span, 0)
  local starts = {}
  if opts.train then
    starts = drawing(opts.generator, ctx, function() return randints(delta + 1, num_clips) end)
  elseif num_clips == 1 then
    starts[1] = delta // 2
  else
    for k = 0, num_clips - 1 do starts[k + 1] = (k * delta) // (num_clips - 1) end
  end
  local out = {}
  for k = 1, num_clips do
    for j = 0, clip_len - 1 do
      local f = starts[k] + j * stride
      if f >= num_frames then f = (oob == "loop") and f % num_frames or num_frames - 1 end
      out[#out + 1] = f
    end
  end
  return to_index(out, { num_clips, clip_len })
end

return M
