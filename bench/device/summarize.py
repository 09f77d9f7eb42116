#!/usr/bin/env python3
"""Table of ours (bench/quant_device_bench JSON) against the references (reference_bench.py JSON).

summarize.py OUT_DIR  -> prints a markdown table (run.sh keeps it as OUT_DIR/summary.md).
"""
import os
import sys

from bench_json import load_json

PAIRS = [  # (our benchmark, reference result, what)
    ("HessianAdd", "ref_add_batch", "Hessian, per 2048-token window"),
    ("Gptq4bit", "ref_gptq_4bit", "GPTQ 4-bit, per row, block 128"),
    ("Gptq4bitFusedKernel", "ref_gptq_4bit", "GPTQ 4-bit, per row: fused batch kernel"),
    ("Gptq4bitActOrderG128", "ref_gptq_4bit_actorder_g128", "GPTQ 4-bit, act-order, group 128"),
    ("BaqMeasureR4", "ref_baq_calib_R4", "BAQ pass 1 (measure, R=4)"),
    ("BaqQuantizeMixed", "ref_baq_quant", "BAQ pass 2 (mixed levels)"),
]


def main(out):
    ours = load_json(os.path.join(out, "quant_device_bench.json")) or {"benchmarks": []}
    ref = load_json(os.path.join(out, "reference_bench.json")) or {"results": []}
    ar = load_json(os.path.join(out, "allreduce_device_bench.json")) or {"benchmarks": []}
    mine = {}
    for b in ours["benchmarks"]:
        name, shape, _dev = b["name"].split("/")[:3]
        ms = b["real_time"] / b.get("windows", 1)  # HessianAdd: per window
        mine[(name, shape)] = dict(ms=ms, proxy_loss=b.get("proxy_loss"))
    theirs = {}
    for r in ref["results"]:
        theirs[(r["name"], r["shape"])] = dict(ms=r.get("ms", r.get("ms_per_window")),
                                               proxy_loss=r.get("proxy_loss"))
    shapes = sorted({s for _, s in mine} | {s for _, s in theirs})
    rows = []
    print(f"device: {ours.get('context', {}).get('device', '?')} "
          f"(reference run on {ref.get('device', '?')}, torch {ref.get('torch', '?')})\n")
    print("| shape (out x in) | step | baq ms | reference ms | speed-up | baq proxy loss | ref proxy loss |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for shape in shapes:
        for ours_name, ref_name, what in PAIRS:
            a, b = mine.get((ours_name, shape)), theirs.get((ref_name, shape))
            if not a and not b:
                continue
            am = a["ms"] if a else None
            bm = b["ms"] if b else None
            speed = f"{bm / am:.1f}x" if am and bm else "-"
            fmt = lambda v, p=".1f": "-" if v is None else format(v, p)
            print(f"| {shape} | {what} | {fmt(am)} | {fmt(bm)} | {speed} | "
                  f"{fmt(a and a['proxy_loss'], '.4g')} | {fmt(b and b['proxy_loss'], '.4g')} |")
            rows.append(dict(shape=shape, step=what, baq_ms=am, reference_ms=bm))
    if ar["benchmarks"]:
        print("\n| all-reduce | ms per reduce | bus GB/s |\n|---|---:|---:|")
        for b in ar["benchmarks"]:
            ms = b["real_time"] / b["reduces"]
            busbw = 2 * (b["world"] - 1) / b["world"] * b["bytes"] / (ms * 1e-3) / 1e9
            b.update(ms_per_reduce=ms, bus_GBps=busbw)
            print(f"| {b['name']} | {ms:.2f} | {busbw:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1])
