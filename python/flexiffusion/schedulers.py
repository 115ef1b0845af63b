"""The diffusers scheduler of a plan's sampler: `from_config` of the pipeline's own scheduler
config, with the plan's solver, order, PNDM mode and timestep spacing — the engine's choices where a config leaves
them open (Sources/Engine/Schedulers)."""
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
