-- vl.video.cnn3d — 3-D convolutional video classifiers: a C3D-style net, an
-- R(2+1)D-style residual net and SlowFast (merged into vl.video).
--
--   local video = require "vl.video"          -- or require "vl.video.cnn3d"
--   local m = video.C3D{num_classes = 8, width = 16}
--   local logits = m(x)                        -- x [B, C, T, H, W] -> [B, 8]
--   video.R2Plus1D{num_classes = 8, width = 16, stages = 3}
--   video.SlowFast{num_classes = 8, width = 16, alpha = 8, beta_inv = 8}
--
-- Small versions of the papers' designs, for clips of a few to a few dozen
-- frames at low resolution; convolutions carry no bias and are followed by
-- BatchNorm3d (nn.BatchNorm3d) and ReLU, as in the papers' reference code.
-- Parameter names follow the PyTorch transcriptions in
-- scripts/fixtures/video_cnn.py, so state_dicts load in both directions.
-- Layer by layer (and the parameter counts) in man vl(7), "3-D CNNs".
local vl = require "vl"
local nn = require "vl.nn"

local fmt, floor = string.format, math.floor

local M = {}

local function check_int(v, what, cls, lo)
  if type(v) ~= "number" or v ~= floor(v) then error(fmt("%s: %s must be an integer, got %s", cls, what, tostring(v)), 4) end
  v = math.tointeger(v)
  if v < lo then error(fmt("%s: %s must be >= %d, got %d", cls, what, lo, v), 4) end
  return v
end

local function options(opts, cls)
  if type(opts) ~= "table" then error(fmt("%s: expected an options table {num_classes = ..., ...}, got %s", cls, type(opts)), 4) end
  if opts.num_classes == nil then error(fmt("%s: num_classes is required", cls), 4) end
  local o = {
    num_classes = check_int(opts.num_classes, "num_classes", cls, 1),
    in_channels = check_int(opts.in_channels or 3, "in_channels", cls, 1),
    width = check_int(opts.width or 16, "width", cls, 1),
    stages = check_int(opts.stages or 3, "stages", cls, 1),
    dropout = opts.dropout or 0,
  }
  if type(o.dropout) ~= "number" or not (o.dropout >= 0 and o.dropout < 1) then
    error(fmt("%s: dropout must be in [0, 1), got %s", cls, tostring(opts.dropout)), 4)
  end
  return o
end

local function triple(v) if type(v) == "number" then return { v, v, v } end return v end

local function check_clip(self, x, cls)
  if not vl.is_tensor(x) or x:dim() ~= 5 then
    error(fmt("%s: expected a clip batch [B, C, T, H, W], got %s", cls,
      vl.is_tensor(x) and ("shape " .. nn._shape_str(x.shape)) or type(x)), 3)
  end
  if x:size(2) ~= self.in_channels then
    error(fmt("%s: input has %d channels, expected %d (input shape %s)", cls, x:size(2), self.in_channels,
      nn._shape_str(x.shape)), 3)
  end
end

-- Global average pool, flatten, dropout, linear.
local function head(self, x)
  x = vl.adaptive_avg_pool3d(x, 1):flatten(2)
  if self.drop then x = self.drop(x) end
  return self.fc(x)
end

-- ---------------------------------------------------------------------------
-- ConvBN3d: conv (no bias) -> BatchNorm3d -> ReLU. Keys conv.weight, bn.*.
-- ---------------------------------------------------------------------------

local ConvBN3d = nn.Module:extend("ConvBN3d")
M.ConvBN3d = ConvBN3d

