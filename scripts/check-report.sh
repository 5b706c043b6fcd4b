#!/usr/bin/env bash
# Opens REPORT_DIR/report.html in headless Chromium (offline: the page must need nothing from the network) and
# checks that every chart container holds a rendered <svg> or <canvas> and that the page reported no error.
# With SCREENSHOT.png, also saves a screenshot of the page. Exit status: 0 passed, 1 failed, 77 no chromium.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 REPORT_DIR [SCREENSHOT.png]" >&2
  exit 2
fi
report_dir="$(cd "$1" && pwd)"
screenshot="${2:-}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
  echo "check-report: chromium not found (apt-get install chromium)" >&2
  exit 77
fi
[ -f "$report_dir/report.html" ] || { echo "check-report: $report_dir/report.html not found" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
page="file://$report_dir/report.html"
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --user-data-dir="$work/profile" --virtual-time-budget=5000)

if ! "$browser" "${flags[@]}" --dump-dom "$page" >"$work/dom.html" 2>"$work/browser.log"; then
  cat "$work/browser.log" >&2
  echo "check-report: chromium failed on $page" >&2
  exit 1
fi

python3 - "$work/dom.html" <<'PY'
import sys
from html.parser import HTMLParser

class Check(HTMLParser):
    """Counts chart containers and the drawings inside them; collects the text of #report-errors."""
    def __init__(self):
        super().__init__()
        self.stack = []          # (tag, is_chart, is_errors) of open elements
        self.charts = []         # per chart container: [id, drawn]
        self.errors = ""
        self.rendered = False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.rendered = a.get("data-rendered") == "true"
        is_chart = "chart" in (a.get("class") or "").split()
        if is_chart:
            self.charts.append([a.get("id", "?"), False])
        if tag in ("svg", "canvas") and any(s[1] for s in self.stack):
            self.charts[-1][1] = True
        if tag not in ("br", "img", "meta", "link", "input", "hr", "path", "rect", "line", "circle"):
            self.stack.append((tag, is_chart, a.get("id") == "report-errors"))
    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
    def handle_data(self, data):
        if any(s[2] for s in self.stack):
            self.errors += data

c = Check()
c.feed(open(sys.argv[1], encoding="utf-8").read())
problems = []
if not c.charts:
    problems.append("no chart containers (a build without the chart JavaScript?)")
problems += [f"#{cid}: no <svg> or <canvas> rendered" for cid, drawn in c.charts if not drawn]
if c.errors.strip():
    problems.append("the page reported errors: " + c.errors.strip())
if not c.rendered:
    problems.append("the page did not finish rendering (body[data-rendered] unset)")
if problems:
    print("check-report: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"check-report: {len(c.charts)} charts rendered, no errors")
PY

if [ -n "$screenshot" ]; then
  "$browser" "${flags[@]}" --hide-scrollbars --window-size=1280,1800 --screenshot="$screenshot" "$page" \
    >/dev/null 2>"$work/browser.log" || { cat "$work/browser.log" >&2; exit 1; }
  echo "check-report: screenshot $screenshot"
fi
