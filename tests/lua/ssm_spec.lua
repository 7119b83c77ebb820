-- ssm_spec.lua — state-space ops: vl.selective_scan (fused forward and
-- backward), vl.selective_scan_step, vl.causal_conv1d and its step form.
-- References: PyTorch 1.13 float64 outputs and gradients of a transcription
-- of Mamba's selective_scan_ref and of F.pad + F.conv1d(groups = dim), in
-- tests/fixtures/ssm.lua (made by scripts/fixtures/ssm.py); central
-- differences through vl.gradcheck (float64); vl.conv1d with groups; the
-- full scan against the step form.
local vl = require "vl"

local fixtures = dofile("tests/fixtures/ssm.lua")
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
local function R(...) return vl.randn({ ... }, F64) end

-- The inputs of a fixture scan case as tensors of dtype dt requiring grad.
local function scan_inputs(c, dt)
  local function mk(v, shape) return T(v, shape, dt):requires_grad(true) end
  local t = {
    u = mk(c.u, c.u_shape), delta = mk(c.delta, c.u_shape), A = mk(c.A, c.A_shape),
    B = mk(c.B, c.B_shape), C = mk(c.C, c.C_shape),
  }
  if c.D then t.D = mk(c.D, { c.u_shape[2] }) end
  if c.z then t.z = mk(c.z, c.u_shape) end
  if c.delta_bias then t.delta_bias = mk(c.delta_bias, { c.u_shape[2] }) end
  return t
end

