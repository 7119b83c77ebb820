#!/usr/bin/python3
"""OpenCV twin of scripts/bench/video_flow.lua.

usage: flow_opencv.py DIR THREADS
Reads DIR/prev.npy, next.npy (uint8 [480,640]), gt.npy (float32 [480,640,2])
and points.npy (float32 [N,2]) written by video_flow.lua; with
cv2.setNumThreads(THREADS), times cv2.calcOpticalFlowFarneback (pyr_scale 0.5,
levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.1, flags 0) and
cv2.calcOpticalFlowPyrLK (win 21, maxLevel 3, 30 iterations, eps 0.01) with the
bench policy (one warm-up, then the best of >= 3 runs and >= 0.4 s), and prints
  row version <version>
  row farneback <ms> <mean EPE> <mean EPE 16 px inside>
  row lk <ms> <median point error> <tracked count>
"""
import sys
import time

import cv2
import numpy as np

d, n = sys.argv[1], int(sys.argv[2])
cv2.setNumThreads(n)
prev = np.load(d + "/prev.npy")
nxt = np.load(d + "/next.npy")
gt = np.load(d + "/gt.npy")
pts = np.load(d + "/points.npy").reshape(-1, 1, 2)
MIN_RUNS, MIN_SECONDS = 3, 0.4


def best(fn):
    fn()
    b, start, runs = float("inf"), time.perf_counter(), 0
    while runs < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS:
        t0 = time.perf_counter()
        fn()
        b = min(b, time.perf_counter() - t0)
        runs += 1
    return b


out = {}


def fb():
    out["flow"] = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.1, 0)


t = best(fb)
e = np.sqrt(((out["flow"] - gt) ** 2).sum(axis=2))
print("row", "version", cv2.__version__)
print("row", "farneback", t * 1e3, e.mean(), e[16:-16, 16:-16].mean())

crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)


def lk():
    out["lk"] = cv2.calcOpticalFlowPyrLK(prev, nxt, pts, None, winSize=(21, 21), maxLevel=3, criteria=crit)


t = best(lk)
p1, st, _ = out["lk"]
H, W = prev.shape
cx, cy = (W - 1) / 2, (H - 1) / 2
th, tx, ty = 0.01, 2.3, -1.4
q = pts.reshape(-1, 2).astype(np.float64)
ex = (q[:, 0] - cx) * np.cos(th) - (q[:, 1] - cy) * np.sin(th) + cx + tx
ey = (q[:, 0] - cx) * np.sin(th) + (q[:, 1] - cy) * np.cos(th) + cy + ty
ok = st.reshape(-1) == 1
err = np.hypot(p1.reshape(-1, 2)[:, 0] - ex, p1.reshape(-1, 2)[:, 1] - ey)[ok]
print("row", "lk", t * 1e3, float(np.median(err)) if err.size else float("nan"), int(ok.sum()))
