#!/usr/bin/env python3
"""Builds the step-plan goldens under Tests/EngineTests/Goldens/.

1. cifar-layout/deepcache.safetensors: DeepCache's shallow path (a partial step) on diffusers'
   UNet2DModel, for every skip branch of the cifar-layout golden model (written by
   make_unet_goldens.py). A full pass at (sample_full, t_full) records the feature entering the up
   resnet that concatenates skip m; a partial pass at (sample_partial, t_partial) runs conv_in, the
   down layers through the one producing skip m, and the up path from that resnet, fed with the
   recorded feature (DeepCache: arXiv 2312.00858, §3.2; its DDPM code's `branch` b is our m = b + 1).
   The passes are written out from diffusers' modules; the script first checks that its full pass
   reproduces `UNet2DModel.forward` exactly.
   Tensors: sample_full, t_full, sample_partial, t_partial, partial_m{m} for m = 0 … branches − 1.

2. deepcache_nonuniform.json: DeepCache's non-uniform full steps,
   [0] + (unique(int32(real(linspace((-c)^(1/p), (T-c)^(1/p), k+1) ** p)))[1:-1] + c), lowering p
   by 0.02 until there are k = ceil(T/N) of them, computed with NumPy's complex arithmetic (Python's
   (-c) ** (1/p) is complex) for several (T, N, c, p).

Run: .venv-ref/bin/python scripts/goldens/make_deepcache_goldens.py   (after make_unet_goldens.py)
"""
import json
import math
import os

import numpy as np
import torch
from diffusers import UNet2DModel
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")


def time_embedding(model, t, batch):
    timesteps = torch.full((batch,), float(t), device=model.device)
    emb = model.time_proj(timesteps).to(dtype=torch.float32)
    return model.time_embedding(emb)


def down_layers(model):
    """The down path as a list of (kind, module, attention) in skip-stack order (skip 1, 2, …)."""
    layers = []
    for block in model.down_blocks:
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            layers.append(("resnet", resnet, attentions[j] if attentions is not None else None))
        if block.downsamplers is not None:
            layers.append(("down", block.downsamplers[0], None))
    return layers


def up_layers(model):
    """The up path as a list of (resnet, attention, upsampler-after-or-None) in execution order."""
    layers = []
    for block in model.up_blocks:
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            last = j == len(block.resnets) - 1
            ups = block.upsamplers[0] if (last and block.upsamplers is not None) else None
            layers.append((resnet, attentions[j] if attentions is not None else None, ups))
    return layers


def attend(attention, h, ctx):
    """An attention layer on h: UNet2DModel's (no context), or a UNet2DConditionModel's
    Transformer2DModel over encoder_hidden_states `ctx`."""
    if ctx is None:
        return attention(h)
    return attention(h, encoder_hidden_states=ctx, return_dict=False)[0]


def run_down(model, x, emb, through, ctx=None):
    """conv_in and the down layers through skip index `through`; returns the skip stack."""
    if model.config.center_input_sample:
        x = 2 * x - 1.0
    skips = [model.conv_in(x)]
    for kind, module, attention in down_layers(model):
        if len(skips) - 1 >= through:
            break
        h = skips[-1]
        if kind == "resnet":
            h = module(h, emb)
            if attention is not None:
                h = attend(attention, h, ctx)
        else:
            h = module(h)
        skips.append(h)
    return skips


def run_up(model, h, skips, emb, start, record=None, ctx=None):
    """The up path from the resnet that concatenates skip `start` (the deepest when start is the
    last skip), consuming skips start, start-1, …, 0. `record` (a dict) gets the feature entering
    each resnet, keyed by the skip it concatenates."""
    for i, (resnet, attention, upsampler) in enumerate(up_layers(model)):
        m = len(up_layers(model)) - 1 - i  # the up path consumes skip indices deepest first
        if m > start:
            continue
        if record is not None:
            record[m] = h.clone()
        h = resnet(torch.cat([h, skips[m]], dim=1), emb)
        if attention is not None:
            h = attend(attention, h, ctx)
        if upsampler is not None:
            h = upsampler(h)
    h = model.conv_norm_out(h)
    h = model.conv_act(h)
    return model.conv_out(h)


def full_pass(model, x, t, record, ctx=None):
    """The whole UNet (with `ctx`: a UNet2DConditionModel's encoder_hidden_states), recording into
    `record` the feature entering each up resnet."""
    emb = time_embedding(model, t, x.shape[0])
    skips = run_down(model, x, emb, through=10**9, ctx=ctx)
    h = model.mid_block(skips[-1], emb) if ctx is None else model.mid_block(skips[-1], emb, encoder_hidden_states=ctx)
    return run_up(model, h, skips, emb, start=len(skips) - 1, record=record, ctx=ctx)


