"""Flexiffusion step plans on diffusers pipelines.

    handle = flexiffusion.apply_plan(pipe, "plan.json")   # or a dict, or a search's results file
    pipe(..., num_inference_steps=handle.plan.sampler.steps)
    handle.remove()

`load_plan` reads and checks a plan without a pipeline.
"""
from .plan import Action, Plan, PlanError, Sampler, load_plan
from .apply import PlanHandle, apply_plan

__all__ = ["Action", "Plan", "PlanError", "PlanHandle", "Sampler", "apply_plan", "load_plan"]
__version__ = "0.1.0"
