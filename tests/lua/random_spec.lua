local vl = require "vl"

-- References: closed-form moments of U[0,1) and N(0,1) checked to 5 sigma
-- with fixed seeds; a chi-square critical value (df = 10, upper tail 1e-6:
-- 46.863); the Philox known-answer vectors are checked in tests/c/test_random.c.

local CHI2_DF10_P1E6 = 46.863

local function flat(x)
  local out = {}
  local function walk(v)
    if type(v) == "table" then
      for _, e in ipairs(v) do walk(e) end
    else
      out[#out + 1] = v
    end
  end
  walk(x:totable())
  return out
end

local function same(a, b)
  local fa, fb = flat(a), flat(b)
  if #fa ~= #fb then return false end
  for i = 1, #fa do
    if fa[i] ~= fb[i] then return false end
  end
  return true
end

-- mean, variance, count, min, max in one pass
local function moments(t)
  local s, s2, n, lo, hi = 0, 0, 0, math.huge, -math.huge
  for _, v in ipairs(flat(t)) do
    s, s2, n = s + v, s2 + v * v, n + 1
    if v < lo then lo = v end
    if v > hi then hi = v end
  end
  local mean = s / n
  return mean, s2 / n - mean * mean, n, lo, hi
end

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok)
  return tostring(e)
end

describe("seeding", function()
  it("gives the same numbers for the same seed", function()
    for _, dt in ipairs { "float32", "float64", "float16", "bfloat16" } do
      vl.manual_seed(123)
      local a, an = vl.rand(50, 3, { dtype = dt }), vl.randn({ 7, 9 }, { dtype = dt })
      vl.manual_seed(123)
      local b, bn = vl.rand(50, 3, { dtype = dt }), vl.randn({ 7, 9 }, { dtype = dt })
      assert.is_true(same(a, b))
      assert.is_true(same(an, bn))
      assert.are.equal(dt, a.dtype)
    end
    vl.manual_seed(5)
    local i1, p1 = vl.randint(-10, 10, { 100 }), vl.randperm(50)
    vl.manual_seed(5)
    assert.is_true(same(i1, vl.randint(-10, 10, { 100 })))
    assert.is_true(same(p1, vl.randperm(50)))
  end)

  it("gives different numbers for different seeds and successive calls", function()
    vl.manual_seed(1)
    local a = vl.rand(1000)
    local a2 = vl.rand(1000)
    vl.manual_seed(2)
    local b = vl.rand(1000)
    assert.is_false(same(a, b))
    assert.is_false(same(a, a2))
  end)

  it("reports the seed and restores a saved state", function()
    vl.manual_seed(987654321)
    assert.are.equal(987654321, vl.initial_seed())
    vl.manual_seed(-1) -- any Lua integer; kept as its 64-bit pattern
    assert.are.equal(-1, vl.initial_seed())
    vl.manual_seed(42)
    local _ = vl.randn(10)
    local st = vl.get_rng_state()
    assert.are.equal(42, st.seed)
    assert.is_true(st.offset > 0)
    local a = vl.rand(33)
    vl.set_rng_state(st)
    assert.is_true(same(a, vl.rand(33)))
  end)

  it("does not depend on the number of threads", function()
    local saved = vl.get_num_threads()
    local function draw()
      vl.manual_seed(2024)
      local x = vl.zeros(300, 400)
      x:t():normal_(2, 3) -- strided fill
      return { vl.rand(200000), vl.randn(70001, { dtype = "float64" }), vl.randint(0, 1000, { 100000 }), x,
        vl.zeros(100000, { dtype = "uint8" }):bernoulli_(0.3) }
    end
    vl.set_num_threads(1)
    local one = draw()
    vl.set_num_threads(2)
    local two = draw()
    vl.set_num_threads(saved)
    for k = 1, #one do assert.is_true(same(one[k], two[k])) end
  end)

  it("lets a prefix of a long fill equal a short fill", function()
    vl.manual_seed(9)
    local long = flat(vl.rand(1000, { dtype = "float64" }))
    vl.manual_seed(9)
    local short = flat(vl.rand(7, { dtype = "float64" }))
    for i = 1, 7 do assert.are.equal(long[i], short[i]) end
  end)
end)

