#!/usr/bin/env bash
# Runs ON a 2-GPU machine (device kind nvidia-h100-x2) after tools/device/build.sh in the same
# call, with at least TARGETS="baq_cli_main baq_worker_main baq_coordinator_main":
#   bash bench/device/multi_gpu.sh
# Steps (STEPS, comma-separated; default all but scale30b):
#   opt       `baq quantize` on examples/opt-fixture: --device cuda:0 (twice: run-to-run),
#             cuda:0 with --hessian_partials 2, cuda:1 with 2, and one engine on cuda:0,cuda:1;
#             sha256 of every output file (quant_report.json compared without its timings).
#   service   one baq-coordinator + two baq-workers (--devices=cuda:0 and --devices=cuda:1),
#             `baq submit --wait` of the same job; then one worker with --devices=cuda:0+cuda:1.
#   scale     a random-weight LLaMA-7B-shaped model (tools/scale/make_random_model.py,
#             SCALE_BLOCKS blocks, default 8), 128 x 2048 calibration, BAQ 3 bits, packed:
#             one GPU vs one engine on two GPUs; wall time and peak memory per GPU.
#   scale30b  the 30B shape (6656 / 17920, SCALE30_BLOCKS blocks, default 4) on one GPU.
#   civet     the /metrics Exposer next to CUDA LibTorch: a plain civetweb probe, the same probe
#             with LibTorch CUDA preloaded, and worker_metrics_test if built.
# Peak memory: nvidia-smi memory.used sampled every 200 ms (includes the CUDA context).
# Log: $OUT/multi_gpu.log.
set -uo pipefail
OUT=${OUT:-$PWD/out}
B=${BUILD_DIR:-build-gpu}
STEPS=${STEPS:-opt,service,scale,civet}
export LD_LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log="$OUT/multi_gpu.log"
BAQ=$B/tools/cli/baq
ROOT=$PWD
note() { echo "$*" | tee -a "$log"; }
step() { [[ ,$STEPS, == *,$1,* ]]; }

# timed, digest, same: bench/device/lib.sh.
source "$(dirname "$0")/lib.sh"

nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader | tee -a "$log"
OPT=(--model "$ROOT/examples/opt-fixture" --calib "$ROOT/examples/calibration.txt" --method baq
     --bits 3 --format fake-quant,packed)

if step opt; then
  rm -rf /tmp/o_*
  timed opt_g0 "$BAQ" quantize "${OPT[@]}" --device cuda:0 --out /tmp/o_g0
  timed opt_g0_again "$BAQ" quantize "${OPT[@]}" --device cuda:0 --out /tmp/o_g0_again
  timed opt_g0_p2 "$BAQ" quantize "${OPT[@]}" --device cuda:0 --hessian_partials 2 --out /tmp/o_g0_p2
  timed opt_g1_p2 "$BAQ" quantize "${OPT[@]}" --device cuda:1 --hessian_partials 2 --out /tmp/o_g1_p2
  timed opt_g01 "$BAQ" quantize "${OPT[@]}" --device cuda:0,cuda:1 --out /tmp/o_g01
  same /tmp/o_g0 /tmp/o_g0_again
  same /tmp/o_g0_p2 /tmp/o_g01
  same /tmp/o_g0_p2 /tmp/o_g1_p2
  same /tmp/o_g0 /tmp/o_g0_p2
fi

