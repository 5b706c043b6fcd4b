#!/usr/bin/env bash
# Issue 14's reproductions, run against the built CLI: each hostile input must end in a clean error (exit 1, one
# line "biomedq: error: ..." naming the file) or in correct behaviour, within 120 s and 2 GB. Prints the table
# attack class | tried | clean error | crash | hang | other, and the cases that were not clean. Each run is also
# capped at 8 GB of address space, so that a build without the fixes cannot exhaust the machine.
# Usage: scripts/hostile.sh [path/to/biomedq]   (default build/biomedq; HOSTILE_TIMEOUT=seconds to shorten runs)
set -uo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-build/biomedq}")
work=$(mktemp -d /tmp/biomedq-hostile.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$bin" synth --preset tiny --out "$work/base" >/dev/null || exit 1

declare -A tried clean crash hang other
report=""
# attack CLASS NAME EXPECT CMD...: EXPECT is a text the error must contain, or "ok" when exit 0 is right.
attack() {
  local class=$1 name=$2 expect=$3
  shift 3
  local out rc rss
  out=$(ulimit -v 8000000
    /usr/bin/time -f "rss %M" -o "$work/rss" timeout "${HOSTILE_TIMEOUT:-120}" "$@" </dev/null 2>&1)
  rc=$?
  rss=$(awk '/^rss/ {print $2}' "$work/rss" 2>/dev/null || echo 0)
  tried[$class]=$((${tried[$class]:-0} + 1))
  local verdict
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    verdict=hang
  elif [ "$rc" -gt 128 ] || grep -q "Command terminated by signal" "$work/rss"; then
    verdict=crash
  elif [ "${rss:-0}" -gt 2097152 ]; then
    verdict="other (${rss} KB)"
  elif [ "$expect" = ok ] && [ "$rc" = 0 ]; then
    verdict=clean
  elif [ "$rc" = 1 ] && [ "$(printf '%s\n' "$out" | grep -c '^biomedq: error:')" = 1 ] &&
    printf '%s' "$out" | grep -qF -- "$expect"; then
    verdict=clean
  else
    verdict="other (exit $rc)"
  fi
  case $verdict in
    clean) clean[$class]=$((${clean[$class]:-0} + 1)) ;;
    crash) crash[$class]=$((${crash[$class]:-0} + 1)) ;;
    hang) hang[$class]=$((${hang[$class]:-0} + 1)) ;;
    *) other[$class]=$((${other[$class]:-0} + 1)) ;;
  esac
  [ "$verdict" = clean ] || report+="$class / $name: $verdict: $(printf '%s' "$out" | tail -n 2 | cut -c1-200)"$'\n'
}

fresh() {  # a copy of the synthetic model
  rm -rf "$work/m"
  cp -r "$work/base" "$work/m"
  echo "$work/m"
}

# ---- 1. Jinja chat templates (via the checkpoint's tokenizer_config.json)
template() {
  local m
  m=$(fresh)
  python3 - "$m/tokenizer_config.json" "$1" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["chat_template"] = eval(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))
EOF
  attack jinja "$2" "${3:-tokenizer_config.json}" "$bin" generate --chat --model "$m" --prompt hi --max-new-tokens 1
}
template '"{{ " + "(" * 10000 + "1" + ")" * 10000 + " }}"' "10,000 nested parentheses"
template '"{{ " + "(" * 150 + "1" + ")" * 150 + " }}"' "150 nested parentheses"
template '"{% macro f(n) %}{{ f(n - 1) if n > 0 else 0 }}{% endmacro %}{{ f(10000) }}"' "macro 10,000 deep"
template '"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"' "unbounded macro"
template '"{% if true %}" * 50000 + "{% endif %}" * 50000' "50,000 nested if"
template '"{% if true %}" * 5000 + "{% endif %}" * 5000' "5,000 nested if"
template '"{{ " + "[" * 200000 + " }}"' "200,000 nested ["
template '"{{ range(-9223372036854775807, 9223372036854775807) }}"' "range overflow"
template '"{{ \"abcdefgh\" * 10000000000 }}"' "string * 10^10"
template '"{% set ns = namespace(s=\"ab\") %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"' \
  "string doubled 60 times"
template '"x{{ \"\" * 10**15 }}{{ messages[0].content }}"' "empty string * 10^15" ok
template '"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"' "nested range loops"
template '"{% set ns = namespace() %}{% set ns.x = ns %}{{ ns }}"' "namespace cycle"
template '"{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}"' \
  "list nested 100,000 deep"
