-- scripts/bench/video_decode.lua — decode throughput of vl.video.read (full
-- decode to uint8 RGB [T,H,W,3]) and of the vl.video.frames clip iterator
-- against the ffmpeg command line decoding the same file to rgb24 into
-- -f null, with the same thread count (vl.get_num_threads() for vlua's
-- decoder, -threads N for ffmpeg). Files: 640x480, 300 frames, 30 fps,
-- H.264 (libx264) and MPEG-4 part 2, made by vl.video.write.
-- Prints frames/s of each and the ratio vlua / ffmpeg (above 1: vlua is
-- faster). ffmpeg's time is its -benchmark rtime (best of 5), which leaves
-- out starting the process; vlua's is the best of at least 3 calls
-- (scripts/bench/lib). vl.video.read also writes every frame into one
-- [T,480,640,3] tensor (276 MB for 300 frames), which ffmpeg -f null does
-- not: vl.video.frames (30-frame clips) is the like-for-like column.
-- Run: build/vlua scripts/bench/video_decode.lua [frames]
local vl = require "vl"
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib/bench.lua")

local T, H, W = tonumber(arg and arg[1]) or 300, 480, 640
local n = bench.threads()
bench.header(string.format("video decode: %d frames of %dx%d to RGB", T, W, H), n)

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local _, have_ffmpeg = bench.lines("ffmpeg -version")
if not have_ffmpeg then
  print("ffmpeg command not found (scripts/setup.sh --bench installs it): nothing to compare with")
  return
end

-- moving smooth content, written 30 frames at a time
local function frames_block(t0, count)
  local t = vl.arange(t0, t0 + count):float():view(count, 1, 1, 1)
  local y = vl.arange(0, H):float():view(1, H, 1, 1)
  local x = vl.arange(0, W):float():view(1, 1, W, 1)
  local c = vl.arange(0, 3):float():view(1, 1, 1, 3)
  local v = vl.sin(x / 40 + t / 6 + c) * 60 + vl.cos(y / 30 - t / 9 + c / 2) * 50 + 128
  return v:clamp(0, 255):byte()
end

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. q(dir))
local all = frames_block(0, T)
local files = {
  { name = "H.264 (libx264, crf 18)", path = dir .. "/h264.mp4", opts = { fps = 30, codec = "h264", gop = 30 } },
  { name = "MPEG-4 part 2 (qscale 3)", path = dir .. "/mpeg4.mp4", opts = { fps = 30, codec = "mpeg4", gop = 30 } },
}
for _, f in ipairs(files) do vl.video.write(f.path, all, f.opts) end
all = nil
collectgarbage()

-- ffmpeg's own -benchmark rtime (the decoding run, without starting the
-- process and probing the file); the wall time of the command if absent.
local function ffmpeg_time(path)
  local cmd = string.format("ffmpeg -hide_banner -nostats -v info -benchmark -threads %d -i %s -pix_fmt rgb24 -f null - 2>&1", n, q(path))
  local best = math.huge
  for _ = 1, 5 do
    local t0 = bench.clock()
    local out, okc = bench.lines(cmd)
    local t = bench.clock() - t0
    if not okc then error("ffmpeg failed: " .. table.concat(out, "\n")) end
    for _, l in ipairs(out) do
      local r = l:match("rtime=([%d%.]+)s")
      if r then t = tonumber(r) end
    end
    if t < best then best = t end
  end
  return best
end

print(string.format("%-26s %12s %14s %12s %10s %10s", "file", "vl.read f/s", "vl.frames f/s", "ffmpeg f/s",
                    "read/ff", "frames/ff"))
for _, f in ipairs(files) do
  local info = vl.video.info(f.path)
  assert(info.frames == T, "frame count " .. info.frames)
  local tr = bench.best_time(function() local x = vl.video.read(f.path); assert(x:size(1) == T) end)
  local tf = bench.best_time(function()
    local k = 0
    for clip in vl.video.frames(f.path, { clip = 30 }) do k = k + clip:size(1) end
    assert(k == T)
  end)
  local tff = ffmpeg_time(f.path)
  print(string.format("%-26s %12.1f %14.1f %12.1f %10s %10s", f.name, T / tr, T / tf, T / tff,
                      bench.ratio(tff, tr), bench.ratio(tff, tf)))
end
os.execute("rm -rf " .. q(dir))
