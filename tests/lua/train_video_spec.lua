-- train_video_spec.lua — smoke test of scripts/train_video.lua (seconds,
-- not the full training): a tiny C3D on a few dozen small moving-shapes
-- clips learns (the training loss falls), writes weights + JSON config +
-- checkpoint with no temp files left, resumes from an interrupt in the
-- middle of an epoch to exactly the weights of an uninterrupted run, runs
-- the other model families, and the command line exits with the right
-- statuses. Runs $VLUA_BIN (default build/vlua) for the child process.
local vl = require "vl"

local VLUA = os.getenv("VLUA_BIN") or "build/vlua"
local CLEAN = "env -u LUA_INIT -u LUA_INIT_5_4 -u VLUA_MAX_MEMORY -u LUA_PATH -u LUA_PATH_5_4"

local tvid = assert(loadfile("scripts/train_video.lua"))("--module")

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

-- 64 clips of 8 frames 16x16, 4 sampled; 4 steps of 16 per epoch.
local TINY = { "--train-size", "64", "--test-size", "32", "--clip-frames", "8", "--frames", "4", "--size", "16",
  "--width", "4", "--batch", "16", "--lr", "0.01", "--warmup", "0", "--quiet" }

local function opts(dir, extra)
  assert(os.execute("mkdir -p " .. q(dir)))
  local argv = { "--out", dir .. "/m.safetensors", "--epochs", "2" }
  for _, a in ipairs(TINY) do argv[#argv + 1] = a end
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local o = tvid.parse_args(argv)
  o.log = function() end
  return o
end

local function same_weights(a, b)
  local sa, sb = a:state_dict(), b:state_dict()
  local n = 0
  for k, v in pairs(sa) do
    n = n + 1
    assert(sb[k], "missing " .. k)
    assert.equals(0, (v:double() - sb[k]:double()):abs():max():item(), k)
  end
  assert.is_true(n > 10)
end

describe("train_video.lua", function()
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
      { { "--model", "i3d" }, "--model must be c3d, r2plus1d or slowfast, got 'i3d'" },
      { { "--epochs", "0" }, "--epochs must be at least 1" },
      { { "--frames", "20" }, "--frames (20) cannot exceed --clip-frames (16)" },
      { { "--lr", "x" }, "--lr expects a number" },
      { { "--bogus" }, "unknown argument '--bogus'" },
      { { "--out", "model.bin" }, "--out must end in .safetensors" },
      { { "--fresh", "--resume" }, "contradict" },
      { { "--size", "4" }, "--size must be at least 8" },
    }
    for _, c in ipairs(cases) do
      local ok, err = pcall(tvid.parse_args, c[1])
      assert.is_false(ok)
      assert.matches("^train_video: ", err)
      assert.matches(c[2], err, 1, true)
    end
    local o = tvid.parse_args({ "--model=slowfast" })
    assert.equals(16, o.frames) -- SlowFast sees every frame of the clip
    assert.equals("video_slowfast.safetensors", o.out)
    assert.equals(8, tvid.parse_args({}).frames)
  end)

  it("samples frames per clip in training (TSN) and segment centres in test", function()
    local o = tvid.parse_args({ "--frames", "4", "--clip-frames", "16" })
    local x = vl.arange(0, 16, 1, { dtype = "float32" }):view(1, 1, 16, 1, 1):expand(3, 2, 16, 2, 2):contiguous()
    local t = tvid.sample_frames(x, o, false)
    assert.same({ 3, 2, 4, 2, 2 }, t:size())
    assert.same({ 2, 6, 10, 14 }, t:select(1, 1):select(1, 1):select(2, 1):select(2, 1):totable()) -- 0-based centres
    vl.manual_seed(3)
    local r = tvid.sample_frames(x, o, true)
    for b = 1, 3 do
      local f = r:select(1, b):select(1, 2):select(2, 2):select(2, 1):totable()
      for k = 1, 4 do assert.is_true(f[k] >= 4 * (k - 1) and f[k] <= 4 * k - 1) end
    end
  end)

  local straight -- the model of an uninterrupted 2-epoch run

  it("learns, and writes weights + JSON config + checkpoint atomically that load back", function()
    local r4 = tvid.run(opts(dir .. "/long", { "--epochs", "4" }))
    assert.equals(4, #r4.history)
    assert.is_true(r4.history[4].train_loss < r4.history[1].train_loss - 0.05,
      string.format("train loss %.4f -> %.4f", r4.history[1].train_loss, r4.history[4].train_loss))
    local r = tvid.run(opts(dir .. "/a"))
    straight = r.model
    assert.is_false(r.interrupted)
    assert.equals(2, #r.history)
    assert.same({ "m.ckpt.safetensors", "m.json", "m.safetensors" }, listdir(dir .. "/a")) -- no temp files left
    local info = tvid.load_model and select(2, tvid.load_model(dir .. "/a/m.safetensors"))
    assert.equals("vl.video.C3D", info.model)
    assert.equals(4, info.config.width)
    assert.equals(4, info.input.frames)
    assert.equals(8, #info.classes)
    assert.equals(r.history[2].test_acc, info.test_accuracy)
    local m = tvid.load_model(dir .. "/a/m.safetensors")
    same_weights(r.model, m)
    r.model:eval()
    local x = vl.rand(2, 3, 4, 16, 16)
    assert.equals(0, (vl.no_grad(function() return r.model(x) end) - vl.no_grad(function() return m(x) end)):abs()
      :max():item())
  end)

  it("an interrupt in the middle of epoch 2 saves a checkpoint; resuming gives the uninterrupted weights", function()
    local b = dir .. "/b"
    local r1 = tvid.run(opts(b, { "--interrupt-after", "5" }))
    assert.is_true(r1.interrupted)
    assert.same({ "m.ckpt.safetensors", "m.json", "m.safetensors" }, listdir(b))
    assert.equals(1, r1.position.epoch)
    assert.equals(1, r1.position.step)
    local r2 = tvid.run(opts(b, { "--resume" }))
    assert.is_false(r2.interrupted)
    assert.same({ epoch = 1, step = 1 }, r2.resumed_from)
    same_weights(straight, r2.model)
    assert.equals(2, #r2.history)
    local ok, err = pcall(tvid.run, opts(b, { "--lr", "0.02" }))
    assert.is_false(ok)
    assert.matches("other settings (lr 0.01 (checkpoint) vs 0.02)", err, 1, true)
    ok, err = pcall(tvid.run, opts(dir .. "/none", { "--resume" }))
    assert.is_false(ok)
    assert.matches("--resume: no checkpoint at", err, 1, true)
  end)

  it("trains R(2+1)D and SlowFast too", function()
    for _, m in ipairs({ "r2plus1d", "slowfast" }) do
      local extra = { "--model", m, "--epochs", "1" }
      if m == "slowfast" then
        for _, a in ipairs({ "--frames", "8", "--alpha", "4", "--width", "8", "--beta-inv", "4" }) do
          extra[#extra + 1] = a
        end
      end
      local r = tvid.run(opts(dir .. "/" .. m, extra))
      assert.equals(1, #r.history)
      assert.is_true(r.history[1].train_loss > 0 and r.history[1].train_loss < 5)
    end
  end)

  it("the command line: exit 0 with the accuracy, 130 on an interrupt, 2 on a bad flag", function()
    local c = dir .. "/cli"
    assert(os.execute("mkdir -p " .. q(c)))
    local function run(args)
      local code = sh(string.format("%s %s scripts/train_video.lua %s --threads 1 --out %s > %s 2> %s", CLEAN, q(VLUA),
        args, q(c .. "/m.safetensors"), q(c .. "/out"), q(c .. "/err")))
      return code, read(c .. "/out"), read(c .. "/err")
    end
    local code, out = run(table.concat(TINY, " ") .. " --epochs 1 --interrupt-after 2")
    assert.equals(130, code)
    assert.matches("interrupted: checkpoint .* saved at epoch 1/1, step 2/4", out)
    code, out = run(table.concat(TINY, " ") .. " --epochs 1")
    assert.equals(0, code)
    assert.matches("resuming from .* at epoch 1/1, step 2/4", out)
    assert.matches("done: test accuracy [%d.]+ after 1 epochs", out)
    local code2, _, err = run("--model bogus")
    assert.equals(2, code2)
    assert.equals("train_video: --model must be c3d, r2plus1d or slowfast, got 'bogus'\n", err)
  end)
end)
