#!/usr/bin/env bash
# Installs the Debian packages biomedq needs (as root, or through sudo) and builds it into ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
# libcairo2-dev draws the report's PNG figures; chromium renders report pages in a headless test.
packages=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev
  libutf8proc-dev libopenblas-dev libyaml-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev clang
  libclang-rt-14-dev libomp-14-dev libssl-dev python3-jinja2 libcairo2-dev chromium libcpp-httplib-dev)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# Node.js (with npm) runs the reference tokenizers and template renderer in differential tests; any install will do.
command -v node >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The report page's chart JavaScript (embedded at configure time); fails soft: pages then lack charts only.
scripts/fetch-report-assets.sh || echo "setup: report chart assets not fetched; report pages will have no charts" >&2
# The CUDA backend is built wherever the CUDA toolkit is installed (it then also compiles in CI, where its GPU tests
# skip); BIOMEDQ_CMAKE_ARGS=-DBIOMEDQ_CUDA=OFF leaves it out.
cuda_args=()
nvcc=$(command -v nvcc || true)
[ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
[ -z "$nvcc" ] || cuda_args=(-DBIOMEDQ_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc")
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_args[@]}" ${BIOMEDQ_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"
