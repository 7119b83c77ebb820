-- nn_transformer_spec.lua — MultiheadAttention, TransformerEncoderLayer,
-- TransformerEncoder, position embeddings and DropPath (vl.nn.transformer).
-- References: PyTorch 1.13 outputs, attention weights and input gradients
-- (scripts/fixtures/transformer.py -> tests/fixtures/transformer/), in
-- float32 (1e-5) and float64 (1e-10); vl.gradcheck (central differences) in
-- float64; closed forms for the position tables, DropPath and the init.
local vl = require "vl"
local nn = require "vl.nn"

local FIX = vl.safetensors.load("tests/fixtures/transformer/transformer.safetensors")

-- Largest |got - want| / max(1, |want|), in float64.
local function max_err(got, want)
  assert.are.same(want:size(), got:size())
  if want:numel() == 0 then return 0 end
  local g, w = got:detach():double(), want:double()
  return ((g - w):abs() / vl.maximum(w:abs(), vl.ones_like(w))):max():item()
end

local function close(name, got, want, tol)
  assert(got ~= nil, name .. ": missing")
  local e = max_err(got, want)
  assert(e <= tol, string.format("%s: max error %.3g > %g", name, e, tol))
end

-- Entries "case/prefix/..." of the fixture, as {rest = tensor}.
local function entries(case, prefix)
  local r, p = {}, case .. "/" .. prefix .. "/"
  for k, v in pairs(FIX) do
    if k:sub(1, #p) == p then r[k:sub(#p + 1)] = v end
  end
  return r
end

local BUILD = {
  mha_self = function() return nn.MultiheadAttention(16, 4) end,
  mha_cross_masks = function() return nn.MultiheadAttention(16, 4, { batch_first = true }) end,
  mha_float_mask = function() return nn.MultiheadAttention(16, 2) end,
  mha_kdim_unbatched = function() return nn.MultiheadAttention(16, 4, { kdim = 8, vdim = 12, bias = false }) end,
  enc_post_relu = function() return nn.TransformerEncoderLayer(16, 4, { dim_feedforward = 32, dropout = 0 }) end,
  enc_pre_gelu = function()
    return nn.TransformerEncoderLayer(16, 4, { dim_feedforward = 24, dropout = 0, activation = "gelu",
      layer_norm_eps = 1e-6, batch_first = true, norm_first = true })
  end,
  encoder_2 = function()
    local layer = nn.TransformerEncoderLayer(16, 2, { dim_feedforward = 20, dropout = 0, batch_first = true })
    return nn.TransformerEncoder(layer, 2, { norm = nn.LayerNorm(16) })
  end,
}

local OPTS = {
  mha_cross_masks = { average_attn_weights = false },
}

-- Runs case `name` in dtype; returns module, inputs, out, weights.
local function run_case(name, dtype)
  local m = BUILD[name]()
  m:load_state_dict(entries(name, "param"))
  m:to(dtype)
  m:train()
  local ins = entries(name, "in")
  local xs = {}
  for _, k in ipairs({ "query", "key", "value", "src" }) do
    if ins[k] then xs[k] = ins[k]:to(dtype):clone():requires_grad(true) end
  end
  local out, w
  if xs.src then
    out = m(xs.src, { src_mask = ins.src_mask, src_key_padding_mask = ins.src_key_padding_mask })
  else
    local key = xs.key or xs.query
    local value = xs.value or key
    local o = OPTS[name] or {}
    out, w = m(xs.query, key, value, { attn_mask = ins.attn_mask, key_padding_mask = ins.key_padding_mask,
      need_weights = true, average_attn_weights = o.average_attn_weights })
  end
  (out * FIX[name .. "/cot"]:to(dtype)):sum():backward()
  return m, xs, out, w
end

describe("nn transformer layers against PyTorch", function()
  for _, name in ipairs({ "mha_self", "mha_cross_masks", "mha_float_mask", "mha_kdim_unbatched", "enc_post_relu",
    "enc_pre_gelu", "encoder_2" }) do
    for _, c in ipairs({ { "float32", "32", 1e-5 }, { "float64", "64", 1e-10 } }) do
      local dtype, tag, tol = c[1], c[2], c[3]
      it(name .. " in " .. dtype .. ": output, weights and input gradients", function()
        local m, xs, out, w = run_case(name, dtype)
        assert.are.equal(dtype, out.dtype)
        close("out", out, FIX[name .. "/out" .. tag], tol)
        local wref = FIX[name .. "/w" .. tag]
        if wref then close("weights", w, wref, tol) end
        local n = 0
        for k, x in pairs(xs) do
          close("grad " .. k, x.grad, FIX[name .. "/g" .. tag .. "/" .. k], tol)
          n = n + 1
        end
        assert.is_true(n > 0)
        if tag == "32" then
          local named = {}
          for k, p in m:named_parameters() do named[k] = p end
          for k, g in pairs(entries(name, "g32/param")) do close("grad " .. k, named[k].grad, g, tol) end
        end
      end)
    end
  end

  it("state_dict keys are PyTorch's, in PyTorch's order", function()
    local want = {}
    for k in pairs(entries("encoder_2", "param")) do want[#want + 1] = k end
    local m = BUILD.encoder_2()
    local got = nn.keys(m:state_dict())
    table.sort(want)
    local sorted = {}
    for i, k in ipairs(got) do sorted[i] = k end
    table.sort(sorted)
    assert.are.same(want, sorted)
    assert.are.equal("layers.0.self_attn.in_proj_weight", got[1])
    assert.are.equal("norm.bias", got[#got])
    assert.are.same({ "q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight" },
      nn.keys(BUILD.mha_kdim_unbatched():state_dict()))
  end)
end)

describe("nn.MultiheadAttention", function()
  it("passes gradcheck in float64 (query, key, value and masks)", function()
    vl.manual_seed(7)
    local m = nn.MultiheadAttention(4, 2, { batch_first = true }):double()
    local q = vl.randn({ 2, 3, 4 }, { dtype = "float64" }):requires_grad(true)
    local k = vl.randn({ 2, 5, 4 }, { dtype = "float64" }):requires_grad(true)
    local v = vl.randn({ 2, 5, 4 }, { dtype = "float64" }):requires_grad(true)
    local kpm = vl.tensor({ { false, false, false, true, false }, { true, false, false, false, false } })
    local am = vl.randn({ 3, 5 }, { dtype = "float64" })
    local ok, msg = vl.gradcheck(function(a, b, c)
      local out = m(a, b, c, { key_padding_mask = kpm, attn_mask = am, need_weights = false })
      return out
    end, { q, k, v })
    assert(ok, msg)
    ok, msg = vl.gradcheck(function(a, b, c)
      local _, w = m(a, b, c, { average_attn_weights = false })
      return w
    end, { q, k, v })
    assert(ok, msg)
  end)

  it("parameters get gradients (gradcheck through in_proj_weight)", function()
    vl.manual_seed(8)
    local m = nn.MultiheadAttention(4, 2):double()
    local x = vl.randn({ 3, 2, 4 }, { dtype = "float64" })
    local W = m.in_proj_weight
    local ok, msg = vl.gradcheck(function(w)
      m.in_proj_weight = nn.Parameter(w)
      return (m(x, x, x, { need_weights = false }))
    end, { W:detach():clone():requires_grad(true) })
    assert(ok, msg)
  end)

  it("initialises as PyTorch: xavier-uniform in_proj_weight, zero biases", function()
    vl.manual_seed(1)
    local E = 32
    local m = nn.MultiheadAttention(E, 4)
    local bound = math.sqrt(6 / (E + 3 * E))
    local amax = m.in_proj_weight:abs():max():item()
    assert.is_true(amax <= bound and amax > 0.9 * bound)
    assert.are.equal(0, m.in_proj_bias:abs():max():item())
    assert.are.equal(0, m.out_proj.bias:abs():max():item())
    assert.are.same({ 3 * E, E }, m.in_proj_weight:size())
    assert.is_nil(m.q_proj_weight)
  end)

  it("need_weights = false returns nil weights and the same output", function()
    local m = nn.MultiheadAttention(8, 2)
    local x = vl.randn({ 4, 2, 8 })
    local a, w = m(x, x, x)
    local b, w2 = m(x, x, x, { need_weights = false })
    assert.is_not_nil(w)
    assert.is_nil(w2)
    close("out", b, a, 1e-6)
    -- weights are a distribution over keys
    close("row sums", w:sum(-1), vl.ones({ 2, 4 }), 1e-6)
  end)

  it("is_causal equals an explicit causal mask", function()
    local m = nn.MultiheadAttention(8, 2, { batch_first = true })
    local x = vl.randn({ 2, 5, 8 })
    local mask = vl.ones({ 5, 5 }, { dtype = "bool" }):triu(1)
    local a = m(x, x, x, { attn_mask = mask, need_weights = false })
    local b = m(x, x, x, { is_causal = true, need_weights = false })
    close("causal", b, a, 1e-6)
  end)

  it("dropout acts in training only", function()
    local m = nn.MultiheadAttention(8, 2, { dropout = 0.5 })
    local x = vl.randn({ 4, 2, 8 })
    m:eval()
    local a = m(x, x, x, { need_weights = false })
    close("eval", m(x, x, x, { need_weights = false }), a, 0)
    m:train()
    local b = m(x, x, x, { need_weights = false })
    assert.is_true(max_err(b, a) > 1e-3)
  end)

  it("errors name the module and the shapes at fault", function()
    local m = nn.MultiheadAttention(8, 2)
    local x = vl.randn({ 4, 2, 8 })
    local ok, err = pcall(m, vl.randn({ 4, 2, 6 }))
    assert.is_false(ok)
    assert.matches("MultiheadAttention 8, 2 heads: query has 6 features, expected embed_dim 8", err, 1, true)
    ok, err = pcall(m, x, x, x, { attn_mask = vl.zeros({ 3, 4 }, { dtype = "bool" }) })
    assert.is_false(ok)
    assert.matches("attn_mask of shape [3, 4] must be [4, 4]", err, 1, true)
    ok, err = pcall(m, x, x, x, { key_padding_mask = vl.zeros({ 4, 2 }, { dtype = "bool" }) })
    assert.is_false(ok)
    assert.matches("key_padding_mask of shape [4, 2] must be [2, 4]", err, 1, true)
    ok, err = pcall(m, x, vl.randn({ 5, 3, 8 }), vl.randn({ 5, 3, 8 }))
    assert.is_false(ok)
    assert.matches("same batch size", err, 1, true)
    ok, err = pcall(m, vl.randn({ 8 }))
    assert.is_false(ok)
    assert.matches("query must be 3-D (batched) or 2-D (unbatched), got shape [8]", err, 1, true)
    ok, err = pcall(nn.MultiheadAttention, 10, 3)
    assert.is_false(ok)
    assert.matches("MultiheadAttention: embed_dim (10) must be divisible by num_heads (3)", err, 1, true)
    ok, err = pcall(nn.MultiheadAttention, 8, 2, { dropout = 2 })
    assert.is_false(ok)
    assert.matches("dropout must be a number in [0, 1], got 2", err, 1, true)
  end)

  it("uses vl.attention (the fused op)", function()
    assert.is_function(vl.attention)
    local calls = 0
    local real = vl.attention
    vl.attention = function(...) calls = calls + 1; return real(...) end
    local ok, err = pcall(function()
      local m = nn.MultiheadAttention(8, 2)
      local x = vl.randn({ 4, 2, 8 })
      m(x, x, x, { need_weights = false })
    end)
    vl.attention = real
    assert(ok, err)
    assert.are.equal(1, calls)
  end)
end)

describe("nn.TransformerEncoderLayer / TransformerEncoder", function()
  it("TransformerEncoder deep-copies a layer; a factory makes fresh ones", function()
    local layer = nn.TransformerEncoderLayer(8, 2, { dim_feedforward = 16 })
    local enc = nn.TransformerEncoder(layer, 3)
    assert.are.equal(3, #enc.layers)
    local w1, w2 = enc.layers[1].linear1.weight, enc.layers[2].linear1.weight
    assert.are_not.equal(w1, w2)
    assert.is_false(vl.shares_storage(w1, w2))
    close("copy", w2, w1, 0)
    close("copy of the original", w1, layer.linear1.weight, 0)
    assert.is_true(w2:requires_grad())
    local f = nn.TransformerEncoder(function() return nn.TransformerEncoderLayer(8, 2, { dim_feedforward = 16 }) end, 2)
    assert.is_true(max_err(f.layers[1].linear1.weight, f.layers[2].linear1.weight) > 1e-3)
  end)

  it("eval() is deterministic, training applies dropout", function()
    local layer = nn.TransformerEncoderLayer(8, 2, { dim_feedforward = 16, dropout = 0.3 })
    local x = vl.randn({ 5, 2, 8 })
    layer:eval()
    local a = layer(x)
    close("eval", layer(x), a, 0)
    layer:train()
    assert.is_true(max_err(layer(x), a) > 1e-3)
  end)

  it("errors name the layer and its position", function()
    local enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, { dim_feedforward = 16 }), 2)
    local ok, err = pcall(enc, vl.randn({ 5, 2, 6 }))
    assert.is_false(ok)
    assert.matches("TransformerEncoder 2 layers: ModuleList[1] (TransformerEncoderLayer 8, 2 heads): " ..
      "MultiheadAttention 8, 2 heads: query has 6 features", err, 1, true)
    ok, err = pcall(nn.TransformerEncoderLayer, 8, 2, { activation = "tanh" })
    assert.is_false(ok)
    assert.matches('activation must be "relu", "gelu" or a function, got "tanh"', err, 1, true)
    ok, err = pcall(nn.TransformerEncoder, 5, 2)
    assert.is_false(ok)
    assert.matches("encoder_layer must be an nn.Module or a function", err, 1, true)
  end)

  it("accepts an activation function", function()
    local a = nn.TransformerEncoderLayer(8, 2, { dim_feedforward = 16, dropout = 0, activation = "relu" })
    local b = nn.TransformerEncoderLayer(8, 2, { dim_feedforward = 16, dropout = 0, activation = vl.relu })
    b:load_state_dict(a:state_dict())
    local x = vl.randn({ 3, 2, 8 })
    close("relu fn", b(x), a(x), 0)
  end)
end)

describe("position embeddings", function()
  it("sinusoidal table matches the closed form", function()
    local pe = nn.sinusoidal_position_encoding(7, 5, { dtype = "float64" })
    assert.are.same({ 7, 5 }, pe:size())
    for pos = 0, 6 do
      for i = 0, 4 do
        local f = pos / 10000 ^ ((i - i % 2) / 5)
        local want = i % 2 == 0 and math.sin(f) or math.cos(f)
        assert(math.abs(pe[pos + 1][i + 1] - want) < 1e-12, string.format("pe[%d][%d]", pos, i))
      end
    end
  end)

  it("SinusoidalPositionEmbedding adds the table along the sequence dim", function()
    local m = nn.SinusoidalPositionEmbedding(6, { max_len = 10 })
    assert.are.same({}, nn.keys(m:state_dict())) -- non-persistent
    local x = vl.zeros({ 4, 3, 6 })
    local y = m(x)
    close("seq-first", y:select(2, 3), m.pe:narrow(1, 1, 4), 0)
    local mb = nn.SinusoidalPositionEmbedding(6, { max_len = 10, batch_first = true })
    close("batch-first", mb(vl.zeros({ 3, 4, 6 })):select(1, 2), m.pe:narrow(1, 1, 4), 0)
    local ok, err = pcall(m, vl.zeros({ 11, 1, 6 }))
    assert.is_false(ok)
    assert.matches("SinusoidalPositionEmbedding 10x6: sequence length 11 exceeds max_len 10", err, 1, true)
  end)

  it("LearnedPositionEmbedding adds trained rows and gets their gradient", function()
    local m = nn.LearnedPositionEmbedding(8, 4, { batch_first = true })
    assert.are.same({ "weight" }, nn.keys(m:state_dict()))
    local x = vl.randn({ 2, 5, 4 })
    local y = m(x)
    close("rows", y - x, m.weight:narrow(1, 1, 5):unsqueeze(1):expand({ 2, 5, 4 }), 1e-6)
    y:sum():backward()
    local g = m.weight.grad
    close("grad used rows", g:narrow(1, 1, 5), vl.full({ 5, 4 }, 2), 0)
    close("grad unused rows", g:narrow(1, 6, 3), vl.zeros({ 3, 4 }), 0)
    local ok, err = pcall(m, vl.randn({ 2, 5, 3 }))
    assert.is_false(ok)
    assert.matches("LearnedPositionEmbedding 8x4: input has 3 features, expected 4", err, 1, true)
  end)
end)

describe("nn.DropPath", function()
  it("is the identity in eval and with p = 0", function()
    local x = vl.randn({ 4, 3, 2 })
    local d = nn.DropPath(0.5)
    d:eval()
    assert.are.equal(x, d(x))
    assert.are.equal(x, nn.DropPath(0)(x))
  end)

  it("drops whole samples and scales the kept ones by 1 / (1 - p)", function()
    vl.manual_seed(3)
    local p = 0.25
    local d = nn.DropPath(p)
    local n = 4000
    local x = vl.ones({ n, 3, 2 }):requires_grad(true)
    local y = d(x)
    local kept = 0
    local flat = y:reshape({ n, 6 })
    local mn, mx = flat:min(2), flat:max(2)
    close("per-sample constant", mn, mx, 0)
    for i, v in ipairs(mn:totable()) do
      assert(math.abs(v) < 1e-6 or math.abs(v - 1 / (1 - p)) < 1e-6, "sample " .. i .. " is " .. v)
      if v > 0 then kept = kept + 1 end
    end
    -- binomial(4000, 0.75): sd ~27, so 6 sd is ~0.041 of the rate
    assert(math.abs(kept / n - (1 - p)) < 0.041, "kept fraction " .. kept / n)
    y:sum():backward()
    close("grad = mask", x.grad, y:detach(), 0)
    close("p = 1 gives zeros", nn.DropPath(1)(vl.ones({ 3, 2 })), vl.zeros({ 3, 2 }), 0)
    local ok, err = pcall(nn.DropPath, -0.1)
    assert.is_false(ok)
    assert.matches("DropPath: p must be a number in [0, 1], got -0.1", err, 1, true)
  end)
end)
