#!/usr/bin/env bash
# Scores a search's best plan against the teacher and the baselines in its report on fresh seeds:
# wall clock of `flexiffusion generate` (whole commands, and their sampling loops alone) and FID
# against the Fashion-MNIST test set (domain features) for each. Columns: whole-command seconds and
# speed-up over the teacher, the range of the rounds' ratios, the speed-up of the sampling loops alone,
# FID, the FIDs of its two halves (the first and the last ROUNDS/2 rounds' images; with ROUNDS ≥ 2), and
# rFID (FID against the teacher's images from the same seeds; when the teacher is among PLANS).
# Usage: scripts/experiments/search_evaluation.sh SEARCH.json COUNT SEED OUTDIR [path/to/flexiffusion]
# (the issue's check is COUNT 10000 with a SEED the search did not use).
# Environment:
#   ROUNDS (4)  the COUNT images are made in ROUNDS chunks; each round runs every plan once, in turn,
#               so that a machine whose speed drifts over minutes slows all plans alike. Chunk r draws
#               its noise from seed SEED + r. A plan's seconds are its rounds' sum; FID is over all
#               of its COUNT images.
#   BATCH (64), TEST_SET (Debian's t10k-images-idx3-ubyte.gz), PLANS (teacher best ddim deepcache;
#               the report's other baselines are named by their first word, dpmsolver++, unipc2, …,
#               and the evolution's own pick before the final race is "pick").
#   EXTRA_PLANS  more plans to run beside them, as NAME=PLAN.json words (e.g. "mine=plans/x.json").
set -euo pipefail
result="$1"; count="$2"; seed="$3"; out="$4"; bin="${5:-.build/release/flexiffusion}"
test_set="${TEST_SET:-/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz}"
batch="${BATCH:-64}"; rounds="${ROUNDS:-4}"; plans="${PLANS:-teacher best ddim deepcache}"
mkdir -p "$out"
# The report's baselines carry their plans; write each to a plan file.
python3 - "$result" "$out" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
plans = {"best": report["best_plan"]}
for b in report["baselines"]:
    # "best on 64 images" is the evolution's own pick before the final race: "pick", so that it
    # does not take the place of the race's result ("best").
    name = "pick" if b["name"].startswith("best on ") else b["name"].split()[0]
    assert name not in plans, f"two plans named {name} in {sys.argv[1]}"
    plans[name] = b["plan"]
for name, plan in plans.items():
    json.dump(plan, open(f"{sys.argv[2]}/{name}.plan.json", "w"), indent=2)
PY
"$bin" plan teacher --steps 100 --out "$out/teacher.plan.json" > /dev/null
for extra in ${EXTRA_PLANS:-}; do
    name="${extra%%=*}"; file="${extra#*=}"
    [ "$name" != "$extra" ] && [ -f "$file" ] || { echo "EXTRA_PLANS: \"$extra\" is not NAME=PLAN.json with an existing file" >&2; exit 2; }
    "$bin" plan show "$file" > /dev/null   # (a clear error for a file that is not a plan)
    cp "$file" "$out/$name.plan.json"
    plans="$plans $name"
done

for ((r = 0; r < rounds; r++)); do
    n=$((count / rounds + (r < count % rounds ? 1 : 0)))
    for name in $plans; do
        [ -f "$out/$name.plan.json" ] || continue
        start=$(date +%s.%N)
        "$bin" generate --plan "$out/$name.plan.json" --count "$n" --seed "$((seed + r))" --batch "$batch" \
            --output-tensor "$out/$name.round-$r.safetensors" 2> "$out/$name.round-$r.log"
        # generate's last line: "N images, …, S s on DEVICE: wrote …" (S: the sampling loop alone)
        sampling=$(sed -n 's/.* \([0-9.]*\) s on .*/\1/p' "$out/$name.round-$r.log" | tail -1)
        echo "$name $r $n $start $(date +%s.%N) ${sampling:-nan}" >> "$out/times.txt"
        echo "round $((r + 1))/$rounds: $name, $n images, $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s" >&2
    done
done

