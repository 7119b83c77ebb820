-- video_models_spec.lua — vl.video's models (TSN, TSM, TwoStream,
-- DividedSpaceTimeBlock, TimeSformer) against PyTorch transcriptions run
-- with the same random weights (scripts/fixtures/video_models.py ->
-- tests/fixtures/video_models/video_models.safetensors): outputs, input
-- gradients and every parameter gradient of sum(out * cot), float32, 1e-4.
-- Then independent checks: TSN's consensus is the mean of the per-segment
-- logits computed one segment at a time; the divided block's temporal
-- attention only mixes tokens of one patch position and its spatial
-- attention only tokens of one frame (perturbation tests); errors.
local vl = require "vl"
local nn = require "vl.nn"
local video = require "vl.video"

local REF = vl.safetensors.load("tests/fixtures/video_models/video_models.safetensors")

local fmt = string.format

-- Largest |got - want| / max(1, |want|), in float64.
local function max_err(got, want)
  assert.are.same(want:size(), got:size())
  local g, w = got:detach():double(), want:double()
  return ((g - w):abs() / vl.maximum(w:abs(), vl.ones_like(w))):max():item()
end

local function close(name, got, want, tol)
  assert(got ~= nil, name .. ": no tensor")
  local e = max_err(got, want)
  assert(e <= (tol or 1e-4), fmt("%s: max error %.3g > %g", name, e, tol or 1e-4))
end

