#!/usr/bin/env bash
# Module allocation (docs/module-allocation.md) against uniform GPTQ and BAQ's
# per-column `global` allocation on the bundled OPT fixture, CPU: one
# parallel-mode job per method (one measurement each, every target), then
# `baq eval` of every output. Module jobs run once per objective
# (--module_objective: normalized, the default, and raw). Prints one line per
# run: target, achieved bits, summed proxy loss, relative loss (module: the
# normalized objective per element, 1 for uniform GPTQ), perplexity, widths.
#
#   bash bench/module_allocation.sh [BAQ=build/tools/cli/baq] [OUT=/tmp/modalloc]
#
# DEVICE=cuda runs the same on a GPU (the numbers then differ: float32 on
# another device). Calibration and evaluation are kept small for a 2-core CPU.
set -euo pipefail
BAQ=${BAQ:-build/tools/cli/baq}
OUT=${OUT:-/tmp/modalloc}
DEVICE=${DEVICE:-cpu}
NSAMPLES=${NSAMPLES:-32}
SEQLEN=${SEQLEN:-512}
MODULE_BITS=${MODULE_BITS:-2,2.5,3,4}
UNIFORM_BITS=${UNIFORM_BITS:-2,3,4}
GLOBAL_BITS=${GLOBAL_BITS:-2,2.5,3,4}
OBJECTIVES=${OBJECTIVES:-normalized raw}
rm -rf "$OUT"
mkdir -p "$OUT"
common=(--model examples/opt-fixture --calib examples/calibration.txt --nsamples "$NSAMPLES"
        --seqlen "$SEQLEN" --mode parallel --device "$DEVICE" --progress=false)
methods=()
for objective in $OBJECTIVES; do
  "$BAQ" quantize "${common[@]}" --allocation module --module_objective "$objective" \
    --bits "$MODULE_BITS" --out "$OUT/module-$objective" > "$OUT/module-$objective.txt"
  methods+=("module-$objective")
done
if [ -n "$UNIFORM_BITS" ]; then
  "$BAQ" quantize "${common[@]}" --method gptq --bits "$UNIFORM_BITS" --out "$OUT/uniform" \
    > "$OUT/uniform.txt"
  methods+=(uniform)
fi
if [ -n "$GLOBAL_BITS" ]; then
  "$BAQ" quantize "${common[@]}" --method baq --allocation global --bits "$GLOBAL_BITS" \
    --out "$OUT/global" > "$OUT/global.txt"
  methods+=(global)
fi
"$BAQ" eval --model examples/opt-fixture --text examples/eval.txt --seqlen "$SEQLEN" \
  --device "$DEVICE" --json > "$OUT/eval-original.json"
for method in "${methods[@]}"; do
  for dir in "$OUT/$method"/bits-*; do
    [ -d "$dir" ] || continue
    "$BAQ" eval --model "$dir" --text examples/eval.txt --seqlen "$SEQLEN" --device "$DEVICE" \
      --json > "$dir.eval.json"
  done
done
python3 - "$OUT" "${methods[@]}" <<'PY'
import collections, glob, json, os, sys
out, methods = sys.argv[1], sys.argv[2:]
base = json.load(open(f"{out}/eval-original.json"))
print(f"original: ppl {base['perplexity']:.4f}")
for method in methods:
    dirs = [d for d in glob.glob(f"{out}/{method}/bits-*") if os.path.isdir(d)]
    for d in sorted(dirs, key=lambda p: float(p.split('-')[-1])):
        rep = json.load(open(f"{d}/quant_report.json"))
        ppl = json.load(open(f"{d}.eval.json"))["perplexity"]
        alloc = rep.get("module_allocation", {})
        rel = sum(s["relative_loss"] for s in alloc.get("solves", [])) or float("nan")
        mw = collections.Counter(m["bits"] for m in alloc.get("modules", []))
        widths = f" modules/width {dict(sorted(mw.items()))}" if mw else ""
        print(f"{method:18s} target {rep['target_bits']:<4g} achieved {rep['achieved_bits']:.4f} "
              f"proxy {rep['total_proxy_loss']:.4f} relative {rel:.4f} ppl {ppl:.4f}{widths}")
PY
