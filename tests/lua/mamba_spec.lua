-- mamba_spec.lua — vl.mamba: the Mamba block against a PyTorch
-- transcription of the reference (scripts/fixtures/mamba.py: mamba_simple.Mamba's
-- forward with selective_scan_ref, and Vim's bidirectional "v2" mixer, random
-- weights, tests/fixtures/mamba/), streaming step() against forward, the
-- reference initialisation, VisionMamba shapes/keys/init, gradcheck of a tiny
-- block in float64 and the error messages.
local vl = require "vl"
local nn = require "vl.nn"
local mamba = require "vl.mamba"

local DIR = "tests/fixtures/mamba/"

-- Largest |got - want| / max(1, |want|), in float64.
local function max_err(got, want)
  assert.are.same(want:size(), got:size())
  local g, w = got:detach():double(), want:double()
  return ((g - w):abs() / vl.maximum(w:abs(), vl.ones_like(w))):max():item()
end

local function close(name, got, want, tol)
  local e = max_err(got, want)
  assert(e <= tol, string.format("%s: max error %.3g > %g", name, e, tol))
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

local function err_of(fn, ...)
  local ok, e = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

local function against_fixture(name, bimamba)
  local sd = vl.safetensors.load(DIR .. name .. ".safetensors")
  local ref = vl.safetensors.load(DIR .. name .. "_ref.safetensors")
  local m = mamba.Mamba { d_model = 16, d_state = 4, d_conv = 4, expand = 2, bimamba = bimamba }
  assert.are.same(sorted_keys(sd), sorted_keys(m:state_dict()))
  m:load(DIR .. name .. ".safetensors") -- strict
  local x = ref.x:clone():requires_grad_(true)
  local y = m(x)
  close("out", y, ref.out, 1e-4)
  ;(y * ref.cot):sum():backward()
  close("grad x", x.grad, ref["grad.x"], 1e-4)
  local n = 0
  for k, p in m:named_parameters() do
    close("grad " .. k, p.grad, ref["grad." .. k], 1e-4)
    n = n + 1
  end
  return n
end

