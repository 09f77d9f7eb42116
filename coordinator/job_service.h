// coordinator/job_service.h
//
// JobService: the gRPC face of the JobManager (baq.v1.JobService). A thin
// callback-API adapter (STYLE R15/R16): unary methods convert, call the
// manager (which only takes its lock and writes a small JSON file) and
// finish inline; Watch registers a watcher whose events are written by a
// ServerWriteReactor, one write in flight at a time, coalescing to the
// latest event when the client reads slower than the job progresses.
//
// Thread-safe. The manager and metrics are not owned and must outlive the
// server that registers this service.
#ifndef BAQ_COORDINATOR_JOB_SERVICE_H_
#define BAQ_COORDINATOR_JOB_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "baq/v1/job.grpc.pb.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_manager.h"

namespace baq::coordinator {

class JobService final : public v1::JobService::CallbackService {
 public:
  // `metrics` may be null.
  JobService(JobManager* jobs, CoordinatorMetrics* metrics) : jobs_(jobs), metrics_(metrics) {}

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

 private:
  grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const char* method,
                                   const absl::Status& status);

  JobManager* const jobs_;             // Not owned.
  CoordinatorMetrics* const metrics_;  // Nullable; not owned.
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_JOB_SERVICE_H_
