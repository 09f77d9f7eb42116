#include "coordinator/job_record.h"

#include "absl/strings/str_cat.h"

namespace baq::coordinator {
namespace {

constexpr std::pair<absl::string_view, JobState> kStates[] = {{"queued", JobState::kQueued},
                                                              {"running", JobState::kRunning},
                                                              {"succeeded", JobState::kSucceeded},
                                                              {"failed", JobState::kFailed},
                                                              {"cancelled", JobState::kCancelled},
                                                              {"failed_gate", JobState::kFailedGate}};

}  // namespace

absl::string_view JobStateName(JobState state) {
  for (const auto& [name, s] : kStates) {
    if (s == state) return name;
  }
  return "?";
}

absl::StatusOr<JobState> ParseJobState(absl::string_view name) {
  for (const auto& [n, s] : kStates) {
    if (n == name) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown job state \"", name, "\""));
}

}  // namespace baq::coordinator
