-- train_vit_spec.lua — smoke test of the main job (a few seconds):
-- scripts/train_vit.lua trains a tiny ViT on a Fashion-MNIST subset for an
-- epoch, writes weights + JSON config + checkpoint (and no stray temp
-- files), resumes from an interrupt in the middle of an epoch to exactly the
-- weights of an uninterrupted run, stops on a real SIGINT with a checkpoint,
-- and scripts/classify.lua prints five classes from what it saved.
-- Needs dataset-fashion-mnist (pending without it). Runs $VLUA_BIN (default
-- build/vlua) for the child processes.
local vl = require "vl"
local data = require "vl.data"

local VLUA = os.getenv("VLUA_BIN") or "build/vlua"
local CLEAN = "env -u LUA_INIT -u LUA_INIT_5_4 -u VLUA_MAX_MEMORY -u LUA_PATH -u LUA_PATH_5_4"

local tv = assert(loadfile("scripts/train_vit.lua"))("--module")

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

local function sh(cmd)
  local _, how, code = os.execute(cmd)
  return how == "exit" and code or 128 + code
end

-- A tiny ViT and a small subset: 4 steps of 64 images per epoch.
local function opts(dir, extra)
  assert(os.execute("mkdir -p " .. q(dir)))
  local argv = { "--subset", "256", "--test-subset", "200", "--batch", "64", "--patch", "14", "--hidden", "16",
    "--layers", "1", "--heads", "2", "--mlp", "32", "--epochs", "2", "--crop-pad", "2", "--quiet",
    "--out", dir .. "/m.safetensors" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local o = tv.parse_args(argv)
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
  assert.is_true(n > 10)
end

describe("train_vit.lua", function()
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
      { { "--hidden", "30", "--heads", "4" }, "must be a multiple of --heads" },
      { { "--lr", "x" }, "--lr expects a number" },
      { { "--bogus" }, "unknown argument '--bogus'" },
      { { "--out", "model.bin" }, "--out must end in .safetensors" },
      { { "--fresh", "--resume" }, "contradict" },
      { { "--label-smoothing", "1" }, "--label-smoothing must be in [0, 1)" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(tv.parse_args, c[1])
      assert.is_false(ok)
      assert.matches("^train_vit: ", err)
      assert.matches(c[2], err, 1, true)
    end
    local o = tv.parse_args({ "--epochs=3", "--no-flip", "--lr", "1e-3" })
    assert.equals(3, o.epochs)
    assert.is_true(o.no_flip)
    assert.equals(1e-3, o.lr)
    assert.same({ weights = "a/b.safetensors", config = "a/b.json", checkpoint = "a/b.ckpt.safetensors" },
      tv.paths("a/b.safetensors"))
  end)

  it("JSON: what json_encode writes json_decode reads back; bad text is an error with the offset", function()
    local v = { a = 1, b = { 1.5, -2, "x\"y\n\\" }, c = true, d = { e = false, f = 1e-7 }, g = {} }
    local back = tv.json_decode(tv.json_encode(v))
    assert.same(v, back)
    assert.equals(0.1, tv.json_decode(tv.json_encode(0.1)))
    assert.same({ x = { 1, 2 } }, tv.json_decode(' { "x" : [1, 2] } '))
    for _, bad in ipairs({ '{"a" 1}', '[1, 2', '{"a": tru}', '"abc', '[1] x' }) do
      local ok, err = pcall(tv.json_decode, bad, "cfg.json")
      assert.is_false(ok)
      assert.matches("^cfg%.json: invalid JSON at byte %d+", err)
    end
  end)

  if not have_fmnist() then
    pending("Fashion-MNIST (dataset-fashion-mnist) is not installed: training checks skipped")
    return
  end

  local straight -- the model of an uninterrupted 2-epoch run

  it("trains, writes weights + JSON config + checkpoint atomically, and the files load back", function()
    local r = tv.run(opts(dir .. "/a"))
    straight = r.model
    assert.is_false(r.interrupted)
    assert.equals(2, #r.history)
    for _, h in ipairs(r.history) do
      assert.is_true(h.train_loss > 0 and h.train_loss < 10)
      assert.is_true(h.test_acc >= 0 and h.test_acc <= 1)
    end
    assert.same({ "m.ckpt.safetensors", "m.json", "m.safetensors" }, listdir(dir .. "/a")) -- no temp files left
    local info = tv.json_decode(read(dir .. "/a/m.json"))
    assert.equals(14, info.vit.patch_size)
    assert.equals(16, info.vit.hidden_dim)
    assert.equals(2, info.epochs_trained)
    assert.equals(r.history[2].test_acc, info.test_accuracy)
    assert.equals(10, #info.classes)
    assert.equals("m.safetensors", info.weights)
    local m = tv.load_model(dir .. "/a/m.safetensors")
    same_weights(r.model, m)
    r.model:eval()
    local x = vl.randn({ 3, 1, 28, 28 })
    local want = vl.no_grad(function() return r.model(x) end)
    local got = vl.no_grad(function() return m(x) end)
    assert.equals(0, (want - got):abs():max():item())
  end)

  it("an interrupt in the middle of epoch 2 saves a checkpoint; resuming gives the uninterrupted weights", function()
    local b = dir .. "/b"
    local r1 = tv.run(opts(b, { "--interrupt-after", "5" }))
    assert.is_true(r1.interrupted)
    assert.same({ "m.ckpt.safetensors", "m.json", "m.safetensors" }, listdir(b))
    assert.equals(1, r1.position.epoch)
    assert.equals(1, r1.position.step)
    local r2 = tv.run(opts(b, { "--resume" }))
    assert.is_false(r2.interrupted)
    assert.same({ epoch = 1, step = 1 }, r2.resumed_from)
    same_weights(straight, r2.model)
    assert.equals(2, #r2.history)
    -- a finished run resumes to nothing more; other settings are refused
    local r3 = tv.run(opts(b))
    assert.equals(2, r3.resumed_from.epoch)
    local ok, err = pcall(tv.run, opts(b, { "--lr", "0.01" }))
    assert.is_false(ok)
    assert.matches("other settings (lr 0.002 (checkpoint) vs 0.01)", err, 1, true)
    ok, err = pcall(tv.run, opts(dir .. "/none", { "--resume" }))
    assert.is_false(ok)
    assert.matches("--resume: no checkpoint at", err, 1, true)
  end)

  it("Ctrl-C (SIGINT) on the process saves a checkpoint and exits with 130", function()
    local c = dir .. "/c"
    assert(os.execute("mkdir -p " .. q(c)))
    local out = c .. "/m.safetensors"
    -- 1 step per epoch, many epochs: a checkpoint appears after the first
    local cmd = string.format("(%s %s scripts/train_vit.lua --subset 64 --test-subset 50 --batch 64 --patch 14 " ..
      "--hidden 16 --layers 1 --heads 2 --mlp 32 --epochs 100000 --threads 1 --quiet --out %s > %s 2> %s & " ..
      "echo $! > %s; wait $!; echo $? > %s) > /dev/null 2>&1 &", CLEAN, q(VLUA), q(out), q(c .. "/stdout"),
      q(c .. "/stderr"), q(c .. "/pid"), q(c .. "/rc"))
    assert(os.execute(cmd))
    local t0 = vl.monotonic()
    local pid
    while not pid and vl.monotonic() - t0 < 10 do
      pid = math.tointeger(tonumber(read(c .. "/pid") or ""))
      if not pid then sh("sleep 0.02") end
    end
    assert.is_not_nil(pid)
    while not read(c .. "/m.json") and vl.monotonic() - t0 < 30 do sh("sleep 0.05") end
    sh("kill -INT " .. pid)
    local rc
    while not rc and vl.monotonic() - t0 < 40 do
      rc = math.tointeger(tonumber(read(c .. "/rc") or ""))
      if not rc then sh("sleep 0.05") end
    end
    local alive = sh("kill -0 " .. pid .. " 2>/dev/null") == 0
    if alive then sh("kill -KILL " .. pid) end
    assert.is_false(alive)
    assert.equals(130, rc)
    local so = read(c .. "/stdout")
    assert.matches("interrupted: checkpoint .* saved at ", so)
    assert.matches("run the same command again to continue", so, 1, true)
    local ck = vl.load(c .. "/m.ckpt.safetensors", { flat = true })
    assert.is_true(ck.epoch >= 1)
    assert.equals(100000, ck["config/epochs"])
  end)

  it("classify.lua prints the top 5 classes of test images and .npy files; bad input is a clear error", function()
    local m = dir .. "/a/m.safetensors"
    local x = data.fashion_mnist_tensors("test"):narrow(1, 1, 2):clone()
    vl.npy.save(dir .. "/two.npy", x)
    vl.npy.save(dir .. "/bad.npy", vl.zeros({ 2, 27, 28 }, { dtype = "uint8" }))
    local function classify(args)
      local o, e = dir .. "/cl.out", dir .. "/cl.err"
      local code = sh(string.format("%s %s scripts/classify.lua %s > %s 2> %s", CLEAN, q(VLUA), args, q(o), q(e)))
      return code, read(o), read(e)
    end
    local code, out = classify(q(m) .. " idx:1 " .. q(dir .. "/two.npy"))
    assert.equals(0, code)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equals(18, #lines) -- 3 images x (name + 5 classes)
    assert.equals("idx:1 (label: Ankle boot)", lines[1])
    local total = 0
    for r = 1, 5 do
      local rank, name, pr = lines[1 + r]:match("^  (%d)  (.-)%s+([%d.]+)$")
      assert.equals(r, tonumber(rank))
      local known = false
      for _, c in ipairs(data.fashion_mnist_classes) do known = known or c == name end
      assert.is_true(known, name)
      total = total + tonumber(pr)
    end
    assert.is_true(total > 0 and total <= 1.0001)
    -- the .npy copy of test image 1 gives the same answer as idx:1
    for r = 1, 5 do assert.equals(lines[1 + r], lines[7 + r]) end
    local err
    code, _, err = classify(q(m) .. " " .. q(dir .. "/bad.npy"))
    assert.equals(2, code)
    assert.matches("shape [2,27,28]; expected [28,28]", err, 1, true)
    code, _, err = classify(q(dir .. "/missing.safetensors") .. " idx:1")
    assert.equals(2, code)
    assert.matches("no such model file", err, 1, true)
    code, _, err = classify(q(m) .. " idx:10001")
    assert.equals(2, code)
    assert.matches("images 1..10000", err, 1, true)
  end)
end)
