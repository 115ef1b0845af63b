"""`flexiffusion generate --image/--images --strength` against diffusers' StableDiffusionImg2ImgPipeline and
StableDiffusionXLImg2ImgPipeline on the tiny random-weight pipelines (scripts/goldens/make_tiny_sd_pipeline.py,
with --sdxl): the same init images (PNGs), the same noise — diffusers draws the VAE latent sample's ε and
then add_noise's from one generator, which the test replays and hands to the engine (`--noise FILE`:
tensors `latent_sample_noise` and `noise`) — 10 steps at several strengths, every scheduler from the
folders' configs, guidance, and a plan with partial and null steps (`plan … --strength`) through the
engine and through `flexiffusion.apply_plan`: final latents and decoded images within 1e-3 relative L2.

Needs transformers, Pillow, `pip install --no-deps open_clip_torch` and the engine binary (FLEXIFFUSION_BIN).
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
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_parity import BIN, REPO, check_outputs, require_binary  # noqa: E402
sys.path.insert(0, str(REPO / "scripts" / "goldens"))
from make_tiny_sd_pipeline import make_pipeline, make_sdxl_pipeline  # noqa: E402


class ImageToImageParity:
    """Shared by the SD and SDXL cases: `make(folder)` writes the pipeline, `pipeline_class` reads it."""
    xl = False

    @classmethod
    def setUpClass(cls):
        require_binary()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.folder = os.path.join(cls.tmp.name, "pipeline")
        (make_sdxl_pipeline if cls.xl else make_pipeline)(cls.folder, seed=0)
        if cls.xl:
            from diffusers import StableDiffusionXLImg2ImgPipeline as Pipeline
        else:
            from diffusers import StableDiffusionImg2ImgPipeline as Pipeline
        kwargs = {} if cls.xl else dict(safety_checker=None, requires_safety_checker=False)
        cls.pipe = Pipeline.from_pretrained(cls.folder, **kwargs)
        cls.pipe.set_progress_bar_config(disable=True)
        cls.default_scheduler = cls.pipe.scheduler
        rng = np.random.default_rng(7)
        cls.images = os.path.join(cls.tmp.name, "images")
        os.makedirs(cls.images)
        for i in range(3):
            # Smooth random pictures (a blurred noise field plus a gradient), 16×16 RGB.
            base = rng.random((4, 4, 3))
            up = np.kron(base, np.ones((4, 4, 1))) * 0.7 + np.linspace(0, 0.3, 16)[None, :, None]
            Image.fromarray((up * 255).clip(0, 255).astype("uint8")).save(os.path.join(cls.images, f"{i}.png"))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check(self, name, prompts, negative, guidance, strength, scheduler=None, seed=1, plan=None, engine_plan=None):
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, UniPCMultistepScheduler
        classes = {"dpmsolver++": DPMSolverMultistepScheduler, "ddim": DDIMScheduler, "unipc": UniPCMultistepScheduler,
                   "euler": EulerDiscreteScheduler, "pndm": PNDMScheduler}
        pipe = self.pipe
        pipe.scheduler = classes[scheduler].from_config(self.default_scheduler.config) if scheduler else self.default_scheduler
        handle = None
        if plan is not None:
            from flexiffusion import apply_plan
            handle = apply_plan(pipe, plan)
        n = len(prompts)
        names = sorted(os.listdir(self.images))
        pictures = [Image.open(os.path.join(self.images, names[i % len(names)])).convert("RGB") for i in range(n)]
        shape = (n, 4, 8, 8)
        replay = torch.Generator().manual_seed(seed)
        latent_sample_noise, noise = torch.randn(shape, generator=replay), torch.randn(shape, generator=replay)
        tmp = self.tmp.name
        save_file({"noise": noise, "latent_sample_noise": latent_sample_noise}, os.path.join(tmp, f"{name}-noise.safetensors"))
        with torch.no_grad():
            want = pipe(prompt=prompts, image=pictures, strength=strength, negative_prompt=None if negative is None else [negative] * n,
                        num_inference_steps=10, guidance_scale=guidance, output_type="latent",
                        generator=torch.Generator().manual_seed(seed)).images
            want_images = pipe.vae.decode(want / pipe.vae.config.scaling_factor).sample
        if handle is not None:
            handle.remove()
        with open(os.path.join(tmp, f"{name}.txt"), "w") as f:
            f.write("\n".join(prompts) + "\n")
        cmd = [str(BIN), "generate", "--model", self.folder, "--images", self.images, "--count", str(n),
               "--noise", os.path.join(tmp, f"{name}-noise.safetensors"), "--guidance-scale", str(guidance),
               "--output-latents", os.path.join(tmp, f"{name}-latents.safetensors"),
               "--output-tensor", os.path.join(tmp, f"{name}-images.safetensors"), "--batch", "2",
               "--prompts", os.path.join(tmp, f"{name}.txt")]
        if engine_plan or plan:
            cmd += ["--plan", engine_plan or plan]
        else:
            cmd += ["--steps", "10", "--strength", str(strength)] + (["--scheduler", scheduler] if scheduler else [])
        if negative is not None:
            cmd += ["--negative-prompt", negative]
        run = subprocess.run(cmd, capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        check_outputs(self, name, os.path.join(tmp, f"{name}-latents.safetensors"), os.path.join(tmp, f"{name}-images.safetensors"),
                      want, want_images, label=f"{'sdxl' if self.xl else 'sd'} {name}")

    def test_every_scheduler_at_several_strengths(self):
        prompts = ["a red bicycle leaning on a brick wall", "Two cats on a sofa, watercolor!!"]
        cases = [(None, 0.8 if not self.xl else 0.3), ("ddim", 0.5), ("dpmsolver++", 0.75), ("unipc", 0.6), ("euler", 1.0)]
        if not self.xl:
            cases.append(("pndm", 0.35))
        for i, (scheduler, strength) in enumerate(cases):
            with self.subTest(scheduler=scheduler, strength=strength):
                self.check(f"{scheduler}-{strength}", prompts, "blurry" if i % 2 else None, 7.5, strength, scheduler=scheduler, seed=10 + i)

    def test_without_guidance_and_images_cycled(self):
        self.check("no-guidance", ["a lighthouse", "a bowl of fruit", "a snowy village", "a kite"], None, 1.0, 0.7,
                   scheduler="dpmsolver++", seed=3)

    def test_a_plan_with_partial_and_null_steps(self):
        plan_path = os.path.join(self.tmp.name, "plan.json")
        run = subprocess.run([str(BIN), "plan", "segments", "--model", self.folder, "--scheduler", "dpmsolver++", "--steps", "10",
                              "--strength", "0.8", "--segments", "2", "--interval", "3", "--branch", "1", "--out", plan_path],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        with open(plan_path) as f:
            plan = json.load(f)
        self.assertEqual(len(plan["actions"]), 8)
        self.assertEqual(plan["sampler"]["strength"], 0.8)
        self.check("plan", ["a harbour with small boats", "a red kite over a field"], "text", 7.5, 0.8, plan=plan_path, seed=4)
        from flexiffusion import PlanError, apply_plan
        handle = apply_plan(self.pipe, plan_path)
        try:
            with self.assertRaisesRegex(PlanError, "call it with strength=0.8"):
                self.pipe(prompt="a", image=Image.open(os.path.join(self.images, "0.png")), strength=0.5, num_inference_steps=10,
                          output_type="latent")
        finally:
            handle.remove()


class SDImageToImage(ImageToImageParity, unittest.TestCase):
    xl = False

    def test_search_on_image_to_image_writes_a_plan_that_generate_and_rfid_run(self):
        # The CI-sized search at strength 0.6 (the folder's PNDM at 20 steps keeps 13 evaluations):
        # every plan it scores, baselines included, runs at that strength.
        tmp = self.tmp.name
        prompts = str(REPO / "prompts" / "everyday-scenes.txt")
        out = os.path.join(tmp, "i2i-search.json")
        common = ["--model", self.folder, "--prompts", prompts, "--features", "fashion", "--batch", "4", "--init-images", self.images]
        run = subprocess.run([str(BIN), "search", *common, "--strength", "0.6", "--steps", "20", "--speedup", "2", "--samples", "4",
                              "--generations", "1", "--population", "4", "--children", "4", "--no-measure", "--final-samples", "0",
                              "--out", out, "--latency-table", os.path.join(tmp, "latency.json"), "--json"], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        summary = json.loads(run.stdout)
        with open(out) as f:
            results = json.load(f)
        self.assertEqual((results["sampler"]["scheduler"], results["sampler"]["steps"], results["sampler"]["strength"]), ("pndm", 20, 0.6))
        for b in summary["baselines"]:
            if b["name"].startswith(("ddim", "dpmsolver", "unipc")):
                self.assertLessEqual(summary["best"]["rfid"], b["rfid"] + 1e-9, b["name"])
        gen = subprocess.run([str(BIN), "generate", "--model", self.folder, "--plan", out, "--prompt", "a cat", "--images", self.images,
                              "--output-tensor", os.path.join(tmp, "i2i-search.safetensors")], capture_output=True, text=True)
        self.assertEqual(gen.returncode, 0, gen.stderr)
        images = load_file(os.path.join(tmp, "i2i-search.safetensors"))["sample"]
        self.assertEqual(tuple(images.shape), (3, 3, 16, 16))
        score = subprocess.run([str(BIN), "rfid", out, *common, "--count", "4", "--teacher", "20", "--json"], capture_output=True, text=True)
        self.assertEqual(score.returncode, 0, score.stderr)
        result = json.loads(score.stdout)
        self.assertTrue(result["teacher"]["cached"])
        self.assertAlmostEqual(result["plans"][0]["rfid"], summary["best"]["rfid"], places=6)


class SDXLImageToImage(ImageToImageParity, unittest.TestCase):
    xl = True


if __name__ == "__main__":
    unittest.main()
