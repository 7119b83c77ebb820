-- Memory stays flat in a loop that allocates and drops big tensors:
-- 100k tensors of 1 MiB, every page written, resident size sampled.
--   build/vlua scripts/bench/memory.lua [count]
local vl = require "vl"

local function rss_mib()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) / 1024
end

local count = tonumber(arg and arg[1]) or 100000
local start, peak = rss_mib(), 0
local t0 = os.time()
local clock0 = os.clock()
for i = 1, count do
  local t = vl.ones(262144) -- 1 MiB of float32
  if i % 1000 == 0 then peak = math.max(peak, rss_mib()) end
end
print(("memory: %d tensors of 1 MiB in %.1f s (cpu %.1f s): resident %.0f MiB at start, peak %.0f MiB, tensor bytes live at end %.1f MiB")
  :format(count, os.difftime(os.time(), t0), os.clock() - clock0, start, peak, vl.memory_in_use() / 2 ^ 20))
