-- Tensor core from Lua: creation, dtypes, views, indexing, memory.
local vl = require "vl"

local function flat(t)
  local out = {}
  local function walk(v)
    if type(v) == "table" then
      for _, x in ipairs(v) do walk(x) end
    else
      out[#out + 1] = v
    end
  end
  walk(t:totable())
  return out
end

local function err(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(msg)
end

describe("creation", function()
  it("builds from nested tables with inferred dtypes", function()
    local x = vl.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
    assert.are.same({ 2, 3 }, x:size())
    assert.are.equal("int64", x.dtype)
    assert.are.equal("float32", vl.tensor { 1.5, 2 }.dtype)
    assert.are.equal("bool", vl.tensor { true, false }.dtype)
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, x:totable())
    assert.are.equal(0, vl.tensor(3.5):dim())
    assert.are.equal(3.5, vl.tensor(3.5):item())
  end)

  it("keeps int64 values exact", function()
    local big = math.maxinteger - 7
    local x = vl.tensor { big, -big }
    assert.are.equal(big, x[1])
    assert.are.equal(-big, x[2])
    assert.are.equal(big, x:clone()[1])
  end)

  it("makes zeros, ones, full, eye, arange and linspace", function()
    assert.are.same({ 0, 0, 0, 0, 0, 0 }, flat(vl.zeros(2, 3)))
    assert.are.same({ 2, 3 }, vl.ones({ 2, 3 }):size())
    assert.are.equal("float64", vl.ones(2, { dtype = "float64" }).dtype)
    assert.are.same({ 7, 7 }, flat(vl.full({ 2 }, 7)))
    assert.are.equal("int64", vl.full({ 2 }, 7).dtype)
    assert.are.same({ 1, 0, 0, 1 }, flat(vl.eye(2)))
    assert.are.same({ 0, 1, 2, 3, 4 }, flat(vl.arange(5)))
    assert.are.equal("int64", vl.arange(5).dtype)
    assert.are.same({ 2, 4, 6, 8 }, flat(vl.arange(2, 10, 2)))
    local l = flat(vl.linspace(0, 1, 5, { dtype = "float64" }))
    for i = 1, 5 do assert.are.equal((i - 1) / 4, l[i]) end
    assert.are.same({ 3 }, vl.zeros_like(vl.ones(3)):size())
  end)

  it("converts between dtypes", function()
    local x = vl.tensor { -1.7, 0.5, 2.9, 300.2 }
    assert.are.same({ -1, 0, 2, 300 }, flat(x:long()))
    assert.are.same({ true, true, true, true }, flat(x:bool()))
    assert.are.equal("float64", x:double().dtype)
    assert.are.equal("int32", x:to("int32").dtype)
    assert.is_true(x:to("float32"):shares_storage(x)) -- same dtype: no copy
    -- float16: 2049 is not representable and rounds to even (2048)
    assert.are.same({ 2048, 0.5, 65504 }, flat(vl.tensor { 2049, 0.5, 65504 }:half():float()))
    -- bfloat16 keeps 8 bits of mantissa
    assert.are.equal(256, vl.tensor { 257 }:bfloat16():float()[1])
  end)
end)

describe("views", function()
  it("never copy", function()
    local x = vl.arange(24):view(2, 3, 4)
    local views = {
      x:transpose(1, 3), x:permute(3, 1, 2), x:narrow(2, 2, 2), x:select(1, 2), x[{ 2, { 1, 3, 2 } }],
      x:view(6, 4), x:reshape(4, 6), x:unsqueeze(1), x:unsqueeze(1):squeeze(1), x:flatten(),
      x:narrow(3, 1, 1):expand(2, 3, 5), x:unfold(3, 2, 1),
    }
    for i, v in ipairs(views) do
      assert.is_true(v:shares_storage(x), "view " .. i)
    end
  end)

  it("index like Torch7 with 1-based dims and negative indices", function()
    local x = vl.arange(12):view(3, 4)
    assert.are.equal(5, x[2][2])
    assert.are.same({ 8, 9, 10, 11 }, flat(x[-1]))
    assert.are.same({ 1, 5, 9 }, flat(x:select(2, 2)))
    assert.are.same({ 5, 6, 7 }, flat(x[{ 2, { 2, -1 } }]))
    assert.are.same({ 3, 1 }, x[{ {}, { 2 } }]:size())
    assert.are.same({ 0, 2, 8, 10 }, flat(x[{ { 1, 3, 2 }, { 1, 4, 2 } }]))
    assert.are.equal(4, x:narrow(2, 2, 2):storage_offset() + 3)
    assert.are.same({ 4, 3 }, x:t():size())
    assert.are.same({ 1, 4 }, x:t():stride())
  end)

  it("assign through indices and slices", function()
    local x = vl.zeros(3, 4)
    x[2] = 1
    x[{ {}, 4 }] = 7
    x[{ 3, { 1, 2 } }] = vl.tensor { 5, 6 }
    assert.are.same({ { 0, 0, 0, 7 }, { 1, 1, 1, 7 }, { 5, 6, 0, 7 } }, x:totable())
    local y = vl.arange(6):view(2, 3)
    y:t()[{ 1 }] = 9 -- writes the first column of y
    assert.are.same({ { 9, 1, 2 }, { 9, 4, 5 } }, y:totable())
  end)

  it("views of views keep strides and offsets", function()
    local x = vl.arange(60):view(3, 4, 5)
    local v = x:transpose(1, 3):narrow(1, 2, 3):select(3, 2) -- [3(of 5), 4]
    assert.are.same({ 3, 4 }, v:size())
    -- v[i][j] = x[j][i+1][2] (0-based values), i from 1, j from 0
    for i = 1, 3 do
      for j = 1, 4 do
        assert.are.equal(20 + (j - 1) * 5 + i, v[i][j])
        assert.are.equal(x[2][j][i + 1], v[i][j])
      end
    end
    local c = v:contiguous()
    assert.is_true(c:is_contiguous())
    assert.is_false(c:shares_storage(x))
    assert.are.same(v:totable(), c:totable())
  end)

  it("reshape copies only when it must", function()
    local x = vl.arange(6):view(2, 3)
    assert.is_true(x:reshape(3, 2):shares_storage(x))
    local r = x:t():reshape(6)
    assert.is_false(r:shares_storage(x))
    assert.are.same({ 0, 3, 1, 4, 2, 5 }, flat(r))
    assert.are.same({ 6 }, x:view(-1):size())
  end)

  it("copy_ converts and broadcasts; fill_ sets every element", function()
    local x = vl.zeros(2, 3, { dtype = "int32" })
    x:copy_(vl.tensor { 1.9, 2.1, -3.7 })
    assert.are.same({ { 1, 2, -3 }, { 1, 2, -3 } }, x:totable())
    x:t():fill_(4)
    assert.are.same({ 4, 4, 4, 4, 4, 4 }, flat(x))
  end)

  it("closes deterministically", function()
    local during
    do
      local big <close> = vl.zeros(1024, 1024)
      during = vl.memory_in_use()
    end
    assert.are.equal(during - 4 * 1024 * 1024, vl.memory_in_use())
  end)
end)

describe("memory", function()
  local function rss_kib()
    local f = io.open("/proc/self/status")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)"))
  end

  it("a loop of 1 MB tensors stays in flat memory (bytes reported to the GC)", function()
    collectgarbage()
    local start = rss_kib()
    for _ = 1, 20000 do
      local t = vl.ones(262144) -- 1 MiB, every page written
      t = nil
    end
    local grown = (rss_kib() - start) / 1024
    assert.is_true(grown < 300, string.format("resident memory grew %.0f MiB", grown))
  end)

  it("turns an allocation past the limit into an error, after collecting garbage", function()
    collectgarbage()
    local base = vl.memory_in_use()
    vl.set_memory_limit(base + 64 * 1024 * 1024)
    local ok, msg = pcall(vl.zeros, 1024, 1024, 32) -- 128 MiB
    local garbage_ok = pcall(function()
      for _ = 1, 10 do local g = vl.zeros(1024, 1024, 8) end -- 32 MiB each, dropped
    end)
    vl.set_memory_limit(0)
    assert.is_false(ok)
    assert.matches("memory limit", msg)
    assert.is_true(garbage_ok, "dead tensors should be collected before the limit is hit")
  end)
end)

