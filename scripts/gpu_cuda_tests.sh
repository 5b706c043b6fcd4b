#!/usr/bin/env bash
# On the GPU machine with prebuilt binaries (gpu_build.sh's PREBUILT: no ctest files): the CUDA tests of
# build-gpu/biomedq_tests in 8 gtest shards at once, as `ctest -j8 -R Cuda` runs them; a summary line, then the
# failures. Logs in /tmp/gtest-*.log.
for i in 0 1 2 3 4 5 6 7; do
  GTEST_TOTAL_SHARDS=8 GTEST_SHARD_INDEX=$i timeout "${TEST_TIMEOUT:-200}" build-gpu/biomedq_tests \
    --gtest_filter='*Cuda*' > /tmp/gtest-$i.log 2>&1 &
done
wait
count() { cat /tmp/gtest-*.log | grep -c "$1"; }
echo "CUDA tests (prebuilt): $(count '^\[       OK \]') passed, $(count '^\[  FAILED  \] .* ms)$') failed," \
  "$(count '^\[  SKIPPED \] .* ms)$') skipped"
grep -h -B2 -A20 "Failure" /tmp/gtest-*.log | head -60