describe("distributions", function()
  it("rand is uniform on [0, 1)", function()
    for _, dt in ipairs { "float32", "float64" } do
      vl.manual_seed(1234)
      local x = vl.rand(1000, 1000, { dtype = dt })
      assert.are.same({ 1000, 1000 }, x:size())
      local mean, var, n, lo, hi = moments(x)
      assert.is_true(math.abs(mean - 0.5) < 5 * math.sqrt(1 / 12 / n))
      assert.is_true(math.abs(var - 1 / 12) < 5 * math.sqrt((1 / 80 - 1 / 144) / n))
      assert.is_true(lo >= 0 and hi < 1)
    end
  end)

  it("randn is standard normal", function()
    for _, dt in ipairs { "float32", "float64" } do
      vl.manual_seed(99)
      local mean, var, n = moments(vl.randn(1000000, { dtype = dt }))
      assert.is_true(math.abs(mean) < 5 / math.sqrt(n))
      assert.is_true(math.abs(var - 1) < 5 * math.sqrt(2 / n))
    end
  end)

  it("normal_ and uniform_ take their parameters", function()
    vl.manual_seed(3)
    local x = vl.zeros(400, 500, { dtype = "float64" })
    assert.are.equal(x, x:normal_(5, 2))
    local mean, var, n = moments(x)
    assert.is_true(math.abs(mean - 5) < 5 * 2 / math.sqrt(n))
    assert.is_true(math.abs(var - 4) < 5 * 4 * math.sqrt(2 / n))
    for _, dt in ipairs { "float32", "float64", "float16", "bfloat16" } do
      local u = vl.zeros(20000, { dtype = dt })
      assert.are.equal(u, u:uniform_(-2, 3))
      local _, _, _, lo, hi = moments(u)
      assert.is_true(lo >= -2 and hi < 3 and lo < -1.9 and hi > 2.9)
    end
    local d = vl.zeros(10):uniform_()
    for _, v in ipairs(flat(d)) do assert.is_true(v >= 0 and v < 1) end
  end)

  it("bernoulli_ gives 0/1 with probability p, for every dtype", function()
    vl.manual_seed(11)
    for _, dt in ipairs { "bool", "uint8", "int32", "int64", "float32", "float64", "float16", "bfloat16" } do
      local n = 100000
      local x = vl.zeros(n, { dtype = dt })
      x:bernoulli_(0.3)
      local s = 0
      local bad = 0
      for _, v in ipairs(flat(x)) do
        if v == true or v == 1 then s = s + 1 elseif not (v == false or v == 0) then bad = bad + 1 end
      end
      assert.are.equal(0, bad)
      assert.is_true(math.abs(s / n - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n))
    end
    for _, v in ipairs(flat(vl.zeros(100):bernoulli_(1))) do assert.are.equal(1, v) end
    for _, v in ipairs(flat(vl.ones(100):bernoulli_(0))) do assert.are.equal(0, v) end
  end)

  it("randint is uniform on [low, high)", function()
    vl.manual_seed(77)
    local x = vl.randint(-5, 6, { 1000000 })
    assert.are.equal("int64", x.dtype)
    local count = {}
    for k = -5, 5 do count[k] = 0 end
    local bad = 0
    for _, v in ipairs(flat(x)) do
      if math.type(v) == "integer" and v >= -5 and v < 6 then count[v] = count[v] + 1 else bad = bad + 1 end
    end
    assert.are.equal(0, bad)
    local e, chi2 = 1000000 / 11, 0
    for k = -5, 5 do chi2 = chi2 + (count[k] - e) ^ 2 / e end
    assert.is_true(chi2 < CHI2_DF10_P1E6)
  end)

  it("randint takes (high, shape), integer shapes and any int or float dtype", function()
    vl.manual_seed(4)
    local a = vl.randint(3, { 2, 5 })
    assert.are.same({ 2, 5 }, a:size())
    for _, v in ipairs(flat(a)) do assert.is_true(v >= 0 and v < 3) end
    assert.are.same({ 4, 2 }, vl.randint(0, 9, 4, 2):size())
    for _, dt in ipairs { "int32", "uint8", "float32", "float64", "float16", "bfloat16" } do
      local x = vl.randint(1, 200, { 3000 }, { dtype = dt })
      assert.are.equal(dt, x.dtype)
      local lo, hi = math.huge, -math.huge
      local frac = 0
      for _, v in ipairs(flat(x)) do
        if math.floor(v) ~= v then frac = frac + 1 end
        lo, hi = math.min(lo, v), math.max(hi, v)
      end
      assert.are.equal(0, frac)
      assert.are.equal(1, lo)
      assert.are.equal(199, hi)
    end
  end)

  it("randperm is a permutation of 1..n", function()
    vl.manual_seed(8)
    for _, n in ipairs { 0, 1, 2, 10, 1000 } do
      local p = vl.randperm(n)
      assert.are.equal("int64", p.dtype)
      assert.are.same({ n }, p:size())
      local seen, bad = {}, 0
      for _, v in ipairs(flat(p)) do
        if v >= 1 and v <= n and not seen[v] then seen[v] = true else bad = bad + 1 end
      end
      assert.are.equal(0, bad)
    end
    local f = flat(vl.randperm(255, { dtype = "uint8" }))
    table.sort(f)
    for i = 1, 255 do assert.are.equal(i, f[i]) end
    assert.are.equal("float32", vl.randperm(5, { dtype = "float32" }).dtype)
    -- every first element equally likely
    local c = { 0, 0, 0 }
    for _ = 1, 3000 do
      local v = vl.randperm(3)[1]
      c[v] = c[v] + 1
    end
    for k = 1, 3 do assert.is_true(math.abs(c[k] - 1000) < 5 * math.sqrt(3000 * 2 / 9)) end
  end)

  it("handles 0-d, empty and non-contiguous tensors", function()
    local s = vl.rand()
    assert.are.equal(0, s:dim())
    assert.is_true(s:item() >= 0 and s:item() < 1)
    assert.are.same({ 0, 3 }, vl.randn(0, 3):size())
    assert.are.same({ 2, 0 }, vl.randint(0, 5, { 2, 0 }):size())
    local z = vl.zeros(0):uniform_(1, 2)
    assert.are.equal(0, z:numel())
    -- only the narrowed column is written
    local base = vl.zeros(50, 4)
    base:narrow(2, 3, 1):uniform_(1, 2)
    local t = base:totable()
    for i = 1, 50 do
      for j = 1, 4 do
        if j == 3 then assert.is_true(t[i][j] >= 1 and t[i][j] < 2) else assert.are.equal(0, t[i][j]) end
      end
    end
    local x = vl.rand_like(base)
    assert.are.same({ 50, 4 }, x:size())
    assert.are.equal("float64", vl.randn_like(base, { dtype = "float64" }).dtype)
  end)
end)

