#!/usr/bin/env bash
# The whole-loop check of `--precision bf16`: the default model's images in fp32 and in bf16 from the
# same seeds (two 5,000-image halves each, seeds 1000 and 2000), FID of each half and of the 10,000
# against the Fashion-MNIST test set, and FID between the two precisions' sets. Prints a Markdown table.
#
#   scripts/experiments/precision_fid.sh [STEPS] [OUT]      (defaults: 50, experiments/precision-fid)
#
# Needs the release binary (.build/release/flexiffusion), Debian's dataset-fashion-mnist and a Python
# with numpy and safetensors ($PYTHON, default .venv-ref/bin/python) to join the halves.
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-50}"
out="${2:-experiments/precision-fid}"
bin="${BIN:-.build/release/flexiffusion}"
python="${PYTHON:-.venv-ref/bin/python}"
test_set=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
mkdir -p "$out"
for precision in fp32 bf16; do
    for seed in 1000 2000; do
        f="$out/$precision-seed$seed-steps$steps.safetensors"
        if [ ! -f "$f" ]; then
            start=$(date +%s)
            "$bin" generate --precision "$precision" --steps "$steps" --count 5000 --batch 64 --seed "$seed" \
                --output-tensor "$f" --out "$out/$precision-seed$seed-steps$steps.png" > /dev/null
            echo "$precision seed $seed: $(( $(date +%s) - start )) s" >&2
        fi
    done
    "$python" - "$out/$precision-seed1000-steps$steps.safetensors" "$out/$precision-seed2000-steps$steps.safetensors" \
        "$out/$precision-all-steps$steps.safetensors" <<'EOF'
import sys
import numpy as np
from safetensors.numpy import load_file, save_file
a, b = (load_file(p)["sample"] for p in sys.argv[1:3])
save_file({"sample": np.concatenate([a, b])}, sys.argv[3])
EOF
done
fid() { "$bin" fid "$1" "$2" --json | sed -n 's/.*"fid" *: *\([0-9.e+-]*\).*/\1/p'; }
echo "| set (DDIM $steps steps) | fp32 | bf16 | bf16 − fp32 |"
echo "|---|---|---|---|"
for part in seed1000 seed2000 all; do
    a=$(fid "$out/fp32-$part-steps$steps.safetensors" "$test_set")
    b=$(fid "$out/bf16-$part-steps$steps.safetensors" "$test_set")
    label=$([ "$part" = all ] && echo "10,000 images" || echo "5,000 ($part)")
    echo "| $label against the test set | $a | $b | $(python3 -c "print(f'{$b - $a:+.3f} ({($b - $a) / $a * 100:+.2f} %)')") |"
done
echo
echo "FID between the fp32 and bf16 sets (10,000 each, the same seeds): $(fid "$out/fp32-all-steps$steps.safetensors" "$out/bf16-all-steps$steps.safetensors")"
echo "FID between the fp32 halves (different seeds): $(fid "$out/fp32-seed1000-steps$steps.safetensors" "$out/fp32-seed2000-steps$steps.safetensors")"
