// coordinator/remote_block_engine.h
//
// RemoteBlockEngine: a BlockEngine that is a gRPC client of one device of
// one worker daemon (baq.v1.WorkerService), so JobRunner drives remote
// workers exactly as it drives in-process engines. Every call carries a
// deadline from RemoteEngineOptions; tensor and activation payloads arrive
// as streams of <= 1 MiB chunks and are reassembled here. Errors keep the
// worker's canonical code (NotFound: the worker lost the job, e.g. it
// restarted; Unavailable: worker down; DeadlineExceeded) and are prefixed
// with "worker <address> <device>: ".
//
// Thread-compatible, like every BlockEngine (JobRunner calls from one
// thread). The channel may be shared by several engines.
//
// Example:
//   auto channel = MakeWorkerChannel("10.0.0.7:7001");
//   RemoteBlockEngine engine(channel, "job-42", /*device_index=*/0, {});
//   BAQ_RETURN_IF_ERROR(engine.Start(config));
#ifndef BAQ_COORDINATOR_REMOTE_BLOCK_ENGINE_H_
#define BAQ_COORDINATOR_REMOTE_BLOCK_ENGINE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "baq/v1/worker.grpc.pb.h"
#include "common/block_engine.h"
#include "common/engine_capabilities.h"

namespace baq::coordinator {

struct RemoteEngineOptions {
  // StartJob: the worker loads the model config, tokenizes and embeds the
  // calibration set.
  absl::Duration start_timeout = absl::Minutes(30);
  // One block's Measure or Quantize (a 70B block on CPU takes minutes).
  absl::Duration block_timeout = absl::Minutes(60);
  // ExportInputs / ImportInputs of one block boundary's activations.
  absl::Duration transfer_timeout = absl::Minutes(10);
  // ResetJob.
  absl::Duration control_timeout = absl::Seconds(30);
  // Evaluate: one perplexity of a whole model over the gate's text (a 70B
  // model over WikiText-2 on one GPU takes tens of minutes).
  absl::Duration evaluate_timeout = absl::Hours(3);
};

// A channel to a worker with the retry policy of its idempotent RPCs
// (ExportInputs, ResetJob) on UNAVAILABLE (STYLE R17), secured by
// `credentials` (net::MakeChannelCredentials; plaintext by default).
std::shared_ptr<grpc::Channel> MakeWorkerChannel(
    const std::string& address,
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials());

// Aborts the in-flight calls of all remote engines of one job (they share
// it), so a coordinator shutdown does not wait out a block's deadline; later
// calls fail with Aborted at once. Thread-safe.
class CallCanceller {
 public:
  // Registers a call about to start; false if CancelAll() already ran.
  bool Add(grpc::ClientContext* ctx) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(grpc::ClientContext* ctx) ABSL_LOCKS_EXCLUDED(mu_);
  void CancelAll() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Mutex mu_;
  std::set<grpc::ClientContext*> active_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// The lease of one worker incarnation (worker id + epoch) as the engines on
// it see it. When the registry expires the lease (missed heartbeats: a hung
// or partitioned worker) or the worker re-registers under a new epoch,
// WorkerPool calls Revoke(): the calls in flight are cancelled, and every
// later call and every response that arrives afterwards is refused with
// Unavailable, so nothing an old incarnation computes is ever merged.
// Thread-safe.
class LeaseFence {
 public:
  LeaseFence(std::string worker_id, int64_t epoch)
      : worker_id_(std::move(worker_id)), epoch_(epoch) {}

  const std::string& worker_id() const { return worker_id_; }
  int64_t epoch() const { return epoch_; }
  void Revoke(const std::string& reason) ABSL_LOCKS_EXCLUDED(mu_);
  bool revoked() const ABSL_LOCKS_EXCLUDED(mu_);
  // OK while the lease holds; Unavailable naming the reason once revoked.
  absl::Status Check() const ABSL_LOCKS_EXCLUDED(mu_);
  CallCanceller& calls() { return calls_; }

