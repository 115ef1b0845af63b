"""`flexiffusion generate --prompt` against diffusers' StableDiffusionXLPipeline on a tiny random-weight SDXL
pipeline with the real CLIP vocabulary (scripts/goldens/make_tiny_sd_pipeline.py --sdxl: both text
encoders, the text_time embedding, Euler from the folder): the same latents in, 10 steps, guidance 7.5
with and without negative prompts (none given: SDXL's zeros), micro-conditioning, other solvers from the
folder's config, a plan through `flexiffusion.apply_plan`, and DeepCache's own DeepCacheSDHelper (PyPI
deepcache 0.1.1) against `plan deepcache --cache-branch-id`; final latents and decoded images within
1e-3 relative L2.

Needs transformers, `pip install --no-deps open_clip_torch deepcache==0.1.1` (CI installs them) and the
engine binary (FLEXIFFUSION_BIN, default .build/debug/flexiffusion).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_parity import BIN, REPO, check_outputs, deepcache_helper, relative_l2, require_binary  # noqa: E402
sys.path.insert(0, str(REPO / "scripts" / "goldens"))
from make_tiny_sd_pipeline import make_sdxl_pipeline  # noqa: E402


class SDXLParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from diffusers import StableDiffusionXLPipeline
        require_binary()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.folder = os.path.join(cls.tmp.name, "sdxl")
        make_sdxl_pipeline(cls.folder, seed=0)
        cls.pipe = StableDiffusionXLPipeline.from_pretrained(cls.folder)
        cls.pipe.set_progress_bar_config(disable=True)
        cls.default_scheduler = cls.pipe.scheduler

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check(self, name, prompts, negative, guidance, scheduler=None, seed=1, plan=None, helper=None, micro=None, size=16):
        from diffusers import DPMSolverMultistepScheduler, DDIMScheduler, UniPCMultistepScheduler
        classes = {"dpmsolver++": DPMSolverMultistepScheduler, "ddim": DDIMScheduler, "unipc": UniPCMultistepScheduler}
        pipe = self.pipe
        pipe.scheduler = classes[scheduler].from_config(self.default_scheduler.config) if scheduler else self.default_scheduler
        handle = None
        if isinstance(plan, dict):
            from flexiffusion import apply_plan
            plan_path = os.path.join(self.tmp.name, f"{name}-plan.json")
            with open(plan_path, "w") as f:
                json.dump(plan, f)
            handle = apply_plan(pipe, plan_path)
        else:
            plan_path = plan
        if helper is not None:
            handle = helper(pipe)
        n = len(prompts)
        latents = torch.randn((n, 4, size // 2, size // 2), generator=torch.Generator().manual_seed(seed))
        tmp = self.tmp.name
        save_file({"latents": latents}, os.path.join(tmp, f"{name}-in.safetensors"))
        kwargs = {}
        if micro:
            kwargs = dict(original_size=micro[0], crops_coords_top_left=micro[1], target_size=micro[2])
        with torch.no_grad():
            want = pipe(prompt=prompts, negative_prompt=None if negative is None else [negative] * n, latents=latents.clone(),
                        num_inference_steps=10, guidance_scale=guidance, output_type="latent", height=size, width=size, **kwargs).images
            want_images = pipe.vae.decode(want / pipe.vae.config.scaling_factor).sample
        if handle is not None:
            handle.remove()
        with open(os.path.join(tmp, f"{name}.txt"), "w") as f:
            f.write("\n".join(prompts) + "\n")
        cmd = [str(BIN), "generate", "--model", self.folder, "--latents", os.path.join(tmp, f"{name}-in.safetensors"),
               "--guidance-scale", str(guidance), "--output-latents", os.path.join(tmp, f"{name}-latents.safetensors"),
               "--output-tensor", os.path.join(tmp, f"{name}-images.safetensors"), "--batch", "2",
               "--prompts", os.path.join(tmp, f"{name}.txt")]
        cmd += ["--plan", plan_path] if plan_path else ["--steps", "10"]
        if negative is not None:
            cmd += ["--negative-prompt", negative]
        if scheduler and not plan_path:
            cmd += ["--scheduler", scheduler]
        if micro:
            cmd += ["--original-size", "%d,%d" % micro[0], "--crop-top-left", "%d,%d" % micro[1], "--target-size", "%d,%d" % micro[2]]
        run = subprocess.run(cmd, capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertGreater(relative_l2(want, latents * pipe.scheduler.init_noise_sigma), 0.05)
        check_outputs(self, name, os.path.join(tmp, f"{name}-latents.safetensors"), os.path.join(tmp, f"{name}-images.safetensors"),
                      want, want_images)
        return want

    def test_euler_from_the_folder_with_and_without_negative_prompts(self):
        prompts = ["a red bicycle leaning on a brick wall", "Two cats on a sofa, watercolor!!", "🍕 pizza at 3 a.m."]
        with_negative = self.check("euler-negative", prompts, "blurry, low quality", 7.5)
        # No negative prompt: force_zeros_for_empty_prompt makes the unconditional half zeros, not "".
        zeros = self.check("euler-zeros", prompts, None, 7.5)
        empty = self.check("euler-empty", prompts, "", 7.5)
        self.assertGreater(relative_l2(zeros, empty), 1e-2)
        self.assertGreater(relative_l2(zeros, with_negative), 1e-2)

    def test_other_solvers_from_the_folder_config(self):
        self.check("dpmsolver", ["a lighthouse on a cliff at dusk", "a bowl of fruit"], None, 7.5, scheduler="dpmsolver++", seed=2)
        self.check("unipc-no-guidance", ["an empty street in the rain", "a bowl of fruit"], None, 1.0, scheduler="unipc", seed=3)

    def test_micro_conditioning(self):
        # original_size, crops_coords_top_left and target_size go into time_ids: a changed output.
        base = self.check("micro-default", ["a harbour with small boats", "a snowy village"], None, 7.5, seed=4)
        micro = self.check("micro", ["a harbour with small boats", "a snowy village"], None, 7.5, seed=4,
                           micro=((512, 768), (16, 32), (1024, 1024)))
        self.assertGreater(relative_l2(micro, base), 1e-3)

    def test_plan_with_partial_and_null_steps_through_apply_plan(self):
        actions = ["full", "partial:1", "null", "full", "partial:0", "partial:3", "full", "null", "partial:5", "full"]
        plan = {"format": "flexiffusion-step-plan", "version": 1,
                "sampler": {"scheduler": "dpmsolver++", "steps": 10, "order": 2}, "actions": actions}
        self.check("plan", ["a quiet library with tall shelves", "a red kite over a field"], "text, watermark", 7.5, plan=plan, seed=5)

    def test_deepcache_helper_and_plan_deepcache_agree(self):
        # Two levels of two layers: cache_branch_id 0…5 are our branches 0…5 (SD's numbering).
        for interval, branch_id in [(2, 0), (3, 1), (2, 2), (3, 3), (5, 4), (2, 5)]:
            with self.subTest(interval=interval, cache_branch_id=branch_id):
                plan_path = os.path.join(self.tmp.name, f"deepcache-{interval}-{branch_id}.json")
                run = subprocess.run([str(BIN), "plan", "deepcache", "--model", self.folder, "--scheduler", "euler", "--steps", "10",
                                      "--interval", str(interval), "--cache-branch-id", str(branch_id), "--out", plan_path],
                                     capture_output=True, text=True)
                self.assertEqual(run.returncode, 0, run.stderr)
                with open(plan_path) as f:
                    self.assertIn(f"partial:{branch_id}", json.load(f)["actions"])
                self.check(f"deepcache-{interval}-{branch_id}", ["a red kite over a field", "a quiet library with tall shelves"],
                           "blurry", 7.5, plan=plan_path, helper=deepcache_helper(interval, branch_id), seed=20 + branch_id)


if __name__ == "__main__":
    unittest.main()
