#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu_build.sh: do the suite's answers depend on the batch? For each of
# INV_PRECISIONS (nf4 bf16), with and without --batch-invariant, eval --synthetic llama-3.1-8b (Llama 3.1 tokenizer,
# answers stopped at their gold lengths) runs the test splits of INV_DATA (a folder or .tar.xz of
# scripts/make_suite_data.py's output; 100 a task: make_suite_data.py ../shared/data/biomed-nlp-benchmarks
# build/suite-100 100) four ways: batch 64, batch 7 without prefix reuse, batch 64 in chunks of 256 rows, batch 256.
# Each run's answers are compared with the first one's; the counts of differing answers and the wall times go to
# $OUT/invariance.json. Random weights give near-ties everywhere, so without the mode many answers move.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
: "${INV_DATA:?set INV_DATA to the folder (or .tar.xz) of the test splits}"
if [[ "$INV_DATA" == *.tar.xz ]]; then
  rm -rf /tmp/inv_input && mkdir -p /tmp/inv_input && tar xJf "$INV_DATA" -C /tmp/inv_input || exit 1
  INV_DATA=$(dirname "$(find /tmp/inv_input -name test.tsv | head -1)")/..
fi
rm -rf /tmp/inv-*
for p in ${INV_PRECISIONS:-nf4 bf16}; do
  for mode in invariant default; do
    flag=$([ $mode = invariant ] && echo --batch-invariant)
    for run in "b64:--batch 64" "b7-no-reuse:--batch 7 --no-prefix-reuse" "b64-chunks:--batch 64 --max-step-tokens 256" \
      "b256:--batch 256"; do
      name=${run%%:*}
      timeout "${INV_TIMEOUT:-240}" build-gpu/biomedq eval --synthetic llama-3.1-8b --device cuda --precision $p \
        --tokenizer build/test-assets/tokenizers/llama3_1 --answer-lengths gold --tasks all --data-dir "$INV_DATA" \
        --no-progress --bootstrap 10 $flag ${run#*:} --out /tmp/inv-$p-$mode-$name > /tmp/inv.log 2>&1 ||
        { echo "$p $mode $name failed"; tail -3 /tmp/inv.log; }
    done
  done
done
python3 - "$OUT/invariance.json" <<'PY'
import glob, json, os, sys
def answers(d):
  f = os.path.join(d, "samples.jsonl")
  return {(r["task"], r["id"]): r["raw"] for r in map(json.loads, open(f))} if os.path.isfile(f) else None
out = {}
for d in sorted(glob.glob("/tmp/inv-*")):
  p, mode, name = os.path.basename(d)[4:].split("-", 2)
  first = answers(f"/tmp/inv-{p}-{mode}-b64")
  got = answers(d)
  res = os.path.join(d, "results.json")
  wall = json.load(open(res))["throughput"].get("wall_s") if os.path.isfile(res) else None
  row = {"answers": None if got is None else len(got), "wall_s": wall,
         "differ_from_b64": None if got is None or first is None else sum(got[k] != first.get(k) for k in got)}
  out.setdefault(p, {}).setdefault(mode, {})[name] = row
  print(p, mode, name, row)
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY
