#!/usr/bin/env bash
# On the GPU machine, in one call: build with CUDA, run the CUDA tests, then evaluate the trained fixture model on
# the first 64 examples of every task at bf16, nf4, int8 and llm-int8 on the GPU (batched), check every run with
# the independent scorer, and stop on non-finite logits as the CPU does. Needs .deps (scripts/gpu_deps.sh .).
set -uo pipefail
OUT=${OUT:-gpu-out}
source scripts/gpu_build.sh || exit 1
build-gpu/biomedq --version
ctest --test-dir build-gpu -j8 --output-on-failure -R "Cuda|Hostile|NonFinite" > "$OUT/ctest.log" 2>&1
echo "ctest exit $?"; grep -E "tests passed|Failed|\(Failed\)" "$OUT/ctest.log" | head -30
runs=/tmp/fixture-runs; rm -rf $runs
for p in bf16 nf4 int8 llm-int8; do
  /usr/bin/time -f "$p: %e s wall" build-gpu/biomedq eval --model tests/fixtures/trained-llama --device cuda \
    --precision $p --tasks all --data-dir tests/fixtures/benchmark-head --prompts benchmark --limit 64 --batch 16 \
    --bootstrap 200 --no-progress --out $runs/fixture-cuda-$p > "$OUT/eval-$p.txt" 2>&1 || tail -5 "$OUT/eval-$p.txt"
  tail -2 "$OUT/eval-$p.txt"
done
python3 tests/independent_scorer.py $runs/fixture-cuda-* 2>&1 | tail -40
build-gpu/biomedq table $runs/fixture-cuda-*
