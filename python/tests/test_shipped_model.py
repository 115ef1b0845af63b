"""The shipped text-to-image model (models/fashion-text-to-image, embedded in the binary) and its CLIP
(models/fashion-clip): `flexiffusion generate --prompt` with no --model runs that pipeline as diffusers'
StableDiffusionPipeline does (same latents, the folder's PNDM, guidance 7.5: final latents and images
within 1e-3 relative L2); `flexiffusion clipscore` with no --clip scores the engine's PNGs as
torchmetrics' CLIPScore does with the same CLIP folder (every pair within 1e-3); and the CLIP ranks the
right one of the ten "a photo of a …" captions first for at least 85 % of the Fashion-MNIST test
images (the 28×28 items resized to 32 by CLIP's processor, as a user's PNG would be read).

Needs torch, diffusers, transformers, torchmetrics and Debian's dataset-fashion-mnist (CI has them).
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_parity import BIN, REPO, relative_l2, require_binary  # noqa: E402
from test_clipscore import FeaturesAsTensors  # noqa: E402

PIPELINE, CLIP = REPO / "models" / "fashion-text-to-image", REPO / "models" / "fashion-clip"
PROMPTS = ["a pair of sneakers", "a small dim bag on the left", "a photo of a dress", "an ankle boot on a white background"]
CLASS_PROMPTS = ["a photo of a t-shirt", "a photo of a pair of trousers", "a photo of a pullover", "a photo of a dress",
                 "a photo of a coat", "a photo of a pair of sandals", "a photo of a shirt", "a photo of a pair of sneakers",
                 "a photo of a bag", "a photo of a pair of ankle boots"]


class ShippedModel(unittest.TestCase):
    def test_generate_without_a_model_matches_diffusers(self):
        from diffusers import StableDiffusionPipeline
        require_binary()
        pipe = StableDiffusionPipeline.from_pretrained(str(PIPELINE), safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        latents = torch.randn((len(PROMPTS), 4, 8, 8), generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            want = pipe(prompt=PROMPTS, latents=latents.clone(), num_inference_steps=20, guidance_scale=7.5, output_type="latent").images
            want_images = pipe.vae.decode(want / pipe.vae.config.scaling_factor).sample
        with tempfile.TemporaryDirectory() as tmp:
            save_file({"latents": latents}, os.path.join(tmp, "in.safetensors"))
            with open(os.path.join(tmp, "prompts.txt"), "w") as f:
                f.write("\n".join(PROMPTS) + "\n")
            run = subprocess.run([str(BIN), "generate", "--prompts", os.path.join(tmp, "prompts.txt"), "--latents", os.path.join(tmp, "in.safetensors"),
                                  "--steps", "20", "--output-latents", os.path.join(tmp, "out.safetensors"),
                                  "--output-tensor", os.path.join(tmp, "images.safetensors")],
                                 capture_output=True, text=True, env=dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache")))
            self.assertEqual(run.returncode, 0, run.stderr)
            got, got_images = load_file(os.path.join(tmp, "out.safetensors"))["latents"], load_file(os.path.join(tmp, "images.safetensors"))["sample"]
        e1, e2 = relative_l2(got, want), relative_l2(got_images, want_images)
        print(f"shipped pipeline: latents {e1:.2e}, images {e2:.2e}")
        self.assertLessEqual(e1, 1e-3)
        self.assertLessEqual(e2, 1e-3)

    def test_clipscore_without_a_clip_matches_torchmetrics(self):
        from PIL import Image
        from torchmetrics.functional.multimodal.clip_score import _clip_score_update
        from transformers import CLIPModel, CLIPProcessor
        require_binary()
        model = CLIPModel.from_pretrained(str(CLIP), dtype=torch.float32).eval()
        processor = CLIPProcessor.from_pretrained(str(CLIP))
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
            with open(os.path.join(tmp, "prompts.txt"), "w") as f:
                f.write("\n".join(PROMPTS) + "\n")
            run = subprocess.run([str(BIN), "generate", "--prompts", os.path.join(tmp, "prompts.txt"), "--count", "8", "--steps", "20",
                                  "--out-dir", os.path.join(tmp, "images")], capture_output=True, text=True, env=env)
            self.assertEqual(run.returncode, 0, run.stderr)
            names = sorted(os.listdir(os.path.join(tmp, "images")))
            images = [torch.from_numpy(np.array(Image.open(os.path.join(tmp, "images", n)).convert("RGB"))).permute(2, 0, 1) for n in names]
            run = subprocess.run([str(BIN), "clipscore", os.path.join(tmp, "images"), "--prompts", os.path.join(tmp, "prompts.txt"), "--json"],
                                 capture_output=True, text=True, env=env)
            self.assertEqual(run.returncode, 0, run.stderr)
        got = json.loads(run.stdout)["pair_scores"]
        with torch.no_grad():
            want, _ = _clip_score_update(images, [PROMPTS[i % len(PROMPTS)] for i in range(len(images))], FeaturesAsTensors(model), processor)
        print("shipped CLIP: engine", [round(x, 3) for x in got], "torchmetrics", [round(float(x), 3) for x in want])
        self.assertEqual(len(got), 8)
        self.assertLessEqual(max(abs(g - float(w)) for g, w in zip(got, want)), 1e-3)

    def test_clip_classifies_the_test_set(self):
        from transformers import CLIPModel, CLIPProcessor
        model = CLIPModel.from_pretrained(str(CLIP), dtype=torch.float32).eval()
        processor = CLIPProcessor.from_pretrained(str(CLIP))
        folder = "/usr/share/datasets/fashion-mnist"
        with gzip.open(os.path.join(folder, "t10k-images-idx3-ubyte.gz")) as f:
            images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(os.path.join(folder, "t10k-labels-idx1-ubyte.gz")) as f:
            labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
        with torch.no_grad():
            t = FeaturesAsTensors(model).get_text_features(**processor(text=CLASS_PROMPTS, return_tensors="pt", padding=True))
            t = t / t.norm(dim=-1, keepdim=True)
            correct = 0
            for s in range(0, len(images), 1000):
                rgb = [np.repeat(im[:, :, None], 3, axis=2) for im in images[s:s + 1000]]
                v = FeaturesAsTensors(model).get_image_features(pixel_values=processor(images=rgb, return_tensors="pt").pixel_values)
                v = v / v.norm(dim=-1, keepdim=True)
                correct += int(((v @ t.T).argmax(-1).numpy() == labels[s:s + 1000]).sum())
        accuracy = correct / len(images)
        print(f"shipped CLIP: zero-shot accuracy {accuracy:.4f} on the {len(images)} test images")
        self.assertGreaterEqual(accuracy, 0.85)


if __name__ == "__main__":
    unittest.main()
