-- vl.nn.transformer — MultiheadAttention, TransformerEncoderLayer,
-- TransformerEncoder, position embeddings (sinusoidal, learned) and DropPath.
--
-- Parameter names and layouts are PyTorch's (in_proj_weight [3E, E],
-- in_proj_bias, out_proj.weight, ...; self_attn, linear1, norm1, ...;
-- layers.0...), so state_dicts load in both directions.
--
-- Masks: the modules take PyTorch's masks (bool: true = may NOT attend;
-- float: added to the scores) and hand vl.attention its own semantics
-- (bool: true = may attend; float: additive). Attention runs as one
-- vl.attention call over [B, H, L, d] views: no per-head loops.
local vl = require "vl"
local module = require "vl.nn.module"
local layers = require "vl.nn.layers"
local containers = require "vl.nn.containers"
local init = require "vl.nn.weight_init"
local util = require "vl.nn.util"

local M = {}

local is_tensor = vl.is_tensor
local fmt = string.format
local sqrt = math.sqrt
local inf = math.huge

local Module, Parameter, is_module = module.Module, module.Parameter, module.is_module
local Linear, Dropout, LayerNorm = layers.Linear, layers.Dropout, layers.LayerNorm
local shape_str, check_int, no_grad = util.shape_str, util.check_int, util.no_grad

local function bool_str(b) return b and "true" or "false" end

local function check_p(p, what, cls)
  if type(p) ~= "number" or p ~= p or p < 0 or p > 1 then
    error(fmt("%s: %s must be a number in [0, 1], got %s", cls, what, tostring(p)), 4)
  end
  return p
end

-- ---------------------------------------------------------------------------
-- Attention core
-- ---------------------------------------------------------------------------

-- softmax(q k^T * scale + mask) v over [B, H, L, d] tensors, written out of
-- the ops (used only while vl.attention is missing from the build).
local function composed_attention(q, k, v, o)
  local scale = o.scale or 1 / sqrt(q:size(-1))
  local s = q:matmul(k:transpose(-2, -1)) * scale
  local mask = o.mask
  if mask ~= nil then
    if mask.dtype == "bool" then
      s = s:masked_fill(mask:logical_not(), -inf)
    else
      s = s + mask
    end
  end
  if o.causal then
    local lq, lk = q:size(-2), k:size(-2)
    local allowed = vl.ones({ lq, lk }, { dtype = "bool" }):tril()
    s = s:masked_fill(allowed:logical_not(), -inf)
  end
  local p = vl.softmax(s, -1)
  if o.dropout and o.dropout > 0 then p = vl.dropout(p, o.dropout) end
  local out = p:matmul(v)
  if o.need_weights then return out, p end
  return out
end

--- nn.scaled_dot_product_attention(q, k, v, {mask, causal, scale, dropout, need_weights})
-- vl.attention (q, k, v [B, H, L, d]; bool mask true = may attend, float
-- mask additive), or its composition while the fused op is not built.
function M.scaled_dot_product_attention(q, k, v, opts)
  local f = vl.attention
  if f ~= nil then return f(q, k, v, opts) end
  return composed_attention(q, k, v, opts or {})
end
local attention = M.scaled_dot_product_attention

-- ---------------------------------------------------------------------------
-- MultiheadAttention
-- ---------------------------------------------------------------------------

--- nn.MultiheadAttention(embed_dim, num_heads, {dropout = 0, bias = true,
--   batch_first = false, kdim = embed_dim, vdim = embed_dim, dtype})
-- PyTorch's layout: in_proj_weight [3E, E] and in_proj_bias [3E] (q, k, v
-- stacked), out_proj (Linear E->E); with kdim or vdim ~= embed_dim,
-- q_proj_weight [E, E], k_proj_weight [E, kdim], v_proj_weight [E, vdim]
-- instead of in_proj_weight. Init as PyTorch: xavier_uniform_ projections,
-- zero in_proj_bias and out_proj.bias.
local MultiheadAttention = Module:extend("MultiheadAttention")
M.MultiheadAttention = MultiheadAttention

