#!/usr/bin/env bash
# Module allocation (docs/module-allocation.md) against uniform GPTQ on the
# bundled OPT fixture, CPU: one parallel-mode job per method over the targets
# (one measurement each), then `baq eval` of every output. Prints one line per
# run: target, achieved bits, summed proxy loss, perplexity, widths.
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
rm -rf "$OUT"
mkdir -p "$OUT"
common=(--model examples/opt-fixture --calib examples/calibration.txt --nsamples "$NSAMPLES"
        --seqlen "$SEQLEN" --mode parallel --device "$DEVICE" --progress=false)
"$BAQ" quantize "${common[@]}" --allocation module --bits "$MODULE_BITS" --out "$OUT/module" \
  > "$OUT/module.txt"
"$BAQ" quantize "${common[@]}" --method gptq --bits "$UNIFORM_BITS" --out "$OUT/uniform" \
  > "$OUT/uniform.txt"
"$BAQ" eval --model examples/opt-fixture --text examples/eval.txt --seqlen "$SEQLEN" \
  --device "$DEVICE" --json > "$OUT/eval-original.json"
for dir in "$OUT"/module/bits-* "$OUT"/uniform/bits-*; do
  "$BAQ" eval --model "$dir" --text examples/eval.txt --seqlen "$SEQLEN" --device "$DEVICE" \
    --json > "$dir.eval.json"
done
python3 - "$OUT" <<'EOF'
import collections, glob, json, os, sys
out = sys.argv[1]
base = json.load(open(f"{out}/eval-original.json"))
print(f"original: ppl {base['perplexity']:.4f}")
for method in ("uniform", "module"):
    dirs = [d for d in glob.glob(f"{out}/{method}/bits-*") if os.path.isdir(d)]
    for d in sorted(dirs, key=lambda p: float(p.split('-')[-1])):
        rep = json.load(open(f"{d}/quant_report.json"))
        ppl = json.load(open(f"{d}.eval.json"))["perplexity"]
        widths = collections.Counter(l["gptq_bits"] or round(l["bits"]) for l in rep["layers"])
        mods = rep.get("module_allocation", {}).get("modules", [])
        mw = collections.Counter(m["bits"] for m in mods)
        print(f"{method:8s} target {rep['target_bits']:<4g} achieved {rep['achieved_bits']:.4f} "
              f"proxy {rep['total_proxy_loss']:.4f} ppl {ppl:.4f} "
              f"layers/width {dict(sorted(widths.items()))} modules/width {dict(sorted(mw.items()))}")
EOF
