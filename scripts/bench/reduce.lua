-- scripts/bench/reduce.lua — reductions on float32 against NumPy, same run.
--
-- Cases: sum over the first / last dim of a contiguous [4096,4096], sum and
-- max of 16M values, amax over the first dim, argmax over the last / first
-- dim of [4096,1024], softmax over the last dim of [4096,1024]. NumPy
-- (/usr/bin/python3, reduce_peer.py, same thread count through
-- OMP_NUM_THREADS / OPENBLAS_NUM_THREADS) runs the same calls. Each side
-- runs in turn, three times, keeping the best of each (a burst of other
-- load then rarely hits all three); prints ms and vlua / NumPy.
-- Goal: <= 1.2 x NumPy. Run: build/vlua scripts/bench/reduce.lua (~22 s).
local vl = require "vl"
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib/bench.lua")

local GOAL = 1.2  -- vlua ms / NumPy ms

local n = bench.threads()
bench.header("reductions on float32 (ms = best wall time of one call)", n)

local function rand(shape) return vl.sub(bench.rand(shape), 0.5) end
local big, sq, wide = rand({16 * 1024 * 1024}), rand({4096, 4096}), rand({4096, 1024})
-- names as in reduce_peer.py
local CASES = {
  { "sum_dim1_4096x4096", function() return vl.sum(sq, 1) end },
  { "sum_dim2_4096x4096", function() return vl.sum(sq, 2) end },
  { "sum_all_16M", function() return vl.sum(big) end },
  { "max_all_16M", function() return vl.amax(big) end },
  { "amax_dim1_4096x4096", function() return vl.amax(sq, 1) end },
  { "argmax_dim2_4096x1024", function() return vl.argmax(wide, 2) end },
  { "argmax_dim1_4096x1024", function() return vl.argmax(wide, 1) end },
  { "softmax_dim2_4096x1024", function() return vl.softmax(wide, 2) end },
}

local ROUNDS = 3
local have_numpy = bench.have_numpy()
local vlua, np = {}, {}
local function min(x, y) return (x and (not y or x < y)) and x or y end
for _ = 1, ROUNDS do
  if have_numpy then
    local p = bench.run_peer(bench.env(n) .. "/usr/bin/python3 " .. bench.dir .. "reduce_peer.py")
    for _, c in ipairs(CASES) do np[c[1]] = min(p[c[1]] and tonumber(p[c[1]][3]), np[c[1]]) end
  end
  for _, c in ipairs(CASES) do vlua[c[1]] = min(bench.best_time(c[2]) * 1e3, vlua[c[1]]) end
end
print()

local fmt = "%-24s %9s %9s %9s  %s"
print(string.format(fmt, "case", "vlua ms", "NumPy ms", "vl/NumPy", ""))
local slow = 0
for _, c in ipairs(CASES) do
  local v, p = vlua[c[1]], np[c[1]]
  local ok = p and v / p <= GOAL
  if p and not ok then slow = slow + 1 end
  print(string.format(fmt, c[1], string.format("%.2f", v), p and string.format("%.2f", p) or "n/a",
                      bench.ratio(v, p), p and (ok and "ok" or "SLOW") or ""))
end
print(string.format("\n%d of %d cases slower than %.1f x NumPy", slow, #CASES, GOAL))
