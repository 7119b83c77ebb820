-- scripts/bench/vit.lua — ViT-Tiny/16 at 224x224 (vl.vit.vit_tiny_16:
-- patch 16, hidden 192, 12 layers, 3 heads, MLP 768, 1000 classes; float32)
-- in vlua against torchvision's VisionTransformer with the same config
-- (Debian's PyTorch through /usr/bin/python3 scripts/bench/vit_torch.py; a
-- transcription of it when torchvision is absent) at the same threads:
--   inference      eval mode, no gradients: forward only
--   training step  zero_grad, forward, cross-entropy, backward, AdamW step
-- on a fixed random batch, in images/s, and as model FLOP utilisation:
--   MFU = model GFLOP per image x images/s / sgemm GFLOP/s at 2048^2
-- where the sgemm rate, measured in the same run at the same threads, is
-- the better of raw cblas_sgemm (scripts/bench/limits.c) and vl.matmul
-- (vlua's own float32 kernels; Debian's OpenBLAS may run its slow SSE3
-- kernels on this CPU): the machine's ceiling for this work. Model FLOPs count every matrix
-- product of the forward (patch projection, QKV, QK^T, AV, output
-- projection, MLP, head) as 2 FLOP per multiply-add, about 2.5 GFLOP per
-- image; a training step counts 3x the forward.
--
--   build/vlua scripts/bench/vit.lua [--batch 8] [--steps 3] [--warmup 1] [--rounds 1] [--threads N] [--quick]
--
-- Each round times vlua, then PyTorch (--warmup untimed, then --steps timed
-- batches each); the best batch is kept per side. --quick: batch 4, 2 steps,
-- no warm-up beyond one batch (a smoke run, well under a minute).
local vl = require "vl"
local optim = require "vl.optim"
local vit = require "vl.vit"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "lib/bench.lua")

local fmt = string.format

local o = { batch = 8, steps = 3, warmup = 1, rounds = 1, quick = false }
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(%w+)$")
    if k == "quick" then
      o.quick = true
    elseif k == "batch" or k == "steps" or k == "warmup" or k == "rounds" or k == "threads" then
      i = i + 1
      o[k] = math.tointeger(tonumber(arg[i] or ""))
      if o[k] == nil or o[k] < (k == "warmup" and 0 or 1) then
        error(fmt("vit bench: --%s needs a positive integer", k), 0)
      end
    else
      error(fmt("vit bench: unknown argument '%s'", arg[i]), 0)
    end
    i = i + 1
  end
end
if o.quick then o.batch, o.steps, o.warmup, o.rounds = 4, 2, 1, 1 end
if o.threads then vl.set_num_threads(o.threads) end
local threads = bench.threads()

local CFG = { image_size = 224, patch_size = 16, in_channels = 3, num_classes = 1000, hidden_dim = 192,
  num_layers = 12, num_heads = 3, mlp_dim = 768 }

-- Forward FLOPs of one image (2 per multiply-add, matrix products only).
local function vit_flops(c)
  local g = c.image_size // c.patch_size
  local p, L, D, M = g * g, g * g + 1, c.hidden_dim, c.mlp_dim
  local patch = 2 * p * D * c.in_channels * c.patch_size * c.patch_size
  local layer = 2 * L * D * 3 * D -- QKV
      + 2 * 2 * L * L * D         -- QK^T and AV over all heads
      + 2 * L * D * D             -- output projection
      + 2 * 2 * L * D * M         -- MLP
  return patch + c.num_layers * layer + 2 * D * c.num_classes
end
local GF = vit_flops(CFG) / 1e9

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function times(fn)
  for _ = 1, o.warmup do fn() end
  local ts = {}
  for i = 1, o.steps do
    local t0 = bench.clock()
    fn()
    ts[i] = bench.clock() - t0
  end
  collectgarbage()
  return ts
end

-- vlua: {infer = times, train = times}
local function vlua_run()
  vl.manual_seed(0)
  local model = vit.vit_tiny_16(CFG)
  local x = vl.randn({ o.batch, 3, 224, 224 })
  local y = vl.randint(1, 1001, { o.batch })
  model:eval()
  local inf = times(function() vl.no_grad(function() return model(x) end) end)
  model:train()
  local opt = optim.AdamW(model, { lr = 1e-3, weight_decay = 0.05 })
  local tr = times(function()
    opt:zero_grad()
    vl.cross_entropy(model(x), y):backward()
    opt:step()
  end)
  return { infer = inf, train = tr }
end