template '"{{ 9223372036854775807 + 1 }}"' "integer overflow"
template '"{{ (-9223372036854775807 - 1) // -1 }}"' "INT64_MIN // -1"

# ---- 2. recursive readers: MedQA options
tasks() {  # a task folder and data folder with one MedQA-like split whose options cell is $1
  rm -rf "$work/t" "$work/d"
  mkdir -p "$work/t" "$work/d/MedQA"
  cp tasks/medqa.yaml "$work/t/"
  printf '\tmeta_info\tquestion\tanswer_idx\tanswer\toptions\n0\tstep1\tWhich?\tA\tx\t%s\n' "$1" \
    >"$work/d/MedQA/test.tsv"
}
for depth in 5000 20000 200000; do
  tasks "$(python3 -c "print('[' * $depth + ']' * $depth)")"
  attack readers "MedQA options $depth deep (data check)" "test.tsv:2" "$bin" data check --data-dir "$work/d" \
    --tasks-dir "$work/t"
  attack readers "MedQA options $depth deep (eval)" "test.tsv:2" "$bin" eval --synthetic tiny --tasks medqa \
    --tasks-dir "$work/t" --data-dir "$work/d" --out "$work/run$depth" --no-progress
done

# ---- 3. config.json against the checkpoint; 4. config values and non-finite numbers
config() {  # fresh model with config key $1 set to the JSON value $2
  local m
  m=$(fresh)
  python3 - "$m/config.json" "$1" "$2" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c[sys.argv[2]] = json.loads(sys.argv[3])
json.dump(c, open(sys.argv[1], "w"))
EOF
  attack config "$1 = $2" "${3:-config.json}" "$bin" generate --model "$m" --prompt hi --max-new-tokens 2
}
config num_hidden_layers 1073741824
config num_hidden_layers 1 model.safetensors
config vocab_size 1000000
config model_type 5
config rope_theta 0
config rope_theta -1
config rms_norm_eps -1
config tie_word_embeddings '"yes"'
config rope_scaling '{"rope_type": "llama3", "factor": 8, "low_freq_factor": 4, "high_freq_factor": 4}'
config eos_token_id 1e12

poison() {  # fresh model with tensor $1 filled with the BF16 bits $2 (all of it, or its first value)
  local m
  m=$(fresh)
  python3 - "$m/model.safetensors" "$1" "$2" "$3" <<'EOF'
import json, struct, sys
path, name, bits, scope = sys.argv[1], sys.argv[2], int(sys.argv[3], 16), sys.argv[4]
b = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
s, e = h[name]["data_offsets"]
end = 8 + n + (e if scope == "all" else s + 2)
for k in range(8 + n + s, end, 2):
    b[k:k + 2] = struct.pack("<H", bits)
open(path, "wb").write(b)
EOF
  attack nonfinite "$1 ($3) = $2" "not finite" "$bin" generate --model "$m" --prompt 'Aspirin inhibits' \
    --max-new-tokens 4
}
poison model.embed_tokens.weight 7fc0 all
poison lm_head.weight 7fc0 first
poison model.layers.0.input_layernorm.weight 7f80 first
poison model.norm.weight 7f80 first

# ---- 5. safetensors size arithmetic and duplicate names
header() {  # fresh model whose model.safetensors is the header $1 followed by $2 zero bytes
  local m
  m=$(fresh)
  python3 - "$1" "$m/model.safetensors" "$2" <<'EOF'
import struct, sys
h = sys.argv[1].encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(h)) + h + bytes(int(sys.argv[3])))
EOF
  attack safetensors "$3" "model.safetensors" "$bin" generate --model "$m" --prompt hi --max-new-tokens 1
}
header '{"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}}' 0 "F32 [2^31, 2^31] in 0 bytes"
header '{"w":{"dtype":"I64","shape":[2305843009213693960],"data_offsets":[0,64]}}' 64 "I64 [2^61+8] in 64 bytes"
header '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8 \
  "a tensor named twice"
header "$(python3 -c "print('[' * 100000)")" 0 "header nested 100,000 deep"

# ---- 6. special files
m=$(fresh); rm "$m/model.safetensors"; mkfifo "$m/model.safetensors"
attack special "shard is a FIFO" "model.safetensors" "$bin" generate --model "$m" --prompt hi --max-new-tokens 1
for f in config.json tokenizer.json tokenizer_config.json; do
  m=$(fresh); rm "$m/$f"; ln -s /dev/zero "$m/$f"
  attack special "$f is /dev/zero" "$f" "$bin" generate --model "$m" --prompt hi --max-new-tokens 1
