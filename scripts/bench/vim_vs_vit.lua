-- scripts/bench/vim_vs_vit.lua — one Vision Mamba block against one ViT
-- block of the same width as the token count grows: where does the
-- linear-time scan beat attention?
--
--   Vim block  vl.mamba.Block: RMSNorm + bidirectional Mamba mixer (Vim's
--              "v2": forward and backward selective scans, d_state 16,
--              expand 2), with its residual add
--   ViT block  vl.vit.EncoderBlock: LayerNorm, multi-head attention
--              (vl.attention, width/64 heads), LayerNorm, MLP 4x width
-- Width 192 (Vim-Tiny / ViT-Tiny), depth 1, batch 1, float32, tokens
-- 196, 1024, 4096, 16384 (images 224^2 .. 2048^2 at patch 16). For each:
--   fwd        forward, no gradients (best of a few runs)
--   fwd+bwd    forward and backward of sum(output)
--   peak       peak resident memory of a fresh process running fwd+bwd,
--              above its resident size after building the block (VmHWM -
--              VmRSS, /proc/self/status): activations, saved tensors and
--              gradients
--   us/token   fwd+bwd time per token (flat = linear cost)
-- and the first token count at which the Vim block's fwd+bwd is faster
-- (the crossover). Each row runs in its own process (for the peak).
--
--   build/vlua scripts/bench/vim_vs_vit.lua [--width 192] [--tokens 196,1024,4096,16384] [--threads N]
--
-- Target (issue 5): Vim's time per token flat within 1.5x from 1k to 16k
-- tokens, and below the attention block's at >= 4096 tokens.
local vl = require "vl"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local fmt = string.format

local o = { width = 192, tokens = { 196, 1024, 4096, 16384 } }
local row
do
  local i = 1
  while i <= #arg do
    local k = arg[i]:match("^%-%-([%w]+)$")
    local v = arg[i + 1]
    if k == "width" or k == "threads" then
      o[k] = math.tointeger(tonumber(v))
      if not o[k] or o[k] < 1 then error("vim_vs_vit: --" .. k .. " needs a positive integer", 0) end
    elseif k == "tokens" then
      o.tokens = {}
      for n in (v or ""):gmatch("[^,]+") do
        local t = math.tointeger(tonumber(n))
        if not t or t < 1 then error("vim_vs_vit: --tokens takes a comma-separated list of counts", 0) end
        o.tokens[#o.tokens + 1] = t
      end
    elseif k == "row" then -- internal: one measurement in this process
      row = { kind = v, tokens = math.tointeger(tonumber(arg[i + 2])) }
      i = i + 1
    else
      error("vim_vs_vit: unknown argument '" .. tostring(arg[i]) .. "'", 0)
    end
    i = i + 2
  end
end
if o.threads then vl.set_num_threads(o.threads) end
local threads = vl.get_num_threads()

local function status(key)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(key .. ":%s*(%d+)")) / 1024
end

local function best(fn, budget)
  fn()
  local b, start, runs = math.huge, vl.monotonic(), 0
  while runs < 2 or (vl.monotonic() - start < budget and runs < 5) do
    collectgarbage()
    local t0 = vl.monotonic()
    fn()
    b = math.min(b, vl.monotonic() - t0)
    runs = runs + 1
  end
  return b
end

if row then
  local w, L = o.width, row.tokens
  local block, fwd
  if row.kind == "vim" then
    local mamba = require "vl.mamba"
    block = mamba.Block(w, { d_model = w, d_state = 16, expand = 2, bimamba = true })
    fwd = function(x) local h, r = block(x, nil) return h + r end
  else
    local vit = require "vl.vit"
    block = vit.EncoderBlock(math.max(1, w // 64), w, 4 * w, 0, 0)
    fwd = function(x) return block(x) end
  end
  local x = vl.randn({ 1, L, w }):requires_grad_(true)
  collectgarbage()
  local base = status("VmRSS")
  local function fb()
    block:zero_grad()
    x.grad = nil
    fwd(x):sum():backward()
  end
  fb() -- the peak is taken over this first run, before any timing
  local peak = status("VmHWM") - base
  local budget = L >= 8192 and 0 or 1.0
  local t_fb = best(fb, budget)
  local t_f = best(function() vl.no_grad(fwd, x) end, budget)
  print(fmt("ROW %.6f %.6f %.1f", t_f, t_fb, peak))
  return
end

local VLUA = arg[-1] or "build/vlua"
local function measure(kind, L)
  local cmd = fmt("%s %svim_vs_vit.lua --row %s %d --width %d --threads %d 2>&1", VLUA, here, kind, L, o.width, threads)
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local f, fb, peak = out:match("ROW (%S+) (%S+) (%S+)")
  if not f then error("vim_vs_vit: the " .. kind .. " row at " .. L .. " tokens failed:\n" .. out, 0) end
  return tonumber(f), tonumber(fb), tonumber(peak)
end

print(fmt("Vim block vs ViT block, width %d, batch 1, float32, %d threads%s", o.width, threads,
  vl.selective_scan and "" or " (vl.selective_scan missing: reference scan)"))
print(fmt("%7s | %9s %9s %8s %8s | %9s %9s %8s %8s | %6s", "tokens", "vim fwd", "fwd+bwd", "peak", "us/tok",
  "vit fwd", "fwd+bwd", "peak", "us/tok", "vit/vim"))
print(fmt("%7s | %9s %9s %8s %8s | %9s %9s %8s %8s | %6s", "", "ms", "ms", "MiB", "", "ms", "ms", "MiB", "", "fb"))
local crossover
local per_tok = {}
for _, L in ipairs(o.tokens) do
  local vf, vfb, vp = measure("vim", L)
  local af, afb, ap = measure("vit", L)
  per_tok[L] = vfb / L
  print(fmt("%7d | %9.2f %9.2f %8.1f %8.2f | %9.2f %9.2f %8.1f %8.2f | %6.2f", L, vf * 1e3, vfb * 1e3, vp, vfb / L * 1e6,
    af * 1e3, afb * 1e3, ap, afb / L * 1e6, afb / vfb))
  io.stdout:flush()
  if not crossover and vfb < afb then crossover = L end
end
print(crossover and fmt("crossover: the Vim block's fwd+bwd is faster from %d tokens on (of those measured)", crossover)
  or "crossover: not reached in the token counts measured")
local lo, hi
for _, L in ipairs(o.tokens) do
  if L >= 1000 then
    lo = lo and math.min(lo, per_tok[L]) or per_tok[L]
    hi = hi and math.max(hi, per_tok[L]) or per_tok[L]
  end
end
if lo then print(fmt("Vim time per token from 1k tokens on: max/min = %.2f (target <= 1.5)", hi / lo)) end
