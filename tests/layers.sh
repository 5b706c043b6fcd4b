#!/usr/bin/env bash
# The include graph follows the layers of the pipeline (CMakeLists.txt builds one library per layer): a file may
# include its own layer and the layers below it, never one above. Also: outside backend/, no file names CUDA code.
# Usage: tests/layers.sh [SOURCE_DIR]; exits 1 listing every include that runs back up.
set -euo pipefail
root=${1:-$(dirname "$0")/..}
cd "$root/src"

# The layer of each folder, lowest first (the libraries: core, tokenizer, inference, evaluation; cli on top).
declare -A layer=([core]=0 [io]=0 [quant]=0 [model]=0 [tokenizer]=1 [backend]=2 [generate]=2
  [eval]=3 [plan]=3 [analysis]=3 [report]=3 [serve]=3 [sweep]=3 [cli]=4)

bad=0
for dir in */; do
  dir=${dir%/}
  [[ -n ${layer[$dir]+x} ]] || { echo "src/$dir: a folder with no layer in tests/layers.sh"; bad=1; continue; }
  while IFS=: read -r file line target; do
    to=${target%%/*}
    [[ -n ${layer[$to]+x} ]] || continue
    if (( layer[$to] > layer[$dir] )); then
      echo "$file:$line includes $target: $to is a layer above $dir"
      bad=1
    fi
  done < <(grep -rnoE '^#include "[a-z_]+/[^"]+"' "$dir" | sed -E 's/#include "([^"]+)"/\1/')
done

# The CUDA backend's headers are included from backend/ alone; the planner reads the CUDA backend's sizing
# (backend/cuda/layout.h, plain C++) as it reads the CPU backend's.
while IFS= read -r hit; do
  echo "$hit: names the CUDA backend outside backend/"
  bad=1
done < <(grep -rnE '#include "backend/cuda/[a-z_]+\.(h|cuh)"|\bCudaForward\b' --include='*.h' --include='*.cpp' . |
  grep -vE '^\./backend/' | grep -v 'backend/cuda/layout.h' || true)

if (( bad )); then exit 1; fi
echo "layers: every include runs down the pipeline"
