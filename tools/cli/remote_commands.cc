#include "tools/cli/remote_commands.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "baq/v1/job.grpc.pb.h"
#include "common/status_macros.h"
#include "coordinator/job_convert.h"
#include "net/tls_credentials.h"
#include "proto/convert.h"
#include "tools/cli/cli_output.h"
#include "tools/cli/exit_codes.h"
#include "tools/cli/job_json.h"
#include "tools/cli/progress_bar.h"

namespace baq::cli {
namespace {

// Idempotent reads are retried by the channel when the coordinator is
// briefly unreachable (a restart); Submit is retried below with its key.
constexpr char kServiceConfig[] = R"json({
  "methodConfig": [{
    "name": [{"service": "baq.v1.JobService", "method": "Get"},
             {"service": "baq.v1.JobService", "method": "List"},
             {"service": "baq.v1.JobService", "method": "Cancel"}],
    "retryPolicy": {
      "maxAttempts": 4, "initialBackoff": "0.5s", "maxBackoff": "4s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})json";

constexpr int kSubmitAttempts = 4;
constexpr int kListPageSize = 500;
constexpr absl::Duration kRetryPause = absl::Seconds(1);
constexpr absl::Duration kMaxReconnectBackoff = absl::Seconds(30);

// A Watch stream that ended this way may be opened again: the coordinator
// went away (UNAVAILABLE: killed, restarting, unreachable; CANCELLED: it
// shut down gracefully and cancelled its streams; OK before the terminal
// event: it ended the stream early). Watch is a read, so it is always safe.
bool Reconnectable(const grpc::Status& status) {
  return status.ok() || status.error_code() == grpc::StatusCode::UNAVAILABLE ||
         status.error_code() == grpc::StatusCode::CANCELLED;
}

absl::StatusOr<std::unique_ptr<v1::JobService::Stub>> Connect(const RemoteCommandOptions& o) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(kServiceConfig);
  BAQ_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                       net::MakeChannelCredentials(o.tls));
  return v1::JobService::NewStub(grpc::CreateCustomChannel(o.coordinator, credentials, args));
}

// The bearer token (if any) rides as metadata on every call, so it also
// works over plaintext in development; send it over TLS in production.
void Authorize(grpc::ClientContext& ctx, const RemoteCommandOptions& o) {
  if (!o.auth_token.empty()) ctx.AddMetadata("authorization", "Bearer " + o.auth_token);
}

void SetDeadline(grpc::ClientContext& ctx, const RemoteCommandOptions& o, absl::Duration timeout) {
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  Authorize(ctx, o);
}

absl::Status Rpc(const RemoteCommandOptions& o, const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  absl::Status status = FromGrpcStatus(s);
  return absl::Status(status.code(),
                      absl::StrCat("coordinator ", o.coordinator, ": ", status.message()));
}

std::string RandomRequestId() {
  absl::BitGen gen;
  return absl::StrFormat("cli-%016x%016x", absl::Uniform<uint64_t>(gen),
                         absl::Uniform<uint64_t>(gen));
}

std::string Time(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", absl::FromUnixMillis(unix_ms),
                          absl::LocalTimeZone());
}

// The job's own outcome as a status: OK only when it succeeded.
absl::Status JobOutcome(const v1::JobEvent& last, const std::string& error_code,
                        const std::string& error) {
  if (last.state() == v1::JOB_STATE_SUCCEEDED) return absl::OkStatus();
  absl::StatusCode code = last.state() == v1::JOB_STATE_CANCELLED ? absl::StatusCode::kCancelled
                                                                  : absl::StatusCode::kUnknown;
  for (int c = 1; c <= 16; ++c) {
    if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) == error_code) {
      code = static_cast<absl::StatusCode>(c);
    }
  }
  absl::Status status(code, absl::StrCat("job ", last.job_id(), " ", JobStateName(last.state()),
                                        ": ", error.empty() ? last.message() : error));
  // The job's outcome decides the exit code, whatever code its error has.
  switch (last.state()) {
    case v1::JOB_STATE_FAILED_GATE:
      return WithExitCode(status, kExitGateFailed);
    case v1::JOB_STATE_CANCELLED:
      return WithExitCode(status, kExitCancelled);
    default:
      return WithExitCode(status, kExitJobFailed);
  }
}

