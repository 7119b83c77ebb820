-- vl.nn.module — nn.Module (the class mechanism, children, parameters and
-- buffers, train/eval, to/float/double, printing), nn.Parameter and
-- state_dict / load_state_dict / save / load.
local vl = require "vl"
local util = require "vl.nn.util"

local M = {}

local is_tensor = vl.is_tensor
local fmt = string.format

local shape_str, same_shape, no_grad = util.shape_str, util.same_shape, util.no_grad

-- ---------------------------------------------------------------------------
-- Parameters
-- ---------------------------------------------------------------------------

-- Tensors wrapped by nn.Parameter (weak keys: a parameter dropped by every
-- module is collected as usual).
local param_set = setmetatable({}, { __mode = "k" })

--- nn.Parameter(t [, requires_grad = true]) -> t, marked as a parameter.
-- Assigning it to a module field registers it. A tensor produced by a
-- recorded op is detached first (a parameter is always a leaf).
function M.Parameter(t, requires_grad)
  if not is_tensor(t) then error("nn.Parameter: expected a tensor, got " .. type(t), 2) end
  if not t:is_leaf() then t = t:detach() end
  if requires_grad ~= false then t:requires_grad(true) end
  param_set[t] = true
  return t
end

--- nn.is_parameter(v) -> boolean
function M.is_parameter(v) return is_tensor(v) and param_set[v] == true end

-- ---------------------------------------------------------------------------
-- Ordered tables (state_dicts): pairs() walks keys in insertion order.
-- ---------------------------------------------------------------------------

local function ordered_pairs(t)
  local keys = getmetatable(t).__keys
  local i, seen = 0, {}
  local in_order = true
  local last
  return function()
    if in_order then
      while true do
        i = i + 1
        local k = keys[i]
        if k == nil then break end
        if rawget(t, k) ~= nil and not seen[k] then
          seen[k] = true
          return k, rawget(t, k)
        end
      end
      in_order = false
    end
    -- keys added after creation, in next() order
    while true do
      local k, v = next(t, last)
      last = k
      if k == nil then return nil end
      if not seen[k] then return k, v end
    end
  end, t, nil
end

local function ordered_table(keys, values)
  local t = setmetatable({}, { __keys = keys, __pairs = ordered_pairs })
  for i, k in ipairs(keys) do rawset(t, k, values[i]) end
  return t
end

