#!/usr/bin/env bash
# Builds (installing what is missing), fetches the differential-test assets, runs the whole test suite, checks the
# Debian package and a sweep on Slurm, then runs the fuzzers for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Real tokenizer files and the reference JavaScript implementations; the tests that need them skip when offline.
bash scripts/fetch-test-assets.sh || echo "test assets: fetch failed; differential tests will skip"
bash scripts/fetch-test-assets-jinja.sh || echo "test assets (jinja): fetch failed; template tests will skip"
# ctest runs one test per core: one OpenMP thread per test keeps the cores from being oversubscribed.
OMP_NUM_THREADS=1 ctest --test-dir build --output-on-failure -j "$(nproc)"
# The Debian package, installed with apt-get, runs the demo from / (skips without root or sudo).
bash scripts/package_check.sh build
# A sweep as a Slurm job array on a one-node cluster started here (skips without root or sudo).
bash scripts/slurm_check.sh build
bash scripts/fuzz.sh "${BIOMEDQ_FUZZ_SECONDS:-10}"
