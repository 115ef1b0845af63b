"""The package against the engine: plans written by `flexiffusion plan` and found by `flexiffusion
search`, run through `apply_plan` on diffusers and through `flexiffusion generate --plan --noise` from
the same noise (relative L2 ≤ 1e-3); pipeline calls, hand-written loops, refusals and `remove()`;
partial steps on Stable Diffusion's UNet against the PyTorch goldens the engine is tested on.

    FLEXIFFUSION_BIN=.build/debug/flexiffusion python -m unittest discover -s python/tests -v

The engine binary is required (default: .build/debug/flexiffusion); without it the tests fail.
"""
import json
import os
import subprocess
import tempfile
import types
import unittest
from pathlib import Path

import torch
from diffusers import DDIMPipeline, DDIMScheduler, UNet2DConditionModel, UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file, save_file

import flexiffusion
from diffusers.utils import logging as diffusers_logging
from flexiffusion import PlanError
from flexiffusion.schedulers import set_explicit_timesteps

diffusers_logging.set_verbosity_error()

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "fashion-mnist"
GOLDENS = REPO / "Tests" / "EngineTests" / "Goldens"
BIN = Path(os.environ.get("FLEXIFFUSION_BIN", REPO / ".build" / "debug" / "flexiffusion"))

# Plans the engine writes: every solver family, DeepCache, segments with partial and null steps.
PLANS = {
    "ddim-10": ["plan", "teacher", "--steps", "10"],
    "dpmsolver++-8": ["plan", "teacher", "--scheduler", "dpmsolver++", "--steps", "8"],
    "deepcache-ddim": ["plan", "deepcache", "--steps", "10", "--interval", "3", "--branch", "2"],
    "segments-ddim": ["plan", "segments", "--steps", "12", "--segments", "3", "--interval", "3", "--branch", "1,3,0"],
    "segments-dpmsolver++": ["plan", "segments", "--scheduler", "dpmsolver++", "--steps", "12", "--segments", "4",
                             "--interval", "2", "--branch", "2"],
    "segments-unipc3": ["plan", "segments", "--scheduler", "unipc", "--solver-order", "3", "--steps", "12",
                        "--segments", "3", "--interval", "3", "--branch", "1"],
    "segments-euler": ["plan", "segments", "--scheduler", "euler", "--steps", "10", "--segments", "2", "--interval", "3",
                       "--branch", "4"],
    "deepcache-pndm": ["plan", "deepcache", "--scheduler", "pndm", "--steps", "9", "--interval", "2", "--branch", "1"],
    "timesteps-dpmsolver++": ["plan", "deepcache", "--scheduler", "dpmsolver++", "--timesteps", "999,800,600,400,250,120,40,5",
                              "--interval", "2", "--branch", "0"],
    # UniPC takes no timestep list in diffusers: apply_plan sets the list and its σ after set_timesteps.
    "timesteps-unipc3": ["plan", "segments", "--scheduler", "unipc", "--solver-order", "3", "--timesteps", "801,650,420,260,130,40",
                         "--segments", "2", "--interval", "3", "--branch", "1"],
    # The spacing instead of the config's (diffusers' from_config(config, timestep_spacing=…)).
    "trailing-unipc3": ["plan", "segments", "--scheduler", "unipc", "--solver-order", "3", "--steps", "6",
                        "--timestep-spacing", "trailing", "--segments", "2", "--interval", "2", "--branch", "1"],
    "trailing-ddim": ["plan", "deepcache", "--steps", "5", "--timestep-spacing", "trailing", "--interval", "2", "--branch", "2"],
    "leading-dpmsolver++": ["plan", "teacher", "--scheduler", "dpmsolver++", "--steps", "7", "--timestep-spacing", "leading"],
    "trailing-euler": ["plan", "teacher", "--scheduler", "euler", "--steps", "6", "--timestep-spacing", "trailing"],
    "linspace-pndm": ["plan", "deepcache", "--scheduler", "pndm", "--steps", "8", "--timestep-spacing", "linspace",
                      "--interval", "3", "--branch", "0"],
}


def relative_l2(a, b):
    return float((a - b).norm() / b.norm())


def engine(*args, env=None):
    run = subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise AssertionError(f"flexiffusion {' '.join(map(str, args))} failed: {run.stderr.strip()}")
    return run.stdout


def ddim_pipeline():
    pipe = DDIMPipeline.from_pretrained(str(MODEL))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def hand_loop(pipe, noise):
    """The loop a user writes: set_timesteps, then the UNet and the scheduler's step per timestep."""
    s = pipe.scheduler
    s.set_timesteps(None)
    x = noise * s.init_noise_sigma
    with torch.no_grad():
        for t in s.timesteps:
            eps = pipe.unet(s.scale_model_input(x, t), t).sample
            x = s.step(eps, t, x).prev_sample
    return x


