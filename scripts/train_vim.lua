-- scripts/train_vim.lua — a small Vision Mamba (Vim) learns Fashion-MNIST
-- on a laptop-class CPU; the state-space counterpart of train_vit.lua, with
-- its recipe, files, flags and resume logic.
--
--   build/vlua scripts/train_vim.lua                      -- 10 epochs -> vim_fmnist.safetensors + .json
--   build/vlua scripts/train_vim.lua --epochs 12 --threads 2 --out runs/vim.safetensors
--
-- Model (vl.mamba.VisionMamba, Vim's layout and state_dict keys): 7x7
-- patches of the 28x28 image (16 tokens, the class token in the middle),
-- width 64, 4 bidirectional Mamba blocks (Vim's "v2" mixer: a forward and a
-- backward selective scan, averaged; d_state 4, expand 1) with RMSNorm and
-- residuals, a linear head on the class token.
--
-- Recipe: inputs standardised with the training set's mean and std; a
-- random horizontal flip per image (--crop-pad N adds a random crop);
-- cross-entropy with label smoothing 0.1; AdamW (weight decay on the weight
-- matrices only: not on biases, norms, the class token, the position
-- embedding, A_log or D, as Vim) under a linear warm-up then a cosine decay
-- to 0, stepped every batch.
--
-- Output: a progress bar per epoch (stderr), one line per epoch on stdout,
-- then the test accuracy:
--   epoch 3/10  train loss 0.8003 acc 0.8610  test loss 0.8225 acc 0.8542  lr 0.00168  65.0 s
--
-- Files, all written atomically after every epoch, for --out vim_fmnist.safetensors:
--   vim_fmnist.safetensors       the model's state_dict (Vim's names)
--   vim_fmnist.json              its config: the VisionMamba arguments,
--                                class names, input normalisation, accuracy
--   vim_fmnist.ckpt.safetensors  the training state for --resume
-- When the checkpoint exists the run resumes from it (--fresh starts over,
-- --resume insists on one), also from the middle of an epoch, to the
-- numbers of an uninterrupted run. Ctrl-C stops at the next batch boundary,
-- saves the checkpoint and exits with status 130 (see train_vit.lua).
--
-- Flags: --epochs N (10), --batch B (128), --lr X (0.002, the peak),
-- --wd X (0.05), --warmup F (0.05), --label-smoothing X (0.1), --patch P (7),
-- --dim D (64), --depth L (4), --d-state N (4), --expand E (1),
-- --drop-path P (0), --crop-pad N (0), --no-flip,
-- --out PATH (vim_fmnist.safetensors), --checkpoint PATH (OUT with
-- .ckpt.safetensors), --threads N (vl.get_num_threads()), --seed S (1),
-- --subset N (first N training images), --test-subset N, --eval-batch N
-- (500), --fresh, --resume, --stop-after K, --quiet, --help. Testing aid:
-- --interrupt-after N raises "interrupted!" before training step N+1.
--
-- Also a module for tests: loadfile("scripts/train_vim.lua")("--module")
-- returns { parse_args, run, build_model, vim_config, paths, load_model, ... }.
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"
local data = require "vl.data"
local progress = require "vl.progress"

local fmt = string.format

local M = {}

local SCRIPT_DIR = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local cnn = assert(loadfile(SCRIPT_DIR .. "train_cnn.lua"))("--module") -- checkpoint flatten/unflatten, blas hint
local tv = assert(loadfile(SCRIPT_DIR .. "train_vit.lua"))("--module") -- JSON sidecar reader/writer

-- Fashion-MNIST training-set statistics of the pixels in [0, 1].
M.MEAN, M.STD = 0.2860, 0.3530

M.DEFAULTS = {
  epochs = 10, batch = 128, lr = 0.002, wd = 0.05, warmup = 0.05, label_smoothing = 0.1,
  patch = 7, dim = 64, depth = 4, d_state = 4, expand = 1, drop_path = 0,
  crop_pad = 0, no_flip = false, out = "vim_fmnist.safetensors", seed = 1, eval_batch = 500,
  fresh = false, resume = false, quiet = false,
}

