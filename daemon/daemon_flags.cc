#include "daemon/daemon_flags.h"

#include <string>
#include <utility>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "daemon/daemon.h"

namespace baq::daemon {

void ParseDaemonCommandLine(int argc, char** argv, absl::string_view usage,
                            absl::string_view main_file) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [file = std::string(main_file)](absl::string_view path) {
    return absl::EndsWith(path, file);
  };
  absl::SetFlagsUsageConfig(std::move(config));
  absl::ParseCommandLine(argc, argv);
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartMetricsEndpointIfSet(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry) {
  if (address.empty()) return std::unique_ptr<MetricsEndpoint>();
  return StartMetricsEndpoint(address, std::move(registry));
}

}  // namespace baq::daemon
