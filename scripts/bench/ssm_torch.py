#!/usr/bin/python3
"""PyTorch peer of scripts/bench/ssm.lua: the selective scan as a plain
loop over time in PyTorch (the state [batch, dim, state] updated step by
step, nothing of size [batch, dim, len, state] stored in the forward),
float32, input-dependent B/C [batch, state, len], D, z, delta_bias and
softplus — Mamba's configuration. Forward under no_grad; forward+backward
through autograd over the loop (its saved per-step tensors make the
backward's memory grow with len, so it runs only up to --bwd-max).

  /usr/bin/python3 scripts/bench/ssm_torch.py --threads 2 --B 2 --D 768 --N 16 --L 256,1024 [--bwd-max 2048]

Timing as scripts/bench/lib/bench.lua: one warm-up, then the best of at
least 3 runs lasting at least 0.4 s (--quick: 2 runs, 0.2 s). Prints
  loop L fwd_s fwdbwd_s        (fwdbwd_s "nan" above --bwd-max)
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


def scan_loop(u, delta, A, B, C, D, z, delta_bias):
    """selective_scan_ref's recurrence, one step at a time."""
    delta = F.softplus(delta + delta_bias[:, None])
    du = delta * u
    x = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        dt = delta[:, :, t, None]
        x = torch.exp(dt * A) * x + du[:, :, t, None] * B[:, None, :, t]
        ys.append(torch.einsum("bdn,bn->bd", x, C[:, :, t]))
    y = torch.stack(ys, dim=2) + u * D[:, None]
    return y * F.silu(z)


def main():
    global MIN_RUNS, MIN_SECONDS
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--D", type=int, default=768)
    ap.add_argument("--N", type=int, default=16)
    ap.add_argument("--L", default="256,1024")
    ap.add_argument("--bwd-max", type=int, default=2048)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        MIN_RUNS, MIN_SECONDS = 2, 0.2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for L in [int(x) for x in a.L.split(",")]:
        Bt, Dm, N = a.B, a.D, a.N
        u, z = torch.randn(Bt, Dm, L), torch.randn(Bt, Dm, L)
        delta = torch.randn(Bt, Dm, L) * 0.5
        A = -torch.rand(Dm, N) - 0.1
        B, C = torch.randn(Bt, N, L), torch.randn(Bt, N, L)
        D, bias = torch.randn(Dm), torch.randn(Dm) * 0.1
        with torch.no_grad():
            tf = best_time(lambda: scan_loop(u, delta, A, B, C, D, z, bias))
        tb = float("nan")
        if L <= a.bwd_max:
            ins = [t.clone().requires_grad_(True) for t in (u, delta, A, B, C, D, z, bias)]
            g = torch.randn(Bt, Dm, L)

            def step():
                for t in ins:
                    t.grad = None
                scan_loop(*ins).backward(g)
            tb = best_time(step)
        print("loop %d %.6g %.6g" % (L, tf, tb), flush=True)
    print("core torch-%s threads %d" % (torch.__version__, torch.get_num_threads()))


if __name__ == "__main__":
    main()
