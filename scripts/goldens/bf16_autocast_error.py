#!/usr/bin/env python3
"""PyTorch's own bf16 error on the UNet goldens: each golden model under torch.autocast("cpu",
dtype=torch.bfloat16) against its fp32 golden outputs, as relative L2 — the yardstick of the engine's
`--precision bf16` bound (UNetParityTests.bfloat16Tolerance); then whole DDIM loops of the default
model in bf16 autocast against fp32 from the same noise (the yardstick of UserFacingTests'
bfloat16GenerationStaysCloseToFloat32).

    .venv-ref/bin/python scripts/goldens/bf16_autocast_error.py
"""
import os

import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from safetensors.torch import load_file

GOLDENS = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "EngineTests", "Goldens")

for name, cls in [("cifar-layout", UNet2DModel), ("sd15-layout", UNet2DConditionModel), ("sd2-layout", UNet2DConditionModel)]:
    d = os.path.join(GOLDENS, name)
    sub = "unet" if os.path.isdir(os.path.join(d, "unet")) else None
    fp16 = sub and os.path.exists(os.path.join(d, sub, "diffusion_pytorch_model.fp16.safetensors"))
    model = cls.from_pretrained(d, subfolder=sub, variant="fp16" if fp16 else None, torch_dtype=torch.float32).eval()
    golden = load_file(os.path.join(d, "golden.safetensors"))
    x = golden["sample"]
    kwargs = {"encoder_hidden_states": golden["encoder_hidden_states"]} if "encoder_hidden_states" in golden else {}
    for t in [1, 500, 999]:
        if f"output_t{t}" not in golden:
            continue
        ref = golden[f"output_t{t}"]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, torch.full((x.shape[0],), t), **kwargs).sample.float()
        print(f"{name} t={t}: PyTorch bf16 autocast, relative L2 {((out - ref).norm() / ref.norm()).item():.2e}")

# Whole sampling loops amplify the rounding: the default model (models/fashion-mnist) under DDIM from
# the same noise (16 images, seed 3), bf16 autocast against fp32, after 1, 5 and 50 steps.
from diffusers import DDIMScheduler  # noqa: E402

DEFAULT = os.path.join(os.path.dirname(__file__), "..", "..", "models", "fashion-mnist")
unet = UNet2DModel.from_pretrained(DEFAULT, subfolder="unet").eval()
scheduler = DDIMScheduler.from_pretrained(DEFAULT, subfolder="scheduler")
noise = torch.randn(16, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size,
                    generator=torch.Generator().manual_seed(3))


def sample(steps, bf16):
    scheduler.set_timesteps(steps)
    x = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                eps = unet(x, t).sample.float()
            x = scheduler.step(eps, t, x).prev_sample
    return x


for steps in [1, 5, 50]:
    a, b = sample(steps, False), sample(steps, True)
    print(f"default model, DDIM {steps} steps: bf16 autocast against fp32, relative L2 {((a - b).norm() / a.norm()).item():.4f}, "
          f"largest difference {(a - b).abs().max().item():.3f}")
