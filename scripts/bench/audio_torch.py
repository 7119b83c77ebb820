#!/usr/bin/python3
"""PyTorch peer of scripts/bench/audio.lua: torch.stft / torch.istft
(return_complex=True, periodic Hann window) and a mel spectrogram as
torchaudio's MelSpectrogram computes it (torch.stft, |.|^2, a mel filter
bank matmul; torchaudio itself is not installed, the filter bank is a
random [n_freqs, n_mels] matrix of the same shape: the cost is the same),
float32, signals [batch, samples].

  /usr/bin/python3 scripts/bench/audio_torch.py --threads 2 --batch 8 --samples 160000 [--quick]

Timing as scripts/bench/lib/bench.lua: one warm-up, then the best of at
least 3 runs lasting at least 0.4 s (--quick: 2 runs, 0.2 s). Prints
  op NAME seconds
then a last line:  core torch-<version> threads N
"""
import argparse
import math
import time

import torch

MIN_RUNS, MIN_SECONDS = 3, 0.4


def best_time(fn):
    fn()
    best, start, runs = math.inf, time.perf_counter(), 0
    while runs < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def main():
    global MIN_RUNS, MIN_SECONDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--samples", type=int, default=160000)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        MIN_RUNS, MIN_SECONDS = 2, 0.2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, a.samples)
    cases = [("stft512", 512, 128), ("stft400", 400, 160), ("stft2048", 2048, 512)]
    with torch.no_grad():
        for name, n, hop in cases:
            w = torch.hann_window(n)
            t = best_time(lambda: torch.stft(x, n, hop, window=w, return_complex=True))
            print("op %s %.6g" % (name, t))
        w = torch.hann_window(512)
        X = torch.stft(x, 512, 128, window=w, return_complex=True)
        t = best_time(lambda: torch.istft(X, 512, 128, window=w, length=a.samples))
        print("op istft512 %.6g" % t)
        w = torch.hann_window(400)
        fb = torch.rand(201, 128)

        def mel():
            s = torch.stft(x, 400, 200, window=w, return_complex=True).abs().pow(2.0)
            return torch.matmul(s.transpose(-1, -2), fb).transpose(-1, -2)

        print("op mel400 %.6g" % best_time(mel))
    xg = x.clone().requires_grad_(True)
    w = torch.hann_window(512)

    def fb_pass():
        y = torch.view_as_real(torch.stft(xg, 512, 128, window=w, return_complex=True))
        y.sum().backward()

    print("op stft512_fwdbwd %.6g" % best_time(fb_pass))
    print("core torch-%s threads %d" % (torch.__version__, torch.get_num_threads()))


main()
