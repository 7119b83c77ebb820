-- Bad input from Lua never crashes: every call below must raise a Lua
-- error whose message names the op and the fault. One place that tries
-- the whole surface; each area's spec has its own, longer list too.
local vl = require "vl"

local a = vl.ones(2, 3)
local cases = {
  -- shapes
  { "matmul: shapes %[2,3%] and %[4,5%] cannot be multiplied %(3 ~= 4%)", function() return vl.matmul(vl.ones(2, 3), vl.ones(4, 5)) end },
  { "add: shapes %[2,3%] and %[4%] cannot be broadcast", function() return a + vl.ones(4) end },
  { "mul: shapes", function() return a * vl.ones(3, 2) end },
  { "add_: in%-place result would have shape %[4,2,3%]", function() return a:add_(vl.ones(4, 2, 3)) end },
  { "bmm: expected 3%-D tensors", function() return vl.bmm(a, a) end },
  { "dot: shapes %[3%] and %[4%]", function() return vl.dot(vl.ones(3), vl.ones(4)) end },
  { "outer: expected 1%-D tensors", function() return vl.outer(a, a) end },
  { "addmm: c of shape %[5%] does not broadcast", function() return vl.addmm(vl.ones(5), a, a:t()) end },
  { "cat: tensor 2 has shape %[3,2%]", function() return vl.cat({ a, vl.ones(3, 2) }, 1) end },
  { "stack: tensor 2 has shape %[3%]", function() return vl.stack({ a, vl.ones(3) }) end },
  { "masked_select: shapes %[2,3%] and %[4%]", function() return vl.masked_select(a, vl.ones(4):bool()) end },
  { "view: shape %[4%] is invalid for a tensor of 6 elements", function() return a:view(4) end },
  { "view: .*would need a copy", function() return a:t():view(6) end },
  { "expand: cannot expand shape %[2,3%] to %[4,4%]", function() return a:expand(4, 4) end },
  { "repeat: 1 repeat counts given for a 2%-d tensor", function() return a["repeat"](a, 1) end },
  -- dims and indices (1-based, negatives from the end)
  { "sum: dim 3 out of range for a 2%-d tensor", function() return a:sum(3) end },
  { "dims are 1%-based", function() return a:transpose(0, 1) end },
  { "softmax: dim is required", function() return vl.softmax(a) end },
  { "max: dim 5 out of range", function() return a:max(5) end },
  { "sort: dim 3 out of range", function() return a:sort(3) end },
  { "cumsum: dim 4 out of range", function() return a:cumsum(4) end },
  { "flip: dim 4 out of range", function() return a:flip(4) end },
  { "select: index 3 out of range for dim 1 of size 2", function() return a:select(1, 3) end },
  { "index: index %-3 out of range for dim 1 of size 2", function() return a[-3] end },
  { "gather: index 5 out of range for a dim of size 2 %(expected 1..2; indices are 1%-based%)", function() return a:gather(1, vl.tensor { { 5 } }) end },
  { "index_select: index 0 out of range", function() return a:index_select(1, vl.tensor { 0 }) end },
  { "scatter: index 3 out of range", function() return a:scatter(1, vl.tensor { { 1, 2, 3 } }, vl.ones(1, 3)) end },
  { "topk: k %(5%) out of range for dim 2 of size 3", function() return a:topk(5, 2) end },
  { "narrow: length 4", function() return a:narrow(2, 1, 4) end },
  -- dtypes
  { "where: cond must be bool or uint8, got float32", function() return vl.where(vl.ones(2), a, a) end },
  { "masked_fill: mask must be bool or uint8, got float32", function() return a:masked_fill(vl.ones(2, 3), 1) end },
  { "unknown dtype 'float128'", function() return a:to("float128") end },
  { "remainder: integer division by zero", function() return vl.remainder(vl.tensor { 1 }, vl.tensor { 0 }) end },
  { "gather: .*int64", function() return a:gather(1, vl.ones(1, 1)) end },
  -- values and sizes
  { "negative size %-1", function() return vl.rand(-1) end },
  { "randint: high %(2%) must be greater than low %(5%)", function() return vl.randint(5, 2, { 3 }) end },
  { "randperm: n must be non%-negative", function() return vl.randperm(-1) end },
  { "overflows", function() return vl.zeros(1 << 40, 1 << 40, 1 << 40) end },
  { "out of memory", function() return vl.empty(1 << 50, { dtype = "float64" }) end },
  { "chunk: number of chunks must be positive", function() return a:chunk(0, 1) end },
  { "split: split size must be positive", function() return a:split(0, 1) end },
  { "norm: p must be a number", function() return a:norm({ p = "x" }) end },
  { "arange: .*non%-zero step", function() return vl.arange(0, 1, 0) end },
  { "arange: .*finite", function() return vl.arange(0, 0 / 0) end },
  { "item: tensor of shape %[2,3%] has 6 elements", function() return a:item() end },
  -- wrong argument types
  { "tensor expected, got string", function() return vl.exp("x") end },
  { "pow: argument 2 must be a tensor or a number, got string", function() return vl.pow(a, "x") end },
  { "clamp: min must be a number or nil", function() return a:clamp("a") end },
  { "sizes must be integers", function() return vl.zeros(2.5) end },
  { "ragged", function() return vl.tensor { { 1, 2 }, { 3 } } end },
  { "option 'keepdim' must be a boolean", function() return a:sum(1, { keepdim = "yes" }) end },
}

describe("bad input raises clear errors", function()
  it("tries at least 40 calls", function()
    assert.is_true(#cases >= 40)
  end)
  for i, c in ipairs(cases) do
    it(("%d: %s"):format(i, c[1]), function()
      local ok, msg = pcall(c[2])
      assert.is_false(ok, "no error raised")
      assert.matches(c[1], tostring(msg))
    end)
  end
  it("leaves the interpreter usable", function()
    assert.are.equal(6, a:sum():item())
  end)
end)
