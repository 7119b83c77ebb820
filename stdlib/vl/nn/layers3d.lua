-- vl.nn.layers3d — Conv3d (NCDHW volumes: video clips, medical scans), with
-- PyTorch's names, defaults and initialisation (as nn.Conv2d in
-- vl.nn.layers, which also makes the 3-d pools).
local vl = require "vl"
local module = require "vl.nn.module"
local init = require "vl.nn.weight_init"
local util = require "vl.nn.util"

local M = {}

local fmt = string.format
local Module, Parameter = module.Module, module.Parameter
local reset_linear_like = init._reset_linear_like
local shape_str, check_int, ntuple, tuple_str = util.shape_str, util.check_int, util.ntuple, util.tuple_str
local check_input, op = util.check_input, util.op


--- nn.Conv3d(in, out, kernel_size, {stride, padding (n|{d,h,w}|"same"|"valid"), dilation, groups, bias, dtype})
-- Weight [out, in/groups, kD, kH, kW], bias [out]; both uniform in
-- +-1/sqrt(in/groups * kD*kH*kW), as PyTorch.
local Conv3d = Module:extend("Conv3d")
M.Conv3d = Conv3d

function Conv3d:init(in_channels, out_channels, kernel_size, opts)
  local cls = "Conv3d"
  opts = opts or {}
  self.in_channels = check_int(in_channels, "in_channels", cls, 1)
  self.out_channels = check_int(out_channels, "out_channels", cls, 1)
  self.kernel_size = ntuple(kernel_size, 3, "kernel_size", cls)
  self.stride = ntuple(opts.stride or 1, 3, "stride", cls)
  local padding = opts.padding or 0
  if type(padding) == "string" then
    if padding ~= "same" and padding ~= "valid" then
      error(fmt("%s: padding must be a number, a table, \"same\" or \"valid\", got \"%s\"", cls, padding), 2)
    end
    if padding == "same" then
      for i = 1, 3 do
        if self.stride[i] ~= 1 then error(fmt("%s: padding=\"same\" needs stride 1, got %s", cls, tuple_str(self.stride)), 2) end
      end
    end
    self.padding = padding
  else
    self.padding = ntuple(padding, 3, "padding", cls)
  end
  self.dilation = ntuple(opts.dilation or 1, 3, "dilation", cls)
  self.groups = check_int(opts.groups or 1, "groups", cls, 1)
  if self.in_channels % self.groups ~= 0 then
    error(fmt("%s: in_channels (%d) must be divisible by groups (%d)", cls, self.in_channels, self.groups), 2)
  end
  if self.out_channels % self.groups ~= 0 then
    error(fmt("%s: out_channels (%d) must be divisible by groups (%d)", cls, self.out_channels, self.groups), 2)
  end
  for i = 1, 3 do
    if self.kernel_size[i] < 1 then error(fmt("%s: kernel_size must be >= 1, got %s", cls, tuple_str(self.kernel_size)), 2) end
    if self.stride[i] < 1 then error(fmt("%s: stride must be >= 1, got %s", cls, tuple_str(self.stride)), 2) end
    if self.dilation[i] < 1 then error(fmt("%s: dilation must be >= 1, got %s", cls, tuple_str(self.dilation)), 2) end
  end
  local k = self.kernel_size
  local dtype = opts.dtype or "float32"
  self.weight = Parameter(vl.empty({ self.out_channels, self.in_channels // self.groups, k[1], k[2], k[3] },
    { dtype = dtype }))
  if opts.bias ~= false then self.bias = Parameter(vl.empty({ self.out_channels }, { dtype = dtype })) end
  reset_linear_like(self.weight, self.bias)
end

function Conv3d:reset_parameters() reset_linear_like(self.weight, self.bias) end

function Conv3d:extra_repr()
  local s = fmt("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels, tuple_str(self.kernel_size),
    tuple_str(self.stride))
  local p = self.padding
  if type(p) == "string" then
    s = s .. ", padding=" .. p
  elseif p[1] ~= 0 or p[2] ~= 0 or p[3] ~= 0 then
    s = s .. ", padding=" .. tuple_str(p)
  end
  local d = self.dilation
  if d[1] ~= 1 or d[2] ~= 1 or d[3] ~= 1 then s = s .. ", dilation=" .. tuple_str(d) end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if not self.bias then s = s .. ", bias=false" end
  return s
end

function Conv3d:_short()
  local k = self.kernel_size
  return fmt("Conv3d %d->%d, k=%dx%dx%d", self.in_channels, self.out_channels, k[1], k[2], k[3])
end

function Conv3d:forward(x)
  check_input(self, x)
  if x:dim() ~= 4 and x:dim() ~= 5 then
    self:_fail("expected a 4D (unbatched) or 5D (batched) input, got shape %s", shape_str(x.shape))
  end
  local c = x:size(-4)
  if c ~= self.in_channels then
    self:_fail("input has %d channels, expected %d (input shape %s)", c, self.in_channels, shape_str(x.shape))
  end
  return op("conv3d")(x, self.weight, self.bias,
    { stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups })
end

return M
