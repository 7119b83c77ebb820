-- video_text_spec.lua — nn.InfoNCELoss (closed forms for the value and the
-- gradient), scripts/video_text.lua's caption handling, retrieval metric
-- and chance level (checked by enumeration), and a tiny training run on
-- moving_shapes: the loss goes down, the temperature starts at CLIP's
-- value and is clamped, and an interrupted run resumes to the same numbers.
local vl = require "vl"
local nn = require "vl.nn"
local data = require "vl.data"

local VT = assert(loadfile("scripts/video_text.lua"))("--module")

local fmt = string.format

local function near(got, want, tol, what)
  assert(math.abs(got - want) <= tol, fmt("%s: %.9g vs %.9g", what or "value", got, want))
end

-- A fixed similarity matrix and the loss written out with math.exp / math.log.
local L = { { 2.0, 0.0, 1.0 }, { 0.5, 1.0, -1.0 }, { 0.0, 0.3, 3.0 } }

local function lse(xs)
  local m = -math.huge
  for _, x in ipairs(xs) do m = math.max(m, x) end
  local s = 0
  for _, x in ipairs(xs) do s = s + math.exp(x - m) end
  return m + math.log(s)
end

-- loss with targets P (rows: P[i][j] / sum_j; columns: P[i][j] / sum_i)
local function closed_form(P)
  local n = #L
  local lr, lc = 0, 0
  for i = 1, n do
    local row, rs = {}, 0
    for j = 1, n do row[j] = L[i][j]; rs = rs + P[i][j] end
    local z = lse(row)
    for j = 1, n do lr = lr - P[i][j] / rs * (L[i][j] - z) end
  end
  for j = 1, n do
    local col, cs = {}, 0
    for i = 1, n do col[i] = L[i][j]; cs = cs + P[i][j] end
    local z = lse(col)
    for i = 1, n do lc = lc - P[i][j] / cs * (L[i][j] - z) end
  end
  return (lr / n + lc / n) / 2, lr / n
end

local EYE = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } }

describe("nn.InfoNCELoss", function()
  it("equals the closed form on a fixed similarity matrix (symmetric and one-way)", function()
    local logits = vl.tensor(L, { dtype = "float64" })
    local want, want_rows = closed_form(EYE)
    near(nn.InfoNCELoss()(logits):item(), want, 1e-12, "symmetric")
    near(nn.InfoNCELoss({ symmetric = false })(logits):item(), want_rows, 1e-12, "rows")
    -- PyTorch's F.cross_entropy on the same matrix (rows; (rows + columns) / 2)
    near(want_rows, 0.3577342541165929, 1e-12, "rows vs PyTorch")
    near(want, 0.35757735249371625, 1e-12, "symmetric vs PyTorch")
  end)

  it("has the closed-form gradient (softmax_row - I + softmax_col - I) / (2N)", function()
    local logits = vl.tensor(L, { dtype = "float64" }):requires_grad(true)
    nn.InfoNCELoss()(logits):backward()
    local g = logits.grad
    for i = 1, 3 do
      for j = 1, 3 do
        local zr = lse(L[i])
        local zc = lse({ L[1][j], L[2][j], L[3][j] })
        local d = (i == j) and 1 or 0
        local want = ((math.exp(L[i][j] - zr) - d) + (math.exp(L[i][j] - zc) - d)) / 6
        near(g[i][j], want, 1e-12, fmt("grad[%d][%d]", i, j))
      end
    end
  end)

  it("spreads the target over several positives", function()
    local P = { { 1, 1, 0 }, { 1, 1, 0 }, { 0, 0, 1 } }
    local want = closed_form(P)
    near(want, 0.7742440191603829, 1e-12, "closed form vs PyTorch (probability targets)")
    local logits = vl.tensor(L, { dtype = "float64" })
    near(nn.InfoNCELoss()(logits, vl.tensor(P):to("bool")):item(), want, 1e-12, "bool positives")
    near(nn.InfoNCELoss()(logits, vl.tensor(P, { dtype = "float64" })):item(), want, 1e-12, "float positives")
    near(nn.InfoNCELoss()(logits, vl.eye(3)):item(), closed_form(EYE), 1e-12, "identity positives")
  end)

  it("refuses a non-square matrix and positives without the diagonal", function()
    local f = nn.InfoNCELoss()
    local ok, err = pcall(f, vl.randn({ 2, 3 }))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("logits must be a non-empty square matrix [N, N] (row i's positive is " ..
      "column i), got shape [2, 3]", 1, true))
    ok, err = pcall(f, vl.randn({ 3, 3 }), vl.zeros({ 3, 3 }))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("positives must mark the diagonal pairs", 1, true))
    ok, err = pcall(f, vl.randn({ 3, 3 }), vl.ones({ 2, 3 }))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("positives of shape [2, 3] must match logits [3, 3]", 1, true))
  end)
