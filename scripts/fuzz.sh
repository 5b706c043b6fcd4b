#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time (default 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIOMEDQ_FUZZ=ON >/dev/null
targets=$(cd fuzz && ls *.cpp | sed 's/\.cpp$//')
cmake --build build-fuzz -j "$(nproc)" --target $targets
for t in $targets; do
  mkdir -p build-fuzz/corpus/$t
  seeds=fuzz/seeds/$t; [ -d "$seeds" ] || seeds=
  echo "fuzzing $t for ${seconds}s"
  ./build-fuzz/$t -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 build-fuzz/corpus/$t $seeds 2>&1 | tail -n 4
done
