#!/usr/bin/env python3
"""Writes Tests/EngineTests/Goldens/solvers.json and Goldens/cifar-layout/{dpmsolver,unipc,euler,pndm}10.safetensors and
pndm_prk6.safetensors: diffusers' (0.42) DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler and
PNDMScheduler — timesteps, sigmas and
whole runs of each solver on random model outputs for several configurations (orders 1-3,
dpmsolver++/dpmsolver, midpoint/heun, bh1/bh2, corrector on and partly off, Karras sigmas, spacings,
final sigmas, prediction types; PNDM with and without Runge–Kutta steps), and 10-step runs of the cifar-layout golden UNet from fixed noise as
a pipeline drives them, with and without null steps.

    .venv-ref/bin/python scripts/goldens/make_solver_goldens.py
"""
import json
import os
import sys

import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, UNet2DModel, UniPCMultistepScheduler
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_deepcache_goldens import run_plan  # noqa: E402  (plans with DeepCache's shallow path)

GOLDENS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")

# (config given to from_config on top of a DDIM config, steps); the DDIM-like base keeps what our
# default model's scheduler_config.json has, as `DPMSolverMultistepScheduler.from_config(ddim)` sees it.
DDIM_BASE = dict(_class_name="DDIMScheduler", num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                 clip_sample=False, prediction_type="epsilon", set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
EULER_CASES = [
    ("euler from DDIM config (leading)", dict(DDIM_BASE), 10),
    ("euler defaults (linspace)", dict(), 20),
    ("euler trailing, v_prediction", dict(timestep_spacing="trailing", prediction_type="v_prediction"), 9),
    ("euler karras, scaled_linear", dict(use_karras_sigmas=True, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012), 15),
    ("euler sample prediction, sigma_min", dict(prediction_type="sample", final_sigmas_type="sigma_min"), 7),
]

UNIPC_CASES = [
    ("unipc from DDIM config, bh2 order 2", dict(DDIM_BASE), 10),
    ("unipc defaults, 20 steps", dict(), 20),
    # (bh1 and noise prediction need a nonzero final sigma: with final_sigmas_type "zero" diffusers' last
    # step is NaN — 0 · ∞ — and the engine refuses noise prediction with it.)
    ("unipc order 3, bh1", dict(solver_order=3, solver_type="bh1", final_sigmas_type="sigma_min"), 12),
    ("unipc order 3, 25 steps, no lower order final", dict(solver_order=3, lower_order_final=False, final_sigmas_type="sigma_min"), 25),
    ("unipc order 1", dict(solver_order=1), 6),
    ("unipc noise prediction, v_prediction, trailing", dict(predict_x0=False, prediction_type="v_prediction", timestep_spacing="trailing",
                                                                      final_sigmas_type="sigma_min"), 9),
    ("unipc corrector off at 0 and 3", dict(disable_corrector=[0, 3]), 8),
    ("unipc karras, sigma_min", dict(use_karras_sigmas=True, final_sigmas_type="sigma_min", beta_schedule="scaled_linear",
                                     beta_start=0.00085, beta_end=0.012), 15),
    ("unipc sample prediction, cosine", dict(prediction_type="sample", beta_schedule="squaredcos_cap_v2"), 7),
]

# Stable Diffusion 1.x's scheduler_config.json (PNDMScheduler, PLMS only).
SD_PNDM = dict(_class_name="PNDMScheduler", beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
               set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, trained_betas=None, clip_sample=False)
PNDM_CASES = [
    ("pndm Stable Diffusion config, 10 steps", dict(SD_PNDM), 10),
    ("pndm Stable Diffusion config, 50 steps", dict(SD_PNDM), 50),
    ("pndm defaults (Runge-Kutta), 10 steps", dict(), 10),
    ("pndm Runge-Kutta from DDIM config, 4 steps", dict(DDIM_BASE), 4),
    ("pndm Runge-Kutta linspace, 7 steps", dict(timestep_spacing="linspace"), 7),
    ("pndm PLMS 1 step", dict(skip_prk_steps=True), 1),
    ("pndm PLMS 2 steps", dict(skip_prk_steps=True), 2),
    ("pndm PLMS v_prediction trailing, 9 steps", dict(skip_prk_steps=True, prediction_type="v_prediction", timestep_spacing="trailing"), 9),
    ("pndm Runge-Kutta v_prediction, cosine, 12 steps", dict(prediction_type="v_prediction", beta_schedule="squaredcos_cap_v2",
                                                              set_alpha_to_one=True), 12),
]

# Explicit timestep lists (set_timesteps(timesteps=...)): Align Your Steps' 10-step schedule for SD 1.5
# on DPM-Solver++, and uneven lists on DPM-Solver (noise prediction, order 3) and Euler.
AYS_SD15 = [999, 850, 736, 645, 545, 455, 343, 233, 124, 24]
EXPLICIT_CASES = [
    ("dpmsolver", "explicit timesteps: Align Your Steps on DPM-Solver++ 2M", dict(SD_PNDM, _class_name="DPMSolverMultistepScheduler"), AYS_SD15),
    ("dpmsolver", "explicit timesteps: dpmsolver 3M, sigma_min", dict(algorithm_type="dpmsolver", solver_order=3, final_sigmas_type="sigma_min"),
     [980, 700, 690, 400, 120, 3]),
    ("euler", "explicit timesteps: euler, leading config", dict(DDIM_BASE), [999, 900, 500, 499, 250, 10]),
    # UniPC's set_timesteps takes no list: the list with the σ its spacing branch computes for it (set_unipc_timesteps).
    ("unipc", "explicit timesteps: unipc bh2 order 3, leading config", dict(DDIM_BASE, solver_order=3), [801, 640, 420, 230, 90]),
    ("unipc", "explicit timesteps: unipc bh1, noise prediction, sigma_min", dict(solver_type="bh1", predict_x0=False, final_sigmas_type="sigma_min"),
     [999, 700, 500, 499, 100, 7]),
]


def set_unipc_timesteps(sched, timesteps):
    """UniPC set up for len(timesteps) steps, then given `timesteps` and σ as its set_timesteps' spacing
    branch computes them for any timesteps (no Karras/exponential/beta/flow sigmas): σ interpolated at
    each timestep, then the final σ (0, or σ at timestep 0 for sigma_min)."""
    import numpy as np
    sched.set_timesteps(len(timesteps))
    full = np.array(((1 - sched.alphas_cumprod) / sched.alphas_cumprod) ** 0.5)
    sigmas = np.interp(np.array(timesteps, dtype=np.float64), np.arange(0, len(full)), full)
    last = 0 if sched.config.final_sigmas_type == "zero" else ((1 - sched.alphas_cumprod[0]) / sched.alphas_cumprod[0]) ** 0.5
    sched.sigmas = torch.from_numpy(np.concatenate([sigmas, [last]]).astype(np.float32))
    sched.timesteps = torch.tensor(timesteps, dtype=torch.int64)

CASES = [
    ("from DDIM config, 2M", dict(DDIM_BASE), 10),
    ("from DDIM config, 2M, 20 steps", dict(DDIM_BASE), 20),
    ("defaults, 3M", dict(solver_order=3), 25),
    ("defaults, 3M, 8 steps", dict(solver_order=3), 8),
    ("order 1", dict(solver_order=1), 6),
    ("heun, trailing", dict(solver_type="heun", timestep_spacing="trailing"), 12),
    ("karras", dict(use_karras_sigmas=True, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012), 15),
    ("dpmsolver, sigma_min, 3M", dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_order=3), 16),
    ("dpmsolver heun, v_prediction", dict(algorithm_type="dpmsolver", final_sigmas_type="sigma_min", solver_type="heun",
                                          prediction_type="v_prediction"), 9),
    ("sample prediction, euler at final, cosine", dict(prediction_type="sample", euler_at_final=True, beta_schedule="squaredcos_cap_v2",
                                                       lower_order_final=False), 18),
    ("leading with offset, sigma_min", dict(timestep_spacing="leading", steps_offset=1, final_sigmas_type="sigma_min"), 7),
]


