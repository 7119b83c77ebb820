-- train_vim_spec.lua — smoke test of scripts/train_vim.lua (a few seconds):
-- a tiny Vision Mamba trains on a Fashion-MNIST subset for two epochs,
-- writes weights + JSON config + checkpoint (and no stray temp files) that
-- load back to the same logits, and resumes from an interrupt in the middle
-- of an epoch to exactly the weights of an uninterrupted run. (The SIGINT
-- handling and the JSON writer are train_vit.lua's, tested by
-- train_vit_spec.lua.) Needs dataset-fashion-mnist (pending without it).
local vl = require "vl"
local data = require "vl.data"

local tm = assert(loadfile("scripts/train_vim.lua"))("--module")

local function have_fmnist()
  for _, f in ipairs({ "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz" }) do
    local h = io.open(data.FASHION_MNIST_DIR .. "/" .. f, "rb")
    if not h then return false end
    h:close()
  end
  return true
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function listdir(dir)
  local p = io.popen("ls -A " .. q(dir))
  local out = {}
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  table.sort(out)
  return out
end

-- A tiny Vim and a small subset: 4 steps of 64 images per epoch.
local function opts(dir, extra)
  assert(os.execute("mkdir -p " .. q(dir)))
  local argv = { "--subset", "256", "--test-subset", "200", "--batch", "64", "--patch", "14", "--dim", "16",
    "--depth", "2", "--d-state", "4", "--epochs", "2", "--crop-pad", "2", "--quiet", "--out", dir .. "/m.safetensors" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local o = tm.parse_args(argv)
  o.log = function() end
  return o
end

local function same_weights(a, b)
  local sa, sb = a:state_dict(), b:state_dict()
  local n = 0
  for k, v in pairs(sa) do
    n = n + 1
    assert(sb[k], "missing " .. k)
    assert.equals(0, (v - sb[k]):abs():max():item(), k)
  end
  assert.is_true(n > 20)
end

describe("train_vim.lua", function()
  local dir, threads
  setup(function()
    threads = vl.get_num_threads()
    vl.set_num_threads(1)
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
  end)
  teardown(function()
    vl.set_num_threads(threads)
    os.execute("rm -rf " .. q(dir))
  end)

  it("rejects bad flags with one clear line", function()
    local cases = {
      { { "--epochs", "0" }, "--epochs must be at least 1" },
      { { "--patch", "5" }, "--patch must divide 28" },
      { { "--d-state", "0" }, "--d-state must be at least 1" },
      { { "--heads", "4" }, "unknown argument '--heads'" },
      { { "--out", "model.bin" }, "--out must end in .safetensors" },
      { { "--fresh", "--resume" }, "contradict" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(tm.parse_args, c[1])
      assert.is_false(ok)
      assert.matches("^train_vim: ", err)
      assert.matches(c[2], err, 1, true)
    end
    local o = tm.parse_args({ "--dim=32", "--depth", "3", "--expand", "1" })
    assert.equals(32, o.dim)
    assert.equals(3, o.depth)
    assert.equals(1, o.expand)
    assert.equals("vim_fmnist.safetensors", o.out)
    local c = tm.vim_config(o)
    assert.same({ image_size = 28, patch_size = 7, in_channels = 1, num_classes = 10, d_model = 32, depth = 3,
      d_state = tm.DEFAULTS.d_state, expand = 1, drop_path = 0 }, c)
  end)

  if not have_fmnist() then
    pending("Fashion-MNIST (dataset-fashion-mnist) is not installed: training checks skipped")
    return
  end

  local straight -- the model of an uninterrupted 2-epoch run

  it("trains, writes weights + JSON config + checkpoint atomically, and the files load back", function()
    local r = tm.run(opts(dir .. "/a"))
    straight = r.model
    assert.is_false(r.interrupted)
    assert.equals(2, #r.history)
    for _, h in ipairs(r.history) do
      assert.is_true(h.train_loss > 0 and h.train_loss < 10)
      assert.is_true(h.test_acc >= 0 and h.test_acc <= 1)
    end
    assert.is_true(r.history[2].train_loss < r.history[1].train_loss)
    assert.same({ "m.ckpt.safetensors", "m.json", "m.safetensors" }, listdir(dir .. "/a")) -- no temp files left
    local info = tm.json_decode(read(dir .. "/a/m.json"))
    assert.equals("vl.mamba.VisionMamba", info.model)
    assert.equals(14, info.vim.patch_size)
    assert.equals(16, info.vim.d_model)
    assert.equals(2, info.epochs_trained)
    assert.equals(r.history[2].test_acc, info.test_accuracy)
    local m = tm.load_model(dir .. "/a/m.safetensors")
    same_weights(r.model, m)
    assert.is_not_nil(m:state_dict()["layers.1.mixer.A_b_log"])
    r.model:eval()
    local x = vl.randn({ 3, 1, 28, 28 })
    local want = vl.no_grad(function() return r.model(x) end)
    local got = vl.no_grad(function() return m(x) end)
    assert.equals(0, (want - got):abs():max():item())
  end)

  it("an interrupt in the middle of epoch 2 saves a checkpoint; resuming gives the uninterrupted weights", function()
    local b = dir .. "/b"
    local r1 = tm.run(opts(b, { "--interrupt-after", "5" }))
    assert.is_true(r1.interrupted)
    assert.same({ "m.ckpt.safetensors", "m.json", "m.safetensors" }, listdir(b))
    assert.equals(1, r1.position.epoch)
    assert.equals(1, r1.position.step)
    local r2 = tm.run(opts(b, { "--resume" }))
    assert.is_false(r2.interrupted)
    assert.same({ epoch = 1, step = 1 }, r2.resumed_from)
    same_weights(straight, r2.model)
    local ok, err = pcall(tm.run, opts(b, { "--d-state", "8" }))
    assert.is_false(ok)
    assert.matches("other settings (d-state 4 (checkpoint) vs 8)", err, 1, true)
  end)
end)
