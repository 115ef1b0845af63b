#!/usr/bin/env python3
"""Writes Tests/EngineTests/Goldens/schedulers.json: diffusers' DDIMScheduler and DDPMScheduler
(0.42) timesteps, noise schedules and single steps on random tensors, for the scheduler tests.

    .venv-ref/bin/python scripts/goldens/make_scheduler_goldens.py
"""
import json
import os

import torch
from diffusers import DDIMScheduler, DDPMScheduler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens", "schedulers.json")

CONFIGS = [
    ("ddim", dict(), 50, 0.0),
    ("ddim", dict(timestep_spacing="trailing", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  clip_sample=False, set_alpha_to_one=False), 20, 0.0),
    ("ddim", dict(timestep_spacing="linspace", beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction"), 7, 0.5),
    ("ddim", dict(steps_offset=1, prediction_type="sample", clip_sample_range=0.8), 10, 1.0),
    ("ddim", dict(num_train_timesteps=500, timestep_spacing="trailing", prediction_type="epsilon"), 33, 0.3),
    ("ddpm", dict(), 1000, None),
    ("ddpm", dict(variance_type="fixed_large", prediction_type="v_prediction"), 25, None),
    ("ddpm", dict(variance_type="fixed_small_log", beta_schedule="squaredcos_cap_v2", clip_sample=False), 12, None),
]


def main():
    gen = torch.Generator().manual_seed(0)
    cases = []
    for kind, cfg, steps, eta in CONFIGS:
        sched = (DDIMScheduler if kind == "ddim" else DDPMScheduler)(**cfg)
        sched.set_timesteps(steps)
        ts = sched.timesteps.tolist()
        step_cases = []
        for index in sorted({0, 1, len(ts) // 2, len(ts) - 1}):
            t = ts[index]
            sample = torch.randn(1, 4, 4, 4, generator=gen) * 1.5
            model_output = torch.randn(1, 4, 4, 4, generator=gen)
            noise = torch.randn(1, 4, 4, 4, generator=gen)
            if kind == "ddim":
                prev = sched.step(model_output, t, sample, eta=eta, variance_noise=noise).prev_sample
            else:
                # DDPM draws its own noise: replay it through a generator seeded for this step.
                g = torch.Generator().manual_seed(1000 + index)
                prev = sched.step(model_output, t, sample, generator=g).prev_sample
                noise = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1000 + index))
            step_cases.append(dict(index=index, timestep=t, sample=sample.flatten().tolist(), model_output=model_output.flatten().tolist(),
                                   noise=noise.flatten().tolist(), prev_sample=prev.flatten().tolist()))
        cases.append(dict(kind=kind, config=dict(sched.config), steps=steps, eta=eta, timesteps=ts,
                          alphas_cumprod=sched.alphas_cumprod.tolist(), step_cases=step_cases))
    with open(OUT, "w") as f:
        json.dump(cases, f)
    print(f"wrote {OUT}: {len(cases)} scheduler configurations")


if __name__ == "__main__":
    main()


def ddim_loop():
    """A whole DDIM run (10 steps, eta 0) of the cifar-layout golden UNet from fixed noise, as
    DDIMPipeline runs it: Goldens/cifar-layout/ddim10.safetensors (noise, final sample)."""
    from diffusers import UNet2DModel
    from safetensors.torch import save_file
    folder = os.path.join(os.path.dirname(OUT), "cifar-layout")
    unet = UNet2DModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    sched = DDIMScheduler()
    sched.set_timesteps(10)
    noise = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    x = noise
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    save_file({"noise": noise.contiguous(), "sample": x.contiguous()}, os.path.join(folder, "ddim10.safetensors"))
    print("wrote ddim10.safetensors")


ddim_loop()
