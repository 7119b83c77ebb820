#!/usr/bin/python3
"""The NumPy side of scripts/bench/reduce.lua: the same reductions, timed the
same way (one warm-up run, then the best of at least 3 runs lasting at least
0.4 s). Run with Debian's /usr/bin/python3 (python3-numpy), OMP_NUM_THREADS
and OPENBLAS_NUM_THREADS set by the caller to vlua's thread count.

  reduce_peer.py        -> one line "reduce NAME MS" per case
"""
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


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def main():
    big = rand(16 * 1024 * 1024)
    sq = rand((4096, 4096))
    wide = rand((4096, 1024))
    cases = (
        # names and calls as in reduce.lua's CASES
        ("sum_dim1_4096x4096", lambda: sq.sum(axis=0)),
        ("sum_dim2_4096x4096", lambda: sq.sum(axis=1)),
        ("sum_all_16M", lambda: big.sum()),
        ("max_all_16M", lambda: big.max()),
        ("amax_dim1_4096x4096", lambda: sq.max(axis=0)),
        ("argmax_dim2_4096x1024", lambda: wide.argmax(axis=1)),
        ("argmax_dim1_4096x1024", lambda: wide.argmax(axis=0)),
        ("softmax_dim2_4096x1024", lambda: softmax(wide)),
    )
    for name, fn in cases:
        print("reduce %s %.4f" % (name, best_time(fn) * 1e3), flush=True)


if __name__ == "__main__":
    main()
