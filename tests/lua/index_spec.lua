-- Joining, indexing, ordering: cat, stack, split, chunk, gather, scatter,
-- index_select, masked_select, nonzero, sort, topk, flip, roll, repeat,
-- tril, triu. Values are checked against NumPy outputs saved by
-- scripts/fixtures/index.py; indices are 1-based on the Lua side.
local vl = require "vl"
local F = dofile("tests/fixtures/index.lua")

local function make(flat, shape, dtype)
  return vl.tensor(flat, { dtype = dtype or "float64" }):reshape(shape)
end

-- The same values in a non-contiguous layout (transposed storage, or a
-- stride-2 view for 1-D).
local function noncontig(x)
  local n = x:dim()
  local y
  if n >= 2 then
    y = x:transpose(1, n):contiguous():transpose(1, n)
  elseif n == 1 then
    local big = vl.zeros({ x:size(1), 2 }, { dtype = x.dtype })
    y = big:select(2, 1)
    y:copy_(x)
  else
    return x
  end
  local plain = true -- size-1 dims let a transposed layout count as contiguous
  for _, n in ipairs(x:size()) do plain = plain and n > 1 end
  if plain then assert(not y:is_contiguous(), "noncontig gave a contiguous tensor") end
  return y
end

local function flat(t)
  local v = t:reshape(-1):totable()
  for i = 1, #v do
    if type(v[i]) == "boolean" then v[i] = v[i] and 1 or 0 end
  end
  return v
end