--- nn.keys(t) -> list of keys in order (a state_dict's order, or sorted
-- keys for a plain table).
function M.keys(t)
  local mt = getmetatable(t)
  local r, seen = {}, {}
  if mt and mt.__keys then
    for _, k in ipairs(mt.__keys) do
      if rawget(t, k) ~= nil and not seen[k] then r[#r + 1] = k; seen[k] = true end
    end
  end
  local extra = {}
  for k in next, t do
    if not seen[k] then extra[#extra + 1] = k end
  end
  table.sort(extra, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(extra) do r[#r + 1] = k end
  return r
end

-- ---------------------------------------------------------------------------
-- Module: the class mechanism
-- ---------------------------------------------------------------------------
--
-- An instance is a table holding only `__m` (its record); every field goes
-- through __index/__newindex so that assignments are always seen:
--   __m.params / buffers / modules : name -> value, with the *names lists
--   keeping declaration order; __m.attrs: every other field.

local Module = {}
Module.__name = "Module"
M.Module = Module

local function is_module(v)
  return type(v) == "table" and rawget(v, "__m") ~= nil
end
M.is_module = is_module

local METAMETHODS = { "__index", "__newindex", "__call", "__tostring", "__len", "__pairs", "__close" }

local function remove_name(list, name)
  for i = 1, #list do
    if list[i] == name then
      table.remove(list, i)
      return
    end
  end
end

local function class_of(self) return getmetatable(self) end

function Module.__index(self, k)
  local m = rawget(self, "__m")
  if type(k) == "string" then
    local v = m.params[k]
    if v ~= nil then return v end
    v = m.buffers[k]
    if v ~= nil then return v end
    v = m.modules[k]
    if v ~= nil then return v end
    v = m.attrs[k]
    if v ~= nil then return v end
    return class_of(self)[k]
  end
  local getitem = class_of(self).__getitem
  if getitem then return getitem(self, k) end
  return nil
end

local function type_desc(v)
  if is_tensor(v) then return "a tensor" end
  if is_module(v) then return "module " .. v:_short() end
  return "a " .. type(v)
end
M._type_desc = type_desc -- for the containers

function Module.__newindex(self, k, v)
  local m = rawget(self, "__m")
  if type(k) ~= "string" then
    local setitem = class_of(self).__setitem
    if setitem then return setitem(self, k, v) end
    error(fmt("%s: cannot set field %s (field names are strings)", self:_short(), tostring(k)), 2)
  end
  if is_module(v) then
    self:add_module(k, v)
  elseif M.is_parameter(v) then
    self:register_parameter(k, v)
  elseif m.params[k] ~= nil then
    if v == nil then
      self:register_parameter(k, nil)
    else
      error(fmt("%s: cannot assign %s as parameter '%s' (nn.Parameter or nil expected)", self:_short(),
        type_desc(v), k), 2)
    end
  elseif m.buffers[k] ~= nil then
    if v == nil or is_tensor(v) then
      if v == nil then remove_name(m.bnames, k) end
      m.buffers[k] = v
    else
      error(fmt("%s: cannot assign %s as buffer '%s' (tensor or nil expected)", self:_short(), type_desc(v), k), 2)
    end
  elseif m.modules[k] ~= nil then
    if v == nil then
      m.modules[k] = nil
      remove_name(m.mnames, k)
    else
      error(fmt("%s: cannot assign %s as child module '%s' (nn.Module or nil expected)", self:_short(),
        type_desc(v), k), 2)
    end
  else
    m.attrs[k] = v
  end
end

function Module.__call(self, ...) return self:forward(...) end

function Module.__tostring(self) return self:__repr() end

local function new_instance(cls, ...)
  local self = setmetatable({
    __m = {
      params = {}, pnames = {},
      buffers = {}, bnames = {}, nonpersistent = {},
      modules = {}, mnames = {},
      attrs = { training = true },
    },
  }, cls)
  self:init(...)
  return self
end

--- Module:extend(name) -> a new class deriving from this one.
-- Instances are made by calling the class: MyNet(args...) runs
-- MyNet:init(args...). A parent's init is called explicitly:
-- Parent.init(self, ...).
function Module:extend(name)
  if rawget(self, "__m") then
    -- an instance: list:extend({...}) appends (ModuleList, Sequential)
    local f = self.extend_with
    if f then return f(self, name) end
    error(fmt("%s: extend is a class method (Class:extend(name))", self:_short()), 2)
  end
  if type(name) ~= "string" then error("Module:extend: the class needs a name (a string)", 2) end
  local cls = {}
  for _, mm in ipairs(METAMETHODS) do cls[mm] = self[mm] end
  cls.__getitem, cls.__setitem = self.__getitem, self.__setitem
  cls.__name = name
  cls.super = self
  return setmetatable(cls, {
    __index = self,
    __call = new_instance,
    __tostring = function() return "class " .. name end,
  })
end

setmetatable(Module, {
  __call = new_instance,
  __tostring = function() return "class Module" end,
})

--- m:is_a(cls) -> true when m is an instance of cls or a subclass.
function Module:is_a(cls)
  local c = class_of(self)
  while c do
    if c == cls then return true end
    c = rawget(c, "super")
  end
  return false
end

function Module:init() end

function Module:forward()
  error(fmt("%s: forward is not implemented (define function %s:forward(...))", self:_short(), self.__name), 2)
end

-- Short description used in error messages: "Linear 128->10".
function Module:_short() return self.__name end

-- Raise an error that names this module: "Linear 128->10: msg".
function Module:_fail(msg, ...)
  error(self:_short() .. ": " .. fmt(msg, ...), 0)
end

--- m:register_parameter(name, t) -- t an nn.Parameter (a plain tensor is
-- wrapped), or nil to remove it.
function Module:register_parameter(name, t)
  local m = rawget(self, "__m")
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error(fmt("%s: parameter name must be a non-empty string without '.', got %s", self:_short(), tostring(name)), 2)
  end
  if t == nil then
    if m.params[name] ~= nil then
      m.params[name] = nil
      remove_name(m.pnames, name)
    end
    return
  end
  if not is_tensor(t) then error(fmt("%s: parameter '%s' must be a tensor, got %s", self:_short(), name, type(t)), 2) end
  if not param_set[t] then t = M.Parameter(t) end
  if m.buffers[name] ~= nil then m.buffers[name] = nil; remove_name(m.bnames, name) end
  if m.modules[name] ~= nil then m.modules[name] = nil; remove_name(m.mnames, name) end
  m.attrs[name] = nil
  if m.params[name] == nil then m.pnames[#m.pnames + 1] = name end
  m.params[name] = t
end

--- m:register_buffer(name, t [, persistent = true]) -- a tensor that is
-- state but not a parameter (running statistics). Non-persistent buffers
-- stay out of state_dict.
function Module:register_buffer(name, t, persistent)
  local m = rawget(self, "__m")
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error(fmt("%s: buffer name must be a non-empty string without '.', got %s", self:_short(), tostring(name)), 2)
  end
  if t ~= nil and not is_tensor(t) then
    error(fmt("%s: buffer '%s' must be a tensor or nil, got %s", self:_short(), name, type(t)), 2)
  end
  if m.params[name] ~= nil then m.params[name] = nil; remove_name(m.pnames, name) end
  if m.modules[name] ~= nil then m.modules[name] = nil; remove_name(m.mnames, name) end
  m.attrs[name] = nil
  if t == nil then
    m.buffers[name] = nil
    remove_name(m.bnames, name)
    return
  end
  if m.buffers[name] == nil then m.bnames[#m.bnames + 1] = name end
  m.buffers[name] = t
  m.nonpersistent[name] = (persistent == false) or nil
end

--- m:add_module(name, child) -- register a child module (nil removes it).
function Module:add_module(name, child)
  local m = rawget(self, "__m")
  if type(name) ~= "string" or name == "" or name:find(".", 1, true) then
    error(fmt("%s: module name must be a non-empty string without '.', got %s", self:_short(), tostring(name)), 2)
  end
  if child ~= nil and not is_module(child) then
    error(fmt("%s: child '%s' must be an nn.Module, got %s", self:_short(), name, type_desc(child)), 2)
  end
  if m.params[name] ~= nil then m.params[name] = nil; remove_name(m.pnames, name) end
  if m.buffers[name] ~= nil then m.buffers[name] = nil; remove_name(m.bnames, name) end
  m.attrs[name] = nil
  if child == nil then
    m.modules[name] = nil
    remove_name(m.mnames, name)
    return
  end
  if m.modules[name] == nil then m.mnames[#m.mnames + 1] = name end
  m.modules[name] = child
end
Module.register_module = Module.add_module

-- Iterator over a list of {name, value} pairs.
local function iter_pairs(list)
  local i = 0
  return function()
    i = i + 1
    local e = list[i]
    if e then return e[1], e[2] end
  end
end

-- Collects {prefix..name, value} for `kind` ("params" or "buffers") over
-- the module tree, each tensor once (shared ones keep their first name).
local function collect(self, kind, recurse)
  local names = kind == "params" and "pnames" or "bnames"
  local out, seen_t, seen_m = {}, {}, {}
  local function walk(mod, prefix)
    if seen_m[mod] then return end
    seen_m[mod] = true
    local m = rawget(mod, "__m")
    for _, name in ipairs(m[names]) do
      local t = m[kind][name]
      if t ~= nil and not seen_t[t] then
        seen_t[t] = true
        out[#out + 1] = { prefix .. name, t }
      end
    end
    if recurse ~= false then
      for _, name in ipairs(m.mnames) do walk(m.modules[name], prefix .. name .. ".") end
    end
  end
  walk(self, "")
  return out
end

--- m:parameters([recurse = true]) -> list of parameter tensors (PyTorch order:
-- own parameters in declaration order, then each child's, depth first).
function Module:parameters(recurse)
  local r = {}
  for i, e in ipairs(collect(self, "params", recurse)) do r[i] = e[2] end
  return r
end

--- m:named_parameters([recurse]) -> iterator of (name, tensor), dotted names.
function Module:named_parameters(recurse) return iter_pairs(collect(self, "params", recurse)) end

--- m:buffers() -> list of buffer tensors; m:named_buffers() -> iterator.
function Module:buffers(recurse)
  local r = {}
  for i, e in ipairs(collect(self, "buffers", recurse)) do r[i] = e[2] end
  return r
end
function Module:named_buffers(recurse) return iter_pairs(collect(self, "buffers", recurse)) end

--- m:children() -> list of direct children; m:named_children() -> iterator.
function Module:children()
  local m, r = rawget(self, "__m"), {}
  for _, name in ipairs(m.mnames) do r[#r + 1] = m.modules[name] end
  return r
end
function Module:named_children()
  local m, r = rawget(self, "__m"), {}
  for _, name in ipairs(m.mnames) do r[#r + 1] = { name, m.modules[name] } end
  return iter_pairs(r)
end

local function collect_modules(self)
  local out, seen = {}, {}
  local function walk(mod, prefix)
    if seen[mod] then return end
    seen[mod] = true
    out[#out + 1] = { prefix, mod }
    local m = rawget(mod, "__m")
    for _, name in ipairs(m.mnames) do
      walk(m.modules[name], prefix == "" and name or prefix .. "." .. name)
    end
  end
  walk(self, "")
  return out
end

--- m:modules() -> list of every module in the tree, m first (pre-order);
-- m:named_modules() -> iterator of (dotted name, module), "" for m.
function Module:modules()
  local r = {}
  for i, e in ipairs(collect_modules(self)) do r[i] = e[2] end
  return r
end
function Module:named_modules() return iter_pairs(collect_modules(self)) end

--- m:num_parameters() -> total number of parameter elements.
function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p:numel() end
  return n
end

--- m:train([mode = true]) -> m; m:eval() -> m. Sets `training` on the tree.
function Module:train(mode)
  if mode == nil then mode = true end
  for _, mod in ipairs(self:modules()) do rawget(mod, "__m").attrs.training = mode and true or false end
  return self
end
function Module:eval() return self:train(false) end

--- m:apply(fn) -> m: fn(module) on every child (recursively) then on m.
function Module:apply(fn)
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

--- m:zero_grad({set_to_none = true}) -- drop (or zero) every parameter's grad.
function Module:zero_grad(opts)
  local set_to_none = not (opts and opts.set_to_none == false)
  for _, p in ipairs(self:parameters()) do
    if set_to_none then
      p.grad = nil
    else
      local g = p.grad
      if g then g:zero_() end
    end
  end
end

--- m:requires_grad_([on = true]) -> m -- freeze/unfreeze every parameter.
function Module:requires_grad_(on)
  if on == nil then on = true end
  for _, p in ipairs(self:parameters()) do p:requires_grad(on) end
  return self
end

-- Replace every parameter and buffer by fn(t) (same registration order).
function Module:_apply(fn)
  no_grad(function()
    for _, mod in ipairs(self:modules()) do
      local m = rawget(mod, "__m")
      for _, name in ipairs(m.pnames) do
        local p = m.params[name]
        local q = fn(p)
        if q ~= p then
          local rg = p:requires_grad()
          m.params[name] = M.Parameter(q:detach(), rg)
        end
      end
      for _, name in ipairs(m.bnames) do m.buffers[name] = fn(m.buffers[name]) end
    end
  end)
  return self
end

local FLOAT_DTYPES = { float32 = true, float64 = true, float16 = true, bfloat16 = true }

--- m:to(dtype) -> m: floating parameters and buffers converted (others kept).
-- Parameters are replaced by new ones: build optimizers after calling it.
function Module:to(dtype)
  if type(dtype) ~= "string" then error(fmt("%s: to expects a dtype name, got %s", self:_short(), type(dtype)), 2) end
  return self:_apply(function(t)
    if FLOAT_DTYPES[t.dtype] and t.dtype ~= dtype then return t:to(dtype) end
    return t
  end)
end
function Module:float() return self:to("float32") end
function Module:double() return self:to("float64") end

-- ---------------------------------------------------------------------------
-- state_dict / load_state_dict
-- ---------------------------------------------------------------------------

--- m:state_dict({prefix = "", keep_vars = false}) -> ordered table
-- name -> tensor: each module's parameters, then its persistent buffers,
-- then its children's entries, with PyTorch's dotted names. Tensors are
-- detached aliases (they share storage with the module: clone to snapshot).
-- pairs() walks the keys in that order; nn.keys(sd) lists them.
function Module:state_dict(opts)
  local prefix = opts and opts.prefix or ""
  local keep = opts and opts.keep_vars
  local keys, vals, seen = {}, {}, {}
  local function walk(mod, pre)
    local m = rawget(mod, "__m")
    for _, name in ipairs(m.pnames) do
      local p = m.params[name]
      keys[#keys + 1] = pre .. name
      vals[#vals + 1] = keep and p or p:detach()
    end
    for _, name in ipairs(m.bnames) do
      local b = m.buffers[name]
      if not m.nonpersistent[name] then
        keys[#keys + 1] = pre .. name
        vals[#vals + 1] = keep and b or b:detach()
      end
    end
    for _, name in ipairs(m.mnames) do
      local c = m.modules[name]
      if not seen[c] then
        walk(c, pre .. name .. ".")
      end
    end
  end
  walk(self, prefix)
  return ordered_table(keys, vals)
end

-- The entries load_state_dict expects: key -> {tensor, kind}.
local function expected_entries(self)
  local list = {}
  local function walk(mod, pre)
    local m = rawget(mod, "__m")
    for _, name in ipairs(m.pnames) do list[#list + 1] = { pre .. name, m.params[name] } end
    for _, name in ipairs(m.bnames) do
      if not m.nonpersistent[name] then list[#list + 1] = { pre .. name, m.buffers[name] } end
    end
    for _, name in ipairs(m.mnames) do walk(m.modules[name], pre .. name .. ".") end
  end
  walk(self, "")
  return list
end

local function quote_list(list)
  local q = {}
  for i, k in ipairs(list) do q[i] = '"' .. k .. '"' end
  return table.concat(q, ", ")
end

--- m:load_state_dict(sd, {strict = true}) -> {missing_keys, unexpected_keys}
-- Copies every entry into the module's tensors (dtype converted, shapes
-- must match). With strict, missing or unexpected keys are an error that
-- names them; a shape mismatch is always an error.
function Module:load_state_dict(sd, opts)
  if type(sd) ~= "table" then
    error(fmt("load_state_dict: expected a table of tensors, got %s", type(sd)), 2)
  end
  local strict = not (opts and opts.strict == false)
  local expected = expected_entries(self)
  local known = {}
  local missing, unexpected, mismatch = {}, {}, {}
  for _, e in ipairs(expected) do
    local key, t = e[1], e[2]
    known[key] = true
    local v = rawget(sd, key)
    if v == nil then
      missing[#missing + 1] = key
    elseif not is_tensor(v) then
      mismatch[#mismatch + 1] = fmt('"%s": expected a tensor, got %s', key, type(v))
    elseif not same_shape(v.shape, t.shape) then
      mismatch[#mismatch + 1] = fmt("size mismatch for %s: copying a tensor of shape %s from the checkpoint, " ..
        "the shape in the current model is %s", key, shape_str(v.shape), shape_str(t.shape))
    end
  end
  for _, k in ipairs(M.keys(sd)) do
    if not known[k] then unexpected[#unexpected + 1] = tostring(k) end
  end
  local errs = {}
  if strict and #missing > 0 then errs[#errs + 1] = "missing keys: " .. quote_list(missing) end
  if strict and #unexpected > 0 then errs[#errs + 1] = "unexpected keys: " .. quote_list(unexpected) end
  for _, s in ipairs(mismatch) do errs[#errs + 1] = s end
  if #errs > 0 then
    error(fmt("load_state_dict: error(s) loading the state_dict of %s: %s", self.__name, table.concat(errs, "; ")), 2)
  end
  no_grad(function()
    for _, e in ipairs(expected) do
      local v = rawget(sd, e[1])
      if v ~= nil then e[2]:copy_(v) end
    end
  end)
  return { missing_keys = missing, unexpected_keys = unexpected }
end

--- m:save(path) -- the state_dict to a safetensors file (vl.save: atomic).
function Module:save(path)
  if type(path) ~= "string" then error(fmt("%s: save expects a file path, got %s", self:_short(), type(path)), 2) end
  vl.save(path, self:state_dict())
end

--- m:load(path, {strict = true}) -> {missing_keys, unexpected_keys}
-- load_state_dict of a safetensors file (ours or PyTorch's, dotted keys).
function Module:load(path, opts)
  if type(path) ~= "string" then error(fmt("%s: load expects a file path, got %s", self:_short(), type(path)), 2) end
  return self:load_state_dict(vl.load(path, { flat = true }), opts)
end

-- ---------------------------------------------------------------------------
-- Printing: PyTorch's repr tree
-- ---------------------------------------------------------------------------

--- m:extra_repr() -> string shown between the parentheses (override it).
function Module:extra_repr() return "" end

local function add_indent(s, n)
  local pad = string.rep(" ", n)
  return (s:gsub("\n", "\n" .. pad))
end

function Module:__repr()
  local m = rawget(self, "__m")
  local lines = {}
  local extra = self:extra_repr()
  if extra ~= "" then
    for line in (extra .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  end
  for _, name in ipairs(m.mnames) do
    lines[#lines + 1] = "(" .. name .. "): " .. add_indent(m.modules[name]:__repr(), 2)
  end
  local s = self.__name .. "("
  if #lines > 0 then
    if #lines == 1 and #m.mnames == 0 then
      s = s .. lines[1]
    else
      s = s .. "\n  " .. table.concat(lines, "\n  ") .. "\n"
    end
  end
  return s .. ")"
end

return M
