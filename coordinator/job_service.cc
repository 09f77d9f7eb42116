#include "coordinator/job_service.h"

#include <functional>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "coordinator/job_convert.h"
#include "proto/convert.h"

namespace baq::coordinator {
namespace {

// Streams a job's events. The manager calls Push() under its lock; Push only
// queues and starts a write. At most one event waits: a newer one replaces
// it, and the terminal event, being the newest, is never dropped.
// Finish() is called outside mu_ (grpc may run OnDone, which deletes *this,
// on another thread as soon as it is called). Owns itself: deleted in
// OnDone, after the watcher is unregistered.
class EventWriter final : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  // `on_start` (may be empty) is told whether the watch was registered.
  EventWriter(JobManager* jobs, CoordinatorMetrics* metrics, const std::string& id,
              const std::function<void(const absl::Status&)>& on_start)
      : jobs_(jobs), metrics_(metrics) {
    // OnDone cannot run before this constructor returns, so handle_ needs
    // no lock: it is written here and read only in OnDone.
    absl::StatusOr<int64_t> handle =
        jobs_->Watch(id, [this](const JobRecord& record) { Push(record); });
    if (on_start) on_start(handle.status());
    if (!handle.ok()) {
      {
        absl::MutexLock lock(&mu_);
        finished_ = true;
      }
      Done(handle.status());
      return;
    }
    handle_ = *handle;
  }

  void OnWriteDone(bool ok) override {
    std::optional<absl::Status> done;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      done = ok ? WriteNextLocked() : FinishLocked(absl::CancelledError("watch stream broken"));
    }
    if (done.has_value()) Done(*done);
  }

  void OnCancel() override {
    std::optional<absl::Status> done;
    {
      absl::MutexLock lock(&mu_);
      done = FinishLocked(absl::CancelledError("watch cancelled by the client"));
    }
    if (done.has_value()) Done(*done);
  }

  void OnDone() override {
    // After Unwatch returns the manager makes no more Push calls.
    if (handle_ != 0) jobs_->Unwatch(handle_);
    delete this;
  }

 private:
  void Push(const JobRecord& record) {
    std::optional<absl::Status> done;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      v1::JobEvent event;
      ToProtoEvent(record, &event);
      pending_ = std::move(event);
      done = WriteNextLocked();
    }
    if (done.has_value()) Done(*done);
  }

  // Starts the next write if none is in flight; returns the status to
  // finish with once the terminal event has been written.
  std::optional<absl::Status> WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return std::nullopt;
    if (!pending_.has_value()) {
      return terminal_written_ ? FinishLocked(absl::OkStatus()) : std::nullopt;
    }
    current_ = std::move(*pending_);
    pending_.reset();
    const v1::JobState s = current_.state();
    terminal_written_ =
        s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED ||
        s == v1::JOB_STATE_FAILED_GATE;
    writing_ = true;
    StartWrite(&current_);  // OnWriteDone never runs inline (grpc can_inline=false).
    return std::nullopt;
  }

  // Marks the stream finished; the caller calls Done() after unlocking.
  std::optional<absl::Status> FinishLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return std::nullopt;
    finished_ = true;
    return status;
  }

  void Done(const absl::Status& status) {
    if (metrics_ != nullptr) metrics_->RecordRpc("Watch", status);
    Finish(ToGrpcStatus(status));
  }

  JobManager* const jobs_;
  CoordinatorMetrics* const metrics_;
  int64_t handle_ = 0;

  absl::Mutex mu_;
  std::optional<v1::JobEvent> pending_ ABSL_GUARDED_BY(mu_);
  v1::JobEvent current_ ABSL_GUARDED_BY(mu_);  // Being written.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool terminal_written_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// A Watch refused before it started (unauthenticated): finishes at once.
