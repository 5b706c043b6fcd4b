#!/usr/bin/env bash
# One device call: build with CUDA, run the whole test suite, compute-sanitizer on the CUDA tests, and the
# benchmark matrix on the llama-3.1-8b preset, the memory planner checked against the allocator peak, and bench
# over a two-stage pipeline on the one GPU (--devices 0,0). Results (JSON, logs) go to $OUT (or ./gpu-out).
# Needs the Debian -dev packages in .deps (scripts/gpu_deps.sh DIR). QUICK=1: CUDA tests only, no sanitizer, plan
# checks, int8 (MATRIX=full: and the whole matrix; MATRIX=short: bf16, nf4, int8 at batch 1 and 32). NCU=1: a
# profile of the decode kernels at the end; PROFILE=1: GPU time per kernel of decode steps (scripts/kernel_times.py;
# PROFILE_BATCH=32: at that batch).
# PRESETS="qwen3-8b medgemma-27b": bench those presets too (bf16, nf4; batch 1, 32). SUITE_DATA=DIR: the whole
# suite's timing (below). TILED=1: nf4 and int8 at batch 32 and 64 with the tiled tensor-core products on
# (the default) and off (BIOMEDQ_TC_GEMM=0), and bf16 beside them. LOAD=1: how long a llama-3.1-8b-shaped checkpoint (written by
# synth, 4.7 GiB shards as Hugging Face's, read from the page cache) takes to be ready in nf4, int8 and bf16, and an
# eval's load with the checkpoint hash. PREBUILT=build/gpu-prebuilt.tar.xz: binaries built here by
# scripts/gpu_prebuild.sh instead of the build (gpu_build.sh), and the CUDA tests alone (there are no ctest files).
# TESTS=0: neither the tests nor the byte check (for a call of timings only, after a call that ran them).
set -uo pipefail
OUT=${OUT:-gpu-out}
trap 'OUT="$OUT" bash scripts/gpu_pack_out.sh' EXIT  # whichever way the call ends
source scripts/gpu_build.sh || exit 1
if [ "${TESTS:-1}" = 0 ]; then  # TESTS=0: no tests (they ran in an earlier call of the same sources)
  echo "tests left out (TESTS=0)"
elif [ -f build-gpu/CTestTestfile.cmake ]; then
  ctest --test-dir build-gpu -j8 --output-on-failure ${QUICK:+-R Cuda} > "$OUT/ctest.log" 2>&1
  echo "ctest exit $?"; grep -E "tests passed|FAILED|Failed|\(Failed\)|Skipped" "$OUT/ctest.log" | head -30
else  # prebuilt binaries (gpu_build.sh's PREBUILT): no ctest files, so the CUDA tests alone
  bash scripts/gpu_cuda_tests.sh | tee "$OUT/ctest.log" | head -30
fi
if [ -z "${QUICK:-}" ] || [ -n "${SANITIZER:-}" ]; then  # SANITIZER=1: also with QUICK
  compute-sanitizer --tool memcheck --leak-check no build-gpu/biomedq_tests \
    --gtest_filter='*CudaMatvec*:*CudaTcGemm*:CudaForwardTest.Tiled*:CudaOps*:CudaGemm*:CudaLlmInt8*:*CudaParity*mistral*:*CudaQuantParity*:CudaForwardTest.Several*:CudaForwardTest.Programmatic*:CudaPipeline*' \
    > "$OUT/sanitizer.log" 2>&1
  echo "compute-sanitizer exit $?"; grep -E "ERROR SUMMARY|PASSED|FAILED" "$OUT/sanitizer.log" | tail -5
fi
# bitsandbytes' formats, byte for byte, against an independent torch reference of the spec (torch is there).
if [ "${TESTS:-1}" != 0 ]; then
  BYTES=/tmp/bq-bytes; rm -rf "$BYTES"; mkdir -p "$BYTES"
  build-gpu/biomedq synth --arch llama --hidden 256 --layers 2 --heads 4 --kv-heads 2 --intermediate 688 --vocab 1000 \
    --out "$BYTES/model" > /dev/null && python3 scripts/check_bnb_bytes.py build-gpu/biomedq "$BYTES/model" "$BYTES/work" \
    > "$OUT/bnb_bytes.log" 2>&1; echo "byte check exit $?"; tail -8 "$OUT/bnb_bytes.log"
