#include "worker/torch_block_engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/bpe_tokenizer.h"
#include "common/engine_capabilities.h"
#include "common/measurement_store.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"
#include "common/safetensors_checkpoint.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/activation_codec.h"
#include "worker/calibration_inputs.h"
#include "worker/communicator.h"
#include "worker/layer_quantizer.h"
#include "worker/local_communicator.h"
#include "worker/model/block_factory.h"
#include "worker/model/checkpoint_perplexity.h"
#include "worker/model/model_head.h"
#include "worker/model/tensor_convert.h"
#include "worker/nccl/communicator_factory.h"
#include "worker/quant/hessian_accumulator.h"
#include "worker/torch/torch_call.h"

namespace baq::worker {
namespace {

// Calibration windows per forward call: bounds attention memory. Also the
// unit by which windows are dealt to devices, Hessian partials and shards.
constexpr int64_t kWindowsPerForward = kCalibrationWindowsPerChunk;

// Bound on one Hessian all-reduce between the devices of one engine (a peer
// that failed earlier in the same call makes the others wait this long).
constexpr absl::Duration kCollectiveTimeout = absl::Minutes(5);

absl::StatusOr<at::Device> ParseDevice(const std::string& device) {
  if (device == "cpu") return at::Device(at::kCPU);
  int index = 0;
  if (device == "cuda" || (absl::StartsWith(device, "cuda:") &&
                           absl::SimpleAtoi(device.substr(5), &index) && index >= 0)) {
    if (!at::hasCUDA()) {
      return absl::UnavailableError(absl::StrCat("device ", device,
                                                 ": this build or machine has no CUDA"));
    }
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device \"", device, "\" (use cpu, cuda or cuda:N)"));
}

// "cuda:0+cuda:1" -> both devices; see EngineOptions::device.
absl::StatusOr<std::vector<at::Device>> ParseDevices(const std::string& spec) {
  std::vector<at::Device> devices;
  for (absl::string_view part : absl::StrSplit(spec, absl::ByAnyChar("+,"))) {
    BAQ_ASSIGN_OR_RETURN(at::Device d, ParseDevice(std::string(part)));
    if (!devices.empty() && d.type() != devices.front().type()) {
      return absl::InvalidArgumentError(
          absl::StrCat("device list \"", spec, "\" mixes CPU and CUDA devices"));
    }
    devices.push_back(d);
  }
  return devices;
}

// One device of the engine and its communicator (rank = index).
struct Rank {
  at::Device device;
  std::unique_ptr<Communicator> communicator;
};

class TorchBlockEngine final : public BlockEngine,
                               public ActivationTransfer,
                               public ShardedCalibration,
                               public TargetSwitching,
                               public CheckpointEvaluator {
 public:
  TorchBlockEngine(std::vector<Rank> ranks, int hessian_partials)
      : device_(ranks.front().device),
        ranks_(std::move(ranks)),
        num_partials_(hessian_partials),
        chunk_of_rank_(ranks_.size(), 0) {}

  std::string name() const override { return "local engine"; }
  ActivationTransfer* activation_transfer() override { return this; }
  ShardedCalibration* sharded_calibration() override { return this; }
  TargetSwitching* target_switching() override { return this; }
  CheckpointEvaluator* checkpoint_evaluator() override { return this; }

  absl::Status Start(const JobConfig& config) override {
    Reset();
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(config.Validate());
    config_ = config;
    BAQ_ASSIGN_OR_RETURN(model_, LoadModelConfig(config.model_dir));
    BAQ_ASSIGN_OR_RETURN(ckpt_, SafetensorsCheckpoint::Open(config.model_dir));
    BAQ_RETURN_IF_ERROR(OpenMeasurement());
    BAQ_ASSIGN_OR_RETURN(BpeTokenizer tokenizer,
                         BpeTokenizer::Load(config.model_dir + "/tokenizer.json"));
    BAQ_ASSIGN_OR_RETURN(at::Tensor ids, LoadCalibrationIds(config.calibration, tokenizer));
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    block_options_.device = device_;
    block_options_.compute_dtype = at::kFloat;
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<TokenEmbedding> embed,
                         TokenEmbedding::Load(model_, *ckpt_, block_options_));
    BAQ_ASSIGN_OR_RETURN(at::Tensor x, embed->Embed(ids.to(device_)));
    if (sharded()) {
      BAQ_RETURN_IF_ERROR(CheckShardable());
      BAQ_RETURN_IF_ERROR(SplitIntoShards(std::move(x)));
    } else {
      BAQ_ASSIGN_OR_RETURN(inputs_[0], Keep(std::move(x)));
    }
    calibration_tokens_ = ids.numel();
    started_ = true;
    return absl::OkStatus();
  }

  int64_t num_blocks() const override { return model_.num_layers; }

