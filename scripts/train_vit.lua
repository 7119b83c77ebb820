-- scripts/train_vit.lua — the main job: a small Vision Transformer learns
-- Fashion-MNIST on a laptop-class CPU (what `make run` runs).
--
--   build/vlua scripts/train_vit.lua                      -- 10 epochs -> vit_fmnist.safetensors + .json
--   build/vlua scripts/train_vit.lua --epochs 12 --threads 2 --out runs/vit.safetensors
--   build/vlua scripts/classify.lua vit_fmnist.safetensors idx:1 idx:2 shoe.npy
--
-- Model (vl.vit.VisionTransformer, torchvision's layout and state_dict keys;
-- about 0.2 M parameters): 7x7 patches of the 28x28 image (16 tokens and a
-- class token), hidden size 64, 6 pre-norm encoder blocks with 4 heads and
-- an MLP of 128, a linear head on the class token. Patches of 7 rather than
-- 4: on 2 cores a 49-token model takes about 3x longer per epoch and gains
-- too little in the 15 minutes the job has.
--
-- Recipe: inputs standardised with the training set's mean and std; a
-- random horizontal flip per image (--crop-pad N adds a random crop with N
-- pixels of padding: it slows learning in 10 epochs, see the README);
-- cross-entropy with label smoothing 0.1; AdamW (weight decay on the
-- weight matrices only, not on biases, norms, the class token or the
-- position embedding) under a linear warm-up (--warmup, a fraction of all
-- steps) then a cosine decay to 0, stepped every batch.
--
-- Output: a progress bar per epoch (stderr; loss, accuracy and lr live), one
-- line per epoch on stdout, then the test accuracy:
--   epoch 3/10  train loss 0.8003 acc 0.8610  test loss 0.8225 acc 0.8542  lr 0.00168  65.0 s
--
-- Files, all written atomically (temp file, fsync, rename) after every
-- epoch, for --out vit_fmnist.safetensors:
--   vit_fmnist.safetensors       the model's state_dict (torchvision names)
--   vit_fmnist.json              its config: the VisionTransformer arguments,
--                                class names, input normalisation, accuracy
--   vit_fmnist.ckpt.safetensors  the training state (model, AdamW moments,
--                                schedule, random generator, position in the
--                                epoch, history) for --resume
-- When the checkpoint exists the run resumes from it (--fresh starts over,
-- --resume insists on one) and continues with the numbers an uninterrupted
-- run gives, also from the middle of an epoch. Ctrl-C (SIGINT) stops at the
-- next batch boundary, saves the checkpoint and exits with status 130; run
-- the same command again to continue. (vlua turns SIGINT into the error
-- "interrupted!" in the main Lua thread; the parameter update runs in a
-- coroutine, which that error cannot enter, so a checkpoint never holds a
-- half-applied step. A second Ctrl-C kills the process at once.)
--
-- Flags: --epochs N (10), --batch B (128), --lr X (0.002, the peak),
-- --wd X (0.05), --warmup F (0.05), --label-smoothing X (0.1), --patch P (7),
-- --hidden D (64), --layers L (6), --heads H (4), --mlp M (128),
-- --dropout P (0), --drop-path P (0), --crop-pad N (0), --no-flip,
-- --out PATH (vit_fmnist.safetensors), --checkpoint PATH (OUT with
-- .ckpt.safetensors), --threads N (vl.get_num_threads()), --seed S (1),
-- --subset N (first N training images), --test-subset N, --eval-batch N
-- (500), --fresh, --resume, --stop-after K (stop after epoch K as if
-- interrupted), --quiet (no bars), --help. Testing aid: --interrupt-after N
-- raises "interrupted!" before training step N+1, as a Ctrl-C there would.
--
-- Also a module for tests and scripts/classify.lua:
-- loadfile("scripts/train_vit.lua")("--module") returns { parse_args, run,
-- build_model, json_encode, json_decode, paths, load_model, MEAN, STD, ... }.
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"
local data = require "vl.data"
local progress = require "vl.progress"
local S = require "vl.script"