fi
BENCH=${BENCH:-/tmp/bq-bench}; rm -rf "$BENCH"; mkdir -p "$BENCH"  # one JSON per configuration here; only matrix.json (all of them) is returned
summarize() {  # all results so far into $OUT/matrix.json, and a table
python3 - "$OUT" "$BENCH" <<'PY'
import json, glob, sys, os
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[2], "*.json"))):
    if os.path.basename(f).startswith("plan-"): continue  # the plan checks' runs: plan_check.json
    try: j = json.load(open(f))
    except Exception: continue
    rows.append(j)
json.dump(rows, open(os.path.join(sys.argv[1], "matrix.json"), "w"), indent=1)
print(f"{'precision':10} {'dq':3} {'tiled':5} {'B':>3} {'pre tok/s':>10} {'TTFT ms':>8} {'pre %cuBLAS':>11} {'dec tok/s':>10} {'ms/step':>8} {'GB/s':>6} {'%copy':>6} {'weights GiB':>11} {'peak GiB':>8} {'dev GiB':>8}")
for j in rows:
    G = 2**30
    print(f"{j['precision']:10} {str(j['double_quant'])[0]:3} {str(j.get('tiled_products', False))[0]:5} {j['batch']:>3} {j['prefill_tokens_per_s']['mean']:>10.0f} {j['ttft_ms']['mean']:>8.1f} {100*j['prefill_fraction_of_gemm']:>10.0f}% {j['decode_tokens_per_s']['mean']:>10.1f} {j['decode_ms_per_step']['mean']:>8.3f} {j['decode_gbs']['mean']:>6.0f} {100*j['decode_fraction_of_copy']:>5.0f}% {j['weights_bytes']/G:>11.2f} {j['allocator_peak_bytes']/G:>8.2f} {j['device_peak_bytes']/G:>8.2f}")
if rows: print("copy GB/s", round(rows[0]['copy_gbs']), "cuBLAS TFLOP/s", round(rows[0]['gemm_tflops']), rows[0]['device'], rows[0]['date'])
PY
}
bench() {  # name, args...
  local name=$1; shift
  # BENCH_TIMEOUT: a configuration that runs longer is reported and skipped, so that the rest still run
  timeout "${BENCH_TIMEOUT:-120}" build-gpu/biomedq bench --synthetic llama-3.1-8b --device cuda --prompt-len 512 \
    --gen-len 128 --reps ${REPS:-3} --json "$@" > "$BENCH/$name.json" 2> "$BENCH/$name.err" ||
    { echo "bench $name failed or timed out"; tail -5 "$BENCH/$name.err"; rm -f "$BENCH/$name.json"; }
  summarize > /dev/null
}
# The memory planner against the allocator: `plan --json` and `bench --json` of one configuration, their ratio in
# $OUT/plan_check.json; more than 5% off fails the script (after the matrix, so that its results still come back).
PLAN_FAILED=0
plan_check() {  # name, preset, precision, batch, prompt-len, gen-len
  local name=$1 preset=$2 precision=$3 batch=$4 prompt=$5 gen=$6
  build-gpu/biomedq plan --preset "$preset" --precision "$precision" --batch "$batch" --prompt-len "$prompt" \
    --context $((prompt + gen)) --device cuda --json > "$BENCH/plan-$name.plan" 2> "$BENCH/plan-$name.err" &&
  build-gpu/biomedq bench --synthetic "$preset" --precision "$precision" --batch "$batch" --prompt-len "$prompt" \
    --gen-len "$gen" --reps 1 --device cuda --json > "$BENCH/plan-$name.json" 2>> "$BENCH/plan-$name.err" ||
    { echo "PLAN CHECK $name: plan or bench failed"; cat "$BENCH/plan-$name.err"; PLAN_FAILED=1; return; }
  python3 - "$name" "$BENCH/plan-$name.plan" "$BENCH/plan-$name.json" "$OUT/plan_check.json" <<'PY' || PLAN_FAILED=1
import json, os, sys
name, plan, bench, out = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), sys.argv[4]
ratio = plan["allocator_bytes"] / bench["allocator_peak_bytes"]
row = {"name": name, "planned_allocator_bytes": plan["allocator_bytes"], "planned_total_bytes": plan["total_bytes"],
       "allocator_peak_bytes": bench["allocator_peak_bytes"], "device_peak_bytes": bench["device_peak_bytes"],
       "outside_allocator_bytes": bench["device_peak_bytes"] - bench["allocator_peak_bytes"], "ratio": ratio}
