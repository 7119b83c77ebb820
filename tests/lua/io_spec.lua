-- io_spec.lua — vl.safetensors, vl.npy, vl.save/vl.load, vl.read_idx,
-- atomic writes, vl.isatty/vl.monotonic.
-- References: files written by NumPy (np.save, format.write_array) and by an
-- independent safetensors writer, IDX files packed with struct and gzip, all
-- made by scripts/fixtures/io.py (tests/fixtures/io/, values in
-- tests/fixtures/io.lua); corrupt files are built here byte by byte.
local vl = require "vl"

local fx = dofile("tests/fixtures/io.lua")
local DIR = "tests/fixtures/io/"
local VLUA = os.getenv("VLUA_BIN") or "build/vlua"

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A fresh empty directory; its entries listed with ls -A.
local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. q(p)))
  return p
end

local function listdir(d)
  local h = io.popen("ls -A " .. q(d))
  local names = {}
  for line in h:lines() do names[#names + 1] = line end
  h:close()
  table.sort(names)
  return names
end

local function rmdir(d) os.execute("rm -rf " .. q(d)) end

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  if t:numel() == 0 then return {} end
  return t:contiguous():view(-1):totable()
end

local function assert_values(t, want)
  local got = flat(t)
  assert.are.equal(#want, #got)
  for i = 1, #want do
    if got[i] ~= want[i] and not (got[i] ~= got[i] and want[i] ~= want[i]) then
      error(string.format("element %d: got %s, want %s", i, tostring(got[i]), tostring(want[i])), 2)
    end
  end
end

local ST_VL = { F32 = "float32", F64 = "float64", F16 = "float16", BF16 = "bfloat16", I64 = "int64",
  I32 = "int32", U8 = "uint8", BOOL = "bool" }
local ALL_DTYPES = { "float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool" }

-- A tensor of each dtype with distinct values.
local function sample(dtype, shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for i = 1, n do
    if dtype == "bool" then v[i] = i % 3 == 0
    elseif dtype == "uint8" then v[i] = (i * 37) % 256
    elseif dtype:match("^int") then v[i] = (i * 7919 - 40) * (i % 2 == 0 and -1 or 1)
    else v[i] = (i - 2.5) * 0.75 end
  end
  if n == 0 then return vl.zeros(shape, { dtype = dtype }) end
  return vl.tensor(v, { dtype = dtype }):view(shape)
end

local function assert_same_tensor(a, b)
  assert.are.equal(a.dtype, b.dtype)
  assert.are.same(a:size(), b:size())
  assert_values(b, flat(a))
end

-- safetensors bytes: 8-byte length, header, data.
local function st_bytes(header, data)
  return string.pack("<I8", #header) .. header .. (data or "")
end

local function f32s(...)
  local s = {}
  for _, v in ipairs({ ... }) do s[#s + 1] = string.pack("<f", v) end
  return table.concat(s)
end

local function tmpfile(bytes)
  local p = os.tmpname()
  spit(p, bytes)
  return p
end

-- pcall(fn, ...) must fail with a message matching every pattern.
local function fails(patterns, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  err = tostring(err)
  for _, p in ipairs(type(patterns) == "table" and patterns or { patterns }) do
    if not err:match(p) then error(("message %q does not match %q"):format(err, p), 2) end
  end
  return err
end

describe("safetensors", function()
  it("reads every dtype from a file written by an independent writer", function()
    local t, meta = vl.safetensors.load(DIR .. "all_dtypes.safetensors")
    local n = 0
    for name, want in pairs(fx.safetensors) do
      n = n + 1
      local x = t[name]
      assert.is_not_nil(x, name)
      assert.are.equal(ST_VL[want.dtype], x.dtype)
      assert.are.same(want.shape, x:size())
      assert_values(x, want.values)
    end
    local m = 0
    for _ in pairs(t) do m = m + 1 end
    assert.are.equal(n, m)
    assert.are.same(fx.safetensors_meta, meta)
  end)

  it("opens lazily: keys, metadata, shape, dtype, info, get", function()
    local f = vl.safetensors.open(DIR .. "all_dtypes.safetensors")
    local keys = {}
    for k in pairs(fx.safetensors) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.are.same(keys, f:keys())
    assert.are.equal(#keys, #f)
    assert.are.same(fx.safetensors_meta, f:metadata())
    assert.are.same({ 3, 4 }, f:shape("f32"))
    assert.are.same({}, f:shape("scalar"))
    assert.are.equal("bfloat16", f:dtype("bf16"))
    local info = f:info("f64")
    assert.are.equal("F64", info.dtype)
    assert.are.equal(48, info.data_offsets[2] - info.data_offsets[1])
    assert.is_true(f:has("u8"))
    assert.is_false(f:has("nope"))
    local x = f:get("i64")
    f:close()
    -- the tensor outlives the handle (it holds the mapping)
    collectgarbage()
    assert_values(x, fx.safetensors.i64.values)
    fails("closed", f.keys, f)
    fails("no tensor named 'nope'", vl.safetensors.open(DIR .. "all_dtypes.safetensors").get,
      vl.safetensors.open(DIR .. "all_dtypes.safetensors"), "nope")
  end)

  it("maps aligned tensors without copying and copies misaligned ones", function()
    collectgarbage()
    local before = vl.memory_in_use()
    -- the reference layout keeps every tensor aligned: all are views of the mapping
    local t = vl.safetensors.load(DIR .. "reference_layout.safetensors")
    assert.are.equal(before, vl.memory_in_use())
    local u = vl.safetensors.load(DIR .. "unaligned.safetensors")
    assert.is_true(vl.memory_in_use() > before)   -- the f32 at byte 3 of the data was copied
    assert_values(u.b, { 1.5, -2.0 })
    assert_values(u.a, { 1, 2, 3 })
    assert.is_not_nil(t)
  end)

  it("writes into a loaded tensor never change the file", function()
    local d = tmpdir()
    local p = d .. "/w.safetensors"
    vl.safetensors.save(p, { w = vl.arange(0, 8, 1, { dtype = "float32" }) })
    local before = slurp(p)
    local t = vl.safetensors.load(p)
    t.w:fill_(7)
    assert_values(t.w, { 7, 7, 7, 7, 7, 7, 7, 7 })
    assert.are.equal(before, slurp(p))
    assert_values(vl.safetensors.load(p).w, { 0, 1, 2, 3, 4, 5, 6, 7 })
    rmdir(d)
  end)

  it("round-trips every dtype, 0-d, empty and non-contiguous tensors, with metadata", function()
    local d = tmpdir()
    local p = d .. "/rt.safetensors"
    local tbl = {}
    for _, dt in ipairs(ALL_DTYPES) do
      tbl[dt] = sample(dt, { 3, 4 })
      tbl[dt .. ".t"] = sample(dt, { 3, 5 }):t()         -- transposed view
      tbl[dt .. ".0d"] = sample(dt, {}) -- 0-d
      tbl[dt .. ".empty"] = sample(dt, { 0, 2 })
    end
    tbl.expanded = vl.tensor({ 1, 2, 3 }):view(3, 1):expand(3, 4)
    tbl.narrowed = sample("float64", { 6, 6 }):narrow(2, 2, 3)
    vl.safetensors.save(p, tbl, { metadata = { epoch = 3, who = "spec" } })
    local back, meta = vl.safetensors.load(p)
    for k, v in pairs(tbl) do assert_same_tensor(v, back[k]) end
    assert.are.same({ epoch = "3", who = "spec" }, meta)
    rmdir(d)
  end)

  it("writes the reference implementation's layout byte for byte", function()
    local t, meta = vl.safetensors.load(DIR .. "all_dtypes.safetensors")
    local d = tmpdir()
    local p = d .. "/same.safetensors"
    vl.safetensors.save(p, t, { metadata = meta })
    assert.are.equal(slurp(DIR .. "reference_layout.safetensors"), slurp(p))
    -- header length is a multiple of 8, padded with spaces
    local n = string.unpack("<I8", slurp(p))
    assert.are.equal(0, n % 8)
    rmdir(d)
  end)

  it("accepts an empty file of tensors and a padded header", function()
    local p = tmpfile(st_bytes('{}      '))
    local t, meta = vl.safetensors.load(p)
    assert.are.same({}, t)
    assert.are.same({}, meta)
    os.remove(p)
    p = tmpfile(st_bytes('{"__metadata__":null, "x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   \n',
      f32s(1, 2)))
    assert_values(vl.safetensors.load(p).x, { 1, 2 })
    os.remove(p)
  end)
end)

describe("npy", function()
  it("reads NumPy's files: every dtype, both byte orders, Fortran order, versions 1-3", function()
    local DT = { ["<f4"] = "float32", ["<f8"] = "float64", ["<f2"] = "float16", ["<i8"] = "int64",
      ["<i4"] = "int32", ["|u1"] = "uint8", ["|b1"] = "bool", [">f4"] = "float32", [">i8"] = "int64",
      [">f2"] = "float16" }
    local n = 0
    for name, want in pairs(fx.npy) do
      n = n + 1
      local x = vl.npy.load(DIR .. name .. ".npy")
      assert.are.equal(DT[want.descr], x.dtype, name)
      assert.are.same(want.shape, x:size(), name)
      assert_values(x, want.values)
    end
    assert.is_true(n >= 17)
  end)

  it("loads Fortran order as a column-major view", function()
    local x = vl.npy.load(DIR .. "fortran_3d.npy")
    assert.are.same({ 1, 2, 6 }, x:stride())
    assert.is_false(x:is_contiguous())
  end)

  it("writes what NumPy writes, byte for byte", function()
    local d = tmpdir()
    for _, name in ipairs({ "f4", "f8", "f2", "i8", "i4", "u1", "b1", "scalar", "empty", "onedim" }) do
      local x = vl.npy.load(DIR .. name .. ".npy")
      local p = d .. "/" .. name .. ".npy"
      vl.npy.save(p, x)
      assert.are.equal(slurp(DIR .. name .. ".npy"), slurp(p), name)
    end
    -- a Fortran-order file comes back as the C-order file of the same array
    vl.npy.save(d .. "/c.npy", vl.npy.load(DIR .. "fortran_2d.npy"))
    assert.are.equal(slurp(DIR .. "f4.npy"), slurp(d .. "/c.npy"))
    rmdir(d)
  end)

  it("round-trips every dtype NumPy has, and refuses bfloat16", function()
    local d = tmpdir()
    for _, dt in ipairs(ALL_DTYPES) do
      local x = sample(dt, { 2, 3 }):t()
      if dt == "bfloat16" then
        fails("bfloat16 has no NumPy dtype", vl.npy.save, d .. "/bf.npy", x)
        assert.are.same({ "x.npy" }, listdir(d))
      else
        vl.npy.save(d .. "/x.npy", x)
        assert_same_tensor(x, vl.npy.load(d .. "/x.npy"))
      end
    end
    rmdir(d)
  end)
end)

describe("vl.save / vl.load", function()
  it("round-trips nested tables, arrays and scalars", function()
    local d = tmpdir()
    local p = d .. "/ckpt.safetensors"
    local w = vl.randn(3, 4)
    local state = {
      model = { fc = { weight = w, bias = vl.zeros(3) }, blocks = { vl.ones(2), vl.ones(2):mul(2) } },
      step = 1200, lr = 0.1 / 3, name = "run-1", done = false, big = math.maxinteger,
    }
    vl.save(p, state)
    local r, meta = vl.load(p)
    assert_same_tensor(w, r.model.fc.weight)
    assert_same_tensor(state.model.blocks[2], r.model.blocks[2])
    assert.are.equal(2, #r.model.blocks)
    assert.are.equal(1200, r.step)
    assert.are.equal("integer", math.type(r.step))
    assert.are.equal(0.1 / 3, r.lr)
    assert.are.equal("run-1", r.name)
    assert.are.equal(false, r.done)
    assert.are.equal(math.maxinteger, r.big)
    assert.are.equal("nested", meta["vl.save/layout"])
    -- the file is plain safetensors: dotted keys, scalars as metadata strings
    local f = vl.safetensors.open(p)
    assert.is_true(f:has("model.fc.weight"))
    assert.is_true(f:has("model.blocks.2"))
    assert.are.equal("1200", f:metadata().step)
    f:close()
    -- flat on request
    local fl = vl.load(p, { flat = true })
    assert_same_tensor(w, fl["model.fc.weight"])
    rmdir(d)
  end)

  it("keeps flat state dicts flat", function()
    local d = tmpdir()
    local p = d .. "/flat.safetensors"
    vl.save(p, { ["fc.weight"] = vl.ones(2, 2), ["fc.bias"] = vl.zeros(2) })
    local r = vl.load(p)
    assert_values(r["fc.weight"], { 1, 1, 1, 1 })
    assert.is_nil(r.fc)
    -- a file from elsewhere (no vl.save marks) loads flat, metadata apart
    local t, meta = vl.load(DIR .. "all_dtypes.safetensors")
    assert.is_not_nil(t.f32)
    assert.is_nil(t.framework)
    assert.are.equal("pt", meta.framework)
    rmdir(d)
  end)

  it("leaves no temporary file behind", function()
    local d = tmpdir()
    vl.save(d .. "/a.safetensors", { x = vl.ones(3) })
    vl.npy.save(d .. "/b.npy", vl.ones(3))
    vl.safetensors.save(d .. "/c.safetensors", { x = vl.ones(3) })
    vl.write_file(d .. "/d.txt", "hello\n")
    assert.are.same({ "a.safetensors", "b.npy", "c.safetensors", "d.txt" }, listdir(d))
    assert.are.equal("hello\n", slurp(d .. "/d.txt"))
    rmdir(d)
  end)

  it("a failed write leaves no temporary and no half file", function()
    local d = tmpdir()
    -- rename onto a directory fails after the data was written
    assert(os.execute("mkdir " .. q(d .. "/taken")))
    fails({ "safetensors.save: ", "taken", "cannot rename" }, vl.save, d .. "/taken", { x = vl.ones(10) })
    fails({ "npy.save: ", "cannot rename" }, vl.npy.save, d .. "/taken", vl.ones(10))
    assert.are.same({ "taken" }, listdir(d))
    -- a directory that does not exist
    fails({ "safetensors.save", "cannot create a temporary file" }, vl.safetensors.save, d .. "/no/x.safetensors",
      { x = vl.ones(1) })
    rmdir(d)
  end)

  it("a write that fails half way (file size limit) keeps the old file", function()
    local d = tmpdir()
    local p = d .. "/ckpt.safetensors"
    vl.save(p, { x = vl.ones(4) })
    local old = slurp(p)
    -- 16 blocks of 512 bytes at most: the 400 KB tensor cannot be written;
    -- SIGXFSZ ignored so that write(2) fails with EFBIG instead
    local script = ("local vl = require 'vl'; local ok, e = pcall(vl.save, %q, {x = vl.zeros(100000)}); "
      .. "io.write(tostring(e))"):format(p)
    local cmd = ("sh -c %s 2>&1"):format(q("trap '' XFSZ; ulimit -f 16; exec " .. q(VLUA) .. " -e " .. q(script)))
    local h = io.popen(cmd)
    local out = h:read("a")
    h:close()
    assert.matches("write failed %(File too large%)", out)
    assert.are.equal(old, slurp(p))
    assert.are.same({ "ckpt.safetensors" }, listdir(d))
    rmdir(d)
  end)
end)

describe("IDX", function()
  it("reads every element type, plain and gzipped", function()
    local DT = { u8 = "uint8", i8 = "int32", i16 = "int32", i32 = "int32", f32 = "float32", f64 = "float64" }
    for kind, want in pairs(fx.idx) do
      for _, suffix in ipairs({ ".idx", ".idx.gz" }) do
        local x = vl.read_idx(DIR .. kind .. suffix)
        assert.are.equal(DT[kind], x.dtype)
        assert.are.same(want.shape, x:size())
        assert_values(x, want.values)
      end
    end
  end)
end)

describe("helpers", function()
  it("vl.isatty, vl.fsync and vl.monotonic", function()
    local p = os.tmpname()
    local f = io.open(p, "w")
    assert.is_false(vl.isatty(f))
    f:close()
    os.remove(p)
    assert.is_boolean(vl.isatty(1))
    assert.is_false(vl.isatty(987654))
    -- fsync writes the buffered text through; a closed file is an error
    f = io.open(p, "w")
    f:write("journal line\n")
    vl.fsync(f)
    local g = io.open(p, "r")
    assert.are.equal("journal line\n", g:read("a"))
    g:close()
    f:close()
    os.remove(p)
    local ok, err = pcall(vl.fsync, f)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("fsync: the file is closed", 1, true), err)
    local a = vl.monotonic()
    local b = vl.monotonic()
    assert.is_true(b >= a)
  end)
end)

describe("bad input", function()
  local function st_fails(bytes, patterns, get)
    local p = tmpfile(bytes)
    local pats = type(patterns) == "table" and patterns or { patterns }
    table.insert(pats, 1, "^safetensors: ")
    table.insert(pats, 2, (p:gsub("%p", "%%%0")))
    if get then
      local f = vl.safetensors.open(p)
      fails(pats, f.get, f, get)
      f:close()
    else
      fails(pats, vl.safetensors.open, p)
      fails(pats, vl.safetensors.load, p)
    end
    os.remove(p)
  end

  local function hdr(entries) return "{" .. table.concat(entries, ",") .. "}" end
  local function entry(name, dt, shape, b, e)
    return ('"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%s,%s]}'):format(name, dt, shape, b, e)
  end

  it("safetensors: sizes and header", function()
    st_fails("abc", "3 bytes, too small for the 8%-byte header length")
    st_fails(string.pack("<I8", 100) .. "{}", "header length 100 %(bytes 0%-7%) runs past the end of the file %(10 bytes%)")
    st_fails(string.pack("<I8", 100000001) .. "{}", "header length 100000001 .* exceeds the limit of 100000000")
    st_fails(st_bytes('{"x": '), "header is not valid JSON: error at byte")
    st_fails(st_bytes('{"x":{}} }'), "not valid JSON: trailing characters at byte 17")
    st_fails(st_bytes('[1,2]   '), "header is an array, expected a JSON object")
    st_fails(st_bytes('{"\xff":1}'), "header is not valid UTF%-8 at byte 10")
    st_fails(st_bytes('{"__metadata__":{"a":1}}'), "__metadata__ value of 'a' is a number, expected a string")
    st_fails(st_bytes('{"x":{"shape":[1],"data_offsets":[0,4]}}', f32s(1)), "tensor 'x': field 'dtype' is missing")
    st_fails(st_bytes('{"x":[1]}'), "tensor 'x' is an array, expected an object")
  end)

  it("safetensors: offsets, sizes, dtypes, shapes", function()
    -- overlapping: b starts inside a
    st_fails(st_bytes(hdr({ entry("a", "F32", "2", 0, 8), entry("b", "F32", "1", 4, 8) }), f32s(1, 2)),
      "tensor 'b' data_offsets %[4, 8%] overlap tensor 'a', which ends at 8")
    -- a gap between a and b
    st_fails(st_bytes(hdr({ entry("a", "F32", "1", 0, 4), entry("b", "F32", "1", 8, 12) }), f32s(1, 2, 3)),
      "tensor 'b' data_offsets %[8, 12%] leave a gap: bytes 4..8")
    -- end beyond the file
    st_fails(st_bytes(hdr({ entry("w", "F32", "4", 0, 16) }), f32s(1, 2)),
      "tensor 'w' data_offsets %[0, 16%] run past the end of the file: 8 bytes of data follow the header")
    -- byte size does not match dtype x shape
    st_fails(st_bytes(hdr({ entry("w", "F32", "5,6", 0, 100) }), string.rep("\0", 100)),
      "tensor 'w' data_offsets %[0, 100%] do not match dtype F32 and shape %[5,6%] %(120 bytes%)")
    -- end before begin
    st_fails(st_bytes(hdr({ entry("w", "F32", "0", 0, 0), entry("v", "F32", "1", 8, 4) }), f32s(1)),
      "tensor 'v' data_offsets %[8, 4%] end before they begin")
    -- bytes nobody claims at the end
    st_fails(st_bytes(hdr({ entry("w", "F32", "1", 0, 4) }), f32s(1, 2)),
      "the tensors cover 4 bytes of data but 8 follow the header %(4 bytes unaccounted for at byte")
    st_fails(st_bytes(hdr({ entry("w", "F33", "1", 0, 4) }), f32s(1)), "tensor 'w': unknown dtype 'F33'")
    st_fails(st_bytes(hdr({ entry("w", "F32", "-1", 0, 4) }), f32s(1)),
      "tensor 'w': shape entry 1 is %-1, expected a non%-negative integer")
    st_fails(st_bytes(hdr({ entry("w", "F32", "1.5", 0, 4) }), f32s(1)), "shape entry 1 is 1.5")
    st_fails(st_bytes(hdr({ entry("w", "F32", "1", 0, 4), entry("w", "F32", "1", 4, 8) }), f32s(1, 2)),
      "tensor 'w' appears twice")
    st_fails(st_bytes(hdr({ entry("w", "F32", "4294967296,4294967296,4294967296", 0, 4) }), f32s(1)),
      "tensor 'w': shape %[4294967296,4294967296,4294967296%] overflows")
    -- a dtype of the format that vl lacks: the file is valid, the tensor cannot be taken
    st_fails(st_bytes(hdr({ entry("h", "I16", "2", 0, 4), entry("ok", "F32", "1", 4, 8) }), f32s(0, 3)),
      "tensor 'h' has dtype I16, which vl does not support", "h")
    local p = tmpfile(st_bytes(hdr({ entry("h", "I16", "2", 0, 4), entry("ok", "F32", "1", 4, 8) }), f32s(0, 3)))
    local f = vl.safetensors.open(p)
    assert_values(f:get("ok"), { 3 })
    assert.are.equal("I16", f:dtype("h"))
    f:close()
    fails("dtype I16, which vl does not support", vl.safetensors.load, p)
    os.remove(p)
  end)

  it("safetensors: missing files and bad calls", function()
    fails("^safetensors: /nonexistent/x.safetensors: cannot open %(No such file or directory%)",
      vl.safetensors.open, "/nonexistent/x.safetensors")
    fails("safetensors: /tmp: not a regular file", vl.safetensors.open, "/tmp")
    fails("value of 'x' is a number, expected a tensor", vl.safetensors.save, os.tmpname(), { x = 1 })
    fails("'__metadata__' is reserved", vl.safetensors.save, "/tmp/never.safetensors", { __metadata__ = vl.ones(1) })
    fails("metadata must map strings to strings", vl.safetensors.save, "/tmp/never.safetensors", { x = vl.ones(1) },
      { metadata = { a = {} } })
    fails("vl.save: .*value at 'a.f' is a function", vl.save, "/tmp/never.safetensors", { a = { f = print } })
    fails("key 'a.b' contains '.'", vl.save, "/tmp/never.safetensors", { ["a.b"] = vl.ones(1), c = { vl.ones(1) } })
    local cyc = {}
    cyc.self = cyc
    fails("nested deeper than 32", vl.save, "/tmp/never.safetensors", cyc)
    assert.is_false(exists("/tmp/never.safetensors"))
  end)

  it("npy", function()
    local function npy(header, data, version)
      version = version or 1
      local pad = (64 - (10 + #header + 1) % 64) % 64
      local h = header .. string.rep(" ", pad) .. "\n"
      if version == 1 then return "\x93NUMPY\1\0" .. string.pack("<I2", #h) .. h .. (data or "") end
      return "\x93NUMPY" .. string.char(version, 0) .. string.pack("<I4", #h) .. h .. (data or "")
    end
    local function npy_fails(bytes, pattern)
      local p = tmpfile(bytes)
      fails({ "^npy: ", pattern }, vl.npy.load, p)
      os.remove(p)
    end
    npy_fails(slurp(DIR .. "object.npy"), "dtype '|O' is an object array %(pickled Python objects%); vl refuses to load pickles")
    npy_fails(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32s(1, 2, 3)),
      "data truncated: shape %[2,3%] of '<f4' needs 24 bytes from byte 128, the file holds 12")
    npy_fails("\x93NUMPX\1\0\0\0", "not an .npy file")
    npy_fails("\x93NUM", "too short for the 10%-byte npy preamble")
    npy_fails("\x93NUMPY\4\0\0\0", "format version 4.0 at byte 6 is not supported")
    npy_fails("\x93NUMPY\1\0\200\0{}", "header length 200 %(byte 8%) runs past the end of the file %(12 bytes%)")
    npy_fails("\x93NUMPY\2\0" .. string.pack("<I4", 20000) .. string.rep(" ", 20000), "header length 20000 .* exceeds the limit of 10000")
    npy_fails(npy("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }", string.rep("\0", 16)),
      "dtype '<c16' is not supported")
    npy_fails(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"), "negative size in shape at byte")
    npy_fails(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", f32s(1)),
      "unexpected key 'x'")
    npy_fails(npy("{'descr': '<f4', 'shape': (1,), }", f32s(1)), "header lacks 'fortran_order'")
    npy_fails(npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", f32s(1)),
      "structured dtypes")
    npy_fails(npy("{'descr': '<f4', 'fortran_order': maybe, 'shape': (1,), }", f32s(1)),
      "fortran_order must be True or False at byte")
    fails("^npy: /nonexistent.npy: cannot open", vl.npy.load, "/nonexistent.npy")
    -- a valid v2 header built here loads
    local p = tmpfile(npy("{'descr': '>f4', 'fortran_order': True, 'shape': (2, 2), }",
      string.pack(">f>f>f>f", 1, 2, 3, 4), 2))
    assert_values(vl.npy.load(p), { 1, 3, 2, 4 })
    os.remove(p)
  end)

  it("IDX", function()
    local function idx_fails(bytes, pattern)
      local p = tmpfile(bytes)
      fails({ "^idx: ", pattern }, vl.read_idx, p)
      os.remove(p)
    end
    idx_fails("\1\0\8\1\0\0\0\1x", "bad magic 01 00 08 01 at byte 0")
    idx_fails("\0\0\7\1\0\0\0\1x", "unknown element type 0x07 at byte 2")
    idx_fails("\0\0\8\0", "0 dims at byte 3")
    idx_fails("\0\0", "too short for the 4%-byte magic")
    idx_fails("\0\0\8\3\0\0\0\2\0\0", "truncated: the header of 3 dims needs 16 bytes")
    idx_fails("\0\0\8\2\0\0\0\2\0\0\0\3abc", "truncated: dims %[2,3%] of unsigned byte need 6 data bytes from byte 12, the file holds 3")
    idx_fails("\0\0\8\1\0\0\0\2abc", "trailing bytes after the data, which ends at byte 10")
    idx_fails("\0\0\13\1\255\255\255\255", "need 17179869180 data bytes")
    local gz = slurp(DIR .. "u8.idx.gz")
    idx_fails(gz:sub(1, #gz - 30), "truncated: dims %[3,4,5%] of unsigned byte need 60 data bytes")
    idx_fails(gz:sub(1, #gz - 4), "gzip stream ends early or is corrupt %(unexpected end of file%)")
    idx_fails(gz:sub(1, 40) .. string.char((gz:byte(41) + 1) % 256) .. gz:sub(42), "incorrect data check")
    -- a header claiming far more data than the gzip file can inflate to
    fails("need 4294967295 data bytes from byte 8, the file holds at most %d+", vl.read_idx, DIR .. "huge_claim.idx.gz")
    fails("^idx: /nonexistent.idx: cannot open %(No such file or directory%)", vl.read_idx, "/nonexistent.idx")
  end)
end)
