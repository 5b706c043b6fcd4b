#!/usr/bin/env bash
# On the GPU machine: evaluation's decode rate against bench's, on the llama-3.1-8b preset (random weights) at batch
# 32: eval on the first 64 ChemProt examples (random weights never end early, so every answer runs to the task's
# token limit), then bench at the same batch and about the same lengths. Prints ms per decode step of both.
# Needs a CUDA build in build-gpu (scripts/gpu_build.sh makes one).
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
B=build-gpu/biomedq
for p in ${PRECISIONS:-nf4 bf16}; do
  rm -rf /tmp/speed-$p
  /usr/bin/time -f "$p eval wall %e s" $B eval --synthetic llama-3.1-8b --device cuda --precision $p --batch 32 \
    --tasks chemprot --data-dir tests/fixtures/benchmark-head --prompts benchmark --limit 64 --no-progress \
    --out /tmp/speed-$p > "$OUT/eval-speed-$p.log" 2>&1 || tail -5 "$OUT/eval-speed-$p.log"
  tail -1 "$OUT/eval-speed-$p.log"
  python3 - /tmp/speed-$p $p "$OUT/eval-speed-$p.json" <<'PY'
import json, sys, glob, statistics as st
rows = [json.loads(l) for f in glob.glob(sys.argv[1] + "/**/samples.jsonl", recursive=True) for l in open(f)]
steps = [r["decode_ms"] / (r["generated_tokens"] - 1) for r in rows if r["generated_tokens"] > 1]
prompt = st.mean(r["prompt_tokens"] for r in rows); gen = st.mean(r["generated_tokens"] for r in rows)
out = {"precision": sys.argv[2], "examples": len(rows), "mean_prompt_tokens": prompt, "mean_generated_tokens": gen,
       "eval_ms_per_step_median": st.median(steps)}
json.dump(out, open(sys.argv[3], "w"), indent=1); print(out)
PY
  read P G < <(python3 -c "import json;j=json.load(open('$OUT/eval-speed-$p.json'));print(round(j['mean_prompt_tokens']),round(j['mean_generated_tokens']))")
  $B bench --synthetic llama-3.1-8b --device cuda --precision $p --batch 32 --prompt-len $P --gen-len $G --reps 2 \
    --json > "$OUT/bench-speed-$p.json" 2> /dev/null
  python3 -c "import json;j=json.load(open('$OUT/bench-speed-$p.json'));print('$p bench prompt $P gen $G: ms/step', round(j['decode_ms_per_step']['mean'],3), 'tok/s', round(j['decode_tokens_per_s']['mean']))"
done