describe("vl.mamba.Mamba against the PyTorch reference", function()
  it("has the reference's keys, in its order, and nn.Mamba is the same class", function()
    local m = nn.Mamba { d_model = 16, d_state = 4 }
    assert.are.same({ "A_log", "D", "in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight",
      "dt_proj.weight", "dt_proj.bias", "out_proj.weight" }, nn.keys(m:state_dict()))
    assert.are.same({ 32, 1, 4 }, m.conv1d.weight:size())
    assert.are.same({ 1 + 8, 32 }, m.x_proj.weight:size())
    assert.are.equal(mamba.Mamba, nn.Mamba)
  end)

  it("matches outputs and input/parameter gradients to 1e-4 (float32)", function()
    assert.are.equal(9, against_fixture("mamba", false))
  end)

  it("matches Vim's bidirectional v2 mixer (outputs and all gradients)", function()
    assert.are.equal(16, against_fixture("bimamba", true))
  end)

  it("the fallback (vl ops in a loop over time) also matches, forward and step", function()
    local names = { "selective_scan", "causal_conv1d", "selective_scan_step", "causal_conv1d_step" }
    local saved = {}
    for _, k in ipairs(names) do saved[k], vl[k] = vl[k], nil end
    local ok, err = pcall(function()
      assert.are.equal(9, against_fixture("mamba", false))
      local m = mamba.Mamba { d_model = 8, d_state = 3, d_conv = 2 }
      local x = vl.randn({ 1, 6, 8 })
      local full = vl.no_grad(function() return m(x) end)
      local cache = m:new_cache(1)
      vl.no_grad(function()
        for t = 1, 6 do close("step " .. t, m:step(x:select(2, t), cache), full:select(2, t), 1e-5) end
      end)
    end)
    for _, k in ipairs(names) do vl[k] = saved[k] end
    assert(ok, err)
  end)

  it("step() reproduces forward token by token within 1e-5", function()
    vl.manual_seed(3)
    local m = mamba.Mamba { d_model = 8, d_state = 4, d_conv = 3, dt_rank = 2 }
    vl.no_grad(function()
      for _, p in ipairs(m:parameters()) do p:copy_(p + vl.randn(p.shape) * 0.1) end
    end)
    local B, L = 2, 40
    local x = vl.randn({ B, L, 8 })
    local full = vl.no_grad(function() return m(x) end)
    local cache = m:new_cache(B)
    local worst = 0
    vl.no_grad(function()
      for t = 1, L do
        local xt = x:select(2, t)
        local y = t % 2 == 0 and m:step(xt, cache) or m:step(xt:unsqueeze(2), cache):squeeze(2)
        worst = math.max(worst, max_err(y, full:select(2, t)))
      end
    end)
    assert(worst <= 1e-5, "step vs forward: " .. worst)
    assert.are.equal(L, cache.seqlen)
  end)

  it("initialises as the reference: A_log, D, dt_proj", function()
    vl.manual_seed(1)
    local m = mamba.Mamba { d_model = 40, d_state = 6 }
    assert.are.equal(3, m.dt_rank) -- ceil(40 / 16)
    assert.are.equal(80, m.d_inner)
    local a = m.A_log:double()
    for n = 1, 6 do
      assert.is_true((a:select(2, n) - math.log(n)):abs():max():item() < 1e-6)
    end
    assert.are.same({ 80, 6 }, a:size())
    assert.are.equal(80, m.D:sum():item())
    local dt = vl.softplus(m.dt_proj.bias:double())
    assert.is_true(dt:min():item() >= 0.001 * (1 - 1e-6) and dt:max():item() <= 0.1 * (1 + 1e-6))
    assert.is_true(dt:max():item() / dt:min():item() > 5) -- spread log-uniformly, not constant
    local bound = 3 ^ -0.5
    assert.is_true(m.dt_proj.weight:abs():max():item() <= bound)
    assert.is_true(m.dt_proj.weight:abs():max():item() > bound / 2)
    -- dt_init_floor
    local f = mamba.Mamba { d_model = 16, dt_min = 1e-6, dt_max = 1e-5, dt_init_floor = 1e-3 }
    close("floor", vl.softplus(f.dt_proj.bias:double()), vl.full({ 32 }, 1e-3, { dtype = "float64" }), 1e-9)
  end)

  it("passes gradcheck as a tiny float64 block (input and the scan's own parameters)", function()
    vl.manual_seed(4)
    local m = mamba.Mamba { d_model = 3, d_state = 2, d_conv = 2, expand = 1, bias = true, bimamba = true }:double()
    local x = vl.randn({ 2, 4, 3 }, { dtype = "float64" }):requires_grad_(true)
    local ok, msg = vl.gradcheck(function(t) return m(t) end, { x }, { atol = 1e-6, rtol = 1e-5 })
    assert(ok, msg)
    -- the fallback scan with every input: u, delta, A, B, C, D, z, delta_bias
    local function R(...) return vl.randn({ ... }, { dtype = "float64" }):requires_grad_(true) end
    ok, msg = vl.gradcheck(function(u, d, A, Bm, Cm, D, z, db)
      return mamba.selective_scan_ref(u, d, A, Bm, Cm, { D = D, z = z, delta_bias = db, delta_softplus = true })
    end, { R(2, 3, 4), R(2, 3, 4), (-vl.rand({ 3, 2 }, { dtype = "float64" }) - 0.5):requires_grad_(true), R(2, 2, 4), R(2, 2, 4), R(3),
      R(2, 3, 4), R(3) }, { atol = 1e-6, rtol = 1e-5 })
    assert(ok, msg)
  end)

  it("uses the fused ops when present and they agree with the reference fallback", function()
    assert.is_function(vl.selective_scan)
    assert.is_function(vl.causal_conv1d)
    vl.manual_seed(8)
    local u, d, z = vl.randn({ 2, 5, 7 }), vl.randn({ 2, 5, 7 }), vl.randn({ 2, 5, 7 })
    local A, Bm, Cm = -vl.rand({ 5, 3 }) - 0.2, vl.randn({ 2, 3, 7 }), vl.randn({ 2, 3, 7 })
    local o = { D = vl.randn({ 5 }), z = z, delta_bias = vl.randn({ 5 }), delta_softplus = true }
    close("scan", vl.selective_scan(u, d, A, Bm, Cm, o), mamba.selective_scan_ref(u, d, A, Bm, Cm, o), 1e-5)
    local w, b = vl.randn({ 5, 4 }), vl.randn({ 5 })
    close("conv", vl.causal_conv1d(u, w, b, { activation = "silu" }),
      mamba.causal_conv1d_ref(u, w, b, { activation = "silu" }), 1e-5)
  end)

  it("reports bad options and inputs naming the module", function()
    assert.matches("Mamba: option 'd_model' is required", err_of(mamba.Mamba, {}))
    assert.matches("Mamba: unknown option 'd_stat'", err_of(mamba.Mamba, { d_model = 4, d_stat = 2 }))
    assert.matches("Mamba: d_state must be >= 1", err_of(mamba.Mamba, { d_model = 4, d_state = 0 }))
    assert.matches("Mamba: need 0 < dt_min <= dt_max", err_of(mamba.Mamba, { d_model = 4, dt_min = 0.5, dt_max = 0.1 }))
    local m = mamba.Mamba { d_model = 4, d_state = 2 }
    assert.matches("Mamba 4 %(d_state 2%): expected input %[B, L, 4%], got shape %[2, 3, 5%]",
      err_of(m, vl.randn({ 2, 3, 5 })))
    assert.matches("Mamba 4.-: input must be a tensor, got table", err_of(m, {}))
    assert.matches("step needs a cache from new_cache", err_of(m.step, m, vl.randn({ 2, 4 }), nil))
    assert.matches("cache is for batch 3, input has batch 2", err_of(m.step, m, vl.randn({ 2, 4 }), m:new_cache(3)))
    assert.matches("step takes one token", err_of(m.step, m, vl.randn({ 2, 2, 4 }), m:new_cache(2)))
    local b = mamba.Mamba { d_model = 4, d_state = 2, bimamba = true }
    assert.matches("bidirectional%): step needs a unidirectional block", err_of(b.step, b, vl.randn({ 1, 4 }), {}))
  end)
end)