# Each plan's rounds into one tensor file (safetensors: 8-byte header size, JSON header, data).
python3 - "$out" "$rounds" $plans <<'PY'
import json, os, struct, sys
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def read(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        t = header["sample"]
        assert t["dtype"] == "F32", path
        data = f.read()[t["data_offsets"][0]:t["data_offsets"][1]]
    return t["shape"], data
for name in names:
    parts = [read(f"{out}/{name}.round-{r}.safetensors") for r in range(rounds) if os.path.exists(f"{out}/{name}.round-{r}.safetensors")]
    if not parts:
        continue
    shape = [sum(s[0] for s, _ in parts)] + parts[0][0][1:]
    data = b"".join(d for _, d in parts)
    def write(path, shape, data):
        header = json.dumps({"sample": {"dtype": "F32", "shape": shape, "data_offsets": [0, len(data)]}}).encode()
        header += b" " * (-len(header) % 8)
        with open(path + ".tmp", "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header + data)
        os.replace(path + ".tmp", path)
    write(f"{out}/{name}.safetensors", shape, data)
    # The halves: the first and the last half of the rounds (their spread says how far FID moves
    # with the draw of noise).
    if len(parts) >= 2:
        h = len(parts) // 2
        for i, half in enumerate([parts[:h], parts[h:]]):
            write(f"{out}/{name}.half-{i}.safetensors", [sum(s[0] for s, _ in half)] + parts[0][0][1:], b"".join(d for _, d in half))
    for r in range(rounds):
        if os.path.exists(f"{out}/{name}.round-{r}.safetensors"):
            os.remove(f"{out}/{name}.round-{r}.safetensors")
PY

# FID between two image sets, the number alone.
fid_of() { "$bin" fid "$1" "$2" --json | sed 's/.*"fid" *: *\([0-9.e+-]*\).*/\1/'; }
# The test set's statistics once (pytorch-fid's .npz), not once per FID.
case "$test_set" in
*.npz) ;;
*) "$bin" fid "$test_set" --save-stats "$out/test-set.npz" > /dev/null; test_set="$out/test-set.npz" ;;
esac
printf "%-10s %10s %10s %14s %10s %10s %17s %8s\n" plan seconds speedup "round ratios" "sampling" FID "halves" rFID | tee "$out/table.txt"
for name in $plans; do
    [ -f "$out/$name.safetensors" ] || continue
    fid=$(fid_of "$out/$name.safetensors" "$test_set")
    halves="nan nan"
    if [ -f "$out/$name.half-1.safetensors" ]; then
        halves="$(fid_of "$out/$name.half-0.safetensors" "$test_set") $(fid_of "$out/$name.half-1.safetensors" "$test_set")"
    fi
    rfid=nan
    if [ -f "$out/teacher.safetensors" ]; then
        rfid=$(fid_of "$out/teacher.safetensors" "$out/$name.safetensors")
    fi
    python3 - "$out/times.txt" "$name" "$fid" "$rfid" $halves <<'PY' | tee -a "$out/table.txt"
import sys
rows = [line.split() for line in open(sys.argv[1])]
def seconds(name, column=None):
    return {int(r[1]): float(r[column]) if column else float(r[4]) - float(r[3]) for r in rows if r[0] == name}
mine, teacher = seconds(sys.argv[2]), seconds("teacher")
ratios = sorted(teacher[r] / mine[r] for r in mine if r in teacher)
total = sum(mine.values())
speedup = sum(teacher.values()) / total if teacher else float("nan")
spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}" if ratios else "-"
# the same ratio over the sampling loops alone (process start, kernel and model loading left out)
sampling = sum(seconds("teacher", 5).values()) / sum(seconds(sys.argv[2], 5).values()) if teacher and len(rows[0]) > 5 else float("nan")
halves = f"{float(sys.argv[5]):8.2f} {float(sys.argv[6]):8.2f}"
print(f"{sys.argv[2]:<10} {total:10.1f} {speedup:10.2f} {spread:>14} {sampling:10.2f} {float(sys.argv[3]):10.2f} {halves:>17} {abs(float(sys.argv[4])):8.3f}")  # (abs: the teacher against itself is ±0)
PY
done
