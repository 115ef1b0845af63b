#!/usr/bin/env bash
# The command line's answer to bad input that needs a process: bad files read while working (exit
# code 1), environments, the cache, signals, FIFOs, symlinks and whole runs — each case runs the
# binary and expects an exit code and a fragment of the message, never a trap (132–139), a hang (the
# timeout's 124) or a written output. The option checks (exit code 64) are an in-process table test:
# Tests/CLITests/OptionTests.swift. Run by .ci/run:
#     scripts/ci/test_cli_robustness.sh .build/debug/flexiffusion
set -uo pipefail
bin=$(realpath "${1:?usage: test_cli_robustness.sh FLEXIFFUSION}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0 cases=0

# case EXPECTED_RC FRAGMENT ARGS… — runs `bin ARGS…` (60 s at most) and checks its exit code and stderr;
# case EXPECTED_RC FRAGMENT env VAR=… "$bin" ARGS… runs it with a changed environment.
case_() {
    local want=$1 fragment=$2; shift 2
    cases=$((cases + 1))
    local out rc
    if [[ $1 == env ]]; then   # (case_ RC FRAGMENT env VAR=… "$bin" ARGS…: with a changed environment)
        out=$(cd "$tmp" && timeout 60 "$@" 2>&1 >/dev/null)
    else
        out=$(cd "$tmp" && timeout 60 "$bin" "$@" 2>&1 >/dev/null)
    fi
    rc=$?
    if [[ $rc != "$want" || $out != *"$fragment"* ]]; then
        failures=$((failures + 1))
        echo "FAIL: flexiffusion $* → rc $rc (want $want), stderr: ${out:0:300}"
    fi
}

# Files the cases read.
printf '{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2, "eta": 1e30}, "actions": ["full", "full"]}' > "$tmp/eta.json"
printf '{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "pndm", "steps": 4}, "actions": ["full", "full", "full", "full"]}' > "$tmp/pndm-short.json"
printf '{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2, "skip_prk_steps": true}, "actions": ["full", "full"]}' > "$tmp/skip-ddim.json"
printf 'not json' > "$tmp/garbage.json"
printf '\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x02' > "$tmp/huge-idx3-ubyte"
# A model folder whose config has norm_num_groups 0 (a division by zero before it was checked).
model=$(dirname "$(realpath "$0")")/../../models/fashion-mnist
mkdir -p "$tmp/bad-model/unet" && cp -r "$model/scheduler" "$model/model_index.json" "$tmp/bad-model/" && cp "$model/unet/"*.safetensors "$tmp/bad-model/unet/"
sed 's/"norm_num_groups": *[0-9]*/"norm_num_groups": 0/' "$model/unet/config.json" > "$tmp/bad-model/unet/config.json"

# Files named by options, found wrong while reading (1).
case_ 1 "garbage.json" bench speedups "$tmp/garbage.json"
printf 'not an archive' > "$tmp/bad.npz"
case_ 1 "bad.npz: not a .npz (zip) archive" search --speedup 2 --final-judge fid --final-real "$tmp/bad.npz" --out "$tmp/never.json"
# Files (1: found wrong while reading).
case_ 1 "eta must be in [0, 1]" generate --plan "$tmp/eta.json" --count 2
case_ 1 "5 model evaluations" generate --plan "$tmp/pndm-short.json" --count 2
case_ 1 "skip_prk_steps applies to pndm only" generate --plan "$tmp/skip-ddim.json" --count 2
case_ 1 "not a valid step plan" generate --plan "$tmp/garbage.json" --count 2
case_ 1 "cannot read step plan" generate --plan "$tmp/missing.json" --count 2
case_ 1 "truncated IDX file" fid "$tmp/huge-idx3-ubyte" "$tmp/huge-idx3-ubyte"
# NaN in an image set: an error naming the image, never a finite FID.
python3 -c 'import json, struct, sys; h = json.dumps({"sample": {"dtype": "F32", "shape": [2, 1, 28, 28], "data_offsets": [0, 6272]}}).encode(); sys.stdout.buffer.write(struct.pack("<Q", len(h)) + h + struct.pack("<1568f", float("nan"), *[0.1] * 1567))' > "$tmp/nan-images.safetensors"
case_ 1 "image 0 holds non-finite values" fid "$tmp/nan-images.safetensors" "$tmp/nan-images.safetensors"
mkdir -p "$tmp/pngs" && "$bin" generate --steps 2 --count 2 --out-dir "$tmp/pngs" > /dev/null 2>&1
rm -rf "$tmp/pngs"
case_ 1 "norm_num_groups = 0" generate --model "$tmp/bad-model" --count 2 --steps 2
# A number that does not fit its field is named (JSONDecoder alone says "not valid JSON").
sed 's/"in_channels": *[0-9]*/"in_channels": 3.7/' "$model/unet/config.json" > "$tmp/bad-model/unet/config.json"
case_ 1 "in_channels: 3.7 does not fit this field" generate --model "$tmp/bad-model" --count 2 --steps 2
sed 's/"sample_size": *[0-9]*/"sample_size": 1e30/' "$model/unet/config.json" > "$tmp/bad-model/unet/config.json"
case_ 1 "sample_size: not a whole number" generate --model "$tmp/bad-model" --count 2 --steps 2
printf '{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2.5}, "actions": ["full", "full"]}' > "$tmp/fractional.json"
case_ 1 "sampler.steps: 2.5 does not fit this field" plan show "$tmp/fractional.json"
# What generate refuses, plan show and rfid refuse too (the sampler is built on the model's scheduler config).
python3 -c 'import json; print(json.dumps({"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 1001}, "actions": ["full"] * 1001}))' > "$tmp/steps1001.json"
printf '{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "dpmsolver++", "steps": 2, "timesteps": [1500, 500]}, "actions": ["full", "full"]}' > "$tmp/timesteps1500.json"
for cmd in "plan show" "rfid --count 2" "generate --count 2 --plan"; do
    case_ 1 "1001 steps: a run takes between 1 and the 1000 training timesteps" $cmd "$tmp/steps1001.json"
    case_ 1 "must be strictly decreasing within 0…999" $cmd "$tmp/timesteps1500.json"
done
# Stable Diffusion's UNet: a pipeline without a tokenizer, a UNet folder, variants named; forward needs its encoder states.
sd=$(dirname "$(realpath "$0")")/../../Tests/EngineTests/Goldens/sd15-layout
case_ 1 "no tokenizer/ folder" generate --model "$sd" --prompt "a cat" --steps 2
case_ 1 "is a UNet folder" generate --model "$sd/unet" --prompt "a cat" --steps 2
case_ 1 "no diffusion_pytorch_model.bf16.safetensors for --variant bf16" bench unet --model "$sd" --variant bf16 --batch 1
case_ 1 "no tensor \`encoder_hidden_states\`" forward --model "$sd" --input "$sd/../cifar-layout/golden.safetensors" --timestep 1 --output out.safetensors
case_ 1 "is a UNet2DModel, which takes none" forward --input "$sd/golden.safetensors" --timestep 1 --output out.safetensors
# Text-to-image on a pipeline assembled from the goldens (SD 2-layout UNet, gelu CLIP text encoder,
# VAE; a byte-level vocabulary of 514 tokens, which python3 writes): bad sizes, scales, prompt files,
# latents and samplers named — and one run that works, so the folder itself is sound.
goldens=$(dirname "$(realpath "$0")")/../../Tests/EngineTests/Goldens
pipe="$tmp/sd-pipeline"
mkdir -p "$pipe/unet" "$pipe/text_encoder" "$pipe/vae" "$pipe/tokenizer" "$pipe/scheduler"
cp "$goldens/sd2-layout/config.json" "$goldens/sd2-layout/diffusion_pytorch_model.safetensors" "$pipe/unet/"
cp "$goldens/clip-text-gelu/config.json" "$goldens/clip-text-gelu/model.fp16.safetensors" "$pipe/text_encoder/"
cp "$goldens/vae-layout/config.json" "$goldens/vae-layout/diffusion_pytorch_model.safetensors" "$pipe/vae/"
printf '{"_class_name": "StableDiffusionPipeline"}' > "$pipe/model_index.json"
printf '{"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "skip_prk_steps": true, "steps_offset": 1}' > "$pipe/scheduler/scheduler_config.json"
python3 - "$pipe/tokenizer" <<'PY'
import json, sys
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
chars = [chr(c) for c in cs]
vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
json.dump({t: i for i, t in enumerate(vocab)}, open(sys.argv[1] + "/vocab.json", "w"))
open(sys.argv[1] + "/merges.txt", "w").write("#version: 0.2\n")
PY
printf '\n  \n' > "$tmp/no-prompts.txt"
printf 'a\nb\nc\n' > "$tmp/three-prompts.txt"
case_ 0 "" generate --model "$pipe" --prompt "a cat" --steps 2 --height 32 --width 32 --out t2i.png
if [[ ! -s $tmp/t2i.png ]]; then failures=$((failures + 1)); echo "FAIL: the text-to-image run wrote no t2i.png"; fi
rm -f "$tmp/t2i.png"   # (the one output a case here may write: the check at the end counts the rest)
case_ 1 "holds no prompt" generate --model "$pipe" --prompts "$tmp/no-prompts.txt" --steps 2
case_ 1 "cannot read --prompts" generate --model "$pipe" --prompts "$tmp/missing.txt" --steps 2
case_ 1 "latents of shape [2, 4, 16, 16]; 32×32 images need [N, 4, 8, 8]" generate --model "$pipe" --prompt a --latents "$goldens/sd2-layout/golden.safetensors" --steps 2 --height 32 --width 32
case_ 1 "no tokenizer/ folder" search --model "$sd" --speedup 2 --prompts "$tmp/three-prompts.txt"
case_ 1 "cannot read --prompts" search --model "$pipe" --speedup 2 --prompts "$tmp/missing.txt" --features fashion
case_ 1 "holds no prompt" rfid "$tmp/eta.json" --model "$pipe" --prompts "$tmp/no-prompts.txt" --features fashion

# Image-to-image on the same pipeline: PNGs written by python3 (RGB 32×32, grey 32×32, RGB 36×32), in a
# folder of their own (the check at the end counts PNGs in $tmp as outputs).
mkdir -p "$tmp/init"
python3 - "$tmp/init" <<'PY'
import struct, sys, zlib
def png(path, w, h, channels):
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13 + c * 50) % 256 for x in range(w) for c in range(channels)) for y in range(h))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if channels == 3 else 0, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
png(sys.argv[1] + "/rgb.png", 32, 32, 3)
png(sys.argv[1] + "/grey.png", 32, 32, 1)
png(sys.argv[1] + "/odd.png", 36, 32, 3)
PY
mkdir -p "$tmp/no-pngs"
case_ 0 "grey images are read as RGB" generate --model "$pipe" --prompt "a cat" --image "$tmp/init/grey.png" --steps 4 --strength 0.5 --out i2i.png
if [[ ! -s $tmp/i2i.png ]]; then failures=$((failures + 1)); echo "FAIL: the image-to-image run wrote no i2i.png"; fi
rm -f "$tmp/i2i.png"
case_ 64 "strength 0.0 with 4 steps keeps no step" generate --model "$pipe" --prompt a --image "$tmp/init/rgb.png" --steps 4 --strength 0
case_ 64 "the strength must be in [0, 1]" generate --model "$pipe" --prompt a --image "$tmp/init/rgb.png" --steps 4 --strength nan
case_ 64 "the init images are 36×32" generate --model "$pipe" --prompt a --image "$tmp/init/odd.png" --steps 4
case_ 64 "the init images are 32×32; this run makes 64×64 images" generate --model "$pipe" --prompt a --image "$tmp/init/rgb.png" --steps 4 --height 64 --width 64
case_ 1 "no .png files" generate --model "$pipe" --prompt a --images "$tmp/no-pngs" --steps 4
case_ 64 "--image is for Stable Diffusion pipelines" generate --image "$tmp/init/rgb.png" --steps 4
"$bin" plan teacher --model "$pipe" --scheduler pndm --steps 4 --strength 0.5 --out "$tmp/i2i-plan.json" 2> /dev/null
case_ 64 "which is for image-to-image: give init images" generate --model "$pipe" --prompt a --plan "$tmp/i2i-plan.json"
case_ 0 "" rfid "$tmp/i2i-plan.json" --model "$pipe" --prompts "$tmp/three-prompts.txt" --init-image "$tmp/init/rgb.png" --features fashion --count 2 --batch 2 --teacher 4
case_ 64 "not at the image-to-image strength 0.3" rfid "$tmp/i2i-plan.json" --model "$pipe" --prompts "$tmp/three-prompts.txt" --init-image "$tmp/init/rgb.png" --strength 0.3 --features fashion --count 2 --teacher 4
"$bin" plan teacher --model "$pipe" --scheduler pndm --steps 4 --out "$tmp/plain-plan.json" 2> /dev/null
case_ 64 "needs a strength" generate --model "$pipe" --prompt a --image "$tmp/init/rgb.png" --plan "$tmp/plain-plan.json"

