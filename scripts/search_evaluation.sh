#!/usr/bin/env bash
# Scores a search's best plan against the teacher and the baselines in its report on fresh seeds:
# wall clock of `flexiffusion generate` (whole command) and FID against the Fashion-MNIST test set
# (domain features) for each.
# Usage: scripts/search_evaluation.sh SEARCH.json COUNT SEED OUTDIR [path/to/flexiffusion]
# (the issue's check is COUNT 10000 with a SEED the search did not use).
set -euo pipefail
result="$1"; count="$2"; seed="$3"; out="$4"; bin="${5:-.build/release/flexiffusion}"
test_set=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
mkdir -p "$out"
# The report's baselines carry their plans; write each to a plan file.
python3 - "$result" "$out" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
plans = {"best": report["best_plan"]}
for b in report["baselines"]:
    plans[b["name"].split()[0]] = b["plan"]
for name, plan in plans.items():
    json.dump(plan, open(f"{sys.argv[2]}/{name}.plan.json", "w"), indent=2)
PY
"$bin" plan teacher --steps 100 --out "$out/teacher.plan.json" > /dev/null
printf "%-10s %10s %10s %10s\n" plan seconds speedup FID | tee "$out/table.txt"
teacher_seconds=""
for name in teacher best ddim deepcache; do
    [ -f "$out/$name.plan.json" ] || continue
    start=$(date +%s.%N)
    "$bin" generate --plan "$out/$name.plan.json" --count "$count" --seed "$seed" --batch 64 \
        --output-tensor "$out/$name.safetensors" --out "$out/$name.png" 2> /dev/null
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    [ -n "$teacher_seconds" ] || teacher_seconds="$seconds"
    fid=$("$bin" fid "$out/$name.safetensors" "$test_set" --json | sed 's/.*"fid" *: *\([0-9.e+-]*\).*/\1/')
    printf "%-10s %10.1f %10.2f %10.2f\n" "$name" "$seconds" "$(echo "$teacher_seconds / $seconds" | bc -l)" "$fid" | tee -a "$out/table.txt"
done
