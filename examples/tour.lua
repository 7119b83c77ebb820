-- A short tour of vlua tensors: run with `make run` or `build/vlua examples/tour.lua`.
local vl = require "vl"

local function section(title) print(("\n== %s"):format(title)) end

section("creation")
local x = vl.tensor { { 1, 2, 3 }, { 4, 5, 6 } }
print(x)
print("shape", table.concat(x:size(), "x"), "dtype", x.dtype)
print(vl.arange(0, 1, 0.25))
vl.manual_seed(42)
print(vl.randn(2, 3))

section("views share memory (no copies)")
local t = x:t()
print(t, "contiguous?", t:is_contiguous(), "shares storage?", t:shares_storage(x))
print("x[{2, {2, 3}}] =", x[{ 2, { 2, 3 } }])
x[{ {}, 1 }] = 0 -- writes through to x
print(x)

section("math with broadcasting")
local a = vl.arange(3):float():view(3, 1)
local b = vl.tensor { 10.0, 20.0 }
print(a + b)
print("exp", vl.exp(vl.tensor { 0.0, 1.0 }))
print("softmax rows", vl.softmax(vl.tensor { { 1.0, 2.0, 3.0 }, { 1.0, 1.0, 1.0 } }, 2))

section("reductions")
local m = vl.arange(12):float():view(3, 4)
print("sum", m:sum(), "mean over dim 1", m:mean(1))
local values, indices = m:max(2)
print("row max", values, "at (1-based)", indices)

section("matmul through OpenBLAS")
local A = vl.randn(256, 128)
local B = vl.randn(128, 64)
local t0 = os.clock()
local C = A:matmul(B)
print(("[256x128] @ [128x64] -> %s in %.2f ms"):format(table.concat(C:size(), "x"), (os.clock() - t0) * 1e3))
print("A^T A is symmetric:", ((A:t():matmul(A)) - (A:t():matmul(A)):t()):abs():max():item() == 0)

section("joining, sorting")
print(vl.cat({ vl.ones(2), vl.zeros(3) }, 1))
local s, order = vl.tensor { 3.0, 1.0, 2.0 }:sort(1)
print("sorted", s, "order", order)

section("autograd")
local w = vl.zeros(3, 1):requires_grad(true)
local X = vl.randn(64, 3)
local y = X:matmul(vl.tensor { { 2.0 }, { -1.0 }, { 0.5 } })
for step = 1, 100 do
  local loss = ((X:matmul(w) - y) ^ 2):mean()
  w.grad = nil
  loss:backward()
  vl.no_grad(function() w:sub_(w.grad * 0.1) end)
  if step % 50 == 0 then print(("step %d  loss %.6f"):format(step, loss:item())) end
end
print("w (should be near 2, -1, 0.5):", w:detach():view(3))

section("errors are Lua errors, never crashes")
print(pcall(vl.matmul, vl.ones(2, 3), vl.ones(4, 5)))
print(pcall(function() return x:view(4) end))
print("\nhelp(vl.matmul):")
if help then help(vl.matmul) end
