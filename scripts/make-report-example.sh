#!/usr/bin/env bash
# Rebuilds docs/report-example/ (report page, Markdown, PNG figures, screenshot) from real runs: random-weight
# models of the tiny and small-100m presets on the shipped example data (3 examples per task; chance-level scores),
# at several precisions, shot counts and prompting strategies. Runs go to RUNS_DIR (default: a temporary folder),
# reused when present. Takes a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
export PATH="$repo/build:$PATH" OMP_NUM_THREADS=1
runs_dir="${1:-$(mktemp -d)}"
mkdir -p "$runs_dir"
cd "$runs_dir"  # so that the run folders and the commands the runs record read as typed

eval_run() {
  local name=$1
  shift
  [ -f "runs/$name/results.json" ] ||
    biomedq eval --tasks all --limit 3 --bootstrap 200 --no-progress --out "runs/$name" "$@" >/dev/null
}
for p in bf16 int8 nf4; do eval_run "tiny-$p" --synthetic tiny --precision "$p"; done
for p in bf16 nf4; do
  eval_run "tiny-$p-1shot" --synthetic tiny --precision "$p" --shots 1
  eval_run "tiny-$p-3shot" --synthetic tiny --precision "$p" --shots 3
  eval_run "tiny-$p-cot" --synthetic tiny --precision "$p" --prompting cot
  eval_run "tiny-$p-sc" --synthetic tiny --precision "$p" --prompting sc --sc-samples 3
done
for p in bf16 int8 nf4; do eval_run "small-100m-$p" --synthetic small-100m --precision "$p"; done

out="$repo/docs/report-example"
rm -rf "$out"
biomedq report runs/* --out "$out"
"$repo/scripts/check-report.sh" "$out" "$out/screenshot.png"
