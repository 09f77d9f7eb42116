// worker/model/decoder_block.h
//
// DecoderBlock: one transformer block of a decoder-only LM, loaded on its own
// from the checkpoint so a model can be executed block by block with memory
// for one block plus activations (see docs/model-execution.md).
//
// A block owns its parameters, converted at load time to
// BlockOptions::compute_dtype on BlockOptions::device. Forward() maps hidden
// states [batch, seq, hidden] to [batch, seq, hidden] with causal attention
// over positions 0..seq-1 (each batch row is an independent sequence).
//
// The quantizable linear layers are addressed by the short names of
// ModelConfig::BlockLinearLayers(index()) ("self_attn.q_proj", "fc1", ...):
//  * an input observer sees the input of every linear layer during Forward()
//    (GPTQ Hessians); layers of one input_group (q/k/v, gate/up) see the same
//    tensor, each once per Forward();
//  * SetLinearWeight() replaces a layer's weight, e.g. by its dequantized
//    GPTQ result, for every later Forward().
//
// Implementations: opt_block.cc, llama_block.cc (llama, mistral, qwen2, qwen3,
// phi3, mixtral, qwen2_moe, qwen3_moe), gemma_block.cc (gemma2, gemma3_text);
// LoadDecoderBlock() in block_factory.h picks one from the config.
//
// Thread-compatible: one thread (the device executor) calls all methods;
// the one exception is Forward(), which only reads the block and may run
// concurrently on several threads while no observer is set and no weight is
// being replaced (perplexity.cc runs CPU windows that way). LibTorch
// exceptions never escape (STYLE R13).
//
// Example:
//   BAQ_ASSIGN_OR_RETURN(std::unique_ptr<DecoderBlock> block,
//                        LoadDecoderBlock(config, *ckpt, /*block=*/3, BlockOptions{}));
//   block->set_input_observer([&](const LinearLayerSpec& l, const at::Tensor& x) {
//     return hessians[l.input_group].Add(x);  // x: [batch * seq, l.in_features]
//   });
//   BAQ_ASSIGN_OR_RETURN(at::Tensor out, block->Forward(hidden));
//   BAQ_RETURN_IF_ERROR(block->SetLinearWeight("self_attn.q_proj", dequantized));
#ifndef BAQ_WORKER_MODEL_DECODER_BLOCK_H_
#define BAQ_WORKER_MODEL_DECODER_BLOCK_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"

namespace baq::worker {

// Produces the weight [out_features, in_features] of a quantizable layer
// (see BlockOptions::linear_weight_loader).
using LinearWeightLoader = std::function<absl::StatusOr<at::Tensor>(const LinearLayerSpec& layer)>;

struct BlockOptions {
  // Where parameters live and Forward() runs.
  at::Device device = at::kCPU;
  // Dtype of parameters and activations: float32 on CPU (half-precision
  // matmuls are slow there and the reference numbers are float32);
  // float16/bfloat16 on GPU. Softmax and norms always run in float32.
  at::ScalarType compute_dtype = at::kFloat;
  // Queries per attention step: bounds the score tensor to
  // [batch, heads, chunk, seq] and skips fully masked key ranges.
  int64_t attention_query_chunk = 128;
  // Where a block gets the weight of a quantizable layer: empty = the
  // checkpoint tensor "<name>.weight"; otherwise this function, e.g. a
  // dequantizer of a packed or gptq output (worker/layer_formats.h
  // QuantizedWeightLoader). Its float [out_features, in_features] result is
  // checked (shape, NaN/Inf) and converted like a checkpoint tensor.
  LinearWeightLoader linear_weight_loader;
  // MoE blocks while an observer is set: the floor of calibration tokens per
  // expert and Forward() (worker/model/moe_mlp.h: starved experts are topped
  // up with the tokens the router ranks next for them, never left empty).
  int64_t moe_min_calibration_tokens = 16;
};

struct MoeTokenCounts;  // worker/model/moe_mlp.h

// Called by Forward() with the input of one linear layer as a
// [batch * seq, in_features] matrix (compute dtype, block device). The tensor
// is valid during the call only; copy it to keep it. A non-OK status aborts
// Forward() with that status.
using LinearInputObserver =
    std::function<absl::Status(const LinearLayerSpec& layer, const at::Tensor& input)>;

class DecoderBlock {
 public:
  virtual ~DecoderBlock();
  DecoderBlock(const DecoderBlock&) = delete;
  DecoderBlock& operator=(const DecoderBlock&) = delete;

  int64_t index() const { return index_; }
  int64_t hidden_size() const { return hidden_size_; }
  const BlockOptions& options() const { return options_; }
  // The quantizable layers, as ModelConfig::BlockLinearLayers(index()).
  const std::vector<LinearLayerSpec>& linear_layers() const { return specs_; }

  // [batch, seq, hidden] -> [batch, seq, hidden]. InvalidArgument unless
  // `hidden` has that shape, the compute dtype and the block's device.
  absl::StatusOr<at::Tensor> Forward(const at::Tensor& hidden);

  // Replaces the observer; an empty function removes it.
  void set_input_observer(LinearInputObserver observer) { observer_ = std::move(observer); }
  bool has_input_observer() const { return static_cast<bool>(observer_); }

