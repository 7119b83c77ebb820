-- scripts/bench/elementwise.lua — vl.add / vl.mul / vl.exp on 16M float32
-- (out of place, a fresh result each call) against memory bandwidth and NumPy.
--
-- GB/s counts bytes moved: 2 reads + 1 write for add and mul, 1 + 1 for exp.
-- The machine's limit is a plain C copy loop (limits.c, same threads, bytes
-- read + written) into a warm destination; the copy into a fresh destination
-- is printed too, since an out-of-place op pays for fresh pages. NumPy
-- (/usr/bin/python3, same thread count) runs the same calls.
-- Goal: >= 0.80 of the copy bandwidth. Run: build/vlua scripts/bench/elementwise.lua
local vl = require "vl"
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib/bench.lua")

local N = 16 * 1024 * 1024
local GOAL = 0.80  -- vlua / copy bandwidth

local n = bench.threads()
bench.header(string.format("element-wise on %d float32 (GB/s = bytes moved / best time)", N), n)

local a, b = bench.rand({N}), bench.rand({N})
local OPS = {
  { name = "add", bytes = 12, fn = function() return vl.add(a, b) end, have = vl.add },
  { name = "mul", bytes = 12, fn = function() return vl.mul(a, b) end, have = vl.mul },
  { name = "exp", bytes = 8,  fn = function() return vl.exp(a) end,    have = vl.exp },
}

-- Each side in turn, ROUNDS times (the best of each kept), so that a burst
-- of other load hits all alike.
local ROUNDS = 3
local have_numpy = bench.have_numpy()
local exe = bench.build_limits()
local copy, copy_fresh, vlua, np = nil, nil, {}, {}
local function max(x, y) return (x and (not y or x > y)) and x or y end
for _ = 1, ROUNDS do
  local lim = bench.run_peer(bench.env(n) .. exe .. " copy " .. N)
  local row = lim[tostring(N)]
  if row then copy, copy_fresh = max(tonumber(row[3]), copy), max(tonumber(row[4]), copy_fresh) end
  if have_numpy then
    local p = bench.run_peer(bench.env(n) .. "/usr/bin/python3 " .. bench.dir .. "numpy_peer.py elementwise " .. N)
    for _, op in ipairs(OPS) do np[op.name] = max(p[op.name] and tonumber(p[op.name][3]), np[op.name]) end
  end
  for _, op in ipairs(OPS) do
    if op.have then vlua[op.name] = max(op.bytes * N / bench.best_time(op.fn) * 1e-9, vlua[op.name]) end
  end
end
os.remove(exe)
print(string.format("copy loop: %s GB/s into a warm destination, %s GB/s into a fresh one",
                    bench.num(copy), bench.num(copy_fresh)))
print()

local fmt = "%-5s %8s %8s %8s %9s %9s  %s"
print(string.format(fmt, "op", "vlua", "NumPy", "copy", "vl/copy", "vl/NumPy", ""))
local low = 0
for _, op in ipairs(OPS) do
  local v, p = vlua[op.name], np[op.name]
  local ok = v and copy and v / copy >= GOAL
  if not ok then low = low + 1 end
  print(string.format(fmt, op.name, bench.num(v), bench.num(p), bench.num(copy),
                      bench.ratio(v, copy), bench.ratio(v, p), ok and "ok" or (v and "LOW" or "missing")))
end
print(string.format("\n%d of %d ops below %.0f%% of the copy bandwidth", low, #OPS, GOAL * 100))
