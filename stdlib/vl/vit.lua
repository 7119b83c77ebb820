-- vl.vit — Vision Transformer (Dosovitskiy et al. 2020), laid out as
-- torchvision's VisionTransformer so that its checkpoints, converted to
-- safetensors, load with no renaming:
--
--   local vit = require "vl.vit"
--   local model = vit.vit_tiny_16{ image_size = 28, patch_size = 4, in_channels = 1, num_classes = 10 }
--   local logits = model(images)             -- [N, C, H, W] -> [N, num_classes]
--   model:load("vit_b_16.safetensors")       -- torchvision keys, strict
--
-- Keys: class_token, conv_proj.weight/bias, encoder.pos_embedding,
-- encoder.layers.encoder_layer_<i>.{ln_1, self_attention, ln_2, mlp.0, mlp.3}.*,
-- encoder.ln.*, heads.head.*; with distillation also dist_token and
-- heads.head_dist.*; with representation_size heads.pre_logits.*.
local vl = require "vl"
local nn = require "vl.nn"
local util = require "vl.nn.util"

local M = {}

local fmt = string.format
local sqrt = math.sqrt
local shape_str, check_int = util.shape_str, util.check_int

-- ---------------------------------------------------------------------------
-- Blocks
-- ---------------------------------------------------------------------------

--- vit.MLPBlock(in_dim, mlp_dim, dropout) -- torchvision's MLPBlock: a
-- Sequential Linear(0), GELU(1), Dropout(2), Linear(3), Dropout(4);
-- xavier-uniform weights, N(0, 1e-6) biases.
local MLPBlock = nn.MLP:extend("MLPBlock")
M.MLPBlock = MLPBlock
function MLPBlock:init(in_dim, mlp_dim, dropout)
  nn.MLP.init(self, in_dim, { mlp_dim, in_dim }, { activation = nn.GELU, dropout = dropout })
  for _, m in ipairs(self:modules()) do
    if m:is_a(nn.Linear) then
      nn.init.xavier_uniform_(m.weight)
      if m.bias then nn.init.normal_(m.bias, 0, 1e-6) end
    end
  end
end

--- vit.EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, {drop_path = 0, eps = 1e-6})
-- Pre-norm block: x = x + drop_path(dropout(attn(ln_1(x)))); x = x + drop_path(mlp(ln_2(x))).
-- Children ln_1, self_attention (MultiheadAttention, batch_first), dropout,
-- ln_2, mlp (and drop_path, which has no state).
local EncoderBlock = nn.Module:extend("EncoderBlock")
M.EncoderBlock = EncoderBlock
function EncoderBlock:init(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, opts)
  opts = opts or {}
  local eps = opts.eps or 1e-6
  self.num_heads, self.hidden_dim = num_heads, hidden_dim
  self.ln_1 = nn.LayerNorm(hidden_dim, { eps = eps })
  self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, { dropout = attention_dropout,
    batch_first = true })
  self.dropout = nn.Dropout(dropout)
  self.ln_2 = nn.LayerNorm(hidden_dim, { eps = eps })
  self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)
  if (opts.drop_path or 0) > 0 then self.drop_path = nn.DropPath(opts.drop_path) end
end
function EncoderBlock:_short() return fmt("EncoderBlock %d, %d heads", self.hidden_dim, self.num_heads) end

--- block:forward(x [, maps]) -> x; x [N, L, hidden]. With a list `maps`,
-- appends this block's per-head attention weights [N, H, L, L].
function EncoderBlock:forward(x, maps)
  util.check_input(self, x)
  if x:dim() ~= 3 then self:_fail("expected input [N, L, %d], got shape %s", self.hidden_dim, shape_str(x.shape)) end
  local y = self.ln_1(x)
  local a, w = self.self_attention(y, y, y, { need_weights = maps ~= nil, average_attn_weights = false })
  if maps then maps[#maps + 1] = w end
  a = self.dropout(a)
  local dp = self.drop_path
  if dp then a = dp(a) end
  x = x + a
  local z = self.mlp(self.ln_2(x))
  if dp then z = dp(z) end
  return x + z
end

--- vit.Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, {drop_path = 0})
-- pos_embedding [1, seq_length, hidden] ~ N(0, 0.02), dropout, layers
-- (Sequential of encoder_layer_0 ...), ln. Stochastic depth rates rise
-- linearly from 0 (first block) to drop_path (last block).
local Encoder = nn.Module:extend("Encoder")
M.Encoder = Encoder
function Encoder:init(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, opts)
  opts = opts or {}
  self.pos_embedding = nn.Parameter(vl.empty({ 1, seq_length, hidden_dim }))
  nn.init.normal_(self.pos_embedding, 0, 0.02)
  self.dropout = nn.Dropout(dropout)
  local list = {}
  local dp = opts.drop_path or 0
  for i = 1, num_layers do
    local rate = num_layers > 1 and dp * (i - 1) / (num_layers - 1) or dp
    list[i] = { "encoder_layer_" .. (i - 1),
      EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, { drop_path = rate }) }
  end
  self.layers = nn.Sequential(list)
  self.ln = nn.LayerNorm(hidden_dim, { eps = 1e-6 })
  self.num_layers = num_layers