-- Options that must agree between a checkpoint and the run resuming it.
local CONFIG_KEYS = { "epochs", "batch", "lr", "wd", "warmup", "label_smoothing", "patch", "dim", "depth",
  "d_state", "expand", "drop_path", "crop_pad", "no_flip", "seed", "subset", "test_subset" }

-- ---------------------------------------------------------------------------
-- Arguments
-- ---------------------------------------------------------------------------

local FLAGS = {
  epochs = "int", batch = "int", lr = "num", wd = "num", warmup = "num", ["label-smoothing"] = "num",
  patch = "int", dim = "int", depth = "int", ["d-state"] = "int", expand = "int",
  ["drop-path"] = "num", ["crop-pad"] = "int", ["no-flip"] = "bool", out = "str", checkpoint = "str",
  threads = "int", seed = "int", subset = "int", ["test-subset"] = "int", ["eval-batch"] = "int",
  ["stop-after"] = "int", ["interrupt-after"] = "int",
  fresh = "bool", resume = "bool", quiet = "bool", help = "bool",
}

local function usage(msg, ...) error(fmt("train_vim: " .. msg, ...), 0) end

-- parse_args({"--epochs", "3", ...}) -> options (defaults filled in).
function M.parse_args(argv)
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local name, val = a:match("^%-%-([%w%-]+)=(.*)$")
    name = name or a:match("^%-%-([%w%-]+)$")
    local kind = name and FLAGS[name]
    if not kind then usage("unknown argument '%s' (see --help)", a) end
    if kind == "bool" and val ~= nil then usage("--%s takes no value", name) end
    if kind ~= "bool" and val == nil then
      i = i + 1
      val = argv[i]
      if val == nil then usage("--%s needs a value", name) end
    end
    local key = name:gsub("%-", "_")
    if kind == "bool" then
      o[key] = true
    elseif kind == "str" then
      if val == "" then usage("--%s needs a non-empty value", name) end
      o[key] = val
    else
      local n = tonumber(val)
      if n == nil or (kind == "int" and math.tointeger(n) == nil) then
        usage("--%s expects %s, got '%s'", name, kind == "int" and "an integer" or "a number", val)
      end
      o[key] = kind == "int" and math.tointeger(n) or n
    end
    i = i + 1
  end
  for _, k in ipairs({ "epochs", "batch", "patch", "dim", "depth", "d_state", "expand", "eval_batch" }) do
    if o[k] < 1 then usage("--%s must be at least 1, got %d", k:gsub("_", "-"), o[k]) end
  end
  for _, k in ipairs({ "subset", "test_subset", "threads", "stop_after" }) do
    if o[k] ~= nil and o[k] < 1 then usage("--%s must be at least 1, got %d", k:gsub("_", "-"), o[k]) end
  end
  if o.interrupt_after and o.interrupt_after < 0 then usage("--interrupt-after must be >= 0") end
  if not (o.lr > 0) then usage("--lr must be positive, got %g", o.lr) end
  if not (o.wd >= 0) then usage("--wd must be >= 0, got %g", o.wd) end
  if not (o.warmup >= 0 and o.warmup < 1) then usage("--warmup must be a fraction in [0, 1), got %g", o.warmup) end
  if not (o.label_smoothing >= 0 and o.label_smoothing < 1) then
    usage("--label-smoothing must be in [0, 1), got %g", o.label_smoothing)
  end
  for _, k in ipairs({ "drop_path" }) do
    if not (o[k] >= 0 and o[k] < 1) then usage("--%s must be in [0, 1), got %g", k:gsub("_", "-"), o[k]) end
  end
  if o.crop_pad < 0 or o.crop_pad > 14 then usage("--crop-pad must be in 0..14, got %d", o.crop_pad) end
  if 28 % o.patch ~= 0 then usage("--patch must divide 28 (1, 2, 4, 7, 14 or 28), got %d", o.patch) end
  if o.fresh and o.resume then usage("--fresh and --resume contradict each other") end
  if not o.out:match("%.safetensors$") then usage("--out must end in .safetensors, got '%s'", o.out) end
  return o
