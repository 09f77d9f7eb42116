// coordinator/job_runner.h
//
// JobRunner executes one quantization job over a set of BlockEngines (the
// workers): it plans which worker runs which block, moves activations between
// workers when consecutive blocks live on different ones, chooses every
// layer's bit allocation so that the whole model's average bitwidth equals the
// target (coordinator/bit_budget.h), and hands each block's output tensors to
// the OutputAssembler, which publishes the result atomically.
//
// The same runner serves local mode (engines in process) and the service
// (engines are gRPC clients of worker daemons); it links no LibTorch.
//
// Thread-compatible: Run() is called by one thread; Cancel() may be called
// from any thread.
//
// Example:
//   JobRunner runner(config, {&engine}, [](const JobProgress& p) { ... });
//   BAQ_ASSIGN_OR_RETURN(JobSummary s, runner.Run());
#ifndef BAQ_COORDINATOR_JOB_RUNNER_H_
#define BAQ_COORDINATOR_JOB_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/block_engine.h"
#include "common/job_config.h"

namespace baq::coordinator {

enum class JobStage { kQueued, kStarting, kMeasuring, kQuantizing, kPublishing, kDone };
absl::string_view JobStageName(JobStage stage);

// A progress event (what `baq watch` and the Watch RPC stream).
struct JobProgress {
  JobStage stage = JobStage::kQueued;
  int64_t block = -1;        // Block being worked on, -1 if none.
  int64_t blocks_done = 0;   // Blocks quantized.
  int64_t num_blocks = 0;
  double percent = 0;        // 0..100.
  absl::Duration elapsed;
  absl::Duration eta;        // Estimated time left; InfiniteDuration if unknown.
  double achieved_bits = 0;  // Average bits of the blocks quantized so far.
  std::string message;
};

struct JobSummary {
  std::string output_dir;
  double target_bits = 0;
  double achieved_bits = 0;  // Element-weighted over all quantized layers.
  std::string allocation;    // "global" or "sublayer" (what was used).
  double total_proxy_loss = 0;
  int64_t quantized_elements = 0;
  absl::Duration wall_time;
};

class JobRunner {
 public:
  using ProgressFn = std::function<void(const JobProgress&)>;
  // `engines` are not owned and must outlive Run().
  JobRunner(JobConfig config, std::vector<BlockEngine*> engines, ProgressFn progress);

  absl::StatusOr<JobSummary> Run();
  // Makes Run() return Cancelled at the next block boundary.
  void Cancel() { cancelled_.store(true); }

 private:
  const JobConfig config_;
  const std::vector<BlockEngine*> engines_;
  const ProgressFn progress_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_RUNNER_H_
