#!/usr/bin/env bash
# Fetches the JavaScript that `biomedq report` inlines into its HTML page (vega, vega-lite, vega-embed, pinned)
# into .deps/report-assets/, where CMake looks for them at configure time. Idempotent and fails soft: without
# the files the report page carries the data tables and a notice instead of charts.
set -uo pipefail
cd "$(dirname "$0")/.."
dest=.deps/report-assets
mkdir -p "$dest"

if ! command -v npm >/dev/null; then
  echo "fetch-report-assets: npm not found; report pages will have tables but no charts" >&2
  exit 0
fi

# package@version -> the minified browser build inside its tarball
packages=(vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0)
status=0
for spec in "${packages[@]}"; do
  name="${spec%@*}"
  [ -f "$dest/$name.min.js" ] && continue
  tmp="$(mktemp -d)"
  if (cd "$tmp" && npm pack --silent "$spec" >/dev/null 2>&1) &&
     tar xzf "$tmp"/*.tgz -C "$tmp" "package/build/$name.min.js"; then
    cp "$tmp/package/build/$name.min.js" "$dest/$name.min.js.tmp" && mv "$dest/$name.min.js.tmp" "$dest/$name.min.js"
    echo "fetch-report-assets: $dest/$name.min.js <- $spec"
  else
    echo "fetch-report-assets: could not fetch $spec; report pages will have tables but no charts" >&2
    status=1
  fi
  rm -rf "$tmp"
done
# Fail soft on purpose: a missing asset only removes the charts from report pages.
[ "$status" = 0 ] || echo "fetch-report-assets: some assets are missing (see above)" >&2
exit 0
