"""`apply_plan`: a plan's sampler as the pipeline's scheduler and its full / partial / null steps on
the pipeline's UNet, for pipeline calls and hand-written loops alike; `PlanHandle.remove()` undoes it."""
import functools
import inspect
import sys

from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from .plan import Plan, PlanError, load_plan
from .schedulers import make_scheduler, set_explicit_timesteps
from .unet import SplitUNet


class PlanHandle:
    """What `apply_plan` changed on a pipeline. `step` is the index of the next model evaluation in
    the current run (reset by the scheduler's `set_timesteps`, which every pipeline call makes)."""

    def __init__(self, pipe, plan: Plan):
        if not hasattr(pipe, "unet") or not hasattr(pipe, "scheduler"):
            raise PlanError(f"{type(pipe).__name__} has no unet and scheduler")
        self.pipe, self.plan = pipe, plan
        self.split = SplitUNet(pipe.unet)
        plan.validate(branch_count=self.split.branch_count)
        self.scheduler = make_scheduler(plan.sampler, pipe.scheduler.config)
        self.step = None  # None until set_timesteps starts a run
        self._cache, self._last = {}, None
        self._original_scheduler = pipe.scheduler
        self._set_timesteps = self.scheduler.set_timesteps
        self.scheduler.set_timesteps = self._planned_set_timesteps
        self._step = self.scheduler.step
        self._step_parameters = set(inspect.signature(self._step).parameters)
        # (A function wrapping the step, so that `inspect.signature(scheduler.step)` — which
        # StableDiffusionPipeline asks before it passes eta or generator — sees the scheduler's own.)
        self.scheduler.step = functools.wraps(self._step)(lambda *a, **k: self._planned_step(*a, **k))
        pipe.scheduler = self.scheduler
        self._unet_forward = type(pipe.unet).forward.__get__(pipe.unet)
        self._signature = inspect.signature(type(pipe.unet).forward)
        pipe.unet.forward = self._planned_forward
        self.removed = False

    # -- the scheduler ----------------------------------------------------------------------------

    def _planned_set_timesteps(self, num_inference_steps=None, device=None, **kwargs):
        self._check_caller()
        s = self.plan.sampler
        if kwargs.get("timesteps") is not None or kwargs.get("sigmas") is not None:
            raise PlanError("the plan sets the timesteps; call the pipeline without timesteps= or sigmas=")
        if num_inference_steps is not None and num_inference_steps != s.steps:
            raise PlanError(f"the plan runs {s.steps} {s.scheduler} steps; call the pipeline with num_inference_steps={s.steps} "
                            f"(not {num_inference_steps})")
        if s.timesteps is not None:
            set_explicit_timesteps(self.scheduler, s.timesteps, device, set_timesteps=self._set_timesteps)
        else:
            self._set_timesteps(s.steps, device=device)
        n = len(self.scheduler.timesteps) - s.begin
        if n != len(self.plan.actions):
            raise PlanError(f"the scheduler makes {n} model evaluations, the plan has {len(self.plan.actions)} actions")
        self.step, self._cache, self._last = 0, {}, None

    def _planned_step(self, *args, **kwargs):
        """The plan's scheduler's step, called as the pipelines call theirs: DDIMPipeline passes `eta`,
        `use_clipped_model_output` and `generator`, DDPMPipeline `generator`; a scheduler whose step
        takes none of them (UniPC, PNDM) gets those it takes. A DDIM plan's eta is the plan's."""
        s = self.plan.sampler
        eta = kwargs.pop("eta", None)
        if s.scheduler == "ddim":
            if eta not in (None, 0, 0.0) and eta != s.eta:
                raise PlanError(f"the plan's DDIM eta is {s.eta}; call the pipeline without eta={eta}")
            kwargs["eta"] = s.eta
        elif eta not in (None, 0, 0.0):
            raise PlanError(f"eta={eta} applies to DDIM; the plan's sampler is {s.scheduler}")
        return self._step(*args, **{k: v for k, v in kwargs.items() if k in self._step_parameters})

    def _check_caller(self):
        """Refuses a pipeline call that cannot run the plan's sampler: DDIMPipeline and DDPMPipeline
        neither scale the initial noise (`init_noise_sigma`) nor the model's input (`scale_model_input`),
        which Euler's σ-space sampler needs; a loop over the timesteps that does both runs it."""
        caller = sys._getframe(2)
        if caller.f_code.co_name != "__call__" or caller.f_locals.get("self") is not self.pipe:
            return
        if type(self.pipe).__name__ in ("DDIMPipeline", "DDPMPipeline") and self.plan.sampler.scheduler == "euler":
            raise PlanError(f"{type(self.pipe).__name__} does not scale the noise and the model's input as euler needs "
                            "(init_noise_sigma, scale_model_input): run the plan in a loop over pipe.scheduler.timesteps "
                            "that does (README, 'Use a searched plan in diffusers')")

    # -- the UNet ---------------------------------------------------------------------------------

    def _planned_forward(self, *args, **kwargs):
        if self.step is None:
            raise PlanError("a planned UNet runs inside a run: call scheduler.set_timesteps (every pipeline call does) first")
        if self.step >= len(self.plan.actions):
            raise PlanError(f"the plan has {len(self.plan.actions)} model evaluations and this is one more: "
                            "call scheduler.set_timesteps to start a new run")
        action = self.plan.actions[self.step]
        bound = self._signature.bind(self.pipe.unet, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        s = self.plan.sampler
        if self.step == 0 and s.strength is not None:
            # An image-to-image run starts at the plan's strength's first kept timestep (get_timesteps).
            want = float(self.scheduler.timesteps[s.begin])
            t = a["timestep"]
            got = float(t.flatten()[0]) if hasattr(t, "flatten") else float(t)
            if got != want:
                raise PlanError(f"the plan runs at strength {s.strength} (its first timestep {want:g}); the pipeline started at "
                                f"{got:g}: call it with strength={s.strength}")
        return_dict = a.get("return_dict", True)
        if action.kind == "full":
            out, self._cache = self.split.full(self.plan.branches, self._unet_forward, args, kwargs)
            self._last = out.sample if return_dict else out[0]
            self.step += 1
            return out
        if action.kind == "partial":
            for key in ("class_labels", "timestep_cond", "added_cond_kwargs", "down_block_additional_residuals",
                        "mid_block_additional_residual", "down_intrablock_additional_residuals"):
                if key == "added_cond_kwargs" and self.pipe.unet.config.get("addition_embed_type") == "text_time":
                    continue  # (SDXL's text_embeds and time_ids: the partial step takes them)
                if a.get(key) is not None:
                    raise PlanError(f"step {self.step}: a partial step does not take {key}")
            self._last = self.split.partial(action.branch, self._cache[action.branch], a["sample"], a["timestep"],
                                            encoder_hidden_states=a.get("encoder_hidden_states"),
                                            attention_mask=a.get("attention_mask"),
                                            cross_attention_kwargs=a.get("cross_attention_kwargs"),
                                            encoder_attention_mask=a.get("encoder_attention_mask"),
                                            added_cond_kwargs=a.get("added_cond_kwargs"))
        if a["sample"].shape != self._last.shape:
            raise PlanError(f"step {self.step}: the input's shape {tuple(a['sample'].shape)} differs from the last step's "
                            f"{tuple(self._last.shape)} (a null step returns the last output)")
        self.step += 1
        if not return_dict:
            return (self._last,)
        return (UNet2DConditionOutput if self.split.conditional else UNet2DOutput)(sample=self._last)

    # -- undo -------------------------------------------------------------------------------------

    def remove(self):
        """Restores the pipeline's scheduler and UNet."""
        if self.removed:
            return
        self.pipe.scheduler = self._original_scheduler
        del self.pipe.unet.forward
        self.removed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def apply_plan(pipe, plan) -> PlanHandle:
    """Runs `plan` (a path to a plan or search results file, a dict, or a `Plan`) on `pipe`, a
    diffusers pipeline with a UNet2DModel or UNet2DConditionModel (SDXL's included): its scheduler becomes the plan's
    sampler (`from_config` of the pipeline's scheduler config), and each model evaluation follows the
    plan's action — in a pipeline call (`num_inference_steps` must be the plan's steps) and in a loop
    over `pipe.scheduler.timesteps` after `pipe.scheduler.set_timesteps(...)`. Under classifier-free
    guidance both halves of the batch follow the plan. A plan whose branches, step count or sampler
    do not fit is refused with a `PlanError` naming why."""
    return PlanHandle(pipe, load_plan(plan))
