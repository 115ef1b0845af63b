"""`flexiffusion clipscore` against torchmetrics' CLIPScore on transformers' CLIPModel and CLIPProcessor:
a random-weight CLIP (reduced width, ViT-L/14's patches and image size) with the real CLIP vocabulary
(from open_clip's BPE file), saved as transformers saves a model and its processor; a dozen PNGs of
varied sizes, grey and RGB (resized up and down by the processor), against prompts that include one
past 77 tokens (torchmetrics cuts it). Every pair's score and the metric within 1e-3.

Needs torch, transformers, torchmetrics and `pip install --no-deps open_clip_torch` (CI installs them).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_parity import BIN, REPO, require_binary  # noqa: E402
sys.path.insert(0, str(REPO / "scripts" / "goldens"))
from make_clip_goldens import random_clip  # noqa: E402
from make_tiny_sd_pipeline import make_pipeline, write_clip_vocabulary  # noqa: E402

class FeaturesAsTensors(torch.nn.Module):
    """transformers 5's get_image_features / get_text_features return an output whose pooler_output is
    the projected embedding; torchmetrics 1.9 expects the tensor itself (as transformers 4 returned).
    This adapter gives torchmetrics what it expects, computing nothing else."""
    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        out = self.model.get_image_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_text_features(self, *args, **kwargs):
        out = self.model.get_text_features(*args, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


PROMPTS = ["a pair of sneakers", "a small bright ankle boot on the left", "A Photo of a T-shirt, in the style of Van Gogh!!!",
           "a " * 90 + "very long prompt that runs past seventy-seven tokens", "café crème 🐱 東京", "trousers"]


class CLIPScoreParity(unittest.TestCase):
    def test_matches_torchmetrics(self):
        from PIL import Image
        from torchmetrics.functional.multimodal.clip_score import _clip_score_update
        from torchmetrics.multimodal import CLIPScore
        from transformers import CLIPProcessor, CLIPTokenizer
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
        require_binary()
        model = random_clip(7, text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                max_position_embeddings=77, hidden_act="quick_gelu", eos_token_id=2),
                            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                               image_size=224, patch_size=14, hidden_act="quick_gelu"),
                            projection_dim=24)
        with tempfile.TemporaryDirectory() as tmp:
            clip = os.path.join(tmp, "clip")
            os.makedirs(clip)
            write_clip_vocabulary(clip)
            processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=CLIPTokenizer.from_pretrained(clip))
            model.save_pretrained(clip)
            processor.save_pretrained(clip)
            rng = np.random.RandomState(3)
            images, folder = [], os.path.join(tmp, "images")
            os.makedirs(folder)
            sizes = [(224, 224), (28, 28), (64, 48), (300, 200), (150, 333), (224, 225), (97, 512), (32, 32), (400, 400),
                     (225, 224), (50, 90), (256, 256)]
            for i, (w, h) in enumerate(sizes):
                grey = i % 3 == 1
                base = rng.rand(h // 8 + 2, w // 8 + 2, 1 if grey else 3)
                a = np.kron(base, np.ones((8, 8, 1)))[:h, :w] + 0.05 * rng.randn(h, w, 1 if grey else 3)
                a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
                Image.fromarray(a[:, :, 0] if grey else a).save(os.path.join(folder, f"{i:03d}.png"))
                images.append(torch.from_numpy(np.array(Image.open(os.path.join(folder, f"{i:03d}.png")).convert("RGB"))).permute(2, 0, 1))
            texts = [PROMPTS[i % len(PROMPTS)] for i in range(len(images))]
            with open(os.path.join(tmp, "prompts.txt"), "w") as f:
                f.write("\n".join(PROMPTS) + "\n")

            adapted = FeaturesAsTensors(model)
            with torch.no_grad():
                want_pairs, _ = _clip_score_update(images, texts, adapted, processor)
                metric = CLIPScore(model_name_or_path=lambda: (adapted, processor))
                metric.update(images, texts)
                want = float(metric.compute())
            run = subprocess.run([str(BIN), "clipscore", folder, "--prompts", os.path.join(tmp, "prompts.txt"), "--clip", clip,
                                  "--batch", "5", "--json"], capture_output=True, text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertIn("longer than CLIP's 77 tokens", run.stderr)
            got = json.loads(run.stdout)
            self.assertEqual(got["images"], len(images))
            self.assertEqual(got["truncated_prompts"], 1)
            pairs = got["pair_scores"]
            print("pairs: engine", [round(x, 3) for x in pairs], "\n       torchmetrics", [round(float(x), 3) for x in want_pairs])
            self.assertLessEqual(max(abs(g - float(w)) for g, w in zip(pairs, want_pairs)), 1e-3)
            self.assertAlmostEqual(got["mean_pair_score"], float(want_pairs.mean()), delta=1e-3)
            self.assertAlmostEqual(got["clip_score"], want, delta=1e-3)
            # One prompt for every image (--prompt).
            shifted = subprocess.run([str(BIN), "clipscore", folder, "--prompt", PROMPTS[0], "--clip", clip, "--json"],
                                     capture_output=True, text=True)
            self.assertEqual(shifted.returncode, 0, shifted.stderr)
            with torch.no_grad():
                one, _ = _clip_score_update(images, [PROMPTS[0]] * len(images), adapted, processor)
            self.assertLessEqual(max(abs(g - float(w)) for g, w in zip(json.loads(shifted.stdout)["pair_scores"], one)), 1e-3)


    def test_rfid_scores_the_images_it_generates(self):
        """`rfid --clip` scores a plan's generated images as `clipscore` scores the same images written
        as PNGs by `generate --out-dir` (same noise, same plan), and the teacher's as well."""
        require_binary()
        with tempfile.TemporaryDirectory() as tmp:
            pipe, clip = os.path.join(tmp, "pipe"), os.path.join(tmp, "clip")
            make_pipeline(pipe, seed=0)
            os.makedirs(clip)
            write_clip_vocabulary(clip)
            model = random_clip(8, text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                    max_position_embeddings=77, eos_token_id=2),
                                vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                   image_size=224, patch_size=14), projection_dim=16)
            model.save_pretrained(clip)
            with open(os.path.join(tmp, "prompts.txt"), "w") as f:
                f.write("a red shoe\nan ankle boot on the left\na bag\n")
            env = dict(os.environ, XDG_CACHE_HOME=os.path.join(tmp, "cache"))
            def run(*args):
                r = subprocess.run([str(BIN), *args], capture_output=True, text=True, env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                return r.stdout
            run("plan", "teacher", "--steps", "3", "--scheduler", "ddim", "--out", os.path.join(tmp, "plan.json"))
            common = ["--model", pipe, "--prompts", os.path.join(tmp, "prompts.txt"), "--seed", "5", "--batch", "3"]
            got = json.loads(run("rfid", *common, "--teacher", "6", "--count", "6", "--features", "fashion", "--clip", clip, "--json",
                                 os.path.join(tmp, "plan.json")))
            for plan, key in ((os.path.join(tmp, "plan.json"), "plans"), (None, "teacher")):
                folder = os.path.join(tmp, f"images-{key}")
                # (The teacher: the folder's scheduler, PNDM, at 6 steps; rfid --teacher 6 is the same plan.)
                extra = ["--plan", plan] if plan else ["--steps", "6"]
                run("generate", *common, "--count", "6", "--out-dir", folder, *extra)
                want = json.loads(run("clipscore", folder, "--prompts", os.path.join(tmp, "prompts.txt"), "--clip", clip, "--json"))
                have = got["plans"][0]["clip_score"] if plan else got["teacher"]["clip_score"]
                print(f"{key}: rfid --clip {have:.5f}, clipscore of the PNGs {want['clip_score']:.5f}")
                self.assertAlmostEqual(have, want["clip_score"], delta=1e-4)


if __name__ == "__main__":
    unittest.main()
