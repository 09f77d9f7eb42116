// tests/fakes/held_job_store.h
//
// HeldJobStore: a JobStore that keeps what it is asked to save in memory (no
// disk) and can hold the saves of chosen records until the test releases
// them: a slow disk, driven by hand, for tests of who waits for a write.
// Header-only; links with baq_coordinator.
//
// Thread-safe: saves come from the manager's threads, Hold/Release/Await
// from the test thread. A held save gives up after 20 s so that a broken
// test fails instead of hanging.
//
// Example:
//   HeldJobStore store;
//   store.Hold([](const JobRecord& r) { return r.config.output_dir == "/tmp/slow"; });
//   std::thread submitter([&] { jobs->Submit("slow", FakeJobConfig("/tmp/slow")); });
//   ASSERT_TRUE(store.AwaitHeldSaves(1));
//   ... the manager answers Get/List meanwhile ...
//   store.Release();
#ifndef BAQ_TESTS_FAKES_HELD_JOB_STORE_H_
#define BAQ_TESTS_FAKES_HELD_JOB_STORE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/job_store.h"

namespace baq::testing {

class HeldJobStore : public coordinator::JobStore {
 public:
  // One save: the job and the state it recorded.
  struct SavedRecord {
    std::string id;
    coordinator::JobState state;
    bool operator==(const SavedRecord& o) const { return id == o.id && state == o.state; }
  };

  HeldJobStore() : JobStore("") {}

  // Saves of records matching `pred` wait until Release().
  void Hold(std::function<bool(const coordinator::JobRecord&)> pred) {
    absl::MutexLock lock(&mu_);
    hold_ = std::move(pred);
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    hold_ = nullptr;
  }
  // Blocks until `n` saves are held (at once) or `timeout` passes.
  bool AwaitHeldSaves(int n, absl::Duration timeout = absl::Seconds(20)) const {
    absl::MutexLock lock(&mu_);
    auto ready = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return held_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }
  // Every completed save, in order.
  std::vector<SavedRecord> saves() const {
    absl::MutexLock lock(&mu_);
    return saves_;
  }
  // The states saved for job `id`, in order.
  std::vector<coordinator::JobState> StatesOf(const std::string& id) const {
    std::vector<coordinator::JobState> states;
    for (const SavedRecord& s : saves()) {
      if (s.id == id) states.push_back(s.state);
    }
    return states;
  }
  // A failure for the next save (then OK again).
  void FailNextSave(absl::Status status) {
    absl::MutexLock lock(&mu_);
    next_error_ = std::move(status);
  }

  absl::Status Save(const coordinator::JobRecord& record) const override {
    absl::MutexLock lock(&mu_);
    if (hold_ != nullptr && hold_(record)) {
      ++held_;
      auto released = [this, &record]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return hold_ == nullptr || !hold_(record);
      };
      mu_.AwaitWithTimeout(absl::Condition(&released), absl::Seconds(20));
      --held_;
    }
    if (!next_error_.ok()) return std::exchange(next_error_, absl::OkStatus());
    saves_.push_back({record.id, record.state});
    return absl::OkStatus();
  }

 private:
  mutable absl::Mutex mu_;
  std::function<bool(const coordinator::JobRecord&)> hold_ ABSL_GUARDED_BY(mu_);
  mutable int held_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::vector<SavedRecord> saves_ ABSL_GUARDED_BY(mu_);
  mutable absl::Status next_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_HELD_JOB_STORE_H_
