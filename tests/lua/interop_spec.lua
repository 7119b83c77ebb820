-- interop_spec.lua — PyTorch <-> vlua, both ways.
-- PyTorch -> vlua: scripts/fixtures/interop.py built an MLP and a CNN in
-- PyTorch and wrote their state_dicts (tests/fixtures/interop/{mlp,cnn}.safetensors,
-- PyTorch's key names) and, next to them, an input, targets and PyTorch's
-- outputs, loss and gradients of every parameter and of the input
-- (*_ref.safetensors, float32, and float64 from the same weights). The same
-- modules are built here, the weights loaded with vl.safetensors.load /
-- load_state_dict, and everything compared: 1e-5 in float32, 1e-10 in float64.
-- vlua -> PyTorch: a vlua model, trained a few steps, is saved with
-- Module:save (vl.save) and vl.safetensors.save; its keys, shapes and dtypes
-- must be PyTorch's. With VLUA_INTEROP_OUT=dir the files (and vlua's
-- outputs and gradients next to them) are kept there for
-- `/usr/bin/python3 scripts/fixtures/interop.py --check dir/cnn.safetensors`,
-- which loads them into PyTorch (not part of make test).
local vl = require "vl"
local nn = require "vl.nn"
local optim = require "vl.optim"

local DIR = "tests/fixtures/interop/"

local function make_mlp()
  return nn.Sequential(nn.Linear(20, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 5))
end

local function make_cnn()
  return nn.Sequential(
    nn.Conv2d(3, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, { stride = 2, padding = 1, bias = false }), nn.BatchNorm2d(16), nn.ReLU(),
    nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 2 * 2, 10))
end

local MAKE = { mlp = make_mlp, cnn = make_cnn }

-- Largest |got - want| / max(1, |want|), in float64.
local function max_err(got, want)
  assert.are.same(want:size(), got:size())
  if want:numel() == 0 then return 0 end
  local g, w = got:detach():double(), want:double()
  return ((g - w):abs() / vl.maximum(w:abs(), vl.ones_like(w))):max():item()
end

local function close(name, got, want, tol)
  local e = max_err(got, want)
  assert(e <= tol, string.format("%s: max error %.3g > %g", name, e, tol))
end

