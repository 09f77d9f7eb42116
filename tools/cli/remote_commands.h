// tools/cli/remote_commands.h
//
// The subcommands that talk to a coordinator daemon (baq.v1.JobService):
// submit, status, watch, cancel, list, delete. Each prints its results to `out` —
// text for people, or with output.json one JSON object (JSON lines for
// watch and submit --wait; docs/cli.md) — progress bars to stderr when
// output.progress, and returns the command's status: OK, the RPC's error
// (with the coordinator's canonical code), or — for watch and submit
// --wait — the job's own error when it ends FAILED, FAILED_GATE or
// CANCELLED, carrying the exit code of that outcome (exit_codes.h). Every RPC has a deadline (`timeout`, or
// `watch_deadline` for the whole watch, reconnects included). Not thread-safe (called once from
// main).
//
// Example:
//   RemoteCommandOptions o;
//   o.coordinator = "127.0.0.1:7000";
//   o.config = config;  // from the same flags as `baq quantize`
//   o.wait = true;
//   return Finish(RunSubmit(o));
#ifndef BAQ_TOOLS_CLI_REMOTE_COMMANDS_H_
#define BAQ_TOOLS_CLI_REMOTE_COMMANDS_H_

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/job_config.h"
#include "net/tls_credentials.h"
#include "tools/cli/cli_output.h"

namespace baq::cli {

struct RemoteCommandOptions {
  // Coordinator gRPC address, HOST:PORT.
  std::string coordinator = "127.0.0.1:7000";
  // status, watch, cancel: the job.
  std::string job_id;
  // submit: watch the job until it ends.
  bool wait = false;
  // submit: the job. Paths are resolved on the workers (model, calibration)
  // and the coordinator (output).
  JobConfig config;
  // submit: idempotency key; empty: a random one, reused for the retries of
  // this submission (Submit is retried on UNAVAILABLE).
  std::string request_id;
  // submit: scheduling priority (higher first) and tenant (used when the
  // coordinator authenticates no caller).
  int priority = 0;
  std::string tenant;
  // submit: the job's labels (docs/api.md, JobSpec.labels); list: only jobs
  // carrying all of them.
  std::map<std::string, std::string> labels;
  // list: only jobs in one of these states (JSON names: queued, running, ...)
  // and, when list_tenant is set, of that tenant.
  std::vector<std::string> list_states;
  std::string list_tenant;
  // delete: also remove the outputs the job published.
  bool delete_outputs = false;
  // Deadline of each unary RPC.
  absl::Duration timeout = absl::Seconds(30);
  // watch, submit --wait: deadline of the whole watch, reconnects included
  // (a job may run for hours). When it passes the command fails
  // DEADLINE_EXCEEDED (exit 7); the job itself goes on.
  absl::Duration watch_deadline = absl::Hours(72);
  // watch, submit --wait: how long to keep reconnecting while the
  // coordinator is unreachable (a restart, a network partition), counted
  // from the last event received. Reconnects back off exponentially from
  // reconnect_backoff to 30 s.
  absl::Duration reconnect_deadline = absl::Hours(1);
  absl::Duration reconnect_backoff = absl::Milliseconds(500);
  // TLS to the coordinator: ca_file verifies it (empty with a client
  // certificate: the system roots), cert/key are the client certificate for
  // mutual TLS; nothing named: plaintext.
  net::TlsOptions tls;
  // Sent as `authorization: Bearer <token>` on every RPC; empty: none.
  std::string auth_token;
  // Text or JSON on `out`; progress on stderr.
  OutputOptions output;
};

absl::Status RunSubmit(const RemoteCommandOptions& options, std::FILE* out = stdout);
absl::Status RunStatus(const RemoteCommandOptions& options, std::FILE* out = stdout);
absl::Status RunWatch(const RemoteCommandOptions& options, std::FILE* out = stdout);
absl::Status RunCancel(const RemoteCommandOptions& options, std::FILE* out = stdout);
absl::Status RunList(const RemoteCommandOptions& options, std::FILE* out = stdout);
absl::Status RunDelete(const RemoteCommandOptions& options, std::FILE* out = stdout);

}  // namespace baq::cli

#endif  // BAQ_TOOLS_CLI_REMOTE_COMMANDS_H_