class RejectedWatch final : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  explicit RejectedWatch(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

void JobService::Audit(const char* action, const Caller& caller, const std::string& job_id,
                       const std::string& request_id, const absl::Status& result) {
  if (security_.audit == nullptr) return;
  security_.audit->Record(AuditEvent{absl::Now(), action, caller, job_id, request_id, result});
}

absl::StatusOr<Caller> JobService::Admit(grpc::CallbackServerContext* ctx, const char* action,
                                         const std::string& job_id) {
  absl::StatusOr<Caller> caller = Authenticate(*ctx, security_.tokens, metrics_);
  if (!caller.ok()) {
    Caller anonymous;
    anonymous.peer = ctx->peer();
    Audit(action, anonymous, job_id, "", caller.status());
  }
  return caller;
}

absl::StatusOr<JobRecord> JobService::Authorize(const Caller& caller, const std::string& job_id) {
  absl::StatusOr<JobRecord> record = jobs_->Get(job_id);
  if (record.ok() && !MayAccess(caller, record->tenant)) {
    // The same answer as for an unknown id: ids do not leak across tenants.
    return absl::NotFoundError(absl::StrCat("no job ", job_id));
  }
  return record;
}

grpc::ServerUnaryReactor* JobService::Finish(grpc::CallbackServerContext* ctx, const char* method,
                                             const absl::Status& status) {
  if (metrics_ != nullptr) metrics_->RecordRpc(method, status);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* JobService::Submit(grpc::CallbackServerContext* ctx,
                                             const v1::SubmitJobRequest* request, v1::Job* job) {
  absl::StatusOr<Caller> caller = Admit(ctx, "submit", "");
  if (!caller.ok()) return Finish(ctx, "Submit", caller.status());
  absl::StatusOr<JobConfig> config = baq::FromProto(request->spec());
  if (config.ok() && security_.allowed_roots != nullptr) {
    if (absl::Status s = security_.allowed_roots->CheckJob(*config); !s.ok()) config = s;
  }
  if (!config.ok()) {
    Audit("submit", *caller, "", request->request_id(), config.status());
    return Finish(ctx, "Submit", config.status());
  }
  // The tenant of the spec stands until authentication supplies the caller's.
  SubmitOptions submit;
  submit.tenant = request->spec().tenant();
  submit.priority = request->spec().priority();
  // With authentication on, the token names the tenant; a spec cannot claim another's share.
  if (security_.tokens != nullptr) submit.tenant = caller->tenant;
  submit.labels = {request->spec().labels().begin(), request->spec().labels().end()};
  absl::StatusOr<JobRecord> record =
      jobs_->Submit(request->request_id(), *std::move(config), submit);
  if (record.ok()) coordinator::ToProto(*record, job);
  Audit("submit", *caller, record.ok() ? record->id : "", request->request_id(), record.status());
  return Finish(ctx, "Submit", record.status());
}

grpc::ServerUnaryReactor* JobService::Get(grpc::CallbackServerContext* ctx,
                                          const v1::GetJobRequest* request, v1::Job* job) {
  absl::StatusOr<Caller> caller = Admit(ctx, "get", request->id());
  if (!caller.ok()) return Finish(ctx, "Get", caller.status());
  absl::StatusOr<JobRecord> record = Authorize(*caller, request->id());
  if (record.ok()) coordinator::ToProto(*record, job);
  Audit("get", *caller, request->id(), "", record.status());
  return Finish(ctx, "Get", record.status());
}

grpc::ServerUnaryReactor* JobService::List(grpc::CallbackServerContext* ctx,
                                           const v1::ListJobsRequest* request,
                                           v1::ListJobsResponse* response) {
  absl::StatusOr<Caller> caller = Admit(ctx, "list", "");
  if (!caller.ok()) return Finish(ctx, "List", caller.status());
  ListFilter filter;
  filter.page_size = request->page_size();
  filter.page_token = request->page_token();
  absl::Status status;
  for (int s : request->states()) {
    absl::StatusOr<JobState> state = FromProto(static_cast<v1::JobState>(s));
    if (state.ok()) filter.states.push_back(*state);
    status.Update(state.status());
  }
  if (!request->tenant().empty()) filter.tenant = request->tenant();
  filter.labels = {request->labels().begin(), request->labels().end()};
  if (status.ok() && !caller->admin) {
    if (filter.tenant.has_value() && *filter.tenant != caller->tenant) {
      status = absl::PermissionDeniedError(absl::StrCat(
          "tenant ", caller->tenant, " may not list the jobs of tenant ", *filter.tenant));
    }
    filter.tenant = caller->tenant;
  }
  if (status.ok()) {
    absl::StatusOr<ListPage> page = jobs_->List(filter);
    status = page.status();
    if (page.ok()) {
      for (const JobRecord& record : page->jobs) coordinator::ToProto(record, response->add_jobs());
      response->set_next_page_token(page->next_page_token);
    }
  }
  Audit("list", *caller, "", "", status);
  return Finish(ctx, "List", status);
}

grpc::ServerUnaryReactor* JobService::Cancel(grpc::CallbackServerContext* ctx,
                                             const v1::CancelJobRequest* request, v1::Job* job) {
  absl::StatusOr<Caller> caller = Admit(ctx, "cancel", request->id());
  if (!caller.ok()) return Finish(ctx, "Cancel", caller.status());
  absl::StatusOr<JobRecord> record = Authorize(*caller, request->id());
  if (record.ok()) record = jobs_->Cancel(request->id());
  if (record.ok()) coordinator::ToProto(*record, job);
  Audit("cancel", *caller, request->id(), "", record.status());
  return Finish(ctx, "Cancel", record.status());
}

grpc::ServerWriteReactor<v1::JobEvent>* JobService::Watch(grpc::CallbackServerContext* ctx,
                                                          const v1::WatchJobRequest* request) {
  absl::StatusOr<Caller> caller = Admit(ctx, "watch", request->id());
  if (!caller.ok()) {
    if (metrics_ != nullptr) metrics_->RecordRpc("Watch", caller.status());
    return new RejectedWatch(caller.status());
  }
  if (absl::StatusOr<JobRecord> record = Authorize(*caller, request->id()); !record.ok()) {
    Audit("watch", *caller, request->id(), "", record.status());
    if (metrics_ != nullptr) metrics_->RecordRpc("Watch", record.status());
    return new RejectedWatch(record.status());
  }
  return new EventWriter(jobs_, metrics_, request->id(),
                         [this, caller = *caller, id = request->id()](const absl::Status& s) {
                           Audit("watch", caller, id, "", s);
                         });
}

grpc::ServerUnaryReactor* JobService::Delete(grpc::CallbackServerContext* ctx,
                                             const v1::DeleteJobRequest* request,
                                             v1::DeleteJobResponse* response) {
  absl::StatusOr<Caller> caller = Admit(ctx, "delete", request->id());
  if (!caller.ok()) return Finish(ctx, "Delete", caller.status());
  absl::Status status = Authorize(*caller, request->id()).status();
  if (status.ok()) {
    absl::StatusOr<DeleteResult> deleted = jobs_->Delete(request->id(), request->delete_outputs());
    status = deleted.status();
    if (deleted.ok()) {
      response->set_id(request->id());
      for (const std::string& path : deleted->removed_paths) response->add_removed_paths(path);
    }
  }
  Audit(request->delete_outputs() ? "delete_with_outputs" : "delete", *caller, request->id(), "",
        status);
  return Finish(ctx, "Delete", status);
}

}  // namespace baq::coordinator
