// tests/testing/await_job.h
//
// AwaitJobState: waits, through JobManager::Watch (no polling), until a job
// reaches a state, for tests that drive a JobManager with fake executions or
// engines. Header-only; links with baq_coordinator.
//
// Thread-safe: the watcher runs on the manager's threads, the caller waits on
// its own mutex and unwatches outside it (the watcher takes that mutex).
//
// Example:
//   auto job = jobs->Submit("req-1", config);
//   gate.Open(3);
//   JobRecord done = AwaitJobState(*jobs, job->id, JobState::kSucceeded);
#ifndef BAQ_TESTS_TESTING_AWAIT_JOB_H_
#define BAQ_TESTS_TESTING_AWAIT_JOB_H_

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/job_manager.h"

namespace baq::testing {

// Blocks until job `id` is in `state` or a terminal state, or `timeout`
// passes; returns its last record. Adds a test failure unless the job ended
// in `state` (the message names the state reached and the job's error).
inline coordinator::JobRecord AwaitJobState(coordinator::JobManager& jobs, const std::string& id,
                                            coordinator::JobState state,
                                            absl::Duration timeout = absl::Seconds(20)) {
  absl::Mutex mu;
  std::optional<coordinator::JobRecord> last;
  absl::StatusOr<int64_t> handle = jobs.Watch(id, [&](const coordinator::JobRecord& r) {
    absl::MutexLock lock(&mu);
    last = r;
  });
  EXPECT_TRUE(handle.ok()) << "watch " << id << ": " << handle.status();
  coordinator::JobRecord result;
  {
    absl::MutexLock lock(&mu);
    auto done = [&]() {
      return last.has_value() && (last->state == state || coordinator::IsTerminal(last->state));
    };
    mu.AwaitWithTimeout(absl::Condition(&done), timeout);
    result = last.value_or(coordinator::JobRecord());
  }
  if (handle.ok()) jobs.Unwatch(*handle);  // Not under mu: the watcher takes it.
  EXPECT_EQ(coordinator::JobStateName(result.state), coordinator::JobStateName(state))
      << result.error;
  return result;
}

}  // namespace baq::testing

#endif  // BAQ_TESTS_TESTING_AWAIT_JOB_H_
