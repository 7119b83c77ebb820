-- vl.nn.containers — Sequential, ModuleList, ModuleDict (children named
-- "0", "1", ... as in PyTorch; 1-based on the Lua side), nn.call_child and
-- MLP (a Sequential of Linear, activation and Dropout layers).
local module = require "vl.nn.module"
local layers = require "vl.nn.layers"
local util = require "vl.nn.util"

local M = {}

local floor = math.floor
local fmt = string.format

local Module, is_module = module.Module, module.is_module
local type_desc = module._type_desc
local Linear, Dropout = layers.Linear, layers.Dropout
local check_int = util.check_int

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
M._child_error = child_error

--- nn.call_child(container, i, ...) -> container[i](...), with errors
-- naming the container and child (for custom ModuleList-driven forwards).
function M.call_child(container, i, ...)
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
M.Sequential = Sequential
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
M.ModuleList = ModuleList
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
M.ModuleDict = ModuleDict
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

-- MLP ---------------------------------------------------------------------------

--- nn.MLP(in_features, hidden_sizes, {activation = nn.ReLU, norm = nil, bias = true, dropout = 0})
-- torchvision.ops.MLP's layout (so its state_dicts load): for each hidden
-- size but the last: Linear, [norm(h)], activation(), Dropout(dropout);
-- then Linear to the last size and Dropout(dropout). A Sequential.
local MLP = Sequential:extend("MLP")
M.MLP = MLP
function MLP:init(in_features, hidden_sizes, opts)
  opts = opts or {}
  check_int(in_features, "in_features", "MLP", 1)
  if type(hidden_sizes) ~= "table" or #hidden_sizes == 0 then
    error("MLP: hidden_sizes must be a non-empty list of layer sizes", 3)
  end
  local act = opts.activation or layers.ReLU
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

return M