  // MoE blocks: tokens each expert saw while an observer was set, summed over
  // Forward() calls; nullptr for dense blocks.
  virtual const MoeTokenCounts* moe_token_counts() const { return nullptr; }

  // The current weight [out_features, in_features] of a layer (shares
  // storage with the block). NotFound for an unknown short name.
  absl::StatusOr<at::Tensor> LinearWeight(absl::string_view short_name) const;
  // Uses `weight` ([out_features, in_features], any float dtype and device;
  // converted to the compute dtype and device) from now on. NotFound for an
  // unknown short name; InvalidArgument for another shape or NaN/Inf.
  absl::Status SetLinearWeight(absl::string_view short_name, const at::Tensor& weight);

 protected:
  // Parameters of the quantizable layers, parallel to `specs`. Biases are
  // undefined tensors for layers without bias.
  struct LinearParams {
    std::vector<LinearLayerSpec> specs;
    std::vector<at::Tensor> weights;
    std::vector<at::Tensor> biases;
  };

  DecoderBlock(int64_t index, int64_t hidden_size, const BlockOptions& options,
               LinearParams linears);

  // Loads config.BlockLinearLayers(block) with LoadCheckpointTensor().
  static absl::StatusOr<LinearParams> LoadLinearParams(const ModelConfig& config,
                                                       const SafetensorsCheckpoint& ckpt,
                                                       int64_t block,
                                                       const BlockOptions& options);
  // Position of `short_name` in `specs`; Internal when the block
  // implementation and ModelConfig disagree about layer names.
  static absl::StatusOr<int> FindLayer(const std::vector<LinearLayerSpec>& specs,
                                       absl::string_view short_name);

  // What a block implementation loads: the quantizable layers, the index in
  // linears.specs of each layer its math uses (`layer[i]` for
  // used_layers[i]), and its other per-block [hidden_size] vectors (norm
  // weights and biases, "<block prefix><vector_names[i]>" as `vectors[i]`).
  struct BlockParams {
    LinearParams linears;
    std::vector<int> layer;
    std::vector<at::Tensor> vectors;
  };
  static absl::StatusOr<BlockParams> LoadBlockParams(
      const ModelConfig& config, const SafetensorsCheckpoint& ckpt, int64_t block,
      const BlockOptions& options, absl::Span<const absl::string_view> used_layers,
      absl::Span<const absl::string_view> vector_names);

  // The block's math on validated input; may throw c10::Error (Forward()
  // converts it).
  virtual absl::StatusOr<at::Tensor> ForwardImpl(const at::Tensor& hidden) = 0;

  // Reports `x` ([batch, seq, in]) to the observer, then applies layer
  // `layer` (x W^T + b).
  absl::StatusOr<at::Tensor> ApplyLinear(int layer, const at::Tensor& x);

  // softmax(q k^T * scale + causal mask) v, softmax in float32.
  // q: [batch, heads, seq, head_dim]; k, v: [batch, kv_heads, seq, head_dim]
  // with heads % kv_heads == 0 (GQA: query head h reads kv head
  // h / (heads / kv_heads), as transformers' repeat_kv). With
  // sliding_window > 0, query i sees keys j with i - j < sliding_window
  // (Mistral). softcap > 0 caps scores as softcap * tanh(s / softcap)
  // (Gemma-2). Returns [batch, seq, heads * head_dim].
  at::Tensor CausalAttention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             double scale, int64_t sliding_window = 0,
                             double softcap = 0) const;

 private:
  const int64_t index_;
  const int64_t hidden_size_;
  const BlockOptions options_;
  const std::vector<LinearLayerSpec> specs_;
  std::vector<at::Tensor> weights_;  // Parallel to specs_.
  std::vector<at::Tensor> biases_;   // Parallel to specs_; undefined = no bias.
  LinearInputObserver observer_;
};

// x W^T + b (`bias` may be undefined), as at::linear. On the CPU in float32
// it runs as a oneDNN inner product (at::mkldnn_linear) when LibTorch has
// oneDNN: Debian's LibTorch sends at::linear to the reference BLAS, which is
// ~25x slower. Shared with model_head.cc; may throw.
at::Tensor LinearOp(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
// Whether LinearOp() takes the oneDNN path for `x`.
bool UsesOneDnnMatmul(const at::Tensor& x);
// Whether `x` is bfloat16 or float16 on the CPU: LinearOp(), CausalAttention()
// and OPT's LayerNorm then compute in float32 and round the result to x's
// dtype (LibTorch 1.13 has no float16 CPU matmul; on CUDA the same products
// run in the half dtype on tensor cores, accumulating in float32).
bool IsHalfOnCpu(const at::Tensor& x);

// transformers' LlamaRMSNorm: x * rsqrt(mean(x^2) + eps) in float32, cast
// back to x's dtype, times `weight`. Shared with model_head.cc; may throw.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);
// transformers' Gemma RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + weight), all
// in float32, cast back to x's dtype. Shared with model_head.cc; may throw.
at::Tensor GemmaRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_DECODER_BLOCK_H_
