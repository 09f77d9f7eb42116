#include "worker/service/gpu_collector.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace baq::worker {
namespace {

// The NVML device CUDA calls ordinal `ordinal` (see the header).
absl::StatusOr<NvmlLibrary::Device> Resolve(const NvmlLibrary& nvml, int ordinal,
                                            const std::string& cuda_visible_devices) {
  if (cuda_visible_devices.empty()) return nvml.DeviceByIndex(static_cast<unsigned int>(ordinal));
  std::vector<std::string> visible =
      absl::StrSplit(cuda_visible_devices, ',', absl::SkipWhitespace());
  if (ordinal >= static_cast<int>(visible.size())) {
    return absl::NotFoundError(
        absl::StrCat("cuda:", ordinal, " is not in CUDA_VISIBLE_DEVICES=", cuda_visible_devices));
  }
  const std::string entry(absl::StripAsciiWhitespace(visible[static_cast<size_t>(ordinal)]));
  unsigned int index = 0;
  if (absl::SimpleAtoi(entry, &index)) return nvml.DeviceByIndex(index);
  if (absl::StartsWith(entry, "GPU-")) {
    absl::StatusOr<unsigned int> count = nvml.DeviceCount();
    if (!count.ok()) return count.status();
    for (unsigned int i = 0; i < *count; ++i) {
      absl::StatusOr<NvmlLibrary::Device> d = nvml.DeviceByIndex(i);
      if (!d.ok()) continue;
      absl::StatusOr<std::string> uuid = nvml.Uuid(*d);
      if (uuid.ok() && absl::StartsWith(*uuid, entry)) return *d;
    }
  }
  return absl::NotFoundError(absl::StrCat("cuda:", ordinal, " (CUDA_VISIBLE_DEVICES entry ", entry,
                                          ") matches no NVML device"));
}

prometheus::ClientMetric GaugeMetric(const std::string& device, double value) {
  prometheus::ClientMetric m;
  if (!device.empty()) m.label.push_back({"device", device});
  m.gauge.value = value;
  return m;
}

prometheus::MetricFamily GaugeFamily(const char* name, const char* help) {
  return prometheus::MetricFamily{name, help, prometheus::MetricType::Gauge, {}};
}

}  // namespace

GpuCollector::GpuCollector(GpuCollectorOptions options) {
  std::vector<std::pair<std::string, int>> served;
  for (const std::string& device : options.devices) {
    absl::string_view rest = device;
    int ordinal = 0;
    if (absl::ConsumePrefix(&rest, "cuda:") && absl::SimpleAtoi(rest, &ordinal) && ordinal >= 0) {
      served.emplace_back(device, ordinal);
    }
  }
  serves_gpus_ = !served.empty();
  if (!serves_gpus_) return;
  if (options.nvml_library.empty()) {
    status_ = absl::FailedPreconditionError("GPU metrics are off (no NVML library)");
    return;
  }
  absl::StatusOr<std::unique_ptr<NvmlLibrary>> nvml = NvmlLibrary::Load(options.nvml_library);
  if (!nvml.ok()) {
    status_ = nvml.status();
    return;
  }
  nvml_ = *std::move(nvml);
  for (const auto& [device, ordinal] : served) {
    absl::StatusOr<NvmlLibrary::Device> handle =
        Resolve(*nvml_, ordinal, options.cuda_visible_devices);
    if (handle.ok()) {
      gpus_.push_back({device, *handle});
    } else if (status_.ok()) {
      status_ = handle.status();
    }
  }
}

std::vector<prometheus::MetricFamily> GpuCollector::Collect() const {
  if (!serves_gpus_) return {};
  prometheus::MetricFamily up =
      GaugeFamily("baq_worker_nvml_up", "1: every GPU the worker serves is read through NVML");
  prometheus::MetricFamily used = GaugeFamily("baq_worker_gpu_memory_used_bytes",
                                              "GPU memory in use on the device (all processes)");
  prometheus::MetricFamily total =
      GaugeFamily("baq_worker_gpu_memory_total_bytes", "GPU memory of the device");
  prometheus::MetricFamily busy = GaugeFamily(
      "baq_worker_gpu_utilization_ratio",
      "Fraction of NVML's last sample period in which a kernel ran on the device, 0..1");
  bool all_read = status_.ok();
  for (const Gpu& gpu : gpus_) {
    absl::StatusOr<NvmlLibrary::Memory> memory = nvml_->MemoryInfo(gpu.handle);
    if (memory.ok()) {
      used.metric.push_back(GaugeMetric(gpu.device, static_cast<double>(memory->used)));
      total.metric.push_back(GaugeMetric(gpu.device, static_cast<double>(memory->total)));
    } else {
      all_read = false;
    }
    absl::StatusOr<NvmlLibrary::Utilization> rates = nvml_->UtilizationRates(gpu.handle);
    if (rates.ok()) {
      busy.metric.push_back(GaugeMetric(gpu.device, rates->gpu / 100.0));
    } else {
      all_read = false;
    }
  }
  up.metric.push_back(GaugeMetric("", all_read ? 1 : 0));
  std::vector<prometheus::MetricFamily> out;
  out.push_back(std::move(up));
  for (prometheus::MetricFamily* f : {&used, &total, &busy}) {
    if (!f->metric.empty()) out.push_back(std::move(*f));
  }
  return out;
}

}  // namespace baq::worker