describe("bad input", function()
  it("raises clear errors", function()
    assert.matches("rand: dtype int64 not supported", err_of(vl.rand, 2, { dtype = "int64" }))
    assert.matches("randn: dtype bool not supported", err_of(vl.randn, { 2 }, { dtype = "bool" }))
    assert.matches("rand", err_of(vl.rand, -1, 3))
    assert.matches("rand: argument 2 must be a size or an options table, got string", err_of(vl.rand, 2, "x"))
    assert.matches("randint: dtype bool not supported", err_of(vl.randint, 0, 2, { 3 }, { dtype = "bool" }))
    assert.matches("randint: high %(3%) must be greater than low %(5%)", err_of(vl.randint, 5, 3, { 2 }))
    assert.matches("randint: high %(0%) must be greater than low %(0%)", err_of(vl.randint, 0, { 2 }))
    assert.matches("randint: range %[0, 300%) does not fit dtype uint8", err_of(vl.randint, 0, 300, { 2 }, { dtype = "uint8" }))
    assert.matches("randint: expected vl.randint%(low, high, shape%)", err_of(vl.randint, 0, 10))
    assert.matches("randperm: n must be non%-negative %(got %-1%)", err_of(vl.randperm, -1))
    assert.matches("randperm: n = 256 does not fit dtype uint8", err_of(vl.randperm, 256, { dtype = "uint8" }))
    assert.matches("randperm: dtype bool not supported", err_of(vl.randperm, 3, { dtype = "bool" }))
    assert.matches("uniform_: dtype int64 not supported", err_of(function() vl.zeros(3, { dtype = "int64" }):uniform_() end))
    assert.matches("uniform_: low %(2%) must be <= high %(1%)", err_of(function() vl.zeros(3):uniform_(2, 1) end))
    assert.matches("uniform_: bounds must be finite", err_of(function() vl.zeros(3):uniform_(0, math.huge) end))
    assert.matches("normal_: std must be finite and >= 0 %(got %-1%)", err_of(function() vl.zeros(3):normal_(0, -1) end))
    assert.matches("bernoulli_: p must be in %[0, 1%] %(got 1.5%)", err_of(function() vl.zeros(3):bernoulli_(1.5) end))
    assert.matches("uniform_: the tensor is an expanded view %(a dim of size 4 has stride 0",
      err_of(function() vl.zeros(1, 3):expand(4, 3):uniform_() end))
    assert.matches("manual_seed: seed must be an integer", err_of(vl.manual_seed, 1.5))
    assert.matches("manual_seed: seed must be an integer, got string", err_of(vl.manual_seed, "x"))
    assert.matches("set_rng_state: field 'offset' must be an integer", err_of(vl.set_rng_state, { seed = 1 }))
  end)
end)
