-- vl.video — video models: TSN (temporal segment networks, optionally with
-- TSM's temporal shift), two-stream late fusion (RGB + stacked optical
-- flow), TimeSformer's divided space-time attention block and a small
-- TimeSformer built from it, plus the 3-D CNNs of vl.video.cnn3d (C3D,
-- R2Plus1D, SlowFast), merged into this table.
--
--   local video = require "vl.video"
--   local tsn = video.TSN{backbone = "small_cnn", num_segments = 3, num_classes = 10}
--   local logits = tsn(x)                  -- x [B, S, C, H, W]
--   local tf = video.TimeSformer{img_size = 32, patch_size = 8, frames = 8, dim = 64,
--                                depth = 2, heads = 4, num_classes = 10}
--   local logits = tf(clip)                -- clip [B, C, T, H, W]
--
-- The C functions of the video namespace (media I/O, frame interpolation)
-- are registered into the same table vl.video by vm/; this file extends it.
-- Modules follow vl.nn's conventions (parameters only, autograd from the
-- ops). TimeSformer and its block use the parameter names of
-- facebookresearch/TimeSformer (norm1, attn.qkv, attn.proj, temporal_norm1,
-- temporal_attn.*, temporal_fc, norm2, mlp.fc1, mlp.fc2; patch_embed.proj,
-- cls_token, pos_embed, time_embed, blocks.N, norm, head).
local vl = require "vl"
local nn = require "vl.nn"
local util = require "vl.nn.util"

local M = vl.video
if M == nil then
  M = {}
  vl.video = M
end

local fmt = string.format
local is_tensor = vl.is_tensor
local shape_str, check_int = util.shape_str, util.check_int

local function check_p(p, what, cls)
  if type(p) ~= "number" or p ~= p or p < 0 or p > 1 then
    error(fmt("%s: %s must be a number in [0, 1], got %s", cls, what, tostring(p)), 4)
  end
  return p
end

local function check_opts(cfg, cls, known)
  if type(cfg) ~= "table" then error(fmt("%s: expected a table of options, got %s", cls, type(cfg)), 4) end
  for k in pairs(cfg) do
    if not known[k] then error(fmt("%s: unknown option '%s'", cls, tostring(k)), 4) end
  end
end