class EngineParity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (BIN.is_file() and os.access(BIN, os.X_OK)):
            raise AssertionError(f"no flexiffusion binary at {BIN}: build it (swift build) or set FLEXIFFUSION_BIN")
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = Path(cls.tmp.name)
        cls.noise = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(11))
        save_file({"sample": cls.noise.contiguous()}, str(tmp / "noise.safetensors"))
        cls.plans = {}
        for name, args in PLANS.items():
            engine(*args, "--out", tmp / f"{name}.json")
            cls.plans[name] = tmp / f"{name}.json"
        # A search's results file (tiny settings; its best plan is what a user would take).
        env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"))
        engine("search", "--speedup", "1.8", "--steps", "10", "--samples", "4", "--screen-samples", "2", "--batch", "2",
               "--population", "3", "--children", "3", "--generations", "1", "--segments", "2-5", "--seed", "7",
               "--no-measure", "--out", tmp / "search.json", env=env)
        cls.plans["search"] = tmp / "search.json"

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def engine_samples(self, plan):
        out = Path(self.tmp.name) / "out.safetensors"
        engine("generate", "--model", MODEL, "--plan", plan, "--noise", Path(self.tmp.name) / "noise.safetensors",
               "--batch", "4", "--output-tensor", out)
        return load_file(str(out))["sample"]

    def test_plans_match_the_engine(self):
        pipe = ddim_pipeline()
        for name, path in self.plans.items():
            with self.subTest(plan=name):
                plan = flexiffusion.load_plan(path)
                with flexiffusion.apply_plan(pipe, path) as handle:
                    ours = hand_loop(pipe, self.noise)
                    self.assertEqual(handle.step, len(plan.actions))
                err = relative_l2(ours, self.engine_samples(path))
                print(f"{name:>22}: {plan}; relative L2 to the engine {err:.2e}")
                self.assertLessEqual(err, 1e-3)

    def test_search_result_is_its_best_plan(self):
        doc = json.loads(self.plans["search"].read_text())
        self.assertEqual(flexiffusion.load_plan(self.plans["search"]), flexiffusion.load_plan(doc["best_plan"]))


# What a pipeline call runs for each scheduler kind the engine writes (pixel pipelines: no scaling,
# so every kind but euler; DDPM's variance noise is the pipeline's generator's).
CALL_PLANS = {
    "ddim": ["plan", "deepcache", "--steps", "10", "--interval", "3", "--branch", "2"],
    "dpmsolver++": ["plan", "segments", "--scheduler", "dpmsolver++", "--steps", "12", "--segments", "4", "--interval", "2", "--branch", "2"],
    "dpmsolver": ["plan", "teacher", "--scheduler", "dpmsolver", "--steps", "8"],
    "unipc": ["plan", "teacher", "--scheduler", "unipc", "--steps", "10", "--solver-order", "3"],
    "unipc-timesteps": ["plan", "segments", "--scheduler", "unipc", "--solver-order", "3", "--timesteps", "801,650,420,260,130,40",
                        "--segments", "2", "--interval", "3", "--branch", "1"],
    "pndm": ["plan", "deepcache", "--scheduler", "pndm", "--steps", "9", "--interval", "2", "--branch", "1"],
}