-- video.ConvBN3d(cin, cout, kernel, {stride = 1, padding = kernel // 2, relu = true})
function ConvBN3d:init(cin, cout, kernel, opts)
  opts = opts or {}
  local k = triple(kernel)
  local pad = opts.padding or { k[1] // 2, k[2] // 2, k[3] // 2 }
  self.conv = nn.Conv3d(cin, cout, k, { stride = opts.stride or 1, padding = pad, bias = false })
  self.bn = nn.BatchNorm3d(cout)
  self.relu = opts.relu ~= false
end

function ConvBN3d:forward(x)
  x = self.bn(self.conv(x))
  if self.relu then x = vl.relu(x) end
  return x
end

-- ---------------------------------------------------------------------------
-- C3D-style: stages of 3x3x3 conv + BN + ReLU, max-pooling between them
-- (1x2x2 after the first, as C3D's pool1, 2x2x2 after the others), global
-- average pool, linear.
-- ---------------------------------------------------------------------------

local C3D = nn.Module:extend("C3D")
M.C3D = C3D

-- video.C3D{num_classes, in_channels = 3, width = 16, stages = 3, dropout = 0}
-- Stage s has width * 2^(s-1) channels. Needs T >= 2^(stages-2) frames and
-- H, W >= 2^(stages-1).
function C3D:init(opts)
  local o = options(opts, "C3D")
  for k, v in pairs(o) do self[k] = v end
  local blocks, cin = {}, o.in_channels
  for s = 1, o.stages do
    local cout = o.width * (1 << (s - 1))
    blocks[s] = ConvBN3d(cin, cout, 3)
    cin = cout
  end
  self.blocks = nn.ModuleList(blocks)
  self.out_channels = cin
  if o.dropout > 0 then self.drop = nn.Dropout(o.dropout) end
  self.fc = nn.Linear(cin, o.num_classes)
end

-- m:features(x) -> the last stage's maps [B, C', T', H', W'].
function C3D:features(x)
  check_clip(self, x, "C3D")
  for s = 1, self.stages do
    x = self.blocks[s](x)
    if s < self.stages then
      if s == 1 then
        x = vl.max_pool3d(x, { 1, 2, 2 })
      else
        x = vl.max_pool3d(x, 2)
      end
    end
  end
  return x
end

function C3D:forward(x) return head(self, self:features(x)) end

function C3D:_short() return fmt("C3D width %d, %d stages", self.width, self.stages) end

-- ---------------------------------------------------------------------------
-- R(2+1)D (Tran et al., "A Closer Look at Spatiotemporal Convolutions for
-- Action Recognition", CVPR 2018): each t x d x d convolution becomes a
-- 1 x d x d spatial convolution to M channels, BN, ReLU, and a t x 1 x 1
-- temporal one, with M = floor(t d^2 Nin Nout / (d^2 Nin + t Nout)) so
-- that the parameter count matches the full 3-D kernel's.
-- ---------------------------------------------------------------------------

-- video.r2plus1d_mid_channels(n_in, n_out, {t = 3, d = 3}) -> M
function M.r2plus1d_mid_channels(nin, nout, t, d)
  t, d = t or 3, d or 3
  return (t * d * d * nin * nout) // (d * d * nin + t * nout)
end

local Conv2Plus1D = nn.Module:extend("Conv2Plus1D")
M.Conv2Plus1D = Conv2Plus1D

-- video.Conv2Plus1D(cin, cout, {t = 3, d = 3, stride = {st, ss}})
-- Keys spatial.weight, bn.*, temporal.weight.
function Conv2Plus1D:init(cin, cout, opts)
  opts = opts or {}
  local t, d = opts.t or 3, opts.d or 3
  local st, ss = 1, 1
  if opts.stride then st, ss = opts.stride[1], opts.stride[2] end
  self.mid_channels = M.r2plus1d_mid_channels(cin, cout, t, d)
  if self.mid_channels < 1 then error(fmt("Conv2Plus1D: %d -> %d channels gives M = 0", cin, cout), 3) end
  self.spatial = nn.Conv3d(cin, self.mid_channels, { 1, d, d },
    { stride = { 1, ss, ss }, padding = { 0, d // 2, d // 2 }, bias = false })
  self.bn = nn.BatchNorm3d(self.mid_channels)
  self.temporal = nn.Conv3d(self.mid_channels, cout, { t, 1, 1 },
    { stride = { st, 1, 1 }, padding = { t // 2, 0, 0 }, bias = false })
end

function Conv2Plus1D:forward(x) return self.temporal(vl.relu(self.bn(self.spatial(x)))) end

-- A residual basic block of two (2+1)D convolutions; a 1x1x1 conv + BN
-- shortcut (keys downsample.0 / downsample.1) when the shape changes.
local Block2Plus1D = nn.Module:extend("Block2Plus1D")
M.Block2Plus1D = Block2Plus1D

function Block2Plus1D:init(cin, cout, stride)
  self.conv1 = Conv2Plus1D(cin, cout, { stride = { stride, stride } })
  self.bn1 = nn.BatchNorm3d(cout)
  self.conv2 = Conv2Plus1D(cout, cout)
  self.bn2 = nn.BatchNorm3d(cout)
  if stride ~= 1 or cin ~= cout then
    self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, { stride = stride, bias = false }), nn.BatchNorm3d(cout))
  end
end

function Block2Plus1D:forward(x)
  local y = vl.relu(self.bn1(self.conv1(x)))
  y = self.bn2(self.conv2(y))
  local sc = self.downsample and self.downsample(x) or x
  return vl.relu(y + sc)
end

local R2Plus1D = nn.Module:extend("R2Plus1D")
M.R2Plus1D = R2Plus1D

-- video.R2Plus1D{num_classes, in_channels = 3, width = 16, stages = 3, dropout = 0}
-- stem: (2+1)D conv in -> width, spatial stride 2, BN, ReLU; stage s: one
-- residual block to width * 2^(s-1) channels, stride 2 in time and space
-- from the second stage on; global average pool; linear.
function R2Plus1D:init(opts)
  local o = options(opts, "R2Plus1D")
  for k, v in pairs(o) do self[k] = v end
  self.stem = nn.Sequential(Conv2Plus1D(o.in_channels, o.width, { stride = { 1, 2 } }), nn.BatchNorm3d(o.width),
    nn.ReLU())
  local layers, cin = {}, o.width
  for s = 1, o.stages do
    local cout = o.width * (1 << (s - 1))
    layers[s] = Block2Plus1D(cin, cout, s == 1 and 1 or 2)
    cin = cout
  end
  self.layers = nn.ModuleList(layers)
  self.out_channels = cin
  if o.dropout > 0 then self.drop = nn.Dropout(o.dropout) end
  self.fc = nn.Linear(cin, o.num_classes)
end

function R2Plus1D:features(x)
  check_clip(self, x, "R2Plus1D")
  x = self.stem(x)
  for s = 1, self.stages do x = self.layers[s](x) end
  return x
end

function R2Plus1D:forward(x) return head(self, self:features(x)) end

function R2Plus1D:_short() return fmt("R2Plus1D width %d, %d stages", self.width, self.stages) end

-- ---------------------------------------------------------------------------
-- SlowFast (Feichtenhofer et al., ICCV 2019): a slow pathway on every
-- alpha-th frame with C channels, a fast pathway on every frame with
-- beta C channels (beta = 1 / beta_inv), lateral connections fast -> slow
-- by a time-strided convolution (fusion_kernel x 1 x 1, stride alpha, 2 beta C
-- output channels, + BN + ReLU) concatenated to the slow features after the
-- stem and after each stage but the last; both pathways pooled and
-- concatenated into the classifier.
-- ---------------------------------------------------------------------------

local SlowFast = nn.Module:extend("SlowFast")
M.SlowFast = SlowFast

-- video.SlowFast{num_classes, in_channels = 3, width = 16, alpha = 8, beta_inv = 8,
--   fusion_kernel = 5, stages = 3, dropout = 0}
-- Slow stem 1x3x3 (spatial stride 2), fast stem 5x3x3 (spatial stride 2);
-- stage s: one ConvBN3d per pathway to width * 2^(s-1) (slow) and
-- max(1, width // beta_inv) * 2^(s-1) (fast) channels, spatial stride 2
-- from the second stage on; temporal kernel 3 in the fast pathway, in the
-- slow one 1 for the first floor(stages / 2) stages and 3 after (the
-- paper's non-degenerate temporal convolutions in res4-5 only).
function SlowFast:init(opts)
  local o = options(opts, "SlowFast")
  for k, v in pairs(o) do self[k] = v end
  self.alpha = check_int(opts.alpha or 8, "alpha", "SlowFast", 1)
  self.beta_inv = check_int(opts.beta_inv or 8, "beta_inv", "SlowFast", 1)
  self.fusion_kernel = check_int(opts.fusion_kernel or 5, "fusion_kernel", "SlowFast", 1)
  if self.fusion_kernel % 2 == 0 then error("SlowFast: fusion_kernel must be odd, got " .. self.fusion_kernel, 3) end
  local C, Cf = o.width, math.max(1, o.width // self.beta_inv)
  self.fast_width = Cf
  self.slow_stem = ConvBN3d(o.in_channels, C, { 1, 3, 3 }, { stride = { 1, 2, 2 } })
  self.fast_stem = ConvBN3d(o.in_channels, Cf, { 5, 3, 3 }, { stride = { 1, 2, 2 } })
  local fk = self.fusion_kernel
  local function fuse(cf)
    return ConvBN3d(cf, 2 * cf, { fk, 1, 1 }, { stride = { self.alpha, 1, 1 }, padding = { fk // 2, 0, 0 } })
  end
  local fuses, slow, fast = { fuse(Cf) }, {}, {}
  local cs, cf = C, Cf
  for s = 1, o.stages do
    local ss = s == 1 and 1 or 2
    local kt = (s <= o.stages // 2) and 1 or 3
    local ns, nf = C * (1 << (s - 1)), Cf * (1 << (s - 1))
    slow[s] = ConvBN3d(cs + 2 * cf, ns, { kt, 3, 3 }, { stride = { 1, ss, ss } })
    fast[s] = ConvBN3d(cf, nf, 3, { stride = { 1, ss, ss } })
    cs, cf = ns, nf
    if s < o.stages then fuses[s + 1] = fuse(cf) end
  end
  self.fuse = nn.ModuleList(fuses)
  self.slow = nn.ModuleList(slow)
  self.fast = nn.ModuleList(fast)
  self.out_channels = cs + cf
  if o.dropout > 0 then self.drop = nn.Dropout(o.dropout) end
  self.fc = nn.Linear(cs + cf, o.num_classes)
end

-- m:pathways(x) -> slow, fast: every alpha-th frame (1, 1 + alpha, ...) and all frames.
function SlowFast:pathways(x)
  check_clip(self, x, "SlowFast")
  local T = x:size(3)
  local idx = vl.arange(1, T + 1, self.alpha, { dtype = "int64" })
  return x:index_select(3, idx), x
end

local function fuse_into(self, i, slow, fast)
  local lat = self.fuse[i](fast)
  if lat:size(3) ~= slow:size(3) then
    error(fmt("SlowFast: the fast pathway's %d frames give %d after the stride-%d lateral conv, the slow pathway has %d"
      .. " (the slow input must be every %d-th frame of the fast one)", fast:size(3), lat:size(3), self.alpha,
      slow:size(3), self.alpha), 4)
  end
  return vl.cat({ slow, lat }, 2)
end

-- m(x) with x [B, C, T, H, W] (the slow pathway is every alpha-th frame of
-- it), or m({slow, fast}) with the two inputs given.
function SlowFast:forward(x)
  local slow, fast
  if type(x) == "table" and not vl.is_tensor(x) then
    slow, fast = x[1], x[2]
    check_clip(self, slow, "SlowFast")
    check_clip(self, fast, "SlowFast")
  else
    slow, fast = self:pathways(x)
  end
  slow, fast = self.slow_stem(slow), self.fast_stem(fast)
  slow = fuse_into(self, 1, slow, fast)
  for s = 1, self.stages do
    slow, fast = self.slow[s](slow), self.fast[s](fast)
    if s < self.stages then slow = fuse_into(self, s + 1, slow, fast) end
  end
  local f = vl.cat({ vl.adaptive_avg_pool3d(slow, 1):flatten(2), vl.adaptive_avg_pool3d(fast, 1):flatten(2) }, 2)
  if self.drop then f = self.drop(f) end
  return self.fc(f)
end

function SlowFast:_short()
  return fmt("SlowFast width %d/%d, alpha %d, %d stages", self.width, self.fast_width, self.alpha, self.stages)
end

return M
