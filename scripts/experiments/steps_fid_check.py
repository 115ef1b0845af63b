#!/usr/bin/env python3
"""Does the model get better with more sampler steps? FID against the Fashion-MNIST test set (domain
features of models/fashion-mnist-features, the engine's default) of diffusers' DDIM (eta 0) at several
step counts, on the same seeds — a reference check for a default model, run beside its training.

A search keeps a plan close to the 100-step teacher; that only helps against real data when the
teacher is itself nearer the data than DDIM with fewer steps.

    .venv-ref/bin/python scripts/experiments/steps_fid_check.py models/fashion-mnist --count 2000 --steps 100 40 20
"""
import argparse
import json
import os
import sys
import time

import torch
from diffusers import DDIMScheduler, UNet2DModel

for _role in ("tools", "goldens"):  # (train_default_model's loader, DeepCache's shallow path)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", _role))
from train_feature_net import feature_function  # noqa: E402
from train_default_model import load_images  # noqa: E402
from make_fid_goldens import frechet, stats  # noqa: E402  (pytorch-fid's computation)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a diffusers pipeline folder (unet/, scheduler/)")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 40, 20])
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a scheduler setting (JSON value), e.g. clip_sample=false or timestep_spacing=trailing")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value  # a bare word: a string
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    features = feature_function(device)
    real = stats(features(load_images("t10k", args.data)))
    unet = UNet2DModel.from_pretrained(os.path.join(args.model, "unet")).float().to(device).eval()
    noise = torch.randn(args.count, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))
    print(f"FID vs the test set (10,000 images, domain features), {args.count} samples, seed {args.seed}"
          + (f", scheduler {overrides}" if overrides else ""))
    for steps in args.steps:
        start = time.time()
        sched = DDIMScheduler.from_pretrained(os.path.join(args.model, "scheduler"), **overrides)
        sched.set_timesteps(steps)
        out = []
        for i in range(0, args.count, args.batch):
            x = noise[i:i + args.batch].to(device)
            for t in sched.timesteps:
                x = sched.step(unet(x, t.to(device)).sample, t, x, eta=0.0).prev_sample
            out.append(x.clamp(-1, 1))
        fid = frechet(*stats(features(torch.cat(out))), *real)
        print(f"DDIM {steps:4d} steps: FID {fid:8.2f}  ({time.time() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