# Class-conditional latent models (the LDM golden: UNet2DModel with 11 classes, VQModel decoder).
ldm="$goldens/ldm-class-layout"
case_ 0 "" generate --model "$ldm" --class-labels 3,7 --null-class 10 --guidance-scale 3 --steps 3 --count 2 --out ldm.png
if [[ ! -s $tmp/ldm.png ]]; then failures=$((failures + 1)); echo "FAIL: the class-conditional run wrote no ldm.png"; fi
rm -f "$tmp/ldm.png"
case_ 1 "class label 11 is outside the model's 11 classes" generate --model "$ldm" --class-labels 11 --steps 3 --count 2
case_ 64 "the null class 12 is outside" generate --model "$ldm" --null-class 12 --guidance-scale 3 --steps 3 --count 2
case_ 64 "are for class-conditional UNet2DModels" generate --class-labels 1 --steps 3 --count 2
case_ 1 "needs tensor \`class_labels\` [2]" forward --model "$ldm" --input "$goldens/cifar-layout/golden.safetensors" --timestep 1 --output out.safetensors

# Teacher trajectories and the schedule fitted to them (default model, a tiny grid).
case_ 0 "" trajectories --count 2 --steps 6 --batch 2 --out traj.safetensors
case_ 0 "" plan dp --trajectories "$tmp/traj.safetensors" --evaluations 3 --out dp.json
rm -f "$tmp/traj.safetensors" "$tmp/dp.json"
case_ 1 "cannot open" plan dp --trajectories "$tmp/missing.safetensors" --evaluations 3
case_ 1 "not a trajectories file" plan dp --trajectories "$goldens/sdxl-layout/golden.safetensors" --evaluations 3
case_ 64 "first-order steps (dpmsolver++1) only" plan dp --trajectories "$goldens/sdxl-layout/golden.safetensors" --evaluations 3 --solver unipc3

