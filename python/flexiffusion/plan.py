"""Step plans as the engine writes them (docs/specs/plan-format.md): a sampler and one action per model
evaluation, read and checked as the engine checks them (Sources/Engine/Plans/StepPlan.swift)."""
import json
import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

FORMAT = "flexiffusion-step-plan"
VERSION = 1
SEARCH_FORMAT = "flexiffusion-search"
SCHEDULERS = ("ddim", "ddpm", "dpmsolver++", "dpmsolver", "unipc", "euler", "pndm")
MULTISTEP = ("dpmsolver++", "dpmsolver", "unipc")
TAKES_TIMESTEPS = ("dpmsolver++", "dpmsolver", "euler", "unipc")
SPACINGS = ("leading", "trailing", "linspace")


class PlanError(ValueError):
    """A plan that is malformed, or that does not fit the pipeline it is applied to."""


@dataclass(frozen=True)
class Action:
    """One model evaluation: `full` (the whole UNet; it caches deep features), `partial` (conv_in,
    the down path through skip `branch`, and the up path from there, fed with the feature the last
    full step cached at that branch) or `null` (no UNet: the last output again)."""
    kind: str
    branch: Optional[int] = None

    @staticmethod
    def parse(text: str) -> "Action":
        if text in ("full", "null"):
            return Action(text)
        if isinstance(text, str) and text.startswith("partial:"):
            b = text[len("partial:"):]
            if b.isdigit():
                return Action("partial", int(b))
        raise PlanError(f"{text!r} is not an action (full, partial:M or null)")

    def __str__(self) -> str:
        return f"partial:{self.branch}" if self.kind == "partial" else self.kind


