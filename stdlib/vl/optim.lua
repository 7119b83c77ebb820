-- vl.optim — optimizers and learning-rate schedulers.
--
--   local optim = require "vl.optim"
--   local opt = optim.AdamW(model:parameters(), {lr = 1e-3, weight_decay = 0.05})
--   local sched = optim.lr_scheduler.CosineWithWarmup(opt, {warmup_steps = 100, total_steps = 1000})
--   for step = 1, 1000 do
--     opt:zero_grad()
--     local loss = loss_fn(model(x), y)
--     loss:backward()
--     optim.clip_grad_norm_(model:parameters(), 1.0)
--     opt:step()
--     sched:step()
--   end
--
-- Every update follows PyTorch's formulas (torch.optim, single-tensor
-- path) step for step; tests/lua/optim_spec.lua checks them against
-- updates saved from PyTorch. Updates run inside vl.no_grad with in-place
-- tensor ops on the parameters themselves.
local vl = require "vl"

local optim = {}

local is_tensor = vl.is_tensor
local fmt = string.format
local sqrt, cos, pi = math.sqrt, math.cos, math.pi

local REQUIRED = setmetatable({}, { __tostring = function() return "<required>" end })
optim.required = REQUIRED

local function copy_table(t)
  if type(t) ~= "table" or is_tensor(t) or t == REQUIRED then return t end
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  return r
end

local function is_module(v) return type(v) == "table" and rawget(v, "__m") ~= nil end

-- ---------------------------------------------------------------------------
-- Optimizer base
-- ---------------------------------------------------------------------------

local Optimizer = {}
Optimizer.__index = Optimizer
Optimizer.__name = "Optimizer"
optim.Optimizer = Optimizer

--- optim.Optimizer:extend(name, defaults) -> a new optimizer class.
-- The class needs :_update(group, p, g, state) (called inside vl.no_grad
-- for each parameter with a gradient) and may define :_check(group).
function Optimizer:extend(name, defaults)
  local cls = setmetatable({}, { __index = self, __call = function(c, ...) return c.new(c, ...) end,
    __tostring = function() return "class " .. name end })
  cls.__index = cls
  cls.__name = name
  cls.__tostring = self.__tostring
  cls.defaults = defaults or {}
  return cls
end

local function normalize_params(name, params)
  if is_module(params) then params = params:parameters() end
  if is_tensor(params) then params = { params } end
  if type(params) ~= "table" then
    error(fmt("%s: params must be a list of tensors or of parameter groups, got %s", name, type(params)), 4)
  end
  if #params == 0 then error(fmt("%s: got an empty parameter list", name), 4) end
  if is_tensor(params[1]) then return { { params = params } } end
  return params
end

function Optimizer.new(cls, params, opts)
  local self = setmetatable({}, cls)
  self.defaults = {}
  for k, v in pairs(cls.defaults) do self.defaults[k] = copy_table(v) end
  if opts ~= nil and type(opts) ~= "table" then
    error(fmt("%s: options must be a table, got %s", cls.__name, type(opts)), 3)
  end
  for k, v in pairs(opts or {}) do
    if cls.defaults[k] == nil then
      error(fmt("%s: unknown option '%s'", cls.__name, tostring(k)), 3)
    end
    self.defaults[k] = copy_table(v)
  end
  self.param_groups = {}
  self.state = {}
  for _, g in ipairs(normalize_params(cls.__name, params)) do self:add_param_group(g) end
  return self
end

local FLOATS = { float32 = true, float64 = true, float16 = true, bfloat16 = true }