// One line per bit target of a multi-target job.
void PrintTargets(const v1::JobSummary& s, std::FILE* out) {
  for (const v1::TargetOutput& t : s.targets()) {
    std::fprintf(out, "  %5.4g bits: achieved %.4f -> %s%s\n", t.target_bits(), t.achieved_bits(),
                 t.output_dir().c_str(), t.published() ? "" : " (not published: gate failed)");
  }
}

void PrintJob(const v1::Job& job, std::FILE* out) {
  std::fprintf(out, "job        %s\n", job.id().c_str());
  std::fprintf(out, "state      %s\n", JobStateName(job.state()).c_str());
  std::fprintf(out, "progress   %s\n",
               FormatProgressLine(coordinator::FromProto(job.progress())).c_str());
  if (!job.error().empty()) {
    std::fprintf(out, "error      %s: %s\n", job.error_code().c_str(), job.error().c_str());
  }
  const v1::JobSpec& spec = job.spec();
  std::fprintf(out, "model      %s\n", spec.model_dir().c_str());
  std::fprintf(out, "output     %s\n", spec.output_dir().c_str());
  std::fprintf(out, "target     %.4g bits", spec.quantization().target_bits());
  for (double t : spec.extra_target_bits()) std::fprintf(out, ", %.4g", t);
  std::fprintf(out, "\n");
  if (!spec.measurement_dir().empty()) {
    std::fprintf(out, "measurement %s\n", spec.measurement_dir().c_str());
  }
  std::fprintf(out, "tenant     %s (priority %d)\n",
               job.tenant().empty() ? "-" : job.tenant().c_str(), job.priority());
  if (job.state() == v1::JOB_STATE_QUEUED) {
    std::fprintf(out, "queue      position %d (0 = next)\n", job.queue_position());
  }
  if (job.memory_estimate_bytes() > 0) {
    std::fprintf(out, "memory     %.1f MiB estimated per worker\n",
                 static_cast<double>(job.memory_estimate_bytes()) / (1024.0 * 1024.0));
  }
  if (job.has_summary()) {
    const v1::JobSummary& s = job.summary();
    std::fprintf(out, "achieved   %.4f bits (%s allocation, %lld weights, %.1f s)\n",
                 s.achieved_bits(), s.allocation().c_str(),
                 static_cast<long long>(s.quantized_elements()), s.wall_seconds());
    if (s.targets_size() > 1) PrintTargets(s, out);
  }
  std::fprintf(out, "created    %s\n", Time(job.create_time_unix_ms()).c_str());
  std::fprintf(out, "started    %s\n", Time(job.start_time_unix_ms()).c_str());
  std::fprintf(out, "ended      %s\n", Time(job.end_time_unix_ms()).c_str());
}

absl::StatusOr<v1::Job> GetJob(const RemoteCommandOptions& o, v1::JobService::Stub& stub) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, o, o.timeout);
  v1::GetJobRequest req;
  req.set_id(o.job_id);
  v1::Job job;
  if (absl::Status s = Rpc(o, stub.Get(&ctx, req, &job)); !s.ok()) return s;
  return job;
}

}  // namespace

