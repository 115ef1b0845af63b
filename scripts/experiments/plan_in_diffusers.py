#!/usr/bin/env python3
"""A searched plan in a diffusers pipeline, measured there: wall clock of `DDIMPipeline` with the
plan applied (`flexiffusion.apply_plan`) against the plain pipeline with the 100-step DDIM teacher,
on the same seeds, and rFID (FID against the teacher's images) and FID against Fashion-MNIST's test
set with the domain features (models/fashion-mnist-features), as `flexiffusion rfid`/`fid` compute
them. Rounds alternate plain and planned runs (the machine is noisy); medians are reported.

    .venv-ref/bin/pip install ./python
    .venv-ref/bin/python scripts/experiments/plan_in_diffusers.py search.json [--model models/fashion-mnist] [--count 1024] [--batch 64]
"""
import argparse
import os
import statistics
import sys
import time

import torch
from diffusers import DDIMPipeline

import flexiffusion

for _role in ("tools", "goldens"):  # (train_default_model's loader, DeepCache's shallow path)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", _role))
from train_feature_net import feature_function  # noqa: E402
from train_default_model import load_images  # noqa: E402
from make_fid_goldens import frechet, stats  # noqa: E402


def generate(pipe, count, batch, steps, seed):
    """`count` images from the pipeline in batches, each batch's noise from its own seed; the wall clock."""
    out, start = [], time.perf_counter()
    for i in range(0, count, batch):
        g = torch.Generator().manual_seed(seed + i)
        images = pipe(batch_size=min(batch, count - i), generator=g, num_inference_steps=steps, output_type="pt").images
        out.append(images * 2 - 1)  # back to [-1, 1], as the engine's samples
    return torch.cat(out), time.perf_counter() - start


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("plan", help="a plan file or a flexiffusion search results file")
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "..", "models", "fashion-mnist"))
    ap.add_argument("--count", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    pipe = DDIMPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    plan = flexiffusion.load_plan(args.plan)
    print(f"plan: {plan}; {args.count} images, batch {args.batch}, PyTorch {torch.__version__} CPU ({os.cpu_count()} threads)")
    plain_t, planned_t = [], []
    for r in range(args.rounds):
        teacher, t = generate(pipe, args.count, args.batch, 100, args.seed)
        plain_t.append(t)
        with flexiffusion.apply_plan(pipe, plan) as handle:
            planned, t = generate(pipe, args.count, args.batch, handle.plan.sampler.steps, args.seed)
        planned_t.append(t)
        print(f"round {r + 1}: plain DDIM-100 {plain_t[-1]:.1f} s, planned {planned_t[-1]:.1f} s, "
              f"speed-up {plain_t[-1] / planned_t[-1]:.2f}x", flush=True)
    features = feature_function(torch.device("cpu"))
    ft, fp = features(teacher), features(planned)
    real = stats(features(load_images("t10k", args.data)))
    plain, ours = statistics.median(plain_t), statistics.median(planned_t)
    print(f"wall clock (median of {args.rounds}): plain {plain:.1f} s, planned {ours:.1f} s: speed-up {plain / ours:.2f}x")
    print(f"rFID (vs the teacher's images, same seeds) {frechet(*stats(fp), *stats(ft)):.4f}; "
          f"FID vs the test set: planned {frechet(*stats(fp), *real):.2f}, teacher {frechet(*stats(ft), *real):.2f}")


if __name__ == "__main__":
    main()
