-- scripts/train_cnn.lua — a small CNN on Fashion-MNIST, with checkpoints
-- that resume exactly.
--
--   build/vlua scripts/train_cnn.lua                  -- 3 epochs, checkpoint train_cnn.safetensors
--   build/vlua scripts/train_cnn.lua --epochs 5 --batch 128 --lr 0.01 --out run1.safetensors --threads 2
--
-- Model (about 0.2 M parameters):
--   conv 3x3 1->c1, BatchNorm, max-pool 2, ReLU      [N, c1, 14, 14]
--   conv 3x3 c1->c2, BatchNorm, max-pool 2, ReLU     [N, c2, 7, 7]
--   flatten, dropout, linear c2*49->hidden, ReLU, dropout, linear hidden->10
-- (ReLU after the pool: max and ReLU commute, and the ReLU then runs on a
-- quarter of the elements.) AdamW under a one-cycle schedule (the lr rises
-- to --lr over the first 25% of the steps, then anneals; beta1 cycles
-- 0.95 -> 0.85 -> 0.95). Inputs are standardised with the training set's
-- mean and std (vl.data.transforms.normalize); --augment adds a random
-- crop (padding 2) and a horizontal flip.
--
-- Output: a progress bar per epoch (stderr; loss and accuracy live), one
-- line per epoch on stdout:
--   epoch 1/3  train loss 0.4432 acc 0.8421  test loss 0.3090 acc 0.8887  lr 0.008  61.2 s
--
-- Checkpoint (--out, safetensors, written atomically by vl.save after each
-- epoch): the model's state_dict (PyTorch names under "model/"), the
-- optimizer's and the scheduler's state, the completed epoch count, the
-- random generator's state (vl.get_rng_state), the configuration and the
-- per-epoch history. When --out exists the run resumes from it (--fresh
-- starts over, --resume insists on a checkpoint) and continues with the
-- numbers an uninterrupted run gives: the shuffles, dropout masks and
-- schedule continue from where they stopped. Resuming with other
-- hyper-parameters than the checkpoint's is an error; use the same
-- --threads too (the sums of a different thread split round differently).
--
-- Flags: --epochs N (3), --batch B (128), --lr X (0.01, one-cycle peak),
-- --wd X (weight decay 5e-4), --out PATH (train_cnn.safetensors),
-- --threads N (vl.get_num_threads()), --seed S (1), --channels C1,C2 (32,64),
-- --hidden H (128), --dropout P (0.25), --subset N (first N training
-- images, for quick runs), --test-subset N, --augment, --fresh, --resume,
-- --stop-after K (stop after epoch K as if interrupted), --quiet (no bars),
-- --export PATH (the trained weights alone, a plain state_dict file).
--
-- Also a module for tests: loadfile("scripts/train_cnn.lua")("--module")
-- returns { parse_args, build_model, run, save_checkpoint,
-- load_checkpoint, flatten, unflatten }.
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"
local data = require "vl.data"
local S = require "vl.script"

local fmt = string.format

local M = {}

-- Fashion-MNIST training-set statistics of the pixels in [0, 1]
-- (images:float():div(255):mean() and :std(), computed once).
M.MEAN, M.STD = 0.2860, 0.3530

M.DEFAULTS = {
  epochs = 3, batch = 128, lr = 0.01, wd = 5e-4, out = "train_cnn.safetensors", seed = 1,
  channels = { 32, 64 }, hidden = 128, dropout = 0.25, augment = false, fresh = false, resume = false,
  quiet = false, eval_batch = 1000,
}

-- Options that must agree between a checkpoint and the run resuming it.
local CONFIG_KEYS = { "epochs", "batch", "lr", "wd", "seed", "hidden", "dropout", "augment", "subset",
  "test_subset" }

-- ---------------------------------------------------------------------------
-- Arguments
-- ---------------------------------------------------------------------------

