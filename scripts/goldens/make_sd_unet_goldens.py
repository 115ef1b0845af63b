#!/usr/bin/env python3
"""Builds the UNet2DConditionModel (Stable Diffusion UNet) parity goldens under Tests/EngineTests/Goldens/.

Two random-weight diffusers UNet2DConditionModels, every parameter redrawn (no zero or identity
inits that could hide a missing op), with inputs and PyTorch outputs:

- sd15-layout: Stable Diffusion 1.5's block layout (CrossAttnDown ×3, Down / Up, CrossAttnUp ×3;
  UNetMidBlock2DCrossAttn; 8 heads everywhere; 1×1-conv proj_in/proj_out; 4 latent channels) at
  reduced width (4 heads), written as a pipeline folder with `save_pretrained(..., variant="fp16")` in float16
  (unet/diffusion_pytorch_model.fp16.safetensors); the outputs use the float16-rounded weights.
- sd2-layout: Stable Diffusion 2.x's settings (linear proj_in/proj_out, per-block head counts,
  upcast_attention) with two transformer layers in the second level, layers_per_block 1,
  freq_shift 1, written with `save_pretrained` in bfloat16 as a bare UNet folder.

golden.safetensors: sample [2, 4, 16, 16], encoder_hidden_states [2, 77, D] and output_t{t} for
t in 1, 500, 999; then DeepCache's shallow path (a partial step) for every skip branch m: a full
pass at (sample_full, t_full) records the feature entering the up resnet that concatenates skip m,
and a partial pass at (sample_partial, t_partial) runs conv_in, the down layers through skip m and
the up path from that resnet fed with the recorded feature: partial_m{m}. The passes are written
out from diffusers' modules; the script first checks that its full pass reproduces
`UNet2DConditionModel.forward`.

Run: .venv-ref/bin/python scripts/goldens/make_sd_unet_goldens.py
"""
import os
import shutil
import sys

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_deepcache_goldens import full_pass, partial_pass  # noqa: E402  (DeepCache's shallow path, with a context)
from make_unet_goldens import redraw  # noqa: E402  (every parameter redrawn)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")
TIMESTEPS = [1, 500, 999]


def random_unet(config, seed, dtype):
    """A UNet2DConditionModel of `config` with every parameter redrawn from `seed` and rounded to
    `dtype` (kept in float32), in eval mode; and the generator, for the inputs drawn after it."""
    gen = torch.Generator().manual_seed(seed)
    model = UNet2DConditionModel(**config)
    redraw(model, gen)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).float())
    return model.eval(), gen


def make(name, config, seed, dtype, variant, pipeline):
    model, gen = random_unet(config, seed, dtype)
    out_dir = os.path.join(ROOT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    unet_dir = os.path.join(out_dir, "unet") if pipeline else out_dir
    model.to(dtype).save_pretrained(unet_dir, variant=variant)
    model.float()
    if pipeline:
        with open(os.path.join(out_dir, "model_index.json"), "w") as f:
            f.write('{\n  "_class_name": "StableDiffusionPipeline",\n  "_diffusers_version": "0.42.1",\n'
                    '  "unet": ["diffusers", "UNet2DConditionModel"]\n}\n')

    batch, channels, side = 2, config["in_channels"], 16
    sample = torch.randn((batch, channels, side, side), generator=gen)
    ctx = torch.randn((batch, 77, config["cross_attention_dim"]), generator=gen)
    tensors = {"sample": sample, "encoder_hidden_states": ctx}
    with torch.no_grad():
        for t in TIMESTEPS:
            tensors[f"output_t{t}"] = model(sample, t, encoder_hidden_states=ctx).sample.contiguous()
        x_full, x_partial = torch.randn(sample.shape, generator=gen), torch.randn(sample.shape, generator=gen)
        t_full, t_partial = 600.0, 300.0
        record = {}
        out = full_pass(model, x_full, t_full, record, ctx=ctx)
        ref = model(x_full, t_full, encoder_hidden_states=ctx).sample
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
        tensors.update(sample_full=x_full, t_full=torch.tensor([t_full]), sample_partial=x_partial, t_partial=torch.tensor([t_partial]))
        for m in sorted(record):
            tensors[f"partial_m{m}"] = partial_pass(model, x_partial, t_partial, m, record[m], ctx=ctx).contiguous()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "golden.safetensors"))
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params} parameters, {len(record)} branches, timesteps {TIMESTEPS}")


def main():
    make("sd15-layout", dict(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32, 32), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=4, cross_attention_dim=48, norm_num_groups=8,
    ), seed=11, dtype=torch.float16, variant="fp16", pipeline=True)
    make("sd2-layout", dict(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=[1, 2, 4, 4], cross_attention_dim=40, norm_num_groups=8, use_linear_projection=True,
        upcast_attention=True, transformer_layers_per_block=[1, 2, 1, 1], freq_shift=1, flip_sin_to_cos=False,
    ), seed=12, dtype=torch.bfloat16, variant=None, pipeline=False)


if __name__ == "__main__":
    main()
