#!/usr/bin/env bash
# One call on a lent GPU machine without Swift: parity against the diffusers goldens, the UNet against
# PyTorch CUDA (fp32 with TF32 off and on) in the same call, per-kernel profiles, `generate` and a
# whole `flexiffusion search` timed there. Everything it prints also goes to $OUT/log.txt; plans,
# profiles and reports are packed into $OUT/results.tar.gz.
#
# Prepare here (static binary, the OpenCL loader and CLBlast, diffusers as a wheel for the PyTorch side):
#   swift build -c release --static-swift-stdlib --product flexiffusion
#   mkdir -p .device && cp .build/release/flexiffusion .device/ && strip .device/flexiffusion && xz -T0 .device/flexiffusion
#   cp -L /usr/lib/x86_64-linux-gnu/libclblast.so.1 /usr/lib/x86_64-linux-gnu/libOpenCL.so.1 .device/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1 importlib_metadata
# and run there (.device and .whl carried):  bash scripts/experiments/gpu_session.sh [PARTS]
# PARTS (default "parity bench generate search"): any of parity, bench, sd, sdxl (SDXL base's full UNet at 1024 px,
# batch 1 and 2, PyTorch CUDA beside the engine), attention (SD 1.5's UNet with
# FLEXIFFUSION_ATTENTION=chunked and fused in alternating rounds, then the fused path's parity), implicit (the cifar
# UNet at batch 64 and SD 1.5's at batch 2 with FLEXIFFUSION_CONV=im2col-gemm and implicit-gemm alternating, then
# the implicit path's parity), profile, generate, search,
# fid, t2i-search (SD 1.5's full configuration: device memory at the search's default batch and a small
# search over the prompt set), t2i (SD 1.5's whole text-to-image pipeline, random weights, engine beside diffusers; needs
# .device/clip-vocab from `make_tiny_sd_pipeline.py --write-vocabulary .device/clip-vocab`). The fid part runs scripts/experiments/plan_fid_check.py at 10,000 samples on the search's plans and the plain
# solvers at their step counts (needs the Fashion-MNIST test images under $DATA; the search part needs its training images there too, default .device/fashion-mnist).
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT" /tmp/gpu-session-work
WORK=/tmp/gpu-session-work
PARTS=${*:-parity bench generate search}
DEVICE=${DEVICE:-gpu}  # flexiffusion --device
PEAK=${PEAK_TFLOPS:-67}  # H100/H200 SXM FP32 (non-tensor) peak by NVIDIA's datasheet
exec > >(tee -a "$OUT/log.txt") 2>&1

