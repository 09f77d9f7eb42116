// DataDirCollector on a real temporary data dir: file-system capacity and
// free space, and one checkpoint series per job directory with its bytes.
#include "coordinator/data_dir_collector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;

std::map<std::string, double> Values(const DataDirCollector& c) {
  std::map<std::string, double> out;
  for (const prometheus::MetricFamily& f : c.Collect()) {
    for (const prometheus::ClientMetric& m : f.metric) {
      out[f.name + (m.label.empty() ? "" : "/" + m.label[0].value)] = m.gauge.value;
    }
  }
  return out;
}

void WriteBytes(const fs::path& path, size_t n) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << std::string(n, 'x');
}

TEST(DataDirCollectorTest, ReportsFreeSpaceAndCheckpointBytesPerJob) {
  const fs::path dir = fs::path(::testing::TempDir()) / "data_dir_collector_test";
  fs::remove_all(dir);
  WriteBytes(dir / "jobs" / "job-a" / "block-0.out", 1000);
  WriteBytes(dir / "jobs" / "job-a" / "manifest.json", 24);
  WriteBytes(dir / "jobs" / "job-b" / "sub" / "inputs-3.bin", 4096);
  WriteBytes(dir / "jobs" / "job-a.json", 77);  // A job record, not a checkpoint.

  const auto v = Values(DataDirCollector(dir.string()));
  EXPECT_GT(v.at("baq_coordinator_data_dir_capacity_bytes"), 0);
  EXPECT_GT(v.at("baq_coordinator_data_dir_free_bytes"), 0);
  EXPECT_LE(v.at("baq_coordinator_data_dir_free_bytes"),
            v.at("baq_coordinator_data_dir_capacity_bytes"));
  EXPECT_EQ(v.at("baq_coordinator_job_checkpoint_bytes/job-a"), 1024);
  EXPECT_EQ(v.at("baq_coordinator_job_checkpoint_bytes/job-b"), 4096);
  EXPECT_EQ(v.count("baq_coordinator_job_checkpoint_bytes/job-a.json"), 0u);
  fs::remove_all(dir);
}

TEST(DataDirCollectorTest, MissingDirExportsNothing) {
  EXPECT_TRUE(DataDirCollector("/nonexistent/baq-data").Collect().empty());
}

}  // namespace
}  // namespace baq::coordinator
