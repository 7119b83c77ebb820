local vl = require "vl"

-- Reverse-mode gradients of the matrix products (ops/linalg.c): matmul
-- in every case, mm, bmm, addmm, outer, dot.
-- References: central differences in float64 (vl.gradcheck, and a
-- hand-written finite-difference loop for the two-layer network),
-- closed forms (d(a.b)/da = b, d(sum A@B)/dA = 1 @ B^T), and float64
-- gradients for the float32 ones.

local F64 = { dtype = "float64" }

local function randn(shape)
  return vl.randn(shape, F64):requires_grad(true)
end

-- a float64 leaf whose storage is laid out transposed: shape `shape`,
-- non-contiguous (its last two dims swapped in memory)
local function randn_t(shape)
  local n = #shape
  local s = {}
  for i = 1, n do s[i] = shape[i] end
  s[n - 1], s[n] = shape[n], shape[n - 1]
  local t = vl.randn(s, F64):transpose(n - 1, n)
  assert(t:numel() == 0 or not t:is_contiguous())
  return t:requires_grad(true)
end

local function flat(t)
  return t:reshape(-1):totable()
end

local function assert_close(got, want, tol, label)
  assert.are.equal(#want, #got, label .. ": element count")
  for i = 1, #want do
    local g, w = got[i], want[i]
    if not (math.abs(g - w) <= tol * (1 + math.abs(w))) then
      error(string.format("%s: element %d is %.17g, expected %.17g", label, i, g, w), 2)
    end
  end
end

local function gradcheck(fn, inputs, opts)
  local ok, msg = vl.gradcheck(fn, inputs, opts)
  assert(ok, msg)
end

local function shape_str(s) return "[" .. table.concat(s, ",") .. "]" end

-- ------------------------------------------------------------------
-- matmul: every case of torch.matmul
-- ------------------------------------------------------------------

local MATMUL = {
  { {}, {} },                   -- placeholder: replaced below (1-D . 1-D)
  { { 4 }, { 4, 5 } },          -- 1-D @ 2-D
  { { 3, 4 }, { 4 } },          -- 2-D @ 1-D
  { { 3, 4 }, { 4, 5 } },       -- 2-D @ 2-D
  { { 4 }, { 2, 4, 5 } },       -- 1-D @ batched
  { { 2, 3, 4 }, { 4 } },       -- batched @ 1-D
  { { 2, 3, 4 }, { 4, 5 } },    -- batched @ shared matrix (a linear layer)
  { { 3, 4 }, { 2, 4, 5 } },    -- shared matrix @ batched
  { { 2, 3, 4 }, { 2, 4, 5 } }, -- batched, same batch
  { { 2, 1, 3, 4 }, { 5, 4, 6 } }, -- broadcast batch dims on both sides
  { { 1, 3, 4 }, { 2, 1, 4, 2 } }, -- broadcast, different batch ranks
  { { 2, 3, 0 }, { 0, 2 } },    -- empty inner dim: zero gradients
}
MATMUL[1] = { { 5 }, { 5 } }

describe("autograd of matmul", function()
  vl.manual_seed(101)
  for _, c in ipairs(MATMUL) do
    local sa, sb = c[1], c[2]
    it(("%s @ %s passes gradcheck"):format(shape_str(sa), shape_str(sb)), function()
      local a, b = randn(sa), randn(sb)
      local y = a:matmul(b)
      assert.is_true(y:requires_grad())
      assert.are.equal("matmul", y.grad_fn)
      gradcheck(function(p, q) return vl.matmul(p, q) end, { a, b })
    end)
    if #sa >= 2 or #sb >= 2 then
      it(("%s @ %s on transposed inputs"):format(shape_str(sa), shape_str(sb)), function()
        local a = #sa >= 2 and randn_t(sa) or randn(sa)
        local b = #sb >= 2 and randn_t(sb) or randn(sb)
        gradcheck(function(p, q) return p:matmul(q) end, { a, b })
      end)
    end
  end

  it("only the operand that requires grad gets a gradient", function()
    local a = randn({ 2, 3, 4 })
    local b = vl.randn({ 4, 5 }, F64)
    gradcheck(function(p) return p:matmul(b) end, { a })
    local a2 = vl.randn({ 2, 3, 4 }, F64)
    local b2 = randn({ 4, 5 })
    gradcheck(function(q) return a2:matmul(q) end, { b2 })
    a2:matmul(b2):backward(vl.ones({ 2, 3, 5 }, F64))
    assert.is_nil(a2.grad)
    assert.are.same({ 4, 5 }, b2.grad:size())
  end)

  it("broadcast batch gradients are summed back: closed form for sum(A @ B)", function()
    -- d sum(A@B) / dA[i,k] = sum_j B[k,j] (times the batches A was broadcast over)
    local a = randn({ 2, 1, 3, 4 })
    local b = randn({ 5, 4, 6 })
    a:matmul(b):backward(vl.ones({ 2, 5, 3, 6 }, F64))
    assert.are.same({ 2, 1, 3, 4 }, a.grad:size())
    assert.are.same({ 5, 4, 6 }, b.grad:size())
    local bsum = b:detach():sum(1):sum(2) -- [4]: sum over batches and columns
    local want_a = {}
    for i = 1, 2 * 3 do
      for k = 1, 4 do want_a[#want_a + 1] = bsum[k] end
    end
    assert_close(flat(a.grad), want_a, 1e-12, "a")
    -- d/dB[b,k,j] = sum over A's batch (2) and rows (3) of A[.,.,i,k]
    local asum = a:detach():sum(1):sum(1):sum(1) -- [4]
    local want_b = {}
    for _ = 1, 5 do
      for k = 1, 4 do
        for _ = 1, 6 do want_b[#want_b + 1] = asum[k] end
      end
    end
    assert_close(flat(b.grad), want_b, 1e-12, "b")
  end)

  it("1-D . 1-D gives d/da = g * b and d/db = g * a", function()
    local a = vl.tensor({ 1, 2, 3 }, F64):requires_grad(true)
    local b = vl.tensor({ 4, -5, 6 }, F64):requires_grad(true)
    local y = a:matmul(b)
    assert.are.same({}, y:size())
    y:backward(vl.tensor(2, F64))
    assert.are.same({ 8, -10, 12 }, flat(a.grad))
    assert.are.same({ 2, 4, 6 }, flat(b.grad))
  end)

  it("integer products take no part in autograd", function()
    local a = vl.tensor({ { 1, 2 }, { 3, 4 } })
    local y = a:matmul(a)
    assert.are.equal("int64", y.dtype)
    assert.is_false(y:requires_grad())
    assert.is_nil(y.grad_fn)
  end)

  it("vl.no_grad records nothing", function()
    local a, b = randn({ 2, 3 }), randn({ 3, 2 })
    local y = vl.no_grad(function() return a:matmul(b) end)
    assert.is_false(y:requires_grad())
    assert.is_nil(y.grad_fn)
  end)

  it("float16 and bfloat16 inputs get gradients in their own dtype", function()
    for _, dt in ipairs({ "float16", "bfloat16" }) do
      local a = vl.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = dt }):requires_grad(true)
      local b = vl.tensor({ { 0.5, -1 }, { 2, 0.25 } }, { dtype = dt }):requires_grad(true)
      a:matmul(b):backward(vl.ones({ 2, 2 }, { dtype = dt }))
      assert.are.equal(dt, a.grad.dtype)
      -- dA = 1 @ B^T: row sums of B; dB = A^T @ 1: column sums of A
      assert.are.same({ -0.5, 2.25, -0.5, 2.25 }, flat(a.grad:double()))
      assert.are.same({ 4, 4, 6, 6 }, flat(b.grad:double()))
    end
  end)
end)

-- ------------------------------------------------------------------
-- mm, bmm, addmm, outer, dot
-- ------------------------------------------------------------------

describe("autograd of mm, bmm, addmm, outer, dot", function()
  vl.manual_seed(202)
  it("mm passes gradcheck, contiguous and transposed", function()
    gradcheck(vl.mm, { randn({ 3, 4 }), randn({ 4, 2 }) })
    gradcheck(vl.mm, { randn_t({ 3, 4 }), randn_t({ 4, 2 }) })
    assert.are.equal("mm", vl.mm(randn({ 1, 2 }), randn({ 2, 1 })).grad_fn)
  end)

  it("mm with a row and a column (matrix-vector GEMMs)", function()
    gradcheck(vl.mm, { randn({ 1, 4 }), randn({ 4, 3 }) })
    gradcheck(vl.mm, { randn({ 3, 4 }), randn({ 4, 1 }) })
  end)

  it("bmm passes gradcheck, contiguous and transposed", function()
    gradcheck(vl.bmm, { randn({ 2, 3, 4 }), randn({ 2, 4, 5 }) })
    gradcheck(vl.bmm, { randn_t({ 2, 3, 4 }), randn_t({ 2, 4, 5 }) })
    assert.are.equal("bmm", vl.bmm(randn({ 1, 1, 2 }), randn({ 1, 2, 1 })).grad_fn)
  end)

  local CS = { { 3, 5 }, { 5 }, { 1, 5 }, { 3, 1 }, {} }
  for _, cs in ipairs(CS) do
    it(("addmm with c %s, beta and alpha, passes gradcheck"):format(shape_str(cs)), function()
      local c, a, b = randn(cs), randn({ 3, 4 }), randn({ 4, 5 })
      gradcheck(function(p, q, r) return vl.addmm(p, q, r, { beta = 0.5, alpha = -2 }) end, { c, a, b })
      gradcheck(function(p, q, r) return vl.addmm(p, q, r) end, { c, a, b })
    end)
  end

  it("addmm on transposed inputs", function()
    local c, a, b = randn_t({ 3, 5 }), randn_t({ 3, 4 }), randn_t({ 4, 5 })
    gradcheck(function(p, q, r) return vl.addmm(p, q, r, { beta = 1.5, alpha = 0.25 }) end, { c, a, b })
  end)

  it("addmm: d/dc = beta * g summed over c's broadcast dims, beta 0 gives zeros", function()
    local c = vl.tensor({ 1, 2 }, F64):requires_grad(true)
    local a, b = randn({ 3, 4 }), randn({ 4, 2 })
    local g = vl.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, F64)
    vl.addmm(c, a, b, { beta = 3, alpha = 2 }):backward(g)
    assert.are.same({ 27, 36 }, flat(c.grad))
    -- d/da = alpha * g @ b^T
    assert_close(flat(a.grad), flat((g:matmul(b:detach():t())) * 2), 1e-12, "a")
    c.grad = nil
    vl.addmm(c, a, b, { beta = 0 }):backward(g)
    assert.are.same({ 0, 0 }, flat(c.grad))
    assert.are.equal("addmm", vl.addmm(c, a, b).grad_fn)
  end)

  it("outer passes gradcheck; d/da = g @ b, d/db = g^T @ a", function()
    gradcheck(vl.outer, { randn({ 3 }), randn({ 4 }) })
    local a = vl.tensor({ 1, 2 }, F64):requires_grad(true)
    local b = vl.tensor({ 3, 4, 5 }, F64):requires_grad(true)
    local y = vl.outer(a, b)
    assert.are.equal("outer", y.grad_fn)
    y:backward(vl.tensor({ { 1, 0, 1 }, { 0, 1, 0 } }, F64))
    assert.are.same({ 8, 4 }, flat(a.grad))
    assert.are.same({ 1, 2, 1 }, flat(b.grad))
  end)

  it("outer and dot on strided 1-D views", function()
    local a = vl.randn({ 3, 2 }, F64):requires_grad(true)
    local b = vl.randn({ 4, 2 }, F64):requires_grad(true)
    gradcheck(function(p, q) return vl.outer(p:select(2, 1), q:select(2, 2)) end, { a, b })
    gradcheck(function(p) return vl.dot(p:select(2, 1), p:select(2, 2)) end, { a })
  end)

  it("dot passes gradcheck", function()
    local a, b = randn({ 6 }), randn({ 6 })
    gradcheck(vl.dot, { a, b })
    gradcheck(function(p) return vl.dot(p, p) end, { a })
    assert.are.equal("dot", vl.dot(a, b).grad_fn)
  end)
end)