if step service; then
  start_service() {  # start_service MIN_WORKERS DEVICES...
    local min=$1
    shift
    rm -rf /tmp/cdata && mkdir -p /tmp/cdata
    "$B/coordinator/baq-coordinator" --listen=127.0.0.1:7300 --data_dir=/tmp/cdata \
      --min_workers="$min" >/tmp/coordinator.log 2>&1 &
    PIDS=($!)
    sleep 1
    local port=7301
    for d in "$@"; do
      "$B/worker/baq-worker" --coordinator=127.0.0.1:7300 --listen=127.0.0.1:$port --devices="$d" \
        --metrics_listen=127.0.0.1:$((port + 100)) >"/tmp/worker_$port.log" 2>&1 &
      PIDS+=($!)
      port=$((port + 1))
    done
    sleep 4
  }
  stop_service() {
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    for f in /tmp/worker_*.log /tmp/coordinator.log; do
      note "-- $f"; grep -iE 'metrics|error|serving' "$f" | head -5 | tee -a "$log"
    done
    rm -f /tmp/worker_*.log
  }
  rm -rf /tmp/o_svc*
  start_service 2 cuda:0 cuda:1
  timed svc_2workers "$BAQ" submit --coordinator=127.0.0.1:7300 "${OPT[@]}" --out /tmp/o_svc2w --wait
  stop_service
  same /tmp/o_g0 /tmp/o_svc2w
  start_service 1 cuda:0+cuda:1
  timed svc_1worker_2gpus "$BAQ" submit --coordinator=127.0.0.1:7300 "${OPT[@]}" --out /tmp/o_svc1w2g --wait
  stop_service
  same /tmp/o_g01 /tmp/o_svc1w2g
fi

if step scale; then
  n=${SCALE_BLOCKS:-8}
  rm -rf /tmp/llama7b /tmp/s7b_*
  timed make_7b python3 tools/scale/make_random_model.py --out /tmp/llama7b --hidden 4096 \
    --intermediate 11008 --heads 32 --blocks "$n"
  S=(--model /tmp/llama7b --calib "$ROOT/examples/calibration.txt" --method baq --bits 3
     --format packed --nsamples 128 --seqlen 2048)
  timed scale7b_1gpu "$BAQ" quantize "${S[@]}" --device cuda:0 --hessian_partials 2 --out /tmp/s7b_g0
  timed scale7b_2gpu "$BAQ" quantize "${S[@]}" --device cuda:0,cuda:1 --out /tmp/s7b_g01
  same /tmp/s7b_g0 /tmp/s7b_g01
  rm -rf /tmp/llama7b
fi

if step scale30b; then
  n=${SCALE30_BLOCKS:-4}
  rm -rf /tmp/llama30b /tmp/s30b_*
  timed make_30b python3 tools/scale/make_random_model.py --out /tmp/llama30b --hidden 6656 \
    --intermediate 17920 --heads 52 --blocks "$n"
  timed scale30b_1gpu "$BAQ" quantize --model /tmp/llama30b --calib "$ROOT/examples/calibration.txt" \
    --method baq --bits 3 --format packed --nsamples 128 --seqlen 2048 --device cuda:0 --out /tmp/s30b_g0
  rm -rf /tmp/llama30b
fi

if step civet; then
  inc=/opt/debs/usr/include
  lib=/opt/debs/usr/lib/x86_64-linux-gnu
  if gcc bench/device/civetweb_probe.c -I"$inc" -L"$lib" -lcivetweb -o /tmp/civet_probe >>"$log" 2>&1; then
    tl=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    note "-- civetweb probe, plain:"
    /tmp/civet_probe 127.0.0.1:19471 2>&1 | tee -a "$log"
    note "-- civetweb probe, LibTorch CUDA preloaded:"
    LD_PRELOAD="$tl/libtorch_cuda.so" LD_LIBRARY_PATH="$tl:$LD_LIBRARY_PATH" \
      /tmp/civet_probe 127.0.0.1:19472 2>&1 | tee -a "$log"
    note "-- civetweb probe, gRPC + LibTorch CPU preloaded:"
    LD_PRELOAD="$lib/libgrpc++.so.1.51:$tl/libtorch_cpu.so" LD_LIBRARY_PATH="$tl:$LD_LIBRARY_PATH" \
      /tmp/civet_probe 127.0.0.1:19473 2>&1 | tee -a "$log"
  fi
  if [[ -x $B/tests/worker_metrics_test ]]; then
    "$B/tests/worker_metrics_test" 2>&1 | grep -E 'OK|FAILED|Failure|what|Exception|civet' | head -20 | tee -a "$log"
  fi
fi