local function split(s)
  local t = {}
  for w in s:gmatch("[^,]+") do t[#t + 1] = w end
  return t
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Forward in train mode, cross-entropy, backward: as interop.py's run_case.
local function run_case(model, x, target)
  model:train()
  x = x:detach():clone():requires_grad(true)
  model:zero_grad()
  local out = model(x)
  local loss = vl.cross_entropy(out, target)
  loss:backward()
  local r = { output = out:detach(), loss = loss:detach(), ["grad.input"] = x.grad }
  for name, p in model:named_parameters() do r["grad." .. name] = p.grad end
  return r
end

describe("PyTorch -> vlua", function()
  for _, kind in ipairs({ "mlp", "cnn" }) do
    describe(kind, function()
      local sd, meta = vl.safetensors.load(DIR .. kind .. ".safetensors")
      local ref = vl.safetensors.load(DIR .. kind .. "_ref.safetensors")

      it("has PyTorch's state_dict keys, in PyTorch's order, with the same shapes", function()
        local model = MAKE[kind]()
        local torch_keys = split(meta.state_dict_keys)
        assert.are.same(torch_keys, nn.keys(model:state_dict()))
        for name, t in pairs(model:state_dict()) do
          assert.are.same(sd[name]:size(), t:size(), name)
          assert.are.equal(sd[name].dtype, t.dtype, name)
        end
      end)

      for _, dt in ipairs({ "float32", "float64" }) do
        local sfx, tol = dt == "float64" and "64" or "", dt == "float64" and 1e-10 or 1e-5
        it("matches outputs, loss and every gradient in " .. dt, function()
          local model = MAKE[kind]()
          local res = model:load_state_dict(sd)
          assert.are.same({}, res.missing_keys)
          assert.are.same({}, res.unexpected_keys)
          if dt == "float64" then model:double() end
          local x = ref.input:to(dt)
          if kind == "cnn" then
            model:eval()
            local out = vl.no_grad(function() return model(x) end)
            close("eval.output", out, ref["eval.output" .. sfx], tol)
          end
          local r = run_case(model, x, ref.target)
          local n = 0
          for k, v in pairs(r) do
            assert.are.equal(dt, v.dtype, k)
            close(k, v, ref[k .. sfx], tol)
            n = n + 1
          end
          local nparams = #model:parameters()
          assert.are.equal(nparams + 3, n) -- output, loss, input gradient, one per parameter
          if kind == "cnn" then
            -- the batch statistics updated the running ones as PyTorch did
            local nb = 0
            for name, b in model:named_buffers() do
              close("after." .. name, b, ref["after." .. name .. sfx], tol)
              nb = nb + 1
            end
            assert.are.equal(6, nb)
          end
        end)
      end

      it("loads through Module:load(path) too", function()
        local model = MAKE[kind]()
        model:load(DIR .. kind .. ".safetensors")
        for name, t in pairs(model:state_dict()) do
          assert.are.equal(0, max_err(t, sd[name]), name)
        end
      end)
    end)
  end
end)

describe("vlua -> PyTorch", function()
  local keep = os.getenv("VLUA_INTEROP_OUT")
  local dir = keep
  if not dir or dir == "" then
    dir = os.tmpname()
    os.remove(dir)
    keep = nil
  end
  assert(os.execute("mkdir -p " .. q(dir)))
  teardown(function()
    if not keep then os.execute("rm -rf " .. q(dir)) end
  end)

  for _, kind in ipairs({ "mlp", "cnn" }) do
    it(kind .. ": a trained vlua model is written with PyTorch's names, shapes and dtypes", function()
      vl.manual_seed(kind == "mlp" and 101 or 202)
      local model = MAKE[kind]()
      local xshape = kind == "mlp" and { 8, 20 } or { 4, 3, 16, 16 }
      local nclass = kind == "mlp" and 5 or 10
      -- a few SGD steps so that the weights and BatchNorm's statistics move
      local opt = optim.SGD(model, { lr = 0.05, momentum = 0.9 })
      for _ = 1, 5 do
        local xb, yb = vl.randn(xshape), vl.randint(1, nclass + 1, { xshape[1] })
        opt:zero_grad()
        vl.cross_entropy(model(xb), yb):backward()
        opt:step()
      end
      local path = dir .. "/" .. kind .. ".safetensors"
      if kind == "mlp" then
        model:save(path) -- vl.save
      else
        vl.safetensors.save(path, model:state_dict(), { metadata = { interop_model = "cnn" } })
      end
      local saved = {}
      for name, t in pairs(model:state_dict()) do saved[name] = t:clone() end

      -- what interop.py --check compares against
      local x, target = vl.randn(xshape), vl.randint(1, nclass + 1, { xshape[1] })
      local refs = { input = x, target = target }
      if kind == "cnn" then
        model:eval()
        refs["eval.output"] = vl.no_grad(function() return model(x) end)
      end
      for k, v in pairs(run_case(model, x, target)) do refs[k] = v end
      if kind == "cnn" then
        for name, b in model:named_buffers() do refs["after." .. name] = b:clone() end
      end
      vl.safetensors.save(dir .. "/" .. kind .. "_ref.safetensors", refs)

      -- the file has exactly PyTorch's entries (keys, shapes, dtypes)
      local torch_sd, torch_meta = vl.safetensors.load(DIR .. kind .. ".safetensors")
      local f <close> = vl.safetensors.open(path)
      local want = split(torch_meta.state_dict_keys)
      table.sort(want)
      assert.are.same(want, f:keys())
      for _, k in ipairs(want) do
        assert.are.same(torch_sd[k]:size(), f:shape(k), k)
        assert.are.equal(torch_sd[k].dtype, f:dtype(k), k)
      end
      -- and reads back bit for bit into a fresh model
      local back = MAKE[kind]()
      back:load(path)
      for name, t in pairs(back:state_dict()) do assert.are.equal(0, max_err(t, saved[name]), name) end
      if kind == "cnn" then assert.are.equal("cnn", f:metadata().interop_model) end
    end)
  end
end)

describe("bad input", function()
  local function fails(pattern, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok)
    assert.matches(pattern, tostring(err))
  end

  it("CNN weights into the MLP name the missing and unexpected keys", function()
    local sd = vl.safetensors.load(DIR .. "cnn.safetensors")
    local m = make_mlp()
    fails('missing keys: "3%.weight", "3%.bias"', m.load_state_dict, m, sd)
    fails('unexpected keys: "1%.num_batches_tracked", "1%.running_mean"', m.load_state_dict, m, sd)
    fails("size mismatch for 0%.weight: copying a tensor of shape %[8, 3, 3, 3%]", m.load_state_dict, m, sd)
  end)

  it("a layer of another size names the key and both shapes", function()
    local sd = vl.safetensors.load(DIR .. "mlp.safetensors")
    local m = nn.Sequential(nn.Linear(20, 33), nn.LayerNorm(33), nn.GELU(), nn.Linear(33, 16), nn.Tanh(), nn.Linear(16, 5))
    fails("size mismatch for 0%.weight: copying a tensor of shape %[32, 20%] from the checkpoint, the shape in the current model is %[33, 20%]",
      m.load_state_dict, m, sd)
  end)

  it("strict = false loads what matches and lists the rest", function()
    local sd = vl.safetensors.load(DIR .. "mlp.safetensors")
    sd["5.bias"] = nil
    sd["extra.weight"] = vl.zeros({ 2 })
    local m = make_mlp()
    local r = m:load_state_dict(sd, { strict = false })
    assert.are.same({ "5.bias" }, r.missing_keys)
    assert.are.same({ "extra.weight" }, r.unexpected_keys)
    assert.are.equal(0, max_err(m[1].weight, sd["0.weight"]))
  end)

  it("a truncated weights file is refused with the file named", function()
    local src = assert(io.open(DIR .. "mlp.safetensors", "rb"))
    local bytes = src:read("a")
    src:close()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(bytes:sub(1, #bytes - 10))
    f:close()
    local m = make_mlp()
    local ok, err = pcall(m.load, m, path)
    os.remove(path)
    assert.is_false(ok)
    assert.matches("safetensors", tostring(err))
    assert.matches(path:gsub("%p", "%%%0"), tostring(err))
  end)

  it("a missing file and a wrong argument are errors, not crashes", function()
    local m = make_mlp()
    fails("No such file", m.load, m, "/nonexistent/mlp.safetensors")
    fails("expects a file path", m.load, m, 42)
    fails("expected a table of tensors", m.load_state_dict, m, "weights")
    fails('"0%.weight": expected a tensor, got number', m.load_state_dict, m,
      (function()
        local sd = vl.safetensors.load(DIR .. "mlp.safetensors")
        sd["0.weight"] = 1
        return sd
      end)())
  end)
end)
