-- scripts/bench/video_conv3d.lua — vl.conv3d forward and forward+backward,
-- and vl.max_pool3d, against PyTorch on the CPU (Debian's python3-torch
-- through /usr/bin/python3, the same thread count), float32, NCDHW, on the
-- shapes of video networks: C3D's conv1 and a middle layer, R(2+1)D's
-- factorised 1x3x3 + 3x1x1 pair, a SlowFast time-strided lateral, and C3D's
-- pools. Prints the best time of each in ms and the ratio torch / vlua
-- (above 1: vlua is faster).
-- Run: build/vlua scripts/bench/video_conv3d.lua [--full]
--   batch 2 by default (about a minute on 2 cores); --full: batch 8, the
--   batch of the papers' training runs (four times the work and memory,
--   about 3 GB)
local vl = require "vl"
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib/bench.lua")

local full = false
for _, a in ipairs(arg or {}) do
  if a == "--full" then full = true end
end
local B = full and 8 or 2

-- conv: N,C,D,H,W, O,kD,kH,kW, sD,sH,sW, pD,pH,pW
-- pool: N,C,D,H,W, kD,kH,kW (stride = kernel)
local SHAPES = {
  { kind = "conv", spec = { B, 3, 16, 112, 112, 64, 3, 3, 3, 1, 1, 1, 1, 1, 1 },
    label = "C3D conv1 [B,3,16,112,112]*[64,3,3,3,3] p1" },
  { kind = "conv", spec = { B, 64, 8, 56, 56, 128, 3, 3, 3, 1, 1, 1, 1, 1, 1 },
    label = "C3D conv2 [B,64,8,56,56]*[128,64,3,3,3] p1" },
  { kind = "conv", spec = { B, 64, 8, 56, 56, 144, 1, 3, 3, 1, 1, 1, 0, 1, 1 },
    label = "R(2+1)D [B,64,8,56,56]*[144,64,1,3,3]" },
  { kind = "conv", spec = { B, 144, 8, 56, 56, 64, 3, 1, 1, 1, 1, 1, 1, 0, 0 },
    label = "R(2+1)D [B,144,8,56,56]*[64,144,3,1,1]" },
  { kind = "conv", spec = { B, 8, 32, 56, 56, 16, 5, 1, 1, 8, 1, 1, 2, 0, 0 },
    label = "SlowFast lateral [B,8,32,56,56]*[16,8,5,1,1] s(8,1,1)" },
  { kind = "pool", spec = { B, 64, 16, 112, 112, 1, 2, 2 }, label = "max_pool3d 1x2x2 [B,64,16,112,112]" },
  { kind = "pool", spec = { B, 128, 16, 56, 56, 2, 2, 2 }, label = "max_pool3d 2x2x2 [B,128,16,56,56]" },
}
local ROUNDS = 2

local function key(s) return s.kind .. ":" .. table.concat(s.spec, ",") end

local PEER = [[
import sys, time, torch
import torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
MIN_RUNS, MIN_SECONDS = 3, 0.4
def best(fn):
    fn()
    b, start, runs = float("inf"), time.perf_counter(), 0
    while runs < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        t0 = time.perf_counter(); fn(); b = min(b, time.perf_counter() - t0); runs += 1
    return b
for key in sys.argv[2:]:
    kind, spec = key.split(":")
    v = list(map(int, spec.split(",")))
    if kind == "conv":
        N, C, D, H, W, O, kD, kH, kW, sD, sH, sW, pD, pH, pW = v
        x = torch.rand(N, C, D, H, W); w = torch.rand(O, C, kD, kH, kW); b = torch.rand(O)
        st, pd = (sD, sH, sW), (pD, pH, pW)
        f = lambda xx, ww, bb: F.conv3d(xx, ww, bb, st, pd)
    else:
        N, C, D, H, W, kD, kH, kW = v
        x = torch.rand(N, C, D, H, W); w = b = None
        f = lambda xx, ww, bb: F.max_pool3d(xx, (kD, kH, kW))
    fwd = best(lambda: f(x, w, b))
    xr = x.clone().requires_grad_()
    wr = w.clone().requires_grad_() if w is not None else None
    br = b.clone().requires_grad_() if b is not None else None
    gy = torch.rand(f(x, w, b).shape)
    def fb():
        xr.grad = None
        if wr is not None: wr.grad = br.grad = None
        f(xr, wr, br).backward(gy)
    both = best(fb)
    print("row", key, fwd * 1e3, both * 1e3)
print("core", "torch-%s_mkldnn=%s" % (torch.__version__, torch.backends.mkldnn.is_available()), "threads", torch.get_num_threads())
]]

