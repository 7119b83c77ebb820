-- video_cnn_spec.lua — vl.video's 3-D CNNs (stdlib/vl/video/cnn3d.lua) and
-- nn.BatchNorm3d. References: PyTorch transcriptions of the same small
-- nets with random weights (scripts/fixtures/video_cnn.py ->
-- tests/fixtures/video_cnn/), closed-form parameter counts, and central
-- differences (vl.gradcheck, float64) for the (2+1)D convolution.
local vl = require "vl"
local nn = require "vl.nn"
local video = require "vl.video.cnn3d"

local DIR = "tests/fixtures/video_cnn/"
local REF = vl.safetensors.load(DIR .. "ref.safetensors")

local CFG = {
  c3d = { cls = "C3D", opts = { num_classes = 5, in_channels = 3, width = 4, stages = 3 } },
  r2plus1d = { cls = "R2Plus1D", opts = { num_classes = 5, in_channels = 3, width = 4, stages = 3 } },
  slowfast = { cls = "SlowFast", opts = { num_classes = 5, in_channels = 3, width = 8, alpha = 4, beta_inv = 4,
    fusion_kernel = 5, stages = 3 } },
}

-- Largest |got - want| / max(1, |want|).
local function max_err(got, want)
  assert.are.same(want:size(), got:size())
  local g, w = got:detach():double(), want:double()
  return ((g - w):abs() / vl.maximum(w:abs(), vl.ones_like(w))):max():item()
end

local function close(name, got, want, tol)
  local e = max_err(got, want)
  assert(e <= tol, string.format("%s: max error %.3g > %g", name, e, tol))
end

local function loaded(name)
  local c = CFG[name]
  local m = video[c.cls](c.opts)
  m:load(DIR .. name .. ".safetensors") -- strict: every key, every shape
  return m
end

-- Closed-form parameter counts.
local function bn(c) return 2 * c end
local function conv(cin, cout, kt, kh, kw) return cin * cout * kt * kh * kw end

local function c3d_params(K, cin, w, stages)
  local n, c = 0, cin
  for s = 1, stages do
    local co = w * 2 ^ (s - 1)
    n = n + conv(c, co, 3, 3, 3) + bn(co)
    c = co
  end
  return math.tointeger(n + c * K + K)
end

local function mid(nin, nout) return (27 * nin * nout) // (9 * nin + 3 * nout) end
local function c21(nin, nout)
  local m = mid(nin, nout)
  return conv(nin, m, 1, 3, 3) + bn(m) + conv(m, nout, 3, 1, 1)
end

local function r21_params(K, cin, w, stages)
  local n = c21(cin, w) + bn(w)
  local c = w
  for s = 1, stages do
    local co = w * (1 << (s - 1))
    n = n + c21(c, co) + bn(co) + c21(co, co) + bn(co)
    if s > 1 or c ~= co then n = n + conv(c, co, 1, 1, 1) + bn(co) end
    c = co
  end
  return n + c * K + K
end