rows = json.load(open(out)) if os.path.exists(out) else []
json.dump(rows + [row], open(out, "w"), indent=1)
G = 2**30
ok = abs(ratio - 1) <= 0.05
print(f"plan check {name:16} planned {plan['allocator_bytes']/G:8.3f} GiB, allocator peak {bench['allocator_peak_bytes']/G:8.3f} GiB,"
      f" ratio {ratio:.4f}, outside the allocator {row['outside_allocator_bytes']/G:.2f} GiB {'ok' if ok else 'OFF BY MORE THAN 5%'}")
sys.exit(0 if ok else 1)
PY
}
rm -f "$OUT/plan_check.json"
if [ "${PLAN_CHECKS:-1}" = 1 ]; then  # PLAN_CHECKS=0 leaves them out, =gemma runs only MedGemma's
  for b in 1 32; do
    plan_check bf16-b$b llama-3.1-8b bf16 $b 512 128
    plan_check nf4-b$b llama-3.1-8b nf4 $b 512 128
  done
  plan_check 70b-nf4-ctx4096 llama-3.3-70b nf4 1 3968 128
fi
if [ "${PLAN_CHECKS:-1}" = 1 ] || [ "${PLAN_CHECKS:-1}" = gemma ]; then
  # Contexts past the sliding layers' ring (2,048 positions), so that their caches are the ring's size.
  plan_check medgemma27b-nf4-ctx4k medgemma-27b nf4 1 3968 128
  plan_check medgemma27b-bf16-b4-ctx3k medgemma-27b bf16 4 2944 128
fi
# Presets of other architectures (PRESETS="qwen3-8b medgemma-27b"): bf16 and nf4 at batch 1 and 32, the rows in
# $OUT/presets.json.
for preset in ${PRESETS:-}; do
  for p in bf16 nf4; do
    for b in 1 32; do
      timeout "${BENCH_TIMEOUT:-180}" build-gpu/biomedq bench --synthetic "$preset" --device cuda --precision $p --batch $b \
        --prompt-len 512 --gen-len 128 --reps ${REPS:-3} --json > "$BENCH/$preset-$p-b$b.preset" 2> "$BENCH/preset.err" ||
        { echo "bench $preset $p b$b failed or timed out"; tail -5 "$BENCH/preset.err"; }
    done
  done
done
if [ -n "${PRESETS:-}" ]; then
  python3 - "$BENCH" "$OUT/presets.json" <<'PY'
import glob, json, os, sys
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.preset"))):
    try: j = json.load(open(f))
    except Exception: continue
    rows.append(j)
    print(f"{os.path.basename(f)[:-7]:24} decode {j['decode_tokens_per_s']['mean']:9.1f} ± {j['decode_tokens_per_s']['sd']:.1f} tok/s"
          f" ({j['decode_gbs']['mean']:.0f} GB/s, {100*j['decode_fraction_of_copy']:.0f}% of copy), prefill"
          f" {j['prefill_tokens_per_s']['mean']:.0f} tok/s ({100*j['prefill_fraction_of_gemm']:.0f}% of cuBLAS), weights"
          f" {j['weights_bytes']/2**30:.2f} GiB, allocator peak {j['allocator_peak_bytes']/2**30:.2f} GiB")
