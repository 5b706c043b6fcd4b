#!/usr/bin/env bash
# On the GPU machine, after scripts/gpu_build.sh: the suite in the timing mode. SUITE_DATA: the 8 test splits
# (scripts/make_suite_data.py ../shared/data/biomed-nlp-benchmarks DIR 1000000 for all 33,015 examples; N per task
# for a part), or a .tar.xz of that folder, carried with the tokenizer build/test-assets/tokenizers/llama3_1.
# eval --synthetic llama-3.1-8b with real Llama 3.1 token counts, answers stopped at their gold lengths, batch
# SUITE_BATCH (256), for each of SUITE_PRECISIONS, with SUITE_ARGS (more eval arguments, e.g. --batch-invariant); the
# throughput lines in $OUT/suite.json.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
: "${SUITE_DATA:?set SUITE_DATA to the folder of the test splits}"
if [[ "$SUITE_DATA" == *.tar.xz ]]; then  # all 8 splits are 15 MB; xz brings them to 2 MB (the carry limit is 64 MiB)
  rm -rf /tmp/suite_input && mkdir -p /tmp/suite_input && tar xJf "$SUITE_DATA" -C /tmp/suite_input || exit 1
  SUITE_DATA=$(dirname "$(find /tmp/suite_input -name prompt_zeroshot.txt | head -1)")/..
fi
rm -rf /tmp/suite-*  # the runs (the extracted input is /tmp/suite_input)
for p in ${SUITE_PRECISIONS:-bf16 int8 nf4}; do
  timeout "${SUITE_TIMEOUT:-900}" build-gpu/biomedq eval --synthetic llama-3.1-8b --device cuda --precision $p \
    --batch ${SUITE_BATCH:-256} --tokenizer build/test-assets/tokenizers/llama3_1 --answer-lengths gold --tasks all \
    --data-dir "$SUITE_DATA" --no-progress --bootstrap 100 ${SUITE_ARGS:-} --out /tmp/suite-$p > /tmp/suite-$p.log 2>&1 ||
    { echo "suite $p failed or timed out"; tail -5 /tmp/suite-$p.log; continue; }
  echo "suite $p: $(grep -E '^(throughput|time):' /tmp/suite-$p.log | tr '\n' ' ')"
done
python3 - "$OUT/suite.json" /tmp/suite-* <<'PY'
import json, os, sys
out = {}
for d in sys.argv[2:]:
  f = os.path.join(d, "results.json")
  if not os.path.isfile(f): continue
  r = json.load(open(f))
  out[os.path.basename(d)[len("suite-"):]] = {
      "throughput": r["throughput"], "memory": r["memory"], "environment": r["environment"], "command": r.get("command"),
      "examples": sum(v["examples_scored"] for v in r["tasks"].values())}
json.dump(out, open(sys.argv[1], "w"), indent=1)
PY

