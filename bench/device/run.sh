#!/usr/bin/env bash
# Runs ON the GPU machine after tools/device/build.sh (same call: the build dir does not survive):
#   bash bench/device/run.sh
# 1. bench/quant_device_bench on CUDA: per-layer GPTQ / BAQ / Hessian (ours, LibTorch ops);
# 2. bench/device/reference_bench.py: the public reference codes, same shapes (.devdeps/ref);
# 3. bench/allreduce_device_bench: AllReduceHessian over NCCL (only with >= 2 GPUs);
# 4. `baq quantize` on examples/opt-fixture, --device cuda and cpu, if the CLI was built;
# 5. bench/quant_bench (CPU) on the host's cores, 4096x4096, for the CPU/GPU ratio;
# 6. bench/device/summarize.py: the table, printed last and in $OUT/summary.md.
# Files back: bench.log, summary.md and the JSONs (the device tool returns at most 8 files).
# Env: OUT, BUILD_DIR (build-gpu), SHAPES (4096x4096,11008x4096), SKIP_REFERENCE=1, SKIP_CLI=1,
#      SKIP_CPU_BENCH=1.
set -uo pipefail
OUT=${OUT:-$PWD/out}
B=${BUILD_DIR:-build-gpu}
SHAPES=${SHAPES:-4096x4096,11008x4096}
export LD_LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log="$OUT/bench.log"
nvidia-smi --query-gpu=index,name,memory.total,clocks.max.sm --format=csv | tee "$log"

if [[ -x $B/bench/quant_device_bench ]]; then
  CUDA_VISIBLE_DEVICES=0 "$B/bench/quant_device_bench" --device=cuda --shapes="$SHAPES" \
    --benchmark_out="$OUT/quant_device_bench.json" --benchmark_out_format=json 2>&1 | tee -a "$log"
fi
if [[ ${SKIP_REFERENCE:-0} != 1 && -f .devdeps/ref/gptq/gptq.py ]]; then
  CUDA_VISIBLE_DEVICES=0 timeout 400 python3 bench/device/reference_bench.py --ref .devdeps/ref \
    --shapes "$SHAPES" --out "$OUT/reference_bench.json" 2>&1 | tee -a "$log"
fi
gpus=$(nvidia-smi -L | wc -l)
if [[ $gpus -ge 2 && -x $B/bench/allreduce_device_bench ]]; then
  "$B/bench/allreduce_device_bench" --benchmark_out="$OUT/allreduce_device_bench.json" \
    --benchmark_out_format=json 2>&1 | tee -a "$log"
fi
if [[ ${SKIP_CLI:-0} != 1 && -x $B/tools/cli/baq ]]; then
  for dev in cuda cpu; do
    rm -rf "/tmp/baq-opt-$dev"
    t0=$(date +%s.%N)
    CUDA_VISIBLE_DEVICES=0 timeout 300 "$B/tools/cli/baq" quantize --model examples/opt-fixture \
      --calib examples/calibration.txt --out "/tmp/baq-opt-$dev" --method baq --bits 3 \
      --device "$dev" >"/tmp/cli_$dev.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    echo "baq quantize opt-fixture --device $dev: rc=$rc wall_s=$(python3 -c "print(round($t1 - $t0, 2))")" | tee -a "$log"
    tail -c 1500 "/tmp/cli_$dev.log" | tr '\r' '\n' | tail -8 | tee -a "$log"
  done
  if [[ -d /tmp/baq-opt-cuda && -d /tmp/baq-opt-cpu ]]; then
    (cd /tmp && sha256sum baq-opt-cuda/* baq-opt-cpu/* 2>/dev/null) | tee -a "$log"
  fi
fi
if [[ ${SKIP_CPU_BENCH:-0} != 1 && -x $B/bench/quant_bench ]]; then
  # The CPU bench (ours vs the column-loop baseline) on this host's cores, 4096x4096 only.
  timeout 150 "$B/bench/quant_bench" --benchmark_filter='BM_(Gptq|Baq)/4096' 2>&1 | tee -a "$log"
fi
python3 bench/device/summarize.py "$OUT" | tee "$OUT/summary.md"