def partial_pass(model, x, t, branch, cached, ctx=None):
    emb = time_embedding(model, t, x.shape[0])
    skips = run_down(model, x, emb, through=branch, ctx=ctx)
    assert len(skips) == branch + 1
    return run_up(model, cached, skips, emb, start=branch, ctx=ctx)


def run_plan(unet, sched, noise, actions):
    """A step plan on a diffusers scheduler (timesteps set, state fresh) from `noise` scaled by
    init_noise_sigma, one action per timestep: full, partial:M (the shallow path fed with the feature
    the last full step cached at branch M) or null (the last output); each output goes to
    `sched.step` as the engine gives it to its solver."""
    x = noise * sched.init_noise_sigma
    eps, record = None, {}
    for k, (t, action) in enumerate(zip(sched.timesteps, actions)):
        x_in = sched.scale_model_input(x, t)
        if action == "full":
            record = {}
            eps = full_pass(unet, x_in, float(t), record)
        elif action.startswith("partial:"):
            m = int(action.split(":")[1])
            eps = partial_pass(unet, x_in, float(t), m, record[m])
        elif action != "null" or eps is None:
            raise ValueError(f"step {k}: {action!r} cannot run here")
        x = sched.step(eps, t, x).prev_sample
    return x


def shallow_path_goldens():
    folder = os.path.join(ROOT, "cifar-layout")
    model = UNet2DModel.from_pretrained(folder).float().eval()
    gen = torch.Generator().manual_seed(5)
    shape = (2, model.config.in_channels, model.config.sample_size, model.config.sample_size)
    x_full = torch.randn(shape, generator=gen)
    x_partial = x_full + 0.1 * torch.randn(shape, generator=gen)
    t_full, t_partial = 500, 480
    with torch.no_grad():
        record = {}
        out = full_pass(model, x_full, t_full, record)
        reference = model(x_full, t_full).sample
        assert torch.equal(out, reference) or (out - reference).abs().max() < 1e-6, "full pass differs from diffusers"
        branches = len(record)
        tensors = {"sample_full": x_full, "t_full": torch.tensor([float(t_full)]),
                   "sample_partial": x_partial, "t_partial": torch.tensor([float(t_partial)])}
        for m in range(branches):
            tensors[f"partial_m{m}"] = partial_pass(model, x_partial, t_partial, m, record[m]).contiguous()
            # Sanity: a partial pass at the full pass's own input and timestep reproduces it.
            same = partial_pass(model, x_full, t_full, m, record[m])
            assert (same - reference).abs().max() < 1e-5, f"branch {m}: partial at the same input differs"
    save_file(tensors, os.path.join(folder, "deepcache.safetensors"))
    print(f"cifar-layout/deepcache.safetensors: {branches} branches")


def quad_center(total, count, center, power):
    p = power
    while p > 1:
        start = (-center) ** (1 / p)  # complex for center > 0, as in Python
        values = np.linspace(start, (total - center) ** (1 / p), count + 1) ** p
        with np.errstate(all="ignore"):
            ints = np.real(values).astype(np.int32) if np.iscomplexobj(values) else values.astype(np.int32)
        steps = [0] + [int(v) + center for v in np.unique(ints)[1:-1]]
        if len(steps) == count:
            return steps, p
        p -= 0.02
    return None, None


def nonuniform_goldens():
    cases = []
    for total, interval, center, power in [(50, 3, 15, 1.4), (50, 5, 15, 1.4), (100, 2, 30, 1.4), (100, 3, 30, 1.4),
                                          (100, 5, 40, 1.5), (100, 10, 50, 1.3), (250, 5, 120, 1.4), (20, 4, 0, 1.2)]:
        count = math.ceil(total / interval)
        steps, p = quad_center(total, count, center, power)
        cases.append({"steps": total, "interval": interval, "center": center, "power": power,
                      "full_steps": steps, "power_used": p})
    with open(os.path.join(ROOT, "deepcache_nonuniform.json"), "w") as f:
        json.dump({"generated_by": "scripts/goldens/make_deepcache_goldens.py", "numpy": np.__version__, "cases": cases}, f, indent=1)
    print(f"deepcache_nonuniform.json: {len(cases)} cases")


if __name__ == "__main__":
    torch.manual_seed(0)
    shallow_path_goldens()
    nonuniform_goldens()
