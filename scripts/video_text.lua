-- scripts/video_text.lua — video–text contrastive pre-training (CLIP-style)
-- on the captions of vl.data.moving_shapes, evaluated by text->video
-- retrieval on held-out clips against a shuffled-pairs baseline.
--
--   build/vlua scripts/video_text.lua                    -- 15 epochs, 1600 clips, then the baseline
--   build/vlua scripts/video_text.lua --epochs 5 --n 500 --threads 2 --no-baseline
--
-- Data: moving_shapes{n, frames = 8, size = 32, split = "train", seed} for
-- training and the "test" split (n/4 clips, another random stream) for
-- retrieval. Captions read "a red circle moving left", "the red circle is
-- moving left" or "a red circle, moving left" (colour, shape, one of 8
-- actions; the template is drawn per clip).
--
-- Model: a video encoder, vl.video.TimeSformer (divided space-time
-- attention; 8x8 patches, dim 64, 2 blocks, 4 heads) whose head projects
-- the class token to the shared space (--encoder c3d: vl.video.C3D with
-- its classifier as the projection); a text encoder: a word-level vocabulary
-- built from the training captions (lower case, punctuation dropped; id 1
-- is padding, 2 unknown), an embedding, mean pooling over the words, and a
-- 2-layer MLP to the shared space. Both embeddings are L2-normalised;
-- logits = exp(s) * video . text^T with a learnable log-scale s
-- initialised to log(1/0.07) and clamped to at most log(100) after every
-- step (CLIP). Loss: symmetric InfoNCE (nn.InfoNCELoss: cross-entropy of
-- each video over the batch's captions and of each caption over the
-- batch's videos, averaged). Clips that share a caption's content
-- (colour, shape, action) are all counted as positives of each other
-- (--single-positive: only the diagonal). AdamW (weight decay on weight
-- matrices only), one-cycle learning rate, stepped every batch.
--
-- Evaluation: each held-out clip's caption queries the N held-out videos
-- (cosine similarity). Several clips share a caption, so a hit is a
-- retrieved clip whose caption has the same content as the query's
-- (same colour, shape and action; the sentence template is ignored, as it
-- carries nothing visible). R@1 and R@5: the fraction of queries with a
-- hit among the first 1 and 5 retrieved clips. The baseline is the same
-- model and recipe trained on shuffled pairs (the training captions
-- permuted against the videos, one fixed permutation), evaluated on the
-- true held-out pairs; the chance level of random rankings is printed too
-- (exact, from the caption multiplicities).
--
-- Files (atomic, after every epoch): OUT.ckpt.safetensors and
-- OUT.shuffled.ckpt.safetensors (model, AdamW state, schedule, generator,
-- history) from which a rerun resumes (--fresh starts over); OUT, the
-- trained model's state_dict, at the end.
--
-- Flags: --epochs N (15), --n N (1600 training clips), --test-n N (n/4),
-- --batch B (64), --lr X (0.001), --wd X (0.05), --frames T (8), --size S
-- (32), --patch P (8), --dim D (64), --depth L (2), --heads H (4),
-- --embed E (64, the shared space), --width W (64, the word embeddings),
-- --encoder timesformer|c3d, --threads N, --seed S (1), --out PATH
-- (video_text.safetensors), --no-baseline, --single-positive, --fresh,
-- --quiet (no progress bars), --stop-after K (stop each phase after epoch
-- K, as an interruption would; a rerun resumes), --help.
--
-- Also a module: loadfile("scripts/video_text.lua")("--module") returns
-- { parse_args, run, tokenize, build_vocab, encode, content_key,
--   retrieval, chance, build_model, clamp_logit_scale, ... }.
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"
local data = require "vl.data"
local video = require "vl.video"
local progress = require "vl.progress"
local S = require "vl.script"

local fmt = string.format

local M = {}

local SCRIPT_DIR = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local cnn = assert(loadfile(SCRIPT_DIR .. "train_cnn.lua"))("--module") -- checkpoint files, blas hint

M.LOGIT_SCALE_INIT = math.log(1 / 0.07)
M.LOGIT_SCALE_MAX = math.log(100)

M.DEFAULTS = {
  epochs = 15, n = 1600, batch = 64, lr = 0.001, wd = 0.05, frames = 8, size = 32, patch = 8, dim = 64, depth = 2,
  heads = 4, embed = 64, width = 64, encoder = "timesformer", seed = 1, out = "video_text.safetensors",
  no_baseline = false, single_positive = false, fresh = false, quiet = false,
}

-- Options that must agree between a checkpoint and the run resuming it.
local CONFIG_KEYS = { "epochs", "n", "test_n", "batch", "lr", "wd", "frames", "size", "patch", "dim", "depth",
  "heads", "embed", "width", "encoder", "seed", "single_positive" }

local FLAGS = {
  epochs = "int", n = "int", ["test-n"] = "int", batch = "int", lr = "num", wd = "num", frames = "int",
  size = "int", patch = "int", dim = "int", depth = "int", heads = "int", embed = "int", width = "int",
  encoder = "str", threads = "int", seed = "int", out = "str", ["no-baseline"] = "bool",
  ["single-positive"] = "bool", fresh = "bool", quiet = "bool", help = "bool", ["stop-after"] = "int",
}

local usage = S.usage_fn("video_text")

-- parse_args({"--epochs", "3", ...}) -> options (defaults filled in).
function M.parse_args(argv)
  local o = S.parse_args(argv, FLAGS, M.DEFAULTS, "video_text")
  for _, k in ipairs({ "epochs", "n", "batch", "frames", "size", "patch", "dim", "depth", "heads", "embed",
    "width" }) do
    if o[k] < 1 then usage("--%s must be at least 1, got %d", k, o[k]) end
  end
  o.test_n = o.test_n or math.max(10, o.n // 4)
  if o.test_n < 5 then usage("--test-n must be at least 5, got %d", o.test_n) end
  if o.stop_after ~= nil and o.stop_after < 1 then usage("--stop-after must be at least 1, got %d", o.stop_after) end
  if o.threads ~= nil and o.threads < 1 then usage("--threads must be at least 1, got %d", o.threads) end
  if o.batch < 2 then usage("--batch must be at least 2 (a contrastive batch needs negatives), got %d", o.batch) end
  if not (o.lr > 0) then usage("--lr must be positive, got %g", o.lr) end
  if not (o.wd >= 0) then usage("--wd must be >= 0, got %g", o.wd) end
  if o.size < 8 then usage("--size must be at least 8, got %d", o.size) end
  if o.size % o.patch ~= 0 then usage("--patch (%d) must divide --size (%d)", o.patch, o.size) end
  if o.dim % o.heads ~= 0 then usage("--dim (%d) must be a multiple of --heads (%d)", o.dim, o.heads) end
  if o.encoder ~= "timesformer" and o.encoder ~= "c3d" then
    usage("--encoder must be timesformer or c3d, got '%s'", o.encoder)
  end
  if not o.out:match("%.safetensors$") then usage("--out must end in .safetensors, got '%s'", o.out) end
  return o
end

-- ---------------------------------------------------------------------------
-- Captions: words, vocabulary, ids, content keys
-- ---------------------------------------------------------------------------

M.PAD, M.UNK = 1, 2

--- tokenize(s) -> list of lower-case words (letters and digits; the rest separates).
function M.tokenize(s)
  local w = {}
  for word in s:lower():gmatch("[%w]+") do w[#w + 1] = word end
  return w
end

--- build_vocab(captions) -> {words = {"<pad>", "<unk>", w1, ...}, index = {word -> id}}
-- (the words sorted, so the ids do not depend on the captions' order).
function M.build_vocab(captions)
  local seen, list = {}, {}
  for _, c in ipairs(captions) do
    for _, w in ipairs(M.tokenize(c)) do
      if not seen[w] then
        seen[w] = true
        list[#list + 1] = w
      end
    end
  end
  table.sort(list)
  local words, index = { "<pad>", "<unk>" }, {}
  for _, w in ipairs(list) do words[#words + 1] = w end
  for i, w in ipairs(words) do index[w] = i end
  return { words = words, index = index }
end

--- encode(vocab, captions [, len]) -> ids int64 [N, len] (1-based word ids,
-- padded with PAD = 1, unknown words UNK = 2; len: the longest caption).
function M.encode(vocab, captions, len)
  local rows, L = {}, len or 1
  for i, c in ipairs(captions) do
    local r = {}
    for k, w in ipairs(M.tokenize(c)) do r[k] = vocab.index[w] or M.UNK end
    rows[i] = r
    if not len and #r > L then L = #r end
  end
  for i, r in ipairs(rows) do
    for k = 1, L do r[k] = r[k] or M.PAD end
    for k = #r, L + 1, -1 do r[k] = nil end
    rows[i] = r
  end
  return vl.tensor(rows, { dtype = "int64" })
end

local STOP = { a = true, an = true, the = true, is = true }

--- content_key(caption) -> its words without "a", "an", "the", "is" and
-- punctuation: "the red circle is moving left" and "a red circle, moving
-- left" both give "red circle moving left".
function M.content_key(caption)
  local w = {}
  for _, x in ipairs(M.tokenize(caption)) do
    if not STOP[x] then w[#w + 1] = x end
  end
  return table.concat(w, " ")
end

-- keys (strings) -> int64 [N] ids (equal keys, equal ids).
local function key_ids(keys)
  local idx, ids = {}, {}
  for i, k in ipairs(keys) do
    if not idx[k] then idx[k] = #ids + 1 end
    ids[i] = idx[k]
  end
  return vl.tensor(ids, { dtype = "int64" })
end

-- ---------------------------------------------------------------------------
-- Retrieval metrics
-- ---------------------------------------------------------------------------

--- retrieval(sim [Nq, Nv], qkeys, vkeys, ks = {1, 5}) -> {[k] = R@k}: query i
-- hits at k when one of its k most similar videos (ties: lower index
-- first) has vkeys[j] == qkeys[i].
function M.retrieval(sim, qkeys, vkeys, ks)
  ks = ks or { 1, 5 }
  local nq, nv = sim:size(1), sim:size(2)
  local kmax = 0
  for _, k in ipairs(ks) do kmax = math.max(kmax, math.min(k, nv)) end
  local _, top = sim:topk(kmax, 2)
  local t = top:totable()
  local res = {}
  for _, k in ipairs(ks) do
    local hits = 0
    for i = 1, nq do
      for r = 1, math.min(k, nv) do
        if vkeys[t[i][r]] == qkeys[i] then
          hits = hits + 1
          break
        end
      end
    end
    res[k] = hits / nq
  end
  return res
end

--- chance(qkeys, vkeys, ks = {1, 5}) -> {[k] = expected R@k of a uniformly
-- random ranking}: 1 - C(N - m, k) / C(N, k) per query, m the number of
-- videos with its key, averaged.
function M.chance(qkeys, vkeys, ks)
  ks = ks or { 1, 5 }
  local N = #vkeys
  local count = {}
  for _, k in ipairs(vkeys) do count[k] = (count[k] or 0) + 1 end
  local res = {}
  for _, k in ipairs(ks) do
    local s = 0
    for _, q in ipairs(qkeys) do
      local m = count[q] or 0
      local miss = 1
      for j = 0, math.min(k, N) - 1 do miss = miss * math.max(0, N - m - j) / (N - j) end
      s = s + 1 - miss
    end
    res[k] = s / #qkeys
  end
  return res
end

-- ---------------------------------------------------------------------------
-- Model
-- ---------------------------------------------------------------------------

--- TextEncoder(vocab_size, width, embed): word embeddings (padding_idx 1),
-- mean over the caption's words, Linear-GELU-Linear to `embed`.
local TextEncoder = nn.Module:extend("TextEncoder")
M.TextEncoder = TextEncoder
function TextEncoder:init(vocab_size, width, embed)
  self.embedding = nn.Embedding(vocab_size, width, { padding_idx = M.PAD })
  self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed))
end
function TextEncoder:forward(ids)
  local e = self.embedding(ids)                                  -- [B, L, W]
  local mask = ids:ne(M.PAD):to(e.dtype):unsqueeze(3)            -- [B, L, 1]
  local n = vl.maximum(mask:sum(2), vl.ones({ 1, 1 }))           -- [B, 1]
  return self.mlp((e * mask):sum(2) / n)
end

--- VideoText(cfg): video (encoder to `embed`), text (TextEncoder), logit_scale.
local VideoText = nn.Module:extend("VideoText")
M.VideoText = VideoText
function VideoText:init(c)
  if c.encoder == "c3d" then
    self.video = video.C3D({ num_classes = c.embed, in_channels = c.channels or 3 })
  else
    self.video = video.TimeSformer { img_size = c.size, patch_size = c.patch, frames = c.frames, dim = c.dim,
      depth = c.depth, heads = c.heads, num_classes = c.embed, in_channels = c.channels or 3 }
  end
  self.text = TextEncoder(c.vocab_size, c.width, c.embed)
  self.logit_scale = nn.Parameter(vl.tensor(M.LOGIT_SCALE_INIT))
end

local function l2n(x) return x / x:norm({ p = 2, dim = 2, keepdim = true }) end

function VideoText:encode_video(x) return l2n(self.video(x)) end
function VideoText:encode_text(ids) return l2n(self.text(ids)) end

--- model(x, ids) -> logits [B, B]: exp(logit_scale) * video_i . text_j.
function VideoText:forward(x, ids)
  local v, t = self:encode_video(x), self:encode_text(ids)
  return v:matmul(t:transpose(1, 2)) * self.logit_scale:exp()
end

--- clamp_logit_scale(model): logit_scale <- min(logit_scale, log(100)) (and >= 0).
function M.clamp_logit_scale(model)
  vl.no_grad(function() model.logit_scale:clamp_(0, M.LOGIT_SCALE_MAX) end)
end

function M.build_model(o, vocab_size, channels)
  return VideoText({ encoder = o.encoder, size = o.size, patch = o.patch, frames = o.frames, dim = o.dim,
    depth = o.depth, heads = o.heads, embed = o.embed, width = o.width, vocab_size = vocab_size,
    channels = channels })
end

-- AdamW with weight decay on the weight matrices only (not on biases,
-- norms, embeddings, tokens or the logit scale).
local function optimizer(model, o)
  local decay, rest = {}, {}
  for name, p in model:named_parameters() do
    local no = p:dim() < 2 or name:find("embed", 1, true) or name:find("token", 1, true)
    if no then rest[#rest + 1] = p else decay[#decay + 1] = p end
  end
  return optim.AdamW({ { params = decay, weight_decay = o.wd }, { params = rest, weight_decay = 0 } }, { lr = o.lr })
end

-- ---------------------------------------------------------------------------
-- Data
-- ---------------------------------------------------------------------------

-- {ds, n, ids [N, L], keys (strings), key_ids [N], batch(idx) -> clips}
local function prepare(ds, vocab, len)
  local caps = ds.captions
  local keys = {}
  for i, c in ipairs(caps) do keys[i] = M.content_key(c) end
  return {
    ds = ds, n = ds:len(), ids = M.encode(vocab, caps, len), keys = keys, key_ids = key_ids(keys),
    batch = function(idx)
      if ds:has_batches() then return (ds:get_batch(idx)) end
      local list = {}
      for k, i in ipairs(idx:totable()) do list[k] = (ds:get(i)) end
      return vl.stack(list, 1)
    end,
  }
end

local function datasets(o)
  local tr = data.moving_shapes { n = o.n, frames = o.frames, size = o.size, seed = o.seed, split = "train" }
  local te = data.moving_shapes { n = o.test_n, frames = o.frames, size = o.size, seed = o.seed, split = "test" }
  return tr, te
end

-- ---------------------------------------------------------------------------
-- Training and evaluation
-- ---------------------------------------------------------------------------

--- evaluate(model, te [, batch]) -> {r1, r5}: text->video retrieval over te.
function M.evaluate(model, te, batch)
  batch = batch or 100
  local was = model.training
  model:eval()
  local sim = vl.no_grad(function()
    local vs = {}
    for s = 1, te.n, batch do
      local idx = vl.arange(s, math.min(s + batch, te.n + 1))
      vs[#vs + 1] = model:encode_video(te.batch(idx))
    end
    local v = vl.cat(vs, 1)
    local t = model:encode_text(te.ids)
    return t:matmul(v:transpose(1, 2))          -- [queries, videos]
  end)
  model:train(was)
  local r = M.retrieval(sim, te.keys, te.keys, { 1, 5 })
  return { r1 = r[1], r5 = r[5] }
end

local exists = S.exists

local function config_of(o) return S.config_of(o, CONFIG_KEYS) end

local function check_config(saved, o, path)
  for _, k in ipairs(CONFIG_KEYS) do
    if saved[k] ~= o[k] then
      usage("%s was written with --%s %s, this run has %s (use --fresh to start over, or the same options)", path,
        k:gsub("_", "-"), tostring(saved[k]), tostring(o[k]))
    end
  end
end

local function say(o, ...)
  if o.log then o.log(fmt(...)) else print(fmt(...)) end
end

-- train_phase(o, name, tr, te, vocab, ck_path, pair_perm) -> model, history.
-- pair_perm (int64 [N] or nil): training caption i is paired with video
-- pair_perm[i] (the shuffled baseline).
function M.train_phase(o, name, tr, te, vocab, ck_path, pair_perm)
  vl.manual_seed(o.seed) -- the same initial weights for both phases
  local model = M.build_model(o, #vocab.words, tr.ds.channels)
  local opt = optimizer(model, o)
  local steps = math.max(1, tr.n // o.batch)
  -- one-cycle: 10% warm-up (at least 2 steps); a run of under 3 steps keeps lr constant
  local total = o.epochs * steps
  local sched = total >= 3 and optim.lr_scheduler.OneCycleLR(opt, { max_lr = o.lr, total_steps = total,
    pct_start = math.max(0.1, 2 / total) }) or nil
  local lossf = nn.InfoNCELoss()
  local ids, kid = tr.ids, tr.key_ids
  if pair_perm then
    -- video i is paired with caption pair_perm[i]
    ids, kid = ids:index_select(1, pair_perm), kid:index_select(1, pair_perm)
  end

  local history, start = {}, 1
  if exists(ck_path) and not o.fresh then
    local ck = cnn.load_checkpoint(ck_path)
    check_config(ck.config or {}, o, ck_path)
    model:load_state_dict(ck.model)
    opt:load_state_dict(ck.optim)
    if sched then sched:load_state_dict(ck.sched) end
    vl.set_rng_state(ck.rng)
    history = ck.history or {}
    start = ck.epoch + 1
    say(o, "%s: resuming from %s after epoch %d/%d", name, ck_path, ck.epoch, o.epochs)
  end

  model:train()
  local last = o.stop_after and math.min(o.stop_after, o.epochs) or o.epochs
  for epoch = start, last do
    local t0 = vl.monotonic()
    local perm = vl.randperm(tr.n)
    local loss_sum, correct, seen = 0, 0, 0
    local bar = (not o.quiet) and progress(steps, { desc = fmt("%s %d/%d", name, epoch, o.epochs) }) or nil
    for s = 1, steps do
      local idx = perm:narrow(1, (s - 1) * o.batch + 1, o.batch)
      local x = tr.batch(idx)
      local k = kid:index_select(1, idx)
      local pos = (not o.single_positive) and k:view({ -1, 1 }):eq(k:view({ 1, -1 })) or nil
      opt:zero_grad()
      local logits = model(x, ids:index_select(1, idx))
      local loss = lossf(logits, pos)
      loss:backward()
      opt:step()
      if sched then sched:step() end
      M.clamp_logit_scale(model)
      local B = idx:numel()
      loss_sum = loss_sum + loss:item() * B
      -- batch video->text top-1: the best caption has the clip's content
      local best = logits:detach():argmax(2)
      correct = correct + k:index_select(1, best):eq(k):sum():item()
      seen = seen + B
      if bar then bar:update(s, { loss = loss_sum / seen, acc = correct / seen }) end
    end
    if bar then bar:close() end
    local r = M.evaluate(model, te)
    local h = { loss = loss_sum / seen, acc = correct / seen, r1 = r.r1, r5 = r.r5, seconds = vl.monotonic() - t0,
      scale = math.exp(model.logit_scale:item()) }
    history[epoch] = h
    say(o, "%s epoch %d/%d  loss %.4f  batch acc %.3f  test R@1 %.3f R@5 %.3f  scale %.1f  %.1f s", name, epoch,
      o.epochs, h.loss, h.acc, h.r1, h.r5, h.scale, h.seconds)
    cnn.save_checkpoint(ck_path, { model = model:state_dict(), optim = opt:state_dict(),
      sched = sched and sched:state_dict() or {}, epoch = epoch, rng = vl.get_rng_state(), config = config_of(o),
      history = history })
  end
  return model, history
end

--- run(o) -> {trained = {r1, r5}, shuffled = {r1, r5} | nil, chance = {r1, r5},
--   history, history_shuffled, seconds, model}
-- o.train_ds / o.test_ds replace the moving_shapes datasets (tests).
function M.run(o)
  if o.threads then vl.set_num_threads(o.threads) end
  local t_start = vl.monotonic()
  local trd, ted = o.train_ds, o.test_ds
  if not trd then trd, ted = datasets(o) end
  local vocab = M.build_vocab(trd.captions)
  local len = 0
  for _, c in ipairs(trd.captions) do len = math.max(len, #M.tokenize(c)) end
  local tr, te = prepare(trd, vocab, len), prepare(ted, vocab, len)
  local stem = o.out:gsub("%.safetensors$", "")
  local threads = vl.get_num_threads()
  local distinct = {}
  local nd = 0
  for _, k in ipairs(te.keys) do
    if not distinct[k] then distinct[k] = true; nd = nd + 1 end
  end
  say(o, "video_text: %d training and %d held-out clips (%d distinct held-out caption contents), vocabulary %d " ..
    "words, %s encoder, %d epochs of %d steps, %d threads", tr.n, te.n, nd, #vocab.words - 2, o.encoder, o.epochs,
    math.max(1, tr.n // o.batch), threads)

  local model, hist = M.train_phase(o, "paired", tr, te, vocab, stem .. ".ckpt.safetensors")
  local res = { trained = M.evaluate(model, te), history = hist, model = model, vocab = vocab }
  model:save(o.out)
  if not o.no_baseline then
    local g = vl.get_rng_state()
    vl.manual_seed(o.seed + 7919)
    local perm = vl.randperm(tr.n)
    vl.set_rng_state(g)
    local m2, h2 = M.train_phase(o, "shuffled", tr, te, vocab, stem .. ".shuffled.ckpt.safetensors", perm)
    res.shuffled = M.evaluate(m2, te)
    res.history_shuffled = h2
  end
  local ch = M.chance(te.keys, te.keys, { 1, 5 })
  res.chance = { r1 = ch[1], r5 = ch[5] }
  res.seconds = vl.monotonic() - t_start
  return res
end

local fail_handler = S.fail_handler("video_text: ")

function M.main(argv)
  local o = S.start(argv, M.parse_args, fail_handler, debug.getinfo(1, "S").source:sub(2), cnn.blas_hint)
  if not o then return end
  local r = S.finish("video_text", false, xpcall(M.run, fail_handler, o))
  print(fmt("\ntext->video retrieval, %d held-out captions each ranking the %d held-out clips", o.test_n, o.test_n))
  print("(a hit: a retrieved clip whose caption has the query's colour, shape and action)")
  print(fmt("  %-36s %7s %7s", "", "R@1", "R@5"))
  print(fmt("  %-36s %7.3f %7.3f", "trained on true pairs", r.trained.r1, r.trained.r5))
  if r.shuffled then
    print(fmt("  %-36s %7.3f %7.3f", "baseline: trained on shuffled pairs", r.shuffled.r1, r.shuffled.r5))
  end
  print(fmt("  %-36s %7.3f %7.3f", "chance (random ranking)", r.chance.r1, r.chance.r5))
  print(fmt("done in %.1f s (%d threads); weights %s", r.seconds, vl.get_num_threads(), o.out))
end

if ... == "--module" then return M end
M.main(arg or { ... })
