#!/usr/bin/python3
"""PyTorch peer of scripts/bench/train_step.lua: the CNN of
scripts/train_cnn.lua (conv 1->32 + BN + pool + ReLU, conv 32->64 + BN +
pool + ReLU, linear 3136->128, ReLU, linear 128->10, dropout 0.25), float32,
one training step = zero_grad, forward, cross-entropy, backward, AdamW step.

  /usr/bin/python3 scripts/bench/train_step_torch.py --threads 2 --batches 128,64 --steps 20 --warmup 5 [--layers]

Prints, per batch size:
  step B best_ms median_ms
and with --layers, per layer (on the layer's real input, fresh each time):
  layer B index name fwd_ms fwd_bwd_ms
then a last line:  core torch-<version> threads N
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def build(c1=32, c2=64, hidden=128, p=0.25):
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Dropout(p), nn.Linear(c2 * 49, hidden), nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, 10))


def best_median(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="128,64")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--layers", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    for B in [int(b) for b in a.batches.split(",")]:
        model = build()
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
        x = torch.randn(B, 1, 28, 28)
        y = torch.randint(0, 10, (B,))

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()

        b, m = best_median(step, a.steps, a.warmup)
        print("step %d %.4f %.4f" % (B, b * 1e3, m * 1e3), flush=True)
        if a.layers:
            h = x
            for i, layer in enumerate(model):
                inp = h.detach().clone().requires_grad_(i > 0)
                with torch.no_grad():
                    out = layer(inp)
                g = torch.randn(out.shape)

                def fwd():
                    with torch.no_grad():
                        layer(inp)

                def fb():
                    for p in layer.parameters():
                        p.grad = None
                    inp.grad = None
                    layer(inp).backward(g)

                f, _ = best_median(fwd, max(5, a.steps // 2), 2)
                fbt, _ = best_median(fb, max(5, a.steps // 2), 2)
                print("layer %d %d %s %.4f %.4f" % (B, i, type(layer).__name__, f * 1e3, fbt * 1e3), flush=True)
                h = out
            logits = h.detach().clone().requires_grad_(True)

            def lossfb():
                logits.grad = None
                F.cross_entropy(logits, y).backward()

            f, _ = best_median(lambda: F.cross_entropy(logits.detach(), y), 10, 2)
            fbt, _ = best_median(lossfb, 10, 2)
            print("layer %d %d %s %.4f %.4f" % (B, len(model), "CrossEntropyLoss", f * 1e3, fbt * 1e3))
            for p in model.parameters():
                p.grad = torch.randn(p.shape)
            s, _ = best_median(opt.step, 10, 2)
            print("layer %d %d %s %.4f %.4f" % (B, len(model) + 1, "AdamW.step", s * 1e3, s * 1e3), flush=True)
    print("core torch-%s threads %d" % (torch.__version__, torch.get_num_threads()))


if __name__ == "__main__":
    main()
