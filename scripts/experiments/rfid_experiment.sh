#!/usr/bin/env bash
# Is rFID a good judge? Scores 12 plans on the default model (100-step DDIM teacher) two ways:
#   rFID: `flexiffusion rfid` at N_RFID images against the teacher's images from the same seed;
#   FID:  `flexiffusion generate` N_FID images (seed 1, other noise), then `flexiffusion fid` against the
#         Fashion-MNIST test set (10,000 images);
# both with the embedded Fashion-MNIST feature network, and reports each plan's scores, the time each
# evaluation took, and Kendall's τ between the two rankings.
#
# DDIM with fewer steps is written on the teacher's 100-step grid (a full step, then null steps:
# under DDIM eta 0 exactly DDIM jumping to the next full step), so that rFID compares it with the
# same teacher.
#
# Usage: scripts/experiments/rfid_experiment.sh [N_RFID] [N_FID] [OUT_DIR]     (defaults 256 10000 experiments/rfid)
# The issue's sizes (256 / 10,000) take hours on a 2-core CPU; see README for the sizes run.
set -euo pipefail
N_RFID=${1:-256}
N_FID=${2:-10000}
OUT=${3:-experiments/rfid}
F=${FLEXIFFUSION:-.build/release/flexiffusion}
TEST=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
mkdir -p "$OUT/plans"
P="$OUT/plans"

# The plans.
for n in 2 3 4 5 7 10; do "$F" plan deepcache --interval $n --branch 2 --out "$P/deepcache-N$n-b2.json" 2>/dev/null; done
for k in 10 20 50; do "$F" plan segments --segments $k --interval 1 --out "$P/ddim-$k.json" 2>/dev/null; done
"$F" plan segments --segments 4 --interval 20,15,10,5 --branch 2 --out "$P/segments-4.json" 2>/dev/null
"$F" plan segments --segments 10 --interval 5 --branch 1 --out "$P/segments-10.json" 2>/dev/null
"$F" plan segments --segments 5 --interval 10,10,8,6,4 --branch 3,2,2,1,1 --out "$P/segments-5.json" 2>/dev/null
"$F" plan teacher --out "$P/teacher.json" 2>/dev/null
plans=(deepcache-N2-b2 deepcache-N3-b2 deepcache-N4-b2 deepcache-N5-b2 deepcache-N7-b2 deepcache-N10-b2
       ddim-10 ddim-20 ddim-50 segments-4 segments-10 segments-5)

# Reference statistics of the test set, once.
[ -f "$OUT/test-stats.npz" ] || "$F" fid "$TEST" --save-stats "$OUT/test-stats.npz"

# rFID of every plan (the teacher's statistics are computed once, then cached).
args=()
for p in "${plans[@]}"; do args+=("$P/$p.json"); done
"$F" rfid "${args[@]}" --count "$N_RFID" --json > "$OUT/rfid.json"

# FID of every plan (and the teacher) against the test set.
: > "$OUT/fid.tsv"
for p in teacher "${plans[@]}"; do
    start=$(date +%s.%N)
    "$F" generate --plan "$P/$p.json" --count "$N_FID" --seed 1 --output-tensor "$OUT/$p-samples.safetensors" 2>/dev/null
    fid=$("$F" fid "$OUT/$p-samples.safetensors" "$OUT/test-stats.npz" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fid"])')
    end=$(date +%s.%N)
    rm -f "$OUT/$p-samples.safetensors"
    printf '%s\t%s\t%s\n' "$p" "$fid" "$(echo "$end - $start" | bc)" >> "$OUT/fid.tsv"
done

# The table and Kendall's τ.
python3 - "$OUT" "$N_RFID" "$N_FID" <<'EOF'
import json, sys, itertools
out, n_rfid, n_fid = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(f"{out}/rfid.json"))
rfid = {p["plan"].split("/")[-1][:-5]: p for p in r["plans"]}
fid = {}
for line in open(f"{out}/fid.tsv"):
    name, value, seconds = line.split("\t")
    fid[name] = (float(value), float(seconds))
names = [n for n in rfid if n in fid]
pairs = list(itertools.combinations(names, 2))
conc = sum(1 for a, b in pairs if (rfid[a]["rfid"] - rfid[b]["rfid"]) * (fid[a][0] - fid[b][0]) > 0)
disc = sum(1 for a, b in pairs if (rfid[a]["rfid"] - rfid[b]["rfid"]) * (fid[a][0] - fid[b][0]) < 0)
tau = (conc - disc) / len(pairs)
lines = [f"| plan | full / partial / null | rFID (n={n_rfid}) | rFID time | FID vs test set (n={n_fid}) | FID time |",
         "|---|---|---|---|---|---|",
         f"| teacher | 100 / 0 / 0 | 0 | – | {fid['teacher'][0]:.3f} | {fid['teacher'][1]:.0f} s |"]
for n in sorted(names, key=lambda n: rfid[n]["rfid"]):
    p = rfid[n]
    lines.append(f"| {n} | {p['full']} / {p['partial']} / {p['null']} | {p['rfid']:.3f} | {p['seconds']:.0f} s | {fid[n][0]:.3f} | {fid[n][1]:.0f} s |")
t_r = sum(rfid[n]["seconds"] for n in names); t_f = sum(fid[n][1] for n in names)
lines.append("")
lines.append(f"Kendall τ (rFID vs FID rankings, {len(names)} plans): {tau:.3f}; evaluation time rFID {t_r:.0f} s + teacher {r['teacher_seconds']:.0f} s once, FID {t_f:.0f} s ({100 * (1 - (t_r + r['teacher_seconds']) / t_f):.0f} % less for rFID); device {r['device']}.")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
