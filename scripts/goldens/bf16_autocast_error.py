#!/usr/bin/env python3
"""PyTorch's own bf16 error on the UNet goldens: each golden model under torch.autocast("cpu",
dtype=torch.bfloat16) against its fp32 golden outputs, as relative L2 — the yardstick of the engine's
`--precision bf16` bound (UNetParityTests.bfloat16Tolerance).

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
