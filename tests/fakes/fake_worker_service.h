// tests/fakes/fake_worker_service.h
//
// FakeWorkerService: a baq.v1.WorkerService for testing clients of workers
// (coordinator::RemoteBlockEngine) without the worker library: it serves
// FakeBlockEngines keyed by (job, device) with the sync gRPC API (fine for a
// test double; the real service is callback-based) and can inject faults:
// hold Measure until the client's deadline passes, or cut a Quantize
// stream short. Measure alone uses the callback API, so that a held call
// ends when gRPC reports the client gone (OnCancel) instead of by polling.
//
// Thread-safe.
//
// Example:
//   FakeWorkerService service(options);
//   grpc::ServerBuilder builder;
//   builder.AddListeningPort("localhost:0", grpc::InsecureServerCredentials(), &port);
//   builder.RegisterService(&service);
#ifndef BAQ_TESTS_FAKES_FAKE_WORKER_SERVICE_H_
#define BAQ_TESTS_FAKES_FAKE_WORKER_SERVICE_H_

#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "baq/v1/worker.grpc.pb.h"
#include "tests/fakes/fake_block_engine.h"

namespace baq::testing {

struct FakeWorkerFaults {
  // Measure waits until the client gives up (deadline or cancel).
  bool hang_measure = false;
  // Quantize sends only half of the first tensor's bytes, then a report.
  bool truncate_quantize = false;
};

class FakeWorkerService final
    : public v1::WorkerService::WithCallbackMethod_Measure<v1::WorkerService::Service> {
 public:
  FakeWorkerService(FakeEngineOptions options, FakeEngineLog* log)
      : options_(std::move(options)), log_(log) {}

  void set_faults(FakeWorkerFaults faults) ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until `n` Measure calls are hanging (hang_measure) or `timeout`.
  bool AwaitHanging(int n, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status StartJob(grpc::ServerContext* ctx, const v1::StartJobRequest* req,
                        v1::StartJobResponse* resp) override;
  grpc::ServerUnaryReactor* Measure(grpc::CallbackServerContext* ctx,
                                    const v1::MeasureRequest* req,
                                    v1::BlockMeasurement* resp) override;
  grpc::Status Quantize(grpc::ServerContext* ctx, const v1::QuantizeRequest* req,
                        grpc::ServerWriter<v1::QuantizeResponseChunk>* writer) override;
  grpc::Status ExportInputs(grpc::ServerContext* ctx, const v1::ExportInputsRequest* req,
                            grpc::ServerWriter<v1::Chunk>* writer) override;
  grpc::Status ImportInputs(grpc::ServerContext* ctx,
                            grpc::ServerReader<v1::ImportInputsChunk>* reader,
                            v1::ImportInputsResponse* resp) override;
  grpc::Status Evaluate(grpc::ServerContext* ctx, const v1::EvaluateRequest* req,
                        v1::EvaluateResponse* resp) override;
  grpc::Status ResetJob(grpc::ServerContext* ctx, const v1::ResetJobRequest* req,
                        v1::ResetJobResponse* resp) override;

 private:
  // The engine of (job, device) or nullptr. REQUIRES: mu_ held.
  FakeBlockEngine* Find(const std::string& job, int device) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const FakeEngineOptions options_;
  FakeEngineLog* const log_;

  // One lock for all engines: they are fast and this is a test double.
  absl::Mutex mu_;
  FakeWorkerFaults faults_ ABSL_GUARDED_BY(mu_);
  int hanging_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::pair<std::string, int>, std::unique_ptr<FakeBlockEngine>> engines_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace baq::testing

#endif  // BAQ_TESTS_FAKES_FAKE_WORKER_SERVICE_H_