end)

describe("video_text: captions and retrieval", function()
  it("tokenizes, builds a sorted vocabulary and pads ids", function()
    local caps = { "a red circle moving left", "the blue square is growing", "a red cross, shrinking" }
    local v = VT.build_vocab(caps)
    assert.are.same({ "<pad>", "<unk>", "a", "blue", "circle", "cross", "growing", "is", "left", "moving", "red",
      "shrinking", "square", "the" }, v.words)
    local ids = VT.encode(v, { "a red circle moving left", "the red thing, shrinking" })
    assert.are.same({ { 3, 11, 5, 10, 9 }, { 14, 11, 2, 12, 1 } }, ids:totable())
    assert.are.equal("int64", ids.dtype)
    assert.are.equal("red circle moving left", VT.content_key("the red circle is moving left"))
    assert.are.equal("red circle moving left", VT.content_key("a red circle, moving left"))
  end)

  it("R@k counts a hit when a retrieved clip has the query's caption content", function()
    -- 4 queries x 4 videos; keys: videos 1 and 3 share "x"
    local keys = { "x", "y", "x", "z" }
    local sim = vl.tensor({
      { 0.1, 0.9, 0.2, 0.0 },  -- x: best y, then x(3) -> R@1 miss, R@2 hit
      { 0.0, 0.1, 0.9, 0.2 },  -- y: best x, z, y -> R@1 miss, R@3 hit
      { 0.9, 0.0, 0.1, 0.2 },  -- x: best video 1 (also "x") -> hit at 1
      { 0.0, 0.0, 0.0, 1.0 },  -- z: hit at 1
    })
    local r = VT.retrieval(sim, keys, keys, { 1, 2, 3, 5 })
    near(r[1], 2 / 4, 1e-12, "R@1")
    near(r[2], 3 / 4, 1e-12, "R@2")
    near(r[3], 1, 1e-12, "R@3")
    near(r[5], 1, 1e-12, "R@5 (k > N)")
  end)

  it("the chance level equals the mean over every ranking (enumerated)", function()
    local keys = { "x", "y", "x", "z", "x" }
    local N = #keys
    local perms = {}
    local function permute(a, k)
      if k > N then perms[#perms + 1] = { table.unpack(a) } return end
      for i = k, N do
        a[k], a[i] = a[i], a[k]
        permute(a, k + 1)
        a[k], a[i] = a[i], a[k]
      end
    end
    permute({ 1, 2, 3, 4, 5 }, 1)
    assert.are.equal(120, #perms)
    for _, k in ipairs({ 1, 2, 3 }) do
      local hits, total = 0, 0
      for _, q in ipairs(keys) do
        for _, p in ipairs(perms) do
          for r = 1, k do
            if keys[p[r]] == q then hits = hits + 1 break end
          end
          total = total + 1
        end
      end
      near(VT.chance(keys, keys, { k })[k], hits / total, 1e-12, "chance R@" .. k)
    end
  end)
end)

describe("video_text: a tiny training run", function()
  local threads = vl.get_num_threads()
  teardown(function() vl.set_num_threads(threads) end) -- --threads 1 below sets the process's count
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local ARGS = { "--epochs", "4", "--n", "64", "--test-n", "16", "--batch", "16", "--frames", "4", "--size", "16",
    "--patch", "8", "--dim", "16", "--depth", "1", "--heads", "2", "--embed", "16", "--width", "16", "--lr", "0.003",
    "--quiet", "--no-baseline", "--threads", "1" }
  local function opts(extra)
    local a = { table.unpack(ARGS) }
    for _, x in ipairs(extra or {}) do a[#a + 1] = x end
    local o = VT.parse_args(a)
    o.log = function() end
    return o
  end

  it("starts at CLIP's temperature, clamps it at 100, and its loss goes down", function()
    local o = opts({ "--out", dir .. "/a.safetensors", "--fresh" })
    local m = VT.build_model(o, 10, 3)
    near(m.logit_scale:item(), math.log(1 / 0.07), 1e-6, "logit_scale init")
    vl.no_grad(function() m.logit_scale:fill_(7) end)
    VT.clamp_logit_scale(m)
    near(math.exp(m.logit_scale:item()), 100, 1e-3, "clamped scale")
    -- logits = exp(s) * normalised video . normalised text
    vl.manual_seed(2)
    local x, ids = vl.rand({ 3, 3, 4, 16, 16 }), vl.tensor({ { 3, 4 }, { 5, 1 }, { 6, 7 } }, { dtype = "int64" })
    m:eval()
    local lg = vl.no_grad(function() return m(x, ids) end)
    local v = vl.no_grad(function() return m:encode_video(x) end)
    local t = vl.no_grad(function() return m:encode_text(ids) end)
    near(v[2]:norm():item(), 1, 1e-5, "unit video embedding")
    near(lg[2][3], 100 * (v[2] * t[3]):sum():item(), 1e-3, "logit[2][3]")

    local r = VT.run(o)
    local h = r.history
    assert.are.equal(4, #h)
    assert(h[4].loss < h[1].loss - 0.05, fmt("loss did not go down: %.4f -> %.4f", h[1].loss, h[4].loss))
    assert.is_true(r.trained.r1 >= 0 and r.trained.r1 <= 1 and r.trained.r5 >= r.trained.r1)
    assert.is_true(r.chance.r5 > r.chance.r1)
  end)

  it("resumes an interrupted run to the numbers of an uninterrupted one", function()
    local full = VT.run(opts({ "--out", dir .. "/full.safetensors", "--fresh", "--epochs", "2" }))
    local part = VT.run(opts({ "--out", dir .. "/part.safetensors", "--fresh", "--epochs", "2", "--stop-after", "1" }))
    assert.are.equal(1, #part.history)
    local rest = VT.run(opts({ "--out", dir .. "/part.safetensors", "--epochs", "2" }))
    assert.are.equal(2, #rest.history)
    near(rest.history[2].loss, full.history[2].loss, 1e-6, "epoch 2 loss")
    near(rest.history[1].loss, full.history[1].loss, 1e-6, "epoch 1 loss (from the checkpoint)")
    near(rest.trained.r5, full.trained.r5, 1e-12, "R@5")
    -- a changed option is refused
    local ok, err = pcall(VT.run, opts({ "--out", dir .. "/part.safetensors", "--epochs", "3" }))
    assert.is_false(ok)
    assert.truthy(tostring(err):find("was written with --epochs 2, this run has 3", 1, true))
    os.execute("rm -rf " .. dir)
  end)

  it("rejects bad arguments", function()
    local function bad(args, pat)
      local ok, err = pcall(VT.parse_args, args)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(pat, 1, true), tostring(err))
    end
    bad({ "--size", "30" }, "video_text: --patch (8) must divide --size (30)")
    bad({ "--batch", "1" }, "--batch must be at least 2")
    bad({ "--encoder", "lstm" }, "--encoder must be timesformer or c3d, got 'lstm'")
    bad({ "--bogus" }, "unknown argument '--bogus'")
    assert.is_function(data.moving_shapes)
  end)
end)
