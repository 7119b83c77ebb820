#!/usr/bin/python3
"""PyTorch peer of scripts/bench/vit.lua: ViT-Tiny/16 (torchvision's
VisionTransformer: 224x224, patch 16, hidden 192, 12 layers, 3 heads, MLP
768, 1000 classes), float32, on a fixed random batch.

  /usr/bin/python3 scripts/bench/vit_torch.py --threads 2 --batch 8 --steps 3 --warmup 1

Prints
  infer B best_ms median_ms      (eval mode, torch.no_grad: forward only)
  train B best_ms median_ms      (zero_grad, forward, cross-entropy, backward, AdamW step)
  core torch-<version>[+torchvision|+transcription] threads N
When torchvision is absent, a transcription of its VisionTransformer (the
same layers and arithmetic) is used, and the core line says so.
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def transcription(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768,
                  num_classes=1000):
    """torchvision.models.vision_transformer.VisionTransformer, forward only the parts used here."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
            self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
            self.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(hidden_dim, mlp_dim), nn.GELU(), nn.Dropout(0.0),
                                     nn.Linear(mlp_dim, hidden_dim), nn.Dropout(0.0))

        def forward(self, x):
            y = self.ln_1(x)
            y, _ = self.self_attention(y, y, y, need_weights=False)
            x = x + y
            return x + self.mlp(self.ln_2(x))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_proj = nn.Conv2d(3, hidden_dim, patch_size, patch_size)
            seq = (image_size // patch_size) ** 2 + 1
            self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
            self.pos_embedding = nn.Parameter(torch.empty(1, seq, hidden_dim).normal_(std=0.02))
            self.layers = nn.Sequential(*[Block() for _ in range(num_layers)])
            self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)
            self.head = nn.Linear(hidden_dim, num_classes)

        def forward(self, x):
            n = x.shape[0]
            x = self.conv_proj(x).reshape(n, hidden_dim, -1).permute(0, 2, 1)
            x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1) + self.pos_embedding
            x = self.ln(self.layers(x))
            return self.head(x[:, 0])

    return ViT()


def build():
    try:
        from torchvision.models.vision_transformer import VisionTransformer
        return VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192,
                                 mlp_dim=768, num_classes=1000), "torchvision"
    except ImportError:
        return transcription(), "transcription"


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
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only", choices=["infer", "train"], default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, kind = build()
    x = torch.randn(a.batch, 3, 224, 224)
    y = torch.randint(0, 1000, (a.batch,))
    if a.only in (None, "infer"):
        model.eval()

        def infer():
            with torch.no_grad():
                model(x)

        b, m = best_median(infer, a.steps, a.warmup)
        print("infer %d %.3f %.3f" % (a.batch, b * 1e3, m * 1e3), flush=True)
    if a.only in (None, "train"):
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        b, m = best_median(step, a.steps, a.warmup)
        print("train %d %.3f %.3f" % (a.batch, b * 1e3, m * 1e3), flush=True)
    print("core torch-%s+%s threads %d" % (torch.__version__, kind, torch.get_num_threads()))


if __name__ == "__main__":
    main()