local FLAGS = {
  epochs = "int", batch = "int", lr = "num", wd = "num", out = "str", threads = "int", seed = "int",
  channels = "list", hidden = "int", dropout = "num", subset = "int", ["test-subset"] = "int",
  ["stop-after"] = "int", export = "str", ["eval-batch"] = "int",
  augment = "bool", fresh = "bool", resume = "bool", quiet = "bool", help = "bool",
}

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
    if not kind then error(fmt("train_cnn: unknown argument '%s' (see the header of scripts/train_cnn.lua)", a), 0) end
    if kind ~= "bool" and val == nil then
      i = i + 1
      val = argv[i]
      if val == nil then error(fmt("train_cnn: --%s needs a value", name), 0) end
    end
    local key = name:gsub("%-", "_")
    if kind == "bool" then
      o[key] = true
    elseif kind == "str" then
      o[key] = val
    elseif kind == "list" then
      local l = {}
      for w in val:gmatch("[^,]+") do l[#l + 1] = math.tointeger(tonumber(w)) end
      if #l ~= 2 or not l[1] or not l[2] or l[1] < 1 or l[2] < 1 then
        error(fmt("train_cnn: --%s expects two positive integers C1,C2, got '%s'", name, val), 0)
      end
      o[key] = l
    else
      local n = tonumber(val)
      if n == nil or (kind == "int" and math.tointeger(n) == nil) then
        error(fmt("train_cnn: --%s expects %s, got '%s'", name, kind == "int" and "an integer" or "a number", val), 0)
      end
      o[key] = kind == "int" and math.tointeger(n) or n
    end
    i = i + 1
  end
  for _, k in ipairs({ "epochs", "batch", "hidden", "eval_batch" }) do
    if o[k] < 1 then error(fmt("train_cnn: --%s must be at least 1, got %d", k:gsub("_", "-"), o[k]), 0) end
  end
  if o.lr <= 0 then error(fmt("train_cnn: --lr must be positive, got %g", o.lr), 0) end
  if o.dropout < 0 or o.dropout >= 1 then error(fmt("train_cnn: --dropout must be in [0, 1), got %g", o.dropout), 0) end
  if o.threads and o.threads < 1 then error(fmt("train_cnn: --threads must be at least 1, got %d", o.threads), 0) end
  if o.fresh and o.resume then error("train_cnn: --fresh and --resume contradict each other", 0) end
  return o
end

-- ---------------------------------------------------------------------------
-- Model
-- ---------------------------------------------------------------------------

function M.build_model(o)
  local c1, c2 = o.channels[1], o.channels[2]
  -- no conv bias: the BatchNorm after it has its own
  return nn.Sequential(
    nn.Conv2d(1, c1, 3, { padding = 1, bias = false }), nn.BatchNorm2d(c1), nn.MaxPool2d(2), nn.ReLU(),
    nn.Conv2d(c1, c2, 3, { padding = 1, bias = false }), nn.BatchNorm2d(c2), nn.MaxPool2d(2), nn.ReLU(),
    nn.Flatten(), nn.Dropout(o.dropout),
    nn.Linear(c2 * 7 * 7, o.hidden), nn.ReLU(), nn.Dropout(o.dropout),
    nn.Linear(o.hidden, 10))
end

-- ---------------------------------------------------------------------------
-- Checkpoints: one safetensors file written by vl.save (atomically).
-- vl.save keeps a flat table with dotted keys as it is, so every nested
-- table is flattened here with "/" (state_dict keys keep their dots):
-- "model/0.weight", "optim/state/1/exp_avg", "epoch". Empty tables are
-- recorded under "#empty/<path>" so that they come back.
-- ---------------------------------------------------------------------------

local SEP = "/"

function M.flatten(t)
  local out = {}
  local function walk(v, path)
    if type(v) == "table" and not vl.is_tensor(v) then
      local any = false
      for k, x in pairs(v) do
        any = true
        local ks = tostring(k)
        if ks:find(SEP, 1, true) or ks:sub(1, 1) == "#" then
          error(fmt("train_cnn: checkpoint key '%s' (under '%s') contains '/' or starts with '#'", ks, path), 0)
        end
        if math.type(k) == "integer" then ks = "#" .. ks end -- integer keys come back as integers
        walk(x, path == "" and ks or path .. SEP .. ks)
      end
      if not any and path ~= "" then out["#empty" .. SEP .. path] = true end
    elseif vl.is_tensor(v) then
      out[path] = v
    else
      out[path] = v
    end
  end
  walk(t, "")
  return out
end

function M.unflatten(flat)
  local root = {}
  local function put(path, v)
    local parts = {}
    for p in path:gmatch("[^/]+") do
      local i = p:match("^#(%-?%d+)$")
      parts[#parts + 1] = i and math.tointeger(tonumber(i)) or p
    end
    local t = root
    for k = 1, #parts - 1 do
      local p = parts[k]
      if t[p] == nil then t[p] = {} end
      t = t[p]
    end
    if v ~= nil then t[parts[#parts]] = v
    elseif t[parts[#parts]] == nil then t[parts[#parts]] = {} end
  end
  local keys = {}
  for k in pairs(flat) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local e = k:match("^#empty/(.*)$")
    if e then put(e, nil) else put(k, flat[k]) end
  end
  return root
end

-- vl.save refuses a table whose keys mix dotted names with nesting: the
-- state_dict keys go in as they are, under "model/".
function M.save_checkpoint(path, ck)
  vl.save(path, M.flatten(ck))
end

function M.load_checkpoint(path)
  local flat = vl.load(path, { flat = true })
  return M.unflatten(flat)
end

-- Debian's OpenBLAS 0.3.21 does not recognise recent Xeons and falls back
-- to its SSE3 "Prescott" kernels (about 6x slower sgemm here, and the
-- convolutions are GEMMs). The core is chosen when the library loads, so a
-- script cannot change it: say so when it is likely.
function M.blas_hint()
  -- float32 products run on vlua's own kernels unless the CPU lacks AVX2
  if vl.gemm_kernel() ~= "openblas" or os.getenv("OPENBLAS_CORETYPE") then return nil end
  local f = io.open("/proc/cpuinfo", "r")
  if not f then return nil end
  local info = f:read("a")
  f:close()
  local flags = info:match("\nflags%s*:%s*([^\n]*)") or ""
  local model = tonumber(info:match("\nmodel%s*:%s*(%d+)") or "")
  local family = tonumber(info:match("\ncpu family%s*:%s*(%d+)") or "")
  -- Intel family 6 models after Ice Lake (0x6a, 0x6c) that 0.3.21 lacks: Sapphire/Emerald Rapids and later
  if family == 6 and model and model >= 0x8f and flags:find("avx512f", 1, true) then
    return "note: Debian's OpenBLAS may not know this CPU and use its slow SSE3 (Prescott) kernels; " ..
        "OPENBLAS_CORETYPE=SkylakeX makes the float32 products faster (check: OPENBLAS_VERBOSE=2)"
  end
  return nil
end

local exists = S.exists

-- ---------------------------------------------------------------------------
-- Data
-- ---------------------------------------------------------------------------

local function datasets(o)
  local T = data.transforms
  local train, test = data.fashion_mnist("train"), data.fashion_mnist("test")
  if o.subset then train = train:subset(vl.arange(1, math.min(o.subset, train:len()) + 1, 1, { dtype = "int64" })) end
  if o.test_subset then
    test = test:subset(vl.arange(1, math.min(o.test_subset, test:len()) + 1, 1, { dtype = "int64" }))
  end
  local norm = T.normalize(M.MEAN, M.STD)
  local train_tf = norm
  if o.augment then train_tf = T.compose({ T.random_crop(28, { padding = 2 }), T.horizontal_flip(0.5), norm }) end
  train = train:map(function(x, y) return train_tf(x), y end, { batched = true })
  test = test:map(function(x, y) return norm(x), y end, { batched = true })
  return train, test
end

-- ---------------------------------------------------------------------------
-- Training
-- ---------------------------------------------------------------------------

local function evaluate(model, loader, lossf)
  model:eval()
  local total, correct, loss_sum = 0, 0, 0
  vl.no_grad(function()
    for x, y in loader() do
      local out = model(x)
      local n = y:numel()
      loss_sum = loss_sum + lossf(out, y):item() * n
      correct = correct + out:argmax(2):eq(y):sum():item()
      total = total + n
    end
  end)
  model:train()
  return loss_sum / total, correct / total
end

local function config_of(o)
  local c = {}
  for _, k in ipairs(CONFIG_KEYS) do c[k] = o[k] end
  c.channels = fmt("%d,%d", o.channels[1], o.channels[2])
  return c
end

local function check_config(saved, o, path)
  local now = config_of(o)
  local diffs = {}
  for _, k in ipairs(CONFIG_KEYS) do
    if saved[k] ~= now[k] then diffs[#diffs + 1] = fmt("%s %s (checkpoint) vs %s", k, tostring(saved[k]), tostring(now[k])) end
  end
  if saved.channels ~= now.channels then
    diffs[#diffs + 1] = fmt("channels %s (checkpoint) vs %s", tostring(saved.channels), now.channels)
  end
  if #diffs > 0 then
    error(fmt("train_cnn: %s was made with other settings (%s); pass the same flags, or --fresh to start over",
      path, table.concat(diffs, "; ")), 0)
  end
end

local function say(o, ...)
  if o.log then o.log(fmt(...)) elseif not o.quiet_stdout then print(fmt(...)) end
end

-- run(options) -> {model, history, resumed_from, seconds}. options as parse_args.
function M.run(o)
  if o.threads then vl.set_num_threads(o.threads) end
  local threads = vl.get_num_threads()
  local t_start = vl.monotonic()
  vl.manual_seed(o.seed)
  local train, test = o.train_ds, o.test_ds
  if not train then train, test = datasets(o) end
  local loader = data.DataLoader(train, { batch_size = o.batch, shuffle = true })
  local test_loader = data.DataLoader(test, { batch_size = o.eval_batch })
  local steps = #loader

  local model = (o.model_fn or M.build_model)(o)
  local opt = optim.AdamW(model, { lr = o.lr, weight_decay = o.wd })
  local sched = optim.lr_scheduler.OneCycleLR(opt, { max_lr = o.lr, total_steps = o.epochs * steps, pct_start = 0.25 })
  local lossf = nn.CrossEntropyLoss()

  local start_epoch, history, resumed = 1, {}, nil
  if o.resume and not exists(o.out) then error(fmt("train_cnn: --resume: no checkpoint at %s", o.out), 0) end
  if exists(o.out) and not o.fresh then
    local ck = M.load_checkpoint(o.out)
    check_config(ck.config or {}, o, o.out)
    if ck.threads and ck.threads ~= threads then
      say(o, "warning: %s was written with %d threads, this run has %d: the numbers may differ in the last digits",
        o.out, ck.threads, threads)
    end
    model:load_state_dict(ck.model)
    opt:load_state_dict(ck.optim)
    sched:load_state_dict(ck.sched)
    vl.set_rng_state(ck.rng)
    history = ck.history or {}
    start_epoch = ck.epoch + 1
    resumed = ck.epoch
    say(o, "resuming from %s after epoch %d/%d", o.out, ck.epoch, o.epochs)
    for e, h in ipairs(history) do
      say(o, "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  (from the checkpoint)", e, o.epochs,
        h.train_loss, h.train_acc, h.test_loss, h.test_acc)
    end
  elseif not o.quiet_stdout and not o.log then
    print(fmt("model: %d parameters; %d training and %d test images; batch %d, %d steps per epoch; %d threads",
      model:num_parameters(), train:len(), test:len(), o.batch, steps, threads))
  end

  model:train()
  local last_epoch = o.epochs
  if o.stop_after then last_epoch = math.min(last_epoch, o.stop_after) end
  for epoch = start_epoch, last_epoch do
    local t0 = vl.monotonic()
    local seen, correct, loss_sum = 0, 0, 0
    local iter
    if o.quiet then iter = loader:iter() else iter = loader:progress_iter({ desc = fmt("epoch %d/%d", epoch, o.epochs) }) end
    for batch, _, bar in iter do
      local x, y = batch[1], batch[2]
      opt:zero_grad()
      local out = model(x)
      local loss = lossf(out, y)
      loss:backward()
      opt:step()
      sched:step()
      local n = y:numel()
      seen = seen + n
      loss_sum = loss_sum + loss:item() * n
      correct = correct + out:detach():argmax(2):eq(y):sum():item()
      if bar then bar:set({ loss = loss_sum / seen, acc = correct / seen }) end
    end
    local test_loss, test_acc = evaluate(model, test_loader, lossf)
    local h = {
      train_loss = loss_sum / seen, train_acc = correct / seen, test_loss = test_loss, test_acc = test_acc,
      seconds = vl.monotonic() - t0,
    }
    history[epoch] = h
    say(o, "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  lr %.3g  %.1f s", epoch, o.epochs,
      h.train_loss, h.train_acc, h.test_loss, h.test_acc, sched:get_last_lr()[1], h.seconds)
    M.save_checkpoint(o.out, {
      model = model:state_dict(), optim = opt:state_dict(), sched = sched:state_dict(), epoch = epoch,
      rng = vl.get_rng_state(), config = config_of(o), history = history, threads = threads,
    })
  end
  if o.export then model:save(o.export) end
  local secs = vl.monotonic() - t_start
  return { model = model, history = history, resumed_from = resumed, seconds = secs, optimizer = opt }
end

-- Usage errors (messages starting "train_cnn:") print one line; anything
-- else keeps its traceback.
local fail_handler = S.fail_handler("train_cnn: ")

function M.main(argv)
  local o = S.start(argv, M.parse_args, fail_handler, debug.getinfo(1, "S").source:sub(2), M.blas_hint)
  if not o then return end
  local r = S.finish("train_cnn", false, xpcall(M.run, fail_handler, o))
  local h = r.history[#r.history]
  if h then
    print(fmt("done: test accuracy %.4f after %d epochs; %.1f s in this run; checkpoint %s", h.test_acc, #r.history,
      r.seconds, o.out))
  end
end

if ... == "--module" then return M end
M.main(arg or { ... })
