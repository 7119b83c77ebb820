-- train_spec.lua — end-to-end training smoke test (a few seconds):
-- a small MLP learns a 2000-image Fashion-MNIST subset (the test split of
-- dataset-fashion-mnist; a synthetic stand-in when it is absent), a
-- checkpoint of scripts/train_cnn.lua resumes to exactly the parameters of
-- an uninterrupted run, and a 1000-step training loop runs in flat memory
-- (the graph frees its saved tensors after backward).
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"
local data = require "vl.data"

local train_cnn = assert(loadfile("scripts/train_cnn.lua"))("--module")

local function have_fmnist()
  local f = io.open(data.FASHION_MNIST_DIR .. "/t10k-images-idx3-ubyte.gz", "rb")
  if f then f:close() end
  return f ~= nil
end

-- n images [n,1,28,28] standardised and labels [n] (1..10): Fashion-MNIST's
-- test split from image `first` on, or 10 noisy class prototypes.
local function images(n, first)
  if have_fmnist() then
    local x, y = data.fashion_mnist_tensors("test")
    x = x:narrow(1, first, n):float():div(255):view(n, 1, 28, 28)
    return data.transforms.F.normalize(x, train_cnn.MEAN, train_cnn.STD), y:narrow(1, first, n):clone()
  end
  local gen = vl.get_rng_state()
  vl.manual_seed(99)
  local protos = vl.randn({ 10, 1, 28, 28 })
  vl.manual_seed(1000 + first)
  local y = vl.randint(1, 11, { n })
  local x = protos:index_select(1, y) + vl.randn({ n, 1, 28, 28 }) * 2
  vl.set_rng_state(gen)
  return x, y
end

local function mlp()
  return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
end

local function accuracy(model, x, y)
  model:eval()
  local acc = vl.no_grad(function() return model(x):argmax(2):eq(y):float():mean():item() end)
  model:train()
  return acc
end

