-- vl.nn — neural network modules on top of the vl functional ops.
--
--   local nn = require "vl.nn"
--   local Net = nn.Module:extend("Net")
--   function Net:init(n)
--     self.fc1 = nn.Linear(n, 64)        -- registered as child "fc1"
--     self.act = nn.ReLU()
--     self.fc2 = nn.Linear(64, 10)
--   end
--   function Net:forward(x) return self.fc2(self.act(self.fc1(x))) end
--
-- Modules hold parameters and buffers only; gradients come from the C
-- autograd of the ops they call (no hand-written backward passes).
-- Naming follows PyTorch so that state_dicts are interchangeable: dotted
-- keys ("layers.0.weight"), Sequential/ModuleList children named "0", "1",
-- ... in keys, while Lua-side indexing is 1-based (seq[1] is child "0").
-- All indices a user passes (Embedding ids, padding_idx, class targets) are
-- 1-based, as everywhere in vl.
local vl = require "vl"

local nn = {}

local is_tensor = vl.is_tensor
local sqrt, floor = math.sqrt, math.floor
local fmt = string.format

-- ---------------------------------------------------------------------------
-- Small helpers
-- ---------------------------------------------------------------------------

local function shape_str(shape)
  local parts = {}
  for i = 1, #shape do parts[i] = tostring(shape[i]) end
  return "[" .. table.concat(parts, ", ") .. "]"
end
nn._shape_str = shape_str

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

-- ---------------------------------------------------------------------------
-- Parameters
-- ---------------------------------------------------------------------------

-- Tensors wrapped by nn.Parameter (weak keys: a parameter dropped by every
-- module is collected as usual).
local param_set = setmetatable({}, { __mode = "k" })

--- nn.Parameter(t [, requires_grad = true]) -> t, marked as a parameter.
-- Assigning it to a module field registers it. A tensor produced by a
-- recorded op is detached first (a parameter is always a leaf).
function nn.Parameter(t, requires_grad)
  if not is_tensor(t) then error("nn.Parameter: expected a tensor, got " .. type(t), 2) end
  if not t:is_leaf() then t = t:detach() end
  if requires_grad ~= false then t:requires_grad(true) end
  param_set[t] = true
  return t
end

--- nn.is_parameter(v) -> boolean
function nn.is_parameter(v) return is_tensor(v) and param_set[v] == true end

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
function nn.keys(t)
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
nn.Module = Module

local function is_module(v)
  return type(v) == "table" and rawget(v, "__m") ~= nil
end
nn.is_module = is_module

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

function Module.__newindex(self, k, v)
  local m = rawget(self, "__m")
  if type(k) ~= "string" then
    local setitem = class_of(self).__setitem
    if setitem then return setitem(self, k, v) end
    error(fmt("%s: cannot set field %s (field names are strings)", self:_short(), tostring(k)), 2)
  end
  if is_module(v) then
    self:add_module(k, v)
  elseif nn.is_parameter(v) then
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
  if not param_set[t] then t = nn.Parameter(t) end
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
          m.params[name] = nn.Parameter(q:detach(), rg)
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
  for _, k in ipairs(nn.keys(sd)) do
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

-- ---------------------------------------------------------------------------
-- Containers
-- ---------------------------------------------------------------------------

