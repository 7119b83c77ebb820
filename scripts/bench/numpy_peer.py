#!/usr/bin/python3
"""The NumPy side of scripts/bench/*.lua: the same work, timed the same way.

Run with Debian's /usr/bin/python3 (python3-numpy), with OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS set to vlua's thread count by the caller:

  numpy_peer.py matmul B,M,N,K,TB,SHARED ...   -> "matmul SPEC GFLOP/s"
  numpy_peer.py elementwise N                   -> "elementwise OP GB/s" for add, mul, exp

Specs as in limits.c: TB t passes b as a transposed view (b stored [N,K]),
SHARED 1 uses one [K,N] b for the whole batch. Element-wise ops are
out of place on float32 (a fresh result each call, as vl.add does); bytes
moved: 2 reads + 1 write for add/mul, 1 + 1 for exp. Each figure is the best
of repeated runs (at least 3, for at least 0.4 s), after one warm-up run.
Also prints "core NAME threads N" for the OpenBLAS NumPy runs on.
"""
import ctypes
import sys
import time

import numpy as np

MIN_RUNS, MIN_SECONDS = 3, 0.4


def best_time(fn):
    fn()
    best, start, runs = float("inf"), time.perf_counter(), 0
    while runs < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def rand(shape):
    return np.random.default_rng(1).random(shape, dtype=np.float32) - 0.5


def matmul(spec):
    B, M, N, K, tb, shared = spec.split(",")
    B, M, N, K, shared = int(B), int(M), int(N), int(K), shared == "1"
    a = rand((M, K)) if B == 1 else rand((B, M, K))
    if shared or B == 1:
        b = rand((N, K)).T if tb == "t" else rand((K, N))
    else:
        b = rand((B, N, K)).transpose(0, 2, 1) if tb == "t" else rand((B, K, N))
    t = best_time(lambda: np.matmul(a, b))
    print("matmul %s %.2f" % (spec, 2.0 * B * M * N * K / t * 1e-9), flush=True)


def elementwise(n):
    a, b = rand(n), rand(n)
    for name, fn, nbytes in (("add", lambda: np.add(a, b), 12), ("mul", lambda: np.multiply(a, b), 12),
                             ("exp", lambda: np.exp(a), 8)):
        t = best_time(fn)
        print("elementwise %s %.2f" % (name, nbytes * n / t * 1e-9), flush=True)


def core():
    try:
        lib = ctypes.CDLL("libblas.so.3")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        print("core %s threads %d" % (lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()))
    except (OSError, AttributeError):
        print("core unknown threads 0")


def main(argv):
    if len(argv) >= 2 and argv[0] == "matmul":
        for spec in argv[1:]:
            matmul(spec)
    elif len(argv) == 2 and argv[0] == "elementwise":
        elementwise(int(argv[1]))
    else:
        sys.exit("usage: numpy_peer.py matmul SPEC... | elementwise N")
    core()


if __name__ == "__main__":
    main(sys.argv[1:])