describe("vl.mamba.VisionMamba", function()
  local CFG = { image_size = 28, patch_size = 7, in_channels = 1, num_classes = 10, d_model = 16, depth = 2,
    d_state = 4 }

  it("gives logits [N, num_classes] and Vim's state_dict keys", function()
    vl.manual_seed(2)
    local m = mamba.VisionMamba(CFG)
    local y = m(vl.randn({ 3, 1, 28, 28 }))
    assert.are.same({ 3, 10 }, y:size())
    local keys = nn.keys(m:state_dict())
    assert.are.same({ "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
      "layers.0.mixer.A_log", "layers.0.mixer.D", "layers.0.mixer.A_b_log", "layers.0.mixer.D_b",
      "layers.0.mixer.in_proj.weight" }, { table.unpack(keys, 1, 9) })
    local set = {}
    for _, k in ipairs(keys) do set[k] = true end
    for _, k in ipairs({ "layers.1.mixer.conv1d_b.weight", "layers.1.mixer.x_proj_b.weight",
      "layers.1.mixer.dt_proj_b.bias", "layers.1.mixer.out_proj.weight", "layers.1.norm.weight", "norm_f.weight",
      "head.weight", "head.bias" }) do
      assert.is_true(set[k], k)
    end
    assert.are.same({ 1, 17, 16 }, m.pos_embed:size())
    assert.are.equal(2 * 17 + 7, #keys) -- 16 mixer + 1 norm per layer
  end)

  it("puts the class token in the middle and reads the head from it", function()
    local m = mamba.VisionMamba(CFG)
    m:eval()
    assert.are.equal(9, m.token_position) -- 16 patches: 8 before, the class token, 8 after
    local x = vl.randn({ 2, 1, 28, 28 })
    local f = vl.no_grad(function() return m:features(x) end)
    assert.are.same({ 2, 17, 16 }, f:size())
    local want = vl.no_grad(function() return m.head(f:select(2, 9)) end)
    close("head on cls", vl.no_grad(function() return m(x) end), want, 1e-6)
  end)

  it("initialises as Vim (trunc-normal tokens and head, zero biases, scaled out_proj)", function()
    vl.manual_seed(5)
    local m = mamba.VisionMamba { image_size = 32, patch_size = 4, in_channels = 3, num_classes = 100, d_model = 64,
      depth = 4 }
    local s = m.pos_embed:std():item()
    assert.is_true(s > 0.012 and s < 0.022, "pos_embed std " .. s)
    assert.are.equal(0, m.head.bias:abs():sum():item())
    assert.is_true(m.head.weight:std():item() < 0.025)
    local mx = m.layers[1].mixer
    -- kaiming-uniform(a = sqrt 5) bound 1/sqrt(fan_in), divided by sqrt(depth)
    local bound = 1 / math.sqrt(mx.d_inner) / 2
    assert.is_true(mx.out_proj.weight:abs():max():item() <= bound + 1e-7)
    assert.is_true(mx.out_proj.weight:abs():max():item() > bound * 0.9)
    assert.is_true(vl.softplus(mx.dt_proj_b.bias):min():item() >= 0.001 * (1 - 1e-6))
    assert.are.same({ 128, 16 }, mx.A_b_log:size())
  end)

  it("has the vim_tiny preset (d_model 192, depth 24) and overrides", function()
    assert.are.same({ image_size = 224, patch_size = 16, d_model = 192, depth = 24 }, mamba.presets.vim_tiny)
    local m = mamba.vim_tiny { image_size = 32, depth = 1, num_classes = 5 }
    assert.are.equal(192, m.d_model)
    assert.are.equal(384, m.layers[1].mixer.d_inner)
    assert.are.equal(12, m.layers[1].mixer.dt_rank)
    assert.matches("mamba.vim_tiny: overrides must be a table", err_of(mamba.vim_tiny, 3))
  end)

  it("trains: the gradient reaches every parameter", function()
    vl.manual_seed(6)
    local m = mamba.VisionMamba(CFG)
    local loss = nn.CrossEntropyLoss()(m(vl.randn({ 4, 1, 28, 28 })), vl.tensor({ 1, 2, 3, 4 }, { dtype = "int64" }))
    loss:backward()
    for k, p in m:named_parameters() do
      assert(p.grad ~= nil and p.grad:abs():sum():item() > 0, "no gradient for " .. k)
    end
  end)

  it("reports bad options and inputs naming the model", function()
    assert.matches("VisionMamba: option 'depth' is required",
      err_of(mamba.VisionMamba, { image_size = 28, patch_size = 7, d_model = 8 }))
    assert.matches("VisionMamba: image_size %(28%) must be divisible by patch_size %(5%)",
      err_of(mamba.VisionMamba, { image_size = 28, patch_size = 5, d_model = 8, depth = 1 }))
    assert.matches("VisionMamba: unknown option 'heads'",
      err_of(mamba.VisionMamba, { image_size = 28, patch_size = 7, d_model = 8, depth = 1, heads = 2 }))
    local m = mamba.VisionMamba(CFG)
    assert.matches("VisionMamba 28px/7: expected images %[N, 1, 28, 28%], got shape %[2, 3, 28, 28%]",
      err_of(m, vl.randn({ 2, 3, 28, 28 })))
  end)
end)
