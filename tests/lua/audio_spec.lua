-- audio_spec.lua — vl.audio: files (libsndfile), resampling, STFT/ISTFT,
-- mel filter banks, mel spectrograms and MFCC.
-- References: tests/fixtures/audio/spectral.lua (scripts/fixtures/audio.py):
-- torch.stft / torch.istft outputs, and torchaudio's published resample,
-- melscale_fbanks, MelSpectrogram and MFCC transcribed in numpy/torch;
-- WAV files written by scipy.io.wavfile; closed forms (a resampled sine,
-- exact PCM round trips, a round trip through stft and istft); central
-- differences (vl.gradcheck, float64) for every gradient.
local vl = require "vl"

local DIR = "tests/fixtures/audio/"
local VLUA = os.getenv("VLUA_BIN") or "build/vlua"
local fx = dofile(DIR .. "spectral.lua")

local function T(values, shape, dtype)
  return vl.tensor(values, { dtype = dtype or "float64" }):view(shape)
end

local function flat(t)
  if t:dim() == 0 then return { t:item() } end
  if t:numel() == 0 then return {} end
  return t:contiguous():view(-1):totable()
end

local function max_abs(t)
  local m = 0
  for _, v in ipairs(t) do m = math.max(m, math.abs(v)) end
  return m
end

