local vl = require "vl"
local optim = require "vl.optim"

-- Reference updates and schedules from PyTorch: scripts/fixtures/optim.py.
local F = dofile("tests/fixtures/optim.lua")

local function make_params(dtype)
  local ps = {}
  for i, p in ipairs(F.params) do
    ps[i] = vl.tensor(p.values, { dtype = dtype }):reshape(p.shape):requires_grad(true)
  end
  return ps
end

local function set_grads(ps, step, dtype)
  for i, p in ipairs(ps) do
    p.grad = vl.tensor(F.grads[step][i], { dtype = dtype }):reshape(F.params[i].shape)
  end
end

local function max_diff(t, expected)
  local flat = t:reshape({ -1 }):to("float64"):totable()
  assert.are.equal(#expected, #flat)
  local m = 0
  for i = 1, #flat do
    local d = math.abs(flat[i] - expected[i])
    if d ~= d then return math.huge end
    if d > m then m = d end
  end
  return m
end

local function build(case, ps)
  local cls = optim[case.cls]
  if case.groups then
    local groups = {}
    for gi, g in ipairs(case.groups) do
      local grp = { params = {} }
      for k, v in pairs(g) do if k ~= "params" then grp[k] = v end end
      for j, id in ipairs(g.params) do grp.params[j] = ps[id] end
      groups[gi] = grp
    end
    return cls(groups, case.opts)
  end
  return cls(ps, case.opts)
end

local names = {}
for name in pairs(F.optimizers) do names[#names + 1] = name end
table.sort(names)

describe("optimizers match PyTorch step for step", function()
  for _, name in ipairs(names) do
    local case = F.optimizers[name]
    it(name .. " (" .. case.dtype .. ")", function()
      local tol = case.dtype == "float64" and 1e-12 or 1e-6
      local ps = make_params(case.dtype)
      local opt = build(case, ps)
      for s = 1, #case.steps do
        set_grads(ps, s, case.dtype)
        opt:step()
        for i, p in ipairs(ps) do
          local d = max_diff(p, case.steps[s][i])
          assert(d <= tol, string.format("%s step %d param %d: max |diff| %.3g > %g", name, s, i, d, tol))
          assert.are.equal(case.dtype, p.dtype)
        end
      end
    end)
  end
end)

describe("optimizer state_dict", function()
  for _, name in ipairs({ "sgd_nesterov", "adam_amsgrad", "adamw", "rmsprop_centered_momentum", "sgd_groups" }) do
    it("resuming " .. name .. " after 2 steps gives the same next 3 steps", function()
      local case = F.optimizers[name]
      local ps = make_params("float32")
      local opt = build(case, ps)
      for s = 1, 2 do
        set_grads(ps, s, "float32")
        opt:step()
      end
      local sd = opt:state_dict()
      -- a fresh optimizer, over copies of the parameters, with other hyper-parameters
      local ps2 = {}
      for i, p in ipairs(ps) do ps2[i] = p:detach():clone():requires_grad(true) end
      local case2 = { cls = case.cls, opts = { lr = 123 }, groups = case.groups }
      local opt2 = build(case2, ps2)
      opt2:load_state_dict(sd)
      for s = 3, #case.steps do
        set_grads(ps, s, "float32")
        set_grads(ps2, s, "float32")
        opt:step()
        opt2:step()
        for i = 1, #ps do
          assert(max_diff(ps[i], ps[i]:to("float64"):reshape({ -1 }):totable()) == 0)
          local d = max_diff(ps2[i], ps[i]:to("float64"):reshape({ -1 }):totable())
          assert.are.equal(0, d)
          assert(max_diff(ps2[i], case.steps[s][i]) <= 1e-6)
        end
      end
    end)
  end

  it("is a snapshot: later steps do not change it", function()
    local ps = make_params("float32")
    local opt = optim.Adam(ps, { lr = 0.1 })
    set_grads(ps, 1, "float32")
    opt:step()
    local sd = opt:state_dict()
    local before = sd.state[1].exp_avg:clone()
    set_grads(ps, 2, "float32")
    opt:step()
    assert.are.equal(0, max_diff(sd.state[1].exp_avg, before:reshape({ -1 }):to("float64"):totable()))
    assert.are.equal(1, sd.state[1].step)
    assert.are.same({ 1, 2, 3 }, sd.param_groups[1].params)
    assert.are.equal(0.1, sd.param_groups[1].lr)
  end)

  it("restores hyper-parameters and converts state to the parameter dtype", function()
    local ps = make_params("float32")
    local opt = optim.SGD(ps, { lr = 0.5, momentum = 0.9 })
    set_grads(ps, 1, "float32")
    opt:step()
    local sd = opt:state_dict()
    local ps64 = make_params("float64")
    local opt2 = optim.SGD(ps64, { lr = 0.1 })
    opt2:load_state_dict(sd)
    assert.are.equal(0.5, opt2.param_groups[1].lr)
    assert.are.equal(0.9, opt2.param_groups[1].momentum)
    assert.are.equal("float64", opt2.state[ps64[1]].momentum_buffer.dtype)
  end)

  it("rejects a state_dict of another layout", function()
    local ps = make_params("float32")
    local opt = optim.SGD(ps, { lr = 0.1 })
    local sd = opt:state_dict()
    local opt2 = optim.SGD({ ps[1] }, { lr = 0.1 })
    assert.has_error(function() opt2:load_state_dict(sd) end,
      "SGD: load_state_dict: parameter group 1 has 3 parameters in the state_dict, 1 here")
    local opt3 = optim.SGD({ { params = { ps[1] } }, { params = { ps[2], ps[3] } } }, { lr = 0.1 })
    local ok, err = pcall(opt3.load_state_dict, opt3, sd)
    assert.is_false(ok)
    assert.matches("has 1 parameter groups, this optimizer has 2", err)
  end)
end)

describe("optimizer behaviour", function()
  it("zero_grad drops grads by default and zeroes them with set_to_none = false", function()
    local ps = make_params("float32")
    local opt = optim.SGD(ps, { lr = 0.1 })
    set_grads(ps, 1, "float32")
    opt:zero_grad({ set_to_none = false })
    assert.is_not_nil(ps[1].grad)
    assert.are.equal(0, ps[1].grad:abs():sum():item())
    opt:zero_grad()
    assert.is_nil(ps[1].grad)
    assert.is_nil(ps[3].grad)
  end)

  it("skips parameters without a gradient", function()
    local ps = make_params("float32")
    local before = ps[2]:detach():clone()
    local opt = optim.Adam(ps, { lr = 0.1 })
    ps[1].grad = vl.ones_like(ps[1])
    opt:step()
    assert.are.equal(0, (ps[2] - before):abs():sum():item())
    assert.is_nil(opt.state[ps[2]])
    assert.are.equal(1, opt.state[ps[1]].step)
  end)

  it("param groups keep their own lr and weight_decay", function()
    local a = vl.ones({ 2 }):requires_grad(true)
    local b = vl.ones({ 2 }):requires_grad(true)
    local opt = optim.SGD({ { params = { a }, lr = 1.0 }, { params = { b }, weight_decay = 1.0 } }, { lr = 0.5 })
    a.grad = vl.ones({ 2 })
    b.grad = vl.ones({ 2 })
    opt:step()
    assert.are.equal(0, a[1])            -- 1 - 1.0 * 1
    assert.are.equal(0, b[1])            -- 1 - 0.5 * (1 + 1 * 1)
    assert.are.equal(1.0, opt.param_groups[1].lr)
    assert.are.equal(0.5, opt.param_groups[2].lr)
    assert.are.equal(0, opt.param_groups[1].weight_decay)
  end)

  it("step runs the closure with gradients on and returns its loss", function()
    local p = vl.tensor({ 2.0, -1.0 }):requires_grad(true)
    local opt = optim.SGD({ p }, { lr = 0.25 })
    local loss = opt:step(function()
      assert.is_true(vl.is_grad_enabled())
      p.grad = p:detach() * 2
      return 42
    end)
    assert.are.equal(42, loss)
    assert.are.equal(1.0, p[1])
    assert.are.equal(-0.5, p[2])
  end)

  it("updates a model's parameters and lowers a quadratic loss", function()
    local w = vl.tensor({ 3.0, -2.0, 1.0 }):requires_grad(true)
    local opt = optim.AdamW({ w }, { lr = 0.1, weight_decay = 0 })
    local function loss() return (w:detach() * w:detach()):sum():item() end
    local start = loss()
    for _ = 1, 50 do
      w.grad = w:detach() * 2
      opt:step()
    end
    assert(loss() < start / 10, "AdamW did not descend")
  end)

  it("works inside no_grad: parameters stay leaves that require grad", function()
    local ps = make_params("float32")
    local opt = optim.RMSprop(ps, { momentum = 0.5, centered = true })
    set_grads(ps, 1, "float32")
    opt:step()
    assert.is_true(ps[1]:requires_grad())
    assert.is_true(ps[1]:is_leaf())
  end)
end)

describe("clip_grad_norm_", function()
  it("matches the closed form and scales every gradient", function()
    local a = vl.zeros({ 2 }):requires_grad(true)
    local b = vl.zeros({ 1 }):requires_grad(true)
    a.grad = vl.tensor({ 3.0, 4.0 })
    b.grad = vl.tensor({ 12.0 })
    local n = optim.clip_grad_norm_({ a, b }, 1.3)
    assert.are.equal(13, n)                          -- sqrt(9 + 16 + 144)
    local c = 1.3 / (13 + 1e-6)
    assert.is_true(math.abs(a.grad[1] - 3 * c) < 1e-6)
    assert.is_true(math.abs(a.grad[2] - 4 * c) < 1e-6)
    assert.is_true(math.abs(b.grad[1] - 12 * c) < 1e-6)
  end)

  it("leaves small gradients alone", function()
    local a = vl.zeros({ 2 }):requires_grad(true)
    a.grad = vl.tensor({ 0.3, 0.4 })
    local n = optim.clip_grad_norm_({ a }, 1.0)
    assert.is_true(math.abs(n - 0.5) < 1e-7)
    assert.is_true(math.abs(a.grad[1] - 0.3) < 1e-7)
  end)

  it("supports other norm types and the max norm", function()
    local a = vl.zeros({ 3 }):requires_grad(true)
    a.grad = vl.tensor({ 1.0, -2.0, 3.0 })
    assert.is_true(math.abs(optim.clip_grad_norm_({ a }, 100, { norm_type = 1 }) - 6) < 1e-9)
    assert.are.equal(3, optim.clip_grad_norm_({ a }, 100, { norm_type = math.huge }))
    optim.clip_grad_norm_({ a }, 1.5, { norm_type = math.huge })
    assert.is_true(math.abs(a.grad[3] - 1.5) < 1e-5)
  end)

  it("ignores parameters without gradients and reports 0 when none has one", function()
    local a = vl.zeros({ 2 }):requires_grad(true)
    assert.are.equal(0, optim.clip_grad_norm_({ a }, 1))
  end)

  it("clip_grad_value_ clamps", function()
    local a = vl.zeros({ 3 }):requires_grad(true)
    a.grad = vl.tensor({ -5.0, 0.5, 5.0 })
    optim.clip_grad_value_({ a }, 1)
    assert.are.same({ -1, 0.5, 1 }, a.grad:totable())
  end)
end)

-- ---------------------------------------------------------------------------

local snames = {}
for name in pairs(F.schedulers) do snames[#snames + 1] = name end
table.sort(snames)

describe("LR schedulers match PyTorch", function()
  for _, name in ipairs(snames) do
    local case = F.schedulers[name]
    it(name, function()
      local p = vl.zeros({ 2 }):requires_grad(true)
      local opt = optim[case.optimizer]({ p }, case.opt_opts)
      local cls = ({ step = "StepLR", multistep = "MultiStepLR", exponential = "ExponentialLR",
        cosine = "CosineAnnealingLR", cosine_long = "CosineAnnealingLR" })[name] or "OneCycleLR"
      local s = optim.lr_scheduler[cls](opt, case.opts)
      local function mom()
        local g = opt.param_groups[1]
        return g.betas and g.betas[1] or g.momentum
      end
      for i = 1, #case.lrs do
        if i > 1 then
          opt:step()
          s:step()
        end
        local lr = s:get_last_lr()[1]
        assert(math.abs(lr - case.lrs[i]) <= 1e-12, string.format("%s step %d: lr %.17g, expected %.17g", name,
          i - 1, lr, case.lrs[i]))
        assert.are.equal(lr, opt.param_groups[1].lr)
        local m = case.momentum or case.beta1
        if m then
          assert(math.abs(mom() - m[i]) <= 1e-12, string.format("%s step %d: momentum %.17g, expected %.17g", name,
            i - 1, mom(), m[i]))
        end
      end
    end)
  end
end)

describe("CosineWithWarmup", function()
  it("warms up linearly then follows the half cosine to min_lr", function()
    local p = vl.zeros({ 1 }):requires_grad(true)
    local opt = optim.SGD({ p }, { lr = 0.4 })
    local s = optim.lr_scheduler.CosineWithWarmup(opt, { warmup_steps = 4, total_steps = 20, min_lr = 0.01 })
    for step = 0, 24 do
      local expected
      if step < 4 then
        expected = 0.4 * (step + 1) / 4
      else
        local prog = math.min(1, (step - 4) / 16)
        expected = 0.01 + (0.4 - 0.01) * 0.5 * (1 + math.cos(math.pi * prog))
      end
      assert.is_true(math.abs(s:get_last_lr()[1] - expected) < 1e-15, "step " .. step)
      assert.are.equal(s:get_last_lr()[1], opt.param_groups[1].lr)
      opt:step()
      s:step()
    end
    assert.is_true(math.abs(opt.param_groups[1].lr - 0.01) < 1e-15)
  end)

  it("reaches the peak at the end of warm-up and is monotone after", function()
    local p = vl.zeros({ 1 }):requires_grad(true)
    local opt = optim.AdamW({ p }, { lr = 1.0 })
    local s = optim.lr_scheduler.CosineWithWarmup(opt, { warmup_steps = 3, total_steps = 10 })
    local seq = { s:get_last_lr()[1] }
    for _ = 1, 9 do s:step(); seq[#seq + 1] = s:get_last_lr()[1] end
    assert.are.equal(1.0, seq[3])
    assert.are.equal(1.0, seq[4])
    for i = 5, #seq do assert.is_true(seq[i] < seq[i - 1]) end
  end)

  it("scales every group from its own base lr, and resumes from its state_dict", function()
    local a, b = vl.zeros({ 1 }):requires_grad(true), vl.zeros({ 1 }):requires_grad(true)
    local opt = optim.SGD({ { params = { a }, lr = 1.0 }, { params = { b }, lr = 0.1 } }, { lr = 0.5 })
    local s = optim.lr_scheduler.CosineWithWarmup(opt, { warmup_steps = 2, total_steps = 10 })
    for _ = 1, 4 do s:step() end
    local lrs = s:get_last_lr()
    assert.is_true(math.abs(lrs[2] - lrs[1] / 10) < 1e-15)
    local sd = s:state_dict()
    s:step()
    local next_lr = s:get_last_lr()[1]
    local s2 = optim.lr_scheduler.CosineWithWarmup(opt, { warmup_steps = 2, total_steps = 10 })
    s2:load_state_dict(sd)
    s2:step()
    assert.are.equal(next_lr, s2:get_last_lr()[1])
  end)
end)

describe("CosineAnnealingLR closed form", function()
  it("follows eta_min + (base - eta_min)(1 + cos(pi t / T)) / 2 within T_max", function()
    local p = vl.zeros({ 1 }):requires_grad(true)
    local opt = optim.SGD({ p }, { lr = 0.3 })
    local s = optim.lr_scheduler.CosineAnnealingLR(opt, { T_max = 12, eta_min = 0.02 })
    for t = 0, 12 do
      local expected = 0.02 + (0.3 - 0.02) * (1 + math.cos(math.pi * t / 12)) / 2
      assert.is_true(math.abs(s:get_last_lr()[1] - expected) < 1e-12)
      s:step()
    end
  end)
end)

describe("bad input", function()
  local p = vl.zeros({ 2 }):requires_grad(true)
  local function err(fn, pattern)
    local ok, msg = pcall(fn)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(msg))
  end

  it("raises clear errors", function()
    err(function() optim.SGD({ p }) end, "SGD: option 'lr' is required")
    err(function() optim.SGD({ p }, { lr = -1 }) end, "SGD: invalid lr %-1")
    err(function() optim.SGD({ p }, { lr = 0.1, nesterov = true }) end, "SGD: nesterov momentum requires")
    err(function() optim.Adam({ p }, { betas = { 1.5, 0.9 } }) end, "Adam: invalid beta at index 1")
    err(function() optim.Adam({ p }, { lr = 0.1, foo = 1 }) end, "Adam: unknown option 'foo'")
    err(function() optim.AdamW({}, { lr = 0.1 }) end, "AdamW: got an empty parameter list")
    err(function() optim.AdamW({ p, 3 }) end, "AdamW: parameter 2 is a number, expected a tensor")
    err(function() optim.RMSprop({ vl.zeros({ 2 }, { dtype = "int64" }) }) end,
      "RMSprop: parameter 1 is int64, expected a floating%-point tensor")
    err(function() optim.SGD({ p * 2 }, { lr = 0.1 }) end, "SGD: parameter 1 is not a leaf")
    err(function() optim.SGD({ { params = { p } }, { params = { p } } }, { lr = 0.1 }) end,
      "appears in more than one parameter group")
    err(function() optim.RMSprop({ p }, { eps = -1 }) end, "RMSprop: invalid eps")
    err(function() optim.SGD({ p }, { lr = 0.1 }):load_state_dict(5) end, "SGD: load_state_dict expects a table")
    err(function() optim.SGD({ p }, { lr = 0.1 }):step(5) end, "SGD: step's closure must be a function")
    err(function() optim.clip_grad_norm_({ p }, "x") end, "clip_grad_norm_: max_norm must be a number")
    err(function() optim.clip_grad_norm_({ p }, 1, { norm_type = -1 }) end, "clip_grad_norm_: norm_type must be")
    err(function() optim.clip_grad_norm_({ 5 }, 1) end, "clip_grad_norm_: parameter 1 is a number")
    err(function() optim.lr_scheduler.StepLR({}, { step_size = 2 }) end, "StepLR: the first argument must be an optimizer")
    err(function() optim.lr_scheduler.StepLR(optim.SGD({ p }, { lr = 1 }), { step_size = 0 }) end,
      "StepLR: step_size must be >= 1")
    err(function() optim.lr_scheduler.CosineWithWarmup(optim.SGD({ p }, { lr = 1 }), { warmup_steps = 5, total_steps = 5 }) end,
      "CosineWithWarmup: total_steps %(5%) must exceed warmup_steps %(5%)")
    err(function() optim.lr_scheduler.OneCycleLR(optim.SGD({ p }, { lr = 1 }), { total_steps = 5 }) end,
      "OneCycleLR: max_lr is required")
    err(function()
      local opt = optim.SGD({ p }, { lr = 1 })
      opt.param_groups[1].momentum = nil
      optim.lr_scheduler.OneCycleLR(opt, { max_lr = 1, total_steps = 5 })
    end, "OneCycleLR: the optimizer has no momentum or betas")
    err(function()
      local s = optim.lr_scheduler.OneCycleLR(optim.SGD({ p }, { lr = 1, momentum = 0.9 }), { max_lr = 1, total_steps = 2 })
      for _ = 1, 3 do s:step() end
    end, "OneCycleLR: tried to step 3 times; total_steps is 2")
  end)
end)
