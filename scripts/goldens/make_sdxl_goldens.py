#!/usr/bin/env python3
"""Builds the SDXL UNet parity golden under Tests/EngineTests/Goldens/sdxl-layout.

A random-weight diffusers UNet2DConditionModel at Stable Diffusion XL base's block layout (DownBlock2D,
CrossAttnDownBlock2D ×2 / CrossAttnUpBlock2D ×2, UpBlock2D; UNetMidBlock2DCrossAttn; linear
proj_in/proj_out; per-level head counts; `transformer_layers_per_block` [1, 2, 2], SDXL's [1, 2, 10]
cut down; `addition_embed_type` "text_time" with 6 time ids) at reduced width, every parameter redrawn
(no zero or identity inits that could hide a missing op). Written as diffusers writes SDXL's folders:
`save_pretrained(..., variant="fp16")` in float16 (unet/diffusion_pytorch_model.fp16.safetensors) under
a pipeline's model_index.json; the outputs use the float16-rounded weights, run in float32.

golden.safetensors: sample [2, 4, 16, 16], encoder_hidden_states [2, 77, 56], text_embeds [2, 20] and
time_ids [2, 6] (SDXL's original size, crop top-left and target size, different per sample), and
output_t{t} = unet(sample, t, encoder_hidden_states, added_cond_kwargs={text_embeds, time_ids}) for t
in 1, 500, 999; then DeepCache's shallow path (a partial step) for every skip branch m, as
make_sd_unet_goldens.py writes it, with the added embedding in the time embedding: partial_m{m}.

Run: .venv-ref/bin/python scripts/goldens/make_sdxl_goldens.py
"""
import os
import shutil
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_deepcache_goldens  # noqa: E402  (DeepCache's shallow path, with a context)
from make_sd_unet_goldens import random_unet  # noqa: E402  (every parameter redrawn, rounded to float16)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")
TIMESTEPS = [1, 500, 999]
TEXT_EMBEDS_DIM, TIME_ID_DIM = 20, 8

# SDXL base's UNet config (stabilityai/stable-diffusion-xl-base-1.0) at reduced width: the widths
# 320/640/1280 → 16/32/32, heads 5/10/20 → 1/2/2 (head width 64 → 16), cross_attention_dim 2048 (768 +
# 1280, the two text encoders) → 56 (32 + 24: the clip-text-quick and clip-text-projection goldens, so
# that scripts/ci/test_cli_robustness.sh assembles an SDXL pipeline from them), addition_time_embed_dim
# 256 → 8, projection input 2816 (1280 + 6·256) → 68 (clip-text-projection's projection_dim 20 + 48).
CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32), layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=[1, 2, 2], cross_attention_dim=56, norm_num_groups=8, use_linear_projection=True,
    transformer_layers_per_block=[1, 2, 2], addition_embed_type="text_time", addition_time_embed_dim=TIME_ID_DIM,
    projection_class_embeddings_input_dim=TEXT_EMBEDS_DIM + 6 * TIME_ID_DIM,
)


def added_time_embedding(model, added):
    """diffusers' time embedding with the added embedding: time_embedding(time_proj(t)) + get_aug_embed."""
    def embed(m, t, batch):
        timesteps = torch.full((batch,), float(t))
        emb = m.time_embedding(m.time_proj(timesteps).to(dtype=torch.float32))
        return emb + m.get_aug_embed(emb=emb, encoder_hidden_states=None, added_cond_kwargs=added)
    return embed


def main():
    name = "sdxl-layout"
    model, gen = random_unet(CONFIG, seed=21, dtype=torch.float16)
    out_dir = os.path.join(ROOT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.to(torch.float16).save_pretrained(os.path.join(out_dir, "unet"), variant="fp16")
    model.float()
    with open(os.path.join(out_dir, "model_index.json"), "w") as f:
        f.write('{\n  "_class_name": "StableDiffusionXLPipeline",\n  "_diffusers_version": "0.42.1",\n'
                '  "unet": ["diffusers", "UNet2DConditionModel"]\n}\n')

    batch, side = 2, 16
    sample = torch.randn((batch, 4, side, side), generator=gen)
    ctx = torch.randn((batch, 77, CONFIG["cross_attention_dim"]), generator=gen)
    text_embeds = torch.randn((batch, TEXT_EMBEDS_DIM), generator=gen)
    time_ids = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0], [768.0, 512.0, 16.0, 48.0, 832.0, 1216.0]])
    added = {"text_embeds": text_embeds, "time_ids": time_ids}
    tensors = {"sample": sample, "encoder_hidden_states": ctx, "text_embeds": text_embeds, "time_ids": time_ids}
    with torch.no_grad():
        for t in TIMESTEPS:
            tensors[f"output_t{t}"] = model(sample, t, encoder_hidden_states=ctx, added_cond_kwargs=added).sample.contiguous()
        # The added embedding changes the output (the golden would not see it missing otherwise).
        plain = model.time_embedding(model.time_proj(torch.full((batch,), 500.0)))
        assert (model.get_aug_embed(emb=plain, encoder_hidden_states=None, added_cond_kwargs=added).norm() / plain.norm()) > 0.1
        make_deepcache_goldens.time_embedding = added_time_embedding(model, added)
        x_full, x_partial = torch.randn(sample.shape, generator=gen), torch.randn(sample.shape, generator=gen)
        t_full, t_partial = 600.0, 300.0
        record = {}
        out = make_deepcache_goldens.full_pass(model, x_full, t_full, record, ctx=ctx)
        ref = model(x_full, t_full, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
        assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5), (out - ref).abs().max()
        tensors.update(sample_full=x_full, t_full=torch.tensor([t_full]), sample_partial=x_partial, t_partial=torch.tensor([t_partial]))
        for m in sorted(record):
            tensors[f"partial_m{m}"] = make_deepcache_goldens.partial_pass(model, x_partial, t_partial, m, record[m], ctx=ctx).contiguous()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "golden.safetensors"))
    params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {params} parameters, {len(record)} branches, timesteps {TIMESTEPS}")


if __name__ == "__main__":
    main()
