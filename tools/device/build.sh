#!/usr/bin/env bash
# Runs ON the GPU machine (device tool), from the repo root, after tools/device/prepare.sh ran
# here and the call carries .devdeps:
#   bash tools/device/build.sh            # configure + build + ctest
# Unpacks .devdeps/*.deb into /opt/debs, configures with the torch wheel's LibTorch (CUDA),
# BAQ_WITH_CUDA=ON, BAQ_WITH_NCCL=ON and Ninja, builds with every core, then runs ctest (the CPU
# tests and the gpu-labelled ones). Logs go to $OUT (build.log, ctest.log).
# Env: OUT, BUILD_DIR (build-gpu), TARGETS (ninja targets; default all), SKIP_CTEST=1 (build
#      only), SKIP_GPU_TESTS=1, SKIP_CPU_TESTS=1, CTEST_ARGS (extra arguments for the CPU run).
set -uo pipefail
OUT=${OUT:-$PWD/out}
BUILD_DIR=${BUILD_DIR:-build-gpu}
mkdir -p "$OUT" /opt/debs
for f in .devdeps/*.deb; do dpkg-deb -x "$f" /opt/debs; done
export LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=/opt/debs/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=/opt/debs/usr/bin:$PATH
# The unpacked packages' pkg-config files (Oniguruma for the tokenizer) still say /usr: point
# them at /opt/debs so pkg_check_modules finds headers and libraries there.
for pc in /opt/debs/usr/lib/x86_64-linux-gnu/pkgconfig/*.pc; do
  [[ -f $pc ]] && sed -i -E 's#^(prefix|exec_prefix|libdir|includedir)=/usr#\1=/opt/debs/usr#' "$pc"
done
export PKG_CONFIG_PATH=/opt/debs/usr/lib/x86_64-linux-gnu/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
# Never NVLink multicast on the shared hosts (KINDS.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1

torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
torch_inc=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))')
# LibTorch >= 2.12 headers require C++20; ours compile as either.
cxx_std=17
if grep -rqs '__cplusplus < 202002L' "$torch_inc/ATen/ATen.h" "$torch_inc/c10/macros/Macros.h"; then
  cxx_std=20
fi
# NCCL: the wheel LibTorch itself loads (one libnccl.so.2 in the process), else the system's.
nccl_root=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null || true)
[[ -n $nccl_root && -f $nccl_root/include/nccl.h ]] || nccl_root=""
{
  echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | sort | uniq -c)"
  echo "torch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)'), C++$cxx_std, nvcc $(nvcc --version | tail -1)"
  echo "cmake $(cmake --version | head -1), NCCL_ROOT=${nccl_root:-<system>}, $(nproc) cores"
} | tee "$OUT/build.log"

t0=$(date +%s)
cmake -G Ninja -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="/opt/debs/usr;$torch_prefix" \
  -DCMAKE_CXX_STANDARD=$cxx_std -DBAQ_WITH_CUDA=ON -DBAQ_WITH_NCCL=ON \
  ${nccl_root:+-DNCCL_ROOT=$nccl_root} >>"$OUT/build.log" 2>&1
rc=$?
if [[ $rc -ne 0 ]]; then
  tail -60 "$OUT/build.log"
  echo "configure FAILED" | tee -a "$OUT/build.log"
  exit $rc
fi
# shellcheck disable=SC2086
ninja -C "$BUILD_DIR" -j"$(nproc)" -k 0 ${TARGETS:-} >>"$OUT/build.log" 2>&1
rc=$?
echo "build rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/build.log"
if [[ $rc -ne 0 ]]; then grep -B2 -A12 'error' "$OUT/build.log" | head -120; fi
[[ ${SKIP_CTEST:-0} == 1 ]] && exit $rc

# CPU tests in parallel; the gpu-labelled ones one at a time (they share the GPUs), verbose so
# the deviations they print (against the named tolerances) come back. GPU first: CI runs the
# CPU suite anyway.
grc=0
crc=0
if [[ ${SKIP_GPU_TESTS:-0} != 1 ]]; then
  # The binaries of the gpu-labelled tests (ctest -L gpu runs the same), directly: with
  # TARGETS set the other test binaries are not built, and ctest's discovery would stop.
  t0=$(date +%s)
  : >"$OUT/ctest_gpu.log"
  for t in "$BUILD_DIR"/tests/*_gpu_test; do
    [[ -x $t ]] || continue
    timeout 300 "$t" >>"$OUT/ctest_gpu.log" 2>&1 || grc=1
  done
  echo "gpu tests rc=$grc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/ctest_gpu.log"
  grep -E '^(GPTQ|Baq|NCCL)|FAILED|SKIPPED \]|PASSED|Failure|error' "$OUT/ctest_gpu.log" | head -60
fi
if [[ ${SKIP_CPU_TESTS:-0} != 1 ]]; then
  t0=$(date +%s)
  # shellcheck disable=SC2086
  ctest --test-dir "$BUILD_DIR" -LE gpu -j"$(nproc)" --timeout 300 --output-on-failure \
    ${CTEST_ARGS:-} >"$OUT/ctest.log" 2>&1
  crc=$?
  echo "ctest -LE gpu rc=$crc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/ctest.log"
  grep -E 'tests passed|tests failed|\*\*\*Failed|\*\*\*Exception|Not Run|Timeout' "$OUT/ctest.log" | head -30
fi
[[ $rc -ne 0 ]] && exit $rc
[[ $grc -ne 0 ]] && exit $grc
exit $crc
