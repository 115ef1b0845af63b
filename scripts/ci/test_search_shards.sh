#!/usr/bin/env bash
# Checks that a search spread over two processes (--shard 0/2 and 1/2 side by side, merged with
# --merge after each phase, as a Slurm job array and a dependent job would) finds the same best
# plan as one process, and that --margin raises the price a plan must meet. Small settings
# (10 steps, 4 images); a few minutes on PoCL.
# Usage: scripts/ci/test_search_shards.sh [path/to/flexiffusion]
set -euo pipefail
bin="${1:-.build/debug/flexiffusion}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME="$work/cache"
opts=(--speedup 1.8 --steps 10 --samples 4 --screen-samples 2 --batch 2 --population 3 --children 3 --generations 2 --segments 2-5 --seed 7 --no-measure)

"$bin" search "${opts[@]}" --out "$work/single.json" > "$work/single.log"
"$bin" search "${opts[@]}" --out "$work/sharded.json" --merge 2> "$work/merge.log"
for round in $(seq 1 40); do
    "$bin" search "${opts[@]}" --out "$work/sharded.json" --shard 0/2 2> "$work/shard0.log" &
    first=$!
    "$bin" search "${opts[@]}" --out "$work/sharded.json" --shard 1/2 2> "$work/shard1.log"
    wait "$first"
    "$bin" search "${opts[@]}" --out "$work/sharded.json" --merge 2> "$work/merge.log"
    if grep -q "is complete" "$work/merge.log"; then break; fi
done
grep -q "is complete" "$work/merge.log" || { echo "sharded search did not complete"; cat "$work/merge.log"; exit 1; }
"$bin" search "${opts[@]}" --out "$work/sharded.json" --resume > "$work/sharded.log"
# (plan show names the file first: compare from the plan on.)
"$bin" plan show "$work/single.json" | sed 's|^[^:]*: ||' > "$work/single.plan"
"$bin" plan show "$work/sharded.json" | sed 's|^[^:]*: ||' > "$work/sharded.plan"
if ! cmp -s "$work/single.plan" "$work/sharded.plan"; then
    echo "the sharded search found another best plan:"; diff "$work/single.plan" "$work/sharded.plan" || true; exit 1
fi
# --margin: with 1.8 × (1 + 0.2) the 5-step plan (2.00×, the best above) no longer qualifies.
"$bin" search "${opts[@]}" --margin 0.2 --out "$work/margin.json" > "$work/margin.log"
speed=$("$bin" plan show --teacher 10 "$work/margin.json" | sed -n 's/.*(\([0-9.]*\)× the teacher.*/\1/p')
awk -v s="$speed" 'BEGIN { exit !(s >= 2.16) }' || { echo "--margin 0.2: best plan priced at ${speed}×, below 1.8 × 1.2"; exit 1; }
echo "sharded search (2 processes, $round rounds) = single-process search: $(grep '^best plan' "$work/single.log")"
