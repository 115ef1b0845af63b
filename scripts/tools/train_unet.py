#!/usr/bin/env python3
"""Trains the UNet2DConditionModel of Flexiffusion's shipped text-to-image model and assembles the
StableDiffusionPipeline folder: latents of captioned Fashion-MNIST canvases (fashion_captions.py;
the VAE from train_vae.py), text states from the CLIP text tower (train_clip.py; last_hidden_state
over 77 tokens, as SD conditions), cross-attention at every level, classifier-free guidance dropout
(10 % of captions replaced by ""), epsilon prediction on SD 1.5's scaled-linear betas, EMA weights.

The folder (--out) is a diffusers StableDiffusionPipeline: unet/ (EMA, float16), vae/, text_encoder/
(CLIP's text tower as a CLIPTextModel), tokenizer/, scheduler/ (PNDMScheduler with SD 1.5's
config), no safety checker. --grid writes one row of samples per caption (diffusers' pipeline,
50 PNDM steps, guidance 7.5).

Bounded by --minutes and resumable (--work-dir).

    .venv-ref/bin/python scripts/tools/train_unet.py --clip models/fashion-clip --vae ~/.cache/flexiffusion/train-vae/vae --minutes 60
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_captions as fc  # noqa: E402

CONFIG = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(48, 96, 96),
              down_block_types=("CrossAttnDownBlock2D",) * 3, up_block_types=("CrossAttnUpBlock2D",) * 3,
              cross_attention_dim=96, attention_head_dim=4, norm_num_groups=16)
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False, prediction_type="epsilon",
                 timestep_spacing="leading", trained_betas=None)
GRID_PROMPTS = ["a pair of sneakers", "a photo of a dress", "a small bag on the left", "a dim coat", "a pair of trousers",
                "an ankle boot on a white background", "a small sandal at the top", "a photo of a t-shirt"]


def text_encoder_from_clip(clip_dir):
    from transformers import CLIPModel, CLIPTextModel
    clip = CLIPModel.from_pretrained(clip_dir, dtype=torch.float32)
    text = CLIPTextModel(clip.config.text_config)
    text.load_state_dict(clip.text_model.state_dict())
    return text.eval()


def build_latents(vae, copies, seed, device):
    """Latent distributions (mean, std) of `copies` renders per training item and their captions."""
    images, labels = fc.load("train")
    rng = random.Random(seed)
    means, stds, texts = [], [], []
    with torch.no_grad():
        for c in range(copies):
            for s in range(0, len(images), 1000):
                batch = [(fc.render(images[i], a := fc.draw_attributes(rng), rng), fc.caption(int(labels[i]), a, rng))
                         for i in range(s, min(len(images), s + 1000))]
                x = torch.from_numpy(np.stack([im for im, _ in batch])).float().div(127.5).sub(1).unsqueeze(1).to(device)
                d = vae.encode(x).latent_dist
                means.append(d.mean.half().cpu()); stds.append(d.std.half().cpu())
                texts += [t for _, t in batch]
            print(f"encoded copy {c + 1}/{copies}: {len(texts)} latents", flush=True)
    return torch.cat(means), torch.cat(stds), texts


def encode_captions(texts, text, tokenizer, device):
    """Index of each caption among the distinct ones (0: the empty caption) and their text states [U, 77, D]."""
    captions = {"": 0}
    ids = torch.tensor([captions.setdefault(t, len(captions)) for t in texts])
    distinct = sorted(captions, key=captions.get)
    states = []
    with torch.no_grad():
        for s in range(0, len(distinct), 256):
            tokens = tokenizer(distinct[s:s + 256], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids.to(device)
            states.append(text(tokens).last_hidden_state.half().cpu())
    return ids, torch.cat(states)


def save_pipeline(out, unet, vae_dir, text, tokenizer_dir):
    from diffusers import PNDMScheduler
    tmp = out + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    unet.save_pretrained(os.path.join(tmp, "unet"))
    from safetensors.torch import load_file, save_file
    path = os.path.join(tmp, "unet", "diffusion_pytorch_model.safetensors")
    save_file({k: v.half().contiguous() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
    shutil.copytree(vae_dir, os.path.join(tmp, "vae"))
    text.config.architectures = ["CLIPTextModel"]
    text.save_pretrained(os.path.join(tmp, "text_encoder"))
    os.makedirs(os.path.join(tmp, "tokenizer"))
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, name), os.path.join(tmp, "tokenizer", name))
    PNDMScheduler(**{k: v for k, v in SCHEDULER.items()}).save_config(os.path.join(tmp, "scheduler"))
    with open(os.path.join(tmp, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
                   "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
                   "safety_checker": [None, None], "scheduler": ["diffusers", "PNDMScheduler"],
                   "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
                   "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, f, indent=2)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)


def grid(folder, path, per_prompt=8, seed=0):
    """One row per caption of GRID_PROMPTS, from diffusers' StableDiffusionPipeline (50 PNDM steps, guidance 7.5)."""
    from diffusers import StableDiffusionPipeline
    from PIL import Image
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for i, p in enumerate(GRID_PROMPTS):
        out = pipe([p] * per_prompt, num_inference_steps=50, guidance_scale=7.5, output_type="np",
                   generator=torch.Generator().manual_seed(seed + i)).images
        rows.append(np.concatenate([np.pad((im[..., 0] * 255).round().astype(np.uint8), 1, constant_values=128) for im in out], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).resize((per_prompt * 34 * 3, len(GRID_PROMPTS) * 34 * 3), Image.NEAREST).save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default="models/fashion-clip", help="the CLIP folder (train_clip.py): its text tower encodes the captions")
    ap.add_argument("--vae", required=True, help="the vae folder (train_vae.py)")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--copies", type=int, default=2, help="renders of each training item in the latent dataset")
    ap.add_argument("--uncond", type=float, default=0.1, help="classifier-free guidance dropout")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--work-dir", default=os.path.expanduser("~/.cache/flexiffusion/train-unet"))
    ap.add_argument("--out", default="models/fashion-text-to-image")
    ap.add_argument("--grid", default="docs/pictures/fashion-text-to-image-samples.png")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--bench", type=int, default=0)
    ap.add_argument("--prepare-only", action="store_true", help="only encode the latent dataset (needs --vae, not --clip)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer
    device = torch.device(args.device)
    os.makedirs(args.work_dir, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(args.vae).to(device).eval()
    data_file = os.path.join(args.work_dir, "latents.pt")
    if os.path.exists(data_file) and not args.fresh:
        means, stds, texts = torch.load(data_file)
    else:
        means, stds, texts = build_latents(vae, args.copies, 11, device)
        torch.save((means, stds, texts), data_file)
    if args.prepare_only:
        return
    tokenizer = CLIPTokenizer.from_pretrained(args.clip)
    text = text_encoder_from_clip(args.clip).to(device)
    caption_ids, states = encode_captions(texts, text, tokenizer, device)
    scale = vae.config.scaling_factor
    unet = UNet2DConditionModel(**CONFIG).to(device)
    ema = UNet2DConditionModel(**CONFIG).to(device)
    ema.load_state_dict(unet.state_dict())
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)
    step, ckpt = 0, os.path.join(args.work_dir, "checkpoint.pt")
    if os.path.exists(ckpt) and not args.fresh and not args.bench:
        s = torch.load(ckpt, map_location=device)
        unet.load_state_dict(s["model"]); ema.load_state_dict(s["ema"]); opt.load_state_dict(s["opt"]); step = s["step"]
        print(f"resumed at step {step}")
    noise_schedule = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    alphas = noise_schedule.alphas_cumprod.to(device)
    g = torch.Generator().manual_seed(1000 + step)
    print(f"UNet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M parameters; {len(means)} latents, "
          f"{len(states)} captions; batch {args.batch} on {device}", flush=True)
    start, last = time.time(), time.time()
    while step < args.steps and time.time() - start < args.minutes * 60 and not (args.bench and step >= args.bench):
        lr = args.lr * min(1, (step + 1) / 200) * (0.5 * (1 + math.cos(math.pi * step / args.steps)) * 0.9 + 0.1)
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = torch.randint(0, len(means), (args.batch,), generator=g)
        z = (means[idx].float() + stds[idx].float() * torch.randn(args.batch, 4, 8, 8, generator=g)).to(device) * scale
        cond = caption_ids[idx].clone()
        cond[torch.rand(args.batch, generator=g) < args.uncond] = 0
        ctx = states[cond].float().to(device)
        t = torch.randint(0, 1000, (args.batch,), generator=g).to(device)
        eps = torch.randn(z.shape, generator=g).to(device)
        a = alphas[t].view(-1, 1, 1, 1)
        pred = unet(a.sqrt() * z + (1 - a).sqrt() * eps, t, encoder_hidden_states=ctx).sample
        loss = torch.nn.functional.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            d = min(args.ema, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(d).add_(p, alpha=1 - d)
        if step % 100 == 0 or args.bench:
            print(f"step {step}  loss {loss.item():.4f}  lr {lr:.2e}  {(time.time() - last) / (1 if args.bench else 100):.3f} s/step", flush=True)
            last = time.time()
        if step % 500 == 0:
            torch.save({"model": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    if args.bench:
        return
    torch.save({"model": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt + ".tmp")
    os.replace(ckpt + ".tmp", ckpt)
    save_pipeline(args.out, ema.cpu().eval(), args.vae, text.cpu(), args.clip)
    print(f"step {step}: wrote {args.out}", flush=True)
    if args.grid:
        grid(args.out, args.grid)
        print(f"wrote {args.grid}")


if __name__ == "__main__":
    main()
