#!/usr/bin/env python3
"""Goldens for class-conditional and latent UNet2DModels (the Flexiffusion paper's LDM-4 family):

- ldm-class-layout: a latent-diffusion pipeline folder as LDMPipeline saves it (model_index.json, unet/,
  vqvae/, scheduler/) with a class-conditional UNet2DModel (`num_class_embeds` 11: ten classes and the
  null class 10 that label dropout trains, 3 latent channels at 8×8), a VQModel (64 codes of width 3)
  and LDM's DDIM scheduler config; every parameter redrawn, stored in float16 (the outputs use the
  rounded weights in float32). golden.safetensors:
    - sample [2, 3, 8, 8], class_labels [2] and output_t{t} = unet(sample, t, class_labels) for t in 1, 500, 999;
    - vq_latents [2, 3, 8, 8] and vq_images = vqvae.decode(vq_latents) (quantized first, as LDMPipeline decodes);
    - noise [2, 3, 8, 8], and the LDMPipeline loop (latents = noise · init_noise_sigma; DDIM 10 steps;
      latents / scaling_factor; vqvae.decode) with classes [3, 7] under classifier-free guidance 3.0
      over the null class: guided_latents, guided_images; and unguided (classes [3, 7]): plain_latents.
- class-timestep-layout: a bare UNet2DModel folder with `class_embed_type` "timestep" (class labels
  sinusoid-embedded and passed through their own TimestepEmbedding), with sample, class_labels and
  output_t{t}.

Run: .venv-ref/bin/python scripts/goldens/make_ldm_goldens.py
"""
import json
import os
import shutil
import sys

import torch
from diffusers import DDIMScheduler, UNet2DModel, VQModel
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_unet_goldens import redraw  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")
TIMESTEPS = [1, 500, 999]


def unet_config(**extra):
    return dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
                down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                attention_head_dim=8, norm_num_groups=8, **extra)


def half(model):
    """Weights rounded to float16 (saved so; the outputs use the rounded values in float32)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())


def save_half(model, folder):
    model.half().save_pretrained(folder)
    model.float()


def forward_goldens(model, gen, tensors, labels):
    sample = torch.randn((2, model.config.in_channels, 8, 8), generator=gen)
    tensors.update(sample=sample, class_labels=labels.float())
    with torch.no_grad():
        for t in TIMESTEPS:
            tensors[f"output_t{t}"] = model(sample, t, class_labels=labels).sample.contiguous()
        plain = model(sample, 500, class_labels=torch.zeros_like(labels)).sample
        assert (plain - tensors["output_t500"]).norm() / plain.norm() > 1e-2, "the class embedding does not change the output"


def ldm():
    gen = torch.Generator().manual_seed(31)
    unet = UNet2DModel(**unet_config(num_class_embeds=11))
    redraw(unet, gen)
    vq = VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                 block_out_channels=(16, 32), layers_per_block=1, latent_channels=3, num_vq_embeddings=64, norm_num_groups=8,
                 sample_size=16, scaling_factor=0.5)
    redraw(vq, gen)
    half(unet); half(vq)
    unet.eval(); vq.eval()
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=True, steps_offset=0, num_train_timesteps=1000)
    out = os.path.join(ROOT, "ldm-class-layout")
    shutil.rmtree(out, ignore_errors=True)
    save_half(unet, os.path.join(out, "unet"))
    save_half(vq, os.path.join(out, "vqvae"))
    scheduler.save_pretrained(os.path.join(out, "scheduler"))
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump({"_class_name": "LDMPipeline", "_diffusers_version": "0.42.1", "scheduler": ["diffusers", "DDIMScheduler"],
                   "unet": ["diffusers", "UNet2DModel"], "vqvae": ["diffusers", "VQModel"]}, f, indent=2)
    tensors = {}
    forward_goldens(unet, gen, tensors, torch.tensor([4, 9]))
    with torch.no_grad():
        vq_latents = torch.randn((2, 3, 8, 8), generator=gen)
        tensors.update(vq_latents=vq_latents, vq_images=vq.decode(vq_latents).sample)
        noise = torch.randn((2, 3, 8, 8), generator=gen)
        tensors["noise"] = noise
        labels, null, scale = torch.tensor([3, 7]), 10, 3.0
        for name, guided in (("guided", True), ("plain", False)):
            scheduler.set_timesteps(10)
            latents = noise * scheduler.init_noise_sigma
            for t in scheduler.timesteps:
                x = scheduler.scale_model_input(latents, t)
                if guided:
                    both = unet(torch.cat([x, x]), t, class_labels=torch.cat([torch.full_like(labels, null), labels])).sample
                    uncond, cond = both.chunk(2)
                    eps = uncond + scale * (cond - uncond)
                else:
                    eps = unet(x, t, class_labels=labels).sample
                latents = scheduler.step(eps, t, latents, eta=0.0).prev_sample
            tensors[f"{name}_latents"] = latents
            if guided:
                tensors["guided_images"] = vq.decode(latents / vq.config.scaling_factor).sample
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "golden.safetensors"))
    print("ldm-class-layout:", sum(p.numel() for p in unet.parameters()), "UNet and", sum(p.numel() for p in vq.parameters()), "VQ parameters")


def class_timestep():
    gen = torch.Generator().manual_seed(32)
    unet = UNet2DModel(**unet_config(class_embed_type="timestep"))
    redraw(unet, gen)
    half(unet)
    unet.eval()
    out = os.path.join(ROOT, "class-timestep-layout")
    shutil.rmtree(out, ignore_errors=True)
    save_half(unet, out)
    tensors = {}
    forward_goldens(unet, gen, tensors, torch.tensor([12, 640]))
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out, "golden.safetensors"))
    print("class-timestep-layout:", sum(p.numel() for p in unet.parameters()), "parameters")


if __name__ == "__main__":
    ldm()
    class_timestep()
