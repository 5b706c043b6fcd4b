#!/usr/bin/env bash
# Here, before a device call: the CUDA build of biomedq and biomedq_tests (Release, no report command, as
# gpu_build.sh builds there) packed into build/gpu-prebuilt.tar.xz with the hash of the sources it was built from
# (scripts/source_hash.sh). Carried with PREBUILT=build/gpu-prebuilt.tar.xz, gpu_build.sh uses it where it runs and
# its hash matches the sources there, and builds otherwise: a fresh machine's build takes 70-90 s of device time.
# It holds the shared libraries of .deps the binaries load (lib/), so that a call with it needs no .deps.
set -euo pipefail
cmake -S . -B build-gpu-local -G Ninja -DCMAKE_BUILD_TYPE=Release -DBIOMEDQ_CUDA=ON -DBIOMEDQ_REPORT=OFF \
  -DCMAKE_CUDA_COMPILER="${NVCC:-/usr/local/cuda/bin/nvcc}" > /dev/null
before=$(bash scripts/source_hash.sh)
nice cmake --build build-gpu-local -j"${JOBS:-$(nproc)}" --target biomedq biomedq_tests
if [ "$(bash scripts/source_hash.sh)" != "$before" ]; then
  echo "the sources changed during the build: run scripts/gpu_prebuild.sh again" >&2
  exit 1
fi
echo "$before" > build-gpu-local/source-hash
# The shared libraries the device image lacks (those of .deps, scripts/gpu_deps.sh) that the binaries load, so that a
# call needs no .deps (the working tree and the carried paths must stay within 64 MiB).
rm -rf build-gpu-local/lib && mkdir -p build-gpu-local/lib
D=$PWD/.deps/usr/lib/x86_64-linux-gnu
for so in $(LD_LIBRARY_PATH=$D ldd build-gpu-local/biomedq build-gpu-local/biomedq_tests | awk -v d="$D/" 'index($3, d) == 1 {print $3}' | sort -u); do
  cp -L "$so" build-gpu-local/lib/
done
mkdir -p build
tar cJf build/gpu-prebuilt.tar.xz -C build-gpu-local biomedq biomedq_tests source-hash lib
echo "build/gpu-prebuilt.tar.xz: $(du -h build/gpu-prebuilt.tar.xz | cut -f1), sources $(cat build-gpu-local/source-hash)"