json.dump(rows, open(sys.argv[2], "w"), indent=1)
PY
fi
[ "$PLAN_FAILED" = 0 ] || echo "PLAN CHECK FAILED: the planner is more than 5% off the allocator peak (see above)"
# The layer pipeline through the CLI: two stages on this one GPU (--devices 0,0), split by the planner, against
# one stage; both JSONs in $OUT/pipeline.json (not rows of the matrix).
if [ "${PIPELINE:-1}" = 1 ]; then
  for p in bf16 nf4; do
    for d in 0 0,0; do
      build-gpu/biomedq bench --synthetic llama-3.1-8b --device cuda --precision $p --prompt-len 512 --gen-len 128 \
        --reps ${REPS:-3} --devices $d --json > "$BENCH/pipeline-$p-$d.pipe" 2> "$BENCH/pipeline-$p.err" ||
        { echo "pipeline bench $p --devices $d failed"; tail -5 "$BENCH/pipeline-$p.err"; }
    done
  done
  python3 - "$BENCH" "$OUT/pipeline.json" <<'PY'
import glob, json, os, sys
rows = []
for f in sorted(glob.glob(os.path.join(sys.argv[1], "pipeline-*.pipe"))):
    try: j = json.load(open(f))
    except Exception: continue
    rows.append(j)
    print("pipeline", j["precision"], "devices", j["devices"], [(d["first_layer"], d["end_layer"]) for d in j["per_device"]],
          "decode", round(j["decode_tokens_per_s"]["mean"], 1), "tok/s, prefill", round(j["prefill_tokens_per_s"]["mean"]),
          "tok/s, allocator peak per device GiB", [round(d["allocator_peak_bytes"] / 2**30, 3) for d in j["per_device"]])