local function assert_close(got, want, atol, what)
  local g = type(got) == "table" and got or flat(got)
  assert.are.equal(#want, #g, (what or "") .. ": element count")
  for i = 1, #want do
    if not (math.abs(g[i] - want[i]) <= atol) then
      error(string.format("%s element %d: got %.17g, want %.17g (tol %g)", what or "", i, g[i], want[i], atol), 2)
    end
  end
end

local function fails(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error matching " .. pattern)
  assert.is_truthy(tostring(err):find(pattern, 1, true), "error '" .. tostring(err) .. "' does not match " .. pattern)
end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

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

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- options of a fixture case, with its window tensor (if any) in dtype
local function with_window(c, dtype)
  local o = {}
  for k, v in pairs(c.opts or {}) do o[k] = v end
  if c.window then o.window = T(c.window, { #c.window }, dtype) end
  return o
end

-- a leaf that requires grad (float64)
local function leaf(shape, seed)
  vl.manual_seed(seed or 1)
  local x = vl.randn(shape, { dtype = "float64" })
  x:requires_grad_(true)
  return x
end

local function gradcheck(fn, inputs)
  local ok, msg = vl.gradcheck(fn, inputs, { eps = 1e-6, atol = 1e-6, rtol = 1e-4 })
  assert.is_true(ok, msg)
end

-------------------------------------------------------------------------------
describe("audio.stft against torch.stft", function()
  for _, c in ipairs(fx.stft) do
    it(c.name .. " (float64 to 1e-10, float32 to 1e-5 of the largest value)", function()
      local m = max_abs(c.y)
      local y = vl.audio.stft(T(c.x, c.x_shape), with_window(c, "float64"))
      assert.are.same(c.y_shape, y:size())
      assert.are.equal("float64", y.dtype)
      assert_close(y, c.y, 1e-10 * (1 + m), c.name)
      local y32 = vl.audio.stft(T(c.x, c.x_shape, "float32"), with_window(c, "float32"))
      assert.are.equal("float32", y32.dtype)
      assert_close(y32, c.y, 1e-5 * (1 + m), c.name)
    end)
  end

  it("a strided input (a narrowed transposed tensor) gives the contiguous result", function()
    local base = vl.randn({ 80, 2 }, { dtype = "float64" })
    local x = base:transpose(1, 2):narrow(2, 2, 77)
    assert.is_false(x:is_contiguous())
    local o = { n_fft = 8, hop_length = 3 }
    assert_close(vl.audio.stft(x, o), flat(vl.audio.stft(x:contiguous(), o)), 0, "strided")
  end)

  it("every n_fft from 1 to 150 (past the 64 cached FFTW plans) agrees with vl.fft.rfft of the windowed frame", function()
    local x = vl.randn({ 150 }, { dtype = "float64" })
    for n = 1, 150 do
      local w = vl.ones({ n }, { dtype = "float64" }) * 0.5
      local y = vl.audio.stft(x, { n_fft = n, hop_length = 150, center = false, window = w })
      assert.are.same({ n // 2 + 1, 1, 2 }, y:size())
      local want = vl.fft.rfft(x:narrow(1, 1, n) * 0.5)
      assert_close(y, flat(want), 1e-9, "n_fft " .. n)
    end
  end)

  it("the same numbers on 1 thread and on several", function()
    local x = vl.randn({ 4, 3000 })
    local prev = vl.get_num_threads()
    vl.set_num_threads(1)
    local a = flat(vl.audio.stft(x, { n_fft = 256, hop_length = 64 }))
    vl.set_num_threads(2)
    local b = flat(vl.audio.stft(x, { n_fft = 256, hop_length = 64 }))
    vl.set_num_threads(prev)
    assert_close(b, a, 0, "threads")
  end)
end)

describe("audio.istft against torch.istft", function()
  for _, c in ipairs(fx.istft) do
    it(c.name .. " (float64 to 1e-10, float32 to 1e-5 of the largest value)", function()
      local m = max_abs(c.y)
      local y = vl.audio.istft(T(c.X, c.X_shape), with_window(c, "float64"))
      assert.are.same(c.y_shape, y:size())
      assert_close(y, c.y, 1e-10 * (1 + m), c.name)
      local y32 = vl.audio.istft(T(c.X, c.X_shape, "float32"), with_window(c, "float32"))
      assert_close(y32, c.y, 1e-5 * (1 + m), c.name)
    end)
  end

  it("istft(stft(x)) gives x back (centre, odd n_fft, hop not dividing, batch)", function()
    for _, o in ipairs({ { n_fft = 64 }, { n_fft = 31, hop_length = 7 }, { n_fft = 20, hop_length = 5, win_length = 14 } }) do
      local x = vl.randn({ 3, 257 }, { dtype = "float64" })
      local X = vl.audio.stft(x, o)
      local oo = { length = 257 }
      for k, v in pairs(o) do oo[k] = v end
      assert_close(vl.audio.istft(X, oo), flat(x), 1e-12, "round trip n_fft " .. o.n_fft)
    end
  end)
end)

describe("stft and istft gradients (central differences, float64)", function()
  local cases = {
    { name = "centre reflect", shape = { 2, 20 }, o = { n_fft = 8, hop_length = 3 } },
    { name = "odd n_fft, constant padding", shape = { 17 }, o = { n_fft = 7, hop_length = 2, pad_mode = "constant" } },
    { name = "no centre, two-sided, normalized", shape = { 18 },
      o = { n_fft = 6, hop_length = 4, center = false, onesided = false, normalized = true } },
    { name = "short window", shape = { 15 }, o = { n_fft = 8, hop_length = 2, win_length = 5 } },
  }
  for _, c in ipairs(cases) do
    it("stft: " .. c.name, function()
      gradcheck(function(x) return vl.audio.stft(x, c.o) end, { leaf(c.shape) })
    end)
  end
  local icases = {
    { name = "onesided, centre", shape = { 5, 6, 2 }, o = { n_fft = 8, hop_length = 2 } },
    { name = "odd n_fft, length past the frames", shape = { 2, 5, 7, 2 }, o = { n_fft = 9, hop_length = 3, length = 30 } },
    { name = "two-sided input, normalized", shape = { 8, 6, 2 }, o = { n_fft = 8, hop_length = 2, onesided = false, normalized = true } },
  }
  for _, c in ipairs(icases) do
    it("istft: " .. c.name, function()
      gradcheck(function(X) return vl.audio.istft(X, c.o) end, { leaf(c.shape, 2) })
    end)
  end
end)

describe("stft and istft errors", function()
  it("bad sizes, windows, shapes and dtypes say what was wrong", function()
    local x = vl.randn({ 100 })
    fails("option n_fft is required", vl.audio.stft, x, {})
    fails("n_fft = 300 is larger than the input length 100", vl.audio.stft, x, { n_fft = 300, center = false })
    fails("reflect padding of 100 (n_fft/2) needs more than 100 samples", vl.audio.stft, x, { n_fft = 200 })
    fails("hop_length = 0, expected >= 1", vl.audio.stft, x, { n_fft = 16, hop_length = 0 })
    fails("hop_length = -3, expected >= 1", vl.audio.istft, vl.zeros({ 9, 4, 2 }), { n_fft = 16, hop_length = -3 })
    fails("win_length = 20, expected 1..n_fft (16)", vl.audio.stft, x, { n_fft = 16, win_length = 20 })
    fails("window of shape [8], expected a 1-d tensor of win_length = 16", vl.audio.stft, x,
      { n_fft = 16, window = vl.ones({ 8 }) })
    fails("unknown window 'hamming'", vl.audio.stft, x, { n_fft = 16, window = "hamming" })
    fails("unknown pad_mode 'edge'", vl.audio.stft, x, { n_fft = 16, pad_mode = "edge" })
    fails("unknown option 'nfft'", vl.audio.stft, x, { nfft = 16 })
    fails("input is int64, expected float32 or float64", vl.audio.stft, vl.arange(0, 100), { n_fft = 16 })
    fails("input is 0-d", vl.audio.stft, vl.tensor(1.0), { n_fft = 1 })
    fails("3 frequency bins (input [3,4,2]), expected n_fft/2+1 = 9 for n_fft = 16", vl.audio.istft,
      vl.zeros({ 3, 4, 2 }), { n_fft = 16 })
    fails("expected [..., freq, frames, 2]", vl.audio.istft, vl.zeros({ 9, 4 }), { n_fft = 16 })
  end)

  it("istft refuses a window and hop that fail NOLA (Hann without centre)", function()
    local X = vl.audio.stft(vl.randn({ 64 }), { n_fft = 16, center = false })
    fails("window overlap-add is 0 at sample 1 (< 1e-11)", vl.audio.istft, X, { n_fft = 16, center = false })
    -- a hop longer than the window leaves gaps
    fails("fail the NOLA condition", vl.audio.istft, vl.zeros({ 9, 4, 2 }), { n_fft = 16, hop_length = 20, window = vl.ones({ 16 }) })
  end)

  it("NaN in, NaN out of the frames it touches only", function()
    local x = vl.zeros({ 64 }, { dtype = "float64" })
    x[40] = 0 / 0
    local X = vl.audio.stft(x, { n_fft = 8, hop_length = 8, center = false })
    local bad = {}
    for t = 1, X:size(2) do
      local v = X[1][t][1]
      bad[t] = v ~= v
    end
    assert.are.same({ false, false, false, false, true, false, false, false }, bad)
  end)
end)

-------------------------------------------------------------------------------
describe("audio.resample against torchaudio's algorithm", function()
  for _, c in ipairs(fx.resample) do
    it(c.name .. " (float64 to 1e-10, float32 to 1e-5)", function()
      local y = vl.audio.resample(T(c.x, c.x_shape), c.from, c.to, c.opts)
      assert.are.same(c.y_shape, y:size())
      assert_close(y, c.y, 1e-10, c.name)
      local y32 = vl.audio.resample(T(c.x, c.x_shape, "float32"), c.from, c.to, c.opts)
      assert.are.equal("float32", y32.dtype)
      assert_close(y32, c.y, 1e-5, c.name)
    end)
  end

  it("a 440 Hz sine keeps its frequency and amplitude (16 kHz -> 44.1 kHz and back to 8 kHz)", function()
    local n = 1600
    local x = (vl.arange(0, n, 1, { dtype = "float64" }) * (2 * math.pi * 440 / 16000)):sin()
    local up = vl.audio.resample(x, 16000, 44100)
    assert.are.same({ math.ceil(n * 441 / 160) }, up:size())
    local want = (vl.arange(0, up:size(1), 1, { dtype = "float64" }) * (2 * math.pi * 440 / 44100)):sin()
    local lo, len = 200, up:size(1) - 400
    local err = (up:narrow(1, lo, len) - want:narrow(1, lo, len)):abs():max():item()
    assert.is_true(err < 2e-3, "up: max error " .. err)
    local down = vl.audio.resample(x, 16000, 8000)
    assert.are.same({ 800 }, down:size())
    local want2 = (vl.arange(0, 800, 1, { dtype = "float64" }) * (2 * math.pi * 440 / 8000)):sin()
    err = (down:narrow(1, 100, 600) - want2:narrow(1, 100, 600)):abs():max():item()
    assert.is_true(err < 2e-3, "down: max error " .. err)
  end)

  it("a tone above the new Nyquist frequency is filtered out", function()
    local x = (vl.arange(0, 2000, 1, { dtype = "float64" }) * (2 * math.pi * 6000 / 16000)):sin()
    local y = vl.audio.resample(x, 16000, 8000)
    assert.is_true(y:narrow(1, 100, 800):abs():max():item() < 0.01)
  end)

  it("equal rates give the input back; gradients flow (central differences)", function()
    local x = vl.randn({ 10 })
    assert_close(vl.audio.resample(x, 100, 100), flat(x), 0, "same rate")
    gradcheck(function(t) return vl.audio.resample(t, 3, 2, { lowpass_filter_width = 3 }) end, { leaf({ 2, 13 }) })
  end)

  it("bad rates, options and dtypes", function()
    local x = vl.randn({ 10 })
    fails("rates 0 -> 16000, expected both > 0", vl.audio.resample, x, 0, 16000)
    fails("rates 16000 -> -1, expected both > 0", vl.audio.resample, x, 16000, -1)
    fails("argument 2 (from_rate) must be an integer number of Hz, got 44100.5", vl.audio.resample, x, 44100.5, 16000)
    fails("lowpass_filter_width 0, expected >= 1", vl.audio.resample, x, 2, 3, { lowpass_filter_width = 0 })
    fails("rolloff 0, expected 0 < rolloff <= 1", vl.audio.resample, x, 2, 3, { rolloff = 0 })
    fails("input is int64, expected float32 or float64", vl.audio.resample, vl.arange(0, 10), 2, 3)
  end)
end)

-------------------------------------------------------------------------------
describe("audio.mel_filterbank against torchaudio's melscale_fbanks", function()
  for _, c in ipairs(fx.fbank) do
    it(c.name .. " to 1e-12", function()
      local a = c.args
      local o = { norm = c.opts.norm, mel_scale = c.opts.mel_scale, dtype = "float64" }
      local y = vl.audio.mel_filterbank(a[1], a[2], a[3], a[4], a[5], o)
      assert.are.same(c.y_shape, y:size())
      assert_close(y, c.y, 1e-12, c.name)
    end)
  end
  it("bad arguments", function()
    fails("f_min 100, f_max 50, expected 0 <= f_min < f_max", vl.audio.mel_filterbank, 201, 100, 50, 40, 16000)
    fails("n_freqs = 0, n_mels = 40, expected both >= 1", vl.audio.mel_filterbank, 0, 0, 8000, 40, 16000)
    fails("unknown norm 'area'", vl.audio.mel_filterbank, 201, 0, 8000, 40, 16000, { norm = "area" })
    fails("unknown mel_scale 'bark'", vl.audio.mel_filterbank, 201, 0, 8000, 40, 16000, { mel_scale = "bark" })
  end)
end)

describe("audio.melspectrogram and audio.mfcc against torchaudio's transforms", function()
  for _, c in ipairs(fx.mel) do
    it("melspectrogram " .. c.name .. " (float64 to 1e-9, float32 to 1e-4 of the largest value)", function()
      local m = max_abs(c.y)
      local y = vl.audio.melspectrogram(T(c.x, c.x_shape), c.opts)
      assert.are.same(c.y_shape, y:size())
      assert_close(y, c.y, 1e-9 * (1 + m), c.name)
      local y32 = vl.audio.melspectrogram(T(c.x, c.x_shape, "float32"), c.opts)
      assert_close(y32, c.y, 1e-4 * (1 + m), c.name)
    end)
  end
  for _, c in ipairs(fx.mfcc) do
    it("mfcc " .. c.name .. " (float64 to 1e-8, float32 to 1e-4 of the largest value)", function()
      local m = max_abs(c.y)
      local y = vl.audio.mfcc(T(c.x, c.x_shape), c.opts)
      assert.are.same(c.y_shape, y:size())
      assert_close(y, c.y, 1e-8 * (1 + m), c.name)
      local y32 = vl.audio.mfcc(T(c.x, c.x_shape, "float32"), c.opts)
      assert_close(y32, c.y, 1e-4 * (1 + m), c.name)
    end)
  end

  it("gradients through melspectrogram and mfcc (central differences)", function()
    local mk = { sample_rate = 8000, n_fft = 16, hop_length = 4, n_mels = 5 }
    gradcheck(function(x) return vl.audio.melspectrogram(x, mk) end, { leaf({ 2, 30 }, 3) })
    gradcheck(function(x) return vl.audio.melspectrogram(x, { sample_rate = 8000, n_fft = 16, n_mels = 4, power = 1 }) end,
      { leaf({ 30 }, 4) })
    gradcheck(function(x) return vl.audio.mfcc(x, { sample_rate = 8000, n_mfcc = 4, melkwargs = mk }) end,
      { leaf({ 30 }, 5) })
    gradcheck(function(x) return vl.audio.mfcc(x, { sample_rate = 8000, n_mfcc = 3, log_mels = true, melkwargs = mk }) end,
      { leaf({ 30 }, 6) })
  end)

  it("bad options", function()
    local x = vl.randn({ 1000 })
    fails("n_mfcc = 200, expected 1..n_mels (128)", vl.audio.mfcc, x, { n_mfcc = 200 })
    fails("unknown option 'nmels'", vl.audio.melspectrogram, x, { nmels = 3 })
    fails("only dct_type = 2 is offered", vl.audio.mfcc, x, { dct_type = 3 })
    fails("power -1, expected > 0", vl.audio.melspectrogram, x, { power = -1 })
    fails("option 'melkwargs' must be a table", vl.audio.mfcc, x, { melkwargs = 3 })
  end)
end)

-------------------------------------------------------------------------------
describe("audio files", function()
  it("reads scipy's 16-bit stereo WAV: samples / 32768, exactly", function()
    local x, rate, info = vl.audio.read(DIR .. "pcm16_stereo.wav")
    local w = fx.wav_pcm16
    assert.are.equal(w.rate, rate)
    assert.are.same({ 2, #w.samples[1] }, x:size())
    assert.are.equal("float32", x.dtype)
    assert.are.same({ format = "WAV", subtype = "PCM_16", channels = 2, rate = 8000, frames = 50,
      duration = 50 / 8000 }, info)
    local want = {}
    for c = 1, 2 do for _, s in ipairs(w.samples[c]) do want[#want + 1] = s / 32768 end end
    assert_close(x, want, 0, "pcm16")
    -- a slice: start / frames are 0-based sample offsets and counts
    local part = vl.audio.read(DIR .. "pcm16_stereo.wav", { start = 10, frames = 5, dtype = "float64" })
    assert.are.same({ 2, 5 }, part:size())
    assert.are.equal("float64", part.dtype)
    assert_close(part[2], { w.samples[2][11] / 32768, w.samples[2][12] / 32768, w.samples[2][13] / 32768,
      w.samples[2][14] / 32768, w.samples[2][15] / 32768 }, 0, "slice")
    assert.are.same({ 2, 0 }, vl.audio.read(DIR .. "pcm16_stereo.wav", { start = 50 }):size())
  end)

  it("reads scipy's float32 WAV as stored (values past 1 kept)", function()
    local x, rate, info = vl.audio.read(DIR .. "float32_mono.wav")
    assert.are.equal(44100, rate)
    assert.are.equal("FLOAT", info.subtype)
    assert.are.same({ 1, #fx.wav_float32.samples }, x:size())
    local want = flat(vl.tensor(fx.wav_float32.samples, { dtype = "float32" }))
    assert_close(x, want, 0, "float32 wav")
    assert.are.same(vl.audio.info(DIR .. "float32_mono.wav"), info)
  end)

  it("round trips bit-exactly: WAV and FLAC PCM_16 (k/32768), PCM_24 (k/2^23), FLOAT (any float32)", function()
    local d = tmpdir()
    vl.manual_seed(7)
    local k16 = (vl.rand({ 2, 3000 }) * 65536 - 32768):floor() / 32768
    k16[1][1] = -1
    k16[1][2] = 32767 / 32768
    local k24 = (vl.rand({ 3, 500 }) * 2 ^ 24 - 2 ^ 23):floor():double() / 2 ^ 23
    local anyf = vl.randn({ 2, 777 }) * 3
    local cases = {
      { "a.wav", k16, nil }, { "a.flac", k16, nil }, { "b.wav", k24, "PCM_24" }, { "b.flac", k24, "PCM_24" },
      { "c.wav", anyf, "FLOAT" }, { "d.wav", k24, "PCM_32" }, { "e.wav", anyf:double(), "DOUBLE" },
    }
    for _, c in ipairs(cases) do
      local path = d .. "/" .. c[1]
      vl.audio.write(path, c[2], 48000, { subtype = c[3] })
      local y, rate, info = vl.audio.read(path, { dtype = c[2].dtype })
      assert.are.equal(48000, rate)
      assert.are.equal(c[3] or "PCM_16", info.subtype)
      assert.are.same(c[2]:size(), y:size())
      assert.are.equal(0, (y - c[2]):abs():max():item(), c[1] .. " " .. (c[3] or "PCM_16") .. " is not bit-exact")
    end
    rmdir(d)
  end)

  it("empty signals: WAV and Ogg files with 0 frames, and empty spectra", function()
    local d = tmpdir()
    vl.audio.write(d .. "/e.wav", vl.zeros({ 2, 0 }), 8000)
    local x, rate, info = vl.audio.read(d .. "/e.wav")
    assert.are.same({ 2, 0 }, x:size())
    assert.are.same({ 8000, 0 }, { rate, info.frames })
    vl.audio.write(d .. "/e.ogg", vl.zeros({ 0 }), 8000)
    assert.are.same({ 1, 0 }, vl.audio.read(d .. "/e.ogg"):size())
    rmdir(d)
    assert.are.same({ 0, 9, 26, 2 }, vl.audio.stft(vl.zeros({ 0, 100 }), { n_fft = 16 }):size())
    assert.are.same({ 0, 12 }, vl.audio.istft(vl.zeros({ 0, 9, 4, 2 }), { n_fft = 16 }):size())
    assert.are.same({ 3, 0 }, vl.audio.resample(vl.zeros({ 3, 0 }), 2, 3):size())
    assert.are.same({ 0, 128, 6 }, vl.audio.melspectrogram(vl.zeros({ 0, 1000 })):size())
    assert.are.same({ 3, 1, 2 }, vl.audio.stft(vl.zeros({ 0 }), { n_fft = 4, pad_mode = "constant" }):size())
  end)

  it("Ogg Vorbis: lossy, but a tone survives; a 1-d tensor is one channel", function()
    local d = tmpdir()
    local n = 22050
    local x = (vl.arange(0, n) * (2 * math.pi * 440 / 22050)):sin() * 0.5
    vl.audio.write(d .. "/t.ogg", x, 22050, { quality = 0.6 })
    local y, rate, info = vl.audio.read(d .. "/t.ogg")
    assert.are.same({ format = "OGG", subtype = "VORBIS", channels = 1, rate = 22050, frames = n, duration = 1.0 }, info)
    local err = (y[1]:narrow(1, 1000, 20000) - x:narrow(1, 1000, 20000)):abs():max():item()
    assert.is_true(err < 0.02, "vorbis error " .. err)
    rmdir(d)
  end)

  it("PCM saturates outside [-1, 1); NaN is refused for PCM, kept for FLOAT", function()
    local d = tmpdir()
    local x = vl.tensor({ { 1.5, -2, 1, -1, 0.25 } })
    vl.audio.write(d .. "/clip.wav", x, 8000)
    assert_close(vl.audio.read(d .. "/clip.wav"), { 32767 / 32768, -1, 32767 / 32768, -1, 0.25 }, 0, "clip")
    local nan = vl.tensor({ 0.1, 0 / 0, 0.2 })
    fails("sample 2 of channel 1 is NaN: PCM_16 cannot store NaN or infinity", vl.audio.write, d .. "/clip.wav", nan, 8000)
    fails("cannot store NaN", vl.audio.write, d .. "/n.ogg", nan, 8000)
    vl.audio.write(d .. "/nan.wav", nan, 8000, { subtype = "FLOAT" })
    local y = vl.audio.read(d .. "/nan.wav")
    local v = y[1][2]
    assert.is_true(v ~= v)
    -- the refused write left the old clip.wav and no temporary
    assert_close(vl.audio.read(d .. "/clip.wav"), { 32767 / 32768, -1, 32767 / 32768, -1, 0.25 }, 0, "kept")
    assert.are.same({ "clip.wav", "nan.wav" }, listdir(d))
    rmdir(d)
  end)

  it("a write that fails half way (file size limit) keeps the old file and leaves no temporary", function()
    local d = tmpdir()
    local p = d .. "/keep.wav"
    vl.audio.write(p, vl.zeros({ 100 }), 8000)
    local old = slurp(p)
    local script = ("local vl = require 'vl'; local ok, e = pcall(vl.audio.write, %q, vl.zeros({2, 200000}), 8000); "
      .. "io.write(tostring(e))"):format(p)
    local cmd = ("sh -c %s 2>&1"):format(q("trap '' XFSZ; ulimit -f 16; exec " .. q(VLUA) .. " -e " .. q(script)))
    local h = io.popen(cmd)
    local out = h:read("a")
    h:close()
    assert.matches("audio.write: .*keep.wav", out)
    assert.are.equal(old, slurp(p))
    assert.are.same({ "keep.wav" }, listdir(d))
    rmdir(d)
  end)

  it("errors name the file and libsndfile's reason", function()
    fails("audio.read: tests/fixtures/audio/missing.wav: cannot open as audio (libsndfile: System error",
      vl.audio.read, DIR .. "missing.wav")
    fails("audio.read: tests/fixtures/audio/not_audio.wav: cannot open as audio (libsndfile: Format not recognised",
      vl.audio.read, DIR .. "not_audio.wav")
    fails("audio.info: tests/fixtures/audio/truncated.wav: cannot open as audio (libsndfile:", vl.audio.info,
      DIR .. "truncated.wav")
    -- cut inside the samples: a WAV (libsndfile would shorten it quietly) and a FLAC
    local d0 = tmpdir()
    local f = assert(io.open(d0 .. "/cut.wav", "wb"))
    f:write(slurp(DIR .. "pcm16_stereo.wav"):sub(1, 100))
    f:close()
    fails("cut.wav: truncated: its data chunk declares 200 bytes but the file holds 56", vl.audio.read, d0 .. "/cut.wav")
    vl.audio.write(d0 .. "/full.flac", vl.rand({ 1, 8000 }) - 0.5, 8000)
    f = assert(io.open(d0 .. "/cut.flac", "wb"))
    f:write(slurp(d0 .. "/full.flac"):sub(1, 3000))
    f:close()
    fails("cut.flac: truncated or corrupt: read ", vl.audio.read, d0 .. "/cut.flac")
    rmdir(d0)
    fails("start 51 is outside the file's 50 frames", vl.audio.read, DIR .. "pcm16_stereo.wav", { start = 51 })
    fails("frames -2, expected >= 0", vl.audio.read, DIR .. "pcm16_stereo.wav", { frames = -2 })
    fails("unknown option 'offset'", vl.audio.read, DIR .. "pcm16_stereo.wav", { offset = 1 })
    local d = tmpdir()
    fails("cannot tell the format from the extension", vl.audio.write, d .. "/x.mp3", vl.zeros({ 4 }), 8000)
    fails("subtype 'FLOAT' is not written for FLAC", vl.audio.write, d .. "/x.flac", vl.zeros({ 4 }), 8000,
      { subtype = "FLOAT" })
    fails("sample rate 0, expected a positive integer", vl.audio.write, d .. "/x.wav", vl.zeros({ 4 }), 0)
    fails("samples of shape [1,2,3], expected [samples] or [channels, samples]", vl.audio.write, d .. "/x.wav",
      vl.zeros({ 1, 2, 3 }), 8000)
    fails("samples are int64, expected a float dtype", vl.audio.write, d .. "/x.wav", vl.arange(0, 4), 8000)
    fails("cannot create a temporary file next to it", vl.audio.write, d .. "/no/x.wav", vl.zeros({ 4 }), 8000)
    fails("no samples: libsndfile writes an empty FLAC", vl.audio.write, d .. "/x.flac", vl.zeros({ 1, 0 }), 8000)
    fails("quality 2, expected 0..1", vl.audio.write, d .. "/x.ogg", vl.zeros({ 4 }), 8000, { quality = 2 })
    assert.are.same({}, listdir(d))
    rmdir(d)
  end)
end)
