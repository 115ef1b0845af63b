#!/usr/bin/env python3
"""How well the shipped text-to-image model follows its prompts: the engine generates N images for
each class caption ("a photo of a pair of sneakers", …: 50 PNDM steps, guidance 7.5, no --model)
and the embedded CLIP classifies them among the ten class captions (zero-shot, as in train_clip.py);
prints the accuracy per class and overall, and the CLIP score of the images against their own
captions (`flexiffusion clipscore`).

    .venv-ref/bin/python scripts/experiments/text_to_image_check.py --per-class 20
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "tools"))
import fashion_captions as fc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--bin", default=str(REPO / ".build" / "debug" / "flexiffusion"))
    args = ap.parse_args()
    from transformers import CLIPModel, CLIPProcessor
    prompts = fc.class_prompts()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "prompts.txt"), "w") as f:
            f.write("\n".join(prompts) + "\n")
        n = len(prompts) * args.per_class
        subprocess.run([args.bin, "generate", "--prompts", os.path.join(tmp, "prompts.txt"), "--count", str(n), "--steps", str(args.steps),
                        "--out-dir", os.path.join(tmp, "images")], check=True)
        score = json.loads(subprocess.run([args.bin, "clipscore", os.path.join(tmp, "images"), "--prompts", os.path.join(tmp, "prompts.txt"),
                                           "--json"], check=True, capture_output=True, text=True).stdout)
        names = sorted(os.listdir(os.path.join(tmp, "images")))
        images = [np.array(Image.open(os.path.join(tmp, "images", x)).convert("RGB")) for x in names]
    model = CLIPModel.from_pretrained(str(REPO / "models" / "fashion-clip"), dtype=torch.float32).eval()
    processor = CLIPProcessor.from_pretrained(str(REPO / "models" / "fashion-clip"))
    with torch.no_grad():
        t = model.get_text_features(**processor(text=prompts, return_tensors="pt", padding=True))
        t = t if isinstance(t, torch.Tensor) else t.pooler_output
        v = model.get_image_features(pixel_values=processor(images=images, return_tensors="pt").pixel_values)
        v = v if isinstance(v, torch.Tensor) else v.pooler_output
    predicted = ((v / v.norm(dim=-1, keepdim=True)) @ (t / t.norm(dim=-1, keepdim=True)).T).argmax(-1).numpy()
    wanted = np.arange(len(images)) % len(prompts)
    for c, p in enumerate(prompts):
        print(f"{p:36s} {np.mean(predicted[wanted == c] == c):.2f}")
    print(f"images classified as their prompt's class by the CLIP: {np.mean(predicted == wanted):.3f} of {len(images)} "
          f"({args.steps} PNDM steps, guidance 7.5); CLIP score {score['clip_score']:.3f}")


if __name__ == "__main__":
    main()
