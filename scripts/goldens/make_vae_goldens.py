#!/usr/bin/env python3
"""Goldens for the engine's AutoencoderKL: a small random-weight diffusers AutoencoderKL with Stable
Diffusion's block structure (DownEncoderBlock2D / UpDecoderBlock2D, two resnets per encoder level and
three per decoder level, a mid block with single-head attention, quant and post-quant convolutions),
saved as a `vae` folder, with `vae.decode(z).sample` for random latents and the encoder's latent
distribution (mean and clamped log-variance, `vae.encode(x).latent_dist`) for random images.

    .venv-ref/bin/python scripts/goldens/make_vae_goldens.py
"""
import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens", "vae-layout")

torch.manual_seed(30)
vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                    up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 32), layers_per_block=2,
                    latent_channels=4, norm_num_groups=8, sample_size=32, scaling_factor=0.18215).eval()
with torch.no_grad():
    for name, p in vae.named_parameters():
        if "norm" in name:
            p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape))
        elif p.dim() > 1:
            p.copy_(torch.randn(p.shape) * 1.3 / p[0].numel() ** 0.5)
        else:
            p.copy_(0.1 * torch.randn(p.shape))
os.makedirs(OUT, exist_ok=True)
vae.save_pretrained(OUT)

g = torch.Generator().manual_seed(31)
z = torch.randn(2, 4, 8, 8, generator=g)
x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
with torch.no_grad():
    decoded = vae.decode(z).sample
    dist = vae.encode(x).latent_dist
golden = {"latents": z, "decoded": decoded, "images": x, "mean": dist.mean, "logvar": dist.logvar}
save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(OUT, "golden.safetensors"))
print({k: tuple(v.shape) for k, v in golden.items()}, "decoded std", decoded.std().item(), "mean std", dist.mean.std().item())