end

-- The files of a run: weights, config sidecar, training checkpoint.
function M.paths(out, checkpoint)
  local stem = out:gsub("%.safetensors$", "")
  return { weights = out, config = stem .. ".json", checkpoint = checkpoint or (stem .. ".ckpt.safetensors") }
end

local json_encode, json_decode = tv.json_encode, tv.json_decode
M.json_encode, M.json_decode = json_encode, json_decode

-- ---------------------------------------------------------------------------
-- Model
-- ---------------------------------------------------------------------------

-- The vl.mamba.VisionMamba arguments of a run.
function M.vim_config(o)
  return {
    image_size = 28, patch_size = o.patch, in_channels = 1, num_classes = 10, d_model = o.dim, depth = o.depth,
    d_state = o.d_state, expand = o.expand, drop_path = o.drop_path,
  }
end

function M.build_model(o)
  local mamba = require "vl.mamba"
  return mamba.VisionMamba(M.vim_config(o))
end

-- Weight decay on the weight matrices (and the patch convolution) only;
-- not on A_log / A_b_log (Vim marks them _no_weight_decay), D, norms,
-- biases, the class token or the position embedding.
local function param_groups(model, wd)
  local decay, rest = {}, {}
  for name, p in model:named_parameters() do
    if p:dim() >= 2 and not name:match("pos_embed$") and not name:match("cls_token$") and
        not name:match("A_b?_log$") then
      decay[#decay + 1] = p
    else
      rest[#rest + 1] = p
    end
  end
  local groups = { { params = decay, weight_decay = wd } }
  if #rest > 0 then groups[2] = { params = rest, weight_decay = 0 } end
  return groups
end

-- The config sidecar: everything classify.lua needs besides the weights.
function M.model_info(o, extra)
  local info = {
    format = "vlua-vim/1", model = "vl.mamba.VisionMamba", vim = M.vim_config(o),
    classes = data.fashion_mnist_classes, input = { height = 28, width = 28, channels = 1, scale = 1 / 255,
      mean = M.MEAN, std = M.STD },
    weights = o.out:match("[^/]*$"),
  }
  for k, v in pairs(extra or {}) do info[k] = v end
  return info
end

-- load_model(weights_path) -> model (eval mode), info (the JSON sidecar).
function M.load_model(path, where)
  where = where or "load_model"
  local p = M.paths(path)
  local f = io.open(p.config, "r")
  if not f then
    error(fmt("%s: no config %s next to the weights %s (train_vim.lua writes both)", where, p.config, path), 0)
  end
  local text = f:read("a")
  f:close()
  local info = M.json_decode(text, p.config)
  if type(info) ~= "table" or type(info.vim) ~= "table" then
    error(fmt("%s: %s has no 'vim' table of VisionMamba arguments", where, p.config), 0)
  end
  local g = io.open(path, "rb")
  if not g then error(fmt("%s: no weights file %s", where, path), 0) end
  g:close()
  local mamba = require "vl.mamba"
  local model = mamba.VisionMamba(info.vim)
  local ok, err = pcall(model.load, model, path)
  if not ok then error(fmt("%s: %s does not fit the model in %s: %s", where, path, p.config, tostring(err)), 0) end
  model:eval()
  return model, info
end

-- ---------------------------------------------------------------------------
-- Data: uint8 images in memory; batches made here (per-image augmentation).
-- ---------------------------------------------------------------------------

local function load_split(split, n)
  local x, y = data.fashion_mnist_tensors(split)
  if n and n < x:size(1) then x, y = x:narrow(1, 1, n), y:narrow(1, 1, n) end
  return x, y
end

-- uint8 [B,28,28] -> standardised float32 [B,1,28,28]
local function prepare(xb)
  local b = xb:size(1)
  return xb:float():div(255):sub(M.MEAN):div(M.STD):view(b, 1, 28, 28)
end

-- A horizontal flip with probability 1/2 and a crop of 28x28 out of the
-- image padded by `pad` pixels (of the background's value), drawn per image.
local function augment(x, o)
  local b = x:size(1)
  if o.crop_pad > 0 then
    local p = o.crop_pad
    local padded = data.transforms.F.pad(x, p, (0 - M.MEAN) / M.STD)
    local off = vl.randint(1, 2 * p + 2, { b, 2 }):totable()
    local out = vl.empty_like(x)
    for i = 1, b do
      out:select(1, i):copy_(padded:select(1, i):narrow(2, off[i][1], 28):narrow(3, off[i][2], 28))
    end
    x = out
  end
  if not o.no_flip then
    local m = vl.rand({ b }):lt(0.5):view(b, 1, 1, 1)
    x = vl.where(m, x:flip(-1), x)
  end
  return x
end

-- ---------------------------------------------------------------------------
-- Training
-- ---------------------------------------------------------------------------

local function evaluate(model, xs, ys, lossf, bs)
  model:eval()
  local n, correct, loss_sum = xs:size(1), 0, 0
  vl.no_grad(function()
    for first = 1, n, bs do
      local c = math.min(bs, n - first + 1)
      local out = model(prepare(xs:narrow(1, first, c)))
      local y = ys:narrow(1, first, c)
      loss_sum = loss_sum + lossf(out, y):item() * c
      correct = correct + out:argmax(2):eq(y):sum():item()
    end
  end)
  model:train()
  return loss_sum / n, correct / n
end

local function config_of(o)
  local c = {}
  for _, k in ipairs(CONFIG_KEYS) do c[k] = o[k] end
  return c
end

local function check_config(saved, o, path)
  local diffs = {}
  for _, k in ipairs(CONFIG_KEYS) do
    if saved[k] ~= o[k] then
      diffs[#diffs + 1] = fmt("%s %s (checkpoint) vs %s", k:gsub("_", "-"), tostring(saved[k]), tostring(o[k]))
    end
  end
  if #diffs > 0 then
    usage("%s was made with other settings (%s); pass the same flags, or --fresh to start over", path,
      table.concat(diffs, "; "))
  end
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function say(o, ...)
  if o.log then o.log(fmt(...)) elseif not o.quiet_stdout then
    print(fmt(...))
    io.stdout:flush()
  end
end

local function is_interrupt(err)
  return type(err) == "string" and err:match("interrupted!$") ~= nil
end

-- run(options) -> {model, history, resumed_from, seconds, interrupted, paths}.
-- options as parse_args (o.log: a function taking each line instead of print).
function M.run(o)
  if o.threads then vl.set_num_threads(o.threads) end
  local threads = vl.get_num_threads()
  local files = M.paths(o.out, o.checkpoint)
  local t_start = vl.monotonic()
  vl.manual_seed(o.seed)
  local xtr, ytr = load_split("train", o.subset)
  local xte, yte = load_split("test", o.test_subset)
  local n = xtr:size(1)
  local steps = (n + o.batch - 1) // o.batch
  local total = o.epochs * steps

  local model = M.build_model(o)
  model:train()
  local opt = optim.AdamW(param_groups(model, o.wd), { lr = o.lr, weight_decay = o.wd })
  local warm = math.floor(o.warmup * total)
  local sched = optim.lr_scheduler.CosineWithWarmup(opt, { warmup_steps = warm, total_steps = total })
  local lossf = nn.CrossEntropyLoss({ label_smoothing = o.label_smoothing })

  -- `cur`: the last point the model, optimizer and scheduler agree with;
  -- replaced as a whole (one assignment) so that an interrupt sees either
  -- the old or the new one.
  local history = {}
  local cur = { epoch = 0, step = 0, rng = vl.get_rng_state() }
  local resumed
  if o.resume and not exists(files.checkpoint) then usage("--resume: no checkpoint at %s", files.checkpoint) end
  if exists(files.checkpoint) and not o.fresh then
    local ck = cnn.load_checkpoint(files.checkpoint)
    check_config(ck.config or {}, o, files.checkpoint)
    if ck.threads and ck.threads ~= threads then
      say(o, "warning: %s was written with %d threads, this run has %d: the numbers may differ in the last digits",
        files.checkpoint, ck.threads, threads)
    end
    model:load_state_dict(ck.model)
    opt:load_state_dict(ck.optim)
    sched:load_state_dict(ck.sched)
    history = ck.history or {}
    cur = { epoch = ck.epoch, step = ck.step or 0, order = ck.order, rng = ck.rng, sums = ck.sums }
    vl.set_rng_state(ck.rng)
    resumed = { epoch = ck.epoch, step = cur.step }
    if cur.step > 0 then
      say(o, "resuming from %s at epoch %d/%d, step %d/%d", files.checkpoint, ck.epoch + 1, o.epochs, cur.step, steps)
    else
      say(o, "resuming from %s after epoch %d/%d", files.checkpoint, ck.epoch, o.epochs)
    end
    for e, h in ipairs(history) do
      say(o, "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  (from the checkpoint)", e, o.epochs,
        h.train_loss, h.train_acc, h.test_loss, h.test_acc)
    end
  else
    say(o, "model: Vim %dx%d patches, dim %d, %d bidirectional blocks, d_state %d, expand %d: %d parameters%s", o.patch,
      o.patch, o.dim, o.depth, o.d_state, o.expand, model:num_parameters(),
      vl.selective_scan and "" or " (vl.selective_scan missing: slow reference scan)")
    say(o, "data: %d training and %d test images; batch %d, %d steps per epoch; %d threads", n, xte:size(1), o.batch,
      steps, threads)
  end

  local function save_checkpoint(c)
    cnn.save_checkpoint(files.checkpoint, {
      model = model:state_dict(), optim = opt:state_dict(), sched = sched:state_dict(), epoch = c.epoch,
      step = c.step, order = c.order, sums = c.sums, rng = c.rng, config = config_of(o), history = history,
      threads = threads,
    })
  end
  local function save_model(extra)
    model:save(files.weights)
    vl.write_file(files.config, M.json_encode(M.model_info(o, extra)) .. "\n")
  end

  -- The update and the bookkeeping of a step run in this coroutine: SIGINT
  -- hooks the main Lua thread only, so a step is applied whole or not at all.
  local updater = coroutine.create(function()
    while true do
      local epoch, k, order, sums = coroutine.yield()
      opt:step()
      sched:step()
      cur = { epoch = epoch - 1, step = k, order = order, sums = sums, rng = vl.get_rng_state() }
    end
  end)
  coroutine.resume(updater)
  local function apply_step(...)
    local ok, err = coroutine.resume(updater, ...)
    if not ok then error(err, 0) end
  end

  local step_count = 0 -- steps taken in this process (for --interrupt-after)
  local last_epoch = o.epochs
  if o.stop_after then last_epoch = math.min(last_epoch, o.stop_after) end
  local bar
  local function train()
    for epoch = cur.epoch + 1, last_epoch do
      local t0 = vl.monotonic()
      local order, first_step, sums = cur.order, cur.step + 1, cur.sums
      if cur.step == 0 or order == nil then
        order, first_step, sums = vl.randperm(n), 1, { seen = 0, correct = 0, loss = 0 }
      end
      if not o.quiet and first_step <= steps then
        bar = progress.new(steps, { desc = fmt("epoch %d/%d", epoch, o.epochs) })
        if first_step > 1 then bar:update(first_step - 1) end
      end
      for k = first_step, steps do
        if o.interrupt_after and step_count >= o.interrupt_after then error("interrupted!", 0) end
        local first = (k - 1) * o.batch + 1
        local idx = order:narrow(1, first, math.min(o.batch, n - first + 1))
        local x = augment(prepare(xtr:index_select(1, idx)), o)
        local y = ytr:index_select(1, idx)
        opt:zero_grad()
        local out = model(x)
        local loss = lossf(out, y)
        loss:backward()
        local b = y:numel()
        local s = {
          seen = sums.seen + b, loss = sums.loss + loss:item() * b,
          correct = sums.correct + out:detach():argmax(2):eq(y):sum():item(),
        }
        apply_step(epoch, k, order, s)
        sums = s
        step_count = step_count + 1
        if bar then bar:update(k, { loss = s.loss / s.seen, acc = s.correct / s.seen, lr = sched:get_last_lr()[1] }) end
      end
      if bar then bar:close() bar = nil end
      local test_loss, test_acc = evaluate(model, xte, yte, lossf, o.eval_batch)
      local h = {
        train_loss = sums.loss / sums.seen, train_acc = sums.correct / sums.seen, test_loss = test_loss,
        test_acc = test_acc, seconds = vl.monotonic() - t0,
      }
      history[epoch] = h
      say(o, "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  lr %.3g  %.1f s", epoch, o.epochs,
        h.train_loss, h.train_acc, h.test_loss, h.test_acc, sched:get_last_lr()[1], h.seconds)
      cur = { epoch = epoch, step = 0, rng = cur.rng }
      save_checkpoint(cur)
      save_model({ epochs_trained = epoch, epochs = o.epochs, test_accuracy = test_acc })
    end
  end

  local ok, err = pcall(train)
  local interrupted = false
  if not ok then
    if bar then pcall(bar.close, bar) end
    if not is_interrupt(err) then error(err, 0) end
    interrupted = true
    if vl.isatty(io.stderr) then io.stderr:write("\n") end -- after the terminal's ^C
    save_checkpoint(cur)
    if cur.step == 0 and history[cur.epoch] then -- an epoch boundary: the model files match it
      save_model({ epochs_trained = cur.epoch, epochs = o.epochs, test_accuracy = history[cur.epoch].test_acc })
    end
    local where = cur.step > 0 and fmt("epoch %d/%d, step %d/%d", cur.epoch + 1, o.epochs, cur.step, steps) or
        fmt("after epoch %d/%d", cur.epoch, o.epochs)
    say(o, "interrupted: checkpoint %s saved at %s; run the same command again to continue", files.checkpoint, where)
  elseif #history > 0 and not exists(files.weights) then
    local h = history[#history]
    save_model({ epochs_trained = #history, epochs = o.epochs, test_accuracy = h.test_acc })
  end
  return {
    model = model, history = history, resumed_from = resumed, seconds = vl.monotonic() - t_start,
    interrupted = interrupted, paths = files, optimizer = opt, position = cur,
  }
end

-- Usage errors (messages starting "train_vim:") print one line; anything
-- else keeps its traceback.
local function fail_handler(err)
  if type(err) == "string" and (err:match("^train_vim: ") or err:match("^fashion_mnist: ")) then return err end
  return debug.traceback(tostring(err), 2)
end

function M.main(argv)
  local ok, o = xpcall(M.parse_args, fail_handler, argv)
  if not ok then
    io.stderr:write(o, "\n")
    os.exit(2)
  end
  if o.help then
    local f = io.open(debug.getinfo(1, "S").source:sub(2), "r")
    if f then
      for line in f:lines() do
        if not line:match("^%-%-") then break end
        print((line:gsub("^%-%- ?", "")))
      end
      f:close()
    end
    return
  end
  local hint = cnn.blas_hint()
  if hint then io.stderr:write(hint, "\n") end
  local r
  ok, r = xpcall(M.run, fail_handler, o)
  if not ok and is_interrupt(r:match("^[^\n]*")) then
    io.stderr:write("\ntrain_vim: interrupted before training started; nothing saved\n")
    os.exit(130)
  end
  if not ok then
    io.stderr:write(r, "\n")
    os.exit(1)
  end
  if r.interrupted then os.exit(130) end
  local h = r.history[#r.history]
  if h then
    print(fmt("done: test accuracy %.4f after %d epochs; %.1f s in this run; model %s + %s", h.test_acc,
      #r.history, r.seconds, r.paths.weights, r.paths.config))
  end
end

if ... == "--module" then return M end
M.main(arg or { ... })
