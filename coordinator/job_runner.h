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
// Fault tolerance (sequential mode, when JobRunnerOptions enable it):
//   * After each block the runner checkpoints (coordinator/job_checkpoint.h)
//     the block's output tensors, the bit budget's state and the next
//     block's inputs (ExportInputs from the worker that ran the block).
//   * A call that fails because its worker is lost (IsWorkerLoss: crash,
//     restart, hang past its deadline, lease expired or fenced by epoch in
//     WorkerPool) drops that engine, adds the workers that registered since,
//     re-plans the remaining blocks over the live engines, imports the
//     failed block's inputs from the checkpoint into its new engine, and
//     redoes that block only. The bit budget is rolled back to its state
//     before the block, and every engine computes the same bytes from the
//     same inputs (fixed reduction order, the same --threads), so the
//     output is byte-identical to an undisturbed run. At most
//     max_worker_failures losses per job (counted across restarts).
//   * A restarted coordinator runs the job again with the same checkpoint:
//     finished blocks are read back and handed to the output assembler,
//     the budget is restored, and work resumes at the first unfinished
//     block; nothing finished is recomputed.
//   * A job with calibration shards (JobConfig::calibration_shards > 1)
//     runs each block on the live engines together (coordinator/
//     calibration_shards.h); the checkpoint holds every shard's next inputs,
//     and after a loss the shards are dealt over the survivors.
//   * Parallel mode is not checkpointed: a worker loss fails the job, and a
//     restarted coordinator runs it again from the start (documented in
//     docs/operations.md).
//
// Run() is split into pieces with one role each: the sequential run
// (coordinator/sequential_run.h: the block loop, checkpoints, recovery), the
// parallel run (coordinator/parallel_run.h: one measurement, every target),
// the target outputs (coordinator/target_output.h: budget, report, gate,
// publish) and the progress reporter (coordinator/job_progress.h).
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
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/block_engine.h"
#include "common/job_config.h"
#include "common/model_config.h"
#include "common/module_allocation.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/engine_set.h"
#include "coordinator/job_progress.h"
#include "coordinator/resident_shards.h"

namespace baq::coordinator {

class TargetOutput;  // coordinator/target_output.h
struct JobRun;       // coordinator/job_run.h

// One bit target's output (a job has one per JobConfig::AllTargets()).
// Allocation module: one module (a tie group of layers sharing one width).
struct ModuleWidth {
  std::string name;                 // Its first layer.
  std::vector<std::string> layers;  // All its layers, in forward order.
  int32_t bits = 0;
};

struct TargetSummary {
  std::string output_dir;
  double target_bits = 0;
  double achieved_bits = 0;  // Element-weighted over all quantized layers.
  std::string allocation;    // "global", "sublayer", "module"... (what was used).
  double total_proxy_loss = 0;
  int64_t quantized_elements = 0;
  double eval_gate_ppl = 0;       // 0: no gate.
  double eval_gate_base_ppl = 0;  // 0: not measured (max_ppl gate).
  bool published = false;
  absl::Status gate_status;  // GateFailedError when the gate kept it unpublished.
  std::vector<ModuleWidth> modules;  // Allocation module only.
};

// The job's result: its first target's fields (output_dir is the job's,
// the parent of the targets' outputs when there are several), its wall time
// and every target's summary.
struct JobSummary : TargetSummary {
  absl::Duration wall_time;
  // The resident data path (coordinator/resident_shards.h; zero otherwise):
  // bytes that crossed between the coordinator and the engines, by kind,
  // and the recovery work lost workers cost (block forwards replayed).
  WireBytes wire;
  int64_t replayed_blocks = 0;
  double replay_seconds = 0;
  // Every target's output, the first first.
  std::vector<TargetSummary> targets;
};

// How a job survives failures; the defaults (local mode) disable it.
struct JobRunnerOptions {
  // The job's checkpoint directory (`<data_dir>/jobs/<id>`); empty: none.
  std::string checkpoint_dir;
  // Engines of workers that registered since the last call (replacements
  // for lost ones); null: only the engines given to the runner.
  MoreEnginesFn more_engines;
  // Worker losses a job survives; one more fails it.
  int max_worker_failures = 3;
  // How long to wait for a replacement when no worker is left.
  absl::Duration replacement_wait = absl::Seconds(60);
  // Names the job in log lines and in the per-job metrics.
  std::string job_id;
  // Resident shards (coordinator/resident_shards.h): where the workers
  // checkpoint their calibration shards' inputs (a directory every worker
  // can write and a replacement can read: the coordinator's data dir when
  // co-located, else a shared volume); empty: `<checkpoint_dir>/shards`.
  std::string shard_checkpoint_dir;
  // Every this many blocks (K); 0: never (a lost shard is re-embedded and
  // replayed from block 0).
  int shard_checkpoint_every = 4;
  // Per-job metrics: worker losses, and the bytes each transfer moves
  // (metrics->AddWireBytes(job_id, WireKind::kHessian, n)). Nullable, not owned.
  CoordinatorMetrics* metrics = nullptr;
  // Scope module: what the knapsack minimizes (common/module_allocation.h).
  // Not part of the job spec: the service runs the default; `baq quantize
  // --module_objective raw` runs the raw objective locally, for comparison.
  ModuleObjective module_objective = ModuleObjective::kNormalized;

  // Whether worker losses are survived (sequential mode only).
  bool recovery() const { return !checkpoint_dir.empty() || more_engines != nullptr; }
};

class JobRunner {
 public:
  using ProgressFn = std::function<void(const JobProgress&)>;
  // `engines` are not owned and must outlive Run().
  JobRunner(JobConfig config, std::vector<BlockEngine*> engines, ProgressFn progress,
            JobRunnerOptions options = {});

  absl::StatusOr<JobSummary> Run();
  // Makes Run() return Cancelled soon: cancels every engine (the block in
  // progress stops between layers or calibration windows; remote engines
  // abort their calls in flight) and stops at the next block boundary.
  void Cancel() {
    cancelled_.store(true);
    for (BlockEngine* e : engines_) e->Cancel();
  }

 private:
  void Log(const std::string& line) const;
  // One output per bit target (JobConfig::AllTargets()), all created up
  // front so that an existing output fails the job before any work.
  absl::StatusOr<std::vector<std::unique_ptr<TargetOutput>>> CreateTargets(
      const ModelConfig& model) const;
  // Publishes every target's output (each gated on its own); a failed gate
  // keeps that output unpublished and fails the job after the others.
  absl::StatusOr<JobSummary> FinishTargets(const JobRun& run,
                                           std::vector<std::unique_ptr<TargetOutput>>& targets);

  JobConfig config_;  // Run() resolves calibration_shards = 0.
  const std::vector<BlockEngine*> engines_;
  const ProgressFn progress_;
  const JobRunnerOptions options_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_RUNNER_H_
