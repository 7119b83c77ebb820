local vl = require "vl"
local nn = require "vl.nn"

-- Reference modules from PyTorch: scripts/fixtures/nn_modules.py.
local F = dofile("tests/fixtures/nn_modules.lua")

local function tensor(e, dtype)
  local t = vl.tensor(e.values, { dtype = e.dtype or dtype or "float32" })
  return t:reshape(e.shape)
end

local function flat(t) return t:reshape({ -1 }):to("float64"):totable() end

-- max |a - e| / (1 + |e|) over the elements
local function max_err(t, expected)
  local a = flat(t)
  assert.are.equal(#expected, #a, "element count")
  local m = 0
  for i = 1, #a do
    local d = math.abs(a[i] - expected[i]) / (1 + math.abs(expected[i]))
    if d ~= d then return math.huge end
    if d > m then m = d end
  end
  return m
end

local function assert_close(t, expected, tol, what)
  local e = max_err(t, expected)
  assert(e <= (tol or 1e-5), string.format("%s: max error %.3g", what or "values", e))
end

local function list(iter)
  local r = {}
  for k, v in iter do r[#r + 1] = { k, v } end
  return r
end

local function names_of(iter)
  local r = {}
  for k in iter do r[#r + 1] = k end
  return r
end

-- The PyTorch SmallCNN of the fixture script, in vlua.
local SmallCNN = nn.Module:extend("SmallCNN")
function SmallCNN:init()
  self.features = nn.Sequential(
    nn.Conv2d(1, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 8, 3, { padding = 1 }), nn.SiLU(), nn.AvgPool2d(2))
  self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
  self.scale = nn.Parameter(vl.ones({ 5 }))
end
function SmallCNN:forward(x) return self.head(self.features(x)) * self.scale end

local builders = {
  linear = function() return nn.Linear(5, 3) end,
  linear_nobias_3d = function() return nn.Linear(4, 2, { bias = false }) end,
  conv2d_groups = function() return nn.Conv2d(4, 6, 3, { padding = 1, groups = 2 }) end,
  conv2d_stride_dilation = function()
    return nn.Conv2d(3, 4, { 3, 2 }, { stride = { 2, 1 }, padding = { 1, 0 }, dilation = { 1, 2 } })
  end,
  conv2d_same = function() return nn.Conv2d(2, 3, 4, { padding = "same" }) end,
  conv1d = function() return nn.Conv1d(3, 4, 3, { stride = 2, padding = 1 }) end,
  conv_transpose2d = function() return nn.ConvTranspose2d(4, 2, 3, { stride = 2, padding = 1, output_padding = 1 }) end,
  batchnorm2d_train = function() return nn.BatchNorm2d(3) end,
  batchnorm2d_eval = function() return nn.BatchNorm2d(3) end,
  batchnorm1d_train = function() return nn.BatchNorm1d(5, { momentum = 0.3 }) end,
  layernorm = function() return nn.LayerNorm(8) end,
  layernorm_2d = function() return nn.LayerNorm({ 3, 4 }, { eps = 1e-3 }) end,
  groupnorm = function() return nn.GroupNorm(2, 6) end,
  rmsnorm = function() return nn.RMSNorm(6, { eps = 1e-6 }) end,
  embedding = function() return nn.Embedding(10, 4, { padding_idx = 3 }) end,
  mlp = function() return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 3)) end,
  activations = function()
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 5),
      nn.GELU({ approximate = "tanh" }), nn.Softmax(2), nn.LogSoftmax(-1))
  end,
  cnn_train = function() return SmallCNN() end,
  cnn_eval = function() return SmallCNN() end,
  cross_entropy = function() return nn.CrossEntropyLoss() end,
  cross_entropy_weighted_smoothing = function()
    return nn.CrossEntropyLoss({ weight = vl.ones({ 5 }), label_smoothing = 0.1 })
  end,
  cross_entropy_none = function() return nn.CrossEntropyLoss({ reduction = "none" }) end,
  nll_loss = function() return nn.NLLLoss() end,
  mse = function() return nn.MSELoss() end,
  l1_sum = function() return nn.L1Loss({ reduction = "sum" }) end,
  smooth_l1 = function() return nn.SmoothL1Loss({ beta = 0.5 }) end,
  bce_logits = function() return nn.BCEWithLogitsLoss({ pos_weight = vl.ones({ 4 }) }) end,
  kl_div_sum = function() return nn.KLDivLoss({ reduction = "sum" }) end,
}

