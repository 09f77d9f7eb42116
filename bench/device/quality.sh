#!/usr/bin/env bash
# Quality runs of issue 5 ("Done when"): perplexity of `baq quantize` outputs on the fixtures
# against the fp16/bf16 model and the public GPTQ reference, on the GPU machine.
#
#   HERE, once:   bash bench/device/quality.sh prepare [../shared/data]
#                 copies what the runs read from the shared data (text; the LLaMA fixture,
#                 xz-compressed; fixture_info.json) into .devdeps/qdata: ../shared does not
#                 travel to the device, and the OPT fixture is examples/opt-fixture.
#   ON THE DEVICE, after TARGETS=baq_cli_main SKIP_CTEST=1 bash tools/device/build.sh
#   (carry .devdeps):
#                 bash bench/device/quality.sh
#
# Calibration: corpus/war_and_peace.txt + corpus/tiny_shakespeare.txt + wikitext-2/valid.txt,
# 128 windows x 2048 tokens, seed 0 (Python-random window starts). Evaluation:
# wikitext-2/test.txt, non-overlapping 2048-token windows. Both GPUs are used: GPU 0 runs the
# OPT quantize jobs, then `baq eval --device cuda` of their packed/gptq/fake-quant outputs while
# transformers evaluates the fake-quant ones (and dequantizes the gptq ones); GPU 1 runs the
# reference GPTQ on OPT (bench/device/reference_quality.py), then the same for LLaMA.
# bench/device/summarize_quality.py writes the table. Files back: quality.log, quality.json,
# quality.md.
#
# Env: OUT, BUILD_DIR (build-gpu), BAQ (the baq binary; default $BUILD_DIR/tools/cli/baq),
#      DATA (.devdeps/qdata), REF (.devdeps/ref/gptq), QUICK=1 (a validation subset),
#      SKIP_LLAMA=1, SKIP_OPT=1, WORK (/tmp/quality), DEBS (.devdeps: the Debian packages to
#      unpack into /opt/debs when a carried binary runs without tools/device/build.sh),
#      GPUS (0,1: the two lanes' GPUs; "0,0" runs both lanes on one GPU, one after the other),
#      SMOLLM2 (a SmolLM2-135M-Instruct model dir, or its Q4_1 GGUF: adds the real pretrained
#      model; a GGUF is turned into a model dir with .devdeps/tools/smollm2.py — a copy of ../shared/tools/smollm2.py made by `prepare`,
#      needs the Python package gguf — with GPTQ 4/3/2, BAQ 4/3/2.5/2, and the reference GPTQ
#      both in the checkpoint's dtype and in float32, the controlled precision experiment).
set -uo pipefail