absl::Status RunSubmit(const RemoteCommandOptions& o, std::FILE* out) {
  if (absl::Status s = o.config.Validate(); !s.ok()) return s;
  BAQ_ASSIGN_OR_RETURN(auto stub, Connect(o));
  v1::SubmitJobRequest req;
  req.set_request_id(o.request_id.empty() ? RandomRequestId() : o.request_id);
  ToProto(o.config, req.mutable_spec());
  req.mutable_spec()->set_priority(o.priority);
  req.mutable_spec()->set_tenant(o.tenant);
  req.mutable_spec()->mutable_labels()->insert(o.labels.begin(), o.labels.end());
  v1::Job job;
  absl::Status status;
  for (int attempt = 1; attempt <= kSubmitAttempts; ++attempt) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, o, o.timeout);
    status = Rpc(o, stub->Submit(&ctx, req, &job));
    // Safe to repeat: the request id makes the coordinator return the job
    // a lost reply had created.
    if (status.code() != absl::StatusCode::kUnavailable || attempt == kSubmitAttempts) break;
    absl::SleepFor(kRetryPause * attempt);
  }
  if (!status.ok()) return status;
  if (o.output.json && !o.wait) {
    PrintJson(out, {{"ok", true}, {"job", JobJson(job)}});
    return absl::OkStatus();
  }
  if (o.output.json) {
    PrintJson(out, {{"event", "submitted"},
                    {"job_id", job.id()},
                    {"state", JobStateName(job.state())}});
  } else {
    std::fprintf(out, "submitted job %s (%s)\n", job.id().c_str(),
                 JobStateName(job.state()).c_str());
    std::fflush(out);
  }
  if (!o.wait) return absl::OkStatus();
  RemoteCommandOptions watch = o;
  watch.job_id = job.id();
  return RunWatch(watch, out);
}

absl::Status RunStatus(const RemoteCommandOptions& o, std::FILE* out) {
  if (o.job_id.empty()) return absl::InvalidArgumentError("status: which job? (JOB_ID)");
  BAQ_ASSIGN_OR_RETURN(auto stub, Connect(o));
  absl::StatusOr<v1::Job> job = GetJob(o, *stub);
  if (!job.ok()) return job.status();
  if (o.output.json) {
    PrintJson(out, {{"ok", true}, {"job", JobJson(*job)}});
  } else {
    PrintJob(*job, out);
  }
  return absl::OkStatus();
}

