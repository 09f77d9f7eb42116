#!/usr/bin/env python3
"""Perplexity of module allocations without re-quantizing (OPT fixture, CPU).

In parallel mode a module's quantization at width b is exactly GPTQ at b on
the unquantized model's Hessians, so any per-module allocation is the
uniform GPTQ outputs' layers put together. This script takes uniform
parallel-mode outputs at every candidate width, solves the module knapsack
for an objective (exactly, by the same DP as common/module_allocation.cc, on
the per-layer proxy losses of the reports), writes the composed checkpoint
and runs `baq eval` on it. Used to compare objectives and to test whether an
objective tracks perplexity on random allocations (docs/performance.md).

  build/tools/cli/baq quantize --model examples/opt-fixture \
      --calib examples/calibration.txt --nsamples 32 --seqlen 512 --mode parallel \
      --method gptq --bits 2,3,4,8 --out /tmp/uniform
  python3 bench/module_allocation_compose.py /tmp/uniform normalized@2.5 raw@3 \
      random-normalized2@3 [--no-eval]

Objectives: raw, normalized (what --allocation module minimizes),
normalized-unweighted (without the element weights), random-rawN and
random-normalizedN (that objective with every layer's cost times a random
factor, 10^U(-1.5, 1.5) resp. 10^U(-1, 1), seed N: random feasible
allocations near the budget). OPT tie groups only (q/k/v; the rest alone).
"""
import collections
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys

# The random objectives seed with hash(layer name): fixed only with this.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, "PYTHONHASHSEED": "0"})

CAND = [2, 3, 4, 8]
BAQ = os.environ.get("BAQ", "build/tools/cli/baq")


def load(udir):
    rep = {b: json.load(open(f"{udir}/bits-{b}/quant_report.json")) for b in CAND}
    names = [l["name"] for l in rep[CAND[0]]["layers"]]
    by_name = {b: {l["name"]: l for l in rep[b]["layers"]} for b in CAND}
    loss = {n: [by_name[b][n]["proxy_loss"] for b in CAND] for n in names}
    elem = {n: by_name[CAND[0]][n]["rows"] * by_name[CAND[0]][n]["columns"] for n in names}
    groups = collections.OrderedDict()
    for n in names:
        qkv = n.split(".")[-1] in ("q_proj", "k_proj", "v_proj")
        groups.setdefault(n.rsplit(".", 1)[0] + ".qkv" if qkv else n, []).append(n)
    return names, loss, elem, groups


def reference(l, t):
    """The layer's loss at t: at a candidate, else geometric interpolation."""
    if t <= CAND[0]:
        return l[0]
    for k in range(len(CAND) - 1):
        if CAND[k] <= t <= CAND[k + 1]:
            a = (t - CAND[k]) / (CAND[k + 1] - CAND[k])
            return math.exp2((1 - a) * math.log2(l[k]) + a * math.log2(l[k + 1]))
    return l[-1]


def cost(obj, n, k, t, loss, elem):
    l = loss[n][k]
    if obj == "raw":
        return l
    if obj == "normalized":
        return elem[n] * l / reference(loss[n], t)
    if obj == "normalized-unweighted":
        return l / reference(loss[n], t)
    for prefix, base, spread in (("random-normalized", "normalized", 1), ("random-raw", "raw", 1.5)):
        if obj.startswith(prefix):
            rng = random.Random(int(obj[len(prefix):]) * 1000003 + hash(n) % 1000003)
            return cost(base, n, k, t, loss, elem) * 10 ** rng.uniform(-spread, spread)
    raise SystemExit(f"unknown objective {obj}")


def solve(obj, t, names, loss, elem, groups):
    """Exact knapsack over tie groups: widths per layer."""
    gs = list(groups.values())
    ge = [sum(elem[n] for n in ls) for ls in gs]
    budget = math.floor(t * sum(ge) * (1 + 1e-12))
    unit = 0
    for e in ge:
        for b in CAND:
            unit = math.gcd(unit, e * (b - CAND[0]))
    states = (budget - CAND[0] * sum(ge)) // unit + 1
    cur = [math.inf] * states
    cur[0] = 0.0
    picks = []
    for gi, ls in enumerate(gs):
        nxt, pick = [math.inf] * states, [0] * states
        for k, b in enumerate(CAND):
            w = ge[gi] * (b - CAND[0]) // unit
            c = sum(cost(obj, n, k, t, loss, elem) for n in ls)
            for s in range(w, states):
                if cur[s - w] + c < nxt[s]:
                    nxt[s], pick[s] = cur[s - w] + c, k
        cur = nxt
        picks.append(pick)
    best = -1
    for s in range(states):
        if cur[s] < math.inf and (best < 0 or cur[s] <= cur[best]):
            best = s
    width = {}
    for gi in range(len(gs) - 1, -1, -1):
        k = picks[gi][best]
        best -= ge[gi] * (CAND[k] - CAND[0]) // unit
        for n in gs[gi]:
            width[n] = CAND[k]
    return width


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), f.read()


def compose(udir, width, dst):
    """The uniform outputs' tensors, each layer's weight from its width."""
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(f"{udir}/bits-{CAND[0]}", dst)
    src = {b: read_safetensors(f"{udir}/bits-{b}/model.safetensors") for b in CAND}
    head = src[CAND[0]][0]
    out, chunks, off = {}, [], 0
    for key in (k for k in head if k != "__metadata__"):
        layer = key[: -len(".weight")] if key.endswith(".weight") else None
        h, data = src[width.get(layer, CAND[0])]
        s, e = h[key]["data_offsets"]
        chunks.append(data[s:e])
        out[key] = {"dtype": h[key]["dtype"], "shape": h[key]["shape"], "data_offsets": [off, off + e - s]}
        off += e - s
    if "__metadata__" in head:
        out["__metadata__"] = head["__metadata__"]
    hb = json.dumps(out).encode()
    hb += b" " * (-len(hb) % 8)
    with open(f"{dst}/model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for c in chunks:
            f.write(c)


def main():
    udir, specs = sys.argv[1], [a for a in sys.argv[2:] if not a.startswith("--")]
    evaluate = "--no-eval" not in sys.argv
    names, loss, elem, groups = load(udir)
    total = sum(elem.values())
    for spec in specs:
        obj, t = spec.rsplit("@", 1)
        t = float(t)
        width = solve(obj, t, names, loss, elem, groups)
        bits = sum(elem[n] * width[n] for n in names) / total
        raw = sum(loss[n][CAND.index(width[n])] for n in names)
        rel = sum(cost("normalized", n, CAND.index(width[n]), t, loss, elem) for n in names) / total
        per_kind = collections.OrderedDict()
        for g, ls in groups.items():
            per_kind.setdefault(g.rsplit(".", 1)[-1], []).append(str(width[ls[0]]))
        line = (f"{spec:24s} bits {bits:.4f} proxy {raw:9.3f} relative {rel:.4f} "
                + " ".join(f"{k}:{''.join(v)}" for k, v in per_kind.items()))
        if evaluate:
            dst = f"{udir}/composed"
            compose(udir, width, dst)
            r = subprocess.run([BAQ, "eval", "--model", dst, "--text", "examples/eval.txt", "--seqlen",
                                "512", "--device", "cpu", "--json"], capture_output=True, text=True,
                               check=True)
            line += f" ppl {json.loads(r.stdout)['perplexity']:.4f}"
            shutil.rmtree(dst)
        print(line, flush=True)


if __name__ == "__main__":
    main()
