-- vl.nn.s4d — nn.S4D, the diagonal state-space layer of "On the
-- Parameterization and Initialization of Diagonal State Space Models" (Gu et
-- al. 2022), following the minimal S4D-Lin code (s4d.py of the
-- state-spaces repository): same parameters, names, initialisation and
-- forward.
--
--   S4DKernel (child "kernel"), per channel h and mode n (N/2 modes):
--     dt = exp(log_dt)                 log_dt ~ U[log dt_min, log dt_max)
--     A  = -exp(log_A_real) + i A_imag log_A_real = log 0.5, A_imag = pi n
--     C  complex (stored as [H, N/2, 2]), ~ CN(0, 1)
--     K[h, l] = 2 Re sum_n C_n (exp(dt A_n) - 1) / A_n * exp(dt A_n l)
--   (zero-order hold with B = 1; the Vandermonde matrix exp(dt A_n l) is
--   formed in full, [H, N/2, L], as in the reference.)
--   S4D:  y = irfft(rfft(u, 2L) * rfft(K, 2L), 2L)[:L] + D u    (S4D:ssm)
--         out = output_linear(dropout(gelu(y)))
--   output_linear = Sequential(Conv1d(H, 2H, 1), GLU over channels).
--
-- vl has no complex dtype: complex values are (real, imaginary) tensor
-- pairs; vl.fft's rfft/irfft carry the trailing pair dim.
--
-- Shapes: u [B, H, L] (transposed = true, the default, as the reference) or
-- [B, L, H] (transposed = false); the output has the input's shape. The
-- reference returns (y, None); this returns y.
local vl = require "vl"
local module = require "vl.nn.module"
local layers = require "vl.nn.layers"
local containers = require "vl.nn.containers"
local util = require "vl.nn.util"

local M = {}

local Module, Parameter = module.Module, module.Parameter
local check_int, check_input, shape_str, no_grad = util.check_int, util.check_input, util.shape_str, util.no_grad
local fmt = string.format

local function check_pos(v, what, cls)
  if type(v) ~= "number" or not (v > 0) or v ~= v or v == math.huge then
    error(fmt("%s: %s must be a positive finite number, got %s", cls, what, tostring(v)), 4)
  end
  return v
end

-- (a_re + i a_im)(b_re + i b_im) on tensor pairs.
local function cmul(ar, ai, br, bi) return ar * br - ai * bi, ar * bi + ai * br end

--- nn.S4DKernel(d_model, {d_state = 64, dt_min = 0.001, dt_max = 0.1, lr, dtype})
-- kernel(L) -> K [H, L]. lr = 0 makes log_dt, log_A_real and A_imag buffers
-- (not trained), as the reference's register(); other values are kept as
-- kernel.lr for S4D:param_groups.
local S4DKernel = Module:extend("S4DKernel")
M.S4DKernel = S4DKernel

function S4DKernel:init(d_model, opts)
  opts = opts or {}
  local cls = "S4DKernel"
  self.d_model = check_int(d_model, "d_model", cls, 1)
  self.d_state = check_int(opts.d_state or 64, "d_state", cls, 2)
  if self.d_state % 2 ~= 0 then
    error(fmt("%s: d_state must be even (N/2 complex modes), got %d", cls, self.d_state), 3)
  end
  self.dt_min = check_pos(opts.dt_min or 0.001, "dt_min", cls)
  self.dt_max = check_pos(opts.dt_max or 0.1, "dt_max", cls)
  if self.dt_min > self.dt_max then
    error(fmt("%s: dt_min (%g) must not exceed dt_max (%g)", cls, self.dt_min, self.dt_max), 3)
  end
  if opts.lr ~= nil and (type(opts.lr) ~= "number" or opts.lr < 0) then
    error(fmt("%s: lr must be a number >= 0 or nil, got %s", cls, tostring(opts.lr)), 3)
  end
  self.lr = opts.lr
  local dtype = opts.dtype or "float32"
  local H, N2 = self.d_model, self.d_state // 2
  local log_dt, log_A_real, A_imag, C = no_grad(function()
    local lo, hi = math.log(self.dt_min), math.log(self.dt_max)
    local ldt = vl.rand({ H }, { dtype = dtype }) * (hi - lo) + lo
    -- torch.randn(cfloat): real and imaginary parts each of variance 1/2
    local c = vl.randn({ H, N2, 2 }, { dtype = dtype }) * math.sqrt(0.5)
    local lar = vl.full({ H, N2 }, math.log(0.5), { dtype = dtype })
    local aim = (vl.arange(N2, { dtype = dtype }) * math.pi):unsqueeze(1):expand({ H, N2 }):contiguous()
    return ldt, lar, aim, c
  end)
  self.C = Parameter(C)
  if self.lr == 0 then
    self:register_buffer("log_dt", log_dt)
    self:register_buffer("log_A_real", log_A_real)
    self:register_buffer("A_imag", A_imag)
  else
    self.log_dt = Parameter(log_dt)
    self.log_A_real = Parameter(log_A_real)
    self.A_imag = Parameter(A_imag)
  end
