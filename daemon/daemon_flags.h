// daemon/daemon_flags.h
//
// Command-line and endpoint plumbing that baq-coordinator's and baq-worker's
// main.cc share; each daemon still defines its own flags (ABSL_FLAG) in its
// main.cc, where `--help` and the deployment checks (tests/deploy) find them.
//
// ParseDaemonCommandLine sets the usage text, limits `--help` to the flags of
// the daemon's main.cc (Abseil would otherwise list only flags of a file
// named after the binary, i.e. none), and parses argv.
//
// StartMetricsEndpointIfSet is StartMetricsEndpoint (daemon/daemon.h) for an
// optional --metrics_listen: empty address, no endpoint.
//
// Thread-compatible free functions; call ParseDaemonCommandLine once, first
// thing in main().
//
// Example:
//   baq::daemon::ParseDaemonCommandLine(argc, argv, kUsage, "worker/main.cc");
//   auto exposer = baq::daemon::StartMetricsEndpointIfSet(
//       absl::GetFlag(FLAGS_metrics_listen), registry);
//   if (!exposer.ok()) ...  // the daemon decides: exit, or go on without
#ifndef BAQ_DAEMON_DAEMON_FLAGS_H_
#define BAQ_DAEMON_DAEMON_FLAGS_H_

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/daemon.h"

namespace baq::daemon {

// Sets `usage` as the program usage message, makes --help (and --helpshort)
// list the flags defined in the source file whose path ends with `main_file`
// ("coordinator/main.cc"), and parses argv with absl::ParseCommandLine: on
// --help, --version or a bad flag it prints and exits the process.
// REQUIRES: called once per process (Abseil allows one usage message).
void ParseDaemonCommandLine(int argc, char** argv, absl::string_view usage,
                            absl::string_view main_file);

// nullptr when `address` is empty; else StartMetricsEndpoint(address,
// registry), with its Unavailable error naming the address.
absl::StatusOr<std::unique_ptr<MetricsEndpoint>> StartMetricsEndpointIfSet(
    const std::string& address, std::shared_ptr<prometheus::Registry> registry);

}  // namespace baq::daemon

#endif  // BAQ_DAEMON_DAEMON_FLAGS_H_
