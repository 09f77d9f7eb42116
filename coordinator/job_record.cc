#include "coordinator/job_record.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
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

absl::Status ValidateLabels(const std::map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels: ", labels.size(), " labels (at most ", kMaxLabels, ")"));
  }
  for (const auto& [key, value] : labels) {
    bool key_ok = !key.empty() && key.size() <= 63 && absl::ascii_isalnum(key[0]);
    for (char c : key) {
      key_ok = key_ok && ((absl::ascii_islower(c) || absl::ascii_isdigit(c)) || c == '.' ||
                          c == '_' || c == '/' || c == '-');
    }
    if (!key_ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labels: key '", absl::CHexEscape(key),
          "' is not 1-63 characters of [a-z0-9._/-] starting with a letter or digit"));
    }
    bool value_ok = value.size() <= 255;
    for (char c : value) value_ok = value_ok && absl::ascii_isprint(c);
    if (!value_ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labels: value of '", key, "' is not at most 255 printable ASCII characters"));
    }
  }
  return absl::OkStatus();
}

}  // namespace baq::coordinator
