#!/usr/bin/env bash
# The GPU machine has CUDA and a compiler but not our Debian -dev packages: unpack them (here, where apt works)
# into DIR/.deps, which gpu_check.sh then uses as a prefix. Usage: scripts/gpu_deps.sh DIR
set -euo pipefail
dir=$(realpath "$1")/.deps
tmp=$(mktemp -d)
(cd "$tmp" && apt-get download libcli11-dev libfmt-dev libfmt9 libyaml-cpp-dev libyaml-cpp0.7 libpcre2-dev \
  libpcre2-8-0 libutf8proc-dev libutf8proc2 libgtest-dev nlohmann-json3-dev libssl-dev libssl3 libcpp-httplib-dev libcpp-httplib0.11 zlib1g-dev libbrotli-dev libbrotli1 >/dev/null 2>&1)
rm -rf "$dir/usr" && mkdir -p "$dir"  # keeps .deps/report-assets
for f in "$tmp"/*.deb; do dpkg -x "$f" "$dir"; done
rm -rf "$tmp"
