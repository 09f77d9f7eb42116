#include "worker/service/nvml_library.h"

#include <dlfcn.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace baq::worker {

// Signatures from nvml.h; nvmlReturn_t is an int-sized enum (0: NVML_SUCCESS).
struct NvmlLibrary::Api {
  int (*init)() = nullptr;                             // nvmlInit_v2
  int (*shutdown)() = nullptr;                         // nvmlShutdown
  const char* (*error_string)(int) = nullptr;          // nvmlErrorString
  int (*device_count)(unsigned int*) = nullptr;        // nvmlDeviceGetCount_v2
  int (*by_index)(unsigned int, Device*) = nullptr;    // nvmlDeviceGetHandleByIndex_v2
  int (*uuid)(Device, char*, unsigned int) = nullptr;  // nvmlDeviceGetUUID
  int (*memory)(Device, Memory*) = nullptr;            // nvmlDeviceGetMemoryInfo
  int (*utilization)(Device, Utilization*) = nullptr;  // nvmlDeviceGetUtilizationRates
};

namespace {

template <typename Fn>
bool Resolve(void* handle, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  return fn != nullptr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NvmlLibrary>> NvmlLibrary::Load(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = dlerror();
    return absl::UnavailableError(absl::StrCat("cannot load NVML (", path,
                                               "): ", error != nullptr ? error : "dlopen failed"));
  }
  auto api = std::make_unique<Api>();
  for (auto [name, ok] : {
           std::pair{"nvmlInit_v2", Resolve(handle, "nvmlInit_v2", api->init)},
           std::pair{"nvmlShutdown", Resolve(handle, "nvmlShutdown", api->shutdown)},
           std::pair{"nvmlErrorString", Resolve(handle, "nvmlErrorString", api->error_string)},
           std::pair{"nvmlDeviceGetCount_v2",
                     Resolve(handle, "nvmlDeviceGetCount_v2", api->device_count)},
           std::pair{"nvmlDeviceGetHandleByIndex_v2",
                     Resolve(handle, "nvmlDeviceGetHandleByIndex_v2", api->by_index)},
           std::pair{"nvmlDeviceGetUUID", Resolve(handle, "nvmlDeviceGetUUID", api->uuid)},
           std::pair{"nvmlDeviceGetMemoryInfo",
                     Resolve(handle, "nvmlDeviceGetMemoryInfo", api->memory)},
           std::pair{"nvmlDeviceGetUtilizationRates",
                     Resolve(handle, "nvmlDeviceGetUtilizationRates", api->utilization)},
       }) {
    if (!ok) {
      dlclose(handle);
      return absl::UnavailableError(absl::StrCat("NVML (", path, ") has no ", name));
    }
  }
  if (const int result = api->init(); result != 0) {
    const std::string why = api->error_string(result);
    dlclose(handle);
    return absl::InternalError(absl::StrCat("nvmlInit (", path, "): ", why));
  }
  return std::unique_ptr<NvmlLibrary>(new NvmlLibrary(handle, std::move(api)));
}

NvmlLibrary::NvmlLibrary(void* handle, std::unique_ptr<Api> api)
    : handle_(handle), api_(std::move(api)) {}

NvmlLibrary::~NvmlLibrary() {
  api_->shutdown();
  dlclose(handle_);
}

absl::Status NvmlLibrary::Check(int result, const char* call) const {
  if (result == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(call, ": ", api_->error_string(result)));
}

absl::StatusOr<unsigned int> NvmlLibrary::DeviceCount() const {
  unsigned int n = 0;
  if (absl::Status s = Check(api_->device_count(&n), "nvmlDeviceGetCount"); !s.ok()) return s;
  return n;
}

absl::StatusOr<NvmlLibrary::Device> NvmlLibrary::DeviceByIndex(unsigned int index) const {
  Device device = nullptr;
  absl::Status s = Check(api_->by_index(index, &device), "nvmlDeviceGetHandleByIndex");
  if (!s.ok())
    return absl::Status(s.code(), absl::StrCat("NVML device ", index, ": ", s.message()));
  return device;
}

absl::StatusOr<std::string> NvmlLibrary::Uuid(Device device) const {
  char buffer[96] = {};  // NVML_DEVICE_UUID_V2_BUFFER_SIZE is 96.
  if (absl::Status s = Check(api_->uuid(device, buffer, sizeof(buffer)), "nvmlDeviceGetUUID");
      !s.ok()) {
    return s;
  }
  return std::string(buffer);
}

absl::StatusOr<NvmlLibrary::Memory> NvmlLibrary::MemoryInfo(Device device) const {
  Memory m;
  if (absl::Status s = Check(api_->memory(device, &m), "nvmlDeviceGetMemoryInfo"); !s.ok()) {
    return s;
  }
  return m;
}

absl::StatusOr<NvmlLibrary::Utilization> NvmlLibrary::UtilizationRates(Device device) const {
  Utilization u;
  absl::Status s = Check(api_->utilization(device, &u), "nvmlDeviceGetUtilizationRates");
  if (!s.ok()) return s;
  return u;
}

}  // namespace baq::worker
