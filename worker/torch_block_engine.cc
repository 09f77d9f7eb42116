// The TorchBlockEngine facade: BlockEngine and its capabilities over the
// pieces in worker/engine/ — DeviceGroup (ranks and their threads),
// BlockActivations (inputs, shards, spill, export/import), MeasurementCache
// (measured blocks, SetTarget, the measurement dir), ShardedHessians
// (calibration shards) and block_compute (the block numerics). It checks
// the protocol's preconditions and routes each call.
#include "worker/torch_block_engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <system_error>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/bpe_tokenizer.h"
#include "common/engine_capabilities.h"
#include "common/file_contents.h"
#include "common/safetensors.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/activation_codec.h"
#include "common/trace_recorder.h"
#include "worker/calibration_inputs.h"
#include "worker/engine/block_activations.h"
#include "worker/engine/block_compute.h"
#include "worker/engine/compact_weight.h"
#include "worker/engine/block_prefetcher.h"
#include "worker/engine/device_group.h"
#include "worker/engine/engine_job.h"
#include "worker/engine/measurement_cache.h"
#include "worker/engine/shard_checkpoint_writer.h"
#include "worker/engine/sharded_hessians.h"
#include "worker/model/checkpoint_perplexity.h"
#include "worker/model/model_head.h"
#include "worker/model/tensor_convert.h"

namespace baq::worker {
namespace {

class TorchBlockEngine final : public BlockEngine,
                               public ActivationTransfer,
                               public ShardedCalibration,
                               public TargetSwitching,
                               public CheckpointEvaluator,
                               public LayerOwnership {
 public:
  TorchBlockEngine(std::unique_ptr<DeviceGroup> group, int hessian_partials,
                   ActivationSpillOptions spill, bool async_checkpoints)
      : group_(std::move(group)),
        num_partials_(hessian_partials),
        activations_(std::move(spill)),
        shards_(group_.get(), &activations_),
        checkpoints_(async_checkpoints) {
    activations_.set_device(group_->first());
  }

  std::string name() const override { return "local engine"; }
  ActivationTransfer* activation_transfer() override { return this; }
  ShardedCalibration* sharded_calibration() override { return this; }
  TargetSwitching* target_switching() override { return this; }
  CheckpointEvaluator* checkpoint_evaluator() override { return this; }
  LayerOwnership* layer_ownership() override { return this; }

  absl::Status Start(const JobConfig& config) override;
  int64_t num_blocks() const override { return job_.model.num_layers; }
  absl::StatusOr<BlockMeasurement> Measure(int64_t block) override;
  absl::StatusOr<BlockOutput> Quantize(int64_t block,
                                       const std::vector<LayerAllocation>& allocation) override;
  void Reset() override;
  // Checked before each call, between calibration-window chunks and between
  // layers; the owner (EngineHost) then Reset()s and drops the engine.
  void Cancel() override { cancelled_.store(true, std::memory_order_relaxed); }

  // ActivationTransfer (unsharded jobs). In sequential mode an export hands
  // the inputs over but keeps them until this engine moves on, so a retry
  // after a lost reply gets the same bytes (BlockActivations).
  absl::StatusOr<std::string> ExportInputs(int64_t block) override;
  absl::Status ImportInputs(int64_t block, std::string bytes) override;

  // ShardedCalibration (sharded jobs).
  absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t block, const std::vector<int32_t>& shards) override;
  absl::Status ImportHessians(int64_t block, std::vector<HessianPartial> merged) override;
  absl::StatusOr<std::string> ExportShardInputs(int64_t block, int32_t shard) override;
  absl::Status ImportShardInputs(int64_t block, int32_t shard, std::string bytes) override;

  // TargetSwitching.
  absl::Status SetTarget(double target_bits, bool keep_measurement) override;

  // CheckpointEvaluator: `baq eval`'s computation on the engine's first
  // device (float32, eight windows per block forward on a GPU); checks for
  // Cancel() between blocks.
  absl::StatusOr<double> Evaluate(const std::string& model_dir, const std::string& text_file,
                                  int64_t seqlen) override;