-- ------------------------------------------------------------------
-- A small network, float32 against float64, the graph's memory
-- ------------------------------------------------------------------

-- loss of ((x @ w1 + b1):relu() @ w2):sum()
local function net(x, w1, b1, w2)
  return ((x:matmul(w1) + b1):relu():matmul(w2)):sum()
end

describe("a two-layer network", function()
  vl.manual_seed(303)
  it("gradients of ((x:matmul(w1) + b1):relu():matmul(w2)):sum() match finite differences", function()
    local x = vl.randn({ 4, 3 }, F64)
    local w1, b1, w2 = randn({ 3, 5 }), randn({ 5 }), randn({ 5, 2 })
    -- keep the hidden pre-activations away from relu's kink
    vl.no_grad(function()
      local h = x:matmul(w1) + b1
      local tooclose = h:abs():lt(0.05)
      if tooclose:any():item() then b1:add_(0.1) end
    end)
    net(x, w1, b1, w2):backward()
    local eps = 1e-6
    for _, p in ipairs({ w1, b1, w2 }) do
      local analytic = flat(p.grad)
      local numeric = {}
      local n = p:numel()
      for k = 1, n do
        local e = {}
        for i = 1, n do e[i] = (i == k) and eps or 0 end
        local d = vl.tensor(e, F64):reshape(p:size())
        local fp, fm = vl.no_grad(function()
          local P, M = p + d, p - d
          local args = {}
          for i, q in ipairs({ w1, b1, w2 }) do args[i] = q end
          local function loss(sub)
            local a = {}
            for i, q in ipairs(args) do a[i] = (q == p) and sub or q end
            return net(x, a[1], a[2], a[3]):item()
          end
          return loss(P), loss(M)
        end)
        numeric[k] = (fp - fm) / (2 * eps)
      end
      assert_close(analytic, numeric, 1e-6, "network parameter")
    end
  end)

  it("passes gradcheck with x requiring grad too, and batched inputs", function()
    local x = randn({ 2, 4, 3 })
    local w1, b1, w2 = randn({ 3, 5 }), randn({ 5 }), randn({ 5, 2 })
    gradcheck(function(a, p, q, r) return (a:matmul(p) + q):tanh():matmul(r) end, { x, w1, b1, w2 })
  end)

  it("float32 gradients agree with float64 ones to 1e-4", function()
    local x64 = vl.randn({ 6, 3 }, F64)
    local p64 = { randn({ 3, 4 }), randn({ 4 }), randn({ 4, 2 }) }
    local p32 = {}
    for i, p in ipairs(p64) do p32[i] = p:detach():float():requires_grad(true) end
    net(x64, p64[1], p64[2], p64[3]):backward()
    net(x64:float(), p32[1], p32[2], p32[3]):backward()
    for i = 1, 3 do
      assert.are.equal("float32", p32[i].grad.dtype)
      assert_close(flat(p32[i].grad), flat(p64[i].grad), 1e-4, "parameter " .. i)
    end
    -- and each product on its own, batched with broadcasting
    local a64, b64 = randn({ 2, 1, 3, 4 }), randn({ 5, 4, 6 })
    local a32, b32 = a64:detach():float():requires_grad(true), b64:detach():float():requires_grad(true)
    local g = vl.randn({ 2, 5, 3, 6 }, F64)
    a64:matmul(b64):backward(g)
    a32:matmul(b32):backward(g:float())
    assert_close(flat(a32.grad), flat(a64.grad), 1e-4, "a")
    assert_close(flat(b32.grad), flat(b64.grad), 1e-4, "b")
    local c64 = randn({ 6 })
    local c32 = c64:detach():float():requires_grad(true)
    local m64, m32 = vl.randn({ 5, 4 }, F64), nil
    m32 = m64:float()
    vl.addmm(c64, m64, b64:detach():select(1, 1), { beta = 2, alpha = 0.5 }):backward(vl.ones({ 5, 6 }, F64))
    vl.addmm(c32, m32, b32:detach():select(1, 1), { beta = 2, alpha = 0.5 }):backward(vl.ones({ 5, 6 }))
    assert_close(flat(c32.grad), flat(c64.grad), 1e-4, "c")
  end)

  it("gradients accumulate over two backward passes", function()
    local a, b = randn({ 2, 3 }), randn({ 3, 2 })
    local g = vl.ones({ 2, 2 }, F64)
    a:matmul(b):backward(g)
    local first = flat(a.grad)
    a:matmul(b):backward(g)
    local second = flat(a.grad)
    for i = 1, #first do assert.are.equal(2 * first[i], second[i]) end
  end)

  it("a product's saved operands are freed after backward", function()
    local n = 200
    collectgarbage("collect")
    collectgarbage("collect")
    local base = vl.memory_in_use()
    local a = vl.randn({ n, n }, F64):requires_grad(true)
    local b = vl.randn({ n, n }, F64):requires_grad(true)
    local y = a:matmul(b):tanh()
    y:backward(vl.ones({ n, n }, F64))
    assert.has_error(function() y:backward(vl.ones({ n, n }, F64)) end)
    y, a, b = nil, nil, nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(base, vl.memory_in_use())
  end)

  it("an operand changed in place after the product makes backward fail", function()
    local x = vl.randn({ 2, 3 }, F64)
    local w = randn({ 3, 2 })
    local y = x:matmul(w)
    x:fill_(1)
    local ok, err = pcall(function() y:backward(vl.ones({ 2, 2 }, F64)) end)
    assert.is_false(ok)
    assert.matches("modified by an in%-place operation", tostring(err))
  end)
end)
