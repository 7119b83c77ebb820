-- vl.nn.layers — Linear, Conv1d/Conv2d/ConvTranspose2d, MaxPool2d/3d, AvgPool2d/3d,
-- AdaptiveAvgPool2d/3d, BatchNorm1d/2d/3d, LayerNorm, RMSNorm, GroupNorm, Dropout,
-- Embedding, Identity, Flatten and the activation modules.
local vl = require "vl"
local module = require "vl.nn.module"
local init = require "vl.nn.weight_init"
local util = require "vl.nn.util"

local M = {}

local is_tensor = vl.is_tensor
local fmt = string.format

local Module, Parameter = module.Module, module.Parameter
local reset_linear_like = init._reset_linear_like
local shape_str, check_int, ntuple, tuple_str = util.shape_str, util.check_int, util.ntuple, util.tuple_str
local no_grad, check_input, op = util.no_grad, util.check_input, util.op

-- ---------------------------------------------------------------------------
-- Layers
-- ---------------------------------------------------------------------------

local function dtype_of(opts) return opts and opts.dtype or "float32" end

local function new_param(shape, opts)
  return Parameter(vl.empty(shape, { dtype = dtype_of(opts) }))
end

local function bool_str(b) return b and "true" or "false" end

--- nn.Linear(in_features, out_features, {bias = true, dtype}) -- y = x W^T + b.
local Linear = Module:extend("Linear")
M.Linear = Linear

function Linear:init(in_features, out_features, opts)
  opts = opts or {}
  self.in_features = check_int(in_features, "in_features", "Linear", 0)
  self.out_features = check_int(out_features, "out_features", "Linear", 0)
  self.weight = new_param({ self.out_features, self.in_features }, opts)
  if opts.bias ~= false then self.bias = new_param({ self.out_features }, opts) end
  self:reset_parameters()
end

function Linear:reset_parameters() reset_linear_like(self.weight, self.bias) end

function Linear:_short() return fmt("Linear %d->%d", self.in_features, self.out_features) end

