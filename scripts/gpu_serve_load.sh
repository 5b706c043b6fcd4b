#!/usr/bin/env bash
# On the GPU machine: `serve` under load against `bench` at the same batch, on the llama-3.1-8b preset (random
# weights drawn on the GPU). For each precision: start the server (one sequence per client: --max-batch 128), run
# scripts/serve_load.py at 1, 8, 32 and 128 concurrent streaming clients (prompt PROMPT_WORDS words, about 4 tokens
# each with the synthetic tokenizer; MAX_TOKENS generated), stop it with SIGTERM, then bench at batch 1, 8, 32 and
# 128 with the prompt length the server saw. Needs a CUDA build in build-gpu (scripts/gpu_build.sh).
# Results: $OUT/serve-load.json (the load levels and bench's figures at the same batches, per precision).
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
B=build-gpu/biomedq
MAX_TOKENS=${MAX_TOKENS:-256}
WORK=/tmp/serve-load; rm -rf $WORK; mkdir -p $WORK
for p in ${PRECISIONS:-nf4 bf16}; do
  log=$WORK/serve-$p.log
  $B serve --synthetic llama-3.1-8b --device cuda --precision $p --port 0 --max-batch 128 --max-queue 512 \
    --max-context 4096 > "$log" 2>&1 &
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
    --prompt-words ${PROMPT_WORDS:-32} --max-tokens $MAX_TOKENS --label $p --out "$WORK/load-$p.json"
  echo "load exit $?"
  grep -E "^(serve|error)" "$log" | sort | uniq -c | head -5
  kill -TERM $server; wait $server; echo "serve exit $? after SIGTERM"
  P=$(python3 -c "import json;print(round(json.load(open('$WORK/load-$p.json'))[0]['mean_prompt_tokens']))")
  for b in ${BATCHES:-1 8 32 128}; do
    $B bench --synthetic llama-3.1-8b --device cuda --precision $p --batch $b --prompt-len $P --gen-len $MAX_TOKENS \
      --reps 2 --json > "$WORK/bench-$p-b$b.json" 2> /dev/null
    python3 -c "import json;j=json.load(open('$WORK/bench-$p-b$b.json'));print('$p bench batch $b prompt $P: decode tok/s', round(j['decode_tokens_per_s']['mean']), 'TTFT ms', round(j['ttft_ms']['mean']))"
  done
done
python3 - $WORK "$OUT/serve-load.json" <<'PY'
import glob, json, os, sys
work, out = sys.argv[1], sys.argv[2]
result = {}
for f in sorted(glob.glob(work + "/load-*.json")):
    p = os.path.basename(f)[5:-5]
    levels = json.load(open(f))
    for level in levels:
        b = glob.glob(f"{work}/bench-{p}-b{level['clients']}.json")
        if b:
            j = json.load(open(b[0]))
            level["bench_decode_tokens_per_s"] = j["decode_tokens_per_s"]["mean"]
            level["bench_ttft_ms"] = j["ttft_ms"]["mean"]
            level["output_fraction_of_bench_decode"] = level["output_tokens_per_s"] / j["decode_tokens_per_s"]["mean"]
            result.setdefault("bench_device", j.get("device")); result.setdefault("date", j.get("date"))
    result[p] = levels
json.dump(result, open(out, "w"), indent=1)
print(json.dumps({p: [(l["clients"], round(l.get("output_fraction_of_bench_decode", 0), 3)) for l in v]
                  for p, v in result.items() if isinstance(v, list)}))
PY