describe("bad input", function()
  local x = vl.arange(6):view(2, 3)
  local cases = {
    { function() return vl.zeros(2, -3) end, "negative size %-3" },
    { function() return vl.zeros(2, 2.5) end, "sizes must be integers" },
    { function() return vl.zeros(2 ^ 40, 2 ^ 40, 2 ^ 40) end, "sizes must be integers" },
    { function() return vl.zeros(1 << 40, 1 << 40, 1 << 40) end, "overflows" },
    { function() return vl.empty(1 << 50, { dtype = "float64" }) end, "out of memory" },
    { function() return vl.zeros(2, { dtype = "complex" }) end, "unknown dtype 'complex'" },
    { function() return vl.tensor { { 1, 2 }, { 3 } } end, "ragged" },
    { function() return vl.tensor { "a" } end, "numbers or booleans" },
    { function() return x:view(4) end, "shape %[4%] is invalid for a tensor of 6 elements" },
    { function() return x:t():view(6) end, "copy; use reshape" },
    { function() return x:view(-1, -1) end, "only one dimension can be %-1" },
    { function() return x:transpose(1, 3) end, "transpose: dim 3 out of range for a 2%-d tensor" },
    { function() return x:transpose(0, 1) end, "dims are 1%-based" },
    { function() return x:select(1, 3) end, "select: index 3 out of range for dim 1 of size 2" },
    { function() return x:narrow(2, 2, 5) end, "narrow: length 5" },
    { function() return x[3] end, "index 3 out of range for dim 1 of size 2" },
    { function() return x[{ 1, 2, 3 }] end, "3 indices given for a 2%-d tensor" },
    { function() return x[{ { 2, 5 } }] end, "out of bounds" },
    { function() return x[1.5] end, "must be an integer" },
    { function() x[{ 1 }] = vl.ones(4) end, "broadcast" },
    { function() x.foo = 1 end, "cannot set field 'foo'" },
    { function() return x:expand(3, 3) end, "cannot expand shape %[2,3%] to %[3,3%]" },
    { function() return x:permute(1, 1) end, "appears twice" },
    { function() return x:permute(1) end, "1 dims given for a 2%-d tensor" },
    { function() return x:unfold(2, 5, 1) end, "unfold: size 5" },
    { function() return x:as_strided({ 3 }, { 3 }) end, "outside a storage of 6 elements" },
    { function() return vl.tensor { 1, 2 }:item() end, "expected exactly 1" },
    { function() return #vl.tensor(1) end, "0%-d tensor has no length" },
    { function() return vl.arange(0, 1, 0) end, "non%-zero step" },
    { function() return vl.linspace(0, 1, -2) end, "steps must be >= 0" },
    { function() return x:to("float128") end, "unknown dtype" },
    { function() return vl.eye(-1) end, "sizes must be >= 0" },
    { function() return vl.zeros(1, 1, 1, 1, 1, 1, 1, 1, 1) end, "more than 8 dims" },
    { function() return x:size(3) end, "dim 3 out of range" },
    { function() return vl.set_num_threads(0) end, "expected 1..1024" },
    { function() return vl.tensor(nil) end, "nested table of numbers" },
    { function() return x.view(nil) end, "tensor expected" },
  }
  for i, c in ipairs(cases) do
    it("case " .. i .. ": " .. c[2], function()
      assert.matches(c[2], err(c[1]))
    end)
  end
end)
