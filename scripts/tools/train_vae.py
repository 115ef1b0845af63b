#!/usr/bin/env python3
"""Trains the AutoencoderKL of Flexiffusion's shipped text-to-image model: 32×32 grey Fashion-MNIST
canvases (fashion_captions.render: sizes, positions, brightness, inversion) to 4×8×8 latents (three
levels, a factor of 4), with an L1 + L2 reconstruction loss and a small KL term (1e-6, as SD's VAE;
no perceptual or adversarial loss at this size). At the end `scaling_factor` is set to 1 / the
standard deviation of the latents of 10,000 training canvases (SD's convention), the test canvases'
reconstruction error is printed, and the VAE is saved as a diffusers `vae` folder.

Bounded by --minutes and resumable (--work-dir).

    .venv-ref/bin/python scripts/tools/train_vae.py --minutes 15
"""
import argparse
import math
import os
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_captions as fc  # noqa: E402

CONFIG = dict(in_channels=1, out_channels=1, latent_channels=4, block_out_channels=(16, 32, 64),
              down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
              layers_per_block=1, norm_num_groups=8, sample_size=32, act_fn="silu")


def canvases(images, labels, n, rng):
    batch = fc.sample_batch(images, labels, n, rng)
    return torch.from_numpy(np.stack([im for im, _, _ in batch])).float().div(127.5).sub(1).unsqueeze(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--work-dir", default=os.path.expanduser("~/.cache/flexiffusion/train-vae"))
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/flexiffusion/train-vae/vae"), help="the vae folder train_unet.py reads (--vae)")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--bench", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from diffusers import AutoencoderKL
    device = torch.device(args.device)
    vae = AutoencoderKL(**CONFIG).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    os.makedirs(args.work_dir, exist_ok=True)
    step, ckpt = 0, os.path.join(args.work_dir, "checkpoint.pt")
    if os.path.exists(ckpt) and not args.fresh and not args.bench:
        s = torch.load(ckpt, map_location=device)
        vae.load_state_dict(s["model"]); opt.load_state_dict(s["opt"]); step = s["step"]
        print(f"resumed at step {step}")
    images, labels = fc.load("train")
    rng = random.Random(step + 7)
    print(f"VAE: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters; batch {args.batch} on {device}")
    start, last = time.time(), time.time()
    while step < args.steps and time.time() - start < args.minutes * 60 and not (args.bench and step >= args.bench):
        lr = args.lr * min(1, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        x = canvases(images, labels, args.batch, rng).to(device)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        rec = (recon - x).abs().mean() + ((recon - x) ** 2).mean()
        kl = posterior.kl().mean() / x[0].numel()
        loss = rec + args.kl * kl * x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0 or args.bench:
            print(f"step {step}  reconstruction {rec.item():.4f}  kl {kl.item():.3f}  lr {lr:.2e}  "
                  f"{(time.time() - last) / (1 if args.bench else 100):.3f} s/step", flush=True)
            last = time.time()
        if step % 500 == 0:
            torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    if args.bench:
        return
    torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt + ".tmp")
    os.replace(ckpt + ".tmp", ckpt)
    vae.eval()
    with torch.no_grad():
        g = random.Random(123)
        z = torch.cat([vae.encode(canvases(images, labels, 500, g).to(device)).latent_dist.sample() for _ in range(20)])
        std = z.std().item()
        test_images, test_labels = fc.load("t10k")
        x = canvases(test_images, test_labels, 1000, random.Random(5)).to(device)
        err = (vae.decode(vae.encode(x).latent_dist.mode()).sample - x).abs().mean().item()
    vae.register_to_config(scaling_factor=1 / std)
    print(f"step {step}: latent std {std:.4f} → scaling_factor {1 / std:.4f}; test reconstruction mean |error| {err:.4f} (of a [-1, 1] range)")
    tmp = args.out + ".tmp"
    vae.save_pretrained(tmp)
    if os.path.exists(args.out):
        import shutil
        shutil.rmtree(args.out)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