done
m=$(fresh)
python3 - "$m/tokenizer_config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c.pop("chat_template", None)
json.dump(c, open(sys.argv[1], "w"))
EOF
ln -s /dev/zero "$m/chat_template.jinja"
attack special "chat_template.jinja is /dev/zero" "chat_template.jinja" "$bin" generate --chat --model "$m" --prompt hi
m=$(fresh); head -c $((17 << 20)) /dev/zero | tr '\0' ' ' >"$m/config.json"
attack special "config.json of 17 MB" "config.json" "$bin" generate --model "$m" --prompt hi --max-new-tokens 1

# ---- 7. messages that name the file
tsv_task() {  # the MedQA task with test.tsv from stdin
  rm -rf "$work/t" "$work/d"
  mkdir -p "$work/t" "$work/d/MedQA"
  cp tasks/medqa.yaml "$work/t/"
  cat >"$work/d/MedQA/test.tsv"
}
opts="[{'key': 'A', 'value': 'x'}, {'key': 'B', 'value': 'y'}]"
printf '\tmeta_info\tquestion\tanswer_idx\tanswer\toptions\n0\tstep1\tWh\377ich?\tA\tx\t%s\n' "$opts" | tsv_task
attack messages "invalid UTF-8 in a TSV" "test.tsv:2: invalid UTF-8" "$bin" eval --synthetic tiny --tasks medqa \
  --tasks-dir "$work/t" --data-dir "$work/d" --out "$work/run-utf8" --no-progress
tsv_task </dev/null; rm "$work/d/MedQA/test.tsv"; mkdir "$work/d/MedQA/test.tsv"
attack messages "split path is a folder" "test.tsv: is a folder" "$bin" data check --data-dir "$work/d" \
  --tasks-dir "$work/t"
m=$(fresh)
python3 - "$m/tokenizer.json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1]))
t["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "(a|aa)+$"}, "behavior": "Isolated", "invert": False}
json.dump(t, open(sys.argv[1], "w"))
EOF
attack messages "catastrophic tokenizer regex" "tokenizer.json" "$bin" generate --model "$m" \
  --prompt "$(python3 -c "print('a' * 5000 + '!')")" --max-new-tokens 1
{
  printf '\tmeta_info\tquestion\tanswer_idx\tanswer\toptions\n0\tstep1\t"'
  head -c $((108 << 20)) /dev/zero | tr '\0' a
} | tsv_task
attack messages "108 MB TSV row" "test.tsv:2: row longer than" "$bin" data check --data-dir "$work/d" \
  --tasks-dir "$work/t"

# ---- 8. silent data problems
printf '\tmeta_info\tquestion\tanswer_idx\tanswer\toptions\n' | tsv_task
attack data "test split with a header and no rows" "test.tsv: the split holds no examples" "$bin" eval \
  --synthetic tiny --tasks medqa --tasks-dir "$work/t" --data-dir "$work/d" --out "$work/run-empty" --no-progress
m=$(fresh)
attack data "synth over a folder with files" "--force" "$bin" synth --preset tiny --out "$m"
mkdir -p "$work/q"; echo mine >"$work/q/notes.txt"
attack data "quantize over a folder with files" "--force" "$bin" quantize --model "$m" --precision nf4 --out "$work/q"
tsv_task </dev/null
sed -i 's#test: test.tsv#test: /etc/passwd#' "$work/t/medqa.yaml"
grep -q /etc/passwd "$work/t/medqa.yaml" || echo "hostile.sh: could not plant /etc/passwd in medqa.yaml" >&2
attack data "split path /etc/passwd" "'splits.test' is '/etc/passwd'" "$bin" data check --data-dir "$work/d" \
  --tasks-dir "$work/t"

printf '\n| attack class | tried | clean error | crash | hang | other |\n|---|---|---|---|---|---|\n'
total=(0 0 0 0 0)
for c in jinja readers config nonfinite safetensors special messages data; do
  row=(${tried[$c]:-0} ${clean[$c]:-0} ${crash[$c]:-0} ${hang[$c]:-0} ${other[$c]:-0})
  printf '| %s | %s | %s | %s | %s | %s |\n' "$c" "${row[@]}"
  for i in 0 1 2 3 4; do total[$i]=$((total[i] + row[i])); done
done
printf '| all | %s | %s | %s | %s | %s |\n' "${total[@]}"
[ -z "$report" ] || printf '\nnot clean:\n%s' "$report"
[ "${total[0]}" = "${total[1]}" ]