end

--- encoder:forward(x [, pos [, maps]]) -> [N, L, hidden]: x + pos (default
-- pos_embedding), dropout, the blocks, ln.
function Encoder:forward(x, pos, maps)
  util.check_input(self, x)
  pos = pos or self.pos_embedding
  if x:dim() ~= 3 or x:size(2) ~= pos:size(2) or x:size(3) ~= pos:size(3) then
    self:_fail("input of shape %s does not match pos_embedding %s ([N, seq_length, hidden_dim])",
      shape_str(x.shape), shape_str(pos.shape))
  end
  x = self.dropout(x + pos)
  for i = 1, #self.layers do
    local block = self.layers[i]
    local ok, y = pcall(block, x, maps)
    if not ok then error(nn._child_error(self.layers, i, block, y), 0) end
    x = y
  end
  return self.ln(x)
end

-- ---------------------------------------------------------------------------
-- VisionTransformer
-- ---------------------------------------------------------------------------

local VisionTransformer = nn.Module:extend("VisionTransformer")
M.VisionTransformer = VisionTransformer

local DEFAULTS = {
  in_channels = 3, num_classes = 1000, dropout = 0, attention_dropout = 0, distillation = false, drop_path = 0,
}
local KNOWN = {
  image_size = true, patch_size = true, in_channels = true, num_classes = true, hidden_dim = true,
  num_layers = true, num_heads = true, mlp_dim = true, dropout = true, attention_dropout = true,
  distillation = true, drop_path = true, representation_size = true,
}

