#!/usr/bin/env bash
# Single-GPU pace of issue 22: the calibration forward in the checkpoint's dtype
# (--forward_dtype auto) against the float32 one, on the 7B and 30B shapes, and the quality check
# on the fixtures. Runs ON the GPU machine (one H100), after tools/device/build.sh in the same
# call (or on the same warm machine):
#
#   HERE, once:      bash tools/device/prepare.sh && bash bench/device/quality.sh prepare &&
#                    bash bench/device/pace.sh prepare
#                    (.devdeps: the Debian packages; .devdeps/qdata: the LLaMA fixture and the
#                    wikitext-2 / corpus text; .devdeps/pace: both fixtures' golden forwards.
#                    ../shared does not travel to the device)
#   ON THE DEVICE (carry .devdeps), one call of ~8-9 min on an H100:
#     export TARGETS="baq_cli_main decoder_block_gpu_test quant_cuda_gpu_test" SKIP_CTEST=1
#     bash tools/device/build.sh && bash bench/device/pace.sh
#   or two calls on the warm machine (each call is at most 10 minutes):
#     ... bash tools/device/build.sh && STEPS=gputests,s7b bash bench/device/pace.sh
#     STEPS=s30b,quality bash bench/device/pace.sh
#
# Steps (STEPS, comma-separated; default gputests,s7b,s30b,quality):
#   gputests the CUDA tests of this change, if built: decoder_block_gpu_test (bf16/fp16 block
#            forward against the transformers goldens) and quant_cuda_gpu_test (the DSYRK
#            Hessian against the CPU float64 one, its mirror, merge and wire format).
#   s7b      random-weight LLaMA-7B shape (tools/scale/make_random_model.py, float16, 32 blocks),
#            128 x 2048 calibration, BAQ 3 bits, packed, --device cuda: --forward_dtype auto on
#            all 32 blocks; auto and float32 on the first S7B_SHORT (4) blocks (float32 took
#            ~9 s a block on an H100, 292 s for 32). Marginal time per block =
#            (wall_32 - wall_4) / 28 (removes start-up, tokenization, embeddings).
#   s30b     the 30B shape (6656 / 17920, 52 heads), S30B_BLOCKS (8) blocks with auto, and auto
#            and float32 on the first S30B_SHORT (2) blocks; 60 blocks extrapolated from the
#            marginal time per block.
#   quality  perplexity (wikitext-2 test, 2048-token windows) of `baq quantize --method baq
#            --bits 3` outputs of the OPT fixture (examples/opt-fixture, float16) and the LLaMA
#            fixture (.devdeps/qdata, bfloat16), float32 vs auto forward, calibration seeds
#            SEEDS (0 1 2): the seed-to-seed spread is the run-to-run noise the dtype change is
#            compared with. Plus the unquantized models' perplexity.
# Every run: CLI wall time, the job's own wall time, achieved bits, proxy loss, and peak GPU
# memory (nvidia-smi memory.used every 200 ms, CUDA context included). The summary table is
# printed last and written to $OUT/pace.md; the whole log is $OUT/pace.log.
# Env: OUT, BUILD_DIR (build-gpu), BAQ, STEPS, S7B_BLOCKS (32), S7B_SHORT (4), S30B_BLOCKS (8),
#      S30B_SHORT (2), SEEDS ("0 1 2"), NSAMPLES (128), SEQLEN (2048), DATA (.devdeps/qdata),
#      DEVICE (cuda:0).
set -uo pipefail

if [[ ${1:-} == prepare ]]; then
  src=${2:-../shared/data}
  for m in opt-fixture llama-fixture; do
    mkdir -p ".devdeps/pace/$m"
    cp "$src/models/$m/golden_forward.safetensors" ".devdeps/pace/$m/"
  done
  du -sh .devdeps/pace
  exit 0
fi

