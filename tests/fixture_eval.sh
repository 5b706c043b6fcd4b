#!/usr/bin/env bash
# The main job on real model outputs: the trained fixture model (tests/fixtures/trained-llama) evaluated with the
# benchmark's prompts on the first examples of all eight tasks (tests/fixtures/benchmark-head) at bf16, nf4, int8
# and llm-int8 on the CPU; then table, compare, recommend and report over those runs; every run's scores checked by
# the independent scorer (tests/independent_scorer.py), and the greedy answers checked against transformers'.
# Usage: tests/fixture_eval.sh BIOMEDQ_BINARY [WORK_DIR]   (LIMIT=N examples per task, default 24)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=$1
work=${2:-$(mktemp -d)}
model=$here/fixtures/trained-llama
data=$here/fixtures/benchmark-head
limit=${LIMIT:-24}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
rm -rf "$work/runs" "$work/report" && mkdir -p "$work/runs"

# Greedy answers equal transformers' (fp32 there, fp32 here) on the held-out prompts the training script kept.
python3 - "$bin" "$model" <<'PY'
import json, subprocess, sys
bin, model = sys.argv[1:]
n = 0
for line in open(f"{model}/greedy.jsonl"):
    ref = json.loads(line)
    out = subprocess.run([bin, "generate", "--model", model, "--precision", "fp32", "--chat", "--prompt", ref["prompt"],
                          "--max-new-tokens", "48"], check=True, capture_output=True, text=True).stdout
    if out[:-1] != ref["text"]:
        sys.exit(f"{ref['task']} {ref['id']}: biomedq answered {out[:-1]!r}, transformers {ref['text']!r}")
    n += 1
print(f"greedy answers equal transformers' on {n} held-out prompts")
PY

for p in bf16 nf4 int8 llm-int8; do
  "$bin" eval --model "$model" --precision "$p" --tasks all --data-dir "$data" --prompts benchmark \
    --limit "$limit" --bootstrap 200 --no-progress --out "$work/runs/fixture-$p"
done
python3 "$here/independent_scorer.py" "$work"/runs/fixture-*
"$bin" table "$work"/runs/fixture-*
for p in nf4 int8 llm-int8; do "$bin" compare "$work/runs/fixture-bf16" "$work/runs/fixture-$p" >/dev/null; done
"$bin" recommend --gpu-memory 1GB --runs "$work"/runs/fixture-*
"$bin" report "$work"/runs/fixture-* --out "$work/report" >/dev/null
test -s "$work/report/report.html" && test -s "$work/report/report.md"
echo "fixture model: all eight tasks at four precisions, scores equal the independent scorer's"
