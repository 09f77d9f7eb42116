// ProcessCollector: /proc parsing on fixed texts (the command name may hold
// spaces and parentheses), and a live reading of this test process.
#include "daemon/process_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace baq::daemon {
namespace {

constexpr char kStatus[] = R"(Name:	baq-coordinator
VmPeak:	  900000 kB
VmSize:	  812345 kB
VmHWM:	  204800 kB
VmRSS:	  102400 kB
Threads:	12
)";

TEST(ProcessMetricsTest, ParsesStatusKilobytes) {
  ProcessStats s;
  ParseProcStatus(kStatus, s);
  EXPECT_EQ(s.resident_bytes, 102400LL * 1024);
  EXPECT_EQ(s.peak_resident_bytes, 204800LL * 1024);
  EXPECT_EQ(s.virtual_bytes, 812345LL * 1024);
}

TEST(ProcessMetricsTest, StatusWithoutVmLinesLeavesFieldsEmpty) {
  ProcessStats s;
  ParseProcStatus("Name:\tkthreadd\nState:\tS (sleeping)\n", s);
  EXPECT_FALSE(s.resident_bytes.has_value());
  EXPECT_FALSE(s.peak_resident_bytes.has_value());
}

TEST(ProcessMetricsTest, ParsesStatFieldsAfterTheCommandName) {
  // Fields 14 (utime) = 250, 15 (stime) = 50, 22 (starttime) = 1000 ticks;
  // the command name holds ") (" to trip a parser that counts from the left.
  const std::string stat =
      "4242 (baq) (worker 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 1000 "
      "812345 25600 18446744073709551615";
  ProcessStats s;
  ParseProcStat(stat, /*ticks_per_second=*/100, /*boot_time_seconds=*/1.7e9, s);
  ASSERT_TRUE(s.cpu_seconds.has_value());
  EXPECT_DOUBLE_EQ(*s.cpu_seconds, 3.0);
  ASSERT_TRUE(s.start_time_seconds.has_value());
  EXPECT_DOUBLE_EQ(*s.start_time_seconds, 1.7e9 + 10.0);
}

TEST(ProcessMetricsTest, TruncatedStatGivesNoCpu) {
  ProcessStats s;
  ParseProcStat("4242 (baq) S 1 2 3", 100, 1.7e9, s);
  EXPECT_FALSE(s.cpu_seconds.has_value());
}

TEST(ProcessMetricsTest, CollectReadsThisProcess) {
  std::map<std::string, double> values;
  for (const prometheus::MetricFamily& f : ProcessCollector().Collect()) {
    ASSERT_EQ(f.metric.size(), 1u) << f.name;
    values[f.name] = f.type == prometheus::MetricType::Counter ? f.metric[0].counter.value
                                                               : f.metric[0].gauge.value;
  }
  ASSERT_TRUE(values.count("process_resident_memory_bytes"));
  // A gtest binary linking gRPC and Abseil is at least a megabyte resident,
  // and its peak is never below its current size.
  EXPECT_GT(values["process_resident_memory_bytes"], 1 << 20);
  EXPECT_GE(values["baq_process_peak_resident_memory_bytes"],
            values["process_resident_memory_bytes"]);
  EXPECT_GE(values["process_virtual_memory_bytes"], values["process_resident_memory_bytes"]);
  EXPECT_GE(values["process_open_fds"], 3);  // stdin, stdout, stderr.
  EXPECT_GT(values["process_start_time_seconds"], 1e9);
  EXPECT_TRUE(values.count("process_cpu_seconds_total"));
}

TEST(ProcessMetricsTest, MissingProcDirExportsNothing) {
  EXPECT_TRUE(ProcessCollector("/nonexistent/proc/1").Collect().empty());
}

}  // namespace
}  // namespace baq::daemon
