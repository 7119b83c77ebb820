-- scripts/bench/conv.lua — vl.conv2d forward and forward+backward against
-- PyTorch on the CPU (Debian's python3-torch through /usr/bin/python3, the
-- same thread count), float32, NCHW. Prints the best time of each in ms
-- and the ratio torch / vlua (above 1: vlua is faster).
-- Run: build/vlua scripts/bench/conv.lua
local vl = require "vl"
local bench = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lib/bench.lua")

-- N,C,H,W, O,kH,kW, stride, padding, groups
local SHAPES = {
  { spec = "64,32,28,28,64,3,3,1,1,1", label = "[64,32,28,28] * [64,32,3,3] s1 p1" },
  { spec = "16,64,56,56,64,3,3,1,1,1", label = "[16,64,56,56] * [64,64,3,3] s1 p1" },
  { spec = "32,64,32,32,128,3,3,2,1,1", label = "[32,64,32,32] * [128,64,3,3] s2 p1" },
  { spec = "32,128,28,28,64,1,1,1,0,1", label = "[32,128,28,28] * [64,128,1,1]" },
  { spec = "32,64,28,28,64,3,3,1,1,64", label = "depthwise [32,64,28,28] g64" },
}
local ROUNDS = 2

local function parse(spec)
  local t = {}
  for v in spec:gmatch("%d+") do t[#t + 1] = tonumber(v) end
  return table.unpack(t)
end

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
for spec in sys.argv[2:]:
    N, C, H, W, O, kH, kW, s, p, g = map(int, spec.split(","))
    x = torch.rand(N, C, H, W); w = torch.rand(O, C // g, kH, kW); b = torch.rand(O)
    fwd = best(lambda: F.conv2d(x, w, b, s, p, 1, g))
    xr, wr, br = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    gy = torch.rand(F.conv2d(x, w, b, s, p, 1, g).shape)
    def fb():
        xr.grad = wr.grad = br.grad = None
        F.conv2d(xr, wr, br, s, p, 1, g).backward(gy)
    both = best(fb)
    print("conv", spec, fwd * 1e3, both * 1e3)
print("core", "torch-%s_mkldnn=%s" % (torch.__version__, torch.backends.mkldnn.is_available()), "threads", torch.get_num_threads())
]]

local function torch_times(n, specs)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(PEER)
  f:close()
  local rows, core, okc, out = bench.run_peer(bench.env(n) .. "/usr/bin/python3 " .. path .. " " .. n .. " " ..
                                           table.concat(specs, " "))
  os.remove(path)
  if not okc then return nil, table.concat(out, "\n") end
  return rows, nil, core
end

local function vlua_times(spec)
  local N, C, H, W, O, kH, kW, s, p, g = parse(spec)
  local x, w, b = vl.rand({ N, C, H, W }), vl.rand({ O, C // g, kH, kW }), vl.rand({ O })
  local opts = { stride = s, padding = p, groups = g }
  local fwd = bench.best_time(function() return vl.conv2d(x, w, b, opts) end)
  local xr, wr, br = x:clone():requires_grad(true), w:clone():requires_grad(true), b:clone():requires_grad(true)
  local gy = vl.rand(vl.conv2d(x, w, b, opts):size())
  local both = bench.best_time(function()
    xr.grad, wr.grad, br.grad = nil, nil, nil
    vl.conv2d(xr, wr, br, opts):backward(gy)
  end)
  return fwd * 1e3, both * 1e3
end

local n = bench.threads()
bench.header("conv2d (float32, NCHW): best time in ms, forward and forward+backward", n)
local specs = {}
for i, s in ipairs(SHAPES) do specs[i] = s.spec end
local have_torch = select(2, bench.lines("/usr/bin/python3 -c 'import torch'"))
local rows = {}
local torch_err, torch_core
for _ = 1, ROUNDS do
  local tr, err = nil, nil
  if have_torch then tr, err, torch_core = torch_times(n, specs) end
  torch_err = torch_err or err
  for i, s in ipairs(SHAPES) do
    local row = rows[i] or {}
    rows[i] = row
    local vf, vb = vlua_times(s.spec)
    row.vf = math.min(row.vf or math.huge, vf)
    row.vb = math.min(row.vb or math.huge, vb)
    local t = tr and tr[s.spec]
    if t then
      row.tf = math.min(row.tf or math.huge, tonumber(t[3]))
      row.tb = math.min(row.tb or math.huge, tonumber(t[4]))
    end
  end
end
if not have_torch then print("PyTorch: n/a (install python3-torch)") end
if torch_err then print("PyTorch failed:\n" .. torch_err) end
if torch_core then print("PyTorch: " .. torch_core .. " (CPU convolutions through oneDNN when mkldnn=True)") end
print()
local fmt = "%-36s %9s %9s %7s   %9s %9s %7s"
print(string.format(fmt, "shape", "vl fwd", "torch", "ratio", "vl f+b", "torch", "ratio"))
for i, s in ipairs(SHAPES) do
  local r = rows[i]
  print(string.format(fmt, s.label, bench.num(r.vf), bench.num(r.tf), bench.ratio(r.tf, r.vf), bench.num(r.vb),
                      bench.num(r.tb), bench.ratio(r.tb, r.vb)))
end
print("ratio = torch time / vlua time (above 1: vlua faster)")
