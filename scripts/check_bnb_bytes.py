#!/usr/bin/env python3
"""Byte-level check of `biomedq quantize` against an independent reference written from the bitsandbytes format
facts (shared/specs/quantization.md) in torch. Run where torch + safetensors are installed (the GPU machine):

    python3 scripts/check_bnb_bytes.py BIOMEDQ_BINARY CHECKPOINT_DIR WORK_DIR

Quantizes CHECKPOINT_DIR with biomedq (nf4 + double quant, fp4 without, int8), recomputes every quantized tensor
here from the original weights, and prints the share of identical codes and the exactness of every other field.
"""
import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
FP4 = [0, 0.0625, 8, 12, 4, 6, 2, 3]
FP4_THRESHOLDS = [0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333]


def dynamic_map_signed():
    """bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), from its definition."""
    data = []
    for i in range(7):
        items = 2 ** i + 1
        b = torch.linspace(0.1, 1, items)
        means = ((b[:-1] + b[1:]) / 2.0)
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0.0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def quant4(w, kind, blocksize=64):
    x = w.float().flatten()
    n = x.numel()
    pad = (-n) % blocksize
    xb = torch.cat([x, torch.zeros(pad)]).view(-1, blocksize)
    absmax = xb.abs().max(dim=1).values
    scaled = (xb * (1.0 / absmax)[:, None]).flatten()[:n]
    if kind == "nf4":
        code = torch.tensor(NF4, dtype=torch.float32)
        mids = (code[:-1] + code[1:]) / 2
        idx = torch.searchsorted(mids, scaled.contiguous(), side="left")  # number of midpoints strictly below x
    else:
        mag = scaled.abs()
        t = torch.tensor(FP4_THRESHOLDS, dtype=torch.float32)
        level = torch.searchsorted(t, mag.contiguous(), side="left")  # 0..7 by magnitude bucket
        # bucket -> FP4 bit pattern for magnitudes 0, .0625, 2, 3, 4, 6, 8, 12 (/12): 0,1,6,7,4,5,2,3
        to_bits = torch.tensor([0, 1, 6, 7, 4, 5, 2, 3])
        idx = to_bits[level] + 8 * (scaled < 0).long()
    idx = idx.to(torch.uint8)
    if n % 2:
        idx = torch.cat([idx, torch.zeros(1, dtype=torch.uint8)])
    packed = (idx[0::2] << 4) | idx[1::2]
    return packed, absmax


def double_quant(absmax, dmap):
    offset = torch.tensor(absmax.double().mean().item(), dtype=torch.float32)
    v = absmax - offset
    pad = (-v.numel()) % 256
    vb = torch.cat([v, torch.zeros(pad)]).view(-1, 256)
    a2 = vb.abs().max(dim=1).values
    y = (vb / a2[:, None]).flatten()[: v.numel()]
    q = (y[:, None] - dmap[None, :]).abs().argmin(dim=1).to(torch.uint8)
    return q, a2, float(offset)


def main(binary, ckpt, work):
    orig = {}
    for f in sorted(os.listdir(ckpt)):
        if f.endswith(".safetensors"):
            orig.update(load_file(os.path.join(ckpt, f)))
    dmap = dynamic_map_signed()
    ok = True
    for prec, dq in (("nf4", "on"), ("fp4", "off"), ("int8", "on")):
        out = os.path.join(work, f"{prec}-{dq}")
        subprocess.run([binary, "quantize", "--model", ckpt, "--precision", prec, "--double-quant", dq, "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        q = {}
        for f in sorted(os.listdir(out)):
            if f.endswith(".safetensors"):
                q.update(load_file(os.path.join(out, f)))
        same, total, exact = 0, 0, []
        for name in sorted(k for k in orig if k.endswith("_proj.weight") and ".layers." in k):
            w = orig[name]
            if prec == "int8":
                wf = w.float()
                scb = wf.abs().max(dim=1).values
                cb = torch.round(wf * 127 / scb[:, None]).to(torch.int8)
                exact.append(torch.equal(q[name[:-len("weight")] + "SCB"], scb))
                same += (q[name] == cb).sum().item()
                total += cb.numel()
                continue
            packed, absmax = quant4(w, prec)
            got = q[name].flatten()
            same += (got == packed).sum().item()  # bytes: two codes each
            total += packed.numel()
            if dq == "on":
                qa, a2, off = double_quant(absmax, dmap)
                st = json.loads(bytes(q[name + ".quant_state.bitsandbytes__" + prec].tolist()).decode())
                exact += [torch.equal(q[name + ".nested_quant_map"], dmap), torch.equal(q[name + ".absmax"], qa),
                          torch.equal(q[name + ".nested_absmax"], a2), st["nested_offset"] == off]
            else:
                exact.append(torch.equal(q[name + ".absmax"], absmax))
        print(f"{prec} dq={dq}: identical {'codes' if prec == 'int8' else 'packed bytes'} {same}/{total} "
              f"({100.0 * same / total:.4f}%), other fields exact: {sum(exact)}/{len(exact)}")
        ok &= all(exact) and same / total > 0.999
    print("BYTE CHECK", "PASSED" if ok else "FAILED")


if __name__ == "__main__":
    main(*sys.argv[1:4])
