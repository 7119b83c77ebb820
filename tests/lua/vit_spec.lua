-- vit_spec.lua — vl.vit against torchvision 0.14's VisionTransformer.
-- scripts/fixtures/vit_torchvision.py built a small torchvision ViT
-- (32x32 images, patch 8, 2 blocks, 2 heads, hidden 32, MLP 64, 10
-- classes) with random weights and wrote its state_dict with torchvision's
-- keys, an input batch, the logits, an input gradient, the per-block
-- attention weights, and logits at 48x48 after torchvision's
-- interpolate_embeddings (tests/fixtures/vit/). The weights load strictly,
-- with no renaming.
local vl = require "vl"
local nn = require "vl.nn"
local vit = require "vl.vit"

local DIR = "tests/fixtures/vit/"
local REF = vl.safetensors.load(DIR .. "vit_ref.safetensors")

local CFG = { image_size = 32, patch_size = 8, num_layers = 2, num_heads = 2, hidden_dim = 32, mlp_dim = 64,
  num_classes = 10 }

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

local function loaded()
  local m = vit.VisionTransformer(CFG)
  m:load(DIR .. "vit_torchvision.safetensors") -- strict
  return m
end

describe("vl.vit against torchvision", function()
  it("state_dict keys are exactly torchvision's, in its order", function()
    local sd = vl.safetensors.load(DIR .. "vit_torchvision.safetensors")
    local m = vit.VisionTransformer(CFG)
    local keys = nn.keys(m:state_dict())
    local want = {}
    for k in pairs(sd) do want[#want + 1] = k end
    table.sort(want)
    local got = {}
    for i, k in ipairs(keys) do got[i] = k end
    table.sort(got)
    assert.are.same(want, got)
    assert.are.same({ "class_token", "conv_proj.weight", "conv_proj.bias", "encoder.pos_embedding",
      "encoder.layers.encoder_layer_0.ln_1.weight" }, { table.unpack(keys, 1, 5) })
    assert.are.equal("encoder.layers.encoder_layer_0.mlp.3.bias", keys[16])
    assert.are.equal("heads.head.bias", keys[#keys])
  end)

  it("loads the torchvision weights strictly and matches its logits to 1e-4", function()
    local m = loaded()
    m:eval()
    local logits = vl.no_grad(function() return m(REF.x) end)
    assert.are.same({ 3, 10 }, logits:size())
    close("logits", logits, REF.logits, 1e-4)
  end)

  it("matches torchvision's input gradient", function()
    local m = loaded()
    m:train() -- dropout 0: the same function
    local x = REF.x:clone():requires_grad(true)
    local out = m(x)
    local loss = (out * REF.cot):sum()
    loss:backward()
    close("grad_x", x.grad, REF.grad_x, 1e-4)
    assert.is_not_nil(m.encoder.pos_embedding.grad)
    assert.is_not_nil(m.class_token.grad)
  end)

  it("attention_maps gives torchvision's per-head weights, in eval, and restores the mode", function()
    local m = loaded()
    m:train()
    local maps = vit.attention_maps(m, REF.x)
    assert.are.equal(2, #maps)
    for i = 1, 2 do
      assert.are.same({ 3, 2, 17, 17 }, maps[i]:size())
      assert.is_false(maps[i]:requires_grad())
      close("attn " .. i, maps[i], REF["attn." .. (i - 1)], 1e-5)
    end
    assert.is_true(m.training)
    assert.is_true(m.encoder.layers[1].self_attention.training)
  end)

  it("interpolates the position embedding (bicubic, align_corners) for 48x48 inputs", function()
    assert.is_function(vl.interpolate)
    local m = loaded()
    m:eval()
    local logits = vl.no_grad(function() return m(REF.x48) end)
    close("logits48", logits, REF.logits48, 1e-4)
    local sd = vit.interpolate_embeddings(48, 8, m:state_dict())
    close("pos48", sd["encoder.pos_embedding"], REF.pos48, 1e-5)
    local m48 = vit.VisionTransformer({ image_size = 48, patch_size = 8, num_layers = 2, num_heads = 2,
      hidden_dim = 32, mlp_dim = 64, num_classes = 10 })
    m48:load_state_dict(sd)
    m48:eval()
    close("logits48 (converted)", vl.no_grad(function() return m48(REF.x48) end), REF.logits48, 1e-4)
  end)
end)

describe("vl.vit construction", function()
  it("initialises as torchvision: zero head and class token, trunc-normal patch embedding", function()
    vl.manual_seed(5)
    local m = vit.VisionTransformer({ image_size = 16, patch_size = 4, num_layers = 1, num_heads = 2,
      hidden_dim = 16, mlp_dim = 32, num_classes = 5, in_channels = 1 })
    assert.are.equal(0, m.heads.head.weight:abs():max():item())
    assert.are.equal(0, m.class_token:abs():max():item())
    local std = math.sqrt(1 / 16)
    local w = m.conv_proj.weight
    assert.are.same({ 16, 1, 4, 4 }, w:size())
    assert.is_true(w:abs():max():item() <= 2) -- truncated at +-2 (absolute, as torchvision)
    local s = w:std():item()
    assert(math.abs(s - std) < 0.35 * std, "conv_proj std " .. s)
    local mlp0 = m.encoder.layers[1].mlp[1]
    local bound = math.sqrt(6 / (16 + 32))
    assert.is_true(mlp0.weight:abs():max():item() <= bound)
    assert.is_true(mlp0.bias:abs():max():item() < 1e-5)
    local pos = m.encoder.pos_embedding
    assert.are.same({ 1, 17, 16 }, pos:size())
    assert(math.abs(pos:std():item() - 0.02) < 0.006)
  end)

  it("presets take overrides", function()
    local m = vit.vit_tiny_16({ image_size = 32, num_layers = 1, num_classes = 10 })
    assert.are.equal(192, m.hidden_dim)
    assert.are.equal(3, m.encoder.layers[1].self_attention.num_heads)
    assert.are.equal(1, #m.encoder.layers)
    assert.are.same({ 1, 5, 192 }, m.encoder.pos_embedding:size())
    assert.are.equal(384, vit.presets.vit_small_16.hidden_dim)
    assert.are.equal(3072, vit.presets.vit_base_16.mlp_dim)
    local out = vl.no_grad(function() return m(vl.randn({ 2, 3, 32, 32 })) end)
    assert.are.same({ 2, 10 }, out:size())
  end)

  it("a distillation token adds dist_token and heads.head_dist", function()
    vl.manual_seed(9)
    local cfg = { image_size = 16, patch_size = 8, num_layers = 1, num_heads = 2, hidden_dim = 8, mlp_dim = 16,
      num_classes = 3, distillation = true }
    local m = vit.VisionTransformer(cfg)
    local keys = nn.keys(m:state_dict())
    assert.are.same({ "class_token", "dist_token", "conv_proj.weight" }, { table.unpack(keys, 1, 3) })
    assert.are.same({ "heads.head.weight", "heads.head.bias", "heads.head_dist.weight", "heads.head_dist.bias" },
      { table.unpack(keys, #keys - 3, #keys) })
    assert.are.same({ 1, 6, 8 }, m.encoder.pos_embedding:size())
    vl.no_grad(function()
      m.heads.head.weight:normal_(0, 1)
      m.heads.head_dist.weight:normal_(0, 1)
    end)
    local x = vl.randn({ 2, 3, 16, 16 })
    m:train()
    local a, b = m(x)
    assert.are.same({ 2, 3 }, a:size())
    assert.are.same({ 2, 3 }, b:size())
    assert.is_true(max_err(a, b) > 1e-3)
    m:eval()
    close("eval mean", m(x), (a + b) * 0.5, 1e-6)
    local y = m:features(x)
    close("cls head", a, vl.linear(y:select(2, 1), m.heads.head.weight, m.heads.head.bias), 1e-6)
    close("dist head", b, vl.linear(y:select(2, 2), m.heads.head_dist.weight, m.heads.head_dist.bias), 1e-6)
  end)

  it("drop_path rises linearly over the blocks and trains", function()
    local m = vit.VisionTransformer({ image_size = 8, patch_size = 4, num_layers = 3, num_heads = 1, hidden_dim = 4,
      mlp_dim = 8, num_classes = 2, drop_path = 0.2, in_channels = 1 })
    assert.is_nil(m.encoder.layers[1].drop_path)
    assert.are.equal(0.1, m.encoder.layers[2].drop_path.p)
    assert.are.equal(0.2, m.encoder.layers[3].drop_path.p)
    local out = m(vl.randn({ 4, 1, 8, 8 }))
    out:sum():backward()
    assert.is_not_nil(m.conv_proj.weight.grad)
  end)

  it("errors name the model and what was wrong", function()
    local m = vit.VisionTransformer(CFG)
    local ok, err = pcall(m, vl.randn({ 2, 1, 32, 32 }))
    assert.is_false(ok)
    assert.matches("VisionTransformer 32px/8: expected images [N, 3, H, W], got shape [2, 1, 32, 32]", err, 1, true)
    ok, err = pcall(m, vl.randn({ 2, 3, 30, 32 }))
    assert.is_false(ok)
    assert.matches("VisionTransformer 32px/8: image size 30x32 is not a multiple of patch_size 8", err, 1, true)
    ok, err = pcall(vit.VisionTransformer, { image_size = 30, patch_size = 8, num_layers = 1, num_heads = 2,
      hidden_dim = 8, mlp_dim = 8 })
    assert.is_false(ok)
    assert.matches("VisionTransformer: image_size (30) must be divisible by patch_size (8)", err, 1, true)
    ok, err = pcall(vit.VisionTransformer, { image_size = 32, patch_size = 8, num_layers = 1, num_heads = 2 })
    assert.is_false(ok)
    assert.matches("VisionTransformer: option 'hidden_dim' is required", err, 1, true)
    ok, err = pcall(vit.vit_tiny_16, { hiden_dim = 3 })
    assert.is_false(ok)
    assert.matches("VisionTransformer: unknown option 'hiden_dim'", err, 1, true)
    ok, err = pcall(vit.attention_maps, nn.Linear(2, 2), vl.randn({ 1, 2 }))
    assert.is_false(ok)
    assert.matches("attention_maps: expected a vit.VisionTransformer", err, 1, true)
  end)
end)
