// JobRunnerExecution: the production JobExecution, coordinator::JobRunner.
// In its own file so that code and tests which inject a fake execution do
// not pull JobRunner (and the bit budget and output assembler) into the link.
// Also where a job's state lives under the data dir: its checkpoint and its
// named measurements (declared in job_manager.h).
#include <algorithm>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "coordinator/job_manager.h"
#include "coordinator/job_runner.h"

namespace baq::coordinator {
namespace {

class JobRunnerExecution final : public JobExecution {
 public:
  JobRunnerExecution(const JobConfig& config, std::vector<BlockEngine*> engines,
                     JobRunner::ProgressFn progress, JobRunnerOptions options = {})
      : runner_(config, std::move(engines), std::move(progress), std::move(options)) {}

  absl::StatusOr<JobSummary> Run() override { return runner_.Run(); }
  void Cancel() override { runner_.Cancel(); }

 private:
  JobRunner runner_;
};

}  // namespace

std::string JobCheckpointDir(const std::string& data_dir, const std::string& job_id) {
  if (data_dir.empty()) return "";
  return (std::filesystem::path(data_dir) / "jobs" / job_id).string();
}

void DiscardJobCheckpoint(const std::string& data_dir, const std::string& job_id) {
  const std::string dir = JobCheckpointDir(data_dir, job_id);
  if (dir.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

absl::Status ResolveMeasurementName(const std::string& data_dir, JobConfig& config) {
  const std::string& name = config.measurement_dir;
  if (name.empty() || absl::StrContains(name, '/')) return absl::OkStatus();
  const bool valid = name.size() <= 128 && name != "." && name != ".." &&
                     std::all_of(name.begin(), name.end(), [](char c) {
                       return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                              c == '_' || c == '-';
                     });
  if (!valid) {
    return absl::InvalidArgumentError(absl::StrCat(
        "measurement \"", name,
        "\": a name is letters, digits, '.', '_' and '-' (at most 128), or give a path"));
  }
  if (data_dir.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "measurement \"", name, "\": named measurements live in the coordinator's --data-dir, "
        "and this coordinator has none"));
  }
  config.measurement_dir = absl::StrCat(data_dir, "/measurements/", name);
  return absl::OkStatus();
}

ExecutionFactory JobRunnerExecutionFactory() {
  return [](const JobConfig& config, std::vector<BlockEngine*> engines,
            JobRunner::ProgressFn progress) -> std::unique_ptr<JobExecution> {
    return std::make_unique<JobRunnerExecution>(config, std::move(engines), std::move(progress));
  };
}

ResumableExecutionFactory JobRunnerExecutionFactory(JobRecovery recovery) {
  return [recovery](const std::string& job_id, const JobConfig& config,
                    std::vector<BlockEngine*> engines,
                    JobRunner::ProgressFn progress) -> std::unique_ptr<JobExecution> {
    JobRunnerOptions options;
    options.job_id = job_id;
    options.checkpoint_dir = JobCheckpointDir(recovery.data_dir, job_id);
    if (recovery.more_engines) options.more_engines = recovery.more_engines(job_id);
    options.max_worker_failures = recovery.max_worker_failures;
    options.replacement_wait = recovery.replacement_wait;
    if (!recovery.shard_checkpoint_dir.empty()) {
      options.shard_checkpoint_dir =
          (std::filesystem::path(recovery.shard_checkpoint_dir) / job_id).string();
    }
    options.shard_checkpoint_every = recovery.shard_checkpoint_every;
    options.metrics = recovery.metrics;
    return std::make_unique<JobRunnerExecution>(config, std::move(engines), std::move(progress),
                                                std::move(options));
  };
}

}  // namespace baq::coordinator
