-- scripts/bench/audio.lua — vl.audio.stft / istft (FFTW3) and
-- melspectrogram against PyTorch 1.13 (torch.stft / torch.istft; the mel
-- spectrogram as torchaudio computes it), float32, [batch, samples].
--
--   build/vlua scripts/bench/audio.lua [--quick] [--threads N] [--batch 8] [--samples 160000] [--no-torch]
--
-- Cases: stft n_fft 512 hop 128, n_fft 400 hop 160, n_fft 2048 hop 512
-- (centre, reflect, periodic Hann), istft of the n_fft 512 spectrum,
-- melspectrogram (n_fft 400, hop 200, 128 mels), and stft 512 forward +
-- backward (sum of the output). The peer (scripts/bench/audio_torch.py
-- through /usr/bin/python3) runs with the same thread count.
local vl = require "vl"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "lib/bench.lua")
local fmt = string.format

local o = { quick = false, torch = true, batch = 8, samples = 160000 }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then
      o.quick = true
    elseif a == "--no-torch" then
      o.torch = false
    elseif a == "--threads" or a == "--batch" or a == "--samples" then
      i = i + 1
      local v = math.tointeger(tonumber(arg[i] or ""))
      if v == nil or v < 1 then error("audio: " .. a .. " needs a positive integer", 0) end
      o[a:sub(3)] = v
    else
      error(fmt("audio: unknown argument '%s' (expected --quick, --threads N, --batch N, --samples N, --no-torch)", a), 0)
    end
    i = i + 1
  end
end
if o.threads then vl.set_num_threads(o.threads) end
if o.quick then
  bench.MIN_RUNS, bench.MIN_SECONDS = 2, 0.2
  o.samples = math.min(o.samples, 48000)
end
local threads = bench.threads()
bench.header(fmt("audio spectra (float32, batch %d, %d samples): vlua (FFTW3) vs PyTorch", o.batch, o.samples), threads)

local T, core = {}, nil
if o.torch then
  local cmd = fmt("%s/usr/bin/python3 %saudio_torch.py --threads %d --batch %d --samples %d%s", bench.env(threads),
    here, threads, o.batch, o.samples, o.quick and " --quick" or "")
  local out, okc = bench.lines(cmd)
  if not okc then print("PyTorch peer: n/a (" .. (out[#out] or "failed") .. "; apt-get install python3-torch)") end
  for _, line in ipairs(out) do
    local w = {}
    for x in line:gmatch("%S+") do w[#w + 1] = x end
    if w[1] == "op" then T[w[2]] = tonumber(w[3])
    elseif w[1] == "core" then core = w[2] .. " (" .. (w[4] or "?") .. " threads)" end
  end
end
print("peer: " .. (core or "n/a"))
print()

vl.manual_seed(0)
local x = vl.randn({ o.batch, o.samples })
local A = vl.audio
local rows = {}
vl.no_grad(function()
  for _, c in ipairs({ { "stft512", 512, 128 }, { "stft400", 400, 160 }, { "stft2048", 2048, 512 } }) do
    rows[#rows + 1] = { c[1], bench.best_time(function() return A.stft(x, { n_fft = c[2], hop_length = c[3] }) end) }
  end
  local X = A.stft(x, { n_fft = 512, hop_length = 128 })
  rows[#rows + 1] = { "istft512", bench.best_time(function()
    return A.istft(X, { n_fft = 512, hop_length = 128, length = o.samples })
  end) }
  rows[#rows + 1] = { "mel400", bench.best_time(function()
    return A.melspectrogram(x, { n_fft = 400, hop_length = 200, n_mels = 128 })
  end) }
end)
local xg = x:clone()
xg:requires_grad_(true)
rows[#rows + 1] = { "stft512_fwdbwd", bench.best_time(function()
  local y = A.stft(xg, { n_fft = 512, hop_length = 128 })
  y:sum():backward()
  xg.grad = nil
end) }

local hdr = "%-16s %11s %11s %11s"
print(fmt(hdr, "case", "vlua ms", "torch ms", "torch/vlua"))
for _, r in ipairs(rows) do
  local tt = T[r[1]]
  print(fmt(hdr, r[1], fmt("%.2f", r[2] * 1e3), tt and fmt("%.2f", tt * 1e3) or "n/a", bench.ratio(tt, r[2])))
end
print()
print("torch/vlua = PyTorch seconds / vlua seconds (higher: vlua faster)")
