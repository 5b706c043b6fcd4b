# One device call of a session short of device time. STEP lists what runs after the build, in order:
# tests (CUDA tests, with PLAN=1 the plan checks, then the suite in SUITE_PRECISIONS, default nf4), cuda-tests (the
# CUDA tests alone), suites (int8 and bf16 suites), suite-PRECISION (one suite), untiled (the nf4 suite with the tiled
# products off), load (LOAD=1's load times and the short matrix, as far as 540 s into the call), ncu-tiled (hardware
# counters of the tiled product in nf4 decode steps at batch 32, into $OUT/ncu-tiled-nf4-b32.txt), profile-b32 (GPU
# time per kernel of decode steps at batch 32, nf4 and bf16: gpu_check.sh's PROFILE=1 at that batch), blocks2 (decode
# at batch 32 and 24 with the tiled kernel at one and at two blocks a multiprocessor, BIOMEDQ_TC_GEMM_BLOCKS), tile
# (quantized prefill with dequantized tiles of 64, 16 and 8 MiB, BIOMEDQ_DEQUANT_TILE_MIB), invariant (the suite's
# answers at several batch sizes with and without --batch-invariant, scripts/gpu_invariance.sh on
# build/suite-100.tar.xz, then bench rows of the mode's cost). SUITE_ARGS: more eval arguments for the suite steps
# (e.g. --batch-invariant).
set -uo pipefail
export OUT=${OUT:-gpu-out}
T0=$(date +%s)
trap 'OUT="$OUT" bash scripts/gpu_pack_out.sh' EXIT  # whichever way the call ends
source scripts/gpu_build.sh > /dev/null || exit 1
echo "build done $(( $(date +%s) - T0 )) s"
# One bench configuration of llama-3.1-8b (512-token prompts) into $OUT/NAME.json and a line of its figures:
# bench_row NAME GEN_LEN BENCH_ARGS... (environment variables as the caller sets them).
bench_row() {
  local name=$1 gen=$2; shift 2
  timeout 60 build-gpu/biomedq bench --synthetic llama-3.1-8b --device cuda --prompt-len 512 --gen-len "$gen" \
    --reps 2 --json "$@" > "$OUT/$name.json" 2>/tmp/err || { echo "$name failed"; tail -3 /tmp/err; return; }
  python3 - "$OUT/$name.json" "$name" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = lambda k: f"{j[k]['mean']:.1f} +- {j[k]['sd']:.1f}"
print(sys.argv[2], "decode", r("decode_tokens_per_s"), "tok/s,", f"{j['decode_ms_per_step']['mean']:.3f} ms/step, prefill",
      r("prefill_tokens_per_s"), "tok/s, kv peak", round(j["kv_cache_peak_bytes"] / 2**20, 1), "MiB, copy", round(j["copy_gbs"]), "GB/s")
PY
}
for step in ${STEP:-tests}; do
case "$step" in
tests|cuda-tests)  # cuda-tests: the tests alone
  if [ -f build-gpu/CTestTestfile.cmake ]; then
    timeout 200 ctest --test-dir build-gpu -j8 -R Cuda --timeout 120 > /tmp/ctest.log 2>&1
    echo "ctest exit $?"; grep -E "tests passed|\(Failed\)|\(Timeout\)" /tmp/ctest.log | head -20
    grep -B2 -A20 "Failure" /tmp/ctest.log | head -60
  else  # prebuilt binaries (gpu_build.sh)
    bash scripts/gpu_cuda_tests.sh
  fi
  if [ -n "${PLAN:-}" ]; then
    sed -n '/^plan_check() {/,/^}/p' scripts/gpu_check.sh > /tmp/plan_fn.sh
    BENCH=/tmp/bq-bench; mkdir -p $BENCH; PLAN_FAILED=0; source /tmp/plan_fn.sh
    for b in 1 32; do plan_check bf16-b$b llama-3.1-8b bf16 $b 512 128; plan_check nf4-b$b llama-3.1-8b nf4 $b 512 128; done
  fi
  [ "$step" = tests ] && SUITE_DATA=build/suite-full.tar.xz SUITE_PRECISIONS="${SUITE_PRECISIONS:-nf4}" bash scripts/gpu_suite_timing.sh ;;
