#!/usr/bin/env bash
# Builds the Debian package from BUILD_DIR (default build/), installs it with apt-get, and runs the README's main job
# (scripts/demo.sh) from / with the installed binary, which must find its task files and example data in
# /usr/share/biomedq by itself. Removes the package again at the end. Needs root (or sudo); skips, saying so, otherwise.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo -n true 2>/dev/null || { echo "package check: skipped (installing a package needs root or sudo)"; exit 0; }
  sudo="sudo -n"
fi
command -v apt-get >/dev/null || { echo "package check: skipped (no apt-get)"; exit 0; }
if dpkg -s biomedq >/dev/null 2>&1; then
  echo "package check: skipped (a biomedq package is already installed; it is left alone)"; exit 0
fi

rm -f "$build"/biomedq_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls "$build"/biomedq_*_*.deb)
echo "package check: $(basename "$deb")"
dpkg-deb -f "$deb" Depends

work=$(mktemp -d)
trap '$sudo apt-get remove -y -qq biomedq >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
# apt-get resolves Depends (scripts/setup.sh has already installed them, with their -dev packages).
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$deb" >/dev/null
installed=$(command -v biomedq)
[ "$installed" = /usr/bin/biomedq ] || { echo "package check: biomedq resolves to $installed, not /usr/bin/biomedq" >&2; exit 1; }
ldd "$installed" | grep -q "not found" && { ldd "$installed" >&2; echo "package check: unresolved libraries" >&2; exit 1; }

# From /, with no hint where the task files or data are; the demo's run folder lives in a scratch folder.
cd /
env -u BIOMEDQ_TASKS_DIR -u BIOMEDQ_EXAMPLES_DIR biomedq --version
env -u BIOMEDQ_TASKS_DIR -u BIOMEDQ_EXAMPLES_DIR OUT="$work/demo" bash "$root/scripts/demo.sh" "$installed" | tee "$work/demo.log"
# Table 1 (the demo's last output) has a row for each of the eight tasks.
rows=$(grep -cE '^\| [a-z0-9-]+ \| [a-z_0-9]+ \| tiny-model \|' "$work/demo.log" || true)
[ "$rows" = 8 ] || { echo "package check: expected 8 task rows in the table, found $rows" >&2; exit 1; }
echo "package check: passed (installed $(basename "$deb"), ran the demo from / with $installed)"
