// coordinator/job_service.h
//
// JobService: the gRPC face of the JobManager (baq.v1.JobService). A thin
// callback-API adapter (STYLE R15/R16): unary methods convert, call the
// manager (which only takes its lock and writes a small JSON file) and
// finish inline; Watch registers a watcher whose events are written by a
// ServerWriteReactor, one write in flight at a time, coalescing to the
// latest event when the client reads slower than the job progresses.
//
// Security (all optional, see JobServiceSecurity): every RPC first
// authenticates its caller (coordinator/job_auth.h: UNAUTHENTICATED without
// a known bearer token), Submit checks the spec's paths against the allowed
// roots (PERMISSION_DENIED / INVALID_ARGUMENT naming the path), and every
// action, allowed or not, is appended to the audit log.
//
// Tenancy (with tokens): a caller sees, watches, cancels and deletes only
// its own tenant's jobs; another tenant's job is NOT_FOUND, exactly like an
// unknown id, so job ids do not leak across tenants. List returns only the
// caller's jobs (PERMISSION_DENIED when its tenant filter names another
// tenant). An `admin` token acts on every job. Without tokens everyone is
// an admin.
//
// Thread-safe. The manager and metrics are not owned and must outlive the
// server that registers this service.
#ifndef BAQ_COORDINATOR_JOB_SERVICE_H_
#define BAQ_COORDINATOR_JOB_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "baq/v1/job.grpc.pb.h"
#include "common/allowed_roots.h"
#include "coordinator/audit_log.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_auth.h"
#include "coordinator/job_manager.h"

namespace baq::coordinator {

// What the JobService enforces. All nullable and not owned; they must
// outlive the server.
struct JobServiceSecurity {
  const TokenTable* tokens = nullptr;           // Null: no authentication.
  AuditLog* audit = nullptr;                    // Null: no audit log.
  const AllowedRoots* allowed_roots = nullptr;  // Null or empty: any path.
};

class JobService final : public v1::JobService::CallbackService {
 public:
  // `metrics` may be null.
  JobService(JobManager* jobs, CoordinatorMetrics* metrics, JobServiceSecurity security = {})
      : jobs_(jobs), metrics_(metrics), security_(security) {}

  grpc::ServerUnaryReactor* Submit(grpc::CallbackServerContext* ctx,
                                   const v1::SubmitJobRequest* request, v1::Job* job) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetJobRequest* request,
                                v1::Job* job) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const v1::ListJobsRequest* request,
                                 v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* Cancel(grpc::CallbackServerContext* ctx,
                                   const v1::CancelJobRequest* request, v1::Job* job) override;
  grpc::ServerWriteReactor<v1::JobEvent>* Watch(grpc::CallbackServerContext* ctx,
                                                const v1::WatchJobRequest* request) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const v1::DeleteJobRequest* request,
                                   v1::DeleteJobResponse* response) override;

 private:
  grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const char* method,
                                   const absl::Status& status);
  // Appends to the audit log, if any.
  void Audit(const char* action, const Caller& caller, const std::string& job_id,
             const std::string& request_id, const absl::Status& result);
  // Authenticate() with this service's tokens; on failure the rejection is
  // audited and the caller (peer only) returned with the error.
  absl::StatusOr<Caller> Admit(grpc::CallbackServerContext* ctx, const char* action,
                               const std::string& job_id);
  // The job, if `caller` may act on it; NotFound otherwise (tenancy above).
  absl::StatusOr<JobRecord> Authorize(const Caller& caller, const std::string& job_id);

  JobManager* const jobs_;             // Not owned.
  CoordinatorMetrics* const metrics_;  // Nullable; not owned.
  const JobServiceSecurity security_;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_SERVICE_H_