json.dump(rows, open(sys.argv[2], "w"), indent=1)
PY
fi
# The whole suite's timing (SUITE_DATA=DIR, scripts/gpu_suite_timing.sh): bf16, int8, nf4.
[ -n "${SUITE_DATA:-}" ] && bash scripts/gpu_suite_timing.sh
if [ -n "${LOAD:-}" ]; then  # loading at device speed: the issue asks for nf4 ready in 15 s from the page cache
  CK=/tmp/bq-8b; rm -rf "$CK"
  /usr/bin/time -f "synth llama-3.1-8b: %e s" build-gpu/biomedq synth --preset llama-3.1-8b --shard-mb 4800 \
    --out "$CK" > /dev/null
  cat "$CK"/*.safetensors > /dev/null  # into the page cache
  for p in nf4 int8 bf16; do
    timeout 300 build-gpu/biomedq bench --model "$CK" --device cuda --precision $p --prompt-len 16 --gen-len 2 \
      --reps 1 --json > "$OUT/load-$p.json" 2> "$OUT/load-$p.err" || tail -3 "$OUT/load-$p.err"
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], 'load', j['load_s'])" \
      "$OUT/load-$p.json" $p
  done
  timeout 300 build-gpu/biomedq eval --model "$CK" --device cuda --precision nf4 --tasks pubmedqa --limit 2 \
    --no-progress --bootstrap 10 --out /tmp/bq-load-eval > /dev/null 2> "$OUT/load-eval.err" &&
    python3 -c "import json; print('eval nf4 load', json.load(open('/tmp/bq-load-eval/results.json'))['throughput']['model_load'])"
  rm -rf "$CK" /tmp/bq-load-eval
fi
if [ -n "${TILED:-}" ]; then  # the tiled products (tc_gemm.cu) against the kernels they replace
  for b in 32 64; do
    bench bf16-b$b --precision bf16 --batch $b
    for p in nf4 int8; do
      BIOMEDQ_TC_GEMM=0 bench $p-b$b --precision $p --batch $b
      bench $p-b$b-tiled --precision $p --batch $b
    done
  done
  summarize
fi
if [ "${MATRIX:-}" = short ]; then  # the main rows only, and nf4, bf16 without programmatic dependent launch
  for b in 1 32; do
    bench bf16-b$b --precision bf16 --batch $b
    bench nf4-b$b --precision nf4 --batch $b
    bench int8-b$b --precision int8 --batch $b
  done
  bench nf4-b1-nopdl --precision nf4 --batch 1 --no-pdl
  bench bf16-b1-nopdl --precision bf16 --batch 1 --no-pdl
  summarize
fi
if [ -n "${PROFILE:-}" ]; then  # GPU time per kernel of decode steps (ncu), at batch PROFILE_BATCH (1)
  PB=${PROFILE_BATCH:-1}
  # 3,000 launches in: past batch 1's 500-token prompt, or batch B's 16-token prompts (B x 500 rows would still be
  # prefilling there).
  PL=$([ "$PB" = 1 ] && echo 500 || echo 16)
  for p in ${PROFILE_PRECISIONS:-nf4 bf16}; do
    timeout 200 ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
      --launch-skip 3000 --launch-count 600 \
      build-gpu/biomedq bench --synthetic llama-3.1-8b --device cuda --precision $p --batch $PB --prompt-len $PL \
      --gen-len 24 --reps 1 > /tmp/profile-$p.csv 2> /tmp/profile-$p.err
    echo "ncu profile $p b$PB exit $?"
    python3 scripts/kernel_times.py /tmp/profile-$p.csv 32 > "$OUT/profile-b$PB-$p.txt" 2>&1 || tail -5 /tmp/profile-$p.err
    tail -14 "$OUT/profile-b$PB-$p.txt"
  done
fi
if [ -n "${STALLS:-}" ]; then  # why the decode kernels stall: warp states and SASS hot spots of one layer's launches
  timeout 240 ncu --clock-control none -k regex:"attention|matvec_tc_kernel" --launch-skip 300 --launch-count 5 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis --section SourceCounters --print-details all build-gpu/biomedq bench \
    --synthetic llama-3.1-8b --device cuda --precision nf4 --prompt-len 500 --gen-len 16 --reps 1 > "$OUT/stalls.txt" 2>&1
  echo "ncu stalls exit $?"
  if command -v cuobjdump > /dev/null; then  # instruction mix of the batch-1 4-bit kernel
    cuobjdump -sass build-gpu/libbiomedq_inference.a 2> /dev/null | python3 -c '
import re, sys, collections
text = sys.stdin.read()
for f in re.split(r"\n\s+Function : ", text)[1:]:
    name = f.split("\n")[0]
    if "matvec_tc_kernel" not in name: continue
    ops = re.findall(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", f)
    print(name[:100], len(ops), collections.Counter(ops).most_common(25))
' > "$OUT/sass-mix.txt"
  fi
fi
if [ "${MATRIX:-}" = short ]; then exit $PLAN_FAILED; fi
if [ -n "${QUICK:-}" ] && [ "${MATRIX:-}" != full ]; then  # QUICK=1: CUDA tests, the plan checks' runs and int8
  bench int8-b1 --precision int8 --batch 1
  summarize; exit $PLAN_FAILED
fi
for b in 1 32; do
  bench bf16-b$b --precision bf16 --batch $b
  bench nf4-b$b --precision nf4 --batch $b
  bench int8-b$b --precision int8 --batch $b
  bench nf4-nodq-b$b --precision nf4 --double-quant off --batch $b
  bench fp4-b$b --precision fp4 --batch $b
  [ "$b" = 1 ] && bench llm-int8-b1 --precision llm-int8 --batch 1
done
# Last, with its own limit: LLM.int8 prefill of 32 x 512 tokens is slow on synthetic weights, whose random
# activations make hundreds of outlier columns (docs/benchmarks/NOTES.md).
BENCH_TIMEOUT=${LLM8_B32_TIMEOUT:-100} bench llm-int8-b32 --precision llm-int8 --batch 32
summarize
if [ -n "${NCU:-}" ]; then  # hardware counters of the decode products (bf16, nf4) over a few decode steps
  for p in bf16 nf4; do
    timeout 120 ncu --clock-control none -k regex:matvec --launch-skip 200 --launch-count 8 --section SpeedOfLight \
      --section LaunchStats --section Occupancy build-gpu/biomedq bench --synthetic llama-3.1-8b --device cuda \
      --precision $p --prompt-len 16 --gen-len 8 --reps 1 > "$OUT/ncu-decode-$p.txt" 2>&1
    echo "ncu $p exit $?"
  done
fi
exit $PLAN_FAILED
