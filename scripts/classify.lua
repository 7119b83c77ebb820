-- scripts/classify.lua — top-5 Fashion-MNIST classes from a model that
-- scripts/train_vit.lua saved.
--
--   build/vlua scripts/classify.lua vit_fmnist.safetensors idx:1 idx:42 shoe.npy batch.npy
--
-- MODEL: the weights (.safetensors) with their config sidecar (same name,
-- .json) next to them, or the .json itself.
-- Images:
--   idx:N or N       image N (1-based) of the Fashion-MNIST test split
--                    (/usr/share/datasets/fashion-mnist, dataset-fashion-mnist);
--                    its true label is shown
--   FILE.npy         a [28,28] image or a [N,28,28] / [N,1,28,28] stack;
--                    uint8 pixels 0..255, or float32/float64 in [0, 1]
-- Output, per image: its name, then five lines "  rank  class  probability".
-- Flags: --threads N, --top K (5), --help.
local vl = require "vl"
local data = require "vl.data"

local fmt = string.format

local SCRIPT_DIR = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")

local function fail(msg, ...) error(fmt("classify: " .. msg, ...), 0) end

local function parse(argv)
  local o = { top = 5, inputs = {} }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local name, val = a:match("^%-%-([%w%-]+)=(.*)$")
    name = name or a:match("^%-%-([%w%-]+)$")
    if name == "help" then
      o.help = true
    elseif name == "threads" or name == "top" then
      if val == nil then
        i = i + 1
        val = argv[i]
      end
      local n = math.tointeger(tonumber(val or ""))
      if n == nil or n < 1 then fail("--%s expects a positive integer, got '%s'", name, tostring(val)) end
      o[name] = n
    elseif name then
      fail("unknown flag '%s' (see --help)", a)
    elseif o.model == nil then
      o.model = a
    else
      o.inputs[#o.inputs + 1] = a
    end
    i = i + 1
  end
  if o.help then return o end
  if o.model == nil then fail("usage: classify.lua MODEL.safetensors image... (idx:N or FILE.npy; see --help)") end
  if #o.inputs == 0 then fail("no images given: pass idx:N (a test-set image) or FILE.npy after %s", o.model) end
  return o
end

-- An image spec -> list of {name, x = float [28,28] in [0,1], label = class or nil}.
local test_cache
local function images_of(spec)
  local n = spec:match("^idx:(.*)$") or (spec:match("^%-?%d+$") and spec)
  if n then
    local k = math.tointeger(tonumber(n))
    if k == nil then fail("'%s': expected idx:N with N an integer", spec) end
    if test_cache == nil then
      local ok, x, y = pcall(data.fashion_mnist_tensors, "test")
      if not ok then fail("%s", (tostring(x):gsub("^fashion_mnist: ", ""))) end
      test_cache = { x = x, y = y }
    end
    local count = test_cache.x:size(1)
    if k < 1 or k > count then fail("'%s': the Fashion-MNIST test split has images 1..%d", spec, count) end
    return { { name = "idx:" .. k, x = test_cache.x:select(1, k):float():div(255), label = test_cache.y:select(1, k):item() } }
  end
  if not spec:match("%.npy$") then fail("'%s' is neither idx:N nor a .npy file", spec) end
  local f = io.open(spec, "rb")
  if not f then fail("%s: no such file", spec) end
  f:close()
  local ok, t = pcall(vl.npy.load, spec)
  if not ok then fail("%s: %s", spec, tostring(t)) end
  local shape = t:size()
  local function bad()
    fail("%s holds an array of shape [%s]; expected [28,28], [N,28,28] or [N,1,28,28]", spec, table.concat(shape, ","))
  end
  if #shape == 2 then
    if shape[1] ~= 28 or shape[2] ~= 28 then bad() end
    t = t:reshape(1, 28, 28)
  elseif #shape == 3 then
    if shape[2] ~= 28 or shape[3] ~= 28 then bad() end
  elseif #shape == 4 then
    if shape[2] ~= 1 or shape[3] ~= 28 or shape[4] ~= 28 then bad() end
    t = t:reshape(shape[1], 28, 28)
  else
    bad()
  end
  if t:size(1) == 0 then fail("%s holds no images (shape [%s])", spec, table.concat(shape, ",")) end
  local x
  if t.dtype == "uint8" then
    x = t:float():div(255)
  elseif t.dtype == "float32" or t.dtype == "float64" then
    x = t:float()
    local lo, hi = x:min():item(), x:max():item()
    if lo ~= lo or hi ~= hi then fail("%s holds NaN pixels", spec) end
    if lo < -1e-3 or hi > 1 + 1e-3 then
      fail("%s: float pixels must lie in [0, 1], found %g..%g (save uint8 for 0..255)", spec, lo, hi)
    end
  else
    fail("%s holds %s; expected uint8 (0..255) or float32/float64 (0..1) pixels", spec, t.dtype)
  end
  local out = {}
  for i = 1, x:size(1) do
    out[i] = { name = x:size(1) == 1 and spec or fmt("%s[%d]", spec, i), x = x:select(1, i) }
  end
  return out
end

local function main(argv)
  local o = parse(argv)
  if o.help then
    local f = io.open(debug.getinfo(1, "S").source:sub(2), "r")
    if f then
      for line in f:lines() do
        if not line:match("^%-%-") then break end
        print((line:gsub("^%-%- ?", "")))
      end
      f:close()
    end
    return
  end
  if o.threads then vl.set_num_threads(o.threads) end
  local tv = assert(loadfile(SCRIPT_DIR .. "train_vit.lua"))("--module")
  local weights = o.model
  if weights:match("%.json$") then
    local f = io.open(weights, "r")
    if not f then fail("%s: no such file", weights) end
    local info = tv.json_decode(f:read("a"), weights)
    f:close()
    if type(info) ~= "table" or type(info.weights) ~= "string" then fail("%s names no weights file", weights) end
    weights = (weights:match("^(.*/)") or "") .. info.weights
  elseif not weights:match("%.safetensors$") then
    fail("MODEL must be the .safetensors weights or the .json config train_vit.lua wrote, got '%s'", weights)
  end
  local wf = io.open(weights, "rb")
  if not wf then fail("%s: no such model file (train one with scripts/train_vit.lua)", weights) end
  wf:close()
  local ok, model, info = pcall(tv.load_model, weights, "classify")
  if not ok then error(model, 0) end
  local inp = info.input or {}
  local mean, std = inp.mean or tv.MEAN, inp.std or tv.STD
  local classes = info.classes or data.fashion_mnist_classes
  local list = {}
  for _, spec in ipairs(o.inputs) do
    for _, im in ipairs(images_of(spec)) do list[#list + 1] = im end
  end
  local xs = {}
  for i, im in ipairs(list) do xs[i] = im.x end
  local x = vl.stack(xs, 1):sub(mean):div(std):unsqueeze(2)
  local probs = vl.no_grad(function() return vl.softmax(model(x), -1) end)
  local k = math.min(o.top, probs:size(2))
  local p, ix = vl.topk(probs, k, { dim = -1 })
  local pt, it = p:totable(), ix:totable()
  for i, im in ipairs(list) do
    if im.label then
      print(fmt("%s (label: %s)", im.name, classes[im.label] or tostring(im.label)))
    else
      print(im.name)
    end
    for r = 1, k do
      print(fmt("  %d  %-12s %.4f", r, classes[it[i][r]] or ("class " .. it[i][r]), pt[i][r]))
    end
  end
end

local ok, err = xpcall(main, function(e)
  if type(e) == "string" and e:match("^classify: ") then return e end
  return debug.traceback(tostring(e), 2)
end, arg or { ... })
if not ok then
  io.stderr:write(err, "\n")
  os.exit(2)
end
