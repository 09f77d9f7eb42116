#!/usr/bin/env bash
# GPU check of measurement reuse, several targets per job and calibration
# shards (issues 11 and 6) with the real `baq` binary on CUDA. Runs ON the
# device after tools/device/build.sh built baq_cli_main (BUILD_DIR). Prints
# one PASS/FAIL line per comparison and the wall times; exit 1 on a FAIL.
#   TARGETS=baq_cli_main SKIP_CTEST=1 bash tools/device/build.sh && bash bench/device/reuse_and_shards.sh
set -uo pipefail
baq=${BUILD_DIR:-build-gpu}/tools/cli/baq
work=${WORK:-/tmp/reuse-and-shards}
rm -rf "$work" && mkdir -p "$work"
# DEVICE=cpu NSAMPLES=8 SEQLEN=64 BUILD_DIR=build: the same check on a CPU build.
common=(--model examples/opt-fixture --calib examples/calibration.txt --nsamples "${NSAMPLES:-16}"
        --seqlen "${SEQLEN:-128}" --device "${DEVICE:-cuda}" --format fake-quant,packed)
fail=0

run() {  # run NAME ARGS...: one quantize, its wall time and last lines on failure
  local name=$1; shift
  local t0=$(date +%s%N)
  if "$baq" quantize "${common[@]}" "$@" --out "$work/$name" >"$work/$name.log" 2>&1; then
    echo "$name: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  else
    echo "FAIL $name:"; tail -5 "$work/$name.log"; fail=1
  fi
}

same() {  # same A B: every file but quant_report.json byte-identical
  local a=$1 b=$2 diffs=0 n=0
  while IFS= read -r f; do
    n=$((n + 1))
    cmp -s "$a/$f" "$b/$f" || { echo "  differs: $f"; diffs=$((diffs + 1)); }
  done < <(cd "$a" && find . -type f ! -name quant_report.json | sort)
  if [[ $n -gt 0 && $diffs -eq 0 ]]; then echo "PASS $a == $b ($n files)"; else echo "FAIL $a vs $b"; fail=1; fi
}

run both --mode parallel --bits 2.5,3 --measurement "$work/m"
run fresh3 --mode parallel --bits 3
run reused25 --mode parallel --bits 2.5 --measurement "$work/m"
grep -h "reusing the measurement" "$work/reused25.log" | head -1
same "$work/both/bits-3" "$work/fresh3"
same "$work/both/bits-2.5" "$work/reused25"
run shards2 --mode sequential --bits 3 --calibration_shards 2
run partials2 --mode sequential --bits 3 --hessian_partials 2
same "$work/shards2" "$work/partials2"
exit $fail
