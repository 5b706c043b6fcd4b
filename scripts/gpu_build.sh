#!/usr/bin/env bash
# On the GPU machine: the CUDA build in build-gpu (Release, no report command: the GPU machine has no cairo -dev;
# nothing GPU-related depends on it), with the Debian -dev packages of .deps (scripts/gpu_deps.sh). Source it, so
# that the library paths it sets stay set for what runs next. Writes $OUT/build.log and $OUT/device.txt.
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
if [ -d .deps ]; then  # see gpu_deps.sh
  D=$PWD/.deps/usr
  sed -i "s|/usr|$D|g" "$D"/lib/x86_64-linux-gnu/pkgconfig/*.pc
  export CMAKE_PREFIX_PATH=$D PKG_CONFIG_PATH=$D/lib/x86_64-linux-gnu/pkgconfig
  export LD_LIBRARY_PATH=$D/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
# PREBUILT=build/gpu-prebuilt.tar.xz (scripts/gpu_prebuild.sh, carried): its binaries where they were built from these
# sources and run here; then build-gpu holds no ctest files (gpu_quick_call.sh's tests step runs biomedq_tests).
if [ -n "${PREBUILT:-}" ] && [ -f "$PREBUILT" ] && [ ! -f build-gpu/CMakeCache.txt ]; then
  mkdir -p build-gpu && tar xJf "$PREBUILT" -C build-gpu
  export LD_LIBRARY_PATH=$PWD/build-gpu/lib:${LD_LIBRARY_PATH:-}  # the libraries of .deps the binaries load
  if [ "$(cat build-gpu/source-hash)" = "$(bash scripts/source_hash.sh)" ] && build-gpu/biomedq --version > /dev/null 2>&1 &&
    build-gpu/biomedq_tests --gtest_list_tests > /dev/null 2>&1; then
    echo "prebuilt binaries ($PREBUILT)" | tee "$OUT/build.log"
    return 0 2>/dev/null || exit 0
  fi
  echo "prebuilt binaries unusable here (stale or do not run): building" | tee "$OUT/build.log"
  build-gpu/biomedq --version 2>&1 | tail -2 >> "$OUT/build.log"
  rm -rf build-gpu
fi
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DBIOMEDQ_CUDA=ON -DBIOMEDQ_REPORT=OFF > "$OUT/build.log" 2>&1 &&
  cmake --build build-gpu -j16 >> "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; return 1 2>/dev/null || exit 1; }
