#!/usr/bin/env bash
# A sweep on a real Slurm: installs Debian's slurm-wlm and munge where missing, starts a one-node cluster on this
# machine (tests/sweep/slurm_cluster.sh), and submits the job array `sweep slurm --submit` writes for 2 models (the
# trained fixture model and a random tiny one) x 3 precisions x 3 tasks, as 4 array tasks. One array task is
# cancelled mid-cell (scancel), then requeued. Checks: every cell finished exactly once, with each example once;
# `sweep status` says all done; the table and the answers equal those of the same cells run one by one with `eval`.
# Usage: scripts/slurm_check.sh [BUILD_DIR]. Needs root (or sudo); skips, saying so, otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${1:-$root/build}" && pwd)/biomedq
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo -n true 2>/dev/null || { echo "slurm check: skipped (starting Slurm's daemons needs root or sudo)"; exit 0; }
  sudo="sudo -n"
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || { echo "slurm check: skipped (no Slurm and no apt-get to install it)"; exit 0; }
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

work=$(mktemp -d /tmp/biomedq-slurm.XXXXXX)
chmod 755 "$work"
cluster=$work/cluster
# The daemons stop at the end, pass or fail; the work folder stays when the check fails, for its logs.
trap '$sudo bash "$root/tests/sweep/slurm_cluster.sh" stop "$cluster"' EXIT
$sudo bash "$root/tests/sweep/slurm_cluster.sh" start "$cluster"
export SLURM_CONF=$cluster/slurm.conf
fixtures=$root/tests/fixtures
"$bin" synth --preset tiny --out "$work/tiny-random" >/dev/null
cat > "$work/sweep.yaml" <<YAML
out: runs
models:
  - {name: trained, path: $fixtures/trained-llama}
  - {name: tiny-random, path: tiny-random}
precisions: [bf16, int8, nf4]
tasks: [chemprot, hoc, pubmedqa]
data_dir: $fixtures/benchmark-head
prompts: benchmark
limit: 8
device: cpu
YAML
"$bin" sweep plan "$work/sweep.yaml"
job=$("$bin" sweep slurm "$work/sweep.yaml" --partition test --shards 4 --cpus-per-task 1 --submit |
  sed -n 's/^submitted job //p')
[ -n "$job" ] || { echo "slurm check: no job id" >&2; exit 1; }
echo "slurm check: job array $job submitted"

wait_for() {  # seconds, description, condition...
  local limit=$1 what=$2; shift 2
  for _ in $(seq $((limit * 5))); do "$@" && return 0; sleep 0.2; done
  echo "slurm check: timed out after ${limit}s waiting for $what" >&2
  squeue >&2 || true; tail -n 20 "$work"/runs/slurm/*.out >&2 || true
  exit 1
}
# Cancel the array task that is in the middle of a cell of the trained model: samples written, no results yet.
victim="" cell=""
mid_cell() {
  for d in "$work"/runs/trained/*/*/; do
    [ -s "$d/.lock" ] && [ ! -e "$d/results.json" ] && [ "$(wc -l < "$d/samples.jsonl" 2>/dev/null || echo 0)" -ge 3 ] ||
      continue
    local pid; pid=$(sed -n 's/^pid \([0-9]*\) .*/\1/p' "$d/.lock")
    local task; task=$(tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | sed -n 's/^SLURM_ARRAY_TASK_ID=//p')
    [ -n "$task" ] || continue
    victim=${job}_$task cell=$d
    return 0
  done
  return 1
}
wait_for 120 "an array task in the middle of a cell" mid_cell
scancel "$victim"
task_gone() { ! squeue -h -t running -o %i | grep -qx "$victim"; }
wait_for 60 "$victim to stop" task_gone
[ ! -e "$cell/results.json" ] || { echo "slurm check: $cell finished although cancelled" >&2; exit 1; }
cp "$cell/samples.jsonl" "$work/samples-at-cancel.jsonl"
echo "slurm check: cancelled $victim in $cell after $(wc -l < "$work/samples-at-cancel.jsonl") samples; requeueing it"
scontrol requeue "$victim"
pending() { squeue -h -t pending -o %i | grep -qx "$victim"; }
wait_for 30 "$victim to be pending again" pending
scontrol update jobid="$victim" StartTime=now  # a requeued task otherwise waits out Slurm's requeue delay
array_done() { [ -z "$(squeue -h -j "$job" -o %i)" ]; }
wait_for 300 "the job array to finish" array_done

"$bin" sweep status "$work/sweep.yaml"
python3 - "$bin" "$work" "$cell" <<'PY'
import collections, csv, glob, io, json, os, re, shlex, subprocess, sys
bin, work, cancelled = sys.argv[1:]
def run(*args):
    return subprocess.run([bin, *args], check=True, capture_output=True, text=True).stdout
status = json.loads(run("sweep", "status", f"{work}/sweep.yaml", "--json"))
bad = [c for c in status if c["state"] != "done"]
assert not bad and len(status) == 6, f"cells not done: {bad}"
# Every cell finished exactly once across the array tasks' logs, and holds each example once.
logs = "".join(open(f).read() for f in glob.glob(f"{work}/runs/slurm/*.out"))
for c in status:
    n = len(re.findall(rf"^finished +{re.escape(c['cell'])} ", logs, re.M))
    assert n == 1, f"{c['cell']} finished {n} times in the logs"
    ids = [(r["task"], r["id"]) for r in map(json.loads, open(f"{c['dir']}/samples.jsonl"))]
    assert len(ids) == len(set(ids)) == 24, f"{c['cell']}: {len(ids)} samples, {len(set(ids))} distinct (24 expected)"
restarts = [f for f in glob.glob(f"{work}/runs/slurm/*.out") if len(re.findall(r"^shard .* cells$", open(f).read(), re.M)) == 2]
assert len(restarts) == 1, "not exactly one array task log shows a second attempt"
# Nothing lost: the requeued attempt resumed the cell, keeping the samples written before the cancel.
kept = open(f"{work}/samples-at-cancel.jsonl").read()
assert kept and open(f"{cancelled}/samples.jsonl").read().startswith(kept), "the cancelled cell's samples were not kept"
# The same cells one by one with eval, without Slurm: the same table scores and the same answers.
for c in json.loads(run("sweep", "plan", f"{work}/sweep.yaml", "--json")):
    args = shlex.split(c["eval_command"])[1:]
    args[args.index("--out") + 1] = f"{work}/by-hand/{c['cell']}"
    run(*args, "--no-progress")
    a = {(r["task"], r["id"]): r["raw"] for r in map(json.loads, open(f"{c['dir']}/samples.jsonl"))}
    b = {(r["task"], r["id"]): r["raw"] for r in map(json.loads, open(f"{work}/by-hand/{c['cell']}/samples.jsonl"))}
    assert a == b, f"{c['cell']}: answers differ from the cell run by hand"
def scores(folder):
    rows = list(csv.DictReader(io.StringIO(run("table", folder, "--csv"))))
    return [{k: v for k, v in r.items() if not k.endswith(("_mem_gb", "_latency_s"))} for r in rows]
swept, by_hand = scores(f"{work}/runs"), scores(f"{work}/by-hand")
assert swept == by_hand and len(swept) == 6, f"tables differ:\n{swept}\n{by_hand}"
assert any(float(r["bf16_score"] or 0) > 0 for r in swept), "the trained model scored nothing"
print(f"slurm check: 6 cells done once each (one cancelled mid-cell and requeued: {os.path.relpath(cancelled, work)}); "
      "table and answers equal the cells run one by one")
PY
rm -rf "$work/runs" "$work/by-hand"
echo "slurm check: passed"
