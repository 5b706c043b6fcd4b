#!/usr/bin/env bash
# On the GPU machine: the suite's timing mode. eval --synthetic llama-3.1-8b runs with the real Llama 3.1 tokenizer,
# answers stopped at their gold answers' token lengths, on the first LIMIT examples of every task of
# tests/fixtures/benchmark-head, at batch BATCH. It prints the throughput line (wall, prefill and decode tok/s,
# occupancy) per precision. Needs a CUDA build in build-gpu (scripts/gpu_build.sh) and the tokenizer in
# build/test-assets/tokenizers/llama3_1 (scripts/fetch-test-assets.sh; carry it to the GPU machine).
# Results: $OUT/eval-timing.json.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
TOK=${TOK:-build/test-assets/tokenizers/llama3_1}
for p in ${PRECISIONS:-nf4 bf16}; do
  rm -rf /tmp/timing-$p
  build-gpu/biomedq eval --synthetic llama-3.1-8b --device cuda --precision $p --batch ${BATCH:-64} --tokenizer "$TOK" \
    --answer-lengths gold --tasks all --data-dir tests/fixtures/benchmark-head --limit ${LIMIT:-64} --no-progress \
    --bootstrap 100 --out /tmp/timing-$p > /tmp/timing-$p.log 2>&1 || { tail -5 /tmp/timing-$p.log; continue; }
  echo "$p: $(grep '^throughput:' /tmp/timing-$p.log)"
done
python3 - "$OUT/eval-timing.json" /tmp/timing-* <<'PY'
import json, os, sys
out = {}
for d in sys.argv[2:]:
    f = os.path.join(d, "results.json")
    if not os.path.isfile(f): continue
    r = json.load(open(f))
    out[r["config"]["model_info"]["precision"]] = {
        "throughput": r["throughput"], "memory": r["memory"], "environment": r["environment"],
        "command": r.get("command"),
        "tasks": {t: {"examples_scored": v["examples_scored"], "prompt_tokens": v["efficiency"]["prompt_tokens"],
                      "generated_tokens": v["efficiency"]["generated_tokens"]} for t, v in r["tasks"].items()}}
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY
