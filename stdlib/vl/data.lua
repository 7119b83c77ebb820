-- vl.data — datasets, a DataLoader, image transforms, and readers of the
-- data sets Debian ships.
--
--   local data = require "vl.data"
--   local train = data.fashion_mnist("train")            -- (image [1,28,28] float32 in [0,1], label 1..10)
--   local loader = data.DataLoader(train, {batch_size = 128, shuffle = true})
--   for x, y in loader() do ... end                      -- x [128,1,28,28], y [128] int64
--   for batch, i in loader:iter() do local x, y = batch[1], batch[2] ... end
--   for batch, i, bar in loader:progress_iter({desc = "train"}) do ... bar:set{loss = l} end
--
-- A Dataset has ds:len() (also #ds) and ds:get(i) (1-based), returning one
-- sample as one or more values; it may offer ds:get_batch(index), where
-- index is a 1-based int64 tensor, returning whole batches (the DataLoader
-- then skips per-sample collation: TensorDataset and fashion_mnist do).
-- Shuffling draws vl.randperm, so vl.manual_seed makes it repeatable.
-- Transforms take float tensors [C,H,W] (or batches [N,C,H,W], one draw of
-- the random parameters per call) and draw from the vl generator too.
-- Labels and indices are 1-based, as everywhere in vl.
local vl = require "vl"
local progress = require "vl.progress"

local fmt, floor, min, max = string.format, math.floor, math.min, math.max
local is_tensor = vl.is_tensor

local M = {}

-- vl.data.read_idx(path) -> Tensor: an IDX file (MNIST's format), gzipped or not.
M.read_idx = vl.read_idx

local function check_int(v, what, ctx, lo)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == floor(v)) then
    error(fmt("%s: %s must be an integer, got %s", ctx, what, tostring(v)), 3)
  end
  v = math.tointeger(v)
  if lo and v < lo then error(fmt("%s: %s must be >= %d, got %d", ctx, what, lo, v), 3) end
  return v
end

-- ---------------------------------------------------------------------------
-- Datasets
-- ---------------------------------------------------------------------------

local Dataset = {}
Dataset.__index = Dataset
Dataset.__len = function(self) return self:len() end
M.Dataset = Dataset

-- data.Dataset.new{len = n | function, get = function(i), get_batch = function(index)}
function Dataset.new(spec)
  if type(spec) ~= "table" or type(spec.get) ~= "function" then
    error("Dataset.new: expected {len = n, get = function(i) ... end}", 2)
  end
  local n = spec.len
  if type(n) ~= "function" then
    local k = check_int(n, "len", "Dataset.new", 0)
    n = function() return k end
  end
  return setmetatable({ _len = n, _get = spec.get, _get_batch = spec.get_batch }, Dataset)
end
setmetatable(Dataset, { __call = function(_, spec) return Dataset.new(spec) end })

function Dataset:len() return self._len() end

function Dataset:get(i)
  local n = self:len()
  if math.type(i) ~= "integer" or i < 1 or i > n then
    error(fmt("Dataset: index %s out of range 1..%d", tostring(i), n), 2)
  end
  return self._get(i)
end

-- Whole batches, when the dataset can make them (nil otherwise).
function Dataset:get_batch(index)
  if not self._get_batch then return nil end
  return self._get_batch(index)
end

function Dataset:has_batches() return self._get_batch ~= nil end

-- ds:map(fn) -> Dataset whose samples are fn(ds:get(i)).
-- {batched = true}: fn works on whole batches too (the fast path stays).
function Dataset:map(fn, opts)
  if type(fn) ~= "function" then error("Dataset:map: expected a function", 2) end
  local parent = self
  local batched = opts and opts.batched
  return Dataset.new {
    len = function() return parent:len() end,
    get = function(i) return fn(parent._get(i)) end,
    get_batch = (batched and parent._get_batch) and function(ix) return fn(parent._get_batch(ix)) end or nil,
  }
end

-- ds:subset(indices) -> Dataset of the listed samples (a table or a 1-based index tensor).
function Dataset:subset(indices)
  local idx = is_tensor(indices) and indices:long() or vl.tensor(indices, { dtype = "int64" })
  if idx:dim() ~= 1 then error("Dataset:subset: indices must be 1-D", 2) end
  local list = idx:numel() > 0 and idx:totable() or {}
  local n = self:len()
  for k, i in ipairs(list) do
    if i < 1 or i > n then error(fmt("Dataset:subset: index %d (position %d) out of range 1..%d", i, k, n), 2) end
  end
  local parent = self
  return Dataset.new {
    len = #list,
    get = function(i) return parent._get(list[i]) end,
    get_batch = parent._get_batch and function(ix) return parent._get_batch(idx:index_select(1, ix)) end or nil,
  }
end

-- data.TensorDataset(x, y, ...): sample i is x[i], y[i], ... (views along dim 1).
function M.TensorDataset(...)
  local ts = table.pack(...)
  if ts.n == 0 then error("TensorDataset: expected at least one tensor", 2) end
  local n
  for k = 1, ts.n do
    local t = ts[k]
    if not is_tensor(t) then error(fmt("TensorDataset: argument %d is a %s, expected a tensor", k, type(t)), 2) end
    if t:dim() == 0 then error(fmt("TensorDataset: argument %d is 0-d; samples run along dim 1", k), 2) end
    if n and t:size(1) ~= n then
      error(fmt("TensorDataset: argument %d has %d samples, argument 1 has %d", k, t:size(1), n), 2)
    end
    n = n or t:size(1)
  end
  local ds = Dataset.new {
    len = n,
    get = function(i)
      local out = {}
      for k = 1, ts.n do out[k] = ts[k]:select(1, i) end
      return table.unpack(out, 1, ts.n)
    end,
    get_batch = function(ix)
      local out = {}
      for k = 1, ts.n do out[k] = ts[k]:index_select(1, ix) end
      return table.unpack(out, 1, ts.n)
    end,
  }
  ds.tensors = ts
  return ds
end

-- ---------------------------------------------------------------------------
-- Collation
-- ---------------------------------------------------------------------------

local function collate_values(vals, where)
  local first = vals[1]
  if is_tensor(first) then return vl.stack(vals, 1) end
  local ty = type(first)
  for k = 2, #vals do
    local t = type(vals[k])
    if t ~= ty or (ty == "userdata" and not is_tensor(vals[k])) then
      error(fmt("collate: sample %d has a %s at %s, sample 1 a %s", k, t, where, ty), 0)
    end
  end
  if ty == "number" then
    local ints = true
    for k = 1, #vals do ints = ints and math.type(vals[k]) == "integer" end
    return vl.tensor(vals, { dtype = ints and "int64" or "float64" }) -- as PyTorch's default_collate
  elseif ty == "boolean" then
    return vl.tensor(vals, { dtype = "bool" })
  elseif ty == "string" then
    return vals
  elseif ty == "table" then
    local out = {}
    for key in pairs(first) do
      local col = {}
      for k = 1, #vals do
        local v = vals[k][key]
        if v == nil then error(fmt("collate: sample %d lacks field %s of sample 1", k, tostring(key)), 0) end
        col[k] = v
      end
      out[key] = collate_values(col, where .. "." .. tostring(key))
    end
    return out
  end
  error(fmt("collate: cannot batch a %s (at %s)", ty, where), 0)
end

-- data.collate(samples) -> batch. `samples` is a list of table.pack()ed
-- samples; the result packs one batched value per position: tensors are
-- stacked along a new dim 1, integers become an int64 tensor, other numbers
-- float64, booleans bool, strings stay a list, tables are batched per field.
function M.collate(samples)
  local n = samples[1].n or #samples[1]
  local out = { n = n }
  for p = 1, n do
    local col = {}
    for k = 1, #samples do col[k] = samples[k][p] end
    out[p] = collate_values(col, "value " .. p)
  end
  return out
end

-- ---------------------------------------------------------------------------
-- DataLoader
-- ---------------------------------------------------------------------------

local DataLoader = {}
DataLoader.__index = DataLoader
M.DataLoader = DataLoader

-- data.DataLoader(ds, {batch_size = 1, shuffle = false, drop_last = false, collate = fn})
function DataLoader.new(ds, opts)
  if getmetatable(ds) ~= Dataset then error("DataLoader: expected a vl.data Dataset", 2) end
  opts = opts or {}
  local self = setmetatable({
    dataset = ds,
    batch_size = check_int(opts.batch_size or 1, "batch_size", "DataLoader", 1),
    shuffle = opts.shuffle and true or false,
    drop_last = opts.drop_last and true or false,
    collate = opts.collate,
  }, DataLoader)
  if self.collate ~= nil and type(self.collate) ~= "function" then error("DataLoader: collate must be a function", 2) end
  return self
end
setmetatable(DataLoader, { __call = function(_, ds, opts) return DataLoader.new(ds, opts) end })

-- Number of batches per pass.
function DataLoader:len()
  local n, b = self.dataset:len(), self.batch_size
  if self.drop_last then return n // b end
  return (n + b - 1) // b
end
DataLoader.__len = DataLoader.len

-- The batch at positions [first, first+count) of `order` (1-based int64) as a pack.
function DataLoader:_batch(order, first, count)
  local ds = self.dataset
  local ix = order:narrow(1, first, count)
  if self.collate == nil and ds:has_batches() then return table.pack(ds:get_batch(ix)) end
  local samples = {}
  local list = ix:totable()
  for k = 1, count do samples[k] = table.pack(ds:get(list[k])) end
  local out = (self.collate or M.collate)(samples)
  if self.collate then return (type(out) == "table" and out.n) and out or { out, n = 1 } end
  return out
end

-- One pass: an iterator of packed batches and their numbers.
function DataLoader:_packs()
  local n = self.dataset:len()
  local order = self.shuffle and vl.randperm(n) or vl.arange(1, n + 1, 1, { dtype = "int64" })
  local nb, b = self:len(), self.batch_size
  local i = 0
  return function()
    if i >= nb then return nil end
    i = i + 1
    local first = (i - 1) * b + 1
    return self:_batch(order, first, min(b, n - first + 1)), i
  end
end

local function single(pack)
  if pack.n == 1 then return pack[1] end
  pack.n = nil
  return pack
end

-- for batch, i in loader:iter() do ... end -- batch is the batched value for
-- one-value samples, else a table {x, y, ...}.
function DataLoader:iter()
  local next_pack = self:_packs()
  return function()
    local pack, i = next_pack()
    if pack == nil then return nil end
    return single(pack), i
  end
end

-- for x, y in loader() do ... end
DataLoader.__call = function(self)
  local next_pack = self:_packs()
  return function()
    local pack = next_pack()
    if pack == nil then return nil end
    return table.unpack(pack, 1, pack.n)
  end
end

-- for batch, i, bar in loader:progress_iter({desc = "train"}) do ... bar:set{loss = l} end
-- (options as vl.progress: desc, out, tty, interval, ...). The bar counts
-- finished batches and closes after the last.
function DataLoader:progress_iter(opts)
  local bar = progress.new(self:len(), opts)
  local it = self:iter()
  local done = 0
  return function()
    if done > 0 then bar:update(done) end
    local batch, i = it()
    if batch == nil then
      bar:close()
      return nil
    end
    done = i
    return batch, i, bar
  end
end

-- ---------------------------------------------------------------------------
-- Fashion-MNIST (Debian package dataset-fashion-mnist)
-- ---------------------------------------------------------------------------

M.FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
M.fashion_mnist_classes = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
  "Bag", "Ankle boot" }

