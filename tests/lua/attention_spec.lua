-- attention_spec.lua — vl.attention: fused forward and backward, masks,
-- causal, dropout, need_weights, layouts, bad input.
-- References: PyTorch 1.13 float64 outputs and gradients in
-- tests/fixtures/attention.lua (made by scripts/fixtures/attention.py),
-- central differences through vl.gradcheck (float64), the explicit
-- softmax(q k^T * scale + mask) v built from other vl ops, and closed forms.
local vl = require "vl"

local fixtures = dofile("tests/fixtures/attention.lua")
local F64 = { dtype = "float64" }

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  return t:contiguous():view(-1):to("float64"):totable()
end

local function assert_close(got, want, tol, what)
  local g = flat(got)
  assert.are.equal(#want, #g, (what or "values") .. ": element count")
  for i = 1, #g do
    if not (math.abs(g[i] - want[i]) <= tol * (1 + math.abs(want[i]))) then
      error(string.format("%s: element %d: got %.17g, want %.17g (tol %g)", what or "values", i, g[i], want[i], tol), 2)
    end
  end
end

local function close_tensors(a, b, tol, what)
  assert.are.same(b:size(), a:size(), (what or "values") .. ": shape")
  assert_close(a, flat(b), tol, what)
end

local function has_error(needle, f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error containing " .. needle)
  e = tostring(e)
  if not e:find(needle, 1, true) then error(string.format("error %q does not contain %q", e, needle), 2) end
end

local function gradcheck(fn, inputs, opts)
  local ok, msg = vl.gradcheck(fn, inputs, opts or { atol = 1e-6, rtol = 1e-5 })
  assert(ok, msg)
end

local function T(values, shape, dtype) return vl.tensor(values, { dtype = dtype or "float64" }):view(shape) end
local function R(...) return vl.randn({ ... }, F64):requires_grad(true) end

-- The explicit path from other vl ops: softmax(q k^T * scale + mask) v.
local function reference(q, k, v, opts)
  opts = opts or {}
  local d = q:size()[q:dim()]
  local s = vl.matmul(q, k:transpose(-2, -1)) * (opts.scale or 1 / math.sqrt(d))
  if opts.causal then
    local Lq, Lk = s:size()[s:dim() - 1], s:size()[s:dim()]
    s = vl.masked_fill(s, vl.logical_not(vl.tril(vl.ones({ Lq, Lk })):bool()), -math.huge)
  end
  if opts.mask then
    if opts.mask.dtype == "bool" then
      s = vl.masked_fill(s, vl.logical_not(opts.mask), -math.huge)
    else
      s = s + opts.mask
    end
  end
  local p = vl.softmax(s, -1)
  if opts.dropout then p = vl.dropout(p, opts.dropout) end
  return vl.matmul(p, v), p
end

local function case_inputs(case, dtype)
  local q = T(case.q, case.q_shape, dtype):requires_grad(true)
  local k = T(case.k, case.k_shape, dtype):requires_grad(true)
  local v = T(case.v, case.v_shape, dtype):requires_grad(true)
  local opts = {}
  for key, val in pairs(case.opts) do opts[key] = val end
  if case.mask then
    local m = T(case.mask, case.mask_shape, case.mask_dtype == "bool" and "float64" or dtype)
    opts.mask = case.mask_dtype == "bool" and m:bool() or m
  end
  return q, k, v, opts
end

describe("attention against PyTorch", function()
  for _, case in ipairs(fixtures) do
    it(case.name .. ": float64 output and gradients to 1e-10", function()
      local q, k, v, opts = case_inputs(case)
      local y = vl.attention(q, k, v, opts)
      assert.are.same(case.y_shape, y:size())
      assert.are.equal("float64", y.dtype)
      assert_close(y, case.y, 1e-10, "y")
      y:backward(T(case.gy, case.y_shape))
      assert_close(q.grad, case.gq, 1e-10, "gq")
      assert_close(k.grad, case.gk, 1e-10, "gk")
      assert_close(v.grad, case.gv, 1e-10, "gv")
    end)
    it(case.name .. ": float32 output to 1e-5, gradients to 1e-4", function()
      local q, k, v, opts = case_inputs(case, "float32")
      local y = vl.attention(q, k, v, opts)
      assert.are.equal("float32", y.dtype)
      assert_close(y, case.y, 1e-5, "y")
      y:backward(T(case.gy, case.y_shape, "float32"))
      assert.are.equal("float32", q.grad.dtype)
      assert_close(q.grad, case.gq, 1e-4, "gq")
      assert_close(k.grad, case.gk, 1e-4, "gk")
      assert_close(v.grad, case.gv, 1e-4, "gv")
    end)
    it(case.name .. ": need_weights gives the same output, weights rows sum to 1", function()
      local q, k, v, opts = case_inputs(case)
      opts.need_weights = true
      local y, w = vl.attention(q, k, v, opts)
      assert_close(y, case.y, 1e-10, "y")
      local ws = w:size()
      assert.are.equal(case.k_shape[#case.k_shape - 1], ws[#ws])
      assert.is_false(w:requires_grad())
      close_tensors(w:sum(-1), vl.ones(w:sum(-1):size(), F64), 1e-12, "row sums")
      y:backward(T(case.gy, case.y_shape))
      assert_close(q.grad, case.gq, 1e-10, "gq")
    end)
  end
end)

describe("attention float32 at block edges", function()
  -- float32 against the float64 kernel, sizes around the 256-row query and
  -- 256-key blocks, head dims of real models
  local sizes = { { 1, 2, 256, 256, 64, 64 }, { 2, 1, 257, 513, 32, 48 }, { 1, 2, 197, 300, 64, 64 }, { 1, 1, 600, 7, 80, 16 } }
  for _, s in ipairs(sizes) do
    local B, H, Lq, Lk, d, dv = table.unpack(s)
    it(table.concat(s, "x") .. " forward to 1e-5 and backward to 1e-4 of float64", function()
      vl.manual_seed(11)
      local q, k, v = vl.randn({ B, H, Lq, d }, F64), vl.randn({ B, H, Lk, d }, F64), vl.randn({ B, H, Lk, dv }, F64)
      local g = vl.randn({ B, H, Lq, dv }, F64)
      for _, causal in ipairs({ false, true }) do
        local q64, k64, v64 = q:clone():requires_grad(true), k:clone():requires_grad(true), v:clone():requires_grad(true)
        local y64 = vl.attention(q64, k64, v64, { causal = causal })
        y64:backward(g)
        local q32, k32, v32 = q:float():requires_grad(true), k:float():requires_grad(true), v:float():requires_grad(true)
        local y32 = vl.attention(q32, k32, v32, { causal = causal })
        y32:backward(g:float())
        close_tensors(y32, y64, 1e-5, "y")
        close_tensors(q32.grad, q64.grad, 1e-4, "gq")
        close_tensors(k32.grad, k64.grad, 1e-4, "gk")
        close_tensors(v32.grad, v64.grad, 1e-4, "gv")
        -- and the float64 kernel against the explicit path
        close_tensors(y64, reference(q, k, v, { causal = causal }), 1e-12, "y64 vs explicit")
      end
    end)
  end
end)

describe("attention gradcheck (float64)", function()
  before_each(function() vl.manual_seed(7) end)
  it("self-attention", function()
    gradcheck(function(q, k, v) return vl.attention(q, k, v) end, { R(2, 2, 5, 3), R(2, 2, 5, 3), R(2, 2, 5, 3) })
  end)
  it("cross-attention with dv ~= d and a scale", function()
    gradcheck(function(q, k, v) return vl.attention(q, k, v, { scale = 0.3 }) end,
      { R(1, 3, 4, 3), R(1, 3, 7, 3), R(1, 3, 7, 2) })
  end)
  it("causal, Lq < Lk and Lq > Lk", function()
    gradcheck(function(q, k, v) return vl.attention(q, k, v, { causal = true }) end, { R(1, 2, 4, 2), R(1, 2, 6, 2), R(1, 2, 6, 3) })
    gradcheck(function(q, k, v) return vl.attention(q, k, v, { causal = true }) end, { R(1, 2, 6, 2), R(1, 2, 3, 2), R(1, 2, 3, 3) })
  end)
  it("bool and additive masks, broadcast", function()
    local bm = vl.rand({ 2, 1, 5, 6 }):gt(0.3)
    bm:narrow(4, 1, 1):fill_(true)
    gradcheck(function(q, k, v) return vl.attention(q, k, v, { mask = bm }) end, { R(2, 2, 5, 3), R(2, 2, 6, 3), R(2, 2, 6, 2) })
    local am = vl.randn({ 5, 6 }, F64)
    gradcheck(function(q, k, v) return vl.attention(q, k, v, { mask = am }) end, { R(2, 2, 5, 3), R(2, 2, 6, 3), R(2, 2, 6, 2) })
  end)
  it("a fully masked query row (zero output, zero gradient)", function()
    local m = vl.ones({ 4, 5 }, { dtype = "bool" })
    m:select(1, 2):fill_(false)
    gradcheck(function(q, k, v) return vl.attention(q, k, v, { mask = m }) end, { R(1, 2, 4, 3), R(1, 2, 5, 3), R(1, 2, 5, 2) })
  end)
  it("3-d inputs", function()
    gradcheck(function(q, k, v) return vl.attention(q, k, v, { causal = true }) end, { R(2, 5, 3), R(2, 5, 3), R(2, 5, 4) })
  end)
  it("more rows than one query block and keys than one key block: the explicit path's gradients", function()
    -- (gradcheck itself is too slow at these sizes; the explicit path is
    -- checked by autograd's own specs)
    for _, causal in ipairs({ false, true }) do
      local q, k, v, g = R(1, 2, 300, 3), R(1, 2, 520, 3), R(1, 2, 520, 2), vl.randn({ 1, 2, 300, 2 }, F64)
      vl.attention(q, k, v, { causal = causal }):backward(g)
      local a = { q.grad, k.grad, v.grad }
      q.grad, k.grad, v.grad = nil, nil, nil
      reference(q, k, v, { causal = causal }):backward(g)
      close_tensors(a[1], q.grad, 1e-12, "gq")
      close_tensors(a[2], k.grad, 1e-12, "gk")
      close_tensors(a[3], v.grad, 1e-12, "gv")
    end
  end)
  it("dropout (the same draws in every evaluation: seeded)", function()
    gradcheck(function(q, k, v)
      vl.manual_seed(5)
      return vl.attention(q, k, v, { dropout = 0.3 })
    end, { R(1, 2, 9, 3), R(1, 2, 6, 3), R(1, 2, 6, 2) })
  end)
end)

describe("attention semantics", function()
  before_each(function() vl.manual_seed(3) end)

  it("causal is top-left aligned: query i sees keys 1..i, also when Lq ~= Lk", function()
    local q, k, v = vl.randn({ 1, 1, 3, 2 }, F64), vl.randn({ 1, 1, 5, 2 }, F64), vl.randn({ 1, 1, 5, 2 }, F64)
    local _, w = vl.attention(q, k, v, { causal = true, need_weights = true })
    for i = 1, 3 do
      for j = 1, 5 do
        local x = w[1][1][i][j]
        if type(x) ~= "number" then x = x:item() end
        if j > i then assert.are.equal(0, x) else assert.is_true(x > 0) end
      end
    end
    -- query 1 sees only key 1: its output is v's first row
    close_tensors(vl.attention(q, k, v, { causal = true })[1][1][1], v[1][1][1], 1e-15)
  end)

  it("a query whose keys are all masked gives a 0 row (PyTorch: NaN), others unaffected", function()
    local q, k, v = vl.randn({ 2, 2, 4, 3 }), vl.randn({ 2, 2, 5, 3 }), vl.randn({ 2, 2, 5, 3 })
    local m = vl.rand({ 2, 2, 4, 5 }):gt(0.3)
    m:narrow(4, 1, 1):fill_(true)
    m[1][2][3]:fill_(false)
    local y, w = vl.attention(q, k, v, { mask = m, need_weights = true })
    close_tensors(y[1][2][3], vl.zeros({ 3 }), 0)
    close_tensors(w[1][2][3], vl.zeros({ 5 }), 0)
    close_tensors(vl.attention(q, k, v, { mask = m }), y, 0)
    local ref = reference(q, k, v, { mask = m })
    close_tensors(y[2], ref[2], 1e-5)
    close_tensors(y[1][1], ref[1][1], 1e-5)
    -- an additive mask of -inf does the same
    local am = vl.zeros({ 4, 5 })
    am[2]:fill_(-math.huge)
    local y2 = vl.attention(q, k, v, { mask = am })
    close_tensors(y2:select(3, 2), vl.zeros({ 2, 2, 3 }), 0)
  end)

  it("no keys (Lk = 0) gives zeros; empty query and batch give empty results", function()
    local y = vl.attention(vl.randn({ 1, 2, 3, 4 }), vl.randn({ 1, 2, 0, 4 }), vl.randn({ 1, 2, 0, 5 }))
    assert.are.same({ 1, 2, 3, 5 }, y:size())
    close_tensors(y, vl.zeros({ 1, 2, 3, 5 }), 0)
    assert.are.same({ 1, 2, 0, 5 }, vl.attention(vl.randn({ 1, 2, 0, 4 }), vl.randn({ 1, 2, 3, 4 }), vl.randn({ 1, 2, 3, 5 })):size())
    assert.are.same({ 0, 2, 3, 5 }, vl.attention(vl.randn({ 0, 2, 3, 4 }), vl.randn({ 0, 2, 3, 4 }), vl.randn({ 0, 2, 3, 5 })):size())
    -- dv = 0: an empty result; d = 0: every score 0, so each output row is the mean of v's rows
    assert.are.same({ 1, 2, 3, 0 }, vl.attention(vl.randn({ 1, 2, 3, 4 }), vl.randn({ 1, 2, 5, 4 }), vl.randn({ 1, 2, 5, 0 }),
      { need_weights = true }):size())
    local v = vl.randn({ 1, 2, 5, 3 }, F64)
    local y, w = vl.attention(vl.randn({ 1, 2, 4, 0 }, F64), vl.randn({ 1, 2, 5, 0 }, F64), v, { need_weights = true })
    close_tensors(y, v:mean(3, { keepdim = true }):expand({ 1, 2, 4, 3 }), 1e-15)
    close_tensors(w, vl.full({ 1, 2, 4, 5 }, 0.2, F64), 1e-15)
  end)

  it("need_weights: weights are softmax(q k^T * scale + mask), rows sum to 1", function()
    local q, k, v = vl.randn({ 2, 3, 37, 8 }), vl.randn({ 2, 3, 130, 8 }), vl.randn({ 2, 3, 130, 4 })
    local am = vl.randn({ 37, 130 })
    local y, w = vl.attention(q, k, v, { mask = am, need_weights = true, scale = 0.2 })
    local ry, rw = reference(q, k, v, { mask = am, scale = 0.2 })
    assert.are.same({ 2, 3, 37, 130 }, w:size())
    close_tensors(w, rw, 1e-5, "weights")
    close_tensors(y, ry, 1e-5, "y")
    close_tensors(w:sum(-1), vl.ones({ 2, 3, 37 }), 1e-5, "row sums")
  end)

  it("default scale is 1/sqrt(d)", function()
    local q, k, v = vl.randn({ 1, 2, 5, 9 }, F64), vl.randn({ 1, 2, 6, 9 }, F64), vl.randn({ 1, 2, 6, 3 }, F64)
    close_tensors(vl.attention(q, k, v), vl.attention(q, k, v, { scale = 1 / 3 }), 1e-15)
    close_tensors(vl.attention(q, k, v, { scale = 0 }), vl.attention(q * 0, k, v), 1e-15)
  end)

  it("non-contiguous inputs (transposed and permuted views) give the same results and gradients", function()
    local B, H, Lq, Lk, d = 2, 3, 70, 130, 8
    local q = vl.randn({ B, H, Lq, d }, F64)
    local k = vl.randn({ B, H, Lk, d }, F64)
    local v = vl.randn({ B, H, Lk, 5 }, F64)
    local g = vl.randn({ B, H, Lq, 5 }, F64)
    local function run(qq, kk, vv)
      local y = vl.attention(qq, kk, vv, { causal = true })
      y:backward(g)
      return y
    end
    local q1, k1, v1 = q:clone():requires_grad(true), k:clone():requires_grad(true), v:clone():requires_grad(true)
    local y1 = run(q1, k1, v1)
    -- [B,L,H,d] storage permuted to [B,H,L,d] (last dim contiguous: read in place)
    local q2 = q:transpose(2, 3):contiguous():requires_grad(true)
    -- [B,H,d,L] storage transposed to [B,H,L,d] (last dim strided: copied)
    local k2 = k:transpose(3, 4):contiguous():requires_grad(true)
    local v2 = v:permute({ 3, 1, 4, 2 }):contiguous():requires_grad(true) -- [Lk,B,5,H]
    local y2 = run(q2:transpose(2, 3), k2:transpose(3, 4), v2:permute({ 2, 4, 1, 3 }))
    close_tensors(y2, y1, 1e-13, "y")
    close_tensors(q2.grad:transpose(2, 3), q1.grad, 1e-13, "gq")
    close_tensors(k2.grad:transpose(3, 4), k1.grad, 1e-13, "gk")
    close_tensors(v2.grad:permute({ 2, 4, 1, 3 }), v1.grad, 1e-13, "gv")
    -- a head-expanded k/v (shared over heads, stride 0) and an expanded mask
    local k1h, v1h = vl.randn({ B, 1, Lk, d }), vl.randn({ B, 1, Lk, 5 })
    local m = vl.rand({ 1, 1, 1, Lk }):gt(0.5)
    m:narrow(4, 1, 1):fill_(true)
    local qf = q:float()
    local ye = vl.attention(qf, k1h:expand({ B, H, Lk, d }), v1h:expand({ B, H, Lk, 5 }), { mask = m:expand({ B, H, Lq, Lk }) })
    local yc = vl.attention(qf, k1h:expand({ B, H, Lk, d }):contiguous(), v1h:expand({ B, H, Lk, 5 }):contiguous(), { mask = m })
    close_tensors(ye, yc, 0, "expanded")
  end)

  it("masks are read through their strides: transposed, sliced, broadcast along keys", function()
    local q, k, v = vl.randn({ 2, 2, 6, 3 }, F64), vl.randn({ 2, 2, 5, 3 }, F64), vl.randn({ 2, 2, 5, 4 }, F64)
    local bt = vl.rand({ 5, 6 }):gt(0.4)
    bt:select(1, 1):fill_(true)
    local bm = bt:t() -- [6,5] view, strides {1, 6}
    close_tensors(vl.attention(q, k, v, { mask = bm }), reference(q, k, v, { mask = bm:contiguous() }), 1e-13, "transposed bool")
    local at = vl.randn({ 2, 5, 6, 2 }, F64):select(4, 1):transpose(2, 3) -- [2,6,5], strides {60,2,12}
    local want = reference(q, k, v, { mask = at:contiguous():unsqueeze(2) })
    close_tensors(vl.attention(q, k, v, { mask = at:unsqueeze(2) }), want, 1e-13, "strided additive")
    local col = vl.randn({ 6, 1 }, F64) -- broadcast along keys: adds a per-row constant, no change
    close_tensors(vl.attention(q, k, v, { mask = col }), vl.attention(q, k, v), 1e-13, "per-row constant")
  end)

  it("float16 and bfloat16 inputs compute in float32 and keep their dtype", function()
    local q, k, v = vl.randn({ 1, 2, 5, 4 }), vl.randn({ 1, 2, 6, 4 }), vl.randn({ 1, 2, 6, 4 })
    for _, dt in ipairs({ "float16", "bfloat16" }) do
      local y = vl.attention(q:to(dt), k:to(dt), v:to(dt))
      assert.are.equal(dt, y.dtype)
      close_tensors(y:float(), vl.attention(q:to(dt):float(), k:to(dt):float(), v:to(dt):float()), 1e-2, dt)
    end
  end)

  it("results do not depend on the thread count (forward and backward)", function()
    local threads = vl.get_num_threads()
    local q, k, v = vl.randn({ 1, 2, 150, 16 }), vl.randn({ 1, 2, 300, 16 }), vl.randn({ 1, 2, 300, 16 })
    local g = vl.randn({ 1, 2, 150, 16 })
    local function run(n)
      vl.set_num_threads(n)
      local qq, kk, vv = q:clone():requires_grad(true), k:clone():requires_grad(true), v:clone():requires_grad(true)
      vl.manual_seed(9)
      local y = vl.attention(qq, kk, vv, { dropout = 0.2 })
      y:backward(g)
      return { y, qq.grad, kk.grad, vv.grad }
    end
    local a, b = run(1), run(math.max(2, threads))
    vl.set_num_threads(threads)
    for i = 1, 4 do close_tensors(a[i], b[i], 0, "result " .. i) end
  end)
end)

describe("attention dropout", function()
  local q, k, v
  before_each(function()
    vl.manual_seed(4)
    q, k, v = vl.randn({ 2, 2, 7, 4 }, F64), vl.randn({ 2, 2, 9, 4 }, F64), vl.randn({ 2, 2, 9, 3 }, F64)
  end)

  it("draws what vl.dropout draws on the [B,H,Lq,Lk] weights at the same generator state", function()
    vl.manual_seed(21)
    local want, wp = reference(q, k, v, { dropout = 0.4 })
    vl.manual_seed(21)
    local y = vl.attention(q, k, v, { dropout = 0.4 })
    close_tensors(y, want, 1e-12, "fused")
    vl.manual_seed(21)
    local y2, w = vl.attention(q, k, v, { dropout = 0.4, need_weights = true })
    close_tensors(y2, want, 1e-12, "need_weights output")
    close_tensors(w, wp, 1e-12, "weights after dropout")
  end)

  it("and the same gradients as that explicit path", function()
    local g = vl.randn({ 2, 2, 7, 3 }, F64)
    local function grads(f)
      local qq, kk, vv = q:clone():requires_grad(true), k:clone():requires_grad(true), v:clone():requires_grad(true)
      vl.manual_seed(33)
      f(qq, kk, vv):backward(g)
      return { qq.grad, kk.grad, vv.grad }
    end
    local a = grads(function(qq, kk, vv) return vl.attention(qq, kk, vv, { dropout = 0.5, causal = true }) end)
    local b = grads(function(qq, kk, vv) return (reference(qq, kk, vv, { dropout = 0.5, causal = true })) end)
    for i = 1, 3 do close_tensors(a[i], b[i], 1e-12, "grad " .. i) end
  end)

  it("is reproducible with a seed, differs without, and advances the generator", function()
    vl.manual_seed(1)
    local a = vl.attention(q, k, v, { dropout = 0.3 })
    local a2 = vl.attention(q, k, v, { dropout = 0.3 })
    vl.manual_seed(1)
    local b = vl.attention(q, k, v, { dropout = 0.3 })
    close_tensors(a, b, 0)
    assert.is_true((a - a2):abs():max():item() > 0)
  end)

  it("keeps about 1-p of the weights; p = 0 is no dropout; p = 1 gives zeros", function()
    local qq, kk, vv = vl.randn({ 4, 4, 64, 8 }), vl.randn({ 4, 4, 64, 8 }), vl.randn({ 4, 4, 64, 8 })
    local _, w = vl.attention(qq, kk, vv, { dropout = 0.25, need_weights = true })
    local kept = w:gt(0):float():mean():item()
    assert.is_true(math.abs(kept - 0.75) < 0.01, "kept fraction " .. kept) -- 65536 draws: sd 0.0017
    close_tensors(vl.attention(q, k, v, { dropout = 0 }), vl.attention(q, k, v), 0)
    close_tensors(vl.attention(q, k, v, { dropout = 1 }), vl.zeros({ 2, 2, 7, 3 }, F64), 0)
  end)
end)

describe("attention bad input", function()
  local q, k, v = vl.randn({ 2, 3, 5, 4 }), vl.randn({ 2, 3, 6, 4 }), vl.randn({ 2, 3, 6, 2 })
  it("wrong number of dims", function()
    has_error("attention: q must be 4-d [B,H,Lq,d] or 3-d [B,Lq,d], got shape [5,4]", vl.attention, vl.randn({ 5, 4 }), k, v)
    has_error("attention: q [2,3,5,4], k [3,6,4] and v [2,3,6,2] must have the same number of dims", vl.attention, q,
      vl.randn({ 3, 6, 4 }), v)
  end)
  it("mismatched head dim, key count, batch or heads", function()
    has_error("attention: k [2,3,6,5] has last dim 5 but q [2,3,5,4] has head dim d = 4", vl.attention, q,
      vl.randn({ 2, 3, 6, 5 }), v)
    has_error("attention: v [2,3,7,2] has 7 rows but k [2,3,6,4] has 6 keys", vl.attention, q, k, vl.randn({ 2, 3, 7, 2 }))
    has_error("must agree on the batch and head dims", vl.attention, q, vl.randn({ 2, 2, 6, 4 }), vl.randn({ 2, 2, 6, 2 }))
    has_error("must agree on the batch dims", vl.attention, vl.randn({ 2, 5, 4 }), vl.randn({ 1, 6, 4 }), vl.randn({ 1, 6, 2 }))
  end)
  it("dtypes: mixed, integer, bad masks", function()
    has_error("attention: q, k and v must have one dtype, got q float32, k float64, v float32", vl.attention, q, k:double(), v)
    has_error("attention: q must be a floating-point tensor, got int64", vl.attention, q:long(), k:long(), v:long())
    has_error("attention: mask must be a bool tensor (true = may attend) or a floating-point additive mask, got int64",
      vl.attention, q, k, v, { mask = vl.ones({ 5, 6 }, { dtype = "int64" }) })
  end)
  it("a mask that does not broadcast", function()
    has_error("attention: mask of shape [5,5] does not broadcast to [2,3,5,6] ([B,H,Lq,Lk])", vl.attention, q, k, v,
      { mask = vl.ones({ 5, 5 }, { dtype = "bool" }) })
    has_error("attention: mask of shape [1,2,3,5,6] does not broadcast", vl.attention, q, k, v,
      { mask = vl.ones({ 1, 2, 3, 5, 6 }, { dtype = "bool" }) })
    has_error("attention: mask of shape [3,5,6] does not broadcast to [2,5,6] ([B,Lq,Lk])", vl.attention,
      vl.randn({ 2, 5, 4 }), vl.randn({ 2, 6, 4 }), vl.randn({ 2, 6, 4 }), { mask = vl.ones({ 3, 5, 6 }, { dtype = "bool" }) })
  end)
  it("options", function()
    has_error("attention: dropout must be in [0, 1], got 1.5", vl.attention, q, k, v, { dropout = 1.5 })
    has_error("attention: scale must be finite, got inf", vl.attention, q, k, v, { scale = math.huge })
    has_error("attention: unknown option 'casual'", vl.attention, q, k, v, { casual = true })
    has_error("attention: option 'mask' must be a tensor, got number", vl.attention, q, k, v, { mask = 1 })
    has_error("option 'causal' must be a boolean", vl.attention, q, k, v, { causal = 1 })
    has_error("attention: argument 4 must be an options table, got number", vl.attention, q, k, v, 3)
  end)
  it("an additive mask that requires grad is refused (no mask gradient)", function()
    local m = vl.zeros({ 5, 6 }):requires_grad(true)
    has_error("attention: the additive mask requires grad, but gradients to the mask are not supported", vl.attention,
      q, k, v, { mask = m })
    assert.are.same({ 2, 3, 5, 2 }, vl.attention(q, k, v, { mask = m:detach() }):size())
    vl.no_grad(function() vl.attention(q, k, v, { mask = m }) end)
  end)
end)