absl::Status RunWatch(const RemoteCommandOptions& o, std::FILE* out) {
  if (o.job_id.empty()) return absl::InvalidArgumentError("watch: which job? (JOB_ID)");
  BAQ_ASSIGN_OR_RETURN(auto stub, Connect(o));
  // Progress goes to stderr: stdout carries only the result (or JSON lines).
  ProgressBar bar(stderr, o.output.progress);
  const absl::Time deadline = absl::Now() + o.watch_deadline;
  absl::Time last_heard = absl::Now();  // The reconnect window runs from here.
  absl::Duration backoff = o.reconnect_backoff;
  absl::BitGen jitter;
  v1::JobEvent last;
  grpc::Status status;
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(deadline));
    Authorize(ctx, o);
    v1::WatchJobRequest req;
    req.set_id(o.job_id);
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader = stub->Watch(&ctx, req);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      bar.Update(coordinator::FromProto(event));
      if (o.output.json) PrintJson(out, JobEventJson(event));
      last = event;
      last_heard = absl::Now();
      backoff = o.reconnect_backoff;
    }
    status = reader->Finish();
    if (IsTerminal(last.state()) || !Reconnectable(status)) break;
    // Watch again (the coordinator reloads its jobs when it restarts), with
    // exponential backoff and jitter, until the job ends or a deadline passes.
    const absl::Time now = absl::Now();
    const absl::Time give_up = std::min(deadline, last_heard + o.reconnect_deadline);
    if (now >= give_up) {
      const bool whole = give_up == deadline;
      status = grpc::Status(
          whole ? grpc::StatusCode::DEADLINE_EXCEEDED : grpc::StatusCode::UNAVAILABLE,
          absl::StrCat("watch of job ", o.job_id, " gave up: ",
                       whole ? absl::StrCat("--watch_deadline ", absl::FormatDuration(o.watch_deadline),
                                            " passed")
                             : absl::StrCat("no event for --reconnect_deadline ",
                                            absl::FormatDuration(o.reconnect_deadline)),
                       status.ok() ? "" : absl::StrCat(" (last error: ", status.error_message(), ")")));
      break;
    }
    const absl::Duration pause =
        std::min(backoff * absl::Uniform(jitter, 0.5, 1.0), give_up - now);
    std::fprintf(stderr, "baq: watch of job %s interrupted (%s); reconnecting in %s\n",
                 o.job_id.c_str(),
                 status.ok() ? "stream ended early" : status.error_message().c_str(),
                 absl::FormatDuration(absl::Trunc(pause, absl::Milliseconds(1))).c_str());
    absl::SleepFor(pause);
    backoff = std::min(backoff * 2, kMaxReconnectBackoff);
  }
  bar.Finish();
  if (absl::Status s = Rpc(o, status); !s.ok()) return s;
  if (!IsTerminal(last.state())) return absl::InternalError("watch ended before the job did");
  // The stream carries progress, not the error code: fetch the final record.
  absl::StatusOr<v1::Job> job = GetJob(o, *stub);
  if (!job.ok()) return job.status();
  if (job->state() == v1::JOB_STATE_SUCCEEDED && o.output.json) {
    PrintJson(out, {{"ok", true}, {"job", JobJson(*job)}});
  } else if (job->state() == v1::JOB_STATE_SUCCEEDED) {
    const v1::JobSummary& s = job->summary();
    std::fprintf(out, "job %s succeeded: %.4f bits (target %.4g), %.1f s -> %s\n",
                 job->id().c_str(), s.achieved_bits(), s.target_bits(), s.wall_seconds(),
                 s.output_dir().c_str());
    if (s.targets_size() > 1) PrintTargets(s, out);
  }
  return JobOutcome(last, job->error_code(), job->error());
}

absl::Status RunCancel(const RemoteCommandOptions& o, std::FILE* out) {
  if (o.job_id.empty()) return absl::InvalidArgumentError("cancel: which job? (JOB_ID)");
  BAQ_ASSIGN_OR_RETURN(auto stub, Connect(o));
  grpc::ClientContext ctx;
  SetDeadline(ctx, o, o.timeout);
  v1::CancelJobRequest req;
  req.set_id(o.job_id);
  v1::Job job;
  if (absl::Status s = Rpc(o, stub->Cancel(&ctx, req, &job)); !s.ok()) return s;
  if (o.output.json) {
    // "cancel_requested": the job was running and its workers were told to stop.
    PrintJson(out, {{"ok", true},
                    {"cancel_requested", job.state() == v1::JOB_STATE_RUNNING},
                    {"job", JobJson(job)}});
    return absl::OkStatus();
  }
  if (job.state() == v1::JOB_STATE_RUNNING) {
    std::fprintf(out, "job %s: cancel requested; its workers stop within seconds\n",
                 job.id().c_str());
  } else {
    std::fprintf(out, "job %s: %s\n", job.id().c_str(), JobStateName(job.state()).c_str());
  }
  return absl::OkStatus();
}