  absl::StatusOr<BlockMeasurement> Measure(int64_t block) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    ReleaseHandedOver();
    if (sharded()) return MeasureSharded(block);
    // Another target over a kept measurement: BAQ pass 1 only.
    if (auto kept = blocks_.find(block); kept != blocks_.end()) {
      return MeasureLosses(block, kept->second);
    }
    if (measurement_ == MeasurementUse::kReuse) return MeasureFromKept(block);
    auto it = inputs_.find(block);
    if (it == inputs_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("block ", block, ": inputs not present on this worker"));
    }
    // replicas[r]: the block on device r (one per rank).
    BAQ_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<DecoderBlock>> replicas,
                         LoadReplicas(block));
    DecoderBlock* b = replicas[0].get();
    const std::vector<LinearLayerSpec>& specs = b->linear_layers();
    const int world = static_cast<int>(ranks_.size());
    // partials[p]: input group -> accumulator, on the device of rank p % world.
    std::vector<std::map<int, HessianAccumulator>> partials(num_partials_);
    for (int p = 0; p < num_partials_; ++p) {
      for (const LinearLayerSpec& s : specs) {
        if (partials[p].count(s.input_group) == 0) {
          partials[p].emplace(s.input_group,
                              HessianAccumulator(s.in_features, ranks_[p % world].device));
        }
      }
    }
    std::map<int, std::string> first_of_group;
    for (const LinearLayerSpec& s : specs) first_of_group.emplace(s.input_group, s.short_name);
    for (int r = 0; r < world; ++r) {
      replicas[r]->set_input_observer([&, r](const LinearLayerSpec& l, const at::Tensor& x) {
        BAQ_RETURN_IF_ERROR(CheckCancelled());  // Between the layers of a forward.
        if (first_of_group.at(l.input_group) != l.short_name) return absl::OkStatus();
        return partials[chunk_of_rank_[r] % num_partials_].at(l.input_group).Add(x);
      });
    }
    const bool parallel = config_.mode == ExecutionMode::kParallel;
    std::vector<DecoderBlock*> raw;
    for (auto& replica : replicas) raw.push_back(replica.get());
    absl::StatusOr<at::Tensor> out = RunBlock(raw, it->second, /*keep=*/parallel);
    for (auto& replica : replicas) replica->set_input_observer(nullptr);
    if (!out.ok()) return out.status();
    if (parallel) inputs_[block + 1] = *std::move(out);
    BAQ_RETURN_IF_ERROR(ReducePartials(partials));

    // Layer i is measured and quantized on rank i % world, with the Hessian
    // that rank's accumulator holds after the reduction.
    BlockState state;
    for (size_t i = 0; i < specs.size(); ++i) {
      const int owner = world == 1 ? 0 : static_cast<int>(i % world);
      BAQ_ASSIGN_OR_RETURN(
          at::Tensor h,
          Annotate(partials[owner].at(specs[i].input_group).Finalize(at::kFloat), specs[i].name));
      state.hessians.push_back(std::move(h));
    }
    partials.clear();
    state.block = std::move(replicas[0]);
    for (int r = 1; r < world; ++r) state.replicas.push_back(std::move(replicas[r]));
    if (measurement_ == MeasurementUse::kSave) BAQ_RETURN_IF_ERROR(SaveMeasurement(block, state));
    BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, MeasureLosses(block, state));
    blocks_[block] = std::move(state);
    return m;
  }

  absl::Status SetTarget(double target_bits, bool keep_measurement) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    JobConfig c = config_.ForTarget(target_bits);
    BAQ_RETURN_IF_ERROR(c.Validate());
    config_ = std::move(c);
    keep_measurement_ = keep_measurement;
    return absl::OkStatus();
  }

  absl::StatusOr<BlockOutput> Quantize(int64_t block,
                                       const std::vector<LayerAllocation>& allocation) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    ReleaseHandedOver();
    auto it = blocks_.find(block);
    if (it == blocks_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("block ", block, ": not measured"));
    }
    BlockState& state = it->second;
    DecoderBlock& b = *state.block;
    const std::vector<LinearLayerSpec>& specs = b.linear_layers();
    if (allocation.size() != specs.size()) {
      return absl::InvalidArgumentError(absl::StrCat("block ", block, ": allocation has ",
                                                     allocation.size(), " layers, block has ",
                                                     specs.size()));
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      if (allocation[i].name != specs[i].name) {
        return absl::InvalidArgumentError(absl::StrCat("block ", block, ": allocation entry ", i,
                                                       " names ", allocation[i].name,
                                                       ", expected ", specs[i].name));
      }
    }
    // Layer i on rank i % world (where Measure left its Hessian).
    const int world = static_cast<int>(ranks_.size());
    std::vector<DecoderBlock*> replicas = Replicas(state);
    LayerQuantizer quantizer(config_.quant);
    std::vector<std::optional<LayerQuantizer::Result>> results(specs.size());
    BAQ_RETURN_IF_ERROR(OnRanks([&](int rank) -> absl::Status {
      for (size_t i = rank; i < specs.size(); i += world) {
        BAQ_RETURN_IF_ERROR(CheckCancelled());
        const absl::Time start = absl::Now();
        BAQ_ASSIGN_OR_RETURN(at::Tensor w, replicas[rank]->LinearWeight(specs[i].short_name));
        BAQ_ASSIGN_OR_RETURN(
            results[i], Annotate(quantizer.Quantize(specs[i].name, w, state.hessians[i],
                                                    allocation[i], config_.formats, model_.dtype),
                                 specs[i].name));
        results[i]->report.seconds = absl::ToDoubleSeconds(absl::Now() - start);
      }
      return absl::OkStatus();
    }));
    BlockOutput output;
    output.block = block;
    for (size_t i = 0; i < specs.size(); ++i) {
      LayerQuantizer::Result& r = *results[i];
      // The next block must see what a loaded fake-quant checkpoint holds:
      // the dequantized weight rounded to the checkpoint dtype.
      // (Parallel mode: no later forward; the original weights stay for
      // another target.)
      if (config_.mode == ExecutionMode::kSequential) {
        for (DecoderBlock* replica : replicas) {
          BAQ_RETURN_IF_ERROR(replica->SetLinearWeight(specs[i].short_name, r.stored_weight));
        }
      }
      for (size_t t = 0; t < r.tensors.size(); ++t) {
        output.tensors.push_back(std::move(r.tensors[t]));
        output.tensor_format.push_back(r.tensor_format[t]);
      }
      output.layers.push_back(std::move(r.report));
    }
    if (sharded()) {
      // Each shard this engine holds goes through the quantized block.
      std::map<int32_t, at::Tensor> next;
      for (auto& [shard, x] : shard_inputs_[block]) {
        BAQ_ASSIGN_OR_RETURN(at::Tensor y, RunBlock(replicas, x, /*keep=*/true));
        next[shard] = std::move(y);
      }
      shard_inputs_.erase(block);
      if (!next.empty()) shard_inputs_[block + 1] = std::move(next);
    } else if (config_.mode == ExecutionMode::kSequential) {
      auto in = inputs_.find(block);
      if (in == inputs_.end()) {
        return absl::FailedPreconditionError(absl::StrCat("block ", block, ": inputs dropped"));
      }
      BAQ_ASSIGN_OR_RETURN(at::Tensor next, RunBlock(replicas, in->second, /*keep=*/true));
      inputs_.erase(in);
      inputs_[block + 1] = std::move(next);
    } else {
      inputs_.erase(block);
    }
    if (!keep_measurement_) blocks_.erase(it);
    return output;
  }

  absl::StatusOr<std::string> ExportInputs(int64_t block) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckUnsharded("ExportInputs"));
    auto it = inputs_.find(block);
    if (it == inputs_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("block ", block, ": no inputs to export on this worker"));
    }
    BAQ_ASSIGN_OR_RETURN(std::string bytes, EncodeActivations(it->second));
    // Sequential hand-off: the receiver owns them from now on, but they stay
    // here until this engine moves on (ReleaseHandedOver), so a retry after
    // a lost reply gets the same bytes.
    if (config_.mode == ExecutionMode::kSequential) handed_over_ = block;
    return bytes;
  }

  absl::Status ImportInputs(int64_t block, std::string bytes) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    BAQ_RETURN_IF_ERROR(CheckUnsharded("ImportInputs"));
    ReleaseHandedOver();
    BAQ_ASSIGN_OR_RETURN(at::Tensor x, DecodeActivations(bytes, device_));
    BAQ_ASSIGN_OR_RETURN(inputs_[block], Keep(std::move(x)));
    return absl::OkStatus();
  }

  void set_activation_spill(ActivationSpillOptions spill) { spill_ = std::move(spill); }

  absl::StatusOr<std::vector<HessianPartial>> AccumulateHessians(
      int64_t block, const std::vector<int32_t>& shards) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    BAQ_RETURN_IF_ERROR(CheckSharded("AccumulateHessians"));
    if (shards.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("block ", block, ": no shards to accumulate"));
    }
    for (size_t i = 0; i < shards.size(); ++i) {
      BAQ_RETURN_IF_ERROR(CheckShard(block, shards[i]));
      if (i > 0 && shards[i] <= shards[i - 1]) {
        return absl::InvalidArgumentError(
            absl::StrCat("block ", block, ": shards must be distinct and in increasing order"));
      }
    }
    // This engine owns `shards` of the block from now on: drop the others.
    std::map<int32_t, at::Tensor>& held = shard_inputs_[block];
    for (auto it = held.begin(); it != held.end();) {
      if (std::find(shards.begin(), shards.end(), it->first) == shards.end()) {
        it = held.erase(it);
      } else {
        ++it;
      }
    }
    std::unique_ptr<DecoderBlock> b;
    std::vector<HessianPartial> out;
    BAQ_RETURN_IF_ERROR(OnRanks([&](int) -> absl::Status {
      BAQ_ASSIGN_OR_RETURN(b, LoadDecoderBlock(model_, *ckpt_, block, block_options_));
      BAQ_ASSIGN_OR_RETURN(auto partials, AccumulateShards(*b, block, shards));
      for (size_t i = 0; i < shards.size(); ++i) {
        for (auto& [group, acc] : partials[i]) {
          HessianPartial p;
          p.shard = shards[i];
          p.input_group = group;
          p.layer = FirstLayerOf(*b, group);
          p.bytes = acc.Serialize();
          out.push_back(std::move(p));
        }
        partials[i].clear();  // Serialized: free it before the next shard's.
      }
      return absl::OkStatus();
    }));
    pending_[block] = std::move(b);
    return out;
  }

  absl::Status ImportHessians(int64_t block, std::vector<HessianPartial> merged) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    BAQ_RETURN_IF_ERROR(CheckSharded("ImportHessians"));
    return OnRanks([&](int) -> absl::Status {
      std::unique_ptr<DecoderBlock> b;
      if (auto it = pending_.find(block); it != pending_.end()) {
        b = std::move(it->second);
        pending_.erase(it);
      } else {
        BAQ_ASSIGN_OR_RETURN(b, LoadDecoderBlock(model_, *ckpt_, block, block_options_));
      }
      std::map<int, HessianAccumulator> sums;
      for (HessianPartial& p : merged) {
        const std::string what = absl::StrCat("block ", block, ": merged Hessian of input group ",
                                              p.input_group, " (", p.layer, ")");
        if (sums.count(p.input_group) > 0) {
          return absl::InvalidArgumentError(absl::StrCat(what, " given twice"));
        }
        BAQ_ASSIGN_OR_RETURN(HessianAccumulator acc,
                             Annotate(HessianAccumulator::Deserialize(p.bytes, device_), what));
        std::string().swap(p.bytes);
        sums.emplace(p.input_group, std::move(acc));
      }
      BAQ_ASSIGN_OR_RETURN(BlockState state, MakeBlockState(std::move(b), block, sums));
      blocks_[block] = std::move(state);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::string> ExportShardInputs(int64_t block, int32_t shard) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckSharded("ExportShardInputs"));
    BAQ_RETURN_IF_ERROR(CheckShard(block, shard));
    auto held = shard_inputs_.find(block);
    auto it = held->second.find(shard);
    BAQ_ASSIGN_OR_RETURN(std::string bytes, EncodeActivations(it->second));
    held->second.erase(it);  // Handed over: the receiver owns the shard now.
    if (held->second.empty()) shard_inputs_.erase(held);
    return bytes;
  }

  absl::Status ImportShardInputs(int64_t block, int32_t shard, std::string bytes) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    BAQ_RETURN_IF_ERROR(CheckSharded("ImportShardInputs"));
    if (shard < 0 || shard >= config_.calibration_shards) {
      return absl::InvalidArgumentError(absl::StrCat("shard ", shard, " out of range [0, ",
                                                     config_.calibration_shards, ")"));
    }
    BAQ_ASSIGN_OR_RETURN(at::Tensor x, DecodeActivations(bytes, device_));
    BAQ_ASSIGN_OR_RETURN(shard_inputs_[block][shard], Keep(std::move(x)));
    return absl::OkStatus();
  }

  void Reset() override {
    handed_over_.reset();
    inputs_.clear();
    shard_inputs_.clear();
    pending_.clear();
    blocks_.clear();
    measurement_ = MeasurementUse::kNone;
    keep_measurement_ = false;
    ckpt_.reset();
    started_ = false;
  }

  // `baq eval`'s computation on the engine's first device (float32, eight
  // windows per block forward on a GPU); checks for Cancel() between blocks.
  absl::StatusOr<double> Evaluate(const std::string& model_dir, const std::string& text_file,
                                  int64_t seqlen) override {
    BAQ_RETURN_IF_ERROR(CheckCancelled());
    CheckpointPerplexityOptions options;
    options.perplexity.block.device = device_;
    if (device_.is_cuda()) options.perplexity.batch_windows = 8;
    options.perplexity.on_block_loaded = [this](DecoderBlock&) { return CheckCancelled(); };
    BAQ_ASSIGN_OR_RETURN(PerplexityResult r,
                         EvaluateCheckpointPerplexity(model_dir, text_file, seqlen, options));
    return r.perplexity;
  }

  // Checked before each call, between calibration-window chunks and between
  // layers; the owner (EngineHost) then Reset()s and drops the engine.
  void Cancel() override { cancelled_.store(true, std::memory_order_relaxed); }

 private:
  // Drops the inputs an ExportInputs handed over, if any: the engine moved on
  // (its next Measure, Quantize or ImportInputs), so no retry will come.
  void ReleaseHandedOver() {
    if (handed_over_.has_value()) inputs_.erase(*handed_over_);
    handed_over_.reset();
  }

  absl::Status CheckCancelled() const {
    if (!cancelled_.load(std::memory_order_relaxed)) return absl::OkStatus();
    return absl::CancelledError("job cancelled on this worker");
  }

  struct BlockState {
    std::unique_ptr<DecoderBlock> block;
    // The block on ranks 1.. (same weights), for their share of the forward.
    std::vector<std::unique_ptr<DecoderBlock>> replicas;
    // Parallel to block->linear_layers(); hessians[i] on rank i % world.
    std::vector<at::Tensor> hessians;
  };

  static std::vector<DecoderBlock*> Replicas(const BlockState& state) {
    std::vector<DecoderBlock*> out = {state.block.get()};
    for (const auto& r : state.replicas) out.push_back(r.get());
    return out;
  }

  // Block `block`'s weights on every rank's device (replicas[r] on rank r).
  absl::StatusOr<std::vector<std::unique_ptr<DecoderBlock>>> LoadReplicas(int64_t block) {
    std::vector<std::unique_ptr<DecoderBlock>> replicas(ranks_.size());
    BAQ_RETURN_IF_ERROR(OnRanks([&](int r) -> absl::Status {
      BlockOptions options = block_options_;
      options.device = ranks_[r].device;
      BAQ_ASSIGN_OR_RETURN(replicas[r], LoadDecoderBlock(model_, *ckpt_, block, options));
      return absl::OkStatus();
    }));
    return replicas;
  }

  // What Start() found in config_.measurement_dir (common/measurement_store.h).
  enum class MeasurementUse { kNone, kSave, kReuse };

  absl::Status OpenMeasurement() {
    measurement_ = MeasurementUse::kNone;
    const std::string& dir = config_.measurement_dir;
    if (dir.empty()) return absl::OkStatus();
    absl::StatusOr<int64_t> kept = FindReusableMeasurement(dir, config_);
    if (kept.ok()) {
      if (*kept != model_.num_layers) {
        return absl::FailedPreconditionError(absl::StrCat("the measurement in ", dir, " has ",
                                                          *kept, " blocks, the model ",
                                                          model_.num_layers));
      }
      measurement_ = MeasurementUse::kReuse;
      return absl::OkStatus();
    }
    if (!absl::IsNotFound(kept.status())) return kept.status();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create measurement dir ", dir, ": ", ec.message()));
    }
    measurement_ = MeasurementUse::kSave;
    return absl::OkStatus();
  }

  // Writes block `block`'s Hessians (what Measure computed from the
  // calibration forwards) into the measurement dir, atomically.
  absl::Status SaveMeasurement(int64_t block, const BlockState& state) {
    const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
    const std::string path = MeasurementBlockPath(config_.measurement_dir, block);
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsWriter> w, SafetensorsWriter::Create(path));
    for (size_t i = 0; i < specs.size(); ++i) {
      BAQ_ASSIGN_OR_RETURN(std::string bytes, TensorToBytes(state.hessians[i], DType::kF32));
      BAQ_RETURN_IF_ERROR(w->Add(specs[i].name, DType::kF32,
                                 {state.hessians[i].size(0), state.hessians[i].size(1)},
                                 absl::MakeConstSpan(
                                     reinterpret_cast<const uint8_t*>(bytes.data()),
                                     bytes.size())));
    }
    w->SetMetadata("hessian_partials", absl::StrCat(num_partials_));
    w->SetMetadata("calibration_tokens", absl::StrCat(calibration_tokens_));
    return Annotate(w->Finish(), absl::StrCat("keeping the measurement of block ", block));
  }

  // Measure() of a kept measurement: the block's weights from the model and
  // its Hessians from the measurement dir; no forward, no inputs.
  absl::StatusOr<BlockMeasurement> MeasureFromKept(int64_t block) {
    const std::string path = MeasurementBlockPath(config_.measurement_dir, block);
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(path));
    auto meta = file->metadata().find("hessian_partials");
    if (meta == file->metadata().end() || meta->second != absl::StrCat(num_partials_)) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": measured with hessian_partials = ",
          meta == file->metadata().end() ? "?" : meta->second, ", this engine uses ",
          num_partials_, " (the bits would differ); use the same --hessian_partials"));
    }
    const int world = static_cast<int>(ranks_.size());
    BlockState state;
    BAQ_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<DecoderBlock>> replicas,
                         LoadReplicas(block));
    const std::vector<LinearLayerSpec>& specs = replicas[0]->linear_layers();
    for (size_t i = 0; i < specs.size(); ++i) {
      const at::Device device = ranks_[world == 1 ? 0 : i % world].device;
      BAQ_ASSIGN_OR_RETURN(TensorView view,
                           Annotate(file->Get(specs[i].name), absl::StrCat("kept measurement ", path)));
      const std::vector<int64_t> want = {specs[i].in_features, specs[i].in_features};
      if (view.dtype != DType::kF32 || view.shape != want) {
        return absl::DataLossError(absl::StrCat(path, ": ", specs[i].name, " is not an F32 ",
                                                ShapeString(want), " Hessian"));
      }
      BAQ_ASSIGN_OR_RETURN(at::Tensor h, CopyTensorFromView(view, device, at::kFloat));
      state.hessians.push_back(std::move(h));
    }
    state.block = std::move(replicas[0]);
    for (int r = 1; r < world; ++r) state.replicas.push_back(std::move(replicas[r]));
    BAQ_ASSIGN_OR_RETURN(BlockMeasurement m, MeasureLosses(block, state));
    blocks_[block] = std::move(state);
    return m;
  }

  // BAQ pass 1 of every layer of a measured block at the current target
  // (empty losses for GPTQ/RTN): layer i on rank i % world.
  absl::StatusOr<BlockMeasurement> MeasureLosses(int64_t block, BlockState& state) {
    const int world = static_cast<int>(ranks_.size());
    const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
    std::vector<DecoderBlock*> replicas = Replicas(state);
    BlockMeasurement m;
    m.block = block;
    m.calibration_tokens = calibration_tokens_;
    m.layers.resize(specs.size());
    LayerQuantizer quantizer(config_.quant);
    BAQ_RETURN_IF_ERROR(OnRanks([&](int r) -> absl::Status {
      for (size_t i = r; i < specs.size(); i += world) {
        BAQ_RETURN_IF_ERROR(CheckCancelled());
        LayerMeasurement& lm = m.layers[i];
        lm.name = specs[i].name;
        lm.rows = specs[i].out_features;
        if (config_.quant.method == QuantMethod::kBaq) {
          BAQ_ASSIGN_OR_RETURN(at::Tensor w, replicas[r]->LinearWeight(specs[i].short_name));
          BAQ_ASSIGN_OR_RETURN(lm.column_loss,
                               Annotate(quantizer.MeasureColumnLoss(w, state.hessians[i]),
                                        specs[i].name));
        }
      }
      return absl::OkStatus();
    }));
    return m;
  }

  bool sharded() const { return config_.calibration_shards > 1; }

  // Sharding runs every shard on one device and keeps partials per shard, so
  // the engine's own partial count must be 1 or equal the shard count.
  absl::Status CheckShardable() const {
    const int shards = config_.calibration_shards;
    if (ranks_.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration_shards = ", shards, " needs single-device engines; this one spans ",
          ranks_.size(), " devices (give the worker its devices as separate engines)"));
    }
    if (num_partials_ != 1 && num_partials_ != shards) {
      return absl::InvalidArgumentError(absl::StrCat(
          "calibration_shards = ", shards, " does not fit this engine's hessian_partials = ",
          num_partials_, " (use 1, or the shard count)"));
    }
    return absl::OkStatus();
  }

  absl::Status CheckSharded(absl::string_view call) const {
    if (!started_) return absl::FailedPreconditionError("engine not started");
    if (sharded()) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(call, ": the job does not split its calibration set (calibration_shards = ",
                     config_.calibration_shards, ")"));
  }

  absl::Status CheckUnsharded(absl::string_view call) const {
    if (!sharded()) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        call, ": the job splits its calibration set into ", config_.calibration_shards,
        " shards; move inputs shard by shard (ExportShardInputs/ImportShardInputs)"));
  }

  // OK if this engine holds `shard`'s inputs of `block`.
  absl::Status CheckShard(int64_t block, int32_t shard) const {
    if (shard < 0 || shard >= config_.calibration_shards) {
      return absl::InvalidArgumentError(absl::StrCat("shard ", shard, " out of range [0, ",
                                                     config_.calibration_shards, ")"));
    }
    auto held = shard_inputs_.find(block);
    if (held == shard_inputs_.end() || held->second.count(shard) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "block ", block, ": inputs of calibration shard ", shard, " not present on this worker"));
    }
    return absl::OkStatus();
  }

  // Splits the embedded windows [N, ...] into the shards' inputs of block 0:
  // shard k is chunks k, k + S, k + 2S, ... (kWindowsPerForward windows
  // each) back to back. Every chunk but the last has kWindowsPerForward
  // windows, so RunBlock over a shard forwards exactly the chunks a run over
  // all windows forwards.
  absl::Status SplitIntoShards(at::Tensor x) {
    const int shards = config_.calibration_shards;
    const int64_t chunks = (x.size(0) + kWindowsPerForward - 1) / kWindowsPerForward;
    if (chunks < shards) {
      return absl::InvalidArgumentError(
          absl::StrCat("calibration_shards = ", shards, " exceeds the ", chunks,
                       " calibration chunks of ", kWindowsPerForward, " windows"));
    }
    for (int k = 0; k < shards; ++k) {
      at::Tensor shard;
      BAQ_RETURN_IF_ERROR(CallTorch("split calibration shards", [&] {
        std::vector<at::Tensor> parts;
        for (int64_t c = k; c < chunks; c += shards) {
          const int64_t s = c * kWindowsPerForward;
          parts.push_back(x.slice(0, s, std::min(x.size(0), s + kWindowsPerForward)));
        }
        shard = at::cat(parts, 0);
      }));
      BAQ_ASSIGN_OR_RETURN(shard_inputs_[0][k], Keep(std::move(shard)));
    }
    return absl::OkStatus();
  }

  static std::string FirstLayerOf(const DecoderBlock& b, int group) {
    for (const LinearLayerSpec& s : b.linear_layers()) {
      if (s.input_group == group) return s.name;
    }
    return "?";
  }

  // Runs `b` (unquantized, on device_) over each of `shards`' inputs of
  // `block`, in order; element i holds shard i's partial sums by input group.
  // Torch calls: run inside OnRanks.
  absl::StatusOr<std::vector<std::map<int, HessianAccumulator>>> AccumulateShards(
      DecoderBlock& b, int64_t block, const std::vector<int32_t>& shards) {
    const std::vector<LinearLayerSpec>& specs = b.linear_layers();
    std::map<int, std::string> first_of_group;
    for (const LinearLayerSpec& s : specs) first_of_group.emplace(s.input_group, s.short_name);
    std::vector<std::map<int, HessianAccumulator>> partials(shards.size());
    for (size_t i = 0; i < shards.size(); ++i) {
      for (const LinearLayerSpec& s : specs) {
        if (partials[i].count(s.input_group) == 0) {
          partials[i].emplace(s.input_group, HessianAccumulator(s.in_features, device_));
        }
      }
      b.set_input_observer([&](const LinearLayerSpec& l, const at::Tensor& x) {
        BAQ_RETURN_IF_ERROR(CheckCancelled());
        if (first_of_group.at(l.input_group) != l.short_name) return absl::OkStatus();
        return partials[i].at(l.input_group).Add(x);
      });
      absl::StatusOr<at::Tensor> out =
          RunBlock({&b}, shard_inputs_.at(block).at(shards[i]), /*keep=*/false);
      b.set_input_observer(nullptr);
      if (!out.ok()) return out.status();
    }
    return partials;
  }

  // The block's state for Measure/Quantize on one device: each layer's
  // Hessian finalized from its input group's merged sum. InvalidArgument
  // (naming the layer) for a missing, extra or misshapen sum.
  absl::StatusOr<BlockState> MakeBlockState(std::unique_ptr<DecoderBlock> b, int64_t block,
                                            std::map<int, HessianAccumulator>& sums) {
    BlockState state;
    std::map<int, bool> used;
    for (const LinearLayerSpec& s : b->linear_layers()) {
      auto it = sums.find(s.input_group);
      if (it == sums.end()) {
        return absl::InvalidArgumentError(absl::StrCat("block ", block, ": no Hessian for ",
                                                       s.name, " (input group ", s.input_group,
                                                       ")"));
      }
      if (it->second.num_columns() != s.in_features) {
        return absl::InvalidArgumentError(
            absl::StrCat("block ", block, ": Hessian for ", s.name, " has ",
                         it->second.num_columns(), " columns, the layer ", s.in_features));
      }
      used[s.input_group] = true;
      BAQ_ASSIGN_OR_RETURN(at::Tensor h, Annotate(it->second.Finalize(at::kFloat), s.name));
      state.hessians.push_back(std::move(h));
    }
    for (const auto& [group, acc] : sums) {
      if (used.count(group) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "block ", block, ": a Hessian for input group ", group, ", which the block lacks"));
      }
    }
    state.block = std::move(b);
    return state;
  }

  // Measure() of a sharded job (one device): with Hessians imported, BAQ
  // pass 1 only; otherwise this engine holds every shard and accumulates and
  // merges them itself, in shard order (the coordinator's merge).
  absl::StatusOr<BlockMeasurement> MeasureSharded(int64_t block) {
    BlockMeasurement m;
    BAQ_RETURN_IF_ERROR(OnRanks([&](int) -> absl::Status {
      if (blocks_.count(block) == 0) {
        std::vector<int32_t> all(config_.calibration_shards);
        for (int32_t k = 0; k < config_.calibration_shards; ++k) {
          all[k] = k;
          BAQ_RETURN_IF_ERROR(CheckShard(block, k));
        }
        BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DecoderBlock> b,
                             LoadDecoderBlock(model_, *ckpt_, block, block_options_));
        BAQ_ASSIGN_OR_RETURN(auto partials, AccumulateShards(*b, block, all));
        for (size_t k = 1; k < partials.size(); ++k) {
          for (auto& [group, acc] : partials[0]) {
            BAQ_RETURN_IF_ERROR(acc.Merge(partials[k].at(group)));
          }
        }
        BAQ_ASSIGN_OR_RETURN(blocks_[block], MakeBlockState(std::move(b), block, partials[0]));
      }
      const BlockState& state = blocks_.at(block);
      const std::vector<LinearLayerSpec>& specs = state.block->linear_layers();
      m.block = block;
      m.calibration_tokens = calibration_tokens_;
      m.layers.resize(specs.size());
      LayerQuantizer quantizer(config_.quant);
      for (size_t i = 0; i < specs.size(); ++i) {
        BAQ_RETURN_IF_ERROR(CheckCancelled());
        LayerMeasurement& lm = m.layers[i];
        lm.name = specs[i].name;
        lm.rows = specs[i].out_features;
        if (config_.quant.method == QuantMethod::kBaq) {
          BAQ_ASSIGN_OR_RETURN(at::Tensor w, state.block->LinearWeight(specs[i].short_name));
          BAQ_ASSIGN_OR_RETURN(lm.column_loss,
                               Annotate(quantizer.MeasureColumnLoss(w, state.hessians[i]),
                                        specs[i].name));
        }
      }
      return absl::OkStatus();
    }));
    return m;
  }

  // Runs fn(rank) for every rank at once: rank 0 on the calling thread, the
  // others on their own threads, each with its device current. Returns the
  // first error in rank order.
  absl::Status OnRanks(const std::function<absl::Status(int)>& fn) {
    const int world = static_cast<int>(ranks_.size());
    std::vector<absl::Status> status(world);
    auto run = [&](int r) {
      status[r] = CallTorch("device thread", [&]() -> absl::Status {
        c10::DeviceGuard guard(ranks_[r].device);
        return fn(r);
      });
    };
    std::vector<std::thread> threads;
    for (int r = 1; r < world; ++r) threads.emplace_back(run, r);
    run(0);
    for (std::thread& t : threads) t.join();
    for (int r = 0; r < world; ++r) {
      if (!status[r].ok()) {
        return world == 1 ? status[r] : Annotate(status[r], absl::StrCat(
                                                                      "device ", r, " (",
                                                                      ranks_[r].device.str(),
                                                                      ")"));
      }
    }
    return absl::OkStatus();
  }

  // Sums the Hessian partials in partial order: with one rank, merges them
  // into partials[0]; with several (one partial each), all-reduces them in
  // rank order so that every rank's partial holds p_0 + p_1 + ... (the same
  // additions as the merge).
  absl::Status ReducePartials(std::vector<std::map<int, HessianAccumulator>>& partials) {
    if (ranks_.size() == 1) {
      return CallTorch("merge Hessian partials", [&]() -> absl::Status {
        for (size_t p = 1; p < partials.size(); ++p) {
          for (auto& [group, acc] : partials[0]) {
            BAQ_RETURN_IF_ERROR(acc.Merge(partials[p].at(group)));
          }
        }
        return absl::OkStatus();
      });
    }
    return OnRanks([&](int r) -> absl::Status {
      for (auto& [group, acc] : partials[r]) {
        BAQ_RETURN_IF_ERROR(AllReduceHessian(acc, *ranks_[r].communicator, kCollectiveTimeout,
                                             HessianReduction::kRankOrdered));
      }
      return absl::OkStatus();
    });
  }

  // `x` where spill_ puts activations of its size: itself, or a copy in a
  // spill file (x is dropped then).
  absl::StatusOr<at::Tensor> Keep(at::Tensor x) const {
    BAQ_ASSIGN_OR_RETURN(at::Tensor kept,
                         AllocateActivations(x.sizes(), x.scalar_type(), device_, spill_));
    if (!IsSpilled(kept)) return x;
    return CallTorch("spill activations", [&] { return kept.copy_(x); });
  }

  absl::Status CheckBlock(int64_t block) const {
    if (!started_) return absl::FailedPreconditionError("engine not started");
    if (block < 0 || block >= model_.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", block, " out of range [0, ", model_.num_layers, ")"));
    }
    return absl::OkStatus();
  }

  // Runs all calibration windows through the block, kWindowsPerForward at a
  // time: chunk c on rank c % world (replicas[rank]), with chunk_of_rank_
  // naming the chunk for the Hessian observers. The outputs are written in
  // window order into a buffer on the first device, or a spill file
  // (AllocateActivations), as each chunk finishes.
  absl::StatusOr<at::Tensor> RunBlock(const std::vector<DecoderBlock*>& replicas,
                                      const at::Tensor& x, bool keep) {
    const int world = static_cast<int>(ranks_.size());
    const int64_t chunks = (x.size(0) + kWindowsPerForward - 1) / kWindowsPerForward;
    // Each chunk's output goes straight into `out` (memory or a spill file).
    at::Tensor out;
    if (keep) {
      BAQ_ASSIGN_OR_RETURN(out, AllocateActivations(x.sizes(), x.scalar_type(), device_, spill_));
    }
    BAQ_RETURN_IF_ERROR(OnRanks([&](int r) -> absl::Status {
      for (int64_t c = r; c < chunks; c += world) {
        BAQ_RETURN_IF_ERROR(CheckCancelled());
        chunk_of_rank_[r] = c;
        const int64_t s = c * kWindowsPerForward;
        const int64_t e = std::min(x.size(0), s + kWindowsPerForward);
        // A no-op view unless the rank is another device or x is spilled.
        const at::Tensor in = x.slice(0, s, e).to(ranks_[r].device);
        BAQ_ASSIGN_OR_RETURN(at::Tensor y, replicas[r]->Forward(in));
        if (keep) out.slice(0, s, e).copy_(y);
      }
      return absl::OkStatus();
    }));
    return out;
  }

  const at::Device device_;  // ranks_[0]'s: embeddings and activations live here.
  const std::vector<Rank> ranks_;
  const int num_partials_;
  // The chunk each rank is forwarding (its Hessian observer's partial).
  std::vector<int64_t> chunk_of_rank_;
  JobConfig config_;
  ModelConfig model_;
  BlockOptions block_options_;
  std::unique_ptr<SafetensorsCheckpoint> ckpt_;
  bool started_ = false;
  int64_t calibration_tokens_ = 0;
  std::map<int64_t, at::Tensor> inputs_;  // Block -> its input activations.
  // The block whose inputs ExportInputs handed over (sequential mode), kept
  // for a retried export until ReleaseHandedOver().
  std::optional<int64_t> handed_over_;
  // Sharded jobs, instead of inputs_: block -> shard -> that shard's input
  // activations (the shards this engine holds).
  std::map<int64_t, std::map<int32_t, at::Tensor>> shard_inputs_;
  // Sharded jobs: blocks loaded by AccumulateHessians, awaiting ImportHessians.
  std::map<int64_t, std::unique_ptr<DecoderBlock>> pending_;
  // Where block-boundary activations live (memory or a spill file).
  ActivationSpillOptions spill_;
  std::map<int64_t, BlockState> blocks_;  // Measured, not yet quantized (or kept).
  MeasurementUse measurement_ = MeasurementUse::kNone;
  bool keep_measurement_ = false;  // SetTarget(): Quantize keeps blocks_.
  std::atomic<bool> cancelled_{false};    // Set by Cancel(), from any thread.
};

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
  std::vector<std::unique_ptr<Communicator>> comms;
  if (world == 1) {
    comms.push_back(std::make_unique<LocalCommunicator>());
  } else if (devices.front().is_cpu()) {
    comms = MakeInProcessCommunicators(world);
  } else {
    BAQ_ASSIGN_OR_RETURN(comms, MakeDeviceCommunicators(devices, CommunicatorOptions{}));
  }
  if (world > 1 && devices.front().is_cuda()) {
    // LibTorch loads its CUDA linear-algebra library on the first linalg call,
    // and that lazy load is not thread-safe ("lazy wrapper should be called at
    // most once" when two device threads race): do it here, on one thread.
    BAQ_RETURN_IF_ERROR(CallTorch("CUDA linalg warm-up", [&] {
      for (const at::Device& d : devices) {
        (void)at::linalg_cholesky_ex(at::eye(1, at::TensorOptions().device(d)));
      }
    }));
  }
  std::vector<Rank> ranks;
  for (int r = 0; r < world; ++r) ranks.push_back(Rank{devices[r], std::move(comms[r])});
  if (options.num_threads > 0) at::set_num_threads(options.num_threads);
  std::unique_ptr<TorchBlockEngine> engine(new TorchBlockEngine(std::move(ranks), partials));
  engine->set_activation_spill(options.activation_spill);
  return std::unique_ptr<BlockEngine>(std::move(engine));
}

}  // namespace baq::worker