-- The "<case>.sd." entries of the fixture, prefix stripped.
local function state_of(case)
  local sd, pre = {}, case .. ".sd."
  for k, v in pairs(REF) do
    if k:sub(1, #pre) == pre then sd[k:sub(#pre + 1)] = v end
  end
  return sd
end

-- Loads the case's weights (strict), runs m(inputs) in train mode, checks
-- the outputs, then the gradients of sum(out_k * cot).
local function check_case(case, m, nin, cot_of)
  m:load_state_dict(state_of(case))
  m:train()
  local xs = {}
  for i = 1, nin do
    local key = case .. ".x" .. (i == 1 and "" or tostring(i))
    xs[i] = REF[key]:clone():requires_grad(true)
  end
  local outs = table.pack(m(table.unpack(xs)))
  local names = { "out", "out2", "out3", "out4" }
  for i = 1, outs.n do close(case .. "." .. names[i], outs[i], REF[case .. "." .. names[i]]) end
  assert.is_nil(REF[case .. "." .. names[outs.n + 1]])
  local loss = (outs[cot_of or 1] * REF[case .. ".cot"]):sum()
  loss:backward()
  for i = 1, nin do
    local key = case .. ".grad_x" .. (i == 1 and "" or tostring(i))
    close(key, xs[i].grad, REF[key])
  end
  local n = 0
  for name, p in m:named_parameters() do
    close(case .. ".grad." .. name, p.grad, REF[case .. ".grad." .. name])
    n = n + 1
  end
  assert(n > 0)
  return m
end

local function small_tsn(opts)
  local o = { backbone = video.SmallCNN({ widths = { 8, 16 }, tsm = opts and opts.tsm, fold_div = 4 }),
    num_segments = 3, num_classes = 5, tsm = opts and opts.tsm }
  return video.TSN(o)
end

describe("vl.video models against PyTorch", function()
  it("TSN: logits, input and parameter gradients (train mode), eval logits", function()
    local m = check_case("tsn", small_tsn(), 1)
    -- eval (running statistics of the fixture, before its train-mode pass)
    m:load_state_dict(state_of("tsn"))
    m:eval()
    local y = vl.no_grad(function() return m(REF["tsn.x"]) end)
    assert.are.same({ 2, 5 }, y:size())
    close("tsn.out_eval", y, REF["tsn.out_eval"])
  end)

  it("TSM: TSN with temporal shifts in the backbone", function()
    local m = check_case("tsm", small_tsn({ tsm = true }), 1)
    local shifts = 0
    for _, mod in ipairs(m:modules()) do
      if mod:is_a(video.TemporalShift) then
        shifts = shifts + 1
        assert.are.equal(3, mod.segments)
      end
    end
    assert.are.equal(1, shifts)
  end)

  it("TwoStream avg fusion: fused scores, stream logits, gradients", function()
    local m = video.TwoStream { rgb = video.SmallCNN({ widths = { 8, 16 } }),
      flow = video.SmallCNN({ in_channels = 4, widths = { 8, 16 } }), flow_frames = 2, num_classes = 5,
      fusion = "avg", flow_weight = 1.5 }
    check_case("ts_avg", m, 2)
  end)

  it("TwoStream concat fusion", function()
    local m = video.TwoStream { rgb = video.SmallCNN({ widths = { 8, 16 } }),
      flow = video.SmallCNN({ in_channels = 4, widths = { 8, 16 } }), flow_frames = 2, num_classes = 5,
      fusion = "concat" }
    check_case("ts_cat", m, 2)
  end)

  it("DividedSpaceTimeBlock: TimeSformer's block", function()
    local blk = video.DividedSpaceTimeBlock { dim = 16, heads = 2 }
    blk:load_state_dict(state_of("block"))
    blk:train()
    local x = REF["block.x"]:clone():requires_grad(true)
    local y = blk(x, 3)
    close("block.out", y, REF["block.out"])
    ;(y * REF["block.cot"]):sum():backward()
    close("block.grad_x", x.grad, REF["block.grad_x"])
    for name, p in blk:named_parameters() do close("block.grad." .. name, p.grad, REF["block.grad." .. name]) end
  end)

  it("TimeSformer: logits and gradients; state_dict keys are TimeSformer's", function()
    local m = video.TimeSformer { img_size = 16, patch_size = 8, frames = 3, dim = 16, depth = 2, heads = 2,
      num_classes = 5 }
    local want = {}
    for k in pairs(state_of("tf")) do want[#want + 1] = k end
    table.sort(want)
    local got = nn.keys(m:state_dict())
    assert.are.equal("cls_token", got[1])
    assert.are.equal("head.bias", got[#got])
    table.sort(got)
    assert.are.same(want, got)
    check_case("tf", m, 1)
  end)
end)

describe("vl.video models: independent checks", function()
  it("TSN consensus is the mean of the per-segment logits (each segment run alone)", function()
    vl.manual_seed(3)
    for _, consensus in ipairs({ "avg", "max" }) do
      local m = video.TSN { num_segments = 4, num_classes = 6, consensus = consensus,
        backbone = video.SmallCNN({ widths = { 4, 8 } }) }
      m:eval() -- running statistics: a segment's logits do not depend on the others
      local x = vl.randn({ 2, 4, 3, 8, 8 })
      local y = vl.no_grad(function() return m(x) end)
      assert.are.same({ 2, 6 }, y:size())
      local seg = {}
      for s = 1, 4 do
        local xs = x:select(2, s):contiguous()  -- [2, 3, 8, 8]
        seg[s] = vl.no_grad(function() return m.fc(m.backbone(xs)) end)
      end
      for b = 1, 2 do
        for k = 1, 6 do
          local want = consensus == "avg" and 0 or -math.huge
          for s = 1, 4 do
            local v = seg[s][b][k]
            if consensus == "avg" then want = want + v / 4 else want = math.max(want, v) end
          end
          local got = y[b][k]
          assert(math.abs(got - want) < 1e-5, fmt("%s consensus [%d,%d]: %g vs %g", consensus, b, k, got, want))
        end
      end
      local sl = vl.no_grad(function() return m:segment_logits(x) end)
      assert.are.same({ 2, 4, 6 }, sl:size())
    end
  end)

  it("TwoStream avg: scores are probabilities, the flow-weighted mean of the two softmaxes", function()
    vl.manual_seed(4)
    local m = video.TwoStream { num_classes = 4, flow_frames = 3, flow_weight = 2 }
    m:eval()
    local p, lr, lf = vl.no_grad(function() return m(vl.randn({ 2, 3, 8, 8 }), vl.randn({ 2, 6, 8, 8 })) end)
    for b = 1, 2 do
      local er, ef, sr, sf = {}, {}, 0, 0
      for k = 1, 4 do
        er[k] = math.exp(lr[b][k]); sr = sr + er[k]
        ef[k] = math.exp(lf[b][k]); sf = sf + ef[k]
      end
      local tot = 0
      for k = 1, 4 do
        local want = (er[k] / sr + 2 * ef[k] / sf) / 3
        assert.is_true(math.abs(p[b][k] - want) < 1e-6)
        tot = tot + p[b][k]
      end
      assert.is_true(math.abs(tot - 1) < 1e-5)
    end
  end)

  -- Which output tokens of the block change when input token (n0, t0) is
  -- perturbed? -> changed[n][t] (n patch, t frame), changed_cls.
  local function influence(blk, B, N, T, n0, t0)
    local D = blk.dim
    vl.manual_seed(11)
    local x = vl.randn({ B, 1 + N * T, D })
    local x2 = x:clone()
    local idx = 1 + (n0 - 1) * T + t0 -- token index (1-based), patch-major
    vl.no_grad(function() x2:narrow(2, idx, 1):add_(vl.randn({ B, 1, D })) end)
    local y = vl.no_grad(function() return blk(x, T) end)
    local y2 = vl.no_grad(function() return blk(x2, T) end)
    local d = (y2 - y):abs():amax({ 1, 3 }) -- per token
    local changed = {}
    for n = 1, N do
      changed[n] = {}
      for t = 1, T do changed[n][t] = d[1 + (n - 1) * T + t] > 1e-5 end
    end
    return changed, d[1] > 1e-5
  end

  it("temporal attention mixes only the tokens of one patch position", function()
    vl.manual_seed(5)
    local blk = video.DividedSpaceTimeBlock { dim = 8, heads = 2 }
    -- switch the spatial branch off: what remains is temporal attention and the per-token MLP
    vl.no_grad(function()
      blk.attn.proj.weight:zero_()
      blk.attn.proj.bias:zero_()
    end)
    local N, T = 4, 3
    local ch, cls = influence(blk, 2, N, T, 2, 3)
    for n = 1, N do
      for t = 1, T do
        assert.are.equal(n == 2, ch[n][t], fmt("token (patch %d, frame %d)", n, t))
      end
    end
    assert.is_false(cls)
  end)

  it("spatial attention mixes only the tokens of one frame (and the class token)", function()
    vl.manual_seed(6)
    local blk = video.DividedSpaceTimeBlock { dim = 8, heads = 2 }
    vl.no_grad(function()
      blk.temporal_fc.weight:zero_()
      blk.temporal_fc.bias:zero_()
    end)
    local N, T = 4, 3
    local ch, cls = influence(blk, 2, N, T, 2, 3)
    for n = 1, N do
      for t = 1, T do
        assert.are.equal(t == 3, ch[n][t], fmt("token (patch %d, frame %d)", n, t))
      end
    end
    assert.is_true(cls)
    -- the full block: the perturbation reaches every token (time then space)
    vl.manual_seed(6)
    local full = video.DividedSpaceTimeBlock { dim = 8, heads = 2 }
    local ch2 = influence(full, 2, N, T, 2, 3)
    for n = 1, N do
      for t = 1, T do assert.is_true(ch2[n][t]) end
    end
  end)

  it("TimeSformer init: temporal_fc zero except in the first block, zero time_embed; drop_path rises", function()
    local m = video.TimeSformer { img_size = 8, patch_size = 4, frames = 2, dim = 8, depth = 3, heads = 2,
      num_classes = 3, drop_path = 0.2 }
    assert.is_true(m.blocks[1].temporal_fc.weight:abs():sum():item() > 0)
    for i = 2, 3 do assert.are.equal(0, m.blocks[i].temporal_fc.weight:abs():sum():item()) end
    assert.are.equal(0, m.time_embed:abs():sum():item())
    assert.is_nil(m.blocks[1].drop_path)
    assert.is_true(math.abs(m.blocks[2].drop_path.p - 0.1) < 1e-12)
    assert.is_true(math.abs(m.blocks[3].drop_path.p - 0.2) < 1e-12)
    m:train()
    local y = m(vl.randn({ 2, 3, 2, 8, 8 }))
    assert.are.same({ 2, 3 }, y:size())
    assert.are.same({ 2, 8 }, m:features(vl.randn({ 2, 3, 2, 8, 8 })):size())
  end)
end)

describe("vl.video: one table", function()
  it("extends vl.video and merges vl.video.cnn3d", function()
    assert.are.equal(vl.video, video)
    local cnn3d = require "vl.video.cnn3d"
    for _, k in ipairs({ "C3D", "R2Plus1D", "SlowFast" }) do assert.are.equal(cnn3d[k], video[k]) end
  end)
end)

describe("vl.video models: bad input", function()
  local function fails(pat, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok)
    assert(tostring(err):find(pat, 1, true), "message: " .. tostring(err))
  end

  it("gives clear errors", function()
    local tsn = video.TSN { num_classes = 3, num_segments = 2 }
    fails("expected input [B, 2, 3, H, W] (batch, segments, channels, height, width), got shape [2, 3, 3, 8, 8]",
      tsn, vl.randn({ 2, 3, 3, 8, 8 }))
    fails("TSN: option 'num_classes' is required", video.TSN, {})
    fails("TSN: unknown option 'segments'", video.TSN, { num_classes = 2, segments = 3 })
    fails("consensus must be \"avg\" or \"max\"", video.TSN, { num_classes = 2, consensus = "mean" })
    fails("the backbone has no video.TemporalShift module", video.TSN,
      { num_classes = 2, tsm = true, backbone = video.SmallCNN() })
    fails("give backbone_features", video.TSN, { num_classes = 2, backbone = nn.Identity() })
    fails("unknown backbone preset 'resnet'", video.TSN, { num_classes = 2, backbone = "resnet" })
    local ts = video.TwoStream { num_classes = 3, flow_frames = 2 }
    fails("flow input must be [N, 4, H, W] (x and y flow of 2 frames), got shape [1, 3, 8, 8]", ts,
      vl.randn({ 1, 3, 8, 8 }), vl.randn({ 1, 3, 8, 8 }))
    fails("fusion must be \"avg\" or \"concat\"", video.TwoStream, { num_classes = 2, fusion = "max" })
    local blk = video.DividedSpaceTimeBlock { dim = 8, heads = 2 }
    fails("12 tokens is not 1 + N*T for T = 3 frames", blk, vl.randn({ 1, 12, 8 }), 3)
    fails("T (the number of frames) must be a positive integer", blk, vl.randn({ 1, 13, 8 }))
    fails("dim (10) must be divisible by heads (4)", video.DividedSpaceTimeBlock, { dim = 10, heads = 4 })
    local tf = video.TimeSformer { img_size = 8, patch_size = 4, frames = 2, dim = 8, depth = 1, heads = 2,
      num_classes = 3 }
    fails("expected clips [B, 3, 2, 8, 8] (batch, channels, frames, height, width), got shape [1, 3, 4, 8, 8]", tf,
      vl.randn({ 1, 3, 4, 8, 8 }))
    fails("img_size (10) must be divisible by patch_size (4)", video.TimeSformer,
      { img_size = 10, patch_size = 4, frames = 2, dim = 8, depth = 1, heads = 2, num_classes = 3 })
    local sh = video.TemporalShift()
    fails("segments is not set", sh, vl.randn({ 4, 8, 2, 2 }))
  end)
end)