# SDXL on a pipeline assembled from the goldens (SDXL-layout UNet with its text_time embedding, the
# quick_gelu CLIP text encoder and the CLIPTextModelWithProjection, the VAE, Euler; the same byte-level
# vocabulary, "!" as tokenizer_2's pad): one run that works, then what a user can get wrong.
xl="$tmp/sdxl-pipeline"
mkdir -p "$xl/unet" "$xl/text_encoder" "$xl/text_encoder_2" "$xl/vae" "$xl/scheduler"
cp "$goldens/sdxl-layout/unet/"* "$xl/unet/"
cp "$goldens/clip-text-quick/config.json" "$goldens/clip-text-quick/model.safetensors" "$xl/text_encoder/"
cp "$goldens/clip-text-projection/config.json" "$goldens/clip-text-projection/model.safetensors" "$xl/text_encoder_2/"
cp "$goldens/vae-layout/config.json" "$goldens/vae-layout/diffusion_pytorch_model.safetensors" "$xl/vae/"
cp -r "$pipe/tokenizer" "$xl/tokenizer" && cp -r "$pipe/tokenizer" "$xl/tokenizer_2"
printf '{"pad_token": "!"}' > "$xl/tokenizer_2/special_tokens_map.json"
printf '{"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": true}' > "$xl/model_index.json"
printf '{"_class_name": "EulerDiscreteScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}' > "$xl/scheduler/scheduler_config.json"
case_ 0 "" generate --model "$xl" --prompt "a cat" --steps 2 --height 32 --width 32 --original-size 64,48 --out xl.png
if [[ ! -s $tmp/xl.png ]]; then failures=$((failures + 1)); echo "FAIL: the SDXL run wrote no xl.png"; fi
rm -f "$tmp/xl.png"
"$bin" plan deepcache --model "$xl" --scheduler euler --steps 4 --interval 2 --cache-branch-id 3 --out "$tmp/xl-plan.json" 2> /dev/null
case_ 0 "" rfid "$tmp/xl-plan.json" --model "$xl" --prompts "$tmp/three-prompts.txt" --features fashion --count 2 --batch 2 --teacher 4
case_ 0 "" profile --model "$xl" --batch 1 --repeats 1 --top 3 --no-write
case_ 64 "micro-conditioning (original size, crop, target size) is SDXL's" generate --model "$pipe" --prompt a --steps 2 --original-size 64,64
mv "$xl/text_encoder_2" "$xl/te2"
case_ 1 "no text_encoder_2/ folder" generate --model "$xl" --prompt a --steps 2
mv "$xl/text_encoder" "$xl/te1" && mv "$xl/te2" "$xl/text_encoder_2"
case_ 1 "is an SDXL refiner" generate --model "$xl" --prompt a --steps 2
mv "$xl/text_encoder_2" "$xl/te2" && mkdir -p "$xl/text_encoder_2" && mv "$xl/te1" "$xl/text_encoder"
cp "$goldens/clip-text-gelu/config.json" "$goldens/clip-text-gelu/model.fp16.safetensors" "$xl/text_encoder_2/"
case_ 1 "must be a CLIPTextModelWithProjection" generate --model "$xl" --prompt a --steps 2
rm -rf "$xl/text_encoder_2" && cp -r "$xl/te2" "$xl/text_encoder_2"
cp -r "$goldens/clip-text-gelu" "$xl/text_encoder" && rm -rf "$xl/text_encoder" && mkdir -p "$xl/text_encoder"
cp "$goldens/clip-text-gelu/config.json" "$goldens/clip-text-gelu/model.fp16.safetensors" "$xl/text_encoder/"
case_ 1 "hidden sizes add up to 64, not the UNet's cross_attention_dim 56" generate --model "$xl" --prompt a --steps 2
rm -rf "$xl/text_encoder" && mkdir -p "$xl/text_encoder"
cp "$goldens/clip-text-quick/config.json" "$goldens/clip-text-quick/model.safetensors" "$xl/text_encoder/"
sed -i 's/"projection_class_embeddings_input_dim": 68/"projection_class_embeddings_input_dim": 72/' "$xl/unet/config.json"
case_ 1 "expects an added embedding of 72 values" generate --model "$xl" --prompt a --steps 2
printf '{"_class_name": "StableDiffusionXLInpaintPipeline"}' > "$xl/model_index.json"
case_ 1 "inpainting" generate --model "$xl" --prompt a --steps 2
printf '{"_class_name": "StableDiffusionControlNetPipeline"}' > "$xl/model_index.json"
case_ 1 "ControlNet" generate --model "$xl" --prompt a --steps 2
python3 - "$tmp/xl-in.safetensors" <<'PY'
import json, struct, sys
tensors = {"sample": [1, 4, 16, 16], "encoder_hidden_states": [1, 77, 56]}
header, offset = {}, 0
for name, shape in tensors.items():
    n = 4 * shape[0] * shape[1] * shape[2] * (shape[3] if len(shape) > 3 else 1)
    header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
    offset += n
