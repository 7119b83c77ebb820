-- scripts/bench/train_step.lua — one training step of scripts/train_cnn.lua's
-- CNN (conv 1->32 + BN + pool + ReLU, conv 32->64 + BN + pool + ReLU,
-- linear 3136->128, ReLU, linear 128->10, dropout 0.25; float32, NCHW) in
-- vlua against the same model in PyTorch (Debian's python3-torch through
-- /usr/bin/python3 scripts/bench/train_step_torch.py) with the same thread
-- count. A step is zero_grad, forward, cross-entropy, backward, AdamW step,
-- on a fixed random batch (no data loading).
--
--   build/vlua scripts/bench/train_step.lua [--batches 128,64] [--steps 20] [--warmup 5]
--                                            [--rounds 2] [--threads N] [--layers]
--
-- Each round times vlua, then PyTorch (warm-up steps, then --steps timed
-- steps each); the best step and the median step of all rounds are kept per
-- side. Prints samples/s (batch / step time) for both and the ratio
-- vlua / torch (above 1: vlua is faster). --layers adds a per-layer table:
-- each layer's forward and forward+backward on its real input, the loss and
-- the optimizer step, in both.
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "lib/bench.lua")
local train_cnn = assert(loadfile(here .. "../train_cnn.lua"))("--module")

local fmt = string.format

local o = { batches = "128,64", steps = 20, warmup = 5, rounds = 2, layers = false }
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-(%w+)$")
    if k == "layers" then
      o.layers = true
    elseif k == "batches" or k == "steps" or k == "warmup" or k == "rounds" or k == "threads" then
      i = i + 1
      o[k] = k == "batches" and arg[i] or math.tointeger(tonumber(arg[i]))
      if o[k] == nil then error(fmt("train_step: --%s needs a value", k), 0) end
    else
      error(fmt("train_step: unknown argument '%s'", arg[i]), 0)
    end
    i = i + 1
  end
