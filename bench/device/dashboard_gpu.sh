#!/usr/bin/env bash
# GPU check of the dashboard's metrics (issue 20 item 3): a coordinator and one
# worker on cuda:0 as real processes, a small sequential job, and
#   1. the worker's NVML series (baq_worker_nvml_up 1, GPU memory used > 0,
#      utilization) and both daemons' process memory, scraped from /metrics;
#   2. with a Prometheus binary (PROMETHEUS=/path/to/prometheus, e.g. from the
#      Debian package `prometheus` extracted into /opt/debs), every dashboard
#      panel's query over the job (tools/deploy/check_dashboard_queries.py);
#      only the wire-bytes panels may be empty until the runner feeds them, and
#      the two "RPC errors" panels in a run where nothing fails.
# DEVICE=cpu BUILD_DIR=build NSAMPLES=8 SEQLEN=64: the same on a CPU build (no NVML check).
# MODEL (default examples/opt-fixture), FORMAT (fake-quant), NSAMPLES (32), SEQLEN (256) pick the
# job; REFERENCE=<dir> also checks the output byte for byte against that directory (a local run
# of the same job, e.g. bench/device/data_path.sh with KEEP_OUTPUTS=1).
# Runs ON the device after tools/device/build.sh built the daemons and the CLI:
#   TARGETS="baq_coordinator_main baq_worker_main baq_cli_main" SKIP_CTEST=1 \
#     bash tools/device/build.sh && bash bench/device/dashboard_gpu.sh
# Prints PASS/FAIL lines; exit 1 on a FAIL. Results in $WORK (queries.json).
set -uo pipefail
build=${BUILD_DIR:-build-gpu}
work=${WORK:-/tmp/dashboard-gpu}
rm -rf "$work" && mkdir -p "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cp=$(port); cm=$(port); wp=$(port); wm=$(port)
fail=0
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done' EXIT

"$build/coordinator/baq-coordinator" --listen=127.0.0.1:$cp --data_dir="$work/data" \
  --metrics_listen=127.0.0.1:$cm >"$work/coordinator.log" 2>&1 & pids+=($!)
sleep 1
"$build/worker/baq-worker" --coordinator=127.0.0.1:$cp --listen=127.0.0.1:$wp \
  --devices="${DEVICE:-cuda:0}" --metrics_listen=127.0.0.1:$wm >"$work/worker.log" 2>&1 & pids+=($!)
for _ in $(seq 60); do
  curl -sf 127.0.0.1:$cm/metrics | grep -q '^baq_coordinator_workers 1' && break; sleep 1
done
if [[ -n "${PROMETHEUS:-}" ]]; then
  pp=$(port)
  cat >"$work/prometheus.yml" <<YAML
global: {scrape_interval: 2s, scrape_timeout: 2s}
scrape_configs:
  - job_name: baq-coordinator
    static_configs: [{targets: ['127.0.0.1:$cm'], labels: {namespace: baq}}]
  - job_name: baq-worker
    static_configs: [{targets: ['127.0.0.1:$wm'], labels: {namespace: baq}}]
YAML
  "$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address=127.0.0.1:$pp --log.level=warn >"$work/prometheus.log" 2>&1 & pids+=($!)
  sleep 5
fi
t0=$(date +%s)
"$build/tools/cli/baq" submit --coordinator=127.0.0.1:$cp --wait --request_id=dash-gpu \
  --out="$work/out" --model="${MODEL:-examples/opt-fixture}" --calib=examples/calibration.txt \
  --bits=3 --method=baq --mode=sequential --nsamples="${NSAMPLES:-32}" --seqlen="${SEQLEN:-256}" \
  --format="${FORMAT:-fake-quant}" >"$work/submit.log" 2>&1 ||
  { echo "FAIL job:"; tail -5 "$work/submit.log"; fail=1; }
tail -1 "$work/submit.log"
echo "job wall: $(( $(date +%s) - t0 )) s"
if [[ -n "${REFERENCE:-}" ]]; then  # the same job's local output, e.g. data_path.sh KEEP_OUTPUTS=1
  log=$work/same.log
  note() { echo "$*" | tee -a "$log"; }
  source "$(dirname "$0")/lib.sh"
  if same "$REFERENCE" "$work/out" | grep -q '^IDENTICAL'; then
    echo "PASS output byte-identical to $REFERENCE"
  else
    echo "FAIL output differs from $REFERENCE:"; cat "$log"; fail=1
  fi
fi
curl -s 127.0.0.1:$wm/metrics >"$work/worker.metrics"
curl -s 127.0.0.1:$cm/metrics >"$work/coordinator.metrics"
grep -E '^(baq_worker_nvml_up|baq_worker_gpu_|process_resident|baq_process_peak)' "$work/worker.metrics"
grep -E '^(process_resident|baq_process_peak|baq_coordinator_data_dir|baq_coordinator_job_)' "$work/coordinator.metrics"
allow='Wire|RPC errors'
if [[ "${DEVICE:-cuda:0}" == cpu ]]; then
  allow="$allow|GPU"
elif grep -q '^baq_worker_nvml_up 1' "$work/worker.metrics" &&
   awk '/^baq_worker_gpu_memory_used_bytes\{device="cuda:0"\}/ { exit !($2 > 0) }' "$work/worker.metrics"; then
  echo "PASS NVML: cuda:0 memory and utilization exported"
else
  echo "FAIL NVML (worker log):"; grep -i 'gpu metrics' "$work/worker.log"; fail=1
fi
if [[ -n "${PROMETHEUS:-}" ]]; then
  sleep 5
  if python3 tools/deploy/check_dashboard_queries.py --prometheus http://127.0.0.1:$pp \
       --start $((t0 - 10)) --end $(date +%s) --step 2s --rate-interval 10s \
       --allow-empty "$allow" --json "$work/queries.json" >"$work/queries.txt"; then
    echo "PASS every dashboard query returned data ($(tail -1 "$work/queries.txt"))"
  else
    echo "FAIL dashboard queries:"; grep -E '^(EMPTY|ERROR)' "$work/queries.txt"; fail=1
  fi
fi
exit $fail