 private:
  const std::string worker_id_;
  const int64_t epoch_;
  CallCanceller calls_;
  mutable absl::Mutex mu_;
  std::string reason_ ABSL_GUARDED_BY(mu_);  // Non-empty once revoked.
};

// Offers every capability of common/engine_capabilities.h: the worker
// service has an RPC for each (the worker's engine answers FailedPrecondition
// if it lacks one).
class RemoteBlockEngine : public BlockEngine,
                          public ActivationTransfer,
                          public ShardedCalibration,
                          public TargetSwitching,
                          public CheckpointEvaluator,
                          public LayerOwnership {
 public:
  // `label` names the worker in errors (its address, usually). `canceller`
  // and `fence` (the worker's lease, from WorkerPool)
  // may be null.
  RemoteBlockEngine(std::shared_ptr<grpc::Channel> channel, std::string label, std::string job_id,
                    int device_index, RemoteEngineOptions options,
                    std::shared_ptr<CallCanceller> canceller = nullptr,
                    std::shared_ptr<LeaseFence> fence = nullptr);

  std::string name() const override {
    return absl::StrCat("worker ", label_, " device ", device_index_);
  }
  ActivationTransfer* activation_transfer() override { return this; }
  ShardedCalibration* sharded_calibration() override { return this; }
  TargetSwitching* target_switching() override { return this; }
  CheckpointEvaluator* checkpoint_evaluator() override { return this; }
  LayerOwnership* layer_ownership() override { return this; }
  absl::Status Start(const JobConfig& config) override;
  int64_t num_blocks() const override { return num_blocks_; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t block) override;
  absl::StatusOr<BlockOutput> Quantize(int64_t block,
                                       const std::vector<LayerAllocation>& allocation) override;
  absl::StatusOr<std::string> ExportInputs(int64_t block) override;
  absl::Status ImportInputs(int64_t block, std::string bytes) override;
  // The Evaluate RPC on the job's engine (after Start); paths are the worker's.
  absl::StatusOr<double> Evaluate(const std::string& model_dir, const std::string& text_file,
                                  int64_t seqlen) override;
  // Calibration shards: the RPCs of the same names (block_timeout for the
  // accumulation, transfer_timeout for the transfers); Hessian partials and
  // shard inputs stream in chunks.
  absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t block, const std::vector<int32_t>& shards) override;
  absl::Status ImportHessians(int64_t block, std::vector<HessianPartial> merged) override;
  absl::StatusOr<std::string> ExportShardInputs(int64_t block, int32_t shard) override;
  absl::Status ImportShardInputs(int64_t block, int32_t shard, std::string bytes) override;
  // LayerOwnership: BlockLayers, and Measure/Quantize with a layer subset
  // (QuantizeLayers asks for the weights), AdvanceShards (the weights as a
  // client stream of tensors) under block_timeout; CheckpointShards and
  // RestoreShard (activations to or from the worker's disk) under
  // transfer_timeout. `dir` is on the worker's file system.
  absl::StatusOr<std::vector<LayerShape>> BlockLayers(int64_t block) override;
  absl::StatusOr<BlockMeasurement> MeasureLayers(int64_t block,
                                                 const std::vector<int32_t>& layers) override;
  absl::StatusOr<OwnedLayersOutput> QuantizeLayers(
      int64_t block, const std::vector<int32_t>& layers,
      const std::vector<LayerAllocation>& allocation) override;
  absl::Status AdvanceShards(int64_t block, std::vector<TensorBytes> weights) override;
  absl::StatusOr<std::vector<int32_t>> CheckpointShards(int64_t block,
                                                        const std::string& dir) override;
  absl::Status RestoreShard(int64_t block, int32_t shard, const std::string& dir) override;
  // Remembered here and sent with every later Measure/Quantize request
  // (their target_bits/keep_measurement fields): no RPC of its own, so a
  // worker that restarts sees the target with the next call.
  absl::Status SetTarget(double target_bits, bool keep_measurement) override {
    target_bits_ = target_bits;
    keep_measurement_ = keep_measurement;
    return absl::OkStatus();
  }
  // Best effort: a worker that is gone has nothing to free.
  void Reset() override;
  // Aborts the in-flight calls of every engine of the job (the shared
  // CallCanceller): the workers see the cancellation and drop the job's
  // engines. Later calls fail; Reset() still goes out.
  void Cancel() override {
    if (canceller_ != nullptr) canceller_->CancelAll();
  }

 private:
  absl::Status Wrap(const grpc::Status& status) const;
  // Measure, or MeasureLayers(block, *layers).
  absl::StatusOr<BlockMeasurement> MeasureSome(int64_t block,
                                               const std::vector<int32_t>* layers);
  // Quantize, or QuantizeLayers(block, *layers, allocation) with the weights.
  absl::StatusOr<OwnedLayersOutput> QuantizeSome(int64_t block,
                                                 const std::vector<LayerAllocation>& allocation,
                                                 const std::vector<int32_t>* layers);

  const std::unique_ptr<v1::WorkerService::Stub> stub_;
  const std::string label_;
  const std::string job_id_;
  const int device_index_;
  const RemoteEngineOptions options_;
  const std::shared_ptr<CallCanceller> canceller_;
  const std::shared_ptr<LeaseFence> fence_;
  int64_t num_blocks_ = 0;
  double target_bits_ = 0;  // 0: the job's (no SetTarget yet).
  bool keep_measurement_ = false;
};

}  // namespace baq::coordinator

#endif  // BAQ_COORDINATOR_REMOTE_BLOCK_ENGINE_H_
