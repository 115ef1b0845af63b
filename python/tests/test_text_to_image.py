"""`flexiffusion generate --prompt` against diffusers' StableDiffusionPipeline on a tiny random-weight
pipeline with the real CLIP vocabulary (scripts/goldens/make_tiny_sd_pipeline.py): the same latents in, 10
steps, guidance 7.5 with negative prompts, on the folder's PNDM (skip_prk_steps) and on DPM-Solver++
and Euler from its config, and a plan with partial and null steps under guidance against the same plan
through `flexiffusion.apply_plan` on diffusers; final latents and decoded images (before clamping)
within 1e-3 relative L2.

Needs transformers and `pip install --no-deps open_clip_torch` (CI installs both) and the engine
binary (FLEXIFFUSION_BIN, default .build/debug/flexiffusion).
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_parity import BIN, REPO, check_outputs, deepcache_helper, relative_l2, require_binary  # noqa: E402
sys.path.insert(0, str(REPO / "scripts" / "goldens"))
from make_tiny_sd_pipeline import make_pipeline  # noqa: E402


class TextToImageParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from diffusers import StableDiffusionPipeline
        require_binary()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.folder = os.path.join(cls.tmp.name, "pipeline")
        make_pipeline(cls.folder, seed=0)
        cls.pipe = StableDiffusionPipeline.from_pretrained(cls.folder, safety_checker=None, requires_safety_checker=False)
        cls.pipe.set_progress_bar_config(disable=True)
        cls.default_scheduler = cls.pipe.scheduler

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check(self, name, prompts, negative, guidance, scheduler=None, engine_scheduler=None, count=None, seed=1, plan=None,
              folder=None, pipe=None, helper=None):
        """`folder`/`pipe`: another pipeline than the class's; `helper(pipe)`: a context (DeepCache's
        helper) around diffusers' run, beside `plan` (a path or a dict) for the engine's."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
        classes = {"dpmsolver++": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler, "ddim": DDIMScheduler}
        folder = folder or self.folder
        pipe = pipe or self.pipe
        default_scheduler = self.default_scheduler if pipe is self.pipe else pipe.scheduler
        pipe.scheduler = classes[scheduler].from_config(default_scheduler.config) if scheduler else default_scheduler
        handle = None
        if isinstance(plan, str):
            plan_path = plan
        elif plan is not None:
            from flexiffusion import apply_plan
            plan_path = os.path.join(self.tmp.name, f"{name}-plan.json")
            with open(plan_path, "w") as f:
                json.dump(plan, f)
            handle = apply_plan(pipe, plan_path)
        if helper is not None:
            handle = helper(pipe)
        n = count or len(prompts)
        latents = torch.randn((n, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
        tmp = self.tmp.name
        save_file({"latents": latents}, os.path.join(tmp, f"{name}-in.safetensors"))
        with torch.no_grad():
            want = pipe(prompt=prompts if count is None else prompts * n,
                        negative_prompt=None if negative is None else [negative] * n, latents=latents.clone(),
                        num_inference_steps=10, guidance_scale=guidance, output_type="latent").images
            want_images = pipe.vae.decode(want / pipe.vae.config.scaling_factor).sample
        if handle is not None:
            handle.remove()
        cmd = [str(BIN), "generate", "--model", folder, "--latents", os.path.join(tmp, f"{name}-in.safetensors"), "--steps", "10",
               "--guidance-scale", str(guidance), "--output-latents", os.path.join(tmp, f"{name}-latents.safetensors"),
               "--output-tensor", os.path.join(tmp, f"{name}-images.safetensors"), "--batch", "2"]
        if count is None:
            with open(os.path.join(tmp, f"{name}.txt"), "w") as f:
                f.write("\n".join(prompts) + "\n")
            cmd += ["--prompts", os.path.join(tmp, f"{name}.txt")]
        else:
            cmd += ["--prompt", prompts[0], "--count", str(count)]
        if negative is not None:
            cmd += ["--negative-prompt", negative]
        if engine_scheduler:
            cmd += ["--scheduler", engine_scheduler]
        if plan is not None:
            cmd = [c for c in cmd if c not in ("--steps", "10")] + ["--plan", plan_path]
        run = subprocess.run(cmd, capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.last_stderr = run.stderr
        # The latents moved: the UNet and the guidance matter to the result.
        self.assertGreater(relative_l2(want, latents * pipe.scheduler.init_noise_sigma), 0.05)
        check_outputs(self, name, os.path.join(tmp, f"{name}-latents.safetensors"), os.path.join(tmp, f"{name}-images.safetensors"),
                      want, want_images)

    def test_pndm_from_the_folder_with_negative_prompts(self):
        self.check("pndm", ["a red bicycle leaning on a brick wall", "Two cats on a sofa, watercolor!!", "🍕 pizza at 3 a.m."],
                   "blurry, low quality", 7.5)

    def test_dpm_solver_one_prompt_several_images(self):
        self.check("dpmsolver", ["a lighthouse on a cliff at dusk"], None, 7.5, scheduler="dpmsolver++", engine_scheduler="dpmsolver++",
                   count=3, seed=2)

    def test_euler_without_guidance(self):
        self.check("euler", ["an empty street in the rain", "a bowl of fruit"], None, 1.0, scheduler="euler", engine_scheduler="euler", seed=3)

    def test_ddim_from_the_pndm_config_under_guidance(self):
        # (DDIMScheduler.from_config of SD's PNDM config: steps_offset 1, leading spacing, set_alpha_to_one false.)
        self.check("ddim", ["a kitchen with a kettle on the stove", "a dog running on a beach"], None, 7.5, scheduler="ddim",
                   engine_scheduler="ddim", seed=5)

    def outdated_copy(self, name, scheduler_config, scheduler_class=None):
        """A copy of the pipeline whose scheduler config is `scheduler_config` (and whose model_index.json
        names `scheduler_class`, the class diffusers builds), as diffusers loads it."""
        import shutil
        from diffusers import StableDiffusionPipeline
        folder = os.path.join(self.tmp.name, name)
        shutil.copytree(self.folder, folder)
        with open(os.path.join(folder, "scheduler", "scheduler_config.json"), "w") as f:
            json.dump(scheduler_config, f)
        if scheduler_class:
            with open(os.path.join(folder, "model_index.json")) as f:
                index = json.load(f)
            index["scheduler"] = ["diffusers", scheduler_class]
            with open(os.path.join(folder, "model_index.json"), "w") as f:
                json.dump(index, f)
        pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return folder, pipe

    def test_outdated_scheduler_configs_are_corrected_as_diffusers_does(self):
        # StableDiffusionPipeline.__init__ sets steps_offset to 1 and clip_sample to false (with a
        # deprecation warning); without the same correction the engine's images differ by 0.1-1.0.
        with open(os.path.join(self.folder, "scheduler", "scheduler_config.json")) as f:
            config = json.load(f)
        # (The scheduler's class is model_index.json's: "clip-pndm" names DDIM in its config alone, and
        # diffusers builds PNDM with a clip_sample it corrects all the same.)
        ddim = {"_class_name": "DDIMScheduler", "steps_offset": 0}
        for name, changes, index_class, scheduler in [("offset0-pndm", {"steps_offset": 0}, None, None),
                                                      ("clip-ddim", {**ddim, "clip_sample": True}, "DDIMScheduler", None),
                                                      ("default-clip-ddim", ddim, "DDIMScheduler", None),
                                                      ("clip-pndm", {**ddim, "clip_sample": True}, None, None),
                                                      ("offset0-to-ddim", {"steps_offset": 0}, None, "ddim")]:
            with self.subTest(config=name):
                folder, pipe = self.outdated_copy(name, {**config, **changes}, index_class)
                self.assertEqual(pipe.scheduler.config.steps_offset, 1)
                self.assertEqual(type(pipe.scheduler).__name__, index_class or "PNDMScheduler")
                self.check(name, ["a lighthouse on a cliff at dusk", "a bowl of fruit"], None, 7.5, folder=folder, pipe=pipe,
                           scheduler=scheduler, engine_scheduler=scheduler, seed=6)
                self.assertIn("steps_offset should be 1, not 0", self.last_stderr)
                self.assertEqual("clip_sample true" in self.last_stderr, "clip_sample" in changes or name == "default-clip-ddim")

    def test_deepcache_helper_and_plan_deepcache_agree_on_every_branch_id(self):
        # DeepCache's own DeepCacheSDHelper (PyPI deepcache 0.1.1) on diffusers against the engine with
        # `plan deepcache --cache-branch-id B`: the helper's numbering, DDIM, uniform intervals, guidance.
        # The tiny UNet has two levels of one layer: the helper's (down block B // 3, position B % 3) is
        # our branch 2 (B // 3) + min(B % 3, 1); positions 2 and 1 give the same up path.
        ours = {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 3}
        for interval, branch_id in [(2, 0), (3, 1), (2, 2), (3, 3), (5, 4), (2, 5)]:
            with self.subTest(interval=interval, cache_branch_id=branch_id):
                plan_path = os.path.join(self.tmp.name, f"deepcache-{interval}-{branch_id}.json")
                run = subprocess.run([str(BIN), "plan", "deepcache", "--model", self.folder, "--scheduler", "ddim", "--steps", "10",
                                      "--interval", str(interval), "--cache-branch-id", str(branch_id), "--out", plan_path],
                                     capture_output=True, text=True)
                self.assertEqual(run.returncode, 0, run.stderr)
                with open(plan_path) as f:
                    self.assertIn(f"partial:{ours[branch_id]}", json.load(f)["actions"])
                self.check(f"deepcache-{interval}-{branch_id}", ["a red kite over a field", "a quiet library with tall shelves"],
                           "blurry", 7.5, scheduler="ddim", plan=plan_path, helper=deepcache_helper(interval, branch_id), seed=20 + branch_id)
        run = subprocess.run([str(BIN), "plan", "deepcache", "--model", self.folder, "--steps", "10", "--interval", "2",
                              "--cache-branch-id", "6"], capture_output=True, text=True)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("cache_branch_id 6 is not a skip branch", run.stderr)

    def test_plan_with_partial_and_null_steps_under_guidance(self):
        actions = ["full", "partial:1", "null", "full", "partial:0", "partial:1", "full", "null", "partial:1", "full"]
        plan = {"format": "flexiffusion-step-plan", "version": 1,
                "sampler": {"scheduler": "dpmsolver++", "steps": 10, "order": 2}, "actions": actions}
        self.check("plan", ["a harbour with small boats", "a snowy mountain village"], "text, watermark", 7.5, plan=plan, seed=4)

    def test_plans_of_every_solver_through_the_pipeline_call(self):
        # StableDiffusionPipeline's own __call__ (it scales the noise and the model's input) with a plan
        # of each kind the search returns, under guidance, partial and null steps included.
        actions = ["full", "partial:1", "null", "full", "partial:0", "full", "full", "null", "partial:1", "full"]
        samplers = {"unipc": {"scheduler": "unipc", "steps": 10, "order": 3}, "euler": {"scheduler": "euler", "steps": 10},
                    "ddim": {"scheduler": "ddim", "steps": 10, "eta": 0}, "dpmsolver": {"scheduler": "dpmsolver", "steps": 10, "order": 2},
                    "pndm": {"scheduler": "pndm", "steps": 10, "skip_prk_steps": True}}
        for i, (name, sampler) in enumerate(samplers.items()):
            with self.subTest(sampler=name):
                plan = {"format": "flexiffusion-step-plan", "version": 1, "sampler": sampler,
                        "actions": actions + (["full"] if name == "pndm" else [])}
                self.check(f"plan-{name}", ["a quiet library with tall shelves", "a red kite over a field"], "blurry", 7.5, plan=plan,
                           seed=10 + i)

    def test_search_from_prompts_writes_a_plan_that_generate_and_rfid_run(self):
        # The CI-sized search: the folder's PNDM teacher at 50 steps, the project's prompt set, guidance
        # 7.5, the Fashion-MNIST network on the decoded images resized to 28×28 grey.
        tmp = self.tmp.name
        prompts = str(REPO / "prompts" / "everyday-scenes.txt")
        out = os.path.join(tmp, "search.json")
        common = ["--model", self.folder, "--prompts", prompts, "--features", "fashion", "--batch", "4"]
        run = subprocess.run([str(BIN), "search", *common, "--speedup", "3", "--samples", "8", "--generations", "1",
                              "--population", "4", "--children", "4", "--no-measure", "--final-samples", "0", "--out", out,
                              "--latency-table", os.path.join(tmp, "latency.json"), "--json"], capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        summary = json.loads(run.stdout)
        best = summary["best"]
        self.assertGreaterEqual(best["predicted_speedup"], 3.0)
        with open(out) as f:
            results = json.load(f)
        self.assertEqual((results["sampler"]["scheduler"], results["sampler"]["steps"]), ("pndm", 50), "the folder's scheduler at 50 steps")
        self.assertEqual(results["latencies"]["batch"], 8, "the UNet's latencies at twice the batch (guidance)")
        self.assertIn("device memory", run.stderr)
        # The search never ends worse than a baseline it holds (plain DDIM, DPM-Solver++, UniPC at the budget).
        for b in summary["baselines"]:
            if b["name"].startswith(("ddim", "dpmsolver", "unipc")):
                self.assertLessEqual(best["rfid"], b["rfid"] + 1e-9, b["name"])
        # generate --plan runs the results file's best plan on the pipeline.
        gen = subprocess.run([str(BIN), "generate", "--model", self.folder, "--plan", out, "--prompt", "a cat on a windowsill",
                              "--count", "2", "--output-tensor", os.path.join(tmp, "search-images.safetensors"), "--json"],
                             capture_output=True, text=True)
        self.assertEqual(gen.returncode, 0, gen.stderr)
        images = load_file(os.path.join(tmp, "search-images.safetensors"))["sample"]
        self.assertEqual(tuple(images.shape), (2, 3, 16, 16))
        self.assertTrue(torch.isfinite(images).all())
        # rfid gives the file's best plan the score the search gave it (the same teacher features, from the cache).
        score = subprocess.run([str(BIN), "rfid", out, *common, "--count", "8", "--json"], capture_output=True, text=True)
        self.assertEqual(score.returncode, 0, score.stderr)
        result = json.loads(score.stdout)
        self.assertTrue(result["teacher"]["cached"])
        self.assertAlmostEqual(result["plans"][0]["rfid"], best["rfid"], places=6)


if __name__ == "__main__":
    unittest.main()