@dataclass(frozen=True)
class Sampler:
    """The sampler a plan runs on, as diffusers' schedulers name their settings."""
    scheduler: str
    steps: int
    eta: float = 0.0
    order: Optional[int] = None
    skip_prk_steps: Optional[bool] = None
    timesteps: Optional[Tuple[int, ...]] = None
    timestep_spacing: Optional[str] = None
    #: Image-to-image's strength: the plan runs the last int(steps * strength) steps (diffusers' get_timesteps).
    strength: Optional[float] = None

    @property
    def begin(self) -> int:
        """The first step an image-to-image run keeps (diffusers' t_start; 0 from noise)."""
        if self.strength is None:
            return 0
        return self.steps - min(int(self.steps * self.strength), self.steps)

    @property
    def evaluations(self) -> int:
        """Model evaluations: the steps, except PNDM (PLMS: steps + 1; with Runge–Kutta: steps + 9);
        with a strength, those from its first kept step."""
        if self.scheduler != "pndm":
            return self.steps - self.begin
        if self.skip_prk_steps is False:
            return self.steps + 9 - self.begin
        return (1 if self.steps == 1 else self.steps + 1) - self.begin

    def validate(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise PlanError(f"unknown scheduler {self.scheduler!r} (one of {', '.join(SCHEDULERS)})")
        if not isinstance(self.steps, int) or not 0 < self.steps <= 1_000_000:
            raise PlanError(f"sampler steps must be 1…1,000,000, not {self.steps!r}")
        if not 0 <= self.eta <= 1:
            raise PlanError(f"eta must be in [0, 1], not {self.eta}")
        if self.scheduler != "ddim" and self.eta != 0:
            raise PlanError(f"eta applies to DDIM only (the sampler is {self.scheduler})")
        if self.order is not None and (self.scheduler not in MULTISTEP or self.order not in (1, 2, 3)):
            raise PlanError(f"order {self.order}: a multistep solver's order is 1, 2 or 3 (the sampler is {self.scheduler})")
        if self.skip_prk_steps is not None and self.scheduler != "pndm":
            raise PlanError(f"skip_prk_steps applies to pndm only (the sampler is {self.scheduler})")
        if self.timesteps is not None:
            if self.scheduler not in TAKES_TIMESTEPS:
                raise PlanError(f"explicit timesteps work with {', '.join(TAKES_TIMESTEPS)}, not {self.scheduler}")
            ts = self.timesteps
            if len(ts) != self.steps or ts[-1] < 0 or any(a <= b for a, b in zip(ts, ts[1:])):
                raise PlanError(f"timesteps {list(ts)} must be {self.steps} strictly decreasing values ≥ 0")
            if self.timestep_spacing is not None:
                raise PlanError(f"explicit timesteps and a {self.timestep_spacing} spacing exclude each other")
        if self.strength is not None:
            if not isinstance(self.strength, (int, float)) or not 0 <= self.strength <= 1:
                raise PlanError(f"the strength must be in [0, 1], not {self.strength!r}")
            if self.begin >= self.steps:
                raise PlanError(f"strength {self.strength} with {self.steps} steps keeps no step")
        if self.timestep_spacing is not None and self.timestep_spacing not in SPACINGS:
            raise PlanError(f"timestep_spacing {self.timestep_spacing!r} is not one of {', '.join(SPACINGS)}")

    def to_dict(self) -> Dict:
        d = {"scheduler": self.scheduler, "steps": self.steps, "eta": self.eta}
        if self.order is not None:
            d["order"] = self.order
        if self.skip_prk_steps is not None:
            d["skip_prk_steps"] = self.skip_prk_steps
        if self.timesteps is not None:
            d["timesteps"] = list(self.timesteps)
        if self.timestep_spacing is not None:
            d["timestep_spacing"] = self.timestep_spacing
        if self.strength is not None:
            d["strength"] = self.strength
        return d


@dataclass(frozen=True)
class Plan:
    """A sampler and one action per model evaluation."""
    sampler: Sampler
    actions: Tuple[Action, ...]
    description: str = ""

    @property
    def counts(self) -> Dict[str, int]:
        """How many full, partial and null steps."""
        return {k: sum(a.kind == k for a in self.actions) for k in ("full", "partial", "null")}

    @property
    def branches(self) -> Tuple[int, ...]:
        """The branches the partial steps use (the features a full step caches)."""
        return tuple(sorted({a.branch for a in self.actions if a.kind == "partial"}))

    def cost(self, partial_fraction: Union[Mapping[int, float], float, None] = None) -> float:
        """The plan's cost in full UNet evaluations: a null step 0, a partial step at branch M
        `partial_fraction[M]` (its share of a full step's time or MACs, from `flexiffusion profile`),
        or, without fractions, the number of UNet evaluations that are not null."""
        total = 0.0
        for a in self.actions:
            if a.kind == "full":
                total += 1
            elif a.kind == "partial":
                if partial_fraction is None:
                    total += 1
                elif isinstance(partial_fraction, (int, float)):
                    total += float(partial_fraction)
                else:
                    total += float(partial_fraction[a.branch])
        return total

    def validate(self, branch_count: Optional[int] = None) -> None:
        self.sampler.validate()
        if len(self.actions) != self.sampler.evaluations:
            raise PlanError(f"the plan has {len(self.actions)} actions for {self.sampler.scheduler} "
                            f"{self.sampler.steps} steps ({self.sampler.evaluations} model evaluations)")
        if not self.actions or self.actions[0].kind != "full":
            raise PlanError("the first step must be full")
        if branch_count is not None:
            for i, a in enumerate(self.actions):
                if a.kind == "partial" and not 0 <= a.branch < branch_count:
                    raise PlanError(f"step {i}: branch {a.branch} does not exist; the UNet has branches 0…{branch_count - 1}")

    def to_dict(self) -> Dict:
        return {"format": FORMAT, "version": VERSION, "sampler": self.sampler.to_dict(),
                "description": self.description, "actions": [str(a) for a in self.actions]}

    def __str__(self) -> str:
        c = self.counts
        spacing = f", {self.sampler.timestep_spacing} spacing" if self.sampler.timestep_spacing else ""
        return (f"{self.sampler.scheduler} {self.sampler.steps} steps{spacing}: {c['full']} full, {c['partial']} partial, "
                f"{c['null']} null" + (f" ({self.description})" if self.description else ""))


def _from_dict(doc: Mapping, source: str) -> Plan:
    if not isinstance(doc, Mapping):
        raise PlanError(f"{source}: not a JSON object")
    if doc.get("format") == SEARCH_FORMAT:
        best = doc.get("best_plan")
        if not best:
            scored = len(((doc.get("state") or {}).get("records") or {}))
            if scored:
                raise PlanError(f"{source}: the search stopped before its first generation was chosen ({scored} plans scored, "
                                "no best_plan yet): continue it with `flexiffusion search --resume` and the same options")
            raise PlanError(f"{source}: the search has not scored a plan yet (no best_plan)")
        return _from_dict(best, source)
    if doc.get("format") != FORMAT:
        raise PlanError(f"{source}: not a step plan (format {doc.get('format')!r}, expected {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise PlanError(f"{source}: plan version {doc.get('version')!r} is not supported (this package reads version {VERSION})")
    s = doc.get("sampler")
    if not isinstance(s, Mapping) or "scheduler" not in s or "steps" not in s:
        raise PlanError(f"{source}: the sampler needs scheduler and steps")
    ts = s.get("timesteps")
    sampler = Sampler(scheduler=s["scheduler"], steps=s["steps"], eta=float(s.get("eta", 0) or 0), order=s.get("order"),
                      skip_prk_steps=s.get("skip_prk_steps"), timesteps=tuple(ts) if ts is not None else None,
                      timestep_spacing=s.get("timestep_spacing"), strength=s.get("strength"))
    raw = doc.get("actions")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise PlanError(f"{source}: actions must be a list")
    actions = []
    for i, text in enumerate(raw):
        try:
            actions.append(Action.parse(text))
        except PlanError as e:
            raise PlanError(f"{source}: step {i}: {e}") from None
    plan = Plan(sampler=sampler, actions=tuple(actions), description=str(doc.get("description", "")))
    try:
        plan.validate()
    except PlanError as e:
        raise PlanError(f"{source}: {e}") from None
    return plan


def load_plan(plan: Union[str, os.PathLike, Mapping, Plan]) -> Plan:
    """A checked `Plan` from a plan file, a `flexiffusion search` results file (its best plan), a
    dict of either, or a `Plan`."""
    if isinstance(plan, Plan):
        plan.validate()
        return plan
    if isinstance(plan, Mapping):
        return _from_dict(plan, "plan")
    path = os.fspath(plan)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except OSError as e:
        raise PlanError(f"cannot read step plan {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not JSON ({e})") from None
    except (_DuplicateKey, UnicodeDecodeError, ValueError) as e:
        raise PlanError(f"{path}: {e}") from None
    return _from_dict(doc, path)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs):
    """A JSON object whose keys are unique: a key twice is refused, as the engine refuses it (readers
    disagree on which value counts)."""
    doc = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(f'the key "{key}" stands twice (readers would disagree on its value)')
        doc[key] = value
    return doc


def _no_constant(name):
    """NaN and Infinity are not JSON (the engine's reader refuses them too)."""
    raise ValueError(f"{name} is not a JSON number")