local function set_of(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

-- ---------------------------------------------------------------------------
-- TemporalShift (TSM)
-- ---------------------------------------------------------------------------

--- video.TemporalShift{segments, fold_div = 8} -- vl.temporal_shift as a
-- module: x [N*T, C, ...] (T = segments, frames of one clip consecutive);
-- channels [1, C/fold_div] take the next frame, the next C/fold_div the
-- previous frame, zero-filled at the clip ends. TSN sets `segments` on the
-- TemporalShift modules of its backbone.
local TemporalShift = nn.Module:extend("TemporalShift")
M.TemporalShift = TemporalShift
function TemporalShift:init(opts)
  opts = opts or {}
  check_opts(opts, "TemporalShift", { segments = true, fold_div = true })
  if opts.segments ~= nil then self.segments = check_int(opts.segments, "segments", "TemporalShift", 1) end
  self.fold_div = check_int(opts.fold_div or 8, "fold_div", "TemporalShift", 1)
end
function TemporalShift:extra_repr()
  return fmt("segments=%s, fold_div=%d", tostring(self.segments), self.fold_div)
end
function TemporalShift:forward(x)
  util.check_input(self, x)
  if self.segments == nil then
    self:_fail("segments is not set (give it, or use the module inside a video.TSN backbone)")
  end
  return vl.temporal_shift(x, { segments = self.segments, fold_div = self.fold_div })
end

-- ---------------------------------------------------------------------------
-- SmallCNN: the 2-D backbone preset
-- ---------------------------------------------------------------------------

--- video.SmallCNN{in_channels = 3, widths = {16, 32, 64}, tsm = false, fold_div = 8}
-- -> module [N, in_channels, H, W] -> features [N, widths[#widths]]
-- (field out_features). One stage per width: Conv2d 3x3 (padding 1,
-- no bias), BatchNorm2d, ReLU, then MaxPool2d(2) between stages; global
-- average pooling at the end. With tsm, a TemporalShift precedes the
-- convolution of every stage but the first (TSM's in-place shift). All
-- layers sit in one Sequential `features` (keys features.0.weight, ...;
-- a TemporalShift takes a slot but has no state).
local SmallCNN = nn.Module:extend("SmallCNN")
M.SmallCNN = SmallCNN
function SmallCNN:init(opts)
  local cls = "SmallCNN"
  opts = opts or {}
  check_opts(opts, cls, set_of({ "in_channels", "widths", "tsm", "fold_div", "segments" }))
  local cin = check_int(opts.in_channels or 3, "in_channels", cls, 1)
  local widths = opts.widths or { 16, 32, 64 }
  if type(widths) ~= "table" or #widths == 0 then
    error(fmt("%s: widths must be a non-empty list of integers, got %s", cls, type(widths)), 3)
  end
  self.in_channels, self.tsm = cin, opts.tsm and true or false
  local layers = {}
  for i, w in ipairs(widths) do
    w = check_int(w, fmt("widths[%d]", i), cls, 1)
    if i > 1 then
      layers[#layers + 1] = nn.MaxPool2d(2)
      if self.tsm then
        layers[#layers + 1] = TemporalShift({ segments = opts.segments, fold_div = opts.fold_div })
      end
    end
    layers[#layers + 1] = nn.Conv2d(cin, w, 3, { padding = 1, bias = false })
    layers[#layers + 1] = nn.BatchNorm2d(w)
    layers[#layers + 1] = nn.ReLU()
    cin = w
  end
  layers[#layers + 1] = nn.AdaptiveAvgPool2d(1)
  layers[#layers + 1] = nn.Flatten()
  self.features = nn.Sequential(layers)
  self.out_features = cin
end
function SmallCNN:_short() return fmt("SmallCNN %d->%d", self.in_channels, self.out_features) end
function SmallCNN:forward(x)
  util.check_input(self, x)
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels then
    self:_fail("expected images [N, %d, H, W], got shape %s", self.in_channels, shape_str(x.shape))
  end
  return self.features(x)
end

-- A backbone option: a module (its feature size from `features`, or its
-- out_features / feature_dim field) or a preset name.
local BACKBONES = { small_cnn = true }
local function make_backbone(b, in_channels, features, cls, what, extra)
  if b == nil or type(b) == "string" then
    local name = b or "small_cnn"
    if not BACKBONES[name] then
      error(fmt("%s: unknown %s preset '%s' (known: small_cnn)", cls, what, name), 4)
    end
    local o = { in_channels = in_channels }
    for k, v in pairs(extra or {}) do o[k] = v end
    local m = SmallCNN(o)
    return m, m.out_features
  end
  if not nn.is_module(b) then
    error(fmt("%s: %s must be an nn.Module or a preset name, got %s", cls, what, type(b)), 4)
  end
  local f = features or b.out_features or b.feature_dim
  if f == nil then
    error(fmt("%s: the size of the %s's features is unknown (give %s_features, or set out_features on it)", cls,
      what, what), 4)
  end
  return b, check_int(f, what .. "_features", cls, 1)
end

-- ---------------------------------------------------------------------------
-- TSN
-- ---------------------------------------------------------------------------

--- video.TSN{backbone = "small_cnn" | module, num_segments = 3, num_classes,
--   consensus = "avg" | "max", in_channels = 3, backbone_features, dropout = 0,
--   tsm = false, fold_div = 8}
-- Temporal Segment Network (Wang et al. 2016): input [B, S, C, H, W], one
-- frame (or frame stack) per segment; the backbone maps each of the B*S
-- images to features [B*S, F], dropout then the classifier `fc`
-- (Linear F -> num_classes) gives per-segment logits, and the consensus
-- (mean over the S segments, the paper's default, taken on the logits
-- before any softmax) gives [B, num_classes]. tsm = true turns it into a
-- TSM network: the preset backbone gets TemporalShift modules, and the
-- TemporalShift modules of a given backbone get segments = num_segments
-- (a module backbone without any is an error).
local TSN = nn.Module:extend("TSN")
M.TSN = TSN
local TSN_KNOWN = set_of({ "backbone", "num_segments", "num_classes", "consensus", "in_channels",
  "backbone_features", "dropout", "tsm", "fold_div" })
function TSN:init(cfg)
  local cls = "TSN"
  check_opts(cfg, cls, TSN_KNOWN)
  if cfg.num_classes == nil then error("TSN: option 'num_classes' is required", 3) end
  self.num_classes = check_int(cfg.num_classes, "num_classes", cls, 1)
  self.num_segments = check_int(cfg.num_segments or 3, "num_segments", cls, 1)
  self.in_channels = check_int(cfg.in_channels or 3, "in_channels", cls, 1)
  self.consensus = cfg.consensus or "avg"
  if self.consensus ~= "avg" and self.consensus ~= "max" then
    error(fmt("TSN: consensus must be \"avg\" or \"max\", got %s", tostring(self.consensus)), 3)
  end
  self.tsm = cfg.tsm and true or false
  local extra = self.tsm and { tsm = true, segments = self.num_segments, fold_div = cfg.fold_div } or nil
  local bb, f = make_backbone(cfg.backbone, self.in_channels, cfg.backbone_features, cls, "backbone", extra)
  self.backbone = bb
  if self.tsm and nn.is_module(cfg.backbone) then
    local n = 0
    for _, m in ipairs(bb:modules()) do
      if m:is_a(TemporalShift) then
        m.segments = self.num_segments
        n = n + 1
      end
    end
    if n == 0 then
      error("TSN: tsm = true but the backbone has no video.TemporalShift module (insert some, or use " ..
        "backbone = \"small_cnn\")", 3)
    end
  end
  self.feature_dim = f
  self.dropout = nn.Dropout(check_p(cfg.dropout or 0, "dropout", cls))
  self.fc = nn.Linear(f, self.num_classes)
end
function TSN:_short() return fmt("TSN %d segments", self.num_segments) end
function TSN:extra_repr()
  return fmt("num_segments=%d, num_classes=%d, consensus=%s%s", self.num_segments, self.num_classes,
    self.consensus, self.tsm and ", tsm=true" or "")
end

--- tsn:segment_logits(x) -> [B, S, num_classes]: the per-segment logits
-- before the consensus.
function TSN:segment_logits(x)
  util.check_input(self, x)
  local S = self.num_segments
  if x:dim() ~= 5 or x:size(2) ~= S or x:size(3) ~= self.in_channels then
    self:_fail("expected input [B, %d, %d, H, W] (batch, segments, channels, height, width), got shape %s", S,
      self.in_channels, shape_str(x.shape))
  end
  local B = x:size(1)
  local y = x:reshape({ B * S, x:size(3), x:size(4), x:size(5) })
  local ok, f = pcall(self.backbone, y)
  if not ok then error(self:_short() .. " > backbone: " .. tostring(f), 0) end
  if f:dim() ~= 2 or f:size(1) ~= B * S or f:size(2) ~= self.feature_dim then
    self:_fail("the backbone gave features of shape %s, expected [%d, %d]", shape_str(f.shape), B * S,
      self.feature_dim)
  end
  return self.fc(self.dropout(f)):reshape({ B, S, self.num_classes })
end

--- tsn:forward(x) -> logits [B, num_classes]: the consensus (mean, or max
-- with consensus = "max") of the per-segment logits.
function TSN:forward(x)
  local s = self:segment_logits(x)
  if self.consensus == "max" then return (s:max(2)) end
  return s:mean(2)
end

-- ---------------------------------------------------------------------------
-- TwoStream
-- ---------------------------------------------------------------------------

--- video.TwoStream{rgb = "small_cnn" | module, flow = "small_cnn" | module,
--   num_classes, fusion = "avg" | "concat", in_channels = 3, flow_frames = 5,
--   rgb_features, flow_features, flow_weight = 1, dropout = 0}
-- Two-stream network (Simonyan & Zisserman 2014): the spatial stream sees
-- an RGB frame [N, in_channels, H, W], the temporal stream a stack of L =
-- flow_frames optical-flow fields [N, 2L, H, W] (channels x1, y1, x2, y2,
-- ...: the horizontal and vertical components of frame 1, then frame 2...).
-- Both streams map to features. fusion = "avg" (the paper's late fusion):
-- heads rgb_fc and flow_fc give each stream's class logits; the output is
-- the weighted mean of their softmax scores, (softmax(rgb) + w *
-- softmax(flow)) / (1 + w), w = flow_weight. fusion = "concat": the two
-- feature vectors are concatenated and one head `fc` gives logits.
local TwoStream = nn.Module:extend("TwoStream")
M.TwoStream = TwoStream
local TS_KNOWN = set_of({ "rgb", "flow", "num_classes", "fusion", "in_channels", "flow_frames", "rgb_features",
  "flow_features", "flow_weight", "dropout" })
function TwoStream:init(cfg)
  local cls = "TwoStream"
  check_opts(cfg, cls, TS_KNOWN)
  if cfg.num_classes == nil then error("TwoStream: option 'num_classes' is required", 3) end
  self.num_classes = check_int(cfg.num_classes, "num_classes", cls, 1)
  self.fusion = cfg.fusion or "avg"
  if self.fusion ~= "avg" and self.fusion ~= "concat" then
    error(fmt("TwoStream: fusion must be \"avg\" or \"concat\", got %s", tostring(self.fusion)), 3)
  end
  self.in_channels = check_int(cfg.in_channels or 3, "in_channels", cls, 1)
  self.flow_frames = check_int(cfg.flow_frames or 5, "flow_frames", cls, 1)
  local w = cfg.flow_weight or 1
  if type(w) ~= "number" or not (w >= 0) then
    error(fmt("TwoStream: flow_weight must be a number >= 0, got %s", tostring(w)), 3)
  end
  self.flow_weight = w
  local rgb, fr = make_backbone(cfg.rgb, self.in_channels, cfg.rgb_features, cls, "rgb")
  local flow, ff = make_backbone(cfg.flow, 2 * self.flow_frames, cfg.flow_features, cls, "flow")
  self.rgb, self.flow = rgb, flow
  self.rgb_features, self.flow_features = fr, ff
  self.dropout = nn.Dropout(check_p(cfg.dropout or 0, "dropout", cls))
  if self.fusion == "avg" then
    self.rgb_fc = nn.Linear(fr, self.num_classes)
    self.flow_fc = nn.Linear(ff, self.num_classes)
  else
    self.fc = nn.Linear(fr + ff, self.num_classes)
  end
end
function TwoStream:_short() return fmt("TwoStream %s", self.fusion) end
function TwoStream:extra_repr()
  return fmt("num_classes=%d, fusion=%s, flow_frames=%d", self.num_classes, self.fusion, self.flow_frames)
end

local function stream(self, name, x, want_c)
  if not is_tensor(x) then self:_fail("%s input must be a tensor, got %s", name, type(x)) end
  if x:dim() ~= 4 or x:size(2) ~= want_c then
    self:_fail("%s input must be [N, %d, H, W]%s, got shape %s", name, want_c,
      name == "flow" and fmt(" (x and y flow of %d frames)", self.flow_frames) or "", shape_str(x.shape))
  end
  local ok, f = pcall(self[name], x)
  if not ok then error(fmt("%s > %s: %s", self:_short(), name, tostring(f)), 0) end
  local want = name == "rgb" and self.rgb_features or self.flow_features
  if f:dim() ~= 2 or f:size(2) ~= want then
    self:_fail("the %s stream gave features of shape %s, expected [N, %d]", name, shape_str(f.shape), want)
  end
  return self.dropout(f)
end

--- ts:forward(rgb [N, C, H, W], flow [N, 2L, H', W']) -> scores [N, K]
-- (fusion "avg": fused class probabilities, then the rgb and flow logits
-- as second and third results, for training each stream with
-- cross-entropy; fusion "concat": logits).
function TwoStream:forward(rgb, flow)
  local fr = stream(self, "rgb", rgb, self.in_channels)
  local ff = stream(self, "flow", flow, 2 * self.flow_frames)
  if fr:size(1) ~= ff:size(1) then
    self:_fail("rgb and flow inputs have different batch sizes (%d and %d)", fr:size(1), ff:size(1))
  end
  if self.fusion == "concat" then return self.fc(vl.cat({ fr, ff }, 2)) end
  local lr, lf = self.rgb_fc(fr), self.flow_fc(ff)
  local w = self.flow_weight
  local p = (vl.softmax(lr, 2) + vl.softmax(lf, 2) * w) / (1 + w)
  return p, lr, lf
end

-- ---------------------------------------------------------------------------
-- TimeSformer: divided space-time attention
-- ---------------------------------------------------------------------------

--- video.Attention(dim, heads, {qkv_bias = true, attention_dropout = 0, dropout = 0})
-- Multi-head self-attention over [N, L, dim] in timm's layout (qkv: Linear
-- dim -> 3 dim, q, k, v stacked then heads; proj: Linear dim -> dim), one
-- vl.attention call over [N, heads, L, dim/heads] views.
local Attention = nn.Module:extend("Attention")
M.Attention = Attention
function Attention:init(dim, heads, opts)
  local cls = "Attention"
  opts = opts or {}
  self.dim = check_int(dim, "dim", cls, 1)
  self.heads = check_int(heads, "heads", cls, 1)
  if self.dim % self.heads ~= 0 then
    error(fmt("%s: dim (%d) must be divisible by heads (%d)", cls, self.dim, self.heads), 3)
  end
  self.qkv = nn.Linear(self.dim, 3 * self.dim, { bias = opts.qkv_bias ~= false })
  self.attention_dropout = check_p(opts.attention_dropout or 0, "attention_dropout", cls)
  self.proj = nn.Linear(self.dim, self.dim)
  self.proj_drop = nn.Dropout(check_p(opts.dropout or 0, "dropout", cls))
end
function Attention:_short() return fmt("Attention %d, %d heads", self.dim, self.heads) end
function Attention:forward(x)
  util.check_input(self, x)
  if x:dim() ~= 3 or x:size(3) ~= self.dim then
    self:_fail("expected input [N, L, %d], got shape %s", self.dim, shape_str(x.shape))
  end
  local N, L, H = x:size(1), x:size(2), self.heads
  local qkv = self.qkv(x):reshape({ N, L, 3, H, self.dim // H }):permute({ 3, 1, 4, 2, 5 })
  local p = self.training and self.attention_dropout or 0
  local o = vl.attention(qkv:select(1, 1), qkv:select(1, 2), qkv:select(1, 3), { dropout = p })
  return self.proj_drop(self.proj(o:transpose(2, 3):reshape({ N, L, self.dim })))
end

--- video.Mlp(dim, hidden, dropout) -- fc1, GELU, dropout, fc2, dropout (timm's Mlp).
local Mlp = nn.Module:extend("Mlp")
M.Mlp = Mlp
function Mlp:init(dim, hidden, dropout)
  self.fc1 = nn.Linear(dim, hidden)
  self.act = nn.GELU()
  self.fc2 = nn.Linear(hidden, dim)
  self.drop = nn.Dropout(dropout or 0)
end
function Mlp:forward(x) return self.drop(self.fc2(self.drop(self.act(self.fc1(x))))) end

--- video.DividedSpaceTimeBlock{dim, heads, mlp_ratio = 4, dropout = 0,
--   attention_dropout = 0, drop_path = 0, qkv_bias = true, eps = 1e-6}
-- TimeSformer's block with divided space-time attention (Bertasius et al.
-- 2021). block(x, T): x [B, 1 + N*T, dim], a class token then N patches x
-- T frames, patch-major (token 1 + (n-1)*T + t is patch n of frame t, as
-- TimeSformer's "(h w t)" order). Pre-norm residual steps:
--   temporal: each patch attends over its own T frames (the class token
--     takes no part): xt = x_p + temporal_fc(drop_path(temporal_attn(
--     temporal_norm1(x_p))));
--   spatial: each frame's N patches and a copy of the class token attend
--     among themselves: r = drop_path(attn(norm1([cls, xt_frame])));
--     patches become xt + r, the class token cls + the mean over frames
--     of its T outputs;
--   MLP: x = x + drop_path(mlp(norm2(x))).
local DividedSpaceTimeBlock = nn.Module:extend("DividedSpaceTimeBlock")
M.DividedSpaceTimeBlock = DividedSpaceTimeBlock
local BLOCK_KNOWN = set_of({ "dim", "heads", "mlp_ratio", "dropout", "attention_dropout", "drop_path", "qkv_bias",
  "eps" })
function DividedSpaceTimeBlock:init(cfg)
  local cls = "DividedSpaceTimeBlock"
  check_opts(cfg, cls, BLOCK_KNOWN)
  for _, k in ipairs({ "dim", "heads" }) do
    if cfg[k] == nil then error(fmt("%s: option '%s' is required", cls, k), 3) end
  end
  local dim = check_int(cfg.dim, "dim", cls, 1)
  local heads = check_int(cfg.heads, "heads", cls, 1)
  if dim % heads ~= 0 then error(fmt("%s: dim (%d) must be divisible by heads (%d)", cls, dim, heads), 3) end
  local ratio = cfg.mlp_ratio or 4
  if type(ratio) ~= "number" or not (ratio > 0) then
    error(fmt("%s: mlp_ratio must be a number > 0, got %s", cls, tostring(ratio)), 3)
  end
  local drop = check_p(cfg.dropout or 0, "dropout", cls)
  local adrop = check_p(cfg.attention_dropout or 0, "attention_dropout", cls)
  local dp = check_p(cfg.drop_path or 0, "drop_path", cls)
  local eps = cfg.eps or 1e-6
  self.dim, self.heads = dim, heads
  local ao = { qkv_bias = cfg.qkv_bias, attention_dropout = adrop, dropout = drop }
  self.norm1 = nn.LayerNorm(dim, { eps = eps })
  self.attn = Attention(dim, heads, ao)
  self.temporal_norm1 = nn.LayerNorm(dim, { eps = eps })
  self.temporal_attn = Attention(dim, heads, ao)
  self.temporal_fc = nn.Linear(dim, dim)
  if dp > 0 then self.drop_path = nn.DropPath(dp) end
  self.norm2 = nn.LayerNorm(dim, { eps = eps })
  self.mlp = Mlp(dim, math.floor(dim * ratio), drop)
end
function DividedSpaceTimeBlock:_short()
  return fmt("DividedSpaceTimeBlock %d, %d heads", self.dim, self.heads)
end

--- block:forward(x, T) -> [B, 1 + N*T, dim]
function DividedSpaceTimeBlock:forward(x, T)
  util.check_input(self, x)
  local D = self.dim
  if x:dim() ~= 3 or x:size(3) ~= D then
    self:_fail("expected tokens [B, 1 + N*T, %d], got shape %s", D, shape_str(x.shape))
  end
  if math.type(T) ~= "integer" or T < 1 then
    self:_fail("T (the number of frames) must be a positive integer, got %s", tostring(T))
  end
  local B, L = x:size(1), x:size(2)
  if (L - 1) % T ~= 0 or L < 1 + T then
    self:_fail("%d tokens is not 1 + N*T for T = %d frames (input shape %s)", L, T, shape_str(x.shape))
  end
  local N = (L - 1) // T
  local dp = self.drop_path or function(v) return v end

  -- temporal attention: [B*N, T, D]
  local cls = x:narrow(2, 1, 1)                      -- [B, 1, D]
  local xp = x:narrow(2, 2, N * T)                   -- [B, N*T, D]
  local rt = dp(self.temporal_attn(self.temporal_norm1(xp:reshape({ B * N, T, D }))))
  local xt = xp + self.temporal_fc(rt:reshape({ B, N * T, D }))

  -- spatial attention: [B*T, 1 + N, D]
  local xs = xt:reshape({ B, N, T, D }):transpose(2, 3):reshape({ B * T, N, D })
  local cls_t = cls:expand({ B, T, D }):reshape({ B * T, 1, D })
  local rs = dp(self.attn(self.norm1(vl.cat({ cls_t, xs }, 2))))
  local rcls = rs:narrow(2, 1, 1):reshape({ B, T, D }):mean(2, true)            -- [B, 1, D]
  local rp = rs:narrow(2, 2, N):reshape({ B, T, N, D }):transpose(2, 3):reshape({ B, N * T, D })

  x = vl.cat({ cls + rcls, xt + rp }, 2)
  return x + dp(self.mlp(self.norm2(x)))
end

--- video.TimeSformer{img_size, patch_size, frames, dim, depth, heads, num_classes,
--   in_channels = 3, mlp_ratio = 4, dropout = 0, attention_dropout = 0,
--   drop_path = 0, qkv_bias = true}
-- A TimeSformer with divided space-time attention: clip [B, C, T, H, W]
-- (T = frames, H = W = img_size); each frame is cut into patches by
-- patch_embed.proj (Conv2d, kernel and stride patch_size), a class token
-- joins each frame's patches and the spatial position embedding pos_embed
-- [1, 1 + N, dim] is added; then the time embedding time_embed [1, T, dim]
-- is added to every patch's frames; depth blocks (stochastic depth rising
-- linearly to drop_path); LayerNorm `norm`; `head` on the class token.
-- Init as TimeSformer: trunc-normal(0.02) Linear weights, cls_token and
-- pos_embed, zero time_embed and biases, temporal_fc zero in every block
-- but the first.
local TimeSformer = nn.Module:extend("TimeSformer")
M.TimeSformer = TimeSformer
local TF_KNOWN = set_of({ "img_size", "patch_size", "frames", "dim", "depth", "heads", "num_classes", "in_channels",
  "mlp_ratio", "dropout", "attention_dropout", "drop_path", "qkv_bias" })
function TimeSformer:init(cfg)
  local cls = "TimeSformer"
  check_opts(cfg, cls, TF_KNOWN)
  local c = {}
  for k, v in pairs(cfg) do c[k] = v end
  for _, k in ipairs({ "img_size", "patch_size", "frames", "dim", "depth", "heads", "num_classes" }) do
    if c[k] == nil then error(fmt("%s: option '%s' is required", cls, k), 3) end
    c[k] = check_int(c[k], k, cls, 1)
  end
  c.in_channels = check_int(c.in_channels or 3, "in_channels", cls, 1)
  if c.img_size % c.patch_size ~= 0 then
    error(fmt("%s: img_size (%d) must be divisible by patch_size (%d)", cls, c.img_size, c.patch_size), 3)
  end
  if c.dim % c.heads ~= 0 then
    error(fmt("%s: dim (%d) must be divisible by heads (%d)", cls, c.dim, c.heads), 3)
  end
  local dp = check_p(c.drop_path or 0, "drop_path", cls)
  self.config = c
  local D = c.dim
  self.img_size, self.patch_size, self.frames, self.dim = c.img_size, c.patch_size, c.frames, D
  self.in_channels, self.num_classes = c.in_channels, c.num_classes
  local g = c.img_size // c.patch_size
  self.num_patches = g * g
  self.patch_embed = nn.Module()
  self.patch_embed.proj = nn.Conv2d(c.in_channels, D, c.patch_size, { stride = c.patch_size })
  self.cls_token = nn.Parameter(vl.zeros({ 1, 1, D }))
  self.pos_embed = nn.Parameter(vl.zeros({ 1, self.num_patches + 1, D }))
  self.time_embed = nn.Parameter(vl.zeros({ 1, c.frames, D }))
  self.pos_drop = nn.Dropout(check_p(c.dropout or 0, "dropout", cls))
  local blocks = {}
  for i = 1, c.depth do
    local rate = c.depth > 1 and dp * (i - 1) / (c.depth - 1) or dp
    blocks[i] = DividedSpaceTimeBlock({ dim = D, heads = c.heads, mlp_ratio = c.mlp_ratio, dropout = c.dropout,
      attention_dropout = c.attention_dropout, drop_path = rate, qkv_bias = c.qkv_bias })
  end
  self.blocks = nn.ModuleList(blocks)
  self.norm = nn.LayerNorm(D, { eps = 1e-6 })
  self.head = nn.Linear(D, c.num_classes)
  self:reset_parameters()
end

function TimeSformer:reset_parameters()
  local init = nn.init
  for _, m in ipairs(self:modules()) do
    if m:is_a(nn.Linear) then
      init.trunc_normal_(m.weight, { std = 0.02 })
      if m.bias then init.zeros_(m.bias) end
    elseif m:is_a(nn.LayerNorm) then
      init.ones_(m.weight)
      init.zeros_(m.bias)
    end
  end
  init.trunc_normal_(self.pos_embed, { std = 0.02 })
  init.trunc_normal_(self.cls_token, { std = 0.02 })
  init.zeros_(self.time_embed)
  for i = 2, #self.blocks do
    init.zeros_(self.blocks[i].temporal_fc.weight)
    init.zeros_(self.blocks[i].temporal_fc.bias)
  end
end

function TimeSformer:_short() return fmt("TimeSformer %dx%d/%d", self.frames, self.img_size, self.patch_size) end
function TimeSformer:extra_repr()
  local c = self.config
  return fmt("img_size=%d, patch_size=%d, frames=%d, dim=%d, depth=%d, heads=%d", c.img_size, c.patch_size,
    c.frames, c.dim, c.depth, c.heads)
end

--- model:tokens(x) -> [B, 1 + N*T, dim]: the embedded clip (class token,
-- then patches x frames, patch-major) that the blocks take.
function TimeSformer:tokens(x)
  util.check_input(self, x)
  local C, T, S = self.in_channels, self.frames, self.img_size
  if x:dim() ~= 5 or x:size(2) ~= C or x:size(3) ~= T or x:size(4) ~= S or x:size(5) ~= S then
    self:_fail("expected clips [B, %d, %d, %d, %d] (batch, channels, frames, height, width), got shape %s", C, T, S,
      S, shape_str(x.shape))
  end
  local B, D, N = x:size(1), self.dim, self.num_patches
  local f = x:transpose(2, 3):reshape({ B * T, C, S, S })
  local p = self.patch_embed.proj(f):reshape({ B * T, D, N }):transpose(2, 3)         -- [B*T, N, D]
  -- spatial position embedding: the patches get pos_embed[1 + n], the class token pos_embed[1]
  p = self.pos_drop(p + self.pos_embed:narrow(2, 2, N))
  local cls = self.cls_token + self.pos_embed:narrow(2, 1, 1)                          -- [1, 1, D]
  -- time embedding, then patch-major order [B, N*T, D]
  p = p:reshape({ B, T, N, D }):transpose(2, 3) + self.time_embed:reshape({ 1, 1, T, D })
  p = self.pos_drop(p):reshape({ B, N * T, D })
  return vl.cat({ self.pos_drop(cls:expand({ B, 1, D })), p }, 2)
end

--- model:features(x) -> [B, dim]: the normed class token.
function TimeSformer:features(x)
  local t = self:tokens(x)
  for i = 1, #self.blocks do t = nn.call_child(self.blocks, i, t, self.frames) end
  return self.norm(t:select(2, 1))
end

--- model:forward(x) -> logits [B, num_classes]
function TimeSformer:forward(x) return self.head(self:features(x)) end

-- ---------------------------------------------------------------------------
-- 3-D CNNs (vl.video.cnn3d: C3D, R2Plus1D, SlowFast), merged in
-- ---------------------------------------------------------------------------

for k, v in pairs(require "vl.video.cnn3d") do M[k] = v end

return M
