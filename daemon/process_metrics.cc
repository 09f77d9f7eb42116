#include "daemon/process_metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace baq::daemon {
namespace {

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "  123456 kB" -> bytes.
std::optional<int64_t> ParseKilobytes(absl::string_view value) {
  value = absl::StripAsciiWhitespace(value);
  if (!absl::ConsumeSuffix(&value, "kB")) return std::nullopt;
  int64_t kib = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &kib)) return std::nullopt;
  return kib * 1024;
}

std::optional<int64_t> CountEntries(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return std::nullopt;
  int64_t n = 0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // The descriptor opendir() itself holds.
}

std::optional<double> BootTimeSeconds() {
  std::optional<std::string> stat = ReadFile("/proc/stat");
  if (!stat) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      double btime = 0;
      if (absl::SimpleAtod(line, &btime)) return btime;
    }
  }
  return std::nullopt;
}

prometheus::MetricFamily OneValue(const char* name, const char* help, prometheus::MetricType type,
                                  double value) {
  prometheus::ClientMetric metric;
  (type == prometheus::MetricType::Counter ? metric.counter.value : metric.gauge.value) = value;
  return prometheus::MetricFamily{name, help, type, {metric}};
}

// The helpers' names say the type (tests/deploy/baq_sources.py reads it).
prometheus::MetricFamily GaugeValue(const char* name, const char* help, double value) {
  return OneValue(name, help, prometheus::MetricType::Gauge, value);
}

prometheus::MetricFamily CounterValue(const char* name, const char* help, double value) {
  return OneValue(name, help, prometheus::MetricType::Counter, value);
}

}  // namespace

void ParseProcStatus(absl::string_view status, ProcessStats& stats) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (kv.first == "VmRSS") stats.resident_bytes = ParseKilobytes(kv.second);
    if (kv.first == "VmHWM") stats.peak_resident_bytes = ParseKilobytes(kv.second);
    if (kv.first == "VmSize") stats.virtual_bytes = ParseKilobytes(kv.second);
  }
}

void ParseProcStat(absl::string_view stat, int64_t ticks_per_second, double boot_time_seconds,
                   ProcessStats& stats) {
  const size_t comm_end = stat.rfind(')');
  if (comm_end == absl::string_view::npos || ticks_per_second <= 0) return;
  // After ") ": field 3 (state) is the first; utime is field 14.
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(comm_end + 1), ' ', absl::SkipEmpty());
  auto field = [&fields](int number) -> std::optional<double> {
    const size_t i = static_cast<size_t>(number - 3);
    double v = 0;
    if (i >= fields.size() || !absl::SimpleAtod(fields[i], &v)) return std::nullopt;
    return v;
  };
  const std::optional<double> utime = field(14), stime = field(15), start = field(22);
  const double hz = static_cast<double>(ticks_per_second);
  if (utime && stime) stats.cpu_seconds = (*utime + *stime) / hz;
  if (start && boot_time_seconds > 0) stats.start_time_seconds = boot_time_seconds + *start / hz;
}

ProcessStats ReadProcessStats(const std::string& proc_dir) {
  ProcessStats stats;
  if (std::optional<std::string> status = ReadFile(proc_dir + "/status")) {
    ParseProcStatus(*status, stats);
  }
  if (std::optional<std::string> stat = ReadFile(proc_dir + "/stat")) {
    ParseProcStat(*stat, sysconf(_SC_CLK_TCK), BootTimeSeconds().value_or(0), stats);
  }
  stats.open_fds = CountEntries(proc_dir + "/fd");
  return stats;
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  const ProcessStats s = ReadProcessStats(proc_dir_);
  std::vector<prometheus::MetricFamily> out;
  if (s.resident_bytes) {
    out.push_back(GaugeValue("process_resident_memory_bytes", "Resident memory size in bytes",
                             static_cast<double>(*s.resident_bytes)));
  }
  if (s.virtual_bytes) {
    out.push_back(GaugeValue("process_virtual_memory_bytes", "Virtual memory size in bytes",
                             static_cast<double>(*s.virtual_bytes)));
  }
  if (s.peak_resident_bytes) {
    out.push_back(GaugeValue("baq_process_peak_resident_memory_bytes",
                             "Peak resident memory size since the process started (VmHWM), bytes",
                             static_cast<double>(*s.peak_resident_bytes)));
  }
  if (s.cpu_seconds) {
    out.push_back(CounterValue("process_cpu_seconds_total",
                               "Total user and system CPU time, seconds", *s.cpu_seconds));
  }
  if (s.open_fds) {
    out.push_back(
        GaugeValue("process_open_fds", "Open file descriptors", static_cast<double>(*s.open_fds)));
  }
  if (s.start_time_seconds) {
    out.push_back(GaugeValue("process_start_time_seconds",
                             "Start time of the process since the Unix epoch, seconds",
                             *s.start_time_seconds));
  }
  return out;
}

}  // namespace baq::daemon