def main():
    gen = torch.Generator().manual_seed(0)
    cases = []
    classes = dict(dpmsolver=DPMSolverMultistepScheduler, unipc=UniPCMultistepScheduler, euler=EulerDiscreteScheduler, pndm=PNDMScheduler)
    for kind, name, cfg, steps in ([("dpmsolver", *c) for c in CASES] + [("unipc", *c) for c in UNIPC_CASES]
                                   + [("euler", *c) for c in EULER_CASES] + [("pndm", *c) for c in PNDM_CASES] + EXPLICIT_CASES):
        sched = classes[kind].from_config(cfg)
        explicit = steps if isinstance(steps, list) else None
        if explicit and kind == "unipc":
            set_unipc_timesteps(sched, explicit)
            steps = len(explicit)
        elif explicit:
            sched.set_timesteps(timesteps=explicit)
            steps = len(explicit)
        else:
            sched.set_timesteps(steps)
        sample = torch.randn(1, 4, 4, 4, generator=gen) * 10
        start = sample.clone()
        outputs, samples = [], []
        for t in sched.timesteps:
            m = torch.randn(1, 4, 4, 4, generator=gen)
            sample = sched.step(m, t, sample).prev_sample
            outputs.append(m.flatten().tolist())
            samples.append(sample.flatten().tolist())
        given = {k: v for k, v in cfg.items()}
        cases.append(dict(kind=kind, name=name, config=given, steps=steps, explicit_timesteps=explicit, timesteps=sched.timesteps.tolist(),
                          sigmas=sched.sigmas.tolist() if hasattr(sched, "sigmas") else [],
                          init_noise_sigma=float(sched.init_noise_sigma),
                          start=start.flatten().tolist(), model_outputs=outputs, samples=samples))
    with open(os.path.join(GOLDENS, "solvers.json"), "w") as f:
        json.dump(cases, f)
    print(f"wrote solvers.json: {len(cases)} DPM-Solver, UniPC, Euler and PNDM configurations ({len(EXPLICIT_CASES)} with explicit timesteps)")
    folder = os.path.join(GOLDENS, "cifar-layout")
    unet = UNet2DModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    unet_run(unet, DPMSolverMultistepScheduler(), os.path.join(folder, "dpmsolver10.safetensors"))
    unet_run(unet, UniPCMultistepScheduler(), os.path.join(folder, "unipc10.safetensors"))
    unet_run(unet, EulerDiscreteScheduler(), os.path.join(folder, "euler10.safetensors"))
    # PNDM: 10 steps of PLMS (11 model evaluations, as Stable Diffusion samples), and 6 steps with the
    # Runge-Kutta warm-up (15 evaluations; the null steps fall inside Runge-Kutta groups).
    unet_run(unet, PNDMScheduler(skip_prk_steps=True), os.path.join(folder, "pndm10.safetensors"))
    unet_run(unet, PNDMScheduler(), os.path.join(folder, "pndm_prk6.safetensors"), steps=6)