end

function S4DKernel:_short() return fmt("S4DKernel %d, N=%d", self.d_model, self.d_state) end

function S4DKernel:extra_repr()
  return fmt("d_model=%d, d_state=%d, dt_min=%g, dt_max=%g", self.d_model, self.d_state, self.dt_min, self.dt_max)
end

-- The discretised diagonal system: dtA (re, im), and C' = C (exp(dtA) - 1) / A
-- (re, im), each [H, N/2]. Shared by the kernel and S4D:recurrence.
function S4DKernel:discretize()
  local dt = vl.exp(self.log_dt):unsqueeze(-1)      -- [H, 1]
  local a_re, a_im = -vl.exp(self.log_A_real), self.A_imag
  local d_re, d_im = a_re * dt, a_im * dt           -- dt A
  local e = vl.exp(d_re)
  local n_re, n_im = e * vl.cos(d_im) - 1, e * vl.sin(d_im) -- exp(dt A) - 1
  local den = a_re * a_re + a_im * a_im             -- (.) / A = (.) conj(A) / |A|^2
  local q_re, q_im = (n_re * a_re + n_im * a_im) / den, (n_im * a_re - n_re * a_im) / den
  local c_re, c_im = cmul(self.C:select(-1, 1), self.C:select(-1, 2), q_re, q_im)
  return d_re, d_im, c_re, c_im
end

function S4DKernel:forward(L)
  if math.type(L) ~= "integer" or L < 1 then self:_fail("L must be a positive integer, got %s", tostring(L)) end
  local d_re, d_im, c_re, c_im = self:discretize()
  local l = vl.arange(L, { dtype = self.C.dtype })
  local mag = vl.exp(d_re:unsqueeze(-1) * l)        -- |exp(dtA l)|, [H, N/2, L]
  local ph = d_im:unsqueeze(-1) * l
  local re = c_re:unsqueeze(-1) * mag * vl.cos(ph) - c_im:unsqueeze(-1) * mag * vl.sin(ph)
  return re:sum(2) * 2                              -- [H, L]
end