-- Error from child number i of a container, rewritten to say where it
-- happened: "Sequential[3] (Linear 128->10): input has 64 features, ...".
-- Numbers are 1-based (seq[3]); nested containers join with " > ".
local function child_error(container, i, child, err)
  if type(err) ~= "string" then return err end
  local where = fmt("%s[%d]", container.__name, i)
  local short = child:_short()
  local cname = child.__name
  if err:sub(1, #cname + 1) == cname .. "[" then
    return where .. " > " .. err
  end
  if err:sub(1, #short + 2) == short .. ": " then err = err:sub(#short + 3) end
  return fmt("%s (%s): %s", where, short, err)
end
nn._child_error = child_error

--- nn.call_child(container, i, ...) -> container[i](...), with errors
-- naming the container and child (for custom ModuleList-driven forwards).
function nn.call_child(container, i, ...)
  local child = container[i]
  if child == nil then
    error(fmt("%s: no child %s (it has %d)", container:_short(), tostring(i), #container), 2)
  end
  local res = table.pack(pcall(child, ...))
  if not res[1] then error(child_error(container, i, child, res[2]), 0) end
  return table.unpack(res, 2, res.n)
end

-- Position-indexed containers (Sequential, ModuleList): children named
-- "0", "1", ... in state_dict keys, list[1] is the first.
local function idx_of(self, i)
  local n = #rawget(self, "__m").mnames
  if math.type(i) ~= "integer" then
    if type(i) == "number" and i == floor(i) then i = math.tointeger(i) else return nil end
  end
  if i < 0 then i = n + i + 1 end
  if i < 1 or i > n then return nil end
  return i, n
end

local function list_getitem(self, i)
  local j = idx_of(self, i)
  if j == nil then return nil end
  local m = rawget(self, "__m")
  return m.modules[m.mnames[j]]
end

local function list_setitem(self, i, v)
  local m = rawget(self, "__m")
  local j = idx_of(self, i)
  if j == nil then
    error(fmt("%s: index %s out of range (it has %d children)", self:_short(), tostring(i), #m.mnames), 2)
  end
  if not is_module(v) then
    error(fmt("%s: item %d must be an nn.Module, got %s", self:_short(), j, type_desc(v)), 2)
  end
  m.modules[m.mnames[j]] = v
end

local function list_len(self) return #rawget(self, "__m").mnames end

-- Renames children "0".."n-1" after an insertion.
local function renumber(self)
  local m = rawget(self, "__m")
  local mods = {}
  for i, name in ipairs(m.mnames) do mods[i] = m.modules[name] end
  m.modules, m.mnames = {}, {}
  for i, mod in ipairs(mods) do
    local name = tostring(i - 1)
    m.mnames[i] = name
    m.modules[name] = mod
  end
end

local function list_append(self, mod)
  if not is_module(mod) then
    error(fmt("%s: append expects an nn.Module, got %s", self:_short(), type_desc(mod)), 2)
  end
  self:add_module(tostring(#self), mod)
  return self
end

local function list_insert(self, i, mod)
  local n = #self
  if math.type(i) ~= "integer" or i < 1 or i > n + 1 then
    error(fmt("%s: insert position must be an integer in 1..%d, got %s", self:_short(), n + 1, tostring(i)), 2)
  end
  if not is_module(mod) then
    error(fmt("%s: insert expects an nn.Module, got %s", self:_short(), type_desc(mod)), 2)
  end
  local m = rawget(self, "__m")
  local tmp = "__insert"
  m.modules[tmp] = mod
  table.insert(m.mnames, i, tmp)
  renumber(self)
  return self
end

--- nn.Sequential(m1, m2, ...) or nn.Sequential({m1, m2, ...}) or
-- nn.Sequential({{"name", m1}, {"name2", m2}}) -- calls its children in
-- order. seq[1] is the first child (its state_dict key prefix is "0.").
local Sequential = Module:extend("Sequential")
nn.Sequential = Sequential
Sequential.__getitem = list_getitem
Sequential.__setitem = list_setitem
Sequential.__len = list_len

function Sequential:init(...)
  local n = select("#", ...)
  local args = { ... }
  if n == 1 and type(args[1]) == "table" and not is_module(args[1]) then
    local list = args[1]
    for i, e in ipairs(list) do
      if is_module(e) then
        self:add_module(tostring(i - 1), e)
      elseif type(e) == "table" and type(e[1]) == "string" and is_module(e[2]) then
        self:add_module(e[1], e[2])
      else
        error(fmt("Sequential: entry %d must be a module or a {name, module} pair, got %s", i, type_desc(e)), 3)
      end
    end
    return
  end
  for i = 1, n do
    if not is_module(args[i]) then
      error(fmt("Sequential: argument %d must be an nn.Module, got %s", i, args[i] == nil and "nil" or type_desc(args[i])), 3)
    end
    self:add_module(tostring(i - 1), args[i])
  end
end

Sequential.append = list_append
Sequential.add = list_append
Sequential.insert = list_insert

function Sequential:forward(x)
  local m = rawget(self, "__m")
  for i, name in ipairs(m.mnames) do
    local child = m.modules[name]
    local ok, y = pcall(child, x)
    if not ok then error(child_error(self, i, child, y), 0) end
    x = y
  end
  return x
end

--- nn.ModuleList({m1, m2, ...}) -- holds modules (registered, indexed
-- list[1..n], ipairs works); its owner's forward iterates over it.
local ModuleList = Module:extend("ModuleList")
nn.ModuleList = ModuleList
ModuleList.__getitem = list_getitem
ModuleList.__setitem = list_setitem
ModuleList.__len = list_len
ModuleList.append = list_append
ModuleList.insert = list_insert

--- list:extend({m...}) -> list: appends each module.
local function extend_with(self, list)
  if type(list) ~= "table" or is_module(list) and not list:is_a(ModuleList) then
    error(fmt("%s: expected a list of modules, got %s", self.__name, type_desc(list)), 2)
  end
  for i = 1, #list do
    local mod = list[i]
    if not is_module(mod) then
      error(fmt("%s: item %d must be an nn.Module, got %s", self.__name, i, mod == nil and "nil" or type_desc(mod)), 2)
    end
    self:append(mod)
  end
  return self
end
ModuleList.extend_with = extend_with
Sequential.extend_with = extend_with

function ModuleList:init(list)
  if list ~= nil then extend_with(self, list) end
end

function ModuleList:forward()
  error("ModuleList: not callable; iterate over it in the owner's forward " ..
    "(nn.call_child(list, i, x) adds the child's position to errors)", 2)
end

--- nn.ModuleDict(tbl) -- modules by name; a plain table's keys are sorted,
-- a list of {name, module} pairs keeps its order. md.name / md["name"].
local ModuleDict = Module:extend("ModuleDict")
nn.ModuleDict = ModuleDict
ModuleDict.__len = list_len

function ModuleDict:init(tbl)
  if tbl == nil then return end
  if type(tbl) ~= "table" or is_module(tbl) then
    error(fmt("ModuleDict: expected a table of modules, got %s", type_desc(tbl)), 3)
  end
  if #tbl > 0 then
    for i, e in ipairs(tbl) do
      if type(e) ~= "table" or type(e[1]) ~= "string" or not is_module(e[2]) then
        error(fmt("ModuleDict: entry %d must be a {name, module} pair", i), 3)
      end
      self:add_module(e[1], e[2])
    end
  else
    local keys = {}
    for k in pairs(tbl) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      if type(k) ~= "string" or not is_module(tbl[k]) then
        error(fmt("ModuleDict: entry %s must map a string to an nn.Module", tostring(k)), 3)
      end
      self:add_module(k, tbl[k])
    end
  end
end

--- md:keys() -> list of names; md:items() -> iterator of (name, module).
function ModuleDict:keys()
  local r = {}
  for i, n in ipairs(rawget(self, "__m").mnames) do r[i] = n end
  return r
end
ModuleDict.items = Module.named_children
ModuleDict.values = Module.children
function ModuleDict:contains(name) return rawget(self, "__m").modules[name] ~= nil end

function ModuleDict:forward()
  error("ModuleDict: not callable; call its modules in the owner's forward", 2)
end

-- ---------------------------------------------------------------------------
-- nn.init: initialisation schemes (in place, without recording gradients)
-- ---------------------------------------------------------------------------

local init = {}
nn.init = init

local function check_tensor(t, ctx)
  if not is_tensor(t) then error(fmt("%s: expected a tensor, got %s", ctx, type(t)), 3) end
end

--- nn.init.calculate_gain(nonlinearity [, param]) -> number (PyTorch's table).
function init.calculate_gain(nonlinearity, param)
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
function init.calculate_fan_in_and_fan_out(t)
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
  local fi, fo = init.calculate_fan_in_and_fan_out(t)
  if mode == nil or mode == "fan_in" then return fi end
  if mode == "fan_out" then return fo end
  error(fmt("%s: mode must be \"fan_in\" or \"fan_out\", got %s", ctx, tostring(mode)), 3)
end

--- nn.init.uniform_(t, a = 0, b = 1) -> t
function init.uniform_(t, a, b)
  check_tensor(t, "init.uniform_")
  no_grad(function() t:uniform_(a or 0, b or 1) end)
  return t
end

--- nn.init.normal_(t, mean = 0, std = 1) -> t
function init.normal_(t, mean, std)
  check_tensor(t, "init.normal_")
  no_grad(function() t:normal_(mean or 0, std or 1) end)
  return t
end

--- nn.init.constant_(t, v) / zeros_(t) / ones_(t) -> t
function init.constant_(t, v)
  check_tensor(t, "init.constant_")
  if type(v) ~= "number" then error("init.constant_: value must be a number, got " .. type(v), 2) end
  no_grad(function() t:fill_(v) end)
  return t
end
function init.zeros_(t) return init.constant_(t, 0) end
function init.ones_(t) return init.constant_(t, 1) end

--- nn.init.xavier_uniform_(t, {gain = 1}) -> t: U(-a, a), a = gain*sqrt(6/(fan_in+fan_out)).
function init.xavier_uniform_(t, opts)
  check_tensor(t, "init.xavier_uniform_")
  local gain = opts and opts.gain or 1
  local fi, fo = fan(t, "fan_in", "init.xavier_uniform_"), fan(t, "fan_out", "init.xavier_uniform_")
  local std = gain * sqrt(2 / (fi + fo))
  local a = sqrt(3) * std
  return init.uniform_(t, -a, a)
end

--- nn.init.xavier_normal_(t, {gain = 1}) -> t: N(0, gain*sqrt(2/(fan_in+fan_out))).
function init.xavier_normal_(t, opts)
  check_tensor(t, "init.xavier_normal_")
  local gain = opts and opts.gain or 1
  local fi, fo = fan(t, "fan_in", "init.xavier_normal_"), fan(t, "fan_out", "init.xavier_normal_")
  return init.normal_(t, 0, gain * sqrt(2 / (fi + fo)))
end

--- nn.init.kaiming_uniform_(t, {a = 0, mode = "fan_in", nonlinearity = "leaky_relu"}) -> t
-- U(-b, b), b = gain * sqrt(3 / fan).
function init.kaiming_uniform_(t, opts)
  check_tensor(t, "init.kaiming_uniform_")
  opts = opts or {}
  local f = fan(t, opts.mode, "init.kaiming_uniform_")
  if f == 0 then return t end
  local gain = init.calculate_gain(opts.nonlinearity or "leaky_relu", opts.a or 0)
  local bound = sqrt(3) * gain / sqrt(f)
  return init.uniform_(t, -bound, bound)
end

--- nn.init.kaiming_normal_(t, {a = 0, mode = "fan_in", nonlinearity = "leaky_relu"}) -> t
-- N(0, gain / sqrt(fan)).
function init.kaiming_normal_(t, opts)
  check_tensor(t, "init.kaiming_normal_")
  opts = opts or {}
  local f = fan(t, opts.mode, "init.kaiming_normal_")
  if f == 0 then return t end
  local gain = init.calculate_gain(opts.nonlinearity or "leaky_relu", opts.a or 0)
  return init.normal_(t, 0, gain / sqrt(f))
end

-- Draws left outside [a, b] by the truncated normal before giving up.
local TRUNC_NORMAL_MAX_ROUNDS = 64

--- nn.init.trunc_normal_(t, {mean = 0, std = 1, a = -2, b = 2}) -> t
-- N(mean, std) restricted to [a, b] (absolute bounds, as PyTorch), by
-- redrawing the values that fall outside.
function init.trunc_normal_(t, opts)
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
  init.kaiming_uniform_(weight, { a = sqrt(5) })
  if bias then
    local fi = init.calculate_fan_in_and_fan_out(weight)
    local bound = fi > 0 and 1 / sqrt(fi) or 0
    init.uniform_(bias, -bound, bound)
  end
end
init._reset_linear_like = reset_linear_like

-- ---------------------------------------------------------------------------
-- Layers
-- ---------------------------------------------------------------------------

local function dtype_of(opts) return opts and opts.dtype or "float32" end

local function new_param(shape, opts)
  return nn.Parameter(vl.empty(shape, { dtype = dtype_of(opts) }))
end

local function check_input(self, x, what)
  if not is_tensor(x) then self:_fail("%s must be a tensor, got %s", what or "input", type(x)) end
end

local function bool_str(b) return b and "true" or "false" end

-- vl functional op, with a clear error while it is missing from this build.
local function op(name)
  local f = vl[name]
  if f == nil then error(fmt("vl.%s is not available in this build", name), 3) end
  return f
end

--- nn.Linear(in_features, out_features, {bias = true, dtype}) -- y = x W^T + b.
local Linear = Module:extend("Linear")
nn.Linear = Linear

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
nn.Conv1d = Conv1d
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
nn.Conv2d = Conv2d
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
nn.ConvTranspose2d = ConvTranspose2d
function ConvTranspose2d:init(i, o, k, opts) conv_setup(self, "ConvTranspose2d", 2, i, o, k, opts, true) end
ConvTranspose2d.reset_parameters = Conv1d.reset_parameters
ConvTranspose2d.extra_repr = conv_repr
ConvTranspose2d._short = conv_short
function ConvTranspose2d:forward(x)
  conv_check(self, x, 2)
  return op("conv_transpose2d")(x, self.weight, self.bias, conv_opts(self))
end

-- Pooling ---------------------------------------------------------------------

--- nn.MaxPool2d(kernel_size, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode, return_indices})
-- With return_indices the module returns (values, 1-based indices).
local MaxPool2d = Module:extend("MaxPool2d")
nn.MaxPool2d = MaxPool2d
function MaxPool2d:init(kernel_size, opts)
  opts = opts or {}
  self.kernel_size = kernel_size
  ntuple(kernel_size, 2, "kernel_size", "MaxPool2d")
  self.stride = opts.stride or kernel_size
  self.padding = opts.padding or 0
  self.dilation = opts.dilation or 1
  self.ceil_mode = opts.ceil_mode or false
  self.return_indices = opts.return_indices or false
end
function MaxPool2d:extra_repr()
  return fmt("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", tuple_str(self.kernel_size),
    tuple_str(self.stride), tuple_str(self.padding), tuple_str(self.dilation), bool_str(self.ceil_mode))
end
function MaxPool2d:forward(x)
  check_input(self, x)
  return op("max_pool2d")(x, self.kernel_size, { stride = self.stride, padding = self.padding,
    dilation = self.dilation, ceil_mode = self.ceil_mode, return_indices = self.return_indices })
end

--- nn.AvgPool2d(kernel_size, {stride = kernel_size, padding = 0, ceil_mode, count_include_pad = true})
local AvgPool2d = Module:extend("AvgPool2d")
nn.AvgPool2d = AvgPool2d
function AvgPool2d:init(kernel_size, opts)
  opts = opts or {}
  ntuple(kernel_size, 2, "kernel_size", "AvgPool2d")
  self.kernel_size = kernel_size
  self.stride = opts.stride or kernel_size
  self.padding = opts.padding or 0
  self.ceil_mode = opts.ceil_mode or false
  self.count_include_pad = opts.count_include_pad ~= false
end
function AvgPool2d:extra_repr()
  return fmt("kernel_size=%s, stride=%s, padding=%s", tuple_str(self.kernel_size), tuple_str(self.stride),
    tuple_str(self.padding))
end
function AvgPool2d:forward(x)
  check_input(self, x)
  return op("avg_pool2d")(x, self.kernel_size, { stride = self.stride, padding = self.padding,
    ceil_mode = self.ceil_mode, count_include_pad = self.count_include_pad })
end

--- nn.AdaptiveAvgPool2d(output_size) -- output_size n or {h, w}.
local AdaptiveAvgPool2d = Module:extend("AdaptiveAvgPool2d")
nn.AdaptiveAvgPool2d = AdaptiveAvgPool2d
function AdaptiveAvgPool2d:init(output_size)
  ntuple(output_size, 2, "output_size", "AdaptiveAvgPool2d")
  self.output_size = output_size
end
function AdaptiveAvgPool2d:extra_repr() return "output_size=" .. tuple_str(self.output_size) end
function AdaptiveAvgPool2d:forward(x)
  check_input(self, x)
  return op("adaptive_avg_pool2d")(x, self.output_size)
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
    self.weight = nn.Parameter(vl.ones({ self.num_features }, { dtype = dt }))
    self.bias = nn.Parameter(vl.zeros({ self.num_features }, { dtype = dt }))
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
nn.BatchNorm1d = BatchNorm1d
function BatchNorm1d:init(n, opts) bn_init(self, "BatchNorm1d", n, opts) end
function BatchNorm1d:forward(x) return bn_forward(self, x, { [2] = true, [3] = true }, "a 2D or 3D") end
BatchNorm1d.extra_repr = bn_repr
BatchNorm1d.reset_running_stats = bn_reset_running_stats
BatchNorm1d.reset_parameters = bn_reset_parameters
function BatchNorm1d:_short() return fmt("%s %d", self.__name, self.num_features) end

--- nn.BatchNorm2d(num_features, {...as BatchNorm1d}) -- input [N, C, H, W].
local BatchNorm2d = Module:extend("BatchNorm2d")
nn.BatchNorm2d = BatchNorm2d
function BatchNorm2d:init(n, opts) bn_init(self, "BatchNorm2d", n, opts) end
function BatchNorm2d:forward(x) return bn_forward(self, x, { [4] = true }, "a 4D") end
BatchNorm2d.extra_repr = bn_repr
BatchNorm2d.reset_running_stats = bn_reset_running_stats
BatchNorm2d.reset_parameters = bn_reset_parameters
BatchNorm2d._short = BatchNorm1d._short

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
nn.LayerNorm = LayerNorm
function LayerNorm:init(normalized_shape, opts)
  opts = opts or {}
  self.normalized_shape = shape_arg(normalized_shape, "LayerNorm")
  self.eps = opts.eps or 1e-5
  self.elementwise_affine = opts.elementwise_affine ~= false
  local dt = dtype_of(opts)
  if self.elementwise_affine then
    self.weight = nn.Parameter(vl.ones(self.normalized_shape, { dtype = dt }))
    if opts.bias ~= false then self.bias = nn.Parameter(vl.zeros(self.normalized_shape, { dtype = dt })) end
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
nn.RMSNorm = RMSNorm
function RMSNorm:init(normalized_shape, opts)
  opts = opts or {}
  self.normalized_shape = shape_arg(normalized_shape, "RMSNorm")
  self.eps = opts.eps
  self.elementwise_affine = opts.elementwise_affine ~= false
  if self.elementwise_affine then
    self.weight = nn.Parameter(vl.ones(self.normalized_shape, { dtype = dtype_of(opts) }))
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
nn.GroupNorm = GroupNorm
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
    self.weight = nn.Parameter(vl.ones({ self.num_channels }, { dtype = dt }))
    self.bias = nn.Parameter(vl.zeros({ self.num_channels }, { dtype = dt }))
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
nn.Dropout = Dropout
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
nn.Embedding = Embedding
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
    self.weight = nn.Parameter(opts._weight)
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
nn.Identity = Identity
function Identity:init() end
function Identity:forward(x) return x end

--- nn.Flatten(start_dim = 2, end_dim = -1) -- 1-based dims (keeps the batch dim).
local Flatten = Module:extend("Flatten")
nn.Flatten = Flatten
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
  nn[name] = cls
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
nn.GELU = GELU
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
nn.Softmax = Softmax
function Softmax:init(dim) self.dim = dim or -1 end
function Softmax:extra_repr() return "dim=" .. self.dim end
function Softmax:forward(x)
  check_input(self, x)
  return op("softmax")(x, self.dim)
end
local LogSoftmax = Module:extend("LogSoftmax")
nn.LogSoftmax = LogSoftmax
LogSoftmax.init = Softmax.init
LogSoftmax.extra_repr = Softmax.extra_repr
function LogSoftmax:forward(x)
  check_input(self, x)
  return op("log_softmax")(x, self.dim)
end

-- MLP ---------------------------------------------------------------------------

--- nn.MLP(in_features, hidden_sizes, {activation = nn.ReLU, norm = nil, bias = true, dropout = 0})
-- torchvision.ops.MLP's layout (so its state_dicts load): for each hidden
-- size but the last: Linear, [norm(h)], activation(), Dropout(dropout);
-- then Linear to the last size and Dropout(dropout). A Sequential.
local MLP = Sequential:extend("MLP")
nn.MLP = MLP
function MLP:init(in_features, hidden_sizes, opts)
  opts = opts or {}
  check_int(in_features, "in_features", "MLP", 1)
  if type(hidden_sizes) ~= "table" or #hidden_sizes == 0 then
    error("MLP: hidden_sizes must be a non-empty list of layer sizes", 3)
  end
  local act = opts.activation or nn.ReLU
  local p = opts.dropout or 0
  local d = in_features
  for i = 1, #hidden_sizes - 1 do
    local h = check_int(hidden_sizes[i], "hidden_sizes[" .. i .. "]", "MLP", 1)
    self:append(Linear(d, h, { bias = opts.bias, dtype = opts.dtype }))
    if opts.norm then self:append(opts.norm(h)) end
    self:append(act())
    self:append(Dropout(p))
    d = h
  end
  local last = check_int(hidden_sizes[#hidden_sizes], "hidden_sizes[" .. #hidden_sizes .. "]", "MLP", 1)
  self:append(Linear(d, last, { bias = opts.bias, dtype = opts.dtype }))
  self:append(Dropout(p))
end

-- ---------------------------------------------------------------------------
-- Losses as modules
-- ---------------------------------------------------------------------------

local REDUCTIONS = { mean = true, sum = true, none = true }

local function loss_class(name, fn_name, fields, buffers)
  local cls = Module:extend(name)
  nn[name] = cls
  function cls:init(opts)
    opts = opts or {}
    self.reduction = opts.reduction or "mean"
    if not REDUCTIONS[self.reduction] then
      error(fmt("%s: reduction must be \"mean\", \"sum\" or \"none\", got %s", name, tostring(self.reduction)), 3)
    end
    for _, f in ipairs(fields or {}) do self[f] = opts[f] end
    for _, b in ipairs(buffers or {}) do
      if opts[b] ~= nil then
        if not is_tensor(opts[b]) then error(fmt("%s: %s must be a tensor, got %s", name, b, type(opts[b])), 3) end
        self:register_buffer(b, opts[b])
      end
    end
  end
  function cls:forward(input, target)
    check_input(self, input)
    check_input(self, target, "target")
    local o = { reduction = self.reduction }
    for _, f in ipairs(fields or {}) do o[f] = self[f] end
    for _, b in ipairs(buffers or {}) do o[b] = self[b] end
    return op(fn_name)(input, target, o)
  end
  function cls:extra_repr()
    return self.reduction == "mean" and "" or "reduction=" .. self.reduction
  end
  return cls
end

--- nn.CrossEntropyLoss({weight, ignore_index = -100, reduction = "mean", label_smoothing = 0})
-- targets: 1-based class indices or class probabilities.
loss_class("CrossEntropyLoss", "cross_entropy", { "ignore_index", "label_smoothing" }, { "weight" })
--- nn.NLLLoss({weight, ignore_index = -100, reduction})
loss_class("NLLLoss", "nll_loss", { "ignore_index" }, { "weight" })
--- nn.MSELoss({reduction}), nn.L1Loss({reduction}), nn.SmoothL1Loss({beta = 1, reduction})
loss_class("MSELoss", "mse_loss")
loss_class("L1Loss", "l1_loss")
loss_class("SmoothL1Loss", "smooth_l1_loss", { "beta" })
--- nn.BCEWithLogitsLoss({weight, pos_weight, reduction})
loss_class("BCEWithLogitsLoss", "binary_cross_entropy_with_logits", nil, { "weight", "pos_weight" })
--- nn.KLDivLoss({reduction = "mean", log_target = false})
loss_class("KLDivLoss", "kl_div", { "log_target" })

--- nn.CosineSimilarity({dim = 2, eps = 1e-8}) -- module form of vl.cosine_similarity.
local CosineSimilarity = Module:extend("CosineSimilarity")
nn.CosineSimilarity = CosineSimilarity
function CosineSimilarity:init(opts)
  opts = opts or {}
  self.dim = opts.dim or 2
  self.eps = opts.eps or 1e-8
end
function CosineSimilarity:forward(a, b)
  check_input(self, a)
  check_input(self, b)
  return op("cosine_similarity")(a, b, { dim = self.dim, eps = self.eps })
end

-- ---------------------------------------------------------------------------
-- nn.functional: the vl functional ops, re-exported (looked up on use, so
-- ops added to vl later are seen).
-- ---------------------------------------------------------------------------

local FUNCTIONAL = {
  "linear", "conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
  "batch_norm", "layer_norm", "rms_norm", "group_norm", "dropout", "embedding",
  "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits",
  "kl_div", "cosine_similarity",
  "relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid", "softmax", "log_softmax", "softplus",
}
local functional_set = {}
for _, n in ipairs(FUNCTIONAL) do functional_set[n] = true end

nn.functional = setmetatable({ names = FUNCTIONAL }, {
  __index = function(_, k)
    if functional_set[k] then return vl[k] end
    return nil
  end,
})

return nn