text = json.dumps(header).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(text)) + text + struct.pack("<f", 0.5) * (offset // 4))
PY
case_ 1 "needs tensors \`text_embeds\`" forward --model "$goldens/sdxl-layout" --input "$tmp/xl-in.safetensors" --timestep 1 --output out.safetensors

# The CLIP tokenizer: missing and malformed vocabulary files, bad lengths, missing options.
mkdir -p "$tmp/tok" && printf 'not json' > "$tmp/tok/vocab.json" && printf '#version: 0.2\n' > "$tmp/tok/merges.txt"
case_ 1 "is not a JSON object of token" tokenize --tokenizer "$tmp/tok" --prompt a
case_ 1 "cannot read" tokenize --tokenizer "$tmp/missing" --prompt a

# CLIP score: the golden CLIP (no tokenizer files) with the pipeline's byte-level tokenizer beside it (its
# ids fit the golden's 1,000-token vocabulary): one run that works, then what a
# user can get wrong: a missing or non-CLIP folder, no tokenizer, images that are not images.
clip="$tmp/clip" && mkdir -p "$clip" && cp "$goldens/clip-vit-l14-layout/"{config.json,model.safetensors,preprocessor_config.json} "$clip/"
cp "$pipe/tokenizer/"{vocab.json,merges.txt} "$clip/"
case_ 0 "" clipscore "$goldens/clip-vit-l14-layout/images" --prompt "a cat" --clip "$clip"
case_ 1 "CLIP folder $tmp/none does not exist" clipscore "$goldens/clip-vit-l14-layout/images" --prompt a --clip "$tmp/none"
case_ 1 "not a CLIP model" clipscore "$goldens/clip-vit-l14-layout/images" --prompt a --clip "$pipe/text_encoder"
case_ 1 "no tokenizer files" clipscore "$goldens/clip-vit-l14-layout/images" --prompt a --clip "$goldens/clip-vit-l14-layout"
case_ 1 "no .png files" clipscore "$tmp/tok" --prompt a --clip "$clip"
case_ 1 "not an image folder" clipscore "$tmp/garbage.json" --prompt a --clip "$clip"
case_ 1 "holds no prompt" clipscore "$goldens/clip-vit-l14-layout/images" --prompts "$tmp/no-prompts.txt" --clip "$clip"
printf '{"format": "flexiffusion-step-plan", "version": 1, "sampler": {"scheduler": "ddim", "steps": 2}, "actions": ["full", "full"]}' > "$tmp/two.json"
case_ 64 "needs a Stable Diffusion pipeline and --prompts" rfid --clip "$clip" --count 2 --batch 2 "$tmp/two.json"
case_ 1 "no tokenizer files" rfid --model "$pipe" --prompts "$tmp/three-prompts.txt" --clip "$goldens/clip-vit-l14-layout" --count 2 --batch 2 "$tmp/two.json"

# The unpacked default model is compared with the embedded bytes: a same-size corruption is rewritten.
cases=$((cases + 1))
xdg="$tmp/xdg"
XDG_CACHE_HOME="$xdg" "$bin" plan show > /dev/null 2>&1
weights=$(ls "$xdg"/flexiffusion/default-model-*/unet/diffusion_pytorch_model.safetensors 2> /dev/null)
if [[ -z $weights ]]; then
    failures=$((failures + 1)); echo "FAIL: plan show did not unpack the default model under \$XDG_CACHE_HOME"
else
    sum=$(cksum < "$weights")
    printf '\xff\xff\xff\xff' | dd of="$weights" bs=1 seek=4096 conv=notrunc status=none
    XDG_CACHE_HOME="$xdg" "$bin" plan show > /dev/null 2>&1
    if [[ $(cksum < "$weights") != "$sum" ]]; then failures=$((failures + 1)); echo "FAIL: a corrupted unpacked default model was not rewritten"; fi
fi
rm -rf "$xdg"

# A cache that cannot be written (its parent is a file; root may write anywhere else): named, with
# the way out, for PoCL's kernel cache (PoCL then offers no device) and for the default model's.
mkdir -p "$tmp/home" && touch "$tmp/home/.cache"
case_ 1 "PoCL (the CPU driver) cannot create its kernel cache in $tmp/home/.cache/pocl (Not a directory)" env -u POCL_CACHE_DIR HOME="$tmp/home" XDG_CACHE_HOME= "$bin" devices
case_ 1 "cache/flexiffusion/default-model-" env POCL_CACHE_DIR="$tmp/pocl" HOME="$tmp/home" XDG_CACHE_HOME= "$bin" plan show
case_ 1 "Not a directory (the cache folder is" env POCL_CACHE_DIR="$tmp/pocl" HOME="$tmp/home" XDG_CACHE_HOME= "$bin" plan show
rm -rf "$tmp/home" "$tmp/pocl"

# A oneDNN library named by FLEXIFFUSION_ONEDNN that cannot be opened, or is not oneDNN: an error
# naming it, not a silent fall back to the slower im2col path.
case_ 1 "cannot open $tmp/none/libdnnl.so.3" env FLEXIFFUSION_ONEDNN="$tmp/none/libdnnl.so.3" "$bin" generate --steps 2 --count 2 --out "$tmp/onednn.png"
case_ 1 "libz.so.1 is neither oneDNN 2 nor 3" env FLEXIFFUSION_ONEDNN=libz.so.1 "$bin" generate --steps 2 --count 2 --out "$tmp/onednn.png"
case_ 1 "\$FLEXIFFUSION_ONEDNN_LAYOUT=nhwc is not one of carried, blocked, plain" env FLEXIFFUSION_ONEDNN_LAYOUT=nhwc "$bin" generate --steps 2 --count 2 --out "$tmp/onednn.png"
[[ ! -e $tmp/onednn.png ]] || { failures=$((failures + 1)); echo "FAIL: a failed oneDNN choice left $tmp/onednn.png"; }

# Image files by their first bytes, whatever their names (an IDX file renamed).
idx=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [[ -f $idx ]]; then
    cp "$idx" "$tmp/renamed.data"
    case_ 0 "" fid renamed.data renamed.data --limit 8
    rm -f "$tmp/renamed.data"
fi

# Files that are not regular files, and one path for two outputs.
mkfifo "$tmp/fifo"
case_ 1 "not a regular file (a FIFO" generate --noise "$tmp/fifo" --steps 2
mkdir -p "$tmp/folder.safetensors"
case_ 1 "is a folder, not a safetensors file" generate --noise "$tmp/folder.safetensors" --steps 2
rm -rf "$tmp/fifo" "$tmp/folder.safetensors"

# Ctrl-C during a search (as `timeout -s INT` sends it: to the command, then again to its group, which
# once counted as a second Ctrl-C and exited from the signal thread mid-search): the search stops at
# the next evaluation, leaves a valid results file and exits with 130. (--final-samples 0: no race, so
# no training-set statistics to compute before the search; with a cold cache on a loaded machine that
# took longer than the 12 s, and the SIGINT came before the search began.)
cases=$((cases + 1))
out=$(cd "$tmp" && timeout --preserve-status -s INT 12 "$bin" search --speedup 2.5 --samples 4 --batch 2 --generations 50 --final-samples 0 \
      --out interrupted.json --latency-table interrupted-latency.json 2>&1 >/dev/null)
rc=$?
if [[ $rc != 130 || $out != *"interrupted: "* || $out == *"interrupted again"* ]] \
   || ! python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$tmp/interrupted.json" 2> /dev/null; then
    failures=$((failures + 1)); echo "FAIL: search interrupted by SIGINT → rc $rc, stderr: ${out: -300}"
fi
rm -f "$tmp"/interrupted*

# Ctrl-C during generate: it stops at the next step, removes what it wrote (outputs are streamed
# batch by batch, and the --out-dir it made) and exits with 130 — all outputs or none.
cases=$((cases + 1))
out=$(cd "$tmp" && timeout --preserve-status -s INT 8 "$bin" generate --steps 50 --count 4096 --batch 16 \
      --out-dir partial --output-tensor partial.safetensors 2>&1 >/dev/null)
rc=$?
if [[ $rc != 130 || $out != *"interrupted: nothing written"* || -e $tmp/partial ]] || compgen -G "$tmp/.partial*" > /dev/null \
   || [[ -e $tmp/partial.safetensors ]]; then
    failures=$((failures + 1)); echo "FAIL: generate interrupted by SIGINT → rc $rc, left: $(ls -A "$tmp" | tr '\n' ' ') (the --out-dir it made must go too), stderr: ${out: -200}"
fi
rm -rf "$tmp/partial"

# Outputs through a symlink reach its target; a device node stays a device (made here, never /dev's own).
ln -s written.png "$tmp/link.png"
(cd "$tmp" && "$bin" generate --steps 2 --count 2 --out link.png > /dev/null 2>&1)
cases=$((cases + 1))
if [[ ! -L $tmp/link.png || ! -s $tmp/written.png ]]; then failures=$((failures + 1)); echo "FAIL: --out through a symlink"; fi
rm -f "$tmp/link.png" "$tmp/written.png"
if [[ $EUID == 0 ]] && mknod "$tmp/null" c 1 3 2> /dev/null; then
    cases=$((cases + 1))
    (cd "$tmp" && "$bin" plan teacher --steps 3 --out null > /dev/null 2>&1 && "$bin" generate --steps 2 --count 2 --out null > /dev/null 2>&1)
    if [[ ! -c $tmp/null ]]; then failures=$((failures + 1)); echo "FAIL: writing to a device node replaced it"; fi
    rm -f "$tmp/null"
else
    echo "note: not root (or no mknod here): the device-node case did not run"
fi

# No case may have written an output.
if compgen -G "$tmp/*.png" > /dev/null || [[ -e $tmp/samples.png || -e $tmp/out.safetensors ]]; then
    failures=$((failures + 1)); echo "FAIL: a refused command wrote an image: $(ls "$tmp")"
fi
echo "CLI robustness: $((cases - failures)) of $cases cases as expected"
[[ $failures == 0 ]]