  // LayerOwnership (sequential mode; sharded or not: an unsharded job is
  // shard 0). BlockLayers reads the model config (no weights). A layer
  // quantized here (QuantizeLayers) or given (AdvanceShards) keeps its
  // quantized weight on the block until AdvanceShards drops the block; a
  // second QuantizeLayers of the layer is FailedPrecondition (its weight is
  // the quantized one by then). CheckpointShards writes synchronously (the
  // files are durable when it returns) or, with
  // EngineOptions::async_shard_checkpoints, copies the shards to host memory
  // and writes them on a background thread (ShardCheckpointWriter): they are
  // durable once the next CheckpointShards returns OK, which reports an
  // earlier batch's error; RestoreShard and Reset wait for the batch first.
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

 private:
  absl::Status CheckCancelled() const {
    if (!cancelled_.load(std::memory_order_relaxed)) return absl::OkStatus();
    return absl::CancelledError("job cancelled on this worker");
  }
  CancelCheck check() const {
    return [this] { return CheckCancelled(); };
  }
  absl::Status CheckBlock(int64_t block) const;
  // Sharding runs every shard on one device and keeps partials per shard,
  // so the engine's own partial count must be 1 or equal the shard count.
  absl::Status CheckShardable() const;
  absl::Status CheckSharded(absl::string_view call) const;
  absl::Status CheckUnsharded(absl::string_view call) const;
  // The measured state of `block`: imported or kept, or measured now (every
  // shard held here, or the unsharded inputs).
  absl::StatusOr<BlockState*> MeasuredState(int64_t block);
  // MeasuredState() of an unsharded block that is not measured yet.
  absl::StatusOr<BlockState*> MeasureFresh(int64_t block);
  // AdvanceShards(): the block whose shards move on, with its quantized
  // weights: measured or imported here, loaded by AccumulateHessians, or
  // (replay) loaded fresh from the checkpoint.
  absl::StatusOr<BlockState> TakeBlockToAdvance(int64_t block);
  // The shards this engine holds at `block` (shard 0: an unsharded job's
  // inputs), as tensor handles.
  std::map<int32_t, at::Tensor> HeldShards(int64_t block) const;
  // Quantize(): the next block's inputs from the quantized block.
  absl::Status ForwardQuantized(int64_t block, const BlockState& state);

  // Constant after construction.
  const std::unique_ptr<DeviceGroup> group_;
  const int num_partials_;

  EngineJob job_;
  bool started_ = false;
  // The job's calibration token ids (CPU, int64), for RestoreShard(0, k, "").
  at::Tensor calibration_ids_;
  BlockActivations activations_;
  MeasurementCache measurements_;
  ShardedHessians shards_;  // Uses group_ and activations_.
  std::atomic<bool> cancelled_{false};  // Set by Cancel(), from any thread.
  // Last: destroyed (its load waited for) before job_'s checkpoint.
  BlockPrefetcher prefetcher_;
  // Declared last: destroyed first, joining a write in flight.
  ShardCheckpointWriter checkpoints_;
};

absl::Status TorchBlockEngine::Start(const JobConfig& config) {
  BAQ_TRACE_SCOPE("engine", "start");
  Reset();
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(config.Validate());
  job_.config = config;
  job_.num_partials = num_partials_;
  BAQ_ASSIGN_OR_RETURN(job_.model, LoadModelConfig(config.model_dir));
  BAQ_ASSIGN_OR_RETURN(job_.ckpt, SafetensorsCheckpoint::Open(config.model_dir));
  BAQ_RETURN_IF_ERROR(measurements_.Open(job_));
  BAQ_ASSIGN_OR_RETURN(BpeTokenizer tokenizer,
                       BpeTokenizer::Load(config.model_dir + "/tokenizer.json"));
  BAQ_ASSIGN_OR_RETURN(at::Tensor ids, LoadCalibrationIds(config.calibration, tokenizer));
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  job_.block_options.device = group_->first();
  job_.block_options.compute_dtype =
      ResolveForwardDtype(config.forward_dtype, job_.model.dtype, group_->first());
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<TokenEmbedding> embed,
                       TokenEmbedding::Load(job_.model, *job_.ckpt, job_.block_options));
  BAQ_ASSIGN_OR_RETURN(at::Tensor x, embed->Embed(ids.to(group_->first())));
  if (job_.sharded()) {
    BAQ_RETURN_IF_ERROR(CheckShardable());
    BAQ_RETURN_IF_ERROR(activations_.SplitIntoShards(std::move(x), config.calibration_shards));
  } else {
    BAQ_ASSIGN_OR_RETURN(at::Tensor kept, activations_.Keep(std::move(x)));
    activations_.Set(0, std::move(kept));
  }
  job_.calibration_tokens = ids.numel();
  calibration_ids_ = std::move(ids);
  started_ = true;
  return absl::OkStatus();
}