local function same_shape(t, shape)
  local s = t:size()
  assert.are.equal(#shape, #s, "ndim")
  for i = 1, #shape do assert.are.equal(shape[i], s[i], "size of dim " .. i) end
end

local function check_values(t, want, tol, what)
  local got = flat(t)
  assert.are.equal(#want, #got, (what or "values") .. ": count")
  for i = 1, #want do
    local w, g = want[i], got[i]
    if w ~= w then
      assert.is_true(g ~= g, (what or "values") .. ": NaN expected at " .. i)
    elseif tol then
      assert.is_true(math.abs(w - g) <= tol, ("%s: %g ~= %g at %d"):format(what or "values", g, w, i))
    else
      assert.are.equal(w, g, (what or "values") .. " at " .. i)
    end
  end
end

local function sorted_names()
  local names = {}
  for k in pairs(F) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- Run one fixture case; `nc` turns each input non-contiguous.
local function run_case(c, nc)
  local tr = nc and noncontig or function(x) return x end
  local x = c.input and tr(make(c.input, c.shape, c.dtype))
  local op = c.op
  if op == "cat" or op == "stack" then
    local xs = {}
    for i = 1, #c.inputs do xs[i] = tr(make(c.inputs[i], c.shapes[i], c.dtype)) end
    local r = vl[op](xs, c.dim)
    assert.are.equal(c.dtype, r.dtype)
    return r
  elseif op == "sort" then
    return x:sort(c.dim, { descending = c.descending })
  elseif op == "topk" then
    return x:topk(c.k, c.dim, { largest = c.largest })
  elseif op == "gather" then
    return x:gather(c.dim, tr(make(c.index, c.ishape, "int64")))
  elseif op == "scatter" then
    local idx, src = tr(make(c.index, c.ishape, "int64")), tr(make(c.src, c.sshape))
    local r = x:scatter(c.dim, idx, src)
    local y = x:clone()
    assert.are.equal(y, y:scatter_(c.dim, idx, src))
    check_values(y, c.expected, nil, "scatter_")
    return r
  elseif op == "scatter_add_" then
    local y = x:clone()
    assert.are.equal(y, y:scatter_add_(c.dim, tr(make(c.index, c.ishape, "int64")), tr(make(c.src, c.sshape))))
    return y
  elseif op == "index_select" then
    return x:index_select(c.dim, tr(make(c.index, c.ishape, "int64")))
  elseif op == "masked_select" then
    return x:masked_select(tr(make(c.mask, c.mshape, "bool")))
  elseif op == "nonzero" then
    return x:nonzero()
  elseif op == "flip" then
    return x:flip(c.dims)
  elseif op == "roll" then
    return x:roll(c.shifts, c.dims)
  elseif op == "repeat" then
    local a = x["repeat"](x, table.unpack(c.repeats))
    check_values(x:repeats(c.repeats), c.expected, nil, "repeats alias")
    return a
  elseif op == "tril" or op == "triu" then
    return x[op](x, c.k)
  end
  error("unknown fixture op " .. op)
end

describe("index ops against NumPy", function()
  for _, name in ipairs(sorted_names()) do
    local c = F[name]
    for _, nc in ipairs({ false, true }) do
      it(name .. (nc and " (non-contiguous)" or ""), function()
        local r, ix = run_case(c, nc)
        same_shape(r, c.eshape)
        check_values(r, c.expected, c.op == "scatter_add_" and 1e-12 or nil)
        if c.indices then
          assert.are.equal("int64", ix.dtype)
          check_values(ix, c.indices, nil, "indices")
        end
        if c.op == "nonzero" then assert.are.equal("int64", r.dtype) end
      end)
    end
  end
end)

describe("split and chunk", function()
  it("split pieces are views of the input", function()
    local x = vl.arange(1, 11, { dtype = "float32" })
    local ps = x:split(4)
    assert.are.equal(3, #ps)
    assert.is_true(ps[1]:shares_storage(x))
    same_shape(ps[3], { 2 })
    check_values(ps[2], { 5, 6, 7, 8 })
    ps[2]:fill_(0)
    check_values(x, { 1, 2, 3, 4, 0, 0, 0, 0, 9, 10 })
  end)
  it("split with a table of sizes along a dim", function()
    local x = vl.arange(0, 12):reshape({ 3, 4 })
    local ps = vl.split(x, { 1, 3 }, 2)
    assert.are.equal(2, #ps)
    assert.is_true(ps[2]:shares_storage(x))
    same_shape(ps[2], { 3, 3 })
    check_values(ps[1], { 0, 4, 8 })
    check_values(ps[2], { 1, 2, 3, 5, 6, 7, 9, 10, 11 })
    check_values(x:split({ 0, 3 }, 1)[2], flat(x))
  end)
  it("chunk uses ceil(n / chunks) sized pieces like torch", function()
    local x = vl.arange(0, 6)
    local cs = x:chunk(4)
    assert.are.equal(3, #cs) -- 2 + 2 + 2
    for i = 1, 3 do same_shape(cs[i], { 2 }) end
    cs = vl.arange(0, 10):chunk(3)
    assert.are.equal(3, #cs)
    same_shape(cs[1], { 4 })
    same_shape(cs[3], { 2 })
    assert.is_true(cs[3]:shares_storage(cs[1]))
    local m = vl.zeros(2, 5):chunk(2, -1)
    same_shape(m[1], { 2, 3 })
    same_shape(m[2], { 2, 2 })
  end)
  it("splits a transposed tensor into views", function()
    local x = vl.arange(0, 6):reshape({ 2, 3 }):t()
    local ps = x:split(2, 1)
    assert.is_true(ps[1]:shares_storage(x))
    check_values(ps[1], { 0, 3, 1, 4 })
    check_values(ps[2], { 2, 5 })
  end)
end)

describe("dtypes and exactness", function()
  it("cat promotes dtypes", function()
    local a = vl.tensor({ 1, 2 }, { dtype = "int32" })
    local b = vl.tensor({ 0.5 }, { dtype = "float32" })
    local r = vl.cat({ a, b })
    assert.are.equal("float32", r.dtype)
    check_values(r, { 1, 2, 0.5 })
    r = vl.cat({ vl.tensor({ true }), vl.tensor({ 7 }, { dtype = "uint8" }) })
    assert.are.equal("uint8", r.dtype)
    check_values(r, { 1, 7 })
    r = vl.cat({ vl.tensor({ 1 }, { dtype = "float16" }), vl.tensor({ 2 }, { dtype = "bfloat16" }) })
    assert.are.equal("float32", r.dtype)
  end)
  it("cat skips 1-D empty tensors, as torch", function()
    local a = vl.ones(2, 3)
    local r = vl.cat({ vl.tensor({}), a, vl.empty(0) }, 1)
    same_shape(r, { 2, 3 })
    r = vl.cat({ vl.empty(0), vl.empty(0) })
    same_shape(r, { 0 })
  end)
  it("cat and stack accept tensors as arguments", function()
    local a, b = vl.tensor({ 1, 2 }), vl.tensor({ 3, 4 })
    check_values(vl.cat(a, b), { 1, 2, 3, 4 })
    local s = vl.stack(a, b, 2)
    same_shape(s, { 2, 2 })
    check_values(s, { 1, 3, 2, 4 })
    same_shape(vl.stack({ a, b }), { 2, 2 })
    same_shape(vl.stack({ a, b }, -1), { 2, 2 })
  end)
  it("int64 beyond 2^53 moves and sorts exactly", function()
    local big = (1 << 60)
    local x = vl.tensor({ big + 3, big + 1, big + 2 })
    local v, i = x:sort()
    assert.are.same({ big + 1, big + 2, big + 3 }, v:totable())
    assert.are.same({ 2, 3, 1 }, i:totable())
    local g = x:gather(1, vl.tensor({ 3, 3, 1 }))
    assert.are.same({ big + 2, big + 2, big + 3 }, g:totable())
    assert.are.same({ big + 1, big + 3 }, vl.cat({ x:narrow(1, 2, 1), x:narrow(1, 1, 1) }):totable())
    local acc = vl.zeros(2, { dtype = "int64" }):scatter_add_(1, vl.tensor({ 1, 1 }), vl.tensor({ big, 1 }))
    assert.are.same({ big + 1, 0 }, acc:totable())
  end)
  it("a table of integers works as a 1-D index", function()
    local x = vl.tensor({ { 1, 2 }, { 3, 4 }, { 5, 6 } })
    assert.are.same({ { 5, 6 }, { 1, 2 }, { 5, 6 } }, x:index_select(1, { 3, 1, 3 }):totable())
    assert.are.same({ 30, 10 }, vl.tensor({ 10, 20, 30 }):gather(1, { 3, 1 }):totable())
  end)
  it("int32 index tensors are accepted", function()
    local x = vl.tensor({ 10, 20, 30 })
    local ix = vl.tensor({ 3, 1 }, { dtype = "int32" })
    assert.are.same({ 30, 10 }, x:index_select(1, ix):totable())
    assert.are.same({ 30, 10 }, x:gather(1, ix):totable())
  end)
  it("sort handles every dtype, topk treats NaN as largest", function()
    for _, dt in ipairs({ "float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8" }) do
      local v, i = vl.tensor({ 3, 1, 2 }, { dtype = dt }):sort()
      assert.are.equal(dt, v.dtype)
      check_values(v, { 1, 2, 3 })
      check_values(i, { 2, 3, 1 })
    end
    local v, i = vl.tensor({ 1, 0 / 0, 3 }):topk(2)
    check_values(v, { 0 / 0, 3 })
    check_values(i, { 2, 3 })
    v, i = vl.tensor({ 1, 0 / 0, 3 }):topk(2, 1, { largest = false })
    check_values(v, { 1, 3 })
    check_values(i, { 1, 3 })
  end)
  it("sort takes a positional descending flag and a dim", function()
    local x = vl.tensor({ { 3, 1 }, { 2, 4 } })
    local v, i = x:sort(1, true)
    assert.are.same({ { 3, 4 }, { 2, 1 } }, v:totable())
    assert.are.same({ { 1, 2 }, { 2, 1 } }, i:totable())
    v = vl.sort(x, { descending = true })
    assert.are.same({ { 3, 1 }, { 4, 2 } }, v:totable())
  end)
  it("scatter into an int tensor takes a number", function()
    local x = vl.zeros(2, 3, { dtype = "int32" })
    local r = x:scatter(2, vl.tensor({ { 3 }, { 1 } }), 7)
    assert.are.same({ { 0, 0, 7 }, { 7, 0, 0 } }, r:totable())
    assert.are.equal("int32", r.dtype)
    x:scatter_(1, vl.tensor({ { 2, 2, 2 } }), 5)
    assert.are.same({ { 0, 0, 0 }, { 5, 5, 5 } }, x:totable())
  end)
  it("masked_select takes uint8 masks", function()
    local r = vl.tensor({ 1, 2, 3 }):masked_select(vl.tensor({ 1, 0, 1 }, { dtype = "uint8" }))
    assert.are.same({ 1, 3 }, r:totable())
  end)
end)

describe("expanded inputs (stride 0)", function()
  local x = vl.tensor({ 3, 1, 2 }):expand(2, 3)
  it("gather, sort, flip, repeat and cat read through stride 0", function()
    assert.are.same({ { 2, 3 }, { 1, 1 } }, x:gather(2, vl.tensor({ { 3, 1 }, { 2, 2 } })):totable())
    local v, i = x:sort(2)
    assert.are.same({ { 1, 2, 3 }, { 1, 2, 3 } }, v:totable())
    assert.are.same({ { 2, 3, 1 }, { 2, 3, 1 } }, i:totable())
    assert.are.same({ { 2, 1, 3 }, { 2, 1, 3 } }, x:flip(2):totable())
    assert.are.same({ { 3, 1, 2, 3, 1, 2 }, { 3, 1, 2, 3, 1, 2 } }, x:repeats(1, 2):totable())
    same_shape(vl.cat({ x, x }, 1), { 4, 3 })
    assert.are.same({ { 0, 1, 2 }, { 0, 0, 2 } }, x:triu(1):totable())
    assert.are.same({ { 3, 1, 2 }, { 0, 1, 2 } }, x:triu(0):totable())
  end)
end)

describe("empty and 0-d tensors", function()
  it("sort, topk and gather of empty tensors", function()
    local e = vl.zeros(0, 3)
    local v, i = e:sort(2)
    same_shape(v, { 0, 3 })
    same_shape(i, { 0, 3 })
    v, i = vl.zeros(2, 3):topk(0)
    same_shape(v, { 2, 0 })
    same_shape(e:gather(1, vl.zeros(0, 3, { dtype = "int64" })), { 0, 3 })
    same_shape(vl.zeros(2, 3):index_select(1, vl.empty(0, { dtype = "int64" })), { 0, 3 })
  end)
  it("nonzero, masked_select and repeat with no elements", function()
    same_shape(vl.zeros(2, 3):nonzero(), { 0, 2 })
    same_shape(vl.ones(2, 3):masked_select(vl.zeros(2, 3, { dtype = "bool" })), { 0 })
    same_shape(vl.ones(2, 3)["repeat"](vl.ones(2, 3), 0, 2), { 0, 6 })
    same_shape(vl.zeros(0, 3):flip(1), { 0, 3 })
    same_shape(vl.zeros(0, 3):roll(2), { 0, 3 })
    same_shape(vl.zeros(0, 3):tril(), { 0, 3 })
    local cs = vl.zeros(0, 3):chunk(2)
    assert.are.equal(2, #cs)
    same_shape(vl.cat({ vl.zeros(0, 3), vl.zeros(0, 3) }), { 0, 3 })
  end)
  it("0-d tensors", function()
    local s = vl.tensor(5.0)
    local v, i = s:sort()
    assert.are.equal(0, v:dim())
    assert.are.equal(5, v:item())
    assert.are.equal(1, i:item())
    assert.are.equal(5, s:flip(1):item())
    assert.are.equal(5, s:roll(3):item())
    same_shape(s["repeat"](s, 2, 2), { 2, 2 })
    same_shape(s:nonzero(), { 1, 0 })
    assert.are.equal(5, s:gather(1, vl.tensor(1)):item())
    same_shape(vl.stack({ s, s }), { 2 })
  end)
end)

describe("bad input", function()
  local x = vl.arange(0, 6, { dtype = "float32" }):reshape({ 2, 3 })
  local function raises(pattern, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
  end
  it("cat: shape mismatch names both shapes and the dim", function()
    raises("cat: tensor 2 has shape %[3,3%] but tensor 1 has %[2,3%]; sizes must match except in cat dim 2 %(dim 1: 3 ~= 2%)",
      vl.cat, { x, vl.zeros(3, 3) }, 2)
    raises("cat: tensor 2 has shape %[3%] but tensor 1 has %[2,3%]", vl.cat, { x, vl.zeros(3) })
    raises("cat: element 2 of the table is a number, expected a tensor", vl.cat, { x, 5 })
    raises("cat: tensor 1 is 0%-d", vl.cat, { vl.tensor(1), vl.tensor(2) })
    raises("cat: dim 3 out of range", vl.cat, { x, x }, 3)
  end)
  it("stack: unequal shapes", function()
    raises("stack: tensor 2 has shape %[3,2%] but tensor 1 has %[2,3%]", vl.stack, { x, x:t() })
  end)
  it("gather: index out of range shows the 1-based value", function()
    raises("gather: index 4 out of range for a dim of size 3 %(expected 1..3", x.gather, x, 2,
      vl.tensor({ { 1, 4 }, { 1, 1 } }))
    raises("gather: index 0 out of range", x.gather, x, 2, vl.tensor({ { 0, 1 }, { 1, 1 } }))
    raises("gather: index must be an int64 or int32 tensor, got float32", x.gather, x, 2, vl.zeros(2, 2))
    raises("gather: index shape %[2,4%] is larger than input shape %[2,3%]", x.gather, x, 1,
      vl.ones(2, 4, { dtype = "int64" }))
    raises("gather: index shape %[2%] and input shape %[2,3%] must have the same number of dims", x.gather, x, 2,
      vl.tensor({ 1, 1 }))
  end)
  it("scatter: bad index leaves the destination untouched", function()
    local y = vl.zeros(2, 3)
    raises("scatter_: index %-1 out of range", y.scatter_, y, 2, vl.tensor({ { 1, -1 } }), 1)
    assert.are.same({ { 0, 0, 0 }, { 0, 0, 0 } }, y:totable())
    raises("scatter_add_: index 3 out of range for a dim of size 2", y.scatter_add_, y, 1,
      vl.tensor({ { 1, 3 } }), vl.ones(1, 2))
    raises("scatter: index shape %[1,3%] is larger than src shape %[1,2%]", y.scatter, y, 1,
      vl.tensor({ { 1, 1, 1 } }), vl.ones(1, 2))
    local e = vl.zeros(1):expand(3)
    raises("scatter_: the destination is an expanded view", e.scatter_, e, 1, vl.tensor({ 1 }), 2)
  end)
  it("index_select: range, dtype and rank", function()
    raises("index_select: index 3 out of range for a dim of size 2", x.index_select, x, 1, vl.tensor({ 1, 3 }))
    raises("index_select: index must be an int64 or int32 tensor, got bool", x.index_select, x, 1,
      vl.tensor({ true }))
    raises("index_select: index 4 out of range for a dim of size 3", x.index_select, x, 2, { 1, 4 })
    raises("index_select: index table entry 2 must be an integer, got string", x.index_select, x, 2, { 1, "a" })
    raises("index_select: index must be 0%-d or 1%-d", x.index_select, x, 1, vl.ones(1, 1, { dtype = "int64" }))
  end)
  it("masked_select: mask shape and dtype", function()
    raises("masked_select: shapes %[2,3%] and %[4%] cannot be broadcast", x.masked_select, x,
      vl.ones(4, { dtype = "bool" }))
    raises("masked_select: mask must be bool or uint8, got float32", x.masked_select, x, vl.ones(2, 3))
    raises("masked_select: mask must be a bool tensor, got no value", x.masked_select, x)
  end)
  it("topk and sort arguments", function()
    raises("topk: k %(4%) out of range for dim 2 of size 3", x.topk, x, 4)
    raises("topk: k %(%-1%)", x.topk, x, -1)
    raises("topk: k must be an integer", x.topk, x, "two")
    raises("sort: dim 3 out of range", x.sort, x, 3)
  end)
  it("split and chunk arguments", function()
    raises("split: sizes add up to 2 but dim 2 has size 3", x.split, x, { 1, 1 }, 2)
    raises("split: split size must be positive %(got 0%)", x.split, x, 0)
    raises("split: size 2 is negative", x.split, x, { 1, -1 }, 2)
    raises("chunk: number of chunks must be positive %(got 0%)", x.chunk, x, 0)
    raises("split: cannot split a 0%-d tensor", vl.split, vl.tensor(1), 1)
  end)
  it("flip, roll, repeat, tril", function()
    raises("flip: dim 2 appears twice", x.flip, x, { 2, 2 })
    raises("flip: dims expected", x.flip, x)
    raises("roll: 2 shifts but 1 dims", x.roll, x, { 1, 2 }, 1)
    raises("roll: 2 shifts given without dims", x.roll, x, { 1, 2 })
    raises("repeat: 1 repeat counts given for a 2%-d tensor", x.repeats, x, 2)
    raises("repeat: repeat count 2 is negative", x["repeat"], x, 1, -2)
    raises("tril: expected a tensor with at least 2 dims, got shape %[3%]", vl.tril, vl.zeros(3))
    raises("triu: expected a tensor with at least 2 dims", vl.triu, vl.tensor(1))
  end)
end)
