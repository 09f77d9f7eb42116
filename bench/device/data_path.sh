#!/usr/bin/env bash
# The distributed data path against local mode on ONE GPU (issue 16 item 5). Runs ON the GPU
# machine after tools/device/build.sh with TARGETS="baq_cli_main baq_worker_main
# baq_coordinator_main":
#   MODEL=/tmp/llama7b NAME=7b bash bench/device/data_path.sh
# One job (sequential, BAQ 3 bits, packed; NSAMPLES x SEQLEN calibration windows, default
# 128 x 2048) in five configurations, in this order:
#   local      baq quantize --device cuda:0
#   svc1       baq-coordinator + one baq-worker (--devices=cuda:0), baq submit --wait
#   local_s2   baq quantize --device cuda:0 --calibration_shards 2 (svc2's byte reference)
#   svc2       baq-coordinator + two baq-workers sharing cuda:0 (one shard each)
# For each: wall time, peak RSS of every process (VmHWM), peak GPU memory, and for the service the
# coordinator's "resident shards: ... over the wire" line and the workers' byte counters.
# svc1 must be byte-identical to local and svc2 to local_s2. Log: $OUT/data_path_$NAME.log.
# CONFIGS (comma-separated; default local,svc1,local_s2,svc2) picks the configurations. TRACE=1:
# the daemons write --trace_file timelines, summarized per stage (tools/trace/summarize_trace.py);
# TRACE_LOCAL=1 traces the local runs too. KEEP_OUTPUTS=1 keeps the outputs in /tmp/dp_<config>.
set -uo pipefail
OUT=${OUT:-$PWD/out}
B=${BUILD_DIR:-build-gpu}
NAME=${NAME:-run}
MODEL=${MODEL:?MODEL=<checkpoint dir>}
export LD_LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log="$OUT/data_path_$NAME.log"
BAQ=$B/tools/cli/baq
ROOT=$PWD
note() { echo "$*" | tee -a "$log"; }
source "$(dirname "$0")/lib.sh"

JOB=(--model "$MODEL" --calib "$ROOT/examples/calibration.txt" --method baq --bits 3
     --format packed --nsamples "${NSAMPLES:-128}" --seqlen "${SEQLEN:-2048}")
# Peak RSS of a command run in the foreground (its children's ru_maxrss, KiB -> MiB).
rss() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
print("peak_rss_MiB=%d" % (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024))
sys.exit(rc)
PY
}
PIDS=()
start_service() {  # start_service DEVICES... (one worker per argument)
  rm -rf /tmp/cdata && mkdir -p /tmp/cdata
  rm -f /tmp/dp_trace_*.json
  local trace=()
  [[ ${TRACE:-0} == 1 ]] && trace=(--trace_file=/tmp/dp_trace_coordinator.json)
  "$B/coordinator/baq-coordinator" --listen=127.0.0.1:7300 --data_dir=/tmp/cdata \
    --min_workers=$# "${trace[@]}" >/tmp/coordinator.log 2>&1 &
  PIDS=($!)
  sleep 1
  local port=7301
  for d in "$@"; do
    [[ ${TRACE:-0} == 1 ]] && trace=(--trace_file=/tmp/dp_trace_worker_$port.json)
    "$B/worker/baq-worker" --coordinator=127.0.0.1:7300 --listen=127.0.0.1:$port --devices="$d" \
      --metrics_listen=127.0.0.1:$((port + 100)) "${trace[@]}" >"/tmp/worker_$port.log" 2>&1 &
    PIDS+=($!)
    port=$((port + 1))
  done
  sleep 3
}
stop_service() {
  local name=$1 port=7401 line=""
  for p in "${PIDS[@]}"; do
    line+="pid$p=$(awk '/VmHWM/ {printf "%dMiB", $2 / 1024}' /proc/"$p"/status 2>/dev/null) "
  done
  note "-- $name peak RSS (coordinator first): $line"
  for ((i = 1; i < ${#PIDS[@]}; i++)); do
    python3 -c "import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" \
      "http://127.0.0.1:$port/metrics" 2>/dev/null | grep -E '^baq_worker_bytes_(sent|received)_total' |
      sed "s/^/   worker$i /" | tee -a "$log"
    port=$((port + 1))
  done
  grep -E 'resident shards|calibration shards|worker lost' /tmp/coordinator.log | tee -a "$log"
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [[ ${TRACE:-0} == 1 ]]; then
    python3 tools/trace/summarize_trace.py /tmp/dp_trace_*.json --top 12 2>&1 | tee -a "$log"
  fi
  grep -iE 'error|fail' /tmp/coordinator.log /tmp/worker_*.log | head -5 | tee -a "$log"
  rm -f /tmp/worker_*.log
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$log"
CONFIGS=${CONFIGS:-local,svc1,local_s2,svc2}
want() { [[ ,$CONFIGS, == *,$1,* ]]; }
rm -rf /tmp/dp_*
# TRACE_LOCAL=1: local runs write their own timeline too, summarized like the daemons' (a
# traced `baq quantize` on CUDA synchronizes at every span's end, so its wall time is not the
# untraced one).
local_trace() {  # local_trace NAME
  [[ ${TRACE_LOCAL:-0} == 1 ]] && echo "--trace_file=/tmp/dp_trace_$1.json"
}
summarize_local() {  # summarize_local NAME
  [[ ${TRACE_LOCAL:-0} == 1 && -f /tmp/dp_trace_$1.json ]] &&
    python3 tools/trace/summarize_trace.py "/tmp/dp_trace_$1.json" --top 12 2>&1 | tee -a "$log"
  return 0
}
want local && timed "${NAME}_local" rss "$BAQ" quantize "${JOB[@]}" --device cuda:0 --out /tmp/dp_local \
  $(local_trace local) && summarize_local local
if want svc1; then
start_service cuda:0
timed "${NAME}_svc1" "$BAQ" submit --coordinator=127.0.0.1:7300 "${JOB[@]}" --out /tmp/dp_svc1 --wait
stop_service "${NAME}_svc1"
same /tmp/dp_local /tmp/dp_svc1
fi
want local_s2 && timed "${NAME}_local_s2" rss "$BAQ" quantize "${JOB[@]}" --device cuda:0 --calibration_shards 2 \
  --out /tmp/dp_local_s2 $(local_trace local_s2) && summarize_local local_s2
if want svc2; then
start_service cuda:0 cuda:0
timed "${NAME}_svc2" "$BAQ" submit --coordinator=127.0.0.1:7300 "${JOB[@]}" --out /tmp/dp_svc2 --wait
stop_service "${NAME}_svc2"
same /tmp/dp_local_s2 /tmp/dp_svc2
fi
# KEEP_OUTPUTS=1 keeps /tmp/dp_<config> (e.g. as REFERENCE for dashboard_gpu.sh).
[[ ${KEEP_OUTPUTS:-0} == 1 ]] || rm -rf /tmp/dp_*
