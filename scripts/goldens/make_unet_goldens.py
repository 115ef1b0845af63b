#!/usr/bin/env python3
"""Builds the UNet2DModel parity goldens under Tests/EngineTests/Goldens/.

Two random-weight diffusers UNet2DModels, every parameter redrawn (no zero or identity inits that
could hide a missing op), saved as diffusers folders, with inputs and PyTorch outputs for several
timesteps:

- cifar-layout: google/ddpm-cifar10-32's block layout (Down, AttnDown, Down, Down / Up, Up, AttnUp,
  Up; attention at the second level and in the mid block; downsample_padding 0; flip_sin_to_cos
  false; freq_shift 1; one head per attention) at reduced width, 16×16 inputs. Stored as float16
  safetensors in a bare UNet folder; the outputs are computed with the float16-rounded weights.
- multihead-mid: attention in the mid block only, 4 heads (attention_head_dim 16), its own group
  count for the attention norm, downsample_padding 1, center_input_sample, mid_block_scale_factor
  != 1, time_embedding_dim set, 2 input and 1 output channels, 12×12 inputs. Stored as float32 in a
  diffusers pipeline folder (model_index.json, unet/, scheduler/).

Run: python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.13.0 diffusers safetensors
     .venv-ref/bin/python scripts/goldens/make_unet_goldens.py
"""
import json
import math
import os
import shutil

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")
TIMESTEPS = [1, 500, 999]


def redraw(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Every parameter drawn afresh: weights ~ N(0, 1/fan_in), norm scales ~ U(0.5, 1.5), biases ~ N(0, 0.1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            else:
                fan_in = max(1, p[0].numel())
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))


def make(name, config, input_shape, seed, half_storage, pipeline):
    gen = torch.Generator().manual_seed(seed)
    model = UNet2DModel(**config)
    redraw(model, gen)
    if half_storage:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    model.eval()
    out_dir = os.path.join(ROOT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    unet_dir = os.path.join(out_dir, "unet") if pipeline else out_dir
    os.makedirs(unet_dir)
    model.save_config(unet_dir)
    state = {k: (v.half() if half_storage else v).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(unet_dir, "diffusion_pytorch_model.safetensors"))
    if pipeline:
        DDPMScheduler(num_train_timesteps=1000).save_config(os.path.join(out_dir, "scheduler"))
        with open(os.path.join(out_dir, "model_index.json"), "w") as f:
            json.dump({"_class_name": "DDPMPipeline", "_diffusers_version": "0.42.1",
                       "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}, f, indent=2)

    sample = torch.randn(input_shape, generator=gen)
    tensors = {"sample": sample}
    with torch.no_grad():
        for t in TIMESTEPS:
            tensors[f"output_t{t}"] = model(sample, t).sample.contiguous()
    save_file(tensors, os.path.join(out_dir, "golden.safetensors"))
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params} parameters, input {list(input_shape)}, timesteps {TIMESTEPS}")


def main():
    torch.manual_seed(0)
    make("cifar-layout", dict(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32, 32, 32), layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None, norm_num_groups=8, norm_eps=1e-6, downsample_padding=0,
        flip_sin_to_cos=False, freq_shift=1, time_embedding_type="positional", act_fn="silu",
    ), (2, 3, 16, 16), seed=1, half_storage=True, pipeline=False)
    make("multihead-mid", dict(
        sample_size=12, in_channels=2, out_channels=1, block_out_channels=(16, 32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=16, norm_num_groups=8, attn_norm_num_groups=4, norm_eps=1e-5, downsample_padding=1,
        flip_sin_to_cos=True, freq_shift=0, center_input_sample=True, mid_block_scale_factor=1.41421356,
        time_embedding_dim=48, add_attention=True,
    ), (2, 2, 12, 12), seed=2, half_storage=False, pipeline=True)


if __name__ == "__main__":
    main()
