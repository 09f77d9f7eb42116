// worker/model/checkpoint_perplexity.h
//
// EvaluateCheckpointPerplexity: the whole of `baq eval` below the command
// line, so the CLI and the workers (BlockEngine::Evaluate, the job's
// evaluation gate) compute the same number the same way: load config.json,
// the safetensors checkpoint and tokenizer.json of a model directory,
// tokenize the text file into non-overlapping `seqlen` windows
// (LoadEvaluationSet), and run EvaluatePerplexity (perplexity.h, the GPTQ
// paper's protocol) block by block.
//
// Thread-compatible; runs on the calling thread (on a GPU, the device's
// executor). LibTorch exceptions never escape.
//
// Example:
//   CheckpointPerplexityOptions options;
//   options.perplexity.block.device = at::Device(at::kCPU);
//   BAQ_ASSIGN_OR_RETURN(PerplexityResult r,
//       EvaluateCheckpointPerplexity("/models/opt-baq3", "wiki.test.txt", 2048, options));
#ifndef BAQ_WORKER_MODEL_CHECKPOINT_PERPLEXITY_H_
#define BAQ_WORKER_MODEL_CHECKPOINT_PERPLEXITY_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors_checkpoint.h"
#include "worker/model/perplexity.h"

namespace baq::worker {

struct CheckpointPerplexityOptions {
  // Device, threads, batching, progress of the evaluation itself.
  PerplexityOptions perplexity;
  // > 0: evaluate only the first `max_windows` windows.
  int64_t max_windows = 0;
  // Called once the checkpoint is open, before the evaluation, to adjust
  // the options for it (e.g. a weight loader that dequantizes packed
  // layers). May be null.
  std::function<void(const ModelConfig& config, const SafetensorsCheckpoint& ckpt,
                     PerplexityOptions& options)>
      configure;
};

// NotFound / InvalidArgument naming the file when the model directory or the
// text cannot be read or do not fit (text shorter than one window: no
// windows); errors of EvaluatePerplexity as they are.
absl::StatusOr<PerplexityResult> EvaluateCheckpointPerplexity(
    const std::string& model_dir, const std::string& text_file, int64_t seqlen,
    const CheckpointPerplexityOptions& options);

}  // namespace baq::worker

#endif  // BAQ_WORKER_MODEL_CHECKPOINT_PERPLEXITY_H_