function Linear:extra_repr()
  return fmt("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features, bool_str(self.bias))
end

function Linear:forward(x)
  check_input(self, x)
  if x:dim() == 0 then self:_fail("input is a 0-d tensor, expected [..., %d]", self.in_features) end
  if x:size(-1) ~= self.in_features then
    self:_fail("input has %d features, expected %d (input shape %s)", x:size(-1), self.in_features, shape_str(x.shape))
  end
  return op("linear")(x, self.weight, self.bias)
end

-- Shared by Conv1d/Conv2d/ConvTranspose2d.
local function conv_setup(self, cls, nd, in_channels, out_channels, kernel_size, opts, transposed)
  opts = opts or {}
  self.in_channels = check_int(in_channels, "in_channels", cls, 1)
  self.out_channels = check_int(out_channels, "out_channels", cls, 1)
  self.kernel_size = ntuple(kernel_size, nd, "kernel_size", cls)
  self.stride = ntuple(opts.stride or 1, nd, "stride", cls)
  local padding = opts.padding or 0
  if type(padding) == "string" then
    if transposed then error(fmt("%s: padding must be a number or a table, got \"%s\"", cls, padding), 3) end
    if padding ~= "same" and padding ~= "valid" then
      error(fmt("%s: padding must be a number, a table, \"same\" or \"valid\", got \"%s\"", cls, padding), 3)
    end
    if padding == "same" then
      for i = 1, nd do
        if self.stride[i] ~= 1 then error(fmt("%s: padding=\"same\" needs stride 1, got %s", cls, tuple_str(self.stride)), 3) end
      end
    end
    self.padding = padding
  else
    self.padding = ntuple(padding, nd, "padding", cls)
  end
  self.dilation = ntuple(opts.dilation or 1, nd, "dilation", cls)
  self.groups = check_int(opts.groups or 1, "groups", cls, 1)
  if self.in_channels % self.groups ~= 0 then
    error(fmt("%s: in_channels (%d) must be divisible by groups (%d)", cls, self.in_channels, self.groups), 3)
  end
  if self.out_channels % self.groups ~= 0 then
    error(fmt("%s: out_channels (%d) must be divisible by groups (%d)", cls, self.out_channels, self.groups), 3)
  end
  for i = 1, nd do
    if self.kernel_size[i] < 1 then error(fmt("%s: kernel_size must be >= 1, got %s", cls, tuple_str(self.kernel_size)), 3) end
    if self.stride[i] < 1 then error(fmt("%s: stride must be >= 1, got %s", cls, tuple_str(self.stride)), 3) end
    if self.dilation[i] < 1 then error(fmt("%s: dilation must be >= 1, got %s", cls, tuple_str(self.dilation)), 3) end
  end
  local wshape
  if transposed then
    self.output_padding = ntuple(opts.output_padding or 0, nd, "output_padding", cls)
    wshape = { self.in_channels, self.out_channels // self.groups }
  else
    wshape = { self.out_channels, self.in_channels // self.groups }
  end
  for i = 1, nd do wshape[#wshape + 1] = self.kernel_size[i] end
  self.weight = new_param(wshape, opts)
  if opts.bias ~= false then self.bias = new_param({ self.out_channels }, opts) end
  reset_linear_like(self.weight, self.bias)
end

local function conv_repr(self)
  local s = fmt("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels, tuple_str(self.kernel_size),
    tuple_str(self.stride))
  local function nonzero(t)
    if type(t) ~= "table" then return true end
    for _, v in ipairs(t) do if v ~= 0 then return true end end
    return false
  end
  local function nonone(t)
    for _, v in ipairs(t) do if v ~= 1 then return true end end
    return false
  end
  if nonzero(self.padding) then
    s = s .. ", padding=" .. (type(self.padding) == "string" and self.padding or tuple_str(self.padding))
  end
  if nonone(self.dilation) then s = s .. ", dilation=" .. tuple_str(self.dilation) end
  if self.output_padding and nonzero(self.output_padding) then
    s = s .. ", output_padding=" .. tuple_str(self.output_padding)
  end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if not self.bias then s = s .. ", bias=false" end
  return s
end

local function conv_short(self)
  local k = self.kernel_size
  local ks = tostring(k[1])
  for i = 2, #k do ks = ks .. "x" .. k[i] end
  return fmt("%s %d->%d, k=%s", self.__name, self.in_channels, self.out_channels, ks)
end

local function conv_opts(self)
  return { stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups,
    output_padding = self.output_padding }
end

local function conv_check(self, x, nd)
  check_input(self, x)
  if x:dim() ~= nd + 1 and x:dim() ~= nd + 2 then
    self:_fail("expected a %dD (unbatched) or %dD (batched) input, got shape %s", nd + 1, nd + 2, shape_str(x.shape))
  end
  local c = x:size(-(nd + 1))
  if c ~= self.in_channels then
    self:_fail("input has %d channels, expected %d (input shape %s)", c, self.in_channels, shape_str(x.shape))
  end
end

--- nn.Conv1d(in, out, kernel_size, {stride, padding (n|"same"|"valid"), dilation, groups, bias, dtype})
local Conv1d = Module:extend("Conv1d")
M.Conv1d = Conv1d
function Conv1d:init(i, o, k, opts) conv_setup(self, "Conv1d", 1, i, o, k, opts) end
function Conv1d:reset_parameters() reset_linear_like(self.weight, self.bias) end
Conv1d.extra_repr = conv_repr
Conv1d._short = conv_short
function Conv1d:forward(x)
  conv_check(self, x, 1)
  local o = conv_opts(self)
  o.output_padding = nil
  return op("conv1d")(x, self.weight, self.bias, o)
end

--- nn.Conv2d(in, out, kernel_size, {stride, padding (n|{h,w}|"same"|"valid"), dilation, groups, bias, dtype})
local Conv2d = Module:extend("Conv2d")
M.Conv2d = Conv2d
function Conv2d:init(i, o, k, opts) conv_setup(self, "Conv2d", 2, i, o, k, opts) end
Conv2d.reset_parameters = Conv1d.reset_parameters
Conv2d.extra_repr = conv_repr
Conv2d._short = conv_short
function Conv2d:forward(x)
  conv_check(self, x, 2)
  local o = conv_opts(self)
  o.output_padding = nil
  return op("conv2d")(x, self.weight, self.bias, o)
end

--- nn.ConvTranspose2d(in, out, kernel_size, {stride, padding, output_padding, groups, dilation, bias, dtype})
-- Weight shape [in, out/groups, kh, kw] (as PyTorch).
local ConvTranspose2d = Module:extend("ConvTranspose2d")
M.ConvTranspose2d = ConvTranspose2d
function ConvTranspose2d:init(i, o, k, opts) conv_setup(self, "ConvTranspose2d", 2, i, o, k, opts, true) end
ConvTranspose2d.reset_parameters = Conv1d.reset_parameters
ConvTranspose2d.extra_repr = conv_repr
ConvTranspose2d._short = conv_short
function ConvTranspose2d:forward(x)
  conv_check(self, x, 2)
  return op("conv_transpose2d")(x, self.weight, self.bias, conv_opts(self))
end

-- Pooling ---------------------------------------------------------------------

-- The 2-D and 3-D pooling modules differ only in their dimension count n:
-- one class per kind, made for each n.

--- nn.MaxPool2d / nn.MaxPool3d(kernel_size, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode,
-- return_indices}). With return_indices the module returns (values, 1-based indices in the flattened
-- spatial dims).
local function max_pool_class(n)
  local name = fmt("MaxPool%dd", n)
  local C = Module:extend(name)
  function C:init(kernel_size, opts)
    opts = opts or {}
    self.kernel_size = kernel_size
    ntuple(kernel_size, n, "kernel_size", name)
    self.stride = opts.stride or kernel_size
    self.padding = opts.padding or 0
    self.dilation = opts.dilation or 1
    self.ceil_mode = opts.ceil_mode or false
    self.return_indices = opts.return_indices or false
  end
  function C:extra_repr()
    return fmt("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", tuple_str(self.kernel_size),
      tuple_str(self.stride), tuple_str(self.padding), tuple_str(self.dilation), bool_str(self.ceil_mode))
  end
  function C:forward(x)
    check_input(self, x)
    return op(fmt("max_pool%dd", n))(x, self.kernel_size, { stride = self.stride, padding = self.padding,
      dilation = self.dilation, ceil_mode = self.ceil_mode, return_indices = self.return_indices })
  end
  return C
end

--- nn.AvgPool2d / nn.AvgPool3d(kernel_size, {stride = kernel_size, padding = 0, ceil_mode,
-- count_include_pad = true})
local function avg_pool_class(n)
  local name = fmt("AvgPool%dd", n)
  local C = Module:extend(name)
  function C:init(kernel_size, opts)
    opts = opts or {}
    ntuple(kernel_size, n, "kernel_size", name)
    self.kernel_size = kernel_size
    self.stride = opts.stride or kernel_size
    self.padding = opts.padding or 0
    self.ceil_mode = opts.ceil_mode or false
    self.count_include_pad = opts.count_include_pad ~= false
  end
  function C:extra_repr()
    return fmt("kernel_size=%s, stride=%s, padding=%s", tuple_str(self.kernel_size), tuple_str(self.stride),
      tuple_str(self.padding))
  end
  function C:forward(x)
    check_input(self, x)
    return op(fmt("avg_pool%dd", n))(x, self.kernel_size, { stride = self.stride, padding = self.padding,
      ceil_mode = self.ceil_mode, count_include_pad = self.count_include_pad })
  end
  return C
end

--- nn.AdaptiveAvgPool2d / nn.AdaptiveAvgPool3d(output_size) -- output_size a number or n sizes.
local function adaptive_avg_pool_class(n)
  local name = fmt("AdaptiveAvgPool%dd", n)
  local C = Module:extend(name)
  function C:init(output_size)
    ntuple(output_size, n, "output_size", name)
    self.output_size = output_size
  end
  function C:extra_repr() return "output_size=" .. tuple_str(self.output_size) end
  function C:forward(x)
    check_input(self, x)
    return op(fmt("adaptive_avg_pool%dd", n))(x, self.output_size)
  end
  return C
end

for _, n in ipairs({ 2, 3 }) do
  M[fmt("MaxPool%dd", n)] = max_pool_class(n)
  M[fmt("AvgPool%dd", n)] = avg_pool_class(n)
  M[fmt("AdaptiveAvgPool%dd", n)] = adaptive_avg_pool_class(n)
end

-- Normalisation ---------------------------------------------------------------

-- BatchNorm1d / BatchNorm2d share this.
local function bn_init(self, cls, num_features, opts)
  opts = opts or {}
  self.num_features = check_int(num_features, "num_features", cls, 1)
  self.eps = opts.eps or 1e-5
  -- momentum = false: cumulative moving average (PyTorch's momentum=None)
  if opts.momentum == nil then self.momentum = 0.1 else self.momentum = opts.momentum end
  self.affine = opts.affine ~= false
  self.track_running_stats = opts.track_running_stats ~= false
  local dt = dtype_of(opts)
  if self.affine then
    self.weight = Parameter(vl.ones({ self.num_features }, { dtype = dt }))
    self.bias = Parameter(vl.zeros({ self.num_features }, { dtype = dt }))
  end
  if self.track_running_stats then
    self:register_buffer("running_mean", vl.zeros({ self.num_features }, { dtype = dt }))
    self:register_buffer("running_var", vl.ones({ self.num_features }, { dtype = dt }))
    self:register_buffer("num_batches_tracked", vl.tensor(0, { dtype = "int64" }))
  end
end

local function bn_forward(self, x, dims_ok, dims_desc)
  check_input(self, x)
  if not dims_ok[x:dim()] then self:_fail("expected %s input, got shape %s", dims_desc, shape_str(x.shape)) end
  if x:size(2) ~= self.num_features then
    self:_fail("input has %d channels, expected %d (input shape %s)", x:size(2), self.num_features, shape_str(x.shape))
  end
  local factor = self.momentum or 0.0
  if self.training and self.track_running_stats then
    no_grad(function() self.num_batches_tracked:add_(1) end)
    if self.momentum == false then factor = 1.0 / self.num_batches_tracked:item() end
  end
  local bn_training = self.training or (self.running_mean == nil and self.running_var == nil)
  local use_stats = not self.training or self.track_running_stats
  return op("batch_norm")(x, use_stats and self.running_mean or nil, use_stats and self.running_var or nil,
    self.weight, self.bias, { training = bn_training, momentum = factor, eps = self.eps })
end

local function bn_repr(self)
  return fmt("%d, eps=%g, momentum=%s, affine=%s, track_running_stats=%s", self.num_features, self.eps,
    self.momentum == false and "nil" or fmt("%g", self.momentum), bool_str(self.affine),
    bool_str(self.track_running_stats))
end

local function bn_reset_running_stats(self)
  if self.track_running_stats then
    no_grad(function()
      self.running_mean:zero_()
      self.running_var:fill_(1)
      self.num_batches_tracked:zero_()
    end)
  end
end

local function bn_reset_parameters(self)
  bn_reset_running_stats(self)
  if self.affine then
    init.ones_(self.weight)
    init.zeros_(self.bias)
  end
end

--- nn.BatchNorm1d(num_features, {eps = 1e-5, momentum = 0.1 (false: cumulative), affine, track_running_stats, dtype})
-- Input [N, C] or [N, C, L]. Buffers running_mean, running_var, num_batches_tracked.
local BatchNorm1d = Module:extend("BatchNorm1d")
M.BatchNorm1d = BatchNorm1d
function BatchNorm1d:init(n, opts) bn_init(self, "BatchNorm1d", n, opts) end
function BatchNorm1d:forward(x) return bn_forward(self, x, { [2] = true, [3] = true }, "a 2D or 3D") end
BatchNorm1d.extra_repr = bn_repr
BatchNorm1d.reset_running_stats = bn_reset_running_stats
BatchNorm1d.reset_parameters = bn_reset_parameters
function BatchNorm1d:_short() return fmt("%s %d", self.__name, self.num_features) end

--- nn.BatchNorm2d(num_features, {...as BatchNorm1d}) -- input [N, C, H, W].
local BatchNorm2d = Module:extend("BatchNorm2d")
M.BatchNorm2d = BatchNorm2d
function BatchNorm2d:init(n, opts) bn_init(self, "BatchNorm2d", n, opts) end
function BatchNorm2d:forward(x) return bn_forward(self, x, { [4] = true }, "a 4D") end
BatchNorm2d.extra_repr = bn_repr
BatchNorm2d.reset_running_stats = bn_reset_running_stats
BatchNorm2d.reset_parameters = bn_reset_parameters
BatchNorm2d._short = BatchNorm1d._short

--- nn.BatchNorm3d(num_features, {...as BatchNorm1d}) -- input [N, C, D, H, W] (video clips).
local BatchNorm3d = Module:extend("BatchNorm3d")
M.BatchNorm3d = BatchNorm3d
function BatchNorm3d:init(n, opts) bn_init(self, "BatchNorm3d", n, opts) end
function BatchNorm3d:forward(x) return bn_forward(self, x, { [5] = true }, "a 5D") end
BatchNorm3d.extra_repr = bn_repr
BatchNorm3d.reset_running_stats = bn_reset_running_stats
BatchNorm3d.reset_parameters = bn_reset_parameters
BatchNorm3d._short = BatchNorm1d._short

local function shape_arg(v, cls)
  if type(v) == "number" then return { check_int(v, "normalized_shape", cls, 1) } end
  if type(v) == "table" and #v > 0 then
    local r = {}
    for i, n in ipairs(v) do r[i] = check_int(n, "normalized_shape[" .. i .. "]", cls, 1) end
    return r
  end
  error(fmt("%s: normalized_shape must be a number or a non-empty table, got %s", cls, type(v)), 3)
end

local function check_trailing(self, x)
  check_input(self, x)
  local ns, xs = self.normalized_shape, x.shape
  local ok = #xs >= #ns
  if ok then
    for i = 1, #ns do
      if xs[#xs - #ns + i] ~= ns[i] then ok = false; break end
    end
  end
  if not ok then
    self:_fail("input shape %s does not end with normalized_shape %s", shape_str(xs), shape_str(ns))
  end
end

--- nn.LayerNorm(normalized_shape, {eps = 1e-5, elementwise_affine = true, bias = true, dtype})
local LayerNorm = Module:extend("LayerNorm")
M.LayerNorm = LayerNorm
function LayerNorm:init(normalized_shape, opts)
  opts = opts or {}
  self.normalized_shape = shape_arg(normalized_shape, "LayerNorm")
  self.eps = opts.eps or 1e-5
  self.elementwise_affine = opts.elementwise_affine ~= false
  local dt = dtype_of(opts)
  if self.elementwise_affine then
    self.weight = Parameter(vl.ones(self.normalized_shape, { dtype = dt }))
    if opts.bias ~= false then self.bias = Parameter(vl.zeros(self.normalized_shape, { dtype = dt })) end
  end
end
function LayerNorm:_short() return fmt("LayerNorm %s", shape_str(self.normalized_shape)) end
function LayerNorm:extra_repr()
  return fmt("%s, eps=%g, elementwise_affine=%s", tuple_str(self.normalized_shape), self.eps,
    bool_str(self.elementwise_affine))
end
function LayerNorm:forward(x)
  check_trailing(self, x)
  return op("layer_norm")(x, self.normalized_shape, self.weight, self.bias, { eps = self.eps })
end

--- nn.RMSNorm(normalized_shape, {eps (default: the dtype's machine epsilon), elementwise_affine = true, dtype})
local RMSNorm = Module:extend("RMSNorm")
M.RMSNorm = RMSNorm
function RMSNorm:init(normalized_shape, opts)
  opts = opts or {}
  self.normalized_shape = shape_arg(normalized_shape, "RMSNorm")
  self.eps = opts.eps
  self.elementwise_affine = opts.elementwise_affine ~= false
  if self.elementwise_affine then
    self.weight = Parameter(vl.ones(self.normalized_shape, { dtype = dtype_of(opts) }))
  end
end
function RMSNorm:_short() return fmt("RMSNorm %s", shape_str(self.normalized_shape)) end
function RMSNorm:extra_repr()
  return fmt("%s, eps=%s, elementwise_affine=%s", tuple_str(self.normalized_shape),
    self.eps and fmt("%g", self.eps) or "nil", bool_str(self.elementwise_affine))
end
function RMSNorm:forward(x)
  check_trailing(self, x)
  return op("rms_norm")(x, self.normalized_shape, self.weight, { eps = self.eps })
end

--- nn.GroupNorm(num_groups, num_channels, {eps = 1e-5, affine = true, dtype})
local GroupNorm = Module:extend("GroupNorm")
M.GroupNorm = GroupNorm
function GroupNorm:init(num_groups, num_channels, opts)
  opts = opts or {}
  self.num_groups = check_int(num_groups, "num_groups", "GroupNorm", 1)
  self.num_channels = check_int(num_channels, "num_channels", "GroupNorm", 1)
  if self.num_channels % self.num_groups ~= 0 then
    error(fmt("GroupNorm: num_channels (%d) must be divisible by num_groups (%d)", self.num_channels,
      self.num_groups), 2)
  end
  self.eps = opts.eps or 1e-5
  self.affine = opts.affine ~= false
  if self.affine then
    local dt = dtype_of(opts)
    self.weight = Parameter(vl.ones({ self.num_channels }, { dtype = dt }))
    self.bias = Parameter(vl.zeros({ self.num_channels }, { dtype = dt }))
  end
end
function GroupNorm:_short() return fmt("GroupNorm %d/%d", self.num_groups, self.num_channels) end
function GroupNorm:extra_repr()
  return fmt("%d, %d, eps=%g, affine=%s", self.num_groups, self.num_channels, self.eps, bool_str(self.affine))
end
function GroupNorm:forward(x)
  check_input(self, x)
  if x:dim() < 2 or x:size(2) ~= self.num_channels then
    self:_fail("input has %s channels, expected %d (input shape %s)", x:dim() >= 2 and tostring(x:size(2)) or "no",
      self.num_channels, shape_str(x.shape))
  end
  return op("group_norm")(x, self.num_groups, self.weight, self.bias, { eps = self.eps })
end

-- Dropout, Embedding, shape helpers -----------------------------------------------

--- nn.Dropout(p = 0.5) -- zeroes elements with probability p in training
-- (scaling the rest by 1/(1-p)), identity in eval(). Uses vl's seeded RNG.
local Dropout = Module:extend("Dropout")
M.Dropout = Dropout
function Dropout:init(p)
  if p == nil then p = 0.5 end
  if type(p) ~= "number" or p < 0 or p > 1 then
    error(fmt("Dropout: p must be a number in [0, 1], got %s", tostring(p)), 3)
  end
  self.p = p
end
function Dropout:extra_repr() return fmt("p=%g", self.p) end
function Dropout:forward(x)
  check_input(self, x)
  if not self.training or self.p == 0 then return x end
  return op("dropout")(x, self.p, { training = true })
end

--- nn.Embedding(num_embeddings, embedding_dim, {padding_idx (1-based), dtype}) -- ids are 1-based.
local Embedding = Module:extend("Embedding")
M.Embedding = Embedding
function Embedding:init(num_embeddings, embedding_dim, opts)
  opts = opts or {}
  self.num_embeddings = check_int(num_embeddings, "num_embeddings", "Embedding", 1)
  self.embedding_dim = check_int(embedding_dim, "embedding_dim", "Embedding", 1)
  local pad = opts.padding_idx
  if pad ~= nil then
    pad = check_int(pad, "padding_idx", "Embedding")
    if pad < 0 then pad = self.num_embeddings + pad + 1 end
    if pad < 1 or pad > self.num_embeddings then
      error(fmt("Embedding: padding_idx must be in 1..%d (or negative from the end), got %d", self.num_embeddings,
        opts.padding_idx), 3)
    end
  end
  self.padding_idx = pad
  if opts._weight then
    self.weight = Parameter(opts._weight)
  else
    self.weight = new_param({ self.num_embeddings, self.embedding_dim }, opts)
    self:reset_parameters()
  end
end
function Embedding:reset_parameters()
  init.normal_(self.weight, 0, 1)
  if self.padding_idx then
    no_grad(function() self.weight[self.padding_idx]:fill_(0) end)
  end
end
function Embedding:_short() return fmt("Embedding %dx%d", self.num_embeddings, self.embedding_dim) end
function Embedding:extra_repr()
  local s = fmt("%d, %d", self.num_embeddings, self.embedding_dim)
  if self.padding_idx then s = s .. ", padding_idx=" .. self.padding_idx end
  return s
end
function Embedding:forward(ids)
  check_input(self, ids, "indices")
  if ids.dtype ~= "int64" and ids.dtype ~= "int32" then
    self:_fail("indices must be an int64 or int32 tensor, got %s", ids.dtype)
  end
  return op("embedding")(ids, self.weight, { padding_idx = self.padding_idx })
end

--- nn.Embedding.from_pretrained(weight, {freeze = true, padding_idx})
function Embedding.from_pretrained(weight, opts)
  opts = opts or {}
  if not is_tensor(weight) or weight:dim() ~= 2 then
    error("Embedding.from_pretrained: weight must be a 2-D tensor", 2)
  end
  local e = Embedding(weight:size(1), weight:size(2), { padding_idx = opts.padding_idx, _weight = weight:clone() })
  if opts.freeze ~= false then e.weight:requires_grad(false) end
  return e
end

--- nn.Identity() -- returns its input.
local Identity = Module:extend("Identity")
M.Identity = Identity
function Identity:init() end
function Identity:forward(x) return x end

--- nn.Flatten(start_dim = 2, end_dim = -1) -- 1-based dims (keeps the batch dim).
local Flatten = Module:extend("Flatten")
M.Flatten = Flatten
function Flatten:init(start_dim, end_dim)
  self.start_dim = start_dim or 2
  self.end_dim = end_dim or -1
end
function Flatten:extra_repr() return fmt("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim) end
function Flatten:forward(x)
  check_input(self, x)
  return x:flatten(self.start_dim, self.end_dim)
end

-- Activations -------------------------------------------------------------------

local function activation(name, fn_name, repr)
  local cls = Module:extend(name)
  M[name] = cls
  function cls:forward(x)
    check_input(self, x)
    return op(fn_name)(x)
  end
  if repr then cls.extra_repr = repr end
  return cls
end

--- nn.ReLU(), nn.SiLU(), nn.Tanh(), nn.Sigmoid() -- element-wise.
activation("ReLU", "relu")
activation("SiLU", "silu")
activation("Tanh", "tanh")
activation("Sigmoid", "sigmoid")

--- nn.GELU({approximate = "none" | "tanh"})
local GELU = Module:extend("GELU")
M.GELU = GELU
function GELU:init(opts)
  self.approximate = opts and opts.approximate or "none"
  if self.approximate ~= "none" and self.approximate ~= "tanh" then
    error(fmt("GELU: approximate must be \"none\" or \"tanh\", got %s", tostring(self.approximate)), 3)
  end
end
function GELU:extra_repr() return self.approximate == "none" and "" or "approximate=" .. self.approximate end
function GELU:forward(x)
  check_input(self, x)
  if self.approximate == "none" then return op("gelu")(x) end
  return op("gelu")(x, { approximate = self.approximate })
end

--- nn.Softmax(dim = -1), nn.LogSoftmax(dim = -1) -- 1-based dim.
local Softmax = Module:extend("Softmax")
M.Softmax = Softmax
function Softmax:init(dim) self.dim = dim or -1 end
function Softmax:extra_repr() return "dim=" .. self.dim end
function Softmax:forward(x)
  check_input(self, x)
  return op("softmax")(x, self.dim)
end
local LogSoftmax = Module:extend("LogSoftmax")
M.LogSoftmax = LogSoftmax
LogSoftmax.init = Softmax.init
LogSoftmax.extra_repr = Softmax.extra_repr
function LogSoftmax:forward(x)
  check_input(self, x)
  return op("log_softmax")(x, self.dim)
end

return M
