-- tests/chaos_driver.lua — random-argument crash hunt over the whole Lua API.
--
--   build/vlua tests/chaos_driver.lua [SEED [COUNT]]
--
-- Calls every function of the `vl` table (and of its sub-tables) and every
-- tensor method (vl.Tensor) with random argument lists, each call inside
-- pcall. An error is fine; a crash (segfault, abort, sanitizer report) is a
-- bug. Before each call its description goes to stderr, flushed, so the last
-- stderr line before a crash names the culprit call. On success the last
-- stdout line is "done N calls". Deterministic: everything comes from Lua's
-- math.random seeded with SEED.
local vl = require "vl"

local SEED = tonumber(arg and arg[1]) or 1
local COUNT = tonumber(arg and arg[2]) or 20000
local MEMORY_CAP = 256 * 1024 * 1024 -- bytes: huge sizes must error, not swap
local MAX_ARGS = 5                     -- random argument lists have 0..MAX_ARGS values

math.randomseed(SEED)
vl.manual_seed(SEED)
vl.set_memory_limit(MEMORY_CAP)
local THREADS = vl.get_num_threads()

-- Functions that block, write files or change the process: never called.
local SKIP = {
  save = true, write_file = true, set_memory_limit = true,
  ["npy.save"] = true, ["safetensors.save"] = true,
}
local function skipped(name)
  return SKIP[name] or name:find("progress", 1, true) ~= nil
end

