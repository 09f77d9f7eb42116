#include "worker/torch_block_engine.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <map>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/bpe_tokenizer.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/activation_codec.h"
#include "worker/calibration_inputs.h"
#include "worker/layer_quantizer.h"
#include "worker/model/block_factory.h"
#include "worker/model/model_head.h"
#include "worker/quant/hessian_accumulator.h"
#include "worker/torch_call.h"

namespace baq::worker {
namespace {

// Calibration windows per forward call: bounds attention memory.
constexpr int64_t kWindowsPerForward = 8;

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

class TorchBlockEngine final : public BlockEngine {
 public:
  explicit TorchBlockEngine(at::Device device) : device_(device) {}

  absl::Status Start(const JobConfig& config) override {
    Reset();
    BAQ_RETURN_IF_ERROR(config.Validate());
    config_ = config;
    BAQ_ASSIGN_OR_RETURN(model_, LoadModelConfig(config.model_dir));
    BAQ_ASSIGN_OR_RETURN(ckpt_, SafetensorsCheckpoint::Open(config.model_dir));
    BAQ_ASSIGN_OR_RETURN(BpeTokenizer tokenizer,
                         BpeTokenizer::Load(config.model_dir + "/tokenizer.json"));
    BAQ_ASSIGN_OR_RETURN(at::Tensor ids, LoadCalibrationIds(config.calibration, tokenizer));
    block_options_.device = device_;
    block_options_.compute_dtype = at::kFloat;
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<TokenEmbedding> embed,
                         TokenEmbedding::Load(model_, *ckpt_, block_options_));
    BAQ_ASSIGN_OR_RETURN(at::Tensor x, embed->Embed(ids.to(device_)));
    inputs_[0] = std::move(x);
    calibration_tokens_ = ids.numel();
    started_ = true;
    return absl::OkStatus();
  }

  int64_t num_blocks() const override { return model_.num_layers; }

  absl::StatusOr<BlockMeasurement> Measure(int64_t block) override {
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    auto it = inputs_.find(block);
    if (it == inputs_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("block ", block, ": inputs not present on this worker"));
    }
    BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DecoderBlock> b,
                         LoadDecoderBlock(model_, *ckpt_, block, block_options_));
    const std::vector<LinearLayerSpec>& specs = b->linear_layers();
    std::map<int, HessianAccumulator> hessians;
    for (const LinearLayerSpec& s : specs) {
      if (hessians.count(s.input_group) == 0) {
        hessians.emplace(s.input_group, HessianAccumulator(s.in_features, device_));
      }
    }
    std::map<int, std::string> first_of_group;
    for (const LinearLayerSpec& s : specs) first_of_group.emplace(s.input_group, s.short_name);
    b->set_input_observer([&](const LinearLayerSpec& l, const at::Tensor& x) {
      if (first_of_group[l.input_group] != l.short_name) return absl::OkStatus();
      return hessians.at(l.input_group).Add(x);
    });
    const bool parallel = config_.mode == ExecutionMode::kParallel;
    BAQ_ASSIGN_OR_RETURN(at::Tensor out, RunBlock(*b, it->second, /*keep=*/parallel));
    b->set_input_observer(nullptr);
    if (parallel) inputs_[block + 1] = std::move(out);