--- vit.VisionTransformer{image_size, patch_size, in_channels = 3, num_classes = 1000,
--   hidden_dim, num_layers, num_heads, mlp_dim, dropout = 0, attention_dropout = 0,
--   distillation = false, drop_path = 0, representation_size}
-- torchvision's model: conv_proj (Conv2d in_channels -> hidden_dim, kernel
-- and stride patch_size), class_token, encoder, heads.head; its init
-- (conv_proj trunc-normal std sqrt(1/fan_in), zero head). distillation
-- adds a DeiT distillation token (dist_token, after the class token) and
-- heads.head_dist. drop_path is the last block's stochastic-depth rate.
function VisionTransformer:init(cfg)
  local cls = "VisionTransformer"
  if type(cfg) ~= "table" then error(fmt("%s: expected a table of options, got %s", cls, type(cfg)), 3) end
  for k in pairs(cfg) do
    if not KNOWN[k] then error(fmt("%s: unknown option '%s'", cls, tostring(k)), 3) end
  end
  local c = {}
  for k, v in pairs(DEFAULTS) do c[k] = v end
  for k, v in pairs(cfg) do c[k] = v end
  for _, k in ipairs({ "image_size", "patch_size", "hidden_dim", "num_layers", "num_heads", "mlp_dim" }) do
    if c[k] == nil then error(fmt("%s: option '%s' is required", cls, k), 3) end
    c[k] = check_int(c[k], k, cls, 1)
  end
  c.in_channels = check_int(c.in_channels, "in_channels", cls, 1)
  c.num_classes = check_int(c.num_classes, "num_classes", cls, 1)
  if c.image_size % c.patch_size ~= 0 then
    error(fmt("%s: image_size (%d) must be divisible by patch_size (%d)", cls, c.image_size, c.patch_size), 3)
  end
  if c.hidden_dim % c.num_heads ~= 0 then
    error(fmt("%s: hidden_dim (%d) must be divisible by num_heads (%d)", cls, c.hidden_dim, c.num_heads), 3)
  end
  for _, k in ipairs({ "dropout", "attention_dropout", "drop_path" }) do
    local p = c[k]
    if type(p) ~= "number" or p ~= p or p < 0 or p > 1 then
      error(fmt("%s: %s must be a number in [0, 1], got %s", cls, k, tostring(p)), 3)
    end
  end
  self.config = c
  self.image_size, self.patch_size, self.hidden_dim = c.image_size, c.patch_size, c.hidden_dim
  self.num_classes, self.in_channels = c.num_classes, c.in_channels
  self.distillation = c.distillation and true or false
  self.num_tokens = self.distillation and 2 or 1

  local h = c.hidden_dim
  self.conv_proj = nn.Conv2d(c.in_channels, h, c.patch_size, { stride = c.patch_size })
  self.class_token = nn.Parameter(vl.zeros({ 1, 1, h }))
  if self.distillation then
    self.dist_token = nn.Parameter(vl.empty({ 1, 1, h }))
    nn.init.trunc_normal_(self.dist_token, { std = 0.02 })
  end
  local grid = c.image_size // c.patch_size
  self.seq_length = grid * grid + self.num_tokens
  self.encoder = Encoder(self.seq_length, c.num_layers, c.num_heads, h, c.mlp_dim, c.dropout, c.attention_dropout,
    { drop_path = c.drop_path })
  local heads = {}
  if c.representation_size then
    local r = check_int(c.representation_size, "representation_size", cls, 1)
    heads[#heads + 1] = { "pre_logits", nn.Linear(h, r) }
    heads[#heads + 1] = { "act", nn.Tanh() }
    heads[#heads + 1] = { "head", nn.Linear(r, c.num_classes) }
  else
    heads[#heads + 1] = { "head", nn.Linear(h, c.num_classes) }
  end
  if self.distillation then
    heads[#heads + 1] = { "head_dist", nn.Linear(c.representation_size or h, c.num_classes) }
  end
  self.heads = nn.Sequential(heads)

  -- torchvision's init
  local fan_in = c.in_channels * c.patch_size * c.patch_size
  nn.init.trunc_normal_(self.conv_proj.weight, { std = sqrt(1 / fan_in) })
  nn.init.zeros_(self.conv_proj.bias)
  if c.representation_size then
    local pl = self.heads.pre_logits
    nn.init.trunc_normal_(pl.weight, { std = sqrt(1 / pl.in_features) })
    nn.init.zeros_(pl.bias)
  end
  nn.init.zeros_(self.heads.head.weight)
  nn.init.zeros_(self.heads.head.bias)
  if self.distillation then
    nn.init.zeros_(self.heads.head_dist.weight)
    nn.init.zeros_(self.heads.head_dist.bias)
  end
end

function VisionTransformer:_short()
  return fmt("VisionTransformer %dpx/%d", self.image_size, self.patch_size)
end

function VisionTransformer:extra_repr()
  local c = self.config
  return fmt("image_size=%d, patch_size=%d, hidden_dim=%d, num_layers=%d, num_heads=%d, mlp_dim=%d%s",
    c.image_size, c.patch_size, c.hidden_dim, c.num_layers, c.num_heads, c.mlp_dim,
    self.distillation and ", distillation=true" or "")
end

--- vit.interpolate_pos_embedding(pos, num_tokens, grid_h, grid_w) -> [1, num_tokens + gh*gw, hidden]
-- The patch part of pos ([1, num_tokens + g*g, hidden], a square grid) resized
-- to gh x gw by bicubic interpolation with align_corners (as torchvision's
-- interpolate_embeddings); the token part is kept.
function M.interpolate_pos_embedding(pos, num_tokens, gh, gw)
  local n, L, h = pos:size(1), pos:size(2), pos:size(3)
  local g = math.floor(sqrt(L - num_tokens) + 0.5)
  if n ~= 1 or g * g ~= L - num_tokens then
    error(fmt("interpolate_pos_embedding: pos_embedding of shape %s is not [1, %d + a square number, hidden]",
      shape_str(pos.shape), num_tokens), 2)
  end
  if g == gh and g == gw then return pos end
  local interp = vl.interpolate
  if interp == nil then
    error(fmt("interpolate_pos_embedding: resizing the %dx%d position grid to %dx%d needs vl.interpolate, which " ..
      "is not in this build", g, g, gh, gw), 2)
  end
  local tok = pos:narrow(2, 1, num_tokens)
  local img = pos:narrow(2, num_tokens + 1, g * g):transpose(2, 3):reshape({ 1, h, g, g })
  img = interp(img, { size = { gh, gw }, mode = "bicubic", align_corners = true })
  img = img:reshape({ 1, h, gh * gw }):transpose(2, 3)
  return vl.cat({ tok, img }, 2)
end

--- vit.interpolate_embeddings(image_size, patch_size, state_dict) -> state_dict
-- torchvision's helper: a checkpoint's encoder.pos_embedding resized for
-- a model of another image_size (one class token; the other entries are
-- shared, not copied).
function M.interpolate_embeddings(image_size, patch_size, sd, opts)
  local num_tokens = opts and opts.num_tokens or 1
  local pos = sd["encoder.pos_embedding"]
  if pos == nil then error("interpolate_embeddings: the state_dict has no 'encoder.pos_embedding'", 2) end
  local g = image_size // patch_size
  local out = {}
  for k, v in pairs(sd) do out[k] = v end
  out["encoder.pos_embedding"] = vl.no_grad(M.interpolate_pos_embedding, pos:detach(), num_tokens, g, g)
  return out
end

-- [N, C, H, W] -> tokens [N, num_tokens + gh*gw, hidden] and the position
-- embedding for that grid.
function VisionTransformer:_embed(x)
  util.check_input(self, x)
  if x:dim() ~= 4 or x:size(2) ~= self.in_channels then
    self:_fail("expected images [N, %d, H, W], got shape %s", self.in_channels, shape_str(x.shape))
  end
  local N, H, W, p = x:size(1), x:size(3), x:size(4), self.patch_size
  if H % p ~= 0 or W % p ~= 0 then
    self:_fail("image size %dx%d is not a multiple of patch_size %d", H, W, p)
  end
  local gh, gw = H // p, W // p
  local h = self.hidden_dim
  local t = self.conv_proj(x):reshape({ N, h, gh * gw }):transpose(2, 3)
  local toks = { self.class_token:expand({ N, 1, h }) }
  if self.distillation then toks[2] = self.dist_token:expand({ N, 1, h }) end
  toks[#toks + 1] = t
  t = vl.cat(toks, 2)
  local pos = self.encoder.pos_embedding
  if H ~= self.image_size or W ~= self.image_size then
    local ok, r = pcall(M.interpolate_pos_embedding, pos, self.num_tokens, gh, gw)
    if not ok then self:_fail("input %dx%d differs from image_size %d: %s", H, W, self.image_size, r) end
    pos = r
  end
  return t, pos
end

--- model:features(x [, maps]) -> [N, L, hidden]: the encoder's output
-- (tokens first: class, [distillation], then patches row by row).
function VisionTransformer:features(x, maps)
  local t, pos = self:_embed(x)
  local ok, y = pcall(self.encoder, t, pos, maps)
  if not ok then error(self:_short() .. " > " .. tostring(y), 0) end
  return y
end

--- model:forward(x) -> logits [N, num_classes]. x [N, in_channels, H, W];
-- H and W multiples of patch_size (other than image_size: the position
-- embedding is interpolated). With distillation: in training
-- (cls_logits, dist_logits), in eval their mean.
function VisionTransformer:forward(x)
  local y = self:features(x)
  local heads = self.heads
  local cls = y:select(2, 1)
  if not self.distillation then return heads(cls) end
  local function head(z)
    if self.config.representation_size then z = heads.act(heads.pre_logits(z)) end
    return heads.head(z)
  end
  local a = head(cls)
  local z = y:select(2, 2)
  if self.config.representation_size then z = heads.act(heads.pre_logits(z)) end
  local b = heads.head_dist(z)
  if self.training then return a, b end
  return (a + b) * 0.5
end

--- vit.attention_maps(model, x) -> {[N, H, L, L], ...}: each block's
-- per-head attention weights (softmax rows), computed in eval mode without
-- gradients; the model's train/eval mode is restored.
function M.attention_maps(model, x)
  if not (nn.is_module(model) and model.features) then
    error("attention_maps: expected a vit.VisionTransformer, got " .. (nn.is_module(model) and model.__name or type(model)), 2)
  end
  local was = model.training
  model:eval()
  local maps = {}
  local ok, err = pcall(vl.no_grad, function() model:features(x, maps) end)
  model:train(was)
  if not ok then error(err, 0) end
  return maps
end

-- ---------------------------------------------------------------------------
-- Presets (torchvision / DeiT sizes; 224x224 images, 1000 classes unless overridden)
-- ---------------------------------------------------------------------------

M.presets = {
  vit_tiny_16 = { image_size = 224, patch_size = 16, hidden_dim = 192, num_layers = 12, num_heads = 3, mlp_dim = 768 },
  vit_small_16 = { image_size = 224, patch_size = 16, hidden_dim = 384, num_layers = 12, num_heads = 6, mlp_dim = 1536 },
  vit_base_16 = { image_size = 224, patch_size = 16, hidden_dim = 768, num_layers = 12, num_heads = 12, mlp_dim = 3072 },
}

--- vit.vit_tiny_16([overrides]), vit.vit_small_16(...), vit.vit_base_16(...)
util.add_presets(M, "vit", M.presets, VisionTransformer)

return M
