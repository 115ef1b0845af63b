#!/usr/bin/env python3
"""Times diffusers' UNet2DModel or UNet2DConditionModel (PyTorch CPU) and `flexiffusion bench unet`
on the same model and batch, in one command, and prints the ratio.

By default the model is the full google/ddpm-cifar10-32 configuration (35.7 M parameters) with
random weights, written to a temporary folder (never committed). `--config FILE` benchmarks any
config.json with random weights on both sides (nothing written), e.g. Stable Diffusion 1.5's UNet
(scripts/tools/sd15_unet.config.json, 860 M parameters) at 64×64 latents, batch 2, 77 context tokens.
PyTorch uses as many threads as the machine has cores, as PoCL does.

On a GPU (`--torch-device cuda`) PyTorch is timed in float32 twice per round, with TF32 off and on
(`torch.backends.cuda.matmul.allow_tf32` and `cudnn.allow_tf32`), synchronised around each pass, and
flexiffusion on the OpenCL GPU (`--device gpu`); `--peak-tflops` prints each as a fraction of the
device's FP32 peak.

`--precisions fp32,bf16` (CPU) also times PyTorch under `torch.autocast("cpu", dtype=torch.bfloat16)`
and the engine with `--precision bf16`, in the same alternating rounds; every ratio is printed against
PyTorch fp32 and against PyTorch in the same precision.

    .venv-ref/bin/python scripts/tools/bench_unet_torch.py --batch 16 [--model DIR | --config FILE] [--device D]
    .venv-ref/bin/python scripts/tools/bench_unet_torch.py --config scripts/tools/sd15_unet.config.json --batch 2 --repeats 2
    python3 scripts/tools/bench_unet_torch.py --torch-device cuda --device gpu --batch 64 --peak-tflops 67
    .venv-ref/bin/python scripts/tools/bench_unet_torch.py --batch 16 --rounds 7 --precisions fp32,bf16
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import tempfile
import time

import torch
from diffusers import UNet2DConditionModel, UNet2DModel

CIFAR10 = dict(
    sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, downsample_padding=0,
    flip_sin_to_cos=False, freq_shift=1, time_embedding_type="positional", act_fn="silu",
)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="diffusers folder (default: random-weight ddpm-cifar10-32 layout)")
    ap.add_argument("--config", help="a UNet config.json to benchmark with random weights on both sides")
    ap.add_argument("--context-length", type=int, default=77, help="encoder_hidden_states tokens (conditional UNets)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of PyTorch and flexiffusion (the machine is noisy)")
    ap.add_argument("--device", help="flexiffusion --device")
    ap.add_argument("--torch-device", default="cpu", help="cpu, or cuda: PyTorch fp32 with TF32 off and on")
    ap.add_argument("--peak-tflops", type=float, help="the device's FP32 peak, to print fractions of it")
    ap.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16 (CPU: PyTorch bf16 autocast, the engine's --precision bf16)")
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "..", ".build", "release", "flexiffusion"))
    args = ap.parse_args()

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    tmp = None
    source = []
    if args.config:
        with open(args.config) as f:
            cls = UNet2DConditionModel if json.load(f).get("_class_name") == "UNet2DConditionModel" else UNet2DModel
        torch.manual_seed(0)
        model = cls.from_config(cls.load_config(args.config))
        source = ["--config", args.config]
    elif args.model:
        config = UNet2DModel.load_config(args.model, subfolder="unet" if os.path.exists(os.path.join(args.model, "model_index.json")) else None)
        cls = UNet2DConditionModel if config.get("_class_name") == "UNet2DConditionModel" else UNet2DModel
        model = cls.from_pretrained(args.model, subfolder="unet" if os.path.exists(os.path.join(args.model, "model_index.json")) else None)
        source = ["--model", args.model]
    else:
        torch.manual_seed(0)
        model = UNet2DModel(**CIFAR10)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.randn(p.shape) / math.sqrt(max(1, p[0].numel())) if p.dim() > 1 else torch.randn(p.shape) * 0.1)
        tmp = tempfile.TemporaryDirectory()
        path = tmp.name
        model.save_pretrained(path)
        source = ["--model", path]
    model.eval()
    dev = torch.device(args.torch_device)
    cuda = dev.type == "cuda"
    model.to(dev)
    size = model.config.sample_size
    x = torch.randn(args.batch, model.config.in_channels, size, size, device=dev)
    t = torch.randint(0, 1000, (args.batch,), device=dev)
    kwargs = {}
    if isinstance(model, UNet2DConditionModel):
        kwargs["encoder_hidden_states"] = torch.randn(args.batch, args.context_length, model.config.cross_attention_dim, device=dev)
        if model.config.get("addition_embed_type") == "text_time":
            # SDXL's added conditions, as the engine's bench draws them: text_embeds, and time_ids of a run at the latents' size × 8.
            width = model.config.projection_class_embeddings_input_dim - 6 * model.config.addition_time_embed_dim
            side = 8.0 * model.config.sample_size
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(args.batch, width, device=dev),
                                           "time_ids": torch.tensor([[side, side, 0.0, 0.0, side, side]] * args.batch, device=dev)}
    precisions = args.precisions.split(",")
    if any(p not in ("fp32", "bf16") for p in precisions) or "fp32" not in precisions:
        ap.error("--precisions takes fp32 and optionally bf16, e.g. fp32,bf16")
    if cuda and "bf16" in precisions:
        ap.error("bf16 is the CPU's path here (--torch-device cpu)")
    modes = ["fp32", "tf32"] if cuda else precisions

    def set_mode(mode):
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
            torch.backends.cudnn.allow_tf32 = mode == "tf32"

    def timed_pass(mode="fp32"):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            model(x, t, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1000
    params = sum(p.numel() for p in model.parameters())
    cmd = [args.binary, "bench", "unet", *source, "--batch", str(args.batch), "--repeats", str(args.repeats), "--json"]
    if isinstance(model, UNet2DConditionModel):
        cmd += ["--context-length", str(args.context_length)]
    if args.device:
        cmd += ["--device", args.device]
    ours_by = {p: cmd + (["--precision", p] if p != "fp32" else []) for p in precisions}
    torch_rounds, our_rounds, our_json = {mode: [] for mode in modes}, {p: [] for p in precisions}, {}
    with torch.no_grad():
        for mode in modes:
            set_mode(mode)
            for _ in range(3 if cuda else 1):
                timed_pass(mode)
        for r in range(args.rounds):
            for mode in modes:
                set_mode(mode)
                torch_rounds[mode].append(statistics.median(timed_pass(mode) for _ in range(args.repeats)))
            for p in precisions:
                our_json[p] = json.loads(subprocess.run(ours_by[p], check=True, capture_output=True, text=True).stdout)
                if our_json[p].get("precision", "fp32") != p:
                    raise SystemExit(f"flexiffusion ran {our_json[p].get('precision')} when asked for {p} (its note is on its stderr)")
                our_rounds[p].append(our_json[p]["median_ms"])
            print(f"round {r + 1}: " + ", ".join(f"PyTorch {m} {torch_rounds[m][-1]:.1f} ms" for m in modes)
                  + "".join(f", flexiffusion {p} {our_rounds[p][-1]:.1f} ms" for p in precisions)
                  + f", ratio {our_rounds['fp32'][-1] / torch_rounds['fp32'][-1]:.2f}x", flush=True)
    torch_ms = {mode: statistics.median(torch_rounds[mode]) for mode in modes}
    ours = our_json["fp32"]
    our_ms = statistics.median(our_rounds["fp32"])
    gflops = ours["gflops"] * ours["median_ms"] / our_ms
    flop = gflops * our_ms * 1e6  # floating-point operations per forward, as the engine counts them

    def peak(ms):
        return f", {flop / (ms * 1e-3) / (args.peak_tflops * 1e12) * 100:.1f} % of {args.peak_tflops:g} TFLOP/s FP32 peak" if args.peak_tflops else ""
    where = f"CUDA ({torch.cuda.get_device_name(dev)})" if cuda else f"CPU ({threads} threads)"
    print(f"model: {type(model).__name__}, {params / 1e6:.1f} M parameters, batch {args.batch} at {size}x{size}; "
          f"medians of {args.repeats} passes per round, median over {args.rounds} alternating rounds")
    def spread(values):
        return f"rounds {min(values):.1f}–{max(values):.1f}"
    for mode in modes:
        label = {"fp32": "float32" + (", TF32 off" if cuda else ""), "tf32": "float32, TF32 on", "bf16": "bf16 autocast"}[mode]
        print(f"PyTorch {torch.__version__} {where}, {label}: {torch_ms[mode]:.2f} ms per forward "
              f"({flop / (torch_ms[mode] * 1e6):.0f} GFLOP/s{peak(torch_ms[mode])}; {spread(torch_rounds[mode])})")
    print(f"flexiffusion: {our_ms:.2f} ms per forward ({gflops:.1f} GFLOP/s{peak(our_ms)}); device memory: weights "
          f"{ours['weight_bytes'] / 2**30:.2f} GiB, workspace {ours['workspace_bytes'] / 2**30:.2f} GiB; convolutions "
          f"{ours.get('convolutions', '?')}, activations {ours.get('activations', '?')}")
    for p in precisions:
        ms = statistics.median(our_rounds[p])
        if p != "fp32":
            print(f"flexiffusion --precision {p}: {ms:.2f} ms per forward ({gflops * our_ms / ms:.1f} GFLOP/s; {spread(our_rounds[p])}); "
                  f"convolutions {our_json[p].get('convolutions', '?')}")
        against = [m for m in modes if m == "fp32" or m == p or (p == "fp32" and m == "tf32")]
        for mode in against:
            print(f"ratio flexiffusion {p} / PyTorch {mode}: {ms / torch_ms[mode]:.2f}x time "
                  f"(speed {torch_ms[mode] / ms:.2f}x of PyTorch's; below 1x time is faster)")


if __name__ == "__main__":
    main()
