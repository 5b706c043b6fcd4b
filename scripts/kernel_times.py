#!/usr/bin/env python3
"""GPU time per kernel from `ncu --csv --metrics gpu__time_duration.sum`: totals by kernel name, per decoder layer.

usage: kernel_times.py PROFILE.csv LAYERS
The profiled launches are a window of decode steps; the table gives each kernel's count, total microseconds and
microseconds per layer (total / (steps * layers), steps estimated from the most frequent per-layer kernel)."""
import csv
import re
import sys
from collections import defaultdict


def short(name):
    name = re.sub(r"^(<unnamed>|\(anonymous namespace\))::", "", name)
    name = re.sub(r"\(.*", "", name)          # arguments
    name = re.sub(r"^.*::", "", name.split("<")[0]) + ("<" + name.split("<", 1)[1] if "<" in name else "")
    return name[:70]


def main():
    path, layers = sys.argv[1], int(sys.argv[2])
    lines = open(path, errors="replace").read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        sys.exit(f"{path}: no ncu CSV table (see the .err file)")
    total, count = defaultdict(float), defaultdict(int)
    listed = 0
    for row in csv.DictReader(lines[start:]):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(row["Metric Value"].replace(",", ""))
        unit = row.get("Metric Unit", "nsecond")
        ns = v * {"nsecond": 1, "usecond": 1e3, "msecond": 1e6, "second": 1e9}.get(unit, 1)
        k = short(row["Kernel Name"])
        if listed < 30:  # one layer's launches in order, with their grids
            print(f"  {k:60} grid {row.get('Grid Size', ''):>14} block {row.get('Block Size', ''):>12} {ns / 1e3:8.2f} us")
            listed += 1
        total[k] += ns
        count[k] += 1
    if not total:
        sys.exit(f"{path}: no kernel times")
    # Steps from the attention kernels, one launch a layer a step (norms also run outside the steps: bench's warm-up).
    attention = sum(c for k, c in count.items() if "attention" in k)
    steps = max(attention / layers if attention else max(count.values()) / layers, 1e-9)
    all_ns = sum(total.values())
    print(f"{'kernel':70} {'count':>6} {'total us':>10} {'us/layer':>9} {'share':>6}")
    for k in sorted(total, key=total.get, reverse=True):
        print(f"{k:70} {count[k]:>6} {total[k] / 1e3:>10.1f} {total[k] / 1e3 / (steps * layers):>9.2f} {100 * total[k] / all_ns:>5.1f}%")
    print(f"sum of kernel times per decode step (about {steps:.1f} steps): {all_ns / 1e3 / steps:.1f} us")


if __name__ == "__main__":
    main()