absl::StatusOr<BlockMeasurement> TorchBlockEngine::Measure(int64_t block) {
  BAQ_TRACE_SCOPE("engine", "measure", {{"block", block}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  activations_.ReleaseHandedOver();
  BAQ_ASSIGN_OR_RETURN(BlockState * state, MeasuredState(block));
  return MeasureLosses(*group_, job_, block, *state, check());
}

absl::StatusOr<BlockState*> TorchBlockEngine::MeasuredState(int64_t block) {
  // Measured already (imported sums, or another target over a kept
  // measurement): BAQ pass 1 only.
  if (BlockState* state = measurements_.Find(block)) return state;
  if (job_.sharded()) {
    BAQ_ASSIGN_OR_RETURN(BlockState fresh, shards_.AccumulateAll(job_, block, check()));
    measurements_.Put(block, std::move(fresh));
    return measurements_.Find(block);
  }
  if (measurements_.use() == MeasurementCache::Use::kReuse) {
    BAQ_ASSIGN_OR_RETURN(BlockState kept, measurements_.LoadKept(*group_, job_, block));
    measurements_.Put(block, std::move(kept));
    return measurements_.Find(block);
  }
  return MeasureFresh(block);
}

absl::StatusOr<BlockState*> TorchBlockEngine::MeasureFresh(int64_t block) {
  const at::Tensor* x = activations_.Find(block);
  if (x == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("block ", block, ": inputs not present on this worker"));
  }
  // Parallel mode: the unquantized block's outputs are the next inputs.
  at::Tensor next;
  if (!job_.sequential()) {
    BAQ_ASSIGN_OR_RETURN(next, activations_.AllocateLike(*x));
  }
  // One CUDA device: block + 1 loads on a side stream during this block's
  // forward (block_prefetcher.h), and is waited for before returning.
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DecoderBlock> preloaded, prefetcher_.Take(block));
  if (group_->world() == 1 && group_->first().is_cuda() && block + 1 < job_.model.num_layers) {
    prefetcher_.Start(job_.model, job_.ckpt.get(), block + 1, job_.block_options);
  }
  BAQ_ASSIGN_OR_RETURN(BlockState state, AccumulateBlock(*group_, job_, block, *x, next, check(),
                                                         std::move(preloaded)));
  if (!job_.sequential()) activations_.Set(block + 1, std::move(next));
  if (measurements_.use() == MeasurementCache::Use::kSave) {
    BAQ_RETURN_IF_ERROR(measurements_.Save(job_, block, state));
  }
  measurements_.Put(block, std::move(state));
  prefetcher_.Wait();
  return measurements_.Find(block);
}

absl::StatusOr<BlockOutput> TorchBlockEngine::Quantize(
    int64_t block, const std::vector<LayerAllocation>& allocation) {
  BAQ_TRACE_SCOPE("engine", "quantize", {{"block", block}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  activations_.ReleaseHandedOver();
  prefetcher_.Wait();  // Nothing freed below may be in use by a load in flight.
  BlockState* state = measurements_.Find(block);
  if (state == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("block ", block, ": not measured"));
  }
  BAQ_ASSIGN_OR_RETURN(BlockOutput output,
                       QuantizeBlock(*group_, job_, block, *state, allocation, check()));
  BAQ_RETURN_IF_ERROR(ForwardQuantized(block, *state));
  measurements_.Done(block);
  return output;
}

absl::Status TorchBlockEngine::ForwardQuantized(int64_t block, const BlockState& state) {
  BAQ_TRACE_SCOPE("engine", "forward_quantized", {{"block", block}});
  if (job_.sharded()) return shards_.ForwardShards(block, state.AllReplicas(), check());
  if (!job_.sequential()) {
    activations_.Erase(block);
    return absl::OkStatus();
  }
  const at::Tensor* in = activations_.Find(block);
  if (in == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("block ", block, ": inputs dropped"));
  }
  BAQ_ASSIGN_OR_RETURN(at::Tensor next, activations_.AllocateLike(*in));
  BAQ_RETURN_IF_ERROR(group_->Forward(state.AllReplicas(), *in, next, check()));
  activations_.Erase(block);
  activations_.Set(block + 1, std::move(next));
  return absl::OkStatus();
}

