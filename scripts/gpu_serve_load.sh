#!/usr/bin/env bash
# On the GPU machine: `serve` under load against `bench` at the same batch, on the llama-3.1-8b preset (random
# weights drawn on the GPU). For each precision: start the server (one sequence per client: --max-batch 128), run
# scripts/serve_load.py at 1, 8, 32 and 128 concurrent streaming clients (prompt ~PROMPT_WORDS words, MAX_TOKENS
# generated), stop it with SIGTERM, then bench at batch 1, 8, 32 and 128 with the prompt length the server saw.
# Needs a CUDA build in build-gpu (scripts/gpu_build.sh). Results: $OUT/serve-load-*.json, $OUT/serve-bench-*.json.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
B=build-gpu/biomedq
MAX_TOKENS=${MAX_TOKENS:-128}
for p in ${PRECISIONS:-nf4 bf16}; do
  log=$OUT/serve-$p.log
  $B serve --synthetic llama-3.1-8b --device cuda --precision $p --port 0 --max-batch 128 --max-queue 512 \
    --max-context 2048 > "$log" 2>&1 &
  server=$!
  port=
  for _ in $(seq 600); do  # up to 60 s to load
    port=$(sed -nE 's#^listening on http://127\.0\.0\.1:([0-9]+)/v1#\1#p' "$log")
    [ -n "$port" ] && break
    kill -0 $server 2> /dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then echo "serve $p did not start"; tail -5 "$log"; kill $server 2> /dev/null; continue; fi
  head -4 "$log"
  python3 scripts/serve_load.py --port "$port" --clients ${CLIENTS:-1,8,32,128} --requests ${REQUESTS:-3} \
    --prompt-words ${PROMPT_WORDS:-400} --max-tokens $MAX_TOKENS --label $p --out "$OUT/serve-load-$p.json"
  echo "load exit $?"
  kill -TERM $server; wait $server; echo "serve exit $? after SIGTERM"
  P=$(python3 -c "import json;print(round(json.load(open('$OUT/serve-load-$p.json'))[0]['mean_prompt_tokens']))")
  for b in ${BATCHES:-1 8 32 128}; do
    $B bench --synthetic llama-3.1-8b --device cuda --precision $p --batch $b --prompt-len $P --gen-len $MAX_TOKENS \
      --reps 2 --json > "$OUT/serve-bench-$p-b$b.json" 2> /dev/null
    python3 -c "import json;j=json.load(open('$OUT/serve-bench-$p-b$b.json'));print('$p bench batch $b prompt $P: decode tok/s', round(j['decode_tokens_per_s']['mean']), 'TTFT ms', round(j['ttft_ms']['mean']))"
  done
done
