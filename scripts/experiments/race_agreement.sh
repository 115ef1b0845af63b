#!/usr/bin/env bash
# How well a search's rankings agree with FID against the test set on many fresh images: every
# contender of the search's final race (the report's "race" list) makes COUNT images from seeds SEED
# and SEED + 1 (two halves, through scripts/experiments/search_evaluation.sh), and Kendall's τ compares with
# their FID the order of
#   - the search's fitness on its --samples images (what chose the plan before the race), and
#   - the race's judge on each rung (the plans that reached it),
# and says which plan the test-set FID puts first.
# Usage: scripts/experiments/race_agreement.sh SEARCH.json COUNT SEED OUTDIR [path/to/flexiffusion]
# (e.g. COUNT 10000 with a SEED the search did not use; BATCH as for search_evaluation.sh).
set -euo pipefail
result="$1"; count="$2"; seed="$3"; out="$4"; bin="${5:-.build/release/flexiffusion}"
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$out/plans"
extra=$(python3 - "$result" "$out/plans" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
race = report.get("race")
if not race:
    sys.exit(f"{sys.argv[1]} has no final race (search with --final-samples, and a binary that writes the contenders)")
words = []
for i, e in enumerate(race):
    path = f"{sys.argv[2]}/c{i}.json"
    json.dump(e["plan"], open(path, "w"), indent=2)
    words.append(f"c{i}={path}")
print(" ".join(words))
PY
)
ROUNDS=2 PLANS=none EXTRA_PLANS="$extra" bash "$here/search_evaluation.sh" "$result" "$count" "$seed" "$out" "$bin" >&2
python3 - "$result" "$out/table.txt" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
race, state = report["race"], report["state"]
samples = state["settings"]["samples"]
fid = {}
for line in open(sys.argv[2]).read().splitlines()[1:]:
    f = line.split()
    fid[f[0]] = (float(f[5]), float(f[6]), float(f[7]))   # FID, halves
def tau(a, b):
    n = len(a); c = d = 0
    for i in range(n):
        for j in range(i + 1, n):
            s = (a[i] - a[j]) * (b[i] - b[j])
            c += s > 0; d += s < 0
    return (c - d) / max(1, n * (n - 1) // 2)
rows = []
for i, e in enumerate(race):
    rec = state["records"][e["key"]]
    rows.append((f"c{i}", e, rec.get("race", {}), fid[f"c{i}"]))
print(f"{'':4} {'contender':58} {'pred ×':>7} {'fit ' + str(samples):>9} " +
      " ".join(f"{'race ' + str(r['samples']):>10}" for r in state["race"]["rungs"]) + f" {'FID ' + 'test':>10} {'halves':>15}")
for name, e, rs, (f, h0, h1) in sorted(rows, key=lambda r: r[3][0]):
    fit = e.get("rfid") if e.get("rfid") is not None else e.get("paired")
    cells = " ".join(f"{rs[str(r['samples'])]:10.3f}" if str(r["samples"]) in rs else f"{'–':>10}" for r in state["race"]["rungs"])
    mark = " ← result" if e["key"] == state["race"]["winner"] else (" ← before the race" if e["key"] == state["population"][0] else "")
    print(f"{name:4} {e['key'][:58]:58} {e['predicted_speedup']:7.2f} {fit:9.3f} {cells} {f:10.2f} {h0:7.2f} {h1:7.2f}{mark}")
fits = [r[1].get("rfid") if r[1].get("rfid") is not None else r[1].get("paired") for r in rows]
print(f"Kendall's τ against FID on the test set ({len(rows)} contenders):")
print(f"  fitness on {samples} images: {tau(fits, [r[3][0] for r in rows]):+.3f}")
for rung in state["race"]["rungs"]:
    judged = [r for r in rows if str(rung["samples"]) in r[2]]
    if len(judged) >= 2:
        print(f"  race ({state['race']['judge']}) on {rung['samples']} images ({len(judged)} plans): "
              f"{tau([r[2][str(rung['samples'])] for r in judged], [r[3][0] for r in judged]):+.3f}; "
              f"fitness on {samples} images over the same plans: {tau([fits[rows.index(r)] for r in judged], [r[3][0] for r in judged]):+.3f}")
best = min(rows, key=lambda r: r[3][0])
print(f"lowest test FID: {best[0]} ({best[1]['key']}); the race's result: "
      + next(r[0] for r in rows if r[1]["key"] == state["race"]["winner"])
      + "; the fitness's choice: " + next((r[0] for r in rows if r[1]["key"] == state["population"][0]), "not a contender"))
PY
