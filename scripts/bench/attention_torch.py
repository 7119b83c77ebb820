#!/usr/bin/python3
"""PyTorch peer of scripts/bench/attention.lua: scaled dot-product attention
on float32 [B,H,L,d] (no mask, no dropout), forward and forward+backward,
through torch.nn.functional._scaled_dot_product_attention (PyTorch 1.13's
fused entry) and through the explicit softmax(q k^T / sqrt(d)) v path.

  /usr/bin/python3 scripts/bench/attention_torch.py --threads 2 --B 4 --H 8 --d 64 --L 256,1024 [--explicit-max 1024]

Timing as scripts/bench/lib/bench.lua: one warm-up, then the best of at
least 3 runs lasting at least 0.4 s. Peak RSS: the kernel's high-water mark
(VmHWM), reset (/proc/self/clear_refs) before each measurement. Prints
  sdpa L fwd_s fwdbwd_s peak_rss_fwd_mib peak_rss_fwdbwd_mib
  explicit L ...
then a last line:  core torch-<version> threads N
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F

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


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def sdpa(q, k, v):
    return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, False)[0]


def explicit(q, k, v):
    s = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.softmax(s, -1) @ v


def measure(fn, B, H, L, d):
    q, k, v = (torch.randn(B, H, L, d) for _ in range(3))
    g = torch.randn(B, H, L, d)

    def fwd():
        with torch.no_grad():
            fn(q, k, v)

    qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))

    def fb():
        qg.grad = kg.grad = vg.grad = None
        fn(qg, kg, vg).backward(g)

    reset_peak()
    tf = best_time(fwd)
    rf = peak_mib()
    reset_peak()
    tb = best_time(fb)
    rb = peak_mib()
    return tf, tb, rf, rb


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--L", default="256,1024")
    ap.add_argument("--explicit-max", type=int, default=1 << 30, help="skip the explicit path above this L")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for L in [int(x) for x in a.L.split(",")]:
        for name, fn in (("sdpa", sdpa), ("explicit", explicit)):
            if name == "explicit" and L > a.explicit_max:
                continue
            tf, tb, rf, rb = measure(fn, a.B, a.H, L, a.d)
            print("%s %d %.6f %.6f %.1f %.1f" % (name, L, tf, tb, rf, rb), flush=True)
    print("core torch-%s threads %d" % (torch.__version__, torch.get_num_threads()))


if __name__ == "__main__":
    main()
