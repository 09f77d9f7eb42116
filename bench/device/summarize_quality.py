#!/usr/bin/env python3
"""Tables of bench/device/quality.sh: perplexities against the fixtures and the GPTQ reference.

summarize_quality.py --work /tmp/quality --out $OUT
Reads WORK/results.jsonl (quantize and `baq eval` lines), WORK/ref-<model>.json and
WORK/hf-<model>.json (reference_quality.py), each output's quant_report.json and each model's
fixture_info.json; prints markdown and writes OUT/quality.md and OUT/quality.json.
Criteria (issue 5): fp ppl within 0.5 % of fixture_info.json; our GPTQ within 1 % of the
reference at 4/3/2 bits; BAQ's achieved bits equal to the target (|diff| <= 1e-3) and its ppl
<= GPTQ's at the same integer average; fake-quant, packed and gptq outputs of one run giving
the same ppl (our loader; gptq of a BAQ run is a projection, so only GPTQ runs must agree).
"""
import argparse
import json
import os

from bench_json import load_json

FP_TOL = 0.005
REF_TOL = 0.01
BITS_TOL = 1e-3
SAME_PPL_TOL = 1e-3  # relative: two loads of the same weights


def add_table(md, intro, header, align, rows):
    """Appends `intro`, a markdown table of `rows` under `header` and a blank line to `md`;
    nothing when there are no rows (the runs of that kind were not made)."""
    if rows:
        md.append(intro)
        md.append(header)
        md.append(align)
        md += rows + [""]


def rel(a, b):
    return None if a is None or b is None else (a - b) / b