local function torch_times(n, keys)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(PEER)
  f:close()
  local out, okc = bench.lines(bench.env(n) .. "/usr/bin/python3 " .. path .. " " .. n .. " " .. table.concat(keys, " "))
  os.remove(path)
  if not okc then return nil, table.concat(out, "\n") end
  local rows, core = {}, nil
  for _, line in ipairs(out) do
    local w = {}
    for x in line:gmatch("%S+") do w[#w + 1] = x end
    if w[1] == "row" then rows[w[2]] = { tonumber(w[3]), tonumber(w[4]) }
    elseif w[1] == "core" then core = w[2] .. " (" .. (w[4] or "?") .. " threads)" end
  end
  return rows, nil, core
end

local function vlua_times(s)
  local v = s.spec
  local x, w, b, f
  if s.kind == "conv" then
    local N, C, D, H, W, O, kD, kH, kW, sD, sH, sW, pD, pH, pW = table.unpack(v)
    x, w, b = vl.rand({ N, C, D, H, W }), vl.rand({ O, C, kD, kH, kW }), vl.rand({ O })
    local opts = { stride = { sD, sH, sW }, padding = { pD, pH, pW } }
    f = function(xx, ww, bb) return vl.conv3d(xx, ww, bb, opts) end
  else
    local N, C, D, H, W, kD, kH, kW = table.unpack(v)
    x = vl.rand({ N, C, D, H, W })
    f = function(xx) return vl.max_pool3d(xx, { kD, kH, kW }) end
  end
  local fwd = bench.best_time(function() return f(x, w, b) end)
  local xr = x:clone():requires_grad(true)
  local wr = w and w:clone():requires_grad(true)
  local br = b and b:clone():requires_grad(true)
  local gy = vl.rand(f(x, w, b):size())
  local both = bench.best_time(function()
    xr.grad = nil
    if wr then wr.grad, br.grad = nil, nil end
    f(xr, wr, br):backward(gy)
  end)
  return fwd * 1e3, both * 1e3
end

local n = bench.threads()
bench.header(string.format("conv3d / max_pool3d (float32, NCDHW, batch %d): best time in ms, forward and " ..
  "forward+backward", B), n)
local keys = {}
for i, s in ipairs(SHAPES) do keys[i] = key(s) end
local have_torch = select(2, bench.lines("/usr/bin/python3 -c 'import torch'"))
local rows, torch_err, torch_core = {}, nil, nil
for _ = 1, ROUNDS do
  local tr, err = nil, nil
  if have_torch then tr, err, torch_core = torch_times(n, keys) end
  torch_err = torch_err or err
  for i, s in ipairs(SHAPES) do
    local row = rows[i] or {}
    rows[i] = row
    local vf, vb = vlua_times(s)
    collectgarbage()
    row.vf = math.min(row.vf or math.huge, vf)
    row.vb = math.min(row.vb or math.huge, vb)
    local t = tr and tr[keys[i]]
    if t then
      row.tf = math.min(row.tf or math.huge, t[1])
      row.tb = math.min(row.tb or math.huge, t[2])
    end
  end
end
if not have_torch then print("PyTorch: n/a (install python3-torch)") end
if torch_err then print("PyTorch failed:\n" .. torch_err) end
if torch_core then print("PyTorch: " .. torch_core .. " (CPU convolutions through oneDNN when mkldnn=True)") end
print()
local fmt = "%-52s %9s %9s %6s   %9s %9s %6s"
print(string.format(fmt, "shape", "vl fwd", "torch", "ratio", "vl f+b", "torch", "ratio"))
for i, s in ipairs(SHAPES) do
  local r = rows[i]
  print(string.format(fmt, (s.label:gsub("%[B,", "[" .. B .. ",")), bench.num(r.vf), bench.num(r.tf),
    bench.ratio(r.tf, r.vf), bench.num(r.vb), bench.num(r.tb), bench.ratio(r.tb, r.vb)))
end
print("ratio = torch time / vlua time (above 1: vlua faster)")
