// JobManager::List(filter) and JobManager::Delete: the job-hygiene half of
// the manager's API (coordinator/job_manager.h), kept apart from the
// scheduling and running half in job_manager.cc.
#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "coordinator/job_manager.h"

namespace baq::coordinator {
namespace {

// Page tokens are "p<seq>": the submit-order position of the last job of the
// previous page. Opaque to clients (docs/api.md), stable under deletes.
constexpr absl::string_view kTokenPrefix = "p";

absl::StatusOr<uint64_t> ParsePageToken(absl::string_view token) {
  if (token.empty()) return 0;
  uint64_t seq = 0;
  if (!absl::ConsumePrefix(&token, kTokenPrefix) || !absl::SimpleAtoi(token, &seq)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token '", token, "' is not one a List response returned"));
  }
  return seq;
}

bool Matches(const JobRecord& record, const ListFilter& filter) {
  if (!filter.states.empty() &&
      std::find(filter.states.begin(), filter.states.end(), record.state) == filter.states.end()) {
    return false;
  }
  if (filter.tenant.has_value() && record.tenant != *filter.tenant) return false;
  for (const auto& [key, value] : filter.labels) {
    auto it = record.labels.find(key);
    if (it == record.labels.end() || it->second != value) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<ListPage> JobManager::List(const ListFilter& filter) {
  if (filter.page_size < 0) {
    return absl::InvalidArgumentError(absl::StrCat("page_size ", filter.page_size, " < 0"));
  }
  absl::StatusOr<uint64_t> after = ParsePageToken(filter.page_token);
  if (!after.ok()) return after.status();
  ListPage page;
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::pair<int, absl::Duration>> queued;
  bool queued_known = false;
  for (const std::string& id : order_) {
    const Job& job = jobs_.at(id);
    if (job.seq <= *after || !Matches(job.record, filter)) continue;
    if (filter.page_size > 0 && static_cast<int>(page.jobs.size()) == filter.page_size) {
      page.next_page_token = absl::StrCat(kTokenPrefix, jobs_.at(page.jobs.back().id).seq);
      break;
    }
    page.jobs.push_back(job.record);
    if (job.record.state == JobState::kQueued) {
      if (!queued_known) queued = QueueEtasLocked();
      queued_known = true;
      if (auto q = queued.find(id); q != queued.end()) {
        page.jobs.back().queue_position = q->second.first;
        page.jobs.back().progress.eta = q->second.second;
      }
    }
  }
  return page;
}

absl::StatusOr<DeleteResult> JobManager::Delete(const std::string& id, bool delete_outputs) {
  JobRecord record;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return absl::NotFoundError(absl::StrCat("no job ", id));
    record = it->second.record;
    if (!IsTerminal(record.state)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", id, " is ", JobStateName(record.state),
          "; cancel it first, and delete it once it is cancelled"));
    }
    jobs_.erase(it);
    order_.erase(std::remove(order_.begin(), order_.end(), id), order_.end());
    if (!record.request_id.empty()) {
      auto r = id_by_request_.find(RequestKey(record.tenant, record.request_id));
      if (r != id_by_request_.end() && r->second == id) id_by_request_.erase(r);
    }
  }
  // Outside mu_. The job's last state change may still be on its way to
  // disk (staged under mu_, flushed after): let it land, then remove it.
  writer_.Flush(id);
  DeleteResult result;
  absl::Status status;
  absl::StatusOr<std::string> record_path = store_->Remove(id);
  if (!record_path.ok()) status.Update(record_path.status());
  if (record_path.ok() && !record_path->empty()) result.removed_paths.push_back(*record_path);
  namespace fs = std::filesystem;
  std::set<std::string> dirs;
  if (const std::string checkpoint = JobCheckpointDir(options_.data_dir, id); !checkpoint.empty()) {
    dirs.insert(checkpoint);
  }
  // Only what the job published: a job that failed may have failed because
  // its output dir already existed, and that dir is someone else's.
  if (delete_outputs && record.state == JobState::kSucceeded) {
    // Targets' dirs lie under output_dir (bits-<t>/) or are it.
    if (!record.config.output_dir.empty()) dirs.insert(record.config.output_dir);
    if (record.summary.has_value()) {
      for (const TargetSummary& t : record.summary->targets) {
        if (!t.output_dir.empty() && t.published) dirs.insert(t.output_dir);
      }
    }
  }
  for (const std::string& dir : dirs) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) continue;
    fs::remove_all(dir, ec);
    if (ec) {
      status.Update(absl::InternalError(absl::StrCat("cannot remove ", dir, ": ", ec.message())));
    } else {
      result.removed_paths.push_back(dir);
    }
  }
  if (!status.ok()) return status;
  return result;
}

}  // namespace baq::coordinator
