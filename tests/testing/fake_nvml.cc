// tests/testing/fake_nvml.cc
//
// A stand-in for libnvidia-ml.so.1, built as a loadable module so the
// worker's GPU metrics (worker/service/gpu_collector.h) are tested on hosts
// without a GPU: the same dlopen and symbol lookup as with the real driver.
// Two devices: index i has UUID "GPU-fake<i>-0000-...", 80 GiB of memory of
// which i+1 GiB are used, and a utilization of 25 * (i+1) %. nvmlInit fails
// (NVML_ERROR_DRIVER_NOT_LOADED, 9) when BAQ_FAKE_NVML_FAIL_INIT is set.
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr unsigned int kDevices = 2;
constexpr unsigned long long kGiB = 1ULL << 30;
struct FakeDevice {
  unsigned int index;
};
FakeDevice devices[kDevices] = {{0}, {1}};

}  // namespace

extern "C" {

struct FakeMemory {
  unsigned long long total, free, used;
};
struct FakeUtilization {
  unsigned int gpu, memory;
};

int nvmlInit_v2() { return std::getenv("BAQ_FAKE_NVML_FAIL_INIT") != nullptr ? 9 : 0; }
int nvmlShutdown() { return 0; }
const char* nvmlErrorString(int result) {
  return result == 9 ? "Driver Not Loaded" : result == 2 ? "Invalid Argument" : "Unknown Error";
}
int nvmlDeviceGetCount_v2(unsigned int* count) {
  *count = kDevices;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, FakeDevice** device) {
  if (index >= kDevices) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  *device = &devices[index];
  return 0;
}
int nvmlDeviceGetUUID(FakeDevice* device, char* uuid, unsigned int length) {
  std::snprintf(uuid, length, "GPU-fake%u-0000-0000-0000-000000000000", device->index);
  return 0;
}
int nvmlDeviceGetMemoryInfo(FakeDevice* device, FakeMemory* memory) {
  memory->total = 80 * kGiB;
  memory->used = (device->index + 1) * kGiB;
  memory->free = memory->total - memory->used;
  return 0;
}
int nvmlDeviceGetUtilizationRates(FakeDevice* device, FakeUtilization* rates) {
  rates->gpu = 25 * (device->index + 1);
  rates->memory = 10;
  return 0;
}

}  // extern "C"
