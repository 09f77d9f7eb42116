#!/usr/bin/env python3
"""Times the public reference codes per layer, as bench/quant_device_bench.cc times ours.

References (fetched by tools/device/prepare.sh into .devdeps/ref/, never committed):
  IST-DASLab/gptq      gptq.py + quant.py        GPTQ.fasterquant (blocksize 128, 4-bit, per row)
  CSU-ModelCompression/BAQ gptq_baq.py + quant_baq.py  fasterquant_calib (pass 1, R_ref = 4)
                                                   and fasterquant (pass 2), blocksize 1 as
                                                   the authors run it.
Same shapes, weights (std 0.02) and Hessian construction as our bench (not the same random
numbers: different generators); TF32 off as both references set it. Prints a table and writes
JSON:  reference_bench.py --ref .devdeps/ref --shapes 4096x4096,11008x4096 --out ref.json
"""
import argparse
import contextlib
import io
import json
import statistics
import sys
import time
import types

import torch


def fake_transformers():
    # The references only test isinstance(layer, transformers.Conv1D); avoid importing
    # (and depending on the version of) the real package.
    mod = types.ModuleType("transformers")
    mod.Conv1D = type("Conv1D", (torch.nn.Module,), {})
    sys.modules["transformers"] = mod


def make_layer(rows, cols, dev):
    torch.manual_seed(0)
    w = torch.randn(rows, cols, device=dev) * 0.02
    scale = torch.rand(1, cols, device=dev) + 0.1
    xs = []
    for _ in range(8):
        x = torch.randn(2048, cols, device=dev)
        xs.append((x + x.roll(1, 1) * 0.5) * scale)
    return w, xs


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the references print per layer
            fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def proxy_loss(w, q, h):
    e = (w - q).double()
    return float(torch.sum((e @ h.double()) * e))


def bench_shape(rows, cols, dev, repeats):
    import gptq as ist_gptq
    import quant as ist_quant
    import gptq_baq
    import quant_baq

    w, xs = make_layer(rows, cols, dev)
    results = []

    def new_layer():
        layer = torch.nn.Linear(cols, rows, bias=False, device=dev)
        layer.weight.data.copy_(w)
        return layer

    # Hessian: the reference's add_batch (float32 running mean), per 2048-token window.
    g = ist_gptq.GPTQ(new_layer())
    for x in xs[:2]:
        g.add_batch(x, None)  # warm-up
    g.H.zero_(); g.nsamples = 0
    t = timed(lambda: [g.add_batch(x, None) for x in xs], repeats)
    h = g.H.clone()
    results.append(dict(name="ref_add_batch", ms_per_window=1e3 * statistics.median(t) / len(xs)))

    def run_gptq():
        gq = ist_gptq.GPTQ(new_layer())
        gq.H = h.clone()
        gq.quantizer = ist_quant.Quantizer()
        gq.quantizer.configure(4, perchannel=True, sym=False, mse=False)
        gq.fasterquant(blocksize=128, percdamp=0.01, groupsize=-1, actorder=False)
        return gq.layer.weight.data

    def run_gptq_ordered():
        gq = ist_gptq.GPTQ(new_layer())
        gq.H = h.clone()
        gq.quantizer = ist_quant.Quantizer()
        gq.quantizer.configure(4, perchannel=True, sym=False, mse=False)
        gq.fasterquant(blocksize=128, percdamp=0.01, groupsize=128, actorder=True)
        return gq.layer.weight.data

    def measure(name, fn, n, with_loss=True):
        try:
            t = timed(fn, n)
            r = dict(name=name, ms=1e3 * statistics.median(t), runs_ms=[1e3 * x for x in t])
            if with_loss:
                r["proxy_loss"] = proxy_loss(w, fn(), h)
        except Exception as e:  # keep the other measurements
            r = dict(name=name, error=repr(e))
            print(f"{name}: {e!r}", file=sys.stderr)
        results.append(r)

    for name, fn in (("ref_gptq_4bit", run_gptq), ("ref_gptq_4bit_actorder_g128", run_gptq_ordered)):
        try:
            fn()  # warm-up: cuSOLVER / cuBLAS handles, kernel loading
        except Exception:
            pass
        measure(name, fn, repeats)

    containers = {}

    def run_baq_calib():
        gb = gptq_baq.GPTQ(new_layer())
        gb.H = h.clone()
        gb.quantizer = quant_baq.Quantizer()
        gb.quantizer.configure(4, perchannel=True, sym=False, mse=False)
        containers.update(R_aver={"value": 0.0}, ele_sum={"value": 0.0},
                          R_record={"value": torch.zeros(1, 6)}, gain={"value": []},
                          loss={"value": []})
        gb.fasterquant_calib(blocksize=1, percdamp=0.01, layer_idx=0, col_idx=0, R_ref=4,
                             R_aver_container=containers["R_aver"],
                             ele_sum_container=containers["ele_sum"],
                             R_record_container=containers["R_record"],
                             Gain_vec_container=containers["gain"],
                             loss_vec_container=containers["loss"])
        return gb.layer.weight.data

    def run_baq_quant():
        gb = gptq_baq.GPTQ(new_layer())
        gb.H = h.clone()
        gb.quantizer = quant_baq.Quantizer()
        gb.quantizer.configure(4, perchannel=True, sym=False, mse=False)
        gb.fasterquant(blocksize=1, percdamp=0.01, layer_idx=0, col_idx=0, R_ref=4,
                       R_aver_container={"value": 0.0}, ele_sum_container={"value": 0.0},
                       R_record_container={"value": torch.zeros(1, 6)},
                       Gain_vec_container={"value": []}, Ratio_geo_ari=torch.ones(1, 6),
                       loss_vec_tensor=containers["loss"]["value"])
        return gb.layer.weight.data

    # BAQ's column loop is long: no separate warm-up (the GPTQ runs warmed the device up);
    # the proxy-loss call of pass 1 leaves the per-column losses pass 2 reads.
    measure("ref_baq_calib_R4", run_baq_calib, max(1, repeats - 1))
    measure("ref_baq_quant", run_baq_quant, max(1, repeats - 1), with_loss=False)
    for r in results:
        r["shape"] = f"{rows}x{cols}"
    return results


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True, help="folder holding gptq/ and baq/ reference sources")
    p.add_argument("--shapes", default="4096x4096,11008x4096")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="reference_bench.json")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    fake_transformers()
    sys.path[:0] = [f"{a.ref}/gptq", f"{a.ref}/baq"]
    dev = torch.device("cuda")
    out = dict(device=torch.cuda.get_device_name(0), torch=torch.__version__, results=[])
    for s in a.shapes.split(","):
        rows, cols = (int(v) for v in s.split("x"))
        out["results"] += bench_shape(rows, cols, dev, a.repeats)
        torch.cuda.empty_cache()
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"reference codes on {out['device']} (torch {out['torch']})")
    for r in out["results"]:
        if "error" in r:
            print(f"{r['shape']:>12} {r['name']:<30} ERROR {r['error']}")
            continue
        val = r.get("ms", r.get("ms_per_window"))
        unit = "ms" if "ms" in r else "ms/window"
        print(f"{r['shape']:>12} {r['name']:<30} {val:10.1f} {unit:<10} "
              f"proxy_loss={r.get('proxy_loss', float('nan')):.6g}")


if __name__ == "__main__":
    main()