absl::Status RunList(const RemoteCommandOptions& o, std::FILE* out) {
  BAQ_ASSIGN_OR_RETURN(auto stub, Connect(o));
  v1::ListJobsRequest req;
  req.set_page_size(kListPageSize);
  for (const std::string& name : o.list_states) {
    absl::StatusOr<coordinator::JobState> state = coordinator::ParseJobState(name);
    if (!state.ok()) {
      return WithExitCode(absl::InvalidArgumentError(absl::StrCat(
                              "--state: \"", name, "\" is not a job state (queued, running, "
                              "succeeded, failed, cancelled, failed_gate)")),
                          kExitUsage);
    }
    req.add_states(coordinator::ToProto(*state));
  }
  req.set_tenant(o.list_tenant);
  req.mutable_labels()->insert(o.labels.begin(), o.labels.end());
  // Every page: the output is the whole list, as before paging existed.
  v1::ListJobsResponse resp;
  do {
    grpc::ClientContext ctx;
    SetDeadline(ctx, o, o.timeout);
    v1::ListJobsResponse page;
    if (absl::Status s = Rpc(o, stub->List(&ctx, req, &page)); !s.ok()) return s;
    for (v1::Job& job : *page.mutable_jobs()) *resp.add_jobs() = std::move(job);
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  if (o.output.json) {
    nlohmann::json jobs = nlohmann::json::array();
    for (const v1::Job& job : resp.jobs()) jobs.push_back(JobJson(job));
    PrintJson(out, {{"ok", true}, {"jobs", std::move(jobs)}});
    return absl::OkStatus();
  }
  std::fprintf(out, "%-28s %-10s %6s %7s %-10s %4s %5s %9s  %-19s %s\n", "JOB", "STATE", "DONE",
               "BITS", "TENANT", "PRIO", "QUEUE", "ETA", "CREATED", "MODEL");
  for (const v1::Job& job : resp.jobs()) {
    const double bits =
        job.has_summary() ? job.summary().achieved_bits() : job.progress().achieved_bits();
    const std::string created =
        job.create_time_unix_ms() == 0
            ? "-"
            : absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(job.create_time_unix_ms()),
                               absl::LocalTimeZone());
    // QUEUE: place in the start order (queued jobs only). ETA: time left
    // (running) or until it would finish (queued; an estimate, see
    // docs/operations.md); "?" when unknown.
    const bool active = job.state() == v1::JOB_STATE_QUEUED || job.state() == v1::JOB_STATE_RUNNING;
    const std::string queue =
        job.state() == v1::JOB_STATE_QUEUED ? absl::StrCat(job.queue_position()) : "-";
    const double eta_s = job.progress().eta_seconds();
    const std::string eta = !active ? "-"
                            : eta_s < 0
                                ? "?"
                                : absl::FormatDuration(absl::Seconds(std::round(eta_s)));
    std::fprintf(out, "%-28s %-10s %5.1f%% %7.3f %-10s %4d %5s %9s  %-19s %s\n", job.id().c_str(),
                 JobStateName(job.state()).c_str(), job.progress().percent(), bits,
                 job.tenant().empty() ? "-" : job.tenant().c_str(), job.priority(), queue.c_str(),
                 eta.c_str(), created.c_str(), job.spec().model_dir().c_str());
  }
  if (resp.jobs().empty()) std::fprintf(out, "(no jobs)\n");
  return absl::OkStatus();
}

absl::Status RunDelete(const RemoteCommandOptions& o, std::FILE* out) {
  if (o.job_id.empty()) return absl::InvalidArgumentError("delete: which job? (JOB_ID)");
  BAQ_ASSIGN_OR_RETURN(auto stub, Connect(o));
  grpc::ClientContext ctx;
  SetDeadline(ctx, o, o.timeout);
  v1::DeleteJobRequest req;
  req.set_id(o.job_id);
  req.set_delete_outputs(o.delete_outputs);
  v1::DeleteJobResponse resp;
  if (absl::Status s = Rpc(o, stub->Delete(&ctx, req, &resp)); !s.ok()) return s;
  if (o.output.json) {
    nlohmann::json removed = nlohmann::json::array();
    for (const std::string& path : resp.removed_paths()) removed.push_back(path);
    PrintJson(out, {{"ok", true}, {"id", resp.id()}, {"removed_paths", std::move(removed)}});
    return absl::OkStatus();
  }
  std::fprintf(out, "job %s deleted\n", resp.id().c_str());
  for (const std::string& path : resp.removed_paths()) {
    std::fprintf(out, "  removed %s\n", path.c_str());
  }
  return absl::OkStatus();
}

}  // namespace baq::cli
