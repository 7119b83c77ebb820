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
local data = require "vl.data"
local S = require "vl.script"

local fmt = string.format

local M = {}

local SCRIPT_DIR = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local tv = assert(loadfile(SCRIPT_DIR .. "train_vit.lua"))("--module") -- training loop, JSON sidecar

-- Fashion-MNIST training-set statistics of the pixels in [0, 1].
M.MEAN, M.STD = tv.MEAN, tv.STD

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

local usage = S.usage_fn("train_vim")

-- parse_args({"--epochs", "3", ...}) -> options (defaults filled in).
function M.parse_args(argv)
  local o = S.parse_args(argv, FLAGS, M.DEFAULTS, "train_vim")
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
M.paths = tv.paths

M.json_encode, M.json_decode = tv.json_encode, tv.json_decode

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
-- Training: train_vit.lua's loop (data, augmentation, AdamW under warm-up +
-- cosine, atomic files, exact resume, Ctrl-C) with this model family.
-- ---------------------------------------------------------------------------

M.JOB = {
  name = "train_vim", script = debug.getinfo(1, "S").source:sub(2), config_keys = CONFIG_KEYS,
  parse_args = function(argv) return M.parse_args(argv) end,
  build_model = function(o) return M.build_model(o) end,
  param_groups = param_groups,
  model_info = function(o, extra) return M.model_info(o, extra) end,
  banner = function(o, model)
    return fmt("model: Vim %dx%d patches, dim %d, %d bidirectional blocks, d_state %d, expand %d: %d parameters%s",
      o.patch, o.patch, o.dim, o.depth, o.d_state, o.expand, model:num_parameters(),
      vl.selective_scan and "" or " (vl.selective_scan missing: slow reference scan)")
  end,
}

-- run(options) -> as train_vit.lua's run.
function M.run(o) return tv.run(o, M.JOB) end

function M.main(argv) return tv.main(argv, M.JOB) end

if ... == "--module" then return M end
M.main(arg or { ... })