-- The callables: {name, fn, is_method}.
local targets = {}
local function collect(prefix, tbl)
  local names = {}
  for k, v in pairs(tbl) do
    if type(k) == "string" then names[#names + 1] = k end
  end
  table.sort(names) -- pairs order is not deterministic
  for _, k in ipairs(names) do
    local v = tbl[k]
    local name = prefix .. k
    if type(v) == "function" and not skipped(name) then
      targets[#targets + 1] = { name = name, fn = v }
    end
  end
end
collect("", vl)
for _, sub in ipairs({ "npy", "safetensors" }) do
  if type(vl[sub]) == "table" then collect(sub .. ".", vl[sub]) end
end
local nfuncs = #targets
do
  local names = {}
  for k, v in pairs(vl.Tensor) do
    if type(k) == "string" and type(v) == "function" then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do
    if not skipped(k) then
      targets[#targets + 1] = { name = "Tensor:" .. k, fn = vl.Tensor[k], method = true }
    end
  end
end

-- Tensors: every dtype x a set of shapes, plus views. Fresh per call (in-place
-- methods and requires_grad would otherwise leak state between calls).
local DTYPES = { "float32", "float64", "int64", "int32", "uint8", "bool", "float16", "bfloat16" }
local SHAPES = { {}, { 0 }, { 3 }, { 2, 3 }, { 1, 3 }, { 3, 1 }, { 2, 0, 3 },
  { 2, 3, 4 }, { 1, 2, 4, 4 }, { 2, 1, 5 } }
-- Element values: normal ones, and ones that stress index and float paths.
local FILLS = { 0, 1, -1, 2, 0 / 0, math.huge, -math.huge, 1e30, -2 ^ 40, 255 }
local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

local function make_tensor()
  local dt = DTYPES[math.random(#DTYPES)]
  local kind = math.random(10)
  local t, desc
  if kind == 9 then
    t = (vl.randn(3, 2) * 3):to(dt):t()
    desc = "T(" .. dt .. " [3,2]:t())"
  elseif kind == 10 then
    t = (vl.randn(3, 1) * 3):to(dt):expand(3, 4)
    desc = "T(" .. dt .. " [3,1]:expand(3,4))"
  else
    local s = SHAPES[math.random(#SHAPES)]
    if math.random(5) == 1 then
      local f = FILLS[math.random(#FILLS)]
      t = vl.full(s, f, { dtype = "float64" }):to(dt)
      desc = "T(" .. dt .. " " .. shape_str(s) .. " =" .. tostring(f) .. ")"
    else
      t = (vl.randn(s) * 3):to(dt)
      desc = "T(" .. dt .. " " .. shape_str(s) .. ")"
    end
  end
  if (dt == "float64" or dt == "float32") and math.random(4) == 1 then
    t = t:detach():requires_grad(true)
    desc = desc:sub(1, -2) .. " grad)"
  end
  return t, desc
end

local function fn_arg(...) return ... end

-- Plain values: {value, description}.
local PLAIN = {
  { nil, "nil" }, { true, "true" }, { 0, "0" }, { 1, "1" }, { -1, "-1" }, { 2, "2" },
  { 3, "3" }, { 1.5, "1.5" }, { -7, "-7" }, { math.huge, "inf" }, { -math.huge, "-inf" },
  { 0 / 0, "nan" }, { 2 ^ 31, "2^31" }, { 2 ^ 62, "2^62" },
  { 1 << 31, "1<<31" }, { 1 << 62, "1<<62" }, { -(1 << 62), "-(1<<62)" },
  { math.mininteger, "mininteger" }, { math.maxinteger, "maxinteger" }, { "x", '"x"' }, { "float64", '"float64"' },
}
local TABLES = { -- built fresh: callees may modify them
  function() return {}, "{}" end,
  function() return { 1 }, "{1}" end,
  function() return { 2, 3 }, "{2,3}" end,
  function() return { -1 }, "{-1}" end,
  function() return { 0 }, "{0}" end,
  function() return { 1, { 2 } }, "{1,{2}}" end,
}
local OPT_KEYS = { "dim", "keepdim", "dtype", "stride", "padding", "p", "reduction",
  "descending", "unbiased", "correction", "eps", "weight", "bias", "ignore_index",
  "label_smoothing", "dilation", "groups", "kernel_size", "output_padding",
  "retain_graph", "training", "momentum", "beta", "largest", "sorted", "min", "max",
  "generator", "approximate", "ceil_mode", "count_include_pad", "dims", "size" }

local random_value -- forward

local function make_opts(depth)
  local o, parts = {}, {}
  for _ = 1, math.random(0, 3) do
    local k = OPT_KEYS[math.random(#OPT_KEYS)]
    local v, d = random_value(depth + 1)
    o[k] = v
    parts[#parts + 1] = k .. "=" .. d
  end
  return o, "{" .. table.concat(parts, ",") .. "}"
end

local SMALL = { 1, 2, 3, -1, -2, 0, 1 << 62, math.mininteger }
local plausible = false -- per call: favour arguments an op may accept

function random_value(depth)
  depth = depth or 0
  local r = math.random(100)
  if plausible then
    if r <= 50 then return make_tensor() end
    if r <= 85 then
      local v = SMALL[math.random(#SMALL)]
      return v, tostring(v)
    end
    r = math.random(76, 100)
  end
  if r <= 40 then
    return make_tensor()
  elseif r <= 75 then
    local p = PLAIN[math.random(#PLAIN)]
    return p[1], p[2]
  elseif r <= 85 then
    return TABLES[math.random(#TABLES)]()
  elseif r <= 88 then
    return fn_arg, "function"
  elseif depth < 1 and r <= 95 then
    return make_opts(depth)
  elseif depth < 1 then -- a table of tensors (cat, stack, ...)
    local a, da = make_tensor()
    local b, db = make_tensor()
    return { a, b }, "{" .. da .. "," .. db .. "}"
  else
    return 1, "1"
  end
end

local function restore()
  if vl.memory_limit() ~= MEMORY_CAP then vl.set_memory_limit(MEMORY_CAP) end
  if vl.get_num_threads() ~= THREADS then vl.set_num_threads(THREADS) end
  if not vl.is_grad_enabled() then vl.set_grad_enabled(true) end
end

local stderr = io.stderr
local calls, succeeded = 0, 0
for i = 1, COUNT do
  local tgt = targets[math.random(#targets)]
  plausible = math.random(2) == 1
  local n = math.random(0, plausible and 3 or MAX_ARGS)
  local args, descs = {}, {}
  local first = 1
  if tgt.method and math.random(10) > 1 then
    args[1], descs[1] = make_tensor()
    first = 2
    n = n + 1
  end
  for j = first, n do
    args[j], descs[j] = random_value(0)
  end
  stderr:write(string.format("#%d seed=%d %s(%s)\n", i, SEED, tgt.name,
    table.concat(descs, ", ", 1, n)))
  stderr:flush()
  local ok, err = pcall(tgt.fn, table.unpack(args, 1, n))
  -- Exercise the backward function of whatever graph the call recorded.
  if ok and vl.is_tensor(err) and err.grad_fn and math.random(2) == 1 then
    stderr:write("  backward of the result\n")
    stderr:flush()
    pcall(function() err:sum():backward() end)
  end
  if not ok and type(err) ~= "string" then
    -- errors must be messages, not stray values
    if not (type(err) == "table" or err == nil) then
      stderr:write("non-string error: " .. tostring(err) .. "\n")
    end
  end
  restore()
  calls = calls + 1
  if ok then succeeded = succeeded + 1 end
  if i % 64 == 0 then collectgarbage() end
end
collectgarbage()
collectgarbage()
print(string.format("done %d calls (%d returned normally)", calls, succeeded))