if [[ ${1:-} == prepare ]]; then
  src=${2:-../shared/data}
  dst=.devdeps/qdata
  rm -rf "$dst"
  mkdir -p "$dst/corpus" "$dst/wikitext-2" "$dst/models/opt-fixture" "$dst/models/llama-fixture"
  cp "$src"/corpus/{war_and_peace,tiny_shakespeare}.txt "$dst/corpus/"
  cp "$src"/wikitext-2/{valid,test}.txt "$dst/wikitext-2/"
  cp "$src/models/opt-fixture/fixture_info.json" "$dst/models/opt-fixture/"
  sha256sum "$src/models/opt-fixture/model.safetensors" | cut -d' ' -f1 \
    >"$dst/models/opt-fixture/model.safetensors.sha256"
  for f in config.json generation_config.json tokenizer.json tokenizer_config.json \
    fixture_info.json; do
    cp "$src/models/llama-fixture/$f" "$dst/models/llama-fixture/"
  done
  xz -T2 -6 -c "$src/models/llama-fixture/model.safetensors" \
    >"$dst/models/llama-fixture/model.safetensors.xz"
  xz -T2 -6 "$dst"/corpus/*.txt "$dst"/wikitext-2/*.txt
  mkdir -p .devdeps/tools
  cp "$src/../tools/smollm2.py" .devdeps/tools/ 2>/dev/null || echo "no smollm2.py (SMOLLM2=GGUF runs need it)"
  du -sh "$dst"
  exit 0
fi

OUT=${OUT:-$PWD/out}
B=${BUILD_DIR:-build-gpu}
BAQ=${BAQ:-$B/tools/cli/baq}
DATA=${DATA:-.devdeps/qdata}
REF=${REF:-.devdeps/ref/gptq}
W=${WORK:-/tmp/quality}
QUICK=${QUICK:-0}
SKIP_LLAMA=${SKIP_LLAMA:-0}
SKIP_OPT=${SKIP_OPT:-0}
IFS=, read -r GPU_A GPU_B <<<"${GPUS:-0,1}"
SMOLLM2=${SMOLLM2:-}
export LD_LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
log="$OUT/quality.log"
: >"$log"
say() { echo "[$(date -u +%T)] $*" | tee -a "$log"; }

if [[ ! -x $BAQ ]]; then
  say "no baq binary at $BAQ (build baq_cli_main first)"
  exit 1
fi
if [[ ! -d /opt/debs/usr/lib ]]; then  # a carried binary on a fresh machine: its libraries
  mkdir -p /opt/debs
  for f in "${DEBS:-.devdeps}"/*.deb; do dpkg-deb -x "$f" /opt/debs; done
fi
rm -rf "$W"
mkdir -p "$W/data" "$W/models" "$W/out" "$W/logs"
# Data: the text decompressed; the OPT fixture from examples/ (same file, checked by hash).
cp -r "$DATA/corpus" "$DATA/wikitext-2" "$W/data/"
xz -d "$W"/data/*/*.xz 2>/dev/null
cp -r examples/opt-fixture "$W/models/opt-fixture"
cp "$DATA/models/opt-fixture/fixture_info.json" "$W/models/opt-fixture/"
want=$(cat "$DATA/models/opt-fixture/model.safetensors.sha256")
have=$(sha256sum "$W/models/opt-fixture/model.safetensors" | cut -d' ' -f1)
[[ $want == "$have" ]] || say "WARNING: examples/opt-fixture differs from the shared fixture"
if [[ $SKIP_LLAMA != 1 && -f $DATA/models/llama-fixture/model.safetensors.xz ]]; then
  cp -r "$DATA/models/llama-fixture" "$W/models/"
  xz -d "$W/models/llama-fixture/model.safetensors.xz"
else
  SKIP_LLAMA=1
fi
if [[ -d $SMOLLM2 ]]; then
  cp -r "$SMOLLM2" "$W/models/smollm2"
elif [[ -f $SMOLLM2 ]]; then
  python3 .devdeps/tools/smollm2.py "$W/models/smollm2" --gguf "$SMOLLM2" 2>&1 | tail -2 | tee -a "$log"
fi
if [[ -n $SMOLLM2 && ! -f $W/models/smollm2/model.safetensors ]]; then
  say "no SmolLM2 model from $SMOLLM2"
  SMOLLM2=""
fi
CALIB="$W/data/corpus/war_and_peace.txt,$W/data/corpus/tiny_shakespeare.txt,$W/data/wikitext-2/valid.txt"
TEST="$W/data/wikitext-2/test.txt"
RES="$W/results.jsonl"
: >"$RES"
{
  nvidia-smi --query-gpu=index,name,driver_version --format=csv,noheader
  echo "torch $(python3 -c 'import torch, transformers; print(torch.__version__, "transformers", transformers.__version__)')"
} | tee -a "$log"

# Jobs: model name method bits allocation formats
ALL=fake-quant,packed,gptq
if [[ $QUICK == 1 ]]; then
  OPT_JOBS="gptq-w3 gptq 3 global $ALL
baq-3 baq 3 global $ALL"
  LLAMA_JOBS="baq-2.5 baq 2.5 global fake-quant,packed"
  REF_BITS=3
else
  OPT_JOBS="gptq-w4 gptq 4 global $ALL
gptq-w3 gptq 3 global $ALL
gptq-w2 gptq 2 global $ALL
baq-3 baq 3 global $ALL
baq-2.5 baq 2.5 global $ALL
baq-2 baq 2 global $ALL
baq-3-global-raw baq 3 global-raw fake-quant
baq-2.5-global-raw baq 2.5 global-raw fake-quant
baq-3-sublayer baq 3 sublayer fake-quant
baq-2.5-sublayer baq 2.5 sublayer fake-quant"
  LLAMA_JOBS="gptq-w4 gptq 4 global fake-quant,packed