local function slowfast_params(K, cin, C, beta_inv, fk, stages)
  local Cf = math.max(1, C // beta_inv)
  local n = conv(cin, C, 1, 3, 3) + bn(C) + conv(cin, Cf, 5, 3, 3) + bn(Cf)
  n = n + conv(Cf, 2 * Cf, fk, 1, 1) + bn(2 * Cf)
  local cs, cf = C, Cf
  for s = 1, stages do
    local kt = (s <= stages // 2) and 1 or 3
    local ns, nf = C * (1 << (s - 1)), Cf * (1 << (s - 1))
    n = n + conv(cs + 2 * cf, ns, kt, 3, 3) + bn(ns) + conv(cf, nf, 3, 3, 3) + bn(nf)
    cs, cf = ns, nf
    if s < stages then n = n + conv(cf, 2 * cf, fk, 1, 1) + bn(2 * cf) end
  end
  return n + (cs + cf) * K + K
end

describe("nn.BatchNorm3d against torch.nn.BatchNorm3d", function()
  local function make()
    local m = nn.BatchNorm3d(4, { momentum = 0.3 })
    vl.no_grad(function()
      m.weight:copy_(REF["bn3d.weight"])
      m.bias:copy_(REF["bn3d.bias"])
      m.running_mean:copy_(REF["bn3d.running_mean0"])
      m.running_var:copy_(REF["bn3d.running_var0"])
    end)
    return m
  end

  it("normalises with batch statistics in training, updates running stats, backward matches", function()
    local m = make()
    local x = REF["bn3d.x"]:clone():requires_grad(true)
    local y = m(x)
    close("y_train", y, REF["bn3d.y_train"], 1e-5)
    close("running_mean", m.running_mean, REF["bn3d.running_mean1"], 1e-6)
    close("running_var", m.running_var, REF["bn3d.running_var1"], 1e-6)
    assert.are.equal(1, m.num_batches_tracked:item())
    local loss = (y * REF["bn3d.cot"]):sum()
    loss:backward()
    close("grad_x", x.grad, REF["bn3d.grad_x"], 1e-5)
    close("grad_weight", m.weight.grad, REF["bn3d.grad_weight"], 1e-5)
    close("grad_bias", m.bias.grad, REF["bn3d.grad_bias"], 1e-5)
    m:eval()
    close("y_eval", vl.no_grad(function() return m(REF["bn3d.x"]) end), REF["bn3d.y_eval"], 1e-5)
  end)

  it("rejects inputs that are not 5-D or have another channel count", function()
    local m = nn.BatchNorm3d(4)
    local ok, err = pcall(m, vl.zeros(2, 4, 3, 3))
    assert.is_false(ok)
    assert.matches("expected a 5D input, got shape", err)
    ok, err = pcall(m, vl.zeros(2, 3, 2, 3, 3))
    assert.is_false(ok)
    assert.matches("input has 3 channels, expected 4", err)
  end)
end)

describe("vl.video 3-D CNNs against PyTorch transcriptions", function()
  for _, name in ipairs({ "c3d", "r2plus1d", "slowfast" }) do
    describe(name, function()
      it("loads the PyTorch state_dict strictly with the same keys", function()
        local sd = vl.safetensors.load(DIR .. name .. ".safetensors")
        local want = {}
        for k in pairs(sd) do want[#want + 1] = k end
        table.sort(want)
        local got = {}
        for i, k in ipairs(nn.keys(video[CFG[name].cls](CFG[name].opts):state_dict())) do got[i] = k end
        table.sort(got)
        assert.are.same(want, got)
      end)

      it("matches the eval-mode logits to 1e-4", function()
        local m = loaded(name)
        m:eval()
        local y = vl.no_grad(function() return m(REF.x) end)
        assert.are.same({ 2, 5 }, y:size())
        close(name .. " eval", y, REF[name .. ".eval"], 1e-4)
      end)

      it("matches the train-mode logits, running stats, the input gradient and sampled parameter gradients", function()
        local m = loaded(name)
        m:train()
        local x = REF.x:clone():requires_grad(true)
        local y = m(x)
        close(name .. " train", y, REF[name .. ".train"], 1e-4)
        for k, b in m:named_buffers() do
          local want = REF[name .. ".running." .. k]
          if want then close(k, b, want, 1e-5) end
        end
        local loss = (y * REF[name .. ".cot"]):sum()
        loss:backward()
        close("grad_x", x.grad, REF[name .. ".grad_x"], 1e-4)
        local n = 0
        for k, p in m:named_parameters() do
          assert.is_not_nil(p.grad, k)
          local want = REF[name .. ".grad." .. k]
          if want then
            close("grad " .. k, p.grad, want, 1e-4)
            n = n + 1
          end
        end
        assert.equals(5, n)
      end)
    end)
  end
end)

describe("vl.video 3-D CNN shapes and parameter counts", function()
  it("C3D: output [B, classes], parameters in closed form", function()
    for _, c in ipairs({ { 8, 3, 16, 3 }, { 5, 1, 6, 2 }, { 3, 3, 4, 4 } }) do
      local m = video.C3D { num_classes = c[1], in_channels = c[2], width = c[3], stages = c[4] }
      assert.are.equal(c3d_params(c[1], c[2], c[3], c[4]), m:num_parameters())
      local y = vl.no_grad(function() return m(vl.rand(2, c[2], 4, 16, 16)) end)
      assert.are.same({ 2, c[1] }, y:size())
    end
    -- the documented counts of the default training model
    assert.are.equal(71160, video.C3D { num_classes = 8, width = 16 }:num_parameters())
  end)

  it("R(2+1)D: the paper's mid-channel count and the parameter total", function()
    -- M = floor(t d^2 Nin Nout / (d^2 Nin + t Nout)) (Tran et al.; torchvision's midplanes)
    assert.are.equal(23, video.r2plus1d_mid_channels(3, 64)) -- 5184 // 219
    assert.are.equal(144, video.r2plus1d_mid_channels(64, 64)) -- torchvision's midplanes for 64 -> 64
    assert.are.equal(288, video.r2plus1d_mid_channels(128, 128, 3, 3)) -- 442368 // 1536
    local c = video.Conv2Plus1D(6, 10)
    assert.are.equal(mid(6, 10), c.mid_channels)
    -- the factorised conv has (about) the parameters of the full 3x3x3 one
    local full = 27 * 6 * 10
    local fact = c.spatial.weight:numel() + c.temporal.weight:numel()
    assert.is_true(fact <= full and fact > full - 9 * 6 - 3 * 10)
    for _, cfg in ipairs({ { 8, 3, 16, 3 }, { 4, 1, 8, 2 }, { 6, 3, 6, 4 } }) do
      local m = video.R2Plus1D { num_classes = cfg[1], in_channels = cfg[2], width = cfg[3], stages = cfg[4] }
      assert.are.equal(r21_params(cfg[1], cfg[2], cfg[3], cfg[4]), m:num_parameters())
      local y = vl.no_grad(function() return m(vl.rand(2, cfg[2], 8, 16, 16)) end)
      assert.are.same({ 2, cfg[1] }, y:size())
    end
  end)

  it("SlowFast: pathway sizes, lateral channels, parameters", function()
    for _, cfg in ipairs({ { 8, 3, 16, 8, 8, 5, 3 }, { 4, 1, 8, 4, 4, 3, 2 }, { 6, 3, 32, 2, 8, 5, 3 } }) do
      local m = video.SlowFast { num_classes = cfg[1], in_channels = cfg[2], width = cfg[3], alpha = cfg[4],
        beta_inv = cfg[5], fusion_kernel = cfg[6], stages = cfg[7] }
      assert.are.equal(slowfast_params(cfg[1], cfg[2], cfg[3], cfg[5], cfg[6], cfg[7]), m:num_parameters())
      local T = 2 * cfg[4] + 1 -- not a multiple of alpha: slow gets ceil(T / alpha) frames
      local x = vl.rand(2, cfg[2], T, 16, 16)
      local slow, fast = m:pathways(x)
      assert.are.equal(3, slow:size(3))
      assert.are.equal(T, fast:size(3))
      -- slow frames are 1, 1 + alpha, 1 + 2 alpha
      assert.are.equal(0, (slow:select(3, 2) - x:select(3, 1 + cfg[4])):abs():max():item())
      local y = vl.no_grad(function() return m(x) end)
      assert.are.same({ 2, cfg[1] }, y:size())
      -- the two pathways given separately give the same logits
      m:eval()
      local a = vl.no_grad(function() return m(x) end)
      local b = vl.no_grad(function() return m({ slow, fast }) end)
      assert.are.equal(0, (a - b):abs():max():item())
    end
    local m = video.SlowFast { num_classes = 8, width = 16 }
    assert.are.equal(2, m.fast_width)                    -- beta = 1/8
    assert.are.same({ 5, 1, 1 }, m.fuse[1].conv.kernel_size) -- 5x1x1, stride alpha = 8, 2 beta C outputs
    assert.are.same({ 8, 1, 1 }, m.fuse[1].conv.stride)
    assert.are.equal(4, m.fuse[1].conv.out_channels)
  end)

  it("gives clear errors", function()
    local ok, err = pcall(video.C3D, { width = 4 })
    assert.is_false(ok)
    assert.matches("C3D: num_classes is required", err)
    ok, err = pcall(video.R2Plus1D, { num_classes = 0 })
    assert.is_false(ok)
    assert.matches("R2Plus1D: num_classes must be >= 1, got 0", err)
    local m = video.C3D { num_classes = 3, width = 2 }
    ok, err = pcall(m, vl.zeros(2, 3, 16, 16))
    assert.is_false(ok)
    assert.matches("C3D: expected a clip batch %[B, C, T, H, W%], got shape %[2, 3, 16, 16%]", err)
    ok, err = pcall(m, vl.zeros(1, 1, 4, 8, 8))
    assert.is_false(ok)
    assert.matches("C3D: input has 1 channels, expected 3", err)
    local sf = video.SlowFast { num_classes = 3, width = 8, alpha = 4 }
    ok, err = pcall(sf, { vl.zeros(1, 3, 3, 8, 8), vl.zeros(1, 3, 8, 8, 8) })
    assert.is_false(ok)
    assert.matches("SlowFast: the fast pathway's 8 frames give 2 after the stride%-4 lateral conv, the slow pathway has 3", err)
    ok, err = pcall(video.SlowFast, { num_classes = 3, fusion_kernel = 4 })
    assert.is_false(ok)
    assert.matches("fusion_kernel must be odd", err)
  end)
end)

describe("(2+1)D convolution gradcheck (float64)", function()
  it("Conv2Plus1D with a stride, through the module", function()
    vl.manual_seed(5)
    local c = video.Conv2Plus1D(2, 3, { stride = { 2, 2 } }):double()
    c:eval() -- running statistics: a fixed affine map
    vl.no_grad(function()
      c.bn.running_mean:copy_(vl.randn({ c.mid_channels }, { dtype = "float64" }):mul(0.1))
      c.bn.running_var:copy_(vl.rand({ c.mid_channels }, { dtype = "float64" }):add(0.5))
    end)
    local x = vl.randn({ 1, 2, 5, 5, 4 }, { dtype = "float64" }):requires_grad(true)
    local ok, msg = vl.gradcheck(function(xx, ws, wt)
      return vl.conv3d(vl.relu(vl.batch_norm(vl.conv3d(xx, ws, nil, { stride = { 1, 2, 2 }, padding = { 0, 1, 1 } }),
        c.bn.running_mean, c.bn.running_var, c.bn.weight, c.bn.bias, { training = false })), wt, nil,
        { stride = { 2, 1, 1 }, padding = { 1, 0, 0 } })
    end, { x, c.spatial.weight, c.temporal.weight }, { atol = 1e-6, rtol = 1e-5 })
    assert(ok, msg)
    -- and the module computes that same function
    local want = vl.conv3d(vl.relu(vl.batch_norm(vl.conv3d(x, c.spatial.weight, nil,
      { stride = { 1, 2, 2 }, padding = { 0, 1, 1 } }), c.bn.running_mean, c.bn.running_var, c.bn.weight, c.bn.bias,
      { training = false })), c.temporal.weight, nil, { stride = { 2, 1, 1 }, padding = { 1, 0, 0 } })
    assert.are.equal(0, (c(x) - want):abs():max():item())
  end)
end)
