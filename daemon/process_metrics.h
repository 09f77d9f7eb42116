// daemon/process_metrics.h
//
// ProcessCollector: the memory, CPU and file descriptors of the calling
// process, read from /proc at scrape time, as the standard Prometheus
// process metrics (the names the Go and Python clients' process collectors
// export, so stock dashboards and alerts work; prometheus-cpp has none):
//
//   process_resident_memory_bytes             VmRSS
//   process_virtual_memory_bytes              VmSize
//   baq_process_peak_resident_memory_bytes    VmHWM (peak RSS since start; no standard name)
//   process_cpu_seconds_total                 utime + stime
//   process_open_fds                          entries of /proc/self/fd
//   process_start_time_seconds                Unix time the process started
//
// Both daemons register it on their /metrics endpoint (StartMetricsEndpoint
// in daemon/daemon.h does), so the dashboard's memory panels read the same
// series from the coordinator and every worker. A field /proc does not give
// (another OS, a restricted /proc) is left out of the scrape, not reported 0.
//
// Thread-safe: Collect() reads /proc and keeps no state.
//
// Example:
//   auto process = std::make_shared<ProcessCollector>();
//   exposer.RegisterCollectable(process);
#ifndef BAQ_DAEMON_PROCESS_METRICS_H_
#define BAQ_DAEMON_PROCESS_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace baq::daemon {

// One reading of a process's /proc files; fields /proc did not give are empty.
struct ProcessStats {
  std::optional<int64_t> resident_bytes;
  std::optional<int64_t> peak_resident_bytes;
  std::optional<int64_t> virtual_bytes;
  std::optional<double> cpu_seconds;
  std::optional<int64_t> open_fds;
  std::optional<double> start_time_seconds;
};

// Parses the text of /proc/<pid>/status (VmRSS, VmHWM, VmSize: "kB" values)
// into `stats`; lines it does not know are ignored.
void ParseProcStatus(absl::string_view status, ProcessStats& stats);
// Parses /proc/<pid>/stat: utime and stime (fields 14, 15) and starttime
// (field 22), in clock ticks of `ticks_per_second`, plus `boot_time_seconds`
// (btime of /proc/stat) for the start time. The command name (field 2) may
// hold spaces and parentheses: fields are counted after its last ')'.
void ParseProcStat(absl::string_view stat, int64_t ticks_per_second, double boot_time_seconds,
                   ProcessStats& stats);

// Reads `proc_dir` (a /proc/<pid> directory; "/proc/self" for this process).
ProcessStats ReadProcessStats(const std::string& proc_dir = "/proc/self");

class ProcessCollector : public prometheus::Collectable {
 public:
  explicit ProcessCollector(std::string proc_dir = "/proc/self") : proc_dir_(std::move(proc_dir)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string proc_dir_;
};

}  // namespace baq::daemon

#endif  // BAQ_DAEMON_PROCESS_METRICS_H_