gptq-w3 gptq 3 global fake-quant,packed
gptq-w2 gptq 2 global fake-quant,packed
baq-3 baq 3 global fake-quant,packed
baq-2.5 baq 2.5 global fake-quant,packed
baq-2 baq 2 global fake-quant,packed"
  REF_BITS=4,3,2
fi
F=${SMOL_FORMATS:-fake-quant,packed}
SMOL_JOBS="gptq-w4 gptq 4 global $F
gptq-w3 gptq 3 global $F
gptq-w2 gptq 2 global $F
baq-4 baq 4 global $F
baq-3 baq 3 global $F
baq-2.5 baq 2.5 global $F
baq-2 baq 2 global $F"

now() { date +%s.%N; }
elapsed() { python3 -c "print(round($(now) - $1, 2))"; }

# quantize MODEL GPU "name method bits allocation formats"
quantize() {
  local model=$1 gpu=$2 name method bits alloc formats
  read -r name method bits alloc formats <<<"$3"
  local dir="$W/out/$model-$name" t0
  t0=$(now)
  CUDA_VISIBLE_DEVICES=$gpu timeout 240 "$BAQ" quantize --model "$W/models/$model" \
    --calib "$CALIB" --nsamples 128 --seqlen 2048 --seed 0 --out "$dir" --method "$method" \
    --bits "$bits" --allocation "$alloc" --format "$formats" --device cuda \
    </dev/null >"$W/logs/q-$model-$name.log" 2>&1
  local rc=$? wall
  wall=$(elapsed "$t0")
  say "quantize $model $name: rc=$rc wall_s=$wall"
  [[ $rc -ne 0 ]] && tail -c 600 "$W/logs/q-$model-$name.log" | tr '\r' '\n' | tail -4 | tee -a "$log"
  echo "{\"kind\":\"quantize\",\"model\":\"$model\",\"name\":\"$name\",\"method\":\"$method\",\"bits\":$bits,\"allocation\":\"$alloc\",\"formats\":\"$formats\",\"rc\":$rc,\"wall_s\":$wall,\"dir\":\"$dir\"}" >>"$RES"
}

# baq_eval MODEL NAME FORMAT DIR GPU: our own loader (packed/gptq dequantized on load).
baq_eval() {
  local model=$1 name=$2 format=$3 dir=$4 gpu=$5 t0 rc ppl
  t0=$(now)
  CUDA_VISIBLE_DEVICES=$gpu timeout 120 "$BAQ" eval --model "$dir" --text "$TEST" \
    --seqlen 2048 --device cuda </dev/null >"$W/logs/e-$model-$name-$format.log" 2>&1
  rc=$?
  ppl=$(grep -oE 'perplexity: [0-9.]+' "$W/logs/e-$model-$name-$format.log" | awk '{print $2}')
  say "baq eval $model $name [$format]: rc=$rc ppl=${ppl:-?} wall_s=$(elapsed "$t0")"
  [[ $rc -ne 0 ]] && tail -c 400 "$W/logs/e-$model-$name-$format.log" | tr '\r' '\n' | tail -3 | tee -a "$log"
  echo "{\"kind\":\"baq_eval\",\"model\":\"$model\",\"name\":\"$name\",\"format\":\"$format\",\"rc\":$rc,\"ppl\":${ppl:-null}}" >>"$RES"
}

# Output dir of one format (several formats: DIR/<format>/).
fmt_dir() {
  local dir=$1 formats=$2 format=$3
  if [[ $formats == *,* ]]; then echo "$dir/$format"; else echo "$dir"; fi
}