absl::StatusOr<std::string> TorchBlockEngine::ExportInputs(int64_t block) {
  BAQ_TRACE_SCOPE("engine", "export_inputs", {{"block", block}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckUnsharded("ExportInputs"));
  return activations_.Export(block, /*hand_over=*/job_.sequential());
}

absl::Status TorchBlockEngine::ImportInputs(int64_t block, std::string bytes) {
  BAQ_TRACE_SCOPE("engine", "import_inputs", {{"block", block}, {"bytes", bytes.size()}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  BAQ_RETURN_IF_ERROR(CheckUnsharded("ImportInputs"));
  activations_.ReleaseHandedOver();
  return activations_.Import(block, bytes);
}

absl::StatusOr<std::vector<HessianPartial>> TorchBlockEngine::AccumulateHessians(
    int64_t block, const std::vector<int32_t>& shards) {
  BAQ_TRACE_SCOPE("engine", "accumulate_hessians", {{"block", block}, {"shards", shards.size()}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  BAQ_RETURN_IF_ERROR(CheckSharded("AccumulateHessians"));
  return shards_.Accumulate(job_, block, shards, check());
}

absl::Status TorchBlockEngine::ImportHessians(int64_t block, std::vector<HessianPartial> merged) {
  BAQ_TRACE_SCOPE("engine", "import_hessians", {{"block", block}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  BAQ_RETURN_IF_ERROR(CheckSharded("ImportHessians"));
  BAQ_ASSIGN_OR_RETURN(BlockState state, shards_.Import(job_, block, std::move(merged)));
  measurements_.Put(block, std::move(state));
  return absl::OkStatus();
}

absl::StatusOr<std::string> TorchBlockEngine::ExportShardInputs(int64_t block, int32_t shard) {
  BAQ_TRACE_SCOPE("engine", "export_shard_inputs", {{"block", block}, {"shard", shard}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckSharded("ExportShardInputs"));
  BAQ_RETURN_IF_ERROR(activations_.CheckShard(block, shard, job_.config.calibration_shards));
  return activations_.ExportShard(block, shard);
}

absl::Status TorchBlockEngine::ImportShardInputs(int64_t block, int32_t shard,
                                                 std::string bytes) {
  BAQ_TRACE_SCOPE("engine", "import_shard_inputs", {{"block", block}, {"shard", shard}});
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  BAQ_RETURN_IF_ERROR(CheckSharded("ImportShardInputs"));
  if (shard < 0 || shard >= job_.config.calibration_shards) {
    return absl::InvalidArgumentError(absl::StrCat("shard ", shard, " out of range [0, ",
                                                   job_.config.calibration_shards, ")"));
  }
  return activations_.ImportShard(block, shard, bytes);
}

absl::StatusOr<std::vector<LayerShape>> TorchBlockEngine::BlockLayers(int64_t block) {
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  std::vector<LayerShape> out;
  for (const LinearLayerSpec& s : job_.model.BlockLinearLayers(block)) {
    out.push_back(LayerShape{s.name, s.input_group, s.out_features, s.in_features});
  }
  return out;
}

absl::StatusOr<BlockMeasurement> TorchBlockEngine::MeasureLayers(
    int64_t block, const std::vector<int32_t>& layers) {
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  activations_.ReleaseHandedOver();
  BAQ_ASSIGN_OR_RETURN(BlockState * state, MeasuredState(block));
  return MeasureLosses(*group_, job_, block, *state, check(), &layers);
}

absl::StatusOr<OwnedLayersOutput> TorchBlockEngine::QuantizeLayers(
    int64_t block, const std::vector<int32_t>& layers,
    const std::vector<LayerAllocation>& allocation) {
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  activations_.ReleaseHandedOver();
  BlockState* state = measurements_.Find(block);
  if (state == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("block ", block, ": not measured"));
  }
  QuantizedWeights weights;
  OwnedLayersOutput out;
  BAQ_ASSIGN_OR_RETURN(out.output, QuantizeBlock(*group_, job_, block, *state, allocation,
                                                 check(), &layers, &weights));
  out.tensors_per_layer = std::move(weights.tensors_per_layer);
  const std::vector<LinearLayerSpec>& specs = state->block->linear_layers();
  for (size_t j = 0; j < layers.size(); ++j) {
    const LinearLayerSpec& s = specs[layers[j]];
    TensorBytes w;
    if (!weights.packed_weights[j].empty()) {
      // About 5x smaller at 3 bits; checked to rebuild the dense weight.
      BAQ_ASSIGN_OR_RETURN(w, EncodeCompactWeight(s.name, s.out_features, s.in_features,
                                                  job_.model.dtype, weights.packed_weights[j]));
    } else {
      w.name = s.name;
      w.dtype = job_.model.dtype;
      w.shape = {s.out_features, s.in_features};
      // Lossless: the values are rounded to the checkpoint dtype already.
      BAQ_ASSIGN_OR_RETURN(w.bytes, TensorToBytes(weights.stored_weights[j], w.dtype));
    }
    weights.stored_weights[j] = at::Tensor();
    std::vector<TensorBytes>().swap(weights.packed_weights[j]);
    out.weights.push_back(std::move(w));
    // Quantized: its Hessian is not needed any more (sequential mode).
    if (job_.sequential()) state->hessians[layers[j]] = at::Tensor();
  }
  return out;
}

absl::StatusOr<BlockState> TorchBlockEngine::TakeBlockToAdvance(int64_t block) {
  if (BlockState* measured = measurements_.Find(block)) {
    BlockState state = std::move(*measured);
    measurements_.Erase(block);
    return state;
  }
  BlockState state;
  if (std::unique_ptr<DecoderBlock> pending = shards_.TakePending(block)) {
    state.block = std::move(pending);
    return state;
  }
  // A replay: the block as the checkpoint holds it, on every rank.
  BAQ_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<DecoderBlock>> replicas,
                       LoadReplicas(*group_, job_, block));
  state.block = std::move(replicas[0]);
  for (size_t r = 1; r < replicas.size(); ++r) state.replicas.push_back(std::move(replicas[r]));
  return state;
}

absl::Status TorchBlockEngine::AdvanceShards(int64_t block, std::vector<TensorBytes> weights) {
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  if (!job_.sequential()) {
    return absl::FailedPreconditionError(
        absl::StrCat("AdvanceShards: block ", block, ": the job runs in parallel mode"));
  }
  activations_.ReleaseHandedOver();
  const std::vector<LinearLayerSpec> specs = job_.model.BlockLinearLayers(block);
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < specs.size(); ++i) index.emplace(specs[i].name, i);
  std::vector<TensorBytes*> given(specs.size(), nullptr);
  for (TensorBytes& w : weights) {
    auto it = index.find(w.name);
    if (it == index.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdvanceShards: block ", block, " has no layer ", w.name));
    }
    if (given[it->second] != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdvanceShards: block ", block, ": ", w.name, " given twice"));
    }
    given[it->second] = &w;
  }
  // Decoded (and so checked) before the block's state is taken, so that a
  // bad call leaves a retry possible.
  std::vector<at::Tensor> decoded(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    if (given[i] == nullptr) continue;
    BAQ_ASSIGN_OR_RETURN(decoded[i],
                         Annotate(DecodeLayerWeight(std::move(*given[i]), specs[i].out_features,
                                                    specs[i].in_features, job_.model.dtype,
                                                    group_->first()),
                                  absl::StrCat("AdvanceShards: block ", block)));
  }
  BlockState* measured = measurements_.Find(block);
  for (size_t i = 0; i < specs.size(); ++i) {
    const bool here = measured != nullptr && !measured->quantized.empty() &&
                      measured->quantized[i];
    if (given[i] == nullptr && !here) {
      return absl::FailedPreconditionError(absl::StrCat(
          "AdvanceShards: block ", block, ": no quantized weight for ", specs[i].name,
          " (neither quantized on this worker nor given)"));
    }
  }
  BAQ_ASSIGN_OR_RETURN(BlockState state, TakeBlockToAdvance(block));
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!decoded[i].defined()) continue;
    for (DecoderBlock* replica : state.AllReplicas()) {
      BAQ_RETURN_IF_ERROR(replica->SetLinearWeight(specs[i].short_name, decoded[i]));
    }
  }
  std::vector<TensorBytes>().swap(weights);
  state.hessians.clear();
  return ForwardQuantized(block, state);
}

std::map<int32_t, at::Tensor> TorchBlockEngine::HeldShards(int64_t block) const {
  if (job_.sharded()) return activations_.HeldShards(block);
  std::map<int32_t, at::Tensor> out;
  if (const at::Tensor* x = activations_.Find(block)) out.emplace(0, *x);
  return out;
}

absl::StatusOr<std::vector<int32_t>> TorchBlockEngine::CheckpointShards(int64_t block,
                                                                        const std::string& dir) {
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  // The last block's outputs (block == num_blocks) may be checkpointed too.
  if (block != job_.model.num_layers || !started_) BAQ_RETURN_IF_ERROR(CheckBlock(block));
  if (dir.empty()) {
    return absl::InvalidArgumentError("CheckpointShards: no checkpoint directory");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("CheckpointShards: cannot create ", dir, ": ", ec.message()));
  }
  std::vector<int32_t> written;
  std::vector<ShardCheckpointWriter::File> files;
  for (const auto& [shard, x] : HeldShards(block)) {
    ShardCheckpointWriter::File f;
    f.path = ShardCheckpointWriter::Path(dir, shard, block);
    f.superseded = ShardCheckpointWriter::Superseded(dir, shard, block);
    BAQ_ASSIGN_OR_RETURN(f.bytes, EncodeActivations(x));  // A host copy.
    files.push_back(std::move(f));
    written.push_back(shard);
  }
  // Reports an earlier asynchronous batch's error first.
  BAQ_RETURN_IF_ERROR(checkpoints_.Write(std::move(files)));
  return written;
}

absl::Status TorchBlockEngine::RestoreShard(int64_t block, int32_t shard,
                                            const std::string& dir) {
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  BAQ_RETURN_IF_ERROR(CheckBlock(block));
  const int shards = job_.config.calibration_shards;
  if (shard < 0 || shard >= shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("RestoreShard: shard ", shard, " out of range [0, ", shards, ")"));
  }
  activations_.ReleaseHandedOver();
  if (dir.empty()) {
    if (block != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "RestoreShard: block ", block, " needs a checkpoint directory (only block 0's "
          "inputs are embedded again)"));
    }
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<TokenEmbedding> embed,
                         TokenEmbedding::Load(job_.model, *job_.ckpt, job_.block_options));
    BAQ_ASSIGN_OR_RETURN(at::Tensor x, embed->Embed(calibration_ids_.to(group_->first())));
    if (job_.sharded()) return activations_.SetShardOf(std::move(x), shard, shards);
    BAQ_ASSIGN_OR_RETURN(at::Tensor kept, activations_.Keep(std::move(x)));
    activations_.Set(0, std::move(kept));
    return absl::OkStatus();
  }
  // The file may be one this engine is still writing.
  checkpoints_.Join();
  const std::string path = ShardCheckpointWriter::Path(dir, shard, block);
  absl::StatusOr<std::string> bytes = ReadFileContents(path);
  if (!bytes.ok()) {
    if (absl::IsNotFound(bytes.status())) return bytes.status();
    return absl::DataLossError(bytes.status().message());
  }
  absl::StatusOr<at::Tensor> x = DecodeActivations(*bytes, group_->first());
  if (!x.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": ", x.status().message()));
  }
  std::string().swap(*bytes);
  if (job_.sharded()) return activations_.SetShard(block, shard, *std::move(x));
  BAQ_ASSIGN_OR_RETURN(at::Tensor kept, activations_.Keep(*std::move(x)));
  activations_.Set(block, std::move(kept));
  return absl::OkStatus();
}

