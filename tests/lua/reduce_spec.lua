local vl = require "vl"

-- Reductions: checked against NumPy outputs (tests/fixtures/reduce.lua,
-- written by scripts/fixtures/reduce.py) and closed forms.

local F = dofile("tests/fixtures/reduce.lua")

local function input(name)
  local inp = F.inputs[name]
  return vl.tensor(inp.values, {dtype = inp.dtype}):view(inp.shape)
end

local function flat(t)
  if t:dim() == 0 then return {t:item()} end
  return t:contiguous():view(t:numel()):totable()
end

local function close(a, b, rtol, atol)
  if b ~= b then return a ~= a end
  if b == math.huge or b == -math.huge then return a == b end
  return math.abs(a - b) <= atol + rtol * math.abs(b)
end

local function assert_values(t, expected, rtol, atol, what)
  local got = flat(t)
  assert.are.equal(#expected, #got, (what or "") .. ": element count")
  for i = 1, #expected do
    if not close(got[i], expected[i], rtol or 1e-12, atol or 1e-12) then
      error(string.format("%s: element %d is %.17g, expected %.17g", what or "", i, got[i], expected[i]), 2)
    end
  end
end

local function assert_shape(t, shape, what)
  assert.are.same(shape, t:size(), what)
end

local function call(op, x, c, method)
  local a = {}
  for i, v in ipairs(c.args or {}) do a[i] = v end
  if c.opts then a[#a + 1] = c.opts end
  if method then return x[op](x, table.unpack(a)) end
  return vl[op](x, table.unpack(a))
end

describe("reductions against NumPy", function()
  for k, c in ipairs(F.cases) do
    it(c.name, function()
      local x = input(c.input)
      local r, idx = call(c.op, x, c, k % 2 == 0)
      assert_shape(r, c.shape, c.name)
      if c.op == "argmax" or c.op == "argmin" then
        assert.are.equal("int64", r.dtype)
      end
      assert_values(r, c.expected, c.rtol, c.atol, c.name)
      if c.index then
        assert.are.equal("int64", idx.dtype)
        assert_shape(idx, c.shape, c.name .. " indices")
        assert_values(idx, c.index, 0, 0, c.name .. " indices")
      end
    end)
  end
end)

describe("result dtypes and shapes", function()
  it("keeps the input float dtype and reduces to 0-d without dims", function()
    local x = vl.ones(2, 3)
    assert.are.equal("float32", x:sum().dtype)
    assert.are.equal(0, x:sum():dim())
    assert.are.equal("float64", x:double():mean(1).dtype)
    assert.are.equal(6, x:sum():item())
  end)

  it("keepdim keeps reduced dims as size 1", function()
    local x = vl.zeros(2, 3, 4)
    assert_shape(x:sum({1, 3}, {keepdim = true}), {1, 3, 1})
    assert_shape(x:sum(nil, {keepdim = true}), {1, 1, 1})
    assert_shape(x:mean(-1, {keepdim = true}), {2, 3, 1})
    assert_shape(x:var(2, {keepdim = true}), {2, 1, 4})
    assert_shape(x:norm({dim = 2, keepdim = true}), {2, 1, 4})
    local v, i = x:max(2, {keepdim = true})
    assert_shape(v, {2, 1, 4})
    assert_shape(i, {2, 1, 4})
    assert_shape(x:argmax(nil, {keepdim = true}), {1, 1, 1})
    assert_shape(x:argmax(3, {keepdim = true}), {2, 3, 1})
  end)

  it("takes keepdim and unbiased as positional booleans too", function()
    local x = vl.arange(0, 6, 1, {dtype = "float64"}):view(2, 3)
    assert_shape(x:sum(2, true), {2, 1})
    assert_shape(x:amax(1, true), {1, 3})
    local v, i = x:max(2, true)
    assert_shape(v, {2, 1})
    assert_shape(i, {2, 1})
    assert_values(x:var(2, false), {2 / 3, 2 / 3}, 1e-15, 0)
    assert_values(x:var(2, true), {1, 1}, 1e-15, 0)
    assert_values(x:std(false), {math.sqrt(35 / 12)}, 1e-15, 0)
    assert_values(x:var(2, {unbiased = false}), {2 / 3, 2 / 3}, 1e-15, 0)
    assert_values(x:var(2, {correction = 2}), {2, 2}, 1e-15, 0)
  end)

  it("sum of bool counts the trues as int64", function()
    local b = vl.tensor({{true, false, true}, {true, true, true}})
    local s = b:sum()
    assert.are.equal("int64", s.dtype)
    assert.are.equal(5, s:item())
    assert_values(b:sum(2), {2, 3}, 0, 0)
    assert_values(b:cumsum(2), {1, 1, 2, 1, 2, 3}, 0, 0)
    assert.are.equal("int64", b:cumsum(1).dtype)
  end)

  it("integer sums and products are exact int64", function()
    local x = vl.tensor({9007199254740992, 1, 2}, {dtype = "int64"})
    assert.are.equal(9007199254740995, x:sum():item())
    assert.are.equal(math.tointeger(9007199254740992 * 2), x:prod():item())
    local y = vl.tensor({{1, 2, 3}, {4, 5, 6}}, {dtype = "int32"})
    assert.are.equal("int64", y:sum(1).dtype)
    assert_values(y:sum(1), {5, 7, 9}, 0, 0)
    assert_values(y:prod(2), {6, 120}, 0, 0)
    assert.are.equal("int32", y:amax(2).dtype)
    assert_values(y:amax(2), {3, 6}, 0, 0)
    assert_values(y:cumsum(1), {1, 2, 3, 5, 7, 9}, 0, 0)
  end)

  it("uint8 keeps its dtype for amax/amin and sums to int64", function()
    local x = vl.tensor({{200, 100}, {255, 7}}, {dtype = "uint8"})
    assert.are.equal("uint8", x:amax().dtype)
    assert.are.equal(255, x:amax():item())
    assert.are.equal(7, x:amin():item())
    assert.are.equal(562, x:sum():item())
    local v, i = x:max(1)
    assert.are.equal("uint8", v.dtype)
    assert_values(v, {255, 100}, 0, 0)
    assert_values(i, {2, 1}, 0, 0)
  end)

  it("mean/var/norm/softmax of integers promote to float32", function()
    local x = vl.tensor({1, 2, 3, 4})
    assert.are.equal("int64", x.dtype)
    assert.are.equal("float32", x:mean().dtype)
    assert.are.equal(2.5, x:mean():item())
    assert.are.equal("float32", x:var().dtype)
    assert.is_true(close(x:var():item(), 5 / 3, 1e-6, 0))
    assert.are.equal("float32", x:norm().dtype)
    assert.is_true(close(x:norm():item(), math.sqrt(30), 1e-6, 0))
    assert.are.equal("float32", x:softmax(1).dtype)
    assert.are.equal("float32", x:logsumexp(1).dtype)
  end)

  it("all and any give bool, treating NaN as non-zero", function()
    local x = vl.tensor({{1, 0, 2}, {3, 4, 5}})
    assert.are.equal("bool", x:all().dtype)
    assert.is_false(x:all():item())
    assert.is_true(x:any():item())
    assert.are.same({false, true}, flat(x:all(2)))
    assert.are.same({true, false, true}, flat(x:all(1)))
    assert.are.same({false, false}, flat(vl.zeros(2, 2):any(2)))
    local n = vl.tensor({0 / 0, 1.0})
    assert.is_true(n:all():item())
  end)

  it("float16 and bfloat16 reduce in float32 and keep their dtype", function()
    local x = vl.arange(1, 9, 1, {dtype = "float32"}):view(2, 4)
    local h = x:half()
    assert.are.equal("float16", h:sum().dtype)
    assert.are.equal(36, h:sum():item())
    assert_values(h:mean(2), {2.5, 6.5}, 0, 0)
    local v, i = h:max(2)
    assert.are.equal("float16", v.dtype)
    assert_values(v, {4, 8}, 0, 0)
    assert_values(i, {4, 4}, 0, 0)
    assert.are.equal("float16", h:softmax(2).dtype)
    assert_values(h:softmax(2), flat(x:softmax(2)), 1e-3, 1e-3)
  end)
end)

describe("non-contiguous inputs", function()
  local x = input("a64")

  it("transposed and permuted views give the same results as their contiguous copies", function()
    local views = {x:transpose(1, 3), x:permute(2, 3, 1), x:narrow(3, 2, 3), x:select(2, 3)}
    for vi, v in ipairs(views) do
      local c = v:clone()
      local nd = v:dim()
      local dimsets = {{}, {1}, {nd}, {1, nd}}
      for _, ds in ipairs(dimsets) do
        local d = #ds > 0 and ds or nil
        for _, op in ipairs({"sum", "mean", "prod", "amax", "amin", "logsumexp", "var", "std"}) do
          assert_values(v[op](v, d), flat(c[op](c, d)), 1e-12, 1e-12, op .. " view " .. vi)
        end
        assert_values(v:norm({p = 3, dim = d}), flat(c:norm({p = 3, dim = d})), 1e-12, 1e-12, "norm view " .. vi)
      end
      for d = 1, nd do
        assert_values(v:softmax(d), flat(c:softmax(d)), 1e-12, 1e-15, "softmax view " .. vi)
        assert_values(v:log_softmax(d), flat(c:log_softmax(d)), 1e-12, 1e-12, "log_softmax view " .. vi)
        assert_values(v:cumsum(d), flat(c:cumsum(d)), 1e-12, 1e-12, "cumsum view " .. vi)
        local a, ai = v:max(d)
        local b, bi = c:max(d)
        assert_values(a, flat(b), 0, 0)
        assert_values(ai, flat(bi), 0, 0)
        assert_values(v:argmin(d), flat(c:argmin(d)), 0, 0)
      end
      assert_values(v:argmax(), flat(c:argmax()), 0, 0, "argmax flat view " .. vi)
    end
  end)

  it("expanded (stride 0) inputs", function()
    local e = vl.tensor({1.0, 2.0, 3.0}):view(3, 1):expand(3, 4)
    assert_values(e:sum(2), {4, 8, 12}, 0, 0)
    assert_values(e:sum(1), {6, 6, 6, 6}, 0, 0)
    assert_values(e:softmax(2), {0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25}, 1e-6, 0)
    assert_values(e:argmax(), {9}, 0, 0)     -- first 3.0 in the flattened [3,4]
    assert_values(e:cumsum(2), {1, 2, 3, 4, 2, 4, 6, 8, 3, 6, 9, 12}, 0, 0)
    assert.is_true(close(e:var():item(), 8 / 11, 1e-6, 0))
  end)
end)

describe("closed forms and large inputs", function()
  it("float32 sums accumulate in double", function()
    local x = vl.full({1000000}, 0.1)
    assert.are.equal("float32", x.dtype)
    -- float32(0.1) = 0.100000001490116...; a float32 running sum drifts to ~100958
    assert.is_true(math.abs(x:sum():item() - 100000.00149) < 0.02)
    assert.is_true(math.abs(x:mean():item() - 0.1) < 1e-7)
  end)

  it("long rows are split into chunks and merged exactly", function()
    local n = 100000
    local x = vl.arange(0, n, 1, {dtype = "float64"})
    assert.are.equal(n * (n - 1) / 2, x:sum():item())
    local v = x:view(2, n // 2):var(2, {correction = 0}):totable()
    local m = n // 2
    assert.is_true(close(v[1], (m * m - 1) / 12, 1e-12, 0))
    -- the maximum repeats across chunks: the first one wins
    local z = vl.zeros(n)
    z:narrow(1, 20000, 1):fill_(5)
    z:narrow(1, 90000, 1):fill_(5)
    assert.are.equal(20000, z:argmax():item())
    local val, idx = z:view(1, n):max(2)
    assert.are.equal(5, val:item())
    assert.are.equal(20000, idx:item())
    z:narrow(1, 70000, 1):fill_(0 / 0)
    assert.are.equal(70000, z:argmax():item())
    assert.is_true(z:amax():item() ~= z:amax():item())
  end)

  it("a long leading dim is split across threads", function()
    local n = 60000
    local x = vl.arange(0, 3 * n, 1, {dtype = "float64"}):view(n, 3)
    -- column j holds j-1, j+2, ..., 3(n-1)+j-1
    local s = x:sum(1):totable()
    for j = 1, 3 do assert.are.equal(3 * n * (n - 1) / 2 + n * (j - 1), s[j]) end
    local v = x:var(1):totable()
    for j = 1, 3 do assert.is_true(close(v[j], 9 * n * (n + 1) / 12, 1e-12, 0)) end
    local mx, mi = x:max(1)
    assert.are.same({n, n, n}, mi:totable())
    assert.are.same({3 * n - 3, 3 * n - 2, 3 * n - 1}, mx:totable())
    assert.are.same({1, 1, 1}, x:argmin(1):totable())
    assert.are.equal(3 * n * (3 * n - 1) / 2, x:cumsum(1):select(1, n):sum():item())
  end)

  it("logsumexp is stable for large values and handles infinities", function()
    assert.is_true(close(vl.logsumexp(vl.tensor({1000.0, 1000.0}), 1):item(), 1000 + math.log(2), 1e-7, 0))
    assert.is_true(close(vl.logsumexp(vl.tensor({-1000.0, -1000.0}), 1):item(), -1000 + math.log(2), 1e-7, 0))
    assert.are.equal(-math.huge, vl.logsumexp(vl.tensor({-math.huge, -math.huge}), 1):item())
    assert.are.equal(math.huge, vl.logsumexp(vl.tensor({math.huge, 1.0}), 1):item())
  end)

  it("softmax rows sum to 1 and match the closed form", function()
    local x = vl.arange(0, 64 * 1000, 1, {dtype = "float32"}):view(64, 1000)
    local s = x:softmax(2):sum(2):totable()
    for i = 1, 64 do assert.is_true(close(s[i], 1, 1e-5, 0)) end
    -- closed form: softmax({0, log 3}) = {1/4, 3/4}
    assert_values(vl.tensor({0.0, math.log(3)}):softmax(1), {0.25, 0.75}, 1e-6, 0)
    assert_values(vl.tensor({{0.0}, {math.log(3)}}):softmax(1), {0.25, 0.75}, 1e-6, 0)
    -- huge values: no overflow
    assert_values(vl.tensor({1e30, 0.0}):softmax(1), {1, 0}, 0, 0)
    assert_values(vl.tensor({1e4, 1e4 - math.log(3)}, {dtype = "float64"}):log_softmax(1),
                  {-math.log(4 / 3), -math.log(4)}, 1e-9, 1e-9)
    -- log_softmax of large magnitudes keeps the differences
    assert_values(vl.tensor({1000.0, 0.0}):log_softmax(1), {0, -1000}, 0, 1e-4)
  end)

  it("softmax of -inf rows is NaN, and a NaN poisons its row only", function()
    local x = vl.tensor({{-math.huge, -math.huge}, {1.0, 2.0}})
    local r = x:softmax(2):totable()
    assert.is_true(r[1][1] ~= r[1][1] and r[1][2] ~= r[1][2])
    assert.is_true(close(r[2][2], 1 / (1 + math.exp(-1)), 1e-6, 0))
    local y = vl.tensor({{0 / 0, 1.0}, {1.0, 1.0}}):log_softmax(2):totable()
    assert.is_true(y[1][2] ~= y[1][2])
    assert.is_true(close(y[2][1], -math.log(2), 1e-6, 0))
    -- masked attention style: -inf entries get probability 0
    assert_values(vl.tensor({-math.huge, 0.0, 0.0}):softmax(1), {0, 0.5, 0.5}, 0, 1e-7)
  end)

  it("max/min with a tensor argument are element-wise", function()
    local a = vl.tensor({1.0, 5.0, 3.0})
    local b = vl.tensor({4.0, 2.0, 3.0})
    assert_values(a:max(b), {4, 5, 3}, 0, 0)
    assert_values(vl.min(a, b), {1, 2, 3}, 0, 0)
  end)

  it("norm p=0 counts non-zeros; positional and option forms agree", function()
    local x = vl.tensor({{0.0, 2.0, 0.0}, {1.0, -3.0, 4.0}})
    assert_values(x:norm(0, 2), {1, 3}, 0, 0)
    assert_values(x:norm({p = 0, dim = 2}), {1, 3}, 0, 0)
    assert_values(x:norm(1), {10}, 0, 0)
    assert_values(x:norm("inf", {1, 2}), {4}, 0, 0)
    assert_values(x:norm("fro"), {math.sqrt(30)}, 1e-6, 0)
  end)
end)

describe("empty and 0-d tensors", function()
  local e = vl.zeros(0, 3)

  it("reductions over a zero-size dim give the identity", function()
    assert_values(e:sum(1), {0, 0, 0}, 0, 0)
    assert_values(e:prod(1), {1, 1, 1}, 0, 0)
    local m = e:mean(1):totable()
    assert.is_true(m[1] ~= m[1])
    assert.are.same({true, true, true}, e:all(1):totable())
    assert.are.same({false, false, false}, e:any(1):totable())
    assert.are.same({-math.huge, -math.huge, -math.huge}, e:logsumexp(1):totable())
    local v = e:var(1):totable()
    assert.is_true(v[1] ~= v[1])
    assert_values(e:norm({dim = 1}), {0, 0, 0}, 0, 0)
    assert.are.equal(0, e:sum():item())
  end)

  it("reductions over a non-empty dim of an empty tensor are empty", function()
    assert_shape(e:sum(2), {0})
    assert_shape(e:amax(2), {0})
    local v, i = e:max(2)
    assert_shape(v, {0})
    assert_shape(i, {0})
    assert_shape(e:softmax(2), {0, 3})
    assert_shape(e:cumsum(1), {0, 3})
    assert_shape(e:argmax(2), {0})
  end)

  it("0-d tensors reduce to themselves", function()
    local s = vl.tensor(5.0)
    assert.are.equal(5, s:sum():item())
    assert.are.equal(5, s:sum(1):item())
    assert.are.equal(1, s:softmax(1):item())
    assert.are.equal(0, s:log_softmax(-1):item())
    local v, i = s:max(1)
    assert.are.equal(5, v:item())
    assert.are.equal(1, i:item())
    assert.are.equal(1, s:argmax():item())
    assert.are.equal(5, s:cumsum(1):item())
    assert.are.equal(5, s:norm():item())
  end)
end)

describe("bad input", function()
  local x = vl.zeros(2, 3, 4)

  local function fails(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
  end

  it("rejects out-of-range dims with the 1-based dim", function()
    fails("sum: dim 4 out of range for a 3%-d tensor", vl.sum, x, 4)
    fails("mean: dim %-4 out of range", vl.mean, x, {1, -4})
    fails("argmax: dim 0 out of range", vl.argmax, x, 0)
    fails("softmax: dim 5 out of range", vl.softmax, x, 5)
    fails("max: dim 4 out of range", vl.max, x, 4)
  end)

  it("rejects duplicate dims", function()
    fails("sum: dim 1 appears twice", vl.sum, x, {1, -3})
    fails("var: dim 2 appears twice", vl.var, x, {2, 2})
  end)

  it("rejects bad dims arguments", function()
    fails("sum: dims must be a dim or a table of dims", vl.sum, x, "all")
    fails("prod: dim must be an integer", vl.prod, x, 1.5)
  end)

  it("rejects max/min over empty dims", function()
    fails("max: cannot take the maximum over dim 1 of size 0", vl.max, vl.zeros(0, 3), 1)
    fails("min: cannot take the minimum of an empty tensor", vl.min, vl.zeros(0, 3))
    fails("amax: cannot take the maximum over a dim of size 0", vl.amax, vl.zeros(2, 0))
    fails("argmin: cannot take the minimum over dim 2 of size 0", vl.argmin, vl.zeros(2, 0), 2)
    fails("argmax: cannot take the maximum over a dim of size 0", vl.argmax, vl.zeros(0))
    fails("norm: cannot take the maximum over a dim of size 0", vl.norm, vl.zeros(0), "inf")
  end)

  it("requires a dim for softmax, log_softmax and cumsum", function()
    fails("softmax: dim is required", vl.softmax, x)
    fails("log_softmax: dim is required", vl.log_softmax, x)
    fails("cumsum: dim is required", vl.cumsum, x)
    fails("softmax: dim is required", vl.softmax, x, {})
  end)

  it("rejects softmax on bool", function()
    fails("softmax: bool tensors are not accepted", vl.softmax, vl.tensor({true, false}), 1)
    fails("log_softmax: bool tensors are not accepted", vl.log_softmax, vl.tensor({true, false}), 1)
  end)

  it("rejects bad var/std corrections and norm orders", function()
    fails("var: correction must be >= 0", vl.var, x, 1, {correction = -1})
    fails("option 'correction' must be an integer", vl.std, x, 1, {correction = 0.5})
    fails("norm: p must be a number, \"inf\"", vl.norm, x, "two")
    fails("norm: p must be a number, got nan", vl.norm, x, 0 / 0)
    fails("option 'keepdim' must be a boolean", vl.sum, x, 1, {keepdim = 1})
  end)

  it("rejects non-tensors", function()
    local ok = pcall(vl.sum, "abc")
    assert.is_false(ok)
    ok = pcall(vl.softmax, 3, 1)
    assert.is_false(ok)
  end)
end)