class PipelineCalls(unittest.TestCase):
    """`pipe(...)` itself — DDIMPipeline and DDPMPipeline — with the plan applied, against the engine
    from the same noise (the pipeline's own randn_tensor draw, given to `generate --noise`)."""

    @classmethod
    def setUpClass(cls):
        if not (BIN.is_file() and os.access(BIN, os.X_OK)):
            raise AssertionError(f"no flexiffusion binary at {BIN}: build it (swift build) or set FLEXIFFUSION_BIN")
        cls.tmp = tempfile.TemporaryDirectory()
        cls.plans = {}
        for name, args in CALL_PLANS.items():
            cls.plans[name] = Path(cls.tmp.name) / f"{name}.json"
            engine(*args, "--out", cls.plans[name])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def pipelines(self):
        from diffusers import DDPMPipeline
        ddpm = DDPMPipeline.from_pretrained(str(MODEL))
        ddpm.set_progress_bar_config(disable=True)
        return {"DDIMPipeline": ddim_pipeline(), "DDPMPipeline": ddpm}

    def engine_images(self, plan, noise):
        tmp = Path(self.tmp.name)
        save_file({"sample": noise.contiguous()}, str(tmp / "noise.safetensors"))
        engine("generate", "--model", MODEL, "--plan", plan, "--noise", tmp / "noise.safetensors", "--batch", "2",
               "--output-tensor", tmp / "out.safetensors")
        return (load_file(str(tmp / "out.safetensors"))["sample"] / 2 + 0.5).clamp(0, 1)

    def test_every_scheduler_kind_runs_in_the_pipeline_call(self):
        for pipeline_name, pipe in self.pipelines().items():
            for name, path in self.plans.items():
                with self.subTest(pipeline=pipeline_name, plan=name):
                    plan = flexiffusion.load_plan(path)
                    with flexiffusion.apply_plan(pipe, path):
                        images = pipe(batch_size=2, generator=torch.Generator().manual_seed(5), num_inference_steps=plan.sampler.steps,
                                      output_type="pt").images
                    noise = randn_tensor((2, 1, 28, 28), generator=torch.Generator().manual_seed(5))
                    err = relative_l2(images, self.engine_images(path, noise))
                    print(f"{pipeline_name} {name:>16}: relative L2 to the engine {err:.2e}")
                    self.assertLessEqual(err, 1e-3)

    def test_a_ddpm_plan_in_its_pipeline_is_the_pipeline(self):
        from diffusers import DDPMScheduler
        pipe = self.pipelines()["DDPMPipeline"]
        path = Path(self.tmp.name) / "ddpm.json"
        engine("plan", "teacher", "--scheduler", "ddpm", "--steps", "10", "--out", path)
        with flexiffusion.apply_plan(pipe, path):
            planned = pipe(batch_size=2, generator=torch.Generator().manual_seed(9), num_inference_steps=10, output_type="pt").images
        pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        plain = pipe(batch_size=2, generator=torch.Generator().manual_seed(9), num_inference_steps=10, output_type="pt").images
        self.assertLessEqual(relative_l2(planned, plain), 1e-6)

    def test_euler_in_a_pipeline_that_does_not_scale_is_refused_and_runs_in_a_loop(self):
        path = Path(self.tmp.name) / "euler.json"
        engine("plan", "teacher", "--scheduler", "euler", "--steps", "6", "--out", path)
        pipe = ddim_pipeline()
        with flexiffusion.apply_plan(pipe, path):
            with self.assertRaisesRegex(PlanError, "scale_model_input"):
                pipe(batch_size=1, num_inference_steps=6)
            noise = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
            ours = (hand_loop(pipe, noise) / 2 + 0.5).clamp(0, 1)
        self.assertLessEqual(relative_l2(ours, self.engine_images(path, noise)), 1e-3)

    def test_eta_is_the_plans(self):
        pipe = ddim_pipeline()
        with flexiffusion.apply_plan(pipe, self.plans["unipc"]):
            with self.assertRaisesRegex(PlanError, "eta=0.5 applies to DDIM"):
                pipe(batch_size=1, num_inference_steps=10, eta=0.5)