local case_names = {}
for name in pairs(F) do case_names[#case_names + 1] = name end
table.sort(case_names)

describe("modules match PyTorch (outputs and gradients)", function()
  for _, name in ipairs(case_names) do
    local case = F[name]
    it(name, function()
      local build = assert(builders[name], "no builder for fixture case " .. name)
      local m = build()
      -- names and order equal PyTorch's
      assert.are.same(case.params, names_of(m:named_parameters()))
      local keys = {}
      for i, e in ipairs(case.state) do keys[i] = e.key end
      assert.are.same(keys, nn.keys(m:state_dict()))
      local sd = {}
      for _, e in ipairs(case.state) do
        sd[e.key] = tensor(e, e.key:match("num_batches_tracked$") and "int64" or "float32")
      end
      m:load_state_dict(sd)
      m:train(case.train)
      local x = tensor(case.input)
      if x.dtype == "float32" then x:requires_grad(true) end
      local out
      if case.target then
        out = m(x, tensor(case.target))
      else
        out = m(x)
      end
      assert.are.same(case.output.shape, out.shape)
      assert_close(out, case.output.values, 1e-5, name .. " output")
      local loss = (out * tensor(case.out_weight)):sum()
      loss:backward()
      for pname, p in m:named_parameters() do
        assert.is_not_nil(p.grad, pname .. " has no grad")
        assert_close(p.grad, case.grads[pname], 1e-5, name .. " grad of " .. pname)
      end
      if case.input_grad then assert_close(x.grad, case.input_grad, 1e-5, name .. " input grad") end
      if case.state_after then
        local after = m:state_dict()
        for k, v in pairs(case.state_after) do assert_close(after[k], v, 1e-5, name .. " " .. k) end
      end
    end)
  end
end)

describe("Module class mechanism", function()
  local Net = nn.Module:extend("Net")
  function Net:init(n)
    self.fc1 = nn.Linear(n, 8)
    self.act = nn.ReLU()
    self.blocks = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
    self.bn = nn.BatchNorm1d(8)
    self.out = nn.Linear(8, 2)
    self.gain = nn.Parameter(vl.ones({ 2 }))
    self.hidden = n
  end
  function Net:forward(x)
    return self.out(self.bn(self.blocks(self.act(self.fc1(x))))) * self.gain
  end

  it("registers parameters, children and buffers in declaration order", function()
    local net = Net(4)
    assert.are.same({ "gain", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
      "blocks.1.bias", "bn.weight", "bn.bias", "out.weight", "out.bias" }, names_of(net:named_parameters()))
    assert.are.same({ "bn.running_mean", "bn.running_var", "bn.num_batches_tracked" }, names_of(net:named_buffers()))
    assert.are.same({ "fc1", "act", "blocks", "bn", "out" }, names_of(net:named_children()))
    assert.are.same({ "", "fc1", "act", "blocks", "blocks.0", "blocks.1", "bn", "out" }, names_of(net:named_modules()))
    assert.are.equal(11, #net:parameters())
    assert.are.equal(5, #net:children())
    assert.are.equal(4, net.hidden)
    assert.are.equal(4 * 8 + 8 + 64 + 8 + 8 + 8 + 8 + 8 + 16 + 2 + 2, net:num_parameters())
    assert.is_true(net.fc1.weight:requires_grad())
    assert.is_true(nn.is_parameter(net.fc1.weight))
    assert.are.equal("float32", net.fc1.weight.dtype)
  end)

  it("state_dict has PyTorch's keys in PyTorch's order, buffers included", function()
    local net = Net(4)
    assert.are.same({ "gain", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias", "blocks.1.weight",
      "blocks.1.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked",
      "out.weight", "out.bias" }, nn.keys(net:state_dict()))
    local seen = {}
    for k in pairs(net:state_dict()) do seen[#seen + 1] = k end
    assert.are.same(nn.keys(net:state_dict()), seen)
    assert.are.equal("int64", net:state_dict()["bn.num_batches_tracked"].dtype)
  end)

  it("state_dict round trip copies every value", function()
    vl.manual_seed(1)
    local a = Net(4)
    vl.manual_seed(2)
    local b = Net(4)
    vl.no_grad(function() a.bn.running_mean:fill_(0.25) end)
    assert.is_true((a.fc1.weight - b.fc1.weight):abs():sum():item() > 0)
    local res = b:load_state_dict(a:state_dict())
    assert.are.same({}, res.missing_keys)
    assert.are.same({}, res.unexpected_keys)
    for k, v in pairs(a:state_dict()) do
      assert.are.equal(0, (v:to("float64") - b:state_dict()[k]:to("float64")):abs():sum():item(), k)
    end
    assert.are.equal(0.25, b.bn.running_mean[1])
    -- b keeps its own tensors (values copied, not aliased)
    vl.no_grad(function() a.fc1.weight:fill_(3) end)
    assert.is_true(b.fc1.weight[1][1] ~= 3)
    assert.is_true(b.fc1.weight:requires_grad())
  end)

  it("state_dict tensors alias the module's (clone for a snapshot) and are detached", function()
    local net = Net(3)
    local sd = net:state_dict()
    assert.is_false(sd["fc1.weight"]:requires_grad())
    vl.no_grad(function() net.fc1.weight:fill_(7) end)
    assert.are.equal(7, sd["fc1.weight"][1][1])
  end)

  it("load_state_dict strict errors name missing and unexpected keys", function()
    local net = Net(4)
    local sd = net:state_dict()
    sd["fc1.bias"] = nil
    sd["extra.weight"] = vl.zeros({ 1 })
    local ok, err = pcall(net.load_state_dict, net, sd)
    assert.is_false(ok)
    assert.matches('missing keys: "fc1.bias"', err)
    assert.matches('unexpected keys: "extra.weight"', err)
    assert.matches("of Net", err)
    local res = net:load_state_dict(sd, { strict = false })
    assert.are.same({ "fc1.bias" }, res.missing_keys)
    assert.are.same({ "extra.weight" }, res.unexpected_keys)
  end)

  it("load_state_dict rejects shape mismatches even when not strict", function()
    local net = Net(4)
    local sd = net:state_dict()
    sd["out.weight"] = vl.zeros({ 3, 8 })
    for _, strict in ipairs({ true, false }) do
      local ok, err = pcall(net.load_state_dict, net, sd, { strict = strict })
      assert.is_false(ok)
      assert.matches("size mismatch for out.weight: copying a tensor of shape %[3, 8%] from the checkpoint, " ..
        "the shape in the current model is %[2, 8%]", err)
    end
  end)

  it("load_state_dict converts dtypes", function()
    local lin = nn.Linear(2, 2)
    lin:load_state_dict({ weight = vl.tensor({ { 1, 2 }, { 3, 4 } }, { dtype = "float64" }), bias = vl.zeros({ 2 }) })
    assert.are.equal("float32", lin.weight.dtype)
    assert.are.same({ { 1, 2 }, { 3, 4 } }, lin.weight:totable())
  end)

  it("train()/eval() reach every module", function()
    local net = Net(4)
    assert.is_true(net.training)
    assert.are.equal(net, net:eval())
    for _, m in ipairs(net:modules()) do assert.is_false(m.training) end
    net:train()
    for _, m in ipairs(net:modules()) do assert.is_true(m.training) end
    net.blocks:train(false)
    assert.is_true(net.training)
    assert.is_false(net.blocks[1].training)
  end)

  it("apply visits children first, then the module", function()
    local net = Net(4)
    local order = {}
    net:apply(function(m) order[#order + 1] = m.__name end)
    assert.are.same({ "Linear", "ReLU", "Linear", "LayerNorm", "Sequential", "BatchNorm1d", "Linear", "Net" }, order)
    local count = 0
    net:apply(function(m) if m:is_a(nn.Linear) then nn.init.zeros_(m.weight); count = count + 1 end end)
    assert.are.equal(3, count)
    assert.are.equal(0, net.out.weight:abs():sum():item())
  end)

  it("prints a tree like PyTorch's repr", function()
    local net = Net(4)
    assert.are.equal([[
Net(
  (fc1): Linear(in_features=4, out_features=8, bias=true)
  (act): ReLU()
  (blocks): Sequential(
    (0): Linear(in_features=8, out_features=8, bias=true)
    (1): LayerNorm((8,), eps=1e-05, elementwise_affine=true)
  )
  (bn): BatchNorm1d(8, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)
  (out): Linear(in_features=8, out_features=2, bias=true)
)]], tostring(net))
    assert.are.equal("Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=false)",
      tostring(nn.Conv2d(3, 8, 3, { stride = 2, padding = 1, bias = false })))
    assert.are.equal("Conv2d(4, 8, kernel_size=(3, 1), stride=(1, 1), padding=same, dilation=(2, 2), groups=4)",
      tostring(nn.Conv2d(4, 8, { 3, 1 }, { padding = "same", dilation = 2, groups = 4 })))
  end)

  it("supports subclasses of subclasses and parent init", function()
    local Base = nn.Module:extend("Base")
    function Base:init(n) self.lin = nn.Linear(n, n) end
    function Base:forward(x) return self.lin(x) end
    function Base:describe() return "base " .. self.lin.in_features end
    local Derived = Base:extend("Derived")
    function Derived:init(n)
      Base.init(self, n)
      self.extra = nn.Linear(n, 1)
    end
    local d = Derived(3)
    assert.are.equal("base 3", d:describe())
    assert.are.same({ "lin.weight", "lin.bias", "extra.weight", "extra.bias" }, names_of(d:named_parameters()))
    assert.is_true(d:is_a(Base))
    assert.is_true(d:is_a(nn.Module))
    assert.is_false(d:is_a(nn.Linear))
    assert.are.equal("Derived", d.__name)
  end)

  it("re-assigning and removing fields keeps the registry right", function()
    local m = nn.Module()
    m.a = nn.Linear(2, 2)
    m.b = nn.Parameter(vl.zeros({ 3 }))
    m:register_buffer("stat", vl.zeros({ 1 }))
    m:register_buffer("tmp", vl.zeros({ 1 }), false)
    assert.are.same({ "b", "a.weight", "a.bias" }, names_of(m:named_parameters()))
    assert.are.same({ "b", "stat", "a.weight", "a.bias" }, nn.keys(m:state_dict()))
    m.stat = vl.ones({ 1 })              -- a buffer stays a buffer
    assert.are.equal(1, m:state_dict().stat[1])
    m.a = nil
    assert.are.same({ "b" }, names_of(m:named_parameters()))
    m.b = nn.Linear(1, 1)                -- a parameter name becomes a child
    assert.are.same({ "b.weight", "b.bias" }, names_of(m:named_parameters()))
    m.b = nil
    assert.is_nil(m.b)
    assert.are.equal(0, #m:parameters())
  end)

  it("shared parameters and modules are listed once", function()
    local shared = nn.Linear(2, 2)
    local seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert.are.equal(2, #seq:parameters())
    assert.are.same({ "0.weight", "0.bias" }, names_of(seq:named_parameters()))
  end)

  it("zero_grad drops or zeroes gradients", function()
    local lin = nn.Linear(2, 2)
    lin.weight.grad = vl.ones({ 2, 2 })
    lin:zero_grad({ set_to_none = false })
    assert.are.equal(0, lin.weight.grad:sum():item())
    lin:zero_grad()
    assert.is_nil(lin.weight.grad)
  end)

  it("to() converts floating parameters and buffers", function()
    local net = Net(3):to("float64")
    assert.are.equal("float64", net.fc1.weight.dtype)
    assert.is_true(net.fc1.weight:requires_grad())
    assert.is_true(nn.is_parameter(net.fc1.weight))
    assert.are.equal("float64", net.bn.running_var.dtype)
    assert.are.equal("int64", net.bn.num_batches_tracked.dtype)
  end)
end)

describe("containers", function()
  it("Sequential indexes from 1 while its keys count from 0", function()
    local a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    local seq = nn.Sequential(a, b, c)
    assert.are.equal(3, #seq)
    assert.are.equal(a, seq[1])
    assert.are.equal(c, seq[3])
    assert.are.equal(c, seq[-1])
    assert.is_nil(seq[4])
    assert.are.same({ "0.weight", "0.bias", "2.weight", "2.bias" }, nn.keys(seq:state_dict()))
    seq:append(nn.Tanh())
    assert.are.equal(4, #seq)
    seq:insert(1, nn.Identity())
    assert.are.equal(a, seq[2])
    assert.are.same({ "1.weight", "1.bias", "3.weight", "3.bias" }, nn.keys(seq:state_dict()))
    local d = nn.Linear(3, 4)
    seq[2] = d
    assert.are.equal(d, seq[2])
    local named = nn.Sequential({ { "conv", nn.Linear(1, 1) }, { "act", nn.ReLU() } })
    assert.are.same({ "conv.weight", "conv.bias" }, nn.keys(named:state_dict()))
    assert.are.equal(named.conv, named[1])
    assert.are.equal(2, #nn.Sequential({ nn.ReLU(), nn.Tanh() }))
  end)

  it("ModuleList registers its items, indexes from 1 and works with ipairs", function()
    local l = nn.ModuleList({ nn.Linear(2, 2), nn.Linear(2, 3) })
    l:append(nn.Linear(3, 1))
    l:extend({ nn.ReLU() })
    assert.are.equal(4, #l)
    local n = 0
    for i, m in ipairs(l) do
      n = n + 1
      assert.are.equal(l[i], m)
    end
    assert.are.equal(4, n)
    local Owner = nn.Module:extend("Owner")
    function Owner:init() self.layers = l end
    assert.are.same({ "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias", "layers.2.weight",
      "layers.2.bias" }, names_of(Owner():named_parameters()))
  end)

  it("ModuleDict keeps modules by name", function()
    local d = nn.ModuleDict({ b = nn.Linear(1, 1), a = nn.ReLU() })
    assert.are.same({ "a", "b" }, d:keys())
    assert.are.equal(2, #d)
    assert.is_true(d:contains("b"))
    assert.is_true(d.b:is_a(nn.Linear))
    assert.are.same({ "b.weight", "b.bias" }, names_of(d:named_parameters()))
    local ordered = nn.ModuleDict({ { "z", nn.ReLU() }, { "y", nn.Tanh() } })
    assert.are.same({ "z", "y" }, ordered:keys())
    d.c = nn.Tanh()
    assert.are.same({ "a", "b", "c" }, d:keys())
  end)

  it("MLP follows torchvision's layout", function()
    local mlp = nn.MLP(4, { 8, 8, 3 }, { dropout = 0.2 })
    assert.are.equal(8, #mlp)
    assert.are.same({ "0.weight", "0.bias", "3.weight", "3.bias", "6.weight", "6.bias" }, names_of(mlp:named_parameters()))
    assert.is_true(mlp[2]:is_a(nn.ReLU))
    assert.is_true(mlp[8]:is_a(nn.Dropout))
    local withnorm = nn.MLP(4, { 8, 2 }, { norm = nn.LayerNorm, activation = nn.GELU })
    assert.is_true(withnorm[2]:is_a(nn.LayerNorm))
    assert.is_true(withnorm[3]:is_a(nn.GELU))
  end)
end)

describe("error messages name the module", function()
  it("a wrong input size inside a Sequential", function()
    local seq = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(128, 10))
    local ok, err = pcall(seq, vl.zeros({ 2, 32 }))
    assert.is_false(ok)
    assert.are.equal("Sequential[3] (Linear 128->10): input has 64 features, expected 128 (input shape [2, 64])", err)
  end)

  it("nested containers join their positions", function()
    local seq = nn.Sequential(nn.Identity(), nn.Sequential(nn.Identity(), nn.Conv2d(3, 8, 3)))
    local ok, err = pcall(seq, vl.zeros({ 1, 4, 5, 5 }))
    assert.is_false(ok)
    assert.are.equal("Sequential[2] > Sequential[2] (Conv2d 3->8, k=3x3): input has 4 channels, expected 3 " ..
      "(input shape [1, 4, 5, 5])", err)
  end)

  it("a module alone and through nn.call_child", function()
    local lin = nn.Linear(4, 2)
    local ok, err = pcall(lin, vl.zeros({ 3 }))
    assert.is_false(ok)
    assert.are.equal("Linear 4->2: input has 3 features, expected 4 (input shape [3])", err)
    local l = nn.ModuleList({ nn.Identity(), lin })
    ok, err = pcall(nn.call_child, l, 2, vl.zeros({ 3 }))
    assert.is_false(ok)
    assert.are.equal("ModuleList[2] (Linear 4->2): input has 3 features, expected 4 (input shape [3])", err)
  end)

  it("errors from the ops and from custom modules are wrapped too", function()
    local Boom = nn.Module:extend("Boom")
    function Boom:forward() error("boom", 0) end
    local ok, err = pcall(nn.Sequential(nn.Identity(), Boom()), vl.zeros({ 1 }))
    assert.is_false(ok)
    assert.are.equal("Sequential[2] (Boom): boom", err)
  end)
end)

describe("initialisation (PyTorch's defaults)", function()
  local function stats(t)
    local v = flat(t)
    local s, s2, lo, hi = 0, 0, math.huge, -math.huge
    for _, x in ipairs(v) do
      s = s + x
      s2 = s2 + x * x
      if x < lo then lo = x end
      if x > hi then hi = x end
    end
    local mean = s / #v
    return mean, math.sqrt(s2 / #v - mean * mean), lo, hi
  end

  it("Linear: kaiming_uniform(a=sqrt(5)) weights and bias within 1/sqrt(fan_in)", function()
    vl.manual_seed(123)
    local lin = nn.Linear(400, 300)
    local bound = 1 / math.sqrt(400)
    local mean, std, lo, hi = stats(lin.weight)
    assert.is_true(lo >= -bound and hi <= bound)
    assert.is_true(hi > 0.99 * bound and lo < -0.99 * bound)
    assert.is_true(math.abs(mean) < 0.01 * bound)
    assert.is_true(math.abs(std - bound / math.sqrt(3)) < 0.01 * bound)
    local _, _, blo, bhi = stats(lin.bias)
    assert.is_true(blo >= -bound and bhi <= bound)
    assert.is_true(bhi > 0.9 * bound and blo < -0.9 * bound)
  end)

  it("Conv2d uses fan_in = in/groups * kh * kw", function()
    vl.manual_seed(7)
    local conv = nn.Conv2d(16, 32, 3, { groups = 2 })
    local bound = 1 / math.sqrt(8 * 9)
    local _, _, lo, hi = stats(conv.weight)
    assert.is_true(lo >= -bound and hi <= bound and hi > 0.98 * bound)
    local _, _, blo, bhi = stats(conv.bias)
    assert.is_true(blo >= -bound and bhi <= bound)
    local ct = nn.ConvTranspose2d(8, 6, 3, { groups = 2 })  -- weight [8, 3, 3, 3]: fan_in 27
    assert.are.same({ 8, 3, 3, 3 }, ct.weight.shape)
    local cb = 1 / math.sqrt(27)
    local _, _, clo, chi = stats(ct.weight)
    assert.is_true(clo >= -cb and chi <= cb and chi > 0.95 * cb)
  end)

  it("is reproducible with a seed", function()
    vl.manual_seed(99)
    local a = nn.Linear(10, 10)
    vl.manual_seed(99)
    local b = nn.Linear(10, 10)
    assert.are.equal(0, (a.weight - b.weight):abs():sum():item())
  end)

  it("Embedding ~ N(0, 1) with the padding row zeroed; norms are ones/zeros", function()
    vl.manual_seed(5)
    local e = nn.Embedding(1000, 64, { padding_idx = -1 })
    assert.are.equal(1000, e.padding_idx)
    local mean, std = stats(e.weight)
    assert.is_true(math.abs(mean) < 0.02 and math.abs(std - 1) < 0.02)
    assert.are.equal(0, e.weight[1000]:abs():sum():item())
    local ln = nn.LayerNorm(4)
    assert.are.same({ 1, 1, 1, 1 }, ln.weight:totable())
    assert.are.same({ 0, 0, 0, 0 }, ln.bias:totable())
    local bn = nn.BatchNorm2d(2)
    assert.are.same({ 1, 1 }, bn.running_var:totable())
    assert.are.equal(0, bn.num_batches_tracked:item())
    assert.are.same({ 1, 1, 1 }, nn.GroupNorm(1, 3).weight:totable())
    assert.are.same({ 1, 1 }, nn.RMSNorm(2).weight:totable())
  end)

  it("kaiming/xavier schemes have the right spread", function()
    vl.manual_seed(11)
    local t = vl.empty({ 256, 512 })
    nn.init.kaiming_normal_(t, { nonlinearity = "relu" })
    local _, std = stats(t)
    assert.is_true(math.abs(std - math.sqrt(2 / 512)) < 0.01 * math.sqrt(2 / 512) * 3)
    nn.init.kaiming_normal_(t, { mode = "fan_out", nonlinearity = "relu" })
    _, std = stats(t)
    assert.is_true(math.abs(std - math.sqrt(2 / 256)) < 0.03 * math.sqrt(2 / 256))
    nn.init.kaiming_uniform_(t, { nonlinearity = "relu" })
    local _, _, lo, hi = stats(t)
    local b = math.sqrt(6 / 512)
    assert.is_true(lo >= -b and hi <= b and hi > 0.99 * b)
    nn.init.xavier_uniform_(t, { gain = 2 })
    _, _, lo, hi = stats(t)
    b = 2 * math.sqrt(6 / (256 + 512))
    assert.is_true(lo >= -b and hi <= b and hi > 0.99 * b)
    nn.init.xavier_normal_(t)
    _, std = stats(t)
    assert.is_true(math.abs(std - math.sqrt(2 / 768)) < 0.03 * math.sqrt(2 / 768))
    assert.is_true(math.abs(nn.init.calculate_gain("leaky_relu", 0.2) - math.sqrt(2 / 1.04)) < 1e-15)
    assert.are.equal(5 / 3, nn.init.calculate_gain("tanh"))
    local fi, fo = nn.init.calculate_fan_in_and_fan_out(vl.empty({ 8, 4, 3, 3 }))
    assert.are.equal(36, fi)
    assert.are.equal(72, fo)
  end)

  it("trunc_normal_ stays inside [a, b]", function()
    vl.manual_seed(3)
    local t = vl.empty({ 20000 })
    nn.init.trunc_normal_(t, { std = 0.02, a = -0.03, b = 0.03 })
    local mean, std, lo, hi = stats(t)
    assert.is_true(lo >= -0.03 and hi <= 0.03)
    assert.is_true(math.abs(mean) < 0.001)
    -- std of N(0, 0.02) truncated at +-1.5 sigma: 0.02 * 0.7382
    assert.is_true(math.abs(std - 0.02 * 0.7382) < 0.0005)
    nn.init.trunc_normal_(t)
    _, _, lo, hi = stats(t)
    assert.is_true(lo >= -2 and hi <= 2)
  end)
end)

describe("train/eval behaviour", function()
  it("Dropout zeroes about p of the elements in training and is the identity in eval", function()
    local d = nn.Dropout(0.25)
    local x = vl.ones({ 100, 100 })
    vl.manual_seed(42)
    local y = d(x)
    local zeros = (y:eq(0)):sum():item()
    assert.is_true(math.abs(zeros / 10000 - 0.25) < 0.02)
    assert.is_true(math.abs(y:amax():item() - 1 / 0.75) < 1e-6)
    vl.manual_seed(42)
    assert.are.equal(0, (d(x) - y):abs():sum():item())  -- seeded
    d:eval()
    assert.are.equal(0, (d(x) - x):abs():sum():item())
  end)

  it("BatchNorm updates running stats in training only", function()
    local bn = nn.BatchNorm1d(3)
    local x = vl.randn({ 16, 3 }) * 2 + 5
    bn(x)
    assert.are.equal(1, bn.num_batches_tracked:item())
    local rm = bn.running_mean:clone()
    assert.is_true(rm[1] > 0.3)                  -- 0.1 * ~5
    bn:eval()
    local y = bn(x)
    assert.are.equal(0, (bn.running_mean - rm):abs():sum():item())
    assert.are.equal(1, bn.num_batches_tracked:item())
    -- eval uses the running statistics: (x - rm) / sqrt(rv + eps)
    local expected = (x - bn.running_mean) / (bn.running_var + 1e-5):sqrt()
    assert.is_true((y - expected):abs():amax():item() < 1e-5)
  end)

  it("BatchNorm with momentum = false keeps a cumulative average", function()
    local bn = nn.BatchNorm1d(2, { momentum = false })
    local a = vl.tensor({ { 1.0, 2.0 }, { 3.0, 4.0 } })
    local b = vl.tensor({ { 5.0, 6.0 }, { 7.0, 8.0 } })
    bn(a)
    bn(b)
    assert.is_true(math.abs(bn.running_mean[1] - 4) < 1e-6)   -- mean of the batch means 2 and 6
    assert.is_true(math.abs(bn.running_mean[2] - 5) < 1e-6)
  end)
end)

describe("gradients through modules (float64 gradcheck)", function()
  it("Linear and LayerNorm", function()
    local lin = nn.Linear(3, 2, { dtype = "float64" })
    local ln = nn.LayerNorm(2, { dtype = "float64" })
    local x = vl.randn({ 4, 3 }, { dtype = "float64" }):requires_grad(true)
    local ok, msg = vl.gradcheck(function(t) return ln(lin(t)) end, { x })
    assert.is_true(ok, msg)
    ok, msg = vl.gradcheck(function(w) return vl.linear(x:detach(), w, nil) end, { lin.weight })
    assert.is_true(ok, msg)
  end)
end)

describe("more layers", function()
  it("MaxPool2d with return_indices returns values and 1-based indices", function()
    local x = vl.tensor({ { { { 1, 5, 2, 0 }, { 3, 4, 8, 1 } } } }, { dtype = "float32" })
    local v, idx = nn.MaxPool2d(2, { return_indices = true })(x)
    assert.are.same({ 1, 1, 1, 2 }, v.shape)
    assert.are.same({ 5, 8 }, v:reshape({ -1 }):totable())
    assert.are.same({ 2, 7 }, idx:reshape({ -1 }):totable())
  end)

  it("CosineSimilarity, Identity and Flatten", function()
    local a = vl.tensor({ { 1.0, 0.0 }, { 1.0, 1.0 } })
    local b = vl.tensor({ { 0.0, 1.0 }, { 2.0, 2.0 } })
    local c = nn.CosineSimilarity()(a, b)
    assert.is_true(math.abs(c[1]) < 1e-6 and math.abs(c[2] - 1) < 1e-6)
    assert.are.equal(a, nn.Identity()(a))
    assert.are.same({ 2, 12 }, nn.Flatten()(vl.zeros({ 2, 3, 4 })).shape)
    assert.are.same({ 2, 6, 2 }, nn.Flatten(2, 3)(vl.zeros({ 2, 3, 2, 2 })).shape)
  end)

  it("Embedding.from_pretrained copies the weight and freezes it by default", function()
    local w = vl.tensor({ { 1.0, 2.0 }, { 3.0, 4.0 } })
    local e = nn.Embedding.from_pretrained(w)
    assert.is_false(e.weight:requires_grad())
    assert.are.same({ { 3, 4 }, { 1, 2 } }, e(vl.tensor({ 2, 1 })):totable())
    assert.is_true(nn.Embedding.from_pretrained(w, { freeze = false }).weight:requires_grad())
    assert.is_false(vl.shares_storage(w, e.weight))
  end)

  it("BatchNorm without running stats normalises with batch statistics in eval too", function()
    local bn = nn.BatchNorm1d(2, { track_running_stats = false, affine = false })
    assert.are.equal(0, #bn:parameters())
    assert.are.same({}, nn.keys(bn:state_dict()))
    bn:eval()
    local y = bn(vl.tensor({ { 1.0, 10.0 }, { 3.0, 30.0 } }))
    assert.is_true((y - vl.tensor({ { -1.0, -1.0 }, { 1.0, 1.0 } })):abs():amax():item() < 1e-4)
  end)
end)

describe("training end to end", function()
  it("an MLP with AdamW fits a small regression, and a checkpoint resumes it", function()
    local optim = require "vl.optim"
    vl.manual_seed(0)
    local x = vl.randn({ 64, 3 })
    local y = (x:select(2, 1) * 2 - x:select(2, 2) + x:select(2, 3):square()):reshape({ 64, 1 })
    local model = nn.MLP(3, { 32, 1 })
    local opt = optim.AdamW(model:parameters(), { lr = 0.01, weight_decay = 0 })
    local loss_fn = nn.MSELoss()
    local function train_step()
      opt:zero_grad()
      local loss = loss_fn(model(x), y)
      loss:backward()
      optim.clip_grad_norm_(model:parameters(), 5.0)
      opt:step()
      return loss:item()
    end
    local first = train_step()
    for _ = 1, 150 do train_step() end
    local last = train_step()
    assert(last < first / 5, string.format("loss %.4f -> %.4f", first, last))
    -- checkpoint: model + optimizer, through a safetensors file
    local path = os.tmpname()
    model:save(path)
    local osd = opt:state_dict()
    local model2 = nn.MLP(3, { 32, 1 })
    model2:load(path)
    os.remove(path)
    local opt2 = optim.AdamW(model2:parameters(), { lr = 1 })
    opt2:load_state_dict(osd)
    train_step()
    opt2:zero_grad()
    loss_fn(model2(x), y):backward()
    opt2:step()
    local p1, p2 = model:parameters(), model2:parameters()
    for i = 1, #p1 do assert.are.equal(0, (p1[i] - p2[i]):abs():amax():item()) end
  end)
end)

describe("nn.functional", function()
  it("re-exports the vl functional ops", function()
    assert.are.equal(vl.relu, nn.functional.relu)
    assert.are.equal(vl.softmax, nn.functional.softmax)
    assert.are.equal(vl.linear, nn.functional.linear)
    assert.are.equal(vl.cross_entropy, nn.functional.cross_entropy)
    assert.is_nil(nn.functional.no_such_op)
  end)
end)

describe("bad input", function()
  local function err(fn, expected)
    local ok, msg = pcall(fn)
    assert.is_false(ok, "expected an error matching " .. expected)
    assert.matches(expected, tostring(msg))
  end

  it("raises clear errors", function()
    err(function() nn.Linear(3.5, 2) end, "Linear: in_features must be an integer, got 3.5")
    err(function() nn.Linear(-1, 2) end, "Linear: in_features must be >= 0, got %-1")
    err(function() nn.Linear(3, 2)("x") end, "Linear 3%->2: input must be a tensor, got string")
    err(function() nn.Linear(3, 2)(vl.tensor(1.0)) end, "Linear 3%->2: input is a 0%-d tensor")
    err(function() nn.Conv2d(3, 8, 3, { groups = 2 }) end, "Conv2d: in_channels %(3%) must be divisible by groups %(2%)")
    err(function() nn.Conv2d(4, 8, 3, { padding = "same", stride = 2 }) end, "Conv2d: padding=\"same\" needs stride 1")
    err(function() nn.Conv2d(4, 8, 3, { padding = "full" }) end, "Conv2d: padding must be")
    err(function() nn.Conv2d(4, 8, { 3 }) end, "Conv2d: kernel_size must be a number or a table of 2 numbers")
    err(function() nn.Conv2d(3, 8, 3)(vl.zeros({ 3, 5 })) end, "Conv2d 3%->8, k=3x3: expected a 3D %(unbatched%) or 4D")
    err(function() nn.Conv1d(3, 8, 3)(vl.zeros({ 1, 2, 5 })) end, "Conv1d 3%->8, k=3: input has 2 channels, expected 3")
    err(function() nn.BatchNorm2d(3)(vl.zeros({ 2, 3 })) end, "BatchNorm2d 3: expected a 4D input, got shape %[2, 3%]")
    err(function() nn.BatchNorm1d(3)(vl.zeros({ 2, 4 })) end, "BatchNorm1d 3: input has 4 channels, expected 3")
    err(function() nn.LayerNorm(4)(vl.zeros({ 2, 5 })) end,
      "LayerNorm %[4%]: input shape %[2, 5%] does not end with normalized_shape %[4%]")
    err(function() nn.GroupNorm(4, 6) end, "GroupNorm: num_channels %(6%) must be divisible by num_groups %(4%)")
    err(function() nn.GroupNorm(2, 6)(vl.zeros({ 2, 4, 3 })) end, "GroupNorm 2/6: input has 4 channels, expected 6")
    err(function() nn.Dropout(1.5) end, "Dropout: p must be a number in %[0, 1%], got 1.5")
    err(function() nn.Embedding(5, 2, { padding_idx = 6 }) end, "Embedding: padding_idx must be in 1..5")
    err(function() nn.Embedding(5, 2)(vl.zeros({ 3 })) end, "Embedding 5x2: indices must be an int64 or int32 tensor, got float32")
    err(function() nn.GELU({ approximate = "fast" }) end, "GELU: approximate must be")
    err(function() nn.CrossEntropyLoss({ reduction = "avg" }) end, "CrossEntropyLoss: reduction must be")
    err(function() nn.Sequential(nn.ReLU(), 5) end, "Sequential: argument 2 must be an nn.Module, got a number")
    err(function() nn.ModuleList({ nn.ReLU(), "x" }) end, "ModuleList: item 2 must be an nn.Module, got a string")
    err(function() nn.ModuleList({})(vl.zeros({ 1 })) end, "ModuleList: not callable")
    err(function() nn.Module()(vl.zeros({ 1 })) end, "Module: forward is not implemented")
    err(function() nn.Linear(2, 2).weight = vl.zeros({ 2, 2 }) end,
      "Linear 2%->2: cannot assign a tensor as parameter 'weight' %(nn.Parameter or nil expected%)")
    err(function() local s = nn.Sequential(nn.ReLU()); s[3] = nn.ReLU() end, "Sequential: index 3 out of range")
    err(function() nn.Linear(2, 2):load_state_dict("x") end, "load_state_dict: expected a table of tensors, got string")
    err(function() nn.Parameter(3) end, "nn.Parameter: expected a tensor, got number")
    err(function() nn.Module:extend() end, "Module:extend: the class needs a name")
    err(function() nn.init.kaiming_uniform_(vl.empty({ 3 })) end,
      "init.kaiming_uniform_: fan in/out needs a tensor with at least 2 dims, got shape %[3%]")
    err(function() nn.init.calculate_gain("swish") end, "calculate_gain: unsupported nonlinearity 'swish'")
    err(function() nn.init.trunc_normal_(vl.empty({ 3 }), { a = 1, b = -1 }) end, "init.trunc_normal_: needs a < b")
    err(function() nn.Module():add_module("a.b", nn.ReLU()) end, "module name must be a non%-empty string without '.'")
  end)
end)