describe("training", function()
  -- one thread: these models are tiny, and on a busy machine every OpenMP
  -- region can wait milliseconds for the second core
  local threads
  setup(function()
    threads = vl.get_num_threads()
    vl.set_num_threads(1)
  end)
  teardown(function() vl.set_num_threads(threads) end)

  it("a small MLP learns a 2000-image subset: the loss falls, accuracy beats chance", function()
    vl.manual_seed(7)
    local x, y = images(2000, 1)
    local xt, yt = images(500, 2001)
    local model = mlp()
    local opt = optim.SGD(model, { lr = 0.05, momentum = 0.9 })
    local loader = data.DataLoader(data.TensorDataset(x, y), { batch_size = 32, shuffle = true, drop_last = true })
    local acc0 = accuracy(model, xt, yt)
    local losses, step = {}, 0
    while step < 300 do
      for xb, yb in loader() do
        opt:zero_grad()
        local loss = vl.cross_entropy(model(xb), yb)
        loss:backward()
        opt:step()
        step = step + 1
        losses[step] = loss:item()
        if step == 300 then break end
      end
    end
    local function mean(a, b)
      local s = 0
      for i = a, b do s = s + losses[i] end
      return s / (b - a + 1)
    end
    local first, last = mean(1, 20), mean(281, 300)
    assert(last < 0.5 * first, string.format("loss %.3f -> %.3f", first, last))
    local acc = accuracy(model, xt, yt)
    assert(acc > 0.6, string.format("held-out accuracy %.3f (chance 0.1, before training %.3f)", acc, acc0))
  end)

  describe("train_cnn.lua checkpoints", function()
    local dir
    before_each(function()
      dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p '" .. dir .. "'"))
    end)
    after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

    local function opts(out, extra)
      local x, y = images(512, 3001)
      local xt, yt = images(256, 4001)
      local o = train_cnn.parse_args({ "--epochs", "3", "--batch", "64", "--channels", "4,8", "--hidden", "16",
        "--lr", "0.01", "--quiet", "--out", out })
      o.train_ds, o.test_ds = data.TensorDataset(x, y), data.TensorDataset(xt, yt)
      o.log = function() end
      for k, v in pairs(extra or {}) do o[k] = v end
      return o
    end

    local function same_state(a, b)
      local n = 0
      for k, t in pairs(a) do
        assert(vl.is_tensor(b[k]), "missing " .. k)
        assert(t:eq(b[k]):all():item(), "differs: " .. k)
        n = n + 1
      end
      return n
    end

    it("resuming after an interruption gives the uninterrupted run's parameters, bit for bit", function()
      local whole = train_cnn.run(opts(dir .. "/whole.safetensors"))
      assert.are.equal(3, #whole.history)
      -- "interrupted" after epoch 1, then resumed (twice: after 1 and after 2)
      train_cnn.run(opts(dir .. "/part.safetensors", { stop_after = 1 }))
      local mid = train_cnn.load_checkpoint(dir .. "/part.safetensors")
      assert.are.equal(1, mid.epoch)
      train_cnn.run(opts(dir .. "/part.safetensors", { stop_after = 2 }))
      local resumed = train_cnn.run(opts(dir .. "/part.safetensors"))
      assert.are.equal(2, resumed.resumed_from)
      assert.are.equal(16, same_state(whole.model:state_dict(), resumed.model:state_dict()))
      for e = 1, 3 do
        for _, k in ipairs({ "train_loss", "train_acc", "test_loss", "test_acc" }) do
          assert.are.equal(whole.history[e][k], resumed.history[e][k], k .. " of epoch " .. e)
        end
      end
      -- the optimizer's moments and the schedule too
      local a = train_cnn.load_checkpoint(dir .. "/whole.safetensors")
      local b = train_cnn.load_checkpoint(dir .. "/part.safetensors")
      assert.are.equal(3, b.epoch)
      for id, st in pairs(a.optim.state) do
        assert.are.equal(st.step, b.optim.state[id].step)
        assert(st.exp_avg:eq(b.optim.state[id].exp_avg):all():item())
        assert(st.exp_avg_sq:eq(b.optim.state[id].exp_avg_sq):all():item())
      end
      assert.are.same(a.sched, b.sched)
      assert.are.same(a.rng, b.rng)
      -- the learning actually happened
      assert(whole.history[3].test_acc > 0.3, "test accuracy " .. whole.history[3].test_acc)
    end)

    it("the checkpoint holds the model under PyTorch's names, and other flags are refused", function()
      local out = dir .. "/c.safetensors"
      train_cnn.run(opts(out, { stop_after = 1 }))
      local f <close> = vl.safetensors.open(out)
      assert.is_true(f:has("model/0.weight"))
      assert.are.same({ 4, 1, 3, 3 }, f:shape("model/0.weight"))
      assert.is_true(f:has("model/1.running_mean"))
      assert.is_true(f:has("optim/state/#1/exp_avg"))
      local ok, err = pcall(train_cnn.run, opts(out, { lr = 0.02 }))
      assert.is_false(ok)
      assert.matches("other settings %(lr 0%.01 %(checkpoint%) vs 0%.02%)", err)
      ok, err = pcall(train_cnn.run, opts(dir .. "/none.safetensors", { resume = true }))
      assert.is_false(ok)
      assert.matches("%-%-resume: no checkpoint at", err)
      -- --fresh starts over
      local r = train_cnn.run(opts(out, { fresh = true, stop_after = 1 }))
      assert.is_nil(r.resumed_from)
    end)

    it("flatten/unflatten keep nested tables, integer keys and empty tables", function()
      local t = { a = { 1.5, "x", true, { [3] = 7 } }, ["b.c"] = vl.ones({ 2 }), e = {} }
      local back = train_cnn.unflatten(train_cnn.flatten(t))
      assert.are.same({ 1.5, "x", true, { [3] = 7 } }, back.a)
      assert.are.same({}, back.e)
      assert.is_true(vl.is_tensor(back["b.c"]))
      local p = os.tmpname()
      train_cnn.save_checkpoint(p, t)
      local l = train_cnn.load_checkpoint(p)
      os.remove(p)
      assert.are.same({ 1.5, "x", true, { [3] = 7 } }, l.a)
      assert.are.same({}, l.e)
      assert.are.same({ 1, 1 }, l["b.c"]:totable())
    end)

    it("bad arguments are refused with the flag named", function()
      local function fails(pattern, argv)
        local ok, err = pcall(train_cnn.parse_args, argv)
        assert.is_false(ok)
        assert.matches(pattern, err)
      end
      fails("unknown argument '%-%-epoch'", { "--epoch", "3" })
      fails("%-%-epochs expects an integer, got 'x'", { "--epochs", "x" })
      fails("%-%-epochs must be at least 1, got 0", { "--epochs", "0" })
      fails("%-%-batch needs a value", { "--batch" })
      fails("%-%-lr must be positive", { "--lr=-1" })
      fails("%-%-channels expects two positive integers", { "--channels", "8" })
      fails("%-%-dropout must be in", { "--dropout", "1" })
      fails("contradict", { "--fresh", "--resume" })
      local o = train_cnn.parse_args({ "--epochs=5", "--lr", "3e-3", "--channels", "8,16", "--augment" })
      assert.are.equal(5, o.epochs)
      assert.are.equal(3e-3, o.lr)
      assert.are.same({ 8, 16 }, o.channels)
      assert.is_true(o.augment)
    end)
  end)

  it("a 1000-step training loop runs in flat memory", function()
    vl.manual_seed(3)
    local model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    local opt = optim.AdamW(model, { lr = 1e-3 })
    local x, y = vl.randn({ 16, 32 }), vl.randint(1, 11, { 16 })
    local function step()
      opt:zero_grad()
      local loss = vl.cross_entropy(model(x), y)
      loss:backward()
      opt:step()
      return loss
    end
    for _ = 1, 10 do step() end -- the optimizer's state exists from here on
    collectgarbage()
    collectgarbage()
    local base = vl.memory_in_use()
    local peak_early, peak_late = 0, 0
    for i = 1, 1000 do
      step()
      local m = vl.memory_in_use()
      if i <= 500 then peak_early = math.max(peak_early, m) else peak_late = math.max(peak_late, m) end
    end
    collectgarbage()
    collectgarbage()
    assert.are.equal(base, vl.memory_in_use())
    -- without explicit collections the collector still keeps up
    assert(peak_late <= peak_early * 1.5 + 65536,
      string.format("memory grows: peak %d bytes in steps 1-500, %d in 501-1000", peak_early, peak_late))
    -- a graph kept alive holds memory; after backward it is freed
    opt:zero_grad()
    collectgarbage()
    collectgarbage()
    local before = vl.memory_in_use()
    local loss = vl.cross_entropy(model(x), y)
    assert(vl.memory_in_use() > before)
    loss:backward()
    opt:zero_grad()
    loss = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.are.equal(before, vl.memory_in_use())
  end)
end)
