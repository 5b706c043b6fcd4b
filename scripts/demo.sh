#!/usr/bin/env bash
# The main job end to end on the embedded default: a tiny random-weight model, every task on the example data
# shipped in examples/data (or DATA_DIR), then the study's Table 1 printout. Scores are chance level: the point is
# the pipeline, the run folder and the table. Usage: scripts/demo.sh [BUILD_DIR]  (env: DATA_DIR, LIMIT, OUT)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
bin=$build/biomedq
[ -x "$bin" ] || { echo "demo: $bin not found; build first (cmake -S . -B build -G Ninja && cmake --build build)" >&2; exit 1; }
out=${OUT:-$build/demo}
model=$out/tiny-model
data=${DATA_DIR:-$root/examples/data}

# The tiny model gains nothing from threads, and spinning OpenMP threads crawl on a busy machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f "$model/config.json" ] || "$bin" synth --preset tiny --out "$model"
# Resumable: re-running continues the run in $out/eval and recomputes nothing that finished.
"$bin" eval --model "$model" --tasks all --limit "${LIMIT:-3}" --data-dir "$data" --tasks-dir "$root/tasks" \
  --out "$out/eval" --bootstrap 200
echo
"$bin" table "$out/eval"
