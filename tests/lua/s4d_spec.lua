-- s4d_spec.lua — nn.S4D (vl.nn.s4d), the S4D-Lin layer of the state-spaces
-- reference. References: the recurrent form of the same discretised
-- system, run in plain Lua numbers (x_k = Abar x_{k-1} + Bbar u_k,
-- y_k = 2 Re(C x_k) + D u_k, Abar = exp(dt A), Bbar = (exp(dt A) - 1) / A);
-- the layer's composition written out with vl ops; central differences
-- (vl.gradcheck); a toy training task.
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"

local function flat(t) return t:contiguous():view(-1):totable() end

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

-- y[b][h][k] of the recurrence, from the layer's parameters (plain Lua).
local function recurrence(m, u)
  local B, H, L = u:size(1), u:size(2), u:size(3)
  local k = m.kernel
  local log_dt, lar, aim, C, D = k.log_dt:totable(), k.log_A_real:totable(), k.A_imag:totable(), k.C:totable(),
    m.D:totable()
  local ut = u:totable()
  local N2 = #lar[1]
  local y = {}
  for b = 1, B do
    y[b] = {}
    for h = 1, H do
      local dt = math.exp(log_dt[h])
      local ab_re, ab_im, bb_re, bb_im = {}, {}, {}, {}
      for n = 1, N2 do
        local a_re, a_im = -math.exp(lar[h][n]), aim[h][n]
        local e = math.exp(a_re * dt)
        ab_re[n], ab_im[n] = e * math.cos(a_im * dt), e * math.sin(a_im * dt)
        -- (Abar - 1) / A
        local nr, ni, den = ab_re[n] - 1, ab_im[n], a_re * a_re + a_im * a_im
        bb_re[n], bb_im[n] = (nr * a_re + ni * a_im) / den, (ni * a_re - nr * a_im) / den
      end
      local x_re, x_im = {}, {}
      for n = 1, N2 do x_re[n], x_im[n] = 0, 0 end
      y[b][h] = {}
      for t = 1, L do
        local uk, acc = ut[b][h][t], 0
        for n = 1, N2 do
          local r = ab_re[n] * x_re[n] - ab_im[n] * x_im[n] + bb_re[n] * uk
          local i = ab_re[n] * x_im[n] + ab_im[n] * x_re[n] + bb_im[n] * uk
          x_re[n], x_im[n] = r, i
          acc = acc + C[h][n][1] * r - C[h][n][2] * i
        end
        y[b][h][t] = 2 * acc + D[h] * uk
      end
    end
  end
  return y
end