end
if o.threads then vl.set_num_threads(o.threads) end
local threads = bench.threads()
local batches = {}
for b in o.batches:gmatch("%d+") do batches[#batches + 1] = math.tointeger(tonumber(b)) end

local MODEL = { channels = { 32, 64 }, hidden = 128, dropout = 0.25 }

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function times(fn, steps, warmup)
  for _ = 1, warmup do fn() end
  local ts = {}
  for i = 1, steps do
    local t0 = bench.clock()
    fn()
    ts[i] = bench.clock() - t0
  end
  return ts
end

-- vlua: a list of step times (seconds) for batch B
local function vlua_steps(B)
  vl.manual_seed(0)
  local model = train_cnn.build_model(MODEL)
  model:train()
  local opt = optim.AdamW(model, { lr = 1e-3, weight_decay = 5e-4 })
  local x, y = vl.randn({ B, 1, 28, 28 }), vl.randint(1, 11, { B })
  local function step()
    opt:zero_grad()
    local loss = vl.cross_entropy(model(x), y)
    loss:backward()
    opt:step()
  end
  local ts = times(step, o.steps, o.warmup)
  collectgarbage()
  return ts
end

-- vlua per layer: {name, fwd_ms, fwd_bwd_ms} for batch B
local function vlua_layers(B)
  vl.manual_seed(0)
  local model = train_cnn.build_model(MODEL)
  model:train()
  local opt = optim.AdamW(model, { lr = 1e-3, weight_decay = 5e-4 })
  local x, y = vl.randn({ B, 1, 28, 28 }), vl.randint(1, 11, { B })
  local rows = {}
  local h = x
  local reps = math.max(5, o.steps // 2)
  local function best(fn, n) local t = times(fn, n, 2) table.sort(t) return t[1] * 1e3 end
  for i = 1, #model do
    local layer = model[i]
    local inp = h:detach():clone()
    if i > 1 then inp:requires_grad(true) end
    local out = vl.no_grad(function() return layer(inp) end)
    local g = vl.randn(out:size())
    local f = best(function() vl.no_grad(function() return layer(inp) end) end, reps)
    local fb = best(function()
      for _, p in ipairs(layer:parameters()) do p.grad = nil end
      inp.grad = nil
      layer(inp):backward(g)
    end, reps)
    rows[#rows + 1] = { layer.__name, f, fb }
    h = out
  end
  local logits = h:detach():clone():requires_grad(true)
  local f = best(function() return vl.cross_entropy(logits:detach(), y) end, 10)
  local fb = best(function()
    logits.grad = nil
    vl.cross_entropy(logits, y):backward()
  end, 10)
  rows[#rows + 1] = { "CrossEntropyLoss", f, fb }
  for _, p in ipairs(model:parameters()) do p.grad = vl.randn(p:size()) end
  local s = best(function() opt:step() end, 10)
  rows[#rows + 1] = { "AdamW.step", s, s }
  collectgarbage()
  return rows
end

local PEER = here .. "train_step_torch.py"

-- torch: {[B] = {best_ms, median_ms}}, layers {[B] = rows}, core string
local function torch_run(layers)
  local cmd = fmt("%s/usr/bin/python3 %s --threads %d --batches %s --steps %d --warmup %d%s", bench.env(threads), PEER,
    threads, table.concat(batches, ","), o.steps, o.warmup, layers and " --layers" or "")
  local out, okc = bench.lines(cmd)
  if not okc then return nil, table.concat(out, "\n") end
  local steps, lay, core = {}, {}, nil
  for _, line in ipairs(out) do
    local w = {}
    for x in line:gmatch("%S+") do w[#w + 1] = x end
    if w[1] == "step" then
      steps[tonumber(w[2])] = { tonumber(w[3]), tonumber(w[4]) }
    elseif w[1] == "layer" then
      local B = tonumber(w[2])
      lay[B] = lay[B] or {}
      lay[B][#lay[B] + 1] = { w[4], tonumber(w[5]), tonumber(w[6]) }
    elseif w[1] == "core" then
      core = w[2] .. " (" .. w[4] .. " threads)"
    end
  end
  return steps, lay, core
end

bench.header("training step of the train_cnn.lua CNN (float32, AdamW), vlua vs PyTorch", threads)
-- The OpenBLAS kernel set each side runs (convolutions are GEMMs in vlua;
-- PyTorch's go to oneDNN, its linear layers to the same OpenBLAS).
local function blas_core(cmd)
  local out = bench.lines("OPENBLAS_VERBOSE=2 " .. cmd)
  for _, l in ipairs(out) do
    local c = l:match("^Core: (%S+)")
    if c then return c end
  end
  return "?"
end
print(fmt("vlua float32 GEMM kernel: %s (VLUA_GEMM=blas for OpenBLAS's)", vl.gemm_kernel()))
print(fmt("OpenBLAS core: %s (vlua), %s (PyTorch)", blas_core(fmt("%q -e ''", arg[-1] or "build/vlua")),
  blas_core("/usr/bin/python3 -c 'import torch'")))
local hint = train_cnn.blas_hint()
if hint then print(hint) end
local have_torch = select(2, bench.lines("/usr/bin/python3 -c 'import torch'"))
if not have_torch then print("PyTorch: n/a (apt-get install python3-torch; scripts/setup.sh --bench)") end

local V, Tt = {}, {}
for _, B in ipairs(batches) do V[B] = { best = math.huge, all = {} }; Tt[B] = { best = math.huge, med = {} } end
local core, torch_layers
for r = 1, o.rounds do
  for _, B in ipairs(batches) do
    local ts = vlua_steps(B)
    for _, t in ipairs(ts) do
      V[B].all[#V[B].all + 1] = t
      if t < V[B].best then V[B].best = t end
    end
  end
  if have_torch then
    local steps, lay, c = torch_run(o.layers and r == o.rounds)
    if not steps then
      print("PyTorch peer failed:\n" .. tostring(lay))
      have_torch = false
    else
      core = c
      if o.layers and r == o.rounds then torch_layers = lay end
      for _, B in ipairs(batches) do
        local s = steps[B]
        if s then
          Tt[B].best = math.min(Tt[B].best, s[1] / 1e3)
          Tt[B].med[#Tt[B].med + 1] = s[2] / 1e3
        end
      end
    end
  end
end
if core then print("peer: " .. core) end

print()
print(fmt("%-6s %14s %14s %14s %14s %8s %8s", "batch", "vlua best", "torch best", "vlua median", "torch median",
  "ratio", "ratio"))
print(fmt("%-6s %14s %14s %14s %14s %8s %8s", "", "samples/s", "samples/s", "samples/s", "samples/s", "best", "median"))
for _, B in ipairs(batches) do
  local vb, vm = B / V[B].best, B / median(V[B].all)
  local tb = have_torch and Tt[B].best < math.huge and B / Tt[B].best or nil
  local tm = have_torch and #Tt[B].med > 0 and B / median(Tt[B].med) or nil
  print(fmt("%-6d %14s %14s %14s %14s %8s %8s", B, bench.num(vb), bench.num(tb), bench.num(vm), bench.num(tm),
    bench.ratio(vb, tb), bench.ratio(vm, tm)))
end
print("ratio = vlua samples/s / torch samples/s (target >= 1.0)")

if o.layers then
  for _, B in ipairs(batches) do
    local rows = vlua_layers(B)
    local tl = torch_layers and torch_layers[B] or {}
    print()
    print(fmt("per layer, batch %d: best ms (fwd alone, fwd+bwd)", B))
    print(fmt("%-3s %-18s %10s %10s %10s %10s", "#", "layer", "vlua fwd", "torch fwd", "vlua f+b", "torch f+b"))
    local sv, st = 0, 0
    for i, r in ipairs(rows) do
      local t = tl[i]
      print(fmt("%-3d %-18s %10.3f %10s %10.3f %10s", i, r[1], r[2], t and fmt("%.3f", t[2]) or "n/a", r[3],
        t and fmt("%.3f", t[3]) or "n/a"))
      sv = sv + r[3]
      st = st + (t and t[3] or 0)
    end
    print(fmt("    %-18s %10s %10s %10.3f %10s", "sum", "", "", sv, torch_layers and fmt("%.3f", st) or "n/a"))
  end
end
