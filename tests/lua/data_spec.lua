-- data_spec.lua — vl.data: Dataset, TensorDataset, DataLoader (batching,
-- shuffling, drop_last, collation), fashion_mnist, transforms.
-- References: closed forms (flip twice is the identity, crops are windows of
-- the input, normalize's formula), torch.nn.functional.interpolate for the
-- bilinear resize and colorsys (HSV) / torchvision's formulas for the colour
-- adjustments (tests/fixtures/io.lua, made by scripts/fixtures/io.py), and
-- the Fashion-MNIST files of the Debian package when installed.
local vl = require "vl"
local data = require "vl.data"

local fx = dofile("tests/fixtures/io.lua")
local T, F = data.transforms, data.transforms.F

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  if t:numel() == 0 then return {} end
  return t:contiguous():view(-1):totable()
end

local function assert_close(got, want, tol)
  tol = tol or 1e-6
  local g = flat(got)
  assert.are.equal(#want, #g)
  for i = 1, #want do
    if not (math.abs(g[i] - want[i]) <= tol * (1 + math.abs(want[i]))) then
      error(string.format("element %d: got %.9g, want %.9g", i, g[i], want[i]), 2)
    end
  end
end

local function assert_equal_t(a, b)
  assert.are.same(a:size(), b:size())
  assert.are.same(flat(a), flat(b))
end

local function T3(values, shape) return vl.tensor(values, { dtype = "float32" }):view(shape) end

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.matches(pattern, tostring(err))
end

describe("Dataset and DataLoader", function()
  local x = vl.arange(0, 10, 1, { dtype = "float32" }):view(10, 1):expand(10, 3):contiguous()
  local y = vl.arange(1, 11, 1, { dtype = "int64" })
  local ds = data.TensorDataset(x, y)

  it("TensorDataset gives rows and sizes", function()
    assert.are.equal(10, #ds)
    local a, b = ds:get(4)
    assert_equal_t(a, T3({ 3, 3, 3 }, { 3 }))
    assert.are.equal(4, b:item())
    fails("index 11 out of range 1..10", ds.get, ds, 11)
  end)

  it("batches in order, with a short last batch or drop_last", function()
    local loader = data.DataLoader(ds, { batch_size = 4 })
    assert.are.equal(3, #loader)
    local sizes, labels = {}, {}
    for bx, by in loader() do
      sizes[#sizes + 1] = bx:size(1)
      assert.are.same({ bx:size(1), 3 }, bx:size())
      for _, v in ipairs(by:totable()) do labels[#labels + 1] = v end
    end
    assert.are.same({ 4, 4, 2 }, sizes)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, labels)
    local dl = data.DataLoader(ds, { batch_size = 4, drop_last = true })
    assert.are.equal(2, #dl)
    local n = 0
    for batch, i in dl:iter() do
      n = n + 1
      assert.are.equal(n, i)
      assert.are.equal(4, batch[1]:size(1))
      assert.are.equal(4, batch[2]:size(1))
    end
    assert.are.equal(2, n)
  end)

  it("shuffles with the vl generator: repeatable with a seed, a permutation each epoch", function()
    local loader = data.DataLoader(ds, { batch_size = 3, shuffle = true })
    local function epoch()
      local order = {}
      for _, by in loader() do
        for _, v in ipairs(by:totable()) do order[#order + 1] = v end
      end
      return order
    end
    vl.manual_seed(7)
    local a, a2 = epoch(), epoch()
    vl.manual_seed(7)
    local b = epoch()
    assert.are.same(a, b)
    assert.are_not.same(a, a2)
    local sorted = { table.unpack(a) }
    table.sort(sorted)
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, sorted)
    -- the rows still match their labels
    vl.manual_seed(3)
    for bx, by in loader() do assert_equal_t(bx:select(2, 1), by:float():sub(1)) end
  end)

  it("the per-sample path gives what the batched path gives", function()
    local slow = data.Dataset { len = 10, get = function(i) return ds:get(i) end }
    local fast_l = data.DataLoader(ds, { batch_size = 4, shuffle = true })
    local slow_l = data.DataLoader(slow, { batch_size = 4, shuffle = true })
    vl.manual_seed(11)
    local fast = {}
    for bx, by in fast_l() do fast[#fast + 1] = { bx, by } end
    vl.manual_seed(11)
    local k = 0
    for bx, by in slow_l() do
      k = k + 1
      assert_equal_t(fast[k][1], bx)
      assert_equal_t(fast[k][2], by)
    end
    assert.are.equal(#fast, k)
  end)

  it("collates tables per field, numbers, booleans and strings", function()
    local samples = data.Dataset {
      len = 5,
      get = function(i)
        return { img = vl.full({ 2, 2 }, i), label = i, weight = i / 2, flag = i % 2 == 0, name = "s" .. i,
          meta = { id = 10 * i, pos = { i, -i } } }
      end,
    }
    local loader = data.DataLoader(samples, { batch_size = 3 })
    local batches = {}
    for batch in loader:iter() do batches[#batches + 1] = batch end
    assert.are.equal(2, #batches)
    local b = batches[1]
    assert.are.same({ 3, 2, 2 }, b.img:size())
    assert.are.equal("int64", b.label.dtype)
    assert.are.same({ 1, 2, 3 }, b.label:totable())
    assert.are.equal("float64", b.weight.dtype)
    assert.are.same({ 0.5, 1, 1.5 }, b.weight:totable())
    assert.are.same({ false, true, false }, b.flag:totable())
    assert.are.same({ "s1", "s2", "s3" }, b.name)
    assert.are.same({ 10, 20, 30 }, b.meta.id:totable())
    assert.are.same({ -1, -2, -3 }, b.meta.pos[2]:totable())
    assert.are.same({ 2, 2, 2 }, batches[2].img:size())
  end)

  it("custom collate, map and subset", function()
    local loader = data.DataLoader(ds, { batch_size = 5, collate = function(samples) return #samples end })
    local got = {}
    for n in loader() do got[#got + 1] = n end
    assert.are.same({ 5, 5 }, got)
    local doubled = ds:map(function(a, b) return a * 2, b end)
    local a = doubled:get(3)
    assert_equal_t(a, T3({ 4, 4, 4 }, { 3 }))
    local sub = ds:subset({ 10, 2 })
    assert.are.equal(2, #sub)
    local _, lab = sub:get(1)
    assert.are.equal(10, lab:item())
    local l2 = data.DataLoader(sub, { batch_size = 2 })
    for _, by in l2() do assert.are.same({ 10, 2 }, by:totable()) end
  end)

  it("progress_iter counts batches on a bar", function()
    local lines = {}
    local sink = { write = function(_, s) lines[#lines + 1] = s end }
    local loader = data.DataLoader(ds, { batch_size = 4 })
    local seen = 0
    for batch, i, bar in loader:progress_iter({ desc = "ep1", out = sink, tty = false, interval = 0 }) do
      seen = seen + 1
      assert.are.equal(seen, i)
      assert.are.equal(4 >= batch[1]:size(1), true)
      bar:set({ loss = 1 / i })
    end
    assert.are.equal(3, seen)
    local all = table.concat(lines)
    assert.matches("ep1: 1/3 %(33%%%)", all)
    assert.matches("ep1: 3/3 %(100%%%).*loss=0.3333", all)
  end)

  it("rejects bad arguments", function()
    fails("batch_size must be >= 1, got 0", data.DataLoader, ds, { batch_size = 0 })
    fails("expected a vl.data Dataset", data.DataLoader, {}, {})
    fails("argument 2 has 3 samples, argument 1 has 10", data.TensorDataset, x, vl.zeros(3))
    fails("argument 2 is a number", data.TensorDataset, x, 3)
    local bad = data.Dataset { len = 2, get = function(i) return i == 1 and 1 or "a" end }
    fails("collate: sample 2 has a string at value 1, sample 1 a number", function()
      for _ in data.DataLoader(bad, { batch_size = 2 })() do end
    end)
  end)
end)

describe("fashion_mnist", function()
  -- Small files in the package's layout (plain IDX under the .gz names:
  -- zlib reads them as they are).
  local function write_fake(root, split, n)
    local names = split == "train" and { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz" }
      or { "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" }
    local img = { string.pack(">I4I4I4I4", 0x803, n, 28, 28) }
    for i = 1, n do img[#img + 1] = string.rep(string.char(i * 50 % 256), 28 * 28) end
    local lab = { string.pack(">I4I4", 0x801, n) }
    for i = 1, n do lab[#lab + 1] = string.char((i * 3) % 10) end
    local f = assert(io.open(root .. "/" .. names[1], "wb"))
    f:write(table.concat(img))
    f:close()
    f = assert(io.open(root .. "/" .. names[2], "wb"))
    f:write(table.concat(lab))
    f:close()
  end

  it("reads the package layout: images in [0,1], labels 1..10", function()
    local root = os.tmpname()
    os.remove(root)
    os.execute("mkdir -p '" .. root .. "'")
    write_fake(root, "test", 4)
    local ds = data.fashion_mnist("test", { root = root })
    assert.are.equal(4, #ds)
    local img, lab = ds:get(2)
    assert.are.same({ 1, 28, 28 }, img:size())
    assert.are.equal("float32", img.dtype)
    assert_close(img:amax(), { 100 / 255 })
    assert.are.equal("int64", lab.dtype)
    assert.are.equal(7, lab:item())  -- (2*3) % 10 = 6, 1-based
    local images, labels = data.fashion_mnist_tensors("test", { root = root })
    assert.are.equal("uint8", images.dtype)
    assert.are.same({ 4, 28, 28 }, images:size())
    assert.are.same({ 4, 7, 10, 3 }, labels:totable())
    -- batched path
    for bx, by in data.DataLoader(ds, { batch_size = 4 })() do
      assert.are.same({ 4, 1, 28, 28 }, bx:size())
      assert.are.same({ 4, 7, 10, 3 }, by:totable())
    end
    os.execute("rm -rf '" .. root .. "'")
  end)

  it("names the Debian package when the files are absent", function()
    fails("install the Debian package dataset%-fashion%-mnist", data.fashion_mnist, "train", { root = "/nonexistent" })
    fails('split must be "train" or "test", got val', data.fashion_mnist, "val")
  end)

  local have = io.open(data.FASHION_MNIST_DIR .. "/t10k-labels-idx1-ubyte.gz", "rb")
  if have then
    have:close()
    it("loads the real test split of dataset-fashion-mnist", function()
      local ds = data.fashion_mnist("test")
      assert.are.equal(10000, #ds)
      local img, lab = ds:get(1)
      assert.are.same({ 1, 28, 28 }, img:size())
      assert.are.equal(10, lab:item()) -- the first test image is an ankle boot (class 9, 0-based)
      local _, labels = data.fashion_mnist_tensors("test")
      assert.are.equal(1, labels:amin():item())
      assert.are.equal(10, labels:amax():item())
      assert.is_true(img:amax():item() <= 1 and img:amin():item() >= 0)
    end)
  else
    pending("dataset-fashion-mnist is not installed: the real Fashion-MNIST files were not checked")
  end
end)

describe("transforms", function()
  local img = vl.arange(0, 2 * 5 * 6, 1, { dtype = "float32" }):view(2, 5, 6)

  it("hflip twice is the identity; hflip reverses columns", function()
    assert_equal_t(img, F.hflip(F.hflip(img)))
    local f = F.hflip(img)
    assert.are.equal(5, f[1][1][1])
    assert.are.equal(0, f[1][1][6])
    local batch = vl.stack({ img, img + 100 }, 1)
    assert_equal_t(batch, F.hflip(F.hflip(batch)))
    vl.manual_seed(1)
    local always = T.horizontal_flip(1.0)
    assert_equal_t(F.hflip(img), always(img))
    assert_equal_t(img, T.horizontal_flip(0.0)(img))
  end)

  it("normalize follows (x - mean) / std per channel", function()
    local x = T3({ 1, 2, 3, 4, 5, 6, 7, 8 }, { 2, 2, 2 })
    local y = T.normalize({ 1, 5 }, { 2, 0.5 })(x)
    assert_close(y, { 0, 0.5, 1, 1.5, 0, 2, 4, 6 })
    assert_close(F.normalize(x, 1, 2), { 0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5 })
    local b = vl.stack({ x, x }, 1)
    assert_close(F.normalize(b, { 1, 5 }, { 2, 0.5 }), { 0, 0.5, 1, 1.5, 0, 2, 4, 6, 0, 0.5, 1, 1.5, 0, 2, 4, 6 })
    fails("mean must be a number or 2 values", F.normalize, x, { 1, 2, 3 }, 1)
  end)

  it("random_crop takes a window of the (padded) image", function()
    vl.manual_seed(5)
    local crop = T.random_crop(3)
    for _ = 1, 20 do
      local c = crop(img)
      assert.are.same({ 2, 3, 3 }, c:size())
      local v0 = math.tointeger(c[1][1][1])
      local top, left = v0 // 6 + 1, v0 % 6 + 1
      assert_equal_t(img:narrow(2, top, 3):narrow(3, left, 3), c)
    end
    -- padding: ones padded by 2 with zeros; the 4x4 crop holds 16 - zeros ones
    local ones = vl.ones(1, 4, 4)
    local pc = T.random_crop(4, { padding = 2 })
    local seen = {}
    for _ = 1, 40 do
      local c = pc(ones)
      assert.are.same({ 1, 4, 4 }, c:size())
      -- the ones form a rectangle: rows and cols where the image landed
      local rows, cols = c:sum(3):gt(0):sum():item(), c:sum(2):gt(0):sum():item()
      assert.are.equal(rows * cols, c:sum():item())
      seen[rows * 10 + cols] = true
    end
    local kinds = 0
    for _ in pairs(seen) do kinds = kinds + 1 end
    assert.is_true(kinds > 1)
    -- repeatable
    vl.manual_seed(9)
    local a = pc(img)
    vl.manual_seed(9)
    assert_equal_t(a, pc(img))
    fails("crop 7x7 is larger than the image 5x6", T.random_crop(7), img)
  end)

  it("pad and crop", function()
    local p = F.pad(T3({ 1, 2, 3, 4 }, { 1, 2, 2 }), 1, -1)
    assert.are.same({ -1, -1, -1, -1, -1, 1, 2, -1, -1, 3, 4, -1, -1, -1, -1, -1 }, flat(p))
    assert_equal_t(F.crop(img, 2, 3, 2, 2), img:narrow(2, 2, 2):narrow(3, 3, 2))
    fails("window 3x3 at %(4, 1%) leaves the 5x6 image", F.crop, img, 4, 1, 3, 3)
  end)

  it("resize matches torch's bilinear interpolate", function()
    for _, c in ipairs(fx.resize) do
      local x = T3(c.input, c.shape)
      local y = F.resize(x, c.size)
      assert.are.same({ c.shape[1], c.size[1], c.size[2] }, y:size())
      assert_close(y, c.expected, 1e-5)
    end
  end)

  it("random_resized_crop gives the size asked; the full window is a resize", function()
    vl.manual_seed(2)
    local rrc = T.random_resized_crop({ 4, 3 })
    for _ = 1, 10 do assert.are.same({ 2, 4, 3 }, rrc(img):size()) end
    local whole = T.random_resized_crop(7, { scale = { 1, 1 }, ratio = { 6 / 5, 6 / 5 } })
    assert_close(whole(img), flat(F.resize(img, { 7, 7 })), 1e-6)
    for _ = 1, 50 do
      local top, left, h, w = T.random_resized_crop_params(5, 6, { 0.08, 1 }, { 3 / 4, 4 / 3 })
      assert.is_true(top >= 1 and left >= 1 and top + h - 1 <= 5 and left + w - 1 <= 6)
    end
  end)

  it("colour adjustments follow torchvision's formulas", function()
    local c = fx.color
    local x = vl.tensor(c.input, { dtype = "float64" }):view(c.shape)
    assert_close(F.adjust_brightness(x, c.brightness.factor), c.brightness.expected, 1e-12)
    assert_close(F.adjust_contrast(x, c.contrast.factor), c.contrast.expected, 1e-12)
    assert_close(F.adjust_saturation(x, c.saturation.factor), c.saturation.expected, 1e-12)
    assert_close(F.adjust_hue(x, c.hue.factor), c.hue.expected, 1e-9)
    assert_close(F.adjust_hue(x, c.hue_neg.factor), c.hue_neg.expected, 1e-9)
    assert_close(F.adjust_hue(x:float(), c.hue.factor), c.hue.expected, 1e-5)
    assert_close(F.adjust_hue(x, 0), c.input, 1e-9)
  end)

  it("color_jitter draws factors in range", function()
    local x = vl.rand(3, 4, 4):mul(0.5):add(0.1)  -- no clipping at 1.5x
    vl.manual_seed(4)
    local cj = T.color_jitter({ brightness = 0.5 })
    for _ = 1, 10 do
      local ratio = cj(x) / x
      local r = ratio:amax():item()
      assert.is_true(math.abs(r - ratio:amin():item()) < 1e-5)
      assert.is_true(r >= 0.5 - 1e-6 and r <= 1.5 + 1e-6)
    end
    local full = T.color_jitter({ brightness = 0.4, contrast = 0.4, saturation = 0.4, hue = 0.1 })
    local y = full(x)
    assert.are.same({ 3, 4, 4 }, y:size())
    assert.is_true(y:amin():item() >= 0 and y:amax():item() <= 1)
    fails("hue must be in %[0, 0.5%]", T.color_jitter, { hue = 0.7 })
  end)

  it("two_views gives two independent augmentations of one sample", function()
    local aug = T.compose({ T.random_crop(4, { padding = 1 }), T.horizontal_flip() })
    local tv = T.two_views(aug)
    vl.manual_seed(8)
    local a, b = tv(img)
    assert.are.same({ 2, 4, 4 }, a:size())
    assert.are.same({ 2, 4, 4 }, b:size())
    vl.manual_seed(8)
    local a2, b2 = tv(img)
    assert_equal_t(a, a2)
    assert_equal_t(b, b2)
    local differ = false
    for _ = 1, 10 do
      local p, q = tv(img)
      if (p - q):abs():sum():item() > 0 then differ = true end
    end
    assert.is_true(differ)
    -- in a dataset
    local ds = data.TensorDataset(vl.stack({ img, img }, 1), vl.tensor({ 1, 2 }))
    local pairs_ds = ds:map(function(x, y)
      local v1, v2 = tv(x)
      return v1, v2, y
    end)
    for v1, v2, y in data.DataLoader(pairs_ds, { batch_size = 2 })() do
      assert.are.same({ 2, 2, 4, 4 }, v1:size())
      assert.are.same({ 2, 2, 4, 4 }, v2:size())
      assert.are.same({ 1, 2 }, y:totable())
    end
  end)
end)
