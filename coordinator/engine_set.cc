#include "coordinator/engine_set.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace baq::coordinator {

bool IsWorkerLoss(const absl::Status& status, bool starting) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    case absl::StatusCode::kNotFound:
      // A restarted worker answers NOT_FOUND for a job it never saw.
      return !starting;
    default:
      return false;
  }
}

EngineSet::EngineSet(std::vector<BlockEngine*> engines, Options options,
                     const std::atomic<bool>* cancelled)
    : options_(std::move(options)), cancelled_(cancelled) {
  for (BlockEngine* e : engines) slots_.push_back(Slot{e});
}

EngineSet::~EngineSet() {
  // Frees the replacements' state on their workers (the caller resets the
  // engines it passed in).
  for (auto& e : owned_) e->Reset();
}

void EngineSet::Log(const std::string& line) const {
  if (options_.log) options_.log(line);
}

size_t EngineSet::live() const {
  return static_cast<size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.alive; }));
}

size_t EngineSet::AddMore() {
  if (!options_.more_engines) return 0;
  absl::StatusOr<std::vector<std::unique_ptr<BlockEngine>>> more = options_.more_engines();
  if (!more.ok()) {
    Log(absl::StrCat("no replacement workers: ", more.status().ToString()));
    return 0;
  }
  for (auto& e : *more) {
    slots_.push_back(Slot{e.get()});
    owned_.push_back(std::move(e));
  }
  return more->size();
}

absl::Status EngineSet::StartAll(const JobConfig& config) {
  const absl::Time deadline = absl::Now() + options_.replacement_wait;
  while (true) {
    for (const Slot& slot : slots_) {
      if (slot.started || !slot.alive) continue;
      BAQ_RETURN_IF_ERROR(CheckCapabilities(*slot.engine, options_.needs));
    }
    // Start()s run in parallel, one thread per engine (a worker's start
    // loads the model and embeds the calibration set: seconds to minutes);
    // their results are then taken in slot order.
    std::vector<absl::Status> results(slots_.size());
    {
      std::vector<std::thread> starts;
      for (size_t i = 0; i < slots_.size(); ++i) {
        if (slots_[i].started || !slots_[i].alive) continue;
        starts.emplace_back([&, i] { results[i] = slots_[i].engine->Start(config); });
      }
      for (std::thread& t : starts) t.join();
    }
    bool added = false;
    for (size_t i = 0; i < results.size(); ++i) {
      if (slots_[i].started || !slots_[i].alive) continue;
      BlockEngine* e = slots_[i].engine;
      const absl::Status& s = results[i];
      if (s.ok()) {
        slots_[i].started = true;
        if (num_blocks_ == 0) num_blocks_ = e->num_blocks();
        if (e->num_blocks() != num_blocks_) {
          return absl::InternalError(absl::StrCat("workers disagree on the model: ",
                                                  e->num_blocks(), " vs ", num_blocks_,
                                                  " blocks (different files at the same path?)"));
        }
        continue;
      }
      if (!options_.survive_losses || !IsWorkerLoss(s, /*starting=*/true)) {
        return absl::Status(s.code(), absl::StrCat("worker ", i, ": ", s.message()));
      }
      slots_[i].alive = false;
      if (absl::Status over = CountLoss("worker lost while starting", s); !over.ok()) return over;
      added = AddMore() > 0 || added;
    }
    if (added) continue;  // Start the replacements.
    if (live() > 0) return absl::OkStatus();
    if (cancelled_ != nullptr && cancelled_->load()) return absl::CancelledError("job cancelled");
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(
          absl::StrCat("no live worker left to run the job on after waiting ",
                       absl::FormatDuration(options_.replacement_wait),
                       " for a replacement (start or restart a baq-worker)"));
    }
    if (AddMore() == 0) std::this_thread::sleep_for(absl::ToChronoNanoseconds(options_.poll));
  }
}

void EngineSet::Plan(int64_t from, int64_t n) {
  std::vector<BlockEngine*> live_engines;
  for (const Slot& s : slots_) {
    if (s.alive && s.started) live_engines.push_back(s.engine);
  }
  plan_from_ = from;
  plan_.clear();
  const int64_t blocks = n - from;
  const int64_t k = static_cast<int64_t>(live_engines.size());
  for (int64_t i = 0; i < blocks; ++i) {
    plan_.push_back(live_engines[static_cast<size_t>(i * k / blocks)]);
  }
}

std::vector<BlockEngine*> EngineSet::Live() const {
  std::vector<BlockEngine*> out;
  for (const Slot& s : slots_) {
    if (s.alive && s.started) out.push_back(s.engine);
  }
  return out;
}

BlockEngine* EngineSet::For(int64_t block) const {
  return plan_[static_cast<size_t>(block - plan_from_)];
}

absl::Status EngineSet::CountLoss(absl::string_view what, const absl::Status& error) {
  ++failures_;
  if (options_.on_loss) options_.on_loss();
  Log(absl::StrCat(what, " (failure ", failures_, " of at most ", options_.max_worker_failures,
                   "): ", error.ToString()));
  if (failures_ <= options_.max_worker_failures) return absl::OkStatus();
  return absl::AbortedError(absl::StrCat("gave up after ", failures_, " worker failures (budget ",
                                         options_.max_worker_failures, " per job); last: ",
                                         error.ToString()));
}

void EngineSet::Drop(BlockEngine* engine) {
  for (Slot& s : slots_) {
    if (s.engine == engine) s.alive = false;
  }
}

absl::Status EngineSet::Fail(BlockEngine* engine, const absl::Status& error,
                             const JobConfig& config) {
  if (!options_.survive_losses || !IsWorkerLoss(error)) return error;
  if (cancelled_ != nullptr && cancelled_->load()) return error;
  Drop(engine);
  BAQ_RETURN_IF_ERROR(CountLoss("worker lost", error));
  AddMore();
  return StartAll(config);
}

}  // namespace baq::coordinator
