// worker/cuda/gptq_block_kernel.cu: the kernel of gptq_block_cuda.h. Plain
// CUDA (no LibTorch headers); gptq_block_cuda.cc checks and launches.
#include <cuda_runtime.h>

#include <cstdint>

namespace baq::worker::cuda_internal {
namespace {

constexpr int kThreads = 64;  // rows per thread block

// One thread per row r: its n weights of the batch live in shared memory
// (column-major per thread, so a warp's accesses to column j are consecutive).
__global__ void GptqBlockKernel(const float* __restrict__ wt, const float* __restrict__ hinv,
                                int64_t hinv_stride, const float* __restrict__ scale,
                                const float* __restrict__ zero, const int* __restrict__ maxq,
                                float* __restrict__ qt, unsigned char* __restrict__ codes,
                                float* __restrict__ err, double* __restrict__ loss, int n,
                                int64_t rows) {
  extern __shared__ float w[];  // [n][kThreads]
  const int t = threadIdx.x;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kThreads + t;
  const bool active = r < rows;
  for (int j = 0; j < n; ++j) w[j * kThreads + t] = active ? wt[j * rows + r] : 0.f;
  for (int k = 0; k < n; ++k) {
    const float u_kk = hinv[k * hinv_stride + k];
    float e = 0.f;
    if (active) {
      const int64_t i = k * rows + r;
      const float x = w[k * kThreads + t];
      const float s = scale[i];
      const float z = zero[i];
      const float c = fminf(fmaxf(rintf(x / s) + z, 0.f), static_cast<float>(maxq[k]));
      const float q = s * (c - z);
      e = (x - q) / u_kk;
      qt[i] = q;
      codes[i] = static_cast<unsigned char>(c);
      err[i] = e;
      for (int j = k + 1; j < n; ++j) w[j * kThreads + t] -= e * hinv[k * hinv_stride + j];
    }
    // loss_k: warp sum of e^2 / 2, one atomic per warp.
    double l = 0.5 * static_cast<double>(e) * e;
    for (int off = 16; off > 0; off >>= 1) l += __shfl_down_sync(0xffffffffu, l, off);
    if ((t & 31) == 0 && l != 0.0) atomicAdd(&loss[k], l);
  }
}

}  // namespace

cudaError_t LaunchGptqBlock(const float* wt, const float* hinv, int64_t hinv_stride,
                            const float* scale, const float* zero, const int* maxq, float* qt,
                            unsigned char* codes, float* err, double* loss, int n, int64_t rows) {
  const unsigned blocks = static_cast<unsigned>((rows + kThreads - 1) / kThreads);
  const size_t smem = static_cast<size_t>(n) * kThreads * sizeof(float);
  GptqBlockKernel<<<blocks, kThreads, smem>>>(wt, hinv, hinv_stride, scale, zero, maxq, qt, codes,
                                              err, loss, n, rows);
  return cudaGetLastError();
}

}  // namespace baq::worker::cuda_internal
