-- nn_ops_spec.lua — vl.linear, batch/layer/rms/group norm, dropout,
-- embedding and the losses, forward and backward.
-- References: PyTorch 1.13 outputs and gradients in float64
-- (tests/fixtures/nn_ops.lua, made by scripts/fixtures/nn_ops.py),
-- central differences through vl.gradcheck, and closed forms.
local vl = require "vl"

local fixtures = dofile("tests/fixtures/nn_ops.lua")
local F64 = { dtype = "float64" }

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  return t:contiguous():view(-1):to("float64"):totable()
end

local function assert_close(got, want, tol, what)
  local g = flat(got)
  assert.are.equal(#want.v, #g, (what or "values") .. ": element count")
  assert.are.same(want.shape, got:size(), (what or "values") .. ": shape")
  for i = 1, #g do
    local e = want.v[i]
    local ok = math.abs(g[i] - e) <= tol * (1 + math.abs(e)) or (e ~= e and g[i] ~= g[i])
    if not ok then
      error(string.format("%s: element %d: got %.17g, want %.17g (tol %g)", what or "values", i, g[i], e, tol), 2)
    end
  end
end

local function close_tensors(a, b, tol)
  local fa, fb = flat(a), flat(b)
  assert.are.same(a:size(), b:size())
  for i = 1, #fa do
    if not (math.abs(fa[i] - fb[i]) <= tol * (1 + math.abs(fb[i]))) then
      error(string.format("element %d: %.17g vs %.17g", i, fa[i], fb[i]), 2)
    end
  end
end

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

local function has_error(needle, f, ...)
  local msg = err_of(f, ...)
  if not msg:find(needle, 1, true) then
    error(string.format("error %q does not contain %q", msg, needle), 2)
  end
end

local function gradcheck(fn, inputs, opts)
  local ok, msg = vl.gradcheck(fn, inputs, opts)
  assert(ok, msg)
end

local function leaf(t) return t:requires_grad(true) end
local function randn(shape) return vl.randn(shape, F64) end

-- Same values in other layouts: a transposed copy (rows not unit-stride)
-- and a narrow of a wider tensor.
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

-- Build a fixture case: tensors in `dtype` (class targets stay int64),
-- placed by `layout`; returns the output and the tensors by name.
local function run_case(case, dtype, layout)
  local ts = {}
  for name, e in pairs(case.tensors) do
    local dt = e.dtype == "int64" and "int64" or dtype
    local t
    if #e.shape == 0 then
      t = vl.tensor(e.v[1], { dtype = dt })
    else
      t = vl.tensor(e.v, { dtype = dt }):view(e.shape)
    end
    if layout and dt ~= "int64" then t = layout(t) end
    if e.grad then t:requires_grad(true) end
    ts[name] = t
  end
  local function resolve(v)
    if type(v) == "string" and v:sub(1, 1) == "@" then return ts[v:sub(2)] end
    return v
  end
  local args, n = {}, 0
  for _, a in ipairs(case.args) do
    n = n + 1
    if a ~= "nil" then args[n] = resolve(a) end
  end
  local opts = {}
  for k, v in pairs(case.opts) do opts[k] = resolve(v) end
  n = n + 1
  args[n] = opts
  return vl[case.op](table.unpack(args, 1, n)), ts
end

local function check_case(case, dtype, tol, layout)
  local out, ts = run_case(case, dtype, layout)
  assert.are.equal(dtype, out.dtype)
  assert_close(out, case.out, tol, "output")
  if case.grads then
    local g = case.gout
    local gt = #g.shape == 0 and vl.tensor(g.v[1], { dtype = dtype }) or vl.tensor(g.v, { dtype = dtype }):view(g.shape)
    out:backward(gt)
    for name, want in pairs(case.grads) do
      local got = ts[name].grad
      assert(got, "no gradient for " .. name)
      assert.are.equal(dtype, got.dtype)
      assert_close(got, want, tol, "grad of " .. name)
    end
  end
  for name, want in pairs(case.after or {}) do assert_close(ts[name], want, tol, name .. " after the call") end
end

local names = {}
for name in pairs(fixtures) do names[#names + 1] = name end
table.sort(names)

describe("nn ops: PyTorch fixtures", function()
  for _, name in ipairs(names) do
    it(name .. " in float64, outputs and gradients", function() check_case(fixtures[name], "float64", 1e-10) end)
  end
end)

describe("nn ops: float32 against the float64 references", function()
  for _, name in ipairs(names) do
    it(name, function() check_case(fixtures[name], "float32", 1e-4) end)
  end
end)

describe("nn ops: strided inputs", function()
  for _, name in ipairs(names) do
    it(name .. " with transposed and narrowed inputs", function()
      check_case(fixtures[name], "float64", 1e-10, transposed)
      check_case(fixtures[name], "float64", 1e-10, narrowed)
    end)
  end

  it("take expanded inputs (stride 0)", function()
    local row = randn({ 1, 5 })
    local e = row:expand({ 4, 5 })
    close_tensors(vl.layer_norm(e, 5), vl.layer_norm(e:contiguous(), 5), 1e-14)
    local w = randn({ 3, 5 })
    close_tensors(vl.linear(e, w), vl.linear(e:contiguous(), w), 1e-14)
    local t = vl.tensor({ 1, 2, 3, 4 }, { dtype = "int64" })
    close_tensors(vl.cross_entropy(e, t), vl.cross_entropy(e:contiguous(), t), 1e-14)
    local y = randn({ 4, 5 })
    close_tensors(vl.mse_loss(e, y), vl.mse_loss(e:contiguous(), y), 1e-14)
  end)

  it("give gradients of an expanded leaf summed back to its shape", function()
    local row = leaf(randn({ 1, 5 }))
    vl.layer_norm(row:expand({ 4, 5 }), 5):backward(vl.ones({ 4, 5 }, F64))
    assert.are.same({ 1, 5 }, row.grad:size())
  end)
end)

describe("nn ops: gradcheck in float64", function()
  it("linear, with and without bias, batched", function()
    gradcheck(function(x, w, b) return vl.linear(x, w, b) end, { leaf(randn({ 2, 3 })), leaf(randn({ 4, 3 })), leaf(randn({ 4 })) })
    gradcheck(function(x, w) return vl.linear(x, w) end, { leaf(randn({ 2, 2, 3 })), leaf(randn({ 2, 3 })) })
  end)

  it("batch_norm in training and eval mode", function()
    local C = 3
    gradcheck(function(x, w, b)
      return vl.batch_norm(x, nil, nil, w, b, { training = true })
    end, { leaf(randn({ 4, C })), leaf(randn({ C })), leaf(randn({ C })) })
    gradcheck(function(x, w, b)
      return vl.batch_norm(x, nil, nil, w, b, { training = true, eps = 1e-3 })
    end, { leaf(randn({ 2, C, 3 })), leaf(randn({ C })), leaf(randn({ C })) })
    local rm, rv = randn({ C }), vl.rand({ C }, F64) + 0.5
    gradcheck(function(x, w, b)
      return vl.batch_norm(x, rm, rv, w, b)
    end, { leaf(randn({ 3, C, 2 })), leaf(randn({ C })), leaf(randn({ C })) })
  end)

  it("layer_norm, rms_norm, group_norm", function()
    gradcheck(function(x, w, b) return vl.layer_norm(x, { 2, 3 }, w, b) end,
      { leaf(randn({ 2, 2, 3 })), leaf(randn({ 2, 3 })), leaf(randn({ 2, 3 })) })
    gradcheck(function(x, w) return vl.rms_norm(x, 4, w, { eps = 1e-6 }) end, { leaf(randn({ 3, 4 })), leaf(randn({ 4 })) })
    gradcheck(function(x) return vl.rms_norm(x, 4) end, { leaf(randn({ 3, 4 })) })
    gradcheck(function(x, w, b) return vl.group_norm(x, 2, w, b) end,
      { leaf(randn({ 2, 4, 3 })), leaf(randn({ 4 })), leaf(randn({ 4 })) })
  end)

  it("dropout (with the same mask in every call)", function()
    gradcheck(function(x)
      vl.manual_seed(11)
      return vl.dropout(x, 0.4)
    end, { leaf(randn({ 3, 5 })) })
  end)

  it("embedding, with repeated ids and padding_idx", function()
    local idx = vl.tensor({ { 1, 3, 3 }, { 2, 1, 4 } }, { dtype = "int64" })
    gradcheck(function(w) return vl.embedding(idx, w) end, { leaf(randn({ 4, 3 })) })
    -- padding_idx: the row is still read but gets no gradient (PyTorch)
    local w = leaf(randn({ 4, 3 }))
    vl.embedding(idx, w, { padding_idx = 3 }):backward(vl.ones({ 2, 3, 3 }, F64))
    assert.are.same({ { 2, 2, 2 }, { 1, 1, 1 }, { 0, 0, 0 }, { 1, 1, 1 } }, w.grad:totable())
    gradcheck(function(w2) return vl.embedding(vl.tensor({ 1, 2, 4 }, { dtype = "int64" }), w2, { padding_idx = -2 }) end,
      { leaf(randn({ 4, 3 })) })
  end)

  it("cross_entropy with class and probability targets", function()
    local t = vl.tensor({ 2, -100, 4, 1, 3 }, { dtype = "int64" })
    local w = vl.tensor({ 0.5, 1, 1.5, 2 }, F64)
    for _, red in ipairs { "mean", "sum", "none" } do
      gradcheck(function(x)
        return vl.cross_entropy(x, t, { weight = w, reduction = red, label_smoothing = 0.1 })
      end, { leaf(randn({ 5, 4 })) })
      gradcheck(function(x)
        return vl.cross_entropy(x, t, { reduction = red, label_smoothing = 0.2 })
      end, { leaf(randn({ 5, 4 })) })
    end
    local tk = vl.tensor({ { 1, 3 }, { 2, 2 } }, { dtype = "int64" })
    gradcheck(function(x) return vl.cross_entropy(x, tk) end, { leaf(randn({ 2, 3, 2 })) })
    local p = vl.softmax(randn({ 3, 4 }), 2)
    gradcheck(function(x, q) return vl.cross_entropy(x, q, { weight = w, label_smoothing = 0.1 }) end,
      { leaf(randn({ 3, 4 })), leaf(p) })
    gradcheck(function(x) return vl.nll_loss(x, t, { weight = w }) end, { leaf(randn({ 5, 4 })) })
  end)

  it("element-wise losses, broadcasting included, for input and target", function()
    gradcheck(function(a, b) return vl.mse_loss(a, b) end, { leaf(randn({ 3, 1 })), leaf(randn({ 3, 4 })) })
    gradcheck(function(a, b) return vl.l1_loss(a, b, { reduction = "sum" }) end, { leaf(randn({ 4 })), leaf(randn({ 2, 4 })) })
    gradcheck(function(a, b) return vl.smooth_l1_loss(a, b, { beta = 0.7, reduction = "none" }) end,
      { leaf(randn({ 3, 4 })), leaf(randn({ 3, 4 })) })
    local w, pw = vl.rand({ 4 }, F64) + 0.5, vl.rand({ 4 }, F64) * 2
    gradcheck(function(x, y)
      return vl.binary_cross_entropy_with_logits(x, y, { weight = w, pos_weight = pw })
    end, { leaf(randn({ 3, 4 })), leaf(vl.rand({ 3, 4 }, F64)) })
    gradcheck(function(x, y) return vl.kl_div(x, y, { reduction = "batchmean" }) end,
      { leaf(vl.log_softmax(randn({ 3, 4 }), 2)), leaf(vl.softmax(randn({ 3, 4 }), 2)) })
    gradcheck(function(x, y) return vl.kl_div(x, y, { reduction = "sum", log_target = true }) end,
      { leaf(vl.log_softmax(randn({ 3, 4 }), 2)), leaf(vl.log_softmax(randn({ 3, 4 }), 2)) })
  end)

  it("cosine_similarity for both inputs, broadcast", function()
    gradcheck(function(a, b) return vl.cosine_similarity(a, b) end, { leaf(randn({ 1, 4 })), leaf(randn({ 3, 4 })) })
    gradcheck(function(a, b) return vl.cosine_similarity(a, b, { dim = 1 }) end, { leaf(randn({ 3, 2 })), leaf(randn({ 3, 2 })) })
  end)

  it("frees a graph's saved tensors after backward", function()
    collectgarbage("collect")
    collectgarbage("collect")
    local x = leaf(randn({ 200, 100 }))
    local w = leaf(randn({ 100 }))
    collectgarbage("collect")
    local base = vl.memory_in_use()
    local loss = vl.layer_norm(x, 100, w)
    loss:backward(vl.ones({ 200, 100 }, F64))
    loss = nil
    x.grad, w.grad = nil, nil
    collectgarbage("collect")
    collectgarbage("collect")
    assert.are.equal(base, vl.memory_in_use())
  end)
end)

describe("nn ops: dropout", function()
  it("gives the same mask for the same seed and another for another", function()
    local x = vl.ones({ 20, 30 })
    vl.manual_seed(5)
    local a = vl.dropout(x, 0.3)
    vl.manual_seed(5)
    local b = vl.dropout(x, 0.3)
    close_tensors(a, b, 0)
    local c = vl.dropout(x, 0.3)
    assert.is_true((a - c):abs():sum():item() > 0)
  end)

  it("keeps the mean: kept elements are scaled by 1/(1-p)", function()
    vl.manual_seed(1)
    local n, p = 200000, 0.3
    local y = vl.dropout(vl.ones({ n }, F64), p)
    local kept = (y:ne(0)):sum():item()
    -- binomial(n, 1-p): 5 sigma
    assert.is_true(math.abs(kept - n * (1 - p)) < 5 * math.sqrt(n * p * (1 - p)))
    assert.is_true(math.abs(y:mean():item() - 1) < 5 * math.sqrt(p / (1 - p) / n))
    local v = flat(y)
    for i = 1, 1000 do assert.is_true(v[i] == 0 or math.abs(v[i] - 1 / (1 - p)) < 1e-12) end
  end)

  it("is the identity for p = 0 and in eval mode, and zeros for p = 1", function()
    local x = randn({ 4, 5 })
    close_tensors(vl.dropout(x, 0), x, 0)
    close_tensors(vl.dropout(x, 0.5, { training = false }), x, 0)
    local z = vl.dropout(x, 1)
    assert.are.equal(0, z:abs():sum():item())
  end)

  it("sends the gradient through the saved mask", function()
    local x = leaf(vl.ones({ 50 }, F64))
    vl.manual_seed(3)
    local y = vl.dropout(x, 0.5)
    y:backward(vl.ones({ 50 }, F64))
    close_tensors(x.grad, y:detach(), 0)
  end)

  it("works on float16, bfloat16 and 0-d tensors", function()
    for _, dt in ipairs { "float16", "bfloat16", "float32" } do
      local y = vl.dropout(vl.ones({ 10 }, { dtype = dt }), 0.5)
      assert.are.equal(dt, y.dtype)
    end
    local s = vl.dropout(vl.tensor(2.0, F64), 0.5)
    assert.are.equal(0, s:dim())
  end)
end)

describe("nn ops: behaviour", function()
  it("batch_norm in eval mode leaves the running stats alone", function()
    local rm, rv = randn({ 3 }), vl.rand({ 3 }, F64) + 1
    local rm0, rv0 = rm:clone(), rv:clone()
    vl.batch_norm(randn({ 4, 3 }), rm, rv)
    close_tensors(rm, rm0, 0)
    close_tensors(rv, rv0, 0)
    vl.batch_norm(randn({ 4, 3 }), rm, rv, nil, nil, { training = true, momentum = 0.5 })
    assert.is_true((rm - rm0):abs():sum():item() > 0)
  end)

  it("batch_norm running stats may be strided views of another dtype", function()
    local x = randn({ 5, 3 })
    local big = vl.zeros({ 3, 2 })            -- float32, column view
    local rm, rv = big:select(2, 1), big:select(2, 2)
    rv:fill_(1)
    vl.batch_norm(x, rm, rv, nil, nil, { training = true, momentum = 1 })
    close_tensors(rm:to("float64"), x:mean(1), 1e-6)
    close_tensors(rv:to("float64"), x:var(1), 1e-6)
  end)

  it("linear is one product: matches matmul + bias", function()
    local x, w, b = randn({ 7, 5 }), randn({ 3, 5 }), randn({ 3 })
    close_tensors(vl.linear(x, w, b), vl.matmul(x, w:t()) + b, 1e-13)
  end)

  it("cross_entropy keeps large logits finite (log-sum-exp)", function()
    local x = vl.tensor({ { 1000, 0, -1000 }, { -1000, 1000, 0 } }, F64)
    local t = vl.tensor({ 1, 2 }, { dtype = "int64" })
    assert.are.equal(0, vl.cross_entropy(x, t):item())
    local t2 = vl.tensor({ 2, 1 }, { dtype = "int64" })
    assert.are.equal(1500, vl.cross_entropy(x, t2):item())
    local l = vl.cross_entropy(x:float(), t2)
    assert.are.equal(1500, l:item())
  end)

  it("binary_cross_entropy_with_logits is stable for large logits", function()
    local x = vl.tensor({ 100, -100, 800 }, F64)
    local y = vl.tensor({ 0, 1, 1 }, F64)
    local l = vl.binary_cross_entropy_with_logits(x, y, { reduction = "none" })
    close_tensors(l, vl.tensor({ 100, 100, 0 }, F64), 1e-12)
  end)

  it("all ignored targets give NaN for mean (PyTorch) and zero gradients", function()
    local x = leaf(randn({ 2, 3 }))
    local l = vl.cross_entropy(x, vl.tensor({ -100, -100 }, { dtype = "int64" }))
    assert.is_true(l:item() ~= l:item())
    l:backward()
    assert.are.equal(0, x.grad:abs():sum():item())
  end)

  it("accepts int32 and uint8 targets and indices", function()
    local x = randn({ 3, 4 })
    local ref = vl.cross_entropy(x, vl.tensor({ 1, 4, 2 }, { dtype = "int64" }))
    close_tensors(vl.cross_entropy(x, vl.tensor({ 1, 4, 2 }, { dtype = "int32" })), ref, 0)
    close_tensors(vl.cross_entropy(x, vl.tensor({ 1, 4, 2 }, { dtype = "uint8" })), ref, 0)
    local w = randn({ 5, 2 })
    close_tensors(vl.embedding(vl.tensor({ 5, 1 }, { dtype = "int32" }), w), vl.index_select(w, 1, vl.tensor({ 5, 1 }, { dtype = "int64" })), 0)
  end)

  it("embedding gathers rows of any dtype", function()
    for _, dt in ipairs { "int64", "int32", "uint8", "bool", "float16", "bfloat16" } do
      local w = vl.tensor({ { 1, 0 }, { 0, 1 }, { 1, 1 } }, { dtype = dt })
      local e = vl.embedding(vl.tensor({ 3, 1 }, { dtype = "int64" }), w)
      assert.are.equal(dt, e.dtype)
      assert.are.same({ { 1, 1 }, { 1, 0 } }, e:to("int64"):totable())
    end
  end)

  it("half-precision inputs give half-precision outputs close to float32", function()
    local x, w, b = randn({ 3, 8 }), randn({ 8 }), randn({ 8 })
    local ref = vl.layer_norm(x:float(), 8, w:float(), b:float())
    for _, dt in ipairs { "float16", "bfloat16" } do
      local y = vl.layer_norm(x:to(dt), 8, w:to(dt), b:to(dt))
      assert.are.equal(dt, y.dtype)
      close_tensors(y:float(), ref, dt == "float16" and 1e-2 or 5e-2)
    end
    local y = vl.linear(x:half(), randn({ 2, 8 }):half())
    assert.are.equal("float16", y.dtype)
  end)

  it("mixed float32/float64 inputs give float64", function()
    local y = vl.linear(randn({ 2, 3 }):float(), randn({ 4, 3 }))
    assert.are.equal("float64", y.dtype)
    assert.are.equal("float64", vl.mse_loss(randn({ 3 }):float(), randn({ 3 })).dtype)
  end)

  it("handle empty tensors", function()
    assert.are.same({ 0, 5 }, vl.linear(vl.zeros({ 0, 3 }), vl.zeros({ 5, 3 })):size())
    local b = vl.tensor({ 1, 2, 3 }, F64)
    close_tensors(vl.linear(vl.zeros({ 2, 0 }, F64), vl.zeros({ 3, 0 }, F64), b), b:expand({ 2, 3 }), 0)
    assert.are.same({ 0, 4 }, vl.layer_norm(vl.zeros({ 0, 4 }), 4):size())
    assert.are.same({ 0, 3 }, vl.group_norm(vl.zeros({ 0, 3 }), 3):size())
    local e = vl.zeros({ 0 })
    assert.is_true(vl.mse_loss(e, e):item() ~= vl.mse_loss(e, e):item()) -- mean of nothing: NaN
    assert.are.equal(0, vl.mse_loss(e, e, { reduction = "sum" }):item())
    assert.are.same({ 0 }, vl.mse_loss(e, e, { reduction = "none" }):size())
    assert.are.same({ 0 }, vl.cross_entropy(vl.zeros({ 0, 4 }), vl.zeros({ 0 }, { dtype = "int64" }), { reduction = "none" }):size())
    assert.are.same({ 0, 2 }, vl.embedding(vl.zeros({ 0 }, { dtype = "int64" }), vl.zeros({ 3, 2 })):size())
    assert.are.same({ 2, 0 }, vl.cosine_similarity(vl.zeros({ 2, 3, 0 }), vl.zeros({ 2, 3, 0 })):size())
  end)

  it("handle 0-d tensors", function()
    local a, b = leaf(vl.tensor(3.0, F64)), vl.tensor(1.0, F64)
    local l = vl.mse_loss(a, b)
    assert.are.equal(0, l:dim())
    assert.are.equal(4, l:item())
    l:backward()
    assert.are.equal(4, a.grad:item())
    local ce = vl.cross_entropy(vl.tensor({ 0, 0 }, F64), vl.tensor(2, { dtype = "int64" }))
    assert.is_true(math.abs(ce:item() - math.log(2)) < 1e-15)
    assert.are.equal(0, vl.kl_div(vl.tensor(-1.0, F64), vl.tensor(0.0, F64), { reduction = "batchmean" }):item())
  end)

  it("big (parallel) cases match compositions of other ops", function()
    local N, C = 300, 200 -- past the parallel grain
    local x = leaf(randn({ N, C }))
    local t = vl.randint(1, C + 1, { N })
    local l = vl.cross_entropy(x, t)
    local logp = vl.log_softmax(x:detach(), 2)
    local picked = vl.gather(logp, 2, t:view({ N, 1 }))
    assert.is_true(math.abs(l:item() + picked:mean():item()) < 1e-12)
    l:backward()
    local onehot = vl.zeros({ N, C }, F64):scatter(2, t:view({ N, 1 }), vl.ones({ N, 1 }, F64))
    close_tensors(x.grad, (vl.softmax(x:detach(), 2) - onehot) / N, 1e-12)
    local h = randn({ 400, 100 })
    local mean = h:mean(2, { keepdim = true })
    local var = h:var(2, { keepdim = true, correction = 0 })
    close_tensors(vl.layer_norm(h, 100, nil, nil, { eps = 1e-5 }), (h - mean) / (var + 1e-5):sqrt(), 1e-12)
  end)

  it("give the same results for 1 and 2 threads", function()
    local n0 = vl.get_num_threads()
    local x, y = randn({ 300, 200 }), randn({ 300, 200 })
    local t = vl.randint(1, 201, { 300 })
    local function all()
      return { vl.cross_entropy(x, t, { label_smoothing = 0.1 }), vl.mse_loss(x, y, { reduction = "sum" }),
        vl.layer_norm(x, 200), vl.batch_norm(x, nil, nil, nil, nil, { training = true }),
        vl.binary_cross_entropy_with_logits(x, vl.sigmoid(y)) }
    end
    vl.set_num_threads(1)
    local a = all()
    vl.set_num_threads(2)
    local b = all()
    vl.set_num_threads(n0)
    for i = 1, #a do close_tensors(a[i], b[i], 0) end
  end)

  it("registers every function in vl", function()
    for _, f in ipairs { "linear", "batch_norm", "layer_norm", "rms_norm", "group_norm", "dropout", "embedding",
      "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits",
      "kl_div", "cosine_similarity" } do
      assert.is_function(vl[f], f)
    end
  end)
end)

describe("nn ops: bad input", function()
  local x = randn({ 3, 4 })
  local t = vl.tensor({ 1, 2, 3 }, { dtype = "int64" })

  it("class index out of range names the 1-based value", function()
    has_error("cross_entropy: target 5 out of range for 4 classes (expected 1..4", vl.cross_entropy, x,
      vl.tensor({ 1, 5, 2 }, { dtype = "int64" }))
    has_error("target 0 out of range", vl.cross_entropy, x, vl.tensor({ 0, 1, 2 }, { dtype = "int64" }))
    has_error("nll_loss: target -3 out of range", vl.nll_loss, x, vl.tensor({ 1, -3, 2 }, { dtype = "int64" }))
    has_error("embedding: index 7 out of range for 6 embeddings (expected 1..6)", vl.embedding,
      vl.tensor({ 1, 7 }, { dtype = "int64" }), vl.zeros({ 6, 2 }))
    has_error("embedding: padding_idx 9 out of range", vl.embedding, t, vl.zeros({ 6, 2 }), { padding_idx = 9 })
  end)

  it("shape mismatches name the shapes", function()
    has_error("target of shape [2] does not fit input [3,4]", vl.cross_entropy, x, vl.tensor({ 1, 2 }, { dtype = "int64" }))
    has_error("probability target of shape [3,3] must have the input's shape [3,4]", vl.cross_entropy, x, vl.zeros({ 3, 3 }))
    has_error("mse_loss: shapes [3] and [4] cannot be broadcast", vl.mse_loss, vl.zeros({ 3 }), vl.zeros({ 4 }))
    has_error("linear: input [2,3] has 3 features in its last dim but weight [4,5] takes 5", vl.linear, vl.zeros({ 2, 3 }),
      vl.zeros({ 4, 5 }))
    has_error("linear: bias of shape [3] must be [4]", vl.linear, vl.zeros({ 2, 5 }), vl.zeros({ 4, 5 }), vl.zeros({ 3 }))
    has_error("layer_norm: normalized_shape [5] does not match the last dims of the input's shape [3,4]", vl.layer_norm, x, 5)
    has_error("layer_norm: weight of shape [3] must match the normalized shape [4]", vl.layer_norm, x, 4, vl.zeros({ 3 }))
    has_error("cross_entropy: weight of shape [3] must be [4]", vl.cross_entropy, x, t, { weight = vl.ones({ 3 }) })
    has_error("binary_cross_entropy_with_logits: target of shape [3] must have the input's shape [3,4]",
      vl.binary_cross_entropy_with_logits, x, vl.zeros({ 3 }))
    has_error("pos_weight of shape [5] does not broadcast to the input's shape [3,4]",
      vl.binary_cross_entropy_with_logits, x, x, { pos_weight = vl.ones({ 5 }) })
    has_error("batch_norm: input must be [N, C, ...]", vl.batch_norm, vl.zeros({ 4 }), nil, nil, nil, nil, { training = true })
    has_error("batch_norm: running_mean of shape [3] must be [4]", vl.batch_norm, x, vl.zeros({ 3 }), vl.ones({ 4 }))
  end)

  it("bad options and values", function()
    has_error("cross_entropy: unknown reduction 'avg' (expected 'none', 'mean', 'sum')", vl.cross_entropy, x, t,
      { reduction = "avg" })
    has_error("mse_loss: unknown reduction 'batchmean'", vl.mse_loss, x, x, { reduction = "batchmean" })
    has_error("mse_loss: unknown option 'reducton' (expected reduction)", vl.mse_loss, x, x, { reducton = "sum" })
    has_error("label_smoothing must be in [0, 1], got 1.5", vl.cross_entropy, x, t, { label_smoothing = 1.5 })
    has_error("ignore_index is not supported for probability targets", vl.cross_entropy, x, vl.zeros({ 3, 4 }),
      { ignore_index = 1 })
    has_error("group_norm: 4 channels do not split into 3 groups", vl.group_norm, x, 3)
    has_error("batch_norm: running_mean and running_var are needed in eval mode", vl.batch_norm, x)
    has_error("batch_norm: expected more than 1 value per channel when training", vl.batch_norm, vl.zeros({ 1, 4 }),
      nil, nil, nil, nil, { training = true })
    has_error("dropout: p must be in [0, 1], got 1.5", vl.dropout, x, 1.5)
    has_error("smooth_l1_loss: beta must be >= 0", vl.smooth_l1_loss, x, x, { beta = -1 })
    has_error("layer_norm: eps must be finite and >= 0", vl.layer_norm, x, 4, nil, nil, { eps = -1 })
    has_error("cosine_similarity: dim 3 out of range", vl.cosine_similarity, x, x, { dim = 3 })
  end)

  it("wrong dtypes", function()
    has_error("layer_norm: input must be a floating-point tensor, got int64", vl.layer_norm, t, 3)
    has_error("nll_loss: target must be an integer tensor of class indices, got float32", vl.nll_loss, x, vl.zeros({ 3 }))
    has_error("embedding: index must be an integer tensor", vl.embedding, vl.zeros({ 2 }), vl.zeros({ 3, 2 }))
    has_error("cross_entropy: target must be an integer tensor (int64, int32 or uint8), got bool", vl.cross_entropy,
      x, vl.zeros({ 3 }, { dtype = "bool" }))
    has_error("mse_loss: target must be a floating-point tensor, got int64", vl.mse_loss, vl.zeros({ 3 }), t)
    has_error("option 'weight' must be a tensor, got number", vl.cross_entropy, x, t, { weight = 3 })
  end)

  it("running stats that require grad are refused in training", function()
    local rm = leaf(vl.zeros({ 4 }, F64))
    has_error("in-place operation on a tensor that requires grad", vl.batch_norm, randn({ 3, 4 }), rm, vl.ones({ 4 }, F64),
      nil, nil, { training = true })
  end)
end)
