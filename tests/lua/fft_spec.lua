-- fft_spec.lua — vl.fft (fft, ifft, rfft, irfft; torch.fft semantics).
-- References: numpy.fft results in tests/fixtures/fft.lua (made by
-- scripts/fixtures/fft.py) for power-of-two, odd and prime sizes, n
-- trimming / padding, non-last dims and the three norms; round trips;
-- central differences (vl.gradcheck) for every transform's backward; the
-- contiguous results for other layouts, dtypes and thread counts.
local vl = require "vl"

local fx = dofile("tests/fixtures/fft.lua")

local function T(values, shape, dtype)
  return vl.tensor(values, { dtype = dtype or "float64" }):view(shape)
end

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  return t:contiguous():view(-1):totable()
end

local function assert_close(got, want, rtol, atol, what)
  local g = type(got) == "table" and got or flat(got)
  assert.are.equal(#want, #g, (what or "") .. ": element count")
  for i = 1, #want do
    local tol = atol + rtol * math.abs(want[i])
    if not (math.abs(g[i] - want[i]) <= tol) then
      error(string.format("%s element %d: got %.17g, want %.17g (tol %g)", what or "", i, g[i], want[i], tol), 2)
    end
  end
end

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

local function max_abs(t)
  local m = 0
  for _, v in ipairs(t) do m = math.max(m, math.abs(v)) end
  return m
end

describe("fft against numpy.fft (float64)", function()
  for _, c in ipairs(fx.cases) do
    it(c.name .. " to 1e-10 of the largest value", function()
      local y = vl.fft[c.fn](T(c.x, c.x_shape), c.opts)
      assert.are.same(c.y_shape, y:size())
      assert.are.equal("float64", y.dtype)
      assert_close(y, c.y, 0, 1e-10 * (1 + max_abs(c.y)), c.name)
    end)
  end
end)

describe("fft float32 in, float32 out", function()
  for _, c in ipairs(fx.cases) do
    it(c.name .. " to 1e-5 of the largest value", function()
      local y = vl.fft[c.fn](T(c.x, c.x_shape, "float32"), c.opts)
      assert.are.equal("float32", y.dtype)
      assert_close(y, c.y, 0, 1e-5 * (1 + max_abs(c.y)), c.name)
    end)
  end
end)

describe("fft on non-contiguous inputs", function()
  for _, c in ipairs(fx.cases) do
    if #c.x_shape >= 2 then
      it(c.name .. ": transposed storage gives the same numbers", function()
        local nd = #c.x_shape
        local x = T(c.x, c.x_shape):transpose(1, nd):contiguous():transpose(1, nd)
        if c.x_shape[1] > 1 and c.x_shape[nd] > 1 then assert.is_false(x:is_contiguous()) end
        local y = vl.fft[c.fn](x, c.opts)
        assert_close(y, c.y, 0, 1e-10 * (1 + max_abs(c.y)), c.name)
      end)
    end
  end
  it("a strided slice (every other row) and an expanded input", function()
    local base = vl.randn({ 3, 2, 10 }, { dtype = "float64" })
    local sl = base:select(2, 2) -- rows 2, 4, 6 of a [6, 10] matrix
    assert.is_false(sl:is_contiguous())
    assert_close(vl.fft.rfft(sl), flat(vl.fft.rfft(sl:contiguous())), 0, 1e-14, "slice")
    local e = vl.randn({ 1, 7 }, { dtype = "float64" }):expand({ 4, 7 })
    local want = flat(vl.fft.rfft(e:contiguous()))
    assert_close(vl.fft.rfft(e), want, 0, 1e-14, "expand")
  end)
end)

describe("fft round trips and closed forms", function()
  for _, L in ipairs({ 1, 2, 3, 8, 31, 64, 100, 257 }) do
    it("irfft(rfft(x), n = L) == x and ifft(fft(z)) == z for L = " .. L, function()
      local x = vl.randn({ 3, L }, { dtype = "float64" })
      assert_close(vl.fft.irfft(vl.fft.rfft(x), { n = L }), flat(x), 0, 1e-12, "rfft round trip")
      local z = vl.randn({ 2, L, 2 }, { dtype = "float64" })
      assert_close(vl.fft.ifft(vl.fft.fft(z)), flat(z), 0, 1e-12, "fft round trip")
    end)
  end
  it("the DFT of a unit impulse at t is exp(-2 pi i k t / n) (n = 12, Bluestein)", function()
    local n, t = 12, 5
    local x = vl.zeros({ n }, { dtype = "float64" })
    x[t + 1] = 1
    local y = flat(vl.fft.rfft(x))
    for k = 0, n // 2 do
      local a = -2 * math.pi * k * t / n
      assert.is_true(math.abs(y[2 * k + 1] - math.cos(a)) < 1e-14)
      assert.is_true(math.abs(y[2 * k + 2] - math.sin(a)) < 1e-14)
    end
  end)
  it("irfft ignores the imaginary parts of bin 0 and bin n/2", function()
    local X = vl.randn({ 5, 2 }, { dtype = "float64" })
    local Y = X:clone()
    Y[1][2] = 7
    Y[5][2] = -3
    assert_close(vl.fft.irfft(Y), flat(vl.fft.irfft(X)), 0, 1e-14, "irfft")
  end)
  it("same numbers with 1 and 2 threads (many lines)", function()
    local x = vl.randn({ 64, 45 }, { dtype = "float64" })
    local n0 = vl.get_num_threads()
    vl.set_num_threads(1)
    local a = flat(vl.fft.rfft(x, { n = 90 }))
    vl.set_num_threads(2)
    local b = flat(vl.fft.rfft(x, { n = 90 }))
    vl.set_num_threads(n0)
    assert_close(b, a, 0, 0, "threads")
  end)
  it("empty batch dims give empty outputs of the right shape", function()
    assert.are.same({ 0, 5, 2 }, vl.fft.rfft(vl.zeros({ 0, 8 })):size())
    assert.are.same({ 3, 0, 4, 2 }, vl.fft.fft(vl.zeros({ 3, 0, 4, 2 })):size())
    assert.are.same({ 0, 8 }, vl.fft.irfft(vl.zeros({ 0, 5, 2 })):size())
  end)
end)

describe("fft gradcheck (float64)", function()
  local function check(fn, x)
    x:requires_grad(true)
    local ok, msg = vl.gradcheck(fn, { x }, { atol = 1e-7, rtol = 1e-6 })
    assert.is_true(ok, msg)
  end
  for _, o in ipairs({ {}, { n = 12 }, { n = 5 }, { n = 7, norm = "ortho" }, { norm = "forward" } }) do
    local tag = string.format("n=%s norm=%s", tostring(o.n), tostring(o.norm))
    it("rfft " .. tag, function() check(function(t) return vl.fft.rfft(t, o) end, vl.randn({ 2, 8 }, { dtype = "float64" })) end)
    it("irfft " .. tag, function()
      check(function(t) return vl.fft.irfft(t, o) end, vl.randn({ 2, 5, 2 }, { dtype = "float64" }))
    end)
    it("fft " .. tag, function() check(function(t) return vl.fft.fft(t, o) end, vl.randn({ 2, 6, 2 }, { dtype = "float64" })) end)
    it("ifft " .. tag, function()
      check(function(t) return vl.fft.ifft(t, o) end, vl.randn({ 6, 2 }, { dtype = "float64" }))
    end)
  end
  it("rfft and irfft along a non-last dim, odd lengths", function()
    check(function(t) return vl.fft.rfft(t, { dim = 1, n = 9 }) end, vl.randn({ 7, 3 }, { dtype = "float64" }))
    check(function(t) return vl.fft.irfft(t, { dim = 2, n = 9 }) end, vl.randn({ 3, 4, 2, 2 }, { dtype = "float64" }))
  end)
  it("the S4D composition irfft(rfft(u, 2L) * rfft(k, 2L))", function()
    local L = 6
    local k = vl.randn({ 3, L }, { dtype = "float64" }):requires_grad(true)
    local u = vl.randn({ 2, 3, L }, { dtype = "float64" }):requires_grad(true)
    local function cmul(a, b)
      local ar, ai, br, bi = a:select(-1, 1), a:select(-1, 2), b:select(-1, 1), b:select(-1, 2)
      return vl.stack({ ar * br - ai * bi, ar * bi + ai * br }, -1)
    end
    local ok, msg = vl.gradcheck(function(uu, kk)
      local y = vl.fft.irfft(cmul(vl.fft.rfft(uu, { n = 2 * L }), vl.fft.rfft(kk, { n = 2 * L })), { n = 2 * L })
      return y:narrow(-1, 1, L)
    end, { u, k }, { atol = 1e-7, rtol = 1e-6 })
    assert.is_true(ok, msg)
  end)
  it("float32 gradients have the input's dtype", function()
    local x = vl.randn({ 2, 6 }):requires_grad(true)
    vl.fft.irfft(vl.fft.rfft(x), { n = 6 }):sum():backward()
    assert.are.equal("float32", x.grad.dtype)
    assert_close(x.grad, { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 0, 1e-5, "grad of the identity")
  end)
end)

describe("fft bad inputs", function()
  it("takes integer and bool tensors as float32, refuses float16 and bfloat16", function()
    local y = vl.fft.rfft(vl.tensor({ 1, 2, 3 }, { dtype = "int64" }))
    assert.are.equal("float32", y.dtype)
    assert_close(y, flat(vl.fft.rfft(vl.tensor({ 1, 2, 3 }, { dtype = "float64" }))), 0, 1e-6, "int64")
    assert.are.equal("float32", vl.fft.fft(vl.ones({ 3, 2 }, { dtype = "bool" })).dtype)
    fails("rfft: input is float16, expected float32 or float64", vl.fft.rfft, vl.zeros({ 3 }, { dtype = "float16" }))
    fails("irfft: input is bfloat16, expected float32 or float64", vl.fft.irfft, vl.zeros({ 3, 2 }, { dtype = "bfloat16" }))
  end)
  it("refuses complex inputs without a trailing pair", function()
    fails("fft: input of shape [4,3] is not complex", vl.fft.fft, vl.zeros({ 4, 3 }))
    fails("irfft: input of shape [2] is not complex", vl.fft.irfft, vl.zeros({ 2 }))
  end)
  it("refuses dims out of range", function()
    fails("rfft: dim 3 out of range", vl.fft.rfft, vl.zeros({ 4, 3 }), { dim = 3 })
    fails("fft: dim 2 out of range", vl.fft.fft, vl.zeros({ 4, 2 }), { dim = 2 })
  end)
  it("refuses bad n, norm and options", function()
    fails("rfft: option 'n' must be >= 1, got 0", vl.fft.rfft, vl.zeros({ 4 }), { n = 0 })
    fails("rfft: option 'n' must be an integer", vl.fft.rfft, vl.zeros({ 4 }), { n = 2.5 })
    fails("fft: unknown norm 'unit'", vl.fft.rfft, vl.zeros({ 4 }), { norm = "unit" })
    fails("ifft: unknown option 'axis'", vl.fft.ifft, vl.zeros({ 4, 2 }), { axis = 1 })
    fails("irfft: invalid number of data points 0", vl.fft.irfft, vl.zeros({ 1, 2 }))
    fails("rfft: invalid number of data points 0", vl.fft.rfft, vl.zeros({ 3, 0 }))
    fails("rfft: input is a 0-d tensor", vl.fft.rfft, vl.tensor(1.0))
  end)
end)