local fmt = string.format

local M = {}

local SCRIPT_DIR = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local cnn = assert(loadfile(SCRIPT_DIR .. "train_cnn.lua"))("--module") -- checkpoint flatten/unflatten, blas hint

-- Fashion-MNIST training-set statistics of the pixels in [0, 1].
M.MEAN, M.STD = 0.2860, 0.3530

M.DEFAULTS = {
  epochs = 10, batch = 128, lr = 0.002, wd = 0.05, warmup = 0.05, label_smoothing = 0.1,
  patch = 7, hidden = 64, layers = 6, heads = 4, mlp = 128, dropout = 0, drop_path = 0,
  crop_pad = 0, no_flip = false, out = "vit_fmnist.safetensors", seed = 1, eval_batch = 500,
  fresh = false, resume = false, quiet = false,
}

-- Options that must agree between a checkpoint and the run resuming it.
local CONFIG_KEYS = { "epochs", "batch", "lr", "wd", "warmup", "label_smoothing", "patch", "hidden", "layers",
  "heads", "mlp", "dropout", "drop_path", "crop_pad", "no_flip", "seed", "subset", "test_subset" }

-- ---------------------------------------------------------------------------
-- Arguments
-- ---------------------------------------------------------------------------

local FLAGS = {
  epochs = "int", batch = "int", lr = "num", wd = "num", warmup = "num", ["label-smoothing"] = "num",
  patch = "int", hidden = "int", layers = "int", heads = "int", mlp = "int", dropout = "num",
  ["drop-path"] = "num", ["crop-pad"] = "int", ["no-flip"] = "bool", out = "str", checkpoint = "str",
  threads = "int", seed = "int", subset = "int", ["test-subset"] = "int", ["eval-batch"] = "int",
  ["stop-after"] = "int", ["interrupt-after"] = "int",
  fresh = "bool", resume = "bool", quiet = "bool", help = "bool",
}

local usage = S.usage_fn("train_vit")

-- parse_args({"--epochs", "3", ...}) -> options (defaults filled in).
function M.parse_args(argv)
  local o = S.parse_args(argv, FLAGS, M.DEFAULTS, "train_vit")
  for _, k in ipairs({ "epochs", "batch", "patch", "hidden", "layers", "heads", "mlp", "eval_batch" }) do
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
  for _, k in ipairs({ "dropout", "drop_path" }) do
    if not (o[k] >= 0 and o[k] < 1) then usage("--%s must be in [0, 1), got %g", k:gsub("_", "-"), o[k]) end
  end
  if o.crop_pad < 0 or o.crop_pad > 14 then usage("--crop-pad must be in 0..14, got %d", o.crop_pad) end
  if 28 % o.patch ~= 0 then usage("--patch must divide 28 (1, 2, 4, 7, 14 or 28), got %d", o.patch) end
  if o.hidden % o.heads ~= 0 then usage("--hidden (%d) must be a multiple of --heads (%d)", o.hidden, o.heads) end
  if o.fresh and o.resume then usage("--fresh and --resume contradict each other") end
  if not o.out:match("%.safetensors$") then usage("--out must end in .safetensors, got '%s'", o.out) end
  return o
end

-- The files of a run: weights, config sidecar, training checkpoint.
function M.paths(out, checkpoint)
  local stem = out:gsub("%.safetensors$", "")
  return { weights = out, config = stem .. ".json", checkpoint = checkpoint or (stem .. ".ckpt.safetensors") }
end

-- ---------------------------------------------------------------------------
-- JSON (the config sidecar): objects, arrays, strings, numbers, booleans.
-- ---------------------------------------------------------------------------

local function json_str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local m = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r" }
    return m[c] or fmt("\\u%04x", c:byte())
  end) .. '"'
end