OUT=${OUT:-$PWD/out}
B=${BUILD_DIR:-build-gpu}
BAQ=${BAQ:-$B/tools/cli/baq}
STEPS=${STEPS:-gputests,s7b,s30b,quality}
DATA=${DATA:-.devdeps/qdata}
DEVICE=${DEVICE:-cuda:0}
NSAMPLES=${NSAMPLES:-128}
SEQLEN=${SEQLEN:-2048}
SEEDS=${SEEDS:-0 1 2}
export LD_LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
log="$OUT/pace.log"
md="$OUT/pace.md"
touch "$log"
ROOT=$PWD
note() { echo "$*" | tee -a "$log"; }
step() { [[ ,$STEPS, == *,$1,* ]]; }
rows=()  # summary rows: "name|blocks|cli_s|job_s|per_block_s|peak|bits|proxy|ppl"

if [[ ! -x $BAQ ]]; then
  note "no baq binary at $BAQ (TARGETS=baq_cli_main bash tools/device/build.sh first)"
  exit 1
fi
note "== pace.sh $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null) steps=$STEPS"
nvidia-smi --query-gpu=index,name,memory.total,clocks.max.sm --format=csv,noheader | tee -a "$log"

# run NAME BLOCKS CMD...: runs CMD, records wall time, peak memory and the CLI's summary lines.
LAST_PPL=""
run() {
  local name=$1 blocks=$2
  shift 2
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
    >"/tmp/mem_$name.csv" 2>/dev/null &
  local smi=$!
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"/tmp/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  kill "$smi" 2>/dev/null
  wait "$smi" 2>/dev/null
  local wall peak job bits proxy ppl per
  wall=$(python3 -c "print(round($t1 - $t0, 1))")
  peak=$(awk '{ if ($1 > m) m = $1 } END { printf "%d", m }' "/tmp/mem_$name.csv")
  job=$(grep -oE 'wall time: +[0-9.]+' "/tmp/$name.log" | grep -oE '[0-9.]+$')
  bits=$(grep -oE '[0-9.]+ achieved' "/tmp/$name.log" | head -1 | grep -oE '^[0-9.]+')
  proxy=$(grep -oE 'proxy loss: +[0-9.e+-]+' "/tmp/$name.log" | grep -oE '[0-9.e+-]+$')
  ppl=$(grep -oE 'perplexity: [0-9.]+' "/tmp/$name.log" | grep -oE '[0-9.]+$')
  LAST_PPL=$ppl
  per=""
  [[ -n $job && $blocks -gt 0 ]] && per=$(python3 -c "print(round($job / $blocks, 2))")
  note "== $name rc=$rc blocks=$blocks cli_wall_s=$wall job_wall_s=${job:-?} per_block_s=${per:-?} peak_MiB=$peak bits=${bits:-} proxy=${proxy:-} ppl=${ppl:-}"
  tr '\r' '\n' <"/tmp/$name.log" | grep -v '^\s*$' | tail -4 | tee -a "$log"
  rows+=("$name|$blocks|$wall|${job:-}|${per:-}|$peak|${bits:-}|${proxy:-}|${ppl:-}|$rc")
  return $rc
}

