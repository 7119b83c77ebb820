-- vl.nn.util — small helpers shared by the vl.nn modules (shapes,
-- integer and tuple options, messages, no_grad). Internal.
local vl = require "vl"

local M = {}

local is_tensor = vl.is_tensor
local floor = math.floor
local fmt = string.format

-- ---------------------------------------------------------------------------
-- Small helpers
-- ---------------------------------------------------------------------------

local function shape_str(shape)
  local parts = {}
  for i = 1, #shape do parts[i] = tostring(shape[i]) end
  return "[" .. table.concat(parts, ", ") .. "]"
end

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local function is_int(v) return math.type(v) == "integer" or (type(v) == "number" and v == floor(v)) end

local function check_int(v, what, ctx, min)
  if type(v) ~= "number" or not is_int(v) then
    error(fmt("%s: %s must be an integer, got %s", ctx, what, type(v) == "number" and tostring(v) or type(v)), 3)
  end
  if min and v < min then error(fmt("%s: %s must be >= %d, got %d", ctx, what, min, v), 3) end
  return math.tointeger(v)
end

-- An n-tuple option (kernel_size, stride, ...): a number or a table of n.
local function ntuple(v, n, what, ctx)
  if type(v) == "number" then
    local t = {}
    for i = 1, n do t[i] = math.tointeger(v) or v end
    return t
  elseif type(v) == "table" and #v == n then
    local t = {}
    for i = 1, n do
      if type(v[i]) ~= "number" then error(fmt("%s: %s[%d] must be a number, got %s", ctx, what, i, type(v[i])), 3) end
      t[i] = math.tointeger(v[i]) or v[i]
    end
    return t
  end
  error(fmt("%s: %s must be a number or a table of %d numbers, got %s", ctx, what, n, type(v)), 3)
end

local function tuple_str(t)
  if type(t) ~= "table" then return tostring(t) end
  local parts = {}
  for i = 1, #t do parts[i] = tostring(t[i]) end
  return "(" .. table.concat(parts, ", ") .. (#t == 1 and ",)" or ")")
end

-- Runs fn without recording gradients (init schemes, state loading).
local function no_grad(fn, ...) return vl.no_grad(fn, ...) end

-- A tensor argument, or an error naming the module (self:_fail).
local function check_input(self, x, what)
  if not is_tensor(x) then self:_fail("%s must be a tensor, got %s", what or "input", type(x)) end
end

-- vl functional op, with a clear error while it is missing from this build.
local function op(name)
  local f = vl[name]
  if f == nil then error(fmt("vl.%s is not available in this build", name), 3) end
  return f
end

M.shape_str = shape_str
M.same_shape = same_shape
M.is_int = is_int
M.check_int = check_int
M.ntuple = ntuple
M.tuple_str = tuple_str
M.no_grad = no_grad
M.check_input = check_input
M.op = op

-- add_presets(M, "vit", presets, ctor): for each presets[name] (a table of
-- constructor arguments) set M[name](overrides) = ctor(preset + overrides).
function M.add_presets(mod, modname, presets, ctor)
  for name, p in pairs(presets) do
    mod[name] = function(overrides)
      if overrides ~= nil and type(overrides) ~= "table" then
        error(string.format("%s.%s: overrides must be a table, got %s", modname, name, type(overrides)), 2)
      end
      local c = {}
      for k, v in pairs(p) do c[k] = v end
      for k, v in pairs(overrides or {}) do c[k] = v end
      return ctor(c)
    end
  end
end

return M
