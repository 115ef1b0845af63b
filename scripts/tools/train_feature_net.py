#!/usr/bin/env python3
"""Trains the domain feature network for the default model: a small CNN classifier on Fashion-MNIST
whose penultimate layer (128-d, after ReLU) is the default feature space for FID/rFID on 28×28
clothing (Inception-v3 at 299×299 is slow on a CPU and a poor judge of 28×28 images).

Architecture (the engine's `FeatureNet` mirrors it; weight names are this nn.Module's):
  conv1 3×3 1→32, ReLU, conv2 3×3 32→32, ReLU, max-pool 2
  conv3 3×3 32→64, ReLU, conv4 3×3 64→64, ReLU, max-pool 2
  flatten (64·7·7), embed Linear 3136→128, ReLU   ← features
  classifier Linear 128→10
Inputs are images in model space, x/127.5 − 1 ∈ [−1, 1], as the diffusion model produces them.

Writes models/fashion-mnist-features/{config.json, model.safetensors} (float32) and the parity golden
Tests/EngineTests/Goldens/feature-net.safetensors (16 test images, their features and logits).

Data: Debian's `dataset-fashion-mnist`. Run (about 5 minutes on 2 cores):
  .venv-ref/bin/python scripts/tools/train_feature_net.py
"""
import argparse
import gzip
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

DATA = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def load(split):
    with gzip.open(os.path.join(DATA, f"{split}-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28)
    with gzip.open(os.path.join(DATA, f"{split}-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0), torch.from_numpy(y.astype(np.int64))


class FeatureNet(nn.Module):
    def __init__(self, c1=32, c2=64, embed=128, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c1, 3, padding=1)
        self.conv3 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv4 = nn.Conv2d(c2, c2, 3, padding=1)
        self.embed = nn.Linear(c2 * 7 * 7, embed)
        self.classifier = nn.Linear(embed, classes)
        self.dropout = nn.Dropout(0.3)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.max_pool2d(F.relu(self.conv4(F.relu(self.conv3(x)))), 2)
        return F.relu(self.embed(x.flatten(1)))

    def forward(self, x):
        return self.classifier(self.dropout(self.features(x)))


def feature_function(device, chunk=1000):
    """The shipped network (models/fashion-mnist-features) on `device`: images [n, 1, 28, 28] in
    [-1, 1] → their penultimate-layer features as a NumPy array [n, 128], `chunk` images at a time."""
    net = FeatureNet()
    net.load_state_dict(load_file(os.path.join(ROOT, "models", "fashion-mnist-features", "model.safetensors")))
    net = net.to(device).eval()

    @torch.no_grad()
    def features(x):
        return torch.cat([net.features(x[i:i + chunk].to(device)) for i in range(0, len(x), chunk)]).cpu().numpy()
    return features


def evaluate(model, x, y):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            correct += (model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "fashion-mnist-features"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 2)
    x_train, y_train = load("train")
    x_test, y_test = load("t10k")
    model = FeatureNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * (len(x_train) // 128))
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train))
        for i in range(0, len(x_train) - 127, 128):
            idx = perm[i:i + 128]
            xb = x_train[idx]
            flip = torch.rand(len(xb)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy {acc:.4f}, {time.time() - start:.0f} s", flush=True)
    acc = evaluate(model, x_test, y_test)
    os.makedirs(args.out, exist_ok=True)
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tmp = os.path.join(args.out, "model.safetensors.tmp")
    save_file(state, tmp)
    os.replace(tmp, os.path.join(args.out, "model.safetensors"))
    config = {"_class_name": "FashionFeatureNet", "in_channels": 1, "image_size": 28, "channels": [32, 64],
              "embed_dim": 128, "num_classes": 10, "input_range": [-1.0, 1.0],
              "test_accuracy": round(acc, 4), "epochs": args.epochs,
              "trained_by": "scripts/tools/train_feature_net.py"}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    # Parity golden: 16 test images, their features and logits.
    model.eval()
    with torch.no_grad():
        images = x_test[:16].clone()
        tensors = {"images": images, "features": model.features(images).contiguous(), "logits": model(images).contiguous()}
    save_file(tensors, os.path.join(ROOT, "Tests", "EngineTests", "Goldens", "feature-net.safetensors"))
    print(f"test accuracy {acc:.4f}; wrote {args.out}")


if __name__ == "__main__":
    main()