# first_blocks SRC N DST: DST is SRC with num_hidden_layers = N (the shards are symlinked).
first_blocks() {
  rm -rf "$3"
  mkdir -p "$3"
  ln -s "$1"/* "$3"/
  rm "$3/config.json"
  python3 - "$1/config.json" "$2" "$3/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c["num_hidden_layers"] = int(sys.argv[2])
json.dump(c, open(sys.argv[3], "w"), indent=2)
EOF
}

# marginal NAME_LONG BLOCKS_LONG NAME_SHORT BLOCKS_SHORT: (job_long - job_short) / (difference).
marginal() {
  local a b
  a=$(grep -oE 'wall time: +[0-9.]+' "/tmp/$1.log" | grep -oE '[0-9.]+$')
  b=$(grep -oE 'wall time: +[0-9.]+' "/tmp/$3.log" | grep -oE '[0-9.]+$')
  [[ -n $a && -n $b ]] || return
  python3 -c "print(round(($a - $b) / ($2 - $4), 2))"
}

# The LLaMA fixture from .devdeps/qdata, decompressed into /tmp/pace_llama (empty if absent).
llama_dir() {
  if [[ -f $DATA/models/llama-fixture/model.safetensors.xz ]]; then
    mkdir -p /tmp/pace_llama
    cp "$DATA"/models/llama-fixture/*.json /tmp/pace_llama/
    [[ -f /tmp/pace_llama/model.safetensors ]] ||
      xz -dc "$DATA/models/llama-fixture/model.safetensors.xz" >/tmp/pace_llama/model.safetensors
    echo /tmp/pace_llama
  fi
}

if step gputests; then
  # The tests' shared-data layout (models/<fixture>/ with golden_forward.safetensors).
  rm -rf /tmp/pace_shared
  mkdir -p /tmp/pace_shared/models/opt-fixture /tmp/pace_shared/models/llama-fixture
  ln -s "$ROOT"/examples/opt-fixture/* /tmp/pace_shared/models/opt-fixture/
  ld=$(llama_dir)
  [[ -n $ld ]] && ln -s "$ld"/* /tmp/pace_shared/models/llama-fixture/
  for m in opt-fixture llama-fixture; do
    [[ -f .devdeps/pace/$m/golden_forward.safetensors ]] &&
      ln -sf "$ROOT/.devdeps/pace/$m/golden_forward.safetensors" "/tmp/pace_shared/models/$m/"
  done
  export BAQ_SHARED_DATA_DIR=/tmp/pace_shared
  for t in decoder_block_gpu_test quant_cuda_gpu_test; do
    if [[ -x $B/tests/$t ]]; then
      timeout 300 "$B/tests/$t" >"/tmp/$t.log" 2>&1
      note "== $t rc=$?"
      grep -E ' eps|Hessian|FAILED|Failure|PASSED|SKIPPED \]' "/tmp/$t.log" | head -30 | tee -a "$log"
    else
      note "== $t not built"
    fi
  done
fi

CALIB="$ROOT/examples/calibration.txt"
SCALE=(--calib "$CALIB" --method baq --bits 3 --format packed --nsamples "$NSAMPLES"
       --seqlen "$SEQLEN" --device "$DEVICE")
extra=()

if step s7b; then
  n=${S7B_BLOCKS:-32}
  short=${S7B_SHORT:-4}
  rm -rf /tmp/pace7b /tmp/pace7b_short /tmp/p7_*
  run make_7b 0 python3 tools/scale/make_random_model.py --out /tmp/pace7b --hidden 4096 \
    --intermediate 11008 --heads 32 --blocks "$n"
  first_blocks /tmp/pace7b "$short" /tmp/pace7b_short
  run s7b_auto_short "$short" "$BAQ" quantize --model /tmp/pace7b_short "${SCALE[@]}" \
    --forward_dtype auto --out /tmp/p7_auto_short
  run s7b_f32_short "$short" "$BAQ" quantize --model /tmp/pace7b_short "${SCALE[@]}" \
    --forward_dtype float32 --out /tmp/p7_f32_short
  run s7b_auto "$n" "$BAQ" quantize --model /tmp/pace7b "${SCALE[@]}" --forward_dtype auto \
    --out /tmp/p7_auto
  m=$(marginal s7b_auto "$n" s7b_auto_short "$short")
  [[ -n $m ]] && extra+=("7B shape, auto: marginal $m s/block -> 32 blocks + start-up as measured above")
  rm -rf /tmp/pace7b /tmp/pace7b_short /tmp/p7_*
fi

if step s30b; then
  n=${S30B_BLOCKS:-8}
  short=${S30B_SHORT:-2}
  rm -rf /tmp/pace30b /tmp/pace30b_short /tmp/p30_*
  run make_30b 0 python3 tools/scale/make_random_model.py --out /tmp/pace30b --hidden 6656 \
    --intermediate 17920 --heads 52 --blocks "$n"
  first_blocks /tmp/pace30b "$short" /tmp/pace30b_short
  run s30b_auto_short "$short" "$BAQ" quantize --model /tmp/pace30b_short "${SCALE[@]}" \
    --forward_dtype auto --out /tmp/p30_auto_short
  run s30b_f32_short "$short" "$BAQ" quantize --model /tmp/pace30b_short "${SCALE[@]}" \
    --forward_dtype float32 --out /tmp/p30_f32_short
  run s30b_auto "$n" "$BAQ" quantize --model /tmp/pace30b "${SCALE[@]}" --forward_dtype auto \
    --out /tmp/p30_auto
  m=$(marginal s30b_auto "$n" s30b_auto_short "$short")
  if [[ -n $m ]]; then
    extra+=("30B shape, auto: marginal $m s/block -> 60 blocks ~ $(python3 -c "print(round(60 * $m))") s + start-up")
  fi
  rm -rf /tmp/pace30b /tmp/pace30b_short /tmp/p30_*
fi

if step quality; then
  EVAL="$ROOT/examples/eval.txt"
  QCALIB="$CALIB"
  if [[ -d $DATA ]]; then
    mkdir -p /tmp/pace_data
    for f in wikitext-2/test.txt corpus/war_and_peace.txt corpus/tiny_shakespeare.txt \
      wikitext-2/valid.txt; do
      [[ -f /tmp/pace_data/$(basename "$f") || ! -f $DATA/$f.xz ]] ||
        xz -dc "$DATA/$f.xz" >"/tmp/pace_data/$(basename "$f")"
    done
    [[ -f /tmp/pace_data/test.txt ]] && EVAL=/tmp/pace_data/test.txt
    [[ -f /tmp/pace_data/war_and_peace.txt ]] &&
      QCALIB="/tmp/pace_data/war_and_peace.txt,/tmp/pace_data/tiny_shakespeare.txt,/tmp/pace_data/valid.txt"
  fi
  models=("opt:$ROOT/examples/opt-fixture")
  ld=$(llama_dir)
  if [[ -n $ld ]]; then
    models+=("llama:$ld")
  else
    note "no $DATA/models/llama-fixture (bash bench/device/quality.sh prepare here): OPT only"
  fi
  note "quality: calib=$QCALIB eval=$EVAL seeds=$SEEDS"
  for entry in "${models[@]}"; do
    tag=${entry%%:*}
    dir=${entry#*:}
    run "q_${tag}_base" 0 "$BAQ" eval --model "$dir" --text "$EVAL" --seqlen "$SEQLEN" \
      --device "$DEVICE"
    for fwd in float32 auto; do
      ppls=()
      for seed in $SEEDS; do
        rm -rf "/tmp/pq_${tag}"
        run "q_${tag}_${fwd}_s${seed}_quant" 6 "$BAQ" quantize --model "$dir" --calib "$QCALIB" \
          --method baq --bits 3 --format fake-quant --nsamples "$NSAMPLES" --seqlen "$SEQLEN" \
          --seed "$seed" --device "$DEVICE" --forward_dtype "$fwd" \
          --out "/tmp/pq_${tag}"
        run "q_${tag}_${fwd}_s${seed}_ppl" 0 "$BAQ" eval --model "/tmp/pq_${tag}" --text "$EVAL" \
          --seqlen "$SEQLEN" --device "$DEVICE"
        [[ -n $LAST_PPL ]] && ppls+=("$LAST_PPL")
      done
      if [[ ${#ppls[@]} -gt 0 ]]; then
        extra+=("$(python3 - "$tag" "$fwd" "${ppls[@]}" <<'EOF'
import statistics, sys
tag, fwd, p = sys.argv[1], sys.argv[2], [float(x) for x in sys.argv[3:]]
sd = statistics.stdev(p) if len(p) > 1 else 0.0
print(f"{tag} fixture, BAQ 3 bits, forward {fwd}: ppl mean {statistics.mean(p):.3f}, "
      f"sd {sd:.3f}, min {min(p):.3f}, max {max(p):.3f} over seeds ({len(p)})")
EOF
)")
      fi
    done
    rm -rf "/tmp/pq_${tag}"
  done
fi

{
  echo "## pace.sh $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  echo
  echo "| run | blocks | CLI wall s | job wall s | job s/block | peak MiB | bits | proxy loss | ppl | rc |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
  echo
  for e in "${extra[@]}"; do echo "- $e"; done
} | tee "$md" | tee -a "$log"
