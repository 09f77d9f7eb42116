#!/usr/bin/env bash
# Per-stage profile of a GPU run (issue 22 item 1, issue 16 item 1; docs/performance.md
# "Profiling a run"). Runs ON the GPU machine after tools/device/build.sh in the same call, with
# at least TARGETS="baq_cli_main baq_worker_main baq_coordinator_main":
#   STEPS=local,sync,nsys bash bench/device/profile.sh
# Steps (STEPS, comma-separated; default local,sync,nsys):
#   local    `baq quantize --trace_file` of the random LLaMA-7B shape (PROFILE_BLOCKS blocks,
#            default 8; 128 x 2048 calibration, BAQ 3 bits, packed) on cuda:0: host-time spans.
#   sync     the same with --trace_cuda_sync: spans end with a device synchronize, so each
#            stage's span is its device time (the run itself is slower).
#   nsys     the same under Nsight Systems if `nsys` is on PATH (NVTX ranges of the same spans,
#            domain "baq"), plus `nsys stats` (NVTX, NVTX GPU projection, kernels, memcpy).
#   service  baq-coordinator + two baq-workers on cuda:0 (SVC_BLOCKS blocks, default 2: sequential
#            service mode moves every boundary's 4.3 GB of activations through the coordinator), each
#            with --trace_file; `baq submit --wait`; traces merged into one file.
# Output in $OUT: *.trace.json, *.summary.md (tools/trace/summarize_trace.py), profile.log,
# and for nsys: baq7b.nsys-rep (if small enough to come back) and nsys_*.csv.
set -uo pipefail
OUT=${OUT:-$PWD/out}
B=${BUILD_DIR:-build-gpu}
STEPS=${STEPS:-local,sync,nsys}
N=${PROFILE_BLOCKS:-8}
export LD_LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
mkdir -p "$OUT"
log="$OUT/profile.log"
BAQ=$B/tools/cli/baq
SUM="python3 tools/trace/summarize_trace.py"
note() { echo "$*" | tee -a "$log"; }
step() { [[ ,$STEPS, == *,$1,* ]]; }
run() {  # run NAME CMD...: wall time and exit code into the log
  local name=$1 t0 t1 rc
  shift
  t0=$(date +%s.%N)
  "$@" >"/tmp/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  note "== $name rc=$rc wall_s=$(python3 -c "print(round($t1 - $t0, 2))")"
  tail -4 "/tmp/$name.log" | tee -a "$log"
  return $rc
}

note "== $(date -u +%FT%TZ) $(git rev-parse --short=12 HEAD 2>/dev/null) $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
rm -rf /tmp/llama7b
run make_7b python3 tools/scale/make_random_model.py --out /tmp/llama7b --hidden 4096 \
  --intermediate 11008 --heads 32 --blocks "$N"
S=(--model /tmp/llama7b --calib "$PWD/examples/calibration.txt" --method baq --bits 3
   --format packed --nsamples 128 --seqlen 2048 --device cuda:0 --progress=false)

if step local; then
  rm -rf /tmp/p7b_local
  run local "$BAQ" quantize "${S[@]}" --out /tmp/p7b_local --trace_file="$OUT/local.trace.json"
  $SUM "$OUT/local.trace.json" --per-block >"$OUT/local.summary.md" && cat "$OUT/local.summary.md" >>"$log"
fi
if step sync; then
  rm -rf /tmp/p7b_sync
  run sync "$BAQ" quantize "${S[@]}" --out /tmp/p7b_sync --trace_file="$OUT/sync.trace.json" \
    --trace_cuda_sync
  $SUM "$OUT/sync.trace.json" --per-block >"$OUT/sync.summary.md" && cat "$OUT/sync.summary.md" >>"$log"
fi
if step nsys; then
  if command -v nsys >/dev/null; then
    rm -rf /tmp/p7b_nsys
    run nsys nsys profile -t cuda,nvtx,osrt -o /tmp/baq7b --force-overwrite true \
      "$BAQ" quantize "${S[@]}" --out /tmp/p7b_nsys
    for r in nvtx_sum nvtx_gpu_proj_sum cuda_gpu_kern_sum cuda_gpu_mem_time_sum; do
      nsys stats -q -r "$r" -f csv -o "$OUT/nsys" /tmp/baq7b.nsys-rep >>"$log" 2>&1 ||
        note "nsys stats -r $r failed (older nsys? try nvtxsum/gpukernsum)"
    done
    cp /tmp/baq7b.nsys-rep "$OUT/" 2>/dev/null
  else
    note "nsys not on PATH: no Nsight profile (the trace files above still hold the stages)"
  fi
fi
if step service; then
  n=${SVC_BLOCKS:-2}
  rm -rf /tmp/llama7b_svc /tmp/cdata /tmp/p7b_svc && mkdir -p /tmp/cdata
  run make_7b_svc python3 tools/scale/make_random_model.py --out /tmp/llama7b_svc --hidden 4096 \
    --intermediate 11008 --heads 32 --blocks "$n"
  "$B/coordinator/baq-coordinator" --listen=127.0.0.1:7400 --data_dir=/tmp/cdata --min_workers=2 \
    --trace_file="$OUT/coordinator.trace.json" >/tmp/coordinator.log 2>&1 &
  PIDS=($!)
  sleep 1
  for port in 7401 7402; do
    "$B/worker/baq-worker" --coordinator=127.0.0.1:7400 --listen=127.0.0.1:$port --devices=cuda:0 \
      --trace_file="$OUT/w$port.trace.json" >"/tmp/worker_$port.log" 2>&1 &
    PIDS+=($!)
  done
  sleep 5
  run service "$BAQ" submit --coordinator=127.0.0.1:7400 --model /tmp/llama7b_svc \
    --calib "$PWD/examples/calibration.txt" --method baq --bits 3 --format packed \
    --nsamples 128 --seqlen 2048 --out /tmp/p7b_svc --wait
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done  # Traces are written at shutdown.
  $SUM "$OUT/coordinator.trace.json" "$OUT"/w74*.trace.json --per-block \
    --merge "$OUT/service.merged.trace.json" >"$OUT/service.summary.md" &&
    cat "$OUT/service.summary.md" >>"$log"
fi
rm -rf /tmp/llama7b /tmp/llama7b_svc /tmp/p7b_*