suite-*)
  SUITE_DATA=build/suite-full.tar.xz SUITE_PRECISIONS="${step#suite-}" bash scripts/gpu_suite_timing.sh
  mv "$OUT/suite.json" "$OUT/suite-${step#suite-}.json" ;;
suites)
  SUITE_DATA=build/suite-full.tar.xz SUITE_PRECISIONS="int8 bf16" bash scripts/gpu_suite_timing.sh ;;
ncu-tiled)
  timeout 240 ncu --clock-control none -k regex:tc_gemm_kernel --launch-skip 40 --launch-count 4 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
    --section LaunchStats --section SchedulerStats --section WarpStateStats --section InstructionStats \
    build-gpu/biomedq bench --synthetic llama-3.1-8b --device cuda --precision nf4 --batch 32 --prompt-len 16 \
    --gen-len 8 --reps 1 > "$OUT/ncu-tiled-nf4-b32.txt" 2>&1
  echo "ncu exit $?"; grep -E "tc_gemm_kernel|Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Registers Per|Issue Slots Busy|No Eligible" "$OUT/ncu-tiled-nf4-b32.txt" | head -40 ;;
profile-b32)
  sed -n '/^if \[ -n "${PROFILE:-}" \]; then/,/^fi/p' scripts/gpu_check.sh > /tmp/profile.sh
  PROFILE=1 PROFILE_BATCH=32 source /tmp/profile.sh ;;
blocks2)  # the tiled kernel's two-blocks variant (ops.h: set_tc_gemm_blocks) against the default, batch 32 and 24
  for cfg in "nf4 32 1" "nf4 32 2" "int8 32 1" "int8 32 2" "nf4 24 1" "nf4 24 2"; do
    set -- $cfg
    BIOMEDQ_TC_GEMM_BLOCKS=$3 bench_row "blocks$3-$1-b$2" 128 --precision $1 --batch $2
  done ;;
tile)  # quantized prefill with dequantized tiles of 64 (the default), 16 and 8 MiB (BIOMEDQ_DEQUANT_TILE_MIB)
  for cfg in "nf4 1 64" "nf4 1 16" "nf4 1 8" "nf4 32 64" "nf4 32 16" "nf4 32 8" "int8 32 64" "int8 32 16"; do
    set -- $cfg
    BIOMEDQ_DEQUANT_TILE_MIB=$3 bench_row "tile$3mib-$1-b$2" 8 --precision $1 --batch $2
  done ;;
invariant)  # answers against batch size with and without the mode, then what the mode costs in bench
  INV_DATA=build/suite-100.tar.xz bash scripts/gpu_invariance.sh
  for cfg in "bf16 1" "nf4 1" "bf16 32" "nf4 32" "int8 32"; do
    set -- $cfg
    [ $(( $(date +%s) - T0 )) -gt 540 ] && break
    bench_row "plain-$1-b$2" 128 --precision $1 --batch $2
    bench_row "invariant-$1-b$2" 128 --precision $1 --batch $2 --batch-invariant
  done ;;
untiled)
  BIOMEDQ_TC_GEMM=0 SUITE_DATA=build/suite-full.tar.xz SUITE_PRECISIONS=nf4 bash scripts/gpu_suite_timing.sh ;;
load)
  sed -n '/^if \[ -n "${LOAD:-}" \]; then/,/^fi/p' scripts/gpu_check.sh > /tmp/load.sh; LOAD=1 source /tmp/load.sh
  for cfg in "bf16 1" "nf4 1" "int8 1" "bf16 32" "nf4 32" "int8 32"; do
    set -- $cfg
    [ $(( $(date +%s) - T0 )) -gt 540 ] && break
    bench_row "m-$1-b$2" 128 --precision $1 --batch $2
  done
  python3 - "$OUT" <<'PY'
import glob, json, os, sys
rows = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(sys.argv[1], "m-*.json"))) if os.path.getsize(f) > 0]
json.dump(rows, open(os.path.join(sys.argv[1], "matrix.json"), "w"), indent=1)
for f in glob.glob(os.path.join(sys.argv[1], "m-*.json")): os.remove(f)
PY
  ;;
esac
done
echo "end $(( $(date +%s) - T0 )) s"