BIN=$WORK/flexiffusion
if [ ! -x "$BIN" ]; then xz -dc .device/flexiffusion.xz > "$BIN" && chmod +x "$BIN" || exit 1; fi
export LD_LIBRARY_PATH=$PWD/.device${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ! grep -qs nvidia /etc/OpenCL/vendors/*.icd "${OCL_ICD_VENDORS:-/nonexistent}"/*.icd; then
    lib=$(ls /usr/local/nvidia/lib64/libnvidia-opencl.so* /usr/lib/x86_64-linux-gnu/libnvidia-opencl.so* /usr/lib64/libnvidia-opencl.so* 2>/dev/null | head -1)
    [ -z "$lib" ] && lib=$(find / -xdev -name 'libnvidia-opencl.so*' 2>/dev/null | head -1)
    mkdir -p $WORK/icd && cp /etc/OpenCL/vendors/*.icd $WORK/icd/ 2>/dev/null
    echo "$lib" > $WORK/icd/nvidia.icd && export OCL_ICD_VENDORS=$WORK/icd
    echo "ICD: $lib"
fi
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
step() { echo; echo "=== $* ($(date +%T))"; }
TIMEFORMAT="wall %R s"

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, torch.cuda.get_device_name(0))"
"$BIN" --version
"$BIN" devices

for part in $PARTS; do case $part in
parity)
    step "parity: flexiffusion forward on the diffusers goldens, GPU"
    python3 scripts/goldens/check_forward_goldens.py --binary "$BIN" --device "$DEVICE" ;;
bench)
    for b in 16 64; do
        step "cifar UNet batch $b: PyTorch CUDA vs flexiffusion (OpenCL)"
        python3 scripts/tools/bench_unet_torch.py --torch-device cuda --device "$DEVICE" --binary "$BIN" --batch $b \
            --repeats 20 --rounds 3 --peak-tflops "$PEAK"
    done ;;
sdxl)
    for b in 1 2; do
        step "SDXL base UNet batch $b, 128x128 latents (1024 px), 77 tokens: PyTorch CUDA vs flexiffusion"
        python3 scripts/tools/bench_unet_torch.py --torch-device cuda --device "$DEVICE" --binary "$BIN" --batch $b \
            --config scripts/tools/sdxl_unet.config.json --repeats 5 --rounds 2 --peak-tflops "$PEAK"
    done ;;
sd)
    step "SD 1.5 UNet batch 2, 64x64 latents, 77 tokens: PyTorch CUDA vs flexiffusion"
    python3 scripts/tools/bench_unet_torch.py --torch-device cuda --device "$DEVICE" --binary "$BIN" --batch 2 \
        --config scripts/tools/sd15_unet.config.json --repeats 10 --rounds 2 --peak-tflops "$PEAK" ;;
attention)
    step "SD 1.5 UNet batch 2: token attention chunked (GEMMs + row softmax) against fused (one kernel), alternating"
    for r in 1 2 3; do for a in chunked fused; do
        echo "round $r, $a: $(FLEXIFFUSION_ATTENTION=$a "$BIN" bench unet --device "$DEVICE" --config scripts/tools/sd15_unet.config.json \
            --batch 2 --repeats 5 --json)"
    done; done
    step "fused attention: parity on the diffusers goldens, GPU"
    FLEXIFFUSION_ATTENTION=fused python3 scripts/goldens/check_forward_goldens.py --binary "$BIN" --device "$DEVICE"
    step "per-kernel profile, SD 1.5 UNet batch 2, fused attention"
    FLEXIFFUSION_ATTENTION=fused "$BIN" bench unet --device "$DEVICE" --config scripts/tools/sd15_unet.config.json --batch 2 \
        --repeats 3 --profile > $WORK/profile-sd15-b2-fused.txt; tail -30 $WORK/profile-sd15-b2-fused.txt ;;
implicit)
    for cfg in "ddpm_cifar10_32 64" "sd15_unet 2"; do set -- $cfg
        step "$1 UNet batch $2: convolutions as im2col + GEMM against the implicit-GEMM kernel, alternating"
        for r in 1 2 3; do for c in im2col-gemm implicit-gemm; do
            echo "round $r, $c: $(FLEXIFFUSION_CONV=$c "$BIN" bench unet --device "$DEVICE" --config scripts/tools/$1.config.json \
                --batch $2 --repeats 5 --json)"
        done; done
    done
    step "implicit-GEMM convolutions: parity on the diffusers goldens, GPU"
    FLEXIFFUSION_CONV=implicit-gemm python3 scripts/goldens/check_forward_goldens.py --binary "$BIN" --device "$DEVICE" ;;
profile)
    step "per-kernel profile, cifar UNet batch 64"
    "$BIN" bench unet --device "$DEVICE" --config scripts/tools/ddpm_cifar10_32.config.json --batch 64 --repeats 5 --profile \
        > $WORK/profile-cifar-b64.txt; tail -40 $WORK/profile-cifar-b64.txt
    step "per-kernel profile, SD 1.5 UNet batch 2"
    "$BIN" bench unet --device "$DEVICE" --config scripts/tools/sd15_unet.config.json --batch 2 --repeats 3 --profile \
        > $WORK/profile-sd15-b2.txt; tail -40 $WORK/profile-sd15-b2.txt ;;
generate)
    step "generate: default model, 64 images x 50 DDIM steps, GPU"
    time "$BIN" generate --device "$DEVICE" --count 64 --steps 50 --out $WORK/generate.png --json
    step "generate: the same, batch 64"
    time "$BIN" generate --device "$DEVICE" --count 64 --steps 50 --batch 64 --out $WORK/generate-b64.png --json ;;
search)
    # The final race judges by FID against the training set (the report's FID is against the test set).
    data="${DATA:-.device/fashion-mnist}"
    for s in ${SPEEDUPS:-5 10 20}; do
        step "search --speedup $s, GPU (defaults; final race by FID against the training set on ${FINAL_SAMPLES:-4096} images)"
        time timeout ${SEARCH_LIMIT:-240} "$BIN" search --device "$DEVICE" --speedup $s \
            --final-judge fid --final-real "$data/train-images-idx3-ubyte.gz" --final-samples ${FINAL_SAMPLES:-4096} --real "$data/t10k-images-idx3-ubyte.gz" \
            --out $WORK/search$s.json --svg $WORK/search$s.svg --html $WORK/search$s.html
        cp $WORK/search$s.json "$OUT/" 2>/dev/null
    done ;;
fid)
    step "FID at 10,000 samples: searched plans beside plain solvers (diffusers' UNet, CUDA)"
    plans="leading:10 dpmsolver++:9 unipc:9 unipc3:9 unipc3:5 dpmsolver++:5 unipc:5 leading:20 unipc3:20"
    for f in $WORK/search*.json; do [ -f "$f" ] && plans="$plans plan:$f"; done
    python3 scripts/experiments/plan_fid_check.py models/fashion-mnist --count 10000 --data "${DATA:-.device/fashion-mnist}" $plans ;;
t2i)
    step "text-to-image: SD 1.5's full configuration (random weights, fp16 files), 512x512, PNDM 50 steps, guidance 7.5"
    python3 scripts/goldens/make_tiny_sd_pipeline.py $WORK/sd15 --sd15 --vocabulary .device/clip-vocab 2>&1 | tail -1
    time "$BIN" generate --model $WORK/sd15 --variant fp16 --device "$DEVICE" --prompt "a photograph of an astronaut riding a horse" \
        --steps 50 --out $WORK/sd15.png --json
    step "the same in diffusers (PyTorch CUDA, float32, TF32 off)"
    python3 - "$WORK/sd15" <<'PY'
import sys, time, torch
from diffusers import StableDiffusionPipeline
torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], variant="fp16", torch_dtype=torch.float32, safety_checker=None,
                                               requires_safety_checker=False).to("cuda")
pipe.set_progress_bar_config(disable=True)
for run in range(2):
    torch.cuda.synchronize(); t = time.perf_counter()
    pipe("a photograph of an astronaut riding a horse", num_inference_steps=50, guidance_scale=7.5)
    torch.cuda.synchronize(); print(f"diffusers run {run + 1}: {time.perf_counter() - t:.2f} s per image (50 steps)", flush=True)
PY
    ;;
t2i-search)
    step "text-to-image search on SD 1.5's full configuration (random weights, 512x512): memory at the search's default batch, then a small search"
    [ -d $WORK/sd15 ] || python3 scripts/goldens/make_tiny_sd_pipeline.py $WORK/sd15 --sd15 --vocabulary .device/clip-vocab 2>&1 | tail -1
    # (batch 32 with guidance: the UNet runs 64, the VAE decodes 32 images of 512x512; two steps are enough for the memory.)
    time timeout 150 "$BIN" generate --model $WORK/sd15 --variant fp16 --device "$DEVICE" --prompt "a kitchen table with fruit" \
        --count 32 --batch 32 --steps 2 --out $WORK/sd15-b32.png --json
    time timeout ${SEARCH_LIMIT:-330} "$BIN" search --model $WORK/sd15 --variant fp16 --device "$DEVICE" --prompts prompts/everyday-scenes.txt \
        --speedup 3 --features fashion --samples ${T2I_SAMPLES:-16} --batch 8 --generations ${T2I_GENERATIONS:-1} --population 4 --children 4 --no-measure \
        --out $WORK/sd15-search.json --latency-table $WORK/latency.json
    cp $WORK/sd15-search.json "$OUT/" 2>/dev/null ;;
*) echo "unknown part $part" ;;
esac; done

step done
tar -czf "$OUT/results.tar.gz" -C $WORK --exclude flexiffusion --exclude icd --exclude sd15 . 2>/dev/null
ls -la "$OUT"
