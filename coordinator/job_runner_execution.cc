// JobRunnerExecution: the production JobExecution, coordinator::JobRunner.
// In its own file so that code and tests which inject a fake execution do
// not pull JobRunner (and the bit budget and output assembler) into the link.
#include <memory>
#include <utility>

#include "coordinator/job_manager.h"
#include "coordinator/job_runner.h"

namespace baq::coordinator {
namespace {

class JobRunnerExecution final : public JobExecution {
 public:
  JobRunnerExecution(const JobConfig& config, std::vector<BlockEngine*> engines,
                     JobRunner::ProgressFn progress)
      : runner_(config, std::move(engines), std::move(progress)) {}

  absl::StatusOr<JobSummary> Run() override { return runner_.Run(); }
  void Cancel() override { runner_.Cancel(); }

 private:
  JobRunner runner_;
};

}  // namespace

ExecutionFactory JobRunnerExecutionFactory() {
  return [](const JobConfig& config, std::vector<BlockEngine*> engines,
            JobRunner::ProgressFn progress) -> std::unique_ptr<JobExecution> {
    return std::make_unique<JobRunnerExecution>(config, std::move(engines), std::move(progress));
  };
}

}  // namespace baq::coordinator
