#!/usr/bin/env python3
"""A tiny random-weight Stable Diffusion pipeline with the real CLIP vocabulary, saved with
diffusers' `save_pretrained` (model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/):
SD 1.5's structure and scheduler config (PNDM, skip_prk_steps, scaled_linear betas) at widths that
run in seconds on a CPU — for parity tests of the engine's text-to-image path and CI-sized searches.

The tokenizer's vocab.json and merges.txt are built from open_clip's bpe_simple_vocab_16e6.txt.gz as
Hugging Face's CLIP files are (`pip install --no-deps open_clip_torch`); nothing large is committed.

    .venv-ref/bin/python scripts/goldens/make_tiny_sd_pipeline.py OUT_DIR [--seed 0] [--sample-size 8]

`--sdxl` writes a tiny StableDiffusionXLPipeline instead (SDXL base's structure: DownBlock2D then
CrossAttn blocks, two transformer layers at the deeper level, linear projections, the text_time added
embedding; tokenizer + CLIPTextModel and tokenizer_2 (pad "!") + CLIPTextModelWithProjection (gelu,
the legacy eos_token_id 2 of SDXL's files); the VAE's scaling_factor 0.13025 and force_upcast; SDXL
base's EulerDiscreteScheduler config; force_zeros_for_empty_prompt).

`--sd15` writes Stable Diffusion 1.5's full configuration instead (UNet 860 M parameters,
scripts/tools/sd15_unet.config.json; CLIP ViT-L/14's text encoder; the 84 M-parameter VAE) with random
weights (diffusers' initialisation), in float16 as the `fp16` variant (2.1 GB): for timing the
whole pipeline at 512×512, not for images worth looking at.
"""
import argparse
import gzip
import importlib.util
import json
import os


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_vocabulary(folder):
    """vocab.json and merges.txt from open_clip's BPE file, as HF's CLIP tokenizer files are made."""
    spec = importlib.util.find_spec("open_clip")  # (not imported: it needs torchvision; the file is enough)
    if spec is None:
        raise AssertionError("open_clip_torch is not installed: pip install --no-deps open_clip_torch")
    path = os.path.join(spec.submodule_search_locations[0], "bpe_simple_vocab_16e6.txt.gz")
    merges = gzip.open(path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


def scale_weights(model, gain=1.2):
    """Random weights large enough that every layer moves the output (default inits are near zero)."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape))
            elif p.dim() > 1:
                p.copy_(torch.randn(p.shape) * (0.5 if "embedding" in name else gain / p[0].numel() ** 0.5))
            else:
                p.copy_(0.05 * torch.randn(p.shape))


def make_pipeline(out, seed=0, sample_size=8, sd15=False, vocabulary=None):
    import tempfile

    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    if sd15:
        config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "sd15_unet.config.json")
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config))
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                                    projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            latent_channels=4, norm_num_groups=32, sample_size=512)
    else:
        unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
                                    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                    attention_head_dim=(2, 4), norm_num_groups=16)
        scale_weights(unet)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=37, num_hidden_layers=3,
                                                    num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                                                    bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
        scale_weights(text_encoder)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                            latent_channels=4, norm_num_groups=8, sample_size=2 * sample_size)
        scale_weights(vae)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                              skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = vocabulary or tmp
        if vocabulary is None:
            write_clip_vocabulary(tmp)
        tokenizer = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), model_max_length=77)
    pipe = StableDiffusionPipeline(vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    if sd15:
        pipe.to(torch.float16).save_pretrained(out, variant="fp16")
    else:
        pipe.save_pretrained(out)
    return pipe


def make_sdxl_pipeline(out, seed=0, sample_size=8, vocabulary=None):
    import tempfile

    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    hidden1, hidden2, projection, time_dim = 32, 48, 40, 8
    unet = UNet2DConditionModel(sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2,
                                block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=hidden1 + hidden2,
                                attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2), use_linear_projection=True,
                                norm_num_groups=16, addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                                projection_class_embeddings_input_dim=projection + 6 * time_dim)
    scale_weights(unet)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=hidden1, intermediate_size=37, num_hidden_layers=3,
                                                num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                                                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407))
    scale_weights(text_encoder)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=49408, hidden_size=hidden2, intermediate_size=64,
                                                                num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
                                                                hidden_act="gelu", projection_dim=projection, bos_token_id=0,
                                                                eos_token_id=2, pad_token_id=1))
    scale_weights(text_encoder_2)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                        latent_channels=4, norm_num_groups=8, sample_size=2 * sample_size, scaling_factor=0.13025, force_upcast=True)
    scale_weights(vae)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                                       steps_offset=1, timestep_spacing="leading", interpolation_type="linear", use_karras_sigmas=False,
                                       prediction_type="epsilon")
    with tempfile.TemporaryDirectory() as tmp:
        folder = vocabulary or tmp
        if vocabulary is None:
            write_clip_vocabulary(tmp)
        tokenizer = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), model_max_length=77)
        tokenizer_2 = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"), model_max_length=77,
                                    pad_token="!")
    pipe = StableDiffusionXLPipeline(vae=vae.eval(), text_encoder=text_encoder.eval(), text_encoder_2=text_encoder_2.eval(),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet.eval(), scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.save_pretrained(out)
    return pipe


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="the pipeline folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-size", type=int, default=8, help="latent side (images are twice as large)")
    ap.add_argument("--sd15", action="store_true", help="Stable Diffusion 1.5's full configuration (random weights, fp16 variant)")
    ap.add_argument("--sdxl", action="store_true", help="a tiny StableDiffusionXLPipeline (two text encoders, the text_time embedding)")
    ap.add_argument("--vocabulary", help="a folder with vocab.json and merges.txt (default: built from open_clip's BPE file)")
    ap.add_argument("--write-vocabulary", metavar="DIR", help="only write vocab.json and merges.txt into DIR")
    args = ap.parse_args()
    if args.write_vocabulary:
        os.makedirs(args.write_vocabulary, exist_ok=True)
        write_clip_vocabulary(args.write_vocabulary)
    else:
        if not args.out:
            ap.error("give the pipeline folder to write")
        if args.sdxl:
            make_sdxl_pipeline(args.out, args.seed, args.sample_size, args.vocabulary)
        else:
            make_pipeline(args.out, args.seed, args.sample_size, args.sd15, args.vocabulary)
    print(f"wrote {args.write_vocabulary or args.out}")
