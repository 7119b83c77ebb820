-- scripts/bench/lib/bench.lua — helpers shared by scripts/bench/*.lua:
-- a wall clock, best-of timing, the thread count, and running the peers
-- (scripts/bench/limits.c built here with cc, NumPy through /usr/bin/python3).
-- Loaded with dofile; kept out of scripts/bench/ itself so that `make bench`
-- does not run it as a benchmark.
local vl = require "vl"

local M = {}

-- Same policy as limits.c and numpy_peer.py: one warm-up run, then the best
-- of at least MIN_RUNS runs lasting at least MIN_SECONDS in all.
M.MIN_RUNS, M.MIN_SECONDS = 3, 0.4

M.dir = (debug.getinfo(1, "S").source:match("^@(.*/)lib/[^/]*$")) or "scripts/bench/"

-- Wall-clock seconds: lua-system (installed with busted) when present;
-- os.clock counts CPU time of all threads, so it is only a fallback.
local ok, system = pcall(require, "system")
if ok and system.monotime then
  M.clock, M.clock_name = system.monotime, "monotonic"
else
  M.clock, M.clock_name = os.clock, "os.clock (CPU time: install lua-system for wall time)"
end

function M.best_time(fn)
  fn()
  collectgarbage()
  local best, start, runs = math.huge, M.clock(), 0
  while runs < M.MIN_RUNS or M.clock() - start < M.MIN_SECONDS do
    local t0 = M.clock()
    fn()
    local t = M.clock() - t0
    if t < best then best = t end
    runs = runs + 1
    collectgarbage()  -- drop the results outside the timed part
  end
  return best
end

function M.threads()
  local n = vl.get_num_threads and vl.get_num_threads() or 1
  if vl.set_num_threads then vl.set_num_threads(n) end
  return n
end

-- Environment prefix giving a peer the same thread count.
function M.env(n)
  return string.format("OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d ", n, n)
end

function M.lines(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = {}
  for line in p:lines() do out[#out + 1] = line end
  local okc = p:close()
  return out, okc
end

-- Build limits.c into a temporary file; returns its path (remove it after).
function M.build_limits()
  local exe = os.tmpname()
  local cmd = string.format(
    "cc -O3 -march=native -fopenmp %slimits.c $(pkg-config --cflags --libs openblas) -o %s", M.dir, exe)
  local out, okc = M.lines(cmd)
  if not okc then
    os.remove(exe)
    error("bench: cannot build limits.c:\n" .. table.concat(out, "\n"))
  end
  return exe
end

-- Lines "KEY rest..." of a peer's output, indexed by their second word.
function M.run_peer(cmd)
  local out, okc = M.lines(cmd)
  local rows, core = {}, nil
  for _, line in ipairs(out) do
    local words = {}
    for w in line:gmatch("%S+") do words[#words + 1] = w end
    if words[1] == "core" then core = words[2] .. " (" .. (words[4] or "?") .. " threads)"
    elseif words[2] then rows[words[2]] = words end
  end
  return rows, core, okc, out
end

function M.have_numpy()
  local _, okc = M.lines("/usr/bin/python3 -c 'import numpy'")
  return okc
end

function M.ratio(x, y)
  if not x or not y or y == 0 then return "n/a" end
  return string.format("%.2f", x / y)
end

function M.num(x)
  return x and string.format("%.1f", x) or "n/a"
end

function M.header(title, n)
  print(title)
  print(string.format("threads %d (OMP_NUM_THREADS/OPENBLAS_NUM_THREADS for the peers), clock %s",
                      n, M.clock_name))
  local f = io.open("/proc/loadavg")
  local load = f and f:read("l")
  if f then f:close() end
  if load then print("load average " .. load .. " (other work on the machine skews every column)") end
  print("OPENBLAS_CORETYPE=" .. (os.getenv("OPENBLAS_CORETYPE") or "(unset)") ..
        " OPENBLAS_L2_SIZE=" .. (os.getenv("OPENBLAS_L2_SIZE") or "(unset)") ..
        " (left as they are: vlua, limits and NumPy all see the same)")
end

-- Uniform random float32 tensor (vl.rand when the random ops are there).
function M.rand(shape)
  if vl.rand then return vl.rand(shape) end
  return vl.full(shape, 0.5)
end

return M