-- GLU over the channel dim of [B, 2H, L]: a * sigmoid(b) (the reference's nn.GLU(dim=-2)).
local GLU = Module:extend("GLU")
function GLU:forward(x)
  local h = x:size(2) // 2
  return x:narrow(2, 1, h) * vl.sigmoid(x:narrow(2, h + 1, h))
end
function GLU:extra_repr() return "dim=-2" end

--- nn.S4D(d_model, {d_state = 64, dt_min = 0.001, dt_max = 0.1, lr, dropout = 0,
--- transposed = true, dtype}) -- the S4D layer; input [B, H, L] ([B, L, H] with
-- transposed = false), output the same shape.
local S4D = Module:extend("S4D")
M.S4D = S4D

function S4D:init(d_model, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if type(k) ~= "string" or not ({ d_state = 1, dt_min = 1, dt_max = 1, lr = 1, dropout = 1, transposed = 1,
          dtype = 1 })[k] then
      error(fmt("S4D: unknown option '%s' (expected d_state, dt_min, dt_max, lr, dropout, transposed, dtype)",
        tostring(k)), 3)
    end
  end
  local H = check_int(d_model, "d_model", "S4D", 1)
  self.h = H
  self.n = check_int(opts.d_state or 64, "d_state", "S4D", 2)
  local p = opts.dropout or 0
  if type(p) ~= "number" or p < 0 or p >= 1 then
    error(fmt("S4D: dropout must be a number in [0, 1), got %s", tostring(p)), 3)
  end
  self.dropout_p = p
  self.transposed = opts.transposed ~= false
  local dtype = opts.dtype or "float32"
  self.D = Parameter(no_grad(function() return vl.randn({ H }, { dtype = dtype }) end))
  self.kernel = S4DKernel(H, { d_state = self.n, dt_min = opts.dt_min, dt_max = opts.dt_max, lr = opts.lr,
    dtype = dtype })
  self.activation = layers.GELU()
  self.output_linear = containers.Sequential(layers.Conv1d(H, 2 * H, 1, { dtype = dtype }), GLU())
end

function S4D:_short() return fmt("S4D %d, N=%d", self.h, self.n) end

function S4D:extra_repr()
  return fmt("d_model=%d, d_state=%d, dropout=%g, transposed=%s", self.h, self.n, self.dropout_p,
    tostring(self.transposed))
end

-- Checks u and returns it as [B, H, L].
function S4D:_input(u)
  check_input(self, u)
  if u:dim() ~= 3 then
    self:_fail("input has shape %s, expected 3 dims %s", shape_str(u.shape),
      self.transposed and "[B, H, L]" or "[B, L, H]")
  end
  if not self.transposed then u = u:transpose(2, 3) end
  if u:size(2) ~= self.h then
    self:_fail("input has %d channels, expected %d (input shape %s)", u:size(2), self.h, shape_str(u.shape))
  end
  if u:size(3) < 1 then self:_fail("input has length 0 (shape %s)", shape_str(u.shape)) end
  if u.dtype ~= self.D.dtype then
    self:_fail("input is %s, the layer's parameters are %s", u.dtype, self.D.dtype)
  end
  return u
end

--- s4d:ssm(u) -> y [B, H, L]: the state-space part alone, the causal
-- convolution with the S4D kernel by FFT plus the skip D u (before the
-- activation). u is [B, H, L] whatever `transposed` says.
function S4D:ssm(u)
  local L = u:size(3)
  local k = self.kernel(L)                                  -- [H, L]
  local kf = vl.fft.rfft(k, { n = 2 * L })                  -- [H, L+1, 2]
  local uf = vl.fft.rfft(u, { n = 2 * L })                  -- [B, H, L+1, 2]
  local yr, yi = cmul(uf:select(-1, 1), uf:select(-1, 2), kf:select(-1, 1), kf:select(-1, 2))
  local y = vl.fft.irfft(vl.stack({ yr, yi }, -1), { n = 2 * L }):narrow(3, 1, L)
  return y + u * self.D:unsqueeze(-1)
end

function S4D:forward(u)
  u = self:_input(u)
  local y = self.activation(self:ssm(u))
  if self.training and self.dropout_p > 0 then
    -- DropoutNd with tied masks: one draw per (batch, channel), shared over L
    local mask = vl.dropout(vl.ones({ y:size(1), y:size(2), 1 }, { dtype = y.dtype }), self.dropout_p,
      { training = true })
    y = y * mask
  end
  y = self.output_linear(y)
  if not self.transposed then y = y:transpose(2, 3) end
  return y
end

--- s4d:param_groups({lr, weight_decay}) -> optimizer parameter groups: the
-- SSM parameters (log_dt, log_A_real, A_imag) with weight_decay = 0 and the
-- kernel's lr when one was given (the reference's setup_optimizer), the
-- others with the optimizer's defaults.
function S4D:param_groups()
  local k = self.kernel
  local ssm, seen = {}, {}
  for _, name in ipairs({ "log_dt", "log_A_real", "A_imag" }) do
    local p = rawget(k, "__m").params[name]
    if p then
      ssm[#ssm + 1] = p
      seen[p] = true
    end
  end
  local rest = {}
  for _, p in ipairs(self:parameters()) do
    if not seen[p] then rest[#rest + 1] = p end
  end
  local g = { params = ssm, weight_decay = 0 }
  if k.lr then g.lr = k.lr end
  if #ssm == 0 then return { { params = rest } } end
  return { { params = rest }, g }
end

return M
