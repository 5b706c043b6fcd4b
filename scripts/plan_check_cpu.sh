#!/usr/bin/env bash
# The CPU memory planner against a larger synthetic model: `eval` on one example of a task, then `plan --device
# cpu` for the context that run needed (its prompt plus the task's max_new_tokens). Prints the tracked account's
# peak (should agree within 5%) and the process's peak RSS (higher by the process's own code, libraries, tokenizer
# and allocator slack). BIN=path/to/biomedq, PRESET (default small-100m), TASK (default pubmedqa).
set -euo pipefail
BIN=${BIN:-build/biomedq}
PRESET=${PRESET:-small-100m}
TASK=${TASK:-pubmedqa}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
max_new=$(sed -n 's/^max_new_tokens: *\([0-9]*\).*/\1/p' "tasks/$TASK.yaml")
threads=${OMP_NUM_THREADS:-$(nproc)}
status=0
for precision in bf16 int8 nf4; do
  "$BIN" eval --synthetic "$PRESET" --precision "$precision" --tasks "$TASK" --limit 1 --no-progress --bootstrap 10 \
    --out "$WORK/$precision" > /dev/null
  prompt=$(python3 -c 'import json,sys; print(max(json.loads(l)["prompt_tokens"] for l in open(sys.argv[1])))' \
    "$WORK/$precision/samples.jsonl")
  plan=$("$BIN" plan --preset "$PRESET" --precision "$precision" --device cpu --threads "$threads" \
    --prompt-len "$prompt" --context $((prompt + max_new)) --json)
  python3 - "$PRESET $precision $TASK, prompt $prompt + $max_new" "$plan" "$WORK/$precision/results.json" <<'PY' || status=1
import json, sys
name, plan, memory = sys.argv[1], json.loads(sys.argv[2]), json.load(open(sys.argv[3]))["memory"]
planned, peak, rss = plan["allocator_bytes"], memory["allocator_peak_bytes"], memory["host_peak_rss_bytes"]
M = 2**20
ok = abs(planned / peak - 1) <= 0.05
print(f"{name}: planned {planned/M:.1f} MiB, tracked peak {peak/M:.1f} MiB (ratio {planned/peak:.4f}), "
      f"peak RSS {rss/M:.1f} MiB (RSS / plan {rss/planned:.3f}) {'ok' if ok else 'OFF BY MORE THAN 5%'}")
sys.exit(0 if ok else 1)
PY
done
exit $status
