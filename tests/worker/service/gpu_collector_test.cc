// GpuCollector on a host without a GPU: with no NVML (the CPU path every CI
// run takes), and through a fake libnvidia-ml module (tests/testing/
// fake_nvml.cc) loaded with the same dlopen as the real driver.
#include "worker/service/gpu_collector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <string>
#include <utility>

namespace baq::worker {
namespace {

using ::testing::HasSubstr;

// {name -> {device label -> value}} of one Collect().
std::map<std::string, std::map<std::string, double>> Values(const GpuCollector& c) {
  std::map<std::string, std::map<std::string, double>> out;
  for (const prometheus::MetricFamily& f : c.Collect()) {
    for (const prometheus::ClientMetric& m : f.metric) {
      out[f.name][m.label.empty() ? "" : m.label[0].value] = m.gauge.value;
    }
  }
  return out;
}

GpuCollectorOptions Fake(std::vector<std::string> devices, std::string visible = "") {
  GpuCollectorOptions o;
  o.devices = std::move(devices);
  o.cuda_visible_devices = std::move(visible);
  o.nvml_library = BAQ_FAKE_NVML_PATH;
  return o;
}

TEST(GpuCollectorTest, CpuWorkerExportsNothingAndNeedsNoNvml) {
  GpuCollectorOptions o;
  o.devices = {"cpu"};
  o.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  GpuCollector c(o);
  EXPECT_TRUE(c.status().ok());
  EXPECT_TRUE(c.Collect().empty());
}

TEST(GpuCollectorTest, MissingNvmlReportsDownAndNoGpuSeries) {
  GpuCollectorOptions o;
  o.devices = {"cuda:0"};
  o.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  GpuCollector c(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("/nonexistent/libnvidia-ml.so.1"));
  const auto v = Values(c);
  EXPECT_EQ(v.at("baq_worker_nvml_up").at(""), 0);
  EXPECT_EQ(v.count("baq_worker_gpu_memory_used_bytes"), 0u);
}

TEST(GpuCollectorTest, ReadsServedDevicesThroughNvml) {
  GpuCollector c(Fake({"cpu", "cuda:0", "cuda:1"}));
  ASSERT_TRUE(c.status().ok()) << c.status();
  const auto v = Values(c);
  EXPECT_EQ(v.at("baq_worker_nvml_up").at(""), 1);
  EXPECT_EQ(v.at("baq_worker_gpu_memory_used_bytes").at("cuda:0"), 1.0 * (1 << 30));
  EXPECT_EQ(v.at("baq_worker_gpu_memory_used_bytes").at("cuda:1"), 2.0 * (1 << 30));
  EXPECT_EQ(v.at("baq_worker_gpu_memory_total_bytes").at("cuda:1"), 80.0 * (1 << 30));
  EXPECT_DOUBLE_EQ(v.at("baq_worker_gpu_utilization_ratio").at("cuda:0"), 0.25);
  EXPECT_EQ(v.at("baq_worker_gpu_memory_used_bytes").count("cpu"), 0u);
}

TEST(GpuCollectorTest, MapsOrdinalsThroughCudaVisibleDevices) {
  // cuda:0 is NVML index 1, by index and by UUID prefix.
  for (const char* visible : {"1,0", "GPU-fake1"}) {
    GpuCollector c(Fake({"cuda:0"}, visible));
    ASSERT_TRUE(c.status().ok()) << visible << ": " << c.status();
    EXPECT_EQ(Values(c).at("baq_worker_gpu_memory_used_bytes").at("cuda:0"), 2.0 * (1 << 30))
        << visible;
  }
}

TEST(GpuCollectorTest, UnresolvedDeviceIsNamedAndReportedDown) {
  GpuCollector c(Fake({"cuda:0", "cuda:1"}, "0"));
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("cuda:1"));
  const auto v = Values(c);
  EXPECT_EQ(v.at("baq_worker_nvml_up").at(""), 0);
  EXPECT_EQ(v.at("baq_worker_gpu_memory_used_bytes").size(), 1u);  // cuda:0 still read.
}

TEST(GpuCollectorTest, FailedInitIsInternal) {
  setenv("BAQ_FAKE_NVML_FAIL_INIT", "1", 1);
  GpuCollector c(Fake({"cuda:0"}));
  unsetenv("BAQ_FAKE_NVML_FAIL_INIT");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("Driver Not Loaded"));
}

}  // namespace
}  // namespace baq::worker
