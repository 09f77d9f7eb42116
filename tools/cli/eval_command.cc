// `baq eval`: perplexity of a checkpoint (the original, or a baq output in
// any format: fake-quant as is, packed and gptq dequantized layer by layer
// as each block loads) over non-overlapping windows of a text file, the
// GPTQ/BAQ protocol, streamed block by block.
#include <ATen/ATen.h>

#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "common/status_macros.h"
#include "tools/cli/local_commands.h"
#include "worker/layer_formats.h"
#include "worker/model/checkpoint_perplexity.h"

namespace baq::cli {
namespace {

// Windows per block forward on a GPU: bounds the attention scores to
// [8, heads, 128, seqlen] float32 while keeping the matmuls large.
constexpr int64_t kCudaBatchWindows = 8;

// "cpu", "cuda" or "cuda:N" (the --device flag), checked against this build.
absl::StatusOr<at::Device> ParseEvalDevice(const std::string& device) {
  if (device == "cpu") return at::Device(at::kCPU);
  int index = 0;
  if (device != "cuda" && !(absl::StartsWith(device, "cuda:") &&
                            absl::SimpleAtoi(device.substr(5), &index) && index >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("baq eval: unknown device \"", device, "\" (use cpu, cuda or cuda:N)"));
  }
  if (!at::hasCUDA()) {
    return absl::UnavailableError(
        absl::StrCat("baq eval: device ", device, ": this build or machine has no CUDA"));
  }
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace

absl::Status RunEval(const EvalOptions& options, const OutputOptions& output) {
  if (options.model_dir.empty() || options.text_file.empty()) {
    return absl::InvalidArgumentError("baq eval needs --model and --text");
  }
  BAQ_ASSIGN_OR_RETURN(const at::Device device, ParseEvalDevice(options.engine.device));
  const absl::Time start = absl::Now();
  worker::CheckpointPerplexityOptions o;
  o.max_windows = options.max_windows;
  worker::PerplexityOptions& p = o.perplexity;
  p.num_threads = options.engine.num_threads;
  p.block.device = device;  // float32 compute on either device, as `baq quantize`.
  if (device.is_cuda()) p.batch_windows = kCudaBatchWindows;
  if (output.progress) {
    p.progress = [](int64_t block, int64_t blocks) {
      std::fprintf(stderr, "\reval: block %lld/%lld", static_cast<long long>(block + 1),
                   static_cast<long long>(blocks));
      std::fflush(stderr);
    };
  }
  bool quantized = false;
  o.configure = [&quantized](const ModelConfig& config, const SafetensorsCheckpoint& ckpt,
                             worker::PerplexityOptions& eval) {
    quantized = worker::HasQuantizedLayers(ckpt);
    if (quantized) {
      eval.block.linear_weight_loader = worker::QuantizedWeightLoader(ckpt, config.dtype);
    }
  };
  BAQ_ASSIGN_OR_RETURN(
      worker::PerplexityResult r,
      worker::EvaluateCheckpointPerplexity(options.model_dir, options.text_file, options.seqlen, o));
  if (output.progress) std::fprintf(stderr, "\n");
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (output.json) {
    PrintJson(stdout, {{"ok", true},
                       {"model", options.model_dir},
                       {"text", options.text_file},
                       {"perplexity", r.perplexity},
                       {"windows", r.num_windows},
                       {"seqlen", r.window_tokens},
                       {"tokens", r.num_windows * r.window_tokens},
                       {"quantized", quantized},
                       {"seconds", seconds}});
    return absl::OkStatus();
  }
  std::printf("perplexity: %.4f (%lld windows x %lld tokens, %.1f s%s)\n", r.perplexity,
              static_cast<long long>(r.num_windows), static_cast<long long>(r.window_tokens),
              seconds, quantized ? ", quantized layers dequantized on load" : "");
  return absl::OkStatus();
}

}  // namespace baq::cli
