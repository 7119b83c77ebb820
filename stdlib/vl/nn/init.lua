-- vl.nn — neural network modules on top of the vl functional ops.
--
--   local nn = require "vl.nn"
--   local Net = nn.Module:extend("Net")
--   function Net:init(n)
--     self.fc1 = nn.Linear(n, 64)        -- registered as child "fc1"
--     self.act = nn.ReLU()
--     self.fc2 = nn.Linear(64, 10)
--   end
--   function Net:forward(x) return self.fc2(self.act(self.fc1(x))) end
--
-- Modules hold parameters and buffers only; gradients come from the C
-- autograd of the ops they call (no hand-written backward passes).
-- Naming follows PyTorch so that state_dicts are interchangeable: dotted
-- keys ("layers.0.weight"), Sequential/ModuleList children named "0", "1",
-- ... in keys, while Lua-side indexing is 1-based (seq[1] is child "0").
-- All indices a user passes (Embedding ids, padding_idx, class targets) are
-- 1-based, as everywhere in vl.
--
-- The parts: vl.nn.module (Module, Parameter, state_dict), vl.nn.layers,
-- vl.nn.containers (Sequential, ModuleList, ModuleDict, MLP),
-- vl.nn.weight_init (nn.init) and vl.nn.loss; this file gathers them into
-- the one nn table and adds nn.functional.
local vl = require "vl"
local util = require "vl.nn.util"

local nn = {}

for _, part in ipairs({ "module", "layers", "containers", "loss", "transformer", "s4d", "layers3d" }) do
  for k, v in pairs(require("vl.nn." .. part)) do nn[k] = v end
end
nn._shape_str = util.shape_str
nn.init = require "vl.nn.weight_init"

-- ---------------------------------------------------------------------------
-- nn.functional: the vl functional ops, re-exported (looked up on use, so
-- ops added to vl later are seen).
-- ---------------------------------------------------------------------------

local FUNCTIONAL = {
  "linear", "conv1d", "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
  "batch_norm", "layer_norm", "rms_norm", "group_norm", "dropout", "embedding",
  "cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits",
  "kl_div", "cosine_similarity",
  "relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid", "softmax", "log_softmax", "softplus",
}
local functional_set = {}
for _, n in ipairs(FUNCTIONAL) do functional_set[n] = true end

nn.functional = setmetatable({ names = FUNCTIONAL }, {
  __index = function(_, k)
    if functional_set[k] then return vl[k] end
    return nil
  end,
})

return nn