function MultiheadAttention:init(embed_dim, num_heads, opts)
  opts = opts or {}
  local cls = "MultiheadAttention"
  self.embed_dim = check_int(embed_dim, "embed_dim", cls, 1)
  self.num_heads = check_int(num_heads, "num_heads", cls, 1)
  if self.embed_dim % self.num_heads ~= 0 then
    error(fmt("%s: embed_dim (%d) must be divisible by num_heads (%d)", cls, self.embed_dim, self.num_heads), 3)
  end
  self.head_dim = self.embed_dim // self.num_heads
  self.kdim = check_int(opts.kdim or self.embed_dim, "kdim", cls, 1)
  self.vdim = check_int(opts.vdim or self.embed_dim, "vdim", cls, 1)
  self.dropout = check_p(opts.dropout or 0, "dropout", cls)
  self.batch_first = opts.batch_first and true or false
  self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
  local dt = { dtype = opts.dtype or "float32" }
  local E = self.embed_dim
  if self._qkv_same_embed_dim then
    self.in_proj_weight = Parameter(vl.empty({ 3 * E, E }, dt))
  else
    self.q_proj_weight = Parameter(vl.empty({ E, E }, dt))
    self.k_proj_weight = Parameter(vl.empty({ E, self.kdim }, dt))
    self.v_proj_weight = Parameter(vl.empty({ E, self.vdim }, dt))
  end
  if opts.bias ~= false then self.in_proj_bias = Parameter(vl.empty({ 3 * E }, dt)) end
  self.out_proj = Linear(E, E, { bias = opts.bias, dtype = dt.dtype })
  self:reset_parameters()
end

function MultiheadAttention:reset_parameters()
  if self.in_proj_weight then
    init.xavier_uniform_(self.in_proj_weight)
  else
    init.xavier_uniform_(self.q_proj_weight)
    init.xavier_uniform_(self.k_proj_weight)
    init.xavier_uniform_(self.v_proj_weight)
  end
  if self.in_proj_bias then
    init.zeros_(self.in_proj_bias)
    init.zeros_(self.out_proj.bias)
  end
end

function MultiheadAttention:_short()
  return fmt("MultiheadAttention %d, %d heads", self.embed_dim, self.num_heads)
end

function MultiheadAttention:extra_repr()
  local s = fmt("embed_dim=%d, num_heads=%d", self.embed_dim, self.num_heads)
  if self.dropout ~= 0 then s = s .. fmt(", dropout=%g", self.dropout) end
  if not self._qkv_same_embed_dim then s = s .. fmt(", kdim=%d, vdim=%d", self.kdim, self.vdim) end
  if self.batch_first then s = s .. ", batch_first=true" end
  return s
end

-- Rows r0+1 .. r0+E of the stacked projections (nil-safe for the bias).
local function rows(t, r0, n)
  if t == nil then return nil end
  return t:narrow(1, r0 + 1, n)
end