absl::Status TorchBlockEngine::SetTarget(double target_bits, bool keep_measurement) {
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  JobConfig c = job_.config.ForTarget(target_bits);
  BAQ_RETURN_IF_ERROR(c.Validate());
  job_.config = std::move(c);
  measurements_.set_keep_measurement(keep_measurement);
  return absl::OkStatus();
}

void TorchBlockEngine::Reset() {
  // A write in flight finishes (its error has no one to go to now).
  (void)checkpoints_.Wait();
  prefetcher_.Clear();  // Before the checkpoint it reads goes.
  activations_.Clear();
  calibration_ids_ = at::Tensor();
  shards_.Clear();
  measurements_.Clear();
  job_.ckpt.reset();
  started_ = false;
}

absl::StatusOr<double> TorchBlockEngine::Evaluate(const std::string& model_dir,
                                                  const std::string& text_file, int64_t seqlen) {
  BAQ_TRACE_SCOPE("engine", "evaluate");
  BAQ_RETURN_IF_ERROR(CheckCancelled());
  CheckpointPerplexityOptions options;
  options.perplexity.block.device = group_->first();
  if (group_->first().is_cuda()) options.perplexity.batch_windows = 8;
  options.perplexity.on_block_loaded = [this](DecoderBlock&) { return CheckCancelled(); };
  BAQ_ASSIGN_OR_RETURN(PerplexityResult r,
                       EvaluateCheckpointPerplexity(model_dir, text_file, seqlen, options));
  return r.perplexity;
}

