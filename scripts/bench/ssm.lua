-- scripts/bench/ssm.lua — vl.selective_scan (fused forward and backward)
-- against a plain loop-over-time PyTorch implementation, float32, batch 2,
-- dim 768, state 16, input-dependent B/C [batch, state, len], D, z,
-- delta_bias and softplus (Mamba's configuration).
--
--   build/vlua scripts/bench/ssm.lua [--quick] [--L 256,1024] [--threads N] [--no-torch] [--bwd-max 2048]
--
-- For each length L (256 .. 16384 doubling; --quick: 256 .. 2048, fewer
-- runs): time of the forward (no grad) and of forward+backward, GB/s of
-- the bytes the op must touch, and the ratio of PyTorch's time to vlua's
-- (scripts/bench/ssm_torch.py through /usr/bin/python3, same thread
-- count). Bytes (float32): forward reads u, delta, z [B,D,L] and B, C
-- [B,N,L] and writes y: 4*(4*B*D*L + 2*B*N*L); the backward reads u,
-- delta, z, B, C and the output gradient and writes the gradients of u,
-- delta, z, B, C: 4*(7*B*D*L + 4*B*N*L); A, D, delta_bias are negligible.
-- PyTorch's forward+backward (autograd over its loop, which keeps every
-- step's tensors) runs only up to --bwd-max (default 2048).
local vl = require "vl"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "lib/bench.lua")
local fmt = string.format

local o = { quick = false, torch = true, L = nil, bwd_max = 2048 }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then
      o.quick = true
    elseif a == "--no-torch" then
      o.torch = false
    elseif a == "--L" or a == "--threads" or a == "--bwd-max" then
      i = i + 1
      if arg[i] == nil then error("ssm: " .. a .. " needs a value", 0) end
      if a == "--L" then
        o.L = arg[i]
      elseif a == "--threads" then
        o.threads = math.tointeger(tonumber(arg[i]))
      else
        o.bwd_max = math.tointeger(tonumber(arg[i]))
      end
    else
      error(fmt("ssm: unknown argument '%s' (expected --quick, --L list, --threads N, --no-torch, --bwd-max L)", a), 0)
    end
    i = i + 1
  end
end
if o.threads then vl.set_num_threads(o.threads) end
local threads = bench.threads()
local B, D, N = 2, 768, 16
local Ls = {}
for x in (o.L or (o.quick and "256,512,1024,2048" or "256,512,1024,2048,4096,8192,16384")):gmatch("%d+") do
  Ls[#Ls + 1] = math.tointeger(tonumber(x))
end
if o.quick then bench.MIN_RUNS, bench.MIN_SECONDS = 2, 0.2 end

local function bytes_fwd(L) return 4 * (4 * B * D * L + 2 * B * N * L) end
local function bytes_bwd(L) return 4 * (7 * B * D * L + 4 * B * N * L) end

local function vlua_run(L)
  vl.manual_seed(0)
  local u, z, delta = vl.randn({ B, D, L }), vl.randn({ B, D, L }), vl.randn({ B, D, L }) * 0.5
  local A = -vl.rand({ D, N }) - 0.1
  local Bm, Cm = vl.randn({ B, N, L }), vl.randn({ B, N, L })
  local Dv, bias = vl.randn({ D }), vl.randn({ D }) * 0.1
  local g = vl.randn({ B, D, L })
  local tf = bench.best_time(function()
    vl.no_grad(function()
      return vl.selective_scan(u, delta, A, Bm, Cm, { D = Dv, z = z, delta_bias = bias, delta_softplus = true })
    end)
  end)
  local ins = {}
  for i, t in ipairs({ u, delta, A, Bm, Cm, Dv, z, bias }) do ins[i] = t:clone():requires_grad(true) end
  local tb = bench.best_time(function()
    for _, t in ipairs(ins) do t.grad = nil end
    vl.selective_scan(ins[1], ins[2], ins[3], ins[4], ins[5],
      { D = ins[6], z = ins[7], delta_bias = ins[8], delta_softplus = true }):backward(g)
  end)
  return tf, tb
end

bench.header(fmt("selective scan (float32, batch %d, dim %d, state %d, input-dependent B/C, D, z, delta_bias, softplus): vlua vs a PyTorch loop over time",
  B, D, N), threads)

local T, core = {}, nil
if o.torch then
  local cmd = fmt("%s/usr/bin/python3 %sssm_torch.py --threads %d --B %d --D %d --N %d --L %s --bwd-max %d%s",
    bench.env(threads), here, threads, B, D, N, table.concat(Ls, ","), o.bwd_max, o.quick and " --quick" or "")
  local out, okc = bench.lines(cmd)
  if not okc then print("PyTorch peer: n/a (" .. (out[#out] or "failed") .. "; apt-get install python3-torch)") end
  for _, line in ipairs(out) do
    local w = {}
    for x in line:gmatch("%S+") do w[#w + 1] = x end
    if w[1] == "loop" then
      local tb = tonumber(w[4])
      T[tonumber(w[2])] = { tonumber(w[3]), tb == tb and tb or nil }
    elseif w[1] == "core" then
      core = w[2] .. " (" .. (w[4] or "?") .. " threads)"
    end
  end
end
print("peer: " .. (core or "n/a"))
print()
local hdr = "%-6s %-8s %11s %9s %11s %11s"
print(fmt(hdr, "L", "pass", "vlua ms", "GB/s", "torch ms", "torch/vlua"))
for _, L in ipairs(Ls) do
  local tf, tb = vlua_run(L)
  collectgarbage()
  local t = T[L] or {}
  for pass = 1, 2 do
    local tv = pass == 1 and tf or tb
    local bytes = pass == 1 and bytes_fwd(L) or bytes_fwd(L) + bytes_bwd(L)
    local tt = t[pass]
    print(fmt(hdr, L, pass == 1 and "fwd" or "fwd+bwd", fmt("%.2f", tv * 1e3), fmt("%.2f", bytes / tv * 1e-9),
      tt and fmt("%.2f", tt * 1e3) or "n/a", tt and fmt("%.1f", tt / tv) or "n/a"))
  end
end
print()
print("GB/s = bytes the op must touch / time (forward 4*(4*B*D*L + 2*B*N*L); backward adds 4*(7*B*D*L + 4*B*N*L))")
print("torch/vlua = PyTorch loop-over-time seconds / vlua seconds (higher: vlua faster); torch fwd+bwd only up to --bwd-max")