# transformers: every fake-quant output as is, the gptq outputs and the BAQ packed outputs
# dequantized in Python (independent of baq's loader; the packed decoder is plain Python,
# about 30-60 s per OPT output).
hf_eval() {
  local model=$1 gpu=$2 jobs=$3 specs=()
  while read -r name method bits alloc formats; do
    [[ -n $name ]] || continue
    local dir="$W/out/$model-$name"
    specs+=("fake:$name=$(fmt_dir "$dir" "$formats" fake-quant)")
    [[ $formats == *gptq* ]] && specs+=("gptq:$name=$(fmt_dir "$dir" "$formats" gptq)")
    [[ $method == baq && $formats == *packed* ]] &&
      specs+=("packed:$name=$(fmt_dir "$dir" "$formats" packed)")
  done <<<"$jobs"
  CUDA_VISIBLE_DEVICES=$gpu timeout 500 python3 bench/device/reference_quality.py eval \
    --eval "$TEST" --base "$W/models/$model" --out "$W/hf-$model.json" "${specs[@]}" </dev/null 2>&1 |
    grep -E '^eval|Error|error|Traceback' | tee -a "$log"
}
# baq eval of every format of each multi-format output, and of the original model.
baq_evals() {
  local model=$1 gpu=$2 jobs=$3 dtype=$4
  baq_eval "$model" fp "$dtype" "$W/models/$model" "$gpu"
  while read -r name method bits alloc formats; do
    [[ $formats == *,* ]] || continue
    for f in ${formats//,/ }; do baq_eval "$model" "$name" "$f" "$W/out/$model-$name/$f" "$gpu"; done
  done <<<"$jobs"
}

reference() {  # MODEL GPU [DTYPE: auto (the checkpoint's) | float32 -> ref-MODEL-float32.json]
  local dtype=${3:-auto} suffix=""
  [[ $dtype != auto ]] && suffix="-$dtype"
  CUDA_VISIBLE_DEVICES=$2 timeout 400 python3 bench/device/reference_quality.py reference \
    --model "$W/models/$1" --ref "$REF" --calib "$CALIB" --eval "$TEST" --dtype "$dtype" \
    --bits "$REF_BITS" --out "$W/ref-$1$suffix.json" </dev/null 2>&1 | grep -E '^reference|Error|error|Traceback' |
    tee -a "$log"
}

lane_opt() {  # GPU A: OPT jobs, then transformers and baq eval of their outputs at once.
  [[ $SKIP_OPT == 1 ]] && return
  while read -r job; do quantize opt-fixture "$GPU_A" "$job"; done <<<"$OPT_JOBS"
  hf_eval opt-fixture "$GPU_A" "$OPT_JOBS" &
  local p=$!
  baq_evals opt-fixture "$GPU_A" "$OPT_JOBS" fp16
  wait $p
}

# MODEL GPU JOBS DTYPE [REF_DTYPES]: quantize, then transformers evaluation, the reference GPTQ
# (once per dtype in REF_DTYPES, comma-separated) and baq eval side by side.
lane_model() {
  local model=$1 gpu=$2 jobs=$3 dtype=$4 pids=() d
  while read -r job; do quantize "$model" "$gpu" "$job"; done <<<"$jobs"
  hf_eval "$model" "$gpu" "$jobs" &
  pids+=($!)
  for d in ${5//,/ }; do reference "$model" "$gpu" "$d"; done &
  pids+=($!)
  baq_evals "$model" "$gpu" "$jobs" "$dtype"
  wait "${pids[@]}"
}

lane_ref_llama() {  # GPU B: the OPT reference, then the LLaMA jobs, evaluations, reference.
  [[ $SKIP_OPT == 1 ]] || reference opt-fixture "$GPU_B"
  [[ $SKIP_LLAMA == 1 ]] || lane_model llama-fixture "$GPU_B" "$LLAMA_JOBS" bf16 auto
  [[ -n $SMOLLM2 ]] && lane_model smollm2 "$GPU_B" "$SMOL_JOBS" bf16 "${SMOL_REF_DTYPES:-auto,float32}"
}

say "== quantize, reference, evaluation (QUICK=$QUICK, GPUs $GPU_A,$GPU_B)"
if [[ $GPU_A == "$GPU_B" ]]; then
  lane_opt
  lane_ref_llama
else
  lane_opt &
  p0=$!
  lane_ref_llama &
  p1=$!
  wait $p0 $p1
fi

say "== summary"
python3 bench/device/summarize_quality.py --work "$W" --out "$OUT" | tee -a "$log"
