#!/usr/bin/env python3
"""Trains the CLIP pair of Flexiffusion's shipped text-to-image model: a transformers CLIPModel (a
small ViT over 32×32 images in 4-pixel patches, a small text transformer over the captions'
vocabulary) trained contrastively on Fashion-MNIST items drawn with attributes and captioned with
them (fashion_captions.py). Its text tower is the pipeline's text encoder (as SD uses CLIP's); the
pair is the CLIP score's judge for that model.

Bounded by --minutes and resumable (checkpoints in --work-dir; run again to continue). At the end it
writes --out: the CLIP folder as transformers saves a CLIPModel and its processor (config.json,
model.safetensors, preprocessor_config.json, the tokenizer's files), and prints the zero-shot
accuracy on the 10,000 test images ("a photo of a …" for each class; the test item on the canvas as
a large, bright, centred one; and, as `flexiffusion clipscore` would read a raw 28×28 PNG, resized
to 32 by CLIP's processor).

    .venv-ref/bin/python scripts/tools/train_clip.py --minutes 25            # a CPU run (2 cores)
    python3 scripts/tools/train_clip.py --device cuda --minutes 3 --batch 1024  # on a GPU
"""
import argparse
import math
import os
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fashion_captions as fc  # noqa: E402

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def config(vocab_size, eos_id):
    from transformers import CLIPConfig
    return CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=96, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4,
                         max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=eos_id - 1, eos_token_id=eos_id,
                         pad_token_id=eos_id),
        vision_config=dict(hidden_size=96, intermediate_size=384, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=4,
                           hidden_act="quick_gelu"),
        projection_dim=96)


def pixels(batch_uint8):
    """[N, 32, 32] uint8 → CLIP-normalised [N, 3, 32, 32]."""
    x = torch.from_numpy(np.stack(batch_uint8)).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    return (x - MEAN) / STD


@torch.no_grad()
def zero_shot(model, tokenizer, device, resized=False, n=10000):
    images, labels = fc.load("t10k")
    images, labels = images[:n], labels[:n]
    text = tokenizer(fc.class_prompts(), padding=True, return_tensors="pt").to(device)
    t = model.get_text_features(**text)
    t = (t if isinstance(t, torch.Tensor) else t.pooler_output)
    t = t / t.norm(dim=-1, keepdim=True)
    correct = 0
    for s in range(0, n, 1000):
        chunk = images[s:s + 1000]
        if resized:
            from PIL import Image
            canvas = [np.asarray(Image.fromarray(im).resize((32, 32), Image.BICUBIC)) for im in chunk]
        else:
            canvas = [np.pad(im, 2) for im in chunk]
        v = model.get_image_features(pixel_values=pixels(canvas).to(device))
        v = (v if isinstance(v, torch.Tensor) else v.pooler_output)
        v = v / v.norm(dim=-1, keepdim=True)
        correct += int(((v @ t.T).argmax(-1).cpu().numpy() == labels[s:s + 1000]).sum())
    return correct / n


def export(model, tokenizer_dir, out):
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer
    tmp = out + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    model.config.architectures = ["CLIPModel"]
    model.save_pretrained(tmp)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir))
    processor.save_pretrained(tmp)
    # (The tokenizer as vocab.json and merges.txt, the files it was made as; transformers reads them too.)
    if os.path.exists(os.path.join(tmp, "tokenizer.json")):
        os.remove(os.path.join(tmp, "tokenizer.json"))
    for name in os.listdir(tokenizer_dir):
        with open(os.path.join(tokenizer_dir, name), "rb") as src, open(os.path.join(tmp, name), "wb") as dst:
            dst.write(src.read())
    if os.path.exists(out):
        import shutil
        shutil.rmtree(out)
    os.replace(tmp, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=25)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=4000, help="the schedule's length (cosine decay to 0)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--work-dir", default=os.path.expanduser("~/.cache/flexiffusion/train-clip"))
    ap.add_argument("--out", default="models/fashion-clip")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--bench", type=int, default=0, help="only time this many steps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers import CLIPModel, CLIPTokenizer
    device = torch.device(args.device)
    os.makedirs(args.work_dir, exist_ok=True)
    tok_dir = os.path.join(args.work_dir, "tokenizer")
    vocab_size = fc.write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    model = CLIPModel(config(vocab_size, tokenizer.eos_token_id)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1, betas=(0.9, 0.98))
    step, ckpt = 0, os.path.join(args.work_dir, "checkpoint.pt")
    if os.path.exists(ckpt) and not args.fresh and not args.bench:
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); step = state["step"]
        print(f"resumed at step {step}")
    images, labels = fc.load("train")
    rng = random.Random(step + 1)
    print(f"CLIP: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, vocabulary {vocab_size}; batch {args.batch} on {device}")
    start, last = time.time(), time.time()
    while step < args.steps:
        if args.bench and step >= args.bench:
            break
        if time.time() - start > args.minutes * 60:
            break
        lr = args.lr * min(1, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        batch = fc.sample_batch(images, labels, args.batch, rng)
        text = tokenizer([c for _, c, _ in batch], padding=True, return_tensors="pt").to(device)
        out = model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=pixels([im for im, _, _ in batch]).to(device),
                    return_loss=True)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        if step % 50 == 0 or args.bench:
            print(f"step {step}  loss {out.loss.item():.4f}  lr {lr:.2e}  {(time.time() - last) / (50 if not args.bench else 1):.2f} s/step", flush=True)
            last = time.time()
        if step % 500 == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    if args.bench:
        return
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt + ".tmp")
    os.replace(ckpt + ".tmp", ckpt)
    model.eval()
    print(f"step {step}: zero-shot accuracy on the test set {zero_shot(model, tokenizer, device):.4f} (on the canvas), "
          f"{zero_shot(model, tokenizer, device, resized=True):.4f} (28 px resized to 32, as the processor reads a raw PNG)")
    export(model.cpu(), tok_dir, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
