// tests/fakes/fake_job_execution.h
//
// A JobExecution the test drives by hand, for JobManager and JobService
// tests without JobRunner, a model or workers. Each execution reports
// "starting", then waits at every block boundary until the test opens the
// ExecutionGate that far (or the job is cancelled), reports progress, and
// returns a summary; a config whose model_dir is "fail" makes it fail with
// Internal after block 0. Header-only; links with baq_coordinator.
//
// Thread-safe: executions run on the manager's threads, the gate is opened
// from the test thread.
//
// Example:
//   ExecutionGate gate;
//   deps.execution_factory = gate.Factory(/*num_blocks=*/3);
//   ... gate.Open(3);  // let every block through
#ifndef BAQ_TESTS_FAKES_FAKE_JOB_EXECUTION_H_
#define BAQ_TESTS_FAKES_FAKE_JOB_EXECUTION_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "coordinator/eval_gate.h"
#include "coordinator/job_manager.h"

namespace baq::testing {

class ExecutionGate {
 public:
  // Lets every execution pass blocks < `blocks` (cumulative, never closes).
  void Open(int64_t blocks) {
    absl::MutexLock lock(&mu_);
    open_ = std::max(open_, blocks);
  }
  int runs() {
    absl::MutexLock lock(&mu_);
    return runs_;
  }
  // Engines handed to the last execution.
  size_t last_engine_count() {
    absl::MutexLock lock(&mu_);
    return last_engines_;
  }

  coordinator::ExecutionFactory Factory(int64_t num_blocks);

 private:
  friend class FakeJobExecution;
  absl::Mutex mu_;
  int64_t open_ ABSL_GUARDED_BY(mu_) = 0;
  int runs_ ABSL_GUARDED_BY(mu_) = 0;
  size_t last_engines_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeJobExecution final : public coordinator::JobExecution {
 public:
  FakeJobExecution(ExecutionGate* gate, JobConfig config, int64_t num_blocks,
                   coordinator::JobRunner::ProgressFn progress)
      : gate_(gate), config_(std::move(config)), n_(num_blocks), progress_(std::move(progress)) {}

  absl::StatusOr<coordinator::JobSummary> Run() override {
    coordinator::JobProgress p;
    p.num_blocks = n_;
    p.stage = coordinator::JobStage::kStarting;
    p.eta = absl::InfiniteDuration();
    progress_(p);
    for (int64_t b = 0; b < n_; ++b) {
      {
        absl::MutexLock lock(&gate_->mu_);
        auto can_go = [this, b]() ABSL_SHARED_LOCKS_REQUIRED(gate_->mu_) {
          return cancelled_ || gate_->open_ > b;
        };
        gate_->mu_.Await(absl::Condition(&can_go));
        if (cancelled_) return absl::CancelledError("job cancelled");
      }
      if (config_.model_dir == "fail" && b == 1) return absl::InternalError("injected failure");
      if (config_.model_dir == "fail_gate" && b + 1 == n_) {  // A gate that measured 42.5.
        return coordinator::GateFailedError(
            coordinator::DecideEvalGate(config_.eval_gate, 42.5, 0));
      }
      p.stage = coordinator::JobStage::kQuantizing;
      p.block = b;
      p.blocks_done = b + 1;
      p.percent = 100.0 * static_cast<double>(b + 1) / static_cast<double>(n_);
      p.eta = absl::Seconds(static_cast<double>(n_ - b - 1));
      p.achieved_bits = config_.quant.target_bits;
      progress_(p);
    }
    coordinator::JobSummary s;
    s.output_dir = config_.output_dir;
    s.target_bits = config_.quant.target_bits;
    s.achieved_bits = config_.quant.target_bits;
    s.allocation = "global";
    s.wall_time = absl::Seconds(1);
    return s;
  }

  void Cancel() override {
    absl::MutexLock lock(&gate_->mu_);
    cancelled_ = true;
  }

 private:
  ExecutionGate* const gate_;
  const JobConfig config_;
  const int64_t n_;
  const coordinator::JobRunner::ProgressFn progress_;
  bool cancelled_ = false;  // Guarded by gate_->mu_.
};

inline coordinator::ExecutionFactory ExecutionGate::Factory(int64_t num_blocks) {
  return [this, num_blocks](const JobConfig& config, std::vector<BlockEngine*> engines,
                            coordinator::JobRunner::ProgressFn progress)
             -> std::unique_ptr<coordinator::JobExecution> {
    {
      absl::MutexLock lock(&mu_);
      ++runs_;
      last_engines_ = engines.size();
    }
    return std::make_unique<FakeJobExecution>(this, config, num_blocks, std::move(progress));
  };
}

// An EngineProvider with no engines: for JobManagers whose executions are
// fakes that never touch an engine.
inline coordinator::EngineProvider NoEngineProvider() {
  return [](const std::string&) {
    return absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>>(
        std::vector<std::unique_ptr<BlockEngine>>());
  };
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_FAKE_JOB_EXECUTION_H_
