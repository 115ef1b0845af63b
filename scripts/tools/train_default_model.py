#!/usr/bin/env python3
"""Trains Flexiffusion's embedded default model: a diffusers UNet2DModel on Fashion-MNIST (28×28,
one channel, [-1, 1]) with DDPM's epsilon objective, on PyTorch (CPU, or CUDA where there is one).

Data: Debian's `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/). The run is bounded by
--minutes and resumable: it checkpoints to --work-dir and continues from there when started again.
At the end it writes the EMA weights (float16) as a diffusers pipeline folder to --out, and a grid of
samples drawn with 100 DDIM steps to --grid.

    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.13.0 diffusers safetensors scipy scikit-learn
    .venv-ref/bin/python scripts/tools/train_default_model.py --minutes 100

The embedded model was trained on one GPU (a GPU session; DIR holds the Debian package's .gz files),
in two runs, the second from the first's EMA weights:
    python3 scripts/tools/train_default_model.py --device cuda --data DIR --fresh --minutes 5 \
        --batch 512 --lr 8e-4 --ema 0.9995 --out first
    python3 scripts/tools/train_default_model.py --device cuda --data DIR --fresh --minutes 5.2 \
        --batch 1024 --lr 4e-4 --ema 0.9995 --init first --out second
and a third from the second's (two variants side by side; this one kept):
    python3 scripts/tools/train_default_model.py --device cuda --tf32 --data DIR --fresh --minutes 6.3 \
        --batch 1024 --lr 4e-4 --ema 0.9998 --init second
Its scheduler does not clip x̂₀ (clip_sample false): with clipping, 100 DDIM steps scored a worse FID
than 40 (80.9 vs 76.2 on 5,000 samples); without, better (71.2 vs 73.7) — scripts/experiments/steps_fid_check.py.
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from safetensors.torch import save_file

DATA = "/usr/share/datasets/fashion-mnist"

# Three resolution levels (28, 14, 7) so that cache branches differ in cost; attention only at 7×7.
CONFIG = dict(
    sample_size=28, in_channels=1, out_channels=1, block_out_channels=(24, 48, 96), layers_per_block=1,
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    attention_head_dim=32, norm_num_groups=8, norm_eps=1e-5, downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0, act_fn="silu",
)
SCHEDULER = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                 prediction_type="epsilon", clip_sample=False)


def load_images(split="train", folder=DATA):
    with gzip.open(os.path.join(folder, f"{split}-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28)
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0)


def save_pipeline(model, out_dir):
    unet_dir = os.path.join(out_dir, "unet")
    os.makedirs(unet_dir, exist_ok=True)
    model.save_config(unet_dir)
    state = {k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()}
    tmp = os.path.join(unet_dir, "diffusion_pytorch_model.safetensors.tmp")
    save_file(state, tmp)
    os.replace(tmp, os.path.join(unet_dir, "diffusion_pytorch_model.safetensors"))
    DDIMScheduler(**SCHEDULER).save_config(os.path.join(out_dir, "scheduler"))
    with open(os.path.join(out_dir, "model_index.json"), "w") as f:
        json.dump({"_class_name": "DDIMPipeline", "_diffusers_version": "0.42.1",
                   "scheduler": ["diffusers", "DDIMScheduler"], "unet": ["diffusers", "UNet2DModel"]}, f, indent=2)


@torch.no_grad()
def sample_grid(model, path, n=64, steps=100, seed=0):
    from PIL import Image
    sched = DDIMScheduler(**SCHEDULER)
    sched.set_timesteps(steps)
    device = next(model.parameters()).device
    x = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).to(device)
    for t in sched.timesteps:
        x = sched.step(model(x, t.to(device)).sample, t, x, eta=0.0).prev_sample
    img = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()[:, 0]
    side = int(math.ceil(math.sqrt(n)))
    grid = np.zeros((side * 30, side * 30), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, side)
        grid[r * 30 + 1:r * 30 + 29, c * 30 + 1:c * 30 + 29] = img[i]
    Image.fromarray(grid).resize((side * 60, side * 60), Image.NEAREST).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=100, help="wall-clock budget for training (this run)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data", default=DATA, help="folder holding train-images-idx3-ubyte.gz")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 matrix products and convolutions on CUDA (faster; the weights stay float32)")
    ap.add_argument("--fresh", action="store_true", help="start from scratch even if --work-dir holds a checkpoint")
    ap.add_argument("--init", help="start (model and EMA) from this pipeline folder's weights, with a fresh optimiser")
    ap.add_argument("--work-dir", default=os.path.expanduser("~/.cache/flexiffusion/train-default-model"),
                    help="checkpoints (kept outside the work tree, so that a later run can resume)")
    ap.add_argument("--out", default="models/fashion-mnist")
    ap.add_argument("--grid", default="docs/pictures/fashion-mnist-samples.png")
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps and exit")
    ap.add_argument("--export-only", action="store_true", help="write --out and --grid from the checkpoint without training")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32  # float32 by default, like the engine
    torch.backends.cudnn.allow_tf32 = args.tf32

    data = load_images(folder=args.data).to(device)
    model = UNet2DModel(**CONFIG).to(device)
    ema = UNet2DModel(**CONFIG).to(device)
    if args.init:
        from safetensors.torch import load_file
        weights = load_file(os.path.join(args.init, "unet", "diffusion_pytorch_model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in weights.items()})
        print(f"initialised from {args.init}", flush=True)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = DDPMScheduler(**SCHEDULER)
    step, seconds = 0, 0.0
    os.makedirs(args.work_dir, exist_ok=True)
    ckpt = os.path.join(args.work_dir, "checkpoint.pt")
    if os.path.exists(ckpt) and not args.bench and not args.fresh:
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"]); ema.load_state_dict(state["ema"]); opt.load_state_dict(state["opt"])
        step, seconds = state["step"], state["seconds"]
        print(f"resumed at step {step} ({seconds / 60:.1f} min trained)", flush=True)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params / 1e6:.2f} M parameters, {len(data)} images, batch {args.batch}, on {device}"
          + (f" ({args.threads} threads)" if device.type == "cpu" else ""), flush=True)

    gen = torch.Generator(device=device).manual_seed(step)
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    start, last_log, last_ckpt = time.time(), time.time(), time.time()
    budget = 0 if args.export_only else args.minutes * 60
    model.train()
    while True:
        elapsed = time.time() - start
        if args.bench and step >= args.bench:
            print(f"{args.bench} steps in {elapsed:.1f} s: {args.bench * args.batch / elapsed:.0f} images/s")
            return
        if not args.bench and elapsed >= budget:
            break
        idx = torch.randint(0, len(data), (args.batch,), generator=gen, device=device)
        x0 = data[idx]
        flip = torch.rand(args.batch, 1, 1, 1, generator=gen, device=device) < 0.5
        x0 = torch.where(flip, x0.flip(3), x0)  # horizontal flips: clothing is left-right symmetric enough
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, SCHEDULER["num_train_timesteps"], (args.batch,), generator=gen, device=device)
        loss = torch.nn.functional.mse_loss(model(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:  # warm-up, then cosine decay over the whole budget
            progress = min(1.0, (seconds + elapsed) / max(1.0, budget + seconds))
            g["lr"] = args.lr * min(1.0, (step + 1) / 500) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        opt.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step) / (10 + step))
            torch._foreach_mul_(ema_params, decay)
            torch._foreach_add_(ema_params, model_params, alpha=1 - decay)
        step += 1
        if time.time() - last_log > 60:
            print(f"step {step}, loss {loss.item():.4f}, {(seconds + time.time() - start) / 60:.1f} min", flush=True)
            last_log = time.time()
        if time.time() - last_ckpt > 300:
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                        "seconds": seconds + time.time() - start}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
            last_ckpt = time.time()
    seconds += time.time() - start
    if not args.export_only:
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                "seconds": seconds}, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)
    print(f"trained {step} steps in {seconds / 60:.1f} min in total", flush=True)
    ema.eval()
    save_pipeline(ema, args.out)
    os.makedirs(os.path.dirname(args.grid), exist_ok=True)
    sample_grid(ema, args.grid)
    print(f"wrote {args.out} and {args.grid}", flush=True)


if __name__ == "__main__":
    main()
