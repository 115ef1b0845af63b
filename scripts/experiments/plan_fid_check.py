#!/usr/bin/env python3
"""FID of step plans at a size the engine cannot reach on a CPU: diffusers' UNet in PyTorch (a GPU when
there is one), DDIM (eta 0) or diffusers' own solvers, FID against the Fashion-MNIST test set (domain features, as
`steps_fid_check.py`), rFID and per-image RMSE against the 100-step teacher on the same seeds, and each
plan's cost in full steps from a profile's per-branch fractions.

A plan is one of
  leading:G | trailing:G | linspace:G   all-full DDIM with diffusers' timestep_spacing (leading is the
                                        model's own)
  pP:G                                  all-full DDIM on t_i = round(990 (i / (G-1))^P), i = 0..G-1 (P > 1:
                                        more steps at low noise; each at least one timestep past the last)
  gP:G                                  the same on the teacher's grid (multiples of 10), which full and
                                        null steps on the teacher's 100 steps express
  GG:FF:bM:WHERE                        the model's own G-step grid, F full steps and G - F partial steps
                                        of branch M (DeepCache's shallow path fed with the last full
                                        step's feature, as the engine's partial:M); WHERE places them:
                                        u (spread evenly), e / m / l (alternating with full steps in the
                                        early / middle / late part, the rest full)
  SOLVER:G                              all-full diffusers solver with G steps from the model's scheduler
                                        config (from_config): dpmsolver++, dpmsolver, unipc, euler, pndm
                                        (PLMS only), ddim; a digit after a multistep solver is its order
                                        (unipc3:10, dpmsolver++3:10)
  plan:PATH                             an engine plan file (`generate --plan`, a search's result file)
                                        on any sampler the engine runs (DDIM with eta 0, DPM-Solver,
                                        UniPC, Euler, PNDM; explicit timestep lists)
Each step goes from its timestep to the next one in the list (the last to alpha = 1): diffusers'
DDIMScheduler.step for leading spacing, and nearly so for trailing and linspace (diffusers steps back
by T // G there, a timestep or so off the next one); a null step reuses the last model output. Plans
on other solvers run diffusers' scheduler itself (scale_model_input, step), a partial or null step's
output given to the solver like a full step's, as the engine does.

    .venv-ref/bin/python scripts/experiments/plan_fid_check.py models/fashion-mnist --count 2000 leading:37 G48:F35:b0:u

First, that these are the engine's numbers: each plan the engine can run, here and through
`flexiffusion generate --noise` from the same noise (measured: ≤ 3.5e-5 apart on the plans in docs/experiments/plans):

    .venv-ref/bin/python scripts/experiments/plan_fid_check.py models/fashion-mnist \
        --compare-engine .build/release/flexiffusion leading:18 G48:F35:b0:u plan:docs/experiments/plans/sweep-s5-best.json
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, PNDMScheduler, UNet2DModel,
                       UniPCMultistepScheduler)
from safetensors.torch import load_file

for _role in ("tools", "goldens"):  # (train_default_model's loader, DeepCache's shallow path)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", _role))
from train_feature_net import feature_function  # noqa: E402
from train_default_model import load_images  # noqa: E402
from make_fid_goldens import frechet, stats  # noqa: E402  (pytorch-fid's computation)
from make_deepcache_goldens import full_pass, partial_pass, run_plan  # noqa: E402  (DeepCache's shallow path)

# Cost of a partial step of branch 0…5 in full steps: the default model's profile on the 2-core
# PoCL machine at batch 32 (36.8, 92.2, 123.1, 152.4, 181.2, 215.1 ms over a 246.8 ms full step).
PROFILE = [0.149, 0.374, 0.499, 0.617, 0.734, 0.871]


def spaced(name, g, model):
    """diffusers' timesteps for G steps; name None: the model's own spacing (the engine's)."""
    overrides = {"timestep_spacing": name} if name else {}
    sched = DDIMScheduler.from_pretrained(os.path.join(model, "scheduler"), **overrides)
    sched.set_timesteps(g)
    return [int(t) for t in sched.timesteps]


SOLVERS = {"ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler, "dpmsolver": DPMSolverMultistepScheduler,
           "unipc": UniPCMultistepScheduler, "euler": EulerDiscreteScheduler, "pndm": PNDMScheduler}


def solver(model, sampler):
    """A fresh diffusers scheduler for an engine plan's `sampler` (the model's config, as from_config),
    its timesteps set: the engine's choices where a config leaves them open."""
    kind = sampler["scheduler"]
    if kind not in SOLVERS or sampler.get("eta", 0) != 0:
        raise SystemExit(f"{kind} (eta {sampler.get('eta', 0)}): not a sampler this script runs")
    folder = os.path.join(model, "scheduler")
    with open(os.path.join(folder, "scheduler_config.json")) as f:
        config = json.load(f)
    overrides = {}
    if kind in ("dpmsolver++", "dpmsolver"):
        overrides["algorithm_type"] = kind
        if kind == "dpmsolver" and "final_sigmas_type" not in config:
            overrides["final_sigmas_type"] = "sigma_min"  # (the engine's choice; diffusers' default fails here)
    if sampler.get("order"):
        overrides["solver_order"] = sampler["order"]
    if kind == "pndm":
        overrides["skip_prk_steps"] = sampler.get("skip_prk_steps", True)
    sched = SOLVERS[kind].from_pretrained(folder, **overrides)
    if sampler.get("timesteps"):
        # (UniPC takes no list in set_timesteps: the package sets it and its σ, as the engine runs it.)
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
        from flexiffusion.schedulers import set_explicit_timesteps
        set_explicit_timesteps(sched, sampler["timesteps"])
    else:
        sched.set_timesteps(sampler["steps"])
    return sched


def solver_spec(name, g):
    """The sampler of a SOLVER:G spec, or None."""
    kind = name.rstrip("0123456789")
    if kind not in SOLVERS or kind == "ddim" and name != kind:
        return None
    order = name[len(kind):]
    sampler = {"scheduler": kind, "steps": g, "eta": 0}
    if order:
        sampler["order"] = int(order)
    return sampler


def power(name, g):
    p = float(name[1:])
    u = (np.arange(g) / (g - 1)) ** p
    unit = 10 if name[0] == "g" else 1  # distinct: each step at least one unit past the last
    idx = [int(round(990 // unit * v)) for v in u]
    for i in range(1, g):
        idx[i] = max(idx[i], idx[i - 1] + 1)
    return sorted({int(t) * unit for t in idx}, reverse=True)


def placed(g, full, branch, where):
    """Actions of G steps: `full` full steps and the rest partial steps of `branch`, placed by `where`."""
    partial, spec = g - full, f"G{g}:F{full}:b{branch}:{where}"
    if not 0 < full <= g or where not in ("u", "e", "m", "l") or not 0 <= branch < len(PROFILE):
        raise SystemExit(f"{spec}: need 1 ≤ F ≤ G, a branch 0…{len(PROFILE) - 1} and WHERE one of u, e, m, l")
    if where == "u":
        fulls = {int(round(i * g / full)) for i in range(full)}
    else:
        if 2 * partial > g:
            raise SystemExit(f"{spec}: alternating needs F ≥ G/2 (use u)")
        span = 2 * partial
        first = {"e": 0, "m": (g - span) // 2, "l": g - span}[where]
        fulls = set(range(g)) - {first + 1 + 2 * i for i in range(partial)}
    if len(fulls) != full or 0 not in fulls:
        raise SystemExit(f"{spec}: cannot place")
    return ["full" if i in fulls else f"partial:{branch}" for i in range(g)]


def parse(spec, model):
    """(timesteps, actions, sampler) of a plan spec; sampler None for DDIM run by this script's own
    loop, else the engine plan's sampler, run by diffusers' scheduler."""
    try:
        return parse_spec(spec, model)
    except (ValueError, KeyError, OSError) as e:
        raise SystemExit(f"{spec}: {e}")


def parse_spec(spec, model):
    name, _, rest = spec.partition(":")
    if name == "plan":
        with open(rest) as f:
            doc = json.load(f)
        plan = doc if "actions" in doc else doc.get("best_plan")  # a plan file, or a search's result
        if not plan:
            raise SystemExit(f"{rest}: neither a plan nor a search result with a best_plan")
        sampler = plan.get("sampler", {})
        actions = plan["actions"]
        if sampler.get("scheduler", "ddim") != "ddim" or sampler.get("timesteps"):
            sched = solver(model, sampler)
            if len(sched.timesteps) != len(actions):
                raise SystemExit(f"{rest}: {len(actions)} actions for {len(sched.timesteps)} model evaluations")
            return [float(t) for t in sched.timesteps], actions, sampler
        if sampler.get("eta", 0) != 0:
            raise SystemExit(f"{rest}: only DDIM with eta 0")
        return spaced(None, sampler.get("steps", len(actions)), model), actions, None
    if solver_spec(name, 1) and rest.isdigit():
        sampler = solver_spec(name, int(rest))
        ts = [float(t) for t in solver(model, sampler).timesteps]
        return ts, ["full"] * len(ts), sampler
    if name in ("leading", "trailing", "linspace"):
        ts = spaced(name, int(rest), model)
        return ts, ["full"] * len(ts), None
    if name[:1] in ("p", "g") and not rest.startswith("F"):
        g = int(rest)
        ts = power(name, g)
        if len(ts) != g:
            raise SystemExit(f"{spec}: only {len(ts)} distinct timesteps")
        return ts, ["full"] * g, None
    if name.startswith("G"):
        parts = rest.split(":")
        if len(parts) != 3 or not parts[0].startswith("F") or not parts[1].startswith("b"):
            raise SystemExit(f"{spec}: expected GG:FF:bM:WHERE")
        g = int(name[1:])
        return spaced(None, g, model), placed(g, int(parts[0][1:]), int(parts[1][1:]), parts[2]), None
    raise SystemExit(f"unknown plan {spec!r}")


def sample(unet, alphas, noise, ts, actions, batch, device):
    """DDIM (eta 0) from `noise` over timesteps `ts` with the plan's actions; samples clamped to [-1, 1]."""
    out = []
    for i in range(0, len(noise), batch):
        x = noise[i:i + batch].to(device)
        eps, record = None, {}
        for k, (t, action) in enumerate(zip(ts, actions)):
            if action == "full":
                record = {}
                eps = full_pass(unet, x, t, record)
            elif action.startswith("partial:"):
                m = int(action.split(":")[1])
                eps = partial_pass(unet, x, t, m, record[m])
            elif action != "null" or eps is None:
                raise SystemExit(f"step {k}: {action!r} cannot run here")
            a = float(alphas[t])
            a_prev = float(alphas[ts[k + 1]]) if k + 1 < len(ts) else 1.0
            x0 = (x - (1 - a) ** 0.5 * eps) / a ** 0.5
            x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out)


def sample_solver(unet, model, sampler, noise, actions, batch, device):
    """`sampler`'s diffusers scheduler from `noise` (scaled by init_noise_sigma) with the plan's actions:
    full, partial (DeepCache's shallow path) or null (the last output), each output given to the solver
    as it is; samples clamped to [-1, 1]."""
    out = []
    for i in range(0, len(noise), batch):
        sched = solver(model, sampler)  # (fresh: multistep solvers keep a history per run)
        try:
            x = run_plan(unet, sched, noise[i:i + batch].to(device), actions)
        except ValueError as e:
            raise SystemExit(str(e))
        out.append(x.clamp(-1, 1).cpu())
    return torch.cat(out)


def engine_plan(spec, ts, actions, model, sampler=None):
    """The plan as an engine plan file's JSON, where the engine can run it (on the model's own spacing)."""
    if sampler is not None:
        return {"format": "flexiffusion-step-plan", "version": 1, "description": spec, "sampler": sampler, "actions": actions}
    name = spec.partition(":")[0]
    if name not in ("plan", "leading") and not name.startswith("G"):
        return None
    if ts != spaced(None, len(ts), model):
        return None
    return {"format": "flexiffusion-step-plan", "version": 1, "description": spec,
            "sampler": {"scheduler": "ddim", "steps": len(ts), "eta": 0}, "actions": actions}


def compare_engine(binary, model, unet, alphas, parsed, device, images=8, limit=1e-3):
    """Runs each plan the engine can run through `flexiffusion generate --noise --plan` and here, from
    the same noise; exits 1 when the largest difference exceeds `limit`."""
    import subprocess
    import tempfile
    from safetensors.torch import save_file
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise SystemExit(f"--compare-engine: {binary} is not an executable file")
    noise = torch.randn(images, 1, 28, 28, generator=torch.Generator().manual_seed(7))
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        save_file({"sample": noise.contiguous()}, os.path.join(tmp, "noise.safetensors"))
        for spec, ts, actions, sampler in parsed:
            plan = engine_plan(spec, ts, actions, model, sampler)
            if plan is None:
                print(f"{spec:>18}  (not an engine plan on the model's spacing: skipped)")
                continue
            with open(os.path.join(tmp, "plan.json"), "w") as f:
                json.dump(plan, f)
            out = os.path.join(tmp, "out.safetensors")
            run = subprocess.run([binary, "generate", "--model", model, "--plan", f.name, "--noise",
                                  os.path.join(tmp, "noise.safetensors"), "--batch", str(images),
                                  "--output-tensor", out], capture_output=True, text=True)
            if run.returncode != 0:
                raise SystemExit(f"{spec}: {binary} generate failed: {run.stderr.strip()}")
            engine = load_file(out)["sample"].clamp(-1, 1)
            here = (sample_solver(unet, model, sampler, noise, actions, images, device) if sampler is not None
                    else sample(unet, alphas, noise, ts, actions, images, device))
            diff = float((engine - here).abs().max())
            worst = max(worst, diff)
            print(f"{spec:>18}  max |engine − PyTorch| over {images} images: {diff:.2e}", flush=True)
    print(f"worst {worst:.2e} (limit {limit:g})")
    if worst > limit:
        sys.exit(1)


def cost(actions):
    return sum(1.0 if a == "full" else 0.0 if a == "null" else PROFILE[int(a.split(":")[1])] for a in actions)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a diffusers pipeline folder (unet/, scheduler/)")
    ap.add_argument("plans", nargs="+", help="plan specs, e.g. leading:37 p2:37 G48:F35:b0:u plan:search.json")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on CUDA (faster, looser)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--compare-engine", metavar="FLEXIFFUSION",
                    help="instead of FID: run each plan the engine can run (plan files, leading:G, GG:…) "
                         "through this flexiffusion binary and here from the same noise (8 images) and "
                         "fail when they differ by more than 1e-3")
    args = ap.parse_args()
    parsed = [(spec, *parse(spec, args.model)) for spec in args.plans]  # bad specs fail before sampling
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = True

    unet = UNet2DModel.from_pretrained(os.path.join(args.model, "unet")).float().to(device).eval()
    alphas = DDIMScheduler.from_pretrained(os.path.join(args.model, "scheduler")).alphas_cumprod.double()
    if args.compare_engine:
        compare_engine(args.compare_engine, args.model, unet, alphas, parsed, device)
        return
    features = feature_function(device)
    real = stats(features(load_images("t10k", args.data)))
    noise = torch.randn(args.count, 1, 28, 28, generator=torch.Generator().manual_seed(args.seed))

    def run(ts, actions, sampler=None):
        if sampler is not None:
            return sample_solver(unet, args.model, sampler, noise, actions, args.batch, device)
        return sample(unet, alphas, noise, ts, actions, args.batch, device)


    half = args.count // 2
    start = time.time()
    teacher_steps = spaced(None, 100, args.model)  # the teacher: 100 full steps on the model's spacing
    teacher = run(teacher_steps, ["full"] * 100)
    tf = features(teacher)
    fid_t = frechet(*stats(tf), *real)
    print(f"{args.count} samples, seed {args.seed}, device {device}, tf32 {args.tf32}; teacher (100 steps) "
          f"FID {fid_t:.2f} ({time.time() - start:.1f} s)", flush=True)
    print(f"{'plan':>18} {'cost':>5} {'FID':>7} {'halves':>15} {'rFID':>6} {'RMSE':>6}  first timesteps", flush=True)
    for spec, ts, actions, sampler in parsed:
        start = time.time()
        x = run(ts, actions, sampler)
        f = features(x)
        fid = frechet(*stats(f), *real)
        h = [frechet(*stats(f[s]), *real) for s in (slice(0, half), slice(half, None))]
        rfid = frechet(*stats(f), *stats(tf))
        rmse = float(((x - teacher) ** 2).mean(dim=(1, 2, 3)).sqrt().mean())
        print(f"{spec:>18} {cost(actions):5.1f} {fid:7.2f} {h[0]:7.2f} {h[1]:7.2f} {rfid:6.2f} {rmse:6.3f}  "
              f"{ts[:3]}…{ts[-2:]} ({time.time() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
