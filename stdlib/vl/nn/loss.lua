-- vl.nn.loss — the losses as modules (CrossEntropyLoss, NLLLoss, MSELoss,
-- L1Loss, SmoothL1Loss, BCEWithLogitsLoss, KLDivLoss) and CosineSimilarity.
local vl = require "vl"
local module = require "vl.nn.module"
local util = require "vl.nn.util"

local M = {}

local is_tensor = vl.is_tensor
local fmt = string.format

local Module = module.Module
local check_input, op = util.check_input, util.op

-- ---------------------------------------------------------------------------
-- Losses as modules
-- ---------------------------------------------------------------------------

local REDUCTIONS = { mean = true, sum = true, none = true }

local function loss_class(name, fn_name, fields, buffers)
  local cls = Module:extend(name)
  M[name] = cls
  function cls:init(opts)
    opts = opts or {}
    self.reduction = opts.reduction or "mean"
    if not REDUCTIONS[self.reduction] then
      error(fmt("%s: reduction must be \"mean\", \"sum\" or \"none\", got %s", name, tostring(self.reduction)), 3)
    end
    for _, f in ipairs(fields or {}) do self[f] = opts[f] end
    for _, b in ipairs(buffers or {}) do
      if opts[b] ~= nil then
        if not is_tensor(opts[b]) then error(fmt("%s: %s must be a tensor, got %s", name, b, type(opts[b])), 3) end
        self:register_buffer(b, opts[b])
      end
    end
  end
  function cls:forward(input, target)
    check_input(self, input)
    check_input(self, target, "target")
    local o = { reduction = self.reduction }
    for _, f in ipairs(fields or {}) do o[f] = self[f] end
    for _, b in ipairs(buffers or {}) do o[b] = self[b] end
    return op(fn_name)(input, target, o)
  end
  function cls:extra_repr()
    return self.reduction == "mean" and "" or "reduction=" .. self.reduction
  end
  return cls
end

--- nn.CrossEntropyLoss({weight, ignore_index = -100, reduction = "mean", label_smoothing = 0})
-- targets: 1-based class indices or class probabilities.
loss_class("CrossEntropyLoss", "cross_entropy", { "ignore_index", "label_smoothing" }, { "weight" })
--- nn.NLLLoss({weight, ignore_index = -100, reduction})
loss_class("NLLLoss", "nll_loss", { "ignore_index" }, { "weight" })
--- nn.MSELoss({reduction}), nn.L1Loss({reduction}), nn.SmoothL1Loss({beta = 1, reduction})
loss_class("MSELoss", "mse_loss")
loss_class("L1Loss", "l1_loss")
loss_class("SmoothL1Loss", "smooth_l1_loss", { "beta" })
--- nn.BCEWithLogitsLoss({weight, pos_weight, reduction})
loss_class("BCEWithLogitsLoss", "binary_cross_entropy_with_logits", nil, { "weight", "pos_weight" })
--- nn.KLDivLoss({reduction = "mean", log_target = false})
loss_class("KLDivLoss", "kl_div", { "log_target" })

--- nn.CosineSimilarity({dim = 2, eps = 1e-8}) -- module form of vl.cosine_similarity.
local CosineSimilarity = Module:extend("CosineSimilarity")
M.CosineSimilarity = CosineSimilarity
function CosineSimilarity:init(opts)
  opts = opts or {}
  self.dim = opts.dim or 2
  self.eps = opts.eps or 1e-8
end
function CosineSimilarity:forward(a, b)
  check_input(self, a)
  check_input(self, b)
  return op("cosine_similarity")(a, b, { dim = self.dim, eps = self.eps })
end

--- nn.InfoNCELoss({symmetric = true}) -- contrastive loss of a similarity
-- matrix (already scaled by the temperature): loss(logits [N, N]) with the
-- diagonal pairs (i, i) as positives is cross_entropy(logits, {1..N}) (each
-- row picks its column); symmetric (CLIP's loss) averages it with
-- cross_entropy(logits^T, {1..N}) (each column picks its row).
-- loss(logits, positives): positives [N, N] (bool or 0/1; the diagonal
-- must be set) marks every positive pair (several clips with one caption):
-- each row's target spreads evenly over its positives, and each column's.
local InfoNCELoss = Module:extend("InfoNCELoss")
M.InfoNCELoss = InfoNCELoss
function InfoNCELoss:init(opts) self.symmetric = not (opts and opts.symmetric == false) end
function InfoNCELoss:extra_repr() return self.symmetric and "" or "symmetric=false" end
function InfoNCELoss:forward(logits, positives)
  check_input(self, logits, "logits")
  local n = logits:dim() == 2 and logits:size(1) or -1
  if n < 1 or logits:size(2) ~= n then
    self:_fail("logits must be a non-empty square matrix [N, N] (row i's positive is column i), got shape %s",
      util.shape_str(logits.shape))
  end
  local rows, cols
  if positives == nil then
    rows = vl.arange(1, n + 1)
    cols = rows
  else
    check_input(self, positives, "positives")
    if not util.same_shape(positives.shape, logits.shape) then
      self:_fail("positives of shape %s must match logits %s", util.shape_str(positives.shape),
        util.shape_str(logits.shape))
    end
    local p = positives:detach():to(logits.dtype)
    if (p * vl.eye(n):to(p.dtype)):sum(2):min():item() <= 0 then
      self:_fail("positives must mark the diagonal pairs (i, i)")
    end
    rows = p / p:sum(2, true)
    cols = p:transpose(1, 2) / p:sum(1, true):transpose(1, 2)
  end
  local ce = op("cross_entropy")
  local l = ce(logits, rows)
  if not self.symmetric then return l end
  return (l + ce(logits:transpose(1, 2), cols)) * 0.5
end

return M