-- json_encode(v) -> text; tables with keys 1..n are arrays, others objects
-- (keys sorted, so that the file is stable).
function M.json_encode(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return json_str(v) end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("json_encode: cannot write " .. tostring(v), 2) end
    if math.type(v) == "integer" then return tostring(v) end
    local s = fmt("%.15g", v)
    if tonumber(s) ~= v then s = fmt("%.17g", v) end
    return s
  end
  if t ~= "table" then error("json_encode: cannot write a " .. t, 2) end
  local inner = indent .. "  "
  local n = #v
  local parts = {}
  if n > 0 or next(v) == nil then
    for i = 1, n do parts[i] = M.json_encode(v[i], inner) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  local keys = {}
  for k in pairs(v) do
    if type(k) ~= "string" then error("json_encode: object keys must be strings, got " .. type(k), 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  for i, k in ipairs(keys) do parts[i] = inner .. json_str(k) .. ": " .. M.json_encode(v[k], inner) end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

-- json_decode(text, where) -> value; errors name `where` and the byte offset.
function M.json_decode(s, where)
  where = where or "json"
  local pos = 1
  local function fail(msg) error(fmt("%s: invalid JSON at byte %d: %s", where, pos, msg), 0) end
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1 break end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if map[e] then
          out[#out + 1] = map[e]
          pos = pos + 2
        elseif e == "u" then
          local h = s:sub(pos + 2, pos + 5)
          if not h:match("^%x%x%x%x$") then fail("bad \\u escape") end
          out[#out + 1] = utf8.char(tonumber(h, 16))
          pos = pos + 6
        else
          fail("bad escape")
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
    return table.concat(out)
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then fail("expected a string key") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then pos = pos - 1 fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then pos = pos - 1 fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    elseif s:sub(pos, pos + 3) == "true" then
      pos = pos + 4
      return true
    elseif s:sub(pos, pos + 4) == "false" then
      pos = pos + 5
      return false
    elseif s:sub(pos, pos + 3) == "null" then
      pos = pos + 4
      return nil
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if num == nil or num == "" or tonumber(num) == nil then fail("unexpected " .. (c == "" and "end" or "'" .. c .. "'")) end
      pos = pos + #num
      return math.tointeger(tonumber(num)) or tonumber(num)
    end
  end
  local v = value()
  ws()
  if pos <= #s then fail("trailing text") end
  return v
end

-- ---------------------------------------------------------------------------
-- Model
-- ---------------------------------------------------------------------------

-- The vl.vit.VisionTransformer arguments of a run.
function M.vit_config(o)
  return {
    image_size = 28, patch_size = o.patch, in_channels = 1, num_classes = 10, hidden_dim = o.hidden,
    num_layers = o.layers, num_heads = o.heads, mlp_dim = o.mlp, dropout = o.dropout, attention_dropout = 0,
    drop_path = o.drop_path,
  }
end

function M.build_model(o)
  local vit = require "vl.vit"
  return vit.VisionTransformer(M.vit_config(o))
end

-- Weight decay on the weight matrices (and the patch convolution) only.
local function param_groups(model, wd)
  local decay, rest = {}, {}
  for name, p in model:named_parameters() do
    if p:dim() >= 2 and not name:match("pos_embedding$") and not name:match("class_token$") and
        not name:match("dist_token$") then
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
    format = "vlua-vit/1", model = "vl.vit.VisionTransformer", vit = M.vit_config(o),
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
    error(fmt("%s: no config %s next to the weights %s (train_vit.lua writes both)", where, p.config, path), 0)
  end
  local text = f:read("a")
  f:close()
  local info = M.json_decode(text, p.config)
  if type(info) ~= "table" or type(info.vit) ~= "table" then
    error(fmt("%s: %s has no 'vit' table of VisionTransformer arguments", where, p.config), 0)
  end
  local g = io.open(path, "rb")
  if not g then error(fmt("%s: no weights file %s", where, path), 0) end
  g:close()
  local vit = require "vl.vit"
  local model = vit.VisionTransformer(info.vit)
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

local function config_of(o, job) return S.config_of(o, job.config_keys) end

local exists = S.exists

local function say(o, ...)
  if o.log then o.log(fmt(...)) elseif not o.quiet_stdout then
    print(fmt(...))
    io.stdout:flush()
  end
end

local is_interrupt = S.is_interrupt

-- What run and main need of a model family (scripts/train_vim.lua has its
-- own): the script's name and file, the options a checkpoint must match,
-- the model, the optimizer's parameter groups, the sidecar, a banner.
M.JOB = {
  name = "train_vit", script = debug.getinfo(1, "S").source:sub(2), config_keys = CONFIG_KEYS,
  parse_args = function(argv) return M.parse_args(argv) end,
  build_model = function(o) return M.build_model(o) end,
  param_groups = param_groups,
  model_info = function(o, extra) return M.model_info(o, extra) end,
  banner = function(o, model)
    return fmt("model: ViT %dx%d patches, hidden %d, %d layers, %d heads, mlp %d: %d parameters", o.patch, o.patch,
      o.hidden, o.layers, o.heads, o.mlp, model:num_parameters())
  end,
}

-- run(options[, job]) -> {model, history, resumed_from, seconds, interrupted, paths}.
-- options as parse_args (o.log: a function taking each line instead of print);
-- job: M.JOB by default.
function M.run(o, job)
  job = job or M.JOB
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

  local model = job.build_model(o)
  model:train()
  local opt = optim.AdamW(job.param_groups(model, o.wd), { lr = o.lr, weight_decay = o.wd })
  local warm = math.floor(o.warmup * total)
  local sched = optim.lr_scheduler.CosineWithWarmup(opt, { warmup_steps = warm, total_steps = total })
  local lossf = nn.CrossEntropyLoss({ label_smoothing = o.label_smoothing })

  -- `cur`: the last point the model, optimizer and scheduler agree with;
  -- replaced as a whole (one assignment) so that an interrupt sees either
  -- the old or the new one.
  local history, cur, resumed = S.resume(o, {
    name = job.name, path = files.checkpoint, config_keys = job.config_keys, load = cnn.load_checkpoint,
    model = model, optim = opt, sched = sched, threads = threads, epochs = o.epochs, steps = steps,
    say = function(...) say(o, ...) end,
  })
  if not resumed then
    say(o, "%s", job.banner(o, model))
    say(o, "data: %d training and %d test images; batch %d, %d steps per epoch; %d threads", n, xte:size(1), o.batch,
      steps, threads)
  end

  local function save_checkpoint(c)
    cnn.save_checkpoint(files.checkpoint, {
      model = model:state_dict(), optim = opt:state_dict(), sched = sched:state_dict(), epoch = c.epoch,
      step = c.step, order = c.order, sums = c.sums, rng = c.rng, config = config_of(o, job), history = history,
      threads = threads,
    })
  end
  local function save_model(extra)
    model:save(files.weights)
    vl.write_file(files.config, M.json_encode(job.model_info(o, extra)) .. "\n")
  end

  -- The update and the bookkeeping of a step: applied whole or not at all.
  local apply_step = S.uninterruptible(function(epoch, k, order, sums)
    opt:step()
    sched:step()
    cur = { epoch = epoch - 1, step = k, order = order, sums = sums, rng = vl.get_rng_state() }
  end)

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

-- Usage errors (messages starting with the script's name) print one line;
-- anything else keeps its traceback.
local function fail_handler(job) return S.fail_handler(job.name .. ": ", "fashion_mnist: ") end

-- main(argv[, job]): the command line (job: M.JOB by default).
function M.main(argv, job)
  job = job or M.JOB
  local handler = fail_handler(job)
  local o = S.start(argv, job.parse_args, handler, job.script, cnn.blas_hint)
  if not o then return end
  local r = S.finish(job.name, true, xpcall(M.run, handler, o, job))
  if r.interrupted then os.exit(130) end
  local h = r.history[#r.history]
  if h then
    print(fmt("done: test accuracy %.4f after %d epochs; %.1f s in this run; model %s + %s", h.test_acc,
      #r.history, r.seconds, r.paths.weights, r.paths.config))
  end
end

if ... == "--module" then return M end
M.main(arg or { ... })
