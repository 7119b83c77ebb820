local vl = require "vl"

-- Expected strings come from PyTorch's own repr() (python3-torch 1.13),
-- written by scripts/fixtures/format.py with "torch." removed from dtypes.
local cases = dofile("tests/fixtures/format.lua")

local function build(c)
  local values = c.input
  if c.arange then
    values = {}
    local g = c.arange
    for i = 0, g.n - 1 do values[i + 1] = g.offset + i * g.scale end
  end
  local x
  if #c.shape == 0 then
    x = vl.tensor(values[1], { dtype = c.dtype })
  else
    x = vl.tensor(values, { dtype = c.dtype }):reshape(c.shape)
  end
  for _, op in ipairs(c.view) do
    local name = op[1]
    if name == "transpose" then
      x = x:transpose(op[2], op[3])
    elseif name == "narrow" then
      x = x:narrow(op[2], op[3], op[4])
    elseif name == "expand" then
      x = x:expand(op[2])
    elseif name == "select" then
      x = x:select(op[2], op[3])
    else
      error("unknown view " .. name)
    end
  end
  return x
end

describe("tostring matches PyTorch's repr", function()
  for _, c in ipairs(cases) do
    it(c.name, function()
      local x = build(c)
      assert.are.equal(c.dtype, x.dtype)
      assert.are.equal(c.expected, tostring(x))
    end)
  end
end)

describe("tostring", function()
  it("prints views without copying them first", function()
    local x = vl.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, { dtype = "float32" })
    local t = x:t()
    assert.is_false(t:is_contiguous())
    assert.are.equal("tensor([[1., 4.],\n        [2., 5.],\n        [3., 6.]])", tostring(t))
    -- an offset view into a larger storage
    assert.are.equal("tensor([5., 6.])", tostring(x:select(1, 2):narrow(1, 2, 2)))
  end)

  it("prints random tensors after seeding the same way", function()
    vl.manual_seed(0)
    local a = tostring(vl.rand(3, 3))
    vl.manual_seed(0)
    assert.are.equal(a, tostring(vl.rand(3, 3)))
    assert.matches("^tensor%(%[%[0%.%d%d%d%d, ", a)
  end)

  it("summarises past 1000 elements only", function()
    local small = tostring(vl.zeros(1000, { dtype = "int64" }))
    assert.is_nil(small:find("...", 1, true))
    local big = tostring(vl.zeros(1001, { dtype = "int64" }))
    assert.are.equal("tensor([0, 0, 0,  ..., 0, 0, 0])", big)
  end)

  it("works through print and string concatenation helpers", function()
    local x = vl.tensor({ 1.5, -2 })
    assert.are.equal("x = tensor([ 1.5000, -2.0000])", "x = " .. tostring(x))
    assert.are.equal("tensor(True)", tostring(vl.tensor(true)))
  end)
end)