    BlockState state;
    for (const LinearLayerSpec& s : specs) {
      BAQ_ASSIGN_OR_RETURN(at::Tensor h,
                           Annotate(hessians.at(s.input_group).Finalize(at::kFloat), s.name));
      state.hessians.push_back(std::move(h));
    }
    BlockMeasurement m;
    m.block = block;
    m.calibration_tokens = calibration_tokens_;
    LayerQuantizer quantizer(config_.quant);
    for (size_t i = 0; i < specs.size(); ++i) {
      LayerMeasurement lm;
      lm.name = specs[i].name;
      lm.rows = specs[i].out_features;
      if (config_.quant.method == QuantMethod::kBaq) {
        BAQ_ASSIGN_OR_RETURN(at::Tensor w, b->LinearWeight(specs[i].short_name));
        BAQ_ASSIGN_OR_RETURN(lm.column_loss,
                             Annotate(quantizer.MeasureColumnLoss(w, state.hessians[i]),
                                      specs[i].name));
      }
      m.layers.push_back(std::move(lm));
    }
    state.block = std::move(b);
    blocks_[block] = std::move(state);
    return m;
  }

  absl::StatusOr<BlockOutput> Quantize(int64_t block,
                                       const std::vector<LayerAllocation>& allocation) override {
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
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
    LayerQuantizer quantizer(config_.quant);
    BlockOutput output;
    output.block = block;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (allocation[i].name != specs[i].name) {
        return absl::InvalidArgumentError(absl::StrCat("block ", block, ": allocation entry ", i,
                                                       " names ", allocation[i].name,
                                                       ", expected ", specs[i].name));
      }
      const absl::Time start = absl::Now();
      BAQ_ASSIGN_OR_RETURN(at::Tensor w, b.LinearWeight(specs[i].short_name));
      BAQ_ASSIGN_OR_RETURN(
          LayerQuantizer::Result r,
          Annotate(quantizer.Quantize(specs[i].name, w, state.hessians[i], allocation[i],
                                      config_.formats, model_.dtype),
                   specs[i].name));
      // The next block must see what a loaded fake-quant checkpoint holds:
      // the dequantized weight rounded to the checkpoint dtype.
      BAQ_RETURN_IF_ERROR(b.SetLinearWeight(specs[i].short_name, r.stored_weight));
      for (size_t t = 0; t < r.tensors.size(); ++t) {
        output.tensors.push_back(std::move(r.tensors[t]));
        output.tensor_format.push_back(r.tensor_format[t]);
      }
      r.report.seconds = absl::ToDoubleSeconds(absl::Now() - start);
      output.layers.push_back(std::move(r.report));
    }
    if (config_.mode == ExecutionMode::kSequential) {
      auto in = inputs_.find(block);
      if (in == inputs_.end()) {
        return absl::FailedPreconditionError(absl::StrCat("block ", block, ": inputs dropped"));
      }
      BAQ_ASSIGN_OR_RETURN(at::Tensor next, RunBlock(b, in->second, /*keep=*/true));
      inputs_.erase(in);
      inputs_[block + 1] = std::move(next);
    } else {
      inputs_.erase(block);
    }
    blocks_.erase(it);
    return output;
  }

  absl::StatusOr<std::string> ExportInputs(int64_t block) override {
    auto it = inputs_.find(block);
    if (it == inputs_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("block ", block, ": no inputs to export on this worker"));
    }
    BAQ_ASSIGN_OR_RETURN(std::string bytes, EncodeActivations(it->second));
    // Sequential hand-off: the receiver owns them from now on.
    if (config_.mode == ExecutionMode::kSequential) inputs_.erase(it);
    return bytes;
  }

  absl::Status ImportInputs(int64_t block, std::string bytes) override {
    BAQ_RETURN_IF_ERROR(CheckBlock(block));
    BAQ_ASSIGN_OR_RETURN(at::Tensor x, DecodeActivations(bytes, device_));
    inputs_[block] = std::move(x);
    return absl::OkStatus();
  }

  void Reset() override {
    inputs_.clear();
    blocks_.clear();
    ckpt_.reset();
    started_ = false;
  }

 private:
  struct BlockState {
    std::unique_ptr<DecoderBlock> block;
    std::vector<at::Tensor> hessians;  // Parallel to block->linear_layers().
  };

  absl::Status CheckBlock(int64_t block) const {
    if (!started_) return absl::FailedPreconditionError("engine not started");
    if (block < 0 || block >= model_.num_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("block ", block, " out of range [0, ", model_.num_layers, ")"));
    }
    return absl::OkStatus();
  }

  // Runs all calibration windows through `b`, kWindowsPerForward at a time.
  absl::StatusOr<at::Tensor> RunBlock(DecoderBlock& b, const at::Tensor& x, bool keep) {
    std::vector<at::Tensor> outs;
    for (int64_t s = 0; s < x.size(0); s += kWindowsPerForward) {
      const int64_t e = std::min(x.size(0), s + kWindowsPerForward);
      BAQ_ASSIGN_OR_RETURN(at::Tensor y, b.Forward(x.slice(0, s, e)));
      if (keep) outs.push_back(std::move(y));
    }
    if (!keep) return at::Tensor();
    return CallTorch("concat activations", [&] { return at::cat(outs, 0); });
  }

  const at::Device device_;
  JobConfig config_;
  ModelConfig model_;
  BlockOptions block_options_;
  std::unique_ptr<SafetensorsCheckpoint> ckpt_;
  bool started_ = false;
  int64_t calibration_tokens_ = 0;
  std::map<int64_t, at::Tensor> inputs_;  // Block -> its input activations.
  std::map<int64_t, BlockState> blocks_;  // Measured, not yet quantized.
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlockEngine>> MakeTorchBlockEngine(const EngineOptions& options) {
  BAQ_ASSIGN_OR_RETURN(at::Device device, ParseDevice(options.device));
  if (options.num_threads > 0) at::set_num_threads(options.num_threads);
  return std::unique_ptr<BlockEngine>(new TorchBlockEngine(device));
}

}  // namespace baq::worker