absl::Status TorchBlockEngine::CheckBlock(int64_t block) const {
  if (!started_) return absl::FailedPreconditionError("engine not started");
  if (block < 0 || block >= job_.model.num_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("block ", block, " out of range [0, ", job_.model.num_layers, ")"));
  }
  return absl::OkStatus();
}

absl::Status TorchBlockEngine::CheckShardable() const {
  const int shards = job_.config.calibration_shards;
  if (group_->world() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration_shards = ", shards, " needs single-device engines; this one spans ",
        group_->world(), " devices (give the worker its devices as separate engines)"));
  }
  if (num_partials_ != 1 && num_partials_ != shards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration_shards = ", shards, " does not fit this engine's hessian_partials = ",
        num_partials_, " (use 1, or the shard count)"));
  }
  return absl::OkStatus();
}

absl::Status TorchBlockEngine::CheckSharded(absl::string_view call) const {
  if (!started_) return absl::FailedPreconditionError("engine not started");
  if (job_.sharded()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(call, ": the job does not split its calibration set (calibration_shards = ",
                   job_.config.calibration_shards, ")"));
}

absl::Status TorchBlockEngine::CheckUnsharded(absl::string_view call) const {
  if (!job_.sharded()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      call, ": the job splits its calibration set into ", job_.config.calibration_shards,
      " shards; move inputs shard by shard (ExportShardInputs/ImportShardInputs)"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlockEngine>> MakeTorchBlockEngine(const EngineOptions& options) {
  BAQ_ASSIGN_OR_RETURN(std::vector<at::Device> devices, ParseDevices(options.device));
  const int world = static_cast<int>(devices.size());
  const int partials = options.hessian_partials == 0 ? world : options.hessian_partials;
  if (partials < 1 || (world > 1 && partials != world)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hessian_partials = ", options.hessian_partials, " does not fit ", world,
        " device(s) \"", options.device, "\" (use 0, or the device count; any P >= 1 on one "
        "device)"));
  }
  BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DeviceGroup> group, DeviceGroup::Create(devices));
  if (options.num_threads > 0) at::set_num_threads(options.num_threads);
  return std::unique_ptr<BlockEngine>(
      new TorchBlockEngine(std::move(group), partials, options.activation_spill,
                           options.async_shard_checkpoints));
}

}  // namespace baq::worker
