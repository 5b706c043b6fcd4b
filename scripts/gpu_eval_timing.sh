#!/usr/bin/env bash
# On the GPU machine: the suite's timing mode. eval --synthetic llama-3.1-8b runs with the real Llama 3.1 tokenizer,
# answers stopped at their gold answers' token lengths, on the first LIMIT examples of every task of
# tests/fixtures/benchmark-head, at batch BATCH. Each precision runs in each of MODES: reuse (prefix reuse, the
# default), plain (--no-prefix-reuse), half (plain at half the batch: how far answers move with the batch alone);
# the raw answers of reuse and half are compared with plain's. It prints the
# throughput line (wall, prefill and decode tok/s, reused prompt tokens, occupancy) per run. Needs a CUDA build in
# build-gpu (scripts/gpu_build.sh) and the tokenizer in build/test-assets/tokenizers/llama3_1
# (scripts/fetch-test-assets.sh; carry it to the GPU machine). Results: $OUT/eval-timing.json.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
TOK=${TOK:-build/test-assets/tokenizers/llama3_1}
rm -rf /tmp/timing-*
for p in ${PRECISIONS:-nf4 bf16}; do
  for mode in ${MODES:-reuse plain half}; do
    flags=""; batch=${BATCH:-64}
    [ "$mode" = reuse ] || flags=--no-prefix-reuse
    [ "$mode" = half ] && batch=$((batch / 2))
    run=/tmp/timing-$p-$mode
    build-gpu/biomedq eval --synthetic llama-3.1-8b --device cuda --precision $p --batch $batch \
      --tokenizer "$TOK" --answer-lengths gold --tasks all --data-dir tests/fixtures/benchmark-head \
      --limit ${LIMIT:-64} --no-progress --bootstrap 100 $flags --out $run > $run.log 2>&1 || { tail -5 $run.log; continue; }
    echo "$p $mode: $(grep '^throughput:' $run.log)"
  done
done
python3 - "$OUT/eval-timing.json" /tmp/timing-* <<'PY'
import json, os, sys
out, answers = {}, {}
for d in sys.argv[2:]:
    f = os.path.join(d, "results.json")
    if not os.path.isfile(f): continue
    r = json.load(open(f))
    key = os.path.basename(d)[len("timing-"):]
    out[key] = {
        "throughput": r["throughput"], "memory": r["memory"], "environment": r["environment"],
        "command": r.get("command"),
        "tasks": {t: {"examples_scored": v["examples_scored"], "prompt_tokens": v["efficiency"]["prompt_tokens"],
                      "generated_tokens": v["efficiency"]["generated_tokens"]} for t, v in r["tasks"].items()}}
    with open(os.path.join(d, "samples.jsonl")) as s:
        answers[key] = {(j["task"], j["id"]): j["raw"] for j in map(json.loads, s)}
for key in list(answers):
    p, mode = key.rsplit("-", 1)
    if mode == "plain" or f"{p}-plain" not in answers: continue
    a, b = answers[key], answers[f"{p}-plain"]
    differ = sorted(k for k in a if a[k] != b.get(k))
    out[key]["answers_vs_plain"] = {"compared": len(a), "differ": len(differ), "first_differing": differ[:10]}
    print(f"{p} {mode}: {len(differ)} of {len(a)} raw answers differ from plain's")
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY
