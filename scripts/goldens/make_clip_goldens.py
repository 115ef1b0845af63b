#!/usr/bin/env python3
"""Goldens for the engine's CLIP score: a small random-weight transformers CLIPModel at ViT-L/14's
layout (patch 14, 224-pixel images, 257 positions, quick_gelu, pre- and post-LayerNorm, the legacy
`eos_token_id` 2 of openai/clip-vit-large-patch14's text config) at reduced width, saved as a CLIP
folder (config.json, model.safetensors with transformers 4's `position_ids` buffers, as the Hub's
checkpoint holds them, preprocessor_config.json), with three PNGs that exercise CLIPImageProcessor's
preprocessing (shortest side resized bicubic by PIL, centre crop, CLIP's mean and std):

  images/0-rgb-224.png   224×224 RGB (no resize)
  images/1-grey-150x100.png  150 wide, 100 high, greyscale (upscaled to 336×224, cropped)
  images/2-rgb-260x300.png   260 wide, 300 high, RGB (downscaled to 224×258, cropped)

golden.safetensors holds `input_ids` [3, 77] (float32; vocabulary of 1,000 ids: the ids, not the real
vocabulary, matter here), `pixel_values` [3, 3, 224, 224] (float16, to keep the file small: CLIPImage-
Processor's output, PIL backend, as transformers uses without torchvision), `image_embeds` and
`text_embeds` [3, 20] (get_image_features / get_text_features, unnormalised), and `scores` [3]: 100 ×
cos(image i, text i), the per-pair values torchmetrics' CLIPScore averages (and clamps at 0).

    .venv-ref/bin/python scripts/goldens/make_clip_goldens.py
"""
import os

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens", "clip-vit-l14-layout")


def random_clip(seed, text_config, vision_config, projection_dim):
    """A transformers CLIPModel with random weights of a trained model's scale: LayerNorms near
    identity, matrices of unit gain, embeddings of visible size (the class embedding's too)."""
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape))
            elif name == "logit_scale":
                continue
            elif p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape) * (0.5 if "embedding" in name and "patch" not in name else 1.2 / fan_in ** 0.5))
            else:
                p.copy_((0.5 if "class_embedding" in name else 0.1) * torch.randn(p.shape))
    model.config.architectures = ["CLIPModel"]
    return model


def main():
    model = random_clip(
        40,
        text_config=dict(vocab_size=1000, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                         max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=998, eos_token_id=2, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=224,
                           patch_size=14, hidden_act="quick_gelu"),
        projection_dim=20)
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    model.config.save_pretrained(OUT)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    state["vision_model.embeddings.position_ids"] = torch.arange(257).unsqueeze(0)
    save_file(state, os.path.join(OUT, "model.safetensors"), metadata={"format": "pt"})
    processor = CLIPImageProcessorPil()
    processor.save_pretrained(OUT)

    rng = np.random.RandomState(41)
    def smooth(h, w, c):
        # Smooth random images (a coarse field upsampled), so resampling matters as it does for photos.
        coarse = rng.rand(h // 10 + 2, w // 10 + 2, c)
        ys, xs = np.linspace(0, coarse.shape[0] - 1.01, h), np.linspace(0, coarse.shape[1] - 1.01, w)
        y0, x0 = ys.astype(int), xs.astype(int)
        fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
        v = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1][:, x0] * fy * (1 - fx)
             + coarse[y0][:, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1][:, x0 + 1] * fy * fx)
        v = v + 0.02 * rng.randn(h, w, c)
        return (np.clip(v, 0, 1) * 255).round().astype(np.uint8)
    images = [("0-rgb-224.png", smooth(224, 224, 3)), ("1-grey-150x100.png", smooth(100, 150, 1)[:, :, 0]),
              ("2-rgb-260x300.png", smooth(300, 260, 3))]
    arrays = []
    for name, a in images:
        Image.fromarray(a).save(os.path.join(OUT, "images", name))
        rgb = np.array(Image.open(os.path.join(OUT, "images", name)).convert("RGB"))
        arrays.append(rgb)
    pixel_values = processor(images=arrays, return_tensors="pt")["pixel_values"]

    g = torch.Generator().manual_seed(42)
    ids = torch.randint(3, 998, (3, 77), generator=g)
    ids[:, 0] = 998
    for row, end in enumerate([9, 30, 76]):
        ids[row, end] = 999          # the end token: the largest id (eos_token_id 2 pools at the first largest id)
        ids[row, end + 1:] = 999     # padded with the end token, as CLIP's tokenizer pads
    with torch.no_grad():
        image_embeds = model.visual_projection(model.vision_model(pixel_values=pixel_values).pooler_output)
        text_embeds = model.text_projection(model.text_model(input_ids=ids).pooler_output)
        a = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
        b = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
        scores = 100 * (a * b).sum(-1)
    golden = {"input_ids": ids.float(), "pixel_values": pixel_values.half(), "image_embeds": image_embeds,
              "text_embeds": text_embeds, "scores": scores}
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(OUT, "golden.safetensors"))
    print({k: tuple(v.shape) for k, v in golden.items()}, scores)


if __name__ == "__main__":
    main()
