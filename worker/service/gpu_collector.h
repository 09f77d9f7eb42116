// worker/service/gpu_collector.h
//
// GpuCollector: the memory and utilization of the GPUs a worker serves, read
// through NVML (worker/service/nvml_library.h) at scrape time:
//
//   baq_worker_gpu_memory_used_bytes{device}    device memory in use (all processes)
//   baq_worker_gpu_memory_total_bytes{device}   device memory
//   baq_worker_gpu_utilization_ratio{device}    fraction of the last sample period a
//                                               kernel ran, 0..1 (NVML's "gpu" rate)
//   baq_worker_nvml_up                          1: every served GPU is read; 0: NVML
//                                               is missing or a device did not resolve
//
// `device` is the worker's own name for the GPU ("cuda:0", as in --devices
// and baq_worker_busy), so the dashboard can put busy time and memory side by
// side. CUDA ordinals are mapped to NVML devices through CUDA_VISIBLE_DEVICES
// (the caller passes its value; libraries read no environment): unset,
// cuda:N is NVML index N; a list of indices maps cuda:N to the N-th index; a
// list of UUIDs ("GPU-8f4c...", prefixes allowed as CUDA allows them) to the
// NVML device with that UUID. MIG instances ("MIG-...") are not resolved.
// This assumes CUDA_DEVICE_ORDER=PCI_BUS_ID or identical GPUs, since CUDA's
// default order puts the fastest GPU first and NVML's follows the PCI bus.
//
// Every metric is exported only by a worker serving at least one CUDA
// device; a CPU worker's scrape has none of them. Memory is the device's, so
// two workers sharing one GPU report the same numbers.
//
// Thread-safe: Collect() only reads (NVML calls are thread-safe).
//
// Example:
//   auto gpus = std::make_shared<GpuCollector>(GpuCollectorOptions{
//       .devices = {"cuda:0", "cuda:1"}, .cuda_visible_devices = getenv(...) ?: ""});
//   endpoint->Add(gpus);
#ifndef BAQ_WORKER_SERVICE_GPU_COLLECTOR_H_
#define BAQ_WORKER_SERVICE_GPU_COLLECTOR_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/service/nvml_library.h"

namespace baq::worker {

struct GpuCollectorOptions {
  // The worker's devices (--devices); only "cuda:N" entries are read.
  std::vector<std::string> devices;
  // The value of CUDA_VISIBLE_DEVICES; empty: unset.
  std::string cuda_visible_devices;
  // The NVML library to dlopen; empty: no GPU metrics at all.
  std::string nvml_library = "libnvidia-ml.so.1";
};

class GpuCollector : public prometheus::Collectable {
 public:
  explicit GpuCollector(GpuCollectorOptions options);

  std::vector<prometheus::MetricFamily> Collect() const override;

  // Why some served GPU is not read (OK when all are, or none is served).
  const absl::Status& status() const { return status_; }

 private:
  struct Gpu {
    std::string device;  // "cuda:N"
    NvmlLibrary::Device handle = nullptr;
  };

  bool serves_gpus_ = false;
  absl::Status status_;
  std::unique_ptr<NvmlLibrary> nvml_;  // Null without NVML.
  std::vector<Gpu> gpus_;              // The resolved ones.
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_GPU_COLLECTOR_H_
