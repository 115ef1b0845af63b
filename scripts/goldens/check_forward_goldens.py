#!/usr/bin/env python3
"""Runs `flexiffusion forward` on the checked-in diffusers goldens (cifar-layout UNet2DModel, SD 1.5- and
SD 2- and SDXL-layout UNet2DConditionModels, class-conditional UNet2DModels at t = 1, 500, 999) and prints each output's relative L2 error.

For a machine where the Swift tests cannot run (a lent GPU with only the static binary): it checks
that the device's kernels compute the same UNet as diffusers before anything is timed there. Needs
numpy and safetensors only. Exits 1 when any error exceeds --tolerance.

    python3 scripts/goldens/check_forward_goldens.py --binary .build/release/flexiffusion --device gpu
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

GOLDENS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "EngineTests", "Goldens")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "..", ".build", "release", "flexiffusion"))
    ap.add_argument("--device", help="flexiffusion --device")
    ap.add_argument("--tolerance", type=float, default=1e-4, help="largest relative L2 error accepted")
    args = ap.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ["cifar-layout", "sd15-layout", "sd2-layout", "sdxl-layout", "ldm-class-layout", "class-timestep-layout"]:
            folder = os.path.join(GOLDENS, layout)
            golden = load_file(os.path.join(folder, "golden.safetensors"))
            inputs = {"sample": golden["sample"]}
            for name in ["encoder_hidden_states", "text_embeds", "time_ids", "class_labels"]:
                if name in golden:
                    inputs[name] = golden[name]
            path_in = os.path.join(tmp, "in.safetensors")
            save_file(inputs, path_in)
            for t in [1, 500, 999]:
                path_out = os.path.join(tmp, "out.safetensors")
                cmd = [args.binary, "forward", "--model", folder, "--input", path_in, "--timestep", str(t), "--output", path_out]
                if args.device:
                    cmd += ["--device", args.device]
                subprocess.run(cmd, check=True, capture_output=True)
                got = load_file(path_out)["sample"]
                ref = golden[f"output_t{t}"]
                error = float(np.linalg.norm(got - ref) / np.linalg.norm(ref)) if np.all(np.isfinite(got)) else float("inf")
                worst = max(worst, error)
                print(f"{layout} t={t}: relative L2 error {error:.2e}", flush=True)
    print(f"worst {worst:.2e} (tolerance {args.tolerance:g}): {'PASS' if worst <= args.tolerance else 'FAIL'}")
    sys.exit(0 if worst <= args.tolerance else 1)


if __name__ == "__main__":
    main()
