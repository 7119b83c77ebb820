-- linalg_spec.lua — vl.matmul / mm / bmm / addmm / outer / dot.
-- References: NumPy outputs in tests/fixtures/linalg.lua (made by
-- scripts/fixtures/linalg.py), closed forms, and float64 results of the
-- same product for the other dtypes and layouts.
local vl = require "vl"

local fixtures = dofile("tests/fixtures/linalg.lua")

local function T(values, shape, dtype)
  if #shape == 0 then return vl.tensor(values[1], { dtype = dtype or "float64" }) end
  return vl.tensor(values, { dtype = dtype or "float64" }):view(shape)
end

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  return t:contiguous():view(-1):totable()
end

local function assert_shape(t, shape)
  assert.are.same(shape, t:size())
end

local function assert_close(got, want, rtol, atol)
  rtol, atol = rtol or 1e-12, atol or 1e-12
  local g = flat(got)
  assert.are.equal(#want, #g)
  for i = 1, #want do
    local tol = atol + rtol * math.abs(want[i])
    if not (math.abs(g[i] - want[i]) <= tol) then
      error(string.format("element %d: got %.17g, want %.17g (tol %g)", i, g[i], want[i], tol), 2)
    end
  end
end

-- Same values, other layouts: rows of a transposed copy, and a narrow of
-- a wider tensor (leading dim larger than the row).
local function transposed(t)
  if t:dim() < 2 then return t end
  return t:transpose(-1, -2):contiguous():transpose(-1, -2)
end

local function narrowed(t)
  local shape = t:size()
  if #shape == 0 then return t end
  local wide = {}
  for i, s in ipairs(shape) do wide[i] = s end
  wide[#wide] = wide[#wide] + 3
  local w = vl.zeros(wide, { dtype = t.dtype })
  local v = w:narrow(-1, 2, shape[#shape])
  v:copy_(t)
  return v
end

-- Run a fixture case with operands a, b (and c) already made.
local function run(case, a, b, c)
  if case.op == "addmm" then return vl.addmm(c, a, b, { beta = case.beta, alpha = case.alpha }) end
  return vl[case.op](a, b)
end

local function operands(case, dtype, layout)
  layout = layout or function(t) return t end
  local a = T(case.a, case.a_shape, dtype)
  if case.expand then a = a:expand(case.expand) end
  local b = T(case.b, case.b_shape, dtype)
  local c = case.c and T(case.c, case.c_shape, dtype)
  return layout(a), layout(b), c
end

describe("linalg: NumPy fixtures", function()
  local names = {}
  for name in pairs(fixtures) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local case = fixtures[name]
    it(name .. " in float64", function()
      local r = run(case, operands(case, "float64"))
      assert.are.equal("float64", r.dtype)
      assert_shape(r, case.shape)
      assert_close(r, case.expected, 1e-12, 1e-12)
    end)
    it(name .. " in float32 agrees with float64", function()
      local r = run(case, operands(case, "float32"))
      assert.are.equal("float32", r.dtype)
      assert_shape(r, case.shape)
      assert_close(r, case.expected, 1e-5, 1e-5)
    end)
    it(name .. " with transposed operands", function()
      local r = run(case, operands(case, "float32", transposed))
      assert_shape(r, case.shape)
      assert_close(r, case.expected, 1e-5, 1e-5)
    end)
    it(name .. " with narrowed operands", function()
      local r = run(case, operands(case, "float64", narrowed))
      assert_shape(r, case.shape)
      assert_close(r, case.expected, 1e-12, 1e-12)
    end)
  end

  it("broadcasts [2,1,3,4] @ [5,4,6] to [2,5,3,6]", function()
    local c = fixtures.broadcast_batch
    assert.are.same({ 2, 5, 3, 6 }, c.shape)
    local r = T(c.a, c.a_shape):matmul(T(c.b, c.b_shape))
    assert_shape(r, { 2, 5, 3, 6 })
    assert_close(r, c.expected)
  end)
end)

describe("linalg: layouts and paths", function()
  it("is available as methods", function()
    local a, b = vl.randn(3, 4, { dtype = "float64" }), vl.randn(4, 2, { dtype = "float64" })
    assert_close(a:matmul(b), flat(vl.matmul(a, b)))
    assert_close(a:mm(b), flat(vl.mm(a, b)))
    local v, w = vl.randn(5, { dtype = "float64" }), vl.randn(5, { dtype = "float64" })
    assert_close(v:dot(w), flat(vl.dot(v, w)))
    assert_close(v:outer(w), flat(vl.outer(v, w)))
    local c = vl.randn(2, { dtype = "float64" })
    assert_close(c:addmm(a, b, { alpha = 2 }), flat(vl.addmm(c, a, b, { alpha = 2 })))
    local x3, y3 = vl.randn(2, 3, 4, { dtype = "float64" }), vl.randn(2, 4, 5, { dtype = "float64" })
    assert_close(x3:bmm(y3), flat(vl.matmul(x3, y3)))
  end)

  it("float32 agrees with float64 on bigger products", function()
    local a64, b64 = vl.randn(70, 50, { dtype = "float64" }), vl.randn(50, 40, { dtype = "float64" })
    local want = flat(a64:matmul(b64))
    assert_close(a64:float():matmul(b64:float()), want, 1e-4, 1e-4)
    -- a transposed view (passed to BLAS as CblasTrans) and a column narrow
    local at = a64:t():contiguous():t()
    assert.is_false(at:is_contiguous())
    assert_close(at:matmul(b64), want, 1e-12, 1e-12)
    assert_close(at:float():t():contiguous():t():matmul(b64:float()), want, 1e-4, 1e-4)
  end)

  it("handles attention-like permuted batches", function()
    local q = vl.randn(2, 7, 3, 8, { dtype = "float64" })  -- [B, T, H, D]
    local k = vl.randn(2, 7, 3, 8, { dtype = "float64" })
    local qh, kh = q:permute(1, 3, 2, 4), k:permute(1, 3, 4, 2)  -- [B,H,T,D], [B,H,D,T]
    local want = flat(qh:contiguous():matmul(kh:contiguous()))
    local s = qh:matmul(kh)
    assert_shape(s, { 2, 3, 7, 7 })
    assert_close(s, want, 1e-12, 1e-12)
    assert_close(qh:float():matmul(kh:float()), want, 1e-4, 1e-4)
    -- many small GEMMs (one per thread) and one big folded GEMM
    local x, w = vl.randn(12, 9, 16, { dtype = "float64" }), vl.randn(16, 5, { dtype = "float64" })
    local r = x:matmul(w)
    assert_shape(r, { 12, 9, 5 })
    assert_close(r, flat(vl.bmm(x, w:expand(12, 16, 5))), 1e-12, 1e-12)
  end)

  it("reads expanded (stride 0) operands", function()
    local row = vl.randn(1, 6, { dtype = "float64" })
    local b = vl.randn(6, 4, { dtype = "float64" })
    local r = row:expand(5, 6):matmul(b)
    local one = flat(row:matmul(b))
    local want = {}
    for i = 1, 5 do for j = 1, 4 do want[#want + 1] = one[j] end end
    assert_close(r, want)
    local bb = vl.randn(6, 1, { dtype = "float64" }):expand(6, 3)
    assert_close(vl.matmul(b:t(), bb), flat(b:t():matmul(bb:contiguous())))
  end)

  it("multiplies integers exactly, wrapping like PyTorch", function()
    local a = vl.tensor({ { 1, 2, 3 }, { 4, 5, 6 } })
    local b = vl.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } })
    for _, dt in ipairs({ "int64", "int32", "uint8" }) do
      local r = a:to(dt):matmul(b:to(dt))
      assert.are.equal(dt, r.dtype)
      assert.are.same({ { 22, 28 }, { 49, 64 } }, r:totable())
      local rt = b:to(dt):t():matmul(b:to(dt))  -- strided operand
      assert.are.same({ { 35, 44 }, { 44, 56 } }, rt:totable())
    end
    local big = vl.tensor({ { 3037000499 } }, { dtype = "int64" })
    assert.are.equal(3037000499 * 3037000499, big:mm(big):item())
    local u = vl.tensor({ { 16 } }, { dtype = "uint8" })
    assert.are.equal(0, u:mm(u):item())  -- 256 mod 256
    assert.are.equal(32, vl.dot(vl.tensor({ 4, 4 }, { dtype = "int32" }), vl.tensor({ 4, 4 }, { dtype = "int32" })):item())
  end)

  it("computes float16 and bfloat16 in float32", function()
    local a, b = vl.randn(9, 13, { dtype = "float64" }), vl.randn(13, 6, { dtype = "float64" })
    for _, dt in ipairs({ "float16", "bfloat16" }) do
      local ah, bh = a:to(dt), b:to(dt)
      local r = ah:matmul(bh)
      assert.are.equal(dt, r.dtype)
      -- reference: the rounded inputs multiplied in float64
      local want = flat(ah:double():matmul(bh:double()))
      assert_close(r, want, dt == "float16" and 2e-3 or 1e-2, 2e-2)
    end
  end)

  it("gives zeros for K = 0 and empty results for M = 0", function()
    for _, dt in ipairs({ "float32", "float64", "int64", "float16" }) do
      local r = vl.ones(3, 0, { dtype = dt }):matmul(vl.ones(0, 4, { dtype = dt }))
      assert_shape(r, { 3, 4 })
      assert.are.same({ { 0, 0, 0, 0 }, { 0, 0, 0, 0 }, { 0, 0, 0, 0 } }, r:totable())
      assert_shape(vl.ones(0, 5, { dtype = dt }):matmul(vl.ones(5, 3, { dtype = dt })), { 0, 3 })
      assert_shape(vl.ones(0, 3, 4, { dtype = dt }):matmul(vl.ones(4, 5, { dtype = dt })), { 0, 3, 5 })
    end
    assert.are.equal(0, vl.dot(vl.ones(0), vl.ones(0)):item())
    local c = vl.full({ 2, 3 }, 7, { dtype = "float32" })
    assert.are.same({ { 14, 14, 14 }, { 14, 14, 14 } },
                    vl.addmm(c, vl.ones(2, 0), vl.ones(0, 3), { beta = 2 }):totable())
  end)

  it("returns 0-d tensors for 1-D @ 1-D", function()
    local v = vl.tensor({ 1, 2, 3 }, { dtype = "float64" })
    local r = v:matmul(v)
    assert.are.equal(0, r:dim())
    assert.are.equal(14, r:item())
    assert.are.equal(14, vl.dot(v, v):item())
    -- strided 1-D operands
    local s = vl.tensor({ 1, 0, 2, 0, 3, 0 }, { dtype = "float32" }):view(3, 2):select(2, 1)
    assert.are.equal(14, s:dot(s):item())
    assert.are.same({ { 1, 2, 3 }, { 2, 4, 6 }, { 3, 6, 9 } }, s:outer(s):totable())
  end)

  it("multiplies matrices and vectors in every layout (gemv paths)", function()
    -- reference: plain Lua sums over the values
    local function mv(m, v)
      local out = {}
      for i = 1, #m do
        local acc = 0
        for k = 1, #v do acc = acc + m[i][k] * v[k] end
        out[i] = acc
      end
      return out
    end
    local function transpose(m)
      local t = {}
      for i = 1, #m[1] do
        t[i] = {}
        for j = 1, #m do t[i][j] = m[j][i] end
      end
      return t
    end
    for _, dt in ipairs({ "float64", "float32" }) do
      local tol = dt == "float64" and 1e-12 or 1e-5
      local m = vl.randn(6, 5, { dtype = dt })
      local mt = m:t():contiguous():t()                       -- same values, column-major
      local v = vl.randn(5, 3, { dtype = dt }):select(2, 2)   -- stride 3
      local w = vl.randn(6, 2, { dtype = dt }):select(2, 1)   -- stride 2
      local M, V, W = m:totable(), v:totable(), w:totable()
      for _, mm in ipairs({ m, mt }) do
        assert_close(mm:matmul(v), mv(M, V), tol, tol)                 -- [6,5] @ [5]
        assert_close(w:matmul(mm), mv(transpose(M), W), tol, tol)      -- [6] @ [6,5]
        assert_close(mm:matmul(v:view(5, 1)), mv(M, V), tol, tol)      -- N = 1
        assert_close(w:view(1, 6):matmul(mm), mv(transpose(M), W), tol, tol)  -- M = 1
        assert_close(mm:t():matmul(w), mv(transpose(M), W), tol, tol)
      end
      -- batched matrix @ vector: [2,6,5] @ [5]
      local b3 = vl.randn(2, 6, 5, { dtype = dt })
      local r = b3:matmul(v)
      assert_shape(r, { 2, 6 })
      local B3 = b3:totable()
      local want = mv(B3[1], V)
      for _, x in ipairs(mv(B3[2], V)) do want[#want + 1] = x end
      assert_close(r, want, tol, tol)
    end
  end)

  it("addmm: beta = 0 ignores c, even NaN", function()
    local c = vl.full({ 2, 2 }, 0 / 0, { dtype = "float64" })
    local a = vl.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "float64" })
    assert.are.same({ { 7, 10 }, { 15, 22 } }, vl.addmm(c, a, a, { beta = 0 }):totable())
    assert.are.same({ { 8, 11 }, { 16, 23 } }, vl.addmm(vl.ones(2, { dtype = "float64" }), a, a):totable())
    local ci = vl.tensor({ 1, 1 })
    local ai = vl.tensor({ { 1, 2 }, { 3, 4 } })
    assert.are.same({ { 12, 18 }, { 28, 42 } }, vl.addmm(ci, ai, ai, { beta = -2, alpha = 2 }):totable())
  end)
end)

describe("linalg: bad input", function()
  local function fails(pattern, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok)
    assert.matches(pattern, tostring(err), 1, true)
  end
  local a23, a45 = vl.ones(2, 3), vl.ones(4, 5)

  it("names the shapes that cannot be multiplied", function()
    fails("matmul: shapes [2,3] and [4,5] cannot be multiplied (3 ~= 4)", vl.matmul, a23, a45)
    fails("matmul: shapes [3] and [4] cannot be multiplied (3 ~= 4)", vl.matmul, vl.ones(3), vl.ones(4))
    fails("matmul: shapes [2,3] and [2] cannot be multiplied (3 ~= 2)", vl.matmul, a23, vl.ones(2))
    fails("mm: shapes [2,3] and [4,5] cannot be multiplied (3 ~= 4)", a23.mm, a23, a45)
    fails("dot: shapes [3] and [4] cannot be multiplied (3 ~= 4)", vl.dot, vl.ones(3), vl.ones(4))
  end)

  it("rejects batch dims that do not broadcast", function()
    fails("batch dims [2] and [3] do not broadcast", vl.matmul, vl.ones(2, 3, 4), vl.ones(3, 4, 5))
  end)

  it("checks the number of dims", function()
    fails("mm: expected 2-D tensors, got shapes [2,3,4] and [2,3]", vl.mm, vl.ones(2, 3, 4), a23)
    fails("bmm: expected 3-D tensors", vl.bmm, a23, a23)
    fails("bmm: batch sizes of shapes [2,3,4] and [3,4,5] differ (2 ~= 3)", vl.bmm, vl.ones(2, 3, 4), vl.ones(3, 4, 5))
    fails("outer: expected 1-D tensors", vl.outer, a23, vl.ones(3))
    fails("dot: expected 1-D tensors", vl.dot, a23, vl.ones(3))
    fails("matmul: both arguments need at least 1 dim", vl.matmul, vl.tensor(2.0), a23)
    fails("addmm: expected 2-D tensors", vl.addmm, vl.ones(3), vl.ones(3), vl.ones(3))
  end)

  it("checks dtypes", function()
    fails("matmul: expected both tensors to have the same dtype, got float32 and float64",
          vl.matmul, a23, vl.ones(3, 2, { dtype = "float64" }))
    fails("matmul: bool tensors are not supported", vl.matmul, vl.ones(2, 2, { dtype = "bool" }),
          vl.ones(2, 2, { dtype = "bool" }))
    fails("addmm: expected c to have the dtype of a and b (float32), got float64", vl.addmm,
          vl.ones(2, 2, { dtype = "float64" }), a23, vl.ones(3, 2))
  end)

  it("checks addmm's c and options", function()
    fails("addmm: c of shape [3,3] does not broadcast to the result shape [2,2]", vl.addmm,
          vl.ones(3, 3), a23, vl.ones(3, 2))
    fails("addmm: unknown option 'betta'", vl.addmm, vl.ones(2), a23, vl.ones(3, 2), { betta = 1 })
    fails("option 'beta' must be a number", vl.addmm, vl.ones(2), a23, vl.ones(3, 2), { beta = "x" })
    fails("addmm: alpha and beta must be integers for int64 tensors", vl.addmm,
          vl.tensor({ 1 }), vl.tensor({ { 1 } }), vl.tensor({ { 1 } }), { alpha = 0.5 })
  end)

  it("wants tensors", function()
    fails("tensor expected, got number", vl.matmul, 1, a23)
    fails("tensor expected, got no value", vl.mm, a23)
    fails("tensor expected, got string", vl.dot, vl.ones(3), "x")
  end)
end)

describe("float32 GEMM kernels", function()
  local VLUA = os.getenv("VLUA_BIN") or "build/vlua"
  -- the same products through each kernel this CPU has, in child processes
  -- (the kernel is chosen once per process)
  local script = "local a = vl.arange(0, 37 * 29):float():reshape(37, 29):remainder(7) - 3; " ..
      "local b = vl.arange(0, 29 * 41):float():reshape(29, 41):remainder(5) - 2; " ..
      "io.write(vl.gemm_kernel(), ' ', a:matmul(b):sum():item(), ' ', a:t():contiguous():t():matmul(b:t():contiguous():t()):sum():item())"
  local function run(env)
    local p = assert(io.popen(env .. " " .. VLUA .. " -e \"" .. script .. "\""))
    local out = p:read("a")
    p:close()
    return out
  end

  it("vl.gemm_kernel names the kernel, VLUA_GEMM forces one, and every kernel gives the same exact sums", function()
    local k = vl.gemm_kernel()
    assert.is_truthy(k == "avx512" or k == "avx2" or k == "openblas")
    local blas = run("VLUA_GEMM=blas")
    assert.are.equal("openblas", blas:match("^(%S+)"))
    local mine = run("")
    assert.are.equal(k, mine:match("^(%S+)"))
    -- small integers: every summation order gives the same exact result
    assert.are.equal(blas:match(" (.*)$"), mine:match(" (.*)$"))
    local avx2 = run("VLUA_GEMM=avx2")
    assert.are.equal(blas:match(" (.*)$"), avx2:match(" (.*)$"))
  end)
end)
