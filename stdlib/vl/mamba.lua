-- vl.mamba — the Mamba block (Gu & Dao 2023) and Vision Mamba (Vim, Zhu et
-- al. 2024), laid out as the reference code (state-spaces/mamba
-- mamba_simple.Mamba; hustvl/Vim models_mamba.VisionMamba) so that their
-- state_dicts, converted to safetensors, load with no renaming:
--
--   local mamba = require "vl.mamba"
--   local block = mamba.Mamba{ d_model = 64 }         -- also nn.Mamba
--   local y = block(x)                                -- [B, L, 64] -> [B, L, 64]
--   local cache = block:new_cache(B)                  -- streaming: one token at a time
--   local y_t = block:step(x_t, cache)                -- [B, 64] -> [B, 64]
--   local vim = mamba.vim_small{ image_size = 28, patch_size = 7, in_channels = 1, num_classes = 10 }
--   local logits = vim(images)                        -- [N, C, H, W] -> [N, num_classes]
--
-- Keys: Mamba: A_log, D, in_proj.weight, conv1d.weight [d_inner, 1, d_conv],
-- conv1d.bias, x_proj.weight, dt_proj.weight/bias, out_proj.weight (and with
-- bimamba: A_b_log, D_b, conv1d_b.*, x_proj_b.*, dt_proj_b.*). VisionMamba:
-- cls_token, pos_embed, patch_embed.proj.*, layers.<i>.mixer.*,
-- layers.<i>.norm.weight, norm_f.weight, head.*.
--
-- The scan and the short convolution run on vl.selective_scan /
-- vl.causal_conv1d (fused C kernels, ops/ssm.c). Where this build lacks them
-- the block falls back to mamba.selective_scan_ref / mamba.causal_conv1d_ref:
-- plain vl ops in a loop over time (the reference's selective_scan_ref),
-- differentiable through autograd but O(len) Lua calls and (B, D, L, N)
-- temporaries.
local vl = require "vl"
local nn = require "vl.nn"
local util = require "vl.nn.util"

local M = {}

local fmt = string.format
local shape_str, check_int = util.shape_str, util.check_int

-- ---------------------------------------------------------------------------
-- Reference (fallback) scan and convolution
-- ---------------------------------------------------------------------------

--- mamba.selective_scan_ref(u, delta, A, B, C, {D, z, delta_bias, delta_softplus, return_last_state})
-- The reference selective_scan_ref with vl ops: u, delta, z [b, d, l];
-- A [d, n]; B, C [b, n, l] (input-dependent); D, delta_bias [d]. Returns y
-- [b, d, l] (and the last state [b, d, n] with return_last_state). Slow:
-- the fallback used while vl.selective_scan is missing.
function M.selective_scan_ref(u, delta, A, B, C, opts)
  opts = opts or {}
  if u:dim() ~= 3 or delta:dim() ~= 3 or A:dim() ~= 2 or B:dim() ~= 3 or C:dim() ~= 3 then
    error(fmt("selective_scan_ref: expected u, delta [b, d, l], A [d, n], B, C [b, n, l], got %s %s %s %s %s",
      shape_str(u.shape), shape_str(delta.shape), shape_str(A.shape), shape_str(B.shape), shape_str(C.shape)), 2)
  end
  local b, d, l = u:size(1), u:size(2), u:size(3)
  local n = A:size(2)
  if opts.delta_bias then delta = delta + opts.delta_bias:view(d, 1) end
  if opts.delta_softplus then delta = vl.softplus(delta) end
  -- time-major copies, so that each step reads a contiguous [b, d] / [b, n]
  -- slice (and the backward of a select stays O(b d l), not O(b d l n))
  local dt = delta:permute(3, 1, 2):contiguous()                              -- [l, b, d]
  local du = (delta * u):permute(3, 1, 2):contiguous()
  local Bt = B:permute(3, 1, 2):contiguous():unsqueeze(3)                     -- [l, b, 1, n]
  local Ct = C:permute(3, 1, 2):contiguous():unsqueeze(3)
  local Ad = A:view(1, d, n)
  local x = vl.zeros({ b, d, n }, { dtype = u.dtype })
  local ys = {}
  for t = 1, l do
    x = vl.exp(dt:select(1, t):unsqueeze(3) * Ad) * x + du:select(1, t):unsqueeze(3) * Bt:select(1, t)
    ys[t] = (x * Ct:select(1, t)):sum(3)
  end
  local y = l > 0 and vl.stack(ys, 3) or vl.zeros({ b, d, 0 }, { dtype = u.dtype })
  if opts.D then y = y + u * opts.D:view(d, 1) end
  if opts.z then y = y * vl.silu(opts.z) end
  if opts.return_last_state then return y, x end
  return y
end

--- mamba.causal_conv1d_ref(x, weight, bias, {activation}) -- x [b, d, l],
-- weight [d, width]: the depthwise causal convolution (left zero padding)
-- with vl.conv1d; activation "silu" or nil.
function M.causal_conv1d_ref(x, weight, bias, opts)
  local d, k = weight:size(1), weight:size(2)
  local y = vl.conv1d(x, weight:view(d, 1, k), bias, { padding = k - 1, groups = d }):narrow(3, 1, x:size(3))
  if opts and opts.activation == "silu" then y = vl.silu(y) end
  return y
end

local function scan_op() return vl.selective_scan or M.selective_scan_ref end
local function conv_op() return vl.causal_conv1d or M.causal_conv1d_ref end

-- One step of the reference recurrence (fallback for vl.selective_scan_step).
local function scan_step_ref(state, u, delta, A, B, C, opts)
  local d = A:size(1)
  if opts.delta_bias then delta = delta + opts.delta_bias end
  if opts.delta_softplus then delta = vl.softplus(delta) end
  state = state * vl.exp(delta:unsqueeze(3) * A:unsqueeze(1)) + (delta * u):unsqueeze(3) * B:unsqueeze(2)
  local y = (state * C:unsqueeze(2)):sum(3)
  if opts.D then y = y + u * opts.D:view(1, d) end
  if opts.z then y = y * vl.silu(opts.z) end
  return state, y
end

-- One step of the causal convolution: conv_state [b, d, width] holds the
-- last `width` inputs (oldest first).
local function conv_step_ref(x, conv_state, weight, bias, opts)
  local d, k = weight:size(1), weight:size(2)
  conv_state = vl.cat({ conv_state:narrow(3, 2, k - 1), x:unsqueeze(3) }, 3)
  local y = (conv_state * weight:view(1, d, k)):sum(3)
  if bias then y = y + bias end
  if opts and opts.activation == "silu" then y = vl.silu(y) end
  return y, conv_state
end

-- ---------------------------------------------------------------------------
-- Mamba block
-- ---------------------------------------------------------------------------

local Mamba = nn.Module:extend("Mamba")
M.Mamba = Mamba

local MAMBA_DEFAULTS = {
  d_state = 16, d_conv = 4, expand = 2, dt_rank = "auto", dt_min = 0.001, dt_max = 0.1, dt_init = "random",
  dt_scale = 1.0, dt_init_floor = 1e-4, conv_bias = true, bias = false, bimamba = false, dtype = "float32",
}
local MAMBA_KNOWN = { d_model = true }
for k in pairs(MAMBA_DEFAULTS) do MAMBA_KNOWN[k] = true end

-- dt_proj's reference init: weight uniform(+-dt_rank^-0.5 * dt_scale) (or
-- constant), bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max]
-- and at least dt_init_floor.
local function init_dt_proj(lin, c)
  local std = c.dt_rank ^ -0.5 * c.dt_scale
  if c.dt_init == "constant" then nn.init.constant_(lin.weight, std) else nn.init.uniform_(lin.weight, -std, std) end
  local r = vl.rand({ lin.out_features }, { dtype = "float64" }):totable()
  local lo, hi = math.log(c.dt_min), math.log(c.dt_max)
  local inv = {}
  for i = 1, #r do
    local dt = math.max(math.exp(r[i] * (hi - lo) + lo), c.dt_init_floor)
    inv[i] = dt + math.log(1 - math.exp(-dt)) -- softplus^-1(dt) = dt + log(-expm1(-dt))
  end
  vl.no_grad(function() lin.bias:copy_(vl.tensor(inv, { dtype = lin.bias.dtype })) end)