--- opt:add_param_group({params = {...}, lr = ..., ...}) -- options not given
-- take the optimizer's defaults.
function Optimizer:add_param_group(group)
  local name = self.__name
  if type(group) ~= "table" or is_tensor(group) then
    error(fmt("%s: a parameter group must be a table {params = {...}, ...}, got %s", name, type(group)), 2)
  end
  local ps = group.params
  if is_tensor(ps) then ps = { ps } end
  if is_module(ps) then ps = ps:parameters() end
  if type(ps) ~= "table" then error(fmt("%s: parameter group needs params (a list of tensors)", name), 2) end
  local g = {}
  for k, v in pairs(group) do
    if k ~= "params" then
      if self.defaults[k] == nil then error(fmt("%s: unknown option '%s' in a parameter group", name, tostring(k)), 2) end
      g[k] = copy_table(v)
    end
  end
  for k, v in pairs(self.defaults) do
    if g[k] == nil then
      if v == REQUIRED then error(fmt("%s: option '%s' is required", name, k), 2) end
      g[k] = copy_table(v)
    end
  end
  g.params = {}
  local seen = {}
  for _, og in ipairs(self.param_groups) do
    for _, p in ipairs(og.params) do seen[p] = true end
  end
  for i, p in ipairs(ps) do
    if not is_tensor(p) then error(fmt("%s: parameter %d is a %s, expected a tensor", name, i, type(p)), 2) end
    if not FLOATS[p.dtype] then error(fmt("%s: parameter %d is %s, expected a floating-point tensor", name, i, p.dtype), 2) end
    if not p:is_leaf() then
      error(fmt("%s: parameter %d is not a leaf (it was computed by a recorded op); optimize leaves only", name, i), 2)
    end
    if seen[p] then error(fmt("%s: parameter %d appears in more than one parameter group", name, i), 2) end
    seen[p] = true
    g.params[i] = p
  end
  if self._check then self:_check(g) end
  self.param_groups[#self.param_groups + 1] = g
end

function Optimizer:__tostring()
  local lines = { self.__name .. " (" }
  for i, g in ipairs(self.param_groups) do
    lines[#lines + 1] = fmt("Parameter Group %d", i)
    local keys = {}
    for k in pairs(g) do if k ~= "params" then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = g[k]
      if type(v) == "table" then
        local parts = {}
        for j, x in ipairs(v) do parts[j] = tostring(x) end
        v = "{" .. table.concat(parts, ", ") .. "}"
      end
      lines[#lines + 1] = fmt("    %s: %s", k, tostring(v))
    end
  end
  lines[#lines + 1] = ")"
  return table.concat(lines, "\n")
end

--- opt:zero_grad({set_to_none = true}) -- drop every gradient (or zero it in place).
function Optimizer:zero_grad(opts)
  local none = not (opts and opts.set_to_none == false)
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do
      if none then
        p.grad = nil
      else
        local gr = p.grad
        if gr then gr:zero_() end
      end
    end
  end
end

--- opt:step([closure]) -> closure's loss or nil. Updates every parameter
-- that has a gradient; the closure (re-evaluating the loss) runs first,
-- with gradients recorded.
function Optimizer:step(closure)
  local loss
  if closure ~= nil then
    if type(closure) ~= "function" then error(fmt("%s: step's closure must be a function", self.__name), 2) end
    loss = closure()
  end
  vl.no_grad(function()
    for _, group in ipairs(self.param_groups) do
      if self._check then self:_check(group) end
      for _, p in ipairs(group.params) do
        local g = p.grad
        if g ~= nil then
          local st = self.state[p]
          if st == nil then
            st = {}
            self.state[p] = st
          end
          self:_update(group, p, g, st)
        end
      end
    end
  end)
  return loss
end

-- Parameters in group order, numbered from 1 (the ids of a state_dict).
local function param_list(self)
  local list = {}
  for _, g in ipairs(self.param_groups) do
    for _, p in ipairs(g.params) do list[#list + 1] = p end
  end
  return list
end

local function copy_state_value(v, p)
  if is_tensor(v) then
    -- floating state follows the parameter's dtype (as PyTorch), detached copy
    if p and FLOATS[v.dtype] and v.dtype ~= p.dtype then return v:to(p.dtype) end
    return v:clone()
  end
  return copy_table(v)
end

--- opt:state_dict() -> {state = {[id] = {...}}, param_groups = {{..., params = {ids}}}}
-- A snapshot (state tensors cloned): ids number the parameters from 1 in
-- group order. Loading it into an optimizer over the same parameters
-- resumes exactly.
function Optimizer:state_dict()
  local ids, n = {}, 0
  local groups = {}
  for gi, g in ipairs(self.param_groups) do
    local sg = {}
    for k, v in pairs(g) do
      if k ~= "params" then sg[k] = copy_table(v) end
    end
    sg.params = {}
    for i, p in ipairs(g.params) do
      n = n + 1
      ids[p] = n
      sg.params[i] = n
    end
    groups[gi] = sg
  end
  local state = {}
  for p, st in pairs(self.state) do
    local id = ids[p]
    if id then
      local s = {}
      for k, v in pairs(st) do s[k] = copy_state_value(v) end
      state[id] = s
    end
  end
  return { state = state, param_groups = groups }
end

--- opt:load_state_dict(sd) -- restores hyper-parameters and state
-- (copied, converted to each parameter's dtype). The group layout must
-- match this optimizer's.
function Optimizer:load_state_dict(sd)
  local name = self.__name
  if type(sd) ~= "table" or type(sd.param_groups) ~= "table" or type(sd.state) ~= "table" then
    error(fmt("%s: load_state_dict expects a table {state = ..., param_groups = ...}", name), 2)
  end
  if #sd.param_groups ~= #self.param_groups then
    error(fmt("%s: load_state_dict: the state_dict has %d parameter groups, this optimizer has %d", name,
      #sd.param_groups, #self.param_groups), 2)
  end
  for i, sg in ipairs(sd.param_groups) do
    local n = type(sg.params) == "table" and #sg.params or -1
    if n ~= #self.param_groups[i].params then
      error(fmt("%s: load_state_dict: parameter group %d has %d parameters in the state_dict, %d here", name, i, n,
        #self.param_groups[i].params), 2)
    end
  end
  local by_id = {}
  for i, sg in ipairs(sd.param_groups) do
    for j, id in ipairs(sg.params) do by_id[id] = self.param_groups[i].params[j] end
  end
  for id, s in pairs(sd.state) do
    local p = by_id[id]
    if p == nil then error(fmt("%s: load_state_dict: state for unknown parameter id %s", name, tostring(id)), 2) end
    for k, v in pairs(s) do
      if is_tensor(v) and not (k == "step") and v.shape and #v.shape == #p.shape then
        local ok = true
        for d = 1, #p.shape do if v.shape[d] ~= p.shape[d] then ok = false end end
        if not ok then
          error(fmt("%s: load_state_dict: state '%s' of parameter %d has shape [%s], the parameter has [%s]", name,
            k, id, table.concat(v.shape, ", "), table.concat(p.shape, ", ")), 2)
        end
      end
    end
  end
  local state = {}
  for id, s in pairs(sd.state) do
    local p = by_id[id]
    local st = {}
    for k, v in pairs(s) do st[k] = copy_state_value(v, p) end
    state[p] = st
  end
  self.state = state
  for i, sg in ipairs(sd.param_groups) do
    local g = self.param_groups[i]
    for k, v in pairs(sg) do
      if k ~= "params" then g[k] = copy_table(v) end
    end
  end
end

-- ---------------------------------------------------------------------------
-- Helpers for the update rules (compositions of in-place ops)
-- ---------------------------------------------------------------------------

-- x += alpha * y  (torch's x.add_(y, alpha=alpha))
local function add_scaled_(x, y, alpha)
  if alpha == 1 then return x:add_(y) end
  return x:add_(y * alpha)
end

-- x += value * a * b  (torch's x.addcmul_(a, b, value=value))
local function addcmul_(x, a, b, value)
  return x:add_((a * b):mul_(value))
end

-- x += value * a / b  (torch's x.addcdiv_(a, b, value=value))
local function addcdiv_(x, a, b, value)
  return x:add_((a / b):mul_(value))
end

local function check_number(name, group, key, lo, hi, strict_lo)
  local v = group[key]
  if type(v) ~= "number" then error(fmt("%s: %s must be a number, got %s", name, key, type(v)), 4) end
  if (strict_lo and not (v > lo)) or (not strict_lo and not (v >= lo)) or (hi and not (v < hi)) then
    error(fmt("%s: invalid %s %g (expected %s%g%s)", name, key, v, strict_lo and "> " or ">= ", lo,
      hi and fmt(" and < %g", hi) or ""), 4)
  end
end

local function check_betas(name, group)
  local b = group.betas
  if type(b) ~= "table" or type(b[1]) ~= "number" or type(b[2]) ~= "number" then
    error(fmt("%s: betas must be a table of two numbers", name), 4)
  end
  for i = 1, 2 do
    if not (b[i] >= 0 and b[i] < 1) then error(fmt("%s: invalid beta at index %d: %g (expected 0 <= beta < 1)", name, i, b[i]), 4) end
  end
end

-- ---------------------------------------------------------------------------
-- SGD
-- ---------------------------------------------------------------------------

--- optim.SGD(params, {lr, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false, maximize = false})
local SGD = Optimizer:extend("SGD", { lr = REQUIRED, momentum = 0, dampening = 0, weight_decay = 0,
  nesterov = false, maximize = false })
optim.SGD = SGD

function SGD:_check(g)
  check_number("SGD", g, "lr", 0)
  check_number("SGD", g, "momentum", 0)
  check_number("SGD", g, "dampening", -math.huge)
  check_number("SGD", g, "weight_decay", 0)
  if g.nesterov and (g.momentum <= 0 or g.dampening ~= 0) then
    error("SGD: nesterov momentum requires a momentum > 0 and zero dampening", 4)
  end
end

function SGD:_update(group, p, d_p, st)
  if group.maximize then d_p = -d_p end
  if group.weight_decay ~= 0 then d_p = d_p + p * group.weight_decay end
  local mom = group.momentum
  if mom ~= 0 then
    local buf = st.momentum_buffer
    if buf == nil then
      buf = d_p:clone()
      st.momentum_buffer = buf
    else
      add_scaled_(buf:mul_(mom), d_p, 1 - group.dampening)
    end
    if group.nesterov then
      d_p = d_p + buf * mom
    else
      d_p = buf
    end
  end
  add_scaled_(p, d_p, -group.lr)
end

-- ---------------------------------------------------------------------------
-- Adam / AdamW
-- ---------------------------------------------------------------------------

local function adam_check(name)
  return function(_, g)
    check_number(name, g, "lr", 0)
    check_number(name, g, "eps", 0)
    check_number(name, g, "weight_decay", 0)
    check_betas(name, g)
  end
end

-- The shared moment update; decoupled = AdamW's decay of the weights.
local function adam_update(group, p, grad, st, decoupled)
  if group.maximize then grad = -grad end
  local lr, wd = group.lr, group.weight_decay
  local beta1, beta2 = group.betas[1], group.betas[2]
  if st.step == nil then
    st.step = 0
    st.exp_avg = vl.zeros_like(p)
    st.exp_avg_sq = vl.zeros_like(p)
    if group.amsgrad then st.max_exp_avg_sq = vl.zeros_like(p) end
  end
  st.step = st.step + 1
  if wd ~= 0 then
    if decoupled then
      p:mul_(1 - lr * wd)
    else
      grad = grad + p * wd
    end
  end
  add_scaled_(st.exp_avg:mul_(beta1), grad, 1 - beta1)
  addcmul_(st.exp_avg_sq:mul_(beta2), grad, grad, 1 - beta2)
  local bc1 = 1 - beta1 ^ st.step
  local bc2 = 1 - beta2 ^ st.step
  local step_size = lr / bc1
  local bc2_sqrt = sqrt(bc2)
  local denom
  if group.amsgrad then
    if st.max_exp_avg_sq == nil then st.max_exp_avg_sq = vl.zeros_like(p) end
    st.max_exp_avg_sq:copy_(vl.maximum(st.max_exp_avg_sq, st.exp_avg_sq))
    denom = (st.max_exp_avg_sq:sqrt() / bc2_sqrt):add_(group.eps)
  else
    denom = (st.exp_avg_sq:sqrt() / bc2_sqrt):add_(group.eps)
  end
  addcdiv_(p, st.exp_avg, denom, -step_size)
end

--- optim.Adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, amsgrad = false, maximize = false})
-- weight_decay is L2 (added to the gradient).
local Adam = Optimizer:extend("Adam", { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 0,
  amsgrad = false, maximize = false })
optim.Adam = Adam
Adam._check = adam_check("Adam")
function Adam:_update(group, p, g, st) adam_update(group, p, g, st, false) end

--- optim.AdamW(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 1e-2, amsgrad = false, maximize = false})
-- Decoupled weight decay: p *= 1 - lr * weight_decay before the Adam step.
local AdamW = Optimizer:extend("AdamW", { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = 1e-2,
  amsgrad = false, maximize = false })
optim.AdamW = AdamW
AdamW._check = adam_check("AdamW")
function AdamW:_update(group, p, g, st) adam_update(group, p, g, st, true) end

-- ---------------------------------------------------------------------------
-- RMSprop
-- ---------------------------------------------------------------------------

--- optim.RMSprop(params, {lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0, centered = false, maximize = false})
local RMSprop = Optimizer:extend("RMSprop", { lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0,
  centered = false, maximize = false })
optim.RMSprop = RMSprop

function RMSprop:_check(g)
  check_number("RMSprop", g, "lr", 0)
  check_number("RMSprop", g, "eps", 0)
  check_number("RMSprop", g, "momentum", 0)
  check_number("RMSprop", g, "weight_decay", 0)
  check_number("RMSprop", g, "alpha", 0)
end

function RMSprop:_update(group, p, grad, st)
  if group.maximize then grad = -grad end
  if st.step == nil then
    st.step = 0
    st.square_avg = vl.zeros_like(p)
    if group.momentum > 0 then st.momentum_buffer = vl.zeros_like(p) end
    if group.centered then st.grad_avg = vl.zeros_like(p) end
  end
  st.step = st.step + 1
  local alpha = group.alpha
  if group.weight_decay ~= 0 then grad = grad + p * group.weight_decay end
  addcmul_(st.square_avg:mul_(alpha), grad, grad, 1 - alpha)
  local avg
  if group.centered then
    if st.grad_avg == nil then st.grad_avg = vl.zeros_like(p) end
    add_scaled_(st.grad_avg:mul_(alpha), grad, 1 - alpha)
    avg = addcmul_(st.square_avg:clone(), st.grad_avg, st.grad_avg, -1):sqrt_()
  else
    avg = st.square_avg:sqrt()
  end
  avg:add_(group.eps)
  if group.momentum > 0 then
    if st.momentum_buffer == nil then st.momentum_buffer = vl.zeros_like(p) end
    addcdiv_(st.momentum_buffer:mul_(group.momentum), grad, avg, 1)
    add_scaled_(p, st.momentum_buffer, -group.lr)
  else
    addcdiv_(p, grad, avg, -group.lr)
  end
end

-- ---------------------------------------------------------------------------
-- Gradient clipping
-- ---------------------------------------------------------------------------

local function grads_of(params, ctx)
  if is_module(params) then params = params:parameters() end
  if is_tensor(params) then params = { params } end
  if type(params) ~= "table" then error(fmt("%s: params must be a list of tensors, got %s", ctx, type(params)), 3) end
  local gs = {}
  for i, p in ipairs(params) do
    if not is_tensor(p) then error(fmt("%s: parameter %d is a %s, expected a tensor", ctx, i, type(p)), 3) end
    local g = p.grad
    if g then gs[#gs + 1] = g end
  end
  return gs
end

--- optim.clip_grad_norm_(params, max_norm, {norm_type = 2, error_if_nonfinite = false}) -> total_norm
-- Scales every gradient in place by max_norm / (total_norm + 1e-6) when
-- that is below 1; total_norm (a number) is the norm of all gradients
-- together (norm_type = math.huge: the largest |g|).
function optim.clip_grad_norm_(params, max_norm, opts)
  if type(max_norm) ~= "number" then
    error(fmt("clip_grad_norm_: max_norm must be a number, got %s", type(max_norm)), 2)
  end
  local norm_type = opts and opts.norm_type or 2
  if type(norm_type) ~= "number" or norm_type <= 0 then
    error(fmt("clip_grad_norm_: norm_type must be a positive number (or math.huge), got %s", tostring(norm_type)), 2)
  end
  local gs = grads_of(params, "clip_grad_norm_")
  if #gs == 0 then return 0.0 end
  local total
  vl.no_grad(function()
    if norm_type == math.huge then
      total = 0
      for _, g in ipairs(gs) do
        local m = g:abs():amax():item()
        if m > total or m ~= m then total = m end
      end
    else
      local acc = 0
      for _, g in ipairs(gs) do
        local n = g:to("float64"):norm(norm_type):item()
        acc = acc + n ^ norm_type
      end
      total = acc ^ (1 / norm_type)
    end
    if opts and opts.error_if_nonfinite and (total ~= total or total == math.huge) then
      error(fmt("clip_grad_norm_: the total norm of order %g is non-finite (%g)", norm_type, total), 0)
    end
    local coef = max_norm / (total + 1e-6)
    if coef < 1 then
      for _, g in ipairs(gs) do g:mul_(coef) end
    end
  end)
  return total
end

--- optim.clip_grad_value_(params, clip_value) -- clamps every gradient to [-clip_value, clip_value].
function optim.clip_grad_value_(params, clip_value)
  if type(clip_value) ~= "number" or clip_value < 0 then
    error(fmt("clip_grad_value_: clip_value must be a number >= 0, got %s", tostring(clip_value)), 2)
  end
  local gs = grads_of(params, "clip_grad_value_")
  vl.no_grad(function()
    for _, g in ipairs(gs) do g:clamp_(-clip_value, clip_value) end
  end)
end

-- ---------------------------------------------------------------------------
-- Learning-rate schedulers (torch.optim.lr_scheduler's formulas)
-- ---------------------------------------------------------------------------

local lr_scheduler = {}
optim.lr_scheduler = lr_scheduler

local Scheduler = {}
Scheduler.__index = Scheduler
Scheduler.__name = "LRScheduler"
lr_scheduler.LRScheduler = Scheduler

--- lr_scheduler.LRScheduler:extend(name) -> a scheduler class; it defines
-- :setup(opts) (before the first step) and :get_lr() -> list of lrs.
function Scheduler:extend(name)
  local cls = setmetatable({}, { __index = self, __call = function(c, ...) return c.new(c, ...) end,
    __tostring = function() return "class " .. name end })
  cls.__index = cls
  cls.__name = name
  return cls
end

function Scheduler.new(cls, opt, opts, ...)
  if type(opt) ~= "table" or type(opt.param_groups) ~= "table" then
    error(fmt("%s: the first argument must be an optimizer", cls.__name), 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(fmt("%s: options must be a table, got %s", cls.__name, type(opts)), 3)
  end
  local self = setmetatable({ optimizer = opt }, cls)
  opts = opts or {}
  self:setup(opts, ...)
  local last_epoch = opts.last_epoch or -1
  for i, g in ipairs(opt.param_groups) do
    if last_epoch == -1 then
      if g.initial_lr == nil then g.initial_lr = g.lr end
    elseif g.initial_lr == nil then
      error(fmt("%s: param group %d has no initial_lr (needed when resuming with last_epoch)", cls.__name, i), 3)
    end
  end
  self.base_lrs = {}
  for i, g in ipairs(opt.param_groups) do self.base_lrs[i] = g.initial_lr end
  self.last_epoch = last_epoch
  self._step_count = 0
  self:step()
  return self
end

function Scheduler:setup() end

--- sched:step() -- advance one step and set each group's lr.
function Scheduler:step()
  self._step_count = self._step_count + 1
  self.last_epoch = self.last_epoch + 1
  local lrs = self:get_lr()
  self._last_lr = {}
  for i, g in ipairs(self.optimizer.param_groups) do
    g.lr = lrs[i]
    self._last_lr[i] = lrs[i]
  end
end

--- sched:get_last_lr() -> list of the lrs last set (one per group).
function Scheduler:get_last_lr()
  local r = {}
  for i, v in ipairs(self._last_lr) do r[i] = v end
  return r
end

--- sched:state_dict() -> table; sched:load_state_dict(t) -- every field but the optimizer.
function Scheduler:state_dict()
  local r = {}
  for k, v in pairs(self) do
    if k ~= "optimizer" and type(v) ~= "function" then r[k] = copy_table(v) end
  end
  return r
end
function Scheduler:load_state_dict(sd)
  if type(sd) ~= "table" then error(fmt("%s: load_state_dict expects a table", self.__name), 2) end
  for k, v in pairs(sd) do
    if k ~= "optimizer" then self[k] = copy_table(v) end
  end
end

local function group_lrs(self)
  local r = {}
  for i, g in ipairs(self.optimizer.param_groups) do r[i] = g.lr end
  return r
end

local function positive_int(cls, key, v, min)
  if math.type(v) ~= "integer" and not (type(v) == "number" and v == math.floor(v)) then
    error(fmt("%s: %s must be an integer, got %s", cls, key, tostring(v)), 4)
  end
  if v < (min or 1) then error(fmt("%s: %s must be >= %d, got %d", cls, key, min or 1, v), 4) end
  return math.tointeger(v)
end

--- lr_scheduler.StepLR(opt, {step_size, gamma = 0.1}) -- lr *= gamma every step_size steps.
local StepLR = Scheduler:extend("StepLR")
lr_scheduler.StepLR = StepLR
function StepLR:setup(o)
  self.step_size = positive_int("StepLR", "step_size", o.step_size)
  self.gamma = o.gamma or 0.1
end
function StepLR:get_lr()
  if self.last_epoch == 0 or self.last_epoch % self.step_size ~= 0 then return group_lrs(self) end
  local r = group_lrs(self)
  for i = 1, #r do r[i] = r[i] * self.gamma end
  return r
end

--- lr_scheduler.MultiStepLR(opt, {milestones = {...}, gamma = 0.1})
local MultiStepLR = Scheduler:extend("MultiStepLR")
lr_scheduler.MultiStepLR = MultiStepLR
function MultiStepLR:setup(o)
  if type(o.milestones) ~= "table" then error("MultiStepLR: milestones must be a list of step numbers", 4) end
  self.milestones = {}
  for _, m in ipairs(o.milestones) do self.milestones[m] = (self.milestones[m] or 0) + 1 end
  self.gamma = o.gamma or 0.1
end
function MultiStepLR:get_lr()
  local r = group_lrs(self)
  local n = self.milestones[self.last_epoch]
  if n then
    for i = 1, #r do r[i] = r[i] * self.gamma ^ n end
  end
  return r
end

--- lr_scheduler.ExponentialLR(opt, {gamma}) -- lr *= gamma every step.
local ExponentialLR = Scheduler:extend("ExponentialLR")
lr_scheduler.ExponentialLR = ExponentialLR
function ExponentialLR:setup(o)
  if type(o.gamma) ~= "number" then error("ExponentialLR: gamma must be a number", 4) end
  self.gamma = o.gamma
end
function ExponentialLR:get_lr()
  local r = group_lrs(self)
  if self.last_epoch == 0 then return r end
  for i = 1, #r do r[i] = r[i] * self.gamma end
  return r
end

--- lr_scheduler.LambdaLR(opt, {lr_lambda = function(step) -> factor}) -- lr = base_lr * f(step).
local LambdaLR = Scheduler:extend("LambdaLR")
lr_scheduler.LambdaLR = LambdaLR
function LambdaLR:setup(o)
  if type(o.lr_lambda) ~= "function" then error("LambdaLR: lr_lambda must be a function", 4) end
  self.lr_lambda = o.lr_lambda
end
function LambdaLR:get_lr()
  local r = {}
  for i, b in ipairs(self.base_lrs) do r[i] = b * self.lr_lambda(self.last_epoch) end
  return r
end
function LambdaLR:state_dict()
  local r = Scheduler.state_dict(self)
  r.lr_lambda = nil
  return r
end

--- lr_scheduler.CosineAnnealingLR(opt, {T_max, eta_min = 0}) -- torch's recursive form.
local CosineAnnealingLR = Scheduler:extend("CosineAnnealingLR")
lr_scheduler.CosineAnnealingLR = CosineAnnealingLR
function CosineAnnealingLR:setup(o)
  self.T_max = positive_int("CosineAnnealingLR", "T_max", o.T_max)
  self.eta_min = o.eta_min or 0
end
function CosineAnnealingLR:get_lr()
  local e, T, eta = self.last_epoch, self.T_max, self.eta_min
  local groups = self.optimizer.param_groups
  local r = {}
  if e == 0 then return group_lrs(self) end
  if self._step_count == 1 and e > 0 then
    for i, b in ipairs(self.base_lrs) do
      r[i] = eta + (b - eta) * (1 + cos(e * pi / T)) / 2
    end
    return r
  end
  if (e - 1 - T) % (2 * T) == 0 then
    for i, g in ipairs(groups) do
      r[i] = g.lr + (self.base_lrs[i] - eta) * (1 - cos(pi / T)) / 2
    end
    return r
  end
  for i, g in ipairs(groups) do
    r[i] = (1 + cos(pi * e / T)) / (1 + cos(pi * (e - 1) / T)) * (g.lr - eta) + eta
  end
  return r
end

--- lr_scheduler.CosineWithWarmup(opt, {warmup_steps = 0, total_steps, min_lr = 0})
-- Linear warm-up then a half cosine down to min_lr, in closed form at step s:
--   s < warmup_steps:  base_lr * (s + 1) / warmup_steps
--   else:              min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2,
--                      p = min(1, (s - warmup_steps) / (total_steps - warmup_steps))
local CosineWithWarmup = Scheduler:extend("CosineWithWarmup")
lr_scheduler.CosineWithWarmup = CosineWithWarmup
function CosineWithWarmup:setup(o)
  self.warmup_steps = positive_int("CosineWithWarmup", "warmup_steps", o.warmup_steps or 0, 0)
  self.total_steps = positive_int("CosineWithWarmup", "total_steps", o.total_steps, 1)
  if self.total_steps <= self.warmup_steps then
    error(fmt("CosineWithWarmup: total_steps (%d) must exceed warmup_steps (%d)", self.total_steps,
      self.warmup_steps), 4)
  end
  self.min_lr = o.min_lr or 0
end
function CosineWithWarmup:get_lr()
  local s, w, T = self.last_epoch, self.warmup_steps, self.total_steps
  local r = {}
  for i, b in ipairs(self.base_lrs) do
    if s < w then
      r[i] = b * (s + 1) / w
    else
      local p = math.min(1, (s - w) / (T - w))
      r[i] = self.min_lr + (b - self.min_lr) * (1 + cos(pi * p)) / 2
    end
  end
  return r
end

--- lr_scheduler.OneCycleLR(opt, {max_lr, total_steps | epochs + steps_per_epoch, pct_start = 0.3,
--   anneal_strategy = "cos"|"linear", cycle_momentum = true, base_momentum = 0.85, max_momentum = 0.95,
--   div_factor = 25, final_div_factor = 1e4, three_phase = false})
-- torch.optim.lr_scheduler.OneCycleLR: starts at max_lr/div_factor, rises
-- to max_lr over pct_start of the steps, anneals to initial_lr/final_div_factor;
-- momentum (or Adam's beta1) cycles the other way.
local OneCycleLR = Scheduler:extend("OneCycleLR")
lr_scheduler.OneCycleLR = OneCycleLR

local function per_group(v, n, what)
  if type(v) == "table" then
    if #v ~= n then error(fmt("OneCycleLR: expected %d values for %s, got %d", n, what, #v), 5) end
    return v
  end
  if type(v) ~= "number" then error(fmt("OneCycleLR: %s must be a number or a list, got %s", what, type(v)), 5) end
  local r = {}
  for i = 1, n do r[i] = v end
  return r
end

function OneCycleLR:setup(o)
  local opt = self.optimizer
  if o.total_steps ~= nil then
    self.total_steps = positive_int("OneCycleLR", "total_steps", o.total_steps)
  elseif o.epochs ~= nil and o.steps_per_epoch ~= nil then
    self.total_steps = positive_int("OneCycleLR", "epochs", o.epochs) *
        positive_int("OneCycleLR", "steps_per_epoch", o.steps_per_epoch)
  else
    error("OneCycleLR: give total_steps, or epochs and steps_per_epoch", 4)
  end
  local pct = o.pct_start or 0.3
  if type(pct) ~= "number" or pct < 0 or pct > 1 then
    error(fmt("OneCycleLR: pct_start must be a number in [0, 1], got %s", tostring(pct)), 4)
  end
  local T = self.total_steps
  if o.three_phase then
    self.phases = {
      { end_step = pct * T - 1, start_lr = "initial_lr", end_lr = "max_lr", start_m = "max_momentum", end_m = "base_momentum" },
      { end_step = 2 * pct * T - 2, start_lr = "max_lr", end_lr = "initial_lr", start_m = "base_momentum", end_m = "max_momentum" },
      { end_step = T - 1, start_lr = "initial_lr", end_lr = "min_lr", start_m = "max_momentum", end_m = "max_momentum" },
    }
  else
    self.phases = {
      { end_step = pct * T - 1, start_lr = "initial_lr", end_lr = "max_lr", start_m = "max_momentum", end_m = "base_momentum" },
      { end_step = T - 1, start_lr = "max_lr", end_lr = "min_lr", start_m = "base_momentum", end_m = "max_momentum" },
    }
  end
  local strategy = o.anneal_strategy or "cos"
  if strategy ~= "cos" and strategy ~= "linear" then
    error(fmt("OneCycleLR: anneal_strategy must be \"cos\" or \"linear\", got %s", tostring(strategy)), 4)
  end
  self.anneal_strategy = strategy
  if o.max_lr == nil then error("OneCycleLR: max_lr is required", 4) end
  local n = #opt.param_groups
  local max_lrs = per_group(o.max_lr, n, "max_lr")
  local div, fdiv = o.div_factor or 25, o.final_div_factor or 1e4
  for i, g in ipairs(opt.param_groups) do
    g.initial_lr = max_lrs[i] / div
    g.max_lr = max_lrs[i]
    g.min_lr = g.initial_lr / fdiv
  end
  self.cycle_momentum = o.cycle_momentum ~= false
  if self.cycle_momentum then
    local g1 = opt.param_groups[1]
    if g1.momentum == nil and g1.betas == nil then
      error("OneCycleLR: the optimizer has no momentum or betas; pass cycle_momentum = false", 4)
    end
    self.use_beta1 = g1.betas ~= nil
    local bm = per_group(o.base_momentum or 0.85, n, "base_momentum")
    local mm = per_group(o.max_momentum or 0.95, n, "max_momentum")
    for i, g in ipairs(opt.param_groups) do
      if self.use_beta1 then
        g.betas = { mm[i], g.betas[2] }
      else
        g.momentum = mm[i]
      end
      g.max_momentum = mm[i]
      g.base_momentum = bm[i]
    end
  end
end

local function anneal(strategy, start, stop, pct)
  if strategy == "cos" then
    return stop + (start - stop) / 2.0 * (cos(pi * pct) + 1)
  end
  return (stop - start) * pct + start
end

function OneCycleLR:get_lr()
  local step = self.last_epoch
  if step > self.total_steps then
    error(fmt("OneCycleLR: tried to step %d times; total_steps is %d", step, self.total_steps), 3)
  end
  local r = {}
  for gi, g in ipairs(self.optimizer.param_groups) do
    local start_step = 0
    local lr, mom
    for i, ph in ipairs(self.phases) do
      if step <= ph.end_step or i == #self.phases then
        local pct = (step - start_step) / (ph.end_step - start_step)
        lr = anneal(self.anneal_strategy, g[ph.start_lr], g[ph.end_lr], pct)
        if self.cycle_momentum then mom = anneal(self.anneal_strategy, g[ph.start_m], g[ph.end_m], pct) end
        break
      end
      start_step = ph.end_step
    end
    r[gi] = lr
    if self.cycle_momentum then
      if self.use_beta1 then
        g.betas = { mom, g.betas[2] }
      else
        g.momentum = mom
      end
    end
  end
  return r
end

return optim
