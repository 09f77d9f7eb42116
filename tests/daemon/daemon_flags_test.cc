// The daemons' shared command-line plumbing: ParseDaemonCommandLine sets the
// usage text and parses the daemon's flags; StartMetricsEndpointIfSet starts
// a /metrics endpoint only when given an address.
#include "daemon/daemon_flags.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"

ABSL_FLAG(int, daemon_flags_test_value, 0, "A flag for ParseDaemonCommandLine to set.");

namespace baq::daemon {
namespace {

using ::testing::HasSubstr;

TEST(DaemonFlagsTest, ParseSetsTheUsageAndTheFlags) {
  std::vector<std::string> args = {"daemon_flags_test", "--daemon_flags_test_value=7"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  ParseDaemonCommandLine(static_cast<int>(argv.size()), argv.data(), "tests the daemon flags",
                         "tests/daemon/daemon_flags_test.cc");
  EXPECT_EQ(absl::GetFlag(FLAGS_daemon_flags_test_value), 7);
  EXPECT_EQ(absl::ProgramUsageMessage(), "tests the daemon flags");
}

TEST(DaemonFlagsTest, NoMetricsEndpointWithoutAnAddress) {
  auto exposer = StartMetricsEndpointIfSet("", std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  EXPECT_EQ(*exposer, nullptr);
}

// What the endpoint serves is StartMetricsEndpoint's (daemon_test.cc).
TEST(DaemonFlagsTest, MetricsEndpointWithAnAddressListens) {
  auto exposer = StartMetricsEndpointIfSet("127.0.0.1:0", std::make_shared<prometheus::Registry>());
  ASSERT_TRUE(exposer.ok()) << exposer.status();
  ASSERT_NE(*exposer, nullptr);
  ASSERT_EQ((*exposer)->GetListeningPorts().size(), 1u);
  EXPECT_GT((*exposer)->GetListeningPorts()[0], 0);
}

TEST(DaemonFlagsTest, MetricsEndpointOnATakenPortIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto first = StartMetricsEndpointIfSet("127.0.0.1:0", registry);
  ASSERT_TRUE(first.ok() && *first != nullptr);
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->GetListeningPorts()[0]);
  auto second = StartMetricsEndpointIfSet(taken, registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(taken));
}

}  // namespace
}  // namespace baq::daemon