# A plan with partial and null steps (one action per model evaluation; "full" for evaluations past its end).
PLAN = ["full", "partial:1", "null", "full", "partial:4", "partial:2", "full", "null", "partial:0", "full"]


def unet_run(unet, sched, path, steps=10):
    """`steps` steps of `sched` on `unet` from seed-8 noise, and the same with null steps 1, 4, 8 (model evaluations)."""
    sched.set_timesteps(steps)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    x = noise * sched.init_noise_sigma
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x).prev_sample
    sample_full = x
    # The same run as a plan with null steps: a null step gives the solver the last model output as
    # this step's output (the rule of plans on multistep solvers), and its history takes it as any other.
    null_steps = {1, 4, 8}
    x = noise * sched.init_noise_sigma
    sched.set_timesteps(steps)
    last = None
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            if i not in null_steps:
                last = unet(sched.scale_model_input(x, t), t).sample
            x = sched.step(last, t, x).prev_sample
    sample_nulls = x
    # A plan with partial steps too: DeepCache's shallow path fed with the feature the last full step
    # cached at that branch; the solver takes a partial step's output like a full one's.
    sched.set_timesteps(steps)
    actions = (PLAN + ["full"] * len(sched.timesteps))[:len(sched.timesteps)]
    with torch.no_grad():
        x = run_plan(unet, sched, noise, actions)
    save_file({"noise": noise.contiguous(), "sample": sample_full.contiguous(), "sample_null_1_4_8": sample_nulls.contiguous(),
               "sample_plan": x.contiguous()}, path)
    print(f"wrote {os.path.relpath(path, GOLDENS)} (the full run, a plan with null steps 1, 4, 8 and one with partial steps)")


if __name__ == "__main__":
    main()
