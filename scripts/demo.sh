#!/usr/bin/env bash
# The main job end to end on the embedded default: a tiny random-weight model, every task on the example data
# shipped with biomedq (examples/data, or DATA_DIR), then the study's Table 1 printout. Scores are chance level: the
# point is the pipeline, the run folder and the table. The binary finds its task files and example data itself
# (next to the source tree, or in share/biomedq of an installed one).
# Usage: scripts/demo.sh [BUILD_DIR | BINARY]  (env: DATA_DIR, LIMIT, OUT)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${1:-$root/build}
if [ -d "$target" ]; then bin=$target/biomedq; else bin=$target; fi
[ -x "$bin" ] || { echo "demo: $bin not found; build first (bash scripts/setup.sh)" >&2; exit 1; }
out=${OUT:-$(dirname "$bin")/demo}
model=$out/tiny-model
data_args=()
[ -z "${DATA_DIR:-}" ] || data_args=(--data-dir "$DATA_DIR")

# The tiny model gains nothing from threads, and spinning OpenMP threads crawl on a busy machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
[ -f "$model/config.json" ] || "$bin" synth --preset tiny --out "$model"
# Resumable: re-running continues the run in $out/eval and recomputes nothing that finished.
"$bin" eval --model "$model" --tasks all --limit "${LIMIT:-3}" "${data_args[@]}" --out "$out/eval" --bootstrap 200
echo
"$bin" table "$out/eval"
