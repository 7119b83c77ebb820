-- scripts/bench/matmul.lua — vl.matmul against raw OpenBLAS and NumPy.
--
-- For square matmuls 256..2048 and attention-like batched shapes (float32)
-- prints GFLOP/s of vl.matmul, of raw cblas_sgemm (limits.c: the best of a
-- plain loop, one GEMM per thread, and one folded GEMM for a shared b) and
-- of NumPy's np.matmul (/usr/bin/python3, same thread count), with the
-- ratios. Goal: vlua >= 0.95 of raw OpenBLAS. vl.matmul runs vlua's own
-- AVX-512/AVX2 kernels (ops/gemm.c) where the CPU has them: run with
-- VLUA_GEMM=blas to time its OpenBLAS path instead.
-- Run: build/vlua scripts/bench/matmul.lua
local vl = require "vl"
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib/bench.lua")

local GOAL = 0.95  -- vlua / raw OpenBLAS

-- B,M,N,K,TB,SHARED as limits.c and numpy_peer.py read them.
local SHAPES = {
  { spec = "1,256,256,256,n,0",    label = "256 @ 256" },
  { spec = "1,512,512,512,n,0",    label = "512 @ 512" },
  { spec = "1,1024,1024,1024,n,0", label = "1024 @ 1024" },
  { spec = "1,2048,2048,2048,n,0", label = "2048 @ 2048" },
  { spec = "96,197,197,64,t,0",    label = "q@kT [96,197,64]@[96,64,197]" },
  { spec = "96,197,64,197,n,0",    label = "p@v [96,197,197]@[96,197,64]" },
  { spec = "8,197,768,768,n,1",    label = "linear [8,197,768]@[768,768]" },
}

local function parse(spec)
  local B, M, N, K, tb, shared = spec:match("^(%d+),(%d+),(%d+),(%d+),(%a),(%d)$")
  return tonumber(B), tonumber(M), tonumber(N), tonumber(K), tb, shared == "1"
end

local function vlua_gflops(spec)
  local B, M, N, K, tb, shared = parse(spec)
  local a = B == 1 and bench.rand({M, K}) or bench.rand({B, M, K})
  local b
  if shared or B == 1 then
    b = tb == "t" and bench.rand({N, K}):t() or bench.rand({K, N})
  else
    b = tb == "t" and bench.rand({B, N, K}):transpose(2, 3) or bench.rand({B, K, N})
  end
  local t = bench.best_time(function() return vl.matmul(a, b) end)
  return 2 * B * M * N * K / t * 1e-9
end

local n = bench.threads()
bench.header("matmul (float32, GFLOP/s = 2*B*M*N*K / best time)", n)

-- Measured shape by shape, each implementation in turn, ROUNDS times (the
-- best of each kept), so that a burst of other load hits all alike.
local ROUNDS = 2
local have_numpy = bench.have_numpy()
local exe = bench.build_limits()
local raw_core, np_core = nil, nil
local rows = {}
for round = 1, ROUNDS do
  for i, s in ipairs(SHAPES) do
    local row = rows[i] or {}
    rows[i] = row
    local raw, core = bench.run_peer(bench.env(n) .. exe .. " sgemm " .. s.spec)
    raw_core = raw_core or core
    local r = raw[s.spec] and tonumber(raw[s.spec][3])
    if r and (not row.raw or r > row.raw) then row.raw, row.how = r, raw[s.spec][4] end
    if have_numpy then
      local np, ncore = bench.run_peer(bench.env(n) .. "/usr/bin/python3 " .. bench.dir ..
                                       "numpy_peer.py matmul " .. s.spec)
      np_core = np_core or ncore
      local p = np[s.spec] and tonumber(np[s.spec][3])
      if p and (not row.np or p > row.np) then row.np = p end
    end
    local v = vlua_gflops(s.spec)
    if not row.vl or v > row.vl then row.vl = v end
  end
end
os.remove(exe)
print("vlua float32 GEMM kernel: " .. vl.gemm_kernel())
print("OpenBLAS core: vlua/limits " .. (raw_core or "?") .. ", NumPy " .. (np_core or "n/a"))
print()

local fmt = "%-32s %8s %9s %-6s %8s %9s %9s  %s"
print(string.format(fmt, "shape", "vlua", "OpenBLAS", "(how)", "NumPy", "vl/BLAS", "vl/NumPy", ""))
local low = 0
for i, s in ipairs(SHAPES) do
  local row = rows[i]
  local ok = row.raw and row.vl / row.raw >= GOAL
  if not ok then low = low + 1 end
  print(string.format(fmt, s.label, bench.num(row.vl), bench.num(row.raw), row.how or "",
                      bench.num(row.np), bench.ratio(row.vl, row.raw), bench.ratio(row.vl, row.np),
                      ok and "ok" or "LOW"))
end
print(string.format("\n%d of %d shapes below %.0f%% of raw OpenBLAS", low, #SHAPES, GOAL * 100))
