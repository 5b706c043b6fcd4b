#!/usr/bin/env bash
# Copies the first 64 test examples of each of the eight datasets, with their zero-shot prompt files, from the
# benchmark (../shared/data/biomed-nlp-benchmarks) into tests/fixtures/benchmark-head/, where the trained fixture
# model is evaluated in CI. TSV records are rewritten with Python's csv conventions (the benchmark's own).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/data/biomed-nlp-benchmarks}
dst=tests/fixtures/benchmark-head
rm -rf "$dst" && mkdir -p "$dst"
python3 - "$src" "$dst" <<'PY'
import csv, os, shutil, sys
src, dst = sys.argv[1:]
N = 64
csv.field_size_limit(1 << 30)
for folder in sorted(os.listdir(src)):
    if not os.path.isdir(os.path.join(src, folder)):
        continue
    os.makedirs(os.path.join(dst, folder))
    shutil.copy(os.path.join(src, folder, "prompt_zeroshot.txt"), os.path.join(dst, folder))
    with open(os.path.join(src, folder, "test.tsv"), encoding="utf-8", newline="") as f:
        text = f.read()
    out = os.path.join(dst, folder, "test.tsv")
    if folder in ("BC5CDR_Chemical", "NCBI_Disease"):  # CoNLL: sentences separated by blank lines
        sentences = [s for s in text.replace("\r\n", "\n").split("\n\n") if s.strip()]
        with open(out, "w", encoding="utf-8") as f:
            f.write("\n\n".join(s.strip("\n") for s in sentences[:N]) + "\n")
        continue
    rows = list(csv.reader(text.splitlines(keepends=True), delimiter="\t"))
    with open(out, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        for r in rows[:N + 1]:
            w.writerow(r)
    print(folder, min(N, len(rows) - 1))
PY
du -sh "$dst"
