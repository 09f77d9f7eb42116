// worker/service/nvml_library.h
//
// NvmlLibrary: the few NVIDIA Management Library (NVML) calls the worker's
// GPU metrics need, loaded at run time with dlopen from libnvidia-ml.so.1
// (the driver installs it; the CUDA toolkit ships only a stub). The worker
// binary therefore neither links nor requires NVML: on a host without the
// driver Load() fails and the worker runs without GPU metrics. The NVML types
// used here are declared below from NVML's stable C ABI (nvml.h is not
// needed at build time); the versioned entry points (_v2) are the ones
// nvml.h has mapped the plain names to since CUDA 9.
//
// Thread-safe: NVML calls are; the object is immutable after Load(). Owns the
// dlopen handle and the nvmlInit/nvmlShutdown pairing.
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::unique_ptr<NvmlLibrary> nvml, NvmlLibrary::Load());
//   BAQ_ASSIGN_OR_RETURN(NvmlLibrary::Device d, nvml->DeviceByIndex(0));
//   BAQ_ASSIGN_OR_RETURN(NvmlLibrary::Memory m, nvml->MemoryInfo(d));
#ifndef BAQ_WORKER_SERVICE_NVML_LIBRARY_H_
#define BAQ_WORKER_SERVICE_NVML_LIBRARY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace baq::worker {

class NvmlLibrary {
 public:
  // NVML's opaque device handle (nvmlDevice_t).
  using Device = struct NvmlDeviceOpaque*;
  struct Memory {  // nvmlMemory_t (v1): bytes.
    uint64_t total = 0;
    uint64_t free = 0;
    uint64_t used = 0;
  };
  struct Utilization {  // nvmlUtilization_t: percent over NVML's last sample period.
    unsigned int gpu = 0;
    unsigned int memory = 0;
  };

  // dlopens `path` (a file name is searched the way the dynamic loader
  // does) and calls nvmlInit. Unavailable when the library is missing or a
  // symbol is absent; Internal when nvmlInit fails (no driver loaded).
  static absl::StatusOr<std::unique_ptr<NvmlLibrary>> Load(
      const std::string& path = "libnvidia-ml.so.1");
  ~NvmlLibrary();

  NvmlLibrary(const NvmlLibrary&) = delete;
  NvmlLibrary& operator=(const NvmlLibrary&) = delete;

  absl::StatusOr<unsigned int> DeviceCount() const;
  absl::StatusOr<Device> DeviceByIndex(unsigned int index) const;
  absl::StatusOr<std::string> Uuid(Device device) const;  // "GPU-8f4c..."
  absl::StatusOr<Memory> MemoryInfo(Device device) const;
  absl::StatusOr<Utilization> UtilizationRates(Device device) const;

 private:
  struct Api;  // The resolved entry points.
  NvmlLibrary(void* handle, std::unique_ptr<Api> api);
  absl::Status Check(int result, const char* call) const;

  void* const handle_;  // dlopen handle, closed by the destructor.
  const std::unique_ptr<Api> api_;
};

}  // namespace baq::worker

#endif  // BAQ_WORKER_SERVICE_NVML_LIBRARY_H_
