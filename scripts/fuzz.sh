#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time (default 10 s, which keeps
# CI within its time; pass more for a longer search, e.g. scripts/fuzz.sh 600). A crash, a leak, an input slower
# than 10 s or one needing more than 2 GB is a finding: the script stops with the fuzzer's report and the input
# under build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
# Line tables only: the sanitizers' reports name file and line, and the build takes far less time than with full -g.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBIOMEDQ_FUZZ=ON \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" >/dev/null
targets=$(cd fuzz && ls *.cpp | sed 's/\.cpp$//')
cmake --build build-fuzz -j "$(nproc)" --target $targets
for t in $targets; do
  mkdir -p build-fuzz/corpus/$t
  seeds=fuzz/seeds/$t; [ -d "$seeds" ] || seeds=
  echo "fuzzing $t for ${seconds}s"
  (cd build-fuzz && ./$t -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus/$t ${seeds:+../$seeds} 2>&1 | tail -n 4)
done
