-- vl.nn.weight_init — nn.init: initialisation schemes (in place, without
-- recording gradients) and PyTorch's default reset of Linear/Conv.
local vl = require "vl"
local util = require "vl.nn.util"

local M = {}

local is_tensor = vl.is_tensor
local sqrt = math.sqrt
local fmt = string.format

local shape_str, no_grad = util.shape_str, util.no_grad

-- ---------------------------------------------------------------------------
-- nn.init: initialisation schemes (in place, without recording gradients)
-- ---------------------------------------------------------------------------

local function check_tensor(t, ctx)
  if not is_tensor(t) then error(fmt("%s: expected a tensor, got %s", ctx, type(t)), 3) end
end

--- nn.init.calculate_gain(nonlinearity [, param]) -> number (PyTorch's table).
function M.calculate_gain(nonlinearity, param)
  local linear = { linear = 1, conv1d = 1, conv2d = 1, conv3d = 1, conv_transpose1d = 1, conv_transpose2d = 1,
    conv_transpose3d = 1, sigmoid = 1 }
  if linear[nonlinearity] then return 1 end
  if nonlinearity == "tanh" then return 5 / 3 end
  if nonlinearity == "relu" then return sqrt(2) end
  if nonlinearity == "leaky_relu" then
    local slope = param
    if slope == nil then slope = 0.01 end
    if type(slope) ~= "number" then
      error("calculate_gain: negative_slope must be a number, got " .. type(slope), 2)
    end
    return sqrt(2 / (1 + slope * slope))
  end
  if nonlinearity == "selu" then return 3 / 4 end
  error(fmt("calculate_gain: unsupported nonlinearity '%s' (linear, conv*, sigmoid, tanh, relu, leaky_relu, selu)",
    tostring(nonlinearity)), 2)
end

--- nn.init.calculate_fan_in_and_fan_out(t) -> fan_in, fan_out
-- (t:size(2) * receptive field, t:size(1) * receptive field).
function M.calculate_fan_in_and_fan_out(t)
  check_tensor(t, "calculate_fan_in_and_fan_out")
  if t:dim() < 2 then
    error(fmt("calculate_fan_in_and_fan_out: needs a tensor with at least 2 dims, got shape %s", shape_str(t.shape)), 2)
  end
  local shape = t.shape
  local rf = 1
  for i = 3, #shape do rf = rf * shape[i] end
  return shape[2] * rf, shape[1] * rf
end

local function fan(t, mode, ctx)
  if t:dim() < 2 then
    error(fmt("%s: fan in/out needs a tensor with at least 2 dims, got shape %s", ctx, shape_str(t.shape)), 3)
  end
  local fi, fo = M.calculate_fan_in_and_fan_out(t)
  if mode == nil or mode == "fan_in" then return fi end
  if mode == "fan_out" then return fo end
  error(fmt("%s: mode must be \"fan_in\" or \"fan_out\", got %s", ctx, tostring(mode)), 3)
end

--- nn.init.uniform_(t, a = 0, b = 1) -> t
function M.uniform_(t, a, b)
  check_tensor(t, "init.uniform_")
  no_grad(function() t:uniform_(a or 0, b or 1) end)
  return t
end

--- nn.init.normal_(t, mean = 0, std = 1) -> t
function M.normal_(t, mean, std)
  check_tensor(t, "init.normal_")
  no_grad(function() t:normal_(mean or 0, std or 1) end)
  return t
end

--- nn.init.constant_(t, v) / zeros_(t) / ones_(t) -> t
function M.constant_(t, v)
  check_tensor(t, "init.constant_")
  if type(v) ~= "number" then error("init.constant_: value must be a number, got " .. type(v), 2) end
  no_grad(function() t:fill_(v) end)
  return t
end
function M.zeros_(t) return M.constant_(t, 0) end
function M.ones_(t) return M.constant_(t, 1) end

--- nn.init.xavier_uniform_(t, {gain = 1}) -> t: U(-a, a), a = gain*sqrt(6/(fan_in+fan_out)).
function M.xavier_uniform_(t, opts)
  check_tensor(t, "init.xavier_uniform_")
  local gain = opts and opts.gain or 1
  local fi, fo = fan(t, "fan_in", "init.xavier_uniform_"), fan(t, "fan_out", "init.xavier_uniform_")
  local std = gain * sqrt(2 / (fi + fo))
  local a = sqrt(3) * std
  return M.uniform_(t, -a, a)
end

--- nn.init.xavier_normal_(t, {gain = 1}) -> t: N(0, gain*sqrt(2/(fan_in+fan_out))).
function M.xavier_normal_(t, opts)
  check_tensor(t, "init.xavier_normal_")
  local gain = opts and opts.gain or 1
  local fi, fo = fan(t, "fan_in", "init.xavier_normal_"), fan(t, "fan_out", "init.xavier_normal_")
  return M.normal_(t, 0, gain * sqrt(2 / (fi + fo)))
end

--- nn.init.kaiming_uniform_(t, {a = 0, mode = "fan_in", nonlinearity = "leaky_relu"}) -> t
-- U(-b, b), b = gain * sqrt(3 / fan).
function M.kaiming_uniform_(t, opts)
  check_tensor(t, "init.kaiming_uniform_")
  opts = opts or {}
  local f = fan(t, opts.mode, "init.kaiming_uniform_")
  if f == 0 then return t end
  local gain = M.calculate_gain(opts.nonlinearity or "leaky_relu", opts.a or 0)
  local bound = sqrt(3) * gain / sqrt(f)
  return M.uniform_(t, -bound, bound)
end

--- nn.init.kaiming_normal_(t, {a = 0, mode = "fan_in", nonlinearity = "leaky_relu"}) -> t
-- N(0, gain / sqrt(fan)).
function M.kaiming_normal_(t, opts)
  check_tensor(t, "init.kaiming_normal_")
  opts = opts or {}
  local f = fan(t, opts.mode, "init.kaiming_normal_")
  if f == 0 then return t end
  local gain = M.calculate_gain(opts.nonlinearity or "leaky_relu", opts.a or 0)
  return M.normal_(t, 0, gain / sqrt(f))
end

-- Draws left outside [a, b] by the truncated normal before giving up.
local TRUNC_NORMAL_MAX_ROUNDS = 64

--- nn.init.trunc_normal_(t, {mean = 0, std = 1, a = -2, b = 2}) -> t
-- N(mean, std) restricted to [a, b] (absolute bounds, as PyTorch), by
-- redrawing the values that fall outside.
function M.trunc_normal_(t, opts)
  check_tensor(t, "init.trunc_normal_")
  opts = opts or {}
  local mean, std = opts.mean or 0, opts.std or 1
  local a, b = opts.a or -2, opts.b or 2
  if not (a < b) then error(fmt("init.trunc_normal_: needs a < b, got a=%g b=%g", a, b), 2) end
  if not (std >= 0) then error(fmt("init.trunc_normal_: std must be >= 0, got %g", std), 2) end
  no_grad(function()
    t:normal_(mean, std)
    for _ = 1, TRUNC_NORMAL_MAX_ROUNDS do
      local bad = t:lt(a):logical_or(t:gt(b))
      if not bad:any():item() then break end
      local fresh = vl.randn_like(t):mul_(std):add_(mean)
      t:copy_(vl.where(bad, fresh, t))
    end
    t:clamp_(a, b)
  end)
  return t
end

-- PyTorch's default for Linear/Conv: kaiming_uniform_(a = sqrt(5)) weights
-- (U(-1/sqrt(fan_in), 1/sqrt(fan_in))), bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
local function reset_linear_like(weight, bias)
  M.kaiming_uniform_(weight, { a = sqrt(5) })
  if bias then
    local fi = M.calculate_fan_in_and_fan_out(weight)
    local bound = fi > 0 and 1 / sqrt(fi) or 0
    M.uniform_(bias, -bound, bound)
  end
end
M._reset_linear_like = reset_linear_like

return M