def fmt(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "**NO**"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def pct(x):
    return "–" if x is None else f"{100 * x:+.2f} %"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    lines = []
    try:
        with open(os.path.join(a.work, "results.jsonl")) as f:
            lines = [json.loads(x) for x in f if x.strip()]
    except OSError:
        pass
    models = sorted({x["model"] for x in lines} |
                    {f[4:-5] for f in os.listdir(a.work) if f.startswith("ref-")})
    data = {"models": {}}
    md = []
    checks = []
    for model in models:
        info = load_json(os.path.join(a.work, "models", model, "fixture_info.json")) or {}
        ref = load_json(os.path.join(a.work, f"ref-{model}.json")) or {"runs": []}
        hf = load_json(os.path.join(a.work, f"hf-{model}.json")) or {"runs": []}
        hf_fake = {r["name"]: r for r in hf["runs"] if r["kind"] == "fake"}
        hf_gptq = {r["name"]: r for r in hf["runs"] if r["kind"] == "gptq"}
        hf_packed = {r["name"]: r for r in hf["runs"] if r["kind"] == "packed"}
        ref_runs = {r["name"]: r for r in ref["runs"]}
        beval = {(x["name"], x["format"]): x for x in lines
                 if x["kind"] == "baq_eval" and x["model"] == model}
        runs = []
        for q in [x for x in lines if x["kind"] == "quantize" and x["model"] == model]:
            multi = "," in q["formats"]
            rdir = os.path.join(q["dir"], "fake-quant") if multi else q["dir"]
            rep = load_json(os.path.join(rdir, "quant_report.json")) or {}
            grep = load_json(os.path.join(q["dir"], "gptq", "quant_report.json")) if multi else None
            r = dict(q)
            r["achieved_bits"] = rep.get("achieved_bits")
            r["proxy_loss"] = rep.get("total_proxy_loss")
            if grep:
                r["gptq_format_bits"] = grep.get("achieved_bits")
                r["gptq_format_proxy_loss"] = sum(
                    (l.get("gptq_proxy_loss") or 0) for l in grep.get("layers", []))
            r["ppl"] = hf_fake.get(q["name"], {}).get("ppl")
            r["hf_error"] = hf_fake.get(q["name"], {}).get("error")
            r["ppl_gptq_dequant_py"] = hf_gptq.get(q["name"], {}).get("ppl")
            r["ppl_packed_dequant_py"] = hf_packed.get(q["name"], {}).get("ppl")
            for f in ("fake-quant", "packed", "gptq"):
                e = beval.get((q["name"], f))
                r[f"ppl_baq_eval_{f}"] = e.get("ppl") if e else None
            runs.append(r)
        fp = ref_runs.get("fp", {}).get("ppl")
        fp_baq = next((x.get("ppl") for (n, _), x in beval.items() if n == "fp"), None)
        want = info.get("wikitext2_test_ppl")
        d = {"fixture_ppl": want, "fp_ppl_transformers": fp, "fp_ppl_baq_eval": fp_baq,
             "dtype": ref.get("dtype"), "reference": ref["runs"], "runs": runs,
             "calibration": ref.get("calibration")}
        data["models"][model] = d

        md.append(f"### {model}\n")
        md.append(f"Original ({ref.get('dtype', '?')}): ppl {fmt(fp, 4)} in transformers, "
                  f"{fmt(fp_baq, 4)} with `baq eval --device cuda` (float32); "
                  f"fixture_info.json {fmt(want, 4)} ({pct(rel(fp, want))}).\n")
        if fp is not None and want:
            checks.append((f"{model}: fp ppl matches fixture_info.json (±0.5 %)",
                           abs(rel(fp, want)) <= FP_TOL, f"{fp:.4f} vs {want:.4f}"))
        md.append("| run | method | allocation | target bits | achieved bits | proxy loss | "
                  "ppl (fake-quant, transformers) | baq eval: fake-quant | packed | gptq | "
                  "gptq dequantized in python | BAQ packed decoded in python | quantize s |")
        md.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in runs:
            ppl_cell = fmt(r["ppl"]) if r["rc"] == 0 else f"rc={r['rc']}"
            if r["hf_error"]:
                ppl_cell = "error"
            md.append(f"| {r['name']} | {r['method']} | {r['allocation']} | {r['bits']} | "
                      f"{fmt(r['achieved_bits'], 4)} | {fmt(r['proxy_loss'], 2)} | {ppl_cell} | "
                      f"{fmt(r['ppl_baq_eval_fake-quant'])} | {fmt(r['ppl_baq_eval_packed'])} | "
                      f"{fmt(r['ppl_baq_eval_gptq'])} | {fmt(r['ppl_gptq_dequant_py'])} | "
                      f"{fmt(r['ppl_packed_dequant_py'])} | "
                      f"{fmt(r['wall_s'], 1)} |")
        md.append("")

        by = {(r["method"], r["allocation"], float(r["bits"])): r for r in runs}
        gptq_rows = []
        for b in (4, 3, 2):
            ours = by.get(("gptq", "global", float(b)), {}).get("ppl")
            theirs = ref_runs.get(f"ref-gptq-w{b}", {}).get("ppl")
            if ours is None and theirs is None:
                continue
            ok = None if ours is None or theirs is None else abs(rel(ours, theirs)) <= REF_TOL
            gptq_rows.append(f"| {b} | {fmt(ours)} | {fmt(theirs)} | {pct(rel(ours, theirs))} | "
                             f"{fmt(ok)} |")
            if ok is not None:
                checks.append((f"{model}: GPTQ w{b} within 1 % of the reference", ok,
                               f"{ours:.3f} vs {theirs:.3f} ({pct(rel(ours, theirs))})"))
        add_table(md, "GPTQ, ours against IST-DASLab/gptq (same windows, same evaluation):\n",
                  "| bits | ours | reference | diff | within 1 % |", "|---:|---:|---:|---:|---|",
                  gptq_rows)

        baq_rows = []
        for b in (3.0, 2.5, 2.0):
            r = by.get(("baq", "global", b))
            if not r:
                continue
            ach = r["achieved_bits"]
            exact = None if ach is None else abs(ach - b) <= BITS_TOL
            g = by.get(("gptq", "global", b), {}).get("ppl")
            better = None if g is None or r["ppl"] is None else r["ppl"] <= g
            baq_rows.append(f"| {b:g} | {fmt(ach, 5)} | {fmt(exact)} | {fmt(r['ppl'])} | "
                            f"{fmt(g)} | {fmt(better)} |")
            if exact is not None:
                checks.append((f"{model}: BAQ {b:g} achieves the target bits (±1e-3)", exact,
                               f"{ach:.5f}"))
            if better is not None:
                checks.append((f"{model}: BAQ {b:g} ppl <= GPTQ w{b:g}", better,
                               f"{r['ppl']:.3f} vs {g:.3f}"))
        add_table(md, "BAQ (global allocation) against GPTQ at the same average:\n",
                  "| bits | BAQ achieved | exact | BAQ ppl | GPTQ ppl | BAQ <= GPTQ |",
                  "|---:|---:|---|---:|---:|---|", baq_rows)

        scope_rows = []
        for b in (3.0, 2.5, 2.0):
            cells = []
            for alloc in ("global", "global-raw", "sublayer"):
                r = by.get(("baq", alloc, b))
                cells.append(f"{fmt(r['ppl'])} ({fmt(r['achieved_bits'], 3)} b)" if r else "–")
            if any(c != "–" for c in cells[1:]):
                scope_rows.append(f"| {b:g} | " + " | ".join(cells) + " |")
        add_table(md, "BAQ allocation scopes, ppl (achieved bits):\n",
                  "| target | global | global-raw | sublayer (paper) |", "|---:|---:|---:|---:|",
                  scope_rows)

        for r in runs:
            if "," not in r["formats"] or r["rc"] != 0:
                continue
            vals = {f: r[f"ppl_baq_eval_{f}"] for f in ("fake-quant", "packed", "gptq")}
            base = vals["fake-quant"]
            for f in ("packed", "gptq"):
                if f not in r["formats"]:
                    continue
                if f == "gptq" and r["method"] != "gptq":
                    continue  # a projection to per-module widths: a different model
                v = vals[f]
                ok = None if v is None or base is None else abs(rel(v, base)) <= SAME_PPL_TOL
                checks.append((f"{model}: {r['name']} {f} loads back to the fake-quant ppl "
                               f"(baq eval)", ok, f"{fmt(v)} vs {fmt(base)}"))
            if r["ppl_packed_dequant_py"] is not None and r["ppl"]:
                ok = abs(rel(r["ppl_packed_dequant_py"], r["ppl"])) <= SAME_PPL_TOL
                checks.append((f"{model}: {r['name']} packed decoded in python = fake-quant "
                               f"(transformers)", ok,
                               f"{r['ppl_packed_dequant_py']:.3f} vs {r['ppl']:.3f}"))
            if r["method"] == "gptq" and r["ppl_gptq_dequant_py"] is not None and r["ppl"]:
                ok = abs(rel(r["ppl_gptq_dequant_py"], r["ppl"])) <= SAME_PPL_TOL
                checks.append((f"{model}: {r['name']} gptq dequantized in python = fake-quant "
                               f"(transformers)", ok,
                               f"{r['ppl_gptq_dequant_py']:.3f} vs {r['ppl']:.3f}"))
    md.append("### Done-when checks\n")
    md.append("| check | holds | numbers |")
    md.append("|---|---|---|")
    for name, ok, nums in checks:
        md.append(f"| {name} | {fmt(ok)} | {nums} |")
    data["checks"] = [{"check": c, "holds": ok, "numbers": n} for c, ok, n in checks]
    text = "\n".join(md) + "\n"
    print(text)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "quality.md"), "w") as f:
        f.write(text)
    with open(os.path.join(a.out, "quality.json"), "w") as f:
        json.dump(data, f, indent=1)


if __name__ == "__main__":
    main()
