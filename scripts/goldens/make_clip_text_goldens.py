#!/usr/bin/env python3
"""Goldens for the engine's CLIPTextModel: two small random-weight transformers CLIPTextModels, one
per layout Stable Diffusion uses, saved as text_encoder folders, with last_hidden_state and diffusers'
clip_skip outputs for random token ids.

  clip-text-quick: quick_gelu (SD 1.x), 3 layers, 4 heads of 8; weights saved with the `text_model.`
                   prefix, as transformers 4 saved the checkpoints on the Hub (with `position_ids`)
  clip-text-gelu:  gelu (SD 2.x), 2 layers, 5 heads of 8, as transformers 5 saves them; fp16 variant
  clip-text-projection: a CLIPTextModelWithProjection (SDXL's text_encoder_2: gelu, the legacy
                   eos_token_id 2 of its config, so the pooled token is the first largest id; pads
                   with "!"-like id 0), 3 layers, 4 heads of 6, projection_dim 20; golden also holds
                   `penultimate` (hidden_states[-2], no final LayerNorm: what SDXL conditions on),
                   `clip_skip_1_xl` (hidden_states[-3]) and `text_embeds` (the projected pooled state)

Vocabularies are 1,000 tokens (the ids, not the real vocabulary, matter here; the real one is tested
with the tokenizer). golden.safetensors holds `input_ids` [3, 77] (as float32), `last_hidden_state`
[3, 77, D] and `clip_skip_1`, `clip_skip_2`: encode_prompt's `hidden_states[-(k + 1)]` through
`final_layer_norm`.

    .venv-ref/bin/python scripts/goldens/make_clip_text_goldens.py
"""
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")


def make(name, seed, legacy, variant=None, projection=False, eos_token_id=999, **config):
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    model = cls(CLIPTextConfig(vocab_size=1000, max_position_embeddings=77, bos_token_id=998, eos_token_id=eos_token_id,
                               pad_token_id=999, **config)).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_norm" in pname:
                p.copy_((1.0 if pname.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape))
            elif p.dim() > 1:
                p.copy_(torch.randn(p.shape) * (0.5 if "embedding" in pname else 1.2 / p.shape[1] ** 0.5))
            else:
                p.copy_(0.1 * torch.randn(p.shape))
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    if projection:
        model.config.architectures = [cls.__name__]  # (as save_pretrained writes it: the class that reads the weights)
    model.config.save_pretrained(folder)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if legacy:
        state = {"text_model." + k: v for k, v in state.items()}
        state["text_model.embeddings.position_ids"] = torch.arange(77).unsqueeze(0)
    if variant:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_file(state, os.path.join(folder, f"model.{variant}.safetensors"), metadata={"format": "pt"})
        # The engine computes in float32 from the stored values: the reference does the same.
        model.load_state_dict({k: v.float() for k, v in state.items()})
    else:
        save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})

    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, 1000, (3, 77), generator=g)
    ids[:, 0] = 998
    ids[0, 10:] = 999  # a short prompt padded with the end token, as SD 1.x pads
    if projection:
        ids[1, 20] = 999  # the end token, then "!" (id 0) padding, as SDXL's tokenizer_2 pads
        ids[1, 21:] = 0
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        golden = {"input_ids": ids.float(), "last_hidden_state": out.last_hidden_state}
        if projection:
            golden.update(penultimate=out.hidden_states[-2], clip_skip_1_xl=out.hidden_states[-3], text_embeds=out.text_embeds)
        for k in (1, 2):
            text_model = model.text_model if hasattr(model, "text_model") else model
            final_norm = text_model.final_layer_norm
            golden[f"clip_skip_{k}"] = final_norm(out.hidden_states[-(k + 1)])
    save_file({k: v.contiguous() for k, v in golden.items()}, os.path.join(folder, "golden.safetensors"))
    print(name, {k: tuple(v.shape) for k, v in golden.items()})


make("clip-text-quick", 10, legacy=True, hidden_size=32, intermediate_size=37, num_hidden_layers=3,
     num_attention_heads=4, hidden_act="quick_gelu")
make("clip-text-gelu", 20, legacy=False, variant="fp16", hidden_size=40, intermediate_size=64, num_hidden_layers=2,
     num_attention_heads=5, hidden_act="gelu", layer_norm_eps=1e-6)
make("clip-text-projection", 30, legacy=False, projection=True, eos_token_id=2, hidden_size=24, intermediate_size=48,
     num_hidden_layers=3, num_attention_heads=4, hidden_act="gelu", projection_dim=20)
