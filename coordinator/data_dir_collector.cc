#include "coordinator/data_dir_collector.h"

#include <sys/statvfs.h>

#include <filesystem>
#include <system_error>

namespace baq::coordinator {
namespace {

namespace fs = std::filesystem;

prometheus::MetricFamily GaugeFamily(const char* name, const char* help) {
  return prometheus::MetricFamily{name, help, prometheus::MetricType::Gauge, {}};
}

prometheus::ClientMetric GaugeMetric(double value, const std::string& job_id = "") {
  prometheus::ClientMetric m;
  if (!job_id.empty()) m.label.push_back({"job_id", job_id});
  m.gauge.value = value;
  return m;
}

// Bytes of the regular files under `dir`; files that vanish mid-scan (the
// runner replaces checkpoint files by rename) are skipped.
double TreeBytes(const fs::path& dir) {
  double bytes = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code file_ec;
    if (it->is_regular_file(file_ec)) {
      const uintmax_t size = it->file_size(file_ec);
      if (!file_ec) bytes += static_cast<double>(size);
    }
  }
  return bytes;
}

}  // namespace

std::vector<prometheus::MetricFamily> DataDirCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  struct statvfs fs_stats;
  if (statvfs(data_dir_.c_str(), &fs_stats) == 0) {
    prometheus::MetricFamily free_bytes =
        GaugeFamily("baq_coordinator_data_dir_free_bytes",
                    "Bytes still available to the coordinator in its --data_dir file system");
    free_bytes.metric.push_back(GaugeMetric(static_cast<double>(fs_stats.f_bavail) *
                                            static_cast<double>(fs_stats.f_frsize)));
    prometheus::MetricFamily capacity = GaugeFamily("baq_coordinator_data_dir_capacity_bytes",
                                                    "Size of the --data_dir file system, bytes");
    capacity.metric.push_back(GaugeMetric(static_cast<double>(fs_stats.f_blocks) *
                                          static_cast<double>(fs_stats.f_frsize)));
    out.push_back(std::move(free_bytes));
    out.push_back(std::move(capacity));
  }
  prometheus::MetricFamily checkpoints =
      GaugeFamily("baq_coordinator_job_checkpoint_bytes",
                  "Bytes of a running (or interrupted) job's checkpoint in --data_dir, by job");
  std::error_code ec;
  for (fs::directory_iterator it(fs::path(data_dir_) / "jobs", ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code dir_ec;
    if (it->is_directory(dir_ec)) {
      checkpoints.metric.push_back(
          GaugeMetric(TreeBytes(it->path()), it->path().filename().string()));
    }
  }
  if (!checkpoints.metric.empty()) out.push_back(std::move(checkpoints));
  return out;
}

}  // namespace baq::coordinator