local FMNIST_FILES = {
  train = { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz" },
  test = { "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" },
}

local fmnist_cache = setmetatable({}, { __mode = "v" })

local function readable(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- data.fashion_mnist_tensors(split, {root}) -> images [N,28,28] uint8, labels [N] int64 (1..10)
function M.fashion_mnist_tensors(split, opts)
  local files = FMNIST_FILES[split]
  if not files then error(fmt("fashion_mnist: split must be \"train\" or \"test\", got %s", tostring(split)), 2) end
  local root = opts and opts.root or M.FASHION_MNIST_DIR
  local ipath, lpath = root .. "/" .. files[1], root .. "/" .. files[2]
  for _, p in ipairs({ ipath, lpath }) do
    if not readable(p) then
      error(fmt("fashion_mnist: %s not found; install the Debian package dataset-fashion-mnist "
        .. "(apt-get install dataset-fashion-mnist)", p), 2)
    end
  end
  local key = ipath .. "\0" .. lpath
  local hit = fmnist_cache[key]
  if hit then return hit.images, hit.labels end
  local images, labels = vl.read_idx(ipath), vl.read_idx(lpath)
  if images:dim() ~= 3 or images.dtype ~= "uint8" then
    error(fmt("fashion_mnist: %s holds %s %s, expected uint8 images [N,28,28]", ipath, images.dtype,
      table.concat(images:size(), "x")), 2)
  end
  if labels:dim() ~= 1 or labels:size(1) ~= images:size(1) then
    error(fmt("fashion_mnist: %s holds %d labels for %d images", lpath, labels:numel(), images:size(1)), 2)
  end
  labels = labels:long():add(1)
  fmnist_cache[key] = { images = images, labels = labels }
  return images, labels
end

-- data.fashion_mnist(split, {root}) -> Dataset of (image float32 [1,28,28] in [0,1], label int64 0-d, 1..10)
function M.fashion_mnist(split, opts)
  local ok, images, labels = pcall(M.fashion_mnist_tensors, split, opts)
  if not ok then error(images, 2) end
  local h, w = images:size(2), images:size(3)
  local ds = Dataset.new {
    len = images:size(1),
    get = function(i) return images:select(1, i):float():div(255):view(1, h, w), labels:select(1, i) end,
    get_batch = function(ix)
      local x = images:index_select(1, ix):float():div(255)
      return x:view(ix:numel(), 1, h, w), labels:index_select(1, ix)
    end,
  }
  ds.images, ds.labels, ds.classes = images, labels, M.fashion_mnist_classes
  return ds
end

-- ---------------------------------------------------------------------------
-- Transforms
-- ---------------------------------------------------------------------------

local T = {}
M.transforms = T
local F = {} -- deterministic building blocks
T.F = F

local function check_image(x, op)
  if not is_tensor(x) then error(fmt("%s: expected an image tensor, got %s", op, type(x)), 3) end
  if x:dim() < 3 then error(fmt("%s: expected [C,H,W] or [N,C,H,W], got %d dims", op, x:dim()), 3) end
  if x.dtype ~= "float32" and x.dtype ~= "float64" and x.dtype ~= "float16" and x.dtype ~= "bfloat16" then
    error(fmt("%s: expected a float image (use x:float():div(255) for uint8), got %s", op, x.dtype), 3)
  end
end

local function size2(size, op)
  if type(size) == "number" then size = { size, size } end
  if type(size) ~= "table" or #size ~= 2 then error(fmt("%s: size must be a number or {h, w}", op), 3) end
  return check_int(size[1], "height", op, 1), check_int(size[2], "width", op, 1)
end

-- Uniform on [a, b) and an integer in [lo, hi], from the vl generator.
local function uniform(a, b) return a + (b - a) * vl.rand(1, { dtype = "float64" }):item() end
local function randint(lo, hi) return vl.randint(lo, hi + 1, { 1 }):item() end

-- Per-channel values as a [C,1,1] tensor (a number: every channel).
local function per_channel(v, c, like, op, what)
  if type(v) == "number" then return v end
  if type(v) ~= "table" or #v ~= c then error(fmt("%s: %s must be a number or %d values", op, what, c), 3) end
  return vl.tensor(v, { dtype = like.dtype }):view(c, 1, 1)
end

function F.normalize(x, mean, std)
  check_image(x, "normalize")
  local c = x:size(-3)
  local m, s = per_channel(mean, c, x, "normalize", "mean"), per_channel(std, c, x, "normalize", "std")
  return (x - m) / s
end

function F.hflip(x)
  check_image(x, "hflip")
  return x:flip(-1)
end

function F.vflip(x)
  check_image(x, "vflip")
  return x:flip(-2)
end

-- crop(x, top, left, h, w): top/left 1-based (a view).
function F.crop(x, top, left, h, w)
  check_image(x, "crop")
  local H, W = x:size(-2), x:size(-1)
  if top < 1 or left < 1 or top + h - 1 > H or left + w - 1 > W then
    error(fmt("crop: window %dx%d at (%d, %d) leaves the %dx%d image", h, w, top, left, H, W), 2)
  end
  return x:narrow(-2, top, h):narrow(-1, left, w)
end

-- pad(x, p, fill): p pixels of `fill` on every side (or {top, bottom, left, right}).
function F.pad(x, p, fill)
  check_image(x, "pad")
  local t, b, l, r
  if type(p) == "number" then t, b, l, r = p, p, p, p else t, b, l, r = p[1], p[2], p[3], p[4] end
  local shape = x:size()
  local nd = #shape
  local H, W = shape[nd - 1], shape[nd]
  shape[nd - 1], shape[nd] = H + t + b, W + l + r
  local out = vl.full(shape, fill or 0, { dtype = x.dtype })
  out:narrow(-2, t + 1, H):narrow(-1, l + 1, W):copy_(x)
  return out
end

-- resize(x, {h, w}): bilinear, as torch.nn.functional.interpolate(mode =
-- "bilinear", align_corners = false) without antialiasing; any leading dims.
function F.resize(x, size)
  check_image(x, "resize")
  local oh, ow = size2(size, "resize")
  local shape = x:size()
  local nd = #shape
  local lead = 1
  for i = 1, nd - 3 do lead = lead * shape[i] end
  local y = vl.interpolate(x:reshape({ lead, shape[nd - 2], shape[nd - 1], shape[nd] }),
                           { size = { oh, ow }, mode = "bilinear" })
  shape[nd - 1], shape[nd] = oh, ow
  return y:view(shape)
end

-- Grayscale [..., 1, H, W] (ITU-R 601-2 luma, as torchvision).
function F.rgb_to_grayscale(x)
  check_image(x, "rgb_to_grayscale")
  if x:size(-3) == 1 then return x end
  if x:size(-3) ~= 3 then error(fmt("rgb_to_grayscale: expected 1 or 3 channels, got %d", x:size(-3)), 2) end
  return x:narrow(-3, 1, 1) * 0.2989 + x:narrow(-3, 2, 1) * 0.587 + x:narrow(-3, 3, 1) * 0.114
end

local function blend(a, b, ratio) return (a * ratio + b * (1 - ratio)):clamp(0, 1) end

function F.adjust_brightness(x, f)
  check_image(x, "adjust_brightness")
  return (x * f):clamp(0, 1)
end

function F.adjust_contrast(x, f)
  check_image(x, "adjust_contrast")
  local mean = F.rgb_to_grayscale(x):mean({ -3, -2, -1 }, { keepdim = true })
  return blend(x, mean, f)
end

function F.adjust_saturation(x, f)
  check_image(x, "adjust_saturation")
  if x:size(-3) == 1 then return x:clone() end
  return blend(x, F.rgb_to_grayscale(x), f)
end

-- Hue shift by h in [-0.5, 0.5] (a fraction of the colour circle), through
-- HSV as torchvision's adjust_hue.
function F.adjust_hue(x, h)
  check_image(x, "adjust_hue")
  if h < -0.5 or h > 0.5 then error(fmt("adjust_hue: hue factor %g not in [-0.5, 0.5]", h), 2) end
  if x:size(-3) == 1 then return x:clone() end
  if x:size(-3) ~= 3 then error(fmt("adjust_hue: expected 3 channels, got %d", x:size(-3)), 2) end
  local r, g, b = x:narrow(-3, 1, 1), x:narrow(-3, 2, 1), x:narrow(-3, 3, 1)
  local maxc = vl.maximum(vl.maximum(r, g), b)
  local minc = vl.minimum(vl.minimum(r, g), b)
  local eqc = maxc:eq(minc)
  local ones = vl.ones_like(maxc)
  local cr = maxc - minc
  local s = cr / vl.where(eqc, ones, maxc)
  local crd = vl.where(eqc, ones, cr)
  local rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
  local is_r, is_g = maxc:eq(r), maxc:eq(g)
  local not_r = is_r:logical_not()
  local hr = is_r:to(x.dtype) * (bc - gc)
  local hg = vl.logical_and(is_g, not_r):to(x.dtype) * (rc - bc + 2)
  local hb = vl.logical_and(is_g:logical_not(), not_r):to(x.dtype) * (gc - rc + 4)
  local hue = ((hr + hg + hb) / 6 + 1) % 1
  hue = (hue + h) % 1
  -- back to RGB
  local v = maxc
  local h6 = hue * 6
  local i = h6:floor()
  local f = h6 - i
  i = i % 6
  local p = (v * (1 - s)):clamp(0, 1)
  local q = (v * (1 - s * f)):clamp(0, 1)
  local t = (v * (1 - s * (1 - f))):clamp(0, 1)
  local function pick(a0, a1, a2, a3, a4, a5)
    local out = a5
    local parts = { a0, a1, a2, a3, a4 }
    for k = 5, 1, -1 do out = vl.where(i:eq(k - 1), parts[k], out) end
    return out
  end
  return vl.cat({ pick(v, q, p, p, t, v), pick(t, v, v, q, p, p), pick(p, p, t, v, v, q) }, -3)
end

-- Factories: each returns a function(x) -> x'.

function T.compose(list)
  if type(list) ~= "table" then error("compose: expected a list of transforms", 2) end
  for k, fn in ipairs(list) do
    if type(fn) ~= "function" then error(fmt("compose: element %d is a %s, expected a function", k, type(fn)), 2) end
  end
  return function(x)
    for _, fn in ipairs(list) do x = fn(x) end
    return x
  end
end

-- uint8 images to float in [0, 1].
function T.to_float()
  return function(x)
    if x.dtype == "uint8" then return x:float():div(255) end
    return x
  end
end

function T.normalize(mean, std)
  return function(x) return F.normalize(x, mean, std) end
end

-- horizontal_flip(p = 0.5): flip with probability p.
function T.horizontal_flip(p)
  p = p or 0.5
  return function(x)
    if uniform(0, 1) < p then return F.hflip(x) end
    return x
  end
end

-- random_crop(size, {padding = 0, fill = 0}): pad, then crop size at a
-- uniformly drawn position.
function T.random_crop(size, opts)
  local h, w = size2(size, "random_crop")
  local padding, fill = opts and opts.padding or 0, opts and opts.fill or 0
  return function(x)
    check_image(x, "random_crop")
    if padding ~= 0 then x = F.pad(x, padding, fill) end
    local H, W = x:size(-2), x:size(-1)
    if h > H or w > W then error(fmt("random_crop: crop %dx%d is larger than the image %dx%d", h, w, H, W), 2) end
    return F.crop(x, randint(1, H - h + 1), randint(1, W - w + 1), h, w)
  end
end

-- The crop window of torchvision's RandomResizedCrop.get_params: top, left
-- (1-based), height, width.
function T.random_resized_crop_params(H, W, scale, ratio)
  local area = H * W
  local lr0, lr1 = math.log(ratio[1]), math.log(ratio[2])
  for _ = 1, 10 do
    local target = area * uniform(scale[1], scale[2])
    local aspect = math.exp(uniform(lr0, lr1))
    local w = floor(math.sqrt(target * aspect) + 0.5)
    local h = floor(math.sqrt(target / aspect) + 0.5)
    if w > 0 and w <= W and h > 0 and h <= H then
      return randint(1, H - h + 1), randint(1, W - w + 1), h, w
    end
  end
  local in_ratio, h, w = W / H, H, W
  if in_ratio < min(ratio[1], ratio[2]) then
    h = floor(w / min(ratio[1], ratio[2]) + 0.5)
  elseif in_ratio > max(ratio[1], ratio[2]) then
    w = floor(h * max(ratio[1], ratio[2]) + 0.5)
  end
  return (H - h) // 2 + 1, (W - w) // 2 + 1, h, w
end

-- random_resized_crop(size, {scale = {0.08, 1}, ratio = {3/4, 4/3}})
function T.random_resized_crop(size, opts)
  local oh, ow = size2(size, "random_resized_crop")
  local scale = opts and opts.scale or { 0.08, 1.0 }
  local ratio = opts and opts.ratio or { 3 / 4, 4 / 3 }
  return function(x)
    check_image(x, "random_resized_crop")
    local top, left, h, w = T.random_resized_crop_params(x:size(-2), x:size(-1), scale, ratio)
    return F.resize(F.crop(x, top, left, h, w), { oh, ow })
  end
end

-- color_jitter({brightness, contrast, saturation, hue}): factors drawn as
-- torchvision's ColorJitter (brightness/contrast/saturation from
-- [max(0, 1 - v), 1 + v], hue from [-v, v]), applied in a random order.
function T.color_jitter(opts)
  opts = opts or {}
  local b, c, s, h = opts.brightness or 0, opts.contrast or 0, opts.saturation or 0, opts.hue or 0
  if h < 0 or h > 0.5 then error(fmt("color_jitter: hue must be in [0, 0.5], got %g", h), 2) end
  for name, v in pairs({ brightness = b, contrast = c, saturation = s }) do
    if v < 0 then error(fmt("color_jitter: %s must be non-negative, got %g", name, v), 2) end
  end
  return function(x)
    check_image(x, "color_jitter")
    local order = vl.randperm(4):totable()
    local fb = b > 0 and uniform(max(0, 1 - b), 1 + b) or nil
    local fc = c > 0 and uniform(max(0, 1 - c), 1 + c) or nil
    local fs = s > 0 and uniform(max(0, 1 - s), 1 + s) or nil
    local fh = h > 0 and uniform(-h, h) or nil
    for _, k in ipairs(order) do
      if k == 1 and fb then x = F.adjust_brightness(x, fb)
      elseif k == 2 and fc then x = F.adjust_contrast(x, fc)
      elseif k == 3 and fs then x = F.adjust_saturation(x, fs)
      elseif k == 4 and fh then x = F.adjust_hue(x, fh) end
    end
    return x
  end
end

-- two_views(transform): x -> transform(x), transform(x) (two independent
-- draws), for contrastive learning: ds:map(function(x, y) local a, b = tv(x) return a, b, y end).
function T.two_views(transform)
  if type(transform) ~= "function" then error("two_views: expected a transform function", 2) end
  return function(x) return transform(x), transform(x) end
end

-- Synthetic video (vl/data/moving_shapes.lua) and frame sampling (vl/data/video_sampling.lua).
for _, part in ipairs({ "vl.data.video_sampling", "vl.data.moving_shapes" }) do
  for k, v in pairs(require(part)) do M[k] = v end
end

return M
