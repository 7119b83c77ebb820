-- scripts/bench/video.lua — the video benchmarks of issue 6 in one run:
--   video_conv3d.lua  vl.conv3d / vl.max_pool3d against PyTorch (CPU)
--   video_flow.lua    Farnebäck optical flow against OpenCV (time and EPE)
--   video_decode.lua  decode throughput against the ffmpeg command
-- each run in turn by the same vlua with its default settings. A script
-- that is not there yet is skipped with a line saying so; a script that
-- fails is reported and the others still run (the exit status is 1 then).
-- Run: build/vlua scripts/bench/video.lua [--full]
--   --full: passed to video_conv3d.lua (batch 8 instead of 2)
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local PARTS = {
  { file = "video_conv3d.lua", what = "conv3d and max_pool3d vs PyTorch", args = { "--full" } },
  { file = "video_flow.lua", what = "Farnebäck optical flow vs OpenCV" },
  { file = "video_decode.lua", what = "video decode vs the ffmpeg command" },
}

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- The vlua running this script (arg[-1] when started as `vlua script`).
local vlua = arg and arg[-1] or "vlua"
local given = {}
for i = 1, #(arg or {}) do given[arg[i]] = true end

local failed = {}
for _, p in ipairs(PARTS) do
  local path = dir .. p.file
  print(string.format("=== %s (%s)", p.file, p.what))
  if not exists(path) then
    print(string.format("skipped: %s does not exist yet", path))
  else
    local pass = {}
    for _, a in ipairs(p.args or {}) do
      if given[a] then pass[#pass + 1] = a end
    end
    local cmd = string.format("%s %s %s", vlua, path, table.concat(pass, " "))
    io.stdout:flush()
    local ok = os.execute(cmd)
    if not ok then
      print(string.format("FAILED: %s", cmd))
      failed[#failed + 1] = p.file
    end
  end
  print()
end
if #failed > 0 then
  print("failed: " .. table.concat(failed, ", "))
  os.exit(1)
end