-- [N, L, E] -> [N, H, L, d] view.
local function split_heads(x, H)
  local N, L, E = x:size(1), x:size(2), x:size(3)
  return x:reshape({ N, L, H, E // H }):transpose(2, 3)
end

-- A PyTorch mask (bool true = not allowed, uint8 likewise, float additive)
-- checked and shaped to broadcast against [N, H, L, S].
local function as_bool(m)
  if m.dtype == "bool" then return m end
  return m:ne(0)
end

function MultiheadAttention:_masks(attn_mask, key_padding_mask, N, L, S, batched, dtype)
  local H = self.num_heads
  local am, kpm
  if attn_mask ~= nil then
    if not is_tensor(attn_mask) then self:_fail("attn_mask must be a tensor, got %s", type(attn_mask)) end
    local sh = attn_mask.shape
    if attn_mask:dim() == 2 then
      if sh[1] ~= L or sh[2] ~= S then
        self:_fail("attn_mask of shape %s must be [%d, %d] (target length, source length)", shape_str(sh), L, S)
      end
      am = attn_mask:reshape({ 1, 1, L, S })
    elseif attn_mask:dim() == 3 then
      if sh[1] ~= N * H or sh[2] ~= L or sh[3] ~= S then
        self:_fail("attn_mask of shape %s must be [%d, %d, %d] (batch * num_heads, target length, source length)",
          shape_str(sh), N * H, L, S)
      end
      am = attn_mask:reshape({ N, H, L, S })
    else
      self:_fail("attn_mask must be 2-D [L, S] or 3-D [N * num_heads, L, S], got shape %s", shape_str(sh))
    end
  end
  if key_padding_mask ~= nil then
    if not is_tensor(key_padding_mask) then
      self:_fail("key_padding_mask must be a tensor, got %s", type(key_padding_mask))
    end
    local sh = key_padding_mask.shape
    local want = batched and { N, S } or { S }
    if not util.same_shape(sh, want) then
      self:_fail("key_padding_mask of shape %s must be %s (%s)", shape_str(sh), shape_str(want),
        batched and "batch, source length" or "source length")
    end
    kpm = key_padding_mask:reshape({ N, 1, 1, S })
  end
  if am == nil and kpm == nil then return nil end
  local float = (am ~= nil and am.dtype ~= "bool" and am.dtype ~= "uint8")
    or (kpm ~= nil and kpm.dtype ~= "bool" and kpm.dtype ~= "uint8")
  if not float then
    -- both boolean: the op's mask is "allowed" = neither says no
    local blocked = am and as_bool(am)
    if kpm then blocked = blocked and vl.logical_or(blocked, as_bool(kpm)) or as_bool(kpm) end
    return blocked:logical_not()
  end
  local function additive(m)
    if m.dtype == "bool" or m.dtype == "uint8" then
      return vl.zeros(m.shape, { dtype = dtype }):masked_fill(as_bool(m), -inf)
    end
    return m:to(dtype)
  end
  local mask = am and additive(am)
  if kpm then mask = mask and (mask + additive(kpm)) or additive(kpm) end
  return mask
end

--- mha:forward(query, key, value, {key_padding_mask, attn_mask, need_weights = true,
--   average_attn_weights = true, is_causal = false}) -> out, weights
-- query [L, N, E] ([N, L, E] with batch_first, [L, E] unbatched), key and
-- value [S, N, kdim/vdim]. key and value default to query (self-attention).
-- Masks as PyTorch: bool true = not allowed, float added to the scores;
-- key_padding_mask [N, S], attn_mask [L, S] or [N * num_heads, L, S].
-- weights: [N, L, S] averaged over heads, or [N, H, L, S] with
-- average_attn_weights = false; nil with need_weights = false (the fused path).
function MultiheadAttention:forward(query, key, value, opts)
  opts = opts or {}
  if not is_tensor(query) then self:_fail("query must be a tensor, got %s", type(query)) end
  if key == nil then key = query end
  if value == nil then value = key end
  if not is_tensor(key) then self:_fail("key must be a tensor, got %s", type(key)) end
  if not is_tensor(value) then self:_fail("value must be a tensor, got %s", type(value)) end
  local qd = query:dim()
  if qd ~= 2 and qd ~= 3 then
    self:_fail("query must be 3-D (batched) or 2-D (unbatched), got shape %s", shape_str(query.shape))
  end
  if key:dim() ~= qd or value:dim() ~= qd then
    self:_fail("query, key and value must all be %d-D, got shapes %s, %s, %s", qd, shape_str(query.shape),
      shape_str(key.shape), shape_str(value.shape))
  end
  local batched = qd == 3
  local self_attn = rawequal(query, key) and rawequal(key, value)
  local kv_same = rawequal(key, value)
  -- to [N, L, E]
  local q, k, v
  if not batched then
    q, k, v = query:unsqueeze(1), key:unsqueeze(1), value:unsqueeze(1)
  elseif self.batch_first then
    q, k, v = query, key, value
  else
    q, k, v = query:transpose(1, 2), key:transpose(1, 2), value:transpose(1, 2)
  end
  local E, H = self.embed_dim, self.num_heads
  local layout = batched and (self.batch_first and "[N, L, E]" or "[L, N, E]") or "[L, E]"
  if q:size(3) ~= E then
    self:_fail("query has %d features, expected embed_dim %d (query shape %s, layout %s)", q:size(3), E,
      shape_str(query.shape), layout)
  end
  if k:size(3) ~= self.kdim then
    self:_fail("key has %d features, expected kdim %d (key shape %s)", k:size(3), self.kdim, shape_str(key.shape))
  end
  if v:size(3) ~= self.vdim then
    self:_fail("value has %d features, expected vdim %d (value shape %s)", v:size(3), self.vdim, shape_str(value.shape))
  end
  local N, L, S = q:size(1), q:size(2), k:size(2)
  if k:size(1) ~= N or v:size(1) ~= N then
    self:_fail("query, key and value must have the same batch size, got shapes %s, %s, %s", shape_str(query.shape),
      shape_str(key.shape), shape_str(value.shape))
  end
  if v:size(2) ~= S then
    self:_fail("key and value must have the same sequence length, got shapes %s and %s", shape_str(key.shape),
      shape_str(value.shape))
  end
  local mask = self:_masks(opts.attn_mask, opts.key_padding_mask, N, L, S, batched, query.dtype)

  -- projections: one GEMM for self-attention, [N, L, 3, H, d] -> 3 x [N, H, L, d] views
  local b = self.in_proj_bias
  local W = self.in_proj_weight
  if W and self_attn then
    local qkv = vl.linear(q, W, b):reshape({ N, L, 3, H, E // H }):permute({ 3, 1, 4, 2, 5 })
    q, k, v = qkv:select(1, 1), qkv:select(1, 2), qkv:select(1, 3)
  elseif W and kv_same then
    q = split_heads(vl.linear(q, rows(W, 0, E), rows(b, 0, E)), H)
    local kv = vl.linear(k, rows(W, E, 2 * E), rows(b, E, 2 * E)):reshape({ N, S, 2, H, E // H })
      :permute({ 3, 1, 4, 2, 5 })
    k, v = kv:select(1, 1), kv:select(1, 2)
  else
    local wq = W and rows(W, 0, E) or self.q_proj_weight
    local wk = W and rows(W, E, E) or self.k_proj_weight
    local wv = W and rows(W, 2 * E, E) or self.v_proj_weight
    q = split_heads(vl.linear(q, wq, rows(b, 0, E)), H)
    k = split_heads(vl.linear(k, wk, rows(b, E, E)), H)
    v = split_heads(vl.linear(v, wv, rows(b, 2 * E, E)), H)
  end

  local need_weights = opts.need_weights ~= false
  local p = self.training and self.dropout or 0
  -- vl.attention's weights are for inspection (not differentiable): when
  -- they may be differentiated, the composed path gives both.
  local fn = attention
  if need_weights and vl.is_grad_enabled() and (q:requires_grad() or k:requires_grad() or v:requires_grad()) then
    fn = composed_attention
  end
  local out, weights = fn(q, k, v, { mask = mask, causal = opts.is_causal or false, dropout = p,
    need_weights = need_weights })
  -- [N, H, L, d] -> [N, L, E] -> out_proj
  out = self.out_proj(out:transpose(2, 3):reshape({ N, L, E }))
  if not batched then
    out = out:squeeze(1)
  elseif not self.batch_first then
    out = out:transpose(1, 2)
  end
  if not need_weights then return out, nil end
  if opts.average_attn_weights ~= false then weights = weights:mean(2) end
  if not batched then weights = weights:squeeze(1) end
  return out, weights
end

-- ---------------------------------------------------------------------------
-- DropPath (stochastic depth)
-- ---------------------------------------------------------------------------

--- nn.DropPath(p = 0) -- in training, zeroes each sample (first dim) of its
-- input with probability p and scales the kept ones by 1 / (1 - p);
-- identity in eval() or with p = 0 (p = 1 gives zeros). vl's seeded RNG.
local DropPath = Module:extend("DropPath")
M.DropPath = DropPath
function DropPath:init(p) self.p = check_p(p or 0, "p", "DropPath") end
function DropPath:extra_repr() return fmt("p=%g", self.p) end
function DropPath:forward(x)
  util.check_input(self, x)
  if not self.training or self.p == 0 or x:dim() == 0 then return x end
  local keep = 1 - self.p
  local shape = { x:size(1) }
  for i = 2, x:dim() do shape[i] = 1 end
  local m = vl.rand(shape):lt(keep):to(x.dtype)
  if keep > 0 then m = m / keep end
  return x * m
end

-- ---------------------------------------------------------------------------
-- TransformerEncoderLayer / TransformerEncoder
-- ---------------------------------------------------------------------------

local ACTIVATIONS = {
  relu = function(x) return vl.relu(x) end,
  gelu = function(x) return vl.gelu(x) end,
}

--- nn.TransformerEncoderLayer(d_model, nhead, {dim_feedforward = 2048, dropout = 0.1,
--   activation = "relu" | "gelu" | function, layer_norm_eps = 1e-5, batch_first = false,
--   norm_first = false, bias = true, dtype})
-- PyTorch's children: self_attn, linear1, dropout, linear2, norm1, norm2,
-- dropout1, dropout2. Post-norm: x = norm1(x + sa(x)); x = norm2(x + ff(x)).
-- Pre-norm (norm_first): x = x + sa(norm1(x)); x = x + ff(norm2(x)).
local TransformerEncoderLayer = Module:extend("TransformerEncoderLayer")
M.TransformerEncoderLayer = TransformerEncoderLayer

function TransformerEncoderLayer:init(d_model, nhead, opts)
  opts = opts or {}
  local cls = "TransformerEncoderLayer"
  d_model = check_int(d_model, "d_model", cls, 1)
  nhead = check_int(nhead, "nhead", cls, 1)
  local ff = check_int(opts.dim_feedforward or 2048, "dim_feedforward", cls, 1)
  local p = opts.dropout
  if p == nil then p = 0.1 end
  check_p(p, "dropout", cls)
  local act = opts.activation or "relu"
  if type(act) == "string" then
    if not ACTIVATIONS[act] then
      error(fmt("%s: activation must be \"relu\", \"gelu\" or a function, got \"%s\"", cls, act), 3)
    end
  elseif type(act) ~= "function" and not is_module(act) then
    error(fmt("%s: activation must be \"relu\", \"gelu\" or a function, got %s", cls, type(act)), 3)
  end
  if d_model % nhead ~= 0 then
    error(fmt("%s: d_model (%d) must be divisible by nhead (%d)", cls, d_model, nhead), 3)
  end
  local eps = opts.layer_norm_eps or 1e-5
  local dt = opts.dtype
  self.d_model, self.nhead, self.dim_feedforward = d_model, nhead, ff
  self.batch_first = opts.batch_first and true or false
  self.self_attn = MultiheadAttention(d_model, nhead, { dropout = p, bias = opts.bias, batch_first = self.batch_first,
    dtype = dt })
  self.linear1 = Linear(d_model, ff, { bias = opts.bias, dtype = dt })
  self.dropout = Dropout(p)
  self.linear2 = Linear(ff, d_model, { bias = opts.bias, dtype = dt })
  self.norm_first = opts.norm_first and true or false
  self.norm1 = LayerNorm(d_model, { eps = eps, bias = opts.bias, dtype = dt })
  self.norm2 = LayerNorm(d_model, { eps = eps, bias = opts.bias, dtype = dt })
  self.dropout1 = Dropout(p)
  self.dropout2 = Dropout(p)
  if is_module(act) then
    self.activation = act
  else
    self.activation_name = type(act) == "string" and act or "function"
    rawget(self, "__m").attrs.activation_fn = type(act) == "string" and ACTIVATIONS[act] or act
  end
end

function TransformerEncoderLayer:_short()
  return fmt("TransformerEncoderLayer %d, %d heads", self.d_model, self.nhead)
end

function TransformerEncoderLayer:extra_repr()
  return fmt("d_model=%d, nhead=%d, dim_feedforward=%d, activation=%s, batch_first=%s, norm_first=%s",
    self.d_model, self.nhead, self.dim_feedforward, self.activation_name or "module", bool_str(self.batch_first),
    bool_str(self.norm_first))
end

function TransformerEncoderLayer:_sa(x, opts)
  local y = self.self_attn(x, x, x, { attn_mask = opts.src_mask or opts.mask,
    key_padding_mask = opts.src_key_padding_mask or opts.key_padding_mask, is_causal = opts.is_causal,
    need_weights = false })
  return self.dropout1(y)
end

function TransformerEncoderLayer:_ff(x)
  local h = self.linear1(x)
  local act = self.activation_fn or self.activation
  h = self.dropout(act(h))
  return self.dropout2(self.linear2(h))
end

--- layer:forward(src, {src_mask, src_key_padding_mask, is_causal}) -> Tensor
-- src [S, N, E] ([N, S, E] with batch_first, [S, E] unbatched); masks as
-- MultiheadAttention's attn_mask and key_padding_mask (mask and
-- key_padding_mask are accepted as aliases).
function TransformerEncoderLayer:forward(src, opts)
  util.check_input(self, src, "src")
  opts = opts or {}
  local x = src
  if self.norm_first then
    x = x + self:_sa(self.norm1(x), opts)
    x = x + self:_ff(self.norm2(x))
  else
    x = self.norm1(x + self:_sa(x, opts))
    x = self.norm2(x + self:_ff(x))
  end
  return x
end

-- A deep copy of a module tree (parameters and buffers cloned, plain
-- fields copied), as PyTorch's copy.deepcopy for TransformerEncoder.
local function clone_module(mod, memo)
  if memo[mod] then return memo[mod] end
  local m = rawget(mod, "__m")
  local c = {
    params = {}, pnames = {}, buffers = {}, bnames = {}, nonpersistent = {},
    modules = {}, mnames = {}, attrs = {},
  }
  local copy = setmetatable({ __m = c }, getmetatable(mod))
  memo[mod] = copy
  local function tclone(t)
    if memo[t] == nil then
      local u = no_grad(function() return t:detach():clone() end)
      if module.is_parameter(t) then u = Parameter(u, t:requires_grad()) end
      memo[t] = u
    end
    return memo[t]
  end
  for k, v in pairs(m.attrs) do
    if is_tensor(v) then
      c.attrs[k] = tclone(v)
    elseif type(v) == "table" and not is_module(v) and getmetatable(v) == nil then
      local t = {}
      for kk, vv in pairs(v) do t[kk] = vv end
      c.attrs[k] = t
    else
      c.attrs[k] = v
    end
  end
  for i, n in ipairs(m.pnames) do c.pnames[i] = n; c.params[n] = tclone(m.params[n]) end
  for i, n in ipairs(m.bnames) do c.bnames[i] = n; c.buffers[n] = tclone(m.buffers[n]) end
  for n, v in pairs(m.nonpersistent) do c.nonpersistent[n] = v end
  for i, n in ipairs(m.mnames) do c.mnames[i] = n; c.modules[n] = clone_module(m.modules[n], memo) end
  return copy
end

--- nn.clone_module(m) -> a deep copy (new parameters with the same values).
function M.clone_module(mod)
  if not is_module(mod) then error("clone_module: expected an nn.Module, got " .. type(mod), 2) end
  return clone_module(mod, {})
end

--- nn.TransformerEncoder(encoder_layer, num_layers, {norm})
-- encoder_layer is a module (deep-copied num_layers times, as PyTorch: the
-- copies start with equal weights) or a function i -> module (fresh
-- layers). Children: layers (ModuleList: layers.0...), norm (optional).
local TransformerEncoder = Module:extend("TransformerEncoder")
M.TransformerEncoder = TransformerEncoder

function TransformerEncoder:init(encoder_layer, num_layers, opts)
  opts = opts or {}
  local cls = "TransformerEncoder"
  num_layers = check_int(num_layers, "num_layers", cls, 1)
  local list = {}
  for i = 1, num_layers do
    if type(encoder_layer) == "function" then
      local l = encoder_layer(i)
      if not is_module(l) then
        error(fmt("%s: the layer factory must return an nn.Module, got %s for layer %d", cls, type(l), i), 3)
      end
      list[i] = l
    elseif is_module(encoder_layer) then
      list[i] = clone_module(encoder_layer, {})
    else
      error(fmt("%s: encoder_layer must be an nn.Module or a function returning one, got %s", cls,
        type(encoder_layer)), 3)
    end
  end
  self.layers = containers.ModuleList(list)
  self.num_layers = num_layers
  if opts.norm ~= nil then
    if not is_module(opts.norm) then error(fmt("%s: norm must be an nn.Module, got %s", cls, type(opts.norm)), 3) end
    self.norm = opts.norm
  end
end

function TransformerEncoder:_short() return fmt("TransformerEncoder %d layers", self.num_layers) end

--- enc:forward(src, {mask, src_key_padding_mask, is_causal}) -> Tensor
-- Each layer gets the same options; then norm when given.
function TransformerEncoder:forward(src, opts)
  util.check_input(self, src, "src")
  local x = src
  for i = 1, #self.layers do
    local ok, y = pcall(self.layers[i], x, opts)
    if not ok then
      error(self:_short() .. ": " .. containers._child_error(self.layers, i, self.layers[i], y), 0)
    end
    x = y
  end
  if self.norm then x = self.norm(x) end
  return x
end

-- ---------------------------------------------------------------------------
-- Position embeddings
-- ---------------------------------------------------------------------------

local function seq_dim(self, x)
  util.check_input(self, x)
  if x:dim() < 2 then self:_fail("input must be at least 2-D [..., L, E], got shape %s", shape_str(x.shape)) end
  if x:size(-1) ~= self.embedding_dim then
    self:_fail("input has %d features, expected %d (input shape %s)", x:size(-1), self.embedding_dim,
      shape_str(x.shape))
  end
  if x:dim() == 3 and not self.batch_first then return 1 end
  return x:dim() - 1
end

-- pe [L, E] -> broadcastable against x whose sequence dim is d.
local function add_positions(self, x, pe, what)
  local d = seq_dim(self, x)
  local L = x:size(d)
  if L > pe:size(1) then
    self:_fail("sequence length %d exceeds %s %d (input shape %s)", L, what, pe:size(1), shape_str(x.shape))
  end
  local p = pe:narrow(1, 1, L)
  if d == 1 and x:dim() == 3 then p = p:unsqueeze(2) end
  if p.dtype ~= x.dtype then p = p:to(x.dtype) end
  return x + p
end

--- nn.sinusoidal_position_encoding(length, dim, {base = 10000, dtype}) -> [length, dim]
-- pe[pos, 2i] = sin(pos / base^(2i/dim)), pe[pos, 2i+1] = cos(same), pos from 0.
function M.sinusoidal_position_encoding(length, dim, opts)
  opts = opts or {}
  length = check_int(length, "length", "sinusoidal_position_encoding", 1)
  dim = check_int(dim, "dim", "sinusoidal_position_encoding", 1)
  local base = opts.base or 10000
  local half = (dim + 1) // 2
  local pos = vl.arange(0, length):to("float64"):reshape({ length, 1 })
  local freq = (vl.arange(0, half):to("float64") * (-2 * math.log(base) / dim)):exp():reshape({ 1, half })
  local ang = pos * freq
  local pe = vl.stack({ ang:sin(), ang:cos() }, 3):reshape({ length, 2 * half }):narrow(2, 1, dim)
  return pe:contiguous():to(opts.dtype or "float32")
end

--- nn.SinusoidalPositionEmbedding(dim, {max_len = 5000, base = 10000, batch_first = false, dtype})
-- Adds the fixed sin/cos table (non-persistent buffer pe [max_len, dim]) to
-- x: [L, N, E], [N, L, E] with batch_first, or [..., L, E].
local SinusoidalPositionEmbedding = Module:extend("SinusoidalPositionEmbedding")
M.SinusoidalPositionEmbedding = SinusoidalPositionEmbedding
function SinusoidalPositionEmbedding:init(dim, opts)
  opts = opts or {}
  self.embedding_dim = check_int(dim, "dim", "SinusoidalPositionEmbedding", 1)
  self.max_len = check_int(opts.max_len or 5000, "max_len", "SinusoidalPositionEmbedding", 1)
  self.batch_first = opts.batch_first and true or false
  self:register_buffer("pe", M.sinusoidal_position_encoding(self.max_len, self.embedding_dim,
    { base = opts.base, dtype = opts.dtype }), false)
end
function SinusoidalPositionEmbedding:_short()
  return fmt("SinusoidalPositionEmbedding %dx%d", self.max_len, self.embedding_dim)
end
function SinusoidalPositionEmbedding:extra_repr()
  return fmt("%d, max_len=%d, batch_first=%s", self.embedding_dim, self.max_len, bool_str(self.batch_first))
end
function SinusoidalPositionEmbedding:forward(x) return add_positions(self, x, self.pe, "max_len") end

--- nn.LearnedPositionEmbedding(num_positions, dim, {std = 0.02, batch_first = false, dtype})
-- Adds a trained table (parameter weight [num_positions, dim], N(0, std))
-- to x laid out as for SinusoidalPositionEmbedding.
local LearnedPositionEmbedding = Module:extend("LearnedPositionEmbedding")
M.LearnedPositionEmbedding = LearnedPositionEmbedding
function LearnedPositionEmbedding:init(num_positions, dim, opts)
  opts = opts or {}
  local cls = "LearnedPositionEmbedding"
  self.num_positions = check_int(num_positions, "num_positions", cls, 1)
  self.embedding_dim = check_int(dim, "dim", cls, 1)
  self.batch_first = opts.batch_first and true or false
  self.std = opts.std or 0.02
  self.weight = Parameter(vl.empty({ self.num_positions, self.embedding_dim }, { dtype = opts.dtype or "float32" }))
  self:reset_parameters()
end
function LearnedPositionEmbedding:reset_parameters() init.normal_(self.weight, 0, self.std) end
function LearnedPositionEmbedding:_short()
  return fmt("LearnedPositionEmbedding %dx%d", self.num_positions, self.embedding_dim)
end
function LearnedPositionEmbedding:extra_repr()
  return fmt("%d, %d, batch_first=%s", self.num_positions, self.embedding_dim, bool_str(self.batch_first))
end
function LearnedPositionEmbedding:forward(x) return add_positions(self, x, self.weight, "num_positions") end

return M
