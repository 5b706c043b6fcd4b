#!/usr/bin/env bash
# At the end of a device call: at most 8 files come back from $OUT, so past 7 they come back as one archive,
# $OUT/all.tar.gz (tar xzf it here).
OUT=${OUT:-gpu-out}
if [ "$(find "$OUT" -type f | wc -l)" -gt 7 ]; then
  tar czf /tmp/gpu-out.tar.gz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/gpu-out.tar.gz "$OUT/all.tar.gz"
fi
