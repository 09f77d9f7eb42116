#!/usr/bin/env bash
# Shared by the bench/device scripts (sourced; they set `log` and define `note` first):
#   timed NAME CMD...   runs CMD, logs wall time, exit code and peak GPU memory (nvidia-smi
#                       sampled every 200 ms, CUDA context included) and the output's last lines;
#                       the output stays in /tmp/NAME.log.
#   digest DIR          sha256 of every output file, quant_report.json without its timings.
#   same DIR1 DIR2      logs IDENTICAL or DIFFER (with the first differences).
# timed NAME CMD...: wall time, exit code, peak memory per GPU, the output's last lines.
timed() {
  local name=$1
  shift
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 200 \
    >"/tmp/mem_$name.csv" 2>/dev/null &
  local smi=$!
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"/tmp/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  kill "$smi" 2>/dev/null
  wait "$smi" 2>/dev/null
  local peak
  peak=$(awk -F', *' '{ if ($2 > m[$1]) m[$1] = $2 } END { for (g in m) printf "gpu%s=%dMiB ", g, m[g] }' \
    "/tmp/mem_$name.csv")
  note "== $name rc=$rc wall_s=$(python3 -c "print(round($t1 - $t0, 2))") peak_mem: $peak"
  tr '\r' '\n' <"/tmp/$name.log" | grep -v '^\s*$' | tail -7 | tee -a "$log"
  return $rc
}
# Digest of an output dir: sha256 of every file but quant_report.json, plus that report without
# its timing fields.
digest() {
  (cd "$1" && find . -type f ! -name quant_report.json -print0 | sort -z | xargs -0 sha256sum)
  find "$1" -name quant_report.json | sort | while read -r f; do
    python3 - "$f" "${f#"$1"/}" <<'EOF'
import hashlib, json, sys
def strip(x):
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if "second" not in k and "time" not in k}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x
d = strip(json.load(open(sys.argv[1])))
# Named by its path inside the output dir, so two output dirs compare equal.
print(hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest(), "report", sys.argv[2])
EOF
  done
}
same() {
  if [[ ! -d $1 || ! -d $2 ]]; then note "MISSING: $1 or $2"; return; fi
  if cmp -s <(digest "$1") <(digest "$2"); then
    note "IDENTICAL ($(digest "$1" | wc -l) files): $1 $2"
  else
    note "DIFFER: $1 $2"
    diff <(digest "$1") <(digest "$2") | head -12 | tee -a "$log"
    local r1 r2
    r1=$(find "$1" -name quant_report.json | sort | head -1)
    r2=$(find "$2" -name quant_report.json | sort | head -1)
    [[ -n $r1 && -n $r2 ]] && diff <(python3 -m json.tool "$r1") <(python3 -m json.tool "$r2") |
      grep -vE '"seconds"|^---|^[0-9,c]+$' | head -12 | tee -a "$log"
  fi
}