class PipelineUse(unittest.TestCase):
    def setUp(self):
        self.pipe = ddim_pipeline()
        self.plan = {"format": "flexiffusion-step-plan", "version": 1,
                     "sampler": {"scheduler": "ddim", "steps": 6, "eta": 0},
                     "actions": ["full", "partial:2", "null", "full", "partial:0", "full"]}

    def test_pipeline_call_equals_the_hand_loop_and_remove_restores(self):
        original_scheduler = self.pipe.scheduler
        handle = flexiffusion.apply_plan(self.pipe, self.plan)
        self.assertIsNot(self.pipe.scheduler, original_scheduler)
        images = self.pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=6, output_type="pt").images
        noise = randn_tensor((2, 1, 28, 28), generator=torch.Generator().manual_seed(3))
        expected = (hand_loop(self.pipe, noise) / 2 + 0.5).clamp(0, 1)
        self.assertLessEqual(relative_l2(images, expected), 1e-6)
        # A second call starts over (the counter resets with set_timesteps).
        again = self.pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=6, output_type="pt").images
        self.assertTrue(torch.equal(again, images))
        handle.remove()
        self.assertIs(self.pipe.scheduler, original_scheduler)
        self.assertNotIn("forward", self.pipe.unet.__dict__)
        plain = self.pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=6, output_type="pt").images
        self.assertGreater(relative_l2(plain, images), 1e-4)  # partial and null steps changed the images

    def test_misfits_are_refused_with_the_reason(self):
        handle = flexiffusion.apply_plan(self.pipe, self.plan)
        with self.assertRaisesRegex(PlanError, "num_inference_steps=6"):
            self.pipe(batch_size=1, num_inference_steps=50)
        handle.remove()
        with self.assertRaisesRegex(PlanError, "branch 99 does not exist"):
            flexiffusion.apply_plan(self.pipe, {**self.plan, "actions": ["full", "partial:99"] + ["full"] * 4})
        with self.assertRaisesRegex(PlanError, "5 actions"):
            flexiffusion.apply_plan(self.pipe, {**self.plan, "actions": ["full"] * 5})
        with self.assertRaisesRegex(PlanError, "first step must be full"):
            flexiffusion.apply_plan(self.pipe, {**self.plan, "actions": ["null"] + ["full"] * 5})
        with self.assertRaisesRegex(PlanError, "unknown scheduler 'lms'"):
            flexiffusion.load_plan({**self.plan, "sampler": {"scheduler": "lms", "steps": 6}})
        with self.assertRaisesRegex(PlanError, "not an action"):
            flexiffusion.load_plan({**self.plan, "actions": ["full", "half"] + ["full"] * 4})
        with self.assertRaisesRegex(PlanError, "version 2"):
            flexiffusion.load_plan({**self.plan, "version": 2})
        with self.assertRaisesRegex(PlanError, "cannot read step plan"):
            flexiffusion.load_plan("/nonexistent/plan.json")
        # One file, one reading: a key twice and NaN are refused here as the engine refuses them.
        with tempfile.TemporaryDirectory() as tmp:
            twice = Path(tmp) / "twice.json"
            twice.write_text('{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2}, '
                             '"actions": ["full", "partial:1"], "actions": ["full", "full"]}')
            with self.assertRaisesRegex(PlanError, 'the key "actions" stands twice'):
                flexiffusion.load_plan(twice)
            with self.assertRaises(AssertionError) as refused:
                engine("plan", "show", twice)
            self.assertIn('"actions" stands twice', str(refused.exception))
            nan = Path(tmp) / "nan.json"
            nan.write_text('{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 1, "eta": NaN}, '
                           '"actions": ["full"]}')
            with self.assertRaisesRegex(PlanError, "NaN is not a JSON number"):
                flexiffusion.load_plan(nan)
        # UniPC takes a list only where its σ are the timesteps' (set after set_timesteps).
        with self.assertRaisesRegex(PlanError, "use_karras_sigmas"):
            set_explicit_timesteps(UniPCMultistepScheduler(use_karras_sigmas=True), [900, 500, 100])
        with self.assertRaisesRegex(PlanError, "outside the 1000 training timesteps"):
            set_explicit_timesteps(UniPCMultistepScheduler(), [1200, 500, 100])
        # Outside a run, or past the plan's end.
        handle = flexiffusion.apply_plan(self.pipe, self.plan)
        x = torch.randn(1, 1, 28, 28)
        with self.assertRaisesRegex(PlanError, "set_timesteps"):
            self.pipe.unet(x, 10)
        self.pipe.scheduler.set_timesteps(6)
        with torch.no_grad():
            for t in self.pipe.scheduler.timesteps:
                self.pipe.unet(x, t)
            with self.assertRaisesRegex(PlanError, "one more"):
                self.pipe.unet(x, 1)
        handle.remove()

    def test_load_plan_gives_a_typed_plan(self):
        plan = flexiffusion.load_plan(self.plan)
        self.assertEqual(plan.sampler.steps, 6)
        self.assertEqual(plan.counts, {"full": 3, "partial": 2, "null": 1})
        self.assertEqual(plan.branches, (0, 2))
        self.assertEqual(plan.cost(), 5)
        self.assertAlmostEqual(plan.cost({0: 0.1, 2: 0.5}), 3.6)
        self.assertEqual(flexiffusion.load_plan(plan.to_dict()), plan)


class StableDiffusionUNet(unittest.TestCase):
    """Partial steps on UNet2DConditionModel through a planned UNet: DeepCache's shallow path at every
    branch against the goldens written by scripts/goldens/make_sd_unet_goldens.py (which the engine matches)."""

    def test_partial_steps_match_the_goldens(self):
        for name, variant in (("sd15-layout", "fp16"), ("sd2-layout", None)):
            folder = GOLDENS / name
            unet = UNet2DConditionModel.from_pretrained(str(folder), subfolder="unet" if (folder / "unet").exists() else None,
                                                        variant=variant).float().eval()
            golden = load_file(str(folder / "golden.safetensors"))
            ehs = golden["encoder_hidden_states"]
            branches = sorted(int(k[len("partial_m"):]) for k in golden if k.startswith("partial_m"))
            for m in branches:
                with self.subTest(model=name, branch=m):
                    pipe = types.SimpleNamespace(unet=unet, scheduler=DDIMScheduler())
                    plan = {"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2},
                            "actions": ["full", f"partial:{m}"]}
                    with flexiffusion.apply_plan(pipe, plan):
                        pipe.scheduler.set_timesteps(2)
                        with torch.no_grad():
                            pipe.unet(golden["sample_full"], golden["t_full"][0], encoder_hidden_states=ehs)
                            got = pipe.unet(golden["sample_partial"], golden["t_partial"][0], encoder_hidden_states=ehs).sample
                    self.assertLessEqual(relative_l2(got, golden[f"partial_m{m}"]), 1e-4)
            self.assertNotIn("forward", unet.__dict__)


if __name__ == "__main__":
    unittest.main()