local PEER = here .. "vit_torch.py"
local function torch_run()
  local cmd = fmt("%s/usr/bin/python3 %s --threads %d --batch %d --steps %d --warmup %d", bench.env(threads), PEER,
    threads, o.batch, o.steps, o.warmup)
  local out, okc = bench.lines(cmd)
  if not okc then return nil, table.concat(out, "\n") end
  local r, core = {}, nil
  for _, line in ipairs(out) do
    local w = {}
    for s in line:gmatch("%S+") do w[#w + 1] = s end
    if w[1] == "infer" or w[1] == "train" then r[w[1]] = { tonumber(w[3]) / 1e3, tonumber(w[4]) / 1e3 }
    elseif w[1] == "core" then core = w[2] .. " (" .. (w[4] or "?") .. " threads)" end
  end
  return r, core
end

bench.header(fmt("ViT-Tiny/16 at 224x224, batch %d (float32): inference and training step, vlua vs PyTorch", o.batch),
  threads)

-- the machine's sgemm rate at 2048^2, same threads: raw cblas_sgemm
-- (limits.c, Debian's OpenBLAS as it loads) and vl.matmul (vlua's own
-- float32 kernels where the CPU has them); the better one is the ceiling.
local exe = bench.build_limits()
local SPEC = "1,2048,2048,2048,0,0"
local function sgemm()
  local raw, core = bench.run_peer(bench.env(threads) .. exe .. " sgemm " .. SPEC)
  return raw[SPEC] and tonumber(raw[SPEC][3]), core
end
local function vl_sgemm()
  local a, b = vl.randn({ 2048, 2048 }), vl.randn({ 2048, 2048 })
  local t = bench.best_time(function() return vl.matmul(a, b) end)
  return 2 * 2048 ^ 3 / t / 1e9
end

local have_torch = select(2, bench.lines("/usr/bin/python3 -c 'import torch'"))
if not have_torch then print("PyTorch: n/a (apt-get install python3-torch; scripts/setup.sh --bench)") end

local best = { vl = {}, pt = {} }
local all = { infer = {}, train = {} }
local cb, vs, core, peer_core = 0, 0, nil, nil
local function keep(side, what, t)
  if t and (best[side][what] == nil or t < best[side][what]) then best[side][what] = t end
end
for _ = 1, o.rounds do
  local s, c = sgemm()
  if s and s > cb then cb, core = s, c end
  vs = math.max(vs, vl_sgemm())
  local v = vlua_run()
  for _, what in ipairs({ "infer", "train" }) do
    for _, t in ipairs(v[what]) do
      keep("vl", what, t)
      all[what][#all[what] + 1] = t
    end
  end
  if have_torch then
    local r, pc = torch_run()
    if not r then
      print("PyTorch peer failed:\n" .. tostring(pc))
      have_torch = false
    else
      peer_core = pc
      keep("pt", "infer", r.infer and r.infer[1])
      keep("pt", "train", r.train and r.train[1])
    end
  end
end
os.remove(exe)
print(fmt("OpenBLAS core (limits): %s; peer: %s", core or "?", peer_core or "n/a"))
local sg = math.max(cb, vs)
print(fmt("sgemm 2048^2: cblas_sgemm %.1f GFLOP/s, vl.matmul %.1f GFLOP/s; ceiling %.1f (the better one)", cb, vs, sg))
print(fmt("model: %.3f GFLOP per image forward, %.3f per training step (3x)", GF, 3 * GF))
print()
print(fmt("%-10s %12s %12s %8s %12s %12s %9s %9s", "", "vlua", "torch", "ratio", "vlua", "torch", "vlua", "torch"))
print(fmt("%-10s %12s %12s %8s %12s %12s %9s %9s", "", "images/s", "images/s", "", "GFLOP/s", "GFLOP/s", "MFU", "MFU"))
for _, what in ipairs({ "infer", "train" }) do
  local mult = what == "train" and 3 or 1
  local vt, pt = best.vl[what], best.pt[what]
  local vi = vt and o.batch / vt
  local pi = pt and o.batch / pt
  local vg = vi and vi * GF * mult
  local pg = pi and pi * GF * mult
  local function pct(g) return (g and sg > 0) and fmt("%.1f%%", 100 * g / sg) or "n/a" end
  print(fmt("%-10s %12s %12s %8s %12s %12s %9s %9s", what == "infer" and "inference" or "train step",
    bench.num(vi), bench.num(pi), bench.ratio(vi, pi), bench.num(vg), bench.num(pg), pct(vg), pct(pg)))
end
print(fmt("best of %d batches x %d rounds per side (vlua median: inference %.3f s, train step %.3f s per batch)",
  o.steps, o.rounds, median(all.infer), median(all.train)))
print("ratio = vlua images/s / torch images/s; MFU = model GFLOP/s / the sgemm ceiling above (target: inference >= 40%)")
