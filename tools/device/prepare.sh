#!/usr/bin/env bash
# Run HERE (the Debian 12 dev machine), from the repo root, before a device call:
#   tools/device/prepare.sh [DIR]        (DIR defaults to .devdeps, gitignored)
# 1. apt-get downloads the Debian packages the GPU machine's image lacks (gRPC, Abseil,
#    protobuf 3.21 + protoc, prometheus-cpp + civetweb, RE2, c-ares, curl; GoogleTest,
#    Google Benchmark, nlohmann-json) into DIR/ (~20 MB). tools/device/build.sh unpacks them
#    there into /opt/debs (never into /).
# 2. Copies the public reference codes that bench/device/reference_bench.py times into DIR/ref/
#    (IST-DASLab/gptq: gptq.py quant.py; CSU-ModelCompression/BAQ: gptq_baq.py quant_baq.py)
#    from local git mirrors: REF_GPTQ_GIT and REF_BAQ_GIT (git dirs; defaults: the search
#    tool's /work/.mirror copies). They are third-party code: carried, never committed.
# The device call then names DIR in `carry` (docs/building-on-gpu.md).
set -euo pipefail
dir=${1:-.devdeps}
mkdir -p "$dir/ref/gptq" "$dir/ref/baq"
(
  cd "$dir"
  # The list of ../shared/tools/device-debs.sh, plus what tests and benches need.
  apt-get download libabsl-dev libabsl20220623 libc-ares-dev libc-ares2 civetweb \
    libcivetweb-dev libcivetweb1 libgrpc++-dev libgrpc++1.51 libgrpc-dev libgrpc29 \
    libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprometheus-cpp-push1.0 \
    prometheus-cpp-dev libre2-9 libre2-dev protobuf-compiler-grpc libprotobuf32 libprotoc32 \
    libprotobuf-dev protobuf-compiler libcurl4 libcurl4-openssl-dev \
    libgtest-dev libgmock-dev libbenchmark-dev libbenchmark1debian nlohmann-json3-dev \
    libonig-dev libonig5
  echo "$(ls -1 ./*.deb | wc -l) packages in $dir"
)
gptq_git=${REF_GPTQ_GIT:-/work/.mirror/IST-DASLab+gptq/repo}
baq_git=${REF_BAQ_GIT:-/work/.mirror/CSU-ModelCompression+BAQ/repo}
if [[ -d $gptq_git && -d $baq_git ]]; then
  for f in gptq.py quant.py; do git --git-dir="$gptq_git" show "HEAD:$f" >"$dir/ref/gptq/$f"; done
  for f in gptq_baq.py quant_baq.py; do git --git-dir="$baq_git" show "HEAD:$f" >"$dir/ref/baq/$f"; done
  {
    echo "IST-DASLab/gptq $(git --git-dir="$gptq_git" rev-parse HEAD)"
    echo "CSU-ModelCompression/BAQ $(git --git-dir="$baq_git" rev-parse HEAD)"
  } >"$dir/ref/COMMITS"
  cat "$dir/ref/COMMITS"
else
  echo "reference mirrors not found (REF_GPTQ_GIT, REF_BAQ_GIT): reference bench will skip" >&2
fi
du -sh "$dir"
