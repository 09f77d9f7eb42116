// coordinator/engine_set.h
//
// EngineSet: the engines (worker devices) one job runs on, which of them are
// still usable, and which block each runs. JobRunner uses it to survive
// worker failures:
//
//   * Blocks [from, n) are split into contiguous ranges over the live
//     engines, in their order (Plan), so activations change hands at most
//     (engines - 1) times per pass.
//   * When an engine's call fails with an error that means "this worker is
//     gone or fenced" (IsWorkerLoss: UNAVAILABLE, DEADLINE_EXCEEDED, or
//     NOT_FOUND from a restarted worker that lost the job), Fail() drops the
//     engine, counts the failure against the job's budget
//     (max_worker_failures; beyond it the job fails with the last error),
//     adds the engines of workers that registered since (more_engines; a
//     restarted worker comes back under a new lease epoch), starts them,
//     and waits up to replacement_wait when none is left. The caller then
//     re-plans from the failed block and restores its inputs from the
//     checkpoint.
//
// Engines passed in are not owned; those from more_engines are, and are
// Reset() when the set is destroyed.
//
// Thread-compatible: the job runner's thread calls all methods.
#ifndef BAQ_COORDINATOR_ENGINE_SET_H_
#define BAQ_COORDINATOR_ENGINE_SET_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/block_engine.h"
#include "common/job_config.h"
#include "coordinator/engine_requirements.h"

namespace baq::coordinator {

// Engines of workers that joined (or re-registered) since the last call.
using MoreEnginesFn =
    std::function<absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>>()>;

// Whether `status`, from an engine call, means the worker is lost (crashed,
// restarted, hung past its deadline, or its lease was fenced) rather than
// that the job itself is wrong. `starting`: the call was Start(), where
// NOT_FOUND means a missing model file, not a lost job.
bool IsWorkerLoss(const absl::Status& status, bool starting = false);

class EngineSet {
 public:
  struct Options {
    // False: any Start() error fails StartAll() ("worker <i>: ...") and
    // nothing is survived (local mode, parallel mode).
    bool survive_losses = true;
    MoreEnginesFn more_engines;  // May be null: no replacements.
    int max_worker_failures = 3;
    absl::Duration replacement_wait = absl::Seconds(60);
    // Poll interval while waiting for a replacement.
    absl::Duration poll = absl::Milliseconds(500);
    std::function<void(const std::string&)> log;  // May be null.
    std::function<void()> on_loss;  // Called for each worker loss counted; may be null.
    // Capabilities every engine must offer; StartAll() checks each engine
    // (replacements too) before starting it and fails with the check's
    // FailedPrecondition (coordinator/engine_requirements.h).
    EngineNeeds needs;
  };

  // `cancelled` (not owned) stops the wait for replacements.
  EngineSet(std::vector<BlockEngine*> engines, Options options,
            const std::atomic<bool>* cancelled);
  ~EngineSet();

  EngineSet(const EngineSet&) = delete;
  EngineSet& operator=(const EngineSet&) = delete;

  // Starts every engine not started yet; worker losses count as failures
  // and drop the engine. Fails if no engine is left after waiting.
  absl::Status StartAll(const JobConfig& config);
  // Blocks of the model (from the first started engine).
  int64_t num_blocks() const { return num_blocks_; }

  // Assigns blocks [from, n) to the live engines. REQUIRES: live() > 0.
  void Plan(int64_t from, int64_t n);
  BlockEngine* For(int64_t block) const;
  // The started, live engines in their order (calibration shards are dealt
  // over them).
  std::vector<BlockEngine*> Live() const;

  // Handles `error` from a call on `engine`: returns it unchanged unless it
  // is a worker loss; otherwise drops the engine, counts the failure
  // (Aborted, naming the budget and the last error, once it is spent),
  // starts replacements and returns OK: the caller re-plans.
  absl::Status Fail(BlockEngine* engine, const absl::Status& error, const JobConfig& config);

  size_t live() const;
  int failures() const { return failures_; }
  void set_failures(int failures) { failures_ = failures; }

 private:
  struct Slot {
    BlockEngine* engine = nullptr;
    bool started = false;
    bool alive = true;
  };
  void Log(const std::string& line) const;
  // Adds the engines more_engines() offers; returns how many.
  size_t AddMore();
  void Drop(BlockEngine* engine);
  // Counts one worker loss against the job's budget and logs it as
  // "<what> (failure K of at most M): <error>"; Aborted once over budget.
  absl::Status CountLoss(absl::string_view what, const absl::Status& error);

  const Options options_;
  const std::atomic<bool>* const cancelled_;
  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<BlockEngine>> owned_;  // From more_engines.
  std::vector<BlockEngine*> plan_;                   // By block, from plan_from_.
  int64_t plan_from_ = 0;
  int64_t num_blocks_ = 0;
  int failures_ = 0;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_ENGINE_SET_H_
