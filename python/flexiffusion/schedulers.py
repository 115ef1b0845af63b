"""The diffusers scheduler of a plan's sampler: `from_config` of the pipeline's own scheduler
config, with the plan's solver, order, PNDM mode and timestep spacing — the engine's choices where a config leaves
them open (Sources/Engine/Schedulers)."""
import numpy as np
import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler,
                       UniPCMultistepScheduler)

from .plan import PlanError, Sampler

CLASSES = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "dpmsolver++": DPMSolverMultistepScheduler,
           "dpmsolver": DPMSolverMultistepScheduler, "unipc": UniPCMultistepScheduler, "euler": EulerDiscreteScheduler,
           "pndm": PNDMScheduler}


def make_scheduler(sampler: Sampler, config):
    """A fresh scheduler of `sampler`'s kind from the pipeline's scheduler `config`."""
    config = dict(config)
    overrides = {}
    if sampler.scheduler in ("dpmsolver++", "dpmsolver"):
        overrides["algorithm_type"] = sampler.scheduler
        if sampler.scheduler == "dpmsolver" and "final_sigmas_type" not in config:
            overrides["final_sigmas_type"] = "sigma_min"  # (the engine's choice; diffusers' default fails for it)
    if sampler.order is not None:
        overrides["solver_order"] = sampler.order
    if sampler.scheduler == "pndm":
        overrides["skip_prk_steps"] = True if sampler.skip_prk_steps is None else sampler.skip_prk_steps
    if sampler.timestep_spacing is not None:
        overrides["timestep_spacing"] = sampler.timestep_spacing
    try:
        return CLASSES[sampler.scheduler].from_config(config, **overrides)
    except (ValueError, TypeError, NotImplementedError) as e:
        raise PlanError(f"the pipeline's scheduler config does not make a {sampler.scheduler} scheduler: {e}") from None


def set_explicit_timesteps(scheduler, timesteps, device=None, set_timesteps=None):
    """`scheduler.set_timesteps` for an explicit timestep list. UniPC's `set_timesteps` takes none:
    it is set up for that many steps, then given the list and the σ its spacing branch computes for
    those timesteps (σ of each, then the final σ), as the engine's UniPC takes such a list.
    `set_timesteps`: the scheduler's own (where `apply_plan` has replaced the attribute)."""
    timesteps = [int(t) for t in timesteps]
    set_timesteps = set_timesteps or scheduler.set_timesteps
    if not isinstance(scheduler, UniPCMultistepScheduler):
        set_timesteps(device=device, timesteps=timesteps)
        return
    c = scheduler.config
    for key in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas", "use_dynamic_shifting"):
        if c.get(key):
            raise PlanError(f"explicit UniPC timesteps with {key} = true (the σ would not be the timesteps')")
    if c.final_sigmas_type not in ("zero", "sigma_min"):
        raise PlanError(f"final_sigmas_type {c.final_sigmas_type!r} is not zero or sigma_min")
    if timesteps[0] >= c.num_train_timesteps:
        raise PlanError(f"timestep {timesteps[0]} is outside the {c.num_train_timesteps} training timesteps")
    set_timesteps(len(timesteps), device=device)
    full = np.array(((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod) ** 0.5)
    last = 0 if c.final_sigmas_type == "zero" else full[0]
    sigmas = np.concatenate([full[timesteps], [last]]).astype(np.float32)
    scheduler.sigmas = torch.from_numpy(sigmas)
    scheduler.timesteps = torch.tensor(timesteps, device=device, dtype=torch.int64)