describe("nn.S4D parameters", function()
  it("has the reference's names, shapes and initialisation", function()
    vl.manual_seed(1)
    local m = nn.S4D(6, { d_state = 8, dt_min = 0.01, dt_max = 0.2 })
    local names = {}
    for name, p in m:named_parameters() do names[#names + 1] = name .. "=" .. table.concat(p:size(), "x") end
    table.sort(names)
    assert.are.same({ "D=6", "kernel.A_imag=6x4", "kernel.C=6x4x2", "kernel.log_A_real=6x4", "kernel.log_dt=6",
      "output_linear.0.bias=12", "output_linear.0.weight=12x6x1" }, names)
    for _, v in ipairs(flat(m.kernel.log_A_real)) do assert.is_true(math.abs(v - math.log(0.5)) < 1e-6) end
    local ai = m.kernel.A_imag:totable()
    for h = 1, 6 do
      for n = 1, 4 do assert.is_true(math.abs(ai[h][n] - math.pi * (n - 1)) < 1e-5) end
    end
    for _, v in ipairs(flat(m.kernel.log_dt)) do
      assert.is_true(v >= math.log(0.01) - 1e-6 and v < math.log(0.2) + 1e-6)
    end
  end)
  it("lr = 0 makes the SSM parameters buffers; param_groups splits them out", function()
    local m = nn.S4D(3, { d_state = 4, lr = 0 })
    local nb = 0
    for _ in m:named_buffers() do nb = nb + 1 end
    assert.are.equal(3, nb)
    assert.are.equal(1, #m:param_groups())
    local m2 = nn.S4D(3, { d_state = 4, lr = 1e-3 })
    local g = m2:param_groups()
    assert.are.equal(2, #g)
    assert.are.equal(3, #g[2].params)
    assert.are.equal(1e-3, g[2].lr)
    assert.are.equal(0, g[2].weight_decay)
    local opt = optim.AdamW(g, { lr = 1e-2 })
    assert.are.equal(1e-3, opt.param_groups[2].lr)
  end)
end)

describe("nn.S4D FFT convolution against the recurrent form (float64)", function()
  for _, cfg in ipairs({ { B = 2, H = 3, N = 8, L = 20 }, { B = 1, H = 2, N = 64, L = 33 }, { B = 2, H = 1, N = 2, L = 1 } }) do
    it(string.format("B=%d H=%d N=%d L=%d to 1e-9", cfg.B, cfg.H, cfg.N, cfg.L), function()
      vl.manual_seed(7)
      local m = nn.S4D(cfg.H, { d_state = cfg.N, dt_min = 0.01, dt_max = 0.5, dtype = "float64" })
      -- spread the decay rates so that modes differ
      vl.no_grad(function() m.kernel.log_A_real:add_(vl.randn(m.kernel.log_A_real:size(), { dtype = "float64" })) end)
      local u = vl.randn({ cfg.B, cfg.H, cfg.L }, { dtype = "float64" })
      local y = m:ssm(u):totable()
      local r = recurrence(m, u)
      local worst = 0
      for b = 1, cfg.B do
        for h = 1, cfg.H do
          for t = 1, cfg.L do worst = math.max(worst, math.abs(y[b][h][t] - r[b][h][t])) end
        end
      end
      assert.is_true(worst < 1e-9, "max difference " .. worst)
    end)
  end
  it("the kernel is the impulse response (u = e_1, D = 0)", function()
    local m = nn.S4D(2, { d_state = 6, dtype = "float64" })
    vl.no_grad(function() m.D:zero_() end)
    local u = vl.zeros({ 1, 2, 9 }, { dtype = "float64" })
    u[1][1][1], u[1][2][1] = 1, 1
    local want = flat(m.kernel(9))
    local got = flat(m:ssm(u))
    for i = 1, #want do assert.is_true(math.abs(got[i] - want[i]) < 1e-12) end
  end)
end)

describe("nn.S4D forward", function()
  it("is output_linear(gelu(ssm(u))) with a GLU over channels", function()
    local H = 3
    local m = nn.S4D(H, { d_state = 4, dtype = "float64" })
    local u = vl.randn({ 2, H, 7 }, { dtype = "float64" })
    local y = m(u)
    assert.are.same({ 2, H, 7 }, y:size())
    local a = vl.gelu(m:ssm(u))                                          -- [2, H, 7]
    local W = m.output_linear[1].weight:view({ 2 * H, H })
    local z = vl.matmul(W, a) + m.output_linear[1].bias:view({ 2 * H, 1 }) -- [2, 2H, 7]
    local want = z:narrow(2, 1, H) * vl.sigmoid(z:narrow(2, H + 1, H))
    local g, w = flat(y), flat(want)
    for i = 1, #w do assert.is_true(math.abs(g[i] - w[i]) < 1e-12) end
  end)
  it("transposed = false takes and gives [B, L, H]", function()
    vl.manual_seed(3)
    local m1 = nn.S4D(4, { d_state = 4, dtype = "float64" })
    vl.manual_seed(3)
    local m2 = nn.S4D(4, { d_state = 4, dtype = "float64", transposed = false })
    local u = vl.randn({ 2, 4, 5 }, { dtype = "float64" })
    local a, b = flat(m1(u):transpose(2, 3)), flat(m2(u:transpose(2, 3)))
    for i = 1, #a do assert.is_true(math.abs(a[i] - b[i]) < 1e-12) end
  end)
  it("dropout ties its mask over the sequence and is off in eval mode", function()
    local m = nn.S4D(8, { d_state = 4, dropout = 0.5, dtype = "float64" })
    local u = vl.randn({ 2, 8, 6 }, { dtype = "float64" })
    m:eval()
    local a = flat(m(u))
    local b = flat(m(u))
    assert.are.same(a, b)
    m:train()
    local zero_cols = 0
    -- a dropped channel zeroes gelu(y)[b, h, :] as a whole; check on ssm activations
    local y = m.activation(m:ssm(u))
    local mask = vl.dropout(vl.ones({ 2, 8, 1 }, { dtype = "float64" }), 0.5, { training = true })
    local ym = (y * mask):totable()
    for bb = 1, 2 do
      for h = 1, 8 do
        local all0 = true
        for t = 1, 6 do if ym[bb][h][t] ~= 0 then all0 = false end end
        if all0 then zero_cols = zero_cols + 1 end
      end
    end
    assert.is_true(zero_cols > 0 and zero_cols < 16)
    assert.are.same({ 2, 8, 6 }, m(u):size())
  end)
end)

describe("nn.S4D gradients", function()
  it("gradcheck through the whole layer for u and every parameter (float64)", function()
    local m = nn.S4D(2, { d_state = 4, dt_min = 0.05, dt_max = 0.5, dtype = "float64" })
    local u = vl.randn({ 1, 2, 5 }, { dtype = "float64" }):requires_grad(true)
    local k = m.kernel
    local ok, msg = vl.gradcheck(function() return m(u) end,
      { u, m.D, k.C, k.log_dt, k.log_A_real, k.A_imag, m.output_linear[1].weight }, { atol = 1e-6, rtol = 1e-5 })
    assert.is_true(ok, msg)
  end)
end)

describe("nn.S4D training", function()
  it("learns a toy sequence task (a delayed, smoothed copy): loss falls below half", function()
    vl.manual_seed(11)
    local H, L = 4, 32
    local m = nn.S4D(H, { d_state = 16, dt_min = 0.05, dt_max = 0.5 })
    local opt = optim.AdamW(m:param_groups(), { lr = 2e-2 })
    local function batch()
      local u = vl.randn({ 8, H, L })
      -- target: causal moving average of the last 4 steps
      local tgt = vl.zeros({ 8, H, L })
      for s = 0, 3 do
        tgt:narrow(3, 1 + s, L - s):add_(u:narrow(3, 1, L - s) * 0.25)
      end
      return u, tgt
    end
    local first, last
    for step = 1, 80 do
      local u, tgt = batch()
      opt:zero_grad()
      local loss = vl.mse_loss(m(u), tgt)
      loss:backward()
      opt:step()
      if step <= 5 then first = (first or 0) + loss:item() / 5 end
      if step > 75 then last = (last or 0) + loss:item() / 5 end
    end
    assert.is_true(last < 0.5 * first, string.format("loss %.4f -> %.4f", first, last))
  end)
end)

describe("nn.S4D bad inputs", function()
  it("refuses bad options", function()
    fails("S4DKernel: d_state must be even", nn.S4D, 4, { d_state = 5 })
    fails("S4D: dropout must be a number in [0, 1)", nn.S4D, 4, { dropout = 1 })
    fails("S4D: unknown option 'N'", nn.S4D, 4, { N = 8 })
    fails("S4DKernel: dt_min (0.5) must not exceed dt_max (0.1)", nn.S4D, 4, { dt_min = 0.5 })
    fails("S4DKernel: lr must be a number >= 0", nn.S4D, 4, { lr = -1 })
  end)
  it("refuses inputs of the wrong shape or dtype", function()
    local m = nn.S4D(4, { d_state = 4 })
    fails("S4D 4, N=4: input has shape [4, 10], expected 3 dims [B, H, L]", m, vl.zeros({ 4, 10 }))
    fails("S4D 4, N=4: input has 3 channels, expected 4", m, vl.zeros({ 2, 3, 10 }))
    fails("S4D 4, N=4: input is float64, the layer's parameters are float32", m, vl.zeros({ 2, 4, 10 }, { dtype = "float64" }))
    fails("S4D 4, N=4: input must be a tensor", m, 3)
    fails("S4DKernel 4, N=4: L must be a positive integer", m.kernel, 0)
  end)
end)