local function scan_opts(c, t, extra)
  local o = { D = t.D, z = t.z, delta_bias = t.delta_bias, delta_softplus = c.opts.delta_softplus }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("vl.selective_scan", function()
  for _, dt in ipairs({ "float64", "float32" }) do
    local tol = dt == "float64" and 1e-10 or 1e-4
    for _, c in ipairs(fixtures.scan) do
      it(c.name .. " matches selective_scan_ref (outputs, last state, all gradients, " .. dt .. ")", function()
        local t = scan_inputs(c, dt)
        local y, last = vl.selective_scan(t.u, t.delta, t.A, t.B, t.C, scan_opts(c, t, { return_last_state = true }))
        assert.are.equal(dt, y.dtype)
        assert_close(y, c.y, tol, "y")
        assert_close(last, c.last_state, tol, "last_state")
        assert.are.same({ c.u_shape[1], c.u_shape[2], c.A_shape[2] }, last:size())
        vl.sum(y * T(c.gy, c.u_shape, dt)):backward()
        assert_close(t.u.grad, c.gu, tol, "grad u")
        assert_close(t.delta.grad, c.gdelta, tol, "grad delta")
        assert_close(t.A.grad, c.gA, tol, "grad A")
        assert_close(t.B.grad, c.gB, tol, "grad B")
        assert_close(t.C.grad, c.gC, tol, "grad C")
        assert.are.same(c.B_shape, t.B.grad:size())
        if c.D then assert_close(t.D.grad, c.gD, tol, "grad D") end
        if c.z then assert_close(t.z.grad, c.gz, tol, "grad z") end
        if c.delta_bias then assert_close(t.delta_bias.grad, c.gdelta_bias, tol, "grad delta_bias") end
      end)
    end
  end

  local function check_all(Bshape, Cshape, o)
    vl.manual_seed(7)
    local b, d, L, n = 2, 4, 6, 3
    local u, delta = R(b, d, L), vl.rand({ b, d, L }, F64) * 0.8 + 0.1
    local A = -(vl.rand({ d, n }, F64) + 0.5)
    local B, C = R(table.unpack(Bshape)), R(table.unpack(Cshape))
    local ins = { u, delta, A, B, C }
    local D, z, bias
    if o.D then D = R(d); ins[#ins + 1] = D end
    if o.z then z = R(b, d, L); ins[#ins + 1] = z end
    if o.bias then bias = R(d) * 0.3; ins[#ins + 1] = bias end
    for _, x in ipairs(ins) do x:requires_grad(true) end
    gradcheck(function(u_, dl_, A_, B_, C_, ...)
      local rest, k = { ... }, 1
      local opts = { delta_softplus = o.softplus }
      if D then opts.D = rest[k]; k = k + 1 end
      if z then opts.z = rest[k]; k = k + 1 end
      if bias then opts.delta_bias = rest[k] end
      return vl.selective_scan(u_, dl_, A_, B_, C_, opts)
    end, ins)
  end

  it("passes gradcheck with fixed B/C, D and z (float64)", function()
    check_all({ 4, 3 }, { 4, 3 }, { D = true, z = true })
  end)
  it("passes gradcheck with input-dependent B/C, delta_bias and softplus (float64)", function()
    check_all({ 2, 3, 6 }, { 2, 3, 6 }, { D = true, z = true, bias = true, softplus = true })
  end)
  it("passes gradcheck with grouped B/C (float64)", function()
    check_all({ 2, 2, 3, 6 }, { 2, 2, 3, 6 }, { D = true, bias = true, softplus = true })
  end)
  it("passes gradcheck with mixed fixed B and input-dependent C (float64)", function()
    check_all({ 4, 3 }, { 2, 3, 6 }, { bias = true })
  end)

  it("passes gradcheck across chunk boundaries (length 140)", function()
    vl.manual_seed(11)
    local u, delta = R(1, 1, 140):requires_grad(true), (vl.rand({ 1, 1, 140 }, F64) * 0.5):requires_grad(true)
    local A = T({ -0.3, -1.1 }, { 1, 2 }):requires_grad(true)
    local B, C = R(1, 2, 140):requires_grad(true), R(1, 2, 140):requires_grad(true)
    gradcheck(function(a, b, c, d, e) return vl.selective_scan(a, b, c, d, e) end, { u, delta, A, B, C })
  end)

  it("float32 state sizes 4, 8 and 16 (compiled as constants) agree with float64 (outputs and gradients)", function()
    for _, N in ipairs({ 4, 8, 16, 6 }) do
      vl.manual_seed(40 + N)
      local Bt, Dm, L = 2, 5, 150
      local base = {
        u = vl.randn({ Bt, Dm, L }, { dtype = "float64" }), delta = vl.rand({ Bt, Dm, L }, { dtype = "float64" }) * 0.5,
        A = -vl.rand({ Dm, N }, { dtype = "float64" }) - 0.2, B = vl.randn({ Bt, N, L }, { dtype = "float64" }),
        C = vl.randn({ Bt, N, L }, { dtype = "float64" }), D = vl.randn({ Dm }, { dtype = "float64" }),
        z = vl.randn({ Bt, Dm, L }, { dtype = "float64" }), gy = vl.randn({ Bt, Dm, L }, { dtype = "float64" }),
      }
      local function run(dt)
        local t = {}
        for _, k in ipairs({ "u", "delta", "A", "B", "C", "D", "z" }) do
          t[k] = base[k]:to(dt):detach():clone():requires_grad(true)
        end
        local y = vl.selective_scan(t.u, t.delta, t.A, t.B, t.C, { D = t.D, z = t.z, delta_softplus = true })
        vl.sum(y * base.gy:to(dt)):backward()
        return y, t
      end
      local y64, g64 = run("float64")
      local y32, g32 = run("float32")
      local function close(a, b, what)
        local err = (a:double() - b):abs():max():item()
        local scale = b:abs():max():item() + 1
        assert(err <= 1e-4 * scale, string.format("N=%d %s: max error %g (scale %g)", N, what, err, scale))
      end
      close(y32, y64, "y")
      for _, k in ipairs({ "u", "delta", "A", "B", "C", "D", "z" }) do close(g32[k].grad, g64[k].grad, "grad " .. k) end
    end
  end)

  it("does not depend on the thread count, forward or backward", function()
    vl.manual_seed(3)
    local u, delta = vl.randn({ 2, 8, 300 }), vl.rand({ 2, 8, 300 })
    local A, B, C = -vl.rand({ 8, 16 }) - 0.1, vl.randn({ 2, 2, 16, 300 }), vl.randn({ 2, 2, 16, 300 })
    local threads = vl.get_num_threads()
    local res = {}
    for _, nt in ipairs({ 1, 2 }) do
      vl.set_num_threads(nt)
      local ins = { u:clone():requires_grad(true), delta:clone():requires_grad(true), A:clone():requires_grad(true),
        B:clone():requires_grad(true), C:clone():requires_grad(true) }
      local y = vl.selective_scan(ins[1], ins[2], ins[3], ins[4], ins[5], { delta_softplus = true })
      vl.sum(y * y):backward()
      res[nt] = { y, ins[1].grad, ins[3].grad, ins[4].grad }
    end
    vl.set_num_threads(threads)
    for i = 1, 4 do assert.are.same(flat(res[1][i]), flat(res[2][i])) end
  end)

  it("reads strided and broadcast inputs", function()
    vl.manual_seed(5)
    local u = R(2, 5, 3):transpose(2, 3)    -- [2,3,5] non-contiguous
    local delta = vl.rand({ 2, 3, 5 }, F64)
    local A = -vl.rand({ 3, 2 }, F64)
    local Bv = R(2, 5, 2):transpose(2, 3)   -- [2,2,5]
    local C = R(1, 2):expand({ 3, 2 })      -- fixed, stride 0
    local y = vl.selective_scan(u, delta, A, Bv, C)
    local y2 = vl.selective_scan(u:contiguous(), delta, A, Bv:contiguous(), C:contiguous())
    close_tensors(y, y2, 1e-14, "strided")
  end)

  it("handles empty lengths and batches", function()
    local y, last = vl.selective_scan(vl.zeros({ 2, 3, 0 }), vl.zeros({ 2, 3, 0 }), vl.zeros({ 3, 4 }),
      vl.zeros({ 3, 4 }), vl.zeros({ 3, 4 }), { return_last_state = true })
    assert.are.same({ 2, 3, 0 }, y:size())
    assert.are.same({ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }, flat(last))
    local y0 = vl.selective_scan(vl.zeros({ 0, 3, 4 }), vl.zeros({ 0, 3, 4 }), vl.zeros({ 3, 2 }),
      vl.zeros({ 0, 2, 4 }), vl.zeros({ 3, 2 }))
    assert.are.same({ 0, 3, 4 }, y0:size())
  end)

  it("matches the closed form of a one-state scan", function()
    -- x_t = a x_{t-1} + dt b u_t with constant a = exp(dt A): y_t = c sum_s a^(t-s) dt b u_s
    local L, dt, Av, b, c = 5, 0.5, -0.4, 2.0, 3.0
    local uvals = { 1, -2, 0.5, 3, -1 }
    local u = T(uvals, { 1, 1, L })
    local y = vl.selective_scan(u, vl.full({ 1, 1, L }, dt, F64), T({ Av }, { 1, 1 }), T({ b }, { 1, 1 }),
      T({ c }, { 1, 1 }))
    local a, want, x = math.exp(dt * Av), {}, 0
    for t = 1, L do x = a * x + dt * b * uvals[t]; want[t] = c * x end
    assert_close(y, want, 1e-14, "closed form")
  end)

  it("rejects bad input with clear errors", function()
    local u, dl, A = vl.zeros({ 2, 4, 5 }), vl.zeros({ 2, 4, 5 }), vl.zeros({ 4, 3 })
    local Bf = vl.zeros({ 4, 3 })
    has_error("u must be 3-d", vl.selective_scan, vl.zeros({ 4, 5 }), dl, A, Bf, Bf)
    has_error("delta has shape [2,4,6]", vl.selective_scan, u, vl.zeros({ 2, 4, 6 }), A, Bf, Bf)
    has_error("A has shape [5,3], expected [4, state]", vl.selective_scan, u, dl, vl.zeros({ 5, 3 }), Bf, Bf)
    has_error("B has shape [4,2], expected [4,3]", vl.selective_scan, u, dl, A, vl.zeros({ 4, 2 }), Bf)
    has_error("C has shape [2,3,4]", vl.selective_scan, u, dl, A, Bf, vl.zeros({ 2, 3, 4 }))
    has_error("B has 3 groups", vl.selective_scan, u, dl, A, vl.zeros({ 2, 3, 3, 5 }), Bf)
    has_error("B has 2 groups and C has 4", vl.selective_scan, u, dl, A, vl.zeros({ 2, 2, 3, 5 }),
      vl.zeros({ 2, 4, 3, 5 }))
    has_error("D of shape [3] must be [4]", vl.selective_scan, u, dl, A, Bf, Bf, { D = vl.zeros({ 3 }) })
    has_error("delta_bias of shape [4,1] must be [4]", vl.selective_scan, u, dl, A, Bf, Bf,
      { delta_bias = vl.zeros({ 4, 1 }) })
    has_error("z has shape [2,4]", vl.selective_scan, u, dl, A, Bf, Bf, { z = vl.zeros({ 2, 4 }) })
    has_error("u must be a floating-point tensor, got int64", vl.selective_scan, vl.zeros({ 2, 4, 5 },
      { dtype = "int64" }), dl, A, Bf, Bf)
    has_error("unknown option 'Dee'", vl.selective_scan, u, dl, A, Bf, Bf, { Dee = 1 })
    has_error("option 'z' must be a tensor", vl.selective_scan, u, dl, A, Bf, Bf, { z = 3 })
  end)
end)

describe("vl.selective_scan_step", function()
  local function step_vs_full(dt, tol, Bform)
    vl.manual_seed(21)
    local b, d, n, L = 2, 4, 16, 1000
    local opt = { dtype = dt }
    local u, delta = vl.randn({ b, d, L }, opt), vl.randn({ b, d, L }, opt) * 0.5
    local z, D, bias = vl.randn({ b, d, L }, opt), vl.randn({ d }, opt), vl.randn({ d }, opt) * 0.3
    local A = -(vl.rand({ d, n }, opt) + 0.05)
    local B, C
    if Bform == "var" then
      B, C = vl.randn({ b, n, L }, opt), vl.randn({ b, n, L }, opt)
    elseif Bform == "grouped" then
      B, C = vl.randn({ b, 2, n, L }, opt), vl.randn({ b, 2, n, L }, opt)
    else
      B, C = vl.randn({ d, n }, opt), vl.randn({ d, n }, opt)
    end
    local y, last = vl.selective_scan(u, delta, A, B, C,
      { D = D, z = z, delta_bias = bias, delta_softplus = true, return_last_state = true })
    local state = vl.zeros({ b, d, n }, opt)
    local ys = {}
    for t = 1, L do
      local Bt, Ct = B, C
      if Bform == "var" then Bt, Ct = B:select(3, t), C:select(3, t)
      elseif Bform == "grouped" then Bt, Ct = B:select(4, t), C:select(4, t) end
      local yt
      state, yt = vl.selective_scan_step(state, u:select(3, t), delta:select(3, t), A, Bt, Ct,
        { D = D, z = z:select(3, t), delta_bias = bias, delta_softplus = true })
      ys[t] = yt
    end
    local ystep = vl.stack(ys, 3)
    local diff = vl.max(vl.abs(ystep - y)):item()
    assert(diff <= tol, string.format("step vs full: max |diff| %g > %g", diff, tol))
    local sd = vl.max(vl.abs(state - last)):item()
    assert(sd <= tol, string.format("last state: max |diff| %g > %g", sd, tol))
  end

  it("reproduces the full scan over 1000 steps (input-dependent B/C, float32, 1e-5)", function()
    step_vs_full("float32", 1e-5, "var")
  end)
  it("reproduces the full scan over 1000 steps (grouped, float64)", function()
    step_vs_full("float64", 1e-12, "grouped")
  end)
  it("reproduces the full scan over 1000 steps (fixed B/C, float32)", function()
    step_vs_full("float32", 1e-5, "fixed")
  end)

  it("rejects bad input with clear errors", function()
    local s, ut, A = vl.zeros({ 2, 4, 3 }), vl.zeros({ 2, 4 }), vl.zeros({ 4, 3 })
    local Bt = vl.zeros({ 2, 3 })
    has_error("state must be 3-d", vl.selective_scan_step, vl.zeros({ 2, 4 }), ut, ut, A, Bt, Bt)
    has_error("u has shape [2,5]", vl.selective_scan_step, s, vl.zeros({ 2, 5 }), ut, A, Bt, Bt)
    has_error("A has shape [4,2]", vl.selective_scan_step, s, ut, ut, vl.zeros({ 4, 2 }), Bt, Bt)
    has_error("B has shape [2,4]", vl.selective_scan_step, s, ut, ut, A, vl.zeros({ 2, 4 }), Bt)
    has_error("C has shape [2,3,3]", vl.selective_scan_step, s, ut, ut, A, Bt, vl.zeros({ 2, 3, 3 }))
  end)
end)

describe("vl.causal_conv1d", function()
  for _, dt in ipairs({ "float64", "float32" }) do
    local tol = dt == "float64" and 1e-12 or 1e-5
    for _, c in ipairs(fixtures.conv) do
      it(c.name .. " matches F.pad + F.conv1d(groups) (" .. dt .. ")", function()
        local x = T(c.x, c.x_shape, dt):requires_grad(true)
        local w = T(c.weight, c.weight_shape, dt):requires_grad(true)
        local b = c.bias and T(c.bias, { c.x_shape[2] }, dt):requires_grad(true) or nil
        local y = vl.causal_conv1d(x, w, b, { activation = c.activation })
        assert_close(y, c.y, tol, "y")
        vl.sum(y * T(c.gy, c.x_shape, dt)):backward()
        assert_close(x.grad, c.gx, tol, "grad x")
        assert_close(w.grad, c.gweight, tol, "grad weight")
        if b then assert_close(b.grad, c.gbias, tol, "grad bias") end
      end)
    end
  end

  it("matches vl.conv1d with groups = dim and padding width-1, cut to the first len outputs", function()
    vl.manual_seed(9)
    local x, w, b = R(3, 5, 40), R(5, 4), R(5)
    local ref = vl.conv1d(x, w:view({ 5, 1, 4 }), b, { padding = 3, groups = 5 }):narrow(3, 1, 40)
    close_tensors(vl.causal_conv1d(x, w, b), ref, 1e-12, "conv")
  end)

  it("passes gradcheck for x, weight and bias, with and without silu (float64)", function()
    vl.manual_seed(10)
    for _, act in ipairs({ false, true }) do
      local x, w, b = R(2, 3, 7):requires_grad(true), R(3, 4):requires_grad(true), R(3):requires_grad(true)
      gradcheck(function(a, ww, bb) return vl.causal_conv1d(a, ww, bb, { activation = act and "silu" or nil }) end,
        { x, w, b })
    end
  end)

  it("step form matches the full op", function()
    vl.manual_seed(12)
    local x, w, b = vl.randn({ 2, 3, 30 }), vl.randn({ 3, 4 }), vl.randn({ 3 })
    local full = vl.causal_conv1d(x, w, b, { activation = "silu" })
    local st = vl.zeros({ 2, 3, 4 })
    local ys = {}
    for t = 1, 30 do
      ys[t], st = vl.causal_conv1d_step(x:select(3, t), st, w, b, { activation = "silu" })
    end
    close_tensors(vl.stack(ys, 3), full, 1e-6, "step")
    close_tensors(st, x:narrow(3, 27, 4), 0, "conv_state is the last width inputs")
  end)

  it("rejects bad input with clear errors", function()
    local x, w = vl.zeros({ 2, 3, 5 }), vl.zeros({ 3, 4 })
    has_error("x must be 3-d", vl.causal_conv1d, vl.zeros({ 3, 5 }), w)
    has_error("weight has shape [2,4], expected [3, width >= 1]", vl.causal_conv1d, x, vl.zeros({ 2, 4 }))
    has_error("bias of shape [2] must be [3]", vl.causal_conv1d, x, w, vl.zeros({ 2 }))
    has_error("option 'activation' must be nil or \"silu\"", vl.causal_conv1d, x, w, nil, { activation = "relu" })
    has_error("conv_state has shape [2,3,3]", vl.causal_conv1d_step, vl.zeros({ 2, 3 }), vl.zeros({ 2, 3, 3 }), w)
    has_error("x must be a floating-point tensor", vl.causal_conv1d, vl.zeros({ 2, 3, 5 }, { dtype = "int32" }), w)
  end)
end)