end

local function a_log_init(d_inner, d_state, dtype)
  local row = vl.arange(1, d_state + 1, { dtype = "float64" }):log()
  return nn.Parameter(row:view(1, d_state):expand({ d_inner, d_state }):contiguous():to(dtype))
end

-- The parameters of one scan direction: conv1d, x_proj, dt_proj (suffix ""
-- or "_b"); A_log/D are created by the caller so that the key order is the
-- reference's (own parameters first, then children in creation order).
local function direction(self, c, suffix)
  local di = self.d_inner
  self["conv1d" .. suffix] = nn.Conv1d(di, di, c.d_conv,
    { groups = di, padding = c.d_conv - 1, bias = c.conv_bias, dtype = c.dtype })
  self["x_proj" .. suffix] = nn.Linear(di, c.dt_rank + 2 * c.d_state, { bias = false, dtype = c.dtype })
  local dt = nn.Linear(c.dt_rank, di, { bias = true, dtype = c.dtype })
  init_dt_proj(dt, c)
  self["dt_proj" .. suffix] = dt
end

--- mamba.Mamba{d_model, d_state = 16, d_conv = 4, expand = 2, dt_rank = "auto", dt_min = 0.001,
--   dt_max = 0.1, dt_init = "random", dt_scale = 1, dt_init_floor = 1e-4, conv_bias = true, bias = false,
--   bimamba = false, dtype} (also nn.Mamba)
-- The reference block: in_proj (d_model -> 2 d_inner, d_inner = expand *
-- d_model), depthwise causal conv1d + SiLU, x_proj -> (dt [dt_rank], B, C
-- [d_state]), dt_proj, the selective scan with A = -exp(A_log), D, gate
-- SiLU(z), softplus(dt + dt_proj.bias); out_proj. dt_rank "auto" is
-- ceil(d_model / 16). bimamba = true adds Vim's "v2" backward branch
-- (A_b_log, D_b, conv1d_b, x_proj_b, dt_proj_b) on the flipped sequence;
-- the two directions are averaged before out_proj.
function Mamba:init(cfg)
  local cls = "Mamba"
  if type(cfg) == "number" then cfg = { d_model = cfg } end
  if type(cfg) ~= "table" then error(fmt("%s: expected a table of options, got %s", cls, type(cfg)), 3) end
  for k in pairs(cfg) do
    if not MAMBA_KNOWN[k] then error(fmt("%s: unknown option '%s'", cls, tostring(k)), 3) end
  end
  local c = {}
  for k, v in pairs(MAMBA_DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do c[k] = v end
  if c.d_model == nil then error(cls .. ": option 'd_model' is required", 3) end
  c.d_model = check_int(c.d_model, "d_model", cls, 1)
  c.d_state = check_int(c.d_state, "d_state", cls, 1)
  c.d_conv = check_int(c.d_conv, "d_conv", cls, 1)
  if type(c.expand) ~= "number" or c.expand <= 0 or (c.expand * c.d_model) % 1 ~= 0 then
    error(fmt("%s: expand * d_model must be a positive integer, got expand %s", cls, tostring(c.expand)), 3)
  end
  if c.dt_rank == "auto" then
    c.dt_rank = (c.d_model + 15) // 16
  else
    c.dt_rank = check_int(c.dt_rank, "dt_rank", cls, 1)
  end
  if not (type(c.dt_min) == "number" and type(c.dt_max) == "number" and c.dt_min > 0 and c.dt_max >= c.dt_min) then
    error(fmt("%s: need 0 < dt_min <= dt_max, got dt_min %s, dt_max %s", cls, tostring(c.dt_min),
      tostring(c.dt_max)), 3)
  end
  if c.dt_init ~= "random" and c.dt_init ~= "constant" then
    error(fmt("%s: dt_init must be \"random\" or \"constant\", got %s", cls, tostring(c.dt_init)), 3)
  end
  self.config = c
  self.d_model, self.d_state, self.d_conv, self.dt_rank = c.d_model, c.d_state, c.d_conv, c.dt_rank
  self.d_inner = math.tointeger(c.expand * c.d_model)
  self.bimamba = c.bimamba and true or false
  local di = self.d_inner
  self.A_log = a_log_init(di, c.d_state, c.dtype)
  self.D = nn.Parameter(vl.ones({ di }, { dtype = c.dtype }))
  if self.bimamba then
    self.A_b_log = a_log_init(di, c.d_state, c.dtype)
    self.D_b = nn.Parameter(vl.ones({ di }, { dtype = c.dtype }))
  end
  self.in_proj = nn.Linear(c.d_model, 2 * di, { bias = c.bias, dtype = c.dtype })
  direction(self, c, "")
  if self.bimamba then direction(self, c, "_b") end
  self.out_proj = nn.Linear(di, c.d_model, { bias = c.bias, dtype = c.dtype })
end

function Mamba:_short()
  return fmt("%s %d (d_state %d%s)", self.__name, self.d_model, self.d_state, self.bimamba and ", bidirectional" or "")
end

function Mamba:extra_repr()
  return fmt("d_model=%d, d_state=%d, d_conv=%d, d_inner=%d, dt_rank=%d%s", self.d_model, self.d_state, self.d_conv,
    self.d_inner, self.dt_rank, self.bimamba and ", bimamba=v2" or "")
end

-- One direction: x, z [B, d_inner, L] -> y [B, d_inner, L] (gated).
function Mamba:_scan(x, z, suffix)
  local conv, xp, dtp = self["conv1d" .. suffix], self["x_proj" .. suffix], self["dt_proj" .. suffix]
  local A_log, D = self[suffix == "" and "A_log" or "A_b_log"], self[suffix == "" and "D" or "D_b"]
  local di, N, R = self.d_inner, self.d_state, self.dt_rank
  x = conv_op()(x, conv.weight:view(di, self.d_conv), conv.bias, { activation = "silu" })
  local dbl = xp(x:transpose(2, 3))                                         -- [B, L, R + 2N]
  local delta = vl.linear(dbl:narrow(3, 1, R), dtp.weight):transpose(2, 3)  -- [B, d_inner, L]
  local Bm = dbl:narrow(3, R + 1, N):transpose(2, 3)                        -- [B, N, L]
  local Cm = dbl:narrow(3, R + N + 1, N):transpose(2, 3)
  local A = -vl.exp(A_log)
  return scan_op()(x, delta:contiguous(), A, Bm:contiguous(), Cm:contiguous(),
    { D = D, z = z, delta_bias = dtp.bias, delta_softplus = true })
end

--- block:forward(x) -> [B, L, d_model]; x [B, L, d_model].
function Mamba:forward(x)
  util.check_input(self, x)
  if x:dim() ~= 3 or x:size(3) ~= self.d_model then
    self:_fail("expected input [B, L, %d], got shape %s", self.d_model, shape_str(x.shape))
  end
  local di = self.d_inner
  local xz = self.in_proj(x):transpose(2, 3)                                -- [B, 2 d_inner, L]
  local xs = xz:narrow(2, 1, di):contiguous()
  local z = xz:narrow(2, di + 1, di):contiguous()
  local y = self:_scan(xs, z, "")
  if self.bimamba then
    local yb = self:_scan(xs:flip(3), z:flip(3), "_b")
    y = (y + yb:flip(3)) * 0.5
  end
  return self.out_proj(y:transpose(2, 3))
end

--- block:new_cache(batch) -> {conv_state [batch, d_inner, d_conv], ssm_state
-- [batch, d_inner, d_state], seqlen = 0}: zero state for block:step.
function Mamba:new_cache(batch)
  batch = check_int(batch, "batch", self:_short(), 1)
  local dt = self.A_log.dtype
  return {
    conv_state = vl.zeros({ batch, self.d_inner, self.d_conv }, { dtype = dt }),
    ssm_state = vl.zeros({ batch, self.d_inner, self.d_state }, { dtype = dt }),
    seqlen = 0,
  }
end

--- block:step(x_t, cache) -> y_t: one token ([B, d_model] or [B, 1, d_model],
-- output of the same shape) with constant memory; updates cache (from
-- block:new_cache) in place. A sequence fed token by token gives
-- block:forward's outputs. Unidirectional blocks only.
function Mamba:step(x, cache)
  util.check_input(self, x)
  if self.bimamba then self:_fail("step needs a unidirectional block (the backward branch sees the future)") end
  local squeezed = x:dim() == 3
  if squeezed then
    if x:size(2) ~= 1 then self:_fail("step takes one token, got input of shape %s", shape_str(x.shape)) end
    x = x:select(2, 1)
  end
  if x:dim() ~= 2 or x:size(2) ~= self.d_model then
    self:_fail("step expects a token [B, %d] or [B, 1, %d], got shape %s", self.d_model, self.d_model,
      shape_str(x.shape))
  end
  if type(cache) ~= "table" or not vl.is_tensor(cache.conv_state) or not vl.is_tensor(cache.ssm_state) then
    self:_fail("step needs a cache from new_cache(batch), got %s", type(cache))
  end
  local B = x:size(1)
  if cache.ssm_state:size(1) ~= B then
    self:_fail("cache is for batch %d, input has batch %d", cache.ssm_state:size(1), B)
  end
  local di, N, R = self.d_inner, self.d_state, self.dt_rank
  local xz = self.in_proj(x)
  local xs, z = xz:narrow(2, 1, di), xz:narrow(2, di + 1, di)
  local w = self.conv1d.weight:view(di, self.d_conv)
  local conv_step = vl.causal_conv1d_step or conv_step_ref
  local xc
  xc, cache.conv_state = conv_step(xs:contiguous(), cache.conv_state, w, self.conv1d.bias, { activation = "silu" })
  local dbl = self.x_proj(xc)
  local delta = vl.linear(dbl:narrow(2, 1, R), self.dt_proj.weight)
  local Bt, Ct = dbl:narrow(2, R + 1, N):contiguous(), dbl:narrow(2, R + N + 1, N):contiguous()
  local A = -vl.exp(self.A_log)
  local scan_step = vl.selective_scan_step or scan_step_ref
  local y
  cache.ssm_state, y = scan_step(cache.ssm_state, xc, delta, A, Bt, Ct,
    { D = self.D, z = z:contiguous(), delta_bias = self.dt_proj.bias, delta_softplus = true })
  cache.seqlen = (cache.seqlen or 0) + 1
  local out = self.out_proj(y)
  if squeezed then out = out:unsqueeze(2) end
  return out
end

nn.Mamba = nn.Mamba or Mamba

-- ---------------------------------------------------------------------------
-- Vision Mamba
-- ---------------------------------------------------------------------------

--- mamba.Block(d_model, mixer_cfg, {drop_path = 0, eps = 1e-5}) -- Vim's
-- Block (add, then norm): residual = residual + drop_path(hidden) (or the
-- input, first block); hidden = mixer(norm(residual)). Children mixer
-- (bidirectional Mamba), norm (RMSNorm).
local Block = nn.Module:extend("MambaBlock")
M.Block = Block
function Block:init(d_model, mixer_cfg, opts)
  opts = opts or {}
  self.d_model = d_model
  self.mixer = Mamba(mixer_cfg)
  self.norm = nn.RMSNorm(d_model, { eps = opts.eps or 1e-5 })
  if (opts.drop_path or 0) > 0 then self.drop_path = nn.DropPath(opts.drop_path) end
end
function Block:_short() return fmt("MambaBlock %d", self.d_model) end

--- block:forward(hidden, residual) -> hidden, residual
function Block:forward(hidden, residual)
  util.check_input(self, hidden)
  if residual == nil then
    residual = hidden
  else
    local dp = self.drop_path
    residual = residual + (dp and dp(hidden) or hidden)
  end
  return self.mixer(self.norm(residual)), residual
end

local VisionMamba = nn.Module:extend("VisionMamba")
M.VisionMamba = VisionMamba

local VIM_DEFAULTS = {
  in_channels = 3, num_classes = 1000, d_state = 16, d_conv = 4, expand = 2, drop_path = 0, drop_rate = 0,
  eps = 1e-5,
}
local VIM_KNOWN = { image_size = true, patch_size = true, d_model = true, depth = true, dt_rank = true }
for k in pairs(VIM_DEFAULTS) do VIM_KNOWN[k] = true end

--- mamba.VisionMamba{image_size, patch_size, in_channels = 3, num_classes = 1000, d_model, depth,
--   d_state = 16, d_conv = 4, expand = 2, dt_rank = "auto", drop_path = 0, drop_rate = 0, eps = 1e-5}
-- Vim (models_mamba.VisionMamba with rms_norm, bimamba "v2", divided
-- output, absolute position embedding, middle class token): patch_embed.proj
-- (Conv2d in_channels -> d_model, kernel and stride patch_size), the class
-- token inserted at position floor(M / 2) + 1 of the M patch tokens,
-- pos_embed, depth Blocks (stochastic-depth rates rising linearly to
-- drop_path), norm_f (RMSNorm) on residual + last hidden, head on the class
-- token. Init as Vim: pos_embed, cls_token and head weight trunc-normal
-- std 0.02, Linear biases zero (dt_proj's kept), out_proj weights
-- kaiming-uniform / sqrt(depth).
function VisionMamba:init(cfg)
  local cls = "VisionMamba"
  if type(cfg) ~= "table" then error(fmt("%s: expected a table of options, got %s", cls, type(cfg)), 3) end
  for k in pairs(cfg) do
    if not VIM_KNOWN[k] then error(fmt("%s: unknown option '%s'", cls, tostring(k)), 3) end
  end
  local c = {}
  for k, v in pairs(VIM_DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do c[k] = v end
  for _, k in ipairs({ "image_size", "patch_size", "d_model", "depth" }) do
    if c[k] == nil then error(fmt("%s: option '%s' is required", cls, k), 3) end
    c[k] = check_int(c[k], k, cls, 1)
  end
  c.in_channels = check_int(c.in_channels, "in_channels", cls, 1)
  c.num_classes = check_int(c.num_classes, "num_classes", cls, 1)
  if c.image_size % c.patch_size ~= 0 then
    error(fmt("%s: image_size (%d) must be divisible by patch_size (%d)", cls, c.image_size, c.patch_size), 3)
  end
  for _, k in ipairs({ "drop_path", "drop_rate" }) do
    local p = c[k]
    if type(p) ~= "number" or p ~= p or p < 0 or p > 1 then
      error(fmt("%s: %s must be a number in [0, 1], got %s", cls, k, tostring(p)), 3)
    end
  end
  self.config = c
  self.image_size, self.patch_size, self.d_model, self.depth = c.image_size, c.patch_size, c.d_model, c.depth
  self.in_channels, self.num_classes = c.in_channels, c.num_classes
  local d, grid = c.d_model, c.image_size // c.patch_size
  self.num_patches = grid * grid
  self.token_position = self.num_patches // 2 + 1 -- 1-based (Vim: M // 2, 0-based)
  self.cls_token = nn.Parameter(vl.zeros({ 1, 1, d }))
  self.pos_embed = nn.Parameter(vl.zeros({ 1, self.num_patches + 1, d }))
  self.patch_embed = nn.Module()
  self.patch_embed.proj = nn.Conv2d(c.in_channels, d, c.patch_size, { stride = c.patch_size })
  self.pos_drop = nn.Dropout(c.drop_rate)
  local list = {}
  for i = 1, c.depth do
    local rate = c.depth > 1 and c.drop_path * (i - 1) / (c.depth - 1) or c.drop_path
    list[i] = Block(d, { d_model = d, d_state = c.d_state, d_conv = c.d_conv, expand = c.expand,
      dt_rank = c.dt_rank, bimamba = true }, { drop_path = rate, eps = c.eps })
  end
  self.layers = nn.ModuleList(list)
  self.norm_f = nn.RMSNorm(d, { eps = c.eps })
  self.head = nn.Linear(d, c.num_classes)

  -- Vim's init
  nn.init.trunc_normal_(self.pos_embed, { std = 0.02 })
  nn.init.trunc_normal_(self.cls_token, { std = 0.02 })
  nn.init.trunc_normal_(self.head.weight, { std = 0.02 })
  nn.init.zeros_(self.head.bias)
  for i = 1, c.depth do
    local mx = self.layers[i].mixer
    for _, lin in ipairs({ mx.in_proj, mx.x_proj, mx.out_proj, mx.x_proj_b }) do
      if lin.bias then nn.init.zeros_(lin.bias) end
    end
    nn.init.kaiming_uniform_(mx.out_proj.weight, { a = math.sqrt(5) })
    vl.no_grad(function() mx.out_proj.weight:copy_(mx.out_proj.weight / math.sqrt(c.depth)) end)
  end
end

function VisionMamba:_short() return fmt("VisionMamba %dpx/%d", self.image_size, self.patch_size) end

function VisionMamba:extra_repr()
  local c = self.config
  return fmt("image_size=%d, patch_size=%d, d_model=%d, depth=%d, d_state=%d", c.image_size, c.patch_size,
    c.d_model, c.depth, c.d_state)
end

--- model:features(x) -> [N, M + 1, d_model]: norm_f of the last residual
-- stream (patch tokens row by row, the class token at token_position).
function VisionMamba:features(x)
  util.check_input(self, x)
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels or x:size(3) ~= self.image_size or
      x:size(4) ~= self.image_size then
    self:_fail("expected images [N, %d, %d, %d], got shape %s", self.in_channels, self.image_size, self.image_size,
      shape_str(x.shape))
  end
  local N, d, tp = x:size(1), self.d_model, self.token_position
  local t = self.patch_embed.proj(x):reshape({ N, d, self.num_patches }):transpose(2, 3)
  local parts = {}
  if tp > 1 then parts[#parts + 1] = t:narrow(2, 1, tp - 1) end
  parts[#parts + 1] = self.cls_token:expand({ N, 1, d })
  if tp <= self.num_patches then parts[#parts + 1] = t:narrow(2, tp, self.num_patches - tp + 1) end
  t = self.pos_drop(vl.cat(parts, 2) + self.pos_embed)
  local hidden, residual = t, nil
  for i = 1, #self.layers do
    local block = self.layers[i]
    local ok, h, r = pcall(block, hidden, residual)
    if not ok then error(self:_short() .. " > " .. nn._child_error(self.layers, i, block, h), 0) end
    hidden, residual = h, r
  end
  local dp = self.layers[#self.layers].drop_path
  residual = residual + (dp and dp(hidden) or hidden)
  return self.norm_f(residual)
end

--- model:forward(x) -> logits [N, num_classes]; x [N, in_channels, image_size, image_size].
function VisionMamba:forward(x)
  return self.head(self:features(x):select(2, self.token_position))
end

-- ---------------------------------------------------------------------------
-- Presets (Vim sizes; 224x224 images, patch 16, 1000 classes unless overridden)
-- ---------------------------------------------------------------------------

M.presets = {
  vim_tiny = { image_size = 224, patch_size = 16, d_model = 192, depth = 24 },
  vim_small = { image_size = 224, patch_size = 16, d_model = 384, depth = 24 },
}

--- mamba.vim_tiny([overrides]), mamba.vim_small(...)
util.add_presets(M, "mamba", M.presets, VisionMamba)

return M
