#!/usr/bin/env python3
"""The first N test examples of each of the 8 datasets (dev where a dataset has no test split) and their zero-shot
prompt files, small enough to carry to the GPU machine for the suite's timing mode (the full splits are not).

Usage: python3 scripts/make_suite_data.py SRC DST N
SRC: the benchmark folder (../shared/data/biomed-nlp-benchmarks); DST: e.g. build/suite-data (ignored by git).
Row files are cut with a TSV reader (MedQA's quoted fields hold newlines); token-per-line files (BC5CDR, NCBI)
after their N-th blank line, which ends a sentence."""
import csv
import os
import shutil
import sys

src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
csv.field_size_limit(1 << 30)
for name in sorted(os.listdir(src)):
    d = os.path.join(src, name)
    if not os.path.isdir(d):
        continue
    split = "test.tsv" if os.path.exists(os.path.join(d, "test.tsv")) else "dev.tsv"
    out = os.path.join(dst, name)
    os.makedirs(out, exist_ok=True)
    shutil.copy(os.path.join(d, "prompt_zeroshot.txt"), out)
    with open(os.path.join(d, split), newline="") as f:
        first = f.readline()
        f.seek(0)
        lines = []
        if "\t" in first and len(first.split("\t")) > 2 or first.split("\t")[0] in ("index", "pmid", ""):
            rows = list(csv.reader(f, delimiter="\t"))[: n + 1]  # the header and n examples
            with open(os.path.join(out, split), "w", newline="") as o:
                csv.writer(o, delimiter="\t", lineterminator="\n").writerows(rows)
            kept = len(rows) - 1
        else:
            blank = 0
            for line in f:
                lines.append(line)
                if not line.strip():
                    blank += 1
                    if blank >= n:
                        break
            with open(os.path.join(out, split), "w") as o:
                o.writelines(lines)
            kept = blank
    print(f"{name}: {kept} examples of {split}")
