#!/usr/bin/env bash
# Makes the trained fixture model of the real-outputs tests (tests/fixtures/trained-llama/), in two steps:
#   scripts/make_fixture_model.sh prompts DATA_DIR   (here: the training prompts, from biomedq itself, into
#                                                     .fixture-prompts/, which the GPU call carries)
#   scripts/make_fixture_model.sh train OUT_DIR      (on the GPU machine: scripts/train_fixture_model.py)
# and the test data it is evaluated on: scripts/make_benchmark_head.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: make_fixture_model.sh prompts DATA_DIR | train OUT_DIR}
case "$step" in
  prompts)
    data=${2:?data directory (biomed-nlp-benchmarks)}
    rm -rf .fixture-prompts && mkdir -p .fixture-prompts
    for task in bc5cdr-chem ncbi-disease chemprot ddi2013 hoc medqa pubmedqa; do
      split=train; ./build/biomedq data prompts --data-dir "$data" --tasks $task --split train \
        --prompts benchmark --out .fixture-prompts/$task.jsonl 2>/dev/null || {
        split=dev; ./build/biomedq data prompts --data-dir "$data" --tasks $task --split dev --prompts benchmark \
          --out .fixture-prompts/$task.jsonl; }
      echo "$task: $split"
    done
    # LitCovid has a test split only: train on it without the examples the tests evaluate (the first 64).
    ./build/biomedq data prompts --data-dir "$data" --tasks litcovid --split test --prompts benchmark \
      --out .fixture-prompts/litcovid.all
    tail -n +65 .fixture-prompts/litcovid.all > .fixture-prompts/litcovid.jsonl && rm .fixture-prompts/litcovid.all
    wc -l .fixture-prompts/*.jsonl
    gzip -9 .fixture-prompts/*.jsonl
    ;;
  train)
    out=${2:?output folder}
    PYTHONUNBUFFERED=1 python3 scripts/train_fixture_model.py .fixture-prompts "$out" --minutes "${MINUTES:-6}"
    ;;
  *) echo "unknown step $step" >&2; exit 2 ;;
esac
